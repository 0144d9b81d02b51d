//! rustls configurations for the hub (server, client certificates required) and for its clients.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::UnixTime;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ServerConfig};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::{Credentials, PkiError, TrustRoots};

/// The server name clients use for the hub; the hub certificate carries it as a DNS SAN.
pub const HUB_SERVER_NAME: &str = "truc-hub";

/// gRPC runs over HTTP/2, so both sides offer only `h2`.
const ALPN_H2: &[u8] = b"h2";

/// The ring provider, chosen explicitly so that a process which happens to
/// link another provider does not change what this crate negotiates.
fn ring_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn chain_and_key(creds: &Credentials) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let chain = creds
        .cert_chain_der
        .iter()
        .map(|der| CertificateDer::from(der.clone()))
        .collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(creds.key_pkcs8_der.clone()));
    (chain, key)
}

/// Told of every client certificate the handshake refuses: its DER and why.
pub type RefusedClientCertificate = Arc<dyn Fn(&[u8], &rustls::Error) + Send + Sync>;

/// Hub side: TLS 1.3 only, client certificates required and verified against
/// `roots`, presents `hub`, ALPN `h2`.
pub fn server_tls_config(
    roots: &TrustRoots,
    hub: &Credentials,
) -> Result<Arc<ServerConfig>, PkiError> {
    server_tls_config_reporting(roots, hub, None)
}

/// [`server_tls_config`], calling `refused` with each client certificate the
/// handshake refuses (expired, another CA, …): the client only sees a TLS
/// alert, so the hub's log is where the certificate gets named.
pub fn server_tls_config_reporting(
    roots: &TrustRoots,
    hub: &Credentials,
    refused: Option<RefusedClientCertificate>,
) -> Result<Arc<ServerConfig>, PkiError> {
    let provider = ring_provider();
    let webpki_verifier =
        WebPkiClientVerifier::builder_with_provider(roots.root_store(), Arc::clone(&provider))
            .build()
            .map_err(|source| PkiError::ClientVerifier { source })?;
    let client_verifier: Arc<dyn ClientCertVerifier> = match refused {
        Some(refused) => Arc::new(ReportingVerifier {
            inner: webpki_verifier,
            refused,
        }),
        None => webpki_verifier,
    };
    let (chain, key) = chain_and_key(hub);
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| PkiError::Tls {
            what: "server protocol versions",
            source,
        })?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(chain, key)
        .map_err(|source| PkiError::Tls {
            what: "hub certificate and key",
            source,
        })?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// Agency or operator side: TLS 1.3 only, trusts only `roots`, presents
/// `creds`, ALPN `h2`. Connect with [`HUB_SERVER_NAME`] (or `localhost` /
/// the loopback address, which the dev hub certificate also names).
pub fn client_tls_config(
    roots: &TrustRoots,
    creds: &Credentials,
) -> Result<Arc<ClientConfig>, PkiError> {
    let (chain, key) = chain_and_key(creds);
    let mut config = ClientConfig::builder_with_provider(ring_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| PkiError::Tls {
            what: "client protocol versions",
            source,
        })?
        .with_root_certificates(roots.root_store())
        .with_client_auth_cert(chain, key)
        .map_err(|source| PkiError::Tls {
            what: "client certificate and key",
            source,
        })?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// The WebPKI client verifier, telling `refused` of each certificate it refuses.
struct ReportingVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    refused: RefusedClientCertificate,
}

impl std::fmt::Debug for ReportingVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportingVerifier").finish_non_exhaustive()
    }
}

impl ClientCertVerifier for ReportingVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)
            .inspect_err(|error| (self.refused)(end_entity.as_ref(), error))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
