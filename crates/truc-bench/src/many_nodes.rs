//! `truc bench --scenario nodes`: many nodes on one hub. A hub in its own
//! process with a directory of `nodes` agencies (`000.BB.CC.Nnn`), each with
//! its own certificate and key; the same number of node agents in this
//! process (`truc_node::run_node`, as `truc node` runs it, without an inbox
//! folder), each on its own mutual-TLS connection holding its delivery
//! stream. Measured: the hub's resident memory before any node and once all
//! are connected and idle (bytes per idle node), the time to connect them all
//! from cold, send → delivered latency of a paced sender to random recipients
//! while all are connected (deliveries checked against the hub's counts), and
//! after a `kill -9` of the hub and its restart on the same data directory and
//! port, the time until every node has its delivery stream open again, with
//! the nodes' own reconnection backoff.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use truc_domain::views::{Counts, StatusCode};
use truc_domain::{SplitMix64, Status};
use truc_node::{AxisClient, NodeConfig, NodeEvent};
use truc_pki::{Credentials, TrustRoots};

use crate::agencies::{Agency, ScenarioKind};
use crate::documents::{sign_bench_document, sign_in_parallel, RunTag, SignedDocument, Signing};
use crate::error::BenchError;
use crate::hub_process::{log_tail, HubExtras, HubTarget, SpawnedHub};
use crate::latency::{LatencyRecorder, LatencySummary};
use crate::nodes::{NodeCounters, PhaseTracker};
use crate::report::{group, Machine};
use crate::resources::{cpu_seconds, rss_bytes};
use crate::scenarios::send_to_hub;

/// Nodes unless `--nodes` says: the order of the axis with its communes.
pub const NODES_DEFAULT: usize = 10_000;
/// Documents per second of the paced sender unless `--rate` says: well
/// below what the hub accepts, so that the latency is that of a hub holding
/// many streams, not of a saturated one.
pub const NODES_RATE_DEFAULT: f64 = 200.0;
/// Most nodes: four per body number, group and subgroup
/// (`000.BB.CC.Nnn`, 99 × 99 × 100) is far beyond one process's files.
pub const NODES_MAX: usize = 99 * 99 * 100;
/// The longest wait between a node's reconnection attempts, as `truc node`
/// runs its agent.
const NODE_BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Agencies that send in the delivery phase (the first nodes), each on a
/// connection of its own beside its node's.
const SENDERS_MAX: usize = 8;
/// Sends in flight at once in the delivery phase, shared by the senders:
/// under the hub's 16 per agency.
const SENDS_IN_FLIGHT: usize = 64;
/// Quiet time before each memory reading, for the hub to finish what the
/// connections started (handshake buffers freed, sessions registered).
const SETTLE: Duration = Duration::from_secs(5);
/// Longest wait for every node to open its stream, from cold or after the restart.
const CONNECT_WAIT_MAX: Duration = Duration::from_secs(180);
/// Longest wait for the restarted hub to accept connections.
const RESTART_WAIT_MAX: Duration = Duration::from_secs(60);
/// Longest wait for the deliveries, notices and the hub's counts of the
/// delivery phase after its last send.
const DRAIN_MAX: Duration = Duration::from_secs(60);
/// How often a long wait says how far it has got.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// Events a node may have waiting for the bench; the agent waits when full.
const EVENTS_QUEUED_MAX: usize = 64;

/// What one many-nodes run does.
#[derive(Clone, Debug)]
pub struct ManyNodesOptions {
    pub nodes: usize,
    /// Length of the paced delivery phase.
    pub duration: Duration,
    /// Documents per second in the delivery phase, one recipient each.
    pub rate: f64,
    pub attachment_bytes: usize,
    /// Unacknowledged items each node's stream accepts.
    pub window: u32,
    /// Keep the hub's folder here.
    pub keep: Option<PathBuf>,
}

impl ManyNodesOptions {
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(2..=NODES_MAX).contains(&self.nodes) {
            problems.push(format!("--nodes must be between 2 and {NODES_MAX}"));
        }
        if !(self.rate.is_finite() && self.rate > 0.0) {
            problems.push("--rate must be a number of documents per second".to_owned());
        }
        if self.duration.is_zero() {
            problems.push("--duration must be at least 1 second".to_owned());
        }
        if self.window == 0 {
            problems.push("--window must be at least 1".to_owned());
        }
        problems
    }
}

/// `count` agencies of the nodes scenario: `000.00.01.N01` … `000.00.01.N99`,
/// `000.00.02.N01` …, then `000.01.01.N01` …: codes of level 2 and 3 under
/// the scenario's own letter, each with a node of its own.
pub fn node_agencies(count: usize) -> Vec<Agency> {
    assert!(count <= NODES_MAX, "at most {NODES_MAX} nodes");
    let letter = ScenarioKind::Nodes.letter();
    (0..count)
        .map(|index| {
            let body = index % 99 + 1;
            let group = index / 99;
            // Level 2 is never 00: a level-3 group under an absent level 2 is no code.
            let (level3, level2) = (group / 99, group % 99 + 1);
            Agency {
                code: format!("000.{level3:02}.{level2:02}.{letter}{body:02}"),
                name: format!("Bench node {:05}", index + 1),
            }
        })
        .collect()
}

