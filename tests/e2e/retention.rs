//! Retention end to end: documents whose every delivery is final leave the
//! live store for a signed archive once older than the period, by the
//! hub's clock; what an operator and the agencies see of them afterwards
//! (their status read from the archive, the original acknowledgement of a
//! resend, refusals of moves, attachments and recalls, exact counts and
//! reports, the audit export of the live chain, the dashboard), and what a
//! hub without the archive file still says.

use std::io::Cursor;
use std::time::Duration;

use tonic::Code;
use truc_domain::Status;
use truc_hub::{Clock, RetentionSetup, WatchSetup};
use truc_testkit::{archived_status, draft, pdf, TestHub, TestHubOptions, AGENCIES};

use crate::recall::{business, fetch};

const G22: &str = AGENCIES[0];
const G12: &str = AGENCIES[1];
const H41: &str = AGENCIES[2];

const PERIOD_DAYS: u64 = 30;
/// A bound on each wait, so that a broken hub fails the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(30);

async fn start(archives: &std::path::Path, clock: Clock) -> TestHub {
    TestHub::start_with_options(TestHubOptions {
        dashboard: true,
        // The clock moves more than a month ahead.
        certificate_validity: Some(Duration::from_secs(400 * 86_400)),
        watch: WatchSetup {
            clock,
            deadlines: truc_hub::config::DeadlinesConfig {
                arrived_within_minutes: 0,
                received_within_working_minutes: 0,
                due_date: false,
                ..Default::default()
            },
            expiry: truc_hub::config::ExpiryConfig { ttl_minutes: 0 },
            retention: RetentionSetup {
                enabled: true,
                period: Duration::from_secs(PERIOD_DAYS * 86_400),
                archive_dir: archives.to_owned(),
                // Runs only when the test moves the clock.
                run_interval: Duration::from_secs(3600),
                ..RetentionSetup::default()
            },
            ..WatchSetup::default()
        },
        ..TestHubOptions::default()
    })
    .await
}

/// Waits until the operator sees `document_id` in an archive.
async fn archived(hub: &TestHub, document_id: &str) -> truc_domain::views::DocumentStatus {
    let operator = hub.operator().await;
    let deadline = std::time::Instant::now() + PATIENCE;
    archived_status(&operator, document_id, deadline, "retention").await
}

async fn overview(hub: &TestHub) -> serde_json::Value {
    crate::dashboard::request(
        hub.dashboard_address.unwrap(),
        "GET",
        "/api/overview",
        Some(&format!("Bearer {}", hub.dashboard_token.clone().unwrap())),
    )
    .await
    .json()
}

/// Waits until retention has run `runs` times since the hub started. The
/// dashboard caches its figures for 2 s, so this asks again until then.
async fn wait_for_runs(hub: &TestHub, runs: u64) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let seen = overview(hub).await["retention"]["runs"]
            .as_u64()
            .unwrap_or(0);
        if seen >= runs {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "retention ran {seen} times, not {runs}, within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn refusal<T: std::fmt::Debug>(result: Result<T, truc_node::ClientError>) -> tonic::Status {
    match result {
        Err(truc_node::ClientError::Refused(status)) => status,
        other => panic!("a refusal, not {other:?}"),
    }
}

