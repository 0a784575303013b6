//! `payplane trace` against a REAL Jaeger and a REAL payment: the five services run as processes
//! (fresh databases, free ports) exporting their spans to the Jaeger of `ci/devenv up`, one
//! payment goes through the gateway, and the built binary draws its trace by payment id and by
//! trace id; then one more with every channel in an outage, whose failed charges must be marked.
//! Unknown ids, an unreachable Jaeger and a server that is not Jaeger must fail with a message
//! that says why.
//!
//! `ci/devenv up && eval "$(ci/devenv env)" && cargo build --bins && cargo test -p payplane-cli --test trace`

use std::{
    collections::BTreeSet,
    process::Output,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use payplane_proto::{
    channel::v1::{
        ChannelConfig, ConfigureChannelRequest, channel_admin_service_client::ChannelAdminServiceClient,
    },
    common::v1::{Money, PaymentMethod},
    payment::v1::{
        CreatePaymentRequest, Payment, PaymentStatus, payment_service_client::PaymentServiceClient,
    },
};
use payplane_testkit::{ServiceProcess, TestDatabase, free_port};

/// What one CreatePayment crosses (gateway/tests/trace.rs checks the same in Jaeger directly).
const SERVICES: [&str; 5] = ["gateway", "routing", "accounting", "channel-sim", "settlement"];
const CHANNELS: [&str; 4] = ["unionpay", "netsunion", "bank-direct", "wallet"];
/// Put on every service, to see it in the VERSION column.
const VERSION: &str = "9.9.9-trace-test";

/// The services, killed (in field order, gateway first) before their databases are dropped.
struct Platform {
    gateway: ServiceProcess,
    channel: ServiceProcess,
    _settlement: ServiceProcess,
    _accounting: ServiceProcess,
    _routing: ServiceProcess,
    _dbs: [TestDatabase; 3],
}

impl Platform {
    async fn start(otlp: &str) -> Result<Self> {
        let gateway_db = TestDatabase::create("cli_trace_gateway").await?;
        let accounting_db = TestDatabase::create("cli_trace_accounting").await?;
        let settlement_db = TestDatabase::create("cli_trace_settlement").await?;
        let common = |extra: &[(&'static str, String)]| {
            let mut env = vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.to_owned()),
                ("SERVICE_VERSION", VERSION.to_owned()),
                ("LOG_FORMAT", "text".to_owned()),
                ("RUST_LOG", "warn".to_owned()),
                // Export spans every 200 ms (the SDK's default is 5 s): the test waits for them.
                ("OTEL_BSP_SCHEDULE_DELAY", "200".to_owned()),
            ];
            env.extend_from_slice(extra);
            env
        };
        let policy = payplane_testkit::package_dir().join("../routing/policy/default.yaml");
        let routing = ServiceProcess::start(
            "routing",
            &common(&[("POLICY_FILE", policy.display().to_string())]),
            &[],
        )
        .await?;
        let accounting = ServiceProcess::start(
            "accounting",
            &common(&[("DATABASE_URL", accounting_db.url().to_owned())]),
            &[],
        )
        .await?;
        let settlement = ServiceProcess::start(
            "settlement",
            &common(&[
                ("DATABASE_URL", settlement_db.url().to_owned()),
                ("ACCOUNTING_TARGET", accounting.grpc_addr.to_string()),
            ]),
            &[],
        )
        .await?;
        let channel =
            ServiceProcess::start("channel-sim", &common(&[("CHANNEL_SIM_SEED", "7".into())]), &[]).await?;
        let gateway = ServiceProcess::start(
            "gateway",
            &common(&[
                ("DATABASE_URL", gateway_db.url().to_owned()),
                ("ROUTING_URL", routing.grpc_url()),
                ("ACCOUNTING_URL", accounting.grpc_url()),
                ("SETTLEMENT_URL", settlement.grpc_url()),
                ("CHANNEL_URL", channel.grpc_url()),
                ("MERCHANTS", "m-001".into()),
            ]),
            &[],
        )
        .await?;
        let platform = Self {
            gateway,
            channel,
            _settlement: settlement,
            _accounting: accounting,
            _routing: routing,
            _dbs: [gateway_db, accounting_db, settlement_db],
        };
        // Fast channels that approve everything: the payment must cross every service.
        platform.channels(false).await?;
        Ok(platform)
    }

    /// Every channel fast and without declines or errors; or all of them in an outage.
    async fn channels(&self, outage: bool) -> Result<()> {
        let mut admin = ChannelAdminServiceClient::connect(self.channel.grpc_url()).await?;
        for id in CHANNELS {
            let config = ChannelConfig {
                channel_id: id.to_owned(),
                latency_p50_ms: 1,
                latency_p99_ms: 5,
                decline_rate: 0.0,
                error_rate: 0.0,
                outage,
            };
            admin
                .configure_channel(ConfigureChannelRequest { config: Some(config) })
                .await?;
        }
        Ok(())
    }

    /// CreatePayment: the payment and the trace id the gateway returned.
    async fn pay(&self, key: &str) -> Result<(Payment, String)> {
        let mut gateway = PaymentServiceClient::connect(self.gateway.grpc_url()).await?;
        let response = gateway
            .create_payment(CreatePaymentRequest {
                idempotency_key: key.to_owned(),
                payer_id: "payer-1".into(),
                merchant_id: "m-001".into(),
                amount: Some(Money {
                    minor_units: 1288,
                    currency: "CNY".into(),
                }),
                method: PaymentMethod::DebitCard as i32,
                scene: "ecommerce".into(),
                card_bin: "622848".into(),
            })
            .await?;
        let trace_id = response
            .metadata()
            .get("x-trace-id")
            .context("x-trace-id in the response metadata")?
            .to_str()?
            .to_owned();
        Ok((response.into_inner().payment.context("a payment")?, trace_id))
    }
}

