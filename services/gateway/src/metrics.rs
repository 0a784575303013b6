//! The gateway's own metrics, registered in the runtime's registry (so they carry `service` and
//! `version` labels too): payments by final status and failure reason, saga step latency by
//! action and result, and what the recovery loop did.

use std::time::Duration;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::{Registry, Unit},
};

const STEP_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FinalLabels {
    kind: &'static str,
    status: &'static str,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    action: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RecoveryLabels {
    kind: &'static str,
    action: &'static str,
}

#[derive(Clone)]
pub struct GatewayMetrics {
    finals: Family<FinalLabels, Counter>,
    steps: Family<StepLabels, Histogram>,
    recovery: Family<RecoveryLabels, Counter>,
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        Self {
            finals: Family::default(),
            steps: Family::new_with_constructor((|| Histogram::new(STEP_BUCKETS)) as fn() -> Histogram),
            recovery: Family::default(),
        }
    }
}

impl GatewayMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "gateway_payments_final",
            "Payments and refunds that reached a final status, by failure reason (its first segment)",
            m.finals.clone(),
        );
        registry.register_with_unit(
            "gateway_saga_step_duration",
            "Time of one saga action including retries, by action and result",
            Unit::Seconds,
            m.steps.clone(),
        );
        registry.register(
            "gateway_recovery_actions",
            "What the recovery loop did: claimed, and each action it performed",
            m.recovery.clone(),
        );
        m
    }

    /// `kind`: `payment` or `refund`.
    pub fn record_final(&self, kind: &'static str, status: &'static str, reason: &str) {
        let reason = crate::domain::payment::reason_label(reason).to_string();
        self.finals
            .get_or_create(&FinalLabels { kind, status, reason })
            .inc();
    }

    /// `result`: `ok`, `transient` (left for retry) or `error`.
    pub fn record_step(&self, action: &'static str, result: &'static str, elapsed: Duration) {
        self.steps
            .get_or_create(&StepLabels { action, result })
            .observe(elapsed.as_secs_f64());
    }

    pub fn record_recovery(&self, kind: &'static str, action: &'static str) {
        self.recovery
            .get_or_create(&RecoveryLabels { kind, action })
            .inc();
    }
}
