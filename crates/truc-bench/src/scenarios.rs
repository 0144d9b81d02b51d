//! The timed phases: sending pre-signed documents (paced or not) and waiting
//! for their deliveries, and the recipients' status moves.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use truc_domain::views::{MoveRequest, SendReceipt};
use truc_domain::Status;
use truc_node::{AxisClient, ClientError};

use crate::documents::SignedDocument;
use crate::latency::{LatencyRecorder, LatencySummary};
use crate::nodes::{NodeCounters, PhaseTracker};
use crate::options::MOVES_PER_DELIVERY;

/// How one send phase went.
#[derive(Debug)]
pub struct DispatchOutcome {
    /// Sends started.
    pub started: u64,
    /// Sends the server acknowledged as asked.
    pub acknowledged: u64,
    /// Sum over acknowledged sends of what each returned (the recipients the
    /// hub accepted, i.e. deliveries it owes).
    pub units: u64,
    pub failures: u64,
    pub first_failure: Option<String>,
    /// Every document of the pool went out before the duration was over.
    pub pool_exhausted: bool,
    /// From the start of the phase until the last acknowledgement.
    pub until_last_ack: Duration,
    /// Send (or planned start, when paced) to acknowledgement.
    pub latency: LatencySummary,
}

impl DispatchOutcome {
    pub fn rate(&self) -> f64 {
        self.acknowledged as f64 / self.until_last_ack.as_secs_f64().max(1e-9)
    }
}

/// Starts `send(item, start)` for the items in order (taken lazily) until `duration` has
/// passed since `origin`, at most `concurrency` at once; with `pace`, item n
/// is planned for `origin + n / pace` and its latency counts from then even
/// when it could only start later (no coordinated omission). Waits up to
/// `answer_timeout` for the sends still in flight; those without an answer
/// by then are failures.
pub async fn dispatch<T, F, Fut>(
    items: impl IntoIterator<Item = T>,
    pace: Option<f64>,
    duration: Duration,
    concurrency: usize,
    origin: Instant,
    answer_timeout: Duration,
    send: F,
) -> DispatchOutcome
where
    T: Send + 'static,
    F: Fn(T, Instant) -> Fut,
    Fut: Future<Output = Result<u64, String>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(concurrency.max(1)));
    let latency = Arc::new(LatencyRecorder::new());
    let acknowledged = Arc::new(AtomicU64::new(0));
    let units = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let first_failure: Arc<Mutex<Option<String>>> = Arc::default();
    let last_ack_micros = Arc::new(AtomicU64::new(0));
    let mut items = items.into_iter();
    let mut pool_exhausted = false;
    let mut started = 0u64;
    let mut tasks = JoinSet::new();
    for position in 0u64.. {
        let planned = pace.map(|rate| origin + Duration::from_secs_f64(position as f64 / rate));
        if let Some(planned) = planned {
            if planned.duration_since(origin) >= duration {
                break;
            }
        }
        let Some(item) = items.next() else {
            pool_exhausted = true;
            break;
        };
        if let Some(planned) = planned {
            tokio::time::sleep_until(planned.into()).await;
        }
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        // Unpaced, the window closes on the clock; paced, a send planned inside
        // the window still goes out when it is late (its latency shows it).
        if planned.is_none() && origin.elapsed() >= duration {
            break;
        }
        let start = planned.unwrap_or_else(Instant::now);
        let future = send(item, start);
        started += 1;
        let (latency, acknowledged, units, failures, first_failure, last_ack_micros) = (
            latency.clone(),
            acknowledged.clone(),
            units.clone(),
            failures.clone(),
            first_failure.clone(),
            last_ack_micros.clone(),
        );
        tasks.spawn(async move {
            let result = future.await;
            let done = Instant::now();
            drop(slot);
            match result {
                Ok(count) => {
                    latency.record(done.saturating_duration_since(start));
                    acknowledged.fetch_add(1, Ordering::AcqRel);
                    units.fetch_add(count, Ordering::AcqRel);
                    let micros = done.saturating_duration_since(origin).as_micros() as u64;
                    last_ack_micros.fetch_max(micros, Ordering::AcqRel);
                }
                Err(error) => {
                    failures.fetch_add(1, Ordering::AcqRel);
                    first_failure
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert(error);
                }
            }
        });
        // Finished tasks are reaped as we go so the set stays the size of the window.
        while tasks.try_join_next().is_some() {}
    }
    if !join_within(&mut tasks, answer_timeout).await {
        let stuck = tasks.len() as u64;
        tasks.abort_all();
        failures.fetch_add(stuck, Ordering::AcqRel);
        first_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(format!(
                "{stuck} sends had no answer {} s after the last was started",
                answer_timeout.as_secs()
            ));
    }
    let first_failure = first_failure
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    DispatchOutcome {
        started,
        acknowledged: acknowledged.load(Ordering::Acquire),
        units: units.load(Ordering::Acquire),
        failures: failures.load(Ordering::Acquire),
        first_failure,
        pool_exhausted,
        until_last_ack: Duration::from_micros(last_ack_micros.load(Ordering::Acquire)),
        latency: latency.summary(),
    }
}

