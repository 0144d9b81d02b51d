//! The flags of `truc crashtest`, and the seeded waits between faults they set.

use std::path::PathBuf;
use std::time::Duration;

use truc_domain::SplitMix64;

#[derive(clap::Args, Debug, Clone)]
pub struct CrashtestArgs {
    /// Documents to send (each to 1–3 recipients, each delivery moved 0–3 times).
    #[arg(long, default_value_t = 2_400)]
    pub documents: usize,
    /// Times the hub process is killed with SIGKILL and restarted.
    #[arg(long, default_value_t = 24)]
    pub hub_kills: u32,
    /// Times a node agent process is killed with SIGKILL and restarted.
    #[arg(long, default_value_t = 8)]
    pub node_kills: u32,
    /// Seeds the plan, the moments of the kills and which node is killed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Documents sent per second, so that the load spans the kills (default 80; with
    /// --power-cut, spread over the cuts).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Shortest and longest run time between two hub kills, in milliseconds.
    #[arg(long, default_value_t = 400)]
    pub kill_after_min_ms: u64,
    #[arg(long, default_value_t = 1_600)]
    pub kill_after_max_ms: u64,
    /// Sends in flight at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Fail when the load has not completed this long after the last kill.
    #[arg(long, default_value_t = 180)]
    pub settle_timeout_secs: u64,
    /// Write the figures as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Keep the hub's data, inboxes and logs in this folder instead of a temporary one.
    #[arg(long)]
    pub keep: Option<PathBuf>,
    /// Cut the power instead of killing processes: the hub's data directory and the inboxes
    /// live on a FUSE file system that loses (or tears) what was not synced. Needs /dev/fuse
    /// and root.
    #[arg(long)]
    pub power_cut: bool,
    /// Power cuts, with --power-cut (each aimed in turn at a send, a delivery, a status move,
    /// a checkpoint, the hub's start and a payload write).
    #[arg(long, default_value_t = 100)]
    pub cuts: u32,
    /// Checks a stopped hub's data directory against the plan of --documents and --seed,
    /// printing each problem (the power-cut run does this in a process of its own, so that
    /// the store's threads never outlive the file system they use).
    #[arg(long, hide = true)]
    pub check_stopped: Option<PathBuf>,
    /// Run two hubs on a PostgreSQL database kept by three Patroni members (installed from
    /// Debian's packages if missing) and kill the database's primary as well as hubs.
    #[arg(long, conflicts_with = "power_cut")]
    pub cluster: bool,
    /// Database failovers, with --cluster: the primary's Patroni and postmaster SIGKILLed,
    /// a new leader elected, the killed member started again to rejoin as a replica.
    #[arg(long, default_value_t = 10)]
    pub db_failovers: u32,
    /// With --cluster: instead of the crash test's load, replay this published period
    /// (2019, 2021 or 2022) through the two hubs while the faults fall, and compare the
    /// hubs' own report with the published (or scaled) figures.
    #[arg(long, requires = "cluster", value_name = "PERIOD")]
    pub replay: Option<truc_replay::published::Dataset>,
    /// With --replay: replay a proportional slice, e.g. 1/10.
    #[arg(long, requires = "replay", value_parser = truc_replay::published::parse_scale, value_name = "N/D")]
    pub scale: Option<(u64, u64)>,
}

impl CrashtestArgs {
    /// The run time before the next fault: from `--kill-after-min-ms` to
    /// `--kill-after-max-ms`, drawn from the run's generator.
    pub(crate) fn kill_wait(&self, rng: &mut SplitMix64) -> Duration {
        let span = self
            .kill_after_max_ms
            .saturating_sub(self.kill_after_min_ms)
            + 1;
        Duration::from_millis(self.kill_after_min_ms + rng.below_modulo(span))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        args: CrashtestArgs,
    }

    #[test]
    fn the_wait_between_faults_stays_within_the_flags() {
        let args = Command::parse_from([
            "crashtest",
            "--kill-after-min-ms",
            "300",
            "--kill-after-max-ms",
            "900",
        ])
        .args;
        let mut rng = SplitMix64::new(1);
        let waits: Vec<u128> = (0..1000)
            .map(|_| args.kill_wait(&mut rng).as_millis())
            .collect();
        assert!(waits.iter().all(|ms| (300..=900).contains(ms)), "{waits:?}");
    }
}
