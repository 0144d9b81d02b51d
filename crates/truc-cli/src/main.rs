//! The `truc` binary: thin subcommands over the library crates.

/// Allocation is a fifth of the replay's CPU with glibc's allocator, and a
/// hub that runs for years must give back what it frees. jemalloc held a
/// year run's RSS about 40 % below mimalloc 2's in the same run, and with
/// one arena per CPU and free pages purged within 100 ms
/// (`.cargo/config.toml` compiles this in) the archive batches' passing
/// peaks no longer stay in the RSS (BENCHMARKS.md, "What the hub's memory
/// grew with" and "Arenas and purging"). Not at once: purging every page
/// the moment it is free cost a fifth of the hub's CPU at intake and a
/// fifth of its deliveries ("jemalloc purging at once, and what it cost"). The
/// `system-allocator` feature keeps glibc's, for heap profilers that watch
/// `malloc` (CONTRIBUTING.md).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod archive_cmd;
mod audit_cmd;
mod bench_cmd;
mod connect;
mod demo;
mod edxml_cmd;
mod feedback_cmd;
mod grpc_cmd;
mod operator_cmd;
mod replay_cmd;
mod report_cmd;
mod store_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use truc_domain::views::{DocumentStatus, RecipientStatus, SendReceipt, StatusCode};
use truc_domain::{BusinessType, DocumentDate, Status};
use truc_node::{Attachment, Draft};

use connect::Connection;

