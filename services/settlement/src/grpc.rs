//! Thin gRPC layer: validate → service → map.

use chrono::{DateTime, Utc};
use payplane_core::{Currency, Violations};
use payplane_proto::{
    common::v1::Money,
    settlement::v1::{
        self as pb, ClearedItem, CloseWindowRequest, CloseWindowResponse, GetInstructionsRequest,
        GetInstructionsResponse, GetNetPositionsRequest, GetNetPositionsResponse,
        GetReconciliationReportRequest, GetReconciliationReportResponse, GetWindowRequest, GetWindowResponse,
        InstructionFormat, ListWindowItemsRequest, ListWindowItemsResponse, ListWindowsRequest,
        ListWindowsResponse, ReconcileStatementRequest, ReconcileStatementResponse, RecordClearedRequest,
        RecordClearedResponse, ReportFormat, StatementFormat, WindowState,
        settlement_service_server::SettlementService as Api,
    },
};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::{
    domain::{
        Item, ItemKind,
        netting::Position,
        reconcile::{self, Class, Report},
        window::parse_window_id,
    },
    error::Error,
    service::{Settlement, parse_statement, statement_format::Format},
    store::{WindowRow, state},
};

pub struct SettlementApi {
    pub service: Settlement,
}

type Res<T> = Result<Response<T>, Status>;

const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;

#[tonic::async_trait]
impl Api for SettlementApi {
    async fn record_cleared(&self, request: Request<RecordClearedRequest>) -> Res<RecordClearedResponse> {
        let item = item_from_proto(request.into_inner().item)?;
        let outcome = self.service.record(item).await?;
        Ok(Response::new(RecordClearedResponse {
            item: Some(item_to_proto(&outcome.item, &outcome.window_id)),
            replayed: outcome.replayed,
        }))
    }

    async fn get_window(&self, request: Request<GetWindowRequest>) -> Res<GetWindowResponse> {
        let id = window_id_arg(&request.get_ref().window_id)?;
        let w = self.service.window(&id).await?;
        Ok(Response::new(GetWindowResponse {
            window: Some(window_to_proto(&w)),
        }))
    }

    async fn list_windows(&self, request: Request<ListWindowsRequest>) -> Res<ListWindowsResponse> {
        let r = request.into_inner();
        let mut v = Violations::new();
        let currency = (!r.currency.is_empty()).then(|| r.currency.clone());
        if let Some(c) = &currency
            && let Err(e) = c.parse::<Currency>()
        {
            v.add("currency", e.to_string());
        }
        let st = match WindowState::try_from(r.state) {
            Ok(WindowState::Unspecified) => None,
            Ok(s) => Some(s as i16),
            Err(_) => {
                v.add("state", format!("unknown window state {}", r.state));
                None
            }
        };
        v.into_result()?;
        let limit = page_size(r.page_size);
        let channel = (!r.channel_id.is_empty()).then_some(r.channel_id.as_str());
        let mut rows = self
            .service
            .store
            .list_windows(
                channel,
                currency.as_deref(),
                st,
                &r.page_token,
                i64::from(limit) + 1,
            )
            .await
            .map_err(Status::from)?;
        let next = next_token(&mut rows, limit, |w| w.window_id.clone());
        for w in &mut rows {
            self.service.fill_live_totals(w).await?;
        }
        Ok(Response::new(ListWindowsResponse {
            windows: rows.iter().map(window_to_proto).collect(),
            next_page_token: next,
        }))
    }

    async fn list_window_items(
        &self,
        request: Request<ListWindowItemsRequest>,
    ) -> Res<ListWindowItemsResponse> {
        let r = request.into_inner();
        let id = window_id_arg(&r.window_id)?;
        let after = if r.page_token.is_empty() {
            Uuid::nil()
        } else {
            payplane_core::ids::parse(&r.page_token)
                .map_err(|e| Error::invalid("page_token", e.to_string()))?
        };
        if self.service.store.window(&id).await?.is_none() {
            return Err(Error::NotFound(format!("window {id} not found")).into());
        }
        let limit = page_size(r.page_size);
        let mut rows = self
            .service
            .store
            .list_items(&id, after, i64::from(limit) + 1)
            .await?;
        let next = next_token(&mut rows, limit, |(i, _)| i.item_id.to_string());
        Ok(Response::new(ListWindowItemsResponse {
            items: rows.iter().map(|(i, w)| item_to_proto(i, w)).collect(),
            next_page_token: next,
        }))
    }

