//! The embedded engine: one process, nothing to install. Each group's
//! changes become keys of one sled tree, written as one journal record and
//! synced (payload bytes first); readers see them at once through the
//! layers in memory, and checkpoints write them into sled in the background
//! (`journal.rs`, `layers.rs`, `checkpoint.rs`, `payload.rs`, `marker.rs`).
//! Retention's keys are in `embedded/retention.rs`, the duplicate index's
//! run files in `embedded/ids.rs`.

mod ids;
mod retention;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::audit::{sha256, AuditEntry, AuditHead};
use crate::checkpoint::{self, Policy};
use crate::engine::{DocumentSummary, DueWatches, GroupWriter, QueueDepth, Reader, Rows};
use crate::error::StoreError;
use crate::keys;
use crate::layers;
use crate::marker::{self, CommitMarker};
use crate::payload::{self, PayloadLog};
use crate::records::{
    decode, decode_counter, encode, encode_counter, envelope_bytes, ArchiveFile, ArchivedDocument,
    BlobRecord, DeadLetterRecord, DeliveryRecord, DocumentRecord, LinkRecord, OverdueRecord,
    QueueItem, RetainedFigures, StoredBlob, StoredDocument, WatchRecord,
};
use crate::rules::{ChangeSet, GroupChanges, GroupStart, View, WatchBlockId};
use crate::{journal, CounterMap, Extent, PendingBlob, StoreOptions, MARKER_FILE, PAYLOAD_DIR};

/// 2: the journal, the payload log and extents in blob records (1 kept
/// attachment chunks in a tree of their own).
const SCHEMA_VERSION: u8 = 2;

const SLED_SEGMENT_BYTES: usize = 4 << 20;

/// Most audit entries in one stored block.
const AUDIT_BLOCK_ENTRIES_MAX: usize = 128;
/// Most deadlines in one stored block.
const WATCH_BLOCK_ENTRIES_MAX: usize = 512;

/// Key → new value (`None`: removed), not yet in sled.
type Changes = HashMap<Vec<u8>, Option<Vec<u8>>>;

pub(crate) struct Inner {
    pub(crate) db: sled::Db,
    pub(crate) main: sled::Tree,
    /// Durable changes the tree does not hold yet, read before it.
    pub(crate) layers: layers::Layers,
    pub(crate) payload: PayloadLog,
    /// Appended by the writer; cut by the checkpoints.
    journal: Mutex<journal::Journal>,
    pub(crate) checkpoints: checkpoint::Checkpoints,
    /// Set when a write failed: sled refuses every later write in this process.
    pub(crate) failed: AtomicBool,
    /// Set with `failed` when the failure was a full disk.
    pub(crate) failed_full: AtomicBool,
    /// The data directory, whose file system's free space is checked.
    pub(crate) path: PathBuf,
    free_bytes_min: u64,
    /// Each sender's deliveries waiting in some queue, by the sender's code:
    /// counted once at open, then kept by the writer after each successful
    /// write, so a quota check reads a number instead of walking the backlog.
    backlog: Mutex<HashMap<String, u64>>,
    /// The duplicate index of documents that left for archives.
    pub(crate) ids: ids::IdIndex,
    /// The data directory's lock, let go with the last reference.
    _lock: crate::lock::DirectoryLock,
}

impl Inner {
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
        let free_bytes = fs2::available_space(&self.path)
            .map_err(|error| StoreError::io("reading the free space of", &self.path, error))?;
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
        let extent: payload::Extent = decode(
            &certificate_key,
            &self
                .get(&certificate_key)?
                .ok_or_else(|| StoreError::NotFound {
                    what: format!("certificate of {}", stored.document_id),
                })?,
        )?;
        let envelope = self
            .payload
            .read(&stored.envelope)
            .map_err(crate::error::payload_read_error)?;
        let certificate = self
            .payload
            .read(&extent)
            .map_err(crate::error::payload_read_error)?;
        stored.into_record(&envelope, certificate)
    }

    pub(crate) fn journal(&self) -> std::sync::MutexGuard<'_, journal::Journal> {
        self.journal.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The newest durable value of `key`.
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<sled::IVec>, sled::Error> {
        self.layers.get(&self.main, key)
    }

    fn scan_prefix(&self, prefix: &[u8]) -> layers::Merged {
        self.layers.scan_prefix(&self.main, prefix)
    }

    fn decoded<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        self.get(key)?.map(|bytes| decode(key, &bytes)).transpose()
    }
}

