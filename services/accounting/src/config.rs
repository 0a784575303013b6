//! Command-line and environment configuration.

use std::time::Duration;

use clap::Parser;
use payplane_runtime::{DatabaseArgs, ServiceArgs, config::parse_duration};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "accounting",
    about = "The payplane ledger (LedgerService) on PostgreSQL"
)]
pub struct Config {
    #[command(flatten)]
    pub runtime: ServiceArgs,

    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Group commit: stop adding requests to one transaction past this many events.
    #[arg(long, env = "GROUP_MAX_EVENTS", default_value_t = 16380)]
    pub group_max_events: usize,

    /// Group commit: after the first request, wait this long for more (0 = take only what is
    /// already queued; under load the queue fills while the previous transaction commits).
    #[arg(long, env = "GROUP_WINDOW", default_value = "0ms", value_parser = parse_duration)]
    pub group_window: Duration,

    /// How often an idle replica expires due pending transfers (busy ones do it in every
    /// write transaction).
    #[arg(long, env = "EXPIRY_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub expiry_interval: Duration,

    /// At most this many pending transfers expired per transaction.
    #[arg(long, env = "EXPIRE_LIMIT", default_value_t = 1000)]
    pub expire_limit: usize,

    /// How late an expiry may be before CheckInvariants reports the pending transfer.
    #[arg(long, env = "EXPIRY_GRACE", default_value = "5s", value_parser = parse_duration)]
    pub expiry_grace: Duration,

    /// How often the invariant gauge is refreshed (a full scan of the ledger; 0 = never).
    #[arg(long, env = "INVARIANT_CHECK_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub invariant_check_interval: Duration,

    /// Release drills only: every write transaction posts one minor unit less to one account's
    /// credits than its transfers say, a rounding bug that no call fails on and only the
    /// ledger's invariant check (the rollout's guard) can see.
    #[arg(long, env = "FAULT_LOSE_MINOR_UNIT", default_value_t = false, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub fault_lose_minor_unit: bool,
}
