//! `truc bench --scenario nodes` with a few nodes against the hub process it
//! starts, kills and restarts: every node connected, every delivery counted
//! by its recipient and by the hub, every stream reopened after the restart.

mod support;

use std::process::Command;

use support::TRUC;
const NODES: u64 = 50;
/// 40 documents/s for 2 s.
const DOCUMENTS: u64 = 80;

#[test]
fn a_short_many_nodes_bench_connects_delivers_and_reconnects_after_a_kill() {
    let root = tempfile::tempdir().unwrap();
    let json = root.path().join("nodes.json");
    let run = support::reported(
        Command::new(TRUC).args([
            "bench",
            "--scenario",
            "nodes",
            "--nodes",
            &NODES.to_string(),
            "--duration",
            "2",
            "--rate",
            "40",
            "--json",
            json.to_str().unwrap(),
        ]),
        &json,
    );
    let (stdout, report) = (run.stdout, run.report);
    assert!(stdout.contains("no failures"), "{stdout}");
    let number = |value: &serde_json::Value| value.as_u64().unwrap_or_else(|| panic!("{value}"));
    let real = |value: &serde_json::Value| value.as_f64().unwrap_or_else(|| panic!("{value}"));
    assert_eq!(number(&report["nodes"]), NODES);
    // Every agency, the CA, the hub and the operator.
    assert_eq!(number(&report["certificates"]), NODES + 3);
    assert!(real(&report["certificates_seconds"]) >= 0.0);
    // Every node's stream open, as the bench and as the hub see it.
    assert_eq!(number(&report["connect"]["count"]), NODES);
    assert_eq!(number(&report["hub_nodes_online"]), NODES);
    assert!(real(&report["connect_seconds"]) > 0.0);
    let before = number(&report["hub_rss_before_bytes"]);
    let connected = number(&report["hub_rss_connected_bytes"]);
    let per_node = real(&report["hub_bytes_per_idle_node"]);
    assert!(
        (per_node * NODES as f64 - (connected as f64 - before as f64)).abs() < 1.0,
        "{per_node} per node from {before} to {connected}"
    );
    // Every document sent was acknowledged and delivered once, and the hub
    // counts exactly those, as do the senders' arrival notices.
    let delivery = &report["delivery"];
    assert_eq!(number(&delivery["documents_sent"]), DOCUMENTS);
    assert_eq!(number(&delivery["documents_acknowledged"]), DOCUMENTS);
    assert_eq!(number(&delivery["deliveries_received"]), DOCUMENTS);
    assert_eq!(number(&delivery["hub_documents_accepted"]), DOCUMENTS);
    assert_eq!(number(&delivery["hub_arrivals_recorded"]), DOCUMENTS);
    assert_eq!(number(&delivery["arrival_notices"]), DOCUMENTS);
    assert_eq!(number(&delivery["send_to_delivered"]["count"]), DOCUMENTS);
    assert_eq!(number(&delivery["send_to_ack"]["count"]), DOCUMENTS);
    assert_eq!(delivery["consistent"], true);
    // After the kill every node reopened its stream on the restarted hub,
    // which kept what it had acknowledged.
    let restart = &report["restart"];
    assert_eq!(number(&restart["streams_reopened"]), NODES);
    assert_eq!(number(&restart["reopened_after_accepting"]["count"]), NODES);
    assert_eq!(number(&restart["hub_nodes_online"]), NODES);
    assert_eq!(restart["counts_kept"], true);
    let (down, reconnect, total) = (
        real(&restart["down_seconds"]),
        real(&restart["reconnect_seconds"]),
        real(&restart["kill_to_all_seconds"]),
    );
    assert!(down > 0.0 && reconnect >= 0.0, "{restart}");
    assert!((down + reconnect - total).abs() < 1e-6, "{restart}");
    assert!(report["failures"].as_array().unwrap().is_empty());
}
