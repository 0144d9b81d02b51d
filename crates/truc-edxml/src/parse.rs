//! From the element tree to the model: every element is looked up by its
//! local name in the QCVN 102:2016 namespace (or none, as some SDKs write
//! the attachments), the `Signature` block also in XML-DSig's; an element
//! unknown, repeated where one is allowed, or holding children where text is
//! expected is a problem named by its path. Values are trimmed.

use base64::Engine;

use crate::model::*;
use crate::problem::{Category, Problem, Problems};
use crate::tree::{parse_tree, EdxmlLimits, Element};

pub const HEADER: &str = "MessageHeader";
pub const TRACE: &str = "TraceHeaderList";
pub const BUSINESS: &str = "TraceHeaderList/Bussiness";
pub const MANIFEST: &str = "edXMLBody/edXMLManifest";
pub const ENCODED: &str = "AttachmentEncoded";

/// Attachment bytes the package names by `AttachmentName` but does not
/// carry (a package in a folder beside its files).
pub trait AttachmentFiles {
    /// The bytes of the file named `name`, or why they cannot be read.
    fn read(&self, name: &str) -> Result<Vec<u8>, FileError>;
}

/// Why an attachment file named by a package cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("the package does not carry it in AttachmentEncoded")]
    NotCarried,
    #[error("not a plain file name of the folder")]
    NotPlainName,
    #[error("no such file in the folder ({0})")]
    Missing(std::io::Error),
    #[error("not a file")]
    NotAFile,
    #[error("{size} bytes, more than the limit of {limit} per document")]
    TooLarge { size: u64, limit: u64 },
    #[error("{0}")]
    Read(std::io::Error),
}

/// No files: every attachment must travel inside the package.
pub struct InlineOnly;

impl AttachmentFiles for InlineOnly {
    fn read(&self, _name: &str) -> Result<Vec<u8>, FileError> {
        Err(FileError::NotCarried)
    }
}

/// Reads a package or a status message. Problems of form are collected
/// (every one found, not only the first); the checks of content are
/// [`crate::check`]'s.
pub fn parse_message(
    bytes: &[u8],
    limits: &EdxmlLimits,
    files: &dyn AttachmentFiles,
) -> Result<(Message, Vec<Problem>), Vec<Problem>> {
    let root = parse_tree(bytes, limits).map_err(|problem| vec![problem])?;
    let mut problems = Problems::default();
    let message = read_root(&root, files, &mut problems);
    match message {
        Some(message) if !problems.has_errors() => Ok((message, problems.0)),
        _ => Err(problems.0),
    }
}

fn in_edxml(element: &Element) -> bool {
    matches!(element.namespace.as_deref(), None | Some(NAMESPACE))
}

fn in_signature(element: &Element) -> bool {
    matches!(
        element.namespace.as_deref(),
        None | Some(NAMESPACE) | Some(XMLDSIG_NAMESPACE)
    )
}

fn unknown(problems: &mut Problems, path: &str, element: &Element) {
    problems.error(
        path,
        Category::Form,
        format!("Thẻ không có trong QCVN 102:2016 (dòng {})", element.line),
        format!(
            "is not an element of QCVN 102:2016 here (line {}{})",
            element.line,
            match &element.namespace {
                Some(namespace) if namespace != NAMESPACE => format!(", namespace {namespace}"),
                _ => String::new(),
            }
        ),
    );
}

/// Children by name, with 1-based indices for repeated ones and a problem
/// for each unknown or misplaced child.
struct Children<'a> {
    path: &'a str,
    seen: Vec<(&'a str, usize)>,
}

impl<'a> Children<'a> {
    fn new(path: &'a str) -> Self {
        Children {
            path,
            seen: Vec::new(),
        }
    }

    /// The child's path, counting its repetitions.
    fn path_of(&mut self, name: &'a str, repeated: bool) -> String {
        let count = match self.seen.iter_mut().find(|(seen, _)| *seen == name) {
            Some((_, count)) => {
                *count += 1;
                *count
            }
            None => {
                self.seen.push((name, 1));
                1
            }
        };
        let prefix = if self.path.is_empty() {
            String::new()
        } else {
            format!("{}/", self.path)
        };
        if repeated {
            format!("{prefix}{name}[{count}]")
        } else {
            format!("{prefix}{name}")
        }
    }

    /// For an element allowed once: its path, and whether this is the first.
    fn once(&mut self, name: &'a str, problems: &mut Problems, element: &Element) -> String {
        let path = self.path_of(name, false);
        let count = self
            .seen
            .iter()
            .find(|(seen, _)| *seen == name)
            .map_or(1, |(_, count)| *count);
        if count > 1 {
            problems.error(
                &path,
                Category::Form,
                format!("Thẻ chỉ được có một lần (lặp lại ở dòng {})", element.line),
                format!(
                    "appears more than once (again on line {}); it may appear once",
                    element.line
                ),
            );
        }
        path
    }
}

