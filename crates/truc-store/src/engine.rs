//! The storage contract between the store and an engine: what an engine
//! reads for callers (`Reader`) and how it makes a group of the rules'
//! changes durable (`GroupWriter`). The rules themselves (`rules/`) exist
//! once; an engine only reads, writes, groups and syncs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::audit::{AuditEntry, AuditHead};
use crate::error::StoreError;
use crate::records::{
    ArchiveFile, ArchivedDocument, BlobRecord, DeadLetterRecord, DeliveryRecord, DocumentRecord,
    LinkRecord, OverdueRecord, QueueItem, RetainedFigures, WatchRecord,
};
use crate::rules::{GroupChanges, GroupStart, View, WatchBlockId};
use crate::{CounterMap, DatabaseState, Extent, NodeLease, ReportRow};

/// A boxed iterator of results, as the readers hand out long lists.
pub(crate) type Rows<'a, T> = Box<dyn Iterator<Item = Result<T, StoreError>> + 'a>;

/// Deadlines found due, with the blocks that hold them.
#[derive(Debug, Default)]
pub struct DueWatches {
    pub(crate) blocks: Vec<WatchBlockId>,
    pub watches: Vec<WatchRecord>,
}

impl DueWatches {
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }
}

/// What waits in a node's queue: documents (deliveries not yet
/// acknowledged) and status notices, counted apart because they mean
/// different things to an operator (a notice waits for a sender's node).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueDepth {
    pub deliveries: usize,
    pub notices: usize,
}

impl QueueDepth {
    pub fn total(&self) -> usize {
        self.deliveries + self.notices
    }
}

/// A stored document without its signed bytes: what reports count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentSummary {
    pub document_id: String,
    pub sender: String,
    pub date_key: u32,
    pub recipients: Vec<String>,
    pub document_signature_state: crate::DocumentSignatureState,
}

/// What an engine reads for callers: every method sees every group
/// acknowledged before it was called.
pub(crate) trait Reader: Send + Sync {
    fn document(&self, document_id: &str) -> Result<Option<DocumentRecord>, StoreError>;
    /// Every delivery of a document, in no particular order.
    fn deliveries(&self, document_id: &str) -> Result<Vec<DeliveryRecord>, StoreError>;
    fn links(&self, document_id: &str) -> Result<Vec<LinkRecord>, StoreError>;
    fn queue_after(
        &self,
        agency: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, QueueItem)>, StoreError>;
    fn oldest_queued_delivery(&self, agency: &str) -> Result<Option<QueueItem>, StoreError>;
    /// Every queue item of every owner, by owner then sequence number.
    fn queue_items(&self) -> Rows<'_, (String, u64, QueueItem)>;
    /// The queue sequence number the next item will take.
    fn next_queue_seq(&self) -> Result<u64, StoreError>;
    fn queue_depth(&self, agency: &str) -> Result<QueueDepth, StoreError>;
    /// Every stored document, in id order.
    fn documents(&self) -> Rows<'_, DocumentRecord>;
    fn document_ids(&self) -> Rows<'_, String>;
    /// Every stored document without its signed bytes, in id order.
    fn document_summaries(&self) -> Rows<'_, DocumentSummary>;
    fn counter_entries(&self) -> Result<CounterMap, StoreError>;
    fn due_watches(&self, unix_ms: i64, limit: usize) -> Result<DueWatches, StoreError>;
    fn overdue_records(&self, recipient: Option<&str>) -> Rows<'_, OverdueRecord>;
    fn dead_letters(&self, recipient: Option<&str>) -> Rows<'_, DeadLetterRecord>;
    fn dead_letter(
        &self,
        document_id: &str,
        recipient: &str,
    ) -> Result<Option<DeadLetterRecord>, StoreError>;
    fn pending_sends(&self, sender: &str, max: usize) -> Result<usize, StoreError>;
    fn blob(&self, sha256: &[u8; 32]) -> Result<Option<BlobRecord>, StoreError>;
    fn blob_chunks(&self, sha256: &[u8; 32]) -> Result<Rows<'_, Vec<u8>>, StoreError>;
    fn check_room(&self) -> Result<(), StoreError>;
    fn put_chunk(&self, data: &[u8]) -> Result<Extent, StoreError>;
    fn discard_chunks(&self, extents: &[Extent]);
    fn audit_head(&self) -> Result<AuditHead, StoreError>;
    fn audit_entries(&self, from_seq: u64) -> Rows<'_, AuditEntry>;
    fn size_on_disk(&self) -> Result<u64, StoreError>;
    /// Bytes the duplicate index keeps outside the live store, where the
    /// engine keeps it so (PostgreSQL's is a table of the database).
    fn id_index_bytes(&self) -> Option<u64> {
        None
    }

