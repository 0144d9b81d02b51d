//! Who a certificate speaks for: the role in its `urn:truc:` SAN URI, and its certified public key.

use std::fmt;

use truc_domain::PublicKey;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_SIG_ED25519};

use crate::PkiError;

/// Prefix shared by every identity URI this PKI issues.
const TRUC_URI_PREFIX: &str = "urn:truc:";
const AGENCY_URI_PREFIX: &str = "urn:truc:agency:";
const OPERATOR_URI_PREFIX: &str = "urn:truc:operator:";
const ADMINISTRATOR_URI_PREFIX: &str = "urn:truc:administrator:";
const HUB_URI: &str = "urn:truc:hub";

/// The role a certificate grants its holder.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PeerRole {
    /// An agency node; `code` is the agency code exactly as written in the
    /// certificate (its format is checked by the caller, not here).
    Agency { code: String },
    /// A person or tool watching the hub: reads everything, changes nothing.
    Operator { name: String },
    /// A person administering the hub: reads like an operator, and acts on
    /// dead letters (resend, cancel).
    Administrator { name: String },
    /// The hub itself.
    Hub,
}

impl PeerRole {
    /// The SAN URI that carries this role in a certificate.
    pub fn uri(&self) -> String {
        match self {
            PeerRole::Agency { code } => format!("{AGENCY_URI_PREFIX}{code}"),
            PeerRole::Operator { name } => format!("{OPERATOR_URI_PREFIX}{name}"),
            PeerRole::Administrator { name } => format!("{ADMINISTRATOR_URI_PREFIX}{name}"),
            PeerRole::Hub => HUB_URI.to_owned(),
        }
    }

    /// Parses one `urn:truc:` URI; `None` for URIs that are not ours at all.
    fn from_uri(uri: &str) -> Option<Result<PeerRole, PkiError>> {
        if !uri.starts_with(TRUC_URI_PREFIX) {
            return None;
        }
        let parsed = if uri == HUB_URI {
            Ok(PeerRole::Hub)
        } else if let Some(code) = uri.strip_prefix(AGENCY_URI_PREFIX) {
            non_empty(uri, code).map(|code| PeerRole::Agency { code })
        } else if let Some(name) = uri.strip_prefix(OPERATOR_URI_PREFIX) {
            non_empty(uri, name).map(|name| PeerRole::Operator { name })
        } else if let Some(name) = uri.strip_prefix(ADMINISTRATOR_URI_PREFIX) {
            non_empty(uri, name).map(|name| PeerRole::Administrator { name })
        } else {
            Err(PkiError::Identity {
                reason: format!(
                    "URI {uri:?} has an unknown truc role (expected {AGENCY_URI_PREFIX}<code>, \
                     {OPERATOR_URI_PREFIX}<name>, {ADMINISTRATOR_URI_PREFIX}<name> or {HUB_URI})"
                ),
            })
        };
        Some(parsed)
    }
}

fn non_empty(uri: &str, value: &str) -> Result<String, PkiError> {
    if value.is_empty() {
        Err(PkiError::Identity {
            reason: format!("URI {uri:?} names no one after the role"),
        })
    } else {
        Ok(value.to_owned())
    }
}

impl fmt::Display for PeerRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerRole::Agency { code } => write!(f, "agency {code}"),
            PeerRole::Operator { name } => write!(f, "operator {name}"),
            PeerRole::Administrator { name } => write!(f, "administrator {name}"),
            PeerRole::Hub => f.write_str("hub"),
        }
    }
}

/// The identity read from a certificate, with the facts needed to log or
/// audit which certificate was used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    pub role: PeerRole,
    /// Serial number as lowercase hex of its DER integer bytes.
    pub serial_hex: String,
    pub not_before_unix: i64,
    pub not_after_unix: i64,
}

