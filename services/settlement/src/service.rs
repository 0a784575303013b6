//! The settlement use cases: domain logic around the store and the ledger. grpc.rs maps protos to
//! these calls; the auto-close loop and tests call them too.

use std::time::Duration;

use chrono::Utc;
use payplane_core::{
    Currency,
    accounts::{AccountKind, AccountRef},
};
use payplane_proto::accounting::v1::{
    Account, CreateAccountResult, CreateAccountsRequest, CreateTransferResult, CreateTransfersRequest,
    Transfer, TransferFlags, ledger_service_client::LedgerServiceClient,
};
use payplane_runtime::BalancedChannel;

use crate::{
    domain::{
        Item,
        instructions::{self, InstructionHeader},
        netting, postings,
        reconcile::{self, Report},
        statement::{self, Statement},
        window::Calendar,
    },
    error::{Error, Result},
    store::{CloseRecord, PostingRow, Recorded, Store, WindowRow, state},
};

/// TigerBeetle's batch limit: a linked chain cannot span two requests.
pub const MAX_POSTINGS: usize = 8190;

pub type Ledger = LedgerServiceClient<BalancedChannel>;

#[derive(Clone)]
pub struct Settlement {
    pub store: Store,
    pub calendar: Calendar,
    pub ledger: Option<Ledger>,
}

/// The outcome of recording an item.
pub struct RecordOutcome {
    pub item: Item,
    pub window_id: String,
    pub replayed: bool,
}

/// The outcome of a close.
pub struct CloseOutcome {
    pub window: WindowRow,
    pub positions: Vec<netting::Position>,
    pub transfer_ids: Vec<uuid::Uuid>,
}

impl Settlement {
    /// Records a cleared item in the first open window at or after its own; idempotent by id.
    pub async fn record(&self, item: Item) -> Result<RecordOutcome> {
        if let Some(outcome) = self.replay(&item).await? {
            return Ok(outcome);
        }
        let mut spec = self
            .calendar
            .assign(&item.channel_id, item.currency, item.cleared_at);
        // A closed window sends the item to the next business date; a year of closed windows
        // ahead would be a configuration error, not a late item.
        for _ in 0..366 {
            match self.store.record(&spec, &item).await? {
                Recorded::Inserted => {
                    return Ok(RecordOutcome {
                        item,
                        window_id: spec.window_id,
                        replayed: false,
                    });
                }
                Recorded::WindowClosed => {
                    let next = spec
                        .business_date
                        .succ_opt()
                        .ok_or_else(|| Error::Internal("date overflow".into()))?;
                    spec = self.calendar.window(&item.channel_id, item.currency, next);
                }
                Recorded::Exists => {
                    return self
                        .replay(&item)
                        .await?
                        .ok_or_else(|| Error::Internal("item vanished after conflict".into()));
                }
            }
        }
        Err(Error::FailedPrecondition(format!(
            "no open window for channel {} within a year of {}",
            item.channel_id, item.cleared_at
        )))
    }

    /// The stored item with this id, if any: the original result when the bodies agree,
    /// ALREADY_EXISTS naming the fields that differ otherwise.
    async fn replay(&self, item: &Item) -> Result<Option<RecordOutcome>> {
        let Some((stored, window_id)) = self.store.find_item(item.item_id).await? else {
            return Ok(None);
        };
        let mut differ = Vec::new();
        let mut check = |field: &str, same: bool| {
            if !same {
                differ.push(field.to_string());
            }
        };
        check("kind", stored.kind == item.kind);
        check("payment_id", stored.payment_id == item.payment_id);
        check("channel_id", stored.channel_id == item.channel_id);
        check("merchant_id", stored.merchant_id == item.merchant_id);
        check("amount.currency", stored.currency == item.currency);
        check("amount.minor_units", stored.amount == item.amount);
        check("fee.minor_units", stored.fee == item.fee);
        check(
            "channel_reference",
            stored.channel_reference == item.channel_reference,
        );
        check("cleared_at", stored.cleared_at == item.cleared_at);
        if !differ.is_empty() {
            return Err(Error::AlreadyExists(format!(
                "item {} was recorded before with a different {}",
                item.item_id,
                differ.join(", ")
            )));
        }
        Ok(Some(RecordOutcome {
            item: stored,
            window_id,
            replayed: true,
        }))
    }

