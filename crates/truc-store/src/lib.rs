//! sled behind a typed API. Documents, deliveries, queues, status histories
//! and counters live in one tree so that each event is one atomic change;
//! all changes go through one writer thread that shares one journal write
//! and sync among concurrent callers (group commit). Nothing is answered
//! before it is durable. The tree is brought up to date from memory in the
//! background (checkpoints); attachment bytes live in an append-only
//! payload log beside it.

pub mod audit;
mod checkpoint;
mod durable;
mod error;
mod journal;
mod keys;
mod layers;
mod marker;
pub mod metrics;
mod payload;
pub mod records;
mod writer;

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Notify};

pub use audit::{AuditEntry, AuditHead, AuditKind};
pub use error::StoreError;
pub use journal::JOURNAL_DIR;
pub use marker::MARKER_FILE;
pub use payload::{Extent, PAYLOAD_DIR};
pub use records::{
    AttachmentRef, BlobRecord, DeadLetterAction, DeadLetterRecord, DeadLetterState, DeadlineKind,
    DeliveryRecord, DocumentRecord, DocumentSignatureState, LinkRecord, OverdueRecord, QueueItem,
    RefusedRecipient, StatusEntry, WatchRecord,
};
pub use writer::{
    AcceptDeadlines, AcceptOutcome, AcceptPlan, AckOutcome, BusinessEffect, BusinessOutcome,
    BusinessRequest, LapseOutcome, MoveRequest, PendingBlob, EXPIRED_CODE, HUB_ACTOR, OVERDUE_CODE,
};

use records::{decode, decode_counter, StoredDocument};
use writer::{Command, WatchCommand, Writer};

/// Attachments up to this size are held in memory by their send and
/// carried in the journal with the document (one sync for both); larger
/// ones are streamed into the payload log as they arrive.
pub const CARRIED_ATTACHMENT_BYTES_MAX: u64 = 64 * 1024;

/// Deadlines found due, with the blocks that hold them.
#[derive(Debug, Default)]
pub struct DueWatches {
    blocks: Vec<Vec<u8>>,
    pub watches: Vec<WatchRecord>,
}

impl DueWatches {
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }
}

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

pub(crate) struct Inner {
    db: sled::Db,
    main: sled::Tree,
    /// Durable changes the tree does not hold yet, read before it.
    layers: layers::Layers,
    payload: payload::PayloadLog,
    /// Appended by the writer; cut by the checkpoints.
    journal: Mutex<journal::Journal>,
    checkpoints: checkpoint::Checkpoints,
    notifiers: Mutex<HashMap<String, Arc<Notify>>>,
    /// Set when a write failed: sled refuses every later write in this process.
    failed: AtomicBool,
    /// Set with `failed` when the failure was a full disk.
    failed_full: AtomicBool,
    stats: FlushStats,
    /// The data directory, whose file system's free space is checked.
    path: PathBuf,
    free_bytes_min: u64,
    /// Each sender's live pending-index entries (deliveries waiting in some
    /// queue), by the sender's code bytes: counted once at open, then kept by
    /// the writer after each successful write, so a quota check reads a
    /// number instead of walking the backlog.
    backlog: Mutex<HashMap<Vec<u8>, u64>>,
}

impl Inner {
    fn notifier(&self, agency: &str) -> Arc<Notify> {
        let mut notifiers = self.notifiers.lock().unwrap_or_else(|p| p.into_inner());
        notifiers.entry(agency.to_owned()).or_default().clone()
    }

