//! Counters and latency histograms of a load run, and the summary printed at its end.

use std::{collections::BTreeMap, time::Duration};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies are recorded in microseconds, 1 µs to 10 min, three significant digits.
const MAX_LATENCY_US: u64 = 600_000_000;

/// What the run has seen so far. Merged from the workers, read by the progress line.
#[derive(Clone, Debug)]
pub struct Stats {
    /// Calls completed (answered or failed).
    pub completed: u64,
    /// Calls answered with OK.
    pub ok: u64,
    /// Failed calls by gRPC code name (`UNAVAILABLE`, `DEADLINE_EXCEEDED`, ...), counted once
    /// their retries are used up.
    pub errors: BTreeMap<String, u64>,
    /// Attempts sent again after a transport failure, by the failure's code name.
    pub retries: BTreeMap<String, u64>,
    /// Calls answered OK after at least one retry.
    pub answered_after_retry: u64,
    /// OK answers the gateway marked `replayed`: the key was known (an earlier attempt of the
    /// same call had reached it).
    pub replayed: u64,
    /// Payment status in the CreatePayment answers (`SUCCEEDED`, `FAILED`, `PENDING`).
    pub statuses: BTreeMap<String, u64>,
    /// When each failed call was sent and its code, the first [`MAX_FAILED_CALLS`] of them:
    /// lets a scenario tell which failures fell inside which window (a bad canary's, say).
    pub failed_calls: Vec<FailedCall>,
    pub latency: Histogram<u64>,
}

/// How many failed calls keep their time in the summary (the counts go on past it).
pub const MAX_FAILED_CALLS: usize = 10_000;

/// One call that failed after its retries.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FailedCall {
    /// When the call was due to be sent, in milliseconds since the Unix epoch.
    pub sent_at_unix_ms: u64,
    /// Its gRPC code name.
    pub code: String,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            completed: 0,
            ok: 0,
            errors: BTreeMap::new(),
            retries: BTreeMap::new(),
            answered_after_retry: 0,
            replayed: 0,
            statuses: BTreeMap::new(),
            failed_calls: Vec::new(),
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds"),
        }
    }
}

impl Stats {
    /// An OK answer; `retried` if it came after a retry, `replayed` if the gateway said so.
    pub fn record_ok(&mut self, latency: Duration, status: &str, retried: bool, replayed: bool) {
        self.completed += 1;
        self.ok += 1;
        self.answered_after_retry += u64::from(retried);
        self.replayed += u64::from(replayed);
        *self.statuses.entry(status.to_owned()).or_default() += 1;
        self.record_latency(latency);
    }

    /// A failed call (retries used up), sent at `sent_at_unix_ms`.
    pub fn record_error(&mut self, latency: Duration, code: &str, sent_at_unix_ms: u64) {
        self.completed += 1;
        *self.errors.entry(code.to_owned()).or_default() += 1;
        if self.failed_calls.len() < MAX_FAILED_CALLS {
            self.failed_calls.push(FailedCall {
                sent_at_unix_ms,
                code: code.to_owned(),
            });
        }
        self.record_latency(latency);
    }

    /// An attempt that failed with `code` and is being sent again.
    pub fn record_retry(&mut self, code: &str) {
        *self.retries.entry(code.to_owned()).or_default() += 1;
    }

    pub fn retry_count(&self) -> u64 {
        self.retries.values().sum()
    }

    fn record_latency(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .clamp(1, MAX_LATENCY_US);
        // Clamped into the histogram's range, so recording cannot fail.
        let _ = self.latency.record(us);
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Latency at `quantile` (0..=1), in milliseconds; 0 with no samples.
    pub fn latency_ms(&self, quantile: f64) -> f64 {
        if self.latency.is_empty() {
            0.0
        } else {
            self.latency.value_at_quantile(quantile) as f64 / 1000.0
        }
    }

    pub fn latency_summary(&self) -> LatencySummary {
        let empty = self.latency.is_empty();
        let ms = |us: u64| if empty { 0.0 } else { us as f64 / 1000.0 };
        LatencySummary {
            min: ms(self.latency.min()),
            p50: self.latency_ms(0.5),
            p90: self.latency_ms(0.9),
            p99: self.latency_ms(0.99),
            p999: self.latency_ms(0.999),
            max: ms(self.latency.max()),
            mean: if empty { 0.0 } else { self.latency.mean() / 1000.0 },
        }
    }
}

/// Latency percentiles in milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LatencySummary {
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

/// Final states of the created payments, read back with GetPayment.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FinalStates {
    /// How many created payments were read back (a bounded sample of all of them).
    pub checked: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub pending: u64,
    /// GetPayment calls that failed, by gRPC code.
    pub errors: BTreeMap<String, u64>,
}

