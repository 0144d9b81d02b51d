//! The tamper-evident audit log: every send and status move is chained, an
//! operator's export verifies offline, and the first altered or removed entry
//! is named; the chain carries on across restarts and a period can be checked
//! on its own.

use std::io::Cursor;
use std::time::Duration;

use serde_json::Value;
use tonic::Code;
use truc_domain::Status;
use truc_hub::audit::{self, Verification};
use truc_hub::{Clock, WatchSetup};
use truc_testkit::{draft, pdf, TestHub, TestHubOptions, AGENCIES};

const G22: &str = AGENCIES[0];
const G12: &str = AGENCIES[1];
const H41: &str = AGENCIES[2];

/// The export of `[from, to]` from the running hub, as the operator gets it.
async fn export(hub: &TestHub, from_unix_ms: i64, to_unix_ms: i64) -> Vec<String> {
    let operator = hub.operator().await;
    let mut chunks = operator
        .export_audit(from_unix_ms, to_unix_ms)
        .await
        .unwrap();
    let mut bytes = Vec::new();
    while let Some(chunk) = chunks.message().await.unwrap() {
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn check(hub: &TestHub, lines: &[String]) -> Verification {
    let ca = hub.pki.trust_roots().unwrap();
    audit::verify(Cursor::new(lines.join("\n")), Some(&ca)).unwrap()
}

/// The line index of entry `seq`.
fn entry_line(lines: &[String], seq: u64) -> usize {
    lines
        .iter()
        .position(|line| {
            let value: Value = serde_json::from_str(line).unwrap();
            value["type"] == "entry" && value["seq"] == seq
        })
        .unwrap_or_else(|| panic!("no entry {seq}"))
}

fn edit(lines: &[String], index: usize, change: impl FnOnce(&mut Value)) -> Vec<String> {
    let mut lines = lines.to_vec();
    let mut value: Value = serde_json::from_str(&lines[index]).unwrap();
    change(&mut value);
    lines[index] = value.to_string();
    lines
}

fn problem(verification: &Verification) -> (Option<u64>, String) {
    let problem = verification.problem.as_ref().expect("a problem found");
    (problem.seq, problem.what.clone())
}

/// Sends two documents and moves their statuses: 2 sends and 6 status
/// entries (each first move records the arrival it implies).
async fn traffic(hub: &TestHub) {
    let sender = hub.client(G22).await;
    let first = sender
        .send(&draft(G22, &[H41, G12], 1), vec![pdf("a.pdf", 1, 100)])
        .await
        .unwrap()
        .document_id;
    let second = sender
        .send(&draft(G22, &[H41], 2), vec![pdf("b.pdf", 2, 100)])
        .await
        .unwrap()
        .document_id;
    let h41 = hub.client(H41).await;
    let g12 = hub.client(G12).await;
    h41.move_status(&first, None, Status::Received, "")
        .await
        .unwrap();
    g12.move_status(&first, None, Status::Assigned, "")
        .await
        .unwrap();
    h41.move_status(&second, None, Status::Rejected, "Sai thẩm quyền")
        .await
        .unwrap();
}

#[tokio::test]
async fn an_export_verifies_and_names_the_first_entry_altered_or_removed() {
    let hub = TestHub::start().await;
    traffic(&hub).await;
    let lines = export(&hub, 0, 0).await;
    let verified = check(&hub, &lines);
    assert_eq!(verified.problem, None);
    assert_eq!((verified.first_seq, verified.last_seq), (1, 8));
    assert_eq!(verified.signatures_checked, 2);
    assert!(verified.signed_by.is_some(), "signed by the hub");
    // Also against the CA the export carries.
    let own_ca = audit::verify(Cursor::new(lines.join("\n")), None).unwrap();
    assert_eq!(own_ca.problem, None);

    // A status changed (the rejection, entry 8, made "completed").
    let status_changed = edit(&lines, entry_line(&lines, 8), |v| v["status"] = 6.into());
    assert_eq!(problem(&check(&hub, &status_changed)).0, Some(8));

    // One byte of a send's signature flipped.
    let flipped = edit(&lines, entry_line(&lines, 1), |v| {
        let mut signature = v["signature"].as_str().unwrap().to_owned();
        let replaced = if signature.starts_with('0') { "1" } else { "0" };
        signature.replace_range(0..1, replaced);
        v["signature"] = signature.into();
    });
    let (seq, what) = problem(&check(&hub, &flipped));
    assert_eq!(seq, Some(1), "{what}");

    // The signature flipped and the entry's hash recomputed: the signature check names it.
    let rehashed = edit(&flipped, entry_line(&flipped, 1), |v| {
        let exported: audit::ExportEntry = serde_json::from_value(v.clone()).unwrap();
        let entry = truc_store::AuditEntry::try_from(&exported).unwrap();
        v["sha256"] = hex(&entry.compute_sha256()).into();
    });
    let (seq, what) = problem(&check(&hub, &rehashed));
    assert_eq!(seq, Some(1), "{what}");
    assert!(what.contains("signature"), "{what}");

    // A status move's fields and its hash both rewritten: the next entry still names the old hash.
    let moved = edit(&lines, entry_line(&lines, 5), |v| {
        v["actor"] = AGENCIES[3].into();
        let exported: audit::ExportEntry = serde_json::from_value(v.clone()).unwrap();
        let entry = truc_store::AuditEntry::try_from(&exported).unwrap();
        v["sha256"] = hex(&entry.compute_sha256()).into();
    });
    let (seq, what) = problem(&check(&hub, &moved));
    assert_eq!(seq, Some(5), "{what}");

    // An entry removed: the gap is named.
    let mut removed = lines.clone();
    removed.remove(entry_line(&lines, 4));
    let (seq, what) = problem(&check(&hub, &removed));
    assert_eq!(seq, Some(4), "{what}");
    assert!(what.contains("removed"), "{what}");

    // The last entry removed: the hub's end line still counts it.
    let mut cut = lines.clone();
    cut.remove(entry_line(&lines, 8));
    let (seq, what) = problem(&check(&hub, &cut));
    assert_eq!(seq, Some(8), "{what}");

    // The file cut before its end.
    let truncated = lines[..entry_line(&lines, 6)].to_vec();
    let (seq, what) = problem(&check(&hub, &truncated));
    assert_eq!(seq, Some(6), "{what}");

    // The end rewritten to hide a removed tail: the hub's signature no longer checks.
    let mut tail_hidden = cut.clone();
    let end = tail_hidden.len() - 1;
    let seventh: Value = serde_json::from_str(&lines[entry_line(&lines, 7)]).unwrap();
    tail_hidden = edit(&tail_hidden, end, |v| {
        v["last_seq"] = 7.into();
        v["entries"] = 7.into();
        v["last_sha256"] = seventh["sha256"].clone();
    });
    let (_, what) = problem(&check(&hub, &tail_hidden));
    assert!(what.contains("hub's signature"), "{what}");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn agencies_may_not_export_the_audit_log() {
    let hub = TestHub::start().await;
    let agency = hub.client(G22).await;
    let refused = agency.export_audit(0, 0).await.unwrap_err();
    assert_eq!(refused.code(), Some(Code::PermissionDenied));
}

#[tokio::test]
async fn the_chain_carries_on_across_a_restart_and_a_period_checks_on_its_own() {
    let clock = Clock::manual_now();
    let mut hub = TestHub::start_with_options(TestHubOptions {
        watch: WatchSetup {
            clock: clock.clone(),
            ..WatchSetup::default()
        },
        ..TestHubOptions::default()
    })
    .await;
    traffic(&hub).await;
    let before_restart = export(&hub, 0, 0).await;
    hub.restart().await;
    clock.advance(Duration::from_secs(3_600));
    let period_start = clock.now_unix_ms();
    let sender = hub.client(G22).await;
    let third = sender
        .send(&draft(G22, &[G12], 3), vec![pdf("c.pdf", 3, 100)])
        .await
        .unwrap()
        .document_id;
    hub.client(G12)
        .await
        .move_status(&third, None, Status::Received, "")
        .await
        .unwrap();

    let whole = export(&hub, 0, 0).await;
    let verified = check(&hub, &whole);
    assert_eq!(verified.problem, None);
    assert_eq!((verified.first_seq, verified.last_seq), (1, 11));
    // The entries from before the restart are unchanged (the header's time differs).
    assert_eq!(
        whole[1..=entry_line(&whole, 8)],
        before_restart[1..before_restart.len() - 1]
    );

    // The last hour alone: it starts from the hash of entry 8.
    let period = export(&hub, period_start, clock.now_unix_ms()).await;
    let verified = check(&hub, &period);
    assert_eq!(verified.problem, None);
    assert_eq!((verified.first_seq, verified.last_seq), (9, 11));
    let header: Value = serde_json::from_str(&period[0]).unwrap();
    let eighth: Value = serde_json::from_str(&whole[entry_line(&whole, 8)]).unwrap();
    assert_eq!(header["previous_sha256"], eighth["sha256"]);
    // Its first entry removed: named although the period begins after it.
    let mut removed = period.clone();
    removed.remove(entry_line(&period, 9));
    assert_eq!(problem(&check(&hub, &removed)).0, Some(9));

    // A stopped hub's data directory exports the same entries offline.
    hub.stop().await;
    let store = hub.stopped_store().await;
    let mut offline = Vec::new();
    let trust = hub.pki.trust_roots().unwrap();
    let summary = audit::write_export(
        &store,
        &trust,
        None,
        0,
        0,
        clock.now_unix_ms(),
        &mut offline,
    )
    .unwrap();
    assert_eq!((summary.entries, summary.signed), (11, false));
    let offline = audit::verify(Cursor::new(offline), Some(&trust)).unwrap();
    assert_eq!(offline.problem, None);
    assert_eq!(offline.signed_by, None);
}

#[tokio::test]
async fn an_expired_agency_certificate_is_refused_at_the_handshake() {
    let hub = TestHub::start().await;
    let today = time::OffsetDateTime::now_utc();
    let (cert_pem, key_pem) = truc_pki::issue_agency_pem_with_window(
        &hub.pki,
        G22,
        today - time::Duration::days(10),
        today - time::Duration::days(1),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (
        dir.path().join("expired.crt"),
        dir.path().join("expired.key"),
    );
    std::fs::write(&cert, cert_pem).unwrap();
    std::fs::write(&key, key_pem).unwrap();
    let credentials = truc_pki::Credentials::load(&cert, &key).unwrap();
    // rustls refuses the certificate during the handshake, before any gRPC
    // status can be sent: the client sees a failed connection or call, and the
    // hub's log names the certificate and since when it is expired.
    let refused = match truc_node::AxisClient::connect(
        hub.address,
        &hub.pki.trust_roots().unwrap(),
        credentials,
    )
    .await
    {
        Err(error) => error.to_string(),
        Ok(client) => client.counts("", "").await.unwrap_err().to_string(),
    };
    assert!(!refused.is_empty());
    // The hub goes on serving valid certificates.
    hub.client(G22).await.counts("", "").await.unwrap();
}
