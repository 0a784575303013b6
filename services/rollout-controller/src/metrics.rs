//! The controller's own Prometheus metrics, registered in the runtime's registry (so they carry
//! `service` and `version` and are served on the admin port's `/metrics`).

use payplane_delivery::metrics::DeliveryMetrics;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Unit,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// Promoted, Aborted, Superseded.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    /// setWeight, pause, analysis.
    pub kind: String,
}

#[derive(Clone)]
pub struct ControllerMetrics {
    pub reconciles: Counter,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub reconcile_duration: Histogram,
    pub rollouts: Family<OutcomeLabels, Counter>,
    pub step_duration: Family<StepLabels, Histogram>,
    pub measurements: Counter,
    /// ReleasePlans ended, by outcome: Succeeded, RolledBack, Failed.
    pub release_plans: Family<OutcomeLabels, Counter>,
    /// CDEvents delivery: sent, failed (given up), dropped (queue full).
    pub cdevents: crate::cdevents::SinkMetrics,
    /// The four delivery figures over the ReleaseEvents (see [`crate::app`]'s refresher).
    pub delivery: DeliveryMetrics,
}

impl ControllerMetrics {
    pub fn register(metrics: &payplane_runtime::Metrics) -> Self {
        let this = Self {
            reconciles: Counter::default(),
            reconcile_errors: Family::default(),
            // Fine between 50 ms and 1 s: a p99 target below 1 s must be read from buckets
            // narrower than 0.5..1 s (linear interpolation in one wide bucket says little).
            reconcile_duration: Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.75, 0.9, 1.0, 1.5,
                2.5, 5.0, 10.0,
            ]),
            rollouts: Family::default(),
            step_duration: Family::new_with_constructor(
                (|| Histogram::new([1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0]))
                    as fn() -> Histogram,
            ),
            measurements: Counter::default(),
            release_plans: Family::default(),
            cdevents: crate::cdevents::SinkMetrics::default(),
            delivery: DeliveryMetrics::default(),
        };
        let mut r = metrics.registry();
        r.register(
            "rollout_controller_reconciles",
            "Reconciliations of Rollouts",
            this.reconciles.clone(),
        );
        r.register(
            "rollout_controller_reconcile_errors",
            "Failed reconciliations, by error",
            this.reconcile_errors.clone(),
        );
        r.register_with_unit(
            "rollout_controller_reconcile_duration",
            "Duration of one reconciliation",
            Unit::Seconds,
            this.reconcile_duration.clone(),
        );
        r.register(
            "rollout_controller_rollouts",
            "Rollouts ended, by outcome",
            this.rollouts.clone(),
        );
        r.register_with_unit(
            "rollout_controller_step_duration",
            "Time from a step's start to its completion, by step kind",
            Unit::Seconds,
            this.step_duration.clone(),
        );
        r.register(
            "rollout_controller_measurements",
            "Analysis measurements taken",
            this.measurements.clone(),
        );
        r.register(
            "rollout_controller_release_plans",
            "ReleasePlans ended, by outcome",
            this.release_plans.clone(),
        );
        r.register(
            "rollout_controller_cdevents_sent",
            "CDEvents delivered to the sink",
            this.cdevents.sent.clone(),
        );
        r.register(
            "rollout_controller_cdevents_failed",
            "CDEvents given up on (attempts exhausted or rejected by the sink)",
            this.cdevents.failed.clone(),
        );
        r.register(
            "rollout_controller_cdevents_dropped",
            "CDEvents dropped because the delivery queue was full",
            this.cdevents.dropped.clone(),
        );
        let delivery = DeliveryMetrics::register(&mut r);
        drop(r);
        Self { delivery, ..this }
    }
}
