//! The `payplane` CLI as a library: its subcommands' engines, for tests and benchmarks.

pub mod cluster;
pub mod load;
pub mod report;
pub mod rollout;
pub mod trace;
