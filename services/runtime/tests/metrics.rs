//! `/metrics` after calls that succeed and fail: counts per method and gRPC status code.

mod common;

use common::{ECHO_SERVICE, EchoRequest, echo, echo_stream, sample};
use prometheus_client::metrics::counter::Counter;
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

fn asking(code: Code) -> EchoRequest {
    EchoRequest {
        message: "hi".into(),
        sleep_ms: 0,
        code: code as i32,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_every_call_by_method_and_status_code() {
    let server = common::start("metrics-test", [127, 0, 0, 1], |_| {}).await;
    let channel = server.channel().await;

    for _ in 0..3 {
        echo(channel.clone(), asking(Code::Ok))
            .await
            .expect("echo succeeds");
    }
    for (code, times) in [
        (Code::NotFound, 2),
        (Code::Internal, 1),
        (Code::InvalidArgument, 4),
    ] {
        for _ in 0..times {
            let status = echo(channel.clone(), asking(code))
                .await
                .expect_err("echo fails as asked");
            assert_eq!(status.code(), code);
        }
    }
    // Streaming: the status arrives in trailers after the messages.
    let (n, end) = echo_stream(channel.clone(), asking(Code::Ok)).await;
    assert_eq!((n, end.map_err(|s| s.code())), (3, Ok(())));
    let (n, end) = echo_stream(channel.clone(), asking(Code::Unavailable)).await;
    assert_eq!((n, end.map_err(|s| s.code())), (3, Err(Code::Unavailable)));
    // The built-in health service: NOT_FOUND for a service nobody registered.
    let mut health = HealthClient::new(channel.clone());
    health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("overall health");
    let unknown = health
        .check(HealthCheckRequest {
            service: "nope.v1.Nope".into(),
        })
        .await;
    assert_eq!(unknown.expect_err("unknown service").code(), Code::NotFound);

    let (status, body) = server.get("/metrics").await;
    assert_eq!(status, 200);
    let handled = |method: &str, code: &str| {
        sample(
            &body,
            "grpc_server_handled_total",
            &[
                ("service", "metrics-test"),
                ("version", "9.9.9-test"),
                ("grpc_service", ECHO_SERVICE),
                ("grpc_method", method),
                ("grpc_code", code),
            ],
        )
    };
    assert_eq!(handled("Echo", "OK"), 3.0, "{body}");
    assert_eq!(handled("Echo", "NOT_FOUND"), 2.0, "{body}");
    assert_eq!(handled("Echo", "INTERNAL"), 1.0, "{body}");
    assert_eq!(handled("Echo", "INVALID_ARGUMENT"), 4.0, "{body}");
    assert_eq!(handled("EchoStream", "OK"), 1.0, "{body}");
    assert_eq!(handled("EchoStream", "UNAVAILABLE"), 1.0, "{body}");
    let health_check = |code| {
        sample(
            &body,
            "grpc_server_handled_total",
            &[("grpc_service", "grpc.health.v1.Health"), ("grpc_code", code)],
        )
    };
    assert_eq!(health_check("OK"), 1.0, "{body}");
    assert_eq!(health_check("NOT_FOUND"), 1.0, "{body}");
    assert_eq!(
        sample(&body, "grpc_server_started_total", &[("grpc_method", "Echo")]),
        10.0,
        "{body}"
    );
    assert_eq!(
        sample(
            &body,
            "grpc_server_handling_seconds_count",
            &[("grpc_method", "Echo"), ("grpc_code", "OK")]
        ),
        3.0,
        "{body}"
    );

    server.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_paths_do_not_create_label_values_and_services_add_their_own_metrics() {
    let args = payplane_runtime::ServerArgs::local("1.0.0");
    let server = payplane_runtime::GrpcServer::new("own-metrics", &args)
        .add_service(common::EchoService { name: "own".into() });
    let payments = Counter::<u64>::default();
    server
        .metrics()
        .registry()
        .register("payments_accepted", "Payments accepted", payments.clone());
    payments.inc_by(7);
    let listeners = server.bind().await.expect("binds");
    let (grpc, admin) = (
        listeners.grpc_addr().expect("addr"),
        listeners.admin_addr().expect("addr"),
    );
    let shutdown = server.shutdown_handle();
    let task = tokio::spawn(server.serve_with(listeners));

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))
        .expect("url")
        .connect()
        .await
        .expect("connects");
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await.expect("ready");
    let path = http::uri::PathAndQuery::from_static("/random.v1.Thing/Call123");
    let reply: Result<tonic::Response<EchoRequest>, _> = client
        .unary(
            tonic::Request::new(asking(Code::Ok)),
            path,
            tonic_prost::ProstCodec::default(),
        )
        .await;
    assert_eq!(reply.expect_err("no such service").code(), Code::Unimplemented);

    let body = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .expect("get")
        .text()
        .await
        .expect("text");
    assert!(!body.contains("random.v1.Thing"), "{body}");
    let unknown = [
        ("grpc_service", "unknown"),
        ("grpc_method", "unknown"),
        ("grpc_code", "UNIMPLEMENTED"),
    ];
    assert_eq!(
        sample(&body, "grpc_server_handled_total", &unknown),
        1.0,
        "{body}"
    );
    assert_eq!(
        sample(
            &body,
            "payments_accepted_total",
            &[("service", "own-metrics"), ("version", "1.0.0")]
        ),
        7.0,
        "{body}"
    );

    shutdown.trigger();
    task.await.expect("task").expect("clean shutdown");
}
