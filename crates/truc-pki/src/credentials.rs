//! A party's own certificate chain and private key (Ed25519 or ECDSA P-256), loaded from PEM files.

use std::fmt;
use std::path::Path;

use rustls::pki_types::CertificateDer;
use truc_domain::{KeyAlgorithm, SigningKey};

use crate::identity::certificate_public_key;
use crate::PkiError;

/// A certificate chain (end-entity first) and its PKCS#8 private key.
#[derive(Clone)]
pub struct Credentials {
    pub cert_chain_der: Vec<Vec<u8>>,
    /// Raw PKCS#8 DER of the key (Ed25519 or ECDSA P-256); the same key signs envelopes.
    pub key_pkcs8_der: Vec<u8>,
}

impl Credentials {
    /// Loads a PEM certificate chain and a PEM PKCS#8 key, and checks
    /// that the key belongs to the first certificate so a mismatched pair is
    /// reported here, naming both files, rather than as a handshake failure.
    pub fn load(cert_pem_path: &Path, key_pem_path: &Path) -> Result<Self, PkiError> {
        let cert_pem = read_file(cert_pem_path)?;
        let cert_chain: Vec<Vec<u8>> = read_pem_certificates(&cert_pem)
            .map_err(|reason| PkiError::Pem {
                path: cert_pem_path.to_owned(),
                reason: reason.to_string(),
            })?
            .into_iter()
            .map(|certificate| certificate.to_vec())
            .collect();

        let key_pem = read_file(key_pem_path)?;
        let key_pkcs8_der = read_pem_pkcs8_key(&key_pem).map_err(|reason| PkiError::Pem {
            path: key_pem_path.to_owned(),
            reason: reason.to_string(),
        })?;

        let signing_key =
            SigningKey::from_pkcs8(&key_pkcs8_der).map_err(|error| PkiError::PrivateKey {
                path: key_pem_path.to_owned(),
                reason: error.to_string(),
            })?;
        let certificate_key =
            certificate_public_key(&cert_chain[0]).map_err(|error| PkiError::Pem {
                path: cert_pem_path.to_owned(),
                reason: error.to_string(),
            })?;
        if signing_key.public_key() != certificate_key {
            return Err(PkiError::KeyMismatch {
                cert_path: cert_pem_path.to_owned(),
                key_path: key_pem_path.to_owned(),
            });
        }

        Ok(Credentials {
            cert_chain_der: cert_chain,
            key_pkcs8_der,
        })
    }

    /// The end-entity certificate (first of the chain).
    pub fn certificate_der(&self) -> &[u8] {
        // `load` refuses an empty chain; a hand-built value must honour the same rule.
        assert!(
            !self.cert_chain_der.is_empty(),
            "Credentials must hold at least one certificate"
        );
        &self.cert_chain_der[0]
    }

    /// The key that signs envelopes and documents: the certificate's own.
    pub fn signing_key(&self) -> Result<SigningKey, PkiError> {
        SigningKey::from_pkcs8(&self.key_pkcs8_der).map_err(|error| PkiError::PrivateKey {
            path: "<in memory>".into(),
            reason: error.to_string(),
        })
    }

    /// The algorithm of the certificate's key, which every signature by it uses.
    pub fn key_algorithm(&self) -> Result<KeyAlgorithm, PkiError> {
        Ok(certificate_public_key(self.certificate_der())?.algorithm())
    }
}

impl fmt::Debug for Credentials {
    // The private key never appears in logs or panic messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("cert_chain_len", &self.cert_chain_der.len())
            .field("key_pkcs8_der", &"<redacted>")
            .finish()
    }
}

pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, PkiError> {
    std::fs::read(path).map_err(|source| PkiError::Io {
        action: "read",
        path: path.to_owned(),
        source,
    })
}

/// Why a PEM text does not hold what was asked of it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PemError {
    #[error("malformed PEM: {0}")]
    Malformed(std::io::Error),
    #[error("no CERTIFICATE block found")]
    NoCertificate,
    #[error("no PKCS#8 PRIVATE KEY block found")]
    NoKey,
    #[error("{0} PRIVATE KEY blocks found; exactly one is allowed")]
    ManyKeys(usize),
}

/// All `CERTIFICATE` blocks of a PEM text; none at all is an error.
pub(crate) fn read_pem_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certificates = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(PemError::Malformed)?;
    if certificates.is_empty() {
        return Err(PemError::NoCertificate);
    }
    Ok(certificates)
}

/// The single `PRIVATE KEY` (PKCS#8) block of a PEM text.
pub(crate) fn read_pem_pkcs8_key(pem: &[u8]) -> Result<Vec<u8>, PemError> {
    let mut keys = rustls_pemfile::pkcs8_private_keys(&mut &pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(PemError::Malformed)?;
    match keys.len() {
        0 => Err(PemError::NoKey),
        1 => Ok(keys.remove(0).secret_pkcs8_der().to_vec()),
        count => Err(PemError::ManyKeys(count)),
    }
}
