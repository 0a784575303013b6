//! A deliberately naive reference model of the ledger, the oracle of the property tests (never
//! used by the service). It shares only the data types with [`crate::domain`]: balances are
//! recomputed from the full transfer log on every read, and a linked chain is rolled back by
//! restoring a clone of the whole model. Slow and obviously right is the point.

use std::collections::{BTreeMap, HashMap};

use crate::domain::{
    Account, BALANCE_MAX, Balances, CreateAccountResult as AR, CreateTransferResult as R, ID_INT_MAX, Id,
    NANOS_PER_SECOND, PendingState, Transfer,
};

#[derive(Clone, Debug, Default)]
pub struct Model {
    pub accounts: BTreeMap<Id, Account>,
    /// Every created transfer, in order.
    pub log: Vec<Transfer>,
    pub status: HashMap<Id, PendingState>,
    pub failed: HashMap<Id, R>,
    /// The timestamp the next created event gets.
    pub now: u64,
}

impl Model {
    pub fn new(now: u64) -> Self {
        Self {
            now,
            ..Default::default()
        }
    }

    pub fn transfer(&self, id: Id) -> Option<&Transfer> {
        self.log.iter().find(|t| t.id == id)
    }

    /// Balances recomputed from the log: posted = plain and post transfers; pending = pending
    /// transfers still pending.
    pub fn balances(&self, account: Id) -> Balances {
        let mut b = Balances::default();
        for t in &self.log {
            let (posted, pending) = if t.flags.pending {
                (
                    0,
                    if self.status.get(&t.id) == Some(&PendingState::Pending) {
                        t.amount
                    } else {
                        0
                    },
                )
            } else if t.flags.void_pending_transfer {
                (0, 0)
            } else {
                (t.amount, 0)
            };
            if t.debit_account_id == account {
                b.debits_posted += posted;
                b.debits_pending += pending;
            }
            if t.credit_account_id == account {
                b.credits_posted += posted;
                b.credits_pending += pending;
            }
        }
        b
    }

    pub fn create_accounts(&mut self, events: &[Account]) -> Vec<(u32, AR)> {
        let mut results = Vec::new();
        let mut i = 0;
        while i < events.len() {
            // A chain: from i through the first event without `linked`.
            let end = (i..events.len())
                .find(|&j| !events[j].flags.linked)
                .unwrap_or(events.len() - 1);
            let saved = self.clone();
            let mut chain_results = Vec::new();
            let mut failed_at = None;
            for j in i..=end {
                let r = if events[j].flags.linked && j + 1 == events.len() {
                    Some(AR::LinkedEventChainOpen)
                } else {
                    self.create_account(&events[j])
                };
                match r {
                    Some(AR::Exists) => chain_results.push((j as u32, AR::Exists)),
                    Some(code) => {
                        failed_at = Some((j, code));
                        break;
                    }
                    None => {}
                }
            }
            if let Some((j, code)) = failed_at {
                let created_before: Vec<Id> = self
                    .accounts
                    .keys()
                    .filter(|id| !saved.accounts.contains_key(id))
                    .copied()
                    .collect();
                // Timestamps handed out to rolled-back events stay used (gaps are fine).
                let now = self.now;
                *self = saved;
                self.now = now;
                for (k, event) in events.iter().enumerate().take(j).skip(i) {
                    if created_before.contains(&event.id) {
                        results.push((k as u32, AR::LinkedEventFailed));
                    } else if chain_results.iter().any(|(x, _)| *x == k as u32) {
                        results.push((k as u32, AR::Exists));
                    }
                }
                results.push((j as u32, code));
                for k in j + 1..=end {
                    results.push((k as u32, AR::LinkedEventFailed));
                }
            } else {
                results.extend(chain_results);
            }
            i = end + 1;
        }
        results
    }