    async fn close_window(&self, request: Request<CloseWindowRequest>) -> Res<CloseWindowResponse> {
        let id = window_id_arg(&request.get_ref().window_id)?;
        let outcome = self.service.close(&id).await?;
        let currency = outcome.window.currency.clone();
        Ok(Response::new(CloseWindowResponse {
            window: Some(window_to_proto(&outcome.window)),
            positions: outcome
                .positions
                .iter()
                .map(|p| position_to_proto(p, &currency))
                .collect(),
            ledger_transfer_ids: outcome.transfer_ids.iter().map(Uuid::to_string).collect(),
        }))
    }

    async fn get_net_positions(
        &self,
        request: Request<GetNetPositionsRequest>,
    ) -> Res<GetNetPositionsResponse> {
        let id = window_id_arg(&request.get_ref().window_id)?;
        let w = self.closed_window(&id).await?;
        let positions = self.service.store.positions(&id).await?;
        Ok(Response::new(GetNetPositionsResponse {
            positions: positions
                .iter()
                .map(|p| position_to_proto(p, &w.currency))
                .collect(),
        }))
    }

    async fn get_instructions(
        &self,
        request: Request<GetInstructionsRequest>,
    ) -> Res<GetInstructionsResponse> {
        let r = request.into_inner();
        let id = window_id_arg(&r.window_id)?;
        let kind = match InstructionFormat::try_from(r.format) {
            Ok(InstructionFormat::Pacs009Xml) => "pacs009",
            Ok(InstructionFormat::Csv) => "csv",
            _ => {
                return Err(Error::invalid(
                    "format",
                    "must be INSTRUCTION_FORMAT_PACS009_XML or INSTRUCTION_FORMAT_CSV",
                )
                .into());
            }
        };
        self.closed_window(&id).await?;
        let (document, sha256) = self
            .service
            .store
            .document(&id, kind)
            .await?
            .ok_or_else(|| Error::Internal(format!("closed window {id} has no {kind}")))?;
        Ok(Response::new(GetInstructionsResponse { document, sha256 }))
    }

    async fn reconcile_statement(
        &self,
        request: Request<ReconcileStatementRequest>,
    ) -> Res<ReconcileStatementResponse> {
        let r = request.into_inner();
        let id = window_id_arg(&r.window_id)?;
        let format = match StatementFormat::try_from(r.format) {
            Ok(StatementFormat::Camt053Xml) => Format::Camt053,
            Ok(StatementFormat::Csv) => Format::Csv,
            _ => {
                return Err(Error::invalid(
                    "format",
                    "must be STATEMENT_FORMAT_CAMT053_XML or STATEMENT_FORMAT_CSV",
                )
                .into());
            }
        };
        // The window first: an unknown window is NOT_FOUND whatever the document holds.
        if self.service.store.window(&id).await?.is_none() {
            return Err(Error::NotFound(format!("window {id} not found")).into());
        }
        let (statement, sha) = parse_statement(format, &r.document)?;
        let report = self.service.reconcile(&id, &statement, &sha).await?;
        Ok(Response::new(ReconcileStatementResponse {
            report: Some(report_to_proto(&report)),
        }))
    }

    async fn get_reconciliation_report(
        &self,
        request: Request<GetReconciliationReportRequest>,
    ) -> Res<GetReconciliationReportResponse> {
        let r = request.into_inner();
        let id = window_id_arg(&r.window_id)?;
        let document = match ReportFormat::try_from(r.format) {
            Ok(ReportFormat::Unspecified) => None,
            Ok(ReportFormat::Json) => Some(true),
            Ok(ReportFormat::Text) => Some(false),
            Err(_) => {
                return Err(Error::invalid("format", format!("unknown report format {}", r.format)).into());
            }
        };
        let report = self.service.report(&id).await?;
        let document = match document {
            None => Vec::new(),
            Some(true) => reconcile::render_json(&report),
            Some(false) => reconcile::render_text(&report),
        };
        Ok(Response::new(GetReconciliationReportResponse {
            report: Some(report_to_proto(&report)),
            document,
        }))
    }
}

