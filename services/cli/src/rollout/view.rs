//! What a Rollout's spec and status mean for a person, without I/O: step labels, the status table,
//! the detailed view, where a watched release ended, and whether a request makes sense now.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use payplane_rollout_controller::crd::{
    AnalysisPhase, AnalysisRunStatus, ApprovalStep, CanaryStep, MeasurementPhase, PauseReason, Phase,
    Rollout, RolloutStatus,
};

/// The Kubernetes label that names a service (the chart's name).
pub const SERVICE_NAME_LABEL: &str = "app.kubernetes.io/name";

/// The service a Rollout releases: its `app.kubernetes.io/name` label, else its name.
pub fn service_of(rollout: &Rollout) -> String {
    rollout
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SERVICE_NAME_LABEL))
        .cloned()
        .unwrap_or_else(|| rollout.metadata.name.clone().unwrap_or_default())
}

/// `setWeight 33%`, `pause 60s`, `pause until promoted`, `analysis grpc-health`, `approval (four eyes)`.
pub fn step_label(step: &CanaryStep) -> String {
    if let Some(w) = step.set_weight {
        return format!("setWeight {w}%");
    }
    if let Some(p) = &step.pause {
        return match &p.duration {
            Some(d) => format!("pause {d}"),
            None => "pause until promoted".to_owned(),
        };
    }
    if let Some(a) = &step.analysis {
        let mut names: Vec<&str> = a.templates.iter().map(|t| t.template_name.as_str()).collect();
        if a.inline.is_some() {
            names.push("inline");
        }
        return format!("analysis {}", names.join(", "));
    }
    if let Some(a) = &step.approval {
        let mut who = Vec::new();
        if a.require_different_person {
            who.push("four eyes".to_owned());
        }
        if !a.approvers.is_empty() {
            who.push(format!("by {}", a.approvers.join(", ")));
        }
        return if who.is_empty() {
            "approval".to_owned()
        } else {
            format!("approval ({})", who.join("; "))
        };
    }
    "(empty step)".to_owned()
}

/// Where a release ended, as `payplane watch` reports it (and exits with [`Outcome::exit_code`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The stable runs the released revision and no canary is left.
    Promoted,
    /// Aborted and every request back on the stable.
    RolledBack { reason: String },
    /// Waiting for a person: an approval, a promote after an inconclusive analysis or an
    /// indefinite pause, a resume, or the end of a freeze window.
    Paused { reason: String },
    /// The Rollout's spec is invalid: nothing is released until it is fixed.
    Invalid { message: String },
}

impl Outcome {
    pub const PROMOTED: u8 = 0;
    pub const ROLLED_BACK: u8 = 1;
    pub const PAUSED: u8 = 3;
    pub const INVALID: u8 = 4;

    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Promoted => Self::PROMOTED,
            Outcome::RolledBack { .. } => Self::ROLLED_BACK,
            Outcome::Paused { .. } => Self::PAUSED,
            Outcome::Invalid { .. } => Self::INVALID,
        }
    }
}

/// Where the release of `revision` (a pod-template hash) stands: `None` while it is still moving.
/// `stop_at_freeze`: also stop at a freeze window (it ends by itself, maybe hours later).
pub fn outcome(
    steps: &[CanaryStep],
    status: &RolloutStatus,
    revision: &str,
    stop_at_freeze: bool,
) -> Option<Outcome> {
    let ours = status.canary_revision.as_deref() == Some(revision);
    match status.phase {
        Phase::InvalidSpec => Some(Outcome::Invalid {
            message: status.message.clone().unwrap_or_default(),
        }),
        Phase::Healthy if status.stable_revision.as_deref() == Some(revision) => Some(Outcome::Promoted),
        Phase::Degraded if (ours || status.aborted_revision.as_deref() == Some(revision)) => {
            // Only once the canary serves nothing: "rolled back" is a promise to the caller.
            status.rolled_back_at.as_ref().map(|_| Outcome::RolledBack {
                reason: status
                    .abort_reason
                    .clone()
                    .or_else(|| status.message.clone())
                    .unwrap_or_else(|| "aborted".to_owned()),
            })
        }
        Phase::Paused if ours => {
            let waits_for_a_person = match status.pause_reason {
                Some(PauseReason::CanaryPauseStep) => status
                    .current_step_index
                    .and_then(|i| steps.get(i as usize))
                    .and_then(|s| s.pause.as_ref())
                    .is_some_and(|p| p.duration.is_none()),
                Some(PauseReason::FreezeWindow) => stop_at_freeze,
                Some(_) => true,
                None => false,
            };
            waits_for_a_person.then(|| Outcome::Paused {
                reason: pause_text(status),
            })
        }
        _ => None,
    }
}

