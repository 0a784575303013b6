//! Runs the real `helm` binary on the charts in `charts/` and parses what it renders.

use std::{path::PathBuf, process::Command};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// The repository's `charts/` directory.
pub fn charts_dir() -> PathBuf {
    payplane_testkit::package_dir().join("../charts")
}

/// The helm binary: `$HELM` (ci/test sets it from `ci/charts helm`), else `helm` on PATH.
pub fn helm() -> String {
    std::env::var("HELM").unwrap_or_else(|_| "helm".to_string())
}

/// `helm upgrade --install RELEASE charts/payplane -n NAMESPACE` with the images of `tag` from
/// `registry`, the databases from the namespace's Secret `payplane-db` (`ci/deploy` makes it),
/// then `extra` arguments (`--set k=v`, `-f FILE`, `--wait`…). Returns helm's output.
pub fn install_platform(
    release: &str,
    ns: &str,
    tag: &str,
    registry: &str,
    extra: &[&str],
) -> Result<String> {
    let chart = charts_dir().join("payplane");
    let (tag, registry) = (
        format!("global.image.tag={tag}"),
        format!("global.image.registry={registry}"),
    );
    let mut args = vec![
        "upgrade",
        "--install",
        release,
        chart.to_str().context("a UTF-8 path")?,
        "-n",
        ns,
        "--set",
        &tag,
        "--set",
        &registry,
        "--set",
        "global.database.existingSecret=payplane-db",
    ];
    args.extend_from_slice(extra);
    crate::kube::helm_run(&args)
}

/// `helm template RELEASE charts/CHART --set k=v ...`: the rendered documents, or helm's error
/// output when it refuses the values.
pub fn template(release: &str, chart: &str, sets: &[&str]) -> Result<Vec<Value>, String> {
    let mut cmd = Command::new(helm());
    cmd.arg("template")
        .arg(release)
        .arg(charts_dir().join(chart))
        .arg("--namespace")
        .arg("payments");
    for s in sets {
        cmd.arg("--set").arg(s);
    }
    let out = cmd.output().map_err(|e| {
        format!(
            "cannot run {}: {e} (build it with `ci/charts helm`, then set HELM)",
            helm()
        )
    })?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    serde_saphyr::from_multiple::<Value>(&text)
        .map(|docs| docs.into_iter().filter(|d| !d.is_null()).collect())
        .map_err(|e| format!("helm rendered YAML that does not parse: {e}"))
}

/// The documents of one kind.
pub fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// The one document of a kind and name.
pub fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> Result<&'a Value> {
    let found: Vec<_> = docs
        .iter()
        .filter(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .collect();
    match found.as_slice() {
        [one] => Ok(one),
        [] => bail!("no {kind} named {name} rendered"),
        _ => bail!("{} {kind}s named {name} rendered", found.len()),
    }
}

/// The value of an environment variable of a Deployment's first container.
pub fn env_value<'a>(deployment: &'a Value, name: &str) -> Result<&'a Value> {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .context("container has no env")?
        .iter()
        .find(|e| e["name"] == name)
        .with_context(|| format!("no env {name}"))
}
