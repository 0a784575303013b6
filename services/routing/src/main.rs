//! `routing`: wiring only. See the crate README.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
};

use payplane_proto::routing::v1::routing_service_server::RoutingServiceServer;
use payplane_routing::{
    config::Config,
    domain::{parse::count_rules, parse::unreachable_channels, parse_policy, version_of},
    grpc::RoutingGrpc,
    metrics::RoutingMetrics,
    state::{Router, read_policy, watch},
};
use payplane_runtime::{GrpcServer, config, telemetry};

fn main() -> ExitCode {
    // The check tool needs no server settings: handle it before they are required.
    if let Some(file) = check_policy_arg() {
        return check_policy(&file);
    }
    let config: Config = config::parse(env!("CARGO_PKG_VERSION"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("routing: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `--check-policy FILE` or `--check-policy=FILE` (also declared in [`Config`] for `--help`).
fn check_policy_arg() -> Option<PathBuf> {
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        let arg = arg.to_string_lossy().into_owned();
        if arg == "--check-policy" {
            return args.next().map(PathBuf::from);
        }
        if let Some(file) = arg.strip_prefix("--check-policy=") {
            return Some(PathBuf::from(file));
        }
    }
    None
}

/// `routing --check-policy FILE`: every error as `FILE:LINE:COLUMN: path: why`.
fn check_policy(file: &Path) -> ExitCode {
    let yaml = match read_policy(file) {
        Ok(yaml) => yaml,
        Err(e) => {
            eprintln!("{}: cannot read: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    match parse_policy(&yaml) {
        Ok(policy) => {
            println!(
                "{}: valid policy, version {}: {} channels, {} rules",
                file.display(),
                version_of(&yaml),
                policy.channels.len(),
                count_rules(&policy.rules)
            );
            for id in unreachable_channels(&policy) {
                println!(
                    "{}: note: channel `{id}` is not named by any route",
                    file.display()
                );
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors {
                println!("{}:{e}", file.display());
            }
            println!("{}: invalid policy: {} error(s)", file.display(), errors.len());
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let telemetry = telemetry::init("routing", &config.runtime)?;
    let path = config
        .policy_file
        .clone()
        .ok_or_else(|| anyhow::anyhow!("POLICY_FILE (--policy-file) is required"))?;
    let yaml =
        read_policy(&path).map_err(|e| anyhow::anyhow!("cannot read policy {}: {e}", path.display()))?;
    let metrics = RoutingMetrics::default();
    let source = path.display().to_string();
    let router = match Router::new(&source, yaml, metrics.clone()) {
        Ok(router) => Arc::new(router),
        Err(errors) => {
            for e in &errors {
                tracing::error!(path = %source, line = e.line, column = e.column, field = %e.path, "policy error: {}", e.message);
            }
            anyhow::bail!("policy {} is invalid: {} error(s)", path.display(), errors.len());
        }
    };
    tracing::info!(path = %source, version = %router.current().version, "policy loaded");

    let server = GrpcServer::new("routing", &config.runtime.server)
        .with_telemetry(telemetry)
        .file_descriptor_set(payplane_proto::FILE_DESCRIPTOR_SET)
        .add_service(RoutingServiceServer::new(RoutingGrpc::new(router.clone())));
    metrics.register(&mut server.metrics().registry());
    let shutdown = server.shutdown_handle();
    let watcher = tokio::spawn(watch(router, path, config.policy_poll_interval, async move {
        shutdown.triggered().await
    }));
    let result = server.serve().await;
    watcher.abort();
    result?;
    Ok(())
}
