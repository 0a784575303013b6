//! Prometheus metrics: one registry per service (served on the admin port) and a tower layer
//! that records every gRPC call by method and status code.
//!
//! Metric names follow go-grpc-prometheus, so existing dashboards and PromQL carry over:
//! `grpc_server_started_total`, `grpc_server_handled_total{grpc_code}` and
//! `grpc_server_handling_seconds`, each labelled `grpc_service`, `grpc_method`, and (through the
//! registry's constant labels, which every metric in it gets) `service` and `version`.

use std::{
    borrow::Cow,
    collections::HashSet,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll},
    time::Instant,
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::{Registry, Unit},
};
use tonic::Code;
use tower::{Layer, Service};

use crate::observe::{ObservedBody, code_name, observe_response, split_path};

/// Latency buckets in seconds: 1 ms to 10 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    grpc_service: String,
    grpc_method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    grpc_service: String,
    grpc_method: String,
    grpc_code: &'static str,
}

/// The service's metrics registry, cheap to clone. Register service metrics with
/// [`Metrics::registry`]; they get the `service` and `version` labels too.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Mutex<Registry>,
    started: Family<MethodLabels, Counter>,
    handled: Family<CodeLabels, Counter>,
    handling: Family<CodeLabels, Histogram>,
}

impl Metrics {
    pub fn new(service: &str, version: &str) -> Self {
        let labels: [(Cow<'static, str>, Cow<'static, str>); 2] = [
            (Cow::Borrowed("service"), Cow::Owned(service.to_owned())),
            (Cow::Borrowed("version"), Cow::Owned(version.to_owned())),
        ];
        let mut registry = Registry::with_labels(labels.into_iter());
        let started = Family::<MethodLabels, Counter>::default();
        let handled = Family::<CodeLabels, Counter>::default();
        let handling = Family::<CodeLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(LATENCY_BUCKETS)) as fn() -> Histogram,
        );
        registry.register(
            "grpc_server_started",
            "gRPC calls started on the server",
            started.clone(),
        );
        registry.register(
            "grpc_server_handled",
            "gRPC calls completed on the server, by status code",
            handled.clone(),
        );
        registry.register_with_unit(
            "grpc_server_handling",
            "Time from request to the call's final status",
            Unit::Seconds,
            handling.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry: Mutex::new(registry),
                started,
                handled,
                handling,
            }),
        }
    }

    /// The registry, for registering a service's own metrics at start-up.
    pub fn registry(&self) -> MutexGuard<'_, Registry> {
        // A panic while registering leaves the registry usable; don't poison /metrics with it.
        self.inner
            .registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The OpenMetrics text exposition of everything registered.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry())?;
        Ok(out)
    }

    fn record_start(&self, service: &str, method: &str) {
        let labels = MethodLabels {
            grpc_service: service.to_owned(),
            grpc_method: method.to_owned(),
        };
        self.inner.started.get_or_create(&labels).inc();
    }

    fn record_end(&self, service: String, method: String, code: Code, seconds: f64) {
        let labels = CodeLabels {
            grpc_service: service,
            grpc_method: method,
            grpc_code: code_name(code),
        };
        self.inner.handled.get_or_create(&labels).inc();
        self.inner.handling.get_or_create(&labels).observe(seconds);
    }
}

/// Tower layer for the gRPC server recording the metrics above. Calls to services not in
/// `known` are recorded as `unknown`/`unknown`, so that random paths cannot blow up the
/// label cardinality.
#[derive(Clone)]
pub struct GrpcMetricsLayer {
    metrics: Metrics,
    known: Arc<HashSet<String>>,
}

impl GrpcMetricsLayer {
    pub fn new(metrics: Metrics, known_services: impl IntoIterator<Item = String>) -> Self {
        Self {
            metrics,
            known: Arc::new(known_services.into_iter().collect()),
        }
    }
}

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`GrpcMetricsLayer`].
#[derive(Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
    layer: GrpcMetricsLayer,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for GrpcMetrics<S>
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
        let start = Instant::now();
        let (service, method) = match split_path(request.uri().path()) {
            Some((s, m)) if self.layer.known.contains(s) => (s.to_owned(), m.to_owned()),
            _ => ("unknown".to_owned(), "unknown".to_owned()),
        };
        let metrics = self.layer.metrics.clone();
        metrics.record_start(&service, &method);
        let future = self.inner.call(request);
        Box::pin(async move {
            match future.await {
                Ok(response) => {
                    let on_end = Box::new(move |code: Code| {
                        metrics.record_end(service, method, code, start.elapsed().as_secs_f64());
                    });
                    Ok(observe_response(response, tracing::Span::none(), on_end))
                }
                Err(e) => {
                    metrics.record_end(service, method, Code::Unknown, start.elapsed().as_secs_f64());
                    Err(e)
                }
            }
        })
    }
}
