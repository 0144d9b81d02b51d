//! The `truc` binary as a user runs it: certificates made by `truc certs
//! init`, the hub as its own process, `truc send` and `truc status` (given a
//! dead address before the hub's), a
//! `kill -9` of the hub after which every acknowledged send is still there,
//! and what operators see: the printed configuration with its environment
//! overrides, JSON logs and the metrics endpoint. With TRUC_PYTHON_TESTS=1,
//! also the Python client against the hub process. And `truc bench` against the
//! hub process it starts, whose figures must add up. And `truc edxml check`
//! and `show` on the examples of `docs/edxml/`. And what a new user meets in
//! the first hour: exit codes, errors that name the real cause (another
//! CA, a data directory in use, no PKI where looked), times in Vietnam time,
//! what the hub logs at the default level, and a kept replay reported again.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use truc_node::{Attachment, AxisClient, Draft};
use truc_pki::PkiPaths;

mod support;

use support::{truc, TRUC};

const SENDER: &str = "000.00.00.G22";
const RECIPIENTS: [&str; 2] = ["000.00.00.H41", "000.00.00.G12"];

struct HubProcess {
    child: Child,
}

impl HubProcess {
    fn start(config: &Path) -> HubProcess {
        Self::start_with(config, &[], &[], Stdio::null())
    }

    fn start_with(
        config: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        stderr: impl Into<Stdio>,
    ) -> HubProcess {
        let child = Command::new(TRUC)
            .args(["hub", "--config", config.to_str().expect("utf-8 path")])
            .args(args)
            // The default level unless a test asks for another.
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn hub");
        HubProcess { child }
    }

    /// SIGTERM, as a service manager stops the hub; waits for the exit
    /// while this test's runtime keeps serving its client connections, which
    /// the hub's graceful shutdown waits for.
    async fn terminate(&mut self) -> std::process::ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success());
        for _ in 0..600 {
            if let Some(status) = self.child.try_wait().expect("poll hub") {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the hub did not stop within 30 s of SIGTERM");
    }

    fn kill_9(&mut self) {
        // SIGKILL: no shutdown code runs.
        self.child.kill().expect("kill hub");
        self.child.wait().expect("reap hub");
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connects as soon as the hub process accepts; it is a separate process, so
/// readiness can only be observed from outside.
async fn connect(
    address: SocketAddr,
    pki: &PkiPaths,
    credentials: truc_pki::Credentials,
) -> AxisClient {
    for _ in 0..400 {
        if let Ok(client) =
            AxisClient::connect(address, &pki.trust_roots().unwrap(), credentials.clone()).await
        {
            if client.counts("", "").await.is_ok() {
                return client;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("hub at {address} never became ready");
}

/// A port free at the moment of asking.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn setup(root: &Path) -> (PathBuf, SocketAddr, PkiPaths) {
    let directory = root.join("agencies.toml");
    let mut text = String::new();
    for code in std::iter::once(SENDER).chain(RECIPIENTS) {
        text.push_str(&format!(
            "[[agency]]\ncode = \"{code}\"\nname = \"Agency {code}\"\n\n"
        ));
    }
    std::fs::write(&directory, text).unwrap();
    let certs = root.join("certs");
    truc(&[
        "certs",
        "init",
        "--dir",
        certs.to_str().unwrap(),
        "--directory",
        directory.to_str().unwrap(),
    ]);
    let port = free_port();
    let address: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let config = root.join("hub.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"{address}\"\ndata_dir = \"data\"\ndirectory = \"agencies.toml\"\n[tls]\nca_cert = \"certs/ca.crt\"\ncert = \"certs/hub.crt\"\nkey = \"certs/hub.key\"\n"
        ),
    )
    .unwrap();
    (config, address, PkiPaths::new(certs))
}

fn draft(number: u32) -> Draft {
    Draft {
        from: SENDER.into(),
        to: RECIPIENTS.iter().map(|s| s.to_string()).collect(),
        number: number.to_string(),
        notation: "VPCP-KILL".into(),
        date: "2024-05-06".into(),
        subject: format!("Văn bản {number}"),
        ..Draft::default()
    }
}

#[tokio::test]
async fn acknowledged_sends_survive_kill_9_and_the_cli_works_against_a_hub_process() {
    let root = tempfile::tempdir().unwrap();
    let (config, address, pki) = setup(root.path());
    let mut hub = HubProcess::start(&config);
    let client = connect(address, &pki, pki.agency_credentials(SENDER).unwrap()).await;

    // Sends in flight while the hub is killed.
    let mut tasks = Vec::new();
    for number in 1..=400u32 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let attachment =
                Attachment::bytes("vb.pdf", "application/pdf", vec![number as u8; 3000]);
            client
                .send(&draft(number), vec![attachment])
                .await
                .map(|r| r.document_id)
        }));
        if number == 150 {
            // Let some sends be acknowledged first.
            tokio::task::yield_now().await;
        }
    }
    let mut acknowledged = Vec::new();
    let mut killed = false;
    for (index, task) in tasks.into_iter().enumerate() {
        if index == 20 && !killed {
            hub.kill_9();
            killed = true;
        }
        if let Ok(id) = task.await.unwrap() {
            acknowledged.push(id);
        }
    }
    assert!(killed);
    assert!(
        !acknowledged.is_empty(),
        "some sends were acknowledged before the kill"
    );

    let mut hub = HubProcess::start(&config);
    let operator = connect(address, &pki, pki.operator_credentials("ops").unwrap()).await;
    for id in &acknowledged {
        let status = operator
            .get_status(id)
            .await
            .unwrap_or_else(|e| panic!("{id} lost: {e}"));
        assert_eq!(status.recipients.len(), 2, "{id} has all its deliveries");
    }
    // Nothing half-written: the sender's count equals the documents present.
    let counts = operator.counts("", "").await.unwrap();
    let mut present = 0;
    for number in 1..=400u32 {
        if operator
            .get_status(&draft(number).document_id())
            .await
            .is_ok()
        {
            present += 1;
        }
    }
    assert_eq!(counts.total_sent, present);
    assert!(present >= acknowledged.len() as u64);
    eprintln!(
        "kill -9 with 400 sends under way: {} acknowledged, {present} stored, none lost",
        acknowledged.len()
    );

    // The CLI against the same hub process, given an address where nothing
    // listens first: repeated flags for the send, a comma list for the status.
    let attachment = root.path().join("vanban.pdf");
    std::fs::write(&attachment, b"%PDF-1.7 test").unwrap();
    let dead = format!("127.0.0.1:{}", free_port());
    let (hub_flag, certs_flag) = (address.to_string(), pki.dir.to_str().unwrap().to_owned());
    let hub_list = format!("{dead},{hub_flag}");
    let common = ["--hub", hub_list.as_str(), "--certs", certs_flag.as_str()];
    let mut send = vec!["send", "--hub", dead.as_str(), "--hub", hub_flag.as_str()];
    send.extend(["--certs", certs_flag.as_str()]);
    send.extend([
        "--as",
        SENDER,
        "--to",
        RECIPIENTS[0],
        "--to",
        "000.00.00.X99",
        "--number",
        "9001",
        "--notation",
        "VPCP-CLI",
        "--date",
        "2024-05-07",
        "--subject",
        "Gửi bằng dòng lệnh",
        "--attach",
        attachment.to_str().unwrap(),
        "--sign-document",
    ]);
    // One recipient refused: exit code 3, so that a script notices.
    let output = Command::new(TRUC).args(&send).output().expect("run truc");
    assert_eq!(output.status.code(), Some(3), "{output:?}");
    let sent = String::from_utf8(output.stdout).unwrap();
    assert!(
        sent.contains("accepted: 000.00.00.G22,2024/05/07,9001/VPCP-CLI"),
        "{sent}"
    );
    let said = String::from_utf8(output.stderr).unwrap();
    assert!(
        said.contains(&format!("answered by the hub at {address}")),
        "{said}"
    );
    assert!(sent.contains("✗ 000.00.00.X99"), "{sent}");
    let mut status = vec!["status", "000.00.00.G22,2024/05/07,9001/VPCP-CLI"];
    status.extend(common);
    status.extend(["--as", SENDER, "--json"]);
    let shown: serde_json::Value = serde_json::from_slice(&truc(&status).stdout).unwrap();
    assert_eq!(shown["recipients"][0]["recipient"], RECIPIENTS[0]);
    assert_eq!(shown["recipients"][0]["current"], "queued");
    hub.kill_9();
}

