//! The hub: gRPC services over mutual TLS, identity from certificates,
//! intake, routing to recipients' queues, delivery streams and status moves.
//! Entry point: [`run`] on a pre-bound listener, or [`run_observed`] with a
//! metrics endpoint and the operator dashboard; gRPC health and reflection
//! share the Axis port.

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
mod tls;
mod watcher;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Notify};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};
use truc_domain::{AgencyCode, DocumentDate, DocumentId, Limits};
use truc_pki::{Credentials, TrustRoots};
use truc_proto::v1 as pb;
use truc_store::{Store, StoreOptions};

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

use convert::status_entry;

/// Everything a running hub needs, already loaded and checked.
pub struct HubSetup {
    pub store: Store,
    pub directory: Directory,
    pub trust: TrustRoots,
    pub credentials: Credentials,
    pub limits: Limits,
    pub delivery: config::DeliveryConfig,
    pub watch: WatchSetup,
    /// Revocation list and per-identity connection limits.
    pub security: SecuritySetup,
}

/// Feedback deadlines, expiry, per-agency quotas, retention, and the clock
/// they read.
#[derive(Clone, Debug)]
pub struct WatchSetup {
    pub deadlines: config::DeadlinesConfig,
    pub calendar: WorkingCalendar,
    pub expiry: config::ExpiryConfig,
    pub quotas: config::QuotasConfig,
    pub retention: RetentionSetup,
    pub clock: Clock,
}

impl Default for WatchSetup {
    fn default() -> Self {
        Self {
            deadlines: config::DeadlinesConfig::default(),
            calendar: config::CalendarConfig::default()
                .calendar()
                .expect("the default calendar parses"),
            expiry: config::ExpiryConfig::default(),
            quotas: config::QuotasConfig::default(),
            retention: RetentionSetup::default(),
            clock: Clock::system(),
        }
    }
}

impl WatchSetup {
    /// The watch configuration of a config file, on the system clock.
    pub fn from_config(config: &HubConfig) -> Result<WatchSetup, calendar::CalendarError> {
        Ok(WatchSetup {
            deadlines: config.deadlines.clone(),
            calendar: config.calendar.calendar()?,
            expiry: config.expiry.clone(),
            quotas: config.quotas.clone(),
            retention: RetentionSetup::from_config(&config.retention),
            clock: Clock::system(),
        })
    }

    /// The deadlines of a delivery accepted (or resent) at `at_unix_ms`.
    pub(crate) fn accept_deadlines(
        &self,
        at_unix_ms: i64,
        due_date: Option<&str>,
    ) -> truc_store::AcceptDeadlines {
        let minutes = |m: u64| (m > 0).then(|| at_unix_ms + m as i64 * 60_000);
        truc_store::AcceptDeadlines {
            arrived_unix_ms: minutes(self.deadlines.arrived_within_minutes),
            due_date_unix_ms: due_date
                .filter(|_| self.deadlines.due_date)
                .and_then(|date| self.calendar.end_of_day(date)),
            expiry_unix_ms: minutes(self.expiry.ttl_minutes),
        }
    }

    /// The "received" deadline of a delivery that arrived at `at_unix_ms`.
    pub(crate) fn received_deadline(&self, at_unix_ms: i64) -> Option<i64> {
        let minutes = self.deadlines.received_within_working_minutes;
        (minutes > 0).then(|| self.calendar.add_working_minutes(at_unix_ms, minutes))
    }
}