/// Waits for every task of `tasks`; false if some were still running after `timeout`.
async fn join_within(tasks: &mut JoinSet<()>, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, tasks.join_next()).await {
            Ok(Some(_)) => continue,
            Ok(None) => return true,
            Err(_) => return false,
        }
    }
}

/// Sends pre-signed documents to the hub, each by its sender's connection.
/// A send counts when every recipient was accepted and the hub did not take
/// it for a resend.
pub async fn send_to_hub(
    clients: &[AxisClient],
    documents: Vec<SignedDocument>,
    phase: Arc<PhaseTracker>,
    pace: Option<f64>,
    duration: Duration,
    concurrency: usize,
    answer_timeout: Duration,
) -> DispatchOutcome {
    let clients: Arc<Vec<AxisClient>> = Arc::new(clients.to_vec());
    let sender_slots = sender_slots(clients.len(), concurrency);
    let origin = phase.origin;
    dispatch(
        documents,
        pace,
        duration,
        concurrency,
        origin,
        answer_timeout,
        move |document: SignedDocument, start| {
            let client = clients[document.sender].clone();
            let sender_slot = sender_slots[document.sender].clone();
            let phase = phase.clone();
            async move {
                let _sender_slot = sender_slot
                    .acquire_owned()
                    .await
                    .map_err(|_| "the sender's slots closed".to_string())?;
                // Marked before sending: a recipient can be handed the document
                // before its sender hears the acknowledgement.
                phase.mark_sent(document.index, start);
                let expected = document.recipients.len();
                let document_id = document.prepared.document_id.clone();
                let response = client
                    .send_prepared(document.prepared)
                    .await
                    .map_err(|error| format!("sending {document_id}: {error}"))?;
                check_response(&document_id, &response, expected)
            }
        },
    )
    .await
}

/// One slot semaphore per sender, sharing the window evenly among them, as
/// agencies would each keep their own: the hub's per-agency limit on sends
/// in progress (`quotas.sends_in_flight_max`, 16 by default) then holds as
/// shipped.
pub(crate) fn sender_slots(senders: usize, concurrency: usize) -> Arc<Vec<Arc<Semaphore>>> {
    let per_sender = concurrency.max(1).div_ceil(senders.max(1));
    Arc::new(
        (0..senders)
            .map(|_| Arc::new(Semaphore::new(per_sender)))
            .collect(),
    )
}

/// A send counts when every one of its `expected` recipients was accepted
/// and the hub did not take it for a resend; the count is of deliveries owed.
pub(crate) fn check_response(
    document_id: &str,
    response: &SendReceipt,
    expected: usize,
) -> Result<u64, String> {
    if response.duplicate {
        return Err(format!("the hub took {document_id} for a resend"));
    }
    if let Some(refused) = response.recipients.iter().find(|r| !r.accepted) {
        return Err(format!(
            "the hub refused recipient {} of {document_id}: {}",
            refused.organ_id, refused.reason
        ));
    }
    if response.recipients.len() != expected {
        return Err(format!(
            "{document_id}: {} recipients accepted of {expected}",
            response.recipients.len()
        ));
    }
    Ok(expected as u64)
}

