//! The load engine against the real gateway of a running platform (`ci/platform-local up`).
//! Run with: `cargo test -p payplane-cli -- --ignored` (GATEWAY_URL overrides 127.0.0.1:50051).

use std::time::Duration;

use payplane_cli::load::{Live, LoadPlan, Mode, run};
use payplane_runtime::{ClientArgs, Target, balance};
use tokio_util::sync::CancellationToken;

#[tokio::test]
#[ignore = "needs the whole platform running: ci/platform-local up"]
async fn load_engine_drives_the_real_gateway_and_reads_back_final_states() {
    let gateway = std::env::var("GATEWAY_URL").unwrap_or_else(|_| "127.0.0.1:50051".to_owned());
    let target: Target = gateway.parse().expect("GATEWAY_URL is a target");
    let channel = balance::channel(&target, &ClientArgs::default(), None).expect("channel");
    let plan = LoadPlan {
        mode: Mode::Rate(100.0),
        count: Some(300),
        duration: Some(Duration::from_secs(60)),
        check_states: 100,
        ..LoadPlan::default()
    };
    let live = Live::default();
    let summary = run(channel, &gateway, &plan, &live, CancellationToken::new()).await;
    println!("{}", summary.render());

    assert_eq!(summary.sent, 300);
    assert_eq!(summary.completed, 300, "every call answered or failed");
    assert_eq!(summary.ok + summary.errors.values().sum::<u64>(), 300);
    assert!(
        summary.ok >= 270,
        "at most 10% errors on a healthy platform: {:?}",
        summary.errors
    );
    // 300 sends at 100/s take 3 s; far longer means the pacer or the gateway stalled.
    assert!(
        (2.9..20.0).contains(&summary.elapsed_seconds),
        "{}",
        summary.elapsed_seconds
    );
    let states = summary.final_states.expect("final states read back");
    assert_eq!(states.checked, 100, "a bounded sample of the created payments");
    assert_eq!(
        states.succeeded + states.failed + states.pending + states.errors.values().sum::<u64>(),
        100
    );
    assert_eq!(
        states.pending, 0,
        "every payment finished within the settle timeout"
    );
    assert!(states.succeeded > 0);
    let trace = summary.sample_trace_id.expect("a trace id from x-trace-id");
    assert!(
        trace.len() == 32 && trace.chars().all(|c| c.is_ascii_hexdigit()),
        "{trace}"
    );
    assert!(summary.latency_ms.p50 > 0.0 && summary.latency_ms.p50 <= summary.latency_ms.p99);
}
