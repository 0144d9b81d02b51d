//! The store's rules, once for every engine: each operation (accept,
//! acknowledge, move, recall / update / replace, lapse, resend, cancel,
//! retire into an archive) reads what it needs through [`View`] and stages
//! a typed [`ChangeSet`].
//! An operation that fails stages nothing; one that succeeds joins its
//! group, whose audit entries are chained here. Engines only read, write,
//! group and make durable; they never decide.

mod accept;
mod ack;
mod business;
pub(crate) mod changes;
pub(crate) mod moves;
pub(crate) mod retention;
mod watch;

use std::collections::{BTreeSet, HashMap};

use truc_domain::DocumentId;

pub(crate) use changes::{
    ChangeSet, DeliveriesChange, GroupChanges, RetiredDocument, WatchBlockId,
};

use crate::audit::{AuditEntry, AuditEvent, AuditHead, AuditKind};
use crate::error::StoreError;
use crate::records::{
    ArchiveFile, ArchivedDocument, DeadLetterRecord, DeliveryRecord, DocumentRecord, LinkRecord,
    OverdueRecord, QueueItem, StatusEntry, WatchRecord,
};

pub use accept::{AcceptOutcome, AcceptPlan, PlannedAcceptResult};
pub use ack::AckOutcome;
pub use business::{BusinessEffect, BusinessOutcome, BusinessRequest};
pub use moves::MoveRequest;
pub use retention::{ArchiveBatch, ArchivedBundle, RetireOutcome};
pub use watch::{AcceptDeadlines, LapseOutcome, EXPIRED_CODE, HUB_ACTOR, OVERDUE_CODE};

/// What the rules read from an engine, as the group found it when it began
/// (the rules lay their own staged changes over it). Reads take `&mut self`
/// so an engine may read inside its open transaction.
pub(crate) trait View {
    /// A stored document, whole (a duplicate is answered with the original).
    fn document(&mut self, document_id: &str) -> Result<Option<DocumentRecord>, StoreError>;
    /// Every delivery of a document (`None`: the document has none).
    fn deliveries(&mut self, document_id: &str) -> Result<Option<Vec<DeliveryRecord>>, StoreError>;
    fn queue_item(&mut self, owner: &str, seq: u64) -> Result<Option<QueueItem>, StoreError>;
    fn dead_letter(
        &mut self,
        recipient: &str,
        document_id: &str,
    ) -> Result<Option<DeadLetterRecord>, StoreError>;
    /// The deadlines of a block handed out by the reader, if still there.
    fn watch_block(&mut self, block: &WatchBlockId)
        -> Result<Option<Vec<WatchRecord>>, StoreError>;
    /// `StorageFull` when a new document may not be stored now.
    fn room_for_documents(&mut self) -> Result<(), StoreError>;
    /// How many documents name a stored attachment (`None`: not stored).
    fn blob_refs(&mut self, sha256: &[u8; 32]) -> Result<Option<u64>, StoreError>;
    /// The duplicate index's entry of a document that left for an archive.
    fn archived(&mut self, document_id: &str) -> Result<Option<ArchivedDocument>, StoreError>;
    /// A document's overdue records to one recipient.
    fn overdue_of(
        &mut self,
        recipient: &str,
        document_id: &str,
    ) -> Result<Vec<OverdueRecord>, StoreError>;
    /// The links stored under a document.
    fn links(&mut self, document_id: &str) -> Result<Vec<LinkRecord>, StoreError>;
    /// The audit chain's oldest live entries, oldest first and without a
    /// gap, as long as each was recorded before `before_unix_ms` or is
    /// numbered at most `through_seq`; at most `limit`.
    fn audit_oldest(
        &mut self,
        before_unix_ms: i64,
        through_seq: u64,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError>;
    /// The sequence number of a live document's send entry (`None`: the
    /// document is not live).
    fn send_seq(
        &mut self,
        document_id: &str,
        accepted_at_unix_ms: i64,
    ) -> Result<Option<u64>, StoreError>;
    /// The archive file the retention of hub `hub` appends to now.
    fn open_archive(&mut self, hub: &str) -> Result<Option<ArchiveFile>, StoreError>;
}

/// Where a group starts: the counters the engine holds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GroupStart {
    pub next_queue_seq: u64,
    pub audit_head: AuditHead,
}

/// Entries a sender will be told about, one notice per delivery per command.
#[derive(Default)]
pub(crate) struct Notices {
    order: Vec<(String, String, String)>,
    entries: HashMap<(String, String), Vec<StatusEntry>>,
}

