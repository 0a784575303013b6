//! Shared by the integration tests: the real `accounting` binary on a fresh database, a client,
//! and conversions between the wire types and the domain/model types.
#![allow(dead_code)]

use std::time::Duration;

use payplane_accounting::{convert, domain};
use payplane_proto::accounting::v1::{self as pb, ledger_service_client::LedgerServiceClient};
use payplane_testkit::{ServiceProcess, TestDatabase};
use tonic::transport::Channel;

pub type Client = LedgerServiceClient<Channel>;

/// Starts an `accounting` process on `db`.
pub async fn start(db: &TestDatabase, extra: &[(&str, String)]) -> ServiceProcess {
    let mut env = vec![
        ("DATABASE_URL", db.url().to_string()),
        ("LOG_FORMAT", "text".to_string()),
        ("RUST_LOG", "warn".to_string()),
        ("OTEL_SDK_DISABLED", "true".to_string()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, v.clone())));
    ServiceProcess::start("accounting", &env, &[])
        .await
        .expect("accounting starts (run `cargo build --bins` first)")
}

pub async fn client(p: &ServiceProcess) -> Client {
    LedgerServiceClient::connect(p.grpc_url()).await.expect("connect")
}

pub async fn database(prefix: &str) -> TestDatabase {
    TestDatabase::create(prefix).await.expect(
        "a PostgreSQL for tests: run `ci/devenv up && eval \"$(ci/devenv env)\"` (DATABASE_URL must point at it)",
    )
}

pub fn id(v: u128) -> String {
    uuid::Uuid::from_u128(v).to_string()
}

pub fn account_pb(a: &domain::Account) -> pb::Account {
    let mut p = convert::account_to_pb(a);
    p.timestamp = 0;
    p
}

pub fn transfer_pb(t: &domain::Transfer) -> pb::Transfer {
    let mut p = convert::transfer_to_pb(t);
    p.timestamp = 0;
    p
}

pub fn account(id: u128, ledger: u32, flags: domain::AccountFlags) -> domain::Account {
    domain::Account {
        id,
        ledger,
        code: 10,
        flags,
        ..Default::default()
    }
}

pub fn transfer(id: u128, debit: u128, credit: u128, amount: u64) -> domain::Transfer {
    domain::Transfer {
        id,
        debit_account_id: debit,
        credit_account_id: credit,
        amount,
        ledger: 1,
        code: 1,
        ..Default::default()
    }
}

pub async fn create_accounts(c: &mut Client, accounts: &[domain::Account]) -> Vec<(u32, i32)> {
    let req = pb::CreateAccountsRequest {
        accounts: accounts.iter().map(account_pb).collect(),
    };
    let r = c
        .create_accounts(req)
        .await
        .expect("create_accounts")
        .into_inner();
    r.errors.into_iter().map(|e| (e.index, e.result)).collect()
}

pub async fn create_transfers(
    c: &mut Client,
    transfers: &[domain::Transfer],
) -> Result<Vec<(u32, i32)>, tonic::Status> {
    let req = pb::CreateTransfersRequest {
        transfers: transfers.iter().map(transfer_pb).collect(),
    };
    let r = c.create_transfers(req).await?.into_inner();
    Ok(r.errors.into_iter().map(|e| (e.index, e.result)).collect())
}

/// Retries a request until the service answers (the service may be restarting); the ids make
/// the retry safe.
pub async fn create_transfers_retrying(url: &str, transfers: &[domain::Transfer]) -> Vec<(u32, i32)> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let attempt = async {
            let mut c = LedgerServiceClient::connect(url.to_string())
                .await
                .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
            create_transfers(&mut c, transfers).await
        };
        match tokio::time::timeout(Duration::from_secs(10), attempt).await {
            Ok(Ok(r)) => return r,
            Ok(Err(e)) if e.code() == tonic::Code::InvalidArgument => panic!("rejected: {e}"),
            _ if std::time::Instant::now() > deadline => panic!("no answer from {url} within 60 s"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

pub async fn lookup_accounts(c: &mut Client, ids: &[u128]) -> Vec<domain::Account> {
    let req = pb::LookupAccountsRequest {
        ids: ids.iter().map(|i| id(*i)).collect(),
    };
    let r = c
        .lookup_accounts(req)
        .await
        .expect("lookup_accounts")
        .into_inner();
    r.accounts
        .iter()
        .map(|a| domain::Account {
            id: uuid::Uuid::parse_str(&a.id).unwrap().as_u128(),
            ledger: a.ledger,
            code: a.code,
            debits_pending: a.debits_pending,
            debits_posted: a.debits_posted,
            credits_pending: a.credits_pending,
            credits_posted: a.credits_posted,
            timestamp: a.timestamp,
            ..Default::default()
        })
        .collect()
}

pub async fn lookup_transfers(c: &mut Client, ids: &[u128]) -> Vec<domain::Transfer> {
    let mut out = Vec::new();
    for chunk in ids.chunks(8000) {
        let req = pb::LookupTransfersRequest {
            ids: chunk.iter().map(|i| id(*i)).collect(),
        };
        let r = c
            .lookup_transfers(req)
            .await
            .expect("lookup_transfers")
            .into_inner();
        out.extend(r.transfers.iter().map(|t| {
            let mut d = convert::transfer_from_pb(&pb::Transfer {
                timestamp: 0,
                ..t.clone()
            });
            d.timestamp = t.timestamp;
            d
        }));
    }
    out
}

/// CheckInvariants must say ok; the message carries the violations.
pub async fn assert_invariants(c: &mut Client) -> pb::CheckInvariantsResponse {
    let r = c
        .check_invariants(pb::CheckInvariantsRequest { ledger: 0 })
        .await
        .expect("check_invariants")
        .into_inner();
    assert!(
        r.ok,
        "invariants violated: {} {:#?}",
        r.violation_count, r.violations
    );
    r
}
