//! truc's development PKI, certificate identities and rustls configurations.
//!
//! Keys are Ed25519, or ECDSA P-256 for systems whose TLS stack lacks
//! Ed25519; both may live under one CA. A certificate's role lives in exactly
//! one SAN URI (`urn:truc:agency:<code>`, `urn:truc:operator:<name>`,
//! `urn:truc:hub`); [`peer_identity`] reads it back. The hub requires client certificates over
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
mod revocation;
mod tls;
mod trust;

#[cfg(test)]
mod tests;

pub use credentials::Credentials;
pub use dev_pki::{
    init_dev_pki, init_dev_pki_valid_since, init_dev_pki_with_key_algorithm, issue_administrators,
    issue_agencies, issue_agencies_with_key_algorithm, issue_agency, issue_agency_pem_with_window,
    issue_hub, issue_hub_with_key_algorithm, issue_operator, write_crl, PkiPaths,
};
pub use error::PkiError;
pub use identity::{
    certificate_public_key, certificate_validity, peer_identity, CertificateValidity, PeerIdentity,
    PeerRole,
};
pub use revocation::RevokedCertificates;
pub use tls::{
    client_tls_config, client_verifier, read_crls, server_tls_config,
    server_tls_config_with_verifier, HUB_SERVER_NAME,
};
/// The key types, re-exported so that callers naming an algorithm need not depend on the domain crate.
pub use truc_domain::{KeyAlgorithm, PublicKey};
pub use trust::TrustRoots;
