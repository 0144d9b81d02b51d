//! The domain of the axis: agency codes, document ids, envelope headers,
//! signatures, the status machine and limits; and the seeded generator that
//! plans, crash tests and benches draw from, and byte sizes as flags write
//! them; the axis's answers as plain types (`views`). No I/O, no wire or
//! disk types.

pub mod agency;
pub mod byte_size;
pub mod document;
pub mod envelope;
pub mod file_name;
pub mod limits;
pub mod signature;
pub mod splitmix;
pub mod status;
pub mod views;

pub use agency::{AgencyCode, AgencyCodeError};
pub use byte_size::{ByteSize, ByteSizeError};
pub use document::{sender_of_id, vietnam_time, DocumentDate, DocumentId, DocumentIdError};
pub use envelope::{
    Addressee, AttachmentMeta, BusinessType, EnvelopeError, Header, Organ, RawAttachment,
    RawHeader, RawOrgan,
};
pub use file_name::{
    check_attachment_name, check_attachment_names, AttachmentNameError, ATTACHMENT_NAME_BYTES_MAX,
    ATTACHMENT_NAME_CHARS_MAX,
};
pub use limits::{Limits, MERGED_ACKS_MAX};
pub use signature::{
    document_signing_bytes, envelope_signing_bytes, verify_archive_seal, verify_audit_export,
    verify_document, verify_envelope, KeyAlgorithm, PublicKey, SignatureError, SigningKey,
};
pub use splitmix::SplitMix64;
pub use status::{check_reason, RequestEffect, Status, StatusMoveError};
