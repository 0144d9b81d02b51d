//! The checks at the end of a run: the hub through its operator API, the applications'
//! inboxes, and a store read directly (the stopped data directory, or the database).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use anyhow::Context;
use truc_domain::Status;
use truc_node::agent::inbox_name;
use truc_pki::TrustRoots;

use crate::layout::{wait_ready, Layout};
use crate::load::{inbox_entries, Load};
use crate::plan::{PlannedDocument, RECIPIENTS};

/// What the final checks found.
pub(crate) struct Checked {
    pub problems: Vec<String>,
    pub lost: usize,
    pub duplicates: usize,
}

/// The hub's view through the operator API, and the applications' view of the inboxes.
pub(crate) async fn check_online(
    layout: &Layout,
    roots: &TrustRoots,
    documents: &[PlannedDocument],
    load: &Load,
) -> anyhow::Result<Checked> {
    let deliveries: usize = documents.iter().map(|d| d.recipients.len()).sum();
    let mut problems: Vec<String> = Vec::new();
    let mut lost = 0usize;
    let mut duplicates = 0usize;
    let operator = wait_ready(layout, roots).await?;
    let moves_acknowledged = load.moves_acknowledged.lock().expect("moves").clone();

    // The hub's view: every acknowledged document with every planned delivery and move, once.
    for (index, document) in documents.iter().enumerate() {
        let id = document.draft().document_id();
        let status = match operator.get_status(&id).await {
            Ok(status) => status,
            Err(error) => {
                lost += 1;
                problems.push(format!("{id}: acknowledged but not on the hub: {error}"));
                continue;
            }
        };
        for (recipient, planned) in &document.recipients {
            let Some(row) = status.recipients.iter().find(|r| r.recipient == *recipient) else {
                lost += 1;
                problems.push(format!("{id}: no delivery to {recipient}"));
                continue;
            };
            let codes: Vec<u32> = row.history.iter().map(|e| e.status.code() as u32).collect();
            let expected: Vec<u32> = std::iter::once(Status::Arrived.code())
                .chain(planned.iter().map(|s| s.code()))
                .collect();
            if codes != expected {
                let missing = expected.iter().filter(|c| !codes.contains(c)).count();
                lost += missing;
                duplicates += codes.len().saturating_sub(expected.len() - missing);
                problems.push(format!(
                    "{id} at {recipient}: history {codes:?}, planned {expected:?}"
                ));
            }
            for code in planned.iter().map(|s| s.code()) {
                if moves_acknowledged.contains(&(index, recipient, code)) && !codes.contains(&code)
                {
                    problems.push(format!(
                        "{id} at {recipient}: acknowledged move {code} lost"
                    ));
                }
            }
        }
    }
    let counts = operator.counts("", "").await?;
    if counts.total_sent != documents.len() as u64 || counts.total_received != deliveries as u64 {
        problems.push(format!(
            "counts: {} sent and {} received; the plan has {} and {deliveries}",
            counts.total_sent,
            counts.total_received,
            documents.len()
        ));
    }

    // The applications' view: each inbox holds exactly its documents, and no node told its
    // application of one document twice, over all its restarts.
    for code in RECIPIENTS {
        let expected: BTreeSet<String> = documents
            .iter()
            .filter(|d| d.recipients.iter().any(|(r, _)| *r == code))
            .map(|d| inbox_name(&d.draft().document_id()))
            .collect();
        let present = inbox_entries(&layout.inbox(code));
        for name in expected.difference(&present) {
            lost += 1;
            problems.push(format!("{code}: {name} missing from the inbox"));
        }
        for name in present.difference(&expected) {
            problems.push(format!(
                "{code}: {name} in the inbox but not planned for it"
            ));
        }
        let printed = std::fs::read_to_string(layout.root.join(format!("node-{code}.out")))?;
        let mut told: HashMap<&str, usize> = HashMap::new();
        for line in printed.lines() {
            if let Some(rest) = line.strip_prefix("received ") {
                let id = rest.split(": ").next().unwrap_or(rest);
                *told.entry(id).or_default() += 1;
            }
        }
        for (id, times) in told.into_iter().filter(|(_, times)| *times > 1) {
            duplicates += times - 1;
            problems.push(format!(
                "{code}: the application was told of {id} {times} times"
            ));
        }
    }

    Ok(Checked {
        problems,
        lost,
        duplicates,
    })
}

