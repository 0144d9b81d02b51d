//! The operator dashboard over real loopback HTTP: nothing without the
//! token, and with it the page, its assets and JSON figures that match the
//! documents, statuses, nodes and overdue deliveries of real traffic.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use truc_domain::Status;
use truc_hub::{Clock, WatchSetup};
use truc_testkit::{draft, pdf, TestHub, TestHubOptions};

use crate::recall::fetch;

const G22: &str = truc_testkit::AGENCIES[0];
const G12: &str = truc_testkit::AGENCIES[1];
const G17: &str = truc_testkit::AGENCIES[3];
const G09: &str = truc_testkit::AGENCIES[4];

/// A bound on each wait, so that a broken hub fails the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(30);

pub(crate) struct Reply {
    pub(crate) status: u16,
    headers: String,
    body: String,
}

impl Reply {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|error| panic!("{error}: {}", self.body))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then_some(value.trim())
        })
    }
}

pub(crate) async fn request(
    address: SocketAddr,
    method: &str,
    path: &str,
    authorization: Option<&str>,
) -> Reply {
    let mut tcp = tokio::net::TcpStream::connect(address)
        .await
        .expect("the dashboard port accepts");
    let authorization = authorization
        .map(|value| format!("Authorization: {value}\r\n"))
        .unwrap_or_default();
    tcp.write_all(
        format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\n{authorization}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut response = String::new();
    tokio::time::timeout(PATIENCE, tcp.read_to_string(&mut response))
        .await
        .expect("the dashboard answers")
        .unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let (status_line, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    Reply {
        status: status_line.split(' ').nth(1).unwrap().parse().unwrap(),
        headers: headers.to_owned(),
        body: body.to_owned(),
    }
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// Percent-encodes everything but unreserved characters, as `encodeURIComponent` does.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

fn row<'a>(rows: &'a Value, key: &str, value: &str) -> &'a Value {
    rows.as_array()
        .unwrap()
        .iter()
        .find(|row| row[key] == value)
        .unwrap_or_else(|| panic!("no row with {key} = {value} in {rows}"))
}

#[tokio::test]
async fn the_dashboard_answers_only_with_the_token_and_shows_the_real_traffic() {
    let mut hub = TestHub::start_with_options(TestHubOptions {
        dashboard: true,
        watch: WatchSetup {
            clock: Clock::manual_now(),
            deadlines: truc_hub::config::DeadlinesConfig {
                arrived_within_minutes: 10,
                received_within_working_minutes: 0,
                due_date: false,
                ..Default::default()
            },
            expiry: truc_hub::config::ExpiryConfig { ttl_minutes: 0 },
            ..WatchSetup::default()
        },
        ..TestHubOptions::default()
    })
    .await;
    let address = hub.dashboard_address.expect("a dashboard port");
    let token = hub.dashboard_token.clone().expect("a dashboard token");
    let signed_in = basic("ops", &token);

    // Without the token: 401 and nothing else, whatever is asked.
    for (method, path, authorization) in [
        ("GET", "/", None),
        ("GET", "/api/overview", None),
        (
            "GET",
            "/dashboard.js",
            Some(basic("ops", "not the token").as_str()),
        ),
        (
            "GET",
            "/api/overview",
            Some(format!("Bearer {}x", token).as_str()),
        ),
        (
            "GET",
            "/api/overview",
            Some(format!("Basic {token}").as_str()),
        ),
        ("POST", "/api/overview", None),
    ] {
        let reply = request(address, method, path, authorization).await;
        assert_eq!(reply.status, 401, "{method} {path} {authorization:?}");
        assert_eq!(reply.body, "sign in as an operator\n");
        assert!(reply
            .header("www-authenticate")
            .is_some_and(|value| value.starts_with("Basic ")));
    }
    // With it, the dashboard is read-only.
    let reply = request(address, "POST", "/api/overview", Some(&signed_in)).await;
    assert_eq!(reply.status, 405);

    // Real traffic: G22 → G12 (arrives, completed) and G17 (never fetched);
    // G12 → G22 (arrives, rejected with a reason); G09's node stays online.
    let g22 = hub.client(G22).await;
    let first = g22
        .send(&draft(G22, &[G12, G17], 1), vec![pdf("a.pdf", 1, 10)])
        .await
        .unwrap()
        .document_id;
    let g12 = hub.client(G12).await;
    let second = g12
        .send(&draft(G12, &[G22], 2), vec![pdf("b.pdf", 2, 10)])
        .await
        .unwrap()
        .document_id;
    fetch(&hub, G12, &first).await;
    fetch(&hub, G22, &second).await;
    g12.move_status(&first, None, Status::Completed, "")
        .await
        .unwrap();
    g22.move_status(&second, None, Status::Rejected, "Sai thẩm quyền")
        .await
        .unwrap();
    let (_g09_acks, _g09_stream) = hub.client(G09).await.deliveries(8).await.unwrap();
    // Eleven minutes on, G17 owes its arrival; wait until the watcher wrote it down.
    hub.clock().advance(Duration::from_secs(11 * 60));
    let operator = hub.operator().await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while operator
        .list_overdue(&truc_domain::views::OverdueFilter::default())
        .await
        .unwrap()
        .deliveries
        .is_empty()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing became overdue"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let page = request(address, "GET", "/", Some(&signed_in)).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Document lookup") && page.body.contains("/dashboard.js"));
    assert!(page.header("content-security-policy").is_some());
    let script = request(
        address,
        "GET",
        "/dashboard.js",
        Some(&format!("Bearer {token}")),
    )
    .await;
    assert_eq!(script.status, 200);
    assert!(script
        .header("content-type")
        .unwrap()
        .starts_with("text/javascript"));
    assert_eq!(
        request(address, "GET", "/nothing", Some(&signed_in))
            .await
            .status,
        404
    );

    let overview = request(address, "GET", "/api/overview", Some(&signed_in)).await;
    assert_eq!(overview.status, 200, "{}", overview.body);
    let overview = overview.json();
    assert_eq!(overview["totals"]["documents_sent"], 2);
    assert_eq!(overview["totals"]["deliveries_received"], 2);
    assert_eq!(overview["totals"]["agencies_registered"], 5);
    let agencies = &overview["agencies"]["rows"];
    assert_eq!(
        (
            row(agencies, "code", G22)["sent"].clone(),
            row(agencies, "code", G22)["received"].clone()
        ),
        (1.into(), 1.into())
    );
    assert_eq!(row(agencies, "code", G12)["name"], format!("Agency {G12}"));
    let days = overview["days"]["rows"].as_array().unwrap();
    assert_eq!(days.len(), 1, "both documents carry today's date");
    assert_eq!(
        (days[0]["sent"].clone(), days[0]["received"].clone()),
        (2.into(), 2.into())
    );
    assert_eq!(overview["months"]["rows"].as_array().unwrap().len(), 1);

    // The funnel counts a status for every step before it: G12 completed, G22 rejected.
    let funnel = &overview["funnel"];
    assert_eq!(funnel["deliveries"], 3);
    assert_eq!(funnel["queued"], 1);
    assert_eq!(funnel["rejected"], 1);
    let reached: Vec<(String, u64)> = funnel["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_owned(),
                s["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        reached,
        [
            ("arrived", 2),
            ("received", 1),
            ("assigned", 1),
            ("processing", 1),
            ("completed", 1)
        ]
        .map(|(name, count)| (name.to_owned(), count))
    );

    let nodes = &overview["nodes"];
    assert_eq!(
        (nodes["with_node"].clone(), nodes["online"].clone()),
        (5.into(), 1.into())
    );
    // Queues also hold the status notices on their way back to the senders,
    // counted apart from documents: one document waits, for G17.
    let sum = |field: &str| -> u64 {
        nodes["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n[field].as_u64().unwrap())
            .sum()
    };
    assert_eq!(nodes["documents_queued"], 1);
    assert_eq!(nodes["documents_queued"], sum("queued_documents"));
    assert_eq!(nodes["notices_queued"], sum("queued_notices"));
    assert!(sum("queued_notices") >= 1, "{nodes}");
    let g17 = row(&nodes["rows"], "code", G17);
    assert_eq!(
        (
            g17["queued_documents"].clone(),
            g17["queued_notices"].clone(),
            g17["oldest_unacked_document_id"].clone()
        ),
        (1.into(), 0.into(), first.clone().into())
    );
    assert_eq!(row(&nodes["rows"], "code", G09)["online"], true);

    let overdue = overview["overdue"]["rows"].as_array().unwrap();
    assert_eq!(overdue.len(), 1, "{overdue:?}");
    assert_eq!(
        (
            overdue[0]["recipient"].as_str(),
            overdue[0]["deadline"].as_str()
        ),
        (Some(G17), Some("arrived"))
    );
    assert_eq!(overdue[0]["document_id"], first.as_str());
    assert_eq!(overview["recent"].as_array().unwrap().len(), 2);

    // The lookup: each recipient's route and history, and one timeline.
    let lookup = request(
        address,
        "GET",
        &format!("/api/document?id={}", encode(&first)),
        Some(&signed_in),
    )
    .await;
    assert_eq!(lookup.status, 200, "{}", lookup.body);
    let document = lookup.json();
    assert_eq!(document["document_id"], first.as_str());
    assert_eq!(document["sender"], G22);
    let recipients = &document["recipients"];
    assert_eq!(row(recipients, "recipient", G12)["current"], "completed");
    assert_eq!(row(recipients, "recipient", G17)["current"], "queued");
    assert_eq!(
        row(recipients, "recipient", G17)["route"],
        format!("{G17} → delivered to its own node")
    );
    let events: Vec<&str> = document["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["event"].as_str().unwrap())
        .collect();
    assert_eq!(events.first(), Some(&"accepted"));
    assert!(
        events.contains(&"arrived") && events.contains(&"completed"),
        "{events:?}"
    );
    let rejected = request(
        address,
        "GET",
        &format!("/api/document?id={}", encode(&second)),
        Some(&signed_in),
    )
    .await
    .json();
    let entry = rejected["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|event| event["event"] == "rejected")
        .expect("the rejection is on the timeline")
        .clone();
    assert_eq!(
        (entry["actor"].as_str(), entry["reason"].as_str()),
        (Some(G22), Some("Sai thẩm quyền"))
    );

    let missing = format!("{G22},2020/01/01,999/VPCP-TTĐT");
    assert_eq!(
        request(
            address,
            "GET",
            &format!("/api/document?id={}", encode(&missing)),
            Some(&signed_in)
        )
        .await
        .status,
        404
    );
    assert_eq!(
        request(
            address,
            "GET",
            "/api/document?id=nonsense",
            Some(&signed_in)
        )
        .await
        .status,
        400
    );
    assert_eq!(
        request(address, "GET", "/api/document", Some(&signed_in))
            .await
            .status,
        400
    );

    // The port is free again once the hub has stopped.
    hub.stop().await;
    tokio::net::TcpListener::bind(address)
        .await
        .expect("the dashboard let go of its port");
}

#[tokio::test]
async fn rates_follow_the_counters_between_snapshots() {
    let hub = TestHub::start_with_options(TestHubOptions {
        dashboard: true,
        ..TestHubOptions::default()
    })
    .await;
    let address = hub.dashboard_address.unwrap();
    let bearer = format!("Bearer {}", hub.dashboard_token.clone().unwrap());
    let first = request(address, "GET", "/api/overview", Some(&bearer))
        .await
        .json();
    assert!(
        first["rates"]["sent_per_minute"].is_null(),
        "no span to measure yet"
    );
    let g22 = hub.client(G22).await;
    for number in 1..=3 {
        g22.send(&draft(G22, &[G12], number), vec![pdf("a.pdf", number, 10)])
            .await
            .unwrap();
    }
    // A snapshot is served again for two seconds; the next one measures the change.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let later = loop {
        let overview = request(address, "GET", "/api/overview", Some(&bearer))
            .await
            .json();
        if overview["totals"]["documents_sent"] == 3 {
            break overview;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the overview never caught up"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let per_minute = later["rates"]["sent_per_minute"].as_f64().expect("a rate");
    let window = later["rates"]["window_seconds"].as_f64().unwrap();
    assert!(
        (per_minute - 3.0 * 60.0 / window).abs() < 1e-6,
        "{per_minute} over {window} s"
    );
    let g22_rate = row(&later["agencies"]["rows"], "code", G22)["sent_per_minute"]
        .as_f64()
        .unwrap();
    assert!((g22_rate - per_minute).abs() < 1e-6);
}
