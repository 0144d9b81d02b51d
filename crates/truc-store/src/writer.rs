//! The single writer: every change to the main tree goes through one thread,
//! which applies each command as one atomic sled batch, then makes the whole
//! group durable with one flush before answering anyone (group commit).

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use truc_domain::{DocumentId, Status};

use crate::error::StoreError;
use crate::keys;
use crate::records::{
    decode, decode_counter, encode, encode_counter, BlobRecord, DeliveryRecord, DocumentRecord,
    QueueItem, StatusEntry,
};
use crate::Inner;

/// Blob chunks uploaded by one send, to be made visible when it is accepted.
#[derive(Clone, Debug)]
pub struct PendingBlob {
    pub sha256: [u8; 32],
    pub upload_id: u64,
    pub size_bytes: u64,
    pub chunk_count: u32,
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
    /// Nothing waits at that sequence number (already acknowledged).
    AlreadyDone,
}

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
        queue_seq: u64,
        at_unix_ms: i64,
        reply: oneshot::Sender<Result<AckOutcome, StoreError>>,
    },
    Move {
        document_id: String,
        recipient: String,
        entry: StatusEntry,
        reply: oneshot::Sender<Result<StatusEntry, StoreError>>,
    },
}

/// A reply held back until the group it belongs to is flushed.
#[allow(clippy::large_enum_variant)]
enum Pending {
    Accept(
        oneshot::Sender<Result<AcceptOutcome, StoreError>>,
        Result<AcceptOutcome, StoreError>,
    ),
    Ack(
        oneshot::Sender<Result<AckOutcome, StoreError>>,
        Result<AckOutcome, StoreError>,
    ),
    Move(
        oneshot::Sender<Result<StatusEntry, StoreError>>,
        Result<StatusEntry, StoreError>,
    ),
}

impl Pending {
    fn fail(self, error: impl Fn() -> StoreError) {
        match self {
            Pending::Accept(reply, _) => drop(reply.send(Err(error()))),
            Pending::Ack(reply, _) => drop(reply.send(Err(error()))),
            Pending::Move(reply, _) => drop(reply.send(Err(error()))),
        }
    }

    fn answer(self) {
        match self {
            Pending::Accept(reply, result) => drop(reply.send(result)),
            Pending::Ack(reply, result) => drop(reply.send(result)),
            Pending::Move(reply, result) => drop(reply.send(result)),
        }
    }
}

/// Most commands folded into one flush.
const GROUP_COMMANDS_MAX: usize = 2048;

pub(crate) struct Writer {
    inner: Arc<Inner>,
    next_queue_seq: u64,
}

