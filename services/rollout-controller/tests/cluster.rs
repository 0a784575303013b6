//! Integration tests against the REAL apiserver of the local cluster (`ci/cluster up`): the
//! controller runs in this process, watching one temporary namespace per test; the Deployments
//! run busybox pods on the real node. Unreachable cluster = failed test with instructions.
//!
//! `eval "$(ci/cluster env)" && cargo test -p payplane-rollout-controller --test cluster`

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use k8s_openapi::api::{
    apps::v1::Deployment,
    autoscaling::v2::HorizontalPodAutoscaler,
    coordination::v1::Lease,
    core::v1::{Namespace, Pod},
    events::v1::Event,
    rbac::v1::{Role, RoleBinding},
};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use payplane_delivery::{EventKind, Outcome, ReleaseEvent, event::Verdict};
use payplane_rollout_controller::{
    cdevents,
    crd::{
        AnalysisRef, ApprovalStep, CanaryStep, DateRange, FreezePolicy, FreezePolicySpec, FreezeWindow,
        NamespaceSelector, PauseReason, Phase, Rollout, RolloutSpec, RolloutStatus, TemplateRef,
    },
    lease::LeaseConfig,
    reconcile::{canary_name, template_hash},
};
use payplane_testkit::cluster;
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[macro_use]
mod common;
use common::{
    Controller, IMAGE, cluster, deployment, fake_prometheus, inline_prometheus, install_policies, pause,
    weight,
};

struct TestNs {
    client: Client,
    name: String,
}

impl TestNs {
    async fn new(client: &Client, prefix: &str) -> Self {
        let name = format!("rc-{prefix}-{}", std::process::id() as u64 * 1000 + rand_suffix());
        let ns = serde_json::from_value::<Namespace>(json!({
            "metadata": {"name": name, "labels": {"payplane.io/test": "rollout-controller"}}
        }))
        .unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        Self {
            client: client.clone(),
            name,
        }
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Deletes the Rollouts while the controller still runs (their finalizer hands the
    /// Deployment back), checks they are gone, stops the controller and deletes the namespace.
    async fn finish(self, controller: Controller) {
        controller.retire(self.api::<Rollout>()).await;
        let _ = Api::<Namespace>::all(self.client.clone())
            .delete(&self.name, &DeleteParams::background())
            .await;
    }
}

fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    (SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        % 1000) as u64
}

async fn create_deployment(ns: &TestNs, name: &str, version: &str, replicas: i32) {
    ns.api::<Deployment>()
        .create(&PostParams::default(), &deployment(name, version, replicas))
        .await
        .expect("create Deployment");
}

/// What a chart upgrade does: a new template (client-side, as `kubectl set env` would).
async fn set_version(ns: &TestNs, name: &str, version: &str) {
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "env": [{"name": "VERSION", "value": version}]}]}}}});
    ns.api::<Deployment>()
        .patch(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .expect("update template");
}

async fn current_hash(ns: &TestNs, name: &str) -> String {
    let d = ns.api::<Deployment>().get(name).await.unwrap();
    template_hash(&serde_json::to_value(&d.spec.template).unwrap())
}

async fn create_rollout(
    ns: &TestNs,
    name: &str,
    deployment: &str,
    steps: Vec<CanaryStep>,
    analysis: Option<AnalysisRef>,
) {
    let mut spec = RolloutSpec {
        deployment_name: deployment.into(),
        ..Default::default()
    };
    spec.strategy.canary.steps = steps;
    spec.strategy.canary.analysis = analysis;
    let rollout = Rollout::new(name, spec);
    ns.api::<Rollout>()
        .create(&PostParams::default(), &rollout)
        .await
        .expect("create Rollout");
}

async fn status(ns: &TestNs, name: &str) -> RolloutStatus {
    ns.api::<Rollout>()
        .get(name)
        .await
        .ok()
        .and_then(|r| r.status)
        .unwrap_or_default()
}

