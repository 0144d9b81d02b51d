//! `truc bench`: the load generator against a hub in its own process (this
//! executable started as `truc hub`, or one already running), optionally
//! beside NATS JetStream. The logic lives in `truc-bench`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use truc_bench::{
    bench_agencies, BenchOptions, FanoutMix, HubExtras, HubTarget, NatsOptions, RateSpec, Scenario,
    ScenarioKind, SpawnedHub,
};
use truc_domain::{ByteSize, Limits};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Which scenarios: intake, fanout, moves, all (those three), or attachments (one phase per
    /// size of --attachment-sizes, beside the disk's own write + fdatasync bandwidth), or nodes
    /// (--nodes nodes connected at once: the hub's memory per idle node, deliveries among them,
    /// and a kill -9 and restart of the hub under them).
    #[arg(long, default_value = "all", value_parser = parse_scenario)]
    scenario: Scenario,
    /// Seconds of each timed phase [default: 30; 10 per size with --scenario attachments].
    #[arg(long)]
    duration: Option<u64>,
    /// Sends, or status-move chains, in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Bytes of the one attachment each document carries.
    #[arg(long, default_value_t = 2048)]
    attachment_bytes: usize,
    /// With --scenario attachments: the sizes, one timed phase each, in order [default:
    /// 1KiB,64KiB,1MiB,16MiB]. A spawned hub whose limits.document_bytes_max (64 MiB) is
    /// below the largest gets that size as its limit for the run; a hub already running
    /// refuses larger documents, and the table says so with its answer.
    #[arg(long, value_name = "SIZES", value_delimiter = ',', value_parser = parse_size)]
    attachment_sizes: Vec<u64>,
    /// Mean recipients per document (3.63: a fixed mix of 3 and 4).
    #[arg(long, default_value = "3.63", value_parser = parse_fanout)]
    recipients: FanoutMix,
    /// Documents per second to pace sends at, or `half` for a second run at
    /// half the rate the unpaced run reached. Unpaced when absent.
    #[arg(long, value_parser = parse_rate)]
    rate: Option<RateSpec>,
    /// Agencies per scenario; each sends and receives.
    #[arg(long, default_value_t = 8)]
    agencies: usize,
    /// With --scenario nodes: how many nodes, each its own agency and connection.
    #[arg(long, default_value_t = truc_bench::many_nodes::NODES_DEFAULT)]
    nodes: usize,
    /// Unacknowledged items each node's delivery stream accepts.
    #[arg(long, default_value_t = 256)]
    window: u32,
    /// Envelopes to pre-sign per send phase (default: enough for 10,000 documents/s).
    #[arg(long)]
    presign: Option<usize>,
    /// Documents to deliver before the timed status moves (default: enough
    /// for 100,000 moves/s in batches, 4,000 moves/s one call per move).
    #[arg(long)]
    moves_documents: Option<usize>,
    /// Status moves per call: 1 sends each as its own MoveStatus call; more (a
    /// multiple of 4) sends the whole paths of deliveries in one MoveStatuses call.
    #[arg(long, default_value_t = truc_bench::MOVES_PER_CALL_DEFAULT)]
    moves_per_call: usize,
    /// Recipients verify every delivery's certificate and signature, as a node does.
    #[arg(long)]
    verify_deliveries: bool,
    /// Documents also carry the document's own signature.
    #[arg(long)]
    sign_documents: bool,
    /// Seconds to wait for the deliveries of what was sent.
    #[arg(long, default_value_t = 120)]
    drain_timeout: u64,
    /// Also write every figure to this JSON file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Drive a hub that is already running at this address instead of starting one.
    /// Several hubs of one store: repeat the flag or give a comma list, tried in order.
    #[arg(long, value_name = "ADDR", value_delimiter = ',', requires = "certs")]
    pub(crate) hub: Vec<SocketAddr>,
    /// With --hub: the PKI folder holding the bench agencies' credentials.
    #[arg(long, requires = "hub")]
    certs: Option<PathBuf>,
    /// With --hub: the operator whose certificate reads the hub's counts.
    #[arg(long, default_value = truc_bench::DEFAULT_OPERATOR)]
    operator: String,
    /// With --hub: its process id, for its peak memory.
    #[arg(long, requires = "hub")]
    hub_pid: Option<u32>,
    /// With --hub: its data directory, for bytes on disk per document.
    #[arg(long, requires = "hub")]
    data_dir: Option<PathBuf>,
    /// Start the hub in this (empty) folder and keep it afterwards.
    #[arg(long, conflicts_with = "hub")]
    keep: Option<PathBuf>,
    /// Print the bench agencies' directory file (for a hub started elsewhere) and exit.
    #[arg(long)]
    print_directory: bool,
    /// Run the fan-out through NATS JetStream too (page cache and synchronous modes).
    #[arg(long)]
    compare_nats: bool,
    /// After the embedded hub, run the same scenarios against two hubs on a PostgreSQL
    /// database kept by a three-member Patroni cluster in strict synchronous mode (installed
    /// from Debian's packages if missing and started on loopback ports), and print both.
    #[arg(long, conflicts_with = "hub")]
    cluster: bool,
    /// The nats-server executable.
    #[arg(long, default_value = "nats-server")]
    nats_server: PathBuf,
    /// A folder on a file system mounted with -o sync, for the synchronous
    /// mode of a nats-server without sync_interval (bench/compare-nats.sh makes one).
    #[arg(long)]
    nats_sync_dir: Option<PathBuf>,
    /// A year in --duration: one paced fan-out (--rate) while the hub's clock passes a year,
    /// every delivery completed by its recipient and documents leaving for archives after
    /// --retention-days; a table of the hub's memory, live store and archives every
    /// --sample-seconds, and every archive checked at the end.
    #[arg(long, conflicts_with_all = ["hub", "compare_nats", "scenario"], requires = "rate")]
    year: bool,
    /// With --year: days (by the hub's clock) before a final document leaves the live store.
    #[arg(long, default_value_t = 30)]
    retention_days: u64,
    /// With --year: seconds between samples.
    #[arg(long, default_value_t = 60)]
    sample_seconds: u64,
    /// With --year: a top-level setting of the hub it starts, as in its config file
    /// (`--hub-setting 'cache_mib = 16'`); repeat for several.
    #[arg(long, value_name = "SETTING", requires = "year")]
    hub_setting: Vec<String>,
}

