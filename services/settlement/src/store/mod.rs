//! PostgreSQL access, runtime-checked queries. Concurrency rules:
//! - recording an item takes the window row `FOR KEY SHARE` (recorders never block each other);
//! - closing takes it `FOR UPDATE`, so it waits for in-flight recorders and every recorder after
//!   it sees the window closed and moves on to the next one.

use chrono::{DateTime, NaiveDate, Utc};
use payplane_core::Currency;
use sqlx::{AssertSqlSafe, PgConnection, PgPool, migrate::Migrator};
use uuid::Uuid;

use crate::{
    domain::{
        Item, ItemKind,
        netting::{MerchantTotals, Position, WindowTotals},
        reconcile::OurItem,
        window::WindowSpec,
    },
    error::{Error, Result},
};

pub static MIGRATOR: Migrator = sqlx::migrate!();

/// Window states as stored (the proto's numbering).
pub mod state {
    pub const OPEN: i16 = 1;
    pub const CLOSED: i16 = 2;
    pub const SETTLED: i16 = 3;
    pub const RECONCILED: i16 = 4;
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct WindowRow {
    pub window_id: String,
    pub channel_id: String,
    pub currency: String,
    pub business_date: NaiveDate,
    pub opens_at: DateTime<Utc>,
    pub cut_off_at: DateTime<Utc>,
    pub value_date: NaiveDate,
    pub state: i16,
    pub close_attempt: i32,
    pub closed_at: Option<DateTime<Utc>>,
    pub item_count: Option<i64>,
    pub gross_payments: Option<i64>,
    pub gross_refunds: Option<i64>,
    pub fees: Option<i64>,
    pub instructions_sha256: Option<String>,
}

impl WindowRow {
    pub fn currency(&self) -> Result<Currency> {
        self.currency
            .parse()
            .map_err(|e| Error::Internal(format!("stored window currency: {e}")))
    }
}

const WINDOW_COLUMNS: &str = "window_id, channel_id, currency, business_date, opens_at, cut_off_at, value_date, state, \
     close_attempt, closed_at, item_count, gross_payments, gross_refunds, fees, instructions_sha256";

#[derive(sqlx::FromRow)]
struct ItemRow {
    item_id: Uuid,
    kind: i16,
    payment_id: Uuid,
    channel_id: String,
    merchant_id: String,
    currency: String,
    amount: i64,
    fee: i64,
    channel_reference: String,
    cleared_at: DateTime<Utc>,
    window_id: String,
}

const ITEM_COLUMNS: &str = "item_id, kind, payment_id, channel_id, merchant_id, currency, amount, fee, channel_reference, cleared_at, window_id";

impl ItemRow {
    fn into_item(self) -> Result<(Item, String)> {
        let kind = ItemKind::from_code(self.kind)
            .ok_or_else(|| Error::Internal(format!("stored item kind {}", self.kind)))?;
        let currency = self
            .currency
            .parse()
            .map_err(|e| Error::Internal(format!("stored item currency: {e}")))?;
        Ok((
            Item {
                item_id: self.item_id,
                kind,
                payment_id: self.payment_id,
                channel_id: self.channel_id,
                merchant_id: self.merchant_id,
                currency,
                amount: self.amount,
                fee: self.fee,
                channel_reference: self.channel_reference,
                cleared_at: self.cleared_at,
            },
            self.window_id,
        ))
    }
}

/// What happened to an item insert.
pub enum Recorded {
    /// Stored in this window.
    Inserted,
    /// The window is closed: try the next one.
    WindowClosed,
    /// An item with this id exists (a concurrent or earlier record).
    Exists,
}

/// One stored settlement posting.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct PostingRow {
    pub seq: i32,
    pub transfer_id: Uuid,
    pub merchant_id: String,
    pub to_merchant: bool,
    pub amount: i64,
}

/// Everything a close stores with the window.
pub struct CloseRecord<'a> {
    pub totals: &'a WindowTotals,
    pub positions: &'a [Position],
    pub pacs009: &'a [u8],
    pub csv: &'a [u8],
    pub instructions_sha256: &'a str,
    pub postings: &'a [PostingRow],
}

#[derive(Clone)]
pub struct Store {
    pub pool: PgPool,
}

