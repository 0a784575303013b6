//! Thin gRPC impls: validate → simulator → map.

use chrono::{DateTime, Utc};
use payplane_core::{Currency, Violations};
use payplane_proto::{
    channel::v1::{
        self as pb, ChargeOutcome,
        channel_admin_service_server::{ChannelAdminService, ChannelAdminServiceServer},
        channel_service_server::{ChannelService, ChannelServiceServer},
    },
    common::v1::{Money, PaymentMethod},
};
use tonic::{Request, Response, Status};

use crate::{
    domain::{
        book::{ChargeInput, Event, Outcome, RefundInput},
        channel::ChannelSettings,
    },
    error::Error,
    sim::Simulator,
};

pub fn channel_server(sim: Simulator) -> ChannelServiceServer<ChannelGrpc> {
    ChannelServiceServer::new(ChannelGrpc { sim })
}

pub fn admin_server(sim: Simulator) -> ChannelAdminServiceServer<AdminGrpc> {
    ChannelAdminServiceServer::new(AdminGrpc { sim })
}

pub struct ChannelGrpc {
    sim: Simulator,
}

pub struct AdminGrpc {
    sim: Simulator,
}

fn outcome(o: Outcome) -> i32 {
    match o {
        Outcome::Approved => ChargeOutcome::Approved as i32,
        Outcome::Declined => ChargeOutcome::Declined as i32,
    }
}

fn timestamp(field: &str, ts: Option<&prost_types::Timestamp>, v: &mut Violations) -> Option<DateTime<Utc>> {
    let Some(ts) = ts else {
        v.add(field, "is required");
        return None;
    };
    let t = u32::try_from(ts.nanos)
        .ok()
        .and_then(|n| DateTime::from_timestamp(ts.seconds, n));
    if t.is_none() {
        v.add(field, "is not a valid timestamp");
    }
    t
}

#[tonic::async_trait]
impl ChannelService for ChannelGrpc {
    async fn charge(
        &self,
        request: Request<pb::ChargeRequest>,
    ) -> Result<Response<pb::ChargeResponse>, Status> {
        let r = request.into_inner();
        let mut v = Violations::new();
        v.name("channel_id", &r.channel_id);
        v.id("request_id", &r.request_id);
        v.id("payment_id", &r.payment_id);
        let money = v.positive_money("amount", r.amount.as_ref());
        match PaymentMethod::try_from(r.method) {
            Ok(PaymentMethod::Unspecified) => v.add("method", "is required"),
            Ok(_) => {}
            Err(_) => v.add("method", format!("unknown payment method {}", r.method)),
        }
        v.name("payer_id", &r.payer_id);
        v.name("merchant_id", &r.merchant_id);
        let Some((amount_minor, currency)) = money.filter(|_| v.is_empty()) else {
            return Err(v.into_status());
        };
        let input = ChargeInput {
            channel_id: r.channel_id,
            request_id: r.request_id,
            payment_id: r.payment_id,
            amount_minor,
            currency: currency.code().to_owned(),
            method: r.method,
            payer_id: r.payer_id,
            merchant_id: r.merchant_id,
        };
        let decision = self.sim.charge(input).await?;
        let record = decision.record();
        Ok(Response::new(pb::ChargeResponse {
            outcome: outcome(record.outcome),
            channel_reference: record.reference.clone(),
            decline_code: record.decline_code.clone(),
        }))
    }

    async fn refund(
        &self,
        request: Request<pb::RefundRequest>,
    ) -> Result<Response<pb::RefundResponse>, Status> {
        let r = request.into_inner();
        let mut v = Violations::new();
        v.name("channel_id", &r.channel_id);
        v.id("request_id", &r.request_id);
        v.id("charge_request_id", &r.charge_request_id);
        let money = v.positive_money("amount", r.amount.as_ref());
        let Some((amount_minor, currency)) = money.filter(|_| v.is_empty()) else {
            return Err(v.into_status());
        };
        let input = RefundInput {
            channel_id: r.channel_id,
            request_id: r.request_id,
            charge_request_id: r.charge_request_id,
            amount_minor,
            currency: currency.code().to_owned(),
        };
        let decision = self.sim.refund(input).await?;
        Ok(Response::new(pb::RefundResponse {
            outcome: ChargeOutcome::Approved as i32,
            channel_reference: decision.record().reference.clone(),
            decline_code: String::new(),
        }))
    }

