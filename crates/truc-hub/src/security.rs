//! Security events, and the checks that make them: every refused handshake,
//! every call refused as UNAUTHENTICATED or PERMISSION_DENIED, every
//! connection over the per-identity limit, and calls on a connection whose
//! certificate was revoked after its handshake. Each is one `tracing` event
//! with target `truc::security` naming the identity, and one count in
//! `truc_security_events_total{kind}`.
//!
//! Revocation: the client verifier sits behind a lock so that a changed CRL
//! file applies to the next handshake without a restart ([`watch_crl`]).
//! A connection already open was authenticated before the list changed; TLS
//! does not authenticate again, so [`SecurityLayer`] refuses each new call
//! on it whose certificate the current list names. A delivery stream already
//! open goes on until it ends (the node reconnects, and that handshake fails).

use std::cell::Cell;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tokio::sync::watch;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::{Code, Status};
use truc_pki::{RevokedCertificates, TrustRoots};

use crate::metrics;

/// Where the hub reads its revocation list, and how often it looks again.
#[derive(Clone, Debug)]
pub struct CrlSetup {
    pub path: PathBuf,
    pub reload_interval: Duration,
}

/// The security settings of a running hub.
#[derive(Clone, Debug, Default)]
pub struct SecuritySetup {
    /// `None`: no revocation list.
    pub crl: Option<CrlSetup>,
    pub connections: crate::config::ConnectionsConfig,
    /// `None`: the directory the hub started with stays in force.
    pub directory_reload: Option<crate::directory::DirectoryReload>,
}

/// Logs and counts one security event.
pub(crate) fn event(kind: &'static str, identity: &str, code: &str, detail: &str) {
    tracing::warn!(target: "truc::security", kind, identity, code, detail, "security event");
    metrics::security_event(kind);
}

/// Who a certificate names, for the log: its truc identity, serial and subject.
pub(crate) fn describe_certificate(cert_der: &[u8]) -> String {
    let subject = truc_pki::certificate_validity(cert_der)
        .map(|validity| validity.subject)
        .unwrap_or_else(|_| "unreadable subject".into());
    match truc_pki::peer_identity(cert_der) {
        Ok(identity) => format!(
            "{} (serial {}, {subject})",
            identity.role.uri(),
            identity.serial_hex
        ),
        Err(error) => format!("no truc identity: {error} ({subject})"),
    }
}

tokio::task_local! {
    /// The connection a handshake runs for, so that the verifier, called
    /// inside it, can name the peer, and the acceptor knows it already did.
    static HANDSHAKE: HandshakeContext;
}

pub(crate) struct HandshakeContext {
    pub(crate) peer: SocketAddr,
    pub(crate) reported: Cell<bool>,
}

/// Runs a handshake with its peer known to the verifier.
pub(crate) async fn with_peer<F: Future>(peer: SocketAddr, handshake: F) -> (F::Output, bool) {
    let context = HandshakeContext {
        peer,
        reported: Cell::new(false),
    };
    HANDSHAKE
        .scope(context, async {
            let output = handshake.await;
            let reported = HANDSHAKE.with(|context| context.reported.get());
            (output, reported)
        })
        .await
}

/// The `kind` label of a handshake refused with `error`.
pub(crate) fn handshake_kind(error: &rustls::Error) -> &'static str {
    match error {
        rustls::Error::InvalidCertificate(certificate) => match certificate {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                "certificate_unknown_issuer"
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "certificate_expired"
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "certificate_not_yet_valid"
            }
            CertificateError::Revoked => "certificate_revoked",
            _ => "certificate_invalid",
        },
        rustls::Error::NoCertificatesPresented => "certificate_missing",
        rustls::Error::PeerIncompatible(_) => "tls_incompatible",
        _ => "handshake_failed",
    }
}

/// The client verifier of the hub: the chain must lead to the CA and the
/// certificate must not be on the current revocation list.
#[derive(Debug)]
pub(crate) struct RevocableVerifier {
    trust: TrustRoots,
    hints: Vec<DistinguishedName>,
    current: RwLock<Arc<dyn ClientCertVerifier>>,
    revoked: RwLock<Arc<RevokedCertificates>>,
}

/// Why the hub's TLS cannot be set up, or a revocation list put in force.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {}{source}", path.as_ref().map(|path| format!("{}: ", path.display())).unwrap_or_default())]
pub struct TlsSetupError {
    /// The setting as the config file writes it: `tls.crl`, `tls.ca_cert`, `tls.cert`.
    pub field: &'static str,
    /// The file, where `source` does not name it already.
    pub path: Option<PathBuf>,
    #[source]
    pub source: truc_pki::PkiError,
}

impl RevocableVerifier {
    pub(crate) fn new(
        trust: TrustRoots,
        crl: Option<&CrlSetup>,
    ) -> Result<Arc<Self>, TlsSetupError> {
        let (verifier, revoked) = match crl {
            Some(crl) => load(&trust, crl)?,
            None => (
                truc_pki::client_verifier(&trust, Vec::new()).map_err(|source| TlsSetupError {
                    field: "tls.ca_cert",
                    path: None,
                    source,
                })?,
                RevokedCertificates::default(),
            ),
        };
        Ok(Arc::new(Self {
            hints: verifier.root_hint_subjects().to_vec(),
            trust,
            current: RwLock::new(verifier),
            revoked: RwLock::new(Arc::new(revoked)),
        }))
    }

