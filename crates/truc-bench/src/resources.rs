//! What a server process costs: its peak resident memory (`VmHWM` in
//! `/proc/<pid>/status`) and the bytes its data directory takes on disk.

use std::path::Path;

/// The peak resident set size of a process, in bytes, while it runs.
pub fn peak_rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    vm_hwm_bytes(&status)
}

/// `VmHWM:   123456 kB` → bytes.
fn vm_hwm_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let mut parts = line["VmHWM:".len()..].split_whitespace();
    let kilobytes: u64 = parts.next()?.parse().ok()?;
    (parts.next()? == "kB").then_some(kilobytes * 1024)
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
