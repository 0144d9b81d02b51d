//! One node's delivery stream: everything queued for the agency is sent in
//! sequence order within a window of unacknowledged items; what is not
//! acknowledged when the stream ends is sent again on the next one.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use prost::Message as _;
use tokio::sync::{mpsc, Notify};
use tokio_stream::StreamExt;
use tonic::{Status, Streaming};
use truc_domain::AgencyCode;
use truc_proto::v1 as pb;
use truc_store::QueueItem;

use crate::convert::{signature_state, status_entry};
use crate::directory::Act;
use crate::error::HubError;
use crate::Hub;

pub(crate) type Outbound = mpsc::Sender<Result<pb::HubMessage, Status>>;

/// Runs until the node goes away, a newer stream for the same agency
/// replaces this one, or the hub shuts down.
pub(crate) async fn run_session(
    hub: Arc<Hub>,
    agency: AgencyCode,
    window: usize,
    mut inbound: Streaming<pb::NodeMessage>,
    outbound: Outbound,
    replaced: Arc<Notify>,
) {
    let code = agency.to_string();
    let notifier = hub.store.notifier(&code);
    let mut sent = Sent::default();
    let window_bytes = usize::try_from(hub.delivery.window_bytes_max).unwrap_or(usize::MAX);
    let (acked_tx, mut acked_rx) = mpsc::channel::<Result<Vec<u64>, HubError>>(window.max(1));
    let mut shutdown = hub.shutdown.clone();
    let Some(lost) = hold_lease(&hub, agency, &replaced, &mut inbound).await else {
        return;
    };
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        // Fill the window from the durable queue.
        if sent.in_flight.len() < window && sent.in_flight_bytes < window_bytes {
            let room = window - sent.in_flight.len();
            if send_from_queue(&hub, &code, &mut sent, room, window_bytes, &outbound)
                .await
                .is_break()
            {
                return;
            }
        }
        tokio::select! {
            message = inbound.next() => match message {
                Some(Ok(pb::NodeMessage { kind: Some(pb::node_message::Kind::Ack(ack)) })) => {
                    if take_acks(&hub, &code, ack, &mut inbound, &outbound, &acked_tx)
                        .await
                        .is_break()
                    {
                        return;
                    }
                }
                Some(Ok(_)) => {
                    let _ = outbound.send(Err(HubError::invalid("kind", "only acknowledgements may follow the hello").into())).await;
                    return;
                }
                Some(Err(_)) | None => return,
            },
            acked = acked_rx.recv() => match acked {
                Some(Ok(seqs)) => {
                    for seq in seqs {
                        if let Some(bytes) = sent.in_flight.remove(&seq) {
                            sent.in_flight_bytes -= bytes;
                        }
                    }
                }
                Some(Err(error)) => {
                    let _ = outbound.send(Err(error.into())).await;
                    return;
                }
                None => return,
            },
            _ = notifier.notified(), if sent.in_flight.len() < window && sent.in_flight_bytes < window_bytes => {}
            _ = replaced.notified() => {
                tell_if_no_longer_admitted(&hub, agency, &outbound).await;
                return;
            }
            _ = lost.notified() => return,
            _ = shutdown.changed() => return,
        }
    }
}

/// What a session has sent: the queue position read up to, and what is not
/// yet acknowledged.
#[derive(Default)]
struct Sent {
    cursor: u64,
    /// Sent and not yet acknowledged: queue seq → message bytes.
    in_flight: BTreeMap<u64, usize>,
    in_flight_bytes: usize,
}

/// Waits until this hub may push the agency's queue: where hubs share a
/// database, only the lease holder does. `None` if the session ends first.
async fn hold_lease(
    hub: &Arc<Hub>,
    agency: AgencyCode,
    replaced: &Notify,
    inbound: &mut Streaming<pb::NodeMessage>,
) -> Option<Arc<Notify>> {
    let mut shutdown = hub.shutdown.clone();
    let give_up = async {
        tokio::select! {
            _ = replaced.notified() => {}
            _ = shutdown.changed() => {}
            // Nothing was sent yet, so nothing is to be acknowledged:
            // anything from the node now means it is gone.
            _ = inbound.next() => {}
        }
    };
    crate::leases::acquire(hub, agency, give_up).await
}