fn parse_scenario(text: &str) -> Result<Scenario, String> {
    text.parse()
}

fn parse_fanout(text: &str) -> Result<FanoutMix, String> {
    text.parse()
}

fn parse_rate(text: &str) -> Result<RateSpec, String> {
    text.parse()
}

fn parse_size(text: &str) -> Result<u64, String> {
    text.parse::<ByteSize>()
        .map(ByteSize::bytes)
        .map_err(|error| error.to_string())
}

/// Seconds per phase unless --duration says: each size of the attachment
/// scenario writes gigabytes at disk speed, so its phases are shorter.
const DURATION_DEFAULT_S: u64 = 30;
const ATTACHMENT_DURATION_DEFAULT_S: u64 = 10;

/// The environment variable that sets a hub's `limits.document_bytes_max`,
/// which a spawned hub inherits.
const DOCUMENT_LIMIT_VARIABLE: &str = "TRUC_HUB__LIMITS__DOCUMENT_BYTES_MAX";

/// The hub limit the attachment scenario needs raised on a hub it spawns,
/// as config to append, and the sentence that says so.
fn attachment_limits(options: &BenchOptions) -> Option<(String, String)> {
    let largest = options.attachment_sizes.iter().copied().max()?;
    let default = Limits::default().document_bytes_max;
    (options.scenario == Scenario::Attachments && largest > default).then(|| {
        (
            format!("\n[limits]\ndocument_bytes_max = {largest}\n"),
            format!(
                "the spawned hub's limits.document_bytes_max was set to {} for this run (its \
                 default, {}, is below the largest size)",
                ByteSize(largest),
                ByteSize(default)
            ),
        )
    })
}

pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if args.print_directory {
        print!("{}", truc_bench::directory_toml(args.agencies));
        return Ok(ExitCode::SUCCESS);
    }
    if args.year {
        return year(args).await;
    }
    if args.scenario == Scenario::Nodes {
        return many_nodes(args).await;
    }
    if !args.attachment_sizes.is_empty() && args.scenario != Scenario::Attachments {
        anyhow::bail!(
            "--attachment-sizes: only --scenario attachments sends attachments of several sizes"
        );
    }
    let attachments = args.scenario == Scenario::Attachments;
    if attachments && args.cluster {
        anyhow::bail!(
            "--cluster: the attachment scenario sets the embedded store beside its own disk; \
             run it without --cluster"
        );
    }
    let options = BenchOptions {
        scenario: args.scenario,
        duration: Duration::from_secs(args.duration.unwrap_or(if attachments {
            ATTACHMENT_DURATION_DEFAULT_S
        } else {
            DURATION_DEFAULT_S
        })),
        concurrency: args.concurrency,
        attachment_bytes: args.attachment_bytes,
        attachment_sizes: if args.attachment_sizes.is_empty() {
            truc_bench::ATTACHMENT_SIZES_DEFAULT.to_vec()
        } else {
            args.attachment_sizes.clone()
        },
        fanout: args.recipients,
        rate: args.rate.unwrap_or(RateSpec::Unpaced),
        agencies: args.agencies,
        window: args.window,
        presign: args.presign,
        moves_documents: args.moves_documents,
        moves_per_call: args.moves_per_call,
        verify_deliveries: args.verify_deliveries,
        sign_documents: args.sign_documents,
        drain_timeout: Duration::from_secs(args.drain_timeout),
        nats: args.compare_nats.then(|| NatsOptions {
            program: args.nats_server.clone(),
            sync_dir: args.nats_sync_dir.clone(),
        }),
    };
    let problems = options.problems();
    if !problems.is_empty() {
        anyhow::bail!("{}", problems.join("; "));
    }
    let spawned;
    let limits = attachment_limits(&options);
    let target = match (args.hub.is_empty(), &args.certs) {
        (false, Some(certs)) => HubTarget {
            hubs: truc_node::HubAddresses::new(args.hub.iter().copied()).context("--hub")?,
            pki: truc_pki::PkiPaths::new(certs),
            operator: args.operator.clone(),
            pid: args.hub_pid,
            data_dir: args.data_dir.clone(),
            spawned: false,
            durability: None,
        },
        _ => {
            let program = this_program()?;
            let agencies: Vec<_> = ScenarioKind::ALL
                .into_iter()
                .flat_map(|kind| bench_agencies(kind, args.agencies))
                .collect();
            progress("making a development PKI and starting `truc hub` as its own process");
            let extras = HubExtras {
                config: limits
                    .as_ref()
                    .map(|(config, _)| config.clone())
                    .unwrap_or_default(),
                ..HubExtras::default()
            };
            if let Some((_, said)) = &limits {
                progress(said);
            }
            spawned =
                SpawnedHub::start_with(&program, &agencies, args.keep.as_deref(), &extras).await?;
            progress(&format!(
                "hub pid {} on {} (log {})",
                spawned.target.pid.unwrap_or(0),
                spawned.target.hubs,
                spawned.log_path.display()
            ));
            spawned.target.clone()
        }
    };
    let mut report = truc_bench::run(&options, &target, &progress).await?;
    report.command = command_line();
    if let Some(figures) = report.attachments.as_mut() {
        let from_environment = std::env::var(DOCUMENT_LIMIT_VARIABLE).ok();
        figures.hub_limits = Some(match (&limits, target.spawned, from_environment) {
            // The hub reads its environment after its file: the variable wins.
            (_, true, Some(value)) => format!(
                "the spawned hub's limits.document_bytes_max is {value} bytes, from \
                 {DOCUMENT_LIMIT_VARIABLE} in the environment"
            ),
            (Some((_, said)), true, None) => said.clone(),
            (_, true, None) => format!(
                "the spawned hub's own: limits.document_bytes_max {}",
                ByteSize(Limits::default().document_bytes_max)
            ),
            (_, false, _) => "the running hub's own (a size above its \
                           limits.document_bytes_max is refused, and shown so)"
                .to_owned(),
        });
    }
    print!("{}", report.table());
    if !args.cluster {
        if let Some(path) = &args.json {
            std::fs::write(path, serde_json::to_vec_pretty(&report)?)
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!("bench: figures written to {}", path.display());
        }
        return Ok(if report.failures.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let mut cluster_report = run_on_cluster(&args, &options, &progress).await?;
    cluster_report.command = report.command.clone();
    println!("\n— the same on two hubs over a three-member Patroni cluster —");
    print!("{}", cluster_report.table());
    print!("{}", side_by_side(&report, &cluster_report));
    if let Some(path) = &args.json {
        let both = serde_json::json!({"embedded": report, "cluster": cluster_report});
        std::fs::write(path, serde_json::to_vec_pretty(&both)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("bench: figures written to {}", path.display());
    }
    Ok(
        if report.failures.is_empty() && cluster_report.failures.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        },
    )
}

/// Hubs of the cluster run.
const CLUSTER_HUBS: usize = 2;

/// Starts a Patroni cluster and two hubs on it, and runs the bench there.
async fn run_on_cluster(
    args: &BenchArgs,
    options: &BenchOptions,
    progress: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<truc_bench::BenchReport> {
    progress("installing (if missing) and starting PostgreSQL, Patroni and etcd, 3 members each");
    let folder = tempfile::Builder::new()
        .prefix("truc-bench-cluster-")
        .tempdir()?;
    let cluster_dir = folder.path().join("cluster");
    let cluster = {
        let (answer, answered) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let _ = answer.send(truc_cluster::ensure_packages().and_then(|()| {
                truc_cluster::Cluster::start(
                    &cluster_dir,
                    truc_cluster::ClusterOptions {
                        tls: true,
                        ..truc_cluster::ClusterOptions::default()
                    },
                )
            }));
        });
        answered.await??
    };
    let store = truc_bench::SpawnStore::Postgres {
        url: format!("{}&sslmode=require", cluster.url()),
        ca_cert: cluster.ca_certificate_path().map(std::path::Path::to_owned),
    };
    let program = this_program()?;
    let agencies: Vec<_> = ScenarioKind::ALL
        .into_iter()
        .flat_map(|kind| bench_agencies(kind, args.agencies))
        .collect();
    let hubs = truc_bench::SpawnedHubs::start_on_postgres(
        &program,
        &agencies,
        Some(&folder.path().join("hubs")),
        CLUSTER_HUBS,
        &store,
    )
    .await?;
    progress(&format!(
        "{CLUSTER_HUBS} hubs on the cluster at {}; agencies start on them in turn",
        hubs.target.hubs
    ));
    let report = truc_bench::run(options, &hubs.target, progress).await;
    drop(hubs);
    // The cluster's processes end on a thread of their own (its tooling is synchronous).
    let _ = std::thread::spawn(move || drop(cluster)).join();
    Ok(report?)
}

