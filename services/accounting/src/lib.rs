//! The accounting service: a double-entry ledger with TigerBeetle's semantics on PostgreSQL.
//! See the crate README for the design (group commit, the ledger clock, expand/contract).

pub mod config;
pub mod convert;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod metrics;
pub mod model;
pub mod store;

use std::time::Duration;

use sqlx::PgPool;

use crate::{
    config::Config,
    grpc::LedgerApi,
    metrics::LedgerMetrics,
    store::{Committer, GroupConfig, Job, Store},
};

/// Starts the replica's background work (the group committer, the expiry tick and the invariant
/// gauge) and returns the gRPC service. The tasks end when the runtime stops.
pub fn start(pool: PgPool, config: &Config, metrics: &payplane_runtime::Metrics) -> LedgerApi {
    let metrics = LedgerMetrics::new(metrics);
    let observer_metrics = metrics.clone();
    let (committer, _task) = Committer::start(
        pool.clone(),
        GroupConfig {
            max_events: config.group_max_events.max(domain::BATCH_MAX),
            window: config.group_window,
            expire_limit: config.expire_limit,
            fault_lose_minor_unit: config.fault_lose_minor_unit,
        },
        Box::new(move |stats, requests, elapsed| observer_metrics.record_group(stats, requests, elapsed)),
    );
    let store = Store::new(pool);
    spawn_expiry(committer.clone(), config.expiry_interval);
    spawn_invariant_gauge(
        store.clone(),
        metrics.clone(),
        config.invariant_check_interval,
        config.expiry_grace,
    );
    LedgerApi {
        store,
        committer,
        expiry_grace: config.expiry_grace,
        metrics,
    }
}

/// Expiry on an idle replica: an empty group, which expires what is due under the clock lock
/// (so several replicas never void the same transfer twice).
fn spawn_expiry(committer: Committer, every: Duration) {
    if every.is_zero() {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = committer.submit(Job::Expire).await {
                tracing::warn!(error = %e, "expiry tick failed");
            }
        }
    });
}

fn spawn_invariant_gauge(store: Store, metrics: LedgerMetrics, every: Duration, grace: Duration) {
    if every.is_zero() {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match store.check_invariants(None, grace).await {
                Ok(report) => {
                    if report.violation_count > 0 {
                        tracing::error!(violations = report.violation_count, first = ?report.violations.first(), "ledger invariants violated");
                    }
                    metrics.record_check(&report);
                }
                Err(e) => tracing::warn!(error = %e, "invariant check failed"),
            }
        }
    });
}
