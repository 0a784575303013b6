//! Following a service's Rollout and its canary on the cluster: the Rollout's phase, which pods
//! are the canary, and how many gRPC calls each track's pods took (from the pods' own /metrics),
//! so that a test can tell when a bad canary took its first and its last call.

use std::time::{Duration, Instant, SystemTime};

use anyhow::{Result, bail};
use serde_json::Value;

use crate::kube::{kubectl, run, wait_for};

/// One service of a Helm release in a namespace: its Rollout and Deployment are
/// `<release>-<service>`, its pods are labelled `app.kubernetes.io/name=<service>`.
#[derive(Clone, Debug)]
pub struct Service {
    pub ns: String,
    pub release: String,
    pub name: String,
    /// The gRPC service whose calls count (`payplane.accounting.v1.LedgerService`).
    pub grpc_service: String,
}

/// A canary pod: name, IP, and whether it is Ready.
#[derive(Clone, Debug)]
pub struct CanaryPod {
    pub name: String,
    pub ip: String,
    pub ready: bool,
}

impl Service {
    pub fn new(ns: &str, release: &str, name: &str, grpc_service: &str) -> Self {
        Self {
            ns: ns.into(),
            release: release.into(),
            name: name.into(),
            grpc_service: grpc_service.into(),
        }
    }

    /// The Rollout's (and Deployment's) name.
    pub fn rollout_name(&self) -> String {
        format!("{}-{}", self.release, self.name)
    }

    pub fn rollout(&self) -> Result<Value> {
        let out = kubectl(&[
            "-n",
            &self.ns,
            "get",
            "rollout",
            &self.rollout_name(),
            "-o",
            "json",
        ])?;
        Ok(serde_json::from_str(&out)?)
    }

    pub fn status(&self) -> Result<Value> {
        Ok(self.rollout()?["status"].clone())
    }

    /// Waits until the Rollout is at `phase` for the Deployment's current template (with
    /// `revision_field` of its status set), returning its status. Waiting for Healthy fails at
    /// once if the release was rolled back.
    pub fn wait_phase(&self, phase: &str, revision_field: &str, timeout: Duration) -> Result<Value> {
        let template = || -> Result<String> {
            let d = kubectl(&[
                "-n",
                &self.ns,
                "get",
                "deployment",
                &self.rollout_name(),
                "-o",
                "json",
            ])?;
            let d: Value = serde_json::from_str(&d)?;
            Ok(d["spec"]["template"].to_string())
        };
        let wanted = template()?;
        wait_for(
            &format!("Rollout {} to be {phase}", self.rollout_name()),
            timeout,
            || {
                let st = self.status()?;
                let now = st["phase"].as_str().unwrap_or_default();
                if now == phase && st[revision_field].is_string() && template()? == wanted {
                    return Ok(Some(st));
                }
                if phase == "Healthy" && now == "Degraded" {
                    bail!("the release was rolled back: {}", st["abortReason"]);
                }
                bail!(
                    "phase {now}, step {}, weight {}, message {}",
                    st["currentStepIndex"],
                    st["weight"],
                    st["message"]
                )
            },
        )
    }

