use anyhow::Context;
use payplane_channel_sim::{SimMetrics, Simulator, config::Config, grpc};
use payplane_runtime::{GrpcServer, config, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: Config = config::parse(env!("CARGO_PKG_VERSION"));
    let channels = config.channel_settings().unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(2)
    });
    let telemetry = telemetry::init("channel-sim", &config.runtime)?;
    let metrics = SimMetrics::default();
    let sim = Simulator::new(
        channels,
        config.seed,
        config.state_file.as_deref(),
        metrics.clone(),
    )
    .context("starting the simulator")?;
    tracing::info!(channels = ?sim.channels().iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        remembered = sim.decisions(), "channels configured");
    let server = GrpcServer::new("channel-sim", &config.runtime.server).with_telemetry(telemetry);
    metrics.register(&mut server.metrics().registry());
    server
        .file_descriptor_set(payplane_proto::FILE_DESCRIPTOR_SET)
        .add_service(grpc::channel_server(sim.clone()))
        .add_service(grpc::admin_server(sim))
        .serve()
        .await?;
    Ok(())
}
