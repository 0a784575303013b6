//! The four delivery figures (DORA) over a window `[since, until)`, from release records.
//!
//! Definitions (each release is counted in the window by the time named here):
//!
//! - **Deployment frequency**: releases *promoted* (first `Promoted` event in the window, even
//!   if undone later: it was deployed) divided by the window's length in days.
//! - **Lead time for changes**: commit time (OCI label `org.opencontainers.image.created`) →
//!   first promotion, over the releases promoted in the window that carry a commit time.
//!   Median and 90th percentile, linearly interpolated between ranks (as numpy's default and
//!   spreadsheets' PERCENTILE.INC do, so a CSV reader gets the same numbers).
//! - **Change failure rate**: among the releases that *finished* in the window and *reached
//!   production traffic* (some event with weight > 0, or a promotion), the share whose outcome
//!   is RolledBack or Aborted. Why this population: a canary at 10% serves real customers, so it
//!   is a change deployed to production, and its rollback is a failed change even though the
//!   canary limited the damage. A release aborted before any request reached it never was in
//!   production (the pipeline caught it), and a superseded one ended neither well nor badly (its
//!   change ships with the next release); counting either in the denominator would dilute the
//!   rate with releases that were never deployed. In-progress releases have no outcome yet.
//! - **Time to restore**: first failure sign (a failed analysis measurement, an abort or an
//!   undo) → the `RolledBack` event (all traffic back on stable), median over the change
//!   failures finished in the window that recorded both.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::record::ReleaseRecord;

/// Figures of one service, or of all of them.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Figures {
    /// Releases promoted in the window.
    pub promotions: u64,
    /// Promotions per day.
    pub deployment_frequency_per_day: f64,
    /// Promoted releases in the window with a commit time (the lead-time sample).
    pub lead_time_samples: u64,
    pub lead_time_median_seconds: Option<f64>,
    pub lead_time_p90_seconds: Option<f64>,
    /// Finished releases that reached production traffic (the change failure rate's denominator).
    pub deployments_finished: u64,
    /// Of those, rolled back or aborted.
    pub change_failures: u64,
    /// `change_failures / deployments_finished`; `None` when nothing finished.
    pub change_failure_rate: Option<f64>,
    /// Change failures with a recorded restore (the time-to-restore sample).
    pub restores: u64,
    pub time_to_restore_median_seconds: Option<f64>,
}

/// The figures of a window, overall and per service.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryFigures {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub days: f64,
    pub overall: Figures,
    pub services: BTreeMap<String, Figures>,
}

/// Promotions and change failures of one UTC day, for the releases-per-day chart.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Day {
    pub date: NaiveDate,
    pub promotions: u64,
    pub change_failures: u64,
}

fn in_window(t: Option<DateTime<Utc>>, since: DateTime<Utc>, until: DateTime<Utc>) -> bool {
    t.is_some_and(|t| since <= t && t < until)
}

/// The `p`-quantile (0 ≤ p ≤ 1) of the values, linearly interpolated between closest ranks
/// (numpy `linear`, Excel PERCENTILE.INC); `None` when empty.
pub fn quantile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let h = (v.len() - 1) as f64 * p.clamp(0.0, 1.0);
    let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
    Some(v[lo] + (h - lo as f64) * (v[hi] - v[lo]))
}

fn figures<'a>(
    records: impl Iterator<Item = &'a ReleaseRecord> + Clone,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    days: f64,
) -> Figures {
    let promoted: Vec<_> = records
        .clone()
        .filter(|r| in_window(r.promoted, since, until))
        .collect();
    let lead: Vec<f64> = promoted
        .iter()
        .filter_map(|r| r.lead_time())
        .map(|d| d.num_milliseconds() as f64 / 1000.0)
        .collect();
    let deployed: Vec<_> = records
        .filter(|r| r.reached_traffic && r.outcome != crate::record::Outcome::InProgress)
        .filter(|r| r.outcome != crate::record::Outcome::Superseded)
        .filter(|r| in_window(r.finished, since, until))
        .collect();
    let failures: Vec<_> = deployed.iter().filter(|r| r.is_change_failure()).collect();
    let restore: Vec<f64> = failures
        .iter()
        .filter_map(|r| r.time_to_restore())
        .map(|d| d.num_milliseconds() as f64 / 1000.0)
        .collect();
    Figures {
        promotions: promoted.len() as u64,
        deployment_frequency_per_day: if days > 0.0 {
            promoted.len() as f64 / days
        } else {
            0.0
        },
        lead_time_samples: lead.len() as u64,
        lead_time_median_seconds: quantile(&lead, 0.5),
        lead_time_p90_seconds: quantile(&lead, 0.9),
        deployments_finished: deployed.len() as u64,
        change_failures: failures.len() as u64,
        change_failure_rate: (!deployed.is_empty()).then(|| failures.len() as f64 / deployed.len() as f64),
        restores: restore.len() as u64,
        time_to_restore_median_seconds: quantile(&restore, 0.5),
    }
}

