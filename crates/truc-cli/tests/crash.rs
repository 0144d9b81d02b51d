//! The fast crash test: `truc crashtest` with a few SIGKILLs of the hub process and one of a
//! node agent process, run as a user runs it; it fails on any loss or duplicate, and its
//! figures must show the kills really fell while work was under way. And the
//! outbox of a `truc node` process killed with SIGKILL while it sends.

mod support;

use std::process::Command;

use support::TRUC;

#[test]
fn hub_and_node_processes_killed_with_sigkill_lose_nothing_and_repeat_nothing() {
    let root = tempfile::tempdir().unwrap();
    let json = root.path().join("figures.json");
    let run = support::reported(
        Command::new(TRUC).args([
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
        ]),
        &json,
    );
    eprintln!("{}", run.stdout);
    let figures = run.report;
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
    // Enough that an optimised node is still sending when the first kills fall.
    const DOCUMENTS: u32 = 240;
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
        let done_before = count_files(&sent, ".receipt.json");
        let mut child = node();
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let wait_ms = 250 + (seed >> 33) % 700;
        tokio::time::sleep(std::time::Duration::from_millis(wait_ms)).await;
        let done = count_files(&sent, ".receipt.json");
        let claimed = count_files(&processing, ".edxml");
        child.kill().expect("SIGKILL the node");
        child.wait().expect("reap the node");
        // Work under way: an entry claimed, or entries filed by this node
        // with more still waiting.
        if done < DOCUMENTS as usize && (claimed > 0 || done > done_before) {
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
        .list_documents(&truc_domain::views::DocumentFilter {
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
    let run = support::reported(
        Command::new(TRUC)
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
            .env("RUST_LOG", "warn"),
        &json,
    );
    eprintln!("{}", run.stdout);
    let figures = run.report;
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

/// A `truc hub` process with its own folder: PKI, directory and config.
struct HubFolder {
    root: tempfile::TempDir,
    pki: truc_pki::PkiPaths,
    address: std::net::SocketAddr,
}

const RETENTION_SENDER: &str = "000.00.00.G22";
const RETENTION_RECIPIENT: &str = "000.00.00.H41";

impl HubFolder {
    fn new() -> HubFolder {
        let root = tempfile::tempdir().unwrap();
        let agencies: Vec<(String, String)> = [RETENTION_SENDER, RETENTION_RECIPIENT]
            .iter()
            .map(|code| (code.to_string(), format!("Agency {code}")))
            .collect();
        // Valid well past where the fast clock goes.
        let pki = truc_pki::init_dev_pki(
            &root.path().join("pki"),
            &agencies,
            &["ops".to_owned()],
            std::time::Duration::from_secs(400 * 86_400),
        )
        .unwrap();
        let mut directory = String::new();
        for (code, name) in &agencies {
            directory.push_str(&format!(
                "[[agency]]\ncode = \"{code}\"\nname = \"{name}\"\n\n"
            ));
        }
        std::fs::write(root.path().join("agencies.toml"), directory).unwrap();
        let address = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        // No feedback deadlines nor expiry: a fast clock would make every
        // delivery late. Retention runs each second, a day after acceptance.
        std::fs::write(
            root.path().join("hub.toml"),
            format!(
                "listen = \"{address}\"\ndata_dir = \"data\"\ndirectory = \"agencies.toml\"\n\n\
                 [tls]\nca_cert = \"pki/ca.crt\"\ncert = \"pki/hub.crt\"\nkey = \"pki/hub.key\"\n\n\
                 [deadlines]\narrived_within_minutes = 0\nreceived_within_working_minutes = 0\n\
                 due_date = false\n\n[expiry]\nttl_minutes = 0\n\n\
                 [retention]\nperiod_days = 1\nrun_interval_seconds = 1\narchive_dir = \"archive\"\n"
            ),
        )
        .unwrap();
        HubFolder { root, pki, address }
    }

    /// Starts the hub; `fast` runs its clock 200,000 times faster (a day in
    /// under half a second), `crash_at` names the step it kills itself at.
    fn start(&self, retention: bool, fast: bool, crash_at: Option<&str>) -> std::process::Child {
        self.command(retention, fast, crash_at)
            .spawn()
            .expect("start truc hub")
    }

    fn command(&self, retention: bool, fast: bool, crash_at: Option<&str>) -> Command {
        let mut command = Command::new(TRUC);
        command
            .args(["hub", "--config"])
            .arg(self.root.path().join("hub.toml"))
            .env("TRUC_HUB__RETENTION__ENABLED", retention.to_string())
            .env_remove(truc_store::CRASH_AT_VARIABLE)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(self.log()).unwrap());
        if fast {
            command.args(["--clock-speed", "200000"]);
        }
        if let Some(step) = crash_at {
            command.env(truc_store::CRASH_AT_VARIABLE, step);
        }
        command
    }

    fn log(&self) -> std::path::PathBuf {
        self.root.path().join("hub.log")
    }

    async fn client(&self, identity: &str) -> truc_node::AxisClient {
        let roots = self.pki.trust_roots().unwrap();
        let credentials = if identity == "ops" {
            self.pki.operator_credentials(identity).unwrap()
        } else {
            self.pki.agency_credentials(identity).unwrap()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            match truc_node::AxisClient::connect(self.address, &roots, credentials.clone()).await {
                Ok(client) if client.counts("", "").await.is_ok() || identity != "ops" => {
                    return client
                }
                _ if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await
                }
                other => panic!(
                    "the hub at {} does not answer: {:?}",
                    self.address,
                    other.err()
                ),
            }
        }
    }
}

/// Sends `count` documents, has the recipient's node acknowledge them and
/// complete each; returns their ids and times of acceptance.
async fn finished_documents(folder: &HubFolder, count: u32) -> Vec<(String, i64)> {
    use tokio_stream::StreamExt;
    // Operator first: it waits for the hub to answer.
    folder.client("ops").await;
    let sender = folder.client(RETENTION_SENDER).await;
    let mut documents = Vec::new();
    for number in 1..=count {
        let response = sender
            .send(
                &truc_testkit::draft(RETENTION_SENDER, &[RETENTION_RECIPIENT], number),
                vec![truc_testkit::pdf("cong-van.pdf", number, 3_000)],
            )
            .await
            .unwrap();
        documents.push((response.document_id, response.accepted_at_unix_ms));
    }
    let recipient = folder.client(RETENTION_RECIPIENT).await;
    let (acks, mut stream) = recipient.deliveries(64).await.unwrap();
    let mut acknowledged = 0;
    while acknowledged < count {
        let message = tokio::time::timeout(std::time::Duration::from_secs(30), stream.next())
            .await
            .expect("deliveries arrive")
            .unwrap()
            .unwrap();
        if let truc_domain::views::HubItem::Delivery(delivery) = message {
            acks.ack(vec![delivery.queue_seq]).await.unwrap();
            acknowledged += 1;
        }
    }
    let moves = documents
        .iter()
        .flat_map(|(id, _)| {
            [
                truc_domain::Status::Received,
                truc_domain::Status::Assigned,
                truc_domain::Status::Processing,
                truc_domain::Status::Completed,
            ]
            .map(|status| truc_domain::views::MoveRequest {
                document_id: id.clone(),
                recipient: String::new(),
                status,
                reason: String::new(),
            })
        })
        .collect();
    for result in recipient.move_statuses(moves).await.unwrap() {
        result.unwrap();
    }
    // The last acknowledgements are written after the moves at the latest.
    let operator = folder.client("ops").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while operator.counts("", "").await.unwrap().total_received < u64::from(count) {
        assert!(
            std::time::Instant::now() < deadline,
            "arrivals not recorded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    documents
}

fn wait_for_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the hub did not reach its crash step within 60 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The hub killed at each step of archiving (batch written, batch synced,
/// duplicate index's run synced, removal durable) loses no document and archives none twice: after a
/// restart each document is in the archive exactly once, its story whole,
/// the counts exact, and a resend still gets the original acknowledgement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_killed_at_each_step_loses_nothing_and_archives_each_document_once() {
    use std::os::unix::process::ExitStatusExt;
    const DOCUMENTS: u32 = 12;
    for step in [
        "archive-written",
        "archive-synced",
        "ids-written",
        "removed",
    ] {
        let folder = HubFolder::new();
        let mut hub = folder.start(false, false, None);
        let documents = finished_documents(&folder, DOCUMENTS).await;
        hub.kill().unwrap();
        hub.wait().unwrap();

        let mut hub = folder.start(true, true, Some(step));
        let status = wait_for_exit(&mut hub);
        assert_eq!(
            status.signal(),
            Some(9),
            "{step}: the hub was killed at its step"
        );
        let log = std::fs::read_to_string(folder.log()).unwrap();
        assert!(log.contains(step), "{step}: {log}");

        let mut hub = folder.start(true, true, None);
        let operator = folder.client("ops").await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut archive = String::new();
        for (id, accepted_at) in &documents {
            let status = truc_testkit::archived_status(&operator, id, deadline, step).await;
            assert_eq!(status.accepted_at_unix_ms, *accepted_at);
            let history: Vec<i32> = status.recipients[0]
                .history
                .iter()
                .map(|e| e.status.code())
                .collect();
            assert_eq!(history, vec![1, 3, 4, 5, 6], "{step}: {id}");
            archive = status.archive;
        }
        let counts = operator.counts("", "").await.unwrap();
        assert_eq!(
            (counts.total_sent, counts.total_received),
            (u64::from(DOCUMENTS), u64::from(DOCUMENTS)),
            "{step}"
        );
        let sender = folder.client(RETENTION_SENDER).await;
        let again = sender
            .send(
                &truc_testkit::draft(RETENTION_SENDER, &[RETENTION_RECIPIENT], 1),
                vec![truc_testkit::pdf("cong-van.pdf", 1, 3_000)],
            )
            .await
            .unwrap();
        assert!(again.duplicate, "{step}");
        assert_eq!(again.accepted_at_unix_ms, documents[0].1, "{step}");
        hub.kill().unwrap();
        hub.wait().unwrap();
        // Each document once in the file, which checks offline.
        let path = folder.root.path().join("archive").join(&archive);
        let checked = truc_archive::verify(&path, None, true).unwrap();
        assert_eq!(checked.problem, None, "{step}");
        assert_eq!(
            checked.documents,
            u64::from(DOCUMENTS),
            "{step}: each document once"
        );
        eprintln!(
            "{step}: killed there, restarted: {} documents in {} sealed batches",
            checked.documents, checked.batches
        );
    }
}

/// The archive files in `dir` with the given suffix.
fn files_ending(dir: &std::path::Path, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(suffix))
        .collect();
    names.sort();
    names
}

/// The hub killed after a month's first archive batch is synced and before
/// the store records it, then restarted months later: the batch left in
/// that month's file is set aside, not kept beside the file that now holds
/// its documents, so that every archive file in the directory checks and
/// each document is archived once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_restarted_in_a_later_month_sets_aside_a_first_batch_never_recorded() {
    use std::os::unix::process::ExitStatusExt;
    const DOCUMENTS: u32 = 6;
    let folder = HubFolder::new();
    let mut hub = folder.start(false, false, None);
    let documents = finished_documents(&folder, DOCUMENTS).await;
    hub.kill().unwrap();
    hub.wait().unwrap();

    let mut hub = folder.start(true, true, Some("archive-synced"));
    assert_eq!(wait_for_exit(&mut hub).signal(), Some(9));
    let archive_dir = folder.root.path().join("archive");
    let left = files_ending(&archive_dir, truc_archive::FILE_SUFFIX);
    assert_eq!(
        left.len(),
        1,
        "the crash left one unrecorded file: {left:?}"
    );

    // Ninety days on by the hub's clock: a later month than the crash's.
    let day = (time::OffsetDateTime::now_utc() + time::Duration::days(90))
        .date()
        .to_string();
    let mut hub = folder
        .command(true, true, None)
        .args(["--clock-start", &day])
        .spawn()
        .expect("start truc hub");
    let operator = folder.client("ops").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut archives = std::collections::BTreeSet::new();
    for (id, _) in &documents {
        let status = truc_testkit::archived_status(&operator, id, deadline, "later month").await;
        archives.insert(status.archive);
    }
    hub.kill().unwrap();
    hub.wait().unwrap();

    assert!(
        !archives.contains(&left[0]),
        "the documents are in the new month's file, not the unrecorded one: {archives:?}"
    );
    let aside = format!("{}{}", left[0], truc_archive::UNCOMMITTED_SUFFIX);
    assert_eq!(
        files_ending(&archive_dir, truc_archive::UNCOMMITTED_SUFFIX),
        vec![aside]
    );
    let log = std::fs::read_to_string(folder.log()).unwrap();
    assert!(log.contains("set aside"), "{log}");
    // Every archive file left checks, and holds each document once.
    let mut archived = 0;
    for name in files_ending(&archive_dir, truc_archive::FILE_SUFFIX) {
        let checked = truc_archive::verify(&archive_dir.join(&name), None, true).unwrap();
        assert_eq!(checked.problem, None, "{name}");
        archived += checked.documents;
    }
    assert_eq!(archived, u64::from(DOCUMENTS), "each document once");
}
