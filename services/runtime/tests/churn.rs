//! Calls through the balanced channel while connections churn as they do during a release:
//! servers close connections at their maximum age (GOAWAY), and addresses leave and rejoin the
//! resolved set while calls are in flight on them. Every server stays up and answers every call
//! it gets, so no call may fail.

mod common;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use common::{EchoRequest, TestServer, echo};
use payplane_runtime::{
    BalancedChannel, ClientArgs,
    balance::{self, StaticResolver},
};
use tokio::{task::JoinSet, time::Instant};
use tonic_health::ServingStatus;

/// Failed calls by `CODE: message`, and the number of calls made.
struct Outcome {
    calls: usize,
    failures: BTreeMap<String, usize>,
}

impl Outcome {
    fn failed(&self) -> usize {
        self.failures.values().sum()
    }
}

/// `callers` loops each calling Echo (handler sleeping `sleep_ms`) back to back for `run`.
async fn load(channel: &BalancedChannel, callers: usize, sleep_ms: u64, run: Duration) -> Outcome {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = JoinSet::new();
    for _ in 0..callers {
        let (channel, stop) = (channel.clone(), stop.clone());
        tasks.spawn(async move {
            let mut results = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let request = EchoRequest {
                    message: "churn".into(),
                    sleep_ms,
                    code: 0,
                };
                results.push(echo(channel.clone(), request).await.map(|_| ()));
            }
            results
        });
    }
    tokio::time::sleep(run).await;
    stop.store(true, Ordering::Relaxed);
    let results: Vec<_> = tasks.join_all().await.into_iter().flatten().collect();
    let failed = results.iter().filter(|r| r.is_err()).count();
    eprintln!("{} calls, {failed} failed", results.len());
    let mut failures = BTreeMap::new();
    for status in results.iter().filter_map(|r| r.as_ref().err()) {
        let mut key = format!("{:?}: {}", status.code(), status.message());
        let mut source = std::error::Error::source(status);
        while let Some(e) = source {
            key.push_str(&format!(" <- {e:?}"));
            source = e.source();
        }
        *failures.entry(key).or_insert(0) += 1;
    }
    Outcome {
        calls: results.len(),
        failures,
    }
}

async fn servers(
    prefix: &str,
    n: u8,
    max_connection_age: Duration,
    shutdown_delay: Duration,
) -> Vec<TestServer> {
    let mut servers = Vec::new();
    for i in 1..=n {
        let name = format!("{prefix}{i}");
        servers.push(
            common::start(&name, [127, 0, 0, i], |args| {
                args.max_connection_age = max_connection_age;
                args.shutdown_delay = shutdown_delay;
            })
            .await,
        );
    }
    servers
}

/// 16 callers for 6 s through a channel to two servers closing connections at a 300 ms
/// maximum age; the number of calls and the failures.
async fn calls_across_goaways(client_health_check: bool) -> Outcome {
    let servers = servers("age", 2, Duration::from_millis(300), Duration::ZERO).await;
    let resolver = StaticResolver::new(servers.iter().map(|s| s.grpc));
    let args = ClientArgs {
        client_health_check,
        ..ClientArgs::default()
    };
    let channel = balance::channel_with_resolver(resolver, &args, None).expect("channel");
    let outcome = load(&channel, 16, 0, Duration::from_secs(6)).await;
    for server in servers {
        server.stop().await.expect("clean shutdown");
    }
    assert!(outcome.calls > 3000, "too little load: {} calls", outcome.calls);
    outcome
}

/// Without the transparent retry about 1 call in 300 failed here, CANCELLED (hyper: still queued
/// for a connection whose task had ended on the GOAWAY) or INTERNAL (h2: GOAWAY NO_ERROR on a
/// stream the server had not taken).
#[tokio::test(flavor = "multi_thread")]
async fn calls_racing_the_servers_goaway_at_max_connection_age_do_not_fail() {
    let outcome = calls_across_goaways(false).await;
    assert_eq!(
        outcome.failed(),
        0,
        "{} of {} calls failed: {:#?}",
        outcome.failed(),
        outcome.calls,
        outcome.failures
    );
}

