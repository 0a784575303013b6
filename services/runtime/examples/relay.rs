//! A two-line service for end-to-end tests of the runtime: it serves `grpc.health.v1`, and on
//! every `Check` first calls `Check` on the next hop (if any) through a balanced channel.
//! Run two of them chained to see one trace cross two processes:
//!
//! ```sh
//! GRPC_ADDR=127.0.0.1:50052 ADMIN_ADDR=127.0.0.1:9092 RELAY_NAME=relay-b cargo run --example relay &
//! GRPC_ADDR=127.0.0.1:50051 NEXT_HOP=127.0.0.1:50052 RELAY_NAME=relay-a cargo run --example relay
//! ```

use clap::Parser;
use payplane_runtime::{BalancedChannel, GrpcServer, ServiceArgs, balance, config, telemetry};
use tonic::{Request, Response, Status};
use tonic_health::{
    pb::{
        HealthCheckRequest, HealthCheckResponse,
        health_client::HealthClient,
        health_server::{Health, HealthServer},
    },
    server::HealthService,
};

#[derive(Parser)]
struct Config {
    #[command(flatten)]
    runtime: ServiceArgs,
    #[command(flatten)]
    client: balance::ClientArgs,
    /// Service name in traces and metrics.
    #[arg(long, env = "RELAY_NAME", default_value = "relay")]
    name: String,
    /// Next hop whose Check is called on every Check; unset on the last hop.
    #[arg(long, env = "NEXT_HOP")]
    next_hop: Option<balance::Target>,
}

struct Relay {
    local: HealthService,
    next: Option<HealthClient<BalancedChannel>>,
}

#[tonic::async_trait]
impl Health for Relay {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        if let Some(next) = &self.next {
            let reply = next
                .clone()
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await?;
            tracing::info!(next_status = reply.into_inner().status, "next hop answered");
        }
        self.local.check(request).await
    }

    type WatchStream = <HealthService as Health>::WatchStream;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        self.local.watch(request).await
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: Config = config::parse(env!("CARGO_PKG_VERSION"));
    let telemetry = telemetry::init(&config.name, &config.runtime)?;
    let version = Some(config.runtime.server.service_version.as_str());
    let next = match &config.next_hop {
        Some(target) => Some(HealthClient::new(balance::channel(
            target,
            &config.client,
            version,
        )?)),
        None => None,
    };
    let server = GrpcServer::new(&config.name, &config.runtime.server).with_telemetry(telemetry);
    let relay = Relay {
        local: HealthService::from_health_reporter(server.health_reporter()),
        next,
    };
    server.add_service(HealthServer::new(relay)).serve().await?;
    Ok(())
}