/// The trimmed text of an element that must hold text only.
fn leaf(problems: &mut Problems, path: &str, element: &Element) -> String {
    if let Some(child) = element.children.first() {
        problems.error(
            path,
            Category::Form,
            format!("Thẻ chỉ chứa giá trị, không chứa thẻ con <{}>", child.name),
            format!("holds a value, not the element <{}>", child.name),
        );
    }
    element.text.trim().to_owned()
}

fn number(problems: &mut Problems, path: &str, element: &Element) -> u32 {
    let text = leaf(problems, path, element);
    if text.is_empty() {
        return 0;
    }
    match text.parse::<u32>() {
        Ok(value) if text.bytes().all(|b| b.is_ascii_digit()) => value,
        _ => {
            problems.error(
                path,
                Category::Format,
                format!("'{}' không phải số nguyên không âm", clip(&text)),
                format!("'{}' is not a whole number", clip(&text)),
            );
            0
        }
    }
}

pub(crate) fn clip(text: &str) -> String {
    let mut clipped: String = text.chars().take(60).collect();
    if clipped.len() < text.len() {
        clipped.push('…');
    }
    clipped
}

fn no_text(problems: &mut Problems, path: &str, element: &Element) {
    if !element.text.trim().is_empty() {
        problems.error(
            path,
            Category::Form,
            "Thẻ chỉ chứa các thẻ con, không chứa giá trị",
            format!(
                "holds elements, not the text '{}'",
                clip(element.text.trim())
            ),
        );
    }
}

fn read_root(
    root: &Element,
    files: &dyn AttachmentFiles,
    problems: &mut Problems,
) -> Option<Message> {
    if root.name != "edXML" || root.namespace.as_deref() != Some(NAMESPACE) {
        problems.error(
            "edXML",
            Category::Form,
            format!("Thẻ gốc phải là edXML trong không gian tên {NAMESPACE}"),
            format!(
                "the root element must be edXML in the namespace {NAMESPACE}, not {}{}",
                root.name,
                root.namespace
                    .as_deref()
                    .map(|namespace| format!(" in {namespace}"))
                    .unwrap_or_else(|| " without a namespace".into())
            ),
        );
        return None;
    }
    no_text(problems, "edXML", root);
    let mut envelope = None;
    let mut encoded = Vec::new();
    let mut children = Children::new("");
    for child in &root.children {
        match (child.name.as_str(), in_edxml(child)) {
            ("edXMLEnvelope", true) => {
                let path = children.once("edXMLEnvelope", problems, child);
                if envelope.is_none() {
                    envelope = Some((child, path));
                }
            }
            ("AttachmentEncoded", true) => {
                children.once(ENCODED, problems, child);
                encoded.push(child);
            }
            _ => {
                let path = children.path_of(&child.name, false);
                unknown(problems, &path, child);
            }
        }
    }
    let Some((envelope, _)) = envelope else {
        problems.error(
            "edXMLEnvelope",
            Category::Form,
            "Thiếu thẻ edXMLEnvelope",
            "is missing",
        );
        return None;
    };
    no_text(problems, "edXMLEnvelope", envelope);
    let mut header = None;
    let mut body = None;
    let mut children = Children::new("");
    for child in &envelope.children {
        match (child.name.as_str(), in_edxml(child)) {
            ("edXMLHeader", true) => {
                children.once("edXMLHeader", problems, child);
                header.get_or_insert(child);
            }
            ("edXMLBody", true) => {
                children.once("edXMLBody", problems, child);
                body.get_or_insert(child);
            }
            _ => unknown(problems, &format!("edXMLEnvelope/{}", child.name), child),
        }
    }
    let Some(header) = header else {
        problems.error(
            "edXMLHeader",
            Category::Form,
            "Thiếu thẻ edXMLHeader",
            "is missing",
        );
        return None;
    };
    no_text(problems, "edXMLHeader", header);
    let message_header = header.children.iter().find(|child| child.name == HEADER);
    let is_status = message_header.is_some_and(|element| {
        element
            .children
            .iter()
            .any(|child| child.name == "StatusCode")
    });
    if is_status {
        let mut status = StatusMessage::default();
        let mut children = Children::new("");
        for child in &header.children {
            match (child.name.as_str(), in_edxml(child)) {
                (HEADER, true) => {
                    let path = children.once(HEADER, problems, child);
                    status = read_status(child, &path, problems);
                }
                // Some SDKs write a trace on status messages too; it carries nothing truc uses.
                (TRACE, true) => {
                    children.once(TRACE, problems, child);
                }
                _ => unknown(problems, &child.name, child),
            }
        }
        return Some(Message::Status(Box::new(status)));
    }
    let mut package = Package::default();
    let mut found_header = false;
    let mut children = Children::new("");
    for child in &header.children {
        match (child.name.as_str(), in_edxml(child), in_signature(child)) {
            (HEADER, true, _) => {
                let path = children.once(HEADER, problems, child);
                package.header = read_message_header(child, &path, problems);
                found_header = true;
            }
            (TRACE, true, _) => {
                let path = children.once(TRACE, problems, child);
                read_trace(child, &path, &mut package, problems);
            }
            ("Signature", _, true) => {
                let path = children.once("Signature", problems, child);
                package.signature = Some(read_signature(child, &path, problems));
            }
            // The SDKs of some vendors leave an empty placeholder.
            ("DigitalSignature", true, _) if child.children.is_empty() => {}
            _ => unknown(problems, &child.name, child),
        }
    }
    if !found_header {
        problems.error(
            HEADER,
            Category::Form,
            "Thiếu thẻ MessageHeader",
            "is missing",
        );
    }
    package.attachments = read_attachments(body, &encoded, files, problems);
    Some(Message::Document(Box::new(package)))
}

