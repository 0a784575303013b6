//! PostgreSQL: payments and refunds, their saga state and their leases. Runtime-checked queries
//! (no database needed to build). Every write of a saga step is conditional on holding the lease,
//! so a request whose lease ran out can never overwrite what the recovery loop decided.

use std::time::Duration;

use chrono::{DateTime, Utc};
use payplane_proto::common::v1::PaymentMethod;
use sqlx::{PgPool, Row, postgres::PgRow};
use uuid::Uuid;

use crate::{
    domain::{
        NewPayment, SagaState, Status, Step,
        refund::{self, RefundRefusal, RefundState},
    },
    error::{Error, Result},
};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A payment as stored.
#[derive(Clone, Debug)]
pub struct PaymentRow {
    pub id: Uuid,
    pub request: NewPayment,
    pub saga: SagaState,
    /// Refunded or being refunded.
    pub refund_reserved: i64,
    pub hold_timeout_secs: u32,
    pub cleared_at: Option<DateTime<Utc>>,
    pub trace_id: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Debug)]
pub struct RefundRow {
    pub id: Uuid,
    pub payment_id: Uuid,
    pub idempotency_key: String,
    pub amount: i64,
    pub reason: String,
    pub state: RefundState,
    pub cleared_at: Option<DateTime<Utc>>,
    pub trace_id: String,
    pub created_at: DateTime<Utc>,
}

pub enum Inserted {
    New(PaymentRow),
    Existing(PaymentRow),
}

pub enum RefundInserted {
    New(RefundRow, PaymentRow),
    Existing(RefundRow, PaymentRow),
}

/// A page position for `ListPayments`: newest first, then by id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub payment_id: Uuid,
}

fn bad_row(what: &str) -> Error {
    Error::Anomaly(format!("stored row has an invalid {what}"))
}

