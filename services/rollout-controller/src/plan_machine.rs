//! The coordinated release, no I/O: a ReleasePlan's spec and status plus what was observed of its
//! members' Rollouts and Deployments give the next status and the actions to take
//! ([`crate::plan_reconcile`] executes them).
//!
//! Members are released one at a time, in order: member i's Deployment gets the plan's template
//! change only once member i−1 is promoted (its Rollout Healthy with the plan's revision as
//! stable). The Rollouts do the releasing (canary steps, analysis, progress deadline); the plan
//! only starts them and watches. When the member in flight is aborted, the plan restores that
//! member's template (`undo`, which for an aborted canary is immediate) and then rolls back the
//! members it promoted, last first, one at a time: `undo:<fromRelease>` on the Rollout, then
//! `promote-full` once that undo's canary is in flight (a rollback does not walk canary steps),
//! until the member's stable is `fromRevision` again.
//!
//! The shared analysis is not run here: a member's Rollout adds it to its background analysis
//! while the plan releases it ([`shared_metrics`]), so it aborts the member in flight, which this
//! machine sees as any other abort.

use std::{collections::BTreeMap, time::Duration};

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::{
    analysis,
    crd::{
        AnalysisTemplateSpec, CanaryStrategy, MemberPhase, MemberStatus, Metric, Phase, PlanPhase,
        PlanService, ReleasePlan, ReleasePlanSpec, ReleasePlanStatus,
    },
    machine::{EventType, set_condition},
    validate::{self, Invalid},
};

/// Prefix of the shared metrics' names in a member's background analysis.
pub const SHARED_METRIC_PREFIX: &str = "plan/";
/// How often a plan in flight looks at its members even when no watch event comes.
pub const POLL: Duration = Duration::from_secs(2);
const INVALID_RECHECK: Duration = Duration::from_secs(60);

/// What the reconciler saw of one member: its Rollout's status and its Deployment's template.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Member {
    pub phase: Phase,
    pub stable_revision: Option<String>,
    pub canary_revision: Option<String>,
    pub aborted_revision: Option<String>,
    pub abort_reason: Option<String>,
    /// The Rollout's `status.revision`: the ControllerRevision number of the stable when Healthy.
    pub revision: Option<i64>,
    /// Hash of the Deployment's pod template (as the Rollout computes it).
    pub template_hash: String,
    /// The template already carries this member's image and env (applying would change nothing).
    pub at_target: bool,
    /// A `payplane.io/request` on the Rollout that its controller has not handled yet.
    pub pending_request: Option<String>,
}

impl Member {
    fn healthy_at(&self, revision: &str) -> bool {
        self.phase == Phase::Healthy && self.stable_revision.as_deref() == Some(revision)
    }
}

