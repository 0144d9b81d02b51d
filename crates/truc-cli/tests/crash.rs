//! The fast crash test: `truc crashtest` with a few SIGKILLs of the hub process and one of a
//! node agent process, run as a user runs it; it fails on any loss or duplicate, and its
//! figures must show the kills really fell while work was under way. And the
//! outbox of a `truc node` process killed with SIGKILL while it sends.

use std::process::Command;

const TRUC: &str = env!("CARGO_BIN_EXE_truc");

#[test]
fn hub_and_node_processes_killed_with_sigkill_lose_nothing_and_repeat_nothing() {
    let root = tempfile::tempdir().unwrap();
    let json = root.path().join("figures.json");
    let output = Command::new(TRUC)
        .args([
            "crashtest",
            "--documents",
            "160",
            "--rate",
            "40",
            "--hub-kills",
            "4",
            "--node-kills",
            "2",
            "--kill-after-min-ms",
            "300",
            "--kill-after-max-ms",
            "900",
            "--seed",
            "7",
            "--json",
            json.to_str().unwrap(),
            "--keep",
            root.path().join("run").to_str().unwrap(),
        ])
        .output()
        .expect("run truc crashtest");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}{stderr}");
    eprintln!("{stdout}");

    let figures: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(figures["hub_kills"], 4, "{figures}");
    assert_eq!(figures["node_kills"], 2, "{figures}");
    assert_eq!(figures["lost"], 0, "{figures}");
    assert_eq!(figures["duplicates"], 0, "{figures}");
    assert_eq!(figures["documents"], 160);
    // A kill while nothing was under way would prove nothing: some fell with deliveries or
    // moves outstanding, and the senders had sends cut by a kill and sent them again.
    let kills = figures["kills"].as_array().unwrap();
    assert!(
        kills
            .iter()
            .any(|kill| kill["deliveries_in_flight"].as_u64() > Some(0)
                || kill["moves_in_flight"].as_u64() > Some(0)
                || kill["sends_in_flight"].as_u64() > Some(0)),
        "no kill fell during work: {figures}"
    );
    assert!(figures["send_retries"].as_u64() > Some(0), "{figures}");
    // Every node process was told of each of its documents at most once, and the inboxes
    // hold every planned delivery: the harness checked both; here one inbox is read again.
    let inbox = root.path().join("run/inbox/000.00.00.H41");
    let documents = std::fs::read_dir(&inbox)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| !entry.file_name().to_string_lossy().starts_with('.'))
        .count();
    assert!(documents > 0, "nothing reached {}", inbox.display());
}

/// A package from 000.00.00.G22 to 000.00.00.H41, dated today, with an
/// attachment large enough that a send takes a while.
fn outbox_package(number: u32) -> Vec<u8> {
    let today = time::OffsetDateTime::now_utc()
        .to_offset(time::UtcOffset::from_hms(7, 0, 0).unwrap())
        .date();
    let date = format!(
        "{:04}/{:02}/{:02}",
        today.year(),
        today.month() as u8,
        today.day()
    );
    let organ = |code: &str| truc_edxml::Organization {
        organ_id: code.into(),
        organ_name: format!("Agency {code}"),
        ..Default::default()
    };
    let mut package = truc_edxml::Package {
        header: truc_edxml::MessageHeader {
            from: organ("000.00.00.G22"),
            to: vec![organ("000.00.00.H41")],
            code: truc_edxml::Code {
                number: number.to_string(),
                notation: "VPCP-TTĐT".into(),
            },
            promulgation: truc_edxml::PromulgationInfo {
                place: "Hà Nội".into(),
                date,
            },
            document_type: truc_edxml::DocumentType {
                type_code: 18,
                type_name: "Công văn".into(),
                ..Default::default()
            },
            subject: format!("Công văn số {number} gửi qua hộp thư đi"),
            signer_info: Some(truc_edxml::SignerInfo {
                position: "Chủ nhiệm".into(),
                full_name: "Trần Văn Sơn".into(),
                ..Default::default()
            }),
            ..Default::default()
        },
        attachments: vec![truc_edxml::Attachment {
            content_id: "1".into(),
            name: "cong-van.pdf".into(),
            content_type: "application/pdf".into(),
            bytes: (0..400_000u32)
                .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(number) >> 7) as u8)
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    };
    package.header.document_id = package.derived_document_id();
    truc_edxml::write_package(&package).unwrap()
}

fn count_files(folder: &std::path::Path, suffix: &str) -> usize {
    std::fs::read_dir(folder)
        .map(|entries| {
            entries
                .flatten()
                .filter(|entry| entry.file_name().to_string_lossy().ends_with(suffix))
                .count()
        })
        .unwrap_or(0)
}

