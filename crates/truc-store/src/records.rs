//! Stored values. Each starts with a version byte so that a later format can
//! upgrade the old one in `decode`; version 1 is the only one so far.

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::error::StoreError;

const VERSION_1: u8 = 1;

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = vec![VERSION_1];
    // Serialising plain records to a Vec cannot fail.
    bytes.extend(postcard::to_stdvec(value).expect("records serialise"));
    bytes
}

pub(crate) fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&VERSION_1, rest)) => {
            postcard::from_bytes(rest).map_err(|error| StoreError::Corrupt {
                key: String::from_utf8_lossy(key).into_owned(),
                reason: format!("undecodable record: {error}"),
            })
        }
        Some((version, _)) => Err(StoreError::Corrupt {
            key: String::from_utf8_lossy(key).into_owned(),
            reason: format!("unknown record version {version}"),
        }),
        None => Err(StoreError::Corrupt {
            key: String::from_utf8_lossy(key).into_owned(),
            reason: "empty record".into(),
        }),
    }
}

/// Whether the document's own digital signature was present and verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DocumentSignatureState {
    Absent,
    Valid,
    Invalid,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedRecipient {
    pub organ_id: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentRef {
    pub sha256: [u8; 32],
    pub size_bytes: u64,
}

/// One accepted document: the signed bytes exactly as received, and what the
/// hub decided about them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentRecord {
    pub document_id: String,
    pub sender: String,
    /// `yyyymmdd` of the document's date (from its id); counters use it.
    pub date_key: u32,
    pub subject: String,
    pub header_bytes: Vec<u8>,
    pub signature: Vec<u8>,
    pub sender_certificate: Vec<u8>,
    pub document_signature: Option<(Vec<u8>, Vec<u8>)>,
    pub document_signature_state: DocumentSignatureState,
    /// SHA-256 of the header bytes: tells a resend from a different document with the same id.
    pub content_sha256: [u8; 32],
    pub accepted_at_unix_ms: i64,
    pub recipients: Vec<String>,
    pub refused: Vec<RefusedRecipient>,
    pub attachments: Vec<AttachmentRef>,
}

/// What the tree keeps of a document: all but its signed bytes and the
/// sender's certificate, which are in the payload log (the certificate once
/// for all the documents it signed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredDocument {
    pub document_id: String,
    pub sender: String,
    pub date_key: u32,
    pub subject: String,
    pub content_sha256: [u8; 32],
    pub accepted_at_unix_ms: i64,
    pub recipients: Vec<String>,
    pub refused: Vec<RefusedRecipient>,
    pub attachments: Vec<AttachmentRef>,
    pub document_signature_state: DocumentSignatureState,
    /// The header bytes, the envelope signature and the document signature.
    pub envelope: crate::payload::Extent,
    /// Where `C` + this digest says the certificate is.
    pub certificate_sha256: [u8; 32],
}

impl StoredDocument {
    pub(crate) fn new(
        record: &DocumentRecord,
        envelope: crate::payload::Extent,
        certificate_sha256: [u8; 32],
    ) -> Self {
        StoredDocument {
            document_id: record.document_id.clone(),
            sender: record.sender.clone(),
            date_key: record.date_key,
            subject: record.subject.clone(),
            content_sha256: record.content_sha256,
            accepted_at_unix_ms: record.accepted_at_unix_ms,
            recipients: record.recipients.clone(),
            refused: record.refused.clone(),
            attachments: record.attachments.clone(),
            document_signature_state: record.document_signature_state,
            envelope,
            certificate_sha256,
        }
    }

    /// The whole record, given the envelope's bytes and the certificate.
    pub(crate) fn into_record(
        self,
        envelope: &[u8],
        sender_certificate: Vec<u8>,
    ) -> Result<DocumentRecord, StoreError> {
        let corrupt = || StoreError::Corrupt {
            key: format!("envelope of {}", self.document_id),
            reason: "the payload bytes do not frame an envelope".into(),
        };
        let mut pieces = unframe(envelope).ok_or_else(corrupt)?.into_iter();
        let mut next = || pieces.next().ok_or_else(corrupt);
        let header_bytes = next()?;
        let signature = next()?;
        let certificate = next()?;
        let document_signature = next()?;
        let document_signature = if certificate.is_empty() && document_signature.is_empty() {
            None
        } else {
            Some((certificate, document_signature))
        };
        Ok(DocumentRecord {
            document_id: self.document_id,
            sender: self.sender,
            date_key: self.date_key,
            subject: self.subject,
            header_bytes,
            signature,
            sender_certificate,
            document_signature,
            document_signature_state: self.document_signature_state,
            content_sha256: self.content_sha256,
            accepted_at_unix_ms: self.accepted_at_unix_ms,
            recipients: self.recipients,
            refused: self.refused,
            attachments: self.attachments,
        })
    }
}

