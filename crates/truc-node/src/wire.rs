//! The node's edge: the hub's wire messages into the plain types of
//! [`truc_domain::views`], and requests back into wire messages. Nothing
//! outside this crate sees a generated type through the client.

use truc_domain::views::{
    AgencyCounts, Counts, DatabaseView, DeadLetter, DeadLetterAction, DeadLetterFilter,
    DeadLetterList, Delivery, DocumentFilter, DocumentLink, DocumentList, DocumentSignature,
    DocumentStatus, DocumentSummary, HubItem, MoveRequest, NodeList, NodeView, OverdueDelivery,
    OverdueFilter, OverdueList, RecipientOutcome, RecipientStatus, Report, ReportRow, Route,
    RouteKind, SendReceipt, SignatureState, SignedEnvelope, StandbyView, StatusCode, StatusEntry,
    StatusNotice,
};
use truc_domain::BusinessType;
use truc_proto::v1 as pb;

/// The hub only stores the four business types it validated at intake; a
/// code this side does not know reads as a new document.
fn business_type(code: i32) -> BusinessType {
    BusinessType::from_code(code).unwrap_or(BusinessType::New)
}

pub(crate) fn send_receipt(response: pb::SendResponse) -> SendReceipt {
    SendReceipt {
        document_id: response.document_id,
        recipients: response
            .recipients
            .into_iter()
            .map(recipient_outcome)
            .collect(),
        duplicate: response.duplicate,
        document_signature: SignatureState::from_code(response.document_signature),
        accepted_at_unix_ms: response.accepted_at_unix_ms,
    }
}

fn recipient_outcome(outcome: pb::RecipientOutcome) -> RecipientOutcome {
    RecipientOutcome {
        organ_id: outcome.organ_id,
        accepted: outcome.accepted,
        reason: outcome.reason,
    }
}

pub(crate) fn status_entry(entry: pb::StatusEntry) -> StatusEntry {
    StatusEntry {
        status: StatusCode::from_code(entry.status),
        at_unix_ms: entry.at_unix_ms,
        actor: entry.actor,
        reason: entry.reason,
    }
}

pub(crate) fn move_request(request: &MoveRequest) -> pb::MoveStatusRequest {
    pb::MoveStatusRequest {
        document_id: request.document_id.clone(),
        recipient: request.recipient.clone(),
        status: request.status.code() as i32,
        reason: request.reason.clone(),
    }
}

fn recipient_status(row: pb::RecipientStatus) -> RecipientStatus {
    RecipientStatus {
        recipient: row.recipient,
        current: StatusCode::from_code(row.current),
        history: row.history.into_iter().map(status_entry).collect(),
        dead_letter: row.dead_letter.map(dead_letter),
    }
}

pub(crate) fn document_status(response: pb::GetStatusResponse) -> DocumentStatus {
    DocumentStatus {
        document_id: response.document_id,
        sender: response.sender,
        subject: response.subject,
        accepted_at_unix_ms: response.accepted_at_unix_ms,
        document_signature: SignatureState::from_code(response.document_signature),
        recipients: response
            .recipients
            .into_iter()
            .map(recipient_status)
            .collect(),
        refused: response
            .refused
            .into_iter()
            .map(recipient_outcome)
            .collect(),
        business_type: business_type(response.business_type),
        chain: response
            .chain
            .into_iter()
            .map(|link| DocumentLink {
                earlier: link.earlier,
                later: link.later,
                business_type: business_type(link.business_type),
            })
            .collect(),
        archive: response.archive,
        archive_unreadable: response.archive_unreadable,
    }
}

pub(crate) fn counts(response: pb::CountsResponse) -> Counts {
    Counts {
        agencies: response
            .agencies
            .into_iter()
            .map(|row| AgencyCounts {
                organ_id: row.organ_id,
                sent: row.sent,
                received: row.received,
            })
            .collect(),
        total_sent: response.total_sent,
        total_received: response.total_received,
    }
}

pub(crate) fn report(response: pb::ReportResponse) -> Report {
    Report {
        rows: response
            .rows
            .into_iter()
            .map(|row| ReportRow {
                organ_id: row.organ_id,
                sent: row.sent,
                received: row.received,
                statuses_reported: row.statuses_reported,
                sent_to_focus: row.sent_to_focus,
                sent_to_focus_signed: row.sent_to_focus_signed,
                overdue: row.overdue,
            })
            .collect(),
    }
}

pub(crate) fn route(response: pb::ExplainRouteResponse) -> Route {
    Route {
        organ_id: response.organ_id,
        kind: RouteKind::from_code(response.kind),
        node: response.node,
        explanation: response.explanation,
    }
}

pub(crate) fn document_filter(filter: &DocumentFilter) -> pb::ListDocumentsRequest {
    pb::ListDocumentsRequest {
        sender: filter.sender.clone(),
        recipient: filter.recipient.clone(),
        status: filter.status.map_or(0, StatusCode::code),
        queued: filter.queued,
        from_date: filter.from_date.clone(),
        to_date: filter.to_date.clone(),
        limit: filter.limit,
        overdue: filter.overdue,
    }
}

