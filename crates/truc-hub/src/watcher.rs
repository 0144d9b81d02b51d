//! The deadline watcher: a background task that reads the deadlines due by
//! the hub's clock from the time-ordered index (nothing else), and hands
//! them to the store writer, which records the unmet ones as overdue or, for
//! an expiry, as a dead letter, and tells their senders. Ends on shutdown.

use std::sync::Arc;
use std::time::Duration;

use crate::Hub;

/// Deadlines handed to the writer in one command.
const LAPSE_BATCH_MAX: usize = 512;

pub(crate) async fn run(hub: Arc<Hub>) {
    let mut shutdown = hub.shutdown.clone();
    let interval = Duration::from_secs(hub.watch.deadlines.watch_interval_seconds.max(1));
    let expiry_reason = format!(
        "no node acknowledged it within its time to live of {} min; it is a dead letter until an operator resends or cancels it",
        hub.watch.expiry.ttl_minutes
    );
    let mut advances = hub.watch.clock.advances();
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        settle_due(&hub, &expiry_reason).await;
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = advances.changed() => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Settles every deadline due now, a batch at a time.
async fn settle_due(hub: &Hub, expiry_reason: &str) {
    let now = hub.watch.clock.now_unix_ms();
    loop {
        let due = match hub.store.due_watches(now, LAPSE_BATCH_MAX) {
            Ok(due) => due,
            Err(error) => {
                tracing::error!(%error, "cannot read the deadline index");
                return;
            }
        };
        let count = due.watches.len();
        if due.is_empty() {
            return;
        }
        match hub.store.lapse(due, now, expiry_reason.to_owned()).await {
            Ok(outcome) => {
                for record in &outcome.overdue {
                    tracing::info!(document_id = %record.document_id, recipient = %record.recipient, deadline = record.kind.name(), "overdue");
                }
                for letter in &outcome.expired {
                    tracing::info!(document_id = %letter.document_id, recipient = %letter.recipient, "expired into a dead letter");
                }
            }
            Err(error) => {
                tracing::error!(%error, "cannot record overdue deliveries");
                return;
            }
        }
        if count < LAPSE_BATCH_MAX {
            return;
        }
    }
}