fn pause_text(status: &RolloutStatus) -> String {
    let why = match status.pause_reason {
        Some(PauseReason::AwaitingApproval) => "waiting for an approval (`payplane approve`)",
        Some(PauseReason::InconclusiveAnalysis) => {
            "an analysis was inconclusive: `payplane promote` to go on, `payplane abort` to roll back"
        }
        Some(PauseReason::UserPaused) => "paused by a person (`payplane resume`)",
        Some(PauseReason::FreezeWindow) => "held by a freeze window",
        Some(PauseReason::CanaryPauseStep) => "a pause step without a duration (`payplane promote`)",
        None => "paused",
    };
    match &status.message {
        Some(m) if !m.is_empty() => format!("{why}: {m}"),
        _ => why.to_owned(),
    }
}

/// One line per Rollout in `payplane status`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Row {
    pub service: String,
    pub phase: String,
    pub stable: String,
    pub canary: String,
    pub step: String,
    pub weight: String,
    pub analysis: String,
    pub message: String,
}

/// The images of the stable and canary Deployments, as `payplane status` shows them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Images {
    pub stable: Option<String>,
    pub canary: Option<String>,
}

pub fn row(rollout: &Rollout, images: &Images) -> Row {
    let st = rollout.status.clone().unwrap_or_default();
    let steps = rollout.spec.strategy.canary.steps.len();
    let in_flight = st.canary_revision.is_some();
    let step = match st.current_step_index {
        Some(i) if in_flight => format!("{}/{steps}", (i as usize + 1).min(steps)),
        _ => "-".to_owned(),
    };
    let weight = if in_flight {
        if st.weight == st.desired_weight {
            format!("{}%", st.weight)
        } else {
            format!("{}%→{}%", st.weight, st.desired_weight)
        }
    } else {
        "-".to_owned()
    };
    Row {
        service: service_of(rollout),
        phase: phase_text(&st),
        stable: version_text(images.stable.as_deref(), st.stable_revision.as_deref()),
        canary: if in_flight {
            version_text(images.canary.as_deref(), st.canary_revision.as_deref())
        } else {
            "-".to_owned()
        },
        step,
        weight,
        analysis: analysis_summary(&st.analysis_runs),
        message: st.message.clone().unwrap_or_default(),
    }
}

fn phase_text(st: &RolloutStatus) -> String {
    match (st.phase, st.pause_reason) {
        (Phase::Paused, Some(r)) => format!("Paused ({})", pause_short(r)),
        (p, _) => format!("{p:?}"),
    }
}

fn pause_short(r: PauseReason) -> &'static str {
    match r {
        PauseReason::CanaryPauseStep => "step",
        PauseReason::InconclusiveAnalysis => "inconclusive",
        PauseReason::UserPaused => "user",
        PauseReason::FreezeWindow => "freeze",
        PauseReason::AwaitingApproval => "approval",
    }
}

/// `registry/payplane/accounting:1.4.0` → `accounting:1.4.0 (3f2a9c41d0)`.
fn version_text(image: Option<&str>, revision: Option<&str>) -> String {
    let short = image.map(|i| i.rsplit('/').next().unwrap_or(i).to_owned());
    match (short, revision) {
        (Some(i), Some(r)) => format!("{i} ({r})"),
        (Some(i), None) => i,
        (None, Some(r)) => r.to_owned(),
        (None, None) => "-".to_owned(),
    }
}

