//! Tests of the development PKI against the real libraries: files on disk, ring signatures, webpki and rustls handshakes.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::string::Ia5String;
use rcgen::{CertificateParams, KeyPair, SanType};
use ring::signature::{Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ED25519};
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, ServerConnection};

use crate::credentials::read_pem_certificates;
use crate::*;

const VALIDITY: Duration = Duration::from_secs(30 * 24 * 60 * 60);
const GOVERNMENT_OFFICE: &str = "000.00.00.G22";
const NGHE_AN: &str = "000.00.00.H41";

fn sample_agencies() -> Vec<(String, String)> {
    vec![
        (
            GOVERNMENT_OFFICE.to_owned(),
            "Văn phòng Chính phủ".to_owned(),
        ),
        (
            NGHE_AN.to_owned(),
            "Ủy ban nhân dân tỉnh Nghệ An".to_owned(),
        ),
    ]
}

fn init_sample(dir: &Path) -> PkiPaths {
    init_dev_pki(dir, &sample_agencies(), &["admin".to_owned()], VALIDITY).expect("init dev PKI")
}

fn init_sample_with(dir: &Path, key_algorithm: KeyAlgorithm) -> PkiPaths {
    init_dev_pki_with_key_algorithm(
        dir,
        &sample_agencies(),
        &["admin".to_owned()],
        VALIDITY,
        key_algorithm,
    )
    .expect("init dev PKI")
}

fn first_certificate_der(pem: &str) -> Vec<u8> {
    read_pem_certificates(pem.as_bytes()).expect("PEM certificate")[0].to_vec()
}

#[test]
fn init_writes_the_documented_layout_with_private_keys_readable_only_by_owner() {
    let dir = tempfile::tempdir().unwrap();
    let paths = init_sample(dir.path());
    let mut expected_files = vec![
        paths.ca_cert(),
        paths.ca_key(),
        paths.hub_cert(),
        paths.hub_key(),
        paths.operator_cert("admin"),
        paths.operator_key("admin"),
    ];
    for (code, _) in sample_agencies() {
        expected_files.push(paths.agency_cert(&code));
        expected_files.push(paths.agency_key(&code));
    }
    for file in &expected_files {
        assert!(file.is_file(), "{} is missing", file.display());
    }
    assert_eq!(
        paths.agency_cert(NGHE_AN),
        dir.path().join("agencies").join("000.00.00.H41.crt")
    );

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for key in [
            paths.ca_key(),
            paths.hub_key(),
            paths.agency_key(GOVERNMENT_OFFICE),
            paths.operator_key("admin"),
        ] {
            let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{} has mode {mode:o}", key.display());
        }
    }
}

#[test]
fn init_refuses_a_folder_that_already_has_a_ca() {
    let dir = tempfile::tempdir().unwrap();
    let paths = init_sample(dir.path());
    let ca_before = std::fs::read(paths.ca_cert()).unwrap();

    let error = init_dev_pki(dir.path(), &[], &[], VALIDITY).unwrap_err();
    assert!(
        matches!(&error, PkiError::CaAlreadyExists { path } if path == &paths.ca_key()),
        "{error}"
    );
    assert_eq!(std::fs::read(paths.ca_cert()).unwrap(), ca_before);

    // A stray ca.crt without its key still blocks: it would be overwritten too.
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("ca.crt"), b"").unwrap();
    let error = init_dev_pki(other.path(), &[], &[], VALIDITY).unwrap_err();
    assert!(matches!(error, PkiError::CaAlreadyExists { .. }), "{error}");
}

