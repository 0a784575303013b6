use super::{
    AccountEvent, Changes, Clock, CreateAccountResult as R, ID_INT_MAX, State,
    state::{Journal, Mark},
};

/// Applies account events in order. Returns `(index, result)` for every event not created.
pub fn create_accounts(
    state: &mut State,
    changes: &mut Changes,
    events: &[AccountEvent],
    clock: &mut Clock,
) -> Vec<(u32, R)> {
    let mut results = Vec::new();
    let mut journal = Journal::new();
    let mut chain: Option<Mark> = None;
    let mut chain_broken = false;
    for (i, event) in events.iter().enumerate() {
        let linked = event.account.flags.linked;
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
                    let created: Vec<u128> = changes.accounts_created[mark.accounts_created..].to_vec();
                    journal.rollback(state, changes, mark);
                    // Events of the chain that had been created are undone with it.
                    for (j, e) in events.iter().enumerate().take(i).skip(mark.start_index) {
                        if created.contains(&e.account.id) {
                            // A repeat of an id the chain created said `exists`; with the chain
                            // undone it failed with it, so that answer is replaced, not doubled.
                            results.retain(|(k, _)| *k != j as u32);
                            results.push((j as u32, R::LinkedEventFailed));
                        }
                    }
                    chain_broken = true;
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

/// `Ok(None)` created, `Ok(Some(Exists))` already there with the same body, `Err` otherwise.
fn create_one(
    state: &mut State,
    changes: &mut Changes,
    event: &AccountEvent,
    clock: &mut Clock,
    journal: &mut Journal,
) -> Result<Option<R>, R> {
    let a = &event.account;
    if a.timestamp != 0 {
        return Err(R::TimestampMustBeZero);
    }
    if event.id_malformed {
        return Err(R::IdMalformed);
    }
    if a.id == 0 {
        return Err(R::IdMustNotBeZero);
    }
    if a.id == ID_INT_MAX {
        return Err(R::IdMustNotBeIntMax);
    }
    if let Some(e) = state.accounts.get(&a.id) {
        return Err(if a.flags != e.flags {
            R::ExistsWithDifferentFlags
        } else if a.user_data_128 != e.user_data_128 {
            R::ExistsWithDifferentUserData128
        } else if a.user_data_64 != e.user_data_64 {
            R::ExistsWithDifferentUserData64
        } else if a.user_data_32 != e.user_data_32 {
            R::ExistsWithDifferentUserData32
        } else if a.ledger != e.ledger {
            R::ExistsWithDifferentLedger
        } else if a.code != e.code {
            R::ExistsWithDifferentCode
        } else {
            return Ok(Some(R::Exists));
        });
    }
    if a.flags.debits_must_not_exceed_credits && a.flags.credits_must_not_exceed_debits {
        return Err(R::FlagsAreMutuallyExclusive);
    }
    if a.debits_pending != 0 {
        return Err(R::DebitsPendingMustBeZero);
    }
    if a.debits_posted != 0 {
        return Err(R::DebitsPostedMustBeZero);
    }
    if a.credits_pending != 0 {
        return Err(R::CreditsPendingMustBeZero);
    }
    if a.credits_posted != 0 {
        return Err(R::CreditsPostedMustBeZero);
    }
    if a.ledger == 0 {
        return Err(R::LedgerMustNotBeZero);
    }
    if a.code == 0 {
        return Err(R::CodeMustNotBeZero);
    }
    if a.code > u32::from(u16::MAX) {
        return Err(R::CodeMustFit16Bits);
    }
    let mut account = a.clone();
    account.timestamp = clock.tick();
    journal.save_account(state, a.id);
    state.accounts.insert(a.id, account);
    changes.accounts_created.push(a.id);
    Ok(None)
}
