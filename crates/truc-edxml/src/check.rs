//! The checks of content, every one run and every problem kept, so that an
//! agency's integrator reads the whole list at once: form, signature,
//! attachments, authority, notation and codes, formats. The envelope's own
//! rules (`Header::validate`) run last on the mapped header, so a package
//! that passes here is one the hub takes.

use base64::Engine;
use truc_domain::{AgencyCode, DocumentDate, DocumentId, Header, Limits, Status};

use crate::envelope::{raw_header, EXTRA_ATTACHMENT_NAME};
use crate::fields::element_for_field;
use crate::model::*;
use crate::parse::{clip, BUSINESS, HEADER, MANIFEST};
use crate::problem::{Category, Problem, Problems};
use crate::tree::EdxmlLimits;

/// What a check knows besides the package.
#[derive(Clone, Debug)]
pub struct CheckContext {
    /// Today in Vietnam: promulgation dates after tomorrow are refused.
    pub today: DocumentDate,
    /// The agency sending (the node's own certificate); `None` offline
    /// without `--as`, when the sender cannot be known.
    pub sender: Option<AgencyCode>,
    pub limits: Limits,
    pub edxml_limits: EdxmlLimits,
}

impl CheckContext {
    pub fn new(today: DocumentDate, sender: Option<AgencyCode>) -> Self {
        CheckContext {
            today,
            sender,
            limits: Limits::default(),
            edxml_limits: EdxmlLimits::default(),
        }
    }
}

/// Signature algorithms of XML-DSig (RFC 3275, RFC 6931) the SDKs use.
const SIGNATURE_METHODS: &[&str] = &[
    "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512",
    "http://www.w3.org/2021/04/xmldsig-more#eddsa-ed25519",
];
const DIGEST_METHODS: &[&str] = &[
    "http://www.w3.org/2000/09/xmldsig#sha1",
    "http://www.w3.org/2001/04/xmlenc#sha256",
    "http://www.w3.org/2001/04/xmldsig-more#sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512",
];
const CANONICALIZATION_METHODS: &[&str] = &[
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments",
    "http://www.w3.org/2001/10/xml-exc-c14n#",
    "http://www.w3.org/2001/10/xml-exc-c14n#WithComments",
    "http://www.w3.org/2006/12/xml-c14n11",
    // As the SDK samples write it.
    "http://www.w3.org/TR/xml-exc-c14n#",
];

/// Longest attachment name, in characters.
const ATTACHMENT_NAME_CHARS_MAX: usize = 255;
/// Longest document number (*số*), in digits.
const CODE_NUMBER_DIGITS_MAX: usize = 10;

fn text(
    problems: &mut Problems,
    path: &str,
    value: &str,
    chars_max: usize,
    required: bool,
    category: Category,
) {
    if required && value.trim().is_empty() {
        problems.error(
            path,
            category,
            "Thiếu thẻ hoặc thẻ rỗng",
            "is required (missing or empty)",
        );
        return;
    }
    let chars = value.chars().count();
    if chars > chars_max {
        problems.error(
            path,
            Category::Format,
            format!("Dài {chars} ký tự, quá giới hạn {chars_max}"),
            format!("is {chars} characters long, more than {chars_max}"),
        );
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        problems.error(
            path,
            Category::Format,
            "Chứa ký tự điều khiển",
            "contains control characters",
        );
    }
}

fn agency(problems: &mut Problems, path: &str, value: &str, required: bool) -> Option<AgencyCode> {
    if value.is_empty() {
        if required {
            problems.error(
                path,
                Category::Notation,
                "Thiếu mã định danh cơ quan",
                "is required: the agency code AAA.BB.CC.Xnn",
            );
        }
        return None;
    }
    match value.parse::<AgencyCode>() {
        Ok(code) => Some(code),
        Err(error) => {
            problems.error(
                path,
                Category::Notation,
                format!(
                    "Mã định danh '{}' sai cấu trúc AAA.BB.CC.Xnn (QCVN 102:2016)",
                    clip(value)
                ),
                error.to_string(),
            );
            None
        }
    }
}

/// A date written `yyyy/MM/dd`, as the standard and the SDKs write it.
fn date(problems: &mut Problems, path: &str, value: &str, required: bool) -> Option<DocumentDate> {
    if value.is_empty() {
        if required {
            problems.error(
                path,
                Category::Format,
                "Thiếu ngày (dạng yyyy/MM/dd)",
                "is required: a date yyyy/MM/dd",
            );
        }
        return None;
    }
    let shaped = value.len() == 10
        && value.bytes().enumerate().all(|(at, byte)| {
            if at == 4 || at == 7 {
                byte == b'/'
            } else {
                byte.is_ascii_digit()
            }
        });
    let parsed = shaped
        .then(|| DocumentDate::parse_iso(&value.replace('/', "-")).ok())
        .flatten();
    if parsed.is_none() {
        problems.error(
            path,
            Category::Format,
            format!("'{}' không phải ngày dạng yyyy/MM/dd", clip(value)),
            format!("'{}' is not a date yyyy/MM/dd", clip(value)),
        );
    }
    parsed
}

