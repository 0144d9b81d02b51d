//! The envelope header (edXML fields of QCVN 102:2016), validated once at the
//! edge: `Header::validate` turns unchecked fields into trusted types, or
//! names the first field that is wrong and why.

use crate::agency::AgencyCode;
use crate::document::{DocumentDate, DocumentId};
use crate::limits::Limits;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum BusinessType {
    #[default]
    New,
    Revoke,
    Update,
    Replace,
}

impl BusinessType {
    pub fn from_code(code: i32) -> Option<Self> {
        Some(match code {
            0 => BusinessType::New,
            1 => BusinessType::Revoke,
            2 => BusinessType::Update,
            3 => BusinessType::Replace,
            _ => return None,
        })
    }

    pub fn code(self) -> i32 {
        match self {
            BusinessType::New => 0,
            BusinessType::Revoke => 1,
            BusinessType::Update => 2,
            BusinessType::Replace => 3,
        }
    }
}

/// An organ on the header, as sent (the code not yet checked).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawOrgan {
    pub organ_id: String,
    pub organ_name: String,
    pub address: String,
    pub email: String,
    pub phone: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawAttachment {
    pub name: String,
    pub media_type: String,
    pub size_bytes: u64,
    pub sha256: Vec<u8>,
}

/// Header fields as they came off the wire, before any check.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawHeader {
    pub from: Option<RawOrgan>,
    pub to: Vec<RawOrgan>,
    pub code_number: String,
    pub code_notation: String,
    pub promulgation_place: String,
    pub promulgation_date: String,
    pub document_type: u32,
    pub document_type_name: String,
    pub subject: String,
    pub steering_type: u32,
    pub due_date: String,
    pub priority: u32,
    pub page_count: u32,
    pub appendix_count: u32,
    pub response_for: Vec<String>,
    pub business_type: i32,
    pub business_refs: Vec<String>,
    pub attachments: Vec<RawAttachment>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Organ {
    pub code: AgencyCode,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachmentMeta {
    pub name: String,
    pub media_type: String,
    pub size_bytes: u64,
    pub sha256: [u8; 32],
}

/// One addressee: either a well-formed code or the reason it was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Addressee {
    Valid(Organ),
    Refused { organ_id: String, reason: String },
}

/// A checked header. Past this type, code trusts its fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub from: Organ,
    pub to: Vec<Addressee>,
    pub document_id: DocumentId,
    pub promulgation_place: String,
    pub document_type: u32,
    pub document_type_name: String,
    pub subject: String,
    pub steering_type: u32,
    pub due_date: Option<DocumentDate>,
    pub priority: u32,
    pub page_count: u32,
    pub appendix_count: u32,
    pub response_for: Vec<DocumentId>,
    pub business_type: BusinessType,
    pub business_refs: Vec<DocumentId>,
    pub attachments: Vec<AttachmentMeta>,
}

/// Why an envelope was refused, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct EnvelopeError {
    pub field: String,
    pub reason: String,
    /// True when a size limit was passed (RESOURCE_EXHAUSTED rather than INVALID_ARGUMENT).
    pub too_large: bool,
}

impl EnvelopeError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
            too_large: false,
        }
    }

    pub fn too_large(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
            too_large: true,
        }
    }
}

/// The rule of every free-text field: required or not, at most `chars_max`
/// characters, and no control characters but newlines and tabs.
pub(crate) fn check_text(
    field: &str,
    text: &str,
    chars_max: usize,
    required: bool,
) -> Result<(), EnvelopeError> {
    if required && text.trim().is_empty() {
        return Err(EnvelopeError::invalid(field, "is required"));
    }
    if text.chars().count() > chars_max {
        return Err(EnvelopeError::invalid(
            field,
            format!("is longer than {chars_max} characters"),
        ));
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(EnvelopeError::invalid(field, "contains control characters"));
    }
    Ok(())
}

/// The promulgation date: a real day, not before 1945, and not further in
/// the future than the limits allow.
fn promulgation_date(
    text: &str,
    limits: &Limits,
    today: DocumentDate,
) -> Result<DocumentDate, EnvelopeError> {
    let date = DocumentDate::parse_iso(text)
        .map_err(|error| EnvelopeError::invalid("promulgation.date", format!("{error}")))?;
    if date.year() < 1945 {
        return Err(EnvelopeError::invalid(
            "promulgation.date",
            "is before 1945",
        ));
    }
    let latest = (0..limits.future_days_max).try_fold(today, |day, _| day.next_day());
    if latest.is_some_and(|latest| date > latest) {
        return Err(EnvelopeError::invalid(
            "promulgation.date",
            format!("{date} is in the future (today is {today})"),
        ));
    }
    Ok(date)
}

