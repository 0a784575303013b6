//! payplane gateway: the public payment API (`PaymentService`) and the payment saga, with a
//! recovery loop that finishes or compensates payments left in flight. See `domain::saga` for
//! the state machine and `checker` for the invariants the platform must keep.

pub mod checker;
pub mod config;
pub mod domain;
pub mod engine;
pub mod error;
pub mod grpc;
pub mod metrics;
pub mod recovery;
pub mod store;
