//! Properties of the envelope header as intake reads it once its signature
//! has verified: protobuf decoding, the wire-to-domain conversion and
//! `Header::validate`. Arbitrary or damaged bytes never panic, whatever
//! validates keeps the header's invariants, and a valid header comes through
//! with every field intact.

use std::collections::HashSet;

use proptest::prelude::*;
use proptest::sample::Index;
use prost::Message;
use truc_domain::{Addressee, DocumentDate, DocumentId, EnvelopeError, Header, Limits};
use truc_proto::v1 as pb;

fn today() -> DocumentDate {
    DocumentDate::from_ymd(2026, 6, 15).expect("a date")
}

/// What intake does with the signed bytes: decode, convert, validate.
fn decode_and_validate(bytes: &[u8]) -> Option<Result<Header, EnvelopeError>> {
    let wire = pb::EnvelopeHeader::decode(bytes).ok()?;
    Some(Header::validate(
        truc_hub::raw_header(wire),
        &Limits::default(),
        today(),
    ))
}

/// Invariants every validated header keeps, whatever it was made from.
fn check_invariants(header: &Header) -> Result<(), TestCaseError> {
    let id = header.document_id.to_string();
    prop_assert_eq!(
        id.parse::<DocumentId>().ok(),
        Some(header.document_id.clone())
    );
    prop_assert_eq!(header.document_id.sender(), header.from.code);
    prop_assert!(header.document_id.date() <= today().next_day().expect("tomorrow"));
    prop_assert!(!header.to.is_empty() && header.to.len() <= Limits::default().recipients_max);
    let mut seen = HashSet::new();
    for addressee in &header.to {
        if let Addressee::Valid(organ) = addressee {
            prop_assert_ne!(organ.code, header.from.code, "self-addressed");
            prop_assert!(seen.insert(organ.code), "duplicate {}", organ.code);
        }
    }
    prop_assert!(!header.subject.trim().is_empty());
    prop_assert!(header.total_attachment_bytes() <= Limits::default().document_bytes_max);
    // What passes keeps the attachment-name rule, duplicates included.
    prop_assert_eq!(
        truc_domain::check_attachment_names(header.attachments.iter().map(|a| a.name.as_str())),
        Ok(())
    );
    Ok(())
}

fn agency_code() -> impl Strategy<Value = String> {
    (0u16..1000, 0u8..100, 0u8..100, b'A'..=b'Z', 1u8..100).prop_map(
        |(level4, level3, level2, letter, number)| {
            // No non-zero group left of a zero one.
            let level3 = if level2 == 0 { 0 } else { level3 };
            let level4 = if level3 == 0 { 0 } else { level4 };
            format!(
                "{level4:03}.{level3:02}.{level2:02}.{}{number:02}",
                letter as char
            )
        },
    )
}

#[derive(Debug)]
struct Valid {
    header: pb::EnvelopeHeader,
    from: String,
    to: Vec<String>,
    date: String,
}

fn regex(pattern: &str) -> proptest::string::RegexGeneratorStrategy<String> {
    proptest::string::string_regex(pattern).expect("a valid pattern")
}

