//! Wire (proto) <-> domain conversions, and request-level validation that has no per-event
//! result code (batch size, malformed user data, filters): INVALID_ARGUMENT with the field.

use payplane_core::{Violations, ids};
use payplane_proto::accounting::v1 as pb;

use crate::{
    domain::{
        self, Account, AccountEvent, AccountFlags, BATCH_MAX, Balances, Id, Malformed, Transfer,
        TransferEvent, TransferFlags,
    },
    store::{BalanceAt, Filter, RepairReport},
};

/// Default and maximum page sizes of the history queries.
pub const PAGE_DEFAULT: u32 = 1000;

/// An id field: empty is 0 (the domain answers `*_must_not_be_zero`), unparseable is flagged
/// so the domain answers `*_malformed`.
fn id_field(s: &str) -> (Id, bool) {
    if s.is_empty() {
        return (0, false);
    }
    match ids::parse(s) {
        Ok(u) => (u.as_u128(), false),
        Err(_) => (0, true),
    }
}

/// user_data_128 has no result code of its own: a malformed one is INVALID_ARGUMENT.
fn user_data_128(v: &mut Violations, field: String, s: &str) -> u128 {
    if s.is_empty() {
        return 0;
    }
    match ids::parse(s) {
        Ok(u) => u.as_u128(),
        Err(e) => {
            v.add(field, e.to_string());
            0
        }
    }
}

pub fn id_string(id: Id) -> String {
    if id == 0 {
        String::new()
    } else {
        uuid::Uuid::from_u128(id).to_string()
    }
}

fn batch_size(v: &mut Violations, field: &str, n: usize) {
    if n > BATCH_MAX {
        v.add(field, format!("at most {BATCH_MAX} events per request, got {n}"));
    }
}

pub fn account_events(req: &pb::CreateAccountsRequest) -> Result<Vec<AccountEvent>, Violations> {
    let mut v = Violations::new();
    batch_size(&mut v, "accounts", req.accounts.len());
    let events = req
        .accounts
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let (id, id_malformed) = id_field(&a.id);
            let f = a.flags.unwrap_or_default();
            AccountEvent {
                account: Account {
                    id,
                    ledger: a.ledger,
                    code: a.code,
                    flags: AccountFlags {
                        linked: f.linked,
                        debits_must_not_exceed_credits: f.debits_must_not_exceed_credits,
                        credits_must_not_exceed_debits: f.credits_must_not_exceed_debits,
                        history: f.history,
                        closed: f.closed,
                    },
                    debits_pending: a.debits_pending,
                    debits_posted: a.debits_posted,
                    credits_pending: a.credits_pending,
                    credits_posted: a.credits_posted,
                    user_data_128: user_data_128(
                        &mut v,
                        format!("accounts[{i}].user_data_128"),
                        &a.user_data_128,
                    ),
                    user_data_64: a.user_data_64,
                    user_data_32: a.user_data_32,
                    timestamp: a.timestamp,
                },
                id_malformed,
            }
        })
        .collect();
    if v.is_empty() { Ok(events) } else { Err(v) }
}

pub fn transfer_events(req: &pb::CreateTransfersRequest) -> Result<Vec<TransferEvent>, Violations> {
    let mut v = Violations::new();
    batch_size(&mut v, "transfers", req.transfers.len());
    let events = req
        .transfers
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let (id, id_m) = id_field(&t.id);
            let (debit, debit_m) = id_field(&t.debit_account_id);
            let (credit, credit_m) = id_field(&t.credit_account_id);
            let (pending_id, pending_m) = id_field(&t.pending_id);
            let f = t.flags.unwrap_or_default();
            TransferEvent {
                transfer: Transfer {
                    id,
                    debit_account_id: debit,
                    credit_account_id: credit,
                    amount: t.amount,
                    pending_id,
                    user_data_128: user_data_128(
                        &mut v,
                        format!("transfers[{i}].user_data_128"),
                        &t.user_data_128,
                    ),
                    user_data_64: t.user_data_64,
                    user_data_32: t.user_data_32,
                    timeout: t.timeout,
                    ledger: t.ledger,
                    code: t.code,
                    flags: TransferFlags {
                        linked: f.linked,
                        pending: f.pending,
                        post_pending_transfer: f.post_pending_transfer,
                        void_pending_transfer: f.void_pending_transfer,
                        balancing_debit: f.balancing_debit,
                        balancing_credit: f.balancing_credit,
                    },
                    timestamp: t.timestamp,
                },
                malformed: Malformed {
                    id: id_m,
                    debit_account_id: debit_m,
                    credit_account_id: credit_m,
                    pending_id: pending_m,
                },
                pending_id_given: !t.pending_id.is_empty(),
            }
        })
        .collect();
    if v.is_empty() { Ok(events) } else { Err(v) }
}

/// Ids of a lookup: every one must be well-formed.
pub fn lookup_ids(ids_in: &[String]) -> Result<Vec<Id>, Violations> {
    let mut v = Violations::new();
    batch_size(&mut v, "ids", ids_in.len());
    let ids = ids_in
        .iter()
        .enumerate()
        .filter_map(|(i, s)| v.id(&format!("ids[{i}]"), s).map(|u| u.as_u128()))
        .collect();
    if v.is_empty() { Ok(ids) } else { Err(v) }
}