/// The delivery phase's figures.
#[derive(Clone, Debug, Default, Serialize)]
pub struct NodesDelivery {
    pub rate: f64,
    pub seconds: f64,
    pub senders: usize,
    pub documents_sent: u64,
    pub documents_acknowledged: u64,
    pub send_failures: u64,
    pub deliveries_received: u64,
    /// Of the hub's own counts, what this phase added.
    pub hub_documents_accepted: u64,
    pub hub_arrivals_recorded: u64,
    /// "arrived" notices the senders' nodes received.
    pub arrival_notices: u64,
    /// Send (its planned start) to the hub's acknowledgement.
    pub send_to_ack: LatencySummary,
    /// Send (its planned start) to the recipient's node holding the
    /// delivery, its certificate and signature verified, before its
    /// acknowledgement.
    pub send_to_delivered: LatencySummary,
    /// Received = acknowledged = the hub's accepted and arrivals = notices.
    pub consistent: bool,
}

/// The restart's figures.
#[derive(Clone, Debug, Default, Serialize)]
pub struct NodesRestart {
    /// How the hub was stopped.
    pub stop: String,
    /// From the kill to the restarted hub accepting TCP connections.
    pub down_seconds: f64,
    /// From the hub accepting connections to the last node's stream open.
    pub reconnect_seconds: f64,
    /// From the kill to the last node's stream open.
    pub kill_to_all_seconds: f64,
    /// Each node's stream reopened, after the hub accepted connections.
    pub reopened_after_accepting: LatencySummary,
    pub streams_reopened: u64,
    /// The hub's `ListNodes`, once they are back.
    pub hub_nodes_online: u64,
    /// CPU seconds of the restarted hub (from its start) and of the bench
    /// (from the kill) until the last stream reopened.
    pub hub_cpu_seconds: Option<f64>,
    pub bench_cpu_seconds: Option<f64>,
    /// The hub's counts after the restart equal those before the kill.
    pub counts_kept: bool,
    pub hub_rss_after_bytes: Option<u64>,
    /// The kernel's TCP counters from the kill to the last stream reopened.
    pub tcp: TcpCounters,
}

/// What the kernel counted over a phase (`/proc/net/netstat`, the whole
/// machine's): connections a full listen queue dropped, and SYNs sent again
/// after one was not answered (each costs the client a second or more).
#[derive(Clone, Debug, Default, Serialize)]
pub struct TcpCounters {
    pub listen_overflows: Option<u64>,
    pub syn_retransmits: Option<u64>,
}

impl TcpCounters {
    fn now() -> TcpCounters {
        let text = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
        TcpCounters {
            listen_overflows: netstat_field(&text, "TcpExt:", "ListenOverflows"),
            syn_retransmits: netstat_field(&text, "TcpExt:", "TCPSynRetrans"),
        }
    }

    fn since(&self, before: &TcpCounters) -> TcpCounters {
        let difference = |now: Option<u64>, then: Option<u64>| Some(now?.saturating_sub(then?));
        TcpCounters {
            listen_overflows: difference(self.listen_overflows, before.listen_overflows),
            syn_retransmits: difference(self.syn_retransmits, before.syn_retransmits),
        }
    }

    fn describe(&self) -> String {
        let show = |value: Option<u64>| value.map_or_else(|| "?".to_owned(), group);
        format!(
            "{} listen-queue overflows, {} SYN retransmits (machine-wide)",
            show(self.listen_overflows),
            show(self.syn_retransmits)
        )
    }
}

/// One counter of `/proc/net/netstat`, whose lines come in pairs: the names
/// after `prefix`, then their values.
fn netstat_field(text: &str, prefix: &str, name: &str) -> Option<u64> {
    let mut lines = text.lines().filter(|line| line.starts_with(prefix));
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        let position = names.split_whitespace().position(|field| field == name);
        if let Some(position) = position {
            return values.split_whitespace().nth(position)?.parse().ok();
        }
    }
    None
}

#[derive(Debug, Default, Serialize)]
pub struct ManyNodesReport {
    pub command: String,
    pub machine: Machine,
    pub nodes: usize,
    pub window: u32,
    /// Certificates of the development PKI (the CA, the hub, every agency,
    /// the operator) and the seconds their issuing took, read from the
    /// files' modification times.
    pub certificates: usize,
    pub certificates_seconds: Option<f64>,
    /// From the start of the run to the hub answering: the PKI, the
    /// directory file, the hub's start.
    pub setup_seconds: f64,
    pub hub_rss_before_bytes: Option<u64>,
    pub hub_rss_connected_bytes: Option<u64>,
    /// (connected − before) / nodes.
    pub hub_bytes_per_idle_node: Option<f64>,
    /// The same for this process, which holds the nodes' side.
    pub bench_bytes_per_node: Option<f64>,
    /// From starting every node at once to the last stream open.
    pub connect_seconds: f64,
    /// Each node's stream open, from the start.
    pub connect: LatencySummary,
    /// Over the cold connect, on average.
    pub connect_hub_cores: Option<f64>,
    pub connect_bench_cores: Option<f64>,
    /// The hub's `ListNodes` once all are connected.
    pub hub_nodes_online: u64,
    /// The kernel's TCP counters over the cold connect.
    pub connect_tcp: TcpCounters,
    pub delivery: NodesDelivery,
    pub restart: NodesRestart,
    pub failures: Vec<String>,
}

/// What every node's events update.
struct Shared {
    origin: Instant,
    codes: Vec<String>,
    /// Streams opened per node.
    opened: Vec<AtomicU32>,
    /// Microseconds after `origin` at which each node's latest stream opened.
    opened_at: Vec<AtomicU64>,
    streams_opened: AtomicU64,
    tag: RunTag,
    phase: RwLock<Option<Arc<PhaseTracker>>>,
    counters: NodeCounters,
}

impl Shared {
    fn micros_now(&self) -> u64 {
        self.origin.elapsed().as_micros() as u64
    }

