//! Accepting a document: its deliveries and queue items (in a relay's queue
//! for a unit reached through one), the sender's counter and the send's
//! audit entry, with a recall, update or replace applied to earlier
//! documents in the same operation. A resend of a stored document changes
//! nothing and is answered with the original.

use std::collections::BTreeMap;

use super::business::{BusinessEffect, BusinessOutcome, BusinessRequest};
use super::{Notices, Op, Rules};
use crate::audit::{sha256, AuditEvent, AuditKind};
use crate::error::StoreError;
use crate::records::{ArchivedDocument, DeliveryRecord, DocumentRecord, QueueItem};
use crate::PendingBlob;

#[derive(Debug)]
pub enum AcceptOutcome {
    Accepted(DocumentRecord),
    /// The same document was accepted before: here is the original.
    Duplicate(DocumentRecord),
    /// The same document was accepted before and has left the live store
    /// for an archive: here is what the duplicate index kept of it.
    Archived(ArchivedDocument),
}

/// How an accepted document reaches its recipients, and what it asks of
/// earlier documents of the same sender.
#[derive(Clone, Debug, Default)]
pub struct AcceptPlan {
    /// Recipient → the agency whose queue carries its delivery, for the
    /// recipients served by a relay (LGSP); the others' own queues carry theirs.
    pub queue_owners: BTreeMap<String, String>,
    /// A recall, update or replace of earlier documents.
    pub business: Option<BusinessRequest>,
}

pub type PlannedAcceptResult = Result<(AcceptOutcome, Vec<BusinessOutcome>), StoreError>;

impl Rules<'_> {
    /// Accepts a document with its routes and business request, all in one operation.
    pub(crate) fn accept_planned(
        &mut self,
        mut document: DocumentRecord,
        blobs: Vec<PendingBlob>,
        plan: &AcceptPlan,
    ) -> PlannedAcceptResult {
        let mut op = self.begin();
        let mut notices = Notices::default();
        let mut outcomes = Vec::new();
        let staged = (|| {
            if let Some(original) = self.document(&op, &document.document_id)? {
                // A resend changes nothing: the original's effects already stand.
                return if original.content_sha256 == document.content_sha256 {
                    Ok(Some(AcceptOutcome::Duplicate(original)))
                } else {
                    Err(StoreError::AlreadyExists {
                        document_id: original.document_id,
                        accepted_at_unix_ms: original.accepted_at_unix_ms,
                    })
                };
            }
            // The duplicate index outlives the live store.
            if let Some(archived) = self.archived(&op, &document.document_id)? {
                return if archived.content_sha256 == document.content_sha256 {
                    Ok(Some(AcceptOutcome::Archived(archived)))
                } else {
                    Err(StoreError::AlreadyExists {
                        document_id: archived.document_id,
                        accepted_at_unix_ms: archived.accepted_at_unix_ms,
                    })
                };
            }
            // An attachment the send found stored and did not keep may have
            // left with the last document that named it meanwhile.
            for (index, attachment) in document.attachments.iter().enumerate() {
                let brought = blobs.iter().any(|blob| blob.sha256 == attachment.sha256);
                if !brought && !self.blob_stored(&op, &attachment.sha256)? {
                    return Err(StoreError::Retry {
                        field: format!("attachments[{index}]"),
                        reason: "the stored copy of these bytes was archived while the document \
                                 was sent; send it again"
                            .into(),
                    });
                }
            }
            if let Some(business) = &plan.business {
                self.stage_business(&mut op, &document, business, &mut notices, &mut outcomes)?;
                // A recall tells nobody who never had the document.
                if business.business_type == 1 {
                    document.recipients.retain(|recipient| {
                        outcomes.iter().all(|o: &BusinessOutcome| {
                            o.recipient != *recipient || o.effect != BusinessEffect::Withdrawn
                        })
                    });
                }
            }
            // Only now: a resend of a stored document needs no room.
            self.room_for_documents()?;
            self.stage_accept(&mut op, &document, blobs, plan);
            Ok(None)
        })();
        match staged {
            Ok(None) => {
                self.commit(op);
                self.woken.extend(
                    document
                        .recipients
                        .iter()
                        .map(|r| plan.queue_owners.get(r).unwrap_or(r).clone()),
                );
                self.queue_notices(notices);
                Ok((AcceptOutcome::Accepted(document), outcomes))
            }
            Ok(Some(original)) => {
                self.abandon(op);
                Ok((original, Vec::new()))
            }
            Err(error) => {
                self.abandon(op);
                Err(error)
            }
        }
    }

    /// Stages a new document: a delivery and a queue item per recipient (in
    /// its relay's queue where it has one), the sender's counter, the
    /// attachments and the send's audit entry.
    fn stage_accept(
        &mut self,
        op: &mut Op,
        document: &DocumentRecord,
        blobs: Vec<PendingBlob>,
        plan: &AcceptPlan,
    ) {
        let mut deliveries = Vec::with_capacity(document.recipients.len());
        for recipient in &document.recipients {
            let queue_seq = self.take_seq();
            deliveries.push(DeliveryRecord {
                document_id: document.document_id.clone(),
                recipient: recipient.clone(),
                queue_seq,
                history: Vec::new(),
            });
            let owner = plan.queue_owners.get(recipient).unwrap_or(recipient);
            op.changes.queue.insert(
                (owner.clone(), queue_seq),
                Some(QueueItem::Delivery {
                    document_id: document.document_id.clone(),
                    recipient: recipient.clone(),
                }),
            );
            op.changes.backlog(&document.document_id, 1);
        }
        op.changes.deliveries.insert(
            document.document_id.clone(),
            super::DeliveriesChange {
                records: deliveries,
                stored: Vec::new(),
            },
        );
        op.changes.count(&document.sender, document.date_key, 1, 0);
        op.changes.blobs.extend(blobs);
        for attachment in &document.attachments {
            *op.changes.blob_refs.entry(attachment.sha256).or_insert(0) += 1;
        }
        // The send comes before what it did to earlier documents (a recall's
        // entries, staged first).
        op.changes.audit_events.insert(
            0,
            AuditEvent {
                kind: AuditKind::Send,
                at_unix_ms: document.accepted_at_unix_ms,
                actor: document.sender.clone(),
                document_id: document.document_id.clone(),
                recipient: document.recipients.join(","),
                status: 0,
                reason: String::new(),
                signed_sha256: Some(document.content_sha256),
                signature: document.signature.clone(),
                certificate_sha256: Some(sha256(&document.sender_certificate)),
            },
        );
        op.changes.documents.push(document.clone());
    }
}
