//! The hub: gRPC services over mutual TLS, identity from certificates,
//! intake, routing to recipients' queues, delivery streams and status moves.
//! Entry point: [`run`] on a pre-bound listener.

pub mod config;
mod convert;
mod delivery;
pub mod directory;
mod error;
mod identity;
mod intake;
mod malformed;
mod tls;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Notify};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};
use truc_domain::{AgencyCode, DocumentDate, DocumentId, Limits, Status as DocStatus};
use truc_pki::{Credentials, TrustRoots};
use truc_proto::v1 as pb;
use truc_store::{StatusEntry, Store, StoreOptions};

pub use config::HubConfig;
/// The wire header as the fields `Header::validate` checks, exactly as intake
/// reads it; public for the property tests and fuzz targets.
pub use convert::raw_header;
pub use directory::{AgencyEntry, ConnectionMode, Directory};
pub use error::HubError;
pub use identity::Caller;

use convert::{signature_state, status_entry};

/// Everything a running hub needs, already loaded and checked.
pub struct HubSetup {
    pub store: Store,
    pub directory: Directory,
    pub trust: TrustRoots,
    pub credentials: Credentials,
    pub limits: Limits,
    pub delivery: config::DeliveryConfig,
}

impl HubSetup {
    /// Loads the directory, certificates and store named by a config.
    pub fn from_config(config: &HubConfig) -> Result<HubSetup, String> {
        let directory = Directory::load(&config.directory)?;
        let trust = TrustRoots::from_pem_file(&config.tls.ca_cert).map_err(|e| e.to_string())?;
        let credentials =
            Credentials::load(&config.tls.cert, &config.tls.key).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| format!("cannot create {}: {e}", config.data_dir.display()))?;
        let store = Store::open(
            &config.data_dir,
            &StoreOptions {
                cache_bytes: config.cache_mib * 1024 * 1024,
                ..StoreOptions::default()
            },
        )
        .map_err(|e| {
            format!(
                "cannot open the data directory {}: {e}. If the files are damaged, restore them from a backup; the hub will not serve from damaged storage.",
                config.data_dir.display()
            )
        })?;
        Ok(HubSetup {
            store,
            directory,
            trust,
            credentials,
            limits: config.limits.clone(),
            delivery: config.delivery.clone(),
        })
    }
}

pub(crate) struct Hub {
    pub(crate) store: Store,
    pub(crate) directory: Directory,
    pub(crate) trust: TrustRoots,
    pub(crate) limits: Limits,
    pub(crate) delivery: config::DeliveryConfig,
    /// The live stream of each agency; a newer stream replaces an older one.
    sessions: Mutex<HashMap<AgencyCode, (u64, Arc<Notify>)>>,
    next_session: std::sync::atomic::AtomicU64,
    /// Turns true when the hub stops; streams end so the server can drain.
    pub(crate) shutdown: watch::Receiver<bool>,
}

#[derive(Clone)]
struct AxisService(Arc<Hub>);

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Serves the axis on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    setup: HubSetup,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), HubError> {
    let tls = truc_pki::server_tls_config(&setup.trust, &setup.credentials).map_err(|e| {
        HubError::Unauthenticated {
            field: "tls".into(),
            reason: e.to_string(),
        }
    })?;
    let (stopping, shutdown_seen) = watch::channel(false);
    let hub = Arc::new(Hub {
        store: setup.store,
        directory: setup.directory,
        trust: setup.trust,
        limits: setup.limits,
        delivery: setup.delivery,
        sessions: Mutex::new(HashMap::new()),
        next_session: std::sync::atomic::AtomicU64::new(1),
        shutdown: shutdown_seen,
    });
    let message_bytes_max = hub.limits.header_bytes_max + hub.limits.chunk_bytes_max + 64 * 1024;
    let service = pb::axis_server::AxisServer::new(AxisService(hub.clone()))
        .max_decoding_message_size(message_bytes_max)
        .max_encoding_message_size(message_bytes_max);
    let incoming = tls::incoming(listener, tls);
    let signal = async move {
        shutdown.await;
        let _ = stopping.send(true);
    };
    tonic::transport::Server::builder()
        .layer(malformed::layer())
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, signal)
        .await
        .map_err(|error| HubError::Invalid {
            field: "server".into(),
            reason: error.to_string(),
        })
}

