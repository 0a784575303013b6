//! Wiring shared by the binary and the integration tests: leader election, then the controller
//! for as long as this process leads.

use std::{sync::Arc, time::Duration};

use kube::Client;
use tokio_util::sync::CancellationToken;

use crate::{
    delivery,
    lease::{self, Leadership, LeaseConfig},
    metrics::ControllerMetrics,
    plan_reconcile,
    reconcile::{self, Context},
};

#[derive(Debug, Clone)]
pub struct Settings {
    /// Watch only this namespace (None: all).
    pub namespace: Option<String>,
    /// None: no election, this process always leads (one replica).
    pub lease: Option<LeaseConfig>,
    /// Event reporter instance (the pod name).
    pub instance: Option<String>,
    /// Keep the status of the FreezePolicies matching this label selector only (tests); None: all.
    pub freeze_policy_selector: Option<String>,
    /// Send release outcomes as CDEvents (None: off).
    pub cdevents: Option<crate::cdevents::Config>,
    /// Reconcile only the Rollouts matching this label selector (benchmarks on a shared
    /// cluster); None: all.
    pub rollout_selector: Option<String>,
}

/// Runs until `stop`: campaigns for the Lease, reconciles while leading, and stops reconciling
/// the moment leadership is lost (then campaigns again).
pub async fn run(client: Client, settings: Settings, metrics: ControllerMetrics, stop: CancellationToken) {
    let (leadership, election) = match settings.lease.clone() {
        Some(config) => {
            let (l, handle) = lease::spawn(client.clone(), config, stop.clone());
            (l, Some(handle))
        }
        None => (Leadership::always(), None),
    };
    // The sender task outlives leadership changes; it stops once the context is dropped and
    // its queue drained (or its retries given up).
    let cdevents = settings
        .cdevents
        .clone()
        .map(|config| crate::cdevents::Sink::spawn(config, metrics.cdevents.clone()).0);
    // Reads only: every replica exports the figures, leader or not.
    let figures = tokio::spawn(delivery::refresh(
        client.clone(),
        settings.namespace.clone(),
        metrics.delivery.clone(),
        delivery::Window::default(),
        stop.clone(),
    ));
    let ctx = Arc::new(Context::new(
        client,
        leadership.clone(),
        metrics,
        settings.instance.clone(),
        cdevents,
    ));
    let mut watch = leadership.clone();
    loop {
        tokio::select! {
            () = watch.acquired() => {}
            () = stop.cancelled() => break,
        }
        tracing::info!("leading: starting the controller");
        let term = stop.child_token();
        let mut lost = leadership.receiver();
        let rollouts = reconcile::run(
            ctx.clone(),
            settings.namespace.clone(),
            settings.freeze_policy_selector.clone(),
            settings.rollout_selector.clone(),
            term.clone(),
        );
        // ReleasePlans: the same leadership and the same stop.
        let plans = plan_reconcile::run(ctx.clone(), settings.namespace.clone(), term.clone());
        let controller = async {
            futures::join!(rollouts, plans);
        };
        tokio::pin!(controller);
        tokio::select! {
            () = &mut controller => {}
            () = async { let _ = lost.wait_for(|leading| !*leading).await; } => {
                // Stop reconciling at once; in-flight reconciles finish (their writes are fenced
                // by the status precondition and the leadership check).
                term.cancel();
                controller.await;
            }
        }
        if stop.is_cancelled() {
            break;
        }
        tracing::warn!("leadership lost: controller stopped");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = figures.await;
    if let Some(handle) = election {
        // Let the election release the Lease.
        let _ = tokio::time::timeout(Duration::from_secs(5), handle).await;
    }
}
