//! What the cluster tests check about a running platform: pods Ready, `payplane load`'s summary
//! (nothing lost, nothing failed), JSON from HTTP APIs (Jaeger, Prometheus).

use anyhow::{Context, Result};
use serde_json::Value;

use crate::kube::run;

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
