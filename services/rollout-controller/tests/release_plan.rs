//! The coordinated release (ReleasePlan) against the REAL apiserver and kubelet of the local
//! cluster: the controller runs in this process, the members are busybox Deployments with their
//! Rollouts, in a namespace of the test's own under the release-identity admission policy.
//!
//! `eval "$(ci/cluster env)" && cargo test -p payplane-rollout-controller --test release_plan -- --test-threads=1`

use std::{sync::Arc, time::Duration};

use k8s_openapi::api::{
    apps::v1::Deployment,
    authentication::v1::SelfSubjectReview,
    core::v1::{Namespace, Pod},
    events::v1::Event,
};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use payplane_rollout_controller::{
    crd::{
        AnalysisPhase, AnalysisRef, CanaryStep, MemberPhase, Phase, PlanEnvVar, PlanPhase, PlanService,
        ReleasePlan, ReleasePlanSpec, ReleasePlanStatus, Rollout, RolloutSpec, RolloutStatus,
    },
    reconcile::template_hash,
};
use payplane_testkit::cluster::TestNamespace;
use serde_json::json;

#[macro_use]
mod common;
use common::{
    Controller, IMAGE, cluster, deployment, fake_prometheus, inline_prometheus, install_policies, pause,
    weight,
};

const TIMEOUT: Duration = Duration::from_secs(120);