const TIMESTAMP: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]/[month]/[day] [hour]:[minute]:[second]");

/// A time written `yyyy/MM/dd HH:mm:ss` (Vietnam time).
pub fn parse_timestamp(value: &str) -> Option<time::PrimitiveDateTime> {
    time::PrimitiveDateTime::parse(value, TIMESTAMP).ok()
}

pub fn format_timestamp(at: time::PrimitiveDateTime) -> String {
    at.format(TIMESTAMP).unwrap_or_default()
}

fn timestamp(problems: &mut Problems, path: &str, value: &str) {
    if !value.is_empty() && parse_timestamp(value).is_none() {
        problems.error(
            path,
            Category::Format,
            format!(
                "'{}' không phải thời gian dạng yyyy/MM/dd HH:mm:ss",
                clip(value)
            ),
            format!("'{}' is not a time yyyy/MM/dd HH:mm:ss", clip(value)),
        );
    }
}

fn email(problems: &mut Problems, path: &str, value: &str) {
    if value.is_empty() {
        return;
    }
    let well_formed = match value.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
                && !value.chars().any(char::is_whitespace)
        }
        None => false,
    };
    if !well_formed {
        problems.error(
            path,
            Category::Format,
            format!("'{}' không phải địa chỉ thư điện tử", clip(value)),
            format!("'{}' is not an e-mail address", clip(value)),
        );
    }
}

fn digits(problems: &mut Problems, path: &str, value: &str) {
    if !value.is_empty() && !value.bytes().all(|b| b.is_ascii_digit()) {
        problems.error(
            path,
            Category::Format,
            format!("'{}' không phải số", clip(value)),
            format!("'{}' is not a number", clip(value)),
        );
    }
}

fn one_of(problems: &mut Problems, path: &str, value: &str, allowed: &[&str], meaning_en: &str) {
    if !value.is_empty() && !allowed.contains(&value) {
        problems.error(
            path,
            Category::Format,
            format!(
                "'{}' không thuộc các giá trị {}",
                clip(value),
                allowed.join(", ")
            ),
            format!(
                "'{}' is not one of {} ({meaning_en})",
                clip(value),
                allowed.join(", ")
            ),
        );
    }
}

fn at_most(problems: &mut Problems, path: &str, value: u32, max: u32, meaning_en: &str) {
    if value > max {
        problems.error(
            path,
            Category::Format,
            format!("{value} lớn hơn {max}"),
            format!("{value} is more than {max} ({meaning_en})"),
        );
    }
}

fn organization(problems: &mut Problems, path: &str, organization: &Organization, limits: &Limits) {
    let chars = limits.text_chars_max;
    for (name, value) in [
        ("OrganizationInCharge", &organization.organization_in_charge),
        ("OrganName", &organization.organ_name),
        ("OrganAdd", &organization.organ_add),
        ("Telephone", &organization.telephone),
        ("Fax", &organization.fax),
        ("Website", &organization.website),
        ("Email", &organization.email),
    ] {
        text(
            problems,
            &format!("{path}/{name}"),
            value,
            chars,
            false,
            Category::Form,
        );
    }
    email(problems, &format!("{path}/Email"), &organization.email);
}

/// The notation (*ký hiệu*): letters and digits in groups joined by `-`,
/// `.` or `&`, such as `VPCP-TTĐT` or `QĐ-TTg`; never `/` or `,`, which
/// separate the parts of a document id.
fn notation_well_formed(notation: &str) -> bool {
    let separator = |c: char| matches!(c, '-' | '.' | '&');
    !notation.is_empty()
        && notation
            .chars()
            .all(|c| c.is_alphanumeric() || separator(c))
        && notation.chars().any(char::is_alphabetic)
        && !notation.starts_with(separator)
        && !notation.ends_with(separator)
        && !notation
            .chars()
            .zip(notation.chars().skip(1))
            .any(|(a, b)| separator(a) && separator(b))
}

/// A document id, and its parts as a `ResponseFor` states them.
fn reference(problems: &mut Problems, path: &str, response: &ResponseFor) -> Option<DocumentId> {
    let id_path = format!("{path}/DocumentId");
    if response.document_id.is_empty() {
        problems.error(
            &id_path,
            Category::Notation,
            "Thiếu mã văn bản (OrganId,yyyy/MM/dd,Số/Ký hiệu)",
            "is required: OrganId,yyyy/MM/dd,Number/Notation",
        );
        return None;
    }
    let id = match response.document_id.parse::<DocumentId>() {
        Ok(id) => id,
        Err(error) => {
            problems.error(
                &id_path,
                Category::Notation,
                format!("Mã văn bản '{}' sai cấu trúc", clip(&response.document_id)),
                error.to_string(),
            );
            return None;
        }
    };
    let date = id.date().iso().replace('-', "/");
    for (name, stated, expected) in [
        ("OrganId", &response.organ_id, id.sender().to_string()),
        ("Code", &response.code, id.code().to_owned()),
        ("PromulgationDate", &response.promulgation_date, date),
    ] {
        if !stated.is_empty() && *stated != expected {
            problems.error(
                format!("{path}/{name}"),
                Category::Notation,
                format!("'{}' khác với mã văn bản ({expected})", clip(stated)),
                format!(
                    "'{}' differs from the document id's {expected}",
                    clip(stated)
                ),
            );
        }
    }
    Some(id)
}

