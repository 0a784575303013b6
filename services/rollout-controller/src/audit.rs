//! The audit trail: which `ReleaseEvent`s (payplane-delivery) one reconcile's status change
//! means, decided from the machine's plan (its event reasons) and the diff between the status it
//! read and the status it wrote. Pure; `reconcile` writes them once the status write (fenced by
//! the resourceVersion it read) succeeded, so a transition is recorded by the one reconcile that
//! committed it.

use chrono::{DateTime, Utc};
use payplane_delivery::{
    EventKind, ReleaseContext,
    event::{AnalysisEvidence, ImageRef, Verdict},
};

use crate::{
    analysis,
    crd::{
        CanaryStep, Measurement, MeasurementPhase, Metric, PauseReason, REQUESTED_BY_ANNOTATION,
        RolloutStatus,
    },
    machine::Action,
};

/// Pod-template annotations the charts set from `global.release.commit` / `commitTime`.
pub const COMMIT_ANNOTATION: &str = "payplane.io/commit";
pub const COMMIT_TIME_ANNOTATION: &str = "payplane.io/commit-time";
pub const CHART_LABEL: &str = "helm.sh/chart";

/// One transition of one release, before it gets its sequence number and release context.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    /// The release number (ControllerRevision number) and pod-template hash it belongs to.
    pub release: u64,
    pub revision: String,
    pub kind: EventKind,
    /// Who caused it, when known (the release author, an approver); None: the controller.
    pub actor: Option<String>,
    pub time: DateTime<Utc>,
    pub step: Option<u32>,
    pub weight: Option<u32>,
    pub reason: Option<String>,
    pub analysis: Option<AnalysisEvidence>,
}

