//! The recovery loop: finds payments and refunds left in flight (a crash, a killed pod, a
//! downstream outage that outlasted the budget) and finishes or compensates them.
//!
//! Safe with any number of replicas: a worker claims rows whose lease ran out with
//! `FOR UPDATE SKIP LOCKED` and takes a new lease (budget + margin). A lease only runs out after
//! its holder's budget has passed and so after every call it made has answered or timed out,
//! which is what makes "the channel has no record of the charge" mean it never happened.

use std::time::Duration;

use futures::StreamExt;
use payplane_runtime::Shutdown;
use tracing::Instrument;
use uuid::Uuid;

use crate::{domain::Mode, engine::SharedEngine};

#[derive(Clone, Debug)]
pub struct RecoveryConfig {
    pub interval: Duration,
    pub batch: i64,
    pub concurrency: usize,
}

/// Runs until shutdown.
pub async fn run(engine: SharedEngine, cfg: RecoveryConfig, shutdown: Shutdown) {
    tracing::info!(interval = ?cfg.interval, batch = cfg.batch, "recovery loop started");
    loop {
        let busy = match pass(&engine, &cfg).await {
            Ok(n) => n as i64 >= cfg.batch,
            Err(e) => {
                tracing::warn!(error = %e, "recovery pass failed");
                false
            }
        };
        // A full batch means more may be waiting: go again at once.
        if busy {
            if shutdown.is_triggered() {
                break;
            }
            continue;
        }
        tokio::select! {
            () = shutdown.triggered() => break,
            () = tokio::time::sleep(cfg.interval) => {}
        }
    }
    tracing::info!("recovery loop stopped");
}

/// One pass: claims and drives what it can. Returns how many rows it claimed.
pub async fn pass(engine: &SharedEngine, cfg: &RecoveryConfig) -> crate::error::Result<usize> {
    let owner = Uuid::new_v4();
    let lease = engine.config().lease();
    let payments = engine.store().claim_payments(owner, lease, cfg.batch).await?;
    let refunds = engine.store().claim_refunds(owner, lease, cfg.batch).await?;
    let claimed = payments.len() + refunds.len();
    for _ in &payments {
        engine.metrics().record_recovery("payment", "claimed");
    }
    futures::stream::iter(payments)
        .for_each_concurrent(cfg.concurrency, |p| {
            let engine = engine.clone();
            let span = tracing::info_span!("recover_payment", payment.id = %p.id, step = p.saga.step.name(), original_trace_id = %p.trace_id);
            async move {
                tracing::info!(step = p.saga.step.name(), "recovering payment");
                match engine.drive(p, owner, Mode::Recovery).await {
                    Ok(p) if p.saga.is_final() => {
                        tracing::info!(status = p.saga.status.name(), reason = %p.saga.failure_reason, "recovered");
                        engine.metrics().record_recovery("payment", "finished");
                    }
                    Ok(_) => engine.metrics().record_recovery("payment", "still_in_flight"),
                    Err(e) => {
                        engine.metrics().record_recovery("payment", "error");
                        tracing::error!(error = %e, "recovery failed");
                    }
                }
            }
            .instrument(span)
        })
        .await;
    for r in refunds {
        engine.metrics().record_recovery("refund", "claimed");
        let span = tracing::info_span!("recover_refund", refund.id = %r.id, payment.id = %r.payment_id);
        async {
            let payment = match engine.store().get_payment(r.payment_id).await {
                Ok(Some(p)) => p,
                Ok(None) => return tracing::error!("refund of a missing payment"),
                Err(e) => return tracing::warn!(error = %e, "cannot load the refund's payment"),
            };
            match engine.drive_refund(r, &payment, owner).await {
                Ok(r) if r.state.step == crate::domain::Step::Done => {
                    engine.metrics().record_recovery("refund", "finished")
                }
                Ok(_) => engine.metrics().record_recovery("refund", "still_in_flight"),
                Err(e) => {
                    engine.metrics().record_recovery("refund", "error");
                    tracing::error!(error = %e, "refund recovery failed");
                }
            }
        }
        .instrument(span)
        .await;
    }
    Ok(claimed)
}