/// The envelope's bytes as the payload log keeps them: header, signature,
/// and the document signature's certificate and signature (empty if none),
/// each after its length (u32 LE).
pub(crate) fn envelope_bytes(record: &DocumentRecord) -> Vec<u8> {
    let (certificate, signature) = record
        .document_signature
        .as_ref()
        .map_or((&[][..], &[][..]), |(c, s)| (c.as_slice(), s.as_slice()));
    frame(&[
        &record.header_bytes,
        &record.signature,
        certificate,
        signature,
    ])
}

fn frame(pieces: &[&[u8]]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(pieces.iter().map(|p| 4 + p.len()).sum());
    for piece in pieces {
        bytes.extend_from_slice(&(piece.len() as u32).to_le_bytes());
        bytes.extend_from_slice(piece);
    }
    bytes
}

fn unframe(mut bytes: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut pieces = Vec::with_capacity(4);
    while !bytes.is_empty() {
        let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
        pieces.push(bytes.get(4..4 + len)?.to_vec());
        bytes = &bytes[4 + len..];
    }
    Some(pieces)
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusEntry {
    /// edXML status code (01, 02, 03, 04, 05, 06).
    pub code: u32,
    pub at_unix_ms: i64,
    pub actor: String,
    pub reason: String,
}

/// One recipient's copy of a document: where it stands and how it got there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    pub document_id: String,
    pub recipient: String,
    /// The queue item that carries it until acknowledged.
    pub queue_seq: u64,
    pub history: Vec<StatusEntry>,
}

impl DeliveryRecord {
    /// The code of the last entry, as the recipient's row shows it.
    pub fn current_code(&self) -> Option<u32> {
        self.history.last().map(|entry| entry.code)
    }

    /// The state the next move is checked against: the last entry, except
    /// that a refused recall returns to the state before the request.
    pub fn state(&self) -> Result<Option<truc_domain::Status>, truc_domain::StatusMoveError> {
        truc_domain::Status::state_of(self.history.iter().map(|entry| entry.code))
    }

    /// Whether the recipient's node has it (an arrival is on record). A
    /// delivery withdrawn before it was fetched has entries but never arrived.
    pub fn arrived(&self) -> bool {
        self.history
            .iter()
            .any(|entry| entry.code == truc_domain::Status::Arrived.code())
    }
}

/// What waits in an agency's queue until its node acknowledges it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueueItem {
    Delivery {
        document_id: String,
        recipient: String,
    },
    /// One entry (written by earlier versions; read, no longer written).
    Notice {
        document_id: String,
        recipient: String,
        entry: StatusEntry,
    },
    /// The entries one write recorded on a delivery, oldest first.
    Notices {
        document_id: String,
        recipient: String,
        entries: Vec<StatusEntry>,
    },
}

/// A recall (1), update (2) or replace (3): `later` names `earlier` in its
/// business references. Stored under both documents, so either finds the other.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkRecord {
    pub business_type: i32,
    pub earlier: String,
    pub later: String,
}

/// A stored attachment: its size, and where its bytes are, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobRecord {
    pub size_bytes: u64,
    pub extents: Vec<crate::Extent>,
}

/// What the embedded engine keeps of an attachment: where its bytes are in
/// the payload log, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredBlob {
    pub size_bytes: u64,
    pub extents: Vec<crate::payload::Extent>,
}

impl StoredBlob {
    pub(crate) fn into_record(self) -> BlobRecord {
        BlobRecord {
            size_bytes: self.size_bytes,
            extents: self.extents.into_iter().map(crate::Extent::Log).collect(),
        }
    }
}

/// A counter's value: (sent, received). Version 1 starts with its version
/// byte like every other record; the first stored form, the two numbers
/// alone (16 bytes), is read as it is. Any other length is damage.
pub(crate) fn decode_counter(key: &[u8], bytes: &[u8]) -> Result<(u64, u64), StoreError> {
    let numbers = match bytes.len() {
        17 if bytes[0] == VERSION_1 => &bytes[1..],
        16 => bytes,
        length => {
            return Err(StoreError::Corrupt {
                key: String::from_utf8_lossy(key).into_owned(),
                reason: format!("a counter of {length} bytes (17 with its version, or 16)"),
            })
        }
    };
    let sent = u64::from_be_bytes(numbers[..8].try_into().expect("8 bytes"));
    let received = u64::from_be_bytes(numbers[8..].try_into().expect("8 bytes"));
    Ok((sent, received))
}

pub(crate) fn encode_counter(sent: u64, received: u64) -> [u8; 17] {
    let mut bytes = [0u8; 17];
    bytes[0] = VERSION_1;
    bytes[1..9].copy_from_slice(&sent.to_be_bytes());
    bytes[9..].copy_from_slice(&received.to_be_bytes());
    bytes
}