/// Each sender's deliveries waiting in some queue, counted from the queue
/// items themselves.
fn count_backlog(
    main: &sled::Tree,
    layers: &layers::Layers,
) -> Result<HashMap<String, u64>, StoreError> {
    let mut counts = HashMap::new();
    for item in layers.scan_prefix(main, &[keys::QUEUE]) {
        let (key, bytes) = item?;
        if let QueueItem::Delivery { document_id, .. } = decode(&key, &bytes)? {
            let sender = truc_domain::sender_of_id(&document_id);
            *counts.entry(sender.to_owned()).or_insert(0) += 1;
        }
    }
    Ok(counts)
}

/// A big-endian `u64` meta value, if present.
pub(crate) fn read_u64(tree: &sled::Tree, key: &[u8]) -> Result<Option<u64>, StoreError> {
    tree.get(key)?
        .map(|bytes| {
            <[u8; 8]>::try_from(bytes.as_ref())
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::Corrupt {
                    key: String::from_utf8_lossy(key).into_owned(),
                    reason: "not 8 bytes".into(),
                })
        })
        .transpose()
}

/// A big-endian `u64` meta value as readers see it (layers, then the tree).
fn read_u64_layered(inner: &Inner, key: &[u8]) -> Result<Option<u64>, StoreError> {
    inner
        .get(key)?
        .map(|bytes| {
            <[u8; 8]>::try_from(bytes.as_ref())
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::Corrupt {
                    key: String::from_utf8_lossy(key).into_owned(),
                    reason: "not 8 bytes".into(),
                })
        })
        .transpose()
}

/// Opens (or creates) the embedded store in `path`: its reader, and the
/// writer the store's writer thread drives. Refuses a directory written by
/// another schema version, one sled cannot read, or one that lost
/// acknowledged groups.
pub(crate) fn open(
    path: &Path,
    options: &StoreOptions,
) -> Result<(Arc<Inner>, EmbeddedWriter), StoreError> {
    let damaged = |error: sled::Error| match error {
        sled::Error::Corruption { .. } => StoreError::DataLost {
            dir: path.display().to_string(),
            reason: format!(
                "sled found its files damaged ({error}); restore the directory from a backup"
            ),
        },
        other => StoreError::from(other),
    };
    // Before sled's own lock, whose error says only that it failed: this
    // one names the process that holds the directory.
    let lock = crate::lock::DirectoryLock::take(path)?;
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
    let (mut marker, recorded) = CommitMarker::open(path)?;
    let checkpointed = read_u64(&main, keys::META_COMMIT_SEQ)?.unwrap_or(0);
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
                .map_err(|error| StoreError::io("writing", &path.join(MARKER_FILE), error))?;
        }
    }
    let payload = PayloadLog::open(path)
        .map_err(|error| StoreError::io("opening", &path.join(PAYLOAD_DIR), error))?;
    let layers = layers::Layers::default();
    for group in std::mem::take(&mut recovering.groups) {
        for (extent, bytes) in &group.payload {
            payload.restore(extent, bytes).map_err(|error| {
                StoreError::io("restoring into", &path.join(PAYLOAD_DIR), error)
            })?;
        }
        layers.merge(group.changes.into_iter(), group.seq);
    }
    let journal = recovering.start()?;
    retention::build_indexes(&main, &layers, &db)?;
    let backlog = count_backlog(&main, &layers)?;
    let ids = ids::IdIndex::open(path, retention::id_runs(&main, &layers)?)?;
    let inner = Arc::new(Inner {
        db,
        main,
        layers,
        payload,
        journal: Mutex::new(journal),
        checkpoints: checkpoint::Checkpoints::new(checkpointed),
        failed: AtomicBool::new(false),
        failed_full: AtomicBool::new(false),
        path: path.to_owned(),
        free_bytes_min: options.free_bytes_min,
        backlog: Mutex::new(backlog),
        ids,
        _lock: lock,
    });
    let policy = Policy {
        start_bytes: options.checkpoint_bytes,
        hold_bytes: options.checkpoint_bytes.saturating_mul(4),
        interval: options.checkpoint_interval,
    };
    let checkpointer = {
        let inner = inner.clone();
        std::thread::Builder::new()
            .name("truc-store-checkpoint".into())
            .spawn(move || checkpoint::run(inner, policy))
            .map_err(|error| {
                StoreError::io("starting", Path::new("the checkpoint thread"), error)
            })?
    };
    let next_queue_seq = read_u64_layered(&inner, keys::META_NEXT_SEQ)?.unwrap_or(1);
    let commit_seq = read_u64_layered(&inner, keys::META_COMMIT_SEQ)?.unwrap_or(0);
    let audit_head = match inner.get(keys::META_AUDIT_HEAD)? {
        Some(bytes) => AuditHead::decode(&bytes).ok_or_else(|| StoreError::Corrupt {
            key: "m:audit_head".into(),
            reason: "not 40 bytes".into(),
        })?,
        None => AuditHead::default(),
    };
    let writer = EmbeddedWriter {
        inner: inner.clone(),
        next_queue_seq,
        audit_head,
        commit_seq,
        marker,
        policy,
        checkpointer: Some(checkpointer),
        room: None,
    };
    Ok((inner, writer))
}

