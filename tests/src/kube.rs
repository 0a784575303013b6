//! The real cluster: `kubectl` and `helm` against the cluster `KUBECONFIG` points at (the local
//! cloud of `ci/cluster`, or any other). Tests that use it are `#[ignore]`d in the plain
//! `cargo test` and run by `ci/deploy test` after the cluster is up.

use std::{
    io::Write,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::helm::helm;

/// The kubectl binary: `$KUBECTL`, else `kubectl` on PATH (`eval "$(ci/cluster env)"` puts it there).
pub fn kubectl_bin() -> String {
    std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".to_string())
}

/// Runs a command, returns its stdout; fails with its stderr.
pub fn run(program: &str, args: &[&str], stdin: Option<&[u8]>) -> Result<String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {program} (on PATH? eval \"$(ci/cluster env)\")"))?;
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().context("no stdin")?;
        pipe.write_all(input)?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn kubectl(args: &[&str]) -> Result<String> {
    run(&kubectl_bin(), args, None)
}

pub fn kubectl_stdin(args: &[&str], input: &[u8]) -> Result<String> {
    run(&kubectl_bin(), args, Some(input))
}

pub fn helm_run(args: &[&str]) -> Result<String> {
    run(&helm(), args, None)
}

/// Panics with a clear message unless KUBECONFIG is set and its apiserver answers `/readyz`.
pub fn require_cluster() {
    let Ok(config) = std::env::var("KUBECONFIG") else {
        panic!(
            "KUBECONFIG is not set: this test needs a real cluster (ci/cluster up && eval \"$(ci/cluster env)\", or ci/deploy test)"
        );
    };
    if let Err(e) = kubectl(&["get", "--raw", "/readyz", "--request-timeout=10s"]) {
        panic!("the cluster of KUBECONFIG={config} is unreachable or not ready (ci/cluster status):\n{e:#}");
    }
}

/// An environment variable the test needs, or a panic that says who sets it.
pub fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set (ci/deploy test sets it)"))
}

/// Polls `check` every second until it returns `Ok(Some(v))`, or fails after `timeout` with the
/// last thing it said.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let start = Instant::now();
    let mut last = String::from("not yet");
    loop {
        match check() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
        }
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}: {last}");
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}
