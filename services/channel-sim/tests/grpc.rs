//! channel-sim as a real process, called over gRPC with the generated clients.

use std::time::{Duration, Instant};

use payplane_proto::{
    channel::v1::{
        ChannelConfig, ChargeOutcome, ChargeRequest, ConfigureChannelRequest, GetChargeRequest,
        ListChannelConfigsRequest, RefundRequest, channel_admin_service_client::ChannelAdminServiceClient,
        channel_service_client::ChannelServiceClient,
    },
    common::v1::{Money, PaymentMethod},
};
use tonic::{Code, transport::Channel};

/// channel-sim as a child process on free loopback ports; killed on drop.
struct ServiceProcess {
    grpc_addr: std::net::SocketAddr,
    admin_addr: std::net::SocketAddr,
    child: std::process::Child,
}

fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

impl ServiceProcess {
    async fn start(env: &[(&str, String)], args: &[&str]) -> Self {
        let (grpc_addr, admin_addr) = (free_addr(), free_addr());
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_channel-sim"))
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("GRPC_ADDR", grpc_addr.to_string())
            .env("ADMIN_ADDR", admin_addr.to_string())
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("channel-sim spawns");
        let mut p = Self {
            grpc_addr,
            admin_addr,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("channel-sim exited with {status} before serving");
            }
            assert!(
                Instant::now() < deadline,
                "channel-sim not SERVING on {grpc_addr} within 30 s"
            );
            if p.serving().await {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn serving(&self) -> bool {
        use tonic_health::pb::{
            HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
        };
        let Ok(channel) = Channel::from_shared(self.grpc_url()).unwrap().connect().await else {
            return false;
        };
        let answer = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await;
        answer.is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32)
    }

    fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    /// SIGKILL, as in a crash.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn charge(channel: &str, request_id: &str, amount: i64) -> ChargeRequest {
    ChargeRequest {
        channel_id: channel.into(),
        request_id: request_id.into(),
        payment_id: id(),
        amount: Some(Money {
            minor_units: amount,
            currency: "CNY".into(),
        }),
        method: PaymentMethod::DebitCard as i32,
        payer_id: "payer-00001".into(),
        merchant_id: "m-001".into(),
    }
}

fn refund(channel: &str, request_id: &str, charge_request_id: &str, amount: i64) -> RefundRequest {
    RefundRequest {
        channel_id: channel.into(),
        request_id: request_id.into(),
        charge_request_id: charge_request_id.into(),
        amount: Some(Money {
            minor_units: amount,
            currency: "CNY".into(),
        }),
    }
}

async fn start(
    args: &[&str],
    env: &[(&str, String)],
) -> (
    ServiceProcess,
    ChannelServiceClient<Channel>,
    ChannelAdminServiceClient<Channel>,
) {
    let mut env = env.to_vec();
    env.push(("LOG_FORMAT", "text".into()));
    let process = ServiceProcess::start(&env, args).await;
    let channel = Channel::from_shared(process.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    (
        process,
        ChannelServiceClient::new(channel.clone()),
        ChannelAdminServiceClient::new(channel),
    )
}

async fn get(
    client: &mut ChannelServiceClient<Channel>,
    channel: &str,
    request_id: &str,
) -> Result<payplane_proto::channel::v1::GetChargeResponse, tonic::Status> {
    client
        .get_charge(GetChargeRequest {
            channel_id: channel.into(),
            request_id: request_id.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn charges_are_idempotent_by_request_id_and_remembered() {
    let (_p, mut c, _) = start(&["--channel", "unionpay:p50=1,p99=2,decline=0"], &[]).await;
    let rid = id();
    let req = charge("unionpay", &rid, 1234);
    let first = c.charge(req.clone()).await.unwrap().into_inner();
    assert_eq!(first.outcome, ChargeOutcome::Approved as i32);
    assert!(first.channel_reference.starts_with("UNIO"), "{first:?}");
    let again = c.charge(req.clone()).await.unwrap().into_inner();
    assert_eq!(again, first, "a retry gets the original answer");

    let mut other = req.clone();
    other.amount = Some(Money {
        minor_units: 1235,
        currency: "CNY".into(),
    });
    let err = c.charge(other).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    assert!(
        err.message().contains(&rid) && err.message().contains("amount"),
        "{}",
        err.message()
    );

    let found = get(&mut c, "unionpay", &rid).await.unwrap();
    assert!(found.found);
    assert_eq!(found.channel_reference, first.channel_reference);
    assert_eq!(
        found.amount,
        Some(Money {
            minor_units: 1234,
            currency: "CNY".into()
        })
    );
    assert!(!get(&mut c, "unionpay", &id()).await.unwrap().found);
    assert!(
        !get(&mut c, "wallet", &rid).await.unwrap().found,
        "another channel never saw it"
    );

    let unknown = c.charge(charge("acme", &id(), 1)).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let mut bad = charge("unionpay", "not-a-uuid", -5);
    bad.method = 0;
    let err = c.charge(bad).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    for field in ["request_id", "amount.minor_units", "method"] {
        assert!(
            err.message().contains(field),
            "{field} missing in {}",
            err.message()
        );
    }
}

#[tokio::test]
async fn refunds_are_bounded_by_the_charge_and_idempotent() {
    let (_p, mut c, _) = start(&["--channel", "wallet:p50=0,p99=0,decline=0"], &[]).await;
    let charge_id = id();
    c.charge(charge("wallet", &charge_id, 1000)).await.unwrap();
    let r1 = id();
    let first = c
        .refund(refund("wallet", &r1, &charge_id, 600))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.outcome, ChargeOutcome::Approved as i32);
    assert_eq!(
        c.refund(refund("wallet", &r1, &charge_id, 600))
            .await
            .unwrap()
            .into_inner(),
        first
    );
    let over = c
        .refund(refund("wallet", &id(), &charge_id, 401))
        .await
        .unwrap_err();
    assert_eq!(over.code(), Code::FailedPrecondition);
    assert!(over.message().contains("400 of 1000"), "{}", over.message());
    c.refund(refund("wallet", &id(), &charge_id, 400)).await.unwrap();
    let none_left = c
        .refund(refund("wallet", &id(), &charge_id, 1))
        .await
        .unwrap_err();
    assert_eq!(none_left.code(), Code::FailedPrecondition);
    assert_eq!(
        c.refund(refund("wallet", &id(), &id(), 1))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    let conflict = c
        .refund(refund("wallet", &r1, &charge_id, 599))
        .await
        .unwrap_err();
    assert_eq!(conflict.code(), Code::AlreadyExists);
    // GetCharge answers for refund request ids too: the gateway's refund recovery asks it.
    let r = get(&mut c, "wallet", &r1).await.unwrap();
    assert!(r.found && r.channel_reference == first.channel_reference);
}

#[tokio::test]
async fn declines_and_errors_happen_at_the_configured_rates() {
    let (p, mut c, _) = start(
        &[
            "--no-default-channels",
            "--seed",
            "11",
            "--channel",
            "dec:p50=0,p99=0,decline=0.2;err:p50=0,p99=0,error=0.3",
        ],
        &[],
    )
    .await;
    const N: usize = 1500;
    let mut declined = 0;
    let mut codes = std::collections::BTreeSet::new();
    for _ in 0..N {
        let r = c.charge(charge("dec", &id(), 100)).await.unwrap().into_inner();
        if r.outcome == ChargeOutcome::Declined as i32 {
            declined += 1;
            assert!(r.channel_reference.is_empty());
            codes.insert(r.decline_code);
        }
    }
    // Binomial(1500, 0.2): sd 15.5; 5 sd either side.
    assert!(
        (222..=378).contains(&declined),
        "{declined} of {N} declined at 0.2"
    );
    assert!(codes.len() >= 2, "decline codes vary: {codes:?}");

    let mut unavailable = Vec::new();
    for _ in 0..N {
        let rid = id();
        match c.charge(charge("err", &rid, 100)).await {
            Ok(r) => assert_eq!(r.into_inner().outcome, ChargeOutcome::Approved as i32),
            Err(e) => {
                assert_eq!(e.code(), Code::Unavailable);
                unavailable.push(rid);
            }
        }
    }
    // Binomial(1500, 0.3): sd 17.7.
    assert!(
        (361..=539).contains(&unavailable.len()),
        "{} of {N} unavailable at 0.3",
        unavailable.len()
    );
    // An injected error comes before any decision: nothing is remembered.
    for rid in unavailable.iter().take(20) {
        assert!(!get(&mut c, "err", rid).await.unwrap().found);
    }

    let metrics = admin_metrics(&p).await;
    let counted = metrics
        .lines()
        .find(|l| {
            l.starts_with("channel_sim_charges_total{")
                && l.contains("channel=\"dec\"")
                && l.contains("outcome=\"declined\"")
        })
        .unwrap_or_else(|| panic!("no declined counter for dec in\n{metrics}"));
    assert!(
        counted.ends_with(&format!(" {declined}")),
        "{counted} vs {declined}"
    );
    assert!(metrics.contains("outcome=\"unavailable\""), "{metrics}");
}

/// The admin port's /metrics, fetched with a bare HTTP/1.0 request.
async fn admin_metrics(p: &ServiceProcess) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(p.admin_addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    body
}

#[tokio::test]
async fn outage_and_latency_change_at_run_time() {
    let (_p, mut c, mut admin) = start(&["--channel", "netsunion:p50=1,p99=2,decline=0"], &[]).await;
    let configs = admin
        .list_channel_configs(ListChannelConfigsRequest {})
        .await
        .unwrap()
        .into_inner()
        .configs;
    let ids: Vec<&str> = configs.iter().map(|c| c.channel_id.as_str()).collect();
    assert_eq!(
        ids,
        ["bank-direct", "netsunion", "unionpay", "wallet"],
        "routing's default channels"
    );

    let approved = id();
    c.charge(charge("netsunion", &approved, 10)).await.unwrap();
    let down = ChannelConfig {
        channel_id: "netsunion".into(),
        latency_p50_ms: 1,
        latency_p99_ms: 2,
        outage: true,
        ..Default::default()
    };
    admin
        .configure_channel(ConfigureChannelRequest {
            config: Some(down.clone()),
        })
        .await
        .unwrap();
    assert_eq!(
        c.charge(charge("netsunion", &id(), 10)).await.unwrap_err().code(),
        Code::Unavailable
    );
    assert_eq!(
        get(&mut c, "netsunion", &approved).await.unwrap_err().code(),
        Code::Unavailable
    );
    assert!(
        c.charge(charge("wallet", &id(), 10)).await.is_ok(),
        "other channels are unaffected"
    );

    let slow = ChannelConfig {
        outage: false,
        latency_p50_ms: 300,
        latency_p99_ms: 300,
        ..down
    };
    let echoed = admin
        .configure_channel(ConfigureChannelRequest {
            config: Some(slow.clone()),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(echoed.config, Some(slow));
    let t = Instant::now();
    c.charge(charge("netsunion", &id(), 10)).await.unwrap();
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert!(
        get(&mut c, "netsunion", &approved).await.unwrap().found,
        "remembered through the outage"
    );

    let bad = ChannelConfig {
        channel_id: "netsunion".into(),
        latency_p50_ms: 50,
        latency_p99_ms: 10,
        decline_rate: 2.0,
        ..Default::default()
    };
    let err = admin
        .configure_channel(ConfigureChannelRequest { config: Some(bad) })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("config.latency_p99_ms") && err.message().contains("config.decline_rate"));

    // A channel added at run time takes charges at once.
    let new = ChannelConfig {
        channel_id: "acme".into(),
        decline_rate: 1.0,
        ..Default::default()
    };
    admin
        .configure_channel(ConfigureChannelRequest { config: Some(new) })
        .await
        .unwrap();
    let r = c.charge(charge("acme", &id(), 10)).await.unwrap().into_inner();
    assert_eq!(r.outcome, ChargeOutcome::Declined as i32);
}

#[tokio::test]
async fn a_killed_simulator_remembers_its_decisions_through_the_state_file() {
    let dir = std::env::temp_dir().join(format!("channel-sim-test-{}", id()));
    let state = dir.join("state.jsonl");
    let args = [
        "--state-file",
        state.to_str().unwrap(),
        "--channel",
        "unionpay:p50=0,p99=0,decline=0",
    ];
    let (mut p, mut c, _) = start(&args, &[]).await;
    let charge_id = id();
    let first = c
        .charge(charge("unionpay", &charge_id, 500))
        .await
        .unwrap()
        .into_inner();
    c.refund(refund("unionpay", &id(), &charge_id, 300))
        .await
        .unwrap();
    p.kill();

    let (_p, mut c, _) = start(&args, &[]).await;
    let found = get(&mut c, "unionpay", &charge_id).await.unwrap();
    assert!(found.found && found.channel_reference == first.channel_reference);
    let err = c
        .refund(refund("unionpay", &id(), &charge_id, 201))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::FailedPrecondition,
        "the earlier refund still counts"
    );
    let next = c.charge(charge("unionpay", &id(), 1)).await.unwrap().into_inner();
    assert_ne!(
        next.channel_reference, first.channel_reference,
        "references never repeat"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn statements_list_approved_charges_and_refunds_in_the_range() {
    use payplane_proto::channel::v1::{ExportStatementRequest, StatementFormat};
    use payplane_settlement::domain::statement::{Direction, parse_camt053, parse_csv};

    let (_p, mut c, mut admin) = start(&["--channel", "bank-direct:p50=0,p99=0,decline=0"], &[]).await;
    let ts = |t: std::time::SystemTime| Some(prost_types::Timestamp::from(t));
    let before = std::time::SystemTime::now() - Duration::from_secs(1);
    let a = id();
    let ra = c
        .charge(charge("bank-direct", &a, 1234))
        .await
        .unwrap()
        .into_inner()
        .channel_reference;
    let b = id();
    let rb = c
        .charge(charge("bank-direct", &b, 500))
        .await
        .unwrap()
        .into_inner()
        .channel_reference;
    let rr = c
        .refund(refund("bank-direct", &id(), &a, 234))
        .await
        .unwrap()
        .into_inner()
        .channel_reference;
    let mut usd = charge("bank-direct", &id(), 99);
    usd.amount = Some(Money {
        minor_units: 99,
        currency: "USD".into(),
    });
    c.charge(usd).await.unwrap();
    let all_decline = ChannelConfig {
        channel_id: "bank-direct".into(),
        decline_rate: 1.0,
        ..Default::default()
    };
    admin
        .configure_channel(ConfigureChannelRequest {
            config: Some(all_decline),
        })
        .await
        .unwrap();
    let declined = c
        .charge(charge("bank-direct", &id(), 777))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(declined.outcome, ChargeOutcome::Declined as i32);
    let after = std::time::SystemTime::now() + Duration::from_millis(1);

    let request = |format: StatementFormat| ExportStatementRequest {
        channel_id: "bank-direct".into(),
        currency: "CNY".into(),
        from_time: ts(before),
        to_time: ts(after),
        format: format as i32,
    };
    let csv = c
        .export_statement(request(StatementFormat::Csv))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(csv.line_count, 3);
    let text = String::from_utf8(csv.document.clone()).unwrap();
    assert!(
        text.starts_with("channel_id,channel_reference,direction,amount,currency,booked_at\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!("bank-direct,{ra},CRDT,12.34,CNY,")),
        "{text}"
    );
    let parsed = parse_csv(&csv.document).unwrap();
    let lines: Vec<(String, Direction, i64)> = parsed
        .lines
        .iter()
        .map(|l| (l.channel_reference.clone(), l.direction, l.amount))
        .collect();
    assert_eq!(
        lines,
        [
            (ra.clone(), Direction::Credit, 1234),
            (rb, Direction::Credit, 500),
            (rr, Direction::Debit, 234)
        ]
    );

    let xml = c
        .export_statement(request(StatementFormat::Camt053Xml))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(xml.line_count, 3);
    let parsed_xml = parse_camt053(&xml.document).unwrap();
    assert_eq!(
        parsed_xml.account.as_ref().map(|a| a.0.as_str()),
        Some("bank-direct")
    );
    let xml_lines: Vec<_> = parsed_xml
        .lines
        .iter()
        .map(|l| (l.channel_reference.clone(), l.direction, l.amount))
        .collect();
    assert_eq!(xml_lines, lines);
    // The range is over: exporting it again gives the same bytes.
    let again = c
        .export_statement(request(StatementFormat::Camt053Xml))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.document, xml.document);

    let empty = ExportStatementRequest {
        from_time: ts(after),
        to_time: ts(after + Duration::from_secs(1)),
        ..request(StatementFormat::Csv)
    };
    assert_eq!(
        c.export_statement(empty).await.unwrap().into_inner().line_count,
        0
    );
    let bad = ExportStatementRequest {
        currency: "cny".into(),
        to_time: ts(before),
        format: 0,
        ..request(StatementFormat::Csv)
    };
    let err = c.export_statement(bad).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    for field in ["currency", "format"] {
        assert!(err.message().contains(field), "{}", err.message());
    }
}
