//! The real `routing` binary over gRPC: route, outcomes, channels, policy, validation, bad
//! input, the policy check tool, and a live policy reload under load.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use payplane_proto::{
    common::v1::{Money, PaymentMethod},
    routing::v1::{
        ChannelState, GetPolicyRequest, ListChannelsRequest, Outcome, ReportOutcomeRequest, RouteRequest,
        RouteStrategy, ValidatePolicyRequest, routing_service_client::RoutingServiceClient,
    },
};
use payplane_testkit::{ServiceProcess, workspace_binary};
use tonic::{Code, transport::Channel};
use tonic_types::StatusExt;

const DEFAULT_POLICY: &str = include_str!("../policy/default.yaml");

/// A policy directory laid out like a mounted ConfigMap: `policy.yaml -> ..data/policy.yaml`,
/// `..data -> ..<version>`; an update swaps the `..data` symlink atomically.
struct ConfigMapDir {
    dir: PathBuf,
    generation: u32,
}

impl ConfigMapDir {
    fn new(yaml: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("routing-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut this = Self { dir, generation: 0 };
        this.update(yaml);
        std::os::unix::fs::symlink("..data/policy.yaml", this.dir.join("policy.yaml")).unwrap();
        this
    }

    fn path(&self) -> PathBuf {
        self.dir.join("policy.yaml")
    }

    fn update(&mut self, yaml: &str) {
        self.generation += 1;
        let version_dir = format!("..{}", self.generation);
        std::fs::create_dir_all(self.dir.join(&version_dir)).unwrap();
        std::fs::write(self.dir.join(&version_dir).join("policy.yaml"), yaml).unwrap();
        let tmp = self.dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&version_dir, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
    }
}

impl Drop for ConfigMapDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn start(policy: &Path) -> (ServiceProcess, RoutingServiceClient<Channel>) {
    let env = [
        ("POLICY_FILE", policy.display().to_string()),
        ("POLICY_POLL_INTERVAL", "100ms".to_owned()),
        ("LOG_FORMAT", "text".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
        ("SERVICE_VERSION", "test".to_owned()),
    ];
    let process = ServiceProcess::start("routing", &env, &[])
        .await
        .expect("routing starts");
    let client = RoutingServiceClient::connect(process.grpc_url()).await.unwrap();
    (process, client)
}

fn route_request(amount: i64, currency: &str, method: PaymentMethod) -> RouteRequest {
    RouteRequest {
        payment_id: uuid::Uuid::now_v7().to_string(),
        amount: Some(Money {
            minor_units: amount,
            currency: currency.to_owned(),
        }),
        method: method as i32,
        card_bin: String::new(),
        merchant_id: "merchant-1".to_owned(),
        scene: "ecommerce".to_owned(),
        excluded_channel_ids: vec![],
    }
}

fn violations(status: &tonic::Status) -> Vec<(String, String)> {
    status
        .get_error_details()
        .bad_request()
        .map(|b| {
            b.field_violations
                .iter()
                .map(|v| (v.field.clone(), v.description.clone()))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn routes_learns_from_outcomes_and_reports_channels_and_policy() {
    let dir = ConfigMapDir::new(DEFAULT_POLICY);
    let (_process, mut client) = start(&dir.path()).await;

    let policy = client.get_policy(GetPolicyRequest {}).await.unwrap().into_inner();
    assert_eq!(policy.version.len(), 12);
    assert_eq!(policy.yaml, DEFAULT_POLICY);
    assert!(policy.source.ends_with("policy.yaml"));

    // A Visa credit card: the international-cards rule pins UnionPay; fee 38 bps of 1,000.00.
    let mut visa = route_request(100_000, "USD", PaymentMethod::CreditCard);
    visa.card_bin = "41111111".into();
    let r = client.route(visa).await.unwrap().into_inner();
    assert_eq!(r.channel_id, "unionpay");
    assert_eq!(r.rule, "international-cards");
    assert_eq!(r.strategy, RouteStrategy::Fixed as i32);
    assert_eq!(
        r.fee,
        Some(Money {
            minor_units: 380,
            currency: "USD".into()
        })
    );
    assert_eq!(r.policy_version, policy.version);
    assert!(!r.reason.is_empty());

    // CNY wallets: a 70/30 split between netsunion and the wallet acquirer.
    let mut seen = std::collections::HashMap::new();
    for _ in 0..200 {
        let r = client
            .route(route_request(10_000, "CNY", PaymentMethod::Wallet))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.strategy, RouteStrategy::VolumeSplit as i32);
        *seen.entry(r.channel_id).or_insert(0) += 1;
    }
    assert!(seen["netsunion"] > seen["wallet"], "{seen:?}");

    // Outcomes: bank-direct keeps failing USD debit cards until it is eliminated.
    for i in 0..60 {
        let report = |channel: &str, outcome: Outcome| ReportOutcomeRequest {
            payment_id: uuid::Uuid::now_v7().to_string(),
            channel_id: channel.to_owned(),
            outcome: outcome as i32,
            latency_ms: 120,
            method: PaymentMethod::DebitCard as i32,
            currency: "USD".into(),
        };
        // Declines count as the channel working.
        let ok = if i % 5 == 0 {
            Outcome::Declined
        } else {
            Outcome::Succeeded
        };
        client.report_outcome(report("unionpay", ok)).await.unwrap();
        client
            .report_outcome(report("bank-direct", Outcome::Timeout))
            .await
            .unwrap();
    }
    let channels = client
        .list_channels(ListChannelsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(channels.policy_version, policy.version);
    let by_id = |id: &str| {
        channels
            .channels
            .iter()
            .find(|c| c.channel_id == id)
            .unwrap()
            .clone()
    };
    let unionpay = by_id("unionpay");
    assert_eq!((unionpay.window_size, unionpay.success_rate), (60, 1.0));
    assert_eq!(unionpay.state, ChannelState::Active as i32);
    assert_eq!(unionpay.fee.unwrap().rate_bps, 38);
    let bank = by_id("bank-direct");
    assert_eq!(bank.state, ChannelState::Eliminated as i32);
    assert!(bank.eliminated_since.is_some());

    // USD debit cards now avoid bank-direct (success rate, exploration or a recovery probe aside).
    let mut to_bank = 0;
    for _ in 0..100 {
        let r = client
            .route(route_request(10_000, "USD", PaymentMethod::DebitCard))
            .await
            .unwrap()
            .into_inner();
        if r.channel_id == "bank-direct" {
            assert_eq!(r.strategy, RouteStrategy::RecoveryProbe as i32);
            to_bank += 1;
        }
    }
    assert!(to_bank <= 2, "{to_bank} decisions went to the eliminated channel");

    // ValidatePolicy lists every error with its place.
    let bad = DEFAULT_POLICY.replace(
        "split: { netsunion: 70, wallet: 30 }",
        "split: { netsunion: 70, wallt: 20 }",
    );
    let v = client
        .validate_policy(ValidatePolicyRequest { yaml: bad })
        .await
        .unwrap()
        .into_inner();
    assert!(!v.valid);
    assert_eq!(v.errors.len(), 1, "{:?}", v.errors);
    assert!(
        v.errors[0].message.contains("unknown channel `wallt`"),
        "{:?}",
        v.errors
    );
    assert!(v.errors[0].line > 100);
    assert_eq!(v.errors[0].path, "rules[5].route.split.wallt");
    let ok = client
        .validate_policy(ValidatePolicyRequest {
            yaml: DEFAULT_POLICY.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(ok.valid && ok.errors.is_empty());
    assert_eq!(ok.version, policy.version);
}

#[tokio::test]
async fn bad_input_gets_clear_statuses() {
    let dir = ConfigMapDir::new(DEFAULT_POLICY);
    let (_process, mut client) = start(&dir.path()).await;

    let mut bad = route_request(0, "XXX", PaymentMethod::Unspecified);
    bad.payment_id = "not-a-uuid".into();
    bad.card_bin = "12ab".into();
    bad.merchant_id = String::new();
    let status = client.route(bad).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let fields: Vec<String> = violations(&status).into_iter().map(|(f, _)| f).collect();
    for field in [
        "payment_id",
        "amount.currency",
        "amount.minor_units",
        "method",
        "card_bin",
        "merchant_id",
    ] {
        assert!(fields.iter().any(|f| f == field), "{field} missing in {fields:?}");
    }

    // No channel takes JPY, none takes USD wallets, none 20,000,000.00 USD.
    let status = client
        .route(route_request(10_000, "JPY", PaymentMethod::DebitCard))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains("currency"), "{}", status.message());
    assert_eq!(
        status.get_error_details().error_info().unwrap().reason,
        "NO_CHANNEL_FOR_CURRENCY"
    );
    let status = client
        .route(route_request(10_000, "USD", PaymentMethod::Wallet))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains("method"), "{}", status.message());
    let status = client
        .route(route_request(2_000_000_000, "USD", PaymentMethod::DebitCard))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains("limits"), "{}", status.message());
    let failures = status
        .get_error_details()
        .precondition_failure()
        .unwrap()
        .violations
        .clone();
    assert!(
        failures.iter().any(|v| v.subject == "bank-direct"),
        "{failures:?}"
    );

    let status = client
        .report_outcome(ReportOutcomeRequest {
            payment_id: uuid::Uuid::now_v7().to_string(),
            channel_id: "nowhere".into(),
            outcome: Outcome::Succeeded as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = client
        .report_outcome(ReportOutcomeRequest {
            channel_id: "unionpay".into(),
            currency: "cny".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let fields: Vec<String> = violations(&status).into_iter().map(|(f, _)| f).collect();
    assert_eq!(fields, vec!["payment_id", "outcome", "currency"]);

    let status = client
        .validate_policy(ValidatePolicyRequest { yaml: " ".into() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn policy_reloads_live_under_load_without_losing_a_request() {
    let mut dir = ConfigMapDir::new(DEFAULT_POLICY);
    let (process, client) = start(&dir.path()).await;
    let first = client
        .clone()
        .get_policy(GetPolicyRequest {})
        .await
        .unwrap()
        .into_inner()
        .version;

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let on_new = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (mut client, stop, ok, on_new, first) = (
            client.clone(),
            stop.clone(),
            ok.clone(),
            on_new.clone(),
            first.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match client
                    .route(route_request(10_000, "USD", PaymentMethod::DebitCard))
                    .await
                {
                    Ok(r) => {
                        let r = r.into_inner();
                        ok.fetch_add(1, Ordering::Relaxed);
                        if r.policy_version != first {
                            // The new policy pins bank-direct for everything by default.
                            assert_eq!(r.channel_id, "bank-direct", "{r:?}");
                            on_new.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(status) => failures.push(status),
                }
            }
            failures
        }));
    }

    tokio::time::sleep(Duration::from_millis(500)).await;
    let new_yaml = DEFAULT_POLICY.replace(
        "default_route:\n  priority: [unionpay, bank-direct, netsunion, wallet]",
        "default_route:\n  fixed: bank-direct",
    );
    dir.update(&new_yaml);
    let deadline = Instant::now() + Duration::from_secs(10);
    while on_new.load(Ordering::Relaxed) == 0 {
        assert!(
            Instant::now() < deadline,
            "the new policy was not applied within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let second = client
        .clone()
        .get_policy(GetPolicyRequest {})
        .await
        .unwrap()
        .into_inner()
        .version;
    assert_ne!(second, first);

    // An invalid update is rejected and the running policy kept.
    dir.update("channels: [\n");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        client
            .clone()
            .get_policy(GetPolicyRequest {})
            .await
            .unwrap()
            .into_inner()
            .version,
        second
    );

    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for w in workers {
        failures.extend(w.await.unwrap());
    }
    assert!(
        failures.is_empty(),
        "requests failed during the reload: {failures:?}"
    );
    assert!(
        ok.load(Ordering::Relaxed) > 100,
        "load ran: {}",
        ok.load(Ordering::Relaxed)
    );

    let metrics = reqwest::get(format!("http://{}/metrics", process.admin_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let has = |name: &str, labels: &[&str]| {
        metrics
            .lines()
            .any(|l| l.starts_with(&format!("{name}{{")) && labels.iter().all(|want| l.contains(want)))
    };
    assert!(
        has("routing_policy_info", &[&format!("policy_version=\"{second}\"")]),
        "{metrics}"
    );
    assert!(
        !has("routing_policy_info", &[&format!("policy_version=\"{first}\"")]),
        "old version still reported"
    );
    assert!(
        has("routing_policy_reloads_total", &["result=\"rejected\""]),
        "{metrics}"
    );
    let fixed_to_bank = metrics
        .lines()
        .find(|l| {
            l.starts_with("routing_decisions_total{")
                && l.contains("channel=\"bank-direct\"")
                && l.contains("strategy=\"fixed\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<u64>().ok());
    assert!(fixed_to_bank.is_some_and(|n| n > 0), "{metrics}");
    assert!(
        has("routing_route_seconds_bucket", &["le=\"0.001\""]),
        "{metrics}"
    );
}

#[test]
fn check_policy_prints_every_error_with_its_line() {
    let routing = workspace_binary("routing").expect("routing binary built");
    let dir = std::env::temp_dir().join(format!("routing-check-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();

    let good = dir.join("good.yaml");
    std::fs::write(&good, DEFAULT_POLICY).unwrap();
    let out = std::process::Command::new(&routing)
        .arg("--check-policy")
        .arg(&good)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("valid policy, version"), "{stdout}");

    let bad = dir.join("bad.yaml");
    let yaml = DEFAULT_POLICY
        .replace("fixed: unionpay\n", "fixed: union-pay\n")
        .replace(
            "split: { unionpay: 60, bank-direct: 40 }",
            "split: { unionpay: 60, bank-direct: 30 }",
        );
    std::fs::write(&bad, &yaml).unwrap();
    let out = std::process::Command::new(&routing)
        .arg("--check-policy")
        .arg(&bad)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    let line_of = |needle: &str| yaml.lines().position(|l| l.contains(needle)).unwrap() + 1;
    assert!(
        lines[0].starts_with(&format!("{}:{}:", bad.display(), line_of("union-pay"))),
        "{stdout}"
    );
    assert!(lines[0].contains("unknown channel `union-pay`"), "{stdout}");
    assert!(
        lines[1].starts_with(&format!("{}:{}:", bad.display(), line_of("bank-direct: 30"))),
        "{stdout}"
    );
    assert!(lines[1].contains("weights add up to 90, not 100"), "{stdout}");
    assert!(lines[2].contains("2 error(s)"), "{stdout}");

    let syntax = dir.join("syntax.yaml");
    std::fs::write(&syntax, "channels:\n  - id: a\n    methods: [wallet\n").unwrap();
    let out = std::process::Command::new(&routing)
        .arg("--check-policy")
        .arg(&syntax)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(stdout.contains("invalid YAML"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}
