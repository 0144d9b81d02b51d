//! The wire messages to and from the domain's plain types (the raw header and
//! `truc_domain::views`), each conversion once: the hub's service converts
//! requests in and answers out, the node's client the other way round.
//!
//! Nothing here fails. A code this side does not know falls back as the
//! domain says (`StatusCode::Other`, `SignatureState::Absent`,
//! `RouteKind::Unspecified`, a new document); headers are checked field by
//! field later, by `Header::validate`, which names the field.

use truc_domain::views::{
    AgencyCounts, Counts, DatabaseView, DeadLetter, DeadLetterAction, DeadLetterFilter,
    DeadLetterList, Delivery, DocumentFilter, DocumentLink, DocumentList, DocumentSignature,
    DocumentStatus, DocumentSummary, HubItem, MoveRequest, NodeList, NodeView, OverdueDelivery,
    OverdueFilter, OverdueList, RecipientOutcome, RecipientStatus, Report, ReportRow, Route,
    RouteKind, SendReceipt, SignatureState, SignedEnvelope, StandbyView, StatusCode, StatusEntry,
    StatusNotice,
};
use truc_domain::{BusinessType, RawAttachment, RawHeader, RawOrgan};

use crate::v1 as pb;

/// The hub only stores the four business types it validated at intake; a
/// code this side does not know reads as a new document.
fn business_type(code: i32) -> BusinessType {
    BusinessType::from_code(code).unwrap_or(BusinessType::New)
}

fn map<T, U: From<T>>(items: Vec<T>) -> Vec<U> {
    items.into_iter().map(U::from).collect()
}

// The envelope header, field for field: the hub reads what a node sent, a
// node encodes what it signs and reads what it received.

impl From<pb::Organ> for RawOrgan {
    fn from(organ: pb::Organ) -> Self {
        RawOrgan {
            organ_id: organ.organ_id,
            organ_name: organ.organ_name,
            address: organ.address,
            email: organ.email,
            phone: organ.phone,
        }
    }
}

impl From<RawOrgan> for pb::Organ {
    fn from(organ: RawOrgan) -> Self {
        pb::Organ {
            organ_id: organ.organ_id,
            organ_name: organ.organ_name,
            address: organ.address,
            email: organ.email,
            phone: organ.phone,
        }
    }
}

impl From<pb::AttachmentInfo> for RawAttachment {
    fn from(attachment: pb::AttachmentInfo) -> Self {
        RawAttachment {
            name: attachment.name,
            media_type: attachment.media_type,
            size_bytes: attachment.size_bytes,
            sha256: attachment.sha256,
        }
    }
}

impl From<RawAttachment> for pb::AttachmentInfo {
    fn from(attachment: RawAttachment) -> Self {
        pb::AttachmentInfo {
            name: attachment.name,
            media_type: attachment.media_type,
            size_bytes: attachment.size_bytes,
            sha256: attachment.sha256,
        }
    }
}

/// A missing group reads as its empty default.
impl From<pb::EnvelopeHeader> for RawHeader {
    fn from(header: pb::EnvelopeHeader) -> Self {
        let code = header.code.unwrap_or_default();
        let promulgation = header.promulgation.unwrap_or_default();
        let document_type = header.document_type.unwrap_or_default();
        let other = header.other_info.unwrap_or_default();
        RawHeader {
            from: header.from.map(RawOrgan::from),
            to: map(header.to),
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
            attachments: map(header.attachments),
        }
    }
}

/// Every group is present, empty or not, so that the same fields always
/// encode to the same signed bytes.
impl From<RawHeader> for pb::EnvelopeHeader {
    fn from(raw: RawHeader) -> Self {
        pb::EnvelopeHeader {
            from: raw.from.map(pb::Organ::from),
            to: map(raw.to),
            code: Some(pb::DocumentCode {
                number: raw.code_number,
                notation: raw.code_notation,
            }),
            promulgation: Some(pb::Promulgation {
                place: raw.promulgation_place,
                date: raw.promulgation_date,
            }),
            document_type: Some(pb::DocumentType {
                r#type: raw.document_type,
                name: raw.document_type_name,
            }),
            subject: raw.subject,
            steering_type: raw.steering_type,
            due_date: raw.due_date,
            other_info: Some(pb::OtherInfo {
                priority: raw.priority,
                page_count: raw.page_count,
                appendix_count: raw.appendix_count,
            }),
            response_for: raw.response_for,
            business_type: raw.business_type,
            business_refs: raw.business_refs,
            attachments: map(raw.attachments),
        }
    }
}

