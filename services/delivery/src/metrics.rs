//! The four figures as Prometheus gauges, per service and overall (`service="(all)"`, a value
//! no Kubernetes name can take), for the controller's `/metrics`.
//!
//! ```
//! use prometheus_client::registry::Registry;
//! use payplane_delivery::metrics::DeliveryMetrics;
//!
//! let mut registry = Registry::default();
//! let metrics = DeliveryMetrics::register(&mut registry);
//! // Whenever the trail changes (or once a minute):
//! let now = chrono::Utc::now();
//! metrics.update(&[], now - chrono::Duration::days(30), now);
//! ```

use std::sync::atomic::AtomicU64;

use chrono::{DateTime, Utc};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{family::Family, gauge::Gauge},
    registry::{Registry, Unit},
};

use crate::{
    figures::{DeliveryFigures, Figures},
    record::ReleaseRecord,
};

/// The `service` label value of the figures over all services.
pub const ALL_SERVICES: &str = "(all)";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    pub service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QuantileLabels {
    pub service: String,
    pub quantile: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Gauges of the last computed window. A figure without a sample (no promotion, no failure)
/// has no series rather than a misleading 0.
#[derive(Clone, Default)]
pub struct DeliveryMetrics {
    pub deployment_frequency: Family<ServiceLabels, FloatGauge>,
    pub lead_time: Family<QuantileLabels, FloatGauge>,
    pub change_failure_rate: Family<ServiceLabels, FloatGauge>,
    pub time_to_restore: Family<ServiceLabels, FloatGauge>,
    pub window: FloatGauge,
}

impl DeliveryMetrics {
    /// Registers the gauges under `payplane_delivery_*`.
    pub fn register(registry: &mut Registry) -> Self {
        let this = Self::default();
        let r = registry.sub_registry_with_prefix("payplane_delivery");
        r.register(
            "deployment_frequency_per_day",
            "Releases promoted per day over the window, by service",
            this.deployment_frequency.clone(),
        );
        r.register_with_unit(
            "lead_time",
            "Commit to promotion of the releases promoted in the window, by service and quantile (0.5, 0.9)",
            Unit::Seconds,
            this.lead_time.clone(),
        );
        r.register(
            "change_failure_ratio",
            "Share of the releases that reached production traffic and finished in the window which were rolled back or aborted",
            this.change_failure_rate.clone(),
        );
        r.register_with_unit(
            "time_to_restore_median",
            "Median time from the first failure sign to all traffic back on stable, over the window",
            Unit::Seconds,
            this.time_to_restore.clone(),
        );
        r.register_with_unit(
            "window",
            "Length of the window the figures cover",
            Unit::Seconds,
            this.window.clone(),
        );
        this
    }

    /// Recomputes the figures of `records` over `[since, until)` and replaces every series.
    pub fn update(&self, records: &[ReleaseRecord], since: DateTime<Utc>, until: DateTime<Utc>) {
        let figures = DeliveryFigures::compute(records, since, until);
        self.deployment_frequency.clear();
        self.lead_time.clear();
        self.change_failure_rate.clear();
        self.time_to_restore.clear();
        self.window.set(figures.days * 86_400.0);
        self.set(ALL_SERVICES, &figures.overall);
        for (service, f) in &figures.services {
            self.set(service, f);
        }
    }

    fn set(&self, service: &str, f: &Figures) {
        let labels = ServiceLabels {
            service: service.to_owned(),
        };
        self.deployment_frequency
            .get_or_create(&labels)
            .set(f.deployment_frequency_per_day);
        for (q, v) in [
            ("0.5", f.lead_time_median_seconds),
            ("0.9", f.lead_time_p90_seconds),
        ] {
            if let Some(v) = v {
                let labels = QuantileLabels {
                    service: service.to_owned(),
                    quantile: q.to_owned(),
                };
                self.lead_time.get_or_create(&labels).set(v);
            }
        }
        if let Some(v) = f.change_failure_rate {
            self.change_failure_rate.get_or_create(&labels).set(v);
        }
        if let Some(v) = f.time_to_restore_median_seconds {
            self.time_to_restore.get_or_create(&labels).set(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use prometheus_client::encoding::text::encode;

    use super::*;
    use crate::event::{EventKind::*, ReleaseContext, SYSTEM_ACTOR};

    #[test]
    fn the_exposition_carries_the_figures_per_service_and_overall() {
        let t = |h: i64| Utc.with_ymd_and_hms(2026, 10, 2, 0, 0, 0).unwrap() + chrono::Duration::hours(h);
        let ctx = ReleaseContext::new("acc", "accounting", 1, "h1").with_commit("c", t(-2));
        let events = vec![
            ctx.event(0, Started, "alice", t(0)).into_resource(),
            ctx.event(1, Promoted, SYSTEM_ACTOR, t(1))
                .with_weight(100)
                .into_resource(),
        ];
        let records = crate::record::fold(&events);
        let mut registry = Registry::default();
        let m = DeliveryMetrics::register(&mut registry);
        m.update(&records, t(-48), t(48));
        let mut out = String::new();
        encode(&mut out, &registry).unwrap();
        for line in [
            r#"payplane_delivery_deployment_frequency_per_day{service="(all)"} 0.25"#,
            r#"payplane_delivery_deployment_frequency_per_day{service="accounting"} 0.25"#,
            r#"payplane_delivery_lead_time_seconds{service="accounting",quantile="0.5"} 10800.0"#,
            r#"payplane_delivery_change_failure_ratio{service="(all)"} 0.0"#,
            "payplane_delivery_window_seconds 345600.0",
        ] {
            assert!(out.contains(line), "missing `{line}` in:\n{out}");
        }
        assert!(
            !out.contains("time_to_restore_median_seconds{"),
            "no failure, no series:\n{out}"
        );
        // An update replaces the series: a window without the release has no lead time.
        m.update(&records, t(10), t(20));
        let mut out = String::new();
        encode(&mut out, &registry).unwrap();
        assert!(!out.contains("lead_time_seconds{"), "{out}");
        assert!(out.contains(r#"payplane_delivery_deployment_frequency_per_day{service="accounting"} 0.0"#));
    }
}
