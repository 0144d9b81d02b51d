//! Reads XML into a small tree of elements with quick-xml, under limits:
//! no DOCTYPE (so no entity can be declared: XML bombs and external
//! entities are refused before anything is expanded), only XML's five
//! entities and character references, UTF-8 only, bounded size, depth,
//! element count and text per element.

use quick_xml::events::{BytesDecl, BytesRef, Event};
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

use crate::problem::{Category, Problem};

/// Limits on what is read before any element is looked at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdxmlLimits {
    /// Largest file read, in bytes: 64 MiB of attachments (the envelope's
    /// `document_bytes_max`) in base64, plus room for the header.
    pub package_bytes_max: usize,
    /// Deepest nesting of elements.
    pub element_depth_max: usize,
    /// Most elements in one file.
    pub elements_max: usize,
    /// Most text in one element, in bytes, except attachment content.
    pub text_bytes_max: usize,
    /// Longest `Content` (the summary), in characters.
    pub content_chars_max: usize,
}

impl Default for EdxmlLimits {
    fn default() -> Self {
        Self {
            package_bytes_max: 96 * 1024 * 1024,
            element_depth_max: 16,
            elements_max: 20_000,
            text_bytes_max: 256 * 1024,
            content_chars_max: 20_000,
        }
    }
}

/// The element whose text may be as large as the file allows.
pub(crate) const ATTACHMENT_CONTENT: &str = "ContentTransferEncoded";

/// An element as read: local name, namespace, attributes (without namespace
/// declarations), text, children, and the line it starts on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub namespace: Option<String>,
    pub attributes: Vec<(String, String)>,
    pub text: String,
    pub children: Vec<Element>,
    pub line: usize,
}

impl Element {
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

const BYTE_ORDER_MARK: &[u8] = b"\xEF\xBB\xBF";

fn refused(line: usize, column: usize, reason_vi: &str, reason_en: String) -> Problem {
    Problem::error(
        format!("edXML (line {line}, column {column})"),
        Category::Form,
        format!("Tệp không phải XML hợp lệ: {reason_vi}"),
        reason_en,
    )
}

/// Line and column (1-based) of a byte offset.
struct Lines<'a> {
    text: &'a str,
    offset: usize,
    line: usize,
}

impl Lines<'_> {
    fn at(&mut self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        if offset < self.offset {
            self.offset = 0;
            self.line = 1;
        }
        self.line += self.text.as_bytes()[self.offset..offset]
            .iter()
            .filter(|&&byte| byte == b'\n')
            .count();
        self.offset = offset;
        let line_start = self.text.as_bytes()[..offset]
            .iter()
            .rposition(|&byte| byte == b'\n')
            .map_or(0, |at| at + 1);
        (self.line, offset - line_start + 1)
    }
}

