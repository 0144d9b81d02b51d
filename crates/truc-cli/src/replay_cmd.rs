//! `truc replay`: replays a published period through a hub (embedded by default) and prints
//! the hub's own report beside the published figures.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use truc_node::HubAddresses;
use truc_pki::PkiPaths;
use truc_replay::attachments::AttachmentSizes;
use truc_replay::driver::{self, EmbeddedHub, Pace, ReplayOptions, ReplayOutcome, Target};
use truc_replay::plan::Plan;
use truc_replay::progress::ProgressMode;
use truc_replay::published::{parse_scale, Dataset, Expected};
use truc_replay::report::{FigureSource, Report};
use truc_replay::source::{ReplayRecord, REPLAY_RECORD_FILE};

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  truc replay 2019                      embedded hub, full period, report beside seed 002
  truc replay 2021 --scale 1/100 --json report.json --csv agencies.csv
  truc replay 2021 --scale 1/100 --data-dir data/replay-2021
                                        keep the hub's data; `truc report --data-dir data/replay-2021`
                                        reads it again with the same dataset and scale
  truc replay 2021 --scale 1/100 --dashboard 127.0.0.1:8080 --hold
                                        watch it on the operator dashboard, kept up after the report
  truc replay 2021 --retention-days 30  the hub's clock follows the documents' dates, and those
                                        whose deliveries are all final leave for monthly archives
                                        30 days after acceptance; the report reads what stays
  truc replay 2021 --scale 1/100 --attachment-bytes pdf
                                        documents of office-PDF sizes (an assumed distribution,
                                        see --attachment-bytes) instead of 320 B each

