//! A day of releases on a real cluster, under continuous payment load — the platform's proof.
//!
//! The platform is installed with Helm (images of this commit) with every service behind a
//! Rollout, and payments flow through the gateway for the whole day. Then, as a bank's release
//! team would, with the `payplane` CLI in their own names (alice releases, bob approves):
//!
//! 1. routing's new version is released during a freeze window: it waits, then walks its canary
//!    steps and is promoted;
//! 2. accounting's new version is promoted (at 50% the canary takes about half the calls);
//! 3. settlement's new version stops at an approval gate: alice may not approve her own release,
//!    bob does, and it is promoted;
//! 4. a ReleasePlan releases a configuration change of accounting, then gateway's new version, in
//!    that order (channel-sim stands for the acquirers outside the bank and keeps its book in
//!    memory: it is not released during the day, so that its statement covers the whole day);
//! 5. three bad versions of accounting (5% UNAVAILABLE, +100 ms, a ledger rounding bug that only
//!    the invariant guard sees) are each rolled back by the controller on its own;
//! 6. the load stops; every settlement window is closed and reconciled against the channel's
//!    statement; the checker finds the rounding canary's damage in the ledger's balances (and
//!    nothing else), the operator rewrites them from the transfers (`RepairBalances`), and the
//!    platform's invariants hold (ledger sums to zero, every payment final, every success settled
//!    exactly once, channel approvals match);
//! 7. one payment's trace in Jaeger crosses all five services, each in its new version;
//!    `payplane report` shows the day: five promotions, three change failures, three restores.
//!
//! Payments may fail only while a bad canary serves (each failed call's time is in the load's
//! summary) and none is lost or left half-done. Prints `FIGURE` lines (release durations, time to
//! rollback, payments/s, failures per bad release) for BENCHMARKS.md.
//!
//! Run by `ci/deploy test day`, which builds and pushes the images (two tags), creates the
//! namespace with fresh databases and their Secret, and sets the PAYPLANE_E2E_* variables read
//! in `Day::from_env`.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, Result};
use payplane_e2e::{
    canary::{Rollback, Service},
    cli::payplane,
    endofday::{self, Endpoints},
    helm::{charts_dir, install_platform},
    kube::{helm_run, kubectl, kubectl_stdin, require_cluster, required_env, wait_for},
    platform::{
        assert_no_failed_payment, curl_json, load_pod_result, start_load_pod, stop_load_pod,
        wait_for_deployments,
    },
};
use payplane_testkit::cluster;
use serde_json::{Value, json};

const RELEASE: &str = "day";
const CONTROLLER: &str = "day-controller";
/// The continuous load, for the whole day.
const DAY_LOAD: &str = "day-load";
const DAY_RATE: &str = "20/s";
/// Extra payments per second while a bad version is released, and for how long (covers the
/// release, the rollback and the canary's shutdown).
const BURST_RATE: &str = "20/s";
const BURST_SECONDS: u64 = 100;
/// The configuration change the release plan makes to accounting (its log filter).
const PLAN_LOG_LEVEL: &str = "info,sqlx=warn";
/// A failed payment call counts against a bad release if it was sent between the release's start
/// and this long after its canary's last call.
const FAILURE_SLACK: Duration = Duration::from_secs(15);

/// (service, gRPC service its canary is judged on).
const SERVICES: [(&str, &str); 5] = [
    ("routing", "payplane.routing.v1.RoutingService"),
    ("accounting", "payplane.accounting.v1.LedgerService"),
    ("settlement", "payplane.settlement.v1.SettlementService"),
    ("channel-sim", "payplane.channel.v1.ChannelService"),
    ("gateway", "payplane.payment.v1.PaymentService"),
];