impl Writer {
    pub(crate) fn new(inner: Arc<Inner>) -> Result<Self, StoreError> {
        let next_queue_seq = match inner.main.get(keys::META_NEXT_SEQ)? {
            Some(bytes) => {
                u64::from_be_bytes(bytes.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                    key: "m:next_queue_seq".into(),
                    reason: "not 8 bytes".into(),
                })?)
            }
            None => 1,
        };
        Ok(Self {
            inner,
            next_queue_seq,
        })
    }

    pub(crate) fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut group = Vec::with_capacity(GROUP_COMMANDS_MAX);
        while let Some(first) = commands.blocking_recv() {
            group.push(first);
            while group.len() < GROUP_COMMANDS_MAX {
                match commands.try_recv() {
                    Ok(command) => group.push(command),
                    Err(_) => break,
                }
            }
            self.commit_group(&mut group);
        }
    }

    fn commit_group(&mut self, group: &mut Vec<Command>) {
        let mut pending = Vec::with_capacity(group.len());
        let mut woken = BTreeSet::new();
        let mut orphan_uploads = Vec::new();
        let failed = self.inner.failed.load(std::sync::atomic::Ordering::Acquire);
        for command in group.drain(..) {
            if failed {
                let failure = || StoreError::Corrupt {
                    key: "(store)".into(),
                    reason: "an earlier flush failed; restart the hub".into(),
                };
                match command {
                    Command::Accept { reply, .. } => drop(reply.send(Err(failure()))),
                    Command::Ack { reply, .. } => drop(reply.send(Err(failure()))),
                    Command::Move { reply, .. } => drop(reply.send(Err(failure()))),
                }
                continue;
            }
            pending.push(match command {
                Command::Accept {
                    document,
                    blobs,
                    reply,
                } => {
                    let result = self.accept(document, &blobs, &mut woken, &mut orphan_uploads);
                    if result.is_err() || matches!(result, Ok(AcceptOutcome::Duplicate(_))) {
                        orphan_uploads.extend(blobs.iter().map(|b| (b.sha256, b.upload_id)));
                    }
                    Pending::Accept(reply, result)
                }
                Command::Ack {
                    agency,
                    queue_seq,
                    at_unix_ms,
                    reply,
                } => Pending::Ack(reply, self.ack(&agency, queue_seq, at_unix_ms, &mut woken)),
                Command::Move {
                    document_id,
                    recipient,
                    entry,
                    reply,
                } => Pending::Move(
                    reply,
                    self.move_status(&document_id, &recipient, entry, &mut woken),
                ),
            });
        }
        if pending.is_empty() {
            return;
        }
        let started = std::time::Instant::now();
        match self.inner.db.flush() {
            Ok(_) => {
                self.inner
                    .stats
                    .record_flush(pending.len(), started.elapsed());
                for reply in pending {
                    reply.answer();
                }
                for agency in woken {
                    self.inner.notifier(&agency).notify_one();
                }
            }
            Err(error) => {
                tracing::error!(%error, "flush failed; refusing further writes until restart");
                self.inner
                    .failed
                    .store(true, std::sync::atomic::Ordering::Release);
                let message = error.to_string();
                for reply in pending {
                    reply.fail(|| {
                        StoreError::Storage(sled::Error::Io(std::io::Error::other(message.clone())))
                    });
                }
            }
        }
        for (sha256, upload_id) in orphan_uploads {
            self.inner.discard_upload(&sha256, upload_id);
        }
    }

    fn take_seq(&mut self) -> u64 {
        let seq = self.next_queue_seq;
        self.next_queue_seq += 1;
        seq
    }

    fn bump_counter(
        &self,
        batch: &mut sled::Batch,
        agency: &str,
        date_key: u32,
        sent: u64,
        received: u64,
    ) -> Result<(), StoreError> {
        let key = keys::counter(agency, date_key);
        let (old_sent, old_received) = self
            .inner
            .main
            .get(&key)?
            .map(|bytes| decode_counter(&bytes))
            .unwrap_or((0, 0));
        batch.insert(
            key,
            &encode_counter(old_sent + sent, old_received + received)[..],
        );
        Ok(())
    }

    fn accept(
        &mut self,
        document: DocumentRecord,
        blobs: &[PendingBlob],
        woken: &mut BTreeSet<String>,
        orphan_uploads: &mut Vec<([u8; 32], u64)>,
    ) -> Result<AcceptOutcome, StoreError> {
        let document_key = keys::document(&document.document_id);
        if let Some(bytes) = self.inner.main.get(&document_key)? {
            let original: DocumentRecord = decode(&document_key, &bytes)?;
            return if original.content_sha256 == document.content_sha256 {
                Ok(AcceptOutcome::Duplicate(original))
            } else {
                Err(StoreError::AlreadyExists {
                    document_id: original.document_id,
                    accepted_at_unix_ms: original.accepted_at_unix_ms,
                })
            };
        }
        let seq_before = self.next_queue_seq;
        let mut batch = sled::Batch::default();
        for blob in blobs {
            let blob_key = keys::blob(&blob.sha256);
            if self.inner.main.get(&blob_key)?.is_some() {
                // Stored meanwhile by another send: this upload's copy is not needed.
                orphan_uploads.push((blob.sha256, blob.upload_id));
            } else {
                batch.insert(
                    blob_key,
                    encode(&BlobRecord {
                        upload_id: blob.upload_id,
                        size_bytes: blob.size_bytes,
                        chunk_count: blob.chunk_count,
                    }),
                );
            }
        }
        for recipient in &document.recipients {
            let queue_seq = self.take_seq();
            let delivery = DeliveryRecord {
                document_id: document.document_id.clone(),
                recipient: recipient.clone(),
                queue_seq,
                history: Vec::new(),
            };
            batch.insert(
                keys::delivery(&document.document_id, recipient),
                encode(&delivery),
            );
            batch.insert(
                keys::queue(recipient, queue_seq),
                encode(&QueueItem::Delivery {
                    document_id: document.document_id.clone(),
                    recipient: recipient.clone(),
                }),
            );
        }
        if let Err(error) = self.bump_counter(&mut batch, &document.sender, document.date_key, 1, 0)
        {
            self.next_queue_seq = seq_before;
            return Err(error);
        }
        batch.insert(keys::META_NEXT_SEQ, &self.next_queue_seq.to_be_bytes()[..]);
        batch.insert(document_key, encode(&document));
        if let Err(error) = self.inner.main.apply_batch(batch) {
            self.next_queue_seq = seq_before;
            return Err(error.into());
        }
        woken.extend(document.recipients.iter().cloned());
        Ok(AcceptOutcome::Accepted(document))
    }

    fn ack(
        &mut self,
        agency: &str,
        queue_seq: u64,
        at_unix_ms: i64,
        woken: &mut BTreeSet<String>,
    ) -> Result<AckOutcome, StoreError> {
        let queue_key = keys::queue(agency, queue_seq);
        let Some(bytes) = self.inner.main.get(&queue_key)? else {
            return Ok(AckOutcome::AlreadyDone);
        };
        let item: QueueItem = decode(&queue_key, &bytes)?;
        let mut batch = sled::Batch::default();
        batch.remove(queue_key);
        let outcome = match item {
            QueueItem::Notice { .. } => AckOutcome::NoticeDone,
            QueueItem::Delivery {
                document_id,
                recipient,
            } => {
                let entry = StatusEntry {
                    code: Status::Arrived.code(),
                    at_unix_ms,
                    actor: agency.to_owned(),
                    reason: String::new(),
                };
                let seq_before = self.next_queue_seq;
                match self.record_entry(&mut batch, &document_id, &recipient, entry, true, woken) {
                    Ok(entry) => AckOutcome::Arrived(entry),
                    Err(error) => {
                        self.next_queue_seq = seq_before;
                        return Err(error);
                    }
                }
            }
        };
        batch.insert(keys::META_NEXT_SEQ, &self.next_queue_seq.to_be_bytes()[..]);
        self.inner.main.apply_batch(batch)?;
        Ok(outcome)
    }

    fn move_status(
        &mut self,
        document_id: &str,
        recipient: &str,
        entry: StatusEntry,
        woken: &mut BTreeSet<String>,
    ) -> Result<StatusEntry, StoreError> {
        let mut batch = sled::Batch::default();
        let seq_before = self.next_queue_seq;
        let result = self.record_entry(&mut batch, document_id, recipient, entry, false, woken);
        let entry = match result {
            Ok(entry) => entry,
            Err(error) => {
                self.next_queue_seq = seq_before;
                return Err(error);
            }
        };
        batch.insert(keys::META_NEXT_SEQ, &self.next_queue_seq.to_be_bytes()[..]);
        self.inner.main.apply_batch(batch)?;
        Ok(entry)
    }

    /// Checks and appends one status entry, counts an arrival, and queues a
    /// notice for the sender, all into `batch`.
    fn record_entry(
        &mut self,
        batch: &mut sled::Batch,
        document_id: &str,
        recipient: &str,
        entry: StatusEntry,
        arrival: bool,
        woken: &mut BTreeSet<String>,
    ) -> Result<StatusEntry, StoreError> {
        let delivery_key = keys::delivery(document_id, recipient);
        let bytes = self
            .inner
            .main
            .get(&delivery_key)?
            .ok_or_else(|| StoreError::NotFound {
                what: format!("delivery of {document_id} to {recipient}"),
            })?;
        let mut delivery: DeliveryRecord = decode(&delivery_key, &bytes)?;
        let current = delivery.current_code().map(Status::from_code).transpose()?;
        if arrival {
            if current.is_some() {
                return Err(StoreError::Corrupt {
                    key: String::from_utf8_lossy(&delivery_key).into_owned(),
                    reason: "queued delivery already has a status".into(),
                });
            }
        } else {
            Status::check_move(current, Status::from_code(entry.code)?, &entry.reason)?;
        }
        let id: DocumentId = document_id.parse().map_err(|_| StoreError::Corrupt {
            key: String::from_utf8_lossy(&delivery_key).into_owned(),
            reason: "stored document id does not parse".into(),
        })?;
        let sender = id.sender().to_string();
        if arrival {
            self.bump_counter(batch, recipient, id.date().ordinal_key(), 0, 1)?;
        }
        delivery.history.push(entry.clone());
        batch.insert(delivery_key, encode(&delivery));
        let notice_seq = self.take_seq();
        batch.insert(
            keys::queue(&sender, notice_seq),
            encode(&QueueItem::Notice {
                document_id: document_id.to_owned(),
                recipient: recipient.to_owned(),
                entry: entry.clone(),
            }),
        );
        woken.insert(sender);
        Ok(entry)
    }
}