/// The recipients in header order: each named once and not the sender; an
/// ill-formed code is refused for that recipient alone, not the document.
fn addressees(
    raw: &[RawOrgan],
    from: AgencyCode,
    limits: &Limits,
) -> Result<Vec<Addressee>, EnvelopeError> {
    if raw.is_empty() {
        return Err(EnvelopeError::invalid(
            "to",
            "at least one recipient is required",
        ));
    }
    if raw.len() > limits.recipients_max {
        return Err(EnvelopeError::too_large(
            "to",
            format!("more than {} recipients", limits.recipients_max),
        ));
    }
    let mut seen = std::collections::HashMap::new();
    let mut to = Vec::with_capacity(raw.len());
    for (index, organ) in raw.iter().enumerate() {
        let field = format!("to[{index}]");
        check_organ_text(&field, organ, limits)?;
        if let Some(first) = seen.insert(organ.organ_id.as_str(), index) {
            return Err(EnvelopeError::invalid(
                format!("{field}.organ_id"),
                format!("{:?} is already to[{first}]", organ.organ_id),
            ));
        }
        to.push(match organ.organ_id.parse::<AgencyCode>() {
            Ok(code) if code == from => {
                return Err(EnvelopeError::invalid(
                    format!("{field}.organ_id"),
                    "is the sender itself",
                ))
            }
            Ok(code) => Addressee::Valid(Organ {
                code,
                name: organ.organ_name.clone(),
            }),
            Err(error) => Addressee::Refused {
                organ_id: organ.organ_id.chars().take(40).collect(),
                reason: format!("ill-formed agency code: {error}"),
            },
        });
    }
    Ok(to)
}

/// The optional due date: not before the promulgation date and at most ten
/// years after it.
fn due_date(text: &str, date: DocumentDate) -> Result<Option<DocumentDate>, EnvelopeError> {
    if text.is_empty() {
        return Ok(None);
    }
    let due = DocumentDate::parse_iso(text)
        .map_err(|error| EnvelopeError::invalid("due_date", format!("{error}")))?;
    if due < date {
        return Err(EnvelopeError::invalid(
            "due_date",
            format!("{due} is before the promulgation date {date}"),
        ));
    }
    if due.year() > date.year() + 10 {
        return Err(EnvelopeError::invalid(
            "due_date",
            "is more than ten years away",
        ));
    }
    Ok(Some(due))
}

/// The attachments' descriptions: at least one (but for a revoke), names
/// safe for recipients' file systems, 32-byte digests, and all of them
/// within the document's size limit.
fn attachments(
    raw: Vec<RawAttachment>,
    business_type: BusinessType,
    limits: &Limits,
) -> Result<Vec<AttachmentMeta>, EnvelopeError> {
    if raw.is_empty() && business_type != BusinessType::Revoke {
        return Err(EnvelopeError::invalid(
            "attachments",
            "a document must carry at least one attachment",
        ));
    }
    if raw.len() > limits.attachments_max {
        return Err(EnvelopeError::too_large(
            "attachments",
            format!("more than {} attachments", limits.attachments_max),
        ));
    }
    // Names reach recipients' file systems and screens: one rule, file_name.rs.
    crate::file_name::check_attachment_names(raw.iter().map(|a| a.name.as_str())).map_err(
        |(index, error)| {
            EnvelopeError::invalid(format!("attachments[{index}].name"), error.to_string())
        },
    )?;
    let mut total_bytes: u64 = 0;
    let mut attachments = Vec::with_capacity(raw.len());
    for (index, attachment) in raw.into_iter().enumerate() {
        let field = format!("attachments[{index}]");
        check_text(
            &format!("{field}.media_type"),
            &attachment.media_type,
            100,
            true,
        )?;
        let sha256: [u8; 32] = attachment.sha256.as_slice().try_into().map_err(|_| {
            EnvelopeError::invalid(
                format!("{field}.sha256"),
                format!("must be 32 bytes, not {}", attachment.sha256.len()),
            )
        })?;
        total_bytes = total_bytes.saturating_add(attachment.size_bytes);
        if total_bytes > limits.document_bytes_max {
            return Err(EnvelopeError::too_large(
                format!("{field}.size_bytes"),
                format!(
                    "the attachments exceed the limit of {} bytes per document",
                    limits.document_bytes_max
                ),
            ));
        }
        attachments.push(AttachmentMeta {
            name: attachment.name,
            media_type: attachment.media_type,
            size_bytes: attachment.size_bytes,
            sha256,
        });
    }
    Ok(attachments)
}

