//! The step machine, no I/O: the previous status plus what was observed on the cluster give the
//! next status and the actions to take. The reconciler executes the actions; this module decides.
//!
//! The referenced Deployment is kept `paused`, so a new pod template (a chart upgrade) never rolls
//! out by itself: its pods keep running the stable ReplicaSet. The new template runs in the canary
//! Deployment, sized so that canary/(canary+stable) is the step's weight (our clients balance per
//! request across ready pods). Promotion unpauses the stable Deployment (it rolls to the new
//! template, draining old pods on SIGTERM) and scales the canary to zero once the stable is
//! fully rolled; abort scales the canary to zero and the stable never changed.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::{
    analysis::{self, BACKGROUND_RUN},
    crd::{
        AnalysisPhase, AnalysisRunStatus, ApprovalRecord, ApprovalStep, CanaryStep, CanaryStrategy,
        Condition, FreezeHold, FreezeOverride, NextFreeze, PauseReason, Phase, RolloutStatus, Rounding,
    },
    validate::parse_duration,
};

/// A one-shot request from the `payplane.io/request` annotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Abort,
    Retry,
    /// Finish the current step now.
    Promote,
    /// Skip the remaining steps and analyses.
    PromoteFull,
    /// Leave an indefinite pause or an inconclusive analysis.
    Resume,
    /// Back to a previous revision (handled by the reconciler, which rewrites the template).
    Undo(Option<i64>),
}

impl std::str::FromStr for Request {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        Ok(match s {
            "abort" => Request::Abort,
            "retry" => Request::Retry,
            "promote" => Request::Promote,
            "promote-full" => Request::PromoteFull,
            "resume" => Request::Resume,
            "undo" => Request::Undo(None),
            _ => match s.strip_prefix("undo:").map(|r| r.trim().parse::<i64>()) {
                Some(Ok(revision)) if revision > 0 => Request::Undo(Some(revision)),
                _ => {
                    return Err(format!(
                        "unknown request `{s}`: use abort, retry, promote, promote-full, resume, undo or undo:<revision>"
                    ));
                }
            },
        })
    }
}

/// What the reconciler saw on the cluster this time.
#[derive(Debug, Clone)]
pub struct Observed {
    pub now: DateTime<Utc>,
    /// Hash of the referenced Deployment's pod template.
    pub template_hash: String,
    /// The referenced Deployment's `spec.replicas` (the HPA's or the chart's).
    pub stable_replicas: i32,
    pub stable_ready: i32,
    /// `spec.paused` of the referenced Deployment.
    pub stable_paused: bool,
    /// The referenced Deployment has rolled to its current template: observed generation,
    /// updated, ready and available replicas all caught up.
    pub stable_rolled_out: bool,
    /// Ready pods of the canary Deployment that run the canary revision.
    pub canary_ready: i32,
    /// `spec.replicas` of the canary Deployment (0 when absent).
    pub canary_replicas: i32,
    /// The canary Deployment exists and carries the current template (its revision annotation).
    pub canary_current: bool,
    /// No canary pod left: the canary Deployment is absent, or scaled to 0 with the scale
    /// observed and no pod counted in its status.
    pub canary_gone: bool,
    pub request: Option<Request>,
    pub spec_paused: bool,
    /// `payplane.io/released-by` on the Deployment: who last changed its template (enforced equal
    /// to the requester by the admission policy where the namespace is under it).
    pub released_by: Option<String>,
    /// The freeze in force now, from the FreezePolicies and `spec.freezeWindows` that apply.
    pub freeze: Freeze,
    /// The next freeze window's start, for the status.
    pub next_freeze: Option<NextFreeze>,
    /// An approval found on the Rollout (the reconciler removes it once seen).
    pub approval: Option<Approval>,
    /// An emergency override found on the Rollout (removed once seen).
    pub freeze_override: Option<OverrideRequest>,
    /// The namespace carries `payplane.io/governance: enforced`, so the admission policy made the
    /// identity annotations equal to the requester's identity.
    pub identity_enforced: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub enum Freeze {
    #[default]
    None,
    Active {
        window: String,
        source: String,
        until: DateTime<Utc>,
    },
    /// A FreezePolicy that applies is invalid: fail closed, nothing advances until it is fixed.
    Invalid(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    pub by: String,
    /// From `payplane.io/approver-groups`.
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverrideRequest {
    pub by: String,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Save the current template as a revision (ControllerRevision), if not saved yet.
    SaveRevision,
    /// `spec.paused = true` on the referenced Deployment.
    PauseStable,
    /// `spec.paused = false`: the stable rolls to the new template.
    UnpauseStable,
    /// Apply the canary Deployment with the canary revision's template and this many replicas.
    ScaleCanary(i32),
    /// Forget scrape baselines etc. of the previous canary.
    ResetAnalysis,
    Event {
        type_: EventType,
        reason: &'static str,
        note: String,
    },
    /// A rollout ended; for the `rollouts_total{outcome}` metric.
    Outcome(&'static str),
    /// The service's version changed or a release was rolled back: one CDEvent about this
    /// revision (alongside the Kubernetes event of the same transition).
    Release {
        outcome: crate::cdevents::Outcome,
        revision: String,
    },
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub status: RolloutStatus,
    pub actions: Vec<Action>,
    /// When to look again even if nothing changes.
    pub requeue: Option<Duration>,
    /// The request was acted upon (the reconciler removes the annotation either way once seen).
    pub request_handled: bool,
}

/// Canary replicas for `weight` next to `stable` replicas, so that the canary's share of ready
/// pods is the weight: `stable · w / (100 − w)`, rounded as asked, at least 1 for a positive
/// weight. 100 means a canary as large as the stable (half the requests): a full shift is what
/// promotion does.
pub fn canary_replicas(stable: i32, weight: i32, rounding: Rounding) -> i32 {
    if weight <= 0 || stable <= 0 {
        return if weight > 0 { 1 } else { 0 };
    }
    if weight >= 100 {
        return stable;
    }
    let exact = stable as f64 * weight as f64 / (100 - weight) as f64;
    let rounded = match rounding {
        // Guard against 2.0000000001 becoming 3.
        Rounding::Up => (exact - 1e-9).ceil(),
        Rounding::Down => exact.floor(),
        Rounding::Nearest => exact.round(),
    };
    (rounded as i32).max(1)
}

/// The weight in force at step `index`: the last setWeight at or before it.
pub fn weight_at(steps: &[CanaryStep], index: usize) -> i32 {
    steps
        .iter()
        .take(index + 1)
        .rev()
        .find_map(|s| s.set_weight)
        .unwrap_or(0)
}

fn share(canary: i32, stable: i32) -> i32 {
    if canary + stable <= 0 {
        0
    } else {
        (canary as i64 * 100 / (canary + stable) as i64) as i32
    }
}

pub const DEFAULT_PROGRESS_DEADLINE: Duration = Duration::from_secs(600);
const WAIT_FOR_PODS: Duration = Duration::from_secs(5);
const WAIT_FOR_ANALYSIS: Duration = Duration::from_secs(1);
const WAIT_FOR_PIN: Duration = Duration::from_millis(500);

const FREEZE_RECHECK_MAX: Duration = Duration::from_secs(300);
const INVALID_FREEZE_RECHECK: Duration = Duration::from_secs(60);

struct Planner<'a> {
    obs: &'a Observed,
    st: RolloutStatus,
    actions: Vec<Action>,
    request_handled: bool,
    /// The freeze held the release in this plan (status.freeze is set).
    held: bool,
    approval_used: bool,
    override_used: bool,
    prev_freeze: Option<FreezeHold>,
    /// The approval step that was pending, visibly, before this plan (same revision): only it
    /// can be approved, so that an approval never lands on a gate (or a release) its author did
    /// not see.
    pending_gate: Option<u32>,
}

impl Planner<'_> {
    fn event(&mut self, type_: EventType, reason: &'static str, note: String) {
        self.actions.push(Action::Event { type_, reason, note });
    }

    fn set_condition(&mut self, type_: &str, status: bool, reason: &str, message: String) {
        set_condition(
            &mut self.st.conditions,
            type_,
            status,
            reason,
            message,
            self.obs.now,
        );
    }

    fn done(mut self, requeue: Option<Duration>) -> Plan {
        if !self.held {
            self.st.freeze = None;
        }
        match (&self.prev_freeze, &self.st.freeze) {
            (prev, Some(now))
                if prev.as_ref().map(|p| (&p.window, &p.until)) != Some((&now.window, &now.until)) =>
            {
                let note = now.message.clone().unwrap_or_default();
                self.event(EventType::Normal, "Frozen", note);
            }
            (Some(prev), None) => {
                let note = format!("no longer held by freeze window {}", prev.window);
                self.event(EventType::Normal, "FreezeEnded", note);
            }
            _ => {}
        }
        if let Some(a) = &self.obs.approval
            && !self.approval_used
        {
            let note = format!(
                "approval by {} ignored: no approval step was pending (phase {:?})",
                a.by, self.st.phase
            );
            self.event(EventType::Warning, "ApprovalIgnored", note);
        }
        if let Some(o) = &self.obs.freeze_override
            && !self.override_used
        {
            let note = format!(
                "freeze override by {} ignored: no release in flight (phase {:?})",
                o.by, self.st.phase
            );
            self.event(EventType::Warning, "FreezeOverrideIgnored", note);
        }
        self.st.next_freeze = self.obs.next_freeze.clone();
        let mut st = self.st;
        st.message = match st.phase {
            Phase::Paused => st.pause_reason.map(|r| format!("paused: {r:?}")),
            Phase::Degraded => st.abort_reason.clone(),
            _ => None,
        };
        let pausing = st.phase == Phase::Paused;
        let reason = st
            .pause_reason
            .map(|r| format!("{r:?}"))
            .unwrap_or_else(|| "NotPaused".into());
        let mut conditions = std::mem::take(&mut st.conditions);
        set_condition(
            &mut conditions,
            "Paused",
            pausing,
            &reason,
            st.message.clone().unwrap_or_default(),
            self.obs.now,
        );
        set_condition(
            &mut conditions,
            "Healthy",
            st.phase == Phase::Healthy,
            &format!("{:?}", st.phase),
            format!("stable {}", st.stable_revision.as_deref().unwrap_or("-")),
            self.obs.now,
        );
        let (frozen_reason, frozen_message) = match &st.freeze {
            Some(f) if f.until.is_some() => ("FreezeWindow", f.message.clone().unwrap_or_default()),
            Some(f) => ("InvalidFreezePolicy", f.message.clone().unwrap_or_default()),
            None => ("NotFrozen", String::new()),
        };
        set_condition(
            &mut conditions,
            "Frozen",
            st.freeze.is_some(),
            frozen_reason,
            frozen_message,
            self.obs.now,
        );
        // A valid spec got this far.
        set_condition(
            &mut conditions,
            "InvalidSpec",
            false,
            "Valid",
            String::new(),
            self.obs.now,
        );
        st.conditions = conditions;
        Plan {
            status: st,
            actions: self.actions,
            requeue,
            request_handled: self.request_handled,
        }
    }

    fn start(&mut self, hash: &str, reason: &'static str) {
        let now = analysis::format_time(self.obs.now);
        self.st.canary_revision = Some(hash.to_owned());
        self.st.current_step_index = Some(0);
        self.st.step_started_at = Some(now);
        self.st.analysis_runs.clear();
        self.st.abort = false;
        self.st.abort_reason = None;
        self.st.aborted_revision = None;
        self.st.rolled_back_at = None;
        self.st.pause_reason = None;
        self.st.phase = Phase::Progressing;
        self.st.released_by = self.obs.released_by.clone();
        self.st.approvals.clear();
        self.st.freeze_override = None;
        self.st.conditions.retain(|c| c.type_ != "Approval");
        self.actions.push(Action::SaveRevision);
        self.actions.push(Action::ResetAnalysis);
        let stable = self.st.stable_revision.clone().unwrap_or_default();
        self.event(
            EventType::Normal,
            reason,
            format!("releasing revision {hash} as a canary of stable {stable}"),
        );
        self.set_condition("Progressing", true, reason, format!("canary {hash}"));
    }

    /// The freeze that holds this release now, if any (an override for this revision lifts it).
    fn freeze(&self) -> Option<FreezeHold> {
        let overridden = self
            .st
            .freeze_override
            .as_ref()
            .is_some_and(|o| o.revision == self.obs.template_hash);
        if overridden {
            return None;
        }
        match &self.obs.freeze {
            Freeze::None => None,
            Freeze::Active {
                window,
                source,
                until,
            } => Some(FreezeHold {
                window: window.clone(),
                source: source.clone(),
                until: Some(analysis::format_time(*until)),
                message: Some(format!(
                    "held by freeze window {window} ({source}) until {}",
                    analysis::format_time(*until)
                )),
            }),
            Freeze::Invalid(message) => Some(FreezeHold {
                window: "invalid FreezePolicy".into(),
                source: "FreezePolicy".into(),
                until: None,
                message: Some(format!(
                    "held: a FreezePolicy that applies is invalid, so its windows cannot be known: {message}"
                )),
            }),
        }
    }

    /// Nothing advances: the release waits for the freeze's end.
    fn hold(mut self, hold: FreezeHold, what: &str) -> Plan {
        let requeue = match &self.obs.freeze {
            Freeze::Active { until, .. } => {
                (*until - self.obs.now)
                    .to_std()
                    .unwrap_or_default()
                    .min(FREEZE_RECHECK_MAX)
                    + Duration::from_millis(50)
            }
            _ => INVALID_FREEZE_RECHECK,
        };
        let mut hold = hold;
        if let Some(m) = &hold.message {
            hold.message = Some(format!("{m}; {what} waits"));
        }
        self.st.freeze = Some(hold);
        self.held = true;
        self.st.phase = Phase::Paused;
        self.st.pause_reason = Some(PauseReason::FreezeWindow);
        self.done(Some(requeue))
    }

    /// Refuses a request that would advance the release during a freeze.
    fn refuse_frozen(&mut self, verb: &str, hold: &FreezeHold) {
        self.request_handled = true;
        let why = hold.message.clone().unwrap_or_default();
        self.event(
            EventType::Warning,
            "RequestRefused",
            format!("`{verb}` refused: {why}"),
        );
    }

    fn abort(mut self, why: String) -> Plan {
        let hash = self.obs.template_hash.clone();
        self.actions.push(Action::ScaleCanary(0));
        self.event(
            EventType::Warning,
            "RolloutAborted",
            format!("revision {hash} aborted: {why}; all traffic on stable"),
        );
        self.actions.push(Action::Outcome("Aborted"));
        self.actions.push(Action::Release {
            outcome: crate::cdevents::Outcome::RolledBack,
            revision: hash.clone(),
        });
        self.st.abort = true;
        self.st.abort_reason = Some(why.clone());
        self.st.aborted_revision = Some(hash);
        self.st.phase = Phase::Degraded;
        self.st.pause_reason = None;
        self.st.desired_weight = 0;
        self.st.weight = share(0, self.obs.stable_ready);
        self.st.canary_replicas = 0;
        self.set_condition("Progressing", false, "RolloutAborted", why);
        self.done(None)
    }
}

pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    now: DateTime<Utc>,
) {
    let status = if status { "True" } else { "False" }.to_owned();
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = analysis::format_time(now);
            }
            c.status = status;
            c.reason = reason.to_owned();
            c.message = message;
        }
        None => conditions.push(Condition {
            type_: type_.to_owned(),
            status,
            reason: reason.to_owned(),
            message,
            last_transition_time: analysis::format_time(now),
        }),
    }
}

