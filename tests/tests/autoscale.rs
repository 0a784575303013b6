//! Elastic scaling on a real cluster: the umbrella chart installed with the gateway's
//! HorizontalPodAutoscaler on (CPU, fed by metrics-server), payment load from a pod until the HPA
//! scales the gateway out, zero failed payments while it does, then the load stops and the HPA
//! scales the gateway back in to its minimum.
//!
//! Run by `ci/deploy test autoscale`, which builds and pushes the images, empties the namespace,
//! creates fresh databases and the database Secret, and sets PAYPLANE_E2E_AUTOSCALE_NAMESPACE
//! (default payplane-e2e-scale), PAYPLANE_E2E_TAG and PAYPLANE_E2E_REGISTRY.
//! PAYPLANE_E2E_AUTOSCALE_RATE overrides the load's rate (default 6/s).
//!
//! The HPA's numbers are the test's, not the chart's defaults: a CPU request of 20m and a 50 %
//! target put the scale-out point at ~10m of CPU per gateway pod, which a moderate payment rate
//! passes on the shared 2-core machine while an idle pod stays well below it.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use payplane_e2e::{
    helm::install_platform,
    kube::{helm_run, kubectl, require_cluster, required_env, wait_for},
    platform::{assert_no_failed_payment, is_ready, load_pod_result, start_load_pod, wait_for_deployments},
};
use serde_json::Value;

const RELEASE: &str = "e2e";
const LOAD_POD: &str = "e2e-scale-load";
const MIN_REPLICAS: u64 = 1;
const MAX_REPLICAS: u64 = 4;
/// The gateway's CPU request; the HPA's utilization is a share of it.
const CPU_REQUEST: &str = "20m";
const TARGET_CPU_PERCENT: u64 = 50;
/// The HPA waits this long after the last higher recommendation before it scales in.
const SCALE_DOWN_STABILIZATION_SECONDS: u64 = 30;
/// A dev-build gateway pod spends ~8m of CPU per payment/s (84m at 10/s), an idle one 2m: 6/s
/// is well over the scale-out point with one pod and light on the shared machine.
const DEFAULT_RATE: &str = "6/s";
/// Long enough for metrics-server (15 s resolution), the HPA (15 s sync) and a new pod's start.
const LOAD_SECONDS: u64 = 120;

struct Env {
    ns: String,
    tag: String,
    registry: String,
    rate: String,
}

/// What the gateway's HPA says.
#[derive(Debug, Clone, Default)]
struct HpaState {
    desired: u64,
    current: u64,
    /// Average CPU of the gateway pods as a share of their request, once the HPA has a metric.
    cpu_percent: Option<u64>,
    /// The same in CPU (e.g. "13m").
    cpu: String,
}

impl Env {
    fn from_env() -> Self {
        Self {
            ns: std::env::var("PAYPLANE_E2E_AUTOSCALE_NAMESPACE")
                .unwrap_or_else(|_| "payplane-e2e-scale".to_string()),
            tag: required_env("PAYPLANE_E2E_TAG"),
            registry: required_env("PAYPLANE_E2E_REGISTRY"),
            rate: std::env::var("PAYPLANE_E2E_AUTOSCALE_RATE").unwrap_or_else(|_| DEFAULT_RATE.to_string()),
        }
    }

    fn install(&self) -> Result<Duration> {
        let sets = [
            // No tracing: the machine is shared, and the HPA is what is measured.
            "global.otel.endpoint=".to_string(),
            "gateway.autoscaling.enabled=true".to_string(),
            format!("gateway.autoscaling.minReplicas={MIN_REPLICAS}"),
            format!("gateway.autoscaling.maxReplicas={MAX_REPLICAS}"),
            format!("gateway.autoscaling.targetCPUUtilizationPercentage={TARGET_CPU_PERCENT}"),
            format!("gateway.autoscaling.scaleDownStabilizationSeconds={SCALE_DOWN_STABILIZATION_SECONDS}"),
            format!("gateway.resources.requests.cpu={CPU_REQUEST}"),
            // One pod per backend service: only the gateway is scaled here.
            "routing.replicaCount=1".to_string(),
            "accounting.replicaCount=1".to_string(),
            "settlement.replicaCount=1".to_string(),
        ];
        let mut args = vec!["--wait", "--timeout", "5m"];
        for s in &sets {
            args.extend(["--set", s.as_str()]);
        }
        let start = Instant::now();
        install_platform(RELEASE, &self.ns, &self.tag, &self.registry, &args)
            .with_context(|| format!("helm upgrade --install; pods:\n{}", self.pods_table()))?;
        Ok(start.elapsed())
    }

    fn pods_table(&self) -> String {
        kubectl(&["-n", &self.ns, "get", "hpa,pods", "-o", "wide"]).unwrap_or_else(|e| format!("{e:#}"))
    }