fn signature(
    problems: &mut Problems,
    signature: &Option<Signature>,
    promulgated: Option<DocumentDate>,
) {
    let Some(signature) = signature else {
        problems.push(Problem::warning(
            "Signature",
            Category::Signature,
            "Gói tin không có chữ ký số của cơ quan gửi; văn bản được gửi và tính là chưa ký số",
            "the package carries no Signature of the sending organisation; it is sent, \
             and counted as a document without its own digital signature",
        ));
        return;
    };
    let base = "Signature";
    signed_info(problems, signature);
    match BASE64.decode(&signature.signature_value) {
        Ok(value) if !value.is_empty() => {}
        _ => problems.error(
            format!("{base}/SignatureValue"),
            Category::Signature,
            "Giá trị chữ ký rỗng hoặc không phải base64",
            "is empty or not base64",
        ),
    }
    signer_certificate(problems, signature, promulgated);
}

/// XML-DSig's values are in standard base64, padded.
const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// An algorithm, when given, is one of `list`.
fn known_algorithm(problems: &mut Problems, path: &str, value: &str, list: &[&str]) {
    if value.is_empty() {
        return;
    }
    if !list.contains(&value) {
        problems.error(
            path,
            Category::Signature,
            format!("Thuật toán '{}' không được hỗ trợ", clip(value)),
            format!(
                "the algorithm '{}' is not one XML-DSig defines for this",
                clip(value)
            ),
        );
    }
}

/// What the signature signs: canonicalization and signature method, and
/// each reference with its digest.
fn signed_info(problems: &mut Problems, signature: &Signature) {
    let signed_info = "Signature/SignedInfo";
    if signature.canonicalization_method.is_empty() {
        problems.error(
            format!("{signed_info}/CanonicalizationMethod"),
            Category::Signature,
            "Thiếu phương pháp chuẩn hóa",
            "is required",
        );
    }
    known_algorithm(
        problems,
        &format!("{signed_info}/CanonicalizationMethod"),
        &signature.canonicalization_method,
        CANONICALIZATION_METHODS,
    );
    if signature.signature_method.is_empty() {
        problems.error(
            format!("{signed_info}/SignatureMethod"),
            Category::Signature,
            "Thiếu thuật toán ký",
            "is required",
        );
    }
    known_algorithm(
        problems,
        &format!("{signed_info}/SignatureMethod"),
        &signature.signature_method,
        SIGNATURE_METHODS,
    );
    if signature.references.is_empty() {
        problems.error(
            format!("{signed_info}/Reference"),
            Category::Signature,
            "Chữ ký không tham chiếu nội dung nào",
            "is required: the signature must reference what it signs",
        );
    }
    for (index, reference) in signature.references.iter().enumerate() {
        let path = format!("{signed_info}/Reference[{}]", index + 1);
        known_algorithm(
            problems,
            &format!("{path}/DigestMethod"),
            &reference.digest_method,
            DIGEST_METHODS,
        );
        if reference.digest_method.is_empty() {
            problems.error(
                format!("{path}/DigestMethod"),
                Category::Signature,
                "Thiếu thuật toán băm",
                "is required",
            );
        }
        match BASE64.decode(&reference.digest_value) {
            Ok(digest) if !digest.is_empty() => {}
            _ => problems.error(
                format!("{path}/DigestValue"),
                Category::Signature,
                "Giá trị băm rỗng hoặc không phải base64",
                "is empty or not base64",
            ),
        }
    }
}

/// The signer's certificate: given, base64, X.509, and valid on the
/// promulgation date.
fn signer_certificate(
    problems: &mut Problems,
    signature: &Signature,
    promulgated: Option<DocumentDate>,
) {
    let certificate_path = "Signature/KeyInfo/X509Data/X509Certificate";
    if signature.x509_certificate.is_empty() {
        problems.error(
            certificate_path,
            Category::Signature,
            "Thiếu chứng thư số của người ký",
            "is required: the signer's certificate",
        );
        return;
    }
    let Ok(der) = BASE64.decode(&signature.x509_certificate) else {
        problems.error(
            certificate_path,
            Category::Signature,
            "Chứng thư số không phải base64",
            "is not base64",
        );
        return;
    };
    match x509_parser::parse_x509_certificate(&der) {
        Ok((_, certificate)) => {
            if let Some(date) = promulgated {
                let validity = certificate.validity();
                let start = DocumentDate::vietnam_date_of_unix_ms(
                    validity.not_before.timestamp().saturating_mul(1000),
                );
                let end = DocumentDate::vietnam_date_of_unix_ms(
                    validity.not_after.timestamp().saturating_mul(1000),
                );
                if start.is_some_and(|start| date < start) || end.is_some_and(|end| date > end) {
                    problems.error(
                        certificate_path,
                        Category::Signature,
                        "Chứng thư số không còn hiệu lực vào ngày ban hành văn bản",
                        format!(
                            "the certificate was not valid on the promulgation date {date} \
                             (valid {} to {})",
                            validity.not_before, validity.not_after
                        ),
                    );
                }
            }
        }
        Err(error) => problems.error(
            certificate_path,
            Category::Signature,
            "Chứng thư số không đọc được (không phải X.509 DER)",
            format!("is not an X.509 certificate: {error}"),
        ),
    }
}

