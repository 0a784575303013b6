//! The policy in force, swapped atomically on reload, and the loop that watches the policy file.
//!
//! Decisions load the current policy with one `arc-swap` read (no lock); a reload builds the new
//! engine beside it and swaps the pointer, so a request in flight finishes on the policy it
//! started with and none is lost.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use arc_swap::{ArcSwap, Guard};
use prometheus_client::metrics::counter::Counter;

use crate::{
    domain::{Engine, PolicyError, Strategy, parse_policy, version_of},
    metrics::{ChannelLabel, ResultLabel, RoutingMetrics, VersionLabel},
};

/// A policy as loaded: the engine, where it came from and when.
pub struct Loaded {
    pub engine: Engine,
    pub version: String,
    pub yaml: String,
    pub source: String,
    pub loaded_at: SystemTime,
    /// Per channel, per [`Strategy`]: decision counters.
    decision_counters: Vec<Vec<Counter>>,
}

impl Loaded {
    pub fn count_decision(&self, channel: usize, strategy: Strategy) {
        let index = Strategy::ALL.iter().position(|s| *s == strategy).unwrap_or(0);
        self.decision_counters[channel][index].inc();
    }
}

/// What a reload did.
#[derive(Debug)]
pub enum Reload {
    Unchanged,
    Applied {
        from: String,
        to: String,
    },
    Rejected {
        version: String,
        errors: Vec<PolicyError>,
    },
}

pub struct Router {
    current: ArcSwap<Loaded>,
    pub metrics: RoutingMetrics,
}

impl Router {
    /// A router with the policy in `yaml`, or every error in it.
    pub fn new(source: &str, yaml: String, metrics: RoutingMetrics) -> Result<Self, Vec<PolicyError>> {
        let loaded = build(source, yaml, None, &metrics)?;
        metrics
            .policy_info
            .get_or_create(&VersionLabel {
                policy_version: loaded.version.clone(),
            })
            .set(1);
        Ok(Self {
            current: ArcSwap::from_pointee(loaded),
            metrics,
        })
    }

    pub fn current(&self) -> Guard<Arc<Loaded>> {
        self.current.load()
    }

    /// Applies `yaml` if it differs from the policy in force and is valid; an invalid policy
    /// is rejected and the running one kept.
    pub fn reload(&self, source: &str, yaml: String) -> Reload {
        let current = self.current.load_full();
        let version = version_of(&yaml);
        if version == current.version {
            return Reload::Unchanged;
        }
        match build(source, yaml, Some(&current.engine), &self.metrics) {
            Ok(loaded) => {
                let to = loaded.version.clone();
                self.current.store(Arc::new(loaded));
                self.metrics.policy_info.remove(&VersionLabel {
                    policy_version: current.version.clone(),
                });
                self.metrics
                    .policy_info
                    .get_or_create(&VersionLabel {
                        policy_version: to.clone(),
                    })
                    .set(1);
                self.metrics
                    .policy_reloads
                    .get_or_create(&ResultLabel { result: "applied" })
                    .inc();
                Reload::Applied {
                    from: current.version.clone(),
                    to,
                }
            }
            Err(errors) => {
                self.metrics
                    .policy_reloads
                    .get_or_create(&ResultLabel { result: "rejected" })
                    .inc();
                Reload::Rejected { version, errors }
            }
        }
    }

    /// Refreshes the per-channel gauges after an outcome.
    pub fn update_channel_gauges(&self, loaded: &Loaded, channel: usize) {
        let stats = &loaded.engine.stats[channel];
        let label = ChannelLabel {
            channel: loaded.engine.policy.channels[channel].id.clone(),
        };
        self.metrics
            .eliminated
            .get_or_create(&label)
            .set(i64::from(stats.is_eliminated()));
        if let Some(rate) = stats.overall.rate() {
            self.metrics.success_rate.get_or_create(&label).set(rate);
        }
    }
}

fn build(
    source: &str,
    yaml: String,
    previous: Option<&Engine>,
    metrics: &RoutingMetrics,
) -> Result<Loaded, Vec<PolicyError>> {
    let policy = parse_policy(&yaml)?;
    let decision_counters = policy
        .channels
        .iter()
        .map(|c| metrics.decision_counters(&c.id))
        .collect();
    Ok(Loaded {
        engine: Engine::new(policy, previous),
        version: version_of(&yaml),
        yaml,
        source: source.to_owned(),
        loaded_at: SystemTime::now(),
        decision_counters,
    })
}

/// Reads the policy file. A ConfigMap volume swaps a `..data` symlink on update; reading the
/// path each time follows it, and comparing content hashes (not mtimes) sees every change.
pub fn read_policy(path: &Path) -> std::io::Result<String> {
    std::fs::read_to_string(path)
}

/// Polls `path` every `interval` and applies changes until `stop` completes.
pub async fn watch(
    router: Arc<Router>,
    path: PathBuf,
    interval: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    let source = path.display().to_string();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_rejected: Option<String> = None;
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = ticker.tick() => {}
        }
        let read_path = path.clone();
        let yaml = match tokio::task::spawn_blocking(move || read_policy(&read_path)).await {
            Ok(Ok(yaml)) => yaml,
            Ok(Err(e)) => {
                tracing::warn!(path = %source, error = %e, "cannot read the policy file; keeping the policy in force");
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "policy read task failed");
                continue;
            }
        };
        if last_rejected.as_deref() == Some(version_of(&yaml).as_str()) {
            continue;
        }
        match router.reload(&source, yaml) {
            Reload::Unchanged => {}
            Reload::Applied { from, to } => {
                last_rejected = None;
                tracing::info!(path = %source, from = %from, to = %to, "policy reloaded");
            }
            Reload::Rejected { version, errors } => {
                // Log a rejected document once, not every second until it is fixed.
                if last_rejected.as_deref() != Some(version.as_str()) {
                    for e in &errors {
                        tracing::error!(path = %source, version = %version, line = e.line, column = e.column,
                            field = %e.path, "policy error: {}", e.message);
                    }
                    tracing::error!(path = %source, version = %version, errors = errors.len(),
                        kept = %router.current().version, "new policy rejected; keeping the policy in force");
                    last_rejected = Some(version);
                }
            }
        }
    }
}