    async fn get_charge(
        &self,
        request: Request<pb::GetChargeRequest>,
    ) -> Result<Response<pb::GetChargeResponse>, Status> {
        let r = request.into_inner();
        let mut v = Violations::new();
        v.name("channel_id", &r.channel_id);
        v.id("request_id", &r.request_id);
        v.into_result()?;
        let money = |minor_units, currency: &str| {
            Some(Money {
                minor_units,
                currency: currency.to_owned(),
            })
        };
        let response = match self.sim.lookup(&r.channel_id, &r.request_id)? {
            None => pb::GetChargeResponse::default(),
            Some(Event::Charge(c)) => pb::GetChargeResponse {
                found: true,
                outcome: outcome(c.outcome),
                channel_reference: c.reference,
                amount: money(c.input.amount_minor, &c.input.currency),
            },
            Some(Event::Refund(r)) => pb::GetChargeResponse {
                found: true,
                outcome: ChargeOutcome::Approved as i32,
                channel_reference: r.reference,
                amount: money(r.input.amount_minor, &r.input.currency),
            },
        };
        Ok(Response::new(response))
    }

    async fn export_statement(
        &self,
        request: Request<pb::ExportStatementRequest>,
    ) -> Result<Response<pb::ExportStatementResponse>, Status> {
        let r = request.into_inner();
        let mut v = Violations::new();
        v.name("channel_id", &r.channel_id);
        let currency = match r.currency.parse::<Currency>() {
            Ok(c) => Some(c),
            Err(e) => {
                v.add("currency", e.to_string());
                None
            }
        };
        let from = timestamp("from_time", r.from_time.as_ref(), &mut v);
        let to = timestamp("to_time", r.to_time.as_ref(), &mut v);
        if let (Some(from), Some(to)) = (from, to)
            && from >= to
        {
            v.add("to_time", "must be after from_time");
        }
        let format = match pb::StatementFormat::try_from(r.format) {
            Ok(pb::StatementFormat::Unspecified) | Err(_) => {
                v.add(
                    "format",
                    "must be STATEMENT_FORMAT_CAMT053_XML or STATEMENT_FORMAT_CSV",
                );
                None
            }
            Ok(f) => Some(f),
        };
        let (Some(currency), Some(from), Some(to), Some(format)) = (currency, from, to, format) else {
            return Err(v.into_status());
        };
        v.into_result()?;
        let events = self.sim.statement(&r.channel_id, currency.code(), from, to)?;
        let (document, line_count) =
            crate::statement::render(&r.channel_id, currency, from, to, &events, format)?;
        Ok(Response::new(pb::ExportStatementResponse {
            document,
            line_count,
        }))
    }
}

fn to_proto(s: ChannelSettings) -> pb::ChannelConfig {
    pb::ChannelConfig {
        channel_id: s.id,
        latency_p50_ms: s.latency_p50_ms,
        latency_p99_ms: s.latency_p99_ms,
        decline_rate: s.decline_rate,
        error_rate: s.error_rate,
        outage: s.outage,
    }
}

#[tonic::async_trait]
impl ChannelAdminService for AdminGrpc {
    async fn configure_channel(
        &self,
        request: Request<pb::ConfigureChannelRequest>,
    ) -> Result<Response<pb::ConfigureChannelResponse>, Status> {
        let Some(c) = request.into_inner().config else {
            let mut v = Violations::new();
            v.add("config", "is required");
            return Err(v.into_status());
        };
        let settings = ChannelSettings {
            id: c.channel_id,
            latency_p50_ms: c.latency_p50_ms,
            latency_p99_ms: c.latency_p99_ms,
            decline_rate: c.decline_rate,
            error_rate: c.error_rate,
            outage: c.outage,
        };
        let problems = settings.validate("config.");
        if !problems.is_empty() {
            return Err(Error::Invalid(problems).into());
        }
        let config = Some(to_proto(self.sim.configure(settings)));
        Ok(Response::new(pb::ConfigureChannelResponse { config }))
    }

    async fn list_channel_configs(
        &self,
        _request: Request<pb::ListChannelConfigsRequest>,
    ) -> Result<Response<pb::ListChannelConfigsResponse>, Status> {
        let configs = self.sim.channels().into_iter().map(to_proto).collect();
        Ok(Response::new(pb::ListChannelConfigsResponse { configs }))
    }
}
