//! [`ReleaseRecord`]: what one release was, folded from its events.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::event::{EventKind, ReleaseEvent, ReleaseEventSpec, Verdict};

/// How a release ended.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// All traffic moved to the new revision (and it was not undone afterwards).
    Promoted,
    /// Traffic is back on the previous revision after an abort or an undo (`RolledBack` or
    /// `Undone` was the last terminal event).
    RolledBack,
    /// Stopped, and no `RolledBack` event recorded after it.
    Aborted,
    /// A newer pod template replaced it before it finished.
    Superseded,
    /// No terminal event yet.
    InProgress,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Promoted => "Promoted",
            Self::RolledBack => "RolledBack",
            Self::Aborted => "Aborted",
            Self::Superseded => "Superseded",
            Self::InProgress => "InProgress",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One release of one Rollout.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub rollout: String,
    pub service: String,
    pub release: u64,
    /// Pod-template hash.
    pub revision: String,
    pub commit: Option<String>,
    pub commit_time: Option<DateTime<Utc>>,
    pub chart_version: Option<String>,
    /// The `Started` event, or the first event when `Started` is missing.
    pub started: DateTime<Utc>,
    /// The last terminal event; `None` while in progress.
    pub finished: Option<DateTime<Utc>>,
    /// The first `Promoted` event (kept even if the release was undone later).
    pub promoted: Option<DateTime<Utc>>,
    pub outcome: Outcome,
    /// The canary took production requests: some event had a weight above 0, or it was promoted.
    pub reached_traffic: bool,
    /// First sign of failure: a failed analysis measurement, an abort or an undo.
    pub failed_at: Option<DateTime<Utc>>,
    /// The reason of the first failure sign (the abort reason, or the failed metric).
    pub failure_reason: Option<String>,
    /// All traffic back on stable: the first `RolledBack` event after `failed_at`.
    pub restored_at: Option<DateTime<Utc>>,
    pub started_by: Option<String>,
    /// Who approved gates, in order, without repeats.
    pub approved_by: Vec<String>,
    /// Number of events folded (after dropping duplicates of the same sequence).
    pub events: usize,
}

impl ReleaseRecord {
    /// Commit → promotion.
    pub fn lead_time(&self) -> Option<chrono::Duration> {
        Some(self.promoted? - self.commit_time?)
    }

    /// A change failure: the canary served production requests and the release ended rolled
    /// back or aborted (see `figures` for why this is the definition).
    pub fn is_change_failure(&self) -> bool {
        self.reached_traffic && matches!(self.outcome, Outcome::RolledBack | Outcome::Aborted)
    }

    /// First failure sign → all traffic back on stable.
    pub fn time_to_restore(&self) -> Option<chrono::Duration> {
        Some(self.restored_at? - self.failed_at?)
    }
}

/// The key events are grouped by: one release of one Rollout in one namespace.
type Key = (Option<String>, String, u64);

/// Folds events, in any order and possibly with duplicates, into one record per release
/// (namespace, rollout, release), sorted by start time, then service and release.
pub fn fold(events: &[ReleaseEvent]) -> Vec<ReleaseRecord> {
    let mut groups: BTreeMap<Key, BTreeMap<u32, &ReleaseEventSpec>> = BTreeMap::new();
    for e in events {
        let key = (
            e.metadata.namespace.clone(),
            e.spec.rollout.clone(),
            e.spec.release,
        );
        // The same object listed twice (an export merged with a live list) counts once.
        groups
            .entry(key)
            .or_default()
            .entry(e.spec.sequence)
            .or_insert(&e.spec);
    }
    let mut records: Vec<_> = groups
        .into_iter()
        .map(|((namespace, _, _), evs)| fold_release(namespace, evs.into_values().collect()))
        .collect();
    records.sort_by(|a, b| (a.started, &a.service, a.release).cmp(&(b.started, &b.service, b.release)));
    records
}

