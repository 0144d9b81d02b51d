//! `truc crashtest`: the hub and the node agents run as separate processes of this binary and
//! are killed with SIGKILL at seeded random moments while documents are sent, delivered and
//! moved; each is restarted on its own directory and the nodes reconnect on their own. At the
//! end the hub (operator API, then its stopped data directory) and the inboxes must hold every
//! acknowledged send, delivery and move exactly once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use truc_domain::views::MoveRequest;
use truc_domain::{SplitMix64, Status};
use truc_node::agent::inbox_name;
use truc_node::{Attachment, AxisClient, ClientError, Draft, FailoverOptions, HubAddresses};
use truc_pki::{PkiPaths, TrustRoots};

/// Senders of the load; `G12` also receives, so one node gets both deliveries and notices.
pub(crate) const SENDERS: [&str; 2] = ["000.00.00.G22", "000.00.00.G12"];
/// Each runs a node agent process with its own inbox.
pub(crate) const RECIPIENTS: [&str; 3] = ["000.00.00.H41", "000.00.00.H10", "000.00.00.G12"];
/// What a recipient may report after "arrived", in order; a delivery takes a prefix.
const MOVES: [Status; 3] = [Status::Received, Status::Processing, Status::Completed];
pub(crate) const OPERATOR: &str = "ops";
const NOTATION: &str = "VP-CRASH";
/// Longest wait for the hub process to answer after a start.
const HUB_READY_WAIT_MAX: Duration = Duration::from_secs(60);
/// Wait between two attempts of a call that failed because the hub was down.
pub(crate) const RETRY_DELAY: Duration = Duration::from_millis(50);
/// Documents per `MoveStatuses` call.
const MOVE_DOCUMENTS_PER_CALL_MAX: usize = 64;

#[derive(clap::Args, Debug, Clone)]
pub struct CrashtestArgs {
    /// Documents to send (each to 1–3 recipients, each delivery moved 0–3 times).
    #[arg(long, default_value_t = 2_400)]
    pub documents: usize,
    /// Times the hub process is killed with SIGKILL and restarted.
    #[arg(long, default_value_t = 24)]
    pub hub_kills: u32,
    /// Times a node agent process is killed with SIGKILL and restarted.
    #[arg(long, default_value_t = 8)]
    pub node_kills: u32,
    /// Seeds the plan, the moments of the kills and which node is killed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Documents sent per second, so that the load spans the kills (default 80; with
    /// --power-cut, spread over the cuts).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Shortest and longest run time between two hub kills, in milliseconds.
    #[arg(long, default_value_t = 400)]
    pub kill_after_min_ms: u64,
    #[arg(long, default_value_t = 1_600)]
    pub kill_after_max_ms: u64,
    /// Sends in flight at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Fail when the load has not completed this long after the last kill.
    #[arg(long, default_value_t = 180)]
    pub settle_timeout_secs: u64,
    /// Write the figures as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Keep the hub's data, inboxes and logs in this folder instead of a temporary one.
    #[arg(long)]
    pub keep: Option<PathBuf>,
    /// Cut the power instead of killing processes: the hub's data directory and the inboxes
    /// live on a FUSE file system that loses (or tears) what was not synced. Needs /dev/fuse
    /// and root.
    #[arg(long)]
    pub power_cut: bool,
    /// Power cuts, with --power-cut (each aimed in turn at a send, a delivery, a status move,
    /// a checkpoint, the hub's start and a payload write).
    #[arg(long, default_value_t = 100)]
    pub cuts: u32,
    /// Checks a stopped hub's data directory against the plan of --documents and --seed,
    /// printing each problem (the power-cut run does this in a process of its own, so that
    /// the store's threads never outlive the file system they use).
    #[arg(long, hide = true)]
    pub check_stopped: Option<PathBuf>,
    /// Run two hubs on a PostgreSQL database kept by three Patroni members (installed from
    /// Debian's packages if missing) and kill the database's primary as well as hubs.
    #[arg(long, conflicts_with = "power_cut")]
    pub cluster: bool,
    /// Database failovers, with --cluster: the primary's Patroni and postmaster SIGKILLed,
    /// a new leader elected, the killed member started again to rejoin as a replica.
    #[arg(long, default_value_t = 10)]
    pub db_failovers: u32,
    /// With --cluster: instead of the crash test's load, replay this published period
    /// (2019, 2021 or 2022) through the two hubs while the faults fall, and compare the
    /// hubs' own report with the published (or scaled) figures.
    #[arg(long, requires = "cluster", value_name = "PERIOD")]
    pub replay: Option<truc_replay::published::Dataset>,
    /// With --replay: replay a proportional slice, e.g. 1/10.
    #[arg(long, requires = "replay", value_parser = truc_replay::published::parse_scale, value_name = "N/D")]
    pub scale: Option<(u64, u64)>,
}

