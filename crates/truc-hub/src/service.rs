//! The Axis gRPC service: each call's caller from its certificate, then the
//! hub's intake, delivery, moves, operator and audit code, and its answer on
//! the wire.

use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{mpsc, Notify};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};
use truc_domain::{views, AgencyCode};
use truc_proto::v1 as pb;

use crate::convert::{self, status_entry};
use crate::directory::Act;
use crate::{
    audit, date_range, delivery, error, feedback, intake, leases, metrics, moves, operator, Caller,
    Hub, HubError,
};

#[derive(Clone)]
pub(crate) struct AxisService(pub(crate) Arc<Hub>);

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The target of node connections and disconnections (info). Replays and
/// demos, which connect a node per agency at once, keep it at warn.
pub const NODES_TARGET: &str = "truc::nodes";

mod audit_stream {
    //! The export as a stream of chunks.
    use tokio::sync::mpsc;
    use tonic::Status;
    use truc_proto::v1 as pb;

    /// Bytes per chunk of an export on the wire.
    const CHUNK_BYTES: usize = 64 * 1024;

    pub(crate) struct ChunkWriter {
        buffer: Vec<u8>,
        sender: mpsc::Sender<Result<pb::AuditExportChunk, Status>>,
    }

    impl ChunkWriter {
        pub(crate) fn new(sender: mpsc::Sender<Result<pb::AuditExportChunk, Status>>) -> Self {
            ChunkWriter {
                buffer: Vec::with_capacity(CHUNK_BYTES),
                sender,
            }
        }

        fn send(&mut self) -> std::io::Result<()> {
            if self.buffer.is_empty() {
                return Ok(());
            }
            let data = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK_BYTES));
            self.sender
                .blocking_send(Ok(pb::AuditExportChunk { data }))
                .map_err(|_| std::io::Error::other("the client went away"))
        }
    }

    impl std::io::Write for ChunkWriter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.buffer.extend_from_slice(bytes);
            if self.buffer.len() >= CHUNK_BYTES {
                self.send()?;
            }
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            self.send()
        }
    }
}

#[tonic::async_trait]
impl pb::axis_server::Axis for AxisService {
    #[tracing::instrument(skip_all, fields(document_id = tracing::field::Empty))]
    async fn send(
        &self,
        request: Request<Streaming<pb::SendRequest>>,
    ) -> Result<Response<pb::SendResponse>, Status> {
        metrics::request("send");
        let caller = Caller::from_request(&request)?;
        let Caller::Agency {
            code,
            certificate,
            public_key,
        } = caller
        else {
            return Err(caller.agency("send").map(|_| ()).unwrap_err().into());
        };
        self.0.admit(&code, Act::Node)?;
        let response = async {
            let _slot = self.0.send_slot(code)?;
            intake::send(&self.0, code, certificate, public_key, request.into_inner()).await
        }
        .await
        .inspect_err(|error| {
            metrics::send_finished(&code.to_string(), metrics::SendOutcome::Refused);
            tracing::info!(sender = %code, %error, "send refused");
        })?;
        tracing::Span::current().record("document_id", response.document_id.as_str());
        let outcome = if response.duplicate {
            metrics::SendOutcome::Duplicate
        } else {
            metrics::SendOutcome::Accepted
        };
        metrics::send_finished(&code.to_string(), outcome);
        tracing::debug!(sender = %code, duplicate = response.duplicate, "send accepted");
        Ok(Response::new(response))
    }

    type DeliveriesStream = BoxStream<pb::HubMessage>;

