//! Accepts TLS connections off the listener, each handshake in its own task
//! so that a slow or hostile client cannot hold up the others, and holds
//! each certificate identity to `connections.per_identity_max` open
//! connections: the address of a flood is whatever the attacker likes, the
//! certificate is the one thing it cannot multiply.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo, TlsConnectInfo};

use crate::security;

/// A handshake slower than this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Completed handshakes waiting for the server to take them.
const ACCEPTED_QUEUE_MAX: usize = 128;

/// Open connections per certificate identity.
type OpenConnections = Arc<Mutex<HashMap<String, u32>>>;

/// One accepted connection, counted against its identity until dropped.
pub(crate) struct CountedStream {
    inner: TlsStream<TcpStream>,
    _slot: ConnectionSlot,
}

struct ConnectionSlot {
    open: OpenConnections,
    identity: String,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.identity) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.identity);
            }
        }
    }
}

impl Connected for CountedStream {
    // The same as the bare TLS stream's, so that `Request::peer_certs` works.
    type ConnectInfo = TlsConnectInfo<TcpConnectInfo>;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl AsyncRead for CountedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Takes a slot for the connection's identity, or `None` over the limit.
fn take_slot(
    open: &OpenConnections,
    stream: &TlsStream<TcpStream>,
    per_identity_max: u32,
) -> Result<ConnectionSlot, (String, u32)> {
    // The verifier required a certificate; its truc URI (or, failing that,
    // the whole certificate) is what one identity is.
    let identity = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certificates| certificates.first())
        .map(|certificate| match truc_pki::peer_identity(certificate) {
            Ok(identity) => identity.role.uri(),
            Err(_) => format!(
                "certificate {}",
                hex::encode(crate::intake::sha256(certificate))
            ),
        })
        .unwrap_or_else(|| "no certificate".into());
    let mut counts = open.lock().unwrap_or_else(|p| p.into_inner());
    let count = counts.entry(identity.clone()).or_default();
    if *count >= per_identity_max {
        return Err((identity, *count));
    }
    *count += 1;
    Ok(ConnectionSlot {
        open: open.clone(),
        identity,
    })
}

pub(crate) fn incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    per_identity_max: u32,
) -> ReceiverStream<Result<CountedStream, std::io::Error>> {
    let acceptor = TlsAcceptor::from(config);
    let open = OpenConnections::default();
    let (sender, receiver) = mpsc::channel(ACCEPTED_QUEUE_MAX);
    tokio::spawn(async move {
        loop {
            // The listener is dropped (and its port freed) once the server stops taking connections.
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = sender.closed() => return,
            };
            let (tcp, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let sender = sender.clone();
            let open = open.clone();
            tokio::spawn(async move {
                let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
                let (outcome, reported) = security::with_peer(peer, handshake).await;
                match outcome {
                    Ok(Ok(stream)) => match take_slot(&open, &stream, per_identity_max) {
                        Ok(slot) => {
                            let stream = CountedStream {
                                inner: stream,
                                _slot: slot,
                            };
                            let _ = sender.send(Ok(stream)).await;
                        }
                        // Dropping the stream closes the connection.
                        Err((identity, count)) => security::event(
                            "connection_limit",
                            &identity,
                            "connection closed",
                            &format!(
                                "from {peer}: {count} connections already open; at most \
                                 {per_identity_max} (connections.per_identity_max)"
                            ),
                        ),
                    },
                    // The verifier has already reported a refused certificate.
                    Ok(Err(_)) if reported => {}
                    Ok(Err(error)) => {
                        let kind = error
                            .get_ref()
                            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                            .map_or("handshake_failed", security::handshake_kind);
                        security::event(
                            kind,
                            &format!("peer {peer}"),
                            "handshake refused",
                            &error.to_string(),
                        );
                    }
                    Err(_) => security::event(
                        "handshake_timeout",
                        &format!("peer {peer}"),
                        "handshake dropped",
                        &format!("no handshake within {HANDSHAKE_TIMEOUT:?}"),
                    ),
                }
            });
        }
    });
    ReceiverStream::new(receiver)
}
