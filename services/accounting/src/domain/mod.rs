//! The ledger's rules, with no I/O: validation and result codes in TigerBeetle's order of
//! precedence, and the application of a batch of events to account states held in memory.
//!
//! The store loads every row a group of requests can touch into a [`State`], the functions here
//! apply the events (producing per-event results, new rows and changed balances), and the store
//! writes the changes back in the same database transaction.

mod accounts;
mod state;
mod transfers;

#[cfg(test)]
mod proptests;

pub use accounts::create_accounts;
pub use payplane_proto::accounting::v1::{CreateAccountResult, CreateTransferResult};
pub use state::{Changes, HistoryEntry, PendingInfo, PendingState, State};
pub use transfers::{create_transfers, expire_pending, is_transient};

/// Ids are 128-bit (UUIDs); 0 and 2^128-1 are reserved.
pub type Id = u128;
pub const ID_INT_MAX: Id = u128::MAX;

/// The largest balance (and so the largest amount) the ledger holds: balances live in PostgreSQL
/// `bigint` columns. A transfer that would push a balance past it fails with `overflows_*`.
pub const BALANCE_MAX: u64 = i64::MAX as u64;

/// The most events one request may carry (as in the proto's contract).
pub const BATCH_MAX: usize = 8190;

/// Nanoseconds per second, for timeouts.
pub const NANOS_PER_SECOND: u64 = 1_000_000_000;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AccountFlags {
    pub linked: bool,
    pub debits_must_not_exceed_credits: bool,
    pub credits_must_not_exceed_debits: bool,
    pub history: bool,
    pub closed: bool,
}

impl AccountFlags {
    pub fn bits(self) -> i32 {
        i32::from(self.linked)
            | i32::from(self.debits_must_not_exceed_credits) << 1
            | i32::from(self.credits_must_not_exceed_debits) << 2
            | i32::from(self.history) << 3
            | i32::from(self.closed) << 4
    }

    pub fn from_bits(bits: i32) -> Self {
        Self {
            linked: bits & 1 != 0,
            debits_must_not_exceed_credits: bits & 2 != 0,
            credits_must_not_exceed_debits: bits & 4 != 0,
            history: bits & 8 != 0,
            closed: bits & 16 != 0,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TransferFlags {
    pub linked: bool,
    pub pending: bool,
    pub post_pending_transfer: bool,
    pub void_pending_transfer: bool,
    pub balancing_debit: bool,
    pub balancing_credit: bool,
}

/// Bits of [`TransferFlags`] as stored; the invariant SQL relies on PENDING and VOID.
pub const TRANSFER_FLAG_PENDING: i32 = 2;
pub const TRANSFER_FLAG_VOID: i32 = 8;

impl TransferFlags {
    pub fn bits(self) -> i32 {
        i32::from(self.linked)
            | i32::from(self.pending) << 1
            | i32::from(self.post_pending_transfer) << 2
            | i32::from(self.void_pending_transfer) << 3
            | i32::from(self.balancing_debit) << 4
            | i32::from(self.balancing_credit) << 5
    }

    pub fn from_bits(bits: i32) -> Self {
        Self {
            linked: bits & 1 != 0,
            pending: bits & 2 != 0,
            post_pending_transfer: bits & 4 != 0,
            void_pending_transfer: bits & 8 != 0,
            balancing_debit: bits & 16 != 0,
            balancing_credit: bits & 32 != 0,
        }
    }

    /// Post or void: resolves a pending transfer.
    pub fn resolves(self) -> bool {
        self.post_pending_transfer || self.void_pending_transfer
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Account {
    pub id: Id,
    pub ledger: u32,
    pub code: u32,
    pub flags: AccountFlags,
    pub debits_pending: u64,
    pub debits_posted: u64,
    pub credits_pending: u64,
    pub credits_posted: u64,
    pub user_data_128: u128,
    pub user_data_64: u64,
    pub user_data_32: u32,
    pub timestamp: u64,
}

impl Account {
    pub fn balances(&self) -> Balances {
        Balances {
            debits_pending: self.debits_pending,
            debits_posted: self.debits_posted,
            credits_pending: self.credits_pending,
            credits_posted: self.credits_posted,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Balances {
    pub debits_pending: u64,
    pub debits_posted: u64,
    pub credits_pending: u64,
    pub credits_posted: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transfer {
    pub id: Id,
    pub debit_account_id: Id,
    pub credit_account_id: Id,
    pub amount: u64,
    pub pending_id: Id,
    pub user_data_128: u128,
    pub user_data_64: u64,
    pub user_data_32: u32,
    pub timeout: u32,
    pub ledger: u32,
    pub code: u32,
    pub flags: TransferFlags,
    pub timestamp: u64,
}

impl Transfer {
    /// When a pending transfer with a timeout expires (ledger time, ns); `None` for no timeout.
    pub fn expires_at(&self) -> Option<u64> {
        (self.flags.pending && self.timeout > 0).then(|| {
            self.timestamp
                .saturating_add(u64::from(self.timeout) * NANOS_PER_SECOND)
        })
    }
}

/// Ids in an incoming event that did not parse: they get the precise `*_malformed` result code.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Malformed {
    pub id: bool,
    pub debit_account_id: bool,
    pub credit_account_id: bool,
    pub pending_id: bool,
}

/// One event of a CreateTransfers request, as received (malformed ids are 0 here and flagged).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransferEvent {
    pub transfer: Transfer,
    pub malformed: Malformed,
    /// A pending_id was given (non-empty), even if malformed.
    pub pending_id_given: bool,
}

impl From<Transfer> for TransferEvent {
    fn from(transfer: Transfer) -> Self {
        let pending_id_given = transfer.pending_id != 0;
        Self {
            transfer,
            malformed: Malformed::default(),
            pending_id_given,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountEvent {
    pub account: Account,
    pub id_malformed: bool,
}

impl From<Account> for AccountEvent {
    fn from(account: Account) -> Self {
        Self {
            account,
            id_malformed: false,
        }
    }
}

/// Hands out the ledger timestamps reserved for one database transaction: unique and strictly
/// increasing, in the order events are applied.
#[derive(Clone, Debug)]
pub struct Clock {
    next: u64,
    end: u64,
}

impl Clock {
    /// Timestamps `first..=last`.
    pub fn new(first: u64, last: u64) -> Self {
        Self {
            next: first,
            end: last,
        }
    }

    /// The timestamp of the next event; the store reserves one per event, so running out is a bug.
    pub fn tick(&mut self) -> u64 {
        assert!(self.next <= self.end, "ledger clock range exhausted");
        let t = self.next;
        self.next += 1;
        t
    }

    /// The time the next event will get, without consuming it.
    pub fn peek(&self) -> u64 {
        self.next
    }
}
