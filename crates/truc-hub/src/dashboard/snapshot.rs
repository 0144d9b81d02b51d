//! What the dashboard shows, read through the same store queries and hub
//! functions as the operator's gRPC calls, bounded, and cached so that any
//! number of open pages costs one computation per refresh.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};
use truc_domain::views::{NodeView, OverdueFilter};
use truc_domain::{AgencyCode, BusinessType, Status};

use crate::error::HubError;
use crate::{feedback, intake, operator, Caller, Hub};

/// A snapshot younger than this is served again.
const REFRESH_MIN: Duration = Duration::from_secs(2);
/// A snapshot is also reused for this many times what it took to compute,
/// so that watching a large store costs it at most a fifth of one core.
const REFRESH_COST_FACTOR: u32 = 4;
/// Rates are the change of the counters over about this long.
const RATE_WINDOW: Duration = Duration::from_secs(60);
/// Counter samples kept for the rates.
const RATE_SAMPLES_MAX: usize = 64;
/// Rows of the per-agency table (busiest first).
const AGENCY_ROWS_MAX: usize = 40;
/// Rows of the node table (deepest queue first).
const NODE_ROWS_MAX: usize = 40;
/// Rows of the overdue table.
const OVERDUE_ROWS_MAX: u32 = 25;
/// Days of the daily chart (the latest ones).
const DAYS_MAX: usize = 400;
/// Months of the monthly chart (the latest ones).
const MONTHS_MAX: usize = 48;
/// Latest accepted documents listed for lookup.
const RECENT_DOCUMENTS_MAX: usize = 8;

/// The forward statuses of the funnel, in order.
const FUNNEL: [Status; 5] = [
    Status::Arrived,
    Status::Received,
    Status::Assigned,
    Status::Processing,
    Status::Completed,
];

/// Per-agency (sent, received) totals at one moment, for the rates.
type Sample = (Instant, BTreeMap<String, (u64, u64)>);

#[derive(Default)]
pub(super) struct Snapshots {
    cache: tokio::sync::Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    latest: Option<(Instant, Duration, Bytes)>,
    /// Per-agency (sent, received) totals at earlier snapshots, oldest first.
    samples: VecDeque<Sample>,
}

impl Snapshots {
    /// The overview as JSON: the cached one while fresh, else a new one.
    /// Callers wait on the lock while one is computed, so it is computed once.
    pub(super) async fn overview(&self, hub: &Arc<Hub>) -> Result<Bytes, HubError> {
        let mut cache = self.cache.lock().await;
        if let Some((at, took, json)) = &cache.latest {
            if at.elapsed() < REFRESH_MIN.max(*took * REFRESH_COST_FACTOR) {
                return Ok(json.clone());
            }
        }
        let hub = hub.clone();
        let samples = std::mem::take(&mut cache.samples);
        let started = Instant::now();
        // It reads every stored document: keep it off the runtime's workers.
        let (json, samples) = crate::error::blocking("the dashboard's overview", move || {
            let mut samples = samples;
            let json = overview(&hub, &mut samples);
            (json, samples)
        })
        .await?;
        cache.samples = samples;
        let json = Bytes::from(json?.to_string());
        cache.latest = Some((Instant::now(), started.elapsed(), json.clone()));
        Ok(json)
    }
}

fn name_of(hub: &Hub, code: &str) -> String {
    code.parse::<AgencyCode>()
        .ok()
        .and_then(|code| hub.directory().get(&code).map(|entry| entry.name.clone()))
        .unwrap_or_default()
}

fn status_name(code: u32) -> &'static str {
    Status::from_code(code).map_or("queued", Status::name)
}

/// A business type as the protocol spells it, which the page shows.
fn business_type_name(kind: BusinessType) -> &'static str {
    match kind {
        BusinessType::New => "BUSINESS_TYPE_NEW",
        BusinessType::Revoke => "BUSINESS_TYPE_REVOKE",
        BusinessType::Update => "BUSINESS_TYPE_UPDATE",
        BusinessType::Replace => "BUSINESS_TYPE_REPLACE",
    }
}

