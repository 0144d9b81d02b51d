//! The hub's edge of the wire: stored records into wire answers and views,
//! moves into the hub's own requests and refusals. The wire <-> domain
//! conversions themselves are `truc_proto::convert`'s, once for the hub and
//! the node.

use truc_domain::views;
use truc_domain::{BusinessType, RawHeader};
use truc_proto::v1 as pb;
use truc_store::{DocumentSignatureState, StatusEntry};

/// The header fields as sent, before `Header::validate` checks them.
pub fn raw_header(header: pb::EnvelopeHeader) -> RawHeader {
    RawHeader::from(header)
}

pub fn signature_state(state: DocumentSignatureState) -> pb::DocumentSignatureState {
    match state {
        DocumentSignatureState::Absent => pb::DocumentSignatureState::DocumentSignatureAbsent,
        DocumentSignatureState::Valid => pb::DocumentSignatureState::DocumentSignatureValid,
        DocumentSignatureState::Invalid => pb::DocumentSignatureState::DocumentSignatureInvalid,
    }
}

pub fn status_entry(entry: &StatusEntry) -> pb::StatusEntry {
    pb::StatusEntry::from(entry_view(entry))
}

/// A stored entry as the views carry it.
pub fn entry_view(entry: &StatusEntry) -> views::StatusEntry {
    views::StatusEntry {
        status: views::StatusCode::from_code(entry.code as i32),
        at_unix_ms: entry.at_unix_ms,
        actor: entry.actor.clone(),
        reason: entry.reason.clone(),
    }
}

pub fn signature_view(state: DocumentSignatureState) -> views::SignatureState {
    match state {
        DocumentSignatureState::Absent => views::SignatureState::Absent,
        DocumentSignatureState::Valid => views::SignatureState::Valid,
        DocumentSignatureState::Invalid => views::SignatureState::Invalid,
    }
}

/// The business type of stored header bytes; a header that does not decode
/// (never stored so) reads as a new document, as the wire's default.
pub fn business_type_of(header_bytes: &[u8]) -> BusinessType {
    use prost::Message as _;
    pb::EnvelopeHeader::decode(header_bytes)
        .ok()
        .and_then(|header| BusinessType::from_code(header.business_type))
        .unwrap_or(BusinessType::New)
}

// Stored records and the hub's own requests.

/// A stored link of a recall, update or replace chain, as the views carry it.
pub fn link_view(link: truc_store::LinkRecord) -> views::DocumentLink {
    views::DocumentLink {
        earlier: link.earlier,
        later: link.later,
        business_type: BusinessType::from_code(link.business_type).unwrap_or(BusinessType::New),
    }
}

pub(crate) fn asked_move(request: pb::MoveStatusRequest) -> crate::moves::AskedMove {
    crate::moves::AskedMove {
        document_id: request.document_id,
        recipient: request.recipient,
        status: request.status,
        reason: request.reason,
    }
}

/// One move of a batch: its entry, or its refusal as the refusal layer
/// would have made it for a call of its own.
pub(crate) fn wire_move_result(
    result: Result<StatusEntry, crate::error::HubError>,
) -> pb::MoveResult {
    pb::MoveResult {
        outcome: Some(match result {
            Ok(entry) => pb::move_result::Outcome::Entry(status_entry(&entry)),
            Err(error) => {
                let status = tonic::Status::from(error);
                pb::move_result::Outcome::Refused(pb::MoveRefusal {
                    code: status.code() as i32,
                    message: status.message().to_owned(),
                })
            }
        }),
    }
}