/// Sends up to `room` queued items after the cursor, stopping early once
/// the bytes in flight reach `window_bytes`; `Break` ends the session.
async fn send_from_queue(
    hub: &Hub,
    code: &str,
    sent: &mut Sent,
    room: usize,
    window_bytes: usize,
    outbound: &Outbound,
) -> ControlFlow<()> {
    let items = match hub.store.queue_after(code, sent.cursor, room) {
        Ok(items) => items,
        Err(error) => {
            let _ = outbound.send(Err(HubError::from(error).into())).await;
            return ControlFlow::Break(());
        }
    };
    for (seq, item) in items {
        sent.cursor = seq;
        let message = match build_message(hub, seq, item) {
            Ok(message) => message,
            Err(error) => {
                let _ = outbound.send(Err(error.into())).await;
                return ControlFlow::Break(());
            }
        };
        let bytes = message.encoded_len();
        if outbound.send(Ok(message)).await.is_err() {
            return ControlFlow::Break(());
        }
        sent.in_flight.insert(seq, bytes);
        sent.in_flight_bytes += bytes;
        // The rest is read again from the queue when room is made.
        if sent.in_flight_bytes >= window_bytes {
            break;
        }
    }
    ControlFlow::Continue(())
}

/// Starts the durable writes of an acknowledgement and of those already
/// waiting behind it on the stream; `Break` ends the session.
async fn take_acks(
    hub: &Hub,
    code: &str,
    ack: pb::Ack,
    inbound: &mut Streaming<pb::NodeMessage>,
    outbound: &Outbound,
    acked_tx: &mpsc::Sender<Result<Vec<u64>, HubError>>,
) -> ControlFlow<()> {
    let max = hub.limits.acks_per_message_max;
    if let Err(error) = check_ack_size(&ack, max) {
        let _ = outbound.send(Err(error.into())).await;
        return ControlFlow::Break(());
    }
    // Acknowledgements already waiting on the stream join this one,
    // up to the limit per write: one durable write for all, and the
    // session goes on sending while it is flushed.
    let mut batches = vec![ack.queue_seqs];
    let mut inbound_ended = false;
    while batches.len() < ACK_WRITES_PER_TURN_MAX {
        match ready_now(inbound).await {
            Some(Some(Ok(pb::NodeMessage {
                kind: Some(pb::node_message::Kind::Ack(more)),
            }))) => {
                if let Err(error) = check_ack_size(&more, max) {
                    let _ = outbound.send(Err(error.into())).await;
                    return ControlFlow::Break(());
                }
                let last = batches.last_mut().expect("one batch at least");
                if last.len() + more.queue_seqs.len() <= max {
                    last.extend(more.queue_seqs);
                } else {
                    batches.push(more.queue_seqs);
                }
            }
            Some(Some(Ok(_))) => {
                let _ = outbound
                    .send(Err(HubError::invalid(
                        "kind",
                        "only acknowledgements may follow the hello",
                    )
                    .into()))
                    .await;
                return ControlFlow::Break(());
            }
            // A node that acknowledges and then ends its side
            // at once has still acknowledged: record it first.
            Some(Some(Err(_)) | None) => {
                inbound_ended = true;
                break;
            }
            None => break,
        }
    }
    for seqs in batches {
        write_acks(hub, code, seqs, acked_tx.clone());
    }
    if inbound_ended {
        return ControlFlow::Break(());
    }
    ControlFlow::Continue(())
}

/// A session was replaced by a newer stream, or its agency is no longer
/// admitted by a reloaded directory: the node is told which.
async fn tell_if_no_longer_admitted(hub: &Hub, agency: AgencyCode, outbound: &Outbound) {
    if let Err(refusal) = hub.directory().admits(&agency, Act::Node) {
        let error = HubError::denied("certificate", refusal.to_string());
        crate::security::event(
            "permission_denied",
            &format!("urn:truc:agency:{agency}"),
            "permission_denied",
            &format!("delivery stream ended: {error}"),
        );
        let _ = outbound.send(Err(error.into())).await;
    }
}