#[test]
fn names_unsafe_as_file_names_are_refused_before_anything_is_written() {
    let cases = [
        ("", "empty"),
        ("../escape", "\"..\""),
        ("a/b", "'/'"),
        ("a\\b", "'\\'"),
        ("a\0b", "NUL"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let paths = init_sample(&dir.path().join("pki"));
    for (code, expected_reason) in cases {
        let agencies = [(code.to_owned(), "x".to_owned())];
        let fresh = dir.path().join("fresh");
        let error = init_dev_pki(&fresh, &agencies, &[], VALIDITY).unwrap_err();
        assert!(
            matches!(
                &error,
                PkiError::UnsafeName {
                    field: "agency code",
                    ..
                }
            ),
            "{code:?}: {error}"
        );
        assert!(
            error
                .to_string()
                .contains(expected_reason.trim_matches('"')),
            "{code:?}: {error}"
        );
        assert!(
            !fresh.exists(),
            "{code:?}: init wrote files before refusing"
        );

        let error = issue_agency(&paths, code, "x", VALIDITY).unwrap_err();
        assert!(
            matches!(error, PkiError::UnsafeName { .. }),
            "{code:?}: {error}"
        );
        let error = issue_operator(&paths, code, VALIDITY).unwrap_err();
        assert!(
            matches!(
                error,
                PkiError::UnsafeName {
                    field: "operator name",
                    ..
                }
            ),
            "{code:?}: {error}"
        );
        let error = paths.agency_credentials(code).unwrap_err();
        assert!(
            matches!(error, PkiError::UnsafeName { .. }),
            "{code:?}: {error}"
        );
    }
}

#[test]
fn peer_identity_reads_the_role_of_agency_operator_and_hub_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let paths = init_sample(dir.path());

    let agency = paths.agency_credentials(GOVERNMENT_OFFICE).unwrap();
    let identity = peer_identity(agency.certificate_der()).unwrap();
    assert_eq!(
        identity.role,
        PeerRole::Agency {
            code: GOVERNMENT_OFFICE.to_owned()
        }
    );
    assert_eq!(identity.serial_hex.len(), 32, "{}", identity.serial_hex);
    let now_unix = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(identity.not_before_unix <= now_unix);
    assert!(identity.not_after_unix > now_unix + 29 * 24 * 60 * 60);

    let operator = paths.operator_credentials("admin").unwrap();
    assert_eq!(
        peer_identity(operator.certificate_der()).unwrap().role,
        PeerRole::Operator {
            name: "admin".to_owned()
        }
    );

    // Administrators are issued apart, with the same CA.
    crate::issue_administrators(&paths, &["root".to_owned()], Duration::from_secs(86_400)).unwrap();
    let administrator = paths.administrator_credentials("root").unwrap();
    assert_eq!(
        peer_identity(administrator.certificate_der()).unwrap().role,
        PeerRole::Administrator {
            name: "root".to_owned()
        }
    );

    let hub = paths.hub_credentials().unwrap();
    let hub_identity = peer_identity(hub.certificate_der()).unwrap();
    assert_eq!(hub_identity.role, PeerRole::Hub);
    assert_ne!(hub_identity.serial_hex, identity.serial_hex);

    // The CA carries no truc URI and so has no identity.
    let ca_der = first_certificate_der(&std::fs::read_to_string(paths.ca_cert()).unwrap());
    assert!(matches!(
        peer_identity(&ca_der),
        Err(PkiError::Identity { .. })
    ));
}

/// A self-signed certificate carrying exactly `sans`, for identity edge cases.
fn self_signed_with_sans(sans: Vec<SanType>) -> Vec<u8> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let mut params = CertificateParams::default();
    params.subject_alt_names = sans;
    params.self_signed(&key).unwrap().der().to_vec()
}

fn uri(text: &str) -> SanType {
    SanType::URI(Ia5String::try_from(text).unwrap())
}

#[test]
fn peer_identity_requires_exactly_one_known_truc_uri() {
    let good_agency = PeerRole::Agency {
        code: GOVERNMENT_OFFICE.to_owned(),
    };
    // (SANs, expected role or expected fragment of the error)
    let cases: Vec<(Vec<SanType>, Result<PeerRole, &str>)> = vec![
        (vec![], Err("missing")),
        (
            vec![SanType::DnsName(
                Ia5String::try_from("example.org").unwrap(),
            )],
            Err("no urn:truc: URI"),
        ),
        (vec![uri("https://example.org/")], Err("no urn:truc: URI")),
        (
            vec![uri("urn:truc:agency:000.00.00.G22"), uri("urn:truc:hub")],
            Err("2 urn:truc: URIs"),
        ),
        (vec![uri("urn:truc:agency:")], Err("names no one")),
        (vec![uri("urn:truc:operator:")], Err("names no one")),
        (vec![uri("urn:truc:mayor:x")], Err("unknown truc role")),
        (vec![uri("urn:truc:hubx")], Err("unknown truc role")),
        (
            vec![
                uri("https://example.org/"),
                uri("urn:truc:agency:000.00.00.G22"),
            ],
            Ok(good_agency.clone()),
        ),
        (vec![uri(&good_agency.uri())], Ok(good_agency)),
        (
            vec![uri("urn:truc:operator:ops")],
            Ok(PeerRole::Operator {
                name: "ops".to_owned(),
            }),
        ),
        (
            vec![uri("urn:truc:administrator:admin")],
            Ok(PeerRole::Administrator {
                name: "admin".to_owned(),
            }),
        ),
        (vec![uri("urn:truc:administrator:")], Err("names no one")),
        (vec![uri("urn:truc:hub")], Ok(PeerRole::Hub)),
    ];
    for (sans, expected) in cases {
        let described = format!("{sans:?}");
        let result = peer_identity(&self_signed_with_sans(sans));
        match (result, expected) {
            (Ok(identity), Ok(role)) => assert_eq!(identity.role, role, "{described}"),
            (Err(error @ PkiError::Identity { .. }), Err(fragment)) => {
                assert!(error.to_string().contains(fragment), "{described}: {error}")
            }
            (result, expected) => panic!("{described}: got {result:?}, expected {expected:?}"),
        }
    }

    assert!(matches!(
        peer_identity(b"not a certificate"),
        Err(PkiError::CertificateParse { .. })
    ));
}

