//! What one bench run does, with the defaults of `truc bench`.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::agencies::ScenarioKind;
use crate::fanout::FanoutMix;

/// Which scenarios run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    Intake,
    Fanout,
    Moves,
    /// Intake, fan-out and moves: the figures BENCHMARKS.md records.
    All,
    /// Sends of one attachment size after another, beside the disk's own
    /// bandwidth; never part of `all` (its phases write gigabytes).
    Attachments,
    /// Many nodes connected at once, a hub restart under them
    /// (`many_nodes`); a run of its own, never part of `all`.
    Nodes,
}

impl Scenario {
    pub fn includes(self, kind: ScenarioKind) -> bool {
        match self {
            Scenario::All => kind != ScenarioKind::Attachments,
            Scenario::Intake => kind == ScenarioKind::Intake,
            Scenario::Fanout => kind == ScenarioKind::Fanout,
            Scenario::Moves => kind == ScenarioKind::Moves,
            Scenario::Attachments => kind == ScenarioKind::Attachments,
            Scenario::Nodes => false,
        }
    }
}

impl FromStr for Scenario {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "intake" => Ok(Scenario::Intake),
            "fanout" => Ok(Scenario::Fanout),
            "moves" => Ok(Scenario::Moves),
            "all" => Ok(Scenario::All),
            "attachments" => Ok(Scenario::Attachments),
            "nodes" => Ok(Scenario::Nodes),
            other => Err(format!(
                "'{other}' is not a scenario: intake, fanout, moves, all, attachments or nodes"
            )),
        }
    }
}

/// How fast documents are sent in the intake and fan-out scenarios.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RateSpec {
    /// As fast as the hub acknowledges, `concurrency` sends in flight.
    Unpaced,
    /// Documents started at this fixed rate (open loop: a late send does not
    /// delay the next one, and latency counts from the planned start).
    PerSecond(f64),
    /// Unpaced first, then again paced at half the rate just measured.
    HalfOfMeasured,
}

impl FromStr for RateSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "half" {
            return Ok(RateSpec::HalfOfMeasured);
        }
        match text.parse::<f64>() {
            Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(RateSpec::PerSecond(rate)),
            _ => Err(format!(
                "'{text}' is not a rate: documents per second (e.g. 400) or 'half'"
            )),
        }
    }
}

/// The NATS JetStream comparison.
#[derive(Clone, Debug)]
pub struct NatsOptions {
    /// The `nats-server` executable.
    pub program: PathBuf,
    /// A folder on a file system mounted with `-o sync`, for the synchronous
    /// mode when the server has no `sync_interval` (see `nats`).
    pub sync_dir: Option<PathBuf>,
}

#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub scenario: Scenario,
    /// Length of each timed phase.
    pub duration: Duration,
    /// Sends (or status-move chains) in flight at once.
    pub concurrency: usize,
    /// Bytes of the one attachment each document carries.
    pub attachment_bytes: usize,
    /// The attachment scenario's sizes, one phase each, in order.
    pub attachment_sizes: Vec<u64>,
    pub fanout: FanoutMix,
    pub rate: RateSpec,
    /// Agencies per scenario; each sends and receives.
    pub agencies: usize,
    /// Unacknowledged items each node's delivery stream accepts.
    pub window: u32,
    /// Envelopes signed before each timed send phase; `None` sizes the pool
    /// from the duration and [`PRESIGN_RATE_PLANNED`].
    pub presign: Option<usize>,
    /// Documents delivered before the timed status moves; `None` sizes them
    /// from the duration and [`MOVES_RATE_PLANNED`] (or
    /// [`BATCHED_MOVES_RATE_PLANNED`] when moves travel in batches).
    pub moves_documents: Option<usize>,
    /// Status moves per call: 1 sends each as a unary `MoveStatus`; more
    /// (a multiple of [`MOVES_PER_DELIVERY`]) sends whole paths of several
    /// deliveries in one `MoveStatuses`, as a node's application would.
    pub moves_per_call: usize,
    /// Recipients verify the sender's certificate and signature of every
    /// delivery, as a node does (client CPU on the same machine).
    pub verify_deliveries: bool,
    /// Documents also carry the document's own signature (verified by the hub).
    pub sign_documents: bool,
    /// Longest wait for the deliveries of the documents sent to arrive.
    pub drain_timeout: Duration,
    pub nats: Option<NatsOptions>,
}