    /// Refuses with `StorageFull` when a new document should not be taken:
    /// the free space is under the reserve, or an earlier write met a full disk.
    fn check_room(&self) -> Result<(), StoreError> {
        if self.failed_full.load(Ordering::Acquire) {
            return Err(StoreError::StorageFull {
                reason: "an earlier write met a full disk and sled writes nothing more in this \
                         process; free space on the data directory's disk and restart the hub"
                    .into(),
            });
        }
        if self.free_bytes_min == 0 {
            return Ok(());
        }
        let free_bytes = fs2::available_space(&self.path).map_err(|error| {
            StoreError::Storage(sled::Error::Io(std::io::Error::new(
                error.kind(),
                format!(
                    "cannot read the free space of {}: {error}",
                    self.path.display()
                ),
            )))
        })?;
        if free_bytes < self.free_bytes_min {
            return Err(StoreError::StorageFull {
                reason: format!(
                    "{free_bytes} bytes free on the disk of {}, under the {} kept for \
                     acknowledgements and status moves (free_space_mib_min)",
                    self.path.display(),
                    self.free_bytes_min
                ),
            });
        }
        Ok(())
    }

    /// A stored document with its envelope and certificate.
    fn load_document(&self, key: &[u8], bytes: &[u8]) -> Result<DocumentRecord, StoreError> {
        let stored: StoredDocument = decode(key, bytes)?;
        let certificate_key = keys::certificate(&stored.certificate_sha256);
        let extent: Extent = decode(
            &certificate_key,
            &self
                .get(&certificate_key)?
                .ok_or_else(|| StoreError::NotFound {
                    what: format!("certificate of {}", stored.document_id),
                })?,
        )?;
        self.document_with(stored, extent)
    }

    /// A stored document, given where its sender's certificate is.
    fn document_with(
        &self,
        stored: StoredDocument,
        certificate: Extent,
    ) -> Result<DocumentRecord, StoreError> {
        let envelope = self
            .payload
            .read(&stored.envelope)
            .map_err(error::payload_read_error)?;
        let certificate = self
            .payload
            .read(&certificate)
            .map_err(error::payload_read_error)?;
        stored.into_record(&envelope, certificate)
    }

    fn journal(&self) -> std::sync::MutexGuard<'_, journal::Journal> {
        self.journal.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The newest durable value of `key`.
    fn get(&self, key: &[u8]) -> Result<Option<sled::IVec>, sled::Error> {
        self.layers.get(&self.main, key)
    }

    fn scan_prefix(&self, prefix: &[u8]) -> layers::Merged {
        self.layers.scan_prefix(&self.main, prefix)
    }
}

/// The hub's storage. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
    commands: mpsc::Sender<Command>,
}

const SLED_SEGMENT_BYTES: usize = 4 << 20;

/// 2: the journal, the payload log and extents in blob records (1 kept
/// attachment chunks in a tree of their own).
const SCHEMA_VERSION: u8 = 2;

/// Each sender's deliveries waiting in some queue, by the sender's code
/// bytes, counted from the queue items themselves.
fn count_backlog(
    main: &sled::Tree,
    layers: &layers::Layers,
) -> Result<HashMap<Vec<u8>, u64>, StoreError> {
    let mut counts = HashMap::new();
    for item in layers.scan_prefix(main, &[keys::QUEUE]) {
        let (key, bytes) = item?;
        if let QueueItem::Delivery { document_id, .. } = decode(&key, &bytes)? {
            let sender = document_id.split(',').next().unwrap_or_default();
            *counts.entry(sender.as_bytes().to_vec()).or_insert(0) += 1;
        }
    }
    Ok(counts)
}

