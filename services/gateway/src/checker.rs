//! The platform's payment invariants, checked from the outside after a run (integration, fault
//! and end-to-end tests reuse this): the gateway's database against what the ledger, settlement
//! and the channels recorded.
//!
//! - per currency the ledger sums to zero and no pending hold remains (`CheckInvariants` totals);
//! - every payment and refund is final;
//! - every SUCCEEDED payment has exactly one posted hold (post, plus the fee leg when there is a
//!   fee, never a void) and exactly one settlement item; every FAILED one has neither;
//! - the channels' approvals match: SUCCEEDED ⇔ the channel approved the charge (a FAILED payment
//!   may carry an approval only if it was compensated, reason `hold_expired:*`);
//! - every SUCCEEDED refund has its ledger transfer and its settlement item, and the payment's
//!   refunded total is the sum of its succeeded refunds.

use std::collections::{HashMap, HashSet};

use anyhow::{Context, Result};
use futures::StreamExt;
use payplane_core::ids::{self, Step as IdStep};
use payplane_proto::{
    accounting::v1::{
        CheckInvariantsRequest, LookupTransfersRequest, ledger_service_client::LedgerServiceClient,
    },
    channel::v1::{ChargeOutcome, GetChargeRequest, channel_service_client::ChannelServiceClient},
    settlement::v1::{
        ListWindowItemsRequest, ListWindowsRequest, settlement_service_client::SettlementServiceClient,
    },
};
use sqlx::{PgPool, Row};
use tonic::transport::Channel;
use uuid::Uuid;

/// Where the services to check against are, e.g. `http://127.0.0.1:50053`.
#[derive(Clone, Debug)]
pub struct Endpoints {
    pub accounting: String,
    pub settlement: String,
    pub channel: String,
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub payments: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub pending: usize,
    pub refunds: usize,
    pub refunds_succeeded: usize,
    /// Failure reasons of FAILED payments, with counts.
    pub failure_reasons: HashMap<String, usize>,
    pub ledgers_checked: usize,
    pub settlement_items: usize,
    pub violations: Vec<String>,
}

impl Report {
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }

    fn violation(&mut self, v: String) {
        if self.violations.len() < 200 {
            self.violations.push(v);
        }
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} payments ({} succeeded, {} failed, {} pending), {} refunds ({} succeeded), {} ledgers, {} settlement items; failures {:?}; {} violations",
            self.payments,
            self.succeeded,
            self.failed,
            self.pending,
            self.refunds,
            self.refunds_succeeded,
            self.ledgers_checked,
            self.settlement_items,
            self.failure_reasons,
            self.violations.len()
        )?;
        for v in self.violations.iter().take(20) {
            write!(f, "\n  - {v}")?;
        }
        Ok(())
    }
}

struct PaymentFacts {
    id: Uuid,
    status: i16,
    channel_id: String,
    fee: i64,
    amount: i64,
    refunded: i64,
    failure_reason: String,
}

struct RefundFacts {
    id: Uuid,
    payment_id: Uuid,
    status: i16,
    amount: i64,
}

async fn connect(url: &str) -> Result<Channel> {
    tonic::transport::Endpoint::from_shared(url.to_string())?
        .connect()
        .await
        .with_context(|| format!("connecting to {url}"))
}