/// The writer's side of the embedded engine: it keeps the counters a group
/// starts from in memory, since no other process writes the directory.
pub(crate) struct EmbeddedWriter {
    inner: Arc<Inner>,
    next_queue_seq: u64,
    /// The audit chain's last written entry.
    audit_head: AuditHead,
    /// Groups written so far, stored with each group and then in the marker.
    commit_seq: u64,
    marker: CommitMarker,
    policy: Policy,
    /// The checkpoint thread, joined after its last checkpoint when the writer ends.
    checkpointer: Option<std::thread::JoinHandle<()>>,
    /// Whether the current group may store new documents, asked once per group.
    room: Option<Result<(), String>>,
}

impl View for EmbeddedWriter {
    fn document(&mut self, document_id: &str) -> Result<Option<DocumentRecord>, StoreError> {
        let key = keys::document(document_id);
        self.inner
            .get(&key)?
            .map(|bytes| self.inner.load_document(&key, &bytes))
            .transpose()
    }

    fn deliveries(&mut self, document_id: &str) -> Result<Option<Vec<DeliveryRecord>>, StoreError> {
        self.inner.decoded(&keys::deliveries(document_id))
    }

    fn queue_item(&mut self, owner: &str, seq: u64) -> Result<Option<QueueItem>, StoreError> {
        self.inner.decoded(&keys::queue(owner, seq))
    }

    fn dead_letter(
        &mut self,
        recipient: &str,
        document_id: &str,
    ) -> Result<Option<DeadLetterRecord>, StoreError> {
        self.inner
            .decoded(&keys::dead_letter(recipient, document_id))
    }

    fn watch_block(
        &mut self,
        block: &WatchBlockId,
    ) -> Result<Option<Vec<WatchRecord>>, StoreError> {
        self.inner.decoded(block)
    }

    fn room_for_documents(&mut self) -> Result<(), StoreError> {
        let inner = &self.inner;
        let answer = self.room.get_or_insert_with(|| match inner.check_room() {
            Ok(()) => Ok(()),
            Err(StoreError::StorageFull { reason }) => Err(reason),
            // Not knowing the free space is no reason to refuse: sled's own
            // error, if the disk is full, still says so.
            Err(error) => {
                tracing::warn!(%error, "cannot check the free space");
                Ok(())
            }
        });
        answer
            .clone()
            .map_err(|reason| StoreError::StorageFull { reason })
    }

    fn blob_refs(&mut self, sha256: &[u8; 32]) -> Result<Option<u64>, StoreError> {
        self.inner.blob_refs_of(sha256)
    }

    fn archived(&mut self, document_id: &str) -> Result<Option<ArchivedDocument>, StoreError> {
        self.inner.archived_of(document_id)
    }

    fn overdue_of(
        &mut self,
        recipient: &str,
        document_id: &str,
    ) -> Result<Vec<OverdueRecord>, StoreError> {
        self.inner.overdue_of(recipient, document_id)
    }

    fn links(&mut self, document_id: &str) -> Result<Vec<LinkRecord>, StoreError> {
        Reader::links(&*self.inner, document_id)
    }

    fn audit_oldest(
        &mut self,
        before_unix_ms: i64,
        through_seq: u64,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.inner.audit_oldest(before_unix_ms, through_seq, limit)
    }

    fn send_seq(
        &mut self,
        document_id: &str,
        accepted_at_unix_ms: i64,
    ) -> Result<Option<u64>, StoreError> {
        self.inner.send_seq_of(document_id, accepted_at_unix_ms)
    }

