//! Finding out how a gRPC call ended, for metrics and spans.
//!
//! A call's status is in the `grpc-status` response header for a trailers-only response
//! (most errors), or in the trailers at the end of the body (successes and streaming). The
//! response body is wrapped so that the status is seen wherever it arrives, exactly once.

use std::{
    pin::Pin,
    task::{Context, Poll, ready},
};

use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use tonic::Code;

/// Called once with the call's final status.
pub(crate) type OnEnd = Box<dyn FnOnce(Code) + Send + 'static>;

/// The status in a `grpc-status` header, if there is one.
pub(crate) fn code_from_headers(headers: &HeaderMap) -> Option<Code> {
    let value = headers.get("grpc-status")?;
    let code = std::str::from_utf8(value.as_bytes())
        .ok()?
        .trim()
        .parse::<i32>()
        .ok()?;
    Some(Code::from_i32(code))
}

/// `/pkg.Service/Method` → (`pkg.Service`, `Method`).
pub(crate) fn split_path(path: &str) -> Option<(&str, &str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    (!service.is_empty() && !method.is_empty() && !method.contains('/')).then_some((service, method))
}

/// The canonical upper-case name of a code, as used in metrics labels (`NOT_FOUND`).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Maps a non-200 HTTP status (from a proxy, or a non-gRPC peer) as the gRPC spec says.
pub(crate) fn code_from_http(status: http::StatusCode) -> Code {
    match status.as_u16() {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502..=504 => Code::Unavailable,
        _ => Code::Unknown,
    }
}

/// Wraps a response so that `on_end` runs once with its final status: now if the headers carry
/// it, else when the trailers arrive, the body fails, or the body is dropped early
/// (`CANCELLED`). `span` is entered while the body is polled, so streaming handlers log in it.
pub(crate) fn observe_response<B>(
    response: http::Response<B>,
    span: tracing::Span,
    on_end: OnEnd,
) -> http::Response<ObservedBody<B>> {
    let code = if response.status() == http::StatusCode::OK {
        code_from_headers(response.headers())
    } else {
        Some(code_from_http(response.status()))
    };
    let on_end = match code {
        Some(code) => {
            on_end(code);
            None
        }
        None => Some(on_end),
    };
    response.map(|inner| ObservedBody { inner, on_end, span })
}

pin_project_lite::pin_project! {
    /// A response body that reports the call's status when it ends.
    pub struct ObservedBody<B> {
        #[pin]
        inner: B,
        on_end: Option<OnEnd>,
        span: tracing::Span,
    }

    impl<B> PinnedDrop for ObservedBody<B> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(on_end) = this.project().on_end.take() {
                on_end(Code::Cancelled);
            }
        }
    }
}

impl<B: Body> Body for ObservedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = {
            let _entered = this.span.enter();
            ready!(this.inner.poll_frame(cx))
        };
        let end = match &frame {
            Some(Ok(frame)) => frame
                .trailers_ref()
                .map(|t| code_from_headers(t).unwrap_or(Code::Unknown)),
            Some(Err(_)) => Some(Code::Unknown),
            // A gRPC response always ends with a status; its absence is a broken stream.
            None => Some(Code::Unknown),
        };
        // Take the callback only once the status is known: taking it earlier loses it.
        if let Some(code) = end
            && let Some(on_end) = this.on_end.take()
        {
            on_end(code);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_grpc_paths() {
        assert_eq!(
            split_path("/grpc.health.v1.Health/Check"),
            Some(("grpc.health.v1.Health", "Check"))
        );
        assert_eq!(split_path("/nope"), None);
        assert_eq!(split_path("/a/b/c"), None);
    }

    #[test]
    fn reads_status_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(code_from_headers(&h), None);
        h.insert("grpc-status", http::HeaderValue::from_static("5"));
        assert_eq!(code_from_headers(&h), Some(Code::NotFound));
        assert_eq!(code_name(Code::NotFound), "NOT_FOUND");
    }
}
