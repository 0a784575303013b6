//! A gRPC call through two of our processes is one trace in Jaeger: found through Jaeger's
//! query API, with client and server spans linked parent→child across the processes and
//! `service.version` on the spans. Needs the dev environment's Jaeger (`ci/devenv up`).

mod common;

use std::{collections::HashMap, time::Duration};

use common::process::Proc;
use serde_json::Value;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

fn jaeger_env() -> (String, String) {
    match (
        std::env::var("JAEGER_QUERY_URL"),
        std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT"),
    ) {
        (Ok(query), Ok(otlp)) if !query.is_empty() && !otlp.is_empty() => (query, otlp),
        _ => panic!(
            "JAEGER_QUERY_URL and OTEL_EXPORTER_OTLP_ENDPOINT are not set: this test needs the dev \
             environment's Jaeger. Run `ci/devenv up`, then `eval \"$(ci/devenv env)\"`, then the tests."
        ),
    }
}

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

struct Span<'a> {
    id: &'a str,
    parent: Option<&'a str>,
    operation: &'a str,
    service: &'a str,
    tags: HashMap<&'a str, &'a Value>,
}

fn spans(trace: &Value) -> Vec<Span<'_>> {
    let processes = &trace["processes"];
    trace["spans"]
        .as_array()
        .map(|spans| {
            spans
                .iter()
                .map(|s| Span {
                    id: s["spanID"].as_str().unwrap_or_default(),
                    parent: s["references"]
                        .as_array()
                        .and_then(|refs| refs.iter().find(|r| r["refType"] == "CHILD_OF"))
                        .and_then(|r| r["spanID"].as_str()),
                    operation: s["operationName"].as_str().unwrap_or_default(),
                    service: s["processID"]
                        .as_str()
                        .and_then(|p| processes[p]["serviceName"].as_str())
                        .unwrap_or_default(),
                    tags: s["tags"]
                        .as_array()
                        .map(|tags| {
                            tags.iter()
                                .filter_map(|t| Some((t["key"].as_str()?, &t["value"])))
                                .collect()
                        })
                        .unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_through_two_processes_is_one_linked_trace_in_jaeger() {
    let (query, otlp) = jaeger_env();
    let run = random_hex(3);
    let (name_a, name_b) = (format!("relay-a-{run}"), format!("relay-b-{run}"));
    let common = [
        ("GRPC_ADDR", "127.0.0.1:0"),
        ("ADMIN_ADDR", "127.0.0.1:0"),
        ("LOG_FORMAT", "json"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.as_str()),
    ];
    let mut b = Proc::spawn(
        "relay",
        &[
            &common[..],
            &[("RELAY_NAME", &name_b), ("SERVICE_VERSION", "2.0.0-b")],
        ]
        .concat(),
    );
    let (b_grpc, _) = b.serving().await;
    let next = b_grpc.to_string();
    let mut a = Proc::spawn(
        "relay",
        &[
            &common[..],
            &[
                ("RELAY_NAME", &name_a),
                ("SERVICE_VERSION", "1.0.0-a"),
                ("NEXT_HOP", &next),
            ],
        ]
        .concat(),
    );
    let (a_grpc, _) = a.serving().await;

    // The caller (this test) starts the trace: a sampled W3C traceparent with ids we know.
    let (trace_id, caller_span) = (random_hex(16), random_hex(8));
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    let traceparent = format!("00-{trace_id}-{caller_span}-01");
    request
        .metadata_mut()
        .insert("traceparent", traceparent.parse().expect("ascii"));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{a_grpc}"))
        .expect("url")
        .connect()
        .await
        .expect("connects");
    HealthClient::new(channel)
        .check(request)
        .await
        .expect("check through two relays");

    // Graceful shutdown flushes the spans.
    assert_eq!(a.terminate().await, Some(0));
    assert_eq!(b.terminate().await, Some(0));

    let url = format!("{}/api/traces/{trace_id}", query.trim_end_matches('/'));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let trace = loop {
        let body: Option<Value> = match reqwest::get(&url).await {
            Ok(r) if r.status().is_success() => r.json().await.ok(),
            _ => None,
        };
        let trace = body.as_ref().and_then(|b| b["data"].get(0)).cloned();
        if let Some(trace) = trace.filter(|t| spans(t).len() >= 3) {
            break trace;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "trace {trace_id} not in Jaeger at {url}: {body:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let all = spans(&trace);
    let find = |service: &str, kind: &str| {
        all.iter()
            .find(|s| s.service == service && s.tags.get("span.kind").and_then(|v| v.as_str()) == Some(kind))
            .unwrap_or_else(|| panic!("no {kind} span of {service} in {trace}"))
    };
    let a_server = find(&name_a, "server");
    let a_client = find(&name_a, "client");
    let b_server = find(&name_b, "server");

    for span in [a_server, a_client, b_server] {
        assert_eq!(span.operation, "grpc.health.v1.Health/Check");
        assert_eq!(span.tags.get("rpc.system").and_then(|v| v.as_str()), Some("grpc"));
        assert_eq!(
            span.tags.get("rpc.grpc.status_code").and_then(|v| v.as_i64()),
            Some(0),
            "{trace}"
        );
    }
    // Parent → child: caller → A server → A client → (other process) B server.
    assert_eq!(a_server.parent, Some(caller_span.as_str()));
    assert_eq!(a_client.parent, Some(a_server.id));
    assert_eq!(b_server.parent, Some(a_client.id));
    // The version of each process, on its spans and on its Jaeger process.
    assert_eq!(
        a_server.tags.get("service.version").and_then(|v| v.as_str()),
        Some("1.0.0-a")
    );
    assert_eq!(
        a_client.tags.get("service.version").and_then(|v| v.as_str()),
        Some("1.0.0-a")
    );
    assert_eq!(
        b_server.tags.get("service.version").and_then(|v| v.as_str()),
        Some("2.0.0-b")
    );
    let process_version = |service: &str| {
        trace["processes"]
            .as_object()
            .into_iter()
            .flatten()
            .find(|(_, p)| p["serviceName"] == service)
            .and_then(|(_, p)| {
                p["tags"]
                    .as_array()?
                    .iter()
                    .find(|t| t["key"] == "service.version")
                    .and_then(|t| t["value"].as_str())
            })
    };
    assert_eq!(process_version(&name_a), Some("1.0.0-a"));
    assert_eq!(process_version(&name_b), Some("2.0.0-b"));
}
