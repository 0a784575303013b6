//! The real `settlement` binary against a real PostgreSQL: windows, idempotency, closing,
//! netting, reconciliation (every class), bad input, determinism.

mod common;

use std::collections::BTreeMap;

use common::{payment, record, refund, start, t, ts};
use payplane_proto::settlement::v1::{
    CloseWindowRequest, GetInstructionsRequest, GetNetPositionsRequest, GetReconciliationReportRequest,
    GetWindowRequest, InstructionFormat, ListWindowItemsRequest, ListWindowsRequest,
    ReconcileStatementRequest, RecordClearedRequest, ReportFormat, StatementFormat, WindowState,
};
use payplane_settlement::domain::{
    netting,
    statement::{Direction, StatementEntry, StatementHeader, render_camt053, render_csv},
};
use tonic::Code;

use common::SHANGHAI_ENV as SHANGHAI;

#[tokio::test]
async fn windows_follow_cut_offs_in_the_configured_zone() {
    let mut s = start("settle_win", SHANGHAI).await;
    let c = &mut s.client;
    // 22:59:59 and 23:00:00 Shanghai on the 21st: either side of unionpay's 23:00 cut-off.
    assert_eq!(
        record(c, payment(1, "unionpay", "m1", 100, 1, "2026-11-21T14:59:59Z")).await,
        "unionpay:CNY:2026-11-21"
    );
    assert_eq!(
        record(c, payment(2, "unionpay", "m1", 100, 1, "2026-11-21T15:00:00Z")).await,
        "unionpay:CNY:2026-11-22"
    );
    // The default midnight cut-off for another channel: 23:30 Shanghai is still the 21st.
    assert_eq!(
        record(c, payment(3, "netsunion", "m1", 100, 1, "2026-11-21T15:30:00Z")).await,
        "netsunion:CNY:2026-11-21"
    );
    // 00:00 Shanghai on the 22nd is 16:00 UTC on the 21st: the business day is the local one.
    assert_eq!(
        record(c, payment(4, "netsunion", "m1", 100, 1, "2026-11-21T16:00:00Z")).await,
        "netsunion:CNY:2026-11-22"
    );
    let w = c
        .get_window(GetWindowRequest {
            window_id: "unionpay:CNY:2026-11-22".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .window
        .unwrap();
    assert_eq!(w.opens_at, Some(ts(t("2026-11-21T15:00:00Z"))));
    assert_eq!(w.cut_off_at, Some(ts(t("2026-11-22T15:00:00Z"))));
    assert_eq!(w.state, WindowState::Open as i32);
    assert_eq!(
        (
            w.item_count,
            w.gross_payments.unwrap().minor_units,
            w.fees.unwrap().minor_units
        ),
        (1, 100, 1)
    );
    let list = c
        .list_windows(ListWindowsRequest {
            channel_id: "netsunion".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = list.windows.iter().map(|w| w.window_id.as_str()).collect();
    assert_eq!(ids, ["netsunion:CNY:2026-11-21", "netsunion:CNY:2026-11-22"]);

    // A daylight-saving zone: London, 17:00 cut-off. DST ends on 2026-10-25.
    let mut l = start(
        "settle_dst",
        &[
            ("SETTLEMENT_TIME_ZONE", "Europe/London"),
            ("SETTLEMENT_DEFAULT_CUT_OFF", "17:00/T+1"),
        ],
    )
    .await;
    let c = &mut l.client;
    // 16:30 UTC on the 24th is 17:30 BST: after that day's cut-off.
    assert_eq!(
        record(c, payment(10, "sepa", "m1", 100, 0, "2026-10-24T16:30:00Z")).await,
        "sepa:CNY:2026-10-25"
    );
    // 16:30 UTC on the 25th is 16:30 GMT: before it.
    assert_eq!(
        record(c, payment(11, "sepa", "m1", 100, 0, "2026-10-25T16:30:00Z")).await,
        "sepa:CNY:2026-10-25"
    );
    assert_eq!(
        record(c, payment(12, "sepa", "m1", 100, 0, "2026-10-25T17:00:00Z")).await,
        "sepa:CNY:2026-10-26"
    );
    let w = c
        .get_window(GetWindowRequest {
            window_id: "sepa:CNY:2026-10-25".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .window
        .unwrap();
    assert_eq!(w.opens_at, Some(ts(t("2026-10-24T16:00:00Z"))));
    assert_eq!(w.cut_off_at, Some(ts(t("2026-10-25T17:00:00Z"))));
    assert_eq!(w.item_count, 2);
}

#[tokio::test]
async fn recording_is_idempotent_and_a_changed_body_names_the_field() {
    let mut s = start("settle_idem", SHANGHAI).await;
    let c = &mut s.client;
    let item = payment(1, "unionpay", "m1", 1000, 6, "2026-11-21T10:00:00Z");
    let first = c
        .record_cleared(RecordClearedRequest {
            item: Some(item.clone()),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!first.replayed);
    let again = c
        .record_cleared(RecordClearedRequest {
            item: Some(item.clone()),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(again.replayed);
    assert_eq!(again.item, first.item);
    let mut changed = item.clone();
    changed.amount = common::money(1001, "CNY");
    changed.merchant_id = "m2".into();
    let e = c
        .record_cleared(RecordClearedRequest { item: Some(changed) })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    assert!(
        e.message().contains("amount.minor_units") && e.message().contains("merchant_id"),
        "{}",
        e.message()
    );
    // Bad input: every violation in one INVALID_ARGUMENT.
    let mut bad = item.clone();
    bad.item_id = "nope".into();
    bad.fee = common::money(5000, "CNY");
    bad.channel_reference.clear();
    let e = c
        .record_cleared(RecordClearedRequest { item: Some(bad) })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    for field in ["item.item_id", "item.fee.minor_units", "item.channel_reference"] {
        assert!(e.message().contains(field), "{field} in {}", e.message());
    }
    let items = c
        .list_window_items(ListWindowItemsRequest {
            window_id: "unionpay:CNY:2026-11-21".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(items.unwrap().into_inner().items.len(), 1);
}

#[tokio::test]
async fn closing_freezes_the_window_late_items_go_next_and_closing_twice_is_refused() {
    let mut s = start("settle_close", SHANGHAI).await;
    let c = &mut s.client;
    let w = "unionpay:CNY:2026-11-21";
    assert_eq!(
        record(
            c,
            payment(1, "unionpay", "m1", 10_000, 60, "2026-11-21T10:00:00Z")
        )
        .await,
        w
    );
    let positions_while_open = c
        .get_net_positions(GetNetPositionsRequest { window_id: w.into() })
        .await
        .unwrap_err();
    assert_eq!(positions_while_open.code(), Code::FailedPrecondition);
    let closed = c
        .close_window(CloseWindowRequest { window_id: w.into() })
        .await
        .unwrap()
        .into_inner();
    let window = closed.window.unwrap();
    // No accounting configured: the window is closed with its postings planned, not settled.
    assert_eq!(window.state, WindowState::Closed as i32);
    assert_eq!(closed.ledger_transfer_ids.len(), 1);
    assert_eq!(window.instructions_sha256.len(), 64);
    // A late item for the closed window's business day goes to the next one.
    assert_eq!(
        record(c, payment(2, "unionpay", "m1", 500, 3, "2026-11-21T11:00:00Z")).await,
        "unionpay:CNY:2026-11-22"
    );
    let again = c
        .get_window(GetWindowRequest { window_id: w.into() })
        .await
        .unwrap()
        .into_inner()
        .window
        .unwrap();
    assert_eq!(
        (again.item_count, again.gross_payments.unwrap().minor_units),
        (1, 10_000)
    );
    let e = c
        .close_window(CloseWindowRequest { window_id: w.into() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{}", e.message());
    let e = c
        .close_window(CloseWindowRequest {
            window_id: "unionpay:CNY:2030-01-01".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = c
        .close_window(CloseWindowRequest {
            window_id: "garbage".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn net_positions_sum_to_zero_and_equal_the_bilateral_nets() {
    let mut s = start("settle_net", SHANGHAI).await;
    let c = &mut s.client;
    let w = "unionpay:CNY:2026-11-21";
    let mut totals = netting::WindowTotals::default();
    let mut n = 0u128;
    for (merchant, payments, refunds) in [("m-a", 7, 1), ("m-b", 3, 4), ("m-c", 0, 2), ("m-d", 5, 0)] {
        for k in 0..payments {
            n += 1;
            let amount = 1_000 + 137 * k as i64;
            record(
                c,
                payment(
                    n,
                    "unionpay",
                    merchant,
                    amount,
                    amount * 6 / 1000,
                    "2026-11-21T03:00:00Z",
                ),
            )
            .await;
            let t = totals.merchants.entry(merchant.to_string()).or_default();
            t.payments += amount;
            t.fees += amount * 6 / 1000;
        }
        for k in 0..refunds {
            n += 1;
            let amount = 700 + k as i64;
            record(c, refund(n, "unionpay", merchant, amount, "2026-11-21T04:00:00Z")).await;
            totals.merchants.entry(merchant.to_string()).or_default().refunds += amount;
        }
    }
    c.close_window(CloseWindowRequest { window_id: w.into() })
        .await
        .unwrap();
    let positions = c
        .get_net_positions(GetNetPositionsRequest { window_id: w.into() })
        .await
        .unwrap()
        .into_inner()
        .positions;
    let got: BTreeMap<String, i64> = positions
        .iter()
        .map(|p| (p.participant_id.clone(), p.net.as_ref().unwrap().minor_units))
        .collect();
    assert_eq!(got.values().sum::<i64>(), 0, "{got:?}");
    for p in &positions {
        assert_eq!(
            p.gross_receivable.as_ref().unwrap().minor_units - p.gross_payable.as_ref().unwrap().minor_units,
            p.net.as_ref().unwrap().minor_units
        );
    }
    // The channel pays gross payments − refunds; each merchant gets payments − fees − refunds.
    let (payments, refunds, fees) = totals.sums().unwrap();
    assert_eq!(got["channel:unionpay"], -(payments - refunds));
    assert_eq!(got["fees:platform"], fees);
    for (m, t) in &totals.merchants {
        assert_eq!(got[&format!("merchant:{m}")], t.net().unwrap(), "merchant {m}");
    }
    // Bilateral netting of the same obligations adds up to the served multilateral positions.
    let bilateral = netting::bilateral(&totals.obligations("unionpay")).unwrap();
    for (participant, net) in &got {
        let from_pairs: i64 = bilateral
            .iter()
            .map(|b| {
                if &b.a == participant {
                    -b.a_owes_b
                } else if &b.b == participant {
                    b.a_owes_b
                } else {
                    0
                }
            })
            .sum();
        assert_eq!(from_pairs, *net, "{participant}");
    }
}

fn header(channel: &str) -> StatementHeader {
    StatementHeader {
        statement_id: "STMT-2026-11-21".into(),
        channel_id: channel.into(),
        currency: "CNY".parse().unwrap(),
        from: t("2026-11-20T15:00:00Z"),
        to: t("2026-11-21T15:00:00Z"),
        created_at: t("2026-11-21T16:00:00Z"),
    }
}

fn entry(reference: &str, direction: Direction, amount: i64) -> StatementEntry {
    StatementEntry {
        channel_reference: reference.into(),
        direction,
        amount,
        booked_at: t("2026-11-21T10:00:00Z"),
    }
}

/// One window with items for every reconciliation class, and a statement that exhibits them.
async fn reconcilable_window(c: &mut common::Client) -> Vec<StatementEntry> {
    let at = "2026-11-21T10:00:00Z";
    for i in 1..=4 {
        record(c, payment(i, "unionpay", "m1", 1_000 * i as i64, 6, at)).await;
    }
    record(c, refund(5, "unionpay", "m1", 300, at)).await;
    c.close_window(CloseWindowRequest {
        window_id: "unionpay:CNY:2026-11-21".into(),
    })
    .await
    .unwrap();
    vec![
        entry("REF-1", Direction::Credit, 1_000), // matched
        entry("REF-2", Direction::Credit, 2_001), // amount mismatch
        entry("RFD-5", Direction::Debit, 300),    // matched (a refund)
        entry("REF-1", Direction::Credit, 1_000), // duplicate
        entry("XYZ-9", Direction::Credit, 50),    // unexpected at channel
        entry("REF-3", Direction::Debit, 3_000),  // amount mismatch: wrong direction
                                                  // REF-4: missing at channel
    ]
}

#[tokio::test]
async fn reconciliation_classifies_every_line_and_item_in_both_formats() {
    let mut s = start("settle_recon", SHANGHAI).await;
    let c = &mut s.client;
    let w = "unionpay:CNY:2026-11-21";
    let entries = reconcilable_window(c).await;
    for (format, doc) in [
        (
            StatementFormat::Camt053Xml,
            render_camt053(&header("unionpay"), &entries),
        ),
        (StatementFormat::Csv, render_csv(&header("unionpay"), &entries)),
    ] {
        let report = c
            .reconcile_statement(ReconcileStatementRequest {
                window_id: w.into(),
                format: format as i32,
                document: doc.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .report
            .unwrap();
        let s = report.summary.unwrap();
        assert_eq!(
            (
                s.matched,
                s.amount_mismatch,
                s.duplicate,
                s.unexpected_at_channel,
                s.missing_at_channel
            ),
            (2, 2, 1, 1, 1),
            "{format:?}"
        );
        let classes: Vec<(i32, &str)> = report
            .breaks
            .iter()
            .map(|b| (b.class, b.channel_reference.as_str()))
            .collect();
        use payplane_proto::settlement::v1::ReconciliationClass as C;
        assert_eq!(
            classes,
            vec![
                (C::AmountMismatch as i32, "REF-2"),
                (C::Duplicate as i32, "REF-1"),
                (C::UnexpectedAtChannel as i32, "XYZ-9"),
                (C::AmountMismatch as i32, "REF-3"),
                (C::MissingAtChannel as i32, "REF-4"),
            ]
        );
        // Lines point into the document: for CSV, entry k is on line k + 1.
        if format == StatementFormat::Csv {
            assert_eq!(report.breaks[0].statement_line, 3);
        } else {
            let text = String::from_utf8(doc.clone()).unwrap();
            let line = report.breaks[0].statement_line as usize;
            assert_eq!(text.lines().nth(line - 1).unwrap().trim(), "<Ntry>");
            assert!(
                text.lines()
                    .skip(line)
                    .take_while(|l| l.trim() != "</Ntry>")
                    .any(|l| l.contains("REF-2"))
            );
        }
        assert_eq!(report.breaks[3].our_amount.as_ref().unwrap().minor_units, 3_000);
        assert_eq!(
            report.breaks[3].channel_amount.as_ref().unwrap().minor_units,
            -3_000
        );
    }
    let window = c
        .get_window(GetWindowRequest { window_id: w.into() })
        .await
        .unwrap()
        .into_inner()
        .window
        .unwrap();
    // Without accounting the window stays CLOSED (postings pending) even once reconciled.
    assert_eq!(window.state, WindowState::Closed as i32);
    let text = c
        .get_reconciliation_report(GetReconciliationReportRequest {
            window_id: w.into(),
            format: ReportFormat::Text as i32,
        })
        .await
        .unwrap()
        .into_inner();
    let text = String::from_utf8(text.document).unwrap();
    assert!(
        text.contains("unexpected at channel") && text.contains("XYZ-9"),
        "{text}"
    );
}

#[tokio::test]
async fn malformed_statements_are_refused_with_line_and_reason_and_change_nothing() {
    let mut s = start("settle_bad", SHANGHAI).await;
    let c = &mut s.client;
    let w = "unionpay:CNY:2026-11-21";
    let entries = reconcilable_window(c).await;
    let good = render_camt053(&header("unionpay"), &entries);
    c.reconcile_statement(ReconcileStatementRequest {
        window_id: w.into(),
        format: StatementFormat::Camt053Xml as i32,
        document: good.clone(),
    })
    .await
    .unwrap();
    let before = c
        .get_reconciliation_report(GetReconciliationReportRequest {
            window_id: w.into(),
            format: ReportFormat::Json as i32,
        })
        .await
        .unwrap()
        .into_inner()
        .document;
    let text = String::from_utf8(good.clone()).unwrap();
    let broken = text.replacen("</Amt>", "</Amount>", 1);
    let broken_line = broken.lines().position(|l| l.contains("</Amount>")).unwrap() + 1;
    let usd = text
        .replace("Ccy=\"CNY\"", "Ccy=\"USD\"")
        .replace("<Ccy>CNY</Ccy>", "<Ccy>USD</Ccy>");
    let other_channel = String::from_utf8(render_camt053(&header("netsunion"), &entries)).unwrap();
    let cases = [
        (
            StatementFormat::Camt053Xml,
            broken.into_bytes(),
            format!("line {broken_line}: malformed XML"),
        ),
        (
            StatementFormat::Camt053Xml,
            usd.into_bytes(),
            "statement currency is USD".to_string(),
        ),
        (
            StatementFormat::Camt053Xml,
            other_channel.into_bytes(),
            "channel \"netsunion\"".to_string(),
        ),
        (
            StatementFormat::Csv,
            b"channel_id,channel_reference\n".to_vec(),
            "line 1: header".to_string(),
        ),
        (
            StatementFormat::Csv,
            [
                render_csv(&header("unionpay"), &entries),
                b"unionpay,REF-9,CRDT,1.234,CNY,\n".to_vec(),
            ]
            .concat(),
            "line 8: amount \"1.234\" has more than 2 decimal places".to_string(),
        ),
    ];
    for (format, document, expect) in cases {
        let e = c
            .reconcile_statement(ReconcileStatementRequest {
                window_id: w.into(),
                format: format as i32,
                document,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
        assert!(
            e.message().contains(&expect),
            "expected {expect:?} in {:?}",
            e.message()
        );
    }
    let e = c
        .reconcile_statement(ReconcileStatementRequest {
            window_id: "unionpay:CNY:2031-01-01".into(),
            format: 1,
            document: good.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let after = c
        .get_reconciliation_report(GetReconciliationReportRequest {
            window_id: w.into(),
            format: ReportFormat::Json as i32,
        })
        .await
        .unwrap()
        .into_inner()
        .document;
    assert_eq!(before, after, "a refused statement changed the stored report");
    // Reconciling an open window is a business-rule error.
    record(c, payment(99, "unionpay", "m1", 10, 0, "2026-11-22T01:00:00Z")).await;
    let e = c
        .reconcile_statement(ReconcileStatementRequest {
            window_id: "unionpay:CNY:2026-11-22".into(),
            format: 1,
            document: good,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn identical_inputs_give_byte_identical_instructions_and_reports() {
    let w = "unionpay:CNY:2026-11-21";
    let mut outputs = Vec::new();
    for run in 0..2 {
        let mut s = start(&format!("settle_det{run}"), SHANGHAI).await;
        let c = &mut s.client;
        let mut items: Vec<_> = (1..=40u128)
            .map(|i| {
                if i % 7 == 0 {
                    refund(
                        i,
                        "unionpay",
                        &format!("m{}", i % 5),
                        100 + i as i64,
                        "2026-11-21T08:00:00Z",
                    )
                } else {
                    payment(
                        i,
                        "unionpay",
                        &format!("m{}", i % 5),
                        1_000 + 13 * i as i64,
                        i as i64,
                        "2026-11-21T08:00:00Z",
                    )
                }
            })
            .collect();
        // The second run records in a different order.
        if run == 1 {
            items.reverse();
        }
        for item in items {
            record(c, item).await;
        }
        c.close_window(CloseWindowRequest { window_id: w.into() })
            .await
            .unwrap();
        let xml = c
            .get_instructions(GetInstructionsRequest {
                window_id: w.into(),
                format: InstructionFormat::Pacs009Xml as i32,
            })
            .await
            .unwrap()
            .into_inner();
        let csv = c
            .get_instructions(GetInstructionsRequest {
                window_id: w.into(),
                format: InstructionFormat::Csv as i32,
            })
            .await
            .unwrap()
            .into_inner();
        let entries: Vec<_> = (1..=38u128)
            .map(|i| entry(&format!("REF-{i}"), Direction::Credit, 1_000 + 13 * i as i64))
            .collect();
        let statement = render_camt053(&header("unionpay"), &entries);
        c.reconcile_statement(ReconcileStatementRequest {
            window_id: w.into(),
            format: 1,
            document: statement,
        })
        .await
        .unwrap();
        let json = c
            .get_reconciliation_report(GetReconciliationReportRequest {
                window_id: w.into(),
                format: ReportFormat::Json as i32,
            })
            .await
            .unwrap()
            .into_inner();
        let text = c
            .get_reconciliation_report(GetReconciliationReportRequest {
                window_id: w.into(),
                format: ReportFormat::Text as i32,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            xml.sha256,
            payplane_settlement::domain::instructions::sha256_hex(&xml.document)
        );
        assert!(!json.report.unwrap().breaks.is_empty());
        outputs.push((xml.document, csv.document, json.document, text.document));
    }
    let (a, b) = (&outputs[0], &outputs[1]);
    assert!(a.0 == b.0, "pacs.009 differs between runs");
    assert!(a.1 == b.1, "instruction CSV differs between runs");
    assert!(a.2 == b.2, "JSON report differs between runs");
    assert!(a.3 == b.3, "text report differs between runs");
}

#[tokio::test]
async fn windows_close_by_themselves_once_past_their_cut_off() {
    let mut env = SHANGHAI.to_vec();
    env.push(("SETTLEMENT_AUTO_CLOSE_AFTER", "1s"));
    let mut s = start("settle_auto", &env).await;
    let c = &mut s.client;
    let past = "unionpay:CNY:2026-01-05";
    assert_eq!(
        record(c, payment(1, "unionpay", "m1", 100, 1, "2026-01-05T01:00:00Z")).await,
        past
    );
    // A window whose cut-off is far in the future stays open.
    let future = record(c, payment(2, "unionpay", "m1", 100, 1, "2099-01-05T01:00:00Z")).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let w = c
            .get_window(GetWindowRequest {
                window_id: past.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .window
            .unwrap();
        if w.state == WindowState::Closed as i32 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "window {past} still {:?} 20 s after its cut-off",
            w.state
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let w = c
        .get_window(GetWindowRequest { window_id: future })
        .await
        .unwrap()
        .into_inner()
        .window
        .unwrap();
    assert_eq!(w.state, WindowState::Open as i32);
}
