//! Analysis bookkeeping, no I/O: which metrics a run has, when each is due, how a measurement is
//! recorded, and the metric and run verdicts with Argo Rollouts' semantics
//! (`failureLimit`, `consecutiveErrorLimit`, `inconclusiveLimit`).

use std::{collections::BTreeMap, time::Duration};

use chrono::{DateTime, Utc};

use crate::{
    crd::{
        AnalysisPhase, AnalysisRef, AnalysisRunStatus, AnalysisTemplateSpec, Measurement, MeasurementPhase,
        Metric, MetricStatus,
    },
    validate::parse_duration,
};

pub const BACKGROUND_RUN: &str = "background";
/// Measurements kept per metric in the status.
pub const MEASUREMENTS_KEPT: usize = 10;
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
pub const DEFAULT_CONSECUTIVE_ERROR_LIMIT: u32 = 4;

pub fn step_run_name(index: u32) -> String {
    format!("step-{index}")
}

/// The metrics of an analysis: those of the templates in order, then the inline ones. Unknown
/// templates are skipped here; validation reports them.
pub fn resolve(analysis: &AnalysisRef, templates: &BTreeMap<String, AnalysisTemplateSpec>) -> Vec<Metric> {
    analysis
        .templates
        .iter()
        .filter_map(|t| templates.get(&t.template_name))
        .flat_map(|t| t.metrics.iter().cloned())
        .chain(analysis.inline.iter().flat_map(|i| i.metrics.iter().cloned()))
        .collect()
}

/// A guard's failure ends the metric at once (a broken ledger is not a statistic).
pub fn is_guard(metric: &Metric) -> bool {
    metric.provider.ledger_invariants.is_some() || metric.provider.payment_success_rate.is_some()
}

/// Measurements a metric takes: its `count`, else one in a step and unbounded in the background.
pub fn count_limit(metric: &Metric, background: bool) -> Option<u32> {
    metric.count.or(if background { None } else { Some(1) })
}

pub fn interval(metric: &Metric) -> Duration {
    metric
        .interval
        .as_deref()
        .and_then(|d| parse_duration(d).ok())
        .unwrap_or(DEFAULT_INTERVAL)
}

fn initial_delay(metric: &Metric) -> Duration {
    metric
        .initial_delay
        .as_deref()
        .and_then(|d| parse_duration(d).ok())
        .unwrap_or(Duration::ZERO)
}

pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// When `metric` should next be measured, or None when it is finished.
pub fn next_due(
    metric: &Metric,
    status: Option<&MetricStatus>,
    run_started: DateTime<Utc>,
    background: bool,
) -> Option<DateTime<Utc>> {
    let Some(status) = status else {
        return Some(run_started + initial_delay(metric));
    };
    if status.phase.is_terminal() {
        return None;
    }
    if let Some(limit) = count_limit(metric, background)
        && status.count >= limit
    {
        return None;
    }
    match status
        .measurements
        .last()
        .and_then(|m| parse_time(&m.finished_at))
    {
        Some(last) => Some(last + interval(metric)),
        None => Some(run_started + initial_delay(metric)),
    }
}

/// Adds a measurement to the metric's counters and keeps the last [`MEASUREMENTS_KEPT`].
pub fn record(status: &mut MetricStatus, measurement: Measurement, guard: bool) {
    if measurement.phase != MeasurementPhase::Pending {
        status.count += 1;
    }
    match measurement.phase {
        MeasurementPhase::Pending => {}
        MeasurementPhase::Successful => {
            status.successful += 1;
            status.consecutive_error = 0;
        }
        MeasurementPhase::Failed => {
            status.failed += 1;
            status.consecutive_error = 0;
            status.guard_tripped |= guard;
        }
        MeasurementPhase::Inconclusive => {
            status.inconclusive += 1;
            status.consecutive_error = 0;
        }
        MeasurementPhase::Error => {
            status.error += 1;
            status.consecutive_error += 1;
        }
    }
    status.measurements.push(measurement);
    let excess = status.measurements.len().saturating_sub(MEASUREMENTS_KEPT);
    status.measurements.drain(..excess);
}

