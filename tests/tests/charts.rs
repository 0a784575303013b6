//! The Helm charts as an operator meets them: what `helm template` renders for a real install,
//! and what it says for bad values.

use payplane_e2e::helm::{env_value, find, of_kind, template};
use serde_json::Value;

const SERVICES: &[&str] = &["gateway", "routing", "accounting", "settlement", "channel-sim"];
const INSTALL: &[&str] = &[
    "global.database.existingSecret=payplane-db",
    "global.image.tag=1.8.0",
];

fn rendered() -> Vec<Value> {
    template("pp", "payplane", INSTALL).unwrap_or_else(|e| panic!("helm template failed:\n{e}"))
}

#[test]
fn every_service_gets_a_hardened_deployment_with_grpc_probes() {
    let docs = rendered();
    for svc in SERVICES {
        let d = find(&docs, "Deployment", &format!("pp-{svc}")).unwrap();
        let pod = &d["spec"]["template"]["spec"];
        let c = &pod["containers"][0];
        assert_eq!(
            c["image"],
            format!("127.0.0.1:5000/payplane/{svc}:1.8.0"),
            "{svc} image"
        );
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{svc}");
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
            "{svc}"
        );
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true, "{svc}");
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false, "{svc}");
        assert_eq!(
            c["securityContext"]["capabilities"]["drop"],
            serde_json::json!(["ALL"]),
            "{svc}"
        );
        for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
            assert_eq!(c[probe]["grpc"]["port"], 50051, "{svc} {probe}");
        }
        // The pod must outlive its drain: delay + drain < grace period.
        let grace = pod["terminationGracePeriodSeconds"].as_i64().unwrap();
        let secs = |name: &str| {
            env_value(d, name).unwrap()["value"]
                .as_str()
                .unwrap()
                .trim_end_matches('s')
                .parse::<i64>()
                .unwrap()
        };
        assert!(
            secs("SHUTDOWN_DELAY") + secs("DRAIN_TIMEOUT") < grace,
            "{svc}: drain exceeds grace period"
        );
        // The version comes from the pod's version label, which releases keep current.
        assert_eq!(pod_labels(d)["app.kubernetes.io/version"], "1.8.0", "{svc}");
        assert_eq!(
            env_value(d, "SERVICE_VERSION").unwrap()["valueFrom"]["fieldRef"]["fieldPath"],
            "metadata.labels['app.kubernetes.io/version']",
            "{svc}"
        );
        // Selectors use name and instance only, so a Deployment survives label changes.
        let selector = d["spec"]["selector"]["matchLabels"].as_object().unwrap();
        let keys: Vec<_> = selector.keys().cloned().collect();
        assert_eq!(
            keys,
            ["app.kubernetes.io/instance", "app.kubernetes.io/name"],
            "{svc}"
        );
    }
}

#[test]
fn every_service_has_a_headless_service_for_per_request_balancing() {
    let docs = rendered();
    for svc in SERVICES {
        let headless = find(&docs, "Service", &format!("pp-{svc}-headless")).unwrap();
        assert_eq!(headless["spec"]["clusterIP"], "None", "{svc}");
        find(&docs, "Service", &format!("pp-{svc}")).unwrap();
        find(&docs, "PodDisruptionBudget", &format!("pp-{svc}")).unwrap();
        find(&docs, "ServiceAccount", &format!("pp-{svc}")).unwrap();
    }
    let gateway = find(&docs, "Deployment", "pp-gateway").unwrap();
    assert_eq!(
        env_value(gateway, "ROUTING_URL").unwrap()["value"],
        "http://pp-routing-headless.payments.svc.cluster.local:50051"
    );
}

#[test]
fn databases_come_from_the_secret_and_only_where_needed() {
    let docs = rendered();
    for (svc, has_db) in [
        ("gateway", true),
        ("accounting", true),
        ("settlement", true),
        ("routing", false),
        ("channel-sim", false),
    ] {
        let d = find(&docs, "Deployment", &format!("pp-{svc}")).unwrap();
        match env_value(d, "DATABASE_URL") {
            Ok(v) => {
                assert!(has_db, "{svc} should not get a database");
                assert_eq!(v["valueFrom"]["secretKeyRef"]["name"], "payplane-db");
                // Each service its own database and migrations: its own key in the Secret.
                assert_eq!(v["valueFrom"]["secretKeyRef"]["key"], svc);
            }
            Err(_) => assert!(!has_db, "{svc} needs DATABASE_URL"),
        }
    }
}