pub(crate) struct PlannedDocument {
    pub sender: &'static str,
    pub number: usize,
    /// Each recipient with the moves it makes after arrival.
    pub recipients: Vec<(&'static str, &'static [Status])>,
}

impl PlannedDocument {
    pub fn draft(&self) -> Draft {
        Draft {
            from: self.sender.into(),
            to: self.recipients.iter().map(|(r, _)| r.to_string()).collect(),
            number: self.number.to_string(),
            notation: NOTATION.into(),
            date: "2024-05-06".into(),
            subject: format!("Văn bản thử tắt máy số {}", self.number),
            sign_document: self.number.is_multiple_of(2),
            ..Draft::default()
        }
    }

    pub fn attachment(&self) -> Attachment {
        // Every seventh is larger than the hub carries in its journal, so that the streamed
        // path (payload log first, synced before the journal record) is cut too.
        let repeat = if self.number.is_multiple_of(7) {
            3_000
        } else {
            8
        };
        let bytes = format!("%PDF-1.4 crash test document {}\n", self.number)
            .repeat(repeat)
            .into_bytes();
        Attachment::bytes("van-ban.pdf", "application/pdf", bytes)
    }
}

/// The documents a run sends, drawn from `--seed` like the kill schedule; by
/// `below_modulo`, as the runs RELIABILITY.md records by seed were drawn.
pub(crate) fn plan(documents: usize, rng: &mut SplitMix64) -> Vec<PlannedDocument> {
    (0..documents)
        .map(|index| {
            let sender = SENDERS[rng.below_modulo(SENDERS.len() as u64) as usize];
            let candidates: Vec<&'static str> =
                RECIPIENTS.into_iter().filter(|r| *r != sender).collect();
            let mut recipients = Vec::new();
            while recipients.is_empty() {
                for candidate in &candidates {
                    if rng.below_modulo(2) == 0 {
                        let moves = rng.below_modulo(MOVES.len() as u64 + 1) as usize;
                        recipients.push((*candidate, &MOVES[..moves]));
                    }
                }
            }
            PlannedDocument {
                sender,
                number: index + 1,
                recipients,
            }
        })
        .collect()
}

/// One process of this binary, its output appended to log files that survive restarts.
pub(crate) struct Process {
    child: Child,
}

impl Process {
    fn spawn(args: &[&str], stdout: &Path, stderr: &Path) -> anyhow::Result<Process> {
        let append = |path: &Path| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open {}", path.display()))
        };
        let child = Command::new(std::env::current_exe()?)
            .args(args)
            .stdin(Stdio::null())
            .stdout(append(stdout)?)
            .stderr(append(stderr)?)
            .spawn()
            .context("cannot start a truc process")?;
        Ok(Process { child })
    }

    /// Sends SIGKILL without waiting for the process to end (it may be held
    /// in a file system request until the power-cut file system lets go).
    pub fn signal_kill(&mut self) {
        let _ = self.child.kill();
    }

    /// Whether the process has ended (a hub that refused its data exits).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill_9();
    }
}

/// One hub process of a run: where it listens and its configuration.
pub(crate) struct HubSpec {
    pub name: String,
    pub address: SocketAddr,
    pub config: PathBuf,
}

pub(crate) struct Layout {
    pub root: PathBuf,
    pub pki: PkiPaths,
    /// The first hub's address.
    pub address: SocketAddr,
    /// Every hub of the run: one on the embedded store, several on a database.
    pub hubs: Vec<HubSpec>,
    /// The hub's data directory and the folder of the nodes' inboxes.
    pub data_dir: PathBuf,
    pub inbox_root: PathBuf,
}

impl Layout {
    pub fn inbox(&self, code: &str) -> PathBuf {
        self.inbox_root.join(code)
    }

    /// Every hub's address, in order.
    pub fn hub_addresses(&self) -> HubAddresses {
        HubAddresses::new(self.hubs.iter().map(|hub| hub.address))
            .expect("a layout has at least one hub")
    }

    pub fn start_hub(&self) -> anyhow::Result<Process> {
        self.start_hub_at(0)
    }

    pub fn start_hub_at(&self, index: usize) -> anyhow::Result<Process> {
        let hub = &self.hubs[index];
        let log = if index == 0 {
            "hub".to_owned()
        } else {
            format!("hub-{index}")
        };
        Process::spawn(
            &["hub", "--config", path_str(&hub.config)?],
            &self.root.join(format!("{log}.out")),
            &self.root.join(format!("{log}.log")),
        )
    }

    pub fn start_node(&self, code: &str) -> anyhow::Result<Process> {
        let hubs = self.hub_addresses().to_string();
        let inbox = self.inbox(code);
        Process::spawn(
            &[
                "node",
                "--hub",
                &hubs,
                "--certs",
                path_str(&self.pki.dir)?,
                "--as",
                code,
                "--inbox",
                path_str(&inbox)?,
            ],
            &self.root.join(format!("node-{code}.out")),
            &self.root.join(format!("node-{code}.log")),
        )
    }
}

