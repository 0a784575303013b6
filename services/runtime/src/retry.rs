//! Which failed calls may be sent again, and the channel's transparent retry of calls the server
//! provably never saw.
//!
//! A server closing a connection (maximum connection age, shutdown) sends GOAWAY; a client can
//! still put a call on that connection in the moment before it learns of it. hyper then fails
//! the call with CANCELLED ("operation was canceled": the call was still queued for the
//! connection's task when that task ended) or h2 fails it with INTERNAL (a GOAWAY naming a last
//! stream below the call's). Neither call reached the server's application, whatever its
//! method, so the channel sends it again on another connection, as gRPC's own transparent retry
//! does (gRFC A6). So does a call that found no connection to go on (a connect error). Failures
//! after which the server may have run the call (a connection cut mid-call, a reset stream, a
//! deadline) are left to the caller: see [`is_transport_failure`].

use std::{
    error::Error as StdError,
    future::Ready,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use futures::{FutureExt, StreamExt, stream};
use http_body_util::{BodyExt, BodyStream, Full, StreamBody};
use tonic::{Code, Status, body::Body};
use tower::{Service, retry::Policy};

use crate::balance::call_deadline;

/// How many times the channel sends a call again after a failure that proves the server never
/// saw it (each attempt goes to whichever connection the balancer picks then).
pub const TRANSPARENT_RETRIES: usize = 3;

/// A request body at most this large, and ready when the call is made (a unary request is), is
/// kept so that the call can be sent again; a larger or streaming one is sent as is, once.
const MAX_REPLAYABLE_BODY: usize = 64 * 1024;

/// True if `error` (a channel's error or anything in its source chain) proves that the request
/// never reached the server's application, so that sending it again cannot run it twice:
/// - tonic's connect error: no connection to send it on (e.g. an address that stopped
///   listening but is still resolved);
/// - hyper's "operation was canceled": the request was still in the queue of a connection whose
///   task had ended (or the connection was not ready), so it was never written;
/// - an h2 GOAWAY received with NO_ERROR, as the stream's own error: h2 gives it to the streams
///   above the GOAWAY's last stream id and to streams opened after it, which the server
///   promises not to have processed (RFC 9113 §6.8); a stream cut by the connection closing
///   gets an I/O error instead, and a GOAWAY with an error code does not count;
/// - a stream reset by the server with REFUSED_STREAM, which means the same (RFC 9113 §8.7).
pub fn never_processed(error: &(dyn StdError + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(e) = source {
        if e.is::<tonic::ConnectError>() {
            return true;
        }
        if let Some(hyper) = e.downcast_ref::<hyper::Error>()
            && hyper.is_canceled()
        {
            return true;
        }
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            return h2_never_processed(h2);
        }
        source = e.source();
    }
    false
}

fn h2_never_processed(e: &h2::Error) -> bool {
    let reason = e.reason();
    e.is_remote()
        && ((e.is_go_away() && reason == Some(h2::Reason::NO_ERROR))
            || (e.is_reset() && reason == Some(h2::Reason::REFUSED_STREAM)))
}

/// True if `status` came from the client's transport rather than from the server's answer:
/// UNAVAILABLE (no connection, no healthy address, or the server saying it cannot serve), or a
/// CANCELLED, INTERNAL or UNKNOWN made on the client out of a connection or stream failure.
/// The server may or may not have run such a call: send it again only if the method is
/// idempotent (e.g. by an idempotency key). A deadline that passed (CANCELLED out of
/// tonic's timeout) and any status the server sent are not transport failures.
pub fn is_transport_failure(status: &Status) -> bool {
    match status.code() {
        Code::Unavailable => true,
        Code::Cancelled | Code::Internal | Code::Unknown => {
            let mut source = StdError::source(status);
            let mut transport = false;
            while let Some(e) = source {
                if e.is::<tonic::TimeoutExpired>() {
                    return false;
                }
                transport |= e.is::<hyper::Error>() || e.is::<h2::Error>() || e.is::<std::io::Error>();
                source = e.source();
            }
            transport
        }
        _ => false,
    }
}

/// Kept in a request's extensions when its body could be read whole up front: the body, and
/// when the call's deadline passes (no attempt starts after it).
#[derive(Clone, Debug)]
struct Replay {
    body: Bytes,
    deadline: Instant,
}

/// [`tower::retry::Policy`] of the channel: sends a call again, at once, up to
/// [`TRANSPARENT_RETRIES`] times and within the call's deadline (the next attempt's
/// `grpc-timeout` is what is left of it), when [`never_processed`] says its failure proves that
/// the server never saw it, and its body was kept by [`Replayable`].
#[derive(Clone, Debug)]
pub struct TransparentRetry {
    left: usize,
}

impl Default for TransparentRetry {
    fn default() -> Self {
        Self {
            left: TRANSPARENT_RETRIES,
        }
    }
}

impl<Res, E> Policy<http::Request<Body>, Res, E> for TransparentRetry
where
    E: StdError + 'static,
{
    type Future = Ready<()>;

    fn retry(&mut self, request: &mut http::Request<Body>, result: &mut Result<Res, E>) -> Option<Ready<()>> {
        let Err(error) = result else {
            return None;
        };
        if self.left == 0 || !never_processed(error) {
            return None;
        }
        let left = request
            .extensions()
            .get::<Replay>()?
            .deadline
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())?;
        request.headers_mut().insert("grpc-timeout", grpc_timeout(left));
        self.left -= 1;
        tracing::debug!(path = request.uri().path(), %error, left = self.left,
            "call never reached the server; sending it again");
        Some(std::future::ready(()))
    }

    fn clone_request(&mut self, request: &http::Request<Body>) -> Option<http::Request<Body>> {
        let body = request.extensions().get::<Replay>()?.body.clone();
        let mut copy = http::Request::new(Body::new(Full::new(body)));
        *copy.method_mut() = request.method().clone();
        *copy.uri_mut() = request.uri().clone();
        *copy.version_mut() = request.version();
        *copy.headers_mut() = request.headers().clone();
        *copy.extensions_mut() = request.extensions().clone();
        Some(copy)
    }
}

