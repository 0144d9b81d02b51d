//! The replay driver: drives a [`Plan`] through a real hub over gRPC and mutual TLS, one node
//! per unit with its own certificate. Senders sign and send each planned document; every unit
//! holds a delivery stream, verifies each delivery (sender certificate, envelope signature,
//! attachment digests), acknowledges it (the hub records "arrived") and makes the plan's status
//! moves; notices for the unit's own documents are acknowledged as they come.
//!
//! The hub can be embedded ([`EmbeddedHub`]: temporary PKI, store and directory made from the
//! plan) or anywhere else ([`Target`] with a certificate folder).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ring::digest::{Context, SHA256};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio::task::JoinSet;
use tokio_stream::StreamExt;
use truc_domain::views::{Delivery, HubItem, MoveRequest, SignatureState};
use truc_domain::RawAttachment;
use truc_domain::{AgencyCode, Limits, SplitMix64, Status};
use truc_hub::config::DeliveryConfig;
use truc_hub::{AgencyEntry, Directory, HubSetup};
use truc_node::compose::{Attachment, Draft};
use truc_node::verify::verify_delivery;
use truc_node::Acks;
use truc_node::{AxisClient, ClientError, HubAddresses};
use truc_pki::{PkiPaths, TrustRoots};
use truc_store::{Store, StoreOptions};

use crate::attachments::{AttachmentSizes, AttachmentsSent};
use crate::plan::{Plan, PlannedDocument};
use crate::progress::{Progress, ProgressMode, Totals};
use crate::published::GOVERNMENT_OFFICE;
use crate::report::HubFigures;
use crate::source::{figures_from_hub, SourceError};

/// The notation (ký hiệu) every replayed document carries: with the sender, date and the
/// plan's per-sender number it makes a unique document id.
pub const NOTATION: &str = "VP-TLT";
/// Operator the embedded hub's PKI issues, and the default for `--operator`.
pub const DEFAULT_OPERATOR: &str = "ops";
/// Certificates of an embedded replay: long enough for the longest paced replay.
const EMBEDDED_VALIDITY: Duration = Duration::from_secs(30 * 86_400);
/// Connections opened at once while the nodes come up.
const CONNECTS_IN_FLIGHT_MAX: usize = 32;
/// Attempts for a call that failed for a passing reason (hub unavailable, stream cut):
/// enough to outlast a database failover of hubs on PostgreSQL (Patroni's election
/// takes some 20 s; each attempt is itself a few seconds of the client's own failover).
const TRANSIENT_ATTEMPTS_MAX: u32 = 40;
/// Most moves one unit makes in one call (the hub's default limit is 4,096).
const MOVES_PER_CALL_MAX: usize = 1_024;
/// Longest wait for a stopped embedded hub to release its data directory.
const STORE_RELEASE_WAIT_MAX: Duration = Duration::from_secs(10);
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

/// Where the hub is (one address, or several hubs of one store, tried in
/// order) and which certificates reach it.
#[derive(Debug, Clone)]
pub struct Target {
    pub hubs: HubAddresses,
    /// A folder laid out like `truc certs init` makes it: `ca.crt`, `agencies/<code>.{crt,key}`,
    /// `operators/<name>.{crt,key}`.
    pub pki: PkiPaths,
    pub operator: String,
    /// The replay started this hub itself.
    pub embedded: bool,
}

impl Target {
    /// Checks that the folder holds credentials for every unit of the plan and the operator,
    /// naming what is missing.
    pub fn check_certificates(&self, plan: &Plan) -> Result<(), DriverError> {
        let mut missing: Vec<String> = plan
            .units
            .iter()
            .map(|unit| unit.code.to_string())
            .filter(|code| {
                !self.pki.agency_cert(code).is_file() || !self.pki.agency_key(code).is_file()
            })
            .collect();
        let operator_missing = !self.pki.operator_cert(&self.operator).is_file();
        if missing.is_empty() && !operator_missing && self.pki.ca_cert().is_file() {
            return Ok(());
        }
        let count = missing.len();
        missing.truncate(5);
        Err(DriverError::Setup(format!(
            "{} lacks credentials: {}{}{}{}. Make them with `truc replay {} --print-directory FILE` \
             then `truc certs init --dir {} --directory FILE`",
            self.pki.dir.display(),
            if self.pki.ca_cert().is_file() { "" } else { "ca.crt; " },
            if operator_missing {
                format!("operator {}; ", self.operator)
            } else {
                String::new()
            },
            if count > 0 {
                format!("{count} of {} units (", plan.units.len())
            } else {
                String::new()
            },
            if count > 0 {
                format!("{}{})", missing.join(", "), if count > 5 { ", …" } else { "" })
            } else {
                String::new()
            },
            plan.dataset,
            self.pki.dir.display(),
        )))
    }

