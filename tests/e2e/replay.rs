//! Scaled replays end to end: an embedded hub over real mutual TLS, one node per unit with its
//! own certificate, every document signed and every delivery verified, and the hub's own report
//! compared with the scaled plan's counts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use truc_domain::AgencyCode;
use truc_replay::driver::{self, EmbeddedHub, ReplayOptions};
use truc_replay::progress::ProgressMode;
use truc_replay::published::{Dataset, Expected, GOVERNMENT_OFFICE};
use truc_replay::report::{FigureSource, Report};
use truc_replay::source::{figures_from_data_dir, SourceError};
use truc_replay::Plan;

fn options() -> ReplayOptions {
    ReplayOptions {
        progress: ProgressMode::Off,
        // A broken hub fails the test instead of hanging it.
        stall_timeout: Duration::from_secs(30),
        ..ReplayOptions::default()
    }
}

/// (sent to the office, of those signed) per sender, as the plan has them.
fn office_counts(plan: &Plan) -> BTreeMap<AgencyCode, (u64, u64)> {
    let office: AgencyCode = GOVERNMENT_OFFICE.parse().unwrap();
    let mut counts: BTreeMap<AgencyCode, (u64, u64)> = BTreeMap::new();
    for document in &plan.documents {
        if document.recipients.contains(&office) {
            let entry = counts.entry(document.sender).or_default();
            entry.0 += 1;
            entry.1 += u64::from(document.document_signed);
        }
    }
    counts
}