    fn open_archive(&mut self, _hub: &str) -> Result<Option<ArchiveFile>, StoreError> {
        self.inner.open_archive_file()
    }
}

impl GroupWriter for EmbeddedWriter {
    fn begin(&mut self, _sent: &[&str]) -> Result<GroupStart, StoreError> {
        self.room = None;
        if self.inner.failed.load(Ordering::Acquire) {
            return Err(match self.inner.check_room() {
                Err(full) if self.inner.failed_full.load(Ordering::Acquire) => full,
                _ => StoreError::Corrupt {
                    key: "(store)".into(),
                    reason: "an earlier write failed; restart the hub".into(),
                },
            });
        }
        Ok(GroupStart {
            next_queue_seq: self.next_queue_seq,
            audit_head: self.audit_head,
        })
    }

    fn view(&mut self) -> &mut dyn View {
        self
    }

    fn commit(&mut self, group: GroupChanges, _woken: &BTreeSet<String>) -> Result<(), StoreError> {
        if group.is_empty() && group.next_queue_seq == self.next_queue_seq {
            return Ok(());
        }
        match self.write(group) {
            Ok(()) => Ok(()),
            Err(error) => {
                tracing::error!(%error, "write failed; refusing further writes until restart");
                // sled keeps the error and fails every later write of this process.
                let full =
                    matches!(&error, sled::Error::Io(io) if crate::error::is_storage_full(io));
                if full {
                    self.inner.failed_full.store(true, Ordering::Release);
                }
                self.inner.failed.store(true, Ordering::Release);
                Err(StoreError::from(error))
            }
        }
    }

    fn abort(&mut self) {}

    /// Waits for a checkpoint of every group written, then starts a fresh
    /// journal segment and removes the others: the tree holds everything.
    fn checkpoint_all(&mut self) -> Result<(), StoreError> {
        let through = self
            .inner
            .checkpoints
            .wait_through(&self.inner, self.commit_seq)?;
        debug_assert!(through >= self.commit_seq);
        let mut journal = self.inner.journal();
        journal
            .rotate(self.commit_seq + 1)
            .map_err(|error| StoreError::from(sled::Error::Io(error)))?;
        journal.discard_through(through);
        Ok(())
    }

    fn close(&mut self) {
        // A last checkpoint, so that the tree holds everything and the next
        // open has nothing to read back.
        self.inner.checkpoints.stop();
        if let Some(checkpointer) = self.checkpointer.take() {
            let _ = checkpointer.join();
        }
    }
}

impl EmbeddedWriter {
    /// Makes the group's changes durable (the attachments they name, then
    /// one journal record) and lays them over the tree for readers.
    fn write(&mut self, group: GroupChanges) -> Result<(), sled::Error> {
        self.inner
            .checkpoints
            .wait_for_room(&self.inner, &self.policy);
        let commit_seq = self.commit_seq + 1;
        let mut staged = Changes::new();
        let mut carried = Vec::new();
        let GroupChanges {
            mut changes,
            audit,
            next_queue_seq,
            send_seqs,
        } = group;
        let backlog = std::mem::take(&mut changes.backlog);
        // Attachments first: a document names them.
        self.stage_blobs(
            &mut staged,
            &mut carried,
            std::mem::take(&mut changes.blobs),
        )?;
        self.stage_documents(&mut staged, &mut carried, &changes.documents)?;
        self.stage_records(&mut staged, &mut changes, &audit, commit_seq)?;
        // After every other change: a retired document's keys go whatever
        // the group did to them before.
        let (released, ids) = retention::stage(
            &self.inner,
            &mut staged,
            &mut changes,
            &send_seqs,
            commit_seq,
        )?;
        let audit_head = audit.last().map_or(self.audit_head, |entry| AuditHead {
            seq: entry.seq,
            sha256: entry.sha256,
        });
        stage_meta(&mut staged, next_queue_seq, commit_seq, audit_head);
        if !ids.is_empty() {
            crate::sink::crash_point("ids-written");
        }
        let ids = self.make_durable(commit_seq, &staged, &carried, ids)?;
        self.inner.layers.merge(staged.into_iter(), commit_seq);
        self.inner.ids.settle(ids);
        // Durable and visible: the bytes of what left can go.
        if !released.is_empty() {
            self.inner.payload.release(&released);
        }
        self.count_backlog(backlog);
        self.commit_seq = commit_seq;
        self.next_queue_seq = next_queue_seq;
        self.audit_head = audit_head;
        // The group is durable and visible: a marker that cannot be written
        // only weakens the check at the next open, so it is said, not failed.
        if let Err(error) = self.marker.record(commit_seq) {
            tracing::warn!(%error, "cannot write the commit marker");
        }
        if self.inner.layers.live_bytes() >= self.policy.start_bytes {
            self.inner.checkpoints.request();
        }
        Ok(())
    }