/// The stopped data directory: the same records, counters equal to a recount, no queue left.
pub(crate) fn check_offline(
    data_dir: &Path,
    documents: &[PlannedDocument],
) -> anyhow::Result<Vec<String>> {
    let store = truc_store::Store::open(data_dir, &truc_store::StoreOptions::default())
        .context("the stopped hub's data directory does not open")?;
    check_store(&store, "data directory", documents)
}

/// A store read directly: every planned document and delivery with its
/// history once, counters equal to a recount, an audit chain that verifies
/// from its first entry to its head, and no delivery left in a queue.
pub(crate) fn check_store(
    store: &truc_store::Store,
    what: &str,
    documents: &[PlannedDocument],
) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    let stored = store.document_ids().count();
    if stored != documents.len() {
        problems.push(format!(
            "{what}: {stored} documents, planned {}",
            documents.len()
        ));
    }
    for document in documents.iter() {
        let id = document.draft().document_id();
        let records = store.deliveries(&id)?;
        for (recipient, planned) in &document.recipients {
            let Some(record) = records.iter().find(|r| r.recipient == *recipient) else {
                problems.push(format!("{what}: {id} has no delivery to {recipient}"));
                continue;
            };
            if record.history.len() != planned.len() + 1 {
                problems.push(format!(
                    "{what}: {id} at {recipient} has {} entries, planned {}",
                    record.history.len(),
                    planned.len() + 1
                ));
            }
        }
    }
    if store.counter_entries()? != store.rebuild_counters()? {
        problems.push(format!("{what}: the counters differ from a recount"));
    }
    let mut previous = truc_store::audit::GENESIS_SHA256;
    let mut entries = 0u64;
    for entry in store.audit_entries(1) {
        let entry = entry?;
        entries += 1;
        if entry.seq != entries
            || entry.previous_sha256 != previous
            || entry.compute_sha256() != entry.sha256
        {
            problems.push(format!(
                "{what}: the audit chain breaks at entry {}",
                entry.seq
            ));
            break;
        }
        previous = entry.sha256;
    }
    let head = store.audit_head()?;
    if head.seq != entries || head.sha256 != previous {
        problems.push(format!(
            "{what}: the audit head ({}) is not the chain's last entry ({entries})",
            head.seq
        ));
    }
    // Notices may wait for a sender's next connection; a delivery may not.
    for code in RECIPIENTS {
        if let Some(item) = store.oldest_queued_delivery(code)? {
            problems.push(format!(
                "{what}: a delivery is still queued for {code}: {item:?}"
            ));
        }
    }
    Ok(problems)
}

/// The first problems a failed run found, one a line.
pub(crate) fn print_problems(problems: &[String]) {
    for problem in problems.iter().take(20) {
        eprintln!("✗ {problem}");
    }
}

/// A run's end: its figures written as JSON where `--json` asks and
/// printed, then the problems found, if any; true when there were none.
pub(crate) fn report<F: serde::Serialize>(
    json: Option<&std::path::Path>,
    figures: &F,
    print: impl FnOnce(&F),
    problems: &[String],
) -> anyhow::Result<bool> {
    if let Some(path) = json {
        std::fs::write(path, serde_json::to_vec_pretty(figures)?)?;
    }
    print(figures);
    if problems.is_empty() {
        return Ok(true);
    }
    print_problems(problems);
    Ok(false)
}