    async fn deliveries(
        &self,
        request: Request<Streaming<pb::NodeMessage>>,
    ) -> Result<Response<Self::DeliveriesStream>, Status> {
        metrics::request("deliveries");
        let agency = self.0.node_agency(&request, "receive deliveries")?;
        let mut inbound = request.into_inner();
        let hello = match inbound.next().await {
            Some(Ok(pb::NodeMessage {
                kind: Some(pb::node_message::Kind::Hello(hello)),
            })) => hello,
            _ => {
                return Err(HubError::invalid(
                    "hello",
                    "the first message on the stream must be a hello",
                )
                .into())
            }
        };
        let hub = self.0.clone();
        let window = match hello.window {
            0 => hub.delivery.window_default,
            asked => asked.min(hub.delivery.window_max),
        } as usize;
        let session = hub
            .next_session
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let replaced = Arc::new(Notify::new());
        if let Some((_, older)) = hub
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(agency, (session, replaced.clone()))
        {
            older.notify_one();
        }
        hub.seen(agency);
        tracing::info!(
            target: NODES_TARGET,
            %agency,
            window,
            nodes_online = hub.sessions_online(),
            "node connected"
        );
        metrics::node_connected();
        let opened = std::time::Instant::now();
        let (outbound, receiver) = mpsc::channel(window.max(1));
        tokio::spawn(async move {
            delivery::run_session(hub.clone(), agency, window, inbound, outbound, replaced).await;
            let current = {
                let mut sessions = hub.sessions.lock().unwrap_or_else(|p| p.into_inner());
                let current = sessions.get(&agency).is_some_and(|(id, _)| *id == session);
                if current {
                    sessions.remove(&agency);
                }
                current
            };
            // A newer stream of the same node on this hub keeps the lease.
            if current {
                leases::Leases::release(&hub, agency).await;
            }
            hub.seen(agency);
            metrics::node_disconnected();
            tracing::info!(
                target: NODES_TARGET,
                %agency,
                connected_seconds = opened.elapsed().as_secs(),
                nodes_online = hub.sessions_online(),
                replaced = !current,
                "node disconnected"
            );
        });
        let agency_label = agency.to_string();
        let outbound = ReceiverStream::new(receiver).map(move |message| {
            if let Ok(pb::HubMessage {
                kind: Some(pb::hub_message::Kind::Delivery(_)),
            }) = &message
            {
                metrics::delivery_sent(&agency_label);
            }
            message
        });
        Ok(Response::new(Box::pin(outbound)))
    }

    #[tracing::instrument(skip_all, fields(document_id = tracing::field::Empty))]
    async fn move_status(
        &self,
        request: Request<pb::MoveStatusRequest>,
    ) -> Result<Response<pb::MoveStatusResponse>, Status> {
        metrics::request("move_status");
        let agency = self.0.node_agency(&request, "move statuses")?;
        let request = moves::check(&self.0, agency, convert::asked_move(request.into_inner()))?;
        tracing::Span::current().record("document_id", request.document_id.as_str());
        let (document_id, recipient) = (request.document_id.clone(), request.recipient.clone());
        let entry = self
            .0
            .store
            .move_all(vec![request])
            .await
            .map_err(HubError::from)?
            .pop()
            .ok_or(HubError::Store(truc_store::StoreError::WriterGone))?
            .map_err(|error| moves::refusal(error, &document_id, &recipient))?;
        moves::record_moved(&recipient, &entry);
        Ok(Response::new(pb::MoveStatusResponse {
            entry: Some(status_entry(&entry)),
        }))
    }