    /// Stages the records of attachments not stored yet; small ones ride in
    /// the journal record.
    fn stage_blobs(
        &self,
        staged: &mut Changes,
        carried: &mut Vec<(payload::Extent, Vec<u8>)>,
        blobs: Vec<PendingBlob>,
    ) -> Result<(), sled::Error> {
        for blob in blobs {
            let key = keys::blob(&blob.sha256);
            // Stored meanwhile by another send: this upload's copy stays unused.
            if staged.contains_key(&key) || self.inner.get(&key)?.is_some() {
                continue;
            }
            let extents = match blob.inline {
                Some(bytes) => vec![self.carry(carried, bytes)?],
                None => blob
                    .extents
                    .iter()
                    .filter_map(|extent| match extent {
                        Extent::Log(extent) => Some(*extent),
                        Extent::Row(_) => None,
                    })
                    .collect(),
            };
            staged.insert(
                key,
                Some(encode(&StoredBlob {
                    size_bytes: blob.size_bytes,
                    extents,
                })),
            );
        }
        Ok(())
    }

    /// Stages new documents, their envelopes (carried) and their senders'
    /// certificates not stored yet.
    fn stage_documents(
        &self,
        staged: &mut Changes,
        carried: &mut Vec<(payload::Extent, Vec<u8>)>,
        documents: &[DocumentRecord],
    ) -> Result<(), sled::Error> {
        for document in documents {
            let certificate_sha256 = sha256(&document.sender_certificate);
            let certificate_key = keys::certificate(&certificate_sha256);
            if !staged.contains_key(&certificate_key) && self.inner.get(&certificate_key)?.is_none()
            {
                let extent = self.carry(carried, document.sender_certificate.clone())?;
                staged.insert(certificate_key, Some(encode(&extent)));
            }
            let envelope = self.carry(carried, envelope_bytes(document))?;
            staged.insert(
                keys::document(&document.document_id),
                Some(encode(&StoredDocument::new(
                    document,
                    envelope,
                    certificate_sha256,
                ))),
            );
        }
        Ok(())
    }

    /// Stages what the group changed of deliveries, queues, counters, links,
    /// deadlines and the audit chain.
    fn stage_records(
        &self,
        staged: &mut Changes,
        changes: &mut ChangeSet,
        audit: &[AuditEntry],
        commit_seq: u64,
    ) -> Result<(), sled::Error> {
        for (document_id, deliveries) in std::mem::take(&mut changes.deliveries) {
            staged.insert(
                keys::deliveries(&document_id),
                Some(encode(&deliveries.records)),
            );
        }
        for ((owner, seq), item) in std::mem::take(&mut changes.queue) {
            staged.insert(keys::queue(&owner, seq), item.map(|item| encode(&item)));
        }
        for ((agency, date_key), (sent, received)) in std::mem::take(&mut changes.counters) {
            let key = keys::counter(&agency, date_key);
            let (old_sent, old_received) = self
                .inner
                .get(&key)?
                .map(|bytes| decode_counter(&key, &bytes))
                .transpose()
                .map_err(|error| sled::Error::Unsupported(error.to_string()))?
                .unwrap_or((0, 0));
            staged.insert(
                key,
                Some(encode_counter(old_sent + sent, old_received + received).to_vec()),
            );
        }
        for link in &changes.links {
            let bytes = encode(link);
            staged.insert(keys::link(&link.earlier, &link.later), Some(bytes.clone()));
            staged.insert(keys::link(&link.later, &link.earlier), Some(bytes));
        }
        for block in std::mem::take(&mut changes.watch_blocks_done) {
            staged.insert(block, None);
        }
        for record in &changes.overdue {
            staged.insert(
                keys::overdue(&record.recipient, &record.document_id, record.kind.byte()),
                Some(encode(record)),
            );
        }
        for ((recipient, document_id), letter) in &changes.dead_letters {
            staged.insert(
                keys::dead_letter(recipient, document_id),
                Some(encode(letter)),
            );
        }
        // Blocks small enough that sled keeps them in its pages (it writes
        // values over a quarter of a segment to files of their own).
        for block in audit.chunks(AUDIT_BLOCK_ENTRIES_MAX) {
            let last = block.last().expect("chunks are never empty");
            staged.insert(keys::audit(last.seq).to_vec(), Some(encode(&block)));
        }
        stage_watch_blocks(staged, std::mem::take(&mut changes.watches), commit_seq);
        Ok(())
    }