/// Documents per second the pre-signed pool is sized for when unpaced: a
/// margin above what a 2-core machine accepts; a run that empties the pool
/// early says so.
pub const PRESIGN_RATE_PLANNED: f64 = 10_000.0;
/// Status moves per second the prepared deliveries are sized for, one
/// unary call per move.
pub const MOVES_RATE_PLANNED: f64 = 4000.0;
/// The same, for moves sent in batches: the target, which batches reach on a
/// 2-core machine. Delivering that many documents beforehand takes about
/// twice the timed phase (some 4,000 documents/s), untimed.
pub const BATCHED_MOVES_RATE_PLANNED: f64 = 100_000.0;
/// Moves in one `MoveStatuses` call unless asked otherwise: 16 deliveries'
/// whole paths, well under the hub's default `limits.moves_per_call_max`.
pub const MOVES_PER_CALL_DEFAULT: usize = 64;
/// Most envelopes signed for one phase (memory: about 2.5 KB each by default).
pub const PRESIGN_MAX: usize = 2_000_000;
/// Attachment bytes per second the attachment scenario's pool is sized
/// for: a margin above a fast NVMe drive's sequential writes (at most
/// [`PRESIGN_RATE_PLANNED`] documents/s for small attachments).
pub const ATTACHMENT_BYTES_RATE_PLANNED: f64 = 4e9;
/// The attachment scenario's sizes unless asked: from a one-page letter to
/// a large scanned document.
pub const ATTACHMENT_SIZES_DEFAULT: [u64; 4] = [1 << 10, 64 << 10, 1 << 20, 16 << 20];
/// The smallest attachment the scenario sends: every document's ends with
/// bytes of its own (`DISTINCT_SUFFIX_BYTES`), so that no two are equal.
pub const ATTACHMENT_SIZE_MIN: u64 = 64;
/// The largest: the scenario holds one attachment of each size in memory,
/// shared by the documents of its phase.
pub const ATTACHMENT_SIZE_MAX: u64 = 256 << 20;

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            scenario: Scenario::All,
            duration: Duration::from_secs(30),
            concurrency: 64,
            attachment_bytes: 2048,
            attachment_sizes: ATTACHMENT_SIZES_DEFAULT.to_vec(),
            fanout: FanoutMix::from_hundredths(363).expect("3.63 is in range"),
            rate: RateSpec::Unpaced,
            agencies: 8,
            window: 256,
            presign: None,
            moves_documents: None,
            moves_per_call: MOVES_PER_CALL_DEFAULT,
            verify_deliveries: false,
            sign_documents: false,
            drain_timeout: Duration::from_secs(120),
            nats: None,
        }
    }
}

