//! The operator's view: where a code is delivered and why, documents by
//! filter, and the directory with each node's state. Agencies may ask for
//! routes and list their own documents; the node list is for operators.

use std::collections::HashSet;

use truc_domain::views::{
    DatabaseView, DocumentFilter, DocumentList, DocumentSummary, NodeList, NodeView,
    RecipientStatus, Route as RouteView, RouteKind, StandbyView, StatusCode,
};
use truc_domain::{AgencyCode, Status};
use truc_store::{DeadLetterState, DeliveryRecord, DocumentRecord, QueueItem};

use crate::directory::{ConnectionMode, Route};
use crate::error::HubError;
use crate::{date_range, Caller, Hub, Rows};

/// Documents listed when the request names no limit.
const LIST_ROWS_DEFAULT: usize = 100;

pub(crate) fn explain_route(hub: &Hub, organ_id: &str) -> Result<RouteView, HubError> {
    let unit: AgencyCode = organ_id
        .parse()
        .map_err(|error| HubError::invalid("organ_id", format!("{error}")))?;
    let route = hub.directory().route(&unit);
    let kind = match route {
        Route::Own { .. } => RouteKind::OwnNode,
        Route::Relay { .. } => RouteKind::Relay,
        Route::NoRoute { .. } => RouteKind::None,
        Route::Unregistered { .. } => RouteKind::Unregistered,
    };
    Ok(RouteView {
        organ_id: unit.to_string(),
        kind,
        node: route.node().map(|n| n.to_string()).unwrap_or_default(),
        explanation: route.to_string(),
    })
}

/// A document filter, checked once.
struct Filter {
    sender: Option<String>,
    recipient: Option<String>,
    status: Option<u32>,
    queued: bool,
    /// Deliveries owed after a deadline, (document id, recipient), if asked.
    overdue: Option<HashSet<(String, String)>>,
    from: u32,
    to: u32,
    limit: usize,
}

fn agency_field(field: &str, text: &str) -> Result<Option<String>, HubError> {
    if text.is_empty() {
        return Ok(None);
    }
    text.parse::<AgencyCode>()
        .map(|code| Some(code.to_string()))
        .map_err(|error| HubError::invalid(field, format!("{error}")))
}

fn filter(hub: &Hub, request: &DocumentFilter) -> Result<Filter, HubError> {
    let status = match request.status.map_or(0, StatusCode::code) {
        0 => None,
        code => Some(
            u32::try_from(code)
                .ok()
                // A recipient's status, or expired (a dead letter).
                .filter(|code| {
                    Status::from_code(*code).is_ok() || *code == StatusCode::EXPIRED as u32
                })
                .ok_or_else(|| {
                    HubError::invalid("status", format!("{code} is not a status code"))
                })?,
        ),
    };
    let limit = match request.limit as usize {
        0 => LIST_ROWS_DEFAULT.min(hub.limits.list_rows_max),
        asked if asked > hub.limits.list_rows_max => {
            return Err(HubError::TooLarge {
                field: "limit".into(),
                reason: format!(
                    "{asked} documents in one call; at most {}",
                    hub.limits.list_rows_max
                ),
            })
        }
        asked => asked,
    };
    let (from, to) = date_range(&request.from_date, &request.to_date)?;
    Ok(Filter {
        sender: agency_field("sender", &request.sender)?,
        recipient: agency_field("recipient", &request.recipient)?,
        status,
        queued: request.queued,
        overdue: if request.overdue {
            Some(
                crate::feedback::owed(hub)
                    .map(|record| record.map(|r| (r.document_id, r.recipient)))
                    .collect::<Result<_, HubError>>()?,
            )
        } else {
            None
        },
        from,
        to,
        limit,
    })
}