fn check_organ_text(field: &str, organ: &RawOrgan, limits: &Limits) -> Result<(), EnvelopeError> {
    check_text(
        &format!("{field}.organ_name"),
        &organ.organ_name,
        limits.text_chars_max,
        false,
    )?;
    check_text(
        &format!("{field}.address"),
        &organ.address,
        limits.text_chars_max,
        false,
    )?;
    check_text(
        &format!("{field}.email"),
        &organ.email,
        limits.text_chars_max,
        false,
    )?;
    check_text(
        &format!("{field}.phone"),
        &organ.phone,
        limits.text_chars_max,
        false,
    )
}

fn parse_references(
    field: &str,
    ids: &[String],
    limits: &Limits,
) -> Result<Vec<DocumentId>, EnvelopeError> {
    // A count limit, like recipients and attachments: RESOURCE_EXHAUSTED.
    if ids.len() > limits.references_max {
        return Err(EnvelopeError::too_large(
            field,
            format!("more than {} document ids", limits.references_max),
        ));
    }
    ids.iter()
        .enumerate()
        .map(|(index, id)| {
            id.parse().map_err(|error| {
                EnvelopeError::invalid(format!("{field}[{index}]"), format!("{error}"))
            })
        })
        .collect()
}

impl Header {
    /// Checks every field. `today` is the hub's date in Vietnam, so that
    /// promulgation dates in the future are refused.
    pub fn validate(
        raw: RawHeader,
        limits: &Limits,
        today: DocumentDate,
    ) -> Result<Header, EnvelopeError> {
        let raw_from = raw
            .from
            .as_ref()
            .ok_or_else(|| EnvelopeError::invalid("from", "is required"))?;
        let from_code: AgencyCode = raw_from
            .organ_id
            .parse()
            .map_err(|error| EnvelopeError::invalid("from.organ_id", format!("{error}")))?;
        check_organ_text("from", raw_from, limits)?;
        let from = Organ {
            code: from_code,
            name: raw_from.organ_name.clone(),
        };

        let date = promulgation_date(&raw.promulgation_date, limits, today)?;
        let document_id = DocumentId::new(from_code, date, &raw.code_number, &raw.code_notation)
            .map_err(|error| EnvelopeError::invalid("code", format!("{error}")))?;
        let to = addressees(&raw.to, from_code, limits)?;

        check_text(
            "promulgation.place",
            &raw.promulgation_place,
            limits.text_chars_max,
            false,
        )?;
        check_text(
            "document_type.name",
            &raw.document_type_name,
            limits.text_chars_max,
            false,
        )?;
        check_text("subject", &raw.subject, limits.subject_chars_max, true)?;
        let due_date = due_date(&raw.due_date, date)?;

        let business_type = BusinessType::from_code(raw.business_type).ok_or_else(|| {
            EnvelopeError::invalid(
                "business_type",
                format!(
                    "{} is not 0 new, 1 revoke, 2 update or 3 replace",
                    raw.business_type
                ),
            )
        })?;
        let response_for = parse_references("response_for", &raw.response_for, limits)?;
        let business_refs = parse_references("business_refs", &raw.business_refs, limits)?;
        if business_type != BusinessType::New && business_refs.is_empty() {
            return Err(EnvelopeError::invalid(
                "business_refs",
                "a revoke, update or replace must name the document it acts on",
            ));
        }
        let attachments = attachments(raw.attachments, business_type, limits)?;

        Ok(Header {
            from,
            to,
            document_id,
            promulgation_place: raw.promulgation_place,
            document_type: raw.document_type,
            document_type_name: raw.document_type_name,
            subject: raw.subject,
            steering_type: raw.steering_type,
            due_date,
            priority: raw.priority,
            page_count: raw.page_count,
            appendix_count: raw.appendix_count,
            response_for,
            business_type,
            business_refs,
            attachments,
        })
    }

    /// Every attachment's digest, in header order.
    pub fn attachment_digests(&self) -> Vec<[u8; 32]> {
        self.attachments.iter().map(|a| a.sha256).collect()
    }

