use super::{
    Account, BALANCE_MAX, Changes, Clock, CreateTransferResult as R, HistoryEntry, ID_INT_MAX, Id,
    NANOS_PER_SECOND, PendingInfo, PendingState, State, Transfer, TransferEvent,
    state::{Journal, Mark},
};

/// Failures that depend on the ledger's state rather than on the event alone. They are frozen
/// under the event's id (`id_already_failed` on any retry), so a retry can never turn a failure
/// into a success later, e.g. after the account was funded.
pub fn is_transient(result: R) -> bool {
    (result as i32) >= (R::DebitAccountNotFound as i32)
}

/// Applies transfer events of one request in order, with linked chains all-or-nothing.
/// Returns `(index, result)` for every event that was not created (`exists` included).
pub fn create_transfers(
    state: &mut State,
    changes: &mut Changes,
    events: &[TransferEvent],
    clock: &mut Clock,
) -> Vec<(u32, R)> {
    let mut results = Vec::new();
    let mut journal = Journal::new();
    let mut chain: Option<Mark> = None;
    let mut chain_broken = false;
    for (i, event) in events.iter().enumerate() {
        let linked = event.transfer.flags.linked;
        if chain.is_none() && linked {
            journal.undo.clear();
            chain = Some(journal.mark(changes, i));
        }
        let outcome = if chain_broken {
            Err(R::LinkedEventFailed)
        } else if linked && i + 1 == events.len() {
            Err(R::LinkedEventChainOpen)
        } else {
            create_one(state, changes, event, clock, &mut journal)
        };
        match outcome {
            Ok(None) => {}
            Ok(Some(exists)) => results.push((i as u32, exists)),
            Err(code) => {
                if let (Some(mark), false) = (chain, chain_broken) {
                    let created: Vec<Id> = changes.transfers_created[mark.transfers_created..].to_vec();
                    journal.rollback(state, changes, mark);
                    // Events of the chain created so far are undone; those that already existed
                    // before this request keep their `exists`.
                    for (j, e) in events.iter().enumerate().take(i).skip(mark.start_index) {
                        // An event that already answered `exists` keeps that one answer.
                        if created.contains(&e.transfer.id) && !results.iter().any(|(k, _)| *k == j as u32) {
                            results.push((j as u32, R::LinkedEventFailed));
                        }
                    }
                    chain_broken = true;
                }
                let id = event.transfer.id;
                if is_transient(code) && !event.malformed.id && !state.failed.contains_key(&id) {
                    state.failed.insert(id, code);
                    changes.failed.push((id, code));
                }
                results.push((i as u32, code));
            }
        }
        if chain.is_some() && !linked {
            chain = None;
            chain_broken = false;
        }
    }
    results.sort_by_key(|(i, _)| *i);
    results
}

/// Voids every pending transfer in `state` whose timeout is at or before `now`, releasing its
/// amounts. Returns how many expired.
pub fn expire_pending(state: &mut State, changes: &mut Changes, now: u64) -> usize {
    let mut due: Vec<(u64, Id)> = state
        .pending
        .iter()
        .filter(|(_, p)| p.state == PendingState::Pending && p.expires_at.is_some_and(|e| e <= now))
        .map(|(id, p)| (p.expires_at.unwrap_or_default(), *id))
        .collect();
    due.sort_unstable();
    for (_, id) in &due {
        let Some(t) = state.transfers.get(id).cloned() else {
            continue;
        };
        if let Some(dr) = state.accounts.get_mut(&t.debit_account_id) {
            dr.debits_pending -= t.amount;
        }
        if let Some(cr) = state.accounts.get_mut(&t.credit_account_id) {
            cr.credits_pending -= t.amount;
        }
        changes.accounts_touched.insert(t.debit_account_id);
        changes.accounts_touched.insert(t.credit_account_id);
        if let Some(p) = state.pending.get_mut(id) {
            p.state = PendingState::Expired;
        }
        changes.pending_resolved.push((*id, PendingState::Expired));
    }
    due.len()
}