impl Store {
    /// Opens (or creates) the store in `path`. Refuses a directory written by
    /// another schema version or one sled cannot read.
    pub fn open(path: &Path, options: &StoreOptions) -> Result<Store, StoreError> {
        let damaged = |error: sled::Error| match error {
            sled::Error::Corruption { .. } => StoreError::DataLost {
                dir: path.display().to_string(),
                reason: format!(
                    "sled found its files damaged ({error}); restore the directory from a backup"
                ),
            },
            other => StoreError::Storage(other),
        };
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(options.cache_bytes)
            // sled writes a page over a quarter of a segment to a file of its
            // own; leaves of audit and deadline blocks stay well under this.
            .segment_size(SLED_SEGMENT_BYTES)
            .open()
            .map_err(damaged)?;
        let main = db.open_tree("main").map_err(damaged)?;
        // Before anything else is created: a directory of another version
        // is left exactly as it was.
        match main.get(keys::META_SCHEMA)? {
            None if main.is_empty() => {
                main.insert(keys::META_SCHEMA, &[SCHEMA_VERSION])?;
                db.flush()?;
            }
            None => {
                return Err(StoreError::Corrupt {
                    key: "m:schema".into(),
                    reason: "missing from a tree that holds records".into(),
                })
            }
            Some(version) if version.as_ref() == [SCHEMA_VERSION] => {}
            Some(version) => {
                return Err(StoreError::Corrupt {
                    key: "m:schema".into(),
                    reason: format!(
                        "schema version {:?}, this hub reads {SCHEMA_VERSION}",
                        version.as_ref()
                    ),
                })
            }
        }
        // Before anything is written: a directory that lost acknowledged
        // commits would otherwise look like a fresh or older one.
        let (mut marker, recorded) = marker::CommitMarker::open(path)?;
        let checkpointed = writer::read_u64(&main, keys::META_COMMIT_SEQ)?.unwrap_or(0);
        // Read first, checked against the marker, and only then changed:
        // a refused directory is left exactly as it was found.
        let mut recovering = journal::Journal::open(path, checkpointed)?;
        let recovered = recovering
            .groups
            .last()
            .map_or(checkpointed, |group| group.seq);
        match recorded {
            Some(recorded) if recovered < recorded => {
                return Err(marker::lost_commits(path, recovered, recorded));
            }
            Some(_) => {}
            None => {
                marker
                    .record(recovered)
                    .and_then(|()| marker.sync())
                    .map_err(|error| StoreError::Storage(sled::Error::Io(error)))?;
            }
        }
        let payload = payload::PayloadLog::open(path)
            .map_err(|error| StoreError::Storage(sled::Error::Io(error)))?;
        let layers = layers::Layers::default();
        for group in std::mem::take(&mut recovering.groups) {
            for (extent, bytes) in &group.payload {
                payload
                    .restore(extent, bytes)
                    .map_err(|error| StoreError::Storage(sled::Error::Io(error)))?;
            }
            layers.merge(group.changes.into_iter(), group.seq);
        }
        let journal = recovering.start()?;
        let backlog = count_backlog(&main, &layers)?;
        let inner = Arc::new(Inner {
            db,
            main,
            layers,
            payload,
            journal: Mutex::new(journal),
            checkpoints: checkpoint::Checkpoints::new(checkpointed),
            notifiers: Mutex::new(HashMap::new()),
            failed: AtomicBool::new(false),
            failed_full: AtomicBool::new(false),
            stats: FlushStats::default(),
            path: path.to_owned(),
            free_bytes_min: options.free_bytes_min,
            backlog: Mutex::new(backlog),
        });
        let policy = checkpoint::Policy {
            start_bytes: options.checkpoint_bytes,
            hold_bytes: options.checkpoint_bytes.saturating_mul(4),
            interval: options.checkpoint_interval,
        };
        let checkpointer = {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name("truc-store-checkpoint".into())
                .spawn(move || checkpoint::run(inner, policy))
                .map_err(|error| StoreError::Storage(sled::Error::Io(error)))?
        };
        let store_writer = Writer::new(inner.clone(), marker, policy, checkpointer)?;
        let (commands, receiver) = mpsc::channel(options.write_queue_max);
        std::thread::Builder::new()
            .name("truc-store-writer".into())
            .spawn(move || store_writer.run(receiver))
            .map_err(|error| StoreError::Storage(sled::Error::Io(error)))?;
        Ok(Store { inner, commands })
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
        self.submit(|reply| Command::Accept {
            document,
            blobs,
            reply,
        })
        .await
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
        self.submit(|reply| Command::AcceptPlanned {
            document,
            blobs,
            plan,
            reply,
        })
        .await
    }