impl BenchOptions {
    /// Everything wrong with the options, as sentences.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.duration.is_zero() {
            problems.push("--duration must be at least 1 second".to_owned());
        }
        if self.concurrency == 0 {
            problems.push("--concurrency must be at least 1".to_owned());
        }
        if !(2..=crate::agencies::AGENCIES_MAX).contains(&self.agencies) {
            problems.push(format!(
                "--agencies must be between 2 and {}",
                crate::agencies::AGENCIES_MAX
            ));
        } else if self.fanout.max_recipients() >= self.agencies {
            problems.push(format!(
                "a fan-out of {} needs at least {} agencies (nobody addresses itself); raise --agencies",
                self.fanout,
                self.fanout.max_recipients() + 1
            ));
        }
        if self.window == 0 {
            problems.push("--window must be at least 1".to_owned());
        }
        if self.presign == Some(0) || self.moves_documents == Some(0) {
            problems.push("--presign and --moves-documents must be at least 1".to_owned());
        }
        if self.moves_per_call == 0
            || (self.moves_per_call != 1 && !self.moves_per_call.is_multiple_of(MOVES_PER_DELIVERY))
        {
            problems.push(format!(
                "--moves-per-call must be 1 (one MoveStatus call per move) or a multiple of \
                 {MOVES_PER_DELIVERY} (the whole paths of deliveries in one MoveStatuses call)"
            ));
        }
        if self.nats.is_some() && !cfg!(feature = "nats") {
            problems.push(
                "--compare-nats: this truc was built without NATS; build it with `cargo build \
                 --release -p truc-cli --features nats` (bench/compare-nats.sh does)"
                    .to_owned(),
            );
        }
        if self.scenario == Scenario::Attachments {
            if self.attachment_sizes.is_empty() {
                problems.push("--attachment-sizes needs at least one size".to_owned());
            }
            let out_of_range: Vec<String> = self
                .attachment_sizes
                .iter()
                .filter(|size| !(ATTACHMENT_SIZE_MIN..=ATTACHMENT_SIZE_MAX).contains(*size))
                .map(|size| truc_domain::ByteSize(*size).to_string())
                .collect();
            if !out_of_range.is_empty() {
                problems.push(format!(
                    "--attachment-sizes: {} outside {} to {} (every attachment ends with bytes of \
                     its own; one of each size is held in memory)",
                    out_of_range.join(", "),
                    truc_domain::ByteSize(ATTACHMENT_SIZE_MIN),
                    truc_domain::ByteSize(ATTACHMENT_SIZE_MAX)
                ));
            }
            if self.rate != RateSpec::Unpaced {
                problems
                    .push("--rate: the attachment scenario measures bandwidth, unpaced".to_owned());
            }
        }
        if self.nats.is_some() && !self.scenario.includes(ScenarioKind::Fanout) {
            problems.push(
                "--compare-nats compares fan-out deliveries: use --scenario fanout or all"
                    .to_owned(),
            );
        }
        problems
    }

    /// Envelopes to sign for one send phase at `rate` (`None`: unpaced).
    pub fn pool_size(&self, rate: Option<f64>) -> usize {
        if let Some(count) = self.presign {
            return count;
        }
        let per_second = rate.unwrap_or(PRESIGN_RATE_PLANNED);
        // A paced run needs exactly rate × duration; one more second of margin.
        let seconds = self.duration.as_secs_f64() + if rate.is_some() { 1.0 } else { 0.0 };
        ((per_second * seconds).ceil() as usize).clamp(1, PRESIGN_MAX)
    }

    /// Envelopes to sign for one phase of the attachment scenario.
    pub fn attachments_pool_size(&self, attachment_bytes: u64) -> usize {
        if let Some(count) = self.presign {
            return count;
        }
        let per_second = (ATTACHMENT_BYTES_RATE_PLANNED / attachment_bytes.max(1) as f64)
            .min(PRESIGN_RATE_PLANNED);
        ((per_second * self.duration.as_secs_f64()).ceil() as usize).clamp(1, PRESIGN_MAX)
    }

    /// Documents to deliver before the timed status moves.
    pub fn moves_pool_size(&self) -> usize {
        if let Some(count) = self.moves_documents {
            return count;
        }
        let per_second = if self.moves_per_call > 1 {
            BATCHED_MOVES_RATE_PLANNED
        } else {
            MOVES_RATE_PLANNED
        };
        let deliveries = per_second * self.duration.as_secs_f64() / MOVES_PER_DELIVERY as f64;
        ((deliveries / self.fanout.mean()).ceil() as usize).clamp(1, PRESIGN_MAX)
    }
}

