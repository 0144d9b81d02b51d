//! The single writer: every change to the main tree goes through one thread.
//! A group of commands is staged in memory (later commands read what earlier
//! ones staged), appended to the journal as one record and made durable with
//! one sync before anyone is answered (group commit); the tree takes it later,
//! in a checkpoint. A command that fails stages nothing, so no half of it is
//! ever written.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use truc_domain::{DocumentId, Status};

use crate::audit::{sha256, AuditEntry, AuditEvent, AuditHead, AuditKind};
use crate::checkpoint::Policy;
use crate::error::StoreError;
use crate::keys;
use crate::marker::CommitMarker;
use crate::records::{
    decode, decode_counter, encode, encode_counter, envelope_bytes, BlobRecord, DeliveryRecord,
    DocumentRecord, LinkRecord, QueueItem, StatusEntry, StoredDocument, WatchRecord,
};
use crate::Inner;

mod watch;
pub(crate) use watch::WatchCommand;
pub use watch::{AcceptDeadlines, LapseOutcome, EXPIRED_CODE, HUB_ACTOR, OVERDUE_CODE};

/// One attachment of a send, to be named when it is accepted: its bytes
/// already appended to the payload log (large ones, streamed), or in memory
/// for the writer to append and carry in the journal (small ones).
#[derive(Clone, Debug)]
pub struct PendingBlob {
    pub sha256: [u8; 32],
    pub size_bytes: u64,
    /// Where its bytes are, in order (empty when `inline`).
    pub extents: Vec<crate::Extent>,
    pub inline: Option<Vec<u8>>,
}

#[derive(Debug)]
pub enum AcceptOutcome {
    Accepted(DocumentRecord),
    /// The same document was accepted before: here is the original.
    Duplicate(DocumentRecord),
}

#[derive(Debug, PartialEq, Eq)]
pub enum AckOutcome {
    /// A delivery arrived; the entry was recorded.
    Arrived(StatusEntry),
    NoticeDone,
    /// Nothing waits at that sequence number (already acknowledged), or the
    /// delivery's arrival was already recorded by the recipient's first move.
    AlreadyDone,
}

/// One status move asked of the store.
#[derive(Clone, Debug)]
pub struct MoveRequest {
    pub document_id: String,
    pub recipient: String,
    pub entry: StatusEntry,
}

pub(crate) type MoveResults = Vec<Result<StatusEntry, StoreError>>;

