//! The hub's storage behind a typed API. Documents, deliveries, queues,
//! status histories, counters and the audit chain change together: each
//! group of commands is one atomic, durable write, and nothing is answered
//! before it is durable. The rules of every operation live once, in
//! `rules/`; an engine (`engine.rs`) only reads, writes, groups and syncs.
//! The embedded engine (`embedded.rs`: a journal synced per group,
//! checkpointed into sled, attachment bytes in an append-only payload log)
//! needs nothing installed.

pub mod audit;
mod checkpoint;
mod durable;
mod embedded;
mod engine;
mod error;
mod journal;
mod keys;
mod layers;
mod lock;
mod marker;
pub mod metrics;
mod migrate;
mod payload;
mod pg;
pub mod records;
mod report;
mod rules;
mod sink;
mod writer;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Notify};

pub use audit::{AuditEntry, AuditHead, AuditKind};
pub use engine::{DocumentSummary, DueWatches, QueueDepth};
pub use error::StoreError;
pub use journal::JOURNAL_DIR;
pub use lock::LOCK_FILE;
pub use marker::MARKER_FILE;
pub use migrate::{migrate, MigrateProgress, MigrateReport};
pub use payload::PAYLOAD_DIR;
pub use pg::PostgresOptions;
pub use records::{
    ArchiveFile, ArchivedDocument, AttachmentRef, BlobRecord, DeadLetterAction, DeadLetterRecord,
    DeadLetterState, DeadlineKind, DeliveryRecord, DocumentRecord, DocumentSignatureState,
    LinkRecord, OverdueRecord, QueueItem, RefusedRecipient, RetainedFigures, StatusEntry,
    WatchRecord, FUNNEL_CODES,
};
pub use rules::{
    AcceptDeadlines, AcceptOutcome, AcceptPlan, AckOutcome, ArchiveBatch, ArchivedBundle,
    BusinessEffect, BusinessOutcome, BusinessRequest, LapseOutcome, MoveRequest, RetireOutcome,
    EXPIRED_CODE, HUB_ACTOR, OVERDUE_CODE,
};
pub use sink::{crash_point, ArchiveSink, BlobSource, Chunks, RetireRequest, CRASH_AT_VARIABLE};

pub(crate) use embedded::Inner;
use engine::Reader;
use writer::{Command, Writer};

/// Attachments up to this size are held in memory by their send and
/// carried in the group's write with the document (one sync for both);
/// larger ones are streamed into storage as they arrive.
pub const CARRIED_ATTACHMENT_BYTES_MAX: u64 = 64 * 1024;

/// Where attachment bytes streamed ahead of their document are kept, in
/// the engine's own terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extent {
    /// A stretch of the embedded engine's payload log.
    Log(payload::Extent),
    /// A row of a database engine's chunk table.
    Row(i64),
}

/// One attachment of a send, to be named when it is accepted: its bytes
/// already streamed into storage (large ones), or in memory for the writer
/// to store with the document (small ones).
#[derive(Clone, Debug)]
pub struct PendingBlob {
    pub sha256: [u8; 32],
    pub size_bytes: u64,
    /// Where its bytes are, in order (empty when `inline`).
    pub extents: Vec<Extent>,
    pub inline: Option<Vec<u8>>,
}

/// The hub that pushes a node's queue, until when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeLease {
    pub hub: String,
    pub expires_at_unix_ms: i64,
}

/// A database engine's primary and its standbys, as the primary sees them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DatabaseState {
    /// The server this hub writes to (`address:port`).
    pub primary: String,
    pub writable: bool,
    pub standbys: Vec<StandbyState>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StandbyState {
    pub name: String,
    pub address: String,
    /// `streaming`, `catchup`, …
    pub state: String,
    /// `sync`, `potential`, `async`, `quorum`.
    pub sync_state: String,
    /// WAL the standby has yet to replay, in bytes.
    pub replay_lag_bytes: u64,
}

/// How often a report is read again while retention keeps archiving
/// under it; the last reading is returned.
const CONSISTENT_READ_ATTEMPTS_MAX: usize = 16;