#[test]
fn print_config_shows_environment_overrides_and_refuses_unknown_variables() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/hub.toml");
    let print = |env: &[(&str, &str)]| {
        Command::new(TRUC)
            .args([
                "hub",
                "--config",
                example.to_str().unwrap(),
                "--print-config",
            ])
            .envs(env.iter().copied())
            .output()
            .expect("run truc")
    };
    let printed = print(&[("TRUC_HUB__DELIVERY__WINDOW_MAX", "7")]);
    assert!(printed.status.success(), "{printed:?}");
    let text = String::from_utf8(printed.stdout).unwrap();
    assert!(
        text.contains(
            "# Default: 1024. Environment: TRUC_HUB__DELIVERY__WINDOW_MAX.\nwindow_max = 7\n"
        ),
        "{text}"
    );
    assert!(text.contains("\n[observe]\n"), "{text}");

    let refused = print(&[("TRUC_HUB__DELIVERY__WINDOWMAX", "7")]);
    assert_eq!(refused.status.code(), Some(1));
    let message = String::from_utf8(refused.stderr).unwrap();
    assert!(
        message.contains("TRUC_HUB__DELIVERY__WINDOWMAX names no configuration key"),
        "{message}"
    );
}

/// The body of `GET /metrics` on a hub process, once it answers.
async fn scrape(address: SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(address)
        .await
        .expect("metrics port accepts");
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    response
}

#[tokio::test]
async fn a_hub_process_logs_json_lines_with_document_ids_and_serves_metrics() {
    let root = tempfile::tempdir().unwrap();
    let (config, address, pki) = setup(root.path());
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let log_path = root.path().join("hub.log");
    let mut hub = HubProcess::start_with(
        &config,
        &["--log-format", "json"],
        &[
            ("RUST_LOG", "warn,truc_hub=debug"),
            ("TRUC_HUB__OBSERVE__METRICS_LISTEN", &metrics.to_string()),
        ],
        std::fs::File::create(&log_path).unwrap(),
    );
    let client = connect(address, &pki, pki.agency_credentials(SENDER).unwrap()).await;
    let attachment = Attachment::bytes("vb.pdf", "application/pdf", vec![1; 100]);
    let sent = client.send(&draft(1), vec![attachment]).await.unwrap();

    // A separate process: its counts are this test's alone.
    let body = scrape(metrics).await;
    assert!(
        body.contains(&format!(
            "truc_sends_total{{agency=\"{SENDER}\",outcome=\"accepted\"}} 1\n"
        )),
        "{body}"
    );
    assert!(
        hub.terminate().await.success(),
        "SIGTERM stops the hub cleanly"
    );

    let logs = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let accepted = lines
        .iter()
        .find(|line| line["fields"]["message"] == "send accepted")
        .unwrap_or_else(|| panic!("no \"send accepted\" line in {logs}"));
    assert_eq!(accepted["level"], "DEBUG");
    assert_eq!(accepted["span"]["name"], "send");
    assert_eq!(accepted["span"]["document_id"], sent.document_id.as_str());
}