/// Records an invalid spec on the status: phase InvalidSpec and a condition naming the fields.
pub fn invalid(prev: &RolloutStatus, message: String, now: DateTime<Utc>) -> RolloutStatus {
    let mut st = prev.clone();
    st.phase = Phase::InvalidSpec;
    st.message = Some(message.clone());
    set_condition(
        &mut st.conditions,
        "InvalidSpec",
        true,
        "InvalidSpec",
        message,
        now,
    );
    st
}

/// Decides the next status and actions.
pub fn plan(strategy: &CanaryStrategy, prev: &RolloutStatus, obs: &Observed, deadline: Duration) -> Plan {
    let mut p = Planner {
        obs,
        st: prev.clone(),
        actions: Vec::new(),
        request_handled: false,
        held: false,
        approval_used: false,
        override_used: false,
        prev_freeze: prev.freeze.clone(),
        pending_gate: prev.current_step_index.filter(|_| {
            prev.pause_reason == Some(PauseReason::AwaitingApproval)
                && prev.canary_revision.as_deref() == Some(obs.template_hash.as_str())
                && !prev.abort
        }),
    };
    let hash = obs.template_hash.clone();
    let now = obs.now;

    // First sight: adopt the running template as the stable and pin the Deployment.
    let Some(stable) = p.st.stable_revision.clone() else {
        if !obs.stable_rolled_out {
            // Taking over mid-rollout would pin a half-rolled Deployment; wait for it.
            p.st.phase = Phase::Progressing;
            return p.done(Some(WAIT_FOR_PODS));
        }
        if !obs.stable_paused {
            // Pin first, adopt once the pin is observed: a template change in between would
            // otherwise start a plain rolling update under a "Healthy" status.
            p.actions.push(Action::PauseStable);
            p.st.phase = Phase::Progressing;
            return p.done(Some(WAIT_FOR_PIN));
        }
        p.st.stable_revision = Some(hash.clone());
        p.st.phase = Phase::Healthy;
        p.actions.push(Action::SaveRevision);
        p.event(
            EventType::Normal,
            "Initialized",
            format!("stable revision {hash}; the Deployment is now released by this Rollout"),
        );
        p.actions.push(Action::Release {
            outcome: crate::cdevents::Outcome::Deployed,
            revision: hash.clone(),
        });
        return p.done(None);
    };
    // Keep the Deployment pinned, except while it rolls to a promoted template.
    if !obs.stable_paused && p.st.phase != Phase::Promoting {
        p.actions.push(Action::PauseStable);
    }
    p.st.stable_replicas = obs.stable_replicas;

    // Back on the stable template (undo, a reverted chart): no canary.
    if hash == stable {
        if let Some(canary) = p.st.canary_revision.take() {
            p.event(
                EventType::Normal,
                "RolloutSuperseded",
                format!("canary {canary} replaced by the stable template {stable}"),
            );
            p.actions.push(Action::Outcome("Superseded"));
            // `undo` (or a reverted chart) during a canary: the release is rolled back (an
            // aborted one already was, and announced).
            if !p.st.abort {
                p.actions.push(Action::Release {
                    outcome: crate::cdevents::Outcome::RolledBack,
                    revision: canary,
                });
            }
        }
        if obs.canary_replicas > 0 {
            p.actions.push(Action::ScaleCanary(0));
        }
        if p.st.phase != Phase::Healthy {
            p.set_condition("Progressing", false, "Healthy", format!("stable {stable}"));
        }
        p.st.phase = Phase::Healthy;
        p.st.current_step_index = None;
        p.st.step_started_at = None;
        p.st.analysis_runs.clear();
        p.st.abort = false;
        p.st.abort_reason = None;
        p.st.rolled_back_at = None;
        p.st.pause_reason = None;
        p.st.desired_weight = 0;
        p.st.canary_replicas = 0;
        p.st.weight = 0;
        p.st.released_by = None;
        p.st.approvals.clear();
        p.st.freeze_override = None;
        p.request_handled = matches!(obs.request, Some(Request::Abort));
        return p.done(None);
    }

    // Promotion in progress: the stable Deployment rolls to the new template.
    if p.st.phase == Phase::Promoting && p.st.canary_revision.as_deref() == Some(hash.as_str()) {
        if !obs.stable_rolled_out {
            if obs.stable_paused {
                p.actions.push(Action::UnpauseStable);
            }
            return p.done(Some(WAIT_FOR_PODS));
        }
        if !obs.stable_paused {
            // Re-pin before declaring Healthy (same reason as at first sight).
            p.actions.push(Action::PauseStable);
            return p.done(Some(WAIT_FOR_PIN));
        }
        // The stable serves the new template with all its pods: the canary can go, in-flight
        // calls drain on SIGTERM.
        p.actions.push(Action::ScaleCanary(0));
        p.event(
            EventType::Normal,
            "RolloutCompleted",
            format!("revision {hash} promoted to stable"),
        );
        p.actions.push(Action::Outcome("Promoted"));
        p.actions.push(Action::Release {
            outcome: crate::cdevents::Outcome::Upgraded,
            revision: hash.clone(),
        });
        p.st.stable_revision = Some(hash.clone());
        p.st.canary_revision = None;
        p.st.approvals.clear();
        p.st.freeze_override = None;
        p.st.current_step_index = None;
        p.st.step_started_at = None;
        p.st.analysis_runs.clear();
        p.st.phase = Phase::Healthy;
        p.st.desired_weight = 0;
        p.st.weight = 0;
        p.st.canary_replicas = 0;
        p.set_condition("Progressing", false, "RolloutCompleted", format!("stable {hash}"));
        return p.done(None);
    }

    // An aborted revision stays aborted until `retry` or a newer template.
    if p.st.abort && p.st.aborted_revision.as_deref() == Some(hash.as_str()) {
        if obs.request == Some(Request::Retry) {
            p.request_handled = true;
            p.start(&hash, "RolloutRetried");
        } else {
            if obs.canary_replicas > 0 {
                p.actions.push(Action::ScaleCanary(0));
            } else if obs.canary_gone && p.st.rolled_back_at.is_none() {
                // The canary is scaled to 0 and none of its pods serves: all traffic is back on
                // the stable (the audit trail's RolledBack).
                p.st.rolled_back_at = Some(analysis::format_time(now));
            }
            p.st.phase = Phase::Degraded;
            p.request_handled = obs.request == Some(Request::Abort);
            return p.done(None);
        }
    } else if p.st.canary_revision.as_deref() != Some(hash.as_str()) {
        // A new revision; one in flight is superseded (its canary pods get the new template).
        if let Some(old) = p.st.canary_revision.clone() {
            p.event(
                EventType::Normal,
                "RolloutSuperseded",
                format!("canary {old} superseded by {hash}"),
            );
            p.actions.push(Action::Outcome("Superseded"));
        }
        p.start(&hash, "RolloutStarted");
    }

    let steps = &strategy.steps;
    let mut index = p.st.current_step_index.unwrap_or(0) as usize;
    let current_run = analysis::step_run_name(index as u32);

    // Safety first: an abort request or a failed analysis wins over any pause or gate.
    if obs.request == Some(Request::Abort) {
        p.request_handled = true;
        return p.abort("abort requested".into());
    }
    if let Some(run) = p.st.analysis_runs.iter().find(|r| {
        (r.name == BACKGROUND_RUN || r.name == current_run)
            && matches!(r.phase, AnalysisPhase::Failed | AnalysisPhase::Error)
    }) {
        let why = analysis::explain(run);
        return p.abort(why);
    }

    // An emergency override of the freeze windows for this revision, by a named person.
    if let Some(o) = &obs.freeze_override {
        p.override_used = true;
        if obs.identity_enforced {
            p.st.freeze_override = Some(FreezeOverride {
                by: o.by.clone(),
                reason: o.reason.clone(),
                revision: hash.clone(),
                at: analysis::format_time(now),
            });
            p.event(
                EventType::Warning,
                "FreezeOverridden",
                format!(
                    "freeze windows overridden for revision {hash} by {}: {}",
                    o.by, o.reason
                ),
            );
        } else {
            p.event(
                EventType::Warning,
                "FreezeOverrideRefused",
                format!("freeze override by {} refused: {}", o.by, NOT_ENFORCED),
            );
        }
    }
    let frozen = p.freeze();

    // In progress. Background analysis runs from the first step until promotion, while a canary
    // can serve: a release that a freeze holds before its canary took any traffic has nothing to
    // measure (every measurement would be "too few calls"), so its run starts, with its initial
    // delay, when the freeze ends.
    let canary_held = frozen.is_some() && p.st.weight == 0;
    if canary_held {
        p.st.analysis_runs.retain(|r| r.name != BACKGROUND_RUN);
    } else if strategy.analysis.is_some() && !p.st.analysis_runs.iter().any(|r| r.name == BACKGROUND_RUN) {
        p.st.analysis_runs.push(new_run(BACKGROUND_RUN.into(), now));
    }

    let mut promote_step = obs.request == Some(Request::Promote);
    let mut resume = obs.request == Some(Request::Resume);
    let gate_ahead = steps
        .iter()
        .enumerate()
        .skip(index)
        .find(|(i, s)| s.approval.is_some() && !p.st.approvals.iter().any(|a| a.step == *i as u32));
    if obs.request == Some(Request::PromoteFull)
        && let Some(hold) = &frozen
    {
        p.refuse_frozen("promote-full", hold);
    } else if obs.request == Some(Request::PromoteFull)
        && let Some((i, _)) = gate_ahead
    {
        p.request_handled = true;
        p.event(
            EventType::Warning,
            "RequestRefused",
            format!(
                "`promote-full` refused: approval step {i} is pending; it is completed only by an approval"
            ),
        );
    } else if obs.request == Some(Request::PromoteFull) {
        p.request_handled = true;
        p.event(
            EventType::Normal,
            "PromotedFull",
            format!("skipping steps {index}–{} on request", steps.len()),
        );
        index = steps.len();
        p.st.current_step_index = Some(index as u32);
    }
    // An inconclusive background analysis pauses; `resume` or `promote` restarts it.
    if let Some(i) =
        p.st.analysis_runs
            .iter()
            .position(|r| r.name == BACKGROUND_RUN && r.phase == AnalysisPhase::Inconclusive)
    {
        if resume || promote_step {
            p.request_handled = true;
            p.event(
                EventType::Normal,
                "AnalysisRestarted",
                "background analysis restarted after an inconclusive result".into(),
            );
            p.st.analysis_runs[i] = new_run(BACKGROUND_RUN.into(), now);
            resume = false;
            promote_step = false;
        } else {
            let why = analysis::explain(&p.st.analysis_runs[i]);
            return pause(p, PauseReason::InconclusiveAnalysis, why, None);
        }
    }

    loop {
        if index >= steps.len() {
            if let Some(hold) = &frozen {
                return p.hold(hold.clone(), "promotion");
            }
            p.actions.push(Action::UnpauseStable);
            p.st.phase = Phase::Promoting;
            p.st.pause_reason = None;
            p.event(
                EventType::Normal,
                "Promoting",
                format!("all steps done: the stable Deployment rolls to {hash}"),
            );
            p.set_condition(
                "Progressing",
                true,
                "Promoting",
                format!("stable rolling to {hash}"),
            );
            return p.done(Some(WAIT_FOR_PODS));
        }
        let step = &steps[index];
        let weight = weight_at(steps, index);
        let desired = canary_replicas(
            obs.stable_replicas,
            weight,
            strategy.replica_rounding.unwrap_or_default(),
        );
        p.st.desired_weight = weight;
        p.st.canary_replicas = desired;
        p.st.weight = share(obs.canary_ready.min(desired), obs.stable_ready);
        // Also when a newer template superseded the canary's: it must get the new template.
        if desired != obs.canary_replicas || !obs.canary_current {
            let more = desired > obs.canary_replicas || (!obs.canary_current && desired > 0);
            if more && let Some(hold) = &frozen {
                if !obs.canary_current && obs.canary_replicas > 0 {
                    // The pods of a superseded revision would serve on, unanalysed, through the
                    // freeze: removing them is a rollback, which a freeze allows.
                    p.actions.push(Action::ScaleCanary(0));
                }
                return p.hold(hold.clone(), &format!("step {index} (a larger or new canary)"));
            }
            p.actions.push(Action::ScaleCanary(desired));
        }
        let started =
            p.st.step_started_at
                .as_deref()
                .and_then(analysis::parse_time)
                .unwrap_or(now);

        if promote_step && step.approval.is_some() {
            promote_step = false;
            p.request_handled = true;
            p.event(
                EventType::Warning,
                "RequestRefused",
                format!(
                    "`promote` refused: step {index} is an approval step; it is completed only by an approval"
                ),
            );
        }
        let completed_by_request =
            promote_step || (resume && step.pause.as_ref().is_some_and(|x| x.duration.is_none()));
        if completed_by_request && let Some(hold) = &frozen {
            let verb = if promote_step { "promote" } else { "resume" };
            p.refuse_frozen(verb, hold);
            return p.hold(hold.clone(), &format!("step {index}"));
        }
        if !completed_by_request && obs.spec_paused {
            return pause(p, PauseReason::UserPaused, "spec.paused is true".into(), None);
        }
        let finished = if completed_by_request {
            p.request_handled = true;
            promote_step = false;
            resume = false;
            true
        } else if step.set_weight.is_some() {
            if obs.canary_ready >= desired && obs.canary_replicas == desired {
                true
            } else {
                let waited = (now - started).to_std().unwrap_or_default();
                if waited > deadline {
                    return p.abort(format!(
                        "progress deadline: {} of {desired} canary pods ready after {}s",
                        obs.canary_ready,
                        waited.as_secs()
                    ));
                }
                p.st.phase = Phase::Progressing;
                p.st.pause_reason = None;
                return p.done(Some(WAIT_FOR_PODS));
            }
        } else if let Some(pause_step) = &step.pause {
            match pause_step
                .duration
                .as_deref()
                .and_then(|d| parse_duration(d).ok())
            {
                Some(d) => {
                    let until = started + chrono::Duration::from_std(d).unwrap_or_default();
                    if now >= until {
                        true
                    } else {
                        let left = (until - now).to_std().unwrap_or_default();
                        return pause(
                            p,
                            PauseReason::CanaryPauseStep,
                            format!("pause step {index}"),
                            Some(left),
                        );
                    }
                }
                None => {
                    return pause(
                        p,
                        PauseReason::CanaryPauseStep,
                        format!("pause step {index} until promote"),
                        None,
                    );
                }
            }
        } else if let Some(gate) = &step.approval {
            if p.st.approvals.iter().any(|a| a.step == index as u32) {
                true
            } else if let Some(a) = obs
                .approval
                .as_ref()
                .filter(|_| p.pending_gate == Some(index as u32))
            {
                p.approval_used = true;
                match check_approval(gate, a, p.st.released_by.as_deref(), obs.identity_enforced) {
                    Ok(()) => {
                        p.st.approvals.push(ApprovalRecord {
                            step: index as u32,
                            by: a.by.clone(),
                            at: analysis::format_time(now),
                        });
                        let released = p.st.released_by.clone().unwrap_or_else(|| "unknown".into());
                        let note = format!(
                            "approval step {index} of revision {hash} approved by {} (released by {released})",
                            a.by
                        );
                        p.set_condition("Approval", true, "Approved", note.clone());
                        p.event(EventType::Normal, "Approved", note);
                        true
                    }
                    Err((reason, why)) => {
                        let note = format!("approval of step {index} by {} refused: {why}", a.by);
                        p.set_condition("Approval", false, reason, note.clone());
                        p.event(EventType::Warning, "ApprovalRefused", note);
                        return pause(
                            p,
                            PauseReason::AwaitingApproval,
                            format!("approval step {index}"),
                            None,
                        );
                    }
                }
            } else {
                let who = if gate.require_different_person {
                    format!(
                        " from someone other than {}",
                        p.st.released_by.as_deref().unwrap_or("the release's author")
                    )
                } else {
                    String::new()
                };
                return pause(
                    p,
                    PauseReason::AwaitingApproval,
                    format!("approval step {index} waits for payplane.io/approved-by{who}"),
                    None,
                );
            }
        } else {
            // An analysis step.
            let name = analysis::step_run_name(index as u32);
            match p.st.analysis_runs.iter().position(|r| r.name == name) {
                None => {
                    p.st.analysis_runs.push(new_run(name, now));
                    p.st.phase = Phase::Progressing;
                    return p.done(Some(WAIT_FOR_ANALYSIS));
                }
                Some(i) => match p.st.analysis_runs[i].phase {
                    AnalysisPhase::Successful => true,
                    AnalysisPhase::Inconclusive if resume => {
                        if let Some(hold) = &frozen {
                            // Leaving the step would advance: refused, not silently lost.
                            p.refuse_frozen("resume", hold);
                            return p.hold(hold.clone(), &format!("step {index}"));
                        }
                        p.request_handled = true;
                        resume = false;
                        true
                    }
                    AnalysisPhase::Inconclusive => {
                        let why = analysis::explain(&p.st.analysis_runs[i]);
                        return pause(p, PauseReason::InconclusiveAnalysis, why, None);
                    }
                    _ => {
                        p.st.phase = Phase::Progressing;
                        p.st.pause_reason = None;
                        return p.done(Some(WAIT_FOR_ANALYSIS));
                    }
                },
            }
        };
        debug_assert!(finished);
        if let Some(hold) = &frozen {
            return p.hold(hold.clone(), &format!("the end of step {index}"));
        }
        let kind = describe(step);
        p.event(
            EventType::Normal,
            "StepCompleted",
            format!("step {index} ({kind}) of revision {hash} completed"),
        );
        index += 1;
        p.st.current_step_index = Some(index as u32);
        p.st.step_started_at = Some(analysis::format_time(now));
        p.st.pause_reason = None;
        p.st.phase = Phase::Progressing;
    }
}

