//! What a server process costs: its resident memory now and at its peak (`VmRSS`, `VmHWM` in
//! `/proc/<pid>/status`), the CPU time it used (`/proc/<pid>/stat`), and the
//! bytes its data directory takes on disk.

use std::path::Path;

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
    fn disk_bytes_count_allocated_blocks_in_nested_folders() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("inner")).unwrap();
        std::fs::write(dir.path().join("a"), vec![7u8; 100_000]).unwrap();
        std::fs::write(dir.path().join("inner/b"), vec![7u8; 50_000]).unwrap();
        let bytes = disk_bytes(dir.path()).unwrap();
        assert!((150_000..=170_000).contains(&bytes), "{bytes}");
    }
}