fn read_organization(element: &Element, path: &str, problems: &mut Problems) -> Organization {
    no_text(problems, path, element);
    let mut organization = Organization::default();
    let mut children = Children::new(path);
    for child in &element.children {
        if !in_edxml(child) {
            unknown(problems, &format!("{path}/{}", child.name), child);
            continue;
        }
        let slot = match child.name.as_str() {
            "OrganId" => &mut organization.organ_id,
            "OrganizationInCharge" => &mut organization.organization_in_charge,
            "OrganName" => &mut organization.organ_name,
            "OrganAdd" => &mut organization.organ_add,
            "Email" => &mut organization.email,
            "Telephone" => &mut organization.telephone,
            "Fax" => &mut organization.fax,
            "Website" => &mut organization.website,
            _ => {
                unknown(problems, &format!("{path}/{}", child.name), child);
                continue;
            }
        };
        let child_path = children.once(&child.name, problems, child);
        *slot = leaf(problems, &child_path, child);
    }
    organization
}

fn read_code(element: &Element, path: &str, problems: &mut Problems) -> Code {
    no_text(problems, path, element);
    let mut code = Code::default();
    let mut children = Children::new(path);
    for child in &element.children {
        match (child.name.as_str(), in_edxml(child)) {
            ("CodeNumber", true) => {
                let p = children.once("CodeNumber", problems, child);
                code.number = leaf(problems, &p, child);
            }
            ("CodeNotation", true) => {
                let p = children.once("CodeNotation", problems, child);
                code.notation = leaf(problems, &p, child);
            }
            _ => unknown(problems, &format!("{path}/{}", child.name), child),
        }
    }
    code
}

fn read_promulgation(element: &Element, path: &str, problems: &mut Problems) -> PromulgationInfo {
    no_text(problems, path, element);
    let mut info = PromulgationInfo::default();
    let mut children = Children::new(path);
    for child in &element.children {
        match (child.name.as_str(), in_edxml(child)) {
            ("Place", true) => {
                let p = children.once("Place", problems, child);
                info.place = leaf(problems, &p, child);
            }
            ("PromulgationDate", true) => {
                let p = children.once("PromulgationDate", problems, child);
                info.date = leaf(problems, &p, child);
            }
            _ => unknown(problems, &format!("{path}/{}", child.name), child),
        }
    }
    info
}

fn read_document_type(element: &Element, path: &str, problems: &mut Problems) -> DocumentType {
    no_text(problems, path, element);
    let mut document_type = DocumentType::default();
    let mut children = Children::new(path);
    for child in &element.children {
        match (child.name.as_str(), in_edxml(child)) {
            ("Type", true) => {
                let p = children.once("Type", problems, child);
                document_type.type_code = number(problems, &p, child);
            }
            ("TypeDetail", true) => {
                let p = children.once("TypeDetail", problems, child);
                document_type.type_detail = leaf(problems, &p, child);
            }
            ("TypeName", true) => {
                let p = children.once("TypeName", problems, child);
                document_type.type_name = leaf(problems, &p, child);
            }
            _ => unknown(problems, &format!("{path}/{}", child.name), child),
        }
    }
    document_type
}

fn read_signer(element: &Element, path: &str, problems: &mut Problems) -> SignerInfo {
    no_text(problems, path, element);
    let mut signer = SignerInfo::default();
    let mut children = Children::new(path);
    for child in &element.children {
        let slot = match (child.name.as_str(), in_edxml(child)) {
            ("Competence", true) => &mut signer.competence,
            ("Position", true) => &mut signer.position,
            ("FullName", true) => &mut signer.full_name,
            _ => {
                unknown(problems, &format!("{path}/{}", child.name), child);
                continue;
            }
        };
        let p = children.once(&child.name, problems, child);
        *slot = leaf(problems, &p, child);
    }
    signer
}

fn read_staff(element: &Element, path: &str, problems: &mut Problems) -> StaffInfo {
    no_text(problems, path, element);
    let mut staff = StaffInfo::default();
    let mut children = Children::new(path);
    for child in &element.children {
        let slot = match (child.name.as_str(), in_edxml(child)) {
            ("Department", true) => &mut staff.department,
            ("Staff", true) => &mut staff.staff,
            ("Email", true) => &mut staff.email,
            ("Mobile", true) => &mut staff.mobile,
            _ => {
                unknown(problems, &format!("{path}/{}", child.name), child);
                continue;
            }
        };
        let p = children.once(&child.name, problems, child);
        *slot = leaf(problems, &p, child);
    }
    staff
}

