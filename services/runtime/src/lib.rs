//! The shared runtime of every payplane service: configuration, logs and traces, metrics,
//! health, reflection, graceful shutdown and per-request balanced client channels (which send
//! again the calls a server provably never saw, see [`retry`]), so that no service repeats them.
//!
//! A service wires itself in like this:
//!
//! ```no_run
//! use clap::Parser;
//! use payplane_runtime::{GrpcServer, ServiceArgs, balance, config, telemetry};
//!
//! #[derive(Parser)]
//! struct Config {
//!     #[command(flatten)]
//!     runtime: ServiceArgs,
//!     #[command(flatten)]
//!     client: balance::ClientArgs,
//!     /// The routing service, e.g. `routing-headless:50051`.
//!     #[arg(long, env = "ROUTING_TARGET")]
//!     routing: balance::Target,
//! }
//!
//! #[tokio::main]
//! async fn main() -> anyhow::Result<()> {
//!     let config: Config = config::parse(env!("CARGO_PKG_VERSION")); // one-line error, exit 2
//!     let telemetry = telemetry::init("gateway", &config.runtime)?;
//!     let version = Some(config.runtime.server.service_version.as_str());
//!     let routing = balance::channel(&config.routing, &config.client, version)?;
//!     // let routing = RoutingServiceClient::new(routing);
//!     # let health = tonic_health::server::health_reporter().1;
//!     GrpcServer::new("gateway", &config.runtime.server)
//!         .with_telemetry(telemetry)
//!         .file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET) // payplane_proto::FILE_DESCRIPTOR_SET
//!         .add_service(health) // PaymentServiceServer::new(gateway)
//!         .serve() // until SIGTERM/SIGINT, then drain and flush spans
//!         .await?;
//!     Ok(())
//! }
//! ```
//!
//! What the server gives every service:
//! - `grpc.health.v1` (SERVING per added service and overall, NOT_SERVING once shutdown starts)
//!   and reflection v1/v1alpha for the added services;
//! - a server span per call (`rpc.*`, `service.version`), child of the caller's W3C context;
//! - on the admin port: `/metrics` (`grpc_server_started_total`, `grpc_server_handled_total`,
//!   `grpc_server_handling_seconds` by `grpc_service`, `grpc_method`, `grpc_code`, all labelled
//!   `service` and `version`; add your own via [`GrpcServer::metrics`]), `/healthz`, `/readyz`;
//! - HTTP/2 keepalive and a maximum connection age, so balanced clients re-spread load.
//!
//! Tests serve on pre-bound listeners with [`GrpcServer::serve_with`] and stop the server with
//! [`GrpcServer::shutdown_handle`].

pub mod admin;
pub mod balance;
pub mod config;
#[cfg(feature = "postgres")]
pub mod database;
pub mod error;
pub mod fault;
pub mod grpc_tracing;
pub mod metrics;
mod observe;
pub mod retry;
pub mod server;
pub mod shutdown;
pub mod telemetry;

pub use balance::{BalancedChannel, ClientArgs, Target};
pub use config::{DatabaseArgs, ServerArgs, ServiceArgs, TelemetryArgs};
pub use error::{Error, Result};
pub use metrics::Metrics;
pub use observe::code_name;
pub use server::{GrpcServer, Listeners};
pub use shutdown::Shutdown;
pub use telemetry::TelemetryGuard;
