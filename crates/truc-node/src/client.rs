//! A gRPC client of the axis over mutual TLS (TLS 1.3, the agency's or
//! operator's certificate), given one hub address or several: a call the hub
//! did not answer goes to the next hub ([`crate::failover`]).

use std::net::SocketAddr;
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_stream::StreamExt;
use tonic::transport::{Channel, Endpoint};
use truc_domain::views::{
    Counts, DeadLetter, DeadLetterFilter, DeadLetterList, DocumentFilter, DocumentList,
    DocumentStatus, HubItem, MoveRequest, NodeList, OverdueFilter, OverdueList, Report, Route,
    SendReceipt, SignedEnvelope, StatusCode, StatusEntry,
};
use truc_pki::{Credentials, TrustRoots};
use truc_proto::v1 as pb;

use crate::compose::{Attachment, Draft, Prepared};
use crate::failover::{hub_did_not_answer, FailoverOptions, HubAddresses, Hubs, Stub};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Pki(#[from] truc_pki::PkiError),
    #[error("cannot reach the hub at {address}: {reason}")]
    Connect { address: SocketAddr, reason: String },
    /// The TLS handshake failed over a certificate: the hub and this client
    /// trust different CAs, or a certificate expired or was revoked. Not a
    /// hub that did not answer, so never asked of another hub.
    #[error("certificate: {problem}{}", address.map(|a| format!(" (hub {a})")).unwrap_or_default())]
    Certificate {
        address: Option<SocketAddr>,
        problem: CertificateProblem,
    },
    #[error("no hub answered: {}", list(.0))]
    NoHubAnswered(Vec<ClientError>),
    // Not `#[from]`: that would make the status a source too, and error
    // chains would print its message twice.
    #[error("the hub refused: {} ({:?})", .0.message(), .0.code())]
    Refused(tonic::Status),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Draft(String),
    /// The node could not write what it received into its inbox.
    #[error("inbox: {0}")]
    Inbox(#[from] crate::agent::InboxError),
    /// An acknowledgement found its delivery stream already closed.
    #[error("the delivery stream closed")]
    StreamClosed,
}

fn list(errors: &[ClientError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl From<tonic::Status> for ClientError {
    fn from(status: tonic::Status) -> Self {
        // Under TLS 1.3 the hub refuses a client certificate after the
        // client has finished its handshake: the refusal arrives as the
        // first call's transport error.
        match certificate_problem(&status) {
            Some(problem) => ClientError::Certificate {
                address: None,
                problem,
            },
            None => ClientError::Refused(status),
        }
    }
}

/// Which side's certificate a failed TLS handshake was about.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CertificateProblem {
    /// This client does not accept the hub's certificate; the reason is
    /// rustls's (`UnknownIssuer`: another CA issued it, `Expired`, …).
    #[error("the hub's certificate is not accepted by this client's CA ({reason})")]
    HubCertificate { reason: String },
    /// The hub refused this client's certificate; the alert it sent
    /// (`UnknownCA`, `CertificateExpired`, `CertificateRevoked`, …).
    #[error("the hub refused this client's certificate ({alert})")]
    OwnCertificate { alert: String },
}

/// The certificate problem behind an error, found by the rustls error in
/// its chain of causes (directly, or inside an I/O error), never by text.
pub fn certificate_problem(
    error: &(dyn std::error::Error + 'static),
) -> Option<CertificateProblem> {
    use rustls::AlertDescription as Alert;
    let mut cause = Some(error);
    while let Some(current) = cause {
        let rustls_error = current.downcast_ref::<rustls::Error>().or_else(|| {
            current
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        match rustls_error {
            Some(rustls::Error::InvalidCertificate(reason)) => {
                return Some(CertificateProblem::HubCertificate {
                    reason: format!("{reason:?}"),
                })
            }
            Some(rustls::Error::AlertReceived(
                alert @ (Alert::BadCertificate
                | Alert::UnsupportedCertificate
                | Alert::CertificateRevoked
                | Alert::CertificateExpired
                | Alert::CertificateUnknown
                | Alert::UnknownCA
                | Alert::CertificateRequired
                | Alert::AccessDenied),
            )) => {
                return Some(CertificateProblem::OwnCertificate {
                    alert: format!("{alert:?}"),
                })
            }
            Some(_) => return None,
            None => {}
        }
        cause = current.source();
    }
    None
}

impl ClientError {
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            ClientError::Refused(status) => Some(status.code()),
            _ => None,
        }
    }

    /// The hub could not be reached or did not answer (no connection, a
    /// connection lost, UNAVAILABLE): the same request may go to another
    /// hub. A refusal by the hub is never that.
    pub fn is_unreachable(&self) -> bool {
        match self {
            ClientError::Connect { .. } | ClientError::NoHubAnswered(_) => true,
            ClientError::Refused(status) => hub_did_not_answer(status),
            _ => false,
        }
    }

    /// Worth the same request again after a wait: unreachable (above), any
    /// UNAVAILABLE, UNKNOWN or CANCELLED (what a call cut by a hub's death
    /// ends with, transport cause or not), or an I/O error. Wider than
    /// `is_unreachable`, which decides whether another hub may take a request.
    pub fn is_transient(&self) -> bool {
        self.is_unreachable()
            || matches!(
                self.code(),
                Some(tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled)
            )
            || matches!(self, ClientError::Io(_))
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
    connect_tls(address, &tls, &FailoverOptions::default()).await
}

/// Connects to one hub within the options' connect timeout, with HTTP/2
/// keepalive pings so that a hub that stops answering is noticed.
pub(crate) async fn connect_tls(
    address: SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
    options: &FailoverOptions,
) -> Result<Channel, ClientError> {
    let connector = TlsConnector::from(tls.clone());
    let server_name = rustls::pki_types::ServerName::try_from(truc_pki::HUB_SERVER_NAME)
        .expect("the hub server name is a valid DNS name");
    let connect_timeout = options.connect_timeout;
    Endpoint::from_shared(format!("http://{address}"))
        .map_err(|error| ClientError::Connect {
            address,
            reason: error.to_string(),
        })?
        .http2_keep_alive_interval(options.keepalive_interval)
        .keep_alive_timeout(options.keepalive_timeout)
        .connect_with_connector(tower::service_fn(move |_| {
            let connector = connector.clone();
            let server_name = server_name.clone();
            async move {
                let handshake = async {
                    let tcp = TcpStream::connect(address).await?;
                    tcp.set_nodelay(true)?;
                    connector.connect(server_name, tcp).await
                };
                let tls = tokio::time::timeout(connect_timeout, handshake)
                    .await
                    .map_err(|_| {
                        std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!("no connection within {} ms", connect_timeout.as_millis()),
                        )
                    })??;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        }))
        .await
        .map_err(|error| match certificate_problem(&error) {
            Some(problem) => ClientError::Certificate {
                address: Some(address),
                problem,
            },
            None => ClientError::Connect {
                address,
                reason: format!("{error}: {}", source_chain(&error)),
            },
        })
}

/// Whether a call's error is a TLS record the client could not accept on a
/// connection whose handshake had ended (`InvalidData`, by kind): under
/// TLS 1.3 that is how a hub's refusal of the client's certificate reaches
/// the first call, after HTTP/2 has turned the TLS error into text.
pub(crate) fn broken_tls_record(error: &ClientError) -> bool {
    let ClientError::Refused(status) = error else {
        return false;
    };
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(status);
    while let Some(current) = cause {
        if current
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::InvalidData)
        {
            return true;
        }
        cause = current.source();
    }
    false
}

/// Asks the hub at `address` again, on a connection of its own, what a TLS
/// failure was: the handshake, then the HTTP/2 preface, which makes the hub
/// answer; a hub that refuses the client's certificate answers with an
/// alert, read here as rustls's typed error.
pub(crate) async fn probe_certificate(
    address: SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
    options: &FailoverOptions,
) -> Option<CertificateProblem> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server_name = rustls::pki_types::ServerName::try_from(truc_pki::HUB_SERVER_NAME).ok()?;
    let probe = async {
        let tcp = TcpStream::connect(address).await.ok()?;
        let mut stream = match TlsConnector::from(tls.clone())
            .connect(server_name, tcp)
            .await
        {
            Ok(stream) => stream,
            Err(error) => return certificate_problem(&error),
        };
        if let Err(error) = stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await {
            return certificate_problem(&error);
        }
        let mut byte = [0u8; 1];
        match stream.read(&mut byte).await {
            Err(error) => certificate_problem(&error),
            Ok(_) => None,
        }
    };
    tokio::time::timeout(options.connect_timeout, probe)
        .await
        .ok()
        .flatten()
}

/// A connection to the axis as one agency or operator, through one hub of
/// a list. Clones share the connection and the hub they use.
#[derive(Clone)]
pub struct AxisClient {
    hubs: Arc<Hubs>,
    credentials: Arc<Credentials>,
    /// Parsed once: reading an Ed25519 key derives its public half, which
    /// costs as much as a signature.
    signing_key: Arc<truc_domain::SigningKey>,
}

impl AxisClient {
    /// A client of the hub at `address`, connected.
    pub async fn connect(
        address: SocketAddr,
        roots: &TrustRoots,
        credentials: Credentials,
    ) -> Result<AxisClient, ClientError> {
        Self::connect_hubs(&HubAddresses::one(address), roots, credentials).await
    }

    /// A client of several hubs, connected to the first that accepts a
    /// connection (each is tried once, in order); calls move on to the
    /// next hub when theirs does not answer.
    pub async fn connect_hubs(
        hubs: &HubAddresses,
        roots: &TrustRoots,
        credentials: Credentials,
    ) -> Result<AxisClient, ClientError> {
        Self::connect_hubs_with(hubs, roots, credentials, FailoverOptions::default()).await
    }

    /// [`AxisClient::connect_hubs`] with bounds of its own.
    pub async fn connect_hubs_with(
        hubs: &HubAddresses,
        roots: &TrustRoots,
        credentials: Credentials,
        options: FailoverOptions,
    ) -> Result<AxisClient, ClientError> {
        let client = Self::lazy(hubs, roots, credentials, options)?;
        client.hubs.connect_first().await?;
        Ok(client)
    }

    /// A client that connects at its first call, to the first hub of the
    /// list (a node agent that starts before its hubs do).
    pub fn lazy(
        hubs: &HubAddresses,
        roots: &TrustRoots,
        credentials: Credentials,
        options: FailoverOptions,
    ) -> Result<AxisClient, ClientError> {
        let tls = truc_pki::client_tls_config(roots, &credentials)?;
        let signing_key = truc_domain::SigningKey::from_pkcs8(&credentials.key_pkcs8_der)
            .map_err(|error| ClientError::Draft(error.to_string()))?;
        let seed = credentials
            .cert_chain_der
            .first()
            .cloned()
            .unwrap_or_default();
        Ok(AxisClient {
            hubs: Arc::new(Hubs::new(hubs.clone(), tls, options, &seed)),
            credentials: Arc::new(credentials),
            signing_key: Arc::new(signing_key),
        })
    }

    /// Every hub this client may use, in order.
    pub fn hubs(&self) -> &HubAddresses {
        self.hubs.addresses()
    }

    /// The hub calls go to now: after a call returns, the hub that answered
    /// it (unless a concurrent call has moved on since).
    pub fn current_hub(&self) -> SocketAddr {
        self.hubs.current()
    }

    /// Moves later calls on to the hub after `hub` if they still go to it,
    /// and lets go of its connection (a delivery stream that `hub` ended).
    pub fn move_on_from(&self, hub: SocketAddr) {
        self.hubs.move_on_from(hub);
    }

    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// One call with a request and a response, asked again of the next hub
    /// while the hub does not answer.
    async fn unary<Request, Response, Call, Answer>(
        &self,
        request: Request,
        call: Call,
    ) -> Result<Response, ClientError>
    where
        Request: Clone,
        Call: Fn(Stub, Request) -> Answer,
        Answer: std::future::Future<Output = Result<tonic::Response<Response>, tonic::Status>>,
    {
        self.hubs
            .call(|stub| {
                let answer = call(stub, request.clone());
                async move { Ok(answer.await?.into_inner()) }
            })
            .await
    }

    /// Signs and sends a document, streaming its attachments.
    pub async fn send(
        &self,
        draft: &Draft,
        attachments: Vec<Attachment>,
    ) -> Result<SendReceipt, ClientError> {
        let prepared =
            Prepared::signed_with(draft, attachments, &self.credentials, &self.signing_key).await?;
        self.send_prepared(prepared).await
    }

    /// Sends an envelope that is already signed (benchmarks pre-sign). A
    /// hub that does not answer is left for the next with the same signed
    /// envelope: a hub that had already stored it answers with the
    /// original acknowledgement (`duplicate`), never a second document.
    pub async fn send_prepared(&self, prepared: Prepared) -> Result<SendReceipt, ClientError> {
        self.hubs
            .call(|stub| send_once(stub, prepared.clone()))
            .await
            .map(SendReceipt::from)
    }

    /// Sends a signed envelope with one attachment whose chunks are made as
    /// the stream takes them (a load generator's large attachments, never
    /// all in memory). `chunks` makes them anew for each attempt: a hub that
    /// does not answer is left for the next like [`AxisClient::send_prepared`].
    pub async fn send_streamed<C, I>(
        &self,
        envelope: &SignedEnvelope,
        chunks: C,
    ) -> Result<SendReceipt, ClientError>
    where
        C: Fn() -> I,
        I: Iterator<Item = Vec<u8>> + Send + 'static,
    {
        let envelope = pb::SignedEnvelope::from(envelope.clone());
        self.hubs
            .call(|mut stub| {
                let (sender, receiver) = tokio::sync::mpsc::channel(4);
                let (envelope, chunks) = (envelope.clone(), chunks());
                async move {
                    let producer = tokio::spawn(async move {
                        let part = |part| pb::SendRequest { part: Some(part) };
                        let first = part(pb::send_request::Part::Envelope(envelope));
                        if sender.send(first).await.is_err() {
                            return;
                        }
                        for data in chunks {
                            let chunk = pb::AttachmentChunk { index: 0, data };
                            if sender
                                .send(part(pb::send_request::Part::Chunk(chunk)))
                                .await
                                .is_err()
                            {
                                return;
                            }
                        }
                    });
                    let response = stub
                        .send(tokio_stream::wrappers::ReceiverStream::new(receiver))
                        .await;
                    producer.abort();
                    Ok(response?.into_inner())
                }
            })
            .await
            .map(SendReceipt::from)
    }

    /// Moves a delivery on. After a hub that did not answer, the move is
    /// asked of the next; if that one refuses it as already made
    /// (FAILED_PRECONDITION) and the document shows this very move by this
    /// caller, the first attempt was recorded and its entry is returned.
    pub async fn move_status(
        &self,
        document_id: &str,
        recipient: Option<&str>,
        status: truc_domain::Status,
        reason: &str,
    ) -> Result<StatusEntry, ClientError> {
        let request = MoveRequest {
            document_id: document_id.to_owned(),
            recipient: recipient.unwrap_or_default().to_owned(),
            status,
            reason: reason.to_owned(),
        };
        let wire_request = pb::MoveStatusRequest::from(request.clone());
        let mut issued = 0u32;
        let outcome = self
            .hubs
            .call(|mut stub| {
                issued += 1;
                let request = wire_request.clone();
                async move { Ok(stub.move_status(request).await?.into_inner()) }
            })
            .await;
        match outcome {
            Ok(response) => Ok(response.entry.unwrap_or_default().into()),
            Err(ClientError::Refused(refusal))
                if issued > 1 && refusal.code() == tonic::Code::FailedPrecondition =>
            {
                let mut documents = RecordedMoves::default();
                match self.recorded_move(&request, &mut documents).await {
                    Some(entry) => Ok(entry),
                    None => Err(ClientError::Refused(refusal)),
                }
            }
            Err(error) => Err(error),
        }
    }

    /// Several moves in one call and one durable write on the hub, each with
    /// its own result: the entry recorded, or the status the hub refused it with.
    /// Asked again of the next hub like [`AxisClient::move_status`], and a
    /// move refused then as already made is checked the same way.
    pub async fn move_statuses(
        &self,
        moves: Vec<MoveRequest>,
    ) -> Result<Vec<Result<StatusEntry, tonic::Status>>, ClientError> {
        let wire_moves: Vec<pb::MoveStatusRequest> = moves
            .iter()
            .cloned()
            .map(pb::MoveStatusRequest::from)
            .collect();
        let mut issued = 0u32;
        let response = self
            .hubs
            .call(|mut stub| {
                issued += 1;
                let request = pb::MoveStatusesRequest {
                    moves: wire_moves.clone(),
                };
                async move { Ok(stub.move_statuses(request).await?.into_inner()) }
            })
            .await?;
        let mut results = Vec::with_capacity(response.results.len());
        let mut documents = RecordedMoves::default();
        for (index, result) in response.results.into_iter().enumerate() {
            results.push(match result.outcome {
                Some(pb::move_result::Outcome::Entry(entry)) => Ok(entry.into()),
                Some(pb::move_result::Outcome::Refused(refusal)) => {
                    let code = tonic::Code::from(refusal.code);
                    let recorded = match moves.get(index) {
                        Some(asked) if issued > 1 && code == tonic::Code::FailedPrecondition => {
                            self.recorded_move(asked, &mut documents).await
                        }
                        _ => None,
                    };
                    recorded.ok_or_else(|| tonic::Status::new(code, refusal.message))
                }
                None => Err(tonic::Status::internal(
                    "the hub gave no outcome for a move",
                )),
            });
        }
        Ok(results)
    }

    /// The entry of `asked` if the document's history shows it made by this
    /// caller: a move whose answer was lost with a hub that stopped.
    async fn recorded_move(
        &self,
        asked: &MoveRequest,
        documents: &mut RecordedMoves,
    ) -> Option<StatusEntry> {
        let own = match truc_pki::peer_identity(self.credentials.certificate_der()) {
            Ok(truc_pki::PeerIdentity {
                role: truc_pki::PeerRole::Agency { code },
                ..
            }) => code,
            _ => return None,
        };
        if !documents.0.contains_key(&asked.document_id) {
            let status = self.get_status(&asked.document_id).await.ok();
            documents.0.insert(asked.document_id.clone(), status);
        }
        let status = documents.0.get(&asked.document_id)?.as_ref()?;
        let recipient = if asked.recipient.is_empty() {
            own.as_str()
        } else {
            asked.recipient.as_str()
        };
        let history = &status
            .recipients
            .iter()
            .find(|row| row.recipient == recipient)?
            .history;
        // Each entry answers one move at most: a batch that asked the same
        // move twice had the second refused the first time too.
        let (position, entry) = history.iter().enumerate().find(|(position, entry)| {
            entry.status == StatusCode::from(asked.status)
                && entry.actor == own
                && entry.reason == asked.reason
                && !documents.1.contains(&(
                    asked.document_id.clone(),
                    recipient.to_owned(),
                    *position,
                ))
        })?;
        let entry = entry.clone();
        documents
            .1
            .insert((asked.document_id.clone(), recipient.to_owned(), position));
        Some(entry)
    }

    pub async fn get_status(&self, document_id: &str) -> Result<DocumentStatus, ClientError> {
        self.unary(
            pb::GetStatusRequest {
                document_id: document_id.to_owned(),
            },
            |mut stub, request| async move { stub.get_status(request).await },
        )
        .await
        .map(DocumentStatus::from)
    }

    pub async fn counts(&self, from_date: &str, to_date: &str) -> Result<Counts, ClientError> {
        self.unary(
            pb::CountsRequest {
                from_date: from_date.to_owned(),
                to_date: to_date.to_owned(),
            },
            |mut stub, request| async move { stub.counts(request).await },
        )
        .await
        .map(Counts::from)
    }

    /// Per-agency figures recomputed from the stored records (operators only).
    pub async fn report(
        &self,
        from_date: &str,
        to_date: &str,
        focus_recipient: &str,
    ) -> Result<Report, ClientError> {
        self.unary(
            pb::ReportRequest {
                from_date: from_date.to_owned(),
                to_date: to_date.to_owned(),
                focus_recipient: focus_recipient.to_owned(),
            },
            |mut stub, request| async move { stub.report(request).await },
        )
        .await
        .map(Report::from)
    }

    /// Where documents to `organ_id` are delivered, and why.
    pub async fn explain_route(&self, organ_id: &str) -> Result<Route, ClientError> {
        self.unary(
            pb::ExplainRouteRequest {
                organ_id: organ_id.to_owned(),
            },
            |mut stub, request| async move { stub.explain_route(request).await },
        )
        .await
        .map(Route::from)
    }

    /// Documents matching a filter (an agency sees only its own).
    pub async fn list_documents(
        &self,
        filter: &DocumentFilter,
    ) -> Result<DocumentList, ClientError> {
        self.unary(
            pb::ListDocumentsRequest::from(filter.clone()),
            |mut stub, request| async move { stub.list_documents(request).await },
        )
        .await
        .map(DocumentList::from)
    }

    /// The directory with each node's state (operators only).
    pub async fn list_nodes(&self) -> Result<NodeList, ClientError> {
        self.unary(pb::ListNodesRequest {}, |mut stub, request| async move {
            stub.list_nodes(request).await
        })
        .await
        .map(NodeList::from)
    }

    /// Deliveries past a feedback deadline and still unanswered.
    pub async fn list_overdue(&self, filter: &OverdueFilter) -> Result<OverdueList, ClientError> {
        self.unary(
            pb::ListOverdueRequest::from(filter.clone()),
            |mut stub, request| async move { stub.list_overdue(request).await },
        )
        .await
        .map(OverdueList::from)
    }

    /// Deliveries that expired unacknowledged.
    pub async fn list_dead_letters(
        &self,
        filter: &DeadLetterFilter,
    ) -> Result<DeadLetterList, ClientError> {
        self.unary(
            pb::ListDeadLettersRequest::from(filter.clone()),
            |mut stub, request| async move { stub.list_dead_letters(request).await },
        )
        .await
        .map(DeadLetterList::from)
    }

    /// Queues a dead letter again (operators only).
    pub async fn resend_dead_letter(
        &self,
        document_id: &str,
        recipient: &str,
    ) -> Result<DeadLetter, ClientError> {
        self.unary(
            pb::ResendDeadLetterRequest {
                document_id: document_id.into(),
                recipient: recipient.into(),
            },
            |mut stub, request| async move { stub.resend_dead_letter(request).await },
        )
        .await
        .map(DeadLetter::from)
    }

    /// Closes a dead letter for good (operators only).
    pub async fn cancel_dead_letter(
        &self,
        document_id: &str,
        recipient: &str,
        reason: &str,
    ) -> Result<DeadLetter, ClientError> {
        self.unary(
            pb::CancelDeadLetterRequest {
                document_id: document_id.into(),
                recipient: recipient.into(),
                reason: reason.into(),
            },
            |mut stub, request| async move { stub.cancel_dead_letter(request).await },
        )
        .await
        .map(DeadLetter::from)
    }

    /// Streams the audit export of a period (operators only), as the file's
    /// bytes in order. Opening the stream goes to the next hub if needed; a
    /// stream cut midway is the caller's to start again.
    pub async fn export_audit(
        &self,
        from_unix_ms: i64,
        to_unix_ms: i64,
    ) -> Result<ByteChunks, ClientError> {
        let stream = self
            .unary(
                pb::ExportAuditRequest {
                    from_unix_ms,
                    to_unix_ms,
                },
                |mut stub, request| async move { stub.export_audit(request).await },
            )
            .await?;
        Ok(ByteChunks(Box::pin(stream.map(|chunk| {
            chunk.map(|chunk| chunk.data).map_err(ClientError::from)
        }))))
    }

    /// Streams one attachment's bytes (opened like [`AxisClient::export_audit`]).
    pub async fn fetch_attachment(
        &self,
        document_id: &str,
        index: u32,
    ) -> Result<ByteChunks, ClientError> {
        let stream = self
            .unary(
                pb::FetchAttachmentRequest {
                    document_id: document_id.to_owned(),
                    index,
                },
                |mut stub, request| async move { stub.fetch_attachment(request).await },
            )
            .await?;
        Ok(ByteChunks(Box::pin(stream.map(|chunk| {
            chunk.map(|chunk| chunk.data).map_err(ClientError::from)
        }))))
    }

    /// Opens the delivery stream with a window of `window` unacknowledged
    /// items: the acknowledgements' side and the items the hub sends.
    /// Acknowledgements queued while an earlier message is being
    /// written go out as one message of at most [`truc_domain::MERGED_ACKS_MAX`] queue
    /// items, so a busy node costs the hub one message for many deliveries.
    /// Opening goes to the next hub if needed; [`AxisClient::current_hub`]
    /// then says which hub serves the stream.
    pub async fn deliveries(&self, window: u32) -> Result<(Acks, Deliveries), ClientError> {
        let (sender, stream) = self.wire_deliveries(window, true).await?;
        let items = stream.filter_map(|message| match message {
            Ok(message) => truc_proto::convert::hub_item(message).map(Ok),
            Err(status) => Some(Err(ClientError::from(status))),
        });
        Ok((Acks(sender), Deliveries(Box::pin(items))))
    }

    /// The delivery stream as wire messages, every message going out as it
    /// was queued: for tests of how the hub treats each message, a second
    /// hello included.
    pub async fn deliveries_as_sent(&self, window: u32) -> Result<WireDeliveryStream, ClientError> {
        self.wire_deliveries(window, false).await
    }

    /// The delivery stream as the node agent reads it, wire messages and all.
    pub(crate) async fn wire_deliveries(
        &self,
        window: u32,
        merge: bool,
    ) -> Result<WireDeliveryStream, ClientError> {
        self.hubs
            .call(|mut stub| async move {
                let (sender, receiver) = tokio::sync::mpsc::channel(window.max(16) as usize);
                sender
                    .send(pb::NodeMessage {
                        kind: Some(pb::node_message::Kind::Hello(pb::Hello { window })),
                    })
                    .await
                    .map_err(|_| ClientError::Draft("the delivery stream closed at once".into()))?;
                let stream = stub
                    .deliveries(MergedAcks {
                        receiver,
                        held: None,
                        seqs_max: if merge { MERGED_ACK_SEQS_MAX } else { 0 },
                    })
                    .await?
                    .into_inner();
                Ok((sender, stream))
            })
            .await
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
            bytes.extend_from_slice(&chunk?);
        }
        Ok(bytes)
    }
}

/// A stream of bytes from the hub (an attachment, an audit export), chunk
/// by chunk; a refusal midway ends it with the error.
pub struct ByteChunks(
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<Vec<u8>, ClientError>> + Send>>,
);

impl ByteChunks {
    /// The next chunk, or `None` once the stream has ended.
    pub async fn message(&mut self) -> Result<Option<Vec<u8>>, ClientError> {
        self.next().await.transpose()
    }
}

impl tokio_stream::Stream for ByteChunks {
    type Item = Result<Vec<u8>, ClientError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.as_mut().poll_next(cx)
    }
}

