//! Property tests: any valid package passes the checks, reads back equal
//! from the XML it writes, and comes back equal from the envelope it maps
//! to (edXML → envelope → edXML), the extra data included.

use super::common;

use std::sync::OnceLock;

use proptest::prelude::*;
use truc_edxml::*;

const LETTERS: &str =
    "[a-zA-Z0-9Đđàáảãạăắằẳẵặâấầẩẫậèéẻẽẹêếềểễệìíỉĩịòóỏõọôốồổỗộơớờởỡợùúủũụưứừửữựỳýỷỹỵ]";

fn text(chars_max: usize) -> impl Strategy<Value = String> {
    let pattern = format!("{LETTERS}([ ,.:;()/-]?{LETTERS}){{0,{chars_max}}}");
    proptest::string::string_regex(&pattern).expect("a pattern")
}

fn maybe(strategy: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), strategy]
}

fn code() -> impl Strategy<Value = String> {
    (b'A'..=b'Z', 1u8..100, 0u8..100, 0u8..100).prop_map(|(letter, body, level2, level3)| {
        let level3 = if level2 == 0 { 0 } else { level3 };
        format!("000.{level3:02}.{level2:02}.{}{body:02}", letter as char)
    })
}

/// A date on or before 2025, `yyyy/MM/dd`, and its day count for due dates.
fn date() -> impl Strategy<Value = (i32, u8, u8)> {
    (2000i32..2026, 1u8..13, 1u8..29)
}

fn slashed((year, month, day): (i32, u8, u8)) -> String {
    format!("{year:04}/{month:02}/{day:02}")
}

fn notation() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop::sample::select(vec![
            "VPCP", "TTĐT", "UBND", "QĐ", "TTg", "BTC", "VX", "KH&ĐT", "TCT",
        ]),
        1..4,
    )
    .prop_map(|parts| parts.join("-"))
}

fn document_id(sender: String) -> impl Strategy<Value = String> {
    (date(), 1u32..100_000, notation()).prop_map(move |(day, number, notation)| {
        format!("{sender},{},{number}/{notation}", slashed(day))
    })
}

fn email() -> impl Strategy<Value = String> {
    maybe("[a-z]{1,8}@[a-z]{2,8}\\.gov\\.vn")
}

fn organization(code: String) -> impl Strategy<Value = Organization> {
    (
        maybe(text(40)),
        maybe(text(40)),
        maybe(text(40)),
        email(),
        maybe("[0-9]([0-9 ]{0,8}[0-9])?"),
        maybe("[0-9]{1,10}"),
        maybe("https://[a-z]{1,10}\\.vn"),
    )
        .prop_map(
            move |(in_charge, name, address, email, telephone, fax, website)| Organization {
                organ_id: code.clone(),
                organization_in_charge: in_charge,
                organ_name: name,
                organ_add: address,
                email,
                telephone,
                fax,
                website,
            },
        )
}

fn staff() -> impl Strategy<Value = Option<StaffInfo>> {
    proptest::option::of(
        (
            maybe(text(20)),
            maybe(text(20)),
            email(),
            maybe("[0-9]{10}"),
        )
            .prop_map(|(department, staff, email, mobile)| StaffInfo {
                department,
                staff,
                email,
                mobile,
            }),
    )
}

fn certificate() -> String {
    static CERTIFICATE: OnceLock<String> = OnceLock::new();
    CERTIFICATE
        .get_or_init(|| common::certificate(1999, 2040))
        .clone()
}

fn signature() -> impl Strategy<Value = Option<Signature>> {
    proptest::option::of(("([A-Za-z0-9+/]{4}){2,10}", "([A-Za-z0-9+/]{4}){2,10}", maybe("CN=[a-z]{1,10}")).prop_map(
        |(digest, value, subject)| Signature {
            canonicalization_method: "http://www.w3.org/2001/10/xml-exc-c14n#".into(),
            signature_method: "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256".into(),
            references: vec![SignReference {
                uri: String::new(),
                transforms: vec!["http://www.w3.org/2000/09/xmldsig#enveloped-signature".into()],
                digest_method: "http://www.w3.org/2001/04/xmlenc#sha256".into(),
                digest_value: format!("{digest}AA=="),
            }],
            signature_value: format!("{value}AA=="),
            x509_subject_name: subject,
            x509_certificate: certificate(),
        },
    ))
}

fn attachments(count: std::ops::Range<usize>) -> impl Strategy<Value = Vec<Attachment>> {
    proptest::collection::vec(
        (
            prop::sample::select(vec![
                "application/pdf",
                "application/zip",
                "image/png",
                "text/plain",
            ]),
            maybe(text(20)),
            proptest::collection::vec(any::<u8>(), 1..64),
        ),
        count,
    )
    .prop_map(|items| {
        items
            .into_iter()
            .enumerate()
            .map(|(index, (media_type, description, bytes))| Attachment {
                content_id: format!("c{index}"),
                name: format!("tep-{index}.bin"),
                description,
                content_type: media_type.to_owned(),
                bytes,
            })
            .collect()
    })
}

