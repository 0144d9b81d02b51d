//! The store's metric names and one helper per event, for the writer to call.
//!
//! They go through the `metrics` facade: a no-op until the hub installs its
//! Prometheus recorder, which also gives these names their help text and
//! histogram buckets (`truc_hub::metrics`). The store cannot depend on the
//! hub, so the names live here and the hub refers to them.

use std::time::Duration;

use metrics::{gauge, histogram};

/// Items waiting in a node's durable queue, by `kind`: `documents`
/// (deliveries not yet acknowledged) or `notices` (status notices).
pub const QUEUE_DEPTH: &str = "truc_queue_depth";
/// Commands folded into one group commit.
pub const GROUP_COMMIT_BATCH_COMMANDS: &str = "truc_group_commit_batch_commands";
/// Time one group commit took to make its changes durable (journal write and sync).
pub const GROUP_COMMIT_FLUSH_SECONDS: &str = "truc_group_commit_flush_seconds";
/// Keys one checkpoint wrote into the tree.
pub const CHECKPOINT_KEYS: &str = "truc_checkpoint_keys";
/// Time one checkpoint took to write and flush the tree.
pub const CHECKPOINT_SECONDS: &str = "truc_checkpoint_seconds";

/// A node's queue depth, as last read: documents and notices apart.
pub fn queue_depth(agency: &str, documents: u64, notices: u64) {
    for (kind, items) in [("documents", documents), ("notices", notices)] {
        gauge!(QUEUE_DEPTH, "agency" => agency.to_owned(), "kind" => kind).set(items as f64);
    }
}

/// Once per group made durable.
pub fn group_commit(commands: usize, flush: Duration) {
    histogram!(GROUP_COMMIT_BATCH_COMMANDS).record(commands as f64);
    histogram!(GROUP_COMMIT_FLUSH_SECONDS).record(flush.as_secs_f64());
}

/// Once per checkpoint.
pub fn checkpoint(keys: usize, took: Duration) {
    histogram!(CHECKPOINT_KEYS).record(keys as f64);
    histogram!(CHECKPOINT_SECONDS).record(took.as_secs_f64());
}