async fn wait_status(
    ns: &TestNs,
    name: &str,
    what: &str,
    timeout: Duration,
    check: impl Fn(&RolloutStatus) -> bool,
) -> RolloutStatus {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let st = status(ns, name).await;
        if check(&st) {
            return st;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}; status: {}",
            serde_json::to_string_pretty(&st).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn request(ns: &TestNs, rollout: &str, verb: &str) {
    let patch = json!({"metadata": {"annotations": {"payplane.io/request": verb}}});
    ns.api::<Rollout>()
        .patch(rollout, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .expect("annotate");
}

/// Versions (the VERSION env) of the ready pods of a Deployment's track.
async fn pod_versions(ns: &TestNs, app: &str, canary: bool) -> Vec<String> {
    let pods = ns
        .api::<Pod>()
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .unwrap();
    let mut out: Vec<String> = pods
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.labels().get("payplane.io/track").is_some() == canary)
        .filter_map(|p| {
            let c = &p.spec.as_ref()?.containers[0];
            c.env
                .as_ref()?
                .iter()
                .find(|e| e.name == "VERSION")?
                .value
                .clone()
        })
        .collect();
    out.sort();
    out
}

/// Events of the namespace: (reason, note, how many times it happened).
async fn events(ns: &TestNs) -> Vec<(String, String, i32)> {
    let list = ns.api::<Event>().list(&ListParams::default()).await.unwrap();
    list.items
        .into_iter()
        .filter(|e| e.reporting_controller.as_deref() == Some("rollout-controller"))
        .map(|e| {
            (
                e.reason.unwrap_or_default(),
                e.note.unwrap_or_default(),
                e.series.map(|s| s.count).unwrap_or(1),
            )
        })
        .collect()
}

async fn has_event(ns: &TestNs, reason: &str, note_part: &str) -> bool {
    events(ns)
        .await
        .iter()
        .any(|(r, n, _)| r == reason && n.contains(note_part))
}

const POD_TIMEOUT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_template_becomes_a_canary_that_pauses_and_is_promoted() {
    let client = cluster().await;
    let ns = TestNs::new(&client, "promote").await;
    let controller = Controller::start(&client, &ns.name, None);
    create_deployment(&ns, "web", "v1", 2).await;
    create_rollout(
        &ns,
        "web",
        "web",
        vec![weight(33), pause(None), weight(50), pause(Some("2s"))],
        None,
    )
    .await;

    let v1 = current_hash(&ns, "web").await;
    let st = wait_status(&ns, "web", "Healthy on v1", POD_TIMEOUT, |s| {
        s.phase == Phase::Healthy && s.stable_revision.is_some()
    })
    .await;
    assert_eq!(st.stable_revision.as_deref(), Some(v1.as_str()));
    // The status is written before the actions run (fencing), so the pin follows within moments.
    wait!(
        "the Deployment is pinned",
        Duration::from_secs(10),
        ns.api::<Deployment>().get("web").await.unwrap().spec.paused == Some(true)
    );

    set_version(&ns, "web", "v2").await;
    let v2 = current_hash(&ns, "web").await;
    let st = wait_status(
        &ns,
        "web",
        "paused at the indefinite pause (step 1)",
        POD_TIMEOUT,
        |s| s.phase == Phase::Paused && s.current_step_index == Some(1),
    )
    .await;
    assert_eq!(st.canary_revision.as_deref(), Some(v2.as_str()));
    assert_eq!(st.desired_weight, 33);
    assert_eq!(st.weight, 33, "1 canary pod next to 2 stable pods");
    assert_eq!(pod_versions(&ns, "web", true).await, ["v2"]);
    assert_eq!(
        pod_versions(&ns, "web", false).await,
        ["v1", "v1"],
        "the stable keeps the old template"
    );
    let canary = ns.api::<Deployment>().get(&canary_name("web")).await.unwrap();
    assert_eq!(
        canary.labels().get("payplane.io/track").map(String::as_str),
        Some("canary")
    );
    assert!(
        canary
            .owner_references()
            .iter()
            .any(|o| o.kind == "Rollout" && o.name == "web")
    );

    // Still paused a while later: nothing advances by itself.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(status(&ns, "web").await.current_step_index, Some(1));

    request(&ns, "web", "promote").await;
    let st = wait_status(&ns, "web", "promoted to v2", Duration::from_secs(120), |s| {
        s.phase == Phase::Healthy && s.stable_revision.as_deref() == Some(v2.as_str())
    })
    .await;
    assert_eq!(st.canary_revision, None);
    wait!(
        "canary scaled to 0 and stable pods on v2",
        POD_TIMEOUT,
        pod_versions(&ns, "web", true).await.is_empty()
            && pod_versions(&ns, "web", false).await == ["v2", "v2"]
    );
    let annotations = ns
        .api::<Rollout>()
        .get("web")
        .await
        .unwrap()
        .annotations()
        .clone();
    assert!(
        !annotations.contains_key("payplane.io/request"),
        "the request was consumed"
    );
    for (reason, note) in [
        ("RolloutStarted", v2.as_str()),
        ("StepCompleted", "step 3 (pause 2s)"),
        ("RolloutCompleted", v2.as_str()),
    ] {
        assert!(
            has_event(&ns, reason, note).await,
            "event {reason} {note}: {:?}",
            events(&ns).await
        );
    }
    ns.finish(controller).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_retry_undo_and_supersede() {
    let client = cluster().await;
    let ns = TestNs::new(&client, "abort").await;
    let controller = Controller::start(&client, &ns.name, None);
    create_deployment(&ns, "api", "v1", 2).await;
    create_rollout(&ns, "api", "api", vec![weight(33), pause(None), weight(50)], None).await;
    let v1 = current_hash(&ns, "api").await;
    wait_status(&ns, "api", "Healthy", POD_TIMEOUT, |s| {
        s.phase == Phase::Healthy && s.stable_revision.is_some()
    })
    .await;

    set_version(&ns, "api", "v2").await;
    let v2 = current_hash(&ns, "api").await;
    wait_status(&ns, "api", "paused on v2", POD_TIMEOUT, |s| {
        s.phase == Phase::Paused && s.current_step_index == Some(1)
    })
    .await;

    // Abort: canary to 0, stable untouched, and it stays aborted.
    request(&ns, "api", "abort").await;
    let st = wait_status(&ns, "api", "Degraded", Duration::from_secs(30), |s| {
        s.phase == Phase::Degraded
    })
    .await;
    assert!(st.abort);
    assert_eq!(st.aborted_revision.as_deref(), Some(v2.as_str()));
    assert_eq!(st.stable_revision.as_deref(), Some(v1.as_str()));
    wait!(
        "canary pods gone after abort",
        POD_TIMEOUT,
        pod_versions(&ns, "api", true).await.is_empty()
    );
    wait!(
        "the stable still runs v1 on both pods",
        POD_TIMEOUT,
        pod_versions(&ns, "api", false).await == ["v1", "v1"]
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        status(&ns, "api").await.phase,
        Phase::Degraded,
        "an aborted revision is not retried by itself"
    );

    // Retry: the same revision again from step 0.
    request(&ns, "api", "retry").await;
    wait_status(&ns, "api", "paused again after retry", POD_TIMEOUT, |s| {
        s.phase == Phase::Paused && s.current_step_index == Some(1) && !s.abort
    })
    .await;

    // Supersede: v3 arrives while v2 is paused.
    set_version(&ns, "api", "v3").await;
    let v3 = current_hash(&ns, "api").await;
    wait_status(&ns, "api", "v3 replaced v2", POD_TIMEOUT, |s| {
        s.canary_revision.as_deref() == Some(v3.as_str())
            && s.phase == Phase::Paused
            && s.current_step_index == Some(1)
    })
    .await;
    assert!(
        has_event(
            &ns,
            "RolloutSuperseded",
            &format!("canary {v2} superseded by {v3}")
        )
        .await,
        "{:?}",
        events(&ns).await
    );
    wait!(
        "canary pod runs v3",
        POD_TIMEOUT,
        pod_versions(&ns, "api", true).await == ["v3"]
    );

    // Undo during a canary: back to the stable template, canary removed.
    request(&ns, "api", "undo").await;
    let st = wait_status(
        &ns,
        "api",
        "Healthy on v1 after undo",
        Duration::from_secs(60),
        |s| s.phase == Phase::Healthy && s.canary_revision.is_none(),
    )
    .await;
    assert_eq!(st.stable_revision.as_deref(), Some(v1.as_str()));
    assert_eq!(
        current_hash(&ns, "api").await,
        v1,
        "the Deployment's template is v1 again"
    );
    wait!(
        "no canary pods after undo",
        POD_TIMEOUT,
        pod_versions(&ns, "api", true).await.is_empty()
    );
    // The trail of the v3 release: undone, then superseded by the stable template.
    let v3_trail: Vec<EventKind> = trail(&ns, "api")
        .await
        .iter()
        .filter(|e| e.spec.revision == v3)
        .map(|e| e.spec.kind)
        .collect();
    assert_eq!(
        v3_trail.iter().rev().take(2).collect::<Vec<_>>(),
        [&EventKind::Superseded, &EventKind::Undone],
        "{v3_trail:?}"
    );

    // Undo when healthy goes to the previous revision, released as a canary like any other.
    request(&ns, "api", "undo").await;
    let st = wait_status(
        &ns,
        "api",
        "undo to the previous revision (v3) is released as a canary",
        POD_TIMEOUT,
        |s| s.canary_revision.as_deref() == Some(v3.as_str()),
    )
    .await;
    assert_eq!(st.stable_revision.as_deref(), Some(v1.as_str()));
    ns.finish(controller).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_specs_get_a_condition_naming_the_field_and_an_event() {
    let client = cluster().await;
    let ns = TestNs::new(&client, "invalid").await;
    let controller = Controller::start(&client, &ns.name, None);
    create_deployment(&ns, "svc", "v1", 1).await;
    let unknown_template = CanaryStep {
        analysis: Some(AnalysisRef {
            templates: vec![TemplateRef {
                template_name: "missing".into(),
            }],
            inline: None,
        }),
        ..Default::default()
    };
    // (rollout, deployment, steps, background analysis, expected condition text)
    type Case = (
        &'static str,
        &'static str,
        Vec<CanaryStep>,
        Option<AnalysisRef>,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "weights",
            "svc",
            vec![weight(50), weight(20)],
            None,
            "spec.strategy.canary.steps[1].setWeight: 20 is not above the weight 50",
        ),
        (
            "range",
            "svc",
            vec![weight(120)],
            None,
            "spec.strategy.canary.steps[0].setWeight: 120 is out of range",
        ),
        (
            "nodeploy",
            "absent",
            vec![weight(10)],
            None,
            "spec.deploymentName: Deployment `absent` does not exist",
        ),
        (
            "template",
            "svc",
            vec![unknown_template],
            None,
            "steps[0].analysis.templates[0].templateName: AnalysisTemplate `missing` does not exist",
        ),
        (
            "promql",
            "svc",
            vec![weight(10)],
            Some(inline_prometheus(None, 0.9)),
            "provider.prometheus.address: is required",
        ),
    ];
    for (name, deployment, steps, analysis, _) in &cases {
        create_rollout(&ns, name, deployment, steps.clone(), analysis.clone()).await;
    }
    for (name, _, _, _, expected) in &cases {
        let st = wait_status(
            &ns,
            name,
            &format!("InvalidSpec on {name}"),
            Duration::from_secs(30),
            |s| s.phase == Phase::InvalidSpec,
        )
        .await;
        let condition = st
            .conditions
            .iter()
            .find(|c| c.type_ == "InvalidSpec")
            .expect("InvalidSpec condition");
        assert_eq!(condition.status, "True");
        assert!(
            condition.message.contains(expected),
            "{name}: {}",
            condition.message
        );
        wait!(
            format!("InvalidSpec event for {name}"),
            Duration::from_secs(10),
            has_event(&ns, "InvalidSpec", expected).await
        );
    }
    // No hot loop: the generation was observed once and nothing else changes meanwhile.
    let before = ns
        .api::<Rollout>()
        .get("weights")
        .await
        .unwrap()
        .resource_version();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        ns.api::<Rollout>()
            .get("weights")
            .await
            .unwrap()
            .resource_version(),
        before,
        "no status churn"
    );
    let d = ns.api::<Deployment>().get("svc").await.unwrap();
    assert_ne!(
        d.spec.paused,
        Some(true),
        "an invalid Rollout does not take the Deployment over"
    );
    ns.finish(controller).await;
}

/// A one-route Prometheus HTTP API answering `value` for any instant query.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_background_analysis_aborts_even_during_a_manual_pause() {
    let client = cluster().await;
    let ns = TestNs::new(&client, "analysis").await;
    let value = Arc::new(std::sync::Mutex::new("0.999".to_owned()));
    let prometheus = fake_prometheus(value.clone()).await;
    let controller = Controller::start(&client, &ns.name, None);
    create_deployment(&ns, "pay", "v1", 2).await;
    create_rollout(
        &ns,
        "pay",
        "pay",
        vec![weight(33), pause(None), weight(50)],
        Some(inline_prometheus(Some(prometheus), 0.99)),
    )
    .await;
    wait_status(&ns, "pay", "Healthy", POD_TIMEOUT, |s| {
        s.phase == Phase::Healthy && s.stable_revision.is_some()
    })
    .await;
    set_version(&ns, "pay", "v2").await;
    let st = wait_status(&ns, "pay", "paused with the analysis passing", POD_TIMEOUT, |s| {
        s.phase == Phase::Paused
            && s.current_step_index == Some(1)
            && s.analysis_runs
                .iter()
                .any(|r| r.metrics.iter().any(|m| m.successful >= 2))
    })
    .await;
    assert!(!st.abort);
    // The success rate drops below 0.99 while a human gate is pending.
    *value.lock().unwrap() = "0.95".into();
    let st = wait_status(
        &ns,
        "pay",
        "aborted by the analysis",
        Duration::from_secs(30),
        |s| s.phase == Phase::Degraded,
    )
    .await;
    let reason = st.abort_reason.unwrap_or_default();
    assert!(
        reason.contains("success-rate") && reason.contains("0.95"),
        "{reason}"
    );
    wait!(
        "canary gone",
        POD_TIMEOUT,
        pod_versions(&ns, "pay", true).await.is_empty()
    );
    assert!(has_event(&ns, "RolloutAborted", "0.95").await);
    ns.finish(controller).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_failover_mid_rollout_without_a_double_step() {
    let client = cluster().await;
    let ns = TestNs::new(&client, "leader").await;
    let lease = |identity: &str| LeaseConfig {
        namespace: ns.name.clone(),
        name: "rollout-controller".into(),
        identity: identity.into(),
        lease_duration: Duration::from_secs(4),
        renew_every: Duration::from_millis(500),
    };
    let a = Controller::start(&client, &ns.name, Some(lease("instance-a")));
    // Let A win, then start B as the standby.
    let leases = ns.api::<Lease>();
    wait!(
        "instance-a holds the lease",
        Duration::from_secs(20),
        leases
            .get_opt("rollout-controller")
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec?.holder_identity)
            .as_deref()
            == Some("instance-a")
    );
    let b = Controller::start(&client, &ns.name, Some(lease("instance-b")));

    create_deployment(&ns, "led", "v1", 2).await;
    let steps = vec![
        weight(33),
        pause(Some("4s")),
        weight(50),
        pause(Some("4s")),
        weight(60),
    ];
    create_rollout(&ns, "led", "led", steps, None).await;
    wait_status(&ns, "led", "Healthy", POD_TIMEOUT, |s| {
        s.phase == Phase::Healthy && s.stable_revision.is_some()
    })
    .await;
    set_version(&ns, "led", "v2").await;
    let v2 = current_hash(&ns, "led").await;
    wait_status(&ns, "led", "in the first pause", POD_TIMEOUT, |s| {
        s.current_step_index == Some(1)
    })
    .await;

    // A crashes mid-rollout (no lease release); B must take over after expiry and finish.
    a.kill();
    wait!(
        "instance-b takes the lease",
        Duration::from_secs(20),
        leases
            .get_opt("rollout-controller")
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec?.holder_identity)
            .as_deref()
            == Some("instance-b")
    );
    wait_status(
        &ns,
        "led",
        "promoted by instance-b",
        Duration::from_secs(180),
        |s| s.phase == Phase::Healthy && s.stable_revision.as_deref() == Some(v2.as_str()),
    )
    .await;

    // Every step completed exactly once, whoever led.
    let all = events(&ns).await;
    for step in 0..5 {
        let needle = format!("step {step} (");
        let count: i32 = all
            .iter()
            .filter(|(r, n, _)| r == "StepCompleted" && n.contains(&needle))
            .map(|(_, _, c)| c)
            .sum();
        assert_eq!(count, 1, "step {step} completed {count} times: {all:?}");
    }
    let reporters: BTreeMap<String, usize> = ns
        .api::<Event>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| e.reporting_instance)
        .fold(BTreeMap::new(), |mut m, i| {
            *m.entry(i).or_default() += 1;
            m
        });
    assert!(
        reporters.contains_key("instance-a") && reporters.contains_key("instance-b"),
        "both led: {reporters:?}"
    );
    ns.finish(b).await;
}