/// `evs` is one release's events in sequence order (not empty).
fn fold_release(namespace: Option<String>, evs: Vec<&ReleaseEventSpec>) -> ReleaseRecord {
    let first = evs[0];
    // Release-wide facts may be missing on some events: take the first one that has them.
    let find = |f: fn(&ReleaseEventSpec) -> Option<&String>| evs.iter().find_map(|e| f(e).cloned());
    let started_ev = evs.iter().find(|e| e.kind == EventKind::Started);
    let mut rec = ReleaseRecord {
        namespace,
        rollout: first.rollout.clone(),
        service: first.service.clone(),
        release: first.release,
        revision: first.revision.clone(),
        commit: find(|e| e.commit.as_ref()),
        commit_time: evs.iter().find_map(|e| e.commit_time),
        chart_version: find(|e| e.chart_version.as_ref()),
        started: started_ev.map_or(first.time, |e| e.time),
        finished: None,
        promoted: None,
        outcome: Outcome::InProgress,
        reached_traffic: false,
        failed_at: None,
        failure_reason: None,
        restored_at: None,
        started_by: started_ev.map(|e| e.actor.clone()),
        approved_by: Vec::new(),
        events: evs.len(),
    };
    for e in &evs {
        if e.weight.is_some_and(|w| w > 0) {
            rec.reached_traffic = true;
        }
        let failure = match e.kind {
            EventKind::AnalysisMeasured => match &e.analysis {
                Some(a) if a.verdict == Verdict::Failed => Some(match a.value {
                    Some(v) => format!("analysis {} failed ({} = {v})", a.metric, a.provider),
                    None => format!("analysis {} failed ({})", a.metric, a.provider),
                }),
                _ => None,
            },
            EventKind::Aborted => Some(e.reason.clone().unwrap_or_else(|| "aborted".into())),
            EventKind::Undone => Some(
                e.reason
                    .clone()
                    .unwrap_or_else(|| format!("undone by {}", e.actor)),
            ),
            _ => None,
        };
        if let Some(why) = failure
            && rec.failed_at.is_none()
        {
            rec.failed_at = Some(e.time);
            rec.failure_reason = Some(why);
        }
        match e.kind {
            EventKind::GateApproved if !rec.approved_by.contains(&e.actor) => {
                rec.approved_by.push(e.actor.clone());
            }
            EventKind::Promoted => {
                rec.reached_traffic = true;
                rec.promoted.get_or_insert(e.time);
            }
            EventKind::RolledBack if rec.failed_at.is_some() => {
                rec.restored_at.get_or_insert(e.time);
            }
            _ => {}
        }
        // The last terminal event decides: Aborted, then `retry`, then Promoted is a promotion.
        let outcome = match e.kind {
            EventKind::Promoted => Some(Outcome::Promoted),
            EventKind::Aborted => Some(Outcome::Aborted),
            EventKind::RolledBack | EventKind::Undone => Some(Outcome::RolledBack),
            EventKind::Superseded => Some(Outcome::Superseded),
            _ => None,
        };
        if let Some(o) = outcome {
            rec.outcome = o;
            rec.finished = Some(e.time);
        }
    }
    // A release promoted after a retry is restored by its promotion, not by a rollback.
    if rec.outcome == Outcome::Promoted {
        rec.failed_at = None;
        rec.failure_reason = None;
        rec.restored_at = None;
    }
    rec
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::event::{AnalysisEvidence, ReleaseContext, SYSTEM_ACTOR};

    fn t(min: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 10, 6, 9, 0, 0).unwrap() + chrono::Duration::minutes(min)
    }

    fn failed_analysis() -> AnalysisEvidence {
        AnalysisEvidence {
            metric: "success-rate".into(),
            provider: "scrape".into(),
            query: String::new(),
            value: Some(0.9),
            verdict: Verdict::Failed,
        }
    }

    fn release(kinds: &[(EventKind, i64, Option<u32>)]) -> Vec<ReleaseEvent> {
        let ctx = ReleaseContext::new("acc", "accounting", 3, "h3").with_commit("c3", t(-60));
        kinds
            .iter()
            .enumerate()
            .map(|(i, &(kind, min, weight))| {
                let mut e = ctx.event(i as u32, kind, SYSTEM_ACTOR, t(min));
                e.weight = weight;
                if kind == EventKind::AnalysisMeasured {
                    e.analysis = Some(failed_analysis());
                }
                if kind == EventKind::GateApproved {
                    e.actor = "bob".into();
                }
                e.into_resource()
            })
            .collect()
    }

    use EventKind::*;

    #[test]
    fn a_promoted_release() {
        let mut evs = release(&[
            (Started, 0, None),
            (WeightChanged, 1, Some(10)),
            (GateApproved, 5, None),
            (GateApproved, 6, None),
            (Promoted, 10, Some(100)),
        ]);
        evs.reverse(); // order does not matter
        evs.push(evs[0].clone()); // nor duplicates
        let recs = fold(&evs);
        assert_eq!(recs.len(), 1);
        let r = &recs[0];
        assert_eq!(r.outcome, Outcome::Promoted);
        assert_eq!(
            (r.started, r.finished, r.promoted),
            (t(0), Some(t(10)), Some(t(10)))
        );
        assert_eq!(r.lead_time(), Some(chrono::Duration::minutes(70)));
        assert_eq!(r.started_by.as_deref(), Some(SYSTEM_ACTOR));
        assert_eq!(r.approved_by, ["bob"]);
        assert_eq!(r.events, 5);
        assert!(r.reached_traffic && !r.is_change_failure());
    }

    #[test]
    fn a_failed_analysis_then_rollback_is_a_change_failure_with_time_to_restore() {
        let recs = fold(&release(&[
            (Started, 0, None),
            (WeightChanged, 1, Some(10)),
            (AnalysisMeasured, 5, None),
            (Aborted, 6, Some(0)),
            (RolledBack, 9, Some(0)),
        ]));
        let r = &recs[0];
        assert_eq!(r.outcome, Outcome::RolledBack);
        assert!(r.is_change_failure());
        assert_eq!(r.time_to_restore(), Some(chrono::Duration::minutes(4)));
        assert_eq!(
            r.failure_reason.as_deref(),
            Some("analysis success-rate failed (scrape = 0.9)")
        );
        assert_eq!(r.lead_time(), None);
    }

    #[test]
    fn an_abort_before_any_traffic_is_not_a_change_failure() {
        let r = &fold(&release(&[(Started, 0, None), (Aborted, 2, Some(0))]))[0];
        assert_eq!(r.outcome, Outcome::Aborted);
        assert!(!r.reached_traffic && !r.is_change_failure());
        assert_eq!(r.failure_reason.as_deref(), Some("aborted"));
        assert_eq!(r.time_to_restore(), None);
    }

    #[test]
    fn an_undone_promotion_is_rolled_back_and_keeps_its_promotion_time() {
        let r = &fold(&release(&[
            (Started, 0, None),
            (Promoted, 10, Some(100)),
            (Undone, 60, None),
            (RolledBack, 65, Some(0)),
        ]))[0];
        assert_eq!(r.outcome, Outcome::RolledBack);
        assert_eq!(r.promoted, Some(t(10)));
        assert_eq!(r.time_to_restore(), Some(chrono::Duration::minutes(5)));
        assert!(r.is_change_failure());
    }

    #[test]
    fn a_retry_that_promotes_is_a_promotion() {
        let r = &fold(&release(&[
            (Started, 0, None),
            (WeightChanged, 1, Some(10)),
            (Aborted, 2, Some(0)),
            (Resumed, 3, None),
            (Promoted, 9, Some(100)),
        ]))[0];
        assert_eq!(r.outcome, Outcome::Promoted);
        assert_eq!((r.failed_at, r.finished), (None, Some(t(9))));
    }

    #[test]
    fn superseded_and_in_progress() {
        let r = &fold(&release(&[(Started, 0, None), (WeightChanged, 1, Some(25))]))[0];
        assert_eq!((r.outcome, r.finished), (Outcome::InProgress, None));
        let r = &fold(&release(&[(Started, 0, None), (Superseded, 3, None)]))[0];
        assert_eq!((r.outcome, r.finished), (Outcome::Superseded, Some(t(3))));
        assert!(!r.is_change_failure());
    }
}