/// The transitions from `prev` to `new` (the status the plan produced, with `new.revision` set
/// to the canary's release number), in the order they happened. `metric` finds the definition
/// of a metric of an analysis run (run name, metric name), for the evidence's provider and query.
pub fn transitions(
    steps: &[CanaryStep],
    prev: &RolloutStatus,
    new: &RolloutStatus,
    actions: &[Action],
    now: DateTime<Utc>,
    metric: &dyn Fn(&str, &str) -> Option<Metric>,
) -> Vec<Transition> {
    let reasons: Vec<(&str, &str)> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Event { reason, note, .. } => Some((*reason, note.as_str())),
            _ => None,
        })
        .collect();
    let has = |r: &str| reasons.iter().any(|(x, _)| *x == r);
    let note = |r: &str| {
        reasons
            .iter()
            .find(|(x, _)| *x == r)
            .map(|(_, n)| (*n).to_owned())
    };
    let mut out = Vec::new();
    let at = |release: Option<i64>, revision: Option<&String>, kind: EventKind| {
        Some(Transition {
            release: u64::try_from(release?).ok()?,
            revision: revision?.clone(),
            kind,
            actor: None,
            time: now,
            step: None,
            weight: None,
            reason: None,
            analysis: None,
        })
    };
    let current = || at(new.revision, new.canary_revision.as_ref(), EventKind::Started);

    // The release in flight before ends: superseded (unless it had ended already, aborted).
    if has("RolloutSuperseded")
        && !prev.abort
        && let Some(mut t) = at(
            prev.revision,
            prev.canary_revision.as_ref(),
            EventKind::Superseded,
        )
    {
        t.reason = note("RolloutSuperseded");
        out.push(t);
    }
    let started = has("RolloutStarted");
    if started && let Some(mut t) = current() {
        t.actor = new.released_by.clone();
        out.push(t);
    }
    if has("RolloutRetried")
        && let Some(mut t) = current()
    {
        t.kind = EventKind::Resumed;
        t.reason = Some("retry requested".into());
        out.push(t);
    }
    let restarted = started || has("RolloutRetried");
    let same_release =
        !restarted && new.canary_revision.is_some() && new.canary_revision == prev.canary_revision;

    // Measurements taken in this reconcile (newer than any the status read had).
    if let Some(base) = current() {
        for run in &new.analysis_runs {
            let before = prev
                .analysis_runs
                .iter()
                .find(|r| r.name == run.name && same_release);
            for m in &run.metrics {
                let seen = before
                    .and_then(|r| r.metrics.iter().find(|x| x.name == m.name))
                    .and_then(|x| x.measurements.last())
                    .and_then(|x| analysis::parse_time(&x.finished_at));
                for measurement in &m.measurements {
                    let Some(finished) = analysis::parse_time(&measurement.finished_at) else {
                        continue;
                    };
                    if seen.is_some_and(|s| finished <= s) {
                        continue;
                    }
                    let Some(evidence) = evidence(&m.name, measurement, metric(&run.name, &m.name).as_ref())
                    else {
                        continue;
                    };
                    out.push(Transition {
                        kind: EventKind::AnalysisMeasured,
                        time: finished,
                        step: step_of_run(&run.name),
                        reason: Some(format!("analysis run {}", run.name)),
                        analysis: Some(evidence),
                        ..base.clone()
                    });
                }
            }
        }
    }

    // Approvals recorded in this reconcile.
    for a in &new.approvals {
        if (same_release && prev.approvals.contains(a)) || current().is_none() {
            continue;
        }
        if let Some(mut t) = current() {
            t.kind = EventKind::GateApproved;
            t.actor = Some(a.by.clone());
            t.step = Some(a.step);
            out.push(t);
        }
    }

    let in_flight = new.canary_revision.is_some();
    if has("FreezeEnded")
        && in_flight
        && let Some(mut t) = current()
    {
        t.kind = EventKind::Unfrozen;
        t.reason = note("FreezeEnded");
        out.push(t);
    }

    let pause_of = |st: &RolloutStatus| st.pause_reason.filter(|r| *r != PauseReason::FreezeWindow);
    let aborted = has("RolloutAborted");
    let promoted = has("RolloutCompleted");
    if same_release
        && !aborted
        && pause_of(prev).is_some()
        && new.pause_reason.is_none()
        && let Some(mut t) = current()
    {
        t.kind = EventKind::Resumed;
        t.reason = pause_of(prev).map(|r| format!("{r:?} over"));
        out.push(t);
    }

    // The weight the step reached comes before the next step it lets begin.
    let before = if same_release { prev.weight } else { 0 };
    if !aborted
        && !promoted
        && new.weight != before
        && let Some(mut t) = current()
    {
        t.kind = EventKind::WeightChanged;
        t.weight = u32::try_from(new.weight).ok();
        out.push(t);
    }

    if let (Some(index), Some(mut t)) = (new.current_step_index, current())
        && (index as usize) < steps.len()
        && !aborted
        && (restarted || !same_release || prev.current_step_index != Some(index))
    {
        t.kind = EventKind::StepReached;
        t.step = Some(index);
        t.weight = steps[index as usize]
            .set_weight
            .and_then(|w| u32::try_from(w).ok());
        out.push(t);
    }

    if let Some(reason) = pause_of(new)
        && !aborted
        && (!same_release || pause_of(prev) != Some(reason))
        && let Some(mut t) = current()
    {
        t.kind = EventKind::Paused;
        t.step = new.current_step_index;
        t.reason = Some(format!("{reason:?}"));
        out.push(t);
    }

    if has("Frozen")
        && in_flight
        && let Some(mut t) = current()
    {
        t.kind = EventKind::Frozen;
        t.reason = note("Frozen");
        out.push(t);
    }

    if aborted && let Some(mut t) = at(new.revision, new.aborted_revision.as_ref(), EventKind::Aborted) {
        t.reason = new.abort_reason.clone();
        t.weight = Some(0);
        t.step = new.current_step_index;
        out.push(t);
    }
    if promoted && let Some(mut t) = at(prev.revision, prev.canary_revision.as_ref(), EventKind::Promoted) {
        t.weight = Some(100);
        out.push(t);
    }
    if prev.rolled_back_at.is_none()
        && let Some(time) = new.rolled_back_at.as_deref().and_then(analysis::parse_time)
        && let Some(mut t) = at(new.revision, new.aborted_revision.as_ref(), EventKind::RolledBack)
    {
        t.time = time;
        t.weight = Some(0);
        t.reason = Some("canary scaled to 0, no canary pod serving: all traffic on stable".into());
        out.push(t);
    }
    out
}

