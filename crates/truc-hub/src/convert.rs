//! Wire <-> domain conversion, at the edge and only here.

use truc_domain::{RawAttachment, RawHeader, RawOrgan};
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