/// Opens the store the config names: the embedded engine in `data_dir`, or
/// the PostgreSQL database several hubs share.
fn open_store(config: &HubConfig) -> Result<Store, SetupError> {
    let options = StoreOptions {
        cache_bytes: config.cache_mib * 1024 * 1024,
        checkpoint_interval: std::time::Duration::from_secs(config.checkpoint_seconds),
        free_bytes_min: config.free_space_mib_min * 1024 * 1024,
        ..StoreOptions::default()
    };
    match config.store.backend {
        config::StoreBackend::Embedded => {
            std::fs::create_dir_all(&config.data_dir).map_err(|source| {
                SetupError::CreateDataDir {
                    path: config.data_dir.clone(),
                    source,
                }
            })?;
            Store::open(&config.data_dir, &options).map_err(|error| match error {
                truc_store::StoreError::Locked { pid, .. } => SetupError::DataDirInUse {
                    path: config.data_dir.clone(),
                    pid,
                },
                source => SetupError::OpenDataDir {
                    path: config.data_dir.clone(),
                    source,
                },
            })
        }
        config::StoreBackend::Postgres => {
            let read = |path: &std::path::Path,
                        field: &'static str|
             -> Result<Option<Vec<u8>>, SetupError> {
                if path.as_os_str().is_empty() {
                    return Ok(None);
                }
                std::fs::read(path)
                    .map(Some)
                    .map_err(|source| SetupError::ReadStoreFile {
                        field,
                        path: path.to_owned(),
                        source,
                    })
            };
            let password = read(&config.store.password_file, "store.password_file")?.map(|bytes| {
                String::from_utf8_lossy(&bytes)
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            });
            let postgres = truc_store::PostgresOptions {
                url: config.store.url.clone(),
                password,
                ca_cert_pem: read(&config.store.ca_cert, "store.ca_cert")?,
                hub_name: if config.store.hub_name.is_empty() {
                    config.listen.to_string()
                } else {
                    config.store.hub_name.clone()
                },
                reader_connections_max: config.store.connections_max as usize,
                ..truc_store::PostgresOptions::default()
            };
            Store::open_postgres(&postgres, &options)
                .map_err(|source| SetupError::OpenDatabase { source })
        }
    }
}

impl HubSetup {
    /// Loads the directory, certificates and store named by a config.
    pub fn from_config(config: &HubConfig) -> Result<HubSetup, SetupError> {
        let directory = Directory::load(&config.directory)?;
        let trust = TrustRoots::from_pem_file(&config.tls.ca_cert).map_err(|source| {
            SetupError::Certificates {
                field: "tls.ca_cert",
                source,
            }
        })?;
        let credentials =
            Credentials::load(&config.tls.cert, &config.tls.key).map_err(|source| {
                // The key's file, or a key that is not the certificate's, is `tls.key`.
                let field = match &source {
                    truc_pki::PkiError::Io { path, .. }
                    | truc_pki::PkiError::Pem { path, .. }
                    | truc_pki::PkiError::PrivateKey { path, .. }
                        if *path == config.tls.key =>
                    {
                        "tls.key"
                    }
                    truc_pki::PkiError::KeyMismatch { .. } => "tls.key",
                    _ => "tls.cert",
                };
                SetupError::Certificates { field, source }
            })?;
        let store = open_store(config)?;
        Ok(HubSetup {
            store,
            directory,
            trust,
            credentials,
            limits: config.limits.clone(),
            delivery: config.delivery.clone(),
            watch: WatchSetup::from_config(config)?,
            security: SecuritySetup {
                crl: (!config.tls.crl.as_os_str().is_empty()).then(|| CrlSetup {
                    path: config.tls.crl.clone(),
                    reload_interval: std::time::Duration::from_secs(config.tls.crl_reload_seconds),
                }),
                connections: config.connections.clone(),
                directory_reload: Some(DirectoryReload {
                    path: config.directory.clone(),
                    interval: std::time::Duration::from_secs(config.directory_reload_seconds),
                    on_sighup: true,
                }),
            },
        })
    }
}

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

#[derive(Clone)]
struct AxisService(Arc<Hub>);

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

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// What a hub offers operators' tooling beyond health and reflection,
/// which are always on.
pub struct Observe {
    /// Where to serve Prometheus metrics (plain HTTP, `GET /metrics`); bound
    /// by the caller so that tests can use port 0. `None` serves no metrics.
    pub metrics_listener: Option<TcpListener>,
    /// Where and with which token to serve the operator dashboard (plain
    /// HTTP on its own port); `None` serves none.
    pub dashboard: Option<dashboard::DashboardSetup>,
    /// Warn this many days before the hub's or the CA's certificate expires.
    pub certificate_warning_days: u64,
}

impl Default for Observe {
    fn default() -> Self {
        Observe {
            metrics_listener: None,
            dashboard: None,
            certificate_warning_days: config::ObserveConfig::default().certificate_warning_days,
        }
    }
}

/// How often the hub pings an idle connection, and how long it waits for the answer.
const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// Serves the axis on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    setup: HubSetup,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), RunError> {
    run_observed(listener, setup, Observe::default(), shutdown).await
}

