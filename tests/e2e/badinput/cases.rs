//! The rows of the bad-input table, built in families: every kind of
//! ill-formed agency code, document id and date in every field that takes
//! one, every text field over its limit, every illegal status move, every
//! way to break protobuf, framing, signatures and the attachment stream.

use prost::Message;
use ring::signature::Ed25519KeyPair;
use tonic::Code;
use truc_domain::SigningKey;
use truc_proto::v1 as pb;

use super::wire::{self, LEN, VARINT};
use super::{Case, Fixtures, Input, Method, Who, G09, G12, G17, G22, H01, H41};

/// The rows, and the digests of every attachment that only refused rows carry.
pub struct Table {
    pub cases: Vec<Case>,
    pub refused_digests: Vec<[u8; 32]>,
    /// How many rows each family holds, in table order.
    pub families: Vec<(&'static str, usize)>,
}

pub fn table<'a>(fixtures: &'a Fixtures) -> Table {
    let mut builder = Builder {
        fx: fixtures,
        cases: Vec::new(),
        refused_digests: Vec::new(),
        next_number: 1000,
    };
    type Family<'a> = fn(&mut Builder<'a>);
    let families: [(&str, Family<'a>); 23] = [
        ("ill-formed agency codes", Builder::agency_codes),
        (
            "unknown, self-addressed, duplicated, too many recipients",
            Builder::recipients,
        ),
        (
            "text fields over their limit, with control characters, blank",
            Builder::text_fields,
        ),
        ("invalid UTF-8 in the signed header", Builder::header_utf8),
        (
            "malformed protobuf in the signed header",
            Builder::header_protobuf,
        ),
        ("missing required fields", Builder::missing_fields),
        ("malformed, future and absurd dates", Builder::dates),
        (
            "numbers, notations, business types, references",
            Builder::codes_and_references,
        ),
        ("attachment entries", Builder::attachment_headers),
        (
            "attachment names: controls, invisible and bidirectional characters, Windows names, NFC, lengths, case",
            Builder::attachment_names,
        ),
        (
            "client text meant to forge log lines, in every field a refusal repeats",
            Builder::log_injection,
        ),
        (
            "attachment streams: digests, sizes, chunk order",
            Builder::attachment_streams,
        ),
        ("oversize headers, messages and chunks", Builder::sizes),
        ("bad, missing and foreign signatures", Builder::signatures),
        ("spoofed senders", Builder::spoofing),
        ("conflicting duplicates", Builder::conflicts),
        (
            "status codes, illegal moves, reasons, wrong parties",
            Builder::status_moves,
        ),
        ("reads: unknown, ill-formed, someone else's", Builder::reads),
        ("delivery stream protocol", Builder::deliveries),
        (
            "recalls, updates, replaces: others' documents, unknown ones, answers with nothing to answer",
            Builder::business_requests,
        ),
        ("routes, document lists, node lists", Builder::operator_views),
        ("malformed request messages", Builder::raw_requests),
        ("gRPC framing", Builder::framing),
    ];
    let mut counts = Vec::new();
    for (family, build) in families {
        let before = builder.cases.len();
        build(&mut builder);
        counts.push((family, builder.cases.len() - before));
    }
    Table {
        cases: builder.cases,
        refused_digests: builder.refused_digests,
        families: counts,
    }
}

const NOTATION: &str = "VPCP-TTĐT";
const REGISTERED: [&str; 5] = [G22, G12, H41, G17, G09];

/// Every shape of agency code QCVN 102:2016 does not allow, with what is wrong.
pub fn ill_formed_agency_codes() -> Vec<(String, String)> {
    let mut codes: Vec<(String, String)> = [
        ("empty", ""),
        ("a space", " "),
        ("the body alone", "G22"),
        ("three groups", "000.00.00"),
        ("no body number", "000.00.00.G"),
        ("no body letter", "000.00.00.22"),
        ("a one-digit body number", "000.00.00.G2"),
        ("a three-digit body number", "000.00.00.G222"),
        ("a four-digit level-4 group", "0000.00.00.G22"),
        ("a two-digit level-4 group", "00.00.00.G22"),
        ("a three-digit level-3 group", "000.000.00.G22"),
        ("a three-digit level-2 group", "000.00.000.G22"),
        ("a fifth group", "000.00.00.G22.000"),
        ("a lower-case body letter", "000.00.00.g22"),
        ("two body letters", "000.00.00.GG2"),
        ("a zero body number", "000.00.00.G00"),
        ("a zero body number under a unit", "000.00.18.G00"),
        ("a level-3 unit without level 2", "000.05.00.H41"),
        ("a level-4 unit without level 3", "001.00.05.H41"),
        ("a level-4 unit without levels 2 and 3", "001.00.00.H41"),
        ("a level-4 and 3 unit without level 2", "001.05.00.H41"),
        ("a leading space", " 000.00.00.G22"),
        ("a trailing space", "000.00.00.G22 "),
        ("a trailing newline", "000.00.00.G22\n"),
        ("a NUL inside", "000.00.00.G2\0"),
        ("the X-Road member address", "VN:GOV:000.00.00.G22"),
        ("a service suffix", "000.00.00.G22:vbdh"),
        ("full-width digits", "０００.００.００.Ｇ２２"),
        ("a Vietnamese body letter", "000.00.00.Đ22"),
        ("a signed group", "+00.00.00.G22"),
        ("a negative body number", "000.00.00.G-1"),
        ("hex digits", "0x0.00.00.G22"),
        ("separators only", "..."),
        ("thirteen dots", "............."),
    ]
    .into_iter()
    .map(|(why, code)| (why.to_string(), code.to_string()))
    .collect();
    codes.push(("ten thousand characters".into(), "0".repeat(10_000)));
    let good = "000.00.18.G12";
    for position in [3, 6, 9] {
        for replacement in ['-', ',', ' ', '/', ':', '_'] {
            let mut code: Vec<char> = good.chars().collect();
            code[position] = replacement;
            codes.push((
                format!("'{replacement}' as separator {position}"),
                code.into_iter().collect(),
            ));
        }
    }
    for position in [0, 1, 2, 4, 5, 7, 8, 11, 12] {
        for replacement in ['a', ' ', '٣'] {
            let mut code: Vec<char> = good.chars().collect();
            code[position] = replacement;
            codes.push((
                format!("'{replacement}' as digit {position}"),
                code.into_iter().collect(),
            ));
        }
    }
    for replacement in ['g', '1', '.', ' ', '*'] {
        let mut code: Vec<char> = good.chars().collect();
        code[10] = replacement;
        codes.push((
            format!("'{replacement}' as body letter"),
            code.into_iter().collect(),
        ));
    }
    codes
}

/// Document ids that are not `OrganId,yyyy/MM/dd,Number/Notation`.
pub fn ill_formed_document_ids() -> Vec<(&'static str, String)> {
    let long = format!(
        "000.00.00.G22,2024/01/02,{}/{}",
        "1".repeat(60),
        "A".repeat(60)
    );
    vec![
        ("empty", String::new()),
        ("a space", " ".into()),
        ("a word", "nope".into()),
        ("an organ alone", "000.00.00.G22".into()),
        ("no code", "000.00.00.G22,2024/01/02".into()),
        ("an empty code", "000.00.00.G22,2024/01/02,".into()),
        ("an ISO date", "000.00.00.G22,2024-01-02,1/A".into()),
        ("30 February", "000.00.00.G22,2024/02/30,1/A".into()),
        ("month 13", "000.00.00.G22,2024/13/01,1/A".into()),
        ("an unpadded date", "000.00.00.G22,2024/1/2,1/A".into()),
        ("a two-digit year", "000.00.00.G22,24/01/02,1/A".into()),
        (
            "a code without notation",
            "000.00.00.G22,2024/01/02,1".into(),
        ),
        ("an empty number", "000.00.00.G22,2024/01/02,/A".into()),
        ("an empty notation", "000.00.00.G22,2024/01/02,1/".into()),
        ("two slashes", "000.00.00.G22,2024/01/02,1/A/B".into()),
        (
            "a comma in the code",
            "000.00.00.G22,2024/01/02,1/A,B".into(),
        ),
        (
            "a space before the code",
            "000.00.00.G22,2024/01/02, 1/A".into(),
        ),
        (
            "a space after the code",
            "000.00.00.G22,2024/01/02,1/A ".into(),
        ),
        (
            "a NUL in the number",
            "000.00.00.G22,2024/01/02,1\0/A".into(),
        ),
        ("a short organ", "G22,2024/01/02,1/A".into()),
        ("a lower-case organ", "000.00.00.g22,2024/01/02,1/A".into()),
        ("a zero body", "000.00.00.G00,2024/01/02,1/A".into()),
        ("an organ with a gap", "000.05.00.G22,2024/01/02,1/A".into()),
        ("a leading space", " 000.00.00.G22,2024/01/02,1/A".into()),
        ("semicolons", "000.00.00.G22;2024/01/02;1/A".into()),
        ("a code over 100 bytes", long),
    ]
}

/// Strings that are not an ISO `yyyy-mm-dd` date. The empty string is left
/// out: it means "none" or "unbounded" in the fields that allow it.
pub fn ill_formed_dates() -> Vec<(&'static str, &'static str)> {
    vec![
        ("a space", " "),
        ("a year", "2024"),
        ("a month", "2024-01"),
        ("an unpadded month", "2024-1-02"),
        ("an unpadded day", "2024-01-2"),
        ("a two-digit year", "24-01-02"),
        ("slashes", "2024/01/02"),
        ("dots", "2024.01.02"),
        ("day first", "02-01-2024"),
        ("month 13", "2024-13-01"),
        ("month 0", "2024-00-10"),
        ("day 0", "2024-01-00"),
        ("day 32", "2024-01-32"),
        ("29 February of a common year", "2023-02-29"),
        ("30 February", "2024-02-30"),
        ("31 April", "2024-04-31"),
        ("a time", "2024-01-02T00:00:00"),
        ("a trailing space", "2024-01-02 "),
        ("a leading space", " 2024-01-02"),
        ("full-width digits", "２０２４-01-02"),
        ("en dashes", "2024–01–02"),
        ("a word", "yesterday"),
        ("a seven-digit year", "9999999-01-01"),
        ("a NUL", "\0"),
    ]
}

fn organ(code: &str) -> pb::Organ {
    pb::Organ {
        organ_id: code.to_owned(),
        ..Default::default()
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut digest = [0u8; 32];
    digest.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref());
    digest
}

fn info(name: &str, data: &[u8]) -> pb::AttachmentInfo {
    pb::AttachmentInfo {
        name: name.to_owned(),
        media_type: "application/pdf".into(),
        size_bytes: data.len() as u64,
        sha256: sha256(data).to_vec(),
    }
}

fn envelope_message(envelope: pb::SignedEnvelope) -> Vec<u8> {
    pb::SendRequest {
        part: Some(pb::send_request::Part::Envelope(envelope)),
    }
    .encode_to_vec()
}

fn chunk_message(index: u32, data: &[u8]) -> Vec<u8> {
    pb::SendRequest {
        part: Some(pb::send_request::Part::Chunk(pb::AttachmentChunk {
            index,
            data: data.to_vec(),
        })),
    }
    .encode_to_vec()
}

fn sign(key: &[u8], header: &[u8]) -> Vec<u8> {
    SigningKey::from_pkcs8(key)
        .expect("an Ed25519 key")
        .sign_envelope(header)
        .expect("signs")
}

/// A document as a sender would make it: a header and its attachments' bytes.
#[derive(Clone)]
struct Doc {
    header: pb::EnvelopeHeader,
    attachments: Vec<Vec<u8>>,
    id: String,
}

impl Doc {
    fn edit(mut self, edit: impl FnOnce(&mut pb::EnvelopeHeader)) -> Doc {
        edit(&mut self.header);
        self
    }

    fn chunks(&self) -> Vec<Vec<u8>> {
        self.attachments
            .iter()
            .enumerate()
            .map(|(index, data)| chunk_message(index as u32, data))
            .collect()
    }

