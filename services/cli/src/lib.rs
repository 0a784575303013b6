//! The `payplane` CLI as a library: its subcommands' engines, for tests and benchmarks.

pub mod load;
pub mod report;
pub mod trace;
