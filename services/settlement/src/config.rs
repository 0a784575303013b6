//! Configuration: the runtime's flags plus the database, accounting and the settlement calendar.

use std::time::Duration;

use clap::Parser;
use payplane_runtime::{DatabaseArgs, ServiceArgs, balance};

use crate::domain::window::Calendar;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "settlement",
    about = "Settlement windows, netting, instructions and reconciliation"
)]
pub struct Config {
    #[command(flatten)]
    pub runtime: ServiceArgs,

    #[command(flatten)]
    pub database: DatabaseArgs,

    #[command(flatten)]
    pub client: balance::ClientArgs,

    /// Accounting's LedgerService, e.g. `accounting-headless:50051`. Unset: closing a window
    /// computes positions and instructions but posts nothing (the window stays CLOSED).
    #[arg(long, env = "ACCOUNTING_TARGET")]
    pub accounting: Option<balance::Target>,

    /// IANA time zone of business dates and cut-offs.
    #[arg(long, env = "SETTLEMENT_TIME_ZONE", default_value = "Asia/Shanghai")]
    pub time_zone: String,

    /// Cut-off of channels not listed in SETTLEMENT_CHANNEL_CUT_OFFS: `HH:MM[/T+N]`.
    #[arg(long, env = "SETTLEMENT_DEFAULT_CUT_OFF", default_value = "00:00/T+1")]
    pub default_cut_off: String,

    /// Per-channel cut-offs, e.g. `unionpay=23:00/T+1,netsunion=22:30/T+0`.
    #[arg(long, env = "SETTLEMENT_CHANNEL_CUT_OFFS", default_value = "")]
    pub channel_cut_offs: String,

    /// Close windows automatically once their cut-off is this far in the past. `0s` turns
    /// automatic closing off (windows then close only on request).
    #[arg(long, env = "SETTLEMENT_AUTO_CLOSE_AFTER", default_value = "10m", value_parser = humantime_duration)]
    pub auto_close_after: Duration,
}

fn humantime_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e} (e.g. 30s, 10m, 1h)"))
}

impl Config {
    pub fn calendar(&self) -> Result<Calendar, String> {
        Calendar::parse(&self.time_zone, &self.default_cut_off, &self.channel_cut_offs)
    }
}