    pub fn total_attachment_bytes(&self) -> u64 {
        self.attachments.iter().map(|a| a.size_bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> RawHeader {
        RawHeader {
            from: Some(RawOrgan {
                organ_id: "000.00.00.G22".into(),
                organ_name: "Văn phòng Chính phủ".into(),
                ..Default::default()
            }),
            to: vec![
                RawOrgan {
                    organ_id: "000.00.00.H41".into(),
                    ..Default::default()
                },
                RawOrgan {
                    organ_id: "000.00.00.G12".into(),
                    ..Default::default()
                },
            ],
            code_number: "7816".into(),
            code_notation: "VPCP-TTĐT".into(),
            promulgation_date: "2018-09-20".into(),
            subject: "Về việc triển khai Trục liên thông văn bản quốc gia".into(),
            attachments: vec![RawAttachment {
                name: "vanban.pdf".into(),
                media_type: "application/pdf".into(),
                size_bytes: 10,
                sha256: vec![1; 32],
            }],
            ..Default::default()
        }
    }

    fn today() -> DocumentDate {
        DocumentDate::from_ymd(2026, 11, 22).unwrap()
    }

    #[test]
    fn a_good_header_validates() {
        let header = Header::validate(sample(), &Limits::default(), today()).unwrap();
        assert_eq!(
            header.document_id.to_string(),
            "000.00.00.G22,2018/09/20,7816/VPCP-TTĐT"
        );
        assert_eq!(header.to.len(), 2);
    }

    #[test]
    fn bad_headers_name_their_field() {
        type Mutate = fn(&mut RawHeader);
        let cases: Vec<(Mutate, &str)> = vec![
            (|h| h.from = None, "from"),
            (
                |h| h.from.as_mut().unwrap().organ_id = "G22".into(),
                "from.organ_id",
            ),
            (
                |h| h.promulgation_date = "2018/09/20".into(),
                "promulgation.date",
            ),
            (
                |h| h.promulgation_date = "2999-01-01".into(),
                "promulgation.date",
            ),
            (
                |h| h.promulgation_date = "1900-01-01".into(),
                "promulgation.date",
            ),
            (|h| h.code_number = String::new(), "code"),
            (|h| h.to.clear(), "to"),
            (
                |h| h.to[1].organ_id = "000.00.00.H41".into(),
                "to[1].organ_id",
            ),
            (
                |h| h.to[0].organ_id = "000.00.00.G22".into(),
                "to[0].organ_id",
            ),
            (|h| h.subject = " ".into(), "subject"),
            (|h| h.subject = "x".repeat(2001), "subject"),
            (|h| h.due_date = "2018-01-01".into(), "due_date"),
            (|h| h.business_type = 9, "business_type"),
            (|h| h.business_type = 1, "business_refs"),
            (|h| h.response_for = vec!["nope".into()], "response_for[0]"),
            (
                |h| h.response_for = vec!["000.00.00.G12,2018/09/01,1/BTC".into(); 101],
                "response_for",
            ),
            (|h| h.attachments.clear(), "attachments"),
            (
                |h| h.attachments[0].sha256 = vec![1; 31],
                "attachments[0].sha256",
            ),
            (
                |h| h.attachments[0].name = "../etc/passwd".into(),
                "attachments[0].name",
            ),
            (
                |h| h.attachments[0].size_bytes = u64::MAX,
                "attachments[0].size_bytes",
            ),
            (
                |h| h.attachments.push(h.attachments[0].clone()),
                "attachments[1].name",
            ),
        ];
        for (mutate, field) in cases {
            let mut raw = sample();
            mutate(&mut raw);
            let error = Header::validate(raw, &Limits::default(), today()).unwrap_err();
            assert_eq!(error.field, field, "{error}");
        }
    }

    #[test]
    fn count_limits_are_size_limits() {
        let mut raw = sample();
        raw.business_type = 2;
        raw.business_refs = vec!["000.00.00.G12,2018/09/01,1/BTC".into(); 101];
        let error = Header::validate(raw, &Limits::default(), today()).unwrap_err();
        assert_eq!(error.field, "business_refs");
        assert!(error.too_large, "{error}");
    }

    #[test]
    fn ill_formed_recipients_are_refused_one_by_one() {
        let mut raw = sample();
        raw.to.push(RawOrgan {
            organ_id: "H41".into(),
            ..Default::default()
        });
        let header = Header::validate(raw, &Limits::default(), today()).unwrap();
        assert!(matches!(header.to[2], Addressee::Refused { .. }));
        assert!(matches!(header.to[0], Addressee::Valid(_)));
    }
}
