//! Rewriting wrong balances from the transfers (RepairBalances). The transfers are the ledger's
//! record and never change; an account's balances are their sums, kept in the account's row so
//! a write reads one row rather than the account's history. A fault that wrote wrong balances (a
//! bad release: the rollout's ledger guard sees it, the rollback stops it) leaves them wrong until
//! an operator rewrites them here. The check and the repair share one definition of "what the
//! transfers add up to", so a repaired ledger passes the check by construction.

use sqlx::{Postgres, Row, Transaction};
use uuid::Uuid;

use super::{
    Store,
    rows::uuid,
    write::{advance_clock, set_balances},
};
use crate::domain::{Balances, Id, TRANSFER_FLAG_PENDING, TRANSFER_FLAG_VOID};

/// At most this many repairs are returned; all are applied and recorded.
const REPAIRS_LISTED: usize = 1000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BalanceRepair {
    pub account_id: Id,
    pub ledger: u32,
    pub before: Balances,
    pub after: Balances,
}

#[derive(Clone, Debug, Default)]
pub struct RepairReport {
    pub repairs: Vec<BalanceRepair>,
    pub repaired_count: u64,
    /// Ledger timestamp of the repair (of the snapshot, for a dry run).
    pub repaired_at: u64,
    pub dry_run: bool,
}

/// A `WITH` clause ending in `bad`: every account (of ledger `$1`, or all when `$1 < 0`) whose
/// balances differ from the sums of its transfers, with both (`sdp`..`scpo` as text: sums can
/// exceed bigint in a corrupt ledger). Posted = plain and post transfers (not pending, not void);
/// pending = pending transfers still pending.
pub(super) fn mismatched_accounts() -> String {
    format!(
        "WITH legs AS ( \
           SELECT t.debit_account_id AS account_id, \
             CASE WHEN t.flags & {hold} = 0 THEN t.amount ELSE 0 END AS dpo, \
             CASE WHEN p.state = 1 THEN t.amount ELSE 0 END AS dp, 0::bigint AS cpo, 0::bigint AS cp \
           FROM transfers t LEFT JOIN pending_transfers p ON p.id = t.id \
           UNION ALL \
           SELECT t.credit_account_id, 0, 0, \
             CASE WHEN t.flags & {hold} = 0 THEN t.amount ELSE 0 END, \
             CASE WHEN p.state = 1 THEN t.amount ELSE 0 END \
           FROM transfers t LEFT JOIN pending_transfers p ON p.id = t.id), \
         sums AS (SELECT account_id, sum(dp) AS dp, sum(dpo) AS dpo, sum(cp) AS cp, sum(cpo) AS cpo \
           FROM legs GROUP BY account_id), \
         bad AS (SELECT a.id, a.ledger, a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted, \
             coalesce(s.dp, 0)::text AS sdp, coalesce(s.dpo, 0)::text AS sdpo, \
             coalesce(s.cp, 0)::text AS scp, coalesce(s.cpo, 0)::text AS scpo \
           FROM accounts a LEFT JOIN sums s ON s.account_id = a.id \
           WHERE ($1 < 0 OR a.ledger = $1) AND (a.debits_pending <> coalesce(s.dp, 0) \
             OR a.debits_posted <> coalesce(s.dpo, 0) OR a.credits_pending <> coalesce(s.cp, 0) \
             OR a.credits_posted <> coalesce(s.cpo, 0))) ",
        hold = TRANSFER_FLAG_PENDING | TRANSFER_FLAG_VOID
    )
}

impl Store {
    /// Rewrites the balances of every account whose balances differ from its transfers' sums
    /// (of `ledger`, or all), recording each change with `reason`. The write takes the ledger
    /// clock's row lock first, like every write, so no transfer lands between the read and the
    /// rewrite. A dry run reads one snapshot and changes nothing.
    pub async fn repair_balances(
        &self,
        ledger: Option<u32>,
        reason: &str,
        dry_run: bool,
    ) -> Result<RepairReport, sqlx::Error> {
        let (mut tx, repaired_at) = if dry_run {
            self.snapshot().await?
        } else {
            let mut tx = self.pool.begin().await?;
            let at = advance_clock(&mut tx, 1).await?;
            (tx, at)
        };
        let mut repairs = mismatched(&mut tx, ledger).await?;
        if !dry_run && !repairs.is_empty() {
            rewrite(&mut tx, &repairs, repaired_at, reason).await?;
        }
        tx.commit().await?;
        let repaired_count = repairs.len() as u64;
        repairs.truncate(REPAIRS_LISTED);
        Ok(RepairReport {
            repairs,
            repaired_count,
            repaired_at: repaired_at as u64,
            dry_run,
        })
    }
}