#[test]
fn agency_key_signs_and_the_certificate_key_verifies_with_ring() {
    let dir = tempfile::tempdir().unwrap();
    let paths = init_sample(dir.path());
    let agency = paths.agency_credentials(NGHE_AN).unwrap();

    // The key file itself, read back, must be what ring accepts.
    let key_pem = std::fs::read(paths.agency_key(NGHE_AN)).unwrap();
    let key_der = crate::credentials::read_pem_pkcs8_key(&key_pem).unwrap();
    assert_eq!(key_der, agency.key_pkcs8_der);
    // PKCS#8 v1 (RFC 8410): version 0 and no trailing public key, so that
    // OpenSSL and Go tooling can read the file too.
    assert_eq!(key_der.len(), 48, "{key_der:02x?}");
    assert_eq!(&key_der[..5], &[0x30, 0x2e, 0x02, 0x01, 0x00]);
    let key_pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&key_der).unwrap();

    let PublicKey::Ed25519(public_key) = certificate_public_key(agency.certificate_der()).unwrap()
    else {
        panic!("an Ed25519 PKI issues Ed25519 keys");
    };
    assert_eq!(key_pair.public_key().as_ref(), public_key.as_slice());
    assert_eq!(agency.key_algorithm().unwrap(), KeyAlgorithm::Ed25519);

    let message = b"envelope header bytes";
    let signature = key_pair.sign(message);
    let verifier = UnparsedPublicKey::new(&ED25519, public_key);
    verifier.verify(message, signature.as_ref()).unwrap();
    assert!(verifier
        .verify(b"tampered header", signature.as_ref())
        .is_err());

    // Another agency's key must not verify under this certificate.
    let other = paths.agency_credentials(GOVERNMENT_OFFICE).unwrap();
    let other_key = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&other.key_pkcs8_der).unwrap();
    assert!(verifier
        .verify(message, other_key.sign(message).as_ref())
        .is_err());
}

#[test]
fn a_p256_pki_writes_pkcs8_keys_whose_signatures_the_certificates_verify() {
    let dir = tempfile::tempdir().unwrap();
    let paths = init_sample_with(dir.path(), KeyAlgorithm::EcdsaP256Sha256);
    let agency = paths.agency_credentials(NGHE_AN).unwrap();
    for credentials in [
        paths.hub_credentials().unwrap(),
        paths.operator_credentials("admin").unwrap(),
        agency.clone(),
    ] {
        assert_eq!(
            credentials.key_algorithm().unwrap(),
            KeyAlgorithm::EcdsaP256Sha256
        );
    }
    let ca_der = first_certificate_der(&std::fs::read_to_string(paths.ca_cert()).unwrap());
    assert_eq!(
        certificate_public_key(&ca_der).unwrap().algorithm(),
        KeyAlgorithm::EcdsaP256Sha256
    );
    // The CA signs with ECDSA P-256 SHA-256 (1.2.840.10045.4.3.2), which
    // TLS stacks without Ed25519 can check.
    let agency_certificate = crate::identity::parse_certificate(agency.certificate_der()).unwrap();
    assert_eq!(
        agency_certificate
            .signature_algorithm
            .algorithm
            .to_id_string(),
        "1.2.840.10045.4.3.2"
    );

    // PKCS#8 v1 (a SEQUENCE of 135 bytes, version 0) with the
    // id-ecPublicKey algorithm and the P-256 curve.
    let key_der = &agency.key_pkcs8_der;
    assert_eq!(
        &key_der[..6],
        &[0x30, 0x81, 0x87, 0x02, 0x01, 0x00],
        "{key_der:02x?}"
    );
    let ec_public_key_and_p256 = [
        0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
        0x3d, 0x03, 0x01, 0x07,
    ];
    assert!(
        key_der
            .windows(ec_public_key_and_p256.len())
            .any(|window| window == ec_public_key_and_p256),
        "{key_der:02x?}"
    );

    let signing_key = agency.signing_key().unwrap();
    let certified = certificate_public_key(agency.certificate_der()).unwrap();
    assert_eq!(signing_key.public_key(), certified);
    let signature = signing_key.sign_envelope(b"header").unwrap();
    truc_domain::verify_envelope(&certified, b"header", &signature).unwrap();
    let other = paths.agency_credentials(GOVERNMENT_OFFICE).unwrap();
    let other_signature = other
        .signing_key()
        .unwrap()
        .sign_envelope(b"header")
        .unwrap();
    assert!(truc_domain::verify_envelope(&certified, b"header", &other_signature).is_err());

    // Re-issuing under this CA keeps its algorithm.
    issue_agency(&paths, NGHE_AN, "Nghệ An", VALIDITY).unwrap();
    issue_hub(&paths, VALIDITY).unwrap();
    for credentials in [
        paths.agency_credentials(NGHE_AN).unwrap(),
        paths.hub_credentials().unwrap(),
    ] {
        assert_eq!(
            credentials.key_algorithm().unwrap(),
            KeyAlgorithm::EcdsaP256Sha256
        );
    }
}

