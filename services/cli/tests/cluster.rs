//! `payplane report`, `audit` and `history` against the REAL apiserver of the local cluster
//! (`ci/cluster up`): the ReleaseEvent CRD is applied, a few events are created in a temporary
//! namespace, and the built binary reads them with the test's KUBECONFIG. Unreachable cluster
//! = failed test with instructions.
//!
//! `eval "$(ci/cluster env)" && cargo test -p payplane-cli --test cluster`

use std::{path::Path, process::Output};

use chrono::{DateTime, Utc};
use kube::{
    Api, Client, CustomResourceExt,
    api::{Patch, PatchParams},
    config::Kubeconfig,
};
use payplane_delivery::{
    EventKind::*,
    ReleaseContext, ReleaseEvent,
    event::{AnalysisEvidence, SYSTEM_ACTOR, Verdict, next_sequence, record, release_selector},
};
use payplane_testkit::cluster::{self, TestNamespace};
use serde_json::json;

const MANAGER: &str = "payplane-cli-tests";

async fn cluster() -> Client {
    let client = cluster::admin_client().await;
    cluster::apply_crds(&client, MANAGER, vec![ReleaseEvent::crd()]).await;
    client
}

fn payplane(args: &[&str], kubeconfig: Option<&Path>) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_payplane"));
    cmd.args(args);
    if let Some(k) = kubeconfig {
        cmd.env("KUBECONFIG", k);
    }
    cmd.output().expect("run payplane")
}

fn ok(args: &[&str]) -> String {
    let out = payplane(args, None);
    assert!(
        out.status.success(),
        "payplane {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// acct 1: promoted (lead 3 h); acct 2: 25 %, failed analysis, aborted, rolled back (restore
/// 4 min); route 5: promoted (lead 1 h). All two days ago, inside the default 30-day window.
async fn create_events(ns: &TestNamespace) {
    let base: DateTime<Utc> = Utc::now() - chrono::Duration::days(2);
    let m = |min: i64| base + chrono::Duration::minutes(min);
    let acct1 = ReleaseContext::new("acct", "acct", 1, "aaaa1111").with_commit("c1", m(-120));
    let acct2 = ReleaseContext::new("acct", "acct", 2, "bbbb2222").with_commit("c2", m(0));
    let route5 = ReleaseContext::new("route", "route", 5, "cccc5555").with_commit("c5", m(-50));
    let failed = AnalysisEvidence {
        metric: "success-rate".into(),
        provider: "scrape".into(),
        query: "grpc_server_handled_total".into(),
        value: Some(0.82),
        verdict: Verdict::Failed,
    };
    let events = vec![
        acct1.event(0, Started, "alice", m(0)),
        acct1
            .event(1, WeightChanged, SYSTEM_ACTOR, m(5))
            .with_step(0)
            .with_weight(10),
        acct1.event(2, GateApproved, "bob", m(30)).with_step(1),
        acct1.event(3, Promoted, SYSTEM_ACTOR, m(60)).with_weight(100),
        acct2.event(0, Started, "alice", m(100)),
        acct2
            .event(1, WeightChanged, SYSTEM_ACTOR, m(105))
            .with_step(0)
            .with_weight(25),
        acct2
            .event(2, AnalysisMeasured, SYSTEM_ACTOR, m(110))
            .with_step(1)
            .with_analysis(failed),
        acct2
            .event(3, Aborted, SYSTEM_ACTOR, m(111))
            .with_weight(0)
            .with_reason("analysis success-rate failed"),
        acct2.event(4, RolledBack, SYSTEM_ACTOR, m(114)).with_weight(0),
        route5.event(0, Started, "carol", m(0)),
        route5.event(1, Promoted, SYSTEM_ACTOR, m(10)).with_weight(100),
    ];
    let api: Api<ReleaseEvent> = Api::namespaced(ns.client.clone(), &ns.name);
    for e in events {
        assert!(record(&api, e).await.expect("create ReleaseEvent"), "created");
    }
    // Recording the same transition again (a retried reconcile) creates nothing and is no error.
    let again = acct1.event(0, Started, "mallory", m(9)).with_reason("replayed");
    assert!(!record(&api, again).await.unwrap());
    assert_eq!(api.get("acct-r1-0000").await.unwrap().spec.actor, "alice");
    // After a restart the controller continues the sequence from what is recorded.
    let listed = api
        .list(&kube::api::ListParams::default().labels(&release_selector("acct", 2)))
        .await
        .unwrap()
        .items;
    assert_eq!(listed.len(), 5);
    assert_eq!(next_sequence(&listed, "acct", 2), 5);
    // And the apiserver refuses to change one (CEL rule on the spec).
    let edit = json!({"spec": {"actor": "mallory"}});
    let err = api
        .patch("acct-r1-0000", &PatchParams::default(), &Patch::Merge(&edit))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.is_invalid() && s.message.contains("append-only")),
        "{err}"
    );
}

