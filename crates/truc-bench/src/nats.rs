//! NATS JetStream side by side with the hub: the same pre-signed documents
//! (the encoded signed envelope and its attachment, byte for byte) published
//! with acknowledgements, the same fan-out delivered to one durable pull
//! consumer per recipient agency, every delivery acknowledged.
//!
//! Fan-out mapping: a document's subject has one token per agency, `1` for
//! its recipients and `0` for the others (`doc.0.1.1.1.0.0.0.0`); agency j's
//! consumer filters on `1` at position j and `*` elsewhere. The stream stores
//! each document once and JetStream hands it to exactly the consumers of its
//! recipients, 3.63 on average, as the hub queues one delivery per recipient.
//!
//! Two modes. *Page cache*: the default server configuration, where a
//! publish is acknowledged once the message is written to the stream's file,
//! which is fsynced only every `sync_interval` (2 minutes by default).
//! *Synchronous*: `sync_interval: always`, an fsync on every write before the
//! acknowledgement, when the server knows the setting (its own `-t`
//! configuration check decides). Debian bookworm's 2.9.10 refuses it; it gets
//! the closest equivalent: its store on a file system mounted with `-o sync`,
//! where every write returns only once on disk; `bench/compare-nats.sh` makes
//! one.
//!
//! The publishes cycle through a pool of signed documents (their bytes; each
//! publish has its own message id), since JetStream may accept far more
//! documents a second than it is worth signing ahead.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, message::PublishMessage, stream};
use bytes::Bytes;
use tokio::sync::watch;
use tokio_stream::StreamExt;

use crate::agencies::{bench_agencies, ScenarioKind};
use crate::documents::{presign, DocumentMaker, RunTag};
use crate::error::BenchError;
use crate::hub_process::{free_loopback_address, log_tail, HubTarget};
use crate::nodes::{NodeCounters, PhaseTracker};
use crate::options::{BenchOptions, NatsOptions};
use crate::report::{group, NatsComparison, NatsModeFigures};
use crate::resources::{disk_bytes, peak_rss_bytes, CpuMeter};
use crate::scenarios::{dispatch, wait_until, DispatchOutcome};

const STREAM: &str = "TRUC_BENCH";
const SUBJECT_ROOT: &str = "doc";
/// Longest wait for a started server to accept connections.
const READY_WAIT_MAX: Duration = Duration::from_secs(20);
/// Distinct signed documents whose bytes the publishes cycle through (a
/// multiple of 100, so the fan-out mix stays exact). JetStream checks no
/// signature and stores no digest, so reusing bytes flatters it in nothing;
/// each publish still has its own message id.
const TEMPLATES_MAX: usize = 10_000;
/// Publishes planned per second of an unpaced run, made lazily as they go:
/// far above what one machine reaches, so the supply never runs out.
const PUBLISH_RATE_PLANNED: f64 = 200_000.0;

/// The subject of a document addressed to `recipients` among `agencies`.
pub fn subject_for(recipients: &[usize], agencies: usize) -> String {
    let mut subject = String::from(SUBJECT_ROOT);
    for agency in 0..agencies {
        subject.push_str(if recipients.contains(&agency) {
            ".1"
        } else {
            ".0"
        });
    }
    subject
}

/// The filter subject of agency `agency`'s consumer.
pub fn filter_for(agency: usize, agencies: usize) -> String {
    let mut filter = String::from(SUBJECT_ROOT);
    for position in 0..agencies {
        filter.push_str(if position == agency { ".1" } else { ".*" });
    }
    filter
}

