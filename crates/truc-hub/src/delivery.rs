//! One node's delivery stream: everything queued for the agency is sent in
//! sequence order within a window of unacknowledged items; what is not
//! acknowledged when the stream ends is sent again on the next one.

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::sync::{mpsc, Notify};
use tokio_stream::StreamExt;
use tonic::{Status, Streaming};
use truc_domain::AgencyCode;
use truc_proto::v1 as pb;
use truc_store::QueueItem;

use crate::convert::{signature_state, status_entry};
use crate::error::HubError;
use crate::intake::now_unix_ms;
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
    let mut cursor = 0u64;
    let mut in_flight: BTreeSet<u64> = BTreeSet::new();
    let (acked_tx, mut acked_rx) = mpsc::channel::<Result<u64, HubError>>(window.max(1));
    let mut shutdown = hub.shutdown.clone();
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        // Fill the window from the durable queue.
        if in_flight.len() < window {
            let room = window - in_flight.len();
            let items = match hub.store.queue_after(&code, cursor, room) {
                Ok(items) => items,
                Err(error) => {
                    let _ = outbound.send(Err(HubError::from(error).into())).await;
                    return;
                }
            };
            for (seq, item) in items {
                cursor = seq;
                let message = match build_message(&hub, seq, item) {
                    Ok(message) => message,
                    Err(error) => {
                        let _ = outbound.send(Err(error.into())).await;
                        return;
                    }
                };
                if outbound.send(Ok(message)).await.is_err() {
                    return;
                }
                in_flight.insert(seq);
            }
        }
        tokio::select! {
            message = inbound.next() => match message {
                Some(Ok(pb::NodeMessage { kind: Some(pb::node_message::Kind::Ack(ack)) })) => {
                    let store = hub.store.clone();
                    let code = code.clone();
                    let acked_tx = acked_tx.clone();
                    tokio::spawn(async move {
                        let result = store.ack(&code, ack.queue_seq, now_unix_ms()).await;
                        let _ = acked_tx.send(result.map(|_| ack.queue_seq).map_err(HubError::from)).await;
                    });
                }
                Some(Ok(_)) => {
                    let _ = outbound.send(Err(HubError::invalid("kind", "only acknowledgements may follow the hello").into())).await;
                    return;
                }
                Some(Err(_)) | None => return,
            },
            acked = acked_rx.recv() => match acked {
                Some(Ok(seq)) => { in_flight.remove(&seq); }
                Some(Err(error)) => {
                    let _ = outbound.send(Err(error.into())).await;
                    return;
                }
                None => return,
            },
            _ = notifier.notified(), if in_flight.len() < window => {}
            _ = replaced.notified() => return,
            _ = shutdown.changed() => return,
        }
    }
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
            entry: Some(status_entry(&entry)),
        }),
    };
    Ok(pb::HubMessage { kind: Some(kind) })
}