#[test]
fn certificate_public_key_reads_ed25519_and_p256_and_names_what_it_refuses() {
    let self_signed = |algorithm: &'static rcgen::SignatureAlgorithm| {
        let key = KeyPair::generate_for(algorithm).unwrap();
        let der = CertificateParams::default()
            .self_signed(&key)
            .unwrap()
            .der()
            .to_vec();
        (key, der)
    };
    let (key, der) = self_signed(&rcgen::PKCS_ED25519);
    assert_eq!(
        certificate_public_key(&der).unwrap(),
        PublicKey::Ed25519(key.public_key_raw().try_into().unwrap())
    );
    let (key, der) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
    assert_eq!(
        certificate_public_key(&der).unwrap(),
        PublicKey::EcdsaP256(key.public_key_raw().try_into().unwrap())
    );
    // An elliptic-curve key on another curve is refused by name.
    let (_, der) = self_signed(&rcgen::PKCS_ECDSA_P384_SHA384);
    let error = certificate_public_key(&der).unwrap_err();
    assert!(matches!(error, PkiError::PublicKey { .. }), "{error}");
    assert!(error.to_string().contains("1.3.132.0.34"), "{error}");
    assert!(error.to_string().contains("not P-256"), "{error}");
}

/// Each of (CA, hub, agency) key algorithms: the hub and an agency complete
/// a mutual TLS 1.3 handshake, the agency's certificate verifies as a lone
/// certificate, and its key signs what its certificate verifies.
#[test]
fn ed25519_and_p256_agencies_live_under_either_kind_of_ca() {
    use KeyAlgorithm::{EcdsaP256Sha256, Ed25519};
    for ca_algorithm in [Ed25519, EcdsaP256Sha256] {
        for hub_algorithm in [Ed25519, EcdsaP256Sha256] {
            for agency_algorithm in [Ed25519, EcdsaP256Sha256] {
                check_mixed_pki(ca_algorithm, hub_algorithm, agency_algorithm);
            }
        }
    }
}

fn check_mixed_pki(
    ca_algorithm: KeyAlgorithm,
    hub_algorithm: KeyAlgorithm,
    agency_algorithm: KeyAlgorithm,
) {
    let case = format!("CA {ca_algorithm}, hub {hub_algorithm}, agency {agency_algorithm}");
    let dir = tempfile::tempdir().unwrap();
    let paths = init_sample_with(dir.path(), ca_algorithm);
    issue_hub_with_key_algorithm(&paths, VALIDITY, hub_algorithm).unwrap();
    assert_eq!(
        paths.hub_credentials().unwrap().key_algorithm().unwrap(),
        hub_algorithm,
        "{case}"
    );
    issue_agencies_with_key_algorithm(
        &paths,
        &[(NGHE_AN.to_owned(), "Nghệ An".to_owned())],
        VALIDITY,
        agency_algorithm,
    )
    .unwrap();
    let agency = paths.agency_credentials(NGHE_AN).unwrap();
    assert_eq!(agency.key_algorithm().unwrap(), agency_algorithm, "{case}");

    let roots = paths.trust_roots().unwrap();
    let identity = roots
        .verify_certificate(agency.certificate_der(), SystemTime::now())
        .unwrap_or_else(|error| panic!("{case}: {error}"));
    assert_eq!(
        identity.role,
        PeerRole::Agency {
            code: NGHE_AN.to_owned()
        },
        "{case}"
    );

    let server_config = server_tls_config(&roots, &paths.hub_credentials().unwrap()).unwrap();
    let client_config = client_tls_config(&roots, &agency).unwrap();
    let (mut client, mut server) = connect(&server_config, &client_config, HUB_SERVER_NAME);
    handshake(&mut client, &mut server).unwrap_or_else(|error| panic!("{case}: {error}"));
    let presented = server.peer_certificates().expect("client certificate");
    assert_eq!(presented[0].as_ref(), agency.certificate_der(), "{case}");

    let signature = agency.signing_key().unwrap().sign_envelope(b"h").unwrap();
    let certified = certificate_public_key(agency.certificate_der()).unwrap();
    truc_domain::verify_envelope(&certified, b"h", &signature)
        .unwrap_or_else(|error| panic!("{case}: {error}"));
}

