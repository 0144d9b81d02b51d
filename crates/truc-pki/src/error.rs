//! The one error type of this crate; every variant names the file or field concerned and why.

use std::path::PathBuf;

/// Everything that can go wrong while creating, loading or checking certificates.
#[derive(thiserror::Error, Debug)]
pub enum PkiError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being attempted ("read", "write", "create directory", ...).
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: {reason}")]
    Pem { path: PathBuf, reason: String },

    #[error("trust roots: {reason}")]
    TrustRoots { reason: String },

    #[error("certificate is not valid X.509 DER: {reason}")]
    CertificateParse { reason: String },

    #[error("certificate subject alternative name: {reason}")]
    Identity { reason: String },

    #[error("certificate public key: {reason}")]
    PublicKey { reason: String },

    #[error("certificate rejected by the trust roots: {reason}")]
    CertificateRejected { reason: String },

    #[error("private key in {key_path} does not belong to the certificate in {cert_path}")]
    KeyMismatch {
        cert_path: PathBuf,
        key_path: PathBuf,
    },

    #[error("private key in {path} is not a usable Ed25519 or ECDSA P-256 PKCS#8 key: {reason}")]
    PrivateKey { path: PathBuf, reason: String },

    #[error("{field} {value:?} is unsafe as a file name: {reason}")]
    UnsafeName {
        field: &'static str,
        value: String,
        reason: &'static str,
    },

    #[error("refusing to create a new CA: {path} already exists")]
    CaAlreadyExists { path: PathBuf },

    #[error("validity: {reason}")]
    Validity { reason: String },

    #[error("the system random source failed while drawing {what}")]
    Random { what: String },

    #[error("cannot generate {what}: {source}")]
    Generate {
        what: String,
        #[source]
        source: rcgen::Error,
    },

    #[error("TLS configuration ({what}): {source}")]
    Tls {
        what: &'static str,
        #[source]
        source: rustls::Error,
    },

    #[error("TLS client certificate verifier: {source}")]
    ClientVerifier {
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
}