fn attachments(problems: &mut Problems, package: &Package, limits: &Limits) {
    let revoke = package.business.doc_type == 1;
    if package.attachments.is_empty() && !revoke {
        problems.error(
            format!("{MANIFEST}/Reference"),
            Category::Attachments,
            "Văn bản không có tệp đính kèm",
            "is missing: a document must carry at least one attachment",
        );
    }
    // One place stays free for the edXML data the envelope does not carry.
    let count_max = limits.attachments_max.saturating_sub(1);
    if package.attachments.len() > count_max {
        problems.error(
            MANIFEST,
            Category::Attachments,
            format!("Quá {count_max} tệp đính kèm"),
            format!("more than {count_max} attachments"),
        );
    }
    let mut names = std::collections::HashMap::new();
    let mut ids = std::collections::HashMap::new();
    let mut total_bytes = 0u64;
    for (index, attachment) in package.attachments.iter().enumerate() {
        let path = format!("{MANIFEST}/Reference[{}]", index + 1);
        let name_path = format!("{path}/AttachmentName");
        text(
            problems,
            &name_path,
            &attachment.name,
            ATTACHMENT_NAME_CHARS_MAX,
            true,
            Category::Attachments,
        );
        let name = &attachment.name;
        if !name.is_empty() && (name.contains(['/', '\\']) || name.starts_with('.')) {
            problems.error(
                &name_path,
                Category::Attachments,
                "Tên tệp phải là tên đơn giản (không chứa đường dẫn, không bắt đầu bằng '.')",
                "must be a plain file name (no path separators, not starting with '.')",
            );
        }
        if name == EXTRA_ATTACHMENT_NAME {
            problems.error(
                &name_path,
                Category::Attachments,
                format!("Tên tệp '{EXTRA_ATTACHMENT_NAME}' được dành riêng"),
                format!("'{EXTRA_ATTACHMENT_NAME}' is reserved for the edXML data truc carries"),
            );
        }
        if !name.is_empty() {
            if let Some(first) = names.insert(name.clone(), index) {
                problems.error(
                    &name_path,
                    Category::Attachments,
                    format!(
                        "Tên tệp '{}' trùng với Reference[{}]",
                        clip(name),
                        first + 1
                    ),
                    format!("'{}' is already Reference[{}]", clip(name), first + 1),
                );
            }
        }
        if attachment.content_id.is_empty() {
            problems.error(
                format!("{path}/ContentId"),
                Category::Attachments,
                "Thiếu mã nội dung (ContentId)",
                "is required",
            );
        } else if let Some(first) = ids.insert(attachment.content_id.clone(), index) {
            problems.error(
                format!("{path}/ContentId"),
                Category::Attachments,
                format!("Mã nội dung trùng với Reference[{}]", first + 1),
                format!("is already Reference[{}]", first + 1),
            );
        }
        let media = &attachment.content_type;
        let media_ok = media.split_once('/').is_some_and(|(kind, sub)| {
            !kind.is_empty() && !sub.is_empty() && !media.chars().any(char::is_whitespace)
        });
        if !media_ok {
            problems.error(
                format!("{path}/ContentType"),
                Category::Attachments,
                format!("'{}' không phải kiểu nội dung (type/subtype)", clip(media)),
                format!("'{}' is not a media type type/subtype", clip(media)),
            );
        } else {
            text(
                problems,
                &format!("{path}/ContentType"),
                media,
                100,
                true,
                Category::Attachments,
            );
        }
        text(
            problems,
            &format!("{path}/Description"),
            &attachment.description,
            limits.text_chars_max,
            false,
            Category::Attachments,
        );
        if attachment.bytes.is_empty() && !attachment.name.is_empty() {
            problems.error(
                &path,
                Category::Attachments,
                "Tệp đính kèm rỗng (0 byte)",
                "the attachment is empty (0 bytes)",
            );
        }
        total_bytes = total_bytes.saturating_add(attachment.bytes.len() as u64);
    }
    if total_bytes > limits.document_bytes_max {
        problems.error(
            MANIFEST,
            Category::Attachments,
            format!(
                "Tổng dung lượng tệp đính kèm vượt {} byte",
                limits.document_bytes_max
            ),
            format!(
                "the attachments hold {total_bytes} bytes, more than the limit of {} per document",
                limits.document_bytes_max
            ),
        );
    }
}

/// Every problem of a document package.
pub fn check_package(package: &Package, context: &CheckContext) -> Vec<Problem> {
    let mut problems = Problems::default();
    let limits = &context.limits;
    let header = &package.header;

    let from = sender(&mut problems, header, context);
    recipients(&mut problems, header, from, limits);
    code(&mut problems, header);
    let promulgated = promulgation(&mut problems, header, context);
    document_id(&mut problems, package);
    type_subject_content(&mut problems, header, context);
    signer(&mut problems, package, limits);
    due_date(&mut problems, header, promulgated);
    other_information(&mut problems, header, limits);
    responses(&mut problems, header, limits);
    trace(&mut problems, package);
    business(&mut problems, package, from, limits);
    signature(&mut problems, &package.signature, promulgated);
    attachments(&mut problems, package, limits);
    envelope_rules(&mut problems, package, context);
    problems.0
}