    /// The duplicate index's entry of a document that left for an archive.
    fn archived(&self, document_id: &str) -> Result<Option<ArchivedDocument>, StoreError>;
    /// Every entry of the duplicate index, in id order.
    fn archived_documents(&self) -> Rows<'_, ArchivedDocument>;
    /// The report figures kept for archived documents, by (agency, `yyyymmdd`).
    fn retained_figures(&self) -> Result<BTreeMap<(String, u32), RetainedFigures>, StoreError>;
    /// Up to `limit` live documents accepted before `cutoff_unix_ms`, oldest
    /// first, after the (acceptance time, id) `after`.
    fn retention_candidates(
        &self,
        cutoff_unix_ms: i64,
        after: Option<(i64, String)>,
        limit: usize,
    ) -> Result<Vec<(i64, String)>, StoreError>;
    /// The archive files this store's retention wrote, as committed.
    fn archive_files(&self) -> Result<Vec<ArchiveFile>, StoreError>;

    /// Per-agency figures for documents dated in an inclusive range of
    /// `yyyymmdd` keys, read from the stored records themselves. Engines
    /// that can ask their data directly do so.
    fn report(
        &self,
        from_date_key: u32,
        to_date_key: u32,
        focus: Option<&str>,
    ) -> Result<BTreeMap<String, ReportRow>, StoreError> {
        crate::report::from_records(self, from_date_key, to_date_key, focus)
    }

    /// The counters recomputed from the documents and deliveries.
    fn rebuild_counters(&self) -> Result<CounterMap, StoreError> {
        crate::report::counters_from_records(self)
    }

    /// Takes (or keeps) the right to push `agency`'s queue for `ttl`;
    /// `Some(holder)` when another hub holds it. One process needs none.
    fn lease_node(&self, _agency: &str, _ttl: Duration) -> Result<Option<String>, StoreError> {
        Ok(None)
    }

    /// Extends the leases this hub holds; returns those it still holds.
    fn renew_leases(&self, agencies: &[String], _ttl: Duration) -> Result<Vec<String>, StoreError> {
        Ok(agencies.to_vec())
    }

    fn release_node(&self, _agency: &str) -> Result<(), StoreError> {
        Ok(())
    }

    /// Which hub pushes each node's queue, where several hubs share a database.
    fn node_leases(&self) -> Result<BTreeMap<String, NodeLease>, StoreError> {
        Ok(BTreeMap::new())
    }

    /// Whether writes can be taken now (a database engine: a writable
    /// primary is reachable).
    fn writable(&self) -> bool {
        true
    }

    /// This hub's name where several hubs share the engine.
    fn hub_name(&self) -> Option<String> {
        None
    }

    /// The database's primary and standbys, for an engine that has them.
    fn database_state(&self) -> Result<Option<DatabaseState>, StoreError> {
        Ok(None)
    }
}

/// How an engine makes the rules' changes durable, one group at a time,
/// on the store's one writer thread.
pub(crate) trait GroupWriter: Send {
    /// Opens a group: what the rules read, and the counters they start from.
    /// `sent` names the documents the group's sends bring, so an engine
    /// whose reads are round trips can learn at once which are new.
    fn begin(&mut self, sent: &[&str]) -> Result<GroupStart, StoreError>;
    /// The engine's reads inside the open group.
    fn view(&mut self) -> &mut dyn View;
    /// Makes the group durable; callers are answered only after this returns
    /// `Ok`, and the agencies in `woken` are told then.
    fn commit(&mut self, group: GroupChanges, woken: &BTreeSet<String>) -> Result<(), StoreError>;
    /// Ends a group that will not be committed (or whose commit failed).
    fn abort(&mut self);
    /// Writes everything committed so far into the engine's settled form
    /// (a graceful stop does this; a crash leaves it to the next open).
    fn checkpoint_all(&mut self) -> Result<(), StoreError>;
    /// The writer is ending: every store handle is gone.
    fn close(&mut self);
}
