//! The load of a crash test: a node agent per recipient, the senders at a steady rate and
//! each recipient's application moving the statuses of what reached its inbox, every call
//! tried again after a kill; what is in flight at any moment, and waiting until it all
//! settled.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use truc_domain::views::MoveRequest;
use truc_node::agent::inbox_name;
use truc_node::{AxisClient, ClientError, FailoverOptions, HubAddresses};
use truc_pki::{PkiPaths, TrustRoots};

use crate::layout::{Layout, Process};
use crate::plan::{PlannedDocument, RECIPIENTS};

/// Wait between two attempts of a call that failed because the hub was down.
pub(crate) const RETRY_DELAY: Duration = Duration::from_millis(50);
/// Documents per `MoveStatuses` call.
const MOVE_DOCUMENTS_PER_CALL_MAX: usize = 64;
/// How long a kill waits for the kind of work it aims at before it falls anyway.
pub(crate) const AIM_WAIT_MAX: Duration = Duration::from_secs(3);

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

impl Running {
    /// Waits until the load has settled (see [`settle`]) and stops it; returns the node
    /// agents, still running.
    pub async fn complete(
        self,
        layout: &Layout,
        documents: &[PlannedDocument],
        timeout: Duration,
    ) -> anyhow::Result<BTreeMap<&'static str, Process>> {
        settle(layout, documents, &self.load, timeout).await?;
        self.stop.store(true, Ordering::SeqCst);
        self.sender.await?;
        for mover in self.movers {
            mover.await?;
        }
        Ok(self.nodes)
    }
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
