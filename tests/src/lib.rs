//! Helpers for the platform-level tests: rendering the Helm charts and reading what they render.

pub mod helm;