fn read_other_info(element: &Element, path: &str, problems: &mut Problems) -> OtherInfo {
    no_text(problems, path, element);
    let mut other = OtherInfo::default();
    let mut children = Children::new(path);
    for child in &element.children {
        if !in_edxml(child) {
            unknown(problems, &format!("{path}/{}", child.name), child);
            continue;
        }
        match child.name.as_str() {
            "Priority" => {
                let p = children.once("Priority", problems, child);
                other.priority = number(problems, &p, child);
            }
            "PageAmount" => {
                let p = children.once("PageAmount", problems, child);
                other.page_amount = number(problems, &p, child);
            }
            "SphereOfPromulgation" | "TyperNotation" | "PromulgationAmount" | "Direction" => {
                let p = children.once(&child.name, problems, child);
                let value = leaf(problems, &p, child);
                match child.name.as_str() {
                    "SphereOfPromulgation" => other.sphere_of_promulgation = value,
                    "TyperNotation" => other.typer_notation = value,
                    "PromulgationAmount" => other.promulgation_amount = value,
                    _ => other.direction = value,
                }
            }
            "Appendixes" => {
                let p = children.once("Appendixes", problems, child);
                no_text(problems, &p, child);
                let mut appendixes = Children::new(&p);
                for appendix in &child.children {
                    if appendix.name == "Appendix" && in_edxml(appendix) {
                        let ap = appendixes.path_of("Appendix", true);
                        other.appendixes.push(leaf(problems, &ap, appendix));
                    } else {
                        unknown(problems, &format!("{p}/{}", appendix.name), appendix);
                    }
                }
            }
            _ => unknown(problems, &format!("{path}/{}", child.name), child),
        }
    }
    other
}

fn read_response_for(element: &Element, path: &str, problems: &mut Problems) -> ResponseFor {
    no_text(problems, path, element);
    let mut response = ResponseFor::default();
    let mut children = Children::new(path);
    for child in &element.children {
        let slot = match (child.name.as_str(), in_edxml(child)) {
            ("OrganId", true) => &mut response.organ_id,
            ("Code", true) => &mut response.code,
            ("PromulgationDate", true) => &mut response.promulgation_date,
            ("DocumentId", true) => &mut response.document_id,
            _ => {
                unknown(problems, &format!("{path}/{}", child.name), child);
                continue;
            }
        };
        let p = children.once(&child.name, problems, child);
        *slot = leaf(problems, &p, child);
    }
    response
}

fn read_message_header(element: &Element, path: &str, problems: &mut Problems) -> MessageHeader {
    no_text(problems, path, element);
    let mut header = MessageHeader::default();
    let mut children = Children::new(path);
    for child in &element.children {
        if !in_edxml(child) {
            unknown(problems, &format!("{path}/{}", child.name), child);
            continue;
        }
        match child.name.as_str() {
            "From" => {
                let p = children.once("From", problems, child);
                header.from = read_organization(child, &p, problems);
            }
            "To" => {
                let p = children.path_of("To", true);
                header.to.push(read_organization(child, &p, problems));
            }
            "DocumentId" => {
                let p = children.once("DocumentId", problems, child);
                header.document_id = leaf(problems, &p, child);
            }
            "Code" => {
                let p = children.once("Code", problems, child);
                header.code = read_code(child, &p, problems);
            }
            "PromulgationInfo" => {
                let p = children.once("PromulgationInfo", problems, child);
                header.promulgation = read_promulgation(child, &p, problems);
            }
            "DocumentType" => {
                let p = children.once("DocumentType", problems, child);
                header.document_type = read_document_type(child, &p, problems);
            }
            "Subject" => {
                let p = children.once("Subject", problems, child);
                header.subject = leaf(problems, &p, child);
            }
            "Content" => {
                let p = children.once("Content", problems, child);
                header.content = leaf(problems, &p, child);
            }
            "SignerInfo" => {
                let p = children.once("SignerInfo", problems, child);
                header.signer_info = Some(read_signer(child, &p, problems));
            }
            "DueDate" => {
                let p = children.once("DueDate", problems, child);
                header.due_date = leaf(problems, &p, child);
            }
            "ToPlaces" => {
                let p = children.once("ToPlaces", problems, child);
                no_text(problems, &p, child);
                let mut places = Children::new(&p);
                for place in &child.children {
                    if place.name == "Place" && in_edxml(place) {
                        let pp = places.path_of("Place", true);
                        header.to_places.push(leaf(problems, &pp, place));
                    } else {
                        unknown(problems, &format!("{p}/{}", place.name), place);
                    }
                }
            }
            "OtherInfo" => {
                let p = children.once("OtherInfo", problems, child);
                header.other_info = read_other_info(child, &p, problems);
            }
            "ResponseFor" => {
                let p = children.path_of("ResponseFor", true);
                header
                    .response_for
                    .push(read_response_for(child, &p, problems));
            }
            "SteeringType" => {
                let p = children.once("SteeringType", problems, child);
                header.steering_type = number(problems, &p, child);
            }
            _ => unknown(problems, &format!("{path}/{}", child.name), child),
        }
    }
    header
}

