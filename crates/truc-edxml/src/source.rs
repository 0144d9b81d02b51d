//! Reads what an agency's system drops: an edXML file (a package with its
//! attachments inside, or a status message), a folder holding one edXML
//! file and the attachment files it names, a folder in the JSON form
//! (`header.json` and files), or a status as one JSON file. Each is parsed
//! and checked; the result is the model, or every problem found.

use std::path::Path;

use crate::check::{check_package, check_status, CheckContext};
use crate::json::{document_from_json, status_from_json, HEADER_JSON};
use crate::model::{Message, Package, StatusMessage};
use crate::parse::{parse_message, AttachmentFiles, FileError, InlineOnly};
use crate::problem::{Category, Problem, Problems, Refused};

/// A dropped document or status, read and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    Document {
        package: Box<Package>,
        /// Send it with the document's own signature: the package carries
        /// its organisation's `Signature`, or the JSON form asks for it.
        sign_document: bool,
    },
    Status(Box<StatusMessage>),
}

/// An entry with the warnings its check left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    pub entry: Entry,
    pub warnings: Vec<Problem>,
}

/// Attachment files of a folder, by plain name, within the size limit.
pub struct FolderFiles<'a> {
    pub folder: &'a Path,
    pub bytes_max: u64,
}

impl AttachmentFiles for FolderFiles<'_> {
    fn read(&self, name: &str) -> Result<Vec<u8>, FileError> {
        if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
            return Err(FileError::NotPlainName);
        }
        let path = self.folder.join(name);
        let metadata = std::fs::metadata(&path).map_err(FileError::Missing)?;
        if !metadata.is_file() {
            return Err(FileError::NotAFile);
        }
        if metadata.len() > self.bytes_max {
            return Err(FileError::TooLarge {
                size: metadata.len(),
                limit: self.bytes_max,
            });
        }
        std::fs::read(&path).map_err(FileError::Read)
    }
}

fn problem(element: &str, reason_vi: &str, reason_en: String) -> Refused {
    Refused::one(Problem::error(
        element,
        Category::Form,
        reason_vi,
        reason_en,
    ))
}

fn read_limited(path: &Path, bytes_max: usize) -> Result<Vec<u8>, Refused> {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let metadata = std::fs::metadata(path)
        .map_err(|error| problem(&name, "Không đọc được tệp", error.to_string()))?;
    if metadata.len() > bytes_max as u64 {
        return Err(problem(
            &name,
            "Tệp lớn hơn giới hạn",
            format!(
                "the file is {} bytes, more than the limit of {bytes_max} bytes",
                metadata.len()
            ),
        ));
    }
    std::fs::read(path).map_err(|error| problem(&name, "Không đọc được tệp", error.to_string()))
}

fn is_edxml(path: &Path) -> bool {
    matches!(
        path.extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("edxml" | "xml")
    )
}

fn is_json(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
}

/// Reads and checks one dropped entry. `own` is the node's agency code, for
/// a JSON status that leaves `from` empty.
pub fn read_entry(
    path: &Path,
    context: &CheckContext,
    own: Option<&str>,
) -> Result<Checked, Refused> {
    let entry = load_entry(path, context, own)?;
    let problems = match &entry {
        Entry::Document { package, .. } => check_package(package, context),
        Entry::Status(status) => check_status(status, context),
    };
    let warnings = Problems(problems).into_result()?;
    Ok(Checked { entry, warnings })
}

/// Reads one dropped entry without checking its content (for showing it).
pub fn load_entry(
    path: &Path,
    context: &CheckContext,
    own: Option<&str>,
) -> Result<Entry, Refused> {
    let bytes_max = context.edxml_limits.package_bytes_max;
    let files_bytes_max = context.limits.document_bytes_max;
    let entry = if path.is_dir() {
        let files = FolderFiles {
            folder: path,
            bytes_max: files_bytes_max,
        };
        let header = path.join(HEADER_JSON);
        if header.is_file() {
            let bytes = read_limited(&header, bytes_max)?;
            let (package, sign_document) = document_from_json(&bytes, &files).map_err(Refused)?;
            Entry::Document {
                package: Box::new(package),
                sign_document,
            }
        } else {
            let mut packages = Vec::new();
            let listing = std::fs::read_dir(path)
                .map_err(|error| problem("edXML", "Không đọc được thư mục", error.to_string()))?;
            for item in listing.flatten() {
                if is_edxml(&item.path()) {
                    packages.push(item.path());
                }
            }
            if packages.len() != 1 {
                return Err(problem(
                    "edXML",
                    "Thư mục phải có đúng một tệp .edxml hoặc một tệp header.json",
                    format!(
                        "the folder must hold exactly one .edxml file, or a {HEADER_JSON}; it holds {} .edxml files",
                        packages.len()
                    ),
                ));
            }
            let bytes = read_limited(&packages[0], bytes_max)?;
            message_entry(&bytes, &files, context)?
        }
    } else if is_edxml(path) {
        let bytes = read_limited(path, bytes_max)?;
        message_entry(&bytes, &InlineOnly, context)?
    } else if is_json(path) {
        let bytes = read_limited(path, bytes_max)?;
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        Entry::Status(Box::new(
            status_from_json(&bytes, &name, own).map_err(Refused)?,
        ))
    } else {
        return Err(problem(
            "edXML",
            "Không phải dạng gói tin mà hộp thư đi đọc được (.edxml, .json hoặc thư mục)",
            "not a form the outbox reads: an .edxml file, a .json status, or a folder".into(),
        ));
    };
    Ok(entry)
}

fn message_entry(
    bytes: &[u8],
    files: &dyn AttachmentFiles,
    context: &CheckContext,
) -> Result<Entry, Refused> {
    let (message, _) = parse_message(bytes, &context.edxml_limits, files).map_err(Refused)?;
    Ok(match message {
        Message::Document(package) => {
            let sign_document = package.signature.is_some();
            Entry::Document {
                package,
                sign_document,
            }
        }
        Message::Status(status) => Entry::Status(status),
    })
}

/// Reads and checks an edXML file given as bytes, its attachments inside.
pub fn read_edxml(bytes: &[u8], context: &CheckContext) -> Result<Checked, Refused> {
    let entry = message_entry(bytes, &InlineOnly, context)?;
    let problems = match &entry {
        Entry::Document { package, .. } => check_package(package, context),
        Entry::Status(status) => check_status(status, context),
    };
    let warnings = Problems(problems).into_result()?;
    Ok(Checked { entry, warnings })
}
