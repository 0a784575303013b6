//! `payplane trace`: one trace from Jaeger as a waterfall, found by its trace id or by the id of
//! the payment it created. The gateway tags its spans of a payment with `payment.id` (the
//! create_payment span, the saga steps, refunds and recoveries), so a payment id is looked up
//! with Jaeger's tag search on the gateway's spans.

pub mod jaeger;
pub mod waterfall;

use std::time::Duration;

use anyhow::{Result, bail};
use serde::Serialize;

use self::{
    jaeger::{Jaeger, Trace},
    waterfall::Waterfall,
};

/// The service whose spans carry the payment id, and the tag.
pub const PAYMENT_SERVICE: &str = "gateway";
pub const PAYMENT_TAG: &str = "payment.id";
/// The span of the request that created the payment (gateway/src/grpc.rs).
const CREATE_OPERATION: &str = "create_payment";
/// How far back a payment id is searched. Jaeger's search needs a window; storage backends scan
/// it, so it is bounded, and a week covers the retention most Jaeger installations keep.
pub const PAYMENT_SEARCH_WINDOW: Duration = Duration::from_secs(7 * 86_400);
/// One payment has a handful of traces at most (creation, refunds, recoveries).
const PAYMENT_SEARCH_LIMIT: u32 = 50;

/// Why a trace may not be in Jaeger, for the "not found" errors.
const RETENTION_HINT: &str = "Jaeger keeps traces only for a while (ci/devenv's in-memory Jaeger \
     keeps the last 100 000 and loses them when it restarts; a cluster's storage has its own \
     retention), the services may not have sampled this one (OTEL_TRACES_SAMPLER, \
     OTEL_TRACES_SAMPLER_ARG; PLATFORM_SAMPLING for ci/platform-local), and spans reach Jaeger a \
     few seconds after the request";

/// What the argument names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// 32 hex digits: a W3C trace id (as in `x-trace-id` and the payment's `trace_id`).
    Trace(String),
    Payment(String),
}

impl Lookup {
    pub fn parse(id: &str) -> Result<Self> {
        let id = id.trim();
        if id.is_empty() {
            bail!("give a payment id or a 32-hex-digit trace id");
        }
        Ok(if id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()) {
            Lookup::Trace(id.to_ascii_lowercase())
        } else {
            Lookup::Payment(id.to_owned())
        })
    }
}

/// The trace to show, and for a payment the ids of its other traces.
pub struct Found {
    pub trace: Trace,
    pub other_trace_ids: Vec<String>,
}

pub async fn find(jaeger: &Jaeger, lookup: &Lookup) -> Result<Found> {
    match lookup {
        Lookup::Trace(id) => match jaeger.trace(id).await? {
            Some(trace) if !trace.spans.is_empty() => Ok(Found {
                trace,
                other_trace_ids: vec![],
            }),
            _ => bail!("no trace {id} in Jaeger at {}: {RETENTION_HINT}", jaeger.base()),
        },
        Lookup::Payment(id) => {
            let traces = jaeger
                .search_by_tag(
                    PAYMENT_SERVICE,
                    PAYMENT_TAG,
                    id,
                    PAYMENT_SEARCH_WINDOW,
                    PAYMENT_SEARCH_LIMIT,
                )
                .await?;
            match pick_payment_trace(traces, id) {
                Some(found) => Ok(found),
                None => bail!(
                    "no trace in Jaeger at {} has a {PAYMENT_SERVICE} span with {PAYMENT_TAG}={id} in the \
                     last {} days. Check the payment id, or give the trace id (the payment's trace_id, \
                     or the x-trace-id of the CreatePayment response). Else: {RETENTION_HINT}",
                    jaeger.base(),
                    PAYMENT_SEARCH_WINDOW.as_secs() / 86_400,
                ),
            }
        }
    }
}

