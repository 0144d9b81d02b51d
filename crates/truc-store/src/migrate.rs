//! Moving a live store from one engine to the other (`truc store migrate`):
//! every record is read from the source through its reader and written into
//! an empty target as it is, in groups, without the rules (the audit chain
//! is copied, not chained again). The copy is then checked: the same
//! documents, deliveries, queues, counters and audit head, the target's
//! chain verifying entry by entry, and its counters equal to a recount.

use std::collections::{BTreeSet, HashSet};

use crate::audit::{AuditEntry, GENESIS_SHA256};
use crate::error::StoreError;
use crate::rules::{ChangeSet, DeliveriesChange, GroupChanges};
use crate::writer::Command;
use crate::{PendingBlob, Store};

/// Documents copied in one group (with their deliveries, attachments and links).
const DOCUMENTS_PER_GROUP_MAX: usize = 500;
/// Audit entries, queue items or deadlines copied in one group.
const RECORDS_PER_GROUP_MAX: usize = 5_000;

/// What a migration copied and checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MigrateReport {
    pub documents: u64,
    pub deliveries: u64,
    pub attachments: u64,
    pub queue_items: u64,
    pub audit_entries: u64,
    pub deadlines: u64,
    pub overdue: u64,
    pub dead_letters: u64,
    pub counters: u64,
}

/// How far a migration has come, for a progress line.
#[derive(Clone, Copy, Debug)]
pub struct MigrateProgress {
    pub documents: u64,
    pub audit_entries: u64,
}

impl Store {
    /// Writes records copied from another store as they are (see [`migrate`]).
    async fn import(
        &self,
        changes: ChangeSet,
        audit: Vec<AuditEntry>,
        next_queue_seq: u64,
    ) -> Result<(), StoreError> {
        // The send entry of each document, as a group that accepted them keeps it.
        let send_seqs = audit
            .iter()
            .filter(|entry| entry.kind == crate::audit::AuditKind::Send)
            .map(|entry| (entry.document_id.clone(), entry.seq))
            .collect();
        let group = GroupChanges {
            changes,
            audit,
            next_queue_seq,
            send_seqs,
        };
        self.submit(|reply| Command::Import { group, reply }).await
    }
}

