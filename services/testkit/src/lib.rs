//! Test helpers shared by every service's integration tests. Real servers only: a fresh
//! PostgreSQL database per test on the server `ci/devenv up` starts, and service binaries run as
//! real processes that a test can SIGKILL and restart; on the local Kubernetes cluster, a
//! namespace per test and users of the test's making ([`cluster`]).

pub mod cluster;
mod database;
mod process;

pub use database::{TestDatabase, database_url};
pub use process::{ServiceProcess, free_port, wait_for_serving, workspace_binary};