/// `grpc-timeout` for `left` (in milliseconds, at least 1, at most 8 digits).
fn grpc_timeout(left: Duration) -> http::HeaderValue {
    let ms = left.as_millis().clamp(1, 99_999_999);
    http::HeaderValue::from_str(&format!("{ms}m")).expect("digits and a letter")
}

/// Reads as much of each request's body as is ready at once; when that is all of it (a unary
/// call's message), keeps the bytes in the request's extensions, with the call's deadline
/// (its `grpc-timeout`, at most `default_deadline`), so that [`TransparentRetry`] can send the
/// call again. Otherwise (a stream still being written) sends what was read and the rest as
/// they come, and the call is not retried.
#[derive(Clone, Debug)]
pub struct Replayable<S> {
    inner: S,
    default_deadline: Duration,
}

impl<S> Replayable<S> {
    pub fn new(inner: S, default_deadline: Duration) -> Self {
        Self {
            inner,
            default_deadline,
        }
    }
}

impl<S> Service<http::Request<Body>> for Replayable<S>
where
    S: Service<http::Request<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let (mut parts, body) = request.into_parts();
        let body = match read_ready(body) {
            Read::Whole(bytes) => {
                let deadline = Instant::now() + call_deadline(&parts.headers, self.default_deadline);
                parts.extensions.insert(Replay {
                    body: bytes.clone(),
                    deadline,
                });
                Body::new(Full::new(bytes))
            }
            Read::Partly { read, rest } => {
                let read = (!read.is_empty()).then(|| Ok::<_, Status>(http_body::Frame::data(read)));
                Body::new(StreamBody::new(stream::iter(read).chain(BodyStream::new(rest))))
            }
        };
        self.inner.call(http::Request::from_parts(parts, body))
    }
}

enum Read {
    Whole(Bytes),
    /// What was read (data only), and the body still to read.
    Partly {
        read: Bytes,
        rest: Body,
    },
}

