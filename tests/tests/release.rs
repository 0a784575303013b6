//! Canary releases of `accounting` by the rollout controller, on a real cluster under continuous
//! payment load: a good new version promoted with zero failed payments, then three bad ones
//! rolled back automatically — one failing 5% of its calls with UNAVAILABLE, one 100 ms slower,
//! one with a rounding bug that only the ledger's invariant check (the guard) can see.
//!
//! Run by `ci/deploy test`, which builds and pushes the images (two tags), creates the namespace
//! with fresh databases and their Secret, and sets PAYPLANE_E2E_RELEASE_NAMESPACE,
//! PAYPLANE_E2E_TAG, PAYPLANE_E2E_NEXT_TAG and PAYPLANE_E2E_REGISTRY.
//!
//! Prints `FIGURE` lines: the release durations, and the time from the 5%-failing canary's
//! first call to all traffic back on the stable (the canary's last call).

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use payplane_e2e::{
    helm::charts_dir,
    kube::{helm_run, kubectl, require_cluster, required_env, run, wait_for},
    platform::{assert_no_failed_payment, load_pod_result, start_load_pod, wait_for_deployments},
};
use serde_json::Value;

const RELEASE: &str = "rel";
const CONTROLLER: &str = "rel-controller";
const ACCOUNTING: &str = "rel-accounting";
const LEDGER_SERVICE: &str = "payplane.accounting.v1.LedgerService";
/// Payments per second while a bad version is released, and for how long (covers the release,
/// the rollback and the canary's shutdown).
const BAD_LOAD_RATE: &str = "40/s";
const BAD_LOAD_SECONDS: u64 = 100;

/// The Rollout of accounting for this test: the chart's analysis with intervals short enough
/// for a test (and for the time-to-rollback target), and short pauses.
const ROLLOUT_VALUES: &str = r#"
accounting:
  rollout:
    enabled: true
    progressDeadlineSeconds: 240
    canary:
      steps:
        - setWeight: 33
        - pause: {duration: 20s}
        - setWeight: 50
        - pause: {duration: 20s}
      analysis:
        inline:
          metrics:
            - name: grpc
              initialDelay: 10s
              interval: 2s
              failureLimit: 0
              inconclusiveLimit: 15
              provider:
                scrape:
                  grpcService: payplane.accounting.v1.LedgerService
                  judge: {minSamples: 30}
            - name: ledger-invariants
              interval: 3s
              failureLimit: 0
              provider:
                ledgerInvariants:
                  address: '{{ include "payplane.grpcUrl" . }}'
"#;

struct Env {
    ns: String,
    tag: String,
    next_tag: String,
    registry: String,
    values_file: std::path::PathBuf,
}

impl Env {
    fn from_env() -> Self {
        let ns = required_env("PAYPLANE_E2E_RELEASE_NAMESPACE");
        let values_file = std::env::temp_dir().join(format!("payplane-{ns}-rollout-values.yaml"));
        std::fs::write(&values_file, ROLLOUT_VALUES).expect("write the values file");
        Self {
            ns,
            tag: required_env("PAYPLANE_E2E_TAG"),
            next_tag: required_env("PAYPLANE_E2E_NEXT_TAG"),
            registry: required_env("PAYPLANE_E2E_REGISTRY"),
            values_file,
        }
    }

    fn install_controller(&self) -> Result<()> {
        let chart = charts_dir().join("rollout-controller");
        helm_run(&[
            "upgrade",
            "--install",
            CONTROLLER,
            chart.to_str().unwrap(),
            "-n",
            &self.ns,
            "--set",
            &format!("global.image.tag={}", self.tag),
            "--set",
            &format!("global.image.registry={}", self.registry),
            "--set",
            &format!("watchNamespace={}", self.ns),
            // The cluster's identity policies belong to the platform's own controller install.
            "--set",
            "admissionPolicies.enabled=false",
            "--wait",
            "--timeout",
            "3m",
        ])
        .map(drop)
    }

