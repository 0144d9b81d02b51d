//! `truc demo`: the whole axis in one process on a temporary directory — a
//! hub, agency nodes with real certificates, documents with several
//! recipients, status moves — and a summary with the measured rates.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::{mpsc, Semaphore};
use truc_domain::views::StatusCode;
use truc_domain::Status;
use truc_hub::{AgencyEntry, Directory, HubSetup};
use truc_node::{Attachment, AxisClient, Draft, NodeConfig, NodeEvent};

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Documents to send.
    #[arg(long, default_value_t = 300)]
    documents: u32,
    /// Sends in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Bytes of the attachment each document carries.
    #[arg(long, default_value_t = 64 * 1024)]
    attachment_bytes: usize,
    /// Keep everything in this folder instead of a temporary one.
    #[arg(long)]
    keep: Option<PathBuf>,
}

const AGENCIES: [(&str, &str); 6] = [
    ("000.00.00.G22", "Văn phòng Chính phủ"),
    ("000.00.00.G12", "Bộ Tài chính"),
    ("000.00.00.G17", "Bộ Xây dựng"),
    ("000.00.00.G09", "Bộ Nội vụ"),
    ("000.00.00.H41", "UBND tỉnh Nghệ An"),
    ("000.00.18.G12", "Tổng cục Thuế"),
];
const RECIPIENTS_PER_DOCUMENT: usize = 3;
const OPERATOR: &str = "ops";

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * fraction).round() as usize]
}

/// The embedded hub of the demo, on a loopback port.
struct RunningHub {
    address: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), truc_hub::RunError>>,
}

/// The node agents, one per agency, and what they report.
struct RunningNodes {
    events: mpsc::Receiver<NodeEvent>,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// How the sends went: each one's latency, sorted, the documents' ids in order, and how
/// long they all took.
struct Sent {
    latencies: Vec<Duration>,
    document_ids: Vec<String>,
    elapsed: Duration,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let temporary = tempfile::tempdir()?;
    let root = args
        .keep
        .clone()
        .unwrap_or_else(|| temporary.path().to_owned());
    std::fs::create_dir_all(&root)?;
    println!("truc demo in {}", root.display());

    let agencies: Vec<(String, String)> = AGENCIES
        .iter()
        .map(|(c, n)| (c.to_string(), n.to_string()))
        .collect();
    let pki = truc_pki::init_dev_pki(
        &root.join("pki"),
        &agencies,
        &[OPERATOR.into()],
        Duration::from_secs(86_400),
    )
    .context("making the development PKI (is --keep pointing at an old demo?)")?;
    let hub = start_hub(&root, &pki).await?;
    let address = hub.address;
    println!(
        "hub on {address} (mutual TLS 1.3), {} agencies with their own certificates",
        AGENCIES.len()
    );
    let mut nodes = start_nodes(address, &pki, &root)?;
    let mut clients = BTreeMap::new();
    for (code, _) in AGENCIES {
        clients.insert(
            code,
            AxisClient::connect(address, &pki.trust_roots()?, pki.agency_credentials(code)?)
                .await?,
        );
    }

    let limit = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let started = Instant::now();
    let sent = send_documents(&args, &clients, &limit).await?;
    let expected = args.documents as usize * RECIPIENTS_PER_DOCUMENT;
    let (deliveries, arrived_notices) = wait_for_deliveries(&mut nodes.events, expected).await?;
    let delivered_elapsed = started.elapsed();
    let moves_started = Instant::now();
    let moves = move_deliveries(deliveries, &clients, &limit).await?;
    let moves_elapsed = moves_started.elapsed();
    // The sender hears of every move.
    let mut notices = arrived_notices;
    while notices < expected + moves {
        let event = tokio::time::timeout(Duration::from_secs(60), nodes.events.recv())
            .await
            .context("status notices stopped arriving")?
            .context("nodes stopped")?;
        if matches!(event, NodeEvent::Notice(_)) {
            notices += 1;
        }
    }

    let operator = AxisClient::connect(
        address,
        &pki.trust_roots()?,
        pki.operator_credentials(OPERATOR)?,
    )
    .await?;
    let counts = operator.counts("", "").await?;
    let example = operator
        .get_status(&sent.document_ids[9.min(sent.document_ids.len() - 1)])
        .await?;
    print_counts(&counts);
    print_example(&example);
    let per_second =
        |count: usize, elapsed: Duration| count as f64 / elapsed.as_secs_f64().max(1e-9);
    println!();
    println!(
        "sent {} documents in {:.2} s: {:.0} documents/s ({} in flight); send→ack p50 {:.1} ms, p99 {:.1} ms",
        args.documents,
        sent.elapsed.as_secs_f64(),
        per_second(args.documents as usize, sent.elapsed),
        args.concurrency,
        percentile(&sent.latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&sent.latencies, 0.99).as_secs_f64() * 1e3,
    );
    println!(
        "{} deliveries verified and written to inboxes, all arrived after {:.2} s; {} status moves in {:.2} s ({:.0}/s); {} notices back to senders",
        expected,
        delivered_elapsed.as_secs_f64(),
        moves,
        moves_elapsed.as_secs_f64(),
        per_second(moves, moves_elapsed),
        notices,
    );