// Commands are moved once through a channel; boxing the large variant would
// only add an allocation per command.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Command {
    Accept {
        document: DocumentRecord,
        blobs: Vec<PendingBlob>,
        reply: oneshot::Sender<Result<AcceptOutcome, StoreError>>,
    },
    Ack {
        agency: String,
        queue_seqs: Vec<u64>,
        at_unix_ms: i64,
        reply: oneshot::Sender<Result<Vec<AckOutcome>, StoreError>>,
    },
    Move {
        moves: Vec<MoveRequest>,
        reply: oneshot::Sender<Result<MoveResults, StoreError>>,
    },
    AcceptPlanned {
        document: DocumentRecord,
        blobs: Vec<PendingBlob>,
        plan: AcceptPlan,
        reply: oneshot::Sender<PlannedAcceptResult>,
    },
    /// Deadlines, expiry and dead letters (`writer/watch.rs`).
    Watch(WatchCommand),
    /// Everything written so far into the tree, and the journal emptied.
    Checkpoint {
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

impl Command {
    /// Roughly the payload bytes the command's journal record will carry.
    fn carried_bytes(&self) -> usize {
        let sized = |document: &DocumentRecord, blobs: &[PendingBlob]| {
            document.header_bytes.len()
                + document.signature.len()
                + document.sender_certificate.len()
                + blobs
                    .iter()
                    .map(|blob| blob.inline.as_ref().map_or(0, Vec::len))
                    .sum::<usize>()
        };
        match self {
            Command::Accept {
                document, blobs, ..
            }
            | Command::AcceptPlanned {
                document, blobs, ..
            } => sized(document, blobs),
            Command::Watch(WatchCommand::Accept {
                document, blobs, ..
            }) => sized(document, blobs),
            _ => 0,
        }
    }
}

/// A reply held back until the group it belongs to is flushed.
#[allow(clippy::large_enum_variant)]
enum Pending {
    Accept(
        oneshot::Sender<Result<AcceptOutcome, StoreError>>,
        Result<AcceptOutcome, StoreError>,
    ),
    Ack(
        oneshot::Sender<Result<Vec<AckOutcome>, StoreError>>,
        Result<Vec<AckOutcome>, StoreError>,
    ),
    Move(
        oneshot::Sender<Result<MoveResults, StoreError>>,
        Result<MoveResults, StoreError>,
    ),
    AcceptPlanned(oneshot::Sender<PlannedAcceptResult>, PlannedAcceptResult),
    Watch(watch::WatchPending),
}

impl Pending {
    fn fail(self, error: impl Fn() -> StoreError) {
        match self {
            Pending::Accept(reply, _) => drop(reply.send(Err(error()))),
            Pending::Ack(reply, _) => drop(reply.send(Err(error()))),
            Pending::Move(reply, _) => drop(reply.send(Err(error()))),
            Pending::AcceptPlanned(reply, _) => drop(reply.send(Err(error()))),
            Pending::Watch(finish) => finish(Some(error().to_string())),
        }
    }

    fn answer(self) {
        match self {
            Pending::Accept(reply, result) => drop(reply.send(result)),
            Pending::Ack(reply, result) => drop(reply.send(result)),
            Pending::Move(reply, result) => drop(reply.send(result)),
            Pending::AcceptPlanned(reply, result) => drop(reply.send(result)),
            Pending::Watch(finish) => finish(None),
        }
    }
}

/// Most audit entries in one stored block.
const AUDIT_BLOCK_ENTRIES_MAX: usize = 128;
/// Most deadlines in one stored block.
const WATCH_BLOCK_ENTRIES_MAX: usize = 512;

/// A group stops taking commands once the payload bytes they bring (which
/// its journal record carries) reach this: records, and the memory holding
/// them, stay a few MiB.
const GROUP_CARRIED_BYTES_MAX: usize = 8 << 20;

/// Most commands folded into one flush.
const GROUP_COMMANDS_MAX: usize = 2048;

/// Key → new value (`None`: removed), not yet in sled.
type Changes = HashMap<Vec<u8>, Option<Vec<u8>>>;

/// The changes of one operation, read through to the group's and then to sled.
/// Dropped without `commit` on failure, so a refused operation writes nothing.
struct Op {
    changes: Changes,
    /// The queue sequence number to return to if the operation fails.
    seq_before: u64,
    /// What the operation adds to the audit log; chained only on commit, so
    /// a refused operation leaves no entry and no gap.
    audit: Vec<AuditEvent>,
    /// Deadlines it sets, written with the group's watch blocks.
    watches: Vec<WatchRecord>,
    /// Payload bytes it appended, carried by the group's journal record.
    payload: Vec<(crate::Extent, Vec<u8>)>,
    /// What it does to senders' backlogs: +1 per delivery queued, −1 per
    /// delivery item taken from a queue.
    backlog: Vec<(String, i64)>,
}

impl Op {
    /// A delivery of `document_id` queued (+1) or taken from its queue (−1).
    fn backlog(&mut self, document_id: &str, change: i64) {
        let sender = document_id.split(',').next().unwrap_or_default();
        self.backlog.push((sender.to_owned(), change));
    }
}

/// The audit event of a status entry recorded on a delivery.
fn status_event(document_id: &str, recipient: &str, entry: &StatusEntry) -> AuditEvent {
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

/// Entries a sender will be told about, one notice per delivery per command.
#[derive(Default)]
struct Notices {
    order: Vec<(String, String, String)>,
    entries: HashMap<(String, String), Vec<StatusEntry>>,
}

impl Notices {
    fn add(&mut self, sender: &str, document_id: &str, recipient: &str, entry: StatusEntry) {
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

/// One delivery within its document's record, as read for a change.
struct DeliverySlot {
    key: Vec<u8>,
    deliveries: Vec<DeliveryRecord>,
    index: usize,
}

impl DeliverySlot {
    fn delivery(&mut self) -> &mut DeliveryRecord {
        &mut self.deliveries[self.index]
    }

    /// Stages the record with the changed delivery.
    fn stage(self, op: &mut Op) {
        op.changes.insert(self.key, Some(encode(&self.deliveries)));
    }
}

/// One acknowledged queue item: its outcome, and the delivery (document id,
/// recipient) it was, if it was one.
pub(super) type Acked = (AckOutcome, Option<(String, String)>);

pub(crate) struct Writer {
    inner: Arc<Inner>,
    next_queue_seq: u64,
    /// The audit chain's last entry, staged or written.
    audit_head: AuditHead,
    /// The current group's committed operations, not yet applied to sled.
    staged: Changes,
    /// Groups written so far, stored with each group and then in the marker.
    commit_seq: u64,
    marker: CommitMarker,
    policy: Policy,
    /// The checkpoint thread, joined after its last checkpoint when the writer ends.
    checkpointer: Option<std::thread::JoinHandle<()>>,
    /// The current group's audit entries, written as blocks.
    group_audit: Vec<AuditEntry>,
    /// The current group's deadlines, written as blocks by second.
    group_watches: Vec<WatchRecord>,
    /// The current group's carried payload bytes.
    group_payload: Vec<(crate::Extent, Vec<u8>)>,
    /// What the current group does to each sender's backlog.
    group_backlog: HashMap<String, i64>,
    /// Whether the current group may store new documents (see `room_for_documents`).
    room: Option<Result<(), String>>,
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

impl Writer {
    pub(crate) fn new(
        inner: Arc<Inner>,
        marker: CommitMarker,
        policy: Policy,
        checkpointer: std::thread::JoinHandle<()>,
    ) -> Result<Self, StoreError> {
        let meta_u64 = |key: &[u8]| -> Result<Option<u64>, StoreError> {
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
        };
        let next_queue_seq = meta_u64(keys::META_NEXT_SEQ)?.unwrap_or(1);
        let commit_seq = meta_u64(keys::META_COMMIT_SEQ)?.unwrap_or(0);
        let audit_head = match inner.get(keys::META_AUDIT_HEAD)? {
            Some(bytes) => AuditHead::decode(&bytes).ok_or_else(|| StoreError::Corrupt {
                key: "m:audit_head".into(),
                reason: "not 40 bytes".into(),
            })?,
            None => AuditHead::default(),
        };
        Ok(Self {
            inner,
            next_queue_seq,
            commit_seq,
            marker,
            policy,
            checkpointer: Some(checkpointer),
            group_audit: Vec::new(),
            group_watches: Vec::new(),
            group_payload: Vec::new(),
            group_backlog: HashMap::new(),
            audit_head,
            staged: Changes::new(),
            room: None,
        })
    }

    pub(crate) fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut group = Vec::with_capacity(GROUP_COMMANDS_MAX);
        while let Some(first) = commands.blocking_recv() {
            let mut carried = first.carried_bytes();
            group.push(first);
            while group.len() < GROUP_COMMANDS_MAX && carried < GROUP_CARRIED_BYTES_MAX {
                match commands.try_recv() {
                    Ok(command) => {
                        carried += command.carried_bytes();
                        group.push(command);
                    }
                    Err(_) => break,
                }
            }
            self.commit_group(&mut group);
        }
        // Every store handle is gone: a last checkpoint, so that the tree
        // holds everything and the next open has nothing to read back.
        self.inner.checkpoints.stop();
        if let Some(checkpointer) = self.checkpointer.take() {
            let _ = checkpointer.join();
        }
    }

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

    fn commit_group(&mut self, group: &mut Vec<Command>) {
        let mut pending = Vec::with_capacity(group.len());
        let mut checkpoints = Vec::new();
        let mut woken = BTreeSet::new();
        let failed = self.inner.failed.load(std::sync::atomic::Ordering::Acquire);
        let failed_full = self
            .inner
            .failed_full
            .load(std::sync::atomic::Ordering::Acquire);
        // Asked once per group: a new document waits for room, the rest use the reserve.
        self.room = None;
        for command in group.drain(..) {
            if failed {
                let failure = || match self.inner.check_room() {
                    Err(full) if failed_full => full,
                    _ => StoreError::Corrupt {
                        key: "(store)".into(),
                        reason: "an earlier write failed; restart the hub".into(),
                    },
                };
                match command {
                    Command::Accept { reply, .. } => drop(reply.send(Err(failure()))),
                    Command::Ack { reply, .. } => drop(reply.send(Err(failure()))),
                    Command::Move { reply, .. } => drop(reply.send(Err(failure()))),
                    Command::AcceptPlanned { reply, .. } => drop(reply.send(Err(failure()))),
                    Command::Watch(command) => command.refuse(failure()),
                    Command::Checkpoint { reply } => drop(reply.send(Err(failure()))),
                }
                continue;
            }
            pending.push(match command {
                Command::Checkpoint { reply } => {
                    // Once the group is written, so that it covers the group too.
                    checkpoints.push(reply);
                    continue;
                }
                Command::Accept {
                    document,
                    blobs,
                    reply,
                } => {
                    let result = self.accept(document, &blobs, &mut woken);
                    Pending::Accept(reply, result)
                }
                Command::Ack {
                    agency,
                    queue_seqs,
                    at_unix_ms,
                    reply,
                } => Pending::Ack(
                    reply,
                    self.ack_all(&agency, &queue_seqs, at_unix_ms, &mut woken),
                ),
                Command::Move { moves, reply } => {
                    Pending::Move(reply, Ok(self.move_all(moves, &mut woken)))
                }
                Command::AcceptPlanned {
                    document,
                    blobs,
                    plan,
                    reply,
                } => {
                    let result = self.accept_planned(document, &blobs, &plan, &mut woken);
                    Pending::AcceptPlanned(reply, result)
                }
                Command::Watch(command) => Pending::Watch(self.watch_command(command, &mut woken)),
            });
        }
        if pending.is_empty() && checkpoints.is_empty() {
            return;
        }
        let started = std::time::Instant::now();
        match self.write_staged() {
            Ok(()) => {
                if !pending.is_empty() {
                    self.inner
                        .stats
                        .record_flush(pending.len(), started.elapsed());
                    crate::metrics::group_commit(pending.len(), started.elapsed());
                }
                for reply in pending {
                    reply.answer();
                }
                for agency in woken {
                    self.inner.notifier(&agency).notify_one();
                }
                if !checkpoints.is_empty() {
                    let result = self.checkpoint_all();
                    for reply in checkpoints {
                        let _ = reply.send(match &result {
                            Ok(()) => Ok(()),
                            Err(error) => Err(StoreError::Corrupt {
                                key: "(checkpoint)".into(),
                                reason: error.to_string(),
                            }),
                        });
                    }
                }
            }
            Err(error) => {
                tracing::error!(%error, "write failed; refusing further writes until restart");
                // sled keeps the error and fails every later write of this process.
                if crate::error::is_storage_full(&error) {
                    self.inner
                        .failed_full
                        .store(true, std::sync::atomic::Ordering::Release);
                }
                self.inner
                    .failed
                    .store(true, std::sync::atomic::Ordering::Release);
                let message = error.to_string();
                let full = crate::error::is_storage_full(&error);
                for reply in pending {
                    reply.fail(|| {
                        let io = std::io::Error::new(
                            if full {
                                std::io::ErrorKind::StorageFull
                            } else {
                                std::io::ErrorKind::Other
                            },
                            message.clone(),
                        );
                        StoreError::from(sled::Error::Io(io))
                    });
                }
                for reply in checkpoints {
                    let _ = reply.send(Err(StoreError::Corrupt {
                        key: "(checkpoint)".into(),
                        reason: message.clone(),
                    }));
                }
            }
        }
    }

    /// Whether a new document may be stored now, asked once per group.
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

    /// Makes the group's changes durable (the attachments they name, then
    /// one journal record) and lays them over the tree for readers.
    fn write_staged(&mut self) -> Result<(), sled::Error> {
        if self.staged.is_empty() && self.group_audit.is_empty() && self.group_watches.is_empty() {
            return Ok(());
        }
        self.inner
            .checkpoints
            .wait_for_room(&self.inner, &self.policy);
        let commit_seq = self.commit_seq + 1;
        // Blocks small enough that sled keeps them in its pages (it writes
        // values over a quarter of a segment to files of their own).
        for block in self.group_audit.chunks(AUDIT_BLOCK_ENTRIES_MAX) {
            let last = block.last().expect("chunks are never empty");
            self.staged
                .insert(keys::audit(last.seq).to_vec(), Some(encode(&block)));
        }
        self.group_audit.clear();
        self.stage_watch_blocks(commit_seq);
        self.staged.insert(
            keys::META_NEXT_SEQ.to_vec(),
            Some(self.next_queue_seq.to_be_bytes().to_vec()),
        );
        self.staged.insert(
            keys::META_COMMIT_SEQ.to_vec(),
            Some(commit_seq.to_be_bytes().to_vec()),
        );
        self.staged.insert(
            keys::META_AUDIT_HEAD.to_vec(),
            Some(self.audit_head.encode().to_vec()),
        );
        self.inner.payload.sync().map_err(sled::Error::Io)?;
        self.inner
            .journal()
            .append(
                commit_seq,
                self.staged
                    .iter()
                    .map(|(key, value)| (key.as_slice(), value.as_deref())),
                &self.group_payload,
            )
            .map_err(sled::Error::Io)?;
        self.group_payload.clear();
        self.inner.layers.merge(self.staged.drain(), commit_seq);
        if !self.group_backlog.is_empty() {
            let mut counts = self.inner.backlog.lock().unwrap_or_else(|p| p.into_inner());
            for (sender, change) in self.group_backlog.drain() {
                let count = counts.entry(sender.into_bytes()).or_insert(0);
                *count = count.saturating_add_signed(change);
            }
        }
        self.commit_seq = commit_seq;
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

    /// The group's deadlines as blocks, one per second of deadline, each
    /// under its latest deadline (so none is read before it is due).
    fn stage_watch_blocks(&mut self, commit_seq: u64) {
        if self.group_watches.is_empty() {
            return;
        }
        let mut blocks: std::collections::BTreeMap<i64, Vec<WatchRecord>> = Default::default();
        for watch in self.group_watches.drain(..) {
            let second = watch.deadline_unix_ms.div_euclid(1000);
            blocks.entry(second).or_default().push(watch);
        }
        let blocks = blocks
            .into_values()
            .flat_map(|watches| {
                watches
                    .chunks(WATCH_BLOCK_ENTRIES_MAX)
                    .map(<[WatchRecord]>::to_vec)
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>();
        for (index, watches) in blocks.into_iter().enumerate() {
            let latest = watches
                .iter()
                .map(|w| w.deadline_unix_ms)
                .max()
                .unwrap_or(0);
            self.staged.insert(
                keys::watch_block(latest, commit_seq, index as u32),
                Some(encode(&watches)),
            );
        }
    }

    fn begin(&self) -> Op {
        Op {
            changes: Changes::new(),
            seq_before: self.next_queue_seq,
            audit: Vec::new(),
            watches: Vec::new(),
            payload: Vec::new(),
            backlog: Vec::new(),
        }
    }

    fn commit(&mut self, op: Op) {
        self.staged.extend(op.changes);
        for event in op.audit {
            self.append_audit(event);
        }
        self.group_watches.extend(op.watches);
        self.group_payload.extend(op.payload);
        for (sender, change) in op.backlog {
            *self.group_backlog.entry(sender).or_insert(0) += change;
        }
    }

    /// Chains one entry after the head; `write_staged` writes the head with
    /// the group's batch.
    pub(super) fn append_audit(&mut self, event: AuditEvent) {
        let entry = AuditEntry::chain(event, self.audit_head.seq + 1, self.audit_head.sha256);
        self.audit_head = AuditHead {
            seq: entry.seq,
            sha256: entry.sha256,
        };
        self.group_audit.push(entry);
    }

    fn abandon(&mut self, op: Op) {
        self.next_queue_seq = op.seq_before;
        let appended: Vec<crate::Extent> = op.payload.iter().map(|(extent, _)| *extent).collect();
        self.inner.payload.release(&appended);
    }

    /// The value of `key` as the operation sees it: its own changes, then the
    /// group's, then sled.
    fn read(&self, op: &Op, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(value) = op.changes.get(key) {
            return Ok(value.clone());
        }
        if let Some(value) = self.staged.get(key) {
            return Ok(value.clone());
        }
        Ok(self.inner.get(key)?.map(|value| value.to_vec()))
    }

    fn take_seq(&mut self) -> u64 {
        let seq = self.next_queue_seq;
        self.next_queue_seq += 1;
        seq
    }

    fn bump_counter(
        &self,
        op: &mut Op,
        agency: &str,
        date_key: u32,
        sent: u64,
        received: u64,
    ) -> Result<(), StoreError> {
        let key = keys::counter(agency, date_key);
        let (old_sent, old_received) = self
            .read(op, &key)?
            .map(|bytes| decode_counter(&bytes))
            .unwrap_or((0, 0));
        op.changes.insert(
            key,
            Some(encode_counter(old_sent + sent, old_received + received).to_vec()),
        );
        Ok(())
    }

    fn accept(
        &mut self,
        document: DocumentRecord,
        blobs: &[PendingBlob],
        woken: &mut BTreeSet<String>,
    ) -> Result<AcceptOutcome, StoreError> {
        let mut op = self.begin();
        match self.stage_accept(&mut op, &document, blobs) {
            Ok(None) => {
                self.commit(op);
                woken.extend(document.recipients.iter().cloned());
                Ok(AcceptOutcome::Accepted(document))
            }
            Ok(Some(original)) => {
                self.abandon(op);
                Ok(AcceptOutcome::Duplicate(original))
            }
            Err(error) => {
                self.abandon(op);
                Err(error)
            }
        }
    }

    /// Stages a new document; returns the original instead if it was accepted before.
    fn stage_accept(
        &mut self,
        op: &mut Op,
        document: &DocumentRecord,
        blobs: &[PendingBlob],
    ) -> Result<Option<DocumentRecord>, StoreError> {
        let document_key = keys::document(&document.document_id);
        if let Some(bytes) = self.read(op, &document_key)? {
            let original: StoredDocument = decode(&document_key, &bytes)?;
            return if original.content_sha256 == document.content_sha256 {
                Ok(Some(self.load_document(op, original)?))
            } else {
                Err(StoreError::AlreadyExists {
                    document_id: original.document_id,
                    accepted_at_unix_ms: original.accepted_at_unix_ms,
                })
            };
        }
        // Only now: a resend of a stored document needs no room.
        self.room_for_documents()?;
        for blob in blobs {
            let blob_key = keys::blob(&blob.sha256);
            // Stored meanwhile by another send: this upload's copy stays unused.
            if self.read(op, &blob_key)?.is_none() {
                let extents = match &blob.inline {
                    Some(bytes) => vec![self.carry(op, bytes.clone())?],
                    None => blob.extents.clone(),
                };
                op.changes.insert(
                    blob_key,
                    Some(encode(&BlobRecord {
                        size_bytes: blob.size_bytes,
                        extents,
                    })),
                );
            }
        }
        let mut deliveries = Vec::with_capacity(document.recipients.len());
        for recipient in &document.recipients {
            let queue_seq = self.take_seq();
            deliveries.push(DeliveryRecord {
                document_id: document.document_id.clone(),
                recipient: recipient.clone(),
                queue_seq,
                history: Vec::new(),
            });
            op.changes.insert(
                keys::queue(recipient, queue_seq),
                Some(encode(&QueueItem::Delivery {
                    document_id: document.document_id.clone(),
                    recipient: recipient.clone(),
                })),
            );
            op.backlog(&document.document_id, 1);
        }
        op.changes.insert(
            keys::deliveries(&document.document_id),
            Some(encode(&deliveries)),
        );
        self.bump_counter(op, &document.sender, document.date_key, 1, 0)?;
        let certificate_sha256 = sha256(&document.sender_certificate);
        let certificate_key = keys::certificate(&certificate_sha256);
        if self.read(op, &certificate_key)?.is_none() {
            let extent = self.carry(op, document.sender_certificate.clone())?;
            op.changes.insert(certificate_key, Some(encode(&extent)));
        }
        let envelope = self.carry(op, envelope_bytes(document))?;
        op.changes.insert(
            document_key,
            Some(encode(&StoredDocument::new(
                document,
                envelope,
                certificate_sha256,
            ))),
        );
        // The send comes before what it did to earlier documents (a recall's
        // entries, staged first).
        op.audit.insert(
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
                certificate_sha256: Some(certificate_sha256),
            },
        );
        Ok(None)
    }

    /// Appends small payload bytes the group's journal record carries.
    fn carry(&self, op: &mut Op, bytes: Vec<u8>) -> Result<crate::Extent, StoreError> {
        let extent = self
            .inner
            .payload
            .append_carried(&bytes)
            .map_err(crate::error::payload_error)?;
        op.payload.push((extent, bytes));
        Ok(extent)
    }

    /// A stored document with its envelope and certificate, as the
    /// operation sees them.
    fn load_document(&self, op: &Op, stored: StoredDocument) -> Result<DocumentRecord, StoreError> {
        let key = keys::certificate(&stored.certificate_sha256);
        let extent: crate::Extent = decode(
            &key,
            &self.read(op, &key)?.ok_or_else(|| StoreError::NotFound {
                what: format!("certificate of {}", stored.document_id),
            })?,
        )?;
        self.inner.document_with(stored, extent)
    }

    /// Acknowledges each item on its own: one that fails fails the command,
    /// but those before it stand, as if they had come in their own messages.
    fn ack_all(
        &mut self,
        agency: &str,
        queue_seqs: &[u64],
        at_unix_ms: i64,
        woken: &mut BTreeSet<String>,
    ) -> Result<Vec<AckOutcome>, StoreError> {
        let acked = self.ack_items(agency, queue_seqs, at_unix_ms, woken)?;
        Ok(acked.into_iter().map(|(outcome, _)| outcome).collect())
    }

    /// [`Writer::ack_all`], each outcome with the delivery (document id,
    /// recipient) the item was, if it was one.
    pub(super) fn ack_items(
        &mut self,
        agency: &str,
        queue_seqs: &[u64],
        at_unix_ms: i64,
        woken: &mut BTreeSet<String>,
    ) -> Result<Vec<Acked>, StoreError> {
        let mut notices = Notices::default();
        let mut outcomes = Vec::with_capacity(queue_seqs.len());
        let mut failure = None;
        for &queue_seq in queue_seqs {
            let mut op = self.begin();
            match self.stage_ack(&mut op, agency, queue_seq, at_unix_ms, &mut notices) {
                Ok(acked) => {
                    self.commit(op);
                    outcomes.push(acked);
                }
                Err(error) => {
                    self.abandon(op);
                    failure = Some(error);
                    break;
                }
            }
        }
        self.queue_notices(notices, woken);
        match failure {
            Some(error) => Err(error),
            None => Ok(outcomes),
        }
    }

    fn stage_ack(
        &mut self,
        op: &mut Op,
        agency: &str,
        queue_seq: u64,
        at_unix_ms: i64,
        notices: &mut Notices,
    ) -> Result<Acked, StoreError> {
        let queue_key = keys::queue(agency, queue_seq);
        let Some(bytes) = self.read(op, &queue_key)? else {
            return Ok((AckOutcome::AlreadyDone, None));
        };
        let item: QueueItem = decode(&queue_key, &bytes)?;
        op.changes.insert(queue_key, None);
        match item {
            QueueItem::Notice { .. } | QueueItem::Notices { .. } => {
                Ok((AckOutcome::NoticeDone, None))
            }
            QueueItem::Delivery {
                document_id,
                recipient,
            } => {
                op.backlog(&document_id, -1);
                let (mut slot, sender, date_key) =
                    self.read_delivery(op, &document_id, &recipient)?;
                let delivery = slot.delivery();
                if !delivery.history.is_empty() {
                    // The recipient's first move already recorded the arrival.
                    return Ok((AckOutcome::AlreadyDone, Some((document_id, recipient))));
                }
                let entry = StatusEntry {
                    code: Status::Arrived.code(),
                    at_unix_ms,
                    actor: agency.to_owned(),
                    reason: String::new(),
                };
                self.bump_counter(op, &recipient, date_key, 0, 1)?;
                delivery.history.push(entry.clone());
                slot.stage(op);
                op.audit
                    .push(status_event(&document_id, &recipient, &entry));
                notices.add(&sender, &document_id, &recipient, entry.clone());
                Ok((AckOutcome::Arrived(entry), Some((document_id, recipient))))
            }
        }
    }

    /// Applies each move on its own, in order; a refused move stages nothing.
    fn move_all(&mut self, moves: Vec<MoveRequest>, woken: &mut BTreeSet<String>) -> MoveResults {
        let mut notices = Notices::default();
        let mut results = Vec::with_capacity(moves.len());
        for request in moves {
            let mut op = self.begin();
            let mut entries = Vec::with_capacity(2);
            match self.stage_move(&mut op, &request, &mut entries) {
                Ok(sender) => {
                    self.commit(op);
                    for entry in entries {
                        notices.add(&sender, &request.document_id, &request.recipient, entry);
                    }
                    results.push(Ok(request.entry));
                }
                Err(error) => {
                    self.abandon(op);
                    results.push(Err(error));
                }
            }
        }
        self.queue_notices(notices, woken);
        results
    }

    /// Stages one move (and the arrival it implies, if the delivery is still
    /// queued); returns the sender to tell.
    fn stage_move(
        &mut self,
        op: &mut Op,
        request: &MoveRequest,
        entries: &mut Vec<StatusEntry>,
    ) -> Result<String, StoreError> {
        let (mut slot, sender, date_key) =
            self.read_delivery(op, &request.document_id, &request.recipient)?;
        let delivery = slot.delivery();
        let current = delivery.state()?;
        let target = Status::from_code(request.entry.code)?;
        // The actor is the recipient, or the relay that holds the recipient's
        // deliveries: either way the one whose node receives it.
        if current.is_none() && target != Status::Arrived {
            // A recipient that moves a delivery holds it, even if the
            // acknowledgement from its node has not been written yet. The
            // queue item stays: the node still gets the document, and its
            // acknowledgement then finds the arrival recorded.
            Status::check_move(Some(Status::Arrived), target, &request.entry.reason)?;
            let arrival = StatusEntry {
                code: Status::Arrived.code(),
                reason: String::new(),
                ..request.entry.clone()
            };
            self.bump_counter(op, &request.recipient, date_key, 0, 1)?;
            delivery.history.push(arrival.clone());
            op.audit.push(status_event(
                &request.document_id,
                &request.recipient,
                &arrival,
            ));
            entries.push(arrival);
        } else {
            Status::check_move(current, target, &request.entry.reason)?;
        }
        delivery.history.push(request.entry.clone());
        op.audit.push(status_event(
            &request.document_id,
            &request.recipient,
            &request.entry,
        ));
        entries.push(request.entry.clone());
        slot.stage(op);
        Ok(sender)
    }

    /// Every delivery of a document, as the operation sees them.
    fn read_deliveries(
        &self,
        op: &Op,
        document_id: &str,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let key = keys::deliveries(document_id);
        match self.read(op, &key)? {
            Some(bytes) => decode(&key, &bytes),
            None => Ok(Vec::new()),
        }
    }

    /// One delivery of a document, if there is one to `recipient`.
    fn find_delivery(
        &self,
        op: &Op,
        document_id: &str,
        recipient: &str,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        Ok(self
            .read_deliveries(op, document_id)?
            .into_iter()
            .find(|delivery| delivery.recipient == recipient))
    }

    /// Stages a changed delivery in its document's record.
    fn put_delivery(&self, op: &mut Op, delivery: DeliveryRecord) -> Result<(), StoreError> {
        let mut deliveries = self.read_deliveries(op, &delivery.document_id)?;
        let key = keys::deliveries(&delivery.document_id);
        match deliveries
            .iter_mut()
            .find(|stored| stored.recipient == delivery.recipient)
        {
            Some(stored) => *stored = delivery,
            None => deliveries.push(delivery),
        }
        op.changes.insert(key, Some(encode(&deliveries)));
        Ok(())
    }

    /// A delivery in its document's record, with that document's sender
    /// and date: read and decoded once, changed in place, staged once.
    fn read_delivery(
        &self,
        op: &Op,
        document_id: &str,
        recipient: &str,
    ) -> Result<(DeliverySlot, String, u32), StoreError> {
        let deliveries = self.read_deliveries(op, document_id)?;
        let index = deliveries
            .iter()
            .position(|delivery| delivery.recipient == recipient)
            .ok_or_else(|| StoreError::NotFound {
                what: format!("delivery of {document_id} to {recipient}"),
            })?;
        let id: DocumentId = document_id.parse().map_err(|_| StoreError::Corrupt {
            key: format!("deliveries of {document_id}"),
            reason: "stored document id does not parse".into(),
        })?;
        let sender = id.sender().to_string();
        let date_key = id.date().ordinal_key();
        Ok((
            DeliverySlot {
                key: keys::deliveries(document_id),
                deliveries,
                index,
            },
            sender,
            date_key,
        ))
    }

    /// Queues one notice per delivery for its sender, with every entry the
    /// command recorded on it.
    fn queue_notices(&mut self, mut notices: Notices, woken: &mut BTreeSet<String>) {
        for (sender, document_id, recipient) in std::mem::take(&mut notices.order) {
            let entries = notices
                .entries
                .remove(&(document_id.clone(), recipient.clone()))
                .unwrap_or_default();
            let seq = self.take_seq();
            self.staged.insert(
                keys::queue(&sender, seq),
                Some(encode(&QueueItem::Notices {
                    document_id,
                    recipient,
                    entries,
                })),
            );
            woken.insert(sender);
        }
    }
}

/// How an accepted document reaches its recipients, and what it asks of
/// earlier documents of the same sender.
#[derive(Clone, Debug, Default)]
pub struct AcceptPlan {
    /// Recipient → the agency whose queue carries its delivery, for the
    /// recipients served by a relay (LGSP); the others' own queues carry theirs.
    pub queue_owners: std::collections::BTreeMap<String, String>,
    /// A recall, update or replace of earlier documents.
    pub business: Option<BusinessRequest>,
}

/// A recall (business type 1), update (2) or replace (3) by the sender of
/// the documents it names. Only recipients of each earlier document on the
/// new one's list are affected.
#[derive(Clone, Debug)]
pub struct BusinessRequest {
    pub business_type: i32,
    pub references: Vec<String>,
}

/// What a business request did to one recipient's delivery of one earlier document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BusinessEffect {
    /// Not yet fetched: withdrawn at once (13 then 15), its queue item removed.
    Withdrawn,
    /// The recipient holds it: 13 recorded, its answer (15 or 16) awaited.
    Requested,
    /// Nothing recorded, and why (a final state, or a request already waiting).
    Unchanged { reason: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusinessOutcome {
    pub reference: String,
    pub recipient: String,
    pub effect: BusinessEffect,
}

pub(crate) type PlannedAcceptResult = Result<(AcceptOutcome, Vec<BusinessOutcome>), StoreError>;

impl Writer {
    /// [`Writer::accept`] with routes and a business request, all in one operation.
    pub(crate) fn accept_planned(
        &mut self,
        mut document: DocumentRecord,
        blobs: &[PendingBlob],
        plan: &AcceptPlan,
        woken: &mut BTreeSet<String>,
    ) -> PlannedAcceptResult {
        let mut op = self.begin();
        let mut notices = Notices::default();
        let mut outcomes = Vec::new();
        let document_key = keys::document(&document.document_id);
        // A resend changes nothing: the original's effects already stand.
        let resend = self.read(&op, &document_key)?.is_some();
        if !resend {
            if let Some(business) = &plan.business {
                if let Err(error) =
                    self.stage_business(&mut op, &document, business, &mut notices, &mut outcomes)
                {
                    self.abandon(op);
                    return Err(error);
                }
                // A recall tells nobody who never had the document.
                if business.business_type == 1 {
                    document.recipients.retain(|recipient| {
                        outcomes.iter().all(|o: &BusinessOutcome| {
                            o.recipient != *recipient || o.effect != BusinessEffect::Withdrawn
                        })
                    });
                }
            }
        }
        match self.stage_accept(&mut op, &document, blobs) {
            Ok(None) => {
                if let Err(error) = self.reroute_queue_items(&mut op, &document, plan) {
                    self.abandon(op);
                    return Err(error);
                }
                self.commit(op);
                woken.extend(
                    document
                        .recipients
                        .iter()
                        .map(|r| plan.queue_owners.get(r).unwrap_or(r).clone()),
                );
                self.queue_notices(notices, woken);
                Ok((AcceptOutcome::Accepted(document), outcomes))
            }
            Ok(Some(original)) => {
                self.abandon(op);
                Ok((AcceptOutcome::Duplicate(original), Vec::new()))
            }
            Err(error) => {
                self.abandon(op);
                Err(error)
            }
        }
    }

    /// Moves the queue items `stage_accept` put in each recipient's own queue
    /// into its relay's queue, keeping their sequence numbers.
    fn reroute_queue_items(
        &self,
        op: &mut Op,
        document: &DocumentRecord,
        plan: &AcceptPlan,
    ) -> Result<(), StoreError> {
        for recipient in &document.recipients {
            let Some(owner) = plan.queue_owners.get(recipient) else {
                continue;
            };
            if owner == recipient {
                continue;
            }
            let delivery = self
                .find_delivery(op, &document.document_id, recipient)?
                .ok_or_else(|| StoreError::NotFound {
                    what: format!("delivery of {} to {recipient}", document.document_id),
                })?;
            let item = op
                .changes
                .remove(&keys::queue(recipient, delivery.queue_seq))
                .flatten()
                .ok_or_else(|| StoreError::NotFound {
                    what: format!("queue item of {} to {recipient}", document.document_id),
                })?;
            op.changes
                .insert(keys::queue(owner, delivery.queue_seq), Some(item));
        }
        Ok(())
    }

    /// Records a business request on every earlier delivery it concerns, and
    /// the links between the documents both ways.
    fn stage_business(
        &mut self,
        op: &mut Op,
        document: &DocumentRecord,
        business: &BusinessRequest,
        notices: &mut Notices,
        outcomes: &mut Vec<BusinessOutcome>,
    ) -> Result<(), StoreError> {
        let at_unix_ms = document.accepted_at_unix_ms;
        let what = match business.business_type {
            1 => "recall",
            2 => "update",
            _ => "replace",
        };
        for reference in &business.references {
            let link = encode(&LinkRecord {
                business_type: business.business_type,
                earlier: reference.clone(),
                later: document.document_id.clone(),
            });
            op.changes.insert(
                keys::link(reference, &document.document_id),
                Some(link.clone()),
            );
            op.changes
                .insert(keys::link(&document.document_id, reference), Some(link));
            for recipient in &document.recipients {
                let Some(mut delivery) = self.find_delivery(op, reference, recipient)? else {
                    continue;
                };
                let request = StatusEntry {
                    code: Status::RecallRequested.code(),
                    at_unix_ms,
                    actor: document.sender.clone(),
                    reason: format!("{what}: {}", document.document_id),
                };
                let effect = match delivery.state()? {
                    None => {
                        self.remove_queued_delivery(op, reference, recipient, delivery.queue_seq)?;
                        let withdrawn = StatusEntry {
                            code: Status::RecallAgreed.code(),
                            at_unix_ms,
                            actor: document.sender.clone(),
                            reason: "withdrawn before it was fetched; nothing was delivered".into(),
                        };
                        for entry in [request, withdrawn] {
                            delivery.history.push(entry.clone());
                            op.audit.push(status_event(reference, recipient, &entry));
                            notices.add(&document.sender, reference, recipient, entry);
                        }
                        BusinessEffect::Withdrawn
                    }
                    Some(current) => match Status::check_request(current) {
                        Ok(()) => {
                            delivery.history.push(request.clone());
                            op.audit.push(status_event(reference, recipient, &request));
                            notices.add(&document.sender, reference, recipient, request);
                            BusinessEffect::Requested
                        }
                        Err(error) => BusinessEffect::Unchanged {
                            reason: error.to_string(),
                        },
                    },
                };
                if !matches!(effect, BusinessEffect::Unchanged { .. }) {
                    self.put_delivery(op, delivery)?;
                }
                outcomes.push(BusinessOutcome {
                    reference: reference.clone(),
                    recipient: recipient.clone(),
                    effect,
                });
            }
        }
        Ok(())
    }

    /// Removes the queue item of a delivery not yet fetched, from whichever
    /// queue carries it: the recipient's own, or a relay's above it.
    fn remove_queued_delivery(
        &self,
        op: &mut Op,
        document_id: &str,
        recipient: &str,
        queue_seq: u64,
    ) -> Result<(), StoreError> {
        let mut holder = recipient.parse::<truc_domain::AgencyCode>().ok();
        while let Some(code) = holder {
            let key = keys::queue(&code.to_string(), queue_seq);
            if let Some(bytes) = self.read(op, &key)? {
                let item: QueueItem = decode(&key, &bytes)?;
                if matches!(&item, QueueItem::Delivery { document_id: d, recipient: r }
                    if d == document_id && r == recipient)
                {
                    op.changes.insert(key, None);
                    // The sender's backlog loses it with the item.
                    op.backlog(document_id, -1);
                    return Ok(());
                }
            }
            holder = code.parent();
        }
        // Sequence numbers are unique: an item not found was already taken.
        Ok(())
    }
}
