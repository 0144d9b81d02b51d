//! edXML of QCVN 102:2016, as agencies' document systems exchange it
//! through their vendors' SDKs: document packages and status messages
//! parsed under limits ([`tree`], [`parse`]), checked element by element
//! ([`check`]), written ([`write`]), and mapped to and from the envelope
//! header of `truc-domain` ([`envelope`], [`status`]); the JSON folder form
//! ([`json`]) and what an outbox holds ([`source`]). No I/O but reading
//! the files of an entry; no wire types.

pub mod check;
pub mod envelope;
pub mod fields;
pub mod json;
pub mod model;
pub mod parse;
pub mod problem;
pub mod source;
pub mod status;
pub mod tree;
pub mod write;

pub use check::{check_package, check_status, CheckContext};
pub use envelope::{
    from_envelope, is_extra, to_envelope, AttachmentBytes, EnvelopeParts, Extra, FromEnvelopeError,
    EXTRA_ATTACHMENT_NAME, EXTRA_MEDIA_TYPE,
};
pub use fields::{element_for_field, status_element_for_field};
pub use model::*;
pub use parse::{parse_message, AttachmentFiles, InlineOnly};
pub use problem::{Category, Problem, Refused, Severity};
pub use source::{load_entry, read_edxml, read_entry, Checked, Entry, FolderFiles};
pub use status::{notice_message, status_move, StatusMove};
pub use tree::EdxmlLimits;
pub use write::{write_package, write_status, WriteError};