    fn on_event(&self, node: usize, event: NodeEvent) {
        let counters = &self.counters;
        match event {
            NodeEvent::Connected { .. } => {
                self.opened_at[node].store(self.micros_now(), Ordering::Release);
                self.opened[node].fetch_add(1, Ordering::AcqRel);
                self.streams_opened.fetch_add(1, Ordering::AcqRel);
            }
            NodeEvent::Delivered {
                document_id,
                recipient,
                ..
            } => {
                let now = Instant::now();
                if recipient != self.codes[node] {
                    counters.fail(format!(
                        "{} was handed a delivery for {recipient}",
                        self.codes[node]
                    ));
                    return;
                }
                let phase = self.phase.read().unwrap_or_else(|p| p.into_inner()).clone();
                match (self.tag.index_of(&document_id), phase) {
                    (Some(index), Some(phase)) if phase.delivered(index, now) => {}
                    (Some(_), _) => {
                        counters.outside_phase.fetch_add(1, Ordering::AcqRel);
                    }
                    (None, _) => {
                        counters.other_runs.fetch_add(1, Ordering::AcqRel);
                    }
                }
            }
            NodeEvent::Notice(notice) => {
                if self.tag.index_of(&notice.document_id).is_some() {
                    for entry in &notice.entries {
                        if entry.status == StatusCode::Status(Status::Arrived) {
                            counters.notices_arrived.fetch_add(1, Ordering::AcqRel);
                        } else {
                            counters.notices_moved.fetch_add(1, Ordering::AcqRel);
                        }
                    }
                }
            }
            NodeEvent::Refused {
                document_id,
                reason,
            } => counters.fail(format!(
                "{}: delivery {document_id} does not verify: {reason}",
                self.codes[node]
            )),
            NodeEvent::Recalled { .. } | NodeEvent::Outbox(_) => {}
        }
    }

    /// Streams each node has opened so far.
    fn opened_counts(&self) -> Vec<u32> {
        self.opened
            .iter()
            .map(|count| count.load(Ordering::Acquire))
            .collect()
    }

    /// Nodes that opened a stream since `before` (each node's count then).
    fn nodes_opened_since(&self, before: &[u32]) -> usize {
        self.opened
            .iter()
            .zip(before)
            .filter(|(count, before)| count.load(Ordering::Acquire) > **before)
            .count()
    }

    /// Seconds after `origin` of each node's latest stream opening.
    fn opened_at_seconds(&self) -> Vec<f64> {
        self.opened_at
            .iter()
            .map(|at| at.load(Ordering::Acquire) as f64 / 1e6)
            .collect()
    }
}

/// The restarted hub, killed when dropped.
struct RestartedHub {
    child: Child,
}

