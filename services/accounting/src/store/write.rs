//! One group commit: the events of many requests applied in one database transaction.

use std::{
    collections::{BTreeSet, HashSet},
    time::{Duration, Instant},
};

use sqlx::{PgPool, Postgres, Row, Transaction};
use uuid::Uuid;

use crate::domain::{
    self, Account, AccountEvent, Changes, Clock, CreateAccountResult, CreateTransferResult, Id, PendingInfo,
    PendingState, State, TransferEvent,
};

use super::rows::{account_from_row, transfer_from_row, u64_to_i64, uuid};

/// A request's worth of events.
#[derive(Debug)]
pub enum Job {
    Accounts(Vec<AccountEvent>),
    Transfers(Vec<TransferEvent>),
    /// Nothing but the expiry of due pending transfers (the idle-time tick).
    Expire,
}

impl Job {
    pub fn events(&self) -> usize {
        match self {
            Job::Accounts(e) => e.len(),
            Job::Transfers(e) => e.len(),
            Job::Expire => 0,
        }
    }
}

#[derive(Debug, Clone)]
pub enum JobResult {
    Accounts(Vec<(u32, CreateAccountResult)>),
    Transfers(Vec<(u32, CreateTransferResult)>),
    Expired,
}

/// What one group did, for metrics and logs.
#[derive(Debug, Default, Clone, Copy)]
pub struct GroupStats {
    pub events: usize,
    pub expired: usize,
    pub accounts_touched: usize,
    /// Where the group's time went.
    pub phases: Phases,
}

/// A group's wall-clock time by phase (logged at debug level by the committer): the clock lock
/// (pool wait, BEGIN and the clock row update, including the wait for the transaction of another
/// replica),
/// loading state, applying in memory, writing, and the commit (WAL flush) or rollback.
#[derive(Debug, Default, Clone, Copy)]
pub struct Phases {
    pub lock: Duration,
    pub load: Duration,
    pub apply: Duration,
    pub write: Duration,
    pub commit: Duration,
}

/// Applies `jobs` in order in one transaction and commits. Either every job's outcome is
/// committed or none is (the error is returned for all; clients retry with the same ids).
pub async fn apply_group(
    pool: &PgPool,
    jobs: &[&Job],
    expire_limit: usize,
    fault_lose_minor_unit: bool,
) -> Result<(Vec<JobResult>, GroupStats), sqlx::Error> {
    let events: usize = jobs.iter().map(|j| j.events()).sum();
    // One timestamp for the expiry pass, one per event.
    let reserve = events as i64 + 1;
    let mut phases = Phases::default();
    let mut mark = Instant::now();
    let mut lap = move || {
        let now = Instant::now();
        let elapsed = now - mark;
        mark = now;
        elapsed
    };
    let mut tx = pool.begin().await?;
    // The clock row is the first lock every write transaction takes: writes of all replicas are
    // totally ordered, so everything read below is the latest committed state and stays so.
    let last = advance_clock(&mut tx, reserve).await?;
    let mut clock = Clock::new((last - reserve + 1) as u64, last as u64);
    let now = clock.tick();
    phases.lock = lap();

    let mut state = load_state(&mut tx, jobs, now, expire_limit).await?;
    phases.load = lap();
    let mut changes = Changes::default();
    let expired = domain::expire_pending(&mut state, &mut changes, now);
    let mut results = Vec::with_capacity(jobs.len());
    for job in jobs {
        results.push(match job {
            Job::Accounts(events) => JobResult::Accounts(domain::create_accounts(
                &mut state,
                &mut changes,
                events,
                &mut clock,
            )),
            Job::Transfers(events) => JobResult::Transfers(domain::create_transfers(
                &mut state,
                &mut changes,
                events,
                &mut clock,
            )),
            Job::Expire => JobResult::Expired,
        });
    }
    phases.apply = lap();
    if changes.is_empty() {
        // Nothing to write (all retries or failures): don't pay for a commit's WAL flush.
        tx.rollback().await?;
    } else {
        write_changes(&mut tx, &state, &changes, fault_lose_minor_unit).await?;
        phases.write = lap();
        tx.commit().await?;
    }
    phases.commit = lap();
    let stats = GroupStats {
        events,
        expired,
        accounts_touched: changes.accounts_touched.len(),
        phases,
    };
    Ok((results, stats))
}