    /// `helm upgrade --install` of the platform (images of the first tag) with accounting's
    /// image `accounting_tag` and extra `--set`s. `wait`: only for the first install (later
    /// upgrades are released by the controller, which keeps the Deployment paused).
    fn platform(&self, accounting_tag: &str, sets: &[&str], wait: bool) -> Result<()> {
        let chart = charts_dir().join("payplane");
        let image_tag = format!("global.image.tag={}", self.tag);
        let accounting_image = format!("accounting.image.tag={accounting_tag}");
        let registry = format!("global.image.registry={}", self.registry);
        let mut args = vec![
            "upgrade",
            "--install",
            RELEASE,
            chart.to_str().unwrap(),
            "-n",
            &self.ns,
            "-f",
            self.values_file.to_str().unwrap(),
            "--set",
            &image_tag,
            "--set",
            &registry,
            "--set",
            &accounting_image,
            "--set",
            "global.database.existingSecret=payplane-db",
        ];
        for s in sets {
            args.extend(["--set", s]);
        }
        if wait {
            args.extend(["--wait", "--timeout", "5m"]);
        }
        helm_run(&args).map(drop)
    }

    fn rollout(&self) -> Result<Value> {
        let out = kubectl(&["-n", &self.ns, "get", "rollout", ACCOUNTING, "-o", "json"])?;
        Ok(serde_json::from_str(&out)?)
    }

    /// Waits until the Rollout is at `phase` for the current template (observed generation and
    /// stable or aborted revision settled), returning its status.
    fn wait_phase(&self, phase: &str, revision_field: &str, timeout: Duration) -> Result<Value> {
        let deployment_hash = || -> Result<String> {
            let d = kubectl(&["-n", &self.ns, "get", "deployment", ACCOUNTING, "-o", "json"])?;
            let d: Value = serde_json::from_str(&d)?;
            Ok(d["spec"]["template"].to_string())
        };
        let template = deployment_hash()?;
        wait_for(&format!("Rollout {ACCOUNTING} to be {phase}"), timeout, || {
            let r = self.rollout()?;
            let st = &r["status"];
            let now = st["phase"].as_str().unwrap_or_default();
            if now == phase && st[revision_field].is_string() && deployment_hash()? == template {
                return Ok(Some(st.clone()));
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
        })
    }

    /// Starts a load pod (`payplane load`) at `rate` for `seconds`.
    fn start_load(&self, name: &str, rate: &str, seconds: u64) -> Result<()> {
        let gateway = format!(
            "http://{RELEASE}-gateway-headless.{}.svc.cluster.local:50051",
            self.ns
        );
        let image = format!("{}/payplane/cli:{}", self.registry, self.tag);
        start_load_pod(&self.ns, name, &image, &gateway, rate, seconds).map(drop)
    }

    /// Waits for a load pod to finish and returns its JSON summary.
    fn load_result(&self, name: &str, timeout: Duration) -> Result<Value> {
        load_pod_result(&self.ns, name, timeout)
    }

    /// LedgerService calls taken so far by accounting's (canary, stable) pods, from their own
    /// /metrics.
    fn calls_by_track(&self) -> Result<(f64, f64)> {
        let out = kubectl(&[
            "-n",
            &self.ns,
            "get",
            "pods",
            "-l",
            "app.kubernetes.io/name=accounting",
            "-o",
            "json",
        ])?;
        let list: Value = serde_json::from_str(&out)?;
        let mut calls = (0.0, 0.0);
        for p in list["items"].as_array().cloned().unwrap_or_default() {
            let Some(ip) = p["status"]["podIP"].as_str() else {
                continue;
            };
            if !p["metadata"]["deletionTimestamp"].is_null() {
                continue;
            }
            let n = ledger_calls(ip)?;
            if p["metadata"]["labels"]["payplane.io/track"] == "canary" {
                calls.0 += n;
            } else {
                calls.1 += n;
            }
        }
        Ok(calls)
    }

    /// The canary pods of accounting: (name, IP, Ready since).
    fn canary_pods(&self) -> Result<Vec<(String, String, Option<String>)>> {
        let out = kubectl(&[
            "-n",
            &self.ns,
            "get",
            "pods",
            "-l",
            "app.kubernetes.io/name=accounting,payplane.io/track=canary",
            "-o",
            "json",
        ])?;
        let list: Value = serde_json::from_str(&out)?;
        Ok(list["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|p| {
                let ready_since = p["status"]["conditions"].as_array().and_then(|cs| {
                    cs.iter()
                        .find(|c| c["type"] == "Ready" && c["status"] == "True")
                        .and_then(|c| c["lastTransitionTime"].as_str().map(String::from))
                });
                (
                    p["metadata"]["name"].as_str().unwrap_or_default().to_string(),
                    p["status"]["podIP"].as_str().unwrap_or_default().to_string(),
                    ready_since,
                )
            })
            .collect())
    }
}

