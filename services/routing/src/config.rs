//! Command line and environment of the `routing` binary.

use std::{path::PathBuf, time::Duration};

use clap::Parser;
use payplane_runtime::{ServiceArgs, config::parse_duration};

/// payplane routing service: channel selection by rules, volume split and success rate.
#[derive(Parser, Debug, Clone)]
#[command(name = "routing", version)]
pub struct Config {
    #[command(flatten)]
    pub runtime: ServiceArgs,

    /// The policy document (YAML), e.g. a ConfigMap mounted at /etc/payplane/routing/policy.yaml.
    /// Re-read every `--policy-poll-interval`; a valid change applies live.
    #[arg(long, env = "POLICY_FILE", required_unless_present = "check_policy")]
    pub policy_file: Option<PathBuf>,

    /// How often the policy file is checked for changes.
    #[arg(long, env = "POLICY_POLL_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub policy_poll_interval: Duration,

    /// Validate a policy file, print every error with its line and column, and exit (non-zero
    /// when invalid). Starts no server.
    #[arg(long, value_name = "FILE")]
    pub check_policy: Option<PathBuf>,
}
