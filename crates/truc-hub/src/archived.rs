//! `GetStatus` of a document that left the live store: the duplicate index
//! says which archive holds it, and the hub reads its record from that
//! file (one frame, found by the offset the index keeps). When the file
//! has been moved to other storage, the answer says so and lists the
//! recipients the index kept, without their statuses.

use truc_domain::views::DocumentStatus;
use truc_store::{ArchivedDocument, DeliveryRecord, DocumentRecord};

use crate::convert::{business_type_of, link_view, signature_view};
use crate::error::HubError;
use crate::{operator, Caller, Hub};

pub(crate) fn status_of(
    hub: &Hub,
    caller: &Caller,
    document_id: &str,
) -> Result<DocumentStatus, HubError> {
    let archived = hub.store.archived(document_id)?.ok_or_else(|| {
        HubError::not_found("document_id", format!("{document_id} is not on the axis"))
    })?;
    let frame = read_frame(hub, &archived);
    let (sender, _) = archived.sender_and_date();
    // Only what visibility reads: the sender and the recipients.
    let record = DocumentRecord {
        document_id: archived.document_id.clone(),
        sender,
        date_key: 0,
        subject: frame
            .as_ref()
            .map(|f| f.subject.clone())
            .unwrap_or_default(),
        header_bytes: frame
            .as_ref()
            .map(|f| f.header_bytes.clone())
            .unwrap_or_default(),
        signature: Vec::new(),
        sender_certificate: Vec::new(),
        document_signature: None,
        document_signature_state: archived.document_signature_state,
        content_sha256: archived.content_sha256,
        accepted_at_unix_ms: archived.accepted_at_unix_ms,
        recipients: archived.recipients.clone(),
        refused: archived.refused.clone(),
        attachments: Vec::new(),
    };
    let Some(rows) = hub.visibility(caller, &record) else {
        return Err(HubError::denied(
            "document_id",
            format!(
                "{} is neither the sender nor a recipient of {document_id}",
                caller.name()
            ),
        ));
    };
    let directory = hub.directory();
    let (deliveries, dead_letters, links) = match &frame {
        Some(frame) => (
            frame.deliveries.clone(),
            frame.dead_letters.clone(),
            frame.links.clone(),
        ),
        None => (
            archived
                .recipients
                .iter()
                .map(|recipient| DeliveryRecord {
                    document_id: archived.document_id.clone(),
                    recipient: recipient.clone(),
                    queue_seq: 0,
                    history: Vec::new(),
                })
                .collect(),
            Vec::new(),
            Vec::new(),
        ),
    };
    let recipients = deliveries
        .into_iter()
        .filter(|delivery| rows.shows(&directory, &delivery.recipient))
        .map(|delivery| {
            let letter = dead_letters
                .iter()
                .find(|letter| letter.recipient == delivery.recipient)
                .cloned();
            operator::recipient_status_with(delivery, letter, true)
        })
        .collect();
    let business_type = business_type_of(&record.header_bytes);
    Ok(DocumentStatus {
        document_id: record.document_id,
        sender: record.sender,
        subject: record.subject,
        accepted_at_unix_ms: record.accepted_at_unix_ms,
        document_signature: signature_view(record.document_signature_state),
        recipients,
        refused: rows.refused(record.refused),
        business_type,
        chain: links.into_iter().map(link_view).collect(),
        archive: archived.archive,
        archive_unreadable: frame.is_none(),
    })
}

/// The document's record in its archive, if the file is at the hub.
fn read_frame(hub: &Hub, archived: &ArchivedDocument) -> Option<truc_archive::DocumentFrame> {
    let read = truc_archive::ArchiveReader::open(&hub.archive_dir.join(&archived.archive))
        .and_then(|mut reader| reader.document_at(archived.archive_offset));
    match read {
        Ok(frame) if frame.document_id == archived.document_id => Some(frame),
        Ok(frame) => {
            tracing::warn!(
                archive = %archived.archive,
                expected = %archived.document_id,
                found = %frame.document_id,
                "the archive holds another document where the index points"
            );
            None
        }
        Err(error) => {
            tracing::info!(%error, "an archived document's file is not readable here");
            None
        }
    }
}