/// The sending agency, and its authority to send: the `From` the node
/// itself sends as. Returns the sender's code when it is one.
fn sender(
    problems: &mut Problems,
    header: &MessageHeader,
    context: &CheckContext,
) -> Option<AgencyCode> {
    let limits = &context.limits;
    let h = HEADER;
    let from = agency(
        problems,
        &format!("{h}/From/OrganId"),
        &header.from.organ_id,
        true,
    );
    organization(problems, &format!("{h}/From"), &header.from, limits);
    if let (Some(from), Some(sender)) = (from, context.sender) {
        if from != sender {
            problems.error(
                format!("{h}/From/OrganId"),
                Category::Authority,
                format!("Đơn vị gửi {from} không phải đơn vị của nút này ({sender})"),
                format!("{from} is not the sending agency; this node sends as {sender}"),
            );
        }
    }
    from
}

/// The recipients: at least one, not too many, none twice, none the sender.
fn recipients(
    problems: &mut Problems,
    header: &MessageHeader,
    from: Option<AgencyCode>,
    limits: &Limits,
) {
    let h = HEADER;
    if header.to.is_empty() {
        problems.error(
            format!("{h}/To"),
            Category::Form,
            "Thiếu đơn vị nhận",
            "is missing: at least one recipient is required",
        );
    }
    if header.to.len() > limits.recipients_max {
        problems.error(
            format!("{h}/To"),
            Category::Format,
            format!("Quá {} đơn vị nhận", limits.recipients_max),
            format!("more than {} recipients", limits.recipients_max),
        );
    }
    let mut seen = std::collections::HashMap::new();
    for (index, to) in header.to.iter().enumerate() {
        let path = format!("{h}/To[{}]", index + 1);
        let code = agency(problems, &format!("{path}/OrganId"), &to.organ_id, true);
        organization(problems, &path, to, limits);
        if let Some(first) = seen.insert(to.organ_id.clone(), index) {
            if !to.organ_id.is_empty() {
                problems.error(
                    format!("{path}/OrganId"),
                    Category::Form,
                    format!("Đơn vị nhận {} đã có ở To[{}]", to.organ_id, first + 1),
                    format!("'{}' is already To[{}]", to.organ_id, first + 1),
                );
            }
        }
        if code.is_some() && code == from {
            problems.error(
                format!("{path}/OrganId"),
                Category::Form,
                "Đơn vị nhận là chính đơn vị gửi",
                "is the sender itself",
            );
        }
    }
}

/// The document number (*số*) and notation (*ký hiệu*).
fn code(problems: &mut Problems, header: &MessageHeader) {
    let h = HEADER;
    let number = &header.code.number;
    let notation = &header.code.notation;
    if number.is_empty() {
        problems.error(
            format!("{h}/Code/CodeNumber"),
            Category::Notation,
            "Thiếu số văn bản",
            "is required",
        );
    } else if !number.bytes().all(|b| b.is_ascii_digit()) || number.len() > CODE_NUMBER_DIGITS_MAX {
        problems.error(
            format!("{h}/Code/CodeNumber"),
            Category::Notation,
            format!(
                "Số văn bản '{}' phải là chữ số Ả Rập (tối đa {CODE_NUMBER_DIGITS_MAX} chữ số)",
                clip(number)
            ),
            format!(
                "'{}' is not a document number: Arabic digits, at most {CODE_NUMBER_DIGITS_MAX}",
                clip(number)
            ),
        );
    }
    if notation.is_empty() {
        problems.error(
            format!("{h}/Code/CodeNotation"),
            Category::Notation,
            "Thiếu ký hiệu văn bản",
            "is required",
        );
    } else if !notation_well_formed(notation) {
        problems.error(
            format!("{h}/Code/CodeNotation"),
            Category::Notation,
            format!(
                "Ký hiệu '{}' sai thể thức: chữ và số, nối bằng '-', '.' hoặc '&', không có khoảng trắng, '/' hay ','",
                clip(notation)
            ),
            format!(
                "'{}' is not a notation: letters and digits joined by '-', '.' or '&', \
                 without spaces, '/' or ','",
                clip(notation)
            ),
        );
    }
}