/// A namespace under the release-identity policy: every template change of a released
/// Deployment must be signed by its requester (the controller signs the plan's).
async fn governed_namespace(client: &Client, prefix: &str) -> TestNamespace {
    install_policies(client).await;
    let ns = TestNamespace::create(client, "rollout-controller", prefix).await;
    let patch = json!({"metadata": {"labels": {"payplane.io/governance": "enforced"}}});
    Api::<Namespace>::all(client.clone())
        .patch(&ns.name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .expect("label namespace");
    ns
}

/// A Deployment `name` (1 replica, VERSION=v1) released by a Rollout of the same name with short
/// steps: 50% for 2 s.
async fn service(ns: &TestNamespace, name: &str, progress_deadline_seconds: Option<u32>) {
    service_with(
        ns,
        name,
        progress_deadline_seconds,
        vec![weight(50), pause(Some("2s"))],
    )
    .await;
}

async fn service_with(
    ns: &TestNamespace,
    name: &str,
    progress_deadline_seconds: Option<u32>,
    steps: Vec<CanaryStep>,
) {
    ns.api::<Deployment>()
        .create(&PostParams::default(), &deployment(name, "v1", 1))
        .await
        .expect("create Deployment");
    let mut spec = RolloutSpec {
        deployment_name: name.into(),
        progress_deadline_seconds,
        ..Default::default()
    };
    spec.strategy.canary.steps = steps;
    ns.api::<Rollout>()
        .create(&PostParams::default(), &Rollout::new(name, spec))
        .await
        .expect("create Rollout");
}

async fn rollout_status(ns: &TestNamespace, name: &str) -> RolloutStatus {
    ns.api::<Rollout>()
        .get(name)
        .await
        .ok()
        .and_then(|r| r.status)
        .unwrap_or_default()
}

async fn plan_status(ns: &TestNamespace, name: &str) -> ReleasePlanStatus {
    ns.api::<ReleasePlan>()
        .get(name)
        .await
        .ok()
        .and_then(|p| p.status)
        .unwrap_or_default()
}

/// Waits until both members are Healthy (adopted by their Rollouts); returns their stable hashes.
async fn healthy(ns: &TestNamespace, names: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for name in names {
        wait!(
            format!("{name} Healthy"),
            TIMEOUT,
            rollout_status(ns, name).await.phase == Phase::Healthy
                && rollout_status(ns, name).await.stable_revision.is_some()
        );
        out.push(rollout_status(ns, name).await.stable_revision.unwrap());
    }
    out
}

async fn wait_plan(ns: &TestNamespace, name: &str, phase: PlanPhase) -> ReleasePlanStatus {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let st = plan_status(ns, name).await;
        if st.phase == phase {
            return st;
        }
        let terminal = matches!(
            st.phase,
            PlanPhase::Succeeded | PlanPhase::RolledBack | PlanPhase::Failed
        );
        assert!(
            !terminal,
            "plan {name} ended {:?} instead of {phase:?}; status: {}",
            st.phase,
            serde_json::to_string_pretty(&st).unwrap()
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {TIMEOUT:?} waiting for plan {name} {phase:?}; status: {}",
            serde_json::to_string_pretty(&st).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn create_plan(ns: &TestNamespace, name: &str, services: Vec<PlanService>) {
    create_plan_with(ns, name, services, None).await;
}

async fn create_plan_with(
    ns: &TestNamespace,
    name: &str,
    services: Vec<PlanService>,
    analysis: Option<AnalysisRef>,
) {
    let plan = ReleasePlan::new(name, ReleasePlanSpec { services, analysis });
    ns.api::<ReleasePlan>()
        .create(&PostParams::default(), &plan)
        .await
        .expect("create ReleasePlan");
}

fn env(rollout: &str, version: &str) -> PlanService {
    PlanService {
        rollout: rollout.into(),
        image: None,
        env: vec![PlanEnvVar {
            name: "VERSION".into(),
            value: version.into(),
        }],
    }
}

/// The first container of a Deployment: (image, VERSION).
async fn container(ns: &TestNamespace, name: &str) -> (String, String) {
    let d = ns.api::<Deployment>().get(name).await.unwrap();
    let c = &d.spec.template.spec.unwrap().containers[0];
    let version = c
        .env
        .as_ref()
        .and_then(|e| e.iter().find(|v| v.name == "VERSION"))
        .and_then(|v| v.value.clone())
        .unwrap_or_default();
    (c.image.clone().unwrap_or_default(), version)
}

async fn current_hash(ns: &TestNamespace, name: &str) -> String {
    let d = ns.api::<Deployment>().get(name).await.unwrap();
    template_hash(&serde_json::to_value(&d.spec.template).unwrap())
}

/// Reasons of the Events recorded about `kind`/`name`.
async fn reasons(ns: &TestNamespace, kind: &str, name: &str) -> Vec<String> {
    ns.api::<Event>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            e.regarding
                .as_ref()
                .is_some_and(|r| r.kind.as_deref() == Some(kind) && r.name.as_deref() == Some(name))
        })
        .filter_map(|e| e.reason)
        .collect()
}

/// VERSION of the pods of `app` that are up (not terminating).
async fn pod_versions(ns: &TestNamespace, app: &str) -> Vec<String> {
    let pods = ns
        .api::<Pod>()
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .unwrap();
    let mut out: Vec<String> = pods
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            p.spec.as_ref()?.containers[0]
                .env
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

fn time(s: &Option<String>) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(s.as_deref().expect("a timestamp"))
        .expect("RFC 3339")
        .with_timezone(&chrono::Utc)
}

/// Deletes the Rollouts while the controller runs (their finalizer hands the Deployments back),
/// stops the controller and deletes the namespace.
async fn finish(ns: TestNamespace, controller: Controller) {
    controller.retire(ns.api::<Rollout>()).await;
    ns.delete().await;
}

/// A ValidatingAdmissionPolicy of this test only (bound to its namespace by name): a
/// `payplane.io/request` on a Rollout must come with `payplane.io/requested-by` naming the
/// requester, as newer release-identity policies demand. Returns a guard that removes it.
async fn requests_must_be_signed(client: &Client, ns: &str) -> SignedRequests {
    use k8s_openapi::api::admissionregistration::v1::{
        ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
    };
    let name = format!("{ns}-requested-by");
    let policy: ValidatingAdmissionPolicy = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": ["payplane.io"], "apiVersions": ["v1alpha1"],
                "operations": ["UPDATE"], "resources": ["rollouts"],
            }]},
            "validations": [{
                "expression": "!has(object.metadata.annotations) || !('payplane.io/request' in object.metadata.annotations) \
                    || (has(oldObject.metadata.annotations) && 'payplane.io/request' in oldObject.metadata.annotations \
                        && oldObject.metadata.annotations['payplane.io/request'] == object.metadata.annotations['payplane.io/request']) \
                    || ('payplane.io/requested-by' in object.metadata.annotations \
                        && object.metadata.annotations['payplane.io/requested-by'] == request.userInfo.username)",
                "message": "a request needs payplane.io/requested-by: your own user name",
            }],
        },
    }))
    .unwrap();
    let binding: ValidatingAdmissionPolicyBinding = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}},
        },
    }))
    .unwrap();
    let pp = PatchParams::apply("release-plan-tests").force();
    Api::<ValidatingAdmissionPolicy>::all(client.clone())
        .patch(&name, &pp, &Patch::Apply(&policy))
        .await
        .expect("policy");
    Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
        .patch(&name, &pp, &Patch::Apply(&binding))
        .await
        .expect("binding");
    // In force once an unsigned request is refused.
    let probe = json!({"metadata": {"annotations": {"payplane.io/request": "resume"}}});
    wait!(
        "the requested-by policy in force",
        Duration::from_secs(30),
        Api::<Rollout>::namespaced(client.clone(), ns)
            .patch("ledger", &PatchParams::default(), &Patch::Merge(probe.clone()))
            .await
            .is_err()
    );
    SignedRequests {
        client: client.clone(),
        name,
    }
}

