//! What a server process costs: its resident memory now and at its peak (`VmRSS`, `VmHWM` in
//! `/proc/<pid>/status`), its peak over one phase (`VmRSS` sampled), the CPU time it used
//! (`/proc/<pid>/stat`), and the bytes its data directory takes on disk; and what the disk
//! under it can do: sequential writes with an `fdatasync` after each.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

/// The peak resident set size of a process, in bytes, while it runs.
pub fn peak_rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    vm_hwm_bytes(&status)
}

/// The resident set size of a process now, in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status_kib_field(&status, "VmRSS:")
}

/// The resident set size of a process now and at its peak, in bytes, from
/// one reading: read apart, the process may grow past the peak read first.
pub fn rss_and_peak_bytes(pid: u32) -> (Option<u64>, Option<u64>) {
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(status) => (status_kib_field(&status, "VmRSS:"), vm_hwm_bytes(&status)),
        Err(_) => (None, None),
    }
}

/// `VmHWM:   123456 kB` → bytes.
fn vm_hwm_bytes(status: &str) -> Option<u64> {
    status_kib_field(status, "VmHWM:")
}

fn status_kib_field(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with(field))?;
    let mut parts = line[field.len()..].split_whitespace();
    let kilobytes: u64 = parts.next()?.parse().ok()?;
    (parts.next()? == "kB").then_some(kilobytes * 1024)
}

/// Clock ticks per second of `/proc/<pid>/stat` times: Linux's USER_HZ,
/// 100 on every architecture it reports to user space with.
const USER_HZ: f64 = 100.0;

/// CPU seconds (user and system, all threads) a process has used so far.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat_cpu_seconds(&stat)
}

/// Fields 14 and 15 (utime, stime) of a stat line; the command name before
/// them is in parentheses and may hold spaces.
fn stat_cpu_seconds(stat: &str) -> Option<f64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // `after_name` starts at field 3 (state).
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some((user + system) as f64 / USER_HZ)
}

/// CPU use of the server and of this process over one phase.
pub struct CpuMeter {
    server: Option<u32>,
    started: std::time::Instant,
    server_at_start: Option<f64>,
    own_at_start: Option<f64>,
}

impl CpuMeter {
    pub fn start(server: Option<u32>) -> Self {
        Self {
            server,
            started: std::time::Instant::now(),
            server_at_start: server.and_then(cpu_seconds),
            own_at_start: cpu_seconds(std::process::id()),
        }
    }

    /// Cores used on average since `start`: (server, this process).
    pub fn cores(&self) -> (Option<f64>, Option<f64>) {
        let wall = self.started.elapsed().as_secs_f64().max(1e-9);
        let used =
            |pid: Option<u32>, at_start: Option<f64>| Some((cpu_seconds(pid?)? - at_start?) / wall);
        (
            used(self.server, self.server_at_start),
            used(Some(std::process::id()), self.own_at_start),
        )
    }
}

/// The highest `VmRSS` of a process over a stretch of time, read every
/// `every` by a task of its own. `VmHWM` cannot give it: that is the peak
/// over the process's whole life, so a phase after a larger one would show
/// the larger one's peak.
pub struct RssSampler {
    peak: Arc<AtomicU64>,
    samples: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    pub fn start(pid: u32, every: Duration) -> Self {
        let peak = Arc::new(AtomicU64::new(0));
        let samples = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn({
            let (peak, samples) = (peak.clone(), samples.clone());
            async move {
                let mut ticks = tokio::time::interval(every);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                loop {
                    ticks.tick().await;
                    if let Some(rss) = rss_bytes(pid) {
                        peak.fetch_max(rss, Ordering::AcqRel);
                        samples.fetch_add(1, Ordering::AcqRel);
                    }
                }
            }
        });
        Self {
            peak,
            samples,
            task,
        }
    }

    /// One last sample, then the highest seen (`None` if the process could
    /// never be read) and how many samples it is the highest of.
    pub fn stop(self, pid: u32) -> (Option<u64>, u64) {
        self.task.abort();
        if let Some(rss) = rss_bytes(pid) {
            self.peak.fetch_max(rss, Ordering::AcqRel);
            self.samples.fetch_add(1, Ordering::AcqRel);
        }
        let samples = self.samples.load(Ordering::Acquire);
        (
            (samples > 0).then(|| self.peak.load(Ordering::Acquire)),
            samples,
        )
    }
}

/// What the disk did for [`sequential_write_sync`].
#[derive(Clone, Debug, Default, Serialize)]
pub struct DiskBandwidth {
    /// The file written (removed afterwards).
    pub path: String,
    /// Bytes of each write, each followed by an `fdatasync`.
    pub chunk_bytes: u64,
    pub bytes: u64,
    pub syncs: u64,
    pub seconds: f64,
    /// Millions of bytes per second.
    pub mb_per_second: f64,
}

/// Where to measure the disk under a data directory: beside it when its
/// parent is on the same file system (nothing of the hub's is touched),
/// else inside it.
pub fn disk_probe_folder(data_dir: &Path) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let device = |path: &Path| std::fs::metadata(path).map(|m| m.dev()).ok();
    match data_dir.parent() {
        Some(parent) if device(parent).is_some() && device(parent) == device(data_dir) => {
            parent.to_owned()
        }
        _ => data_dir.to_owned(),
    }
}

