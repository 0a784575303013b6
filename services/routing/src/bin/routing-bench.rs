//! Benchmarks of the routing service that print figures (never pass/fail):
//!
//! - `routing-bench decide`: the in-process decision function, each call timed (p50/p99/p999).
//! - `routing-bench grpc`: closed-loop gRPC load against a routing server (started from the
//!   sibling `routing` binary on loopback unless `--target` is given): decisions/s, client
//!   latency, and the server's own `grpc_server_handling_seconds` for Route.
//! - `routing-bench brownout`: the brownout simulation over several seeds: detection,
//!   elimination, traffic moved away, recovery, exploration.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use payplane_proto::{
    common::v1::{Money, PaymentMethod},
    routing::v1::{RouteRequest, routing_service_client::RoutingServiceClient},
};
use payplane_routing::{
    domain::{Engine, Method, Now, RouteInput, parse_policy},
    simulation::{Scenario, run},
};
use rand::{SeedableRng, rngs::SmallRng};

#[derive(Parser)]
#[command(
    name = "routing-bench",
    about = "Benchmarks of the routing service (prints figures)"
)]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Times the in-process decision function.
    Decide {
        #[arg(long, default_value = "services/routing/policy/default.yaml")]
        policy: PathBuf,
        #[arg(long, default_value_t = 1_000_000)]
        decisions: usize,
    },
    /// gRPC load against a routing server.
    Grpc {
        /// e.g. http://127.0.0.1:50051; unset: start `routing` from this binary's directory.
        #[arg(long)]
        target: Option<String>,
        /// Admin address (host:port) of the target, for its server-side histogram.
        #[arg(long)]
        admin: Option<String>,
        #[arg(long, default_value = "services/routing/policy/default.yaml")]
        policy: PathBuf,
        #[arg(long, default_value_t = 4)]
        connections: usize,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 2)]
        warmup_seconds: u64,
        /// Client runtime worker threads.
        #[arg(long, default_value_t = 1)]
        client_threads: usize,
    },
    /// The brownout simulation over several seeds.
    Brownout {
        #[arg(long, default_value_t = 20)]
        seeds: u64,
    },
}

fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Cmd::Decide { policy, decisions } => decide(&policy, decisions),
        Cmd::Grpc {
            target,
            admin,
            policy,
            connections,
            concurrency,
            seconds,
            warmup_seconds,
            client_threads,
        } => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(client_threads)
                .enable_all()
                .build()?;
            runtime.block_on(grpc(
                target,
                admin,
                policy,
                connections,
                concurrency,
                seconds,
                warmup_seconds,
            ))
        }
        Cmd::Brownout { seeds } => {
            brownout(seeds);
            Ok(())
        }
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn decide(policy: &PathBuf, decisions: usize) -> anyhow::Result<()> {
    let yaml = std::fs::read_to_string(policy).with_context(|| format!("reading {}", policy.display()))?;
    let engine = Engine::new(
        parse_policy(&yaml).map_err(|e| anyhow::anyhow!("invalid policy: {e:?}"))?,
        None,
    );
    // Give success-rate routing data to read.
    for c in 0..engine.policy.channels.len() {
        for i in 0..100 {
            engine.record(c, Some(Method::DebitCard), Some("USD"), i % 10 != 0, 0);
        }
    }
    let mut rng = SmallRng::seed_from_u64(1);
    let inputs = sample_inputs();
    let mut nanos = Vec::with_capacity(decisions);
    let started = Instant::now();
    for i in 0..decisions {
        let (amount, currency, method, bin) = inputs[i % inputs.len()];
        let input = RouteInput {
            amount,
            currency,
            method,
            card_bin: bin,
            merchant: "merchant-1",
            scene: "ecommerce",
            excluded: &[],
        };
        let t = Instant::now();
        let d = engine.route(&input, Now::system(), &mut rng);
        nanos.push(t.elapsed().as_nanos() as u64);
        std::hint::black_box(d.ok());
    }
    let total = started.elapsed();
    nanos.sort_unstable();
    println!(
        "routing-bench decide: {decisions} decisions, mixed requests (fixed, priority, split, success rate)"
    );
    println!(
        "  per decision: p50 {:.2} µs, p99 {:.2} µs, p99.9 {:.2} µs, max {:.2} µs",
        percentile(&nanos, 0.5) as f64 / 1e3,
        percentile(&nanos, 0.99) as f64 / 1e3,
        percentile(&nanos, 0.999) as f64 / 1e3,
        *nanos.last().unwrap_or(&0) as f64 / 1e3
    );
    println!(
        "  one thread: {:.0} decisions/s",
        decisions as f64 / total.as_secs_f64()
    );
    Ok(())
}