/// Reads the data frames that are ready now, up to [`MAX_REPLAYABLE_BODY`] bytes; stops at a
/// frame that is not ready, at trailers and at an error, leaving them in `rest`.
fn read_ready(mut body: Body) -> Read {
    let mut read = BytesMut::new();
    loop {
        if http_body::Body::is_end_stream(&body) {
            return Read::Whole(read.freeze());
        }
        if read.len() > MAX_REPLAYABLE_BODY {
            break;
        }
        match body.frame().now_or_never() {
            Some(None) => return Read::Whole(read.freeze()),
            Some(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => read.extend_from_slice(&data),
                Err(frame) => {
                    // Trailers: keep them for the rest of the body.
                    let trailers = stream::once(std::future::ready(Ok::<_, Status>(frame)));
                    return Read::Partly {
                        read: read.freeze(),
                        rest: Body::new(StreamBody::new(trailers.chain(BodyStream::new(body)))),
                    };
                }
            },
            Some(Some(Err(status))) => {
                let failed = stream::once(std::future::ready(Err::<http_body::Frame<Bytes>, _>(status)));
                return Read::Partly {
                    read: read.freeze(),
                    rest: Body::new(StreamBody::new(failed)),
                };
            }
            None => break,
        }
    }
    Read::Partly {
        read: read.freeze(),
        rest: body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clone_request(request: &http::Request<Body>) -> Option<http::Request<Body>> {
        Policy::<_, (), std::io::Error>::clone_request(&mut TransparentRetry::default(), request)
    }

    fn h2_reset(reason: h2::Reason) -> h2::Error {
        reason.into()
    }

    #[test]
    fn only_failures_proving_the_call_unseen_are_retried_transparently() {
        // A reason with no frame behind it is the client's own (not remote): not proof.
        assert!(!never_processed(&h2_reset(h2::Reason::REFUSED_STREAM)));
        assert!(!never_processed(&h2_reset(h2::Reason::NO_ERROR)));
        let io = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "stream closed");
        assert!(!never_processed(&io));
        let status = Status::unavailable("no healthy address");
        assert!(!never_processed(&status));
        assert!(!never_processed(&tonic::TimeoutExpired(())));
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(never_processed(&tonic::ConnectError(Box::new(refused))));
    }

    #[test]
    fn transport_failures_are_told_apart_from_answers_and_deadlines() {
        // Statuses the server sent carry no source.
        assert!(is_transport_failure(&Status::unavailable("draining")));
        assert!(!is_transport_failure(&Status::internal("internal error")));
        assert!(!is_transport_failure(&Status::cancelled("the server gave up")));
        assert!(!is_transport_failure(&Status::invalid_argument("amount")));
        assert!(!is_transport_failure(&Status::already_exists("key")));
        assert!(!is_transport_failure(&Status::deadline_exceeded("slow")));
        // Made on the client out of an h2 or I/O failure.
        let h2 = Status::from_error(Box::new(h2_reset(h2::Reason::INTERNAL_ERROR)));
        assert_eq!(h2.code(), Code::Internal);
        assert!(is_transport_failure(&h2));
        let cancel = Status::from_error(Box::new(h2_reset(h2::Reason::CANCEL)));
        assert_eq!(cancel.code(), Code::Cancelled);
        assert!(is_transport_failure(&cancel));
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let io = Status::from_error(Box::new(io));
        assert_eq!(io.code(), Code::Unknown);
        assert!(is_transport_failure(&io));
        // tonic's client deadline comes back as CANCELLED: a deadline, not a transport failure.
        let late = Status::from_error(Box::new(tonic::TimeoutExpired(())));
        assert_eq!(late.code(), Code::Cancelled);
        assert!(!is_transport_failure(&late));
    }

    #[tokio::test]
    async fn a_ready_body_is_kept_whole_and_a_pending_one_passes_through() {
        let whole = Body::new(Full::new(Bytes::from_static(b"\0\0\0\0\x02hi")));
        match read_ready(whole) {
            Read::Whole(bytes) => assert_eq!(&bytes[..], b"\0\0\0\0\x02hi"),
            Read::Partly { .. } => panic!("a full body is ready at once"),
        }

        let (tx, rx) = tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, Status>>(4);
        tx.send(Ok(http_body::Frame::data(Bytes::from_static(b"ab"))))
            .await
            .unwrap();
        let streaming = Body::new(StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx)));
        let Read::Partly { read, rest } = read_ready(streaming) else {
            panic!("a stream still being written cannot be read whole");
        };
        assert_eq!(&read[..], b"ab");
        tx.send(Ok(http_body::Frame::data(Bytes::from_static(b"cd"))))
            .await
            .unwrap();
        drop(tx);
        let rest = rest.collect().await.unwrap().to_bytes();
        assert_eq!(&rest[..], b"cd");
    }

    #[test]
    fn a_kept_body_makes_an_identical_copy_and_only_then() {
        let mut channel = Replayable::new(
            tower::service_fn(|r: http::Request<Body>| async move { Ok::<_, std::convert::Infallible>(r) }),
            Duration::from_secs(10),
        );
        let request = http::Request::post("http://a/payplane.test.v1.EchoService/Echo")
            .header("grpc-timeout", "1S")
            .body(Body::new(Full::new(Bytes::from_static(b"\0\0\0\0\x01x"))))
            .unwrap();
        let sent = channel.call(request).now_or_never().unwrap().unwrap();
        let copy = clone_request(&sent).expect("a kept body");
        assert_eq!(copy.uri(), sent.uri());
        assert_eq!(copy.method(), sent.method());
        assert_eq!(copy.headers(), sent.headers());
        let body = copy.into_body().collect().now_or_never().unwrap().unwrap();
        assert_eq!(&body.to_bytes()[..], b"\0\0\0\0\x01x");

        let plain = http::Request::new(Body::empty());
        assert!(clone_request(&plain).is_none());
    }

    fn sent(grpc_timeout: &str) -> http::Request<Body> {
        let mut channel = Replayable::new(
            tower::service_fn(|r: http::Request<Body>| async move { Ok::<_, std::convert::Infallible>(r) }),
            Duration::from_secs(10),
        );
        let request = http::Request::post("http://a/payplane.test.v1.EchoService/Echo")
            .header("grpc-timeout", grpc_timeout)
            .body(Body::new(Full::new(Bytes::from_static(b"\0\0\0\0\x01x"))))
            .unwrap();
        channel.call(request).now_or_never().unwrap().unwrap()
    }

    fn refused() -> Result<(), tonic::ConnectError> {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        Err(tonic::ConnectError(Box::new(refused)))
    }

    #[test]
    fn the_policy_retries_at_most_three_times_within_the_deadline() {
        let mut request = sent("5S");
        let mut policy = TransparentRetry::default();
        for _ in 0..TRANSPARENT_RETRIES {
            assert!(policy.retry(&mut request, &mut refused()).is_some());
        }
        assert!(
            policy.retry(&mut request, &mut refused()).is_none(),
            "three at most"
        );
        // The next attempt gets what is left of the deadline.
        let left: u64 = request.headers()["grpc-timeout"]
            .to_str()
            .unwrap()
            .strip_suffix('m')
            .unwrap()
            .parse()
            .unwrap();
        assert!((4000..=5000).contains(&left), "{left} ms left");

        let mut ok: Result<(), tonic::ConnectError> = Ok(());
        assert!(TransparentRetry::default().retry(&mut request, &mut ok).is_none());
        // A failure after which the server may have run the call is not retried here.
        let mut cut: Result<(), std::io::Error> = Err(std::io::ErrorKind::BrokenPipe.into());
        assert!(
            TransparentRetry::default()
                .retry(&mut request, &mut cut)
                .is_none()
        );

        let mut late = sent("1m");
        std::thread::sleep(Duration::from_millis(5));
        assert!(
            TransparentRetry::default()
                .retry(&mut late, &mut refused())
                .is_none(),
            "past its deadline"
        );
        let mut streaming = http::Request::new(Body::empty());
        assert!(
            TransparentRetry::default()
                .retry(&mut streaming, &mut refused())
                .is_none(),
            "no kept body"
        );
    }
}
