//! The committed CRDs must be what the Rust types generate: a change to `crd.rs` without
//! re-running `crdgen` fails here.

#[test]
fn committed_crds_match_the_types() {
    let dir = payplane_testkit::package_dir().join("../../charts/rollout-controller/crds");
    for (file, generated) in payplane_rollout_controller::crd_files() {
        let path = dir.join(file);
        let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run `cargo run -p payplane-rollout-controller --bin crdgen`",
                path.display()
            )
        });
        assert!(
            committed == generated,
            "{} drifted from the Rust types; run `cargo run -p payplane-rollout-controller --bin crdgen` and commit",
            path.display()
        );
    }
}

#[test]
fn the_crds_are_the_expected_resources() {
    let files = payplane_rollout_controller::crd_files();
    assert_eq!(files.len(), 5);
    assert!(
        files[0].1.contains("name: rollouts.payplane.io"),
        "{}",
        &files[0].1[..300]
    );
    assert!(
        files[0].1.contains("subresources:") && files[0].1.contains("status: {}"),
        "status subresource"
    );
    assert!(files[1].1.contains("name: analysistemplates.payplane.io"));
    assert!(files[2].1.contains("name: freezepolicies.payplane.io") && files[2].1.contains("scope: Cluster"));
    assert!(files[3].1.contains("name: releaseevents.payplane.io"));
    assert!(
        !files[3].1.contains("subresources:"),
        "ReleaseEvents are immutable records: no status"
    );
    assert!(
        files[4].1.contains("name: releaseplans.payplane.io")
            && files[4].1.contains("scope: Namespaced")
            && files[4].1.contains("status: {}")
            && files[4].1.contains("- rp"),
        "ReleasePlan: namespaced, status subresource, shortname rp"
    );
}