    pub async fn operator_client(&self) -> Result<AxisClient, DriverError> {
        Ok(AxisClient::connect_hubs(
            &self.hubs,
            &self.pki.trust_roots()?,
            self.pki.operator_credentials(&self.operator)?,
        )
        .await?)
    }
}

/// One line of the directory a hub loads for a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryLine {
    pub code: AgencyCode,
    pub name: String,
    pub connection: truc_hub::ConnectionMode,
}

/// The plan's units as directory entries. Level-1 bodies connect as seed 002 lists them
/// (Phụ lục I direct, Phụ lục II via LGSP; a body in neither or both is direct unless its only
/// listing is LGSP); subordinate units reach the axis through their body's LGSP.
pub fn directory_lines(plan: &Plan) -> Result<Vec<DirectoryLine>, DriverError> {
    use truc_seeds::ConnectionMode as Seed;
    let seed_error = |error: truc_seeds::SeedError| DriverError::Setup(error.to_string());
    let mut modes = std::collections::BTreeMap::new();
    for row in truc_seeds::agencies().map_err(seed_error)? {
        if let Some(mode) = row.connection {
            modes.insert(row.code, mode);
        }
    }
    let mut listed: std::collections::BTreeMap<String, Vec<Seed>> = Default::default();
    for row in truc_seeds::connections_2019().map_err(seed_error)? {
        listed.entry(row.code).or_default().push(row.mode);
    }
    Ok(plan
        .units
        .iter()
        .map(|unit| {
            let code = unit.code.to_string();
            let mode = if unit.level > 1 {
                Seed::Lgsp
            } else if let Some(mode) = modes.get(&code) {
                *mode
            } else if listed
                .get(&code)
                .is_some_and(|modes| modes.iter().all(|m| *m == Seed::Lgsp))
            {
                Seed::Lgsp
            } else {
                Seed::Direct
            };
            DirectoryLine {
                code: unit.code,
                name: unit.name.clone(),
                connection: match mode {
                    Seed::Direct => truc_hub::ConnectionMode::Direct,
                    Seed::Lgsp => truc_hub::ConnectionMode::Lgsp,
                },
            }
        })
        .collect())
}

/// The directory TOML a hub loads (`[[agency]] code name connection`), for a replay against a
/// hub started elsewhere.
pub fn directory_toml(plan: &Plan) -> Result<String, DriverError> {
    let quote = |text: &str| {
        let mut out = String::with_capacity(text.len() + 2);
        out.push('"');
        for character in text.chars() {
            match character {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                other => out.push(other),
            }
        }
        out.push('"');
        out
    };
    let mut out = format!(
        "# The agency directory of the {} replay ({} units), written by `truc replay {} \
         --print-directory`.\n# Load it in the hub's config (`directory = \"...\"`) and issue \
         certificates for it with `truc certs init --dir DIR --directory THIS_FILE`.\n",
        plan.dataset,
        plan.units.len(),
        plan.dataset
    );
    for line in directory_lines(plan)? {
        out.push_str(&format!(
            "\n[[agency]]\ncode = {}\nname = {}\nconnection = \"{}\"\n",
            quote(&line.code.to_string()),
            quote(&line.name),
            match line.connection {
                truc_hub::ConnectionMode::Direct => "direct",
                truc_hub::ConnectionMode::Lgsp => "lgsp",
            }
        ));
    }
    Ok(out)
}

/// A hub started in this process for one replay: a development PKI for every unit and one
/// operator, the plan's units as its directory, and sled in a temporary folder (or a given
/// one, kept afterwards).
pub struct EmbeddedHub {
    /// Holds the PKI (and the data unless `data_dir` was given); removed on drop.
    _root: tempfile::TempDir,
    pub target: Target,
    pub data_dir: PathBuf,
    /// A handle on the hub's store, for its flush counts; dropped when the hub stops.
    store: Option<Store>,
    /// The hub's manual clock, when it runs retention on the plan's dates.
    pub clock: Option<truc_hub::Clock>,
    /// Where its archives go, when it runs retention.
    pub archive_dir: Option<PathBuf>,
    started: Instant,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), truc_hub::RunError>>>,
}