    async fn move_statuses(
        &self,
        request: Request<pb::MoveStatusesRequest>,
    ) -> Result<Response<pb::MoveStatusesResponse>, Status> {
        metrics::request("move_statuses");
        let agency = self.0.node_agency(&request, "move statuses")?;
        let asked = request.into_inner().moves;
        let asked = asked.into_iter().map(convert::asked_move).collect();
        let results = moves::move_all(&self.0, agency, asked).await?;
        Ok(Response::new(pb::MoveStatusesResponse {
            results: results.into_iter().map(convert::wire_move_result).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(document_id = tracing::field::Empty))]
    async fn get_status(
        &self,
        request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        metrics::request("get_status");
        let caller = self.0.caller(&request)?;
        let document_id = request.into_inner().document_id;
        tracing::Span::current().record("document_id", document_id.as_str());
        let status = self.0.status_of(&caller, &document_id)?;
        Ok(Response::new(pb::GetStatusResponse::from(status)))
    }

    type FetchAttachmentStream = BoxStream<pb::FetchAttachmentChunk>;

    async fn fetch_attachment(
        &self,
        request: Request<pb::FetchAttachmentRequest>,
    ) -> Result<Response<Self::FetchAttachmentStream>, Status> {
        metrics::request("fetch_attachment");
        let caller = self.0.caller(&request)?;
        let request = request.into_inner();
        let (record, _) = self.0.readable_document(&caller, &request.document_id)?;
        let attachment = record
            .attachments
            .get(request.index as usize)
            .ok_or_else(|| {
                HubError::not_found(
                    "index",
                    format!(
                        "{} has {} attachments",
                        request.document_id,
                        record.attachments.len()
                    ),
                )
            })?;
        let sha256 = attachment.sha256;
        let store = self.0.store.clone();
        let (sender, receiver) = mpsc::channel(4);
        // sled reads are synchronous; a blocking task keeps them off the runtime's workers.
        tokio::task::spawn_blocking(move || {
            let chunks = match store.blob_chunks(&sha256) {
                Ok(chunks) => chunks,
                Err(error) => {
                    let _ = sender.blocking_send(Err(HubError::from(error).into()));
                    return;
                }
            };
            for chunk in chunks {
                let message = chunk
                    .map(|data| pb::FetchAttachmentChunk { data })
                    .map_err(|error| HubError::from(error).into());
                if sender.blocking_send(message).is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn report(
        &self,
        request: Request<pb::ReportRequest>,
    ) -> Result<Response<pb::ReportResponse>, Status> {
        metrics::request("report");
        if !self.0.caller(&request)?.reads_everything() {
            return Err(HubError::denied("certificate", "reports are for operators").into());
        }
        let request = request.into_inner();
        let (from, to) = date_range(&request.from_date, &request.to_date)?;
        // An ill-formed focus would match no document and report zeros as if true.
        if !request.focus_recipient.is_empty() {
            request
                .focus_recipient
                .parse::<AgencyCode>()
                .map_err(|error| HubError::invalid("focus_recipient", format!("{error}")))?;
        }
        let focus = (!request.focus_recipient.is_empty()).then_some(request.focus_recipient);
        let store = self.0.store.clone();
        // A report reads every stored document: keep it off the runtime's workers.
        let rows = error::blocking("the report", move || {
            store.report(from, to, focus.as_deref())
        })
        .await?
        .map_err(HubError::from)?;
        Ok(Response::new(pb::ReportResponse {
            rows: rows
                .into_iter()
                .map(|(organ_id, row)| pb::ReportRow {
                    organ_id,
                    sent: row.sent,
                    received: row.received,
                    statuses_reported: row.status_codes(),
                    sent_to_focus: row.sent_to_focus,
                    sent_to_focus_signed: row.sent_to_focus_signed,
                    overdue: row.overdue,
                })
                .collect(),
        }))
    }

    async fn counts(
        &self,
        request: Request<pb::CountsRequest>,
    ) -> Result<Response<pb::CountsResponse>, Status> {
        metrics::request("counts");
        let caller = self.0.caller(&request)?;
        let request = request.into_inner();
        let (from, to) = date_range(&request.from_date, &request.to_date)?;
        let counts = self.0.store.counts(from, to).map_err(HubError::from)?;
        let own = match &caller {
            Caller::Operator { .. } | Caller::Administrator { .. } => None,
            Caller::Agency { code, .. } => Some(code.to_string()),
        };
        let agencies: Vec<pb::AgencyCounts> = counts
            .into_iter()
            .filter(|(code, _)| own.as_ref().is_none_or(|own| own == code))
            .map(|(organ_id, (sent, received))| pb::AgencyCounts {
                organ_id,
                sent,
                received,
            })
            .collect();
        Ok(Response::new(pb::CountsResponse {
            total_sent: agencies.iter().map(|a| a.sent).sum(),
            total_received: agencies.iter().map(|a| a.received).sum(),
            agencies,
        }))
    }

    async fn explain_route(
        &self,
        request: Request<pb::ExplainRouteRequest>,
    ) -> Result<Response<pb::ExplainRouteResponse>, Status> {
        metrics::request("explain_route");
        self.0.caller(&request)?;
        let route = operator::explain_route(&self.0, &request.into_inner().organ_id)?;
        Ok(Response::new(pb::ExplainRouteResponse::from(route)))
    }

    async fn list_documents(
        &self,
        request: Request<pb::ListDocumentsRequest>,
    ) -> Result<Response<pb::ListDocumentsResponse>, Status> {
        metrics::request("list_documents");
        let caller = self.0.caller(&request)?;
        let hub = self.0.clone();
        let filter = views::DocumentFilter::from(request.into_inner());
        // It reads every stored document: keep it off the runtime's workers.
        let list = error::blocking("listing documents", move || {
            operator::list_documents(&hub, &caller, &filter)
        })
        .await??;
        Ok(Response::new(pb::ListDocumentsResponse::from(list)))
    }

    async fn list_nodes(
        &self,
        request: Request<pb::ListNodesRequest>,
    ) -> Result<Response<pb::ListNodesResponse>, Status> {
        metrics::request("list_nodes");
        if !self.0.caller(&request)?.reads_everything() {
            return Err(HubError::denied("certificate", "the node list is for operators").into());
        }
        let hub = self.0.clone();
        let list = error::blocking("listing nodes", move || operator::list_nodes(&hub)).await??;
        Ok(Response::new(pb::ListNodesResponse::from(list)))
    }

    async fn list_overdue(
        &self,
        request: Request<pb::ListOverdueRequest>,
    ) -> Result<Response<pb::ListOverdueResponse>, Status> {
        metrics::request("list_overdue");
        let caller = self.0.caller(&request)?;
        let hub = self.0.clone();
        let filter = views::OverdueFilter::from(request.into_inner());
        let list = error::blocking("listing overdue deliveries", move || {
            feedback::list_overdue(&hub, &caller, &filter)
        })
        .await??;
        Ok(Response::new(pb::ListOverdueResponse::from(list)))
    }

    async fn list_dead_letters(
        &self,
        request: Request<pb::ListDeadLettersRequest>,
    ) -> Result<Response<pb::ListDeadLettersResponse>, Status> {
        metrics::request("list_dead_letters");
        let caller = self.0.caller(&request)?;
        let hub = self.0.clone();
        let filter = views::DeadLetterFilter::from(request.into_inner());
        let list = error::blocking("listing dead letters", move || {
            feedback::list_dead_letters(&hub, &caller, &filter)
        })
        .await??;
        Ok(Response::new(pb::ListDeadLettersResponse::from(list)))
    }

    async fn resend_dead_letter(
        &self,
        request: Request<pb::ResendDeadLetterRequest>,
    ) -> Result<Response<pb::DeadLetter>, Status> {
        metrics::request("resend_dead_letter");
        let caller = self.0.caller(&request)?;
        let request = request.into_inner();
        let letter =
            feedback::resend(&self.0, &caller, &request.document_id, &request.recipient).await?;
        Ok(Response::new(pb::DeadLetter::from(letter)))
    }

    type ExportAuditStream = BoxStream<pb::AuditExportChunk>;

    async fn export_audit(
        &self,
        request: Request<pb::ExportAuditRequest>,
    ) -> Result<Response<Self::ExportAuditStream>, Status> {
        metrics::request("export_audit");
        if !self.0.caller(&request)?.reads_everything() {
            return Err(HubError::denied("certificate", "the audit log is for operators").into());
        }
        let request = request.into_inner();
        let hub = self.0.clone();
        let (sender, receiver) = mpsc::channel(4);
        let made_at_unix_ms = hub.watch.clock.now_unix_ms();
        // The export reads the whole log: a blocking thread writes it in
        // pieces into a bounded channel, at the pace the client reads.
        tokio::task::spawn_blocking(move || {
            let mut out = audit_stream::ChunkWriter::new(sender.clone());
            let (certificate_der, key) = &hub.audit_signer;
            let signer = key.as_ref().map(|key| audit::ExportSigner {
                certificate_der,
                key,
            });
            let result = audit::write_export(
                &hub.store,
                &hub.trust,
                signer,
                request.from_unix_ms,
                request.to_unix_ms,
                made_at_unix_ms,
                &mut out,
            );
            // Logged and counted by the refusal layer as it reaches the client.
            if let Err(error) = result {
                let _ = sender.blocking_send(Err(Status::internal(error.to_string())));
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn cancel_dead_letter(
        &self,
        request: Request<pb::CancelDeadLetterRequest>,
    ) -> Result<Response<pb::DeadLetter>, Status> {
        metrics::request("cancel_dead_letter");
        let caller = self.0.caller(&request)?;
        let request = request.into_inner();
        let letter = feedback::cancel(
            &self.0,
            &caller,
            &request.document_id,
            &request.recipient,
            &request.reason,
        )
        .await?;
        Ok(Response::new(pb::DeadLetter::from(letter)))
    }
}