fn exists_result(event: &Transfer, e: &Transfer) -> R {
    let resolves = event.flags.resolves();
    // On post/void, zero fields mean "inherit from the pending transfer", so they match.
    let differs = |given: u128, stored: u128| given != stored && !(resolves && given == 0);
    if event.flags != e.flags {
        R::ExistsWithDifferentFlags
    } else if event.pending_id != e.pending_id {
        R::ExistsWithDifferentPendingId
    } else if event.timeout != e.timeout {
        R::ExistsWithDifferentTimeout
    } else if differs(event.debit_account_id, e.debit_account_id) {
        R::ExistsWithDifferentDebitAccountId
    } else if differs(event.credit_account_id, e.credit_account_id) {
        R::ExistsWithDifferentCreditAccountId
    } else if if event.flags.balancing_debit || event.flags.balancing_credit {
        // A balancing transfer stores the amount it moved, at most the one asked for.
        event.amount < e.amount
    } else {
        differs(u128::from(event.amount), u128::from(e.amount))
    } {
        R::ExistsWithDifferentAmount
    } else if differs(event.user_data_128, e.user_data_128) {
        R::ExistsWithDifferentUserData128
    } else if differs(u128::from(event.user_data_64), u128::from(e.user_data_64)) {
        R::ExistsWithDifferentUserData64
    } else if differs(u128::from(event.user_data_32), u128::from(e.user_data_32)) {
        R::ExistsWithDifferentUserData32
    } else if differs(u128::from(event.ledger), u128::from(e.ledger)) {
        R::ExistsWithDifferentLedger
    } else if differs(u128::from(event.code), u128::from(e.code)) {
        R::ExistsWithDifferentCode
    } else {
        R::Exists
    }
}

fn over(a: u64, b: u64, amount: u64) -> bool {
    u128::from(a) + u128::from(b) + u128::from(amount) > u128::from(BALANCE_MAX)
}