#[test]
fn routing_policy_is_a_configmap_mounted_as_a_directory_so_it_reloads_live() {
    let docs = rendered();
    let cm = find(&docs, "ConfigMap", "pp-routing-policy").unwrap();
    let policy = cm["data"]["policy.yaml"].as_str().unwrap();
    assert!(
        policy.contains("unionpay"),
        "default policy missing from the ConfigMap"
    );
    let d = find(&docs, "Deployment", "pp-routing").unwrap();
    let mounts = d["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
        .as_array()
        .unwrap();
    let m = mounts
        .iter()
        .find(|m| m["name"] == "policy")
        .expect("policy volume mounted");
    assert!(
        m.get("subPath").is_none(),
        "subPath mounts never see ConfigMap updates"
    );
    assert_eq!(
        env_value(d, "POLICY_FILE").unwrap()["value"],
        format!("{}/policy.yaml", m["mountPath"].as_str().unwrap())
    );
}

#[test]
fn parts_switch_off_and_autoscaling_replaces_fixed_replicas() {
    let docs = template(
        "pp",
        "payplane",
        &[
            INSTALL,
            &["channel-sim.enabled=false", "gateway.autoscaling.enabled=true"],
        ]
        .concat(),
    )
    .unwrap();
    assert!(find(&docs, "Deployment", "pp-channel-sim").is_err());
    let hpa = find(&docs, "HorizontalPodAutoscaler", "pp-gateway").unwrap();
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "pp-gateway");
    assert!(
        find(&docs, "Deployment", "pp-gateway").unwrap()["spec"]
            .get("replicas")
            .is_none()
    );
    assert_eq!(of_kind(&docs, "HorizontalPodAutoscaler").len(), 1);
}

