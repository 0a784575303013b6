//! PostgreSQL access: the group-commit writer, lookups, history queries, the invariant check and
//! the balance repair.
//! Queries are checked at run time (no DATABASE_URL needed to build).

mod committer;
mod repair;
mod rows;
mod write;

use std::time::Duration;

use sqlx::{PgPool, Row};
use uuid::Uuid;

pub use committer::{Committer, GroupConfig, Observer};
pub use repair::{BalanceRepair, RepairReport};
pub use write::{GroupStats, Job, JobResult, Phases};

use crate::domain::{Account, Balances, Id, Transfer};
use rows::{account_from_row, transfer_from_row, u64_to_i64, uuid};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Which transfers of one account to list (AccountFilter, validated).
#[derive(Clone, Debug)]
pub struct Filter {
    pub account_id: Id,
    pub timestamp_min: u64,
    /// Inclusive; `u64::MAX`-ish for unbounded.
    pub timestamp_max: u64,
    pub limit: u32,
    pub debits: bool,
    pub credits: bool,
    pub reversed: bool,
}

/// One page of results and the timestamp to continue after, if there may be more.
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_after: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BalanceAt {
    pub transfer_id: Id,
    pub timestamp: u64,
    pub balances: Balances,
}

#[derive(Clone, Debug, Default)]
pub struct LedgerTotals {
    pub ledger: u32,
    pub debits_pending: u128,
    pub debits_posted: u128,
    pub credits_pending: u128,
    pub credits_posted: u128,
    pub account_count: u64,
    pub transfer_count: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViolationKind {
    LedgerUnbalanced,
    AccountBalanceMismatch,
    PendingTransferExpired,
    AccountLimitExceeded,
}

#[derive(Clone, Debug)]
pub struct Violation {
    pub kind: ViolationKind,
    pub ledger: u32,
    pub subject_id: Option<Id>,
    pub detail: String,
}

#[derive(Clone, Debug, Default)]
pub struct InvariantReport {
    pub checked_at: u64,
    pub ledgers: Vec<LedgerTotals>,
    pub violations: Vec<Violation>,
    pub violation_count: u64,
}

const VIOLATIONS_LISTED: i64 = 100;

#[derive(Clone)]
pub struct Store {
    pub pool: PgPool,
}

impl Store {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub async fn lookup_accounts(&self, ids: &[Id]) -> Result<Vec<Account>, sqlx::Error> {
        let uuids: Vec<Uuid> = ids.iter().map(|id| uuid(*id)).collect();
        let rows = sqlx::query("SELECT * FROM accounts WHERE id = ANY($1)")
            .bind(&uuids)
            .fetch_all(&self.pool)
            .await?;
        let found: std::collections::HashMap<Id, Account> = rows
            .iter()
            .map(account_from_row)
            .map(|r| r.map(|a| (a.id, a)))
            .collect::<Result<_, _>>()?;
        Ok(ids.iter().filter_map(|id| found.get(id).cloned()).collect())
    }

    pub async fn lookup_transfers(&self, ids: &[Id]) -> Result<Vec<Transfer>, sqlx::Error> {
        let uuids: Vec<Uuid> = ids.iter().map(|id| uuid(*id)).collect();
        let rows = sqlx::query("SELECT * FROM transfers WHERE id = ANY($1)")
            .bind(&uuids)
            .fetch_all(&self.pool)
            .await?;
        let found: std::collections::HashMap<Id, Transfer> = rows
            .iter()
            .map(transfer_from_row)
            .map(|r| r.map(|t| (t.id, t)))
            .collect::<Result<_, _>>()?;
        Ok(ids.iter().filter_map(|id| found.get(id).cloned()).collect())
    }