/// [`run`], with what `observe` asks for.
pub async fn run_observed(
    listener: TcpListener,
    setup: HubSetup,
    observe: Observe,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), RunError> {
    let verifier =
        security::RevocableVerifier::new(setup.trust.clone(), setup.security.crl.as_ref())?;
    let tls = truc_pki::server_tls_config_with_verifier(&setup.credentials, verifier.clone())
        .map_err(|source| security::TlsSetupError {
            field: "tls.cert",
            path: None,
            source,
        })?;
    let reflection_v1 = observe::reflection_v1()?;
    let reflection_v1alpha = observe::reflection_v1alpha()?;
    let observe_addresses = (
        observe
            .metrics_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok()),
        observe
            .dashboard
            .as_ref()
            .and_then(|dashboard| dashboard.listener.local_addr().ok()),
    );
    let metrics_endpoint = match observe.metrics_listener {
        Some(listener) => {
            let handle = metrics::install().map_err(|error| RunError::Setting {
                field: "observe.metrics_listen",
                source: Box::new(error),
            })?;
            record_certificate_expiry(&setup);
            Some((listener, handle))
        }
        None => None,
    };
    certificates::check_own(
        setup.credentials.certificate_der(),
        &setup.trust,
        observe.certificate_warning_days,
    );
    let readiness = observe::Readiness::new().await;
    let (stopping, shutdown_seen) = watch::channel(false);
    let audit_signer = (
        setup.credentials.certificate_der().to_vec(),
        setup
            .credentials
            .signing_key()
            .inspect_err(|error| tracing::warn!(%error, "audit exports will not be signed"))
            .ok(),
    );
    // Retention seals archives with the hub's key: without one it cannot run.
    let archive_sink: Option<std::sync::Arc<dyn truc_store::ArchiveSink>> =
        if setup.watch.retention.enabled {
            let key = setup
                .credentials
                .signing_key()
                .map_err(|error| RunError::Setting {
                    field: "retention.enabled",
                    source: Box::new(CannotSeal(error)),
                })?;
            Some(std::sync::Arc::new(truc_archive::ArchiveWriter::new(
                &setup.watch.retention.archive_dir,
                &setup.store.hub_name().unwrap_or_default(),
                setup.trust.certificates_der().map(<[u8]>::to_vec).collect(),
                setup.credentials.certificate_der().to_vec(),
                key,
            )))
        } else {
            None
        };
    let hub_name = setup.store.hub_name().unwrap_or_else(|| {
        listener
            .local_addr()
            .map_or_else(|_| "hub".to_owned(), |address| address.to_string())
    });
    let archive_dir = setup.watch.retention.archive_dir.clone();
    let hub = Arc::new(Hub {
        store: setup.store,
        live_directory: Arc::new(directory::LiveDirectory::new(setup.directory)),
        trust: setup.trust,
        limits: setup.limits,
        delivery: setup.delivery,
        watch: setup.watch,
        sends_in_flight: Mutex::new(HashMap::new()),
        queued_counts: Mutex::new(HashMap::new()),
        sessions: Mutex::new(HashMap::new()),
        next_session: std::sync::atomic::AtomicU64::new(1),
        last_seen: Mutex::new(HashMap::new()),
        shutdown: shutdown_seen,
        audit_signer,
        leases: leases::Leases::default(),
        name: hub_name,
        retention: retention::RetentionState::default(),
        archive_dir,
    });
    tokio::spawn(leases::renew(hub.clone()));
    let message_bytes_max = hub.limits.header_bytes_max + hub.limits.chunk_bytes_max + 64 * 1024;
    let service = pb::axis_server::AxisServer::new(AxisService(hub.clone()))
        .max_decoding_message_size(message_bytes_max)
        .max_encoding_message_size(message_bytes_max);
    let metrics_task = metrics_endpoint.map(|(listener, handle)| {
        tokio::spawn(operator::publish_queue_gauges(hub.clone()));
        tokio::spawn(observe::serve_metrics(
            listener,
            handle,
            hub.shutdown.clone(),
        ))
    });
    let dashboard_task = observe
        .dashboard
        .map(|setup| tokio::spawn(dashboard::serve(hub.clone(), setup, hub.shutdown.clone())));
    let watcher_task = tokio::spawn(watcher::run(hub.clone()));
    let retention_task = archive_sink.map(|sink| tokio::spawn(retention::run(hub.clone(), sink)));
    tokio::spawn(certificates::watch_own(
        hub.audit_signer.0.clone(),
        hub.trust.clone(),
        observe.certificate_warning_days,
        hub.shutdown.clone(),
    ));
    let directory_task = setup.security.directory_reload.clone().map(|reload| {
        let weak = Arc::downgrade(&hub);
        let hangups = directory::hangups(reload.on_sighup);
        tokio::spawn(directory::watch(
            hub.live_directory.clone(),
            reload,
            hangups,
            hub.shutdown.clone(),
            move |directory| {
                if let Some(hub) = weak.upgrade() {
                    hub.end_streams_not_admitted(directory);
                }
            },
        ))
    });
    let crl_task = setup.security.crl.clone().map(|crl| {
        tokio::spawn(security::watch_crl(
            verifier.clone(),
            crl,
            hub.shutdown.clone(),
        ))
    });
    let health = readiness.service(hub.shutdown.clone());
    let connections = &setup.security.connections;
    let incoming_address = listener
        .local_addr()
        .map_or_else(|_| "?".to_owned(), |address| address.to_string());
    let incoming = tls::incoming(listener, tls, connections.per_identity_max);
    // Storage is open (the setup holds it) and the certificates are loaded (`tls`).
    readiness.serving().await;
    readiness.follow_store(hub.store.clone(), hub.shutdown.clone());
    log_started(&hub, &incoming_address, &observe_addresses).await;
    let stopping_hub = hub.clone();
    let signal = async move {
        shutdown.await;
        tracing::info!(
            target: LIFECYCLE_TARGET,
            nodes_online = stopping_hub.sessions_online(),
            "hub stopping: health turns NOT_SERVING, delivery streams end, calls in progress finish"
        );
        readiness.stopping().await;
        let _ = stopping.send(true);
    };
    let served = tonic::transport::Server::builder()
        .max_concurrent_streams(Some(connections.streams_per_connection_max))
        // A client gone without closing (a dead link) would keep one of its
        // identity's connection slots for ever; unanswered pings free it.
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        // Outermost: every refusal, the other layers' too, is counted once.
        .layer(refusals::RefusalLayer)
        .layer(security::SecurityLayer { verifier })
        .layer(malformed::layer())
        .add_service(service)
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(incoming, signal)
        .await
        .map_err(|source| RunError::Serve { source });
    // The watcher holds the store: it must let go before `run_observed` returns.
    let _ = stop_watcher(&hub, watcher_task).await;
    if let Some(task) = retention_task {
        stop_watcher(&hub, task).await;
    }
    // A graceful stop leaves the tree holding everything and the journal
    // empty, so the next start reads nothing back.
    match hub.store.checkpoint().await {
        Ok(()) => tracing::info!(
            target: LIFECYCLE_TARGET,
            delivery_streams_served = hub.streams_opened(),
            "hub stopped: everything it accepted is on disk"
        ),
        Err(error) => {
            tracing::warn!(%error, "last checkpoint failed; the next start reads the journal back")
        }
    }
    if let Some(task) = crl_task {
        stop_watcher(&hub, task).await;
    }
    if let Some(task) = directory_task {
        stop_watcher(&hub, task).await;
    }
    // The metrics port is free again once `run_observed` returns, like the Axis port.
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    // So is the dashboard's; it also holds the hub, and with it the store.
    if let Some(task) = dashboard_task {
        if !*hub.shutdown.borrow() {
            task.abort();
        }
        let _ = task.await;
    }
    served
}

