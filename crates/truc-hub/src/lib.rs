//! The hub: gRPC services over mutual TLS, identity from certificates,
//! intake, routing to recipients' queues, delivery streams and status moves.
//! Entry point: [`run`] on a pre-bound listener, or [`run_observed`] with a
//! metrics endpoint; gRPC health and reflection share the Axis port.

pub mod config;
mod convert;
mod delivery;
pub mod directory;
mod error;
mod identity;
mod intake;
mod malformed;
pub mod metrics;
mod moves;
mod observe;
mod tls;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Notify};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};
use truc_domain::{AgencyCode, DocumentDate, DocumentId, Limits};
use truc_pki::{Credentials, TrustRoots};
use truc_proto::v1 as pb;
use truc_store::{Store, StoreOptions};

pub use config::HubConfig;
/// The wire header as the fields `Header::validate` checks, exactly as intake
/// reads it; public for the property tests and fuzz targets.
pub use convert::raw_header;
pub use directory::{AgencyEntry, ConnectionMode, Directory};
pub use error::HubError;
pub use identity::Caller;
pub use observe::AXIS_SERVICE;

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

/// What a hub offers operators' tooling beyond health and reflection,
/// which are always on.
#[derive(Default)]
pub struct Observe {
    /// Where to serve Prometheus metrics (plain HTTP, `GET /metrics`); bound
    /// by the caller so that tests can use port 0. `None` serves no metrics.
    pub metrics_listener: Option<TcpListener>,
}

/// Serves the axis on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    setup: HubSetup,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), HubError> {
    run_observed(listener, setup, Observe::default(), shutdown).await
}

/// [`run`], with what `observe` asks for.
pub async fn run_observed(
    listener: TcpListener,
    setup: HubSetup,
    observe: Observe,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), HubError> {
    let tls = truc_pki::server_tls_config(&setup.trust, &setup.credentials).map_err(|e| {
        HubError::Unauthenticated {
            field: "tls".into(),
            reason: e.to_string(),
        }
    })?;
    let reflection_v1 = observe::reflection_v1()?;
    let reflection_v1alpha = observe::reflection_v1alpha()?;
    let metrics_endpoint = match observe.metrics_listener {
        Some(listener) => {
            let handle = metrics::install()
                .map_err(|reason| HubError::invalid("observe.metrics_listen", reason))?;
            record_certificate_expiry(&setup);
            Some((listener, handle))
        }
        None => None,
    };
    let readiness = observe::Readiness::new().await;
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
    let metrics_task = metrics_endpoint.map(|(listener, handle)| {
        tokio::spawn(observe::serve_metrics(
            listener,
            handle,
            hub.shutdown.clone(),
        ))
    });
    let health = readiness.service(hub.shutdown.clone());
    let incoming = tls::incoming(listener, tls);
    // Storage is open (the setup holds it) and the certificates are loaded (`tls`).
    readiness.serving().await;
    let signal = async move {
        shutdown.await;
        readiness.stopping().await;
        let _ = stopping.send(true);
    };
    let served = tonic::transport::Server::builder()
        .layer(malformed::layer())
        .add_service(service)
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(incoming, signal)
        .await
        .map_err(|error| HubError::Invalid {
            field: "server".into(),
            reason: error.to_string(),
        });
    // The metrics port is free again once `run_observed` returns, like the Axis port.
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    served
}

/// Puts the expiry of the hub's certificate and of each CA into the metrics.
fn record_certificate_expiry(setup: &HubSetup) {
    let certificates = std::iter::once(("hub", setup.credentials.certificate_der()))
        .chain(setup.trust.certificates_der().map(|der| ("ca", der)));
    for (identity, der) in certificates {
        match truc_pki::certificate_validity(der) {
            Ok(validity) => metrics::certificate_expiry(
                identity,
                &validity.subject,
                validity.not_after_unix_seconds,
            ),
            Err(error) => tracing::warn!(identity, %error, "cannot read a certificate's expiry"),
        }
    }
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
    #[tracing::instrument(skip_all, fields(document_id = tracing::field::Empty))]
    async fn send(
        &self,
        request: Request<Streaming<pb::SendRequest>>,
    ) -> Result<Response<pb::SendResponse>, Status> {
        metrics::request("send");
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
        metrics::node_connected();
        let (outbound, receiver) = mpsc::channel(window.max(1));
        tokio::spawn(async move {
            delivery::run_session(hub.clone(), agency, window, inbound, outbound, replaced).await;
            let mut sessions = hub.sessions.lock().unwrap_or_else(|p| p.into_inner());
            if sessions.get(&agency).is_some_and(|(id, _)| *id == session) {
                sessions.remove(&agency);
            }
            metrics::node_disconnected();
            tracing::debug!(%agency, "node disconnected");
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
        let agency = caller(&request)?.agency("move statuses")?;
        let request = moves::check(&self.0, agency, request.into_inner())?;
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
        let agency = caller(&request)?.agency("move statuses")?;
        let results = moves::move_all(&self.0, agency, request.into_inner().moves).await?;
        Ok(Response::new(pb::MoveStatusesResponse { results }))
    }

    #[tracing::instrument(skip_all, fields(document_id = tracing::field::Empty))]
    async fn get_status(
        &self,
        request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        metrics::request("get_status");
        let caller = caller(&request)?;
        let document_id = request.into_inner().document_id;
        tracing::Span::current().record("document_id", document_id.as_str());
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
        metrics::request("fetch_attachment");
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
        metrics::request("report");
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
        metrics::request("counts");
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
