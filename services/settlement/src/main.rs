//! `settlement`: wiring only.

use payplane_proto::settlement::v1::settlement_service_server::SettlementServiceServer;
use payplane_runtime::{GrpcServer, Shutdown, balance, config, database, telemetry};
use payplane_settlement::{config::Config, grpc::SettlementApi, service::Settlement, store};

/// Statements and instruction documents are large; gRPC's 4 MiB default is too small.
const MAX_MESSAGE_BYTES: usize = 512 * 1024 * 1024;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: Config = config::parse(env!("CARGO_PKG_VERSION"));
    let calendar = config
        .calendar()
        .map_err(|e| anyhow::anyhow!("settlement calendar: {e}"))?;
    let telemetry = telemetry::init("settlement", &config.runtime)?;
    let version = Some(config.runtime.server.service_version.as_str());
    let pool = database::connect_and_migrate(&config.database, &store::MIGRATOR).await?;
    let ledger = match &config.accounting {
        Some(target) => Some(
            payplane_proto::accounting::v1::ledger_service_client::LedgerServiceClient::new(
                balance::channel(target, &config.client, version)?,
            ),
        ),
        None => None,
    };
    let service = Settlement {
        store: store::Store::new(pool),
        calendar,
        ledger,
    };
    let shutdown = Shutdown::new();
    if !config.auto_close_after.is_zero() {
        tokio::spawn(
            service
                .clone()
                .auto_close(config.auto_close_after, shutdown.clone()),
        );
    }
    let api = SettlementServiceServer::new(SettlementApi { service })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    GrpcServer::new("settlement", &config.runtime.server)
        .with_telemetry(telemetry)
        .with_shutdown(shutdown)
        .file_descriptor_set(payplane_proto::FILE_DESCRIPTOR_SET)
        .add_service(api)
        .serve()
        .await?;
    Ok(())
}
