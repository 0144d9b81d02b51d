//! The rule for attachment names. A name travels in the signed header to
//! every recipient, whose node writes it as a file and whose staff read it
//! on screen, so it must be the same file on every file system and show
//! what it is. Defined once, here: the hub refuses a send whose names break
//! it, and a node refuses a delivery that does (defence in depth).
//!
//! The rule, in the order it is checked:
//! 1. not empty; at most [`ATTACHMENT_NAME_BYTES_MAX`] bytes of UTF-8 (the
//!    file-name limit of Linux file systems) and at most
//!    [`ATTACHMENT_NAME_CHARS_MAX`] characters (room for a copy number or a
//!    suffix a recipient's system adds, within Windows's 255);
//! 2. no character of the Unicode general categories Cc (controls: NUL,
//!    line feed, tab, escape, C1), Cf (format: bidirectional overrides and
//!    isolates, zero-width characters, the byte-order mark, soft hyphen),
//!    Zl and Zp (line and paragraph separators), Co (private use), Cs
//!    (surrogates) and Cn (unassigned), and no space but U+0020;
//! 3. none of the characters Windows refuses in a name: `/ \ : * ? " < > |`
//!    (`:` would also open an NTFS alternate stream);
//! 4. in Unicode normalisation form C (NFC): the signed header cannot be
//!    changed on the way, so a client normalises before signing, and two
//!    names that look alike are the same bytes;
//! 5. not starting with `.` (no hidden files, not `.` or `..`), not starting
//!    with a space and not ending with a space or a `.` (Windows drops them,
//!    so `a.exe.` would become `a.exe`);
//! 6. not a device name Windows reserves ([`RESERVED_DEVICE_NAMES`]), in any
//!    case, alone or before an extension (`NUL.txt`, `com1.tar.gz`).
//!
//! Names of one document must also differ other than by letter case
//! ([`check_attachment_names`]): Windows and macOS file systems would write
//! both into one file.

use icu_normalizer::ComposingNormalizerBorrowed;
use icu_properties::props::GeneralCategory;
use icu_properties::CodePointMapData;

/// Longest attachment name, in bytes of UTF-8.
pub const ATTACHMENT_NAME_BYTES_MAX: usize = 255;
/// Longest attachment name, in characters (Unicode scalar values).
pub const ATTACHMENT_NAME_CHARS_MAX: usize = 200;
/// Characters Windows refuses in a file name (besides controls).
pub const FORBIDDEN_NAME_CHARACTERS: [char; 9] = ['/', '\\', ':', '*', '?', '"', '<', '>', '|'];
/// Device names Windows reserves, alone or before any extension, in any
/// case (including the superscript-digit forms it also treats as devices).
pub const RESERVED_DEVICE_NAMES: [&str; 32] = [
    "CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "COM0", "COM1", "COM2", "COM3", "COM4",
    "COM5", "COM6", "COM7", "COM8", "COM9", "COM¹", "COM²", "COM³", "LPT0", "LPT1", "LPT2", "LPT3",
    "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9", "LPT¹", "LPT²", "LPT³",
];

/// Why an attachment name is refused; the text follows the field's name in
/// a refusal and never repeats the name's characters unescaped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttachmentNameError {
    #[error("is required")]
    Empty,
    #[error("is {bytes} bytes of UTF-8; at most {ATTACHMENT_NAME_BYTES_MAX}")]
    TooManyBytes { bytes: usize },
    #[error("is {chars} characters; at most {ATTACHMENT_NAME_CHARS_MAX}")]
    TooManyChars { chars: usize },
    #[error("contains U+{code_point:04X} at character {position}, {category}; a file name may not hold it")]
    RefusedCharacter {
        code_point: u32,
        /// Counted from 0, in characters.
        position: usize,
        category: &'static str,
    },
    #[error("contains {character:?} at character {position}, which Windows file names may not hold (none of / \\ : * ? \" < > |)")]
    ForbiddenCharacter { character: char, position: usize },
    #[error("is not in Unicode normalisation form C (NFC); normalise it before signing")]
    NotNfc,
    #[error("starts with '.'; a name may not be hidden, '.' or '..'")]
    LeadingDot,
    #[error("starts with a space, or ends with a space or '.'; Windows drops them, so the file would get another name")]
    EdgeSpaceOrDot,
    #[error("is {stem:?}, a device name Windows reserves (CON, PRN, AUX, NUL, COM0-9, LPT0-9), with or without an extension")]
    ReservedDeviceName { stem: String },
    #[error("is the same as attachments[{first}].name but for letter case; Windows and macOS would write both into one file")]
    Duplicate { first: usize },
}

