//! Every refusal the Axis port answers, logged and counted once, here, on
//! its way out, whatever made it: the one `HubError → Status` mapping, a
//! status a service builds itself, tonic's own (an unknown method), health,
//! reflection, the security layer's refusal of a revoked certificate, or the
//! decoding refusals `malformed.rs` rewrites (counted as rewritten).
//!
//! Where the status is: a unary call's refusal, and a stream refused before
//! its first message, are trailers-only answers, with the status in the
//! response's headers. A stream that ends on an error carries it in its
//! trailers, read as they pass. A stream the client abandons ends without
//! trailers and counts nothing; neither does an answer whose status is OK.
//!
//! Refusals go to `truc_refusals_total{code}`. INTERNAL and UNAVAILABLE are
//! logged as errors (a storage failure when the mapping marked it so); a
//! full disk, marked by the mapping too, as a warning. The mark
//! ([`CAUSE_KEY`]) is removed before the answer leaves.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tonic::body::Body;
use tonic::codegen::http;
use tonic::{Code, Status};

use crate::error::{Cause, CAUSE_KEY};
use crate::metrics;

/// The server layer; outermost, so that it sees the other layers' refusals.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RefusalLayer;

impl<S> tower::Layer<S> for RefusalLayer {
    type Service = Refusals<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Refusals { inner }
    }
}

#[derive(Clone)]
pub(crate) struct Refusals<S> {
    inner: S,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for Refusals<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request.uri().path().to_owned();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let mut response = answer.await?;
            if response.headers().contains_key(Status::GRPC_STATUS) {
                // Trailers-only: the whole answer is the status.
                report(&method, response.headers_mut());
                return Ok(response);
            }
            Ok(response.map(|body| {
                Body::new(WatchedBody {
                    inner: body,
                    method: Some(method),
                })
            }))
        })
    }
}

/// A response body passed on as it is, whose trailers are reported once.
struct WatchedBody {
    inner: Body,
    /// Taken when the trailers are reported.
    method: Option<String>,
}

impl HttpBody for WatchedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let mut polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &mut polled {
            if let Some(trailers) = frame.trailers_mut() {
                if let Some(method) = self.method.take() {
                    report(&method, trailers);
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Logs and counts the status in `headers` (headers of a trailers-only
/// answer, or trailers) unless it is OK, and removes the mapping's mark.
fn report(method: &str, headers: &mut http::HeaderMap) {
    let cause = headers
        .remove(CAUSE_KEY)
        .and_then(|value| value.to_str().ok().and_then(Cause::from_name));
    let Some(status) = Status::from_header_map(headers) else {
        return;
    };
    let code = status.code();
    if code == Code::Ok {
        return;
    }
    metrics::refused(code);
    let message = status.message();
    match (code, cause) {
        (_, Some(Cause::StorageFull)) => {
            tracing::warn!(
                method,
                ?code,
                reason = message,
                "storage full: call refused"
            )
        }
        (Code::Internal | Code::Unavailable, Some(Cause::Storage)) => {
            tracing::error!(method, ?code, reason = message, "storage failure")
        }
        (Code::Internal | Code::Unavailable, _) => {
            tracing::error!(
                method,
                ?code,
                reason = message,
                "call failed on the hub's side"
            )
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HubError;
    use truc_store::StoreError;

    fn trailers_of(error: HubError) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        Status::from(error)
            .add_header(&mut headers)
            .expect("a status makes headers");
        headers
    }

    #[test]
    fn the_mark_of_a_full_disk_or_a_storage_failure_does_not_leave_the_hub() {
        for (error, cause) in [
            (
                HubError::Store(StoreError::StorageFull {
                    reason: "0 bytes free".into(),
                }),
                "storage-full",
            ),
            (HubError::Store(StoreError::WriterGone), "storage"),
        ] {
            let mut headers = trailers_of(error);
            assert_eq!(
                headers.get(CAUSE_KEY).and_then(|v| v.to_str().ok()),
                Some(cause)
            );
            report("/truc.v1.Axis/Send", &mut headers);
            assert!(!headers.contains_key(CAUSE_KEY), "{headers:?}");
            assert!(headers.contains_key(Status::GRPC_STATUS));
        }
        // A caller's mistake carries no mark at all.
        let headers = trailers_of(HubError::invalid("document_id", "not an id"));
        assert!(!headers.contains_key(CAUSE_KEY), "{headers:?}");
    }
}