    fn create_account(&mut self, a: &Account) -> Option<AR> {
        if a.timestamp != 0 {
            return Some(AR::TimestampMustBeZero);
        }
        if a.id == 0 {
            return Some(AR::IdMustNotBeZero);
        }
        if a.id == ID_INT_MAX {
            return Some(AR::IdMustNotBeIntMax);
        }
        if let Some(e) = self.accounts.get(&a.id) {
            let checks = [
                (a.flags != e.flags, AR::ExistsWithDifferentFlags),
                (
                    a.user_data_128 != e.user_data_128,
                    AR::ExistsWithDifferentUserData128,
                ),
                (
                    a.user_data_64 != e.user_data_64,
                    AR::ExistsWithDifferentUserData64,
                ),
                (
                    a.user_data_32 != e.user_data_32,
                    AR::ExistsWithDifferentUserData32,
                ),
                (a.ledger != e.ledger, AR::ExistsWithDifferentLedger),
                (a.code != e.code, AR::ExistsWithDifferentCode),
            ];
            return Some(checks.iter().find(|c| c.0).map(|c| c.1).unwrap_or(AR::Exists));
        }
        let checks = [
            (
                a.flags.debits_must_not_exceed_credits && a.flags.credits_must_not_exceed_debits,
                AR::FlagsAreMutuallyExclusive,
            ),
            (a.debits_pending != 0, AR::DebitsPendingMustBeZero),
            (a.debits_posted != 0, AR::DebitsPostedMustBeZero),
            (a.credits_pending != 0, AR::CreditsPendingMustBeZero),
            (a.credits_posted != 0, AR::CreditsPostedMustBeZero),
            (a.ledger == 0, AR::LedgerMustNotBeZero),
            (a.code == 0, AR::CodeMustNotBeZero),
            (a.code > 65535, AR::CodeMustFit16Bits),
        ];
        if let Some(c) = checks.iter().find(|c| c.0) {
            return Some(c.1);
        }
        let mut a = a.clone();
        a.timestamp = self.tick();
        self.accounts.insert(a.id, a);
        None
    }

    fn tick(&mut self) -> u64 {
        let t = self.now;
        self.now += 1;
        t
    }

    /// Pending transfers past their timeout at `self.now` become expired.
    pub fn expire(&mut self) {
        let now = self.now;
        let due: Vec<Id> = self
            .log
            .iter()
            .filter(|t| {
                self.status.get(&t.id) == Some(&PendingState::Pending)
                    && t.timeout > 0
                    && t.timestamp + u64::from(t.timeout) * NANOS_PER_SECOND <= now
            })
            .map(|t| t.id)
            .collect();
        for id in due {
            self.status.insert(id, PendingState::Expired);
        }
    }

    pub fn create_transfers(&mut self, events: &[Transfer]) -> Vec<(u32, R)> {
        let mut results = Vec::new();
        let mut i = 0;
        while i < events.len() {
            let end = (i..events.len())
                .find(|&j| !events[j].flags.linked)
                .unwrap_or(events.len() - 1);
            let saved = self.clone();
            let mut exists = Vec::new();
            let mut failed_at = None;
            for j in i..=end {
                let r = if events[j].flags.linked && j + 1 == events.len() {
                    Some(R::LinkedEventChainOpen)
                } else {
                    self.create_transfer(&events[j])
                };
                match r {
                    Some(R::Exists) => exists.push(j),
                    Some(code) => {
                        failed_at = Some((j, code));
                        break;
                    }
                    None => {}
                }
            }
            match failed_at {
                Some((j, code)) => {
                    let now = self.now;
                    *self = saved;
                    self.now = now;
                    for k in i..j {
                        results.push((
                            k as u32,
                            if exists.contains(&k) {
                                R::Exists
                            } else {
                                R::LinkedEventFailed
                            },
                        ));
                    }
                    let id = events[j].id;
                    let transient = (code as i32) >= (R::DebitAccountNotFound as i32);
                    if transient && !self.failed.contains_key(&id) {
                        self.failed.insert(id, code);
                    }
                    results.push((j as u32, code));
                    for k in j + 1..=end {
                        results.push((k as u32, R::LinkedEventFailed));
                    }
                }
                None => results.extend(exists.into_iter().map(|k| (k as u32, R::Exists))),
            }
            i = end + 1;
        }
        results
    }

