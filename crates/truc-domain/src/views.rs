//! What the axis answers, as plain types: a send's receipt, a document's
//! statuses, the operator's lists, a delivery as it arrives. The hub's
//! service edge and the node's client convert the wire messages to and from
//! these (with `truc_proto::convert`), so that nothing past those two edges
//! names a generated type.
//! Field names follow the wire's, so that JSON written from them keeps its keys.

use crate::envelope::BusinessType;
use crate::status::Status;

/// A delivery's state or a history entry's code as the hub reports it: a
/// recipient's status, or one of the hub's own marks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatusCode {
    /// No status yet: the delivery waits in its queue (code 0).
    Queued,
    Status(Status),
    /// Past a feedback deadline and unanswered (20).
    Overdue,
    /// Expired unacknowledged: a dead letter (21).
    Expired,
    /// A code this side does not know, kept as it came.
    Other(i32),
}

impl StatusCode {
    pub const OVERDUE: i32 = 20;
    pub const EXPIRED: i32 = 21;

    pub fn from_code(code: i32) -> Self {
        match code {
            0 => StatusCode::Queued,
            Self::OVERDUE => StatusCode::Overdue,
            Self::EXPIRED => StatusCode::Expired,
            other => match u32::try_from(other).ok().map(Status::from_code) {
                Some(Ok(status)) => StatusCode::Status(status),
                _ => StatusCode::Other(other),
            },
        }
    }

    pub fn code(self) -> i32 {
        match self {
            StatusCode::Queued => 0,
            StatusCode::Status(status) => status.code() as i32,
            StatusCode::Overdue => Self::OVERDUE,
            StatusCode::Expired => Self::EXPIRED,
            StatusCode::Other(code) => code,
        }
    }

    /// The name people read: a status's own, `overdue`, `expired`, or
    /// `queued` for no status (and for a code this side does not know).
    pub fn name(self) -> &'static str {
        match self {
            StatusCode::Status(status) => status.name(),
            StatusCode::Overdue => "overdue",
            StatusCode::Expired => "expired",
            StatusCode::Queued | StatusCode::Other(_) => "queued",
        }
    }

    pub fn status(self) -> Option<Status> {
        match self {
            StatusCode::Status(status) => Some(status),
            _ => None,
        }
    }
}

impl From<Status> for StatusCode {
    fn from(status: Status) -> Self {
        StatusCode::Status(status)
    }
}

/// What the hub found of a document's own signature (the signer's, beside
/// the sending agency's).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SignatureState {
    #[default]
    Absent,
    Valid,
    Invalid,
}

impl SignatureState {
    /// A code this side does not know reads as absent.
    pub fn from_code(code: i32) -> Self {
        match code {
            1 => SignatureState::Valid,
            2 => SignatureState::Invalid,
            _ => SignatureState::Absent,
        }
    }

    pub fn code(self) -> i32 {
        match self {
            SignatureState::Absent => 0,
            SignatureState::Valid => 1,
            SignatureState::Invalid => 2,
        }
    }

    /// The name JSON outputs carry, as the protocol spells it.
    pub fn as_str_name(self) -> &'static str {
        match self {
            SignatureState::Absent => "DOCUMENT_SIGNATURE_ABSENT",
            SignatureState::Valid => "DOCUMENT_SIGNATURE_VALID",
            SignatureState::Invalid => "DOCUMENT_SIGNATURE_INVALID",
        }
    }
}

/// One recipient of a send: accepted, or refused and why.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecipientOutcome {
    pub organ_id: String,
    pub accepted: bool,
    pub reason: String,
}

/// The hub's acknowledgement of a send, once the document is on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendReceipt {
    pub document_id: String,
    pub recipients: Vec<RecipientOutcome>,
    /// The hub already held this very envelope: the original acknowledgement.
    pub duplicate: bool,
    pub document_signature: SignatureState,
    pub accepted_at_unix_ms: i64,
}

