//! The development PKI: one CA in a folder, issuing hub, agency, operator and administrator credentials as PEM files.
//!
//! Keys are Ed25519 unless a PKI is made with ECDSA P-256
//! ([`init_dev_pki_with_key_algorithm`]), which systems whose TLS stack has no
//! Ed25519 need (gRPC's C core, for one). One agency may also be issued a key
//! of the other algorithm than its CA's, so both kinds live under one CA.
//!
//! Layout of a PKI folder:
//! ```text
//! ca.crt  ca.key  hub.crt  hub.key  ca.crl (once something is revoked)
//! agencies/<code>.crt  agencies/<code>.key
//! operators/<name>.crt operators/<name>.key          (read-only)
//! administrators/<name>.crt administrators/<name>.key (read, and act on dead letters)
//! ```
//! Key files are PKCS#8 PEM with mode 0600 on Unix.

use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber, SignatureAlgorithm, PKCS_ECDSA_P256_SHA256,
    PKCS_ED25519,
};
use ring::rand::SecureRandom;
use time::OffsetDateTime;
use truc_domain::{KeyAlgorithm, SigningKey};

use crate::credentials::read_file;
use crate::identity::{hex_lower, parse_certificate, PeerRole};
use crate::tls::HUB_SERVER_NAME;
use crate::{Credentials, PkiError, TrustRoots};

/// Certificates start this far in the past so that a peer whose clock runs
/// slightly behind does not reject a certificate issued a moment ago.
const CLOCK_SKEW_ALLOWANCE: time::Duration = time::Duration::minutes(5);

/// X.520 upper bound on a common name, in characters (RFC 5280 `ub-common-name`).
/// Some agency display names are longer; the name in the certificate is only
/// a label, the identity is in the SAN URI.
const COMMON_NAME_CHARS_MAX: usize = 64;

/// Random serial length; 16 bytes keeps collisions out of the question while
/// staying under RFC 5280's 20-byte limit.
const SERIAL_BYTES: usize = 16;

const CA_COMMON_NAME: &str = "truc development CA";
/// Hex characters of the CA serial appended to its common name.
const CA_NAME_SUFFIX_HEX_CHARS: usize = 8;
const ORGANIZATION_NAME: &str = "truc development PKI";

/// Paths inside a PKI folder. The per-agency and per-operator path methods do
/// not check the name; the issuing and loading functions do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PkiPaths {
    pub dir: PathBuf,
}

impl PkiPaths {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        PkiPaths { dir: dir.into() }
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }

    pub fn hub_cert(&self) -> PathBuf {
        self.dir.join("hub.crt")
    }

    pub fn hub_key(&self) -> PathBuf {
        self.dir.join("hub.key")
    }

    /// The CA's revocation list, once [`write_crl`] has made one.
    pub fn crl(&self) -> PathBuf {
        self.dir.join("ca.crl")
    }

    pub fn agencies_dir(&self) -> PathBuf {
        self.dir.join("agencies")
    }

    pub fn operators_dir(&self) -> PathBuf {
        self.dir.join("operators")
    }

    pub fn administrators_dir(&self) -> PathBuf {
        self.dir.join("administrators")
    }

    pub fn administrator_cert(&self, name: &str) -> PathBuf {
        self.administrators_dir().join(format!("{name}.crt"))
    }

    pub fn administrator_key(&self, name: &str) -> PathBuf {
        self.administrators_dir().join(format!("{name}.key"))
    }

    pub fn administrator_credentials(&self, name: &str) -> Result<Credentials, PkiError> {
        check_file_name("administrator name", name)?;
        Credentials::load(
            &self.administrator_cert(name),
            &self.administrator_key(name),
        )
    }

    pub fn agency_cert(&self, code: &str) -> PathBuf {
        self.agencies_dir().join(format!("{code}.crt"))
    }

    pub fn agency_key(&self, code: &str) -> PathBuf {
        self.agencies_dir().join(format!("{code}.key"))
    }

    pub fn operator_cert(&self, name: &str) -> PathBuf {
        self.operators_dir().join(format!("{name}.crt"))
    }

    pub fn operator_key(&self, name: &str) -> PathBuf {
        self.operators_dir().join(format!("{name}.key"))
    }

    pub fn agency_credentials(&self, code: &str) -> Result<Credentials, PkiError> {
        check_file_name("agency code", code)?;
        Credentials::load(&self.agency_cert(code), &self.agency_key(code))
    }

    pub fn operator_credentials(&self, name: &str) -> Result<Credentials, PkiError> {
        check_file_name("operator name", name)?;
        Credentials::load(&self.operator_cert(name), &self.operator_key(name))
    }

    pub fn hub_credentials(&self) -> Result<Credentials, PkiError> {
        Credentials::load(&self.hub_cert(), &self.hub_key())
    }

    /// The roots every party of this PKI trusts: its CA certificate.
    pub fn trust_roots(&self) -> Result<TrustRoots, PkiError> {
        TrustRoots::from_pem_file(&self.ca_cert())
    }
}