/// What the hub sends on a delivery stream: deliveries and status notices.
pub struct Deliveries(
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<HubItem, ClientError>> + Send>>,
);

impl Deliveries {
    /// The next item, or `None` once the hub has ended the stream.
    pub async fn message(&mut self) -> Result<Option<HubItem>, ClientError> {
        self.next().await.transpose()
    }
}

impl std::fmt::Debug for Deliveries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Deliveries")
    }
}

impl std::fmt::Debug for ByteChunks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ByteChunks")
    }
}

impl tokio_stream::Stream for Deliveries {
    type Item = Result<HubItem, ClientError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.as_mut().poll_next(cx)
    }
}

/// The node's side of a delivery stream: acknowledgements of queue items.
/// Clones share the stream.
#[derive(Clone)]
pub struct Acks(tokio::sync::mpsc::Sender<pb::NodeMessage>);

impl Acks {
    pub(crate) fn new(sender: tokio::sync::mpsc::Sender<pb::NodeMessage>) -> Self {
        Acks(sender)
    }

    /// Acknowledges the items `queue_seqs` names (a delivery that arrived,
    /// a notice read).
    pub async fn ack(&self, queue_seqs: Vec<u64>) -> Result<(), ClientError> {
        self.0
            .send(crate::agent::ack_message(queue_seqs))
            .await
            .map_err(|_| ClientError::StreamClosed)
    }
}

