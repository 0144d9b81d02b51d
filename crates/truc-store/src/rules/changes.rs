//! The typed change set: what an operation, and then a whole group, does to
//! the store, in the store's own terms (documents, deliveries, queue items,
//! counters, audit entries…), not in any engine's keys or rows. Each engine
//! turns one group's change set into one durable write.

use std::collections::{BTreeMap, HashMap};

use crate::audit::{AuditEntry, AuditEvent};
use crate::records::{
    ArchiveFile, ArchivedDocument, DeadLetterRecord, DeadlineKind, DeliveryRecord, DocumentRecord,
    LinkRecord, OverdueRecord, QueueItem, RetainedFigures, WatchRecord,
};
use crate::PendingBlob;

/// Where a due block of deadlines is, in the engine's own terms (a key of
/// the embedded tree, a row of PostgreSQL): handed out by the reader and
/// given back by the rules when the block is handled.
pub type WatchBlockId = Vec<u8>;

/// Every delivery of one document as the rules left it, and what the engine
/// held before, so that an engine keeping rows writes only what changed.
#[derive(Clone, Debug, Default)]
pub(crate) struct DeliveriesChange {
    pub records: Vec<DeliveryRecord>,
    /// For each record the engine held (the first `stored.len()` records),
    /// the length of its history then; later records are new.
    pub stored: Vec<usize>,
}

impl DeliveriesChange {
    /// The deliveries as the engine holds them, before any change.
    pub(crate) fn read(records: Vec<DeliveryRecord>) -> Self {
        let stored = records.iter().map(|record| record.history.len()).collect();
        DeliveriesChange { records, stored }
    }

    /// Whether `index` names a delivery the engine does not hold yet.
    pub(crate) fn is_new(&self, index: usize) -> bool {
        index >= self.stored.len()
    }
}

/// A document leaving the live store, with what is stored under it that
/// leaves too (its deliveries go with it).
#[derive(Clone, Debug)]
pub(crate) struct RetiredDocument {
    pub document_id: String,
    pub accepted_at_unix_ms: i64,
    /// Its overdue records, by (recipient, deadline).
    pub overdue: Vec<(String, DeadlineKind)>,
    /// The recipients of its dead letters.
    pub dead_letters: Vec<String>,
    /// The other document of each link stored under it.
    pub links: Vec<String>,
}

/// What one operation, or one group of them, changes. Reads see the
/// operation's own changes first, then the group's, then the engine.
#[derive(Debug, Default)]
pub(crate) struct ChangeSet {
    /// Documents accepted, in order.
    pub documents: Vec<DocumentRecord>,
    /// Attachments the documents name, to be stored unless the engine has
    /// their digest already.
    pub blobs: Vec<PendingBlob>,
    /// Every changed document's deliveries, whole.
    pub deliveries: HashMap<String, DeliveriesChange>,
    /// Queue items put (`Some`) or taken (`None`), by (queue owner, sequence).
    pub queue: BTreeMap<(String, u64), Option<QueueItem>>,
    /// Added to each (agency, `yyyymmdd`) counter: (sent, received).
    pub counters: BTreeMap<(String, u32), (u64, u64)>,
    pub links: Vec<LinkRecord>,
    /// Deadlines set.
    pub watches: Vec<WatchRecord>,
    /// Blocks of deadlines handled, to be removed.
    pub watch_blocks_done: Vec<WatchBlockId>,
    pub overdue: Vec<OverdueRecord>,
    /// Dead letters written or changed, by (recipient, document id).
    pub dead_letters: HashMap<(String, String), DeadLetterRecord>,
    /// What the operation adds to the audit log, in order; chained when the
    /// operation joins its group, so a refused one leaves no gap.
    pub audit_events: Vec<AuditEvent>,
    /// Each sender's deliveries waiting in some queue: +1 queued, −1 taken.
    pub backlog: HashMap<String, i64>,
    /// Documents that leave the live store (archived first).
    pub retired: Vec<RetiredDocument>,
    /// The duplicate index's entries of the documents that left.
    pub archived: Vec<ArchivedDocument>,
    /// Added to the report figures kept per (agency, `yyyymmdd`).
    pub retained: BTreeMap<(String, u32), RetainedFigures>,
    /// How many more (or fewer) documents name each attachment.
    pub blob_refs: HashMap<[u8; 32], i64>,
    /// Attachments no document names any more: removed with their bytes.
    pub blobs_dropped: Vec<[u8; 32]>,
    /// The audit chain's entries through this sequence number leave the
    /// live store (they are in an archive).
    pub audit_pruned_through: Option<u64>,
    /// Archive files whose committed state changed.
    pub archive_files: Vec<ArchiveFile>,
    /// The retention task's archive now (`Some(None)`: none is open).
    pub open_archive: Option<Option<String>>,
}