// ---------------------------------------------------------------------------------------------
// Freeze windows and approval gates

/// A dated window from `start` to `end`, written as wall-clock times in `tz`.
fn dated_window(
    name: &str,
    tz: &str,
    start: chrono::DateTime<chrono::Utc>,
    end: chrono::DateTime<chrono::Utc>,
) -> FreezeWindow {
    let zone: chrono_tz::Tz = tz.parse().unwrap();
    let local =
        |t: chrono::DateTime<chrono::Utc>| t.with_timezone(&zone).format("%Y-%m-%dT%H:%M:%S").to_string();
    FreezeWindow {
        name: name.into(),
        time_zone: Some(tz.into()),
        dates: Some(DateRange {
            start: local(start),
            end: local(end),
        }),
        ..Default::default()
    }
}

fn parse_time(s: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap()
        .with_timezone(&chrono::Utc)
}

async fn label_namespace(ns: &TestNs, key: &str, value: &str) {
    let patch = json!({"metadata": {"labels": {key: value}}});
    Api::<Namespace>::all(ns.client.clone())
        .patch(&ns.name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .expect("label namespace");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_that_reaches_a_freeze_window_waits_and_resumes_after_it() {
    let client = cluster().await;
    let ns = TestNs::new(&client, "freeze").await;
    // A cluster-wide FreezePolicy, selecting only this namespace.
    label_namespace(&ns, "payplane.io/freeze-test", &ns.name).await;
    let controller = Controller::start(&client, &ns.name, None);
    create_deployment(&ns, "ledger", "v1", 2).await;
    create_rollout(
        &ns,
        "ledger",
        "ledger",
        vec![weight(33), pause(Some("6s")), weight(50)],
        None,
    )
    .await;
    wait_status(&ns, "ledger", "Healthy", POD_TIMEOUT, |s| {
        s.phase == Phase::Healthy && s.stable_revision.is_some()
    })
    .await;
    set_version(&ns, "ledger", "v2").await;
    let v2 = current_hash(&ns, "ledger").await;
    let st = wait_status(&ns, "ledger", "in the 6 s pause (step 1)", POD_TIMEOUT, |s| {
        s.current_step_index == Some(1)
    })
    .await;
    // The settlement cut-off starts 3 s into the pause (before it ends) and lasts 10 s.
    // Whole seconds: the window is written as local date-times to the second.
    let pause_started = parse_time(st.step_started_at.as_deref().unwrap()).timestamp();
    let now = chrono::Utc::now().timestamp();
    let start = chrono::DateTime::from_timestamp((pause_started + 3).max(now + 1), 0).unwrap();
    let end = start + chrono::Duration::seconds(10);
    assert!(
        start.timestamp() <= pause_started + 5,
        "the test saw the pause too late to place a window before its end (slow machine)"
    );
    let policy_name = format!("{}-cutoff", ns.name);
    let policy = FreezePolicy::new(
        &policy_name,
        FreezePolicySpec {
            namespace_selector: Some(NamespaceSelector {
                match_labels: BTreeMap::from([("payplane.io/freeze-test".to_owned(), ns.name.clone())]),
            }),
            windows: vec![dated_window("settlement-cutoff", "Asia/Shanghai", start, end)],
        },
    );
    let mut policy = policy;
    policy.metadata.labels = Some(BTreeMap::from([(
        "payplane.io/test-ns".to_owned(),
        ns.name.clone(),
    )]));
    let policies: Api<FreezePolicy> = Api::all(client.clone());
    policies
        .create(&PostParams::default(), &policy)
        .await
        .expect("create FreezePolicy");

    // The pause ends inside the window: held, with the window and its end in the status.
    let st = wait_status(
        &ns,
        "ledger",
        "held by the freeze window",
        Duration::from_secs(20),
        |s| s.pause_reason == Some(PauseReason::FreezeWindow),
    )
    .await;
    assert!(chrono::Utc::now() < end, "held before the window's end");
    assert_eq!(st.current_step_index, Some(1));
    let hold = st.freeze.clone().expect("status.freeze");
    assert_eq!(hold.window, "settlement-cutoff");
    assert_eq!(hold.source, format!("FreezePolicy/{policy_name}"));
    assert_eq!(parse_time(hold.until.as_deref().unwrap()), end);
    let frozen = st
        .conditions
        .iter()
        .find(|c| c.type_ == "Frozen")
        .expect("Frozen condition");
    assert_eq!(frozen.status, "True");
    assert!(frozen.message.contains("settlement-cutoff"), "{}", frozen.message);
    wait!(
        "Frozen event",
        Duration::from_secs(10),
        has_event(&ns, "Frozen", "settlement-cutoff").await
    );
    // Nothing advances while it lasts, and nothing polls: still step 1 and one canary pod two
    // seconds later, the status unchanged and (almost) no reconcile in between.
    let version = ns
        .api::<Rollout>()
        .get("ledger")
        .await
        .unwrap()
        .resource_version();
    let reconciles = controller.metrics.reconciles.get();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let st = status(&ns, "ledger").await;
    if chrono::Utc::now() < end - chrono::Duration::milliseconds(500) {
        assert_eq!(st.current_step_index, Some(1), "advanced inside the window");
        assert_eq!(st.desired_weight, 33);
        assert_eq!(pod_versions(&ns, "ledger", true).await, ["v2"]);
        assert_eq!(
            ns.api::<Rollout>()
                .get("ledger")
                .await
                .unwrap()
                .resource_version(),
            version,
            "no status churn while held"
        );
        let during = controller.metrics.reconciles.get() - reconciles;
        assert!(during <= 3, "{during} reconciles in 2 s while held: a busy loop");
    } else {
        eprintln!("the machine is slow: the window nearly ended before the hold was checked");
    }

    // After the window the release goes on by itself (requeued for the window's end) and is
    // promoted.
    let st = wait_status(
        &ns,
        "ledger",
        "step 2 after the window",
        Duration::from_secs(30),
        |s| s.current_step_index.unwrap_or(0) >= 2 || s.phase == Phase::Healthy,
    )
    .await;
    assert!(
        chrono::Utc::now() >= end,
        "advanced before the window's end: {st:?}"
    );
    assert_eq!(st.freeze, None);
    wait_status(&ns, "ledger", "promoted after the window", POD_TIMEOUT, |s| {
        s.phase == Phase::Healthy && s.stable_revision.as_deref() == Some(v2.as_str())
    })
    .await;
    assert!(has_event(&ns, "FreezeEnded", "settlement-cutoff").await);
    // The policies' own status: Valid, or not with the fields named (this one selects no
    // namespace, so it holds nothing).
    let valid = |name: String| {
        let policies = policies.clone();
        async move {
            policies
                .get(&name)
                .await
                .ok()
                .and_then(|p| p.status)
                .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Valid"))
        }
    };
    wait!(
        "the policy is Valid",
        Duration::from_secs(20),
        valid(policy_name.clone())
            .await
            .is_some_and(|c| c.status == "True")
    );
    let mut broken = FreezePolicy::new(
        &format!("{}-broken", ns.name),
        FreezePolicySpec {
            namespace_selector: Some(NamespaceSelector {
                match_labels: BTreeMap::from([("payplane.io/no-such-label".to_owned(), "x".to_owned())]),
            }),
            windows: vec![FreezeWindow {
                name: "typo".into(),
                time_zone: Some("Asia/Beijing".into()),
                dates: Some(DateRange {
                    start: "2026-12-26".into(),
                    end: "2026-12-24".into(),
                }),
                ..Default::default()
            }],
        },
    );
    broken.metadata.labels = policy.metadata.labels.clone();
    policies
        .create(&PostParams::default(), &broken)
        .await
        .expect("create the broken FreezePolicy");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let condition = loop {
        if let Some(c) = valid(broken.name_any()).await.filter(|c| c.status == "False") {
            break c;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the broken policy never got Valid=False"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let message = condition.message;
    assert!(
        message.contains("spec.windows[0].timeZone") && message.contains("spec.windows[0].dates.end"),
        "{message}"
    );
    let _ = policies
        .delete(&broken.name_any(), &DeleteParams::default())
        .await;
    // The step completed once, after the window.
    let completed: Vec<_> = events(&ns)
        .await
        .into_iter()
        .filter(|(r, n, _)| r == "StepCompleted" && n.contains("step 1 ("))
        .collect();
    assert_eq!(completed.len(), 1, "{completed:?}");
    let _ = policies.delete(&policy_name, &DeleteParams::default()).await;
    ns.finish(controller).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inside_a_freeze_window_promote_is_refused_and_abort_still_acts() {
    let client = cluster().await;
    let ns = TestNs::new(&client, "freezeabort").await;
    let controller = Controller::start(&client, &ns.name, None);
    create_deployment(&ns, "fx", "v1", 2).await;
    create_rollout(&ns, "fx", "fx", vec![weight(33), pause(None), weight(50)], None).await;
    wait_status(&ns, "fx", "Healthy", POD_TIMEOUT, |s| {
        s.phase == Phase::Healthy && s.stable_revision.is_some()
    })
    .await;
    set_version(&ns, "fx", "v2").await;
    wait_status(&ns, "fx", "paused at step 1", POD_TIMEOUT, |s| {
        s.phase == Phase::Paused && s.current_step_index == Some(1)
    })
    .await;
    // A Rollout-level window in force now, for an hour (London time).
    let now = chrono::Utc::now();
    let window = dated_window(
        "month-end-close",
        "Europe/London",
        now - chrono::Duration::minutes(1),
        now + chrono::Duration::hours(1),
    );
    let patch = json!({"spec": {"freezeWindows": [window]}});
    ns.api::<Rollout>()
        .patch("fx", &PatchParams::default(), &Patch::Merge(patch))
        .await
        .expect("add a freeze window");
    request(&ns, "fx", "promote").await;
    let st = wait_status(&ns, "fx", "promote refused", Duration::from_secs(20), |s| {
        s.pause_reason == Some(PauseReason::FreezeWindow)
    })
    .await;
    assert_eq!(st.current_step_index, Some(1));
    assert_eq!(st.freeze.as_ref().unwrap().source, "spec.freezeWindows");
    wait!(
        "RequestRefused event",
        Duration::from_secs(10),
        has_event(&ns, "RequestRefused", "`promote` refused").await
    );
    // Abort acts inside the window.
    request(&ns, "fx", "abort").await;
    let st = wait_status(&ns, "fx", "aborted", Duration::from_secs(30), |s| {
        s.phase == Phase::Degraded
    })
    .await;
    assert!(st.abort);
    assert_eq!(st.freeze, None, "an aborted release is not held");
    wait!(
        "canary pods gone after abort",
        POD_TIMEOUT,
        pod_versions(&ns, "fx", true).await.is_empty()
    );
    ns.finish(controller).await;
}

/// A real user of the cluster: a client certificate (CN=name, O=groups) signed by the cluster CA
/// through the CertificateSigningRequest API (signer kubernetes.io/kube-apiserver-client, issued by
/// the kube-controller-manager), approved by the admin.
async fn user_client(admin: &Client, name: &str, groups: &[&str]) -> Client {
    let user = cluster::client_from(&cluster::user_kubeconfig(admin, name, groups).await).await;
    // The apiserver sees the certificate's identity.
    let review = Api::<k8s_openapi::api::authentication::v1::SelfSubjectReview>::all(user.clone())
        .create(&PostParams::default(), &Default::default())
        .await
        .expect("SelfSubjectReview");
    let info = review.status.and_then(|s| s.user_info).unwrap();
    assert_eq!(info.username.as_deref(), Some(name));
    user
}

/// `user` changes the Deployment's template (a chart upgrade), stamping `released_by`.
async fn release_as(
    user: &Client,
    ns: &TestNs,
    name: &str,
    version: &str,
    released_by: Option<&str>,
) -> Result<(), kube::Error> {
    let mut patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "env": [{"name": "VERSION", "value": version}]}]}}}});
    if let Some(by) = released_by {
        patch["metadata"] = json!({"annotations": {"payplane.io/released-by": by}});
    }
    Api::<Deployment>::namespaced(user.clone(), &ns.name)
        .patch(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .map(|_| ())
}