pub(crate) fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))
}

/// Certificates, configuration and logs in `root`; the hub's data and the
/// inboxes in `disk` (the same folder, or a power-cut file system).
pub(crate) fn setup(root: &Path, disk: &Path) -> anyhow::Result<Layout> {
    let directory = root.join("agencies.toml");
    let mut text = String::new();
    let codes: BTreeSet<&str> = SENDERS.into_iter().chain(RECIPIENTS).collect();
    for code in codes {
        text.push_str(&format!(
            "[[agency]]\ncode = \"{code}\"\nname = \"Cơ quan {code}\"\n\n"
        ));
    }
    std::fs::write(&directory, text)?;
    let agencies: Vec<(String, String)> = SENDERS
        .into_iter()
        .chain(RECIPIENTS)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|code| (code.to_owned(), format!("Cơ quan {code}")))
        .collect();
    let pki = truc_pki::init_dev_pki(
        &root.join("certs"),
        &agencies,
        &[OPERATOR.to_owned()],
        Duration::from_secs(86_400),
    )?;
    // A port free at the moment of asking; the hub binds it again after every restart.
    let address = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let config = root.join("hub.toml");
    let data_dir = disk.join("data");
    let inbox_root = disk.join("inbox");
    std::fs::write(
        &config,
        format!(
            "listen = \"{address}\"\ndata_dir = \"{}\"\ndirectory = \"agencies.toml\"\n\
             [tls]\nca_cert = \"certs/ca.crt\"\ncert = \"certs/hub.crt\"\nkey = \"certs/hub.key\"\n\
             [observe]\nmetrics_listen = \"\"\n",
            path_str(&data_dir)?
        ),
    )?;
    for code in RECIPIENTS {
        truc_node::agent::prepare_inbox(&inbox_root.join(code))?;
    }
    Ok(Layout {
        root: root.to_owned(),
        pki,
        address,
        hubs: vec![HubSpec {
            name: "hub".into(),
            address,
            config,
        }],
        data_dir,
        inbox_root,
    })
}

/// One connection per identity, opened again after the hub went away.
pub(crate) struct Clients {
    /// Every hub; a client that lost its hub connects to the first that answers.
    pub hubs: HubAddresses,
    pub roots: TrustRoots,
    pub pki: PkiPaths,
    pub open: Mutex<HashMap<String, AxisClient>>,
}

impl Clients {
    async fn get(&self, agency: &str) -> Result<AxisClient, ClientError> {
        if let Some(client) = self.open.lock().expect("clients").get(agency) {
            return Ok(client.clone());
        }
        let credentials = self
            .pki
            .agency_credentials(agency)
            .map_err(|error| ClientError::Draft(error.to_string()))?;
        // One attempt per call: the load sends again itself what a kill cut, and counts it.
        let client = AxisClient::connect_hubs_with(
            &self.hubs,
            &self.roots,
            credentials,
            FailoverOptions {
                attempts_max: 1,
                ..FailoverOptions::default()
            },
        )
        .await?;
        self.open
            .lock()
            .expect("clients")
            .insert(agency.to_owned(), client.clone());
        Ok(client)
    }

    fn forget(&self, agency: &str) {
        self.open.lock().expect("clients").remove(agency);
    }
}

