//! `channel-sim`: the acquirers as a faithful test double. See the crate README.

pub mod config;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod sim;
pub mod statement;
pub mod store;

pub use sim::{SimMetrics, Simulator};