impl Notices {
    pub(crate) fn add(
        &mut self,
        sender: &str,
        document_id: &str,
        recipient: &str,
        entry: StatusEntry,
    ) {
        let key = (document_id.to_owned(), recipient.to_owned());
        let entries = self.entries.entry(key).or_insert_with(|| {
            self.order.push((
                sender.to_owned(),
                document_id.to_owned(),
                recipient.to_owned(),
            ));
            Vec::new()
        });
        entries.push(entry);
    }
}

/// One operation's changes, read through to the group's and the engine's.
/// Dropped without [`Rules::commit`] on failure, so a refused operation
/// writes nothing.
pub(crate) struct Op {
    pub changes: ChangeSet,
    /// The queue sequence number to return to if the operation fails.
    seq_before: u64,
}

/// The audit event of a status entry recorded on a delivery.
pub(crate) fn status_event(document_id: &str, recipient: &str, entry: &StatusEntry) -> AuditEvent {
    AuditEvent {
        kind: AuditKind::Status,
        at_unix_ms: entry.at_unix_ms,
        actor: entry.actor.clone(),
        document_id: document_id.to_owned(),
        recipient: recipient.to_owned(),
        status: entry.code,
        reason: entry.reason.clone(),
        signed_sha256: None,
        signature: Vec::new(),
        certificate_sha256: None,
    }
}

/// One delivery within its document's record, as read for a change.
pub(crate) struct DeliverySlot {
    document_id: String,
    deliveries: DeliveriesChange,
    index: usize,
}

impl DeliverySlot {
    pub(crate) fn delivery(&mut self) -> &mut DeliveryRecord {
        &mut self.deliveries.records[self.index]
    }

    /// Stages the record with the changed delivery.
    pub(crate) fn stage(self, op: &mut Op) {
        op.changes
            .deliveries
            .insert(self.document_id, self.deliveries);
    }
}

/// One group of operations over one engine's view.
pub(crate) struct Rules<'view> {
    view: &'view mut dyn View,
    next_queue_seq: u64,
    audit_head: AuditHead,
    /// The group's committed operations.
    group: ChangeSet,
    audit: Vec<AuditEntry>,
    /// The send entry of each document accepted in the group.
    send_seqs: HashMap<String, u64>,
    /// Reference counts of attachments as the engine held them, for those
    /// the group reads (retention): the group drops those left at zero.
    blob_refs_read: HashMap<[u8; 32], u64>,
    /// Agencies whose queues got something, to be woken once it is durable.
    pub woken: BTreeSet<String>,
}

impl<'view> Rules<'view> {
    pub(crate) fn new(view: &'view mut dyn View, start: GroupStart) -> Self {
        Rules {
            view,
            next_queue_seq: start.next_queue_seq,
            audit_head: start.audit_head,
            group: ChangeSet::default(),
            audit: Vec::new(),
            send_seqs: HashMap::new(),
            blob_refs_read: HashMap::new(),
            woken: BTreeSet::new(),
        }
    }

    /// The group's changes, for the engine to make durable. An attachment
    /// the group left named by no document goes, with its bytes; one named
    /// again later in the same group (a send that reuses it) stays.
    pub(crate) fn finish(mut self) -> (GroupChanges, BTreeSet<String>) {
        for (digest, refs) in &self.blob_refs_read {
            let change = self.group.blob_refs.get(digest).copied().unwrap_or(0);
            if (*refs as i64).saturating_add(change) <= 0 {
                self.group.blobs_dropped.push(*digest);
            }
        }
        self.group.blobs_dropped.sort_unstable();
        (
            GroupChanges {
                changes: self.group,
                audit: self.audit,
                next_queue_seq: self.next_queue_seq,
                send_seqs: self.send_seqs,
            },
            self.woken,
        )
    }

    pub(crate) fn begin(&self) -> Op {
        Op {
            changes: ChangeSet::default(),
            seq_before: self.next_queue_seq,
        }
    }

    pub(crate) fn commit(&mut self, mut op: Op) {
        for event in std::mem::take(&mut op.changes.audit_events) {
            let entry = AuditEntry::chain(event, self.audit_head.seq + 1, self.audit_head.sha256);
            debug_assert_eq!(entry.seq, self.audit_head.seq + 1);
            if entry.kind == AuditKind::Send {
                self.send_seqs.insert(entry.document_id.clone(), entry.seq);
            }
            self.audit_head = AuditHead {
                seq: entry.seq,
                sha256: entry.sha256,
            };
            self.audit.push(entry);
        }
        self.group.absorb(op.changes);
    }

    pub(crate) fn abandon(&mut self, op: Op) {
        self.next_queue_seq = op.seq_before;
    }

    pub(crate) fn take_seq(&mut self) -> u64 {
        let seq = self.next_queue_seq;
        self.next_queue_seq += 1;
        seq
    }