/// SIGHUP makes a hub process read its directory at once (its interval here
/// is an hour): a code taken out is refused from then on. Its human log
/// holds only lines it wrote, though a client sent a notation with a line
/// feed and a forged line after it.
#[tokio::test]
async fn sighup_reloads_the_directory_and_the_human_log_is_not_forged() {
    let root = tempfile::tempdir().unwrap();
    let (config, address, pki) = setup(root.path());
    let log_path = root.path().join("hub.log");
    let mut hub = HubProcess::start_with(
        &config,
        &["--log-format", "human"],
        &[("TRUC_HUB__DIRECTORY_RELOAD_SECONDS", "3600")],
        std::fs::File::create(&log_path).unwrap(),
    );
    let removed = RECIPIENTS[0];
    let sender = connect(address, &pki, pki.agency_credentials(SENDER).unwrap()).await;
    let recipient = connect(address, &pki, pki.agency_credentials(removed).unwrap()).await;

    let mut forged = draft(1);
    forged.notation =
        "VPCP\n2026-12-06T00:00:00.000000Z  WARN truc::security: security event".into();
    let attachment = Attachment::bytes("vb.pdf", "application/pdf", vec![1; 100]);
    let refused = sender.send(&forged, vec![attachment]).await.unwrap_err();
    assert_eq!(
        refused.code(),
        Some(tonic::Code::InvalidArgument),
        "{refused}"
    );

    let text: String = std::iter::once(SENDER)
        .chain([RECIPIENTS[1]])
        .map(|code| format!("[[agency]]\ncode = \"{code}\"\nname = \"Agency {code}\"\n\n"))
        .collect();
    std::fs::write(root.path().join("agencies.toml"), text).unwrap();
    let hung_up = Command::new("kill")
        .args(["-HUP", &hub.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(hung_up.success());
    let mut refused_at_last = false;
    for _ in 0..600 {
        if let Err(truc_node::ClientError::Refused(status)) = recipient.counts("", "").await {
            assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
            assert!(status.message().contains(removed), "{status:?}");
            refused_at_last = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        refused_at_last,
        "the directory was not read again on SIGHUP"
    );
    sender.counts("", "").await.expect("the others still act");
    assert!(hub.terminate().await.success());

    let logs = std::fs::read_to_string(&log_path).unwrap();
    assert!(logs.contains("directory reloaded"), "{logs}");
    assert!(logs.contains("send refused"), "{logs}");
    // The banner for people is the one line that is not an event.
    for line in logs
        .lines()
        .filter(|line| !line.starts_with("truc hub listening"))
    {
        assert!(
            line.len() > 20 && line.as_bytes()[..4].iter().all(u8::is_ascii_digit),
            "a line the hub did not write: {line:?} in\n{logs}"
        );
        assert!(
            !line.starts_with("2026-12-06T00:00:00.000000Z"),
            "a forged line: {line:?}"
        );
    }
}

/// The Python client of `clients/python` against this binary as a hub process,
/// in an all-P-256 PKI and in a mixed one (see `clients/python/run_test.py`).
/// Opt-in with TRUC_PYTHON_TESTS=1: it needs python3, and its first run
/// installs grpcio and cryptography from PyPI into `clients/python/.venv`.
#[test]
fn python_client_against_a_hub_process() {
    if std::env::var("TRUC_PYTHON_TESTS").as_deref() != Ok("1") {
        eprintln!("skipped: set TRUC_PYTHON_TESTS=1 to run the Python client's test");
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../clients/python/test.sh");
    let status = Command::new("bash")
        .arg(&script)
        .env("TRUC_BIN", TRUC)
        .status()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", script.display()));
    assert!(status.success(), "{} failed", script.display());
}

/// Recipients of the first `documents` documents under the 3.63 mix: three
/// each, plus one for ⌊n × 0.63⌋ of them.
fn deliveries_of(documents: u64) -> u64 {
    3 * documents + documents * 63 / 100
}

#[test]
fn a_short_bench_against_a_hub_process_adds_up() {
    let root = tempfile::tempdir().unwrap();
    let json = root.path().join("bench.json");
    let run = support::reported(
        Command::new(TRUC).args([
            "bench",
            "--duration",
            "2",
            "--agencies",
            "6",
            "--concurrency",
            "16",
            "--presign",
            "1500",
            "--moves-documents",
            "40",
            "--drain-timeout",
            "30",
            "--json",
            json.to_str().unwrap(),
        ]),
        &json,
    );
    let (stdout, stderr, report) = (run.stdout, run.stderr, run.report);
    assert!(
        stderr.contains("pre-signing"),
        "says it pre-signs: {stderr}"
    );
    assert!(stdout.contains("no failures"), "{stdout}");
    let number = |value: &serde_json::Value| value.as_u64().unwrap_or_else(|| panic!("{value}"));
    assert_eq!(report["failures"].as_array().unwrap().len(), 0);
    assert_eq!(report["hub"]["spawned"], true);

    // Intake: every document started was acknowledged with all its recipients;
    // documents go out in index order, so the recipients follow the mix exactly.
    let intake = &report["intake"][0];
    let sent = number(&intake["documents_sent"]);
    assert!(sent > 0);
    assert_eq!(number(&intake["documents_acknowledged"]), sent);
    assert_eq!(number(&intake["deliveries_queued"]), deliveries_of(sent));
    assert_eq!(number(&intake["send_to_ack"]["count"]), sent);

    // Fan-out: deliveries counted = documents × recipients acknowledged, and
    // the hub's own counters and the senders' notices say the same.
    let fanout = &report["fanout"][0];
    let documents = number(&fanout["send"]["documents_acknowledged"]);
    let delivered = number(&fanout["deliveries_received"]);
    assert!(documents > 0);
    assert_eq!(
        number(&fanout["deliveries_expected"]),
        deliveries_of(documents)
    );
    assert_eq!(delivered, deliveries_of(documents));
    assert_eq!(number(&fanout["hub_arrivals_recorded"]), delivered);
    assert_eq!(number(&fanout["arrived_notices"]), delivered);
    assert_eq!(number(&fanout["send_to_delivery"]["count"]), delivered);
    assert_eq!(fanout["consistent"], true);
    let rate = fanout["deliveries_per_second"].as_f64().unwrap();
    let seconds = fanout["seconds_until_last_delivery"].as_f64().unwrap();
    assert!(
        (rate * seconds - delivered as f64).abs() < 1.0,
        "{rate} × {seconds}"
    );

    // Moves: whole paths only, four moves each, one latency sample per call,
    // each call carrying at most `moves_per_call` moves.
    let moves = &report["moves"];
    assert_eq!(number(&moves["prepared_deliveries"]), deliveries_of(40));
    let moved = number(&moves["moves"]);
    assert!(moved > 0);
    assert_eq!(moved, 4 * number(&moves["deliveries_completed"]));
    let calls = number(&moves["move_calls"]);
    assert_eq!(number(&moves["move_call"]["count"]), calls);
    assert_eq!(number(&moves["moves_per_call"]), 64);
    assert!(
        calls >= moved.div_ceil(64) && calls < moved,
        "{calls} calls for {moved} moves"
    );

    // The hub stored exactly what the three scenarios sent, and it was measured.
    let resources = report["resources"].as_array().unwrap();
    assert_eq!(resources.len(), 4, "at the start and after each scenario");
    assert_eq!(number(&resources[0]["documents_stored"]), 0);
    let last = &resources[3];
    assert_eq!(number(&last["documents_stored"]), sent + documents + 40);
    assert!(number(&last["hub_peak_rss_bytes"]) > 1024 * 1024);
    assert!(number(&last["hub_rss_bytes"]) <= number(&last["hub_peak_rss_bytes"]));
    assert!(number(&resources[0]["hub_rss_bytes"]) > 1024 * 1024);
    assert!(last["bytes_per_document"].as_f64().unwrap() > 2048.0);
}

/// `truc bench --scenario attachments` shrunk to two sizes of 2 s each
/// against a hub process it starts: every figure of a size follows from the
/// others and from the hub's own counts.
#[test]
fn a_short_attachment_bench_adds_up_size_by_size() {
    let root = tempfile::tempdir().unwrap();
    let json = root.path().join("attachments.json");
    let run = support::reported(
        Command::new(TRUC).args([
            "bench",
            "--scenario",
            "attachments",
            "--attachment-sizes",
            "1KiB,1MiB",
            "--duration",
            "2",
            "--agencies",
            "6",
            "--concurrency",
            "16",
            // More than 2 s of sends, and a multiple of 100: the second size's documents
            // follow the 3.63 mix from its start.
            "--presign",
            "10000",
            "--drain-timeout",
            "60",
            "--json",
            json.to_str().unwrap(),
        ]),
        &json,
    );
    let (stdout, report) = (run.stdout, run.report);
    assert!(stdout.contains("no failures"), "{stdout}");
    assert!(
        stdout.contains("attachments of the sizes below"),
        "{stdout}"
    );
    let number = |value: &serde_json::Value| value.as_u64().unwrap_or_else(|| panic!("{value}"));
    let real = |value: &serde_json::Value| value.as_f64().unwrap_or_else(|| panic!("{value}"));
    assert!(report["intake"].as_array().unwrap().is_empty());
    let figures = &report["attachments"];
    assert_eq!(number(&figures["chunk_bytes"]), 256 * 1024);
    let phases = figures["phases"].as_array().unwrap();
    assert_eq!(phases.len(), 2);
    for (phase, size) in phases.iter().zip([1024u64, 1 << 20]) {
        assert_eq!(number(&phase["attachment_bytes"]), size);
        assert!(phase["refused"].is_null(), "{phase}");
        // Every document sent was acknowledged, and the hub counts exactly those.
        let send = &phase["send"];
        let acknowledged = number(&send["documents_acknowledged"]);
        assert!(acknowledged > 0, "{phase}");
        assert_eq!(number(&send["documents_sent"]), acknowledged);
        assert_eq!(number(&phase["hub_documents_accepted"]), acknowledged);
        assert_eq!(number(&send["send_to_ack"]["count"]), acknowledged);
        // MB/s is the acknowledged attachment bytes over the send window.
        let seconds = real(&send["seconds"]);
        let mb_per_second = real(&phase["attachment_mb_per_second"]);
        let bytes = (acknowledged * size) as f64;
        assert!(
            (mb_per_second * 1e6 * seconds - bytes).abs() <= bytes * 1e-9 + 1.0,
            "{mb_per_second} MB/s × {seconds} s against {bytes} B"
        );
        assert!((real(&send["documents_per_second"]) * seconds - acknowledged as f64).abs() < 1e-6);
        // Every delivery came and was counted, three or four per document.
        assert_eq!(
            number(&phase["deliveries_expected"]),
            deliveries_of(acknowledged)
        );
        assert_eq!(
            number(&phase["deliveries_received"]),
            deliveries_of(acknowledged)
        );
        assert_eq!(
            number(&phase["hub_arrivals_recorded"]),
            deliveries_of(acknowledged)
        );
        assert_eq!(phase["consistent"], true);
        // The disk was measured in writes of the same size, and the ratio is the two figures'.
        let disk = &phase["disk"];
        assert_eq!(number(&disk["chunk_bytes"]), size);
        assert_eq!(
            number(&disk["bytes"]),
            number(&disk["syncs"]) * size,
            "{disk}"
        );
        let disk_mb_per_second = real(&disk["mb_per_second"]);
        assert!(disk_mb_per_second > 0.0, "{disk}");
        let percent = real(&phase["hub_over_disk_percent"]);
        assert!(
            (percent - mb_per_second * 100.0 / disk_mb_per_second).abs() < 1e-6 * percent.max(1.0),
            "{percent}"
        );
        // The hub's memory was sampled over the phase, and its data directory measured.
        assert!(number(&phase["hub_rss_samples"]) > 0);
        assert!(number(&phase["hub_peak_rss_sampled_bytes"]) > 1024 * 1024);
        let growth = number(&phase["data_dir_growth_bytes"]) as f64;
        assert!(
            (real(&phase["data_dir_mb_per_second"]) * 1e6 * seconds - growth).abs()
                <= growth * 1e-9 + 1.0
        );
    }
    assert!(!stdout.contains("disk: not measured"), "{stdout}");
}

/// The documents `truc report --data-dir` counts, or its error output.
fn offline_sent(data_dir: &Path) -> Result<u64, String> {
    let json = data_dir.with_extension("report.json");
    let output = Command::new(TRUC)
        .args(["report", "--data-dir", data_dir.to_str().unwrap(), "--json"])
        .arg(&json)
        .output()
        .expect("run truc report");
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    Ok(report["totals"]["sent"].as_u64().unwrap())
}

#[tokio::test]
async fn a_hub_refuses_to_start_on_data_files_that_lost_acknowledged_writes() {
    let root = tempfile::tempdir().unwrap();
    let (config, address, pki) = setup(root.path());
    let mut hub = HubProcess::start(&config);
    let client = connect(address, &pki, pki.agency_credentials(SENDER).unwrap()).await;
    const SENT: u64 = 60;
    for number in 1..=SENT as u32 - 1 {
        let attachment = Attachment::bytes("vb.pdf", "application/pdf", vec![7; 1500]);
        client.send(&draft(number), vec![attachment]).await.unwrap();
    }
    // A graceful stop writes everything into sled's tree and empties the
    // journal: damage to the tree is then the loss of acknowledged writes.
    assert!(hub.terminate().await.success());
    let data = root.path().join("data");
    // Bytes of records: each segment begins with an 8-byte magic.
    let journal_bytes = |dir: &Path| -> u64 {
        std::fs::read_dir(dir.join(truc_store::JOURNAL_DIR))
            .unwrap()
            .map(|entry| entry.unwrap().metadata().unwrap().len().saturating_sub(8))
            .sum()
    };
    assert_eq!(
        journal_bytes(&data),
        0,
        "the journal is empty after a graceful stop"
    );
    // The last document after a restart, and then a crash: it is in the
    // journal only (no checkpoint comes within the hour).
    let mut hub = HubProcess::start_with(
        &config,
        &[],
        &[("TRUC_HUB__CHECKPOINT_SECONDS", "3600")],
        std::process::Stdio::null(),
    );
    let client = connect(address, &pki, pki.agency_credentials(SENDER).unwrap()).await;
    let attachment = Attachment::bytes("vb.pdf", "application/pdf", vec![7; 1500]);
    client
        .send(&draft(SENT as u32), vec![attachment])
        .await
        .unwrap();
    hub.kill_9();
    assert!(journal_bytes(&data) > 0);

    // Each damage on its own copy of the directory.
    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_file() {
                std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
            } else if kind.is_dir() {
                copy_dir(&entry.path(), &to.join(entry.file_name()));
            }
        }
    }
    let copy = |name: &str| {
        let to = root.path().join(name);
        copy_dir(&data, &to);
        to
    };
    let damaged = [
        ("truncated", {
            let dir = copy("truncated");
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(dir.join("db"))
                .unwrap();
            // Half of what sled wrote, not of the file: its tail may be
            // space it set aside and never used.
            let bytes = std::fs::read(dir.join("db")).unwrap();
            let used = bytes
                .iter()
                .rposition(|byte| *byte != 0)
                .map_or(0, |at| at + 1);
            file.set_len(used as u64 / 2).unwrap();
            dir
        }),
        ("head zeroed", {
            let dir = copy("zeroed");
            let mut bytes = std::fs::read(dir.join("db")).unwrap();
            let head = 4096.min(bytes.len());
            bytes[..head].fill(0);
            std::fs::write(dir.join("db"), bytes).unwrap();
            dir
        }),
        ("data file removed", {
            let dir = copy("removed");
            std::fs::remove_file(dir.join("db")).unwrap();
            dir
        }),
        ("journal removed", {
            let dir = copy("journal-removed");
            std::fs::remove_dir_all(dir.join(truc_store::JOURNAL_DIR)).unwrap();
            dir
        }),
    ];
    for (what, dir) in &damaged {
        let error = offline_sent(dir).expect_err(what);
        assert!(error.contains("cannot be trusted"), "{what}: {error}");
        eprintln!("{what}: {}", error.trim());
    }
    // A hub on the truncated copy exits at once, saying why and what to do.
    let truncated = root.path().join("truncated.toml");
    std::fs::write(
        &truncated,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("data_dir = \"data\"", "data_dir = \"truncated\""),
    )
    .unwrap();
    let mut child = Command::new(TRUC)
        .args(["hub", "--config", truncated.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(30) {
            child.kill().unwrap();
            panic!("the hub started on a truncated data file");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(
        stderr.contains("cannot be trusted") && stderr.contains("backup"),
        "{stderr}"
    );

    // A flipped byte is refused, or found harmless: never fewer documents.
    let flipped = copy("flipped");
    let mut bytes = std::fs::read(flipped.join("db")).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0xff;
    std::fs::write(flipped.join("db"), bytes).unwrap();
    match offline_sent(&flipped) {
        Ok(sent) => assert_eq!(sent, SENT, "a flipped byte lost documents silently"),
        Err(error) => assert!(error.contains("cannot be trusted"), "{error}"),
    }
    // The sound directory, and a restored backup whose operator removed the
    // marker on purpose, open with everything.
    assert_eq!(offline_sent(&data), Ok(SENT));
    let restored = copy("restored");
    std::fs::remove_file(restored.join(truc_store::MARKER_FILE)).unwrap();
    assert_eq!(offline_sent(&restored), Ok(SENT));
}

#[tokio::test]
async fn a_stalled_consumer_keeps_the_hub_memory_bounded_while_its_queue_grows() {
    let root = tempfile::tempdir().unwrap();
    let (config, address, pki) = setup(root.path());
    // A small page cache, so that what the hub holds for the stalled node
    // would show above it.
    let mut text = std::fs::read_to_string(&config).unwrap();
    text = text.replace("listen =", "cache_mib = 16\nlisten =");
    std::fs::write(&config, text).unwrap();
    let mut hub = HubProcess::start(&config);
    let pid = hub.child.id();
    let sender = connect(address, &pki, pki.agency_credentials(SENDER).unwrap()).await;
    let stalled = connect(
        address,
        &pki,
        pki.agency_credentials(RECIPIENTS[0]).unwrap(),
    )
    .await;
    // Attachments just under the inline limit: each delivery message carries one.
    const ATTACHMENT_BYTES: usize = 60 * 1024;
    let send_range = |numbers: std::ops::Range<u32>| {
        let sender = sender.clone();
        async move {
            let mut tasks = tokio::task::JoinSet::new();
            for number in numbers {
                let sender = sender.clone();
                tasks.spawn(async move {
                    let attachment = Attachment::bytes(
                        "vb.pdf",
                        "application/pdf",
                        vec![number as u8; ATTACHMENT_BYTES],
                    );
                    sender.send(&draft(number), vec![attachment]).await.unwrap();
                });
                while tasks.len() >= 16 {
                    tasks.join_next().await.unwrap().unwrap();
                }
            }
            while let Some(done) = tasks.join_next().await {
                done.unwrap();
            }
        }
    };
    send_range(1..200).await;
    let settled = truc_bench::resources::rss_bytes(pid).expect("the hub's RSS");

    // The recipient opens its stream with the largest window and reads nothing.
    let (_acks, _stream) = stalled.deliveries(1024).await.unwrap();
    const QUEUED: u32 = 1_600;
    send_range(200..200 + QUEUED).await;
    let peak = truc_bench::resources::peak_rss_bytes(pid).expect("the hub's peak RSS");
    const PAYLOAD: u64 = QUEUED as u64 * ATTACHMENT_BYTES as u64;
    eprintln!(
        "stalled consumer: {QUEUED} documents ({} MiB) queued behind it; hub RSS {} MiB before, peak {} MiB",
        PAYLOAD >> 20,
        settled >> 20,
        peak >> 20
    );
    // The stream's byte budget (`delivery.window_bytes_max`, 8 MiB; 1,024
    // such messages would be 60 MiB) bounds what the hub holds for the node;
    // the queue itself stays on disk.
    const WINDOW_BYTES: u64 = (8 << 20) + ATTACHMENT_BYTES as u64;
    assert!(
        peak < settled + WINDOW_BYTES + (32 << 20),
        "the hub grew from {} to {} MiB behind a stalled consumer",
        settled >> 20,
        peak >> 20
    );
    // Otherwise the bound above would prove nothing.
    const _: () = assert!(PAYLOAD > 2 * WINDOW_BYTES, "the queue outgrows the window");
    // And the queue is all there: the operator sees its depth.
    let operator = connect(address, &pki, pki.operator_credentials("ops").unwrap()).await;
    let depth = operator
        .list_nodes()
        .await
        .unwrap()
        .nodes
        .into_iter()
        .find(|node| node.organ_id == RECIPIENTS[0])
        .unwrap()
        .queued_documents;
    assert_eq!(depth, 199 + u64::from(QUEUED));
    hub.kill_9();
}

/// `truc edxml check` as an integrator runs it: 0 for a package that would
/// be sent, 1 with every problem named by element for one that would not,
/// and `show` prints the fields.
#[test]
fn edxml_check_lists_every_problem_by_element_and_exits_one() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/edxml/example.edxml");
    let good = Command::new(TRUC)
        .args(["edxml", "check", "--as", SENDER])
        .arg(&example)
        .output()
        .expect("run truc edxml check");
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stdout)
    );

    let root = tempfile::tempdir().unwrap();
    let bad = root.path().join("bad.edxml");
    let text = std::fs::read_to_string(&example)
        .unwrap()
        .replace(">7816</edXML:CodeNumber>", ">78a</edXML:CodeNumber>")
        .replace(">7816-VPCP-TTDT.pdf<", ">../7816.pdf<");
    std::fs::write(&bad, text).unwrap();
    let refused = Command::new(TRUC)
        .args(["edxml", "check", "--json"])
        .arg(&bad)
        .output()
        .expect("run truc edxml check");
    assert_eq!(refused.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&refused.stdout).unwrap();
    assert_eq!(report["ok"], false);
    let elements: Vec<&str> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|problem| problem["element"].as_str().unwrap())
        .collect();
    assert!(
        elements.contains(&"MessageHeader/Code/CodeNumber"),
        "{elements:?}"
    );
    assert!(
        elements.contains(&"edXMLBody/edXMLManifest/Reference[1]/AttachmentName"),
        "{elements:?}"
    );

    let shown = truc(&["edxml", "show", example.to_str().unwrap()]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains("7816/VPCP-TTĐT"), "{shown}");
    assert!(shown.contains("7816-VPCP-TTDT.pdf"), "{shown}");
}

/// `truc` as a new user runs it: in `dir`, with none of the caller's
/// `TRUC_*` settings and no config file, then `env`.
fn truc_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(TRUC);
    command.args(args).current_dir(dir);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("TRUC_") {
            command.env_remove(key);
        }
    }
    command
        .env_remove("RUST_LOG")
        .env("XDG_CONFIG_HOME", dir.join(".no-config-here"))
        .envs(env.iter().copied())
        .output()
        .expect("run truc")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A hub process whose PKI is `certs/dev` under `root`, as `truc certs init` makes it.
