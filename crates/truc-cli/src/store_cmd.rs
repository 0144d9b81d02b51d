//! `truc store migrate`: moves a stopped hub's store from one engine to the
//! other (a data directory into a PostgreSQL database, or back), then checks
//! the copy by its counts, its counters and its audit chain.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use truc_store::{PostgresOptions, Store, StoreOptions};

#[derive(clap::Subcommand)]
pub enum StoreCommand {
    /// Copies a stopped hub's store into an empty store of the other engine and checks the copy.
    #[command(after_help = "Examples:
  truc store migrate --from data/hub --to 'postgresql://truc@db1,db2,db3/truc?target_session_attrs=read-write' \\
      --password-file /etc/truc/db-password --ca-cert /etc/truc/db-ca.crt
  truc store migrate --from 'postgresql://truc@127.0.0.1:5432/truc' --to data/hub-copy

A source or target that starts with postgres:// or postgresql://, or holds
host=, is a database; anything else is a data directory. Stop every hub on
the source first: a store that changes while it is copied is refused by the
check at the end. The target must be empty. The check compares the audit
head, every audit entry's hash and link, the counters (and a recount of
them from the copied records), the documents and the queues.

Exit codes: 0 copied and checked; 1 refused or the check failed; 2 usage error.")]
    Migrate(MigrateArgs),
}

#[derive(clap::Args)]
pub struct MigrateArgs {
    /// The store to copy: a data directory or a database URL.
    #[arg(long)]
    from: String,
    /// The empty store to copy into: a database URL or a data directory.
    #[arg(long)]
    to: String,
    /// A file holding the database password (its first line).
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// The CA of the database servers' certificates (PEM): connect with TLS and check them.
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
}

pub async fn run(command: StoreCommand) -> anyhow::Result<ExitCode> {
    match command {
        StoreCommand::Migrate(args) => migrate(args).await,
    }
}

fn is_database(place: &str) -> bool {
    place.starts_with("postgres://")
        || place.starts_with("postgresql://")
        || place.contains("host=")
}

fn open(place: &str, args: &MigrateArgs, creating: bool) -> anyhow::Result<Store> {
    if is_database(place) {
        let password = args
            .password_file
            .as_deref()
            .map(read_first_line)
            .transpose()?;
        let ca_cert_pem = args
            .ca_cert
            .as_deref()
            .map(|path| {
                std::fs::read(path).with_context(|| format!("--ca-cert {}", path.display()))
            })
            .transpose()?;
        return Store::open_postgres(
            &PostgresOptions {
                url: place.to_owned(),
                password,
                ca_cert_pem,
                hub_name: "truc store migrate".into(),
                reader_connections_max: 2,
                ..PostgresOptions::default()
            },
            &StoreOptions::default(),
        )
        .with_context(|| "cannot open the database".to_string());
    }
    let path = Path::new(place);
    if !creating && !path.is_dir() {
        anyhow::bail!("{place}: no such data directory");
    }
    std::fs::create_dir_all(path).with_context(|| format!("cannot create {place}"))?;
    Store::open(path, &StoreOptions::default()).with_context(|| {
        format!("cannot open the data directory {place} (is a hub still running on it?)")
    })
}

fn read_first_line(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--password-file {}", path.display()))?;
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

async fn migrate(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    if is_database(&args.from) == is_database(&args.to) {
        anyhow::bail!(
            "--from and --to are both {}: migrate moves a store to the other engine",
            if is_database(&args.from) {
                "databases"
            } else {
                "data directories"
            }
        );
    }
    let from = open(&args.from, &args, false)?;
    let to = open(&args.to, &args, true)?;
    let started = std::time::Instant::now();
    let report = truc_store::migrate(&from, &to, |progress| {
        eprintln!(
            "copied {} documents, {} audit entries",
            progress.documents, progress.audit_entries
        );
    })
    .await
    .context("the migration stopped")?;
    // A graceful end: the embedded target writes everything into its tree.
    to.checkpoint()
        .await
        .context("the copy's last checkpoint")?;
    println!(
        "copied and checked in {:.1} s: {} documents, {} deliveries, {} attachments, {} queue \
         items, {} deadlines, {} overdue records, {} dead letters, {} counters, {} audit entries \
         (the chain verifies and ends at the source's head)",
        started.elapsed().as_secs_f64(),
        report.documents,
        report.deliveries,
        report.attachments,
        report.queue_items,
        report.deadlines,
        report.overdue,
        report.dead_letters,
        report.counters,
        report.audit_entries
    );
    Ok(ExitCode::SUCCESS)
}
