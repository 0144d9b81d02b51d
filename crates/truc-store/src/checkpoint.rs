//! Checkpoints: the changes the journal made durable are written into sled
//! in the background, a layer at a time, so that the journal can be cut and
//! the memory they hold given back.
//!
//! A checkpoint freezes the live layer, applies it to the tree in batches
//! with the commit number last (sled recovers a prefix of its log, so the
//! number is never recovered without everything before it), flushes, and
//! only then drops the frozen layer and lets the writer remove the journal
//! segments it covers. A crash at any point leaves the journal holding
//! every group the tree may lack; applying a group again is harmless, since
//! every change sets a key's whole value.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::error::StoreError;
use crate::keys;
use crate::Inner;

/// Largest sled batch a checkpoint applies at once.
const BATCH_KEYS_MAX: usize = 8192;

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

    /// The last group the tree holds durably.
    pub(crate) fn through(&self) -> u64 {
        self.lock().through
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

/// The checkpoint thread's loop; ends after the last checkpoint once stopped.
pub(crate) fn run(inner: Arc<Inner>, policy: Policy) {
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
                if crate::error::is_storage_full(&error) {
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
    let mut batch = sled::Batch::default();
    let mut in_batch = 0;
    let mut commit_seq = None;
    for (key, value) in frozen.iter() {
        if key.as_slice() == keys::META_COMMIT_SEQ {
            commit_seq = value.clone();
            continue;
        }
        match value {
            Some(value) => batch.insert(key.as_slice(), value.clone()),
            None => batch.remove(key.as_slice()),
        }
        in_batch += 1;
        if in_batch == BATCH_KEYS_MAX {
            inner.main.apply_batch(std::mem::take(&mut batch))?;
            in_batch = 0;
        }
    }
    if let Some(commit_seq) = commit_seq {
        batch.insert(keys::META_COMMIT_SEQ, commit_seq);
    }
    inner.main.apply_batch(batch)?;
    inner.db.flush()?;
    inner.layers.thaw();
    {
        let mut state = inner.checkpoints.lock();
        state.through = through;
    }
    inner.checkpoints.changed.notify_all();
    tracing::debug!(
        keys = frozen.len(),
        through,
        took_ms = started.elapsed().as_millis() as u64,
        "checkpoint written"
    );
    crate::metrics::checkpoint(frozen.len(), started.elapsed());
    Ok(())
}
