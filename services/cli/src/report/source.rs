//! Where ReleaseEvents come from: a JSON export (`kubectl get releaseevents -o json`, or a plain
//! array) or the cluster in KUBECONFIG.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use kube::{Api, api::ListParams};
use payplane_delivery::{ReleaseEvent, event::SERVICE_LABEL};

/// Where to read events from.
#[derive(Clone, Debug)]
pub enum Source {
    File(PathBuf),
    Cluster {
        context: Option<String>,
        /// `None`: the context's namespace.
        namespace: Option<String>,
        all_namespaces: bool,
    },
}

/// Reads the events of `service` (all services when `None`). When `service` has none, returns
/// every event there is, so that the caller's "no such service" can name the services recorded.
pub async fn load(source: &Source, service: Option<&str>) -> Result<Vec<ReleaseEvent>> {
    let events = fetch(source, service).await?;
    match service {
        None => Ok(events),
        Some(s) if events.iter().any(|e| e.spec.service == s) => {
            Ok(events.into_iter().filter(|e| e.spec.service == s).collect())
        }
        Some(_) => fetch(source, None).await,
    }
}

async fn fetch(source: &Source, service: Option<&str>) -> Result<Vec<ReleaseEvent>> {
    match source {
        Source::File(path) => read_file(path),
        Source::Cluster {
            context,
            namespace,
            all_namespaces,
        } => list(context.as_deref(), namespace.as_deref(), *all_namespaces, service).await,
    }
}

/// Parses an export: a `List` (`{"items": [...]}`) or a JSON array of ReleaseEvents.
pub fn parse_export(text: &str) -> Result<Vec<ReleaseEvent>> {
    let value: serde_json::Value = serde_json::from_str(text).context("not JSON")?;
    let items = match value {
        serde_json::Value::Array(items) => items,
        serde_json::Value::Object(mut o) => match o.remove("items") {
            Some(serde_json::Value::Array(items)) => items,
            _ => bail!("expected a JSON array of ReleaseEvents or a List with `items`"),
        },
        _ => bail!("expected a JSON array of ReleaseEvents or a List with `items`"),
    };
    items
        .into_iter()
        .enumerate()
        .filter(|(_, v)| {
            v.get("kind")
                .and_then(|k| k.as_str())
                .is_none_or(|k| k == "ReleaseEvent")
        })
        .map(|(i, v)| serde_json::from_value(v).with_context(|| format!("item {i} is not a ReleaseEvent")))
        .collect()
}

fn read_file(path: &Path) -> Result<Vec<ReleaseEvent>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_export(&text).with_context(|| format!("{}", path.display()))
}

/// What the apiserver's refusal to list the events means for a person.
fn explain(e: kube::Error, namespace: Option<&str>) -> anyhow::Error {
    crate::cluster::explain(e, "list", "releaseevents.payplane.io", namespace)
}

async fn list(
    context: Option<&str>,
    namespace: Option<&str>,
    all_namespaces: bool,
    service: Option<&str>,
) -> Result<Vec<ReleaseEvent>> {
    let (client, default_ns) = crate::cluster::connect(context)
        .await
        .map_err(|e| anyhow!("{e}, or read an export with --from FILE.json"))?;
    let ns = (!all_namespaces).then(|| namespace.unwrap_or(&default_ns).to_owned());
    let api: Api<ReleaseEvent> = match &ns {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let mut params = ListParams::default().limit(500);
    if let Some(s) = service {
        params = params.labels(&format!("{SERVICE_LABEL}={s}"));
    }
    let mut events = Vec::new();
    loop {
        let page = api.list(&params).await.map_err(|e| explain(e, ns.as_deref()))?;
        events.extend(page.items);
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => break,
        }
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_are_lists_or_arrays() {
        let ev = serde_json::json!({
            "apiVersion": "payplane.io/v1alpha1", "kind": "ReleaseEvent",
            "metadata": {"name": "a-r1-0000", "namespace": "ns"},
            "spec": {"rollout": "a", "service": "a", "release": 1, "revision": "h", "sequence": 0,
                     "time": "2026-10-01T00:00:00Z", "actor": "x", "kind": "Started"}
        });
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [ev.clone()]});
        assert_eq!(parse_export(&list.to_string()).unwrap().len(), 1);
        assert_eq!(
            parse_export(&serde_json::json!([ev]).to_string()).unwrap().len(),
            1
        );
        let err = parse_export("{\"foo\": 1}").unwrap_err();
        assert!(err.to_string().contains("items"), "{err}");
        let bad = serde_json::json!([{"kind": "ReleaseEvent", "spec": {}}]);
        let err = format!("{:#}", parse_export(&bad.to_string()).unwrap_err());
        assert!(err.contains("item 0 is not a ReleaseEvent"), "{err}");
    }

    #[test]
    fn refusals_are_explained() {
        let forbidden = kube::Error::Api(Box::new(kube::core::Status {
            code: 403,
            reason: "Forbidden".into(),
            message: "user \"x\" cannot list".into(),
            ..Default::default()
        }));
        let msg = explain(forbidden, Some("prod")).to_string();
        assert!(
            msg.contains("`list` `releaseevents.payplane.io` in namespace `prod`"),
            "{msg}"
        );
        assert!(
            msg.contains("kubectl auth can-i list releaseevents.payplane.io -n prod"),
            "{msg}"
        );
        let missing = kube::Error::Api(Box::new(kube::core::Status {
            code: 404,
            reason: "NotFound".into(),
            message: "the server could not find the requested resource".into(),
            ..Default::default()
        }));
        assert!(
            explain(missing, None)
                .to_string()
                .contains("rollout controller's CRDs")
        );
    }
}