    /// Syncs the payload log, then appends and syncs the group's journal
    /// record; on failure nothing of the group stays reserved.
    fn make_durable(
        &self,
        commit_seq: u64,
        staged: &Changes,
        carried: &[(payload::Extent, Vec<u8>)],
        ids: ids::Pending,
    ) -> Result<ids::Pending, sled::Error> {
        if let Err(error) = self.inner.payload.sync() {
            self.inner.ids.abandon(ids);
            return Err(sled::Error::Io(error));
        }
        let appended = self.inner.journal().append(
            commit_seq,
            staged
                .iter()
                .map(|(key, value)| (key.as_slice(), value.as_deref())),
            carried,
        );
        if let Err(error) = appended {
            let extents: Vec<payload::Extent> = carried.iter().map(|(extent, _)| *extent).collect();
            self.inner.payload.release(&extents);
            self.inner.ids.abandon(ids);
            return Err(sled::Error::Io(error));
        }
        Ok(ids)
    }

    /// Adds the group's changes to each sender's backlog count.
    fn count_backlog(&self, mut backlog: HashMap<String, i64>) {
        if !backlog.is_empty() {
            let mut counts = self.inner.backlog.lock().unwrap_or_else(|p| p.into_inner());
            for (sender, change) in backlog.drain() {
                let count = counts.entry(sender).or_insert(0);
                *count = count.saturating_add_signed(change);
            }
        }
    }

    /// Appends small payload bytes the group's journal record carries.
    fn carry(
        &self,
        carried: &mut Vec<(payload::Extent, Vec<u8>)>,
        bytes: Vec<u8>,
    ) -> Result<payload::Extent, sled::Error> {
        let extent = self
            .inner
            .payload
            .append_carried(&bytes)
            .map_err(sled::Error::Io)?;
        carried.push((extent, bytes));
        Ok(extent)
    }
}

/// The store's own figures after the group: the next queue number, the
/// group's commit number and the audit chain's head.
fn stage_meta(staged: &mut Changes, next_queue_seq: u64, commit_seq: u64, audit_head: AuditHead) {
    staged.insert(
        keys::META_NEXT_SEQ.to_vec(),
        Some(next_queue_seq.to_be_bytes().to_vec()),
    );
    staged.insert(
        keys::META_COMMIT_SEQ.to_vec(),
        Some(commit_seq.to_be_bytes().to_vec()),
    );
    staged.insert(
        keys::META_AUDIT_HEAD.to_vec(),
        Some(audit_head.encode().to_vec()),
    );
}

/// The group's deadlines as blocks, one per second of deadline, each under
/// its latest deadline (so none is read before it is due).
fn stage_watch_blocks(staged: &mut Changes, watches: Vec<WatchRecord>, commit_seq: u64) {
    if watches.is_empty() {
        return;
    }
    let mut blocks: BTreeMap<i64, Vec<WatchRecord>> = BTreeMap::new();
    for watch in watches {
        let second = watch.deadline_unix_ms.div_euclid(1000);
        blocks.entry(second).or_default().push(watch);
    }
    let blocks = blocks.into_values().flat_map(|watches| {
        watches
            .chunks(WATCH_BLOCK_ENTRIES_MAX)
            .map(<[WatchRecord]>::to_vec)
            .collect::<Vec<_>>()
    });
    for (index, watches) in blocks.enumerate() {
        let latest = watches
            .iter()
            .map(|w| w.deadline_unix_ms)
            .max()
            .unwrap_or(0);
        staged.insert(
            keys::watch_block(latest, commit_seq, index as u32),
            Some(encode(&watches)),
        );
    }
}

impl Reader for Inner {
    fn document(&self, document_id: &str) -> Result<Option<DocumentRecord>, StoreError> {
        let key = keys::document(document_id);
        self.get(&key)?
            .map(|bytes| self.load_document(&key, &bytes))
            .transpose()
    }

    fn deliveries(&self, document_id: &str) -> Result<Vec<DeliveryRecord>, StoreError> {
        Ok(self
            .decoded(&keys::deliveries(document_id))?
            .unwrap_or_default())
    }