prop_compose! {
    fn package()(
        from_code in code(),
        to_codes in proptest::collection::btree_set(code(), 1..4),
        day in date(),
        due_days in proptest::option::of(0i64..300),
        number in 1u32..1_000_000,
        notation in notation(),
        answered in proptest::collection::vec(code(), 0..3),
        doc_type in 0u32..4,
        in_business in any::<bool>(),
        refs in 1usize..3,
    )(
        from in organization(from_code.clone()),
        to in to_codes
            .into_iter()
            .filter(|code| *code != from_code)
            .map(organization)
            .collect::<Vec<_>>(),
        response_for in answered.into_iter().map(document_id).collect::<Vec<_>>(),
        own_refs in proptest::collection::vec(document_id(from_code.clone()), refs..=refs),
        organ_lists in proptest::collection::vec(proptest::collection::vec(code(), 0..3), refs..=refs),
        place in maybe(text(20)),
        type_code in 0u32..40,
        type_detail in maybe("[0-9]{1,2}"),
        type_name in text(20),
        subject in text(120),
        content in maybe(text(200)),
        signer in (maybe(text(20)), text(20), text(20)),
        to_places in proptest::collection::vec(text(20), 0..3),
        other in (0u32..5, maybe(text(20)), maybe("[A-Z]{2,4}"), maybe("[1-9][0-9]{0,2}"), 0u32..500, prop::sample::select(vec!["", "true", "false"]), proptest::collection::vec(maybe(text(20)), 0..3)),
        steering in 0u32..4,
        traces in proptest::collection::vec((code(), date(), 0u8..24, 0u8..60), 0..3),
        business_extra in (maybe(text(30)), prop::sample::select(vec!["", "0", "1"]), staff()),
        receivers in proptest::collection::vec((prop::sample::select(vec!["0", "1"]), code()), 0..3),
        signature in signature(),
        attachments in attachments(if doc_type == 1 { 0..2 } else { 1..4 }),
        (day, due_days, number, notation, doc_type, in_business) in Just((day, due_days, number, notation, doc_type, in_business)),
    ) -> Package {
        let promulgation = slashed(day);
        let due_date = due_days.map(|days| {
            let start = time::Date::from_calendar_date(day.0, time::Month::try_from(day.1).expect("month"), day.2).expect("date");
            let due = start + time::Duration::days(days);
            format!("{:04}/{:02}/{:02}", due.year(), due.month() as u8, due.day())
        }).unwrap_or_default();
        let (document_id, replacements) = match doc_type {
            0 => (String::new(), Vec::new()),
            _ => {
                let mut ids = own_refs.into_iter().zip(organ_lists);
                let first = if in_business && doc_type != 3 {
                    ids.next().map(|(id, _)| id).unwrap_or_default()
                } else {
                    String::new()
                };
                (first, ids.map(|(document_id, organ_ids)| ReplacementInfo { document_id, organ_ids }).collect())
            }
        };
        let document_info = (doc_type == 2 && !receivers.is_empty()).then(|| BusinessDocumentInfo {
            document_info: "1".into(),
            document_receiver: "1".into(),
            receivers: receivers.into_iter().map(|(receiver_type, organ_id)| Receiver { receiver_type: receiver_type.into(), organ_id }).collect(),
        });
        let mut package = Package {
            header: MessageHeader {
                from,
                to,
                document_id: String::new(),
                code: Code { number: number.to_string(), notation },
                promulgation: PromulgationInfo { place, date: promulgation },
                document_type: DocumentType { type_code, type_detail, type_name },
                subject,
                content,
                signer_info: Some(SignerInfo { competence: signer.0, position: signer.1, full_name: signer.2 }),
                due_date,
                to_places,
                other_info: OtherInfo {
                    priority: other.0,
                    sphere_of_promulgation: other.1,
                    typer_notation: other.2,
                    promulgation_amount: other.3,
                    page_amount: other.4,
                    direction: other.5.into(),
                    appendixes: other.6,
                },
                response_for: response_for.iter().map(|id| truc_edxml::envelope::response_for(id)).collect(),
                steering_type: steering,
            },
            trace_headers: traces.into_iter().map(|(organ_id, day, hour, minute)| TraceHeader {
                organ_id,
                timestamp: format!("{} {hour:02}:{minute:02}:00", slashed(day)),
            }).collect(),
            business: Business {
                doc_type,
                doc_reason: business_extra.0,
                document_id,
                paper: business_extra.1.into(),
                staff_info: business_extra.2,
                document_info,
                replacements,
            },
            signature,
            attachments,
        };
        package.header.document_id = package.derived_document_id();
        package
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn packages_pass_write_read_and_map_both_ways(package in package()) {
        let context = CheckContext::new(common::today(), None);
        let errors: Vec<Problem> = check_package(&package, &context).into_iter().filter(Problem::is_error).collect();
        prop_assert!(errors.is_empty(), "{:#?}", errors);

        let bytes = write_package(&package).expect("written");
        let (read, _) = parse_message(&bytes, &EdxmlLimits::default(), &InlineOnly).expect("read back");
        prop_assert_eq!(read, Message::Document(Box::new(package.clone())));

        let envelope = to_envelope(&package);
        let last = envelope.header.attachments.last().expect("the extra data");
        prop_assert!(is_extra(&last.name, &last.media_type));
        let bytes: Vec<Vec<u8>> = envelope.attachments.iter().map(|a| a.bytes.clone()).collect();
        let back = from_envelope(&envelope.header, bytes).expect("mapped back");
        prop_assert_eq!(back, package);
    }

    #[test]
    fn the_same_package_maps_to_the_same_envelope(package in package()) {
        // A resend after a crash must be the hub's duplicate: same header bytes.
        prop_assert_eq!(to_envelope(&package), to_envelope(&package.clone()));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = parse_message(&bytes, &EdxmlLimits::default(), &InlineOnly);
    }
}

#[test]
fn status_messages_read_back_equal() {
    let status = notice_message(
        "000.00.00.G22,2026/11/20,7816/VPCP-TTĐT",
        "000.00.00.H41",
        2,
        1_795_000_000_000,
        "Sai thẩm quyền ban hành",
    );
    let bytes = write_status(&status).unwrap();
    let (read, _) = parse_message(&bytes, &EdxmlLimits::default(), &InlineOnly).unwrap();
    assert_eq!(read, Message::Status(Box::new(status)));
}