/// Lists documents; synchronous, as it reads every document record.
pub(crate) fn list_documents(
    hub: &Hub,
    caller: &Caller,
    request: &DocumentFilter,
) -> Result<DocumentList, HubError> {
    let filter = filter(hub, request)?;
    let directory = hub.directory();
    let mut matched: Vec<(DocumentRecord, Vec<RecipientStatus>)> = Vec::new();
    for record in hub.store.documents() {
        let record = record?;
        if !(filter.from..=filter.to).contains(&record.date_key)
            || filter.sender.as_ref().is_some_and(|s| *s != record.sender)
            || filter
                .recipient
                .as_ref()
                .is_some_and(|r| !record.recipients.contains(r))
        {
            continue;
        }
        let Some(rows) = hub.visibility(caller, &record) else {
            continue;
        };
        let recipients: Vec<RecipientStatus> = hub
            .store
            .deliveries(&record.document_id)?
            .into_iter()
            .filter(|d| rows.shows(&directory, &d.recipient))
            .map(|d| recipient_status(hub, d, false))
            .collect::<Result<_, HubError>>()?;
        // Status filters look at the rows the caller sees, narrowed to the recipient asked for.
        let considered = || {
            recipients.iter().filter(|r| {
                filter
                    .recipient
                    .as_ref()
                    .is_none_or(|wanted| *wanted == r.recipient)
            })
        };
        if filter
            .status
            .is_some_and(|code| !considered().any(|r| r.current.code() as u32 == code))
            || (filter.queued && !considered().any(|r| r.current == StatusCode::Queued))
            || filter.overdue.as_ref().is_some_and(|owed| {
                !considered()
                    .any(|r| owed.contains(&(record.document_id.clone(), r.recipient.clone())))
            })
        {
            continue;
        }
        if matches!(rows, Rows::Of(_)) && recipients.is_empty() {
            continue;
        }
        matched.push((record, recipients));
    }
    matched.sort_by(|(a, _), (b, _)| {
        b.date_key
            .cmp(&a.date_key)
            .then_with(|| a.document_id.cmp(&b.document_id))
    });
    let truncated = matched.len() > filter.limit;
    matched.truncate(filter.limit);
    Ok(DocumentList {
        documents: matched
            .into_iter()
            .map(|(record, recipients)| DocumentSummary {
                business_type: crate::convert::business_type_of(&record.header_bytes),
                document_id: record.document_id,
                sender: record.sender,
                subject: record.subject,
                accepted_at_unix_ms: record.accepted_at_unix_ms,
                recipients,
            })
            .collect(),
        truncated,
    })
}

/// The directory with each node's state; synchronous, as it reads queues.
pub(crate) fn list_nodes(hub: &Hub) -> Result<NodeList, HubError> {
    let presence = hub.presence();
    // Where hubs share a database, a node online on another hub holds a lease.
    let leases = hub.store.node_leases()?;
    let directory = hub.directory();
    let mut nodes = Vec::with_capacity(directory.len());
    for entry in directory.entries() {
        let code = entry.code.to_string();
        let (online_here, last_seen_unix_ms) =
            presence.get(&entry.code).copied().unwrap_or_default();
        let serving_hub = match leases.get(&code) {
            Some(lease) => lease.hub.clone(),
            None if online_here => hub.name.clone(),
            None => String::new(),
        };
        let online = !serving_hub.is_empty();
        let (depth, oldest) = if entry.own_node {
            (
                hub.store.queue_depth(&code)?,
                hub.store.oldest_queued_delivery(&code)?,
            )
        } else {
            (truc_store::QueueDepth::default(), None)
        };
        let (oldest_id, oldest_at) = match oldest {
            Some(QueueItem::Delivery { document_id, .. }) => {
                let accepted = hub
                    .store
                    .document(&document_id)?
                    .map_or(0, |d| d.accepted_at_unix_ms);
                (document_id, accepted)
            }
            _ => (String::new(), 0),
        };
        nodes.push(NodeView {
            organ_id: code,
            name: entry.name.clone(),
            connection: match entry.connection {
                ConnectionMode::Direct => "direct",
                ConnectionMode::Lgsp => "lgsp",
            }
            .into(),
            relay: entry.relay,
            own_node: entry.own_node,
            via: if entry.own_node {
                String::new()
            } else {
                directory
                    .relay_for(&entry.code)
                    .map(|relay| relay.to_string())
                    .unwrap_or_default()
            },
            online,
            last_seen_unix_ms,
            queue_depth: depth.total() as u64,
            queued_documents: depth.deliveries as u64,
            queued_notices: depth.notices as u64,
            oldest_unacked_document_id: oldest_id,
            oldest_unacked_accepted_at_unix_ms: oldest_at,
            serving_hub,
        });
    }
    Ok(NodeList {
        nodes,
        answering_hub: hub.name.clone(),
        database: hub.store.database_state()?.map(database_view),
    })
}

