//! The `payplane` CLI as a person runs it: the built binary, with their own kubeconfig.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result};

/// What one `payplane` command did.
#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// Its output, or a panic naming the command when it did not exit with `code`.
    pub fn expect(self, code: i32) -> String {
        assert_eq!(
            self.code, code,
            "payplane exited {} (expected {code}):\n{}\n{}",
            self.code, self.stdout, self.stderr
        );
        self.stdout
    }
}

/// The binary: `$PAYPLANE_E2E_CLI` (ci/deploy test sets it to the one built with the images),
/// else `payplane` next to this test's own target directory.
pub fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("PAYPLANE_E2E_CLI") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<test> → target/<profile>/payplane
    exe.parent()
        .and_then(Path::parent)
        .map(|d| d.join("payplane"))
        .expect("a target directory")
}

/// Runs `payplane ARGS -n NAMESPACE` as the user of `kubeconfig` (the admin's KUBECONFIG when
/// `None`).
pub fn payplane(kubeconfig: Option<&Path>, namespace: &str, args: &[&str]) -> Result<Outcome> {
    let mut cmd = Command::new(binary());
    cmd.args(args).args(["-n", namespace]);
    if let Some(k) = kubeconfig {
        cmd.env("KUBECONFIG", k);
    }
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {} (ci/images builds it)", binary().display()))?;
    Ok(Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}