/// Retention is on, but the hub's key cannot sign the archives' seals.
#[derive(Debug, thiserror::Error)]
#[error("archives are sealed with the hub's key, which cannot sign: {0}")]
struct CannotSeal(#[source] truc_pki::PkiError);

/// The target of the hub's start and stop lines (info, logged at the default level).
pub const LIFECYCLE_TARGET: &str = "truc::hub";

/// The target of node connections and disconnections (info). Replays and
/// demos, which connect a node per agency at once, keep it at warn.
pub const NODES_TARGET: &str = "truc::nodes";

/// One line when the hub serves: where, and what it holds.
async fn log_started(
    hub: &Arc<Hub>,
    listen: &str,
    (metrics, dashboard): &(Option<std::net::SocketAddr>, Option<std::net::SocketAddr>),
) {
    // Off the async threads: on PostgreSQL the counters are a query.
    let store = hub.store.clone();
    let (documents, deliveries_received) =
        error::blocking("counting the stored documents", move || {
            store.counts(0, u32::MAX)
        })
        .await
        .ok()
        .and_then(Result::ok)
        .map(|counts| {
            counts
                .values()
                .fold((0u64, 0u64), |(sent, received), (s, r)| {
                    (sent + s, received + r)
                })
        })
        .unwrap_or_default();
    let address = |address: &Option<std::net::SocketAddr>| {
        address.map_or_else(|| "off".to_owned(), |address| address.to_string())
    };
    tracing::info!(
        target: LIFECYCLE_TARGET,
        %listen,
        hub = %hub.name,
        agencies = hub.directory().len(),
        documents,
        deliveries_received,
        metrics = %address(metrics),
        dashboard = %address(dashboard),
        "hub serving"
    );
}

/// Ends the watcher, also when serving failed before the stop signal.
async fn stop_watcher(hub: &Hub, task: tokio::task::JoinHandle<()>) {
    if !*hub.shutdown.borrow() {
        task.abort();
    }
    let _ = task.await;
}

/// Puts the expiry of the hub's certificate and of each CA into the metrics.
fn record_certificate_expiry(setup: &HubSetup) {
    let certificates = std::iter::once(("hub", setup.credentials.certificate_der()))
        .chain(setup.trust.certificates_der().map(|der| ("ca", der)));
    for (identity, der) in certificates {
        match truc_pki::certificate_validity(der) {
            Ok(validity) => metrics::certificate_expiry(
                identity,
                &validity.subject,
                validity.not_after_unix_seconds,
            ),
            Err(error) => tracing::warn!(identity, %error, "cannot read a certificate's expiry"),
        }
    }
}

mod audit_stream {
    //! The export as a stream of chunks.
    use tokio::sync::mpsc;
    use tonic::Status;
    use truc_proto::v1 as pb;

    /// Bytes per chunk of an export on the wire.
    const CHUNK_BYTES: usize = 64 * 1024;

    pub(crate) struct ChunkWriter {
        buffer: Vec<u8>,
        sender: mpsc::Sender<Result<pb::AuditExportChunk, Status>>,
    }

    impl ChunkWriter {
        pub(crate) fn new(sender: mpsc::Sender<Result<pb::AuditExportChunk, Status>>) -> Self {
            ChunkWriter {
                buffer: Vec::with_capacity(CHUNK_BYTES),
                sender,
            }
        }

        fn send(&mut self) -> std::io::Result<()> {
            if self.buffer.is_empty() {
                return Ok(());
            }
            let data = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK_BYTES));
            self.sender
                .blocking_send(Ok(pb::AuditExportChunk { data }))
                .map_err(|_| std::io::Error::other("the client went away"))
        }
    }

    impl std::io::Write for ChunkWriter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.buffer.extend_from_slice(bytes);
            if self.buffer.len() >= CHUNK_BYTES {
                self.send()?;
            }
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            self.send()
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