fn payplane(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_payplane"))
        .args(args)
        .env_remove("PAYPLANE_JAEGER_URL")
        .output()
        .expect("run the payplane binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn env_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run `ci/devenv up && eval \"$(ci/devenv env)\"` first")
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn draws_real_payments_traces_by_payment_id_and_trace_id_with_errors_marked() -> Result<()> {
    let jaeger = env_var("JAEGER_QUERY_URL");
    let platform = Platform::start(&env_var("OTEL_EXPORTER_OTLP_ENDPOINT")).await?;
    let (payment, trace_id) = platform.pay(&format!("cli-trace-{}", free_port()?)).await?;
    assert_eq!(payment.status(), PaymentStatus::Succeeded);

    // The services export their spans in batches: poll until every one of them is in Jaeger and
    // no more spans arrive (a batch may hold only part of a service's spans).
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut last_count = 0;
    let json = loop {
        let out = payplane(&["trace", &payment.payment_id, "--json", "--jaeger", &jaeger]);
        let stderr = text(&out.stderr);
        if out.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("--json is JSON")?;
            let services: BTreeSet<&str> = v["services"]
                .as_array()
                .context("services")?
                .iter()
                .filter_map(|s| s.as_str())
                .collect();
            let count = v["spans"].as_array().map_or(0, Vec::len);
            if SERVICES.iter().all(|s| services.contains(s)) && count == last_count {
                break v;
            }
            last_count = count;
            assert!(
                Instant::now() < deadline,
                "trace of {} has services {services:?}, want {SERVICES:?}",
                payment.payment_id
            );
        } else {
            // Before the gateway's spans arrive, a payment id is not found yet; anything else is a bug.
            assert!(stderr.contains("no trace in Jaeger"), "{stderr}");
            assert!(
                Instant::now() < deadline,
                "payment {} never found in Jaeger: {stderr}",
                payment.payment_id
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert_eq!(
        json["trace_id"],
        trace_id.as_str(),
        "the trace that created the payment"
    );
    assert_eq!(json["jaeger_url"], format!("{jaeger}/trace/{trace_id}"));
    let spans = json["spans"].as_array().context("spans")?;
    assert!(spans.iter().all(|s| s["start_offset_us"].as_u64().is_some()));
    assert_eq!(spans[0]["depth"], 0, "the first row is a root");
    assert!(
        spans.iter().any(|s| s["depth"].as_u64() > Some(1)),
        "the services' spans nest under the gateway's"
    );
    assert!(
        spans.iter().any(|s| s["version"] == VERSION),
        "service.version: {spans:?}"
    );
    assert!(
        spans.iter().all(|s| s["error"] == false),
        "a succeeded payment: {spans:?}"
    );

    // The waterfall, by trace id this time: a row per span with the service names, the link.
    let out = payplane(&["trace", &trace_id, "--jaeger", &jaeger, "--width", "120"]);
    let stdout = text(&out.stdout);
    println!("{stdout}");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: Vec<&str> = stdout.lines().filter(|l| l.contains('█')).collect();
    assert_eq!(rows.len(), spans.len(), "one row per span");
    for service in SERVICES {
        assert!(
            rows.iter()
                .any(|r| r.trim_start().starts_with(&format!("{service} "))),
            "a row of {service}"
        );
    }
    assert!(rows.iter().all(|r| r.chars().count() <= 120));
    assert!(stdout.contains(VERSION));
    assert!(
        stdout.contains(&format!("Jaeger: {jaeger}/trace/{trace_id}")),
        "{stdout}"
    );

    // With every channel in an outage the charge fails with UNAVAILABLE: marked, with its code.
    platform.channels(true).await?;
    let (failed, trace_id) = platform
        .pay(&format!("cli-trace-outage-{}", free_port()?))
        .await?;
    println!("payment in an outage: {:?}", failed.status());
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let out = payplane(&["trace", &trace_id, "--jaeger", &jaeger, "--width", "120"]);
        let stdout = text(&out.stdout);
        let marked: Vec<&str> = stdout
            .lines()
            .filter(|l| l.contains("✗ UNAVAILABLE(14)"))
            .collect();
        if marked.iter().any(|l| l.trim_start().starts_with("channel-sim ")) {
            println!("{stdout}");
            assert!(
                !stdout.lines().next().unwrap_or("").ends_with(" 0 errors"),
                "{stdout}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no channel-sim span marked UNAVAILABLE in trace {trace_id}: {stdout}{}",
            text(&out.stderr)
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}

#[test]
fn an_unknown_trace_id_fails_and_says_why() {
    let jaeger = env_var("JAEGER_QUERY_URL");
    // Never seen: the id of no request (nanoseconds since the epoch, as 32 hex digits).
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let unknown = format!("{:032x}", nanos | 1 << 127);
    let out = payplane(&["trace", &unknown, "--jaeger", &jaeger]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(
        stderr.contains(&format!("no trace {unknown} in Jaeger at {jaeger}")),
        "{stderr}"
    );
    assert!(
        stderr.contains("keeps traces only for a while") && stderr.contains("sampled"),
        "{stderr}"
    );

    let out = payplane(&["trace", "no-such-payment", "--jaeger", &jaeger]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("payment.id=no-such-payment"), "{stderr}");
}

#[test]
fn an_unreachable_jaeger_is_named_with_how_to_point_at_one() {
    // A port nothing listens on.
    let url = format!("http://127.0.0.1:{}", free_port().unwrap());
    let out = payplane(&["trace", "4bf92f3577b34da6a3ce929d0e0e4736", "--jaeger", &url]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot reach Jaeger at {url}")),
        "{stderr}"
    );
    assert!(stderr.contains("PAYPLANE_JAEGER_URL"), "{stderr}");
}

#[test]
fn something_else_than_jaeger_at_the_url_is_a_malformed_answer_not_a_missing_trace() {
    // A web server that is not Jaeger: a 404 page in HTML for every request.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = std::io::BufReader::new(stream);
            let mut line = String::new();
            // The request line and headers, up to the blank line.
            while std::io::BufRead::read_line(&mut stream, &mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            let body = "<html><body>404 page not found</body></html>";
            let _ = std::io::Write::write_all(
                stream.get_mut(),
                format!(
                    "HTTP/1.1 404 Not Found\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
    });
    let out = payplane(&["trace", "4bf92f3577b34da6a3ce929d0e0e4736", "--jaeger", &url]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("malformed answer from"), "{stderr}");
    assert!(
        stderr.contains("HTTP 404 Not Found") && stderr.contains("404 page not found"),
        "{stderr}"
    );
    assert!(stderr.contains("Jaeger's query port"), "{stderr}");
}