#[test]
fn verify_certificate_accepts_this_pki_and_rejects_foreign_expired_and_server_certs() {
    let dir = tempfile::tempdir().unwrap();
    let paths = init_sample(&dir.path().join("ours"));
    let foreign = init_sample(&dir.path().join("foreign"));
    let roots = paths.trust_roots().unwrap();
    let now = SystemTime::now();

    let agency = paths.agency_credentials(GOVERNMENT_OFFICE).unwrap();
    let identity = roots
        .verify_certificate(agency.certificate_der(), now)
        .unwrap();
    assert_eq!(identity, peer_identity(agency.certificate_der()).unwrap());

    let operator = paths.operator_credentials("admin").unwrap();
    assert!(roots
        .verify_certificate(operator.certificate_der(), now)
        .is_ok());

    let rejection = |cert_der: &[u8], at: SystemTime| match roots.verify_certificate(cert_der, at) {
        Err(PkiError::CertificateRejected { reason }) => reason,
        other => panic!("expected a rejection, got {other:?}"),
    };

    let foreign_agency = foreign.agency_credentials(GOVERNMENT_OFFICE).unwrap();
    let reason = rejection(foreign_agency.certificate_der(), now);
    assert!(reason.contains("UnknownIssuer"), "{reason}");

    let today = time::OffsetDateTime::now_utc();
    let (expired_pem, _) = issue_agency_pem_with_window(
        &paths,
        GOVERNMENT_OFFICE,
        today - time::Duration::days(10),
        today - time::Duration::days(1),
    )
    .unwrap();
    let reason = rejection(&first_certificate_der(&expired_pem), now);
    assert!(reason.contains("CertExpired"), "{reason}");

    let (future_pem, _) = issue_agency_pem_with_window(
        &paths,
        GOVERNMENT_OFFICE,
        today + time::Duration::days(1),
        today + time::Duration::days(10),
    )
    .unwrap();
    let reason = rejection(&first_certificate_der(&future_pem), now);
    assert!(reason.contains("CertNotValidYet"), "{reason}");

    // The same agency certificate is rejected at a time past its expiry.
    let reason = rejection(agency.certificate_der(), now + VALIDITY * 2);
    assert!(reason.contains("Expired"), "{reason}");

    // The hub certificate is for server authentication only.
    let hub = paths.hub_credentials().unwrap();
    let reason = rejection(hub.certificate_der(), now);
    assert!(reason.contains("RequiredEkuNotFound"), "{reason}");

    // The CA itself is not an end entity.
    let ca_der = first_certificate_der(&std::fs::read_to_string(paths.ca_cert()).unwrap());
    rejection(&ca_der, now);

    // What one set of roots remembers as verified means nothing to another.
    let foreign_roots = foreign.trust_roots().unwrap();
    assert!(foreign_roots
        .verify_certificate(agency.certificate_der(), now)
        .is_err());
    // A copy with its own memory verifies afresh and agrees.
    assert_eq!(
        roots
            .with_own_cache()
            .verify_certificate(agency.certificate_der(), now)
            .unwrap(),
        identity
    );
}

