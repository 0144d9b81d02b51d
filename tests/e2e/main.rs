//! End-to-end tests: a real hub over loopback with real mutual TLS, real
//! signatures and sled on disk in temporary directories.

mod algorithms;
mod audit;
mod badinput;
mod dashboard;
mod delivery;
mod edxml;
mod failover;
mod faults;
mod full_disk;
mod intake;
mod listing;
mod observe;
mod overdue;
mod recall;
mod relays;
mod replay;
mod retention;
mod status;

use std::time::Duration;

use tokio::sync::mpsc;
use truc_node::NodeEvent;

/// Waits for node events until `accept` has seen what it wants, failing
/// after a generous bound so that a broken hub fails the test instead of
/// hanging it.
pub async fn wait_for<F: FnMut(&NodeEvent) -> bool>(
    events: &mut mpsc::Receiver<NodeEvent>,
    mut accept: F,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(event)) => {
                if accept(&event) {
                    return;
                }
            }
            Ok(None) => panic!("node event channel closed"),
            Err(_) => panic!("timed out waiting for node events"),
        }
    }
}

/// Names of the documents in an inbox folder (hidden staging folders excluded).
pub fn inbox_documents(inbox: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(inbox)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| !name.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}
