//! The delivery figures on `/metrics`: a task of its own recomputes them every `every` over the
//! last `window` from the ReleaseEvents it can list, off the reconcile path.

use std::time::Duration;

use kube::{Api, Client, api::ListParams};
use payplane_delivery::{ReleaseEvent, fold, metrics::DeliveryMetrics};
use tokio_util::sync::CancellationToken;

#[derive(Clone, Copy, Debug)]
pub struct Window {
    /// How often the figures are recomputed.
    pub every: Duration,
    /// The span they cover, back from now.
    pub window: chrono::Duration,
}

impl Default for Window {
    fn default() -> Self {
        Self {
            every: Duration::from_secs(60),
            window: chrono::Duration::days(30),
        }
    }
}

/// Recomputes `metrics` from the ReleaseEvents of `namespace` (None: all) until `stop`. A failed
/// list keeps the last figures (and is retried at the next tick).
pub async fn refresh(
    client: Client,
    namespace: Option<String>,
    metrics: DeliveryMetrics,
    window: Window,
    stop: CancellationToken,
) {
    let api: Api<ReleaseEvent> = match &namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let mut tick = tokio::time::interval(window.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        match list_all(&api).await {
            Ok(events) => {
                let now = chrono::Utc::now();
                metrics.update(&fold(&events), now - window.window, now);
            }
            Err(e) => tracing::warn!(error = %e, "delivery figures not refreshed: cannot list ReleaseEvents"),
        }
    }
}

/// Every ReleaseEvent, page by page (500 a page).
async fn list_all(api: &Api<ReleaseEvent>) -> Result<Vec<ReleaseEvent>, kube::Error> {
    let mut events = Vec::new();
    let mut params = ListParams::default().limit(500);
    loop {
        let page = api.list(&params).await?;
        events.extend(page.items);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(events),
        }
    }
}
