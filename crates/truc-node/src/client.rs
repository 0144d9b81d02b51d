//! A gRPC client of the axis over mutual TLS (TLS 1.3, the agency's or
//! operator's certificate).

use std::net::SocketAddr;
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_stream::StreamExt;
use tonic::transport::{Channel, Endpoint};
use truc_pki::{Credentials, TrustRoots};
use truc_proto::v1 as pb;

use crate::compose::{Attachment, Draft, Prepared};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Pki(#[from] truc_pki::PkiError),
    #[error("cannot reach the hub at {address}: {reason}")]
    Connect { address: SocketAddr, reason: String },
    // Not `#[from]`: that would make the status a source too, and error
    // chains would print its message twice.
    #[error("the hub refused: {} ({:?})", .0.message(), .0.code())]
    Refused(tonic::Status),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Draft(String),
}

impl From<tonic::Status> for ClientError {
    fn from(status: tonic::Status) -> Self {
        ClientError::Refused(status)
    }
}

impl ClientError {
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            ClientError::Refused(status) => Some(status.code()),
            _ => None,
        }
    }
}

/// A mutual-TLS channel to the hub, for any service on its port (the Axis,
/// gRPC health, server reflection).
pub async fn connect_channel(
    address: SocketAddr,
    roots: &TrustRoots,
    credentials: &Credentials,
) -> Result<Channel, ClientError> {
    let tls = truc_pki::client_tls_config(roots, credentials)?;
    let connector = TlsConnector::from(tls);
    let server_name = rustls::pki_types::ServerName::try_from(truc_pki::HUB_SERVER_NAME)
        .expect("the hub server name is a valid DNS name");
    Endpoint::from_shared(format!("http://{address}"))
        .map_err(|error| ClientError::Connect {
            address,
            reason: error.to_string(),
        })?
        .connect_with_connector(tower::service_fn(move |_| {
            let connector = connector.clone();
            let server_name = server_name.clone();
            async move {
                let tcp = TcpStream::connect(address).await?;
                tcp.set_nodelay(true)?;
                let tls = connector.connect(server_name, tcp).await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        }))
        .await
        .map_err(|error| ClientError::Connect {
            address,
            reason: format!("{error}: {}", source_chain(&error)),
        })
}

/// A connection to the hub as one agency or operator.
#[derive(Clone)]
pub struct AxisClient {
    inner: pb::axis_client::AxisClient<Channel>,
    credentials: Arc<Credentials>,
    /// Parsed once: reading an Ed25519 key derives its public half, which
    /// costs as much as a signature.
    signing_key: Arc<truc_domain::SigningKey>,
}

impl AxisClient {
    pub async fn connect(
        address: SocketAddr,
        roots: &TrustRoots,
        credentials: Credentials,
    ) -> Result<AxisClient, ClientError> {
        let channel = connect_channel(address, roots, &credentials).await?;
        let signing_key = truc_domain::SigningKey::from_pkcs8(&credentials.key_pkcs8_der)
            .map_err(|error| ClientError::Draft(error.to_string()))?;
        Ok(AxisClient {
            inner: pb::axis_client::AxisClient::new(channel)
                .max_decoding_message_size(4 * 1024 * 1024)
                .max_encoding_message_size(4 * 1024 * 1024),
            credentials: Arc::new(credentials),
            signing_key: Arc::new(signing_key),
        })
    }

    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// Signs and sends a document, streaming its attachments.
    pub async fn send(
        &self,
        draft: &Draft,
        attachments: Vec<Attachment>,
    ) -> Result<pb::SendResponse, ClientError> {
        let prepared =
            Prepared::signed_with(draft, attachments, &self.credentials, &self.signing_key).await?;
        self.send_prepared(prepared).await
    }

    /// Sends an envelope that is already signed (benchmarks pre-sign).
    pub async fn send_prepared(&self, prepared: Prepared) -> Result<pb::SendResponse, ClientError> {
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        let producer = tokio::spawn(prepared.stream_into(sender));
        let response = self
            .inner
            .clone()
            .send(tokio_stream::wrappers::ReceiverStream::new(receiver))
            .await;
        // A read error on an attachment file shows as a cut stream; report it as such.
        if let Ok(Err(error)) = producer.await {
            if response.is_err() {
                return Err(error.into());
            }
        }
        Ok(response?.into_inner())
    }

    pub async fn move_status(
        &self,
        document_id: &str,
        recipient: Option<&str>,
        status: truc_domain::Status,
        reason: &str,
    ) -> Result<pb::StatusEntry, ClientError> {
        let response = self
            .inner
            .clone()
            .move_status(pb::MoveStatusRequest {
                document_id: document_id.to_owned(),
                recipient: recipient.unwrap_or_default().to_owned(),
                status: status.code() as i32,
                reason: reason.to_owned(),
            })
            .await?;
        Ok(response.into_inner().entry.unwrap_or_default())
    }

    /// Several moves in one call and one durable write on the hub, each with
    /// its own result: the entry recorded, or the status the hub refused it with.
    pub async fn move_statuses(
        &self,
        moves: Vec<pb::MoveStatusRequest>,
    ) -> Result<Vec<Result<pb::StatusEntry, tonic::Status>>, ClientError> {
        let response = self
            .inner
            .clone()
            .move_statuses(pb::MoveStatusesRequest { moves })
            .await?;
        Ok(response
            .into_inner()
            .results
            .into_iter()
            .map(|result| match result.outcome {
                Some(pb::move_result::Outcome::Entry(entry)) => Ok(entry),
                Some(pb::move_result::Outcome::Refused(refusal)) => Err(tonic::Status::new(
                    tonic::Code::from(refusal.code),
                    refusal.message,
                )),
                None => Err(tonic::Status::internal(
                    "the hub gave no outcome for a move",
                )),
            })
            .collect())
    }

    pub async fn get_status(
        &self,
        document_id: &str,
    ) -> Result<pb::GetStatusResponse, ClientError> {
        Ok(self
            .inner
            .clone()
            .get_status(pb::GetStatusRequest {
                document_id: document_id.to_owned(),
            })
            .await?
            .into_inner())
    }

    pub async fn counts(
        &self,
        from_date: &str,
        to_date: &str,
    ) -> Result<pb::CountsResponse, ClientError> {
        Ok(self
            .inner
            .clone()
            .counts(pb::CountsRequest {
                from_date: from_date.to_owned(),
                to_date: to_date.to_owned(),
            })
            .await?
            .into_inner())
    }

    /// Per-agency figures recomputed from the stored records (operators only).
    pub async fn report(
        &self,
        from_date: &str,
        to_date: &str,
        focus_recipient: &str,
    ) -> Result<pb::ReportResponse, ClientError> {
        Ok(self
            .inner
            .clone()
            .report(pb::ReportRequest {
                from_date: from_date.to_owned(),
                to_date: to_date.to_owned(),
                focus_recipient: focus_recipient.to_owned(),
            })
            .await?
            .into_inner())
    }

    /// Where documents to `organ_id` are delivered, and why.
    pub async fn explain_route(
        &self,
        organ_id: &str,
    ) -> Result<pb::ExplainRouteResponse, ClientError> {
        Ok(self
            .inner
            .clone()
            .explain_route(pb::ExplainRouteRequest {
                organ_id: organ_id.to_owned(),
            })
            .await?
            .into_inner())
    }

    /// Documents matching a filter (an agency sees only its own).
    pub async fn list_documents(
        &self,
        request: pb::ListDocumentsRequest,
    ) -> Result<pb::ListDocumentsResponse, ClientError> {
        Ok(self
            .inner
            .clone()
            .list_documents(request)
            .await?
            .into_inner())
    }

    /// The directory with each node's state (operators only).
    pub async fn list_nodes(&self) -> Result<pb::ListNodesResponse, ClientError> {
        Ok(self
            .inner
            .clone()
            .list_nodes(pb::ListNodesRequest {})
            .await?
            .into_inner())
    }

    /// Deliveries past a feedback deadline and still unanswered.
    pub async fn list_overdue(
        &self,
        request: pb::ListOverdueRequest,
    ) -> Result<pb::ListOverdueResponse, ClientError> {
        Ok(self.inner.clone().list_overdue(request).await?.into_inner())
    }

    /// Deliveries that expired unacknowledged.
    pub async fn list_dead_letters(
        &self,
        request: pb::ListDeadLettersRequest,
    ) -> Result<pb::ListDeadLettersResponse, ClientError> {
        Ok(self
            .inner
            .clone()
            .list_dead_letters(request)
            .await?
            .into_inner())
    }

    /// Queues a dead letter again (operators only).
    pub async fn resend_dead_letter(
        &self,
        document_id: &str,
        recipient: &str,
    ) -> Result<pb::DeadLetter, ClientError> {
        Ok(self
            .inner
            .clone()
            .resend_dead_letter(pb::ResendDeadLetterRequest {
                document_id: document_id.into(),
                recipient: recipient.into(),
            })
            .await?
            .into_inner())
    }

    /// Closes a dead letter for good (operators only).
    pub async fn cancel_dead_letter(
        &self,
        document_id: &str,
        recipient: &str,
        reason: &str,
    ) -> Result<pb::DeadLetter, ClientError> {
        Ok(self
            .inner
            .clone()
            .cancel_dead_letter(pb::CancelDeadLetterRequest {
                document_id: document_id.into(),
                recipient: recipient.into(),
                reason: reason.into(),
            })
            .await?
            .into_inner())
    }

    /// Streams the audit export of a period (operators only), as the file's bytes in order.
    pub async fn export_audit(
        &self,
        from_unix_ms: i64,
        to_unix_ms: i64,
    ) -> Result<tonic::Streaming<pb::AuditExportChunk>, ClientError> {
        Ok(self
            .inner
            .clone()
            .export_audit(pb::ExportAuditRequest {
                from_unix_ms,
                to_unix_ms,
            })
            .await?
            .into_inner())
    }

    /// Streams one attachment's bytes.
    pub async fn fetch_attachment(
        &self,
        document_id: &str,
        index: u32,
    ) -> Result<tonic::Streaming<pb::FetchAttachmentChunk>, ClientError> {
        Ok(self
            .inner
            .clone()
            .fetch_attachment(pb::FetchAttachmentRequest {
                document_id: document_id.to_owned(),
                index,
            })
            .await?
            .into_inner())
    }

    /// Opens the delivery stream with a window of `window` unacknowledged
    /// items. Acknowledgements queued while an earlier message is being
    /// written go out as one message of at most [`truc_domain::MERGED_ACKS_MAX`] queue
    /// items, so a busy node costs the hub one message for many deliveries.
    pub async fn deliveries(&self, window: u32) -> Result<DeliveryStream, ClientError> {
        self.open_deliveries(window, true).await
    }

    /// [`AxisClient::deliveries`], but every message goes out as it was
    /// queued (for checking how the hub treats each one).
    pub async fn deliveries_as_sent(&self, window: u32) -> Result<DeliveryStream, ClientError> {
        self.open_deliveries(window, false).await
    }

    async fn open_deliveries(
        &self,
        window: u32,
        merge: bool,
    ) -> Result<DeliveryStream, ClientError> {
        let (sender, receiver) = tokio::sync::mpsc::channel(window.max(16) as usize);
        sender
            .send(pb::NodeMessage {
                kind: Some(pb::node_message::Kind::Hello(pb::Hello { window })),
            })
            .await
            .map_err(|_| ClientError::Draft("the delivery stream closed at once".into()))?;
        let stream = self
            .inner
            .clone()
            .deliveries(MergedAcks {
                receiver,
                held: None,
                seqs_max: if merge { MERGED_ACK_SEQS_MAX } else { 0 },
            })
            .await?
            .into_inner();
        Ok((sender, stream))
    }

    /// Reads a whole attachment into memory (small files, tests).
    pub async fn fetch_attachment_bytes(
        &self,
        document_id: &str,
        index: u32,
    ) -> Result<Vec<u8>, ClientError> {
        let mut stream = self.fetch_attachment(document_id, index).await?;
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk?.data);
        }
        Ok(bytes)
    }
}

