//! The commit marker: a small file beside sled's that remembers how many
//! groups were acknowledged, so that data files which lost acknowledged
//! writes (truncated, overwritten, replaced, a log cut short by a corrupted
//! record, or writes a power cut took) are refused at open instead of served.
//!
//! The rule, and why it is sound:
//!
//! - The marker holds a *lower bound* `M` of the acknowledged groups: the
//!   writer writes group `g`'s number only after `g`'s journal record is
//!   synced, so `M` never names a group that was not durable first.
//! - At open, the last group the data files hold (sled's commit number, then
//!   the journal's groups) must be at least `M`, or the store refuses to open,
//!   naming both numbers.
//! - The marker is synced in the background (`SYNC_INTERVAL`), never on the
//!   writer's path. After a power cut it may therefore be older than the
//!   last acknowledgement, by about that interval, but never newer than what
//!   was durable: sound data is never condemned, and damage older than the
//!   interval is always caught. It is 24 bytes written at offset 0, inside
//!   one sector, so a cut leaves the old value or the new one, never half.
//! - Its own name, and the data directory's up to the root, are synced when
//!   it is created (with sled's first files), so that a power cut cannot take
//!   the marker and leave the data files, which would look like a fresh
//!   directory.
//!
//! An operator who restores an older backup on purpose deletes the marker.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::error::StoreError;
use crate::journal::sync_dir;

/// The file's name in the data directory.
pub const MARKER_FILE: &str = "commit-marker";

const MAGIC: &[u8; 8] = b"trucCM01";
const MARKER_BYTES: usize = 24;

/// How often a changed marker is synced: how far behind the acknowledged
/// groups it may be after a power cut.
const SYNC_INTERVAL: Duration = Duration::from_secs(1);

struct Shared {
    file: File,
    /// The last number written, and the last one synced.
    written: AtomicU64,
    synced: AtomicU64,
    stopping: Mutex<bool>,
    wake: Condvar,
}

impl Shared {
    /// Syncs the file if a newer number was written since the last sync.
    fn sync_if_newer(&self) -> std::io::Result<()> {
        let written = self.written.load(Ordering::Acquire);
        if written > self.synced.load(Ordering::Acquire) {
            self.file.sync_data()?;
            self.synced.fetch_max(written, Ordering::AcqRel);
        }
        Ok(())
    }
}

pub(crate) struct CommitMarker {
    shared: Arc<Shared>,
}

impl Drop for CommitMarker {
    fn drop(&mut self) {
        *self
            .shared
            .stopping
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = true;
        self.shared.wake.notify_all();
    }
}

/// The syncing thread: every `SYNC_INTERVAL` while the marker changed, and
/// once more when the marker is dropped (a graceful stop).
fn sync_loop(shared: Arc<Shared>) {
    loop {
        let stopping = {
            let stopping = shared.stopping.lock().unwrap_or_else(|p| p.into_inner());
            let (stopping, _) = shared
                .wake
                .wait_timeout_while(stopping, SYNC_INTERVAL, |stopping| !*stopping)
                .unwrap_or_else(|p| p.into_inner());
            *stopping
        };
        if let Err(error) = shared.sync_if_newer() {
            // A marker behind the data only weakens the check at the next open.
            tracing::warn!(%error, "cannot sync the commit marker");
        }
        if stopping {
            return;
        }
    }
}

impl CommitMarker {
    /// Opens (or creates) the marker in `dir` and returns the commit number
    /// it records, if any.
    pub(crate) fn open(dir: &Path) -> Result<(CommitMarker, Option<u64>), StoreError> {
        let path = dir.join(MARKER_FILE);
        let created = !path.exists();
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
        if created {
            // A new directory is made durable whole before anything is
            // acknowledged in it: sled's files as it created them, the
            // marker's name and the data directory's own (sled syncs none).
            let names = crate::durable::sync_tree_files(dir).and_then(|()| {
                // sled may have created the directory and its parents: each
                // name up the chain is synced, as the last one created is unknown.
                for ancestor in dir.ancestors().skip(1) {
                    if !ancestor.as_os_str().is_empty() {
                        sync_dir(ancestor)?;
                    }
                }
                Ok(())
            });
            names
                .map_err(|error| marker_error(&path, format!("cannot sync its folder: {error}")))?;
        }
        let shared = Arc::new(Shared {
            file,
            written: AtomicU64::new(recorded.unwrap_or(0)),
            synced: AtomicU64::new(recorded.unwrap_or(0)),
            stopping: Mutex::new(false),
            wake: Condvar::new(),
        });
        {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("truc-store-marker".into())
                .spawn(move || sync_loop(shared))
                .map_err(|error| {
                    marker_error(&path, format!("cannot start its thread: {error}"))
                })?;
        }
        Ok((CommitMarker { shared }, recorded))
    }

    /// Records that group `seq` is acknowledged: called only once its
    /// journal record is synced (the rule above).
    pub(crate) fn record(&self, seq: u64) -> std::io::Result<()> {
        let mut bytes = [0u8; MARKER_BYTES];
        bytes[..8].copy_from_slice(MAGIC);
        bytes[8..16].copy_from_slice(&seq.to_le_bytes());
        bytes[16..24].copy_from_slice(&(!seq).to_le_bytes());
        // One write at offset 0, within one sector: it is never half new.
        self.shared.file.write_all_at(&bytes, 0)?;
        self.shared.written.fetch_max(seq, Ordering::AcqRel);
        Ok(())
    }

    /// Makes the marker durable now (at open, so that a fresh directory's
    /// first marker is not lost with a power cut).
    pub(crate) fn sync(&mut self) -> std::io::Result<()> {
        self.shared.file.sync_data()?;
        let written = self.shared.written.load(Ordering::Acquire);
        self.shared.synced.fetch_max(written, Ordering::AcqRel);
        Ok(())
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
