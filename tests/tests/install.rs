//! The platform as an operator installs it, on a real cluster: `helm install` of the umbrella
//! chart with the locally built images, every pod Ready, `helm test` (real payments), payments
//! traced in Jaeger and scraped by Prometheus, `helm upgrade` to a new image tag under continuous
//! payment load with zero failed payments, and `helm uninstall` leaving nothing behind.
//!
//! Run by `ci/deploy test`, which builds and pushes the images under two tags, creates the
//! namespace, the databases and the database Secret, and sets:
//! PAYPLANE_E2E_NAMESPACE, PAYPLANE_E2E_TAG, PAYPLANE_E2E_NEXT_TAG, PAYPLANE_E2E_REGISTRY,
//! PAYPLANE_E2E_OTLP (OTLP endpoint, may be empty), PAYPLANE_E2E_JAEGER_QUERY and
//! PAYPLANE_E2E_PROMETHEUS (base URLs reachable from this machine; empty = not checked).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use payplane_e2e::{
    helm::install_platform,
    kube::{helm_run, kubectl, require_cluster, required_env, wait_for},
    platform::{
        assert_no_failed_payment, curl_json, is_ready, load_pod_result, start_load_pod, wait_for_deployments,
    },
};
use serde_json::Value;

const RELEASE: &str = "e2e";
/// Payments per second during the upgrade (open loop: sends do not wait for answers).
const LOAD_RATE: &str = "8/s";
/// Long enough to cover the upgrade and the longest shutdown delay of an old pod after it.
const LOAD_SECONDS: u64 = 180;
const SHUTDOWN_DELAY_SECONDS: u64 = 40;

struct Env {
    ns: String,
    tag: String,
    next_tag: String,
    registry: String,
    otlp: String,
    jaeger: String,
    prometheus: String,
}

impl Env {
    fn from_env() -> Self {
        Self {
            ns: required_env("PAYPLANE_E2E_NAMESPACE"),
            tag: required_env("PAYPLANE_E2E_TAG"),
            next_tag: required_env("PAYPLANE_E2E_NEXT_TAG"),
            registry: required_env("PAYPLANE_E2E_REGISTRY"),
            otlp: std::env::var("PAYPLANE_E2E_OTLP").unwrap_or_default(),
            jaeger: std::env::var("PAYPLANE_E2E_JAEGER_QUERY").unwrap_or_default(),
            prometheus: std::env::var("PAYPLANE_E2E_PROMETHEUS").unwrap_or_default(),
        }
    }

    /// `helm upgrade --install` with the images of `tag`; returns how long it took.
    fn install(&self, tag: &str) -> Result<Duration> {
        let start = Instant::now();
        let otel = format!("global.otel.endpoint={}", self.otlp);
        install_platform(
            RELEASE,
            &self.ns,
            tag,
            &self.registry,
            &["--set", &otel, "--wait", "--timeout", "5m"],
        )
        .with_context(|| format!("helm upgrade --install (tag {tag}); pods:\n{}", self.pods_table()))?;
        Ok(start.elapsed())
    }

    fn pods_table(&self) -> String {
        kubectl(&["-n", &self.ns, "get", "pods", "-o", "wide"]).unwrap_or_else(|e| format!("{e:#}"))
    }

    fn release_pods(&self) -> Result<Vec<Value>> {
        let out = kubectl(&[
            "-n",
            &self.ns,
            "get",
            "pods",
            "-l",
            &format!("app.kubernetes.io/instance={RELEASE},app.kubernetes.io/part-of=payplane"),
            "-o",
            "json",
        ])?;
        let list: Value = serde_json::from_str(&out)?;
        Ok(list["items"].as_array().cloned().unwrap_or_default())
    }
}