/// Reads the role from the certificate's SAN URI: `urn:truc:agency:<code>`,
/// `urn:truc:operator:<name>`, `urn:truc:administrator:<name>` or
/// `urn:truc:hub`. Exactly one truc URI must be
/// present; zero, several, or an unknown truc role is an error saying which.
///
/// This does not check the certificate's signature or validity window; use
/// [`crate::TrustRoots::verify_certificate`] for certificates not already
/// verified by a TLS handshake.
pub fn peer_identity(cert_der: &[u8]) -> Result<PeerIdentity, PkiError> {
    let cert = parse_certificate(cert_der)?;
    let san = cert
        .subject_alternative_name()
        .map_err(|error| PkiError::Identity {
            reason: format!("extension is malformed or repeated: {error}"),
        })?
        .ok_or_else(|| PkiError::Identity {
            reason: "extension is missing, so there is no urn:truc: URI".to_owned(),
        })?;

    let mut roles = Vec::new();
    for name in &san.value.general_names {
        if let GeneralName::URI(uri) = name {
            if let Some(role) = PeerRole::from_uri(uri) {
                roles.push(role?);
            }
        }
    }
    let role = match roles.len() {
        0 => {
            return Err(PkiError::Identity {
                reason: "no urn:truc: URI is present".to_owned(),
            })
        }
        1 => roles.remove(0),
        count => {
            return Err(PkiError::Identity {
                reason: format!("{count} urn:truc: URIs are present; exactly one is allowed"),
            })
        }
    };

    let validity = cert.validity();
    Ok(PeerIdentity {
        role,
        serial_hex: hex_lower(cert.raw_serial()),
        not_before_unix: validity.not_before.timestamp(),
        not_after_unix: validity.not_after.timestamp(),
    })
}

/// The certified public key of a certificate: Ed25519 (OID 1.3.101.112) or
/// ECDSA P-256 (id-ecPublicKey 1.2.840.10045.2.1 with the named curve
/// prime256v1 1.2.840.10045.3.1.7). Any other key type or curve is an error
/// naming it, so that a certificate whose key cannot sign envelopes is
/// refused before anything is signed or verified with it.
pub fn certificate_public_key(cert_der: &[u8]) -> Result<PublicKey, PkiError> {
    let cert = parse_certificate(cert_der)?;
    let spki = cert.public_key();
    if spki.subject_public_key.unused_bits != 0 {
        return Err(PkiError::PublicKey {
            reason: "key bit string has unused bits".to_owned(),
        });
    }
    let key_bytes: &[u8] = &spki.subject_public_key.data;
    let algorithm = &spki.algorithm.algorithm;
    let parsed = if *algorithm == OID_SIG_ED25519 {
        PublicKey::ed25519(key_bytes)
    } else if *algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|parameters| parameters.as_oid().ok());
        match curve {
            Some(curve) if curve == OID_EC_P256 => PublicKey::ecdsa_p256(key_bytes),
            Some(curve) => {
                return Err(PkiError::PublicKey {
                    reason: format!(
                        "elliptic curve is {curve}, not P-256 ({OID_EC_P256}); \
                         truc accepts Ed25519 and ECDSA P-256 keys"
                    ),
                })
            }
            None => {
                return Err(PkiError::PublicKey {
                    reason: "elliptic-curve key does not name its curve".to_owned(),
                })
            }
        }
    } else {
        return Err(PkiError::PublicKey {
            reason: format!(
                "algorithm is {algorithm}, not Ed25519 ({OID_SIG_ED25519}) or ECDSA \
                 ({OID_KEY_TYPE_EC_PUBLIC_KEY}) on P-256"
            ),
        });
    };
    parsed.map_err(|error| PkiError::PublicKey {
        reason: error.to_string(),
    })
}

/// When a certificate stops being valid, and whom it names; for expiry alerts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateValidity {
    /// The certificate's subject, e.g. `CN=truc development CA`.
    pub subject: String,
    /// Who issued it: the subject of its CA.
    pub issuer: String,
    /// `notAfter` as seconds since the Unix epoch.
    pub not_after_unix_seconds: i64,
}

/// Reads the subject and `notAfter` of a DER certificate.
pub fn certificate_validity(cert_der: &[u8]) -> Result<CertificateValidity, PkiError> {
    let certificate = parse_certificate(cert_der)?;
    Ok(CertificateValidity {
        subject: certificate.subject().to_string(),
        issuer: certificate.issuer().to_string(),
        not_after_unix_seconds: certificate.validity().not_after.timestamp(),
    })
}

/// Parses DER, refusing trailing bytes so that one byte string maps to one certificate.
pub(crate) fn parse_certificate(cert_der: &[u8]) -> Result<X509Certificate<'_>, PkiError> {
    let (rest, cert) = x509_parser::parse_x509_certificate(cert_der).map_err(|error| {
        PkiError::CertificateParse {
            reason: error.to_string(),
        }
    })?;
    if !rest.is_empty() {
        return Err(PkiError::CertificateParse {
            reason: format!("{} trailing bytes after the certificate", rest.len()),
        });
    }
    Ok(cert)
}

pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}