/// `yyyymmdd` as `yyyy-mm-dd`.
fn iso_date(key: u32) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        key / 10_000,
        (key / 100) % 100,
        key % 100
    )
}

/// Per minute, from a change over `elapsed`; none until there is a span to measure.
fn per_minute(now: u64, then: u64, elapsed: Duration) -> Value {
    if elapsed < Duration::from_secs(1) {
        return Value::Null;
    }
    json!((now.saturating_sub(then) as f64) * 60.0 / elapsed.as_secs_f64())
}

fn overview(hub: &Hub, samples: &mut VecDeque<Sample>) -> Result<Value, HubError> {
    let started = Instant::now();
    let traffic = Traffic::read(hub)?;
    let (rates, agencies) = traffic.rates_and_agencies(hub, samples);
    let (sent_total, received_total) = traffic.totals();
    let (days, months) = traffic.days_and_months();
    let (funnel, recent) = funnel_and_recent(hub)?;
    let now_ms = intake::now_unix_ms();
    let (nodes, storage) = nodes_and_storage(hub, now_ms)?;
    let overdue = overdue_rows(hub)?;
    Ok(json!({
        "generated_at_unix_ms": now_ms,
        "compute_ms": started.elapsed().as_millis() as u64,
        "totals": {
            "documents_sent": sent_total,
            "deliveries_received": received_total,
            "agencies_with_traffic": traffic.agencies.len(),
            "agencies_registered": hub.directory().len(),
        },
        "rates": rates,
        "agencies": agencies,
        "days": days,
        "months": months,
        "funnel": funnel,
        "nodes": nodes,
        "overdue": overdue,
        "storage": storage,
        "store": store_figures(hub)?,
        "retention": retention_figures(hub),
        "recent": recent,
    }))
}

/// (sent, received) per agency, per day and per month, from the counters:
/// exact at every moment.
struct Traffic {
    agencies: BTreeMap<String, (u64, u64)>,
    days: BTreeMap<u32, (u64, u64)>,
    months: BTreeMap<u32, (u64, u64)>,
}

impl Traffic {
    fn read(hub: &Hub) -> Result<Traffic, HubError> {
        let mut traffic = Traffic {
            agencies: BTreeMap::new(),
            days: BTreeMap::new(),
            months: BTreeMap::new(),
        };
        for ((agency, date), (sent, received)) in &hub.store.counter_entries()? {
            for total in [
                traffic.agencies.entry(agency.clone()).or_default(),
                traffic.days.entry(*date).or_default(),
                traffic.months.entry(date / 100).or_default(),
            ] {
                total.0 += sent;
                total.1 += received;
            }
        }
        Ok(traffic)
    }

    fn totals(&self) -> (u64, u64) {
        total(&self.agencies)
    }

    /// The rates over the window, and the busiest agencies with theirs; the
    /// change since the oldest sample within the window, this one added.
    fn rates_and_agencies(&self, hub: &Hub, samples: &mut VecDeque<Sample>) -> (Value, Value) {
        let now = Instant::now();
        while samples.len() > 1
            && samples
                .get(1)
                .is_some_and(|(at, _)| now.duration_since(*at) >= RATE_WINDOW)
        {
            samples.pop_front();
        }
        let empty = BTreeMap::new();
        let (elapsed, earlier) = samples
            .front()
            .map_or((Duration::ZERO, &empty), |(at, totals)| {
                (now.duration_since(*at), totals)
            });
        let (sent_total, received_total) = self.totals();
        let (sent_before, received_before) = total(earlier);
        let mut busiest: Vec<(&String, &(u64, u64))> = self.agencies.iter().collect();
        busiest.sort_by(|a, b| (b.1 .0 + b.1 .1).cmp(&(a.1 .0 + a.1 .1)).then(a.0.cmp(b.0)));
        let rows: Vec<Value> = busiest
            .iter()
            .take(AGENCY_ROWS_MAX)
            .map(|(code, (sent, received))| {
                let (sent_then, received_then) = earlier.get(*code).copied().unwrap_or_default();
                json!({
                    "code": code,
                    "name": name_of(hub, code),
                    "sent": sent,
                    "received": received,
                    "sent_per_minute": per_minute(*sent, sent_then, elapsed),
                    "received_per_minute": per_minute(*received, received_then, elapsed),
                })
            })
            .collect();
        let rates = json!({
            "window_seconds": elapsed.as_secs_f64(),
            "sent_per_minute": per_minute(sent_total, sent_before, elapsed),
            "received_per_minute": per_minute(received_total, received_before, elapsed),
        });
        samples.push_back((now, self.agencies.clone()));
        while samples.len() > RATE_SAMPLES_MAX {
            samples.pop_front();
        }
        let agencies = json!({"rows": rows, "truncated": self.agencies.len() > AGENCY_ROWS_MAX});
        (rates, agencies)
    }

