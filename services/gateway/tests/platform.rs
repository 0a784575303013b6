//! The gateway over the real platform (routing, accounting, settlement, channel-sim as processes):
//! payments succeed, decline, fail at the channel and find no route; bad input is refused with
//! nothing in the ledger; refunds; listing; then the invariant checker over everything.
//!
//! Needs PostgreSQL (`ci/devenv up && eval "$(ci/devenv env)"`) and the binaries
//! (`cargo build --bins`).

mod common;

use std::time::Duration;

use common::{Platform, PlatformOptions, payment};
use payplane_proto::{
    common::v1::Money,
    payment::v1::{GetPaymentRequest, ListPaymentsRequest, PaymentStatus, PaymentStep, RefundPaymentRequest},
};
use tonic::Code;

#[tokio::test]
async fn payments_succeed_decline_fail_and_refund_with_the_ledger_balanced() -> anyhow::Result<()> {
    let platform = Platform::start(PlatformOptions::default()).await?;
    let mut gw = platform.gateway_client(0).await?;

    // Success, with the trace id in the metadata and on the payment.
    let r = gw.create_payment(payment("ok-1", "m-001", 1000, "CNY")).await?;
    let trace_id = r
        .metadata()
        .get("x-trace-id")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let p = r.into_inner().payment.unwrap();
    assert_eq!(p.status(), PaymentStatus::Succeeded, "{p:?}");
    assert_eq!(p.step(), PaymentStep::Done);
    assert_eq!(p.channel_id, "unionpay");
    assert_eq!(
        p.fee.as_ref().unwrap().minor_units,
        4,
        "38 bps of 10.00 rounded half-up"
    );
    assert!(!p.channel_reference.is_empty());
    assert_eq!(trace_id.len(), 32, "x-trace-id: {trace_id:?}");
    assert_eq!(p.trace_id, trace_id);
    for i in 0..5 {
        let p = gw
            .create_payment(payment(&format!("ok-more-{i}"), "m-002", 2000 + i, "CNY"))
            .await?
            .into_inner();
        assert_eq!(p.payment.unwrap().status(), PaymentStatus::Succeeded);
    }

    // Same key, same body: the original, replayed. Same key, other body: ALREADY_EXISTS naming it.
    let again = gw
        .create_payment(payment("ok-1", "m-001", 1000, "CNY"))
        .await?
        .into_inner();
    assert!(again.replayed);
    assert_eq!(again.payment.unwrap().payment_id, p.payment_id);
    let conflict = gw
        .create_payment(payment("ok-1", "m-001", 1001, "CNY"))
        .await
        .unwrap_err();
    assert_eq!(conflict.code(), Code::AlreadyExists);
    assert!(
        conflict.message().contains("\"ok-1\"") && conflict.message().contains("amount.minor_units"),
        "{conflict:?}"
    );

    // Bad input: the field is named.
    for (req, field) in [
        (payment("bad-1", "m-001", -5, "CNY"), "amount.minor_units"),
        (payment("bad-2", "m-001", 0, "CNY"), "amount.minor_units"),
        (payment("bad-3", "m-404", 100, "CNY"), "merchant_id"),
        (payment("bad-4", "m-001", 100, "XXX"), "amount.currency"),
        (
            {
                let mut r = payment("bad-5", "m-001", 100, "CNY");
                r.method = 0;
                r
            },
            "method",
        ),
        (
            {
                let mut r = payment("bad-6", "m-001", 100, "CNY");
                r.method = 99;
                r
            },
            "method",
        ),
    ] {
        let e = gw.create_payment(req).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().contains(field), "{field}: {}", e.message());
    }

    // No channel takes JPY: FAILED no_route, nothing in the ledger (the checker verifies no hold).
    let p_jpy = gw
        .create_payment(payment("jpy-1", "m-001", 500, "JPY"))
        .await?
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(p_jpy.status(), PaymentStatus::Failed);
    assert!(
        p_jpy.failure_reason.starts_with("no_route:"),
        "{}",
        p_jpy.failure_reason
    );

    // Declines.
    platform
        .configure_channels(|mut c| {
            c.decline_rate = 1.0;
            c
        })
        .await?;
    let declined = gw
        .create_payment(payment("decl-1", "m-001", 700, "CNY"))
        .await?
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(declined.status(), PaymentStatus::Failed);
    assert!(
        declined.failure_reason.starts_with("declined:"),
        "{}",
        declined.failure_reason
    );

    // Channel down: the payment stays in flight past the budget; once the channel is back the
    // recovery loop learns it never charged and voids the hold.
    platform
        .configure_channels(|mut c| {
            c.outage = true;
            c
        })
        .await?;
    let down = gw
        .create_payment(payment("down-1", "m-001", 900, "CNY"))
        .await?
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(down.status(), PaymentStatus::Pending, "{down:?}");
    assert_eq!(down.step(), PaymentStep::Held);
    platform.configure_channels(|c| c).await?;
    platform.wait_until_final(Duration::from_secs(30)).await?;
    let down = gw
        .get_payment(GetPaymentRequest {
            payment_id: down.payment_id,
        })
        .await?
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(down.status(), PaymentStatus::Failed);
    assert_eq!(down.failure_reason, "interrupted:not_charged");

    // Refunds: partial, above what is left, the rest; replayed by key.
    let cny = |m| {
        Some(Money {
            minor_units: m,
            currency: "CNY".into(),
        })
    };
    let refund = |key: &str, amount| RefundPaymentRequest {
        payment_id: p.payment_id.clone(),
        idempotency_key: key.to_string(),
        amount,
        reason: "customer".into(),
    };
    let r1 = gw.refund_payment(refund("rf-1", cny(300))).await?.into_inner();
    assert_eq!(
        r1.refund.as_ref().unwrap().status(),
        PaymentStatus::Succeeded,
        "{r1:?}"
    );
    assert_eq!(
        r1.payment
            .as_ref()
            .unwrap()
            .refunded
            .as_ref()
            .unwrap()
            .minor_units,
        300
    );
    let too_much = gw.refund_payment(refund("rf-2", cny(701))).await.unwrap_err();
    assert_eq!(too_much.code(), Code::FailedPrecondition);
    assert!(
        too_much.message().contains("7.00 CNY left"),
        "{}",
        too_much.message()
    );
    let replay = gw.refund_payment(refund("rf-1", cny(300))).await?.into_inner();
    assert!(replay.replayed);
    assert_eq!(replay.refund.unwrap().refund_id, r1.refund.unwrap().refund_id);
    let reused = gw.refund_payment(refund("rf-1", cny(200))).await.unwrap_err();
    assert_eq!(reused.code(), Code::AlreadyExists);
    let rest = gw.refund_payment(refund("rf-3", None)).await?.into_inner();
    assert_eq!(rest.refund.unwrap().amount.unwrap().minor_units, 700);
    assert_eq!(rest.payment.unwrap().refunded.unwrap().minor_units, 1000);
    let nothing = gw.refund_payment(refund("rf-4", None)).await.unwrap_err();
    assert_eq!(nothing.code(), Code::FailedPrecondition);
    let of_failed = gw
        .refund_payment(RefundPaymentRequest {
            payment_id: declined.payment_id.clone(),
            idempotency_key: "rf-x".into(),
            amount: None,
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(of_failed.code(), Code::FailedPrecondition);

    // Listing: newest first, by pages.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = gw
            .list_payments(ListPaymentsRequest {
                merchant_id: "m-001".into(),
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        assert!(page.payments.len() <= 2);
        seen.extend(page.payments.into_iter().map(|p| {
            let t = p.created_at.unwrap_or_default();
            (t.seconds, t.nanos, p.payment_id)
        }));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen.len(), 4, "ok-1, jpy-1, decl-1, down-1 of m-001");
    assert!(
        seen.windows(2).all(|w| (w[0].0, w[0].1) >= (w[1].0, w[1].1)),
        "newest first"
    );
    let failed_only = gw
        .list_payments(ListPaymentsRequest {
            merchant_id: "m-001".into(),
            status: PaymentStatus::Failed as i32,
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(failed_only.payments.len(), 3);

    let report = platform.check().await?;
    println!("{report}");
    assert!(report.is_ok(), "{report}");
    assert_eq!(
        (report.succeeded, report.failed, report.refunds_succeeded),
        (6, 3, 2)
    );
    assert!(report.settlement_items >= 8, "6 payments + 2 refunds");
    Ok(())
}