/// `Ok(None)` created, `Ok(Some(Exists))` same id and body seen before, `Err` otherwise.
fn create_one(
    state: &mut State,
    changes: &mut Changes,
    event: &TransferEvent,
    clock: &mut Clock,
    journal: &mut Journal,
) -> Result<Option<R>, R> {
    let t = &event.transfer;
    let f = t.flags;
    if t.timestamp != 0 {
        return Err(R::TimestampMustBeZero);
    }
    if event.malformed.id {
        return Err(R::IdMalformed);
    }
    if t.id == 0 {
        return Err(R::IdMustNotBeZero);
    }
    if t.id == ID_INT_MAX {
        return Err(R::IdMustNotBeIntMax);
    }
    if let Some(e) = state.transfers.get(&t.id) {
        return match exists_result(t, e) {
            R::Exists => Ok(Some(R::Exists)),
            different => Err(different),
        };
    }
    if state.failed.contains_key(&t.id) {
        return Err(R::IdAlreadyFailed);
    }
    let kinds = u8::from(f.pending) + u8::from(f.post_pending_transfer) + u8::from(f.void_pending_transfer);
    if kinds > 1 || ((f.balancing_debit || f.balancing_credit) && f.resolves()) {
        return Err(R::FlagsAreMutuallyExclusive);
    }
    let resolves = f.resolves();
    if event.malformed.debit_account_id {
        return Err(R::DebitAccountIdMalformed);
    }
    if !resolves && t.debit_account_id == 0 {
        return Err(R::DebitAccountIdMustNotBeZero);
    }
    if event.malformed.credit_account_id {
        return Err(R::CreditAccountIdMalformed);
    }
    if !resolves && t.credit_account_id == 0 {
        return Err(R::CreditAccountIdMustNotBeZero);
    }
    if t.debit_account_id != 0 && t.debit_account_id == t.credit_account_id {
        return Err(R::AccountsMustBeDifferent);
    }
    if !resolves && event.pending_id_given {
        return Err(R::PendingIdMustBeZero);
    }
    if resolves {
        if !event.pending_id_given {
            return Err(R::PendingIdMustNotBeZero);
        }
        if event.malformed.pending_id {
            return Err(R::PendingIdMalformed);
        }
        if t.pending_id == 0 || t.pending_id == ID_INT_MAX {
            return Err(R::PendingIdMustNotBeZero);
        }
        if t.pending_id == t.id {
            return Err(R::PendingIdMustBeDifferent);
        }
    }
    if !f.pending && t.timeout != 0 {
        return Err(R::TimeoutReservedForPendingTransfer);
    }
    if !resolves && t.amount == 0 {
        return Err(R::AmountMustNotBeZero);
    }
    if !resolves && t.ledger == 0 {
        return Err(R::LedgerMustNotBeZero);
    }
    if !resolves && t.code == 0 {
        return Err(R::CodeMustNotBeZero);
    }
    if t.code > u32::from(u16::MAX) {
        return Err(R::CodeMustFit16Bits);
    }
    if resolves {
        return resolve(state, changes, t, clock, journal);
    }

    let dr = state
        .accounts
        .get(&t.debit_account_id)
        .ok_or(R::DebitAccountNotFound)?;
    let cr = state
        .accounts
        .get(&t.credit_account_id)
        .ok_or(R::CreditAccountNotFound)?;
    if dr.ledger != cr.ledger {
        return Err(R::AccountsMustHaveTheSameLedger);
    }
    if t.ledger != dr.ledger {
        return Err(R::TransferMustHaveTheSameLedgerAsAccounts);
    }
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
    if f.pending {
        if over(dr.debits_pending, 0, amount) {
            return Err(R::OverflowsDebitsPending);
        }
        if over(cr.credits_pending, 0, amount) {
            return Err(R::OverflowsCreditsPending);
        }
    } else {
        if over(dr.debits_posted, 0, amount) {
            return Err(R::OverflowsDebitsPosted);
        }
        if over(cr.credits_posted, 0, amount) {
            return Err(R::OverflowsCreditsPosted);
        }
    }
    if over(dr.debits_pending, dr.debits_posted, amount) {
        return Err(R::OverflowsDebits);
    }
    if over(cr.credits_pending, cr.credits_posted, amount) {
        return Err(R::OverflowsCredits);
    }
    if f.pending
        && t.timeout > 0
        && clock
            .peek()
            .checked_add(u64::from(t.timeout) * NANOS_PER_SECOND)
            .is_none()
    {
        return Err(R::OverflowsTimeout);
    }
    if dr.flags.debits_must_not_exceed_credits
        && u128::from(dr.debits_pending) + u128::from(dr.debits_posted) + u128::from(amount)
            > u128::from(dr.credits_posted)
    {
        return Err(R::ExceedsCredits);
    }
    if cr.flags.credits_must_not_exceed_debits
        && u128::from(cr.credits_pending) + u128::from(cr.credits_posted) + u128::from(amount)
            > u128::from(cr.debits_posted)
    {
        return Err(R::ExceedsDebits);
    }
    if dr.flags.closed {
        return Err(R::DebitAccountAlreadyClosed);
    }
    if cr.flags.closed {
        return Err(R::CreditAccountAlreadyClosed);
    }

    let mut stored = t.clone();
    stored.amount = amount;
    stored.timestamp = clock.tick();
    let pending = f.pending;
    apply_to_accounts(state, changes, journal, &stored, |dr, cr| {
        if pending {
            dr.debits_pending += amount;
            cr.credits_pending += amount;
        } else {
            dr.debits_posted += amount;
            cr.credits_posted += amount;
        }
    });
    if pending {
        journal.save_pending(state, stored.id);
        state.pending.insert(
            stored.id,
            PendingInfo {
                state: PendingState::Pending,
                expires_at: stored.expires_at(),
            },
        );
    }
    insert_transfer(state, changes, journal, stored);
    Ok(None)
}