    /// The latest days and months, oldest first.
    fn days_and_months(&self) -> (Value, Value) {
        let day_rows: Vec<Value> = self
            .days
            .iter()
            .rev()
            .take(DAYS_MAX)
            .rev()
            .map(|(date, (sent, received))| json!({"date": iso_date(*date), "sent": sent, "received": received}))
            .collect();
        let month_rows: Vec<Value> = self
            .months
            .iter()
            .rev()
            .take(MONTHS_MAX)
            .rev()
            .map(|(month, (sent, received))| {
                json!({"month": format!("{:04}-{:02}", month / 100, month % 100), "sent": sent, "received": received})
            })
            .collect();
        (
            json!({"rows": day_rows, "truncated": self.days.len() > DAYS_MAX}),
            json!({"rows": month_rows, "truncated": self.months.len() > MONTHS_MAX}),
        )
    }
}

/// (sent, received) summed over agencies.
fn total(map: &BTreeMap<String, (u64, u64)>) -> (u64, u64) {
    map.values()
        .fold((0u64, 0u64), |acc, (s, r)| (acc.0 + s, acc.1 + r))
}

/// How far the deliveries got (live ones and the figures kept for archived
/// ones), and the latest accepted documents: one pass over the stored
/// documents.
fn funnel_and_recent(hub: &Hub) -> Result<(Value, Value), HubError> {
    let mut reached = [0u64; FUNNEL.len()];
    let (mut deliveries, mut queued, mut rejected, mut recalled) = (0u64, 0u64, 0u64, 0u64);
    let mut recent: Vec<(i64, Value)> = Vec::with_capacity(RECENT_DOCUMENTS_MAX + 1);
    for record in hub.store.documents() {
        let record = record?;
        for delivery in hub.store.deliveries(&record.document_id)? {
            deliveries += 1;
            if !delivery.arrived() {
                queued += 1;
            }
            // Units may skip steps: a later status counts for the earlier ones.
            let furthest = delivery
                .history
                .iter()
                .filter_map(|entry| FUNNEL.iter().position(|s| s.code() == entry.code))
                .max();
            if let Some(furthest) = furthest {
                for count in &mut reached[..=furthest] {
                    *count += 1;
                }
            }
            match delivery.current_code() {
                Some(code) if code == Status::Rejected.code() => rejected += 1,
                Some(code) if code == Status::RecallAgreed.code() => recalled += 1,
                _ => {}
            }
        }
        let accepted = record.accepted_at_unix_ms;
        if recent.len() < RECENT_DOCUMENTS_MAX
            || recent.last().is_some_and(|(at, _)| *at < accepted)
        {
            recent.push((
                accepted,
                json!({
                    "document_id": record.document_id,
                    "sender": record.sender,
                    "subject": record.subject,
                    "accepted_at_unix_ms": accepted,
                }),
            ));
            recent.sort_by_key(|(accepted, _)| std::cmp::Reverse(*accepted));
            recent.truncate(RECENT_DOCUMENTS_MAX);
        }
    }
    let mut archived_deliveries = 0u64;
    for figures in hub.store.retained_figures()?.values() {
        archived_deliveries += figures.deliveries;
        for (count, kept) in reached.iter_mut().zip(figures.reached) {
            *count += kept;
        }
        rejected += figures.rejected;
        recalled += figures.recalled;
    }
    deliveries += archived_deliveries;
    let stages: Vec<Value> = FUNNEL
        .iter()
        .zip(reached)
        .map(
            |(status, count)| json!({"code": status.code(), "name": status.name(), "count": count}),
        )
        .collect();
    let funnel = json!({
        "deliveries": deliveries,
        "archived": archived_deliveries,
        "queued": queued,
        "stages": stages,
        "rejected": rejected,
        "recalled": recalled,
    });
    let recent: Vec<Value> = recent.into_iter().map(|(_, row)| row).collect();
    Ok((funnel, json!(recent)))
}

