//! The accept loop of the hub's two small HTTP/1 servers, the metrics
//! endpoint and the dashboard: at most a fixed number of connections at
//! once (more are dropped, so that a flood of them cannot take the hub's
//! memory), each ended after a time limit, all ended when the hub stops.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

/// What one server allows.
pub(crate) struct Limits {
    /// Its name in log lines.
    pub name: &'static str,
    pub connections_max: usize,
    pub connection_timeout: Duration,
}

/// Serves `respond` on `listener` within `limits` until the hub stops, then
/// lets go of the port.
pub(crate) async fn serve<F, R>(
    listener: TcpListener,
    limits: Limits,
    mut stopping: watch::Receiver<bool>,
    respond: F,
) where
    F: Fn(Request<Incoming>) -> R + Clone + Send + Sync + 'static,
    R: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let name = limits.name;
    let slots = Arc::new(Semaphore::new(limits.connections_max));
    // Dropped at the end, which ends any request still in progress.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = crate::observe::stopped(&mut stopping) => return,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "{name}: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, "{name}: too many connections; dropped one");
                    continue;
                };
                let respond = respond.clone();
                let timeout = limits.connection_timeout;
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let response = respond(request);
                        async move { Ok::<_, Infallible>(response.await) }
                    });
                    let connection = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service);
                    if let Ok(Err(error)) = tokio::time::timeout(timeout, connection).await {
                        tracing::debug!(%peer, %error, "{name}: connection failed");
                    }
                    drop(slot);
                });
            }
        }
    }
}
