//! Running this crate's example binaries as real processes.

use std::{net::SocketAddr, path::PathBuf, process::Stdio, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
    sync::mpsc,
};

/// Path of an example binary, built by `cargo test` next to the test binaries.
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> -> target/<profile>/examples/<name>
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("examples").join(name))
        .expect("target layout");
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test -p payplane-runtime`, which builds the examples",
        path.display()
    );
    path
}

/// A running example with its stdout lines (JSON logs) collected.
pub struct Proc {
    pub child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    pub seen: Vec<String>,
}

/// Environment variables of the runtime that the test process may have and must not leak.
const RUNTIME_VARS: [&str; 12] = [
    "GRPC_ADDR",
    "ADMIN_ADDR",
    "SERVICE_VERSION",
    "RUST_LOG",
    "LOG_FORMAT",
    "OTEL_SERVICE_NAME",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_SDK_DISABLED",
    "DATABASE_URL",
    "NEXT_HOP",
];

/// A command for example `name` with the runtime's variables cleared and `env` set.
pub fn command(name: &str, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(example(name));
    for var in RUNTIME_VARS {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied()).kill_on_drop(true);
    cmd
}

impl Proc {
    pub fn spawn(name: &str, env: &[(&str, &str)]) -> Self {
        let mut child = command(name, env)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("example starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The next log line (parsed JSON) for which `pred` holds, within `timeout`.
    pub async fn wait_for_log(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "no matching log line within {timeout:?}; saw:\n{}",
                        self.seen.join("\n")
                    )
                })
                .unwrap_or_else(|| panic!("process ended; output:\n{}", self.seen.join("\n")));
            self.seen.push(line.clone());
            if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line)
                && pred(&value)
            {
                return value;
            }
        }
    }

    /// Waits for the runtime's "serving" log line and returns the gRPC and admin addresses.
    pub async fn serving(&mut self) -> (SocketAddr, SocketAddr) {
        let line = self
            .wait_for_log(Duration::from_secs(30), |v| v["message"] == "serving")
            .await;
        let addr = |key: &str| {
            line[key]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("no {key} in {line}"))
        };
        (addr("grpc_addr"), addr("admin_addr"))
    }

    /// SIGTERM, then the exit code (within 15 s).
    pub async fn terminate(&mut self) -> Option<i32> {
        let pid = self.child.id().expect("still running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let exit = tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .expect("exits within 15 s of SIGTERM")
            .expect("wait");
        exit.code()
    }
}
