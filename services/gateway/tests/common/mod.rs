//! The whole platform as real processes on fixed loopback ports (so that a killed service can be
//! restarted where its clients expect it): routing, accounting, settlement, channel-sim and one or
//! more gateways, each service with its own fresh database.

#![allow(dead_code)]

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use payplane_gateway::checker::{self, Endpoints, Report};
use payplane_proto::{
    channel::v1::{
        ChannelConfig, ConfigureChannelRequest, channel_admin_service_client::ChannelAdminServiceClient,
    },
    common::v1::{Money, PaymentMethod},
    payment::v1::{CreatePaymentRequest, payment_service_client::PaymentServiceClient},
};
use payplane_testkit::{TestDatabase, free_port, wait_for_serving, workspace_binary};
use sqlx::PgPool;
use tonic::transport::Channel;

pub const CHANNELS: [&str; 4] = ["unionpay", "netsunion", "bank-direct", "wallet"];

/// A service binary on fixed ports that can be SIGKILLed and restarted on the same ports.
pub struct Proc {
    pub name: String,
    binary: String,
    pub grpc_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    env: Vec<(String, String)>,
    child: Option<Child>,
    pub starts: u32,
}

impl Proc {
    pub fn new(name: &str, binary: &str, env: Vec<(String, String)>) -> Result<Self> {
        Ok(Self {
            name: name.to_string(),
            binary: binary.to_string(),
            grpc_addr: format!("127.0.0.1:{}", free_port()?).parse()?,
            admin_addr: format!("127.0.0.1:{}", free_port()?).parse()?,
            env,
            child: None,
            starts: 0,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    pub async fn start(&mut self) -> Result<()> {
        let path = workspace_binary(&self.binary)?;
        let mut cmd = Command::new(&path);
        cmd.env("GRPC_ADDR", self.grpc_addr.to_string())
            .env("ADMIN_ADDR", self.admin_addr.to_string())
            .env("LOG_FORMAT", "text")
            .env(
                "RUST_LOG",
                std::env::var("SERVICE_LOG").unwrap_or_else(|_| "warn".into()),
            )
            // Exported only when a test asks for it (in its env), to spare the CPU.
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdin(Stdio::null());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", path.display()))?;
        self.child = Some(child);
        self.starts += 1;
        if let Err(e) = wait_for_serving(self.grpc_addr, Duration::from_secs(60)).await {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                bail!("{} exited with {status} before serving", self.name);
            }
            return Err(e.context(format!("{} did not become SERVING", self.name)));
        }
        Ok(())
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL, as in a crash or an OOM kill.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub struct PlatformOptions {
    /// SAGA_REVISION and SERVICE_VERSION of each gateway.
    pub gateways: Vec<(u8, &'static str)>,
    pub payment_budget: &'static str,
    pub lease_margin: &'static str,
    pub extra_gateway_env: Vec<(String, String)>,
    /// Export every service's spans here.
    pub otlp_endpoint: Option<String>,
}

impl Default for PlatformOptions {
    fn default() -> Self {
        Self {
            gateways: vec![(2, "0.2.0")],
            payment_budget: "3s",
            lease_margin: "2s",
            extra_gateway_env: vec![],
            otlp_endpoint: None,
        }
    }
}

/// Fields drop in order: the processes stop before their databases are dropped.
pub struct Platform {
    pub gateways: Vec<Proc>,
    pub routing: Proc,
    pub accounting: Proc,
    pub settlement: Proc,
    pub channel: Proc,
    pub gateway_db: TestDatabase,
    accounting_db: TestDatabase,
    settlement_db: TestDatabase,
}

fn routing_policy() -> PathBuf {
    payplane_testkit::package_dir().join("../routing/policy/default.yaml")
}

impl Platform {
    pub async fn start(opts: PlatformOptions) -> Result<Self> {
        let gateway_db = TestDatabase::create("gateway").await?;
        let accounting_db = TestDatabase::create("gw_accounting").await?;
        let settlement_db = TestDatabase::create("gw_settlement").await?;

        let mut routing = Proc::new(
            "routing",
            "routing",
            env(&[("POLICY_FILE", routing_policy().to_str().context("policy path")?)]),
        )?;
        let mut accounting = Proc::new(
            "accounting",
            "accounting",
            env(&[("DATABASE_URL", accounting_db.url())]),
        )?;
        let mut settlement = Proc::new(
            "settlement",
            "settlement",
            env(&[
                ("DATABASE_URL", settlement_db.url()),
                ("ACCOUNTING_TARGET", &accounting.grpc_addr.to_string()),
            ]),
        )?;
        let mut channel = Proc::new("channel-sim", "channel-sim", env(&[("CHANNEL_SIM_SEED", "7")]))?;
        let otlp = opts
            .otlp_endpoint
            .iter()
            .map(|e| ("OTEL_EXPORTER_OTLP_ENDPOINT".to_string(), e.clone()));
        for p in [&mut routing, &mut accounting, &mut settlement, &mut channel] {
            p.env.extend(otlp.clone());
        }
        routing.start().await?;
        accounting.start().await?;
        settlement.start().await?;
        channel.start().await?;

        let mut gateways = Vec::new();
        for (i, (revision, version)) in opts.gateways.iter().enumerate() {
            let mut e = env(&[
                ("DATABASE_URL", gateway_db.url()),
                ("ROUTING_URL", &routing.url()),
                ("ACCOUNTING_URL", &accounting.url()),
                ("SETTLEMENT_URL", &settlement.url()),
                ("CHANNEL_URL", &channel.url()),
                ("MERCHANTS", "m-001,m-002"),
                ("PAYMENT_BUDGET", opts.payment_budget),
                ("LEASE_MARGIN", opts.lease_margin),
                ("CALL_DEADLINE", "1s"),
                ("CHARGE_DEADLINE", "1s"),
                ("RECOVERY_INTERVAL", "200ms"),
                ("CLIENT_RESOLVE_INTERVAL", "1s"),
                ("CLIENT_CONNECT_TIMEOUT", "500ms"),
                ("SAGA_REVISION", &revision.to_string()),
                ("SERVICE_VERSION", version),
            ]);
            e.extend(opts.extra_gateway_env.iter().cloned());
            e.extend(otlp.clone());
            let mut g = Proc::new(&format!("gateway-{i}"), "gateway", e)?;
            g.start().await?;
            gateways.push(g);
        }
        let platform = Self {
            gateway_db,
            accounting_db,
            settlement_db,
            routing,
            accounting,
            settlement,
            channel,
            gateways,
        };
        platform.configure_channels(|c| c).await?;
        Ok(platform)
    }

    pub async fn gateway_client(&self, i: usize) -> Result<PaymentServiceClient<Channel>> {
        Ok(PaymentServiceClient::new(
            tonic::transport::Endpoint::from_shared(self.gateways[i].url())?
                .connect_timeout(Duration::from_millis(500))
                .timeout(Duration::from_secs(20))
                .connect_lazy(),
        ))
    }

    /// Sets every channel to fast, no declines, no errors, then applies `f`.
    pub async fn configure_channels(&self, f: impl Fn(ChannelConfig) -> ChannelConfig) -> Result<()> {
        let mut admin = ChannelAdminServiceClient::connect(self.channel.url()).await?;
        for id in CHANNELS {
            let base = ChannelConfig {
                channel_id: id.to_string(),
                latency_p50_ms: 1,
                latency_p99_ms: 5,
                decline_rate: 0.0,
                error_rate: 0.0,
                outage: false,
            };
            admin
                .configure_channel(ConfigureChannelRequest {
                    config: Some(f(base)),
                })
                .await?;
        }
        Ok(())
    }

    pub fn endpoints(&self) -> Endpoints {
        Endpoints {
            accounting: self.accounting.url(),
            settlement: self.settlement.url(),
            channel: self.channel.url(),
        }
    }

    pub async fn pool(&self) -> Result<PgPool> {
        Ok(PgPool::connect(self.gateway_db.url()).await?)
    }

    pub async fn check(&self) -> Result<Report> {
        let pool = self.pool().await?;
        let report = checker::check(&pool, &self.endpoints()).await?;
        pool.close().await;
        Ok(report)
    }

    /// Waits until no payment or refund is in flight.
    pub async fn wait_until_final(&self, timeout: Duration) -> Result<()> {
        let pool = self.pool().await?;
        let result = checker::wait_until_final(&pool, timeout).await;
        pool.close().await;
        result
    }
}

pub fn payment(key: &str, merchant: &str, amount: i64, currency: &str) -> CreatePaymentRequest {
    CreatePaymentRequest {
        idempotency_key: key.to_string(),
        payer_id: "payer-1".to_string(),
        merchant_id: merchant.to_string(),
        amount: Some(Money {
            minor_units: amount,
            currency: currency.to_string(),
        }),
        method: PaymentMethod::DebitCard as i32,
        scene: "ecommerce".to_string(),
        card_bin: "622848".to_string(),
    }
}