impl Store {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub async fn find_item(&self, item_id: Uuid) -> Result<Option<(Item, String)>> {
        let row: Option<ItemRow> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {ITEM_COLUMNS} FROM settlement_items WHERE item_id = $1"
        )))
        .bind(item_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(ItemRow::into_item).transpose()
    }

    /// Inserts `item` into window `spec` (creating the window) if that window is open.
    pub async fn record(&self, spec: &WindowSpec, item: &Item) -> Result<Recorded> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO settlement_windows (window_id, channel_id, currency, business_date, opens_at, cut_off_at, value_date) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (window_id) DO NOTHING",
        )
        .bind(&spec.window_id)
        .bind(&spec.channel_id)
        .bind(spec.currency.code())
        .bind(spec.business_date)
        .bind(spec.opens_at)
        .bind(spec.cut_off_at)
        .bind(spec.value_date)
        .execute(&mut *tx)
        .await?;
        let (st,): (i16,) =
            sqlx::query_as("SELECT state FROM settlement_windows WHERE window_id = $1 FOR KEY SHARE")
                .bind(&spec.window_id)
                .fetch_one(&mut *tx)
                .await?;
        if st != state::OPEN {
            tx.commit().await?;
            return Ok(Recorded::WindowClosed);
        }
        let inserted = sqlx::query(
            "INSERT INTO settlement_items (item_id, kind, payment_id, channel_id, merchant_id, currency, amount, fee, \
             channel_reference, cleared_at, window_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (item_id) DO NOTHING",
        )
        .bind(item.item_id)
        .bind(item.kind.code())
        .bind(item.payment_id)
        .bind(&item.channel_id)
        .bind(&item.merchant_id)
        .bind(item.currency.code())
        .bind(item.amount)
        .bind(item.fee)
        .bind(&item.channel_reference)
        .bind(item.cleared_at)
        .bind(&spec.window_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(if inserted == 1 {
            Recorded::Inserted
        } else {
            Recorded::Exists
        })
    }

    pub async fn window(&self, window_id: &str) -> Result<Option<WindowRow>> {
        Ok(sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {WINDOW_COLUMNS} FROM settlement_windows WHERE window_id = $1"
        )))
        .bind(window_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Locks the window for closing.
    pub async fn window_for_update(conn: &mut PgConnection, window_id: &str) -> Result<Option<WindowRow>> {
        Ok(sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {WINDOW_COLUMNS} FROM settlement_windows WHERE window_id = $1 FOR UPDATE"
        )))
        .bind(window_id)
        .fetch_optional(conn)
        .await?)
    }

    /// (items, gross payments, gross refunds, fees) of an open window, from its items.
    pub async fn live_totals(&self, window_id: &str) -> Result<(i64, i64, i64, i64)> {
        Ok(sqlx::query_as(
            "SELECT count(*)::bigint, \
                    coalesce(sum(amount) FILTER (WHERE kind = 1), 0)::bigint, \
                    coalesce(sum(amount) FILTER (WHERE kind = 2), 0)::bigint, \
                    coalesce(sum(fee), 0)::bigint \
             FROM settlement_items WHERE window_id = $1",
        )
        .bind(window_id)
        .fetch_one(&self.pool)
        .await?)
    }

    pub async fn list_windows(
        &self,
        channel: Option<&str>,
        currency: Option<&str>,
        st: Option<i16>,
        after: &str,
        limit: i64,
    ) -> Result<Vec<WindowRow>> {
        Ok(sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {WINDOW_COLUMNS} FROM settlement_windows \
             WHERE ($1::text IS NULL OR channel_id = $1) AND ($2::text IS NULL OR currency = $2) \
               AND ($3::smallint IS NULL OR state = $3) AND window_id > $4 \
             ORDER BY window_id LIMIT $5"
        )))
        .bind(channel)
        .bind(currency)
        .bind(st)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Windows whose cut-off passed before `before` and that are still open (or, with
    /// `with_closed`, closed with postings still to send).
    pub async fn due_windows(&self, before: DateTime<Utc>, with_closed: bool) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT window_id FROM settlement_windows WHERE (state = 1 OR (state = 2 AND $2)) AND cut_off_at < $1 \
             ORDER BY cut_off_at, window_id",
        )
        .bind(before)
        .bind(with_closed)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    pub async fn list_items(&self, window_id: &str, after: Uuid, limit: i64) -> Result<Vec<(Item, String)>> {
        let rows: Vec<ItemRow> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {ITEM_COLUMNS} FROM settlement_items WHERE window_id = $1 AND item_id > $2 ORDER BY item_id LIMIT $3"
        )))
        .bind(window_id)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(ItemRow::into_item).collect()
    }

    /// Per-merchant totals of a window, computed in the database.
    pub async fn merchant_totals(conn: &mut PgConnection, window_id: &str) -> Result<WindowTotals> {
        let rows: Vec<(String, i64, i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT merchant_id, \
                    coalesce(sum(amount) FILTER (WHERE kind = 1), 0)::bigint, \
                    count(*) FILTER (WHERE kind = 1), \
                    coalesce(sum(amount) FILTER (WHERE kind = 2), 0)::bigint, \
                    count(*) FILTER (WHERE kind = 2), \
                    coalesce(sum(fee), 0)::bigint \
             FROM settlement_items WHERE window_id = $1 GROUP BY merchant_id",
        )
        .bind(window_id)
        .fetch_all(conn)
        .await?;
        let mut totals = WindowTotals::default();
        for (merchant, payments, payment_count, refunds, refund_count, fees) in rows {
            totals.merchants.insert(
                merchant,
                MerchantTotals {
                    payments,
                    payment_count: payment_count as u64,
                    refunds,
                    refund_count: refund_count as u64,
                    fees,
                },
            );
        }
        Ok(totals)
    }

    /// Marks a window CLOSED and stores what the close computed.
    pub async fn store_close(conn: &mut PgConnection, window_id: &str, r: &CloseRecord<'_>) -> Result<()> {
        let (payments, refunds, fees) = r.totals.sums()?;
        sqlx::query(
            "UPDATE settlement_windows SET state = 2, closed_at = now(), item_count = $2, gross_payments = $3, \
             gross_refunds = $4, fees = $5, instructions_sha256 = $6 WHERE window_id = $1",
        )
        .bind(window_id)
        .bind(r.totals.item_count() as i64)
        .bind(payments)
        .bind(refunds)
        .bind(fees)
        .bind(r.instructions_sha256)
        .execute(&mut *conn)
        .await?;
        let participants: Vec<&str> = r.positions.iter().map(|p| p.participant_id.as_str()).collect();
        let receivable: Vec<i64> = r.positions.iter().map(|p| p.receivable).collect();
        let payable: Vec<i64> = r.positions.iter().map(|p| p.payable).collect();
        let net: Vec<i64> = r.positions.iter().map(|p| p.net).collect();
        sqlx::query(
            "INSERT INTO settlement_positions (window_id, participant_id, receivable, payable, net) \
             SELECT $1, * FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::bigint[])",
        )
        .bind(window_id)
        .bind(&participants)
        .bind(&receivable)
        .bind(&payable)
        .bind(&net)
        .execute(&mut *conn)
        .await?;
        for (kind, body) in [("pacs009", r.pacs009), ("csv", r.csv)] {
            sqlx::query(
                "INSERT INTO settlement_documents (window_id, kind, body, sha256) VALUES ($1, $2, $3, $4)",
            )
            .bind(window_id)
            .bind(kind)
            .bind(body)
            .bind(crate::domain::instructions::sha256_hex(body))
            .execute(&mut *conn)
            .await?;
        }
        let seq: Vec<i32> = r.postings.iter().map(|p| p.seq).collect();
        let ids: Vec<Uuid> = r.postings.iter().map(|p| p.transfer_id).collect();
        let merchants: Vec<&str> = r.postings.iter().map(|p| p.merchant_id.as_str()).collect();
        let to_merchant: Vec<bool> = r.postings.iter().map(|p| p.to_merchant).collect();
        let amounts: Vec<i64> = r.postings.iter().map(|p| p.amount).collect();
        sqlx::query(
            "INSERT INTO settlement_postings (window_id, seq, transfer_id, merchant_id, to_merchant, amount) \
             SELECT $1, * FROM unnest($2::int[], $3::uuid[], $4::text[], $5::bool[], $6::bigint[])",
        )
        .bind(window_id)
        .bind(&seq)
        .bind(&ids)
        .bind(&merchants)
        .bind(&to_merchant)
        .bind(&amounts)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    pub async fn postings(&self, window_id: &str) -> Result<Vec<PostingRow>> {
        Ok(sqlx::query_as(
            "SELECT seq, transfer_id, merchant_id, to_merchant, amount FROM settlement_postings WHERE window_id = $1 ORDER BY seq",
        )
        .bind(window_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Accounting accepted the postings.
    pub async fn mark_settled(&self, window_id: &str) -> Result<()> {
        sqlx::query("UPDATE settlement_windows SET state = 3 WHERE window_id = $1 AND state = 2")
            .bind(window_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Accounting refused the postings (and applied none): undo the close entirely and move to
    /// fresh transfer ids for the next attempt.
    pub async fn reopen(&self, window_id: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let locked = Self::window_for_update(&mut tx, window_id).await?;
        if locked.map(|w| w.state) != Some(state::CLOSED) {
            return Err(Error::Internal(format!(
                "window {window_id} was not CLOSED when reopening"
            )));
        }
        for table in [
            "settlement_positions",
            "settlement_documents",
            "settlement_postings",
        ] {
            sqlx::query(AssertSqlSafe(format!("DELETE FROM {table} WHERE window_id = $1")))
                .bind(window_id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "UPDATE settlement_windows SET state = 1, closed_at = NULL, item_count = NULL, gross_payments = NULL, \
             gross_refunds = NULL, fees = NULL, instructions_sha256 = NULL, close_attempt = close_attempt + 1 \
             WHERE window_id = $1",
        )
        .bind(window_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn positions(&self, window_id: &str) -> Result<Vec<Position>> {
        let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
            "SELECT participant_id, receivable, payable, net FROM settlement_positions WHERE window_id = $1 ORDER BY participant_id",
        )
        .bind(window_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(participant_id, receivable, payable, net)| Position {
                participant_id,
                receivable,
                payable,
                net,
            })
            .collect())
    }

    pub async fn document(&self, window_id: &str, kind: &str) -> Result<Option<(Vec<u8>, String)>> {
        Ok(
            sqlx::query_as(
                "SELECT body, sha256 FROM settlement_documents WHERE window_id = $1 AND kind = $2",
            )
            .bind(window_id)
            .bind(kind)
            .fetch_optional(&self.pool)
            .await?,
        )
    }

    /// What reconciliation needs of every item of a window.
    pub async fn reconciliation_items(&self, window_id: &str) -> Result<Vec<OurItem>> {
        let rows: Vec<(Uuid, String, i16, i64)> = sqlx::query_as(
            "SELECT item_id, channel_reference, kind, amount FROM settlement_items WHERE window_id = $1",
        )
        .bind(window_id)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(item_id, channel_reference, kind, amount)| {
                let kind = ItemKind::from_code(kind)
                    .ok_or_else(|| Error::Internal(format!("stored item kind {kind}")))?;
                Ok(OurItem {
                    item_id,
                    channel_reference,
                    kind,
                    amount,
                })
            })
            .collect()
    }

    /// Stores the report (replacing an earlier one) and marks a settled window reconciled.
    pub async fn store_reconciliation(
        &self,
        window_id: &str,
        statement_sha256: &str,
        report_json: &[u8],
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO settlement_reconciliations (window_id, statement_sha256, report_json) VALUES ($1, $2, $3) \
             ON CONFLICT (window_id) DO UPDATE SET statement_sha256 = $2, report_json = $3, reconciled_at = now()",
        )
        .bind(window_id)
        .bind(statement_sha256)
        .bind(report_json)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE settlement_windows SET state = 4 WHERE window_id = $1 AND state = 3")
            .bind(window_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn reconciliation(&self, window_id: &str) -> Result<Option<Vec<u8>>> {
        let row: Option<(Vec<u8>,)> =
            sqlx::query_as("SELECT report_json FROM settlement_reconciliations WHERE window_id = $1")
                .bind(window_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|r| r.0))
    }
}