#[tokio::test]
async fn final_documents_leave_for_a_signed_archive_and_stay_counted_and_recognised() {
    let archives = tempfile::tempdir().unwrap();
    let clock = Clock::manual_now();
    let mut hub = start(archives.path(), clock.clone()).await;
    let sender = hub.client(G22).await;
    // A: completed by one recipient, rejected by the other.
    let a = sender
        .send(&draft(G22, &[H41, G12], 1), vec![pdf("a.pdf", 1, 2_000)])
        .await
        .unwrap();
    // B: its recipient has it but has not finished with it.
    let b = sender
        .send(&draft(G22, &[H41], 2), vec![pdf("b.pdf", 2, 2_000)])
        .await
        .unwrap();
    for (agency, document) in [(H41, &a), (G12, &a), (H41, &b)] {
        fetch(&hub, agency, &document.document_id).await;
    }
    let h41 = hub.client(H41).await;
    let g12 = hub.client(G12).await;
    h41.move_status(&a.document_id, None, Status::Completed, "")
        .await
        .unwrap();
    g12.move_status(
        &a.document_id,
        None,
        Status::Rejected,
        "không thuộc thẩm quyền",
    )
    .await
    .unwrap();
    h41.move_status(&b.document_id, None, Status::Received, "")
        .await
        .unwrap();
    let operator = hub.operator().await;
    let counts_before = operator.counts("", "").await.unwrap();
    let report_before = operator.report("", "", H41).await.unwrap();

    // A day short of the period nothing leaves; past it, A does and B stays.
    wait_for_runs(&hub, 1).await;
    clock.advance(Duration::from_secs((PERIOD_DAYS - 1) * 86_400));
    wait_for_runs(&hub, 2).await;
    assert!(operator
        .get_status(&a.document_id)
        .await
        .unwrap()
        .archive
        .is_empty());
    clock.advance(Duration::from_secs(2 * 86_400));
    let status = archived(&hub, &a.document_id).await;
    assert!(status.archive.ends_with(".truca"), "{}", status.archive);
    assert!(!status.archive_unreadable);
    // The whole story comes back from the archive.
    let histories: Vec<(String, Vec<i32>)> = status
        .recipients
        .iter()
        .map(|r| {
            (
                r.recipient.clone(),
                r.history.iter().map(|e| e.status.code()).collect(),
            )
        })
        .collect();
    assert_eq!(
        histories,
        vec![(G12.to_owned(), vec![1, 2]), (H41.to_owned(), vec![1, 6]),]
    );
    assert!(operator
        .get_status(&b.document_id)
        .await
        .unwrap()
        .archive
        .is_empty());
    // A recipient still reads its own row of an archived document, and only it.
    let seen_by_g12 = g12.get_status(&a.document_id).await.unwrap();
    assert_eq!(seen_by_g12.recipients.len(), 1);
    assert_eq!(seen_by_g12.archive, status.archive);

    // Counts and reports are exactly as before.
    assert_eq!(operator.counts("", "").await.unwrap(), counts_before);
    assert_eq!(operator.report("", "", H41).await.unwrap(), report_before);

    // A resend gets the original acknowledgement; other content under the
    // id is refused as before.
    let again = sender
        .send(&draft(G22, &[H41, G12], 1), vec![pdf("a.pdf", 1, 2_000)])
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.accepted_at_unix_ms, a.accepted_at_unix_ms);
    let other = refusal(
        sender
            .send(&draft(G22, &[H41, G12], 1), vec![pdf("a.pdf", 9, 2_000)])
            .await,
    );
    assert_eq!(other.code(), Code::AlreadyExists, "{other:?}");

    // Nothing more happens to an archived document.
    let moved = refusal(
        h41.move_status(&a.document_id, None, Status::Processing, "")
            .await,
    );
    assert_eq!(moved.code(), Code::FailedPrecondition, "{moved:?}");
    assert!(moved.message().starts_with("document_id: "), "{moved:?}");
    let fetched = refusal(h41.fetch_attachment_bytes(&a.document_id, 0).await);
    assert_eq!(fetched.code(), Code::FailedPrecondition, "{fetched:?}");
    let recalled = refusal(
        sender
            .send(
                &business(
                    G22,
                    &[H41],
                    3,
                    truc_domain::BusinessType::Revoke,
                    &a.document_id,
                ),
                Vec::new(),
            )
            .await,
    );
    assert_eq!(recalled.code(), Code::FailedPrecondition, "{recalled:?}");
    assert!(
        recalled.message().starts_with("business_refs[0]: "),
        "{recalled:?}"
    );

    // The archive checks offline, and the live chain goes on from it.
    let path = archives.path().join(&status.archive);
    let checked = truc_archive::verify(&path, Some(&hub.pki.trust_roots().unwrap()), true).unwrap();
    assert_eq!(checked.problem, None);
    assert_eq!(checked.documents, 1);
    assert_eq!(checked.signatures_checked, 1);
    let mut chunks = operator.export_audit(0, 0).await.unwrap();
    let mut export = Vec::new();
    while let Some(chunk) = chunks.message().await.unwrap() {
        export.extend_from_slice(&chunk);
    }
    let live = truc_hub::audit::verify(Cursor::new(export), Some(&hub.pki.trust_roots().unwrap()))
        .unwrap();
    assert_eq!(live.problem, None, "the live chain's export still verifies");
    assert_eq!(live.first_seq, checked.audit_last_seq + 1);

    // The dashboard shows the live store, the archives and the last run.
    wait_for_runs(&hub, 3).await;
    let overview = overview(&hub).await;
    assert_eq!(overview["store"]["archived_documents"], 1, "{overview}");
    assert!(overview["store"]["size_bytes"].as_u64().unwrap() > 0);
    // One archived document's entry, in a run file of its own.
    let id_index = overview["store"]["id_index_bytes"].as_u64().unwrap();
    assert!((100..1_000).contains(&id_index), "{overview}");
    assert_eq!(overview["retention"]["enabled"], true);
    assert_eq!(overview["retention"]["held"], 1, "B is held: {overview}");
    assert_eq!(overview["retention"]["backlog"], 1, "{overview}");
    assert_eq!(overview["funnel"]["archived"], 2, "{overview}");
    assert_eq!(overview["funnel"]["deliveries"], 3, "{overview}");

    // After a restart the index still says where A is; once the file is
    // moved elsewhere the hub still names it and lists the recipients.
    hub.restart().await;
    let operator = hub.operator().await;
    assert_eq!(
        operator.get_status(&a.document_id).await.unwrap().archive,
        status.archive
    );
    let moved_away = tempfile::tempdir().unwrap();
    std::fs::rename(&path, moved_away.path().join(&status.archive)).unwrap();
    let without = operator.get_status(&a.document_id).await.unwrap();
    assert!(without.archive_unreadable);
    assert_eq!(without.recipients.len(), 2);
    assert!(without.recipients.iter().all(|r| r.history.is_empty()));
}