/// Polls until `done()` holds, a node fails, or `timeout` passes. Returns
/// whether `done()` held.
pub async fn wait_until(
    counters: &NodeCounters,
    timeout: Duration,
    mut done: impl FnMut() -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if counters.failures.load(Ordering::Acquire) > 0 || Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// How the timed status moves went.
#[derive(Debug)]
pub struct MovesOutcome {
    pub moves: u64,
    /// Deliveries moved all the way to "completed".
    pub completed: u64,
    /// Calls the hub answered (one per move when unary).
    pub calls: u64,
    pub failures: u64,
    pub first_failure: Option<String>,
    /// Every prepared delivery was taken before the duration was over.
    pub exhausted: bool,
    pub until_last_move: Duration,
    /// One call's round trip, answered.
    pub latency: LatencySummary,
}

/// The path each recipient walks after "arrived".
pub const MOVE_PATH: [Status; MOVES_PER_DELIVERY] = [
    Status::Received,
    Status::Assigned,
    Status::Processing,
    Status::Completed,
];

/// What the move chains have done so far, shared by all of them.
struct MoveTally {
    origin: Instant,
    moves: AtomicU64,
    completed: AtomicU64,
    calls: AtomicU64,
    failures: AtomicU64,
    first_failure: Mutex<Option<String>>,
    last_answer_micros: AtomicU64,
    latency: LatencyRecorder,
}

impl MoveTally {
    fn new(origin: Instant) -> Self {
        Self {
            origin,
            moves: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            first_failure: Mutex::new(None),
            last_answer_micros: AtomicU64::new(0),
            latency: LatencyRecorder::new(),
        }
    }

    /// A call started at `started` was answered now.
    fn answered(&self, started: Instant) {
        let done = Instant::now();
        self.latency.record(done - started);
        self.calls.fetch_add(1, Ordering::AcqRel);
        let micros = done.saturating_duration_since(self.origin).as_micros() as u64;
        self.last_answer_micros.fetch_max(micros, Ordering::AcqRel);
    }

    fn failed(&self, moves: u64, why: impl FnOnce() -> String) {
        self.failures.fetch_add(moves, Ordering::AcqRel);
        self.first_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(why);
    }
}

/// Recipients move delivered documents along [`MOVE_PATH`], `concurrency`
/// calls in flight, until `duration` has passed; moves still unanswered
/// `answer_timeout` later are failures. With `moves_per_call` 1 each move is
/// one unary `MoveStatus` call and a chain walks one delivery at a time;
/// above, each call is one `MoveStatuses` carrying the whole paths of
/// `moves_per_call / 4` deliveries of one recipient, as a node's application
/// moves statuses in batches (unary calls cannot carry 100,000 moves/s).
pub async fn move_statuses(
    clients: &[AxisClient],
    deliveries: Vec<(String, usize)>,
    moves_per_call: usize,
    duration: Duration,
    concurrency: usize,
    answer_timeout: Duration,
) -> MovesOutcome {
    let origin = Instant::now();
    let batches = Arc::new(batches(
        deliveries,
        (moves_per_call / MOVES_PER_DELIVERY).max(1),
    ));
    let clients: Arc<Vec<AxisClient>> = Arc::new(clients.to_vec());
    let next = Arc::new(AtomicUsize::new(0));
    let tally = Arc::new(MoveTally::new(origin));
    let mut workers = JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (batches, clients, next, tally) = (
            batches.clone(),
            clients.clone(),
            next.clone(),
            tally.clone(),
        );
        workers.spawn(async move {
            while origin.elapsed() < duration {
                let position = next.fetch_add(1, Ordering::AcqRel);
                let Some(batch) = batches.get(position) else {
                    return;
                };
                let client = &clients[batch.recipient];
                if moves_per_call > 1 {
                    move_batch(client, &batch.documents, &tally).await;
                } else {
                    for document_id in &batch.documents {
                        move_one_by_one(client, document_id, &tally).await;
                    }
                }
            }
        });
    }
    if !join_within(&mut workers, duration + answer_timeout).await {
        let stuck = workers.len() as u64;
        workers.abort_all();
        // A chain waits on one call: one move when unary, else up to a batch.
        tally.failed(stuck * moves_per_call as u64, || {
            format!(
                "{stuck} {} had no answer {} s after the phase",
                if moves_per_call > 1 {
                    "move calls"
                } else {
                    "moves"
                },
                answer_timeout.as_secs()
            )
        });
    }
    let exhausted = next.load(Ordering::Acquire) >= batches.len() && origin.elapsed() < duration;
    let first_failure = tally
        .first_failure
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    MovesOutcome {
        moves: tally.moves.load(Ordering::Acquire),
        completed: tally.completed.load(Ordering::Acquire),
        calls: tally.calls.load(Ordering::Acquire),
        failures: tally.failures.load(Ordering::Acquire),
        first_failure,
        exhausted,
        until_last_move: Duration::from_micros(tally.last_answer_micros.load(Ordering::Acquire)),
        latency: tally.latency.summary(),
    }
}