fn source_chain(error: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut source = error.source();
    while let Some(cause) = source {
        parts.push(cause.to_string());
        source = cause.source();
    }
    parts.join(": ")
}

/// A delivery stream: where the node's messages go (the hello is already
/// sent), and what the hub sends.
pub type DeliveryStream = (
    tokio::sync::mpsc::Sender<pb::NodeMessage>,
    tonic::Streaming<pb::HubMessage>,
);

/// Merging never makes a message the hub would refuse where the
/// application's own pass: the hub's limit may not be set below this.
use truc_domain::MERGED_ACKS_MAX as MERGED_ACK_SEQS_MAX;

/// The outbound side of a delivery stream. Acknowledgements queued while an
/// earlier message was being written go out as one message: a busy node
/// sends one TLS record and one frame for many deliveries instead of one
/// each. Order is kept; anything other than an acknowledgement is passed as is.
struct MergedAcks {
    receiver: tokio::sync::mpsc::Receiver<pb::NodeMessage>,
    /// A message taken while merging that could not join the acknowledgement.
    held: Option<pb::NodeMessage>,
    /// Most queue items a merged acknowledgement names; 0 merges nothing.
    seqs_max: usize,
}

impl tokio_stream::Stream for MergedAcks {
    type Item = pb::NodeMessage;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<pb::NodeMessage>> {
        use pb::node_message::Kind;
        let first = match self.held.take() {
            Some(message) => message,
            None => match self.receiver.poll_recv(cx) {
                std::task::Poll::Ready(Some(message)) => message,
                other => return other,
            },
        };
        let Some(Kind::Ack(mut ack)) = first.kind else {
            return std::task::Poll::Ready(Some(first));
        };
        while ack.queue_seqs.len() < self.seqs_max {
            match self.receiver.try_recv() {
                Ok(pb::NodeMessage {
                    kind: Some(Kind::Ack(more)),
                }) if ack.queue_seqs.len() + more.queue_seqs.len() <= self.seqs_max => {
                    ack.queue_seqs.extend(more.queue_seqs);
                }
                Ok(other) => {
                    self.held = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        std::task::Poll::Ready(Some(pb::NodeMessage {
            kind: Some(Kind::Ack(ack)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::ack_message;

    fn seqs(message: &pb::NodeMessage) -> Option<&[u64]> {
        match &message.kind {
            Some(pb::node_message::Kind::Ack(ack)) => Some(&ack.queue_seqs),
            _ => None,
        }
    }

    #[tokio::test]
    async fn waiting_acknowledgements_merge_in_order_up_to_the_bound() {
        let (sender, receiver) = tokio::sync::mpsc::channel(1024);
        let mut merged = MergedAcks {
            receiver,
            held: None,
            seqs_max: MERGED_ACK_SEQS_MAX,
        };
        sender.send(ack_message(vec![1])).await.unwrap();
        sender.send(ack_message(vec![2, 3])).await.unwrap();
        let hello = pb::NodeMessage {
            kind: Some(pb::node_message::Kind::Hello(pb::Hello { window: 4 })),
        };
        sender.send(hello.clone()).await.unwrap();
        sender.send(ack_message(vec![4])).await.unwrap();
        for seq in 5..(5 + MERGED_ACK_SEQS_MAX as u64) {
            sender.send(ack_message(vec![seq])).await.unwrap();
        }
        drop(sender);

        let first = merged.next().await.unwrap();
        assert_eq!(seqs(&first), Some(&[1, 2, 3][..]));
        assert_eq!(merged.next().await.unwrap(), hello, "kept in its place");
        let bounded = merged.next().await.unwrap();
        let bounded = seqs(&bounded).unwrap();
        assert_eq!(bounded.len(), MERGED_ACK_SEQS_MAX);
        assert_eq!(bounded[0], 4);
        let rest = merged.next().await.unwrap();
        assert_eq!(seqs(&rest), Some(&[4 + MERGED_ACK_SEQS_MAX as u64][..]));
        assert_eq!(merged.next().await, None);
    }

    #[tokio::test]
    async fn without_merging_each_acknowledgement_goes_as_queued() {
        let (sender, receiver) = tokio::sync::mpsc::channel(8);
        let mut as_sent = MergedAcks {
            receiver,
            held: None,
            seqs_max: 0,
        };
        sender.send(ack_message(vec![1])).await.unwrap();
        sender.send(ack_message(vec![2])).await.unwrap();
        drop(sender);
        assert_eq!(seqs(&as_sent.next().await.unwrap()), Some(&[1][..]));
        assert_eq!(seqs(&as_sent.next().await.unwrap()), Some(&[2][..]));
        assert_eq!(as_sent.next().await, None);
    }
}