impl DeliveryFigures {
    /// The figures of `records` over `[since, until)`. Every service that has a record appears
    /// in `services`, even with nothing in the window.
    pub fn compute(records: &[ReleaseRecord], since: DateTime<Utc>, until: DateTime<Utc>) -> Self {
        let until = until.max(since);
        let days = (until - since).num_milliseconds() as f64 / 86_400_000.0;
        let mut services = BTreeMap::new();
        for r in records {
            services.entry(r.service.clone()).or_insert_with(Figures::default);
        }
        for (name, f) in services.iter_mut() {
            *f = figures(records.iter().filter(|r| &r.service == name), since, until, days);
        }
        Self {
            since,
            until,
            days,
            overall: figures(records.iter(), since, until, days),
            services,
        }
    }

    /// One entry per UTC day that the window touches, oldest first.
    pub fn days(records: &[ReleaseRecord], since: DateTime<Utc>, until: DateTime<Utc>) -> Vec<Day> {
        let mut days = BTreeMap::new();
        if until > since {
            let last = (until - chrono::Duration::milliseconds(1)).date_naive();
            let mut d = since.date_naive();
            while d <= last {
                days.insert(d, (0u64, 0u64));
                d = d.succ_opt().expect("dates far from the end of time");
            }
        }
        for r in records {
            if in_window(r.promoted, since, until)
                && let Some(e) = r.promoted.and_then(|t| days.get_mut(&t.date_naive()))
            {
                e.0 += 1;
            }
            if r.is_change_failure()
                && in_window(r.finished, since, until)
                && let Some(e) = r.finished.and_then(|t| days.get_mut(&t.date_naive()))
            {
                e.1 += 1;
            }
        }
        days.into_iter()
            .map(|(date, (promotions, change_failures))| Day {
                date,
                promotions,
                change_failures,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use proptest::prelude::*;

    use super::*;
    use crate::record::Outcome;

    fn day(d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap() + chrono::Duration::days(d as i64 - 1)
    }

    fn rec(service: &str, release: u64, outcome: Outcome, at: DateTime<Utc>) -> ReleaseRecord {
        let promoted = matches!(outcome, Outcome::Promoted).then_some(at);
        ReleaseRecord {
            namespace: None,
            rollout: service.into(),
            service: service.into(),
            release,
            revision: format!("h{release}"),
            commit: Some("c".into()),
            commit_time: Some(at - chrono::Duration::hours(release as i64 % 50)),
            chart_version: None,
            started: at - chrono::Duration::minutes(30),
            finished: (outcome != Outcome::InProgress).then_some(at),
            promoted,
            outcome,
            reached_traffic: outcome != Outcome::Superseded,
            failed_at: matches!(outcome, Outcome::RolledBack | Outcome::Aborted)
                .then(|| at - chrono::Duration::minutes(release as i64 % 7 + 1)),
            failure_reason: None,
            restored_at: matches!(outcome, Outcome::RolledBack).then_some(at),
            started_by: None,
            approved_by: vec![],
            events: 3,
        }
    }

    #[test]
    fn quantiles_interpolate_between_ranks() {
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[7.0], 0.9), Some(7.0));
        assert_eq!(quantile(&[1.0, 10.0], 0.5), Some(5.5));
        assert_eq!(quantile(&[10.0, 1.0], 0.9), Some(9.1));
        let v = [26.0, 25.0, 24.0, 48.0, 20.0];
        assert_eq!(quantile(&v, 0.5), Some(25.0));
        assert!((quantile(&v, 0.9).unwrap() - 39.2).abs() < 1e-9);
    }

    #[test]
    fn a_small_window_by_hand() {
        let records = vec![
            rec("a", 1, Outcome::Promoted, day(2)),   // lead 1 h
            rec("a", 2, Outcome::RolledBack, day(3)), // failure, restore 3 min
            rec("a", 3, Outcome::Promoted, day(40)),  // outside
            rec("b", 4, Outcome::Promoted, day(5)),   // lead 4 h
            rec("b", 5, Outcome::Superseded, day(6)), // not a deployment
            rec("b", 6, Outcome::InProgress, day(7)), // not finished
        ];
        let f = DeliveryFigures::compute(&records, day(1), day(11));
        assert_eq!(f.days, 10.0);
        assert_eq!(f.overall.promotions, 2);
        assert!((f.overall.deployment_frequency_per_day - 0.2).abs() < 1e-12);
        assert_eq!(f.overall.lead_time_median_seconds, Some(2.5 * 3600.0));
        assert_eq!(f.overall.deployments_finished, 3);
        assert_eq!(f.overall.change_failures, 1);
        assert_eq!(f.overall.change_failure_rate, Some(1.0 / 3.0));
        assert_eq!(f.overall.time_to_restore_median_seconds, Some(180.0));
        assert_eq!(f.services["a"].change_failure_rate, Some(0.5));
        assert_eq!(f.services["b"].change_failure_rate, Some(0.0));
        assert_eq!(f.services["b"].time_to_restore_median_seconds, None);
        let days = DeliveryFigures::days(&records, day(1), day(11));
        assert_eq!(days.len(), 10);
        assert_eq!(days[1].promotions, 1);
        assert_eq!(days[2].change_failures, 1);
        assert_eq!(days.iter().map(|d| d.promotions).sum::<u64>(), 2);
    }

    #[test]
    fn an_empty_window_has_no_rates() {
        let f = DeliveryFigures::compute(&[], day(1), day(1));
        assert_eq!(f.days, 0.0);
        assert_eq!(f.overall, Figures::default());
        assert!(DeliveryFigures::days(&[], day(1), day(1)).is_empty());
    }

    fn outcome() -> impl Strategy<Value = Outcome> {
        prop_oneof![
            Just(Outcome::Promoted),
            Just(Outcome::RolledBack),
            Just(Outcome::Aborted),
            Just(Outcome::Superseded),
            Just(Outcome::InProgress),
        ]
    }

    fn records() -> impl Strategy<Value = Vec<ReleaseRecord>> {
        prop::collection::vec((0usize..3, 1u64..500, outcome(), 0i64..60 * 24 * 40), 0..40).prop_map(|v| {
            v.into_iter()
                .map(|(s, release, o, min)| {
                    rec(
                        ["a", "b", "c"][s],
                        release,
                        o,
                        day(1) + chrono::Duration::minutes(min),
                    )
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn rates_are_rates_and_services_add_up(records in records(), from in 0u32..20, len in 0u32..30) {
            let (since, until) = (day(1 + from), day(1 + from + len));
            let f = DeliveryFigures::compute(&records, since, until);
            let all = std::iter::once(&f.overall).chain(f.services.values());
            for s in all {
                if let Some(r) = s.change_failure_rate {
                    prop_assert!((0.0..=1.0).contains(&r));
                }
                prop_assert!(s.change_failures <= s.deployments_finished);
                prop_assert!(s.deployment_frequency_per_day >= 0.0);
                if let (Some(m), Some(p)) = (s.lead_time_median_seconds, s.lead_time_p90_seconds) {
                    prop_assert!(m <= p + 1e-9);
                }
                prop_assert!(s.restores <= s.change_failures);
            }
            let sum = |g: fn(&Figures) -> u64| f.services.values().map(g).sum::<u64>();
            prop_assert_eq!(sum(|s| s.promotions), f.overall.promotions);
            prop_assert_eq!(sum(|s| s.deployments_finished), f.overall.deployments_finished);
            prop_assert_eq!(sum(|s| s.change_failures), f.overall.change_failures);
            let days = DeliveryFigures::days(&records, since, until);
            prop_assert_eq!(days.len() as u32, len);
            prop_assert_eq!(days.iter().map(|d| d.promotions).sum::<u64>(), f.overall.promotions);
            prop_assert_eq!(days.iter().map(|d| d.change_failures).sum::<u64>(), f.overall.change_failures);
        }

        #[test]
        fn a_promotion_never_lowers_frequency_nor_raises_failure_rate(
            records in records(), extra in 1u64..500, at in 0i64..60 * 24 * 10,
        ) {
            let (since, until) = (day(1), day(11));
            let before = DeliveryFigures::compute(&records, since, until);
            let mut more = records.clone();
            more.push(rec("a", extra, Outcome::Promoted, since + chrono::Duration::minutes(at)));
            let after = DeliveryFigures::compute(&more, since, until);
            prop_assert!(after.overall.deployment_frequency_per_day > before.overall.deployment_frequency_per_day);
            prop_assert!(after.overall.change_failure_rate.unwrap() <= before.overall.change_failure_rate.unwrap_or(1.0));
        }

        #[test]
        fn a_rollback_never_lowers_the_failure_rate(records in records(), extra in 1u64..500, at in 0i64..60 * 24 * 10) {
            let (since, until) = (day(1), day(11));
            let before = DeliveryFigures::compute(&records, since, until);
            let mut more = records.clone();
            more.push(rec("b", extra, Outcome::RolledBack, since + chrono::Duration::minutes(at)));
            let after = DeliveryFigures::compute(&more, since, until);
            prop_assert!(after.overall.change_failure_rate.unwrap() >= before.overall.change_failure_rate.unwrap_or(0.0));
            prop_assert_eq!(after.overall.promotions, before.overall.promotions);
        }
    }
}