fn read_trace(element: &Element, path: &str, package: &mut Package, problems: &mut Problems) {
    no_text(problems, path, element);
    let mut children = Children::new(path);
    for child in &element.children {
        if !in_edxml(child) {
            unknown(problems, &format!("{path}/{}", child.name), child);
            continue;
        }
        match child.name.as_str() {
            "TraceHeader" => {
                let p = children.path_of("TraceHeader", true);
                no_text(problems, &p, child);
                let mut trace = TraceHeader::default();
                let mut fields = Children::new(&p);
                for field in &child.children {
                    let slot = match (field.name.as_str(), in_edxml(field)) {
                        ("OrganId", true) => &mut trace.organ_id,
                        ("Timestamp", true) => &mut trace.timestamp,
                        _ => {
                            unknown(problems, &format!("{p}/{}", field.name), field);
                            continue;
                        }
                    };
                    let fp = fields.once(&field.name, problems, field);
                    *slot = leaf(problems, &fp, field);
                }
                package.trace_headers.push(trace);
            }
            "Bussiness" => {
                let p = children.once("Bussiness", problems, child);
                package.business = read_business(child, &p, problems);
            }
            _ => unknown(problems, &format!("{path}/{}", child.name), child),
        }
    }
}

fn read_business(element: &Element, path: &str, problems: &mut Problems) -> Business {
    no_text(problems, path, element);
    let mut business = Business::default();
    let mut children = Children::new(path);
    for child in &element.children {
        if !in_edxml(child) {
            unknown(problems, &format!("{path}/{}", child.name), child);
            continue;
        }
        match child.name.as_str() {
            "BussinessDocType" => {
                let p = children.once("BussinessDocType", problems, child);
                business.doc_type = number(problems, &p, child);
            }
            "BussinessDocReason" => {
                let p = children.once("BussinessDocReason", problems, child);
                business.doc_reason = leaf(problems, &p, child);
            }
            "DocumentId" => {
                let p = children.once("DocumentId", problems, child);
                business.document_id = leaf(problems, &p, child);
            }
            "Paper" => {
                let p = children.once("Paper", problems, child);
                business.paper = leaf(problems, &p, child);
            }
            "StaffInfo" => {
                let p = children.once("StaffInfo", problems, child);
                business.staff_info = Some(read_staff(child, &p, problems));
            }
            "BussinessDocumentInfo" => {
                let p = children.once("BussinessDocumentInfo", problems, child);
                business.document_info = Some(read_document_info(child, &p, problems));
            }
            "ReplacementInfoList" => {
                let p = children.once("ReplacementInfoList", problems, child);
                no_text(problems, &p, child);
                let mut infos = Children::new(&p);
                for info in &child.children {
                    if info.name != "ReplacementInfo" || !in_edxml(info) {
                        unknown(problems, &format!("{p}/{}", info.name), info);
                        continue;
                    }
                    let ip = infos.path_of("ReplacementInfo", true);
                    business
                        .replacements
                        .push(read_replacement(info, &ip, problems));
                }
            }
            _ => unknown(problems, &format!("{path}/{}", child.name), child),
        }
    }
    business
}

fn read_document_info(
    element: &Element,
    path: &str,
    problems: &mut Problems,
) -> BusinessDocumentInfo {
    no_text(problems, path, element);
    let mut info = BusinessDocumentInfo::default();
    let mut children = Children::new(path);
    for child in &element.children {
        match (child.name.as_str(), in_edxml(child)) {
            ("DocumentInfo", true) => {
                let p = children.once("DocumentInfo", problems, child);
                info.document_info = leaf(problems, &p, child);
            }
            ("DocumentReceiver", true) => {
                let p = children.once("DocumentReceiver", problems, child);
                info.document_receiver = leaf(problems, &p, child);
            }
            ("ReceiverList", true) => {
                let p = children.once("ReceiverList", problems, child);
                no_text(problems, &p, child);
                let mut receivers = Children::new(&p);
                for receiver in &child.children {
                    if receiver.name != "Receiver" || !in_edxml(receiver) {
                        unknown(problems, &format!("{p}/{}", receiver.name), receiver);
                        continue;
                    }
                    let rp = receivers.path_of("Receiver", true);
                    no_text(problems, &rp, receiver);
                    let mut entry = Receiver::default();
                    let mut fields = Children::new(&rp);
                    for field in &receiver.children {
                        let slot = match (field.name.as_str(), in_edxml(field)) {
                            ("ReceiverType", true) => &mut entry.receiver_type,
                            ("OrganId", true) => &mut entry.organ_id,
                            _ => {
                                unknown(problems, &format!("{rp}/{}", field.name), field);
                                continue;
                            }
                        };
                        let fp = fields.once(&field.name, problems, field);
                        *slot = leaf(problems, &fp, field);
                    }
                    info.receivers.push(entry);
                }
            }
            _ => unknown(problems, &format!("{path}/{}", child.name), child),
        }
    }
    info
}