#[tonic::async_trait]
impl pb::axis_server::Axis for AxisService {
    #[tracing::instrument(skip_all, fields(document_id = tracing::field::Empty))]
    async fn send(
        &self,
        request: Request<Streaming<pb::SendRequest>>,
    ) -> Result<Response<pb::SendResponse>, Status> {
        metrics::request("send");
        let caller = Caller::from_request(&request)?;
        let Caller::Agency {
            code,
            certificate,
            public_key,
        } = caller
        else {
            return Err(caller.agency("send").map(|_| ()).unwrap_err().into());
        };
        self.0.admit(&code, Act::Node)?;
        let response = async {
            let _slot = self.0.send_slot(code)?;
            intake::send(&self.0, code, certificate, public_key, request.into_inner()).await
        }
        .await
        .inspect_err(|error| {
            metrics::send_finished(&code.to_string(), metrics::SendOutcome::Refused);
            tracing::info!(sender = %code, %error, "send refused");
        })?;
        tracing::Span::current().record("document_id", response.document_id.as_str());
        let outcome = if response.duplicate {
            metrics::SendOutcome::Duplicate
        } else {
            metrics::SendOutcome::Accepted
        };
        metrics::send_finished(&code.to_string(), outcome);
        tracing::debug!(sender = %code, duplicate = response.duplicate, "send accepted");
        Ok(Response::new(response))
    }

    type DeliveriesStream = BoxStream<pb::HubMessage>;