impl EmbeddedHub {
    pub async fn start(plan: &Plan, data_dir: Option<&Path>) -> Result<EmbeddedHub, DriverError> {
        Self::start_with(plan, data_dir, replay_watch(), truc_hub::Observe::default()).await
    }

    /// [`EmbeddedHub::start`] with the given deadlines, expiry and quotas
    /// instead of the replay's (none), to see the replay ride them out.
    pub async fn start_watched(
        plan: &Plan,
        data_dir: Option<&Path>,
        watch: truc_hub::WatchSetup,
    ) -> Result<EmbeddedHub, DriverError> {
        Self::start_with(plan, data_dir, watch, truc_hub::Observe::default()).await
    }

    /// [`EmbeddedHub::start_observed`], with retention: documents whose
    /// every delivery is final leave for archive files `retention_days`
    /// after acceptance, by a manual clock that the replay moves to each
    /// document's historical instant ([`ReplayOptions::clock`]).
    pub async fn start_retained(
        plan: &Plan,
        data_dir: Option<&Path>,
        observe: truc_hub::Observe,
        retention_days: u64,
    ) -> Result<EmbeddedHub, DriverError> {
        let first = plan.documents.first().map_or(0, |d| d.at_unix_ms);
        let clock = truc_hub::Clock::manual(first);
        let mut watch = replay_watch();
        watch.clock = clock.clone();
        watch.retention = truc_hub::RetentionSetup {
            enabled: true,
            period: Duration::from_secs(retention_days.saturating_mul(86_400)),
            // Beside the data; set for real below, once the folder is known.
            archive_dir: PathBuf::new(),
            run_interval: Duration::from_secs(1),
            ..truc_hub::RetentionSetup::default()
        };
        let mut hub = Self::start_with(plan, data_dir, watch, observe).await?;
        hub.clock = Some(clock);
        Ok(hub)
    }

    /// Documents in the archive files, and the files.
    pub fn archive_summary(&self) -> Option<(u64, usize)> {
        let files = self.store.as_ref()?.archive_files().ok()?;
        Some((files.iter().map(|f| f.documents).sum(), files.len()))
    }

    /// [`EmbeddedHub::start`], serving what `observe` asks for (the operator
    /// dashboard, metrics) beside the Axis.
    pub async fn start_observed(
        plan: &Plan,
        data_dir: Option<&Path>,
        observe: truc_hub::Observe,
    ) -> Result<EmbeddedHub, DriverError> {
        Self::start_with(plan, data_dir, replay_watch(), observe).await
    }