fn mapping(options: &BenchOptions) -> String {
    format!(
        "one stream `{STREAM}` on `{SUBJECT_ROOT}.>`, file storage, limits retention, one replica; \
         one durable pull consumer per recipient agency ({} agencies, explicit acks, max {} \
         unacknowledged like the hub's window); a document's subject has one token per agency, 1 for \
         its recipients (e.g. {}), and agency j's consumer filters on 1 at position j, so each \
         message is stored once and delivered to its {} recipients' consumers ({} on average); \
         payloads are the hub's signed envelopes and attachments byte for byte (publishes cycle \
         through {TEMPLATES_MAX} of them at most), each publish with its own Nats-Msg-Id (the \
         stream's duplicate check, as the hub checks resends)",
        options.agencies,
        options.window,
        subject_for(&[1, 2, 3], options.agencies),
        recipients_range(options),
        options.fanout,
    )
}

/// "3 or 4" for a mean of 3.63, "3" for 3.
fn recipients_range(options: &BenchOptions) -> String {
    let low = options.fanout.mean().floor() as usize;
    let high = options.fanout.max_recipients();
    if low == high {
        low.to_string()
    } else {
        format!("{low} or {high}")
    }
}

/// What the server at `program` says it is, e.g. `v2.9.10`.
fn server_version(program: &Path) -> Result<String, BenchError> {
    let output = Command::new(program)
        .arg("--version")
        .output()
        .map_err(|error| {
            BenchError::Nats(format!(
                "cannot run {}: {error}. Install it with `apt-get install -y nats-server`, or run \
                 bench/compare-nats.sh which does",
                program.display()
            ))
        })?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    Ok(text
        .split_whitespace()
        .find(|word| word.starts_with('v') && word[1..].starts_with(|c: char| c.is_ascii_digit()))
        .unwrap_or(text.trim())
        .to_owned())
}

/// Asks the server itself (`-t` checks a configuration and exits) whether it
/// knows `sync_interval`, rather than guessing from its version.
fn supports_sync_interval(program: &Path, scratch: &Path) -> Result<bool, BenchError> {
    let probe = scratch.join("probe.conf");
    std::fs::write(
        &probe,
        config_text(
            free_loopback_address()?.port(),
            &scratch.join("probe-store"),
            true,
        ),
    )?;
    let status = Command::new(program)
        .arg("-t")
        .arg("-c")
        .arg(&probe)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    Ok(status.success())
}

fn config_text(port: u16, store_dir: &Path, sync_always: bool) -> String {
    format!(
        "# Written by truc bench.\nlisten: 127.0.0.1:{port}\njetstream {{\n  store_dir: \"{}\"\n{}}}\n",
        store_dir.display(),
        if sync_always {
            "  sync_interval: always\n"
        } else {
            ""
        }
    )
}

/// The mount options of the file system holding `path`, from
/// `/proc/self/mountinfo` (per-mount and super-block options together).
fn mount_options(path: &Path) -> Option<Vec<String>> {
    let path = path.canonicalize().ok()?;
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut best: Option<(usize, Vec<String>)> = None;
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(separator) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if fields.len() < 6 || fields.len() < separator + 4 {
            continue;
        }
        let mount_point = Path::new(fields[4]);
        if !path.starts_with(mount_point) {
            continue;
        }
        let depth = mount_point.components().count();
        if best.as_ref().is_some_and(|(d, _)| *d > depth) {
            continue;
        }
        let options = fields[5]
            .split(',')
            .chain(fields[separator + 3].split(','))
            .map(str::to_owned)
            .collect();
        best = Some((depth, options));
    }
    best.map(|(_, options)| options)
}

/// How the synchronous mode gets its fsyncs, if it can.
enum SyncHow {
    SyncInterval,
    SyncMount(PathBuf),
}

const PAGE_CACHE_DURABILITY: &str =
    "default configuration: a publish is acknowledged once the message \
     is written to the stream's file (into the OS page cache); the server fsyncs only every \
     sync_interval (2 minutes by default), so an OS crash or power cut can lose up to that much \
     acknowledged data; no signature is checked";

