//! What the cluster tests check about a running platform: pods Ready, `payplane load` pods and
//! their summary (nothing lost, nothing failed), JSON from HTTP APIs (Jaeger, Prometheus).

use std::{
    io::Read,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use serde_json::Value;

use crate::kube::{kubectl, kubectl_bin, run, wait_for};

fn pod_phase(ns: &str, name: &str) -> Result<String> {
    kubectl(&["-n", ns, "get", "pod", name, "-o", "jsonpath={.status.phase}"])
}

/// Starts a pod running `payplane load` (image `image`) against `gateway` at `rate` for
/// `seconds`, reading every payment back at the end; returns when it runs. A pod of the same
/// name left by an earlier run is deleted first.
pub fn start_load_pod(
    ns: &str,
    name: &str,
    image: &str,
    gateway: &str,
    rate: &str,
    seconds: u64,
) -> Result<Instant> {
    kubectl(&[
        "-n",
        ns,
        "delete",
        "pod",
        name,
        "--ignore-not-found",
        "--wait=true",
    ])?;
    let duration = format!("{seconds}s");
    kubectl(&[
        "-n",
        ns,
        "run",
        name,
        "--image",
        image,
        "--restart=Never",
        "--labels",
        "app.kubernetes.io/name=payplane-load",
        // Time to read every payment back when stopped early (stop_load_pod).
        "--overrides",
        r#"{"spec":{"terminationGracePeriodSeconds":600}}"#,
        "--",
        "load",
        "--gateway",
        gateway,
        "--rate",
        rate,
        "--duration",
        &duration,
        "--json",
        "--no-progress",
        // Read every payment back (the default stops at 1000).
        "--check-states",
        "1000000",
    ])?;
    wait_for(
        &format!("load pod {name} to run"),
        Duration::from_secs(60),
        || Ok((pod_phase(ns, name)? == "Running").then(Instant::now)),
    )
}

/// Waits for a load pod to finish and returns its JSON summary.
pub fn load_pod_result(ns: &str, name: &str, timeout: Duration) -> Result<Value> {
    wait_for(&format!("load pod {name} to finish"), timeout, || {
        Ok(matches!(pod_phase(ns, name)?.as_str(), "Succeeded" | "Failed").then_some(()))
    })?;
    load_summary(&kubectl(&["-n", ns, "logs", name])?)
}

/// Stops a load pod before its time (SIGTERM: it stops sending, reads every payment back and
/// prints its summary) and returns the summary, waiting at most `timeout`.
pub fn stop_load_pod(ns: &str, name: &str, timeout: Duration) -> Result<Value> {
    // Follow the log first: the pod object goes away as soon as the container has exited.
    let mut follow = Command::new(kubectl_bin())
        .args(["-n", ns, "logs", "-f", name])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("kubectl logs -f")?;
    let mut out = follow.stdout.take().context("no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut log = String::new();
        out.read_to_string(&mut log).map(|_| log)
    });
    kubectl(&["-n", ns, "delete", "pod", name, "--wait=false"])?;
    let deadline = Instant::now() + timeout;
    while follow.try_wait()?.is_none() {
        if Instant::now() > deadline {
            follow.kill().ok();
            anyhow::bail!("load pod {name} did not finish within {timeout:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let log = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the log reader panicked"))??;
    load_summary(&log)
}

/// Waits until every Deployment of the Helm release `instance` in `ns` has rolled out and is
/// available (`kubectl rollout status`), for at most `timeout` (e.g. `3m`).
pub fn wait_for_deployments(ns: &str, instance: &str, timeout: &str) -> Result<()> {
    kubectl(&[
        "-n",
        ns,
        "rollout",
        "status",
        "deployment",
        "-l",
        &format!("app.kubernetes.io/instance={instance}"),
        &format!("--timeout={timeout}"),
    ])
    .map(|_| ())
}

pub fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

pub fn curl_json(url: &str) -> Result<Value> {
    let out = run("curl", &["-sS", "--fail", "--max-time", "10", url], None)?;
    serde_json::from_str(&out).with_context(|| format!("{url} answered no JSON: {out}"))
}

/// The one JSON summary `payplane load --json` printed in a pod's log.
pub fn load_summary(log: &str) -> Result<Value> {
    let start = log
        .find('{')
        .with_context(|| format!("no JSON summary in the load log:\n{log}"))?;
    let end = log.rfind('}').context("no end of the JSON summary")?;
    serde_json::from_str(&log[start..=end]).with_context(|| format!("bad summary:\n{log}"))
}

/// Asserts a load run lost nothing: every call answered, no gRPC error, every payment read back
/// in a final state.
pub fn assert_no_failed_payment(what: &str, s: &Value) {
    let sent = s["sent"].as_u64().unwrap_or(0);
    assert!(sent > 0, "{what}: no payment sent: {s:#}");
    assert_eq!(
        s["errors"],
        serde_json::json!({}),
        "{what}: failed CreatePayment calls: {s:#}"
    );
    assert_eq!(
        s["ok"].as_u64(),
        Some(sent),
        "{what}: not every payment answered: {s:#}"
    );
    let f = &s["final_states"];
    assert_eq!(
        f["checked"].as_u64(),
        Some(sent),
        "{what}: not every payment read back: {s:#}"
    );
    assert_eq!(
        f["pending"].as_u64(),
        Some(0),
        "{what}: payments left PENDING: {s:#}"
    );
    assert_eq!(
        f["errors"],
        serde_json::json!({}),
        "{what}: GetPayment failed: {s:#}"
    );
    assert_eq!(
        f["succeeded"].as_u64().unwrap_or(0) + f["failed"].as_u64().unwrap_or(0),
        sent,
        "{what}: payments not in a final state: {s:#}"
    );
}