#[cfg(test)]
mod counter_tests {
    use super::*;

    #[test]
    fn counters_carry_their_version_and_a_wrong_length_is_damage() {
        let stored = encode_counter(7, 9);
        assert_eq!(stored[0], VERSION_1);
        assert_eq!(decode_counter(b"c", &stored).unwrap(), (7, 9));
        // The first stored form: the two numbers alone.
        assert_eq!(decode_counter(b"c", &stored[1..]).unwrap(), (7, 9));
        assert!(matches!(
            decode_counter(b"c", &stored[..5]),
            Err(StoreError::Corrupt { .. })
        ));
        let mut unknown = stored;
        unknown[0] = 9;
        assert!(decode_counter(b"c", &unknown).is_err());
    }
}

/// A deadline the hub watches on one delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum DeadlineKind {
    /// Acknowledged by the recipient's node (01) within minutes of acceptance.
    Arrived,
    /// Moved past "arrived" (received, or a later or final status) within working time.
    Received,
    /// Completed (or otherwise final) by the end of the header's due date.
    DueDate,
    /// Acknowledged at all within the time to live; else a dead letter.
    Expiry,
}

impl DeadlineKind {
    pub(crate) fn byte(self) -> u8 {
        match self {
            DeadlineKind::Arrived => 1,
            DeadlineKind::Received => 2,
            DeadlineKind::DueDate => 3,
            DeadlineKind::Expiry => 4,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DeadlineKind::Arrived => "arrived",
            DeadlineKind::Received => "received",
            DeadlineKind::DueDate => "due_date",
            DeadlineKind::Expiry => "expiry",
        }
    }

    /// Whether the delivery's history already meets this deadline.
    pub fn met_by(self, delivery: &DeliveryRecord) -> bool {
        use truc_domain::Status;
        match self {
            // A withdrawn delivery has entries but never arrived: nothing is owed.
            DeadlineKind::Arrived | DeadlineKind::Expiry => !delivery.history.is_empty(),
            DeadlineKind::Received => delivery
                .history
                .iter()
                .any(|entry| entry.code != Status::Arrived.code()),
            DeadlineKind::DueDate => delivery.history.iter().any(|entry| {
                Status::from_code(entry.code).is_ok_and(|status| status.is_terminal())
            }),
        }
    }
}

/// One watched deadline, stored under its time so the watcher finds it
/// without reading anything else.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchRecord {
    pub kind: DeadlineKind,
    pub deadline_unix_ms: i64,
    pub document_id: String,
    pub recipient: String,
    pub sender: String,
}

/// A delivery that passed a deadline unanswered. Kept after a late answer,
/// so reports count it; lists show only those still unanswered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverdueRecord {
    pub kind: DeadlineKind,
    pub deadline_unix_ms: i64,
    pub detected_at_unix_ms: i64,
    pub document_id: String,
    pub recipient: String,
    pub sender: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeadLetterState {
    Open,
    Resent,
    Cancelled,
}

impl DeadLetterState {
    pub fn name(self) -> &'static str {
        match self {
            DeadLetterState::Open => "open",
            DeadLetterState::Resent => "resent",
            DeadLetterState::Cancelled => "cancelled",
        }
    }
}

/// What an operator did to a dead letter, and who.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterAction {
    pub action: DeadLetterState,
    pub operator: String,
    pub at_unix_ms: i64,
    pub reason: String,
}

/// A delivery no node acknowledged within its time to live.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterRecord {
    pub document_id: String,
    pub recipient: String,
    pub sender: String,
    /// The node whose queue held it, where a resend queues it again.
    pub queue_owner: String,
    pub expired_at_unix_ms: i64,
    pub reason: String,
    pub state: DeadLetterState,
    pub actions: Vec<DeadLetterAction>,
}

/// What stays in the live store of a document that left it for an archive:
/// enough to recognise a resend and answer it with the original
/// acknowledgement, to say which archive holds the document, and to count
/// it in reports (the permanent duplicate index).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedDocument {
    pub document_id: String,
    pub content_sha256: [u8; 32],
    pub accepted_at_unix_ms: i64,
    pub recipients: Vec<String>,
    pub refused: Vec<RefusedRecipient>,
    pub document_signature_state: DocumentSignatureState,
    /// The archive file's name (not its path: archives may move).
    pub archive: String,
    /// Where the document's record starts in that file.
    pub archive_offset: u64,
    pub archived_at_unix_ms: i64,
}

impl ArchivedDocument {
    /// The sender's code and the document's `yyyymmdd`, from its id.
    pub fn sender_and_date(&self) -> (String, u32) {
        self.document_id
            .parse::<truc_domain::DocumentId>()
            .map(|id| (id.sender().to_string(), id.date().ordinal_key()))
            .unwrap_or_default()
    }
}