/// Runs the comparison in both modes and relates each to `hub_rate`.
pub async fn compare(
    options: &BenchOptions,
    nats: &NatsOptions,
    target: &HubTarget,
    hub_rate: Option<f64>,
    pace: Option<f64>,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<NatsComparison, BenchError> {
    let version = server_version(&nats.program)?;
    let scratch = tempfile::Builder::new()
        .prefix("truc-bench-nats-")
        .tempdir()?;
    let sync_how = sync_how(nats, &version, scratch.path())?;
    let agencies = bench_agencies(ScenarioKind::Fanout, options.agencies);
    let credentials = agencies
        .iter()
        .map(|a| target.pki.agency_credentials(&a.code))
        .collect::<Result<Vec<_>, _>>()?;
    let maker = Arc::new(DocumentMaker {
        agencies,
        credentials,
        tag: RunTag::new(),
        mix: options.fanout,
        attachment_bytes: options.attachment_bytes,
        sign_documents: options.sign_documents,
    });

    let modes = modes(sync_how, &version, scratch.path());

    let templates = templates(&maker, options, pace, progress).await?;
    let publishes = match pace {
        Some(rate) => rate * (options.duration.as_secs_f64() + 1.0),
        None => PUBLISH_RATE_PLANNED * options.duration.as_secs_f64(),
    }
    .ceil() as u64;
    let mut figures = Vec::new();
    for mode in modes {
        let mode = match mode {
            Ok(mode) => mode,
            Err(reason) => {
                figures.push(NatsModeFigures {
                    mode: "JetStream, synchronous".to_owned(),
                    durability: "not available".to_owned(),
                    skipped_because: Some(reason),
                    ..NatsModeFigures::default()
                });
                continue;
            }
        };
        progress(&format!(
            "{}: publishing for {:.0} s",
            mode.name,
            options.duration.as_secs_f64()
        ));
        let workload = Workload {
            templates: templates.clone(),
            publishes,
            pace,
            tag: maker.tag.clone(),
        };
        let mut result = run_mode(options, nats, &mode, scratch.path(), &workload).await?;
        // Paced, both sides deliver what they are given: a ratio would say nothing.
        result.hub_over_jetstream = hub_rate
            .filter(|_| pace.is_none() && result.deliveries_per_second > 0.0)
            .map(|hub| hub / result.deliveries_per_second);
        progress(&format!(
            "{}: {:.0} deliveries/s",
            mode.name, result.deliveries_per_second
        ));
        figures.push(result);
        // The store is this run's own folder, also on a caller's sync mount.
        let _ = std::fs::remove_dir_all(&mode.store_dir);
    }
    Ok(NatsComparison {
        server_version: version,
        client: "async-nats 0.46".to_owned(),
        mapping: mapping(options),
        transport:
            "plain TCP on loopback: no TLS, no client certificates (the hub: mutual TLS 1.3 \
             on every connection)"
                .to_owned(),
        modes: figures,
    })
}

/// How the synchronous mode gets its fsyncs, or why it cannot be measured.
fn sync_how(
    nats: &NatsOptions,
    version: &str,
    scratch: &Path,
) -> Result<Result<SyncHow, String>, BenchError> {
    Ok(if supports_sync_interval(&nats.program, scratch)? {
        Ok(SyncHow::SyncInterval)
    } else {
        match &nats.sync_dir {
            None => Err(format!(
                "nats-server {version} refuses sync_interval in its configuration check, and no \
                 --nats-sync-dir on a file system mounted with -o sync was given; \
                 bench/compare-nats.sh makes one"
            )),
            Some(dir) => match mount_options(dir) {
                Some(options) if options.iter().any(|o| o == "sync") => {
                    Ok(SyncHow::SyncMount(dir.clone()))
                }
                Some(options) => Err(format!(
                    "{} is on a file system mounted {} (not sync)",
                    dir.display(),
                    options.join(",")
                )),
                None => Err(format!("cannot find the mount of {}", dir.display())),
            },
        }
    })
}

/// The page cache mode, and the synchronous one or why it is not measured.
fn modes(
    sync_how: Result<SyncHow, String>,
    version: &str,
    scratch: &Path,
) -> Vec<Result<Mode, String>> {
    let mut modes = Vec::new();
    let page_cache_store = scratch.join("page-cache");
    let page_cache = Mode {
        name: "JetStream, page cache (default)".to_owned(),
        durability: PAGE_CACHE_DURABILITY.to_owned(),
        store_dir: page_cache_store,
        sync_always: false,
    };
    modes.push(Ok(page_cache));
    modes.push(match sync_how {
        Ok(SyncHow::SyncInterval) => Ok(Mode {
            name: "JetStream, synchronous (sync_interval: always)".to_owned(),
            durability: "sync_interval: always: the server fsyncs each write of the stream's \
                 file before acknowledging the publish; no signature is checked"
                .to_owned(),
            store_dir: scratch.join("sync"),
            sync_always: true,
        }),
        Ok(SyncHow::SyncMount(dir)) => Ok(Mode {
            name: "JetStream, synchronous (store on a file system mounted -o sync)".to_owned(),
            durability: format!(
                "nats-server {version} has no sync_interval: its store is on ext4 mounted with \
                 -o sync (an image file on a loop device), where every write(2) returns only once \
                 the data is on disk, and the server writes each message to its file before \
                 acknowledging the publish: the closest this server version comes to an fsync per \
                 message; no signature is checked"
            ),
            store_dir: dir.join(format!("truc-bench-{}", std::process::id())),
            sync_always: false,
        }),
        Err(reason) => Err(reason),
    });
    modes
}

/// Signs the envelopes the publishes cycle through, before the timed phase.
async fn templates(
    maker: &Arc<DocumentMaker>,
    options: &BenchOptions,
    pace: Option<f64>,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Arc<Vec<Template>>, BenchError> {
    let template_count = (options.pool_size(pace).min(TEMPLATES_MAX) / 100).max(1) * 100;
    progress(&format!(
        "JetStream: pre-signing {} envelopes made like the hub's (not timed); publishes cycle through them",
        group(template_count as u64)
    ));
    Ok(Arc::new(
        presign(maker.clone(), 0..template_count as u64)
            .await?
            .into_iter()
            .map(|document| Template {
                sender: document.sender,
                subject: subject_for(&document.recipients, options.agencies).into(),
                payload: document.payload(),
                recipients: document.recipients.len() as u64,
            })
            .collect(),
    ))
}

struct Mode {
    name: String,
    durability: String,
    store_dir: PathBuf,
    sync_always: bool,
}

/// One signed document's bytes and addressing.
struct Template {
    sender: usize,
    subject: async_nats::Subject,
    payload: Bytes,
    recipients: u64,
}

/// What one mode publishes: the same in both modes.
struct Workload {
    templates: Arc<Vec<Template>>,
    /// Publishes planned (more than an unpaced run gets through).
    publishes: u64,
    pace: Option<f64>,
    tag: RunTag,
}

/// Publish number `index`: the bytes of template `index mod templates`.
struct Item {
    index: u64,
    template: usize,
}

/// The message id of publish `index`: unique in the run, and read back by
/// the consumers to find when it was published.
fn message_id(tag: &RunTag, index: u64) -> String {
    format!("{}.{index}", tag.notation)
}

fn index_of_message_id(tag: &RunTag, id: &str) -> Option<u64> {
    id.strip_prefix(tag.notation.as_str())?
        .strip_prefix('.')?
        .parse()
        .ok()
}

/// A nats-server process; killed when dropped.
struct Server {
    child: Child,
    address: std::net::SocketAddr,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_server(
    program: &Path,
    mode: &Mode,
    scratch: &Path,
) -> Result<(Server, String), BenchError> {
    std::fs::create_dir_all(&mode.store_dir)?;
    let address = free_loopback_address()?;
    let config = config_text(address.port(), &mode.store_dir, mode.sync_always);
    let config_path = scratch.join(format!("nats-{}.conf", address.port()));
    std::fs::write(&config_path, &config)?;
    let log = scratch.join(format!("nats-{}.log", address.port()));
    let log_file = std::fs::File::create(&log)?;
    let child = Command::new(program)
        .arg("-c")
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .spawn()
        .map_err(|error| {
            BenchError::Nats(format!("cannot start {}: {error}", program.display()))
        })?;
    let mut server = Server {
        child,
        address,
        log,
    };
    let deadline = Instant::now() + READY_WAIT_MAX;
    loop {
        if let Some(status) = server.child.try_wait()? {
            return Err(BenchError::Nats(format!(
                "nats-server exited at start ({status}):\n{}",
                log_tail(&server.log)
            )));
        }
        if tokio::net::TcpStream::connect(server.address).await.is_ok() {
            return Ok((server, config));
        }
        if Instant::now() >= deadline {
            return Err(BenchError::Nats(format!(
                "nats-server did not accept connections within {} s",
                READY_WAIT_MAX.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn connect(address: std::net::SocketAddr) -> Result<async_nats::Client, BenchError> {
    async_nats::connect(address.to_string())
        .await
        .map_err(|error| BenchError::Nats(format!("connecting to {address}: {error}")))
}

fn nats_error(what: &str) -> impl Fn(&dyn std::fmt::Display) -> BenchError + '_ {
    move |error| BenchError::Nats(format!("{what}: {error}"))
}

async fn run_mode(
    options: &BenchOptions,
    nats: &NatsOptions,
    mode: &Mode,
    scratch: &Path,
    workload: &Workload,
) -> Result<NatsModeFigures, BenchError> {
    let (publishes, pace, tag) = (workload.publishes, workload.pace, &workload.tag);
    let (server, config) = start_server(&nats.program, mode, scratch).await?;
    let agencies = options.agencies;
    let admin = jetstream::new(connect(server.address).await?);
    let stream = admin
        .create_stream(stream::Config {
            name: STREAM.to_owned(),
            subjects: vec![format!("{SUBJECT_ROOT}.>")],
            storage: stream::StorageType::File,
            num_replicas: 1,
            ..Default::default()
        })
        .await
        .map_err(|e| nats_error("creating the stream")(&e))?;

    // One connection per agency for its consumer, one per agency for its
    // publishes, as each hub agency has a node and a sending connection.
    let counters = Arc::new(NodeCounters::default());
    let phase = Arc::new(PhaseTracker::new(0..publishes, false));
    let (stop, stopped) = watch::channel(false);
    let consumers = start_consumers(
        &stream,
        server.address,
        options,
        tag,
        &phase,
        &counters,
        &stopped,
    )
    .await?;
    let mut publishers = Vec::with_capacity(agencies);
    for _ in 0..agencies {
        publishers.push(jetstream::new(connect(server.address).await?));
    }
    let publishers = Arc::new(publishers);
    let cpu = CpuMeter::start(Some(server.child.id()));
    let outcome = publish(options, workload, publishers, &phase).await;
    let expected = outcome.units;
    wait_until(&counters, options.drain_timeout, || {
        phase.delivered_count() >= expected
    })
    .await;
    let (server_cores, bench_cores) = cpu.cores();
    let _ = stop.send(true);
    for consumer in consumers {
        let _ = consumer.await;
    }
    let received = phase.delivered_count();
    let until_last = phase.until_last_delivery();
    let failures = outcome.failures
        + counters.failures.load(std::sync::atomic::Ordering::Acquire)
        + u64::from(received != expected);
    let first_failure = outcome
        .first_failure
        .clone()
        .or_else(|| counters.first_failure())
        .or_else(|| {
            (received != expected).then(|| {
                format!(
                    "{received} of {expected} deliveries within {} s",
                    options.drain_timeout.as_secs()
                )
            })
        });
    let store_bytes = disk_bytes(&mode.store_dir).ok();
    let figures = NatsModeFigures {
        mode: mode.name.clone(),
        durability: mode.durability.clone(),
        server_config: config,
        measured: true,
        skipped_because: None,
        rate: pace,
        documents_acknowledged: outcome.acknowledged,
        deliveries_expected: expected,
        deliveries_received: received,
        seconds_until_last_delivery: until_last.as_secs_f64(),
        deliveries_per_second: received as f64 / until_last.as_secs_f64().max(1e-9),
        documents_per_second: outcome.rate(),
        publish_to_ack: outcome.latency.clone(),
        publish_to_delivery: phase.send_to_delivery.summary(),
        server_peak_rss_bytes: peak_rss_bytes(server.child.id()),
        store_bytes_per_document: store_bytes
            .filter(|_| outcome.acknowledged > 0)
            .map(|bytes| bytes as f64 / outcome.acknowledged as f64),
        hub_over_jetstream: None,
        failures,
        first_failure,
        pool_exhausted: outcome.pool_exhausted,
        server_cores,
        bench_cores,
    };
    drop(server);
    Ok(figures)
}

/// A durable pull consumer per agency, each on its own connection, counting
/// and acknowledging its deliveries until `stopped`.
async fn start_consumers(
    stream: &stream::Stream,
    address: std::net::SocketAddr,
    options: &BenchOptions,
    tag: &RunTag,
    phase: &Arc<PhaseTracker>,
    counters: &Arc<NodeCounters>,
    stopped: &watch::Receiver<bool>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, BenchError> {
    let agencies = options.agencies;
    let mut consumers = Vec::new();
    for agency in 0..agencies {
        let name = format!("agency-{agency:02}");
        stream
            .create_consumer(consumer::pull::Config {
                durable_name: Some(name.clone()),
                filter_subject: filter_for(agency, agencies),
                ack_policy: consumer::AckPolicy::Explicit,
                max_ack_pending: i64::from(options.window),
                ..Default::default()
            })
            .await
            .map_err(|e| nats_error("creating a consumer")(&e))?;
        let context = jetstream::new(connect(address).await?);
        let consumer: consumer::PullConsumer = context
            .get_consumer_from_stream(&name, STREAM)
            .await
            .map_err(|e| nats_error("binding a consumer")(&e))?;
        let messages = consumer
            .stream()
            .max_messages_per_batch(options.window as usize)
            .messages()
            .await
            .map_err(|e| nats_error("pulling")(&e))?;
        consumers.push(tokio::spawn(consume(
            messages,
            tag.clone(),
            phase.clone(),
            counters.clone(),
            stopped.clone(),
        )));
    }
    Ok(consumers)
}

/// The timed publishes, each on its sender's connection, marked sent in
/// `phase` as it leaves.
async fn publish(
    options: &BenchOptions,
    workload: &Workload,
    publishers: Arc<Vec<jetstream::Context>>,
    phase: &Arc<PhaseTracker>,
) -> DispatchOutcome {
    let (templates, publishes, pace, tag) = (
        workload.templates.clone(),
        workload.publishes,
        workload.pace,
        &workload.tag,
    );
    let origin = phase.origin;
    let sending_phase = phase.clone();
    let count = templates.len() as u64;
    let items = (0..publishes).map(|index| Item {
        index,
        template: (index % count) as usize,
    });
    let publish_tag = tag.clone();
    dispatch(
        items,
        pace,
        options.duration,
        options.concurrency,
        origin,
        options.drain_timeout,
        move |item: Item, start| {
            let template = &templates[item.template];
            let publisher = publishers[template.sender].clone();
            let phase = sending_phase.clone();
            let subject = template.subject.clone();
            let payload = template.payload.clone();
            let recipients = template.recipients;
            let id = message_id(&publish_tag, item.index);
            async move {
                phase.mark_sent(item.index, start);
                let acknowledgement = publisher
                    .send_publish(
                        subject,
                        PublishMessage::build().payload(payload).message_id(&id),
                    )
                    .await
                    .map_err(|error| format!("publishing {id}: {error}"))?
                    .await
                    .map_err(|error| format!("acknowledgement of {id}: {error}"))?;
                if acknowledgement.duplicate {
                    return Err(format!("{id} was taken for a duplicate"));
                }
                Ok(recipients)
            }
        },
    )
    .await
}

/// One agency's consumer: counts each delivery of this run and acknowledges it.
async fn consume(
    mut messages: consumer::pull::Stream,
    tag: RunTag,
    phase: Arc<PhaseTracker>,
    counters: Arc<NodeCounters>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let message = tokio::select! {
            message = messages.next() => message,
            _ = stop.changed() => return,
        };
        let message = match message {
            Some(Ok(message)) => message,
            Some(Err(error)) => {
                counters.fail(format!("consumer: {error}"));
                return;
            }
            None => return,
        };
        let now = Instant::now();
        let index = message
            .headers
            .as_ref()
            .and_then(|headers| headers.get(async_nats::header::NATS_MESSAGE_ID))
            .and_then(|id| index_of_message_id(&tag, id.as_str()));
        match index {
            Some(index) if phase.delivered(index, now) => {}
            _ => counters.fail(format!(
                "consumer: unexpected message on {}",
                message.subject
            )),
        }
        if let Err(error) = message.ack().await {
            counters.fail(format!("acknowledging: {error}"));
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fanout::{recipients_after, FanoutMix};

    /// NATS subject matching for subjects without `>`: same token count,
    /// `*` matches any one token.
    fn matches(filter: &str, subject: &str) -> bool {
        let filter: Vec<&str> = filter.split('.').collect();
        let subject: Vec<&str> = subject.split('.').collect();
        filter.len() == subject.len()
            && filter
                .iter()
                .zip(&subject)
                .all(|(f, s)| *f == "*" || f == s)
    }

    #[test]
    fn each_document_reaches_exactly_its_recipients_consumers() {
        let agencies = 8;
        let mix: FanoutMix = "3.63".parse().unwrap();
        let mut deliveries = 0usize;
        for index in 0..1000u64 {
            let sender = (index % agencies as u64) as usize;
            let recipients = recipients_after(sender, mix.recipients_of(index), agencies);
            let subject = subject_for(&recipients, agencies);
            let reached: Vec<usize> = (0..agencies)
                .filter(|&agency| matches(&filter_for(agency, agencies), &subject))
                .collect();
            let mut expected = recipients.clone();
            expected.sort();
            assert_eq!(reached, expected, "document {index} on {subject}");
            deliveries += reached.len();
        }
        assert_eq!(deliveries, 3630);
        assert_eq!(subject_for(&[1, 2, 3], 5), "doc.0.1.1.1.0");
        assert_eq!(filter_for(2, 5), "doc.*.*.1.*.*");
    }

    #[test]
    fn the_server_config_asks_for_sync_only_in_the_synchronous_mode() {
        let plain = config_text(4222, Path::new("/tmp/js"), false);
        assert!(plain.contains("listen: 127.0.0.1:4222"));
        assert!(plain.contains("store_dir: \"/tmp/js\""));
        assert!(!plain.contains("sync_interval"));
        assert!(config_text(4222, Path::new("/tmp/js"), true).contains("sync_interval: always"));
    }

    #[test]
    fn message_ids_carry_the_publish_number() {
        let tag = RunTag::new();
        assert_eq!(
            index_of_message_id(&tag, &message_id(&tag, 4711)),
            Some(4711)
        );
        assert_eq!(index_of_message_id(&tag, "BENCH-OTHER.4711"), None);
        assert_eq!(index_of_message_id(&tag, &tag.notation), None);
    }

    #[test]
    fn the_mount_of_a_path_is_found_with_its_options() {
        let options = mount_options(Path::new("/")).expect("/ is mounted");
        assert!(
            options.iter().any(|o| o == "rw" || o == "ro"),
            "{options:?}"
        );
    }
}
