//! The replay driver: drives a [`Plan`] through a real hub over gRPC and mutual TLS, one node
//! per unit with its own certificate. Senders sign and send each planned document
//! ([`senders`]); every unit holds a delivery stream, verifies each delivery (sender
//! certificate, envelope signature, attachment digests), acknowledges it (the hub records
//! "arrived") and makes the plan's status moves; notices for the unit's own documents are
//! acknowledged as they come ([`nodes`]). This module connects them and waits for the last move.
//!
//! The hub can be embedded ([`EmbeddedHub`]: temporary PKI, store and directory made from the
//! plan) or anywhere else ([`Target`] with a certificate folder), both in [`hub`].

mod hub;
mod nodes;
mod senders;

pub use hub::{
    directory_lines, directory_toml, replay_watch, DirectoryLine, EmbeddedHub, Target,
    DEFAULT_OPERATOR,
};
pub use senders::{attachment_bytes, draft_of, NOTATION};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use truc_domain::{AgencyCode, Status};
use truc_node::{AxisClient, ClientError};
use truc_pki::TrustRoots;

use crate::attachments::{AttachmentSizes, AttachmentsSent};
use crate::plan::Plan;
use crate::progress::{Progress, ProgressMode, Totals};
use crate::published::GOVERNMENT_OFFICE;
use crate::report::HubFigures;
use crate::source::{figures_from_hub, SourceError};

/// Connections opened at once while the nodes come up.
const CONNECTS_IN_FLIGHT_MAX: usize = 32;
/// Attempts for a call that failed for a passing reason (hub unavailable, stream cut):
/// enough to outlast a database failover of hubs on PostgreSQL (Patroni's election
/// takes some 20 s; each attempt is itself a few seconds of the client's own failover).
const TRANSIENT_ATTEMPTS_MAX: u32 = 40;
/// Longest wait between two attempts.
const RETRY_DELAY_MAX: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("certificates: {0}")]
    Pki(#[from] truc_pki::PkiError),
    #[error("{0}")]
    Client(#[from] ClientError),
    #[error("store: {0}")]
    Store(#[from] truc_store::StoreError),
    #[error("{0}")]
    Source(#[from] SourceError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Setup(String),
    /// Something the replay checks went wrong; the first failure, with how many followed.
    #[error("replay failed: {0}")]
    Failed(String),
    #[error("replay stalled: nothing moved for {seconds} s ({state})")]
    Stalled { seconds: u64, state: String },
}

/// How fast documents are sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// As fast as the hub accepts, within the in-flight bound.
    Unpaced,
    /// At most this many documents a second.
    DocumentsPerSecond(f64),
    /// Historical time (`at_unix_ms`) compressed by this factor.
    Speedup(f64),
}

/// Knobs of one replay. The defaults suit a 2-core machine running the hub in-process.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Sends in flight at once.
    pub send_concurrency: usize,
    /// Deliveries being verified, acknowledged and moved at once, over all nodes.
    pub receive_concurrency: usize,
    /// Unacknowledged items each node's stream accepts (the hub caps it at its `window_max`).
    pub window: u32,
    pub pace: Pace,
    pub progress: ProgressMode,
    /// Fail when no document, delivery or move completes for this long.
    pub stall_timeout: Duration,
    /// The embedded hub's manual clock, moved to each document's historical
    /// instant before it is sent (with retention: documents then age as
    /// they did, and leave for archives as the replay goes on).
    pub clock: Option<truc_hub::Clock>,
    /// The size of each document's one attachment.
    pub attachment_sizes: AttachmentSizes,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        Self {
            send_concurrency: 128,
            receive_concurrency: 512,
            window: 256,
            pace: Pace::Unpaced,
            progress: ProgressMode::Auto,
            stall_timeout: Duration::from_secs(120),
            clock: None,
            attachment_sizes: AttachmentSizes::default(),
        }
    }
}