/// Deliveries of one recipient that one chain takes together.
#[derive(Debug, PartialEq)]
struct MoveBatch {
    recipient: usize,
    documents: Vec<String>,
}

/// Groups deliveries by recipient (a call moves only the caller's own) into
/// batches of `per_batch`, each placed where its last delivery arrived, so
/// the recipients take turns as they did in arrival; the partial batches
/// left over come last.
fn batches(deliveries: Vec<(String, usize)>, per_batch: usize) -> Vec<MoveBatch> {
    let mut filling: Vec<Vec<String>> = Vec::new();
    let mut batches = Vec::with_capacity(deliveries.len().div_ceil(per_batch));
    for (document_id, recipient) in deliveries {
        if filling.len() <= recipient {
            filling.resize_with(recipient + 1, Vec::new);
        }
        let documents = &mut filling[recipient];
        documents.push(document_id);
        if documents.len() == per_batch {
            batches.push(MoveBatch {
                recipient,
                documents: std::mem::take(documents),
            });
        }
    }
    for (recipient, documents) in filling.into_iter().enumerate() {
        if !documents.is_empty() {
            batches.push(MoveBatch {
                recipient,
                documents,
            });
        }
    }
    batches
}

/// One delivery's whole path, one unary call per move; a refused move ends it.
async fn move_one_by_one(client: &AxisClient, document_id: &str, tally: &MoveTally) {
    for status in MOVE_PATH {
        let started = Instant::now();
        match client.move_status(document_id, None, status, "").await {
            Ok(_) => {
                tally.answered(started);
                tally.moves.fetch_add(1, Ordering::AcqRel);
            }
            Err(error) => {
                tally.failed(1, || {
                    format!("moving {document_id} to {}: {error}", status.name())
                });
                return;
            }
        }
    }
    tally.completed.fetch_add(1, Ordering::AcqRel);
}

