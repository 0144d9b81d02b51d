//! What a bench run found: every figure with the settings that produced it,
//! as JSON (`serde`) and as a table a person reads.

use std::fmt::Write;

use serde::Serialize;

use crate::latency::LatencySummary;
use crate::resources::DiskBandwidth;

/// What acknowledgements mean for hubs on PostgreSQL.
pub const CLUSTER_DURABILITY: &str =
    "the hubs verify every envelope signature and answer only after their group's transaction \
     committed with synchronous_commit on and a synchronous standby (Patroni, strict \
     synchronous mode): every acknowledged document, arrival and status move is on two \
     machines' disks";

/// What the hub's acknowledgements mean, printed beside its figures.
pub const HUB_DURABILITY: &str =
    "the hub verifies every envelope signature (and the document's own \
     signature when present) and makes every accepted document, arrival and status move durable \
     before it answers (group commit: one journal record per group, written and fdatasync'd; \
     attachments too large to ride in it are fdatasync'd in the payload log first)";

#[derive(Debug, Default, Serialize)]
pub struct BenchReport {
    pub started_at_unix_ms: i64,
    /// The command line, filled in by the caller.
    pub command: String,
    pub machine: Machine,
    pub hub: HubDescription,
    pub settings: Settings,
    pub intake: Vec<SendFigures>,
    pub fanout: Vec<FanoutFigures>,
    pub moves: Option<MovesFigures>,
    pub attachments: Option<AttachmentsFigures>,
    pub resources: Vec<ResourceSample>,
    pub nats: Option<NatsComparison>,
    /// Everything that went wrong; a run with failures is not a measurement.
    pub failures: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub kernel: String,
}

