//! The cluster side of the release verbs: which Rollout a service name means, the images its
//! Deployments run, who the caller is, and the writes (with the apiserver's refusals explained).

use anyhow::{Result, anyhow, bail};
use k8s_openapi::api::{
    apps::v1::{ControllerRevision, Deployment},
    authentication::v1::SelfSubjectReview,
};
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use payplane_rollout_controller::{
    crd::{REQUEST_ANNOTATION, REQUESTED_BY_ANNOTATION, REVISION_HASH_ANNOTATION, ROLLOUT_LABEL, Rollout},
    reconcile::canary_name,
};

use super::view::{Images, SERVICE_NAME_LABEL};
use crate::cluster::{connect, explain};

const ROLLOUTS: &str = "rollouts.payplane.io";
const DEPLOYMENTS: &str = "deployments.apps";
/// Field manager of the CLI's writes (shows in `managedFields`).
pub const MANAGER: &str = "payplane-cli";

/// `--namespace` / `--context` of every release verb.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ClusterArgs {
    /// Namespace of the platform (default: the kubeconfig context's namespace).
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,

    /// The kubeconfig context to use (default: the current context).
    #[arg(long)]
    pub context: Option<String>,
}

/// A namespace of the cluster, where the services' Rollouts are.
pub struct Target {
    pub client: Client,
    pub namespace: String,
}

impl Target {
    pub async fn connect(args: &ClusterArgs) -> Result<Self> {
        let (client, default_ns) = connect(args.context.as_deref()).await?;
        Ok(Self {
            client,
            namespace: args.namespace.clone().unwrap_or(default_ns),
        })
    }

    pub fn rollouts_api(&self) -> Api<Rollout> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn deployments_api(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn explain(&self, e: kube::Error, verb: &str, resource: &str) -> anyhow::Error {
        explain(e, verb, resource, Some(&self.namespace))
    }

    pub async fn rollouts(&self) -> Result<Vec<Rollout>> {
        let mut list = self
            .rollouts_api()
            .list(&ListParams::default())
            .await
            .map_err(|e| self.explain(e, "list", ROLLOUTS))?
            .items;
        list.sort_by_key(super::view::service_of);
        Ok(list)
    }

    /// The Rollout of `service`: the one named so, else the one labelled
    /// `app.kubernetes.io/name=<service>` (charts name them `<release>-<service>`).
    pub async fn rollout(&self, service: &str) -> Result<Rollout> {
        let api = self.rollouts_api();
        if let Some(r) = api
            .get_opt(service)
            .await
            .map_err(|e| self.explain(e, "get", ROLLOUTS))?
        {
            return Ok(r);
        }
        let labelled = api
            .list(&ListParams::default().labels(&format!("{SERVICE_NAME_LABEL}={service}")))
            .await
            .map_err(|e| self.explain(e, "list", ROLLOUTS))?
            .items;
        match labelled.len() {
            1 => Ok(labelled.into_iter().next().expect("one")),
            0 => {
                let known: Vec<String> = self
                    .rollouts()
                    .await?
                    .iter()
                    .map(super::view::service_of)
                    .collect();
                let ns = &self.namespace;
                if known.is_empty() {
                    bail!(
                        "no service `{service}` in namespace `{ns}`: no Rollouts there at all (is the platform \
                         installed with rollout.enabled, and is this the right namespace? use -n NAMESPACE)"
                    )
                }
                bail!(
                    "no service `{service}` in namespace `{ns}`; the services released there are: {}",
                    known.join(", ")
                )
            }
            _ => bail!(
                "several Rollouts release `{service}` in namespace `{}`: {}; name one of them",
                self.namespace,
                labelled
                    .iter()
                    .map(|r| r.name_any())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    pub async fn deployment(&self, name: &str) -> Result<Option<Deployment>> {
        self.deployments_api()
            .get_opt(name)
            .await
            .map_err(|e| self.explain(e, "get", DEPLOYMENTS))
    }

    /// The stable's and the canary's image (of the first container, the service's own).
    pub async fn images(&self, rollout: &Rollout) -> Result<Images> {
        let name = &rollout.spec.deployment_name;
        let canary = self.deployment(&canary_name(name)).await?;
        let status = rollout.status.clone().unwrap_or_default();
        // While a release is in flight the (paused) Deployment's template is already the
        // canary's; the stable's is kept in the ControllerRevision of the stable revision.
        let stable = match (&status.canary_revision, &status.stable_revision) {
            (Some(_), Some(stable_hash)) => self.revision_image(rollout, stable_hash).await?,
            _ => self.deployment(name).await?.as_ref().and_then(first_image),
        };
        Ok(Images {
            stable,
            canary: canary.as_ref().and_then(first_image),
        })
    }

    async fn revision_image(&self, rollout: &Rollout, hash: &str) -> Result<Option<String>> {
        let api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), &self.namespace);
        let revisions = api
            .list(&ListParams::default().labels(&format!("{ROLLOUT_LABEL}={}", rollout.name_any())))
            .await
            .map_err(|e| self.explain(e, "list", "controllerrevisions.apps"))?;
        Ok(revisions
            .items
            .into_iter()
            .find(|r| r.annotations().get(REVISION_HASH_ANNOTATION).map(String::as_str) == Some(hash))
            .and_then(|r| {
                r.data.0["spec"]["containers"][0]["image"]
                    .as_str()
                    .map(str::to_owned)
            }))
    }

    /// The caller's user name and groups, as the apiserver authenticates them.
    pub async fn whoami(&self) -> Result<(String, Vec<String>)> {
        let review = Api::<SelfSubjectReview>::all(self.client.clone())
            .create(&PostParams::default(), &SelfSubjectReview::default())
            .await
            .map_err(|e| explain(e, "create", "selfsubjectreviews.authentication.k8s.io", None))?;
        let user = review.status.and_then(|s| s.user_info).unwrap_or_default();
        let name = user.username.ok_or_else(|| {
            anyhow!("the apiserver did not say who you are (SelfSubjectReview without a user name)")
        })?;
        Ok((name, user.groups.unwrap_or_default()))
    }

    /// A merge patch of the Rollout (annotations, `spec.paused`).
    pub async fn patch_rollout(&self, name: &str, patch: serde_json::Value) -> Result<Rollout> {
        self.rollouts_api()
            .patch(name, &PatchParams::apply(MANAGER), &Patch::Merge(patch))
            .await
            .map_err(|e| self.explain(e, "patch", ROLLOUTS))
    }

    /// Writes a one-shot request for the controller, in the caller's name (the audit trail's
    /// actor; the governance policy checks that it is theirs).
    pub async fn request(&self, name: &str, value: &str) -> Result<Rollout> {
        let (me, _) = self.whoami().await?;
        self.patch_rollout(
            name,
            serde_json::json!({"metadata": {"annotations": {REQUEST_ANNOTATION: value, REQUESTED_BY_ANNOTATION: me}}}),
        )
        .await
    }

    pub async fn patch_deployment(&self, name: &str, patch: serde_json::Value) -> Result<Deployment> {
        self.deployments_api()
            .patch(name, &PatchParams::apply(MANAGER), &Patch::Strategic(patch))
            .await
            .map_err(|e| self.explain(e, "patch", DEPLOYMENTS))
    }
}

fn first_image(d: &Deployment) -> Option<String> {
    d.spec.template.spec.as_ref()?.containers.first()?.image.clone()
}