/// One entry of a delivery's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusEntry {
    pub status: StatusCode,
    pub at_unix_ms: i64,
    pub actor: String,
    pub reason: String,
}

/// A status move asked of the hub, alone or in a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MoveRequest {
    pub document_id: String,
    /// The unit the move is for; empty: the caller's own agency.
    pub recipient: String,
    pub status: Status,
    pub reason: String,
}

/// One recipient's delivery of a document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecipientStatus {
    pub recipient: String,
    pub current: StatusCode,
    pub history: Vec<StatusEntry>,
    pub dead_letter: Option<DeadLetter>,
}

/// A recall, update or replace and the document it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentLink {
    pub earlier: String,
    pub later: String,
    pub business_type: BusinessType,
}

/// A document and every delivery of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentStatus {
    pub document_id: String,
    pub sender: String,
    pub subject: String,
    pub accepted_at_unix_ms: i64,
    pub document_signature: SignatureState,
    pub recipients: Vec<RecipientStatus>,
    pub refused: Vec<RecipientOutcome>,
    pub business_type: BusinessType,
    pub chain: Vec<DocumentLink>,
    /// The archive file holding the document once it left the live store.
    pub archive: String,
    pub archive_unreadable: bool,
}

/// How documents to an agency are delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RouteKind {
    Unspecified,
    OwnNode,
    Relay,
    None,
    Unregistered,
}

impl RouteKind {
    pub fn from_code(code: i32) -> Self {
        match code {
            1 => RouteKind::OwnNode,
            2 => RouteKind::Relay,
            3 => RouteKind::None,
            4 => RouteKind::Unregistered,
            _ => RouteKind::Unspecified,
        }
    }

    pub fn code(self) -> i32 {
        match self {
            RouteKind::Unspecified => 0,
            RouteKind::OwnNode => 1,
            RouteKind::Relay => 2,
            RouteKind::None => 3,
            RouteKind::Unregistered => 4,
        }
    }
}

/// Where documents to an agency are delivered, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub organ_id: String,
    pub kind: RouteKind,
    /// The node that receives them; empty when none does.
    pub node: String,
    pub explanation: String,
}

/// Which documents to list; empty strings and `None` do not filter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DocumentFilter {
    pub sender: String,
    pub recipient: String,
    pub status: Option<StatusCode>,
    pub queued: bool,
    pub from_date: String,
    pub to_date: String,
    /// 0: the hub's default.
    pub limit: u32,
    pub overdue: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentSummary {
    pub document_id: String,
    pub sender: String,
    pub subject: String,
    pub accepted_at_unix_ms: i64,
    pub business_type: BusinessType,
    pub recipients: Vec<RecipientStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DocumentList {
    pub documents: Vec<DocumentSummary>,
    /// More matched than the limit.
    pub truncated: bool,
}

/// One agency of the directory with its node's state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeView {
    pub organ_id: String,
    pub name: String,
    pub connection: String,
    pub relay: bool,
    pub own_node: bool,
    pub via: String,
    pub online: bool,
    pub last_seen_unix_ms: i64,
    pub queue_depth: u64,
    pub oldest_unacked_document_id: String,
    pub oldest_unacked_accepted_at_unix_ms: i64,
    pub serving_hub: String,
    pub queued_documents: u64,
    pub queued_notices: u64,
}

/// The PostgreSQL database behind the hub, as the hub sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DatabaseView {
    pub primary: String,
    pub writable: bool,
    pub standbys: Vec<StandbyView>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StandbyView {
    pub name: String,
    pub address: String,
    pub state: String,
    pub sync_state: String,
    pub replay_lag_bytes: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeList {
    pub nodes: Vec<NodeView>,
    pub answering_hub: String,
    /// Only for a hub on PostgreSQL.
    pub database: Option<DatabaseView>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgencyCounts {
    pub organ_id: String,
    pub sent: u64,
    pub received: u64,
}

/// Documents sent and received per agency over a period.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub agencies: Vec<AgencyCounts>,
    pub total_sent: u64,
    pub total_received: u64,
}

/// One agency's figures recomputed from the stored records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReportRow {
    pub organ_id: String,
    pub sent: u64,
    pub received: u64,
    pub statuses_reported: Vec<u32>,
    pub sent_to_focus: u64,
    pub sent_to_focus_signed: u64,
    pub overdue: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub rows: Vec<ReportRow>,
}