async fn load_state(
    tx: &mut Transaction<'static, Postgres>,
    jobs: &[&Job],
    now: u64,
    expire_limit: usize,
) -> Result<State, sqlx::Error> {
    let mut transfer_ids: BTreeSet<Id> = BTreeSet::new();
    let mut event_ids: BTreeSet<Id> = BTreeSet::new();
    let mut account_ids: BTreeSet<Id> = BTreeSet::new();
    for job in jobs {
        match job {
            Job::Accounts(events) => account_ids.extend(events.iter().map(|e| e.account.id)),
            Job::Transfers(events) => {
                for e in events {
                    let t = &e.transfer;
                    event_ids.insert(t.id);
                    transfer_ids.insert(t.id);
                    if t.pending_id != 0 {
                        transfer_ids.insert(t.pending_id);
                    }
                    account_ids.insert(t.debit_account_id);
                    account_ids.insert(t.credit_account_id);
                }
            }
            Job::Expire => {}
        }
    }
    let due: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM pending_transfers WHERE state = 1 AND expires_at > 0 AND expires_at <= $1 \
         ORDER BY expires_at LIMIT $2",
    )
    .bind(u64_to_i64(now))
    .bind(expire_limit as i64)
    .fetch_all(&mut **tx)
    .await?;
    transfer_ids.extend(due.iter().map(|u| u.as_u128()));
    transfer_ids.remove(&0);

    let mut state = State::default();
    let ids: Vec<Uuid> = transfer_ids.iter().map(|id| uuid(*id)).collect();
    let rows = sqlx::query(
        "SELECT t.*, p.state AS pending_state, p.expires_at AS pending_expires_at \
         FROM transfers t LEFT JOIN pending_transfers p ON p.id = t.id WHERE t.id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(&mut **tx)
    .await?;
    for row in rows {
        let t = transfer_from_row(&row)?;
        if let Some(s) = row
            .try_get::<Option<i16>, _>("pending_state")?
            .and_then(PendingState::from_i16)
        {
            let expires_at: i64 = row.try_get::<Option<i64>, _>("pending_expires_at")?.unwrap_or(0);
            state.pending.insert(
                t.id,
                PendingInfo {
                    state: s,
                    expires_at: (expires_at > 0).then_some(expires_at as u64),
                },
            );
        }
        account_ids.insert(t.debit_account_id);
        account_ids.insert(t.credit_account_id);
        state.transfers.insert(t.id, t);
    }

    if !event_ids.is_empty() {
        let ids: Vec<Uuid> = event_ids.iter().map(|id| uuid(*id)).collect();
        let rows = sqlx::query("SELECT id, result FROM failed_transfers WHERE id = ANY($1)")
            .bind(&ids)
            .fetch_all(&mut **tx)
            .await?;
        for row in rows {
            let id: Uuid = row.try_get("id")?;
            let result = CreateTransferResult::try_from(row.try_get::<i32, _>("result")?)
                .unwrap_or(CreateTransferResult::IdAlreadyFailed);
            state.failed.insert(id.as_u128(), result);
        }
    }

    account_ids.remove(&0);
    // Sorted, so that row locks are always taken in the same order.
    let ids: Vec<Uuid> = account_ids.iter().map(|id| uuid(*id)).collect();
    let rows = sqlx::query("SELECT * FROM accounts WHERE id = ANY($1) ORDER BY id FOR UPDATE")
        .bind(&ids)
        .fetch_all(&mut **tx)
        .await?;
    for row in rows {
        let a = account_from_row(&row)?;
        state.accounts.insert(a.id, a);
    }
    Ok(state)
}

