//! The hub's clock: the system's, or a manual one that tests set and advance
//! (acceptance times, arrivals, moves and every deadline read it), so that
//! overdue feedback and expiry can be checked without waiting real minutes.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

#[derive(Clone, Debug)]
pub struct Clock(Arc<ClockInner>);

#[derive(Debug)]
struct ClockInner {
    /// `None`: the system clock.
    manual_unix_ms: Option<AtomicI64>,
    /// Wakes the deadline watcher when a manual clock moves.
    advanced: Notify,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl Clock {
    pub fn system() -> Clock {
        Clock(Arc::new(ClockInner {
            manual_unix_ms: None,
            advanced: Notify::new(),
        }))
    }

    /// A clock that stands at `unix_ms` until advanced.
    pub fn manual(unix_ms: i64) -> Clock {
        Clock(Arc::new(ClockInner {
            manual_unix_ms: Some(AtomicI64::new(unix_ms)),
            advanced: Notify::new(),
        }))
    }

    /// A manual clock starting at the system's time.
    pub fn manual_now() -> Clock {
        Clock::manual(system_unix_ms())
    }

    pub fn now_unix_ms(&self) -> i64 {
        match &self.0.manual_unix_ms {
            Some(at) => at.load(Ordering::Acquire),
            None => system_unix_ms(),
        }
    }

    /// Moves a manual clock forward and wakes the watcher; the system clock
    /// cannot be moved and this does nothing to it.
    pub fn advance(&self, by: Duration) {
        if let Some(at) = &self.0.manual_unix_ms {
            at.fetch_add(by.as_millis() as i64, Ordering::AcqRel);
            self.0.advanced.notify_one();
        }
    }

    pub(crate) async fn advanced(&self) {
        self.0.advanced.notified().await
    }
}

fn system_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
