//! The short power-cut test: `truc crashtest --power-cut` with the hub's data and the inboxes
//! on the FUSE file system that loses what was not synced, a dozen and a half cuts aimed in
//! turn at sends, deliveries, moves, checkpoints, the hub's start and payload writes. It fails
//! on any acknowledged write lost, any refusal to open, any duplicate; its figures must show
//! the cuts fell at their requests and really took unsynced writes. Skipped, saying so, where
//! FUSE is unavailable (a failure where `TRUC_REQUIRE_FUSE` is set, as in `.ci/run`).

mod support;

use std::process::Command;

use support::TRUC;

#[test]
fn power_cuts_under_load_lose_no_acknowledged_send_delivery_or_move() {
    let probe = tempfile::tempdir().unwrap();
    if truc_faultfs::mount_or_skip(probe.path(), "power_cuts_under_load").is_none() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let json = root.path().join("figures.json");
    let run = support::reported(
        Command::new(TRUC).args([
            "crashtest",
            "--power-cut",
            "--cuts",
            "18",
            "--documents",
            "180",
            "--kill-after-min-ms",
            "300",
            "--kill-after-max-ms",
            "700",
            "--seed",
            "11",
            "--json",
            json.to_str().unwrap(),
            "--keep",
            root.path().join("run").to_str().unwrap(),
        ]),
        &json,
    );
    eprintln!("{}", run.stdout);
    let figures = run.report;
    assert_eq!(figures["cuts"], 18, "{figures}");
    assert_eq!(figures["lost"], 0, "{figures}");
    assert_eq!(figures["duplicates"], 0, "{figures}");
    assert_eq!(
        figures["refusals"].as_array().unwrap().len(),
        0,
        "{figures}"
    );
    // Cuts that fell nowhere in particular, or took nothing, would prove nothing.
    assert!(
        figures["cuts_at_their_request"].as_u64() >= Some(9),
        "{figures}"
    );
    assert!(figures["writes_lost"].as_u64() > Some(0), "{figures}");
    assert!(figures["entries_lost"].as_u64() > Some(0), "{figures}");
    assert!(
        figures["acknowledged_sends_checked"].as_u64() > Some(100),
        "{figures}"
    );
    for aim in [
        "Send",
        "Delivery",
        "Move",
        "Checkpoint",
        "Rollover",
        "Payload",
    ] {
        assert_eq!(figures["cuts_by_aim"][aim], 3, "{aim}: {figures}");
    }
}