/// The promulgation date and place. Returns the date when it is one.
fn promulgation(
    problems: &mut Problems,
    header: &MessageHeader,
    context: &CheckContext,
) -> Option<DocumentDate> {
    let limits = &context.limits;
    let h = HEADER;
    let promulgated = date(
        problems,
        &format!("{h}/PromulgationInfo/PromulgationDate"),
        &header.promulgation.date,
        true,
    );
    if let Some(promulgated) = promulgated {
        let latest = (0..limits.future_days_max).try_fold(context.today, |day, _| day.next_day());
        if promulgated.year() < 1945 {
            problems.error(
                format!("{h}/PromulgationInfo/PromulgationDate"),
                Category::Format,
                "Ngày ban hành trước năm 1945",
                "is before 1945",
            );
        } else if latest.is_some_and(|latest| promulgated > latest) {
            problems.error(
                format!("{h}/PromulgationInfo/PromulgationDate"),
                Category::Format,
                format!(
                    "Ngày ban hành {promulgated} ở tương lai (hôm nay {})",
                    context.today
                ),
                format!(
                    "{promulgated} is in the future (today is {})",
                    context.today
                ),
            );
        }
    }
    text(
        problems,
        &format!("{h}/PromulgationInfo/Place"),
        &header.promulgation.place,
        limits.text_chars_max,
        false,
        Category::Form,
    );
    promulgated
}

/// The document id, when given, is the one the sender, date, number and
/// notation make.
fn document_id(problems: &mut Problems, package: &Package) {
    let header = &package.header;
    let h = HEADER;
    let derived = package.derived_document_id();
    if !header.document_id.is_empty() && header.document_id != derived {
        problems.error(
            format!("{h}/DocumentId"),
            Category::Notation,
            format!("'{}' khác mã tạo từ OrganId, ngày ban hành, số và ký hiệu: {derived}", clip(&header.document_id)),
            format!(
                "'{}' is not the id its From, PromulgationDate, CodeNumber and CodeNotation make: {derived}",
                clip(&header.document_id)
            ),
        );
    }
}

/// The document type, subject and content.
fn type_subject_content(problems: &mut Problems, header: &MessageHeader, context: &CheckContext) {
    let limits = &context.limits;
    let h = HEADER;
    text(
        problems,
        &format!("{h}/DocumentType/TypeName"),
        &header.document_type.type_name,
        limits.text_chars_max,
        true,
        Category::Form,
    );
    digits(
        problems,
        &format!("{h}/DocumentType/TypeDetail"),
        &header.document_type.type_detail,
    );
    text(
        problems,
        &format!("{h}/Subject"),
        &header.subject,
        limits.subject_chars_max,
        true,
        Category::Form,
    );
    text(
        problems,
        &format!("{h}/Content"),
        &header.content,
        context.edxml_limits.content_chars_max,
        false,
        Category::Form,
    );
}

/// Who signed, required unless the package revokes a document.
fn signer(problems: &mut Problems, package: &Package, limits: &Limits) {
    let header = &package.header;
    let h = HEADER;
    let revoke = package.business.doc_type == 1;
    match &header.signer_info {
        None if !revoke => problems.error(
            format!("{h}/SignerInfo"),
            Category::Authority,
            "Thiếu thông tin người ký (thẩm quyền, chức vụ, họ tên)",
            "is missing: who signed the document, in what position and with what authority",
        ),
        None => {}
        Some(signer) => {
            let path = format!("{h}/SignerInfo");
            text(
                problems,
                &format!("{path}/FullName"),
                &signer.full_name,
                limits.text_chars_max,
                true,
                Category::Authority,
            );
            text(
                problems,
                &format!("{path}/Position"),
                &signer.position,
                limits.text_chars_max,
                true,
                Category::Authority,
            );
            text(
                problems,
                &format!("{path}/Competence"),
                &signer.competence,
                limits.text_chars_max,
                false,
                Category::Authority,
            );
        }
    }
}

/// The due date, after the promulgation date and within ten years of it.
fn due_date(problems: &mut Problems, header: &MessageHeader, promulgated: Option<DocumentDate>) {
    let h = HEADER;
    if let Some(due) = date(problems, &format!("{h}/DueDate"), &header.due_date, false) {
        if let Some(promulgated) = promulgated {
            if due < promulgated {
                problems.error(
                    format!("{h}/DueDate"),
                    Category::Format,
                    format!("Hạn xử lý {due} trước ngày ban hành {promulgated}"),
                    format!("{due} is before the promulgation date {promulgated}"),
                );
            } else if due.year() > promulgated.year() + 10 {
                problems.error(
                    format!("{h}/DueDate"),
                    Category::Format,
                    "Hạn xử lý xa hơn mười năm",
                    "is more than ten years away",
                );
            }
        }
    }
}

/// The places, priority, steering type and other information.
fn other_information(problems: &mut Problems, header: &MessageHeader, limits: &Limits) {
    let h = HEADER;
    for (index, place) in header.to_places.iter().enumerate() {
        text(
            problems,
            &format!("{h}/ToPlaces/Place[{}]", index + 1),
            place,
            limits.text_chars_max,
            true,
            Category::Form,
        );
    }
    let other = &header.other_info;
    at_most(
        problems,
        &format!("{h}/OtherInfo/Priority"),
        other.priority,
        4,
        "0 normal to 4 express at a set time",
    );
    at_most(
        problems,
        &format!("{h}/SteeringType"),
        header.steering_type,
        3,
        "0 to 3",
    );
    digits(
        problems,
        &format!("{h}/OtherInfo/PromulgationAmount"),
        &other.promulgation_amount,
    );
    one_of(
        problems,
        &format!("{h}/OtherInfo/Direction"),
        &other.direction,
        &["true", "false"],
        "a yes or no",
    );
    for (name, value) in [
        ("SphereOfPromulgation", &other.sphere_of_promulgation),
        ("TyperNotation", &other.typer_notation),
    ] {
        text(
            problems,
            &format!("{h}/OtherInfo/{name}"),
            value,
            limits.text_chars_max,
            false,
            Category::Form,
        );
    }
    for (index, appendix) in other.appendixes.iter().enumerate() {
        text(
            problems,
            &format!("{h}/OtherInfo/Appendixes/Appendix[{}]", index + 1),
            appendix,
            limits.text_chars_max,
            false,
            Category::Form,
        );
    }
}