    /// A document as the operation sees it.
    pub(crate) fn document(
        &mut self,
        op: &Op,
        document_id: &str,
    ) -> Result<Option<DocumentRecord>, StoreError> {
        if let Some(document) = op
            .changes
            .document(document_id)
            .or_else(|| self.group.document(document_id))
        {
            return Ok(Some(document.clone()));
        }
        self.view.document(document_id)
    }

    /// Every delivery of a document as the operation sees them, with what
    /// the engine held.
    pub(crate) fn deliveries(
        &mut self,
        op: &Op,
        document_id: &str,
    ) -> Result<DeliveriesChange, StoreError> {
        // A document this group retired has no deliveries left to change.
        if self.retired(op, document_id) {
            return Ok(DeliveriesChange::default());
        }
        if let Some(change) = op
            .changes
            .deliveries
            .get(document_id)
            .or_else(|| self.group.deliveries.get(document_id))
        {
            return Ok(change.clone());
        }
        Ok(DeliveriesChange::read(
            self.view.deliveries(document_id)?.unwrap_or_default(),
        ))
    }

    /// One delivery of a document, if there is one to `recipient`.
    pub(crate) fn find_delivery(
        &mut self,
        op: &Op,
        document_id: &str,
        recipient: &str,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        Ok(self
            .deliveries(op, document_id)?
            .records
            .into_iter()
            .find(|delivery| delivery.recipient == recipient))
    }

    /// Stages a changed delivery in its document's record.
    pub(crate) fn put_delivery(
        &mut self,
        op: &mut Op,
        delivery: DeliveryRecord,
    ) -> Result<(), StoreError> {
        let mut deliveries = self.deliveries(op, &delivery.document_id)?;
        let document_id = delivery.document_id.clone();
        match deliveries
            .records
            .iter_mut()
            .find(|stored| stored.recipient == delivery.recipient)
        {
            Some(stored) => *stored = delivery,
            None => deliveries.records.push(delivery),
        }
        op.changes.deliveries.insert(document_id, deliveries);
        Ok(())
    }

    /// A delivery in its document's record, with that document's sender
    /// and date: read once, changed in place, staged once.
    pub(crate) fn read_delivery(
        &mut self,
        op: &Op,
        document_id: &str,
        recipient: &str,
    ) -> Result<(DeliverySlot, String, u32), StoreError> {
        let deliveries = self.deliveries(op, document_id)?;
        let Some(index) = deliveries
            .records
            .iter()
            .position(|delivery| delivery.recipient == recipient)
        else {
            if let Some(archived) = self.archived(op, document_id)? {
                return Err(StoreError::Archived {
                    document_id: document_id.to_owned(),
                    archive: archived.archive,
                });
            }
            return Err(StoreError::NotFound {
                what: format!("delivery of {document_id} to {recipient}"),
            });
        };
        let id: DocumentId = document_id.parse().map_err(|_| StoreError::Corrupt {
            key: format!("deliveries of {document_id}"),
            reason: "stored document id does not parse".into(),
        })?;
        Ok((
            DeliverySlot {
                document_id: document_id.to_owned(),
                deliveries,
                index,
            },
            id.sender().to_string(),
            id.date().ordinal_key(),
        ))
    }

    /// A queue item as the operation sees it.
    pub(crate) fn queue_item(
        &mut self,
        op: &Op,
        owner: &str,
        seq: u64,
    ) -> Result<Option<QueueItem>, StoreError> {
        let key = (owner.to_owned(), seq);
        if let Some(item) = op
            .changes
            .queue
            .get(&key)
            .or_else(|| self.group.queue.get(&key))
        {
            return Ok(item.clone());
        }
        self.view.queue_item(owner, seq)
    }

    pub(crate) fn dead_letter(
        &mut self,
        op: &Op,
        recipient: &str,
        document_id: &str,
    ) -> Result<Option<DeadLetterRecord>, StoreError> {
        let key = (recipient.to_owned(), document_id.to_owned());
        if let Some(letter) = op
            .changes
            .dead_letters
            .get(&key)
            .or_else(|| self.group.dead_letters.get(&key))
        {
            return Ok(Some(letter.clone()));
        }
        self.view.dead_letter(recipient, document_id)
    }

    /// Removes the queue item of a delivery not yet fetched, from whichever
    /// queue carries it (the recipient's own, or a relay's above it); returns
    /// that queue's owner. Sequence numbers are unique: an item not found
    /// was already taken.
    pub(crate) fn take_queued_delivery(
        &mut self,
        op: &mut Op,
        document_id: &str,
        recipient: &str,
        queue_seq: u64,
    ) -> Result<Option<String>, StoreError> {
        let mut holder = recipient.parse::<truc_domain::AgencyCode>().ok();
        while let Some(code) = holder {
            let owner = code.to_string();
            if let Some(QueueItem::Delivery {
                document_id: queued_document,
                recipient: queued_recipient,
            }) = self.queue_item(op, &owner, queue_seq)?
            {
                if queued_document == document_id && queued_recipient == recipient {
                    op.changes.queue.insert((owner.clone(), queue_seq), None);
                    // The sender's backlog loses it with the item.
                    op.changes.backlog(document_id, -1);
                    return Ok(Some(owner));
                }
            }
            holder = code.parent();
        }
        Ok(None)
    }

