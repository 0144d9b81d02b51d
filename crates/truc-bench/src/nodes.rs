//! The agencies' side of a run: one connection per agency for sends and
//! status moves, and (when the scenario delivers) one node per agency holding
//! its delivery stream, counting and acknowledging every delivery and notice
//! at once, as a node that has written the document would.

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};
use truc_domain::views::{Delivery, HubItem, StatusCode, StatusNotice};
use truc_domain::Status;
use truc_node::{
    Acks, AxisClient, ClientError, DeliveryHandler, Receipt, SessionEnd, StreamOptions,
};
use truc_pki::TrustRoots;

use crate::agencies::Agency;
use crate::documents::RunTag;
use crate::error::BenchError;
use crate::hub_process::HubTarget;
use crate::latency::LatencyRecorder;

/// Longest wait for one connection (TCP and the TLS handshake) or for a node's
/// delivery stream to open.
const CONNECT_MAX: Duration = Duration::from_secs(30);

/// Connects as one agency, within [`CONNECT_MAX`]; with several hubs the
/// agency at `index` starts on the `index`-th, so the load spreads over them.
async fn connect(
    target: &HubTarget,
    roots: &TrustRoots,
    code: &str,
    index: usize,
) -> Result<AxisClient, BenchError> {
    let credentials = target.pki.agency_credentials(code)?;
    tokio::time::timeout(
        CONNECT_MAX,
        AxisClient::connect_hubs(&target.hubs.rotated(index), roots, credentials),
    )
    .await
    .map_err(|_| {
        BenchError::Setup(format!(
            "{code}: the hub did not accept a connection within {} s",
            CONNECT_MAX.as_secs()
        ))
    })?
    .map_err(BenchError::from)
}

/// One timed phase's documents: when each was sent, and what arrived.
pub struct PhaseTracker {
    /// Document indices of this phase.
    pub indices: Range<u64>,
    /// Start of the phase; every time below is measured from here.
    pub origin: Instant,
    /// Microseconds after `origin` each document was sent, plus one (0: not sent).
    sent_at: Vec<AtomicU64>,
    pub deliveries: AtomicU64,
    /// Microseconds after `origin` of the latest delivery.
    last_delivery_micros: AtomicU64,
    pub send_to_delivery: LatencyRecorder,
    /// (document id, recipient index) in arrival order, when the phase keeps them.
    pub arrivals: Option<Mutex<Vec<(String, usize)>>>,
}

impl PhaseTracker {
    pub fn new(indices: Range<u64>, keep_arrivals: bool) -> Self {
        let count = (indices.end - indices.start) as usize;
        Self {
            indices,
            origin: Instant::now(),
            sent_at: (0..count).map(|_| AtomicU64::new(0)).collect(),
            deliveries: AtomicU64::new(0),
            last_delivery_micros: AtomicU64::new(0),
            send_to_delivery: LatencyRecorder::new(),
            arrivals: keep_arrivals.then(|| Mutex::new(Vec::new())),
        }
    }

    fn slot(&self, index: u64) -> Option<&AtomicU64> {
        if self.indices.contains(&index) {
            self.sent_at.get((index - self.indices.start) as usize)
        } else {
            None
        }
    }

    pub fn mark_sent(&self, index: u64, at: Instant) {
        if let Some(slot) = self.slot(index) {
            let micros = at.saturating_duration_since(self.origin).as_micros() as u64;
            slot.store(micros + 1, Ordering::Release);
        }
    }

    /// Records one delivery of document `index` received now. Returns false
    /// when the document is not one of this phase's.
    pub fn delivered(&self, index: u64, now: Instant) -> bool {
        let Some(slot) = self.slot(index) else {
            return false;
        };
        let now_micros = now.saturating_duration_since(self.origin).as_micros() as u64;
        let sent = slot.load(Ordering::Acquire);
        if sent > 0 {
            self.send_to_delivery
                .record(Duration::from_micros(now_micros.saturating_sub(sent - 1)));
        }
        self.deliveries.fetch_add(1, Ordering::AcqRel);
        self.last_delivery_micros
            .fetch_max(now_micros, Ordering::AcqRel);
        true
    }

    pub fn delivered_count(&self) -> u64 {
        self.deliveries.load(Ordering::Acquire)
    }

    /// From the start of the phase to its latest delivery.
    pub fn until_last_delivery(&self) -> Duration {
        Duration::from_micros(self.last_delivery_micros.load(Ordering::Acquire))
    }
}