#[derive(Debug, Clone)]
pub struct Observed {
    pub now: DateTime<Utc>,
    /// Hash of the current spec.
    pub spec_hash: String,
    /// Per member of `spec.services`, in order: None when its Rollout or Deployment is missing.
    pub members: Vec<Option<Member>>,
    /// The AnalysisTemplates of the namespace (for the shared analysis' validation).
    pub templates: BTreeMap<String, AnalysisTemplateSpec>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Write member `index`'s image/env into its Deployment's template (signed
    /// `payplane.io/released-by` with the controller's identity, `payplane.io/release-plan`).
    Apply { index: usize },
    /// Annotate member `index`'s Rollout with `payplane.io/request: <request>`.
    Request { index: usize, request: String },
    Event {
        type_: EventType,
        reason: &'static str,
        note: String,
    },
    /// The plan ended: Succeeded, RolledBack or Failed (for the metric).
    Outcome(&'static str),
}

#[derive(Debug, Clone)]
pub struct Decision {
    pub status: ReleasePlanStatus,
    pub actions: Vec<Action>,
    /// None: nothing to wait for (a terminal phase).
    pub requeue: Option<Duration>,
}

/// Validates a plan's spec; every problem names its field.
pub fn validate(spec: &ReleasePlanSpec, templates: &BTreeMap<String, AnalysisTemplateSpec>) -> Vec<Invalid> {
    let mut out = Vec::new();
    let mut bad = |field: String, reason: String| out.push(Invalid { field, reason });
    if spec.services.is_empty() {
        bad("spec.services".into(), "needs at least one service".into());
    }
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, s) in spec.services.iter().enumerate() {
        let path = format!("spec.services[{i}]");
        if s.rollout.trim().is_empty() {
            bad(
                format!("{path}.rollout"),
                "the name of a Rollout is required".into(),
            );
        } else if let Some(first) = seen.insert(&s.rollout, i) {
            bad(
                format!("{path}.rollout"),
                format!(
                    "`{}` is also spec.services[{first}]; a service is released once per plan",
                    s.rollout
                ),
            );
        }
        if s.image.is_none() && s.env.is_empty() {
            bad(path.clone(), "needs image or env (what to release)".into());
        }
        if let Some(image) = &s.image
            && (image.trim().is_empty() || image.chars().any(char::is_whitespace))
        {
            bad(
                format!("{path}.image"),
                format!("`{image}` is not an image reference or tag"),
            );
        }
        let mut names: BTreeMap<&str, usize> = BTreeMap::new();
        for (j, e) in s.env.iter().enumerate() {
            let valid = !e.name.is_empty()
                && !e.name.starts_with(|c: char| c.is_ascii_digit())
                && e.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
            if !valid {
                bad(
                    format!("{path}.env[{j}].name"),
                    format!(
                        "`{}` is not an environment variable name (letters, digits, `_`, `-`, `.`)",
                        e.name
                    ),
                );
            } else if let Some(first) = names.insert(&e.name, j) {
                bad(
                    format!("{path}.env[{j}].name"),
                    format!("`{}` is also env[{first}]", e.name),
                );
            }
        }
    }
    if let Some(a) = &spec.analysis {
        out.extend(validate::validate_analysis("spec.analysis", a, templates));
    }
    out
}

/// The image after applying `image` (a tag or a full reference) to `current`.
pub fn target_image(current: &str, image: &str) -> String {
    if image.contains(['/', ':', '@']) {
        return image.to_owned();
    }
    let repo = current.split('@').next().unwrap_or(current);
    let name_start = repo.rfind('/').map_or(0, |i| i + 1);
    let repo = match repo[name_start..].find(':') {
        Some(i) => &repo[..name_start + i],
        None => repo,
    };
    format!("{repo}:{image}")
}

/// The pod label that names the version a pod runs; the charts pass it to the service as
/// SERVICE_VERSION (the downward API), which goes on every span and metric. A release that
/// changes the image changes it too, so traces name the version that really runs.
pub const VERSION_LABEL: &str = "app.kubernetes.io/version";

/// The version label for `image`: its tag (or its digest, shortened), made a valid label value
/// (at most 63 of `[A-Za-z0-9._-]`, alphanumeric at both ends). None for an image with neither.
pub fn version_label(image: &str) -> Option<String> {
    let name_start = image.rfind('/').map_or(0, |i| i + 1);
    let name = &image[name_start..];
    let version = match (name.find('@'), name.find(':')) {
        (Some(at), _) => name[at + 1..].replacen(':', "-", 1).chars().take(19).collect(),
        (None, Some(colon)) => name[colon + 1..].to_owned(),
        (None, None) => return None,
    };
    let clean: String = version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    let clean = clean.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    (!clean.is_empty()).then(|| clean.to_owned())
}

/// The pod template with the member's change: the first container's image and env (and the
/// version label, for a new image).
pub fn target_template(template: &Value, service: &PlanService) -> Value {
    let mut t = template.clone();
    if let Some(image) = &service.image {
        let current = t["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let new = target_image(&current, image);
        if let Some(version) = version_label(&new)
            && t["metadata"]["labels"].get(VERSION_LABEL).is_some()
        {
            t["metadata"]["labels"][VERSION_LABEL] = Value::String(version);
        }
        if let Some(container) = t["spec"]["containers"].get_mut(0) {
            container["image"] = Value::String(new);
        }
    }
    let Some(container) = t["spec"]["containers"].get_mut(0) else {
        return t;
    };
    if !service.env.is_empty() {
        let env = container
            .as_object_mut()
            .map(|c| c.entry("env").or_insert_with(|| Value::Array(Vec::new())));
        if let Some(Value::Array(env)) = env {
            for var in &service.env {
                let entry = serde_json::json!({"name": var.name, "value": var.value});
                match env.iter_mut().find(|e| e["name"] == var.name.as_str()) {
                    Some(e) => *e = entry,
                    None => env.push(entry),
                }
            }
        }
    }
    t
}

/// The shared metrics a member's Rollout runs now: the plan's analysis, names prefixed, while the
/// plan releases that Rollout's revision `hash` (and nothing otherwise).
pub fn shared_metrics(
    plan: &ReleasePlan,
    rollout: &str,
    hash: &str,
    templates: &BTreeMap<String, AnalysisTemplateSpec>,
) -> Vec<Metric> {
    let Some(analysis_ref) = &plan.spec.analysis else {
        return Vec::new();
    };
    let Some(status) = &plan.status else {
        return Vec::new();
    };
    let releasing = status.phase == PlanPhase::Progressing
        && status
            .current_index
            .and_then(|i| status.services.get(i as usize))
            .is_some_and(|m| {
                m.rollout == rollout
                    && m.phase == MemberPhase::Releasing
                    && m.to_revision.as_deref().is_none_or(|to| to == hash)
            });
    if !releasing {
        return Vec::new();
    }
    analysis::resolve(analysis_ref, templates)
        .into_iter()
        .map(|mut m| {
            m.name = format!("{SHARED_METRIC_PREFIX}{}", m.name);
            m
        })
        .collect()
}

/// The Rollout's strategy with the shared metrics added to its background analysis (its own
/// metrics, templates included, are resolved into the inline list unchanged).
pub fn with_shared(
    own: &CanaryStrategy,
    shared: Vec<Metric>,
    templates: &BTreeMap<String, AnalysisTemplateSpec>,
) -> CanaryStrategy {
    if shared.is_empty() {
        return own.clone();
    }
    let mut strategy = own.clone();
    let mut metrics = own
        .analysis
        .as_ref()
        .map(|a| analysis::resolve(a, templates))
        .unwrap_or_default();
    metrics.extend(shared);
    strategy.analysis = Some(crate::crd::AnalysisRef {
        templates: Vec::new(),
        inline: Some(AnalysisTemplateSpec { metrics }),
    });
    strategy
}

struct Planner<'a> {
    spec: &'a ReleasePlanSpec,
    obs: &'a Observed,
    st: ReleasePlanStatus,
    actions: Vec<Action>,
}

impl Planner<'_> {
    fn now(&self) -> String {
        analysis::format_time(self.obs.now)
    }

    fn event(&mut self, type_: EventType, reason: &'static str, note: String) {
        self.actions.push(Action::Event { type_, reason, note });
    }

    fn condition(&mut self, type_: &str, status: bool, reason: &str, message: String) {
        set_condition(
            &mut self.st.conditions,
            type_,
            status,
            reason,
            message,
            self.obs.now,
        );
    }

    fn done(self, requeue: Option<Duration>) -> Decision {
        Decision {
            status: self.st,
            actions: self.actions,
            requeue,
        }
    }

    fn member(&self, i: usize) -> Option<&Member> {
        self.obs.members.get(i).and_then(Option::as_ref)
    }

    fn name(&self, i: usize) -> String {
        self.st.services[i].rollout.clone()
    }

    /// Member `i` failed: the plan rolls back from there.
    fn fail_member(&mut self, i: usize, why: String) {
        let now = self.now();
        let m = &mut self.st.services[i];
        m.phase = MemberPhase::Aborted;
        m.finished_at = Some(now);
        m.message = Some(why.clone());
        let name = m.rollout.clone();
        self.st.phase = PlanPhase::RollingBack;
        self.st.message = Some(format!("{name} failed: {why}; rolling back"));
        self.condition("Progressing", false, "MemberAborted", format!("{name}: {why}"));
        self.event(
            EventType::Warning,
            "MemberAborted",
            format!("{name} (service {}) aborted: {why}; rolling back", i + 1),
        );
    }
}

