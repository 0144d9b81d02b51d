//! Wire <-> domain conversion, at the edge and only here: headers and
//! requests in, the views of `truc_domain::views` out.

use truc_domain::views;
use truc_domain::{BusinessType, RawAttachment, RawHeader, RawOrgan};
use truc_proto::v1 as pb;
use truc_store::{DocumentSignatureState, StatusEntry};

fn raw_organ(organ: pb::Organ) -> RawOrgan {
    RawOrgan {
        organ_id: organ.organ_id,
        organ_name: organ.organ_name,
        address: organ.address,
        email: organ.email,
        phone: organ.phone,
    }
}

pub fn raw_header(header: pb::EnvelopeHeader) -> RawHeader {
    let code = header.code.unwrap_or_default();
    let promulgation = header.promulgation.unwrap_or_default();
    let document_type = header.document_type.unwrap_or_default();
    let other = header.other_info.unwrap_or_default();
    RawHeader {
        from: header.from.map(raw_organ),
        to: header.to.into_iter().map(raw_organ).collect(),
        code_number: code.number,
        code_notation: code.notation,
        promulgation_place: promulgation.place,
        promulgation_date: promulgation.date,
        document_type: document_type.r#type,
        document_type_name: document_type.name,
        subject: header.subject,
        steering_type: header.steering_type,
        due_date: header.due_date,
        priority: other.priority,
        page_count: other.page_count,
        appendix_count: other.appendix_count,
        response_for: header.response_for,
        business_type: header.business_type,
        business_refs: header.business_refs,
        attachments: header
            .attachments
            .into_iter()
            .map(|a| RawAttachment {
                name: a.name,
                media_type: a.media_type,
                size_bytes: a.size_bytes,
                sha256: a.sha256,
            })
            .collect(),
    }
}

pub fn signature_state(state: DocumentSignatureState) -> pb::DocumentSignatureState {
    match state {
        DocumentSignatureState::Absent => pb::DocumentSignatureState::DocumentSignatureAbsent,
        DocumentSignatureState::Valid => pb::DocumentSignatureState::DocumentSignatureValid,
        DocumentSignatureState::Invalid => pb::DocumentSignatureState::DocumentSignatureInvalid,
    }
}

