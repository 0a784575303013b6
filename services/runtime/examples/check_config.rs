//! Parses the full runtime configuration (server, telemetry, client, database) and exits:
//! the start-up validation of every service, without starting anything.

use clap::Parser;
use payplane_runtime::{ClientArgs, DatabaseArgs, ServiceArgs, config};

#[derive(Parser, Debug)]
struct Config {
    #[command(flatten)]
    runtime: ServiceArgs,
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    database: DatabaseArgs,
}

fn main() {
    let config: Config = config::parse(env!("CARGO_PKG_VERSION"));
    println!(
        "configuration ok: grpc {} admin {} version {}",
        config.runtime.server.grpc_addr,
        config.runtime.server.admin_addr,
        config.runtime.server.service_version
    );
}
