//! Runs every fuzz check over its seed corpus (`seeds/<target>/`, every
//! prefix of each seed included) and over whatever `cargo fuzz` has added
//! in `corpus/<target>/`, with stable
//! `cargo test`: the targets stay exercised where nightly is missing.
//! `cargo test -- --ignored write_seeds` makes the seeds again.

use std::path::{Path, PathBuf};

use prost::Message;
use truc_proto::v1 as pb;

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut inputs = Vec::new();
    for folder in ["seeds", "corpus"] {
        let Ok(entries) = std::fs::read_dir(root.join(folder).join(target)) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            inputs.push((path.clone(), std::fs::read(&path).expect("readable seed")));
        }
    }
    inputs.sort();
    inputs
}

fn run(target: &str, check: fn(&[u8])) -> usize {
    let inputs = inputs(target);
    assert!(!inputs.is_empty(), "no seeds for {target}");
    for (path, data) in &inputs {
        let outcome = std::panic::catch_unwind(|| check(data));
        assert!(outcome.is_ok(), "{target} fails on {}", path.display());
        // Every prefix of a seed too: truncation is the commonest damage on
        // the wire (what libFuzzer found is many inputs already).
        if path.components().any(|part| part.as_os_str() == "seeds") {
            for cut in 0..data.len() {
                check(&data[..cut]);
            }
        }
    }
    inputs.len()
}

#[test]
fn header_seeds() {
    run("header", truc_fuzz::header);
}

#[test]
fn agency_code_seeds() {
    run("agency_code", truc_fuzz::agency_code);
}

#[test]
fn signed_envelope_seeds() {
    run("signed_envelope", truc_fuzz::signed_envelope);
}

/// The seeds reach past the first refusal: some headers validate, some
/// codes parse, some envelopes verify.
#[test]
fn seeds_reach_the_accepting_paths() {
    let validated = inputs("header").iter().any(|(_, data)| {
        pb::EnvelopeHeader::decode(data.as_slice()).is_ok_and(|wire| {
            truc_domain::Header::validate(
                truc_hub::raw_header(wire),
                &truc_domain::Limits::default(),
                truc_fuzz::today(),
            )
            .is_ok()
        })
    });
    assert!(validated, "no header seed validates");
    let parsed = inputs("agency_code").iter().any(|(_, data)| {
        std::str::from_utf8(data).is_ok_and(|text| text.parse::<truc_domain::AgencyCode>().is_ok())
    });
    assert!(parsed, "no agency code seed parses");
    let key = truc_fuzz::signing_key();
    let verified = inputs("signed_envelope").iter().any(|(_, data)| {
        pb::SignedEnvelope::decode(data.as_slice()).is_ok_and(|envelope| {
            truc_domain::verify_envelope(&key.public_key(), &envelope.header, &envelope.signature)
                .is_ok()
        })
    });
    assert!(verified, "no signed envelope seed verifies");
}

fn organ(code: &str) -> pb::Organ {
    pb::Organ {
        organ_id: code.into(),
        ..Default::default()
    }
}

fn sample_header(to: &[&str]) -> pb::EnvelopeHeader {
    pb::EnvelopeHeader {
        from: Some(pb::Organ {
            organ_id: "000.00.00.G22".into(),
            organ_name: "Văn phòng Chính phủ".into(),
            ..Default::default()
        }),
        to: to.iter().map(|code| organ(code)).collect(),
        code: Some(pb::DocumentCode {
            number: "7816".into(),
            notation: "VPCP-TTĐT".into(),
        }),
        promulgation: Some(pb::Promulgation {
            place: "Hà Nội".into(),
            date: "2024-09-20".into(),
        }),
        subject: "Về việc triển khai Trục liên thông văn bản quốc gia".into(),
        attachments: vec![pb::AttachmentInfo {
            name: "vanban.pdf".into(),
            media_type: "application/pdf".into(),
            size_bytes: 1000,
            sha256: vec![7; 32],
        }],
        ..Default::default()
    }
}

#[test]
#[ignore = "writes the seed corpus; run on purpose"]
fn write_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let folder = root.join(target);
        std::fs::create_dir_all(&folder).expect("seed folder");
        std::fs::write(folder.join(name), bytes).expect("seed written");
    };
    let one = sample_header(&["000.00.00.H41"]);
    let mut many = sample_header(&["000.00.00.H41", "000.00.18.G12", "000.07.05.H41", "H41"]);
    many.due_date = "2024-10-01".into();
    many.response_for = vec!["000.00.00.G12,2024/09/01,12/BTC-NSNN".into()];
    let mut revoke = sample_header(&["000.00.00.G12"]);
    revoke.business_type = 1;
    revoke.business_refs = vec!["000.00.00.G22,2024/09/19,7815/VPCP-TTĐT".into()];
    revoke.attachments.clear();
    let mut bad = sample_header(&["000.00.00.G22"]);
    bad.promulgation = Some(pb::Promulgation {
        place: String::new(),
        date: "2999-01-01".into(),
    });
    for (name, header) in [
        ("one-recipient", &one),
        ("many-recipients", &many),
        ("revoke", &revoke),
        ("refused", &bad),
    ] {
        write("header", name, &header.encode_to_vec());
    }
    for (name, code) in [
        ("government-office", "000.00.00.G22"),
        ("taxation", "000.00.18.G12"),
        ("commune", "000.07.05.H41"),
        ("level-4", "001.07.05.H41"),
        ("zero-body", "000.00.00.G00"),
        ("gap", "000.05.00.H41"),
        ("lower-case", "000.00.00.g22"),
    ] {
        write("agency_code", name, code.as_bytes());
    }
    let key = truc_fuzz::signing_key();
    let header = one.encode_to_vec();
    let signed = pb::SignedEnvelope {
        signature: key.sign_envelope(&header).expect("Ed25519 signs"),
        header: header.clone(),
        document_signature: None,
    };
    write("signed_envelope", "signed", &signed.encode_to_vec());
    let mut forged = signed.clone();
    forged.signature[0] ^= 1;
    write("signed_envelope", "forged", &forged.encode_to_vec());
    write("signed_envelope", "header-only", &header);
}
