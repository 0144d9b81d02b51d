//! Serving a hub: [`run`] and [`run_observed`] build the shared [`Hub`] from a
//! [`HubSetup`], start its background tasks, serve the Axis with health and
//! reflection on one listener, and stop everything in order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use truc_proto::v1 as pb;

use crate::service::AxisService;
use crate::{
    certificates, config, dashboard, directory, error, leases, malformed, metrics, observe,
    operator, refusals, retention, security, tls, watcher, Hub, HubSetup, RunError,
};

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
    let archive_sink = archive_sink(&setup)?;
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
    let background = Background::start(
        &hub,
        metrics_endpoint,
        observe.dashboard,
        archive_sink,
        &setup.security,
        &verifier,
        observe.certificate_warning_days,
    );
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
    background.stop(&hub).await;
    served
}

/// Retention is on, but the hub's key cannot sign the archives' seals.
#[derive(Debug, thiserror::Error)]
#[error("archives are sealed with the hub's key, which cannot sign: {0}")]
struct CannotSeal(#[source] truc_pki::PkiError);

/// The target of the hub's start and stop lines (info, logged at the default level).
pub const LIFECYCLE_TARGET: &str = "truc::hub";

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

/// The archive writer retention hands its batches to, if retention is on:
/// it seals archives with the hub's key, so without one the hub cannot start.
fn archive_sink(setup: &HubSetup) -> Result<Option<Arc<dyn truc_store::ArchiveSink>>, RunError> {
    if !setup.watch.retention.enabled {
        return Ok(None);
    }
    let key = setup
        .credentials
        .signing_key()
        .map_err(|error| RunError::Setting {
            field: "retention.enabled",
            source: Box::new(CannotSeal(error)),
        })?;
    Ok(Some(Arc::new(truc_archive::ArchiveWriter::new(
        &setup.watch.retention.archive_dir,
        &setup.store.hub_name().unwrap_or_default(),
        setup.trust.certificates_der().map(<[u8]>::to_vec).collect(),
        setup.credentials.certificate_der().to_vec(),
        key,
    ))))
}

/// What a hub runs beside serving the Axis.
struct Background {
    watcher: JoinHandle<()>,
    retention: Option<JoinHandle<()>>,
    directory: Option<JoinHandle<()>>,
    crl: Option<JoinHandle<()>>,
    metrics: Option<JoinHandle<()>>,
    dashboard: Option<JoinHandle<()>>,
}

impl Background {
    /// Starts the deadline watcher, retention, the metrics endpoint and the
    /// dashboard, and the watches of the directory, the CRL and the hub's
    /// own certificate.
    fn start(
        hub: &Arc<Hub>,
        metrics_endpoint: Option<(TcpListener, metrics_exporter_prometheus::PrometheusHandle)>,
        dashboard: Option<dashboard::DashboardSetup>,
        archive_sink: Option<Arc<dyn truc_store::ArchiveSink>>,
        security: &crate::SecuritySetup,
        verifier: &Arc<security::RevocableVerifier>,
        certificate_warning_days: u64,
    ) -> Background {
        let metrics = metrics_endpoint.map(|(listener, handle)| {
            tokio::spawn(operator::publish_queue_gauges(hub.clone()));
            tokio::spawn(observe::serve_metrics(
                listener,
                handle,
                hub.shutdown.clone(),
            ))
        });
        let dashboard = dashboard
            .map(|setup| tokio::spawn(dashboard::serve(hub.clone(), setup, hub.shutdown.clone())));
        let watcher = tokio::spawn(watcher::run(hub.clone()));
        let retention = archive_sink.map(|sink| tokio::spawn(retention::run(hub.clone(), sink)));
        tokio::spawn(certificates::watch_own(
            hub.audit_signer.0.clone(),
            hub.trust.clone(),
            certificate_warning_days,
            hub.shutdown.clone(),
        ));
        let directory = security.directory_reload.clone().map(|reload| {
            let weak = Arc::downgrade(hub);
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
        let crl = security.crl.clone().map(|crl| {
            tokio::spawn(security::watch_crl(
                verifier.clone(),
                crl,
                hub.shutdown.clone(),
            ))
        });
        Background {
            watcher,
            retention,
            directory,
            crl,
            metrics,
            dashboard,
        }
    }

    /// Stops everything in order once serving has ended: what writes to the
    /// store first, then a last checkpoint, then the rest; the metrics and
    /// dashboard ports are free again when this returns, like the Axis port.
    async fn stop(self, hub: &Hub) {
        // The watcher holds the store: it must let go before `run_observed` returns.
        stop_watcher(hub, self.watcher).await;
        if let Some(task) = self.retention {
            stop_watcher(hub, task).await;
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
        for task in [self.crl, self.directory].into_iter().flatten() {
            stop_watcher(hub, task).await;
        }
        if let Some(task) = self.metrics {
            let _ = task.await;
        }
        // The dashboard also holds the hub, and with it the store.
        if let Some(task) = self.dashboard {
            if !*hub.shutdown.borrow() {
                task.abort();
            }
            let _ = task.await;
        }
    }
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
