//! The end of a business day on a running platform, as operations would do it: every settlement
//! window with items is closed and reconciled against the channel simulator's statement for it,
//! then the platform's payment invariants are checked from the outside (the same checker the
//! services' own fault tests use: `payplane_gateway::checker`); balances a bad release wrote
//! wrong are rewritten from the ledger's transfers.

use anyhow::{Context, Result};
use payplane_gateway::checker;
pub use payplane_gateway::checker::{Endpoints, Report};
use payplane_proto::{
    accounting::v1::{RepairBalancesRequest, ledger_service_client::LedgerServiceClient},
    channel::v1::{
        ExportStatementRequest, StatementFormat as ChannelFormat,
        channel_service_client::ChannelServiceClient,
    },
    settlement::v1::{
        CloseWindowRequest, ListWindowsRequest, ReconcileStatementRequest, StatementFormat, WindowState,
        settlement_service_client::SettlementServiceClient,
    },
};
use sqlx::PgPool;

/// One window closed and reconciled.
#[derive(Debug, Clone)]
pub struct Reconciled {
    pub window_id: String,
    pub items: u64,
    pub statement_lines: u32,
    pub matched: u64,
    /// Every entry that is not a match, as the report's class and reference.
    pub breaks: Vec<String>,
}

/// Closes every OPEN window that has items and reconciles each against the channel's statement
/// of the window's period (from its opening to now). `settlement` and `channel` are gRPC URLs.
pub async fn close_and_reconcile(settlement: &str, channel: &str) -> Result<Vec<Reconciled>> {
    let mut settle = SettlementServiceClient::connect(settlement.to_owned())
        .await
        .with_context(|| format!("settlement at {settlement}"))?;
    let mut chan = ChannelServiceClient::connect(channel.to_owned())
        .await
        .with_context(|| format!("channel-sim at {channel}"))?;
    let windows = settle
        .list_windows(ListWindowsRequest {
            state: WindowState::Open as i32,
            page_size: 1000,
            ..Default::default()
        })
        .await?
        .into_inner()
        .windows;
    let mut done = Vec::new();
    for w in windows.into_iter().filter(|w| w.item_count > 0) {
        let closed = settle
            .close_window(CloseWindowRequest {
                window_id: w.window_id.clone(),
            })
            .await
            .with_context(|| format!("CloseWindow {}", w.window_id))?
            .into_inner();
        let window = closed.window.context("CloseWindow answered no window")?;
        let now = std::time::SystemTime::now();
        let statement = chan
            .export_statement(ExportStatementRequest {
                channel_id: window.channel_id.clone(),
                currency: window.currency.clone(),
                from_time: window.opens_at,
                to_time: Some(now.into()),
                format: ChannelFormat::Csv as i32,
            })
            .await
            .with_context(|| format!("ExportStatement for {}", w.window_id))?
            .into_inner();
        let report = settle
            .reconcile_statement(ReconcileStatementRequest {
                window_id: window.window_id.clone(),
                format: StatementFormat::Csv as i32,
                document: statement.document,
            })
            .await
            .with_context(|| format!("ReconcileStatement {}", w.window_id))?
            .into_inner()
            .report
            .context("ReconcileStatement answered no report")?;
        let summary = report.summary.unwrap_or_default();
        done.push(Reconciled {
            window_id: window.window_id,
            items: window.item_count,
            statement_lines: statement.line_count,
            matched: summary.matched,
            breaks: report.breaks.iter().map(|b| format!("{b:?}")).collect(),
        });
    }
    Ok(done)
}

/// What a balance repair rewrote.
#[derive(Debug, Clone, Copy)]
pub struct Repaired {
    pub accounts: u64,
    /// Minor units put back (after minus before, over every balance of every account listed).
    pub units: i128,
}

/// Rewrites the balances that differ from the transfers (`RepairBalances` on `accounting`, a
/// gRPC URL), keeping `reason` with each.
pub async fn repair_balances(accounting: &str, reason: &str) -> Result<Repaired> {
    let mut ledger = LedgerServiceClient::connect(accounting.to_owned())
        .await
        .with_context(|| format!("accounting at {accounting}"))?;
    let done = ledger
        .repair_balances(RepairBalancesRequest {
            ledger: 0,
            reason: reason.to_owned(),
            dry_run: false,
        })
        .await
        .context("RepairBalances")?
        .into_inner();
    let sum = |b: Option<payplane_proto::accounting::v1::Balances>| {
        b.map(|b| {
            i128::from(b.debits_pending)
                + i128::from(b.debits_posted)
                + i128::from(b.credits_pending)
                + i128::from(b.credits_posted)
        })
        .unwrap_or_default()
    };
    Ok(Repaired {
        accounts: done.repaired_count,
        units: done.repairs.iter().map(|r| sum(r.after) - sum(r.before)).sum(),
    })
}

/// The platform's payment invariants (see `payplane_gateway::checker`): the gateway's database
/// at `gateway_db` against the ledger, settlement and the channels.
pub async fn check_invariants(gateway_db: &str, endpoints: &Endpoints) -> Result<Report> {
    let pool = connect(gateway_db).await?;
    let report = checker::check(&pool, endpoints).await;
    pool.close().await;
    report
}

/// Waits until the gateway has no payment or refund in flight (its recovery loop finished them).
pub async fn wait_until_final(gateway_db: &str, timeout: std::time::Duration) -> Result<()> {
    let pool = connect(gateway_db).await?;
    let result = checker::wait_until_final(&pool, timeout).await;
    pool.close().await;
    result
}

async fn connect(gateway_db: &str) -> Result<PgPool> {
    PgPool::connect(gateway_db)
        .await
        .with_context(|| format!("the gateway's database {}", redact(gateway_db)))
}

/// A PostgreSQL URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            redact("postgres://payplane:s3cret@10.0.0.1:55433/db"),
            "postgres://payplane:***@10.0.0.1:55433/db"
        );
        assert_eq!(redact("postgres://10.0.0.1/db"), "postgres://10.0.0.1/db");
    }
}