/// A kubeconfig like the test's, but impersonating a user without any RBAC grant.
fn nobody_kubeconfig(dir: &Path) -> std::path::PathBuf {
    let mut kc = Kubeconfig::read().expect("KUBECONFIG readable");
    for auth in &mut kc.auth_infos {
        if let Some(info) = auth.auth_info.as_mut() {
            info.impersonate = Some("payplane-cli-test-nobody".into());
        }
    }
    let path = dir.join("nobody.kubeconfig");
    std::fs::write(&path, serde_json::to_string(&kc).unwrap()).unwrap();
    path
}

/// Two contexts: the current one points at a closed port, `real` is the test's cluster.
fn two_context_kubeconfig(dir: &Path) -> std::path::PathBuf {
    let mut kc = Kubeconfig::read().expect("KUBECONFIG readable");
    let current = kc.current_context.clone().expect("a current context");
    let mut real = kc.contexts.iter().find(|c| c.name == current).unwrap().clone();
    real.name = "real".into();
    let mut broken_cluster = kc.clusters[0].clone();
    broken_cluster.name = "closed-port".into();
    if let Some(c) = broken_cluster.cluster.as_mut() {
        c.server = Some("https://127.0.0.1:1".into());
    }
    let mut broken = real.clone();
    broken.name = "broken".into();
    if let Some(c) = broken.context.as_mut() {
        c.cluster = "closed-port".into();
    }
    kc.clusters.push(broken_cluster);
    kc.contexts.push(real);
    kc.contexts.push(broken);
    kc.current_context = Some("broken".into());
    let path = dir.join("two.kubeconfig");
    std::fs::write(&path, serde_json::to_string(&kc).unwrap()).unwrap();
    path
}

#[tokio::test]
async fn report_audit_and_history_read_the_cluster() {
    let client = cluster().await;
    let ns = TestNamespace::create(&client, "payplane-cli", "cli-report").await;
    create_events(&ns).await;
    let n = ns.name.as_str();

    let report: serde_json::Value =
        serde_json::from_str(&ok(&["report", "-n", n, "--format", "json"])).unwrap();
    let o = &report["overall"];
    assert_eq!(o["promotions"], 2, "{report:#}");
    assert_eq!(
        (o["changeFailures"].clone(), o["deploymentsFinished"].clone()),
        (1.into(), 3.into())
    );
    assert_eq!(report["services"]["acct"]["leadTimeMedianSeconds"], 3.0 * 3600.0);
    assert_eq!(report["services"]["route"]["leadTimeMedianSeconds"], 3600.0);
    assert_eq!(report["services"]["acct"]["timeToRestoreMedianSeconds"], 240.0);
    assert_eq!(report["releases"][0]["namespace"], n);

    let audit = ok(&["audit", "acct", "-n", n]);
    assert!(
        audit.starts_with("acct release 2 (bbbb2222): RolledBack\n"),
        "{audit}"
    );
    assert!(audit.contains("success-rate (scrape) = 0.82 Failed"), "{audit}");
    let audit: serde_json::Value = serde_json::from_str(&ok(&[
        "audit",
        "acct",
        "--release",
        "1",
        "-n",
        n,
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(audit["record"]["outcome"], "Promoted");
    assert_eq!(audit["record"]["approvedBy"], json!(["bob"]));
    assert_eq!(audit["events"].as_array().unwrap().len(), 4);

    let history = ok(&["history", "acct", "-n", n]);
    let rows: Vec<Vec<&str>> = history
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2, "{history}");
    assert_eq!(
        (rows[0][0], rows[0][1], rows[0][4], rows[0][5]),
        ("1", "aaaa1111", "Promoted", "3h00m")
    );
    assert_eq!((rows[1][0], rows[1][4], rows[1][5]), ("2", "RolledBack", "-"));

    // -A finds them too (among whatever else the cluster holds).
    let all = ok(&["history", "route", "-A"]);
    assert!(
        all.lines().any(|l| l.starts_with("5 ") && l.contains("cccc5555")),
        "{all}"
    );

    // No such service: the error names the ones recorded here.
    let out = payplane(&["history", "ledger", "-n", n], None);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no such service `ledger`: releases are recorded for acct, route"),
        "{err}"
    );

    let dir = std::env::temp_dir().join(format!("payplane-cli-cluster-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // RBAC: a user with no grant is told which verb on which resource it lacks.
    let out = payplane(&["report", "-n", n], Some(&nobody_kubeconfig(&dir)));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "forbidden: you may not `list` `releaseevents.payplane.io` in namespace `{n}`"
        )),
        "{err}"
    );

    // --context picks the context; the current one is unreachable and says how to fix it.
    let two = two_context_kubeconfig(&dir);
    let out = payplane(&["history", "acct", "-n", n], Some(&two));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach the Kubernetes API") && err.contains("ci/cluster up"),
        "{err}"
    );
    let out = payplane(&["history", "acct", "-n", n, "--context", "real"], Some(&two));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), history);

    let _ = std::fs::remove_dir_all(&dir);
    ns.delete().await;
}