/// Names `requester` as the actor of what a handled request did in this reconcile (abort, retry,
/// promote, resume and the steps they let begin). Measurements, approvals and the later
/// rollback are not the requester's doing and keep their actor.
pub fn attribute_request(transitions: &mut [Transition], requester: &str) {
    for t in transitions {
        let caused = !matches!(
            t.kind,
            EventKind::AnalysisMeasured | EventKind::GateApproved | EventKind::RolledBack
        );
        if caused && t.actor.is_none() {
            t.actor = Some(requester.to_owned());
        }
    }
}

/// Who asked for the request on a Rollout: `requested-by` as is where the admission policy
/// makes it the requester's own name, marked unverified elsewhere; None when not given.
pub fn requester(annotations: &std::collections::BTreeMap<String, String>, enforced: bool) -> Option<String> {
    let by = annotations.get(REQUESTED_BY_ANNOTATION)?.trim();
    match (by.is_empty(), enforced) {
        (true, _) => None,
        (false, true) => Some(by.to_owned()),
        (false, false) => Some(format!("{by} (unverified)")),
    }
}

fn step_of_run(run: &str) -> Option<u32> {
    run.strip_prefix("step-").and_then(|i| i.parse().ok())
}

/// The evidence of one measurement; None for a baseline (`Pending`) that judges nothing.
fn evidence(name: &str, m: &Measurement, metric: Option<&Metric>) -> Option<AnalysisEvidence> {
    let verdict = match m.phase {
        MeasurementPhase::Pending => return None,
        MeasurementPhase::Successful => Verdict::Successful,
        MeasurementPhase::Failed => Verdict::Failed,
        // A provider error judges nothing either way; the text says what failed.
        MeasurementPhase::Inconclusive | MeasurementPhase::Error => Verdict::Inconclusive,
    };
    let (provider, query) = metric
        .map(provider_of)
        .unwrap_or_else(|| ("unknown".into(), String::new()));
    // The value leads the provider's summary (`0.95 below min 0.99`); a judge's summary or an
    // error has none.
    let value = m
        .value
        .split_whitespace()
        .next()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite());
    let summary = m.value.trim();
    let query = match m.phase {
        MeasurementPhase::Error => format!("{query} (error: {summary})"),
        _ if value.is_some_and(|v| summary == v.to_string()) || summary.is_empty() => query,
        _ if query.is_empty() => summary.to_owned(),
        _ => format!("{query}: {summary}"),
    };
    Some(AnalysisEvidence {
        metric: name.to_owned(),
        provider,
        query,
        value,
        verdict,
    })
}

/// The provider's name and what it asks (PromQL, the gRPC service, the ledger address).
pub fn provider_of(metric: &Metric) -> (String, String) {
    let p = &metric.provider;
    if let Some(x) = &p.prometheus {
        ("prometheus".into(), x.query.clone())
    } else if let Some(x) = &p.scrape {
        (
            "scrape".into(),
            x.grpc_service
                .clone()
                .unwrap_or_else(|| "grpc_server_handled_total".into()),
        )
    } else if let Some(x) = &p.ledger_invariants {
        (
            "ledgerInvariants".into(),
            format!("CheckInvariants ledger {}", x.ledger.unwrap_or(0)),
        )
    } else if let Some(x) = &p.payment_success_rate {
        (
            "paymentSuccessRate".into(),
            x.grpc_service
                .clone()
                .unwrap_or_else(|| "payplane.payment.v1.PaymentService".into()),
        )
    } else {
        ("unknown".into(), String::new())
    }
}

