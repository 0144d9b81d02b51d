//! Checkpoints: the changes the journal made durable are written into sled
//! in the background, a layer at a time, so that the journal can be cut and
//! the memory they hold given back.
//!
//! A checkpoint freezes the live layer, writes it into the tree a key at a
//! time with the commit number last (sled recovers a prefix of its log, so
//! the number is never recovered without everything before it), flushes, and
//! only then drops the frozen layer and lets the writer remove the journal
//! segments it covers. A crash at any point leaves the journal holding
//! every group the tree may lack; applying a group again is harmless, since
//! every change sets a key's whole value.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::error::StoreError;
use crate::keys;
use crate::records::{decode, encode, DeliveryRecord, WatchRecord};
use crate::Inner;

#[derive(Default)]
struct State {
    requested: bool,
    stopping: bool,
    /// The last group the tree holds durably.
    through: u64,
}

#[derive(Default)]
pub(crate) struct Checkpoints {
    state: Mutex<State>,
    changed: Condvar,
}

/// When checkpoints run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Policy {
    /// Live bytes that start a checkpoint at once.
    pub start_bytes: usize,
    /// Live bytes at which the writer waits for the running checkpoint.
    pub hold_bytes: usize,
    /// A checkpoint runs at least this often while there are changes.
    pub interval: Duration,
}

impl Checkpoints {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn new(through: u64) -> Self {
        Checkpoints {
            state: Mutex::new(State {
                through,
                ..State::default()
            }),
            changed: Condvar::new(),
        }
    }

    /// Asks for a checkpoint now.
    pub(crate) fn request(&self) {
        self.lock().requested = true;
        self.changed.notify_all();
    }

    /// Asks for a last checkpoint, after which the thread ends.
    pub(crate) fn stop(&self) {
        self.lock().stopping = true;
        self.changed.notify_all();
    }

