//! The archive file format, `truc.archive.v1`: a sequence of frames, each
//! `length (u32 BE, of kind and body) | kind (u8) | body`, bodies in
//! postcard (docs/ARCHIVES.md gives every field). A file opens with its
//! header; each batch is its certificates, attachments, documents and a
//! run of the audit chain, then a seal listing every frame since the last
//! one with its SHA-256, signed by the hub, then an end marker giving the
//! seal's offset, so that the last seal is found from the file's end.

use serde::{Deserialize, Serialize};
use truc_store::{
    AuditEntry, DeadLetterRecord, DeliveryRecord, DocumentSignatureState, LinkRecord,
    OverdueRecord, RefusedRecipient,
};

/// The format this crate writes and reads.
pub const FORMAT: &str = "truc.archive.v1";
/// Archive files end in this.
pub const FILE_SUFFIX: &str = ".truca";
/// Added to the name of a file set aside because the store never recorded it.
pub const UNCOMMITTED_SUFFIX: &str = ".uncommitted";

/// Most bytes one frame may hold (its length field is 32 bits).
pub const FRAME_BYTES_MAX: u64 = u32::MAX as u64;
/// Bytes of a frame's length and kind.
pub const FRAME_HEAD_BYTES: u64 = 5;
/// Bytes of an end marker frame: head and the seal's offset.
pub const SEAL_END_BYTES: u64 = FRAME_HEAD_BYTES + 8;
/// Audit entries in one frame.
pub const AUDIT_ENTRIES_PER_FRAME: usize = 1024;

/// What a frame holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FrameKind {
    Header,
    Certificate,
    Attachment,
    Document,
    Audit,
    Seal,
    SealEnd,
}

impl FrameKind {
    pub fn byte(self) -> u8 {
        match self {
            FrameKind::Header => 1,
            FrameKind::Certificate => 2,
            FrameKind::Attachment => 3,
            FrameKind::Document => 4,
            FrameKind::Audit => 5,
            FrameKind::Seal => 6,
            FrameKind::SealEnd => 7,
        }
    }

    pub fn from_byte(byte: u8) -> Option<FrameKind> {
        Some(match byte {
            1 => FrameKind::Header,
            2 => FrameKind::Certificate,
            3 => FrameKind::Attachment,
            4 => FrameKind::Document,
            5 => FrameKind::Audit,
            6 => FrameKind::Seal,
            7 => FrameKind::SealEnd,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            FrameKind::Header => "header",
            FrameKind::Certificate => "certificate",
            FrameKind::Attachment => "attachment",
            FrameKind::Document => "document",
            FrameKind::Audit => "audit entries",
            FrameKind::Seal => "seal",
            FrameKind::SealEnd => "end marker",
        }
    }
}

/// The first frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveHeader {
    pub format: String,
    /// The month the file gathers, `yyyy-mm` (the hub's clock, Vietnam time).
    pub period: String,
    /// The hub that writes it (empty for a hub on the embedded store).
    pub hub: String,
    pub created_at_unix_ms: i64,
    /// The CA certificates (DER) that issued the agencies' and the hub's
    /// certificates, so that the file can be checked on its own.
    pub ca_certificates: Vec<Vec<u8>>,
}

/// A sender's certificate, once per file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateFrame {
    pub sha256: [u8; 32],
    pub der: Vec<u8>,
}

/// One document and everything the live store held of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentFrame {
    pub document_id: String,
    pub sender: String,
    pub date_key: u32,
    pub subject: String,
    pub accepted_at_unix_ms: i64,
    /// SHA-256 of `header_bytes`.
    pub content_sha256: [u8; 32],
    /// The signed envelope header exactly as received, and its signature.
    pub header_bytes: Vec<u8>,
    pub signature: Vec<u8>,
    /// The sender's certificate (a certificate frame of the same file).
    pub certificate_sha256: [u8; 32],
    /// The document's own signature: the signer's certificate and signature.
    pub document_signature: Option<(Vec<u8>, Vec<u8>)>,
    pub document_signature_state: DocumentSignatureState,
    pub recipients: Vec<String>,
    pub refused: Vec<RefusedRecipient>,
    /// SHA-256 and size of each attachment (attachment frames of the same file).
    pub attachments: Vec<([u8; 32], u64)>,
    pub deliveries: Vec<DeliveryRecord>,
    pub dead_letters: Vec<DeadLetterRecord>,
    pub overdue: Vec<OverdueRecord>,
    pub links: Vec<LinkRecord>,
}

/// One frame as a seal lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameRef {
    pub offset: u64,
    pub kind: u8,
    /// SHA-256 of the whole frame (length, kind and body).
    pub sha256: [u8; 32],
    /// What the frame holds: the document's id for a document frame, the
    /// hex SHA-256 of the certificate or attachment for those, else empty.
    pub name: String,
}

/// What the hub signs at the end of each batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealBody {
    /// 1 for the first batch.
    pub batch: u64,
    /// SHA-256 of the previous seal's frame (zeros for the first).
    pub previous_seal_sha256: [u8; 32],
    /// Where the previous seal starts (0 for the first).
    pub previous_seal_offset: u64,
    /// Every frame since the previous end marker (the header, for the first).
    pub frames: Vec<FrameRef>,
    /// Documents in the file through this batch.
    pub documents_total: u64,
    /// The audit chain's entries in the file through this batch (0, 0: none),
    /// the hash of the entry before the first, and the last one's hash.
    pub audit_first_seq: u64,
    pub audit_last_seq: u64,
    pub audit_previous_sha256: [u8; 32],
    pub audit_last_sha256: [u8; 32],
    /// Where the hub's chain stood when it sealed the batch.
    pub live_audit_head_seq: u64,
    pub live_audit_head_sha256: [u8; 32],
    /// True for the closing seal: nothing follows its end marker.
    pub closed: bool,
    /// When the seal was made, by the system's clock: the hub's
    /// certificate is checked at this time.
    pub made_at_unix_ms: i64,
    /// The same moment by the hub's clock, which retention's cutoff and the
    /// documents' times read (the same unless a test or benchmark moves it).
    pub hub_clock_unix_ms: i64,
    /// The hub's certificate (DER), whose key signs the body.
    pub hub_certificate: Vec<u8>,
}

/// A seal: its body and the hub's signature over the body's postcard bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seal {
    pub body: SealBody,
    pub signature: Vec<u8>,
}

/// A run of the audit chain, oldest first.
pub type AuditFrame = Vec<AuditEntry>;

/// The bytes of one frame: length, kind, body.
pub fn frame_bytes(kind: FrameKind, body: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(body.len() + FRAME_HEAD_BYTES as usize);
    bytes.extend_from_slice(&((body.len() + 1) as u32).to_be_bytes());
    bytes.push(kind.byte());
    bytes.extend_from_slice(body);
    bytes
}

/// The body of a serialisable frame.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Plain structures always serialise into a Vec.
    postcard::to_stdvec(value).expect("archive frames serialise")
}

pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(bytes)
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}