// A send and its receipt; a status move.

impl From<pb::RecipientOutcome> for RecipientOutcome {
    fn from(outcome: pb::RecipientOutcome) -> Self {
        RecipientOutcome {
            organ_id: outcome.organ_id,
            accepted: outcome.accepted,
            reason: outcome.reason,
        }
    }
}

impl From<RecipientOutcome> for pb::RecipientOutcome {
    fn from(outcome: RecipientOutcome) -> Self {
        pb::RecipientOutcome {
            organ_id: outcome.organ_id,
            accepted: outcome.accepted,
            reason: outcome.reason,
        }
    }
}

impl From<pb::SendResponse> for SendReceipt {
    fn from(response: pb::SendResponse) -> Self {
        SendReceipt {
            document_id: response.document_id,
            recipients: map(response.recipients),
            duplicate: response.duplicate,
            document_signature: SignatureState::from_code(response.document_signature),
            accepted_at_unix_ms: response.accepted_at_unix_ms,
        }
    }
}

impl From<pb::StatusEntry> for StatusEntry {
    fn from(entry: pb::StatusEntry) -> Self {
        StatusEntry {
            status: StatusCode::from_code(entry.status),
            at_unix_ms: entry.at_unix_ms,
            actor: entry.actor,
            reason: entry.reason,
        }
    }
}

impl From<StatusEntry> for pb::StatusEntry {
    fn from(entry: StatusEntry) -> Self {
        pb::StatusEntry {
            status: entry.status.code(),
            at_unix_ms: entry.at_unix_ms,
            actor: entry.actor,
            reason: entry.reason,
        }
    }
}

impl From<MoveRequest> for pb::MoveStatusRequest {
    fn from(request: MoveRequest) -> Self {
        pb::MoveStatusRequest {
            document_id: request.document_id,
            recipient: request.recipient,
            status: request.status.code() as i32,
            reason: request.reason,
        }
    }
}

// A document's statuses.

impl From<pb::RecipientStatus> for RecipientStatus {
    fn from(row: pb::RecipientStatus) -> Self {
        RecipientStatus {
            recipient: row.recipient,
            current: StatusCode::from_code(row.current),
            history: map(row.history),
            dead_letter: row.dead_letter.map(DeadLetter::from),
        }
    }
}

impl From<RecipientStatus> for pb::RecipientStatus {
    fn from(row: RecipientStatus) -> Self {
        pb::RecipientStatus {
            recipient: row.recipient,
            current: row.current.code(),
            history: map(row.history),
            dead_letter: row.dead_letter.map(pb::DeadLetter::from),
        }
    }
}

impl From<pb::DocumentLink> for DocumentLink {
    fn from(link: pb::DocumentLink) -> Self {
        DocumentLink {
            earlier: link.earlier,
            later: link.later,
            business_type: business_type(link.business_type),
        }
    }
}

impl From<DocumentLink> for pb::DocumentLink {
    fn from(link: DocumentLink) -> Self {
        pb::DocumentLink {
            earlier: link.earlier,
            later: link.later,
            business_type: link.business_type.code(),
        }
    }
}

impl From<pb::GetStatusResponse> for DocumentStatus {
    fn from(response: pb::GetStatusResponse) -> Self {
        DocumentStatus {
            document_id: response.document_id,
            sender: response.sender,
            subject: response.subject,
            accepted_at_unix_ms: response.accepted_at_unix_ms,
            document_signature: SignatureState::from_code(response.document_signature),
            recipients: map(response.recipients),
            refused: map(response.refused),
            business_type: business_type(response.business_type),
            chain: map(response.chain),
            archive: response.archive,
            archive_unreadable: response.archive_unreadable,
        }
    }
}

