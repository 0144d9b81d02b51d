//! The hub's clock: the system's; a manual one that tests set and advance
//! (acceptance times, arrivals, moves, every deadline and retention read
//! it), so that overdue feedback, expiry and archiving can be checked
//! without waiting real minutes; or one that runs faster than the system's
//! from a given instant, so that a benchmark can pass a year of retention
//! in an hour.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

#[derive(Clone, Debug)]
pub struct Clock(Arc<ClockInner>);

#[derive(Debug)]
enum Kind {
    System,
    Manual(AtomicI64),
    /// `start_unix_ms` at `started`, then `speed` ms for each real ms.
    Faster {
        started: Instant,
        start_unix_ms: i64,
        speed: f64,
    },
}

#[derive(Debug)]
struct ClockInner {
    kind: Kind,
    /// Counts the moves of a manual clock, waking the tasks that watch it
    /// (the deadline watcher, retention).
    advanced: watch::Sender<u64>,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl Clock {
    fn of(kind: Kind) -> Clock {
        Clock(Arc::new(ClockInner {
            kind,
            advanced: watch::Sender::new(0),
        }))
    }

    pub fn system() -> Clock {
        Clock::of(Kind::System)
    }

    /// A clock that stands at `unix_ms` until advanced.
    pub fn manual(unix_ms: i64) -> Clock {
        Clock::of(Kind::Manual(AtomicI64::new(unix_ms)))
    }

    /// A manual clock starting at the system's time.
    pub fn manual_now() -> Clock {
        Clock::manual(system_unix_ms())
    }

    /// A clock that reads `start_unix_ms` now and then runs `speed` times
    /// faster than the system's (8,760 passes a year in an hour).
    pub fn faster(start_unix_ms: i64, speed: f64) -> Clock {
        Clock::of(Kind::Faster {
            started: Instant::now(),
            start_unix_ms,
            speed: speed.max(1.0),
        })
    }

    pub fn now_unix_ms(&self) -> i64 {
        match &self.0.kind {
            Kind::System => system_unix_ms(),
            Kind::Manual(at) => at.load(Ordering::Acquire),
            Kind::Faster {
                started,
                start_unix_ms,
                speed,
            } => start_unix_ms + (started.elapsed().as_secs_f64() * 1000.0 * speed) as i64,
        }
    }

    /// Moves a manual clock forward and wakes the tasks that watch it; other
    /// clocks cannot be moved and this does nothing to them.
    pub fn advance(&self, by: Duration) {
        if let Kind::Manual(at) = &self.0.kind {
            at.fetch_add(by.as_millis() as i64, Ordering::AcqRel);
            self.0.advanced.send_modify(|moves| *moves += 1);
        }
    }

    /// Moves a manual clock forward to `unix_ms` if it stands before it (a
    /// replay follows its documents' historical times this way).
    pub fn advance_to(&self, unix_ms: i64) {
        if let Kind::Manual(at) = &self.0.kind {
            if at.fetch_max(unix_ms, Ordering::AcqRel) < unix_ms {
                self.0.advanced.send_modify(|moves| *moves += 1);
            }
        }
    }

    /// Changes each time a manual clock moves.
    pub(crate) fn advances(&self) -> watch::Receiver<u64> {
        self.0.advanced.subscribe()
    }
}

fn system_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
