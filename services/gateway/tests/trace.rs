//! One payment's trace in Jaeger has spans from gateway, routing, accounting, channel-sim and
//! settlement under the trace id the gateway returned in `x-trace-id`. Needs Jaeger:
//! `ci/devenv up && eval "$(ci/devenv env)"` (JAEGER_QUERY_URL, OTEL_EXPORTER_OTLP_ENDPOINT).

mod common;

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use common::{Platform, PlatformOptions, payment};
use payplane_proto::payment::v1::PaymentStatus;

#[tokio::test]
async fn one_trace_spans_every_service_of_a_payment() -> anyhow::Result<()> {
    let jaeger =
        std::env::var("JAEGER_QUERY_URL").expect("JAEGER_QUERY_URL: run ci/devenv up and eval its env");
    let otlp =
        std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").expect("OTEL_EXPORTER_OTLP_ENDPOINT: see ci/devenv env");
    let platform = Platform::start(PlatformOptions {
        otlp_endpoint: Some(otlp),
        ..Default::default()
    })
    .await?;
    let mut gw = platform.gateway_client(0).await?;
    let r = gw
        .create_payment(payment("traced-1", "m-001", 1288, "CNY"))
        .await?;
    let trace_id = r
        .metadata()
        .get("x-trace-id")
        .expect("x-trace-id in the response metadata")
        .to_str()?
        .to_string();
    let p = r.into_inner().payment.unwrap();
    assert_eq!(p.status(), PaymentStatus::Succeeded);
    assert_eq!(p.trace_id, trace_id);

    let want: BTreeSet<&str> = ["gateway", "routing", "accounting", "channel-sim", "settlement"].into();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut seen = BTreeSet::new();
    let mut payment_tagged = false;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let resp = http.get(format!("{jaeger}/api/traces/{trace_id}")).send().await?;
        if !resp.status().is_success() {
            continue;
        }
        let body: serde_json::Value = resp.json().await?;
        seen.clear();
        for trace in body["data"].as_array().into_iter().flatten() {
            assert_eq!(trace["traceID"].as_str(), Some(trace_id.as_str()));
            let processes = &trace["processes"];
            for span in trace["spans"].as_array().into_iter().flatten() {
                if let Some(service) = span["processID"]
                    .as_str()
                    .and_then(|id| processes[id]["serviceName"].as_str())
                {
                    seen.insert(service.to_string());
                }
                let tags = span["tags"].as_array().into_iter().flatten();
                payment_tagged |= tags
                    .into_iter()
                    .any(|t| t["value"].as_str() == Some(p.payment_id.as_str()));
            }
        }
        if want.iter().all(|s| seen.contains(*s)) && payment_tagged {
            println!("trace {trace_id}: services {seen:?}");
            return Ok(());
        }
    }
    panic!(
        "trace {trace_id} in Jaeger has services {seen:?} (want {want:?}), payment id tagged: {payment_tagged}"
    );
}
