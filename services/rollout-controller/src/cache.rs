//! What every reconcile reads but rarely changes — the AnalysisTemplates, the FreezePolicies and
//! the namespaces' labels — from watch-fed caches instead of a LIST and a GET per reconcile. With
//! a thousand Rollouts those reads were most of the apiserver's work and of the reconcile's time
//! (BENCHMARKS.md, kwok). A cache is at most a watch event behind; a Rollout that names a template
//! not seen yet gets the InvalidSpec condition and is looked at again at the next resync.

use futures::{Future, StreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client, ResourceExt,
    runtime::{WatchStreamExt, reflector, reflector::Store, watcher},
};

use crate::crd::{AnalysisTemplate, FreezePolicy};

#[derive(Clone)]
pub struct Caches {
    templates: Store<AnalysisTemplate>,
    policies: Store<FreezePolicy>,
    namespaces: Store<Namespace>,
}

impl Caches {
    /// The caches of `namespace` (None: all namespaces), and the future that keeps them filled
    /// until dropped.
    pub fn start(
        client: &Client,
        namespace: Option<&str>,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let (templates_api, namespace_config) = match namespace {
            Some(ns) => (
                Api::<AnalysisTemplate>::namespaced(client.clone(), ns),
                watcher::Config::default().fields(&format!("metadata.name={ns}")),
            ),
            None => (Api::all(client.clone()), watcher::Config::default()),
        };
        let (templates, t_writer) = reflector::store();
        let (policies, p_writer) = reflector::store();
        let (namespaces, n_writer) = reflector::store();
        let config = watcher::Config::default().any_semantic();
        let t = reflector(t_writer, watcher(templates_api, config.clone())).default_backoff();
        let p = reflector(
            p_writer,
            watcher(Api::<FreezePolicy>::all(client.clone()), config),
        )
        .default_backoff();
        let n = reflector(
            n_writer,
            watcher(
                Api::<Namespace>::all(client.clone()),
                namespace_config.any_semantic(),
            ),
        )
        .default_backoff();
        let feed = async move {
            // The streams fill the stores as they are polled; their items are not needed here.
            futures::join!(
                t.for_each(|_| async {}),
                p.for_each(|_| async {}),
                n.for_each(|_| async {})
            );
        };
        (
            Self {
                templates,
                policies,
                namespaces,
            },
            feed,
        )
    }

    /// Waits for the first full list of every cache (a reconcile before it would see nothing);
    /// false when one did not come within `timeout` (a CRD not installed, no RBAC to watch).
    pub async fn ready(&self, timeout: std::time::Duration) -> bool {
        let all = async {
            futures::join!(
                self.templates.wait_until_ready(),
                self.policies.wait_until_ready(),
                self.namespaces.wait_until_ready()
            )
        };
        matches!(
            tokio::time::timeout(timeout, all).await,
            Ok((Ok(()), Ok(()), Ok(())))
        )
    }

    pub fn templates(&self, namespace: &str) -> Vec<AnalysisTemplate> {
        self.templates
            .state()
            .into_iter()
            .filter(|t| t.namespace().as_deref() == Some(namespace))
            .map(|t| (*t).clone())
            .collect()
    }

    pub fn policies(&self) -> Vec<FreezePolicy> {
        self.policies.state().into_iter().map(|p| (*p).clone()).collect()
    }

    pub fn namespace(&self, name: &str) -> Option<Namespace> {
        self.namespaces
            .get(&reflector::ObjectRef::new(name))
            .map(|n| (*n).clone())
    }
}