/// What the embedded engine keeps of an archived document: the id is its key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredArchived {
    pub content_sha256: [u8; 32],
    pub accepted_at_unix_ms: i64,
    pub recipients: Vec<String>,
    pub refused: Vec<RefusedRecipient>,
    pub document_signature_state: DocumentSignatureState,
    pub archive: String,
    pub archive_offset: u64,
    pub archived_at_unix_ms: i64,
}

impl StoredArchived {
    pub(crate) fn new(record: &ArchivedDocument) -> Self {
        StoredArchived {
            content_sha256: record.content_sha256,
            accepted_at_unix_ms: record.accepted_at_unix_ms,
            recipients: record.recipients.clone(),
            refused: record.refused.clone(),
            document_signature_state: record.document_signature_state,
            archive: record.archive.clone(),
            archive_offset: record.archive_offset,
            archived_at_unix_ms: record.archived_at_unix_ms,
        }
    }

    pub(crate) fn into_record(self, document_id: String) -> ArchivedDocument {
        ArchivedDocument {
            document_id,
            content_sha256: self.content_sha256,
            accepted_at_unix_ms: self.accepted_at_unix_ms,
            recipients: self.recipients,
            refused: self.refused,
            document_signature_state: self.document_signature_state,
            archive: self.archive,
            archive_offset: self.archive_offset,
            archived_at_unix_ms: self.archived_at_unix_ms,
        }
    }
}

/// The forward statuses of the dashboard's funnel, in order: a delivery
/// counts for every step up to the furthest it reached.
pub const FUNNEL_CODES: [u32; 5] = [1, 3, 4, 5, 6];

/// Report figures kept, per agency and document date, for the documents
/// that left the live store: what `Store::report`, the counters' check and
/// the dashboard's funnel would otherwise have read from their records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetainedFigures {
    /// Documents the agency sent.
    pub sent: u64,
    /// Deliveries to the agency that arrived.
    pub received: u64,
    /// Bit `code` set for each status code the agency reported as a recipient.
    pub statuses_reported: u32,
    /// Deliveries to the agency that passed a feedback deadline unanswered.
    pub overdue: u64,
    /// Deliveries to the agency.
    pub deliveries: u64,
    /// Deliveries to the agency that reached each step of [`FUNNEL_CODES`] (or a later one).
    pub reached: [u64; 5],
    /// Deliveries to the agency that ended rejected, or recalled.
    pub rejected: u64,
    pub recalled: u64,
}

impl RetainedFigures {
    pub(crate) fn add(&mut self, other: &RetainedFigures) {
        self.sent += other.sent;
        self.received += other.received;
        self.statuses_reported |= other.statuses_reported;
        self.overdue += other.overdue;
        self.deliveries += other.deliveries;
        for (sum, add) in self.reached.iter_mut().zip(other.reached) {
            *sum += add;
        }
        self.rejected += other.rejected;
        self.recalled += other.recalled;
    }

    /// One delivery's part: arrived or not, its statuses, how far it went,
    /// and how many of its deadlines lapsed.
    pub(crate) fn count_delivery(&mut self, delivery: &DeliveryRecord, overdue: u64) {
        self.deliveries += 1;
        if delivery.arrived() {
            self.received += 1;
        }
        for entry in &delivery.history {
            self.statuses_reported |= 1 << entry.code.min(31);
        }
        let furthest = delivery
            .history
            .iter()
            .filter_map(|entry| FUNNEL_CODES.iter().position(|code| *code == entry.code))
            .max();
        if let Some(furthest) = furthest {
            for count in &mut self.reached[..=furthest] {
                *count += 1;
            }
        }
        match delivery.current_code() {
            Some(2) => self.rejected += 1,
            Some(15) => self.recalled += 1,
            _ => {}
        }
        self.overdue += overdue;
    }
}

/// One archive file as the store knows it: what was committed to it. The
/// file may hold more (a batch written before a crash and never
/// committed): the next write cuts it back to `committed_bytes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveFile {
    /// The file's name in the archive folder, e.g. `2026-03.truca`.
    pub name: String,
    /// The month it gathers (by the hub's clock, Vietnam time), `yyyy-mm`.
    pub period: String,
    /// The hub that writes it (empty for the embedded engine's one hub).
    pub hub: String,
    /// False once its closing seal is committed: nothing is added after.
    pub open: bool,
    /// The file's length after its last committed seal.
    pub committed_bytes: u64,
    pub batches: u64,
    pub documents: u64,
    /// SHA-256 of the last committed seal, which the next seal names.
    pub last_seal_sha256: [u8; 32],
    /// The audit chain's entries the file holds (0 and 0: none yet).
    pub audit_first_seq: u64,
    pub audit_last_seq: u64,
    pub created_at_unix_ms: i64,
    /// When it was closed (0 while open).
    pub closed_at_unix_ms: i64,
}
