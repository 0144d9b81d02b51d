//! `truc archive verify` and `truc archive show`: the offline check of the
//! archive files retention writes (every seal's signature, every frame's
//! hash, every envelope signature, every attachment, the audit chain, and
//! that the files given in order continue one another's chain), and a
//! document's whole story read from one.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use truc_pki::TrustRoots;

use crate::{format_time, reason_suffix, status_name};
use truc_archive::DocumentFrame;
use truc_domain::views::StatusCode;
use truc_domain::RawHeader;
use truc_store::{AuditEntry, DeliveryRecord};

#[derive(clap::Subcommand)]
pub enum ArchiveCommand {
    /// Checks archive files offline: every seal against the hub's certificate and the CA, every
    /// frame against the hash its seal lists, every envelope signature and attachment, the
    /// audit chain, and the file's end; names the first document altered or missing, or where
    /// the file was cut. Files given in order must continue one another's audit chain.
    #[command(after_help = "Examples:
  truc archive verify archive/2026-03.truca
  truc archive verify archive/2026-01.truca archive/2026-02.truca archive/2026-03.truca
  truc archive verify archive/2026-12.truca --open        (the month still being written)
  truc archive verify archive/2026-03.truca --ca certs/dev/ca.crt

Exit codes: 0 every file checks; 1 a file was altered, cut or removed from (the
message names the document, the seal or the byte), or cannot be read; 2 usage error.")]
    Verify(VerifyArgs),
    /// Prints one archived document's whole story from an archive file: the envelope as
    /// signed, the attachments, every recipient's status history, dead letters, overdue
    /// deadlines, recalls and updates, and the audit entries the file holds for it.
    #[command(after_help = "Example:
  truc archive show archive/2026-03.truca '000.00.00.G22,2026/01/05,12/VPCP'

`truc status <id>` names the archive that holds a document once it left the live store.")]
    Show(ShowArgs),
}

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// Archive files, oldest first when several.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Check certificates against this CA (PEM) rather than the one the file carries.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Accept a file without its closing seal (the current month's, still being written).
    #[arg(long)]
    open: bool,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct ShowArgs {
    /// The archive file.
    file: PathBuf,
    /// The document's id.
    document_id: String,
    #[arg(long)]
    json: bool,
}

pub fn run(command: ArchiveCommand) -> anyhow::Result<ExitCode> {
    match command {
        ArchiveCommand::Verify(args) => verify(args),
        ArchiveCommand::Show(args) => show(args),
    }
}

fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let pinned = match &args.ca {
        Some(path) => Some(
            TrustRoots::from_pem_file(path)
                .with_context(|| format!("cannot read the CA {}", path.display()))?,
        ),
        None => None,
    };
    let mut failed = false;
    let mut previous: Option<(PathBuf, truc_archive::Verification)> = None;
    let mut reports = Vec::new();
    for (index, file) in args.files.iter().enumerate() {
        // Only the last of several may be the month still open.
        let allow_open = args.open && index + 1 == args.files.len();
        let mut result = truc_archive::verify(file, pinned.as_ref(), allow_open)
            .with_context(|| format!("cannot read {}", file.display()))?;
        if result.problem.is_none() {
            if let Some((earlier, before)) = &previous {
                if let Some(gap) = chain_gap(before, &result) {
                    result.problem = Some(truc_archive::Problem {
                        offset: 0,
                        document_id: None,
                        what: format!("{gap} (after {})", earlier.display()),
                    });
                }
            }
        }
        failed |= result.problem.is_some();
        if args.json {
            reports.push(serde_json::json!({
                "file": file.display().to_string(),
                "ok": result.problem.is_none(),
                "period": result.period,
                "hub": result.hub,
                "closed": result.closed,
                "batches": result.batches,
                "documents": result.documents,
                "attachments": result.attachments,
                "signatures_checked": result.signatures_checked,
                "audit_entries": result.audit_entries,
                "audit_first_seq": result.audit_first_seq,
                "audit_last_seq": result.audit_last_seq,
                "signed_by": result.signed_by,
                "problem_offset": result.problem.as_ref().map(|p| p.offset),
                "problem_document_id": result.problem.as_ref().and_then(|p| p.document_id.clone()),
                "problem": result.problem.as_ref().map(|p| p.what.clone()),
            }));
        } else {
            match &result.problem {
                None => println!(
                    "OK: {} ({}{}): {} documents in {} sealed batches, {} envelope signatures and \
                     {} attachments verified; audit entries {} to {} chain unbroken; sealed by {}",
                    file.display(),
                    result.period,
                    if result.closed { ", closed" } else { ", open" },
                    result.documents,
                    result.batches,
                    result.signatures_checked,
                    result.attachments,
                    result.audit_first_seq,
                    result.audit_last_seq,
                    result.signed_by.as_deref().unwrap_or("nobody"),
                ),
                Some(problem) => eprintln!("FAILED: {}: {problem}", file.display()),
            }
        }
        previous = Some((file.clone(), result));
    }
    if args.json {
        println!("{}", serde_json::Value::Array(reports));
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Why `later` does not continue `earlier`'s audit chain, if it does not.
fn chain_gap(
    earlier: &truc_archive::Verification,
    later: &truc_archive::Verification,
) -> Option<String> {
    if earlier.audit_entries == 0 || later.audit_entries == 0 {
        return None;
    }
    if later.audit_first_seq != earlier.audit_last_seq + 1 {
        return Some(format!(
            "its audit chain starts at entry {}, not at {}: the archives between are missing",
            later.audit_first_seq,
            earlier.audit_last_seq + 1
        ));
    }
    if later.audit_previous_sha256 != earlier.audit_last_sha256 {
        return Some(format!(
            "its first audit entry ({}) does not follow the last entry of the file before",
            later.audit_first_seq
        ));
    }
    None
}

fn show(args: ShowArgs) -> anyhow::Result<ExitCode> {
    let mut reader = truc_archive::ArchiveReader::open(&args.file)?;
    let document = reader.find_document(&args.document_id)?;
    let audit = reader.audit_entries_of(&args.document_id)?;
    let header = truc_node::compose::decode_header(&document.header_bytes).ok();
    if args.json {
        print_archived_json(&document, &audit)?;
        return Ok(ExitCode::SUCCESS);
    }
    print_archived_text(&args.file, &document, header.as_ref(), &audit);
    Ok(ExitCode::SUCCESS)
}

/// An archived document's story as JSON, for scripts.
fn print_archived_json(document: &DocumentFrame, audit: &[AuditEntry]) -> anyhow::Result<()> {
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "document_id": document.document_id,
            "sender": document.sender,
            "subject": document.subject,
            "accepted_at_unix_ms": document.accepted_at_unix_ms,
            "recipients": document.recipients,
            "header_sha256": hex::encode(document.content_sha256),
            "signature": hex::encode(&document.signature),
            "attachments": document.attachments.iter().map(|(digest, size)| serde_json::json!({
                "sha256": hex::encode(digest), "size_bytes": size,
            })).collect::<Vec<_>>(),
            "deliveries": document.deliveries.iter().map(|d| serde_json::json!({
                "recipient": d.recipient,
                "history": d.history.iter().map(|e| serde_json::json!({
                    "code": e.code, "status": status_name(StatusCode::from_code(e.code as i32)),
                    "at_unix_ms": e.at_unix_ms, "actor": e.actor, "reason": e.reason,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "dead_letters": document.dead_letters.iter().map(|l| serde_json::json!({
                "recipient": l.recipient, "expired_at_unix_ms": l.expired_at_unix_ms,
                "reason": l.reason, "state": l.state.name(),
                "actions": l.actions.iter().map(|a| serde_json::json!({
                    "action": a.action.name(), "operator": a.operator,
                    "at_unix_ms": a.at_unix_ms, "reason": a.reason,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "overdue": document.overdue.iter().map(|o| serde_json::json!({
                "recipient": o.recipient, "deadline": o.kind.name(),
                "deadline_unix_ms": o.deadline_unix_ms, "detected_at_unix_ms": o.detected_at_unix_ms,
            })).collect::<Vec<_>>(),
            "links": document.links.iter().map(|l| serde_json::json!({
                "earlier": l.earlier, "later": l.later, "business_type": l.business_type,
            })).collect::<Vec<_>>(),
            "audit": audit.iter().map(|e| serde_json::json!({
                "seq": e.seq, "kind": e.kind.name(), "at_unix_ms": e.at_unix_ms,
                "actor": e.actor, "recipient": e.recipient, "status": e.status,
                "sha256": hex::encode(e.sha256),
            })).collect::<Vec<_>>(),
        }))?
    );
    Ok(())
}

/// An archived document's story for people: the envelope, each delivery,
/// the refused recipients, the links and the file's audit entries of it.
fn print_archived_text(
    file: &Path,
    document: &DocumentFrame,
    header: Option<&RawHeader>,
    audit: &[AuditEntry],
) {
    println!("{}  (from {})", document.document_id, file.display());
    println!(
        "  from {}  accepted {}",
        document.sender,
        format_time(document.accepted_at_unix_ms)
    );
    println!("  {}", document.subject);
    if let Some(header) = header {
        // Intake refuses a header without its number and notation.
        let number = format!("{}/{}", header.code_number, header.code_notation);
        println!(
            "  number {number}; signed header SHA-256 {}",
            hex::encode(document.content_sha256)
        );
        for (attachment, (digest, size)) in header.attachments.iter().zip(&document.attachments) {
            println!(
                "  attachment {} ({size} bytes, SHA-256 {})",
                attachment.name,
                hex::encode(digest)
            );
        }
    }
    for delivery in &document.deliveries {
        print_archived_delivery(document, delivery);
    }
    for refused in &document.refused {
        println!(
            "  {}: refused at acceptance: {}",
            refused.organ_id, refused.reason
        );
    }
    for link in &document.links {
        let verb = match link.business_type {
            1 => "recalls",
            2 => "updates",
            _ => "replaces",
        };
        println!("  {} {verb} {}", link.later, link.earlier);
    }
    print_archived_audit(audit);
}

/// One recipient's status history, its dead letter and its missed deadlines.
fn print_archived_delivery(document: &DocumentFrame, delivery: &DeliveryRecord) {
    println!("  {}:", delivery.recipient);
    for entry in &delivery.history {
        println!(
            "    {:02} {:<16} {} by {}{}",
            entry.code,
            status_name(StatusCode::from_code(entry.code as i32)),
            format_time(entry.at_unix_ms),
            entry.actor,
            reason_suffix(&entry.reason)
        );
    }
    for letter in document
        .dead_letters
        .iter()
        .filter(|letter| letter.recipient == delivery.recipient)
    {
        println!(
            "    expired unacknowledged {}: {}",
            format_time(letter.expired_at_unix_ms),
            letter.reason
        );
        for action in &letter.actions {
            println!(
                "    dead letter {} by {} {} {}",
                action.action.name(),
                action.operator,
                format_time(action.at_unix_ms),
                action.reason
            );
        }
    }
    for overdue in document
        .overdue
        .iter()
        .filter(|overdue| overdue.recipient == delivery.recipient)
    {
        println!(
            "    no \"{}\" feedback by {} (seen {})",
            overdue.kind.name(),
            format_time(overdue.deadline_unix_ms),
            format_time(overdue.detected_at_unix_ms)
        );
    }
}

/// The audit entries of the document that this archive file holds.
fn print_archived_audit(audit: &[AuditEntry]) {
    if audit.is_empty() {
        println!("  audit: none of its entries is in this file (they are in an archive before or after it)");
    } else {
        println!("  audit entries in this file:");
        for entry in audit {
            println!(
                "    #{} {} {} by {}{}",
                entry.seq,
                entry.kind.name(),
                format_time(entry.at_unix_ms),
                entry.actor,
                if entry.status > 0 {
                    format!(" ({:02} {})", entry.status, entry.recipient)
                } else {
                    String::new()
                }
            );
        }
    }
}
