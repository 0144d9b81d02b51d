//! A year in an hour: one paced fan-out for the whole run while the hub's
//! clock passes a year (`truc hub --clock-speed`), every delivery
//! acknowledged and moved on to "completed" by its recipient, and retention
//! archiving what is final after the period. Every `sample_every` the run
//! records the hub's memory (RSS), the live store's size on disk, the
//! archives' and what the hub's metrics say of retention, so that a table
//! shows whether memory and the live store level off once documents leave
//! as fast as they come. At the end every archive file is checked offline,
//! oldest first, their audit chains joined.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Semaphore;
use truc_domain::views::MoveRequest;
use truc_domain::Status;
use truc_node::compose::Prepared;
use truc_node::{Attachment, AxisClient};

use crate::agencies::{bench_agencies, Agency, ScenarioKind};
use crate::documents::{attachment_content, RunTag};
use crate::error::BenchError;
use crate::fanout::{recipients_after, FanoutMix};
use crate::hub_process::{free_loopback_address, HubExtras, SpawnedHub};
use crate::nodes::{Fleet, PhaseTracker};
use crate::resources::{disk_bytes, rss_bytes};

/// A year, in the hub's clock.
const YEAR: Duration = Duration::from_secs(365 * 86_400);
/// Deliveries whose moves (received, assigned, processing, completed) go
/// in one `MoveStatuses` call.
const DELIVERIES_PER_MOVE_CALL: usize = 16;
/// How often recipients move what arrived since.
const MOVE_EVERY: Duration = Duration::from_millis(250);
/// Sends one agency has in progress at once (the hub's default quota).
const SENDS_IN_FLIGHT_PER_AGENCY: usize = 16;
/// Longest wait, after the last send, for the last moves to be recorded.
const DRAIN_MAX: Duration = Duration::from_secs(300);

/// What one year-in-an-hour run does.
#[derive(Clone, Debug)]
pub struct YearOptions {
    /// Real time the run sends for; the hub's clock passes a year in it.
    pub duration: Duration,
    /// Documents started per second.
    pub rate: f64,
    pub agencies: usize,
    pub fanout: FanoutMix,
    pub attachment_bytes: usize,
    /// Documents leave this many days (hub's clock) after acceptance.
    pub retention_days: u64,
    pub sample_every: Duration,
    /// Unacknowledged items each node's delivery stream accepts.
    pub window: u32,
    /// Keep the hub's folder here.
    pub keep: Option<PathBuf>,
    /// Top-level hub settings beyond the defaults (`cache_mib = 16`).
    pub hub_settings: Vec<String>,
}