/// Which overdue deliveries to list; empty and 0 do not filter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OverdueFilter {
    pub agency: String,
    pub limit: u32,
}

/// A delivery past its feedback deadline and still unanswered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OverdueDelivery {
    pub document_id: String,
    pub sender: String,
    pub recipient: String,
    pub deadline: String,
    pub deadline_unix_ms: i64,
    pub late_ms: i64,
    pub subject: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OverdueList {
    pub deliveries: Vec<OverdueDelivery>,
    pub truncated: bool,
}

/// Which dead letters to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeadLetterFilter {
    pub agency: String,
    pub include_resolved: bool,
    pub limit: u32,
}

/// An administrator's resend or cancel of a dead letter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeadLetterAction {
    pub action: String,
    pub operator: String,
    pub at_unix_ms: i64,
    pub reason: String,
}

/// A delivery that expired unacknowledged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeadLetter {
    pub document_id: String,
    pub sender: String,
    pub recipient: String,
    pub queue_owner: String,
    pub expired_at_unix_ms: i64,
    pub reason: String,
    pub state: String,
    pub actions: Vec<DeadLetterAction>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeadLetterList {
    pub dead_letters: Vec<DeadLetter>,
    pub truncated: bool,
}

/// A signed envelope as it travels: the header's bytes exactly as signed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SignedEnvelope {
    pub header: Vec<u8>,
    pub signature: Vec<u8>,
    /// The signer's certificate and signature, when the document is signed.
    pub document_signature: Option<DocumentSignature>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DocumentSignature {
    pub signer_certificate: Vec<u8>,
    pub signature: Vec<u8>,
}

/// A document delivered to a node, not yet verified.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    pub queue_seq: u64,
    pub document_id: String,
    pub envelope: Option<SignedEnvelope>,
    pub sender_certificate: Vec<u8>,
    pub document_signature: SignatureState,
    pub accepted_at_unix_ms: i64,
    pub recipient: String,
    /// Small attachments, in the header's order, when they travel inline.
    pub inline_attachments: Vec<Vec<u8>>,
}

/// Status entries of a document sent to a sender's node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusNotice {
    pub queue_seq: u64,
    pub document_id: String,
    pub recipient: String,
    pub entries: Vec<StatusEntry>,
}

/// What a delivery stream brings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HubItem {
    Delivery(Box<Delivery>),
    Notice(StatusNotice),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_keep_their_number_and_name() {
        for code in [0, 1, 2, 3, 4, 5, 6, 13, 15, 16, 20, 21, 7, -1] {
            assert_eq!(StatusCode::from_code(code).code(), code);
        }
        assert_eq!(StatusCode::from_code(0).name(), "queued");
        assert_eq!(StatusCode::from_code(3).name(), "received");
        assert_eq!(StatusCode::from_code(20).name(), "overdue");
        assert_eq!(StatusCode::from_code(21).name(), "expired");
        assert_eq!(StatusCode::from_code(7), StatusCode::Other(7));
        assert_eq!(StatusCode::from_code(7).name(), "queued");
    }

    #[test]
    fn signature_states_round_trip() {
        for state in [
            SignatureState::Absent,
            SignatureState::Valid,
            SignatureState::Invalid,
        ] {
            assert_eq!(SignatureState::from_code(state.code()), state);
        }
        assert_eq!(SignatureState::from_code(9), SignatureState::Absent);
    }
}