/// received → assigned → processing → completed.
pub const MOVES_PER_DELIVERY: usize = 4;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_consistent_and_contradictions_are_all_named() {
        assert!(BenchOptions::default().problems().is_empty());
        let options = BenchOptions {
            duration: Duration::ZERO,
            concurrency: 0,
            agencies: 4,
            scenario: Scenario::Intake,
            nats: Some(NatsOptions {
                program: "nats-server".into(),
                sync_dir: None,
            }),
            ..BenchOptions::default()
        };
        let problems = options.problems();
        // A build without the `nats` feature also names the missing NATS.
        let without_nats = !cfg!(feature = "nats");
        assert_eq!(
            problems.len(),
            4 + usize::from(without_nats),
            "{problems:?}"
        );
        assert!(problems.iter().any(|p| p.contains("at least 5 agencies")));
        assert_eq!(
            problems
                .iter()
                .any(|p| p.contains("this truc was built without NATS")),
            without_nats,
            "{problems:?}"
        );
    }

    #[test]
    fn pools_are_sized_from_the_duration_and_rate() {
        let options = BenchOptions {
            duration: Duration::from_secs(10),
            ..BenchOptions::default()
        };
        assert_eq!(options.pool_size(None), 100_000);
        assert_eq!(options.pool_size(Some(200.0)), 2_200);
        // 100,000 moves/s × 10 s / 4 moves per delivery / 3.63 recipients.
        assert_eq!(options.moves_pool_size(), 68_871);
        // One call per move: 4000 moves/s × 10 s / 4 / 3.63.
        let unary = BenchOptions {
            moves_per_call: 1,
            ..options.clone()
        };
        assert_eq!(unary.moves_pool_size(), 2_755);
        assert_eq!(
            BenchOptions {
                presign: Some(7),
                ..options
            }
            .pool_size(Some(1e6)),
            7
        );
    }

    #[test]
    fn moves_per_call_is_one_or_whole_paths() {
        for good in [1, 4, 64, 4096] {
            let options = BenchOptions {
                moves_per_call: good,
                ..BenchOptions::default()
            };
            assert!(options.problems().is_empty(), "{good}");
        }
        for bad in [0, 2, 6, 65] {
            let options = BenchOptions {
                moves_per_call: bad,
                ..BenchOptions::default()
            };
            let problems = options.problems();
            assert!(
                problems.len() == 1 && problems[0].contains("--moves-per-call"),
                "{bad}: {problems:?}"
            );
        }
    }

    #[test]
    fn rates_and_scenarios_parse() {
        assert_eq!("half".parse::<RateSpec>(), Ok(RateSpec::HalfOfMeasured));
        assert_eq!("250".parse::<RateSpec>(), Ok(RateSpec::PerSecond(250.0)));
        assert!("0".parse::<RateSpec>().is_err());
        assert!("fast".parse::<RateSpec>().is_err());
        assert_eq!("moves".parse::<Scenario>(), Ok(Scenario::Moves));
        assert_eq!("attachments".parse::<Scenario>(), Ok(Scenario::Attachments));
        assert!("everything".parse::<Scenario>().is_err());
        // `all` keeps to the figures BENCHMARKS.md records.
        assert!(!Scenario::All.includes(ScenarioKind::Attachments));
        assert!(Scenario::Attachments.includes(ScenarioKind::Attachments));
        assert!(!Scenario::Attachments.includes(ScenarioKind::Fanout));
    }

    #[test]
    fn attachment_sizes_are_checked_and_size_their_pools() {
        let options = BenchOptions {
            scenario: Scenario::Attachments,
            duration: Duration::from_secs(10),
            ..BenchOptions::default()
        };
        assert!(options.problems().is_empty(), "{:?}", options.problems());
        // 10,000 documents/s at most; 4 GB/s of 16 MiB documents is 238/s.
        assert_eq!(options.attachments_pool_size(1024), 100_000);
        assert_eq!(options.attachments_pool_size(16 << 20), 2_385);
        let bad = BenchOptions {
            attachment_sizes: vec![10, 1 << 20, 1 << 30],
            rate: RateSpec::PerSecond(5.0),
            ..options.clone()
        };
        let problems = bad.problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].contains("10 B, 1 GiB outside 64 B to 256 MiB"),
            "{problems:?}"
        );
        assert!(problems[1].starts_with("--rate"), "{problems:?}");
        let none = BenchOptions {
            attachment_sizes: Vec::new(),
            ..options
        };
        assert_eq!(none.problems().len(), 1);
    }
}
