//! `accounting`: wiring only. Parse config, start telemetry, migrate, serve LedgerService.

use payplane_accounting::{config::Config, store::MIGRATOR};
use payplane_proto::accounting::v1::ledger_service_server::LedgerServiceServer;
use payplane_runtime::{GrpcServer, config, database, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: Config = config::parse(env!("CARGO_PKG_VERSION"));
    let telemetry = telemetry::init("accounting", &config.runtime)?;
    if config.fault_lose_minor_unit {
        tracing::warn!("FAULT INJECTION ON (FAULT_LOSE_MINOR_UNIT): every write loses a minor unit");
    }
    let pool = database::connect_and_migrate(&config.database, &MIGRATOR).await?;
    let server = GrpcServer::new("accounting", &config.runtime.server)
        .with_telemetry(telemetry)
        .file_descriptor_set(payplane_proto::FILE_DESCRIPTOR_SET);
    let ledger = payplane_accounting::start(pool, &config, server.metrics());
    server
        .add_service(LedgerServiceServer::new(ledger))
        .serve()
        .await?;
    Ok(())
}
