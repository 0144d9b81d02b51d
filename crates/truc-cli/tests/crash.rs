//! The fast crash test: `truc crashtest` with a few SIGKILLs of the hub process and one of a
//! node agent process, run as a user runs it; it fails on any loss or duplicate, and its
//! figures must show the kills really fell while work was under way.

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
