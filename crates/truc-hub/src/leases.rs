//! Node leases: where several hubs share one database, at most one of them
//! pushes a node's queue at a time. A delivery stream takes its node's
//! lease before it sends anything, waiting while another hub holds it; the
//! hub renews every lease it holds in one statement every few seconds, and
//! a stream whose lease was lost ends (its node reconnects). A hub that
//! dies stops renewing, so its leases are taken over once they expire. On
//! the embedded store a lease is always granted at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use truc_domain::AgencyCode;

use crate::Hub;

/// How long a lease lasts without renewal: the longest a dead hub's nodes
/// wait before another hub serves them.
pub(crate) const LEASE_TTL: Duration = Duration::from_secs(6);
/// How often held leases are renewed.
const LEASE_RENEW_INTERVAL: Duration = Duration::from_secs(2);
/// How often a stream waiting for a lease asks again.
const LEASE_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// The leases this hub holds, each with what tells its stream it was lost.
#[derive(Default)]
pub(crate) struct Leases {
    held: Mutex<HashMap<AgencyCode, Arc<Notify>>>,
}

impl Leases {
    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<AgencyCode, Arc<Notify>>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives the lease back when a stream ends.
    pub(crate) async fn release(hub: &Arc<Hub>, agency: AgencyCode) {
        hub.leases.held().remove(&agency);
        let store = hub.store.clone();
        let code = agency.to_string();
        let released = tokio::task::spawn_blocking(move || store.release_node(&code)).await;
        if let Ok(Err(error)) = released {
            // It expires by itself.
            tracing::debug!(%agency, %error, "cannot release a node's lease");
        }
    }
}

/// Takes `agency`'s lease, waiting while another hub holds it, until
/// `give_up` completes (the stream ended, was replaced, or the hub stops).
/// Returns what signals the lease's loss, or `None` when given up.
pub(crate) async fn acquire(
    hub: &Arc<Hub>,
    agency: AgencyCode,
    give_up: impl std::future::Future<Output = ()>,
) -> Option<Arc<Notify>> {
    tokio::pin!(give_up);
    let mut waited_for: Option<String> = None;
    loop {
        let store = hub.store.clone();
        let code = agency.to_string();
        let taken = tokio::task::spawn_blocking(move || store.lease_node(&code, LEASE_TTL)).await;
        match taken {
            Ok(Ok(None)) => {
                if let Some(holder) = waited_for {
                    tracing::info!(%agency, %holder, "took over a node's lease");
                }
                let lost = Arc::new(Notify::new());
                hub.leases.held().insert(agency, lost.clone());
                return Some(lost);
            }
            Ok(Ok(Some(holder))) => {
                if waited_for.as_deref() != Some(holder.as_str()) {
                    tracing::debug!(%agency, %holder, "another hub serves this node; waiting");
                }
                waited_for = Some(holder);
            }
            Ok(Err(error)) => tracing::debug!(%agency, %error, "cannot take a node's lease"),
            Err(_) => return None,
        }
        tokio::select! {
            _ = tokio::time::sleep(LEASE_POLL_INTERVAL) => {}
            _ = &mut give_up => return None,
        }
    }
}

/// Renews the leases this hub holds until it stops; a stream whose lease
/// another hub took (this hub could not renew in time) is told to end.
pub(crate) async fn renew(hub: Arc<Hub>) {
    let mut shutdown = hub.shutdown.clone();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(LEASE_RENEW_INTERVAL) => {}
            _ = shutdown.changed() => return,
        }
        let held: Vec<AgencyCode> = hub.leases.held().keys().copied().collect();
        if held.is_empty() {
            continue;
        }
        let codes: Vec<String> = held.iter().map(ToString::to_string).collect();
        let store = hub.store.clone();
        let renewed =
            tokio::task::spawn_blocking(move || store.renew_leases(&codes, LEASE_TTL)).await;
        let kept: Vec<String> = match renewed {
            Ok(Ok(kept)) => kept,
            // Not reachable now: the leases run on until they expire, and
            // the next round tries again.
            Ok(Err(error)) => {
                tracing::debug!(%error, "cannot renew node leases");
                continue;
            }
            Err(_) => return,
        };
        let mut leases = hub.leases.held();
        for agency in held {
            if !kept.contains(&agency.to_string()) {
                if let Some(lost) = leases.remove(&agency) {
                    tracing::warn!(%agency, "a node's lease was lost; its stream ends");
                    lost.notify_one();
                }
            }
        }
    }
}