    /// Transfers of an account ordered by timestamp; `after` continues a previous page.
    pub async fn account_transfers(
        &self,
        f: &Filter,
        after: Option<u64>,
    ) -> Result<Page<Transfer>, sqlx::Error> {
        let (min, max) = bounds(f, after);
        let side = side_condition(f, "");
        let order = if f.reversed { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT * FROM transfers WHERE ({side}) AND timestamp >= $2 AND timestamp <= $3 \
             ORDER BY timestamp {order} LIMIT $4"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(uuid(f.account_id))
            .bind(min)
            .bind(max)
            .bind(i64::from(f.limit) + 1)
            .fetch_all(&self.pool)
            .await?;
        let mut items: Vec<Transfer> = rows.iter().map(transfer_from_row).collect::<Result<_, _>>()?;
        let next_after = more(&mut items, f.limit)
            .then(|| items.last().map(|t| t.timestamp))
            .flatten();
        Ok(Page { items, next_after })
    }

    /// Balance snapshots of an account (kept only for accounts with flags.history).
    pub async fn account_balances(
        &self,
        f: &Filter,
        after: Option<u64>,
    ) -> Result<Page<BalanceAt>, sqlx::Error> {
        let (min, max) = bounds(f, after);
        let side = side_condition(f, "t.");
        let order = if f.reversed { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT b.* FROM account_balances b JOIN transfers t ON t.id = b.transfer_id \
             WHERE b.account_id = $1 AND ({side}) AND b.timestamp >= $2 AND b.timestamp <= $3 \
             ORDER BY b.timestamp {order} LIMIT $4"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(uuid(f.account_id))
            .bind(min)
            .bind(max)
            .bind(i64::from(f.limit) + 1)
            .fetch_all(&self.pool)
            .await?;
        let mut items = rows
            .iter()
            .map(|r| {
                Ok(BalanceAt {
                    transfer_id: r.try_get::<Uuid, _>("transfer_id")?.as_u128(),
                    timestamp: r.try_get::<i64, _>("timestamp")? as u64,
                    balances: Balances {
                        debits_pending: r.try_get::<i64, _>("debits_pending")? as u64,
                        debits_posted: r.try_get::<i64, _>("debits_posted")? as u64,
                        credits_pending: r.try_get::<i64, _>("credits_pending")? as u64,
                        credits_posted: r.try_get::<i64, _>("credits_posted")? as u64,
                    },
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let next_after = more(&mut items, f.limit)
            .then(|| items.last().map(|b| b.timestamp))
            .flatten();
        Ok(Page { items, next_after })
    }

    /// Checks the ledger's invariants on one consistent snapshot. `grace` is how late the
    /// expiry of a pending transfer may be before it counts as a violation (expiry runs in
    /// every write transaction and on an idle tick, so it is never later than one tick).
    pub async fn check_invariants(
        &self,
        ledger: Option<u32>,
        grace: Duration,
    ) -> Result<InvariantReport, sqlx::Error> {
        let (mut tx, checked_at) = self.snapshot().await?;
        let ledger_filter = ledger.map(i64::from).unwrap_or(-1);
        let mut report = InvariantReport {
            checked_at: checked_at as u64,
            ..Default::default()
        };

        let rows = sqlx::query(
            "SELECT ledger, sum(debits_pending)::text AS dp, sum(debits_posted)::text AS dpo, \
               sum(credits_pending)::text AS cp, sum(credits_posted)::text AS cpo, count(*) AS n, \
               (SELECT count(*) FROM transfers t WHERE t.ledger = a.ledger) AS transfers \
             FROM accounts a WHERE $1 < 0 OR ledger = $1 GROUP BY ledger ORDER BY ledger",
        )
        .bind(ledger_filter)
        .fetch_all(&mut *tx)
        .await?;
        let num = |r: &sqlx::postgres::PgRow, c: &str| -> Result<u128, sqlx::Error> {
            let s: String = r.try_get(c)?;
            s.parse::<u128>().map_err(|e| sqlx::Error::Decode(Box::new(e)))
        };
        for r in &rows {
            let t = LedgerTotals {
                ledger: r.try_get::<i64, _>("ledger")? as u32,
                debits_pending: num(r, "dp")?,
                debits_posted: num(r, "dpo")?,
                credits_pending: num(r, "cp")?,
                credits_posted: num(r, "cpo")?,
                account_count: r.try_get::<i64, _>("n")? as u64,
                transfer_count: r.try_get::<i64, _>("transfers")? as u64,
            };
            if t.debits_pending != t.credits_pending || t.debits_posted != t.credits_posted {
                report.violations.push(Violation {
                    kind: ViolationKind::LedgerUnbalanced,
                    ledger: t.ledger,
                    subject_id: None,
                    detail: format!(
                        "ledger {}: debits pending {} / posted {} but credits pending {} / posted {}",
                        t.ledger, t.debits_pending, t.debits_posted, t.credits_pending, t.credits_posted
                    ),
                });
            }
            report.ledgers.push(t);
        }
        report.violation_count = report.violations.len() as u64;

        // Each account's balances against its transfers' sums.
        let mismatch_sql = format!(
            "{} SELECT *, count(*) OVER () AS total FROM bad ORDER BY id LIMIT $2",
            repair::mismatched_accounts()
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(mismatch_sql))
            .bind(ledger_filter)
            .bind(VIOLATIONS_LISTED)
            .fetch_all(&mut *tx)
            .await?;
        if let Some(r) = rows.first() {
            report.violation_count += r.try_get::<i64, _>("total")? as u64;
        }
        for r in &rows {
            let id: Uuid = r.try_get("id")?;
            report.violations.push(Violation {
                kind: ViolationKind::AccountBalanceMismatch,
                ledger: r.try_get::<i64, _>("ledger")? as u32,
                subject_id: Some(id.as_u128()),
                detail: format!(
                    "account {id}: balances (debits pending {}, posted {}; credits pending {}, posted {}) \
                     but its transfers sum to (debits pending {}, posted {}; credits pending {}, posted {})",
                    r.try_get::<i64, _>("debits_pending")?,
                    r.try_get::<i64, _>("debits_posted")?,
                    r.try_get::<i64, _>("credits_pending")?,
                    r.try_get::<i64, _>("credits_posted")?,
                    r.try_get::<String, _>("sdp")?,
                    r.try_get::<String, _>("sdpo")?,
                    r.try_get::<String, _>("scp")?,
                    r.try_get::<String, _>("scpo")?,
                ),
            });
        }

        let overdue_before = checked_at.saturating_sub(grace.as_nanos() as i64);
        let rows = sqlx::query(
            "SELECT p.id, t.ledger, p.expires_at, t.amount, count(*) OVER () AS total \
             FROM pending_transfers p JOIN transfers t ON t.id = p.id \
             WHERE p.state = 1 AND p.expires_at > 0 AND p.expires_at < $1 AND ($2 < 0 OR t.ledger = $2) \
             ORDER BY p.expires_at LIMIT $3",
        )
        .bind(overdue_before)
        .bind(ledger_filter)
        .bind(VIOLATIONS_LISTED)
        .fetch_all(&mut *tx)
        .await?;
        if let Some(r) = rows.first() {
            report.violation_count += r.try_get::<i64, _>("total")? as u64;
        }
        for r in &rows {
            let id: Uuid = r.try_get("id")?;
            let expires_at: i64 = r.try_get("expires_at")?;
            report.violations.push(Violation {
                kind: ViolationKind::PendingTransferExpired,
                ledger: r.try_get::<i64, _>("ledger")? as u32,
                subject_id: Some(id.as_u128()),
                detail: format!(
                    "pending transfer {id} still holds {} although it expired {} ms ago",
                    r.try_get::<i64, _>("amount")?,
                    (checked_at - expires_at) / 1_000_000
                ),
            });
        }

        let rows = sqlx::query(
            "SELECT id, ledger, debits_pending, debits_posted, credits_pending, credits_posted, \
               count(*) OVER () AS total FROM accounts \
             WHERE ($1 < 0 OR ledger = $1) AND ( \
               (flags & 2 <> 0 AND debits_pending::numeric + debits_posted > credits_posted) OR \
               (flags & 4 <> 0 AND credits_pending::numeric + credits_posted > debits_posted)) \
             ORDER BY id LIMIT $2",
        )
        .bind(ledger_filter)
        .bind(VIOLATIONS_LISTED)
        .fetch_all(&mut *tx)
        .await?;
        if let Some(r) = rows.first() {
            report.violation_count += r.try_get::<i64, _>("total")? as u64;
        }
        for r in &rows {
            let id: Uuid = r.try_get("id")?;
            report.violations.push(Violation {
                kind: ViolationKind::AccountLimitExceeded,
                ledger: r.try_get::<i64, _>("ledger")? as u32,
                subject_id: Some(id.as_u128()),
                detail: format!(
                    "account {id} breaks its balance limit: debits pending {} + posted {}, credits pending {} + posted {}",
                    r.try_get::<i64, _>("debits_pending")?,
                    r.try_get::<i64, _>("debits_posted")?,
                    r.try_get::<i64, _>("credits_pending")?,
                    r.try_get::<i64, _>("credits_posted")?,
                ),
            });
        }
        report.violations.truncate(VIOLATIONS_LISTED as usize);
        tx.commit().await?;
        Ok(report)
    }
}

impl Store {
    /// A read-only transaction on one consistent snapshot, and the ledger time it stands for.
    async fn snapshot(&self) -> Result<(sqlx::Transaction<'static, sqlx::Postgres>, i64), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        let at = sqlx::query_scalar(
            "SELECT GREATEST(last_timestamp, (extract(epoch FROM clock_timestamp()) * 1000000000)::bigint) \
             FROM ledger_clock WHERE id = 1",
        )
        .fetch_one(&mut *tx)
        .await?;
        Ok((tx, at))
    }
}

fn side_condition(f: &Filter, prefix: &str) -> String {
    match (f.debits, f.credits) {
        (true, false) => format!("{prefix}debit_account_id = $1"),
        (false, true) => format!("{prefix}credit_account_id = $1"),
        _ => format!("{prefix}debit_account_id = $1 OR {prefix}credit_account_id = $1"),
    }
}

/// Inclusive timestamp bounds as stored (bigint), narrowed by the page cursor.
fn bounds(f: &Filter, after: Option<u64>) -> (i64, i64) {
    let mut min = f.timestamp_min.min(i64::MAX as u64);
    let mut max = f.timestamp_max.min(i64::MAX as u64);
    if let Some(after) = after {
        if f.reversed {
            max = max.min(after.saturating_sub(1));
        } else {
            min = min.max(after.saturating_add(1));
        }
    }
    (u64_to_i64(min), u64_to_i64(max))
}

/// Trims the extra row fetched to learn whether another page exists.
fn more<T>(items: &mut Vec<T>, limit: u32) -> bool {
    if items.len() > limit as usize {
        items.truncate(limit as usize);
        true
    } else {
        false
    }
}