#[test]
fn trust_roots_from_pem_requires_a_certificate() {
    let error = TrustRoots::from_pem(b"").unwrap_err();
    assert!(matches!(error, PkiError::TrustRoots { .. }), "{error}");

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.crt");
    let error = TrustRoots::from_pem_file(&missing).unwrap_err();
    assert!(error.to_string().contains("missing.crt"), "{error}");

    let paths = init_sample(dir.path());
    let error = TrustRoots::from_pem_file(&paths.ca_key()).unwrap_err();
    assert!(error.to_string().contains("ca.key"), "{error}");
    let pem = std::fs::read(paths.ca_cert()).unwrap();
    assert!(TrustRoots::from_pem(&pem).is_ok());
}

#[test]
fn credentials_load_names_the_file_and_refuses_a_mismatched_key() {
    let dir = tempfile::tempdir().unwrap();
    let paths = init_sample(dir.path());

    let error = paths.agency_credentials("000.00.99.G22").unwrap_err();
    assert!(matches!(error, PkiError::Io { .. }), "{error}");
    assert!(error.to_string().contains("000.00.99.G22.crt"), "{error}");

    let error = Credentials::load(
        &paths.agency_cert(GOVERNMENT_OFFICE),
        &paths.agency_key(NGHE_AN),
    )
    .unwrap_err();
    assert!(matches!(error, PkiError::KeyMismatch { .. }), "{error}");

    let error =
        Credentials::load(&paths.agency_key(NGHE_AN), &paths.agency_key(NGHE_AN)).unwrap_err();
    assert!(error.to_string().contains("000.00.00.H41.key"), "{error}");
    assert!(error.to_string().contains("no CERTIFICATE"), "{error}");

    let error =
        Credentials::load(&paths.agency_cert(NGHE_AN), &paths.agency_cert(NGHE_AN)).unwrap_err();
    assert!(error.to_string().contains("PRIVATE KEY"), "{error}");

    // Debug output never shows key material.
    let agency = paths.agency_credentials(NGHE_AN).unwrap();
    assert!(format!("{agency:?}").contains("redacted"));
}

#[test]
fn issuing_with_an_existing_ca_adds_and_replaces_agencies() {
    let dir = tempfile::tempdir().unwrap();
    let paths = init_sample(dir.path());
    let roots = paths.trust_roots().unwrap();
    let before = paths.agency_credentials(GOVERNMENT_OFFICE).unwrap();

    issue_agency(&paths, GOVERNMENT_OFFICE, "Văn phòng Chính phủ", VALIDITY).unwrap();
    let after = paths.agency_credentials(GOVERNMENT_OFFICE).unwrap();
    assert_ne!(after.key_pkcs8_der, before.key_pkcs8_der);
    assert_ne!(
        peer_identity(after.certificate_der()).unwrap().serial_hex,
        peer_identity(before.certificate_der()).unwrap().serial_hex
    );
    roots
        .verify_certificate(after.certificate_der(), SystemTime::now())
        .unwrap();

    let many: Vec<(String, String)> = (1..=40)
        .map(|unit| {
            (
                format!("000.00.{unit:02}.H41"),
                format!("Sở số {unit} tỉnh Nghệ An, một tên rất dài để vượt quá giới hạn sáu mươi tư ký tự"),
            )
        })
        .collect();
    issue_agencies(&paths, &many, VALIDITY).unwrap();
    for (code, _) in &many {
        let creds = paths.agency_credentials(code).unwrap();
        let identity = roots
            .verify_certificate(creds.certificate_der(), SystemTime::now())
            .unwrap();
        assert_eq!(identity.role, PeerRole::Agency { code: code.clone() });
    }

    // A long validity is cut at the CA's expiry rather than outliving it.
    issue_operator(&paths, "night-shift", VALIDITY * 10).unwrap();
    let operator = paths.operator_credentials("night-shift").unwrap();
    let operator_identity = peer_identity(operator.certificate_der()).unwrap();
    let ca_der = first_certificate_der(&std::fs::read_to_string(paths.ca_cert()).unwrap());
    let ca_not_after = crate::identity::parse_certificate(&ca_der)
        .unwrap()
        .validity()
        .not_after
        .timestamp();
    assert_eq!(operator_identity.not_after_unix, ca_not_after);

    issue_hub(&paths, VALIDITY).unwrap();
    assert_eq!(
        peer_identity(paths.hub_credentials().unwrap().certificate_der())
            .unwrap()
            .role,
        PeerRole::Hub
    );
}

#[test]
fn issuing_without_a_ca_names_the_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let paths = PkiPaths::new(dir.path());
    let error = issue_agency(&paths, GOVERNMENT_OFFICE, "x", VALIDITY).unwrap_err();
    assert!(error.to_string().contains("ca.crt"), "{error}");
}