/// What a replay did, and the hub's figures at the end.
#[derive(Debug, Clone)]
pub struct ReplayOutcome {
    pub units: usize,
    pub documents: u64,
    pub deliveries: u64,
    pub moves: u64,
    /// Notices (arrivals and moves routed back to senders) acknowledged by the time the last
    /// move was recorded; the rest stay queued for the senders' next connection.
    pub notices: u64,
    pub send_retries: u64,
    /// Batches of moves tried again after a passing failure (hub unavailable, stream cut).
    pub move_retries: u64,
    /// Certificates loaded and connections opened.
    pub connect: Duration,
    /// From the first send until every delivery and move was on record.
    pub run: Duration,
    pub figures: HubFigures,
    /// The attachments' sizes and the bytes the hub accepted.
    pub attachments: AttachmentsSent,
}

impl ReplayOutcome {
    /// Per-second rates over `run`.
    pub fn rates(&self) -> (f64, f64, f64) {
        let seconds = self.run.as_secs_f64().max(1e-9);
        (
            self.documents as f64 / seconds,
            self.deliveries as f64 / seconds,
            self.moves as f64 / seconds,
        )
    }

    pub fn summary(&self) -> String {
        let (documents, deliveries, moves) = self.rates();
        format!(
            "replayed {} documents, {} deliveries and {} status moves over {} nodes in {:.1} s \
             ({:.0} documents/s, {:.0} deliveries/s, {:.0} moves/s; connecting took {:.1} s; \
             {} move batches and {} sends retried)",
            crate::report::group(self.documents),
            crate::report::group(self.deliveries),
            crate::report::group(self.moves),
            self.units,
            self.run.as_secs_f64(),
            documents,
            deliveries,
            moves,
            self.connect.as_secs_f64(),
            self.move_retries,
            self.send_retries,
        )
    }
}

/// One unit's node: its connection and what it reports after arrival.
struct Node {
    code: String,
    name: String,
    client: AxisClient,
    /// The unit's own trust roots, remembering the sender certificates it has verified.
    roots: TrustRoots,
    moves: &'static [Status],
}

/// State shared by every task of one replay.
struct Shared {
    options: ReplayOptions,
    sent: AtomicU64,
    arrived: AtomicU64,
    moved: AtomicU64,
    notices: AtomicU64,
    /// Attachment bytes of the documents the hub accepted.
    attachment_bytes: AtomicU64,
    send_retries: AtomicU64,
    move_retries: AtomicU64,
    failures: AtomicU64,
    first_failure: Mutex<Option<String>>,
    receive_slots: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
}

impl Shared {
    fn fail(&self, what: String) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_failure.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            *first = Some(what);
        }
    }

    fn failure(&self) -> Option<String> {
        let first = self.first_failure.lock().unwrap_or_else(|p| p.into_inner());
        first.as_ref().map(|what| {
            let more = self.failures.load(Ordering::Relaxed).saturating_sub(1);
            if more > 0 {
                format!("{what} (and {more} more failures)")
            } else {
                what.clone()
            }
        })
    }

    fn done(&self) -> (u64, u64, u64) {
        (
            self.sent.load(Ordering::Relaxed),
            self.arrived.load(Ordering::Relaxed),
            self.moved.load(Ordering::Relaxed),
        )
    }
}