    /// Asks for checkpoints until one covers group `seq`; returns the group
    /// the tree then holds.
    pub(crate) fn wait_through(&self, inner: &Inner, seq: u64) -> Result<u64, StoreError> {
        let mut state = self.lock();
        while state.through < seq {
            if inner.failed.load(Ordering::Acquire) {
                return Err(StoreError::Corrupt {
                    key: "(store)".into(),
                    reason: "a checkpoint failed; restart the hub".into(),
                });
            }
            state.requested = true;
            self.changed.notify_all();
            state = self
                .changed
                .wait_timeout(state, Duration::from_millis(100))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        Ok(state.through)
    }

    /// Waits while the live layer is over `hold_bytes`, so that a writer
    /// faster than the tree cannot grow memory without bound.
    pub(crate) fn wait_for_room(&self, inner: &Inner, policy: &Policy) {
        let mut state = self.lock();
        while inner.layers.live_bytes() > policy.hold_bytes
            && !state.stopping
            && !inner.failed.load(Ordering::Acquire)
        {
            state.requested = true;
            self.changed.notify_all();
            state = self
                .changed
                .wait_timeout(state, Duration::from_millis(100))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// How much nicer than the rest of the hub the checkpoint thread is: its
/// work can wait, and every send and move waits while it holds a core.
const NICENESS: i32 = 10;

/// The checkpoint thread's loop; ends after the last checkpoint once stopped.
pub(crate) fn run(inner: Arc<Inner>, policy: Policy) {
    // On Linux a thread's own id names it alone; elsewhere this may fail,
    // which only costs latency.
    if let Err(error) =
        rustix::process::setpriority_process(Some(rustix::thread::gettid()), NICENESS)
    {
        tracing::debug!(%error, "cannot lower the checkpoint thread's priority");
    }
    loop {
        let stopping = {
            let mut state = inner.checkpoints.lock();
            if !state.requested && !state.stopping {
                state = inner
                    .checkpoints
                    .changed
                    .wait_timeout(state, policy.interval)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            state.requested = false;
            state.stopping
        };
        if !inner.failed.load(Ordering::Acquire) {
            if let Err(error) = checkpoint(&inner) {
                tracing::error!(%error, "checkpoint failed; refusing further writes until restart");
                if matches!(&error, sled::Error::Io(io) if crate::error::is_storage_full(io)) {
                    inner.failed_full.store(true, Ordering::Release);
                }
                inner.failed.store(true, Ordering::Release);
                inner.checkpoints.changed.notify_all();
            }
        }
        if stopping {
            return;
        }
    }
}

/// Writes the live layer into the tree and flushes it.
fn checkpoint(inner: &Inner) -> Result<(), sled::Error> {
    let Some((frozen, through)) = inner.layers.freeze() else {
        return Ok(());
    };
    let started = std::time::Instant::now();
    // The journal records about to be let go carry payload bytes: they must
    // be on the device in the payload log first.
    inner.payload.sync_carried().map_err(sled::Error::Io)?;
    // Key by key, not in sled batches: the first `apply_batch` switches sled
    // for good to a global lock that every read then takes, and a batch
    // holds it for writing, so the writer's reads waited behind this
    // low-priority thread whenever it lost its core mid-batch.
    let mut commit_seq = None;
    let mut pruned = 0usize;
    for (key, value) in frozen.iter() {
        if key.as_slice() == keys::META_COMMIT_SEQ {
            commit_seq = value.clone();
            continue;
        }
        let value = match value {
            Some(block) if key.first() == Some(&keys::WATCH) => {
                let (kept, dropped) = unmet_watches(inner, key, block)?;
                pruned += dropped;
                kept
            }
            other => other.clone(),
        };
        match value {
            Some(value) => inner.main.insert(key.as_slice(), value)?,
            None => inner.main.remove(key.as_slice())?,
        };
    }
    if let Some(commit_seq) = commit_seq {
        inner.main.insert(keys::META_COMMIT_SEQ, commit_seq)?;
    }
    inner.db.flush()?;
    // sled's flush is not a durable sync (`durable.rs`); the journal's
    // segments go below, so sled's files must be on the device first.
    crate::durable::sync_tree_files(&inner.path).map_err(sled::Error::Io)?;
    inner.layers.thaw();
    {
        let mut state = inner.checkpoints.lock();
        state.through = through;
    }
    inner.journal().discard_through(through);
    inner.checkpoints.changed.notify_all();
    tracing::debug!(
        keys = frozen.len(),
        pruned,
        through,
        took_ms = started.elapsed().as_millis() as u64,
        "checkpoint written"
    );
    crate::metrics::checkpoint(frozen.len(), started.elapsed());
    Ok(())
}

/// A watch block without the deadlines its deliveries already met (a met
/// deadline stays met: an arrival, a later status or a final one is never
/// undone), so that they are neither written nor later read back by the
/// watcher only to be dropped. `None` if none is left.
fn unmet_watches(
    inner: &Inner,
    key: &[u8],
    block: &sled::IVec,
) -> Result<(Option<sled::IVec>, usize), sled::Error> {
    let Ok(watches) = decode::<Vec<WatchRecord>>(key, block) else {
        // Left for the watcher, which says what is wrong with it.
        return Ok((Some(block.clone()), 0));
    };
    let mut unmet = Vec::with_capacity(watches.len());
    for watch in &watches {
        let deliveries_key = keys::deliveries(&watch.document_id);
        let met = match inner.get(&deliveries_key)? {
            Some(bytes) => decode::<Vec<DeliveryRecord>>(&deliveries_key, &bytes)
                .ok()
                .and_then(|deliveries| {
                    deliveries
                        .into_iter()
                        .find(|delivery| delivery.recipient == watch.recipient)
                })
                .is_some_and(|delivery| watch.kind.met_by(&delivery)),
            None => false,
        };
        if !met {
            unmet.push(watch.clone());
        }
    }
    let dropped = watches.len() - unmet.len();
    Ok(match (dropped, unmet.is_empty()) {
        (0, _) => (Some(block.clone()), 0),
        (_, true) => (None, dropped),
        (_, false) => (Some(encode(&unmet).into()), dropped),
    })
}

#[cfg(test)]
mod tests {
    use crate::records::{DeadlineKind, DocumentRecord, DocumentSignatureState};
    use crate::{AcceptDeadlines, AcceptPlan, Store, StoreOptions};

    fn document(number: u32) -> DocumentRecord {
        DocumentRecord {
            document_id: format!("000.00.00.G22,2026/11/22,{number}/VPCP"),
            sender: "000.00.00.G22".into(),
            date_key: 20261122,
            subject: "s".into(),
            content_sha256: [number as u8; 32],
            header_bytes: format!("header {number}").into_bytes(),
            signature: vec![1; 64],
            sender_certificate: b"certificate".to_vec(),
            document_signature: None,
            document_signature_state: DocumentSignatureState::Absent,
            accepted_at_unix_ms: 1_000,
            recipients: vec!["000.00.00.H41".into(), "000.00.00.H42".into()],
            refused: Vec::new(),
            attachments: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_checkpoint_leaves_out_the_deadlines_already_met() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let deadlines = AcceptDeadlines {
            arrived_unix_ms: Some(10_000),
            due_date_unix_ms: None,
            expiry_unix_ms: Some(20_000),
        };
        for number in [1, 2] {
            store
                .accept_watched(
                    document(number),
                    Vec::new(),
                    AcceptPlan::default(),
                    deadlines,
                )
                .await
                .unwrap();
        }
        // H41 takes both documents; H42 takes neither.
        let queued: Vec<u64> = store
            .queue_after("000.00.00.H41", 0, 10)
            .unwrap()
            .into_iter()
            .map(|(seq, _)| seq)
            .collect();
        assert_eq!(queued.len(), 2);
        store
            .ack_watched("000.00.00.H41", queued, 2_000, Some(30_000))
            .await
            .unwrap();
        let due = |store: &Store| -> Vec<(DeadlineKind, String)> {
            let mut due: Vec<_> = store
                .due_watches(i64::MAX, 100)
                .unwrap()
                .watches
                .into_iter()
                .map(|w| (w.kind, w.recipient))
                .collect();
            due.sort();
            due
        };
        let before = due(&store);
        assert_eq!(before.len(), 10, "{before:?}");
        store.checkpoint().await.unwrap();
        let after = due(&store);
        // H41's arrival met its arrival and expiry deadlines; its "received"
        // deadline and all of H42's still stand.
        let mut expected = Vec::new();
        for _ in 0..2 {
            expected.push((DeadlineKind::Arrived, "000.00.00.H42".to_string()));
            expected.push((DeadlineKind::Received, "000.00.00.H41".to_string()));
            expected.push((DeadlineKind::Expiry, "000.00.00.H42".to_string()));
        }
        expected.sort();
        assert_eq!(after, expected);
    }
}
