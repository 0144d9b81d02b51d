//! Faults around the hub: every node reconnecting at once after a restart,
//! and nodes whose clocks disagree with the hub's.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tonic::Code;
use truc_domain::Status;
use truc_hub::{AgencyEntry, Clock, ConnectionMode, WatchSetup};
use truc_node::NodeEvent;
use truc_testkit::{draft, pdf, TestHub, TestHubOptions, AGENCIES};

use crate::inbox_documents;

const G22: &str = AGENCIES[0];
/// Nodes in the storm: units of one province, each with a node of its own.
const STORM_NODES: usize = 60;

fn storm_codes() -> Vec<String> {
    (1..=STORM_NODES)
        .map(|unit| format!("000.00.{unit:02}.H43"))
        .collect()
}

#[tokio::test]
async fn every_node_reconnects_at_once_after_a_restart_and_misses_nothing() {
    let codes = storm_codes();
    let mut hub = TestHub::start_with_options(TestHubOptions {
        entries: codes
            .iter()
            .map(|code| AgencyEntry {
                code: code.parse().unwrap(),
                name: format!("Đơn vị {code}"),
                connection: ConnectionMode::Direct,
                relay: false,
                own_node: true,
            })
            .collect(),
        ..TestHubOptions::default()
    })
    .await;
    let (events, mut receiver) = mpsc::channel(4 * STORM_NODES);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut nodes = Vec::new();
    for code in &codes {
        let mut config = hub.node_config(code, Some(hub.root.path().join("inbox").join(code)));
        config.events = Some(events.clone());
        // The shipped backoff ceiling, not the tests' short one.
        config.backoff_max = Duration::from_secs(10);
        let mut stopped = stopped.clone();
        nodes.push(tokio::spawn(truc_node::run_node(config, async move {
            let _ = stopped.changed().await;
        })));
    }
    let recipients: Vec<&str> = codes.iter().map(String::as_str).collect();
    // Told of each document once per node, whatever the reconnections.
    let mut delivered: HashMap<(String, String), usize> = HashMap::new();
    let sender = hub.client(G22).await;
    let first = sender
        .send(&draft(G22, &recipients, 1), vec![pdf("a.pdf", 1, 900)])
        .await
        .unwrap()
        .document_id;
    let deadline = Instant::now() + Duration::from_secs(60);
    while delivered.len() < STORM_NODES {
        assert!(
            Instant::now() < deadline,
            "the first document did not reach every node"
        );
        if let Ok(Some(event)) = tokio::time::timeout(Duration::from_secs(1), receiver.recv()).await
        {
            collect(&mut delivered, event);
        }
    }

    // The restart ends every stream at once; all come back together.
    hub.restart().await;
    let restarted = Instant::now();
    let sender = hub.client(G22).await;
    let second = sender
        .send(&draft(G22, &recipients, 2), vec![pdf("b.pdf", 2, 900)])
        .await
        .unwrap()
        .document_id;
    while delivered.len() < 2 * STORM_NODES {
        assert!(
            restarted.elapsed() < Duration::from_secs(60),
            "{} of {STORM_NODES} nodes had the second document after a minute",
            delivered.len() - STORM_NODES
        );
        if let Ok(Some(event)) = tokio::time::timeout(Duration::from_secs(1), receiver.recv()).await
        {
            collect(&mut delivered, event);
        }
    }
    let all_back = restarted.elapsed();
    let operator = hub.operator().await;
    let online = operator
        .list_nodes()
        .await
        .unwrap()
        .nodes
        .into_iter()
        .filter(|node| node.online && codes.contains(&node.organ_id))
        .count();
    eprintln!(
        "{STORM_NODES} nodes reconnected after a restart and had the next document within {} ms; {online} online",
        all_back.as_millis()
    );
    assert_eq!(online, STORM_NODES);
    stop.send(true).unwrap();
    for node in nodes {
        node.await.unwrap();
    }
    while let Ok(event) = receiver.try_recv() {
        collect(&mut delivered, event);
    }
    for code in &codes {
        for document_id in [&first, &second] {
            assert_eq!(
                delivered.get(&(code.clone(), document_id.clone())),
                Some(&1),
                "{code} told of {document_id}"
            );
        }
        assert_eq!(
            inbox_documents(&hub.root.path().join("inbox").join(code)).len(),
            2,
            "{code}'s inbox"
        );
    }
}

fn collect(delivered: &mut HashMap<(String, String), usize>, event: NodeEvent) {
    if let NodeEvent::Delivered {
        document_id,
        recipient,
        ..
    } = event
    {
        *delivered.entry((recipient, document_id)).or_default() += 1;
    }
}

#[tokio::test]
async fn the_hub_clock_alone_dates_events_whatever_the_nodes_clocks_say() {
    // 23:30 in Hà Nội on 10 March 2026 (16:30 UTC).
    const HUB_NOW_MS: i64 = 1_773_160_200_000;
    let clock = Clock::manual(HUB_NOW_MS);
    let hub = TestHub::start_with_options(TestHubOptions {
        watch: WatchSetup {
            clock: clock.clone(),
            ..WatchSetup::default()
        },
        ..TestHubOptions::default()
    })
    .await;
    let recipient = AGENCIES[1];
    let sender = hub.client(G22).await;
    let dated = |number: u32, date: &str| {
        let mut draft = draft(G22, &[recipient], number);
        draft.date = date.to_owned();
        draft
    };
    // A sender whose clock runs an hour ahead is already on the 11th: within
    // the day of slack, accepted.
    let ahead = sender
        .send(&dated(1, "2026-03-11"), vec![pdf("a.pdf", 1, 300)])
        .await
        .unwrap();
    assert_eq!(ahead.accepted_at_unix_ms, HUB_NOW_MS);
    // One a week ahead is refused, naming the field and the hub's today.
    let refused = sender
        .send(&dated(2, "2026-03-17"), vec![pdf("b.pdf", 2, 300)])
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some(Code::InvalidArgument));
    let message = refused.to_string();
    assert!(
        message.contains("promulgation.date: 2026-03-17 is in the future (today is 2026-03-10)"),
        "{message}"
    );
    // One far behind sends an old document: dates in the past are normal.
    sender
        .send(&dated(3, "2025-12-30"), vec![pdf("c.pdf", 3, 300)])
        .await
        .unwrap();
    // Moves are timed by the hub, in the order it records them.
    clock.advance(Duration::from_secs(90));
    let node = hub.client(recipient).await;
    let received = node
        .move_status(&ahead.document_id, None, Status::Received, "")
        .await
        .unwrap();
    assert_eq!(received.at_unix_ms, HUB_NOW_MS + 90_000);
    let history = sender
        .get_status(&ahead.document_id)
        .await
        .unwrap()
        .recipients[0]
        .history
        .iter()
        .map(|entry| entry.at_unix_ms)
        .collect::<Vec<_>>();
    // "Arrived" is implied by the first move, at the same hub time.
    assert_eq!(history, vec![HUB_NOW_MS + 90_000, HUB_NOW_MS + 90_000]);
}