/// `user` writes a one-shot request, naming `requested_by`.
async fn request_as(
    user: &Client,
    ns: &TestNs,
    rollout: &str,
    verb: &str,
    requested_by: Option<&str>,
) -> Result<(), kube::Error> {
    let mut annotations = json!({"payplane.io/request": verb});
    if let Some(by) = requested_by {
        annotations["payplane.io/requested-by"] = json!(by);
    }
    Api::<Rollout>::namespaced(user.clone(), &ns.name)
        .patch(
            rollout,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": annotations}})),
        )
        .await
        .map(|_| ())
}

async fn approve_as(
    user: &Client,
    ns: &TestNs,
    rollout: &str,
    approved_by: &str,
    groups: Option<&str>,
) -> Result<(), kube::Error> {
    let mut patch = json!({"metadata": {"annotations": {"payplane.io/approved-by": approved_by}}});
    if let Some(g) = groups {
        patch["metadata"]["annotations"]["payplane.io/approver-groups"] = json!(g);
    }
    Api::<Rollout>::namespaced(user.clone(), &ns.name)
        .patch(rollout, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map(|_| ())
}

fn assert_denied_by_policy(result: Result<(), kube::Error>, what: &str) {
    match result {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 403, "{what}: {s:?}");
            assert!(
                s.message.contains("ValidatingAdmissionPolicy"),
                "{what}: {}",
                s.message
            );
        }
        other => panic!("{what}: expected a denial by the admission policy, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_by_the_release_author_is_refused_and_one_by_another_person_accepted() {
    let client = cluster().await;
    install_policies(&client).await;
    let ns = TestNs::new(&client, "foureyes").await;
    label_namespace(&ns, "payplane.io/governance", "enforced").await;
    // alice and bob may change Deployments and Rollouts here, nothing more.
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "releaser"},
        "rules": [
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "watch", "patch", "update"]},
            {"apiGroups": ["payplane.io"], "resources": ["rollouts"], "verbs": ["get", "list", "watch", "patch", "update"]},
        ],
    }))
    .unwrap();
    ns.api::<Role>()
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "releasers"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "releaser"},
        "subjects": [
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"},
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob"},
        ],
    }))
    .unwrap();
    ns.api::<RoleBinding>()
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    let alice = user_client(&client, "alice", &["payments-devs"]).await;
    let bob = user_client(&client, "bob", &["release-managers"]).await;

    let controller = Controller::start(&client, &ns.name, None);
    create_deployment(&ns, "acct", "v1", 2).await;
    let gate = CanaryStep {
        approval: Some(ApprovalStep {
            require_different_person: true,
            // alice by name (so that four eyes, not the list, refuses her), bob by his group.
            approvers: vec!["alice".into(), "group:release-managers".into()],
        }),
        ..Default::default()
    };
    create_rollout(&ns, "acct", "acct", vec![weight(33), gate, weight(50)], None).await;
    wait_status(&ns, "acct", "Healthy", POD_TIMEOUT, |s| {
        s.phase == Phase::Healthy && s.stable_revision.is_some()
    })
    .await;
    wait!(
        "the Deployment is pinned and annotated",
        Duration::from_secs(10),
        ns.api::<Deployment>()
            .get("acct")
            .await
            .unwrap()
            .annotations()
            .contains_key("payplane.io/rollout")
    );

    // The apiserver: a template change must name its author, truthfully.
    assert_denied_by_policy(
        release_as(&alice, &ns, "acct", "v2", None).await,
        "a release without released-by",
    );
    assert_denied_by_policy(
        release_as(&alice, &ns, "acct", "v2", Some("bob")).await,
        "alice claiming bob released",
    );
    release_as(&alice, &ns, "acct", "v2", Some("alice"))
        .await
        .expect("alice releases v2");
    let v2 = current_hash(&ns, "acct").await;
    let st = wait_status(&ns, "acct", "waiting for approval at step 1", POD_TIMEOUT, |s| {
        s.pause_reason == Some(PauseReason::AwaitingApproval) && s.current_step_index == Some(1)
    })
    .await;
    assert_eq!(st.released_by.as_deref(), Some("alice"));
    assert_eq!(st.canary_revision.as_deref(), Some(v2.as_str()));

    // An approval in someone else's name is refused by the apiserver.
    assert_denied_by_policy(
        approve_as(&alice, &ns, "acct", "bob", None).await,
        "alice approving as bob",
    );
    // alice approves her own release: admitted (it is her name), refused by the controller.
    assert_denied_by_policy(
        approve_as(&alice, &ns, "acct", "alice", Some("release-managers")).await,
        "alice claiming a group she is not in",
    );
    approve_as(&alice, &ns, "acct", "alice", None)
        .await
        .expect("alice's own approval is admitted");
    let st = wait_status(
        &ns,
        "acct",
        "the author's approval refused",
        Duration::from_secs(20),
        |s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Approval" && c.status == "False")
        },
    )
    .await;
    let c = st.conditions.iter().find(|c| c.type_ == "Approval").unwrap();
    assert_eq!(c.reason, "SamePerson");
    assert!(c.message.contains("alice started this release"), "{}", c.message);
    assert_eq!(st.current_step_index, Some(1), "not approved");
    assert!(st.approvals.is_empty());
    wait!(
        "ApprovalRefused event",
        Duration::from_secs(10),
        has_event(&ns, "ApprovalRefused", "alice started this release").await
    );
    wait!(
        "the refused approval was consumed",
        Duration::from_secs(10),
        !ns.api::<Rollout>()
            .get("acct")
            .await
            .unwrap()
            .annotations()
            .contains_key("payplane.io/approved-by")
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(status(&ns, "acct").await.current_step_index, Some(1));

    // bob without naming his group is not on the list; with it he is: accepted, recorded, the
    // release goes on to promotion.
    approve_as(&bob, &ns, "acct", "bob", None)
        .await
        .expect("bob's approval is admitted");
    wait_status(
        &ns,
        "acct",
        "bob without his group refused",
        Duration::from_secs(20),
        |s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Approval" && c.reason == "NotAnApprover")
        },
    )
    .await;
    wait!(
        "the refused approval was consumed",
        Duration::from_secs(10),
        !ns.api::<Rollout>()
            .get("acct")
            .await
            .unwrap()
            .annotations()
            .contains_key("payplane.io/approved-by")
    );
    approve_as(&bob, &ns, "acct", "bob", Some("release-managers"))
        .await
        .expect("bob approves");
    let st = wait_status(&ns, "acct", "approved by bob", Duration::from_secs(20), |s| {
        s.current_step_index.unwrap_or(0) >= 2 || s.phase == Phase::Healthy
    })
    .await;
    if st.phase != Phase::Healthy {
        assert_eq!(st.approvals.len(), 1);
        assert_eq!(st.approvals[0].by, "bob");
        assert_eq!(st.approvals[0].step, 1);
    }
    assert!(
        has_event(&ns, "Approved", "approved by bob (released by alice)").await,
        "{:?}",
        events(&ns).await
    );
    wait_status(&ns, "acct", "promoted", POD_TIMEOUT, |s| {
        s.phase == Phase::Healthy && s.stable_revision.as_deref() == Some(v2.as_str())
    })
    .await;

    // An emergency release through a freeze window, by a named person.
    let now = chrono::Utc::now();
    let window = dated_window(
        "incident-freeze",
        "America/New_York",
        now - chrono::Duration::minutes(1),
        now + chrono::Duration::hours(1),
    );
    ns.api::<Rollout>()
        .patch(
            "acct",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"freezeWindows": [window]}})),
        )
        .await
        .expect("add a freeze window");
    release_as(&alice, &ns, "acct", "v3", Some("alice"))
        .await
        .expect("alice releases v3");
    let v3 = current_hash(&ns, "acct").await;
    wait_status(
        &ns,
        "acct",
        "v3 held by the freeze",
        Duration::from_secs(30),
        |s| {
            s.canary_revision.as_deref() == Some(v3.as_str())
                && s.pause_reason == Some(PauseReason::FreezeWindow)
        },
    )
    .await;
    assert!(
        pod_versions(&ns, "acct", true).await.is_empty(),
        "no canary during the freeze"
    );
    let override_as = |user: Client, by: &'static str| {
        let ns_name = ns.name.clone();
        async move {
            let patch = json!({"metadata": {"annotations": {
                "payplane.io/freeze-override": "hotfix INC-7",
                "payplane.io/freeze-override-by": by,
            }}});
            Api::<Rollout>::namespaced(user, &ns_name)
                .patch("acct", &PatchParams::default(), &Patch::Merge(patch))
                .await
                .map(|_| ())
        }
    };
    assert_denied_by_policy(
        override_as(bob.clone(), "alice").await,
        "bob overriding in alice's name",
    );
    override_as(bob.clone(), "bob").await.expect("bob overrides");
    let st = wait_status(
        &ns,
        "acct",
        "the override lets v3 go on to its approval gate",
        POD_TIMEOUT,
        |s| s.freeze_override.is_some() && s.pause_reason == Some(PauseReason::AwaitingApproval),
    )
    .await;
    let o = st.freeze_override.unwrap();
    assert_eq!(
        (o.by.as_str(), o.reason.as_str(), o.revision.as_str()),
        ("bob", "hotfix INC-7", v3.as_str())
    );
    assert_eq!(st.freeze, None);
    assert!(
        has_event(&ns, "FreezeOverridden", "by bob: hotfix INC-7").await,
        "{:?}",
        events(&ns).await
    );
    assert_eq!(pod_versions(&ns, "acct", true).await, ["v3"]);

    // A request names its requester, truthfully: alice may not ask in bob's name, nor without one.
    assert_denied_by_policy(
        request_as(&alice, &ns, "acct", "undo", None).await,
        "a request without requested-by",
    );
    assert_denied_by_policy(
        request_as(&alice, &ns, "acct", "undo", Some("bob")).await,
        "alice asking in bob's name",
    );
    // `undo` rewrites the template: the controller does it in its own name, which the admission
    // policy admits (the canary's template change from v2 to v3 above went through it too).
    request_as(&bob, &ns, "acct", "undo", Some("bob"))
        .await
        .expect("bob asks for the undo");
    wait_status(
        &ns,
        "acct",
        "back on v2 after undo",
        Duration::from_secs(60),
        |s| s.phase == Phase::Healthy && s.canary_revision.is_none(),
    )
    .await;
    assert_eq!(current_hash(&ns, "acct").await, v2);
    let undone: Vec<String> = trail(&ns, "acct")
        .await
        .into_iter()
        .filter(|e| e.spec.kind == EventKind::Undone)
        .map(|e| e.spec.actor)
        .collect();
    assert_eq!(undone, ["bob"], "the audit trail names who asked for the undo");
    let me = Api::<k8s_openapi::api::authentication::v1::SelfSubjectReview>::all(client.clone())
        .create(&PostParams::default(), &Default::default())
        .await
        .unwrap()
        .status
        .and_then(|s| s.user_info?.username)
        .unwrap();
    let d = ns.api::<Deployment>().get("acct").await.unwrap();
    assert_eq!(
        d.annotations().get("payplane.io/released-by"),
        Some(&me),
        "undo is released by the controller's identity"
    );
    assert!(has_event(&ns, "Undo", "template set to revision").await);
    ns.finish(controller).await;
}

