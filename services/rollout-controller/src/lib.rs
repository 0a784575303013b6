//! payplane's rollout controller: canary releases of gRPC services judged on gRPC status,
//! latency and the ledger's invariants.
//!
//! Pure parts decide: `judge` (statistics), `validate` (spec → field problems), `freeze` (freeze
//! windows: the one in force and until when), `analysis` (measurement bookkeeping, Argo's limits)
//! `machine` (status + observations → status + actions) and `plan_machine` (the same for a
//! ReleasePlan, the coordinated release of several services). `reconcile`, `plan_reconcile`,
//! `providers` and `lease` talk to the cluster, `cdevents` to a CDEvents sink; `app` wires them.

pub mod analysis;
pub mod app;
pub mod audit;
pub mod cache;
pub mod cdevents;
pub mod crd;
pub mod delivery;
pub mod freeze;
pub mod judge;
pub mod lease;
pub mod machine;
pub mod metrics;
pub mod plan_machine;
pub mod plan_reconcile;
pub mod providers;
pub mod reconcile;
pub mod validate;

/// The CRD files (name, content) as `crdgen` writes them to `charts/rollout-controller/crds/`.
pub fn crd_files() -> Vec<(&'static str, String)> {
    use kube::CustomResourceExt;
    let to_yaml = |crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition| {
        let yaml = serde_saphyr::to_string(crd).expect("a CRD always serializes");
        format!("# Generated from the Rust types by `cargo run -p payplane-rollout-controller --bin crdgen`; do not edit.\n{yaml}")
    };
    vec![
        ("rollouts.payplane.io.yaml", to_yaml(&crd::Rollout::crd())),
        (
            "analysistemplates.payplane.io.yaml",
            to_yaml(&crd::AnalysisTemplate::crd()),
        ),
        (
            "freezepolicies.payplane.io.yaml",
            to_yaml(&crd::FreezePolicy::crd()),
        ),
        (
            "releaseevents.payplane.io.yaml",
            to_yaml(&payplane_delivery::ReleaseEvent::crd()),
        ),
        ("releaseplans.payplane.io.yaml", to_yaml(&crd::ReleasePlan::crd())),
    ]
}