pub fn status_entry(entry: &StatusEntry) -> pb::StatusEntry {
    pb::StatusEntry {
        status: entry.code as i32,
        at_unix_ms: entry.at_unix_ms,
        actor: entry.actor.clone(),
        reason: entry.reason.clone(),
    }
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

// Requests into the hub's own filters.

pub fn document_filter(request: pb::ListDocumentsRequest) -> views::DocumentFilter {
    views::DocumentFilter {
        sender: request.sender,
        recipient: request.recipient,
        status: (request.status != 0).then(|| views::StatusCode::from_code(request.status)),
        queued: request.queued,
        from_date: request.from_date,
        to_date: request.to_date,
        limit: request.limit,
        overdue: request.overdue,
    }
}

pub fn overdue_filter(request: pb::ListOverdueRequest) -> views::OverdueFilter {
    views::OverdueFilter {
        agency: request.agency,
        limit: request.limit,
    }
}

pub fn dead_letter_filter(request: pb::ListDeadLettersRequest) -> views::DeadLetterFilter {
    views::DeadLetterFilter {
        agency: request.agency,
        include_resolved: request.include_resolved,
        limit: request.limit,
    }
}

// Views into the wire's answers.

pub fn wire_entry(entry: views::StatusEntry) -> pb::StatusEntry {
    pb::StatusEntry {
        status: entry.status.code(),
        at_unix_ms: entry.at_unix_ms,
        actor: entry.actor,
        reason: entry.reason,
    }
}

pub fn wire_route(route: views::Route) -> pb::ExplainRouteResponse {
    pb::ExplainRouteResponse {
        organ_id: route.organ_id,
        kind: route.kind.code(),
        node: route.node,
        explanation: route.explanation,
    }
}

fn wire_recipient_status(row: views::RecipientStatus) -> pb::RecipientStatus {
    pb::RecipientStatus {
        recipient: row.recipient,
        current: row.current.code(),
        history: row.history.into_iter().map(wire_entry).collect(),
        dead_letter: row.dead_letter.map(wire_dead_letter),
    }
}

fn wire_outcome(outcome: views::RecipientOutcome) -> pb::RecipientOutcome {
    pb::RecipientOutcome {
        organ_id: outcome.organ_id,
        accepted: outcome.accepted,
        reason: outcome.reason,
    }
}

pub fn wire_document_status(status: views::DocumentStatus) -> pb::GetStatusResponse {
    pb::GetStatusResponse {
        document_id: status.document_id,
        sender: status.sender,
        subject: status.subject,
        accepted_at_unix_ms: status.accepted_at_unix_ms,
        document_signature: status.document_signature.code(),
        recipients: status
            .recipients
            .into_iter()
            .map(wire_recipient_status)
            .collect(),
        refused: status.refused.into_iter().map(wire_outcome).collect(),
        business_type: status.business_type.code(),
        chain: status
            .chain
            .into_iter()
            .map(|link| pb::DocumentLink {
                earlier: link.earlier,
                later: link.later,
                business_type: link.business_type.code(),
            })
            .collect(),
        archive: status.archive,
        archive_unreadable: status.archive_unreadable,
    }
}

pub fn wire_document_list(list: views::DocumentList) -> pb::ListDocumentsResponse {
    pb::ListDocumentsResponse {
        documents: list
            .documents
            .into_iter()
            .map(|summary| pb::DocumentSummary {
                document_id: summary.document_id,
                sender: summary.sender,
                subject: summary.subject,
                accepted_at_unix_ms: summary.accepted_at_unix_ms,
                business_type: summary.business_type.code(),
                recipients: summary
                    .recipients
                    .into_iter()
                    .map(wire_recipient_status)
                    .collect(),
            })
            .collect(),
        truncated: list.truncated,
    }
}

pub fn wire_node_list(list: views::NodeList) -> pb::ListNodesResponse {
    pb::ListNodesResponse {
        nodes: list
            .nodes
            .into_iter()
            .map(|node| pb::NodeView {
                organ_id: node.organ_id,
                name: node.name,
                connection: node.connection,
                relay: node.relay,
                own_node: node.own_node,
                via: node.via,
                online: node.online,
                last_seen_unix_ms: node.last_seen_unix_ms,
                queue_depth: node.queue_depth,
                oldest_unacked_document_id: node.oldest_unacked_document_id,
                oldest_unacked_accepted_at_unix_ms: node.oldest_unacked_accepted_at_unix_ms,
                serving_hub: node.serving_hub,
                queued_documents: node.queued_documents,
                queued_notices: node.queued_notices,
            })
            .collect(),
        answering_hub: list.answering_hub,
        database: list.database.map(|database| pb::DatabaseView {
            primary: database.primary,
            writable: database.writable,
            standbys: database
                .standbys
                .into_iter()
                .map(|standby| pb::StandbyView {
                    name: standby.name,
                    address: standby.address,
                    state: standby.state,
                    sync_state: standby.sync_state,
                    replay_lag_bytes: standby.replay_lag_bytes,
                })
                .collect(),
        }),
    }
}

pub fn wire_overdue_list(list: views::OverdueList) -> pb::ListOverdueResponse {
    pb::ListOverdueResponse {
        deliveries: list
            .deliveries
            .into_iter()
            .map(|row| pb::OverdueDelivery {
                document_id: row.document_id,
                sender: row.sender,
                recipient: row.recipient,
                deadline: row.deadline,
                deadline_unix_ms: row.deadline_unix_ms,
                late_ms: row.late_ms,
                subject: row.subject,
            })
            .collect(),
        truncated: list.truncated,
    }
}

pub fn wire_dead_letter(letter: views::DeadLetter) -> pb::DeadLetter {
    pb::DeadLetter {
        document_id: letter.document_id,
        sender: letter.sender,
        recipient: letter.recipient,
        queue_owner: letter.queue_owner,
        expired_at_unix_ms: letter.expired_at_unix_ms,
        reason: letter.reason,
        state: letter.state,
        actions: letter
            .actions
            .into_iter()
            .map(|action| pb::DeadLetterAction {
                action: action.action,
                operator: action.operator,
                at_unix_ms: action.at_unix_ms,
                reason: action.reason,
            })
            .collect(),
    }
}

pub fn wire_dead_letter_list(list: views::DeadLetterList) -> pb::ListDeadLettersResponse {
    pb::ListDeadLettersResponse {
        dead_letters: list
            .dead_letters
            .into_iter()
            .map(wire_dead_letter)
            .collect(),
        truncated: list.truncated,
    }
}

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