fn setup_dev(root: &Path) -> (PathBuf, SocketAddr, PkiPaths) {
    let (config, address, _) = setup(root);
    let dev = root.join("certs/dev");
    let made = root.join("made");
    std::fs::rename(root.join("certs"), &made).unwrap();
    std::fs::create_dir_all(root.join("certs")).unwrap();
    std::fs::rename(&made, &dev).unwrap();
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("\"certs/", "\"certs/dev/");
    std::fs::write(&config, text).unwrap();
    (config, address, PkiPaths::new(dev))
}

#[tokio::test]
async fn a_new_user_is_pointed_the_right_way_by_exit_codes_and_errors() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let (config, address, pki) = setup_dev(root);
    let mut hub = HubProcess::start(&config);
    connect(address, &pki, pki.operator_credentials("ops").unwrap()).await;
    let hub_address = address.to_string();
    let at_hub = [("TRUC_HUB", hub_address.as_str())];

    // The PKI is found from a folder below the one that holds certs/dev.
    let below = root.join("deep/below");
    std::fs::create_dir_all(&below).unwrap();
    let counted = truc_in(&below, &["counts", "--operator", "ops"], &at_hub);
    assert!(counted.status.success(), "{}", text(&counted.stderr));
    assert!(
        text(&counted.stdout).contains("received: deliveries that arrived"),
        "{}",
        text(&counted.stdout)
    );

    // Usage errors exit 2 and start with the flag, before the hub is asked.
    std::fs::write(root.join("vanban.pdf"), b"%PDF-1.4 test").unwrap();
    for (args, flag) in [
        (
            vec!["status", "x", "--as", SENDER, "--set", "done"],
            "--set:",
        ),
        (
            vec!["counts", "--operator", "ops", "--from", "2020-13-01"],
            "--from:",
        ),
        (
            vec![
                "send",
                "--to",
                RECIPIENTS[0],
                "--number",
                "1",
                "--notation",
                "A",
                "--subject",
                "x",
                "--attach",
                "vanban.pdf",
            ],
            "--as:",
        ),
        (
            vec![
                "send",
                "--as",
                SENDER,
                "--to",
                RECIPIENTS[0],
                "--number",
                "1",
                "--notation",
                "A",
                "--subject",
                "x",
                "--attach",
                "missing.pdf",
            ],
            "--attach:",
        ),
    ] {
        let refused = truc_in(root, &args, &at_hub);
        assert_eq!(
            refused.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&refused.stderr)
        );
        let said = text(&refused.stderr);
        assert!(
            said.starts_with(&format!("error: {flag}")),
            "{args:?}: {said}"
        );
    }

    // A send with a refused recipient exits 3; a due date already past warns.
    let sent = truc_in(
        root,
        &[
            "send",
            "--as",
            SENDER,
            "--to",
            RECIPIENTS[0],
            "--to",
            "000.00.00.X99",
            "--number",
            "9",
            "--notation",
            "VPCP-CLI",
            "--date",
            "2024-05-07",
            "--due",
            "2024-05-08",
            "--subject",
            "Một người nhận bị từ chối",
            "--attach",
            "vanban.pdf",
        ],
        &at_hub,
    );
    assert_eq!(sent.status.code(), Some(3), "{}", text(&sent.stderr));
    assert!(
        text(&sent.stdout).contains("✗ 000.00.00.X99"),
        "{}",
        text(&sent.stdout)
    );
    let said = text(&sent.stderr);
    assert!(said.contains("1 of 2 recipients refused"), "{said}");
    assert!(
        said.contains("warning: --due 2024-05-08 is already past"),
        "{said}"
    );
    // Times for people carry their zone.
    let shown = truc_in(
        root,
        &[
            "status",
            "000.00.00.G22,2024/05/07,9/VPCP-CLI",
            "--as",
            SENDER,
        ],
        &at_hub,
    );
    assert!(shown.status.success(), "{}", text(&shown.stderr));
    assert!(
        text(&shown.stdout).contains(" +07:00"),
        "{}",
        text(&shown.stdout)
    );

    // Nowhere near a PKI: where it looked, and no new CA advised first.
    let elsewhere = tempfile::tempdir().unwrap();
    let lost = truc_in(elsewhere.path(), &["counts", "--operator", "ops"], &at_hub);
    assert_eq!(lost.status.code(), Some(1));
    let said = text(&lost.stderr);
    assert!(
        said.starts_with("error: certs: no PKI folder found"),
        "{said}"
    );
    assert!(said.contains("--certs DIR, TRUC_CERTS=DIR"), "{said}");
    // TRUC_CERTS, and the config file, find it from anywhere.
    let dev = pki.dir.to_str().unwrap();
    let found = truc_in(
        elsewhere.path(),
        &["counts", "--operator", "ops"],
        &[("TRUC_HUB", hub_address.as_str()), ("TRUC_CERTS", dev)],
    );
    assert!(found.status.success(), "{}", text(&found.stderr));
    let config_home = elsewhere.path().join("config");
    std::fs::create_dir_all(config_home.join("truc")).unwrap();
    std::fs::write(
        config_home.join("truc/truc.toml"),
        format!("certs = {dev:?}\n"),
    )
    .unwrap();
    let found = truc_in(
        elsewhere.path(),
        &["counts", "--operator", "ops"],
        &[
            ("TRUC_HUB", hub_address.as_str()),
            ("XDG_CONFIG_HOME", config_home.to_str().unwrap()),
        ],
    );
    assert!(found.status.success(), "{}", text(&found.stderr));

    // Another CA's files: the real cause first, naming the files.
    let other = root.join("other");
    truc(&[
        "certs",
        "init",
        "--dir",
        other.to_str().unwrap(),
        "--directory",
        root.join("agencies.toml").to_str().unwrap(),
    ]);
    let refused = truc_in(
        root,
        &["counts", "--operator", "ops", "--certs", "other"],
        &at_hub,
    );
    assert_eq!(refused.status.code(), Some(1));
    let said = text(&refused.stderr);
    assert!(
        said.starts_with(&format!(
            "error: certificate: the hub at {address} presented a certificate"
        )),
        "{said}"
    );
    assert!(said.contains("UnknownIssuer"), "{said}");
    assert!(said.contains("other/ca.crt"), "{said}");
    assert!(said.contains("Do not make a new CA"), "{said}");
    assert!(!said.contains("is the hub running"), "{said}");
    // The hub's CA, but an agency certificate of the other CA.
    let mixed = root.join("mixed");
    std::fs::create_dir_all(mixed.join("agencies")).unwrap();
    std::fs::copy(pki.ca_cert(), mixed.join("ca.crt")).unwrap();
    for end in ["crt", "key"] {
        std::fs::copy(
            other.join(format!("agencies/{SENDER}.{end}")),
            mixed.join(format!("agencies/{SENDER}.{end}")),
        )
        .unwrap();
    }
    let refused = truc_in(
        root,
        &["counts", "--as", SENDER, "--certs", "mixed"],
        &at_hub,
    );
    assert_eq!(refused.status.code(), Some(1));
    let said = text(&refused.stderr);
    assert!(
        said.starts_with(&format!(
            "error: certificate: the hub at {address} refused the certificate of agency {SENDER}"
        )),
        "{said}"
    );
    assert!(
        said.contains(&format!("mixed/agencies/{SENDER}.crt")),
        "{said}"
    );
    assert!(said.contains("issued by CN=truc development CA"), "{said}");

    // gRPC health and reflection without any other tool.
    let healthy = truc_in(
        root,
        &["grpc", "health", "--operator", "ops", "--wait", "30"],
        &at_hub,
    );
    assert!(healthy.status.success(), "{}", text(&healthy.stderr));
    assert_eq!(text(&healthy.stdout), "the hub: SERVING\n");
    let listed = truc_in(root, &["grpc", "list", "--operator", "ops"], &at_hub);
    assert!(text(&listed.stdout)
        .lines()
        .any(|line| line == "truc.v1.Axis"));
    hub.kill_9();
}