/// The metric's verdict from its counters (Argo's `assessMetricStatus` order: failure, then
/// errors, then inconclusive, then completion).
pub fn assess_metric(metric: &Metric, status: &MetricStatus, background: bool) -> AnalysisPhase {
    let failure_limit = metric.failure_limit.unwrap_or(0);
    if status.guard_tripped || (failure_limit >= 0 && status.failed > failure_limit as u32) {
        return AnalysisPhase::Failed;
    }
    if status.consecutive_error
        > metric
            .consecutive_error_limit
            .unwrap_or(DEFAULT_CONSECUTIVE_ERROR_LIMIT)
    {
        return AnalysisPhase::Error;
    }
    if status.inconclusive > metric.inconclusive_limit.unwrap_or(0) {
        return AnalysisPhase::Inconclusive;
    }
    match count_limit(metric, background) {
        // Done: a pass needs at least one successful measurement, never just errors.
        Some(limit) if status.count >= limit => {
            if status.successful > 0 {
                AnalysisPhase::Successful
            } else {
                AnalysisPhase::Inconclusive
            }
        }
        _ => AnalysisPhase::Running,
    }
}

/// A run's verdict: any failure wins, then errors, then inconclusive; successful when every
/// metric is.
pub fn assess_run(phases: impl IntoIterator<Item = AnalysisPhase>) -> AnalysisPhase {
    let phases: Vec<AnalysisPhase> = phases.into_iter().collect();
    for p in [
        AnalysisPhase::Failed,
        AnalysisPhase::Error,
        AnalysisPhase::Inconclusive,
        AnalysisPhase::Running,
    ] {
        if phases.contains(&p) {
            return p;
        }
    }
    AnalysisPhase::Successful
}

/// Re-assesses every metric of `run` (after measurements were recorded) and the run itself.
pub fn reassess(run: &mut AnalysisRunStatus, metrics: &[Metric]) {
    let background = run.name == BACKGROUND_RUN;
    let mut phases = Vec::new();
    for metric in metrics {
        let phase = match run.metrics.iter_mut().find(|m| m.name == metric.name) {
            Some(status) => {
                status.phase = assess_metric(metric, status, background);
                status.phase
            }
            None => AnalysisPhase::Running,
        };
        phases.push(phase);
    }
    if metrics.is_empty() {
        // Nothing to measure (templates vanished): not a pass.
        phases.push(AnalysisPhase::Inconclusive);
    }
    run.phase = assess_run(phases);
}