    pub async fn window(&self, window_id: &str) -> Result<WindowRow> {
        let mut w = self
            .store
            .window(window_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("window {window_id} not found")))?;
        self.fill_live_totals(&mut w).await?;
        Ok(w)
    }

    /// Open windows carry no frozen totals: compute them from the items.
    pub async fn fill_live_totals(&self, w: &mut WindowRow) -> Result<()> {
        if w.state == state::OPEN {
            let (count, payments, refunds, fees) = self.store.live_totals(&w.window_id).await?;
            w.item_count = Some(count);
            w.gross_payments = Some(payments);
            w.gross_refunds = Some(refunds);
            w.fees = Some(fees);
        }
        Ok(())
    }

    /// Closes a window: no item enters it afterwards; positions, instructions and postings are
    /// stored, then the postings go to accounting as one linked batch.
    ///
    /// A window left CLOSED by an interrupted close (accounting unreachable, a crash) resumes
    /// with the same stored postings; closing a SETTLED or RECONCILED window is refused.
    pub async fn close(&self, window_id: &str) -> Result<CloseOutcome> {
        let mut tx = self.store.pool.begin().await?;
        let w = Store::window_for_update(&mut tx, window_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("window {window_id} not found")))?;
        let currency = w.currency()?;
        match w.state {
            state::OPEN => {
                let totals = Store::merchant_totals(&mut tx, window_id).await?;
                let plan = postings::plan(
                    window_id,
                    &w.channel_id,
                    currency,
                    &totals,
                    w.close_attempt as u32,
                )?;
                if plan.len() > MAX_POSTINGS {
                    return Err(Error::FailedPrecondition(format!(
                        "window {window_id} needs {} settlement postings, more than the {MAX_POSTINGS} one linked batch can carry",
                        plan.len()
                    )));
                }
                let positions = netting::multilateral(&totals.obligations(&w.channel_id))?;
                let header = InstructionHeader {
                    window_id,
                    currency,
                    business_date: w.business_date,
                    cut_off_at: w.cut_off_at,
                    value_date: w.value_date,
                };
                let ins = instructions::instructions(window_id, &positions);
                let pacs009 = instructions::render_pacs009(&header, &ins);
                let csv = instructions::render_csv(&header, &ins);
                let sha = instructions::sha256_hex(&pacs009);
                let rows: Vec<PostingRow> = plan
                    .iter()
                    .enumerate()
                    .map(|(i, p)| PostingRow {
                        seq: i as i32,
                        transfer_id: p.transfer_id,
                        merchant_id: p.merchant_id.clone(),
                        to_merchant: p.credit.kind == AccountKind::Merchant,
                        amount: p.amount as i64,
                    })
                    .collect();
                Store::store_close(
                    &mut tx,
                    window_id,
                    &CloseRecord {
                        totals: &totals,
                        positions: &positions,
                        pacs009: &pacs009,
                        csv: &csv,
                        instructions_sha256: &sha,
                        postings: &rows,
                    },
                )
                .await?;
                tx.commit().await?;
            }
            state::CLOSED => {
                tx.commit().await?;
                if self.ledger.is_none() {
                    return Err(Error::FailedPrecondition(format!(
                        "window {window_id} is already closed; its postings wait for accounting, which is not configured"
                    )));
                }
                tracing::info!(window_id, "resuming an interrupted close");
            }
            _ => {
                return Err(Error::FailedPrecondition(format!(
                    "window {window_id} is already closed and settled"
                )));
            }
        }
        let rows = self.store.postings(window_id).await?;
        if let Some(ledger) = &self.ledger {
            self.post(ledger.clone(), window_id, &w.channel_id, currency, &rows)
                .await?;
            self.store.mark_settled(window_id).await?;
        }
        let window = self.window(window_id).await?;
        let positions = self.store.positions(window_id).await?;
        Ok(CloseOutcome {
            window,
            positions,
            transfer_ids: rows.iter().map(|r| r.transfer_id).collect(),
        })
    }

    /// Sends the postings: accounts first (creating merchant accounts on first settlement),
    /// then the transfers as one linked chain. A refusal reopens the window.
    async fn post(
        &self,
        mut ledger: Ledger,
        window_id: &str,
        channel: &str,
        currency: Currency,
        rows: &[PostingRow],
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let clearing = AccountRef::clearing(channel, currency);
        let mut accounts = vec![clearing.clone()];
        accounts.extend(
            rows.iter()
                .map(|r| AccountRef::merchant(&r.merchant_id, currency)),
        );
        let request = CreateAccountsRequest {
            accounts: accounts
                .iter()
                .map(|a| Account {
                    id: a.id().to_string(),
                    ledger: a.ledger(),
                    code: a.kind.code(),
                    ..Default::default()
                })
                .collect(),
        };
        let response = ledger
            .create_accounts(request)
            .await
            .map_err(|s| unreachable_ledger(window_id, &s))?
            .into_inner();
        for e in &response.errors {
            let result = CreateAccountResult::try_from(e.result).unwrap_or(CreateAccountResult::Unspecified);
            // An existing account is all we need, whatever flags its creator chose.
            if !result.as_str_name().contains("_EXISTS") {
                let name = accounts
                    .get(e.index as usize)
                    .map(AccountRef::name)
                    .unwrap_or_default();
                return self
                    .refused(
                        window_id,
                        format!("accounting refused account {name}: {}", result.as_str_name()),
                    )
                    .await;
            }
        }
        let user_data = postings::window_uuid(window_id).to_string();
        let n = rows.len();
        let transfers: Vec<Transfer> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let merchant = AccountRef::merchant(&r.merchant_id, currency);
                let (debit, credit) = if r.to_merchant {
                    (&clearing, &merchant)
                } else {
                    (&merchant, &clearing)
                };
                Transfer {
                    id: r.transfer_id.to_string(),
                    debit_account_id: debit.id().to_string(),
                    credit_account_id: credit.id().to_string(),
                    amount: r.amount as u64,
                    user_data_128: user_data.clone(),
                    ledger: currency.ledger(),
                    code: payplane_core::accounts::transfer_code::SETTLEMENT,
                    flags: Some(TransferFlags {
                        linked: i + 1 < n,
                        ..Default::default()
                    }),
                    ..Default::default()
                }
            })
            .collect();
        let response = ledger
            .create_transfers(CreateTransfersRequest { transfers })
            .await
            .map_err(|s| unreachable_ledger(window_id, &s))?
            .into_inner();
        let cause = response.errors.iter().find(|e| {
            let r = CreateTransferResult::try_from(e.result).unwrap_or(CreateTransferResult::Unspecified);
            r != CreateTransferResult::Exists && r != CreateTransferResult::LinkedEventFailed
        });
        match cause {
            None if response
                .errors
                .iter()
                .all(|e| e.result == CreateTransferResult::Exists as i32) =>
            {
                Ok(())
            }
            None => {
                self.refused(
                    window_id,
                    "accounting refused the settlement batch without naming a cause".into(),
                )
                .await
            }
            Some(e) => {
                let result =
                    CreateTransferResult::try_from(e.result).unwrap_or(CreateTransferResult::Unspecified);
                let row = &rows[(e.index as usize).min(n - 1)];
                self.refused(
                    window_id,
                    format!(
                        "accounting refused settlement posting {} (merchant {}, amount {}): {}",
                        e.index,
                        row.merchant_id,
                        currency.format_minor(row.amount),
                        result.as_str_name()
                    ),
                )
                .await
            }
        }
    }

    async fn refused(&self, window_id: &str, reason: String) -> Result<()> {
        self.store.reopen(window_id).await?;
        tracing::warn!(window_id, reason, "settlement postings refused; window reopened");
        Err(Error::FailedPrecondition(format!(
            "{reason}; nothing was posted and window {window_id} is open again"
        )))
    }

    /// Reconciles a statement against a closed window and stores the report.
    pub async fn reconcile(
        &self,
        window_id: &str,
        statement: &Statement,
        statement_sha256: &str,
    ) -> Result<Report> {
        let w = self
            .store
            .window(window_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("window {window_id} not found")))?;
        if w.state == state::OPEN {
            return Err(Error::FailedPrecondition(format!(
                "window {window_id} is open: close it before reconciling"
            )));
        }
        let currency = w.currency()?;
        statement.check_for(&w.channel_id, currency)?;
        let items = self.store.reconciliation_items(window_id).await?;
        let report = reconcile::reconcile(window_id, currency, statement_sha256, &statement.lines, &items);
        self.store
            .store_reconciliation(window_id, statement_sha256, &reconcile::render_json(&report))
            .await?;
        Ok(report)
    }

    pub async fn report(&self, window_id: &str) -> Result<Report> {
        if self.store.window(window_id).await?.is_none() {
            return Err(Error::NotFound(format!("window {window_id} not found")));
        }
        let json = self
            .store
            .reconciliation(window_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("window {window_id} has not been reconciled")))?;
        reconcile::parse_json(&json).map_err(|e| Error::Internal(format!("stored report: {e}")))
    }

    /// Closes every window whose cut-off is older than `after`, until `shutdown`.
    pub async fn auto_close(self, after: Duration, shutdown: payplane_runtime::Shutdown) {
        let tick = (after / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = shutdown.triggered() => return,
                _ = tokio::time::sleep(tick) => {}
            }
            let Ok(after) = chrono::Duration::from_std(after) else {
                return;
            };
            let due = match self
                .store
                .due_windows(Utc::now() - after, self.ledger.is_some())
                .await
            {
                Ok(due) => due,
                Err(e) => {
                    tracing::warn!(error = %e, "listing windows due for closing");
                    continue;
                }
            };
            for window_id in due {
                match self.close(&window_id).await {
                    Ok(_) => tracing::info!(window_id, "window closed at cut-off"),
                    Err(e) => tracing::warn!(window_id, error = %e, "automatic close failed; will retry"),
                }
            }
        }
    }
}

fn unreachable_ledger(window_id: &str, status: &tonic::Status) -> Error {
    tracing::warn!(window_id, code = ?status.code(), message = status.message(), "accounting call failed");
    Error::Unavailable(format!(
        "accounting did not answer ({:?}); window {window_id} stays closed and a retried CloseWindow re-sends the same postings",
        status.code()
    ))
}

/// Parses a statement document in the given format and returns it with its SHA-256.
pub fn parse_statement(format: statement_format::Format, document: &[u8]) -> Result<(Statement, String)> {
    let statement = match format {
        statement_format::Format::Camt053 => statement::parse_camt053(document)?,
        statement_format::Format::Csv => statement::parse_csv(document)?,
    };
    Ok((statement, instructions::sha256_hex(document)))
}

pub mod statement_format {
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Format {
        Camt053,
        Csv,
    }
}
