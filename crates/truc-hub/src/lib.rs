//! The hub: gRPC services over mutual TLS, identity from certificates,
//! intake, routing to recipients' queues, delivery streams and status moves.
//! Entry point: [`run`] on a pre-bound listener, or [`run_observed`] with a
//! metrics endpoint and the operator dashboard; gRPC health and reflection
//! share the Axis port. This file holds the state every call shares
//! (`Hub`) and what the modules read it through; the setup, the server and
//! the gRPC service are modules of their own (`setup.rs`, `server.rs`,
//! `service.rs`).

mod archived;
pub mod audit;
pub mod calendar;
mod certificates;
pub mod clock;
pub mod config;
mod convert;
pub mod dashboard;
mod delivery;
pub mod directory;
mod error;
mod feedback;
mod http;
mod identity;
mod intake;
mod leases;
pub mod logs;
mod malformed;
pub mod metrics;
mod moves;
mod observe;
mod operator;
mod refusals;
pub mod retention;
mod security;
mod server;
mod service;
mod setup;
mod tls;
mod watcher;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{watch, Notify};
use tonic::Request;
use truc_domain::{AgencyCode, DocumentDate, DocumentId, Limits};
use truc_pki::TrustRoots;
use truc_store::Store;

use directory::Act;

pub use calendar::WorkingCalendar;
pub use clock::Clock;
pub use config::HubConfig;
/// The wire header as the fields `Header::validate` checks, exactly as intake
/// reads it; public for the property tests and fuzz targets.
pub use convert::raw_header;
pub use directory::{
    AgencyEntry, ConnectionMode, Directory, DirectoryError, DirectoryReload, NotAdmitted,
};
pub use error::{HubError, RunError, SetupError};
pub use identity::Caller;
pub use observe::AXIS_SERVICE;
pub use retention::{RetentionSetup, RetentionStatus};
pub use security::{CrlSetup, SecuritySetup, TlsSetupError};
pub use server::{run, run_observed, Observe, LIFECYCLE_TARGET};
pub use service::NODES_TARGET;
pub use setup::{HubSetup, WatchSetup};

/// What every call, stream and background task of one running hub shares.
pub(crate) struct Hub {
    pub(crate) store: Store,
    /// Read through [`Hub::directory`]; replaced when the file is reloaded.
    live_directory: Arc<directory::LiveDirectory>,
    pub(crate) trust: TrustRoots,
    pub(crate) limits: Limits,
    pub(crate) delivery: config::DeliveryConfig,
    pub(crate) watch: WatchSetup,
    /// Sends in progress per agency, for `quotas.sends_in_flight_max`.
    sends_in_flight: Mutex<HashMap<AgencyCode, u32>>,
    /// Each sender's deliveries waiting unacknowledged, as last counted, and
    /// when (see `intake::check_queued_quota`).
    pub(crate) queued_counts: Mutex<HashMap<AgencyCode, (std::time::Instant, usize)>>,
    /// The live stream of each agency; a newer stream replaces an older one.
    sessions: Mutex<HashMap<AgencyCode, (u64, Arc<Notify>)>>,
    next_session: std::sync::atomic::AtomicU64,
    /// When each node's delivery stream last opened or ended (Unix ms).
    last_seen: Mutex<HashMap<AgencyCode, i64>>,
    /// Turns true when the hub stops; streams end so the server can drain.
    pub(crate) shutdown: watch::Receiver<bool>,
    /// The hub's certificate (DER) and key, which sign audit exports; no key
    /// when the certificate's key type cannot sign (exports go unsigned).
    audit_signer: (Vec<u8>, Option<truc_domain::SigningKey>),
    /// The node leases this hub holds (several hubs on one database).
    pub(crate) leases: leases::Leases,
    /// This hub's name, as leases and operators see it.
    pub(crate) name: String,
    /// What retention has done, for the dashboard and metrics.
    pub(crate) retention: retention::RetentionState,
    /// Where archived documents are read back from (`GetStatus`).
    pub(crate) archive_dir: std::path::PathBuf,
}

/// One in-flight send of an agency (see [`Hub::send_slot`]).
struct SendSlot<'a> {
    hub: &'a Hub,
    agency: AgencyCode,
}

impl Drop for SendSlot<'_> {
    fn drop(&mut self) {
        let mut in_flight = self
            .hub
            .sends_in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(count) = in_flight.get_mut(&self.agency) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                in_flight.remove(&self.agency);
            }
        }
    }
}

/// An ISO date as a `yyyymmdd` key; empty means `default`.
fn date_key(field: &str, text: &str, default: u32) -> Result<u32, HubError> {
    if text.is_empty() {
        Ok(default)
    } else {
        DocumentDate::parse_iso(text)
            .map(|d| d.ordinal_key())
            .map_err(|error| HubError::invalid(field, format!("{error}")))
    }
}

