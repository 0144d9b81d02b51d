//! The CA certificates a party trusts, and verification of a lone certificate against them.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::RootCertStore;

use crate::credentials::{read_file, read_pem_certificates};
use crate::identity::{peer_identity, PeerIdentity};
use crate::PkiError;

/// A set of trusted CA certificates. Cloning is cheap: the store is shared.
#[derive(Clone, Debug)]
pub struct TrustRoots {
    root_store: Arc<RootCertStore>,
    /// The CA certificates as read: a root store keeps only what verification
    /// needs, and operators also want to know when each CA expires.
    certificates: Arc<Vec<CertificateDer<'static>>>,
    /// Lone certificates already verified, shared by clones.
    verified: Arc<VerifiedCache>,
}

/// Most certificates remembered as verified; past it the memory starts over.
const VERIFIED_CACHE_MAX: usize = 4_096;

/// Certificates that passed `verify_certificate`, by SHA-256 of their DER, so
/// that a node checks each sender's chain once rather than on every delivery.
/// An entry is trusted only within the certificate's own validity.
#[derive(Debug, Default)]
struct VerifiedCache {
    entries: Mutex<HashMap<[u8; 32], PeerIdentity>>,
}

impl VerifiedCache {
    fn get(&self, digest: &[u8; 32], now_unix: i64) -> Option<PeerIdentity> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(digest)
            .filter(|identity| {
                (identity.not_before_unix..=identity.not_after_unix).contains(&now_unix)
            })
            .cloned()
    }

    fn insert(&self, digest: [u8; 32], identity: PeerIdentity) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= VERIFIED_CACHE_MAX {
            entries.clear();
        }
        entries.insert(digest, identity);
    }
}

impl TrustRoots {
    /// Parses every `CERTIFICATE` block in `pem`; at least one is required.
    pub fn from_pem(pem: &[u8]) -> Result<Self, PkiError> {
        let certificates = read_pem_certificates(pem).map_err(|reason| PkiError::TrustRoots {
            reason: reason.to_string(),
        })?;
        Self::from_der_certificates(certificates)
    }

    /// Reads a PEM file of CA certificates (usually `ca.crt`).
    pub fn from_pem_file(path: &Path) -> Result<Self, PkiError> {
        let pem = read_file(path)?;
        let certificates = read_pem_certificates(&pem).map_err(|reason| PkiError::Pem {
            path: path.to_owned(),
            reason: reason.to_string(),
        })?;
        Self::from_der_certificates(certificates).map_err(|error| match error {
            PkiError::TrustRoots { reason } => PkiError::Pem {
                path: path.to_owned(),
                reason,
            },
            other => other,
        })
    }

    /// Trusts DER certificates given as bytes (an audit export carries its CA this way).
    pub fn from_der(certificates: &[Vec<u8>]) -> Result<Self, PkiError> {
        Self::from_der_certificates(
            certificates
                .iter()
                .map(|der| CertificateDer::from(der.clone()))
                .collect(),
        )
    }

    fn from_der_certificates(certificates: Vec<CertificateDer<'static>>) -> Result<Self, PkiError> {
        let mut root_store = RootCertStore::empty();
        for (index, certificate) in certificates.iter().enumerate() {
            root_store
                .add(certificate.clone())
                .map_err(|error| PkiError::TrustRoots {
                    reason: format!(
                        "certificate #{} is not a usable trust anchor: {error}",
                        index + 1
                    ),
                })?;
        }
        Ok(TrustRoots {
            root_store: Arc::new(root_store),
            certificates: Arc::new(certificates),
            verified: Arc::default(),
        })
    }

    /// The same roots with a memory of verified certificates of its own, as a
    /// separate node process would have.
    pub fn with_own_cache(&self) -> TrustRoots {
        TrustRoots {
            verified: Arc::default(),
            ..self.clone()
        }
    }

    /// The CA certificates (DER), in the order they were read.
    pub fn certificates_der(&self) -> impl Iterator<Item = &[u8]> {
        self.certificates
            .iter()
            .map(|certificate| certificate.as_ref())
    }

    /// The shared rustls root store, for building TLS configurations.
    pub fn root_store(&self) -> Arc<RootCertStore> {
        Arc::clone(&self.root_store)
    }

    /// Verifies that `cert_der` chains directly to these roots, is an
    /// end-entity certificate, is valid at `now` and is usable for client
    /// authentication, then returns its identity. A recipient uses this on the
    /// sender certificate that travels with an envelope, where no TLS session
    /// has vouched for it.
    pub fn verify_certificate(
        &self,
        cert_der: &[u8],
        now: SystemTime,
    ) -> Result<PeerIdentity, PkiError> {
        self.verify_for(cert_der, now, webpki::KeyUsage::client_auth(), true)
    }

    /// [`TrustRoots::verify_certificate`] for the hub's own (server)
    /// certificate, as an offline check of what the hub signed needs.
    pub fn verify_hub_certificate(
        &self,
        cert_der: &[u8],
        now: SystemTime,
    ) -> Result<PeerIdentity, PkiError> {
        // Not cached: the cache vouches for client use only.
        self.verify_for(cert_der, now, webpki::KeyUsage::server_auth(), false)
    }

    fn verify_for(
        &self,
        cert_der: &[u8],
        now: SystemTime,
        usage: webpki::KeyUsage,
        cached: bool,
    ) -> Result<PeerIdentity, PkiError> {
        let since_epoch =
            now.duration_since(UNIX_EPOCH)
                .map_err(|_| PkiError::CertificateRejected {
                    reason: "verification time is before 1970".to_owned(),
                })?;
        let digest: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, cert_der)
            .as_ref()
            .try_into()
            .expect("SHA-256 is 32 bytes");
        let now_unix = since_epoch.as_secs() as i64;
        if cached {
            if let Some(identity) = self.verified.get(&digest, now_unix) {
                return Ok(identity);
            }
        }
        let certificate = CertificateDer::from(cert_der);
        let end_entity = webpki::EndEntityCert::try_from(&certificate).map_err(|error| {
            PkiError::CertificateRejected {
                reason: format!("not a parsable end-entity certificate: {error}"),
            }
        })?;
        // Only the CA signatures this PKI can make are accepted (Ed25519, and
        // ECDSA P-256 with SHA-256 for CAs made for systems that lack
        // Ed25519); a narrower list leaves less to go wrong.
        end_entity
            .verify_for_usage(
                &[webpki::ring::ED25519, webpki::ring::ECDSA_P256_SHA256],
                &self.root_store.roots,
                &[],
                UnixTime::since_unix_epoch(since_epoch),
                usage,
                None,
                None,
            )
            .map_err(|error| PkiError::CertificateRejected {
                reason: format!("{error:?}"),
            })?;
        let identity = peer_identity(cert_der)?;
        if cached {
            self.verified.insert(digest, identity.clone());
        }
        Ok(identity)
    }
}
