//! Progress while a replay runs: a bar on a terminal (documents sent, deliveries arrived,
//! status moves recorded, rate, ETA), a line every few seconds otherwise, or nothing.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::report::group;

/// How a long-running replay shows itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// A bar when stderr is a terminal, otherwise a line every [`LINE_INTERVAL`].
    Auto,
    /// A line every [`LINE_INTERVAL`], whatever stderr is.
    Lines,
    /// Nothing (tests).
    Off,
}

/// Between two progress lines when there is no terminal.
pub const LINE_INTERVAL: Duration = Duration::from_secs(5);

/// What the replay must do in all.
#[derive(Debug, Clone, Copy)]
pub struct Totals {
    pub documents: u64,
    pub deliveries: u64,
    pub moves: u64,
}

impl Totals {
    fn steps(&self) -> u64 {
        self.documents + self.deliveries + self.moves
    }
}

pub(crate) struct Progress {
    totals: Totals,
    bar: Option<ProgressBar>,
    lines: bool,
    started: Instant,
    last_line: Mutex<Instant>,
}

impl Progress {
    pub(crate) fn start(mode: ProgressMode, totals: Totals) -> Progress {
        let terminal = std::io::stderr().is_terminal();
        let bar = (mode == ProgressMode::Auto && terminal).then(|| {
            let bar = ProgressBar::with_draw_target(
                Some(totals.steps()),
                ProgressDrawTarget::stderr_with_hz(4),
            );
            bar.set_style(
                ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:24.cyan/blue}] {percent:>3}%  {msg}  ETA {eta}",
                )
                .expect("the template is valid")
                .progress_chars("=> "),
            );
            bar
        });
        let lines = match mode {
            ProgressMode::Auto => !terminal,
            ProgressMode::Lines => true,
            ProgressMode::Off => false,
        };
        let now = Instant::now();
        Progress {
            totals,
            bar,
            lines,
            started: now,
            last_line: Mutex::new(now),
        }
    }

    fn message(&self, (sent, arrived, moved): (u64, u64, u64), notices: u64) -> String {
        let seconds = self.started.elapsed().as_secs_f64().max(1e-3);
        format!(
            "documents {}/{}  arrived {}/{}  statuses {}/{}  notices {}  ({:.0} docs/s, {:.0} deliveries/s, {:.0} moves/s)",
            group(sent),
            group(self.totals.documents),
            group(arrived),
            group(self.totals.deliveries),
            group(moved),
            group(self.totals.moves),
            group(notices),
            sent as f64 / seconds,
            arrived as f64 / seconds,
            moved as f64 / seconds,
        )
    }

    pub(crate) fn update(&self, done: (u64, u64, u64), notices: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done.0 + done.1 + done.2);
            bar.set_message(self.message(done, notices));
        } else if self.lines {
            let mut last = self.last_line.lock().unwrap_or_else(|p| p.into_inner());
            if last.elapsed() >= LINE_INTERVAL {
                *last = Instant::now();
                eprintln!(
                    "[{:>6.0} s] {}",
                    self.started.elapsed().as_secs_f64(),
                    self.message(done, notices)
                );
            }
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}
