//! Retention: which documents may leave the live store for an archive, and
//! what leaves with them or stays behind.
//!
//! A document may leave once it was accepted before the cutoff (the hub's
//! clock less the retention period) and every one of its deliveries is
//! final: completed, rejected or recalled (its queue item gone), or
//! expired into a dead letter an operator cancelled. With it leave its
//! deliveries and their histories, its dead letters, overdue records and
//! links, the attachments no other live document names, and the audit
//! chain's entries up to the cutoff (at least through its own send). What
//! stays: the counters (untouched), the report figures its records gave
//! (`RetainedFigures`), and its entry in the permanent duplicate index
//! (`ArchivedDocument`), which also says which archive holds it.
//!
//! The rule reads and stages; the store's writer has the batch written
//! into the archive and synced between [`Rules::plan_retirement`] and
//! [`Rules::finish_retirement`], so the removal is durable only after the
//! archive is.

use super::{Op, RetiredDocument, Rules};
use crate::audit::{AuditEntry, AuditHead};
use crate::error::StoreError;
use crate::records::{
    ArchiveFile, ArchivedDocument, DeadLetterRecord, DeadLetterState, DeliveryRecord,
    DocumentRecord, LinkRecord, OverdueRecord, QueueItem, RetainedFigures,
};

/// One document as it leaves the live store: everything it held of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchivedBundle {
    /// Whole: the signed envelope as received and the sender's certificate.
    pub document: DocumentRecord,
    /// Every delivery with its status history.
    pub deliveries: Vec<DeliveryRecord>,
    pub dead_letters: Vec<DeadLetterRecord>,
    pub overdue: Vec<OverdueRecord>,
    pub links: Vec<LinkRecord>,
}

/// What one archive batch holds: documents leaving, and the run of the
/// audit chain that leaves with them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchiveBatch {
    pub documents: Vec<ArchivedBundle>,
    /// Contiguous entries of the chain, oldest first; the first names the
    /// hash of the entry archived before it.
    pub audit: Vec<AuditEntry>,
    /// When the batch was made, by the hub's clock.
    pub made_at_unix_ms: i64,
    /// Where the hub's audit chain stands as the batch is made.
    pub live_audit_head: AuditHead,
}

impl ArchiveBatch {
    pub fn is_empty(&self) -> bool {
        self.documents.is_empty() && self.audit.is_empty()
    }
}

/// What one retirement did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetireOutcome {
    /// Documents that left the live store.
    pub archived: usize,
    /// Audit entries that left with them.
    pub audit_entries: usize,
    /// Candidates accepted before the cutoff that must stay: a delivery is
    /// not final yet.
    pub held: usize,
    /// Candidates left for a later batch (their send's audit entry did not
    /// fit in this one).
    pub deferred: usize,
    /// The archive file written, as committed.
    pub file: Option<ArchiveFile>,
    /// An archive of an earlier period closed first.
    pub closed: Option<ArchiveFile>,
}

/// A retirement planned: the operation holding the removals, the batch to
/// write first, and what it found.
pub(crate) struct Planned {
    pub op: Op,
    pub batch: ArchiveBatch,
    pub held: usize,
    pub deferred: usize,
}