impl ChangeSet {
    pub(crate) fn document(&self, document_id: &str) -> Option<&DocumentRecord> {
        self.documents
            .iter()
            .rev()
            .find(|document| document.document_id == document_id)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.documents.is_empty()
            && self.blobs.is_empty()
            && self.deliveries.is_empty()
            && self.queue.is_empty()
            && self.counters.is_empty()
            && self.links.is_empty()
            && self.watches.is_empty()
            && self.watch_blocks_done.is_empty()
            && self.overdue.is_empty()
            && self.dead_letters.is_empty()
            && self.audit_events.is_empty()
            && self.retired.is_empty()
            && self.archived.is_empty()
            && self.retained.is_empty()
            && self.blob_refs.is_empty()
            && self.blobs_dropped.is_empty()
            && self.audit_pruned_through.is_none()
            && self.archive_files.is_empty()
            && self.open_archive.is_none()
    }

    /// A delivery of `document_id` queued (+1) or taken from its queue (−1).
    pub(crate) fn backlog(&mut self, document_id: &str, change: i64) {
        let sender = truc_domain::sender_of_id(document_id);
        *self.backlog.entry(sender.to_owned()).or_insert(0) += change;
    }

    pub(crate) fn count(&mut self, agency: &str, date_key: u32, sent: u64, received: u64) {
        let counter = self
            .counters
            .entry((agency.to_owned(), date_key))
            .or_default();
        counter.0 += sent;
        counter.1 += received;
    }

    /// Folds a later change set (an operation that read through this one)
    /// into this one. Audit events are left to the caller, who chains them.
    pub(crate) fn absorb(&mut self, later: ChangeSet) {
        self.documents.extend(later.documents);
        self.blobs.extend(later.blobs);
        self.deliveries.extend(later.deliveries);
        self.queue.extend(later.queue);
        for ((agency, date_key), (sent, received)) in later.counters {
            self.count(&agency, date_key, sent, received);
        }
        self.links.extend(later.links);
        self.watches.extend(later.watches);
        self.watch_blocks_done.extend(later.watch_blocks_done);
        self.overdue.extend(later.overdue);
        self.dead_letters.extend(later.dead_letters);
        for (sender, change) in later.backlog {
            *self.backlog.entry(sender).or_insert(0) += change;
        }
        self.retired.extend(later.retired);
        self.archived.extend(later.archived);
        for (key, figures) in later.retained {
            self.retained.entry(key).or_default().add(&figures);
        }
        for (digest, change) in later.blob_refs {
            *self.blob_refs.entry(digest).or_insert(0) += change;
        }
        self.blobs_dropped.extend(later.blobs_dropped);
        if later.audit_pruned_through.is_some() {
            self.audit_pruned_through = later.audit_pruned_through;
        }
        self.archive_files.extend(later.archive_files);
        if later.open_archive.is_some() {
            self.open_archive = later.open_archive;
        }
    }
}

/// One group's changes as an engine writes them: the change set, the audit
/// entries chained from the head the group started from, and the counters
/// the group leaves behind it.
#[derive(Debug)]
pub(crate) struct GroupChanges {
    pub changes: ChangeSet,
    pub audit: Vec<AuditEntry>,
    pub next_queue_seq: u64,
    /// The sequence number of each accepted document's send entry, kept
    /// with the document so that retention knows when the chain holding
    /// it has been archived.
    pub send_seqs: HashMap<String, u64>,
}

impl GroupChanges {
    pub(crate) fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.audit.is_empty()
    }
}
