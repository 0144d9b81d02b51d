//! Requests that do not decode are refused like every other bad input:
//! INVALID_ARGUMENT (RESOURCE_EXHAUSTED past the message limit) with a
//! message that starts with the field. tonic refuses them itself, before any
//! handler runs, with INTERNAL or OUT_OF_RANGE, which tells a client the hub
//! failed rather than its request; this layer rewrites those refusals on the
//! way out and nothing else. Streams (Send, Deliveries) see decoding errors
//! inside their handlers and map them there.

use tonic::body::Body;
use tonic::codegen::http;
use tonic::{Code, Status};

type Rewrite = fn(http::Response<Body>) -> http::Response<Body>;

/// The server layer.
pub(crate) fn layer() -> tower::util::MapResponseLayer<Rewrite> {
    tower::util::MapResponseLayer::new(rewrite as Rewrite)
}

fn rewrite(mut response: http::Response<Body>) -> http::Response<Body> {
    // A refusal made before the handler ran travels in the headers
    // (a trailers-only response); answers of handlers are left alone.
    let Some(status) = Status::from_header_map(response.headers()) else {
        return response;
    };
    if let Some(replacement) = replacement(&status) {
        let headers = response.headers_mut();
        headers.remove(Status::GRPC_STATUS_DETAILS);
        if replacement.add_header(headers).is_err() {
            tracing::warn!(%status, "could not rewrite a decoding refusal");
        }
    }
    response
}

/// The refusal a request deserves when `status` is tonic's own decoding
/// failure; `None` for anything else.
pub(crate) fn replacement(status: &Status) -> Option<Status> {
    const PROTOBUF: &str = "failed to decode Protobuf message: ";
    let message = status.message();
    match status.code() {
        Code::Internal if message.starts_with(PROTOBUF) => {
            let field = field_named(&message[PROTOBUF.len()..]).unwrap_or("request");
            Some(Status::invalid_argument(format!("{field}: {message}")))
        }
        Code::Internal
            if message.starts_with("protocol error: ")
                || message == "Unexpected EOF decoding stream."
                || message == "Missing request message." =>
        {
            Some(Status::invalid_argument(format!("request: {message}")))
        }
        Code::OutOfRange if message.contains("decoded message length too large") => {
            Some(Status::resource_exhausted(format!("request: {message}")))
        }
        _ => None,
    }
}

/// prost names the innermost field first, as `Message.field: `; errors
/// outside any field (a bad tag, a cut varint) name none.
fn field_named(detail: &str) -> Option<&str> {
    let (path, _) = detail.split_once(": ")?;
    let (message, field) = path.split_once('.')?;
    let field = field.strip_prefix("r#").unwrap_or(field);
    let is_name = |text: &str| {
        !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    (is_name(message) && is_name(field)).then_some(field)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_refusals_name_the_field_or_the_request() {
        let cases = [
            (
                Status::internal("failed to decode Protobuf message: MoveStatusRequest.document_id: invalid string value: data is not UTF-8 encoded"),
                Code::InvalidArgument,
                "document_id: ",
            ),
            (
                Status::internal("failed to decode Protobuf message: DocumentType.r#type: EnvelopeHeader.document_type: invalid wire type"),
                Code::InvalidArgument,
                "type: ",
            ),
            (
                Status::internal("failed to decode Protobuf message: invalid tag value: 0"),
                Code::InvalidArgument,
                "request: ",
            ),
            (
                Status::internal("failed to decode Protobuf message: buffer underflow"),
                Code::InvalidArgument,
                "request: ",
            ),
            (
                Status::internal("Missing request message."),
                Code::InvalidArgument,
                "request: ",
            ),
            (
                Status::out_of_range("Error, decoded message length too large: found 9 bytes, the limit is: 1 bytes"),
                Code::ResourceExhausted,
                "request: ",
            ),
        ];
        for (status, code, start) in cases {
            let replaced = replacement(&status).expect("a decoding refusal");
            assert_eq!(replaced.code(), code, "{status:?}");
            assert!(replaced.message().starts_with(start), "{replaced:?}");
            assert!(replaced.message().ends_with(status.message()));
        }
    }

    #[test]
    fn other_refusals_are_left_alone() {
        for status in [
            Status::internal("stored record is corrupt"),
            Status::out_of_range("something else"),
            Status::invalid_argument("failed to decode Protobuf message: x.y: z"),
            Status::not_found("document_id: not on the axis"),
        ] {
            assert!(replacement(&status).is_none(), "{status:?}");
        }
    }
}
