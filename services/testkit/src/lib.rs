//! Test helpers shared by every service's integration tests. Real servers only: a fresh
//! PostgreSQL database per test on the server `ci/devenv up` starts, and service binaries run as
//! real processes that a test can SIGKILL and restart; on the local Kubernetes cluster, a
//! namespace per test and users of the test's making ([`cluster`]).

pub mod cluster;
mod database;
mod process;

pub use database::{TestDatabase, database_url};
pub use process::{ServiceProcess, free_port, wait_for_serving, workspace_binary};

/// The directory of the package whose tests are running, read at run time: cargo sets
/// `CARGO_MANIFEST_DIR` for every test process. The compile-time `env!` value names whichever
/// checkout built the binary, and checkouts that share a target directory (ours do, see
/// ci/lib/common.sh) reuse each other's test binaries when their sources are older.
pub fn package_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(Into::into)
        .expect("CARGO_MANIFEST_DIR is not set: run the tests with cargo test")
}