impl SettlementApi {
    async fn closed_window(&self, id: &str) -> Result<WindowRow, Error> {
        let w = self.service.window(id).await?;
        if w.state == state::OPEN {
            return Err(Error::FailedPrecondition(format!(
                "window {id} is open: positions and instructions exist once it is closed"
            )));
        }
        Ok(w)
    }
}

fn page_size(requested: u32) -> u32 {
    if requested == 0 {
        DEFAULT_PAGE
    } else {
        requested.min(MAX_PAGE)
    }
}

/// Trims the extra row fetched to learn whether another page exists.
fn next_token<T>(rows: &mut Vec<T>, limit: u32, key: impl Fn(&T) -> String) -> String {
    if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(key).unwrap_or_default()
    } else {
        String::new()
    }
}

fn window_id_arg(id: &str) -> Result<String, Error> {
    if id.is_empty() {
        return Err(Error::invalid("window_id", "is required"));
    }
    parse_window_id(id).map_err(|e| Error::invalid("window_id", e))?;
    Ok(id.to_string())
}

fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

fn money(minor_units: i64, currency: &str) -> Money {
    Money {
        minor_units,
        currency: currency.to_string(),
    }
}

/// Validates every field of a cleared item; all problems in one INVALID_ARGUMENT.
fn item_from_proto(item: Option<ClearedItem>) -> Result<Item, Error> {
    let mut v = Violations::new();
    let Some(p) = item else {
        v.add("item", "is required");
        return Err(Error::Invalid(v));
    };
    let item_id = v.id("item.item_id", &p.item_id);
    let payment_id = v.id("item.payment_id", &p.payment_id);
    let kind = match pb::ItemKind::try_from(p.kind) {
        Ok(pb::ItemKind::Payment) => Some(ItemKind::Payment),
        Ok(pb::ItemKind::Refund) => Some(ItemKind::Refund),
        _ => {
            v.add("item.kind", "must be ITEM_KIND_PAYMENT or ITEM_KIND_REFUND");
            None
        }
    };
    v.name("item.channel_id", &p.channel_id);
    v.name("item.merchant_id", &p.merchant_id);
    let amount = v.positive_money("item.amount", p.amount.as_ref());
    let fee = match (&p.fee, amount) {
        (None, _) => 0,
        (Some(fee), Some((amount, currency))) => {
            if fee.minor_units != 0 && fee.currency != currency.code() {
                v.add(
                    "item.fee.currency",
                    format!("must be the amount's currency {currency}"),
                );
            }
            if fee.minor_units < 0 || fee.minor_units > amount {
                v.add(
                    "item.fee.minor_units",
                    format!(
                        "must be between 0 and the amount {amount}, got {}",
                        fee.minor_units
                    ),
                );
            }
            if kind == Some(ItemKind::Refund) && fee.minor_units != 0 {
                v.add(
                    "item.fee.minor_units",
                    "must be 0 for a refund: fees are taken on payments only",
                );
            }
            fee.minor_units
        }
        (Some(_), None) => 0,
    };
    if p.channel_reference.is_empty() {
        v.add(
            "item.channel_reference",
            "is required: it matches the item with the channel's statement",
        );
    } else if p.channel_reference.len() > 128 || p.channel_reference.chars().any(char::is_control) {
        v.add(
            "item.channel_reference",
            "must be at most 128 characters without control characters",
        );
    }
    let cleared_at = match &p.cleared_at {
        None => {
            v.add("item.cleared_at", "is required");
            None
        }
        Some(t) => match DateTime::<Utc>::from_timestamp(t.seconds, t.nanos.max(0) as u32) {
            Some(t) => Some(t),
            None => {
                v.add("item.cleared_at", "is out of range");
                None
            }
        },
    };
    if !v.is_empty() {
        return Err(Error::Invalid(v));
    }
    let (Some(item_id), Some(payment_id), Some(kind), Some((amount, currency)), Some(cleared_at)) =
        (item_id, payment_id, kind, amount, cleared_at)
    else {
        return Err(Error::Internal("validated item lacks a field".into()));
    };
    Ok(Item {
        item_id,
        kind,
        payment_id,
        channel_id: p.channel_id,
        merchant_id: p.merchant_id,
        currency,
        amount,
        fee,
        channel_reference: p.channel_reference,
        cleared_at,
    })
}