pub(crate) fn database_view(state: truc_store::DatabaseState) -> DatabaseView {
    DatabaseView {
        primary: state.primary,
        writable: state.writable,
        standbys: state
            .standbys
            .into_iter()
            .map(|standby| StandbyView {
                name: standby.name,
                address: standby.address,
                state: standby.state,
                sync_state: standby.sync_state,
                replay_lag_bytes: standby.replay_lag_bytes,
            })
            .collect(),
    }
}

/// One recipient's row of a document's status, with its dead letter if it
/// expired: a delivery never acknowledged and not resent stands expired.
pub(crate) fn recipient_status(
    hub: &Hub,
    delivery: DeliveryRecord,
    with_history: bool,
) -> Result<RecipientStatus, HubError> {
    let dead_letter = hub
        .store
        .dead_letter(&delivery.document_id, &delivery.recipient)?;
    Ok(recipient_status_with(delivery, dead_letter, with_history))
}

/// A delivery's row, given its dead letter if it has one.
pub(crate) fn recipient_status_with(
    delivery: DeliveryRecord,
    dead_letter: Option<truc_store::DeadLetterRecord>,
    with_history: bool,
) -> RecipientStatus {
    let current = match (delivery.current_code(), &dead_letter) {
        (Some(code), _) => StatusCode::from_code(code as i32),
        (None, Some(letter)) if letter.state != DeadLetterState::Resent => StatusCode::Expired,
        (None, _) => StatusCode::Queued,
    };
    RecipientStatus {
        current,
        history: if with_history {
            delivery
                .history
                .iter()
                .map(crate::convert::entry_view)
                .collect()
        } else {
            Vec::new()
        },
        recipient: delivery.recipient,
        dead_letter: dead_letter.map(crate::feedback::dead_letter),
    }
}

/// How often each node's queue depth and oldest unacknowledged delivery are
/// published as metrics.
const QUEUE_GAUGES_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Publishes `truc_queue_depth` and `truc_queue_oldest_unacked_age_seconds`
/// per node from what `ListNodes` shows, and the live store's size, off the
/// async threads, until the hub stops. Only while the metrics endpoint is
/// served.
pub(crate) async fn publish_queue_gauges(hub: std::sync::Arc<Hub>) {
    let mut shutdown = hub.shutdown.clone();
    loop {
        let reading = hub.clone();
        let now_ms = hub.watch.clock.now_unix_ms();
        match tokio::task::spawn_blocking(move || list_nodes(&reading)).await {
            Ok(Ok(nodes)) => {
                let database = nodes
                    .database
                    .as_ref()
                    .map(|view| truc_store::DatabaseState {
                        primary: view.primary.clone(),
                        writable: view.writable,
                        standbys: view
                            .standbys
                            .iter()
                            .map(|standby| truc_store::StandbyState {
                                name: standby.name.clone(),
                                address: standby.address.clone(),
                                state: standby.state.clone(),
                                sync_state: standby.sync_state.clone(),
                                replay_lag_bytes: standby.replay_lag_bytes,
                            })
                            .collect(),
                    });
                crate::metrics::database(hub.store.writable(), database.as_ref());
                let mut served: std::collections::BTreeMap<&str, usize> = Default::default();
                for node in &nodes.nodes {
                    if !node.serving_hub.is_empty() {
                        *served.entry(node.serving_hub.as_str()).or_default() += 1;
                    }
                }
                served.entry(hub.name.as_str()).or_default();
                for (name, count) in served {
                    crate::metrics::nodes_served(name, count);
                }
                for node in nodes.nodes.iter().filter(|node| node.own_node) {
                    truc_store::metrics::queue_depth(
                        &node.organ_id,
                        node.queued_documents,
                        node.queued_notices,
                    );
                    let age_ms = if node.oldest_unacked_document_id.is_empty() {
                        0
                    } else {
                        (now_ms - node.oldest_unacked_accepted_at_unix_ms).max(0)
                    };
                    crate::metrics::queue_oldest_unacked_age(
                        &node.organ_id,
                        std::time::Duration::from_millis(age_ms as u64),
                    );
                }
            }
            Ok(Err(error)) => tracing::warn!(%error, "reading the queues for their metrics"),
            Err(error) => tracing::warn!(%error, "reading the queues for their metrics"),
        }
        let store = hub.store.clone();
        if let Ok(Ok(bytes)) = tokio::task::spawn_blocking(move || store.size_on_disk()).await {
            crate::metrics::store_size(bytes);
        }
        tokio::select! {
            _ = tokio::time::sleep(QUEUE_GAUGES_EVERY) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
    }
}
