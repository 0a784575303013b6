//! payplane routing service: chooses the acquiring channel of each payment from a rule tree,
//! volume splits and success-rate routing with exploration and elimination, under a policy
//! read from a YAML document that reloads live. See the crate README for the policy format.

pub mod config;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod metrics;
pub mod simulation;
pub mod state;
