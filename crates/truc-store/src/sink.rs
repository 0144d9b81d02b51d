//! Where retention puts what leaves the live store: an archive file, whose
//! format lives outside the store (the `truc-archive` crate) and is the
//! same whatever the engine. The store's writer hands a batch to the sink
//! and commits the removal only once the sink says the batch is on disk.

use crate::audit::AuditHead;
use crate::engine::Reader;
use crate::error::StoreError;
use crate::records::ArchiveFile;
use crate::rules::ArchiveBatch;

/// The bytes of one attachment, a piece at a time.
pub type Chunks<'a> = Box<dyn Iterator<Item = Result<Vec<u8>, StoreError>> + 'a>;

/// The stored bytes of attachments, for the sink to copy into an archive.
pub trait BlobSource {
    fn chunks(&self, sha256: &[u8; 32]) -> Result<Chunks<'_>, StoreError>;
}

/// An engine's reader as the sink's source of attachment bytes.
pub(crate) struct ReaderBlobs<'a>(pub &'a dyn Reader);

impl BlobSource for ReaderBlobs<'_> {
    fn chunks(&self, sha256: &[u8; 32]) -> Result<Chunks<'_>, StoreError> {
        self.0.blob_chunks(sha256)
    }
}

/// An archive writer. Called on the store's writer thread, one batch at a
/// time: every call must leave the file durable before it returns `Ok`.
pub trait ArchiveSink: Send + Sync {
    /// The file name for a new archive of `period` (`yyyy-mm`).
    fn file_name(&self, period: &str) -> String;

    /// Appends `batch` to `file`: first cuts the file back to
    /// `file.committed_bytes` (what a crash left after it was never
    /// committed; a new file starts empty), then writes the batch and its
    /// seal and syncs. Returns the file's state with the batch and, for each
    /// document of the batch in order, where its record starts.
    fn append(
        &self,
        file: &ArchiveFile,
        batch: &ArchiveBatch,
        blobs: &dyn BlobSource,
    ) -> Result<(ArchiveFile, Vec<u64>), StoreError>;

    /// Before a new file is started: sets aside this hub's files in the
    /// archive directory whose names are not in `committed` (the names of
    /// every file the store has recorded). Such a file can only hold the
    /// first batch of a period written before a crash, before the store
    /// recorded it; its documents are still live and are archived again.
    /// Set aside, not removed: its bytes stay for whoever looks. Returns
    /// the names set aside.
    fn set_aside_uncommitted(
        &self,
        committed: &std::collections::BTreeSet<String>,
    ) -> Result<Vec<String>, StoreError>;

    /// Cuts `file` back to what was committed and seals it for good;
    /// `live_audit_head` is where the hub's audit chain stands.
    fn close(
        &self,
        file: &ArchiveFile,
        at_unix_ms: i64,
        live_audit_head: AuditHead,
    ) -> Result<ArchiveFile, StoreError>;
}

/// One retention step asked of the store.
#[derive(Clone, Debug)]
pub struct RetireRequest {
    /// Documents to consider, oldest first (the store checks each again).
    pub candidates: Vec<String>,
    /// Documents accepted before this instant may leave.
    pub cutoff_unix_ms: i64,
    /// Now, by the hub's clock.
    pub at_unix_ms: i64,
    /// The archive period now (`yyyy-mm`): an open archive of another
    /// period is closed first.
    pub period: String,
    /// This hub's name, recorded with the files it writes.
    pub hub: String,
    /// Most audit entries one batch takes.
    pub audit_entries_max: usize,
}

/// Where the environment variable [`CRASH_AT_VARIABLE`] names a step,
/// the process kills itself (SIGKILL) on reaching it: the retention crash
/// tests stop the hub at each step of archiving this way.
pub const CRASH_AT_VARIABLE: &str = "TRUC_CRASH_AT";

/// Kills the process here if [`CRASH_AT_VARIABLE`] names `step`.
pub fn crash_point(step: &str) {
    static CRASH_AT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let at = CRASH_AT.get_or_init(|| std::env::var(CRASH_AT_VARIABLE).ok());
    if at.as_deref() == Some(step) {
        tracing::warn!(step, "stopping here as {CRASH_AT_VARIABLE} asks");
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        // SIGKILL cannot be caught: nothing after this runs.
        std::process::abort();
    }
}