/// Decides the next status and actions.
pub fn decide(spec: &ReleasePlanSpec, prev: &ReleasePlanStatus, obs: &Observed) -> Decision {
    let mut p = Planner {
        spec,
        obs,
        st: prev.clone(),
        actions: Vec::new(),
    };
    match p.st.phase {
        PlanPhase::Pending => start(&mut p),
        PlanPhase::Succeeded | PlanPhase::RolledBack | PlanPhase::Failed => return p.done(None),
        PlanPhase::Progressing | PlanPhase::RollingBack => {}
    }
    if p.st.phase == PlanPhase::Pending {
        return p.done(Some(INVALID_RECHECK));
    }
    if p.st.phase == PlanPhase::Progressing {
        let requeue = progress(&mut p);
        if p.st.phase == PlanPhase::Progressing || p.st.phase == PlanPhase::Succeeded {
            return p.done(requeue);
        }
    }
    roll_back(p)
}

/// Pending: validate, then start (or say why not).
fn start(p: &mut Planner<'_>) {
    let mut problems = validate(p.spec, &p.obs.templates);
    for (i, s) in p.spec.services.iter().enumerate() {
        if !s.rollout.trim().is_empty() && p.obs.members.get(i).is_none_or(Option::is_none) {
            problems.push(Invalid {
                field: format!("spec.services[{i}].rollout"),
                reason: format!(
                    "Rollout `{}` (or the Deployment it references) does not exist in this namespace",
                    s.rollout
                ),
            });
        }
    }
    if !problems.is_empty() {
        let message = validate::message(&problems);
        if p.st.message.as_deref() != Some(message.as_str()) {
            p.event(EventType::Warning, "InvalidSpec", message.clone());
        }
        p.st.message = Some(message.clone());
        p.condition("InvalidSpec", true, "InvalidSpec", message);
        return;
    }
    p.condition("InvalidSpec", false, "Valid", String::new());
    p.st.phase = PlanPhase::Progressing;
    p.st.spec_hash = Some(p.obs.spec_hash.clone());
    p.st.current_index = Some(0);
    p.st.message = None;
    p.st.services = p
        .spec
        .services
        .iter()
        .map(|s| MemberStatus {
            rollout: s.rollout.clone(),
            ..Default::default()
        })
        .collect();
    let order = p
        .spec
        .services
        .iter()
        .map(|s| s.rollout.as_str())
        .collect::<Vec<_>>()
        .join(" → ");
    p.event(EventType::Normal, "PlanStarted", format!("releasing {order}"));
}

/// Progressing: advance as far as the observations allow. Returns the requeue; may switch the
/// phase to RollingBack (a member failed) or Succeeded.
fn progress(p: &mut Planner<'_>) -> Option<Duration> {
    // Immutable once started: a changed spec holds the next starts (what is in flight goes on,
    // and failures still roll back) until the spec is reverted or the plan deleted.
    let changed = p.st.spec_hash.as_deref() != Some(p.obs.spec_hash.as_str());
    let was_refused =
        p.st.conditions
            .iter()
            .any(|c| c.type_ == "SpecRefused" && c.status == "True");
    if changed {
        let message = "the spec changed after the plan started; a ReleasePlan is immutable once \
                       Progressing: revert the change, or delete the plan and create a new one"
            .to_owned();
        if !was_refused {
            p.event(EventType::Warning, "SpecRefused", message.clone());
        }
        p.condition("SpecRefused", true, "Immutable", message);
    } else if was_refused {
        p.condition("SpecRefused", false, "Unchanged", String::new());
    }
    let n = p.st.services.len();
    let mut i = p.st.current_index.unwrap_or(0) as usize;
    while i < n {
        p.st.current_index = Some(i as u32);
        let name = p.name(i);
        let Some(m) = p.member(i).cloned() else {
            if p.st.services[i].phase == MemberPhase::Pending && changed {
                return Some(POLL);
            }
            p.fail_member(i, format!("Rollout {name} or its Deployment disappeared"));
            return None;
        };
        match p.st.services[i].phase {
            MemberPhase::Promoted => {}
            MemberPhase::Pending => {
                if changed {
                    p.st.message = Some(format!("{name} not started: the spec change is refused"));
                    return Some(POLL);
                }
                if let Some(r) = &m.pending_request {
                    p.st.message = Some(format!("waiting for {name}'s Rollout to handle `{r}`"));
                    return Some(POLL);
                }
                let stable = match (&m.stable_revision, m.phase) {
                    (Some(s), Phase::Healthy) => s.clone(),
                    _ => {
                        p.st.message = Some(format!(
                            "waiting for {name}'s Rollout to be Healthy (it is {:?})",
                            m.phase
                        ));
                        return Some(POLL);
                    }
                };
                let now = p.now();
                let member = &mut p.st.services[i];
                member.from_revision = Some(stable.clone());
                member.from_release = m.revision;
                member.started_at = Some(now.clone());
                if m.at_target && m.template_hash == stable {
                    member.phase = MemberPhase::Promoted;
                    member.to_revision = Some(stable.clone());
                    member.finished_at = Some(now);
                    member.message = Some("already at the plan's version: nothing to release".into());
                    p.event(
                        EventType::Normal,
                        "MemberSkipped",
                        format!("{name} already runs the plan's version (revision {stable})"),
                    );
                } else {
                    member.phase = MemberPhase::Releasing;
                    member.message = None;
                    p.actions.push(Action::Apply { index: i });
                    p.st.message = Some(format!("releasing {name}"));
                    p.event(
                        EventType::Normal,
                        "MemberReleasing",
                        format!("releasing {name} (service {} of {n}); stable was {stable}", i + 1),
                    );
                    return Some(POLL);
                }
            }
            MemberPhase::Releasing => {
                let to = match p.st.services[i].to_revision.clone() {
                    Some(to) => to,
                    None if m.at_target => {
                        // The template change landed: that is the revision the Rollout releases.
                        p.st.services[i].to_revision = Some(m.template_hash.clone());
                        m.template_hash.clone()
                    }
                    None => {
                        // The change did not land (a conflict, a crash before it): again.
                        p.actions.push(Action::Apply { index: i });
                        return Some(POLL);
                    }
                };
                if m.template_hash != to {
                    p.fail_member(
                        i,
                        format!(
                            "its Deployment's template changed outside the plan ({} instead of {to})",
                            m.template_hash
                        ),
                    );
                    return None;
                }
                if m.aborted_revision.as_deref() == Some(to.as_str()) && m.phase == Phase::Degraded {
                    let why = m.abort_reason.clone().unwrap_or_else(|| "aborted".into());
                    p.fail_member(i, format!("revision {to} aborted: {why}"));
                    return None;
                }
                if m.healthy_at(&to) {
                    let now = p.now();
                    let member = &mut p.st.services[i];
                    member.phase = MemberPhase::Promoted;
                    member.finished_at = Some(now);
                    p.event(
                        EventType::Normal,
                        "MemberPromoted",
                        format!("{name} promoted to revision {to}"),
                    );
                } else {
                    p.st.message = Some(format!("{name}'s Rollout releases {to} ({:?})", m.phase));
                    return Some(POLL);
                }
            }
            // Not reached while Progressing.
            MemberPhase::Aborted | MemberPhase::RolledBack => {}
        }
        i += 1;
    }
    p.st.phase = PlanPhase::Succeeded;
    p.st.current_index = None;
    p.st.message = Some(format!("{n} service(s) released"));
    p.condition(
        "Progressing",
        false,
        "Succeeded",
        format!("{n} service(s) promoted"),
    );
    p.event(
        EventType::Normal,
        "PlanSucceeded",
        format!("all {n} service(s) promoted"),
    );
    p.actions.push(Action::Outcome("Succeeded"));
    None
}

