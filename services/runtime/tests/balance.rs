//! The balanced channel spreads requests over every address in proportion, follows
//! re-resolution as addresses come and go, and (with health checking, the default) sends calls
//! only to addresses whose `grpc.health.v1` reports SERVING.

mod common;

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use common::{ECHO_SERVICE, EchoRequest, EchoService, TestServer, echo, sample};
use futures::{StreamExt, stream};
use payplane_runtime::{
    BalancedChannel, ClientArgs,
    balance::{self, StaticResolver},
};
use tokio::{
    net::{TcpListener, TcpStream},
    task::JoinSet,
    time::Instant,
};
use tonic_health::{
    ServingStatus,
    pb::{
        HealthCheckRequest, HealthCheckResponse,
        health_check_response::ServingStatus as HealthStatus,
        health_server::{Health, HealthServer},
    },
};

/// `calls` Echo calls, 8 in flight at a time; the number answered by each server.
async fn spread(channel: &BalancedChannel, calls: usize) -> HashMap<String, usize> {
    let replies: Vec<_> = stream::iter(0..calls)
        .map(|i| {
            echo(
                channel.clone(),
                EchoRequest {
                    message: i.to_string(),
                    sleep_ms: 0,
                    code: 0,
                },
            )
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let mut by_server = HashMap::new();
    for reply in replies {
        *by_server
            .entry(reply.expect("every call succeeds").server)
            .or_insert(0) += 1;
    }
    by_server
}

/// Calls until `name` answers (the channel has picked its address up), at most 10 s.
async fn wait_until_answering(channel: &BalancedChannel, name: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !spread(channel, 16).await.contains_key(name) {
        assert!(tokio::time::Instant::now() < deadline, "{name} never got a call");
    }
}

async fn handled(server: &TestServer) -> f64 {
    let body = server.get("/metrics").await.1;
    sample(
        &body,
        "grpc_server_handled_total",
        &[("grpc_service", ECHO_SERVICE), ("grpc_code", "OK")],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn spreads_requests_in_proportion_and_follows_re_resolution() {
    let mut servers = Vec::new();
    for (i, ip) in [[127, 0, 0, 1], [127, 0, 0, 2], [127, 0, 0, 3], [127, 0, 0, 4]]
        .into_iter()
        .enumerate()
    {
        servers.push(common::start(&format!("s{}", i + 1), ip, |_| {}).await);
    }
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.grpc).collect();
    let resolver = StaticResolver::new(addrs[..3].iter().copied());
    let args = ClientArgs {
        client_resolve_interval: Duration::from_millis(200),
        ..ClientArgs::default()
    };
    let channel = balance::channel_with_resolver(resolver.clone(), &args, Some("test")).expect("channel");

    for name in ["s1", "s2", "s3"] {
        wait_until_answering(&channel, name).await;
    }
    let before: Vec<f64> = futures::future::join_all(servers.iter().map(handled)).await;
    let counts = spread(&channel, 3000).await;
    let after: Vec<f64> = futures::future::join_all(servers.iter().map(handled)).await;
    for (i, name) in ["s1", "s2", "s3"].into_iter().enumerate() {
        let n = counts.get(name).copied().unwrap_or(0);
        assert!(
            (900..=1100).contains(&n),
            "{name} got {n} of 3000 calls: {counts:?}"
        );
        // The servers' own metrics agree with what the client saw.
        assert_eq!(after[i] - before[i], n as f64, "{name}'s /metrics disagrees");
    }
    assert_eq!(counts.get("s4"), None, "s4 is not in the resolved set yet");

    // Re-resolution: s3 leaves, s4 joins.
    resolver.set([addrs[0], addrs[1], addrs[3]]);
    wait_until_answering(&channel, "s4").await;
    let counts = spread(&channel, 1500).await;
    assert_eq!(
        counts.get("s3"),
        None,
        "s3 was removed but still got calls: {counts:?}"
    );
    for name in ["s1", "s2", "s4"] {
        let n = counts.get(name).copied().unwrap_or(0);
        assert!(
            (400..=600).contains(&n),
            "{name} got {n} of 1500 calls: {counts:?}"
        );
    }

    for server in servers {
        server.stop().await.expect("clean shutdown");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_per_call_deadline_applies_through_the_balanced_channel() {
    let server = common::start("deadline", [127, 0, 0, 1], |_| {}).await;
    let target: payplane_runtime::Target = server.grpc.to_string().parse().expect("target");
    let channel = balance::channel(&target, &health_checked(), None).expect("channel");
    wait_until_answering(&channel, "deadline").await;

    let mut request = tonic::Request::new(EchoRequest {
        message: "late".into(),
        sleep_ms: 2000,
        code: 0,
    });
    request.set_timeout(Duration::from_millis(200));
    let mut client = tonic::client::Grpc::new(channel.clone());
    client.ready().await.expect("ready");
    let path = http::uri::PathAndQuery::from_static("/payplane.test.v1.EchoService/Echo");
    let started = std::time::Instant::now();
    let reply: Result<tonic::Response<common::EchoResponse>, _> = client
        .unary(request, path, tonic_prost::ProstCodec::default())
        .await;
    let status = reply.expect_err("the deadline passes first");
    assert!(
        matches!(
            status.code(),
            tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
        ),
        "unexpected {status:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(1500));
    server.stop().await.expect("clean shutdown");
}

fn request(message: &str) -> EchoRequest {
    EchoRequest {
        message: message.into(),
        sleep_ms: 0,
        code: 0,
    }
}

/// Calls one at a time (failures allowed) until `name` answers, at most `within`.
async fn answers_within(channel: &BalancedChannel, name: &str, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if let Ok(reply) = echo(channel.clone(), request("probe")).await
            && reply.server == name
        {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "{name} got no call within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_address_reporting_not_serving_gets_no_calls_until_it_serves_again() {
    let s1 = common::start("h1", [127, 0, 0, 1], |_| {}).await;
    let s2 = common::start("h2", [127, 0, 0, 2], |_| {}).await;
    // Re-resolution every 5 s (the default): within this test only health changes act.
    let resolver = StaticResolver::new([s1.grpc, s2.grpc]);
    let channel = balance::channel_with_resolver(resolver, &health_checked(), None).expect("channel");

    // A new channel takes calls as soon as its addresses report SERVING.
    let started = Instant::now();
    echo(channel.clone(), request("first"))
        .await
        .expect("the first call succeeds");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "first call took {:?}",
        started.elapsed()
    );
    wait_until_answering(&channel, "h2").await;

    s2.health.set_service_status("", ServingStatus::NotServing).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let counts = spread(&channel, 600).await;
    assert_eq!(
        counts.get("h2"),
        None,
        "h2 is NOT_SERVING but got calls: {counts:?}"
    );
    assert_eq!(counts.get("h1"), Some(&600));
    // h2 still serves when asked directly: the channel dropped it for its health alone.
    let direct = echo(s2.channel().await, request("direct"))
        .await
        .expect("h2 still serves");
    assert_eq!(direct.server, "h2");

    s2.health.set_service_status("", ServingStatus::Serving).await;
    // While an address is not serving its health is polled every second.
    let waited = answers_within(&channel, "h2", Duration::from_secs(3)).await;
    assert!(
        waited < Duration::from_millis(1500),
        "h2 came back after {waited:?}"
    );
    let counts = spread(&channel, 600).await;
    let n = counts.get("h2").copied().unwrap_or(0);
    assert!((200..=400).contains(&n), "h2 got {n} of 600 calls: {counts:?}");

    s1.stop().await.expect("clean shutdown");
    s2.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_shutting_down_gets_no_calls_within_a_second_and_still_stops_promptly() {
    let s1 = common::start("d1", [127, 0, 0, 1], |_| {}).await;
    let delay = Duration::from_secs(5);
    let s2 = common::start("d2", [127, 0, 0, 2], |args| {
        args.shutdown_delay = delay;
        args.drain_timeout = Duration::from_secs(20);
    })
    .await;
    let resolver = StaticResolver::new([s1.grpc, s2.grpc]);
    let channel = balance::channel_with_resolver(resolver, &health_checked(), None).expect("channel");
    wait_until_answering(&channel, "d1").await;
    wait_until_answering(&channel, "d2").await;

    let triggered = Instant::now();
    s2.shutdown.trigger();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let counts = spread(&channel, 600).await;
    assert_eq!(
        counts.get("d2"),
        None,
        "d2 is shutting down but got calls: {counts:?}"
    );
    assert!(
        triggered.elapsed() < delay,
        "the check ran after the shutdown delay"
    );
    let direct = echo(s2.channel().await, request("direct"))
        .await
        .expect("d2 serves during its delay");
    assert_eq!(direct.server, "d2");

    // The client's health watch does not hold the draining server's connections open.
    tokio::time::timeout(Duration::from_secs(10), s2.task)
        .await
        .expect("d2 stops")
        .expect("task")
        .expect("clean shutdown");
    let took = triggered.elapsed();
    assert!(took < delay + Duration::from_secs(2), "d2 took {took:?} to stop");
    s1.stop().await.expect("clean shutdown");
}

/// A TCP forwarder on `ip`:0 to `to`. Aborting the returned task closes its port and every
/// connection through it at once, as a killed pod does.
async fn proxy(ip: [u8; 4], to: SocketAddr) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind(SocketAddr::from((ip, 0)))
        .await
        .expect("proxy binds");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                continue;
            };
            connections.spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
            while connections.try_join_next().is_some() {}
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_server_is_dropped_failing_only_the_calls_in_flight() {
    let s1 = common::start("k1", [127, 0, 0, 1], |_| {}).await;
    let s2 = common::start("k2", [127, 0, 0, 2], |_| {}).await;
    let (k2, killer) = proxy([127, 0, 0, 22], s2.grpc).await;
    let resolver = StaticResolver::new([s1.grpc, k2]);
    let channel = balance::channel_with_resolver(resolver, &health_checked(), None).expect("channel");
    wait_until_answering(&channel, "k1").await;
    wait_until_answering(&channel, "k2").await;

    // 8 callers, each one call of 20 ms at a time: at most 8 calls in flight.
    const CALLERS: usize = 8;
    let stop = Arc::new(AtomicBool::new(false));
    let mut callers = JoinSet::new();
    for _ in 0..CALLERS {
        let (channel, stop) = (channel.clone(), stop.clone());
        callers.spawn(async move {
            let mut results = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let reply = echo(
                    channel.clone(),
                    EchoRequest {
                        message: "load".into(),
                        sleep_ms: 20,
                        code: 0,
                    },
                )
                .await;
                results.push((started, reply.map(|r| r.server)));
            }
            results
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    killer.abort();
    let _ = killer.await;
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let results: Vec<_> = callers.join_all().await.into_iter().flatten().collect();

    let failed: Vec<_> = results.iter().filter(|(_, r)| r.is_err()).collect();
    assert!(
        failed.len() <= CALLERS,
        "{} calls failed, more than were in flight: {failed:?}",
        failed.len()
    );
    for (started, reply) in &failed {
        assert!(
            *started < killed,
            "a call started {:?} after the kill failed: {reply:?}",
            started.duration_since(killed)
        );
    }
    let before = results.iter().filter(|(s, r)| *s < killed && r.is_ok()).count();
    let after = results.iter().filter(|(s, _)| *s >= killed).count();
    assert!(
        before > 50 && after > 200,
        "too little load: {before} before, {after} after the kill"
    );

    s1.stop().await.expect("clean shutdown");
    s2.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_no_healthy_address_calls_fail_at_once_with_unavailable_naming_the_target() {
    let server = common::start("u1", [127, 0, 0, 1], |_| {}).await;
    let resolver = StaticResolver::new([server.grpc]);
    let channel = balance::channel_with_resolver(resolver, &health_checked(), None).expect("channel");
    wait_until_answering(&channel, "u1").await;

    server
        .health
        .set_service_status("", ServingStatus::NotServing)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let status = echo(channel.clone(), request("nobody"))
        .await
        .expect_err("no healthy address");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains(&server.grpc.to_string()) && status.message().contains("NOT_SERVING"),
        "{status:?}"
    );

    server.health.set_service_status("", ServingStatus::Serving).await;
    answers_within(&channel, "u1", Duration::from_secs(3)).await;
    server.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_health_checking_off_a_not_serving_address_keeps_getting_calls() {
    let s1 = common::start("o1", [127, 0, 0, 1], |_| {}).await;
    let s2 = common::start("o2", [127, 0, 0, 2], |_| {}).await;
    let resolver = StaticResolver::new([s1.grpc, s2.grpc]);
    let args = ClientArgs {
        client_health_check: false,
        ..health_checked()
    };
    let channel = balance::channel_with_resolver(resolver, &args, None).expect("channel");
    wait_until_answering(&channel, "o1").await;
    wait_until_answering(&channel, "o2").await;

    s2.health.set_service_status("", ServingStatus::NotServing).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let counts = spread(&channel, 600).await;
    let n = counts.get("o2").copied().unwrap_or(0);
    assert!((200..=400).contains(&n), "o2 got {n} of 600 calls: {counts:?}");

    s1.stop().await.expect("clean shutdown");
    s2.stop().await.expect("clean shutdown");
}

/// A health service with Check only (Watch is UNIMPLEMENTED), reporting `status`.
#[derive(Clone)]
struct CheckOnly {
    status: Arc<std::sync::Mutex<i32>>,
}

type WatchStream = std::pin::Pin<
    Box<dyn futures::Stream<Item = Result<HealthCheckResponse, tonic::Status>> + Send + 'static>,
>;

#[tonic::async_trait]
impl Health for CheckOnly {
    async fn check(
        &self,
        _request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<HealthCheckResponse>, tonic::Status> {
        let status = *self.status.lock().expect("lock");
        Ok(tonic::Response::new(HealthCheckResponse { status }))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        _request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<WatchStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("no Watch here"))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn where_watch_is_unimplemented_check_is_polled() {
    let s1 = common::start("c1", [127, 0, 0, 1], |_| {}).await;
    let status = Arc::new(std::sync::Mutex::new(HealthStatus::Serving as i32));
    let args = payplane_runtime::ServerArgs {
        grpc_addr: SocketAddr::from(([127, 0, 0, 2], 0)),
        ..payplane_runtime::ServerArgs::local("9.9.9-test")
    };
    let server = payplane_runtime::GrpcServer::new("c2", &args)
        .add_service(EchoService { name: "c2".into() })
        .add_service(HealthServer::new(CheckOnly {
            status: status.clone(),
        }));
    let listeners = server.bind().await.expect("binds");
    let c2 = listeners.grpc_addr().expect("addr");
    let c2_shutdown = server.shutdown_handle();
    let c2_task = tokio::spawn(server.serve_with(listeners));

    let resolver = StaticResolver::new([s1.grpc, c2]);
    let channel = balance::channel_with_resolver(resolver, &health_checked(), None).expect("channel");
    wait_until_answering(&channel, "c2").await;

    *status.lock().expect("lock") = HealthStatus::NotServing as i32;
    // Polled every second: gone within two.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let counts = spread(&channel, 300).await;
    assert_eq!(
        counts.get("c2"),
        None,
        "c2 is NOT_SERVING but got calls: {counts:?}"
    );

    *status.lock().expect("lock") = HealthStatus::Serving as i32;
    answers_within(&channel, "c2", Duration::from_secs(3)).await;

    c2_shutdown.trigger();
    c2_task.await.expect("task").expect("clean shutdown");
    s1.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_without_a_health_service_counts_as_healthy() {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 3], 0)))
        .await
        .expect("binds");
    let addr = listener.local_addr().expect("addr");
    let bare = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(EchoService { name: "bare".into() })
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let resolver = StaticResolver::new([addr]);
    let channel = balance::channel_with_resolver(resolver, &health_checked(), None).expect("channel");
    let reply = echo(channel, request("bare")).await.expect("the call succeeds");
    assert_eq!(reply.server, "bare");
    bare.abort();
}

/// Client settings with health checking on (it is off by default).
fn health_checked() -> ClientArgs {
    ClientArgs {
        client_health_check: true,
        ..ClientArgs::default()
    }
}