    async fn start_with(
        plan: &Plan,
        data_dir: Option<&Path>,
        mut watch: truc_hub::WatchSetup,
        observe: truc_hub::Observe,
    ) -> Result<EmbeddedHub, DriverError> {
        let root = tempfile::Builder::new().prefix("truc-replay-").tempdir()?;
        let data_dir = match data_dir {
            Some(path) => {
                let occupied = path.is_dir() && std::fs::read_dir(path)?.next().is_some();
                if occupied {
                    return Err(DriverError::Setup(format!(
                        "{} is not empty: a replay writes into a fresh data directory (the same \
                         documents would be refused as duplicates)",
                        path.display()
                    )));
                }
                path.to_owned()
            }
            None => root.path().join("data"),
        };
        std::fs::create_dir_all(&data_dir)?;
        let archive_dir = watch.retention.enabled.then(|| {
            let dir = data_dir.with_file_name(format!(
                "{}-archive",
                data_dir
                    .file_name()
                    .map_or("hub".into(), |n| n.to_string_lossy())
            ));
            watch.retention.archive_dir = dir.clone();
            dir
        });
        let agencies: Vec<(String, String)> = plan
            .units
            .iter()
            .map(|unit| (unit.code.to_string(), unit.name.clone()))
            .collect();
        let pki_dir = root.path().join("pki");
        // Valid since the day before the plan's first document too: with
        // retention the hub accepts each document at its historical time,
        // and its archives check the sender's certificate at that time.
        let first_unix_s = plan.documents.first().map_or(0, |d| d.at_unix_ms) / 1000 - 86_400;
        let pki = tokio::task::spawn_blocking(move || {
            truc_pki::init_dev_pki_valid_since(
                &pki_dir,
                &agencies,
                &[DEFAULT_OPERATOR.to_owned()],
                first_unix_s,
                EMBEDDED_VALIDITY,
            )
        })
        .await
        .map_err(|error| DriverError::Setup(error.to_string()))??;
        let store = Store::open(&data_dir, &StoreOptions::default())?;
        let directory =
            Directory::new(directory_lines(plan)?.into_iter().map(|line| AgencyEntry {
                code: line.code,
                name: line.name,
                connection: line.connection,
                // Every replayed unit runs a node of its own.
                relay: false,
                own_node: true,
            }));
        let setup = HubSetup {
            store: store.clone(),
            directory,
            trust: pki.trust_roots()?,
            credentials: pki.hub_credentials()?,
            limits: Limits::default(),
            delivery: DeliveryConfig::default(),
            watch,
            security: Default::default(),
        };
        // Bound before serving, so the nodes can connect as soon as this returns.
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let address = listener.local_addr()?;
        // The PKI is made for this run and thrown away with it: its expiry
        // concerns no one.
        let observe = truc_hub::Observe {
            certificate_warning_days: 0,
            ..observe
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(truc_hub::run_observed(listener, setup, observe, async {
            let _ = stopped.await;
        }));
        Ok(EmbeddedHub {
            _root: root,
            target: Target {
                hubs: HubAddresses::one(address),
                pki,
                operator: DEFAULT_OPERATOR.to_owned(),
                embedded: true,
            },
            data_dir,
            store: Some(store),
            clock: None,
            archive_dir,
            started: Instant::now(),
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Group commits so far: how many, commands written, and the mean time to make each
    /// durable (payload and journal sync). Shows whether the hub's single writer is what a
    /// replay waits on.
    pub fn flush_summary(&self) -> String {
        let Some(store) = &self.store else {
            return String::new();
        };
        let stats = store.flush_stats();
        let flushes = stats.flushes.load(Ordering::Relaxed);
        let commands = stats.commands.load(Ordering::Relaxed);
        let micros = stats.flush_micros.load(Ordering::Relaxed);
        format!(
            "hub store: {} writes in {} group commits ({:.1} writes per group, {:.2} ms to make \
             each durable, {:.0} % of the time syncing)",
            crate::report::group(commands),
            crate::report::group(flushes),
            commands as f64 / flushes.max(1) as f64,
            micros as f64 / 1000.0 / flushes.max(1) as f64,
            micros as f64 / 1e4 / self.started.elapsed().as_secs_f64().max(1e-3),
        )
    }

    /// Stops the hub and waits until it has let go of its port and store, so that the data
    /// directory can be read offline at once.
    pub async fn stop(mut self) -> Result<(), DriverError> {
        self.store = None;
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .map_err(|error| DriverError::Setup(error.to_string()))?
                .map_err(|error| DriverError::Setup(error.to_string()))?;
        }
        // The store's lock goes with its last handle, which tasks of finished streams may
        // still hold for a moment after the server returns.
        let data_dir = self.data_dir.clone();
        tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + STORE_RELEASE_WAIT_MAX;
            loop {
                match Store::open(&data_dir, &StoreOptions::default()) {
                    Ok(_) => return Ok(()),
                    Err(error) if Instant::now() >= deadline => return Err(error),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        })
        .await
        .map_err(|error| DriverError::Setup(error.to_string()))??;
        Ok(())
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
        receivers.spawn(move_loop(node.clone(), shared.clone(), waiting));
        receivers.spawn(receive_loop(node.clone(), shared.clone(), moves));
    }
    let dispatcher = tokio::spawn(dispatch(plan.clone(), nodes.clone(), shared.clone()));

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

/// Sends every document in plan order, paced, with at most `send_concurrency` in flight.
async fn dispatch(plan: Arc<Plan>, nodes: Nodes, shared: Arc<Shared>) {
    let slots = Arc::new(Semaphore::new(shared.options.send_concurrency.max(1)));
    let started = tokio::time::Instant::now();
    let first_at = plan.documents.first().map(|d| d.at_unix_ms).unwrap_or(0);
    for index in 0..plan.documents.len() {
        let due = match shared.options.pace {
            Pace::Unpaced => None,
            Pace::DocumentsPerSecond(rate) => {
                Some(started + Duration::from_secs_f64(index as f64 / rate.max(1e-9)))
            }
            Pace::Speedup(factor) => {
                let historical_ms = (plan.documents[index].at_unix_ms - first_at).max(0);
                Some(
                    started
                        + Duration::from_secs_f64(historical_ms as f64 / 1000.0 / factor.max(1e-9)),
                )
            }
        };
        if let Some(due) = due {
            tokio::time::sleep_until(due).await;
        }
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        if shared.failure().is_some() || *shared.stop.borrow() {
            return;
        }
        if let Some(clock) = &shared.options.clock {
            // The document's own time: it is accepted then, and ages from then.
            clock.advance_to(plan.documents[index].at_unix_ms);
        }
        let plan = plan.clone();
        let nodes = nodes.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let document = &plan.documents[index];
            match send_document(&plan, document, &nodes, &shared).await {
                Ok(()) => {
                    shared.sent.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => shared.fail(format!(
                    "sending document {} of {}: {error}",
                    document.seq, document.sender
                )),
            }
        });
    }
}

/// The one attachment of a document, `length` bytes that differ for every document (unless
/// too short to hold its header line), so every digest (and the hub's blob store) sees
/// distinct content.
pub fn attachment_bytes(plan_seed: u64, document: &PlannedDocument, length: u64) -> Vec<u8> {
    let length = usize::try_from(length).unwrap_or(usize::MAX);
    let mut bytes = Vec::with_capacity(length.min(ATTACHMENT_CAPACITY_MAX));
    bytes.extend_from_slice(
        format!(
            "%PDF-1.4\n% truc replay: document {} of {} dated {}, number {}/{NOTATION}\n",
            document.seq, document.sender, document.date, document.number
        )
        .as_bytes(),
    );
    let mut rng = SplitMix64::new(plan_seed ^ document.seq.rotate_left(17));
    while bytes.len() < length {
        bytes.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    bytes.truncate(length);
    bytes
}

/// Most bytes reserved up front for one attachment: sizes are parsed within the hub's
/// document limit, but a size that is not must not reserve memory it will never fill.
const ATTACHMENT_CAPACITY_MAX: usize = 64 << 20;

/// The draft of a planned document: its date and number, the fixed notation, the recipients.
pub fn draft_of(document: &PlannedDocument, sender_name: &str) -> Draft {
    Draft {
        from: document.sender.to_string(),
        from_name: sender_name.to_owned(),
        to: document
            .recipients
            .iter()
            .map(ToString::to_string)
            .collect(),
        number: document.number.to_string(),
        notation: NOTATION.to_owned(),
        place: "Việt Nam".into(),
        date: document.date.iso(),
        document_type: 1,
        document_type_name: "Công văn".into(),
        subject: format!(
            "Công văn số {}/{NOTATION} (bản phát lại số {})",
            document.number, document.seq
        ),
        page_count: 1,
        sign_document: document.document_signed,
        ..Draft::default()
    }
}

/// The wait a RESOURCE_EXHAUSTED refusal asks for in its `retry-after`
/// metadata (a hub's per-agency quotas), if it carries one.
fn quota_wait(error: &ClientError) -> Option<Duration> {
    let ClientError::Refused(status) = error else {
        return None;
    };
    if status.code() != tonic::Code::ResourceExhausted {
        return None;
    }
    let seconds: u64 = status
        .metadata()
        .get("retry-after")?
        .to_str()
        .ok()?
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds.min(QUOTA_WAIT_MAX_SECONDS)))
}

/// A hub's quota hint longer than this is taken as this: a replay that
/// waits minutes for one agency measures nothing.
const QUOTA_WAIT_MAX_SECONDS: u64 = 30;

fn retry_delay(attempt: u32) -> Duration {
    (Duration::from_millis(1) * 2u32.saturating_pow(attempt.min(10))).min(RETRY_DELAY_MAX)
}

async fn send_document(
    plan: &Plan,
    document: &PlannedDocument,
    nodes: &Nodes,
    shared: &Shared,
) -> Result<(), String> {
    let node = &nodes[&document.sender.to_string()];
    let draft = draft_of(document, &node.name);
    let length = shared
        .options
        .attachment_sizes
        .size_of(plan.seed, document.seq);
    // Whole in memory while it is signed and sent (sends in flight × the mean size);
    // the node's client streams it in chunks.
    let attachment = Attachment::bytes(
        "van-ban.pdf",
        "application/pdf",
        attachment_bytes(plan.seed, document, length),
    );
    let mut attempt = 0;
    let response = loop {
        match node.client.send(&draft, vec![attachment.clone()]).await {
            Ok(response) => break response,
            // A quota refusal is not a failure: the hub says when to come back.
            Err(error) if quota_wait(&error).is_some() => {
                shared.send_retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(quota_wait(&error).unwrap_or_default()).await;
            }
            Err(error) if error.is_transient() && attempt < TRANSIENT_ATTEMPTS_MAX => {
                shared.send_retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(retry_delay(attempt)).await;
                attempt += 1;
            }
            Err(error) => return Err(error.to_string()),
        }
    };
    if let Some(refused) = response.recipients.iter().find(|r| !r.accepted) {
        return Err(format!(
            "the hub refused recipient {}: {}",
            refused.organ_id, refused.reason
        ));
    }
    if response.recipients.len() != document.recipients.len() {
        return Err(format!(
            "{} recipients accepted of {}",
            response.recipients.len(),
            document.recipients.len()
        ));
    }
    let expected_signature = if document.document_signed {
        SignatureState::Valid
    } else {
        SignatureState::Absent
    };
    if response.document_signature != expected_signature {
        return Err(format!(
            "document signature state {} where {} was expected",
            response.document_signature.code(),
            expected_signature.code()
        ));
    }
    shared.attachment_bytes.fetch_add(length, Ordering::Relaxed);
    Ok(())
}

/// One unit's delivery stream, reopened if it breaks, until the replay stops.
/// The documents a unit handled lately. Only a delivery the hub has not
/// recorded as acknowledged comes again, and the hub never has more than a
/// window of those out at once: remembering the last few windows is enough,
/// and keeps a unit's memory flat however long the replay.
struct Recent {
    ids: HashSet<String>,
    order: std::collections::VecDeque<String>,
    capacity: usize,
}

impl Recent {
    fn new(capacity: usize) -> Self {
        Recent {
            ids: HashSet::with_capacity(capacity),
            order: std::collections::VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// Whether `id` is new; remembers it either way.
    fn insert(&mut self, id: &str) -> bool {
        if self.ids.contains(id) {
            return false;
        }
        if self.order.len() == self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.ids.remove(&oldest);
            }
        }
        self.ids.insert(id.to_owned());
        self.order.push_back(id.to_owned());
        true
    }
}

async fn receive_loop(node: Arc<Node>, shared: Arc<Shared>, moves: Mover) {
    // Four windows: what was in flight when a stream broke, with room to spare.
    let handled = Arc::new(Mutex::new(Recent::new(
        4 * (shared.options.window as usize).max(1),
    )));
    let mut stop = shared.stop.clone();
    let mut attempt = 0;
    loop {
        if *stop.borrow() {
            return;
        }
        let (acks, mut stream) = match node.client.deliveries(shared.options.window).await {
            Ok(opened) => opened,
            Err(error) if attempt < TRANSIENT_ATTEMPTS_MAX => {
                tracing::warn!(agency = %node.code, %error, "delivery stream refused; retrying");
                tokio::time::sleep(retry_delay(attempt)).await;
                attempt += 1;
                continue;
            }
            Err(error) => {
                shared.fail(format!("{}: delivery stream: {error}", node.code));
                return;
            }
        };
        // A stream its hub ended or that broke with its hub goes to the next hub.
        let hub = node.client.current_hub();
        loop {
            let message = tokio::select! {
                message = stream.next() => message,
                _ = stop.changed() => return,
            };
            let item = match message {
                Some(Ok(item)) => item,
                Some(Err(error)) => {
                    tracing::warn!(agency = %node.code, %error, "delivery stream broke; reopening");
                    if error.is_unreachable() {
                        node.client.move_on_from(hub);
                    }
                    break;
                }
                None => {
                    node.client.move_on_from(hub);
                    break;
                }
            };
            match item {
                HubItem::Notice(notice) => {
                    if acks.ack(vec![notice.queue_seq]).await.is_err() {
                        break;
                    }
                    shared.notices.fetch_add(1, Ordering::Relaxed);
                }
                HubItem::Delivery(delivery) => {
                    let Ok(slot) = shared.receive_slots.clone().acquire_owned().await else {
                        return;
                    };
                    let node = node.clone();
                    let shared = shared.clone();
                    let acks = acks.clone();
                    let handled = handled.clone();
                    let moves = moves.clone();
                    tokio::spawn(async move {
                        let _slot = slot;
                        let document_id = delivery.document_id.clone();
                        if let Err(error) =
                            receive_delivery(&node, &shared, &acks, &moves, &handled, delivery)
                                .await
                        {
                            shared.fail(format!("{} receiving {document_id}: {error}", node.code));
                        }
                    });
                }
            }
        }
        attempt += 1;
        if attempt > TRANSIENT_ATTEMPTS_MAX {
            shared.fail(format!("{}: the delivery stream keeps breaking", node.code));
            return;
        }
    }
}

/// Documents whose planned moves a unit is to make.
type Mover = mpsc::UnboundedSender<String>;

/// Verifies one delivery, checks its attachments against their signed digests, acknowledges
/// it (the hub records "arrived") and makes the unit's status moves.
async fn receive_delivery(
    node: &Node,
    shared: &Shared,
    acks: &Acks,
    moves: &Mover,
    handled: &Mutex<Recent>,
    delivery: Box<Delivery>,
) -> Result<(), String> {
    if delivery.recipient != node.code {
        return Err(format!("delivered for {}", delivery.recipient));
    }
    let queue_seq = delivery.queue_seq;
    let first_time = handled
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(&delivery.document_id);
    if !first_time {
        // Sent again after a broken stream: already checked and moved.
        let _ = acks.ack(vec![queue_seq]).await;
        return Ok(());
    }
    let verified = verify_delivery(&delivery, &node.roots)
        .map_err(|error| format!("security: refused: {error}"))?;
    // Small attachments travel inline in the delivery; larger ones are fetched.
    let inline = delivery.inline_attachments.len() == verified.header.attachments.len();
    for (index, info) in verified.header.attachments.iter().enumerate() {
        if inline {
            let data = &delivery.inline_attachments[index];
            let digest = ring::digest::digest(&SHA256, data);
            if data.len() as u64 != info.size_bytes || digest.as_ref() != info.sha256.as_slice() {
                return Err(format!(
                    "security: attachment {} does not match its signed digest",
                    info.name
                ));
            }
            continue;
        }
        let mut attempt = 0;
        loop {
            match check_attachment(&node.client, &verified.document_id, index as u32, info).await {
                Ok(()) => break,
                Err(Some(error)) if error.is_transient() && attempt < TRANSIENT_ATTEMPTS_MAX => {
                    tokio::time::sleep(retry_delay(attempt)).await;
                    attempt += 1;
                }
                Err(Some(error)) => return Err(format!("attachment {index}: {error}")),
                Err(None) => {
                    return Err(format!(
                        "security: attachment {} does not match its signed digest",
                        info.name
                    ))
                }
            }
        }
    }
    acks.ack(vec![queue_seq])
        .await
        .map_err(|_| "the delivery stream closed before the acknowledgement".to_string())?;
    shared.arrived.fetch_add(1, Ordering::Relaxed);
    if !node.moves.is_empty() {
        // The hub takes a recipient's first move as proof of arrival, so the
        // moves need not wait for the acknowledgement to be written.
        moves
            .send(verified.document_id)
            .map_err(|_| "the unit's mover stopped".to_string())?;
    }
    Ok(())
}

/// Streams one attachment and checks its size and SHA-256. `Err(None)` is a mismatch.
async fn check_attachment(
    client: &AxisClient,
    document_id: &str,
    index: u32,
    info: &RawAttachment,
) -> Result<(), Option<ClientError>> {
    let mut stream = client
        .fetch_attachment(document_id, index)
        .await
        .map_err(Some)?;
    let mut context = Context::new(&SHA256);
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(Some)?;
        size += chunk.len() as u64;
        context.update(&chunk);
    }
    if size == info.size_bytes && context.finish().as_ref() == info.sha256.as_slice() {
        Ok(())
    } else {
        Err(None)
    }
}

/// Makes one unit's planned moves, batching every document that is ready
/// into one call (one durable write on the hub), one call at a time.
async fn move_loop(
    node: Arc<Node>,
    shared: Arc<Shared>,
    mut waiting: mpsc::UnboundedReceiver<String>,
) {
    let documents_per_call = (MOVES_PER_CALL_MAX / node.moves.len().max(1)).max(1);
    while let Some(first) = waiting.recv().await {
        let mut documents = vec![first];
        while documents.len() < documents_per_call {
            match waiting.try_recv() {
                Ok(document_id) => documents.push(document_id),
                Err(_) => break,
            }
        }
        let requests: Vec<MoveRequest> = documents
            .iter()
            .flat_map(|document_id| {
                node.moves.iter().map(|&status| MoveRequest {
                    document_id: document_id.clone(),
                    recipient: String::new(),
                    status,
                    reason: String::new(),
                })
            })
            .collect();
        if let Err(error) = move_batch(&node, &shared, requests).await {
            shared.fail(format!("{}: {error}", node.code));
            return;
        }
    }
}

async fn move_batch(
    node: &Node,
    shared: &Shared,
    requests: Vec<MoveRequest>,
) -> Result<(), String> {
    let mut attempt = 0;
    let mut after_transient = false;
    loop {
        match node.client.move_statuses(requests.clone()).await {
            Ok(results) => {
                for (request, result) in requests.iter().zip(results) {
                    match result {
                        Ok(_) => {}
                        // A batch retried after a cut connection may have been recorded the first time.
                        Err(refusal)
                            if after_transient
                                && refusal.code() == tonic::Code::FailedPrecondition => {}
                        Err(refusal) => {
                            return Err(format!(
                                "moving {} to {}: {}",
                                request.document_id,
                                request.status,
                                refusal.message()
                            ))
                        }
                    }
                    shared.moved.fetch_add(1, Ordering::Relaxed);
                }
                return Ok(());
            }
            Err(error) if error.is_transient() && attempt < TRANSIENT_ATTEMPTS_MAX => {
                after_transient = true;
                shared.move_retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(retry_delay(attempt)).await;
                attempt += 1;
            }
            Err(error) => return Err(format!("moving statuses: {error}")),
        }
    }
}

/// A replay compresses months into minutes on the system clock: feedback
/// deadlines and expiry would measure the replay's speed, not the agencies',
/// and every replayed unit may send as fast as the driver can.
pub fn replay_watch() -> truc_hub::WatchSetup {
    let mut watch = truc_hub::WatchSetup::default();
    watch.deadlines.arrived_within_minutes = 0;
    watch.deadlines.received_within_working_minutes = 0;
    watch.deadlines.due_date = false;
    watch.expiry.ttl_minutes = 0;
    watch.quotas.sends_in_flight_max = u32::MAX;
    watch.quotas.queued_deliveries_max = u64::MAX;
    watch
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unit_remembers_its_last_deliveries_only() {
        let mut recent = Recent::new(3);
        assert!(recent.insert("a") && recent.insert("b") && recent.insert("c"));
        assert!(!recent.insert("a"), "a redelivery within the last three");
        assert!(recent.insert("d"));
        assert!(
            recent.insert("a"),
            "forgotten once four others came after it"
        );
        assert!(!recent.insert("d"));
        assert_eq!(recent.ids.len(), 3);
    }

    #[test]
    fn attachments_differ_per_document_and_have_the_asked_size() {
        let plan = crate::plan::plan_2021(1, Some((1, 2000))).unwrap();
        let default = crate::attachments::ATTACHMENT_BYTES_DEFAULT;
        let first = attachment_bytes(plan.seed, &plan.documents[0], default);
        let second = attachment_bytes(plan.seed, &plan.documents[1], default);
        assert_eq!(first.len(), 320);
        assert_ne!(first, second);
        assert_eq!(first, attachment_bytes(plan.seed, &plan.documents[0], 320));
        // A longer one starts with the same bytes: the default replay's are unchanged.
        let long = attachment_bytes(plan.seed, &plan.documents[0], 100_000);
        assert_eq!(long.len(), 100_000);
        assert_eq!(long[..320], first[..]);
        assert!(attachment_bytes(plan.seed, &plan.documents[0], 0).is_empty());
    }

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

    #[test]
    fn the_directory_lists_every_unit_once_and_parses_as_toml_entries() {
        let plan = crate::plan::plan_2019(1, Some((1, 100))).unwrap();
        let text = directory_toml(&plan).unwrap();
        assert_eq!(text.matches("[[agency]]").count(), plan.units.len());
        let lines = directory_lines(&plan).unwrap();
        assert!(lines
            .iter()
            .filter(|line| line.code.level() > 1)
            .all(|line| line.connection == truc_hub::ConnectionMode::Lgsp));
        assert!(lines
            .iter()
            .any(|line| line.connection == truc_hub::ConnectionMode::Direct));
    }
}