/// The documents it answers.
fn responses(problems: &mut Problems, header: &MessageHeader, limits: &Limits) {
    let h = HEADER;
    if header.response_for.len() > limits.references_max {
        problems.error(
            format!("{h}/ResponseFor"),
            Category::Format,
            format!("Quá {} văn bản được phúc đáp", limits.references_max),
            format!("more than {} documents", limits.references_max),
        );
    }
    for (index, response) in header.response_for.iter().enumerate() {
        reference(
            problems,
            &format!("{h}/ResponseFor[{}]", index + 1),
            response,
        );
    }
}

/// The trace of the agencies the package went through.
fn trace(problems: &mut Problems, package: &Package) {
    for (index, trace) in package.trace_headers.iter().enumerate() {
        let path = format!("TraceHeaderList/TraceHeader[{}]", index + 1);
        agency(problems, &format!("{path}/OrganId"), &trace.organ_id, true);
        timestamp(problems, &format!("{path}/Timestamp"), &trace.timestamp);
    }
}

/// The envelope's own rules, on the header the package maps to: a
/// package that passes here is one the hub takes.
fn envelope_rules(problems: &mut Problems, package: &Package, context: &CheckContext) {
    if !problems.has_errors() {
        let raw = raw_header(package);
        if let Err(error) = Header::validate(raw, &context.limits, context.today) {
            let element = element_for_field(&error.field, package);
            problems.error(
                element,
                Category::Form,
                "Trục không nhận trường này (xem mô tả tiếng Anh)",
                error.to_string(),
            );
        }
    }
}

fn business(problems: &mut Problems, package: &Package, from: Option<AgencyCode>, limits: &Limits) {
    let business = &package.business;
    let b = BUSINESS;
    at_most(
        problems,
        &format!("{b}/BussinessDocType"),
        business.doc_type,
        3,
        "0 new, 1 revoke, 2 update, 3 replace",
    );
    text(
        problems,
        &format!("{b}/BussinessDocReason"),
        &business.doc_reason,
        limits.text_chars_max,
        false,
        Category::Form,
    );
    one_of(
        problems,
        &format!("{b}/Paper"),
        &business.paper,
        &["0", "1"],
        "1 when a paper copy is sent too",
    );
    let mut refs: Vec<(String, &str)> = Vec::new();
    if !business.document_id.is_empty() {
        refs.push((format!("{b}/DocumentId"), &business.document_id));
    }
    for (index, replacement) in business.replacements.iter().enumerate() {
        let path = format!("{b}/ReplacementInfoList/ReplacementInfo[{}]", index + 1);
        refs.push((format!("{path}/DocumentId"), &replacement.document_id));
        for (at, organ) in replacement.organ_ids.iter().enumerate() {
            agency(
                problems,
                &format!("{path}/OrganIdList/OrganId[{}]", at + 1),
                organ,
                true,
            );
        }
    }
    if business.doc_type == 0 && !refs.is_empty() {
        problems.error(
            &refs[0].0,
            Category::Form,
            "Văn bản mới (BussinessDocType 0) không được nêu văn bản bị thu hồi, cập nhật hay thay thế",
            "names a document, but a new document (BussinessDocType 0) acts on none",
        );
    }
    if (1..=3).contains(&business.doc_type) && refs.is_empty() {
        problems.error(
            format!("{b}/DocumentId"),
            Category::Form,
            "Văn bản thu hồi, cập nhật hay thay thế phải nêu mã văn bản bị tác động",
            "is missing: a revoke, update or replace must name the document it acts on",
        );
    }
    if refs.len() > limits.references_max {
        problems.error(
            b,
            Category::Format,
            format!("Quá {} văn bản bị tác động", limits.references_max),
            format!("names more than {} documents", limits.references_max),
        );
    }
    for (path, id) in &refs {
        if id.is_empty() {
            problems.error(path, Category::Notation, "Thiếu mã văn bản", "is required");
            continue;
        }
        match id.parse::<DocumentId>() {
            Ok(id) => {
                if let Some(from) = from {
                    if id.sender() != from {
                        problems.error(
                            path,
                            Category::Authority,
                            format!(
                                "Chỉ thu hồi, cập nhật, thay thế được văn bản do chính {from} gửi, không phải của {}",
                                id.sender()
                            ),
                            format!(
                                "{id} was sent by {}; an agency revokes, updates or replaces only its own documents",
                                id.sender()
                            ),
                        );
                    }
                }
            }
            Err(error) => problems.error(
                path,
                Category::Notation,
                format!("Mã văn bản '{}' sai cấu trúc", clip(id)),
                error.to_string(),
            ),
        }
    }
    if let Some(staff) = &business.staff_info {
        staff_info(problems, &format!("{b}/StaffInfo"), staff, limits);
    }
    if let Some(info) = &business.document_info {
        let path = format!("{b}/BussinessDocumentInfo");
        one_of(
            problems,
            &format!("{path}/DocumentInfo"),
            &info.document_info,
            &["0", "1"],
            "1 when the document's information changes",
        );
        one_of(
            problems,
            &format!("{path}/DocumentReceiver"),
            &info.document_receiver,
            &["0", "1"],
            "1 when its recipients change",
        );
        for (index, receiver) in info.receivers.iter().enumerate() {
            let rp = format!("{path}/ReceiverList/Receiver[{}]", index + 1);
            one_of(
                problems,
                &format!("{rp}/ReceiverType"),
                &receiver.receiver_type,
                &["0", "1"],
                "0 dropped, 1 added",
            );
            agency(problems, &format!("{rp}/OrganId"), &receiver.organ_id, true);
        }
    }
}