fn caller<T>(request: &Request<T>) -> Result<Caller, Status> {
    Caller::from_request(request).map_err(Status::from)
}

/// An ISO date as a `yyyymmdd` key; empty means `default`.
fn date_key(field: &str, text: &str, default: u32) -> Result<u32, HubError> {
    if text.is_empty() {
        Ok(default)
    } else {
        DocumentDate::parse_iso(text)
            .map(|d| d.ordinal_key())
            .map_err(|error| HubError::invalid(field, format!("{error}")))
    }
}

fn parse_document_id(field: &str, text: &str) -> Result<DocumentId, HubError> {
    text.parse()
        .map_err(|error| HubError::invalid(field, format!("{error}")))
}

impl Hub {
    /// The document, if the caller may read it: its sender, a recipient, or an operator.
    fn readable_document(
        &self,
        caller: &Caller,
        document_id: &str,
    ) -> Result<(truc_store::DocumentRecord, Option<String>), HubError> {
        parse_document_id("document_id", document_id)?;
        let record = self.store.document(document_id)?.ok_or_else(|| {
            HubError::not_found("document_id", format!("{document_id} is not on the axis"))
        })?;
        match caller {
            Caller::Operator { .. } => Ok((record, None)),
            Caller::Agency { code, .. } => {
                let code = code.to_string();
                if record.sender == code {
                    Ok((record, None))
                } else if record.recipients.contains(&code) {
                    Ok((record, Some(code)))
                } else {
                    Err(HubError::denied(
                        "document_id",
                        format!("{code} is neither the sender nor a recipient of {document_id}"),
                    ))
                }
            }
        }
    }
}

#[tonic::async_trait]
impl pb::axis_server::Axis for AxisService {
    async fn send(
        &self,
        request: Request<Streaming<pb::SendRequest>>,
    ) -> Result<Response<pb::SendResponse>, Status> {
        let caller = caller(&request)?;
        let Caller::Agency {
            code,
            certificate,
            public_key,
        } = caller
        else {
            return Err(caller.agency("send").map(|_| ()).unwrap_err().into());
        };
        let response = intake::send(&self.0, code, certificate, public_key, request.into_inner())
            .await
            .inspect_err(|error| tracing::info!(sender = %code, %error, "send refused"))?;
        Ok(Response::new(response))
    }

    type DeliveriesStream = BoxStream<pb::HubMessage>;

