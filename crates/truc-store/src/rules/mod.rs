//! The store's rules, once for every engine: each operation (accept,
//! acknowledge, move, recall / update / replace, lapse, resend, cancel)
//! reads what it needs through [`View`] and stages a typed [`ChangeSet`].
//! An operation that fails stages nothing; one that succeeds joins its
//! group, whose audit entries are chained here. Engines only read, write,
//! group and make durable; they never decide.

mod accept;
mod ack;
mod business;
pub(crate) mod changes;
pub(crate) mod moves;
mod watch;

use std::collections::{BTreeSet, HashMap};

use truc_domain::DocumentId;

pub(crate) use changes::{ChangeSet, DeliveriesChange, GroupChanges, WatchBlockId};

use crate::audit::{AuditEntry, AuditEvent, AuditHead, AuditKind};
use crate::error::StoreError;
use crate::records::{
    DeadLetterRecord, DeliveryRecord, DocumentRecord, QueueItem, StatusEntry, WatchRecord,
};

pub use accept::{AcceptOutcome, AcceptPlan, PlannedAcceptResult};
pub use ack::AckOutcome;
pub use business::{BusinessEffect, BusinessOutcome, BusinessRequest};
pub use moves::MoveRequest;
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
            woken: BTreeSet::new(),
        }
    }

    /// The group's changes, for the engine to make durable.
    pub(crate) fn finish(self) -> (GroupChanges, BTreeSet<String>) {
        (
            GroupChanges {
                changes: self.group,
                audit: self.audit,
                next_queue_seq: self.next_queue_seq,
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
        let index = deliveries
            .records
            .iter()
            .position(|delivery| delivery.recipient == recipient)
            .ok_or_else(|| StoreError::NotFound {
                what: format!("delivery of {document_id} to {recipient}"),
            })?;
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