/// The same with health checking on (the health gate sits in front of the same channel).
#[tokio::test(flavor = "multi_thread")]
async fn with_health_checking_calls_racing_a_goaway_do_not_fail_either() {
    let outcome = calls_across_goaways(true).await;
    assert_eq!(
        outcome.failed(),
        0,
        "{} of {} calls failed: {:#?}",
        outcome.failed(),
        outcome.calls,
        outcome.failures
    );
}

/// Removing an address drops its service from tower's balancer, but hyper keeps the connection
/// open until the calls already on it are answered, so they finish: 16 calls are always in
/// flight, about 5 on each address when it is removed. This held before the transparent retry
/// too (0 of ~4,300 calls failed), which is not what makes it pass; it guards against a channel
/// that would cut them.
#[tokio::test(flavor = "multi_thread")]
async fn calls_in_flight_on_an_address_removed_from_the_balancer_finish() {
    // Long-lived connections: only removal closes them.
    let servers = servers("gone", 3, Duration::from_secs(600), Duration::ZERO).await;
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.grpc).collect();
    let resolver = StaticResolver::new(addrs.clone());
    let args = ClientArgs {
        client_resolve_interval: Duration::from_millis(50),
        ..ClientArgs::default()
    };
    let channel = balance::channel_with_resolver(resolver.clone(), &args, None).expect("channel");

    // One address at a time leaves the resolved set for 200 ms, then comes back.
    let churn = tokio::spawn(async move {
        let started = Instant::now();
        let mut removals = 0;
        for i in 0.. {
            if started.elapsed() > Duration::from_secs(5) {
                break;
            }
            let out = i % addrs.len();
            let kept: Vec<SocketAddr> = addrs
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != out)
                .map(|(_, a)| *a)
                .collect();
            resolver.set(kept);
            tokio::time::sleep(Duration::from_millis(200)).await;
            resolver.set(addrs.clone());
            removals += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        removals
    });
    let outcome = load(&channel, 16, 20, Duration::from_secs(6)).await;
    let removals = churn.await.expect("churn");
    assert!(removals >= 8, "only {removals} removals");
    assert!(outcome.calls > 1000, "too little load: {} calls", outcome.calls);
    assert_eq!(
        outcome.failed(),
        0,
        "{} of {} calls failed: {:#?}",
        outcome.failed(),
        outcome.calls,
        outcome.failures
    );
    for server in servers {
        server.stop().await.expect("clean shutdown");
    }
}

