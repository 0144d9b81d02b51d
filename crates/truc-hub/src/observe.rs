//! What the hub shows to operators' tooling beside the Axis: gRPC health and
//! server reflection on the Axis port (mutual TLS like everything there),
//! and the Prometheus scrape endpoint on a port of its own (plain HTTP).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status};
use tonic_health::pb::health_check_response::ServingStatus as WireStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::{HealthReporter, HealthService};
use tonic_health::ServingStatus;
use truc_proto::v1 as pb;

use crate::error::RunError;

/// The gRPC name of the Axis service, as health checks ask for it.
pub const AXIS_SERVICE: &str = pb::axis_server::SERVICE_NAME;

/// The hub's readiness as the gRPC health protocol reports it: the Axis and
/// the server as a whole ("") are NOT_SERVING until [`Readiness::serving`]
/// and again from [`Readiness::stopping`] on.
#[derive(Clone)]
pub(crate) struct Readiness {
    reporter: HealthReporter,
}

impl Readiness {
    pub(crate) async fn new() -> Readiness {
        let readiness = Readiness {
            reporter: HealthReporter::new(),
        };
        readiness.set(ServingStatus::NotServing).await;
        readiness
    }

    /// Storage is open and the certificates are loaded.
    pub(crate) async fn serving(&self) {
        self.set(ServingStatus::Serving).await;
    }

    /// Follows the store: NOT_SERVING while it cannot take writes (a
    /// database engine that reaches no writable primary), SERVING again
    /// once it can, until the hub stops.
    pub(crate) fn follow_store(
        &self,
        store: truc_store::Store,
        mut stopping: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        const CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);
        let readiness = self.clone();
        tokio::spawn(async move {
            let mut writable = true;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(CHECK_INTERVAL) => {}
                    _ = stopping.changed() => return,
                }
                if *stopping.borrow() {
                    return;
                }
                let now = store.writable();
                if now != writable {
                    writable = now;
                    if writable {
                        tracing::info!("the database takes writes again: serving");
                        readiness.set(ServingStatus::Serving).await;
                    } else {
                        tracing::warn!("no writable database primary: not serving");
                        readiness.set(ServingStatus::NotServing).await;
                    }
                }
            }
        })
    }

    /// The hub has been told to stop; streams are about to end.
    pub(crate) async fn stopping(&self) {
        self.set(ServingStatus::NotServing).await;
    }

    async fn set(&self, status: ServingStatus) {
        self.reporter.set_service_status("", status).await;
        self.reporter.set_service_status(AXIS_SERVICE, status).await;
    }

    /// The `grpc.health.v1.Health` service over these statuses.
    pub(crate) fn service(&self, stopping: watch::Receiver<bool>) -> HealthServer<EndingHealth> {
        HealthServer::new(EndingHealth {
            inner: HealthService::from_health_reporter(self.reporter.clone()),
            stopping,
        })
    }
}

/// The standard health service, except that `Watch` streams end when the
/// hub stops, after a last NOT_SERVING: an open watch would otherwise hold
/// its connection, and with it the server's graceful shutdown, forever.
pub(crate) struct EndingHealth {
    inner: HealthService,
    stopping: watch::Receiver<bool>,
}

#[tonic::async_trait]
impl Health for EndingHealth {
    async fn check(
        &self,
        request: GrpcRequest<HealthCheckRequest>,
    ) -> Result<GrpcResponse<HealthCheckResponse>, Status> {
        self.inner.check(request).await
    }

    type WatchStream = ReceiverStream<Result<HealthCheckResponse, Status>>;

    async fn watch(
        &self,
        request: GrpcRequest<HealthCheckRequest>,
    ) -> Result<GrpcResponse<Self::WatchStream>, Status> {
        let mut statuses = self.inner.watch(request).await?.into_inner();
        let mut stopping = self.stopping.clone();
        let (sender, receiver) = mpsc::channel(1);
        tokio::spawn(async move {
            let not_serving = WireStatus::NotServing as i32;
            let mut last_sent = None;
            loop {
                tokio::select! {
                    // A status change already made is sent before the stream ends.
                    biased;
                    status = statuses.next() => {
                        let Some(status) = status else { return };
                        last_sent = status.as_ref().ok().map(|response| response.status);
                        if sender.send(status).await.is_err() {
                            return;
                        }
                    }
                    _ = stopped(&mut stopping) => {
                        if last_sent != Some(not_serving) {
                            let _ = sender
                                .send(Ok(HealthCheckResponse { status: not_serving }))
                                .await;
                        }
                        return;
                    }
                    _ = sender.closed() => return,
                }
            }
        });
        Ok(GrpcResponse::new(ReceiverStream::new(receiver)))
    }
}

/// Server reflection over the Axis and health descriptors, so that
/// grpcurl-style tools can list and describe the API without a copy of the
/// `.proto` files.
pub(crate) fn reflection_v1() -> Result<
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
    RunError,
> {
    reflection_builder().build_v1().map_err(reflection_error)
}

/// The same for tools that still speak the pre-standard v1alpha protocol.
pub(crate) fn reflection_v1alpha() -> Result<
    tonic_reflection::server::v1alpha::ServerReflectionServer<
        impl tonic_reflection::server::v1alpha::ServerReflection,
    >,
    RunError,
> {
    reflection_builder()
        .build_v1alpha()
        .map_err(reflection_error)
}

/// Both protocols describe both reflection services: left to itself, each
/// lists only its own, and a tool that asks v1alpha first concludes that v1
/// is not served (and the other way round).
fn reflection_builder() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .include_reflection_service(false)
        .register_encoded_file_descriptor_set(truc_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
}

fn reflection_error(source: tonic_reflection::server::Error) -> RunError {
    RunError::Reflection { source }
}

/// Resolves once the hub is stopping.
pub(crate) async fn stopped(stopping: &mut watch::Receiver<bool>) {
    // An error means the hub is gone altogether, which is stopping too.
    let _ = stopping.wait_for(|stopping| *stopping).await;
}

/// Scrape connections served at once; Prometheus needs one, the rest are for people.
const METRICS_CONNECTIONS_MAX: usize = 16;
/// A scrape connection that takes longer than this is dropped.
const METRICS_CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// Histogram samples are folded into their buckets this often, scraped or not.
const METRICS_UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Serves `GET /metrics` on `listener` until the hub stops, then lets go of the port.
pub(crate) async fn serve_metrics(
    listener: TcpListener,
    handle: PrometheusHandle,
    stopping: watch::Receiver<bool>,
) {
    // Histograms are folded whether or not anyone scrapes.
    let upkeep = {
        let handle = handle.clone();
        let mut stopping = stopping.clone();
        async move {
            let mut ticks = tokio::time::interval(METRICS_UPKEEP_INTERVAL);
            loop {
                tokio::select! {
                    _ = stopped(&mut stopping) => return,
                    _ = ticks.tick() => handle.run_upkeep(),
                }
            }
        }
    };
    let limits = crate::http::Limits {
        name: "metrics",
        connections_max: METRICS_CONNECTIONS_MAX,
        connection_timeout: METRICS_CONNECTION_TIMEOUT,
    };
    let serve = crate::http::serve(listener, limits, stopping, move |request| {
        let response = respond(&handle, &request);
        async move { response }
    });
    tokio::join!(upkeep, serve);
}

fn respond(handle: &PrometheusHandle, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            handle.render(),
        ),
        (_, "/metrics") => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "use GET\n".to_owned(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "the metrics are at /metrics\n".to_owned(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}
