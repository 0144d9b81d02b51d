//! The folder form, for a system that writes JSON rather than XML: a folder
//! with `header.json` and the attachment files, and a status as one JSON
//! file. Both become the same model as an edXML package, so they are checked
//! and mapped by the same code; `docs/EDXML.md` lists each key's element.

use serde::Deserialize;
use truc_domain::Status;

use crate::envelope::response_for;
use crate::model::*;
use crate::parse::AttachmentFiles;
use crate::problem::{Category, Problem};

/// The file that makes a folder a document in the folder form.
pub const HEADER_JSON: &str = "header.json";

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JsonAttachment {
    /// A file of the folder, by its plain name.
    pub file: String,
    /// Guessed from the file's extension when empty.
    pub media_type: String,
    pub description: String,
}

/// `header.json`: dates are ISO (`yyyy-mm-dd`), as in truc's other JSON.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JsonDocument {
    pub from: Organization,
    pub to: Vec<Organization>,
    pub number: String,
    pub notation: String,
    pub place: String,
    pub date: String,
    pub document_type: u32,
    pub document_type_detail: String,
    pub document_type_name: String,
    pub subject: String,
    pub content: String,
    pub signer: Option<SignerInfo>,
    pub due_date: String,
    pub to_places: Vec<String>,
    pub priority: u32,
    pub page_count: u32,
    pub sphere_of_promulgation: String,
    pub typer_notation: String,
    pub promulgation_amount: String,
    pub direction: String,
    pub appendixes: Vec<String>,
    pub response_for: Vec<String>,
    pub steering_type: u32,
    /// 0 new, 1 revoke, 2 update, 3 replace.
    pub business_type: u32,
    pub business_reason: String,
    pub business_refs: Vec<String>,
    pub paper: String,
    pub staff: Option<StaffInfo>,
    pub attachments: Vec<JsonAttachment>,
    /// Send with the document's own signature, made with the agency's key.
    pub sign_document: bool,
}

/// A status in the folder form: one JSON file.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JsonStatus {
    pub document_id: String,
    /// The recipient reporting; empty means the node's own agency.
    pub from: String,
    /// A code (`03`) or a name (`received`).
    pub status: String,
    pub description: String,
    pub staff: Option<StaffInfo>,
}

fn json_problem(file: &str, error: &serde_json::Error) -> Problem {
    Problem::error(
        format!("{file} (line {}, column {})", error.line(), error.column()),
        Category::Form,
        "Tệp JSON sai cấu trúc (xem mô tả tiếng Anh)",
        error.to_string(),
    )
}

/// `yyyy-mm-dd` to `yyyy/MM/dd`; anything else is left for the check to name.
fn slashed(date: &str) -> String {
    let iso = date.len() == 10
        && date.bytes().enumerate().all(|(at, b)| {
            if at == 4 || at == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    if iso {
        date.replace('-', "/")
    } else {
        date.to_owned()
    }
}

/// The media type of a file by its extension.
pub fn media_type_of(name: &str) -> &'static str {
    let extension = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match extension.as_deref() {
        Some("pdf") => "application/pdf",
        Some("xml") => "application/xml",
        Some("txt") => "text/plain",
        Some("doc") => "application/msword",
        Some("docx") => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        Some("xls") => "application/vnd.ms-excel",
        Some("xlsx") => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        Some("zip") => "application/zip",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}

/// A document in the folder form; whether to sign it is returned beside.
pub fn document_from_json(
    bytes: &[u8],
    files: &dyn AttachmentFiles,
) -> Result<(Package, bool), Vec<Problem>> {
    let json: JsonDocument =
        serde_json::from_slice(bytes).map_err(|error| vec![json_problem(HEADER_JSON, &error)])?;
    let mut problems = Vec::new();
    let mut attachments = Vec::new();
    for (index, attachment) in json.attachments.iter().enumerate() {
        let bytes = match files.read(&attachment.file) {
            Ok(bytes) => bytes,
            Err(reason) => {
                problems.push(Problem::error(
                    format!("{HEADER_JSON}: attachments[{index}].file"),
                    Category::Attachments,
                    format!("Không đọc được tệp đính kèm '{}'", attachment.file),
                    format!("cannot read '{}': {reason}", attachment.file),
                ));
                Vec::new()
            }
        };
        attachments.push(Attachment {
            content_id: (index + 1).to_string(),
            name: attachment.file.clone(),
            description: attachment.description.clone(),
            content_type: if attachment.media_type.is_empty() {
                media_type_of(&attachment.file).to_owned()
            } else {
                attachment.media_type.clone()
            },
            bytes,
        });
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let in_business = matches!(json.business_type, 1 | 2) && json.business_refs.len() == 1;
    let mut refs = json.business_refs.iter();
    let business_document_id = if in_business {
        refs.next().cloned().unwrap_or_default()
    } else {
        String::new()
    };
    let mut package = Package {
        header: MessageHeader {
            from: json.from,
            to: json.to,
            document_id: String::new(),
            code: Code {
                number: json.number,
                notation: json.notation,
            },
            promulgation: PromulgationInfo {
                place: json.place,
                date: slashed(&json.date),
            },
            document_type: DocumentType {
                type_code: json.document_type,
                type_detail: json.document_type_detail,
                type_name: json.document_type_name,
            },
            subject: json.subject,
            content: json.content,
            signer_info: json.signer,
            due_date: slashed(&json.due_date),
            to_places: json.to_places,
            other_info: OtherInfo {
                priority: json.priority,
                sphere_of_promulgation: json.sphere_of_promulgation,
                typer_notation: json.typer_notation,
                promulgation_amount: json.promulgation_amount,
                page_amount: json.page_count,
                direction: json.direction,
                appendixes: json.appendixes,
            },
            response_for: json
                .response_for
                .iter()
                .map(|id| response_for(id))
                .collect(),
            steering_type: json.steering_type,
        },
        trace_headers: Vec::new(),
        business: Business {
            doc_type: json.business_type,
            doc_reason: json.business_reason,
            document_id: business_document_id,
            paper: json.paper,
            staff_info: json.staff,
            document_info: None,
            replacements: refs
                .map(|id| ReplacementInfo {
                    document_id: id.clone(),
                    organ_ids: Vec::new(),
                })
                .collect(),
        },
        signature: None,
        attachments,
    };
    package.header.document_id = package.derived_document_id();
    Ok((package, json.sign_document))
}

/// A status in the folder form. `own` is the node's agency, for `from`
/// left empty.
pub fn status_from_json(
    bytes: &[u8],
    file: &str,
    own: Option<&str>,
) -> Result<StatusMessage, Vec<Problem>> {
    let json: JsonStatus =
        serde_json::from_slice(bytes).map_err(|error| vec![json_problem(file, &error)])?;
    let code = match Status::from_name(&json.status) {
        Some(status) => format!("{:02}", status.code()),
        None => json.status.clone(),
    };
    let from = if json.from.is_empty() {
        own.unwrap_or_default().to_owned()
    } else {
        json.from
    };
    Ok(StatusMessage {
        response_for: response_for(&json.document_id),
        from: Organization {
            organ_id: from,
            ..Organization::default()
        },
        status_code: code,
        description: json.description,
        timestamp: String::new(),
        staff_info: json.staff,
    })
}