/// `step-2: success-rate ✓ latency … ` per run, newest verdict of each metric.
pub fn analysis_summary(runs: &[AnalysisRunStatus]) -> String {
    if runs.is_empty() {
        return "-".to_owned();
    }
    runs.iter()
        .map(|run| {
            let metrics: Vec<String> = run
                .metrics
                .iter()
                .map(|m| format!("{} {}", m.name, mark(m.phase)))
                .collect();
            format!("{}: {}", run.name, metrics.join(" "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn mark(phase: AnalysisPhase) -> &'static str {
    match phase {
        AnalysisPhase::Running => "…",
        AnalysisPhase::Successful => "✓",
        AnalysisPhase::Failed => "✗",
        AnalysisPhase::Error => "error",
        AnalysisPhase::Inconclusive => "?",
    }
}

/// Lays the rows out in aligned columns under a header.
pub fn table(rows: &[Row]) -> String {
    let header = [
        "SERVICE", "PHASE", "STABLE", "CANARY", "STEP", "WEIGHT", "ANALYSIS",
    ];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.service.clone(),
                r.phase.clone(),
                r.stable.clone(),
                r.canary.clone(),
                r.step.clone(),
                r.weight.clone(),
                r.analysis.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cols: Vec<&str>| {
        let padded: Vec<String> = cols
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        let _ = writeln!(out, "{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in &cells {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// `payplane status SERVICE`: the table's facts plus the steps, the analyses' latest
/// measurements, who released and approved, freezes and the controller's message.
pub fn detail(rollout: &Rollout, images: &Images, now: DateTime<Utc>) -> String {
    let st = rollout.status.clone().unwrap_or_default();
    let r = row(rollout, images);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Service:   {}  (Rollout {})",
        r.service,
        rollout.metadata.name.as_deref().unwrap_or("")
    );
    let _ = writeln!(out, "Phase:     {}", r.phase);
    if let Some(m) = st.message.as_deref().filter(|m| !m.is_empty()) {
        let _ = writeln!(out, "Message:   {m}");
    }
    let _ = writeln!(out, "Stable:    {}", r.stable);
    if st.canary_revision.is_some() {
        let _ = writeln!(out, "Canary:    {}  weight {}", r.canary, r.weight);
        let _ = writeln!(
            out,
            "Replicas:  stable {}, canary {}",
            st.stable_replicas, st.canary_replicas
        );
    }
    if let Some(rev) = st.revision {
        let _ = writeln!(out, "Release:   {rev}");
    }
    if let Some(by) = &st.released_by {
        let _ = writeln!(out, "Released by: {by}");
    }
    for a in &st.approvals {
        let _ = writeln!(out, "Approved:  step {} by {} at {}", a.step + 1, a.by, a.at);
    }
    if let Some(f) = &st.freeze {
        let until = f.until.as_deref().unwrap_or("(unknown: see the FreezePolicy)");
        let _ = writeln!(out, "Frozen:    {} ({}) until {until}", f.window, f.source);
    } else if let Some(n) = &st.next_freeze {
        let _ = writeln!(out, "Next freeze: {} ({}) from {}", n.window, n.source, n.start);
    }
    if st.abort {
        let _ = writeln!(
            out,
            "Aborted:   {}{}",
            st.abort_reason.as_deref().unwrap_or("yes"),
            st.rolled_back_at
                .as_deref()
                .map(|t| format!(" (all traffic back on stable at {t})"))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(out, "Steps:");
    let current = st.canary_revision.as_ref().and(st.current_step_index);
    for (i, step) in rollout.spec.strategy.canary.steps.iter().enumerate() {
        let marker = match current {
            Some(c) if (i as u32) < c => "✓",
            Some(c) if i as u32 == c => "▶",
            _ => " ",
        };
        let since = match (current, st.step_started_at.as_deref()) {
            (Some(c), Some(t)) if i as u32 == c => DateTime::parse_from_rfc3339(t)
                .map(|t| format!("  (for {})", short_duration(now - t.with_timezone(&Utc))))
                .unwrap_or_default(),
            _ => String::new(),
        };
        let _ = writeln!(out, "  {marker} {}. {}{since}", i + 1, step_label(step));
    }
    for run in &st.analysis_runs {
        let _ = writeln!(
            out,
            "Analysis {} ({:?}, since {}):",
            run.name, run.phase, run.started_at
        );
        for m in &run.metrics {
            let _ = writeln!(
                out,
                "  {} {:<22} {} ok, {} failed, {} inconclusive, {} errors{}",
                mark(m.phase),
                m.name,
                m.successful,
                m.failed,
                m.inconclusive,
                m.error,
                if m.guard_tripped { "  GUARD TRIPPED" } else { "" }
            );
            if let Some(last) = m
                .measurements
                .iter()
                .rev()
                .find(|x| x.phase != MeasurementPhase::Pending)
            {
                let _ = writeln!(
                    out,
                    "      last: {:?} {} ({})",
                    last.phase, last.value, last.finished_at
                );
            }
        }
    }
    out
}

fn short_duration(d: chrono::TimeDelta) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// A one-shot request of the CLI, checked against the Rollout's state before it is sent, so that
/// a person learns at once why it would not apply (the controller checks again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Promote,
    PromoteFull,
    Abort,
    Retry,
    Resume,
}

impl Verb {
    /// The value of `payplane.io/request`.
    pub fn annotation(self) -> &'static str {
        match self {
            Verb::Promote => "promote",
            Verb::PromoteFull => "promote-full",
            Verb::Abort => "abort",
            Verb::Retry => "retry",
            Verb::Resume => "resume",
        }
    }
}

pub fn check_request(verb: Verb, service: &str, st: &RolloutStatus) -> Result<(), String> {
    let in_flight = st.canary_revision.is_some() && matches!(st.phase, Phase::Progressing | Phase::Paused);
    let state = format!(
        "{service} is {}{}",
        phase_text(st),
        st.stable_revision
            .as_deref()
            .map(|r| format!(", stable revision {r}"))
            .unwrap_or_default()
    );
    match verb {
        Verb::Promote | Verb::PromoteFull | Verb::Abort if !in_flight => Err(format!(
            "no release of {service} is in progress to {} ({state}); start one with `payplane release {service} --image TAG`",
            verb.annotation()
        )),
        Verb::Promote | Verb::PromoteFull if st.freeze.is_some() => Err(format!(
            "{service} is held by the freeze window {}: promotion waits for its end; an emergency release needs \
             an override (`kubectl annotate rollout … payplane.io/freeze-override=REASON payplane.io/freeze-override-by=$USER`)",
            st.freeze.as_ref().map(|f| f.window.as_str()).unwrap_or_default()
        )),
        Verb::Retry if st.phase != Phase::Degraded => {
            Err(format!("only an aborted release can be retried ({state})"))
        }
        Verb::Resume if st.phase != Phase::Paused => Err(format!("{service} is not paused ({state})")),
        _ => Ok(()),
    }
}

/// Whether `me` (with `groups`) may give the approval `step` asks for, on a release started by
/// `released_by`: the same rules as the controller's, said before anything is written.
pub fn check_approver(
    step: &ApprovalStep,
    released_by: Option<&str>,
    me: &str,
    groups: &[String],
) -> Result<(), String> {
    if step.require_different_person && released_by == Some(me) {
        return Err(format!(
            "four eyes: you ({me}) started this release, so another person must approve it"
        ));
    }
    if step.approvers.is_empty() {
        return Ok(());
    }
    let allowed = step.approvers.iter().any(|a| match a.strip_prefix("group:") {
        Some(g) => groups.iter().any(|mine| mine == g),
        None => a == me,
    });
    if allowed {
        Ok(())
    } else {
        Err(format!(
            "you ({me}, groups {}) are not among this step's approvers: {}",
            if groups.is_empty() {
                "none".to_owned()
            } else {
                groups.join(", ")
            },
            step.approvers.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use payplane_rollout_controller::crd::{
        AnalysisRef, FreezeHold, MetricStatus, PauseStep, RolloutSpec, TemplateRef,
    };

    use super::*;

    fn status(phase: Phase) -> RolloutStatus {
        RolloutStatus {
            phase,
            stable_revision: Some("aaaa".into()),
            ..Default::default()
        }
    }

    #[test]
    fn steps_read_as_what_they_do() {
        let weight = CanaryStep {
            set_weight: Some(33),
            ..Default::default()
        };
        assert_eq!(step_label(&weight), "setWeight 33%");
        let pause = |d: Option<&str>| CanaryStep {
            pause: Some(PauseStep {
                duration: d.map(str::to_owned),
            }),
            ..Default::default()
        };
        assert_eq!(step_label(&pause(Some("60s"))), "pause 60s");
        assert_eq!(step_label(&pause(None)), "pause until promoted");
        let analysis = CanaryStep {
            analysis: Some(AnalysisRef {
                templates: vec![TemplateRef {
                    template_name: "grpc".into(),
                }],
                inline: None,
            }),
            ..Default::default()
        };
        assert_eq!(step_label(&analysis), "analysis grpc");
        let approval = CanaryStep {
            approval: Some(ApprovalStep {
                require_different_person: true,
                approvers: vec!["group:release-managers".into()],
            }),
            ..Default::default()
        };
        assert_eq!(
            step_label(&approval),
            "approval (four eyes; by group:release-managers)"
        );
    }

    #[test]
    fn a_watched_release_ends_promoted_rolled_back_or_waiting_for_a_person() {
        let steps = [
            CanaryStep {
                set_weight: Some(50),
                ..Default::default()
            },
            CanaryStep {
                pause: Some(PauseStep {
                    duration: Some("60s".into()),
                }),
                ..Default::default()
            },
            CanaryStep {
                pause: Some(PauseStep { duration: None }),
                ..Default::default()
            },
        ];
        let outcome = |st: &RolloutStatus, rev: &str, freeze: bool| outcome(&steps, st, rev, freeze);
        // Still moving: the controller has not seen the new template yet, or steps are walked.
        assert_eq!(outcome(&status(Phase::Healthy), "bbbb", false), None);
        let mut st = status(Phase::Progressing);
        st.canary_revision = Some("bbbb".into());
        assert_eq!(outcome(&st, "bbbb", false), None);
        // A timed pause step is not a stop.
        st.phase = Phase::Paused;
        st.pause_reason = Some(PauseReason::CanaryPauseStep);
        st.current_step_index = Some(1);
        assert_eq!(outcome(&st, "bbbb", false), None);
        st.current_step_index = Some(2);
        assert!(matches!(
            outcome(&st, "bbbb", false),
            Some(Outcome::Paused { .. })
        ));
        st.pause_reason = Some(PauseReason::AwaitingApproval);
        let Some(Outcome::Paused { reason }) = outcome(&st, "bbbb", false) else {
            panic!("approval is a stop")
        };
        assert!(reason.contains("payplane approve"), "{reason}");
        st.pause_reason = Some(PauseReason::FreezeWindow);
        assert_eq!(outcome(&st, "bbbb", false), None, "a freeze ends by itself");
        assert!(outcome(&st, "bbbb", true).is_some());
        // Aborted: only once every request is back on the stable.
        st.phase = Phase::Degraded;
        st.abort = true;
        st.abort_reason = Some("analysis step-1 failed: success-rate".into());
        assert_eq!(outcome(&st, "bbbb", false), None);
        st.rolled_back_at = Some("2026-11-22T10:01:00Z".into());
        assert_eq!(
            outcome(&st, "bbbb", false),
            Some(Outcome::RolledBack {
                reason: "analysis step-1 failed: success-rate".into()
            })
        );
        assert_eq!(outcome(&st, "bbbb", false).unwrap().exit_code(), 1);
        // Promoted: the stable runs it.
        let mut done = status(Phase::Healthy);
        done.stable_revision = Some("bbbb".into());
        assert_eq!(outcome(&done, "bbbb", false), Some(Outcome::Promoted));
        assert_eq!(Outcome::Promoted.exit_code(), 0);
        // Another release's abort is not ours.
        st.canary_revision = Some("cccc".into());
        st.aborted_revision = Some("cccc".into());
        assert_eq!(outcome(&st, "bbbb", false), None);
    }

    #[test]
    fn requests_that_cannot_apply_say_why() {
        let healthy = status(Phase::Healthy);
        let e = check_request(Verb::Promote, "accounting", &healthy).unwrap_err();
        assert!(e.contains("no release of accounting is in progress"), "{e}");
        assert!(e.contains("payplane release accounting"), "{e}");
        assert!(check_request(Verb::Retry, "accounting", &healthy).is_err());
        assert!(check_request(Verb::Resume, "accounting", &healthy).is_err());
        let mut paused = status(Phase::Paused);
        paused.canary_revision = Some("bbbb".into());
        paused.pause_reason = Some(PauseReason::CanaryPauseStep);
        for v in [Verb::Promote, Verb::PromoteFull, Verb::Abort, Verb::Resume] {
            assert_eq!(check_request(v, "accounting", &paused), Ok(()), "{v:?}");
        }
        paused.freeze = Some(FreezeHold {
            window: "month-end".into(),
            ..Default::default()
        });
        let e = check_request(Verb::Promote, "accounting", &paused).unwrap_err();
        assert!(e.contains("month-end"), "{e}");
        assert_eq!(
            check_request(Verb::Abort, "accounting", &paused),
            Ok(()),
            "abort always acts"
        );
        assert_eq!(
            check_request(Verb::Retry, "accounting", &status(Phase::Degraded)),
            Ok(())
        );
    }

    #[test]
    fn approvals_follow_the_four_eyes_and_approver_rules() {
        let step = ApprovalStep {
            require_different_person: true,
            approvers: vec![],
        };
        let e = check_approver(&step, Some("alice"), "alice", &[]).unwrap_err();
        assert!(e.contains("four eyes") && e.contains("alice"), "{e}");
        assert_eq!(check_approver(&step, Some("alice"), "bob", &[]), Ok(()));
        let step = ApprovalStep {
            require_different_person: false,
            approvers: vec!["carol".into(), "group:release-managers".into()],
        };
        assert!(check_approver(&step, None, "bob", &["dev".into()]).is_err());
        assert_eq!(check_approver(&step, None, "carol", &[]), Ok(()));
        assert_eq!(
            check_approver(&step, None, "bob", &["release-managers".into()]),
            Ok(())
        );
    }

    #[test]
    fn the_table_shows_versions_step_weight_and_verdicts() {
        let mut rollout = Rollout::new(
            "payplane-accounting",
            RolloutSpec {
                deployment_name: "payplane-accounting".into(),
                ..Default::default()
            },
        );
        rollout.metadata.labels = Some([(SERVICE_NAME_LABEL.to_owned(), "accounting".to_owned())].into());
        rollout.spec.strategy.canary.steps = vec![
            CanaryStep {
                set_weight: Some(33),
                ..Default::default()
            },
            CanaryStep {
                pause: Some(PauseStep {
                    duration: Some("60s".into()),
                }),
                ..Default::default()
            },
        ];
        let mut st = status(Phase::Paused);
        st.canary_revision = Some("bbbb".into());
        st.current_step_index = Some(1);
        st.pause_reason = Some(PauseReason::CanaryPauseStep);
        st.weight = 33;
        st.desired_weight = 33;
        st.step_started_at = Some("2026-11-22T10:00:00Z".into());
        st.analysis_runs = vec![AnalysisRunStatus {
            name: "background".into(),
            phase: AnalysisPhase::Running,
            started_at: "2026-11-22T09:59:00Z".into(),
            metrics: vec![MetricStatus {
                name: "success-rate".into(),
                phase: AnalysisPhase::Successful,
                ..Default::default()
            }],
        }];
        rollout.status = Some(st);
        let images = Images {
            stable: Some("localhost/payplane/accounting:1.4.0".into()),
            canary: Some("localhost/payplane/accounting:1.5.0".into()),
        };
        let text = table(&[row(&rollout, &images)]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("SERVICE"), "{text}");
        for part in [
            "accounting",
            "Paused (step)",
            "accounting:1.4.0 (aaaa)",
            "accounting:1.5.0 (bbbb)",
            "2/2",
            "33%",
            "background: success-rate ✓",
        ] {
            assert!(lines[1].contains(part), "{part} in {text}");
        }
        let now = DateTime::parse_from_rfc3339("2026-11-22T10:00:42Z")
            .unwrap()
            .with_timezone(&Utc);
        let text = detail(&rollout, &images, now);
        assert!(text.contains("✓ 1. setWeight 33%"), "{text}");
        assert!(text.contains("▶ 2. pause 60s  (for 42s)"), "{text}");
    }
}