/// Posts or voids a pending transfer (event already validated on its own).
fn resolve(
    state: &mut State,
    changes: &mut Changes,
    t: &Transfer,
    clock: &mut Clock,
    journal: &mut Journal,
) -> Result<Option<R>, R> {
    let p = state
        .transfers
        .get(&t.pending_id)
        .ok_or(R::PendingTransferNotFound)?;
    if !p.flags.pending {
        return Err(R::PendingTransferNotPending);
    }
    if t.debit_account_id != 0 && t.debit_account_id != p.debit_account_id {
        return Err(R::PendingTransferHasDifferentDebitAccountId);
    }
    if t.credit_account_id != 0 && t.credit_account_id != p.credit_account_id {
        return Err(R::PendingTransferHasDifferentCreditAccountId);
    }
    if t.ledger != 0 && t.ledger != p.ledger {
        return Err(R::PendingTransferHasDifferentLedger);
    }
    if t.code != 0 && t.code != p.code {
        return Err(R::PendingTransferHasDifferentCode);
    }
    let post = t.flags.post_pending_transfer;
    let amount = if post {
        if t.amount > p.amount {
            return Err(R::ExceedsPendingTransferAmount);
        }
        if t.amount == 0 { p.amount } else { t.amount }
    } else {
        if t.amount != 0 && t.amount != p.amount {
            return Err(R::PendingTransferHasDifferentAmount);
        }
        p.amount
    };
    let info = state
        .pending
        .get(&p.id)
        .copied()
        .ok_or(R::PendingTransferNotFound)?;
    match info.state {
        PendingState::Posted => return Err(R::PendingTransferAlreadyPosted),
        PendingState::Voided => return Err(R::PendingTransferAlreadyVoided),
        PendingState::Expired => return Err(R::PendingTransferExpired),
        PendingState::Pending if info.expires_at.is_some_and(|e| e <= clock.peek()) => {
            return Err(R::PendingTransferExpired);
        }
        PendingState::Pending => {}
    }
    let dr = state
        .accounts
        .get(&p.debit_account_id)
        .ok_or(R::DebitAccountNotFound)?;
    let cr = state
        .accounts
        .get(&p.credit_account_id)
        .ok_or(R::CreditAccountNotFound)?;
    if post {
        if over(dr.debits_posted, 0, amount) {
            return Err(R::OverflowsDebitsPosted);
        }
        if over(cr.credits_posted, 0, amount) {
            return Err(R::OverflowsCreditsPosted);
        }
        if dr.flags.closed {
            return Err(R::DebitAccountAlreadyClosed);
        }
        if cr.flags.closed {
            return Err(R::CreditAccountAlreadyClosed);
        }
    }
    let held = p.amount;
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
    stored.timestamp = clock.tick();
    let pending_id = p.id;
    apply_to_accounts(state, changes, journal, &stored, |dr, cr| {
        dr.debits_pending -= held;
        cr.credits_pending -= held;
        if post {
            dr.debits_posted += amount;
            cr.credits_posted += amount;
        }
    });
    journal.save_pending(state, pending_id);
    let resolved = if post {
        PendingState::Posted
    } else {
        PendingState::Voided
    };
    state.pending.insert(
        pending_id,
        PendingInfo {
            state: resolved,
            ..info
        },
    );
    changes.pending_resolved.push((pending_id, resolved));
    insert_transfer(state, changes, journal, stored);
    Ok(None)
}

fn apply_to_accounts(
    state: &mut State,
    changes: &mut Changes,
    journal: &mut Journal,
    t: &Transfer,
    change: impl FnOnce(&mut Account, &mut Account),
) {
    journal.save_account(state, t.debit_account_id);
    journal.save_account(state, t.credit_account_id);
    let mut dr = state
        .accounts
        .remove(&t.debit_account_id)
        .expect("debit account checked");
    let mut cr = state
        .accounts
        .remove(&t.credit_account_id)
        .expect("credit account checked");
    change(&mut dr, &mut cr);
    for a in [&dr, &cr] {
        if a.flags.history {
            changes.history.push(HistoryEntry {
                account_id: a.id,
                transfer_id: t.id,
                timestamp: t.timestamp,
                balances: a.balances(),
            });
        }
        changes.accounts_touched.insert(a.id);
    }
    state.accounts.insert(dr.id, dr);
    state.accounts.insert(cr.id, cr);
}

fn insert_transfer(state: &mut State, changes: &mut Changes, journal: &mut Journal, t: Transfer) {
    journal.transfer_inserted(t.id);
    changes.transfers_created.push(t.id);
    state.transfers.insert(t.id, t);
}

