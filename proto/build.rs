//! Compiles `payplane/**/*.proto` with protox (pure Rust, no protoc needed) and generates the
//! tonic clients and servers. The file descriptor set is kept for gRPC reflection.

use std::{env, fs, path::PathBuf};

use prost::Message;

const PROTOS: &[&str] = &[
    "payplane/common/v1/common.proto",
    "payplane/payment/v1/payment.proto",
    "payplane/routing/v1/routing.proto",
    "payplane/accounting/v1/ledger.proto",
    "payplane/settlement/v1/settlement.proto",
    "payplane/channel/v1/channel.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=payplane");
    let fds = protox::compile(PROTOS, ["."])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out_dir.join("payplane_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