    fn hpa(&self) -> Result<HpaState> {
        let out = kubectl(&[
            "-n",
            &self.ns,
            "get",
            "hpa",
            &format!("{RELEASE}-gateway"),
            "-o",
            "json",
        ])?;
        let h: Value = serde_json::from_str(&out)?;
        let status = &h["status"];
        let cpu = status["currentMetrics"]
            .as_array()
            .and_then(|ms| ms.iter().find(|m| m["resource"]["name"] == "cpu"))
            .map(|m| m["resource"]["current"].clone());
        Ok(HpaState {
            desired: status["desiredReplicas"].as_u64().unwrap_or(0),
            current: status["currentReplicas"].as_u64().unwrap_or(0),
            cpu_percent: cpu.as_ref().and_then(|c| c["averageUtilization"].as_u64()),
            cpu: cpu
                .as_ref()
                .and_then(|c| c["averageValue"].as_str())
                .unwrap_or("-")
                .to_string(),
        })
    }

    /// The gateway Deployment's spec.replicas (what the HPA set).
    fn deployment_replicas(&self) -> Result<u64> {
        let out = kubectl(&[
            "-n",
            &self.ns,
            "get",
            "deployment",
            &format!("{RELEASE}-gateway"),
            "-o",
            "jsonpath={.spec.replicas}",
        ])?;
        out.trim()
            .parse()
            .with_context(|| format!("spec.replicas: {out:?}"))
    }

