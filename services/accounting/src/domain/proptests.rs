//! Random histories applied to the domain and to the naive model: same result codes, same
//! balances, and the ledger's invariants after every step.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::model::Model;

#[derive(Clone, Debug)]
pub enum Op {
    Accounts(Vec<Account>),
    Transfers(Vec<Transfer>),
    /// Let time pass (seconds), then expire what is due.
    Advance(u64),
}

fn account() -> impl Strategy<Value = Account> {
    (1u128..=6, 1u32..=2, 0u8..4, any::<bool>(), any::<bool>(), 0u32..2).prop_map(
        |(id, ledger, limit, history, linked, code)| Account {
            id,
            ledger,
            code: code + 1,
            flags: AccountFlags {
                linked,
                debits_must_not_exceed_credits: limit == 1 || limit == 3,
                credits_must_not_exceed_debits: limit == 2 || limit == 3,
                history,
                closed: false,
            },
            ..Default::default()
        },
    )
}

/// Ids from a small pool so that retries, conflicts and frozen failures happen often.
pub fn transfer() -> impl Strategy<Value = Transfer> {
    let kind = prop_oneof![4 => Just(0u8), 2 => Just(1), 2 => Just(2), 1 => Just(3), 1 => Just(4)];
    (
        kind,
        1u128..=40,
        0u128..=6,
        0u128..=6,
        0u64..=20,
        1u128..=40,
        prop::bool::weighted(0.25),
        0u32..=2,
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
                    1 => {
                        t.flags.pending = true;
                        t.timeout = timeout;
                    }
                    2 | 3 => {
                        // Post (amount 0 = full) or void, inheriting accounts, ledger and code.
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

pub fn history() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        2 => prop::collection::vec(account(), 1..4).prop_map(Op::Accounts),
        8 => prop::collection::vec(transfer(), 1..8).prop_map(Op::Transfers),
        1 => (0u64..=2).prop_map(Op::Advance),
    ];
    prop::collection::vec(op, 1..40)
}

fn check_invariants(state: &State, model: &Model) -> Result<(), TestCaseError> {
    let mut totals: BTreeMap<u32, [u128; 4]> = BTreeMap::new();
    for a in state.accounts.values() {
        let b = model.balances(a.id);
        prop_assert_eq!(a.balances(), b, "account {} balances differ from the model", a.id);
        let t = totals.entry(a.ledger).or_default();
        t[0] += u128::from(a.debits_pending);
        t[1] += u128::from(a.debits_posted);
        t[2] += u128::from(a.credits_pending);
        t[3] += u128::from(a.credits_posted);
        if a.flags.debits_must_not_exceed_credits {
            prop_assert!(
                a.debits_pending + a.debits_posted <= a.credits_posted,
                "{a:?} breaks its limit"
            );
        }
        if a.flags.credits_must_not_exceed_debits {
            prop_assert!(
                a.credits_pending + a.credits_posted <= a.debits_posted,
                "{a:?} breaks its limit"
            );
        }
    }
    for (ledger, t) in totals {
        prop_assert_eq!(t[0], t[2], "ledger {} pending unbalanced", ledger);
        prop_assert_eq!(t[1], t[3], "ledger {} posted unbalanced", ledger);
    }
    prop_assert_eq!(state.accounts.len(), model.accounts.len());
    prop_assert_eq!(state.transfers.len(), model.log.len());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn domain_matches_the_model(ops in history()) {
        let start = 1_000_000;
        let mut state = State::default();
        let mut model = Model::new(start);
        let mut now = start;
        for op in ops {
            let before = state.clone();
            let mut changes = Changes::default();
            match op {
                Op::Advance(secs) => {
                    now += secs * NANOS_PER_SECOND;
                    model.now = now;
                    expire_pending(&mut state, &mut changes, now);
                    model.expire();
                }
                Op::Accounts(events) => {
                    let mut clock = Clock::new(now, now + events.len() as u64);
                    let evs: Vec<AccountEvent> = events.iter().cloned().map(Into::into).collect();
                    let got = create_accounts(&mut state, &mut changes, &evs, &mut clock);
                    prop_assert_eq!(got, model.create_accounts(&events));
                    now = clock.peek();
                    prop_assert_eq!(now, model.now);
                }
                Op::Transfers(events) => {
                    expire_pending(&mut state, &mut changes, now);
                    model.expire();
                    let mut clock = Clock::new(now, now + events.len() as u64);
                    let evs: Vec<TransferEvent> = events.iter().cloned().map(Into::into).collect();
                    let got = create_transfers(&mut state, &mut changes, &evs, &mut clock);
                    prop_assert_eq!(got, model.create_transfers(&events), "events {:?}", events);
                    now = clock.peek();
                    prop_assert_eq!(now, model.now);
                }
            }
            // The store writes only what `changes` names: it must name everything that changed.
            for (id, a) in &state.accounts {
                match before.accounts.get(id) {
                    None => prop_assert!(changes.accounts_created.contains(id)),
                    Some(b) if b != a => prop_assert!(changes.accounts_touched.contains(id)),
                    Some(_) => {}
                }
            }
            for id in state.transfers.keys().filter(|id| !before.transfers.contains_key(id)) {
                prop_assert!(changes.transfers_created.contains(id));
            }
            prop_assert_eq!(changes.transfers_created.len(), state.transfers.len() - before.transfers.len());
            check_invariants(&state, &model)?;
        }
    }
}
