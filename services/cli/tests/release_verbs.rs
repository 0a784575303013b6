//! The release verbs of the built `payplane` binary against the REAL apiserver and kubelet of the
//! local cluster (`ci/cluster up`): the rollout controller runs in this process, watching one
//! temporary namespace per test, and releases a Deployment of busybox pods. The binary is run
//! as a person would, with a kubeconfig (the admin's, or alice's and bob's, made here).
//!
//! `eval "$(ci/cluster env)" && cargo test -p payplane-cli --test release_verbs`

use std::{path::Path, process::Output, time::Duration};

use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::Namespace,
    rbac::v1::{Role, RoleBinding},
};
use kube::{
    Api, Client, CustomResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use payplane_delivery::ReleaseEvent;
use payplane_rollout_controller::{
    app,
    crd::{
        AnalysisTemplate, ApprovalStep, CanaryStep, FreezePolicy, PauseStep, Phase, ReleasePlan, Rollout,
        RolloutSpec,
    },
    metrics::ControllerMetrics,
};
use payplane_testkit::cluster::{self, TestNamespace};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const MANAGER: &str = "payplane-cli-release-tests";
const IMAGE: &str = "localhost/payplane/busybox:1.0";
const POD_TIMEOUT: Duration = Duration::from_secs(90);

/// The namespace, the controller watching it, and how to run `payplane` there.
struct Platform {
    ns: TestNamespace,
    stop: CancellationToken,
    controller: tokio::task::JoinHandle<()>,
}

impl Platform {
    async fn start(prefix: &str) -> Self {
        let client = cluster::admin_client().await;
        let crds = vec![
            Rollout::crd(),
            AnalysisTemplate::crd(),
            FreezePolicy::crd(),
            ReleasePlan::crd(),
            ReleaseEvent::crd(),
        ];
        cluster::apply_crds(&client, MANAGER, crds).await;
        let ns = TestNamespace::create(&client, "payplane-cli", prefix).await;
        let stop = CancellationToken::new();
        let settings = app::Settings {
            freeze_policy_selector: Some(format!("payplane.io/test-ns={}", ns.name)),
            namespace: Some(ns.name.clone()),
            rollout_selector: None,
            instance: None,
            lease: None,
            cdevents: None,
        };
        let metrics =
            ControllerMetrics::register(&payplane_runtime::Metrics::new("rollout-controller", "test"));
        let controller = tokio::spawn(app::run(client, settings, metrics, stop.clone()));
        Self { ns, stop, controller }
    }

    /// A service as the charts make it: Deployment `<name>` with 2 pods, Rollout `pp-<name>`
    /// labelled with the service's name.
    async fn service(&self, name: &str, steps: Vec<CanaryStep>) {
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "terminationGracePeriodSeconds": 1,
                        "containers": [{
                            "name": "app", "image": IMAGE, "imagePullPolicy": "Never",
                            "command": ["sleep", "3600"],
                            "env": [{"name": "VERSION", "value": "v1"}],
                        }],
                    },
                },
            },
        }))
        .unwrap();
        self.ns
            .api::<Deployment>()
            .create(&PostParams::default(), &deployment)
            .await
            .expect("create Deployment");
        let mut spec = RolloutSpec {
            deployment_name: name.into(),
            ..Default::default()
        };
        spec.strategy.canary.steps = steps;
        let mut rollout = Rollout::new(&format!("pp-{name}"), spec);
        rollout.metadata.labels = Some([("app.kubernetes.io/name".to_owned(), name.to_owned())].into());
        self.ns
            .api::<Rollout>()
            .create(&PostParams::default(), &rollout)
            .await
            .expect("create Rollout");
        self.wait_for(&format!("pp-{name}"), "Healthy with a stable revision", |r| {
            r.status
                .as_ref()
                .is_some_and(|s| s.phase == Phase::Healthy && s.stable_revision.is_some())
        })
        .await;
    }

    async fn wait_for(&self, rollout: &str, what: &str, check: impl Fn(&Rollout) -> bool) -> Rollout {
        let deadline = tokio::time::Instant::now() + POD_TIMEOUT;
        loop {
            if let Ok(r) = self.ns.api::<Rollout>().get(rollout).await
                && check(&r)
            {
                return r;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out after {POD_TIMEOUT:?} waiting for Rollout {rollout}: {what}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Runs `payplane ARGS -n <ns>` with `kubeconfig` (default: the test's KUBECONFIG).
    fn payplane(&self, kubeconfig: Option<&Path>, args: &[&str]) -> Run {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_payplane"));
        cmd.args(args).args(["-n", &self.ns.name]);
        if let Some(k) = kubeconfig {
            cmd.env("KUBECONFIG", k);
        }
        Run(cmd.output().expect("run payplane"), args.join(" "))
    }

    async fn finish(self) {
        let rollouts = self.ns.api::<Rollout>();
        let _ = rollouts
            .delete_collection(&DeleteParams::default(), &ListParams::default())
            .await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while rollouts
            .list(&ListParams::default())
            .await
            .is_ok_and(|l| !l.items.is_empty())
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.controller).await;
        self.ns.delete().await;
    }
}

/// A finished `payplane` run.
struct Run(Output, String);

impl Run {
    fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    /// Asserts the exit code; returns stdout.
    fn expect(&self, code: i32) -> String {
        assert_eq!(
            self.code(),
            code,
            "`payplane {}` exit code\nstdout:\n{}\nstderr:\n{}",
            self.1,
            self.stdout(),
            self.stderr()
        );
        self.stdout()
    }
}

fn weight(w: i32) -> CanaryStep {
    CanaryStep {
        set_weight: Some(w),
        ..Default::default()
    }
}

fn pause_until_promoted() -> CanaryStep {
    CanaryStep {
        pause: Some(PauseStep { duration: None }),
        ..Default::default()
    }
}

fn env_of(d: &Deployment, name: &str) -> Option<String> {
    d.spec.template.spec.as_ref()?.containers[0]
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == name)?
        .value
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_watch_promote_abort_retry_and_undo() {
    let p = Platform::start("cli-verbs").await;
    p.service("ledger", vec![weight(50), pause_until_promoted()])
        .await;

    let table = p.payplane(None, &["status"]).expect(0);
    let line = table
        .lines()
        .find(|l| l.starts_with("ledger"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        line.contains("Healthy") && line.contains("busybox:1.0"),
        "{table}"
    );
    // The same binary as a kubectl plugin, run by the real kubectl.
    let bin = std::env::temp_dir().join(format!("payplane-plugin-{}", std::process::id()));
    std::fs::create_dir_all(&bin).unwrap();
    let plugin = bin.join("kubectl-payplane");
    let _ = std::fs::remove_file(&plugin);
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_payplane"), &plugin).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let out = std::process::Command::new("kubectl")
        .args(["payplane", "status", "-n", &p.ns.name])
        .env("PATH", &path)
        .output()
        .expect("kubectl (ci/cluster env puts it on PATH)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("ledger"),
        "kubectl payplane status: {text}"
    );
    let out = std::process::Command::new("kubectl")
        .args(["payplane", "watch"])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("kubectl payplane watch"),
        "usage as a plugin"
    );
    let completions = std::process::Command::new(env!("CARGO_BIN_EXE_payplane"))
        .args(["completions", "bash"])
        .output()
        .unwrap();
    let script = String::from_utf8_lossy(&completions.stdout);
    assert!(
        script.contains("promote") && script.contains("approve"),
        "bash completions"
    );

    let err = p.payplane(None, &["status", "payments"]);
    err.expect(2);
    assert!(
        err.stderr().contains("no service `payments`") && err.stderr().contains("ledger"),
        "{}",
        err.stderr()
    );
    let err = p.payplane(None, &["promote", "ledger"]);
    err.expect(2);
    assert!(
        err.stderr().contains("no release of ledger is in progress"),
        "{}",
        err.stderr()
    );

    // release → watch: stops at the indefinite pause, the second step, with exit code 3.
    let out = p
        .payplane(
            None,
            &["release", "ledger", "--env", "VERSION=v2", "--commit", "3f2a9c4"],
        )
        .expect(0);
    assert!(out.contains("release of ledger started by"), "{out}");
    let d = p.ns.api::<Deployment>().get("ledger").await.unwrap();
    assert_eq!(env_of(&d, "VERSION").as_deref(), Some("v2"));
    assert!(
        d.metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key("payplane.io/released-by")),
        "the release is signed"
    );
    let out = p
        .payplane(None, &["watch", "ledger", "--timeout", "120s"])
        .expect(3);
    assert!(out.contains("step 1/2: setWeight 50%"), "{out}");
    assert!(
        out.contains("paused") && out.contains("payplane promote"),
        "{out}"
    );
    let r = p.ns.api::<Rollout>().get("pp-ledger").await.unwrap();
    let st = r.status.unwrap();
    assert_eq!(
        (st.phase, st.current_step_index, st.weight),
        (Phase::Paused, Some(1), 50)
    );

    let detail = p.payplane(None, &["status", "ledger"]).expect(0);
    assert!(detail.contains("✓ 1. setWeight 50%"), "{detail}");
    assert!(detail.contains("▶ 2. pause until promoted"), "{detail}");
    assert!(detail.contains("Released by:"), "{detail}");
    let json: serde_json::Value =
        serde_json::from_str(&p.payplane(None, &["status", "-o", "json"]).expect(0)).unwrap();
    assert_eq!(json[0]["service"], "ledger");
    assert_eq!(json[0]["weight"], "50%");

    // A second release while this one is in flight is refused, naming the ways out.
    let err = p.payplane(None, &["release", "ledger", "--env", "VERSION=v3"]);
    err.expect(2);
    assert!(
        err.stderr().contains("already in flight") && err.stderr().contains("--supersede"),
        "{}",
        err.stderr()
    );

    // promote → the controller takes it; watch follows it to the end.
    let out = p.payplane(None, &["promote", "ledger"]).expect(0);
    assert!(out.contains("promote taken"), "{out}");
    let out = p
        .payplane(None, &["watch", "ledger", "--timeout", "120s"])
        .expect(0);
    assert!(out.contains("promoted"), "{out}");
    let out = p.payplane(None, &["watch", "ledger"]).expect(0);
    assert!(out.contains("no release of ledger in flight"), "{out}");

    // abort: the next release rolls back, and watch says so with exit code 1.
    p.payplane(None, &["release", "ledger", "--env", "VERSION=v3"])
        .expect(0);
    p.payplane(None, &["watch", "ledger", "--timeout", "120s"])
        .expect(3);
    let out = p.payplane(None, &["abort", "ledger"]).expect(0);
    assert!(out.contains("abort taken"), "{out}");
    let out = p
        .payplane(None, &["watch", "ledger", "--timeout", "120s"])
        .expect(1);
    assert!(out.contains("rolled back"), "{out}");
    let r = p.ns.api::<Rollout>().get("pp-ledger").await.unwrap();
    assert_eq!(r.status.as_ref().map(|s| s.canary_replicas), Some(0));

    // retry: the aborted revision goes again from the first step.
    let out = p.payplane(None, &["retry", "ledger"]).expect(0);
    assert!(out.contains("retry taken"), "{out}");
    p.payplane(None, &["watch", "ledger", "--timeout", "120s"])
        .expect(3);

    // pause holds it (spec.paused), resume lets it go; promote --full finishes it.
    p.payplane(None, &["pause", "ledger"]).expect(0);
    let r = p.ns.api::<Rollout>().get("pp-ledger").await.unwrap();
    assert!(r.spec.paused);
    p.payplane(None, &["resume", "ledger"]).expect(0);
    let r = p.ns.api::<Rollout>().get("pp-ledger").await.unwrap();
    assert!(!r.spec.paused);
    p.payplane(None, &["promote", "ledger", "--full"]).expect(0);
    p.payplane(None, &["watch", "ledger", "--timeout", "120s"])
        .expect(0);
    let d = p.ns.api::<Deployment>().get("ledger").await.unwrap();
    assert_eq!(env_of(&d, "VERSION").as_deref(), Some("v3"));

    // undo: back to v2's template, released through the steps like any other.
    let out = p.payplane(None, &["undo", "ledger"]).expect(0);
    assert!(out.contains("going back to revision"), "{out}");
    let d = p.ns.api::<Deployment>().get("ledger").await.unwrap();
    assert_eq!(env_of(&d, "VERSION").as_deref(), Some("v2"));
    p.payplane(None, &["watch", "ledger", "--timeout", "120s"])
        .expect(3);
    p.payplane(None, &["promote", "ledger"]).expect(0);
    p.payplane(None, &["watch", "ledger", "--timeout", "120s"])
        .expect(0);

    p.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_needs_another_person_and_rbac_refusals_name_the_verb() {
    let p = Platform::start("cli-approve").await;
    let admin = p.ns.client.clone();
    let dir = payplane_testkit::package_dir().join("../../charts/rollout-controller/policies");
    cluster::apply_admission_policies(
        &admin,
        MANAGER,
        &[dir.join("release-identity.yaml"), dir.join("bindings.yaml")],
    )
    .await;
    Api::<Namespace>::all(admin.clone())
        .patch(
            &p.ns.name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"payplane.io/governance": "enforced"}}})),
        )
        .await
        .expect("label namespace");
    grant_releasers(&admin, &p.ns.name, &["alice", "bob"]).await;
    let alice = cluster::user_kubeconfig(&admin, "alice", &["payments-devs"]).await;
    let bob = cluster::user_kubeconfig(&admin, "bob", &["release-managers"]).await;
    let carol = cluster::user_kubeconfig(&admin, "carol", &[]).await;

    let gate = CanaryStep {
        approval: Some(ApprovalStep {
            require_different_person: true,
            approvers: vec!["alice".into(), "group:release-managers".into()],
        }),
        ..Default::default()
    };
    p.service("fx", vec![weight(50), gate, weight(100)]).await;

    // carol has no Role here: the refusal names the verb and the resource.
    let err = p.payplane(Some(&carol), &["status"]);
    err.expect(2);
    assert!(
        err.stderr().contains("you may not `list` `rollouts.payplane.io`")
            && err
                .stderr()
                .contains("kubectl auth can-i list rollouts.payplane.io"),
        "{}",
        err.stderr()
    );

    // Nothing waits for an approval yet.
    let err = p.payplane(Some(&bob), &["approve", "fx"]);
    err.expect(2);
    assert!(
        err.stderr().contains("not waiting for an approval"),
        "{}",
        err.stderr()
    );

    // alice releases; the release waits at the approval step.
    let out = p
        .payplane(Some(&alice), &["release", "fx", "--env", "VERSION=v2"])
        .expect(0);
    assert!(out.contains("started by alice"), "{out}");
    let out = p
        .payplane(Some(&alice), &["watch", "fx", "--timeout", "120s"])
        .expect(3);
    assert!(out.contains("waiting for an approval"), "{out}");

    // alice may not approve her own release (four eyes), even though she is an approver.
    let err = p.payplane(Some(&alice), &["approve", "fx"]);
    err.expect(2);
    assert!(err.stderr().contains("four eyes"), "{}", err.stderr());
    let r = p.ns.api::<Rollout>().get("pp-fx").await.unwrap();
    assert!(r.status.as_ref().is_some_and(|s| s.approvals.is_empty()));

    // bob may, through his group; the controller records him.
    let out = p.payplane(Some(&bob), &["approve", "fx"]).expect(0);
    assert!(
        out.contains("approved by bob") && out.contains("started by alice"),
        "{out}"
    );
    let r = p.ns.api::<Rollout>().get("pp-fx").await.unwrap();
    let approvals = r.status.map(|s| s.approvals).unwrap_or_default();
    assert_eq!(
        approvals.iter().map(|a| a.by.as_str()).collect::<Vec<_>>(),
        ["bob"]
    );
    p.payplane(Some(&bob), &["watch", "fx", "--timeout", "120s"])
        .expect(0);

    // bob aborts alice's next release; the audit trail says it was bob.
    p.payplane(Some(&alice), &["release", "fx", "--env", "VERSION=v3"])
        .expect(0);
    p.payplane(Some(&alice), &["watch", "fx", "--timeout", "120s"])
        .expect(3);
    p.payplane(Some(&bob), &["abort", "fx"]).expect(0);
    p.payplane(Some(&alice), &["watch", "fx", "--timeout", "120s"])
        .expect(1);
    let audit: serde_json::Value =
        serde_json::from_str(&p.payplane(None, &["audit", "fx", "--format", "json"]).expect(0)).unwrap();
    let text = audit.to_string();
    let aborted = audit["events"]
        .as_array()
        .and_then(|es| es.iter().find(|e| e["kind"] == "Aborted"))
        .unwrap_or_else(|| panic!("an Aborted event in {text}"));
    assert_eq!(aborted["actor"], "bob", "{text}");

    p.finish().await;
}