/// Each service's Rollout for the day: short pauses, the canary judged against the stable on its
/// own gRPC calls every 3 s (and accounting's also on the ledger's invariants); settlement's
/// release needs a second person's approval after its first step.
fn rollout_values(otlp: &str) -> Value {
    let mut values = json!({"global": {"otel": {"endpoint": otlp, "samplingRatio": 1.0}}});
    for (service, grpc) in SERVICES {
        let mut steps = vec![
            json!({"setWeight": 33}),
            json!({"pause": {"duration": "20s"}}),
            json!({"setWeight": 50}),
            json!({"pause": {"duration": "20s"}}),
        ];
        if service == "settlement" {
            steps.insert(
                2,
                json!({"approval": {"requireDifferentPerson": true, "approvers": ["group:release-managers"]}}),
            );
        }
        let mut metrics = vec![json!({
            "name": "grpc",
            // The canary's pods turn Ready and clients find them when their DNS answer expires:
            // until each side has minSamples calls a measurement is inconclusive.
            "initialDelay": "10s",
            "interval": if service == "accounting" { "2s" } else { "3s" },
            "failureLimit": 0,
            "inconclusiveLimit": 25,
            "provider": {"scrape": {"grpcService": grpc, "judge": {"minSamples": 30}}},
        })];
        if service == "accounting" {
            metrics.push(json!({
                "name": "ledger-invariants",
                "interval": "3s",
                "failureLimit": 0,
                "provider": {"ledgerInvariants": {"address": "{{ include \"payplane.grpcUrl\" . }}"}},
            }));
        }
        values[service] = json!({"rollout": {
            "enabled": true,
            "progressDeadlineSeconds": 240,
            "canary": {"steps": steps, "analysis": {"inline": {"metrics": metrics}}},
        }});
    }
    values
}

struct Day {
    ns: String,
    tag: String,
    next_tag: String,
    registry: String,
    jaeger: String,
    gateway_db: String,
    commit: String,
    commit_time: String,
    values_file: PathBuf,
    rt: tokio::runtime::Runtime,
}

impl Day {
    fn from_env() -> Self {
        let ns = required_env("PAYPLANE_E2E_DAY_NAMESPACE");
        let values_file = std::env::temp_dir().join(format!("payplane-{ns}-values.json"));
        let otlp = required_env("PAYPLANE_E2E_OTLP");
        std::fs::write(&values_file, rollout_values(&otlp).to_string()).expect("write the values file");
        Self {
            tag: required_env("PAYPLANE_E2E_TAG"),
            next_tag: required_env("PAYPLANE_E2E_NEXT_TAG"),
            registry: required_env("PAYPLANE_E2E_REGISTRY"),
            jaeger: required_env("PAYPLANE_E2E_JAEGER_QUERY"),
            gateway_db: format!("{}_gateway", required_env("PAYPLANE_E2E_DAY_DATABASE")),
            commit: std::env::var("PAYPLANE_E2E_COMMIT").unwrap_or_default(),
            commit_time: std::env::var("PAYPLANE_E2E_COMMIT_TIME").unwrap_or_default(),
            values_file,
            rt: tokio::runtime::Runtime::new().expect("a tokio runtime"),
            ns,
        }
    }