#[derive(Parser)]
#[command(
    name = "truc",
    version,
    about = "The national document interconnection axis: hub, agency nodes and tools",
    after_help = "Start with `truc demo`, or `truc certs init` then `truc hub --config config/hub.toml`.\n\
                  Exit codes: 0 success, 1 failure (the message says what to do next), 2 usage error,\n\
                  3 `truc send` or `truc recall` accepted for some recipients and refused for others (each ✗ says why).\n\
                  Times are shown in Vietnam time with the offset (2026-11-22 09:30:00 +07:00); logs are in UTC (…Z)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines for people, or one JSON object per line for collectors. The level comes from RUST_LOG.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "TRUC_LOG_FORMAT",
        default_value_t = LogFormat::Human
    )]
    log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Development PKI: a CA, the hub's certificate, agency and operator credentials.
    #[command(
        after_help = "Examples:\n  truc certs init --dir certs/dev --directory config/agencies.toml\n  \
                      truc certs issue --dir certs/dev --agency 000.00.07.H41\n  \
                      truc certs hub --dir certs/dev --key-algorithm p256"
    )]
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Runs the hub: gRPC over mutual TLS, sled storage.
    #[command(after_help = "Example: truc hub --config config/hub.toml\n\
                      Every key of the file can be overridden by an environment variable, TRUC_HUB__ and\n\
                      the key's path in capitals (TRUC_HUB__LISTEN, TRUC_HUB__DELIVERY__WINDOW_MAX);\n\
                      --print-config shows each key with its default and its variable.\n\
                      gRPC health and server reflection share the hub's port; Prometheus metrics are\n\
                      served on [observe] metrics_listen, the operator dashboard on [observe] dashboard_listen\n\
                      (make its token with `truc certs dashboard-token`, then sign in with any user name and\n\
                      the token as password). Log level: RUST_LOG (default warn,truc=info); logs are in UTC.")]
    Hub {
        /// The hub's configuration (default: config/hub.toml in the current
        /// folder or the nearest folder above it that has one).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print the effective configuration (the file with its TRUC_HUB__* overrides) as commented TOML, and exit.
        #[arg(long)]
        print_config: bool,
        /// For benchmarks only: the hub's clock starts at this day (yyyy-mm-dd, midnight in
        /// Vietnam) instead of now. Acceptance times, deadlines and retention read it.
        #[arg(long, value_name = "DAY", requires = "clock_speed")]
        clock_start: Option<String>,
        /// For benchmarks only: the hub's clock runs this many times faster than the system's
        /// (8760 passes a year in an hour), so that retention can be seen over a year.
        #[arg(long, value_name = "FACTOR")]
        clock_speed: Option<f64>,
    },
    /// Runs an agency node: one delivery stream, documents written into an inbox exactly once,
    /// and with --outbox, what the agency's own system drops into a folder sent.
    #[command(
        after_help = "Examples:\n  truc node --as 000.00.00.H41 --inbox data/inbox/H41\n  \
                      truc node --as 000.00.00.H41 --inbox data/H41/inbox --outbox data/H41/outbox\n  \
                      truc node --as 000.00.00.H41 --inbox data/inbox/H41 --hub 10.0.0.1:7443,10.0.0.2:7443\n\
                      The outbox takes .edxml packages and status messages, .json statuses and folders\n\
                      (header.json and files), each dropped under its final name by a rename; it moves\n\
                      each to outbox/sent/ with a .receipt.json or to outbox/failed/ with a .refusal.json.\n\
                      See docs/EDXML.md. With several hubs of one store, the stream moves to the next\n\
                      when its hub stops."
    )]
    Node {
        #[command(flatten)]
        connection: Connection,
        /// Folder the delivered documents are written into.
        #[arg(long)]
        inbox: PathBuf,
        /// Unacknowledged deliveries accepted at once.
        #[arg(long, default_value_t = 64)]
        window: u32,
        /// Folder the agency's document system drops documents and statuses into (edXML or the
        /// folder form); the inbox then also receives edXML packages and status messages.
        #[arg(long, env = "TRUC_NODE_OUTBOX")]
        outbox: Option<PathBuf>,
        /// Also write each received document as an edXML package, and each status notice as an
        /// edXML status message, into the inbox (on with --outbox).
        #[arg(long)]
        edxml: bool,
    },
    /// edXML packages (QCVN 102:2016): check one offline, or print it.
    Edxml {
        #[command(subcommand)]
        command: edxml_cmd::EdxmlCommand,
    },
    /// Signs and sends a document as an agency.
    #[command(
        after_help = "Example: truc send --as 000.00.00.G22 --to 000.00.00.H41 --to 000.00.00.G12 \\\n  --number 7816 --notation VPCP-TTĐT --subject 'Về việc ...' --attach vanban.pdf --sign-document\n\
                      Exit code 3 when the hub accepted the document for some recipients and refused others\n\
                      (each refused one is marked ✗ with the reason); 0 when every recipient was accepted.\n\
                      A --due date already past is sent with a warning on stderr: the hub counts it overdue at once."
    )]
    Send(SendArgs),
    /// Shows a document's status per recipient, or moves the caller's own delivery on.
    #[command(
        after_help = "Examples:\n  truc status '000.00.00.G22,2026/11/22,7816/VPCP-TTĐT' --as 000.00.00.G22\n  truc status '000.00.00.G22,2026/11/22,7816/VPCP-TTĐT' --as 000.00.00.H41 --set received\n  truc status '...' --as 000.00.00.H41 --set rejected --reason 'Sai thẩm quyền'"
    )]
    Status {
        /// The document id, `OrganId,yyyy/MM/dd,Number/Notation`.
        document_id: String,
        #[command(flatten)]
        connection: Connection,
        /// Move the caller's delivery to: received, assigned, processing, completed, rejected;
        /// or answer a recall, update or replace: recall-agreed, recall-refused (with --reason).
        #[arg(long)]
        set: Option<String>,
        /// As an LGSP relay, move the delivery of this unit of its subtree.
        #[arg(long = "for", requires = "set")]
        for_unit: Option<String>,
        /// Why (required with `--set rejected`).
        #[arg(long, default_value = "")]
        reason: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Where documents to an agency code are delivered, and why (its own node, an LGSP relay, or no route).
    #[command(
        after_help = "Examples:\n  truc route 000.00.05.H41 --operator ops\n  truc route 000.00.05.H41 --directory config/agencies.toml\nExit code 1 when the code has no route."
    )]
    Route(operator_cmd::RouteArgs),
    /// Lists documents by sender, recipient, status and period (agencies see only their own).
    #[command(
        after_help = "Examples:\n  truc documents --operator ops --recipient 000.00.05.H41 --status arrived\n  truc documents --as 000.00.00.G22 --queued --json"
    )]
    Documents(operator_cmd::DocumentsArgs),
    /// The directory with each node's mode, online state, last seen, queued documents and notices, and oldest unacknowledged document (operators).
    #[command(after_help = "Example: truc nodes --operator ops\n\
                      `documents` are deliveries waiting for the node to fetch them; `notices` are status notices\n\
                      waiting for it (about documents its agency sent, or a recall of one it received).")]
    Nodes(operator_cmd::NodesArgs),
    /// Deliveries past a feedback deadline, per recipient, with how late (agencies see their own).
    #[command(after_help = "Example: truc overdue --operator ops --agency 000.00.00.G12")]
    Overdue(feedback_cmd::OverdueArgs),
    /// Deliveries that expired unacknowledged; administrators resend or cancel them.
    #[command(
        name = "dead-letters",
        after_help = "Examples:\n  truc dead-letters --operator ops\n  truc dead-letters resend '<id>' 000.00.00.G12 --administrator admin\n  truc dead-letters cancel '<id>' 000.00.00.G12 --reason 'Đã gửi bản giấy' --administrator admin\n\
                      Operators read; resending and cancelling take an administrator's certificate."
    )]
    DeadLetters(feedback_cmd::DeadLettersArgs),
    /// Recalls a document the caller sent: withdrawn at once where not yet fetched, otherwise asked of the recipient.
    #[command(
        after_help = "Example: truc recall '000.00.00.G22,2026/11/22,7816/VPCP-TTĐT' --as 000.00.00.G22 --number 7817 --notation VPCP-TTĐT\n\
                      Exit code 3 when the recall was refused for some recipients (each marked ✗ with the reason)."
    )]
    Recall(operator_cmd::RecallArgs),
    /// Per-agency sent and received counts for a period (operators see all agencies).
    #[command(
        after_help = "Examples:\n  truc counts --operator ops --from 2026-01-01 --to 2026-06-30\n  \
                      truc counts --as 000.00.00.H41 --json\n\
                      `received` counts deliveries that arrived (fetched by the recipient's node, or moved by the\n\
                      recipient); documents still queued for a recipient are not counted until they arrive\n\
                      (`truc documents --recipient <code> --queued` lists them)."
    )]
    Counts {
        #[command(flatten)]
        connection: Connection,
        /// First document date counted, YYYY-MM-DD (default: the beginning).
        #[arg(long, default_value = "")]
        from: String,
        /// Last document date counted, YYYY-MM-DD (default: today and after).
        #[arg(long, default_value = "")]
        to: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Everything in one process on a temporary directory: hub, agency nodes, documents, statuses.
    #[command(after_help = "Example: truc demo")]
    Demo(demo::DemoArgs),
    /// Replays a published period through the hub and compares its counts with the reports.
    Replay(replay_cmd::ReplayArgs),
    /// The report of a running hub, or of a stopped hub's data directory.
    Report(report_cmd::ReportArgs),
    /// Load generator: durable intake, deliveries at a fan-out, status moves and latencies of a
    /// hub in its own process, optionally beside NATS JetStream; or attachment sizes beside the
    /// disk's own write-and-sync bandwidth.
    #[command(
        after_help = "Examples:\n  truc bench --duration 30 --json bench.json\n  truc bench --scenario fanout --rate half\n  \
                      truc bench --scenario fanout --compare-nats   (see bench/compare-nats.sh)\n  \
                      truc bench --scenario attachments --attachment-sizes 1KiB,64KiB,1MiB,16MiB --json attachments.json\n  \
                      truc bench --hub 127.0.0.1:7443 --certs certs/bench --hub-pid 1234 --data-dir data/hub"
    )]
    Bench(bench_cmd::BenchArgs),
    /// Kills the hub and node agent processes with SIGKILL under load, restarts them, and
    /// checks that nothing acknowledged was lost or seen twice.
    #[command(
        after_help = "Examples:\n  truc crashtest                      # 24 hub kills, 8 node kills, 2,400 documents\n  truc crashtest --hub-kills 3 --node-kills 1 --documents 150 --seed 7\n  truc crashtest --power-cut --cuts 100 --documents 1500 --seed 1   # root, /dev/fuse"
    )]
    Crashtest(truc_crashtest::CrashtestArgs),
    /// gRPC server reflection and health of a running hub, over its mutual TLS.
    Grpc {
        #[command(subcommand)]
        command: grpc_cmd::GrpcCommand,
    },
    /// The tamper-evident audit log: export a period with its certificates, verify an export offline.
    Audit {
        #[command(subcommand)]
        command: audit_cmd::AuditCommand,
    },
    /// The hub's store: move it between the embedded engine and PostgreSQL.
    Store {
        #[command(subcommand)]
        command: store_cmd::StoreCommand,
    },
    /// The archive files retention writes: verify them offline, show a document's story from one.
    Archive {
        #[command(subcommand)]
        command: archive_cmd::ArchiveCommand,
    },
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Makes a new CA and credentials for the hub, every agency of a directory, operators and administrators.
    #[command(
        after_help = "Examples:\n  truc certs init --dir certs/dev --directory config/agencies.toml\n  \
                      truc certs init --dir certs/p256 --key-algorithm p256   # for gRPC stacks without Ed25519 (Python grpcio)"
    )]
    Init {
        /// Folder to write into (must not hold a CA yet).
        #[arg(long, default_value = "certs/dev")]
        dir: PathBuf,
        /// Directory file whose agencies get credentials.
        #[arg(long, default_value = "config/agencies.toml")]
        directory: PathBuf,
        /// Operator names to issue certificates for (read-only: they see everything and change nothing).
        #[arg(long = "operator", default_value = "ops")]
        operators: Vec<String>,
        /// Administrator names to issue certificates for (they also resend and cancel dead letters).
        #[arg(long = "administrator", default_value = "admin")]
        administrators: Vec<String>,
        /// Validity of every certificate, in days.
        #[arg(long, default_value_t = 365)]
        days: u64,
        /// Key algorithm of every key: the CA, the hub, agencies and operators.
        #[arg(long, value_enum, default_value_t = KeyAlgorithmArg::Ed25519)]
        key_algorithm: KeyAlgorithmArg,
    },
    /// Issues credentials for one more agency with an existing CA.
    #[command(
        after_help = "Example: truc certs issue --dir certs/dev --agency 000.00.05.H41 --name 'Sở Tài chính' --key-algorithm p256"
    )]
    Issue {
        /// The PKI folder made by `truc certs init` (its CA signs).
        #[arg(long, default_value = "certs/dev")]
        dir: PathBuf,
        /// Agency code, e.g. 000.00.05.H41.
        #[arg(long)]
        agency: String,
        /// The agency's name, for the certificate's subject.
        #[arg(long, default_value = "")]
        name: String,
        /// Validity of the certificate, in days.
        #[arg(long, default_value_t = 365)]
        days: u64,
        /// Key algorithm of the agency's key (default: the CA's). An agency
        /// may hold a P-256 key under an Ed25519 CA and the other way round.
        #[arg(long, value_enum)]
        key_algorithm: Option<KeyAlgorithmArg>,
    },
    /// Issues the hub's credentials again with the existing CA (restart the hub to use them).
    #[command(
        after_help = "Example: truc certs hub --dir certs/dev --key-algorithm p256\n\
                      A P-256 hub under an Ed25519 CA also serves clients whose TLS has no Ed25519 (Python grpcio)."
    )]
    Hub {
        /// The PKI folder made by `truc certs init` (its CA signs).
        #[arg(long, default_value = "certs/dev")]
        dir: PathBuf,
        /// Validity of the certificate, in days.
        #[arg(long, default_value_t = 365)]
        days: u64,
        /// Key algorithm of the hub's key (default: the CA's).
        #[arg(long, value_enum)]
        key_algorithm: Option<KeyAlgorithmArg>,
    },
    /// Issues an operator's credentials with an existing CA: reads everything, changes nothing.
    #[command(after_help = "Example: truc certs operator --dir certs/dev --name watch")]
    Operator {
        /// The PKI folder made by `truc certs init` (its CA signs).
        #[arg(long, default_value = "certs/dev")]
        dir: PathBuf,
        /// The operator's name, in the certificate as urn:truc:operator:<name>.
        #[arg(long)]
        name: String,
        /// Validity of the certificate, in days.
        #[arg(long, default_value_t = 365)]
        days: u64,
    },
    /// Issues an administrator's credentials with an existing CA: reads like an
    /// operator, and resends and cancels dead letters.
    #[command(after_help = "Example: truc certs administrator --dir certs/dev --name lan")]
    Administrator {
        /// The PKI folder made by `truc certs init` (its CA signs).
        #[arg(long, default_value = "certs/dev")]
        dir: PathBuf,
        /// The administrator's name, in the certificate as urn:truc:administrator:<name>.
        #[arg(long)]
        name: String,
        /// Validity of the certificate, in days.
        #[arg(long, default_value_t = 365)]
        days: u64,
    },
    /// Writes a new random token for the operator dashboard (mode 0600), for `[observe] dashboard_token_file`.
    #[command(
        name = "dashboard-token",
        after_help = "Example: truc certs dashboard-token --dir certs/dev   # writes certs/dev/dashboard.token\n\
                      A browser signs in with any user name and the token as password; scripts send\n\
                      `Authorization: Bearer <token>`. An existing file is never overwritten."
    )]
    DashboardToken {
        #[arg(long, default_value = "certs/dev")]
        dir: PathBuf,
    },
}

