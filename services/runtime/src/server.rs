//! The gRPC server every service runs: its services plus `grpc.health.v1`, reflection (v1 and
//! v1alpha), tracing and metrics layers, keepalive and maximum connection age, the admin HTTP
//! port, and graceful shutdown.
//!
//! Shutdown order: health NOT_SERVING and `/readyz` 503, wait `SHUTDOWN_DELAY`, stop accepting
//! and let in-flight calls finish (at most `DRAIN_TIMEOUT`), flush telemetry, return.

use std::{convert::Infallible, net::SocketAddr, time::Duration};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{body::Body, server::NamedService, service::RoutesBuilder, transport::server::TcpIncoming};
use tonic_health::{ServingStatus, server::HealthReporter};
use tower::ServiceBuilder;

use crate::{
    admin::{self, Readiness},
    config::ServerArgs,
    error::{Error, Result},
    fault::FaultLayer,
    grpc_tracing::ServerTraceLayer,
    metrics::{GrpcMetricsLayer, Metrics},
    shutdown::Shutdown,
    telemetry::TelemetryGuard,
};

const HEALTH_SERVICE: &str = "grpc.health.v1.Health";
const REFLECTION_V1: &str = "grpc.reflection.v1.ServerReflection";
const REFLECTION_V1ALPHA: &str = "grpc.reflection.v1alpha.ServerReflection";

/// Builder and runner of a service's gRPC server.
pub struct GrpcServer {
    service_name: String,
    args: ServerArgs,
    routes: RoutesBuilder,
    services: Vec<&'static str>,
    custom_health: bool,
    descriptor_sets: Vec<&'static [u8]>,
    health: HealthReporter,
    health_service: tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>,
    metrics: Metrics,
    readiness: Readiness,
    shutdown: Shutdown,
    telemetry: Option<TelemetryGuard>,
}

/// Listeners bound by [`GrpcServer::bind`]: bind first, learn the ports, then serve.
pub struct Listeners {
    pub grpc: TcpListener,
    pub admin: TcpListener,
}

impl Listeners {
    pub fn grpc_addr(&self) -> std::io::Result<SocketAddr> {
        self.grpc.local_addr()
    }

    pub fn admin_addr(&self) -> std::io::Result<SocketAddr> {
        self.admin.local_addr()
    }
}

impl GrpcServer {
    /// A server for `service_name` with `args` (addresses, version, timeouts).
    pub fn new(service_name: &str, args: &ServerArgs) -> Self {
        let health = HealthReporter::new();
        let health_service = tonic_health::pb::health_server::HealthServer::new(
            tonic_health::server::HealthService::from_health_reporter(health.clone()),
        );
        Self {
            service_name: service_name.to_owned(),
            args: args.clone(),
            routes: RoutesBuilder::default(),
            services: Vec::new(),
            custom_health: false,
            descriptor_sets: vec![tonic_health::pb::FILE_DESCRIPTOR_SET],
            health,
            health_service,
            metrics: Metrics::new(service_name, &args.service_version),
            readiness: Readiness::default(),
            shutdown: Shutdown::new(),
            telemetry: None,
        }
    }