    fn service(&self, name: &str) -> Service {
        let grpc = SERVICES
            .iter()
            .find(|(s, _)| *s == name)
            .map(|(_, g)| *g)
            .expect("a service of the platform");
        Service::new(&self.ns, RELEASE, name, grpc)
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
            // The identity policies are cluster-wide: the test applies them (as the platform's
            // own controller install does), not this namespaced controller.
            "--set",
            "admissionPolicies.enabled=false",
            "--wait",
            "--timeout",
            "3m",
        ])
        .map(drop)
    }

    fn install_platform(&self) -> Result<()> {
        let values = self.values_file.to_str().context("a UTF-8 path")?;
        install_platform(
            RELEASE,
            &self.ns,
            &self.tag,
            &self.registry,
            &["-f", values, "--wait", "--timeout", "5m"],
        )
        .map(drop)
    }

    /// The cluster-wide identity policies, the namespace under them, and the release team:
    /// alice (payments-devs) and bob (release-managers), each with a Role to release here and a
    /// kubeconfig of their own (a client certificate signed through the CSR API).
    fn release_team(&self) -> (PathBuf, PathBuf) {
        let policies = charts_dir().join("rollout-controller/policies");
        self.rt.block_on(async {
            let admin = cluster::admin_client().await;
            cluster::apply_admission_policies(
                &admin,
                "payplane-e2e",
                &[
                    policies.join("release-identity.yaml"),
                    policies.join("bindings.yaml"),
                ],
            )
            .await;
            (
                cluster::user_kubeconfig(&admin, "alice", &["payments-devs"]).await,
                cluster::user_kubeconfig(&admin, "bob", &["release-managers"]).await,
            )
        })
    }

    fn apply(&self, manifest: &Value) -> Result<()> {
        kubectl_stdin(&["apply", "-f", "-"], manifest.to_string().as_bytes()).map(drop)
    }

    fn gateway_url(&self) -> String {
        format!(
            "http://{RELEASE}-gateway-headless.{}.svc.cluster.local:50051",
            self.ns
        )
    }

    fn start_load(&self, name: &str, rate: &str, seconds: u64) -> Result<()> {
        let image = format!("{}/payplane/cli:{}", self.registry, self.tag);
        start_load_pod(&self.ns, name, &image, &self.gateway_url(), rate, seconds).map(drop)
    }

    /// The gRPC URL of a service's ClusterIP Service (the host is the node: kube-proxy routes it).
    fn service_url(&self, service: &str) -> Result<String> {
        let ip = kubectl(&[
            "-n",
            &self.ns,
            "get",
            "service",
            &format!("{RELEASE}-{service}"),
            "-o",
            "jsonpath={.spec.clusterIP}",
        ])?;
        Ok(format!("http://{ip}:50051"))
    }

    /// `payplane release SERVICE ARGS` as `who`, with the commit the images were built from.
    fn release(&self, who: &Path, service: &str, args: &[&str]) -> String {
        let mut all = vec!["release", service];
        all.extend_from_slice(args);
        if !self.commit.is_empty() && !self.commit_time.is_empty() {
            all.extend(["--commit", &self.commit, "--commit-time", &self.commit_time]);
        }
        payplane(Some(who), &self.ns, &all).unwrap().expect(0)
    }

    /// `payplane watch SERVICE`: its exit code and output.
    fn watch(&self, who: &Path, service: &str) -> (i32, String) {
        let out = payplane(Some(who), &self.ns, &["watch", service, "--timeout", "8m"]).unwrap();
        (out.code, format!("{}{}", out.stdout, out.stderr))
    }
}

/// The scenario's figures: each printed when it is measured, and all together at the end.
#[derive(Default)]
struct Figures(Vec<String>);

impl Figures {
    fn push(&mut self, figure: String) {
        println!("FIGURE day: {figure}");
        self.0.push(figure);
    }

    fn print_all(&self) {
        println!("\nThe day's figures:");
        for f in &self.0 {
            println!("FIGURE day: {f}");
        }
    }
}