/// Replays `plan` through the hub at `target` and returns the hub's own figures for the plan's
/// period once every planned delivery has arrived and every planned move is on record.
pub async fn replay(
    plan: Arc<Plan>,
    target: &Target,
    options: ReplayOptions,
) -> Result<ReplayOutcome, DriverError> {
    let connect_started = Instant::now();
    target.check_certificates(&plan)?;
    let roots = target.pki.trust_roots()?;
    let operator = target.operator_client().await?;
    let nodes = connect_nodes(&plan, target, &roots).await?;
    let connect = connect_started.elapsed();

    let documents = plan.documents.len() as u64;
    let deliveries: u64 = plan
        .documents
        .iter()
        .map(|document| document.recipients.len() as u64)
        .sum();
    let moves: u64 = plan
        .documents
        .iter()
        .flat_map(|document| &document.recipients)
        .map(|recipient| nodes[&recipient.to_string()].moves.len() as u64)
        .sum();

    let (stop_sender, stop) = watch::channel(false);
    let shared = Arc::new(Shared {
        sent: AtomicU64::new(0),
        arrived: AtomicU64::new(0),
        moved: AtomicU64::new(0),
        notices: AtomicU64::new(0),
        attachment_bytes: AtomicU64::new(0),
        send_retries: AtomicU64::new(0),
        move_retries: AtomicU64::new(0),
        failures: AtomicU64::new(0),
        first_failure: Mutex::new(None),
        receive_slots: Arc::new(Semaphore::new(options.receive_concurrency.max(1))),
        stop,
        options: options.clone(),
    });
    let run_started = Instant::now();
    let progress = Progress::start(
        options.progress,
        Totals {
            documents,
            deliveries,
            moves,
        },
    );

    let mut receivers = JoinSet::new();
    for node in nodes.values() {
        let (moves, waiting) = mpsc::unbounded_channel();
        receivers.spawn(nodes::move_loop(node.clone(), shared.clone(), waiting));
        receivers.spawn(nodes::receive_loop(node.clone(), shared.clone(), moves));
    }
    let dispatcher = tokio::spawn(senders::dispatch(
        plan.clone(),
        nodes.clone(),
        shared.clone(),
    ));

    // Wait for the last move, watching for failures and stalls.
    let mut last_done = (u64::MAX, 0, 0);
    let mut last_change = Instant::now();
    let outcome = loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let done = shared.done();
        progress.update(done, shared.notices.load(Ordering::Relaxed));
        if let Some(failure) = shared.failure() {
            break Err(DriverError::Failed(failure));
        }
        if done == (documents, deliveries, moves) {
            break Ok(());
        }
        if done != last_done {
            last_done = done;
            last_change = Instant::now();
        } else if last_change.elapsed() >= options.stall_timeout {
            break Err(DriverError::Stalled {
                seconds: options.stall_timeout.as_secs(),
                state: format!(
                    "{}/{documents} documents sent, {}/{deliveries} deliveries arrived, \
                     {}/{moves} moves recorded",
                    done.0, done.1, done.2
                ),
            });
        }
    };
    if outcome.is_ok() {
        // Arrivals of units that report nothing after "arrived" are written after their
        // acknowledgement, with no reply: wait until the hub's counters hold all of them.
        let deadline = Instant::now() + options.stall_timeout;
        loop {
            let counts = operator
                .counts(&plan.period.0.iso(), &plan.period.1.iso())
                .await?;
            if counts.total_received >= deliveries && counts.total_sent >= documents {
                break;
            }
            if Instant::now() >= deadline {
                progress.finish();
                return Err(DriverError::Stalled {
                    seconds: options.stall_timeout.as_secs(),
                    state: format!(
                        "the hub counts {} of {deliveries} arrivals",
                        counts.total_received
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let run = run_started.elapsed();
    progress.update(shared.done(), shared.notices.load(Ordering::Relaxed));
    progress.finish();
    let _ = stop_sender.send(true);
    dispatcher.abort();
    receivers.abort_all();
    while receivers.join_next().await.is_some() {}
    outcome?;

    let focus: AgencyCode = GOVERNMENT_OFFICE
        .parse()
        .expect("the Government Office code is well formed");
    let figures = figures_from_hub(
        &operator,
        (Some(plan.period.0), Some(plan.period.1)),
        &focus,
    )
    .await?;
    Ok(ReplayOutcome {
        units: nodes.len(),
        documents,
        deliveries,
        moves,
        notices: shared.notices.load(Ordering::Relaxed),
        send_retries: shared.send_retries.load(Ordering::Relaxed),
        move_retries: shared.move_retries.load(Ordering::Relaxed),
        connect,
        run,
        figures,
        attachments: AttachmentsSent {
            sizes: options.attachment_sizes,
            documents: shared.sent.load(Ordering::Relaxed),
            total_bytes: shared.attachment_bytes.load(Ordering::Relaxed),
        },
    })
}

type Nodes = Arc<std::collections::HashMap<String, Arc<Node>>>;

/// One connection per unit, each with the unit's own certificate.
async fn connect_nodes(
    plan: &Plan,
    target: &Target,
    roots: &TrustRoots,
) -> Result<Nodes, DriverError> {
    let slots = Arc::new(Semaphore::new(CONNECTS_IN_FLIGHT_MAX));
    let mut connecting = JoinSet::new();
    for unit in &plan.units {
        let code = unit.code.to_string();
        let name = unit.name.clone();
        let moves = crate::plan::FeedbackProfile::moves(
            plan.feedback
                .get(&unit.code)
                .copied()
                .unwrap_or(crate::plan::FeedbackProfile::Full),
        );
        let credentials = target.pki.agency_credentials(&code)?;
        let roots = roots.clone();
        let hubs = target.hubs.clone();
        let slots = slots.clone();
        connecting.spawn(async move {
            let _slot = slots.acquire_owned().await;
            let client = AxisClient::connect_hubs(&hubs, &roots, credentials).await?;
            Ok::<_, ClientError>(Node {
                code,
                name,
                client,
                roots: roots.with_own_cache(),
                moves,
            })
        });
    }
    let mut nodes = std::collections::HashMap::with_capacity(plan.units.len());
    while let Some(joined) = connecting.join_next().await {
        let node = joined.map_err(|error| DriverError::Setup(error.to_string()))??;
        nodes.insert(node.code.clone(), Arc::new(node));
    }
    Ok(Arc::new(nodes))
}

fn retry_delay(attempt: u32) -> Duration {
    (Duration::from_millis(1) * 2u32.saturating_pow(attempt.min(10))).min(RETRY_DELAY_MAX)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// Bytes of the files under `dir`, as their lengths say.
    fn file_bytes(dir: &Path) -> u64 {
        let mut total = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let metadata = entry.metadata().unwrap();
            total += if metadata.is_dir() {
                file_bytes(&entry.path())
            } else {
                metadata.len()
            };
        }
        total
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replay_of_pdf_sized_documents_reproduces_its_figures_and_counts_its_bytes() {
        let scale = (1, 5000);
        let plan = Arc::new(crate::plan::plan_2021(3, Some(scale)).unwrap());
        let sizes = AttachmentSizes::Pdf;
        let planned_bytes: u64 = plan
            .documents
            .iter()
            .map(|document| sizes.size_of(plan.seed, document.seq))
            .sum();
        let data = tempfile::tempdir().unwrap();
        let data_dir = data.path().join("hub");
        let hub = EmbeddedHub::start(&plan, Some(&data_dir)).await.unwrap();
        let options = ReplayOptions {
            progress: ProgressMode::Off,
            // A broken hub fails the test instead of hanging it.
            stall_timeout: Duration::from_secs(60),
            attachment_sizes: sizes,
            ..ReplayOptions::default()
        };
        let outcome = replay(plan.clone(), &hub.target, options).await.unwrap();
        let (documents, deliveries) = plan.totals();

        // The sizes change nothing of what the hub counts.
        assert_eq!(
            outcome.figures.counter_totals,
            Some((documents, deliveries))
        );
        for (code, (sent, received)) in plan.counts() {
            let measured = outcome
                .figures
                .agencies
                .get(&code)
                .map(|row| (row.sent, row.received))
                .unwrap_or((0, 0));
            assert_eq!(measured, (sent, received), "{code}");
        }
        let expected = crate::published::Expected::for_plan(&plan, Some(scale)).unwrap();
        let mut report = crate::report::Report::build(
            &outcome.figures,
            Some(&expected),
            (Some(plan.period.0), Some(plan.period.1)),
            crate::report::FigureSource::Hub {
                address: hub.target.hubs.to_string(),
                embedded: true,
            },
        );
        assert_eq!(report.mismatches(), Vec::new(), "{}", report.render_text());

        // Every document's bytes were sent once, as the plan's seed sized them, well above
        // the default 320 B each.
        assert_eq!(outcome.attachments.documents, documents);
        assert_eq!(outcome.attachments.total_bytes, planned_bytes);
        assert!(planned_bytes >= documents * 16 * 1024, "{planned_bytes}");
        report.attachments = Some(outcome.attachments.clone());
        let json = report.to_json();
        assert_eq!(json["attachments"]["sizes"], "pdf");
        assert_eq!(json["attachments"]["total_bytes"], planned_bytes);
        let text = report.render_text();
        assert!(text.contains("ASSUMED distribution"), "{text}");
        assert!(
            text.contains(&format!(
                "{} bytes sent in all",
                crate::report::group(planned_bytes)
            )),
            "{text}"
        );
        hub.stop().await.unwrap();
        // And the hub's payload log holds at least those bytes: they were really stored.
        let stored = file_bytes(&data_dir.join("payload"));
        assert!(stored >= planned_bytes, "{stored} < {planned_bytes}");
    }
}