/// Refuses names that would escape or corrupt the PKI folder when used as a
/// file name. The format of agency codes is the caller's business.
fn check_file_name(field: &'static str, value: &str) -> Result<(), PkiError> {
    let reason = if value.is_empty() {
        Some("it is empty")
    } else if value.contains('/') {
        Some("it contains '/'")
    } else if value.contains('\\') {
        Some("it contains '\\'")
    } else if value.contains("..") {
        Some("it contains \"..\"")
    } else if value.contains('\0') {
        Some("it contains NUL")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(PkiError::UnsafeName {
            field,
            value: value.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// The validity window of a certificate issued now for `validity`.
fn window_from_now(
    validity: std::time::Duration,
) -> Result<(OffsetDateTime, OffsetDateTime), PkiError> {
    let now = OffsetDateTime::now_utc();
    let validity = time::Duration::try_from(validity).map_err(|_| PkiError::Validity {
        reason: format!("{validity:?} is too long to represent"),
    })?;
    let not_after = now
        .checked_add(validity)
        .ok_or_else(|| PkiError::Validity {
            reason: format!("now + {validity} is past the end of time"),
        })?;
    Ok((now - CLOCK_SKEW_ALLOWANCE, not_after))
}

/// DER prefix of an RFC 8410 (PKCS#8 v1) Ed25519 private key: SEQUENCE {
/// version 0, AlgorithmIdentifier id-Ed25519, OCTET STRING { OCTET STRING
/// (32-byte seed) } }. The 32-byte seed follows.
const ED25519_PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
const ED25519_SEED_BYTES: usize = 32;

/// rcgen's name for the algorithm a key of `key_algorithm` signs certificates with.
fn rcgen_algorithm(key_algorithm: KeyAlgorithm) -> &'static SignatureAlgorithm {
    match key_algorithm {
        KeyAlgorithm::Ed25519 => &PKCS_ED25519,
        KeyAlgorithm::EcdsaP256Sha256 => &PKCS_ECDSA_P256_SHA256,
    }
}

/// Generates a key of `key_algorithm`, written as PKCS#8 v1.
fn generate_key(what: &str, key_algorithm: KeyAlgorithm) -> Result<KeyPair, PkiError> {
    match key_algorithm {
        KeyAlgorithm::Ed25519 => generate_ed25519_key(what),
        KeyAlgorithm::EcdsaP256Sha256 => generate_p256_key(what),
    }
}

/// A P-256 key as ring writes it: PKCS#8 v1 whose ECPrivateKey carries the
/// public key, which OpenSSL, Go, Python's `cryptography` and ring all read.
fn generate_p256_key(what: &str) -> Result<KeyPair, PkiError> {
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &ring::rand::SystemRandom::new(),
    )
    .map_err(|_| PkiError::Random {
        what: format!("a key for {what}"),
    })?;
    KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8.as_ref().into(), &PKCS_ECDSA_P256_SHA256).map_err(
        |source| PkiError::Generate {
            what: format!("ECDSA P-256 key for {what}"),
            source,
        },
    )
}

/// Generates an Ed25519 key written as PKCS#8 v1. ring would produce v2 (with
/// the public key appended), which OpenSSL 3.0 and Go refuse to load; v1 is
/// read by those and by ring's `from_pkcs8_maybe_unchecked`, which is what
/// rustls and the envelope signer use.
fn generate_ed25519_key(what: &str) -> Result<KeyPair, PkiError> {
    let mut pkcs8 = Vec::with_capacity(ED25519_PKCS8_V1_PREFIX.len() + ED25519_SEED_BYTES);
    pkcs8.extend_from_slice(&ED25519_PKCS8_V1_PREFIX);
    pkcs8.resize(ED25519_PKCS8_V1_PREFIX.len() + ED25519_SEED_BYTES, 0);
    ring::rand::SystemRandom::new()
        .fill(&mut pkcs8[ED25519_PKCS8_V1_PREFIX.len()..])
        .map_err(|_| PkiError::Random {
            what: format!("a key for {what}"),
        })?;
    KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8.as_slice().into(), &PKCS_ED25519).map_err(
        |source| PkiError::Generate {
            what: format!("Ed25519 key for {what}"),
            source,
        },
    )
}

fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; SERIAL_BYTES];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| PkiError::Random {
            what: "a serial number".to_owned(),
        })?;
    // Clear the sign bit (serials are positive) and set the next one so the
    // DER integer always has its full length and no leading zero byte.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

fn truncated_common_name(name: &str) -> String {
    name.chars().take(COMMON_NAME_CHARS_MAX).collect()
}

fn uri_san(uri: String) -> Result<SanType, PkiError> {
    let text = uri.clone();
    Ia5String::try_from(uri)
        .map(SanType::URI)
        .map_err(|source| PkiError::Generate {
            what: format!("SAN URI {text:?} (must be ASCII)"),
            source,
        })
}

/// Parameters shared by every end-entity certificate.
fn end_entity_params(
    common_name: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    extended_key_usage: ExtendedKeyUsagePurpose,
) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, truncated_common_name(common_name));
    params
        .distinguished_name
        .push(DnType::OrganizationName, ORGANIZATION_NAME);
    params.not_before = not_before;
    params.not_after = not_after;
    params.serial_number = Some(random_serial()?);
    params.is_ca = IsCa::ExplicitNoCa;
    // digitalSignature covers both the TLS handshake and envelope signatures,
    // which use the same key.
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![extended_key_usage];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

/// A certificate and its key, ready to be written as PEM.
struct IssuedPem {
    cert_pem: String,
    key_pem: String,
}

