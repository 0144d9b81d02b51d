//! rustls configurations for the hub (server, client certificates required) and for its clients.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ServerConfig};

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

/// Hub side: TLS 1.3 only, client certificates required and verified against
/// `roots`, presents `hub`, ALPN `h2`.
pub fn server_tls_config(
    roots: &TrustRoots,
    hub: &Credentials,
) -> Result<Arc<ServerConfig>, PkiError> {
    let provider = ring_provider();
    let client_verifier =
        WebPkiClientVerifier::builder_with_provider(roots.root_store(), Arc::clone(&provider))
            .build()
            .map_err(|source| PkiError::ClientVerifier { source })?;
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
