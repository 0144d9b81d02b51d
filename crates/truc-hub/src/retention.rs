//! Retention's task: every `run_interval` (and whenever a manual clock
//! moves), it walks the live documents accepted before the cutoff (the
//! hub's clock less `period`), oldest first, and hands them to the store a
//! batch at a time; the store keeps those whose every delivery is final,
//! has the archive writer append and sync them into this month's file, and
//! only then lets them leave. A month's file is closed by the first run of
//! the next month. What the last run did is kept for the dashboard and the
//! metrics. Ends on shutdown.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use truc_domain::DocumentDate;
use truc_store::{ArchiveSink, RetireRequest};

use crate::config::RetentionConfig;
use crate::{Hub, HubError};

/// What retention does, loaded from `[retention]`.
#[derive(Clone, Debug)]
pub struct RetentionSetup {
    pub enabled: bool,
    /// A document whose deliveries are all final leaves this long after it
    /// was accepted.
    pub period: Duration,
    pub archive_dir: PathBuf,
    pub run_interval: Duration,
    pub documents_per_batch_max: usize,
    pub documents_per_run_max: usize,
    pub audit_entries_per_batch_max: usize,
}

impl Default for RetentionSetup {
    /// Off: a hub set up in code keeps everything unless asked.
    fn default() -> Self {
        RetentionSetup {
            enabled: false,
            ..RetentionSetup::from_config(&RetentionConfig::default())
        }
    }
}

impl RetentionSetup {
    pub fn from_config(config: &RetentionConfig) -> RetentionSetup {
        RetentionSetup {
            enabled: config.enabled,
            period: Duration::from_secs(config.period_days.saturating_mul(86_400)),
            archive_dir: config.archive_dir.clone(),
            run_interval: Duration::from_secs(config.run_interval_seconds.max(1)),
            documents_per_batch_max: config.documents_per_batch_max.max(1) as usize,
            documents_per_run_max: config.documents_per_run_max.max(1) as usize,
            audit_entries_per_batch_max: config.audit_entries_per_batch_max.max(1) as usize,
        }
    }
}

/// What retention has done, as the dashboard and metrics show it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionStatus {
    pub enabled: bool,
    pub period_days: u64,
    /// Runs since the hub started.
    pub runs: u64,
    /// When the last run ended (hub's clock), and how long it took.
    pub last_run_at_unix_ms: i64,
    pub last_run_took_ms: u64,
    /// Documents and audit entries the last run archived.
    pub last_run_archived: u64,
    pub last_run_audit_entries: u64,
    /// The file the last run wrote, and the last error (empty: none).
    pub last_file: String,
    pub last_error: String,
    /// Documents archived since the hub started.
    pub archived_total: u64,
    /// Documents the last run found older than the cutoff but held live
    /// by a delivery that is not final.
    pub held: u64,
    /// Live documents accepted before the cutoff after the last run: the
    /// held ones, and those no run has reached yet (the archive backlog).
    pub backlog: u64,
}

/// The status shared between the task and its readers.
#[derive(Default)]
pub(crate) struct RetentionState {
    status: Mutex<RetentionStatus>,
}