/// One attempt of a send: the envelope, then the attachments, on one hub.
async fn send_once(mut stub: Stub, prepared: Prepared) -> Result<pb::SendResponse, ClientError> {
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    let producer = tokio::spawn(prepared.stream_into(sender));
    let response = stub
        .send(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await;
    // A read error on an attachment file shows as a cut stream; report it as
    // such (a local error: no other hub would fare better).
    if let Ok(Err(error)) = producer.await {
        if response.is_err() {
            return Err(error.into());
        }
    }
    Ok(response?.into_inner())
}

/// Statuses of documents read while checking moves, each once per call,
/// and the entries (document, recipient, place in the history) already
/// matched to a move.
#[derive(Default)]
struct RecordedMoves(
    std::collections::HashMap<String, Option<DocumentStatus>>,
    std::collections::HashSet<(String, String, usize)>,
);

fn source_chain(error: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut source = error.source();
    while let Some(cause) = source {
        parts.push(cause.to_string());
        source = cause.source();
    }
    parts.join(": ")
}

/// A delivery stream as wire messages: where the node's messages go (the
/// hello is already sent), and what the hub sends.
pub type WireDeliveryStream = (
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

    #[test]
    fn a_hub_that_went_away_is_transient_and_a_refusal_is_not() {
        let connect = ClientError::Connect {
            address: SocketAddr::from(([127, 0, 0, 1], 1)),
            reason: "refused".into(),
        };
        assert!(connect.is_transient());
        assert!(ClientError::NoHubAnswered(vec![]).is_transient());
        assert!(ClientError::Io(std::io::ErrorKind::BrokenPipe.into()).is_transient());
        for code in [
            tonic::Code::Unavailable,
            tonic::Code::Unknown,
            tonic::Code::Cancelled,
        ] {
            assert!(ClientError::Refused(tonic::Status::new(code, "")).is_transient());
        }
        for code in [
            tonic::Code::InvalidArgument,
            tonic::Code::PermissionDenied,
            tonic::Code::FailedPrecondition,
            tonic::Code::ResourceExhausted,
        ] {
            assert!(!ClientError::Refused(tonic::Status::new(code, "")).is_transient());
        }
        assert!(!ClientError::Draft("no subject".into()).is_transient());
    }

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
