//! The commit marker: a small file beside sled's that remembers how many
//! groups were made durable, so that a data file which lost acknowledged
//! writes (truncated, overwritten, replaced, or its log cut short by a
//! corrupted record) is refused at open instead of served.
//!
//! sled recovers a damaged log by keeping what precedes the damage, which is
//! right for a write torn by a crash but silently drops acknowledged data
//! when older bytes are damaged. The writer stores a commit number in every
//! group's batch and, once the flush returns, writes the same number here;
//! at open the number sled recovered must be at least the marker's.
//!
//! The marker is written after the flush and not synced itself: after a
//! crash it can only be behind sled, never ahead, so it never condemns
//! sound data; it can miss damage only in the writes since the last time
//! the page cache reached the disk.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::StoreError;

/// The file's name in the data directory.
pub const MARKER_FILE: &str = "commit-marker";

const MAGIC: &[u8; 8] = b"trucCM01";
const MARKER_BYTES: usize = 24;

pub(crate) struct CommitMarker {
    file: File,
}

impl CommitMarker {
    /// Opens (or creates) the marker in `dir` and returns the commit number
    /// it records, if any.
    pub(crate) fn open(dir: &Path) -> Result<(CommitMarker, Option<u64>), StoreError> {
        let path = dir.join(MARKER_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|error| marker_error(&path, format!("cannot open it: {error}")))?;
        let mut bytes = Vec::with_capacity(MARKER_BYTES);
        file.read_to_end(&mut bytes)
            .map_err(|error| marker_error(&path, format!("cannot read it: {error}")))?;
        let recorded = match bytes.len() {
            0 => None,
            MARKER_BYTES if &bytes[..8] == MAGIC => {
                let seq = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
                let check = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
                if check != !seq {
                    return Err(marker_error(
                        &path,
                        "its two copies of the commit number disagree",
                    ));
                }
                Some(seq)
            }
            length => {
                return Err(marker_error(
                    &path,
                    format!("{length} bytes where a marker has {MARKER_BYTES}"),
                ))
            }
        };
        Ok((CommitMarker { file }, recorded))
    }

    /// Records that commit `seq` is durable in sled.
    pub(crate) fn record(&self, seq: u64) -> std::io::Result<()> {
        let mut bytes = [0u8; MARKER_BYTES];
        bytes[..8].copy_from_slice(MAGIC);
        bytes[8..16].copy_from_slice(&seq.to_le_bytes());
        bytes[16..24].copy_from_slice(&(!seq).to_le_bytes());
        // One write at offset 0, within one sector: it is never half new.
        self.file.write_all_at(&bytes, 0)
    }

    /// Makes the marker durable (at open, so that a fresh directory's first
    /// marker is not lost with a crash before the page cache reaches the disk).
    pub(crate) fn sync(&mut self) -> std::io::Result<()> {
        self.file.flush()?;
        self.file.sync_data()
    }
}

/// The data lost: sled recovered fewer commits than were acknowledged.
pub(crate) fn lost_commits(dir: &Path, recovered: u64, recorded: u64) -> StoreError {
    StoreError::DataLost {
        dir: dir.display().to_string(),
        reason: format!(
            "the data files hold {recovered} durable commit(s) but {recorded} were acknowledged \
             (recorded in {}): they were truncated, overwritten or damaged. Restore the \
             directory from a backup; if this directory is itself a restored backup and you \
             accept losing what came after it, delete {} and start again",
            dir.join(MARKER_FILE).display(),
            dir.join(MARKER_FILE).display()
        ),
    }
}

fn marker_error(path: &Path, reason: impl Into<String>) -> StoreError {
    StoreError::DataLost {
        dir: path.parent().unwrap_or(path).display().to_string(),
        reason: format!(
            "the commit marker {} is unreadable: {}; if the data files are known to be sound, \
             delete it and start again",
            path.display(),
            reason.into()
        ),
    }
}