    /// Gateway pods not terminating, and how many of them are Ready.
    fn gateway_pods(&self) -> Result<(u64, u64)> {
        let out = kubectl(&[
            "-n",
            &self.ns,
            "get",
            "pods",
            "-l",
            &format!("app.kubernetes.io/instance={RELEASE},app.kubernetes.io/name=gateway"),
            "-o",
            "json",
        ])?;
        let list: Value = serde_json::from_str(&out)?;
        let live: Vec<Value> = list["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .collect();
        let ready = live.iter().filter(|p| is_ready(p)).count() as u64;
        Ok((live.len() as u64, ready))
    }

    fn load_pod_phase(&self) -> Result<String> {
        kubectl(&[
            "-n",
            &self.ns,
            "get",
            "pod",
            LOAD_POD,
            "-o",
            "jsonpath={.status.phase}",
        ])
    }
}

#[test]
#[ignore = "needs the local cloud with metrics-server, images and databases: ci/deploy test autoscale"]
fn the_gateway_scales_out_under_payment_load_and_back_in_when_it_stops() {
    require_cluster();
    let env = Env::from_env();
    let ns = env.ns.as_str();
    let _ = kubectl(&[
        "-n",
        ns,
        "delete",
        "pod",
        LOAD_POD,
        "--ignore-not-found",
        "--wait=true",
    ]);
    let _ = helm_run(&["uninstall", RELEASE, "-n", ns, "--wait"]);

    // 1. Install with the HPA on; wait for availability, as install.rs does (clients must not
    //    hold a cached "no such name" of a sibling when the load starts).
    let took = env.install().unwrap_or_else(|e| panic!("install failed: {e:#}"));
    println!(
        "FIGURE autoscale: helm install --wait took {:.1} s",
        took.as_secs_f64()
    );
    wait_for_deployments(ns, RELEASE, "3m")
        .unwrap_or_else(|e| panic!("deployments not available: {e:#}\n{}", env.pods_table()));

    // 2. Idle: the HPA reads the gateway's CPU (metrics-server works) and wants the minimum.
    //    Were the idle pods over the target, a scale-out below would prove nothing.
    let idle = wait_for(
        "the gateway's HPA to read its CPU while idle",
        Duration::from_secs(180),
        || {
            let h = env.hpa()?;
            Ok(h.cpu_percent.is_some().then_some(h))
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}\n{}", env.pods_table()));
    println!(
        "FIGURE autoscale: idle gateway CPU {} ({}% of the {CPU_REQUEST} request), HPA desired {} of min {MIN_REPLICAS}",
        idle.cpu,
        idle.cpu_percent.unwrap(),
        idle.desired
    );
    assert!(
        idle.cpu_percent.unwrap() < TARGET_CPU_PERCENT && idle.desired == MIN_REPLICAS,
        "the idle gateway is already at or over the {TARGET_CPU_PERCENT}% target: {idle:?}\n{}",
        env.pods_table()
    );

    // 3. Payment load from a pod, spread over the gateway's pods through the headless Service
    //    (clients re-resolve every 5 s, so new pods get calls).
    let gateway = format!("http://{RELEASE}-gateway-headless.{ns}.svc.cluster.local:50051");
    let image = format!("{}/payplane/cli:{}", env.registry, env.tag);
    let load_started = start_load_pod(ns, LOAD_POD, &image, &gateway, &env.rate, LOAD_SECONDS).unwrap();

    // 4. Scale-out: the HPA wants more than the minimum, and more pods are Ready, while the load
    //    runs. Then watch until the load ends: the most replicas and CPU seen.
    let mut max_cpu = (0, String::new());
    let mut max_ready = 0;
    let mut max_desired = 0;
    // The last reading while the load ran: the CPU per pod once scaled out.
    let mut last = HpaState::default();
    let mut desired_at = None;
    let mut ready_at = None;
    let mut last_print = Instant::now();
    loop {
        let h = env.hpa().unwrap_or_default();
        let (_, ready) = env.gateway_pods().unwrap_or((0, 0));
        if let Some(p) = h.cpu_percent
            && p > max_cpu.0
        {
            max_cpu = (p, h.cpu.clone());
        }
        max_ready = max_ready.max(ready);
        max_desired = max_desired.max(h.desired);
        if desired_at.is_none() && h.desired > MIN_REPLICAS {
            desired_at = Some(load_started.elapsed());
        }
        if ready_at.is_none() && ready > MIN_REPLICAS {
            ready_at = Some(load_started.elapsed());
        }
        if last_print.elapsed() >= Duration::from_secs(10) {
            last_print = Instant::now();
            println!(
                "  {:>4.0} s: HPA cpu {:?}% ({}) desired {} current {}, ready gateway pods {ready}",
                load_started.elapsed().as_secs_f64(),
                h.cpu_percent,
                h.cpu,
                h.desired,
                h.current
            );
        }
        let phase = env.load_pod_phase().unwrap_or_default();
        if matches!(phase.as_str(), "Succeeded" | "Failed") {
            break;
        }
        if load_started.elapsed() < Duration::from_secs(LOAD_SECONDS) && h.cpu_percent.is_some() {
            last = h;
        }
        assert!(
            load_started.elapsed() < Duration::from_secs(LOAD_SECONDS + 180),
            "the load pod did not finish (phase {phase})"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    let load_ended = Instant::now();
    let summary = load_pod_result(ns, LOAD_POD, Duration::from_secs(30)).unwrap();
    println!(
        "FIGURE autoscale: load {} for {LOAD_SECONDS} s: sent {} ok {} errors {} retries {}, {:.1} payments/s, p50 {:.1} ms p99 {:.1} ms, final {}",
        env.rate,
        summary["sent"],
        summary["ok"],
        summary["errors"],
        summary["retries"],
        summary["throughput_per_second"].as_f64().unwrap_or(0.0),
        summary["latency_ms"]["p50"].as_f64().unwrap_or(0.0),
        summary["latency_ms"]["p99"].as_f64().unwrap_or(0.0),
        summary["final_states"]
    );
    println!(
        "FIGURE autoscale: scale-out: HPA desired > {MIN_REPLICAS} after {}, more than {MIN_REPLICAS} gateway pods Ready after {} (from the load's start); most replicas: desired {max_desired}, Ready {max_ready} (max {MAX_REPLICAS}); highest CPU seen {}% of request ({}), target {TARGET_CPU_PERCENT}%",
        secs(desired_at),
        secs(ready_at),
        max_cpu.0,
        max_cpu.1
    );
    println!(
        "FIGURE autoscale: at the end of the load: {} gateway pods, CPU {}% of request ({} per pod)",
        last.current,
        last.cpu_percent.unwrap_or(0),
        last.cpu
    );
    assert!(
        desired_at.is_some() && ready_at.is_some(),
        "the gateway did not scale out under {} of load (HPA desired max {max_desired}, Ready max {max_ready}, CPU max {}%)\n{}",
        env.rate,
        max_cpu.0,
        env.pods_table()
    );
    assert!(
        max_desired <= MAX_REPLICAS,
        "the HPA went over its maximum: {max_desired}"
    );
    assert_no_failed_payment("payments during the scale-out", &summary);

    // 5. Scale-in: the load has stopped; the HPA goes back to the minimum and the extra pods go.
    let scaled_in = wait_for(
        "the gateway to scale back in to its minimum",
        Duration::from_secs(300),
        || {
            let h = env.hpa()?;
            let replicas = env.deployment_replicas()?;
            let (live, _) = env.gateway_pods()?;
            if h.desired == MIN_REPLICAS && replicas == MIN_REPLICAS && live == MIN_REPLICAS {
                Ok(Some(load_ended.elapsed()))
            } else {
                anyhow::bail!(
                    "HPA desired {} (cpu {:?}%), Deployment replicas {replicas}, live gateway pods {live}",
                    h.desired,
                    h.cpu_percent
                )
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}\n{}", env.pods_table()));
    println!(
        "FIGURE autoscale: scale-in: back to {MIN_REPLICAS} gateway pod(s) {:.0} s after the load ended (scale-down stabilization {SCALE_DOWN_STABILIZATION_SECONDS} s)",
        scaled_in.as_secs_f64()
    );

    // 6. Uninstall.
    kubectl(&["-n", ns, "delete", "pod", LOAD_POD, "--wait=true"]).unwrap();
    helm_run(&["uninstall", RELEASE, "-n", ns, "--wait", "--timeout", "3m"]).unwrap();
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("never".to_string(), |d| format!("{:.0} s", d.as_secs_f64()))
}
