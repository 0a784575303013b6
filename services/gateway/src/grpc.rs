//! `PaymentService`: validate → engine/store → map. The trace id of each call is returned in
//! the response metadata `x-trace-id`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use payplane_core::{Violations, ids};
use payplane_proto::{
    common::v1::Money,
    payment::v1::{
        CreatePaymentRequest, CreatePaymentResponse, GetPaymentRequest, GetPaymentResponse,
        ListPaymentsRequest, ListPaymentsResponse, Payment, PaymentStatus, Refund, RefundPaymentRequest,
        RefundPaymentResponse, payment_service_server::PaymentService,
    },
};
use tonic::{Request, Response, Status as GrpcStatus, metadata::MetadataValue};
use tracing::Instrument;
use uuid::Uuid;

use crate::{
    domain::{MerchantRegistry, NewPayment, Status},
    engine::SharedEngine,
    error::Error,
    store::{Cursor, PaymentRow, RefundRow},
};

pub const TRACE_ID_HEADER: &str = "x-trace-id";

pub struct PaymentApi {
    engine: SharedEngine,
    merchants: Arc<MerchantRegistry>,
}

impl PaymentApi {
    pub fn new(engine: SharedEngine, merchants: MerchantRegistry) -> Self {
        Self {
            engine,
            merchants: Arc::new(merchants),
        }
    }
}

/// The W3C trace id of the current span, or empty when tracing is off.
pub fn current_trace_id() -> String {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    if sc.is_valid() {
        sc.trace_id().to_string()
    } else {
        String::new()
    }
}

fn with_trace_id<T>(body: T, trace_id: &str) -> Response<T> {
    let mut r = Response::new(body);
    if let Ok(v) = MetadataValue::try_from(trace_id)
        && !trace_id.is_empty()
    {
        r.metadata_mut().insert(TRACE_ID_HEADER, v);
    }
    r
}

fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

fn from_timestamp(field: &str, ts: &prost_types::Timestamp, v: &mut Violations) -> Option<DateTime<Utc>> {
    let t = DateTime::from_timestamp(ts.seconds, ts.nanos.max(0) as u32);
    if t.is_none() {
        v.add(field, "is not a valid timestamp");
    }
    t
}

fn proto_status(s: Status) -> PaymentStatus {
    match s {
        Status::Pending => PaymentStatus::Pending,
        Status::Succeeded => PaymentStatus::Succeeded,
        Status::Failed => PaymentStatus::Failed,
    }
}

fn refund_to_proto(r: &RefundRow, currency: &str) -> Refund {
    Refund {
        refund_id: r.id.to_string(),
        idempotency_key: r.idempotency_key.clone(),
        amount: Some(Money {
            minor_units: r.amount,
            currency: currency.to_string(),
        }),
        status: proto_status(r.state.status) as i32,
        failure_reason: r.state.failure_reason.clone(),
        created_at: Some(timestamp(r.created_at)),
    }
}

pub fn payment_to_proto(p: &PaymentRow, refunds: &[RefundRow]) -> Payment {
    let currency = p.request.currency.code();
    let money = |minor_units| {
        Some(Money {
            minor_units,
            currency: currency.to_string(),
        })
    };
    let refunded: i64 = refunds
        .iter()
        .filter(|r| r.state.status == Status::Succeeded)
        .map(|r| r.amount)
        .sum();
    Payment {
        payment_id: p.id.to_string(),
        idempotency_key: p.request.idempotency_key.clone(),
        payer_id: p.request.payer_id.clone(),
        merchant_id: p.request.merchant_id.clone(),
        amount: money(p.request.amount),
        method: p.request.method as i32,
        scene: p.request.scene.clone(),
        card_bin: p.request.card_bin.clone(),
        status: proto_status(p.saga.status) as i32,
        step: p.saga.step.code() as i32,
        failure_reason: p.saga.failure_reason.clone(),
        channel_id: p.saga.channel_id.clone(),
        channel_reference: p.saga.channel_reference.clone(),
        fee: money(p.saga.fee),
        refunded: money(refunded),
        refunds: refunds.iter().map(|r| refund_to_proto(r, currency)).collect(),
        created_at: Some(timestamp(p.created_at)),
        updated_at: Some(timestamp(p.updated_at)),
        trace_id: p.trace_id.clone(),
    }
}