/// Sent and received counts keyed by (agency, `yyyymmdd`).
pub type CounterMap = BTreeMap<(String, u32), (u64, u64)>;
/// Storage settings, all with defaults.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// sled's page cache, in bytes. Recent changes are read from the
    /// journal's layers in memory, so the tree needs little.
    pub cache_bytes: u64,
    /// Commands waiting for the writer before callers wait for room.
    pub write_queue_max: usize,
    /// New documents are refused while the data directory's file system has
    /// less free space than this, so that sled itself never meets a full disk
    /// (after one ENOSPC it writes nothing more in that process) and the space
    /// left serves acknowledgements and status moves. 0 turns the check off.
    pub free_bytes_min: u64,
    /// Changes held in memory (and in the journal) before a checkpoint
    /// writes them into the tree; the writer waits at four times this.
    pub checkpoint_bytes: usize,
    /// A checkpoint runs at least this often while there are changes:
    /// often enough that each is short (the work of one holds a core while
    /// it runs), seldom enough that a delivery's arrival and moves usually
    /// reach the tree together.
    pub checkpoint_interval: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            cache_bytes: 64 * 1024 * 1024,
            write_queue_max: 4096,
            free_bytes_min: 0,
            checkpoint_bytes: 64 * 1024 * 1024,
            checkpoint_interval: Duration::from_secs(1),
        }
    }
}

/// One agency's line in a report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReportRow {
    pub sent: u64,
    /// Documents that arrived (were acknowledged by the agency's node).
    pub received: u64,
    /// Bit `code` is set for each distinct status code the agency reported.
    pub statuses_reported: u32,
    pub sent_to_focus: u64,
    pub sent_to_focus_signed: u64,
    /// Deliveries to the agency that passed a feedback deadline unanswered.
    pub overdue: u64,
}

impl ReportRow {
    /// The distinct status codes reported, ascending.
    pub fn status_codes(&self) -> Vec<u32> {
        (0..32)
            .filter(|code| self.statuses_reported & (1 << code) != 0)
            .collect()
    }
}

/// Flush counts, for benchmarks and metrics.
#[derive(Default, Debug)]
pub struct FlushStats {
    pub flushes: AtomicU64,
    pub commands: AtomicU64,
    pub flush_micros: AtomicU64,
}

impl FlushStats {
    fn record_flush(&self, commands: usize, took: Duration) {
        self.flushes.fetch_add(1, Ordering::Relaxed);
        self.commands.fetch_add(commands as u64, Ordering::Relaxed);
        self.flush_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }
}

/// One `Notify` per agency whose delivery stream waits in this process.
#[derive(Default)]
pub(crate) struct Notifiers {
    by_agency: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Notifiers {
    pub(crate) fn get(&self, agency: &str) -> Arc<Notify> {
        let mut by_agency = self.by_agency.lock().unwrap_or_else(|p| p.into_inner());
        by_agency.entry(agency.to_owned()).or_default().clone()
    }

    /// Wakes every delivery stream of this process (after wake-ups may
    /// have been missed).
    pub(crate) fn wake_all(&self) {
        let by_agency = self.by_agency.lock().unwrap_or_else(|p| p.into_inner());
        for notify in by_agency.values() {
            notify.notify_one();
        }
    }
}

/// What the store's handles and its writer share, whatever the engine.
#[derive(Default)]
pub(crate) struct Shared {
    pub(crate) notifiers: Notifiers,
    pub(crate) stats: FlushStats,
}

/// The hub's storage. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    reader: Arc<dyn Reader>,
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
}

impl Store {
    /// Opens (or creates) the embedded store in `path`. Refuses a directory
    /// written by another schema version, one sled cannot read, or one that
    /// lost acknowledged writes.
    pub fn open(path: &Path, options: &StoreOptions) -> Result<Store, StoreError> {
        let (reader, writer) = embedded::open(path, options)?;
        Store::start(
            reader,
            Box::new(writer),
            Arc::new(Shared::default()),
            options,
        )
    }

    /// Connects to a PostgreSQL database (creating or upgrading its schema)
    /// that several hubs may share.
    pub fn open_postgres(
        postgres: &PostgresOptions,
        options: &StoreOptions,
    ) -> Result<Store, StoreError> {
        let shared = Arc::new(Shared::default());
        let (reader, writer) = pg::open(postgres, shared.clone())?;
        Store::start(reader, Box::new(writer), shared, options)
    }