const NOT_ENFORCED: &str = "the namespace is not under the identity admission policy (label \
     payplane.io/governance=enforced), so the name is free text";

/// Four eyes and the allow-list; `Err((condition reason, why))`.
fn check_approval(
    gate: &ApprovalStep,
    approval: &Approval,
    released_by: Option<&str>,
    identity_enforced: bool,
) -> Result<(), (&'static str, String)> {
    if !identity_enforced {
        return Err(("IdentityNotEnforced", NOT_ENFORCED.into()));
    }
    if gate.require_different_person {
        match released_by {
            None => {
                return Err((
                    "AuthorUnknown",
                    "the release's author is unknown (the template change carried no \
                     payplane.io/released-by), so a second person cannot be told apart"
                        .into(),
                ));
            }
            Some(author) if author == approval.by => {
                return Err((
                    "SamePerson",
                    format!("{author} started this release; a different person must approve it"),
                ));
            }
            Some(_) => {}
        }
    }
    if !gate.approvers.is_empty() {
        let allowed = gate.approvers.iter().any(|a| match a.strip_prefix("group:") {
            Some(group) => approval.groups.iter().any(|g| g == group),
            None => *a == approval.by,
        });
        if !allowed {
            return Err((
                "NotAnApprover",
                format!(
                    "{} (groups {:?}) is not among the approvers {:?}",
                    approval.by, approval.groups, gate.approvers
                ),
            ));
        }
    }
    Ok(())
}

