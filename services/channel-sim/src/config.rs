//! Command line and environment of `channel-sim`.

use std::path::PathBuf;

use clap::Parser;
use payplane_runtime::ServiceArgs;

use crate::domain::channel::{ChannelSettings, ChannelSpec, default_channels};

const EXAMPLES: &str = "\
Examples:
  # The default channels (unionpay, netsunion, bank-direct, wallet), UnionPay slower and declining 5%:
  channel-sim --grpc-addr 127.0.0.1:50055 --admin-addr 127.0.0.1:9095 \\
      --channel unionpay:p50=20,p99=80,decline=0.05

  # Reproducible answers, decisions kept across restarts, NetsUnion down from the start:
  CHANNEL_SIM_CHANNELS='netsunion:outage=true;wallet:error=0.02' \\
      channel-sim --seed 7 --state-file /var/tmp/payplane/channel-sim.jsonl

  # At run time, through ChannelAdminService (reflection is on):
  grpcurl -plaintext -d '{\"config\":{\"channel_id\":\"wallet\",\"latency_p50_ms\":5,\"latency_p99_ms\":20,\"outage\":true}}' \\
      127.0.0.1:50055 payplane.channel.v1.ChannelAdminService/ConfigureChannel";

/// The acquiring channels (UnionPay, NetsUnion, bank-direct, wallets) as a faithful test double.
///
/// Each channel has a log-normal latency (p50/p99), a decline rate, an error rate (UNAVAILABLE
/// before anything is decided) and an outage switch, set here at start and changed at run time
/// with ChannelAdminService. Charges and refunds are idempotent by request_id and remembered: in
/// memory, and in --state-file when given (which survives kill -9 and restarts).
#[derive(Parser, Debug)]
#[command(name = "channel-sim", version, after_help = EXAMPLES)]
pub struct Config {
    #[command(flatten)]
    pub runtime: ServiceArgs,

    /// A channel's settings: ID[:p50=MS,p99=MS,decline=RATE,error=RATE,outage=BOOL]. Repeat the
    /// flag (or separate with ';' in the variable); overrides the default channel of that id or
    /// adds a new one.
    #[arg(long = "channel", env = "CHANNEL_SIM_CHANNELS", value_delimiter = ';')]
    pub channels: Vec<ChannelSpec>,

    /// Start with only the channels given by --channel, not the default set.
    #[arg(long, env = "CHANNEL_SIM_NO_DEFAULT_CHANNELS")]
    pub no_default_channels: bool,

    /// Seed of every random draw: the same requests get the same approvals and declines.
    #[arg(long, env = "CHANNEL_SIM_SEED")]
    pub seed: Option<u64>,

    /// Keep decisions in this file (JSON lines) and replay it at start, so that GetCharge and
    /// refunds work after a restart or a kill -9. Without it the simulator forgets on exit.
    #[arg(long, env = "CHANNEL_SIM_STATE_FILE")]
    pub state_file: Option<PathBuf>,
}

impl Config {
    /// The channels to start with: the defaults (unless disabled) with every --channel applied.
    pub fn channel_settings(&self) -> Result<Vec<ChannelSettings>, String> {
        let mut channels = if self.no_default_channels {
            Vec::new()
        } else {
            default_channels()
        };
        for spec in &self.channels {
            let settings = spec.apply(channels.iter().find(|c| c.id == spec.id));
            let problems = settings.validate("");
            if !problems.is_empty() {
                let reasons: Vec<String> = problems
                    .iter()
                    .map(|v| format!("{} {}", v.field, v.description))
                    .collect();
                return Err(format!("--channel {}: {}", spec.id, reasons.join("; ")));
            }
            channels.retain(|c| c.id != spec.id);
            channels.push(settings);
        }
        if channels.is_empty() {
            return Err("no channels: give at least one --channel with --no-default-channels".to_owned());
        }
        Ok(channels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        payplane_runtime::config::try_parse_from(
            std::iter::once("channel-sim").chain(args.iter().copied()),
            "0.0.0",
        )
        .unwrap()
    }

    #[test]
    fn channel_flags_override_and_extend_the_defaults() {
        let c = parse(&[
            "--channel",
            "unionpay:p50=20,p99=80;acme:decline=0.5",
            "--channel",
            "wallet:outage=true",
        ]);
        let settings = c.channel_settings().unwrap();
        let ids: Vec<&str> = settings.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["netsunion", "bank-direct", "unionpay", "acme", "wallet"]);
        assert_eq!(settings[2].latency_p99_ms, 80);
        assert!(settings[4].outage);
        let c = parse(&["--no-default-channels", "--channel", "x:p50=50,p99=10"]);
        assert!(
            c.channel_settings()
                .unwrap_err()
                .contains("latency_p99_ms must be at least")
        );
        assert!(parse(&["--no-default-channels"]).channel_settings().is_err());
    }
}
