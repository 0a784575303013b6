//! Fault injection (release drills): the configured share of calls fails with UNAVAILABLE and
//! the delay is added, both counted in `/metrics` like real outcomes; health stays SERVING.

mod common;

use std::time::{Duration, Instant};

use common::{ECHO_SERVICE, EchoRequest, echo, sample};
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

fn hello() -> EchoRequest {
    EchoRequest {
        message: "hi".into(),
        sleep_ms: 0,
        code: 0,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_faulty_server_fails_its_share_of_calls_with_unavailable_and_says_so_in_metrics() {
    let server = common::start("faults-test", [127, 0, 0, 1], |args| {
        args.faults.fault_unavailable_ratio = 0.25;
    })
    .await;
    let channel = server.channel().await;

    let mut unavailable = 0;
    for _ in 0..40 {
        match echo(channel.clone(), hello()).await {
            Ok(_) => {}
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                assert!(status.message().contains("injected fault"), "{status:?}");
                unavailable += 1;
            }
        }
    }
    assert_eq!(unavailable, 10, "a quarter of 40 calls");

    let mut health = HealthClient::new(channel.clone());
    for _ in 0..8 {
        let reply = health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .expect("health is never faulted");
        assert_eq!(reply.into_inner().status(), ServingStatus::Serving);
    }

    let (_, body) = server.get("/metrics").await;
    let handled = |code: &str| {
        sample(
            &body,
            "grpc_server_handled_total",
            &[
                ("grpc_service", ECHO_SERVICE),
                ("grpc_method", "Echo"),
                ("grpc_code", code),
            ],
        )
    };
    assert_eq!(handled("UNAVAILABLE"), 10.0, "{body}");
    assert_eq!(handled("OK"), 30.0, "{body}");
    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_server_adds_its_delay_to_every_call() {
    let server = common::start("faults-delay-test", [127, 0, 0, 1], |args| {
        args.faults.fault_delay = Duration::from_millis(150);
    })
    .await;
    let channel = server.channel().await;
    for _ in 0..3 {
        let start = Instant::now();
        echo(channel.clone(), hello())
            .await
            .expect("a late answer is still an answer");
        assert!(
            start.elapsed() >= Duration::from_millis(150),
            "{:?}",
            start.elapsed()
        );
    }
    let start = Instant::now();
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health");
    assert!(
        start.elapsed() < Duration::from_millis(150),
        "health is not delayed"
    );
    server.stop().await.expect("clean stop");
}