/// Moves TLS records between the two ends until both finish the handshake or
/// one fails. Bounded, since a handshake that needs more rounds is a bug.
fn handshake(
    client: &mut ClientConnection,
    server: &mut ServerConnection,
) -> Result<(), rustls::Error> {
    const ROUNDS_MAX: usize = 10;
    for _ in 0..ROUNDS_MAX {
        if !client.is_handshaking() && !server.is_handshaking() {
            return Ok(());
        }
        let mut client_to_server = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut client_to_server).unwrap();
        }
        let mut unread = &client_to_server[..];
        while !unread.is_empty() {
            server.read_tls(&mut unread).unwrap();
            server.process_new_packets()?;
        }

        let mut server_to_client = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut server_to_client).unwrap();
        }
        let mut unread = &server_to_client[..];
        while !unread.is_empty() {
            client.read_tls(&mut unread).unwrap();
            client.process_new_packets()?;
        }
    }
    panic!("handshake did not finish in {ROUNDS_MAX} rounds");
}

fn connect(
    server_config: &Arc<rustls::ServerConfig>,
    client_config: &Arc<rustls::ClientConfig>,
    server_name: &str,
) -> (ClientConnection, ServerConnection) {
    let name = ServerName::try_from(server_name.to_owned()).unwrap();
    let client = ClientConnection::new(Arc::clone(client_config), name).unwrap();
    let server = ServerConnection::new(Arc::clone(server_config)).unwrap();
    (client, server)
}

#[test]
fn tls13_handshake_shows_the_server_the_agency_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let paths = init_sample(dir.path());
    let roots = paths.trust_roots().unwrap();
    let server_config = server_tls_config(&roots, &paths.hub_credentials().unwrap()).unwrap();
    let agency = paths.agency_credentials(NGHE_AN).unwrap();
    let client_config = client_tls_config(&roots, &agency).unwrap();

    for server_name in [HUB_SERVER_NAME, "localhost", "127.0.0.1", "::1"] {
        let (mut client, mut server) = connect(&server_config, &client_config, server_name);
        handshake(&mut client, &mut server)
            .unwrap_or_else(|error| panic!("{server_name}: {error}"));

        assert_eq!(
            server.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );
        assert_eq!(server.alpn_protocol(), Some(&b"h2"[..]));
        let presented = server.peer_certificates().expect("client certificate");
        assert_eq!(presented[0].as_ref(), agency.certificate_der());
        assert_eq!(
            peer_identity(presented[0].as_ref()).unwrap().role,
            PeerRole::Agency {
                code: NGHE_AN.to_owned()
            }
        );
        let hub_seen = client.peer_certificates().expect("server certificate");
        assert_eq!(
            peer_identity(hub_seen[0].as_ref()).unwrap().role,
            PeerRole::Hub
        );
    }

    // Application data flows once the handshake is done.
    let (mut client, mut server) = connect(&server_config, &client_config, HUB_SERVER_NAME);
    handshake(&mut client, &mut server).unwrap();
    client.writer().write_all(b"ping").unwrap();
    let mut records = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut records).unwrap();
    }
    server.read_tls(&mut &records[..]).unwrap();
    server.process_new_packets().unwrap();
    let mut received = [0u8; 4];
    server.reader().read_exact(&mut received).unwrap();
    assert_eq!(&received, b"ping");
}

#[test]
fn tls_handshake_is_refused_for_a_client_of_another_ca() {
    let dir = tempfile::tempdir().unwrap();
    let paths = init_sample(&dir.path().join("ours"));
    let foreign = init_sample(&dir.path().join("foreign"));
    let roots = paths.trust_roots().unwrap();
    let server_config = server_tls_config(&roots, &paths.hub_credentials().unwrap()).unwrap();

    // The impostor trusts our hub but holds a certificate from its own CA.
    let impostor = foreign.agency_credentials(GOVERNMENT_OFFICE).unwrap();
    let client_config = client_tls_config(&roots, &impostor).unwrap();
    let (mut client, mut server) = connect(&server_config, &client_config, HUB_SERVER_NAME);
    let error = handshake(&mut client, &mut server).unwrap_err();
    assert!(
        matches!(
            error,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
        ),
        "{error:?}"
    );
    assert!(
        server.is_handshaking(),
        "the server must not complete the handshake"
    );

    // A client that does not trust our CA refuses the hub.
    let foreign_roots = foreign.trust_roots().unwrap();
    let agency = paths.agency_credentials(GOVERNMENT_OFFICE).unwrap();
    let client_config = client_tls_config(&foreign_roots, &agency).unwrap();
    let (mut client, mut server) = connect(&server_config, &client_config, HUB_SERVER_NAME);
    let error = handshake(&mut client, &mut server).unwrap_err();
    assert!(
        matches!(
            error,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
        ),
        "{error:?}"
    );
}