/// The nodes with the deepest queues, as `ListNodes` gives them, and where
/// the hub stores and which hubs serve them.
fn nodes_and_storage(hub: &Hub, now_ms: i64) -> Result<(Value, Value), HubError> {
    let listed = operator::list_nodes(hub)?;
    let mut hubs: BTreeMap<&str, usize> = BTreeMap::new();
    for node in &listed.nodes {
        if !node.serving_hub.is_empty() {
            *hubs.entry(node.serving_hub.as_str()).or_default() += 1;
        }
    }
    let storage = json!({
        "hub": listed.answering_hub,
        "engine": if listed.database.is_some() { "postgres" } else { "embedded" },
        "writable": hub.store.writable(),
        "database": listed.database.as_ref().map(|database| json!({
            "primary": database.primary,
            "writable": database.writable,
            "standbys": database.standbys.iter().map(|standby| json!({
                "name": standby.name,
                "state": standby.state,
                "sync_state": standby.sync_state,
                "replay_lag_bytes": standby.replay_lag_bytes,
            })).collect::<Vec<_>>(),
        })),
        "hubs": hubs.iter().map(|(name, nodes)| json!({"hub": name, "nodes": nodes})).collect::<Vec<_>>(),
    });
    let with_node: Vec<&NodeView> = listed.nodes.iter().filter(|n| n.own_node).collect();
    let online = with_node.iter().filter(|n| n.online).count();
    // Documents and notices apart: a notice waits for a sender's node and
    // says nothing about documents not yet delivered.
    let documents_queued: u64 = with_node.iter().map(|n| n.queued_documents).sum();
    let notices_queued: u64 = with_node.iter().map(|n| n.queued_notices).sum();
    let mut deepest = with_node.clone();
    deepest.sort_by(|a, b| {
        b.queued_documents
            .cmp(&a.queued_documents)
            .then(b.queued_notices.cmp(&a.queued_notices))
            .then(b.online.cmp(&a.online))
            .then(a.organ_id.cmp(&b.organ_id))
    });
    let rows: Vec<Value> = deepest
        .iter()
        .take(NODE_ROWS_MAX)
        .map(|node| {
            json!({
                "code": node.organ_id,
                "name": node.name,
                "online": node.online,
                "hub": node.serving_hub,
                "last_seen_unix_ms": node.last_seen_unix_ms,
                "queued_documents": node.queued_documents,
                "queued_notices": node.queued_notices,
                "oldest_unacked_document_id": node.oldest_unacked_document_id,
                "oldest_unacked_age_ms": if node.oldest_unacked_accepted_at_unix_ms > 0 {
                    json!((now_ms - node.oldest_unacked_accepted_at_unix_ms).max(0))
                } else {
                    Value::Null
                },
            })
        })
        .collect();
    let nodes = json!({
        "with_node": with_node.len(),
        "online": online,
        "documents_queued": documents_queued,
        "notices_queued": notices_queued,
        "rows": rows,
        "truncated": with_node.len() > NODE_ROWS_MAX,
    });
    Ok((nodes, storage))
}

