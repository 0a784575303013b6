//! End to end with the real `accounting` binary (build it first:
//! `cargo build -p payplane-accounting --bin accounting`): a refused settlement leaves nothing
//! behind, a close posts each merchant's net to the ledger, a close interrupted after posting
//! never posts twice, and the ledger's invariant check passes.

mod common;

use common::{SHANGHAI_ENV, payment, record, refund, start_on};
use payplane_core::{
    Currency,
    accounts::{AccountRef, transfer_code},
};
use payplane_proto::{
    accounting::v1::{
        Account, AccountFlags, CheckInvariantsRequest, CreateAccountsRequest, CreateTransfersRequest,
        LookupAccountsRequest, LookupTransfersRequest, Transfer, ledger_service_client::LedgerServiceClient,
    },
    settlement::v1::{CloseWindowRequest, GetNetPositionsRequest, GetWindowRequest, WindowState},
};
use payplane_testkit::{ServiceProcess, TestDatabase};
use tonic::Code;
use uuid::Uuid;

const WINDOW: &str = "unionpay:CNY:2026-11-21";

fn cny() -> Currency {
    "CNY".parse().unwrap()
}

fn transfer(debit: &AccountRef, credit: &AccountRef, amount: u64, code: u32) -> Transfer {
    Transfer {
        id: Uuid::new_v4().to_string(),
        debit_account_id: debit.id().to_string(),
        credit_account_id: credit.id().to_string(),
        amount,
        ledger: cny().ledger(),
        code,
        ..Default::default()
    }
}