/// Everything a run measured; `--json` prints exactly this.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub gateway: String,
    /// `rate` or `concurrency`.
    pub mode: &'static str,
    /// Target sends per second (rate mode).
    pub target_rate: Option<f64>,
    pub concurrency: Option<usize>,
    pub elapsed_seconds: f64,
    pub sent: u64,
    pub completed: u64,
    pub ok: u64,
    /// Failed calls (after their retries) by gRPC code.
    pub errors: BTreeMap<String, u64>,
    /// When the failed calls were sent, with their codes (the first 10,000).
    pub failed_calls: Vec<FailedCall>,
    /// When the run started, in milliseconds since the Unix epoch.
    pub started_at_unix_ms: u64,
    /// Attempts sent again after a transport failure, by the failure's gRPC code.
    pub retries: BTreeMap<String, u64>,
    /// Calls answered OK after at least one retry.
    pub answered_after_retry: u64,
    /// OK answers the gateway marked replayed (the key was known to it).
    pub replayed: u64,
    /// Completed calls per second over the run.
    pub throughput_per_second: f64,
    pub latency_ms: LatencySummary,
    /// Payment status in the CreatePayment answers.
    pub response_statuses: BTreeMap<String, u64>,
    pub final_states: Option<FinalStates>,
    /// The `x-trace-id` of one created payment, for Jaeger.
    pub sample_trace_id: Option<String>,
    pub sample_payment_id: Option<String>,
}

impl Summary {
    /// The human-readable report.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let how = match (self.target_rate, self.concurrency) {
            (Some(rate), _) => format!("fixed rate {rate}/s"),
            (None, Some(n)) => format!("{n} concurrent clients"),
            (None, None) => String::new(),
        };
        out += &format!(
            "payplane load: {} payments to {} in {:.2} s ({how})\n",
            self.sent, self.gateway, self.elapsed_seconds
        );
        out += &format!(
            "  completed  {}  ({:.1}/s)   ok {}   errors {}\n",
            self.completed,
            self.throughput_per_second,
            self.ok,
            self.errors.values().sum::<u64>()
        );
        let l = &self.latency_ms;
        out += &format!(
            "  latency    min {:.2} ms  p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms  mean {:.2} ms\n",
            l.min, l.p50, l.p90, l.p99, l.p999, l.max, l.mean
        );
        if !self.errors.is_empty() {
            out += &format!("  errors     {}\n", join_counts(&self.errors));
        }
        if !self.retries.is_empty() || self.replayed > 0 {
            out += &format!(
                "  retries    {}  ({})   answered after a retry {}   replayed by the gateway {}\n",
                self.retries.values().sum::<u64>(),
                join_counts(&self.retries),
                self.answered_after_retry,
                self.replayed
            );
        }
        out += &format!("  answered   {}\n", join_counts(&self.response_statuses));
        if let Some(f) = &self.final_states {
            out += &format!(
                "  final      SUCCEEDED {}  FAILED {}  PENDING {}  (GetPayment on {} created payments)\n",
                f.succeeded, f.failed, f.pending, f.checked
            );
            if !f.errors.is_empty() {
                out += &format!("  GetPayment errors: {}\n", join_counts(&f.errors));
            }
        }
        if let (Some(trace), Some(payment)) = (&self.sample_trace_id, &self.sample_payment_id) {
            out += &format!("  sample     payment {payment} trace {trace}\n");
        }
        out
    }
}