/// Parses a whole file into its root element.
pub fn parse_tree(bytes: &[u8], limits: &EdxmlLimits) -> Result<Element, Problem> {
    let text = file_text(bytes, limits)?;
    let mut lines = Lines {
        text,
        offset: 0,
        line: 1,
    };
    let mut reader = NsReader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut elements = 0usize;
    loop {
        let position = reader.buffer_position() as usize;
        let (resolved, event) = match reader.read_resolved_event() {
            Ok(read) => read,
            Err(error) => {
                let (line, column) = lines.at(reader.error_position() as usize);
                return Err(refused(
                    line,
                    column,
                    "cú pháp XML sai",
                    format!("not well-formed XML: {error}"),
                ));
            }
        };
        let namespace = namespace_of(resolved, &mut lines, position)?;
        match event {
            Event::Decl(declaration) => utf8_declared(&declaration, &mut lines, position)?,
            Event::DocType(_) => {
                let (line, column) = lines.at(position);
                return Err(refused(
                    line,
                    column,
                    "không nhận khai báo DOCTYPE (chặn bom XML và thực thể ngoài)",
                    "a DOCTYPE is not accepted: an edXML package declares no entities, \
                     so XML bombs and external entities are refused"
                        .into(),
                ));
            }
            Event::Start(start) => open_element(
                &start,
                false,
                namespace,
                position,
                &mut Opening {
                    stack: &mut stack,
                    root: &mut root,
                    elements: &mut elements,
                    lines: &mut lines,
                    limits,
                },
            )?,
            Event::Empty(start) => open_element(
                &start,
                true,
                namespace,
                position,
                &mut Opening {
                    stack: &mut stack,
                    root: &mut root,
                    elements: &mut elements,
                    lines: &mut lines,
                    limits,
                },
            )?,
            Event::End(_) => {
                let Some(element) = stack.pop() else {
                    let (line, column) = lines.at(position);
                    return Err(refused(
                        line,
                        column,
                        "thẻ đóng thừa",
                        "a closing tag without its opening tag".into(),
                    ));
                };
                close(element, &mut stack, &mut root);
            }
            Event::Text(text_event) => {
                let piece = text_event.decode().map_err(|error| {
                    let (line, column) = lines.at(position);
                    refused(line, column, "văn bản sai mã hóa", error.to_string())
                })?;
                append_text(&mut stack, &piece, limits, &mut lines, position)?;
            }
            Event::CData(cdata) => {
                let piece = cdata.decode().map_err(|error| {
                    let (line, column) = lines.at(position);
                    refused(line, column, "văn bản sai mã hóa", error.to_string())
                })?;
                append_text(&mut stack, &piece, limits, &mut lines, position)?;
            }
            Event::GeneralRef(reference) => {
                let (line, column) = lines.at(position);
                let resolved = resolve_reference(&reference, line, column)?;
                append_text(&mut stack, &resolved, limits, &mut lines, position)?;
            }
            Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    whole_tree(&stack, root)
}

/// The file's text: within the size limit, without a byte order mark, UTF-8.
fn file_text<'b>(bytes: &'b [u8], limits: &EdxmlLimits) -> Result<&'b str, Problem> {
    if bytes.len() > limits.package_bytes_max {
        return Err(Problem::error(
            "edXML",
            Category::Form,
            format!("Tệp lớn hơn giới hạn {} byte", limits.package_bytes_max),
            format!(
                "the file is {} bytes, more than the limit of {} bytes",
                bytes.len(),
                limits.package_bytes_max
            ),
        ));
    }
    let bytes = bytes.strip_prefix(BYTE_ORDER_MARK).unwrap_or(bytes);
    std::str::from_utf8(bytes).map_err(|error| {
        Problem::error(
            "edXML",
            Category::Form,
            "Tệp không được mã hóa UTF-8",
            format!(
                "the file is not UTF-8 (invalid byte at offset {})",
                error.valid_up_to()
            ),
        )
    })
}

/// An element's namespace; a prefix never declared is refused.
fn namespace_of(
    resolved: ResolveResult<'_>,
    lines: &mut Lines<'_>,
    position: usize,
) -> Result<Option<String>, Problem> {
    match resolved {
        ResolveResult::Bound(namespace) => Ok(Some(
            String::from_utf8_lossy(namespace.as_ref()).into_owned(),
        )),
        ResolveResult::Unbound => Ok(None),
        ResolveResult::Unknown(prefix) => {
            let (line, column) = lines.at(position);
            Err(refused(
                line,
                column,
                "tiền tố không gian tên chưa khai báo",
                format!(
                    "the namespace prefix '{}' is not declared",
                    String::from_utf8_lossy(&prefix)
                ),
            ))
        }
    }
}

/// The XML declaration names no encoding but UTF-8.
fn utf8_declared(
    declaration: &BytesDecl<'_>,
    lines: &mut Lines<'_>,
    position: usize,
) -> Result<(), Problem> {
    if let Some(Ok(encoding)) = declaration.encoding() {
        if !encoding.eq_ignore_ascii_case(b"utf-8") {
            let (line, column) = lines.at(position);
            return Err(refused(
                line,
                column,
                "chỉ nhận mã hóa UTF-8",
                format!(
                    "the declared encoding '{}' is not UTF-8",
                    String::from_utf8_lossy(&encoding)
                ),
            ));
        }
    }
    Ok(())
}