fn sample_inputs() -> Vec<(i64, &'static str, Method, &'static str)> {
    vec![
        (10_000, "USD", Method::DebitCard, ""),
        (10_000, "CNY", Method::Wallet, ""),
        (100_000, "USD", Method::CreditCard, "41111111"),
        (25_000, "CNY", Method::CreditCard, "62220012"),
        (20_000_000, "CNY", Method::BankTransfer, ""),
        (5_000, "HKD", Method::DebitCard, ""),
    ]
}

fn proto_method(m: Method) -> PaymentMethod {
    match m {
        Method::DebitCard => PaymentMethod::DebitCard,
        Method::CreditCard => PaymentMethod::CreditCard,
        Method::QrCode => PaymentMethod::QrCode,
        Method::BankTransfer => PaymentMethod::BankTransfer,
        Method::Wallet => PaymentMethod::Wallet,
    }
}

struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

fn spawn_server(policy: &PathBuf) -> anyhow::Result<(Server, String, String)> {
    let exe = std::env::current_exe()?;
    let routing = exe.with_file_name("routing");
    if !routing.exists() {
        bail!(
            "{} not found: build it (cargo build --release -p payplane-routing)",
            routing.display()
        );
    }
    let (grpc, admin) = (free_addr()?, free_addr()?);
    let child = Command::new(&routing)
        .env("GRPC_ADDR", grpc.to_string())
        .env("ADMIN_ADDR", admin.to_string())
        .env("POLICY_FILE", policy)
        .env("RUST_LOG", "warn")
        .env("SERVICE_VERSION", "bench")
        .env("OTEL_SDK_DISABLED", "true")
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", routing.display()))?;
    Ok((Server { child }, format!("http://{grpc}"), admin.to_string()))
}

fn request(i: usize, inputs: &[(i64, &'static str, Method, &'static str)]) -> RouteRequest {
    let (amount, currency, method, bin) = inputs[i % inputs.len()];
    RouteRequest {
        payment_id: uuid::Uuid::now_v7().to_string(),
        amount: Some(Money {
            minor_units: amount,
            currency: currency.to_owned(),
        }),
        method: proto_method(method) as i32,
        card_bin: bin.to_owned(),
        merchant_id: "merchant-1".to_owned(),
        scene: "ecommerce".to_owned(),
        excluded_channel_ids: vec![],
    }
}

/// The server's `routing_route_seconds` buckets (le → cumulative count) from `/metrics`.
fn route_histogram(admin: &str) -> anyhow::Result<Vec<(String, f64)>> {
    let mut stream = TcpStream::connect(admin)?;
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: {admin}\r\n\r\n")?;
    let mut body = String::new();
    stream.read_to_string(&mut body)?;
    let mut buckets = Vec::new();
    for line in body.lines() {
        if line.starts_with("routing_route_seconds_bucket{") {
            let le = line
                .split("le=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .unwrap_or("")
                .to_owned();
            let value: f64 = line.rsplit(' ').next().unwrap_or("0").parse().unwrap_or(0.0);
            buckets.push((le, value));
        }
    }
    Ok(buckets)
}

async fn grpc(
    target: Option<String>,
    admin: Option<String>,
    policy: PathBuf,
    connections: usize,
    concurrency: usize,
    seconds: u64,
    warmup: u64,
) -> anyhow::Result<()> {
    let (_server, target, admin) = match target {
        Some(t) => (None, t, admin),
        None => {
            let (server, target, admin) = spawn_server(&policy)?;
            (Some(server), target, Some(admin))
        }
    };
    // Wait for the server.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut clients = Vec::new();
    for _ in 0..connections {
        loop {
            match tonic::transport::Endpoint::from_shared(target.clone())?
                .tcp_nodelay(true)
                .connect()
                .await
            {
                Ok(channel) => {
                    clients.push(RoutingServiceClient::new(channel));
                    break;
                }
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => bail!("cannot connect to {target}: {e}"),
            }
        }
    }
    let inputs = Arc::new(sample_inputs());
    let warmup_end = Instant::now() + Duration::from_secs(warmup);
    let end = warmup_end + Duration::from_secs(seconds);
    let mut before = None;
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let mut client = clients[t % clients.len()].clone();
        let inputs = inputs.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(1 << 16);
            let mut failed = 0u64;
            let mut i = t;
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                let req = request(i, &inputs);
                i += 1;
                let result = client.route(req).await;
                if now >= warmup_end {
                    match result {
                        Ok(_) => latencies.push(now.elapsed().as_micros() as u64),
                        Err(_) => failed += 1,
                    }
                }
            }
            (latencies, failed)
        }));
    }
    tokio::time::sleep_until(warmup_end.into()).await;
    if let Some(admin) = &admin {
        before = route_histogram(admin).ok();
    }
    let mut latencies = Vec::new();
    let mut failed = 0;
    for t in tasks {
        let (l, f) = t.await?;
        latencies.extend(l);
        failed += f;
    }
    latencies.sort_unstable();
    let ok = latencies.len();
    println!(
        "routing-bench grpc: {seconds} s after {warmup} s warm-up, {concurrency} calls in flight over {connections} connections, target {target}"
    );
    println!(
        "  decisions: {ok} ok, {failed} failed: {:.0} decisions/s",
        ok as f64 / seconds as f64
    );
    println!(
        "  client-side latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&latencies, 0.5) as f64 / 1e3,
        percentile(&latencies, 0.99) as f64 / 1e3,
        *latencies.last().unwrap_or(&0) as f64 / 1e3
    );
    if let (Some(admin), Some(before)) = (&admin, before) {
        let after = route_histogram(admin)?;
        let delta = |le: &str| {
            let a = after
                .iter()
                .find(|(l, _)| l == le)
                .map(|(_, v)| *v)
                .unwrap_or(0.0);
            let b = before
                .iter()
                .find(|(l, _)| l == le)
                .map(|(_, v)| *v)
                .unwrap_or(0.0);
            a - b
        };
        let total = delta("+Inf");
        if total > 0.0 {
            println!(
                "  server-side Route handler (routing_route_seconds, {total:.0} calls): {:.2}% within 100 µs, {:.2}% within 250 µs, {:.2}% within 1 ms",
                100.0 * delta("0.0001") / total,
                100.0 * delta("0.00025") / total,
                100.0 * delta("0.001") / total
            );
        }
    }
    Ok(())
}