    async fn deliveries(
        &self,
        request: Request<Streaming<pb::NodeMessage>>,
    ) -> Result<Response<Self::DeliveriesStream>, Status> {
        let agency = caller(&request)?.agency("receive deliveries")?;
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
        tracing::debug!(%agency, window, "node connected");
        let (outbound, receiver) = mpsc::channel(window.max(1));
        tokio::spawn(async move {
            delivery::run_session(hub.clone(), agency, window, inbound, outbound, replaced).await;
            let mut sessions = hub.sessions.lock().unwrap_or_else(|p| p.into_inner());
            if sessions.get(&agency).is_some_and(|(id, _)| *id == session) {
                sessions.remove(&agency);
            }
            tracing::debug!(%agency, "node disconnected");
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn move_status(
        &self,
        request: Request<pb::MoveStatusRequest>,
    ) -> Result<Response<pb::MoveStatusResponse>, Status> {
        let agency = caller(&request)?.agency("move statuses")?;
        let request = request.into_inner();
        parse_document_id("document_id", &request.document_id)?;
        let recipient = if request.recipient.is_empty() {
            agency
        } else {
            let recipient: AgencyCode = request
                .recipient
                .parse()
                .map_err(|error| HubError::invalid("recipient", format!("{error}")))?;
            if recipient != agency {
                return Err(HubError::denied(
                    "recipient",
                    format!("{agency} may move only its own deliveries, not {recipient}'s"),
                )
                .into());
            }
            recipient
        };
        let status = u32::try_from(request.status)
            .map_err(|_| truc_domain::StatusMoveError::UnknownCode(0))
            .and_then(DocStatus::from_code)
            .map_err(|_| {
                HubError::invalid(
                    "status",
                    format!(
                        "{} is not a status code (01, 02, 03, 04, 05, 06)",
                        request.status
                    ),
                )
            })?;
        truc_domain::check_reason(&request.reason, self.0.limits.reason_chars_max)
            .map_err(HubError::from)?;
        let entry = StatusEntry {
            code: status.code(),
            at_unix_ms: intake::now_unix_ms(),
            actor: agency.to_string(),
            reason: request.reason,
        };
        let entry = self
            .0
            .store
            .move_status(&request.document_id, &recipient.to_string(), entry)
            .await
            .map_err(|error| match error {
                truc_store::StoreError::NotFound { .. } => HubError::not_found(
                    "document_id",
                    format!("{} has no delivery to {recipient}", request.document_id),
                ),
                other => other.into(),
            })?;
        Ok(Response::new(pb::MoveStatusResponse {
            entry: Some(status_entry(&entry)),
        }))
    }

    async fn get_status(
        &self,
        request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        let caller = caller(&request)?;
        let document_id = request.into_inner().document_id;
        let (record, only) = self.0.readable_document(&caller, &document_id)?;
        let deliveries = self
            .0
            .store
            .deliveries(&document_id)
            .map_err(HubError::from)?;
        let recipients = deliveries
            .into_iter()
            .filter(|d| only.as_ref().is_none_or(|code| *code == d.recipient))
            .map(|d| pb::RecipientStatus {
                current: d.current_code().unwrap_or(0) as i32,
                history: d.history.iter().map(status_entry).collect(),
                recipient: d.recipient,
            })
            .collect();
        Ok(Response::new(pb::GetStatusResponse {
            document_id: record.document_id,
            sender: record.sender,
            subject: record.subject,
            accepted_at_unix_ms: record.accepted_at_unix_ms,
            document_signature: signature_state(record.document_signature_state) as i32,
            recipients,
            refused: if only.is_some() {
                Vec::new()
            } else {
                record
                    .refused
                    .into_iter()
                    .map(|r| pb::RecipientOutcome {
                        organ_id: r.organ_id,
                        accepted: false,
                        reason: r.reason,
                    })
                    .collect()
            },
        }))
    }

    type FetchAttachmentStream = BoxStream<pb::FetchAttachmentChunk>;

    async fn fetch_attachment(
        &self,
        request: Request<pb::FetchAttachmentRequest>,
    ) -> Result<Response<Self::FetchAttachmentStream>, Status> {
        let caller = caller(&request)?;
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
        if !caller(&request)?.is_operator() {
            return Err(HubError::denied("certificate", "reports are for operators").into());
        }
        let request = request.into_inner();
        let from = date_key("from_date", &request.from_date, 0)?;
        let to = date_key("to_date", &request.to_date, u32::MAX)?;
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
        let rows = tokio::task::spawn_blocking(move || store.report(from, to, focus.as_deref()))
            .await
            .map_err(|error| Status::internal(error.to_string()))?
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
                })
                .collect(),
        }))
    }

    async fn counts(
        &self,
        request: Request<pb::CountsRequest>,
    ) -> Result<Response<pb::CountsResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let from = date_key("from_date", &request.from_date, 0)?;
        let to = date_key("to_date", &request.to_date, u32::MAX)?;
        let counts = self.0.store.counts(from, to).map_err(HubError::from)?;
        let own = match &caller {
            Caller::Operator { .. } => None,
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
}
