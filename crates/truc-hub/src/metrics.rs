//! The hub's Prometheus metrics: every name in one place, its description,
//! and one small function per event, so call sites stay one line long.
//!
//! Recording goes through the `metrics` facade. Until [`install`] has put
//! the Prometheus recorder in place (it does so when a hub is given a
//! metrics listener) every call here is a no-op, so a hub without a metrics
//! port pays almost nothing. The recorder is process-wide: several hubs in
//! one process (tests, the in-process replay) share one set of series.
//!
//! Some figures have names, help text, buckets and helpers but no call site
//! yet: acknowledgements and the oldest unacknowledged item per node (here,
//! for the delivery loop), queue depth and group commits (in
//! `truc_store::metrics`, for the store writer, which cannot reach this crate).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics::Unit;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use tonic::Code;

/// Sends finished per sending agency; `outcome` is `accepted`, `duplicate` or `refused`.
pub const SENDS_TOTAL: &str = "truc_sends_total";
/// Refusals per gRPC code, counted once per answer by the refusal layer.
pub const REFUSALS_TOTAL: &str = "truc_refusals_total";
/// Calls per Axis method, refused ones included.
pub const REQUESTS_TOTAL: &str = "truc_requests_total";
/// Status moves stored, per recipient agency and the status moved to.
pub const STATUS_MOVES_TOTAL: &str = "truc_status_moves_total";
/// Deliveries written onto a node's stream (redeliveries included).
pub const DELIVERIES_SENT_TOTAL: &str = "truc_deliveries_sent_total";
/// Deliveries a node acknowledged (status 01 "arrived" stored).
pub const DELIVERIES_ACKED_TOTAL: &str = "truc_deliveries_acked_total";
/// Delivery streams open now.
pub const CONNECTED_NODES: &str = "truc_connected_nodes";
/// `notAfter` of the hub's own certificate (`identity="hub"`) and of each CA (`identity="ca"`).
pub const CERTIFICATE_EXPIRY: &str = "truc_certificate_expiry_timestamp_seconds";
/// Security events (refused handshakes and calls, limits hit), per `kind`.
pub const SECURITY_EVENTS_TOTAL: &str = "truc_security_events_total";
/// Age of the oldest item sent to a node and not yet acknowledged.
pub const QUEUE_OLDEST_UNACKED_AGE: &str = "truc_queue_oldest_unacked_age_seconds";
/// 1 while the hub reaches a writable database primary (always 1 on the embedded store).
pub const DATABASE_WRITABLE: &str = "truc_database_writable";
/// The database's standbys as its primary sees them, per synchronous state.
pub const DATABASE_STANDBYS: &str = "truc_database_standbys";
/// WAL a standby has yet to replay, in bytes.
pub const DATABASE_REPLAY_LAG: &str = "truc_database_replay_lag_bytes";
/// Node queues each hub pushes now (its node leases).
pub const NODES_SERVED: &str = "truc_nodes_served";
/// Bytes the live store occupies on disk (the embedded engine's data
/// directory, or the PostgreSQL database).
pub const STORE_SIZE_BYTES: &str = "truc_store_size_bytes";
/// Documents that left the live store for archive files.
pub const ARCHIVED_DOCUMENTS_TOTAL: &str = "truc_archive_documents_total";
/// Live documents older than the retention period after the last run.
pub const ARCHIVE_BACKLOG_DOCUMENTS: &str = "truc_archive_backlog_documents";
/// Of those, the ones a delivery not yet final holds live.
pub const ARCHIVE_HELD_DOCUMENTS: &str = "truc_archive_held_documents";
/// When the last retention run ended, as Unix time.
pub const ARCHIVE_LAST_RUN: &str = "truc_archive_last_run_timestamp_seconds";
/// How long each retention run took.
pub const ARCHIVE_RUN_SECONDS: &str = "truc_archive_run_seconds";
pub use truc_store::metrics::{
    CHECKPOINT_KEYS, CHECKPOINT_SECONDS, GROUP_COMMIT_BATCH_COMMANDS, GROUP_COMMIT_FLUSH_SECONDS,
    QUEUE_DEPTH,
};

