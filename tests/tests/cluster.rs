//! The rendered umbrella chart against the real apiserver: `helm template | kubectl apply
//! --dry-run=server`, so the apiserver's own validation (schemas, defaulting, admission) judges
//! every object the chart makes. Needs a cluster: run by `ci/deploy test` (after `ci/cluster up`),
//! or by hand with `cargo test -p payplane-e2e --test cluster -- --ignored` and KUBECONFIG set.

use std::time::Duration;

use payplane_e2e::{
    helm::charts_dir,
    kube::{helm_run, kubectl, kubectl_stdin, require_cluster, wait_for},
};

const NAMESPACE: &str = "payplane-dryrun";

/// `helm template` of the umbrella chart into NAMESPACE with these values.
fn render(sets: &[&str]) -> String {
    let chart = charts_dir().join("payplane");
    let mut args = vec![
        "template",
        "pp",
        chart.to_str().unwrap(),
        "--namespace",
        NAMESPACE,
    ];
    for s in sets {
        args.extend(["--set", s]);
    }
    helm_run(&args).unwrap_or_else(|e| panic!("helm template failed:\n{e:#}"))
}

fn with_namespace(f: impl FnOnce()) {
    require_cluster();
    // A namespace left Terminating by an earlier run refuses new objects: wait it out.
    wait_for(
        "the dry-run namespace",
        Duration::from_secs(120),
        || match kubectl(&["get", "namespace", NAMESPACE, "-o", "jsonpath={.status.phase}"]) {
            Ok(phase) if phase == "Active" => Ok(Some(())),
            Ok(_) => Ok(None),
            Err(_) => kubectl(&["create", "namespace", NAMESPACE]).map(|_| Some(())),
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    f();
}

fn dry_run(manifest: &str) -> Result<String, String> {
    kubectl_stdin(
        &["apply", "--dry-run=server", "-n", NAMESPACE, "-f", "-"],
        manifest.as_bytes(),
    )
    .map_err(|e| format!("{e:#}"))
}

#[test]
#[ignore = "needs a cluster: ci/deploy test"]
fn the_rendered_umbrella_chart_passes_the_apiservers_validation() {
    with_namespace(|| {
        for (what, sets) in [
            (
                "defaults",
                vec![
                    "global.database.existingSecret=payplane-db",
                    "global.image.tag=1.8.0",
                ],
            ),
            (
                "every option on",
                vec![
                    "global.database.existingSecret=payplane-db",
                    "global.image.tag=1.8.0",
                    "global.otel.endpoint=http://jaeger.observability.svc.cluster.local:4317",
                    "gateway.autoscaling.enabled=true",
                    "gateway.networkPolicy.enabled=true",
                    "accounting.networkPolicy.enabled=true",
                    "routing.networkPolicy.enabled=true",
                    "settlement.networkPolicy.enabled=true",
                    "channel-sim.networkPolicy.enabled=true",
                ],
            ),
        ] {
            let manifest = render(&sets);
            let out = dry_run(&manifest)
                .unwrap_or_else(|e| panic!("the apiserver rejects the rendered chart ({what}):\n{e}"));
            // Every kind the chart renders was accepted (the output names one line per object).
            for kind in [
                "deployment.apps",
                "service/",
                "serviceaccount/",
                "poddisruptionbudget.policy",
            ] {
                assert!(out.contains(kind), "no {kind} in the dry run ({what}):\n{out}");
            }
            assert!(out.contains("(server dry run)"), "not a server dry run:\n{out}");
            if sets.iter().any(|s| s.contains("autoscaling")) {
                assert!(out.contains("horizontalpodautoscaler"), "no HPA:\n{out}");
                assert!(out.contains("networkpolicy"), "no NetworkPolicy:\n{out}");
            }
        }
    });
}

/// The dry run really asks the apiserver: a value the chart's schema would have refused,
/// smuggled past it into the manifest, is refused by the server naming the field.
#[test]
#[ignore = "needs a cluster: ci/deploy test"]
fn the_server_dry_run_rejects_what_the_apiserver_would() {
    with_namespace(|| {
        let manifest = render(&[
            "global.database.existingSecret=payplane-db",
            "global.image.tag=1.8.0",
        ]);
        assert!(
            manifest.contains("replicas: 2"),
            "expected a Deployment with replicas: 2"
        );
        let broken = manifest.replacen("replicas: 2", "replicas: -2", 1);
        let err = dry_run(&broken).expect_err("the apiserver accepted replicas: -2");
        assert!(
            err.contains("spec.replicas"),
            "the refusal does not name spec.replicas:\n{err}"
        );
    });
}