enum Undo {
    Done,
    Waiting(String),
    /// Could not be rolled back (why).
    Stuck(String),
}

/// RollingBack: the failed member first (its template back to `fromRevision`), then the members
/// this plan promoted, last first, one at a time.
fn roll_back(mut p: Planner<'_>) -> Decision {
    let n = p.st.services.len();
    let order: Vec<usize> = (0..n)
        .filter(|i| p.st.services[*i].phase == MemberPhase::Aborted)
        .chain(
            (0..n)
                .rev()
                .filter(|i| p.st.services[*i].phase == MemberPhase::Promoted),
        )
        .collect();
    for i in order {
        if p.st.services[i].rolled_back_at.is_some() || is_stuck(&p.st.services[i]) {
            continue;
        }
        // A member skipped as already at the plan's version has nothing to undo.
        let m = &p.st.services[i];
        if m.phase == MemberPhase::Promoted && m.from_revision == m.to_revision {
            let now = p.now();
            let m = &mut p.st.services[i];
            m.rolled_back_at = Some(now);
            m.message = Some("was already at the plan's version: nothing to roll back".into());
            continue;
        }
        p.st.current_index = Some(i as u32);
        match undo_member(&mut p, i) {
            Undo::Done => {
                let now = p.now();
                let name = p.name(i);
                let m = &mut p.st.services[i];
                m.rolled_back_at = Some(now);
                let from = m.from_revision.clone().unwrap_or_default();
                let promoted = m.phase == MemberPhase::Promoted;
                if promoted {
                    m.phase = MemberPhase::RolledBack;
                    m.message = Some(format!("rolled back to {from}"));
                } else {
                    let why = m.message.clone().unwrap_or_default();
                    m.message = Some(format!("{why}; template restored to {from}"));
                }
                p.event(
                    EventType::Normal,
                    if promoted {
                        "MemberRolledBack"
                    } else {
                        "MemberRestored"
                    },
                    format!("{name} is back on revision {from}"),
                );
            }
            Undo::Waiting(message) => {
                // Why it rolls back stays in view.
                let cause =
                    p.st.services
                        .iter()
                        .find(|m| m.phase == MemberPhase::Aborted)
                        .map(|m| {
                            format!(
                                "{} failed: {}; ",
                                m.rollout,
                                m.message.clone().unwrap_or_default()
                            )
                        })
                        .unwrap_or_default();
                p.st.message = Some(format!("{cause}{message}"));
                return p.done(Some(POLL));
            }
            Undo::Stuck(why) => {
                // Nothing more will happen to it; the members after it are still rolled back.
                let name = p.name(i);
                p.st.services[i].message = Some(format!("{STUCK_MARK}{why}"));
                p.event(
                    EventType::Warning,
                    "MemberNotRolledBack",
                    format!("{name}: {why}"),
                );
            }
        }
    }
    p.st.current_index = None;
    let rolled_back: Vec<String> =
        p.st.services
            .iter()
            .filter(|m| m.phase == MemberPhase::RolledBack)
            .map(|m| m.rollout.clone())
            .collect();
    let failed: Vec<String> =
        p.st.services
            .iter()
            .filter(|m| m.phase == MemberPhase::Aborted)
            .map(|m| m.rollout.clone())
            .collect();
    let stuck: Vec<String> =
        p.st.services
            .iter()
            .filter(|m| is_stuck(m))
            .map(|m| format!("{}: {}", m.rollout, m.message.clone().unwrap_or_default()))
            .collect();
    if stuck.is_empty() {
        p.st.phase = PlanPhase::RolledBack;
        let message = format!(
            "{} failed; rolled back: {}",
            failed.join(", "),
            if rolled_back.is_empty() {
                "none (nothing was promoted)".to_owned()
            } else {
                rolled_back.join(", ")
            }
        );
        p.st.message = Some(message.clone());
        p.condition("Progressing", false, "RolledBack", message.clone());
        p.event(EventType::Warning, "PlanRolledBack", message);
        p.actions.push(Action::Outcome("RolledBack"));
    } else {
        p.st.phase = PlanPhase::Failed;
        let message = format!("rollback incomplete: {}", stuck.join("; "));
        p.st.message = Some(message.clone());
        p.condition("Progressing", false, "RollbackFailed", message.clone());
        p.event(EventType::Warning, "PlanFailed", message);
        p.actions.push(Action::Outcome("Failed"));
    }
    p.done(None)
}

const STUCK_MARK: &str = "not rolled back: ";

fn is_stuck(m: &MemberStatus) -> bool {
    m.rolled_back_at.is_none()
        && matches!(m.phase, MemberPhase::Aborted | MemberPhase::Promoted)
        && m.message.as_deref().is_some_and(|s| s.starts_with(STUCK_MARK))
}

