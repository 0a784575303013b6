//! Random histories (accounts; single, linked, pending, post and void transfers; retries of the
//! same ids) run against the real service and PostgreSQL and against the naive model: the same
//! result codes, the same balances and transfers, and CheckInvariants ok after every history.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};

use common::*;
use payplane_accounting::{
    domain::{Account, AccountFlags, Transfer},
    model::Model,
};
use proptest::{prelude::*, test_runner::TestRunner};

#[derive(Clone, Debug)]
enum Op {
    Accounts(Vec<Account>),
    Transfers(Vec<Transfer>),
}

fn account() -> impl Strategy<Value = Account> {
    (
        1u128..=6,
        1u32..=2,
        0u8..3,
        any::<bool>(),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(id, ledger, limit, history, linked)| Account {
            id,
            ledger,
            code: 1,
            flags: AccountFlags {
                linked,
                debits_must_not_exceed_credits: limit == 1,
                credits_must_not_exceed_debits: limit == 2,
                history,
                closed: false,
            },
            ..Default::default()
        })
}

fn transfer() -> impl Strategy<Value = Transfer> {
    let kind = prop_oneof![4 => Just(0u8), 2 => Just(1), 2 => Just(2), 1 => Just(3), 1 => Just(4)];
    (
        kind,
        1u128..=30,
        0u128..=6,
        0u128..=6,
        0u64..=20,
        1u128..=30,
        prop::bool::weighted(0.25),
        prop::bool::ANY,
        1u32..=2,
    )
        .prop_map(
            |(kind, id, dr, cr, amount, pending_id, linked, timeout, ledger)| {
                let mut t = Transfer {
                    id,
                    debit_account_id: dr,
                    credit_account_id: cr,
                    amount,
                    ledger,
                    code: 1,
                    ..Default::default()
                };
                t.flags.linked = linked;
                match kind {
                    // Timeouts far beyond the test, so the model needs no clock of the service.
                    1 => {
                        t.flags.pending = true;
                        t.timeout = if timeout { 3600 } else { 0 };
                    }
                    2 | 3 => {
                        t.flags.post_pending_transfer = kind == 2;
                        t.flags.void_pending_transfer = kind == 3;
                        t.pending_id = pending_id;
                        t.debit_account_id = 0;
                        t.credit_account_id = 0;
                        t.ledger = 0;
                        t.code = 0;
                        if kind == 3 || amount > 12 {
                            t.amount = 0;
                        }
                    }
                    4 => t.flags.balancing_debit = true,
                    _ => {}
                }
                t
            },
        )
}

fn history() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        1 => prop::collection::vec(account(), 1..4).prop_map(Op::Accounts),
        5 => prop::collection::vec(transfer(), 1..8).prop_map(Op::Transfers),
    ];
    // Accounts first, so that most transfers find them.
    (
        prop::collection::vec(account(), 4..7),
        prop::collection::vec(op, 1..25),
    )
        .prop_map(|(first, mut rest)| {
            rest.insert(0, Op::Accounts(first));
            rest
        })
}

/// Every case gets its own id space (high 64 bits), so cases share one database and service.
static CASE: AtomicU64 = AtomicU64::new(1);

fn scoped(ops: Vec<Op>, prefix: u128) -> Vec<Op> {
    let s = |id: u128| if id == 0 { 0 } else { prefix << 64 | id };
    ops.into_iter()
        .map(|op| match op {
            Op::Accounts(a) => Op::Accounts(
                a.into_iter()
                    .map(|mut a| {
                        a.id = s(a.id);
                        a
                    })
                    .collect(),
            ),
            Op::Transfers(t) => Op::Transfers(
                t.into_iter()
                    .map(|mut t| {
                        t.id = s(t.id);
                        t.debit_account_id = s(t.debit_account_id);
                        t.credit_account_id = s(t.credit_account_id);
                        t.pending_id = s(t.pending_id);
                        t
                    })
                    .collect(),
            ),
        })
        .collect()
}

#[test]
fn service_matches_the_model_on_random_histories() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(database("acct_props"));
    let service = rt.block_on(start(&db, &[]));
    let mut c = rt.block_on(client(&service));
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(48);
    let mut runner = TestRunner::new(ProptestConfig {
        cases,
        ..ProptestConfig::default()
    });
    runner
        .run(&history(), |ops| {
            let prefix =
                u128::from(CASE.fetch_add(1, Ordering::Relaxed)) + (u128::from(std::process::id()) << 32);
            let ops = scoped(ops, prefix);
            let mut c = c.clone();
            rt.block_on(async {
                let mut model = Model::new(1);
                let mut accounts = std::collections::BTreeSet::new();
                let mut transfer_ids = std::collections::BTreeSet::new();
                for op in &ops {
                    match op {
                        Op::Accounts(a) => {
                            let got = create_accounts(&mut c, a).await;
                            let want: Vec<(u32, i32)> = model
                                .create_accounts(a)
                                .into_iter()
                                .map(|(i, r)| (i, r as i32))
                                .collect();
                            prop_assert_eq!(got, want, "accounts {:?}", a);
                            accounts.extend(a.iter().map(|a| a.id));
                        }
                        Op::Transfers(t) => {
                            let got = create_transfers(&mut c, t).await.expect("create_transfers");
                            let want: Vec<(u32, i32)> = model
                                .create_transfers(t)
                                .into_iter()
                                .map(|(i, r)| (i, r as i32))
                                .collect();
                            prop_assert_eq!(got, want, "transfers {:?}", t);
                            transfer_ids.extend(t.iter().map(|t| t.id));
                        }
                    }
                }
                let ids: Vec<u128> = accounts.into_iter().collect();
                let found = lookup_accounts(&mut c, &ids).await;
                prop_assert_eq!(found.len(), model.accounts.len());
                for a in &found {
                    let b = model.balances(a.id);
                    prop_assert_eq!(
                        (
                            a.debits_pending,
                            a.debits_posted,
                            a.credits_pending,
                            a.credits_posted
                        ),
                        (
                            b.debits_pending,
                            b.debits_posted,
                            b.credits_pending,
                            b.credits_posted
                        ),
                        "account {:x}",
                        a.id
                    );
                }
                let ids: Vec<u128> = transfer_ids.into_iter().collect();
                let mut stored = lookup_transfers(&mut c, &ids).await;
                stored.sort_by_key(|t| t.timestamp);
                let mut expected = model.log.clone();
                for t in stored.iter_mut().chain(expected.iter_mut()) {
                    t.timestamp = 0;
                }
                prop_assert_eq!(stored, expected, "stored transfers, in ledger order");
                Ok(())
            })
        })
        .unwrap();
    rt.block_on(assert_invariants(&mut c));
}
