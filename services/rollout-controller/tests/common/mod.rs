//! Shared by the integration tests that run the controller in this process against the local
//! cluster (`ci/cluster up`): the cluster client with the CRDs installed, the in-process
//! controller, and `wait!`.
#![allow(dead_code)]

use std::{sync::Arc, time::Duration};

use k8s_openapi::api::apps::v1::Deployment;
use kube::{Client, CustomResourceExt};
use payplane_delivery::ReleaseEvent;
use payplane_rollout_controller::{
    app, cdevents,
    crd::{
        AnalysisRef, AnalysisTemplate, AnalysisTemplateSpec, CanaryStep, FreezePolicy, Metric, PauseStep,
        PrometheusProvider, Provider, ReleasePlan, Rollout,
    },
    lease::LeaseConfig,
    metrics::ControllerMetrics,
};
use payplane_testkit::cluster;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// Evaluates the (async) condition every 200 ms until true, or panics naming what it waited for.
macro_rules! wait {
    ($what:expr, $timeout:expr, $check:expr) => {{
        let timeout: Duration = $timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if $check {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out after {timeout:?} waiting for: {}",
                $what
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }};
}

pub const IMAGE: &str = "localhost/payplane/busybox:1.0";
pub const MANAGER: &str = "rollout-controller-tests";

pub async fn cluster() -> Client {
    let hint = "the local cluster is not reachable: run `ci/cluster up && eval \"$(ci/cluster env)\"` \
                (KUBECONFIG must point at it), then re-run these tests";
    let client = match Client::try_default().await {
        Ok(c) => c,
        Err(e) => panic!("{hint} ({e})"),
    };
    if let Err(e) = client.apiserver_version().await {
        panic!("{hint} ({e})");
    }
    install_crds(&client).await;
    client
}

async fn install_crds(client: &Client) {
    let crds = vec![
        Rollout::crd(),
        AnalysisTemplate::crd(),
        FreezePolicy::crd(),
        ReleasePlan::crd(),
        ReleaseEvent::crd(),
    ];
    cluster::apply_crds(client, MANAGER, crds).await;
}

/// A controller instance in this process, watching the test namespace.
pub struct Controller {
    pub stop: CancellationToken,
    pub handle: tokio::task::JoinHandle<()>,
    /// Shared with the running controller: its reconcile counter shows a busy loop.
    pub metrics: ControllerMetrics,
}

impl Controller {
    pub fn start(client: &Client, ns: &str, lease: Option<LeaseConfig>) -> Self {
        Self::start_with(client, ns, lease, None)
    }

    pub fn start_with(
        client: &Client,
        ns: &str,
        lease: Option<LeaseConfig>,
        cdevents: Option<cdevents::Config>,
    ) -> Self {
        let stop = CancellationToken::new();
        let metrics =
            ControllerMetrics::register(&payplane_runtime::Metrics::new("rollout-controller", "test"));
        let settings = app::Settings {
            // The FreezePolicies of this test only (they are cluster-scoped).
            freeze_policy_selector: Some(format!("payplane.io/test-ns={ns}")),
            namespace: Some(ns.to_owned()),
            rollout_selector: None,
            instance: lease.as_ref().map(|l| l.identity.clone()),
            lease,
            cdevents,
        };
        let handle = tokio::spawn(app::run(client.clone(), settings, metrics.clone(), stop.clone()));
        Self {
            stop,
            handle,
            metrics,
        }
    }

    /// Graceful stop: releases the Lease.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.handle).await;
    }

    /// Deletes the Rollouts of `rollouts` while still running (their finalizer hands the
    /// Deployments back), checks they are gone, then stops.
    pub async fn retire(self, rollouts: kube::Api<Rollout>) {
        use kube::api::{DeleteParams, ListParams};
        let _ = rollouts
            .delete_collection(&DeleteParams::default(), &ListParams::default())
            .await;
        wait!(
            "Rollouts deleted through their finalizer",
            Duration::from_secs(30),
            rollouts
                .list(&ListParams::default())
                .await
                .map(|l| l.items.is_empty())
                .unwrap_or(false)
        );
        self.stop().await;
    }

    /// A crash: the task dies without releasing anything.
    pub fn kill(self) {
        self.handle.abort();
    }
}

/// A busybox Deployment whose pods report `version` in their VERSION env.
pub fn deployment(name: &str, version: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{
                        "name": "app",
                        "image": IMAGE,
                        "imagePullPolicy": "Never",
                        "command": ["sleep", "3600"],
                        "env": [{"name": "VERSION", "value": version}],
                    }],
                },
            },
        },
    }))
    .unwrap()
}

pub fn weight(w: i32) -> CanaryStep {
    CanaryStep {
        set_weight: Some(w),
        ..Default::default()
    }
}
pub fn pause(duration: Option<&str>) -> CanaryStep {
    CanaryStep {
        pause: Some(PauseStep {
            duration: duration.map(Into::into),
        }),
        ..Default::default()
    }
}

/// The admission policies and bindings shipped in charts/rollout-controller/policies/.
pub async fn install_policies(client: &Client) {
    let dir = payplane_testkit::package_dir().join("../../charts/rollout-controller/policies");
    let files = [dir.join("release-identity.yaml"), dir.join("bindings.yaml")];
    cluster::apply_admission_policies(client, MANAGER, &files).await;
}

/// An inline analysis of one Prometheus metric `success-rate` (every second) with a floor.
pub fn inline_prometheus(address: Option<String>, min: f64) -> AnalysisRef {
    AnalysisRef {
        inline: Some(AnalysisTemplateSpec {
            metrics: vec![Metric {
                name: "success-rate".into(),
                interval: Some("1s".into()),
                provider: Provider {
                    prometheus: Some(PrometheusProvider {
                        address,
                        query: "payment_success_rate".into(),
                        min: Some(min),
                        max: None,
                    }),
                    ..Default::default()
                },
                ..Default::default()
            }],
        }),
        ..Default::default()
    }
}

/// A Prometheus stand-in on a local port whose one query answers `value`; returns its address.
pub async fn fake_prometheus(value: Arc<std::sync::Mutex<String>>) -> String {
    use axum::{Router, routing::get};
    let app = Router::new().route(
        "/api/v1/query",
        get(move || {
            let v = value.lock().unwrap().clone();
            async move {
                axum::Json(json!({"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [0, v]}]}}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    address
}