/// One row of the table.
#[derive(Clone, Debug, Serialize)]
pub struct YearSample {
    pub seconds: u64,
    /// The hub's day (Vietnam), as the bench computes its clock.
    pub hub_date: String,
    pub documents_sent: u64,
    pub deliveries_completed: u64,
    /// Documents in archives, and live ones older than the period, as the
    /// hub's metrics say.
    pub archived: u64,
    pub backlog: u64,
    pub rss_bytes: u64,
    /// The data directory without the duplicate index's run files.
    pub store_bytes: u64,
    /// The duplicate index's run files (`ids/` in the data directory).
    pub id_index_bytes: u64,
    pub archive_bytes: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct YearReport {
    pub command: String,
    pub duration_seconds: u64,
    pub rate: f64,
    pub agencies: usize,
    pub fanout: f64,
    pub attachment_bytes: usize,
    pub retention_days: u64,
    pub clock_speed: f64,
    pub samples: Vec<YearSample>,
    /// Real seconds in which the hub's clock passes the retention period.
    pub first_period_seconds: u64,
    /// The hub's RSS at the first sample after the first period, and the
    /// highest after it.
    pub rss_at_first_period: u64,
    pub rss_max_after: u64,
    /// What the offline check of the archives found, oldest first.
    pub archives: Vec<ArchiveCheck>,
    pub failures: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ArchiveCheck {
    pub file: String,
    pub documents: u64,
    pub audit_first_seq: u64,
    pub audit_last_seq: u64,
    pub bytes: u64,
    pub problem: Option<String>,
}

impl YearReport {
    /// The table every minute, in Markdown, and the verdicts.
    pub fn table(&self) -> String {
        let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
        let mut out = format!(
            "A year in {} min: {:.0} documents/s to {} agencies at {:.2} recipients, {} B attachments, \
             the hub's clock {:.0}× (a year), retention {} days ({} s of the run)\n\n",
            self.duration_seconds / 60,
            self.rate,
            self.agencies,
            self.fanout,
            self.attachment_bytes,
            self.clock_speed,
            self.retention_days,
            self.first_period_seconds,
        );
        out.push_str(
            "| min | hub's date | sent | completed | archived | backlog | RSS MiB | live store MiB | id index MiB | archives MiB |\n\
             |---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for sample in &self.samples {
            out.push_str(&format!(
                "| {:.0} | {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.1} | {:.0} |\n",
                sample.seconds as f64 / 60.0,
                sample.hub_date,
                sample.documents_sent,
                sample.deliveries_completed,
                sample.archived,
                sample.backlog,
                mib(sample.rss_bytes),
                mib(sample.store_bytes),
                mib(sample.id_index_bytes),
                mib(sample.archive_bytes),
            ));
        }
        if self.rss_at_first_period == 0 {
            out.push_str(&format!(
                "\nThe retention period is longer than the run ({} s): nothing could leave the live store\n",
                self.first_period_seconds
            ));
        } else {
            let ratio = self.rss_max_after as f64 / self.rss_at_first_period as f64;
            out.push_str(&format!(
                "\nRSS at the end of the first retention period {:.0} MiB; highest after it {:.0} MiB ({:+.0} %)\n",
                mib(self.rss_at_first_period),
                mib(self.rss_max_after),
                (ratio - 1.0) * 100.0
            ));
        }
        for archive in &self.archives {
            out.push_str(&format!(
                "archive {}: {} documents, audit entries {} to {}, {:.0} MiB: {}\n",
                archive.file,
                archive.documents,
                archive.audit_first_seq,
                archive.audit_last_seq,
                mib(archive.bytes),
                archive.problem.as_deref().unwrap_or("checks")
            ));
        }
        for failure in &self.failures {
            out.push_str(&format!("FAILED: {failure}\n"));
        }
        out
    }
}

/// Counts shared by the run's tasks.
#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    completed: AtomicU64,
    failures: std::sync::Mutex<Vec<String>>,
}

impl Tally {
    fn fail(&self, what: String) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() < 20 {
            failures.push(what);
        }
    }
}

/// `yyyy-mm-dd` of a Unix time in Vietnam.
fn vietnam_day(unix_ms: i64) -> String {
    truc_domain::DocumentDate::vietnam_date_of_unix_ms(unix_ms)
        .map(|date| date.iso())
        .unwrap_or_default()
}

fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Runs the year: starts the hub, sends, completes, samples, checks.
pub async fn run_year(
    program: &Path,
    options: &YearOptions,
    progress: &dyn Fn(&str),
) -> Result<YearReport, BenchError> {
    let speed = YEAR.as_secs_f64() / options.duration.as_secs_f64().max(1.0);
    let agencies = bench_agencies(ScenarioKind::Fanout, options.agencies);
    let metrics = free_loopback_address()?;
    let extras = hub_extras(options, speed, metrics);
    progress(&format!(
        "starting `truc hub` with retention at {} days and its clock {speed:.0} times faster",
        options.retention_days
    ));
    let clock_start_unix_ms = now_unix_ms();
    let mut hub =
        SpawnedHub::start_with(program, &agencies, options.keep.as_deref(), &extras).await?;
    let data_dir = hub.target.data_dir.clone().unwrap_or_default();
    let probe = Probe {
        pid: hub.target.pid.unwrap_or(0),
        archive_dir: data_dir.with_file_name("archive"),
        data_dir,
        metrics,
    };
    let tag = RunTag::new();
    let fleet = Fleet::connect(
        &hub.target,
        agencies.clone(),
        Some(options.window),
        tag.clone(),
        false,
    )
    .await?;
    let total = document_count(options);
    let phase = Arc::new(PhaseTracker::new(0..total, true));
    fleet.context.set_phase(Some(phase.clone()));
    let tally = Arc::new(Tally::default());
    let clock = HubClock {
        start_unix_ms: clock_start_unix_ms,
        speed,
        origin: Instant::now(),
    };

    let stop = Arc::new(tokio::sync::Notify::new());
    let mover = tokio::spawn(complete_arrivals(
        fleet.clients.clone(),
        phase.clone(),
        tally.clone(),
        stop.clone(),
    ));
    let (sampling_done, sampling_stop) = tokio::sync::watch::channel(false);
    let sampler = spawn_sampler(
        options.sample_every,
        sampling_stop,
        tally.clone(),
        probe.clone(),
        clock,
    );

    progress(&format!(
        "sending {total} documents over {} s, each delivery completed by its recipient",
        options.duration.as_secs()
    ));
    let credentials: Vec<truc_pki::Credentials> = agencies
        .iter()
        .map(|agency| hub.target.pki.agency_credentials(&agency.code))
        .collect::<Result<_, _>>()?;
    send_paced(
        options,
        &agencies,
        &tag,
        &fleet,
        &credentials,
        &phase,
        &tally,
        clock,
    )
    .await;
    progress("all sent; waiting for the last deliveries to be completed");
    let expected: u64 = (0..total)
        .map(|index| options.fanout.recipients_of(index) as u64)
        .sum();
    wait_for_completions(&fleet, &tally, expected).await;
    stop.notify_one();
    let _ = mover.await;
    let _ = sampling_done.send(true);
    let mut samples = sampler.await.unwrap_or_default();
    samples.push(sample(&probe, &tally, clock).await);
    let mut failures = tally
        .failures
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    if let Some(failure) = fleet.context.counters.first_failure() {
        failures.push(failure);
    }
    let completed = tally.completed.load(Ordering::Relaxed);
    if completed < expected {
        failures.push(format!(
            "{completed} of {expected} deliveries completed within {} s of the last send",
            DRAIN_MAX.as_secs()
        ));
    }
    fleet.stop().await;
    // Stopped, but its folder (and the archives in it) kept until checked.
    hub.kill();

    progress("checking every archive file offline");
    let archives = check_archives(&probe.archive_dir);
    drop(hub);
    for archive in &archives {
        if let Some(problem) = &archive.problem {
            failures.push(format!("archive {}: {problem}", archive.file));
        }
    }
    Ok(year_report(options, speed, samples, archives, failures))
}