/// The text a reference stands for: a character reference, or one of
/// XML's five entities; any other entity is refused.
fn resolve_reference(
    reference: &BytesRef<'_>,
    line: usize,
    column: usize,
) -> Result<String, Problem> {
    match reference.resolve_char_ref() {
        Ok(Some(character)) => Ok(character.to_string()),
        Ok(None) => {
            let name = reference
                .decode()
                .map_err(|error| refused(line, column, "văn bản sai mã hóa", error.to_string()))?;
            match quick_xml::escape::resolve_predefined_entity(&name) {
                Some(value) => Ok(value.to_owned()),
                None => Err(refused(
                    line,
                    column,
                    "thực thể không được phép",
                    format!(
                        "the entity &{name}; is not allowed: only &lt; &gt; &amp; \
                         &apos; &quot; and character references are"
                    ),
                )),
            }
        }
        Err(error) => Err(refused(
            line,
            column,
            "tham chiếu ký tự sai",
            format!("bad character reference: {error}"),
        )),
    }
}

/// The root, once the file has ended with every element closed.
fn whole_tree(stack: &[Element], root: Option<Element>) -> Result<Element, Problem> {
    if let Some(open) = stack.last() {
        return Err(Problem::error(
            format!("{} (line {})", open.name, open.line),
            Category::Form,
            "Thẻ chưa được đóng",
            format!("the element {} is never closed", open.name),
        ));
    }
    root.ok_or_else(|| {
        Problem::error(
            "edXML",
            Category::Form,
            "Tệp rỗng, không có thẻ gốc",
            "the file holds no element",
        )
    })
}

/// What opening an element changes.
struct Opening<'s, 't> {
    stack: &'s mut Vec<Element>,
    root: &'s mut Option<Element>,
    elements: &'s mut usize,
    lines: &'s mut Lines<'t>,
    limits: &'s EdxmlLimits,
}

fn open_element(
    start: &quick_xml::events::BytesStart<'_>,
    empty: bool,
    namespace: Option<String>,
    position: usize,
    state: &mut Opening<'_, '_>,
) -> Result<(), Problem> {
    *state.elements += 1;
    let (line, column) = state.lines.at(position);
    if *state.elements > state.limits.elements_max {
        return Err(refused(
            line,
            column,
            "quá nhiều thẻ",
            format!("more than {} elements", state.limits.elements_max),
        ));
    }
    if state.stack.len() >= state.limits.element_depth_max {
        return Err(refused(
            line,
            column,
            "các thẻ lồng nhau quá sâu",
            format!(
                "elements nested deeper than {}",
                state.limits.element_depth_max
            ),
        ));
    }
    if state.root.is_some() {
        return Err(refused(
            line,
            column,
            "có nhiều hơn một thẻ gốc",
            "more than one root element".into(),
        ));
    }
    let mut attributes = Vec::new();
    for attribute in start.attributes() {
        let attribute = attribute.map_err(|error| {
            refused(
                line,
                column,
                "thuộc tính sai cú pháp",
                format!("malformed attribute: {error}"),
            )
        })?;
        let key = String::from_utf8_lossy(attribute.key.as_ref()).into_owned();
        if key == "xmlns" || key.starts_with("xmlns:") {
            continue;
        }
        let value = attribute.unescape_value().map_err(|error| {
            refused(
                line,
                column,
                "giá trị thuộc tính dùng thực thể không được phép",
                format!("attribute {key}: {error}"),
            )
        })?;
        let local = key.rsplit(':').next().unwrap_or(&key).to_owned();
        attributes.push((local, value.into_owned()));
    }
    let element = Element {
        name: String::from_utf8_lossy(start.local_name().as_ref()).into_owned(),
        namespace,
        attributes,
        line,
        ..Element::default()
    };
    if empty {
        close(element, state.stack, state.root);
    } else {
        state.stack.push(element);
    }
    Ok(())
}