    /// Starts the writer thread over an engine.
    fn start(
        reader: Arc<dyn Reader>,
        engine: Box<dyn engine::GroupWriter>,
        shared: Arc<Shared>,
        options: &StoreOptions,
    ) -> Result<Store, StoreError> {
        let (commands, receiver) = mpsc::channel(options.write_queue_max);
        let store_writer = Writer::new(engine, shared.clone(), reader.clone());
        std::thread::Builder::new()
            .name("truc-store-writer".into())
            .spawn(move || store_writer.run(receiver))
            .map_err(|error| StoreError::io("starting", Path::new("the writer thread"), error))?;
        Ok(Store {
            reader,
            shared,
            commands,
        })
    }

    async fn submit<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Command,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Stores a document with its deliveries, queue items and counters in one
    /// atomic write, durable when this returns.
    pub async fn accept(
        &self,
        document: DocumentRecord,
        blobs: Vec<PendingBlob>,
    ) -> Result<AcceptOutcome, StoreError> {
        let (outcome, _) = self
            .accept_watched(
                document,
                blobs,
                AcceptPlan::default(),
                AcceptDeadlines::default(),
            )
            .await?;
        Ok(outcome)
    }

    /// [`Store::accept`], with the deliveries of relayed recipients queued for
    /// their relays and a recall, update or replace applied to the earlier
    /// documents, all in the same atomic write.
    pub async fn accept_planned(
        &self,
        document: DocumentRecord,
        blobs: Vec<PendingBlob>,
        plan: AcceptPlan,
    ) -> Result<(AcceptOutcome, Vec<BusinessOutcome>), StoreError> {
        self.accept_watched(document, blobs, plan, AcceptDeadlines::default())
            .await
    }

    /// [`Store::accept_planned`], with each delivery's deadlines set in the
    /// same atomic write.
    pub async fn accept_watched(
        &self,
        document: DocumentRecord,
        blobs: Vec<PendingBlob>,
        plan: AcceptPlan,
        deadlines: AcceptDeadlines,
    ) -> Result<(AcceptOutcome, Vec<BusinessOutcome>), StoreError> {
        self.submit(|reply| Command::Accept {
            document,
            blobs,
            plan,
            deadlines,
            reply,
        })
        .await
    }

