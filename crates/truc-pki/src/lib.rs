//! truc's development PKI, certificate identities and rustls configurations.
//!
//! Every key is Ed25519. A certificate's role lives in exactly one SAN URI
//! (`urn:truc:agency:<code>`, `urn:truc:operator:<name>`, `urn:truc:hub`);
//! [`peer_identity`] reads it back. The hub requires client certificates over
//! TLS 1.3 ([`server_tls_config`]); agencies and operators present theirs
//! ([`client_tls_config`]). The agency's certificate key also signs
//! envelopes, so [`TrustRoots::verify_certificate`] checks a certificate that
//! travels with an envelope, outside any TLS session.
//!
//! This crate knows nothing of agency code formats or envelopes: callers
//! validate codes; this crate only refuses names unsafe as file names.

mod credentials;
mod dev_pki;
mod error;
mod identity;
mod tls;
mod trust;

#[cfg(test)]
mod tests;

pub use credentials::Credentials;
pub use dev_pki::{
    init_dev_pki, issue_agencies, issue_agency, issue_agency_pem_with_window, issue_hub,
    issue_operator, PkiPaths,
};
pub use error::PkiError;
pub use identity::{
    certificate_validity, ed25519_public_key, peer_identity, CertificateValidity, PeerIdentity,
    PeerRole, ED25519_PUBLIC_KEY_BYTES,
};
pub use tls::{client_tls_config, server_tls_config, HUB_SERVER_NAME};
pub use trust::TrustRoots;