fn close(element: Element, stack: &mut [Element], root: &mut Option<Element>) {
    let mut element = element;
    if !element.children.is_empty() && element.text.trim().is_empty() {
        element.text.clear();
    }
    match stack.last_mut() {
        Some(parent) => parent.children.push(element),
        None => *root = Some(element),
    }
}

fn append_text(
    stack: &mut [Element],
    piece: &str,
    limits: &EdxmlLimits,
    lines: &mut Lines<'_>,
    position: usize,
) -> Result<(), Problem> {
    let Some(element) = stack.last_mut() else {
        if piece.trim().is_empty() {
            return Ok(());
        }
        let (line, column) = lines.at(position);
        return Err(refused(
            line,
            column,
            "có văn bản nằm ngoài thẻ gốc",
            "text outside the root element".into(),
        ));
    };
    if element.name != ATTACHMENT_CONTENT
        && element.text.len() + piece.len() > limits.text_bytes_max
    {
        return Err(Problem::error(
            format!("{} (line {})", element.name, element.line),
            Category::Format,
            format!("Nội dung thẻ dài quá {} byte", limits.text_bytes_max),
            format!("the text is longer than {} bytes", limits.text_bytes_max),
        ));
    }
    element.text.push_str(piece);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Element, Problem> {
        parse_tree(text.as_bytes(), &EdxmlLimits::default())
    }

    #[test]
    fn reads_namespaces_text_entities_and_empty_elements() {
        let root = parse(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<a xmlns=\"urn:x\" xmlns:p=\"urn:y\">\
             <p:b k=\"1 &amp; 2\">T &amp; C &#x110;</p:b><c/></a>",
        )
        .unwrap();
        assert_eq!(root.name, "a");
        assert_eq!(root.namespace.as_deref(), Some("urn:x"));
        assert_eq!(root.children.len(), 2);
        assert_eq!(root.children[0].namespace.as_deref(), Some("urn:y"));
        assert_eq!(root.children[0].text, "T & C Đ");
        assert_eq!(root.children[0].attribute("k"), Some("1 & 2"));
        assert_eq!(root.children[1].name, "c");
        assert!(root.children[1].children.is_empty());
    }

    #[test]
    fn refuses_bombs_entities_and_oversize_input() {
        let bomb = "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">\
                    <!ENTITY lol2 \"&lol;&lol;&lol;&lol;\">]><lolz>&lol2;</lolz>";
        assert!(parse(bomb).unwrap_err().reason_en.contains("DOCTYPE"));
        let external = "<!DOCTYPE a [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><a>&x;</a>";
        assert!(parse(external).unwrap_err().reason_en.contains("DOCTYPE"));
        let undeclared = "<a>&x;</a>";
        assert!(parse(undeclared).unwrap_err().reason_en.contains("&x;"));
        let limits = EdxmlLimits {
            package_bytes_max: 10,
            ..EdxmlLimits::default()
        };
        assert!(parse_tree(b"<a>0123456789</a>", &limits)
            .unwrap_err()
            .reason_en
            .contains("limit"));
        let deep = "<a>".repeat(40) + &"</a>".repeat(40);
        assert!(parse(&deep).unwrap_err().reason_en.contains("nested"));
        assert!(parse("<a></b>").is_err());
        assert!(parse("<a>").unwrap_err().reason_en.contains("never closed"));
        assert!(parse("<a/><b/>").is_err());
        assert!(parse_tree(b"<a>\xff</a>", &EdxmlLimits::default())
            .unwrap_err()
            .reason_en
            .contains("UTF-8"));
        assert!(parse("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a/>")
            .unwrap_err()
            .reason_en
            .contains("encoding"));
        assert!(parse("<x:a/>").unwrap_err().reason_en.contains("prefix"));
    }

    #[test]
    fn errors_say_where() {
        let error = parse("<a>\n<b>\n</c></a>").unwrap_err();
        assert!(error.element.contains("line 3"), "{error}");
    }
}