/// Waits until no payment or refund is in flight in the gateway's database (the sagas and the
/// recovery loop have finished them), for at most `timeout`.
pub async fn wait_until_final(gateway_db: &PgPool, timeout: std::time::Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let pending: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM payments WHERE status = 1) + (SELECT count(*) FROM refunds WHERE status = 1)",
        )
        .fetch_one(gateway_db)
        .await?;
        if pending == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{pending} payments/refunds still in flight after {timeout:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Checks every invariant; the report lists each violation found.
pub async fn check(gateway_db: &PgPool, endpoints: &Endpoints) -> Result<Report> {
    let mut report = Report::default();
    let payments: Vec<PaymentFacts> = sqlx::query(
        "SELECT payment_id, status, channel_id, fee_minor, amount_minor, refunded_minor, failure_reason FROM payments",
    )
    .fetch_all(gateway_db)
    .await?
    .iter()
    .map(|r| {
        Ok(PaymentFacts {
            id: r.try_get("payment_id")?,
            status: r.try_get("status")?,
            channel_id: r.try_get("channel_id")?,
            fee: r.try_get("fee_minor")?,
            amount: r.try_get("amount_minor")?,
            refunded: r.try_get("refunded_minor")?,
            failure_reason: r.try_get("failure_reason")?,
        })
    })
    .collect::<Result<_, sqlx::Error>>()?;
    let refunds: Vec<RefundFacts> =
        sqlx::query("SELECT refund_id, payment_id, status, amount_minor FROM refunds")
            .fetch_all(gateway_db)
            .await?
            .iter()
            .map(|r| {
                Ok(RefundFacts {
                    id: r.try_get("refund_id")?,
                    payment_id: r.try_get("payment_id")?,
                    status: r.try_get("status")?,
                    amount: r.try_get("amount_minor")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
    report.payments = payments.len();
    report.refunds = refunds.len();

    let mut ledger = LedgerServiceClient::new(connect(&endpoints.accounting).await?);
    let mut settlement = SettlementServiceClient::new(connect(&endpoints.settlement).await?);
    let channel = ChannelServiceClient::new(connect(&endpoints.channel).await?);

    // The ledger as a whole.
    let inv = ledger
        .check_invariants(CheckInvariantsRequest { ledger: 0 })
        .await?
        .into_inner();
    if !inv.ok {
        for v in &inv.violations {
            report.violation(format!(
                "ledger invariant {:?} in ledger {} on {}: {}",
                v.kind(),
                v.ledger,
                v.subject_id,
                v.detail
            ));
        }
        report.violation(format!("CheckInvariants: {} violations", inv.violation_count));
    }
    for t in &inv.ledgers {
        report.ledgers_checked += 1;
        if t.debits_posted != t.credits_posted || t.debits_pending != t.credits_pending {
            report.violation(format!(
                "ledger {} does not sum to zero: debits posted {} / pending {}, credits posted {} / pending {}",
                t.ledger, t.debits_posted, t.debits_pending, t.credits_posted, t.credits_pending
            ));
        }
        if t.debits_pending != 0 {
            report.violation(format!(
                "ledger {} still holds {} in pending transfers",
                t.ledger, t.debits_pending
            ));
        }
    }

    // Which of the derived transfers exist.
    let mut wanted: Vec<Uuid> = Vec::with_capacity(payments.len() * 4 + refunds.len());
    for p in &payments {
        for step in [IdStep::Hold, IdStep::Post, IdStep::Fee, IdStep::Void] {
            wanted.push(ids::derive(p.id, step));
        }
    }
    for r in &refunds {
        wanted.push(ids::derive(r.id, IdStep::RefundTransfer));
    }
    let mut existing: HashSet<Uuid> = HashSet::new();
    for chunk in wanted.chunks(4000) {
        let found = ledger
            .lookup_transfers(LookupTransfersRequest {
                ids: chunk.iter().map(Uuid::to_string).collect(),
            })
            .await?
            .into_inner()
            .transfers;
        for t in found {
            existing.insert(Uuid::parse_str(&t.id)?);
        }
    }

    // Every settlement item, counted by id.
    let mut items: HashMap<Uuid, usize> = HashMap::new();
    let mut page_token = String::new();
    let mut windows = Vec::new();
    loop {
        let r = settlement
            .list_windows(ListWindowsRequest {
                page_size: 1000,
                page_token: page_token.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        windows.extend(r.windows.into_iter().map(|w| w.window_id));
        if r.next_page_token.is_empty() {
            break;
        }
        page_token = r.next_page_token;
    }
    for window_id in windows {
        let mut page_token = String::new();
        loop {
            let r = settlement
                .list_window_items(ListWindowItemsRequest {
                    window_id: window_id.clone(),
                    page_size: 1000,
                    page_token,
                })
                .await?
                .into_inner();
            for item in r.items {
                report.settlement_items += 1;
                *items.entry(Uuid::parse_str(&item.item_id)?).or_default() += 1;
            }
            if r.next_page_token.is_empty() {
                break;
            }
            page_token = r.next_page_token;
        }
    }

    // What the channels decided.
    let decisions: HashMap<Uuid, Option<(ChargeOutcome, i64)>> = futures::stream::iter(
        payments
            .iter()
            .filter(|p| !p.channel_id.is_empty())
            .map(|p| (p.id, p.channel_id.clone())),
    )
    .map(|(id, channel_id)| {
        let mut c = channel.clone();
        async move {
            let r = c
                .get_charge(GetChargeRequest {
                    channel_id,
                    request_id: ids::derive(id, IdStep::Charge).to_string(),
                })
                .await;
            let decision = match r {
                Ok(r) => {
                    let r = r.into_inner();
                    r.found
                        .then(|| (r.outcome(), r.amount.map_or(0, |m| m.minor_units)))
                }
                Err(s) if s.code() == tonic::Code::NotFound => None,
                Err(s) => return Err(anyhow::anyhow!("GetCharge {id}: {s}")),
            };
            Ok((id, decision))
        }
    })
    .buffer_unordered(32)
    .collect::<Vec<Result<_>>>()
    .await
    .into_iter()
    .collect::<Result<_>>()?;

    let refunded_by_payment: HashMap<Uuid, i64> =
        refunds
            .iter()
            .filter(|r| r.status == 2)
            .fold(HashMap::new(), |mut m, r| {
                *m.entry(r.payment_id).or_default() += r.amount;
                m
            });

    for p in &payments {
        let has = |step| existing.contains(&ids::derive(p.id, step));
        let item_count = items
            .get(&ids::derive(p.id, IdStep::SettlementItem))
            .copied()
            .unwrap_or(0);
        let decision = decisions.get(&p.id).cloned().flatten();
        match p.status {
            2 => {
                report.succeeded += 1;
                if !has(IdStep::Hold) || !has(IdStep::Post) {
                    report.violation(format!("payment {} SUCCEEDED without its posted hold", p.id));
                }
                if p.fee > 0 && !has(IdStep::Fee) {
                    report.violation(format!("payment {} SUCCEEDED without its fee leg", p.id));
                }
                if has(IdStep::Void) {
                    report.violation(format!("payment {} SUCCEEDED but its hold has a void", p.id));
                }
                if item_count != 1 {
                    report.violation(format!(
                        "payment {} SUCCEEDED with {item_count} settlement items",
                        p.id
                    ));
                }
                match decision {
                    Some((ChargeOutcome::Approved, amount)) if amount == p.amount || amount == 0 => {}
                    other => report.violation(format!(
                        "payment {} SUCCEEDED but the channel says {other:?}",
                        p.id
                    )),
                }
                let refunded = refunded_by_payment.get(&p.id).copied().unwrap_or(0);
                if refunded != p.refunded {
                    report.violation(format!(
                        "payment {} refunded {} but its succeeded refunds sum to {refunded}",
                        p.id, p.refunded
                    ));
                }
            }
            3 => {
                report.failed += 1;
                *report
                    .failure_reasons
                    .entry(crate::domain::payment::reason_label(&p.failure_reason).to_string())
                    .or_default() += 1;
                if has(IdStep::Post) || has(IdStep::Fee) {
                    report.violation(format!(
                        "payment {} FAILED ({}) but posted in the ledger",
                        p.id, p.failure_reason
                    ));
                }
                if item_count != 0 {
                    report.violation(format!(
                        "payment {} FAILED with {item_count} settlement items",
                        p.id
                    ));
                }
                if p.channel_id.is_empty() && has(IdStep::Hold) {
                    report.violation(format!("payment {} FAILED before routing but has a hold", p.id));
                }
                if matches!(decision, Some((ChargeOutcome::Approved, _)))
                    && !p.failure_reason.starts_with("hold_expired:")
                {
                    report.violation(format!(
                        "payment {} FAILED ({}) but the channel approved it",
                        p.id, p.failure_reason
                    ));
                }
            }
            _ => {
                report.pending += 1;
                report.violation(format!("payment {} is not final", p.id));
            }
        }
    }
    for r in &refunds {
        let item_count = items
            .get(&ids::derive(r.id, IdStep::SettlementItem))
            .copied()
            .unwrap_or(0);
        let transfer = existing.contains(&ids::derive(r.id, IdStep::RefundTransfer));
        match r.status {
            2 => {
                report.refunds_succeeded += 1;
                if !transfer || item_count != 1 {
                    report.violation(format!(
                        "refund {} SUCCEEDED with transfer {transfer} and {item_count} items",
                        r.id
                    ));
                }
            }
            3 => {
                if transfer || item_count != 0 {
                    report.violation(format!(
                        "refund {} FAILED but has transfer {transfer} / {item_count} items",
                        r.id
                    ));
                }
            }
            _ => report.violation(format!("refund {} is not final", r.id)),
        }
    }
    Ok(report)
}