/// Documents sent and deliveries received, summed over the hub's recomputed
/// per-agency records.
fn hub_row_totals(outcome: &driver::ReplayOutcome) -> (u64, u64) {
    outcome
        .figures
        .agencies
        .values()
        .fold((0, 0), |(sent, received), row| {
            (sent + row.sent, received + row.received)
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scaled_2021_replay_reproduces_the_scaled_table_and_the_data_dir_says_the_same() {
    let scale = (1, 1000);
    let plan = Arc::new(Dataset::Y2021.plan(11, Some(scale)).unwrap());
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().join("hub");
    let hub = EmbeddedHub::start(&plan, Some(&data_dir)).await.unwrap();
    let outcome = driver::replay(plan.clone(), &hub.target, options())
        .await
        .unwrap();
    eprintln!("{}", outcome.summary());
    let (documents, deliveries) = plan.totals();
    // The driver's own totals come from the plan; the hub's recomputed rows
    // and its live counters are what must agree with it.
    assert_eq!(hub_row_totals(&outcome), (documents, deliveries));

    // Per agency, the hub's recomputed records equal the plan's counts, blanks included.
    for (code, (sent, received)) in plan.counts() {
        let measured = outcome
            .figures
            .agencies
            .get(&code)
            .map(|row| (row.sent, row.received))
            .unwrap_or((0, 0));
        assert_eq!(measured, (sent, received), "{code}");
    }
    assert_eq!(
        outcome.figures.counter_totals,
        Some((documents, deliveries))
    );
    let expected = Expected::for_plan(&plan, Some(scale)).unwrap();
    let period = (Some(plan.period.0), Some(plan.period.1));
    let source = FigureSource::Hub {
        address: hub.target.hubs.to_string(),
        embedded: true,
    };
    let report = Report::build(&outcome.figures, Some(&expected), period, source);
    assert_eq!(report.mismatches(), Vec::new(), "{}", report.render_text());
    assert_eq!(report.matches_published(), Some(true));
    assert_eq!(report.agencies.len(), 104);
    assert_eq!(report.to_json()["matches_published"], true);
    assert!(report.render_text().contains("scaled 1/1000"));

    // A running hub holds its data directory: the offline report says so.
    let locked = figures_from_data_dir(&data_dir, period, &expected.focus).unwrap_err();
    assert!(matches!(locked, SourceError::Locked { .. }), "{locked}");
    hub.stop().await.unwrap();
    // The lock goes once the stopped hub's last tasks have dropped its store.
    let mut attempts = 0;
    let offline = loop {
        match figures_from_data_dir(&data_dir, period, &expected.focus) {
            Err(SourceError::Locked { .. }) if attempts < 1200 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            other => break other.unwrap(),
        }
    };
    assert_eq!(offline.agencies, outcome.figures.agencies);
    assert_eq!(offline.counter_totals, Some((documents, deliveries)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scaled_2019_replay_reproduces_levels_the_office_table_and_status_feedback() {
    let scale = (1, 200);
    let plan = Arc::new(Dataset::Y2019.plan(5, Some(scale)).unwrap());
    let hub = EmbeddedHub::start(&plan, None).await.unwrap();
    let outcome = driver::replay(plan.clone(), &hub.target, options())
        .await
        .unwrap();
    eprintln!("{}", outcome.summary());
    let address = hub.target.hubs.to_string();
    hub.stop().await.unwrap();

    let figures = &outcome.figures;
    for (code, (sent, received)) in plan.counts() {
        let measured = figures
            .agencies
            .get(&code)
            .map(|row| (row.sent, row.received))
            .unwrap_or((0, 0));
        assert_eq!(measured, (sent, received), "{code}");
    }
    // The document-level signatures arrived, were verified and were counted per sender.
    let office = office_counts(&plan);
    assert!(!office.is_empty());
    for (code, row) in &figures.agencies {
        let planned = office.get(code).copied().unwrap_or((0, 0));
        assert_eq!(
            (row.sent_to_focus, row.sent_to_focus_signed),
            planned,
            "{code}"
        );
    }

    let expected = Expected::for_plan(&plan, Some(scale)).unwrap();
    let report = Report::build(
        figures,
        Some(&expected),
        (Some(plan.period.0), Some(plan.period.1)),
        FigureSource::Hub {
            address,
            embedded: true,
        },
    );
    assert_eq!(report.mismatches(), Vec::new(), "{}", report.render_text());
    assert_eq!(report.matches_published(), Some(true));
    let levels: Vec<(u64, u64)> = report.levels.iter().map(|l| (l.sent, l.received)).collect();
    let planned_levels: Vec<(u64, u64)> = (1..=3u8)
        .map(|level| {
            plan.units
                .iter()
                .filter(|unit| unit.level == level)
                .fold((0, 0), |(s, r), unit| (s + unit.sent, r + unit.received))
        })
        .collect();
    assert_eq!(levels, planned_levels);
    // Counted from the statuses the hub stored, not from the plan's profiles.
    let feedback = &report.status_feedback;
    assert_eq!(
        (
            feedback.five_or_more,
            feedback.three_or_four,
            feedback.arrived_only
        ),
        (84, 10, 1)
    );
    assert_eq!(
        feedback.arrived_only_codes,
        vec!["000.00.00.G33".parse::<AgencyCode>().unwrap()]
    );
    assert_eq!(report.to_government_office.len(), 94);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_waits_out_the_hubs_per_agency_quota_and_still_matches() {
    let scale = (1, 2000);
    let plan = Arc::new(Dataset::Y2021.plan(5, Some(scale)).unwrap());
    // Two sends in progress per agency at most, far below the driver's concurrency.
    let mut watch = driver::replay_watch();
    watch.quotas.sends_in_flight_max = 2;
    let hub = EmbeddedHub::start_watched(&plan, None, watch)
        .await
        .unwrap();
    let outcome = driver::replay(
        plan.clone(),
        &hub.target,
        ReplayOptions {
            send_concurrency: 32,
            ..options()
        },
    )
    .await
    .unwrap();
    eprintln!("{}", outcome.summary());
    assert!(outcome.send_retries > 0, "the quota never refused a send");
    let (documents, deliveries) = plan.totals();
    // The driver's own totals come from the plan; the hub's recomputed rows
    // and its live counters are what must agree with it.
    assert_eq!(hub_row_totals(&outcome), (documents, deliveries));
    assert_eq!(
        outcome.figures.counter_totals,
        Some((documents, deliveries))
    );
    hub.stop().await.unwrap();
}

/// With retention, the hub's clock follows the documents' dates: documents
/// whose every delivery is final leave for monthly archives 30 days after
/// acceptance while the replay goes on, and the hub's report, read from the
/// live records and what stays of the archived ones, still gives the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scaled_2021_replay_with_retention_reproduces_the_table_from_live_and_archived() {
    let scale = (1, 1000);
    let plan = Arc::new(Dataset::Y2021.plan(11, Some(scale)).unwrap());
    // A folder of the test's own, so that the archives outlive the hub.
    let folder = tempfile::tempdir().unwrap();
    let hub = EmbeddedHub::start_retained(
        &plan,
        Some(&folder.path().join("data")),
        truc_hub::Observe::default(),
        30,
    )
    .await
    .unwrap();
    let archive_dir = hub.archive_dir.clone().unwrap();
    let outcome = driver::replay(
        plan.clone(),
        &hub.target,
        ReplayOptions {
            clock: hub.clock.clone(),
            ..options()
        },
    )
    .await
    .unwrap();
    let (documents, deliveries) = plan.totals();
    // Retention runs beside the replay at its own pace; a fast replay ends
    // before it has caught up, so give it a bounded while to.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let (archived, files) = loop {
        let (archived, files) = hub.archive_summary().unwrap();
        if archived * 2 > documents || std::time::Instant::now() >= deadline {
            break (archived, files);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!(
        "{}; {archived} documents archived in {files} files",
        outcome.summary()
    );
    // The year's documents older than a month left, month by month.
    assert!(
        archived * 2 > documents,
        "{archived} of {documents} archived"
    );
    assert!(files >= 3, "{files} monthly files");
    for (code, (sent, received)) in plan.counts() {
        let measured = outcome
            .figures
            .agencies
            .get(&code)
            .map(|row| (row.sent, row.received))
            .unwrap_or((0, 0));
        assert_eq!(measured, (sent, received), "{code}");
    }
    assert_eq!(
        outcome.figures.counter_totals,
        Some((documents, deliveries))
    );
    let expected = Expected::for_plan(&plan, Some(scale)).unwrap();
    let report = Report::build(
        &outcome.figures,
        Some(&expected),
        (Some(plan.period.0), Some(plan.period.1)),
        FigureSource::Hub {
            address: hub.target.hubs.to_string(),
            embedded: true,
        },
    );
    assert_eq!(report.mismatches(), Vec::new(), "{}", report.render_text());
    hub.stop().await.unwrap();
    // Every file checks offline (each sender's certificate at the document's
    // historical acceptance), oldest first, each chain following the one
    // before, and together they hold every archived document.
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&archive_dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "truca"))
        .collect();
    files.sort();
    let (mut next_seq, mut in_files) = (1, 0);
    for (index, path) in files.iter().enumerate() {
        let checked = truc_archive::verify(path, None, index + 1 == files.len()).unwrap();
        assert_eq!(checked.problem, None, "{}", path.display());
        assert_eq!(checked.audit_first_seq, next_seq, "{}", path.display());
        next_seq = checked.audit_last_seq + 1;
        in_files += checked.documents;
    }
    assert!(in_files >= archived, "{in_files} documents in the files");
}