/// The key algorithms of the development PKI, as spelled on the command line.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum KeyAlgorithmArg {
    /// Ed25519: small and fast; rustls, Go and OpenSSL clients handle it.
    Ed25519,
    /// ECDSA P-256 with SHA-256: for TLS stacks without Ed25519, such as gRPC's C core (Python, Ruby, C++).
    P256,
}

impl From<KeyAlgorithmArg> for truc_pki::KeyAlgorithm {
    fn from(argument: KeyAlgorithmArg) -> Self {
        match argument {
            KeyAlgorithmArg::Ed25519 => truc_pki::KeyAlgorithm::Ed25519,
            KeyAlgorithmArg::P256 => truc_pki::KeyAlgorithm::EcdsaP256Sha256,
        }
    }
}

#[derive(clap::Args)]
struct SendArgs {
    #[command(flatten)]
    connection: Connection,
    /// Recipient agency codes (repeat).
    #[arg(long = "to", required = true)]
    to: Vec<String>,
    /// Document number (so).
    #[arg(long)]
    number: String,
    /// Notation (ky hieu), e.g. VPCP-TTĐT.
    #[arg(long)]
    notation: String,
    /// Abstract (trich yeu).
    #[arg(long)]
    subject: String,
    /// Promulgation date, yyyy-mm-dd (default: today in Vietnam).
    #[arg(long)]
    date: Option<String>,
    /// Place of promulgation.
    #[arg(long, default_value = "Hà Nội")]
    place: String,
    /// Due date, yyyy-mm-dd.
    #[arg(long, default_value = "")]
    due: String,
    /// Files to attach (repeat).
    #[arg(long = "attach", required = true)]
    attach: Vec<PathBuf>,
    /// Attach the document's own digital signature by the sending organisation.
    #[arg(long)]
    sign_document: bool,
    /// Documents this one answers (repeat).
    #[arg(long = "response-for")]
    response_for: Vec<String>,
    /// This document updates an earlier one of the same sender (business type 2).
    #[arg(long, conflicts_with = "replaces")]
    updates: Option<String>,
    /// This document replaces an earlier one of the same sender (business type 3).
    #[arg(long)]
    replaces: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// A command line that cannot run as written (a value out of its set, a
/// missing `--as`, a date that is no date): exit code 2, as for clap's own
/// usage errors, so that scripts can tell it from a failure.
#[derive(Debug)]
pub struct Usage(String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// A usage error; its message starts with the flag.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Usage(message.into()))
}

/// Exit code when a document was accepted for some recipients and refused
/// for others: a script must notice the dropped recipients.
pub const EXIT_SOME_RECIPIENTS_REFUSED: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Replays, demos and load runs connect a node per agency at once: a
    // line per node would bury what matters.
    let many_nodes = matches!(
        cli.command,
        Command::Replay(_) | Command::Demo(_) | Command::Bench(_) | Command::Crashtest(_)
    );
    init_logs(cli.log_format, many_nodes);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, cli.log_format)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", error_text(&error));
            if error.chain().any(|cause| cause.is::<Usage>()) {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// An error for people: a refused certificate said in terms of the files
/// used; otherwise the chain of causes, each said once (a library's message
/// often repeats the cause it also gives as its source).
fn error_text(error: &anyhow::Error) -> String {
    if let Some(explained) = connect::explain(error) {
        return explained;
    }
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if part.is_empty() || text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

/// A `yyyy-mm-dd` flag, checked before anything is asked of the hub.
pub(crate) fn check_date(flag: &str, text: &str) -> anyhow::Result<truc_domain::DocumentDate> {
    truc_domain::DocumentDate::parse_iso(text).map_err(|error| {
        usage(format!(
            "{flag}: {text:?} is not a date: {error}; write yyyy-mm-dd, e.g. 2026-11-22"
        ))
    })
}

/// The level when RUST_LOG is not set: the hub's start, stop and node
/// connections, warnings and errors.
const DEFAULT_LOG_LEVEL: &str = "warn,truc=info";

fn init_logs(format: LogFormat, many_nodes: bool) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let format = match format {
        LogFormat::Human => truc_hub::logs::LogFormat::Human,
        LogFormat::Json => truc_hub::logs::LogFormat::Json,
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // Both formats escape what clients wrote: a refusal's text cannot forge a line.
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(if many_nodes {
                    format!("{DEFAULT_LOG_LEVEL},{}=warn", truc_hub::NODES_TARGET)
                } else {
                    DEFAULT_LOG_LEVEL.to_owned()
                })
            }),
        )
        .with(truc_hub::logs::layer(format, std::io::stderr, ansi))
        .init();
}