    let consistent =
        counts.total_sent == u64::from(args.documents) && counts.total_received == expected as u64;
    let _ = nodes.stop.send(true);
    for node in nodes.tasks {
        let _ = node.await;
    }
    drop((clients, operator));
    let _ = hub.stop.send(());
    hub.task.await??;
    if consistent {
        println!("every document reached every recipient exactly once; the hub's counts agree");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("the hub's counts disagree with what was sent");
        Ok(ExitCode::FAILURE)
    }
}

/// A hub on a loopback port, its data in `root`, the demo's agencies in its directory.
async fn start_hub(root: &std::path::Path, pki: &truc_pki::PkiPaths) -> anyhow::Result<RunningHub> {
    let store =
        truc_store::Store::open(&root.join("hub-data"), &truc_store::StoreOptions::default())?;
    let directory = Directory::new(AGENCIES.iter().map(|(code, name)| {
        AgencyEntry::direct(code.parse().expect("demo codes are well formed"), *name)
    }));
    let setup = HubSetup {
        store,
        directory,
        trust: pki.trust_roots()?,
        credentials: pki.hub_credentials()?,
        limits: truc_domain::Limits::default(),
        delivery: truc_hub::config::DeliveryConfig::default(),
        watch: truc_hub::WatchSetup::default(),
        security: Default::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let (stop, hub_stopped) = tokio::sync::oneshot::channel::<()>();
    // The PKI lives a day and goes with the demo: its expiry concerns no one.
    let observe = truc_hub::Observe {
        certificate_warning_days: 0,
        ..truc_hub::Observe::default()
    };
    let task = tokio::spawn(truc_hub::run_observed(listener, setup, observe, async {
        let _ = hub_stopped.await;
    }));
    Ok(RunningHub {
        address,
        stop,
        task,
    })
}

/// One node per agency, each writing into its own inbox.
fn start_nodes(
    address: std::net::SocketAddr,
    pki: &truc_pki::PkiPaths,
    root: &std::path::Path,
) -> anyhow::Result<RunningNodes> {
    let (events, event_receiver) = mpsc::channel(4096);
    let (stop_nodes, nodes_stopped) = tokio::sync::watch::channel(false);
    let mut nodes = Vec::new();
    for (code, _) in AGENCIES {
        let config = NodeConfig {
            hubs: address.into(),
            roots: pki.trust_roots()?,
            credentials: pki.agency_credentials(code)?,
            inbox: Some(root.join("inbox").join(code)),
            window: 64,
            events: Some(events.clone()),
            backoff_max: Duration::from_secs(1),
            edxml: false,
            outbox: None,
        };
        let mut stopped = nodes_stopped.clone();
        nodes.push(tokio::spawn(truc_node::run_node(config, async move {
            let _ = stopped.changed().await;
        })));
    }
    Ok(RunningNodes {
        events: event_receiver,
        stop: stop_nodes,
        tasks: nodes,
    })
}

/// Every agency sends in turn, to the next three agencies, at most `--concurrency` at once.
async fn send_documents(
    args: &DemoArgs,
    clients: &BTreeMap<&'static str, AxisClient>,
    limit: &Arc<Semaphore>,
) -> anyhow::Result<Sent> {
    let today = crate::today_in_vietnam();
    let started = Instant::now();
    let mut sends = Vec::new();
    for number in 0..args.documents {
        let sender_index = number as usize % AGENCIES.len();
        let sender = AGENCIES[sender_index].0;
        let to: Vec<String> = (1..=RECIPIENTS_PER_DOCUMENT)
            .map(|step| {
                AGENCIES[(sender_index + step) % AGENCIES.len()]
                    .0
                    .to_string()
            })
            .collect();
        let draft = Draft {
            from: sender.to_string(),
            from_name: AGENCIES[sender_index].1.to_string(),
            to,
            number: (number + 1).to_string(),
            notation: "TLT-DEMO".into(),
            place: "Hà Nội".into(),
            date: today.clone(),
            subject: format!(
                "Văn bản thử nghiệm số {} về việc liên thông văn bản điện tử",
                number + 1
            ),
            sign_document: number % 2 == 0,
            ..Draft::default()
        };
        let mut content = vec![0u8; args.attachment_bytes];
        for (index, byte) in content.iter_mut().enumerate() {
            *byte = (index as u32).wrapping_mul(31).wrapping_add(number) as u8;
        }
        let attachment = Attachment::bytes("vanban.pdf", "application/pdf", content);
        let client = clients[sender].clone();
        let permit = limit.clone().acquire_owned().await?;
        sends.push(tokio::spawn(async move {
            let sent_at = Instant::now();
            let result = client.send(&draft, vec![attachment]).await;
            drop(permit);
            result.map(|response| (response, sent_at.elapsed()))
        }));
    }
    let mut latencies = Vec::new();
    let mut document_ids = Vec::new();
    for send in sends {
        let (response, latency) = send.await??;
        latencies.push(latency);
        document_ids.push(response.document_id);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    Ok(Sent {
        latencies,
        document_ids,
        elapsed,
    })
}

/// Waits for every delivery and every arrival notice; returns the deliveries (document,
/// recipient) and the arrival notices counted.
async fn wait_for_deliveries(
    events: &mut mpsc::Receiver<NodeEvent>,
    expected: usize,
) -> anyhow::Result<(Vec<(String, String)>, usize)> {
    let (mut delivered, mut arrived_notices) = (0usize, 0usize);
    let mut deliveries: Vec<(String, String)> = Vec::new();
    while delivered < expected || arrived_notices < expected {
        let event = tokio::time::timeout(Duration::from_secs(60), events.recv())
            .await
            .context("deliveries stopped arriving")?
            .context("nodes stopped")?;
        match event {
            NodeEvent::Delivered {
                document_id,
                recipient,
                ..
            } => {
                delivered += 1;
                deliveries.push((document_id, recipient));
            }
            NodeEvent::Notice(notice)
                if notice
                    .entries
                    .iter()
                    .any(|e| e.status == StatusCode::Status(Status::Arrived)) =>
            {
                arrived_notices += 1
            }
            NodeEvent::Refused {
                document_id,
                reason,
            } => anyhow::bail!("{document_id} refused: {reason}"),
            _ => {}
        }
    }
    Ok((deliveries, arrived_notices))
}

/// Recipients move their documents on; one in ten is rejected with a reason. Returns the
/// moves made.
async fn move_deliveries(
    deliveries: Vec<(String, String)>,
    clients: &BTreeMap<&'static str, AxisClient>,
    limit: &Arc<Semaphore>,
) -> anyhow::Result<usize> {
    let mut moving = Vec::new();
    for (index, (document_id, recipient)) in deliveries.into_iter().enumerate() {
        let client = clients[recipient.as_str()].clone();
        let limit = limit.clone();
        moving.push(tokio::spawn(async move {
            let _permit = limit.acquire_owned().await?;
            let path: &[(Status, &str)] = if index % 10 == 9 {
                &[
                    (Status::Received, ""),
                    (Status::Rejected, "Không đúng thẩm quyền xử lý"),
                ]
            } else {
                &[
                    (Status::Received, ""),
                    (Status::Assigned, ""),
                    (Status::Processing, ""),
                    (Status::Completed, ""),
                ]
            };
            for (status, reason) in path {
                client
                    .move_status(&document_id, None, *status, reason)
                    .await?;
            }
            anyhow::Ok(path.len())
        }));
    }
    let mut moves = 0usize;
    for task in moving {
        moves += task.await??;
    }
    Ok(moves)
}

/// The hub's counts per agency, as a table.
fn print_counts(counts: &truc_domain::views::Counts) {
    println!();
    println!(
        "{:<15} {:<22} {:>6} {:>9}",
        "agency", "name", "sent", "received"
    );
    for row in &counts.agencies {
        let name = AGENCIES
            .iter()
            .find(|(c, _)| *c == row.organ_id)
            .map(|(_, n)| *n)
            .unwrap_or("");
        println!(
            "{:<15} {:<22} {:>6} {:>9}",
            row.organ_id, name, row.sent, row.received
        );
    }
    println!(
        "{:<15} {:<22} {:>6} {:>9}",
        "total", "", counts.total_sent, counts.total_received
    );
}

/// One document's history at each recipient.
fn print_example(example: &truc_domain::views::DocumentStatus) {
    println!();
    println!(
        "one document: {} — {}",
        example.document_id, example.subject
    );
    for recipient in &example.recipients {
        let steps: Vec<String> = recipient
            .history
            .iter()
            .map(|e| {
                if e.reason.is_empty() {
                    crate::status_name(e.status).to_owned()
                } else {
                    format!("{} «{}»", crate::status_name(e.status), e.reason)
                }
            })
            .collect();
        println!("  {} {}", recipient.recipient, steps.join(" → "));
    }
}