fn read_replacement(element: &Element, path: &str, problems: &mut Problems) -> ReplacementInfo {
    no_text(problems, path, element);
    let mut info = ReplacementInfo::default();
    let mut children = Children::new(path);
    for child in &element.children {
        match (child.name.as_str(), in_edxml(child)) {
            ("DocumentId", true) => {
                let p = children.once("DocumentId", problems, child);
                info.document_id = leaf(problems, &p, child);
            }
            ("OrganIdList", true) => {
                let p = children.once("OrganIdList", problems, child);
                no_text(problems, &p, child);
                let mut ids = Children::new(&p);
                for id in &child.children {
                    if id.name != "OrganId" || !in_edxml(id) {
                        unknown(problems, &format!("{p}/{}", id.name), id);
                        continue;
                    }
                    let ip = ids.path_of("OrganId", true);
                    info.organ_ids.push(leaf(problems, &ip, id));
                }
            }
            _ => unknown(problems, &format!("{path}/{}", child.name), child),
        }
    }
    info
}

fn algorithm(problems: &mut Problems, path: &str, element: &Element) -> String {
    no_text(problems, path, element);
    match element.attribute("Algorithm") {
        Some(algorithm) => algorithm.trim().to_owned(),
        None => {
            problems.error(
                path,
                Category::Signature,
                "Thiếu thuộc tính Algorithm",
                "has no Algorithm attribute",
            );
            String::new()
        }
    }
}

fn read_signature(element: &Element, path: &str, problems: &mut Problems) -> Signature {
    no_text(problems, path, element);
    let mut signature = Signature::default();
    let mut children = Children::new(path);
    for child in &element.children {
        if !in_signature(child) {
            unknown(problems, &format!("{path}/{}", child.name), child);
            continue;
        }
        match child.name.as_str() {
            "SignedInfo" => {
                let p = children.once("SignedInfo", problems, child);
                no_text(problems, &p, child);
                let mut parts = Children::new(&p);
                for part in &child.children {
                    if !in_signature(part) {
                        unknown(problems, &format!("{p}/{}", part.name), part);
                        continue;
                    }
                    match part.name.as_str() {
                        "CanonicalizationMethod" => {
                            let pp = parts.once("CanonicalizationMethod", problems, part);
                            signature.canonicalization_method = algorithm(problems, &pp, part);
                        }
                        "SignatureMethod" => {
                            let pp = parts.once("SignatureMethod", problems, part);
                            signature.signature_method = algorithm(problems, &pp, part);
                        }
                        "Reference" => {
                            let pp = parts.path_of("Reference", true);
                            signature
                                .references
                                .push(read_sign_reference(part, &pp, problems));
                        }
                        _ => unknown(problems, &format!("{p}/{}", part.name), part),
                    }
                }
            }
            "SignatureValue" => {
                let p = children.once("SignatureValue", problems, child);
                signature.signature_value = compact(&leaf(problems, &p, child));
            }
            "KeyInfo" => {
                let p = children.once("KeyInfo", problems, child);
                no_text(problems, &p, child);
                for data in &child.children {
                    if data.name != "X509Data" || !in_signature(data) {
                        unknown(problems, &format!("{p}/{}", data.name), data);
                        continue;
                    }
                    let dp = format!("{p}/X509Data");
                    no_text(problems, &dp, data);
                    let mut fields = Children::new(&dp);
                    for field in &data.children {
                        match (field.name.as_str(), in_signature(field)) {
                            ("X509SubjectName", true) => {
                                let fp = fields.once("X509SubjectName", problems, field);
                                signature.x509_subject_name = leaf(problems, &fp, field);
                            }
                            ("X509Certificate", true) => {
                                let fp = fields.once("X509Certificate", problems, field);
                                signature.x509_certificate = compact(&leaf(problems, &fp, field));
                            }
                            _ => unknown(problems, &format!("{dp}/{}", field.name), field),
                        }
                    }
                }
            }
            _ => unknown(problems, &format!("{path}/{}", child.name), child),
        }
    }
    signature
}

fn read_sign_reference(element: &Element, path: &str, problems: &mut Problems) -> SignReference {
    no_text(problems, path, element);
    let mut reference = SignReference {
        uri: element.attribute("URI").unwrap_or_default().to_owned(),
        ..SignReference::default()
    };
    let mut children = Children::new(path);
    for child in &element.children {
        if !in_signature(child) {
            unknown(problems, &format!("{path}/{}", child.name), child);
            continue;
        }
        match child.name.as_str() {
            "Transforms" => {
                let p = children.once("Transforms", problems, child);
                no_text(problems, &p, child);
                let mut transforms = Children::new(&p);
                for transform in &child.children {
                    if transform.name != "Transform" || !in_signature(transform) {
                        unknown(problems, &format!("{p}/{}", transform.name), transform);
                        continue;
                    }
                    let tp = transforms.path_of("Transform", true);
                    reference
                        .transforms
                        .push(algorithm(problems, &tp, transform));
                }
            }
            "DigestMethod" => {
                let p = children.once("DigestMethod", problems, child);
                reference.digest_method = algorithm(problems, &p, child);
            }
            "DigestValue" => {
                let p = children.once("DigestValue", problems, child);
                reference.digest_value = compact(&leaf(problems, &p, child));
            }
            _ => unknown(problems, &format!("{path}/{}", child.name), child),
        }
    }
    reference
}