struct SignedRequests {
    client: Client,
    name: String,
}

impl SignedRequests {
    async fn remove(self) {
        use k8s_openapi::api::admissionregistration::v1::{
            ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
        };
        let _ = Api::<ValidatingAdmissionPolicyBinding>::all(self.client.clone())
            .delete(&self.name, &DeleteParams::default())
            .await;
        let _ = Api::<ValidatingAdmissionPolicy>::all(self.client)
            .delete(&self.name, &DeleteParams::default())
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_services_are_released_in_order_the_second_after_the_first_is_promoted() {
    let started = std::time::Instant::now();
    let client = cluster().await;
    let ns = governed_namespace(&client, "rp-order").await;
    service(&ns, "ledger", None).await;
    service(&ns, "front", None).await;
    let controller = Controller::start(&client, &ns.name, None);
    let before = healthy(&ns, &["ledger", "front"]).await;

    create_plan(
        &ns,
        "release-1",
        vec![
            env("ledger", "v2"),
            PlanService {
                // A tag: the first container's image keeps its repository.
                image: Some("1.0".into()),
                ..env("front", "v2")
            },
        ],
    )
    .await;
    // While ledger releases, front is not touched.
    wait!(
        "ledger releasing",
        TIMEOUT,
        plan_status(&ns, "release-1")
            .await
            .services
            .first()
            .is_some_and(|m| m.phase == MemberPhase::Releasing)
    );
    assert_eq!(container(&ns, "front").await.1, "v1", "front waits for ledger");
    assert_eq!(
        plan_status(&ns, "release-1").await.services[1].phase,
        MemberPhase::Pending
    );

    let st = wait_plan(&ns, "release-1", PlanPhase::Succeeded).await;
    let (ledger, front) = (&st.services[0], &st.services[1]);
    assert_eq!(
        (ledger.phase, front.phase),
        (MemberPhase::Promoted, MemberPhase::Promoted)
    );
    assert!(
        time(&ledger.finished_at) <= time(&front.started_at),
        "front started {:?} before ledger was promoted {:?}",
        front.started_at,
        ledger.finished_at
    );
    assert!(time(&ledger.started_at) < time(&ledger.finished_at));
    assert_eq!(ledger.from_revision.as_ref(), Some(&before[0]));
    assert_eq!(front.from_revision.as_ref(), Some(&before[1]));
    for (name, member) in [("ledger", ledger), ("front", front)] {
        let to = member.to_revision.clone().expect("toRevision");
        assert_ne!(Some(&to), member.from_revision.as_ref(), "{name} changed");
        assert_eq!(current_hash(&ns, name).await, to);
        let rs = rollout_status(&ns, name).await;
        assert_eq!(
            (rs.phase, rs.stable_revision.as_ref()),
            (Phase::Healthy, Some(&to))
        );
        assert_eq!(container(&ns, name).await, (IMAGE.to_owned(), "v2".to_owned()));
        // Signed with the controller's identity (the admission policy admitted it) and the plan.
        let d = ns.api::<Deployment>().get(name).await.unwrap();
        let me = Api::<SelfSubjectReview>::all(client.clone())
            .create(&PostParams::default(), &Default::default())
            .await
            .unwrap()
            .status
            .and_then(|s| s.user_info)
            .and_then(|u| u.username)
            .unwrap();
        assert_eq!(d.annotations().get("payplane.io/released-by"), Some(&me));
        assert_eq!(
            d.annotations()
                .get("payplane.io/release-plan")
                .map(String::as_str),
            Some("release-1")
        );
        wait!(
            format!("{name}'s pods on v2"),
            TIMEOUT,
            pod_versions(&ns, name).await == ["v2"]
        );
    }
    let events = reasons(&ns, "ReleasePlan", "release-1").await;
    for reason in [
        "PlanStarted",
        "MemberReleasing",
        "MemberPromoted",
        "PlanSucceeded",
    ] {
        assert!(events.iter().any(|r| r == reason), "{reason} in {events:?}");
    }
    finish(ns, controller).await;
    eprintln!("ordered release test took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_service_that_cannot_become_ready_rolls_both_back() {
    let started = std::time::Instant::now();
    let client = cluster().await;
    let ns = governed_namespace(&client, "rp-rollback").await;
    service(&ns, "ledger", None).await;
    // front's new pods never become ready: aborted after 15 s.
    service(&ns, "front", Some(15)).await;
    let controller = Controller::start(&client, &ns.name, None);
    let before = healthy(&ns, &["ledger", "front"]).await;
    // The plan's undo and promote-full requests are signed with the controller's name.
    let signed = requests_must_be_signed(&client, &ns.name).await;

    create_plan(
        &ns,
        "release-2",
        vec![
            env("ledger", "v2"),
            PlanService {
                // Not on the node, and imagePullPolicy Never: ErrImageNeverPull.
                image: Some("does-not-exist".into()),
                ..env("front", "v2")
            },
        ],
    )
    .await;
    wait!(
        "ledger promoted to v2 by the plan",
        TIMEOUT,
        plan_status(&ns, "release-2")
            .await
            .services
            .first()
            .is_some_and(|m| m.phase == MemberPhase::Promoted)
    );
    assert_eq!(container(&ns, "ledger").await.1, "v2");

    let st = wait_plan(&ns, "release-2", PlanPhase::RolledBack).await;
    let (ledger, front) = (&st.services[0], &st.services[1]);
    assert_eq!(ledger.phase, MemberPhase::RolledBack, "{st:?}");
    assert_eq!(front.phase, MemberPhase::Aborted, "{st:?}");
    assert!(
        front.message.as_deref().unwrap_or_default().contains("aborted"),
        "{:?}",
        front.message
    );
    assert!(
        time(&front.finished_at) <= time(&ledger.rolled_back_at),
        "ledger after front"
    );
    assert!(
        st.message
            .as_deref()
            .unwrap_or_default()
            .contains("rolled back: ledger"),
        "{:?}",
        st.message
    );

    // Both are back on their previous template, Healthy there.
    for (name, old) in [("ledger", &before[0]), ("front", &before[1])] {
        assert_eq!(&current_hash(&ns, name).await, old, "{name}'s template");
        assert_eq!(container(&ns, name).await, (IMAGE.to_owned(), "v1".to_owned()));
        let rs = rollout_status(&ns, name).await;
        assert_eq!(
            (rs.phase, rs.stable_revision.as_ref()),
            (Phase::Healthy, Some(old)),
            "{name}"
        );
        wait!(
            format!("{name}'s pods back on v1"),
            TIMEOUT,
            pod_versions(&ns, name).await == ["v1"]
        );
    }
    // ledger's rollback skipped the canary steps.
    let ledger_events = reasons(&ns, "Rollout", "ledger").await;
    assert!(ledger_events.iter().any(|r| r == "Undo"), "{ledger_events:?}");
    assert!(
        ledger_events.iter().any(|r| r == "PromotedFull"),
        "{ledger_events:?}"
    );
    let front_events = reasons(&ns, "Rollout", "front").await;
    assert!(
        front_events.iter().any(|r| r == "RolloutAborted"),
        "{front_events:?}"
    );

    let events = reasons(&ns, "ReleasePlan", "release-2").await;
    for reason in [
        "PlanStarted",
        "MemberPromoted",
        "MemberAborted",
        "MemberUndo",
        "MemberRestored",
        "MemberRolledBack",
        "PlanRolledBack",
    ] {
        assert!(events.iter().any(|r| r == reason), "{reason} in {events:?}");
    }
    signed.remove().await;
    finish(ns, controller).await;
    eprintln!("rollback test took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_shared_analysis_aborts_the_member_in_flight_and_rolls_back_the_first() {
    let started = std::time::Instant::now();
    let client = cluster().await;
    let ns = governed_namespace(&client, "rp-shared").await;
    // The plan-wide check, e.g. the payment success rate: fine at first.
    let value = Arc::new(std::sync::Mutex::new("0.999".to_owned()));
    let prometheus = fake_prometheus(value.clone()).await;
    service(&ns, "ledger", None).await;
    // front waits in an indefinite pause: only the shared analysis can end its release.
    service_with(&ns, "front", None, vec![weight(50), pause(None)]).await;
    let controller = Controller::start(&client, &ns.name, None);
    let before = healthy(&ns, &["ledger", "front"]).await;

    create_plan_with(
        &ns,
        "release-3",
        vec![env("ledger", "v2"), env("front", "v2")],
        Some(inline_prometheus(Some(prometheus), 0.99)),
    )
    .await;
    // front in flight, its Rollout measuring the plan's metric next to its own (none).
    wait!(
        "front's Rollout measuring plan/success-rate",
        TIMEOUT,
        rollout_status(&ns, "front").await.analysis_runs.iter().any(|r| r
            .metrics
            .iter()
            .any(|m| m.name == "plan/success-rate" && m.successful >= 1))
    );
    let st = plan_status(&ns, "release-3").await;
    assert_eq!(st.services[0].phase, MemberPhase::Promoted);
    assert_eq!(st.services[1].phase, MemberPhase::Releasing);
    let front_rollout = ns.api::<Rollout>().get("front").await.unwrap();
    assert!(
        front_rollout.spec.strategy.canary.analysis.is_none(),
        "the Rollout's own spec is unchanged"
    );
    // The plan-wide check fails.
    *value.lock().unwrap() = "0.95".into();
    let st = wait_plan(&ns, "release-3", PlanPhase::RolledBack).await;
    let front = &st.services[1];
    assert_eq!(front.phase, MemberPhase::Aborted);
    assert!(
        front
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("plan/success-rate"),
        "{:?}",
        front.message
    );
    assert_eq!(st.services[0].phase, MemberPhase::RolledBack);
    for (name, old) in [("ledger", &before[0]), ("front", &before[1])] {
        assert_eq!(&current_hash(&ns, name).await, old, "{name}'s template");
        let rs = rollout_status(&ns, name).await;
        assert_eq!(
            (rs.phase, rs.stable_revision.as_ref()),
            (Phase::Healthy, Some(old)),
            "{name}"
        );
        // No plan metric runs outside the plan's release (ledger's undo canary had none).
        assert!(
            rs.analysis_runs.iter().all(|r| r.phase != AnalysisPhase::Running),
            "{name}: {:?}",
            rs.analysis_runs
        );
    }
    finish(ns, controller).await;
    eprintln!("shared analysis test took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_plan_mid_way_stops_it_and_the_release_in_flight_goes_on_alone() {
    let started = std::time::Instant::now();
    let client = cluster().await;
    let ns = governed_namespace(&client, "rp-delete").await;
    // ledger waits in an indefinite pause, so the plan is caught mid-way.
    service_with(&ns, "ledger", None, vec![weight(50), pause(None)]).await;
    service(&ns, "front", None).await;
    let controller = Controller::start(&client, &ns.name, None);
    healthy(&ns, &["ledger", "front"]).await;
    create_plan(&ns, "release-4", vec![env("ledger", "v2"), env("front", "v2")]).await;
    wait!(
        "ledger paused in its canary",
        TIMEOUT,
        rollout_status(&ns, "ledger").await.phase == Phase::Paused
    );
    ns.api::<ReleasePlan>()
        .delete("release-4", &DeleteParams::default())
        .await
        .expect("delete the plan");
    wait!(
        "the plan gone (no finalizer holds it)",
        Duration::from_secs(10),
        ns.api::<ReleasePlan>()
            .get_opt("release-4")
            .await
            .unwrap()
            .is_none()
    );
    // The release in flight is the Rollout's: promoted by a person (in their own name, as the
    // namespace's policy requires), it completes.
    let me = Api::<k8s_openapi::api::authentication::v1::SelfSubjectReview>::all(client.clone())
        .create(&PostParams::default(), &Default::default())
        .await
        .expect("SelfSubjectReview")
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username)
        .expect("a user name");
    let patch = json!({"metadata": {"annotations": {
        "payplane.io/request": "promote-full",
        "payplane.io/requested-by": me,
    }}});
    ns.api::<Rollout>()
        .patch("ledger", &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
    let to = current_hash(&ns, "ledger").await;
    wait!(
        "ledger promoted",
        TIMEOUT,
        rollout_status(&ns, "ledger").await.stable_revision.as_ref() == Some(&to)
            && rollout_status(&ns, "ledger").await.phase == Phase::Healthy
    );
    // No further step: front is not released (the plan would have started it at once).
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(container(&ns, "front").await.1, "v1", "front left alone");
    let front = rollout_status(&ns, "front").await;
    assert_eq!(front.phase, Phase::Healthy);
    assert!(front.canary_revision.is_none());
    finish(ns, controller).await;
    eprintln!("plan deletion test took {:?}", started.elapsed());
}