#[tokio::test]
async fn a_hub_process_says_what_it_does_and_a_second_hub_who_holds_its_directory() {
    let root = tempfile::tempdir().unwrap();
    let (config, address, pki) = setup(root.path());
    let log_path = root.path().join("hub.log");
    let mut hub = HubProcess::start_with(
        &config,
        &["--log-format", "human"],
        &[],
        std::fs::File::create(&log_path).unwrap(),
    );
    let sender = connect(address, &pki, pki.agency_credentials(SENDER).unwrap()).await;
    let attachment = Attachment::bytes("vb.pdf", "application/pdf", vec![1; 100]);
    sender.send(&draft(1), vec![attachment]).await.unwrap();
    // Polled while this test's runtime keeps serving its client connections.
    let logged = |what: &'static str| {
        let log_path = log_path.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                if std::fs::read_to_string(&log_path).unwrap().contains(what) {
                    return;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no {what:?} in the log within 30 s: {}",
                    std::fs::read_to_string(&log_path).unwrap()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    // A node's delivery stream opens, then goes.
    let node = connect(
        address,
        &pki,
        pki.agency_credentials(RECIPIENTS[0]).unwrap(),
    )
    .await;
    let stream = node.deliveries(8).await.unwrap();
    logged("node connected").await;
    drop(stream);
    drop(node);
    logged("node disconnected").await;

    // A second hub on the same data directory: who holds it, not a backup to restore.
    let second = Command::new(TRUC)
        .args(["hub", "--config", config.to_str().unwrap()])
        .env("TRUC_HUB__LISTEN", "127.0.0.1:0")
        .env("TRUC_HUB__OBSERVE__METRICS_LISTEN", "")
        .output()
        .expect("run a second hub");
    assert_eq!(second.status.code(), Some(1));
    let said = text(&second.stderr);
    assert!(
        said.contains(&format!("is in use by another hub (PID {}", hub.child.id())),
        "{said}"
    );
    assert!(!said.contains("backup"), "{said}");
    // The dashboard asked for without its token: the command that makes one.
    let no_token = Command::new(TRUC)
        .args(["hub", "--config", config.to_str().unwrap()])
        .env("TRUC_HUB__LISTEN", "127.0.0.1:0")
        .env(
            "TRUC_HUB__OBSERVE__DASHBOARD_LISTEN",
            format!("127.0.0.1:{}", free_port()),
        )
        .env(
            "TRUC_HUB__OBSERVE__DASHBOARD_TOKEN_FILE",
            root.path().join("tokens/dashboard.token"),
        )
        .output()
        .expect("run a hub with a dashboard");
    assert_eq!(no_token.status.code(), Some(1));
    let said = text(&no_token.stderr);
    assert!(
        said.contains("make one with `truc certs dashboard-token --dir"),
        "{said}"
    );

    assert!(hub.terminate().await.success());
    let logs = std::fs::read_to_string(&log_path).unwrap();
    for line in [
        "hub serving",
        "agencies=3",
        "node connected",
        "nodes_online=1",
        "node disconnected",
        "stop signal received signal=\"SIGTERM\"",
        "hub stopping",
        "hub stopped",
        "delivery_streams_served=1",
    ] {
        assert!(logs.contains(line), "no {line:?} in {logs}");
    }
    // Per-document lines stay at debug.
    assert!(!logs.contains("send accepted"), "{logs}");
    // Log lines carry UTC times.
    let event = logs
        .lines()
        .find(|line| line.contains("hub serving"))
        .unwrap();
    let stamp = event.split_whitespace().next().unwrap();
    assert!(stamp.ends_with('Z') && stamp.contains('T'), "{event}");
}

#[test]
fn a_kept_replay_is_reported_with_its_own_dataset_and_scale() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let replayed = truc_in(
        root,
        &[
            "replay",
            "2021",
            "--scale",
            "1/1000",
            "--data-dir",
            "kept",
            "--progress-lines",
        ],
        &[],
    );
    let said = text(&replayed.stderr);
    assert!(replayed.status.success(), "{said}");
    assert!(said.contains("data in kept (kept)"), "{said}");
    // Its own throwaway certificates concern no one.
    assert!(!said.contains("expires soon"), "{said}");
    assert!(root.join("kept/replay.json").is_file());

    let reported = truc_in(root, &["report", "--data-dir", "kept"], &[]);
    assert!(reported.status.success(), "{}", text(&reported.stderr));
    assert!(
        text(&reported.stderr).contains("comparing with the 2021 replay at 1/1000"),
        "{}",
        text(&reported.stderr)
    );
    assert!(
        text(&reported.stdout).contains("VERDICT ✓"),
        "{}",
        text(&reported.stdout)
    );
    let contradicted = truc_in(
        root,
        &["report", "--data-dir", "kept", "--dataset", "2019"],
        &[],
    );
    assert_eq!(contradicted.status.code(), Some(2));
    assert!(text(&contradicted.stderr).starts_with("error: --dataset:"));

    let demo = truc_in(root, &["demo", "--documents", "20"], &[]);
    assert!(demo.status.success(), "{}", text(&demo.stderr));
    assert!(
        !text(&demo.stderr).contains("expires soon"),
        "{}",
        text(&demo.stderr)
    );
}

