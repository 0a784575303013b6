//! The ledger's own metrics, registered in the runtime's registry (served on the admin port).

use std::sync::atomic::{AtomicI64, AtomicU64};

use prometheus_client::metrics::{counter::Counter, gauge::Gauge, histogram::Histogram};

use crate::store::{GroupStats, InvariantReport};

#[derive(Clone)]
pub struct LedgerMetrics {
    /// Invariant violations found by the last full check (-1 before the first check).
    violations: Gauge<i64, AtomicI64>,
    group_requests: Histogram,
    group_events: Histogram,
    group_seconds: Histogram,
    expired: Counter<u64, AtomicU64>,
}

impl LedgerMetrics {
    pub fn new(metrics: &payplane_runtime::Metrics) -> Self {
        let m = Self {
            violations: Gauge::default(),
            group_requests: Histogram::new([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
            group_events: Histogram::new([1.0, 10.0, 100.0, 1000.0, 4000.0, 8190.0, 16380.0]),
            group_seconds: Histogram::new([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0]),
            expired: Counter::default(),
        };
        m.violations.set(-1);
        let mut r = metrics.registry();
        r.register(
            "ledger_invariant_violations",
            "Invariant violations found by the last full check (sum debits == sum credits per ledger, \
             balances == sum of transfers, no pending transfer past its timeout, balance limits); -1 before the first",
            m.violations.clone(),
        );
        r.register(
            "ledger_group_commit_requests",
            "Requests applied per group-commit transaction",
            m.group_requests.clone(),
        );
        r.register(
            "ledger_group_commit_events",
            "Events applied per group-commit transaction",
            m.group_events.clone(),
        );
        r.register(
            "ledger_group_commit_seconds",
            "Duration of a group-commit transaction",
            m.group_seconds.clone(),
        );
        r.register(
            "ledger_pending_transfers_expired",
            "Pending transfers voided by their timeout",
            m.expired.clone(),
        );
        m
    }

    pub fn record_check(&self, report: &InvariantReport) {
        self.violations
            .set(i64::try_from(report.violation_count).unwrap_or(i64::MAX));
    }

    pub fn record_group(&self, stats: &GroupStats, requests: usize, elapsed: std::time::Duration) {
        self.group_requests.observe(requests as f64);
        self.group_events.observe(stats.events as f64);
        self.group_seconds.observe(elapsed.as_secs_f64());
        self.expired.inc_by(stats.expired as u64);
    }
}