impl RetentionState {
    pub(crate) fn status(&self) -> RetentionStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn update(&self, change: impl FnOnce(&mut RetentionStatus)) {
        change(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// The month a run writes into: `yyyy-mm` of the hub's clock, Vietnam time.
pub(crate) fn period_of(unix_ms: i64) -> String {
    DocumentDate::vietnam_date_of_unix_ms(unix_ms)
        .map(|date| date.iso()[..7].to_owned())
        .unwrap_or_else(|| "0000-00".to_owned())
}

/// Where the walk over old documents stands between runs.
#[derive(Default)]
struct Walk {
    /// The last candidate examined (acceptance time, id); `None`: the oldest next.
    cursor: Option<(i64, String)>,
    /// When the walk last went back to the oldest document, to look again at
    /// those a delivery held: at most once per `run_interval`, so that a clock
    /// moved for every document sent (a replay) does not make every run read
    /// them all again.
    rewound_at: Option<Instant>,
    /// The last count of the backlog, and when it was made (it reads every
    /// old document's key).
    backlog: u64,
    counted_at: Option<Instant>,
    /// Documents found held since the walk last went back to the oldest,
    /// and in the whole walk before that.
    held_this_walk: u64,
    held_last_walk: u64,
}

impl Walk {
    fn due(at: Option<Instant>, interval: Duration) -> bool {
        at.is_none_or(|at| at.elapsed() >= interval)
    }

    fn rewind(&mut self) {
        self.cursor = None;
        self.rewound_at = Some(Instant::now());
        self.held_last_walk = self.held_this_walk;
        self.held_this_walk = 0;
    }
}

pub(crate) async fn run(hub: Arc<Hub>, sink: Arc<dyn ArchiveSink>) {
    let setup = hub.watch.retention.clone();
    hub.retention.update(|status| {
        status.enabled = true;
        status.period_days = setup.period.as_secs() / 86_400;
    });
    let mut shutdown = hub.shutdown.clone();
    let mut advances = hub.watch.clock.advances();
    let mut walk = Walk::default();
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        run_once(&hub, &setup, sink.clone(), &mut walk).await;
        // Moves of a manual clock during the run are seen here as one.
        tokio::select! {
            _ = tokio::time::sleep(setup.run_interval) => {}
            _ = advances.changed() => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One run: candidates from where the last run stopped, in batches, until
/// the cutoff is reached (then from the oldest again, once per interval, for
/// documents held earlier) or the run's limit.
async fn run_once(
    hub: &Arc<Hub>,
    setup: &RetentionSetup,
    sink: Arc<dyn ArchiveSink>,
    walk: &mut Walk,
) {
    let started = Instant::now();
    let now = hub.watch.clock.now_unix_ms();
    let cutoff = now.saturating_sub(setup.period.as_millis() as i64);
    let period = period_of(now);
    let hub_name = hub.store.hub_name().unwrap_or_default();
    let mut examined = 0usize;
    let mut archived = 0u64;
    let mut audit_entries = 0u64;
    let mut last_file = String::new();
    let mut failure = None;
    // At least one step, so that a month's file is closed and the audit
    // chain archived even when no document is due.
    let mut first = true;
    while examined < setup.documents_per_run_max && !*hub.shutdown.borrow() {
        let store = hub.store.clone();
        let after = walk.cursor.clone();
        let limit = setup
            .documents_per_batch_max
            .min(setup.documents_per_run_max - examined);
        let page = crate::error::blocking("looking for documents to archive", move || {
            store.retention_candidates(cutoff, after, limit)
        })
        .await
        .and_then(|page| page.map_err(HubError::from));
        let page = match page {
            Ok(page) => page,
            Err(error) => {
                failure = Some(error.to_string());
                break;
            }
        };
        if page.is_empty() && !first {
            if walk.cursor.is_some() && Walk::due(walk.rewound_at, setup.run_interval) {
                walk.rewind();
                continue;
            }
            break;
        }
        first = false;
        examined += page.len();
        let candidates: Vec<String> = page.iter().map(|(_, id)| id.clone()).collect();
        // Documents whose send's audit entry did not fit in one step (a long
        // chain to archive first) are tried again at once.
        for attempt in 0..RETRIES_OF_DEFERRED_MAX {
            let request = RetireRequest {
                candidates: candidates.clone(),
                cutoff_unix_ms: cutoff,
                at_unix_ms: hub.watch.clock.now_unix_ms(),
                period: period.clone(),
                hub: hub_name.clone(),
                audit_entries_max: setup.audit_entries_per_batch_max,
            };
            match hub.store.retire(request, sink.clone()).await {
                Ok(outcome) => {
                    archived += outcome.archived as u64;
                    audit_entries += outcome.audit_entries as u64;
                    if attempt == 0 {
                        walk.held_this_walk += outcome.held as u64;
                    }
                    if let Some(file) = &outcome.file {
                        last_file = file.name.clone();
                    }
                    if let Some(closed) = &outcome.closed {
                        tracing::info!(file = %closed.name, documents = closed.documents, "archive closed");
                    }
                    if outcome.deferred == 0 {
                        break;
                    }
                }
                Err(error) => {
                    failure = Some(error.to_string());
                    break;
                }
            }
        }
        if failure.is_some() {
            break;
        }
        if let Some(last) = page.last() {
            walk.cursor = Some(last.clone());
        }
        if page.len() < limit {
            if Walk::due(walk.rewound_at, setup.run_interval) {
                walk.rewind();
                continue;
            }
            break;
        }
    }
    // After a run that found documents the count may have changed; else
    // once per interval.
    if examined > 0 || Walk::due(walk.counted_at, setup.run_interval) {
        let store = hub.store.clone();
        if let Ok(Ok(count)) =
            tokio::task::spawn_blocking(move || count_before(&store, cutoff)).await
        {
            walk.backlog = count;
            walk.counted_at = Some(Instant::now());
        }
    }
    let backlog = walk.backlog;
    let held = walk.held_this_walk.max(walk.held_last_walk);
    if let Some(error) = &failure {
        tracing::error!(%error, "retention stopped; the documents stay live until the next run");
    } else if archived > 0 {
        tracing::info!(archived, audit_entries, held, backlog, file = %last_file, "documents archived");
    }
    let took = started.elapsed();
    crate::metrics::retention_run(archived, held, backlog, took);
    hub.retention.update(|status| {
        status.runs += 1;
        status.last_run_at_unix_ms = hub.watch.clock.now_unix_ms();
        status.last_run_took_ms = took.as_millis() as u64;
        status.last_run_archived = archived;
        status.last_run_audit_entries = audit_entries;
        if !last_file.is_empty() {
            status.last_file = last_file;
        }
        status.last_error = failure.unwrap_or_default();
        status.archived_total += archived;
        status.held = held;
        status.backlog = backlog;
    });
}

/// How often one batch is tried again when the audit chain up to its
/// documents' sends did not fit in one archive step.
const RETRIES_OF_DEFERRED_MAX: usize = 64;

/// Live documents accepted before `cutoff_unix_ms`, counted a page at a time.
fn count_before(
    store: &truc_store::Store,
    cutoff_unix_ms: i64,
) -> Result<u64, truc_store::StoreError> {
    const PAGE: usize = 10_000;
    let mut count = 0u64;
    let mut after = None;
    loop {
        let page = store.retention_candidates(cutoff_unix_ms, after, PAGE)?;
        count += page.len() as u64;
        if page.len() < PAGE {
            return Ok(count);
        }
        after = page.last().cloned();
    }
}