fn encode_cursor(c: &Cursor) -> String {
    format!("{}.{}", c.created_at.timestamp_micros(), c.payment_id)
}

fn decode_cursor(token: &str) -> Option<Cursor> {
    let (micros, id) = token.split_once('.')?;
    Some(Cursor {
        created_at: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
        payment_id: ids::parse(id).ok()?,
    })
}

fn check_key(v: &mut Violations, key: &str) {
    if key.is_empty() {
        v.add("idempotency_key", "is required");
    } else if key.len() > 128 || !key.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        v.add(
            "idempotency_key",
            "must be 1 to 128 printable ASCII characters without spaces",
        );
    }
}

#[tonic::async_trait]
impl PaymentService for PaymentApi {
    async fn create_payment(
        &self,
        request: Request<CreatePaymentRequest>,
    ) -> Result<Response<CreatePaymentResponse>, GrpcStatus> {
        let span = tracing::info_span!("create_payment", payment.id = tracing::field::Empty);
        let trace_id = span.in_scope(current_trace_id);
        async {
            let new = NewPayment::validate(request.get_ref(), &self.merchants).map_err(Error::Invalid)?;
            let (payment, replayed) = self.engine.create(new, &trace_id).await?;
            let refunds = if replayed {
                self.engine.store().refunds_of(payment.id).await?
            } else {
                vec![]
            };
            let body = CreatePaymentResponse {
                payment: Some(payment_to_proto(&payment, &refunds)),
                replayed,
            };
            Ok(with_trace_id(body, &trace_id))
        }
        .instrument(span.clone())
        .await
        .map_err(|e: Error| GrpcStatus::from(e))
    }