fn pause(mut p: Planner<'_>, reason: PauseReason, why: String, requeue: Option<Duration>) -> Plan {
    if p.st.pause_reason != Some(reason) {
        p.event(EventType::Normal, "RolloutPaused", format!("{reason:?}: {why}"));
    }
    p.st.phase = Phase::Paused;
    p.st.pause_reason = Some(reason);
    p.done(requeue)
}

fn new_run(name: String, now: DateTime<Utc>) -> AnalysisRunStatus {
    AnalysisRunStatus {
        name,
        phase: AnalysisPhase::Running,
        started_at: analysis::format_time(now),
        metrics: vec![],
    }
}

fn describe(step: &CanaryStep) -> String {
    if let Some(w) = step.set_weight {
        format!("setWeight {w}")
    } else if let Some(p) = &step.pause {
        match &p.duration {
            Some(d) => format!("pause {d}"),
            None => "pause".into(),
        }
    } else if step.approval.is_some() {
        "approval".into()
    } else {
        "analysis".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{AnalysisRef, MetricStatus, PauseStep};

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_795_000_000 + secs, 0).unwrap()
    }

    fn weight(w: i32) -> CanaryStep {
        CanaryStep {
            set_weight: Some(w),
            ..Default::default()
        }
    }
    fn pause_for(d: &str) -> CanaryStep {
        CanaryStep {
            pause: Some(PauseStep {
                duration: Some(d.into()),
            }),
            ..Default::default()
        }
    }
    fn pause_forever() -> CanaryStep {
        CanaryStep {
            pause: Some(PauseStep { duration: None }),
            ..Default::default()
        }
    }
    fn analysis_step() -> CanaryStep {
        CanaryStep {
            analysis: Some(AnalysisRef::default()),
            ..Default::default()
        }
    }

    fn strategy(steps: Vec<CanaryStep>) -> CanaryStrategy {
        CanaryStrategy {
            steps,
            ..Default::default()
        }
    }

    fn obs(hash: &str, now: i64) -> Observed {
        Observed {
            now: t(now),
            template_hash: hash.into(),
            stable_replicas: 4,
            stable_ready: 4,
            stable_paused: true,
            stable_rolled_out: true,
            canary_ready: 0,
            canary_replicas: 0,
            canary_current: true,
            canary_gone: true,
            request: None,
            spec_paused: false,
            released_by: Some("alice".into()),
            freeze: Freeze::None,
            next_freeze: None,
            approval: None,
            freeze_override: None,
            identity_enforced: true,
        }
    }

    fn healthy(stable: &str) -> RolloutStatus {
        RolloutStatus {
            stable_revision: Some(stable.into()),
            ..Default::default()
        }
    }

    fn releases(p: &Plan) -> Vec<crate::cdevents::Outcome> {
        p.actions
            .iter()
            .filter_map(|a| match a {
                Action::Release { outcome, .. } => Some(*outcome),
                _ => None,
            })
            .collect()
    }

    fn run(s: &CanaryStrategy, st: &RolloutStatus, o: &Observed) -> Plan {
        plan(s, st, o, DEFAULT_PROGRESS_DEADLINE)
    }

    fn reasons(p: &Plan) -> Vec<&'static str> {
        p.actions
            .iter()
            .filter_map(|a| {
                if let Action::Event { reason, .. } = a {
                    Some(*reason)
                } else {
                    None
                }
            })
            .collect()
    }

    fn scales(p: &Plan) -> Vec<i32> {
        p.actions
            .iter()
            .filter_map(|a| {
                if let Action::ScaleCanary(n) = a {
                    Some(*n)
                } else {
                    None
                }
            })
            .collect()
    }

    #[test]
    fn replica_split_keeps_the_share() {
        assert_eq!(canary_replicas(4, 20, Rounding::Up), 1); // 1/5 = 20%
        assert_eq!(canary_replicas(4, 50, Rounding::Up), 4);
        assert_eq!(canary_replicas(9, 10, Rounding::Up), 1); // exactly 1: no rounding up to 2
        assert_eq!(canary_replicas(10, 10, Rounding::Up), 2); // 1.11 → 2
        assert_eq!(canary_replicas(10, 10, Rounding::Down), 1);
        assert_eq!(canary_replicas(10, 10, Rounding::Nearest), 1);
        assert_eq!(
            canary_replicas(3, 1, Rounding::Down),
            1,
            "a positive weight gets a pod"
        );
        assert_eq!(canary_replicas(3, 0, Rounding::Up), 0);
        assert_eq!(canary_replicas(6, 100, Rounding::Up), 6);
        // An HPA doubles the stable: the canary follows and the share holds.
        assert_eq!(canary_replicas(8, 20, Rounding::Up), 2);
        assert_eq!(share(2, 8), 20);
    }

    #[test]
    fn first_sight_adopts_and_pins_the_deployment() {
        let p = run(
            &strategy(vec![weight(20)]),
            &RolloutStatus::default(),
            &Observed {
                stable_paused: false,
                ..obs("a", 0)
            },
        );
        assert_eq!(
            p.status.stable_revision, None,
            "adopted only once the pin is seen"
        );
        assert_eq!(p.actions, [Action::PauseStable]);
        let p = run(&strategy(vec![weight(20)]), &p.status, &obs("a", 1));
        assert_eq!(p.status.stable_revision.as_deref(), Some("a"));
        assert_eq!(p.status.phase, Phase::Healthy);
        assert!(p.actions.contains(&Action::SaveRevision));
        assert_eq!(releases(&p), [crate::cdevents::Outcome::Deployed]);
        // Seen again: nothing more to announce.
        assert_eq!(
            releases(&run(&strategy(vec![weight(20)]), &p.status, &obs("a", 0))),
            []
        );
        // But not while the Deployment is still rolling.
        let p = run(
            &strategy(vec![weight(20)]),
            &RolloutStatus::default(),
            &Observed {
                stable_rolled_out: false,
                ..obs("a", 0)
            },
        );
        assert_eq!(p.status.stable_revision, None);
        assert!(p.actions.is_empty());
    }

    #[test]
    fn walks_weight_pause_and_promotes() {
        let s = strategy(vec![weight(20), pause_for("30s"), weight(50)]);
        // New template b: canary created with 1 replica (20% of 4+1).
        let p = run(&s, &healthy("a"), &obs("b", 0));
        assert_eq!(reasons(&p), ["RolloutStarted"]);
        assert_eq!(scales(&p), [1]);
        assert_eq!(p.status.phase, Phase::Progressing);
        assert_eq!(p.status.canary_revision.as_deref(), Some("b"));
        assert_eq!(p.status.current_step_index, Some(0));
        assert!(p.actions.contains(&Action::SaveRevision));

        // Canary ready: step 0 completes, the pause starts and holds for 30 s.
        let o = Observed {
            canary_ready: 1,
            canary_replicas: 1,
            ..obs("b", 5)
        };
        let p = run(&s, &p.status, &o);
        assert_eq!(reasons(&p), ["StepCompleted", "RolloutPaused"]);
        assert_eq!(p.status.current_step_index, Some(1));
        assert_eq!(p.status.phase, Phase::Paused);
        assert_eq!(p.status.weight, 20);
        assert_eq!(p.requeue, Some(Duration::from_secs(30)));

        let o = Observed {
            canary_ready: 1,
            canary_replicas: 1,
            ..obs("b", 20)
        };
        let p = run(&s, &p.status, &o);
        assert_eq!(p.status.current_step_index, Some(1), "still pausing");
        assert!(reasons(&p).is_empty(), "no repeated events");

        // After 30 s: step 2 asks for 50% = 4 canary pods.
        let o = Observed {
            canary_ready: 1,
            canary_replicas: 1,
            ..obs("b", 36)
        };
        let p = run(&s, &p.status, &o);
        assert_eq!(p.status.current_step_index, Some(2));
        assert_eq!(scales(&p), [4]);
        assert_eq!(p.status.desired_weight, 50);

        // Ready: all steps done, promotion unpauses the stable.
        let o = Observed {
            canary_ready: 4,
            canary_replicas: 4,
            ..obs("b", 40)
        };
        let p = run(&s, &p.status, &o);
        assert_eq!(p.status.phase, Phase::Promoting);
        assert!(p.actions.contains(&Action::UnpauseStable));
        assert!(
            scales(&p).is_empty(),
            "the canary keeps serving while the stable rolls"
        );

        // The stable rolls: wait; then the canary goes to zero and the stable is re-pinned.
        let o = Observed {
            canary_ready: 4,
            canary_replicas: 4,
            stable_paused: false,
            stable_rolled_out: false,
            ..obs("b", 45)
        };
        let p = run(&s, &p.status, &o);
        assert_eq!(p.status.phase, Phase::Promoting);
        assert!(scales(&p).is_empty());
        let o = Observed {
            canary_ready: 4,
            canary_replicas: 4,
            stable_paused: false,
            ..obs("b", 60)
        };
        let p = run(&s, &p.status, &o);
        assert_eq!(p.status.phase, Phase::Promoting, "re-pinned before Healthy");
        assert_eq!(p.actions, [Action::PauseStable]);
        let o = Observed {
            canary_ready: 4,
            canary_replicas: 4,
            ..obs("b", 61)
        };
        let p = run(&s, &p.status, &o);
        assert_eq!(p.status.phase, Phase::Healthy);
        assert_eq!(p.status.stable_revision.as_deref(), Some("b"));
        assert_eq!(scales(&p), [0]);
        assert!(p.actions.contains(&Action::Outcome("Promoted")));
        assert_eq!(releases(&p), [crate::cdevents::Outcome::Upgraded]);
        // The next look at the promoted release announces nothing again.
        assert_eq!(releases(&run(&s, &p.status, &o)), []);
    }

    #[test]
    fn indefinite_pause_waits_for_promote_or_resume() {
        let s = strategy(vec![weight(20), pause_forever(), weight(40)]);
        let mut st = healthy("a");
        st.canary_revision = Some("b".into());
        st.current_step_index = Some(1);
        st.step_started_at = Some(analysis::format_time(t(0)));
        let base = Observed {
            canary_ready: 1,
            canary_replicas: 1,
            ..obs("b", 3600)
        };
        let p = run(&s, &st, &base);
        assert_eq!(p.status.phase, Phase::Paused);
        assert_eq!(p.status.pause_reason, Some(PauseReason::CanaryPauseStep));
        assert_eq!(p.requeue, None, "no polling while paused");
        for request in [Request::Promote, Request::Resume] {
            let p = run(
                &s,
                &st,
                &Observed {
                    request: Some(request.clone()),
                    ..base.clone()
                },
            );
            assert_eq!(p.status.current_step_index, Some(2), "{request:?}");
            assert!(p.request_handled);
            assert_eq!(scales(&p), [3]); // 40% next to 4 stable: 2.67 → 3
        }
    }

    #[test]
    fn promote_skips_one_step_and_promote_full_skips_all() {
        let s = strategy(vec![weight(20), pause_forever(), weight(40), pause_forever()]);
        let p = run(
            &s,
            &healthy("a"),
            &Observed {
                request: Some(Request::Promote),
                ..obs("b", 0)
            },
        );
        assert_eq!(
            p.status.current_step_index,
            Some(1),
            "the setWeight step completed on request"
        );
        assert_eq!(p.status.phase, Phase::Paused, "and only that one");
        let p = run(
            &s,
            &p.status,
            &Observed {
                request: Some(Request::PromoteFull),
                canary_replicas: 1,
                ..obs("b", 1)
            },
        );
        assert_eq!(p.status.phase, Phase::Promoting);
        assert!(p.actions.contains(&Action::UnpauseStable));
    }

    #[test]
    fn user_pause_holds_but_abort_still_acts() {
        let s = strategy(vec![weight(20), weight(40)]);
        let mut st = run(&s, &healthy("a"), &obs("b", 0)).status;
        let paused = Observed {
            canary_ready: 1,
            canary_replicas: 1,
            spec_paused: true,
            ..obs("b", 1)
        };
        let p = run(&s, &st, &paused);
        assert_eq!(p.status.phase, Phase::Paused);
        assert_eq!(p.status.pause_reason, Some(PauseReason::UserPaused));
        assert_eq!(p.status.current_step_index, Some(0));
        st = p.status;
        let p = run(
            &s,
            &st,
            &Observed {
                request: Some(Request::Abort),
                ..paused.clone()
            },
        );
        assert_eq!(p.status.phase, Phase::Degraded);
        assert_eq!(scales(&p), [0]);
        assert!(p.request_handled);
    }

    fn with_run(mut st: RolloutStatus, name: &str, phase: AnalysisPhase) -> RolloutStatus {
        st.analysis_runs.retain(|r| r.name != name);
        st.analysis_runs.push(AnalysisRunStatus {
            name: name.into(),
            phase,
            started_at: analysis::format_time(t(0)),
            metrics: vec![MetricStatus {
                name: "errors".into(),
                phase,
                failed: 1,
                count: 1,
                ..Default::default()
            }],
        });
        st
    }

    #[test]
    fn a_failed_background_analysis_aborts_even_during_a_manual_pause() {
        let mut s = strategy(vec![weight(20), pause_forever(), weight(50)]);
        s.analysis = Some(AnalysisRef::default());
        let p = run(&s, &healthy("a"), &obs("b", 0));
        assert!(
            p.status.analysis_runs.iter().any(|r| r.name == BACKGROUND_RUN),
            "background run started"
        );
        let o = Observed {
            canary_ready: 1,
            canary_replicas: 1,
            ..obs("b", 1)
        };
        let p = run(&s, &p.status, &o);
        assert_eq!(p.status.phase, Phase::Paused);
        // Also with spec.paused set.
        let st = with_run(p.status, BACKGROUND_RUN, AnalysisPhase::Failed);
        let p = run(
            &s,
            &st,
            &Observed {
                spec_paused: true,
                ..o.clone()
            },
        );
        assert_eq!(p.status.phase, Phase::Degraded);
        assert_eq!(scales(&p), [0]);
        assert!(p.status.abort);
        assert!(
            p.status
                .abort_reason
                .as_deref()
                .unwrap()
                .contains("metric errors"),
            "{:?}",
            p.status.abort_reason
        );
        assert_eq!(reasons(&p), ["RolloutAborted"]);
        assert_eq!(releases(&p), [crate::cdevents::Outcome::RolledBack]);
        // The aborted revision stays aborted without a second announcement.
        assert_eq!(releases(&run(&s, &p.status, &o)), []);
        // An errored analysis aborts too.
        let st = with_run(
            run(&s, &healthy("a"), &obs("b", 0)).status,
            BACKGROUND_RUN,
            AnalysisPhase::Error,
        );
        assert_eq!(run(&s, &st, &o).status.phase, Phase::Degraded);
    }

    #[test]
    fn step_analysis_gates_the_step() {
        let s = strategy(vec![weight(20), analysis_step(), weight(50)]);
        let o = Observed {
            canary_ready: 1,
            canary_replicas: 1,
            ..obs("b", 1)
        };
        let st = run(&s, &healthy("a"), &obs("b", 0)).status;
        let p = run(&s, &st, &o);
        assert_eq!(p.status.current_step_index, Some(1));
        assert!(
            p.status
                .analysis_runs
                .iter()
                .any(|r| r.name == "step-1" && r.phase == AnalysisPhase::Running)
        );
        let p2 = run(&s, &p.status, &o);
        assert_eq!(
            p2.status.current_step_index,
            Some(1),
            "running analysis holds the step"
        );
        assert_eq!(p2.requeue, Some(WAIT_FOR_ANALYSIS));

        let ok = run(
            &s,
            &with_run(p.status.clone(), "step-1", AnalysisPhase::Successful),
            &o,
        );
        assert_eq!(ok.status.current_step_index, Some(2));

        let inconclusive = run(
            &s,
            &with_run(p.status.clone(), "step-1", AnalysisPhase::Inconclusive),
            &o,
        );
        assert_eq!(inconclusive.status.phase, Phase::Paused);
        assert_eq!(
            inconclusive.status.pause_reason,
            Some(PauseReason::InconclusiveAnalysis)
        );
        let resumed = run(
            &s,
            &with_run(p.status.clone(), "step-1", AnalysisPhase::Inconclusive),
            &Observed {
                request: Some(Request::Resume),
                ..o.clone()
            },
        );
        assert_eq!(resumed.status.current_step_index, Some(2));

        let failed = run(
            &s,
            &with_run(p.status.clone(), "step-1", AnalysisPhase::Failed),
            &o,
        );
        assert_eq!(failed.status.phase, Phase::Degraded);
    }

    #[test]
    fn an_aborted_revision_stays_aborted_until_retry() {
        let s = strategy(vec![weight(20), weight(40)]);
        let st = run(&s, &healthy("a"), &obs("b", 0)).status;
        let aborted = run(
            &s,
            &st,
            &Observed {
                request: Some(Request::Abort),
                ..obs("b", 1)
            },
        )
        .status;
        let p = run(&s, &aborted, &obs("b", 100));
        assert_eq!(p.status.phase, Phase::Degraded);
        assert!(p.actions.is_empty(), "nothing to do: {:?}", p.actions);
        let p = run(
            &s,
            &aborted,
            &Observed {
                request: Some(Request::Retry),
                ..obs("b", 101)
            },
        );
        assert_eq!(p.status.phase, Phase::Progressing);
        assert_eq!(p.status.current_step_index, Some(0));
        assert!(!p.status.abort);
        assert_eq!(reasons(&p), ["RolloutRetried"]);
        assert_eq!(scales(&p), [1]);
        // A newer revision starts without retry.
        let p = run(&s, &aborted, &obs("c", 102));
        assert_eq!(p.status.canary_revision.as_deref(), Some("c"));
        assert_eq!(p.status.phase, Phase::Progressing);
    }

    #[test]
    fn a_newer_revision_supersedes_the_one_in_flight() {
        let s = strategy(vec![weight(20), pause_forever()]);
        let st = run(&s, &healthy("a"), &obs("b", 0)).status;
        let st = run(
            &s,
            &st,
            &Observed {
                canary_ready: 1,
                canary_replicas: 1,
                ..obs("b", 1)
            },
        )
        .status;
        assert_eq!(st.current_step_index, Some(1));
        // The canary Deployment still has 1 pod, but of b: none is ready for c (see `Observed`).
        let p = run(
            &s,
            &st,
            &Observed {
                canary_ready: 0,
                canary_replicas: 1,
                canary_current: false,
                ..obs("c", 2)
            },
        );
        assert_eq!(reasons(&p), ["RolloutSuperseded", "RolloutStarted"]);
        assert_eq!(p.status.phase, Phase::Progressing, "waits for c's pods");
        assert_eq!(
            scales(&p),
            [1],
            "the canary gets c's template even at the same size"
        );
        assert_eq!(p.status.canary_revision.as_deref(), Some("c"));
        assert_eq!(
            p.status.current_step_index,
            Some(0),
            "restarts from the first step"
        );
        assert_eq!(p.status.stable_revision.as_deref(), Some("a"));
        assert!(p.actions.contains(&Action::ResetAnalysis));
    }

    #[test]
    fn back_to_the_stable_template_removes_the_canary() {
        let s = strategy(vec![weight(20), pause_forever()]);
        let st = run(&s, &healthy("a"), &obs("b", 0)).status;
        let p = run(
            &s,
            &st,
            &Observed {
                canary_ready: 1,
                canary_replicas: 1,
                ..obs("a", 5)
            },
        );
        assert_eq!(p.status.phase, Phase::Healthy);
        assert_eq!(p.status.canary_revision, None);
        assert_eq!(scales(&p), [0]);
        assert_eq!(reasons(&p), ["RolloutSuperseded"]);
        // Undoing a canary is a rollback, about the canary's revision.
        assert!(p.actions.contains(&Action::Release {
            outcome: crate::cdevents::Outcome::RolledBack,
            revision: "b".into()
        }));
        assert_eq!(releases(&p), [crate::cdevents::Outcome::RolledBack]);
        // An aborted canary was announced at the abort: going back to the stable adds nothing.
        let aborted = run(
            &s,
            &st,
            &Observed {
                request: Some(Request::Abort),
                ..obs("b", 5)
            },
        );
        assert_eq!(releases(&aborted), [crate::cdevents::Outcome::RolledBack]);
        let p = run(&s, &aborted.status, &obs("a", 6));
        assert_eq!(p.status.phase, Phase::Healthy);
        assert_eq!(releases(&p), []);
    }

    #[test]
    fn progress_deadline_aborts_a_canary_that_never_gets_ready() {
        let s = strategy(vec![weight(20)]);
        let st = run(&s, &healthy("a"), &obs("b", 0)).status;
        let p = plan(
            &s,
            &st,
            &Observed {
                canary_replicas: 1,
                ..obs("b", 30)
            },
            Duration::from_secs(60),
        );
        assert_eq!(p.status.phase, Phase::Progressing);
        let p = plan(
            &s,
            &st,
            &Observed {
                canary_replicas: 1,
                ..obs("b", 61)
            },
            Duration::from_secs(60),
        );
        assert_eq!(p.status.phase, Phase::Degraded);
        assert!(p.status.abort_reason.unwrap().contains("progress deadline"));
    }

    #[test]
    fn the_canary_follows_an_autoscaled_stable() {
        let s = strategy(vec![weight(20), pause_forever()]);
        let st = run(&s, &healthy("a"), &obs("b", 0)).status;
        let st = run(
            &s,
            &st,
            &Observed {
                canary_ready: 1,
                canary_replicas: 1,
                ..obs("b", 1)
            },
        )
        .status;
        // The HPA scales the stable from 4 to 12: the canary goes to 3 (20%).
        let p = run(
            &s,
            &st,
            &Observed {
                canary_ready: 1,
                canary_replicas: 1,
                stable_replicas: 12,
                stable_ready: 12,
                ..obs("b", 2)
            },
        );
        assert_eq!(scales(&p), [3]);
        assert_eq!(p.status.phase, Phase::Paused);
    }

    #[test]
    fn the_deployment_is_re_pinned_when_someone_unpauses_it() {
        let s = strategy(vec![weight(20)]);
        let p = run(
            &s,
            &healthy("a"),
            &Observed {
                stable_paused: false,
                ..obs("a", 0)
            },
        );
        assert!(p.actions.contains(&Action::PauseStable));
    }

    fn frozen_until(secs: i64) -> Freeze {
        Freeze::Active {
            window: "cutoff".into(),
            source: "FreezePolicy/bank".into(),
            until: t(secs),
        }
    }

    fn approval_step(require_different_person: bool, approvers: &[&str]) -> CanaryStep {
        CanaryStep {
            approval: Some(ApprovalStep {
                require_different_person,
                approvers: approvers.iter().map(|a| a.to_string()).collect(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_freeze_holds_every_advance_and_resumes_at_its_end() {
        let mut s = strategy(vec![weight(20), pause_for("5s"), weight(50)]);
        s.analysis = Some(AnalysisRef::default());
        // A new revision during a freeze: recorded, but no canary pod is created.
        let p = run(
            &s,
            &healthy("a"),
            &Observed {
                freeze: frozen_until(100),
                ..obs("b", 0)
            },
        );
        assert_eq!(p.status.canary_revision.as_deref(), Some("b"));
        assert!(
            scales(&p).is_empty(),
            "no canary during a freeze: {:?}",
            p.actions
        );
        assert_eq!(p.status.phase, Phase::Paused);
        assert_eq!(p.status.pause_reason, Some(PauseReason::FreezeWindow));
        let hold = p.status.freeze.clone().unwrap();
        assert_eq!(hold.window, "cutoff");
        assert_eq!(
            hold.until.as_deref(),
            Some(analysis::format_time(t(100)).as_str())
        );
        assert_eq!(reasons(&p), ["RolloutStarted", "Frozen"]);
        let frozen = p.status.conditions.iter().find(|c| c.type_ == "Frozen").unwrap();
        assert_eq!(
            (frozen.status.as_str(), frozen.reason.as_str()),
            ("True", "FreezeWindow")
        );
        assert!(frozen.message.contains("until"), "{}", frozen.message);
        assert_eq!(
            p.requeue,
            Some(Duration::from_secs(100) + Duration::from_millis(50)),
            "requeued for the end of the window"
        );
        // Still frozen: no new event, no action.
        let p = run(
            &s,
            &p.status,
            &Observed {
                freeze: frozen_until(100),
                ..obs("b", 50)
            },
        );
        assert!(p.actions.is_empty(), "{:?}", p.actions);
        assert!(
            p.status.analysis_runs.is_empty(),
            "no analysis while no canary can serve: {:?}",
            p.status.analysis_runs
        );
        // The window ends: the canary is created, and its background analysis starts now.
        let p = run(&s, &p.status, &obs("b", 100));
        assert_eq!(scales(&p), [1]);
        let background = p.status.analysis_runs.iter().find(|r| r.name == BACKGROUND_RUN);
        assert_eq!(
            background.map(|r| r.started_at.clone()),
            Some(analysis::format_time(t(100))),
            "{:?}",
            p.status.analysis_runs
        );
        assert_eq!(p.status.freeze, None);
        assert_eq!(reasons(&p), ["FreezeEnded"]);
        assert_eq!(p.status.phase, Phase::Progressing);

        // A step whose work is done does not complete during a freeze, nor does promotion start.
        let mut st = p.status;
        st.current_step_index = Some(2);
        let o = Observed {
            canary_ready: 4,
            canary_replicas: 4,
            freeze: frozen_until(300),
            ..obs("b", 200)
        };
        let p = run(&s, &st, &o);
        assert_eq!(p.status.current_step_index, Some(2));
        assert!(!p.actions.contains(&Action::UnpauseStable));
        assert_eq!(p.status.pause_reason, Some(PauseReason::FreezeWindow));
        // promote and promote-full are refused (and consumed) while frozen.
        for request in [Request::Promote, Request::PromoteFull] {
            let p = run(
                &s,
                &st,
                &Observed {
                    request: Some(request.clone()),
                    ..o.clone()
                },
            );
            assert!(p.request_handled);
            assert_eq!(p.status.current_step_index, Some(2), "{request:?}");
            assert!(reasons(&p).contains(&"RequestRefused"), "{request:?}");
            assert!(!p.actions.contains(&Action::UnpauseStable));
        }
        // After the window: promotion.
        let p = run(
            &s,
            &st,
            &Observed {
                freeze: Freeze::None,
                ..o.clone()
            },
        );
        assert_eq!(p.status.phase, Phase::Promoting);
    }

    #[test]
    fn abort_and_failing_analysis_act_inside_a_freeze() {
        let mut s = strategy(vec![weight(20), pause_forever()]);
        s.analysis = Some(AnalysisRef::default());
        let st = run(&s, &healthy("a"), &obs("b", 0)).status;
        let frozen = Observed {
            canary_ready: 1,
            canary_replicas: 1,
            freeze: frozen_until(1000),
            ..obs("b", 1)
        };
        let p = run(
            &s,
            &st,
            &Observed {
                request: Some(Request::Abort),
                ..frozen.clone()
            },
        );
        assert_eq!(p.status.phase, Phase::Degraded);
        assert_eq!(scales(&p), [0]);
        let st = with_run(st, BACKGROUND_RUN, AnalysisPhase::Failed);
        let p = run(&s, &st, &frozen);
        assert_eq!(p.status.phase, Phase::Degraded);
        assert_eq!(scales(&p), [0]);
    }

    #[test]
    fn an_invalid_freeze_policy_fails_closed() {
        let s = strategy(vec![weight(20)]);
        let p = run(
            &s,
            &healthy("a"),
            &Observed {
                freeze: Freeze::Invalid("FreezePolicy/x: spec.windows[0].timeZone: bad".into()),
                ..obs("b", 0)
            },
        );
        assert!(scales(&p).is_empty());
        let c = p.status.conditions.iter().find(|c| c.type_ == "Frozen").unwrap();
        assert_eq!(c.reason, "InvalidFreezePolicy");
        assert!(c.message.contains("spec.windows[0].timeZone"));
        assert_eq!(p.requeue, Some(INVALID_FREEZE_RECHECK));
    }

    #[test]
    fn a_freeze_override_needs_an_enforced_identity_and_holds_for_its_revision() {
        let s = strategy(vec![weight(20), weight(40)]);
        let over = OverrideRequest {
            by: "carol".into(),
            reason: "hotfix INC-42".into(),
        };
        let frozen = Observed {
            freeze: frozen_until(1000),
            freeze_override: Some(over.clone()),
            ..obs("b", 0)
        };
        // Not enforced: refused, the freeze holds.
        let p = run(
            &s,
            &healthy("a"),
            &Observed {
                identity_enforced: false,
                ..frozen.clone()
            },
        );
        assert!(reasons(&p).contains(&"FreezeOverrideRefused"));
        assert!(scales(&p).is_empty());
        assert_eq!(p.status.freeze_override, None);
        // Enforced: recorded, the release advances.
        let p = run(&s, &healthy("a"), &frozen);
        assert!(reasons(&p).contains(&"FreezeOverridden"));
        assert_eq!(scales(&p), [1]);
        let o = p.status.freeze_override.clone().unwrap();
        assert_eq!(
            (o.by.as_str(), o.reason.as_str(), o.revision.as_str()),
            ("carol", "hotfix INC-42", "b")
        );
        assert_eq!(p.status.freeze, None);
        // It stays in force for b without the annotation (consumed)...
        let p = run(
            &s,
            &p.status,
            &Observed {
                canary_ready: 1,
                canary_replicas: 1,
                freeze_override: None,
                ..frozen.clone()
            },
        );
        assert_eq!(p.status.current_step_index, Some(1));
        // ...but not for the next revision.
        let p = run(
            &s,
            &p.status,
            &Observed {
                freeze_override: None,
                ..frozen.clone()
            }
            .with_hash("c"),
        );
        assert_eq!(p.status.freeze_override, None);
        assert!(scales(&p).is_empty(), "c is frozen: {:?}", p.actions);
    }

    impl Observed {
        fn with_hash(mut self, hash: &str) -> Self {
            self.template_hash = hash.into();
            self.canary_current = false;
            self
        }
    }

    #[test]
    fn four_eyes_approval() {
        let s = strategy(vec![weight(20), approval_step(true, &[]), weight(50)]);
        let ready = Observed {
            canary_ready: 1,
            canary_replicas: 1,
            ..obs("b", 1)
        };
        let st = run(&s, &healthy("a"), &obs("b", 0)).status;
        assert_eq!(st.released_by.as_deref(), Some("alice"));
        let p = run(&s, &st, &ready);
        assert_eq!(p.status.current_step_index, Some(1));
        assert_eq!(p.status.pause_reason, Some(PauseReason::AwaitingApproval));
        let waiting = p.status;
        // promote does not pass an approval gate; promote-full neither.
        for request in [Request::Promote, Request::PromoteFull] {
            let p = run(
                &s,
                &waiting,
                &Observed {
                    request: Some(request.clone()),
                    ..ready.clone()
                },
            );
            assert_eq!(p.status.current_step_index, Some(1), "{request:?}");
            assert!(reasons(&p).contains(&"RequestRefused"), "{request:?}");
            assert!(p.request_handled);
        }
        // The author approves: refused, with a condition and an event saying why.
        let approve = |by: &str| Approval {
            by: by.into(),
            groups: vec![],
        };
        let p = run(
            &s,
            &waiting,
            &Observed {
                approval: Some(approve("alice")),
                ..ready.clone()
            },
        );
        assert_eq!(p.status.current_step_index, Some(1));
        assert_eq!(reasons(&p), ["ApprovalRefused"]);
        let c = p
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == "Approval")
            .unwrap();
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "SamePerson"));
        assert!(c.message.contains("alice started this release"), "{}", c.message);
        // Another person: accepted, recorded, the step completes.
        let p = run(
            &s,
            &p.status,
            &Observed {
                approval: Some(approve("bob")),
                ..ready.clone()
            },
        );
        assert_eq!(p.status.current_step_index, Some(2));
        assert_eq!(p.status.approvals.len(), 1);
        assert_eq!(p.status.approvals[0].by, "bob");
        assert!(reasons(&p).contains(&"Approved"));
        // Without an enforced identity, or without a known author, nobody can approve.
        let p = run(
            &s,
            &waiting,
            &Observed {
                approval: Some(approve("bob")),
                identity_enforced: false,
                ..ready.clone()
            },
        );
        assert_eq!(p.status.current_step_index, Some(1));
        let mut unknown = waiting.clone();
        unknown.released_by = None;
        let p = run(
            &s,
            &unknown,
            &Observed {
                approval: Some(approve("bob")),
                ..ready.clone()
            },
        );
        assert_eq!(p.status.current_step_index, Some(1));
        assert!(p.status.conditions.iter().any(|c| c.reason == "AuthorUnknown"));
        // An approval that arrives as the gate is reached (not yet shown as pending) is ignored:
        // its author cannot have seen this gate.
        let p = run(
            &s,
            &st,
            &Observed {
                approval: Some(approve("bob")),
                ..ready.clone()
            },
        );
        assert_eq!(p.status.pause_reason, Some(PauseReason::AwaitingApproval));
        assert!(p.status.approvals.is_empty());
        assert!(reasons(&p).contains(&"ApprovalIgnored"), "{:?}", reasons(&p));
        // An approval with no gate pending is ignored (and said so).
        let p = run(
            &s,
            &healthy("a"),
            &Observed {
                approval: Some(approve("bob")),
                ..obs("a", 5)
            },
        );
        assert_eq!(reasons(&p), ["ApprovalIgnored"]);
    }

    #[test]
    fn approvers_allow_list_by_user_and_group() {
        let gate = ApprovalStep {
            require_different_person: true,
            approvers: vec!["carol".into(), "group:release-managers".into()],
        };
        let a = |by: &str, groups: &[&str]| Approval {
            by: by.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        };
        assert!(check_approval(&gate, &a("carol", &[]), Some("alice"), true).is_ok());
        assert!(check_approval(&gate, &a("bob", &["release-managers"]), Some("alice"), true).is_ok());
        assert_eq!(
            check_approval(&gate, &a("bob", &["devs"]), Some("alice"), true)
                .unwrap_err()
                .0,
            "NotAnApprover"
        );
        assert_eq!(
            check_approval(&gate, &a("alice", &["release-managers"]), Some("alice"), true)
                .unwrap_err()
                .0,
            "SamePerson"
        );
    }

    #[test]
    fn an_approval_given_during_a_freeze_counts_after_it() {
        let s = strategy(vec![weight(20), approval_step(true, &[]), weight(50)]);
        let ready = Observed {
            canary_ready: 1,
            canary_replicas: 1,
            ..obs("b", 1)
        };
        let st = run(&s, &healthy("a"), &obs("b", 0)).status;
        let waiting = run(&s, &st, &ready).status;
        let p = run(
            &s,
            &waiting,
            &Observed {
                approval: Some(Approval {
                    by: "bob".into(),
                    groups: vec![],
                }),
                freeze: frozen_until(100),
                ..ready.clone()
            },
        );
        assert_eq!(p.status.approvals.len(), 1);
        assert_eq!(p.status.current_step_index, Some(1), "held by the freeze");
        let p = run(
            &s,
            &p.status,
            &Observed {
                now: t(100),
                ..ready.clone()
            },
        );
        assert_eq!(p.status.current_step_index, Some(2));
    }

    #[test]
    fn a_revision_superseded_during_a_freeze_loses_its_canary_and_the_new_one_waits() {
        let s = strategy(vec![weight(20), pause_forever()]);
        let st = run(&s, &healthy("a"), &obs("b", 0)).status;
        let st = run(
            &s,
            &st,
            &Observed {
                canary_ready: 1,
                canary_replicas: 1,
                ..obs("b", 1)
            },
        )
        .status;
        let p = run(
            &s,
            &st,
            &Observed {
                canary_ready: 0,
                canary_replicas: 1,
                canary_current: false,
                freeze: frozen_until(100),
                ..obs("c", 2)
            },
        );
        assert_eq!(p.status.canary_revision.as_deref(), Some("c"));
        assert_eq!(scales(&p), [0], "b's pods go, c gets none");
        assert_eq!(p.status.pause_reason, Some(PauseReason::FreezeWindow));
    }

    #[test]
    fn resuming_an_inconclusive_step_is_refused_during_a_freeze() {
        let s = strategy(vec![weight(20), analysis_step(), weight(50)]);
        let o = Observed {
            canary_ready: 1,
            canary_replicas: 1,
            ..obs("b", 1)
        };
        let st = run(&s, &healthy("a"), &obs("b", 0)).status;
        let st = run(&s, &st, &o).status;
        let st = with_run(st, "step-1", AnalysisPhase::Inconclusive);
        let p = run(
            &s,
            &st,
            &Observed {
                request: Some(Request::Resume),
                freeze: frozen_until(100),
                ..o.clone()
            },
        );
        assert_eq!(p.status.current_step_index, Some(1));
        assert!(p.request_handled);
        assert!(reasons(&p).contains(&"RequestRefused"), "{:?}", reasons(&p));
        assert_eq!(p.status.pause_reason, Some(PauseReason::FreezeWindow));
    }

    #[test]
    fn requests_parse() {
        assert_eq!("abort".parse::<Request>().unwrap(), Request::Abort);
        assert_eq!("undo:3".parse::<Request>().unwrap(), Request::Undo(Some(3)));
        assert_eq!("undo".parse::<Request>().unwrap(), Request::Undo(None));
        assert!("undo:0".parse::<Request>().is_err());
        assert!("explode".parse::<Request>().is_err());
    }

    #[test]
    fn an_aborted_release_is_rolled_back_once_the_canary_pods_are_gone() {
        let s = strategy(vec![weight(20), pause_forever()]);
        let serving = Observed {
            canary_ready: 1,
            canary_replicas: 1,
            canary_gone: false,
            ..obs("b", 1)
        };
        let st = run(&s, &run(&s, &healthy("a"), &obs("b", 0)).status, &serving).status;
        let aborted = run(
            &s,
            &st,
            &Observed {
                request: Some(Request::Abort),
                ..serving.clone()
            },
        )
        .status;
        assert!(aborted.abort && aborted.rolled_back_at.is_none());
        // Scaled to 0 but a pod still serves: not yet.
        let draining = Observed {
            canary_replicas: 0,
            canary_ready: 0,
            canary_gone: false,
            ..serving.clone()
        };
        assert_eq!(run(&s, &aborted, &draining).status.rolled_back_at, None);
        let gone = Observed {
            canary_ready: 0,
            canary_replicas: 0,
            ..obs("b", 5)
        };
        let rolled_back = run(&s, &aborted, &gone).status;
        assert_eq!(
            rolled_back.rolled_back_at.as_deref(),
            Some(analysis::format_time(t(5)).as_str())
        );
        // Seen once: a later plan keeps the first time.
        let later = run(&s, &rolled_back, &obs("b", 9)).status;
        assert_eq!(later.rolled_back_at, rolled_back.rolled_back_at);
        // `retry` starts over.
        let retried = run(
            &s,
            &rolled_back,
            &Observed {
                request: Some(Request::Retry),
                ..obs("b", 10)
            },
        )
        .status;
        assert_eq!(retried.rolled_back_at, None);
    }
}