/// A period of `from_date` and `to_date`, either open; one that ends before it
/// begins is refused rather than answered with nothing, which would read as
/// a period without traffic.
fn date_range(from_date: &str, to_date: &str) -> Result<(u32, u32), HubError> {
    let from = date_key("from_date", from_date, 0)?;
    let to = date_key("to_date", to_date, u32::MAX)?;
    if to < from {
        return Err(HubError::invalid(
            "to_date",
            format!("{to_date} is before from_date {from_date}"),
        ));
    }
    Ok((from, to))
}

fn parse_document_id(field: &str, text: &str) -> Result<DocumentId, HubError> {
    text.parse()
        .map_err(|error| HubError::invalid(field, format!("{error}")))
}

/// Which recipients' rows of a document a caller sees.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Rows {
    /// The sender and operators see every row.
    All,
    /// A recipient sees its own row, and a relay those of the units it
    /// relays for as well.
    Of(AgencyCode),
}

impl Rows {
    /// The recipients a send refused, as the sender and operators see them:
    /// a recipient is not told who else was refused.
    pub(crate) fn refused(
        &self,
        refused: Vec<truc_store::RefusedRecipient>,
    ) -> Vec<truc_domain::views::RecipientOutcome> {
        match self {
            Rows::Of(_) => Vec::new(),
            Rows::All => refused
                .into_iter()
                .map(|r| truc_domain::views::RecipientOutcome {
                    organ_id: r.organ_id,
                    accepted: false,
                    reason: r.reason,
                })
                .collect(),
        }
    }
}

impl Rows {
    pub(crate) fn shows(&self, directory: &Directory, recipient: &str) -> bool {
        match self {
            Rows::All => true,
            Rows::Of(agency) => recipient.parse::<AgencyCode>().is_ok_and(|recipient| {
                recipient == *agency || directory.relays_for(agency, &recipient)
            }),
        }
    }
}

impl Hub {
    /// The directory in force; hold it for a whole decision.
    pub(crate) fn directory(&self) -> Arc<Directory> {
        self.live_directory.current()
    }

    /// Who calls, from the connection's certificate: an operator, or an
    /// agency registered in the directory (any act of an unregistered
    /// one is PERMISSION_DENIED naming its code).
    fn caller<T>(&self, request: &Request<T>) -> Result<Caller, HubError> {
        let caller = Caller::from_request(request)?;
        if let Caller::Agency { code, .. } = &caller {
            self.admit(code, Act::Read)?;
        }
        Ok(caller)
    }

    /// The calling agency, if the directory lets it do the acts of a node
    /// (send, receive, move): registered, with a node of its own.
    fn node_agency<T>(&self, request: &Request<T>, action: &str) -> Result<AgencyCode, HubError> {
        let agency = Caller::from_request(request)?.agency(action)?;
        self.admit(&agency, Act::Node)?;
        Ok(agency)
    }

    /// PERMISSION_DENIED naming `certificate` unless the directory in force
    /// lets `code` do `act`.
    pub(crate) fn admit(&self, code: &AgencyCode, act: Act) -> Result<(), HubError> {
        self.directory()
            .admits(code, act)
            .map_err(|refusal| HubError::denied("certificate", refusal.to_string()))
    }

    /// Ends the delivery streams of agencies that `directory` no longer
    /// admits as nodes: a code removed from the directory stops receiving
    /// at once, not at its next reconnection.
    fn end_streams_not_admitted(&self, directory: &Directory) {
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        for (agency, (_, replaced)) in sessions.iter() {
            if directory.admits(agency, Act::Node).is_err() {
                replaced.notify_one();
            }
        }
    }