    async fn deliveries(
        &self,
        request: Request<Streaming<pb::NodeMessage>>,
    ) -> Result<Response<Self::DeliveriesStream>, Status> {
        metrics::request("deliveries");
        let agency = self.0.node_agency(&request, "receive deliveries")?;
        let mut inbound = request.into_inner();
        let hello = match inbound.next().await {
            Some(Ok(pb::NodeMessage {
                kind: Some(pb::node_message::Kind::Hello(hello)),
            })) => hello,
            _ => {
                return Err(HubError::invalid(
                    "hello",
                    "the first message on the stream must be a hello",
                )
                .into())
            }
        };
        let hub = self.0.clone();
        let window = match hello.window {
            0 => hub.delivery.window_default,
            asked => asked.min(hub.delivery.window_max),
        } as usize;
        let session = hub
            .next_session
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let replaced = Arc::new(Notify::new());
        if let Some((_, older)) = hub
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(agency, (session, replaced.clone()))
        {
            older.notify_one();
        }
        hub.seen(agency);
        tracing::info!(
            target: NODES_TARGET,
            %agency,
            window,
            nodes_online = hub.sessions_online(),
            "node connected"
        );
        metrics::node_connected();
        let opened = std::time::Instant::now();
        let (outbound, receiver) = mpsc::channel(window.max(1));
        tokio::spawn(async move {
            delivery::run_session(hub.clone(), agency, window, inbound, outbound, replaced).await;
            let current = {
                let mut sessions = hub.sessions.lock().unwrap_or_else(|p| p.into_inner());
                let current = sessions.get(&agency).is_some_and(|(id, _)| *id == session);
                if current {
                    sessions.remove(&agency);
                }
                current
            };
            // A newer stream of the same node on this hub keeps the lease.
            if current {
                leases::Leases::release(&hub, agency).await;
            }
            hub.seen(agency);
            metrics::node_disconnected();
            tracing::info!(
                target: NODES_TARGET,
                %agency,
                connected_seconds = opened.elapsed().as_secs(),
                nodes_online = hub.sessions_online(),
                replaced = !current,
                "node disconnected"
            );
        });
        let agency_label = agency.to_string();
        let outbound = ReceiverStream::new(receiver).map(move |message| {
            if let Ok(pb::HubMessage {
                kind: Some(pb::hub_message::Kind::Delivery(_)),
            }) = &message
            {
                metrics::delivery_sent(&agency_label);
            }
            message
        });
        Ok(Response::new(Box::pin(outbound)))
    }

    #[tracing::instrument(skip_all, fields(document_id = tracing::field::Empty))]
    async fn move_status(
        &self,
        request: Request<pb::MoveStatusRequest>,
    ) -> Result<Response<pb::MoveStatusResponse>, Status> {
        metrics::request("move_status");
        let agency = self.0.node_agency(&request, "move statuses")?;
        let request = moves::check(&self.0, agency, convert::asked_move(request.into_inner()))?;
        tracing::Span::current().record("document_id", request.document_id.as_str());
        let (document_id, recipient) = (request.document_id.clone(), request.recipient.clone());
        let entry = self
            .0
            .store
            .move_all(vec![request])
            .await
            .map_err(HubError::from)?
            .pop()
            .ok_or(HubError::Store(truc_store::StoreError::WriterGone))?
            .map_err(|error| moves::refusal(error, &document_id, &recipient))?;
        moves::record_moved(&recipient, &entry);
        Ok(Response::new(pb::MoveStatusResponse {
            entry: Some(status_entry(&entry)),
        }))
    }

