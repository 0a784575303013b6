//! Versions N and N-1 side by side: two gateway replicas on one database, one with saga revision 1
//! (the previous release) and one with revision 2. Each takes payments, and each finishes the
//! payments the other left in flight; the invariants hold throughout.

mod common;

use std::time::Duration;

use common::{Platform, PlatformOptions, payment};
use payplane_proto::payment::v1::{GetPaymentRequest, PaymentStatus, PaymentStep};

#[tokio::test]
async fn n_and_n_minus_1_share_the_work_and_recover_each_others_payments() -> anyhow::Result<()> {
    let mut platform = Platform::start(PlatformOptions {
        gateways: vec![(1, "0.1.0"), (2, "0.2.0")],
        ..Default::default()
    })
    .await?;
    platform
        .configure_channels(|mut c| {
            c.decline_rate = 0.3;
            c
        })
        .await?;
    let clients = [
        platform.gateway_client(0).await?,
        platform.gateway_client(1).await?,
    ];
    for i in 0..40i64 {
        let mut gw = clients[(i % 2) as usize].clone();
        let p = gw
            .create_payment(payment(&format!("mixed-{i}"), "m-001", 1000 + i, "CNY"))
            .await?
            .into_inner();
        assert_ne!(p.payment.unwrap().status(), PaymentStatus::Pending);
    }
    // A key first used on N-1 replays on N.
    let replay = clients[1]
        .clone()
        .create_payment(payment("mixed-0", "m-001", 1000, "CNY"))
        .await?
        .into_inner();
    assert!(replay.replayed);

    // Each version leaves payments held (channel down), then dies; the other one finishes them.
    for (leaves, key) in [(0usize, "held-by-n-1"), (1usize, "held-by-n")] {
        platform
            .configure_channels(|mut c| {
                c.outage = true;
                c
            })
            .await?;
        let p = clients[leaves]
            .clone()
            .create_payment(payment(key, "m-002", 4321, "CNY"))
            .await?
            .into_inner()
            .payment
            .unwrap();
        assert_eq!(
            (p.status(), p.step()),
            (PaymentStatus::Pending, PaymentStep::Held)
        );
        platform.gateways[leaves].kill();
        platform.configure_channels(|c| c).await?;
        platform.wait_until_final(Duration::from_secs(30)).await?;
        let other = 1 - leaves;
        let p = clients[other]
            .clone()
            .get_payment(GetPaymentRequest {
                payment_id: p.payment_id,
            })
            .await?
            .into_inner();
        assert_eq!(p.payment.unwrap().failure_reason, "interrupted:not_charged");
        platform.gateways[leaves].start().await?;
    }

    let report = platform.check().await?;
    println!("{report}");
    assert!(report.is_ok(), "{report}");
    assert!(report.succeeded >= 15 && report.failed >= 5, "{report}");
    Ok(())
}