/// A header that must validate: recipients distinct and not the sender, a
/// date no later than today, attachments with distinct plain names.
fn valid_header() -> impl Strategy<Value = Valid> {
    let letters = "[A-Za-zĐđàáảãạăắằẳẵặâấầẩẫậêếềểễệôốồổỗộơớờởỡợưứừửữự]";
    (
        agency_code(),
        proptest::collection::vec(agency_code(), 1..6),
        "[0-9]{1,6}",
        "[A-ZĐ][A-ZĐ-]{0,12}",
        (2000i32..=2025, 1u8..=12, 1u8..=28),
        regex(&format!("{letters}[ ,.0-9]?{letters}{{0,120}}")),
        regex(&format!("{letters}{{0,40}}")),
        proptest::collection::btree_map(
            // A prefix keeps names clear of the device names Windows reserves (con.pdf).
            "vb-[a-z0-9_-]{1,20}\\.pdf",
            (0u64..=1_000_000, any::<[u8; 32]>()),
            1..5,
        ),
        (0u32..100, 0u32..5),
    )
        .prop_filter_map(
            "recipients other than the sender",
            |(
                from,
                to,
                number,
                notation,
                (year, month, day),
                subject,
                place,
                files,
                (pages, priority),
            )| {
                let mut unique = Vec::new();
                for code in to {
                    if code != from && !unique.contains(&code) {
                        unique.push(code);
                    }
                }
                if unique.is_empty() {
                    return None;
                }
                let date = format!("{year:04}-{month:02}-{day:02}");
                let header = pb::EnvelopeHeader {
                    from: Some(pb::Organ {
                        organ_id: from.clone(),
                        organ_name: place.clone(),
                        ..Default::default()
                    }),
                    to: unique
                        .iter()
                        .map(|code| pb::Organ {
                            organ_id: code.clone(),
                            ..Default::default()
                        })
                        .collect(),
                    code: Some(pb::DocumentCode { number, notation }),
                    promulgation: Some(pb::Promulgation {
                        place,
                        date: date.clone(),
                    }),
                    subject,
                    other_info: Some(pb::OtherInfo {
                        priority,
                        page_count: pages,
                        appendix_count: files.len() as u32 - 1,
                    }),
                    attachments: files
                        .into_iter()
                        .map(|(name, (size_bytes, sha256))| pb::AttachmentInfo {
                            name,
                            media_type: "application/pdf".into(),
                            size_bytes,
                            sha256: sha256.to_vec(),
                        })
                        .collect(),
                    ..Default::default()
                };
                Some(Valid {
                    header,
                    from,
                    to: unique,
                    date,
                })
            },
        )
}

/// One edit of encoded bytes: a changed, inserted or removed byte, or a cut.
fn damage(bytes: &mut Vec<u8>, (at, byte, kind): (Index, u8, u8)) {
    if bytes.is_empty() {
        bytes.push(byte);
        return;
    }
    let at = at.index(bytes.len());
    match kind {
        0 => bytes[at] ^= byte | 1,
        1 => bytes.insert(at, byte),
        2 => {
            bytes.remove(at);
        }
        _ => bytes.truncate(at),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        if let Some(Ok(header)) = decode_and_validate(&bytes) {
            check_invariants(&header)?;
        }
    }

    #[test]
    fn valid_headers_round_trip(valid in valid_header()) {
        let bytes = valid.header.encode_to_vec();
        let decoded = pb::EnvelopeHeader::decode(bytes.as_slice()).expect("decodes");
        prop_assert_eq!(&decoded, &valid.header);
        prop_assert_eq!(decoded.encode_to_vec(), bytes.clone());

        let header = decode_and_validate(&bytes)
            .expect("decodes")
            .map_err(|error| TestCaseError::fail(format!("refused: {error}")))?;
        check_invariants(&header)?;
        let code = valid.header.code.as_ref().expect("a code");
        prop_assert_eq!(
            header.document_id.to_string(),
            format!("{},{},{}/{}", valid.from, valid.date.replace('-', "/"), code.number, code.notation)
        );
        let to: Vec<String> = header
            .to
            .iter()
            .map(|addressee| match addressee {
                Addressee::Valid(organ) => organ.code.to_string(),
                Addressee::Refused { organ_id, .. } => format!("refused {organ_id}"),
            })
            .collect();
        prop_assert_eq!(to, valid.to);
        prop_assert_eq!(&header.subject, &valid.header.subject);
        let promulgation = valid.header.promulgation.as_ref().expect("promulgation");
        prop_assert_eq!(&header.promulgation_place, &promulgation.place);
        prop_assert_eq!(header.attachments.len(), valid.header.attachments.len());
        for (checked, sent) in header.attachments.iter().zip(&valid.header.attachments) {
            prop_assert_eq!(&checked.name, &sent.name);
            prop_assert_eq!(checked.size_bytes, sent.size_bytes);
            prop_assert_eq!(checked.sha256.to_vec(), sent.sha256.clone());
        }
    }

    #[test]
    fn damaged_valid_headers_never_panic(
        valid in valid_header(),
        edits in proptest::collection::vec((any::<Index>(), any::<u8>(), 0u8..4), 1..8),
    ) {
        let mut bytes = valid.header.encode_to_vec();
        for edit in edits {
            damage(&mut bytes, edit);
        }
        if let Some(Ok(header)) = decode_and_validate(&bytes) {
            check_invariants(&header)?;
        }
    }
}