/// Intake, deliveries and latencies of both runs, one line each.
fn side_by_side(embedded: &truc_bench::BenchReport, cluster: &truc_bench::BenchReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nside by side            embedded (1 hub)   cluster (2 hubs, sync standby)"
    );
    let intake = |report: &truc_bench::BenchReport, index: usize| {
        report.intake.get(index).map(|figures| {
            format!(
                "{:>8.0}/s p50 {:>6.1} ms p99 {:>6.1} ms",
                figures.documents_per_second,
                figures.send_to_ack.p50_ms,
                figures.send_to_ack.p99_ms
            )
        })
    };
    // Both runs pace alike, so either says whether a phase was paced.
    let paced = |phases: [Option<&truc_bench::SendFigures>; 2]| {
        if phases
            .into_iter()
            .flatten()
            .any(|phase| phase.rate.is_some())
        {
            "paced  "
        } else {
            "unpaced"
        }
    };
    for index in 0..embedded.intake.len().max(cluster.intake.len()) {
        let _ = writeln!(
            out,
            "intake {}            {}   {}",
            paced([embedded.intake.get(index), cluster.intake.get(index)]),
            intake(embedded, index).unwrap_or_else(|| "-".into()),
            intake(cluster, index).unwrap_or_else(|| "-".into())
        );
    }
    let fanout = |report: &truc_bench::BenchReport, index: usize| {
        report.fanout.get(index).map(|figures| {
            format!(
                "{:>8.0} deliveries/s p99 {:>6.1} ms",
                figures.deliveries_per_second, figures.send_to_delivery.p99_ms
            )
        })
    };
    for index in 0..embedded.fanout.len().max(cluster.fanout.len()) {
        let _ = writeln!(
            out,
            "fan-out {}           {}   {}",
            paced([
                embedded.fanout.get(index).map(|figures| &figures.send),
                cluster.fanout.get(index).map(|figures| &figures.send),
            ]),
            fanout(embedded, index).unwrap_or_else(|| "-".into()),
            fanout(cluster, index).unwrap_or_else(|| "-".into())
        );
    }
    out
}