/// A release's window on the wall clock, for telling which failed calls fell inside it.
struct Window {
    what: String,
    from: SystemTime,
    to: SystemTime,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// A freeze window from now until the minute after the next (FreezePolicy dates have minutes):
/// 60 to 120 s from now.
fn freeze_window() -> (String, String) {
    let now = chrono::Utc::now();
    let start = now.format("%Y-%m-%dT%H:%M").to_string();
    let end = (now + chrono::Duration::seconds(120))
        .format("%Y-%m-%dT%H:%M")
        .to_string();
    (start, end)
}

#[test]
#[ignore = "needs the local cloud with images and databases: ci/deploy test day"]
fn a_day_of_releases_under_payment_load() {
    require_cluster();
    let day = Day::from_env();
    let ns = day.ns.clone();
    let next = day.next_tag.clone();
    assert_ne!(day.tag, next, "a release needs a different image tag");
    let start = Instant::now();

    day.install_controller()
        .unwrap_or_else(|e| panic!("rollout-controller install failed: {e:#}"));
    day.install_platform()
        .unwrap_or_else(|e| panic!("platform install failed: {e:#}"));
    wait_for_deployments(&ns, RELEASE, "3m").unwrap_or_else(|e| panic!("deployments not available: {e:#}"));
    for (s, _) in SERVICES {
        day.service(s)
            .wait_phase("Healthy", "stableRevision", Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{s}: the Rollout did not adopt the Deployment: {e:#}"));
    }
    println!(
        "FIGURE day: platform installed with the controller in {:.0} s",
        start.elapsed().as_secs_f64()
    );

    let (alice, bob) = day.release_team();
    day.apply(&json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "releaser", "namespace": ns},
        "rules": [
            {"apiGroups": ["apps"], "resources": ["deployments", "controllerrevisions"], "verbs": ["get", "list", "watch", "patch"]},
            {"apiGroups": ["payplane.io"], "resources": ["rollouts"], "verbs": ["get", "list", "watch", "patch"]},
        ],
    }))
    .unwrap();
    day.apply(&json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "releasers", "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "releaser"},
        "subjects": [
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"},
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob"},
        ],
    }))
    .unwrap();
    kubectl(&[
        "label",
        "namespace",
        &ns,
        "payplane.io/governance=enforced",
        "--overwrite",
    ])
    .unwrap();

    day.start_load(DAY_LOAD, DAY_RATE, 3600).unwrap();
    std::thread::sleep(Duration::from_secs(10));
    let mut figures = Figures::default();

    // 1. routing, released during a freeze window: held until the window ends, then promoted.
    let (from, to) = freeze_window();
    day.apply(&json!({
        "apiVersion": "payplane.io/v1alpha1", "kind": "FreezePolicy",
        "metadata": {"name": format!("{ns}-cutover")},
        "spec": {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
            "windows": [{"name": "cutover", "timeZone": "UTC", "dates": {"start": from, "end": to}}],
        },
    }))
    .unwrap();
    let routing = day.service("routing");
    let released = Instant::now();
    let out = day.release(&alice, "routing", &["--image", &next]);
    assert!(out.contains("started by alice"), "{out}");
    let held = wait_for("routing held by the freeze", Duration::from_secs(60), || {
        let st = routing.status()?;
        Ok((st["pauseReason"] == "FreezeWindow").then_some(st))
    })
    .unwrap();
    let until = chrono::DateTime::parse_from_rfc3339(held["freeze"]["until"].as_str().unwrap_or_default())
        .unwrap_or_else(|e| panic!("status.freeze.until: {e}: {held:#}"));
    assert!(
        routing.canary_pods().unwrap().is_empty(),
        "a canary pod started during the freeze"
    );
    let (code, out) = day.watch(&alice, "routing");
    assert_eq!(code, 0, "routing was not promoted after the freeze:\n{out}");
    assert!(
        chrono::Utc::now() > until,
        "routing was promoted before the freeze ended at {until}"
    );
    assert!(
        routing
            .images()
            .unwrap()
            .iter()
            .all(|i| i.ends_with(&format!(":{next}")))
    );
    figures.push(format!(
        "routing released during a freeze window: held {:.0} s, promoted {:.0} s after the release",
        (until.with_timezone(&chrono::Utc)
            - chrono::DateTime::<chrono::Utc>::from(SystemTime::now() - released.elapsed()))
        .num_milliseconds() as f64
            / 1000.0,
        released.elapsed().as_secs_f64()
    ));
    kubectl(&["delete", "freezepolicy", &format!("{ns}-cutover")]).unwrap();

    // 2. accounting: at 50% the canary takes about half of the ledger calls; promoted.
    let accounting = day.service("accounting");
    let stable_before = accounting.status().unwrap()["stableRevision"].clone();
    let released = Instant::now();
    day.release(&alice, "accounting", &["--image", &next]);
    wait_for("accounting at 50%", Duration::from_secs(240), || {
        let st = accounting.status()?;
        anyhow::ensure!(st["phase"] != "Degraded", "rolled back: {}", st["abortReason"]);
        Ok((st["currentStepIndex"] == 3 && st["weight"] == 50).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    let before = accounting.calls_by_track().unwrap();
    std::thread::sleep(Duration::from_secs(12));
    let after = accounting.calls_by_track().unwrap();
    let (canary, stable) = (after.0 - before.0, after.1 - before.1);
    let share = canary / (canary + stable).max(1.0);
    assert!(
        (0.35..=0.65).contains(&share),
        "at 50% the canary took {:.0}% of the calls ({canary} canary, {stable} stable)",
        share * 100.0
    );
    let (code, out) = day.watch(&alice, "accounting");
    assert_eq!(code, 0, "accounting was not promoted:\n{out}");
    let promoted = accounting.status().unwrap();
    assert_ne!(promoted["stableRevision"], stable_before);
    figures.push(format!(
        "accounting promoted in {:.0} s; at 50% its canary took {:.0}% of {:.0} ledger calls in 12 s",
        released.elapsed().as_secs_f64(),
        share * 100.0,
        canary + stable
    ));

    // 3. settlement: waits for a second person. Not alice (she released it); bob.
    let settlement = day.service("settlement");
    let released = Instant::now();
    day.release(&alice, "settlement", &["--image", &next]);
    let (code, out) = day.watch(&alice, "settlement");
    assert_eq!(code, 3, "settlement should wait for an approval:\n{out}");
    let refused = payplane(Some(&alice), &ns, &["approve", "settlement"]).unwrap();
    assert_ne!(refused.code, 0, "alice approved her own release: {refused:?}");
    let out = payplane(Some(&bob), &ns, &["approve", "settlement"])
        .unwrap()
        .expect(0);
    assert!(out.contains("approved by bob"), "{out}");
    let (code, out) = day.watch(&bob, "settlement");
    assert_eq!(
        code, 0,
        "settlement was not promoted after bob's approval:\n{out}"
    );
    // The approval is in the Rollout's conditions (and in the audit trail and the report).
    let st = settlement.status().unwrap();
    assert_eq!(st["releasedBy"], "alice", "{st:#}");
    let approval = st["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Approval"))
        .cloned()
        .unwrap_or_default();
    assert!(
        approval["message"]
            .as_str()
            .is_some_and(|m| m.contains("approved by bob")),
        "{st:#}"
    );
    figures.push(format!(
        "settlement promoted in {:.0} s, approval by bob included",
        released.elapsed().as_secs_f64()
    ));

    // 4. accounting's configuration, then gateway's new version, as one ReleasePlan.
    let plan_file = std::env::temp_dir().join(format!("payplane-{ns}-plan.json"));
    std::fs::write(
        &plan_file,
        json!({
            "apiVersion": "payplane.io/v1alpha1", "kind": "ReleasePlan",
            "metadata": {"name": "day-plan"},
            "spec": {"services": [
                {"rollout": format!("{RELEASE}-accounting"), "env": [{"name": "RUST_LOG", "value": PLAN_LOG_LEVEL}]},
                {"rollout": format!("{RELEASE}-gateway"), "image": next},
            ]},
        })
        .to_string(),
    )
    .unwrap();
    let released = Instant::now();
    let out = payplane(
        None,
        &ns,
        &["plan", plan_file.to_str().unwrap(), "--timeout", "10m"],
    )
    .unwrap()
    .expect(0);
    let plan: Value =
        serde_json::from_str(&kubectl(&["-n", &ns, "get", "releaseplan", "day-plan", "-o", "json"]).unwrap())
            .unwrap();
    let members = plan["status"]["services"].as_array().cloned().unwrap_or_default();
    assert_eq!(plan["status"]["phase"], "Succeeded", "{out}\n{plan:#}");
    assert!(
        members.len() == 2
            && members.iter().all(|m| m["phase"] == "Promoted")
            && members[1]["startedAt"].as_str() >= members[0]["finishedAt"].as_str(),
        "the plan's members out of order or not promoted: {plan:#}"
    );
    assert!(
        day.service("gateway")
            .images()
            .unwrap()
            .iter()
            .all(|i| i.ends_with(&format!(":{next}")))
    );
    figures.push(format!(
        "release plan (accounting's log level, then gateway's new version) succeeded in {:.0} s",
        released.elapsed().as_secs_f64()
    ));

    // The plan changed accounting's configuration: that is the good version from here on.
    let good_accounting = accounting.status().unwrap()["stableRevision"].clone();

    // 5. Three bad versions of accounting, each rolled back by the controller on its own.
    let mut windows: Vec<Window> = Vec::new();
    let mut rollbacks: Vec<(String, Rollback)> = Vec::new();
    let bad: [(&str, &[&str], &str); 3] = [
        (
            "5% UNAVAILABLE",
            &["--env", "FAULT_UNAVAILABLE_RATIO=0.05"],
            "grpc",
        ),
        (
            "+100 ms",
            &[
                "--env",
                "FAULT_DELAY=100ms",
                "--unset-env",
                "FAULT_UNAVAILABLE_RATIO",
            ],
            "grpc",
        ),
        (
            "ledger rounding bug",
            &[
                "--env",
                "FAULT_LOSE_MINOR_UNIT=true",
                "--unset-env",
                "FAULT_DELAY",
            ],
            "ledger-invariants",
        ),
    ];
    for (i, (what, args, judged_by)) in bad.into_iter().enumerate() {
        let burst = format!("day-burst-{i}");
        day.start_load(&burst, BURST_RATE, BURST_SECONDS).unwrap();
        std::thread::sleep(Duration::from_secs(5));
        let from = SystemTime::now();
        day.release(&alice, "accounting", args);
        let r = accounting
            .follow_rollback(what, Duration::from_secs(180))
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert!(
            r.reason.contains(judged_by),
            "{what}: rolled back for {}",
            r.reason
        );
        println!("{what}: canary {} rolled back: {}", r.pod, r.reason);
        let payments = load_pod_result(&ns, &burst, Duration::from_secs(BURST_SECONDS + 180))
            .unwrap_or_else(|e| panic!("{what}: {e:#}"));
        assert_all_final(what, &payments);
        figures.push(format!(
            "bad release {what}: accounting at {:.0} calls/s, its canary at {:.0}/s; aborted {:.1} s after its first call, last call {:.1} s after it ({:.0} calls); burst payments sent {} failed {} retried {}",
            r.service_rate,
            r.canary_rate,
            r.to_abort.as_secs_f64(),
            r.to_stable.as_secs_f64(),
            r.canary_calls,
            payments["sent"],
            total(&payments["errors"]),
            total(&payments["retries"]),
        ));
        windows.push(Window {
            what: what.to_owned(),
            from,
            to: r.last_call_at + FAILURE_SLACK,
        });
        rollbacks.push((what.to_owned(), r));
    }
    // Back on the good template: the stable's again, nothing to release.
    day.release(&alice, "accounting", &["--unset-env", "FAULT_LOSE_MINOR_UNIT"]);
    let healthy = accounting
        .wait_phase("Healthy", "stableRevision", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("back on the good version: {e:#}"));
    assert_eq!(healthy["stableRevision"], good_accounting);
    assert!(
        accounting.canary_pods().unwrap().is_empty(),
        "a canary pod is left"
    );

    // 6. The day's payments: failures only inside a bad release's window, none lost.
    let whole = stop_load_pod(&ns, DAY_LOAD, Duration::from_secs(600)).unwrap();
    assert_all_final("the day's payments", &whole);
    let outside: Vec<&Value> = whole["failed_calls"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|f| {
                    let at = f["sent_at_unix_ms"].as_u64().unwrap_or(0);
                    !windows
                        .iter()
                        .any(|w| unix_ms(w.from) <= at && at <= unix_ms(w.to))
                })
                .collect()
        })
        .unwrap_or_default();
    assert!(
        outside.is_empty(),
        "payments failed outside the bad releases' windows ({:?}): {outside:?}",
        windows.iter().map(|w| &w.what).collect::<Vec<_>>()
    );
    figures.push(format!(
        "the day's load: {} payments at {:.1}/s over {:.0} s, {} failed calls (all while a bad canary served), {} retried, p50 {:.0} ms, p99 {:.0} ms, final {}",
        whole["sent"],
        whole["throughput_per_second"].as_f64().unwrap_or(0.0),
        whole["elapsed_seconds"].as_f64().unwrap_or(0.0),
        total(&whole["errors"]),
        total(&whole["retries"]),
        whole["latency_ms"]["p50"].as_f64().unwrap_or(0.0),
        whole["latency_ms"]["p99"].as_f64().unwrap_or(0.0),
        whole["final_states"],
    ));

    // 7. One payment on the new versions: its trace crosses all five services, each at `next`.
    day.start_load("day-trace", "5/s", 4).unwrap();
    let last = load_pod_result(&ns, "day-trace", Duration::from_secs(120)).unwrap();
    assert_no_failed_payment("the last payments", &last);
    let trace = last["sample_trace_id"]
        .as_str()
        .expect("a sample trace id")
        .to_owned();
    let versions = wait_for("the trace in Jaeger", Duration::from_secs(60), || {
        let t = curl_json(&format!("{}/api/traces/{trace}", day.jaeger))?;
        let mut seen: Vec<(String, String)> = t["data"][0]["processes"]
            .as_object()
            .map(|m| {
                m.values()
                    .map(|p| {
                        let version = p["tags"]
                            .as_array()
                            .and_then(|tags| tags.iter().find(|t| t["key"] == "service.version"))
                            .and_then(|t| t["value"].as_str())
                            .unwrap_or_default();
                        (
                            p["serviceName"].as_str().unwrap_or_default().to_owned(),
                            version.to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        seen.sort();
        seen.dedup();
        Ok((seen.len() >= SERVICES.len()).then_some(seen))
    })
    .unwrap();
    for (s, _) in SERVICES {
        // The channel simulator stands for the acquirers, outside the bank: never released here.
        let version = if s == "channel-sim" { &day.tag } else { &next };
        assert!(
            versions.iter().any(|(name, v)| name == s && v == version),
            "{s} at {version} missing from trace {trace}: {versions:?}"
        );
    }
    println!("trace {trace}: {versions:?} — {}/trace/{trace}", day.jaeger);

    // 8. The end of the day: windows closed and reconciled; the rounding canary's damage found by
    //    the checker and repaired from the ledger's transfers; then every invariant holds.
    let (windows_closed, damaged, repaired, report) = day
        .rt
        .block_on(async {
            endofday::wait_until_final(&day.gateway_db, Duration::from_secs(120))
                .await
                .context("payments still in flight")?;
            let settlement_url = day.service_url("settlement")?;
            let channel_url = day.service_url("channel-sim")?;
            let closed = endofday::close_and_reconcile(&settlement_url, &channel_url).await?;
            let endpoints = Endpoints {
                accounting: day.service_url("accounting")?,
                settlement: settlement_url,
                channel: channel_url,
            };
            let damaged = endofday::check_invariants(&day.gateway_db, &endpoints).await?;
            let repaired = endofday::repair_balances(
                &endpoints.accounting,
                "day: the ledger rounding-bug canary, rolled back",
            )
            .await?;
            let report = endofday::check_invariants(&day.gateway_db, &endpoints).await?;
            anyhow::Ok((closed, damaged, repaired, report))
        })
        .unwrap_or_else(|e| panic!("the end of the day: {e:#}"));
    assert!(!windows_closed.is_empty(), "no settlement window had items");
    for w in &windows_closed {
        println!("settlement window {w:?}");
        assert!(
            w.breaks.is_empty() && w.matched == w.items,
            "window {} did not reconcile: {w:?}",
            w.window_id
        );
    }
    // The rounding canary wrote balances a unit short while it served: the ledger, and nothing
    // else, is out; the repair puts the lost units back.
    println!("before the repair: {damaged}");
    assert!(
        !damaged.is_ok(),
        "the rounding canary's lost units not seen: {damaged}"
    );
    assert!(
        damaged
            .violations
            .iter()
            .all(|v| v.starts_with("ledger") || v.starts_with("CheckInvariants")),
        "violations besides the ledger's balances: {:#?}",
        damaged.violations
    );
    assert!(repaired.accounts > 0 && repaired.units > 0, "{repaired:?}");
    println!("invariants: {report}");
    assert!(report.is_ok(), "invariant violations: {:#?}", report.violations);
    assert!(report.succeeded > 0 && report.pending == 0, "{report}");
    assert_eq!(report.settlement_items, report.succeeded, "{report}");
    figures.push(format!(
        "end of day: {} windows closed and reconciled ({} items, 0 breaks); the rounding canary's damage: {} minor units in {} accounts, rewritten from the transfers; {report}",
        windows_closed.len(),
        windows_closed.iter().map(|w| w.items).sum::<u64>(),
        repaired.units,
        repaired.accounts,
    ));

    // 9. The delivery report says what happened.
    let text = payplane(None, &ns, &["report", "--since", "3h"])
        .unwrap()
        .expect(0);
    println!("{text}");
    let json: Value = serde_json::from_str(
        &payplane(None, &ns, &["report", "--since", "3h", "--format", "json"])
            .unwrap()
            .expect(0),
    )
    .unwrap();
    let overall = &json["overall"];
    assert_eq!(overall["promotions"], 5, "{json:#}");
    assert_eq!(overall["changeFailures"], 3, "{json:#}");
    assert_eq!(overall["deploymentsFinished"], 8, "{json:#}");
    assert_eq!(overall["restores"], 3, "{json:#}");
    assert_eq!(json["services"]["accounting"]["changeFailures"], 3, "{json:#}");
    // The report's time to restore runs from the abort to the controller's RolledBack (the
    // canary's pods gone, after their drain), longer than the moment the last call reached the
    // canary (measured above from the pod's own counter): both are printed.
    let restore = overall["timeToRestoreMedianSeconds"].as_f64().unwrap_or(0.0);
    assert!(
        restore > 0.0 && restore <= 120.0,
        "time to restore {restore} s: {json:#}"
    );
    let last_call = rollbacks
        .iter()
        .map(|(_, r)| r.to_stable.as_secs_f64())
        .fold(0.0, f64::max);
    let settled = json["releases"]
        .as_array()
        .and_then(|rs| {
            rs.iter()
                .find(|r| r["service"] == "settlement" && r["outcome"] == "Promoted")
        })
        .cloned()
        .unwrap_or_default();
    assert_eq!(settled["startedBy"], "alice", "{json:#}");
    assert_eq!(settled["approvedBy"], json!(["bob"]), "{json:#}");
    figures.push(format!(
        "report: {} promotions, {} change failures of {} finished ({:.0}%), time to restore median {restore:.1} s (abort → canary pods gone; the last call reached a bad canary at most {last_call:.1} s after its first)",
        overall["promotions"],
        overall["changeFailures"],
        overall["deploymentsFinished"],
        overall["changeFailureRate"].as_f64().unwrap_or(0.0) * 100.0
    ));

    // The platform first, while the controller still runs to release the Rollouts' finalizers.
    helm_run(&["uninstall", RELEASE, "-n", &ns, "--wait", "--timeout", "3m"]).unwrap();
    helm_run(&["uninstall", CONTROLLER, "-n", &ns, "--wait", "--timeout", "2m"]).unwrap();
    figures.push(format!(
        "the whole day took {:.0} s",
        start.elapsed().as_secs_f64()
    ));
    figures.print_all();
}

/// The sum of a summary's counts by code (`errors`, `retries`).
fn total(counts: &Value) -> u64 {
    counts
        .as_object()
        .map(|m| m.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0)
}

/// Every payment read back in a final state: answered or failed cleanly, none pending or lost.
fn assert_all_final(what: &str, s: &Value) {
    let sent = s["sent"].as_u64().unwrap_or(0);
    assert!(sent > 0, "{what}: no payment sent: {s:#}");
    let f = &s["final_states"];
    assert_eq!(
        f["checked"].as_u64(),
        Some(s["ok"].as_u64().unwrap_or(0)),
        "{what}: {s:#}"
    );
    assert_eq!(
        f["pending"].as_u64(),
        Some(0),
        "{what}: payments left PENDING: {s:#}"
    );
    assert_eq!(f["errors"], json!({}), "{what}: GetPayment failed: {s:#}");
    assert_eq!(
        s["ok"].as_u64().unwrap_or(0) + total(&s["errors"]),
        sent,
        "{what}: calls neither answered nor failed: {s:#}"
    );
}