    fn pods(&self, selector: &str) -> Result<Vec<Value>> {
        let out = kubectl(&["-n", &self.ns, "get", "pods", "-l", selector, "-o", "json"])?;
        let list: Value = serde_json::from_str(&out)?;
        Ok(list["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            // Pods being deleted are on their way out.
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .collect())
    }

    /// The service's canary pods (not being deleted).
    pub fn canary_pods(&self) -> Result<Vec<CanaryPod>> {
        let selector = format!("app.kubernetes.io/name={},payplane.io/track=canary", self.name);
        Ok(self
            .pods(&selector)?
            .iter()
            .map(|p| CanaryPod {
                name: p["metadata"]["name"].as_str().unwrap_or_default().into(),
                ip: p["status"]["podIP"].as_str().unwrap_or_default().into(),
                ready: crate::platform::is_ready(p),
            })
            .collect())
    }

    /// The images the service's pods run.
    pub fn images(&self) -> Result<Vec<String>> {
        Ok(self
            .pods(&format!("app.kubernetes.io/name={}", self.name))?
            .iter()
            .map(|p| {
                p["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap_or_default()
                    .into()
            })
            .collect())
    }

    /// Calls taken so far by the service's (canary, stable) pods.
    pub fn calls_by_track(&self) -> Result<(f64, f64)> {
        let mut calls = (0.0, 0.0);
        for p in self.pods(&format!("app.kubernetes.io/name={}", self.name))? {
            let Some(ip) = p["status"]["podIP"].as_str() else {
                continue;
            };
            let n = grpc_calls(ip, &self.grpc_service)?;
            if p["metadata"]["labels"]["payplane.io/track"] == "canary" {
                calls.0 += n;
            } else {
                calls.1 += n;
            }
        }
        Ok(calls)
    }

    /// Follows a release that is expected to fail: from its canary's first call until the
    /// controller has rolled it back and the canary has taken no call for 10 s (it is out of
    /// every client's balancer) or is gone.
    pub fn follow_rollback(&self, what: &str, timeout: Duration) -> Result<Rollback> {
        let pod = wait_for(
            &format!("{what}: a Ready canary pod"),
            Duration::from_secs(120),
            || {
                Ok(self
                    .canary_pods()?
                    .into_iter()
                    .find(|p| p.ready && !p.ip.is_empty()))
            },
        )?;
        let first_call = wait_for(
            &format!("{what}: the canary's first call"),
            Duration::from_secs(60),
            || Ok((grpc_calls(&pod.ip, &self.grpc_service)? > 0.0).then(Instant::now)),
        )?;
        // All of the service's calls (both tracks) from here to the abort: the rate it served.
        let service_calls_at_first = self.calls_by_track().map(|(c, s)| c + s).unwrap_or(0.0);
        let mut service_calls_at_abort = service_calls_at_first;
        let mut aborted_at = None;
        let (mut last_change, mut last_calls, mut calls_at_abort) = (first_call, 0.0, 0.0);
        loop {
            if first_call.elapsed() > timeout {
                bail!(
                    "{what}: not rolled back within {timeout:?} of the canary's first call: {}",
                    self.status().map(|s| s.to_string()).unwrap_or_default()
                );
            }
            match grpc_calls(&pod.ip, &self.grpc_service) {
                Ok(calls) if calls > last_calls => {
                    last_calls = calls;
                    last_change = Instant::now();
                }
                Ok(_) => {}
                // The pod is gone (it stopped after its shutdown delay): no more calls.
                Err(_) if aborted_at.is_some() => break,
                Err(_) => {}
            }
            if aborted_at.is_none() && self.status().is_ok_and(|s| s["phase"] == "Degraded") {
                aborted_at = Some(Instant::now());
                calls_at_abort = last_calls;
                service_calls_at_abort = self
                    .calls_by_track()
                    .map(|(c, s)| c + s)
                    .unwrap_or(service_calls_at_first);
            }
            if let Some(at) = aborted_at
                && last_change.elapsed() > Duration::from_secs(10)
                && at.elapsed() > Duration::from_secs(10)
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        let aborted_at = aborted_at.expect("the loop ends only after the abort");
        let status = self.wait_phase("Degraded", "abortedRevision", Duration::from_secs(30))?;
        let serving = (aborted_at - first_call).as_secs_f64().max(1.0);
        let now = (Instant::now(), SystemTime::now());
        let wall = |i: Instant| now.1 - now.0.duration_since(i);
        Ok(Rollback {
            pod: pod.name,
            reason: status["abortReason"].as_str().unwrap_or_default().to_owned(),
            canary_calls: last_calls,
            canary_rate: calls_at_abort / serving,
            service_rate: (service_calls_at_abort - service_calls_at_first).max(0.0) / serving,
            to_abort: aborted_at - first_call,
            to_stable: last_change.saturating_duration_since(first_call),
            first_call_at: wall(first_call),
            last_call_at: wall(last_change),
        })
    }
}

/// What a bad release did, from its canary's first call.
#[derive(Clone, Debug)]
pub struct Rollback {
    pub pod: String,
    pub reason: String,
    /// Calls the canary took in all.
    pub canary_calls: f64,
    /// Its calls per second until the abort.
    pub canary_rate: f64,
    /// The whole service's calls per second (canary and stable) over the same time.
    pub service_rate: f64,
    /// First call → the Rollout Degraded.
    pub to_abort: Duration,
    /// First call → its last call (all traffic back on the stable).
    pub to_stable: Duration,
    pub first_call_at: SystemTime,
    pub last_call_at: SystemTime,
}

/// Calls handled by `grpc_service` in the pod at `ip` (its own /metrics), all codes.
pub fn grpc_calls(ip: &str, grpc_service: &str) -> Result<f64> {
    let body = run(
        "curl",
        &[
            "-sS",
            "--fail",
            "--max-time",
            "2",
            &format!("http://{ip}:9090/metrics"),
        ],
        None,
    )?;
    Ok(body
        .lines()
        .filter(|l| l.starts_with("grpc_server_handled_total{") && l.contains(grpc_service))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}