    /// Tells the node that carries a delivery that it was recalled (15): a
    /// node that holds the document, or had it on its way when its queue
    /// item was taken, marks it recalled in its inbox. The notice goes after
    /// the delivery's own item in that node's queue, so a node that is sent
    /// both hears of the recall after the document.
    pub(crate) fn tell_node_recalled(
        &mut self,
        op: &mut Op,
        node: &str,
        document_id: &str,
        recipient: &str,
        entry: StatusEntry,
    ) {
        let seq = self.take_seq();
        op.changes.queue.insert(
            (node.to_owned(), seq),
            Some(QueueItem::Notices {
                document_id: document_id.to_owned(),
                recipient: recipient.to_owned(),
                entries: vec![entry],
            }),
        );
        self.woken.insert(node.to_owned());
    }

    /// Queues one notice per delivery for its sender, with every entry the
    /// command recorded on it.
    pub(crate) fn queue_notices(&mut self, mut notices: Notices) {
        for (sender, document_id, recipient) in std::mem::take(&mut notices.order) {
            let entries = notices
                .entries
                .remove(&(document_id.clone(), recipient.clone()))
                .unwrap_or_default();
            let seq = self.take_seq();
            self.group.queue.insert(
                (sender.clone(), seq),
                Some(QueueItem::Notices {
                    document_id,
                    recipient,
                    entries,
                }),
            );
            self.woken.insert(sender);
        }
    }

    /// Deadlines set by the group outside any operation.
    pub(crate) fn watch(&mut self, watch: WatchRecord) {
        self.group.watches.push(watch);
    }

    pub(crate) fn room_for_documents(&mut self) -> Result<(), StoreError> {
        self.view.room_for_documents()
    }

    /// Whether an attachment is stored for a document of this group to
    /// name: in the engine (and not dropped by the group so far), or
    /// brought by an earlier send of the group.
    pub(crate) fn blob_stored(&mut self, op: &Op, sha256: &[u8; 32]) -> Result<bool, StoreError> {
        let brought = |changes: &ChangeSet| changes.blobs.iter().any(|b| b.sha256 == *sha256);
        if brought(&op.changes) || brought(&self.group) {
            return Ok(true);
        }
        Ok(self.blob_refs(op, sha256)?.is_some_and(|refs| refs > 0))
    }

    /// How many documents name an attachment as the operation sees it
    /// (`None`: not stored at all).
    pub(crate) fn blob_refs(
        &mut self,
        op: &Op,
        sha256: &[u8; 32],
    ) -> Result<Option<u64>, StoreError> {
        let stored = match self.blob_refs_read.get(sha256) {
            Some(refs) => Some(*refs),
            None => {
                let refs = self.view.blob_refs(sha256)?;
                if let Some(refs) = refs {
                    self.blob_refs_read.insert(*sha256, refs);
                }
                refs
            }
        };
        let change = self.group.blob_refs.get(sha256).copied().unwrap_or(0)
            + op.changes.blob_refs.get(sha256).copied().unwrap_or(0);
        Ok(stored.map(|refs| (refs as i64).saturating_add(change).max(0) as u64))
    }

    /// The duplicate index's entry of a document, as the operation sees it.
    pub(crate) fn archived(
        &mut self,
        op: &Op,
        document_id: &str,
    ) -> Result<Option<ArchivedDocument>, StoreError> {
        let staged = |changes: &ChangeSet| {
            changes
                .archived
                .iter()
                .find(|a| a.document_id == document_id)
                .cloned()
        };
        if let Some(found) = staged(&op.changes).or_else(|| staged(&self.group)) {
            return Ok(Some(found));
        }
        self.view.archived(document_id)
    }

    /// Whether the group retired a document already.
    pub(crate) fn retired(&self, op: &Op, document_id: &str) -> bool {
        [&op.changes, &self.group]
            .iter()
            .any(|changes| changes.retired.iter().any(|r| r.document_id == document_id))
    }

    pub(crate) fn watch_block(
        &mut self,
        block: &WatchBlockId,
    ) -> Result<Option<Vec<WatchRecord>>, StoreError> {
        if self.group.watch_blocks_done.contains(block) {
            return Ok(None);
        }
        self.view.watch_block(block)
    }
}
