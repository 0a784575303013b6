//! The routing service's own Prometheus metrics, served with the runtime's on `/metrics`.

use std::sync::atomic::AtomicU64;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use crate::domain::Strategy;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabel {
    pub policy_version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub channel: String,
    pub strategy: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub channel: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabel {
    pub channel: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

/// Buckets of the in-server Route time, 10 µs to 10 ms: decisions take microseconds.
const ROUTE_BUCKETS: [f64; 10] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
];

/// Handles to every routing metric; cheap to clone.
#[derive(Clone)]
pub struct RoutingMetrics {
    /// Time in the Route handler: validation, decision and response, without the transport.
    pub route_seconds: Histogram,
    pub policy_info: Family<VersionLabel, Gauge>,
    pub policy_reloads: Family<ResultLabel, Counter>,
    pub decisions: Family<DecisionLabels, Counter>,
    pub no_route: Family<ReasonLabel, Counter>,
    pub outcomes: Family<OutcomeLabels, Counter>,
    pub eliminated: Family<ChannelLabel, Gauge>,
    pub success_rate: Family<ChannelLabel, Gauge<f64, AtomicU64>>,
}

impl Default for RoutingMetrics {
    fn default() -> Self {
        Self {
            route_seconds: Histogram::new(ROUTE_BUCKETS),
            policy_info: Family::default(),
            policy_reloads: Family::default(),
            decisions: Family::default(),
            no_route: Family::default(),
            outcomes: Family::default(),
            eliminated: Family::default(),
            success_rate: Family::default(),
        }
    }
}

impl RoutingMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register_with_unit(
            "routing_route",
            "Time in the Route handler (validation, decision, response), without the transport",
            prometheus_client::registry::Unit::Seconds,
            self.route_seconds.clone(),
        );
        registry.register(
            "routing_policy_info",
            "The policy in force (value 1), by content-hash version",
            self.policy_info.clone(),
        );
        registry.register(
            "routing_policy_reloads",
            "Policy reloads by result (applied, rejected)",
            self.policy_reloads.clone(),
        );
        registry.register(
            "routing_decisions",
            "Routing decisions by channel and strategy",
            self.decisions.clone(),
        );
        registry.register(
            "routing_no_route",
            "Route requests no channel could serve, by reason",
            self.no_route.clone(),
        );
        registry.register(
            "routing_outcomes",
            "Reported outcomes by channel and outcome",
            self.outcomes.clone(),
        );
        registry.register(
            "routing_channel_eliminated",
            "1 while a channel is eliminated for a low success rate",
            self.eliminated.clone(),
        );
        registry.register(
            "routing_channel_success_rate",
            "Success rate over the channel's sliding window (this replica)",
            self.success_rate.clone(),
        );
    }

    /// Counters of one channel, one per strategy, resolved once per policy so that a decision
    /// increments an atomic without hashing labels.
    pub fn decision_counters(&self, channel: &str) -> Vec<Counter> {
        Strategy::ALL
            .iter()
            .map(|s| {
                self.decisions.get_or_create_owned(&DecisionLabels {
                    channel: channel.to_owned(),
                    strategy: s.name(),
                })
            })
            .collect()
    }
}