async fn run(command: Command, log_format: LogFormat) -> anyhow::Result<ExitCode> {
    match command {
        Command::Certs { command } => certs(command),
        Command::Hub {
            config,
            print_config: false,
            clock_start,
            clock_speed,
        } => {
            hub(
                hub_config_path(config)?,
                log_format,
                clock_start,
                clock_speed,
            )
            .await
        }
        Command::Hub {
            config,
            print_config: true,
            ..
        } => print_hub_config(hub_config_path(config)?),
        Command::Node {
            connection,
            inbox,
            window,
            outbox,
            edxml,
        } => node(connection, inbox, window, outbox, edxml).await,
        Command::Edxml { command } => edxml_cmd::run(command),
        Command::Send(args) => send(args).await,
        Command::Status {
            document_id,
            connection,
            set,
            for_unit,
            reason,
            json,
        } => status(document_id, connection, set, for_unit, reason, json).await,
        Command::Counts {
            connection,
            from,
            to,
            json,
        } => counts(connection, from, to, json).await,
        Command::Route(args) => operator_cmd::route(args).await,
        Command::Documents(args) => operator_cmd::documents(args).await,
        Command::Nodes(args) => operator_cmd::nodes(args).await,
        Command::Recall(args) => operator_cmd::recall(args).await,
        Command::Overdue(args) => feedback_cmd::overdue(args).await,
        Command::DeadLetters(args) => feedback_cmd::dead_letters(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Replay(args) => replay_cmd::run(args).await,
        Command::Report(args) => report_cmd::run(args).await,
        Command::Bench(args) => bench_cmd::run(args).await,
        Command::Crashtest(args) => truc_crashtest::run(args).await,
        Command::Audit { command } => audit_cmd::run(command).await,
        Command::Grpc { command } => grpc_cmd::run(command).await,
        Command::Store { command } => store_cmd::run(command).await,
        Command::Archive { command } => archive_cmd::run(command),
    }
}

fn certs(command: CertsCommand) -> anyhow::Result<ExitCode> {
    match command {
        CertsCommand::DashboardToken { dir } => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let path = dir.join("dashboard.token");
            truc_hub::dashboard::DashboardToken::write_new(&path).map_err(|error| match error {
                truc_hub::dashboard::TokenError::Create { ref source, .. }
                    if source.kind() == std::io::ErrorKind::AlreadyExists =>
                {
                    anyhow::anyhow!("{error} (remove the old token first to replace it)")
                }
                error => error.into(),
            })?;
            println!(
                "wrote a dashboard token to {} (mode 0600; never commit it); set [observe] dashboard_token_file to it",
                path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        CertsCommand::Operator { dir, name, days } => {
            let paths = truc_pki::PkiPaths::new(dir);
            truc_pki::issue_operator(&paths, &name, std::time::Duration::from_secs(days * 86_400))?;
            println!(
                "issued operator {name} (reads everything, changes nothing) in {}",
                paths.operator_cert(&name).display()
            );
            Ok(ExitCode::SUCCESS)
        }
        CertsCommand::Administrator { dir, name, days } => {
            let paths = truc_pki::PkiPaths::new(dir);
            truc_pki::issue_administrators(
                &paths,
                std::slice::from_ref(&name),
                std::time::Duration::from_secs(days * 86_400),
            )?;
            println!(
                "issued administrator {name} (reads, and resends and cancels dead letters) in {}",
                paths.administrator_cert(&name).display()
            );
            Ok(ExitCode::SUCCESS)
        }
        CertsCommand::Init {
            dir,
            directory,
            operators,
            administrators,
            days,
            key_algorithm,
        } => {
            let loaded = truc_hub::Directory::load(&directory)?;
            let agencies: Vec<(String, String)> = loaded
                .entries()
                .map(|entry| (entry.code.to_string(), entry.name.clone()))
                .collect();
            let key_algorithm = truc_pki::KeyAlgorithm::from(key_algorithm);
            let paths = truc_pki::init_dev_pki_with_key_algorithm(
                &dir,
                &agencies,
                &operators,
                std::time::Duration::from_secs(days * 86_400),
                key_algorithm,
            )
            .with_context(|| format!("making a development PKI in {}", dir.display()))?;
            if !administrators.is_empty() {
                truc_pki::issue_administrators(
                    &paths,
                    &administrators,
                    std::time::Duration::from_secs(days * 86_400),
                )?;
            }
            println!(
                "made a development PKI in {}: CA, hub, {} agencies, {} operators (read-only), {} administrators, {key_algorithm} keys (keys are mode 0600; never commit them)",
                paths.dir.display(),
                agencies.len(),
                operators.len(),
                administrators.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        CertsCommand::Issue {
            dir,
            agency,
            name,
            days,
            key_algorithm,
        } => {
            let code: truc_domain::AgencyCode = agency
                .parse()
                .map_err(|error| anyhow::anyhow!("--agency: {error}"))?;
            let paths = truc_pki::PkiPaths::new(dir);
            let name = if name.is_empty() {
                code.to_string()
            } else {
                name
            };
            let agencies = [(code.to_string(), name)];
            let validity = std::time::Duration::from_secs(days * 86_400);
            match key_algorithm {
                Some(key_algorithm) => truc_pki::issue_agencies_with_key_algorithm(
                    &paths,
                    &agencies,
                    validity,
                    key_algorithm.into(),
                )?,
                None => truc_pki::issue_agencies(&paths, &agencies, validity)?,
            }
            println!(
                "issued {} in {}",
                code,
                paths.agency_cert(&code.to_string()).display()
            );
            Ok(ExitCode::SUCCESS)
        }
        CertsCommand::Hub {
            dir,
            days,
            key_algorithm,
        } => {
            let paths = truc_pki::PkiPaths::new(dir);
            let validity = std::time::Duration::from_secs(days * 86_400);
            match key_algorithm {
                Some(key_algorithm) => {
                    truc_pki::issue_hub_with_key_algorithm(&paths, validity, key_algorithm.into())?
                }
                None => truc_pki::issue_hub(&paths, validity)?,
            }
            println!(
                "issued the hub's credentials in {}; restart the hub to use them",
                paths.hub_cert().display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `--config`, or config/hub.toml in the current folder or the nearest
/// folder above it that has one (the checkout's root from any folder in it).
fn hub_config_path(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    const DEFAULT: &str = "config/hub.toml";
    if let Some(given) = given {
        return Ok(given);
    }
    let here = std::env::current_dir().context("reading the current folder")?;
    for folder in here.ancestors() {
        if folder.join(DEFAULT).is_file() {
            return Ok(if folder == here {
                PathBuf::from(DEFAULT)
            } else {
                folder.join(DEFAULT)
            });
        }
    }
    Err(usage(format!(
        "--config: no {DEFAULT} in {} or any folder above it; give the hub's configuration with \
         --config FILE (`truc hub --print-config` on the repository's config/hub.toml shows every key)",
        here.display()
    )))
}

async fn hub(
    config_path: PathBuf,
    log_format: LogFormat,
    clock_start: Option<String>,
    clock_speed: Option<f64>,
) -> anyhow::Result<ExitCode> {
    let config = truc_hub::HubConfig::load(&config_path)?;
    let mut setup = truc_hub::HubSetup::from_config(&config)?;
    if let Some(speed) = clock_speed {
        if !(speed.is_finite() && speed >= 1.0) {
            anyhow::bail!("--clock-speed {speed}: must be a number of at least 1");
        }
        let start_unix_ms = match &clock_start {
            Some(day) => DocumentDate::parse_iso(day)
                .map_err(|error| anyhow::anyhow!("--clock-start {day}: {error}"))?
                .start_unix_ms_vietnam(),
            None => time::OffsetDateTime::now_utc().unix_timestamp() * 1000,
        };
        tracing::warn!(
            speed,
            start = %format_time(start_unix_ms),
            "the hub's clock runs faster than the system's: for benchmarks only"
        );
        setup.watch.clock = truc_hub::Clock::faster(start_unix_ms, speed);
    }
    let listener =
        listen(config.listen).with_context(|| format!("cannot listen on {}", config.listen))?;
    // The bound address, so that `listen = "127.0.0.1:0"` reports the port it got.
    let listen = listener
        .local_addr()
        .with_context(|| format!("reading the address bound for {}", config.listen))?;
    let mut observe = truc_hub::Observe {
        certificate_warning_days: config.observe.certificate_warning_days,
        ..truc_hub::Observe::default()
    };
    if let Some(address) = config.observe.metrics_listen {
        let metrics = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen for metrics on {address}"))?;
        observe.metrics_listener = Some(metrics);
    }
    if let Some(address) = config.observe.dashboard_listen {
        let token =
            truc_hub::dashboard::DashboardToken::load(&config.observe.dashboard_token_file)?;
        let dashboard = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen for the dashboard on {address}"))?;
        observe.dashboard = Some(truc_hub::dashboard::DashboardSetup {
            listener: dashboard,
            token,
        });
    }
    let dashboard_listen = config
        .observe
        .dashboard_listen
        .map_or_else(|| "off".to_owned(), |address| format!("http://{address}/"));
    let metrics_listen = config
        .observe
        .metrics_listen
        .map_or_else(|| "off".to_owned(), |address| address.to_string());
    tracing::info!(
        config = %config_path.display(),
        data_dir = %config.data_dir.display(),
        "hub configuration loaded"
    );
    // Log collectors read stderr line by line as JSON: the banner is for people only.
    if matches!(log_format, LogFormat::Human) {
        eprintln!(
            "truc hub listening on {listen} (mutual TLS); metrics: {metrics_listen}; dashboard: {dashboard_listen}; data in {}; Ctrl-C or SIGTERM stops it",
            config.data_dir.display()
        );
    }
    truc_hub::run_observed(listener, setup, observe, stop_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// Ctrl-C, or SIGTERM as service managers and orchestrators send it: both
/// stop the hub gracefully (health turns NOT_SERVING, streams end, the store
/// makes its last flush).
pub(crate) async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                let signal = tokio::select! {
                    _ = tokio::signal::ctrl_c() => "SIGINT (Ctrl-C)",
                    _ = terminate.recv() => "SIGTERM",
                };
                tracing::info!(signal, "stop signal received");
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot watch for SIGTERM; only Ctrl-C stops the hub")
            }
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!(signal = "SIGINT (Ctrl-C)", "stop signal received");
}

fn print_hub_config(config_path: PathBuf) -> anyhow::Result<ExitCode> {
    let config = truc_hub::HubConfig::read_with_env(&config_path, std::env::vars_os())?;
    print!("{}", config.to_commented_toml());
    // Printing works before the certificates exist; say what would still stop the hub.
    if let Err(error) = truc_hub::HubConfig::load(&config_path) {
        eprintln!("note: the hub would not start with this configuration: {error}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Connections the kernel completes for the hub before it accepts them.
/// tokio's `bind` asks for 1,024; after a restart every node comes back
/// within a second or two, and a full queue drops the connection, which
/// costs its node a SYN retransmit (1 s, then 3 s, 7 s). The kernel caps it
/// at `net.core.somaxconn` (4,096 by default).
const LISTEN_BACKLOG: u32 = 4096;

/// The hub's listener, as tokio's `bind` makes it (the address reusable at
/// once after a restart) but with [`LISTEN_BACKLOG`].
fn listen(address: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

async fn node(
    connection: Connection,
    inbox: PathBuf,
    window: u32,
    outbox: Option<PathBuf>,
    edxml: bool,
) -> anyhow::Result<ExitCode> {
    let agency = connection.agency_code()?;
    truc_node::agent::prepare_inbox(&inbox)
        .with_context(|| format!("cannot create {}", inbox.display()))?;
    if let Some(outbox) = &outbox {
        std::fs::create_dir_all(outbox)
            .with_context(|| format!("cannot create {}", outbox.display()))?;
    }
    let (events, mut receiver) = tokio::sync::mpsc::channel(64);
    let hubs = connection.hubs()?;
    let config = truc_node::NodeConfig {
        hubs: hubs.clone(),
        roots: connection.roots()?,
        credentials: connection.credentials()?,
        inbox: Some(inbox.clone()),
        window,
        events: Some(events),
        backoff_max: std::time::Duration::from_secs(10),
        edxml: edxml || outbox.is_some(),
        outbox: outbox.clone().map(truc_node::OutboxConfig::new),
    };
    eprintln!(
        "node {agency} → {hubs} writing into {}{}",
        inbox.display(),
        outbox
            .map(|outbox| format!(", sending what is dropped into {}", outbox.display()))
            .unwrap_or_default()
    );
    let printer = tokio::spawn(async move {
        while let Some(event) = receiver.recv().await {
            match event {
                truc_node::NodeEvent::Connected { hub } => eprintln!("connected to {hub}"),
                truc_node::NodeEvent::Delivered {
                    document_id,
                    recipient,
                    header,
                    ..
                } => {
                    // A relay's deliveries for its units say which unit they are for.
                    if recipient == agency.to_string() {
                        println!("received {document_id}: {}", header.subject)
                    } else {
                        println!("received {document_id} for {recipient}: {}", header.subject)
                    }
                }
                truc_node::NodeEvent::Notice(notice) => {
                    for entry in &notice.entries {
                        println!(
                            "status of {} at {}: {}{}",
                            notice.document_id,
                            notice.recipient,
                            status_name(entry.status),
                            if entry.reason.is_empty() {
                                String::new()
                            } else {
                                format!(" ({})", entry.reason)
                            }
                        );
                    }
                }
                truc_node::NodeEvent::Recalled {
                    document_id,
                    recipient,
                    marked,
                } => match marked {
                    Some(marked) => println!(
                        "recalled {document_id} for {recipient}: marked in {}",
                        marked.display()
                    ),
                    None => println!(
                        "recalled {document_id} for {recipient}: withdrawn before it reached the inbox"
                    ),
                },
                truc_node::NodeEvent::Refused {
                    document_id,
                    reason,
                } => eprintln!("REFUSED {document_id}: {reason}"),
                truc_node::NodeEvent::Outbox(truc_node::OutboxEvent::Sent {
                    entry,
                    document_id,
                    ..
                }) => println!("sent {entry}: {document_id}"),
                truc_node::NodeEvent::Outbox(truc_node::OutboxEvent::Failed {
                    entry,
                    refusal,
                    summary,
                }) => eprintln!("FAILED {entry}: {summary} (see {})", refusal.display()),
            }
        }
    });
    truc_node::run_node(config, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
    printer.abort();
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn today_in_vietnam() -> String {
    let today = time::OffsetDateTime::now_utc()
        .to_offset(time::UtcOffset::from_hms(7, 0, 0).expect("UTC+7 is valid"))
        .date();
    format!(
        "{:04}-{:02}-{:02}",
        today.year(),
        today.month() as u8,
        today.day()
    )
}

async fn send(args: SendArgs) -> anyhow::Result<ExitCode> {
    let from = args.connection.agency_code()?;
    if let Some(date) = &args.date {
        check_date("--date", date)?;
    }
    if !args.due.is_empty() {
        let due = check_date("--due", &args.due)?;
        let today = truc_domain::DocumentDate::parse_iso(&today_in_vietnam())?;
        if due < today {
            eprintln!(
                "warning: --due {} is already past (today is {} in Vietnam); the hub counts the \
                 document overdue at once",
                args.due,
                today.iso()
            );
        }
    }
    for path in &args.attach {
        if !path.is_file() {
            return Err(usage(format!(
                "--attach: {} is not a file (looked from {}); give the path of the file to attach",
                path.display(),
                std::env::current_dir()
                    .map(|dir| dir.display().to_string())
                    .unwrap_or_default()
            )));
        }
    }
    let client = args.connection.connect().await?;
    let draft = Draft {
        from: from.to_string(),
        to: args.to.clone(),
        number: args.number,
        notation: args.notation,
        place: args.place,
        date: args.date.unwrap_or_else(today_in_vietnam),
        subject: args.subject,
        due_date: args.due,
        response_for: args.response_for,
        sign_document: args.sign_document,
        business_type: match (&args.updates, &args.replaces) {
            (Some(_), _) => BusinessType::Update,
            (None, Some(_)) => BusinessType::Replace,
            (None, None) => BusinessType::New,
        },
        business_refs: args.updates.into_iter().chain(args.replaces).collect(),
        ..Draft::default()
    };
    let attachments = args.attach.into_iter().map(Attachment::file).collect();
    let response = client.send(&draft, attachments).await?;
    connect::say_which_hub(&client);
    print_send_response(&response, args.json);
    Ok(send_exit_code(&response))
}

/// 0 when every recipient was accepted; [`EXIT_SOME_RECIPIENTS_REFUSED`]
/// when some were refused, said on stderr too.
pub(crate) fn send_exit_code(response: &SendReceipt) -> ExitCode {
    let refused = response.recipients.iter().filter(|r| !r.accepted).count();
    if refused == 0 {
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "{refused} of {} recipients refused (marked ✗ above); exit code {EXIT_SOME_RECIPIENTS_REFUSED}",
        response.recipients.len()
    );
    ExitCode::from(EXIT_SOME_RECIPIENTS_REFUSED)
}

pub(crate) fn print_send_response(response: &SendReceipt, json: bool) {
    if json {
        let recipients: Vec<_> = response
            .recipients
            .iter()
            .map(|r| serde_json::json!({"organ_id": r.organ_id, "accepted": r.accepted, "reason": r.reason}))
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "document_id": response.document_id,
                "duplicate": response.duplicate,
                "recipients": recipients,
            })
        );
    } else {
        println!(
            "{} {}",
            if response.duplicate {
                "already accepted:"
            } else {
                "accepted:"
            },
            response.document_id
        );
        for recipient in &response.recipients {
            if recipient.accepted && recipient.reason.is_empty() {
                println!("  ✓ {}", recipient.organ_id);
            } else if recipient.accepted {
                println!("  ✓ {}  {}", recipient.organ_id, recipient.reason);
            } else {
                println!("  ✗ {}  {}", recipient.organ_id, recipient.reason);
            }
        }
    }
}

pub fn status_name(code: StatusCode) -> &'static str {
    code.name()
}

/// An instant for people: Vietnam time with its offset, `2026-11-22 09:30:00 +07:00`.
pub fn format_time(unix_ms: i64) -> String {
    truc_domain::vietnam_time(unix_ms)
}

/// A status move's reason after its line, ` «reason»`, or nothing if it has none.
pub fn reason_suffix(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(" «{reason}»")
    }
}

/// Columns that hold a [`format_time`].
pub const TIME_WIDTH: usize = 26;

async fn status(
    document_id: String,
    connection: Connection,
    set: Option<String>,
    for_unit: Option<String>,
    reason: String,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let target = match &set {
        Some(set) => Some(Status::from_name(set).ok_or_else(|| {
            usage(format!(
                "--set: '{set}' is not one of received, assigned, processing, completed, rejected, recall-agreed, recall-refused"
            ))
        })?),
        None => None,
    };
    let client = connection.connect().await?;
    if let Some(status) = target {
        let entry = client
            .move_status(&document_id, for_unit.as_deref(), status, &reason)
            .await?;
        println!(
            "{document_id}{}: now {} ({}, by {})",
            for_unit
                .map(|unit| format!(" at {unit}"))
                .unwrap_or_default(),
            status_name(entry.status),
            format_time(entry.at_unix_ms),
            entry.actor
        );
        return Ok(ExitCode::SUCCESS);
    }
    let response = client.get_status(&document_id).await?;
    if json {
        print_status_json(&response)?;
        return Ok(ExitCode::SUCCESS);
    }
    print_status_text(&response);
    Ok(ExitCode::SUCCESS)
}

/// A document's statuses as JSON, for scripts.
fn print_status_json(response: &DocumentStatus) -> anyhow::Result<()> {
    let recipients: Vec<_> = response
        .recipients
        .iter()
        .map(|r| {
            serde_json::json!({
                "recipient": r.recipient,
                "current": status_name(r.current),
                "history": r.history.iter().map(|e| serde_json::json!({
                    "status": status_name(e.status), "code": e.status.code(), "at_unix_ms": e.at_unix_ms,
                    "actor": e.actor, "reason": e.reason,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "document_id": response.document_id,
            "sender": response.sender,
            "subject": response.subject,
            "accepted_at_unix_ms": response.accepted_at_unix_ms,
            "recipients": recipients,
            "business_type": operator_cmd::business_name(response.business_type),
            "chain": response.chain.iter().map(|l| serde_json::json!({
                "earlier": l.earlier, "later": l.later,
                "business_type": operator_cmd::business_name(l.business_type),
            })).collect::<Vec<_>>(),
            "refused": response.refused.iter().map(|r| serde_json::json!({"organ_id": r.organ_id, "reason": r.reason})).collect::<Vec<_>>(),
            "archive": response.archive,
            "archive_unreadable": response.archive_unreadable,
        }))?
    );
    Ok(())
}

/// A document's statuses for people: who sent it, where it is archived,
/// each recipient's history, the refused recipients and its chain.
fn print_status_text(response: &DocumentStatus) {
    println!("{}", response.document_id);
    println!(
        "  from {}  accepted {}",
        response.sender,
        format_time(response.accepted_at_unix_ms)
    );
    println!("  {}", response.subject);
    if !response.archive.is_empty() {
        println!(
            "  archived in {}{}",
            response.archive,
            if response.archive_unreadable {
                " (the file is not at the hub: statuses are in the archive, \
                 `truc archive show FILE ID` prints them)"
            } else {
                " (every delivery was final; read back from the archive)"
            }
        );
    }
    println!("  {:<15} {:<16} history", "recipient", "now");
    for recipient in &response.recipients {
        println!(
            "  {:<15} {:<16} {}",
            recipient.recipient,
            status_name(recipient.current),
            recipient_history(recipient)
        );
    }
    for refused in &response.refused {
        println!(
            "  {:<15} {:<16} {}",
            refused.organ_id, "refused", refused.reason
        );
    }
    if !response.chain.is_empty() {
        print_chain(response);
    }
}

/// One recipient's history on one line, with its dead letter if its
/// delivery expired unacknowledged.
fn recipient_history(recipient: &RecipientStatus) -> String {
    let history: Vec<String> = recipient
        .history
        .iter()
        .map(|e| {
            format!(
                "{:02} {} {} by {}{}",
                e.status.code(),
                status_name(e.status),
                format_time(e.at_unix_ms),
                e.actor,
                reason_suffix(&e.reason)
            )
        })
        .collect();
    if let Some(letter) = &recipient.dead_letter {
        let mut text = history.join("; ");
        if !text.is_empty() {
            text.push_str("; ");
        }
        text.push_str(&format!(
            "expired unacknowledged {}: {} (dead letter {})",
            format_time(letter.expired_at_unix_ms),
            letter.reason,
            letter.state
        ));
        text
    } else if history.is_empty() {
        "(queued, not yet delivered)".to_owned()
    } else {
        history.join("; ")
    }
}

/// The recalls, updates and replacements linking the document to others.
fn print_chain(response: &DocumentStatus) {
    println!("  chain:");
    for link in &response.chain {
        let verb = match link.business_type {
            BusinessType::Revoke => "recalls",
            BusinessType::Update => "updates",
            _ => "replaces",
        };
        let mark = |id: &str| {
            if id == response.document_id {
                " (this)"
            } else {
                ""
            }
        };
        println!(
            "    {}{} {verb} {}{}",
            link.later,
            mark(&link.later),
            link.earlier,
            mark(&link.earlier)
        );
    }
}

async fn counts(
    connection: Connection,
    from: String,
    to: String,
    json: bool,
) -> anyhow::Result<ExitCode> {
    for (flag, date) in [("--from", &from), ("--to", &to)] {
        if !date.is_empty() {
            check_date(flag, date)?;
        }
    }
    let client = connection.connect().await?;
    let response = client.counts(&from, &to).await?;
    if json {
        let agencies: Vec<_> = response
            .agencies
            .iter()
            .map(
                |a| serde_json::json!({"code": a.organ_id, "sent": a.sent, "received": a.received}),
            )
            .collect();
        println!(
            "{}",
            serde_json::json!({"totals": {"sent": response.total_sent, "received": response.total_received}, "agencies": agencies})
        );
    } else {
        println!("{:<15} {:>10} {:>10}", "agency", "sent", "received");
        for agency in &response.agencies {
            println!(
                "{:<15} {:>10} {:>10}",
                agency.organ_id, agency.sent, agency.received
            );
        }
        println!(
            "{:<15} {:>10} {:>10}",
            "total", response.total_sent, response.total_received
        );
        println!(
            "received: deliveries that arrived; those still queued count once they arrive \
             (`truc documents --recipient <code> --queued` lists them)"
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    /// clap checks argument names only when a command is parsed; this
    /// checks every subcommand at once (two flags with one id panic).
    #[test]
    fn every_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> super::Command {
        super::Cli::try_parse_from(std::iter::once("truc").chain(args.iter().copied()))
            .unwrap_or_else(|error| panic!("{args:?}: {error}"))
            .command
    }

    fn addresses(text: &[&str]) -> Vec<std::net::SocketAddr> {
        text.iter()
            .map(|address| address.parse().unwrap())
            .collect()
    }

    #[test]
    fn every_hub_flag_takes_one_address_several_flags_or_a_comma_list() {
        let hubs = |args: &[&str]| match parse(args) {
            super::Command::Counts { connection, .. } => connection.hub,
            _ => unreachable!("counts parses as counts"),
        };
        let one = hubs(&["counts", "--hub", "10.0.0.1:7443"]);
        assert_eq!(one, addresses(&["10.0.0.1:7443"]));
        let several = hubs(&[
            "counts",
            "--hub",
            "10.0.0.1:7443,10.0.0.2:7443",
            "--hub",
            "10.0.0.3:7443",
        ]);
        assert_eq!(
            several,
            addresses(&["10.0.0.1:7443", "10.0.0.2:7443", "10.0.0.3:7443"])
        );
        if std::env::var_os("TRUC_HUB").is_none() {
            assert_eq!(hubs(&["counts"]), addresses(&["127.0.0.1:7443"]));
        }
        assert!(
            super::Cli::try_parse_from(["truc", "counts", "--hub", "10.0.0.1:7443,nowhere"])
                .is_err()
        );

        match parse(&[
            "replay",
            "2019",
            "--hub",
            "a.example:7443,b.example:7443",
            "--certs",
            "c",
        ]) {
            super::Command::Replay(args) => {
                assert_eq!(args.hub, ["a.example:7443", "b.example:7443"])
            }
            _ => unreachable!("replay parses as replay"),
        }
        match parse(&[
            "report",
            "--hub",
            "a.example:7443",
            "--hub",
            "b.example:7443",
            "--certs",
            "c",
        ]) {
            super::Command::Report(args) => {
                assert_eq!(args.hub, ["a.example:7443", "b.example:7443"])
            }
            _ => unreachable!("report parses as report"),
        }
        match parse(&[
            "bench",
            "--hub",
            "10.0.0.1:7443,10.0.0.2:7443",
            "--certs",
            "c",
        ]) {
            super::Command::Bench(args) => {
                assert_eq!(args.hub, addresses(&["10.0.0.1:7443", "10.0.0.2:7443"]))
            }
            _ => unreachable!("bench parses as bench"),
        }
        match parse(&[
            "node",
            "--as",
            "000.00.00.H41",
            "--inbox",
            "i",
            "--hub",
            "10.0.0.1:1,10.0.0.2:2",
        ]) {
            super::Command::Node { connection, .. } => {
                let hubs = connection.hubs().unwrap();
                assert_eq!(hubs.to_string(), "10.0.0.1:1,10.0.0.2:2");
            }
            _ => unreachable!("node parses as node"),
        }
    }
}