    async fn move_statuses(
        &self,
        request: Request<pb::MoveStatusesRequest>,
    ) -> Result<Response<pb::MoveStatusesResponse>, Status> {
        metrics::request("move_statuses");
        let agency = self.0.node_agency(&request, "move statuses")?;
        let asked = request.into_inner().moves;
        let asked = asked.into_iter().map(convert::asked_move).collect();
        let results = moves::move_all(&self.0, agency, asked).await?;
        Ok(Response::new(pb::MoveStatusesResponse {
            results: results.into_iter().map(convert::wire_move_result).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(document_id = tracing::field::Empty))]
    async fn get_status(
        &self,
        request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        metrics::request("get_status");
        let caller = self.0.caller(&request)?;
        let document_id = request.into_inner().document_id;
        tracing::Span::current().record("document_id", document_id.as_str());
        let status = self.0.status_of(&caller, &document_id)?;
        Ok(Response::new(convert::wire_document_status(status)))
    }

    type FetchAttachmentStream = BoxStream<pb::FetchAttachmentChunk>;

    async fn fetch_attachment(
        &self,
        request: Request<pb::FetchAttachmentRequest>,
    ) -> Result<Response<Self::FetchAttachmentStream>, Status> {
        metrics::request("fetch_attachment");
        let caller = self.0.caller(&request)?;
        let request = request.into_inner();
        let (record, _) = self.0.readable_document(&caller, &request.document_id)?;
        let attachment = record
            .attachments
            .get(request.index as usize)
            .ok_or_else(|| {
                HubError::not_found(
                    "index",
                    format!(
                        "{} has {} attachments",
                        request.document_id,
                        record.attachments.len()
                    ),
                )
            })?;
        let sha256 = attachment.sha256;
        let store = self.0.store.clone();
        let (sender, receiver) = mpsc::channel(4);
        // sled reads are synchronous; a blocking task keeps them off the runtime's workers.
        tokio::task::spawn_blocking(move || {
            let chunks = match store.blob_chunks(&sha256) {
                Ok(chunks) => chunks,
                Err(error) => {
                    let _ = sender.blocking_send(Err(HubError::from(error).into()));
                    return;
                }
            };
            for chunk in chunks {
                let message = chunk
                    .map(|data| pb::FetchAttachmentChunk { data })
                    .map_err(|error| HubError::from(error).into());
                if sender.blocking_send(message).is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn report(
        &self,
        request: Request<pb::ReportRequest>,
    ) -> Result<Response<pb::ReportResponse>, Status> {
        metrics::request("report");
        if !self.0.caller(&request)?.reads_everything() {
            return Err(HubError::denied("certificate", "reports are for operators").into());
        }
        let request = request.into_inner();
        let (from, to) = date_range(&request.from_date, &request.to_date)?;
        // An ill-formed focus would match no document and report zeros as if true.
        if !request.focus_recipient.is_empty() {
            request
                .focus_recipient
                .parse::<AgencyCode>()
                .map_err(|error| HubError::invalid("focus_recipient", format!("{error}")))?;
        }
        let focus = (!request.focus_recipient.is_empty()).then_some(request.focus_recipient);
        let store = self.0.store.clone();
        // A report reads every stored document: keep it off the runtime's workers.
        let rows = error::blocking("the report", move || {
            store.report(from, to, focus.as_deref())
        })
        .await?
        .map_err(HubError::from)?;
        Ok(Response::new(pb::ReportResponse {
            rows: rows
                .into_iter()
                .map(|(organ_id, row)| pb::ReportRow {
                    organ_id,
                    sent: row.sent,
                    received: row.received,
                    statuses_reported: row.status_codes(),
                    sent_to_focus: row.sent_to_focus,
                    sent_to_focus_signed: row.sent_to_focus_signed,
                    overdue: row.overdue,
                })
                .collect(),
        }))
    }

    async fn counts(
        &self,
        request: Request<pb::CountsRequest>,
    ) -> Result<Response<pb::CountsResponse>, Status> {
        metrics::request("counts");
        let caller = self.0.caller(&request)?;
        let request = request.into_inner();
        let (from, to) = date_range(&request.from_date, &request.to_date)?;
        let counts = self.0.store.counts(from, to).map_err(HubError::from)?;
        let own = match &caller {
            Caller::Operator { .. } | Caller::Administrator { .. } => None,
            Caller::Agency { code, .. } => Some(code.to_string()),
        };
        let agencies: Vec<pb::AgencyCounts> = counts
            .into_iter()
            .filter(|(code, _)| own.as_ref().is_none_or(|own| own == code))
            .map(|(organ_id, (sent, received))| pb::AgencyCounts {
                organ_id,
                sent,
                received,
            })
            .collect();
        Ok(Response::new(pb::CountsResponse {
            total_sent: agencies.iter().map(|a| a.sent).sum(),
            total_received: agencies.iter().map(|a| a.received).sum(),
            agencies,
        }))
    }

    async fn explain_route(
        &self,
        request: Request<pb::ExplainRouteRequest>,
    ) -> Result<Response<pb::ExplainRouteResponse>, Status> {
        metrics::request("explain_route");
        self.0.caller(&request)?;
        let route = operator::explain_route(&self.0, &request.into_inner().organ_id)?;
        Ok(Response::new(convert::wire_route(route)))
    }

    async fn list_documents(
        &self,
        request: Request<pb::ListDocumentsRequest>,
    ) -> Result<Response<pb::ListDocumentsResponse>, Status> {
        metrics::request("list_documents");
        let caller = self.0.caller(&request)?;
        let hub = self.0.clone();
        let filter = convert::document_filter(request.into_inner());
        // It reads every stored document: keep it off the runtime's workers.
        let list = error::blocking("listing documents", move || {
            operator::list_documents(&hub, &caller, &filter)
        })
        .await??;
        Ok(Response::new(convert::wire_document_list(list)))
    }

    async fn list_nodes(
        &self,
        request: Request<pb::ListNodesRequest>,
    ) -> Result<Response<pb::ListNodesResponse>, Status> {
        metrics::request("list_nodes");
        if !self.0.caller(&request)?.reads_everything() {
            return Err(HubError::denied("certificate", "the node list is for operators").into());
        }
        let hub = self.0.clone();
        let list = error::blocking("listing nodes", move || operator::list_nodes(&hub)).await??;
        Ok(Response::new(convert::wire_node_list(list)))
    }

    async fn list_overdue(
        &self,
        request: Request<pb::ListOverdueRequest>,
    ) -> Result<Response<pb::ListOverdueResponse>, Status> {
        metrics::request("list_overdue");
        let caller = self.0.caller(&request)?;
        let hub = self.0.clone();
        let filter = convert::overdue_filter(request.into_inner());
        let list = error::blocking("listing overdue deliveries", move || {
            feedback::list_overdue(&hub, &caller, &filter)
        })
        .await??;
        Ok(Response::new(convert::wire_overdue_list(list)))
    }

    async fn list_dead_letters(
        &self,
        request: Request<pb::ListDeadLettersRequest>,
    ) -> Result<Response<pb::ListDeadLettersResponse>, Status> {
        metrics::request("list_dead_letters");
        let caller = self.0.caller(&request)?;
        let hub = self.0.clone();
        let filter = convert::dead_letter_filter(request.into_inner());
        let list = error::blocking("listing dead letters", move || {
            feedback::list_dead_letters(&hub, &caller, &filter)
        })
        .await??;
        Ok(Response::new(convert::wire_dead_letter_list(list)))
    }

    async fn resend_dead_letter(
        &self,
        request: Request<pb::ResendDeadLetterRequest>,
    ) -> Result<Response<pb::DeadLetter>, Status> {
        metrics::request("resend_dead_letter");
        let caller = self.0.caller(&request)?;
        let request = request.into_inner();
        let letter =
            feedback::resend(&self.0, &caller, &request.document_id, &request.recipient).await?;
        Ok(Response::new(convert::wire_dead_letter(letter)))
    }

    type ExportAuditStream = BoxStream<pb::AuditExportChunk>;

    async fn export_audit(
        &self,
        request: Request<pb::ExportAuditRequest>,
    ) -> Result<Response<Self::ExportAuditStream>, Status> {
        metrics::request("export_audit");
        if !self.0.caller(&request)?.reads_everything() {
            return Err(HubError::denied("certificate", "the audit log is for operators").into());
        }
        let request = request.into_inner();
        let hub = self.0.clone();
        let (sender, receiver) = mpsc::channel(4);
        let made_at_unix_ms = hub.watch.clock.now_unix_ms();
        // The export reads the whole log: a blocking thread writes it in
        // pieces into a bounded channel, at the pace the client reads.
        tokio::task::spawn_blocking(move || {
            let mut out = audit_stream::ChunkWriter::new(sender.clone());
            let (certificate_der, key) = &hub.audit_signer;
            let signer = key.as_ref().map(|key| audit::ExportSigner {
                certificate_der,
                key,
            });
            let result = audit::write_export(
                &hub.store,
                &hub.trust,
                signer,
                request.from_unix_ms,
                request.to_unix_ms,
                made_at_unix_ms,
                &mut out,
            );
            // Logged and counted by the refusal layer as it reaches the client.
            if let Err(error) = result {
                let _ = sender.blocking_send(Err(Status::internal(error.to_string())));
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn cancel_dead_letter(
        &self,
        request: Request<pb::CancelDeadLetterRequest>,
    ) -> Result<Response<pb::DeadLetter>, Status> {
        metrics::request("cancel_dead_letter");
        let caller = self.0.caller(&request)?;
        let request = request.into_inner();
        let letter = feedback::cancel(
            &self.0,
            &caller,
            &request.document_id,
            &request.recipient,
            &request.reason,
        )
        .await?;
        Ok(Response::new(convert::wire_dead_letter(letter)))
    }
}