/// Counts over a whole scenario, shared by its nodes.
#[derive(Default)]
pub struct NodeCounters {
    /// Notices of "arrived" for this run's documents, acknowledged by their senders.
    pub notices_arrived: AtomicU64,
    /// Notices of other moves for this run's documents.
    pub notices_moved: AtomicU64,
    /// Deliveries and notices of documents of other runs (an existing hub's
    /// leftovers): acknowledged, not counted.
    pub other_runs: AtomicU64,
    /// Deliveries of this run that belong to no current phase.
    pub outside_phase: AtomicU64,
    pub failures: AtomicU64,
    first_failure: Mutex<Option<String>>,
}

impl NodeCounters {
    pub fn fail(&self, what: String) {
        self.failures.fetch_add(1, Ordering::AcqRel);
        let mut first = self.first_failure.lock().unwrap_or_else(|p| p.into_inner());
        first.get_or_insert(what);
    }

    pub fn first_failure(&self) -> Option<String> {
        self.first_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// What every node of a scenario shares.
pub struct NodeContext {
    pub tag: RunTag,
    /// Set when recipients verify each delivery's certificate and signature.
    pub verify_with: Option<TrustRoots>,
    pub phase: RwLock<Option<Arc<PhaseTracker>>>,
    pub counters: NodeCounters,
}

impl NodeContext {
    pub fn set_phase(&self, phase: Option<Arc<PhaseTracker>>) {
        *self.phase.write().unwrap_or_else(|p| p.into_inner()) = phase;
    }

    fn current_phase(&self) -> Option<Arc<PhaseTracker>> {
        self.phase.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The agencies of one scenario, connected.
pub struct Fleet {
    /// One connection per agency for sends and moves, apart from its node's.
    pub clients: Vec<AxisClient>,
    pub context: Arc<NodeContext>,
    stop: watch::Sender<bool>,
    nodes: Vec<tokio::task::JoinHandle<()>>,
}

impl Fleet {
    /// Connects every agency and, with `window`, starts its node and waits
    /// until each delivery stream is open.
    pub async fn connect(
        target: &HubTarget,
        agencies: Vec<Agency>,
        window: Option<u32>,
        tag: RunTag,
        verify: bool,
    ) -> Result<Fleet, BenchError> {
        let roots = target.pki.trust_roots()?;
        let context = Arc::new(NodeContext {
            tag,
            verify_with: verify.then(|| roots.clone()),
            phase: RwLock::new(None),
            counters: NodeCounters::default(),
        });
        let mut clients = Vec::with_capacity(agencies.len());
        for (index, agency) in agencies.iter().enumerate() {
            clients.push(connect(target, &roots, &agency.code, index).await?);
        }
        let (stop, stopped) = watch::channel(false);
        let mut nodes = Vec::new();
        if let Some(window) = window {
            let mut ready = Vec::new();
            for (me, agency) in agencies.iter().enumerate() {
                let client = connect(target, &roots, &agency.code, me).await?;
                let (opened, opened_receiver) = oneshot::channel();
                nodes.push(tokio::spawn(run_node(
                    client,
                    me,
                    agency.code.clone(),
                    window,
                    context.clone(),
                    stopped.clone(),
                    opened,
                )));
                ready.push(opened_receiver);
            }
            for (agency, opened) in agencies.iter().zip(ready) {
                tokio::time::timeout(CONNECT_MAX, opened)
                    .await
                    .map_err(|_| {
                        BenchError::Setup(format!(
                            "{}: the delivery stream did not open within {} s",
                            agency.code,
                            CONNECT_MAX.as_secs()
                        ))
                    })?
                    .map_err(|_| BenchError::Setup(format!("the node of {} stopped", agency.code)))?
                    .map_err(|error| {
                        BenchError::Setup(format!(
                            "{}: cannot open its delivery stream: {error}",
                            agency.code
                        ))
                    })?;
            }
        }
        Ok(Fleet {
            clients,
            context,
            stop,
            nodes,
        })
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for node in self.nodes {
            let _ = node.await;
        }
    }
}

/// One agency's delivery stream until `stop`. A stream that breaks is a
/// failure of the run, not something to retry quietly.
async fn run_node(
    client: AxisClient,
    me: usize,
    code: String,
    window: u32,
    context: Arc<NodeContext>,
    stop: watch::Receiver<bool>,
    opened: oneshot::Sender<Result<(), String>>,
) {
    let mut stopped = stop.clone();
    let mut node = BenchNode {
        me,
        code,
        context,
        stop,
        opened: Some(opened),
    };
    let options = StreamOptions {
        window,
        batch_acks: false,
    };
    let shutdown = async move {
        let _ = stopped.changed().await;
    };
    truc_node::run_deliveries(&client, options, &mut node, shutdown).await;
}

/// One agency's node: counts and times what arrives, acknowledging it at once.
struct BenchNode {
    /// The agency's place in the scenario's list.
    me: usize,
    code: String,
    context: Arc<NodeContext>,
    stop: watch::Receiver<bool>,
    /// Told once whether the stream opened.
    opened: Option<oneshot::Sender<Result<(), String>>>,
}

impl BenchNode {
    /// Records a failure of the run, unless the run is stopping.
    fn fail_unless_stopped(&self, what: String) {
        if !*self.stop.borrow() {
            self.context.counters.fail(what);
        }
    }

    fn delivered(&self, delivery: &Delivery) -> Receipt {
        let now = Instant::now();
        let (code, context, counters) = (&self.code, &self.context, &self.context.counters);
        if delivery.recipient != *code {
            counters.fail(format!(
                "{code} was handed a delivery for {}",
                delivery.recipient
            ));
            return Receipt::Stop;
        }
        if let Some(roots) = &context.verify_with {
            if let Err(error) = truc_node::verify::verify_delivery(delivery, roots) {
                // Not acknowledged: a node never accepts what does not verify.
                counters.fail(format!(
                    "{code}: delivery {} does not verify: {error}",
                    delivery.document_id
                ));
                return Receipt::Hold;
            }
        }
        match context.tag.index_of(&delivery.document_id) {
            None => {
                counters.other_runs.fetch_add(1, Ordering::AcqRel);
            }
            Some(index) => match context.current_phase() {
                Some(phase) if phase.delivered(index, now) => {
                    if let Some(arrivals) = &phase.arrivals {
                        arrivals
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push((delivery.document_id.clone(), self.me));
                    }
                }
                _ => {
                    counters.outside_phase.fetch_add(1, Ordering::AcqRel);
                }
            },
        }
        Receipt::Ack
    }

    fn notified(&self, notice: &StatusNotice) -> Receipt {
        let counters = &self.context.counters;
        if self.context.tag.index_of(&notice.document_id).is_none() {
            counters.other_runs.fetch_add(1, Ordering::AcqRel);
        } else {
            // One notice carries every entry one write recorded on a
            // delivery: an arrival and the moves made with it.
            for entry in &notice.entries {
                if entry.status == StatusCode::Status(Status::Arrived) {
                    counters.notices_arrived.fetch_add(1, Ordering::AcqRel);
                } else {
                    counters.notices_moved.fetch_add(1, Ordering::AcqRel);
                }
            }
        }
        Receipt::Ack
    }
}

impl DeliveryHandler for BenchNode {
    type Item = HubItem;

    async fn opened(&mut self, _: SocketAddr) {
        if let Some(opened) = self.opened.take() {
            let _ = opened.send(Ok(()));
        }
    }

    async fn handle(&mut self, item: HubItem, _: &Acks) -> Result<Receipt, ClientError> {
        Ok(match item {
            HubItem::Delivery(delivery) => self.delivered(&delivery),
            HubItem::Notice(notice) => self.notified(&notice),
        })
    }

    /// Never: the bench measures streams that hold.
    fn reconnect(&mut self, end: &SessionEnd) -> Option<Duration> {
        let code = &self.code;
        match end {
            SessionEnd::NotOpened(error) => {
                if let Some(opened) = self.opened.take() {
                    let _ = opened.send(Err(error.to_string()));
                }
            }
            SessionEnd::Broke(error) | SessionEnd::Failed(error) => {
                self.fail_unless_stopped(format!("{code}: the delivery stream broke: {error}"))
            }
            SessionEnd::Ended => {
                self.fail_unless_stopped(format!("{code}: the hub ended the delivery stream"))
            }
            SessionEnd::AcksClosed => {
                self.fail_unless_stopped(format!("{code}: the delivery stream closed"))
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phase_counts_only_its_own_documents_and_measures_from_the_send() {
        let phase = PhaseTracker::new(100..110, false);
        let sent = phase.origin + Duration::from_millis(5);
        phase.mark_sent(103, sent);
        assert!(phase.delivered(103, sent + Duration::from_millis(20)));
        assert!(phase.delivered(103, sent + Duration::from_millis(30)));
        assert!(!phase.delivered(99, sent), "before the phase");
        assert!(!phase.delivered(110, sent), "after the phase");
        assert_eq!(phase.delivered_count(), 2);
        assert_eq!(phase.until_last_delivery(), Duration::from_millis(35));
        let latency = phase.send_to_delivery.summary();
        assert_eq!(latency.count, 2);
        assert!((latency.max_ms - 30.0).abs() < 0.1, "{latency:?}");
    }
}