impl Machine {
    pub fn this_one() -> Self {
        Self {
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|text| text.trim().to_owned())
                .unwrap_or_default(),
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct HubDescription {
    pub spawned: bool,
    pub address: String,
    pub pid: Option<u32>,
    pub durability: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Settings {
    pub duration_s: f64,
    pub concurrency: usize,
    pub attachment_bytes: usize,
    pub recipients_mean: f64,
    pub agencies_per_scenario: usize,
    pub window: u32,
    pub rate: String,
    /// Envelopes are signed before each timed phase; signing is never timed.
    pub presigned: bool,
    pub verify_deliveries: bool,
    pub sign_documents: bool,
    /// Encoded signed envelope plus attachment, averaged over the first pool.
    pub payload_bytes_mean: f64,
}

/// A send phase: durable intake alone (no node connected).
#[derive(Debug, Default, Serialize)]
pub struct SendFigures {
    /// Planned documents per second; `None` when unpaced.
    pub rate: Option<f64>,
    pub presigned: usize,
    pub presign_s: f64,
    /// Sends started inside the window.
    pub documents_sent: u64,
    pub documents_acknowledged: u64,
    /// Deliveries the hub queued for those documents.
    pub deliveries_queued: u64,
    /// From the first send to the last acknowledgement.
    pub seconds: f64,
    pub documents_per_second: f64,
    /// From the send (planned start when paced) to the acknowledgement.
    pub send_to_ack: LatencySummary,
    pub failures: u64,
    pub pool_exhausted: bool,
    /// Cores the hub process used on average over the phase.
    pub hub_cores: Option<f64>,
    /// Cores the bench process (clients, TLS, nodes) used over the phase.
    pub bench_cores: Option<f64>,
}

/// Sending with every recipient's node connected and acknowledging.
#[derive(Debug, Default, Serialize)]
pub struct FanoutFigures {
    pub send: SendFigures,
    /// Recipients the hub accepted over the acknowledged documents.
    pub deliveries_expected: u64,
    pub deliveries_received: u64,
    /// From the first send to the last delivery received.
    pub seconds_until_last_delivery: f64,
    pub deliveries_per_second: f64,
    pub send_to_delivery: LatencySummary,
    /// "Arrived" notices the senders received and acknowledged.
    pub arrived_notices: u64,
    /// Arrivals the hub's own counters gained during the phase.
    pub hub_arrivals_recorded: u64,
    /// Received = expected = the hub's arrivals = the notices.
    pub consistent: bool,
}

#[derive(Debug, Default, Serialize)]
pub struct MovesFigures {
    pub prepared_documents: usize,
    pub prepared_deliveries: usize,
    pub preparation_s: f64,
    /// How the moves were sent: 1 is one unary `MoveStatus` call per move;
    /// more is one `MoveStatuses` call carrying up to this many (the whole
    /// paths of a quarter as many deliveries of one recipient).
    pub moves_per_call: usize,
    pub moves: u64,
    pub deliveries_completed: u64,
    /// Calls the hub answered.
    pub move_calls: u64,
    /// From the first move to the last.
    pub seconds: f64,
    pub moves_per_second: f64,
    /// One call's round trip (all its moves made durable in one write before it
    /// is answered), not one move's.
    pub move_call: LatencySummary,
    /// Notices of these moves the senders received while the phase ran.
    pub move_notices_received: u64,
    pub failures: u64,
    pub exhausted: bool,
    pub hub_cores: Option<f64>,
    pub bench_cores: Option<f64>,
}

/// The attachment scenario: one phase per size.
#[derive(Debug, Default, Serialize)]
pub struct AttachmentsFigures {
    /// How attachments travel: in chunks of this many bytes, as a node streams them.
    pub chunk_bytes: usize,
    pub recipients_mean: f64,
    /// Whether the deliveries are part of the run, and how.
    pub deliveries: String,
    /// How the disk's own figure is measured.
    pub disk_method: String,
    /// How the hub's peak memory per phase is measured.
    pub memory_method: String,
    /// What the bench set of the hub's size limits, if anything.
    pub hub_limits: Option<String>,
    pub phases: Vec<AttachmentPhase>,
}

/// One attachment size's phase.
#[derive(Debug, Default, Serialize)]
pub struct AttachmentPhase {
    pub attachment_bytes: u64,
    pub send: SendFigures,
    /// The hub refused every document of this size: its first answer.
    pub refused: Option<String>,
    /// Documents the hub counted as accepted over the phase (its operator counts).
    pub hub_documents_accepted: u64,
    /// Attachment bytes acknowledged (documents × size) per second of the
    /// send window, in millions of bytes.
    pub attachment_mb_per_second: f64,
    pub deliveries_expected: u64,
    pub deliveries_received: u64,
    pub hub_arrivals_recorded: u64,
    pub arrived_notices: u64,
    /// documents acknowledged = the hub's count, and deliveries received =
    /// expected = the hub's arrivals = the notices.
    pub consistent: bool,
    /// Growth of the data directory's allocated size from the phase's
    /// start to its last delivery (the journal is cut back at checkpoints,
    /// so not every byte that went through it is still there)…
    pub data_dir_growth_bytes: Option<u64>,
    /// …per second of the send window, in millions of bytes.
    pub data_dir_mb_per_second: Option<f64>,
    pub disk: Option<DiskBandwidth>,
    pub disk_unmeasured: Option<String>,
    /// The hub's attachment MB/s as a share of the disk's.
    pub hub_over_disk_percent: Option<f64>,
    /// `VmRSS` before the phase, its highest sample over the phase (sends
    /// and the deliveries' drain), and the number of samples.
    pub hub_rss_before_bytes: Option<u64>,
    pub hub_peak_rss_sampled_bytes: Option<u64>,
    pub hub_rss_samples: u64,
    /// `VmHWM` after the phase: the peak over the hub's whole life so far.
    pub hub_lifetime_peak_rss_bytes: Option<u64>,
}

#[derive(Debug, Default, Serialize)]
pub struct ResourceSample {
    pub after: String,
    /// `VmHWM` of the hub process: its peak since it started.
    pub hub_peak_rss_bytes: Option<u64>,
    /// `VmRSS` of the hub process when sampled.
    pub hub_rss_bytes: Option<u64>,
    pub data_dir_bytes: Option<u64>,
    /// Documents the hub has stored (its operator counts).
    pub documents_stored: u64,
    pub bytes_per_document: Option<f64>,
}

#[derive(Debug, Default, Serialize)]
pub struct NatsComparison {
    pub server_version: String,
    pub client: String,
    /// How the hub's recipients map onto JetStream.
    pub mapping: String,
    pub transport: String,
    pub modes: Vec<NatsModeFigures>,
}

#[derive(Debug, Default, Serialize)]
pub struct NatsModeFigures {
    pub mode: String,
    /// What an acknowledgement means in this mode.
    pub durability: String,
    pub server_config: String,
    pub measured: bool,
    pub skipped_because: Option<String>,
    pub rate: Option<f64>,
    pub documents_acknowledged: u64,
    pub deliveries_expected: u64,
    pub deliveries_received: u64,
    pub seconds_until_last_delivery: f64,
    pub deliveries_per_second: f64,
    pub documents_per_second: f64,
    pub publish_to_ack: LatencySummary,
    pub publish_to_delivery: LatencySummary,
    pub server_peak_rss_bytes: Option<u64>,
    pub store_bytes_per_document: Option<f64>,
    /// The hub's deliveries/s (same fan-out, same bytes) over this mode's.
    pub hub_over_jetstream: Option<f64>,
    pub failures: u64,
    pub first_failure: Option<String>,
    /// Cores the nats-server process and the bench used over the phase.
    pub server_cores: Option<f64>,
    pub bench_cores: Option<f64>,
    /// The planned publishes ran out before the end (raise nothing: a bug).
    pub pool_exhausted: bool,
}

/// `1234567` → `1,234,567`.
pub fn group(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (position, digit) in digits.chars().enumerate() {
        if position > 0 && (digits.len() - position).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn latency_line(out: &mut String, what: &str, latency: &LatencySummary) {
    if latency.count == 0 {
        return;
    }
    let _ = writeln!(
        out,
        "    {what:<18} p50 {:>8.2} ms   p99 {:>8.2} ms   p99.9 {:>8.2} ms   max {:>8.2} ms   ({} samples)",
        latency.p50_ms,
        latency.p99_ms,
        latency.p999_ms,
        latency.max_ms,
        group(latency.count)
    );
}

fn cores_line(out: &mut String, server: &str, server_cores: Option<f64>, bench_cores: Option<f64>) {
    let show = |cores: Option<f64>| {
        cores
            .map(|c| format!("{c:.2}"))
            .unwrap_or_else(|| "unknown".into())
    };
    let _ = writeln!(
        out,
        "    CPU: {server} {} cores, bench {} cores (on average over the phase)",
        show(server_cores),
        show(bench_cores)
    );
}

/// How the status moves travelled, for the table.
pub(crate) fn sent_how(moves_per_call: usize) -> String {
    if moves_per_call > 1 {
        format!("up to {moves_per_call} moves per MoveStatuses call")
    } else {
        "one MoveStatus call per move".to_owned()
    }
}

fn pace(rate: Option<f64>) -> String {
    match rate {
        None => "unpaced".to_owned(),
        Some(rate) => format!("paced at {rate:.0} documents/s"),
    }
}

/// `16 MiB` for a table.
fn size_label(bytes: u64) -> String {
    truc_domain::ByteSize(bytes).to_string()
}

fn optional_mib(bytes: Option<u64>) -> String {
    bytes.map(mib).unwrap_or_else(|| "unknown".into())
}

/// The attachment scenario's section of the table.
fn attachments_table(out: &mut String, figures: &AttachmentsFigures) {
    let _ = writeln!(
        out,
        "\nattachments: one per document, streamed in chunks of {} as a node sends them, {} \
         recipients per document on average; MB = 10^6 bytes",
        size_label(figures.chunk_bytes as u64),
        figures.recipients_mean
    );
    let _ = writeln!(out, "    deliveries: {}", figures.deliveries);
    let _ = writeln!(out, "    disk: {}", figures.disk_method);
    let _ = writeln!(out, "    memory: {}", figures.memory_method);
    if let Some(limits) = &figures.hub_limits {
        let _ = writeln!(out, "    hub limits: {limits}");
    }
    let _ = writeln!(
        out,
        "    {:>8} {:>9} {:>9} {:>11} {:>11} {:>11} {:>8} {:>11} {:>10} {:>10}",
        "size",
        "documents",
        "docs/s",
        "attach MB/s",
        "data dir",
        "disk MB/s",
        "hub/disk",
        "p99 → ack",
        "RSS before",
        "RSS peak"
    );
    for phase in &figures.phases {
        if let Some(refused) = &phase.refused {
            let _ = writeln!(
                out,
                "    {:>8} REFUSED by the hub: {refused}",
                size_label(phase.attachment_bytes)
            );
            continue;
        }
        let _ = writeln!(
            out,
            "    {:>8} {:>9} {:>9.1} {:>11.1} {:>11} {:>11} {:>8} {:>8.1} ms {:>10} {:>10}{}",
            size_label(phase.attachment_bytes),
            group(phase.send.documents_acknowledged),
            phase.send.documents_per_second,
            phase.attachment_mb_per_second,
            phase
                .data_dir_mb_per_second
                .map(|rate| format!("{rate:.1} MB/s"))
                .unwrap_or_else(|| "unknown".into()),
            phase
                .disk
                .as_ref()
                .map(|disk| format!("{:.1}", disk.mb_per_second))
                .unwrap_or_else(|| "unknown".into()),
            phase
                .hub_over_disk_percent
                .map(|percent| format!("{percent:.0} %"))
                .unwrap_or_else(|| "n/a".into()),
            phase.send.send_to_ack.p99_ms,
            optional_mib(phase.hub_rss_before_bytes),
            optional_mib(phase.hub_peak_rss_sampled_bytes),
            if phase.consistent {
                ""
            } else {
                "  INCONSISTENT"
            },
        );
    }
    for phase in &figures.phases {
        if phase.refused.is_some() {
            continue;
        }
        let label = size_label(phase.attachment_bytes);
        let _ = writeln!(
            out,
            "    {label}: {} documents acknowledged, the hub counted {}; {} of {} deliveries \
             received, {} arrivals recorded, {} notices{}",
            group(phase.send.documents_acknowledged),
            group(phase.hub_documents_accepted),
            group(phase.deliveries_received),
            group(phase.deliveries_expected),
            group(phase.hub_arrivals_recorded),
            group(phase.arrived_notices),
            if phase.send.pool_exhausted {
                format!(
                    "; the {} pre-signed documents ran out before the end: raise --presign",
                    group(phase.send.presigned as u64)
                )
            } else {
                String::new()
            }
        );
        latency_line(out, "send → ack", &phase.send.send_to_ack);
        if let Some(disk) = &phase.disk {
            let _ = writeln!(
                out,
                "        disk: {} in {} writes of {} with fdatasync in {:.1} s",
                mib(disk.bytes),
                group(disk.syncs),
                size_label(disk.chunk_bytes),
                disk.seconds
            );
        } else if let Some(why) = &phase.disk_unmeasured {
            let _ = writeln!(out, "        disk: not measured: {why}");
        }
        cores_line(out, "hub", phase.send.hub_cores, phase.send.bench_cores);
    }
}

impl BenchReport {
    /// The headline figures and every latency, for a terminal.
    pub fn table(&self) -> String {
        let mut out = String::new();
        self.heading(&mut out);
        intake_table(&mut out, &self.intake);
        fanout_table(&mut out, &self.fanout);
        if let Some(moves) = &self.moves {
            moves_table(&mut out, moves);
        }
        if let Some(attachments) = &self.attachments {
            attachments_table(&mut out, attachments);
        }
        resources_table(&mut out, &self.resources);
        if let Some(nats) = &self.nats {
            nats_table(&mut out, nats);
        }
        failures_list(&mut out, &self.failures);
        out
    }

    /// The machine, the hub, the run's settings and its durability.
    fn heading(&self, out: &mut String) {
        let s = &self.settings;
        let only_attachments = self.attachments.is_some()
            && self.intake.is_empty()
            && self.fanout.is_empty()
            && self.moves.is_none();
        let _ = writeln!(
            out,
            "truc bench on {} cores (Linux {}); hub {} on {}{}",
            self.machine.cores,
            self.machine.kernel,
            if self.hub.spawned {
                "started by the bench as its own process"
            } else {
                "already running"
            },
            self.hub.address,
            self.hub
                .pid
                .map(|p| format!(" (pid {p})"))
                .unwrap_or_default(),
        );
        let _ = writeln!(
            out,
            "{:.0} s per phase, {} in flight, {}, \
             {} recipients per document on average, {} agencies per scenario, window {}{}{}",
            s.duration_s,
            s.concurrency,
            if only_attachments {
                "attachments of the sizes below".to_owned()
            } else {
                format!(
                    "one attachment of {} B ({} B with the signed envelope)",
                    group(s.attachment_bytes as u64),
                    group(s.payload_bytes_mean.round() as u64)
                )
            },
            s.recipients_mean,
            s.agencies_per_scenario,
            s.window,
            if s.verify_deliveries {
                ", recipients verify every delivery"
            } else {
                ""
            },
            if s.sign_documents {
                ", documents carry their own signature"
            } else {
                ""
            },
        );
        let _ = writeln!(
            out,
            "envelopes are signed before each timed phase (the generator's signing is not measured)"
        );
        let _ = writeln!(out, "durability: {}", self.hub.durability);
    }
}

/// The intake phases: sends with no node connected.
fn intake_table(out: &mut String, intake: &[SendFigures]) {
    for figures in intake {
        let _ = writeln!(
            out,
            "\nintake, {} (no node connected): {} documents acknowledged in {:.1} s = {:.0} documents/s \
             ({} deliveries queued){}",
            pace(figures.rate),
            group(figures.documents_acknowledged),
            figures.seconds,
            figures.documents_per_second,
            group(figures.deliveries_queued),
            if figures.pool_exhausted {
                format!("; the {} pre-signed documents ran out before the end: raise --presign", group(figures.presigned as u64))
            } else {
                String::new()
            },
        );
        latency_line(out, "send → ack", &figures.send_to_ack);
        cores_line(out, "hub", figures.hub_cores, figures.bench_cores);
    }
}

/// The fan-out phases: sends with every recipient's node connected.
fn fanout_table(out: &mut String, fanout: &[FanoutFigures]) {
    for figures in fanout {
        let _ = writeln!(
            out,
            "\nfan-out, {}: {} documents, {} of {} deliveries received in {:.1} s = {:.0} deliveries/s \
             ({:.0} documents/s acknowledged){}",
            pace(figures.send.rate),
            group(figures.send.documents_acknowledged),
            group(figures.deliveries_received),
            group(figures.deliveries_expected),
            figures.seconds_until_last_delivery,
            figures.deliveries_per_second,
            figures.send.documents_per_second,
            if figures.send.pool_exhausted {
                "; the pre-signed documents ran out before the end: raise --presign"
            } else {
                ""
            },
        );
        latency_line(out, "send → ack", &figures.send.send_to_ack);
        latency_line(out, "send → delivery", &figures.send_to_delivery);
        cores_line(out, "hub", figures.send.hub_cores, figures.send.bench_cores);
        let _ = writeln!(
            out,
            "    arrivals recorded by the hub {}, arrival notices acknowledged by \
             senders {}: {}",
            group(figures.hub_arrivals_recorded),
            group(figures.arrived_notices),
            if figures.consistent {
                "consistent"
            } else {
                "INCONSISTENT"
            }
        );
    }
}

/// The status moves phase.
fn moves_table(out: &mut String, moves: &MovesFigures) {
    let _ = writeln!(
        out,
        "\nstatus moves (received → assigned → processing → completed), {}: {} moves in {} calls, \
         {:.1} s = {:.0} moves/s ({} deliveries completed; {} documents, {} deliveries prepared in {:.1} s){}",
        sent_how(moves.moves_per_call),
        group(moves.moves),
        group(moves.move_calls),
        moves.seconds,
        moves.moves_per_second,
        group(moves.deliveries_completed),
        group(moves.prepared_documents as u64),
        group(moves.prepared_deliveries as u64),
        moves.preparation_s,
        if moves.exhausted {
            "; the prepared deliveries ran out before the end: raise --moves-documents"
        } else {
            ""
        },
    );
    latency_line(out, "move call", &moves.move_call);
    cores_line(out, "hub", moves.hub_cores, moves.bench_cores);
}

/// The hub process's memory and data directory after each phase.
fn resources_table(out: &mut String, resources: &[ResourceSample]) {
    if !resources.is_empty() {
        let _ = writeln!(out, "\nhub process");
        for sample in resources {
            let _ = writeln!(
                out,
                "    after {:<11} RSS {:>10}   peak RSS {:>10}   data {:>10} for {} documents = {} per document",
                sample.after,
                sample.hub_rss_bytes.map(mib).unwrap_or_else(|| "unknown".into()),
                sample.hub_peak_rss_bytes.map(mib).unwrap_or_else(|| "unknown".into()),
                sample.data_dir_bytes.map(mib).unwrap_or_else(|| "unknown".into()),
                group(sample.documents_stored),
                sample
                    .bytes_per_document
                    .map(|b| format!("{} B", group(b.round() as u64)))
                    .unwrap_or_else(|| "unknown".into()),
            );
        }
    }
}

/// NATS JetStream measured beside the hub.
fn nats_table(out: &mut String, nats: &NatsComparison) {
    let _ = writeln!(
        out,
        "\nNATS JetStream {} side by side (client {}; {})",
        nats.server_version, nats.client, nats.transport
    );
    let _ = writeln!(out, "    mapping: {}", nats.mapping);
    for mode in &nats.modes {
        let _ = writeln!(out, "  {}: {}", mode.mode, mode.durability);
        if !mode.measured {
            let _ = writeln!(
                out,
                "    not measured: {}",
                mode.skipped_because.as_deref().unwrap_or("")
            );
            continue;
        }
        let _ = writeln!(
            out,
            "    {}: {} documents, {} of {} deliveries in {:.1} s = {:.0} deliveries/s; \
             hub / JetStream = {}",
            pace(mode.rate),
            group(mode.documents_acknowledged),
            group(mode.deliveries_received),
            group(mode.deliveries_expected),
            mode.seconds_until_last_delivery,
            mode.deliveries_per_second,
            mode.hub_over_jetstream
                .map(|r| format!("{r:.2}"))
                .unwrap_or_else(|| "n/a".into()),
        );
        latency_line(out, "publish → ack", &mode.publish_to_ack);
        latency_line(out, "publish → delivery", &mode.publish_to_delivery);
        cores_line(out, "nats-server", mode.server_cores, mode.bench_cores);
        let _ = writeln!(
            out,
            "    server peak RSS {}, store {} per document",
            mode.server_peak_rss_bytes
                .map(mib)
                .unwrap_or_else(|| "unknown".into()),
            mode.store_bytes_per_document
                .map(|b| format!("{} B", group(b.round() as u64)))
                .unwrap_or_else(|| "unknown".into()),
        );
    }
}

/// The run's failures, or that there were none.
fn failures_list(out: &mut String, failures: &[String]) {
    if failures.is_empty() {
        let _ = writeln!(out, "\nno failures");
    } else {
        let _ = writeln!(
            out,
            "\n{} FAILURES (these figures are not a measurement):",
            failures.len()
        );
        for failure in failures {
            let _ = writeln!(out, "    {failure}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1234567), "1,234,567");
    }

    #[test]
    fn the_table_names_failures_and_inconsistencies() {
        let report = BenchReport {
            fanout: vec![FanoutFigures {
                deliveries_expected: 10,
                deliveries_received: 9,
                consistent: false,
                ..FanoutFigures::default()
            }],
            failures: vec!["the hub refused".into()],
            ..BenchReport::default()
        };
        let table = report.table();
        assert!(table.contains("INCONSISTENT"), "{table}");
        assert!(table.contains("1 FAILURES"), "{table}");
        assert!(table.contains("9 of 10 deliveries"), "{table}");
    }

    #[test]
    fn the_attachment_table_shows_each_size_and_names_refusals() {
        let report = BenchReport {
            attachments: Some(AttachmentsFigures {
                chunk_bytes: 256 << 10,
                deliveries: "made and acknowledged".into(),
                phases: vec![
                    AttachmentPhase {
                        attachment_bytes: 1 << 20,
                        send: SendFigures {
                            documents_acknowledged: 300,
                            documents_per_second: 100.0,
                            ..SendFigures::default()
                        },
                        attachment_mb_per_second: 104.9,
                        disk: Some(DiskBandwidth {
                            mb_per_second: 150.0,
                            ..DiskBandwidth::default()
                        }),
                        hub_over_disk_percent: Some(69.9),
                        consistent: true,
                        ..AttachmentPhase::default()
                    },
                    AttachmentPhase {
                        attachment_bytes: 128 << 20,
                        refused: Some("RESOURCE_EXHAUSTED: attachments: too large".into()),
                        ..AttachmentPhase::default()
                    },
                ],
                ..AttachmentsFigures::default()
            }),
            ..BenchReport::default()
        };
        let table = report.table();
        assert!(table.contains("attachments of the sizes below"), "{table}");
        assert!(table.contains("chunks of 256 KiB"), "{table}");
        let row = table
            .lines()
            .find(|line| line.trim_start().starts_with("1 MiB "))
            .unwrap_or_else(|| panic!("{table}"));
        for figure in ["300", "100.0", "104.9", "150.0", "70 %"] {
            assert!(row.contains(figure), "{figure} in {row}");
        }
        assert!(
            table.contains("128 MiB REFUSED by the hub: RESOURCE_EXHAUSTED"),
            "{table}"
        );
    }

    #[test]
    fn the_table_says_how_moves_were_sent() {
        let batched = BenchReport {
            moves: Some(MovesFigures {
                moves_per_call: 64,
                moves: 6400,
                move_calls: 100,
                ..MovesFigures::default()
            }),
            ..BenchReport::default()
        };
        let table = batched.table();
        assert!(
            table.contains("up to 64 moves per MoveStatuses call: 6,400 moves in 100 calls"),
            "{table}"
        );
        let unary = BenchReport {
            moves: Some(MovesFigures {
                moves_per_call: 1,
                ..MovesFigures::default()
            }),
            ..BenchReport::default()
        };
        assert!(unary.table().contains("one MoveStatus call per move"));
    }
}