/// A CDEvents sink: answers 503 to the first delivery, then 202; records every accepted event.
async fn cdevents_receiver() -> (Arc<std::sync::Mutex<Vec<serde_json::Value>>>, String) {
    use axum::{extract::State, http::StatusCode, routing::post};
    type Seen = (
        Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
        Arc<std::sync::atomic::AtomicU32>,
    );
    async fn receive(State((accepted, calls)): State<Seen>, body: String) -> StatusCode {
        if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        accepted
            .lock()
            .unwrap()
            .push(serde_json::from_str(&body).unwrap());
        StatusCode::ACCEPTED
    }
    let accepted = Arc::new(std::sync::Mutex::new(Vec::new()));
    let app = axum::Router::new()
        .route("/", post(receive))
        .with_state((accepted.clone(), Arc::new(std::sync::atomic::AtomicU32::new(0))));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (accepted, url)
}

fn received(events: &std::sync::Mutex<Vec<serde_json::Value>>, type_: &str) -> Vec<serde_json::Value> {
    events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == type_)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promoted_aborted_and_undone_releases_send_one_cdevent_each() {
    let client = cluster().await;
    let ns = TestNs::new(&client, "cdevents").await;
    let (events, url) = cdevents_receiver().await;
    let config = cdevents::Config {
        backoff: cdevents::Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        },
        ..cdevents::Config::new(url)
    };
    let controller = Controller::start_with(&client, &ns.name, None, Some(config));
    create_deployment(&ns, "ledger", "v1", 1).await;
    create_rollout(&ns, "ledger", "ledger", vec![weight(50), pause(None)], None).await;
    let uid = ns.api::<Rollout>().get("ledger").await.unwrap().uid().unwrap();
    let v1 = current_hash(&ns, "ledger").await;
    wait_status(&ns, "ledger", "Healthy on v1", POD_TIMEOUT, |s| {
        s.stable_revision.as_deref() == Some(v1.as_str())
    })
    .await;
    let busybox = "pkg:oci/busybox?repository_url=localhost/payplane/busybox&tag=1.0";
    wait!(
        "service.deployed received (after a 503)",
        Duration::from_secs(20),
        received(&events, "dev.cdevents.service.deployed.0.2.0").len() == 1
    );

    // Promoted: service.upgraded, about v2.
    set_version(&ns, "ledger", "v2").await;
    let v2 = current_hash(&ns, "ledger").await;
    wait_status(&ns, "ledger", "paused on v2", POD_TIMEOUT, |s| {
        s.phase == Phase::Paused && s.current_step_index == Some(1)
    })
    .await;
    assert!(received(&events, "dev.cdevents.service.upgraded.0.2.0").is_empty());
    request(&ns, "ledger", "promote").await;
    wait_status(&ns, "ledger", "promoted to v2", POD_TIMEOUT, |s| {
        s.phase == Phase::Healthy && s.stable_revision.as_deref() == Some(v2.as_str())
    })
    .await;
    wait!(
        "service.upgraded received",
        Duration::from_secs(20),
        received(&events, "dev.cdevents.service.upgraded.0.2.0").len() == 1
    );
    let upgraded = &received(&events, "dev.cdevents.service.upgraded.0.2.0")[0];
    assert_eq!(
        upgraded["id"],
        cdevents::event_id(&uid, &v2, cdevents::Outcome::Upgraded)
    );
    assert_eq!(upgraded["data"]["context"]["id"], upgraded["id"]);
    assert_eq!(upgraded["data"]["subject"]["id"], format!("{}/ledger", ns.name));
    assert_eq!(
        upgraded["data"]["subject"]["content"]["environment"]["id"],
        ns.name
    );
    assert_eq!(upgraded["data"]["subject"]["content"]["artifactId"], busybox);

    // Aborted: a canary whose image cannot start, aborted while it waits for its pods:
    // service.rolledback, naming the image the service still runs (the stable's).
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "localhost/payplane/busybox:missing"}]}}}});
    ns.api::<Deployment>()
        .patch("ledger", &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .unwrap();
    let v3 = current_hash(&ns, "ledger").await;
    wait_status(&ns, "ledger", "canary v3 started", POD_TIMEOUT, |s| {
        s.canary_revision.as_deref() == Some(v3.as_str())
    })
    .await;
    request(&ns, "ledger", "abort").await;
    wait_status(&ns, "ledger", "Degraded", Duration::from_secs(30), |s| {
        s.phase == Phase::Degraded && s.aborted_revision.as_deref() == Some(v3.as_str())
    })
    .await;
    wait!(
        "service.rolledback received",
        Duration::from_secs(20),
        received(&events, "dev.cdevents.service.rolledback.0.2.0").len() == 1
    );
    let rolledback = &received(&events, "dev.cdevents.service.rolledback.0.2.0")[0];
    assert_eq!(
        rolledback["id"],
        cdevents::event_id(&uid, &v3, cdevents::Outcome::RolledBack)
    );
    assert_eq!(rolledback["data"]["subject"]["content"]["artifactId"], busybox);

    // `undo` during a canary (back to the stable template): service.rolledback about the canary.
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": IMAGE, "env": [{"name": "VERSION", "value": "v4"}]}]}}}});
    ns.api::<Deployment>()
        .patch("ledger", &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .unwrap();
    let v4 = current_hash(&ns, "ledger").await;
    wait_status(&ns, "ledger", "paused on v4", POD_TIMEOUT, |s| {
        s.phase == Phase::Paused && s.canary_revision.as_deref() == Some(v4.as_str())
    })
    .await;
    request(&ns, "ledger", "undo").await;
    wait_status(&ns, "ledger", "back on v2", POD_TIMEOUT, |s| {
        s.phase == Phase::Healthy && s.canary_revision.is_none()
    })
    .await;
    wait!(
        "a second service.rolledback received",
        Duration::from_secs(20),
        received(&events, "dev.cdevents.service.rolledback.0.2.0").len() == 2
    );
    let undone = &received(&events, "dev.cdevents.service.rolledback.0.2.0")[1];
    assert_eq!(
        undone["id"],
        cdevents::event_id(&uid, &v4, cdevents::Outcome::RolledBack)
    );

    // Later reconciles (resyncs, pod changes) announce nothing again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(events.lock().unwrap().len(), 4, "{:?}", events.lock().unwrap());
    assert_eq!(controller.metrics.cdevents.sent.get(), 4);
    assert_eq!(controller.metrics.cdevents.failed.get(), 0);
    ns.finish(controller).await;
}

/// The ReleaseEvents of one rollout, in sequence order.
async fn trail(ns: &TestNs, rollout: &str) -> Vec<ReleaseEvent> {
    let mut events = ns
        .api::<ReleaseEvent>()
        .list(&ListParams::default().labels(&format!("payplane.io/rollout={rollout}")))
        .await
        .unwrap()
        .items;
    events.sort_by_key(|e| (e.spec.release, e.spec.sequence));
    events
}

fn kinds(events: &[ReleaseEvent]) -> Vec<EventKind> {
    events.iter().map(|e| e.spec.kind).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_trail_of_a_promoted_and_an_aborted_release() {
    let client = cluster().await;
    let ns = TestNs::new(&client, "audit").await;
    let good_value = Arc::new(std::sync::Mutex::new("0.999".to_owned()));
    let bad_value = Arc::new(std::sync::Mutex::new("0.999".to_owned()));
    let good_prometheus = fake_prometheus(good_value.clone()).await;
    let bad_prometheus = fake_prometheus(bad_value.clone()).await;
    let controller = Controller::start(&client, &ns.name, None);
    for name in ["good", "bad"] {
        // What the charts set: the chart label and the commit annotations.
        let mut d = deployment(name, "v1", 2);
        d.metadata
            .labels
            .get_or_insert_default()
            .insert("helm.sh/chart".into(), format!("{name}-1.8.0"));
        d.spec.template.metadata.get_or_insert_default().annotations = Some(BTreeMap::from([
            ("payplane.io/commit".to_owned(), "3f1c2e9".to_owned()),
            (
                "payplane.io/commit-time".to_owned(),
                "2026-10-01T08:00:00Z".to_owned(),
            ),
        ]));
        ns.api::<Deployment>()
            .create(&PostParams::default(), &d)
            .await
            .expect("create Deployment");
    }
    create_rollout(
        &ns,
        "good",
        "good",
        vec![weight(33), pause(Some("2s"))],
        Some(inline_prometheus(Some(good_prometheus), 0.99)),
    )
    .await;
    create_rollout(
        &ns,
        "bad",
        "bad",
        vec![weight(33), pause(None)],
        Some(inline_prometheus(Some(bad_prometheus), 0.99)),
    )
    .await;
    for name in ["good", "bad"] {
        wait_status(&ns, name, "Healthy", POD_TIMEOUT, |s| {
            s.phase == Phase::Healthy && s.stable_revision.is_some()
        })
        .await;
        set_version(&ns, name, "v2").await;
    }
    let good_v2 = current_hash(&ns, "good").await;
    let bad_v2 = current_hash(&ns, "bad").await;
    wait_status(&ns, "good", "promoted", Duration::from_secs(120), |s| {
        s.phase == Phase::Healthy && s.stable_revision.as_deref() == Some(good_v2.as_str())
    })
    .await;
    wait_status(&ns, "bad", "paused with the analysis passing", POD_TIMEOUT, |s| {
        s.phase == Phase::Paused
            && s.analysis_runs
                .iter()
                .any(|r| r.metrics.iter().any(|m| m.successful >= 1))
    })
    .await;
    *bad_value.lock().unwrap() = "0.95".into();
    wait_status(&ns, "bad", "aborted and rolled back", POD_TIMEOUT, |s| {
        s.phase == Phase::Degraded && s.rolled_back_at.is_some()
    })
    .await;
    // Give a retried or duplicate write a moment to show up.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The promoted release: every decision in order, numbered without gaps, with its context.
    let good = trail(&ns, "good").await;
    let seq: Vec<u32> = good.iter().map(|e| e.spec.sequence).collect();
    assert_eq!(
        seq,
        (0..good.len() as u32).collect::<Vec<_>>(),
        "{:?}",
        kinds(&good)
    );
    assert!(
        good.iter()
            .all(|e| e.spec.release == 2 && e.spec.revision == good_v2)
    );
    let k = kinds(&good);
    assert_eq!(k.first(), Some(&EventKind::Started), "{k:?}");
    assert_eq!(k.last(), Some(&EventKind::Promoted), "{k:?}");
    let pos = |events: &[ReleaseEvent], f: &dyn Fn(&ReleaseEvent) -> bool| {
        let found: Vec<usize> = events
            .iter()
            .enumerate()
            .filter(|(_, e)| f(e))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(found.len(), 1, "exactly one such event in {:?}", kinds(events));
        found[0]
    };
    let step0 = pos(&good, &|e| {
        e.spec.kind == EventKind::StepReached && e.spec.step == Some(0)
    });
    let weight33 = pos(&good, &|e| {
        e.spec.kind == EventKind::WeightChanged && e.spec.weight == Some(33)
    });
    let step1 = pos(&good, &|e| {
        e.spec.kind == EventKind::StepReached && e.spec.step == Some(1)
    });
    assert!(step0 < weight33 && weight33 < step1, "{k:?}");
    assert_eq!(good[step0].spec.weight, Some(33));
    let measured: Vec<_> = good.iter().filter_map(|e| e.spec.analysis.as_ref()).collect();
    assert!(!measured.is_empty(), "{k:?}");
    for m in &measured {
        assert_eq!(
            (m.metric.as_str(), m.provider.as_str(), m.value, m.verdict),
            ("success-rate", "prometheus", Some(0.999), Verdict::Successful)
        );
        assert!(m.query.starts_with("payment_success_rate: 0.999"), "{m:?}");
    }
    let started = &good[0].spec;
    assert_eq!(
        started
            .images
            .iter()
            .map(|i| (i.container.as_str(), i.image.as_str()))
            .collect::<Vec<_>>(),
        [("app", IMAGE)]
    );
    assert_eq!(started.chart_version.as_deref(), Some("1.8.0"));
    assert_eq!(started.commit.as_deref(), Some("3f1c2e9"));
    assert_eq!(
        started.commit_time.map(|t| t.to_rfc3339()).as_deref(),
        Some("2026-10-01T08:00:00+00:00")
    );
    assert!(!started.actor.is_empty());

    // The aborted release: the failed measurement, then the abort that names it, then the
    // rollback once the canary pods are gone.
    let bad = trail(&ns, "bad").await;
    let k = kinds(&bad);
    let seq: Vec<u32> = bad.iter().map(|e| e.spec.sequence).collect();
    assert_eq!(seq, (0..bad.len() as u32).collect::<Vec<_>>(), "{k:?}");
    assert!(bad.iter().all(|e| e.spec.revision == bad_v2));
    assert_eq!(k.first(), Some(&EventKind::Started), "{k:?}");
    let paused = pos(&bad, &|e| e.spec.kind == EventKind::Paused);
    assert_eq!(bad[paused].spec.reason.as_deref(), Some("CanaryPauseStep"));
    let aborted = pos(&bad, &|e| e.spec.kind == EventKind::Aborted);
    let rolled_back = pos(&bad, &|e| e.spec.kind == EventKind::RolledBack);
    assert_eq!(rolled_back, bad.len() - 1, "{k:?}");
    assert!(paused < aborted && aborted < rolled_back, "{k:?}");
    let evidence = bad[aborted - 1]
        .spec
        .analysis
        .as_ref()
        .expect("the abort follows a measurement");
    assert_eq!((evidence.value, evidence.verdict), (Some(0.95), Verdict::Failed));
    assert!(
        evidence.query.starts_with("payment_success_rate: 0.95"),
        "{evidence:?}"
    );
    let failed = bad
        .iter()
        .filter(|e| {
            e.spec
                .analysis
                .as_ref()
                .is_some_and(|a| a.verdict == Verdict::Failed)
        })
        .count();
    assert_eq!(failed, 1, "the first failure aborts: {k:?}");
    let reason = bad[aborted].spec.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("success-rate") && reason.contains("0.95"),
        "{reason}"
    );

    // The fold gives the outcomes.
    let records = payplane_delivery::fold(&[good.clone(), bad.clone()].concat());
    assert_eq!(records.len(), 2);
    let record = |r: &str| records.iter().find(|x| x.rollout == r).unwrap();
    assert_eq!(record("good").outcome, Outcome::Promoted);
    assert!(!record("good").is_change_failure());
    assert!(record("good").lead_time().is_some());
    let b = record("bad");
    assert_eq!(b.outcome, Outcome::RolledBack);
    assert!(b.is_change_failure() && b.time_to_restore().is_some());
    assert!(
        b.failure_reason.as_deref().unwrap_or_default().contains("0.95"),
        "{b:?}"
    );

    // The delivery figures the controller exports, recomputed from the same trail.
    let mut registry = prometheus_client::registry::Registry::default();
    let figures = payplane_delivery::metrics::DeliveryMetrics::register(&mut registry);
    let stop = CancellationToken::new();
    let refresher = tokio::spawn(payplane_rollout_controller::delivery::refresh(
        client.clone(),
        Some(ns.name.clone()),
        figures,
        payplane_rollout_controller::delivery::Window {
            every: Duration::from_millis(200),
            window: chrono::Duration::days(30),
        },
        stop.clone(),
    ));
    let expected = [
        r#"payplane_delivery_change_failure_ratio{service="(all)"} 0.5"#,
        r#"payplane_delivery_change_failure_ratio{service="bad"} 1.0"#,
        r#"payplane_delivery_deployment_frequency_per_day{service="good"} 0.03333"#,
        r#"payplane_delivery_time_to_restore_median_seconds{service="bad"}"#,
        r#"payplane_delivery_lead_time_seconds{service="good",quantile="0.5"}"#,
    ];
    let exposition = || {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        out
    };
    wait!(
        format!("the figures in the exposition:\n{}", exposition()),
        Duration::from_secs(10),
        expected.iter().all(|line| exposition().contains(line))
    );
    stop.cancel();
    refresher.await.unwrap();

    // Append-only: the apiserver refuses a change to a recorded event.
    let mut changed = bad[aborted].clone();
    changed.spec.reason = Some("nothing happened".into());
    let refused = ns
        .api::<ReleaseEvent>()
        .replace(&changed.name_any(), &PostParams::default(), &changed)
        .await;
    match refused {
        Err(kube::Error::Api(s)) => assert!(s.message.contains("append-only"), "{s:?}"),
        other => panic!("an update of a ReleaseEvent was not refused: {other:?}"),
    }
    ns.finish(controller).await;
}

// --- HPA: the stable keeps its HPA, the canary follows the count it sets ------------------------

/// A Deployment whose pods burn their whole CPU limit: `requests = limits = 50m`, so each pod
/// runs at ~100 % utilization of its request, and the burn is capped at 50m a pod.
fn cpu_burner(name: &str, version: &str, replicas: i32) -> Deployment {
    let mut d = deployment(name, version, replicas);
    let pod = d.spec.template.spec.as_mut().unwrap();
    let c = &mut pod.containers[0];
    c.command = Some(vec!["sh".into(), "-c".into(), "while :; do :; done".into()]);
    c.resources = Some(
        serde_json::from_value(
            json!({"requests": {"cpu": "50m"}, "limits": {"cpu": "50m", "memory": "16Mi"}}),
        )
        .unwrap(),
    );
    d
}

/// Deletes the namespace even when the test panics: CPU burners must not outlive a failed run.
/// The Rollouts' finalizer is dropped first (after a panic no controller is left to remove it,
/// and the namespace would stay Terminating).
struct DeleteOnDrop(Client, String);

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        let (client, name) = (self.0.clone(), self.1.clone());
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), &name);
                    if let Ok(list) = rollouts.list(&ListParams::default()).await {
                        for r in list.items {
                            let patch = json!({"metadata": {"finalizers": null}});
                            let _ = rollouts
                                .patch(&r.name_any(), &PatchParams::default(), &Patch::Merge(patch))
                                .await;
                        }
                    }
                    let _ = Api::<Namespace>::all(client)
                        .delete(&name, &DeleteParams::background())
                        .await;
                })
        })
        .join();
    }
}

