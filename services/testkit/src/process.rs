use std::{
    net::{SocketAddr, TcpListener},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// A free TCP port on 127.0.0.1 (bound then released; good enough for tests on one machine).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Path of a binary of this workspace (`gateway`, `accounting`, ...), built by cargo into the
/// same target directory as the running test. Build it first (`cargo build --bins`): cargo only
/// builds another package's binaries for a test when that package declares them.
pub fn workspace_binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test-binary>
    let profile_dir = exe
        .parent()
        .and_then(|d| d.parent())
        .context("test binary has no target dir")?;
    let path = profile_dir.join(name);
    if !path.exists() {
        bail!("{} not found: run `cargo build --bins` first", path.display());
    }
    Ok(path)
}

/// A service running as a real process, with its gRPC and admin ports. Killed on drop.
pub struct ServiceProcess {
    pub name: String,
    pub grpc_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    child: Child,
}

impl ServiceProcess {
    /// Starts `binary` with GRPC_ADDR and ADMIN_ADDR on free loopback ports plus `env`, and waits
    /// until its gRPC health says SERVING.
    pub async fn start(binary: &str, env: &[(&str, String)], args: &[&str]) -> Result<Self> {
        let path = workspace_binary(binary)?;
        let grpc_addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let admin_addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let mut cmd = Command::new(&path);
        cmd.args(args)
            .env("GRPC_ADDR", grpc_addr.to_string())
            .env("ADMIN_ADDR", admin_addr.to_string())
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", path.display()))?;
        let mut process = Self {
            name: binary.to_string(),
            grpc_addr,
            admin_addr,
            child,
        };
        if let Err(e) = wait_for_serving(grpc_addr, Duration::from_secs(30)).await {
            if let Ok(Some(status)) = process.child.try_wait() {
                bail!("{binary} exited with {status} before serving");
            }
            return Err(e.context(format!("{binary} did not become SERVING")));
        }
        Ok(process)
    }

    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: the process gets no chance to clean up, as in a crash or an OOM kill.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the process to exit (graceful shutdown) up to `timeout`.
    pub fn terminate(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()?;
        if !status.success() {
            bail!("kill -TERM {} failed", self.child.id());
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("{} did not exit within {timeout:?} of SIGTERM", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `grpc.health.v1.Health/Check` (overall status) until SERVING.
pub async fn wait_for_serving(addr: SocketAddr, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last_error = String::from("no answer");
    while Instant::now() < deadline {
        match tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
            .connect()
            .await
        {
            Ok(channel) => match HealthClient::new(channel)
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
            {
                Ok(r) if r.get_ref().status == ServingStatus::Serving as i32 => return Ok(()),
                Ok(r) => last_error = format!("status {:?}", r.get_ref().status),
                Err(e) => last_error = e.to_string(),
            },
            Err(e) => last_error = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{addr} not SERVING after {timeout:?}: {last_error}")
}