    /// The envelope over the given header bytes, then every attachment.
    fn messages(&self, header: Vec<u8>, signature: Vec<u8>) -> Vec<Vec<u8>> {
        let mut messages = vec![envelope_message(pb::SignedEnvelope {
            header,
            signature,
            document_signature: None,
        })];
        messages.extend(self.chunks());
        messages
    }
}

struct Builder<'a> {
    fx: &'a Fixtures,
    cases: Vec<Case>,
    refused_digests: Vec<[u8; 32]>,
    next_number: u32,
}

impl Builder<'_> {
    fn today(&self) -> String {
        self.fx.today.to_string()
    }

    fn key(&self, agency: &str) -> &[u8] {
        &self.fx.keys[agency]
    }

    /// Bytes no fixture carries, so that a kept copy would be noticed.
    fn fresh_bytes(&mut self, length: usize) -> Vec<u8> {
        self.next_number += 1;
        let seed = self.next_number;
        let data: Vec<u8> = (0..length as u32)
            .map(|i| (i.wrapping_mul(2654435761) ^ seed.wrapping_mul(40503)) as u8)
            .collect();
        self.refused_digests.push(sha256(&data));
        data
    }

    /// A valid document from `from` to `to` with one fresh attachment; each
    /// gets its own number so that no row can stand in for another.
    fn doc(&mut self, from: &str, to: &[&str]) -> Doc {
        let data = self.fresh_bytes(64);
        self.doc_with(from, to, vec![("vanban.pdf".into(), data)])
    }

    fn doc_with(&mut self, from: &str, to: &[&str], attachments: Vec<(String, Vec<u8>)>) -> Doc {
        self.next_number += 1;
        let number = self.next_number.to_string();
        self.doc_numbered(from, to, &number, attachments)
    }

    fn doc_numbered(
        &self,
        from: &str,
        to: &[&str],
        number: &str,
        attachments: Vec<(String, Vec<u8>)>,
    ) -> Doc {
        let today = self.today();
        let header = pb::EnvelopeHeader {
            from: Some(pb::Organ {
                organ_id: from.to_owned(),
                organ_name: format!("Agency {from}"),
                ..Default::default()
            }),
            to: to.iter().map(|code| organ(code)).collect(),
            code: Some(pb::DocumentCode {
                number: number.to_owned(),
                notation: NOTATION.into(),
            }),
            promulgation: Some(pb::Promulgation {
                place: "Hà Nội".into(),
                date: today.clone(),
            }),
            document_type: Some(pb::DocumentType {
                r#type: 1,
                name: "Công văn".into(),
            }),
            subject: format!("Văn bản số {number} về việc thử đầu vào xấu"),
            other_info: Some(pb::OtherInfo::default()),
            attachments: attachments
                .iter()
                .map(|(name, data)| info(name, data))
                .collect(),
            ..Default::default()
        };
        Doc {
            id: format!("{from},{},{number}/{NOTATION}", today.replace('-', "/")),
            header,
            attachments: attachments.into_iter().map(|(_, data)| data).collect(),
        }
    }

    fn push(&mut self, case: Case) {
        self.cases.push(case);
    }

    /// `doc` sent by `sender`, its header encoded by prost and signed with
    /// the sender's own key.
    fn send(&mut self, name: String, sender: &'static str, doc: &Doc, code: Code, field: &str) {
        let header = doc.header.encode_to_vec();
        let signature = sign(self.key(sender), &header);
        self.push(
            Case::new(
                name,
                Who::Agency(sender),
                Input::Send(doc.messages(header, signature)),
                code,
                field,
            )
            .probe(doc.id.clone()),
        );
    }

    /// `doc` with header bytes made by hand, signed by the sender.
    fn send_header_bytes(
        &mut self,
        name: String,
        sender: &'static str,
        doc: &Doc,
        header: Vec<u8>,
        code: Code,
        field: &str,
    ) -> Case {
        let signature = sign(self.key(sender), &header);
        Case::new(
            name,
            Who::Agency(sender),
            Input::Send(doc.messages(header, signature)),
            code,
            field,
        )
        .probe(doc.id.clone())
    }

    fn move_request(
        &mut self,
        name: String,
        who: Who,
        request: pb::MoveStatusRequest,
        code: Code,
        field: &str,
    ) -> Case {
        Case::new(
            name,
            who,
            Input::Request(Method::MoveStatus, request.encode_to_vec()),
            code,
            field,
        )
    }

    /// Ill-formed agency codes wherever a code is read: the sender, the only
    /// recipient, the recipient of a status move, a report's focus.
    fn agency_codes(&mut self) {
        let f1 = self.fx.f1.clone();
        for (why, code) in ill_formed_agency_codes() {
            let doc = self.doc(G22, &[G12]).edit(|h| {
                h.from.as_mut().unwrap().organ_id = code.clone();
            });
            self.send(
                format!("from.organ_id is {why}"),
                G22,
                &doc,
                Code::InvalidArgument,
                "from.organ_id",
            );

            // With no other recipient, nothing can be routed.
            let doc = self.doc(G22, &[&code]);
            self.send(
                format!("the only recipient is {why}"),
                G22,
                &doc,
                Code::InvalidArgument,
                "to",
            );

            // An empty recipient or focus means "the caller" or "none".
            if code.is_empty() {
                continue;
            }
            let case = self.move_request(
                format!("move_status recipient is {why}"),
                Who::Agency(H41),
                pb::MoveStatusRequest {
                    document_id: f1.clone(),
                    recipient: code.clone(),
                    status: 3,
                    reason: String::new(),
                },
                Code::InvalidArgument,
                "recipient",
            );
            self.push(case);

            self.push(Case::new(
                format!("report focus_recipient is {why}"),
                Who::Operator,
                Input::Request(
                    Method::Report,
                    pb::ReportRequest {
                        focus_recipient: code.clone(),
                        ..Default::default()
                    }
                    .encode_to_vec(),
                ),
                Code::InvalidArgument,
                "focus_recipient",
            ));
        }
    }

    /// Unknown, self-addressed, duplicated and too many recipients.
    fn recipients(&mut self) {
        for (why, code) in [
            ("an unregistered agency", H01),
            ("a code no one holds", "000.00.00.Z99"),
            ("an unregistered unit of a registered body", "000.00.18.G12"),
            ("an unregistered commune", "000.07.05.H41"),
        ] {
            let doc = self.doc(G22, &[code]);
            self.send(
                format!("the only recipient is {why}"),
                G22,
                &doc,
                Code::InvalidArgument,
                "to",
            );
        }
        let doc = self.doc(G22, &[H01, "000.00.00.Z99", "x"]);
        self.send(
            "no recipient is registered or well formed".into(),
            G22,
            &doc,
            Code::InvalidArgument,
            "to",
        );

        for sender in REGISTERED {
            let doc = self.doc(sender, &[sender]);
            self.send(
                format!("{sender} addresses itself"),
                sender,
                &doc,
                Code::InvalidArgument,
                "to[0].organ_id",
            );
        }
        for (to, field) in [
            (vec![G12, G22], "to[1].organ_id"),
            (vec![G12, H41, G22], "to[2].organ_id"),
            (vec![H01, G22], "to[1].organ_id"),
        ] {
            let doc = self.doc(G22, &to);
            self.send(
                format!("the sender is among recipients {to:?}"),
                G22,
                &doc,
                Code::InvalidArgument,
                field,
            );
        }

        for (to, field) in [
            (vec![G12, G12], "to[1].organ_id"),
            (vec![G12, H41, G12], "to[2].organ_id"),
            (vec![G12, H41, H41], "to[2].organ_id"),
            (vec![H01, H01], "to[1].organ_id"),
            (vec!["x", G12, "x"], "to[2].organ_id"),
            (vec![G12, G17, G09, H41, G17], "to[4].organ_id"),
        ] {
            let doc = self.doc(G22, &to);
            self.send(
                format!("duplicated recipients {to:?}"),
                G22,
                &doc,
                Code::InvalidArgument,
                field,
            );
        }

        // Distinct, well-formed codes: only their number is wrong.
        let many: Vec<String> = (1..=99)
            .flat_map(|unit| (1..=99).map(move |body| format!("000.00.{unit:02}.H{body:02}")))
            .take(2_000)
            .collect();
        for count in [1_001, 2_000] {
            let to: Vec<&str> = many[..count].iter().map(String::as_str).collect();
            let doc = self.doc(G22, &to);
            self.send(
                format!("{count} recipients"),
                G22,
                &doc,
                Code::ResourceExhausted,
                "to",
            );
        }
    }

    /// Every text field one character over its limit, with control
    /// characters, and blank where it is required.
    fn text_fields(&mut self) {
        type Edit = fn(&mut pb::EnvelopeHeader, String);
        let fields: Vec<(&str, usize, Edit)> = vec![
            ("from.organ_name", 500, |h, t| {
                h.from.as_mut().unwrap().organ_name = t
            }),
            ("from.address", 500, |h, t| {
                h.from.as_mut().unwrap().address = t
            }),
            ("from.email", 500, |h, t| h.from.as_mut().unwrap().email = t),
            ("from.phone", 500, |h, t| h.from.as_mut().unwrap().phone = t),
            ("to[0].organ_name", 500, |h, t| h.to[0].organ_name = t),
            ("to[0].address", 500, |h, t| h.to[0].address = t),
            ("to[0].email", 500, |h, t| h.to[0].email = t),
            ("to[0].phone", 500, |h, t| h.to[0].phone = t),
            ("promulgation.place", 500, |h, t| {
                h.promulgation.as_mut().unwrap().place = t
            }),
            ("document_type.name", 500, |h, t| {
                h.document_type.as_mut().unwrap().name = t
            }),
            ("subject", 2_000, |h, t| h.subject = t),
            ("attachments[0].name", 255, |h, t| {
                h.attachments[0].name = format!("{t}.pdf")
            }),
            ("attachments[0].media_type", 100, |h, t| {
                h.attachments[0].media_type = t
            }),
        ];
        for (field, chars_max, edit) in fields {
            for (what, character) in [("Latin", 'x'), ("Vietnamese", 'ệ')] {
                // Attachment names get a 4-character extension added.
                let length = if field == "attachments[0].name" {
                    chars_max - 3
                } else {
                    chars_max + 1
                };
                let text: String = std::iter::repeat_n(character, length).collect();
                let doc = self.doc(G22, &[G12]).edit(|h| edit(h, text));
                self.send(
                    format!("{field} is {} {what} characters", chars_max + 1),
                    G22,
                    &doc,
                    Code::InvalidArgument,
                    field,
                );
            }
            for (what, control) in [
                ("NUL", '\0'),
                ("BEL", '\u{7}'),
                ("ESC", '\u{1b}'),
                ("DEL", '\u{7f}'),
                ("NEL", '\u{85}'),
            ] {
                let text = format!("Văn bản{control}");
                let doc = self.doc(G22, &[G12]).edit(|h| edit(h, text));
                self.send(
                    format!("{field} contains {what}"),
                    G22,
                    &doc,
                    Code::InvalidArgument,
                    field,
                );
            }
        }
        for (what, blank) in [("empty", ""), ("spaces", "   "), ("newlines", "\n\n")] {
            let doc = self.doc(G22, &[G12]).edit(|h| h.subject = blank.into());
            self.send(
                format!("subject is {what}"),
                G22,
                &doc,
                Code::InvalidArgument,
                "subject",
            );
            let doc = self
                .doc(G22, &[G12])
                .edit(|h| h.attachments[0].media_type = blank.into());
            self.send(
                format!("attachments[0].media_type is {what}"),
                G22,
                &doc,
                Code::InvalidArgument,
                "attachments[0].media_type",
            );
        }
    }

    /// Invalid UTF-8 in every string field of the signed header: the header
    /// is well signed, but it does not decode.
    fn header_utf8(&mut self) {
        // (field path, EnvelopeHeader field, nested field, prost's name for it)
        let organ_fields = [
            (1, "organ_id"),
            (2, "organ_name"),
            (3, "address"),
            (4, "email"),
            (5, "phone"),
        ];
        let mut fields: Vec<(String, u32, Option<u32>, String)> = Vec::new();
        for (outer, outer_name) in [(1, "from"), (2, "to")] {
            for (inner, inner_name) in organ_fields {
                fields.push((
                    format!("{outer_name}.{inner_name}"),
                    outer,
                    Some(inner),
                    format!("Organ.{inner_name}"),
                ));
            }
        }
        for (outer, outer_name, inner, inner_name, message) in [
            (3, "code", 1, "number", "DocumentCode"),
            (3, "code", 2, "notation", "DocumentCode"),
            (4, "promulgation", 1, "place", "Promulgation"),
            (4, "promulgation", 2, "date", "Promulgation"),
            (5, "document_type", 2, "name", "DocumentType"),
            (13, "attachments", 1, "name", "AttachmentInfo"),
            (13, "attachments", 2, "media_type", "AttachmentInfo"),
        ] {
            fields.push((
                format!("{outer_name}.{inner_name}"),
                outer,
                Some(inner),
                format!("{message}.{inner_name}"),
            ));
        }
        for (number, name) in [
            (6, "subject"),
            (8, "due_date"),
            (10, "response_for"),
            (12, "business_refs"),
        ] {
            fields.push((
                name.to_string(),
                number,
                None,
                format!("EnvelopeHeader.{name}"),
            ));
        }
        for (path, outer, inner, prost_name) in fields {
            for (what, bad) in wire::INVALID_UTF8 {
                let doc = self.doc(G22, &[G12]);
                let mut header = doc.header.encode_to_vec();
                // A later occurrence of a field is decoded too, so appending
                // puts the bad string where the decoder must read it.
                header.extend(match inner {
                    Some(inner) => wire::len_field(outer, &wire::len_field(inner, bad)),
                    None => wire::len_field(outer, bad),
                });
                let case = self
                    .send_header_bytes(
                        format!("{path} holds {what}"),
                        G22,
                        &doc,
                        header,
                        Code::InvalidArgument,
                        "envelope.header",
                    )
                    .detail(prost_name.clone())
                    .detail("UTF-8");
                self.push(case);
            }
        }
    }

    /// Signed headers that are not protobuf: wrong wire types for every
    /// field, truncation inside every field, and bytes no message decodes.
    fn header_protobuf(&mut self) {
        let header_fields = [
            (1, "from", LEN),
            (2, "to", LEN),
            (3, "code", LEN),
            (4, "promulgation", LEN),
            (5, "document_type", LEN),
            (6, "subject", LEN),
            (7, "steering_type", VARINT),
            (8, "due_date", LEN),
            (9, "other_info", LEN),
            (10, "response_for", LEN),
            (11, "business_type", VARINT),
            (12, "business_refs", LEN),
            (13, "attachments", LEN),
        ];
        for (number, name, declared) in header_fields {
            for wire_type in wire::wrong_wire_types(declared) {
                let doc = self.doc(G22, &[G12]);
                let mut header = doc.header.encode_to_vec();
                header.extend(wire::field_of_wire_type(number, wire_type));
                let case = self
                    .send_header_bytes(
                        format!("header field {name} has wire type {wire_type}"),
                        G22,
                        &doc,
                        header,
                        Code::InvalidArgument,
                        "envelope.header",
                    )
                    .detail(format!("EnvelopeHeader.{name}"))
                    .detail("wire type");
                self.push(case);
            }
        }
        for (outer, message, number, name, declared) in [
            (1, "Organ", 1, "organ_id", LEN),
            (3, "DocumentCode", 1, "number", LEN),
            (4, "Promulgation", 2, "date", LEN),
            // prost spells the field as its Rust name.
            (5, "DocumentType", 1, "r#type", VARINT),
            (9, "OtherInfo", 1, "priority", VARINT),
            (9, "OtherInfo", 2, "page_count", VARINT),
            (13, "AttachmentInfo", 3, "size_bytes", VARINT),
            (13, "AttachmentInfo", 4, "sha256", LEN),
        ] {
            let wire_type = wire::wrong_wire_types(declared)[0];
            let doc = self.doc(G22, &[G12]);
            let mut header = doc.header.encode_to_vec();
            header.extend(wire::len_field(
                outer,
                &wire::field_of_wire_type(number, wire_type),
            ));
            let case = self
                .send_header_bytes(
                    format!("{message}.{name} has wire type {wire_type}"),
                    G22,
                    &doc,
                    header,
                    Code::InvalidArgument,
                    "envelope.header",
                )
                .detail(format!("{message}.{name}"));
            self.push(case);
        }

        // Cut inside every field of a good header: after its key, and halfway.
        let doc = self.doc(G22, &[G12]);
        let header = doc.header.encode_to_vec();
        for (number, start, end) in wire::field_spans(&header) {
            let name = header_fields
                .iter()
                .find(|(n, _, _)| *n == number)
                .map(|(_, name, _)| *name)
                .expect("a known field");
            let mut cuts = vec![start + 1];
            if end - start > 4 {
                cuts.push((start + end) / 2);
            }
            for cut in cuts {
                let case = self
                    .send_header_bytes(
                        format!("header cut at byte {cut} inside {name}"),
                        G22,
                        &doc,
                        header[..cut].to_vec(),
                        Code::InvalidArgument,
                        "envelope.header",
                    )
                    .detail(format!("EnvelopeHeader.{name}"));
                self.push(case);
            }
        }
        for (what, bytes) in wire::garbage() {
            let doc = self.doc(G22, &[G12]);
            let mut header = doc.header.encode_to_vec();
            header.extend(bytes);
            let case = self.send_header_bytes(
                format!("header ends with {what}"),
                G22,
                &doc,
                header,
                Code::InvalidArgument,
                "envelope.header",
            );
            self.push(case);
        }
    }

    /// Required fields left out.
    fn missing_fields(&mut self) {
        type Edit = fn(&mut pb::EnvelopeHeader);
        let edits: Vec<(&str, Edit, &str)> = vec![
            ("no from", |h| h.from = None, "from"),
            (
                "an empty from.organ_id",
                |h| h.from.as_mut().unwrap().organ_id.clear(),
                "from.organ_id",
            ),
            ("no code", |h| h.code = None, "code"),
            (
                "an empty number",
                |h| h.code.as_mut().unwrap().number.clear(),
                "code",
            ),
            (
                "an empty notation",
                |h| h.code.as_mut().unwrap().notation.clear(),
                "code",
            ),
            (
                "no promulgation",
                |h| h.promulgation = None,
                "promulgation.date",
            ),
            (
                "an empty promulgation date",
                |h| h.promulgation.as_mut().unwrap().date.clear(),
                "promulgation.date",
            ),
            ("no recipients", |h| h.to.clear(), "to"),
            ("no attachments", |h| h.attachments.clear(), "attachments"),
            (
                "an empty attachment name",
                |h| h.attachments[0].name.clear(),
                "attachments[0].name",
            ),
            (
                "an empty digest",
                |h| h.attachments[0].sha256.clear(),
                "attachments[0].sha256",
            ),
            (
                "a revoke without the document it revokes",
                |h| {
                    h.business_type = 1;
                    h.attachments.clear();
                },
                "business_refs",
            ),
            (
                "an update without the document it updates",
                |h| h.business_type = 2,
                "business_refs",
            ),
            (
                "a replace without the document it replaces",
                |h| h.business_type = 3,
                "business_refs",
            ),
        ];
        for (what, edit, field) in edits {
            let doc = self.doc(G22, &[G12]).edit(edit);
            self.send(what.into(), G22, &doc, Code::InvalidArgument, field);
        }
        // Signed empty bytes decode to a header with nothing in it.
        let doc = self.doc(G22, &[G12]);
        let case = self.send_header_bytes(
            "an empty header, signed".into(),
            G22,
            &doc,
            Vec::new(),
            Code::InvalidArgument,
            "from",
        );
        self.push(case);
    }

    /// Malformed, future and absurd dates wherever a date is read.
    fn dates(&mut self) {
        for (why, date) in ill_formed_dates() {
            let doc = self
                .doc(G22, &[G12])
                .edit(|h| h.promulgation.as_mut().unwrap().date = date.into());
            self.send(
                format!("promulgation.date is {why}"),
                G22,
                &doc,
                Code::InvalidArgument,
                "promulgation.date",
            );
            let doc = self.doc(G22, &[G12]).edit(|h| h.due_date = date.into());
            self.send(
                format!("due_date is {why}"),
                G22,
                &doc,
                Code::InvalidArgument,
                "due_date",
            );
            for (field, counts) in [
                (
                    "from_date",
                    pb::CountsRequest {
                        from_date: date.into(),
                        ..Default::default()
                    },
                ),
                (
                    "to_date",
                    pb::CountsRequest {
                        to_date: date.into(),
                        ..Default::default()
                    },
                ),
            ] {
                self.push(Case::new(
                    format!("counts {field} is {why}"),
                    Who::Agency(G12),
                    Input::Request(Method::Counts, counts.encode_to_vec()),
                    Code::InvalidArgument,
                    field,
                ));
                let report = pb::ReportRequest {
                    from_date: counts.from_date.clone(),
                    to_date: counts.to_date.clone(),
                    ..Default::default()
                };
                self.push(Case::new(
                    format!("report {field} is {why}"),
                    Who::Operator,
                    Input::Request(Method::Report, report.encode_to_vec()),
                    Code::InvalidArgument,
                    field,
                ));
            }
        }
        let today = self.fx.today;
        let days = |n: i64| (today + time::Duration::days(n)).to_string();
        for (why, date) in [
            ("the day after tomorrow", days(2)),
            ("next month", days(30)),
            ("next year", days(366)),
            ("year 2999", "2999-12-31".into()),
            ("year 9999", "9999-12-31".into()),
            ("before 1945", "1944-12-31".into()),
            ("year 1900", "1900-01-01".into()),
            ("year 1", "0001-01-01".into()),
            ("year 0", "0000-01-01".into()),
        ] {
            let doc = self
                .doc(G22, &[G12])
                .edit(|h| h.promulgation.as_mut().unwrap().date = date.clone());
            self.send(
                format!("promulgation.date is {why}"),
                G22,
                &doc,
                Code::InvalidArgument,
                "promulgation.date",
            );
        }
        for (why, date) in [
            ("the day before promulgation", days(-1)),
            ("a year before promulgation", days(-365)),
            ("eleven years after promulgation", days(11 * 366)),
            ("year 9999", "9999-12-31".into()),
        ] {
            let doc = self.doc(G22, &[G12]).edit(|h| h.due_date = date.clone());
            self.send(
                format!("due_date is {why}"),
                G22,
                &doc,
                Code::InvalidArgument,
                "due_date",
            );
        }
    }

    /// Bad numbers and notations, business types and document references.
    fn codes_and_references(&mut self) {
        for (why, number, notation) in [
            ("a slash in the number", "78/16", NOTATION),
            ("a comma in the number", "78,16", NOTATION),
            ("a slash in the notation", "7816", "VPCP/TTĐT"),
            ("a comma in the notation", "7816", "VPCP,TTĐT"),
            ("a NUL in the number", "78\u{0}16", NOTATION),
            ("a tab in the notation", "7816", "VPCP\tTTĐT"),
            ("a leading space in the number", " 7816", NOTATION),
            ("a trailing space in the notation", "7816", "VPCP-TTĐT "),
            ("blank number", "  ", NOTATION),
            ("a code of 101 bytes", "12345678901", &"A".repeat(89)),
            ("a code of 102 bytes in Vietnamese", "1", &"Đ".repeat(50)),
        ] {
            let doc = self.doc(G22, &[G12]).edit(|h| {
                h.code = Some(pb::DocumentCode {
                    number: number.into(),
                    notation: notation.into(),
                })
            });
            self.send(
                format!("code has {why}"),
                G22,
                &doc,
                Code::InvalidArgument,
                "code",
            );
        }
        for business_type in [4, 5, 100, -1, i32::MIN, i32::MAX] {
            let doc = self
                .doc(G22, &[G12])
                .edit(|h| h.business_type = business_type);
            self.send(
                format!("business_type {business_type}"),
                G22,
                &doc,
                Code::InvalidArgument,
                "business_type",
            );
        }
        let f1 = self.fx.f1.clone();
        for (why, id) in ill_formed_document_ids() {
            let doc = self
                .doc(G22, &[G12])
                .edit(|h| h.response_for = vec![id.clone()]);
            self.send(
                format!("response_for[0] is {why}"),
                G22,
                &doc,
                Code::InvalidArgument,
                "response_for[0]",
            );
            let doc = self.doc(G22, &[G12]).edit(|h| {
                h.business_type = 2;
                h.business_refs = vec![f1.clone(), f1.clone(), id.clone()];
            });
            self.send(
                format!("business_refs[2] is {why}"),
                G22,
                &doc,
                Code::InvalidArgument,
                "business_refs[2]",
            );
        }
        for field in ["response_for", "business_refs"] {
            let doc = self.doc(G22, &[G12]).edit(|h| {
                let ids = vec![f1.clone(); 101];
                if field == "response_for" {
                    h.response_for = ids;
                } else {
                    h.business_type = 3;
                    h.business_refs = ids;
                }
            });
            self.send(
                format!("{field} names 101 documents"),
                G22,
                &doc,
                Code::ResourceExhausted,
                field,
            );
        }
    }

    /// Attachment entries of the header that cannot be right.
    fn attachment_headers(&mut self) {
        for (why, name) in [
            ("a dot", "."),
            ("two dots", ".."),
            ("a hidden file", ".htaccess"),
            ("a path", "thu-muc/vanban.pdf"),
            ("a parent path", "../vanban.pdf"),
            ("an absolute path", "/etc/passwd"),
            ("a Windows path", "C:\\vanban.pdf"),
            ("a backslash", "van\\ban.pdf"),
            ("blank", "   "),
        ] {
            let doc = self
                .doc(G22, &[G12])
                .edit(|h| h.attachments[0].name = name.into());
            self.send(
                format!("attachments[0].name is {why}"),
                G22,
                &doc,
                Code::InvalidArgument,
                "attachments[0].name",
            );
        }
        for length in [1, 16, 31, 33, 64] {
            let doc = self
                .doc(G22, &[G12])
                .edit(|h| h.attachments[0].sha256 = vec![7; length]);
            self.send(
                format!("attachments[0].sha256 is {length} bytes"),
                G22,
                &doc,
                Code::InvalidArgument,
                "attachments[0].sha256",
            );
        }
        let (a, b, c) = (
            self.fresh_bytes(10),
            self.fresh_bytes(20),
            self.fresh_bytes(30),
        );
        for (names, field) in [
            (["a.pdf", "a.pdf", "c.pdf"], "attachments[1].name"),
            (["a.pdf", "b.pdf", "a.pdf"], "attachments[2].name"),
            (["a.pdf", "b.pdf", "b.pdf"], "attachments[2].name"),
        ] {
            let attachments = vec![
                (names[0].to_string(), a.clone()),
                (names[1].to_string(), b.clone()),
                (names[2].to_string(), c.clone()),
            ];
            let doc = self.doc_with(G22, &[G12], attachments);
            self.send(
                format!("attachment names {names:?}"),
                G22,
                &doc,
                Code::InvalidArgument,
                field,
            );
        }
        let data = self.fresh_bytes(8);
        let attachments: Vec<(String, Vec<u8>)> = (0..101)
            .map(|i| (format!("phuluc-{i}.pdf"), data.clone()))
            .collect();
        let doc = self.doc_with(G22, &[G12], attachments);
        self.send(
            "101 attachments".into(),
            G22,
            &doc,
            Code::ResourceExhausted,
            "attachments",
        );
        for (why, size) in [
            ("one byte over 64 MiB", 64 * 1024 * 1024 + 1),
            ("a terabyte", 1u64 << 40),
            ("u64::MAX", u64::MAX),
        ] {
            let doc = self
                .doc(G22, &[G12])
                .edit(|h| h.attachments[0].size_bytes = size);
            self.send(
                format!("attachments[0].size_bytes is {why}"),
                G22,
                &doc,
                Code::ResourceExhausted,
                "attachments[0].size_bytes",
            );
        }
        let (a, b) = (self.fresh_bytes(10), self.fresh_bytes(10));
        let doc = self
            .doc_with(G22, &[G12], vec![("a.pdf".into(), a), ("b.pdf".into(), b)])
            .edit(|h| {
                h.attachments[0].size_bytes = 40 * 1024 * 1024;
                h.attachments[1].size_bytes = 30 * 1024 * 1024;
            });
        self.send(
            "two attachments that together pass 64 MiB".into(),
            G22,
            &doc,
            Code::ResourceExhausted,
            "attachments[1].size_bytes",
        );
    }

    /// Names that would reach a recipient's file system or screen as
    /// something else: the rule of `truc_domain::file_name`, row by row.
    fn attachment_names(&mut self) {
        let mut names: Vec<(String, String)> = [
            ("a line feed", "van\nban.pdf"),
            ("a line feed at the end", "vanban.pdf\n"),
            ("a tab", "van\tban.pdf"),
            ("a carriage return", "van\rban.pdf"),
            ("a right-to-left override", "hoadon\u{202e}fdp.exe"),
            ("a left-to-right override", "hoadon\u{202d}.pdf"),
            ("a right-to-left isolate", "hoadon\u{2067}fdp.exe"),
            ("a right-to-left mark", "hoadon\u{200f}.pdf"),
            ("an Arabic letter mark", "hoadon\u{61c}.pdf"),
            ("a zero-width space", "van\u{200b}ban.pdf"),
            ("a zero-width joiner", "van\u{200d}ban.pdf"),
            ("a byte-order mark", "\u{feff}vanban.pdf"),
            ("a soft hyphen", "van\u{ad}ban.pdf"),
            ("a line separator", "van\u{2028}ban.pdf"),
            ("a paragraph separator", "van\u{2029}ban.pdf"),
            ("a no-break space", "van\u{a0}ban.pdf"),
            ("an ideographic space", "van\u{3000}ban.pdf"),
            ("a private-use character", "van\u{e000}ban.pdf"),
            ("an unassigned code point", "van\u{378}ban.pdf"),
            ("a noncharacter", "van\u{fffe}ban.pdf"),
            ("a colon (an NTFS stream)", "vanban.pdf:evil.exe"),
            ("an asterisk", "van*ban.pdf"),
            ("a question mark", "vanban?.pdf"),
            ("a double quote", "\"vanban\".pdf"),
            ("angle brackets", "<vanban>.pdf"),
            ("a vertical bar", "van|ban.pdf"),
            ("CON", "CON"),
            ("con in lower case", "con"),
            ("NUL.txt", "NUL.txt"),
            ("nul.tar.gz", "nul.tar.gz"),
            ("Aux.pdf", "Aux.pdf"),
            ("PRN.docx", "PRN.docx"),
            ("COM1.pdf", "COM1.pdf"),
            ("com9", "com9"),
            ("LPT1.txt", "LPT1.txt"),
            ("COM with a superscript one", "COM\u{b9}.txt"),
            ("CONIN$", "CONIN$"),
            ("a reserved name before spaces", "NUL .txt"),
            ("a trailing dot", "vanban.exe."),
            ("a trailing space", "vanban.pdf "),
            ("a leading space", " vanban.pdf"),
            (
                "decomposed Vietnamese (not NFC)",
                "Quye\u{302}\u{301}t \u{111}i\u{323}nh.pdf",
            ),
        ]
        .into_iter()
        .map(|(why, name)| (why.to_string(), name.to_string()))
        .collect();
        names.push((
            "201 ASCII characters".into(),
            format!("{}.pdf", "x".repeat(197)),
        ));
        names.push(("86 Vietnamese letters, 258 bytes".into(), "ệ".repeat(86)));
        for (why, name) in names {
            let doc = self
                .doc(G22, &[G12])
                .edit(|h| h.attachments[0].name = name.clone());
            self.send(
                format!("attachments[0].name has {why}"),
                G22,
                &doc,
                Code::InvalidArgument,
                "attachments[0].name",
            );
        }
        let (a, b) = (self.fresh_bytes(10), self.fresh_bytes(20));
        for (first, second) in [("vanban.pdf", "VanBan.PDF"), ("Đơn.pdf", "đơn.pdf")] {
            let attachments = vec![
                (first.to_string(), a.clone()),
                (second.to_string(), b.clone()),
            ];
            let doc = self.doc_with(G22, &[G12], attachments);
            self.send(
                format!("attachment names {first:?} and {second:?} differ only by case"),
                G22,
                &doc,
                Code::InvalidArgument,
                "attachments[1].name",
            );
        }
    }

    /// Text that would forge a log line or reach the log raw if a refusal
    /// repeated it: each row is refused, and (as for every row) its message
    /// holds no control or bidirectional character.
    fn log_injection(&mut self) {
        const FORGED: &str =
            "\n2026-12-06T00:00:00.000000Z  WARN truc::security: security event kind=\"forged\"";
        let f1 = self.fx.f1.clone();
        let forged_code = format!("000.00.00.G22{FORGED}");
        let forged_id = format!("{f1}{FORGED}");
        for (why, number, notation) in [
            ("a forged log line", "7816", format!("VPCP{FORGED}")),
            ("a NUL byte", "7816", "VPCP\0TTĐT".to_string()),
            ("an escape sequence", "7816", "VPCP\u{1b}[2J".to_string()),
            (
                "a right-to-left override",
                "7816",
                "VPCP\u{202e}TTĐT".to_string(),
            ),
        ] {
            let doc = self.doc(G22, &[G12]).edit(|h| {
                h.code = Some(pb::DocumentCode {
                    number: number.into(),
                    notation: notation.clone(),
                })
            });
            self.send(
                format!("notation with {why}"),
                G22,
                &doc,
                Code::InvalidArgument,
                "code",
            );
        }
        let doc = self.doc(G22, &[G12]).edit(|h| {
            h.code = Some(pb::DocumentCode {
                number: format!("7816{FORGED}"),
                notation: NOTATION.into(),
            })
        });
        self.send(
            "number with a forged log line".into(),
            G22,
            &doc,
            Code::InvalidArgument,
            "code",
        );
        let doc = self.doc(G22, &[G12]).edit(|h| {
            h.from.as_mut().unwrap().organ_id = forged_code.clone();
        });
        self.send(
            "from.organ_id with a forged log line".into(),
            G22,
            &doc,
            Code::InvalidArgument,
            "from.organ_id",
        );
        let doc = self.doc(G22, &[&forged_code]);
        self.send(
            "the only recipient with a forged log line".into(),
            G22,
            &doc,
            Code::InvalidArgument,
            "to",
        );
        let doc = self.doc(G22, &[G12, &forged_code, &forged_code]);
        self.send(
            "a recipient with a forged log line, twice".into(),
            G22,
            &doc,
            Code::InvalidArgument,
            "to[2].organ_id",
        );
        let doc = self
            .doc(G22, &[G12])
            .edit(|h| h.promulgation.as_mut().unwrap().date = format!("2026-12-06{FORGED}"));
        self.send(
            "promulgation.date with a forged log line".into(),
            G22,
            &doc,
            Code::InvalidArgument,
            "promulgation.date",
        );
        let doc = self
            .doc(G22, &[G12])
            .edit(|h| h.response_for = vec![forged_id.clone()]);
        self.send(
            "response_for[0] with a forged log line".into(),
            G22,
            &doc,
            Code::InvalidArgument,
            "response_for[0]",
        );
        self.push(Case::new(
            "get_status of an id with a forged log line",
            Who::Agency(G22),
            Input::Request(
                Method::GetStatus,
                pb::GetStatusRequest {
                    document_id: forged_id.clone(),
                }
                .encode_to_vec(),
            ),
            Code::InvalidArgument,
            "document_id",
        ));
        let case = self.move_request(
            "move_status recipient with a forged log line".into(),
            Who::Agency(H41),
            pb::MoveStatusRequest {
                document_id: f1.clone(),
                recipient: forged_code.clone(),
                status: 3,
                reason: String::new(),
            },
            Code::InvalidArgument,
            "recipient",
        );
        self.push(case);
        let case = self.move_request(
            "move_status document_id with a NUL byte".into(),
            Who::Agency(H41),
            pb::MoveStatusRequest {
                document_id: format!("{f1}\0"),
                recipient: String::new(),
                status: 3,
                reason: String::new(),
            },
            Code::InvalidArgument,
            "document_id",
        );
        self.push(case);
        self.push(Case::new(
            "counts from_date with a forged log line",
            Who::Operator,
            Input::Request(
                Method::Counts,
                pb::CountsRequest {
                    from_date: format!("2026-12-06{FORGED}"),
                    to_date: String::new(),
                }
                .encode_to_vec(),
            ),
            Code::InvalidArgument,
            "from_date",
        ));
    }

    /// The attachment stream disagreeing with the signed header: digests,
    /// sizes, order, extra and missing chunks.
    fn attachment_streams(&mut self) {
        type Stream = fn(&Doc) -> Vec<Vec<u8>>;
        let streams: Vec<(&str, Stream, &str)> = vec![
            (
                "the first attachment's bytes changed",
                |d| {
                    let mut bytes = d.attachments[0].clone();
                    bytes[100] ^= 1;
                    vec![
                        chunk_message(0, &bytes),
                        chunk_message(1, &d.attachments[1]),
                    ]
                },
                "attachments[0].sha256",
            ),
            (
                "the second attachment's bytes changed",
                |d| {
                    let mut bytes = d.attachments[1].clone();
                    bytes[0] ^= 0x80;
                    vec![
                        chunk_message(0, &d.attachments[0]),
                        chunk_message(1, &bytes),
                    ]
                },
                "attachments[1].sha256",
            ),
            (
                "the attachments swapped",
                |d| {
                    vec![
                        chunk_message(0, &d.attachments[1]),
                        chunk_message(1, &d.attachments[0]),
                    ]
                },
                "attachments[0].size_bytes",
            ),
            (
                "a byte missing at the end",
                |d| {
                    let bytes = &d.attachments[0][..2999];
                    vec![chunk_message(0, bytes), chunk_message(1, &d.attachments[1])]
                },
                "attachments[0].size_bytes",
            ),
            (
                "a byte too many",
                |d| {
                    let mut bytes = d.attachments[0].clone();
                    bytes.push(0);
                    vec![
                        chunk_message(0, &bytes),
                        chunk_message(1, &d.attachments[1]),
                    ]
                },
                "attachments[0].size_bytes",
            ),
            (
                "an extra chunk after the last byte",
                |d| {
                    vec![
                        chunk_message(0, &d.attachments[0]),
                        chunk_message(0, b"more"),
                        chunk_message(1, &d.attachments[1]),
                    ]
                },
                "attachments[0].size_bytes",
            ),
            (
                "an empty attachment sent for a non-empty one",
                |d| vec![chunk_message(0, b""), chunk_message(1, &d.attachments[1])],
                "attachments[0].size_bytes",
            ),
            (
                "the second attachment first",
                |d| {
                    vec![
                        chunk_message(1, &d.attachments[1]),
                        chunk_message(0, &d.attachments[0]),
                    ]
                },
                "chunk.index",
            ),
            (
                "back to the first attachment after the second",
                |d| {
                    vec![
                        chunk_message(0, &d.attachments[0]),
                        chunk_message(1, &d.attachments[1]),
                        chunk_message(0, b"x"),
                    ]
                },
                "chunk.index",
            ),
            (
                "a third attachment the header does not list",
                |d| {
                    vec![
                        chunk_message(0, &d.attachments[0]),
                        chunk_message(1, &d.attachments[1]),
                        chunk_message(2, b"extra"),
                    ]
                },
                "chunk.index",
            ),
            (
                "an index far past the list",
                |d| {
                    vec![
                        chunk_message(0, &d.attachments[0]),
                        chunk_message(u32::MAX, b"x"),
                    ]
                },
                "chunk.index",
            ),
            ("no chunks at all", |_| Vec::new(), "attachments[0]"),
            (
                "the second attachment missing",
                |d| vec![chunk_message(0, &d.attachments[0])],
                "attachments[1]",
            ),
            (
                "an envelope where a chunk belongs",
                |d| {
                    vec![
                        chunk_message(0, &d.attachments[0]),
                        envelope_message(pb::SignedEnvelope::default()),
                    ]
                },
                "chunk",
            ),
            (
                "a message with no part after the envelope",
                |d| {
                    vec![
                        chunk_message(0, &d.attachments[0]),
                        pb::SendRequest { part: None }.encode_to_vec(),
                    ]
                },
                "chunk",
            ),
        ];
        for (what, stream, field) in streams {
            // One two-attachment document per row, so each row's bytes are its own.
            let first = self.fresh_bytes(3000);
            let second = self.fresh_bytes(500);
            let doc = self.doc_with(
                G22,
                &[G12],
                vec![("vanban.pdf".into(), first), ("phuluc.pdf".into(), second)],
            );
            let header = doc.header.encode_to_vec();
            let signature = sign(self.key(G22), &header);
            let mut messages = vec![envelope_message(pb::SignedEnvelope {
                header,
                signature,
                document_signature: None,
            })];
            messages.extend(stream(&doc));
            self.push(
                Case::new(
                    format!("stream: {what}"),
                    Who::Agency(G22),
                    Input::Send(messages),
                    Code::InvalidArgument,
                    field,
                )
                .probe(doc.id.clone()),
            );
        }

        // Claims the digest of an attachment already stored, with other
        // bytes: the stored one must stay as it was.
        let stored = self.fx.stored_attachment.clone();
        let mut impostor = stored.clone();
        impostor[0] ^= 1;
        let doc = self
            .doc(G22, &[G12])
            .edit(|h| h.attachments[0] = info("vanban.pdf", &stored));
        let doc = Doc {
            attachments: vec![impostor],
            ..doc
        };
        self.send(
            "stream: other bytes under a stored attachment's digest".into(),
            G22,
            &doc,
            Code::InvalidArgument,
            "attachments[0].sha256",
        );

        // A revoke carries no attachment, so any chunk is one too many.
        let f1 = self.fx.f1.clone();
        let doc = self.doc(G22, &[G12]).edit(|h| {
            h.business_type = 1;
            h.business_refs = vec![f1];
            h.attachments.clear();
        });
        let doc = Doc {
            attachments: vec![b"x".to_vec()],
            ..doc
        };
        self.send(
            "stream: a chunk for a revoke that lists no attachment".into(),
            G22,
            &doc,
            Code::InvalidArgument,
            "chunk.index",
        );

        // Out of step before the envelope.
        for (what, messages) in [
            ("an empty stream", Vec::new()),
            ("a chunk first", vec![chunk_message(0, b"x")]),
            (
                "a message with no part first",
                vec![pb::SendRequest { part: None }.encode_to_vec()],
            ),
        ] {
            self.push(Case::new(
                format!("stream: {what}"),
                Who::Agency(G22),
                Input::Send(messages),
                Code::InvalidArgument,
                "envelope",
            ));
        }
    }

    /// Messages and payloads over the hub's size limits.
    fn sizes(&mut self) {
        const MIB: usize = 1024 * 1024;
        // The header limit is checked before anything else, signature included.
        for (why, length) in [("one byte over 64 KiB", 64 * 1024 + 1), ("a mebibyte", MIB)] {
            let doc = self.doc(G22, &[G12]);
            let mut header = doc.header.encode_to_vec();
            header.extend(wire::len_field(99, &vec![b'x'; length - header.len() - 5]));
            assert_eq!(header.len(), length, "padding arithmetic");
            let case = self.send_header_bytes(
                format!("a header of {why}"),
                G22,
                &doc,
                header,
                Code::ResourceExhausted,
                "envelope.header",
            );
            self.push(case);
        }
        let doc = self.doc(G22, &[G12]);
        let mut header = doc.header.encode_to_vec();
        header.extend(wire::len_field(99, &vec![b'x'; 2 * MIB]));
        let case = self.send_header_bytes(
            "an envelope message over the message limit".into(),
            G22,
            &doc,
            header,
            Code::ResourceExhausted,
            "envelope",
        );
        self.push(case);

        // One chunk just over the chunk limit, and one over the message limit.
        for (why, length, field) in [
            ("one byte over 1 MiB", MIB + 1, "chunk.data"),
            ("over the message limit", MIB + MIB / 4, "chunk"),
        ] {
            let data = self.fresh_bytes(length);
            let doc = self.doc_with(G22, &[G12], vec![("lon.pdf".into(), data)]);
            self.send(
                format!("a chunk of {why}"),
                G22,
                &doc,
                Code::ResourceExhausted,
                field,
            );
        }
    }

    /// Missing, malformed, tampered and foreign envelope signatures.
    /// A good document from G22 whose header and signature `make` spoils.
    fn signed(&mut self, what: String, make: impl Fn(&Builder, &[u8]) -> (Vec<u8>, Vec<u8>)) {
        let doc = self.doc(G22, &[G12]);
        let good_header = doc.header.encode_to_vec();
        let (header, signature) = make(self, &good_header);
        self.push(
            Case::new(
                format!("signature: {what}"),
                Who::Agency(G22),
                Input::Send(doc.messages(header, signature)),
                Code::Unauthenticated,
                "envelope.signature",
            )
            .probe(doc.id.clone()),
        );
    }

    fn signatures(&mut self) {
        self.signed("empty".into(), |_, h| (h.to_vec(), Vec::new()));
        for length in [1, 32, 63, 64, 65, 128, 4096] {
            self.signed(format!("{length} bytes of noise"), move |_, h| {
                (h.to_vec(), (0..length).map(|i| (i * 7 + 3) as u8).collect())
            });
        }
        for (byte, bit) in [
            (0, 0),
            (1, 3),
            (7, 7),
            (31, 1),
            (32, 0),
            (50, 5),
            (62, 2),
            (63, 7),
        ] {
            self.signed(
                format!("bit {bit} of signature byte {byte} flipped"),
                move |b, h| {
                    let mut signature = sign(b.key(G22), h);
                    signature[byte] ^= 1 << bit;
                    (h.to_vec(), signature)
                },
            );
        }
        for (eighth, bit) in [
            (0, 0),
            (1, 1),
            (2, 2),
            (3, 3),
            (4, 4),
            (5, 5),
            (6, 6),
            (7, 7),
        ] {
            self.signed(
                format!("bit {bit} of the header flipped at {eighth}/8"),
                move |b, h| {
                    let signature = sign(b.key(G22), h);
                    let mut header = h.to_vec();
                    let at = header.len() * eighth / 8;
                    header[at] ^= 1 << bit;
                    (header, signature)
                },
            );
        }
        self.signed("the header truncated after signing".into(), |b, h| {
            (h[..h.len() - 1].to_vec(), sign(b.key(G22), h))
        });
        self.signed("a field appended after signing".into(), |b, h| {
            let mut header = h.to_vec();
            header.extend(wire::len_field(6, "Nội dung khác".as_bytes()));
            (header, sign(b.key(G22), h))
        });
        for other in [G12, H41, G17, G09, H01] {
            self.signed(format!("made with {other}'s key"), move |b, h| {
                (h.to_vec(), sign(b.key(other), h))
            });
        }
        self.signed("made with a G22 key of another CA".into(), |b, h| {
            (h.to_vec(), sign(&b.fx.foreign_key, h))
        });
        let raw = |key: &[u8], message: &[u8]| -> Vec<u8> {
            Ed25519KeyPair::from_pkcs8_maybe_unchecked(key)
                .expect("an Ed25519 key")
                .sign(message)
                .as_ref()
                .to_vec()
        };
        self.signed("over the header without context".into(), move |b, h| {
            (h.to_vec(), raw(b.key(G22), h))
        });
        self.signed("under an older context".into(), move |b, h| {
            let mut message = b"truc.envelope.v0\n".to_vec();
            message.extend_from_slice(h);
            (h.to_vec(), raw(b.key(G22), &message))
        });
        self.signed("the document signature in its place".into(), |b, h| {
            let key = SigningKey::from_pkcs8(b.key(G22)).expect("key");
            (
                h.to_vec(),
                key.sign_document("000.00.00.G22,2024/01/02,1/A", &[])
                    .expect("signs"),
            )
        });
        self.signed("the header bytes in its place".into(), |_, h| {
            (h.to_vec(), h.to_vec())
        });

        // Another agency's correctly signed envelope, replayed on one's own
        // connection: the key of the connection does not match.
        for replayer in [G12, H41, G17, G09, H01] {
            let doc = self.doc(G22, &[G17]);
            let header = doc.header.encode_to_vec();
            let signature = sign(self.key(G22), &header);
            // An unregistered agency is refused before its envelope is read.
            let (code, field) = if replayer == H01 {
                (Code::PermissionDenied, "certificate")
            } else {
                (Code::Unauthenticated, "envelope.signature")
            };
            self.push(
                Case::new(
                    format!("signature: G22's envelope replayed by {replayer}"),
                    Who::Agency(replayer),
                    Input::Send(doc.messages(header, signature)),
                    code,
                    field,
                )
                .probe(doc.id.clone()),
            );
        }
    }

    /// A sender claiming to be someone else, signing with its own key.
    fn spoofing(&mut self) {
        for caller in REGISTERED.into_iter().chain([H01]) {
            // A unit under the caller's own body is someone else all the same.
            let child = format!("000.00.01.{}", &caller[10..]);
            let claims: Vec<String> = REGISTERED
                .into_iter()
                .filter(|code| *code != caller)
                .map(String::from)
                .chain(["000.00.00.Z99".to_string(), child])
                .collect();
            for claimed in claims {
                let recipient = REGISTERED
                    .into_iter()
                    .find(|code| *code != caller && *code != claimed)
                    .expect("a third agency");
                let doc = self.doc(&claimed, &[recipient]);
                // An unregistered agency is refused for who it is, whatever it claims.
                let field = if caller == H01 {
                    "certificate"
                } else {
                    "from.organ_id"
                };
                self.send(
                    format!("{caller} claims to be {claimed}"),
                    caller,
                    &doc,
                    Code::PermissionDenied,
                    field,
                );
            }
        }
        let doc = self.doc(G22, &[G12]);
        let header = doc.header.encode_to_vec();
        let signature = sign(self.key(G22), &header);
        self.push(
            Case::new(
                "an operator sends",
                Who::Operator,
                Input::Send(doc.messages(header, signature)),
                Code::PermissionDenied,
                "certificate",
            )
            .probe(doc.id.clone()),
        );
    }

    /// The id of a stored document with other content.
    fn conflicts(&mut self) {
        let stored = self.fx.stored_attachment.clone();
        let base = || {
            self.doc_numbered(
                G22,
                &[G12, H41, G17, G09],
                "1",
                vec![("vanban.pdf".into(), stored.clone())],
            )
        };
        let mut docs = vec![
            (
                "another subject",
                base().edit(|h| h.subject = "Nội dung khác".into()),
            ),
            ("fewer recipients", base().edit(|h| h.to.truncate(2))),
            ("another recipient", base().edit(|h| h.to[3] = organ(H01))),
            (
                "another attachment name",
                base().edit(|h| h.attachments[0].name = "khac.pdf".into()),
            ),
        ];
        let other = self.fresh_bytes(500);
        docs.push((
            "another attachment",
            self.doc_numbered(
                G22,
                &[G12, H41, G17, G09],
                "1",
                vec![("vanban.pdf".into(), other)],
            ),
        ));
        assert_eq!(docs[0].1.id, self.fx.f1, "conflicts reuse F1's id");
        for (what, doc) in docs {
            let header = doc.header.encode_to_vec();
            let signature = sign(self.key(G22), &header);
            self.push(Case::new(
                format!("F1's id with {what}"),
                Who::Agency(G22),
                Input::Send(doc.messages(header, signature)),
                Code::AlreadyExists,
                "document_id",
            ));
        }
    }

    /// Every illegal move from every state, bad codes and reasons, and moves
    /// by the wrong party.
    fn business_requests(&mut self) {
        let f1 = self.fx.f1.clone();
        // F1 is G22's: no one else may recall, update or replace it.
        for (who, business_type) in [(G12, 1), (H41, 1), (G12, 2), (G17, 3)] {
            let attachments = if business_type == 1 {
                Vec::new()
            } else {
                vec![("v2.pdf".to_string(), self.fresh_bytes(32))]
            };
            let doc = self.doc_with(who, &[G09], attachments).edit(|h| {
                h.business_type = business_type;
                h.business_refs = vec![f1.clone()];
            });
            self.send(
                format!("{who} sends business type {business_type} on G22's F1"),
                who,
                &doc,
                Code::PermissionDenied,
                "business_refs[0]",
            );
        }
        // The sender's own id, but no such document on the axis.
        let unknown = format!("{G22},2020/01/01,404/{NOTATION}");
        for business_type in [1, 2, 3] {
            let attachments = if business_type == 1 {
                Vec::new()
            } else {
                vec![("v2.pdf".to_string(), self.fresh_bytes(32))]
            };
            let doc = self.doc_with(G22, &[G12], attachments).edit(|h| {
                h.business_type = business_type;
                h.business_refs = vec![f1.clone(), unknown.clone()];
            });
            self.send(
                format!("business type {business_type} naming an unknown document second"),
                G22,
                &doc,
                Code::NotFound,
                "business_refs[1]",
            );
        }
        // A document that names itself.
        for business_type in [1, 2, 3] {
            let attachments = if business_type == 1 {
                Vec::new()
            } else {
                vec![("v2.pdf".to_string(), self.fresh_bytes(32))]
            };
            let doc = self.doc_with(G22, &[G12], attachments);
            let own_id = doc.id.clone();
            let doc = doc.edit(|h| {
                h.business_type = business_type;
                h.business_refs = vec![own_id.clone()];
            });
            self.send(
                format!("business type {business_type} naming the document itself"),
                G22,
                &doc,
                Code::InvalidArgument,
                "business_refs[0]",
            );
        }
        // Answers with no request waiting, on F1's arrived delivery to H41.
        for (status, reason) in [(15, ""), (16, "Không đồng ý")] {
            let case = self
                .move_request(
                    format!("answer {status} with no recall waiting"),
                    Who::Agency(H41),
                    pb::MoveStatusRequest {
                        document_id: f1.clone(),
                        recipient: String::new(),
                        status,
                        reason: reason.into(),
                    },
                    Code::FailedPrecondition,
                    "status",
                )
                .detail("no recall, update or replace to answer");
            self.push(case);
        }
        for reason in ["", "  "] {
            let case = self.move_request(
                format!("a refused recall whose reason is {reason:?}"),
                Who::Agency(H41),
                pb::MoveStatusRequest {
                    document_id: f1.clone(),
                    recipient: String::new(),
                    status: 16,
                    reason: reason.into(),
                },
                Code::InvalidArgument,
                "reason",
            );
            self.push(case);
        }
    }

    fn operator_views(&mut self) {
        for (why, code) in ill_formed_agency_codes() {
            self.push(Case::new(
                format!("route for {why}"),
                Who::Operator,
                Input::Request(
                    Method::ExplainRoute,
                    pb::ExplainRouteRequest {
                        organ_id: code.clone(),
                    }
                    .encode_to_vec(),
                ),
                Code::InvalidArgument,
                "organ_id",
            ));
            // An empty filter means "any".
            if code.is_empty() {
                continue;
            }
            for (field, request) in [
                (
                    "sender",
                    pb::ListDocumentsRequest {
                        sender: code.clone(),
                        ..Default::default()
                    },
                ),
                (
                    "recipient",
                    pb::ListDocumentsRequest {
                        recipient: code.clone(),
                        ..Default::default()
                    },
                ),
            ] {
                self.push(Case::new(
                    format!("document list {field} is {why}"),
                    Who::Agency(G12),
                    Input::Request(Method::ListDocuments, request.encode_to_vec()),
                    Code::InvalidArgument,
                    field,
                ));
            }
        }
        for (why, date) in ill_formed_dates() {
            self.push(Case::new(
                format!("document list from_date is {why}"),
                Who::Operator,
                Input::Request(
                    Method::ListDocuments,
                    pb::ListDocumentsRequest {
                        from_date: date.into(),
                        ..Default::default()
                    }
                    .encode_to_vec(),
                ),
                Code::InvalidArgument,
                "from_date",
            ));
        }
        // A period that ends before it begins: refused, not answered with nothing.
        let (late, early) = ("2019-09-30".to_string(), "2019-03-12".to_string());
        for (what, who, input) in [
            (
                "counts",
                Who::Agency(G12),
                Input::Request(
                    Method::Counts,
                    pb::CountsRequest {
                        from_date: late.clone(),
                        to_date: early.clone(),
                    }
                    .encode_to_vec(),
                ),
            ),
            (
                "report",
                Who::Operator,
                Input::Request(
                    Method::Report,
                    pb::ReportRequest {
                        from_date: late.clone(),
                        to_date: early.clone(),
                        ..Default::default()
                    }
                    .encode_to_vec(),
                ),
            ),
            (
                "document list",
                Who::Operator,
                Input::Request(
                    Method::ListDocuments,
                    pb::ListDocumentsRequest {
                        from_date: late.clone(),
                        to_date: early.clone(),
                        ..Default::default()
                    }
                    .encode_to_vec(),
                ),
            ),
        ] {
            self.push(Case::new(
                format!("{what} to_date before from_date"),
                who,
                input,
                Code::InvalidArgument,
                "to_date",
            ));
        }
        for status in [7, 14, 99, -1] {
            self.push(Case::new(
                format!("document list status {status}"),
                Who::Operator,
                Input::Request(
                    Method::ListDocuments,
                    pb::ListDocumentsRequest {
                        status,
                        ..Default::default()
                    }
                    .encode_to_vec(),
                ),
                Code::InvalidArgument,
                "status",
            ));
        }
        for limit in [1_001, u32::MAX] {
            self.push(Case::new(
                format!("document list of {limit} rows"),
                Who::Operator,
                Input::Request(
                    Method::ListDocuments,
                    pb::ListDocumentsRequest {
                        limit,
                        ..Default::default()
                    }
                    .encode_to_vec(),
                ),
                Code::ResourceExhausted,
                "limit",
            ));
        }
        for agency in REGISTERED {
            self.push(Case::new(
                format!("{agency} asks for the node list"),
                Who::Agency(agency),
                Input::Request(Method::ListNodes, Vec::new()),
                Code::PermissionDenied,
                "certificate",
            ));
        }
        self.feedback();
    }

    /// Overdue lists and dead letters: ill-formed filters, oversized lists,
    /// agencies acting as operators, and operators naming nothing.
    fn feedback(&mut self) {
        const NO_LETTER: &str = "000.00.00.G22,2024/01/02,1/VPCP-TTĐT";
        for code in ["G22", "000.00.00.g22", "000.00.00.G22 "] {
            self.push(Case::new(
                format!("overdue list for agency {code:?}"),
                Who::Operator,
                Input::Request(
                    Method::ListOverdue,
                    pb::ListOverdueRequest {
                        agency: code.into(),
                        limit: 0,
                    }
                    .encode_to_vec(),
                ),
                Code::InvalidArgument,
                "agency",
            ));
            self.push(Case::new(
                format!("dead letters of agency {code:?}"),
                Who::Agency(G12),
                Input::Request(
                    Method::ListDeadLetters,
                    pb::ListDeadLettersRequest {
                        agency: code.into(),
                        ..Default::default()
                    }
                    .encode_to_vec(),
                ),
                Code::InvalidArgument,
                "agency",
            ));
        }
        self.push(Case::new(
            "overdue list of 1001 rows".to_string(),
            Who::Operator,
            Input::Request(
                Method::ListOverdue,
                pb::ListOverdueRequest {
                    agency: String::new(),
                    limit: 1_001,
                }
                .encode_to_vec(),
            ),
            Code::ResourceExhausted,
            "limit",
        ));
        for agency in [G22, G12] {
            self.push(Case::new(
                format!("{agency} resends a dead letter"),
                Who::Agency(agency),
                Input::Request(
                    Method::ResendDeadLetter,
                    pb::ResendDeadLetterRequest {
                        document_id: NO_LETTER.into(),
                        recipient: G12.into(),
                    }
                    .encode_to_vec(),
                ),
                Code::PermissionDenied,
                "certificate",
            ));
            self.push(Case::new(
                format!("{agency} cancels a dead letter"),
                Who::Agency(agency),
                Input::Request(
                    Method::CancelDeadLetter,
                    pb::CancelDeadLetterRequest {
                        document_id: NO_LETTER.into(),
                        recipient: G12.into(),
                        reason: "không cần".into(),
                    }
                    .encode_to_vec(),
                ),
                Code::PermissionDenied,
                "certificate",
            ));
        }
        for (label, document_id, recipient, code, field) in [
            (
                "ill-formed id",
                "not-an-id",
                G12,
                Code::InvalidArgument,
                "document_id",
            ),
            (
                "ill-formed recipient",
                NO_LETTER,
                "G12",
                Code::InvalidArgument,
                "recipient",
            ),
            (
                "no such dead letter",
                NO_LETTER,
                G12,
                Code::NotFound,
                "document_id",
            ),
        ] {
            self.push(Case::new(
                format!("resend: {label}"),
                Who::Administrator,
                Input::Request(
                    Method::ResendDeadLetter,
                    pb::ResendDeadLetterRequest {
                        document_id: document_id.into(),
                        recipient: recipient.into(),
                    }
                    .encode_to_vec(),
                ),
                code,
                field,
            ));
            self.push(Case::new(
                format!("cancel: {label}"),
                Who::Administrator,
                Input::Request(
                    Method::CancelDeadLetter,
                    pb::CancelDeadLetterRequest {
                        document_id: document_id.into(),
                        recipient: recipient.into(),
                        reason: "Đã gửi bản giấy".into(),
                    }
                    .encode_to_vec(),
                ),
                code,
                field,
            ));
        }
        self.push(Case::new(
            "cancel without a reason".to_string(),
            Who::Administrator,
            Input::Request(
                Method::CancelDeadLetter,
                pb::CancelDeadLetterRequest {
                    document_id: NO_LETTER.into(),
                    recipient: G12.into(),
                    reason: " ".into(),
                }
                .encode_to_vec(),
            ),
            Code::InvalidArgument,
            "reason",
        ));
    }

    fn status_moves(&mut self) {
        // Forward ranks of Decision 28/2018 art. 10; rejection is last and final.
        let rank = |state: &str| match state {
            "arrived" => 1,
            "received" => 2,
            "assigned" => 3,
            "processing" => 4,
            "completed" => 5,
            "rejected" => 6,
            _ => 0,
        };
        let next_states = [
            (1, "arrived"),
            (3, "received"),
            (4, "assigned"),
            (5, "processing"),
            (6, "completed"),
            (2, "rejected"),
        ];
        for (state, id, recipient) in self.fx.deliveries.clone() {
            // The message names the state the delivery is in, not only the one asked for.
            let current = match next_states.iter().find(|(_, name)| *name == state) {
                Some((code, name)) => format!("current state is {code:02} {name}"),
                None => format!("current state: {state}"),
            };
            for (code, next) in next_states {
                let legal = match state {
                    // A recipient's first move on a queued delivery records its
                    // arrival too; "arrived" itself comes only from its node's
                    // acknowledgement.
                    "queued" => next != "arrived",
                    "completed" | "rejected" => false,
                    _ => next == "rejected" || rank(next) > rank(state),
                };
                if legal {
                    continue;
                }
                for named in [false, true] {
                    let case = self
                        .move_request(
                            format!(
                                "{recipient} moves its {state} delivery of {} to {next}{}",
                                if id == self.fx.f1 { "F1" } else { "F2" },
                                if named { ", naming itself" } else { "" }
                            ),
                            Who::Agency(recipient),
                            pb::MoveStatusRequest {
                                document_id: id.clone(),
                                recipient: if named {
                                    recipient.into()
                                } else {
                                    String::new()
                                },
                                status: code,
                                reason: "Lý do".into(),
                            },
                            Code::FailedPrecondition,
                            "status",
                        )
                        .detail(current.clone());
                    self.push(case);
                }
            }
        }

        let f1 = self.fx.f1.clone();
        let f2 = self.fx.f2.clone();
        let arrived = |status: i32, reason: &str| pb::MoveStatusRequest {
            document_id: f1.clone(),
            recipient: String::new(),
            status,
            reason: reason.into(),
        };
        for status in [0, 7, 8, 13, 14, 17, 99, -1, i32::MIN, i32::MAX] {
            let case = self.move_request(
                format!("status code {status}"),
                Who::Agency(H41),
                arrived(status, ""),
                Code::InvalidArgument,
                "status",
            );
            self.push(case);
        }
        for (what, reason) in [
            ("empty", ""),
            ("a space", " "),
            ("tabs and newlines", "\t\n\r\n"),
            ("an ideographic space", "\u{3000}"),
            ("no-break spaces", "\u{a0}\u{a0}"),
        ] {
            let case = self.move_request(
                format!("a rejection whose reason is {what}"),
                Who::Agency(H41),
                arrived(2, reason),
                Code::InvalidArgument,
                "reason",
            );
            self.push(case);
        }
        let case = self.move_request(
            "a queued delivery rejected without a reason".into(),
            Who::Agency(G12),
            arrived(2, ""),
            Code::InvalidArgument,
            "reason",
        );
        self.push(case);
        for (what, status, reason) in [
            ("a rejection whose reason is a NUL", 2, "\0".to_string()),
            (
                "a rejection whose reason is escapes",
                2,
                "\u{1b}[2J".to_string(),
            ),
            ("a reason with a BEL", 3, "Đã nhận\u{7}".to_string()),
            ("a reason of 2001 characters", 3, "x".repeat(2001)),
            (
                "a reason of 2001 Vietnamese characters",
                2,
                "ệ".repeat(2001),
            ),
        ] {
            let case = self.move_request(
                what.into(),
                Who::Agency(H41),
                arrived(status, &reason),
                Code::InvalidArgument,
                "reason",
            );
            self.push(case);
        }

        for other in [G12, G17, G09, G22, "000.00.00.Z99"] {
            let case = self.move_request(
                format!("H41 moves {other}'s delivery of F1"),
                Who::Agency(H41),
                pb::MoveStatusRequest {
                    document_id: f1.clone(),
                    recipient: other.into(),
                    status: 3,
                    reason: String::new(),
                },
                Code::PermissionDenied,
                "recipient",
            );
            self.push(case);
        }
        for (who, id, what, code, field) in [
            (
                G22,
                &f1,
                "the sender moves its own F1",
                Code::NotFound,
                "document_id",
            ),
            (
                G12,
                &f2,
                "the sender moves its own F2",
                Code::NotFound,
                "document_id",
            ),
            (
                H01,
                &f1,
                "an unregistered agency moves F1",
                Code::PermissionDenied,
                "certificate",
            ),
            (
                H01,
                &f2,
                "an unregistered agency moves F2",
                Code::PermissionDenied,
                "certificate",
            ),
        ] {
            let case = self.move_request(
                what.into(),
                Who::Agency(who),
                pb::MoveStatusRequest {
                    document_id: id.clone(),
                    recipient: String::new(),
                    status: 3,
                    reason: String::new(),
                },
                code,
                field,
            );
            self.push(case.detail(if who == H01 { H01 } else { "" }));
        }
        for recipient in ["", H41] {
            let case = self.move_request(
                format!("an operator moves F1 (recipient '{recipient}')"),
                Who::Operator,
                pb::MoveStatusRequest {
                    document_id: f1.clone(),
                    recipient: recipient.into(),
                    status: 3,
                    reason: String::new(),
                },
                Code::PermissionDenied,
                "certificate",
            );
            self.push(case);
        }
        for (why, id) in unknown_document_ids(&f1, &self.today()) {
            let case = self.move_request(
                format!("move_status on {why}"),
                Who::Agency(H41),
                pb::MoveStatusRequest {
                    document_id: id,
                    recipient: String::new(),
                    status: 3,
                    reason: String::new(),
                },
                Code::NotFound,
                "document_id",
            );
            self.push(case);
        }
        for (why, id) in ill_formed_document_ids() {
            let case = self.move_request(
                format!("move_status document_id is {why}"),
                Who::Agency(H41),
                pb::MoveStatusRequest {
                    document_id: id,
                    recipient: String::new(),
                    status: 3,
                    reason: String::new(),
                },
                Code::InvalidArgument,
                "document_id",
            );
            self.push(case);
        }
    }

    /// Reads of what does not exist, is not well formed, or is someone else's.
    fn reads(&mut self) {
        let get = |id: &str| {
            Input::Request(
                Method::GetStatus,
                pb::GetStatusRequest {
                    document_id: id.into(),
                }
                .encode_to_vec(),
            )
        };
        let fetch = |id: &str, index: u32| {
            Input::Request(
                Method::FetchAttachment,
                pb::FetchAttachmentRequest {
                    document_id: id.into(),
                    index,
                }
                .encode_to_vec(),
            )
        };
        let f1 = self.fx.f1.clone();
        let f2 = self.fx.f2.clone();
        for (why, id) in ill_formed_document_ids() {
            self.push(Case::new(
                format!("get_status document_id is {why}"),
                Who::Operator,
                get(&id),
                Code::InvalidArgument,
                "document_id",
            ));
            self.push(Case::new(
                format!("fetch_attachment document_id is {why}"),
                Who::Agency(G12),
                fetch(&id, 0),
                Code::InvalidArgument,
                "document_id",
            ));
        }
        for (why, id) in unknown_document_ids(&f1, &self.today()) {
            self.push(Case::new(
                format!("get_status on {why}"),
                Who::Agency(G22),
                get(&id),
                Code::NotFound,
                "document_id",
            ));
            self.push(Case::new(
                format!("fetch_attachment on {why}"),
                Who::Operator,
                fetch(&id, 0),
                Code::NotFound,
                "document_id",
            ));
        }
        for id in [&f1, &f2] {
            let which = if *id == f1 { "F1" } else { "F2" };
            self.push(
                Case::new(
                    format!("an unregistered agency reads the status of {which}"),
                    Who::Agency(H01),
                    get(id),
                    Code::PermissionDenied,
                    "certificate",
                )
                .detail(H01),
            );
            self.push(
                Case::new(
                    format!("an unregistered agency fetches {which}'s attachment"),
                    Who::Agency(H01),
                    fetch(id, 0),
                    Code::PermissionDenied,
                    "certificate",
                )
                .detail(H01),
            );
        }
        for index in [1, 2, 100, u32::MAX] {
            self.push(Case::new(
                format!("fetch_attachment index {index} of one"),
                Who::Agency(H41),
                fetch(&f1, index),
                Code::NotFound,
                "index",
            ));
        }
        for agency in REGISTERED.into_iter().chain([H01]) {
            self.push(Case::new(
                format!("{agency} asks for the operators' report"),
                Who::Agency(agency),
                Input::Request(Method::Report, pb::ReportRequest::default().encode_to_vec()),
                Code::PermissionDenied,
                "certificate",
            ));
        }
    }

    /// Delivery streams that do not start with a hello or break the protocol.
    fn deliveries(&mut self) {
        let hello = pb::NodeMessage {
            kind: Some(pb::node_message::Kind::Hello(pb::Hello { window: 8 })),
        }
        .encode_to_vec();
        let ack = pb::NodeMessage {
            kind: Some(pb::node_message::Kind::Ack(pb::Ack {
                queue_seqs: vec![1],
            })),
        }
        .encode_to_vec();
        let none = pb::NodeMessage { kind: None }.encode_to_vec();
        let mut streams: Vec<(String, Vec<Vec<u8>>, &str)> = vec![
            ("nothing".into(), vec![], "hello"),
            (
                "an ack first".into(),
                vec![ack.clone(), hello.clone()],
                "hello",
            ),
            (
                "a message with no kind first".into(),
                vec![none.clone()],
                "hello",
            ),
            (
                "two hellos".into(),
                vec![hello.clone(), hello.clone()],
                "kind",
            ),
            (
                "a message with no kind after the hello".into(),
                vec![hello.clone(), none],
                "kind",
            ),
        ];
        for (what, bytes) in wire::garbage() {
            streams.push((format!("{what} first"), vec![bytes], "hello"));
        }
        for (number, name) in [(1, "hello"), (2, "ack")] {
            streams.push((
                format!("{name} with wire type 0"),
                vec![wire::field_of_wire_type(number, VARINT)],
                "hello",
            ));
        }
        for (what, messages, field) in streams {
            self.push(Case::new(
                format!("deliveries: {what}"),
                Who::Agency(H41),
                Input::Deliveries(messages),
                Code::InvalidArgument,
                field,
            ));
        }
        self.push(Case::new(
            "deliveries: an operator's stream",
            Who::Operator,
            Input::Deliveries(vec![hello]),
            Code::PermissionDenied,
            "certificate",
        ));
    }

    /// Request messages that are not protobuf, or not the protobuf they
    /// claim to be: invalid UTF-8, wrong wire types, truncation, garbage.
    fn raw_requests(&mut self) {
        let f1 = self.fx.f1.clone();
        let move_request = pb::MoveStatusRequest {
            document_id: f1.clone(),
            recipient: H41.into(),
            status: 3,
            reason: "Đã nhận".into(),
        }
        .encode_to_vec();
        type Fields = &'static [(u32, &'static str, u8)];
        let methods: Vec<(Method, &str, Who, Vec<u8>, Fields)> = vec![
            (
                Method::MoveStatus,
                "MoveStatusRequest",
                Who::Agency(H41),
                move_request,
                &[
                    (1, "document_id", LEN),
                    (2, "recipient", LEN),
                    (3, "status", VARINT),
                    (4, "reason", LEN),
                ],
            ),
            (
                Method::GetStatus,
                "GetStatusRequest",
                Who::Operator,
                pb::GetStatusRequest {
                    document_id: f1.clone(),
                }
                .encode_to_vec(),
                &[(1, "document_id", LEN)],
            ),
            (
                Method::FetchAttachment,
                "FetchAttachmentRequest",
                Who::Agency(G12),
                pb::FetchAttachmentRequest {
                    document_id: f1.clone(),
                    index: 0,
                }
                .encode_to_vec(),
                &[(1, "document_id", LEN), (2, "index", VARINT)],
            ),
            (
                Method::Counts,
                "CountsRequest",
                Who::Operator,
                pb::CountsRequest {
                    from_date: "2019-03-12".into(),
                    to_date: "2019-09-30".into(),
                }
                .encode_to_vec(),
                &[(1, "from_date", LEN), (2, "to_date", LEN)],
            ),
            (
                Method::Report,
                "ReportRequest",
                Who::Operator,
                pb::ReportRequest {
                    from_date: "2019-03-12".into(),
                    to_date: "2019-09-30".into(),
                    focus_recipient: G22.into(),
                }
                .encode_to_vec(),
                &[
                    (1, "from_date", LEN),
                    (2, "to_date", LEN),
                    (3, "focus_recipient", LEN),
                ],
            ),
        ];
        for (method, message, who, good, fields) in methods {
            for &(number, name, declared) in fields {
                if declared == LEN {
                    for (what, bad) in wire::INVALID_UTF8 {
                        let mut bytes = good.clone();
                        bytes.extend(wire::len_field(number, bad));
                        self.push(
                            Case::new(
                                format!("{message}.{name} holds {what}"),
                                who,
                                Input::Request(method, bytes),
                                Code::InvalidArgument,
                                name,
                            )
                            .detail(format!("{message}.{name}"))
                            .detail("UTF-8"),
                        );
                    }
                }
                for wire_type in wire::wrong_wire_types(declared) {
                    let mut bytes = good.clone();
                    bytes.extend(wire::field_of_wire_type(number, wire_type));
                    self.push(
                        Case::new(
                            format!("{message}.{name} has wire type {wire_type}"),
                            who,
                            Input::Request(method, bytes),
                            Code::InvalidArgument,
                            name,
                        )
                        .detail(format!("{message}.{name}"))
                        .detail("wire type"),
                    );
                }
            }
            for (number, start, end) in wire::field_spans(&good) {
                let name = fields
                    .iter()
                    .find(|(n, _, _)| *n == number)
                    .map(|(_, name, _)| *name)
                    .expect("a known field");
                let mut cuts = vec![start + 1];
                if end - start > 4 {
                    cuts.push((start + end) / 2);
                }
                for cut in cuts {
                    self.push(
                        Case::new(
                            format!("{message} cut at byte {cut} inside {name}"),
                            who,
                            Input::Request(method, good[..cut].to_vec()),
                            Code::InvalidArgument,
                            name,
                        )
                        .detail(format!("{message}.{name}")),
                    );
                }
            }
            for (what, bytes) in wire::garbage() {
                self.push(Case::new(
                    format!("{message} is {what}"),
                    who,
                    Input::Request(method, bytes),
                    Code::InvalidArgument,
                    "request",
                ));
            }
        }

        // The Send stream: its first message, the envelope inside it, and a
        // chunk after a good envelope.
        for (what, bytes) in wire::garbage() {
            self.push(Case::new(
                format!("SendRequest is {what}"),
                Who::Agency(G22),
                Input::Send(vec![bytes]),
                Code::InvalidArgument,
                "envelope",
            ));
        }
        for (number, wire_type) in [(1, VARINT), (1, wire::I32), (2, VARINT), (2, wire::I64)] {
            self.push(
                Case::new(
                    format!("SendRequest.part {number} has wire type {wire_type}"),
                    Who::Agency(G22),
                    Input::Send(vec![wire::field_of_wire_type(number, wire_type)]),
                    Code::InvalidArgument,
                    "envelope",
                )
                .detail("SendRequest.part"),
            );
        }
        for (number, name) in [(1, "header"), (2, "signature"), (3, "document_signature")] {
            let envelope = wire::field_of_wire_type(number, VARINT);
            self.push(
                Case::new(
                    format!("SignedEnvelope.{name} has wire type 0"),
                    Who::Agency(G22),
                    Input::Send(vec![wire::len_field(1, &envelope)]),
                    Code::InvalidArgument,
                    "envelope",
                )
                .detail(format!("SignedEnvelope.{name}")),
            );
        }
        let doc = self.doc(G22, &[G12]);
        let header = doc.header.encode_to_vec();
        let signature = sign(self.key(G22), &header);
        let envelope = envelope_message(pb::SignedEnvelope {
            header,
            signature,
            document_signature: None,
        });
        self.push(
            Case::new(
                "SendRequest with its envelope cut in half",
                Who::Agency(G22),
                Input::Send(vec![envelope[..envelope.len() / 2].to_vec()]),
                Code::InvalidArgument,
                "envelope",
            )
            .probe(doc.id.clone()),
        );
        let mut after_envelope: Vec<(String, Vec<u8>, Option<&str>)> = wire::garbage()
            .into_iter()
            .map(|(what, bytes)| (what.to_string(), bytes, None))
            .collect();
        for (number, name, wire_type) in [(1, "index", LEN), (2, "data", VARINT)] {
            after_envelope.push((
                format!("AttachmentChunk.{name} with wire type {wire_type}"),
                wire::len_field(2, &wire::field_of_wire_type(number, wire_type)),
                Some(name),
            ));
        }
        for (what, bytes, nested) in after_envelope {
            let mut case = Case::new(
                format!("a chunk message that is {what}"),
                Who::Agency(G22),
                Input::Send(vec![envelope.clone(), bytes]),
                Code::InvalidArgument,
                "chunk",
            )
            .probe(doc.id.clone());
            if let Some(name) = nested {
                case = case.detail(format!("AttachmentChunk.{name}"));
            }
            self.push(case);
        }
    }

    /// gRPC framing that is wrong: compression flags, declared lengths that
    /// lie, prefixes cut short, bodies with no message, lengths over the limit.
    fn framing(&mut self) {
        let f1 = self.fx.f1.clone();
        let get = pb::GetStatusRequest {
            document_id: f1.clone(),
        }
        .encode_to_vec();
        let moves = pb::MoveStatusRequest {
            document_id: f1,
            recipient: String::new(),
            status: 3,
            reason: String::new(),
        }
        .encode_to_vec();
        let hello = pb::NodeMessage {
            kind: Some(pb::node_message::Kind::Hello(pb::Hello { window: 8 })),
        }
        .encode_to_vec();
        let doc = self.doc(G22, &[G12]);
        let header = doc.header.encode_to_vec();
        let signature = sign(self.key(G22), &header);
        let envelope = envelope_message(pb::SignedEnvelope {
            header,
            signature,
            document_signature: None,
        });
        let length = |bytes: &[u8]| bytes.len() as u32;
        let faults = |message: &[u8]| -> Vec<(&'static str, Vec<u8>, Code)> {
            vec![
                (
                    "a compressed flag with no encoding",
                    wire::frame(1, length(message), message),
                    Code::InvalidArgument,
                ),
                (
                    "compression flag 2",
                    wire::frame(2, length(message), message),
                    Code::InvalidArgument,
                ),
                (
                    "compression flag 255",
                    wire::frame(255, length(message), message),
                    Code::InvalidArgument,
                ),
                (
                    "a declared length past the body",
                    wire::frame(0, length(message) + 10, message),
                    Code::InvalidArgument,
                ),
                (
                    "a prefix cut short",
                    wire::frame(0, length(message), message)[..3].to_vec(),
                    Code::InvalidArgument,
                ),
                (
                    "a declared length of 2 GiB",
                    wire::frame(0, 1 << 31, message),
                    Code::ResourceExhausted,
                ),
            ]
        };
        for (method, name, who, message, field) in [
            (
                Method::GetStatus,
                "get_status",
                Who::Operator,
                &get,
                "request",
            ),
            (
                Method::MoveStatus,
                "move_status",
                Who::Agency(H41),
                &moves,
                "request",
            ),
            (
                Method::Send,
                "send",
                Who::Agency(G22),
                &envelope,
                "envelope",
            ),
            (
                Method::Deliveries,
                "deliveries",
                Who::Agency(H41),
                &hello,
                "hello",
            ),
        ] {
            for (what, body, code) in faults(message) {
                let code = if method == Method::Deliveries {
                    // The stream is answered with the hello's refusal, whatever it was.
                    Code::InvalidArgument
                } else {
                    code
                };
                let mut case = Case::new(
                    format!("{name} body with {what}"),
                    who,
                    Input::Body(method, body),
                    code,
                    field,
                );
                if matches!(method, Method::Send) {
                    case = case.probe(doc.id.clone());
                }
                self.push(case);
            }
        }
        for (what, body, code) in faults(&chunk_message(0, &doc.attachments[0])) {
            let mut whole = wire::frame(0, length(&envelope), &envelope);
            whole.extend(body);
            self.push(
                Case::new(
                    format!("send body with a chunk with {what}"),
                    Who::Agency(G22),
                    Input::Body(Method::Send, whole),
                    code,
                    "chunk",
                )
                .probe(doc.id.clone()),
            );
        }
        for (method, name, who) in [
            (Method::GetStatus, "get_status", Who::Operator),
            (Method::Counts, "counts", Who::Operator),
            (Method::MoveStatus, "move_status", Who::Agency(H41)),
        ] {
            self.push(Case::new(
                format!("{name} body with no message"),
                who,
                Input::Body(method, Vec::new()),
                Code::InvalidArgument,
                "request",
            ));
        }
    }
}

/// Well-formed ids of documents the hub does not have, near F1's.
fn unknown_document_ids(f1: &str, today: &str) -> Vec<(&'static str, String)> {
    let date = today.replace('-', "/");
    vec![
        (
            "an old document",
            "000.00.00.G22,2020/01/01,1/X".to_string(),
        ),
        (
            "F1's id with another number",
            format!("000.00.00.G22,{date},2/{NOTATION}"),
        ),
        (
            "F1's id with another notation",
            format!("000.00.00.G22,{date},1/VPCP"),
        ),
        (
            "F1's id from another sender",
            format!("000.00.00.G12,{date},1/{NOTATION}"),
        ),
        ("F1's id from the day before", {
            assert!(f1.contains(&date));
            f1.replacen(&date, "2000/01/01", 1)
        }),
    ]
}