/// Base64 as written in XML may wrap lines; the value is without whitespace.
fn compact(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace()).collect()
}

fn strip_cid(id: &str) -> &str {
    id.strip_prefix("cid:").unwrap_or(id)
}

/// The manifest's references joined with their bytes (inline, or in a file
/// named by `AttachmentName`).
fn read_attachments(
    body: Option<&Element>,
    encoded: &[&Element],
    files: &dyn AttachmentFiles,
    problems: &mut Problems,
) -> Vec<Attachment> {
    let mut attachments = match body {
        Some(body) => manifest(body, problems),
        None => Vec::new(),
    };
    let found = join_encoded(encoded, &mut attachments, problems);
    read_named_files(&mut attachments, &found, files, problems);
    attachments
}

/// The manifest's references, each content id given once.
fn manifest(body: &Element, problems: &mut Problems) -> Vec<Attachment> {
    let mut attachments: Vec<Attachment> = Vec::new();
    no_text(problems, "edXMLBody", body);
    for manifest in &body.children {
        if manifest.name != "edXMLManifest" || !in_edxml(manifest) {
            unknown(problems, &format!("edXMLBody/{}", manifest.name), manifest);
            continue;
        }
        no_text(problems, MANIFEST, manifest);
        let mut references = Children::new(MANIFEST);
        for reference in &manifest.children {
            if reference.name != "Reference" || !in_edxml(reference) {
                unknown(
                    problems,
                    &format!("{MANIFEST}/{}", reference.name),
                    reference,
                );
                continue;
            }
            let path = references.path_of("Reference", true);
            let attachment = manifest_reference(reference, &path, &attachments, problems);
            attachments.push(attachment);
        }
    }
    attachments
}

/// One manifest reference; its content id, which joins it to its content,
/// must be given and not be one of an `earlier` reference.
fn manifest_reference(
    reference: &Element,
    path: &str,
    earlier: &[Attachment],
    problems: &mut Problems,
) -> Attachment {
    no_text(problems, path, reference);
    let mut attachment = Attachment::default();
    let mut fields = Children::new(path);
    for field in &reference.children {
        let slot = match (field.name.as_str(), in_edxml(field)) {
            ("ContentId", true) => &mut attachment.content_id,
            ("ContentType", true) => &mut attachment.content_type,
            ("Description", true) => &mut attachment.description,
            ("AttachmentName", true) => &mut attachment.name,
            _ => {
                unknown(problems, &format!("{path}/{}", field.name), field);
                continue;
            }
        };
        let fp = fields.once(&field.name, problems, field);
        *slot = leaf(problems, &fp, field);
    }
    attachment.content_id = strip_cid(&attachment.content_id).to_owned();
    // The content id joins the manifest to the content: without
    // it, or with one already used, nothing can be matched.
    if attachment.content_id.is_empty() {
        problems.error(
            format!("{path}/ContentId"),
            Category::Attachments,
            "Thiếu mã nội dung (ContentId)",
            "is required: it joins the manifest entry to its content",
        );
    } else if let Some(first) = earlier
        .iter()
        .position(|other| other.content_id == attachment.content_id)
    {
        problems.error(
            format!("{path}/ContentId"),
            Category::Attachments,
            format!("Mã nội dung trùng với Reference[{}]", first + 1),
            format!("is already Reference[{}]", first + 1),
        );
    }
    attachment
}

/// Each encoded attachment, matched to its manifest entry by content id;
/// returns which entries found their content.
fn join_encoded(
    encoded: &[&Element],
    attachments: &mut [Attachment],
    problems: &mut Problems,
) -> Vec<bool> {
    let mut found = vec![false; attachments.len()];
    let mut index = 0usize;
    for list in encoded {
        no_text(problems, ENCODED, list);
        for item in &list.children {
            if item.name != "Attachment" || !in_edxml(item) {
                unknown(problems, &format!("{ENCODED}/{}", item.name), item);
                continue;
            }
            index += 1;
            let path = format!("{ENCODED}/Attachment[{index}]");
            no_text(problems, &path, item);
            let (content_id, name, content) = encoded_fields(item, &path, problems);
            let matched = attachments.iter().position(|attachment| {
                attachment.content_id == content_id && !content_id.is_empty()
            });
            match (matched, content) {
                (Some(at), Some(bytes)) => {
                    if found[at] {
                        problems.error(
                            format!("{path}/ContentId"),
                            Category::Attachments,
                            format!("Mã nội dung '{content_id}' đã có ở một tệp đính kèm khác"),
                            format!("the content id '{content_id}' is carried twice"),
                        );
                    }
                    if !name.is_empty() && name != attachments[at].name {
                        problems.error(
                            format!("{path}/AttachmentName"),
                            Category::Attachments,
                            format!(
                                "Tên tệp '{}' khác tên trong danh mục '{}'",
                                clip(&name),
                                clip(&attachments[at].name)
                            ),
                            format!(
                                "'{}' differs from the manifest's name '{}'",
                                clip(&name),
                                clip(&attachments[at].name)
                            ),
                        );
                    }
                    found[at] = true;
                    attachments[at].bytes = bytes;
                }
                (None, _) => problems.error(
                    format!("{path}/ContentId"),
                    Category::Attachments,
                    format!(
                        "Tệp đính kèm '{}' không có trong danh mục edXMLManifest",
                        clip(&content_id)
                    ),
                    format!(
                        "the attachment '{}' is not in the manifest (edXMLBody/edXMLManifest)",
                        clip(&content_id)
                    ),
                ),
                (Some(_), None) => problems.error(
                    format!("{path}/ContentTransferEncoded"),
                    Category::Attachments,
                    "Thiếu nội dung tệp đính kèm",
                    "is missing: the attachment carries no content",
                ),
            }
        }
    }
    found
}