    /// Each node seen since the hub started: online now, and when last seen
    /// (now, for one online).
    pub(crate) fn presence(&self) -> HashMap<AgencyCode, (bool, i64)> {
        let now = intake::now_unix_ms();
        let online: Vec<AgencyCode> = self
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect();
        let mut presence: HashMap<AgencyCode, (bool, i64)> = self
            .last_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(code, at)| (*code, (false, *at)))
            .collect();
        for code in online {
            presence.insert(code, (true, now));
        }
        presence
    }

    /// Takes one of the agency's in-flight send slots, released when dropped.
    fn send_slot(&self, agency: AgencyCode) -> Result<SendSlot<'_>, HubError> {
        let max = self.watch.quotas.sends_in_flight_max;
        let mut in_flight = self
            .sends_in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let count = in_flight.entry(agency).or_default();
        if *count >= max {
            return Err(HubError::Exhausted {
                field: "sender".into(),
                reason: format!("{agency} already has {count} sends in progress; at most {max}"),
                // Sends in progress end within moments.
                retry_after_seconds: 1,
            });
        }
        *count += 1;
        Ok(SendSlot { hub: self, agency })
    }

    /// Delivery streams open on this hub now.
    fn sessions_online(&self) -> usize {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Delivery streams opened since the hub started.
    fn streams_opened(&self) -> u64 {
        self.next_session
            .load(std::sync::atomic::Ordering::Relaxed)
            .saturating_sub(1)
    }

    fn seen(&self, agency: AgencyCode) {
        self.last_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(agency, intake::now_unix_ms());
    }

    /// Which rows of `record` the caller sees, or `None` if it may not read it.
    pub(crate) fn visibility(
        &self,
        caller: &Caller,
        record: &truc_store::DocumentRecord,
    ) -> Option<Rows> {
        match caller {
            Caller::Operator { .. } | Caller::Administrator { .. } => Some(Rows::All),
            Caller::Agency { code, .. } => {
                if record.sender == code.to_string() {
                    return Some(Rows::All);
                }
                let rows = Rows::Of(*code);
                let directory = self.directory();
                record
                    .recipients
                    .iter()
                    .any(|recipient| rows.shows(&directory, recipient))
                    .then_some(rows)
            }
        }
    }

    /// The document, if the caller may read it: its sender, a recipient, a
    /// relay of a recipient, or an operator.
    fn readable_document(
        &self,
        caller: &Caller,
        document_id: &str,
    ) -> Result<(truc_store::DocumentRecord, Rows), HubError> {
        parse_document_id("document_id", document_id)?;
        let Some(record) = self.store.document(document_id)? else {
            if let Some(archived) = self.store.archived(document_id)? {
                return Err(HubError::Store(truc_store::StoreError::Archived {
                    document_id: document_id.to_owned(),
                    archive: archived.archive,
                }));
            }
            return Err(HubError::not_found(
                "document_id",
                format!("{document_id} is not on the axis"),
            ));
        };
        match self.visibility(caller, &record) {
            Some(rows) => Ok((record, rows)),
            None => Err(HubError::denied(
                "document_id",
                format!(
                    "{} is neither the sender nor a recipient of {document_id}",
                    caller.name()
                ),
            )),
        }
    }

    /// A document's status per recipient as `caller` may see it: the one
    /// answer behind `GetStatus` and the dashboard's lookup.
    pub(crate) fn status_of(
        &self,
        caller: &Caller,
        document_id: &str,
    ) -> Result<truc_domain::views::DocumentStatus, HubError> {
        let (record, rows) = match self.readable_document(caller, document_id) {
            Err(HubError::Store(truc_store::StoreError::Archived { .. })) => {
                return archived::status_of(self, caller, document_id);
            }
            other => other?,
        };
        let deliveries = self.store.deliveries(document_id)?;
        let business_type = convert::business_type_of(&record.header_bytes);
        let chain = self
            .chain(document_id)?
            .into_iter()
            .map(convert::link_view)
            .collect();
        let directory = self.directory();
        let recipients = deliveries
            .into_iter()
            .filter(|d| rows.shows(&directory, &d.recipient))
            .map(|d| operator::recipient_status(self, d, true))
            .collect::<Result<_, HubError>>()?;
        Ok(truc_domain::views::DocumentStatus {
            document_id: record.document_id,
            sender: record.sender,
            subject: record.subject,
            accepted_at_unix_ms: record.accepted_at_unix_ms,
            document_signature: convert::signature_view(record.document_signature_state),
            recipients,
            business_type,
            chain,
            archive: String::new(),
            archive_unreadable: false,
            refused: rows.refused(record.refused),
        })
    }

    /// Every link of the chain `document_id` belongs to, earliest first,
    /// following recalls, updates and replaces both ways (at most
    /// `CHAIN_DOCUMENTS_MAX` documents).
    fn chain(&self, document_id: &str) -> Result<Vec<truc_store::LinkRecord>, HubError> {
        const CHAIN_DOCUMENTS_MAX: usize = 64;
        let mut seen = std::collections::BTreeSet::from([document_id.to_owned()]);
        let mut pending = vec![document_id.to_owned()];
        let mut links = std::collections::BTreeSet::new();
        while let Some(current) = pending.pop() {
            for link in self.store.links(&current)? {
                for other in [&link.earlier, &link.later] {
                    if seen.len() < CHAIN_DOCUMENTS_MAX && seen.insert(other.clone()) {
                        pending.push(other.clone());
                    }
                }
                links.insert((link.earlier.clone(), link.later.clone(), link.business_type));
            }
        }
        let mut links: Vec<truc_store::LinkRecord> = links
            .into_iter()
            .map(|(earlier, later, business_type)| truc_store::LinkRecord {
                business_type,
                earlier,
                later,
            })
            .collect();
        // Earliest first: a link whose earlier document is no other's later one leads.
        links.sort_by_key(|link| {
            let accepted = |id: &str| {
                self.store
                    .document(id)
                    .ok()
                    .flatten()
                    .map_or(0, |d| d.accepted_at_unix_ms)
            };
            (accepted(&link.later), link.later.clone())
        });
        Ok(links)
    }
}