/// One step of bringing member `i` back to its `fromRevision`.
fn undo_member(p: &mut Planner<'_>, i: usize) -> Undo {
    let name = p.name(i);
    let status = p.st.services[i].clone();
    let Some(m) = p.member(i).cloned() else {
        return Undo::Stuck(format!("Rollout {name} or its Deployment disappeared"));
    };
    let Some(from) = status.from_revision.clone() else {
        // Never started (its template was not changed).
        return Undo::Done;
    };
    if m.template_hash == from {
        if m.healthy_at(&from) {
            return Undo::Done;
        }
        if let Some(r) = &m.pending_request {
            return Undo::Waiting(format!("rolling back {name}: its Rollout handles `{r}`"));
        }
        // The undo's canary: promote it at once instead of walking the steps.
        if m.canary_revision.as_deref() == Some(from.as_str())
            && matches!(m.phase, Phase::Progressing | Phase::Paused)
            && !status.promote_requested
        {
            p.actions.push(Action::Request {
                index: i,
                request: "promote-full".into(),
            });
            p.st.services[i].promote_requested = true;
            return Undo::Waiting(format!("rolling back {name}: promoting {from} again"));
        }
        if m.phase == Phase::Degraded && m.aborted_revision.as_deref() == Some(from.as_str()) {
            return Undo::Stuck(format!(
                "the rollback to {from} was aborted: {}",
                m.abort_reason.unwrap_or_default()
            ));
        }
        return Undo::Waiting(format!(
            "rolling back {name}: its Rollout is {:?}, waiting for {from} to be stable",
            m.phase
        ));
    }
    let ours = status
        .to_revision
        .as_deref()
        .is_none_or(|to| to == m.template_hash);
    if !ours {
        return Undo::Stuck(format!(
            "its template changed outside the plan (now {}); left alone",
            m.template_hash
        ));
    }
    if let Some(r) = &m.pending_request {
        return Undo::Waiting(format!("rolling back {name}: its Rollout handles `{r}`"));
    }
    if status.undo_requested {
        return Undo::Stuck(format!(
            "`undo` did not change the template back to {from} (see the Rollout's events)"
        ));
    }
    let Some(release) = status.from_release else {
        return Undo::Stuck(format!("the release number of {from} is unknown: cannot undo"));
    };
    p.actions.push(Action::Request {
        index: i,
        request: format!("undo:{release}"),
    });
    p.st.services[i].undo_requested = true;
    p.event(
        EventType::Normal,
        "MemberUndo",
        format!("{name}: undo to release {release} (revision {from})"),
    );
    Undo::Waiting(format!("rolling back {name} to {from}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{AnalysisRef, PlanEnvVar, PrometheusProvider, Provider, TemplateRef};

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn service(rollout: &str, version: &str) -> PlanService {
        PlanService {
            rollout: rollout.into(),
            image: None,
            env: vec![PlanEnvVar {
                name: "VERSION".into(),
                value: version.into(),
            }],
        }
    }

    fn spec() -> ReleasePlanSpec {
        ReleasePlanSpec {
            services: vec![service("ledger", "v2"), service("front", "v2")],
            analysis: None,
        }
    }

    fn healthy(stable: &str, revision: i64) -> Member {
        Member {
            phase: Phase::Healthy,
            stable_revision: Some(stable.into()),
            revision: Some(revision),
            template_hash: stable.into(),
            ..Default::default()
        }
    }

    fn obs(now: i64, members: Vec<Member>) -> Observed {
        Observed {
            now: t(now),
            spec_hash: "spec1".into(),
            members: members.into_iter().map(Some).collect(),
            templates: BTreeMap::new(),
        }
    }

    /// The Deployment carries the plan's template (hash `to`), the Rollout not yet promoted it.
    fn releasing(from: &str, revision: i64, to: &str) -> Member {
        Member {
            phase: Phase::Progressing,
            canary_revision: Some(to.into()),
            template_hash: to.into(),
            at_target: true,
            ..healthy(from, revision)
        }
    }

    fn promoted(to: &str, revision: i64) -> Member {
        Member {
            at_target: true,
            ..healthy(to, revision)
        }
    }

    fn aborted(from: &str, revision: i64, to: &str, why: &str) -> Member {
        Member {
            phase: Phase::Degraded,
            aborted_revision: Some(to.into()),
            abort_reason: Some(why.into()),
            ..releasing(from, revision, to)
        }
    }

    fn reasons(d: &Decision) -> Vec<&'static str> {
        d.actions
            .iter()
            .filter_map(|a| match a {
                Action::Event { reason, .. } => Some(*reason),
                _ => None,
            })
            .collect()
    }

    fn requests(d: &Decision) -> Vec<(usize, String)> {
        d.actions
            .iter()
            .filter_map(|a| match a {
                Action::Request { index, request } => Some((*index, request.clone())),
                _ => None,
            })
            .collect()
    }

    fn applies(d: &Decision) -> Vec<usize> {
        d.actions
            .iter()
            .filter_map(|a| match a {
                Action::Apply { index } => Some(*index),
                _ => None,
            })
            .collect()
    }

    /// Drives the plan to "ledger promoted, front releasing" and returns that status.
    fn ledger_promoted_front_releasing() -> ReleasePlanStatus {
        let s = spec();
        let d = decide(
            &s,
            &Default::default(),
            &obs(0, vec![healthy("l1", 1), healthy("f1", 4)]),
        );
        let d = decide(&s, &d.status, &obs(5, vec![promoted("l2", 2), healthy("f1", 4)]));
        assert_eq!(d.status.services[1].phase, MemberPhase::Releasing);
        let d = decide(
            &s,
            &d.status,
            &obs(6, vec![promoted("l2", 2), releasing("f1", 4, "f2")]),
        );
        assert_eq!(d.status.services[1].to_revision.as_deref(), Some("f2"));
        d.status
    }

    #[test]
    fn members_are_released_in_order_each_after_the_previous_is_promoted() {
        let s = spec();
        let d = decide(
            &s,
            &Default::default(),
            &obs(0, vec![healthy("l1", 1), healthy("f1", 4)]),
        );
        assert_eq!(d.status.phase, PlanPhase::Progressing);
        assert_eq!(applies(&d), vec![0], "only the first member starts");
        assert_eq!(reasons(&d), vec!["PlanStarted", "MemberReleasing"]);
        let ledger = &d.status.services[0];
        assert_eq!(
            (ledger.phase, ledger.from_revision.as_deref(), ledger.from_release),
            (MemberPhase::Releasing, Some("l1"), Some(1))
        );
        assert_eq!(d.status.services[1].phase, MemberPhase::Pending);

        // The change landed: its hash is recorded; front still waits while ledger's canary runs.
        let d = decide(
            &s,
            &d.status,
            &obs(1, vec![releasing("l1", 1, "l2"), healthy("f1", 4)]),
        );
        assert_eq!(d.status.services[0].to_revision.as_deref(), Some("l2"));
        assert!(applies(&d).is_empty(), "front waits for ledger");
        assert_eq!(d.status.services[1].phase, MemberPhase::Pending);
        assert_eq!(d.requeue, Some(POLL));

        // Ledger promoted: front starts in the same pass.
        let d = decide(&s, &d.status, &obs(9, vec![promoted("l2", 2), healthy("f1", 4)]));
        assert_eq!(d.status.services[0].phase, MemberPhase::Promoted);
        assert_eq!(
            d.status.services[0].finished_at,
            Some(analysis::format_time(t(9)))
        );
        assert_eq!(applies(&d), vec![1]);
        assert_eq!(d.status.current_index, Some(1));
        assert_eq!(d.status.services[1].started_at, Some(analysis::format_time(t(9))));

        let d = decide(
            &s,
            &d.status,
            &obs(10, vec![promoted("l2", 2), releasing("f1", 4, "f2")]),
        );
        let d = decide(
            &s,
            &d.status,
            &obs(20, vec![promoted("l2", 2), promoted("f2", 5)]),
        );
        assert_eq!(d.status.phase, PlanPhase::Succeeded);
        assert_eq!(reasons(&d), vec!["MemberPromoted", "PlanSucceeded"]);
        assert!(d.actions.contains(&Action::Outcome("Succeeded")));
        assert_eq!(d.requeue, None);
        // Terminal: nothing more happens.
        let again = decide(&s, &d.status, &obs(30, vec![healthy("l1", 3), healthy("f1", 6)]));
        assert_eq!(again.status, d.status);
        assert!(again.actions.is_empty());
    }

    #[test]
    fn a_member_that_is_not_healthy_is_waited_for_and_a_lost_apply_is_repeated() {
        let s = spec();
        let busy = Member {
            phase: Phase::Paused,
            ..healthy("l1", 1)
        };
        let d = decide(&s, &Default::default(), &obs(0, vec![busy, healthy("f1", 4)]));
        assert_eq!(d.status.phase, PlanPhase::Progressing);
        assert!(applies(&d).is_empty());
        assert!(d.status.message.unwrap().contains("Healthy"));
        let d = decide(
            &s,
            &Default::default(),
            &obs(0, vec![healthy("l1", 1), healthy("f1", 4)]),
        );
        // The template did not change (the patch failed): apply again.
        let d = decide(&s, &d.status, &obs(1, vec![healthy("l1", 1), healthy("f1", 4)]));
        assert_eq!(applies(&d), vec![0]);
        assert_eq!(d.status.services[0].to_revision, None);
    }

    #[test]
    fn a_member_already_at_its_target_is_skipped_as_promoted() {
        let s = spec();
        let at_target = Member {
            at_target: true,
            ..healthy("l1", 1)
        };
        let d = decide(
            &s,
            &Default::default(),
            &obs(0, vec![at_target, healthy("f1", 4)]),
        );
        let ledger = &d.status.services[0];
        assert_eq!(ledger.phase, MemberPhase::Promoted);
        assert_eq!(
            (ledger.from_revision.as_deref(), ledger.to_revision.as_deref()),
            (Some("l1"), Some("l1"))
        );
        assert_eq!(applies(&d), vec![1], "front starts at once");
        assert_eq!(
            reasons(&d),
            vec!["PlanStarted", "MemberSkipped", "MemberReleasing"]
        );
    }

    #[test]
    fn abort_of_the_second_member_rolls_back_the_first() {
        let s = spec();
        let st = ledger_promoted_front_releasing();
        let why = "canary pods not ready within the progress deadline";
        let d = decide(
            &s,
            &st,
            &obs(30, vec![promoted("l2", 2), aborted("f1", 4, "f2", why)]),
        );
        assert_eq!(d.status.phase, PlanPhase::RollingBack);
        assert_eq!(d.status.services[1].phase, MemberPhase::Aborted);
        assert!(d.status.services[1].message.as_deref().unwrap().contains(why));
        // First the failed member's own template back (its Rollout already dropped the canary).
        assert_eq!(requests(&d), vec![(1, "undo:4".into())]);
        assert_eq!(reasons(&d), vec!["MemberAborted", "MemberUndo"]);
        // The Rollout has not handled it yet: nothing else.
        let pending = Member {
            pending_request: Some("undo:4".into()),
            ..aborted("f1", 4, "f2", why)
        };
        let d = decide(&s, &d.status, &obs(31, vec![promoted("l2", 2), pending]));
        assert!(requests(&d).is_empty());
        // front is back on f1 (an aborted canary's undo is immediate): now ledger, undo:1.
        let d = decide(&s, &d.status, &obs(32, vec![promoted("l2", 2), healthy("f1", 4)]));
        assert!(d.status.services[1].rolled_back_at.is_some());
        assert_eq!(d.status.services[1].phase, MemberPhase::Aborted);
        assert_eq!(requests(&d), vec![(0, "undo:1".into())]);
        assert_eq!(d.status.current_index, Some(0));
        // The undo's canary runs: promote it fully, no steps.
        let undo_canary = Member {
            phase: Phase::Progressing,
            canary_revision: Some("l1".into()),
            template_hash: "l1".into(),
            ..healthy("l2", 3)
        };
        let d = decide(
            &s,
            &d.status,
            &obs(33, vec![undo_canary.clone(), healthy("f1", 4)]),
        );
        assert_eq!(requests(&d), vec![(0, "promote-full".into())]);
        assert_eq!(d.status.phase, PlanPhase::RollingBack);
        let promoting = Member {
            phase: Phase::Promoting,
            ..undo_canary.clone()
        };
        // Asked once: a refused promote-full (a freeze window) is not repeated every poll.
        let d = decide(&s, &d.status, &obs(34, vec![undo_canary, healthy("f1", 4)]));
        assert!(requests(&d).is_empty(), "promote-full asked once");
        let d = decide(&s, &d.status, &obs(34, vec![promoting, healthy("f1", 4)]));
        assert!(requests(&d).is_empty(), "promotion in progress: wait");
        let d = decide(&s, &d.status, &obs(40, vec![healthy("l1", 3), healthy("f1", 4)]));
        assert_eq!(d.status.phase, PlanPhase::RolledBack);
        assert_eq!(d.status.services[0].phase, MemberPhase::RolledBack);
        assert!(reasons(&d).contains(&"PlanRolledBack"));
        assert!(d.actions.contains(&Action::Outcome("RolledBack")));
        assert!(
            d.status
                .message
                .unwrap()
                .contains("front failed; rolled back: ledger")
        );
    }

    #[test]
    fn promoted_members_are_rolled_back_last_first_one_at_a_time() {
        let s = ReleasePlanSpec {
            services: vec![service("a", "v2"), service("b", "v2"), service("c", "v2")],
            analysis: None,
        };
        let mut st = decide(
            &s,
            &Default::default(),
            &obs(0, vec![healthy("a1", 1), healthy("b1", 1), healthy("c1", 1)]),
        )
        .status;
        st = decide(
            &s,
            &st,
            &obs(1, vec![promoted("a2", 2), healthy("b1", 1), healthy("c1", 1)]),
        )
        .status;
        st = decide(
            &s,
            &st,
            &obs(2, vec![promoted("a2", 2), promoted("b2", 2), healthy("c1", 1)]),
        )
        .status;
        st = decide(
            &s,
            &st,
            &obs(
                3,
                vec![promoted("a2", 2), promoted("b2", 2), releasing("c1", 1, "c2")],
            ),
        )
        .status;
        let d = decide(
            &s,
            &st,
            &obs(
                4,
                vec![promoted("a2", 2), promoted("b2", 2), aborted("c1", 1, "c2", "x")],
            ),
        );
        assert_eq!(requests(&d), vec![(2, "undo:1".into())]);
        let d = decide(
            &s,
            &d.status,
            &obs(5, vec![promoted("a2", 2), promoted("b2", 2), healthy("c1", 1)]),
        );
        assert_eq!(requests(&d), vec![(1, "undo:1".into())], "b before a");
        let d = decide(
            &s,
            &d.status,
            &obs(6, vec![promoted("a2", 2), healthy("b1", 3), healthy("c1", 1)]),
        );
        assert_eq!(requests(&d), vec![(0, "undo:1".into())]);
        assert_eq!(d.status.services[1].phase, MemberPhase::RolledBack);
        assert_eq!(d.status.services[0].phase, MemberPhase::Promoted, "a still to do");
    }

    #[test]
    fn a_failing_shared_analysis_aborts_the_member_in_flight_and_rolls_back() {
        let mut s = spec();
        s.analysis = Some(AnalysisRef {
            templates: vec![TemplateRef {
                template_name: "payment-success".into(),
            }],
            inline: None,
        });
        let templates = BTreeMap::from([(
            "payment-success".to_owned(),
            AnalysisTemplateSpec {
                metrics: vec![Metric {
                    name: "success-rate".into(),
                    provider: Provider {
                        prometheus: Some(PrometheusProvider {
                            address: Some("http://prometheus:9090".into()),
                            query: "up".into(),
                            min: Some(0.99),
                            max: None,
                        }),
                        ..Default::default()
                    },
                    ..Default::default()
                }],
            },
        )]);
        let mut o = obs(0, vec![healthy("l1", 1), healthy("f1", 4)]);
        o.templates = templates.clone();
        let d = decide(&s, &Default::default(), &o);
        assert_eq!(d.status.phase, PlanPhase::Progressing);

        // While ledger releases l2, its Rollout runs the plan's metric too, prefixed.
        let mut plan = ReleasePlan::new("release-7", s.clone());
        plan.status = Some(d.status.clone());
        let shared = shared_metrics(&plan, "ledger", "l2", &templates);
        assert_eq!(
            shared.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
            ["plan/success-rate"]
        );
        assert!(
            shared_metrics(&plan, "front", "f2", &templates).is_empty(),
            "not in flight"
        );
        let strategy = with_shared(&CanaryStrategy::default(), shared, &templates);
        let metrics = analysis::resolve(strategy.analysis.as_ref().unwrap(), &templates);
        assert_eq!(metrics[0].name, "plan/success-rate");

        // It fails: the Rollout aborts the member, and the plan rolls back.
        let mut o = obs(1, vec![releasing("l1", 1, "l2"), healthy("f1", 4)]);
        o.templates = templates.clone();
        let d = decide(&s, &d.status, &o);
        plan.status = Some(d.status.clone());
        assert!(
            shared_metrics(&plan, "ledger", "l3", &templates).is_empty(),
            "another revision"
        );
        let why = "analysis background metric plan/success-rate is Failed (1 failed, 0 errors, 0 inconclusive of 1): 0.93";
        let mut o = obs(2, vec![aborted("l1", 1, "l2", why), healthy("f1", 4)]);
        o.templates = templates.clone();
        let d = decide(&s, &d.status, &o);
        assert_eq!(d.status.phase, PlanPhase::RollingBack);
        assert!(d.status.message.as_deref().unwrap().contains("plan/success-rate"));
        assert_eq!(requests(&d), vec![(0, "undo:1".into())]);
        plan.status = Some(d.status.clone());
        assert!(
            shared_metrics(&plan, "ledger", "l2", &templates).is_empty(),
            "rolling back"
        );
        // Nothing promoted before it: once ledger is back, the plan is rolled back.
        let mut o = obs(3, vec![healthy("l1", 1), healthy("f1", 4)]);
        o.templates = templates;
        let d = decide(&s, &d.status, &o);
        assert_eq!(d.status.phase, PlanPhase::RolledBack);
        assert_eq!(
            d.status.services[1].phase,
            MemberPhase::Pending,
            "front never started"
        );
    }

    #[test]
    fn an_undo_that_does_not_take_effect_fails_the_plan() {
        let s = spec();
        let st = ledger_promoted_front_releasing();
        let d = decide(
            &s,
            &st,
            &obs(30, vec![promoted("l2", 2), aborted("f1", 4, "f2", "x")]),
        );
        // The Rollout consumed the request without changing the template (UndoFailed).
        let d = decide(
            &s,
            &d.status,
            &obs(31, vec![promoted("l2", 2), aborted("f1", 4, "f2", "x")]),
        );
        // ledger is still rolled back; the plan ends Failed naming front.
        assert_eq!(requests(&d), vec![(0, "undo:1".into())]);
        let d = decide(
            &s,
            &d.status,
            &obs(40, vec![healthy("l1", 3), aborted("f1", 4, "f2", "x")]),
        );
        assert_eq!(d.status.phase, PlanPhase::Failed);
        assert!(
            d.status.message.as_deref().unwrap().contains("front"),
            "{:?}",
            d.status.message
        );
        assert!(d.actions.contains(&Action::Outcome("Failed")));
    }

    #[test]
    fn invalid_specs_and_missing_rollouts_keep_the_plan_pending_with_a_condition() {
        let s = ReleasePlanSpec {
            services: vec![
                PlanService {
                    rollout: "ledger".into(),
                    image: None,
                    env: vec![],
                },
                PlanService {
                    rollout: "ledger".into(),
                    image: Some("bad image".into()),
                    env: vec![PlanEnvVar {
                        name: "1X".into(),
                        value: "v".into(),
                    }],
                },
                service("", "v2"),
            ],
            analysis: Some(AnalysisRef {
                templates: vec![TemplateRef {
                    template_name: "nope".into(),
                }],
                inline: None,
            }),
        };
        let fields: Vec<String> = validate(&s, &BTreeMap::new())
            .into_iter()
            .map(|p| p.field)
            .collect();
        assert_eq!(
            fields,
            [
                "spec.services[0]",
                "spec.services[1].rollout",
                "spec.services[1].image",
                "spec.services[1].env[0].name",
                "spec.services[2].rollout",
                "spec.analysis.templates[0].templateName",
            ]
        );
        assert_eq!(
            validate(&ReleasePlanSpec::default(), &BTreeMap::new())[0].field,
            "spec.services"
        );
        let d = decide(&s, &Default::default(), &obs(0, vec![healthy("l1", 1)]));
        assert_eq!(d.status.phase, PlanPhase::Pending);
        assert!(d.actions.iter().all(|a| matches!(a, Action::Event { .. })));
        assert_eq!(reasons(&d), vec!["InvalidSpec"]);
        let c = d
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == "InvalidSpec")
            .unwrap();
        assert_eq!(c.status, "True");
        assert!(c.message.contains("spec.services[1].image"), "{}", c.message);
        // Same problems again: no second event.
        let again = decide(&s, &d.status, &obs(1, vec![healthy("l1", 1)]));
        assert!(reasons(&again).is_empty());

        // A valid spec whose second Rollout does not exist.
        let mut o = obs(0, vec![healthy("l1", 1)]);
        o.members.push(None);
        let d = decide(&spec(), &Default::default(), &o);
        assert_eq!(d.status.phase, PlanPhase::Pending);
        assert!(
            d.status
                .message
                .unwrap()
                .contains("spec.services[1].rollout: Rollout `front`"),
            "names the field"
        );
    }

    #[test]
    fn a_changed_spec_is_refused_once_progressing() {
        let s = spec();
        let d = decide(
            &s,
            &Default::default(),
            &obs(0, vec![healthy("l1", 1), healthy("f1", 4)]),
        );
        let mut o = obs(1, vec![promoted("l2", 2), healthy("f1", 4)]);
        o.spec_hash = "spec2".into();
        let d = decide(&s, &d.status, &o);
        assert_eq!(
            d.status.services[0].phase,
            MemberPhase::Promoted,
            "in flight goes on"
        );
        assert!(applies(&d).is_empty(), "front is not started with a changed spec");
        assert_eq!(reasons(&d), vec!["SpecRefused", "MemberPromoted"]);
        let c = d
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == "SpecRefused")
            .unwrap();
        assert_eq!(c.status, "True");
        // Reverted: it goes on.
        let d = decide(&s, &d.status, &obs(2, vec![promoted("l2", 2), healthy("f1", 4)]));
        assert_eq!(applies(&d), vec![1]);
    }

    #[test]
    fn version_labels_are_the_tag_or_a_short_digest_and_valid_label_values() {
        assert_eq!(
            version_label("localhost:5000/payplane/gateway:1.5.0-rc.1").as_deref(),
            Some("1.5.0-rc.1")
        );
        assert_eq!(
            version_label("r/acct@sha256:0123456789abcdef0123456789").as_deref(),
            Some("sha256-0123456789ab")
        );
        assert_eq!(version_label("registry:5000/busybox"), None);
        assert_eq!(version_label("busybox:_x+y_").as_deref(), Some("x-y"));
        let long = format!("busybox:{}", "a".repeat(100));
        assert_eq!(version_label(&long).map(|v| v.len()), Some(63));
    }

    #[test]
    fn templates_get_the_image_tag_or_reference_and_the_env() {
        assert_eq!(
            target_image("localhost/payplane/busybox:1.0", "1.1"),
            "localhost/payplane/busybox:1.1"
        );
        assert_eq!(
            target_image("registry:5000/busybox", "2"),
            "registry:5000/busybox:2"
        );
        assert_eq!(target_image("busybox@sha256:abc", "2"), "busybox:2");
        assert_eq!(target_image("busybox:1", "ghcr.io/x/y:3"), "ghcr.io/x/y:3");
        let template = serde_json::json!({"spec": {"containers": [
            {"name": "app", "image": "busybox:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {}}]},
            {"name": "side", "image": "envoy:1"},
        ]}});
        let s = PlanService {
            rollout: "x".into(),
            image: Some("2".into()),
            env: vec![
                PlanEnvVar {
                    name: "B".into(),
                    value: "b".into(),
                },
                PlanEnvVar {
                    name: "C".into(),
                    value: "c".into(),
                },
            ],
        };
        let out = target_template(&template, &s);
        assert_eq!(out["spec"]["containers"][0]["image"], "busybox:2");
        // A template that carries the version label gets the new one.
        let mut labelled = template.clone();
        labelled["metadata"] = serde_json::json!({"labels": {"app": "x", VERSION_LABEL: "1"}});
        let out_labelled = target_template(&labelled, &s);
        assert_eq!(out_labelled["metadata"]["labels"][VERSION_LABEL], "2");
        assert_eq!(out_labelled["metadata"]["labels"]["app"], "x");
        assert!(out["metadata"].is_null(), "no label added where there was none");
        assert_eq!(
            out["spec"]["containers"][0]["env"],
            serde_json::json!([{"name": "A", "value": "1"}, {"name": "B", "value": "b"}, {"name": "C", "value": "c"}])
        );
        assert_eq!(out["spec"]["containers"][1], template["spec"]["containers"][1]);
        // Applying twice changes nothing: that is how "already at the target" is seen.
        assert_eq!(target_template(&out, &s), out);
    }
}