async fn write_changes(
    tx: &mut Transaction<'static, Postgres>,
    state: &State,
    changes: &Changes,
    fault_lose_minor_unit: bool,
) -> Result<(), sqlx::Error> {
    let created_accounts: HashSet<Id> = changes.accounts_created.iter().copied().collect();
    if !changes.accounts_created.is_empty() {
        let accounts: Vec<&Account> = changes
            .accounts_created
            .iter()
            .map(|id| &state.accounts[id])
            .collect();
        insert_accounts(tx, &accounts).await?;
    }

    if !changes.transfers_created.is_empty() {
        let n = changes.transfers_created.len();
        let mut cols = TransferColumns::with_capacity(n);
        let (mut p_ids, mut p_states, mut p_expires) = (Vec::new(), Vec::new(), Vec::new());
        for id in &changes.transfers_created {
            let t = &state.transfers[id];
            cols.push(t);
            if t.flags.pending {
                let info = state.pending[id];
                p_ids.push(uuid(t.id));
                p_states.push(info.state as i16);
                p_expires.push(info.expires_at.map(u64_to_i64).unwrap_or(0));
            }
        }
        cols.insert(tx).await?;
        if !p_ids.is_empty() {
            sqlx::query(
                "INSERT INTO pending_transfers (id, state, expires_at) \
                 SELECT * FROM UNNEST($1::uuid[], $2::smallint[], $3::bigint[])",
            )
            .bind(&p_ids)
            .bind(&p_states)
            .bind(&p_expires)
            .execute(&mut **tx)
            .await?;
        }
    }

    // Resolved pending transfers that existed before this group (new ones were inserted with
    // their final state above); each written once, with its final state.
    let created: HashSet<Id> = changes.transfers_created.iter().copied().collect();
    let resolved: BTreeSet<Id> = changes
        .pending_resolved
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| !created.contains(id))
        .collect();
    if !resolved.is_empty() {
        let ids: Vec<Uuid> = resolved.iter().map(|id| uuid(*id)).collect();
        let states: Vec<i16> = resolved.iter().map(|id| state.pending[id].state as i16).collect();
        sqlx::query(
            "UPDATE pending_transfers p SET state = u.state \
             FROM UNNEST($1::uuid[], $2::smallint[]) AS u(id, state) WHERE p.id = u.id",
        )
        .bind(&ids)
        .bind(&states)
        .execute(&mut **tx)
        .await?;
    }

    if !changes.failed.is_empty() {
        let ids: Vec<Uuid> = changes.failed.iter().map(|(id, _)| uuid(*id)).collect();
        let results: Vec<i32> = changes.failed.iter().map(|(_, r)| *r as i32).collect();
        sqlx::query(
            "INSERT INTO failed_transfers (id, result, timestamp) \
             SELECT u.id, u.result, (SELECT last_timestamp FROM ledger_clock WHERE id = 1) \
             FROM UNNEST($1::uuid[], $2::integer[]) AS u(id, result)",
        )
        .bind(&ids)
        .bind(&results)
        .execute(&mut **tx)
        .await?;
    }

    // Balance changes aggregated per account: one row update per touched account, whatever the
    // number of transfers that touched it.
    let touched: Vec<&Account> = changes
        .accounts_touched
        .iter()
        .filter(|id| !created_accounts.contains(id))
        .filter_map(|id| state.accounts.get(id))
        .collect();
    if !touched.is_empty() {
        let ids: Vec<Uuid> = touched.iter().map(|a| uuid(a.id)).collect();
        let dp: Vec<i64> = touched.iter().map(|a| a.debits_pending as i64).collect();
        let dpo: Vec<i64> = touched.iter().map(|a| a.debits_posted as i64).collect();
        let cp: Vec<i64> = touched.iter().map(|a| a.credits_pending as i64).collect();
        let mut cpo: Vec<i64> = touched.iter().map(|a| a.credits_posted as i64).collect();
        if fault_lose_minor_unit && let Some(first) = cpo.iter_mut().find(|c| **c > 0) {
            // The injected rounding bug: one account's posted credits come out a unit short.
            *first -= 1;
        }
        set_balances(tx, &ids, &[dp, dpo, cp, cpo]).await?;
    }

    if !changes.history.is_empty() {
        let h = &changes.history;
        let account: Vec<Uuid> = h.iter().map(|e| uuid(e.account_id)).collect();
        let ts: Vec<i64> = h.iter().map(|e| u64_to_i64(e.timestamp)).collect();
        let transfer: Vec<Uuid> = h.iter().map(|e| uuid(e.transfer_id)).collect();
        let dp: Vec<i64> = h.iter().map(|e| e.balances.debits_pending as i64).collect();
        let dpo: Vec<i64> = h.iter().map(|e| e.balances.debits_posted as i64).collect();
        let cp: Vec<i64> = h.iter().map(|e| e.balances.credits_pending as i64).collect();
        let cpo: Vec<i64> = h.iter().map(|e| e.balances.credits_posted as i64).collect();
        sqlx::query(
            "INSERT INTO account_balances \
               (account_id, timestamp, transfer_id, debits_pending, debits_posted, credits_pending, credits_posted) \
             SELECT * FROM UNNEST($1::uuid[], $2::bigint[], $3::uuid[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[])",
        )
        .bind(&account)
        .bind(&ts)
        .bind(&transfer)
        .bind(&dp)
        .bind(&dpo)
        .bind(&cp)
        .bind(&cpo)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Takes the ledger clock's row lock (every write transaction's first) and reserves `n`
/// timestamps, the last of which it returns.
pub(super) async fn advance_clock(
    tx: &mut Transaction<'static, Postgres>,
    n: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE ledger_clock SET last_timestamp = \
           GREATEST(last_timestamp, (extract(epoch FROM clock_timestamp()) * 1000000000)::bigint) + $1 \
         WHERE id = 1 RETURNING last_timestamp",
    )
    .bind(n)
    .fetch_one(&mut **tx)
    .await
}