/// Buckets for batch sizes: one command alone up to the writer's whole backlog.
const BATCH_COMMANDS_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
/// Buckets for flushes: an fsync on a fast disk to a stalled one.
const FLUSH_SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// Buckets for checkpoints: a few keys to a whole layer of changes.
const CHECKPOINT_KEYS_BUCKETS: &[f64] = &[10.0, 100.0, 1_000.0, 10_000.0, 100_000.0, 1_000_000.0];
const CHECKPOINT_SECONDS_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Why the hub's Prometheus recorder is not in place. Cloned for every hub
/// that asks again (the first answer is kept for the whole process), so the
/// sources are shared.
#[derive(Clone, Debug, thiserror::Error)]
pub enum InstallError {
    /// The histogram buckets were refused (they are constants: a bug).
    #[error("the metrics recorder cannot be built: {0}")]
    Build(#[source] Arc<metrics_exporter_prometheus::BuildError>),
    /// Some other recorder came first: the hub's figures would go elsewhere.
    #[error("another metrics recorder is already installed in this process: {0}")]
    OtherRecorder(#[source] Arc<metrics::SetRecorderError<PrometheusRecorder>>),
}

static RECORDER: OnceLock<Result<PrometheusHandle, InstallError>> = OnceLock::new();

/// Installs the Prometheus recorder for the whole process, once, and returns
/// the handle that renders a scrape. Fails if some other recorder was
/// installed first, since the hub's figures would then go elsewhere.
pub fn install() -> Result<PrometheusHandle, InstallError> {
    RECORDER
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(GROUP_COMMIT_BATCH_COMMANDS.into()),
                    BATCH_COMMANDS_BUCKETS,
                )
                .and_then(|builder| {
                    builder.set_buckets_for_metric(
                        Matcher::Full(GROUP_COMMIT_FLUSH_SECONDS.into()),
                        FLUSH_SECONDS_BUCKETS,
                    )
                })
                .and_then(|builder| {
                    builder.set_buckets_for_metric(
                        Matcher::Full(CHECKPOINT_KEYS.into()),
                        CHECKPOINT_KEYS_BUCKETS,
                    )
                })
                .and_then(|builder| {
                    builder.set_buckets_for_metric(
                        Matcher::Full(CHECKPOINT_SECONDS.into()),
                        CHECKPOINT_SECONDS_BUCKETS,
                    )
                })
                .map_err(|error| InstallError::Build(Arc::new(error)))?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder)
                .map_err(|error| InstallError::OtherRecorder(Arc::new(error)))?;
            describe();
            Ok(handle)
        })
        .clone()
}

/// Gives every metric its help text and unit, shown in each scrape.
fn describe() {
    describe_counter!(
        SENDS_TOTAL,
        "Sends finished, per sending agency and outcome (accepted, duplicate, refused)."
    );
    describe_counter!(REFUSALS_TOTAL, "Requests refused, per gRPC status code.");
    describe_counter!(
        REQUESTS_TOTAL,
        "Calls per Axis method, refused ones included."
    );
    describe_counter!(
        STATUS_MOVES_TOTAL,
        "Status moves stored, per recipient agency and status moved to."
    );
    describe_counter!(
        DELIVERIES_SENT_TOTAL,
        "Deliveries written onto a node's stream, redeliveries included."
    );
    describe_counter!(
        DELIVERIES_ACKED_TOTAL,
        "Deliveries acknowledged by the recipient node."
    );
    describe_gauge!(CONNECTED_NODES, "Delivery streams open now.");
    describe_counter!(
        SECURITY_EVENTS_TOTAL,
        "Security events: refused handshakes and calls, per-identity limits hit, per kind."
    );
    describe_gauge!(
        CERTIFICATE_EXPIRY,
        Unit::Seconds,
        "When a certificate the hub relies on expires, as Unix time."
    );
    describe_gauge!(
        QUEUE_DEPTH,
        "Items waiting in a node's durable queue, by kind: documents or notices."
    );
    describe_gauge!(
        DATABASE_WRITABLE,
        "1 while the hub reaches a writable database primary (always 1 on the embedded store)."
    );
    describe_gauge!(
        DATABASE_STANDBYS,
        "The database's standbys as its primary sees them, per synchronous state."
    );
    describe_gauge!(
        DATABASE_REPLAY_LAG,
        Unit::Bytes,
        "WAL a standby has yet to replay, in bytes."
    );
    describe_gauge!(NODES_SERVED, "Node queues each hub pushes now, per hub.");
    describe_gauge!(
        QUEUE_OLDEST_UNACKED_AGE,
        Unit::Seconds,
        "Age of the oldest item sent to a node and not yet acknowledged."
    );
    describe_histogram!(
        GROUP_COMMIT_BATCH_COMMANDS,
        "Commands folded into one group commit."
    );
    describe_histogram!(
        GROUP_COMMIT_FLUSH_SECONDS,
        Unit::Seconds,
        "Time a group commit took to make its changes durable: the journal's write and sync."
    );
    describe_histogram!(
        CHECKPOINT_KEYS,
        "Keys one checkpoint wrote from memory into the tree."
    );
    describe_histogram!(
        CHECKPOINT_SECONDS,
        Unit::Seconds,
        "Time one checkpoint took to write its keys into the tree and flush it."
    );
    describe_gauge!(
        STORE_SIZE_BYTES,
        Unit::Bytes,
        "Bytes the live store occupies on disk (archives not included)."
    );
    describe_counter!(
        ARCHIVED_DOCUMENTS_TOTAL,
        "Documents that left the live store for archive files."
    );
    describe_gauge!(
        ARCHIVE_BACKLOG_DOCUMENTS,
        "Live documents older than the retention period after the last run."
    );
    describe_gauge!(
        ARCHIVE_HELD_DOCUMENTS,
        "Documents older than the retention period that a delivery not yet final holds live."
    );
    describe_gauge!(
        ARCHIVE_LAST_RUN,
        Unit::Seconds,
        "When the last retention run ended, as Unix time."
    );
    describe_histogram!(
        ARCHIVE_RUN_SECONDS,
        Unit::Seconds,
        "How long one retention run took."
    );
}

