//! The worked example of `docs/SIGNING.md`, rebuilt with this crate's encoder
//! and the domain's signing forms, so that the page cannot drift from the code.

use std::collections::HashMap;

use prost::Message;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use truc_domain::{
    document_signing_bytes, envelope_signing_bytes, verify_document, verify_envelope, PublicKey,
    SigningKey,
};
use truc_proto::v1 as pb;

const SIGNING_MD: &str = include_str!("../../../docs/SIGNING.md");

/// The `name = value` lines between the example markers; indented lines
/// continue the value above them.
fn example_values() -> HashMap<String, String> {
    let block = SIGNING_MD
        .split("<!-- signing-example:begin -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- signing-example:end -->").next())
        .expect("SIGNING.md has the example markers");
    let mut values: HashMap<String, String> = HashMap::new();
    let mut last = None;
    for line in block.lines() {
        if line.starts_with("```") || line.trim().is_empty() {
            continue;
        }
        if line.starts_with(' ') {
            let name: &String = last.as_ref().expect("a continuation follows a value");
            values
                .get_mut(name)
                .expect("value exists")
                .push_str(line.trim());
        } else {
            let (name, value) = line.split_once(" = ").expect("name = value");
            values.insert(name.to_owned(), value.to_owned());
            last = Some(name.to_owned());
        }
    }
    values
}

fn hex_value(values: &HashMap<String, String>, name: &str) -> Vec<u8> {
    hex::decode(
        values
            .get(name)
            .unwrap_or_else(|| panic!("{name} is missing")),
    )
    .unwrap_or_else(|error| panic!("{name}: {error}"))
}

/// RFC 8410 PKCS#8 v1 prefix of an Ed25519 private key; the seed follows.
const ED25519_PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

#[test]
fn the_worked_example_of_signing_md_is_what_the_code_does() {
    let values = example_values();
    let attachment = b"%PDF-1.7 test";
    let attachment_sha256 = ring::digest::digest(&ring::digest::SHA256, attachment);
    assert_eq!(
        attachment_sha256.as_ref(),
        hex_value(&values, "attachment_sha256")
    );

    let header = pb::EnvelopeHeader {
        from: Some(pb::Organ {
            organ_id: "000.00.00.G22".into(),
            organ_name: "Văn phòng Chính phủ".into(),
            ..Default::default()
        }),
        to: vec![pb::Organ {
            organ_id: "000.00.00.H41".into(),
            ..Default::default()
        }],
        code: Some(pb::DocumentCode {
            number: "7816".into(),
            notation: "VPCP-TTĐT".into(),
        }),
        promulgation: Some(pb::Promulgation {
            place: "Hà Nội".into(),
            date: "2024-05-06".into(),
        }),
        subject: "Về việc thử nghiệm".into(),
        attachments: vec![pb::AttachmentInfo {
            name: "vanban.pdf".into(),
            media_type: "application/pdf".into(),
            size_bytes: attachment.len() as u64,
            sha256: attachment_sha256.as_ref().to_vec(),
        }],
        ..Default::default()
    };
    let header_bytes = header.encode_to_vec();
    assert_eq!(header_bytes, hex_value(&values, "header_bytes"));
    let message = envelope_signing_bytes(&header_bytes);
    assert_eq!(message, hex_value(&values, "envelope_message"));
    assert_eq!(
        ring::digest::digest(&ring::digest::SHA256, &message).as_ref(),
        hex_value(&values, "envelope_message_sha256")
    );

    // Ed25519 is deterministic: the documented signatures are the only ones.
    let mut pkcs8 = ED25519_PKCS8_V1_PREFIX.to_vec();
    pkcs8.extend_from_slice(&hex_value(&values, "ed25519_private_seed"));
    let ed25519 = SigningKey::from_pkcs8(&pkcs8).unwrap();
    let ed25519_public = PublicKey::ed25519(&hex_value(&values, "ed25519_public_key")).unwrap();
    assert_eq!(ed25519.public_key(), ed25519_public);
    let documented = hex_value(&values, "ed25519_envelope_signature");
    assert_eq!(ed25519.sign_envelope(&header_bytes).unwrap(), documented);
    verify_envelope(&ed25519_public, &header_bytes, &documented).unwrap();

    // ECDSA is randomised: the documented signature and a fresh one both verify.
    let p256_public = hex_value(&values, "p256_public_key");
    let p256 = EcdsaKeyPair::from_private_key_and_public_key(
        &ECDSA_P256_SHA256_ASN1_SIGNING,
        &hex_value(&values, "p256_private_scalar"),
        &p256_public,
        &ring::rand::SystemRandom::new(),
    )
    .expect("the documented P-256 private and public keys belong together");
    let p256_public = PublicKey::ecdsa_p256(&p256_public).unwrap();
    verify_envelope(
        &p256_public,
        &header_bytes,
        &hex_value(&values, "p256_envelope_signature"),
    )
    .unwrap();
    let fresh = p256
        .sign(&ring::rand::SystemRandom::new(), &message)
        .unwrap();
    verify_envelope(&p256_public, &header_bytes, fresh.as_ref()).unwrap();
    assert!(verify_envelope(&p256_public, &message, fresh.as_ref()).is_err());

    let document_id = values["document_id"].as_str();
    let draft = crate::Draft {
        from: "000.00.00.G22".into(),
        number: "7816".into(),
        notation: "VPCP-TTĐT".into(),
        date: "2024-05-06".into(),
        ..Default::default()
    };
    assert_eq!(draft.document_id(), document_id);
    let digests = [<[u8; 32]>::try_from(attachment_sha256.as_ref()).unwrap()];
    assert_eq!(
        document_signing_bytes(document_id, &digests),
        hex_value(&values, "document_message")
    );
    let documented = hex_value(&values, "ed25519_document_signature");
    assert_eq!(
        ed25519.sign_document(document_id, &digests).unwrap(),
        documented
    );
    verify_document(&ed25519_public, document_id, &digests, &documented).unwrap();
}