fn brownout(seeds: u64) {
    let base = Scenario::default();
    println!(
        "routing-bench brownout: {seeds} seeds; {} payments/s, outcomes after {} ms; A {:.0}% -> {:.0}% at {} s, back at {} s; B {:.0}%",
        base.rate_per_s,
        base.feedback_delay_ms,
        base.a_normal * 100.0,
        base.a_brownout * 100.0,
        base.brownout_start_s,
        base.recovery_start_s,
        base.b_rate * 100.0
    );
    println!(
        "  seed  detect(attempts)  eliminate(attempts, s)  moved@60s  moved90%(s)  readmit(s)  A-share before/end  explore  false-elim"
    );
    let mut worst_detect = 0;
    let mut worst_eliminate = 0;
    let mut worst_moved = f64::MAX;
    let mut worst_explore: f64 = 0.0;
    let mut false_readmissions = 0;
    let mut false_eliminations = 0;
    let mut never_eliminated = 0;
    let mut detections = Vec::new();
    let mut detection_attempts = Vec::new();
    for seed in 1..=seeds {
        let r = run(&Scenario { seed, ..base.clone() });
        let detect = r.detection_outcomes.unwrap_or(0);
        detections.push(detect);
        detection_attempts.push(r.detection_attempts.unwrap_or(0));
        false_eliminations += r.false_eliminations;
        worst_detect = worst_detect.max(detect);
        match r.elimination_attempts {
            Some(a) => worst_eliminate = worst_eliminate.max(a),
            None => never_eliminated += 1,
        }
        worst_moved = worst_moved.min(r.moved_away_at_60s);
        worst_explore = worst_explore.max(r.exploration_share());
        false_readmissions += r.readmitted_during_brownout;
        println!(
            "  {seed:>4}  {detect:>12} / {:>12}  {:>10} {:>10.1}  {:>8.1}%  {:>11}  {:>10}  {:>8.1}% / {:>5.1}%  {:>6.2}%  {:>10}",
            r.detection_attempts.unwrap_or(0),
            r.elimination_attempts
                .map_or("never".to_owned(), |a| a.to_string()),
            r.elimination_after_s.unwrap_or(f64::NAN),
            r.moved_away_at_60s * 100.0,
            r.moved_90_after_s.map_or("never".to_owned(), |s| s.to_string()),
            r.readmitted_after_s
                .map_or("never".to_owned(), |s| format!("{s:.1}")),
            r.a_share_before * 100.0,
            r.a_share_end * 100.0,
            r.exploration_share() * 100.0,
            r.false_eliminations
        );
    }
    detections.sort_unstable();
    detection_attempts.sort_unstable();
    println!(
        "  worst: detected within {worst_detect} outcomes on A, eliminated within {worst_eliminate} attempts (moved away from but not eliminated in {never_eliminated} seeds), {:.1}% of A's traffic moved away at 60 s, exploration {:.2}%; readmissions while still browned out: {false_readmissions}; eliminations of a healthy channel: {false_eliminations}",
        worst_moved * 100.0,
        worst_explore * 100.0
    );
    println!(
        "  detection over {seeds} seeds, outcomes on A (attempts, incl. those in flight): median {} ({}), p90 {} ({}), worst {} ({})",
        percentile(&detections, 0.5),
        percentile(&detection_attempts, 0.5),
        percentile(&detections, 0.9),
        percentile(&detection_attempts, 0.9),
        detections.last().copied().unwrap_or(0),
        detection_attempts.last().copied().unwrap_or(0)
    );
}
