//! The balanced channel spreads requests over every address in proportion, and follows
//! re-resolution as addresses come and go.

mod common;

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use common::{ECHO_SERVICE, EchoRequest, TestServer, echo, sample};
use futures::{StreamExt, stream};
use payplane_runtime::{
    BalancedChannel, ClientArgs,
    balance::{self, StaticResolver},
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
    let channel = balance::channel(&target, &ClientArgs::default(), None).expect("channel");
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