/// An encoded attachment's content id, name and decoded content.
fn encoded_fields(
    item: &Element,
    path: &str,
    problems: &mut Problems,
) -> (String, String, Option<Vec<u8>>) {
    let mut content_id = String::new();
    let mut name = String::new();
    let mut content = None;
    let mut fields = Children::new(path);
    for field in &item.children {
        if !in_edxml(field) {
            unknown(problems, &format!("{path}/{}", field.name), field);
            continue;
        }
        match field.name.as_str() {
            "ContentId" => {
                let fp = fields.once("ContentId", problems, field);
                content_id = strip_cid(&leaf(problems, &fp, field)).to_owned();
            }
            "AttachmentName" => {
                let fp = fields.once("AttachmentName", problems, field);
                name = leaf(problems, &fp, field);
            }
            "ContentTransferEncoded" => {
                let fp = fields.once("ContentTransferEncoded", problems, field);
                let text = compact(&leaf(problems, &fp, field));
                match base64::engine::general_purpose::STANDARD.decode(text.as_bytes()) {
                    Ok(bytes) => content = Some(bytes),
                    Err(error) => problems.error(
                        fp,
                        Category::Attachments,
                        "Nội dung tệp đính kèm không phải base64 hợp lệ",
                        format!("is not valid base64: {error}"),
                    ),
                }
            }
            // Said again in the manifest, which is what truc reads.
            "Description" | "ContentType" => {
                fields.once(&field.name, problems, field);
            }
            _ => unknown(problems, &format!("{path}/{}", field.name), field),
        }
    }
    (content_id, name, content)
}

/// The entries no encoded attachment carried, read from the file their
/// `AttachmentName` names.
fn read_named_files(
    attachments: &mut [Attachment],
    found: &[bool],
    files: &dyn AttachmentFiles,
    problems: &mut Problems,
) {
    for (at, attachment) in attachments.iter_mut().enumerate() {
        if found[at] {
            continue;
        }
        let path = format!("{MANIFEST}/Reference[{}]", at + 1);
        if attachment.name.is_empty() {
            continue;
        }
        match files.read(&attachment.name) {
            Ok(bytes) => attachment.bytes = bytes,
            Err(reason) => problems.error(
                format!("{path}/AttachmentName"),
                Category::Attachments,
                format!(
                    "Thiếu tệp đính kèm '{}' (không có trong AttachmentEncoded và không có tệp cùng tên)",
                    clip(&attachment.name)
                ),
                format!("the attachment '{}' is missing: {reason}", clip(&attachment.name)),
            ),
        }
    }
}

fn read_status(element: &Element, path: &str, problems: &mut Problems) -> StatusMessage {
    no_text(problems, path, element);
    let mut status = StatusMessage::default();
    let mut children = Children::new(path);
    for child in &element.children {
        if !in_edxml(child) {
            unknown(problems, &format!("{path}/{}", child.name), child);
            continue;
        }
        match child.name.as_str() {
            "ResponseFor" => {
                let p = children.once("ResponseFor", problems, child);
                status.response_for = read_response_for(child, &p, problems);
            }
            "From" => {
                let p = children.once("From", problems, child);
                status.from = read_organization(child, &p, problems);
            }
            "StatusCode" => {
                let p = children.once("StatusCode", problems, child);
                status.status_code = leaf(problems, &p, child);
            }
            "Description" => {
                let p = children.once("Description", problems, child);
                status.description = leaf(problems, &p, child);
            }
            "Timestamp" => {
                let p = children.once("Timestamp", problems, child);
                status.timestamp = leaf(problems, &p, child);
            }
            "StaffInfo" => {
                let p = children.once("StaffInfo", problems, child);
                status.staff_info = Some(read_staff(child, &p, problems));
            }
            _ => unknown(problems, &format!("{path}/{}", child.name), child),
        }
    }
    status
}