/// Of a payment's traces, the one whose request created it (a create_payment span tagged with
/// the id), else the earliest; the others (refunds, recoveries, a replayed create) by start time.
pub fn pick_payment_trace(mut traces: Vec<Trace>, payment_id: &str) -> Option<Found> {
    traces.retain(|t| !t.spans.is_empty());
    let start = |t: &Trace| t.spans.iter().map(|s| s.start_time).min().unwrap_or(0);
    traces.sort_by_key(|t| (start(t), t.trace_id.clone()));
    traces.dedup_by(|a, b| a.trace_id == b.trace_id);
    let created_it = |t: &Trace| {
        t.spans.iter().any(|s| {
            s.operation_name == CREATE_OPERATION
                && s.tag(PAYMENT_TAG).and_then(serde_json::Value::as_str) == Some(payment_id)
        })
    };
    if traces.is_empty() {
        return None;
    }
    let chosen = traces.iter().position(created_it).unwrap_or(0);
    let trace = traces.remove(chosen);
    Some(Found {
        trace,
        other_trace_ids: traces.into_iter().map(|t| t.trace_id).collect(),
    })
}

/// `--json`: the waterfall's spans and where to see them.
#[derive(Serialize)]
pub struct JsonTrace<'a> {
    #[serde(flatten)]
    pub waterfall: &'a Waterfall,
    pub services: Vec<&'a str>,
    pub jaeger_url: String,
    /// The payment's other traces (refunds, recoveries), when looked up by payment id.
    pub other_trace_ids: &'a [String],
}

/// The text output: the waterfall, the Jaeger link and the payment's other traces.
pub fn render_text(waterfall: &Waterfall, link: &str, other_trace_ids: &[String], width: usize) -> String {
    let mut out = waterfall.render(width);
    out.push_str(&format!("\nJaeger: {link}\n"));
    if !other_trace_ids.is_empty() {
        out.push_str(&format!(
            "The payment has {} more trace(s) (refunds, recoveries; `payplane trace ID` shows one): {}\n",
            other_trace_ids.len(),
            other_trace_ids.join(" ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::{
        jaeger::{Span, Tag},
        *,
    };

    #[test]
    fn thirty_two_hex_digits_are_a_trace_id_anything_else_a_payment_id() {
        assert_eq!(
            Lookup::parse(" 4BF92F3577B34DA6A3CE929D0E0E4736\n").unwrap(),
            Lookup::Trace("4bf92f3577b34da6a3ce929d0e0e4736".into())
        );
        let uuid = "0b7f3a2e-9c41-4d8e-a1b2-3c4d5e6f7a8b";
        assert_eq!(Lookup::parse(uuid).unwrap(), Lookup::Payment(uuid.into()));
        assert_eq!(
            Lookup::parse("4bf92f3577b34da6a3ce929d0e0e473").unwrap(),
            Lookup::Payment("4bf92f3577b34da6a3ce929d0e0e473".into()),
            "31 digits"
        );
        assert!(Lookup::parse("  ").is_err());
    }

    fn trace(id: &str, start: u64, op: &str, payment: &str) -> Trace {
        Trace {
            trace_id: id.into(),
            spans: vec![Span {
                span_id: format!("{id}-1"),
                operation_name: op.into(),
                references: vec![],
                start_time: start,
                duration: 10,
                tags: vec![Tag {
                    key: PAYMENT_TAG.into(),
                    value: serde_json::json!(payment),
                }],
                process_id: "p1".into(),
            }],
            processes: HashMap::new(),
        }
    }

    #[test]
    fn a_payments_trace_is_the_one_that_created_it() {
        let found = pick_payment_trace(
            vec![
                trace("refund", 300, "refund_payment", "pay-1"),
                trace("recovery", 100, "recover_payment", "pay-1"),
                trace("create", 200, CREATE_OPERATION, "pay-1"),
            ],
            "pay-1",
        )
        .unwrap();
        assert_eq!(found.trace.trace_id, "create");
        assert_eq!(found.other_trace_ids, ["recovery", "refund"]);
        // Without the creating trace (not sampled, or expired), or a create_payment span of
        // another payment in the same trace: the earliest.
        let found = pick_payment_trace(
            vec![
                trace("refund", 300, "refund_payment", "pay-1"),
                trace("recovery", 100, "recover_payment", "pay-1"),
                trace("other", 400, CREATE_OPERATION, "pay-2"),
            ],
            "pay-1",
        )
        .unwrap();
        assert_eq!(found.trace.trace_id, "recovery");
        assert_eq!(found.other_trace_ids, ["refund", "other"]);
        assert!(pick_payment_trace(vec![], "pay-1").is_none());
    }
}