impl Rules<'_> {
    /// The archive file this hub's retention appends to, as the group sees it.
    pub(crate) fn open_archive(&mut self, hub: &str) -> Result<Option<ArchiveFile>, StoreError> {
        if let Some(open) = &self.group.open_archive {
            return Ok(open.as_ref().and_then(|name| {
                self.group
                    .archive_files
                    .iter()
                    .rev()
                    .find(|file| file.name == *name)
                    .cloned()
            }));
        }
        self.view.open_archive(hub)
    }

    /// The archive files this group records, not yet in the store.
    pub(crate) fn archive_names_in_group(&self) -> impl Iterator<Item = String> + '_ {
        self.group
            .archive_files
            .iter()
            .map(|file| file.name.clone())
    }

    /// Where the group's audit chain stands.
    pub(crate) fn audit_head(&self) -> AuditHead {
        self.audit_head
    }

    /// Records a closed archive file: the next batch starts a new one.
    pub(crate) fn close_archive(&mut self, closed: ArchiveFile) {
        let mut op = self.begin();
        op.changes.archive_files.push(closed);
        op.changes.open_archive = Some(None);
        self.commit(op);
    }

    /// Whether a delivery is final and nothing carries it any more.
    fn delivery_final(
        &mut self,
        op: &Op,
        delivery: &DeliveryRecord,
        letter: Option<&DeadLetterRecord>,
    ) -> Result<bool, StoreError> {
        if letter.is_some_and(|letter| letter.state == DeadLetterState::Cancelled) {
            return Ok(true);
        }
        let terminal = matches!(delivery.state(), Ok(Some(state)) if state.is_terminal());
        if !terminal {
            return Ok(false);
        }
        // A recipient may complete a delivery its node has not acknowledged:
        // the queue item still carries it.
        Ok(!self.queued(op, delivery)?)
    }

    /// Whether a delivery's queue item is still in the queue of its
    /// recipient or of a relay above it.
    fn queued(&mut self, op: &Op, delivery: &DeliveryRecord) -> Result<bool, StoreError> {
        let mut holder = delivery.recipient.parse::<truc_domain::AgencyCode>().ok();
        while let Some(code) = holder {
            if let Some(QueueItem::Delivery {
                document_id,
                recipient,
            }) = self.queue_item(op, &code.to_string(), delivery.queue_seq)?
            {
                if document_id == delivery.document_id && recipient == delivery.recipient {
                    return Ok(true);
                }
            }
            holder = code.parent();
        }
        Ok(false)
    }

    /// Chooses, among `candidates`, the documents that may leave now, stages
    /// their removal and what stays of them, and gathers the batch to
    /// archive first: with them, the audit chain's oldest entries through
    /// the last one recorded before `cutoff_unix_ms` and through every
    /// leaving document's send (at most `audit_entries_max`; documents
    /// whose send does not fit wait for a later batch).
    pub(crate) fn plan_retirement(
        &mut self,
        candidates: &[String],
        cutoff_unix_ms: i64,
        audit_entries_max: usize,
        at_unix_ms: i64,
    ) -> Result<Planned, StoreError> {
        let mut op = self.begin();
        let mut bundles: Vec<(ArchivedBundle, u64)> = Vec::new();
        let mut held = 0;
        for document_id in candidates {
            if self.retired(&op, document_id) || self.group.deliveries.contains_key(document_id) {
                // Gone already, or changed by this very group: a later run sees it anew.
                continue;
            }
            let Some(document) = self.document(&op, document_id)? else {
                continue;
            };
            if document.accepted_at_unix_ms >= cutoff_unix_ms {
                continue;
            }
            let Some(send_seq) = self
                .view
                .send_seq(document_id, document.accepted_at_unix_ms)?
            else {
                continue;
            };
            let mut deliveries = self.deliveries(&op, document_id)?.records;
            // In one order whatever the engine, so that archives are the same.
            deliveries.sort_by(|a, b| a.recipient.cmp(&b.recipient));
            let mut letters = Vec::new();
            let mut all_final = true;
            for delivery in &deliveries {
                let letter = self.dead_letter(&op, &delivery.recipient, document_id)?;
                if !self.delivery_final(&op, delivery, letter.as_ref())? {
                    all_final = false;
                    break;
                }
                letters.extend(letter);
            }
            if !all_final {
                held += 1;
                continue;
            }
            let mut overdue = Vec::new();
            for delivery in &deliveries {
                overdue.extend(self.view.overdue_of(&delivery.recipient, document_id)?);
            }
            let links = self.view.links(document_id)?;
            bundles.push((
                ArchivedBundle {
                    document,
                    deliveries,
                    dead_letters: letters,
                    overdue,
                    links,
                },
                send_seq,
            ));
        }

        // The chain leaves from its oldest live entry, without a gap: what
        // was recorded before the cutoff, and at least every leaving
        // document's send.
        let needed = bundles
            .iter()
            .map(|(_, send_seq)| *send_seq)
            .max()
            .unwrap_or(0);
        let audit = self
            .view
            .audit_oldest(cutoff_unix_ms, needed, audit_entries_max)?;
        let first_live = match audit.first() {
            Some(entry) => Some(entry.seq),
            // Nothing to take: is anything of the chain still live?
            None => self
                .view
                .audit_oldest(i64::MAX, 0, 1)?
                .first()
                .map(|e| e.seq),
        };
        let through = audit.last().map(|entry| entry.seq);
        // A document leaves no earlier than its send's entry, so that every
        // send the live chain holds still has its signed envelope beside it.
        let before = bundles.len();
        bundles.retain(|(_, send_seq)| {
            first_live.is_none_or(|first| *send_seq < first)
                || through.is_some_and(|through| *send_seq <= through)
        });
        let deferred = before - bundles.len();
        if let Some(through) = through {
            op.changes.audit_pruned_through = Some(through);
        }

        let mut documents = Vec::with_capacity(bundles.len());
        for (bundle, _) in bundles {
            self.stage_retired(&mut op, &bundle)?;
            documents.push(bundle);
        }
        Ok(Planned {
            op,
            batch: ArchiveBatch {
                documents,
                audit,
                made_at_unix_ms: at_unix_ms,
                live_audit_head: self.audit_head,
            },
            held,
            deferred,
        })
    }

    /// Stages one document's removal and the figures kept for it.
    fn stage_retired(&mut self, op: &mut Op, bundle: &ArchivedBundle) -> Result<(), StoreError> {
        let document = &bundle.document;
        let date_key = document.date_key;
        op.changes
            .retained
            .entry((document.sender.clone(), date_key))
            .or_default()
            .sent += 1;
        for delivery in &bundle.deliveries {
            let overdue = bundle
                .overdue
                .iter()
                .filter(|record| record.recipient == delivery.recipient)
                .count() as u64;
            let mut figures = RetainedFigures::default();
            figures.count_delivery(delivery, overdue);
            op.changes
                .retained
                .entry((delivery.recipient.clone(), date_key))
                .or_default()
                .add(&figures);
        }
        for attachment in &document.attachments {
            // Read before the change, so that the group can tell which it
            // leaves named by no document.
            self.blob_refs(op, &attachment.sha256)?;
            *op.changes.blob_refs.entry(attachment.sha256).or_insert(0) -= 1;
        }
        op.changes.retired.push(RetiredDocument {
            document_id: document.document_id.clone(),
            accepted_at_unix_ms: document.accepted_at_unix_ms,
            overdue: bundle
                .overdue
                .iter()
                .map(|record| (record.recipient.clone(), record.kind))
                .collect(),
            dead_letters: bundle
                .dead_letters
                .iter()
                .map(|letter| letter.recipient.clone())
                .collect(),
            links: bundle
                .links
                .iter()
                .map(|link| {
                    if link.earlier == document.document_id {
                        link.later.clone()
                    } else {
                        link.earlier.clone()
                    }
                })
                .collect(),
        });
        Ok(())
    }

    /// Completes a retirement whose batch is in the archive: the documents'
    /// entries in the duplicate index (with where each one's record is) and
    /// the archive's new state join the group.
    pub(crate) fn finish_retirement(
        &mut self,
        mut planned: Planned,
        file: ArchiveFile,
        offsets: &[u64],
    ) -> RetireOutcome {
        let mut archived = Vec::with_capacity(planned.batch.documents.len());
        for (bundle, offset) in planned.batch.documents.iter().zip(offsets) {
            let document = &bundle.document;
            archived.push(ArchivedDocument {
                document_id: document.document_id.clone(),
                content_sha256: document.content_sha256,
                accepted_at_unix_ms: document.accepted_at_unix_ms,
                recipients: document.recipients.clone(),
                refused: document.refused.clone(),
                document_signature_state: document.document_signature_state,
                archive: file.name.clone(),
                archive_offset: *offset,
                archived_at_unix_ms: planned.batch.made_at_unix_ms,
            });
        }
        planned.op.changes.archived = archived;
        planned.op.changes.archive_files.push(file.clone());
        planned.op.changes.open_archive = Some(Some(file.name.clone()));
        let outcome = RetireOutcome {
            archived: planned.batch.documents.len(),
            audit_entries: planned.batch.audit.len(),
            held: planned.held,
            deferred: planned.deferred,
            file: Some(file),
            closed: None,
        };
        self.commit(planned.op);
        outcome
    }

    /// Drops a planned retirement whose batch could not be archived.
    pub(crate) fn abandon_retirement(&mut self, planned: Planned) {
        self.abandon(planned.op);
    }
}
