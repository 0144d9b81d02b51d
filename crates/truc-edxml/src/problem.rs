//! What is wrong with a package, element by element, in Vietnamese and
//! English, grouped the way the 2019 report groups the documents it sent
//! back: form, signature, attachments, authority, notation and code format.

use serde::Serialize;

/// The report's reasons for returning a document (seed 002, I.2.b).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// *Sai hình thức*: XML, elements missing, unknown or repeated.
    Form,
    /// *Thiếu chữ ký số*: the signature block missing or unreadable.
    Signature,
    /// *Thiếu đính kèm*: attachments missing, unmatched or damaged.
    Attachments,
    /// *Sai thẩm quyền*: sender, signer, or documents of another agency.
    Authority,
    /// *Sai thể thức, ký hiệu*: number, notation, agency codes, document ids.
    Notation,
    /// *Sai định dạng*: dates, numbers, codes of a list, lengths.
    Format,
}

impl Category {
    pub fn label_en(self) -> &'static str {
        match self {
            Category::Form => "form",
            Category::Signature => "signature",
            Category::Attachments => "attachments",
            Category::Authority => "authority",
            Category::Notation => "notation and codes",
            Category::Format => "format",
        }
    }

    pub fn label_vi(self) -> &'static str {
        match self {
            Category::Form => "hình thức",
            Category::Signature => "chữ ký số",
            Category::Attachments => "tệp đính kèm",
            Category::Authority => "thẩm quyền",
            Category::Notation => "số, ký hiệu, mã",
            Category::Format => "định dạng",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The package is refused.
    Error,
    /// Said, but the package goes on (a document without its own signature,
    /// which the hub counts as unsigned, as the 2019 report counts them).
    Warning,
}

/// One thing wrong, naming the element (a path below `edXMLHeader`, the
/// body or the attachments, with 1-based indices: `MessageHeader/To[2]/OrganId`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub element: String,
    pub category: Category,
    pub severity: Severity,
    pub reason_vi: String,
    pub reason_en: String,
}

impl Problem {
    pub fn error(
        element: impl Into<String>,
        category: Category,
        reason_vi: impl Into<String>,
        reason_en: impl Into<String>,
    ) -> Self {
        Problem {
            element: element.into(),
            category,
            severity: Severity::Error,
            reason_vi: reason_vi.into(),
            reason_en: reason_en.into(),
        }
    }

    pub fn warning(
        element: impl Into<String>,
        category: Category,
        reason_vi: impl Into<String>,
        reason_en: impl Into<String>,
    ) -> Self {
        Problem {
            severity: Severity::Warning,
            ..Problem::error(element, category, reason_vi, reason_en)
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} ({} / {})",
            self.element,
            self.reason_en,
            self.category.label_en(),
            self.reason_vi
        )
    }
}

/// A package refused, with every problem found (at least one error).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", summary(.0))]
pub struct Refused(pub Vec<Problem>);

fn summary(problems: &[Problem]) -> String {
    let errors: Vec<String> = problems
        .iter()
        .filter(|problem| problem.is_error())
        .map(Problem::to_string)
        .collect();
    match errors.len() {
        0 => "no problem".to_owned(),
        1 => errors[0].clone(),
        n => format!("{n} problems; first: {}", errors[0]),
    }
}

impl Refused {
    pub fn one(problem: Problem) -> Self {
        Refused(vec![problem])
    }

    pub fn problems(&self) -> &[Problem] {
        &self.0
    }
}

/// Gathers problems while a package is read and checked.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    pub fn push(&mut self, problem: Problem) {
        self.0.push(problem);
    }

    pub fn error(
        &mut self,
        element: impl Into<String>,
        category: Category,
        reason_vi: impl Into<String>,
        reason_en: impl Into<String>,
    ) {
        self.push(Problem::error(element, category, reason_vi, reason_en));
    }

    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Problem::is_error)
    }

    /// `Ok` with the warnings when no error was found.
    pub fn into_result(self) -> Result<Vec<Problem>, Refused> {
        if self.has_errors() {
            Err(Refused(self.0))
        } else {
            Ok(self.0)
        }
    }
}