/// The category a character is refused for, if any.
pub(crate) fn refused_category(character: char) -> Option<&'static str> {
    if character == ' ' {
        return None;
    }
    let category = CodePointMapData::<GeneralCategory>::new().get(character);
    Some(match category {
        GeneralCategory::Control => "a control character (Cc)",
        GeneralCategory::Format => {
            "a format character (Cf), such as a bidirectional override or a zero-width character"
        }
        GeneralCategory::LineSeparator => "a line separator (Zl)",
        GeneralCategory::ParagraphSeparator => "a paragraph separator (Zp)",
        GeneralCategory::SpaceSeparator => "a space other than U+0020 (Zs)",
        GeneralCategory::PrivateUse => "a private-use character (Co)",
        GeneralCategory::Surrogate => "a surrogate (Cs)",
        GeneralCategory::Unassigned => "an unassigned code point (Cn)",
        _ => return None,
    })
}

/// Checks one attachment name against the rule of this module.
pub fn check_attachment_name(name: &str) -> Result<(), AttachmentNameError> {
    if name.is_empty() {
        return Err(AttachmentNameError::Empty);
    }
    if name.len() > ATTACHMENT_NAME_BYTES_MAX {
        return Err(AttachmentNameError::TooManyBytes { bytes: name.len() });
    }
    let chars = name.chars().count();
    if chars > ATTACHMENT_NAME_CHARS_MAX {
        return Err(AttachmentNameError::TooManyChars { chars });
    }
    for (position, character) in name.chars().enumerate() {
        if let Some(category) = refused_category(character) {
            return Err(AttachmentNameError::RefusedCharacter {
                code_point: u32::from(character),
                position,
                category,
            });
        }
        if FORBIDDEN_NAME_CHARACTERS.contains(&character) {
            return Err(AttachmentNameError::ForbiddenCharacter {
                character,
                position,
            });
        }
    }
    if !ComposingNormalizerBorrowed::new_nfc().is_normalized(name) {
        return Err(AttachmentNameError::NotNfc);
    }
    if name.starts_with('.') {
        return Err(AttachmentNameError::LeadingDot);
    }
    if name.starts_with(' ') || name.ends_with([' ', '.']) {
        return Err(AttachmentNameError::EdgeSpaceOrDot);
    }
    // Windows looks at what precedes the first dot, trailing spaces dropped.
    let stem = name.split('.').next().unwrap_or(name).trim_end_matches(' ');
    let reserved = RESERVED_DEVICE_NAMES
        .iter()
        .any(|device| device.to_uppercase() == stem.to_uppercase());
    if reserved {
        return Err(AttachmentNameError::ReservedDeviceName {
            stem: stem.to_owned(),
        });
    }
    Ok(())
}