/// Explains a failed, errored or inconclusive run: the first metric in that state and its last
/// measurement.
pub fn explain(run: &AnalysisRunStatus) -> String {
    run.metrics
        .iter()
        .find(|m| m.phase == run.phase)
        .map(|m| {
            let last = m
                .measurements
                .last()
                .map(|x| x.value.as_str())
                .unwrap_or("no measurement");
            format!(
                "analysis {} metric {} is {:?} ({} failed, {} errors, {} inconclusive of {}): {last}",
                run.name, m.name, m.phase, m.failed, m.error, m.inconclusive, m.count
            )
        })
        .unwrap_or_else(|| format!("analysis {} is {:?}", run.name, run.phase))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::Provider;

    fn metric(failure_limit: Option<i32>, count: Option<u32>) -> Metric {
        Metric {
            name: "m".into(),
            failure_limit,
            count,
            ..Default::default()
        }
    }

    fn measure(phase: MeasurementPhase) -> Measurement {
        Measurement {
            phase,
            value: format!("{phase:?}"),
            finished_at: "2026-11-22T04:00:00Z".into(),
        }
    }

    fn run(metric: &Metric, phases: &[MeasurementPhase], background: bool) -> AnalysisPhase {
        let mut s = MetricStatus {
            name: metric.name.clone(),
            ..Default::default()
        };
        for p in phases {
            record(&mut s, measure(*p), is_guard(metric));
        }
        assess_metric(metric, &s, background)
    }

    use MeasurementPhase::{Error as E, Failed as F, Inconclusive as I, Successful as S};

    #[test]
    fn a_baseline_counts_towards_nothing_but_times_the_next_measurement() {
        let m = metric(None, Some(1));
        assert_eq!(
            run(&m, &[MeasurementPhase::Pending], false),
            AnalysisPhase::Running
        );
        let mut s = MetricStatus::default();
        record(&mut s, measure(MeasurementPhase::Pending), false);
        assert_eq!((s.count, s.inconclusive), (0, 0));
        let started = parse_time("2026-11-22T03:00:00Z").unwrap();
        assert_eq!(
            next_due(&m, Some(&s), started, false),
            Some(parse_time("2026-11-22T04:00:10Z").unwrap()),
            "one interval after the baseline"
        );
        assert_eq!(
            run(&m, &[MeasurementPhase::Pending, S], false),
            AnalysisPhase::Successful
        );
    }

    #[test]
    fn failure_limit_zero_fails_on_the_first_failure() {
        assert_eq!(run(&metric(None, Some(5)), &[S, F], false), AnalysisPhase::Failed);
    }

    #[test]
    fn failure_limit_counts_failures_over_the_run_not_consecutively() {
        let m = metric(Some(2), Some(10));
        assert_eq!(run(&m, &[F, S, F, S], false), AnalysisPhase::Running);
        assert_eq!(run(&m, &[F, S, F, S, F], false), AnalysisPhase::Failed);
        assert_eq!(
            run(&metric(Some(-1), Some(3)), &[F, F, S], false),
            AnalysisPhase::Successful
        );
    }

    #[test]
    fn consecutive_errors_reset_on_a_measurement() {
        let m = metric(None, None);
        // Default limit 4: the fifth consecutive error errors the metric.
        assert_eq!(run(&m, &[E, E, E, E], true), AnalysisPhase::Running);
        assert_eq!(run(&m, &[E, E, E, E, E], true), AnalysisPhase::Error);
        assert_eq!(
            run(&m, &[E, E, E, E, S, E, E, E, E], true),
            AnalysisPhase::Running
        );
    }

    #[test]
    fn inconclusive_beyond_the_limit_is_inconclusive() {
        assert_eq!(
            run(&metric(None, Some(3)), &[S, I], false),
            AnalysisPhase::Inconclusive
        );
        let m = Metric {
            inconclusive_limit: Some(1),
            ..metric(None, Some(3))
        };
        assert_eq!(run(&m, &[S, I, S], false), AnalysisPhase::Successful);
    }

    #[test]
    fn completion_needs_a_successful_measurement() {
        assert_eq!(
            run(&metric(None, None), &[S], false),
            AnalysisPhase::Successful,
            "count defaults to 1 in a step"
        );
        assert_eq!(
            run(&metric(None, None), &[S, S, S], true),
            AnalysisPhase::Running,
            "unbounded in the background"
        );
        let m = Metric {
            consecutive_error_limit: Some(5),
            ..metric(None, Some(2))
        };
        assert_eq!(
            run(&m, &[E, E], false),
            AnalysisPhase::Inconclusive,
            "errors alone never pass"
        );
    }

    #[test]
    fn a_guard_fails_at_once_whatever_the_failure_limit() {
        let m = Metric {
            failure_limit: Some(10),
            provider: Provider {
                ledger_invariants: Some(Default::default()),
                ..Default::default()
            },
            ..metric(None, None)
        };
        assert_eq!(run(&m, &[S, S, F], true), AnalysisPhase::Failed);
    }

    #[test]
    fn measurements_kept_are_bounded() {
        let mut s = MetricStatus::default();
        for _ in 0..25 {
            record(&mut s, measure(S), false);
        }
        assert_eq!(s.measurements.len(), MEASUREMENTS_KEPT);
        assert_eq!(s.count, 25);
    }

    #[test]
    fn run_verdict_precedence() {
        use AnalysisPhase::*;
        assert_eq!(assess_run([Successful, Failed, Inconclusive]), Failed);
        assert_eq!(assess_run([Successful, Error, Inconclusive]), Error);
        assert_eq!(assess_run([Successful, Running, Inconclusive]), Inconclusive);
        assert_eq!(assess_run([Successful, Running]), Running);
        assert_eq!(assess_run([Successful, Successful]), Successful);
    }

    #[test]
    fn due_times() {
        let t0 = parse_time("2026-11-22T04:00:00Z").unwrap();
        let m = Metric {
            interval: Some("30s".into()),
            initial_delay: Some("5s".into()),
            ..metric(None, Some(2))
        };
        assert_eq!(
            next_due(&m, None, t0, false),
            Some(t0 + chrono::Duration::seconds(5))
        );
        let mut s = MetricStatus::default();
        record(&mut s, measure(S), false);
        assert_eq!(
            next_due(&m, Some(&s), t0, false),
            Some(t0 + chrono::Duration::seconds(30))
        );
        record(&mut s, measure(S), false);
        assert_eq!(next_due(&m, Some(&s), t0, false), None, "count reached");
    }
}