#[cfg(test)]
mod tests {
    use super::super::{AccountFlags, TransferFlags};
    use super::*;

    fn account(id: Id, flags: AccountFlags) -> Account {
        Account {
            id,
            ledger: 1,
            code: 1,
            flags,
            ..Default::default()
        }
    }

    fn ledger() -> State {
        let mut s = State::default();
        s.accounts.insert(1, account(1, AccountFlags::default()));
        s.accounts.insert(2, account(2, AccountFlags::default()));
        let limited = AccountFlags {
            debits_must_not_exceed_credits: true,
            ..Default::default()
        };
        s.accounts.insert(3, account(3, limited));
        let mut other = account(4, AccountFlags::default());
        other.ledger = 2;
        s.accounts.insert(4, other);
        s
    }

    fn tr(id: Id, dr: Id, cr: Id, amount: u64) -> Transfer {
        Transfer {
            id,
            debit_account_id: dr,
            credit_account_id: cr,
            amount,
            ledger: 1,
            code: 7,
            ..Default::default()
        }
    }

    fn apply(s: &mut State, events: Vec<Transfer>) -> Vec<(u32, R)> {
        let mut clock = Clock::new(1_000, 1_000_000);
        let events: Vec<TransferEvent> = events.into_iter().map(Into::into).collect();
        create_transfers(s, &mut Changes::default(), &events, &mut clock)
    }

    fn bal(s: &State, id: Id) -> (u64, u64, u64, u64) {
        let a = &s.accounts[&id];
        (
            a.debits_pending,
            a.debits_posted,
            a.credits_pending,
            a.credits_posted,
        )
    }

    #[test]
    fn plain_transfer_moves_money_and_retry_is_exists() {
        let mut s = ledger();
        assert_eq!(apply(&mut s, vec![tr(10, 1, 2, 5)]), vec![]);
        assert_eq!(apply(&mut s, vec![tr(10, 1, 2, 5)]), vec![(0, R::Exists)]);
        assert_eq!(
            apply(&mut s, vec![tr(10, 1, 2, 6)]),
            vec![(0, R::ExistsWithDifferentAmount)]
        );
        assert_eq!(bal(&s, 1), (0, 5, 0, 0));
        assert_eq!(bal(&s, 2), (0, 0, 0, 5));
    }

    #[test]
    fn bad_input_gets_precise_codes_in_precedence_order() {
        let mut s = ledger();
        let mut zero_amount_same_account = tr(11, 1, 1, 0);
        zero_amount_same_account.timeout = 5;
        let mut timestamp_and_zero_id = tr(0, 1, 2, 1);
        timestamp_and_zero_id.timestamp = 9;
        let mut big_code = tr(14, 1, 2, 1);
        big_code.code = 70_000;
        let results = apply(
            &mut s,
            vec![
                zero_amount_same_account,
                timestamp_and_zero_id,
                tr(12, 1, 2, 0),
                tr(13, 1, 4, 1),
                big_code,
                tr(15, 1, 99, 1),
                tr(16, 2, 1, u64::MAX),
            ],
        );
        assert_eq!(
            results,
            vec![
                (0, R::AccountsMustBeDifferent),
                (1, R::TimestampMustBeZero),
                (2, R::AmountMustNotBeZero),
                (3, R::AccountsMustHaveTheSameLedger),
                (4, R::CodeMustFit16Bits),
                (5, R::CreditAccountNotFound),
                (6, R::OverflowsDebitsPosted),
            ]
        );
        assert_eq!(bal(&s, 1), (0, 0, 0, 0));
    }

    #[test]
    fn transient_failure_is_frozen_under_its_id() {
        let mut s = ledger();
        assert_eq!(apply(&mut s, vec![tr(20, 3, 1, 5)]), vec![(0, R::ExceedsCredits)]);
        assert_eq!(apply(&mut s, vec![tr(21, 1, 3, 10)]), vec![]);
        // Funded now, but the id failed before: it keeps failing.
        assert_eq!(
            apply(&mut s, vec![tr(20, 3, 1, 5)]),
            vec![(0, R::IdAlreadyFailed)]
        );
        assert_eq!(apply(&mut s, vec![tr(22, 3, 1, 5)]), vec![]);
    }