async fn mismatched(
    tx: &mut Transaction<'static, Postgres>,
    ledger: Option<u32>,
) -> Result<Vec<BalanceRepair>, sqlx::Error> {
    let sql = format!("{} SELECT * FROM bad ORDER BY id", mismatched_accounts());
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(ledger.map(i64::from).unwrap_or(-1))
        .fetch_all(&mut **tx)
        .await?;
    let balance = |r: &sqlx::postgres::PgRow, c: &str| -> Result<u64, sqlx::Error> {
        let sum: String = r.try_get(c)?;
        // Balances live in bigint: a sum beyond it cannot be written back, and means the
        // transfers themselves are wrong, which no rewrite of balances can fix.
        sum.parse::<i64>()
            .ok()
            .and_then(|v| u64::try_from(v).ok())
            .ok_or_else(|| {
                sqlx::Error::Protocol(format!("column {c}: transfers sum to {sum}, beyond a balance"))
            })
    };
    let stored = |r: &sqlx::postgres::PgRow, c: &str| r.try_get::<i64, _>(c).map(|v| v as u64);
    rows.iter()
        .map(|r| {
            Ok(BalanceRepair {
                account_id: r.try_get::<Uuid, _>("id")?.as_u128(),
                ledger: r.try_get::<i64, _>("ledger")? as u32,
                before: Balances {
                    debits_pending: stored(r, "debits_pending")?,
                    debits_posted: stored(r, "debits_posted")?,
                    credits_pending: stored(r, "credits_pending")?,
                    credits_posted: stored(r, "credits_posted")?,
                },
                after: Balances {
                    debits_pending: balance(r, "sdp")?,
                    debits_posted: balance(r, "sdpo")?,
                    credits_pending: balance(r, "scp")?,
                    credits_posted: balance(r, "scpo")?,
                },
            })
        })
        .collect()
}

/// The four balance columns of `balances`, as bigint arrays for `UNNEST`.
fn columns<'a>(balances: impl Iterator<Item = &'a Balances>) -> [Vec<i64>; 4] {
    let mut c: [Vec<i64>; 4] = Default::default();
    for b in balances {
        c[0].push(b.debits_pending as i64);
        c[1].push(b.debits_posted as i64);
        c[2].push(b.credits_pending as i64);
        c[3].push(b.credits_posted as i64);
    }
    c
}

async fn rewrite(
    tx: &mut Transaction<'static, Postgres>,
    repairs: &[BalanceRepair],
    at: i64,
    reason: &str,
) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = repairs.iter().map(|r| uuid(r.account_id)).collect();
    let ledgers: Vec<i64> = repairs.iter().map(|r| i64::from(r.ledger)).collect();
    let [bdp, bdpo, bcp, bcpo] = columns(repairs.iter().map(|r| &r.before));
    let after = columns(repairs.iter().map(|r| &r.after));
    set_balances(tx, &ids, &after).await?;
    let [adp, adpo, acp, acpo] = after;
    sqlx::query(
        "INSERT INTO balance_repairs (account_id, timestamp, ledger, reason, \
           before_debits_pending, before_debits_posted, before_credits_pending, before_credits_posted, \
           after_debits_pending, after_debits_posted, after_credits_pending, after_credits_posted) \
         SELECT u.id, $2, u.ledger, $3, u.bdp, u.bdpo, u.bcp, u.bcpo, u.adp, u.adpo, u.acp, u.acpo \
         FROM UNNEST($1::uuid[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[], \
           $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[]) \
           AS u(id, ledger, bdp, bdpo, bcp, bcpo, adp, adpo, acp, acpo)",
    )
    .bind(&ids)
    .bind(at)
    .bind(reason)
    .bind(&ledgers)
    .bind(&bdp)
    .bind(&bdpo)
    .bind(&bcp)
    .bind(&bcpo)
    .bind(&adp)
    .bind(&adpo)
    .bind(&acp)
    .bind(&acpo)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