    fn links(&self, document_id: &str) -> Result<Vec<LinkRecord>, StoreError> {
        self.scan_prefix(&keys::link_prefix(document_id))
            .map(|item| {
                let (key, bytes) = item?;
                decode(&key, &bytes)
            })
            .collect()
    }

    fn queue_after(
        &self,
        agency: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, QueueItem)>, StoreError> {
        let start = keys::queue(agency, after.saturating_add(1));
        let end = keys::queue(agency, u64::MAX);
        self.layers
            .range_limited(
                &self.main,
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

    fn oldest_queued_delivery(&self, agency: &str) -> Result<Option<QueueItem>, StoreError> {
        for item in self.scan_prefix(&keys::queue_prefix(agency)) {
            let (key, bytes) = item?;
            let item: QueueItem = decode(&key, &bytes)?;
            if matches!(item, QueueItem::Delivery { .. }) {
                return Ok(Some(item));
            }
        }
        Ok(None)
    }

    fn queue_items(&self) -> Rows<'_, (String, u64, QueueItem)> {
        Box::new(self.scan_prefix(&[keys::QUEUE]).map(|item| {
            let (key, bytes) = item?;
            let corrupt = || StoreError::Corrupt {
                key: String::from_utf8_lossy(&key).into_owned(),
                reason: "a queue key without its owner and sequence number".into(),
            };
            let seq = keys::queue_seq_of(&key).ok_or_else(corrupt)?;
            let owner = key
                .get(1..key.len() - 8)
                .and_then(|owner| std::str::from_utf8(owner).ok())
                .ok_or_else(corrupt)?
                .to_owned();
            Ok((owner, seq, decode(&key, &bytes)?))
        }))
    }

    fn next_queue_seq(&self) -> Result<u64, StoreError> {
        Ok(read_u64_layered(self, keys::META_NEXT_SEQ)?.unwrap_or(1))
    }

    fn queue_depth(&self, agency: &str) -> Result<QueueDepth, StoreError> {
        let mut depth = QueueDepth::default();
        for item in self.scan_prefix(&keys::queue_prefix(agency)) {
            let (key, bytes) = item?;
            match decode::<QueueItem>(&key, &bytes)? {
                QueueItem::Delivery { .. } => depth.deliveries += 1,
                QueueItem::Notice { .. } | QueueItem::Notices { .. } => depth.notices += 1,
            }
        }
        Ok(depth)
    }

    fn documents(&self) -> Rows<'_, DocumentRecord> {
        Box::new(self.scan_prefix(&[keys::DOCUMENT]).map(|item| {
            let (key, bytes) = item?;
            self.load_document(&key, &bytes)
        }))
    }

