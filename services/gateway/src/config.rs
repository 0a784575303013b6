//! The gateway's configuration: flags with environment variables (`gateway --help`).

use std::time::Duration;

use clap::{ArgAction, Parser};
use payplane_runtime::{ClientArgs, DatabaseArgs, ServiceArgs, Target, config::parse_duration};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "gateway",
    version,
    about = "payplane gateway: the payment API and the payment saga"
)]
pub struct Config {
    #[command(flatten)]
    pub runtime: ServiceArgs,

    #[command(flatten)]
    pub database: DatabaseArgs,

    #[command(flatten)]
    pub client: ClientArgs,

    /// The routing service.
    #[arg(long, env = "ROUTING_URL", default_value = "http://127.0.0.1:50052")]
    pub routing_url: Target,

    /// The accounting service (the ledger).
    #[arg(long, env = "ACCOUNTING_URL", default_value = "http://127.0.0.1:50053")]
    pub accounting_url: Target,

    /// The settlement service.
    #[arg(long, env = "SETTLEMENT_URL", default_value = "http://127.0.0.1:50054")]
    pub settlement_url: Target,

    /// The channels (the channel simulator, or an acquirer adapter).
    #[arg(long, env = "CHANNEL_URL", default_value = "http://127.0.0.1:50055")]
    pub channel_url: Target,

    /// The merchant registry: comma-separated merchant ids that may take payments, or `*` for any
    /// well-formed id (load tests). Payments for other merchants are INVALID_ARGUMENT.
    #[arg(long, env = "MERCHANTS", default_value = "m-001,m-002,m-003")]
    pub merchants: String,

    /// Time a payment may spend on downstream calls (retries included) before it is left to the
    /// recovery loop.
    #[arg(long, env = "PAYMENT_BUDGET", default_value = "8s", value_parser = parse_duration)]
    pub payment_budget: Duration,

    /// Deadline of one call to routing, accounting or settlement.
    #[arg(long, env = "CALL_DEADLINE", default_value = "2s", value_parser = parse_duration)]
    pub call_deadline: Duration,

    /// Deadline of one call to a channel.
    #[arg(long, env = "CHARGE_DEADLINE", default_value = "5s", value_parser = parse_duration)]
    pub charge_deadline: Duration,

    /// Lease = budget + this margin. The recovery loop takes a payment over only after its lease
    /// ran out, so no call of its previous driver can still be in flight.
    #[arg(long, env = "LEASE_MARGIN", default_value = "4s", value_parser = parse_duration)]
    pub lease_margin: Duration,

    /// Timeout of the ledger hold: the ledger releases a hold not posted or voided by then.
    #[arg(long, env = "HOLD_TIMEOUT", default_value = "10m", value_parser = parse_duration)]
    pub hold_timeout: Duration,

    /// Run the recovery loop in this replica.
    #[arg(long, env = "RECOVERY_ENABLED", default_value_t = true, action = ArgAction::Set)]
    pub recovery_enabled: bool,

    /// Pause between recovery passes that found nothing to do.
    #[arg(long, env = "RECOVERY_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub recovery_interval: Duration,

    /// Payments claimed per recovery pass.
    #[arg(long, env = "RECOVERY_BATCH", default_value_t = 64)]
    pub recovery_batch: i64,

    /// Payments one recovery pass drives at once.
    #[arg(long, env = "RECOVERY_CONCURRENCY", default_value_t = 16)]
    pub recovery_concurrency: usize,

    /// How the saga persists its last steps: 2 (current) writes the final state at once; 1 (the
    /// previous release) writes VOIDED / SETTLEMENT_RECORDED first and creates accounts on every
    /// payment. Both finish payments the other left anywhere; for N/N-1 tests and rollbacks.
    #[arg(long, env = "SAGA_REVISION", default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub saga_revision: u8,
}