pub fn join_counts(counts: &BTreeMap<String, u64>) -> String {
    if counts.is_empty() {
        return "none".to_owned();
    }
    counts
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join("  ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_known_latencies() {
        let mut s = Stats::default();
        for ms in 1..=1000u64 {
            s.record_ok(Duration::from_millis(ms), "SUCCEEDED", false, false);
        }
        s.record_error(Duration::from_secs(2), "UNAVAILABLE", 1);
        s.record_error(Duration::from_secs(2), "UNAVAILABLE", 1);
        s.record_error(Duration::from_secs(2), "DEADLINE_EXCEEDED", 2);
        let l = s.latency_summary();
        // 1003 samples: the median is the 502nd (502 ms), p99 the 993rd (993 ms); three
        // significant digits put each within 0.1% of that.
        assert!((l.p50 - 502.0).abs() <= 0.6, "{l:?}");
        assert!((l.p99 - 993.0).abs() <= 1.0, "{l:?}");
        assert!(
            (l.min - 1.0).abs() < 0.01 && (l.max - 2000.0).abs() <= 2.0,
            "{l:?}"
        );
        assert_eq!((s.completed, s.ok, s.error_count()), (1003, 1000, 3));
        assert_eq!(join_counts(&s.errors), "DEADLINE_EXCEEDED 1  UNAVAILABLE 2");
        let empty = Stats::default().latency_summary();
        assert_eq!((empty.p50, empty.max), (0.0, 0.0));
    }

    #[test]
    fn summary_renders_every_figure_and_serialises() {
        let mut s = Stats::default();
        s.record_ok(Duration::from_millis(4), "SUCCEEDED", false, false);
        s.record_retry("CANCELLED");
        s.record_retry("CANCELLED");
        s.record_retry("UNAVAILABLE");
        s.record_ok(Duration::from_millis(8), "FAILED", true, true);
        s.record_error(Duration::from_millis(1), "UNAVAILABLE", 3);
        assert_eq!(s.retry_count(), 3);
        let summary = Summary {
            gateway: "http://127.0.0.1:50051".into(),
            mode: "rate",
            target_rate: Some(100.0),
            concurrency: None,
            elapsed_seconds: 0.03,
            sent: 3,
            completed: s.completed,
            ok: s.ok,
            errors: s.errors.clone(),
            failed_calls: s.failed_calls.clone(),
            started_at_unix_ms: 1_700_000_000_000,
            retries: s.retries.clone(),
            answered_after_retry: s.answered_after_retry,
            replayed: s.replayed,
            throughput_per_second: 100.0,
            latency_ms: s.latency_summary(),
            response_statuses: s.statuses.clone(),
            final_states: Some(FinalStates {
                checked: 2,
                succeeded: 1,
                failed: 1,
                ..Default::default()
            }),
            sample_trace_id: Some("abc".into()),
            sample_payment_id: Some("p1".into()),
        };
        let text = summary.render();
        assert!(text.contains("3 payments to http://127.0.0.1:50051"), "{text}");
        assert!(text.contains("ok 2   errors 1"), "{text}");
        assert!(text.contains("errors     UNAVAILABLE 1"), "{text}");
        assert!(
            text.contains(
                "retries    3  (CANCELLED 2  UNAVAILABLE 1)   answered after a retry 1   replayed by the gateway 1"
            ),
            "{text}"
        );
        assert!(text.contains("answered   FAILED 1  SUCCEEDED 1"), "{text}");
        assert!(
            text.contains("SUCCEEDED 1  FAILED 1  PENDING 0  (GetPayment on 2"),
            "{text}"
        );
        let json: serde_json::Value = serde_json::to_value(&summary).unwrap();
        assert_eq!(json["errors"]["UNAVAILABLE"], 1);
        assert_eq!(
            json["failed_calls"],
            serde_json::json!([{"sent_at_unix_ms": 3, "code": "UNAVAILABLE"}])
        );
        assert_eq!(json["retries"]["CANCELLED"], 2);
        assert_eq!(json["answered_after_retry"], 1);
        assert_eq!(json["final_states"]["succeeded"], 1);
        assert!((json["latency_ms"]["max"].as_f64().unwrap() - 8.0).abs() < 0.01);
    }
}