    async fn get_payment(
        &self,
        request: Request<GetPaymentRequest>,
    ) -> Result<Response<GetPaymentResponse>, GrpcStatus> {
        let trace_id = current_trace_id();
        let mut v = Violations::new();
        let id = v.id("payment_id", &request.get_ref().payment_id);
        let id = match id {
            Some(id) if v.is_empty() => id,
            _ => return Err(Error::Invalid(v).into()),
        };
        let store = self.engine.store();
        let payment = store
            .get_payment(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("payment {id} not found")))?;
        let refunds = store.refunds_of(id).await?;
        Ok(with_trace_id(
            GetPaymentResponse {
                payment: Some(payment_to_proto(&payment, &refunds)),
            },
            &trace_id,
        ))
    }

    async fn list_payments(
        &self,
        request: Request<ListPaymentsRequest>,
    ) -> Result<Response<ListPaymentsResponse>, GrpcStatus> {
        let trace_id = current_trace_id();
        let req = request.get_ref();
        let mut v = Violations::new();
        v.name("merchant_id", &req.merchant_id);
        let from = req
            .from_time
            .as_ref()
            .and_then(|t| from_timestamp("from_time", t, &mut v))
            .unwrap_or(DateTime::UNIX_EPOCH);
        let to = req
            .to_time
            .as_ref()
            .and_then(|t| from_timestamp("to_time", t, &mut v))
            .unwrap_or_else(|| Utc::now() + chrono::Duration::days(1));
        if to <= from {
            v.add("to_time", "must be after from_time");
        }
        let page_size = match req.page_size {
            0 => 100,
            n @ 1..=1000 => n,
            n => {
                v.add("page_size", format!("must be at most 1000, got {n}"));
                100
            }
        };
        let status = match PaymentStatus::try_from(req.status) {
            Ok(PaymentStatus::Unspecified) => None,
            Ok(PaymentStatus::Pending) => Some(Status::Pending),
            Ok(PaymentStatus::Succeeded) => Some(Status::Succeeded),
            Ok(PaymentStatus::Failed) => Some(Status::Failed),
            Err(_) => {
                v.add("status", format!("unknown status {}", req.status));
                None
            }
        };
        let cursor = if req.page_token.is_empty() {
            None
        } else {
            let c = decode_cursor(&req.page_token);
            if c.is_none() {
                v.add("page_token", "is not a token from a previous response");
            }
            c
        };
        if !v.is_empty() {
            return Err(Error::Invalid(v).into());
        }
        let store = self.engine.store();
        let rows = store
            .list_payments(
                &req.merchant_id,
                from,
                to,
                status,
                cursor,
                i64::from(page_size) + 1,
            )
            .await?;
        let more = rows.len() > page_size as usize;
        let page = &rows[..rows.len().min(page_size as usize)];
        let next_page_token = match (more, page.last()) {
            (true, Some(last)) => encode_cursor(&Cursor {
                created_at: last.created_at,
                payment_id: last.id,
            }),
            _ => String::new(),
        };
        let mut payments = Vec::with_capacity(page.len());
        for p in page {
            let refunds = if p.refund_reserved > 0 {
                store.refunds_of(p.id).await?
            } else {
                vec![]
            };
            payments.push(payment_to_proto(p, &refunds));
        }
        Ok(with_trace_id(
            ListPaymentsResponse {
                payments,
                next_page_token,
            },
            &trace_id,
        ))
    }

    async fn refund_payment(
        &self,
        request: Request<RefundPaymentRequest>,
    ) -> Result<Response<RefundPaymentResponse>, GrpcStatus> {
        let span = tracing::info_span!("refund_payment", payment.id = %request.get_ref().payment_id);
        let trace_id = span.in_scope(current_trace_id);
        async {
            let req = request.get_ref();
            let mut v = Violations::new();
            let id = v.id("payment_id", &req.payment_id);
            check_key(&mut v, &req.idempotency_key);
            let requested = match &req.amount {
                None => None,
                Some(m) => v.positive_money("amount", Some(m)),
            };
            if req.reason.len() > 256 {
                v.add("reason", "must be at most 256 characters");
            }
            let id: Uuid = match id {
                Some(id) if v.is_empty() => id,
                _ => return Err(Error::Invalid(v)),
            };
            let store = self.engine.store();
            let payment = store
                .get_payment(id)
                .await?
                .ok_or_else(|| Error::NotFound(format!("payment {id} not found")))?;
            if let Some((_, currency)) = requested
                && currency != payment.request.currency
            {
                let mut v = Violations::new();
                v.add(
                    "amount.currency",
                    format!("must be the payment's currency {}", payment.request.currency),
                );
                return Err(Error::Invalid(v));
            }
            let (refund, replayed) = self
                .engine
                .refund(
                    id,
                    &req.idempotency_key,
                    requested.map(|(units, _)| units),
                    &req.reason,
                    &trace_id,
                )
                .await?;
            let payment = store
                .get_payment(id)
                .await?
                .ok_or_else(|| Error::NotFound(format!("payment {id} not found")))?;
            let refunds = store.refunds_of(id).await?;
            let currency = payment.request.currency.code();
            let body = RefundPaymentResponse {
                payment: Some(payment_to_proto(&payment, &refunds)),
                refund: Some(refund_to_proto(&refund, currency)),
                replayed,
            };
            Ok(with_trace_id(body, &trace_id))
        }
        .instrument(span.clone())
        .await
        .map_err(GrpcStatus::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_reject_garbage() {
        let c = Cursor {
            created_at: DateTime::from_timestamp_micros(1_763_780_000_123_456).unwrap(),
            payment_id: Uuid::parse_str("0190f3c2-7d1e-7a3b-9c4d-5e6f708192a3").unwrap(),
        };
        assert_eq!(decode_cursor(&encode_cursor(&c)), Some(c));
        assert_eq!(decode_cursor("nope"), None);
        assert_eq!(decode_cursor("12.not-a-uuid"), None);
    }
}