/// The whole paths of `documents` in one `MoveStatuses` call, each
/// delivery's moves in order; every refused move is a failure, and a call
/// that fails fails all its moves.
async fn move_batch(client: &AxisClient, documents: &[String], tally: &MoveTally) {
    let requests: Vec<MoveRequest> = documents
        .iter()
        .flat_map(|document_id| {
            MOVE_PATH.map(|status| MoveRequest {
                document_id: document_id.clone(),
                recipient: String::new(),
                status,
                reason: String::new(),
            })
        })
        .collect();
    let sent = requests.len();
    let started = Instant::now();
    let results = match client.move_statuses(requests).await {
        Ok(results) => results,
        Err(error) => {
            tally.failed(sent as u64, || {
                format!(
                    "moving {} deliveries in one call ({} first): {error}",
                    documents.len(),
                    documents[0]
                )
            });
            return;
        }
    };
    tally.answered(started);
    if results.len() != sent {
        tally.failed(sent as u64, || {
            format!(
                "the hub answered {} results for {sent} moves ({} first)",
                results.len(),
                documents[0]
            )
        });
        return;
    }
    for (document_id, results) in documents.iter().zip(results.chunks(MOVES_PER_DELIVERY)) {
        let mut whole_path = true;
        for (status, result) in MOVE_PATH.iter().zip(results) {
            match result {
                Ok(_) => {
                    tally.moves.fetch_add(1, Ordering::AcqRel);
                }
                Err(refusal) => {
                    whole_path = false;
                    tally.failed(1, || {
                        let error = ClientError::Refused(refusal.clone());
                        format!("moving {document_id} to {}: {error}", status.name())
                    });
                }
            }
        }
        if whole_path {
            tally.completed.fetch_add(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_hold_one_recipients_deliveries_in_arrival_order() {
        let arrivals: Vec<(String, usize)> = [(0, "a"), (1, "b"), (0, "c"), (2, "d"), (0, "e")]
            .into_iter()
            .map(|(recipient, id)| (id.to_owned(), recipient))
            .collect();
        let batch = |recipient, ids: &[&str]| MoveBatch {
            recipient,
            documents: ids.iter().map(|id| id.to_string()).collect(),
        };
        assert_eq!(
            batches(arrivals.clone(), 2),
            vec![
                batch(0, &["a", "c"]),
                batch(0, &["e"]),
                batch(1, &["b"]),
                batch(2, &["d"])
            ]
        );
        // One delivery per batch keeps the arrival order exactly.
        let one_by_one: Vec<(String, usize)> = batches(arrivals.clone(), 1)
            .into_iter()
            .map(|b| (b.documents[0].clone(), b.recipient))
            .collect();
        assert_eq!(one_by_one, arrivals);
    }

    #[tokio::test]
    async fn an_unpaced_dispatch_stops_at_the_duration_and_counts_what_was_acknowledged() {
        let items: Vec<u64> = (0..1_000_000).collect();
        let outcome = dispatch(
            items,
            None,
            Duration::from_millis(200),
            4,
            Instant::now(),
            Duration::from_secs(10),
            |item, _| async move {
                tokio::time::sleep(Duration::from_millis(2)).await;
                if item % 10 == 9 {
                    Err(format!("item {item} refused"))
                } else {
                    Ok(3)
                }
            },
        )
        .await;
        assert!(!outcome.pool_exhausted);
        assert_eq!(outcome.started, outcome.acknowledged + outcome.failures);
        assert_eq!(outcome.units, outcome.acknowledged * 3);
        assert_eq!(outcome.first_failure.as_deref(), Some("item 9 refused"));
        // At most 4 in flight, each at least 2 ms: no more than 4 × 100 in 200 ms (and a last wave).
        assert!(outcome.started <= 4 * 101 + 4, "{outcome:?}");
        assert!(outcome.acknowledged > 20, "{outcome:?}");
        assert!(outcome.latency.p50_ms >= 2.0, "{outcome:?}");
    }

    #[tokio::test]
    async fn a_paced_dispatch_starts_items_on_schedule_and_says_when_the_pool_ran_out() {
        let origin = Instant::now();
        let starts: Arc<Mutex<Vec<Duration>>> = Arc::default();
        let recorded = starts.clone();
        let outcome = dispatch(
            0..10u32,
            Some(100.0),
            Duration::from_secs(5),
            8,
            origin,
            Duration::from_secs(10),
            move |_, start| {
                recorded.lock().unwrap().push(start - origin);
                async { Ok(1) }
            },
        )
        .await;
        assert!(outcome.pool_exhausted);
        assert_eq!(outcome.acknowledged, 10);
        let starts = starts.lock().unwrap();
        // Planned starts are exactly n / rate.
        for (n, start) in starts.iter().enumerate() {
            assert_eq!(*start, Duration::from_millis(10 * n as u64));
        }
        // The real wall time followed the plan.
        assert!(origin.elapsed() >= Duration::from_millis(90));
    }

    #[tokio::test]
    async fn sends_that_never_answer_are_failures_after_the_answer_timeout() {
        let outcome = dispatch(
            (0..3u32).collect::<Vec<_>>(),
            None,
            Duration::from_secs(5),
            8,
            Instant::now(),
            Duration::from_millis(100),
            |item, _| async move {
                if item == 1 {
                    std::future::pending::<()>().await;
                }
                Ok(1)
            },
        )
        .await;
        assert_eq!(outcome.acknowledged, 2);
        assert_eq!(outcome.failures, 1);
        assert!(outcome.first_failure.unwrap().contains("no answer"));
    }

    #[tokio::test]
    async fn a_paced_dispatch_stops_planning_at_the_duration() {
        let outcome = dispatch(
            0..1000u32,
            Some(50.0),
            Duration::from_millis(300),
            8,
            Instant::now(),
            Duration::from_secs(10),
            |_, _| async { Ok(1) },
        )
        .await;
        // 0, 20, …, 280 ms: 15 planned starts inside 300 ms.
        assert_eq!(outcome.started, 15);
        assert!(!outcome.pool_exhausted);
    }
}