/// Sets the balances (debits pending, debits posted, credits pending, credits posted) of the
/// accounts `ids`, in one statement whatever their number.
pub(super) async fn set_balances(
    tx: &mut Transaction<'static, Postgres>,
    ids: &[Uuid],
    [dp, dpo, cp, cpo]: &[Vec<i64>; 4],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE accounts a SET debits_pending = u.dp, debits_posted = u.dpo, \
           credits_pending = u.cp, credits_posted = u.cpo \
         FROM UNNEST($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[]) \
           AS u(id, dp, dpo, cp, cpo) WHERE a.id = u.id",
    )
    .bind(ids)
    .bind(dp)
    .bind(dpo)
    .bind(cp)
    .bind(cpo)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_accounts(
    tx: &mut Transaction<'static, Postgres>,
    accounts: &[&Account],
) -> Result<(), sqlx::Error> {
    let col = |f: fn(&Account) -> i64| accounts.iter().map(|a| f(a)).collect::<Vec<i64>>();
    let ids: Vec<Uuid> = accounts.iter().map(|a| uuid(a.id)).collect();
    let ud128: Vec<Uuid> = accounts.iter().map(|a| uuid(a.user_data_128)).collect();
    sqlx::query(
        "INSERT INTO accounts (id, ledger, code, flags, debits_pending, debits_posted, credits_pending, \
           credits_posted, user_data_128, user_data_64, user_data_32, timestamp) \
         SELECT u.id, u.ledger, u.code::integer, u.flags::integer, u.dp, u.dpo, u.cp, u.cpo, u.ud128, u.ud64, u.ud32, u.ts \
         FROM UNNEST($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], \
           $7::bigint[], $8::bigint[], $9::uuid[], $10::bigint[], $11::bigint[], $12::bigint[]) \
           AS u(id, ledger, code, flags, dp, dpo, cp, cpo, ud128, ud64, ud32, ts)",
    )
    .bind(&ids)
    .bind(col(|a| i64::from(a.ledger)))
    .bind(col(|a| i64::from(a.code)))
    .bind(col(|a| i64::from(a.flags.bits())))
    .bind(col(|a| a.debits_pending as i64))
    .bind(col(|a| a.debits_posted as i64))
    .bind(col(|a| a.credits_pending as i64))
    .bind(col(|a| a.credits_posted as i64))
    .bind(&ud128)
    .bind(col(|a| a.user_data_64 as i64))
    .bind(col(|a| i64::from(a.user_data_32)))
    .bind(col(|a| u64_to_i64(a.timestamp)))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Transfers as column arrays, inserted with one UNNEST statement.
struct TransferColumns {
    id: Vec<Uuid>,
    debit: Vec<Uuid>,
    credit: Vec<Uuid>,
    amount: Vec<i64>,
    pending_id: Vec<Uuid>,
    ud128: Vec<Uuid>,
    ud64: Vec<i64>,
    ud32: Vec<i64>,
    timeout: Vec<i64>,
    ledger: Vec<i64>,
    code: Vec<i32>,
    flags: Vec<i32>,
    ts: Vec<i64>,
}

impl TransferColumns {
    fn with_capacity(n: usize) -> Self {
        Self {
            id: Vec::with_capacity(n),
            debit: Vec::with_capacity(n),
            credit: Vec::with_capacity(n),
            amount: Vec::with_capacity(n),
            pending_id: Vec::with_capacity(n),
            ud128: Vec::with_capacity(n),
            ud64: Vec::with_capacity(n),
            ud32: Vec::with_capacity(n),
            timeout: Vec::with_capacity(n),
            ledger: Vec::with_capacity(n),
            code: Vec::with_capacity(n),
            flags: Vec::with_capacity(n),
            ts: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, t: &domain::Transfer) {
        self.id.push(uuid(t.id));
        self.debit.push(uuid(t.debit_account_id));
        self.credit.push(uuid(t.credit_account_id));
        self.amount.push(t.amount as i64);
        self.pending_id.push(uuid(t.pending_id));
        self.ud128.push(uuid(t.user_data_128));
        self.ud64.push(t.user_data_64 as i64);
        self.ud32.push(i64::from(t.user_data_32));
        self.timeout.push(i64::from(t.timeout));
        self.ledger.push(i64::from(t.ledger));
        self.code.push(t.code as i32);
        self.flags.push(t.flags.bits());
        self.ts.push(u64_to_i64(t.timestamp));
    }

    async fn insert(self, tx: &mut Transaction<'static, Postgres>) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO transfers (id, debit_account_id, credit_account_id, amount, pending_id, user_data_128, \
               user_data_64, user_data_32, timeout, ledger, code, flags, timestamp) \
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::bigint[], $5::uuid[], $6::uuid[], \
               $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::integer[], $12::integer[], $13::bigint[])",
        )
        .bind(self.id)
        .bind(self.debit)
        .bind(self.credit)
        .bind(self.amount)
        .bind(self.pending_id)
        .bind(self.ud128)
        .bind(self.ud64)
        .bind(self.ud32)
        .bind(self.timeout)
        .bind(self.ledger)
        .bind(self.code)
        .bind(self.flags)
        .bind(self.ts)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}