fn payment_from_row(row: &PgRow) -> Result<PaymentRow> {
    let method: i32 = row.try_get("method")?;
    let currency: String = row.try_get("currency")?;
    let request = NewPayment {
        idempotency_key: row.try_get("idempotency_key")?,
        payer_id: row.try_get("payer_id")?,
        merchant_id: row.try_get("merchant_id")?,
        amount: row.try_get("amount_minor")?,
        currency: currency.parse().map_err(|_| bad_row("currency"))?,
        method: PaymentMethod::try_from(method).map_err(|_| bad_row("method"))?,
        scene: row.try_get("scene")?,
        card_bin: row.try_get("card_bin")?,
    };
    let saga = SagaState {
        step: Step::from_code(row.try_get("step")?).ok_or_else(|| bad_row("step"))?,
        status: Status::from_code(row.try_get("status")?).ok_or_else(|| bad_row("status"))?,
        channel_id: row.try_get("channel_id")?,
        fee: row.try_get("fee_minor")?,
        channel_reference: row.try_get("channel_reference")?,
        failure_reason: row.try_get("failure_reason")?,
    };
    let hold_timeout: i32 = row.try_get("hold_timeout_secs")?;
    Ok(PaymentRow {
        id: row.try_get("payment_id")?,
        request,
        saga,
        refund_reserved: row.try_get("refunded_minor")?,
        hold_timeout_secs: hold_timeout.max(0) as u32,
        cleared_at: row.try_get("cleared_at")?,
        trace_id: row.try_get("trace_id")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn refund_from_row(row: &PgRow) -> Result<RefundRow> {
    Ok(RefundRow {
        id: row.try_get("refund_id")?,
        payment_id: row.try_get("payment_id")?,
        idempotency_key: row.try_get("idempotency_key")?,
        amount: row.try_get("amount_minor")?,
        reason: row.try_get("reason")?,
        state: RefundState {
            step: Step::from_code(row.try_get("step")?).ok_or_else(|| bad_row("refund step"))?,
            status: Status::from_code(row.try_get("status")?).ok_or_else(|| bad_row("refund status"))?,
            channel_reference: row.try_get("channel_reference")?,
            failure_reason: row.try_get("failure_reason")?,
        },
        cleared_at: row.try_get("cleared_at")?,
        trace_id: row.try_get("trace_id")?,
        created_at: row.try_get("created_at")?,
    })
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[derive(Clone)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Persists a new PENDING payment under its idempotency key, leased to `owner`; or returns the
    /// payment that already holds the key.
    pub async fn insert_payment(
        &self,
        id: Uuid,
        p: &NewPayment,
        trace_id: &str,
        owner: Uuid,
        lease: Duration,
    ) -> Result<Inserted> {
        let row = sqlx::query(
            "INSERT INTO payments (payment_id, merchant_id, idempotency_key, payer_id, amount_minor, currency,
                 method, scene, card_bin, status, step, trace_id, created_at, updated_at, lease_owner, lease_until)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, now(), now(), $13,
                 now() + make_interval(secs => $14))
             ON CONFLICT (merchant_id, idempotency_key) DO NOTHING
             RETURNING *",
        )
        .bind(id)
        .bind(&p.merchant_id)
        .bind(&p.idempotency_key)
        .bind(&p.payer_id)
        .bind(p.amount)
        .bind(p.currency.code())
        .bind(p.method as i32)
        .bind(&p.scene)
        .bind(&p.card_bin)
        .bind(Status::Pending.code())
        .bind(Step::Accepted.code())
        .bind(trace_id)
        .bind(owner)
        .bind(secs(lease))
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = row {
            return Ok(Inserted::New(payment_from_row(&row)?));
        }
        let row = sqlx::query("SELECT * FROM payments WHERE merchant_id = $1 AND idempotency_key = $2")
            .bind(&p.merchant_id)
            .bind(&p.idempotency_key)
            .fetch_one(&self.pool)
            .await?;
        Ok(Inserted::Existing(payment_from_row(&row)?))
    }

    pub async fn get_payment(&self, id: Uuid) -> Result<Option<PaymentRow>> {
        let row = sqlx::query("SELECT * FROM payments WHERE payment_id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(payment_from_row).transpose()
    }

    /// Persists the saga state if `owner` still holds the lease; `None` when it lost it.
    /// `hold_timeout_secs` is fixed the first time it is given; `cleared_at` is set once, when
    /// the payment reaches POSTED.
    pub async fn save_saga(
        &self,
        id: Uuid,
        owner: Uuid,
        s: &SagaState,
        hold_timeout_secs: u32,
    ) -> Result<Option<PaymentRow>> {
        let row = sqlx::query(
            "UPDATE payments SET step = $3, status = $4, channel_id = $5, fee_minor = $6, channel_reference = $7,
                 failure_reason = $8,
                 hold_timeout_secs = CASE WHEN hold_timeout_secs = 0 THEN $9 ELSE hold_timeout_secs END,
                 cleared_at = CASE WHEN $3 = 6 THEN COALESCE(cleared_at, now()) ELSE cleared_at END,
                 updated_at = now(),
                 lease_owner = CASE WHEN $4 = 1 THEN lease_owner END,
                 lease_until = CASE WHEN $4 = 1 THEN lease_until END
             WHERE payment_id = $1 AND lease_owner = $2
             RETURNING *",
        )
        .bind(id)
        .bind(owner)
        .bind(s.step.code())
        .bind(s.status.code())
        .bind(&s.channel_id)
        .bind(s.fee)
        .bind(&s.channel_reference)
        .bind(&s.failure_reason)
        .bind(hold_timeout_secs as i32)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(payment_from_row).transpose()
    }

    /// Claims up to `limit` in-flight payments whose lease ran out, for `owner`, for `lease`.
    /// `SKIP LOCKED`: replicas claiming at the same time get disjoint sets.
    pub async fn claim_payments(&self, owner: Uuid, lease: Duration, limit: i64) -> Result<Vec<PaymentRow>> {
        let rows = sqlx::query(
            "UPDATE payments p SET lease_owner = $1, lease_until = now() + make_interval(secs => $2),
                 recoveries = p.recoveries + 1
             FROM (SELECT payment_id FROM payments
                   WHERE status = 1 AND (lease_until IS NULL OR lease_until < now())
                   ORDER BY lease_until NULLS FIRST LIMIT $3 FOR UPDATE SKIP LOCKED) c
             WHERE p.payment_id = c.payment_id
             RETURNING p.*",
        )
        .bind(owner)
        .bind(secs(lease))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(payment_from_row).collect()
    }

    /// Payments of a merchant created in `[from, to)`, newest first, after `cursor`.
    pub async fn list_payments(
        &self,
        merchant_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        status: Option<Status>,
        cursor: Option<Cursor>,
        limit: i64,
    ) -> Result<Vec<PaymentRow>> {
        let cursor = cursor.unwrap_or(Cursor {
            created_at: to,
            payment_id: Uuid::max(),
        });
        let rows = sqlx::query(
            "SELECT * FROM payments
             WHERE merchant_id = $1 AND created_at >= $2 AND created_at < $3
               AND ($4 = 0 OR status = $4)
               AND (created_at, payment_id) < ($5, $6)
             ORDER BY created_at DESC, payment_id DESC
             LIMIT $7",
        )
        .bind(merchant_id)
        .bind(from)
        .bind(to)
        .bind(status.map_or(0, Status::code))
        .bind(cursor.created_at)
        .bind(cursor.payment_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(payment_from_row).collect()
    }

    pub async fn refunds_of(&self, payment_id: Uuid) -> Result<Vec<RefundRow>> {
        let rows = sqlx::query("SELECT * FROM refunds WHERE payment_id = $1 ORDER BY created_at, refund_id")
            .bind(payment_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(refund_from_row).collect()
    }

    /// Accepts a refund: under the payment's row lock, replays the key, checks what is left, and
    /// reserves the amount.
    #[allow(clippy::too_many_arguments)]
    pub async fn insert_refund(
        &self,
        payment_id: Uuid,
        key: &str,
        requested: Option<i64>,
        reason: &str,
        trace_id: &str,
        owner: Uuid,
        lease: Duration,
    ) -> Result<RefundInserted> {
        let mut tx = self.pool.begin().await?;
        let payment = sqlx::query("SELECT * FROM payments WHERE payment_id = $1 FOR UPDATE")
            .bind(payment_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| Error::NotFound(format!("payment {payment_id} not found")))?;
        let payment = payment_from_row(&payment)?;
        let existing = sqlx::query("SELECT * FROM refunds WHERE payment_id = $1 AND idempotency_key = $2")
            .bind(payment_id)
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(existing) = existing {
            let existing = refund_from_row(&existing)?;
            if requested.is_some_and(|r| r != existing.amount) {
                return Err(Error::IdempotencyConflict {
                    key: key.to_string(),
                    field: "amount.minor_units",
                });
            }
            if existing.reason != reason {
                return Err(Error::IdempotencyConflict {
                    key: key.to_string(),
                    field: "reason",
                });
            }
            return Ok(RefundInserted::Existing(existing, payment));
        }
        let currency = payment.request.currency;
        let amount = refund::admit(
            payment.saga.status,
            payment.request.amount,
            payment.refund_reserved,
            requested,
        )
        .map_err(|refusal| match refusal {
            RefundRefusal::NotSucceeded(s) => Error::Precondition(format!(
                "payment {payment_id} is {}; only succeeded payments can be refunded",
                s.name()
            )),
            RefundRefusal::ExceedsLeft { left } => Error::Precondition(format!(
                "amount exceeds what is left to refund: {} {currency} left ({left} minor units)",
                currency.format_minor(left)
            )),
            RefundRefusal::NothingLeft => {
                Error::Precondition(format!("payment {payment_id} is fully refunded"))
            }
        })?;
        let refund_id = payplane_core::ids::new_time_ordered();
        let row = sqlx::query(
            "INSERT INTO refunds (refund_id, payment_id, idempotency_key, amount_minor, reason, status, step,
                 trace_id, created_at, updated_at, lease_owner, lease_until)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now(), now(), $9, now() + make_interval(secs => $10))
             RETURNING *",
        )
        .bind(refund_id)
        .bind(payment_id)
        .bind(key)
        .bind(amount)
        .bind(reason)
        .bind(Status::Pending.code())
        .bind(Step::Accepted.code())
        .bind(trace_id)
        .bind(owner)
        .bind(secs(lease))
        .fetch_one(&mut *tx)
        .await?;
        let payment = sqlx::query(
            "UPDATE payments SET refunded_minor = refunded_minor + $2, updated_at = now() WHERE payment_id = $1 RETURNING *",
        )
        .bind(payment_id)
        .bind(amount)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(RefundInserted::New(
            refund_from_row(&row)?,
            payment_from_row(&payment)?,
        ))
    }

    /// Persists a refund's state if `owner` holds its lease; a failed refund releases its
    /// reservation in the same transaction.
    pub async fn save_refund(
        &self,
        refund: &RefundRow,
        owner: Uuid,
        s: &RefundState,
    ) -> Result<Option<RefundRow>> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "UPDATE refunds SET step = $3, status = $4, channel_reference = $5, failure_reason = $6,
                 cleared_at = CASE WHEN $3 = 6 THEN COALESCE(cleared_at, now()) ELSE cleared_at END,
                 updated_at = now(),
                 lease_owner = CASE WHEN $4 = 1 THEN lease_owner END,
                 lease_until = CASE WHEN $4 = 1 THEN lease_until END
             WHERE refund_id = $1 AND lease_owner = $2 AND status = 1
             RETURNING *",
        )
        .bind(refund.id)
        .bind(owner)
        .bind(s.step.code())
        .bind(s.status.code())
        .bind(&s.channel_reference)
        .bind(&s.failure_reason)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(None) };
        if s.status == Status::Failed {
            sqlx::query("UPDATE payments SET refunded_minor = refunded_minor - $2, updated_at = now() WHERE payment_id = $1")
                .bind(refund.payment_id)
                .bind(refund.amount)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Some(refund_from_row(&row)?))
    }

    pub async fn claim_refunds(&self, owner: Uuid, lease: Duration, limit: i64) -> Result<Vec<RefundRow>> {
        let rows = sqlx::query(
            "UPDATE refunds r SET lease_owner = $1, lease_until = now() + make_interval(secs => $2)
             FROM (SELECT refund_id FROM refunds
                   WHERE status = 1 AND (lease_until IS NULL OR lease_until < now())
                   ORDER BY lease_until NULLS FIRST LIMIT $3 FOR UPDATE SKIP LOCKED) c
             WHERE r.refund_id = c.refund_id
             RETURNING r.*",
        )
        .bind(owner)
        .bind(secs(lease))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(refund_from_row).collect()
    }
}
