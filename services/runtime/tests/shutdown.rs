//! Graceful shutdown: NOT_SERVING and /readyz 503 first, in-flight calls finish, then exit;
//! calls longer than the drain timeout are cut off.

mod common;

use std::time::{Duration, Instant};

use common::{ECHO_SERVICE, EchoRequest, echo};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

async fn status(health: &mut HealthClient<tonic::transport::Channel>, service: &str) -> ServingStatus {
    let reply = health
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .expect("health answers");
    reply.into_inner().status()
}

#[tokio::test(flavor = "multi_thread")]
async fn health_goes_not_serving_while_an_in_flight_call_completes() {
    let server = common::start("shutdown-test", [127, 0, 0, 1], |args| {
        args.shutdown_delay = Duration::from_millis(1500);
        args.drain_timeout = Duration::from_secs(10);
    })
    .await;
    let channel = server.channel().await;
    let mut health = HealthClient::new(channel.clone());
    assert_eq!(status(&mut health, "").await, ServingStatus::Serving);
    assert_eq!(status(&mut health, ECHO_SERVICE).await, ServingStatus::Serving);
    assert_eq!(server.get("/readyz").await.0, 200);

    let slow = tokio::spawn(echo(
        channel.clone(),
        EchoRequest {
            message: "slow".into(),
            sleep_ms: 3000,
            code: 0,
        },
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let triggered = Instant::now();
    server.shutdown.trigger();

    // During the shutdown delay the server still answers, but says it is going away.
    let deadline = Instant::now() + Duration::from_secs(1);
    while status(&mut health, "").await != ServingStatus::NotServing {
        assert!(Instant::now() < deadline, "health never went NOT_SERVING");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status(&mut health, ECHO_SERVICE).await, ServingStatus::NotServing);
    assert_eq!(server.get("/readyz").await.0, 503);
    assert_eq!(server.get("/healthz").await.0, 200, "still alive while draining");
    assert!(!slow.is_finished(), "the slow call must still be in flight");

    let reply = slow.await.expect("task").expect("the in-flight call completes");
    assert_eq!(reply.message, "slow");
    let result = tokio::time::timeout(Duration::from_secs(10), server.task).await;
    result
        .expect("server stops after draining")
        .expect("task")
        .expect("clean shutdown");
    assert!(
        triggered.elapsed() >= Duration::from_millis(2500),
        "stopped before the call finished"
    );

    // The listener is closed.
    let connect = tonic::transport::Endpoint::from_shared(format!("http://{}", server.grpc)).expect("url");
    assert!(
        connect.connect().await.is_err(),
        "still accepting connections after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_stops_waiting_for_calls_after_the_drain_timeout() {
    let server = common::start("drain-timeout-test", [127, 0, 0, 1], |args| {
        args.drain_timeout = Duration::from_millis(500);
    })
    .await;
    let channel = server.channel().await;
    let stuck = tokio::spawn(echo(
        channel,
        EchoRequest {
            message: "stuck".into(),
            sleep_ms: 30_000,
            code: 0,
        },
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let triggered = Instant::now();
    server.shutdown.trigger();
    let result = tokio::time::timeout(Duration::from_secs(5), server.task).await;
    result
        .expect("server gives up on the stuck call")
        .expect("task")
        .expect("returns Ok");
    let waited = triggered.elapsed();
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_secs(3),
        "waited {waited:?}"
    );
    assert!(!stuck.is_finished(), "the stuck call cannot have completed");
    stuck.abort();
}