pub(crate) fn document_list(response: pb::ListDocumentsResponse) -> DocumentList {
    DocumentList {
        documents: response
            .documents
            .into_iter()
            .map(|summary| DocumentSummary {
                document_id: summary.document_id,
                sender: summary.sender,
                subject: summary.subject,
                accepted_at_unix_ms: summary.accepted_at_unix_ms,
                business_type: business_type(summary.business_type),
                recipients: summary
                    .recipients
                    .into_iter()
                    .map(recipient_status)
                    .collect(),
            })
            .collect(),
        truncated: response.truncated,
    }
}

fn node_view(node: pb::NodeView) -> NodeView {
    NodeView {
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
    }
}

pub(crate) fn node_list(response: pb::ListNodesResponse) -> NodeList {
    NodeList {
        nodes: response.nodes.into_iter().map(node_view).collect(),
        answering_hub: response.answering_hub,
        database: response.database.map(|database| DatabaseView {
            primary: database.primary,
            writable: database.writable,
            standbys: database
                .standbys
                .into_iter()
                .map(|standby| StandbyView {
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

pub(crate) fn overdue_filter(filter: &OverdueFilter) -> pb::ListOverdueRequest {
    pb::ListOverdueRequest {
        agency: filter.agency.clone(),
        limit: filter.limit,
    }
}

pub(crate) fn overdue_list(response: pb::ListOverdueResponse) -> OverdueList {
    OverdueList {
        deliveries: response
            .deliveries
            .into_iter()
            .map(|row| OverdueDelivery {
                document_id: row.document_id,
                sender: row.sender,
                recipient: row.recipient,
                deadline: row.deadline,
                deadline_unix_ms: row.deadline_unix_ms,
                late_ms: row.late_ms,
                subject: row.subject,
            })
            .collect(),
        truncated: response.truncated,
    }
}

pub(crate) fn dead_letter_filter(filter: &DeadLetterFilter) -> pb::ListDeadLettersRequest {
    pb::ListDeadLettersRequest {
        agency: filter.agency.clone(),
        include_resolved: filter.include_resolved,
        limit: filter.limit,
    }
}

pub(crate) fn dead_letter(letter: pb::DeadLetter) -> DeadLetter {
    DeadLetter {
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
            .map(|action| DeadLetterAction {
                action: action.action,
                operator: action.operator,
                at_unix_ms: action.at_unix_ms,
                reason: action.reason,
            })
            .collect(),
    }
}

pub(crate) fn dead_letter_list(response: pb::ListDeadLettersResponse) -> DeadLetterList {
    DeadLetterList {
        dead_letters: response.dead_letters.into_iter().map(dead_letter).collect(),
        truncated: response.truncated,
    }
}

pub(crate) fn signed_envelope(envelope: pb::SignedEnvelope) -> SignedEnvelope {
    SignedEnvelope {
        header: envelope.header,
        signature: envelope.signature,
        document_signature: envelope
            .document_signature
            .map(|signature| DocumentSignature {
                signer_certificate: signature.signer_certificate,
                signature: signature.signature,
            }),
    }
}

pub(crate) fn wire_envelope(envelope: &SignedEnvelope) -> pb::SignedEnvelope {
    pb::SignedEnvelope {
        header: envelope.header.clone(),
        signature: envelope.signature.clone(),
        document_signature: envelope.document_signature.as_ref().map(|signature| {
            pb::DocumentSignature {
                signer_certificate: signature.signer_certificate.clone(),
                signature: signature.signature.clone(),
            }
        }),
    }
}

pub(crate) fn delivery(delivery: pb::Delivery) -> Delivery {
    Delivery {
        queue_seq: delivery.queue_seq,
        document_id: delivery.document_id,
        envelope: delivery.envelope.map(signed_envelope),
        sender_certificate: delivery.sender_certificate,
        document_signature: SignatureState::from_code(delivery.document_signature),
        accepted_at_unix_ms: delivery.accepted_at_unix_ms,
        recipient: delivery.recipient,
        inline_attachments: delivery.inline_attachments,
    }
}

pub(crate) fn status_notice(notice: pb::StatusNotice) -> StatusNotice {
    StatusNotice {
        queue_seq: notice.queue_seq,
        document_id: notice.document_id,
        recipient: notice.recipient,
        entries: notice.entries.into_iter().map(status_entry).collect(),
    }
}

/// `None` for a message without a kind (one from a newer hub).
pub(crate) fn hub_item(message: pb::HubMessage) -> Option<HubItem> {
    match message.kind? {
        pb::hub_message::Kind::Delivery(item) => Some(HubItem::Delivery(Box::new(delivery(item)))),
        pb::hub_message::Kind::Notice(notice) => Some(HubItem::Notice(status_notice(notice))),
    }
}
