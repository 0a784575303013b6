//! Writes the CRDs generated from the Rust types to `charts/rollout-controller/crds/` (or the
//! directory given). `cargo run -p payplane-rollout-controller --bin crdgen`; the
//! `crd_drift` test fails when the committed files differ.

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let dir = std::env::args_os().nth(1).map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../charts/rollout-controller/crds")
    });
    std::fs::create_dir_all(&dir)?;
    for (file, yaml) in payplane_rollout_controller::crd_files() {
        let path = dir.join(file);
        std::fs::write(&path, yaml)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