/// Checks every name of one document, in order: each against the rule, and
/// none the same as an earlier one but for letter case. The error carries
/// the index of the name refused.
pub fn check_attachment_names<'a>(
    names: impl IntoIterator<Item = &'a str>,
) -> Result<(), (usize, AttachmentNameError)> {
    let mut seen = std::collections::HashMap::new();
    for (index, name) in names.into_iter().enumerate() {
        check_attachment_name(name).map_err(|error| (index, error))?;
        if let Some(first) = seen.insert(name.to_lowercase(), index) {
            return Err((index, AttachmentNameError::Duplicate { first }));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_pass() {
        for name in [
            "vanban.pdf",
            "Quyết định số 123-QĐ-TTg.pdf",
            "phụ lục 1 (bảng số liệu).xlsx",
            "CONSOLE.txt",
            "con-tract.pdf",
            "nul_0.pdf",
            "COM10.txt",
            "a",
            "文件.pdf",
            "báo cáo.tar.gz",
        ] {
            assert_eq!(check_attachment_name(name), Ok(()), "{name}");
        }
        let longest_ascii = "x".repeat(ATTACHMENT_NAME_CHARS_MAX);
        assert_eq!(check_attachment_name(&longest_ascii), Ok(()));
        // 85 three-byte letters are 255 bytes.
        let longest_vietnamese = "ệ".repeat(85);
        assert_eq!(check_attachment_name(&longest_vietnamese), Ok(()));
    }

    #[test]
    fn every_refused_kind_is_named() {
        use AttachmentNameError as E;
        let refused_character = |name: &str, code_point: u32| {
            assert!(
                matches!(
                    check_attachment_name(name),
                    Err(E::RefusedCharacter { code_point: c, .. }) if c == code_point
                ),
                "{name:?}: {:?}",
                check_attachment_name(name)
            );
        };
        refused_character("van\nban.pdf", 0x0A);
        refused_character("van\tban.pdf", 0x09);
        refused_character("van\rban.pdf", 0x0D);
        refused_character("vanban\0.pdf", 0x00);
        refused_character("\u{1b}[31mvanban.pdf", 0x1B);
        refused_character("van\u{85}ban.pdf", 0x85);
        refused_character("hoadon\u{202e}fdp.exe", 0x202E);
        refused_character("hoadon\u{2066}.pdf", 0x2066);
        refused_character("van\u{200b}ban.pdf", 0x200B);
        refused_character("\u{feff}vanban.pdf", 0xFEFF);
        refused_character("van\u{ad}ban.pdf", 0xAD);
        refused_character("van\u{2028}ban.pdf", 0x2028);
        refused_character("van\u{2029}ban.pdf", 0x2029);
        refused_character("van\u{a0}ban.pdf", 0xA0);
        refused_character("van\u{3000}ban.pdf", 0x3000);
        refused_character("van\u{e000}ban.pdf", 0xE000);
        refused_character("van\u{10ffff}ban.pdf", 0x10FFFF);
        refused_character("van\u{378}ban.pdf", 0x378);

        assert_eq!(check_attachment_name(""), Err(E::Empty));
        assert_eq!(
            check_attachment_name(&"x".repeat(ATTACHMENT_NAME_CHARS_MAX + 1)),
            Err(E::TooManyChars { chars: 201 })
        );
        assert_eq!(
            check_attachment_name(&"ệ".repeat(86)),
            Err(E::TooManyBytes { bytes: 258 })
        );
        for (name, character) in [
            ("a/b.pdf", '/'),
            ("a\\b.pdf", '\\'),
            ("vanban.pdf:evil.exe", ':'),
            ("a*.pdf", '*'),
            ("a?.pdf", '?'),
            ("\"a\".pdf", '"'),
            ("<a>.pdf", '<'),
            ("a|b.pdf", '|'),
        ] {
            assert!(
                matches!(check_attachment_name(name), Err(E::ForbiddenCharacter { character: c, .. }) if c == character),
                "{name}"
            );
        }
        // "Quyết" with the tone and the circumflex as combining marks.
        assert_eq!(
            check_attachment_name("Quye\u{302}\u{301}t.pdf"),
            Err(E::NotNfc)
        );
        for name in [".", "..", ".htaccess", "..pdf"] {
            assert_eq!(check_attachment_name(name), Err(E::LeadingDot), "{name}");
        }
        for name in [" vanban.pdf", "vanban.pdf ", "vanban.exe.", "vanban."] {
            assert_eq!(
                check_attachment_name(name),
                Err(E::EdgeSpaceOrDot),
                "{name}"
            );
        }
        for name in [
            "CON",
            "con",
            "NUL.txt",
            "nul.tar.gz",
            "Aux.pdf",
            "PRN.docx",
            "COM1",
            "com9.pdf",
            "LPT1.txt",
            "lpt0",
            "COM¹.txt",
            "LPT³",
            "CONIN$",
            "conout$.log",
            "NUL .txt",
        ] {
            assert!(
                matches!(
                    check_attachment_name(name),
                    Err(E::ReservedDeviceName { .. })
                ),
                "{name}: {:?}",
                check_attachment_name(name)
            );
        }
    }

    #[test]
    fn refusals_never_repeat_the_name_unescaped() {
        for name in ["a\nforged line", "hoadon\u{202e}fdp.exe", "NUL\u{0}"] {
            let said = check_attachment_name(name).unwrap_err().to_string();
            assert!(
                !said.chars().any(|c| c.is_control() || c == '\u{202e}'),
                "{said:?}"
            );
        }
    }

    #[test]
    fn names_of_one_document_differ_by_more_than_case() {
        assert_eq!(check_attachment_names(["a.pdf", "b.pdf"]), Ok(()));
        assert_eq!(
            check_attachment_names(["a.pdf", "b.pdf", "A.PDF"]),
            Err((2, AttachmentNameError::Duplicate { first: 0 }))
        );
        assert_eq!(
            check_attachment_names(["Đơn.pdf", "đơn.pdf"]),
            Err((1, AttachmentNameError::Duplicate { first: 0 }))
        );
        assert!(matches!(
            check_attachment_names(["a.pdf", "CON.pdf"]),
            Err((1, AttachmentNameError::ReservedDeviceName { .. }))
        ));
    }
}