    /// Adds a gRPC service; its health status is set to SERVING when the server starts. Adding
    /// a `grpc.health.v1.Health` service of your own replaces the built-in one (build it from
    /// [`Self::health_reporter`] so that shutdown still turns it NOT_SERVING).
    pub fn add_service<S>(mut self, service: S) -> Self
    where
        S: tower::Service<http::Request<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        if S::NAME == HEALTH_SERVICE {
            self.custom_health = true;
        } else {
            self.services.push(S::NAME);
        }
        self.routes.add_service(service);
        self
    }

    /// Registers an encoded `FileDescriptorSet` for reflection, e.g.
    /// `payplane_proto::FILE_DESCRIPTOR_SET`. Only added services are advertised.
    pub fn file_descriptor_set(mut self, encoded: &'static [u8]) -> Self {
        self.descriptor_sets.push(encoded);
        self
    }

    /// Flush and shut down this telemetry after draining.
    pub fn with_telemetry(mut self, guard: TelemetryGuard) -> Self {
        self.telemetry = Some(guard);
        self
    }

    /// Use this shutdown trigger instead of a fresh one (e.g. shared with background tasks).
    pub fn with_shutdown(mut self, shutdown: Shutdown) -> Self {
        self.shutdown = shutdown;
        self
    }

    /// The metrics registry served on `/metrics`; register service metrics here.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The health reporter behind `grpc.health.v1`, e.g. to report a lost dependency.
    pub fn health_reporter(&self) -> HealthReporter {
        self.health.clone()
    }

    /// The trigger that starts graceful shutdown (tests fire it; [`Self::serve`] wires signals).
    pub fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Readiness as reported on `/readyz`.
    pub fn readiness(&self) -> Readiness {
        self.readiness.clone()
    }

    /// Binds the gRPC and admin addresses from the configuration.
    pub async fn bind(&self) -> Result<Listeners> {
        let bind = |what: &'static str, addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Bind { what, addr, source })
        };
        Ok(Listeners {
            grpc: bind("gRPC", self.args.grpc_addr).await?,
            admin: bind("admin", self.args.admin_addr).await?,
        })
    }

    /// Binds the configured addresses and serves until SIGTERM/SIGINT (or the shutdown
    /// handle), then shuts down gracefully.
    pub async fn serve(self) -> Result<()> {
        let listeners = self.bind().await?;
        let signals = self.shutdown.on_signals();
        let result = self.serve_with(listeners).await;
        signals.abort();
        result
    }

    /// Serves on pre-bound listeners until the shutdown handle fires (no signal handling).
    ///
    /// Returns once every call has finished or `drain_timeout` has passed. Calls still running
    /// then live on in their connection tasks until the process (its runtime) exits, which for
    /// a service is right after this returns.
    pub async fn serve_with(mut self, listeners: Listeners) -> Result<()> {
        let grpc_addr = listeners.grpc.local_addr().map_err(Error::Admin)?;
        let admin_addr = listeners.admin.local_addr().map_err(Error::Admin)?;

        let mut advertised: Vec<String> = self.services.iter().map(|s| (*s).to_owned()).collect();
        advertised.extend([HEALTH_SERVICE, REFLECTION_V1, REFLECTION_V1ALPHA].map(String::from));
        let reflection = || {
            let mut builder = tonic_reflection::server::Builder::configure();
            for set in &self.descriptor_sets {
                builder = builder.register_encoded_file_descriptor_set(set);
            }
            for name in &advertised {
                builder = builder.with_service_name(name.clone());
            }
            builder
        };
        let reflection_v1 = reflection().build_v1()?;
        let reflection_v1alpha = reflection().build_v1alpha()?;
        self.routes
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);
        if !self.custom_health {
            self.routes.add_service(self.health_service.clone());
        }

        let health = self.health.clone();
        let services = self.services.clone();
        set_health(&health, &services, ServingStatus::Serving).await;

        let layers = ServiceBuilder::new()
            .layer(ServerTraceLayer::new(&self.args.service_version))
            .layer(GrpcMetricsLayer::new(
                self.metrics.clone(),
                advertised.iter().cloned(),
            ))
            // Inside the metrics layer: injected failures are counted like real ones.
            .layer(FaultLayer::new(self.args.faults.clone()))
            .into_inner();
        if self.args.faults.is_active() {
            tracing::warn!(faults = ?self.args.faults, "FAULT INJECTION ON: this server fails or delays calls on purpose");
        }
        let router = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .http2_keepalive_interval(Some(self.args.grpc_keepalive_interval))
            .http2_keepalive_timeout(Some(self.args.grpc_keepalive_timeout))
            .max_connection_age(self.args.max_connection_age)
            .layer(layers)
            .add_routes(std::mem::take(&mut self.routes).routes());
        let incoming = TcpIncoming::from(listeners.grpc).with_nodelay(Some(true));

        let draining = CancellationToken::new();
        let signal = {
            let (shutdown, readiness, draining) =
                (self.shutdown.clone(), self.readiness.clone(), draining.clone());
            let delay = self.args.shutdown_delay;
            async move {
                shutdown.triggered().await;
                tracing::info!(delay = ?delay, "shutting down: NOT_SERVING, then draining");
                readiness.set(false);
                set_health(&health, &services, ServingStatus::NotServing).await;
                tokio::time::sleep(delay).await;
                draining.cancel();
            }
        };

        let stop_admin = CancellationToken::new();
        let admin_task = tokio::spawn(admin::serve(
            listeners.admin,
            self.metrics.clone(),
            self.readiness.clone(),
            stop_admin.clone().cancelled_owned(),
        ));

        tracing::info!(service = %self.service_name, version = %self.args.service_version,
            %grpc_addr, %admin_addr, services = ?self.services, "serving");
        self.readiness.set(true);
        let drain_timeout = self.args.drain_timeout;
        let result = tokio::select! {
            result = router.serve_with_incoming_shutdown(incoming, signal) => result.map_err(Error::from),
            () = drain_deadline(&draining, drain_timeout) => {
                tracing::warn!(timeout = ?drain_timeout, "drain timeout: dropping calls still in flight");
                Ok(())
            }
        };
        self.readiness.set(false);
        tracing::info!("gRPC server stopped");

        stop_admin.cancel();
        let admin_result = match admin_task.await {
            Ok(r) => r.map_err(Error::Admin),
            Err(e) => Err(Error::Admin(std::io::Error::other(e))),
        };
        if let Some(telemetry) = self.telemetry.take() {
            telemetry.shutdown().await;
        }
        result.and(admin_result)
    }
}

async fn drain_deadline(draining: &CancellationToken, timeout: Duration) {
    draining.cancelled().await;
    tokio::time::sleep(timeout).await;
}

async fn set_health(health: &HealthReporter, services: &[&'static str], status: ServingStatus) {
    for name in services.iter().copied().chain([""]) {
        health.set_service_status(name, status).await;
    }
}