impl From<DocumentStatus> for pb::GetStatusResponse {
    fn from(status: DocumentStatus) -> Self {
        pb::GetStatusResponse {
            document_id: status.document_id,
            sender: status.sender,
            subject: status.subject,
            accepted_at_unix_ms: status.accepted_at_unix_ms,
            document_signature: status.document_signature.code(),
            recipients: map(status.recipients),
            refused: map(status.refused),
            business_type: status.business_type.code(),
            chain: map(status.chain),
            archive: status.archive,
            archive_unreadable: status.archive_unreadable,
        }
    }
}

// Figures.

impl From<pb::AgencyCounts> for AgencyCounts {
    fn from(row: pb::AgencyCounts) -> Self {
        AgencyCounts {
            organ_id: row.organ_id,
            sent: row.sent,
            received: row.received,
        }
    }
}

impl From<pb::CountsResponse> for Counts {
    fn from(response: pb::CountsResponse) -> Self {
        Counts {
            agencies: map(response.agencies),
            total_sent: response.total_sent,
            total_received: response.total_received,
        }
    }
}

impl From<pb::ReportRow> for ReportRow {
    fn from(row: pb::ReportRow) -> Self {
        ReportRow {
            organ_id: row.organ_id,
            sent: row.sent,
            received: row.received,
            statuses_reported: row.statuses_reported,
            sent_to_focus: row.sent_to_focus,
            sent_to_focus_signed: row.sent_to_focus_signed,
            overdue: row.overdue,
        }
    }
}

impl From<pb::ReportResponse> for Report {
    fn from(response: pb::ReportResponse) -> Self {
        Report {
            rows: map(response.rows),
        }
    }
}

// Routes.

impl From<pb::ExplainRouteResponse> for Route {
    fn from(response: pb::ExplainRouteResponse) -> Self {
        Route {
            organ_id: response.organ_id,
            kind: RouteKind::from_code(response.kind),
            node: response.node,
            explanation: response.explanation,
        }
    }
}

impl From<Route> for pb::ExplainRouteResponse {
    fn from(route: Route) -> Self {
        pb::ExplainRouteResponse {
            organ_id: route.organ_id,
            kind: route.kind.code(),
            node: route.node,
            explanation: route.explanation,
        }
    }
}

// Document lists.

/// Status 0 on the wire is no filter on status.
impl From<pb::ListDocumentsRequest> for DocumentFilter {
    fn from(request: pb::ListDocumentsRequest) -> Self {
        DocumentFilter {
            sender: request.sender,
            recipient: request.recipient,
            status: (request.status != 0).then(|| StatusCode::from_code(request.status)),
            queued: request.queued,
            from_date: request.from_date,
            to_date: request.to_date,
            limit: request.limit,
            overdue: request.overdue,
        }
    }
}

impl From<DocumentFilter> for pb::ListDocumentsRequest {
    fn from(filter: DocumentFilter) -> Self {
        pb::ListDocumentsRequest {
            sender: filter.sender,
            recipient: filter.recipient,
            status: filter.status.map_or(0, StatusCode::code),
            queued: filter.queued,
            from_date: filter.from_date,
            to_date: filter.to_date,
            limit: filter.limit,
            overdue: filter.overdue,
        }
    }
}

impl From<pb::DocumentSummary> for DocumentSummary {
    fn from(summary: pb::DocumentSummary) -> Self {
        DocumentSummary {
            document_id: summary.document_id,
            sender: summary.sender,
            subject: summary.subject,
            accepted_at_unix_ms: summary.accepted_at_unix_ms,
            business_type: business_type(summary.business_type),
            recipients: map(summary.recipients),
        }
    }
}

impl From<DocumentSummary> for pb::DocumentSummary {
    fn from(summary: DocumentSummary) -> Self {
        pb::DocumentSummary {
            document_id: summary.document_id,
            sender: summary.sender,
            subject: summary.subject,
            accepted_at_unix_ms: summary.accepted_at_unix_ms,
            business_type: summary.business_type.code(),
            recipients: map(summary.recipients),
        }
    }
}

impl From<pb::ListDocumentsResponse> for DocumentList {
    fn from(response: pb::ListDocumentsResponse) -> Self {
        DocumentList {
            documents: map(response.documents),
            truncated: response.truncated,
        }
    }
}