Against a hub running elsewhere (every unit needs a certificate):
  truc replay 2019 --print-directory config/replay-2019.toml
  truc certs init --dir certs/replay-2019 --directory config/replay-2019.toml
  (point the hub's `directory` and `tls` at those files, start `truc hub --config ...`)
  truc replay 2019 --hub 127.0.0.1:7443 --certs certs/replay-2019 --rate 500
  truc replay 2019 --hub 10.0.0.1:7443,10.0.0.2:7443 --certs certs/replay-2019
                                        two hubs of one store: each unit moves on when one stops
  (a send the hub's [quotas] refuse waits as its retry-after says, at most 30 s)

Exit code 0 when every published (or scaled) figure is reproduced, 1 otherwise.")]
pub struct ReplayArgs {
    /// The dataset: 2019, 2021 or 2022.
    pub dataset: Dataset,
    /// Replay a fraction N/D of every published count (e.g. 1/100); the report then compares
    /// with the scaled targets.
    #[arg(long, value_parser = parse_scale, value_name = "N/D")]
    pub scale: Option<(u64, u64)>,
    /// Seed of the plan: which documents go where and when (the counts never change).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Drive a hub running elsewhere instead of an embedded one (needs --certs).
    /// Several hubs of one store: repeat the flag or give a comma list; each
    /// unit's calls go to the first that answers and move on when it stops.
    #[arg(long, value_name = "ADDR", value_delimiter = ',', requires = "certs")]
    pub hub: Vec<String>,
    /// Certificate folder with credentials for every unit and the operator (see
    /// --print-directory and `truc certs init`).
    #[arg(long, value_name = "DIR", requires = "hub")]
    pub certs: Option<PathBuf>,
    /// Operator whose certificate reads the report (with --hub).
    #[arg(long, default_value = driver::DEFAULT_OPERATOR)]
    pub operator: String,
    /// Send at most this many documents a second.
    #[arg(long, value_name = "DOCS_PER_S", conflicts_with = "speedup")]
    pub rate: Option<f64>,
    /// Compress historical time by this factor (e.g. 86400: a day a second).
    #[arg(long, value_name = "FACTOR")]
    pub speedup: Option<f64>,
    /// Documents in flight at once.
    #[arg(long, default_value_t = ReplayOptions::default().send_concurrency)]
    pub concurrency: usize,
    /// Deliveries being verified, acknowledged and moved at once, over all nodes.
    #[arg(long, default_value_t = ReplayOptions::default().receive_concurrency)]
    pub receive_concurrency: usize,
    /// Write the report as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the per-agency rows as CSV.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Keep the embedded hub's data in this (empty) folder, for `truc report --data-dir`, with
    /// the dataset and scale in replay.json beside it. Without it the data is in a temporary
    /// folder removed at the end.
    #[arg(long, value_name = "DIR", conflicts_with = "hub")]
    pub data_dir: Option<PathBuf>,
    /// Write the directory TOML of the dataset's units (for a hub started elsewhere) and exit.
    #[arg(long, value_name = "FILE")]
    pub print_directory: Option<PathBuf>,
    /// Progress lines instead of a bar, even on a terminal.
    #[arg(long)]
    pub progress_lines: bool,
    /// Serve the embedded hub's operator dashboard on this loopback address; the token is
    /// written into the replay's temporary folder (the path is printed).
    #[arg(long, value_name = "ADDR", conflicts_with = "hub")]
    pub dashboard: Option<SocketAddr>,
    /// After the report, keep the embedded hub (and its dashboard) up until Ctrl-C or SIGTERM.
    #[arg(long, conflicts_with = "hub")]
    pub hold: bool,
    /// Run the embedded hub with retention: its clock follows the documents' historical
    /// times, and documents whose every delivery is final leave for archive files this many
    /// days after acceptance (written beside the data folder).
    #[arg(long, value_name = "DAYS", conflicts_with = "hub", value_parser = clap::value_parser!(u64).range(1..))]
    pub retention_days: Option<u64>,
    /// The size of each document's one attachment: one size for all (320, 64KiB, 1MiB; at
    /// most the hub's default limits.document_bytes_max, 64 MiB) or `pdf`. The default, 320 B,
    /// keeps a replay about the axis rather than the disk. `pdf` is an ASSUMED distribution of
    /// office PDF sizes, not a measured one (the published reports count documents, never
    /// their bytes): at least 16 KiB, 25 % ≤ 48 KiB, median 100 KiB, 75 % ≤ 320 KiB, 90 % ≤
    /// 1 MiB, 95 % ≤ 2 MiB, 99 % ≤ 8 MiB, at most 16 MiB (mean about 584 KiB), sizes spread
    /// evenly between those points and drawn per document from the plan's seed, so a replay
    /// sends the same bytes every time. Documents, deliveries and statuses do not change.
    #[arg(long, value_name = "SIZE|pdf", default_value = "320", value_parser = parse_attachment_sizes)]
    pub attachment_bytes: AttachmentSizes,
}

fn parse_attachment_sizes(text: &str) -> Result<AttachmentSizes, String> {
    text.parse()
}

pub async fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let plan = args
        .dataset
        .plan(args.seed, args.scale)
        .with_context(|| format!("building the {} plan", args.dataset))?;
    if let Some(path) = &args.print_directory {
        std::fs::write(path, driver::directory_toml(&plan)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!(
            "wrote the {} units of the {} replay to {}",
            plan.units.len(),
            plan.dataset,
            path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let expected = Expected::for_plan(&plan, args.scale)?;
    announce_plan(&plan, &expected, &args, started);
    let options = replay_options(&args)?;

    let plan = Arc::new(plan);
    // With --hold, the embedded hub (and the folder of its dashboard token) outlive the report.
    let mut held = None;
    let (outcome, source, embedded) = match (args.hub.is_empty(), &args.certs) {
        (false, Some(certs)) => {
            let target = Target {
                hubs: resolve_all(&args.hub)?,
                pki: PkiPaths::new(certs),
                operator: args.operator.clone(),
                embedded: false,
            };
            let outcome = driver::replay(plan.clone(), &target, options).await?;
            let source = FigureSource::Hub {
                address: target.hubs.to_string(),
                embedded: false,
            };
            (outcome, source, None)
        }
        _ => {
            let (outcome, source, data_dir, hold) = replay_embedded(&plan, &args, options).await?;
            held = hold;
            (outcome, source, Some(data_dir))
        }
    };
    eprintln!("{}", outcome.summary());

    let mut report = Report::build(
        &outcome.figures,
        Some(&expected),
        (Some(plan.period.0), Some(plan.period.1)),
        source,
    );
    report.attachments = Some(outcome.attachments.clone());
    print!("{}", report.render_text());
    write_outputs(&report, args.json.as_ref(), args.csv.as_ref())?;
    if let (Some(data_dir), Some(_)) = (embedded, &args.data_dir) {
        println!(
            "the hub's data is kept in {}: `truc report --data-dir {}` reads it again and compares \
             it with the same targets ({REPLAY_RECORD_FILE} says which)",
            data_dir.display(),
            data_dir.display(),
        );
    }
    if let Some((hub, _token_dir)) = held {
        eprintln!("holding the embedded hub and its dashboard; Ctrl-C or SIGTERM stops it");
        crate::stop_signal().await;
        hub.stop().await?;
    }
    Ok(if report.matches_published() == Some(true) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The embedded hub kept up after the report by `--hold`, with the folder of
/// its dashboard token.
type Held = (EmbeddedHub, Option<tempfile::TempDir>);

/// Says what is about to be replayed: the plan, its size and the attachments' sizes.
fn announce_plan(plan: &Plan, expected: &Expected, args: &ReplayArgs, started: std::time::Instant) {
    let (documents, deliveries) = plan.totals();
    eprintln!(
        "plan {}{}: {} units, {documents} documents, {deliveries} deliveries, seed {} (built in {:.1} s); \
         attachments {}",
        plan.dataset,
        if expected.scale.is_some() {
            format!(" {}", expected.scale_label())
        } else {
            String::new()
        },
        plan.units.len(),
        plan.seed,
        started.elapsed().as_secs_f64(),
        if args.attachment_bytes == AttachmentSizes::Pdf {
            "of office-PDF sizes (assumed distribution `pdf`)".to_owned()
        } else {
            format!("of {} each", args.attachment_bytes)
        }
    );
}

/// The driver's options from the command line: concurrency, pace, progress
/// and attachment sizes.
fn replay_options(args: &ReplayArgs) -> anyhow::Result<ReplayOptions> {
    Ok(ReplayOptions {
        send_concurrency: args.concurrency,
        receive_concurrency: args.receive_concurrency,
        pace: match (args.rate, args.speedup) {
            (Some(rate), _) if rate > 0.0 => Pace::DocumentsPerSecond(rate),
            (_, Some(factor)) if factor > 0.0 => Pace::Speedup(factor),
            (None, None) => Pace::Unpaced,
            _ => anyhow::bail!("--rate and --speedup must be above zero"),
        },
        progress: if args.progress_lines {
            ProgressMode::Lines
        } else {
            ProgressMode::Auto
        },
        attachment_sizes: args.attachment_bytes,
        ..ReplayOptions::default()
    })
}

/// Replays the plan through a hub started in this process: its outcome, the
/// figures' source, the hub's data folder, and the hub itself if `--hold`
/// keeps it up (otherwise it is stopped here).
async fn replay_embedded(
    plan: &Arc<Plan>,
    args: &ReplayArgs,
    mut options: ReplayOptions,
) -> anyhow::Result<(ReplayOutcome, FigureSource, PathBuf, Option<Held>)> {
    let (observe, token_dir) = dashboard(args.dashboard).await?;
    let hub = match args.retention_days {
        Some(days) => {
            EmbeddedHub::start_retained(plan, args.data_dir.as_deref(), observe, days).await?
        }
        None => EmbeddedHub::start_observed(plan, args.data_dir.as_deref(), observe).await?,
    };
    options.clock = hub.clock.clone();
    if let Some(dir) = &args.data_dir {
        // So that `truc report --data-dir` compares with these targets unasked.
        ReplayRecord {
            dataset: plan.dataset.clone(),
            scale: args.scale,
            seed: plan.seed,
        }
        .write(dir)
        .with_context(|| format!("writing {REPLAY_RECORD_FILE} into {}", dir.display()))?;
    }
    eprintln!(
        "embedded hub on {} with {} units, data in {}{}",
        hub.target.hubs,
        plan.units.len(),
        hub.data_dir.display(),
        if args.data_dir.is_some() {
            " (kept)"
        } else {
            ", a temporary folder removed at the end (keep it with --data-dir DIR)"
        }
    );
    if let (Some(address), Some(dir)) = (args.dashboard, &token_dir) {
        eprintln!(
            "dashboard on http://{address}/ (sign in with any user name and the token in {})",
            dir.path().join("dashboard.token").display()
        );
    }
    let outcome = driver::replay(plan.clone(), &hub.target, options).await;
    let source = FigureSource::Hub {
        address: hub.target.hubs.to_string(),
        embedded: true,
    };
    let data_dir = hub.data_dir.clone();
    eprintln!("{}", hub.flush_summary());
    if let (Some((documents, files)), Some(dir)) = (hub.archive_summary(), &hub.archive_dir) {
        eprintln!(
            "retention: {documents} documents left the live store for {files} archive \
             files in {}",
            dir.display()
        );
    }
    let outcome = outcome?;
    let held = if args.hold {
        Some((hub, token_dir))
    } else {
        hub.stop().await?;
        None
    };
    Ok((outcome, source, data_dir, held))
}

/// The dashboard of `--dashboard`: its listener, and a fresh token in a
/// temporary folder of its own (removed with it).
async fn dashboard(
    address: Option<SocketAddr>,
) -> anyhow::Result<(truc_hub::Observe, Option<tempfile::TempDir>)> {
    let mut observe = truc_hub::Observe::default();
    let Some(address) = address else {
        return Ok((observe, None));
    };
    anyhow::ensure!(
        address.ip().is_loopback(),
        "--dashboard {address}: the dashboard is plain HTTP; serve it on a loopback address"
    );
    let dir = tempfile::Builder::new()
        .prefix("truc-dashboard-")
        .tempdir()?;
    let token = truc_hub::dashboard::DashboardToken::write_new(&dir.path().join("dashboard.token"))
        .map_err(anyhow::Error::msg)?;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen for the dashboard on {address}"))?;
    observe.dashboard = Some(truc_hub::dashboard::DashboardSetup {
        listener,
        token: truc_hub::dashboard::DashboardToken::new(&token).map_err(anyhow::Error::msg)?,
    });
    Ok((observe, Some(dir)))
}

/// `host:port`, resolved to the first address.
pub fn resolve(address: &str) -> anyhow::Result<SocketAddr> {
    address
        .to_socket_addrs()
        .with_context(|| format!("{address} is not an address (host:port)"))?
        .next()
        .with_context(|| format!("{address} resolves to no address"))
}

/// The hubs of a repeated or comma-listed `--hub`, each resolved, in order.
pub fn resolve_all(addresses: &[String]) -> anyhow::Result<HubAddresses> {
    let resolved = addresses
        .iter()
        .map(|address| resolve(address.trim()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    HubAddresses::new(resolved).context("--hub")
}

/// Writes `--json` and `--csv`, if asked.
pub fn write_outputs(
    report: &Report,
    json: Option<&PathBuf>,
    csv: Option<&PathBuf>,
) -> anyhow::Result<()> {
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&report.to_json())?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = csv {
        std::fs::write(path, report.agencies_csv())
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