impl Drop for RestartedHub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the scenario: starts the hub, connects the nodes, sends, restarts.
pub async fn run_many_nodes(
    program: &Path,
    options: &ManyNodesOptions,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<ManyNodesReport, BenchError> {
    let problems = options.problems();
    if !problems.is_empty() {
        return Err(BenchError::Usage(problems.join("; ")));
    }
    let mut report = ManyNodesReport {
        machine: Machine::this_one(),
        nodes: options.nodes,
        window: options.window,
        ..ManyNodesReport::default()
    };
    let agencies = node_agencies(options.nodes);
    let mut hub = start_hub(program, options, &agencies, progress, &mut report).await?;
    let target = hub.target.clone();
    let hub_pid = target.pid.unwrap_or(0);

    let operator = target.operator_client().await?;
    let _ = counts(&operator).await?;
    tokio::time::sleep(SETTLE).await;
    report.hub_rss_before_bytes = rss_bytes(hub_pid);
    let bench_rss_before = rss_bytes(std::process::id());

    // Credentials are read before the clock starts: each node's are its own files.
    let roots = target.pki.trust_roots()?;
    let credentials = read_credentials(&target, &agencies).await?;
    let tag = RunTag::new();
    let shared = Arc::new(Shared {
        origin: Instant::now(),
        codes: agencies.iter().map(|a| a.code.clone()).collect(),
        opened: (0..options.nodes).map(|_| AtomicU32::new(0)).collect(),
        opened_at: (0..options.nodes).map(|_| AtomicU64::new(0)).collect(),
        streams_opened: AtomicU64::new(0),
        tag: tag.clone(),
        phase: RwLock::new(None),
        counters: NodeCounters::default(),
    });

    progress(&format!(
        "starting {} nodes at once, each on its own mutual-TLS connection",
        group(options.nodes as u64)
    ));
    let (stop, stopped) = watch::channel(false);
    let cpu_hub = cpu_seconds(hub_pid);
    let cpu_bench = cpu_seconds(std::process::id());
    let tcp_before = TcpCounters::now();
    let connect_started = Instant::now();
    let connect_offset = connect_started.duration_since(shared.origin).as_secs_f64();
    let nodes = spawn_nodes(options, &target, &roots, &credentials, &shared, &stopped);
    let none = vec![0; options.nodes];
    let all_open = wait_for_streams(&shared, &none, CONNECT_WAIT_MAX, progress, "connecting").await;
    let connect_elapsed = connect_started.elapsed().as_secs_f64();
    report.connect_tcp = TcpCounters::now().since(&tcp_before);
    report.connect_hub_cores =
        cpu_hub.and_then(|before| Some((cpu_seconds(hub_pid)? - before) / connect_elapsed));
    report.connect_bench_cores = cpu_bench
        .and_then(|before| Some((cpu_seconds(std::process::id())? - before) / connect_elapsed));
    let opened = shared.opened_at_seconds();
    report.connect = summary(opened.iter().map(|at| at - connect_offset));
    report.connect_seconds = opened
        .iter()
        .fold(0.0f64, |latest, at| latest.max(at - connect_offset));
    if !all_open {
        report.failures.push(format!(
            "{} of {} nodes opened their delivery stream within {} s",
            shared.nodes_opened_since(&none),
            options.nodes,
            CONNECT_WAIT_MAX.as_secs()
        ));
        finish(stop, nodes).await;
        return Ok(report);
    }
    progress(&format!(
        "all {} streams open in {:.2} s; idle for {} s before reading the hub's memory",
        group(options.nodes as u64),
        report.connect_seconds,
        SETTLE.as_secs()
    ));
    measure_idle_nodes(options, &operator, hub_pid, bench_rss_before, &mut report).await?;

    report.delivery = deliver(
        options,
        &target,
        &agencies,
        &credentials,
        &operator,
        &shared,
        progress,
        &mut report.failures,
    )
    .await?;

    report.restart = restart(
        program,
        &mut hub,
        &target,
        &shared,
        progress,
        &mut report.failures,
    )
    .await?;

    node_failures(&shared, &mut report.failures);
    finish(stop, nodes).await;
    Ok(report)
}

/// Issues every agency's certificate and starts the hub, noting in `report`
/// how long both took.
async fn start_hub(
    program: &Path,
    options: &ManyNodesOptions,
    agencies: &[Agency],
    progress: &(dyn Fn(&str) + Sync),
    report: &mut ManyNodesReport,
) -> Result<SpawnedHub, BenchError> {
    progress(&format!(
        "issuing {} agency certificates and starting `truc hub` as its own process",
        group(options.nodes as u64)
    ));
    let started = Instant::now();
    let hub = SpawnedHub::start_with(
        program,
        agencies,
        options.keep.as_deref(),
        &HubExtras::default(),
    )
    .await?;
    report.setup_seconds = started.elapsed().as_secs_f64();
    let target = &hub.target;
    let (certificates, certificates_seconds) = issuing_time(&target.pki.dir);
    report.certificates = certificates;
    report.certificates_seconds = certificates_seconds;
    let hub_pid = target.pid.unwrap_or(0);
    let address = target.hubs.first();
    progress(&format!(
        "hub pid {hub_pid} on {address} (log {}); {} certificates issued in {}",
        hub.log_path.display(),
        group(certificates as u64),
        certificates_seconds.map_or_else(|| "unknown".to_owned(), |s| format!("{s:.1} s"))
    ));
    Ok(hub)
}

/// Every agency's credentials, read from its own files off the runtime.
async fn read_credentials(
    target: &HubTarget,
    agencies: &[Agency],
) -> Result<Vec<Credentials>, BenchError> {
    let pki = target.pki.clone();
    let codes: Vec<String> = agencies.iter().map(|a| a.code.clone()).collect();
    let credentials = tokio::task::spawn_blocking(move || {
        codes
            .iter()
            .map(|code| pki.agency_credentials(code))
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|error| BenchError::Setup(error.to_string()))??;
    Ok(credentials)
}

/// Starts a node per agency, each on its own connection, passing its events
/// on to `shared` until `stopped`.
fn spawn_nodes(
    options: &ManyNodesOptions,
    target: &HubTarget,
    roots: &TrustRoots,
    credentials: &[Credentials],
    shared: &Arc<Shared>,
    stopped: &watch::Receiver<bool>,
) -> JoinSet<()> {
    let mut nodes = JoinSet::new();
    for (index, credentials) in credentials.iter().enumerate() {
        let (events, received) = mpsc::channel(EVENTS_QUEUED_MAX);
        let config = NodeConfig {
            hubs: target.hubs.clone(),
            roots: roots.clone(),
            credentials: credentials.clone(),
            inbox: None,
            window: options.window,
            events: Some(events),
            backoff_max: NODE_BACKOFF_MAX,
            edxml: false,
            outbox: None,
        };
        nodes.spawn(run_one_node(
            index,
            config,
            received,
            shared.clone(),
            stopped.clone(),
        ));
    }
    nodes
}

/// With every stream open and the hub idle: what each idle node costs the
/// hub and the bench in memory, and whether the hub lists them all.
async fn measure_idle_nodes(
    options: &ManyNodesOptions,
    operator: &AxisClient,
    hub_pid: u32,
    bench_rss_before: Option<u64>,
    report: &mut ManyNodesReport,
) -> Result<(), BenchError> {
    tokio::time::sleep(SETTLE).await;
    report.hub_rss_connected_bytes = rss_bytes(hub_pid);
    report.hub_bytes_per_idle_node = per_node(
        report.hub_rss_before_bytes,
        report.hub_rss_connected_bytes,
        options.nodes,
    );
    report.bench_bytes_per_node = per_node(
        bench_rss_before,
        rss_bytes(std::process::id()),
        options.nodes,
    );
    report.hub_nodes_online = nodes_online(operator).await?;
    if report.hub_nodes_online != options.nodes as u64 {
        report.failures.push(format!(
            "the hub lists {} nodes online of {}",
            report.hub_nodes_online, options.nodes
        ));
    }
    Ok(())
}

/// The nodes' own failures, and deliveries that arrived outside the
/// delivery phase.
fn node_failures(shared: &Shared, failures: &mut Vec<String>) {
    // Each node delivers a document once (its agent keeps what it saw), and
    // every document of the run belongs to the delivery phase.
    let outside = shared.counters.outside_phase.load(Ordering::Acquire);
    if outside > 0 {
        failures.push(format!(
            "{outside} deliveries of this run arrived outside the delivery phase"
        ));
    }
    if let Some(failure) = shared.counters.first_failure() {
        failures.push(format!(
            "nodes: {} failures; the first: {failure}",
            shared.counters.failures.load(Ordering::Acquire)
        ));
    }
}

/// One node: the agent, and its events passed on to `shared`.
async fn run_one_node(
    index: usize,
    config: NodeConfig,
    mut events: mpsc::Receiver<NodeEvent>,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
) {
    let shutdown = async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    // The agent drops its sender when it returns, which ends the loop.
    let forward = async {
        while let Some(event) = events.recv().await {
            shared.on_event(index, event);
        }
    };
    tokio::join!(truc_node::run_node(config, shutdown), forward);
}

async fn finish(stop: watch::Sender<bool>, mut nodes: JoinSet<()>) {
    let _ = stop.send(true);
    while nodes.join_next().await.is_some() {}
}

/// Waits until every node has opened a stream since `before` (each node's
/// count of streams then), saying how far it has got; false if `timeout`
/// passed first.
async fn wait_for_streams(
    shared: &Shared,
    before: &[u32],
    timeout: Duration,
    progress: &(dyn Fn(&str) + Sync),
    doing: &str,
) -> bool {
    let started = Instant::now();
    let mut said = started;
    let total = shared.codes.len();
    loop {
        let open = shared.nodes_opened_since(before);
        if open == total {
            return true;
        }
        if started.elapsed() >= timeout {
            return false;
        }
        if said.elapsed() >= PROGRESS_EVERY {
            said = Instant::now();
            progress(&format!(
                "{doing}: {} of {} streams open after {:.0} s",
                group(open as u64),
                group(total as u64),
                started.elapsed().as_secs_f64()
            ));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The paced sender: documents from the first nodes to one random other
/// node each, signed beforehand; every delivery counted at its recipient
/// and checked against the hub's counts.
#[allow(clippy::too_many_arguments)]
async fn deliver(
    options: &ManyNodesOptions,
    target: &HubTarget,
    agencies: &[Agency],
    credentials: &[truc_pki::Credentials],
    operator: &AxisClient,
    shared: &Arc<Shared>,
    progress: &(dyn Fn(&str) + Sync),
    failures: &mut Vec<String>,
) -> Result<NodesDelivery, BenchError> {
    let senders = SENDERS_MAX.min(options.nodes / 2).max(1);
    let count = (options.rate * options.duration.as_secs_f64()).ceil() as u64;
    progress(&format!(
        "signing {} documents from {senders} senders to random nodes (not timed)",
        group(count)
    ));
    let maker = Arc::new(RandomRecipients {
        agencies: agencies.to_vec(),
        credentials: credentials[..senders].to_vec(),
        tag: shared.tag.clone(),
        attachment_bytes: options.attachment_bytes,
    });
    // One more than the phase sends: running out early would end it.
    let documents = sign_in_parallel(0..count + 1, move |index| {
        let maker = maker.clone();
        async move { maker.make(index).await }
    })
    .await?;
    let roots = target.pki.trust_roots()?;
    let mut clients = Vec::with_capacity(senders);
    for credentials in &credentials[..senders] {
        clients.push(AxisClient::connect_hubs(&target.hubs, &roots, credentials.clone()).await?);
    }
    let before = counts(operator).await?;
    let notices_before = shared.counters.notices_arrived.load(Ordering::Acquire);
    let phase = Arc::new(PhaseTracker::new(0..count + 1, false));
    *shared.phase.write().unwrap_or_else(|p| p.into_inner()) = Some(phase.clone());
    progress(&format!(
        "sending {:.0} documents/s for {} s, one random recipient each, every node connected",
        options.rate,
        options.duration.as_secs()
    ));
    let outcome = send_to_hub(
        &clients,
        documents,
        phase.clone(),
        Some(options.rate),
        options.duration,
        SENDS_IN_FLIGHT,
        DRAIN_MAX,
    )
    .await;
    if outcome.failures > 0 {
        failures.push(format!(
            "delivery phase: {} sends failed; the first: {}",
            outcome.failures,
            outcome.first_failure.as_deref().unwrap_or("?")
        ));
    }
    let expected = outcome.units;
    let counters = &shared.counters;
    let deadline = Instant::now() + DRAIN_MAX;
    while phase.delivered_count() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let received = phase.delivered_count();
    while counters.notices_arrived.load(Ordering::Acquire) - notices_before < received
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Acknowledgements on a stream have no answer: the hub's counts may lag.
    let mut after = counts(operator).await?;
    while after.total_received - before.total_received < received && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        after = counts(operator).await?;
    }
    *shared.phase.write().unwrap_or_else(|p| p.into_inner()) = None;
    let figures = NodesDelivery {
        rate: options.rate,
        seconds: options.duration.as_secs_f64(),
        senders,
        documents_sent: outcome.started,
        documents_acknowledged: outcome.acknowledged,
        send_failures: outcome.failures,
        deliveries_received: received,
        hub_documents_accepted: after.total_sent - before.total_sent,
        hub_arrivals_recorded: after.total_received - before.total_received,
        arrival_notices: counters.notices_arrived.load(Ordering::Acquire) - notices_before,
        send_to_ack: outcome.latency,
        send_to_delivered: phase.send_to_delivery.summary(),
        consistent: false,
    };
    let consistent = figures.documents_acknowledged > 0
        && figures.deliveries_received == expected
        && expected == figures.documents_acknowledged
        && figures.hub_documents_accepted == figures.documents_acknowledged
        && figures.hub_arrivals_recorded == figures.deliveries_received
        && figures.arrival_notices == figures.deliveries_received;
    if !consistent {
        failures.push(format!(
            "delivery phase: {} documents acknowledged, {} deliveries received, the hub \
             accepted {} and recorded {} arrivals, {} arrival notices",
            figures.documents_acknowledged,
            figures.deliveries_received,
            figures.hub_documents_accepted,
            figures.hub_arrivals_recorded,
            figures.arrival_notices
        ));
    }
    Ok(NodesDelivery {
        consistent,
        ..figures
    })
}

/// Documents from the first agencies (the senders) to one other agency
/// each, drawn from the run's salt.
struct RandomRecipients {
    agencies: Vec<Agency>,
    /// The senders'.
    credentials: Vec<truc_pki::Credentials>,
    tag: RunTag,
    attachment_bytes: usize,
}

impl RandomRecipients {
    async fn make(&self, index: u64) -> Result<SignedDocument, BenchError> {
        let sender = (index % self.credentials.len() as u64) as usize;
        let mut random = SplitMix64::new(self.tag.salt ^ index.wrapping_mul(0x2545_F491_4F6C_DD1D));
        // Anyone but the sender.
        let drawn = random.below(self.agencies.len() as u64 - 1) as usize;
        let recipient = if drawn >= sender { drawn + 1 } else { drawn };
        sign_bench_document(
            &self.agencies,
            &self.credentials[sender],
            &self.tag,
            Signing {
                index,
                sender,
                recipients: vec![recipient],
                attachment_bytes: self.attachment_bytes,
                sign_document: false,
                subject: format!(
                    "Văn bản thử tải số {} gửi một trong nhiều đơn vị",
                    index + 1
                ),
            },
        )
        .await
    }
}

/// Kills the hub (SIGKILL), starts it again on the same folder and port,
/// and waits for every node to open its stream again.
async fn restart(
    program: &Path,
    hub: &mut SpawnedHub,
    target: &HubTarget,
    shared: &Arc<Shared>,
    progress: &(dyn Fn(&str) + Sync),
    failures: &mut Vec<String>,
) -> Result<NodesRestart, BenchError> {
    let operator = target.operator_client().await?;
    let before = counts(&operator).await?;
    drop(operator);
    let address = target.hubs.first();
    let root = hub
        .log_path
        .parent()
        .map(Path::to_owned)
        .ok_or_else(|| BenchError::Setup("the hub's log has no folder".to_owned()))?;
    let log_path = root.join("hub-restarted.log");
    let log = std::fs::File::create(&log_path)?;
    progress("killing the hub (SIGKILL) and starting it again on the same data directory and port");
    let opened_before = shared.opened_counts();
    let streams_before = shared.streams_opened.load(Ordering::Acquire);
    if streams_before != shared.codes.len() as u64 {
        // A stream that broke and reopened before the kill is a failure of its own.
        failures.push(format!(
            "{streams_before} streams opened for {} nodes before the restart",
            shared.codes.len()
        ));
    }
    let bench_cpu = cpu_seconds(std::process::id());
    let tcp_before = TcpCounters::now();
    let killed = Instant::now();
    hub.kill();
    let mut restarted = start_again(program, &root, log)?;
    let pid = restarted.child.id();
    let listening = wait_until_listening(&mut restarted, address, killed, &log_path).await?;
    let all_back = wait_for_streams(
        shared,
        &opened_before,
        CONNECT_WAIT_MAX,
        progress,
        "reconnecting",
    )
    .await;
    let tcp = TcpCounters::now().since(&tcp_before);
    let hub_cpu_seconds = cpu_seconds(pid);
    let bench_cpu_seconds =
        bench_cpu.and_then(|before| Some(cpu_seconds(std::process::id())? - before));
    // A node that was already waiting in the listen queue may be served
    // before this probe's own connection: the earlier of the two is when
    // the hub accepted.
    let killed_at = killed.duration_since(shared.origin).as_secs_f64();
    let reopened: Vec<f64> = shared
        .opened_at_seconds()
        .into_iter()
        .zip(shared.opened_counts().into_iter().zip(&opened_before))
        .filter(|(_, (now, before))| now > *before)
        .map(|(at, _)| at)
        .collect();
    let first_back = reopened.iter().copied().fold(f64::INFINITY, f64::min);
    let last_back = reopened.iter().copied().fold(0.0f64, f64::max);
    let accepting = (listening.duration_since(shared.origin).as_secs_f64()).min(first_back);
    let mut figures = NodesRestart {
        stop: "SIGKILL, then `truc hub` at once on the same config, data directory and port"
            .to_owned(),
        down_seconds: accepting - killed_at,
        reconnect_seconds: last_back - accepting,
        kill_to_all_seconds: last_back - killed_at,
        reopened_after_accepting: summary(reopened.iter().map(|at| at - accepting)),
        streams_reopened: reopened.len() as u64,
        hub_cpu_seconds,
        bench_cpu_seconds,
        tcp,
        ..NodesRestart::default()
    };
    if !all_back {
        failures.push(format!(
            "{} of {} nodes reopened their stream within {} s of the restart",
            reopened.len(),
            shared.codes.len(),
            CONNECT_WAIT_MAX.as_secs()
        ));
    }
    progress(&format!(
        "{} of {} streams reopened {:.2} s after the hub accepted connections again ({:.2} s after the kill)",
        group(reopened.len() as u64),
        group(shared.codes.len() as u64),
        figures.reconnect_seconds,
        figures.kill_to_all_seconds
    ));
    let operator = target.operator_client().await?;
    let after = counts(&operator).await?;
    figures.counts_kept =
        after.total_sent == before.total_sent && after.total_received == before.total_received;
    if !figures.counts_kept {
        failures.push(format!(
            "after the restart the hub counts {} documents and {} arrivals; before the kill {} and {}",
            after.total_sent, after.total_received, before.total_sent, before.total_received
        ));
    }
    tokio::time::sleep(SETTLE).await;
    figures.hub_rss_after_bytes = rss_bytes(pid);
    figures.hub_nodes_online = nodes_online(&operator).await?;
    if figures.hub_nodes_online != shared.codes.len() as u64 {
        failures.push(format!(
            "after the restart the hub lists {} nodes online of {}",
            figures.hub_nodes_online,
            shared.codes.len()
        ));
    }
    drop(restarted);
    Ok(figures)
}

/// Starts the hub again with the same command as the first start, on the
/// config it wrote in `root`, its output to `log`.
fn start_again(
    program: &Path,
    root: &Path,
    log: std::fs::File,
) -> Result<RestartedHub, BenchError> {
    let child = crate::hub_process::spawn_hub(program, &root.join("hub.toml"), &[], log)?;
    Ok(RestartedHub { child })
}

/// Waits until the restarted hub accepts a connection on `address`, and
/// returns when; fails if it exits, or is not listening
/// [`RESTART_WAIT_MAX`] after the kill.
async fn wait_until_listening(
    restarted: &mut RestartedHub,
    address: std::net::SocketAddr,
    killed: Instant,
    log_path: &Path,
) -> Result<Instant, BenchError> {
    loop {
        if tokio::net::TcpStream::connect(address).await.is_ok() {
            return Ok(Instant::now());
        }
        if let Some(status) = restarted.child.try_wait()? {
            return Err(BenchError::Setup(format!(
                "the restarted hub exited ({status}); its log {} ends with:\n{}",
                log_path.display(),
                log_tail(log_path)
            )));
        }
        if killed.elapsed() >= RESTART_WAIT_MAX {
            return Err(BenchError::Setup(format!(
                "the restarted hub did not accept a connection on {address} within {} s",
                RESTART_WAIT_MAX.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn counts(operator: &AxisClient) -> Result<Counts, BenchError> {
    Ok(operator.counts("", "").await?)
}

async fn nodes_online(operator: &AxisClient) -> Result<u64, BenchError> {
    let nodes = operator.list_nodes().await?;
    Ok(nodes.nodes.iter().filter(|node| node.online).count() as u64)
}

fn per_node(before: Option<u64>, after: Option<u64>, nodes: usize) -> Option<f64> {
    Some((after? as f64 - before? as f64) / nodes as f64)
}

/// Percentiles of times in seconds.
fn summary(seconds: impl Iterator<Item = f64>) -> LatencySummary {
    let recorder = LatencyRecorder::new();
    for value in seconds {
        recorder.record(Duration::from_secs_f64(value.max(0.0)));
    }
    recorder.summary()
}

/// How many certificates a PKI folder holds, and the seconds from its CA's
/// key to its last file (they are written in that order, nothing else).
fn issuing_time(pki: &Path) -> (usize, Option<f64>) {
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let mut certificates = 0;
    let mut last: Option<SystemTime> = None;
    let mut visit = |folder: &Path| {
        for entry in std::fs::read_dir(folder).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "crt") {
                certificates += 1;
            }
            if let Some(time) = modified(&path) {
                last = Some(last.map_or(time, |latest| latest.max(time)));
            }
        }
    };
    visit(pki);
    for folder in ["agencies", "operators", "administrators"] {
        visit(&pki.join(folder));
    }
    let first = modified(&pki.join("ca.key"));
    let seconds = match (first, last) {
        (Some(first), Some(last)) => last.duration_since(first).ok().map(|d| d.as_secs_f64()),
        _ => None,
    };
    (certificates, seconds)
}

impl ManyNodesReport {
    /// The figures as a table, then the verdicts against the goals.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} nodes on one hub ({} cores, Linux {}), each its own agency, certificate and \
             mutual-TLS connection, window {}",
            group(self.nodes as u64),
            self.machine.cores,
            self.machine.kernel,
            self.window
        );
        let _ = writeln!(out, "\n| figure | value |\n|---|---|");
        let mut row = |figure: &str, value: String| {
            let _ = writeln!(out, "| {figure} | {value} |");
        };
        self.connect_rows(&mut row);
        self.delivery_rows(&mut row);
        self.restart_rows(&mut row);
        self.verdicts(&mut out);
        out
    }

    /// Setting up, connecting every node from cold, and what idle nodes cost.
    fn connect_rows(&self, row: &mut impl FnMut(&str, String)) {
        row(
            "certificates issued (Ed25519)",
            format!(
                "{} in {}",
                group(self.certificates as u64),
                seconds_text(self.certificates_seconds)
            ),
        );
        row(
            "setup (PKI, directory, hub start)",
            format!("{:.2} s", self.setup_seconds),
        );
        row("hub RSS, no node", mib_text(self.hub_rss_before_bytes));
        row(
            "hub RSS, all connected and idle",
            mib_text(self.hub_rss_connected_bytes),
        );
        row(
            "hub memory per idle node",
            self.hub_bytes_per_idle_node
                .map_or_else(|| "unknown".to_owned(), |b| format!("{:.1} KiB", kib(b))),
        );
        row(
            "bench (node side) memory per node",
            self.bench_bytes_per_node
                .map_or_else(|| "unknown".to_owned(), |b| format!("{:.1} KiB", kib(b))),
        );
        row(
            "connect all from cold",
            format!(
                "{:.2} s (per node p50 {:.0} ms, p99 {:.0} ms); CPU hub {} cores, bench {} cores",
                self.connect_seconds,
                self.connect.p50_ms,
                self.connect.p99_ms,
                self.connect_hub_cores
                    .map_or("?".into(), |c| format!("{c:.2}")),
                self.connect_bench_cores
                    .map_or("?".into(), |c| format!("{c:.2}")),
            ),
        );
        row("TCP over the connect", self.connect_tcp.describe());
        row(
            "online, as the hub lists them",
            group(self.hub_nodes_online),
        );
    }

    /// The delivery phase: sends to one random recipient each.
    fn delivery_rows(&self, row: &mut impl FnMut(&str, String)) {
        let delivery = &self.delivery;
        row(
            "delivery phase",
            format!(
                "{:.0} documents/s for {:.0} s from {} senders, one random recipient each",
                delivery.rate, delivery.seconds, delivery.senders
            ),
        );
        row(
            "documents acknowledged / deliveries received",
            format!(
                "{} / {} (hub: {} accepted, {} arrivals; {} arrival notices){}",
                group(delivery.documents_acknowledged),
                group(delivery.deliveries_received),
                group(delivery.hub_documents_accepted),
                group(delivery.hub_arrivals_recorded),
                group(delivery.arrival_notices),
                if delivery.consistent {
                    ""
                } else {
                    ": MISMATCH"
                }
            ),
        );
        row("send → ack", latency_text(&delivery.send_to_ack));
        row(
            "send → delivered (verified at the node)",
            latency_text(&delivery.send_to_delivered),
        );
    }

    /// Killing the hub, starting it again, and every stream reopening.
    fn restart_rows(&self, row: &mut impl FnMut(&str, String)) {
        let restart = &self.restart;
        row("restart", restart.stop.clone());
        row(
            "kill → hub accepting",
            format!("{:.2} s", restart.down_seconds),
        );
        row(
            "hub accepting → all streams reopened",
            format!(
                "{:.2} s (per node p50 {:.0} ms, p99 {:.0} ms); {} reopened",
                restart.reconnect_seconds,
                restart.reopened_after_accepting.p50_ms,
                restart.reopened_after_accepting.p99_ms,
                group(restart.streams_reopened)
            ),
        );
        row(
            "kill → all streams reopened",
            format!("{:.2} s", restart.kill_to_all_seconds),
        );
        row("TCP over the reconnect", restart.tcp.describe());
        row(
            "CPU until all reopened",
            format!(
                "hub {} (from its start), bench {}",
                seconds_text(restart.hub_cpu_seconds),
                seconds_text(restart.bench_cpu_seconds)
            ),
        );
        row(
            "after the restart",
            format!(
                "{} online as the hub lists them, counts {}, hub RSS {}",
                group(restart.hub_nodes_online),
                if restart.counts_kept {
                    "unchanged"
                } else {
                    "CHANGED"
                },
                mib_text(restart.hub_rss_after_bytes)
            ),
        );
    }

    /// The verdicts against the goals, then the failures.
    fn verdicts(&self, out: &mut String) {
        let restart = &self.restart;
        if let Some(bytes) = self.hub_bytes_per_idle_node {
            let _ = writeln!(
                out,
                "\ngoal: under 50 KiB per idle node: {:.1} KiB, {}",
                kib(bytes),
                if kib(bytes) < 50.0 { "met" } else { "missed" }
            );
        }
        let _ = writeln!(
            out,
            "goal: all reconnected within 10 s: {:.2} s after the hub accepted again, {}",
            restart.reconnect_seconds,
            if restart.streams_reopened == self.nodes as u64 && restart.reconnect_seconds < 10.0 {
                "met"
            } else {
                "missed"
            }
        );
        if self.failures.is_empty() {
            let _ = writeln!(out, "no failures");
        }
        for failure in &self.failures {
            let _ = writeln!(out, "FAILED: {failure}");
        }
    }
}

/// Kibibytes of `bytes`.
fn kib(bytes: f64) -> f64 {
    bytes / 1024.0
}

/// `bytes` in MiB, or "unknown".
fn mib_text(bytes: Option<u64>) -> String {
    bytes.map_or_else(
        || "unknown".to_owned(),
        |b| format!("{:.1} MiB", b as f64 / 1048576.0),
    )
}

/// `value` in seconds, or "unknown".
fn seconds_text(value: Option<f64>) -> String {
    value.map_or_else(|| "unknown".to_owned(), |s| format!("{s:.2} s"))
}

/// A latency's percentiles and maximum.
fn latency_text(l: &LatencySummary) -> String {
    format!(
        "p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms",
        l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_codes_are_well_formed_and_distinct() {
        let agencies = node_agencies(20_000);
        let mut codes = std::collections::BTreeSet::new();
        for agency in &agencies {
            let code: truc_domain::AgencyCode = agency
                .code
                .parse()
                .unwrap_or_else(|e| panic!("{}: {e}", agency.code));
            assert!(codes.insert(code), "{} twice", agency.code);
        }
        assert_eq!(agencies[0].code, "000.00.01.N01");
        assert_eq!(agencies[98].code, "000.00.01.N99");
        assert_eq!(agencies[99].code, "000.00.02.N01");
        assert_eq!(agencies[99 * 99].code, "000.01.01.N01");
        assert_eq!(
            node_agencies(NODES_MAX).last().unwrap().code,
            "000.99.99.N99"
        );
    }

    #[test]
    fn netstat_counters_are_read_from_the_pair_of_lines_that_names_them() {
        let text = "TcpExt: SyncookiesSent ListenOverflows TCPSynRetrans\n\
                    TcpExt: 5 9305 9676\n\
                    IpExt: InNoRoutes ListenOverflows\n\
                    IpExt: 1 2\n";
        assert_eq!(
            netstat_field(text, "TcpExt:", "ListenOverflows"),
            Some(9305)
        );
        assert_eq!(netstat_field(text, "TcpExt:", "TCPSynRetrans"), Some(9676));
        assert_eq!(netstat_field(text, "IpExt:", "ListenOverflows"), Some(2));
        assert_eq!(netstat_field(text, "TcpExt:", "Missing"), None);
    }

    #[test]
    fn an_idle_node_costs_the_difference_over_the_count() {
        assert_eq!(per_node(Some(1000), Some(51_000), 1000), Some(50.0));
        assert_eq!(per_node(None, Some(5), 1), None);
    }
}
