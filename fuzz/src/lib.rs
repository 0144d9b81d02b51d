//! The checks the fuzz targets run, as plain functions: libFuzzer calls them
//! through `fuzz_targets/` (`cargo +nightly fuzz run <target>`), and stable
//! `cargo test` runs them over the seed corpus in `seeds/`. Each one must
//! never panic except where it asserts a property of the code under test.

use prost::Message;
use truc_domain::{
    verify_envelope, Addressee, AgencyCode, DocumentDate, DocumentId, Header, Limits, SigningKey,
};
use truc_proto::v1 as pb;

/// A fixed "today", so that a finding reproduces whatever the clock says.
pub fn today() -> DocumentDate {
    DocumentDate::from_ymd(2026, 6, 15).expect("a date")
}

/// Header bytes as intake reads them once their signature has verified:
/// protobuf decoding, the hub's conversion, `Header::validate`. Whatever
/// validates keeps the invariants the rest of the hub relies on.
pub fn header(data: &[u8]) {
    let Ok(wire) = pb::EnvelopeHeader::decode(data) else {
        return;
    };
    let Ok(header) = Header::validate(truc_hub::raw_header(wire), &Limits::default(), today())
    else {
        return;
    };
    let id = header.document_id.to_string();
    assert_eq!(id.parse::<DocumentId>().as_ref(), Ok(&header.document_id));
    assert_eq!(header.document_id.sender(), header.from.code);
    assert!(!header.to.is_empty());
    let mut seen = std::collections::HashSet::new();
    for addressee in &header.to {
        if let Addressee::Valid(organ) = addressee {
            assert_ne!(organ.code, header.from.code, "self-addressed");
            assert!(seen.insert(organ.code), "duplicate recipient");
        }
    }
    assert!(header.total_attachment_bytes() <= Limits::default().document_bytes_max);
}

/// The agency code parser: never panics, and what it accepts has exactly
/// one spelling and a consistent place in the hierarchy.
pub fn agency_code(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(code) = text.parse::<AgencyCode>() else {
        return;
    };
    assert_eq!(code.to_string(), text);
    assert_eq!(code.to_string().parse::<AgencyCode>(), Ok(code));
    assert!(code.root().contains(&code));
    if let Some(parent) = code.parent() {
        assert_eq!(parent.level() + 1, code.level());
        assert!(parent.contains(&code) && !code.contains(&parent));
    }
}

/// PKCS#8 v1 of an Ed25519 key from a fixed seed.
fn pkcs8() -> Vec<u8> {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(&[0x5a; 32]);
    der
}

/// The key the signed-envelope target signs with.
pub fn signing_key() -> SigningKey {
    SigningKey::from_pkcs8(&pkcs8()).expect("a fixed Ed25519 key")
}

/// The signed-envelope check: whatever arrives as a `SignedEnvelope`,
/// checking it never panics and passes only for the signature the key
/// makes (Ed25519 signing is deterministic, and no one else holds the key);
/// the input taken as header bytes passes with its own signature, and fails
/// with any one bit of header or signature flipped.
pub fn signed_envelope(data: &[u8]) {
    let key = signing_key();
    let public_key = key.public_key();
    if let Ok(envelope) = pb::SignedEnvelope::decode(data) {
        if verify_envelope(&public_key, &envelope.header, &envelope.signature).is_ok() {
            assert_eq!(
                envelope.signature,
                key.sign_envelope(&envelope.header).expect("Ed25519 signs")
            );
        }
    }
    let signature = key.sign_envelope(data).expect("Ed25519 signs");
    assert!(verify_envelope(&public_key, data, &signature).is_ok());
    // The bit to flip comes from the input, so the fuzzer steers it.
    let choice = data.iter().fold(0usize, |acc, byte| {
        acc.wrapping_mul(31).wrapping_add(usize::from(*byte))
    });
    let mut tampered = signature.clone();
    let byte = (choice / 8) % tampered.len();
    tampered[byte] ^= 1 << (choice % 8);
    assert!(verify_envelope(&public_key, data, &tampered).is_err());
    if !data.is_empty() {
        let bit = choice % (data.len() * 8);
        let mut header = data.to_vec();
        header[bit / 8] ^= 1 << (bit % 8);
        assert!(verify_envelope(&public_key, &header, &signature).is_err());
    }
}