/// A validated filter and the page cursor it carries.
pub fn filter(f: Option<&pb::AccountFilter>) -> Result<(Filter, Option<u64>), Violations> {
    let mut v = Violations::new();
    let Some(f) = f else {
        v.add("filter", "is required");
        return Err(v);
    };
    let account_id = v
        .id("filter.account_id", &f.account_id)
        .map(|u| u.as_u128())
        .unwrap_or(0);
    if f.limit as usize > BATCH_MAX {
        v.add(
            "filter.limit",
            format!("must be at most {BATCH_MAX}, got {}", f.limit),
        );
    }
    let timestamp_max = if f.timestamp_max == 0 {
        u64::MAX
    } else {
        f.timestamp_max
    };
    if f.timestamp_min > timestamp_max {
        v.add("filter.timestamp_min", "must not be after timestamp_max");
    }
    let after = if f.page_token.is_empty() {
        None
    } else {
        match f.page_token.parse::<u64>() {
            Ok(t) => Some(t),
            Err(_) => {
                v.add("filter.page_token", "is not a token from a previous response");
                None
            }
        }
    };
    if !v.is_empty() {
        return Err(v);
    }
    Ok((
        Filter {
            account_id,
            timestamp_min: f.timestamp_min,
            timestamp_max,
            limit: if f.limit == 0 { PAGE_DEFAULT } else { f.limit },
            debits: f.debits,
            credits: f.credits,
            reversed: f.reversed,
        },
        after,
    ))
}

pub fn page_token(after: Option<u64>) -> String {
    after.map(|t| t.to_string()).unwrap_or_default()
}

pub fn account_to_pb(a: &Account) -> pb::Account {
    pb::Account {
        id: id_string(a.id),
        ledger: a.ledger,
        code: a.code,
        flags: Some(pb::AccountFlags {
            linked: a.flags.linked,
            debits_must_not_exceed_credits: a.flags.debits_must_not_exceed_credits,
            credits_must_not_exceed_debits: a.flags.credits_must_not_exceed_debits,
            history: a.flags.history,
            closed: a.flags.closed,
        }),
        debits_pending: a.debits_pending,
        debits_posted: a.debits_posted,
        credits_pending: a.credits_pending,
        credits_posted: a.credits_posted,
        user_data_128: id_string(a.user_data_128),
        user_data_64: a.user_data_64,
        user_data_32: a.user_data_32,
        timestamp: a.timestamp,
    }
}

pub fn transfer_to_pb(t: &domain::Transfer) -> pb::Transfer {
    pb::Transfer {
        id: id_string(t.id),
        debit_account_id: id_string(t.debit_account_id),
        credit_account_id: id_string(t.credit_account_id),
        amount: t.amount,
        pending_id: id_string(t.pending_id),
        user_data_128: id_string(t.user_data_128),
        user_data_64: t.user_data_64,
        user_data_32: t.user_data_32,
        timeout: t.timeout,
        ledger: t.ledger,
        code: t.code,
        flags: Some(pb::TransferFlags {
            linked: t.flags.linked,
            pending: t.flags.pending,
            post_pending_transfer: t.flags.post_pending_transfer,
            void_pending_transfer: t.flags.void_pending_transfer,
            balancing_debit: t.flags.balancing_debit,
            balancing_credit: t.flags.balancing_credit,
        }),
        timestamp: t.timestamp,
    }
}

pub fn balance_to_pb(b: &BalanceAt) -> pb::AccountBalance {
    pb::AccountBalance {
        transfer_id: id_string(b.transfer_id),
        timestamp: b.timestamp,
        debits_pending: b.balances.debits_pending,
        debits_posted: b.balances.debits_posted,
        credits_pending: b.balances.credits_pending,
        credits_posted: b.balances.credits_posted,
    }
}

/// The longest reason a repair keeps.
const REASON_MAX: usize = 200;

/// RepairBalances: the ledger (`None`: every ledger) and the reason, trimmed.
pub fn repair_request(req: &pb::RepairBalancesRequest) -> Result<(Option<u32>, String), Violations> {
    let mut v = Violations::new();
    let reason = req.reason.trim();
    if reason.is_empty() {
        v.add(
            "reason",
            "required: why the balances are rewritten (an incident or change reference)",
        );
    } else if reason.chars().count() > REASON_MAX {
        v.add("reason", format!("at most {REASON_MAX} characters"));
    }
    if v.is_empty() {
        Ok(((req.ledger != 0).then_some(req.ledger), reason.to_owned()))
    } else {
        Err(v)
    }
}

fn balances_to_pb(b: &Balances) -> pb::Balances {
    pb::Balances {
        debits_pending: b.debits_pending,
        debits_posted: b.debits_posted,
        credits_pending: b.credits_pending,
        credits_posted: b.credits_posted,
    }
}

pub fn repair_to_pb(r: &RepairReport) -> pb::RepairBalancesResponse {
    pb::RepairBalancesResponse {
        repairs: r
            .repairs
            .iter()
            .map(|b| pb::BalanceRepair {
                account_id: id_string(b.account_id),
                ledger: b.ledger,
                before: Some(balances_to_pb(&b.before)),
                after: Some(balances_to_pb(&b.after)),
            })
            .collect(),
        repaired_count: r.repaired_count,
        repaired_at: r.repaired_at,
        dry_run: r.dry_run,
    }
}

/// Domain transfer from the wire form, for clients and tests (ids must be well-formed).
pub fn transfer_from_pb(t: &pb::Transfer) -> domain::Transfer {
    let req = pb::CreateTransfersRequest {
        transfers: vec![t.clone()],
    };
    transfer_events(&req)
        .map(|mut e| e.remove(0).transfer)
        .unwrap_or_default()
}