fn pod_metrics_api(client: &Client, ns: &str) -> Api<kube::api::DynamicObject> {
    let resource = kube::api::ApiResource {
        group: "metrics.k8s.io".into(),
        version: "v1beta1".into(),
        api_version: "metrics.k8s.io/v1beta1".into(),
        kind: "PodMetrics".into(),
        plural: "pods".into(),
    };
    Api::namespaced_with(client.clone(), ns, &resource)
}

async fn spec_replicas(ns: &TestNs, name: &str) -> Option<i32> {
    ns.api::<Deployment>()
        .get_opt(name)
        .await
        .ok()
        .flatten()
        .and_then(|d| d.spec.replicas)
}

async fn ready_replicas(ns: &TestNs, name: &str) -> i32 {
    ns.api::<Deployment>()
        .get_opt(name)
        .await
        .ok()
        .flatten()
        .and_then(|d| d.status?.ready_replicas)
        .unwrap_or(0)
}

/// The HPA's status and conditions, for failure messages.
async fn hpa_state(ns: &TestNs, name: &str) -> String {
    match ns.api::<HorizontalPodAutoscaler>().get(name).await {
        Ok(h) => serde_json::to_string_pretty(&h.status).unwrap(),
        Err(e) => format!("HPA {name}: {e}"),
    }
}