impl From<DocumentList> for pb::ListDocumentsResponse {
    fn from(list: DocumentList) -> Self {
        pb::ListDocumentsResponse {
            documents: map(list.documents),
            truncated: list.truncated,
        }
    }
}

// The directory and the database behind the hub.

impl From<pb::NodeView> for NodeView {
    fn from(node: pb::NodeView) -> Self {
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
}

impl From<NodeView> for pb::NodeView {
    fn from(node: NodeView) -> Self {
        pb::NodeView {
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
}

impl From<pb::StandbyView> for StandbyView {
    fn from(standby: pb::StandbyView) -> Self {
        StandbyView {
            name: standby.name,
            address: standby.address,
            state: standby.state,
            sync_state: standby.sync_state,
            replay_lag_bytes: standby.replay_lag_bytes,
        }
    }
}

impl From<StandbyView> for pb::StandbyView {
    fn from(standby: StandbyView) -> Self {
        pb::StandbyView {
            name: standby.name,
            address: standby.address,
            state: standby.state,
            sync_state: standby.sync_state,
            replay_lag_bytes: standby.replay_lag_bytes,
        }
    }
}

impl From<pb::DatabaseView> for DatabaseView {
    fn from(database: pb::DatabaseView) -> Self {
        DatabaseView {
            primary: database.primary,
            writable: database.writable,
            standbys: map(database.standbys),
        }
    }
}

impl From<DatabaseView> for pb::DatabaseView {
    fn from(database: DatabaseView) -> Self {
        pb::DatabaseView {
            primary: database.primary,
            writable: database.writable,
            standbys: map(database.standbys),
        }
    }
}

impl From<pb::ListNodesResponse> for NodeList {
    fn from(response: pb::ListNodesResponse) -> Self {
        NodeList {
            nodes: map(response.nodes),
            answering_hub: response.answering_hub,
            database: response.database.map(DatabaseView::from),
        }
    }
}

impl From<NodeList> for pb::ListNodesResponse {
    fn from(list: NodeList) -> Self {
        pb::ListNodesResponse {
            nodes: map(list.nodes),
            answering_hub: list.answering_hub,
            database: list.database.map(pb::DatabaseView::from),
        }
    }
}

// Overdue deliveries.

impl From<pb::ListOverdueRequest> for OverdueFilter {
    fn from(request: pb::ListOverdueRequest) -> Self {
        OverdueFilter {
            agency: request.agency,
            limit: request.limit,
        }
    }
}

impl From<OverdueFilter> for pb::ListOverdueRequest {
    fn from(filter: OverdueFilter) -> Self {
        pb::ListOverdueRequest {
            agency: filter.agency,
            limit: filter.limit,
        }
    }
}

impl From<pb::OverdueDelivery> for OverdueDelivery {
    fn from(row: pb::OverdueDelivery) -> Self {
        OverdueDelivery {
            document_id: row.document_id,
            sender: row.sender,
            recipient: row.recipient,
            deadline: row.deadline,
            deadline_unix_ms: row.deadline_unix_ms,
            late_ms: row.late_ms,
            subject: row.subject,
        }
    }
}

impl From<OverdueDelivery> for pb::OverdueDelivery {
    fn from(row: OverdueDelivery) -> Self {
        pb::OverdueDelivery {
            document_id: row.document_id,
            sender: row.sender,
            recipient: row.recipient,
            deadline: row.deadline,
            deadline_unix_ms: row.deadline_unix_ms,
            late_ms: row.late_ms,
            subject: row.subject,
        }
    }
}

impl From<pb::ListOverdueResponse> for OverdueList {
    fn from(response: pb::ListOverdueResponse) -> Self {
        OverdueList {
            deliveries: map(response.deliveries),
            truncated: response.truncated,
        }
    }
}

impl From<OverdueList> for pb::ListOverdueResponse {
    fn from(list: OverdueList) -> Self {
        pb::ListOverdueResponse {
            deliveries: map(list.deliveries),
            truncated: list.truncated,
        }
    }
}

// Dead letters.

impl From<pb::ListDeadLettersRequest> for DeadLetterFilter {
    fn from(request: pb::ListDeadLettersRequest) -> Self {
        DeadLetterFilter {
            agency: request.agency,
            include_resolved: request.include_resolved,
            limit: request.limit,
        }
    }
}

impl From<DeadLetterFilter> for pb::ListDeadLettersRequest {
    fn from(filter: DeadLetterFilter) -> Self {
        pb::ListDeadLettersRequest {
            agency: filter.agency,
            include_resolved: filter.include_resolved,
            limit: filter.limit,
        }
    }
}

impl From<pb::DeadLetterAction> for DeadLetterAction {
    fn from(action: pb::DeadLetterAction) -> Self {
        DeadLetterAction {
            action: action.action,
            operator: action.operator,
            at_unix_ms: action.at_unix_ms,
            reason: action.reason,
        }
    }
}

impl From<DeadLetterAction> for pb::DeadLetterAction {
    fn from(action: DeadLetterAction) -> Self {
        pb::DeadLetterAction {
            action: action.action,
            operator: action.operator,
            at_unix_ms: action.at_unix_ms,
            reason: action.reason,
        }
    }
}

impl From<pb::DeadLetter> for DeadLetter {
    fn from(letter: pb::DeadLetter) -> Self {
        DeadLetter {
            document_id: letter.document_id,
            sender: letter.sender,
            recipient: letter.recipient,
            queue_owner: letter.queue_owner,
            expired_at_unix_ms: letter.expired_at_unix_ms,
            reason: letter.reason,
            state: letter.state,
            actions: map(letter.actions),
        }
    }
}

impl From<DeadLetter> for pb::DeadLetter {
    fn from(letter: DeadLetter) -> Self {
        pb::DeadLetter {
            document_id: letter.document_id,
            sender: letter.sender,
            recipient: letter.recipient,
            queue_owner: letter.queue_owner,
            expired_at_unix_ms: letter.expired_at_unix_ms,
            reason: letter.reason,
            state: letter.state,
            actions: map(letter.actions),
        }
    }
}

impl From<pb::ListDeadLettersResponse> for DeadLetterList {
    fn from(response: pb::ListDeadLettersResponse) -> Self {
        DeadLetterList {
            dead_letters: map(response.dead_letters),
            truncated: response.truncated,
        }
    }
}

impl From<DeadLetterList> for pb::ListDeadLettersResponse {
    fn from(list: DeadLetterList) -> Self {
        pb::ListDeadLettersResponse {
            dead_letters: map(list.dead_letters),
            truncated: list.truncated,
        }
    }
}

// Envelopes as they travel, and the delivery stream.

impl From<pb::DocumentSignature> for DocumentSignature {
    fn from(signature: pb::DocumentSignature) -> Self {
        DocumentSignature {
            signer_certificate: signature.signer_certificate,
            signature: signature.signature,
        }
    }
}

impl From<DocumentSignature> for pb::DocumentSignature {
    fn from(signature: DocumentSignature) -> Self {
        pb::DocumentSignature {
            signer_certificate: signature.signer_certificate,
            signature: signature.signature,
        }
    }
}

impl From<pb::SignedEnvelope> for SignedEnvelope {
    fn from(envelope: pb::SignedEnvelope) -> Self {
        SignedEnvelope {
            header: envelope.header,
            signature: envelope.signature,
            document_signature: envelope.document_signature.map(DocumentSignature::from),
        }
    }
}

impl From<SignedEnvelope> for pb::SignedEnvelope {
    fn from(envelope: SignedEnvelope) -> Self {
        pb::SignedEnvelope {
            header: envelope.header,
            signature: envelope.signature,
            document_signature: envelope.document_signature.map(pb::DocumentSignature::from),
        }
    }
}

impl From<pb::Delivery> for Delivery {
    fn from(delivery: pb::Delivery) -> Self {
        Delivery {
            queue_seq: delivery.queue_seq,
            document_id: delivery.document_id,
            envelope: delivery.envelope.map(SignedEnvelope::from),
            sender_certificate: delivery.sender_certificate,
            document_signature: SignatureState::from_code(delivery.document_signature),
            accepted_at_unix_ms: delivery.accepted_at_unix_ms,
            recipient: delivery.recipient,
            inline_attachments: delivery.inline_attachments,
        }
    }
}

impl From<pb::StatusNotice> for StatusNotice {
    fn from(notice: pb::StatusNotice) -> Self {
        StatusNotice {
            queue_seq: notice.queue_seq,
            document_id: notice.document_id,
            recipient: notice.recipient,
            entries: map(notice.entries),
        }
    }
}

/// A delivery stream's message; `None` for one without a kind (one from a
/// newer hub), which the reader passes over.
pub fn hub_item(message: pb::HubMessage) -> Option<HubItem> {
    match message.kind? {
        pb::hub_message::Kind::Delivery(item) => {
            Some(HubItem::Delivery(Box::new(Delivery::from(item))))
        }
        pb::hub_message::Kind::Notice(notice) => Some(HubItem::Notice(StatusNotice::from(notice))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(code: i32) -> StatusEntry {
        StatusEntry {
            status: StatusCode::from_code(code),
            at_unix_ms: 1_700_000_000_000,
            actor: "000.00.00.H01".into(),
            reason: "read".into(),
        }
    }

    fn dead_letter() -> DeadLetter {
        DeadLetter {
            document_id: "000.00.00.H01,2024/01/02,1/QD".into(),
            sender: "000.00.00.H01".into(),
            recipient: "000.00.00.H02".into(),
            queue_owner: "000.00.00.H02".into(),
            expired_at_unix_ms: 5,
            reason: "expired".into(),
            state: "open".into(),
            actions: vec![DeadLetterAction {
                action: "resend".into(),
                operator: "ops".into(),
                at_unix_ms: 6,
                reason: "again".into(),
            }],
        }
    }

    fn recipient_status() -> RecipientStatus {
        RecipientStatus {
            recipient: "000.00.00.H02".into(),
            current: StatusCode::from_code(3),
            history: vec![entry(3), entry(StatusCode::OVERDUE), entry(7)],
            dead_letter: Some(dead_letter()),
        }
    }

    fn round_trip<D, W>(domain: D)
    where
        D: Clone + PartialEq + std::fmt::Debug + From<W>,
        W: From<D>,
    {
        assert_eq!(D::from(W::from(domain.clone())), domain);
    }

    #[test]
    fn views_survive_the_wire_both_ways() {
        round_trip::<_, pb::StatusEntry>(entry(0));
        round_trip::<_, pb::StatusEntry>(entry(-1));
        round_trip::<_, pb::RecipientStatus>(recipient_status());
        round_trip::<_, pb::GetStatusResponse>(DocumentStatus {
            document_id: "id".into(),
            sender: "000.00.00.H01".into(),
            subject: "subject".into(),
            accepted_at_unix_ms: 9,
            document_signature: SignatureState::Valid,
            recipients: vec![recipient_status()],
            refused: vec![RecipientOutcome {
                organ_id: "bad".into(),
                accepted: false,
                reason: "unknown".into(),
            }],
            business_type: BusinessType::Update,
            chain: vec![DocumentLink {
                earlier: "a".into(),
                later: "b".into(),
                business_type: BusinessType::Revoke,
            }],
            archive: "archive-1".into(),
            archive_unreadable: true,
        });
        round_trip::<_, pb::ExplainRouteResponse>(Route {
            organ_id: "000.00.00.H02".into(),
            kind: RouteKind::Relay,
            node: "000.00.00.H03".into(),
            explanation: "relayed".into(),
        });
        round_trip::<_, pb::ListDocumentsResponse>(DocumentList {
            documents: vec![DocumentSummary {
                document_id: "id".into(),
                sender: "s".into(),
                subject: "t".into(),
                accepted_at_unix_ms: 1,
                business_type: BusinessType::Replace,
                recipients: vec![recipient_status()],
            }],
            truncated: true,
        });
        round_trip::<_, pb::ListNodesResponse>(NodeList {
            nodes: vec![NodeView {
                organ_id: "000.00.00.H02".into(),
                name: "node".into(),
                queue_depth: 4,
                queued_notices: 2,
                ..NodeView::default()
            }],
            answering_hub: "hub-a".into(),
            database: Some(DatabaseView {
                primary: "db".into(),
                writable: true,
                standbys: vec![StandbyView {
                    name: "standby".into(),
                    replay_lag_bytes: 12,
                    ..StandbyView::default()
                }],
            }),
        });
        round_trip::<_, pb::ListOverdueResponse>(OverdueList {
            deliveries: vec![OverdueDelivery {
                document_id: "id".into(),
                late_ms: 3,
                ..OverdueDelivery::default()
            }],
            truncated: false,
        });
        round_trip::<_, pb::ListDeadLettersResponse>(DeadLetterList {
            dead_letters: vec![dead_letter()],
            truncated: true,
        });
        round_trip::<_, pb::SignedEnvelope>(SignedEnvelope {
            header: vec![1, 2],
            signature: vec![3],
            document_signature: Some(DocumentSignature {
                signer_certificate: vec![4],
                signature: vec![5],
            }),
        });
    }

    #[test]
    fn filters_survive_the_wire_both_ways() {
        round_trip::<_, pb::ListDocumentsRequest>(DocumentFilter::default());
        round_trip::<_, pb::ListDocumentsRequest>(DocumentFilter {
            sender: "s".into(),
            status: Some(StatusCode::from_code(StatusCode::EXPIRED)),
            queued: true,
            limit: 10,
            ..DocumentFilter::default()
        });
        round_trip::<_, pb::ListOverdueRequest>(OverdueFilter {
            agency: "a".into(),
            limit: 2,
        });
        round_trip::<_, pb::ListDeadLettersRequest>(DeadLetterFilter {
            agency: "a".into(),
            include_resolved: true,
            limit: 2,
        });
    }

    #[test]
    fn unknown_codes_fall_back_as_the_domain_says() {
        let status = DocumentStatus::from(pb::GetStatusResponse {
            document_signature: 9,
            business_type: 9,
            chain: vec![pb::DocumentLink {
                business_type: -1,
                ..Default::default()
            }],
            ..Default::default()
        });
        assert_eq!(status.document_signature, SignatureState::Absent);
        assert_eq!(status.business_type, BusinessType::New);
        assert_eq!(status.chain[0].business_type, BusinessType::New);
        assert_eq!(
            Route::from(pb::ExplainRouteResponse {
                kind: 9,
                ..Default::default()
            })
            .kind,
            RouteKind::Unspecified
        );
        // Status 0 asks for every status, not for queued deliveries.
        assert_eq!(
            DocumentFilter::from(pb::ListDocumentsRequest::default()).status,
            None
        );
    }

    #[test]
    fn header_groups_are_always_present_and_read_back() {
        let raw = RawHeader {
            from: Some(RawOrgan {
                organ_id: "000.00.00.H01".into(),
                organ_name: "Sender".into(),
                ..RawOrgan::default()
            }),
            to: vec![RawOrgan {
                organ_id: "000.00.00.H02".into(),
                ..RawOrgan::default()
            }],
            code_number: "1".into(),
            code_notation: "QD".into(),
            promulgation_date: "2024-01-02".into(),
            business_type: 2,
            business_refs: vec!["earlier".into()],
            attachments: vec![RawAttachment {
                name: "a.pdf".into(),
                media_type: "application/pdf".into(),
                size_bytes: 3,
                sha256: vec![7; 32],
            }],
            ..RawHeader::default()
        };
        let wire = pb::EnvelopeHeader::from(raw.clone());
        assert!(wire.code.is_some() && wire.promulgation.is_some());
        assert!(wire.document_type.is_some() && wire.other_info.is_some());
        assert_eq!(RawHeader::from(wire), raw);
        // A header without its groups reads as their empty defaults.
        assert_eq!(
            RawHeader::from(pb::EnvelopeHeader::default()),
            RawHeader::default()
        );
    }

    #[test]
    fn a_message_without_a_kind_is_no_item() {
        assert_eq!(hub_item(pb::HubMessage { kind: None }), None);
        let notice = hub_item(pb::HubMessage {
            kind: Some(pb::hub_message::Kind::Notice(pb::StatusNotice {
                queue_seq: 4,
                entries: vec![pb::StatusEntry {
                    status: 5,
                    ..Default::default()
                }],
                ..Default::default()
            })),
        });
        match notice {
            Some(HubItem::Notice(notice)) => {
                assert_eq!(notice.queue_seq, 4);
                assert_eq!(notice.entries[0].status, StatusCode::from_code(5));
            }
            other => panic!("expected a notice, got {other:?}"),
        }
    }
}