/// `truc bench --year` as a user runs it, shrunk to 40 s: the hub process's
/// clock passes a year, documents leave for monthly archives a month after
/// acceptance, and every archive checks offline with its audit chain
/// following the one before; the table's rows add up.
#[test]
fn a_short_year_run_archives_month_by_month_and_every_archive_checks() {
    let root = tempfile::tempdir().unwrap();
    let json = root.path().join("year.json");
    let run = support::reported(
        Command::new(TRUC)
            .args([
                "bench",
                "--year",
                "--duration",
                "40",
                "--rate",
                "25",
                "--sample-seconds",
                "10",
                "--json",
            ])
            .arg(&json),
        &json,
    );
    let (stdout, report) = (run.stdout, run.report);
    let samples = report["samples"].as_array().unwrap();
    let last = samples.last().unwrap();
    assert_eq!(last["documents_sent"], 1000, "{stdout}");
    assert_eq!(
        last["deliveries_completed"],
        deliveries_of(1000),
        "{stdout}"
    );
    // Eleven months of the year's documents are more than a month old.
    let archived = last["archived"].as_u64().unwrap();
    assert!(archived > 800 && archived < 1000, "{archived}: {stdout}");
    let archives = report["archives"].as_array().unwrap();
    assert!(archives.len() >= 11, "{stdout}");
    assert!(archives.iter().all(|a| a["problem"].is_null()), "{stdout}");
    let in_files: u64 = archives
        .iter()
        .map(|a| a["documents"].as_u64().unwrap())
        .sum();
    assert_eq!(in_files, archived, "each archived document in one file");
    assert!(
        report["failures"].as_array().unwrap().is_empty(),
        "{stdout}"
    );
}
