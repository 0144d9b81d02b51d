//! rustls configurations for the hub (server, client certificates required,
//! optionally checked against revocation lists) and for its clients.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use std::path::Path;

use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, PrivatePkcs8KeyDer,
};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ServerConfig};

use crate::credentials::read_file;
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

/// The hub's provider: ring with only the TLS 1.3 suites (AES-256-GCM,
/// AES-128-GCM, ChaCha20-Poly1305, all AEAD with forward secrecy), so that
/// nothing weaker could be negotiated even if a TLS 1.2 version were enabled.
fn tls13_only_provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .retain(|suite| suite.version() == &rustls::version::TLS13);
    Arc::new(provider)
}

/// Hub side: TLS 1.3 only, client certificates required and verified against
/// `roots`, presents `hub`, ALPN `h2`.
pub fn server_tls_config(
    roots: &TrustRoots,
    hub: &Credentials,
) -> Result<Arc<ServerConfig>, PkiError> {
    server_tls_config_with_verifier(hub, client_verifier(roots, Vec::new())?)
}

/// Verifies client certificates against `roots` and refuses those a list of
/// `crls` revokes. A certificate whose issuer has no list here is accepted on
/// its chain alone, so that a list for one of several CAs does not lock out
/// the others.
pub fn client_verifier(
    roots: &TrustRoots,
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> Result<Arc<dyn ClientCertVerifier>, PkiError> {
    let builder = WebPkiClientVerifier::builder_with_provider(roots.root_store(), ring_provider());
    let builder = if crls.is_empty() {
        builder
    } else {
        builder.with_crls(crls).allow_unknown_revocation_status()
    };
    builder
        .build()
        .map_err(|source| PkiError::ClientVerifier { source })
}

/// Every CRL in a file, PEM (`X509 CRL` blocks) or a single DER list.
pub fn read_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, PkiError> {
    let bytes = read_file(path)?;
    if bytes.first() == Some(&0x30) {
        // A DER SEQUENCE: the file is one binary list.
        return Ok(vec![CertificateRevocationListDer::from(bytes)]);
    }
    let crls = rustls_pemfile::crls(&mut &bytes[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| PkiError::Pem {
            path: path.to_owned(),
            reason: format!("malformed PEM: {error}"),
        })?;
    if crls.is_empty() {
        return Err(PkiError::Pem {
            path: path.to_owned(),
            reason: "no X509 CRL block found".to_owned(),
        });
    }
    Ok(crls)
}

/// [`server_tls_config`] with a client verifier of the caller's, e.g. one
/// that swaps in a new revocation list while the hub runs.
pub fn server_tls_config_with_verifier(
    hub: &Credentials,
    client_verifier: Arc<dyn ClientCertVerifier>,
) -> Result<Arc<ServerConfig>, PkiError> {
    let provider = tls13_only_provider();
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
    // No resumption: a resumed session skips the client certificate check, so
    // a certificate revoked or expired since the first handshake would get in
    // again. Connections are long-lived; a full handshake each costs little.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
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