#[tokio::test]
async fn closing_a_window_posts_merchant_nets_once_and_keeps_the_ledger_balanced() {
    let ledger_db = TestDatabase::create("settle_e2e_ledger").await.unwrap();
    let accounting = ServiceProcess::start(
        "accounting",
        &[
            ("DATABASE_URL", ledger_db.url().to_string()),
            ("RUST_LOG", "warn".into()),
        ],
        &[],
    )
    .await
    .expect("accounting starts (cargo build -p payplane-accounting --bin accounting)");
    let mut ledger = LedgerServiceClient::connect(accounting.grpc_url()).await.unwrap();

    // The chart of accounts for one channel; clearing may not go below zero, so a settlement
    // before the money arrived is refused by the ledger.
    let payer = AccountRef::payer("p1", cny());
    let clearing = AccountRef::clearing("unionpay", cny());
    let fees = AccountRef::fees(cny());
    let account = |a: &AccountRef, flags: Option<AccountFlags>| Account {
        id: a.id().to_string(),
        ledger: a.ledger(),
        code: a.kind.code(),
        flags,
        ..Default::default()
    };
    let created = ledger
        .create_accounts(CreateAccountsRequest {
            accounts: vec![
                account(&payer, None),
                account(
                    &clearing,
                    Some(AccountFlags {
                        debits_must_not_exceed_credits: true,
                        ..Default::default()
                    }),
                ),
                account(&fees, None),
            ],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(created.errors.is_empty(), "{:?}", created.errors);

    let settlement_db = TestDatabase::create("settle_e2e").await.unwrap();
    let db_url = settlement_db.url().to_string();
    let mut env: Vec<(&str, String)> = SHANGHAI_ENV.iter().map(|(k, v)| (*k, v.to_string())).collect();
    env.push(("ACCOUNTING_TARGET", accounting.grpc_addr.to_string()));
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut s = start_on(settlement_db, &env_ref).await;
    let c = &mut s.client;
    let at = "2026-11-21T09:00:00Z";
    record(c, payment(1, "unionpay", "m1", 10_000, 60, at)).await;
    record(c, payment(2, "unionpay", "m1", 5_000, 30, at)).await;
    record(c, payment(3, "unionpay", "m2", 2_000, 12, at)).await;
    record(c, refund(4, "unionpay", "m1", 1_000, at)).await;
    let m1_net = 10_000 - 60 + 5_000 - 30 - 1_000;
    let m2_net = 2_000 - 12;

    // 1. Clearing is empty: the ledger refuses, the window is open again with nothing stored.
    let e = c
        .close_window(CloseWindowRequest {
            window_id: WINDOW.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{}", e.message());
    assert!(
        e.message().contains("EXCEEDS_CREDITS") && e.message().contains("open again"),
        "{}",
        e.message()
    );
    let w = c
        .get_window(GetWindowRequest {
            window_id: WINDOW.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .window
        .unwrap();
    assert_eq!(w.state, WindowState::Open as i32);
    assert!(w.instructions_sha256.is_empty());
    assert_eq!(
        c.get_net_positions(GetNetPositionsRequest {
            window_id: WINDOW.into()
        })
        .await
        .unwrap_err()
        .code(),
        Code::FailedPrecondition
    );
    let before = ledger
        .check_invariants(CheckInvariantsRequest { ledger: 156 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        before.ledgers.first().map(|l| l.transfer_count).unwrap_or(0),
        0,
        "a refused settlement left transfers"
    );

    // 2. The payments' money reaches clearing (what the gateway's saga posts), then close again.
    let flow = vec![
        transfer(&payer, &clearing, 10_000, transfer_code::PAYMENT),
        transfer(&clearing, &fees, 60, transfer_code::FEE),
        transfer(&payer, &clearing, 5_000, transfer_code::PAYMENT),
        transfer(&clearing, &fees, 30, transfer_code::FEE),
        transfer(&payer, &clearing, 2_000, transfer_code::PAYMENT),
        transfer(&clearing, &fees, 12, transfer_code::FEE),
        transfer(&clearing, &payer, 1_000, transfer_code::REFUND),
    ];
    let r = ledger
        .create_transfers(CreateTransfersRequest { transfers: flow })
        .await
        .unwrap()
        .into_inner();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let closed = c
        .close_window(CloseWindowRequest {
            window_id: WINDOW.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(closed.window.as_ref().unwrap().state, WindowState::Settled as i32);
    assert_eq!(closed.ledger_transfer_ids.len(), 2);
    let posted = ledger
        .lookup_transfers(LookupTransfersRequest {
            ids: closed.ledger_transfer_ids.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .transfers;
    assert_eq!(posted.len(), 2);
    let m1 = AccountRef::merchant("m1", cny());
    let m2 = AccountRef::merchant("m2", cny());
    assert_eq!(
        (
            posted[0].debit_account_id.as_str(),
            posted[0].credit_account_id.as_str(),
            posted[0].amount
        ),
        (
            clearing.id().to_string().as_str(),
            m1.id().to_string().as_str(),
            m1_net as u64
        )
    );
    assert_eq!(
        (posted[1].credit_account_id.as_str(), posted[1].amount),
        (m2.id().to_string().as_str(), m2_net as u64)
    );
    assert!(posted.iter().all(|t| t.code == transfer_code::SETTLEMENT));
    // Clearing is emptied by the settlement: what it collected went to merchants and fees.
    let accounts = ledger
        .lookup_accounts(LookupAccountsRequest {
            ids: vec![clearing.id().to_string()],
        })
        .await
        .unwrap()
        .into_inner()
        .accounts;
    assert_eq!(accounts[0].credits_posted, accounts[0].debits_posted);

    // 3. A crash after accounting accepted but before the window was marked settled: the retried
    //    close re-sends the same ids, accounting answers EXISTS, nothing posts twice.
    let count = |r: &payplane_proto::accounting::v1::CheckInvariantsResponse| {
        r.ledgers.iter().map(|l| l.transfer_count).sum::<u64>()
    };
    let settled = ledger
        .check_invariants(CheckInvariantsRequest { ledger: 0 })
        .await
        .unwrap()
        .into_inner();
    assert!(settled.ok, "{:?}", settled.violations);
    let mut pg = sqlx::PgPool::connect(&db_url).await.unwrap();
    sqlx::query("UPDATE settlement_windows SET state = 2 WHERE window_id = $1")
        .bind(WINDOW)
        .execute(&pg)
        .await
        .unwrap();
    let again = c
        .close_window(CloseWindowRequest {
            window_id: WINDOW.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.ledger_transfer_ids, closed.ledger_transfer_ids);
    assert_eq!(again.window.unwrap().state, WindowState::Settled as i32);
    let after = ledger
        .check_invariants(CheckInvariantsRequest { ledger: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(count(&after), count(&settled), "the retried close posted again");
    assert!(after.ok, "{:?}", after.violations);

    // 4. Closing a settled window is refused and changes nothing.
    let e = c
        .close_window(CloseWindowRequest {
            window_id: WINDOW.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let last = ledger
        .check_invariants(CheckInvariantsRequest { ledger: 0 })
        .await
        .unwrap()
        .into_inner();
    assert!(last.ok && count(&last) == count(&settled));
    pg.close().await;
    let _ = &mut pg;
}

#[tokio::test]
async fn an_unreachable_ledger_leaves_the_window_closed_and_a_retry_settles_it() {
    let ledger_db = TestDatabase::create("settle_e2e_ledger2").await.unwrap();
    let settlement_db = TestDatabase::create("settle_e2e2").await.unwrap();
    let dead = format!("127.0.0.1:{}", payplane_testkit::free_port().unwrap());
    let mut env: Vec<(&str, String)> = SHANGHAI_ENV.iter().map(|(k, v)| (*k, v.to_string())).collect();
    env.push(("ACCOUNTING_TARGET", dead));
    env.push(("CLIENT_DEFAULT_DEADLINE", "2s".into()));
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let s = start_on(settlement_db, &env_ref).await;
    let mut c = s.client.clone();
    record(
        &mut c,
        payment(1, "unionpay", "m1", 10_000, 60, "2026-11-21T09:00:00Z"),
    )
    .await;
    let e = c
        .close_window(CloseWindowRequest {
            window_id: WINDOW.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{}", e.message());
    let w = c
        .get_window(GetWindowRequest {
            window_id: WINDOW.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .window
        .unwrap();
    assert_eq!(
        w.state,
        WindowState::Closed as i32,
        "the window must stay closed while the postings' outcome is unknown"
    );

    // Accounting comes up; the same settlement database, pointed at it, resumes the close.
    let accounting = ServiceProcess::start(
        "accounting",
        &[
            ("DATABASE_URL", ledger_db.url().to_string()),
            ("RUST_LOG", "warn".into()),
        ],
        &[],
    )
    .await
    .expect("accounting starts");
    let common::Settlement { process, db, .. } = s;
    drop(process);
    let mut env: Vec<(&str, String)> = SHANGHAI_ENV.iter().map(|(k, v)| (*k, v.to_string())).collect();
    env.push(("ACCOUNTING_TARGET", accounting.grpc_addr.to_string()));
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut s = start_on(db, &env_ref).await;
    let closed = s
        .client
        .close_window(CloseWindowRequest {
            window_id: WINDOW.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(closed.window.unwrap().state, WindowState::Settled as i32);
    let mut ledger = LedgerServiceClient::connect(accounting.grpc_url()).await.unwrap();
    let found = ledger
        .lookup_transfers(LookupTransfersRequest {
            ids: closed.ledger_transfer_ids,
        })
        .await
        .unwrap()
        .into_inner()
        .transfers;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].amount, 10_000 - 60);
    let check = ledger
        .check_invariants(CheckInvariantsRequest { ledger: 0 })
        .await
        .unwrap()
        .into_inner();
    assert!(check.ok, "{:?}", check.violations);
}