/// The hub's settings for the run: metrics to sample, retention at the
/// run's period, and the clock `speed` times faster.
fn hub_extras(options: &YearOptions, speed: f64, metrics: std::net::SocketAddr) -> HubExtras {
    // A run of retention each hub day; no feedback deadlines or expiry (a
    // fast clock would make every delivery late).
    let run_interval_seconds = (86_400.0 / speed).ceil().max(1.0) as u64;
    HubExtras {
        settings: options.hub_settings.clone(),
        config: format!(
            "\n[observe]\nmetrics_listen = \"{metrics}\"\n\n\
             [deadlines]\narrived_within_minutes = 0\nreceived_within_working_minutes = 0\n\
             due_date = false\n\n[expiry]\nttl_minutes = 0\n\n\
             [retention]\nperiod_days = {}\nrun_interval_seconds = {run_interval_seconds}\n\
             archive_dir = \"archive\"\n",
            options.retention_days
        ),
        args: vec!["--clock-speed".into(), format!("{speed}")],
        // The hub's clock, at which archived envelopes are checked, runs a year ahead.
        certificate_validity: Duration::from_secs(2 * 366 * 86_400),
    }
}

/// The hub's clock: Unix time when the run began, passing `speed` times
/// faster since `origin`.
#[derive(Clone, Copy)]
struct HubClock {
    start_unix_ms: i64,
    speed: f64,
    origin: Instant,
}

impl HubClock {
    /// The hub's Unix time now, in milliseconds.
    fn now(&self) -> i64 {
        self.start_unix_ms
            + (Instant::now().duration_since(self.origin).as_secs_f64() * 1000.0 * self.speed)
                as i64
    }
}

/// Where a sample reads the hub: its process, its folders and its metrics.
#[derive(Clone)]
struct Probe {
    pid: u32,
    data_dir: PathBuf,
    archive_dir: PathBuf,
    metrics: std::net::SocketAddr,
}

/// Samples every `every` from the clock's origin until `stop` changes, and
/// returns the samples.
fn spawn_sampler(
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
    tally: Arc<Tally>,
    probe: Probe,
    clock: HubClock,
) -> tokio::task::JoinHandle<Vec<YearSample>> {
    tokio::spawn(async move {
        let mut samples = Vec::new();
        let mut next = clock.origin + every;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next.into()) => {}
                _ = stop.changed() => return samples,
            }
            samples.push(sample(&probe, &tally, clock).await);
            next += every;
        }
    })
}

