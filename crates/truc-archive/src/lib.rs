//! Archive files: what leaves the hub's live store under retention, kept
//! for good and checkable offline. One append-only file per month holds
//! each archived document's signed envelope as received, its sender's
//! certificate, its attachments, every delivery's status history, its dead
//! letters, overdue records and links, and the run of the audit chain that
//! left with them; each batch ends with a seal the hub signs, listing every
//! frame's SHA-256. The same format comes from either storage engine
//! (docs/ARCHIVES.md).

pub mod format;
pub mod read;
pub mod verify;
mod write;

pub use format::{DocumentFrame, FILE_SUFFIX, FORMAT, UNCOMMITTED_SUFFIX};
pub use read::{ArchiveError, ArchiveReader};
pub use verify::{verify, Problem, Verification};
pub use write::ArchiveWriter;
