//! Helpers for the platform-level tests: rendering the Helm charts, and driving a real cluster.

pub mod canary;
pub mod cli;
pub mod endofday;
pub mod helm;
pub mod kube;
pub mod platform;