/// The paced fan-out: document `index` started `index / rate` seconds
/// after the clock's origin, each agency with at most
/// [`SENDS_IN_FLIGHT_PER_AGENCY`] sends at once. Returns when every send
/// has ended.
#[allow(clippy::too_many_arguments)]
async fn send_paced(
    options: &YearOptions,
    agencies: &[Agency],
    tag: &RunTag,
    fleet: &Fleet,
    credentials: &[truc_pki::Credentials],
    phase: &Arc<PhaseTracker>,
    tally: &Arc<Tally>,
    clock: HubClock,
) {
    let total = document_count(options);
    let senders: Vec<Arc<Semaphore>> = (0..agencies.len())
        .map(|_| Arc::new(Semaphore::new(SENDS_IN_FLIGHT_PER_AGENCY)))
        .collect();
    let mut sends = tokio::task::JoinSet::new();
    for index in 0..total {
        let due = clock.origin + Duration::from_secs_f64(index as f64 / options.rate);
        tokio::time::sleep_until(due.into()).await;
        while sends.try_join_next().is_some() {}
        let sender = (index % agencies.len() as u64) as usize;
        let Ok(slot) = senders[sender].clone().acquire_owned().await else {
            break;
        };
        // Dated a day behind the hub's clock, never ahead of it.
        let date = vietnam_day(clock.now() - 86_400_000);
        let recipients =
            recipients_after(sender, options.fanout.recipients_of(index), agencies.len());
        let draft = crate::documents::bench_draft(
            agencies,
            tag,
            index,
            sender,
            &recipients,
            date,
            format!("Văn bản thử tải số {} về việc lưu trữ", index + 1),
        );
        let attachment = Attachment::bytes(
            "van-ban.pdf",
            "application/pdf",
            attachment_content(index, tag.salt, options.attachment_bytes),
        );
        let client: AxisClient = fleet.clients[sender].clone();
        let credentials = credentials[sender].clone();
        let phase = phase.clone();
        let tally = tally.clone();
        sends.spawn(async move {
            let _slot = slot;
            let prepared = match Prepared::new(&draft, vec![attachment], &credentials).await {
                Ok(prepared) => prepared,
                Err(error) => return tally.fail(format!("signing document {index}: {error}")),
            };
            phase.mark_sent(index, Instant::now());
            match client.send_prepared(prepared).await {
                Ok(response) if !response.duplicate => {
                    tally.sent.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => tally.fail(format!("document {index} was taken for a resend")),
                Err(error) => tally.fail(format!("sending document {index}: {error}")),
            }
        });
    }
    while sends.join_next().await.is_some() {}
}

/// Documents the run sends: `rate` a second for `duration`.
fn document_count(options: &YearOptions) -> u64 {
    (options.rate * options.duration.as_secs_f64()).ceil() as u64
}

/// Waits until `expected` deliveries are completed, a node fails, or
/// [`DRAIN_MAX`] has passed.
async fn wait_for_completions(fleet: &Fleet, tally: &Tally, expected: u64) {
    let drained = Instant::now() + DRAIN_MAX;
    while tally.completed.load(Ordering::Relaxed) < expected && Instant::now() < drained {
        if fleet.context.counters.failures.load(Ordering::Relaxed) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The report of a finished run, with memory once the first retention
/// period is over.
fn year_report(
    options: &YearOptions,
    speed: f64,
    samples: Vec<YearSample>,
    archives: Vec<ArchiveCheck>,
    failures: Vec<String>,
) -> YearReport {
    let first_period_seconds = (options.retention_days as f64 * 86_400.0 / speed).ceil() as u64;
    let after: Vec<&YearSample> = samples
        .iter()
        .filter(|s| s.seconds >= first_period_seconds)
        .collect();
    YearReport {
        command: String::new(),
        duration_seconds: options.duration.as_secs(),
        rate: options.rate,
        agencies: options.agencies,
        fanout: options.fanout.mean(),
        attachment_bytes: options.attachment_bytes,
        retention_days: options.retention_days,
        clock_speed: speed,
        rss_at_first_period: after.first().map_or(0, |s| s.rss_bytes),
        rss_max_after: after.iter().map(|s| s.rss_bytes).max().unwrap_or(0),
        first_period_seconds,
        samples,
        archives,
        failures,
    }
}

/// Moves every delivery that arrived to "completed" (received, assigned,
/// processing, completed), its recipient's deliveries a batch per call.
async fn complete_arrivals(
    clients: Vec<AxisClient>,
    phase: Arc<PhaseTracker>,
    tally: Arc<Tally>,
    stop: Arc<tokio::sync::Notify>,
) {
    let Some(arrivals) = &phase.arrivals else {
        return;
    };
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(MOVE_EVERY) => false,
            _ = stop.notified() => true,
        };
        let arrived = std::mem::take(&mut *arrivals.lock().unwrap_or_else(|p| p.into_inner()));
        let mut by_recipient: Vec<Vec<String>> = vec![Vec::new(); clients.len()];
        for (document_id, recipient) in arrived {
            by_recipient[recipient].push(document_id);
        }
        let mut calls = tokio::task::JoinSet::new();
        for (recipient, documents) in by_recipient.into_iter().enumerate() {
            if documents.is_empty() {
                continue;
            }
            let client = clients[recipient].clone();
            let tally = tally.clone();
            calls.spawn(async move {
                for batch in documents.chunks(DELIVERIES_PER_MOVE_CALL) {
                    let moves = batch
                        .iter()
                        .flat_map(|id| {
                            [
                                Status::Received,
                                Status::Assigned,
                                Status::Processing,
                                Status::Completed,
                            ]
                            .map(|status| MoveRequest {
                                document_id: id.clone(),
                                recipient: String::new(),
                                status,
                                reason: String::new(),
                            })
                        })
                        .collect();
                    match client.move_statuses(moves).await {
                        Ok(results) => {
                            let refused = results.iter().filter(|r| r.is_err()).count();
                            if refused > 0 {
                                tally.fail(format!("{refused} moves refused"));
                            }
                            tally
                                .completed
                                .fetch_add(batch.len() as u64, Ordering::Relaxed);
                        }
                        Err(error) => tally.fail(format!("moving statuses: {error}")),
                    }
                }
            });
        }
        while calls.join_next().await.is_some() {}
        if stopping {
            return;
        }
    }
}

/// One row: the bench's counts, the hub's memory and disk, and what its
/// metrics say of retention.
async fn sample(probe: &Probe, tally: &Tally, clock: HubClock) -> YearSample {
    let hub_unix_ms = clock.now();
    let scrape = scrape(probe.metrics).await.unwrap_or_default();
    let value = |name: &str| -> u64 {
        scrape
            .lines()
            .find(|line| line.starts_with(name) && line[name.len()..].starts_with(' '))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse::<f64>().ok())
            .map_or(0, |value| value as u64)
    };
    // The embedded engine's duplicate index, outside its live store.
    let id_index_bytes = disk_bytes(&probe.data_dir.join("ids")).unwrap_or(0);
    YearSample {
        seconds: clock.origin.elapsed().as_secs(),
        hub_date: vietnam_day(hub_unix_ms),
        documents_sent: tally.sent.load(Ordering::Relaxed),
        deliveries_completed: tally.completed.load(Ordering::Relaxed),
        archived: value("truc_archive_documents_total"),
        backlog: value("truc_archive_backlog_documents"),
        rss_bytes: rss_bytes(probe.pid).unwrap_or(0),
        store_bytes: disk_bytes(&probe.data_dir)
            .unwrap_or(0)
            .saturating_sub(id_index_bytes),
        id_index_bytes,
        archive_bytes: disk_bytes(&probe.archive_dir).unwrap_or(0),
    }
}