/// Copies everything `from` holds into `to`, which must be empty, then
/// checks the copy. `from` must not change meanwhile (a stopped hub's store).
pub async fn migrate(
    from: &Store,
    to: &Store,
    mut progress: impl FnMut(MigrateProgress),
) -> Result<MigrateReport, StoreError> {
    let refuse = |reason: String| StoreError::Closed { what: reason };
    if to.audit_head()?.seq != 0 || to.document_ids().next().is_some() {
        return Err(refuse(
            "the target store is not empty: migrate into a new database or data directory".into(),
        ));
    }
    let next_queue_seq = from.reader.next_queue_seq()?;
    let mut report = MigrateReport::default();

    // Documents with their deliveries, attachments and links.
    let mut stored_attachments: HashSet<[u8; 32]> = HashSet::new();
    let mut seen_links: BTreeSet<(String, String)> = BTreeSet::new();
    let mut changes = ChangeSet::default();
    let mut in_group = 0usize;
    for document in from.documents() {
        let document = document?;
        for attachment in &document.attachments {
            if stored_attachments.insert(attachment.sha256) {
                let mut bytes = Vec::with_capacity(attachment.size_bytes as usize);
                for chunk in from.blob_chunks(&attachment.sha256)? {
                    bytes.extend_from_slice(&chunk?);
                }
                changes.blobs.push(PendingBlob {
                    sha256: attachment.sha256,
                    size_bytes: attachment.size_bytes,
                    extents: Vec::new(),
                    inline: Some(bytes),
                });
                report.attachments += 1;
            }
        }
        let deliveries = from.reader.deliveries(&document.document_id)?;
        report.deliveries += deliveries.len() as u64;
        changes.deliveries.insert(
            document.document_id.clone(),
            DeliveriesChange {
                records: deliveries,
                stored: Vec::new(),
            },
        );
        for link in from.links(&document.document_id)? {
            if seen_links.insert((link.earlier.clone(), link.later.clone())) {
                changes.links.push(link);
            }
        }
        changes.documents.push(document);
        report.documents += 1;
        in_group += 1;
        if in_group == DOCUMENTS_PER_GROUP_MAX {
            to.import(std::mem::take(&mut changes), Vec::new(), next_queue_seq)
                .await?;
            in_group = 0;
            progress(MigrateProgress {
                documents: report.documents,
                audit_entries: 0,
            });
        }
    }
    if in_group > 0 {
        to.import(std::mem::take(&mut changes), Vec::new(), next_queue_seq)
            .await?;
    }

    // Queues, deadlines, overdue records, dead letters and counters.
    for item in from.reader.queue_items() {
        let (owner, seq, item) = item?;
        changes.queue.insert((owner, seq), Some(item));
        report.queue_items += 1;
        if changes.queue.len() == RECORDS_PER_GROUP_MAX {
            to.import(std::mem::take(&mut changes), Vec::new(), next_queue_seq)
                .await?;
        }
    }
    changes.watches = from.due_watches(i64::MAX, usize::MAX)?.watches;
    report.deadlines = changes.watches.len() as u64;
    for record in from.overdue_records(None) {
        changes.overdue.push(record?);
        report.overdue += 1;
    }
    for letter in from.dead_letters(None) {
        let letter = letter?;
        changes.dead_letters.insert(
            (letter.recipient.clone(), letter.document_id.clone()),
            letter,
        );
        report.dead_letters += 1;
    }
    changes.counters = from.counter_entries()?;
    report.counters = changes.counters.len() as u64;
    to.import(std::mem::take(&mut changes), Vec::new(), next_queue_seq)
        .await?;

    // The audit chain, in order, as it is.
    let mut entries = Vec::with_capacity(RECORDS_PER_GROUP_MAX);
    for entry in from.audit_entries(1) {
        entries.push(entry?);
        report.audit_entries += 1;
        if entries.len() == RECORDS_PER_GROUP_MAX {
            to.import(
                ChangeSet::default(),
                std::mem::take(&mut entries),
                next_queue_seq,
            )
            .await?;
            progress(MigrateProgress {
                documents: report.documents,
                audit_entries: report.audit_entries,
            });
        }
    }
    if !entries.is_empty() {
        to.import(ChangeSet::default(), entries, next_queue_seq)
            .await?;
    }
    check(from, to, &report)?;
    Ok(report)
}

/// The copy holds what the source holds, and its chain and counters verify.
fn check(from: &Store, to: &Store, report: &MigrateReport) -> Result<(), StoreError> {
    let differ = |what: &str| StoreError::Corrupt {
        key: "(migration)".into(),
        reason: format!("{what} differ between the source and the copy"),
    };
    if from.audit_head()? != to.audit_head()? {
        return Err(differ("the audit heads"));
    }
    let mut previous = GENESIS_SHA256;
    let mut count = 0u64;
    for entry in to.audit_entries(1) {
        let entry = entry?;
        count += 1;
        if entry.seq != count
            || entry.previous_sha256 != previous
            || entry.compute_sha256() != entry.sha256
        {
            return Err(StoreError::Corrupt {
                key: format!("audit entry {}", entry.seq),
                reason: "the copied chain does not verify at this entry".into(),
            });
        }
        previous = entry.sha256;
    }
    if count != report.audit_entries {
        return Err(differ("the numbers of audit entries"));
    }
    if from.counter_entries()? != to.counter_entries()? {
        return Err(differ("the counters"));
    }
    if to.counter_entries()? != to.rebuild_counters()? {
        return Err(StoreError::Corrupt {
            key: "(migration)".into(),
            reason: "the copy's counters differ from a recount of its records".into(),
        });
    }
    if from.document_ids().count() != to.document_ids().count() {
        return Err(differ("the numbers of documents"));
    }
    if from.reader.next_queue_seq()? != to.reader.next_queue_seq()? {
        return Err(differ("the next queue sequence numbers"));
    }
    let queued = |store: &Store| -> Result<Vec<(String, u64, crate::QueueItem)>, StoreError> {
        store.reader.queue_items().collect()
    };
    if queued(from)? != queued(to)? {
        return Err(differ("the queues"));
    }
    Ok(())
}