#[test]
fn the_hpa_takes_its_bounds_cpu_target_and_scale_down_window_from_values() {
    // What tests/tests/autoscale.rs installs.
    let mut sets = INSTALL.to_vec();
    sets.extend([
        "gateway.autoscaling.enabled=true",
        "gateway.autoscaling.minReplicas=1",
        "gateway.autoscaling.maxReplicas=4",
        "gateway.autoscaling.targetCPUUtilizationPercentage=50",
        "gateway.autoscaling.scaleDownStabilizationSeconds=30",
        "gateway.resources.requests.cpu=20m",
    ]);
    let docs = template("pp", "payplane", &sets).unwrap_or_else(|e| panic!("helm template failed:\n{e}"));
    let spec = &find(&docs, "HorizontalPodAutoscaler", "pp-gateway").unwrap()["spec"];
    assert_eq!(spec["minReplicas"], 1);
    assert_eq!(spec["maxReplicas"], 4);
    let metrics = spec["metrics"].as_array().unwrap();
    assert_eq!(metrics.len(), 1, "{metrics:?}");
    assert_eq!(metrics[0]["type"], "Resource");
    assert_eq!(metrics[0]["resource"]["name"], "cpu");
    assert_eq!(metrics[0]["resource"]["target"]["type"], "Utilization");
    assert_eq!(metrics[0]["resource"]["target"]["averageUtilization"], 50);
    assert_eq!(spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"], 30);
    // Utilization is a share of the request: the container must have one.
    let d = find(&docs, "Deployment", "pp-gateway").unwrap();
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"],
        "20m"
    );
    // The defaults: off, and when on, a minute before scaling in.
    let docs = template(
        "pp",
        "payplane",
        &[INSTALL, &["gateway.autoscaling.enabled=true"]].concat(),
    )
    .unwrap();
    let spec = &find(&docs, "HorizontalPodAutoscaler", "pp-gateway").unwrap()["spec"];
    assert_eq!(spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"], 60);
    assert!(of_kind(&rendered(), "HorizontalPodAutoscaler").is_empty());
}

#[test]
fn bad_values_fail_with_a_message_naming_the_value() {
    let err = template("pp", "payplane", &[]).unwrap_err();
    assert!(err.contains("/global/database/existingSecret"), "{err}");

    let err = template(
        "pp",
        "payplane",
        &[INSTALL, &["gateway.replicaCount=-1"]].concat(),
    )
    .unwrap_err();
    assert!(err.contains("gateway") && err.contains("/replicaCount"), "{err}");

    let err = template("pp", "payplane", &[INSTALL, &["global.logLevel=loud"]].concat()).unwrap_err();
    assert!(err.contains("/global/logLevel"), "{err}");

    // A service chart installed alone without a database Secret says which value to set.
    let err = template("acc", "accounting", &[]).unwrap_err();
    assert!(err.contains("database.existingSecret"), "{err}");
}

#[test]
fn a_service_with_rollouts_on_gets_a_rollout_of_its_own_deployment() {
    let mut sets = INSTALL.to_vec();
    sets.extend(["accounting.rollout.enabled=true", "routing.rollout.enabled=true"]);
    let docs = template("pp", "payplane", &sets).unwrap_or_else(|e| panic!("helm template failed:\n{e}"));
    let rollouts = of_kind(&docs, "Rollout");
    assert_eq!(rollouts.len(), 2, "only the services that asked for one");
    let accounting = find(&docs, "Rollout", "pp-accounting").unwrap();
    assert_eq!(accounting["apiVersion"], "payplane.io/v1alpha1");
    assert_eq!(accounting["spec"]["deploymentName"], "pp-accounting");
    let canary = &accounting["spec"]["strategy"]["canary"];
    assert_eq!(canary["steps"][0]["setWeight"], 33);
    let metrics = canary["analysis"]["inline"]["metrics"].as_array().unwrap();
    assert_eq!(
        metrics[0]["provider"]["scrape"]["grpcService"],
        "payplane.accounting.v1.LedgerService"
    );
    // The ledger guard's address is this release's accounting, rendered through tpl.
    assert_eq!(
        metrics[1]["provider"]["ledgerInvariants"]["address"],
        "http://pp-accounting-headless.payments.svc.cluster.local:50051"
    );
    let routing = find(&docs, "Rollout", "pp-routing").unwrap();
    let routing_metrics = routing["spec"]["strategy"]["canary"]["analysis"]["inline"]["metrics"]
        .as_array()
        .unwrap();
    assert_eq!(routing_metrics.len(), 1, "no ledger guard outside accounting");
    assert!(of_kind(&rendered(), "Rollout").is_empty(), "off by default");
}

#[test]
fn with_a_rollout_and_autoscaling_the_hpa_scales_the_stable_deployment_not_a_canary() {
    let mut sets = INSTALL.to_vec();
    sets.extend([
        "accounting.rollout.enabled=true",
        "accounting.autoscaling.enabled=true",
    ]);
    let docs = template("pp", "payplane", &sets).unwrap_or_else(|e| panic!("helm template failed:\n{e}"));
    let rollout = find(&docs, "Rollout", "pp-accounting").unwrap();
    let hpas = of_kind(&docs, "HorizontalPodAutoscaler");
    assert_eq!(hpas.len(), 1, "one HPA, for the stable; the canary has none");
    let target = &hpas[0]["spec"]["scaleTargetRef"];
    assert_eq!(target["kind"], "Deployment");
    assert_eq!(target["name"], rollout["spec"]["deploymentName"]);
    assert_eq!(target["name"], "pp-accounting");
    // The chart renders no canary (the controller makes it, sized from the stable's count), and
    // leaves the stable's replicas to the HPA: an upgrade does not reset what the HPA set.
    assert!(find(&docs, "Deployment", "pp-accounting-canary").is_err());
    assert!(
        find(&docs, "Deployment", "pp-accounting").unwrap()["spec"]
            .get("replicas")
            .is_none()
    );
}

#[test]
fn the_rollout_controller_chart_grants_what_the_controller_does_and_elects_a_leader() {
    let docs = template("rc", "rollout-controller", &["global.image.tag=1.8.0"])
        .unwrap_or_else(|e| panic!("helm template failed:\n{e}"));
    let d = find(&docs, "Deployment", "rc-rollout-controller").unwrap();
    assert_eq!(d["spec"]["replicas"], 2);
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "payplane/rollout-controller:1.8.0");
    assert_eq!(env_value(d, "LEADER_ELECT").unwrap()["value"], "true");
    assert_eq!(
        env_value(d, "POD_NAMESPACE").unwrap()["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    let role = find(&docs, "ClusterRole", "rc-rollout-controller").unwrap();
    let grants = |group: &str, resource: &str, verb: &str| {
        role["rules"].as_array().unwrap().iter().any(|r| {
            r["apiGroups"].as_array().unwrap().iter().any(|g| g == group)
                && r["resources"].as_array().unwrap().iter().any(|x| x == resource)
                && r["verbs"].as_array().unwrap().iter().any(|v| v == verb)
        })
    };
    assert!(grants("payplane.io", "rollouts/status", "patch"));
    assert!(grants("apps", "deployments", "create"));
    assert!(grants("apps", "controllerrevisions", "create"));
    assert!(grants("", "pods", "list"), "the built-in scrape lists pods");
    assert!(!grants("", "secrets", "get"), "no access to Secrets");
    for verb in ["create", "get", "list", "watch"] {
        assert!(
            grants("payplane.io", "releaseevents", verb),
            "releaseevents {verb}"
        );
    }
    for verb in ["update", "patch", "delete", "deletecollection", "*"] {
        assert!(
            !grants("payplane.io", "releaseevents", verb) && !grants("payplane.io", "*", verb),
            "the audit trail is append-only: no {verb} on releaseevents"
        );
    }
    // ReleasePlans: read, and their status written; nothing else (the plan's steps are template
    // changes and Rollout annotations, granted above).
    for verb in ["get", "list", "watch"] {
        assert!(grants("payplane.io", "releaseplans", verb), "releaseplans {verb}");
    }
    assert!(grants("payplane.io", "releaseplans/status", "patch"));
    for verb in ["create", "update", "patch", "delete"] {
        assert!(
            !grants("payplane.io", "releaseplans", verb),
            "the controller does not {verb} releaseplans"
        );
    }
    assert!(grants("payplane.io", "rollouts", "patch"), "request annotations");
    assert!(grants("apps", "deployments", "patch"), "template changes");
    let lease_role = find(&docs, "Role", "rc-rollout-controller-leader-election").unwrap();
    assert_eq!(lease_role["rules"][0]["resources"][0], "leases");

    let bad = template("rc", "rollout-controller", &["replicaCount=0"]).unwrap_err();
    assert!(bad.contains("replicaCount"), "{bad}");
}

#[test]
fn the_release_commit_goes_on_every_pod_template_for_the_audit_trail() {
    let mut sets = INSTALL.to_vec();
    sets.extend([
        "global.release.commit=3f1c2e9d",
        "global.release.commitTime=2026-10-01T08:00:00+02:00",
    ]);
    let docs = template("pp", "payplane", &sets).unwrap_or_else(|e| panic!("helm template failed:\n{e}"));
    for svc in SERVICES {
        let d = find(&docs, "Deployment", &format!("pp-{svc}")).unwrap();
        let annotations = &d["spec"]["template"]["metadata"]["annotations"];
        assert_eq!(annotations["payplane.io/commit"], "3f1c2e9d", "{svc}");
        assert_eq!(
            annotations["payplane.io/commit-time"], "2026-10-01T08:00:00+02:00",
            "{svc}"
        );
        assert!(
            d["metadata"]["labels"]["helm.sh/chart"]
                .as_str()
                .is_some_and(|c| c.starts_with(&format!("{svc}-"))),
            "{svc}: the chart version comes from helm.sh/chart"
        );
    }
    // Unset: no annotation (the controller records no commit rather than an empty one).
    let d = find(&rendered(), "Deployment", "pp-accounting").unwrap().clone();
    assert!(d["spec"]["template"]["metadata"]["annotations"]["payplane.io/commit"].is_null());
    let bad = template(
        "pp",
        "payplane",
        &[INSTALL, &["global.release.commit=not a sha"]].concat(),
    )
    .unwrap_err();
    assert!(bad.contains("commit"), "{bad}");
}

fn pod_labels(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["metadata"]["labels"]
}