/// The hub's `/metrics` text.
async fn scrape(address: std::net::SocketAddr) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(address).await.ok()?;
    tcp.write_all(
        format!("GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .ok()?;
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_string(&mut response))
        .await
        .ok()?
        .ok()?;
    Some(response.split_once("\r\n\r\n")?.1.to_owned())
}

/// Checks every archive file, oldest first, and that each one's audit chain
/// follows the one before.
fn check_archives(dir: &Path) -> Vec<ArchiveCheck> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.path())
                .filter(|path| {
                    path.extension().is_some_and(|e| {
                        format!(".{}", e.to_string_lossy()) == truc_archive::FILE_SUFFIX
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let count = files.len();
    let mut checks = Vec::with_capacity(count);
    let mut previous: Option<truc_archive::Verification> = None;
    for (index, path) in files.iter().enumerate() {
        let last = index + 1 == count;
        let (verification, mut problem) = match truc_archive::verify(path, None, last) {
            Ok(verification) => {
                let problem = verification.problem.as_ref().map(ToString::to_string);
                (Some(verification), problem)
            }
            Err(error) => (None, Some(error.to_string())),
        };
        if let (Some(before), Some(now)) = (&previous, &verification) {
            if problem.is_none()
                && before.audit_entries > 0
                && now.audit_entries > 0
                && (now.audit_first_seq != before.audit_last_seq + 1
                    || now.audit_previous_sha256 != before.audit_last_sha256)
            {
                problem = Some("its audit chain does not follow the file before".into());
            }
        }
        checks.push(ArchiveCheck {
            file: path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default(),
            documents: verification.as_ref().map_or(0, |v| v.documents),
            audit_first_seq: verification.as_ref().map_or(0, |v| v.audit_first_seq),
            audit_last_seq: verification.as_ref().map_or(0, |v| v.audit_last_seq),
            bytes: std::fs::metadata(path).map_or(0, |m| m.len()),
            problem,
        });
        if verification.is_some() {
            previous = verification;
        }
    }
    checks
}
