//! Routing decisions, pure and in memory: the policy model and its YAML validation, the
//! outcome windows, and the decision engine. No I/O here; the clock and randomness are inputs.

pub mod engine;
pub mod parse;
pub mod policy;
pub mod stats;

#[cfg(test)]
mod tests;

pub use engine::{Decision, Engine, NoRoute, NoRouteKind, Now, RouteInput, StateChange, Strategy};
pub use parse::{PolicyError, parse_policy, version_of};
pub use policy::{Method, Policy};