/// Overdue deliveries still owed, as `ListOverdue` gives them to an operator.
fn overdue_rows(hub: &Hub) -> Result<Value, HubError> {
    let overdue = feedback::list_overdue(
        hub,
        &Caller::Operator {
            name: "dashboard".into(),
        },
        &OverdueFilter {
            agency: String::new(),
            limit: OVERDUE_ROWS_MAX.min(hub.limits.list_rows_max as u32),
        },
    )?;
    let rows: Vec<Value> = overdue
        .deliveries
        .iter()
        .map(|row| {
            json!({
                "document_id": row.document_id,
                "sender": row.sender,
                "recipient": row.recipient,
                "recipient_name": name_of(hub, &row.recipient),
                "deadline": row.deadline,
                "deadline_unix_ms": row.deadline_unix_ms,
                "late_ms": row.late_ms,
            })
        })
        .collect();
    Ok(json!({"rows": rows, "truncated": overdue.truncated}))
}

/// The live store's size and what its archives hold.
fn store_figures(hub: &Hub) -> Result<Value, HubError> {
    let files = hub.store.archive_files()?;
    Ok(json!({
        "size_bytes": hub.store.size_on_disk()?,
        "id_index_bytes": hub.store.id_index_bytes(),
        "archive_files": files.len(),
        "archived_documents": files.iter().map(|file| file.documents).sum::<u64>(),
        "open_archive": files.iter().rev().find(|file| file.open).map(|file| file.name.clone()),
    }))
}

/// What retention's last run did.
fn retention_figures(hub: &Hub) -> Value {
    let status = hub.retention.status();
    json!({
        "enabled": status.enabled,
        "period_days": status.period_days,
        "runs": status.runs,
        "last_run_at_unix_ms": (status.runs > 0).then_some(status.last_run_at_unix_ms),
        "last_run_took_ms": status.last_run_took_ms,
        "last_run_archived": status.last_run_archived,
        "last_run_audit_entries": status.last_run_audit_entries,
        "last_file": status.last_file,
        "last_error": status.last_error,
        "archived_since_start": status.archived_total,
        "held": status.held,
        "backlog": status.backlog,
    })
}

/// One document as the lookup shows it: each recipient's route and status
/// history, and every event in time order.
pub(super) fn document(hub: &Hub, operator: &str, document_id: &str) -> Result<Value, HubError> {
    let status = hub.status_of(
        &Caller::Operator {
            name: operator.to_owned(),
        },
        document_id.trim(),
    )?;
    let mut timeline = vec![json!({
        "at_unix_ms": status.accepted_at_unix_ms,
        "event": "accepted",
        "recipient": "",
        "actor": status.sender,
        "reason": "",
    })];
    let recipients: Vec<Value> = status
        .recipients
        .iter()
        .map(|recipient| {
            let route = recipient
                .recipient
                .parse::<AgencyCode>()
                .map(|code| hub.directory().route(&code).to_string())
                .unwrap_or_default();
            let history: Vec<Value> = recipient
                .history
                .iter()
                .map(|entry| {
                    let code = entry.status.code() as u32;
                    timeline.push(json!({
                        "at_unix_ms": entry.at_unix_ms,
                        "event": status_name(code),
                        "recipient": recipient.recipient,
                        "actor": entry.actor,
                        "reason": entry.reason,
                    }));
                    json!({
                        "code": code,
                        "name": status_name(code),
                        "at_unix_ms": entry.at_unix_ms,
                        "actor": entry.actor,
                        "reason": entry.reason,
                    })
                })
                .collect();
            json!({
                "recipient": recipient.recipient,
                "name": name_of(hub, &recipient.recipient),
                "current": status_name(recipient.current.code() as u32),
                "route": route,
                "history": history,
            })
        })
        .collect();
    timeline.sort_by_key(|event| event["at_unix_ms"].as_i64().unwrap_or_default());
    Ok(json!({
        "document_id": status.document_id,
        "sender": status.sender,
        "sender_name": name_of(hub, &status.sender),
        "subject": status.subject,
        "accepted_at_unix_ms": status.accepted_at_unix_ms,
        "business_type": business_type_name(status.business_type),
        "document_signature": status.document_signature.as_str_name(),
        "recipients": recipients,
        "refused": status.refused.iter().map(|r| json!({"organ_id": r.organ_id, "reason": r.reason})).collect::<Vec<_>>(),
        "chain": status.chain.iter().map(|l| json!({"earlier": l.earlier, "later": l.later})).collect::<Vec<_>>(),
        "timeline": timeline,
    }))
}
