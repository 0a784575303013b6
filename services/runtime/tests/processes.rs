//! The runtime in real processes: start-up validation, JSON logs with trace ids, SIGTERM.

mod common;

use std::time::Duration;

use common::process::{Proc, command};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

async fn run(example: &str, env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let out = command(example, env).output().await.expect("example runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[tokio::test]
async fn a_malformed_address_stops_start_up_with_one_line_naming_the_setting() {
    let (code, stdout, stderr) = run("relay", &[("GRPC_ADDR", "abc")]).await;
    assert_eq!(code, Some(2));
    assert_eq!(
        stderr,
        "error: invalid value 'abc' for GRPC_ADDR (--grpc-addr): invalid socket address syntax\n"
    );
    assert_eq!(stdout, "");

    let (code, _, stderr) = run("relay", &[("ADMIN_ADDR", "127.0.0.1:99999")]).await;
    assert_eq!(code, Some(2));
    assert!(
        stderr.starts_with("error: invalid value '127.0.0.1:99999' for ADMIN_ADDR (--admin-addr): "),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[tokio::test]
async fn a_missing_required_value_stops_start_up_with_one_line_naming_the_setting() {
    let (code, stdout, stderr) = run("check_config", &[]).await;
    assert_eq!(code, Some(2));
    assert_eq!(
        stderr,
        "error: missing required setting DATABASE_URL (--database-url)\n"
    );
    assert_eq!(stdout, "");
}

#[tokio::test]
async fn other_bad_values_name_their_setting_and_good_ones_pass() {
    let db = (
        "DATABASE_URL",
        "postgres://payplane:secret@127.0.0.1:5432/payplane",
    );
    let cases = [
        (
            ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
            "OTEL_TRACES_SAMPLER_ARG (--otel-traces-sampler-arg)",
        ),
        (
            ("OTEL_TRACES_SAMPLER", "sometimes"),
            "OTEL_TRACES_SAMPLER (--otel-traces-sampler)",
        ),
        (
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "jaeger:4317"),
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ),
        (("LOG_FORMAT", "xml"), "LOG_FORMAT (--log-format)"),
        (("DRAIN_TIMEOUT", "soon"), "DRAIN_TIMEOUT (--drain-timeout)"),
        (("CLIENT_RESOLVE_INTERVAL", "-1s"), "CLIENT_RESOLVE_INTERVAL"),
        (
            ("CLIENT_HEALTH_CHECK", "sometimes"),
            "CLIENT_HEALTH_CHECK (--client-health-check)",
        ),
        (("RUST_LOG", "info,foo=notalevel"), "RUST_LOG (--log-level)"),
    ];
    for (var, named) in cases {
        let (code, _, stderr) = run("check_config", &[db, var]).await;
        assert_eq!(code, Some(2), "{var:?}");
        assert!(
            stderr.starts_with("error: invalid value ") && stderr.contains(named),
            "{var:?}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{var:?}: {stderr}");
    }
    let (code, _, stderr) = run(
        "check_config",
        &[("DATABASE_URL", "mysql://payplane:secret@db/x")],
    )
    .await;
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("DATABASE_URL") && !stderr.contains("secret"),
        "the password leaked: {stderr}"
    );

    let (code, stdout, stderr) = run("check_config", &[db, ("SERVICE_VERSION", "1.8.0")]).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("configuration ok") && stdout.contains("version 1.8.0"),
        "{stdout}"
    );
    let (code, stdout, _) = run("check_config", &[db]).await;
    assert_eq!(code, Some(0));
    assert!(
        stdout.contains(concat!("version ", env!("CARGO_PKG_VERSION"))),
        "default version: {stdout}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_relays_log_json_with_trace_ids_and_stop_cleanly_on_sigterm() {
    let local = [
        ("GRPC_ADDR", "127.0.0.1:0"),
        ("ADMIN_ADDR", "127.0.0.1:0"),
        ("LOG_FORMAT", "json"),
    ];
    let mut last = Proc::spawn("relay", &[&local[..], &[("RELAY_NAME", "relay-last")]].concat());
    let (last_grpc, _) = last.serving().await;
    let next = last_grpc.to_string();
    let mut first = Proc::spawn(
        "relay",
        &[&local[..], &[("RELAY_NAME", "relay-first"), ("NEXT_HOP", &next)]].concat(),
    );
    let (first_grpc, first_admin) = first.serving().await;

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{first_grpc}"))
        .expect("url")
        .connect()
        .await
        .expect("connects");
    let reply = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await;
    assert_eq!(
        reply.expect("check through two relays").into_inner().status(),
        ServingStatus::Serving
    );

    // The handler's log line carries the ids of its server span.
    let line = first
        .wait_for_log(Duration::from_secs(10), |v| v["message"] == "next hop answered")
        .await;
    let hex = |key: &str, len: usize| {
        let s = line[key].as_str().unwrap_or_else(|| panic!("no {key} in {line}"));
        assert!(
            s.len() == len && s.chars().all(|c| c.is_ascii_hexdigit()) && !s.trim_matches('0').is_empty(),
            "{key}: {s}"
        );
    };
    hex("trace_id", 32);
    hex("span_id", 16);
    assert_eq!(line["level"], "INFO");

    let ready = reqwest::get(format!("http://{first_admin}/readyz"))
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200);

    assert_eq!(
        first.terminate().await,
        Some(0),
        "relay-first did not exit cleanly"
    );
    assert_eq!(last.terminate().await, Some(0), "relay-last did not exit cleanly");
    assert!(
        first
            .seen
            .iter()
            .chain(last.seen.iter())
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
    );
}
