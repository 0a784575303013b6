//! The connection to the Kubernetes API (KUBECONFIG or `--context`) and what its refusals mean
//! for a person: which verb on which resource was refused, and how to check or fix it.

use anyhow::anyhow;
use kube::{Client, Config, config::KubeConfigOptions};

pub const CLUSTER_HINT: &str = "point KUBECONFIG at a cluster (for the local one: `ci/cluster up && eval \"$(ci/cluster env)\"`) \
     or pass --context";

/// A client for the context (default: the current one) and the context's namespace.
pub async fn connect(context: Option<&str>) -> anyhow::Result<(Client, String)> {
    let config = match context {
        Some(ctx) => {
            let options = KubeConfigOptions {
                context: Some(ctx.to_owned()),
                ..KubeConfigOptions::default()
            };
            Config::from_kubeconfig(&options)
                .await
                .map_err(|e| anyhow!("kubeconfig context `{ctx}`: {e} ({CLUSTER_HINT})"))?
        }
        None => Config::infer()
            .await
            .map_err(|e| anyhow!("no Kubernetes configuration found ({e}): {CLUSTER_HINT}"))?,
    };
    let namespace = config.default_namespace.clone();
    let url = config.cluster_url.to_string();
    let client = Client::try_from(config).map_err(|e| anyhow!("cannot make a client for {url}: {e}"))?;
    Ok((client, namespace))
}

/// Explains a failed call `verb` on `resource` (plural.group) in `namespace` (None: cluster-wide).
pub fn explain(e: kube::Error, verb: &str, resource: &str, namespace: Option<&str>) -> anyhow::Error {
    let scope = match namespace {
        Some(ns) => format!("in namespace `{ns}`"),
        None => "in all namespaces (cluster-wide)".to_owned(),
    };
    match e {
        kube::Error::Api(s) if s.code == 403 && s.message.contains("ValidatingAdmissionPolicy") => {
            anyhow!("refused by the release governance policy {scope}: {}", s.message)
        }
        kube::Error::Api(s) if s.code == 403 => {
            let flag = namespace.map_or("-A".to_owned(), |ns| format!("-n {ns}"));
            anyhow!(
                "forbidden: you may not `{verb}` `{resource}` {scope} (RBAC). Ask for a Role granting \
                 {verb} on {resource}; check with `kubectl auth can-i {verb} {resource} {flag}`. ({})",
                s.message
            )
        }
        kube::Error::Api(s) if s.code == 404 && s.message.contains("the server could not find") => anyhow!(
            "`{resource}` is not a resource of this cluster (404): install the rollout controller's CRDs \
             (`kubectl apply -f charts/rollout-controller/crds/`)"
        ),
        kube::Error::Api(s) if s.code == 409 => anyhow!(
            "`{verb}` `{resource}` {scope} conflicted with another change made at the same moment; run it again ({})",
            s.message
        ),
        kube::Error::Api(s) => anyhow!(
            "the apiserver refused to {verb} {resource} {scope}: {}",
            s.message
        ),
        other => anyhow!("cannot reach the Kubernetes API ({other}): is the cluster up? {CLUSTER_HINT}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, message: &str) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            code,
            reason: String::new(),
            message: message.into(),
            ..Default::default()
        }))
    }

    #[test]
    fn refusals_name_the_verb_the_resource_and_the_fix() {
        let msg = explain(
            status(403, "user \"x\" cannot patch"),
            "patch",
            "rollouts.payplane.io",
            Some("prod"),
        )
        .to_string();
        assert!(
            msg.contains("`patch` `rollouts.payplane.io` in namespace `prod`"),
            "{msg}"
        );
        assert!(
            msg.contains("kubectl auth can-i patch rollouts.payplane.io -n prod"),
            "{msg}"
        );
        let msg = explain(
            status(
                403,
                "ValidatingAdmissionPolicy 'x' denied request: approved-by must be you",
            ),
            "patch",
            "rollouts.payplane.io",
            Some("prod"),
        )
        .to_string();
        assert!(
            msg.contains("governance policy") && msg.contains("approved-by"),
            "{msg}"
        );
        let msg = explain(
            status(404, "the server could not find the requested resource"),
            "list",
            "rollouts.payplane.io",
            None,
        )
        .to_string();
        assert!(msg.contains("CRDs"), "{msg}");
    }
}