    fn document_ids(&self) -> Rows<'_, String> {
        Box::new(
            self.scan_prefix(&[keys::DOCUMENT])
                .keys()
                .map(|key| Ok(String::from_utf8_lossy(&key?[1..]).into_owned())),
        )
    }

    fn document_summaries(&self) -> Rows<'_, DocumentSummary> {
        Box::new(self.scan_prefix(&[keys::DOCUMENT]).map(|item| {
            let (key, bytes) = item?;
            let stored: StoredDocument = decode(&key, &bytes)?;
            Ok(DocumentSummary {
                document_id: stored.document_id,
                sender: stored.sender,
                date_key: stored.date_key,
                recipients: stored.recipients,
                document_signature_state: stored.document_signature_state,
            })
        }))
    }

    fn counter_entries(&self) -> Result<CounterMap, StoreError> {
        let mut entries = BTreeMap::new();
        for item in self.scan_prefix(&[keys::COUNTER]) {
            let (key, bytes) = item?;
            if let Some((agency, date)) = keys::parse_counter(&key) {
                entries.insert((agency.to_owned(), date), decode_counter(&key, &bytes)?);
            }
        }
        Ok(entries)
    }

    fn due_watches(&self, unix_ms: i64, limit: usize) -> Result<DueWatches, StoreError> {
        let mut due = DueWatches::default();
        let blocks = self.layers.range(
            &self.main,
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

    fn overdue_records(&self, recipient: Option<&str>) -> Rows<'_, OverdueRecord> {
        let prefix = recipient.map_or(vec![keys::OVERDUE], keys::overdue_prefix);
        Box::new(self.scan_prefix(&prefix).map(|item| {
            let (key, bytes) = item?;
            decode(&key, &bytes)
        }))
    }

    fn dead_letters(&self, recipient: Option<&str>) -> Rows<'_, DeadLetterRecord> {
        let prefix = recipient.map_or(vec![keys::DEAD_LETTER], keys::dead_letter_prefix);
        Box::new(self.scan_prefix(&prefix).map(|item| {
            let (key, bytes) = item?;
            decode(&key, &bytes)
        }))
    }

    fn dead_letter(
        &self,
        document_id: &str,
        recipient: &str,
    ) -> Result<Option<DeadLetterRecord>, StoreError> {
        self.decoded(&keys::dead_letter(recipient, document_id))
    }

    fn pending_sends(&self, sender: &str, max: usize) -> Result<usize, StoreError> {
        let backlog = self.backlog.lock().unwrap_or_else(|p| p.into_inner());
        let count = backlog.get(sender).copied().unwrap_or(0);
        Ok(usize::try_from(count).unwrap_or(usize::MAX).min(max))
    }

    fn blob(&self, sha256: &[u8; 32]) -> Result<Option<BlobRecord>, StoreError> {
        Ok(self
            .decoded::<StoredBlob>(&keys::blob(sha256))?
            .map(StoredBlob::into_record))
    }

    fn blob_chunks(&self, sha256: &[u8; 32]) -> Result<Rows<'_, Vec<u8>>, StoreError> {
        let record: StoredBlob =
            self.decoded(&keys::blob(sha256))?
                .ok_or_else(|| StoreError::NotFound {
                    what: format!("attachment {}", hex::encode(sha256)),
                })?;
        Ok(Box::new(record.extents.into_iter().map(|extent| {
            self.payload
                .read(&extent)
                .map_err(crate::error::payload_read_error)
        })))
    }

    fn check_room(&self) -> Result<(), StoreError> {
        Inner::check_room(self)
    }

    fn put_chunk(&self, data: &[u8]) -> Result<Extent, StoreError> {
        // A full disk refuses this send; nothing else is harmed.
        self.payload
            .append(data)
            .map(Extent::Log)
            .map_err(crate::error::payload_error)
    }

    fn discard_chunks(&self, extents: &[Extent]) {
        let extents: Vec<payload::Extent> = extents
            .iter()
            .filter_map(|extent| match extent {
                Extent::Log(extent) => Some(*extent),
                Extent::Row(_) => None,
            })
            .collect();
        self.payload.release(&extents);
    }

    fn audit_head(&self) -> Result<AuditHead, StoreError> {
        match self.get(keys::META_AUDIT_HEAD)? {
            Some(bytes) => AuditHead::decode(&bytes).ok_or_else(|| StoreError::Corrupt {
                key: "m:audit_head".into(),
                reason: "not 40 bytes".into(),
            }),
            None => Ok(AuditHead::default()),
        }
    }

    fn audit_entries(&self, from_seq: u64) -> Rows<'_, AuditEntry> {
        Box::new(
            self.layers
                .range(
                    &self.main,
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
                }),
        )
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        // Blocks the files hold, not their lengths: the payload log gives
        // back what left for archives as holes.
        let files = |dir: &Path| -> u64 {
            use std::os::unix::fs::MetadataExt;
            std::fs::read_dir(dir)
                .map(|entries| {
                    entries
                        .flatten()
                        .filter_map(|entry| entry.metadata().ok())
                        .map(|metadata| metadata.blocks() * 512)
                        .sum()
                })
                .unwrap_or(0)
        };
        Ok(self.db.size_on_disk()?
            + files(&self.path.join(journal::JOURNAL_DIR))
            + files(self.payload.dir()))
    }

    fn id_index_bytes(&self) -> Option<u64> {
        Some(self.ids.size_bytes())
    }

    fn archived(&self, document_id: &str) -> Result<Option<ArchivedDocument>, StoreError> {
        self.archived_of(document_id)
    }

    fn archived_documents(&self) -> Rows<'_, ArchivedDocument> {
        self.archived_rows()
    }

    fn retained_figures(&self) -> Result<BTreeMap<(String, u32), RetainedFigures>, StoreError> {
        self.retained_rows()
    }

    fn retention_candidates(
        &self,
        cutoff_unix_ms: i64,
        after: Option<(i64, String)>,
        limit: usize,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        self.candidates(cutoff_unix_ms, after, limit)
    }

    fn archive_files(&self) -> Result<Vec<ArchiveFile>, StoreError> {
        self.archive_file_rows()
    }
}
