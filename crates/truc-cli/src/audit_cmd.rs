//! `truc audit export` and `truc audit verify`: a period of the tamper-evident
//! audit log with the certificates that check it, from a running hub (signed
//! by it) or a stopped hub's data directory; and the offline check that names
//! the first entry altered or removed.

use std::io::{BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use truc_domain::DocumentDate;
use truc_pki::{PkiPaths, TrustRoots};

use crate::connect::Connection;

#[derive(clap::Subcommand)]
pub enum AuditCommand {
    /// Writes a period's audit entries, with the certificates needed to check them, to a file.
    #[command(after_help = "Examples:
  truc audit export --operator ops --from 2026-11-01 --to 2026-11-30 --out audit-2026-11.jsonl
  truc audit export --data-dir data/hub --certs certs/dev --out audit.jsonl   (a stopped hub, read offline)

Dates are days in Vietnam time (UTC+7), both inclusive; either may be left out.
From a running hub the export is signed with the hub's key. Offline it is
signed when the --certs folder holds the hub's key (hub.crt, hub.key).")]
    Export(ExportArgs),
    /// Checks an export offline: the hash chain, every envelope signature against the included
    /// certificates and CA, and the hub's signature; names the first entry altered or removed.
    #[command(after_help = "Examples:
  truc audit verify audit-2026-11.jsonl
  truc audit verify audit-2026-11.jsonl --ca certs/dev/ca.crt   (trust this CA, not the export's)

Exit codes: 0 the export checks; 1 it was altered, cut or removed from (the
message names the first entry and the line), or it cannot be read; 2 usage error.")]
    Verify(VerifyArgs),
}

#[derive(clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    connection: Connection,
    /// A stopped hub's data directory, read offline instead of asking the hub.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// First day, yyyy-mm-dd (Vietnam time).
    #[arg(long)]
    from: Option<String>,
    /// Last day, yyyy-mm-dd (Vietnam time), inclusive.
    #[arg(long)]
    to: Option<String>,
    /// The file to write.
    #[arg(long)]
    out: PathBuf,
}

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The export file.
    file: PathBuf,
    /// Check certificates against this CA (PEM) rather than the one the export carries.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

fn day(flag: &str, text: &str) -> anyhow::Result<DocumentDate> {
    crate::check_date(flag, text)
}

/// The period as Unix milliseconds, inclusive; 0 for an open end.
fn period(from: Option<&str>, to: Option<&str>) -> anyhow::Result<(i64, i64)> {
    let from_unix_ms = match from {
        Some(text) => day("--from", text)?.start_unix_ms_vietnam(),
        None => 0,
    };
    let to_unix_ms = match to {
        Some(text) => {
            let next = day("--to", text)?
                .next_day()
                .context("--to: no day after it")?;
            next.start_unix_ms_vietnam() - 1
        }
        None => 0,
    };
    if to_unix_ms > 0 && to_unix_ms < from_unix_ms {
        return Err(crate::usage("--to: the day is before --from's"));
    }
    Ok((from_unix_ms, to_unix_ms))
}

pub async fn run(command: AuditCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Export(args) => export(args).await,
        AuditCommand::Verify(args) => verify(args),
    }
}

async fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let (from_unix_ms, to_unix_ms) = period(args.from.as_deref(), args.to.as_deref())?;
    let file = std::fs::File::create(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut out = std::io::BufWriter::new(file);
    match &args.data_dir {
        Some(data_dir) => {
            eprintln!(
                "reading {} offline: this is a stopped hub's log, not a live view",
                data_dir.display()
            );
            let store = truc_store::Store::open(data_dir, &truc_store::StoreOptions::default())
                .with_context(|| {
                    format!(
                        "cannot open {} (is the hub still running? it locks its directory)",
                        data_dir.display()
                    )
                })?;
            let pki = args.connection.pki()?;
            let trust = crate::connect::roots_of(&pki)?;
            let hub = PkiPaths::new(&pki.dir).hub_credentials().ok();
            let key = hub.as_ref().and_then(|hub| hub.signing_key().ok());
            let signer = match (&hub, &key) {
                (Some(hub), Some(key)) => Some(truc_hub::audit::ExportSigner {
                    certificate_der: hub.certificate_der(),
                    key,
                }),
                _ => {
                    eprintln!(
                        "no hub key in {}: the export is not signed",
                        pki.dir.display()
                    );
                    None
                }
            };
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            let summary = truc_hub::audit::write_export(
                &store,
                &trust,
                signer,
                from_unix_ms,
                to_unix_ms,
                now,
                &mut out,
            )?;
            eprintln!(
                "{} entries ({} to {}) written to {}{}",
                summary.entries,
                summary.first_seq,
                summary.last_seq,
                args.out.display(),
                if summary.signed { ", signed" } else { "" }
            );
        }
        None => {
            let client = args.connection.connect().await?;
            let mut chunks = client.export_audit(from_unix_ms, to_unix_ms).await?;
            let mut bytes = 0usize;
            while let Some(chunk) = chunks.message().await.context("the export stopped")? {
                out.write_all(&chunk)?;
                bytes += chunk.len();
            }
            eprintln!("{bytes} bytes written to {}", args.out.display());
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let pinned = match &args.ca {
        Some(path) => Some(
            TrustRoots::from_pem_file(path)
                .with_context(|| format!("cannot read the CA {}", path.display()))?,
        ),
        None => None,
    };
    let file = std::fs::File::open(&args.file)
        .with_context(|| format!("cannot open {}", args.file.display()))?;
    let result = truc_hub::audit::verify(BufReader::new(file), pinned.as_ref())
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "ok": result.problem.is_none(),
                "entries": result.entries,
                "first_seq": result.first_seq,
                "last_seq": result.last_seq,
                "signatures_checked": result.signatures_checked,
                "signed_by": result.signed_by,
                "problem_seq": result.problem.as_ref().and_then(|p| p.seq),
                "problem_line": result.problem.as_ref().map(|p| p.line),
                "problem": result.problem.as_ref().map(|p| p.what.clone()),
            })
        );
    }
    match &result.problem {
        None => {
            if !args.json {
                println!(
                    "OK: entries {} to {} ({}) chain unbroken; {} envelope signatures verified",
                    result.first_seq, result.last_seq, result.entries, result.signatures_checked
                );
                match &result.signed_by {
                    Some(subject) => println!("signed by the hub ({subject})"),
                    None => println!(
                        "not signed by the hub: the chain shows order and content, but a rewrite of the whole tail would not show"
                    ),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(problem) => {
            if !args.json {
                eprintln!("FAILED: {problem}");
            }
            Ok(ExitCode::FAILURE)
        }
    }
}