/// Calls handled by the LedgerService of the pod at `ip` (its own /metrics), all codes.
fn ledger_calls(ip: &str) -> Result<f64> {
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
        .filter(|l| l.starts_with("grpc_server_handled_total{") && l.contains(LEDGER_SERVICE))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// What a bad release did: when its canary took its first call, when the rollout aborted, and
/// when the canary took its last call (all traffic back on the stable).
struct Rollback {
    status: Value,
    canary_calls: f64,
    canary_rate: f64,
    to_abort: Duration,
    to_stable: Duration,
}

/// Releases a bad version (the `sets` on top of the good values) and follows it until the
/// controller has rolled it back and the canary takes no more calls.
fn release_bad(env: &Env, what: &str, load: &str, sets: &[&str]) -> Rollback {
    env.start_load(load, BAD_LOAD_RATE, BAD_LOAD_SECONDS).unwrap();
    std::thread::sleep(Duration::from_secs(5));
    env.platform(&env.next_tag, sets, false)
        .unwrap_or_else(|e| panic!("{what}: helm upgrade failed: {e:#}"));
    // The canary's first call: its pod turns Ready and clients pick it up within moments; we
    // watch its own counter to see the first call and the last.
    let (pod, ip) = wait_for(
        &format!("{what}: a Ready canary pod"),
        Duration::from_secs(120),
        || {
            Ok(env
                .canary_pods()?
                .into_iter()
                .find(|(_, ip, ready)| ready.is_some() && !ip.is_empty())
                .map(|(name, ip, _)| (name, ip)))
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let first_call = wait_for(
        &format!("{what}: the canary's first call"),
        Duration::from_secs(60),
        || Ok((ledger_calls(&ip)? > 0.0).then(Instant::now)),
    )
    .unwrap_or_else(|e| panic!("{e:#}"));

    let mut aborted_at = None;
    let mut last_change = first_call;
    let mut last_calls = 0.0;
    let mut rate_window = (first_call, 0.0);
    let deadline = first_call + Duration::from_secs(180);
    loop {
        assert!(
            Instant::now() < deadline,
            "{what}: not rolled back within 180 s of the canary's first call: {}",
            env.rollout().map(|r| r["status"].to_string()).unwrap_or_default()
        );
        match ledger_calls(&ip) {
            Ok(calls) => {
                if calls > last_calls {
                    last_calls = calls;
                    last_change = Instant::now();
                    if aborted_at.is_none() {
                        rate_window = (first_call, calls);
                    }
                }
            }
            // The pod is gone (it stopped after its shutdown delay): no more calls.
            Err(_) => {
                if aborted_at.is_some() {
                    break;
                }
            }
        }
        if aborted_at.is_none() {
            let st = env.rollout().map(|r| r["status"].clone()).unwrap_or_default();
            if st["phase"] == "Degraded" {
                aborted_at = Some(Instant::now());
            }
        }
        // Quiet for 10 s after the abort: the canary is out of every client's balancer.
        if let Some(at) = aborted_at
            && last_change.elapsed() > Duration::from_secs(10)
            && at.elapsed() > Duration::from_secs(10)
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let status = env
        .wait_phase("Degraded", "abortedRevision", Duration::from_secs(30))
        .unwrap();
    let aborted_at = aborted_at.unwrap();
    let seconds = rate_window
        .0
        .elapsed()
        .min(aborted_at - rate_window.0)
        .as_secs_f64()
        .max(1.0);
    println!("{what}: canary pod {pod} rolled back: {}", status["abortReason"]);
    // Every payment made meanwhile ended cleanly: the gateway retried what the canary refused;
    // none is left pending or lost.
    let payments = env
        .load_result(load, Duration::from_secs(BAD_LOAD_SECONDS + 120))
        .unwrap_or_else(|e| panic!("{what}: {e:#}"));
    println!(
        "FIGURE rollback: {what}: payments meanwhile: sent {} ok {} errors {} retries {} at {:.1}/s, p99 {:.0} ms, final {}",
        payments["sent"],
        payments["ok"],
        payments["errors"],
        payments["retries"],
        payments["throughput_per_second"].as_f64().unwrap_or(0.0),
        payments["latency_ms"]["p99"].as_f64().unwrap_or(0.0),
        payments["final_states"]
    );
    assert_no_lost_payment(what, &payments);
    Rollback {
        canary_calls: last_calls,
        canary_rate: rate_window.1 / seconds,
        to_abort: aborted_at - first_call,
        to_stable: last_change.saturating_duration_since(first_call),
        status,
    }
}

fn abort_reason(r: &Rollback) -> String {
    r.status["abortReason"].as_str().unwrap_or_default().to_string()
}

#[test]
#[ignore = "needs the local cloud with images and databases: ci/deploy test"]
fn canary_releases_of_accounting_under_payment_load() {
    require_cluster();
    let env = Env::from_env();
    let ns = env.ns.as_str();
    assert_ne!(env.tag, env.next_tag, "a release needs a different image tag");

    env.install_controller()
        .unwrap_or_else(|e| panic!("rollout-controller install failed: {e:#}"));
    let start = Instant::now();
    env.platform(&env.tag, &[], true)
        .unwrap_or_else(|e| panic!("platform install failed: {e:#}"));
    wait_for_deployments(ns, RELEASE, "3m").unwrap_or_else(|e| panic!("deployments not available: {e:#}"));
    let first = env
        .wait_phase("Healthy", "stableRevision", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("the Rollout did not adopt the Deployment: {e:#}"));
    println!(
        "FIGURE release: platform installed with the controller in {:.0} s, stable {}",
        start.elapsed().as_secs_f64(),
        first["stableRevision"]
    );

    // 1. A good version (the next image tag), under load: promoted, zero failed payments.
    env.start_load("load-good", "15/s", 330).unwrap();
    std::thread::sleep(Duration::from_secs(10));
    let release_start = Instant::now();
    env.platform(&env.next_tag, &[], false)
        .unwrap_or_else(|e| panic!("helm upgrade (good version) failed: {e:#}"));
    // The weight is the request share: during the pause at 50% (step 3), count the calls each
    // track's pods take over 12 s.
    wait_for("the pause at 50%", Duration::from_secs(240), || {
        let st = env.rollout()?["status"].clone();
        if st["phase"] == "Degraded" {
            bail!("rolled back: {}", st["abortReason"]);
        }
        Ok((st["currentStepIndex"] == 3 && st["weight"] == 50).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    let before = env.calls_by_track().unwrap();
    std::thread::sleep(Duration::from_secs(12));
    let after = env.calls_by_track().unwrap();
    let (canary, stable) = (after.0 - before.0, after.1 - before.1);
    let share = canary / (canary + stable).max(1.0);
    println!(
        "FIGURE release: at weight 50% the canary took {canary:.0} of {:.0} ledger calls in 12 s ({:.0}%)",
        canary + stable,
        share * 100.0
    );
    assert!(
        (0.35..=0.65).contains(&share),
        "at 50% the canary took {:.0}% of the calls ({canary} canary, {stable} stable)",
        share * 100.0
    );
    let promoted = env
        .wait_phase("Healthy", "stableRevision", Duration::from_secs(300))
        .unwrap_or_else(|e| panic!("the good version was not promoted: {e:#}"));
    assert_ne!(
        promoted["stableRevision"], first["stableRevision"],
        "{promoted:#}"
    );
    println!(
        "FIGURE release: good version of accounting promoted in {:.0} s (steps 33% → pause 20 s → 50% → pause 20 s → promotion)",
        release_start.elapsed().as_secs_f64()
    );
    // Pods still draining (deletion under way) are the old ones on their way out.
    let pods: Value = serde_json::from_str(
        &kubectl(&[
            "-n",
            ns,
            "get",
            "pods",
            "-l",
            "app.kubernetes.io/name=accounting",
            "-o",
            "json",
        ])
        .unwrap(),
    )
    .unwrap();
    let images: Vec<String> = pods["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            p["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert!(
        !images.is_empty() && images.iter().all(|i| i.ends_with(&format!(":{}", env.next_tag))),
        "accounting pods after promotion: {images:?}"
    );
    let good = env.load_result("load-good", Duration::from_secs(400)).unwrap();
    println!(
        "FIGURE release: payments during the good release: sent {} ok {} retries {} at {:.1}/s, p99 {:.0} ms, final {}",
        good["sent"],
        good["ok"],
        good["retries"],
        good["throughput_per_second"].as_f64().unwrap_or(0.0),
        good["latency_ms"]["p99"].as_f64().unwrap_or(0.0),
        good["final_states"]
    );
    assert_no_failed_payment("payments during the good release", &good);

    // 2. Three bad versions, each rolled back by the controller on its own.
    let errors = release_bad(
        &env,
        "5% UNAVAILABLE",
        "load-errors",
        &["accounting.env.FAULT_UNAVAILABLE_RATIO=0.05"],
    );
    assert!(abort_reason(&errors).contains("grpc"), "{:#}", errors.status);
    println!(
        "FIGURE rollback: 5% UNAVAILABLE canary at {:.0} calls/s: aborted {:.1} s after its first call, last call {:.1} s after it ({} calls)",
        errors.canary_rate,
        errors.to_abort.as_secs_f64(),
        errors.to_stable.as_secs_f64(),
        errors.canary_calls
    );

    let slow = release_bad(
        &env,
        "+100 ms",
        "load-slow",
        &["accounting.env.FAULT_DELAY=100ms"],
    );
    assert!(abort_reason(&slow).contains("grpc"), "{:#}", slow.status);
    println!(
        "FIGURE rollback: +100 ms canary: aborted {:.1} s after its first call, last call {:.1} s after it",
        slow.to_abort.as_secs_f64(),
        slow.to_stable.as_secs_f64()
    );

    let ledger = release_bad(
        &env,
        "ledger rounding bug",
        "load-ledger",
        &["accounting.env.FAULT_LOSE_MINOR_UNIT=true"],
    );
    assert!(
        abort_reason(&ledger).contains("ledger-invariants"),
        "{:#}",
        ledger.status
    );
    println!(
        "FIGURE rollback: ledger-breaking canary: aborted {:.1} s after its first call, last call {:.1} s after it",
        ledger.to_abort.as_secs_f64(),
        ledger.to_stable.as_secs_f64()
    );

    // The chart back on the good values: the template is the stable's again, nothing to release.
    env.platform(&env.next_tag, &[], false).unwrap();
    let healthy = env
        .wait_phase("Healthy", "stableRevision", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("back on the good values: {e:#}"));
    assert_eq!(healthy["stableRevision"], promoted["stableRevision"]);
    assert!(
        env.canary_pods().unwrap().is_empty(),
        "a canary pod is left after the rollbacks"
    );

    for load in ["load-good", "load-errors", "load-slow", "load-ledger"] {
        kubectl(&["-n", ns, "delete", "pod", load, "--wait=false"]).ok();
    }
    // The platform first, while the controller still runs to release the Rollout's finalizer
    // (it unpins the Deployment); then the controller.
    helm_run(&["uninstall", RELEASE, "-n", ns, "--wait", "--timeout", "3m"]).unwrap();
    helm_run(&["uninstall", CONTROLLER, "-n", ns, "--wait", "--timeout", "2m"]).unwrap();
    println!(
        "FIGURE release: the whole scenario took {:.0} s",
        start.elapsed().as_secs_f64()
    );
}

/// Every payment answered or failed cleanly: each one read back in a final state, none pending.
fn assert_no_lost_payment(what: &str, s: &Value) {
    let sent = s["sent"].as_u64().unwrap_or(0);
    assert!(sent > 0, "{what}: no payment sent: {s:#}");
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
        f["succeeded"].as_u64().unwrap_or(0) + f["failed"].as_u64().unwrap_or(0),
        sent,
        "{what}: payments not in a final state: {s:#}"
    );
}
