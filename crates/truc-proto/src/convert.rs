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

fn opt<T, U: From<T>>(item: Option<T>) -> Option<U> {
    item.map(U::from)
}

/// `From` both ways between a wire message and a domain type whose fields
/// are the message's, name for name: each field as it is, or through `map`
/// or `opt` where it holds other messages.
macro_rules! field_for_field {
    (@field $value:expr) => { $value };
    (@field $value:expr, $via:ident) => { $via($value) };
    ($wire:ty, $domain:ty { $($field:ident $(: $via:ident)?),+ $(,)? }) => {
        impl From<$wire> for $domain {
            fn from(from: $wire) -> Self {
                Self { $($field: field_for_field!(@field from.$field $(, $via)?)),+ }
            }
        }

        impl From<$domain> for $wire {
            fn from(from: $domain) -> Self {
                Self { $($field: field_for_field!(@field from.$field $(, $via)?)),+ }
            }
        }
    };
}

// The envelope header, field for field: the hub reads what a node sent, a
// node encodes what it signs and reads what it received.

field_for_field! { pb::Organ, RawOrgan { organ_id, organ_name, address, email, phone } }
field_for_field! { pb::AttachmentInfo, RawAttachment { name, media_type, size_bytes, sha256 } }

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

field_for_field! { pb::RecipientOutcome, RecipientOutcome { organ_id, accepted, reason } }

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

field_for_field! { pb::AgencyCounts, AgencyCounts { organ_id, sent, received } }
field_for_field! { pb::CountsResponse, Counts { agencies: map, total_sent, total_received } }
field_for_field! {
    pb::ReportRow, ReportRow {
        organ_id,
        sent,
        received,
        statuses_reported,
        sent_to_focus,
        sent_to_focus_signed,
        overdue,
    }
}
field_for_field! { pb::ReportResponse, Report { rows: map } }

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

field_for_field! { pb::ListDocumentsResponse, DocumentList { documents: map, truncated } }

// The directory and the database behind the hub.

field_for_field! {
    pb::NodeView, NodeView {
        organ_id,
        name,
        connection,
        relay,
        own_node,
        via,
        online,
        last_seen_unix_ms,
        queue_depth,
        oldest_unacked_document_id,
        oldest_unacked_accepted_at_unix_ms,
        serving_hub,
        queued_documents,
        queued_notices,
    }
}
field_for_field! {
    pb::StandbyView, StandbyView {
        name,
        address,
        state,
        sync_state,
        replay_lag_bytes,
    }
}
field_for_field! { pb::DatabaseView, DatabaseView { primary, writable, standbys: map } }
field_for_field! { pb::ListNodesResponse, NodeList { nodes: map, answering_hub, database: opt } }

// Overdue deliveries.

field_for_field! { pb::ListOverdueRequest, OverdueFilter { agency, limit } }
field_for_field! {
    pb::OverdueDelivery, OverdueDelivery {
        document_id,
        sender,
        recipient,
        deadline,
        deadline_unix_ms,
        late_ms,
        subject,
    }
}
field_for_field! { pb::ListOverdueResponse, OverdueList { deliveries: map, truncated } }

// Dead letters.

field_for_field! {
    pb::ListDeadLettersRequest, DeadLetterFilter {
        agency,
        include_resolved,
        limit,
    }
}
field_for_field! { pb::DeadLetterAction, DeadLetterAction { action, operator, at_unix_ms, reason } }
field_for_field! {
    pb::DeadLetter, DeadLetter {
        document_id,
        sender,
        recipient,
        queue_owner,
        expired_at_unix_ms,
        reason,
        state,
        actions: map,
    }
}
field_for_field! { pb::ListDeadLettersResponse, DeadLetterList { dead_letters: map, truncated } }

// Envelopes as they travel, and the delivery stream.

field_for_field! { pb::DocumentSignature, DocumentSignature { signer_certificate, signature } }
field_for_field! {
    pb::SignedEnvelope, SignedEnvelope {
        header,
        signature,
        document_signature: opt,
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
