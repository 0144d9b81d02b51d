//! `truc edxml check` and `truc edxml show`: an edXML package, a status
//! message or the JSON folder form, checked offline with every problem
//! listed by element, or printed for people.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use truc_edxml::{
    load_entry, read_entry, CheckContext, Entry, Package, Problem, Refused, Severity, StatusMessage,
};

#[derive(clap::Subcommand)]
pub enum EdxmlCommand {
    /// Checks a package offline and lists every problem by element (form, signature,
    /// attachments, authority, notation and codes, formats). Exit code 0 when it would be sent, 1 when not.
    #[command(
        after_help = "Examples:\n  truc edxml check vanban.edxml --as 000.00.00.G22\n  truc edxml check outbox/7816-VPCP/    (a folder: header.json and files, or one .edxml and its files)\n  truc edxml check trangthai.edxml --json"
    )]
    Check {
        /// An .edxml file, a status as .json, or a folder in the folder form.
        path: PathBuf,
        /// The sending agency, as the node would send it: `From` must be this agency.
        #[arg(long = "as")]
        sender: Option<String>,
        /// Print JSON instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Prints a package or a status message for people.
    #[command(
        after_help = "Example: truc edxml show inbox/H41/000.00.00.G22,2026%2F11%2F20,7816%2FVPCP-TTĐT.edxml"
    )]
    Show { path: PathBuf },
}

pub fn run(command: EdxmlCommand) -> anyhow::Result<ExitCode> {
    match command {
        EdxmlCommand::Check { path, sender, json } => check(&path, sender, json),
        EdxmlCommand::Show { path } => show(&path),
    }
}

fn context(sender: Option<&str>) -> anyhow::Result<CheckContext> {
    let sender = sender
        .map(|code| {
            code.parse()
                .map_err(|error| anyhow::anyhow!("--as: {error}"))
        })
        .transpose()?;
    let today = truc_domain::DocumentDate::parse_iso(&crate::today_in_vietnam())
        .context("the system clock gives no date")?;
    Ok(CheckContext::new(today, sender))
}

fn print_problem(problem: &Problem) {
    let severity = match problem.severity {
        Severity::Error => "ERROR  ",
        Severity::Warning => "WARNING",
    };
    println!(
        "  {severity} {}  [{} / {}]",
        problem.element,
        problem.category.label_en(),
        problem.category.label_vi()
    );
    println!("          en: {}", problem.reason_en);
    println!("          vi: {}", problem.reason_vi);
}

fn describe(entry: &Entry) -> String {
    match entry {
        Entry::Document { package, .. } => format!("document {}", package.derived_document_id()),
        Entry::Status(status) => format!(
            "status {} of {} by {}",
            status.status_code, status.response_for.document_id, status.from.organ_id
        ),
    }
}

fn check(path: &Path, sender: Option<String>, json: bool) -> anyhow::Result<ExitCode> {
    let context = context(sender.as_deref())?;
    let outcome = read_entry(path, &context, sender.as_deref());
    let (described, problems, ok) = match &outcome {
        Ok(checked) => (describe(&checked.entry), checked.warnings.clone(), true),
        Err(Refused(problems)) => (String::new(), problems.clone(), false),
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "path": path.display().to_string(),
                "ok": ok,
                "message": described,
                "problems": problems,
            }))?
        );
    } else {
        let errors = problems.iter().filter(|p| p.is_error()).count();
        if ok {
            println!("{}: {described}: can be sent", path.display());
        } else {
            println!(
                "{}: refused, {errors} problem{}",
                path.display(),
                if errors == 1 { "" } else { "s" }
            );
        }
        for problem in &problems {
            print_problem(problem);
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn show(path: &Path) -> anyhow::Result<ExitCode> {
    let context = context(None)?;
    match load_entry(path, &context, None) {
        Ok(Entry::Document { package, .. }) => show_package(&package),
        Ok(Entry::Status(status)) => show_status(&status),
        Err(Refused(problems)) => {
            println!("{}: cannot be read", path.display());
            for problem in &problems {
                print_problem(problem);
            }
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn line(label: &str, value: &str) {
    if !value.is_empty() {
        println!("  {label:<13}{value}");
    }
}

fn show_package(package: &Package) {
    let header = &package.header;
    println!("edXML document {}", package.derived_document_id());
    line(
        "from",
        &format!("{}  {}", header.from.organ_id, header.from.organ_name),
    );
    for to in &header.to {
        line("to", &format!("{}  {}", to.organ_id, to.organ_name));
    }
    line(
        "number",
        &format!(
            "{}/{}   promulgated {} {}",
            header.code.number,
            header.code.notation,
            header.promulgation.place,
            header.promulgation.date
        ),
    );
    line(
        "type",
        &format!(
            "{} {}",
            header.document_type.type_code, header.document_type.type_name
        ),
    );
    line("subject", &header.subject);
    line("content", &header.content);
    if let Some(signer) = &header.signer_info {
        line(
            "signer",
            &format!(
                "{} {}, {}",
                signer.competence, signer.position, signer.full_name
            ),
        );
    }
    line("due", &header.due_date);
    line(
        "other",
        &format!(
            "priority {}, steering {}, {} pages, {} appendixes",
            header.other_info.priority,
            header.steering_type,
            header.other_info.page_amount,
            header.other_info.appendixes.len()
        ),
    );
    for place in &header.to_places {
        line("to place", place);
    }
    for answered in &header.response_for {
        line("answers", &answered.document_id);
    }
    let business = &package.business;
    let kind = match business.doc_type {
        0 => "new",
        1 => "revoke",
        2 => "update",
        3 => "replace",
        _ => "unknown",
    };
    line(
        "business",
        &format!("{} {kind}  {}", business.doc_type, business.doc_reason),
    );
    if !business.document_id.is_empty() {
        line("acts on", &business.document_id);
    }
    for replacement in &business.replacements {
        line("acts on", &replacement.document_id);
    }
    for trace in &package.trace_headers {
        line(
            "trace",
            &format!("{} at {}", trace.organ_id, trace.timestamp),
        );
    }
    match &package.signature {
        Some(signature) => {
            line(
                "signature",
                &format!(
                "{} {} (its form is checked; XML-DSig values are not verified, see docs/EDXML.md)",
                signature.signature_method.rsplit('#').next().unwrap_or_default(),
                signature.x509_subject_name
            ),
            )
        }
        None => line("signature", "none"),
    }
    println!("  attachments");
    for (index, attachment) in package.attachments.iter().enumerate() {
        let digest = ring::digest::digest(&ring::digest::SHA256, &attachment.bytes);
        println!(
            "    {}  {}  {}  {} bytes  sha256 {}",
            index + 1,
            attachment.name,
            attachment.content_type,
            attachment.bytes.len(),
            hex_of(digest.as_ref())
        );
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn show_status(status: &StatusMessage) {
    let name = status
        .status_code
        .parse::<u32>()
        .ok()
        .and_then(|code| truc_domain::Status::from_code(code).ok())
        .map(|status| status.name())
        .unwrap_or("unknown");
    println!("edXML status {} {name}", status.status_code);
    line("document", &status.response_for.document_id);
    line(
        "from",
        &format!("{}  {}", status.from.organ_id, status.from.organ_name),
    );
    line("description", &status.description);
    line("at", &status.timestamp);
    if let Some(staff) = &status.staff_info {
        line(
            "staff",
            &format!(
                "{} {} {} {}",
                staff.department, staff.staff, staff.mobile, staff.email
            ),
        );
    }
}