/// What all events of a release share, from its pod template (images, commit annotations), the
/// Deployment's labels (service, chart version) and the image IDs of its running pods (digests:
/// `(container, imageID)`).
pub fn release_context(
    rollout: &str,
    release: u64,
    revision: &str,
    deployment_labels: &std::collections::BTreeMap<String, String>,
    deployment_name: &str,
    template: Option<&serde_json::Value>,
    image_ids: &[(String, String, String)],
) -> ReleaseContext {
    let service = deployment_labels
        .get("app.kubernetes.io/name")
        .cloned()
        .unwrap_or_else(|| deployment_name.to_owned());
    let mut ctx = ReleaseContext::new(rollout, service, release, revision);
    if let Some(chart) = deployment_labels.get(CHART_LABEL).and_then(|c| chart_version(c)) {
        ctx = ctx.with_chart_version(chart);
    }
    let Some(template) = template else {
        return ctx;
    };
    let annotations = &template["metadata"]["annotations"];
    ctx.commit = annotations[COMMIT_ANNOTATION]
        .as_str()
        .filter(|c| !c.is_empty())
        .map(str::to_owned);
    ctx.commit_time = annotations[COMMIT_TIME_ANNOTATION]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    let containers = template["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ctx.images = containers
        .iter()
        .filter_map(|c| {
            let name = c["name"].as_str()?;
            let image = c["image"].as_str()?;
            let mut r = ImageRef::new(name, image);
            // A digest only from a pod that runs this very image in this container.
            if let Some(d) = image_ids
                .iter()
                .find(|(n, i, _)| n == name && i == image)
                .and_then(|(_, _, id)| digest(id))
            {
                r = r.with_digest(d);
            }
            Some(r)
        })
        .collect();
    ctx
}

/// `accounting-1.8.0-rc.1` → `1.8.0-rc.1`: what follows the first `-<digit>`.
pub fn chart_version(label: &str) -> Option<String> {
    let bytes = label.as_bytes();
    (0..bytes.len().saturating_sub(1))
        .find(|&i| bytes[i] == b'-' && bytes[i + 1].is_ascii_digit())
        .map(|i| label[i + 1..].to_owned())
}

/// The `sha256:...` of a container status's imageID (`repo@sha256:...`, `docker-pullable://...`).
pub fn digest(image_id: &str) -> Option<String> {
    let d = image_id.rsplit_once('@').map_or(image_id, |(_, d)| d);
    d.starts_with("sha256:").then(|| d.to_owned())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{
        crd::{AnalysisPhase, AnalysisRunStatus, ApprovalRecord, MetricStatus, PrometheusProvider, Provider},
        machine::EventType,
    };

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-10-06T09:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
            + chrono::Duration::seconds(s)
    }

    fn ev(reason: &'static str, note: &str) -> Action {
        Action::Event {
            type_: EventType::Normal,
            reason,
            note: note.into(),
        }
    }

    fn steps() -> Vec<CanaryStep> {
        vec![
            CanaryStep {
                set_weight: Some(20),
                ..Default::default()
            },
            CanaryStep::default(),
        ]
    }

    fn canary(revision: i64, hash: &str) -> RolloutStatus {
        RolloutStatus {
            stable_revision: Some("a".into()),
            canary_revision: Some(hash.into()),
            revision: Some(revision),
            current_step_index: Some(0),
            ..Default::default()
        }
    }

    fn kinds(ts: &[Transition]) -> Vec<(EventKind, u64, &str)> {
        ts.iter()
            .map(|t| (t.kind, t.release, t.revision.as_str()))
            .collect()
    }

    fn none(_: &str, _: &str) -> Option<Metric> {
        None
    }

    #[test]
    fn a_request_names_its_requester_as_the_actor_of_what_it_did_and_of_nothing_else() {
        let mut prev = canary(3, "b");
        prev.weight = 20;
        let mut new = prev.clone();
        new.abort = true;
        new.aborted_revision = Some("b".into());
        new.abort_reason = Some("abort requested".into());
        new.rolled_back_at = Some(t(1).to_rfc3339());
        let mut ts = transitions(
            &steps(),
            &prev,
            &new,
            &[ev("RolloutAborted", "abort requested")],
            t(0),
            &none,
        );
        attribute_request(&mut ts, "bob");
        let actors: Vec<(EventKind, Option<&str>)> =
            ts.iter().map(|t| (t.kind, t.actor.as_deref())).collect();
        assert_eq!(
            actors,
            [(EventKind::Aborted, Some("bob")), (EventKind::RolledBack, None)],
            "the rollback is the controller's doing"
        );
        let ann = |v: &str| BTreeMap::from([(REQUESTED_BY_ANNOTATION.to_owned(), v.to_owned())]);
        assert_eq!(requester(&ann("bob"), true).as_deref(), Some("bob"));
        assert_eq!(requester(&ann("bob"), false).as_deref(), Some("bob (unverified)"));
        assert_eq!(requester(&ann(" "), true), None);
        assert_eq!(requester(&BTreeMap::new(), true), None);
    }

    #[test]
    fn a_new_template_supersedes_the_canary_in_flight_and_starts_a_release() {
        let prev = RolloutStatus {
            weight: 20,
            ..canary(2, "b")
        };
        let new = RolloutStatus {
            released_by: Some("alice".into()),
            ..canary(3, "c")
        };
        let actions = [
            ev("RolloutSuperseded", "canary b superseded by c"),
            ev("RolloutStarted", ""),
        ];
        let ts = transitions(&steps(), &prev, &new, &actions, t(0), &none);
        assert_eq!(
            kinds(&ts),
            [
                (EventKind::Superseded, 2, "b"),
                (EventKind::Started, 3, "c"),
                (EventKind::StepReached, 3, "c"),
            ]
        );
        assert_eq!(ts[1].actor.as_deref(), Some("alice"));
        assert_eq!((ts[2].step, ts[2].weight), (Some(0), Some(20)));
        // An aborted release had ended: a newer template does not supersede it.
        let prev = RolloutStatus { abort: true, ..prev };
        let ts = transitions(&steps(), &prev, &new, &actions, t(0), &none);
        assert_eq!(kinds(&ts)[0], (EventKind::Started, 3, "c"));
    }

    #[test]
    fn an_unchanged_status_records_nothing_and_a_changed_weight_once() {
        let st = RolloutStatus {
            weight: 20,
            pause_reason: Some(PauseReason::CanaryPauseStep),
            ..canary(2, "b")
        };
        assert_eq!(transitions(&steps(), &st, &st, &[], t(0), &none), []);
        let new = RolloutStatus {
            weight: 33,
            ..st.clone()
        };
        let ts = transitions(&steps(), &st, &new, &[], t(0), &none);
        assert_eq!(kinds(&ts), [(EventKind::WeightChanged, 2, "b")]);
        assert_eq!(ts[0].weight, Some(33));
    }

    #[test]
    fn an_approval_resumes_a_gate_and_names_the_approver() {
        let prev = RolloutStatus {
            pause_reason: Some(PauseReason::AwaitingApproval),
            current_step_index: Some(1),
            ..canary(2, "b")
        };
        let new = RolloutStatus {
            pause_reason: None,
            current_step_index: Some(2),
            approvals: vec![ApprovalRecord {
                step: 1,
                by: "bob".into(),
                at: "x".into(),
            }],
            ..prev.clone()
        };
        let ts = transitions(&steps(), &prev, &new, &[ev("Approved", "")], t(0), &none);
        assert_eq!(
            ts.iter().map(|t| t.kind).collect::<Vec<_>>(),
            [EventKind::GateApproved, EventKind::Resumed]
        );
        assert_eq!((ts[0].actor.as_deref(), ts[0].step), (Some("bob"), Some(1)));
    }

    #[test]
    fn new_measurements_are_recorded_with_their_evidence_then_the_abort_and_rollback() {
        let m = |phase, value: &str, s| Measurement {
            phase,
            value: value.into(),
            finished_at: analysis::format_time(t(s)),
        };
        let run = |ms: Vec<Measurement>| AnalysisRunStatus {
            name: "background".into(),
            phase: AnalysisPhase::Running,
            started_at: analysis::format_time(t(0)),
            metrics: vec![MetricStatus {
                name: "success-rate".into(),
                measurements: ms,
                ..Default::default()
            }],
        };
        let prev = RolloutStatus {
            analysis_runs: vec![run(vec![m(MeasurementPhase::Successful, "0.999", 1)])],
            ..canary(2, "b")
        };
        let new = RolloutStatus {
            abort: true,
            aborted_revision: Some("b".into()),
            abort_reason: Some("analysis success-rate failed: 0.95".into()),
            analysis_runs: vec![run(vec![
                m(MeasurementPhase::Successful, "0.999", 1),
                m(MeasurementPhase::Failed, "0.95", 2),
            ])],
            ..prev.clone()
        };
        let metric = |run: &str, name: &str| {
            (run == "background" && name == "success-rate").then(|| Metric {
                name: name.into(),
                provider: Provider {
                    prometheus: Some(PrometheusProvider {
                        query: "payment_success_rate".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ..Default::default()
            })
        };
        let ts = transitions(&steps(), &prev, &new, &[ev("RolloutAborted", "")], t(3), &metric);
        assert_eq!(
            ts.iter().map(|t| t.kind).collect::<Vec<_>>(),
            [EventKind::AnalysisMeasured, EventKind::Aborted]
        );
        assert_eq!(
            ts[0].analysis,
            Some(AnalysisEvidence {
                metric: "success-rate".into(),
                provider: "prometheus".into(),
                query: "payment_success_rate".into(),
                value: Some(0.95),
                verdict: Verdict::Failed,
            })
        );
        assert_eq!(ts[0].time, t(2));
        assert_eq!(ts[1].reason, new.abort_reason);
        // Later, the canary is gone.
        let gone = RolloutStatus {
            rolled_back_at: Some(analysis::format_time(t(9))),
            ..new.clone()
        };
        let ts = transitions(&steps(), &new, &gone, &[], t(10), &metric);
        assert_eq!(kinds(&ts), [(EventKind::RolledBack, 2, "b")]);
        assert_eq!(ts[0].time, t(9));
        assert_eq!(transitions(&steps(), &gone, &gone, &[], t(11), &metric), []);
    }

    #[test]
    fn a_promotion_ends_the_release_it_read() {
        let prev = RolloutStatus {
            weight: 50,
            current_step_index: Some(2),
            ..canary(4, "d")
        };
        let new = RolloutStatus {
            stable_revision: Some("d".into()),
            canary_revision: None,
            current_step_index: None,
            weight: 0,
            revision: Some(4),
            ..Default::default()
        };
        let ts = transitions(&steps(), &prev, &new, &[ev("RolloutCompleted", "")], t(0), &none);
        assert_eq!(kinds(&ts), [(EventKind::Promoted, 4, "d")]);
        assert_eq!(ts[0].weight, Some(100));
    }

    #[test]
    fn the_release_context_reads_the_template_labels_and_pod_digests() {
        let labels = std::collections::BTreeMap::from([
            ("app.kubernetes.io/name".to_owned(), "accounting".to_owned()),
            (CHART_LABEL.to_owned(), "accounting-1.8.0-rc.1".to_owned()),
        ]);
        let template = serde_json::json!({
            "metadata": {"annotations": {COMMIT_ANNOTATION: "3f1c2e9", COMMIT_TIME_ANNOTATION: "2026-10-06T08:00:00+02:00"}},
            "spec": {"containers": [{"name": "app", "image": "r/acc:1"}, {"name": "side", "image": "r/side:2"}]},
        });
        let ids = [
            (
                "app".to_owned(),
                "r/acc:1".to_owned(),
                "r/acc@sha256:00ff".to_owned(),
            ),
            (
                "side".to_owned(),
                "r/side:1".to_owned(),
                "r/side@sha256:11".to_owned(),
            ),
        ];
        let ctx = release_context("acc", 7, "h", &labels, "acc-deploy", Some(&template), &ids);
        assert_eq!(ctx.service, "accounting");
        assert_eq!(ctx.chart_version.as_deref(), Some("1.8.0-rc.1"));
        assert_eq!(ctx.commit.as_deref(), Some("3f1c2e9"));
        assert_eq!(ctx.commit_time, Some(t(0) - chrono::Duration::hours(3)));
        assert_eq!(
            ctx.images,
            [
                ImageRef::new("app", "r/acc:1").with_digest("sha256:00ff"),
                ImageRef::new("side", "r/side:2"),
            ]
        );
        assert_eq!(
            digest("docker-pullable://r@sha256:ab").as_deref(),
            Some("sha256:ab")
        );
        assert_eq!(digest("r/acc:1"), None);
        assert_eq!(chart_version("nochart"), None);
    }
}