/// What a bank's release team gets: change Deployments and Rollouts in the namespace, nothing
/// more.
async fn grant_releasers(admin: &Client, ns: &str, users: &[&str]) {
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "releaser"},
        "rules": [
            {"apiGroups": ["apps"], "resources": ["deployments", "controllerrevisions"], "verbs": ["get", "list", "watch", "patch"]},
            {"apiGroups": ["payplane.io"], "resources": ["rollouts"], "verbs": ["get", "list", "watch", "patch"]},
        ],
    }))
    .unwrap();
    Api::<Role>::namespaced(admin.clone(), ns)
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let subjects: Vec<_> = users
        .iter()
        .map(|u| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": u}))
        .collect();
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "releasers"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "releaser"},
        "subjects": subjects,
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(admin.clone(), ns)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_releases_services_in_order_and_refuses_an_invalid_or_reused_plan() {
    let p = Platform::start("cli-plan").await;
    let short = || {
        vec![
            weight(50),
            CanaryStep {
                pause: Some(PauseStep {
                    duration: Some("2s".into()),
                }),
                ..Default::default()
            },
        ]
    };
    p.service("ledger", short()).await;
    p.service("front", short()).await;
    let dir = std::env::temp_dir().join(format!("payplane-cli-{}", p.ns.name));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("release.yaml");
    std::fs::write(
        &file,
        "apiVersion: payplane.io/v1alpha1\nkind: ReleasePlan\nmetadata: {name: release-1}\nspec:\n  services:\n\
         \x20   - rollout: pp-ledger\n      env: [{name: VERSION, value: v2}]\n\
         \x20   - rollout: pp-front\n      env: [{name: VERSION, value: v2}]\n",
    )
    .unwrap();
    let out = p.payplane(None, &["plan", file.to_str().unwrap()]).expect(0);
    let at = |s: &str| out.find(s).unwrap_or_else(|| panic!("`{s}` in:\n{out}"));
    assert!(at("pp-ledger: promoted") < at("pp-front: releasing"), "{out}");
    assert!(at("pp-front: promoted") < at("plan succeeded"), "{out}");
    for name in ["ledger", "front"] {
        let d = p.ns.api::<Deployment>().get(name).await.unwrap();
        assert_eq!(env_of(&d, "VERSION").as_deref(), Some("v2"), "{name}");
    }

    // Plans are immutable: the same name again is refused, and nothing changes.
    let again = p.payplane(None, &["plan", file.to_str().unwrap()]);
    assert_eq!(again.code(), 2, "{}", again.stdout());
    assert!(again.stderr().contains("exists already"), "{}", again.stderr());

    // A plan naming a Rollout that does not exist: exit 4, the field named.
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "kind: ReleasePlan\napiVersion: payplane.io/v1alpha1\nmetadata: {name: release-2}\n\
         spec: {services: [{rollout: nope, image: '2.0'}]}\n",
    )
    .unwrap();
    let out = p.payplane(None, &["plan", bad.to_str().unwrap()]).expect(4);
    assert!(out.contains("spec.services[0].rollout: Rollout `nope`"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
    p.finish().await;
}
