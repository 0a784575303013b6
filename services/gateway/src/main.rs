use std::sync::Arc;

use payplane_gateway::{
    config::Config,
    domain::{MerchantRegistry, Revision},
    engine::{Clients, Engine, EngineConfig},
    grpc::PaymentApi,
    metrics::GatewayMetrics,
    recovery::{self, RecoveryConfig},
    store::{MIGRATOR, Store},
};
use payplane_proto::{
    accounting::v1::ledger_service_client::LedgerServiceClient,
    channel::v1::channel_service_client::ChannelServiceClient,
    payment::v1::payment_service_server::PaymentServiceServer,
    routing::v1::routing_service_client::RoutingServiceClient,
    settlement::v1::settlement_service_client::SettlementServiceClient,
};
use payplane_runtime::{GrpcServer, Target, balance, config, database, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: Config = config::parse(env!("CARGO_PKG_VERSION"));
    let telemetry = telemetry::init("gateway", &config.runtime)?;
    let pool = database::connect_and_migrate(&config.database, &MIGRATOR).await?;

    let version = Some(config.runtime.server.service_version.as_str());
    let channel = |target: &Target| balance::channel(target, &config.client, version);
    let clients = Clients {
        routing: RoutingServiceClient::new(channel(&config.routing_url)?),
        ledger: LedgerServiceClient::new(channel(&config.accounting_url)?),
        settlement: SettlementServiceClient::new(channel(&config.settlement_url)?),
        channel: ChannelServiceClient::new(channel(&config.channel_url)?),
    };

    let server = GrpcServer::new("gateway", &config.runtime.server);
    let metrics = GatewayMetrics::register(&mut server.metrics().registry());
    let engine_config = EngineConfig {
        budget: config.payment_budget,
        call_deadline: config.call_deadline,
        charge_deadline: config.charge_deadline,
        lease_margin: config.lease_margin,
        hold_timeout_secs: config.hold_timeout.as_secs().clamp(1, u64::from(u32::MAX)) as u32,
        revision: if config.saga_revision == 1 {
            Revision::V1
        } else {
            Revision::V2
        },
    };
    tracing::info!(?engine_config, merchants = %config.merchants, "gateway configured");
    let engine = Arc::new(Engine::new(Store::new(pool), clients, engine_config, metrics));

    let shutdown = server.shutdown_handle();
    let recovery = config.recovery_enabled.then(|| {
        let cfg = RecoveryConfig {
            interval: config.recovery_interval,
            batch: config.recovery_batch.max(1),
            concurrency: config.recovery_concurrency.max(1),
        };
        tokio::spawn(recovery::run(engine.clone(), cfg, shutdown.clone()))
    });

    let api = PaymentApi::new(engine, MerchantRegistry::parse(&config.merchants));
    let result = server
        .with_telemetry(telemetry)
        .file_descriptor_set(payplane_proto::FILE_DESCRIPTOR_SET)
        .add_service(PaymentServiceServer::new(api))
        .serve()
        .await;
    shutdown.trigger();
    if let Some(task) = recovery {
        let _ = task.await;
    }
    result?;
    Ok(())
}