/// Most acknowledgement writes started for what one turn of the loop finds
/// waiting, so that a flood of acknowledgements cannot starve the sending.
const ACK_WRITES_PER_TURN_MAX: usize = 4;

fn check_ack_size(ack: &pb::Ack, max: usize) -> Result<(), HubError> {
    if ack.queue_seqs.len() > max {
        return Err(HubError::TooLarge {
            field: "queue_seqs".into(),
            reason: format!(
                "{} acknowledgements in one message; at most {max}",
                ack.queue_seqs.len()
            ),
        });
    }
    Ok(())
}

/// Records acknowledgements in one durable write, off the session's loop;
/// the result comes back on `acked`.
fn write_acks(
    hub: &Hub,
    code: &str,
    seqs: Vec<u64>,
    acked: mpsc::Sender<Result<Vec<u64>, HubError>>,
) {
    let store = hub.store.clone();
    let code = code.to_owned();
    let now = hub.watch.clock.now_unix_ms();
    let received_deadline = hub.watch.received_deadline(now);
    tokio::spawn(async move {
        let result = store
            .ack_watched(&code, seqs.clone(), now, received_deadline)
            .await;
        if let Ok(outcomes) = &result {
            for outcome in outcomes {
                if matches!(outcome, truc_store::AckOutcome::Arrived(_)) {
                    crate::metrics::delivery_acked(&code);
                }
            }
        }
        let _ = acked
            .send(result.map(|_| seqs).map_err(HubError::from))
            .await;
    });
}

/// The next message if one is ready now, without waiting: `None` if not.
async fn ready_now<T>(stream: &mut Streaming<T>) -> Option<Option<Result<T, Status>>> {
    use tokio_stream::Stream as _;
    std::future::poll_fn(|context| {
        std::task::Poll::Ready(match std::pin::Pin::new(&mut *stream).poll_next(context) {
            std::task::Poll::Ready(next) => Some(next),
            std::task::Poll::Pending => None,
        })
    })
    .await
}

fn build_message(hub: &Hub, seq: u64, item: QueueItem) -> Result<pb::HubMessage, HubError> {
    let kind = match item {
        QueueItem::Delivery {
            document_id,
            recipient,
        } => {
            let record = hub.store.document(&document_id)?.ok_or_else(|| {
                HubError::not_found(
                    "document_id",
                    format!("{document_id} is queued but not stored"),
                )
            })?;
            let inline_bytes: u64 = record.attachments.iter().map(|a| a.size_bytes).sum();
            let inline_attachments = if inline_bytes <= hub.delivery.inline_attachment_bytes_max {
                record
                    .attachments
                    .iter()
                    .map(|attachment| {
                        let mut bytes = Vec::with_capacity(attachment.size_bytes as usize);
                        for chunk in hub.store.blob_chunks(&attachment.sha256)? {
                            bytes.extend_from_slice(&chunk?);
                        }
                        Ok(bytes)
                    })
                    .collect::<Result<Vec<_>, truc_store::StoreError>>()?
            } else {
                Vec::new()
            };
            pb::hub_message::Kind::Delivery(pb::Delivery {
                inline_attachments,
                queue_seq: seq,
                document_id,
                envelope: Some(pb::SignedEnvelope {
                    header: record.header_bytes,
                    signature: record.signature,
                    document_signature: record.document_signature.map(
                        |(certificate, signature)| pb::DocumentSignature {
                            signer_certificate: certificate,
                            signature,
                        },
                    ),
                }),
                sender_certificate: record.sender_certificate,
                document_signature: signature_state(record.document_signature_state) as i32,
                accepted_at_unix_ms: record.accepted_at_unix_ms,
                recipient,
            })
        }
        QueueItem::Notice {
            document_id,
            recipient,
            entry,
        } => pb::hub_message::Kind::Notice(pb::StatusNotice {
            queue_seq: seq,
            document_id,
            recipient,
            entries: vec![status_entry(&entry)],
        }),
        QueueItem::Notices {
            document_id,
            recipient,
            entries,
        } => pb::hub_message::Kind::Notice(pb::StatusNotice {
            queue_seq: seq,
            document_id,
            recipient,
            entries: entries.iter().map(status_entry).collect(),
        }),
    };
    Ok(pb::HubMessage { kind: Some(kind) })
}