    #[test]
    fn linked_chain_is_all_or_nothing() {
        let mut s = ledger();
        let mut a = tr(30, 1, 2, 5);
        a.flags.linked = true;
        let b = tr(31, 3, 2, 5); // exceeds credits
        let results = apply(&mut s, vec![a.clone(), b, tr(32, 1, 2, 1)]);
        assert_eq!(results, vec![(0, R::LinkedEventFailed), (1, R::ExceedsCredits)]);
        assert_eq!(bal(&s, 1), (0, 1, 0, 0));
        // Not frozen: a linked_event_failed event may be retried and succeed.
        let mut c = tr(33, 1, 2, 1);
        c.flags.linked = true;
        assert_eq!(apply(&mut s, vec![a.clone(), tr(34, 2, 1, 1)]), vec![]);
        assert_eq!(apply(&mut s, vec![c]), vec![(0, R::LinkedEventChainOpen)]);
        // A retried chain answers exists for every event.
        assert_eq!(
            apply(&mut s, vec![a, tr(34, 2, 1, 1)]),
            vec![(0, R::Exists), (1, R::Exists)]
        );
    }

    #[test]
    fn two_phase_post_partial_void_and_expiry() {
        let mut s = ledger();
        let mut p = tr(40, 1, 2, 10);
        p.flags.pending = true;
        let mut p2 = tr(41, 1, 2, 7);
        p2.flags.pending = true;
        p2.timeout = 1;
        assert_eq!(apply(&mut s, vec![p, p2]), vec![]);
        assert_eq!(bal(&s, 1), (17, 0, 0, 0));
        let post = |id, pending_id, amount| Transfer {
            id,
            pending_id,
            amount,
            flags: TransferFlags {
                post_pending_transfer: true,
                ..Default::default()
            },
            ..Default::default()
        };
        let void = |id, pending_id| Transfer {
            id,
            pending_id,
            flags: TransferFlags {
                void_pending_transfer: true,
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            apply(&mut s, vec![post(42, 40, 11)]),
            vec![(0, R::ExceedsPendingTransferAmount)]
        );
        assert_eq!(apply(&mut s, vec![post(43, 40, 4)]), vec![]);
        assert_eq!(bal(&s, 1), (7, 4, 0, 0));
        assert_eq!(
            s.transfers[&43].debit_account_id, 1,
            "inherits the pending transfer's accounts"
        );
        assert_eq!(
            apply(&mut s, vec![post(44, 40, 0), void(45, 40)]),
            vec![
                (0, R::PendingTransferAlreadyPosted),
                (1, R::PendingTransferAlreadyPosted)
            ]
        );
        assert_eq!(
            apply(&mut s, vec![post(46, 10_000, 0)]),
            vec![(0, R::PendingTransferNotFound)]
        );
        // Past the timeout (1 s after its timestamp): expired, cannot be posted; expiry frees it.
        let mut late = Clock::new(1_001 + 2 * NANOS_PER_SECOND, u64::MAX - 1);
        let events = vec![TransferEvent::from(post(47, 41, 0))];
        let r = create_transfers(&mut s, &mut Changes::default(), &events, &mut late);
        assert_eq!(r, vec![(0, R::PendingTransferExpired)]);
        assert_eq!(expire_pending(&mut s, &mut Changes::default(), late.peek()), 1);
        assert_eq!(bal(&s, 1), (0, 4, 0, 0));
        assert_eq!(s.pending[&41].state, PendingState::Expired);
    }

    #[test]
    fn balancing_debit_takes_at_most_the_balance() {
        let mut s = ledger();
        assert_eq!(apply(&mut s, vec![tr(50, 1, 3, 6)]), vec![]);
        let mut b = tr(51, 3, 2, 100);
        b.flags.balancing_debit = true;
        assert_eq!(apply(&mut s, vec![b.clone()]), vec![]);
        assert_eq!(s.transfers[&51].amount, 6);
        assert_eq!(bal(&s, 3), (0, 6, 0, 6));
        assert_eq!(apply(&mut s, vec![b]), vec![(0, R::Exists)]);
    }
}