fn staff_info(problems: &mut Problems, path: &str, staff: &StaffInfo, limits: &Limits) {
    for (name, value) in [
        ("Department", &staff.department),
        ("Staff", &staff.staff),
        ("Mobile", &staff.mobile),
        ("Email", &staff.email),
    ] {
        text(
            problems,
            &format!("{path}/{name}"),
            value,
            limits.text_chars_max,
            false,
            Category::Form,
        );
    }
    email(problems, &format!("{path}/Email"), &staff.email);
}

/// Every problem of a status message. `sender` is the agency whose node
/// sends it: the status must be its own, or a unit's of its subtree (a relay).
pub fn check_status(status: &StatusMessage, context: &CheckContext) -> Vec<Problem> {
    let mut problems = Problems::default();
    let h = HEADER;
    reference(
        &mut problems,
        &format!("{h}/ResponseFor"),
        &status.response_for,
    );
    let from = agency(
        &mut problems,
        &format!("{h}/From/OrganId"),
        &status.from.organ_id,
        true,
    );
    organization(
        &mut problems,
        &format!("{h}/From"),
        &status.from,
        &context.limits,
    );
    if let (Some(from), Some(sender)) = (from, context.sender) {
        if !sender.contains(&from) {
            problems.error(
                format!("{h}/From/OrganId"),
                Category::Authority,
                format!("{from} không phải đơn vị của nút này ({sender}) hay đơn vị trực thuộc"),
                format!("{from} is neither this node's agency ({sender}) nor a unit below it"),
            );
        }
    }
    let code_path = format!("{h}/StatusCode");
    let code = &status.status_code;
    let parsed = if code.len() == 2 && code.bytes().all(|b| b.is_ascii_digit()) {
        code.parse::<u32>()
            .ok()
            .and_then(|n| Status::from_code(n).ok())
    } else {
        None
    };
    match parsed {
        None => problems.error(
            &code_path,
            Category::Format,
            format!("'{}' không phải mã trạng thái (01, 02, 03, 04, 05, 06, 15, 16)", clip(code)),
            format!(
                "'{}' is not a status code: 01 arrived, 02 rejected, 03 received, 04 assigned, \
                 05 processing, 06 completed, 15 recall agreed, 16 recall refused",
                clip(code)
            ),
        ),
        Some(Status::RecallRequested) => problems.error(
            &code_path,
            Category::Authority,
            "Thu hồi (13) được gửi bằng một văn bản có BussinessDocType 1, không bằng gói tin trạng thái",
            "13 (recall requested) is sent as a document with BussinessDocType 1 naming what it \
             recalls, not as a status",
        ),
        Some(Status::Rejected | Status::RecallRefused) if status.description.trim().is_empty() => {
            problems.error(
                format!("{h}/Description"),
                Category::Form,
                "Từ chối phải nêu lý do",
                "is required: a rejection or a refused recall must say why",
            )
        }
        Some(_) => {}
    }
    text(
        &mut problems,
        &format!("{h}/Description"),
        &status.description,
        context.limits.reason_chars_max,
        false,
        Category::Form,
    );
    timestamp(&mut problems, &format!("{h}/Timestamp"), &status.timestamp);
    if let Some(staff) = &status.staff_info {
        staff_info(
            &mut problems,
            &format!("{h}/StaffInfo"),
            staff,
            &context.limits,
        );
    }
    problems.0
}

#[cfg(test)]
mod tests {
    use super::notation_well_formed;

    #[test]
    fn notations() {
        for good in [
            "VPCP-TTĐT",
            "QĐ-TTg",
            "BTC",
            "UBND.VX",
            "TTr-BTTTT",
            "CV&KH",
        ] {
            assert!(notation_well_formed(good), "{good}");
        }
        for bad in ["", "VPCP TTĐT", "-BTC", "BTC-", "A--B", "A/B", "A,B", "123"] {
            assert!(!notation_well_formed(bad), "{bad}");
        }
    }
}