    /// Writes everything acknowledged so far into the tree and empties the
    /// journal, so that the next open has nothing to read back (a graceful
    /// stop does this; a crash leaves it to the next open).
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        self.submit(|reply| Command::Checkpoint { reply }).await
    }

    /// The recalls, updates and replaces that name `document_id` or that it names.
    pub fn links(&self, document_id: &str) -> Result<Vec<LinkRecord>, StoreError> {
        self.inner
            .scan_prefix(&keys::link_prefix(document_id))
            .map(|item| {
                let (key, bytes) = item?;
                decode(&key, &bytes)
            })
            .collect()
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
        self.submit(|reply| Command::Ack {
            agency: agency.to_owned(),
            queue_seqs,
            at_unix_ms,
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
        let key = keys::document(document_id);
        self.inner
            .get(&key)?
            .map(|bytes| self.inner.load_document(&key, &bytes))
            .transpose()
    }

    /// Every delivery of a document, by recipient code.
    pub fn deliveries(&self, document_id: &str) -> Result<Vec<DeliveryRecord>, StoreError> {
        let key = keys::deliveries(document_id);
        let mut deliveries: Vec<DeliveryRecord> = match self.inner.get(&key)? {
            Some(bytes) => decode(&key, &bytes)?,
            None => Vec::new(),
        };
        deliveries.sort_by(|a, b| a.recipient.cmp(&b.recipient));
        Ok(deliveries)
    }

    pub fn delivery(
        &self,
        document_id: &str,
        recipient: &str,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        Ok(self
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
        let start = keys::queue(agency, after.saturating_add(1));
        let end = keys::queue(agency, u64::MAX);
        self.inner
            .layers
            .range_limited(
                &self.inner.main,
                Bound::Included(start),
                Bound::Included(end),
                limit,
            )
            .take(limit)
            .map(|item| {
                let (key, bytes) = item?;
                let seq = keys::queue_seq_of(&key).ok_or_else(|| StoreError::Corrupt {
                    key: String::from_utf8_lossy(&key).into_owned(),
                    reason: "queue key without a sequence number".into(),
                })?;
                Ok((seq, decode(&key, &bytes)?))
            })
            .collect()
    }

    /// The first delivery (not notice) waiting in `agency`'s queue: the oldest unacknowledged.
    pub fn oldest_queued_delivery(&self, agency: &str) -> Result<Option<QueueItem>, StoreError> {
        for item in self.inner.scan_prefix(&keys::queue_prefix(agency)) {
            let (key, bytes) = item?;
            let item: QueueItem = decode(&key, &bytes)?;
            if matches!(item, QueueItem::Delivery { .. }) {
                return Ok(Some(item));
            }
        }
        Ok(None)
    }

    /// Every stored document, in id order.
    pub fn documents(&self) -> impl Iterator<Item = Result<DocumentRecord, StoreError>> + '_ {
        self.inner.scan_prefix(&[keys::DOCUMENT]).map(|item| {
            let (key, bytes) = item?;
            self.inner.load_document(&key, &bytes)
        })
    }

    pub fn queue_depth(&self, agency: &str) -> usize {
        self.inner.scan_prefix(&keys::queue_prefix(agency)).count()
    }

    /// Woken after a flush that queued something for `agency`.
    pub fn notifier(&self, agency: &str) -> Arc<Notify> {
        self.inner.notifier(agency)
    }

    /// Sent and received per agency over an inclusive range of `yyyymmdd` keys.
    pub fn counts(
        &self,
        from_date_key: u32,
        to_date_key: u32,
    ) -> Result<BTreeMap<String, (u64, u64)>, StoreError> {
        let mut totals: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for item in self.inner.scan_prefix(&[keys::COUNTER]) {
            let (key, bytes) = item?;
            let (agency, date) = keys::parse_counter(&key).ok_or_else(|| StoreError::Corrupt {
                key: String::from_utf8_lossy(&key).into_owned(),
                reason: "malformed counter key".into(),
            })?;
            if (from_date_key..=to_date_key).contains(&date) {
                let (sent, received) = decode_counter(&bytes);
                let total = totals.entry(agency.to_owned()).or_default();
                total.0 += sent;
                total.1 += received;
            }
        }
        Ok(totals)
    }

    /// Every counter, keyed by (agency, `yyyymmdd`).
    pub fn counter_entries(&self) -> Result<CounterMap, StoreError> {
        let mut entries = BTreeMap::new();
        for item in self.inner.scan_prefix(&[keys::COUNTER]) {
            let (key, bytes) = item?;
            if let Some((agency, date)) = keys::parse_counter(&key) {
                entries.insert((agency.to_owned(), date), decode_counter(&bytes));
            }
        }
        Ok(entries)
    }

    /// Recomputes the counters from the stored documents and deliveries, to
    /// check the live ones: a document counts once for its sender, and once
    /// for each recipient whose delivery has arrived.
    pub fn rebuild_counters(&self) -> Result<CounterMap, StoreError> {
        let mut entries = CounterMap::new();
        for item in self.inner.scan_prefix(&[keys::DOCUMENT]) {
            let (key, bytes) = item?;
            let document: StoredDocument = decode(&key, &bytes)?;
            entries
                .entry((document.sender.clone(), document.date_key))
                .or_default()
                .0 += 1;
            for delivery in self.deliveries(&document.document_id)? {
                if delivery.arrived() {
                    entries
                        .entry((delivery.recipient.clone(), document.date_key))
                        .or_default()
                        .1 += 1;
                }
            }
        }
        Ok(entries)
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
        let mut rows: BTreeMap<String, ReportRow> = BTreeMap::new();
        for item in self.inner.scan_prefix(&[keys::DOCUMENT]) {
            let (key, bytes) = item?;
            let document: StoredDocument = decode(&key, &bytes)?;
            if !(from_date_key..=to_date_key).contains(&document.date_key) {
                continue;
            }
            let sender = rows.entry(document.sender.clone()).or_default();
            sender.sent += 1;
            if focus.is_some_and(|focus| document.recipients.iter().any(|r| r == focus)) {
                sender.sent_to_focus += 1;
                if document.document_signature_state == DocumentSignatureState::Valid {
                    sender.sent_to_focus_signed += 1;
                }
            }
            for delivery in self.deliveries(&document.document_id)? {
                let row = rows.entry(delivery.recipient.clone()).or_default();
                if delivery.arrived() {
                    row.received += 1;
                }
                for entry in &delivery.history {
                    row.statuses_reported |= 1 << entry.code.min(31);
                }
            }
        }
        for record in self.overdue_records(None) {
            let record = record?;
            let date_key = record
                .document_id
                .parse::<truc_domain::DocumentId>()
                .map_or(0, |id| id.date().ordinal_key());
            if (from_date_key..=to_date_key).contains(&date_key) {
                rows.entry(record.recipient).or_default().overdue += 1;
            }
        }
        Ok(rows)
    }

    /// [`Store::accept_planned`], with each delivery's deadlines written into
    /// the watch index in the same atomic write.
    pub async fn accept_watched(
        &self,
        document: DocumentRecord,
        blobs: Vec<PendingBlob>,
        plan: AcceptPlan,
        deadlines: AcceptDeadlines,
    ) -> Result<(AcceptOutcome, Vec<BusinessOutcome>), StoreError> {
        self.submit(|reply| {
            Command::Watch(WatchCommand::Accept {
                document,
                blobs,
                plan,
                deadlines,
                reply,
            })
        })
        .await
    }

    /// [`Store::ack_all`], with the "received" deadline of each arrival
    /// written in the same atomic write.
    pub async fn ack_watched(
        &self,
        agency: &str,
        queue_seqs: Vec<u64>,
        at_unix_ms: i64,
        received_deadline_unix_ms: Option<i64>,
    ) -> Result<Vec<AckOutcome>, StoreError> {
        self.submit(|reply| {
            Command::Watch(WatchCommand::Ack {
                agency: agency.to_owned(),
                queue_seqs,
                at_unix_ms,
                received_deadline_unix_ms,
                reply,
            })
        })
        .await
    }

    /// Watched deadlines at or before `unix_ms`, earliest first, in whole
    /// blocks: at least `limit` of them if there are that many.
    pub fn due_watches(&self, unix_ms: i64, limit: usize) -> Result<DueWatches, StoreError> {
        let mut due = DueWatches::default();
        let blocks = self.inner.layers.range(
            &self.inner.main,
            Bound::Included(vec![keys::WATCH]),
            Bound::Excluded(keys::watch_until(unix_ms)),
        );
        for item in blocks {
            if due.watches.len() >= limit {
                break;
            }
            let (key, bytes) = item?;
            let watches: Vec<WatchRecord> = decode(&key, &bytes)?;
            due.watches.extend(watches);
            due.blocks.push(key.to_vec());
        }
        Ok(due)
    }

    /// Settles due deadlines: met ones are dropped, unmet ones recorded as
    /// overdue (expiries as dead letters) and their senders told, in one write.
    pub async fn lapse(
        &self,
        due: DueWatches,
        at_unix_ms: i64,
        expiry_reason: String,
    ) -> Result<LapseOutcome, StoreError> {
        self.submit(|reply| {
            Command::Watch(WatchCommand::Lapse {
                blocks: due.blocks,
                at_unix_ms,
                expiry_reason,
                reply,
            })
        })
        .await
    }

    /// Overdue records of one recipient, or of all.
    pub fn overdue_records(
        &self,
        recipient: Option<&str>,
    ) -> impl Iterator<Item = Result<OverdueRecord, StoreError>> + '_ {
        let prefix = recipient.map_or(vec![keys::OVERDUE], keys::overdue_prefix);
        self.inner.scan_prefix(&prefix).map(|item| {
            let (key, bytes) = item?;
            decode(&key, &bytes)
        })
    }

    /// Dead letters of one recipient, or of all.
    pub fn dead_letters(
        &self,
        recipient: Option<&str>,
    ) -> impl Iterator<Item = Result<DeadLetterRecord, StoreError>> + '_ {
        let prefix = recipient.map_or(vec![keys::DEAD_LETTER], keys::dead_letter_prefix);
        self.inner.scan_prefix(&prefix).map(|item| {
            let (key, bytes) = item?;
            decode(&key, &bytes)
        })
    }

    pub fn dead_letter(
        &self,
        document_id: &str,
        recipient: &str,
    ) -> Result<Option<DeadLetterRecord>, StoreError> {
        let key = keys::dead_letter(recipient, document_id);
        self.inner
            .get(&key)?
            .map(|bytes| decode(&key, &bytes))
            .transpose()
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
        self.submit(|reply| {
            Command::Watch(WatchCommand::Resend {
                document_id: document_id.to_owned(),
                recipient: recipient.to_owned(),
                operator: operator.to_owned(),
                at_unix_ms,
                deadlines,
                reply,
            })
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
        self.submit(|reply| {
            Command::Watch(WatchCommand::Cancel {
                document_id: document_id.to_owned(),
                recipient: recipient.to_owned(),
                operator: operator.to_owned(),
                at_unix_ms,
                reason: reason.to_owned(),
                reply,
            })
        })
        .await
    }

    /// How many of `sender`'s deliveries wait unacknowledged in some queue,
    /// counting at most `max` (enough to enforce a limit of `max`).
    pub fn pending_sends(&self, sender: &str, max: usize) -> Result<usize, StoreError> {
        let backlog = self.inner.backlog.lock().unwrap_or_else(|p| p.into_inner());
        let count = backlog.get(sender.as_bytes()).copied().unwrap_or(0);
        Ok(usize::try_from(count).unwrap_or(usize::MAX).min(max))
    }

    /// Every stored document id (for operators and checks).
    pub fn document_ids(&self) -> impl Iterator<Item = Result<String, StoreError>> + '_ {
        self.inner
            .scan_prefix(&[keys::DOCUMENT])
            .keys()
            .map(|key| Ok(String::from_utf8_lossy(&key?[1..]).into_owned()))
    }

    pub fn blob(&self, sha256: &[u8; 32]) -> Result<Option<BlobRecord>, StoreError> {
        let key = keys::blob(sha256);
        self.inner
            .get(&key)?
            .map(|bytes| decode(&key, &bytes))
            .transpose()
    }

    /// `StorageFull` when new documents are refused for want of disk space
    /// (see [`StoreOptions::free_bytes_min`]); intake asks before taking any
    /// attachment bytes, and the writer again before storing the document.
    pub fn check_room(&self) -> Result<(), StoreError> {
        self.inner.check_room()
    }

    /// Appends attachment bytes to the payload log. They are named by a
    /// document only when it is accepted (and synced before that is
    /// acknowledged); bytes of a send that fails stay as unused space.
    pub fn put_chunk(&self, data: &[u8]) -> Result<Extent, StoreError> {
        // A full disk refuses this send; nothing else is harmed.
        self.inner
            .payload
            .append(data)
            .map_err(error::payload_error)
    }

    /// Gives back the space of attachment bytes a send appended and nothing
    /// names: the send was refused, failed, or found the document stored.
    pub fn discard_chunks(&self, extents: &[Extent]) {
        self.inner.payload.release(extents);
    }

    /// The stored bytes of a blob, one piece per extent, in order.
    pub fn blob_chunks(
        &self,
        sha256: &[u8; 32],
    ) -> Result<impl Iterator<Item = Result<Vec<u8>, StoreError>> + '_, StoreError> {
        let record = self.blob(sha256)?.ok_or_else(|| StoreError::NotFound {
            what: format!("attachment {}", hex::encode(sha256)),
        })?;
        Ok(record.extents.into_iter().map(|extent| {
            self.inner
                .payload
                .read(&extent)
                .map_err(error::payload_read_error)
        }))
    }

    /// The audit chain's last written entry (sequence 0 and the genesis
    /// hash before the first).
    pub fn audit_head(&self) -> Result<AuditHead, StoreError> {
        match self.inner.get(keys::META_AUDIT_HEAD)? {
            Some(bytes) => AuditHead::decode(&bytes).ok_or_else(|| StoreError::Corrupt {
                key: "m:audit_head".into(),
                reason: "not 40 bytes".into(),
            }),
            None => Ok(AuditHead::default()),
        }
    }

    /// Audit entries from sequence number `from_seq` on, in order.
    pub fn audit_entries(
        &self,
        from_seq: u64,
    ) -> impl Iterator<Item = Result<AuditEntry, StoreError>> + '_ {
        self.inner
            .layers
            .range(
                &self.inner.main,
                Bound::Included(keys::audit(from_seq).to_vec()),
                Bound::Included(keys::audit(u64::MAX).to_vec()),
            )
            .flat_map(move |item| {
                let block: Result<Vec<AuditEntry>, StoreError> = item
                    .map_err(StoreError::from)
                    .and_then(|(key, bytes)| decode(&key, &bytes));
                match block {
                    Ok(entries) => entries
                        .into_iter()
                        .filter(|entry| entry.seq >= from_seq)
                        .map(Ok)
                        .collect::<Vec<_>>(),
                    Err(error) => vec![Err(error)],
                }
            })
    }

    pub fn flush_stats(&self) -> &FlushStats {
        &self.inner.stats
    }

    /// Bytes the store occupies on disk: the tree, the journal and the payload log.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        let files = |dir: &Path| -> u64 {
            std::fs::read_dir(dir)
                .map(|entries| {
                    entries
                        .flatten()
                        .filter_map(|entry| entry.metadata().ok())
                        .map(|metadata| metadata.len())
                        .sum()
                })
                .unwrap_or(0)
        };
        Ok(self.inner.db.size_on_disk()?
            + files(&self.inner.path.join(JOURNAL_DIR))
            + files(self.inner.payload.dir()))
    }
}