/// `truc bench --year`: the year in an hour (`truc_bench::year`).
async fn year(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let Some(RateSpec::PerSecond(rate)) = args.rate else {
        anyhow::bail!("--year needs a rate in documents per second (--rate 300)");
    };
    let options = truc_bench::year::YearOptions {
        duration: Duration::from_secs(args.duration.unwrap_or(DURATION_DEFAULT_S)),
        rate,
        agencies: args.agencies,
        fanout: args.recipients,
        attachment_bytes: args.attachment_bytes,
        retention_days: args.retention_days,
        sample_every: Duration::from_secs(args.sample_seconds.max(1)),
        window: args.window,
        keep: args.keep.clone(),
        hub_settings: args.hub_setting.clone(),
    };
    let program = this_program()?;
    let mut report = truc_bench::year::run_year(&program, &options, &progress).await?;
    report.command = command_line();
    finish(
        &report,
        report.table(),
        report.failures.is_empty(),
        args.json.as_deref(),
    )
}

/// `truc bench --scenario nodes`: many nodes on one hub (`truc_bench::many_nodes`).
async fn many_nodes(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if !args.hub.is_empty() || args.cluster || args.compare_nats {
        anyhow::bail!(
            "--scenario nodes starts its own hub (it kills and restarts it): \
             without --hub, --cluster or --compare-nats"
        );
    }
    let rate = match args.rate {
        None => truc_bench::many_nodes::NODES_RATE_DEFAULT,
        Some(RateSpec::PerSecond(rate)) => rate,
        Some(_) => anyhow::bail!("--scenario nodes sends at a fixed rate: --rate 200"),
    };
    let options = truc_bench::many_nodes::ManyNodesOptions {
        nodes: args.nodes,
        duration: Duration::from_secs(args.duration.unwrap_or(DURATION_DEFAULT_S)),
        rate,
        attachment_bytes: args.attachment_bytes,
        window: args.window,
        keep: args.keep.clone(),
    };
    let program = this_program()?;
    let mut report = truc_bench::many_nodes::run_many_nodes(&program, &options, &progress).await?;
    report.command = command_line();
    finish(
        &report,
        report.table(),
        report.failures.is_empty(),
        args.json.as_deref(),
    )
}

/// A scenario's progress line, on standard error beside the table.
fn progress(line: &str) {
    eprintln!("bench: {line}");
}

/// This executable, which the scenarios start as `truc hub`.
fn this_program() -> anyhow::Result<std::path::PathBuf> {
    std::env::current_exe().context("finding this executable to start `truc hub` from")
}

/// The command as typed, for the report.
fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

/// Prints a run's table, writes its figures as JSON when asked, and fails
/// the command when the run had failures.
fn finish(
    report: &impl serde::Serialize,
    table: String,
    clean: bool,
    json: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    print!("{table}");
    if let Some(path) = json {
        std::fs::write(path, serde_json::to_vec_pretty(report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("bench: figures written to {}", path.display());
    }
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
