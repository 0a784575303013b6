use std::collections::{BTreeSet, HashMap};

use super::{Account, Balances, CreateTransferResult, Id, Transfer};

/// Where a pending transfer stands. Only `Pending` holds money.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PendingState {
    Pending = 1,
    Posted = 2,
    Voided = 3,
    Expired = 4,
}

impl PendingState {
    pub fn from_i16(v: i16) -> Option<Self> {
        Some(match v {
            1 => Self::Pending,
            2 => Self::Posted,
            3 => Self::Voided,
            4 => Self::Expired,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingInfo {
    pub state: PendingState,
    /// Ledger time at which it expires; `None` without a timeout.
    pub expires_at: Option<u64>,
}

/// The part of the ledger a batch can see: every account, transfer, pending status and frozen
/// failure the events refer to. In tests it simply holds the whole ledger.
#[derive(Clone, Debug, Default)]
pub struct State {
    pub accounts: HashMap<Id, Account>,
    pub transfers: HashMap<Id, Transfer>,
    pub pending: HashMap<Id, PendingInfo>,
    pub failed: HashMap<Id, CreateTransferResult>,
}

/// A balance snapshot after a transfer, for accounts with `flags.history`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    pub account_id: Id,
    pub transfer_id: Id,
    pub timestamp: u64,
    pub balances: Balances,
}

/// What applying events changed, for the store to write. Balances are read from the [`State`]
/// for every id in `accounts_touched` (the final value after all events, i.e. the changes of all
/// events aggregated per account).
#[derive(Clone, Debug, Default)]
pub struct Changes {
    pub accounts_created: Vec<Id>,
    pub accounts_touched: BTreeSet<Id>,
    pub transfers_created: Vec<Id>,
    /// Pending transfers resolved (posted, voided or expired) by these events.
    pub pending_resolved: Vec<(Id, PendingState)>,
    /// Frozen failures: ids that will answer `id_already_failed` forever.
    pub failed: Vec<(Id, CreateTransferResult)>,
    pub history: Vec<HistoryEntry>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.accounts_created.is_empty()
            && self.accounts_touched.is_empty()
            && self.transfers_created.is_empty()
            && self.pending_resolved.is_empty()
            && self.failed.is_empty()
    }
}

/// Undo log of a linked chain: how to put the state back if a later event of the chain fails.
pub(super) enum Undo {
    Account(Id, Option<Account>),
    Transfer(Id),
    Pending(Id, Option<PendingInfo>),
}

/// Where a chain started, in every growing list.
#[derive(Clone, Copy)]
pub(super) struct Mark {
    pub start_index: usize,
    pub undo: usize,
    pub accounts_created: usize,
    pub transfers_created: usize,
    pub pending_resolved: usize,
    pub history: usize,
}

pub(super) struct Journal {
    pub undo: Vec<Undo>,
}

impl Journal {
    pub fn new() -> Self {
        Self { undo: Vec::new() }
    }

    pub fn mark(&self, changes: &Changes, start_index: usize) -> Mark {
        Mark {
            start_index,
            undo: self.undo.len(),
            accounts_created: changes.accounts_created.len(),
            transfers_created: changes.transfers_created.len(),
            pending_resolved: changes.pending_resolved.len(),
            history: changes.history.len(),
        }
    }

    /// Saves an account's current value before it changes.
    pub fn save_account(&mut self, state: &State, id: Id) {
        self.undo
            .push(Undo::Account(id, state.accounts.get(&id).cloned()));
    }

    pub fn save_pending(&mut self, state: &State, id: Id) {
        self.undo.push(Undo::Pending(id, state.pending.get(&id).copied()));
    }

    pub fn transfer_inserted(&mut self, id: Id) {
        self.undo.push(Undo::Transfer(id));
    }

    /// Puts state and changes back to `mark`. `accounts_touched` may keep ids whose balances are
    /// now unchanged: writing an unchanged balance back is harmless.
    pub fn rollback(&mut self, state: &mut State, changes: &mut Changes, mark: Mark) {
        while self.undo.len() > mark.undo {
            match self.undo.pop() {
                Some(Undo::Account(id, Some(a))) => {
                    state.accounts.insert(id, a);
                }
                Some(Undo::Account(id, None)) => {
                    state.accounts.remove(&id);
                }
                Some(Undo::Transfer(id)) => {
                    state.transfers.remove(&id);
                }
                Some(Undo::Pending(id, Some(p))) => {
                    state.pending.insert(id, p);
                }
                Some(Undo::Pending(id, None)) => {
                    state.pending.remove(&id);
                }
                None => break,
            }
        }
        changes.accounts_created.truncate(mark.accounts_created);
        changes.transfers_created.truncate(mark.transfers_created);
        changes.pending_resolved.truncate(mark.pending_resolved);
        changes.history.truncate(mark.history);
    }
}