/// On the real cluster (metrics-server, the controller-manager's HPA controller, the kubelet's
/// CPU accounting): an HPA scales the stable Deployment on CPU while a canary holds a weight, and
/// the canary follows the stable's new count, `stable · w / (100 − w)` rounded up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hpa_scales_the_stable_on_cpu_and_the_canary_follows_at_its_weight() {
    let client = cluster().await;
    let metrics_hint = "the metrics API (metrics.k8s.io) does not answer: `ci/cluster up` brings up \
                        metrics-server; `ci/cluster status` shows it";
    if let Err(e) = pod_metrics_api(&client, "kube-system")
        .list(&ListParams::default())
        .await
    {
        panic!("{metrics_hint} ({e})");
    }
    let ns = TestNs::new(&client, "hpa").await;
    let _cleanup = DeleteOnDrop(client.clone(), ns.name.clone());
    let controller = Controller::start(&client, &ns.name, None);
    ns.api::<Deployment>()
        .create(&PostParams::default(), &cpu_burner("burn", "v1", 2))
        .await
        .expect("create Deployment");
    create_rollout(&ns, "burn", "burn", vec![weight(40), pause(None)], None).await;
    wait_status(&ns, "burn", "Healthy on v1", POD_TIMEOUT, |s| {
        s.phase == Phase::Healthy && s.stable_revision.is_some()
    })
    .await;

    set_version(&ns, "burn", "v2").await;
    let st = wait_status(&ns, "burn", "paused at weight 40", POD_TIMEOUT, |s| {
        s.phase == Phase::Paused && s.current_step_index == Some(1)
    })
    .await;
    assert_eq!(st.desired_weight, 40);
    let canary = canary_name("burn");
    assert_eq!(
        spec_replicas(&ns, &canary).await,
        Some(2),
        "2 stable at 40 %: 2·40/60 = 1.33, rounded up"
    );

    // The HPA arrives on the stable (as a chart with autoscaling on renders it): 2 to 4 pods at
    // a 50 % target while every pod runs at ~100 %.
    let hpa: HorizontalPodAutoscaler = serde_json::from_value(json!({
        "metadata": {"name": "burn"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "burn"},
            "minReplicas": 2,
            "maxReplicas": 4,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 50}}}],
            "behavior": {"scaleUp": {"stabilizationWindowSeconds": 0}},
        },
    }))
    .unwrap();
    let started = tokio::time::Instant::now();
    ns.api::<HorizontalPodAutoscaler>()
        .create(&PostParams::default(), &hpa)
        .await
        .expect("create HPA");

    let deadline = started + Duration::from_secs(150);
    while spec_replicas(&ns, "burn").await != Some(4) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the HPA did not scale the stable to 4 within 150 s (stable: {:?}); HPA status: {}; \
             pod metrics: {:?}",
            spec_replicas(&ns, "burn").await,
            hpa_state(&ns, "burn").await,
            pod_metrics_api(&client, &ns.name)
                .list(&ListParams::default())
                .await
                .map(|l| l.items.into_iter().map(|m| m.data).collect::<Vec<_>>()),
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let scaled_after = started.elapsed();
    let h = ns.api::<HorizontalPodAutoscaler>().get("burn").await.unwrap();
    let hs = h.status.clone().unwrap_or_default();
    assert_eq!(hs.desired_replicas, 4, "{}", hpa_state(&ns, "burn").await);
    let state = hpa_state(&ns, "burn").await;
    let cpu = hs
        .current_metrics
        .unwrap_or_default()
        .into_iter()
        .find_map(|m| m.resource?.current.average_utilization)
        .unwrap_or_else(|| panic!("no CPU utilization in {state}"));
    assert!(cpu > 50, "the HPA saw {cpu} % CPU, above its 50 % target");

    // The canary follows: 4·40/60 = 2.67, rounded up to 3; the HPA never touches it.
    wait!(
        format!(
            "the canary at 3 replicas, ready (spec {:?}, ready {})",
            spec_replicas(&ns, &canary).await,
            ready_replicas(&ns, &canary).await
        ),
        POD_TIMEOUT,
        spec_replicas(&ns, &canary).await == Some(3) && ready_replicas(&ns, &canary).await == 3
    );
    wait!(
        "the stable's 4 pods ready",
        POD_TIMEOUT,
        ready_replicas(&ns, "burn").await == 4
    );
    let followed_after = started.elapsed();
    let st = status(&ns, "burn").await;
    assert_eq!(
        (st.phase, st.current_step_index),
        (Phase::Paused, Some(1)),
        "still paused at the weight"
    );
    assert_eq!(st.desired_weight, 40);
    // The controller leaves the stable's count to the HPA (no tug of war).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(spec_replicas(&ns, "burn").await, Some(4));
    assert_eq!(spec_replicas(&ns, &canary).await, Some(3));
    eprintln!(
        "HPA: stable 2 -> 4 in {:.0?} after the HPA was created; canary 2 -> 3 and all 7 pods ready \
         after {:.0?}",
        scaled_after, followed_after
    );

    // The HPA goes first, so that it does not act on the Deployment the Rollout hands back.
    let _ = ns
        .api::<HorizontalPodAutoscaler>()
        .delete("burn", &DeleteParams::default())
        .await;
    ns.finish(controller).await;
}
