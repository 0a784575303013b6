//! Fault test: under continuous load on two gateway replicas (N-1 and N side by side), SIGKILL
//! the gateways, accounting and routing at random moments and restart them. Afterwards the
//! recovery loop must finish everything and the checker must find every invariant intact.
//!
//! `FAULT_TEST_SECS` (default 40) sets how long the load and the kills last.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use common::{Platform, PlatformOptions, payment};
use payplane_proto::{
    common::v1::{Money, PaymentMethod},
    payment::v1::{PaymentStatus, RefundPaymentRequest},
};
use rand::Rng;

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    errors: AtomicU64,
    refunds: AtomicU64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_of_gateway_accounting_and_routing_under_load_leave_every_invariant_intact()
-> anyhow::Result<()> {
    let secs: u64 = std::env::var("FAULT_TEST_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let mut platform = Platform::start(PlatformOptions {
        gateways: vec![(1, "0.1.0"), (2, "0.2.0")],
        ..Default::default()
    })
    .await?;
    platform
        .configure_channels(|mut c| {
            c.latency_p50_ms = 2;
            c.latency_p99_ms = 30;
            c.decline_rate = 0.1;
            c.error_rate = 0.02;
            c
        })
        .await?;

    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(Counters::default());
    let mut clients = Vec::new();
    for task in 0..6u64 {
        let gateways = [
            platform.gateway_client(0).await?,
            platform.gateway_client(1).await?,
        ];
        let (stop, counters) = (stop.clone(), counters.clone());
        clients.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let (amount, wallet) = {
                    let mut rng = rand::rng();
                    (rng.random_range(100..200_000i64), rng.random_bool(0.3))
                };
                let mut req = payment(
                    &format!("load-{task}-{n}"),
                    if n.is_multiple_of(2) { "m-001" } else { "m-002" },
                    amount,
                    "CNY",
                );
                req.payer_id = format!("payer-{}", n % 17);
                if wallet {
                    req.method = PaymentMethod::Wallet as i32;
                    req.card_bin.clear();
                }
                // A client retries with the same key until it gets an answer (a killed replica
                // answers nothing); the other replica may take the retry.
                for attempt in 0..8usize {
                    let mut gw = gateways[(task as usize + n as usize + attempt) % 2].clone();
                    match gw.create_payment(req.clone()).await {
                        Ok(r) => {
                            counters.accepted.fetch_add(1, Ordering::Relaxed);
                            let p = r.into_inner().payment.unwrap();
                            if p.status() == PaymentStatus::Succeeded && n.is_multiple_of(5) {
                                let refund = RefundPaymentRequest {
                                    payment_id: p.payment_id,
                                    idempotency_key: format!("refund-{task}-{n}"),
                                    amount: Some(Money {
                                        minor_units: amount / 3,
                                        currency: "CNY".into(),
                                    }),
                                    reason: "fault test".into(),
                                };
                                if gw.refund_payment(refund).await.is_ok() {
                                    counters.refunds.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            break;
                        }
                        Err(_) => {
                            counters.errors.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(150)).await;
                        }
                    }
                }
            }
        }));
    }

    let started = Instant::now();
    let mut kills = [0u32; 4];
    while started.elapsed() < Duration::from_secs(secs) {
        let (pause, victim, down) = {
            let mut rng = rand::rng();
            (
                rng.random_range(500..2500u64),
                rng.random_range(0..4usize),
                rng.random_range(100..1500u64),
            )
        };
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let proc = match victim {
            0 => &mut platform.gateways[0],
            1 => &mut platform.gateways[1],
            2 => &mut platform.accounting,
            _ => &mut platform.routing,
        };
        proc.kill();
        kills[victim] += 1;
        tokio::time::sleep(Duration::from_millis(down)).await;
        proc.start().await?;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await?;
    }
    println!(
        "load: {} answered, {} client errors, {} refunds; kills gateway-0 {} gateway-1 {} accounting {} routing {}",
        counters.accepted.load(Ordering::Relaxed),
        counters.errors.load(Ordering::Relaxed),
        counters.refunds.load(Ordering::Relaxed),
        kills[0],
        kills[1],
        kills[2],
        kills[3]
    );

    platform.wait_until_final(Duration::from_secs(90)).await?;
    let report = platform.check().await?;
    println!("{report}");
    assert!(report.is_ok(), "{report}");
    assert!(
        kills.iter().all(|k| *k >= 1) || secs < 20,
        "every kind of process was killed: {kills:?}"
    );
    assert!(
        report.succeeded >= 50,
        "too little load to mean anything: {report}"
    );
    assert!(report.failed >= 1, "declines were configured: {report}");
    Ok(())
}