/// The same with health checking: an address reporting NOT_SERVING leaves the balancer at
/// once (and comes back within a second of SERVING), while 16 calls are always in flight.
#[tokio::test(flavor = "multi_thread")]
async fn calls_in_flight_on_an_address_turning_not_serving_finish() {
    let servers = servers("sick", 3, Duration::from_secs(600), Duration::ZERO).await;
    let resolver = StaticResolver::new(servers.iter().map(|s| s.grpc));
    let args = ClientArgs {
        client_health_check: true,
        ..ClientArgs::default()
    };
    let channel = balance::channel_with_resolver(resolver, &args, None).expect("channel");
    let reporters: Vec<_> = servers.iter().map(|s| s.health.clone()).collect();

    // One address at a time reports NOT_SERVING for 300 ms.
    let churn = tokio::spawn(async move {
        let started = Instant::now();
        let mut removals = 0;
        for i in 0.. {
            if started.elapsed() > Duration::from_secs(5) {
                break;
            }
            let health = &reporters[i % reporters.len()];
            health.set_service_status("", ServingStatus::NotServing).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            health.set_service_status("", ServingStatus::Serving).await;
            removals += 1;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        removals
    });
    let outcome = load(&channel, 16, 20, Duration::from_secs(6)).await;
    let removals = churn.await.expect("churn");
    assert!(removals >= 6, "only {removals} removals");
    assert!(outcome.calls > 1000, "too little load: {} calls", outcome.calls);
    assert_eq!(
        outcome.failed(),
        0,
        "{} of {} calls failed: {:#?}",
        outcome.failed(),
        outcome.calls,
        outcome.failures
    );
    for server in servers {
        server.stop().await.expect("clean shutdown");
    }
}

/// A rolling release without health checking: every 600 ms a new server joins the resolved set
/// and the oldest leaves it and is told to stop after `shutdown_delay`, then closes its
/// connections (GOAWAY) and its listener; every server also closes connections at a 1 s
/// maximum age. Re-resolution every 100 ms.
async fn rolling_release(shutdown_delay: Duration) -> Outcome {
    let age = Duration::from_secs(1);
    let mut live = servers("rel", 2, age, shutdown_delay).await;
    let resolver = StaticResolver::new(live.iter().map(|s| s.grpc));
    let args = ClientArgs {
        client_resolve_interval: Duration::from_millis(100),
        ..ClientArgs::default()
    };
    let channel = balance::channel_with_resolver(resolver.clone(), &args, None).expect("channel");

    let release = tokio::spawn(async move {
        let mut stopping = Vec::new();
        tokio::time::sleep(Duration::from_millis(500)).await;
        for generation in 0..6u8 {
            let next = common::start(
                &format!("rel-new{generation}"),
                [127, 0, 1, generation + 1],
                |args| {
                    args.max_connection_age = age;
                    args.shutdown_delay = shutdown_delay;
                },
            )
            .await;
            live.push(next);
            let old = live.remove(0);
            resolver.set(live.iter().map(|s| s.grpc));
            stopping.push(tokio::spawn(old.stop()));
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
        for stopped in stopping {
            stopped.await.expect("task").expect("clean shutdown");
        }
        live
    });
    let outcome = load(&channel, 16, 2, Duration::from_secs(5)).await;
    let live = release.await.expect("release");
    for server in live {
        server.stop().await.expect("clean shutdown");
    }
    assert!(outcome.calls > 2000, "too little load: {} calls", outcome.calls);
    outcome
}

/// As the charts run one: the shutdown delay (there 40 s, against 5 s re-resolution and 30 s
/// of DNS caching) outlasts re-resolution, so a stopping server is out of the balancer before
/// it closes anything. Without the transparent retry 7 and 16 of about 17,000 calls failed
/// (CANCELLED, racing a GOAWAY).
#[tokio::test(flavor = "multi_thread")]
async fn calls_during_a_rolling_release_do_not_fail() {
    let outcome = rolling_release(Duration::from_millis(300)).await;
    assert_eq!(
        outcome.failed(),
        0,
        "{} of {} calls failed: {:#?}",
        outcome.failed(),
        outcome.calls,
        outcome.failures
    );
}

/// With no shutdown delay (a misconfiguration, or a crashed pod) a stopped server's address
/// stays resolved for up to 100 ms, and connecting to it is refused: those calls never left the
/// client, and are sent again, mostly to another address. The balancer picks at random, so a
/// call can land on the dead address on every attempt: fewer fail, not none (the cure is the
/// shutdown delay, or health checking). Without the retry 266 and 309 of about 17,500 calls
/// failed (UNAVAILABLE); with it 0 to 4.
#[tokio::test(flavor = "multi_thread")]
async fn calls_picking_a_stopped_server_still_resolved_mostly_go_to_another() {
    let outcome = rolling_release(Duration::ZERO).await;
    assert!(
        outcome.failed() * 1000 <= outcome.calls,
        "{} of {} calls failed (more than 1 in 1,000): {:#?}",
        outcome.failed(),
        outcome.calls,
        outcome.failures
    );
}