/// What the load has done so far; read by the killer to say what was in flight.
#[derive(Default)]
pub(crate) struct Load {
    pub sends_in_flight: AtomicU64,
    pub moves_in_flight: AtomicU64,
    pub send_retries: AtomicU64,
    pub move_retries: AtomicU64,
    /// Documents whose send was acknowledged, by index.
    pub acknowledged: Mutex<BTreeSet<usize>>,
    /// (document, recipient, status) of every move the hub acknowledged.
    pub moves_acknowledged: Mutex<BTreeSet<(usize, &'static str, u32)>>,
    /// Deliveries whose moves are settled: acknowledged, or refused as already made after a
    /// retry (checked against the hub's record at the end).
    pub moves_settled: Mutex<BTreeSet<(usize, &'static str)>>,
    pub failure: Mutex<Option<String>>,
    pub dispatched_all: AtomicBool,
}

impl Load {
    fn fail(&self, what: String) {
        let mut failure = self.failure.lock().expect("failure");
        if failure.is_none() {
            *failure = Some(what);
        }
    }
}

/// The node agents and the load of a crash test, running.
pub(crate) struct Running {
    pub nodes: BTreeMap<&'static str, Process>,
    pub load: Arc<Load>,
    pub stop: Arc<AtomicBool>,
    pub sender: tokio::task::JoinHandle<()>,
    pub movers: Vec<tokio::task::JoinHandle<()>>,
}

/// Starts a node agent per recipient, the senders at `rate` documents a
/// second and each recipient's status moves, against the layout's hubs.
pub(crate) fn start_load(
    layout: &Layout,
    roots: &TrustRoots,
    documents: &Arc<Vec<PlannedDocument>>,
    rate: f64,
    concurrency: usize,
) -> anyhow::Result<Running> {
    let mut nodes = BTreeMap::new();
    for code in RECIPIENTS {
        nodes.insert(code, layout.start_node(code)?);
    }
    let clients = Arc::new(Clients {
        hubs: layout.hub_addresses(),
        roots: roots.clone(),
        pki: layout.pki.clone(),
        open: Mutex::default(),
    });
    let load = Arc::new(Load::default());
    let stop = Arc::new(AtomicBool::new(false));
    let sender = tokio::spawn(send_all(
        documents.clone(),
        clients.clone(),
        load.clone(),
        rate,
        concurrency,
    ));
    let movers = RECIPIENTS
        .into_iter()
        .map(|code| {
            tokio::spawn(move_loop(
                code,
                layout.inbox(code),
                documents.clone(),
                clients.clone(),
                load.clone(),
                stop.clone(),
            ))
        })
        .collect();
    Ok(Running {
        nodes,
        load,
        stop,
        sender,
        movers,
    })
}

pub(crate) async fn send_all(
    documents: Arc<Vec<PlannedDocument>>,
    clients: Arc<Clients>,
    load: Arc<Load>,
    rate: f64,
    concurrency: usize,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let started = tokio::time::Instant::now();
    for index in 0..documents.len() {
        tokio::time::sleep_until(started + Duration::from_secs_f64(index as f64 / rate.max(0.1)))
            .await;
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (documents, clients, load) = (documents.clone(), clients.clone(), load.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let document = &documents[index];
            let draft = document.draft();
            loop {
                let client = match clients.get(document.sender).await {
                    Ok(client) => client,
                    Err(_) => {
                        tokio::time::sleep(RETRY_DELAY).await;
                        continue;
                    }
                };
                load.sends_in_flight.fetch_add(1, Ordering::SeqCst);
                let sent = client.send(&draft, vec![document.attachment()]).await;
                load.sends_in_flight.fetch_sub(1, Ordering::SeqCst);
                match sent {
                    Ok(response) => {
                        let accepted = response.recipients.iter().filter(|r| r.accepted).count();
                        if accepted != document.recipients.len() {
                            load.fail(format!(
                                "{}: {accepted} of {} recipients accepted",
                                response.document_id,
                                document.recipients.len()
                            ));
                        }
                        load.acknowledged.lock().expect("acks").insert(index);
                        return;
                    }
                    Err(error) if error.is_transient() => {
                        // A resend of a stored document answers with its first acknowledgement.
                        load.send_retries.fetch_add(1, Ordering::Relaxed);
                        clients.forget(document.sender);
                        tokio::time::sleep(RETRY_DELAY).await;
                    }
                    Err(error) => {
                        load.fail(format!("sending {}: {error}", draft.document_id()));
                        return;
                    }
                }
            }
        });
    }
    load.dispatched_all.store(true, Ordering::SeqCst);
}

/// Documents in a recipient's inbox (hidden staging folders are not the application's).
pub(crate) fn inbox_entries(inbox: &Path) -> BTreeSet<String> {
    std::fs::read_dir(inbox)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .filter(|name| !name.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

/// One recipient's application: it reads its inbox and reports the planned moves of each
/// document that appeared there, as the node agent's user would.
pub(crate) async fn move_loop(
    recipient: &'static str,
    inbox: PathBuf,
    documents: Arc<Vec<PlannedDocument>>,
    clients: Arc<Clients>,
    load: Arc<Load>,
    stop: Arc<AtomicBool>,
) {
    let by_folder: HashMap<String, usize> = documents
        .iter()
        .enumerate()
        .filter(|(_, d)| {
            d.recipients
                .iter()
                .any(|(r, m)| *r == recipient && !m.is_empty())
        })
        .map(|(index, d)| (inbox_name(&d.draft().document_id()), index))
        .collect();
    let mut done: BTreeSet<usize> = BTreeSet::new();
    while !stop.load(Ordering::SeqCst) {
        // Off the runtime: a power-cut file system holds a read while the power is stopped.
        let listed = {
            let inbox = inbox.clone();
            tokio::task::spawn_blocking(move || inbox_entries(&inbox))
                .await
                .unwrap_or_default()
        };
        let ready: Vec<usize> = listed
            .iter()
            .filter_map(|name| by_folder.get(name).copied())
            .filter(|index| !done.contains(index))
            .take(MOVE_DOCUMENTS_PER_CALL_MAX)
            .collect();
        if ready.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let mut requests = Vec::new();
        let mut keys = Vec::new();
        for &index in &ready {
            let moves = documents[index]
                .recipients
                .iter()
                .find(|(r, _)| *r == recipient)
                .map(|(_, m)| *m)
                .unwrap_or_default();
            for status in moves {
                requests.push(MoveRequest {
                    document_id: documents[index].draft().document_id(),
                    recipient: String::new(),
                    status: *status,
                    reason: String::new(),
                });
                keys.push((index, status.code()));
            }
        }
        let mut after_transient = false;
        loop {
            let client = match clients.get(recipient).await {
                Ok(client) => client,
                Err(_) => {
                    tokio::time::sleep(RETRY_DELAY).await;
                    continue;
                }
            };
            load.moves_in_flight
                .fetch_add(requests.len() as u64, Ordering::SeqCst);
            let outcome = client.move_statuses(requests.clone()).await;
            load.moves_in_flight
                .fetch_sub(requests.len() as u64, Ordering::SeqCst);
            match outcome {
                Ok(results) => {
                    for ((index, code), result) in keys.iter().zip(results) {
                        match result {
                            Ok(_) => {
                                load.moves_acknowledged
                                    .lock()
                                    .expect("moves")
                                    .insert((*index, recipient, *code));
                            }
                            // The batch went through before the hub died, unanswered: the
                            // hub's record is checked against the plan at the end.
                            Err(refusal)
                                if after_transient
                                    && refusal.code() == tonic::Code::FailedPrecondition => {}
                            Err(refusal) => load.fail(format!(
                                "{recipient} moving {} to {code}: {}",
                                documents[*index].draft().document_id(),
                                refusal.message()
                            )),
                        }
                    }
                    break;
                }
                Err(error) if error.is_transient() => {
                    after_transient = true;
                    load.move_retries.fetch_add(1, Ordering::Relaxed);
                    clients.forget(recipient);
                    tokio::time::sleep(RETRY_DELAY).await;
                }
                Err(error) => {
                    load.fail(format!("{recipient} moving statuses: {error}"));
                    break;
                }
            }
        }
        let mut settled = load.moves_settled.lock().expect("settled");
        for index in ready {
            done.insert(index);
            settled.insert((index, recipient));
        }
    }
}

/// Waits until the (first) hub process answers an operator call.
pub(crate) async fn wait_ready(layout: &Layout, roots: &TrustRoots) -> anyhow::Result<AxisClient> {
    wait_ready_at(layout, roots, 0).await
}

/// Waits until hub `index` answers an operator call.
pub(crate) async fn wait_ready_at(
    layout: &Layout,
    roots: &TrustRoots,
    index: usize,
) -> anyhow::Result<AxisClient> {
    let deadline = Instant::now() + HUB_READY_WAIT_MAX;
    let credentials = layout.pki.operator_credentials(OPERATOR)?;
    let address = layout.hubs[index].address;
    loop {
        if let Ok(client) = AxisClient::connect(address, roots, credentials.clone()).await {
            if client.counts("", "").await.is_ok() {
                return Ok(client);
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "the hub did not answer within {HUB_READY_WAIT_MAX:?} of its start; see {}",
                layout.root.join("hub.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What was under way when the hub was killed, and how long it took to serve again.
#[derive(serde::Serialize, Clone, Copy)]
struct Kill {
    after_start_ms: u64,
    sends_in_flight: u64,
    /// Acknowledged deliveries not yet in their recipient's inbox.
    deliveries_in_flight: u64,
    moves_in_flight: u64,
    /// From SIGKILL until the restarted hub answers an operator call.
    recovery_ms: u64,
}

#[derive(serde::Serialize)]
struct Figures {
    seed: u64,
    documents: usize,
    deliveries: usize,
    moves: usize,
    hub_kills: usize,
    node_kills: u32,
    kills_mid_send: usize,
    kills_mid_delivery: usize,
    kills_mid_status: usize,
    recovery_ms_median: u64,
    recovery_ms_max: u64,
    send_retries: u64,
    move_retries: u64,
    lost: usize,
    duplicates: usize,
    seconds: f64,
    kills: Vec<Kill>,
}

pub(crate) fn deliveries_in_flight(
    layout: &Layout,
    documents: &[PlannedDocument],
    load: &Load,
) -> u64 {
    let acknowledged = load.acknowledged.lock().expect("acks").clone();
    let inboxes: HashMap<&str, BTreeSet<String>> = RECIPIENTS
        .iter()
        .map(|code| (*code, inbox_entries(&layout.inbox(code))))
        .collect();
    let inboxes = &inboxes;
    acknowledged
        .iter()
        .flat_map(|index| {
            let name = inbox_name(&documents[*index].draft().document_id());
            documents[*index]
                .recipients
                .iter()
                .filter(move |(r, _)| !inboxes[r].contains(&name))
        })
        .count() as u64
}

/// How long a kill waits for the kind of work it aims at before it falls anyway.
pub(crate) const AIM_WAIT_MAX: Duration = Duration::from_secs(3);

/// Waits until every document is acknowledged, delivered into its inboxes and moved.
pub(crate) async fn settle(
    layout: &Layout,
    documents: &[PlannedDocument],
    load: &Load,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let settle_started = Instant::now();
    loop {
        if let Some(failure) = load.failure.lock().expect("failure").clone() {
            bail!("the load failed: {failure}");
        }
        let acknowledged = load.acknowledged.lock().expect("acks").len();
        let settled = load.moves_settled.lock().expect("settled").len();
        let with_moves = documents
            .iter()
            .flat_map(|d| &d.recipients)
            .filter(|(_, m)| !m.is_empty())
            .count();
        let pending = deliveries_in_flight(layout, documents, load);
        if load.dispatched_all.load(Ordering::SeqCst)
            && acknowledged == documents.len()
            && pending == 0
            && settled == with_moves
        {
            break;
        }
        if Instant::now() >= deadline {
            bail!(
                "not settled {:?} after the last kill: {acknowledged}/{} sends acknowledged, \
                 {pending} deliveries not in their inbox, {settled}/{with_moves} deliveries moved",
                settle_started.elapsed(),
                documents.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    Ok(())
}

/// What the final checks found.
pub(crate) struct Checked {
    pub problems: Vec<String>,
    pub lost: usize,
    pub duplicates: usize,
}

/// The hub's view through the operator API, and the applications' view of the inboxes.
pub(crate) async fn check_online(
    layout: &Layout,
    roots: &TrustRoots,
    documents: &[PlannedDocument],
    load: &Load,
) -> anyhow::Result<Checked> {
    let deliveries: usize = documents.iter().map(|d| d.recipients.len()).sum();
    let mut problems: Vec<String> = Vec::new();
    let mut lost = 0usize;
    let mut duplicates = 0usize;
    let operator = wait_ready(layout, roots).await?;
    let moves_acknowledged = load.moves_acknowledged.lock().expect("moves").clone();

    // The hub's view: every acknowledged document with every planned delivery and move, once.
    for (index, document) in documents.iter().enumerate() {
        let id = document.draft().document_id();
        let status = match operator.get_status(&id).await {
            Ok(status) => status,
            Err(error) => {
                lost += 1;
                problems.push(format!("{id}: acknowledged but not on the hub: {error}"));
                continue;
            }
        };
        for (recipient, planned) in &document.recipients {
            let Some(row) = status.recipients.iter().find(|r| r.recipient == *recipient) else {
                lost += 1;
                problems.push(format!("{id}: no delivery to {recipient}"));
                continue;
            };
            let codes: Vec<u32> = row.history.iter().map(|e| e.status.code() as u32).collect();
            let expected: Vec<u32> = std::iter::once(Status::Arrived.code())
                .chain(planned.iter().map(|s| s.code()))
                .collect();
            if codes != expected {
                let missing = expected.iter().filter(|c| !codes.contains(c)).count();
                lost += missing;
                duplicates += codes.len().saturating_sub(expected.len() - missing);
                problems.push(format!(
                    "{id} at {recipient}: history {codes:?}, planned {expected:?}"
                ));
            }
            for code in planned.iter().map(|s| s.code()) {
                if moves_acknowledged.contains(&(index, recipient, code)) && !codes.contains(&code)
                {
                    problems.push(format!(
                        "{id} at {recipient}: acknowledged move {code} lost"
                    ));
                }
            }
        }
    }
    let counts = operator.counts("", "").await?;
    if counts.total_sent != documents.len() as u64 || counts.total_received != deliveries as u64 {
        problems.push(format!(
            "counts: {} sent and {} received; the plan has {} and {deliveries}",
            counts.total_sent,
            counts.total_received,
            documents.len()
        ));
    }

    // The applications' view: each inbox holds exactly its documents, and no node told its
    // application of one document twice, over all its restarts.
    for code in RECIPIENTS {
        let expected: BTreeSet<String> = documents
            .iter()
            .filter(|d| d.recipients.iter().any(|(r, _)| *r == code))
            .map(|d| inbox_name(&d.draft().document_id()))
            .collect();
        let present = inbox_entries(&layout.inbox(code));
        for name in expected.difference(&present) {
            lost += 1;
            problems.push(format!("{code}: {name} missing from the inbox"));
        }
        for name in present.difference(&expected) {
            problems.push(format!(
                "{code}: {name} in the inbox but not planned for it"
            ));
        }
        let printed = std::fs::read_to_string(layout.root.join(format!("node-{code}.out")))?;
        let mut told: HashMap<&str, usize> = HashMap::new();
        for line in printed.lines() {
            if let Some(rest) = line.strip_prefix("received ") {
                let id = rest.split(": ").next().unwrap_or(rest);
                *told.entry(id).or_default() += 1;
            }
        }
        for (id, times) in told.into_iter().filter(|(_, times)| *times > 1) {
            duplicates += times - 1;
            problems.push(format!(
                "{code}: the application was told of {id} {times} times"
            ));
        }
    }

    Ok(Checked {
        problems,
        lost,
        duplicates,
    })
}

/// The stopped data directory: the same records, counters equal to a recount, no queue left.
pub(crate) fn check_offline(
    data_dir: &Path,
    documents: &[PlannedDocument],
) -> anyhow::Result<Vec<String>> {
    let store = truc_store::Store::open(data_dir, &truc_store::StoreOptions::default())
        .context("the stopped hub's data directory does not open")?;
    check_store(&store, "data directory", documents)
}

/// A store read directly: every planned document and delivery with its
/// history once, counters equal to a recount, an audit chain that verifies
/// from its first entry to its head, and no delivery left in a queue.
pub(crate) fn check_store(
    store: &truc_store::Store,
    what: &str,
    documents: &[PlannedDocument],
) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    let stored = store.document_ids().count();
    if stored != documents.len() {
        problems.push(format!(
            "{what}: {stored} documents, planned {}",
            documents.len()
        ));
    }
    for document in documents.iter() {
        let id = document.draft().document_id();
        let records = store.deliveries(&id)?;
        for (recipient, planned) in &document.recipients {
            let Some(record) = records.iter().find(|r| r.recipient == *recipient) else {
                problems.push(format!("{what}: {id} has no delivery to {recipient}"));
                continue;
            };
            if record.history.len() != planned.len() + 1 {
                problems.push(format!(
                    "{what}: {id} at {recipient} has {} entries, planned {}",
                    record.history.len(),
                    planned.len() + 1
                ));
            }
        }
    }
    if store.counter_entries()? != store.rebuild_counters()? {
        problems.push(format!("{what}: the counters differ from a recount"));
    }
    let mut previous = truc_store::audit::GENESIS_SHA256;
    let mut entries = 0u64;
    for entry in store.audit_entries(1) {
        let entry = entry?;
        entries += 1;
        if entry.seq != entries
            || entry.previous_sha256 != previous
            || entry.compute_sha256() != entry.sha256
        {
            problems.push(format!(
                "{what}: the audit chain breaks at entry {}",
                entry.seq
            ));
            break;
        }
        previous = entry.sha256;
    }
    let head = store.audit_head()?;
    if head.seq != entries || head.sha256 != previous {
        problems.push(format!(
            "{what}: the audit head ({}) is not the chain's last entry ({entries})",
            head.seq
        ));
    }
    // Notices may wait for a sender's next connection; a delivery may not.
    for code in RECIPIENTS {
        if let Some(item) = store.oldest_queued_delivery(code)? {
            problems.push(format!(
                "{what}: a delivery is still queued for {code}: {item:?}"
            ));
        }
    }
    Ok(problems)
}

pub async fn run(args: CrashtestArgs) -> anyhow::Result<ExitCode> {
    if let Some(data_dir) = &args.check_stopped {
        let documents = plan(args.documents, &mut SplitMix64::new(args.seed));
        for problem in check_offline(data_dir, &documents)? {
            println!("{problem}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.power_cut {
        return crate::powercut::run(args).await;
    }
    let started = Instant::now();
    let temporary;
    let root = match &args.keep {
        Some(path) => {
            std::fs::create_dir_all(path)?;
            if std::fs::read_dir(path)?.next().is_some() {
                bail!(
                    "{} is not empty: a crash test starts from nothing",
                    path.display()
                );
            }
            path.clone()
        }
        None => {
            temporary = tempfile::Builder::new().prefix("truc-crash-").tempdir()?;
            temporary.path().to_owned()
        }
    };
    if args.cluster {
        return crate::cluster::run(args, &root).await;
    }
    let mut rng = SplitMix64::new(args.seed);
    let documents = Arc::new(plan(args.documents, &mut rng));
    let deliveries: usize = documents.iter().map(|d| d.recipients.len()).sum();
    let moves: usize = documents
        .iter()
        .flat_map(|d| &d.recipients)
        .map(|(_, m)| m.len())
        .sum();
    let layout = setup(&root, &root)?;
    let roots = layout.pki.trust_roots()?;

    let mut hub = layout.start_hub()?;
    wait_ready(&layout, &roots).await?;
    let Running {
        mut nodes,
        load,
        stop,
        sender,
        movers,
    } = start_load(
        &layout,
        &roots,
        &documents,
        args.rate.unwrap_or(80.0),
        args.concurrency,
    )?;

    // Node kills fall in the middle of the intervals between hub kills, spread evenly.
    let node_kill_every = (args.hub_kills / args.node_kills.max(1)).max(1);
    let mut node_kills = 0;
    let mut kills = Vec::new();
    for round in 0..args.hub_kills {
        let span = args
            .kill_after_max_ms
            .saturating_sub(args.kill_after_min_ms)
            + 1;
        let wait = Duration::from_millis(args.kill_after_min_ms + rng.below_modulo(span));
        if node_kills < args.node_kills && round.is_multiple_of(node_kill_every) {
            tokio::time::sleep(wait / 2).await;
            let code = RECIPIENTS[rng.below_modulo(RECIPIENTS.len() as u64) as usize];
            if let Some(mut node) = nodes.remove(code) {
                node.kill_9();
            }
            nodes.insert(code, layout.start_node(code)?);
            node_kills += 1;
            tokio::time::sleep(wait / 2).await;
        } else {
            tokio::time::sleep(wait).await;
        }
        // Kills take turns aiming at a send, a delivery and a status move under way, so that
        // each kind is cut even on a slow machine; after a short wait any moment will do.
        let aim = Instant::now() + AIM_WAIT_MAX;
        let (in_flight, pending) = loop {
            let in_flight = (
                load.sends_in_flight.load(Ordering::SeqCst),
                load.moves_in_flight.load(Ordering::SeqCst),
            );
            let pending = deliveries_in_flight(&layout, &documents, &load);
            let hit = match round % 3 {
                0 => in_flight.0 > 0,
                1 => pending > 0,
                _ => in_flight.1 > 0,
            };
            if hit || Instant::now() >= aim {
                break (in_flight, pending);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let at = started.elapsed();
        hub.kill_9();
        let killed = Instant::now();
        hub = layout.start_hub()?;
        wait_ready(&layout, &roots).await?;
        kills.push(Kill {
            after_start_ms: at.as_millis() as u64,
            sends_in_flight: in_flight.0,
            deliveries_in_flight: pending,
            moves_in_flight: in_flight.1,
            recovery_ms: killed.elapsed().as_millis() as u64,
        });
        eprintln!(
            "kill {}: {} sends, {} deliveries, {} moves in flight; serving again after {} ms",
            kills.len(),
            in_flight.0,
            pending,
            in_flight.1,
            killed.elapsed().as_millis()
        );
        if let Some(failure) = load.failure.lock().expect("failure").clone() {
            bail!("the load failed: {failure}");
        }
    }

    settle(
        &layout,
        &documents,
        &load,
        Duration::from_secs(args.settle_timeout_secs),
    )
    .await?;
    stop.store(true, Ordering::SeqCst);
    sender.await?;
    for mover in movers {
        mover.await?;
    }
    let Checked {
        mut problems,
        lost,
        duplicates,
    } = check_online(&layout, &roots, &documents, &load).await?;
    for (_, mut node) in std::mem::take(&mut nodes) {
        node.kill_9();
    }
    hub.kill_9();
    problems.extend(check_offline(&layout.data_dir, &documents)?);

    let mut recovery: Vec<u64> = kills.iter().map(|k| k.recovery_ms).collect();
    recovery.sort_unstable();
    let figures = Figures {
        seed: args.seed,
        documents: documents.len(),
        deliveries,
        moves,
        hub_kills: kills.len(),
        node_kills,
        kills_mid_send: kills.iter().filter(|k| k.sends_in_flight > 0).count(),
        kills_mid_delivery: kills.iter().filter(|k| k.deliveries_in_flight > 0).count(),
        kills_mid_status: kills.iter().filter(|k| k.moves_in_flight > 0).count(),
        recovery_ms_median: recovery.get(recovery.len() / 2).copied().unwrap_or(0),
        recovery_ms_max: recovery.last().copied().unwrap_or(0),
        send_retries: load.send_retries.load(Ordering::Relaxed),
        move_retries: load.move_retries.load(Ordering::Relaxed),
        lost,
        duplicates,
        seconds: started.elapsed().as_secs_f64(),
        kills,
    };
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&figures)?)?;
    }
    println!(
        "{} hub kills ({} mid-send, {} mid-delivery, {} mid-status) and {} node kills over {} \
         documents, {} deliveries, {} moves in {:.1} s; recovery after restart: median {} ms, \
         max {} ms; {} sends and {} move batches retried; lost {}, duplicates {}",
        figures.hub_kills,
        figures.kills_mid_send,
        figures.kills_mid_delivery,
        figures.kills_mid_status,
        figures.node_kills,
        figures.documents,
        figures.deliveries,
        figures.moves,
        figures.seconds,
        figures.recovery_ms_median,
        figures.recovery_ms_max,
        figures.send_retries,
        figures.move_retries,
        figures.lost,
        figures.duplicates
    );
    if problems.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for problem in problems.iter().take(20) {
        eprintln!("✗ {problem}");
    }
    if args.keep.is_none() {
        // Keep the evidence of a failure.
        let kept = std::env::temp_dir().join(format!("truc-crash-failed-{}", args.seed));
        let _ = std::fs::remove_dir_all(&kept);
        if std::fs::rename(&root, &kept).is_ok() {
            eprintln!("data, inboxes and logs kept in {}", kept.display());
        }
    }
    eprintln!("{} problems", problems.len());
    Ok(ExitCode::FAILURE)
}