    fn current(&self) -> Arc<dyn ClientCertVerifier> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether the current list names this certificate.
    pub(crate) fn is_revoked(&self, cert_der: &[u8]) -> bool {
        self.revoked
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(cert_der)
    }

    fn replace(&self, verifier: Arc<dyn ClientCertVerifier>, revoked: RevokedCertificates) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = verifier;
        *self.revoked.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(revoked);
    }
}

fn load(
    trust: &TrustRoots,
    crl: &CrlSetup,
) -> Result<(Arc<dyn ClientCertVerifier>, RevokedCertificates), TlsSetupError> {
    // Reading names the file itself; parsing and building do not.
    let lists = truc_pki::read_crls(&crl.path).map_err(|source| TlsSetupError {
        field: "tls.crl",
        path: None,
        source,
    })?;
    let unusable = |source| TlsSetupError {
        field: "tls.crl",
        path: Some(crl.path.clone()),
        source,
    };
    let revoked = RevokedCertificates::from_crls(&lists).map_err(unusable)?;
    let verifier = truc_pki::client_verifier(trust, lists).map_err(unusable)?;
    Ok((verifier, revoked))
}

impl ClientCertVerifier for RevocableVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // The CA does not change with the list, so neither do the hints.
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .current()
            .verify_client_cert(end_entity, intermediates, now);
        if let Err(error) = &verified {
            let peer = HANDSHAKE
                .try_with(|context| {
                    context.reported.set(true);
                    context.peer.to_string()
                })
                .unwrap_or_else(|_| "unknown peer".into());
            event(
                handshake_kind(error),
                &describe_certificate(end_entity),
                "handshake refused",
                &format!("from {peer}: {error}"),
            );
            // The client sees only an alert: the log says which certificate
            // and, if expired, since when.
            crate::certificates::refused_client(end_entity.as_ref(), error);
        }
        verified
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current().supported_verify_schemes()
    }
}

/// Looks at the CRL file every `reload_interval` and, when its modification
/// time or length changed, loads it for the next handshakes and calls. A list
/// that does not load leaves the previous one in force.
pub(crate) async fn watch_crl(
    verifier: Arc<RevocableVerifier>,
    crl: CrlSetup,
    mut shutdown: watch::Receiver<bool>,
) {
    let stamp = |path: &PathBuf| {
        std::fs::metadata(path)
            .ok()
            .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
    };
    let mut seen = stamp(&crl.path);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(crl.reload_interval) => {}
            _ = shutdown.wait_for(|stopping| *stopping) => return,
        }
        let now = stamp(&crl.path);
        if now == seen {
            continue;
        }
        seen = now;
        match load(&verifier.trust, &crl) {
            Ok((next, revoked)) => {
                tracing::info!(
                    target: "truc::security",
                    path = %crl.path.display(),
                    revoked = revoked.len(),
                    "revocation list reloaded; new connections and calls are checked against it"
                );
                verifier.replace(next, revoked);
            }
            Err(error) => tracing::error!(
                target: "truc::security",
                %error,
                "revocation list not reloaded; the previous one stays in force"
            ),
        }
    }
}

/// Who made a request, from its connection's certificate.
fn peer_certificate<B>(request: &http::Request<B>) -> Option<Vec<u8>> {
    request
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|info| info.peer_certs())
        .and_then(|certificates| certificates.first().map(|c| c.to_vec()))
}

/// Refuses calls on connections whose certificate was revoked since their
/// handshake, and reports every call refused as UNAUTHENTICATED or
/// PERMISSION_DENIED, with the caller's identity and the method.
#[derive(Clone)]
pub(crate) struct SecurityLayer {
    pub(crate) verifier: Arc<RevocableVerifier>,
}

impl<S> tower::Layer<S> for SecurityLayer {
    type Service = SecurityService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SecurityService {
            inner,
            verifier: self.verifier.clone(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct SecurityService<S> {
    inner: S,
    verifier: Arc<RevocableVerifier>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for SecurityService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request.uri().path().to_owned();
        let certificate = peer_certificate(&request);
        if let Some(der) = &certificate {
            if self.verifier.is_revoked(der) {
                let identity = describe_certificate(der);
                event(
                    "certificate_revoked",
                    &identity,
                    "unauthenticated",
                    &format!("{method} on a connection opened before the revocation"),
                );
                let status = Status::unauthenticated(
                    "certificate: revoked by the CA's revocation list; this connection may make no more calls",
                );
                return Box::pin(std::future::ready(Ok(status.into_http())));
            }
        }
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            // A handler's refusal travels in the headers (trailers-only).
            if let Some(status) = Status::from_header_map(response.headers()) {
                let kind = match status.code() {
                    Code::Unauthenticated => Some("unauthenticated"),
                    Code::PermissionDenied => Some("permission_denied"),
                    _ => None,
                };
                if let Some(kind) = kind {
                    let identity = certificate
                        .as_deref()
                        .map(describe_certificate)
                        .unwrap_or_else(|| "no certificate".into());
                    event(
                        kind,
                        &identity,
                        kind,
                        &format!("{method}: {}", status.message()),
                    );
                }
            }
            Ok(response)
        })
    }
}