#[test]
fn tls_client_must_present_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let paths = init_sample(dir.path());
    let roots = paths.trust_roots().unwrap();
    let server_config = server_tls_config(&roots, &paths.hub_credentials().unwrap()).unwrap();
    let anonymous = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots.root_store())
    .with_no_client_auth();
    let (mut client, mut server) = connect(&server_config, &Arc::new(anonymous), HUB_SERVER_NAME);
    let error = handshake(&mut client, &mut server).unwrap_err();
    assert!(
        matches!(error, rustls::Error::NoCertificatesPresented),
        "{error:?}"
    );
}

#[test]
fn validity_reads_the_issued_expiry_of_the_hub_and_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let paths = init_sample(dir.path());
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let expected = now + VALIDITY.as_secs() as i64;
    let hub = certificate_validity(paths.hub_credentials().unwrap().certificate_der()).unwrap();
    let roots = paths.trust_roots().unwrap();
    let cas: Vec<CertificateValidity> = roots
        .certificates_der()
        .map(|der| certificate_validity(der).unwrap())
        .collect();
    assert_eq!(cas.len(), 1);
    for validity in [&hub, &cas[0]] {
        // Issued "now" for VALIDITY; a minute covers the time the test takes.
        assert!(
            (validity.not_after_unix_seconds - expected).abs() < 60,
            "{validity:?} should expire near {expected}"
        );
    }
    assert_ne!(hub.subject, cas[0].subject, "{hub:?} vs {:?}", cas[0]);
    assert!(certificate_validity(b"not a certificate").is_err());
}

#[test]
fn a_revoked_client_certificate_fails_the_handshake_and_others_pass() {
    let dir = tempfile::tempdir().unwrap();
    let paths = init_sample(dir.path());
    let roots = paths.trust_roots().unwrap();
    let revoked = paths.agency_credentials(GOVERNMENT_OFFICE).unwrap();
    let kept = paths.agency_credentials(NGHE_AN).unwrap();
    let crl_path = write_crl(&paths, &[revoked.certificate_der().to_vec()], 7).unwrap();
    let crls = read_crls(&crl_path).unwrap();
    let listed = RevokedCertificates::from_crls(&crls).unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed.contains(revoked.certificate_der()));
    assert!(!listed.contains(kept.certificate_der()));

    let verifier = client_verifier(&roots, crls).unwrap();
    let server_config =
        server_tls_config_with_verifier(&paths.hub_credentials().unwrap(), verifier).unwrap();
    let client_config = client_tls_config(&roots, &revoked).unwrap();
    let (mut client, mut server) = connect(&server_config, &client_config, HUB_SERVER_NAME);
    let error = handshake(&mut client, &mut server).unwrap_err();
    assert!(
        matches!(
            error,
            rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked)
        ),
        "{error:?}"
    );
    let client_config = client_tls_config(&roots, &kept).unwrap();
    let (mut client, mut server) = connect(&server_config, &client_config, HUB_SERVER_NAME);
    handshake(&mut client, &mut server).unwrap();
}

#[test]
fn a_pki_valid_since_a_past_day_checks_then_and_now_but_not_before() {
    let dir = tempfile::tempdir().unwrap();
    // 2021-01-01T00:00:00Z, the first day a replay of 2021 accepts documents.
    let since = 1_609_459_200;
    let paths = init_dev_pki_valid_since(
        dir.path(),
        &sample_agencies(),
        &["admin".to_owned()],
        since,
        VALIDITY,
    )
    .unwrap();
    let roots = paths.trust_roots().unwrap();
    let agency = paths.agency_credentials(NGHE_AN).unwrap();
    let at = |unix_s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(unix_s);
    for when in [at(since as u64 + 3_600), SystemTime::now()] {
        assert!(roots
            .verify_certificate(agency.certificate_der(), when)
            .is_ok());
    }
    assert!(roots
        .verify_certificate(agency.certificate_der(), at(since as u64 - 86_400))
        .is_err());
    // The hub's certificate too: it seals archives.
    let hub = paths.hub_credentials().unwrap();
    assert!(roots
        .verify_hub_certificate(hub.certificate_der(), at(since as u64 + 3_600))
        .is_ok());
}