fn sign_end_entity(
    what: &str,
    params: CertificateParams,
    ca: &Issuer<'_, KeyPair>,
    key_algorithm: KeyAlgorithm,
) -> Result<IssuedPem, PkiError> {
    let key = generate_key(what, key_algorithm)?;
    let cert = params
        .signed_by(&key, ca)
        .map_err(|source| PkiError::Generate {
            what: format!("certificate for {what}"),
            source,
        })?;
    Ok(IssuedPem {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn issue_agency_pem(
    ca: &Issuer<'_, KeyPair>,
    code: &str,
    name: &str,
    window: (OffsetDateTime, OffsetDateTime),
    key_algorithm: KeyAlgorithm,
) -> Result<IssuedPem, PkiError> {
    let (not_before, not_after) = window;
    let common_name = if name.trim().is_empty() { code } else { name };
    let mut params = end_entity_params(
        common_name,
        not_before,
        not_after,
        ExtendedKeyUsagePurpose::ClientAuth,
    )?;
    params.subject_alt_names = vec![uri_san(
        PeerRole::Agency {
            code: code.to_owned(),
        }
        .uri(),
    )?];
    sign_end_entity(&format!("agency {code}"), params, ca, key_algorithm)
}

fn issue_operator_pem(
    ca: &Issuer<'_, KeyPair>,
    name: &str,
    window: (OffsetDateTime, OffsetDateTime),
    key_algorithm: KeyAlgorithm,
) -> Result<IssuedPem, PkiError> {
    let role = PeerRole::Operator {
        name: name.to_owned(),
    };
    issue_person_pem(ca, name, &role, window, key_algorithm)
}

/// A client certificate for a person's role (operator or administrator).
fn issue_person_pem(
    ca: &Issuer<'_, KeyPair>,
    name: &str,
    role: &PeerRole,
    window: (OffsetDateTime, OffsetDateTime),
    key_algorithm: KeyAlgorithm,
) -> Result<IssuedPem, PkiError> {
    let (not_before, not_after) = window;
    let mut params = end_entity_params(
        name,
        not_before,
        not_after,
        ExtendedKeyUsagePurpose::ClientAuth,
    )?;
    params.subject_alt_names = vec![uri_san(role.uri())?];
    sign_end_entity(&role.to_string(), params, ca, key_algorithm)
}

fn issue_hub_pem(
    ca: &Issuer<'_, KeyPair>,
    window: (OffsetDateTime, OffsetDateTime),
    key_algorithm: KeyAlgorithm,
) -> Result<IssuedPem, PkiError> {
    let (not_before, not_after) = window;
    let mut params = end_entity_params(
        HUB_SERVER_NAME,
        not_before,
        not_after,
        ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    let dns = |name: &str| {
        Ia5String::try_from(name)
            .map(SanType::DnsName)
            .map_err(|source| PkiError::Generate {
                what: format!("SAN DNS name {name:?}"),
                source,
            })
    };
    params.subject_alt_names = vec![
        dns(HUB_SERVER_NAME)?,
        dns("localhost")?,
        SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        uri_san(PeerRole::Hub.uri())?,
    ];
    sign_end_entity("the hub", params, ca, key_algorithm)
}

/// Writes through a temporary file and a rename so that a reader never sees
/// half a PEM file and a re-issue replaces the old file in one step. No fsync:
/// these are development files that can always be re-issued.
fn write_pem_file(path: &Path, contents: &str, is_secret: bool) -> Result<(), PkiError> {
    let io_error = |action: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| PkiError::Io {
            action,
            path,
            source,
        }
    };
    let mut temporary_name = path.as_os_str().to_owned();
    temporary_name.push(".tmp");
    let temporary_path = PathBuf::from(temporary_name);

    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if is_secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&temporary_path)
        .map_err(io_error("create", &temporary_path))?;
    // `mode` applies only when the file is created; a leftover temporary file
    // keeps its old permissions unless they are set again.
    #[cfg(unix)]
    if is_secret {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(io_error("set permissions on", &temporary_path))?;
    }
    #[cfg(not(unix))]
    let _ = is_secret;
    file.write_all(contents.as_bytes())
        .map_err(io_error("write", &temporary_path))?;
    drop(file);
    fs::rename(&temporary_path, path).map_err(io_error("rename into place", path))
}

fn create_dir(path: &Path) -> Result<(), PkiError> {
    fs::create_dir_all(path).map_err(|source| PkiError::Io {
        action: "create directory",
        path: path.to_owned(),
        source,
    })
}

fn write_pair(cert_path: &Path, key_path: &Path, issued: &IssuedPem) -> Result<(), PkiError> {
    // Key first: a certificate on disk without its key would fail to load
    // anyway, and a fresh key without a certificate is harmless.
    write_pem_file(key_path, &issued.key_pem, true)?;
    write_pem_file(cert_path, &issued.cert_pem, false)
}

/// The CA of an existing PKI folder, loaded to issue more certificates.
struct LoadedCa {
    issuer: Issuer<'static, KeyPair>,
    not_after: OffsetDateTime,
    /// What the CA's own key is; certificates it issues use the same unless told otherwise.
    key_algorithm: KeyAlgorithm,
}

impl LoadedCa {
    fn load(paths: &PkiPaths) -> Result<Self, PkiError> {
        let cert_path = paths.ca_cert();
        let key_path = paths.ca_key();
        let cert_pem = read_file(&cert_path)?;
        let cert_der = crate::credentials::read_pem_certificates(&cert_pem)
            .map_err(|reason| PkiError::Pem {
                path: cert_path.clone(),
                reason: reason.to_string(),
            })?
            .remove(0);
        let key_pem = read_file(&key_path)?;
        let key_der =
            crate::credentials::read_pem_pkcs8_key(&key_pem).map_err(|reason| PkiError::Pem {
                path: key_path.clone(),
                reason: reason.to_string(),
            })?;
        let private_key_error = |reason: String| PkiError::PrivateKey {
            path: key_path.clone(),
            reason,
        };
        let signing_key = SigningKey::from_pkcs8(&key_der)
            .map_err(|error| private_key_error(error.to_string()))?;
        let key_algorithm = signing_key.algorithm();
        let key = KeyPair::from_pkcs8_der_and_sign_algo(
            &key_der.as_slice().into(),
            rcgen_algorithm(key_algorithm),
        )
        .map_err(|error| private_key_error(error.to_string()))?;
        let pem_error = |reason: String| PkiError::Pem {
            path: cert_path.clone(),
            reason,
        };
        let ca_public_key = crate::identity::certificate_public_key(&cert_der)
            .map_err(|error| pem_error(error.to_string()))?;
        if signing_key.public_key() != ca_public_key {
            return Err(PkiError::KeyMismatch {
                cert_path: cert_path.clone(),
                key_path,
            });
        }
        let not_after_unix = parse_certificate(&cert_der)
            .map_err(|error| pem_error(error.to_string()))?
            .validity()
            .not_after
            .timestamp();
        let not_after = OffsetDateTime::from_unix_timestamp(not_after_unix)
            .map_err(|error| pem_error(format!("CA notAfter out of range: {error}")))?;
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)
            .map_err(|error| pem_error(format!("not usable as an issuer: {error}")))?;
        Ok(LoadedCa {
            issuer,
            not_after,
            key_algorithm,
        })
    }

    /// A window from now for `validity`, cut at the CA's own expiry: a
    /// certificate cannot be verified past its issuer's notAfter anyway.
    fn window_from_now(
        &self,
        validity: std::time::Duration,
    ) -> Result<(OffsetDateTime, OffsetDateTime), PkiError> {
        let (not_before, not_after) = window_from_now(validity)?;
        Ok((not_before, not_after.min(self.not_after)))
    }
}

/// Creates a new CA, a hub certificate (DNS SANs `truc-hub` and `localhost`,
/// IP SANs 127.0.0.1 and ::1, URI `urn:truc:hub`), and credentials for each
/// agency `(code, display name)` and operator, writing PEM files into `dir`
/// (created if missing). The CA is valid for `validity`, like everything it
/// issues here. Every key is Ed25519.
///
/// Refuses if `dir` already holds `ca.key` or `ca.crt`: a CA is never
/// overwritten silently, since every credential issued by it would stop working.
pub fn init_dev_pki(
    dir: &Path,
    agencies: &[(String, String)],
    operators: &[String],
    validity: std::time::Duration,
) -> Result<PkiPaths, PkiError> {
    init_dev_pki_with_key_algorithm(dir, agencies, operators, validity, KeyAlgorithm::Ed25519)
}

/// [`init_dev_pki`] with every key (CA, hub, agencies, operators) of
/// `key_algorithm`. A TLS client that cannot use Ed25519 must both check the
/// hub's chain and its handshake signature, so P-256 there means P-256 for
/// the CA and the hub too.
pub fn init_dev_pki_with_key_algorithm(
    dir: &Path,
    agencies: &[(String, String)],
    operators: &[String],
    validity: std::time::Duration,
    key_algorithm: KeyAlgorithm,
) -> Result<PkiPaths, PkiError> {
    let window = window_from_now(validity)?;
    init_dev_pki_in(dir, agencies, operators, window, key_algorithm)
}

/// [`init_dev_pki`] with every certificate valid since `valid_since_unix_s`
/// (when that is earlier than now) as well: for replays of past years, whose
/// documents are accepted at their historical times and whose archives check
/// each sender's certificate at that time.
pub fn init_dev_pki_valid_since(
    dir: &Path,
    agencies: &[(String, String)],
    operators: &[String],
    valid_since_unix_s: i64,
    validity: std::time::Duration,
) -> Result<PkiPaths, PkiError> {
    let (not_before, not_after) = window_from_now(validity)?;
    let since = OffsetDateTime::from_unix_timestamp(valid_since_unix_s).map_err(|error| {
        PkiError::Validity {
            reason: format!("valid since {valid_since_unix_s}: {error}"),
        }
    })?;
    init_dev_pki_in(
        dir,
        agencies,
        operators,
        (not_before.min(since), not_after),
        KeyAlgorithm::Ed25519,
    )
}

fn init_dev_pki_in(
    dir: &Path,
    agencies: &[(String, String)],
    operators: &[String],
    window: (OffsetDateTime, OffsetDateTime),
    key_algorithm: KeyAlgorithm,
) -> Result<PkiPaths, PkiError> {
    for (code, _name) in agencies {
        check_file_name("agency code", code)?;
    }
    for name in operators {
        check_file_name("operator name", name)?;
    }
    let paths = PkiPaths::new(dir);
    for existing in [paths.ca_key(), paths.ca_cert()] {
        if existing.exists() {
            return Err(PkiError::CaAlreadyExists { path: existing });
        }
    }
    let (not_before, not_after) = window;

    let ca_key = generate_key("the CA", key_algorithm)?;
    let mut ca_params = CertificateParams::default();
    // A random suffix keeps two development CAs apart: certificate paths are
    // built by matching issuer names, so two CAs with one name would make a
    // foreign certificate fail as a bad signature instead of an unknown issuer.
    let ca_serial = random_serial()?;
    let ca_serial_hex = hex_lower(&ca_serial.to_bytes());
    let ca_common_name = format!(
        "{CA_COMMON_NAME} {}",
        &ca_serial_hex[ca_serial_hex.len() - CA_NAME_SUFFIX_HEX_CHARS..]
    );
    ca_params
        .distinguished_name
        .push(DnType::CommonName, ca_common_name);
    ca_params
        .distinguished_name
        .push(DnType::OrganizationName, ORGANIZATION_NAME);
    ca_params.not_before = not_before;
    ca_params.not_after = not_after;
    ca_params.serial_number = Some(ca_serial);
    // Path length 0: this CA signs end-entity certificates only, never another CA.
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .map_err(|source| PkiError::Generate {
            what: "CA certificate".to_owned(),
            source,
        })?;

    create_dir(&paths.dir)?;
    write_pair(
        &paths.ca_cert(),
        &paths.ca_key(),
        &IssuedPem {
            cert_pem: ca_cert.pem(),
            key_pem: ca_key.serialize_pem(),
        },
    )?;
    let ca = Issuer::new(ca_params, ca_key);

    let hub = issue_hub_pem(&ca, window, key_algorithm)?;
    write_pair(&paths.hub_cert(), &paths.hub_key(), &hub)?;

    if !agencies.is_empty() {
        create_dir(&paths.agencies_dir())?;
    }
    for (code, name) in agencies {
        let issued = issue_agency_pem(&ca, code, name, window, key_algorithm)?;
        write_pair(&paths.agency_cert(code), &paths.agency_key(code), &issued)?;
    }
    if !operators.is_empty() {
        create_dir(&paths.operators_dir())?;
    }
    for name in operators {
        let issued = issue_operator_pem(&ca, name, window, key_algorithm)?;
        write_pair(
            &paths.operator_cert(name),
            &paths.operator_key(name),
            &issued,
        )?;
    }
    Ok(paths)
}

/// Issues (or re-issues, replacing the files) one agency's credentials with
/// the CA already in the folder, with a key of the CA's algorithm. The
/// certificate ends no later than the CA.
pub fn issue_agency(
    paths: &PkiPaths,
    code: &str,
    name: &str,
    validity: std::time::Duration,
) -> Result<(), PkiError> {
    issue_agencies(paths, &[(code.to_owned(), name.to_owned())], validity)
}

/// Issues many agencies' credentials with keys of the CA's algorithm,
/// loading the CA once. All codes are checked before any file is written.
pub fn issue_agencies(
    paths: &PkiPaths,
    agencies: &[(String, String)],
    validity: std::time::Duration,
) -> Result<(), PkiError> {
    issue_agencies_inner(paths, agencies, validity, None)
}

/// [`issue_agencies`] with keys of `key_algorithm`, whatever the CA's: an
/// ECDSA P-256 agency under an Ed25519 CA, or the other way round.
pub fn issue_agencies_with_key_algorithm(
    paths: &PkiPaths,
    agencies: &[(String, String)],
    validity: std::time::Duration,
    key_algorithm: KeyAlgorithm,
) -> Result<(), PkiError> {
    issue_agencies_inner(paths, agencies, validity, Some(key_algorithm))
}

fn issue_agencies_inner(
    paths: &PkiPaths,
    agencies: &[(String, String)],
    validity: std::time::Duration,
    key_algorithm: Option<KeyAlgorithm>,
) -> Result<(), PkiError> {
    for (code, _name) in agencies {
        check_file_name("agency code", code)?;
    }
    let ca = LoadedCa::load(paths)?;
    let key_algorithm = key_algorithm.unwrap_or(ca.key_algorithm);
    let window = ca.window_from_now(validity)?;
    create_dir(&paths.agencies_dir())?;
    for (code, name) in agencies {
        let issued = issue_agency_pem(&ca.issuer, code, name, window, key_algorithm)?;
        write_pair(&paths.agency_cert(code), &paths.agency_key(code), &issued)?;
    }
    Ok(())
}

/// Issues (or re-issues) one operator's credentials with the CA already in
/// the folder, with a key of the CA's algorithm.
pub fn issue_operator(
    paths: &PkiPaths,
    name: &str,
    validity: std::time::Duration,
) -> Result<(), PkiError> {
    check_file_name("operator name", name)?;
    let ca = LoadedCa::load(paths)?;
    let window = ca.window_from_now(validity)?;
    create_dir(&paths.operators_dir())?;
    let issued = issue_operator_pem(&ca.issuer, name, window, ca.key_algorithm)?;
    write_pair(
        &paths.operator_cert(name),
        &paths.operator_key(name),
        &issued,
    )
}

/// Issues (or re-issues) administrators' credentials with the CA already in
/// the folder, with keys of the CA's algorithm. An administrator reads
/// like an operator and also resends and cancels dead letters; keep these
/// apart from the operators' read-only certificates.
pub fn issue_administrators(
    paths: &PkiPaths,
    names: &[String],
    validity: std::time::Duration,
) -> Result<(), PkiError> {
    for name in names {
        check_file_name("administrator name", name)?;
    }
    let ca = LoadedCa::load(paths)?;
    let window = ca.window_from_now(validity)?;
    create_dir(&paths.administrators_dir())?;
    for name in names {
        let role = PeerRole::Administrator { name: name.clone() };
        let issued = issue_person_pem(&ca.issuer, name, &role, window, ca.key_algorithm)?;
        write_pair(
            &paths.administrator_cert(name),
            &paths.administrator_key(name),
            &issued,
        )?;
    }
    Ok(())
}

/// Re-issues the hub's credentials with the CA already in the folder, with a
/// key of the CA's algorithm.
pub fn issue_hub(paths: &PkiPaths, validity: std::time::Duration) -> Result<(), PkiError> {
    let ca = LoadedCa::load(paths)?;
    let key_algorithm = ca.key_algorithm;
    issue_hub_with(paths, &ca, validity, key_algorithm)
}

/// [`issue_hub`] with a key of `key_algorithm`. A P-256 hub under an Ed25519
/// CA serves clients that cannot sign or check Ed25519 in the handshake (gRPC's
/// C core) beside Ed25519 agencies, without a new CA.
pub fn issue_hub_with_key_algorithm(
    paths: &PkiPaths,
    validity: std::time::Duration,
    key_algorithm: KeyAlgorithm,
) -> Result<(), PkiError> {
    let ca = LoadedCa::load(paths)?;
    issue_hub_with(paths, &ca, validity, key_algorithm)
}

fn issue_hub_with(
    paths: &PkiPaths,
    ca: &LoadedCa,
    validity: std::time::Duration,
    key_algorithm: KeyAlgorithm,
) -> Result<(), PkiError> {
    let window = ca.window_from_now(validity)?;
    let issued = issue_hub_pem(&ca.issuer, window, key_algorithm)?;
    write_pair(&paths.hub_cert(), &paths.hub_key(), &issued)
}

/// Issues an agency certificate with an explicit validity window, for tests of
/// expired or not-yet-valid certificates. Returns `(certificate PEM, key PEM)`
/// and writes nothing; the window is used as given, even past the CA's expiry.
pub fn issue_agency_pem_with_window(
    paths: &PkiPaths,
    code: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<(String, String), PkiError> {
    check_file_name("agency code", code)?;
    let ca = LoadedCa::load(paths)?;
    let issued = issue_agency_pem(
        &ca.issuer,
        code,
        code,
        (not_before, not_after),
        ca.key_algorithm,
    )?;
    Ok((issued.cert_pem, issued.key_pem))
}

/// Writes a certificate revocation list signed by the folder's CA, listing
/// the given certificates (PEM or DER, each the certificate itself), to
/// `paths.crl()`, replacing any earlier list in one rename. `crl_number`
/// must grow with every list the CA publishes. The list is valid for a day
/// from now: a development CA re-issues it whenever it changes.
pub fn write_crl(
    paths: &PkiPaths,
    revoked_certificates_der: &[Vec<u8>],
    crl_number: u64,
) -> Result<PathBuf, PkiError> {
    let ca = LoadedCa::load(paths)?;
    let now = OffsetDateTime::now_utc();
    let mut revoked_certs = Vec::with_capacity(revoked_certificates_der.len());
    for der in revoked_certificates_der {
        let certificate = parse_certificate(der)?;
        revoked_certs.push(rcgen::RevokedCertParams {
            serial_number: SerialNumber::from_slice(certificate.raw_serial()),
            revocation_time: now - CLOCK_SKEW_ALLOWANCE,
            reason_code: Some(rcgen::RevocationReason::KeyCompromise),
            invalidity_date: None,
        });
    }
    let params = rcgen::CertificateRevocationListParams {
        this_update: now - CLOCK_SKEW_ALLOWANCE,
        next_update: now + time::Duration::days(1),
        crl_number: SerialNumber::from(crl_number),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    };
    let crl = params
        .signed_by(&ca.issuer)
        .map_err(|source| PkiError::Generate {
            what: "certificate revocation list".to_owned(),
            source,
        })?;
    let pem = crl.pem().map_err(|source| PkiError::Generate {
        what: "certificate revocation list PEM".to_owned(),
        source,
    })?;
    let path = paths.crl();
    write_pem_file(&path, &pem, false)?;
    Ok(path)
}
