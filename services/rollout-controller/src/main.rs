//! `rollout-controller`: wiring only (config, telemetry, admin port, leader election, controller).

use std::{net::SocketAddr, time::Duration};

use clap::{ArgAction, Parser, builder::BoolishValueParser};
use payplane_rollout_controller::{app, cdevents, lease::LeaseConfig, metrics::ControllerMetrics};
use payplane_runtime::{Shutdown, TelemetryArgs, admin, config, telemetry};

#[derive(Parser, Debug)]
#[command(
    name = "rollout-controller",
    about = "Canary releases of payplane's gRPC services"
)]
struct Config {
    #[command(flatten)]
    telemetry: TelemetryArgs,

    /// Address of the admin HTTP server (/metrics, /healthz, /readyz).
    #[arg(long, env = "ADMIN_ADDR", default_value = "0.0.0.0:9090")]
    admin_addr: SocketAddr,

    /// Version put on metrics and spans.
    #[arg(long, env = "SERVICE_VERSION")]
    service_version: String,

    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    namespace: Option<String>,

    /// Reconcile only the Rollouts and FreezePolicies matching this label selector (a benchmark
    /// or test beside other controllers on a shared cluster; default: all).
    #[arg(long, env = "SELECTOR")]
    selector: Option<String>,

    /// Campaign for a Lease and reconcile only while holding it (set when replicas > 1).
    #[arg(long, env = "LEADER_ELECT", default_value_t = false, action = ArgAction::Set, value_parser = BoolishValueParser::new())]
    leader_elect: bool,

    /// Namespace of the Lease (the controller's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,

    #[arg(long, env = "LEASE_NAME", default_value = "rollout-controller")]
    lease_name: String,

    /// This process's identity in the Lease and on events (default: a random one).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,

    /// How long the Lease holds without renewal.
    #[arg(long, env = "LEASE_DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    lease_duration: Duration,

    /// How often the leader renews (and candidates retry).
    #[arg(long, env = "LEASE_RENEW_PERIOD", default_value = "2s", value_parser = humantime::parse_duration)]
    lease_renew_period: Duration,

    /// URL of the CDEvents sink (CloudEvents over HTTP); unset: no CDEvents.
    #[arg(long, env = "CDEVENTS_SINK")]
    cdevents_sink: Option<String>,

    /// `environment.id` in the CDEvents (default: the Rollout's namespace).
    #[arg(long, env = "CDEVENTS_ENVIRONMENT")]
    cdevents_environment: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: Config = config::parse(env!("CARGO_PKG_VERSION"));
    let telemetry = telemetry::init_with("rollout-controller", &config.service_version, &config.telemetry)?;
    let metrics = payplane_runtime::Metrics::new("rollout-controller", &config.service_version);
    let controller_metrics = ControllerMetrics::register(&metrics);
    let shutdown = Shutdown::new();
    shutdown.on_signals();

    let readiness = admin::Readiness::default();
    let listener = tokio::net::TcpListener::bind(config.admin_addr).await?;
    let stop = shutdown.clone();
    let admin = tokio::spawn(admin::serve(listener, metrics, readiness.clone(), async move {
        stop.triggered().await
    }));

    let client = kube::Client::try_default().await?;
    let identity = config
        .identity
        .clone()
        .unwrap_or_else(|| format!("rollout-controller-{}", std::process::id()));
    let settings = app::Settings {
        freeze_policy_selector: config.selector.clone(),
        rollout_selector: config.selector.clone(),
        namespace: config.namespace.clone(),
        lease: config.leader_elect.then(|| LeaseConfig {
            namespace: config.lease_namespace.clone(),
            name: config.lease_name.clone(),
            identity: identity.clone(),
            lease_duration: config.lease_duration,
            renew_every: config.lease_renew_period,
        }),
        instance: Some(identity),
        cdevents: config
            .cdevents_sink
            .clone()
            .filter(|s| !s.is_empty())
            .map(|sink| cdevents::Config {
                environment: config.cdevents_environment.clone().filter(|e| !e.is_empty()),
                ..cdevents::Config::new(sink)
            }),
    };
    readiness.set(true);
    let token = tokio_util::sync::CancellationToken::new();
    let cancel = token.clone();
    let signals = shutdown.clone();
    tokio::spawn(async move {
        signals.triggered().await;
        cancel.cancel();
    });
    app::run(client, settings, controller_metrics, token).await;
    readiness.set(false);
    shutdown.trigger();
    admin.await??;
    telemetry.shutdown().await;
    Ok(())
}
