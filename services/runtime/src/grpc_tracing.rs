//! Spans for gRPC calls, linked across processes by W3C trace context in the request headers.
//!
//! Server side, [`ServerTraceLayer`] extracts the caller's context from every request and opens
//! a server span named after the method. Client side, [`ClientTraceLayer`] opens a client span
//! under the current span and injects its context into every outgoing request. Both follow the
//! OpenTelemetry RPC conventions (`rpc.system`, `rpc.service`, `rpc.method`,
//! `rpc.grpc.status_code`) and put `service.version` on the span.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use opentelemetry::propagation::{Extractor, Injector};
use tonic::Code;
use tower::{Layer, Service};
use tracing::{Instrument, Span, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::observe::{ObservedBody, observe_response, split_path};

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// Codes that mean the server failed, per the OpenTelemetry gRPC conventions for server spans;
/// the others (NOT_FOUND, INVALID_ARGUMENT, ...) are the caller's problem, not an error here.
fn is_server_error(code: Code) -> bool {
    matches!(
        code,
        Code::Unknown
            | Code::DeadlineExceeded
            | Code::Unimplemented
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss
    )
}

fn record_status(span: &Span, code: Code, error: bool) {
    span.record("rpc.grpc.status_code", code as i64);
    if error {
        span.record("otel.status_code", "ERROR");
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Tower layer for the gRPC server: one server span per call, child of the caller's span.
#[derive(Clone)]
pub struct ServerTraceLayer {
    version: Arc<str>,
}

impl ServerTraceLayer {
    pub fn new(service_version: &str) -> Self {
        Self {
            version: service_version.into(),
        }
    }
}

impl<S> Layer<S> for ServerTraceLayer {
    type Service = ServerTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ServerTrace {
            inner,
            version: self.version.clone(),
        }
    }
}

/// The service made by [`ServerTraceLayer`].
#[derive(Clone)]
pub struct ServerTrace<S> {
    inner: S,
    version: Arc<str>,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for ServerTrace<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = http::Response<ObservedBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let path = request.uri().path();
        let (service, method) = split_path(path).unwrap_or(("unknown", "unknown"));
        let span = tracing::info_span!(
            "grpc.server",
            otel.name = %path.trim_start_matches('/'),
            otel.kind = "server",
            otel.status_code = Empty,
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = Empty,
            service.version = %self.version,
        );
        let parent = opentelemetry::global::get_text_map_propagator(|p| {
            p.extract(&HeaderExtractor(request.headers()))
        });
        // Must happen before the span is first entered (tracing-opentelemetry 0.34).
        if let Err(e) = span.set_parent(parent) {
            tracing::debug!(error = ?e, "cannot set the caller's trace context as parent");
        }
        let future = self.inner.call(request).instrument(span.clone());
        Box::pin(async move {
            let response = future.await?;
            let end_span = span.clone();
            let on_end = Box::new(move |code: Code| record_status(&end_span, code, is_server_error(code)));
            Ok(observe_response(response, span, on_end))
        })
    }
}

/// Tower layer for clients: a client span per call, under the current span, whose context is
/// injected as `traceparent`. [`crate::balance`] channels already have it.
#[derive(Clone, Default)]
pub struct ClientTraceLayer {
    version: Option<Arc<str>>,
}

impl ClientTraceLayer {
    /// `service_version`: put on client spans too, if given.
    pub fn new(service_version: Option<&str>) -> Self {
        Self {
            version: service_version.map(Arc::from),
        }
    }
}

impl<S> Layer<S> for ClientTraceLayer {
    type Service = ClientTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientTrace {
            inner,
            version: self.version.clone(),
        }
    }
}

/// The service made by [`ClientTraceLayer`]; generated tonic clients accept it as a channel.
#[derive(Clone, Debug)]
pub struct ClientTrace<S> {
    inner: S,
    version: Option<Arc<str>>,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for ClientTrace<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = http::Response<ObservedBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        let path = request.uri().path().to_owned();
        let (service, method) = split_path(&path).unwrap_or(("unknown", "unknown"));
        let span = tracing::info_span!(
            "grpc.client",
            otel.name = %path.trim_start_matches('/'),
            otel.kind = "client",
            otel.status_code = Empty,
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = Empty,
            service.version = Empty,
        );
        if let Some(version) = &self.version {
            span.record("service.version", &**version);
        }
        let cx = span.context();
        opentelemetry::global::get_text_map_propagator(|p| {
            p.inject_context(&cx, &mut HeaderInjector(request.headers_mut()))
        });
        let future = self.inner.call(request).instrument(span.clone());
        Box::pin(async move {
            match future.await {
                Ok(response) => {
                    let end_span = span.clone();
                    let on_end = Box::new(move |code: Code| record_status(&end_span, code, code != Code::Ok));
                    Ok(observe_response(response, span, on_end))
                }
                Err(e) => {
                    // Transport failure (no connection): tonic reports it as UNAVAILABLE.
                    record_status(&span, Code::Unavailable, true);
                    Err(e)
                }
            }
        })
    }
}