#[test]
#[ignore = "needs the local cloud with images and databases: ci/deploy test"]
fn install_test_upgrade_under_load_and_uninstall() {
    require_cluster();
    let env = Env::from_env();
    let ns = env.ns.as_str();
    assert_ne!(env.tag, env.next_tag, "the upgrade needs a different image tag");
    // A leftover of an earlier run would make this an upgrade, not an install.
    let _ = helm_run(&["uninstall", RELEASE, "-n", ns, "--wait"]);
    let _ = kubectl(&[
        "-n",
        ns,
        "delete",
        "pod",
        "e2e-load",
        "--ignore-not-found",
        "--wait=true",
    ]);
    wait_for(
        "the pods of an earlier run to finish draining",
        Duration::from_secs(120),
        || {
            let left = env.release_pods()?;
            Ok(left.is_empty().then_some(()))
        },
    )
    .unwrap();

    // 1. Install: every pod Ready.
    let took = env
        .install(&env.tag)
        .unwrap_or_else(|e| panic!("install failed: {e:#}"));
    println!(
        "FIGURE install: helm install --wait took {:.1} s",
        took.as_secs_f64()
    );
    let pods = env.release_pods().unwrap();
    assert!(
        pods.len() >= 5,
        "expected a pod per service, got {}:\n{}",
        pods.len(),
        env.pods_table()
    );
    for p in &pods {
        assert!(
            is_ready(p),
            "pod {} not Ready after install:\n{}",
            p["metadata"]["name"],
            env.pods_table()
        );
    }

    // helm --wait counts Ready pods, not available ones (minReadySeconds): wait for availability,
    // by when no client still holds a cached "no such name" for a sibling that was not Ready
    // yet when it first looked (the cluster DNS caches that for 30 s).
    let avail = Instant::now();
    wait_for_deployments(ns, RELEASE, "3m").unwrap_or_else(|e| panic!("deployments not available: {e:#}"));
    println!(
        "FIGURE install: every Deployment available {:.1} s after helm returned",
        avail.elapsed().as_secs_f64()
    );

    // 2. helm test: real payments through the installed gateway.
    let out = helm_run(&["test", RELEASE, "-n", ns, "--logs", "--timeout", "3m"])
        .unwrap_or_else(|e| panic!("helm test failed: {e:#}"));
    println!("helm test:\n{out}");
    assert!(
        out.contains("Phase:          Succeeded"),
        "helm test did not succeed:\n{out}"
    );
    assert!(
        out.contains("final      SUCCEEDED"),
        "helm test printed no final states:\n{out}"
    );
    assert!(out.contains("errors 0"), "helm test saw failed calls:\n{out}");

    // 3. Continuous load from a pod (per-request balancing over the headless Service), then
    //    the upgrade to the next tag while it runs.
    let gateway = format!("http://{RELEASE}-gateway-headless.{ns}.svc.cluster.local:50051");
    let image = format!("{}/payplane/cli:{}", env.registry, env.tag);
    let load_started = start_load_pod(ns, "e2e-load", &image, &gateway, LOAD_RATE, LOAD_SECONDS).unwrap();
    std::thread::sleep(Duration::from_secs(10));
    let up_start = Instant::now();
    env.install(&env.next_tag)
        .unwrap_or_else(|e| panic!("upgrade failed: {e:#}"));
    wait_for_deployments(ns, RELEASE, "5m").unwrap_or_else(|e| panic!("deployments not rolled out: {e:#}"));
    let took = up_start.elapsed();
    let upgraded_at = load_started.elapsed();
    println!(
        "FIGURE upgrade: helm upgrade --wait + rollout status to {} took {:.1} s under load",
        env.next_tag,
        took.as_secs_f64()
    );
    assert!(
        upgraded_at + Duration::from_secs(SHUTDOWN_DELAY_SECONDS + 5) < Duration::from_secs(LOAD_SECONDS),
        "the upgrade ended {upgraded_at:?} into a {LOAD_SECONDS} s load: the load no longer covers the old pods' shutdown"
    );
    for p in env.release_pods().unwrap() {
        let image = p["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let terminating = !p["metadata"]["deletionTimestamp"].is_null();
        assert!(
            terminating || image.ends_with(&format!(":{}", env.next_tag)),
            "pod {} still runs {image} after the upgrade",
            p["metadata"]["name"]
        );
    }

    // 4. The load ends: zero failed payments across the upgrade.
    let summary = load_pod_result(ns, "e2e-load", Duration::from_secs(LOAD_SECONDS + 120)).unwrap();
    println!(
        "FIGURE upgrade under load: sent {} ok {} errors {} retries {} in {:.0} s, {:.1} payments/s, p50 {:.1} ms p99 {:.1} ms, final {}",
        summary["sent"],
        summary["ok"],
        summary["errors"],
        summary["retries"],
        summary["elapsed_seconds"].as_f64().unwrap_or(0.0),
        summary["throughput_per_second"].as_f64().unwrap_or(0.0),
        summary["latency_ms"]["p50"].as_f64().unwrap_or(0.0),
        summary["latency_ms"]["p99"].as_f64().unwrap_or(0.0),
        summary["final_states"]
    );
    assert_no_failed_payment("payments during the upgrade", &summary);

    // 5. The sample payment's trace in Jaeger, with spans from more than the gateway.
    if !env.jaeger.is_empty() && !env.otlp.is_empty() {
        let trace = summary["sample_trace_id"]
            .as_str()
            .expect("the load printed no sample trace id")
            .to_string();
        let services = wait_for("the trace in Jaeger", Duration::from_secs(30), || {
            let t = curl_json(&format!("{}/api/traces/{trace}", env.jaeger))?;
            let procs = &t["data"][0]["processes"];
            let mut names: Vec<String> = procs
                .as_object()
                .map(|m| {
                    m.values()
                        .filter_map(|p| p["serviceName"].as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            names.sort();
            names.dedup();
            Ok(names.len().ge(&3).then_some(names))
        })
        .unwrap();
        println!("trace {trace} in Jaeger with spans from {services:?}");
        assert!(
            services.iter().any(|s| s == "gateway"),
            "no gateway span: {services:?}"
        );
    }

    // 6. Prometheus scrapes every pod of the release (prometheus.io annotations).
    if !env.prometheus.is_empty() {
        let pods: Vec<String> = env
            .release_pods()
            .unwrap()
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .filter_map(|p| p["metadata"]["name"].as_str().map(String::from))
            .collect();
        let query = format!(
            "{}/api/v1/query?query=up%7Bnamespace%3D%22{ns}%22%7D",
            env.prometheus
        );
        wait_for("Prometheus to scrape every pod", Duration::from_secs(60), || {
            let r = curl_json(&query)?;
            let up: Vec<String> = r["data"]["result"]
                .as_array()
                .map(|rs| {
                    rs.iter()
                        .filter(|x| x["value"][1] == "1")
                        .filter_map(|x| x["metric"]["pod"].as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            let missing: Vec<_> = pods.iter().filter(|p| !up.contains(p)).collect();
            if missing.is_empty() {
                Ok(Some(()))
            } else {
                anyhow::bail!("not up in Prometheus: {missing:?}")
            }
        })
        .unwrap();
    }

    // 7. Uninstall: nothing of the release is left.
    kubectl(&["-n", ns, "delete", "pod", "e2e-load", "--wait=true"]).unwrap();
    helm_run(&["uninstall", RELEASE, "-n", ns, "--wait", "--timeout", "3m"]).unwrap();
    // The helm test pod is a hook (kept so that `helm test --logs` can show its output), and
    // Helm does not delete hooks on uninstall: delete it as ci/deploy down does.
    kubectl(&[
        "-n",
        ns,
        "delete",
        "pod",
        &format!("{RELEASE}-test-payments"),
        "--ignore-not-found",
        "--wait=true",
    ])
    .unwrap();
    let selector = format!("app.kubernetes.io/instance={RELEASE}");
    wait_for("every object of the release to be gone", Duration::from_secs(120), || {
        let left = kubectl(&[
            "-n",
            ns,
            "get",
            "deployments,replicasets,pods,services,endpointslices,serviceaccounts,configmaps,poddisruptionbudgets,horizontalpodautoscalers,networkpolicies",
            "-l",
            &selector,
            "-o",
            "name",
        ])?;
        if left.trim().is_empty() { Ok(Some(())) } else { anyhow::bail!("left behind:\n{left}") }
    })
    .unwrap();
    let releases = helm_run(&["list", "-n", ns, "-a", "-q"]).unwrap();
    assert!(
        !releases.lines().any(|l| l == RELEASE),
        "helm still lists {RELEASE}: {releases}"
    );
}