fn item_to_proto(i: &Item, window_id: &str) -> ClearedItem {
    let ccy = i.currency.code();
    ClearedItem {
        item_id: i.item_id.to_string(),
        kind: match i.kind {
            ItemKind::Payment => pb::ItemKind::Payment as i32,
            ItemKind::Refund => pb::ItemKind::Refund as i32,
        },
        payment_id: i.payment_id.to_string(),
        channel_id: i.channel_id.clone(),
        merchant_id: i.merchant_id.clone(),
        amount: Some(money(i.amount, ccy)),
        fee: Some(money(i.fee, ccy)),
        channel_reference: i.channel_reference.clone(),
        cleared_at: Some(ts(i.cleared_at)),
        window_id: window_id.to_string(),
    }
}

fn window_to_proto(w: &WindowRow) -> pb::Window {
    let ccy = w.currency.as_str();
    pb::Window {
        window_id: w.window_id.clone(),
        channel_id: w.channel_id.clone(),
        currency: w.currency.clone(),
        business_date: w.business_date.format("%Y-%m-%d").to_string(),
        opens_at: Some(ts(w.opens_at)),
        cut_off_at: Some(ts(w.cut_off_at)),
        state: match w.state {
            state::OPEN => WindowState::Open,
            state::CLOSED => WindowState::Closed,
            state::SETTLED => WindowState::Settled,
            state::RECONCILED => WindowState::Reconciled,
            _ => WindowState::Unspecified,
        } as i32,
        item_count: w.item_count.unwrap_or_default() as u64,
        gross_payments: Some(money(w.gross_payments.unwrap_or_default(), ccy)),
        gross_refunds: Some(money(w.gross_refunds.unwrap_or_default(), ccy)),
        fees: Some(money(w.fees.unwrap_or_default(), ccy)),
        closed_at: w.closed_at.map(ts),
        instructions_sha256: w.instructions_sha256.clone().unwrap_or_default(),
    }
}

fn position_to_proto(p: &Position, currency: &str) -> pb::NetPosition {
    pb::NetPosition {
        participant_id: p.participant_id.clone(),
        net: Some(money(p.net, currency)),
        gross_receivable: Some(money(p.receivable, currency)),
        gross_payable: Some(money(p.payable, currency)),
    }
}

fn report_to_proto(r: &Report) -> pb::ReconciliationReport {
    let s = &r.summary;
    pb::ReconciliationReport {
        window_id: r.window_id.clone(),
        summary: Some(pb::ReconciliationSummary {
            matched: s.matched,
            missing_at_channel: s.missing_at_channel,
            unexpected_at_channel: s.unexpected_at_channel,
            amount_mismatch: s.amount_mismatch,
            duplicate: s.duplicate,
        }),
        breaks: r
            .breaks
            .iter()
            .map(|e| pb::ReconciliationEntry {
                class: match e.class {
                    Class::Matched => pb::ReconciliationClass::Matched,
                    Class::MissingAtChannel => pb::ReconciliationClass::MissingAtChannel,
                    Class::UnexpectedAtChannel => pb::ReconciliationClass::UnexpectedAtChannel,
                    Class::AmountMismatch => pb::ReconciliationClass::AmountMismatch,
                    Class::Duplicate => pb::ReconciliationClass::Duplicate,
                } as i32,
                channel_reference: e.channel_reference.clone(),
                item_id: e.item_id.map(|i| i.to_string()).unwrap_or_default(),
                statement_line: e.statement_line.unwrap_or_default(),
                our_amount: e.our_amount.map(|a| money(a, &r.currency)),
                channel_amount: e.channel_amount.map(|a| money(a, &r.currency)),
            })
            .collect(),
        statement_sha256: r.statement_sha256.clone(),
    }
}