/// How a send ended, as the `outcome` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendOutcome {
    Accepted,
    Duplicate,
    Refused,
}

impl SendOutcome {
    fn label(self) -> &'static str {
        match self {
            SendOutcome::Accepted => "accepted",
            SendOutcome::Duplicate => "duplicate",
            SendOutcome::Refused => "refused",
        }
    }
}

pub fn send_finished(agency: &str, outcome: SendOutcome) {
    counter!(SENDS_TOTAL, "agency" => agency.to_owned(), "outcome" => outcome.label()).increment(1);
}

/// For the refusal layer (`refusals.rs`), once per answer that is not OK.
pub(crate) fn refused(code: Code) {
    counter!(REFUSALS_TOTAL, "code" => code_label(code)).increment(1);
}

pub fn request(method: &'static str) {
    counter!(REQUESTS_TOTAL, "method" => method).increment(1);
}

pub fn status_moved(agency: &str, status: &'static str) {
    counter!(STATUS_MOVES_TOTAL, "agency" => agency.to_owned(), "status" => status).increment(1);
}

pub fn delivery_sent(agency: &str) {
    counter!(DELIVERIES_SENT_TOTAL, "agency" => agency.to_owned()).increment(1);
}

/// For the delivery loop, once an acknowledgement is stored.
pub fn delivery_acked(agency: &str) {
    counter!(DELIVERIES_ACKED_TOTAL, "agency" => agency.to_owned()).increment(1);
}

/// `kind` is one of a fixed set (`certificate_revoked`, `permission_denied`, …), never free text.
pub fn security_event(kind: &'static str) {
    counter!(SECURITY_EVENTS_TOTAL, "kind" => kind).increment(1);
}

pub fn node_connected() {
    gauge!(CONNECTED_NODES).increment(1.0);
}

pub fn node_disconnected() {
    gauge!(CONNECTED_NODES).decrement(1.0);
}

/// `identity` is `hub` or `ca`; `subject` tells several CAs apart.
pub fn certificate_expiry(identity: &'static str, subject: &str, not_after_unix_seconds: i64) {
    gauge!(CERTIFICATE_EXPIRY, "identity" => identity, "subject" => subject.to_owned())
        .set(not_after_unix_seconds as f64);
}

/// How long the oldest delivery waiting in a node's queue has waited.
pub fn queue_oldest_unacked_age(agency: &str, age: Duration) {
    gauge!(QUEUE_OLDEST_UNACKED_AGE, "agency" => agency.to_owned()).set(age.as_secs_f64());
}

/// The database as this hub sees it: writable or not, its standbys and their lag.
pub fn database(writable: bool, state: Option<&truc_store::DatabaseState>) {
    gauge!(DATABASE_WRITABLE).set(if writable { 1.0 } else { 0.0 });
    let Some(state) = state else { return };
    for sync_state in ["sync", "potential", "async", "quorum"] {
        let count = state
            .standbys
            .iter()
            .filter(|standby| standby.sync_state == sync_state)
            .count();
        gauge!(DATABASE_STANDBYS, "sync_state" => sync_state).set(count as f64);
    }
    for standby in &state.standbys {
        gauge!(DATABASE_REPLAY_LAG, "standby" => standby.name.clone())
            .set(standby.replay_lag_bytes as f64);
    }
}

/// How many node queues `hub` pushes now.
pub fn nodes_served(hub: &str, nodes: usize) {
    gauge!(NODES_SERVED, "hub" => hub.to_owned()).set(nodes as f64);
}

/// Bytes the live store occupies now.
pub fn store_size(bytes: u64) {
    gauge!(STORE_SIZE_BYTES).set(bytes as f64);
}

/// One retention run: documents archived, and those older than the period
/// still live (held by a delivery, and in all).
pub fn retention_run(archived: u64, held: u64, backlog: u64, took: Duration) {
    counter!(ARCHIVED_DOCUMENTS_TOTAL).increment(archived);
    gauge!(ARCHIVE_HELD_DOCUMENTS).set(held as f64);
    gauge!(ARCHIVE_BACKLOG_DOCUMENTS).set(backlog as f64);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    gauge!(ARCHIVE_LAST_RUN).set(now);
    metrics::histogram!(ARCHIVE_RUN_SECONDS).record(took.as_secs_f64());
}

/// The gRPC code as Prometheus users write it: `invalid_argument`, not `InvalidArgument`.
fn code_label(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}