    fn create_transfer(&mut self, t: &Transfer) -> Option<R> {
        let f = t.flags;
        let resolves = f.post_pending_transfer || f.void_pending_transfer;
        if t.timestamp != 0 {
            return Some(R::TimestampMustBeZero);
        }
        if t.id == 0 {
            return Some(R::IdMustNotBeZero);
        }
        if t.id == ID_INT_MAX {
            return Some(R::IdMustNotBeIntMax);
        }
        if let Some(e) = self.transfer(t.id) {
            let given = |g: u128, s: u128| g != s && !(resolves && g == 0);
            let amount_differs = if f.balancing_debit || f.balancing_credit {
                t.amount < e.amount
            } else {
                given(t.amount.into(), e.amount.into())
            };
            let checks = [
                (t.flags != e.flags, R::ExistsWithDifferentFlags),
                (t.pending_id != e.pending_id, R::ExistsWithDifferentPendingId),
                (t.timeout != e.timeout, R::ExistsWithDifferentTimeout),
                (
                    given(t.debit_account_id, e.debit_account_id),
                    R::ExistsWithDifferentDebitAccountId,
                ),
                (
                    given(t.credit_account_id, e.credit_account_id),
                    R::ExistsWithDifferentCreditAccountId,
                ),
                (amount_differs, R::ExistsWithDifferentAmount),
                (
                    given(t.user_data_128, e.user_data_128),
                    R::ExistsWithDifferentUserData128,
                ),
                (
                    given(t.user_data_64.into(), e.user_data_64.into()),
                    R::ExistsWithDifferentUserData64,
                ),
                (
                    given(t.user_data_32.into(), e.user_data_32.into()),
                    R::ExistsWithDifferentUserData32,
                ),
                (
                    given(t.ledger.into(), e.ledger.into()),
                    R::ExistsWithDifferentLedger,
                ),
                (given(t.code.into(), e.code.into()), R::ExistsWithDifferentCode),
            ];
            return Some(checks.iter().find(|c| c.0).map(|c| c.1).unwrap_or(R::Exists));
        }
        if self.failed.contains_key(&t.id) {
            return Some(R::IdAlreadyFailed);
        }
        let kinds = [f.pending, f.post_pending_transfer, f.void_pending_transfer]
            .iter()
            .filter(|b| **b)
            .count();
        let checks = [
            (
                kinds > 1 || ((f.balancing_debit || f.balancing_credit) && resolves),
                R::FlagsAreMutuallyExclusive,
            ),
            (
                !resolves && t.debit_account_id == 0,
                R::DebitAccountIdMustNotBeZero,
            ),
            (
                !resolves && t.credit_account_id == 0,
                R::CreditAccountIdMustNotBeZero,
            ),
            (
                t.debit_account_id != 0 && t.debit_account_id == t.credit_account_id,
                R::AccountsMustBeDifferent,
            ),
            (!resolves && t.pending_id != 0, R::PendingIdMustBeZero),
            (
                resolves && (t.pending_id == 0 || t.pending_id == ID_INT_MAX),
                R::PendingIdMustNotBeZero,
            ),
            (resolves && t.pending_id == t.id, R::PendingIdMustBeDifferent),
            (!f.pending && t.timeout != 0, R::TimeoutReservedForPendingTransfer),
            (!resolves && t.amount == 0, R::AmountMustNotBeZero),
            (!resolves && t.ledger == 0, R::LedgerMustNotBeZero),
            (!resolves && t.code == 0, R::CodeMustNotBeZero),
            (t.code > 65535, R::CodeMustFit16Bits),
        ];
        if let Some(c) = checks.iter().find(|c| c.0) {
            return Some(c.1);
        }
        let max = u128::from(BALANCE_MAX);
        let sum = |xs: &[u64]| xs.iter().map(|x| u128::from(*x)).sum::<u128>();
        if resolves {
            let Some(p) = self.transfer(t.pending_id).cloned() else {
                return Some(R::PendingTransferNotFound);
            };
            let post = f.post_pending_transfer;
            let status = self.status.get(&p.id).copied();
            let expired = p.timeout > 0 && p.timestamp + u64::from(p.timeout) * NANOS_PER_SECOND <= self.now;
            let checks = [
                (!p.flags.pending, R::PendingTransferNotPending),
                (
                    t.debit_account_id != 0 && t.debit_account_id != p.debit_account_id,
                    R::PendingTransferHasDifferentDebitAccountId,
                ),
                (
                    t.credit_account_id != 0 && t.credit_account_id != p.credit_account_id,
                    R::PendingTransferHasDifferentCreditAccountId,
                ),
                (
                    t.ledger != 0 && t.ledger != p.ledger,
                    R::PendingTransferHasDifferentLedger,
                ),
                (
                    t.code != 0 && t.code != p.code,
                    R::PendingTransferHasDifferentCode,
                ),
                (post && t.amount > p.amount, R::ExceedsPendingTransferAmount),
                (
                    !post && t.amount != 0 && t.amount != p.amount,
                    R::PendingTransferHasDifferentAmount,
                ),
                (
                    status == Some(PendingState::Posted),
                    R::PendingTransferAlreadyPosted,
                ),
                (
                    status == Some(PendingState::Voided),
                    R::PendingTransferAlreadyVoided,
                ),
                (
                    status == Some(PendingState::Expired) || expired,
                    R::PendingTransferExpired,
                ),
            ];
            if let Some(c) = checks.iter().find(|c| c.0) {
                return Some(c.1);
            }
            let amount = if !post || t.amount == 0 {
                p.amount
            } else {
                t.amount
            };
            let dr = self.balances(p.debit_account_id);
            let cr = self.balances(p.credit_account_id);
            let (dra, cra) = (
                &self.accounts[&p.debit_account_id],
                &self.accounts[&p.credit_account_id],
            );
            let checks = [
                (
                    post && sum(&[dr.debits_posted, amount]) > max,
                    R::OverflowsDebitsPosted,
                ),
                (
                    post && sum(&[cr.credits_posted, amount]) > max,
                    R::OverflowsCreditsPosted,
                ),
                (post && dra.flags.closed, R::DebitAccountAlreadyClosed),
                (post && cra.flags.closed, R::CreditAccountAlreadyClosed),
            ];
            if let Some(c) = checks.iter().find(|c| c.0) {
                return Some(c.1);
            }
            let mut stored = t.clone();
            stored.debit_account_id = p.debit_account_id;
            stored.credit_account_id = p.credit_account_id;
            stored.ledger = p.ledger;
            stored.code = p.code;
            stored.amount = amount;
            if stored.user_data_128 == 0 {
                stored.user_data_128 = p.user_data_128;
            }
            if stored.user_data_64 == 0 {
                stored.user_data_64 = p.user_data_64;
            }
            if stored.user_data_32 == 0 {
                stored.user_data_32 = p.user_data_32;
            }
            stored.timestamp = self.tick();
            self.status.insert(
                p.id,
                if post {
                    PendingState::Posted
                } else {
                    PendingState::Voided
                },
            );
            self.log.push(stored);
            return None;
        }
        let Some(dra) = self.accounts.get(&t.debit_account_id) else {
            return Some(R::DebitAccountNotFound);
        };
        let Some(cra) = self.accounts.get(&t.credit_account_id) else {
            return Some(R::CreditAccountNotFound);
        };
        let (dr, cr) = (self.balances(dra.id), self.balances(cra.id));
        let mut amount = t.amount;
        if f.balancing_debit {
            amount = amount.min(
                dr.credits_posted
                    .saturating_sub(dr.debits_pending + dr.debits_posted),
            );
        }
        if f.balancing_credit {
            amount = amount.min(
                cr.debits_posted
                    .saturating_sub(cr.credits_pending + cr.credits_posted),
            );
        }
        let checks = [
            (dra.ledger != cra.ledger, R::AccountsMustHaveTheSameLedger),
            (t.ledger != dra.ledger, R::TransferMustHaveTheSameLedgerAsAccounts),
            (
                f.pending && sum(&[dr.debits_pending, amount]) > max,
                R::OverflowsDebitsPending,
            ),
            (
                f.pending && sum(&[cr.credits_pending, amount]) > max,
                R::OverflowsCreditsPending,
            ),
            (
                !f.pending && sum(&[dr.debits_posted, amount]) > max,
                R::OverflowsDebitsPosted,
            ),
            (
                !f.pending && sum(&[cr.credits_posted, amount]) > max,
                R::OverflowsCreditsPosted,
            ),
            (
                sum(&[dr.debits_pending, dr.debits_posted, amount]) > max,
                R::OverflowsDebits,
            ),
            (
                sum(&[cr.credits_pending, cr.credits_posted, amount]) > max,
                R::OverflowsCredits,
            ),
            (
                f.pending
                    && u128::from(self.now) + u128::from(t.timeout) * u128::from(NANOS_PER_SECOND)
                        > u128::from(u64::MAX),
                R::OverflowsTimeout,
            ),
            (
                dra.flags.debits_must_not_exceed_credits
                    && sum(&[dr.debits_pending, dr.debits_posted, amount]) > u128::from(dr.credits_posted),
                R::ExceedsCredits,
            ),
            (
                cra.flags.credits_must_not_exceed_debits
                    && sum(&[cr.credits_pending, cr.credits_posted, amount]) > u128::from(cr.debits_posted),
                R::ExceedsDebits,
            ),
            (dra.flags.closed, R::DebitAccountAlreadyClosed),
            (cra.flags.closed, R::CreditAccountAlreadyClosed),
        ];
        if let Some(c) = checks.iter().find(|c| c.0) {
            return Some(c.1);
        }
        let mut stored = t.clone();
        stored.amount = amount;
        stored.timestamp = self.tick();
        if f.pending {
            self.status.insert(stored.id, PendingState::Pending);
        }
        self.log.push(stored);
        None
    }
}