/// Appends `chunk_bytes` at a time to a new file in `dir`, each write
/// followed by an `fdatasync` (what the hub does before it acknowledges),
/// until `time_max` has passed or `bytes_max` are written, and at least
/// `chunks_min` times; then removes the file. The bytes are pseudo-random
/// so that no layer below can make light of them.
pub fn sequential_write_sync(
    dir: &Path,
    chunk_bytes: u64,
    time_max: Duration,
    bytes_max: u64,
    chunks_min: u64,
) -> std::io::Result<DiskBandwidth> {
    let path = dir.join(format!(".truc-bench-disk-{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    let _remove = RemoveOnDrop(path.clone());
    let length = usize::try_from(chunk_bytes.max(1)).map_err(std::io::Error::other)?;
    let mut chunk = Vec::with_capacity(length + 8);
    let mut rng = truc_domain::SplitMix64::new(chunk_bytes ^ u64::from(std::process::id()));
    while chunk.len() < length {
        chunk.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    chunk.truncate(length);
    let started = Instant::now();
    let mut written = 0u64;
    let mut syncs = 0u64;
    loop {
        file.write_all(&chunk)?;
        file.sync_data()?;
        written += chunk.len() as u64;
        syncs += 1;
        if syncs >= chunks_min && (started.elapsed() >= time_max || written >= bytes_max) {
            break;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(DiskBandwidth {
        path: path.display().to_string(),
        chunk_bytes: chunk.len() as u64,
        bytes: written,
        syncs,
        seconds,
        mb_per_second: written as f64 / 1e6 / seconds.max(1e-9),
    })
}

/// Removes a file when dropped, whatever happened meanwhile.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Bytes allocated on disk under `dir` (blocks, as `du` counts them, so
/// sparse or preallocated files count for what they really take).
pub fn disk_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0u64;
    let mut pending = vec![dir.to_owned()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder)? {
            let entry = entry?;
            let metadata = entry.metadata()?;
            if metadata.is_dir() {
                pending.push(entry.path());
            } else {
                total += metadata.blocks() * 512;
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_is_read_from_the_status_file() {
        let status =
            "Name:\ttruc\nVmPeak:\t  900000 kB\nVmHWM:\t   51200 kB\nVmRSS:\t   40000 kB\n";
        assert_eq!(vm_hwm_bytes(status), Some(51200 * 1024));
        assert_eq!(vm_hwm_bytes("Name:\tx\n"), None);
        assert_eq!(vm_hwm_bytes("VmHWM:\t12 MB\n"), None);
        // This very process has a peak.
        assert!(peak_rss_bytes(std::process::id()).unwrap() > 1024 * 1024);
        let now = rss_bytes(std::process::id()).unwrap();
        assert!(now > 1024 * 1024 && now <= peak_rss_bytes(std::process::id()).unwrap());
    }

    #[test]
    fn cpu_time_is_read_past_a_command_name_with_spaces() {
        let stat = "4242 (truc hub (x)) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 9 0";
        assert_eq!(stat_cpu_seconds(stat), Some(3.25));
        assert_eq!(stat_cpu_seconds("garbage"), None);
        // This process has used some CPU, and a busy loop shows up.
        let meter = CpuMeter::start(None);
        let until = std::time::Instant::now() + std::time::Duration::from_millis(300);
        let mut spin = 0u64;
        while std::time::Instant::now() < until {
            spin = spin.wrapping_add(1);
        }
        assert!(spin > 0);
        let (server, own) = meter.cores();
        assert_eq!(server, None);
        assert!(own.unwrap() > 0.3, "{own:?}");
    }

    #[test]
    fn the_disk_probe_writes_and_syncs_what_it_says_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let probe = sequential_write_sync(
            dir.path(),
            64 * 1024,
            Duration::from_millis(100),
            1 << 20,
            3,
        )
        .unwrap();
        assert_eq!(probe.chunk_bytes, 64 * 1024);
        assert_eq!(probe.bytes, probe.syncs * 64 * 1024);
        assert!((3..=16).contains(&probe.syncs), "{probe:?}");
        assert!(probe.mb_per_second > 0.0);
        let expected = probe.bytes as f64 / 1e6 / probe.seconds;
        assert!((probe.mb_per_second - expected).abs() < 1e-6 * expected);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        // Beside a data directory, on the same file system.
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        assert_eq!(disk_probe_folder(&data), dir.path());
    }

    #[tokio::test]
    async fn the_sampler_keeps_the_highest_rss_it_saw() {
        let pid = std::process::id();
        let sampler = RssSampler::start(pid, Duration::from_millis(5));
        let held = vec![1u8; 64 << 20];
        tokio::time::sleep(Duration::from_millis(50)).await;
        let peak_with = rss_bytes(pid).unwrap();
        drop(held);
        let (peak, samples) = sampler.stop(pid);
        assert!(samples >= 2, "{samples}");
        // Other tests of this process allocate too: within 8 MiB of what it held.
        let peak = peak.unwrap();
        assert!(peak + (8 << 20) >= peak_with, "{peak} against {peak_with}");
    }

    #[test]
    fn disk_bytes_count_allocated_blocks_in_nested_folders() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("inner")).unwrap();
        std::fs::write(dir.path().join("a"), vec![7u8; 100_000]).unwrap();
        std::fs::write(dir.path().join("inner/b"), vec![7u8; 50_000]).unwrap();
        let bytes = disk_bytes(dir.path()).unwrap();
        assert!((150_000..=170_000).contains(&bytes), "{bytes}");
    }
}
