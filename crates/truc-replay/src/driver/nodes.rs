//! The units' nodes in a replay: each holds its delivery stream, verifies and acknowledges
//! every delivery once, and makes the plan's status moves for it in batches.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ring::digest::{Context, SHA256};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use truc_domain::views::{Delivery, HubItem, MoveRequest};
use truc_domain::RawAttachment;
use truc_node::verify::verify_delivery;
use truc_node::{
    run_deliveries, Acks, AxisClient, ClientError, DeliveryHandler, Receipt, SessionEnd,
    StreamOptions,
};

use super::{retry_delay, Node, Shared, TRANSIENT_ATTEMPTS_MAX};

/// Most moves one unit makes in one call (the hub's default limit is 4,096).
const MOVES_PER_CALL_MAX: usize = 1_024;

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

/// One unit's delivery stream, reopened if it breaks, until the replay stops.
pub(super) async fn receive_loop(node: Arc<Node>, shared: Arc<Shared>, moves: Mover) {
    // Four windows: what was in flight when a stream broke, with room to spare.
    let handled = Arc::new(Mutex::new(Recent::new(
        4 * (shared.options.window as usize).max(1),
    )));
    let mut stop = shared.stop.clone();
    let options = StreamOptions {
        window: shared.options.window,
        batch_acks: false,
    };
    let client = node.client.clone();
    let mut unit = UnitStream {
        node,
        shared,
        moves,
        handled,
        attempt: 0,
    };
    let shutdown = async move {
        let _ = stop.changed().await;
    };
    run_deliveries(&client, options, &mut unit, shutdown).await;
}

/// A unit's part of the delivery loop: notices acknowledged and counted,
/// deliveries received on tasks of their own, within the replay's bound.
struct UnitStream {
    node: Arc<Node>,
    shared: Arc<Shared>,
    moves: Mover,
    handled: Arc<Mutex<Recent>>,
    /// Streams opened or tried so far, over the whole replay.
    attempt: u32,
}

impl DeliveryHandler for UnitStream {
    type Item = HubItem;

    async fn handle(&mut self, item: HubItem, acks: &Acks) -> Result<Receipt, ClientError> {
        match item {
            HubItem::Notice(notice) => {
                // Counted once acknowledged: the outcome reports notices acknowledged.
                acks.ack(vec![notice.queue_seq]).await?;
                self.shared.notices.fetch_add(1, Ordering::Relaxed);
            }
            HubItem::Delivery(delivery) => {
                let Ok(slot) = self.shared.receive_slots.clone().acquire_owned().await else {
                    return Ok(Receipt::Stop);
                };
                let node = self.node.clone();
                let shared = self.shared.clone();
                let acks = acks.clone();
                let handled = self.handled.clone();
                let moves = self.moves.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    let document_id = delivery.document_id.clone();
                    if let Err(error) =
                        receive_delivery(&node, &shared, &acks, &moves, &handled, delivery).await
                    {
                        shared.fail(format!("{} receiving {document_id}: {error}", node.code));
                    }
                });
            }
        }
        // The delivery's task acknowledges it once checked.
        Ok(Receipt::Hold)
    }

    /// At once after a stream that opened, after a short wait after one
    /// that did not, up to [`TRANSIENT_ATTEMPTS_MAX`] times in all.
    fn reconnect(&mut self, end: &SessionEnd) -> Option<Duration> {
        let code = &self.node.code;
        if let SessionEnd::NotOpened(error) = end {
            if self.attempt < TRANSIENT_ATTEMPTS_MAX {
                tracing::warn!(agency = %code, %error, "delivery stream refused; retrying");
                let wait = retry_delay(self.attempt);
                self.attempt += 1;
                return Some(wait);
            }
            self.shared
                .fail(format!("{code}: delivery stream: {error}"));
            return None;
        }
        if let SessionEnd::Broke(error) = end {
            tracing::warn!(agency = %code, %error, "delivery stream broke; reopening");
        }
        self.attempt += 1;
        if self.attempt > TRANSIENT_ATTEMPTS_MAX {
            self.shared
                .fail(format!("{code}: the delivery stream keeps breaking"));
            return None;
        }
        Some(Duration::ZERO)
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
pub(super) async fn move_loop(
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
}