    /// Writes everything acknowledged so far into the engine's settled form
    /// (the embedded engine: into the tree, emptying the journal), so that
    /// the next open has nothing to read back. A graceful stop does this; a
    /// crash leaves it to the next open.
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        self.submit(|reply| Command::Checkpoint { reply }).await
    }

    /// The recalls, updates and replaces that name `document_id` or that it names.
    pub fn links(&self, document_id: &str) -> Result<Vec<LinkRecord>, StoreError> {
        self.reader.links(document_id)
    }

    /// Acknowledges queue item `queue_seq` of `agency`. For a delivery this
    /// records "arrived"; acknowledging twice is harmless.
    pub async fn ack(
        &self,
        agency: &str,
        queue_seq: u64,
        at_unix_ms: i64,
    ) -> Result<AckOutcome, StoreError> {
        let mut outcomes = self.ack_all(agency, vec![queue_seq], at_unix_ms).await?;
        Ok(outcomes.pop().unwrap_or(AckOutcome::AlreadyDone))
    }

    /// Acknowledges several queue items of `agency` in one durable write,
    /// one outcome per item. If one fails, those before it still stand.
    pub async fn ack_all(
        &self,
        agency: &str,
        queue_seqs: Vec<u64>,
        at_unix_ms: i64,
    ) -> Result<Vec<AckOutcome>, StoreError> {
        self.ack_watched(agency, queue_seqs, at_unix_ms, None).await
    }

    /// [`Store::ack_all`], with the "received" deadline of each arrival
    /// set in the same atomic write.
    pub async fn ack_watched(
        &self,
        agency: &str,
        queue_seqs: Vec<u64>,
        at_unix_ms: i64,
        received_deadline_unix_ms: Option<i64>,
    ) -> Result<Vec<AckOutcome>, StoreError> {
        self.submit(|reply| Command::Ack {
            agency: agency.to_owned(),
            queue_seqs,
            at_unix_ms,
            received_deadline_unix_ms,
            reply,
        })
        .await
    }

    /// Records a recipient's status move, checked against the status machine.
    /// A recipient's move on a delivery still queued records its arrival first.
    pub async fn move_status(
        &self,
        document_id: &str,
        recipient: &str,
        entry: StatusEntry,
    ) -> Result<StatusEntry, StoreError> {
        let request = MoveRequest {
            document_id: document_id.to_owned(),
            recipient: recipient.to_owned(),
            entry,
        };
        self.move_all(vec![request])
            .await?
            .pop()
            .unwrap_or(Err(StoreError::WriterGone))
    }

    /// Records several moves in order, in one durable write; each is checked
    /// on its own and a refused one changes nothing.
    pub async fn move_all(
        &self,
        moves: Vec<MoveRequest>,
    ) -> Result<Vec<Result<StatusEntry, StoreError>>, StoreError> {
        self.submit(|reply| Command::Move { moves, reply }).await
    }

    pub fn document(&self, document_id: &str) -> Result<Option<DocumentRecord>, StoreError> {
        self.reader.document(document_id)
    }

    /// Every delivery of a document, by recipient code.
    pub fn deliveries(&self, document_id: &str) -> Result<Vec<DeliveryRecord>, StoreError> {
        let mut deliveries = self.reader.deliveries(document_id)?;
        deliveries.sort_by(|a, b| a.recipient.cmp(&b.recipient));
        Ok(deliveries)
    }

    pub fn delivery(
        &self,
        document_id: &str,
        recipient: &str,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        Ok(self
            .reader
            .deliveries(document_id)?
            .into_iter()
            .find(|delivery| delivery.recipient == recipient))
    }

    /// Up to `limit` queue items of `agency` with sequence numbers above `after`.
    pub fn queue_after(
        &self,
        agency: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, QueueItem)>, StoreError> {
        self.reader.queue_after(agency, after, limit)
    }

    /// The first delivery (not notice) waiting in `agency`'s queue: the oldest unacknowledged.
    pub fn oldest_queued_delivery(&self, agency: &str) -> Result<Option<QueueItem>, StoreError> {
        self.reader.oldest_queued_delivery(agency)
    }

    /// Every stored document, in id order.
    pub fn documents(&self) -> impl Iterator<Item = Result<DocumentRecord, StoreError>> + '_ {
        self.reader.documents()
    }

    /// Every stored document without its signed bytes, in id order.
    pub fn document_summaries(
        &self,
    ) -> impl Iterator<Item = Result<DocumentSummary, StoreError>> + '_ {
        self.reader.document_summaries()
    }

    /// How many deliveries and notices wait in `agency`'s queue.
    pub fn queue_depth(&self, agency: &str) -> Result<QueueDepth, StoreError> {
        self.reader.queue_depth(agency)
    }

    /// Woken after a write that queued something for `agency`.
    pub fn notifier(&self, agency: &str) -> Arc<Notify> {
        self.shared.notifiers.get(agency)
    }

    /// Sent and received per agency over an inclusive range of `yyyymmdd` keys.
    pub fn counts(
        &self,
        from_date_key: u32,
        to_date_key: u32,
    ) -> Result<BTreeMap<String, (u64, u64)>, StoreError> {
        let mut totals: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for ((agency, date), (sent, received)) in self.reader.counter_entries()? {
            if (from_date_key..=to_date_key).contains(&date) {
                let total = totals.entry(agency).or_default();
                total.0 += sent;
                total.1 += received;
            }
        }
        Ok(totals)
    }

    /// Every counter, keyed by (agency, `yyyymmdd`).
    pub fn counter_entries(&self) -> Result<CounterMap, StoreError> {
        self.reader.counter_entries()
    }

    /// Recomputes the counters from the stored documents and deliveries, to
    /// check the live ones: a document counts once for its sender, and once
    /// for each recipient whose delivery has arrived.
    pub fn rebuild_counters(&self) -> Result<CounterMap, StoreError> {
        self.consistently(|reader| reader.rebuild_counters())
    }

    /// Reads figures that span the live records and those kept for archived
    /// documents again if retention moved documents from one to the other
    /// meanwhile (the archives' document count changed), so that none is
    /// counted twice or missed.
    fn consistently<T>(
        &self,
        read: impl Fn(&dyn Reader) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let archived = || -> Result<u64, StoreError> {
            Ok(self
                .reader
                .archive_files()?
                .iter()
                .map(|file| file.documents)
                .sum())
        };
        let mut attempts = 0;
        loop {
            let before = archived()?;
            let figures = read(&*self.reader)?;
            attempts += 1;
            if archived()? == before || attempts >= CONSISTENT_READ_ATTEMPTS_MAX {
                return Ok(figures);
            }
        }
    }

    /// Per-agency figures for documents dated in an inclusive range of
    /// `yyyymmdd` keys, read from the stored records themselves: sent and
    /// received, the distinct statuses each agency reported as a recipient,
    /// and how many documents each sent to `focus` (signed ones apart).
    pub fn report(
        &self,
        from_date_key: u32,
        to_date_key: u32,
        focus: Option<&str>,
    ) -> Result<BTreeMap<String, ReportRow>, StoreError> {
        self.consistently(|reader| reader.report(from_date_key, to_date_key, focus))
    }

    /// Watched deadlines at or before `unix_ms`, earliest first, in whole
    /// blocks: at least `limit` of them if there are that many.
    pub fn due_watches(&self, unix_ms: i64, limit: usize) -> Result<DueWatches, StoreError> {
        self.reader.due_watches(unix_ms, limit)
    }

    /// Settles due deadlines: met ones are dropped, unmet ones recorded as
    /// overdue (expiries as dead letters) and their senders told, in one write.
    pub async fn lapse(
        &self,
        due: DueWatches,
        at_unix_ms: i64,
        expiry_reason: String,
    ) -> Result<LapseOutcome, StoreError> {
        self.submit(|reply| Command::Lapse {
            blocks: due.blocks,
            at_unix_ms,
            expiry_reason,
            reply,
        })
        .await
    }

    /// Overdue records of one recipient, or of all.
    pub fn overdue_records(
        &self,
        recipient: Option<&str>,
    ) -> impl Iterator<Item = Result<OverdueRecord, StoreError>> + '_ {
        self.reader.overdue_records(recipient)
    }

    /// Dead letters of one recipient, or of all.
    pub fn dead_letters(
        &self,
        recipient: Option<&str>,
    ) -> impl Iterator<Item = Result<DeadLetterRecord, StoreError>> + '_ {
        self.reader.dead_letters(recipient)
    }

    pub fn dead_letter(
        &self,
        document_id: &str,
        recipient: &str,
    ) -> Result<Option<DeadLetterRecord>, StoreError> {
        self.reader.dead_letter(document_id, recipient)
    }

    /// Queues an open dead letter again with new deadlines, recording the operator.
    pub async fn resend_dead_letter(
        &self,
        document_id: &str,
        recipient: &str,
        operator: &str,
        at_unix_ms: i64,
        deadlines: AcceptDeadlines,
    ) -> Result<DeadLetterRecord, StoreError> {
        self.submit(|reply| Command::Resend {
            document_id: document_id.to_owned(),
            recipient: recipient.to_owned(),
            operator: operator.to_owned(),
            at_unix_ms,
            deadlines,
            reply,
        })
        .await
    }

    /// Closes an open dead letter for good, recording the operator and why.
    pub async fn cancel_dead_letter(
        &self,
        document_id: &str,
        recipient: &str,
        operator: &str,
        at_unix_ms: i64,
        reason: &str,
    ) -> Result<DeadLetterRecord, StoreError> {
        self.submit(|reply| Command::Cancel {
            document_id: document_id.to_owned(),
            recipient: recipient.to_owned(),
            operator: operator.to_owned(),
            at_unix_ms,
            reason: reason.to_owned(),
            reply,
        })
        .await
    }

    /// How many of `sender`'s deliveries wait unacknowledged in some queue,
    /// counting at most `max` (enough to enforce a limit of `max`).
    pub fn pending_sends(&self, sender: &str, max: usize) -> Result<usize, StoreError> {
        self.reader.pending_sends(sender, max)
    }

    /// Every stored document id (for operators and checks).
    pub fn document_ids(&self) -> impl Iterator<Item = Result<String, StoreError>> + '_ {
        self.reader.document_ids()
    }

    pub fn blob(&self, sha256: &[u8; 32]) -> Result<Option<BlobRecord>, StoreError> {
        self.reader.blob(sha256)
    }

    /// `StorageFull` when new documents are refused for want of disk space
    /// (see [`StoreOptions::free_bytes_min`]); intake asks before taking any
    /// attachment bytes, and the writer again before storing the document.
    pub fn check_room(&self) -> Result<(), StoreError> {
        self.reader.check_room()
    }

    /// Stores attachment bytes ahead of their document. They are named by a
    /// document only when it is accepted (and durable before that is
    /// acknowledged); bytes of a send that fails are given back.
    pub fn put_chunk(&self, data: &[u8]) -> Result<Extent, StoreError> {
        self.reader.put_chunk(data)
    }

    /// Gives back the space of attachment bytes a send stored and nothing
    /// names: the send was refused, failed, or found the document stored.
    pub fn discard_chunks(&self, extents: &[Extent]) {
        self.reader.discard_chunks(extents);
    }

    /// The stored bytes of a blob, one piece per extent, in order.
    pub fn blob_chunks(
        &self,
        sha256: &[u8; 32],
    ) -> Result<impl Iterator<Item = Result<Vec<u8>, StoreError>> + '_, StoreError> {
        self.reader.blob_chunks(sha256)
    }

    /// The audit chain's last written entry (sequence 0 and the genesis
    /// hash before the first).
    pub fn audit_head(&self) -> Result<AuditHead, StoreError> {
        self.reader.audit_head()
    }

    /// Audit entries from sequence number `from_seq` on, in order.
    pub fn audit_entries(
        &self,
        from_seq: u64,
    ) -> impl Iterator<Item = Result<AuditEntry, StoreError>> + '_ {
        self.reader.audit_entries(from_seq)
    }

    pub fn flush_stats(&self) -> &FlushStats {
        &self.shared.stats
    }

    /// Bytes the live store occupies on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.reader.size_on_disk()
    }

    /// Bytes of the duplicate index's run files (embedded engine only).
    pub fn id_index_bytes(&self) -> Option<u64> {
        self.reader.id_index_bytes()
    }

    /// Takes (or keeps) the right to push `agency`'s queue for `ttl`;
    /// `Some(holder)` when another hub holds it.
    pub fn lease_node(&self, agency: &str, ttl: Duration) -> Result<Option<String>, StoreError> {
        self.reader.lease_node(agency, ttl)
    }

    /// Extends the leases this hub holds; returns those it still holds.
    pub fn renew_leases(
        &self,
        agencies: &[String],
        ttl: Duration,
    ) -> Result<Vec<String>, StoreError> {
        self.reader.renew_leases(agencies, ttl)
    }

    pub fn release_node(&self, agency: &str) -> Result<(), StoreError> {
        self.reader.release_node(agency)
    }

    /// Which hub pushes each node's queue (empty for one process).
    pub fn node_leases(&self) -> Result<BTreeMap<String, NodeLease>, StoreError> {
        self.reader.node_leases()
    }

    /// This hub's name where several hubs share the store (`None` for the
    /// embedded engine).
    pub fn hub_name(&self) -> Option<String> {
        self.reader.hub_name()
    }

    /// Whether writes can be taken now.
    pub fn writable(&self) -> bool {
        self.reader.writable()
    }

    /// The database's primary and standbys (`None` for the embedded engine).
    pub fn database_state(&self) -> Result<Option<DatabaseState>, StoreError> {
        self.reader.database_state()
    }

    /// One retention step: the documents of `request` that may leave go
    /// into the archive `sink` writes (synced), then leave the live store,
    /// in one durable write with what stays of them.
    pub async fn retire(
        &self,
        request: RetireRequest,
        sink: Arc<dyn ArchiveSink>,
    ) -> Result<RetireOutcome, StoreError> {
        self.submit(|reply| Command::Retire {
            request,
            sink,
            reply,
        })
        .await
    }

    /// Live documents accepted before `cutoff_unix_ms`, oldest first, after
    /// the (acceptance time, id) `after`: retention's candidates.
    pub fn retention_candidates(
        &self,
        cutoff_unix_ms: i64,
        after: Option<(i64, String)>,
        limit: usize,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        self.reader
            .retention_candidates(cutoff_unix_ms, after, limit)
    }

    /// The duplicate index's entry of a document that left for an archive.
    pub fn archived(&self, document_id: &str) -> Result<Option<ArchivedDocument>, StoreError> {
        self.reader.archived(document_id)
    }

    /// Every entry of the duplicate index, in id order.
    pub fn archived_documents(
        &self,
    ) -> impl Iterator<Item = Result<ArchivedDocument, StoreError>> + '_ {
        self.reader.archived_documents()
    }

    /// The report figures kept for archived documents, by (agency, `yyyymmdd`).
    pub fn retained_figures(&self) -> Result<BTreeMap<(String, u32), RetainedFigures>, StoreError> {
        self.reader.retained_figures()
    }

    /// The archive files retention wrote, as committed.
    pub fn archive_files(&self) -> Result<Vec<ArchiveFile>, StoreError> {
        self.reader.archive_files()
    }
}