/// `kill -9` of a node while its outbox sends: every dropped document ends in
/// `sent/` with a receipt, the hub holds each exactly once, and each receipt
/// carries the hub's original acknowledgement (its time of acceptance), also
/// for a document sent again after a kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_entries_survive_sigkill_of_the_node_and_are_sent_once() {
    const DOCUMENTS: u32 = 24;
    const KILLS: usize = 8;
    let hub = truc_testkit::TestHub::start().await;
    let root = tempfile::tempdir().unwrap();
    let outbox = root.path().join("outbox");
    let inbox = root.path().join("inbox");
    std::fs::create_dir_all(&outbox).unwrap();
    for number in 1..=DOCUMENTS {
        let name = format!("cong-van-{number:03}.edxml");
        let hidden = outbox.join(format!(".{name}.tmp"));
        std::fs::write(&hidden, outbox_package(number)).unwrap();
        std::fs::rename(&hidden, outbox.join(&name)).unwrap();
    }
    let node = || {
        Command::new(TRUC)
            .args(["node", "--as", "000.00.00.G22", "--hub"])
            .arg(hub.address.to_string())
            .arg("--certs")
            .arg(hub.root.path().join("pki"))
            .arg("--inbox")
            .arg(&inbox)
            .arg("--outbox")
            .arg(&outbox)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn truc node")
    };
    let sent = outbox.join("sent");
    let processing = outbox.join(".truc").join("processing");
    // Kills at spread, repeatable moments (a small linear congruential sequence).
    let mut seed = 7u64;
    let mut kills_during_work = 0;
    for _ in 0..KILLS {
        let mut child = node();
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let wait_ms = 250 + (seed >> 33) % 700;
        tokio::time::sleep(std::time::Duration::from_millis(wait_ms)).await;
        let done = count_files(&sent, ".receipt.json");
        let claimed = count_files(&processing, ".edxml");
        child.kill().expect("SIGKILL the node");
        child.wait().expect("reap the node");
        if claimed > 0 && done < DOCUMENTS as usize {
            kills_during_work += 1;
        }
    }
    assert!(
        kills_during_work > 0,
        "no kill fell while entries were being sent"
    );
    let mut child = node();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while count_files(&sent, ".receipt.json") < DOCUMENTS as usize {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {DOCUMENTS} sent within 120 s",
            count_files(&sent, ".receipt.json")
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    child.kill().expect("stop the node");
    child.wait().expect("reap the node");

    assert_eq!(count_files(&sent, ".edxml"), DOCUMENTS as usize);
    assert_eq!(count_files(&outbox.join("failed"), ""), 0);
    assert_eq!(count_files(&processing, ""), 0);
    assert_eq!(count_files(&outbox.join(".truc").join("done"), ""), 0);
    assert_eq!(count_files(&outbox, ".edxml"), 0, "nothing left undone");

    let operator = hub.operator().await;
    let listed = operator
        .list_documents(truc_proto::v1::ListDocumentsRequest {
            sender: "000.00.00.G22".into(),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        listed.documents.len(),
        DOCUMENTS as usize,
        "each document once"
    );
    let mut resent = 0;
    for number in 1..=DOCUMENTS {
        let receipt: serde_json::Value = serde_json::from_slice(
            &std::fs::read(sent.join(format!("cong-van-{number:03}.edxml.receipt.json"))).unwrap(),
        )
        .unwrap();
        let document_id = receipt["document_id"].as_str().unwrap();
        let status = operator.get_status(document_id).await.unwrap();
        assert_eq!(
            receipt["accepted_at_unix_ms"].as_i64(),
            Some(status.accepted_at_unix_ms),
            "{document_id}: the receipt holds the original acknowledgement"
        );
        assert_eq!(status.recipients.len(), 1);
        if receipt["duplicate"] == true || receipt["resumed_after_restart"] == true {
            resent += 1;
        }
    }
    eprintln!("{kills_during_work} of {KILLS} kills fell during work; {resent} entries were resumed or resent");
}

/// Two hubs on a three-member Patroni cluster (installed and started by the test): under
/// load the database's primary is SIGKILLed (Patroni and postmaster) and later a hub; every
/// acknowledged document is stored once, every delivery is in its inbox once, histories are
/// as moved, the counters equal a recount, the audit chain verifies, and the killed member
/// rejoins as a replica.
#[test]
fn a_database_failover_and_a_hub_kill_lose_nothing_and_repeat_nothing() {
    let root = tempfile::tempdir().unwrap();
    let json = root.path().join("figures.json");
    let output = Command::new(TRUC)
        .args([
            "crashtest",
            "--cluster",
            "--db-failovers",
            "1",
            "--hub-kills",
            "1",
            "--documents",
            "200",
            "--rate",
            "4",
            "--kill-after-min-ms",
            "3000",
            "--kill-after-max-ms",
            "5000",
            "--seed",
            "3",
            "--json",
            json.to_str().unwrap(),
            "--keep",
            root.path().join("run").to_str().unwrap(),
        ])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run truc crashtest --cluster");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}{stderr}");
    eprintln!("{stdout}");
    let figures: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(figures["database_failovers"], 1, "{figures}");
    assert_eq!(figures["hub_kills"], 1, "{figures}");
    assert_eq!(figures["lost"], 0, "{figures}");
    assert_eq!(figures["duplicates"], 0, "{figures}");
    let faults = figures["faults"].as_array().unwrap();
    let failover = faults
        .iter()
        .find(|fault| fault["kind"] == "database")
        .unwrap();
    // A new leader was elected, a write committed on it, and the killed member came back.
    assert!(
        failover["writes_accepted_ms"].as_u64() > Some(0),
        "{figures}"
    );
    assert!(failover["rejoined_ms"].as_u64().is_some(), "{figures}");
    // The load was running through the faults: sends had to be made again.
    assert!(figures["send_retries"].as_u64() > Some(0), "{figures}");
}
