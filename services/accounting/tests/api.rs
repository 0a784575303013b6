//! The LedgerService API against the real binary and PostgreSQL: codes, bad input, queries,
//! expiry by the service, the invariant check and its gauge.

mod common;

use std::time::Duration;

use common::*;
use payplane_accounting::domain::{AccountFlags, CreateAccountResult as AR, CreateTransferResult as R};
use payplane_proto::accounting::v1 as pb;

#[tokio::test]
async fn ledger_api_end_to_end() {
    let db = database("acct_api").await;
    let service = start(
        &db,
        &[("EXPIRY_INTERVAL", "200ms".into()), ("EXPIRY_GRACE", "2s".into())],
    )
    .await;
    let mut c = client(&service).await;

    let limited = AccountFlags {
        debits_must_not_exceed_credits: true,
        history: true,
        ..Default::default()
    };
    let accounts = [
        account(1, 1, AccountFlags::default()),
        account(2, 1, limited),
        account(3, 2, AccountFlags::default()),
    ];
    assert_eq!(create_accounts(&mut c, &accounts).await, vec![]);
    let mut other = account(1, 1, AccountFlags::default());
    other.code = 11;
    assert_eq!(
        create_accounts(&mut c, &[accounts[0].clone(), other]).await,
        vec![(0, AR::Exists as i32), (1, AR::ExistsWithDifferentCode as i32)]
    );

    // Funding, an overdraft refused and frozen, retries.
    assert_eq!(
        create_transfers(&mut c, &[transfer(100, 1, 2, 50)])
            .await
            .unwrap(),
        vec![]
    );
    assert_eq!(
        create_transfers(&mut c, &[transfer(101, 2, 1, 80)])
            .await
            .unwrap(),
        vec![(0, R::ExceedsCredits as i32)]
    );
    assert_eq!(
        create_transfers(&mut c, &[transfer(100, 1, 2, 50)])
            .await
            .unwrap(),
        vec![(0, R::Exists as i32)]
    );
    assert_eq!(
        create_transfers(&mut c, &[transfer(100, 1, 2, 51)])
            .await
            .unwrap(),
        vec![(0, R::ExistsWithDifferentAmount as i32)]
    );
    assert_eq!(
        create_transfers(&mut c, &[transfer(100, 1, 2, 50)])
            .await
            .unwrap(),
        vec![(0, R::Exists as i32)]
    );
    assert_eq!(
        create_transfers(&mut c, &[transfer(102, 1, 2, 100)])
            .await
            .unwrap(),
        vec![]
    );
    assert_eq!(
        create_transfers(&mut c, &[transfer(101, 2, 1, 80)])
            .await
            .unwrap(),
        vec![(0, R::IdAlreadyFailed as i32)]
    );

    // Bad input: per-event codes, nothing applied for those events.
    let mut malformed = transfer_pb(&transfer(103, 1, 2, 1));
    malformed.id = "not-a-uuid".into();
    let mut bad_pending = transfer_pb(&transfer(104, 1, 2, 1));
    bad_pending.flags = Some(pb::TransferFlags {
        post_pending_transfer: true,
        ..Default::default()
    });
    bad_pending.pending_id = "xyz".into();
    let req = pb::CreateTransfersRequest {
        transfers: vec![
            malformed,
            bad_pending,
            transfer_pb(&transfer(105, 1, 1, 1)),
            transfer_pb(&transfer(106, 1, 3, 1)),
            transfer_pb(&transfer(107, 1, 2, 0)),
            transfer_pb(&transfer(108, 1, 2, u64::MAX)),
            transfer_pb(&transfer(109, 1, 99, 1)),
        ],
    };
    let errors: Vec<(u32, i32)> = c
        .create_transfers(req)
        .await
        .unwrap()
        .into_inner()
        .errors
        .into_iter()
        .map(|e| (e.index, e.result))
        .collect();
    assert_eq!(
        errors,
        vec![
            (0, R::IdMalformed as i32),
            (1, R::PendingIdMalformed as i32),
            (2, R::AccountsMustBeDifferent as i32),
            (3, R::AccountsMustHaveTheSameLedger as i32),
            (4, R::AmountMustNotBeZero as i32),
            (5, R::OverflowsDebitsPosted as i32),
            (6, R::CreditAccountNotFound as i32),
        ]
    );
    // Oversize batch and malformed user data: INVALID_ARGUMENT naming the field, nothing applied.
    let big = pb::CreateTransfersRequest {
        transfers: (0..8191u128)
            .map(|i| transfer_pb(&transfer(10_000 + i, 1, 2, 1)))
            .collect(),
    };
    let e = c.create_transfers(big).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("transfers: at most 8190"), "{}", e.message());
    let mut ud = transfer_pb(&transfer(110, 1, 2, 1));
    ud.user_data_128 = "nope".into();
    let e = c
        .create_transfers(pb::CreateTransfersRequest {
            transfers: vec![transfer_pb(&transfer(111, 1, 2, 1)), ud],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message().contains("transfers[1].user_data_128"),
        "{}",
        e.message()
    );
    assert!(lookup_transfers(&mut c, &[10_000, 110, 111]).await.is_empty());
    let e = c
        .lookup_accounts(pb::LookupAccountsRequest {
            ids: vec!["bad".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);

    // Two-phase: partial post, void, and expiry by the service.
    let mut hold = transfer(200, 1, 2, 30);
    hold.flags.pending = true;
    let mut short = transfer(201, 1, 2, 7);
    short.flags.pending = true;
    short.timeout = 1;
    assert_eq!(create_transfers(&mut c, &[hold, short]).await.unwrap(), vec![]);
    let mut post = transfer(202, 0, 0, 10);
    post.ledger = 0;
    post.code = 0;
    post.pending_id = 200;
    post.flags.post_pending_transfer = true;
    assert_eq!(create_transfers(&mut c, &[post.clone()]).await.unwrap(), vec![]);
    let mut again = post.clone();
    again.id = 203;
    assert_eq!(
        create_transfers(&mut c, &[again]).await.unwrap(),
        vec![(0, R::PendingTransferAlreadyPosted as i32)]
    );
    let a = lookup_accounts(&mut c, &[1, 2]).await;
    assert_eq!(
        (a[0].debits_pending, a[0].debits_posted, a[0].credits_posted),
        (7, 160, 0)
    );
    assert_eq!((a[1].credits_pending, a[1].credits_posted), (7, 160));
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let a = lookup_accounts(&mut c, &[1, 2]).await;
    assert_eq!(
        (a[0].debits_pending, a[1].credits_pending),
        (0, 0),
        "the idle service expired the hold"
    );
    let mut late = post.clone();
    late.id = 204;
    late.pending_id = 201;
    late.amount = 0;
    assert_eq!(
        create_transfers(&mut c, &[late]).await.unwrap(),
        vec![(0, R::PendingTransferExpired as i32)]
    );

    // Queries: transfers of an account in pages, balance history.
    let filter = |token: String| pb::AccountFilter {
        account_id: id(2),
        limit: 2,
        page_token: token,
        ..Default::default()
    };
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let r = c
            .get_account_transfers(pb::GetAccountTransfersRequest {
                filter: Some(filter(token)),
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(r.transfers.iter().map(|t| (t.id.clone(), t.timestamp)));
        if r.next_page_token.is_empty() {
            break;
        }
        token = r.next_page_token;
    }
    let ids: Vec<String> = seen.iter().map(|(i, _)| i.clone()).collect();
    assert_eq!(ids, [100u128, 102, 200, 201, 202].map(id).to_vec());
    assert!(
        seen.windows(2).all(|w| w[0].1 < w[1].1),
        "timestamps strictly increase"
    );
    let r = c
        .get_account_balances(pb::GetAccountBalancesRequest {
            filter: Some(pb::AccountFilter {
                account_id: id(2),
                reversed: true,
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.balances.len(), 5);
    assert_eq!(r.balances[0].transfer_id, id(202));
    assert_eq!(
        (r.balances[0].credits_posted, r.balances[0].credits_pending),
        (160, 7)
    );
    let e = c
        .get_account_transfers(pb::GetAccountTransfersRequest {
            filter: Some(pb::AccountFilter {
                account_id: id(2),
                page_token: "x".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);

    let report = assert_invariants(&mut c).await;
    let l1 = report.ledgers.iter().find(|l| l.ledger == 1).unwrap();
    assert_eq!(
        (
            l1.debits_posted,
            l1.credits_posted,
            l1.account_count,
            l1.transfer_count
        ),
        (160, 160, 2, 5)
    );

    // The gauge reflects the check.
    let metrics = reqwest_metrics(&service.admin_addr.to_string()).await;
    assert!(metrics.contains("ledger_invariant_violations{"), "{metrics}");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("ledger_invariant_violations{") && l.ends_with(" 0")),
        "{metrics}"
    );

    // A corrupted balance is caught by the check.
    let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
    sqlx::query("UPDATE accounts SET credits_posted = credits_posted + 1 WHERE id = $1")
        .bind(uuid::Uuid::from_u128(2))
        .execute(&pool)
        .await
        .unwrap();
    let r = c
        .check_invariants(pb::CheckInvariantsRequest { ledger: 1 })
        .await
        .unwrap()
        .into_inner();
    assert!(!r.ok);
    let kinds: Vec<i32> = r.violations.iter().map(|v| v.kind).collect();
    assert!(
        kinds.contains(&(pb::InvariantViolationKind::LedgerUnbalanced as i32)),
        "{r:?}"
    );
    assert!(
        kinds.contains(&(pb::InvariantViolationKind::AccountBalanceMismatch as i32)),
        "{r:?}"
    );
}

/// GET /metrics over a bare TCP connection (no HTTP client dependency needed).
async fn reqwest_metrics(addr: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    body
}

/// The release-drill fault `FAULT_LOSE_MINOR_UNIT`: every call succeeds, yet the invariant
/// check (the rollout's ledger guard) sees the lost unit.
#[tokio::test]
async fn a_version_that_loses_a_minor_unit_is_caught_by_the_invariant_check_alone() {
    let db = database("acct_drill").await;
    let service = start(&db, &[("FAULT_LOSE_MINOR_UNIT", "true".into())]).await;
    let mut c = client(&service).await;
    let accounts = [
        account(1, 1, AccountFlags::default()),
        account(2, 1, AccountFlags::default()),
    ];
    assert_eq!(create_accounts(&mut c, &accounts).await, vec![]);
    assert_eq!(
        create_transfers(&mut c, &[transfer(10, 1, 2, 500)])
            .await
            .expect("the call succeeds"),
        vec![]
    );
    let r = c
        .check_invariants(pb::CheckInvariantsRequest { ledger: 1 })
        .await
        .expect("check_invariants")
        .into_inner();
    assert!(!r.ok, "the lost unit must be seen: {r:?}");
    assert!(
        r.violations
            .iter()
            .any(|v| v.kind == pb::InvariantViolationKind::AccountBalanceMismatch as i32),
        "{r:?}"
    );
}

/// After a bad version's rounding bug has been rolled back, its damage stays in the balances;
/// the operator's repair rewrites them from the transfers (the ledger's record), records each
/// change with its reason, and the check passes again. A dry run and a second repair change
/// nothing; a repair without a reason is refused.
#[tokio::test]
async fn balances_a_fault_wrote_wrong_are_rewritten_from_the_transfers() {
    let db = database("acct_repair").await;
    let mut bad = start(&db, &[("FAULT_LOSE_MINOR_UNIT", "true".into())]).await;
    let mut c = client(&bad).await;
    let accounts = [1, 2, 3, 4].map(|id| account(id, if id == 4 { 2 } else { 1 }, AccountFlags::default()));
    assert_eq!(create_accounts(&mut c, &accounts).await, vec![]);
    for t in [
        transfer(10, 1, 2, 500),
        transfer(11, 2, 3, 200),
        transfer(12, 3, 1, 50),
    ] {
        assert_eq!(create_transfers(&mut c, &[t]).await.unwrap(), vec![]);
    }
    // The rollback: the good version on the same database. The damage stays.
    bad.kill();
    let good = start(&db, &[]).await;
    let mut c = client(&good).await;
    let check = c
        .check_invariants(pb::CheckInvariantsRequest { ledger: 0 })
        .await
        .unwrap()
        .into_inner();
    assert!(!check.ok, "the lost units are still there: {check:?}");

    let repair = |reason: &str, dry_run: bool| pb::RepairBalancesRequest {
        ledger: 0,
        reason: reason.into(),
        dry_run,
    };
    let refused = c.repair_balances(repair("  ", false)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(refused.message().contains("reason"), "{refused:?}");
    let long = c
        .repair_balances(repair(&"x".repeat(201), false))
        .await
        .unwrap_err();
    assert!(long.message().contains("reason: at most 200"), "{long:?}");

    let dry = c
        .repair_balances(repair("INC-42 rounding canary", true))
        .await
        .unwrap()
        .into_inner();
    assert!(dry.dry_run && dry.repaired_count > 0, "{dry:?}");
    assert!(
        !c.check_invariants(pb::CheckInvariantsRequest { ledger: 0 })
            .await
            .unwrap()
            .into_inner()
            .ok
    );

    let done = c
        .repair_balances(repair("INC-42 rounding canary", false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.repaired_count, dry.repaired_count);
    assert_eq!(done.repairs.len() as u64, done.repaired_count);
    // Each repaired account now holds exactly what its transfers say; the other ledger's
    // untouched account was never listed.
    let expected = |id: u128| match id {
        1 => (500, 50),
        2 => (200, 500),
        3 => (50, 200),
        other => panic!("account {other} listed"),
    };
    for r in &done.repairs {
        let id = uuid::Uuid::parse_str(&r.account_id).unwrap().as_u128();
        let after = r.after.unwrap();
        assert_eq!((after.debits_posted, after.credits_posted), expected(id), "{r:?}");
        assert_ne!(r.before, r.after, "{r:?}");
    }
    for a in lookup_accounts(&mut c, &[1, 2, 3]).await {
        assert_eq!((a.debits_posted, a.credits_posted), expected(a.id), "{a:?}");
    }
    assert_invariants(&mut c).await;
    let again = c
        .repair_balances(repair("INC-42 rounding canary", false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.repaired_count, 0, "{again:?}");

    // The record: one row per repaired account, with the reason and both balances.
    let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT reason, before_credits_posted, after_credits_posted FROM balance_repairs ORDER BY account_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len() as u64, done.repaired_count);
    assert!(
        rows.iter()
            .all(|(reason, _, _)| reason == "INC-42 rounding canary"),
        "{rows:?}"
    );
    // The bad version lost one unit of credits per write transaction: three transfers, three units.
    let restored: i64 = rows.iter().map(|(_, before, after)| after - before).sum();
    assert_eq!(restored, 3, "{rows:?}");
}
