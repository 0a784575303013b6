//! The reconciler: reads the cluster, takes due measurements, asks [`crate::machine`] what to do,
//! writes the status (server-side apply, field manager `rollout-controller`, with the
//! resourceVersion read as a precondition so that a stale view never writes) and then executes
//! the actions. Only the leader writes.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::{
    api::{
        apps::v1::{ControllerRevision, Deployment},
        authentication::v1::SelfSubjectReview,
        core::v1::{Namespace, Pod},
    },
    apimachinery::pkg::runtime::RawExtension,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    runtime::{
        Controller,
        controller::{Action, Config as ControllerConfig},
        events::{Event as KubeEvent, EventType as KubeEventType, Recorder, Reporter},
        finalizer::{Event as FinalizerEvent, finalizer},
        watcher,
    },
};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use payplane_delivery::ReleaseEvent;

use crate::{
    analysis::{self, BACKGROUND_RUN},
    audit,
    crd::{
        APPROVED_BY_ANNOTATION, APPROVER_GROUPS_ANNOTATION, AnalysisPhase, AnalysisTemplate,
        AnalysisTemplateSpec, CanaryStrategy, FINALIZER, FREEZE_OVERRIDE_ANNOTATION,
        FREEZE_OVERRIDE_BY_ANNOTATION, FreezePolicy, FreezePolicyStatus, GOVERNANCE_ENFORCED,
        GOVERNANCE_LABEL, MetricStatus, NextFreeze, RELEASE_PLAN_ANNOTATION, RELEASED_BY_ANNOTATION,
        REQUEST_ANNOTATION, REQUESTED_BY_ANNOTATION, REVISION_HASH_ANNOTATION, ROLLOUT_LABEL, ReleasePlan,
        Rollout, RolloutSpec, RolloutStatus, TRACK_LABEL,
    },
    freeze,
    lease::Leadership,
    machine::{self, Action as Step, Approval, EventType, Freeze, Observed, OverrideRequest, Request},
    metrics::{ControllerMetrics, ErrorLabels, OutcomeLabels, StepLabels},
    plan_machine,
    providers::{Providers, Target},
    validate,
};

pub const FIELD_MANAGER: &str = "rollout-controller";
/// Resync of a Rollout with nothing scheduled: catches changes the watches missed.
const RESYNC: Duration = Duration::from_secs(300);
const INVALID_RECHECK: Duration = Duration::from_secs(60);
const NOT_LEADER_RECHECK: Duration = Duration::from_secs(5);
const DEFAULT_HISTORY: u32 = 10;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("{0}")]
    Invariant(String),
}

impl Error {
    pub fn metric_label(&self) -> String {
        match self {
            Error::Kube(kube::Error::Api(s)) => format!("api_{}", s.code),
            Error::Kube(_) => "kube".into(),
            Error::Finalizer(_) => "finalizer".into(),
            Error::Invariant(_) => "invariant".into(),
        }
    }
}

pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub leadership: Leadership,
    pub providers: Providers,
    pub metrics: ControllerMetrics,
    /// Where release outcomes go as CDEvents (None: not configured).
    pub cdevents: Option<crate::cdevents::Sink>,
    /// This controller's own user name, as the apiserver authenticates it (SelfSubjectReview):
    /// it stamps `payplane.io/released-by` on the template changes it makes itself.
    identity: tokio::sync::OnceCell<String>,
    /// Watch-fed caches of templates, FreezePolicies and namespaces, once `run` started them
    /// (before that, and for callers that do not run the controller, reads go to the apiserver).
    caches: std::sync::OnceLock<crate::cache::Caches>,
}

impl Context {
    pub fn new(
        client: Client,
        leadership: Leadership,
        metrics: ControllerMetrics,
        instance: Option<String>,
        cdevents: Option<crate::cdevents::Sink>,
    ) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.into(),
                instance,
            },
        );
        Self {
            providers: Providers::new(client.clone()),
            client,
            recorder,
            leadership,
            metrics,
            cdevents,
            identity: tokio::sync::OnceCell::new(),
            caches: std::sync::OnceLock::new(),
        }
    }

    /// The controller's user name, asked once.
    pub async fn identity(&self) -> Result<String, Error> {
        self.identity
            .get_or_try_init(|| async {
                let review = Api::<SelfSubjectReview>::all(self.client.clone())
                    .create(&PostParams::default(), &SelfSubjectReview::default())
                    .await?;
                review
                    .status
                    .and_then(|s| s.user_info)
                    .and_then(|u| u.username)
                    .ok_or_else(|| Error::Invariant("SelfSubjectReview without a user name".into()))
            })
            .await
            .cloned()
    }
}

/// Runs the controller until `stop`: over all namespaces, or one (`namespace`, tests); and the
/// FreezePolicies' status (those matching `policy_selector`, a label selector; None: all).
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    policy_selector: Option<String>,
    rollout_selector: Option<String>,
    stop: CancellationToken,
) {
    let (caches, feed) = crate::cache::Caches::start(&ctx.client, namespace.as_deref());
    let feeding = tokio::spawn(feed);
    if caches.ready(Duration::from_secs(30)).await {
        let _ = ctx.caches.set(caches);
    } else {
        tracing::warn!(
            "the caches of AnalysisTemplates, FreezePolicies and namespaces did not fill in 30 s \
             (CRDs installed? RBAC to list and watch them?): reading them from the apiserver instead"
        );
        feeding.abort();
    }
    let policies = run_freeze_policies(ctx.clone(), policy_selector, stop.clone());
    let client = ctx.client.clone();
    let (rollouts, deployments) = match &namespace {
        Some(ns) => (
            Api::<Rollout>::namespaced(client.clone(), ns),
            Api::<Deployment>::namespaced(client.clone(), ns),
        ),
        None => (
            Api::<Rollout>::all(client.clone()),
            Api::<Deployment>::all(client.clone()),
        ),
    };
    let mut rollout_config = watcher::Config::default().any_semantic();
    if let Some(s) = &rollout_selector {
        rollout_config = rollout_config.labels(s);
    }
    let rollouts = Controller::new(rollouts, rollout_config)
        // Both the referenced Deployment and the canary carry the `payplane.io/rollout`
        // annotation (set by this controller): one watch maps either back to its Rollout.
        .watches(deployments, watcher::Config::default(), |d: Deployment| {
            d.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("payplane.io/rollout"))
                .map(|name| {
                    kube::runtime::reflector::ObjectRef::new(name).within(&d.namespace().unwrap_or_default())
                })
        })
        .with_config(
            ControllerConfig::default()
                .concurrency(8)
                .debounce(Duration::from_millis(200)),
        )
        .graceful_shutdown_on(async move { stop.cancelled().await })
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "reconcile failed");
            }
        });
    futures::join!(rollouts, policies);
    feeding.abort();
}

/// Keeps each FreezePolicy's `Valid` condition: the problems of its windows, by field.
async fn run_freeze_policies(ctx: Arc<Context>, selector: Option<String>, stop: CancellationToken) {
    let mut config = watcher::Config::default().any_semantic();
    if let Some(s) = &selector {
        config = config.labels(s);
    }
    Controller::new(Api::<FreezePolicy>::all(ctx.client.clone()), config)
        .graceful_shutdown_on(async move { stop.cancelled().await })
        .run(reconcile_policy, policy_error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "FreezePolicy reconcile failed");
            }
        })
        .await;
}

fn policy_error_policy(_policy: Arc<FreezePolicy>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .reconcile_errors
        .get_or_create(&ErrorLabels {
            error: error.metric_label(),
        })
        .inc();
    tracing::warn!(error = %error, "FreezePolicy status not written; retrying");
    Action::requeue(Duration::from_secs(10))
}

async fn reconcile_policy(policy: Arc<FreezePolicy>, ctx: Arc<Context>) -> Result<Action, Error> {
    if !ctx.leadership.is_leader() {
        return Ok(Action::requeue(NOT_LEADER_RECHECK));
    }
    let status = freeze_policy_status(&policy, Utc::now());
    if policy.status.as_ref() != Some(&status) {
        let body = json!({
            "apiVersion": "payplane.io/v1alpha1",
            "kind": "FreezePolicy",
            "metadata": { "name": policy.name_any() },
            "status": status,
        });
        Api::<FreezePolicy>::all(ctx.client.clone())
            .patch_status(
                &policy.name_any(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(body),
            )
            .await?;
    }
    Ok(Action::await_change())
}

/// The status a FreezePolicy should have: `Valid` True, or False naming the fields.
pub fn freeze_policy_status(policy: &FreezePolicy, now: chrono::DateTime<Utc>) -> FreezePolicyStatus {
    let mut status = policy.status.clone().unwrap_or_default();
    let (_, problems) = freeze::parse(&policy.spec.windows, "spec.windows", "");
    let (valid, reason, message) = if problems.is_empty() {
        (true, "Valid", format!("{} window(s)", policy.spec.windows.len()))
    } else {
        (
            false,
            "InvalidWindows",
            format!(
                "{}; the Rollouts this policy applies to are held until it is fixed",
                validate::message(&problems)
            ),
        )
    };
    machine::set_condition(&mut status.conditions, "Valid", valid, reason, message, now);
    status.observed_generation = policy.metadata.generation;
    status
}

fn error_policy(_rollout: Arc<Rollout>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .reconcile_errors
        .get_or_create(&ErrorLabels {
            error: error.metric_label(),
        })
        .inc();
    tracing::warn!(error = %error, "reconcile failed; retrying");
    // Bounded: conflicts retry quickly, everything else after a while.
    match error {
        Error::Kube(kube::Error::Api(s)) if s.code == 409 => Action::requeue(Duration::from_millis(500)),
        _ => Action::requeue(Duration::from_secs(10)),
    }
}

#[tracing::instrument(skip_all, fields(rollout = %rollout.name_any(), namespace = rollout.namespace().unwrap_or_default()))]
pub async fn reconcile(rollout: Arc<Rollout>, ctx: Arc<Context>) -> Result<Action, Error> {
    if !ctx.leadership.is_leader() {
        return Ok(Action::requeue(NOT_LEADER_RECHECK));
    }
    let started = Instant::now();
    ctx.metrics.reconciles.inc();
    let ns = rollout.namespace().unwrap_or_default();
    let api: Api<Rollout> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&api, FINALIZER, rollout, |event| async {
        match event {
            FinalizerEvent::Apply(r) => apply(r, &ctx).await,
            FinalizerEvent::Cleanup(r) => cleanup(r, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    result
}

/// Pod-template hash: the first 10 hex digits of the SHA-256 of the template's JSON.
pub fn template_hash(template: &serde_json::Value) -> String {
    let digest = Sha256::digest(serde_json::to_vec(template).unwrap_or_default());
    digest.iter().take(5).map(|b| format!("{b:02x}")).collect()
}

pub fn canary_name(deployment: &str) -> String {
    format!("{deployment}-canary")
}

async fn publish(ctx: &Context, rollout: &Rollout, type_: EventType, reason: &str, note: String) {
    publish_to(ctx, &rollout.object_ref(&()), type_, reason, note).await;
}

/// Records a Kubernetes Event about `regarding` (a Rollout, a ReleasePlan).
pub(crate) async fn publish_to(
    ctx: &Context,
    regarding: &k8s_openapi::api::core::v1::ObjectReference,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = KubeEvent {
        type_: match type_ {
            EventType::Normal => KubeEventType::Normal,
            EventType::Warning => KubeEventType::Warning,
        },
        reason: reason.to_owned(),
        note: Some(note.chars().take(1000).collect()),
        // The Recorder folds events with the same key (reason, action, ...) into one series and
        // keeps the first note; a note-derived action keeps distinct happenings apart while a true
        // repeat still counts up in its series.
        action: format!(
            "{reason}-{}",
            &template_hash(&serde_json::Value::String(note.clone()))[..8]
        ),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, regarding).await {
        tracing::warn!(error = %e, reason, "cannot publish event");
    }
}

async fn templates(ctx: &Context, ns: &str) -> Result<BTreeMap<String, AnalysisTemplateSpec>, Error> {
    let items = match ctx.caches.get() {
        Some(c) => c.templates(ns),
        None => {
            Api::<AnalysisTemplate>::namespaced(ctx.client.clone(), ns)
                .list(&ListParams::default())
                .await?
                .items
        }
    };
    Ok(items.into_iter().map(|t| (t.name_any(), t.spec)).collect())
}

/// Writes the status: SSA, forced (this controller is the only writer of status), with the
/// resourceVersion that was read as a precondition.
async fn write_status(api: &Api<Rollout>, rollout: &Rollout, status: &RolloutStatus) -> Result<(), Error> {
    let body = json!({
        "apiVersion": "payplane.io/v1alpha1",
        "kind": "Rollout",
        "metadata": { "name": rollout.name_any(), "resourceVersion": rollout.resource_version() },
        "status": status,
    });
    api.patch_status(
        &rollout.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await?;
    Ok(())
}

async fn invalid(
    ctx: &Context,
    api: &Api<Rollout>,
    rollout: &Rollout,
    message: String,
) -> Result<Action, Error> {
    let prev = rollout.status.clone().unwrap_or_default();
    // One event per distinct problem, not one per recheck.
    if prev.message.as_deref() != Some(message.as_str()) || prev.phase != crate::crd::Phase::InvalidSpec {
        publish(ctx, rollout, EventType::Warning, "InvalidSpec", message.clone()).await;
    }
    let mut status = machine::invalid(&prev, message, Utc::now());
    status.observed_generation = rollout.metadata.generation;
    if Some(&status) != rollout.status.as_ref() {
        write_status(api, rollout, &status).await?;
    }
    Ok(Action::requeue(INVALID_RECHECK))
}

async fn apply(rollout: Arc<Rollout>, ctx: &Context) -> Result<Action, Error> {
    let ns = rollout.namespace().unwrap_or_default();
    let api: Api<Rollout> = Api::namespaced(ctx.client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    let spec = &rollout.spec;

    let templates = templates(ctx, &ns).await?;
    let problems = validate::validate(spec, &templates);
    if !problems.is_empty() {
        return invalid(ctx, &api, &rollout, validate::message(&problems)).await;
    }
    let Some(deployment) = deployments.get_opt(&spec.deployment_name).await? else {
        let message = format!(
            "spec.deploymentName: Deployment `{}` does not exist in namespace {ns}",
            spec.deployment_name
        );
        return invalid(ctx, &api, &rollout, message).await;
    };
    let dspec = deployment.spec.clone();
    let template_json = serde_json::to_value(&dspec.template).map_err(|e| Error::Invariant(e.to_string()))?;
    let hash = template_hash(&template_json);
    let prev = rollout.status.clone().unwrap_or_default();

    // The one-shot request, if any.
    let raw_request = rollout.annotations().get(REQUEST_ANNOTATION).cloned();
    let request = match raw_request.as_deref().map(str::parse::<Request>) {
        None => None,
        Some(Ok(r)) => Some(r),
        Some(Err(e)) => {
            publish(ctx, &rollout, EventType::Warning, "InvalidRequest", e).await;
            clear_request(&api, &rollout, raw_request.as_deref()).await;
            None
        }
    };
    if let Some(Request::Undo(revision)) = &request {
        let namespace = match ctx.caches.get().and_then(|c| c.namespace(&ns)) {
            Some(n) => n,
            None => Api::<Namespace>::all(ctx.client.clone()).get(&ns).await?,
        };
        let enforced = namespace
            .labels()
            .get(GOVERNANCE_LABEL)
            .is_some_and(|v| v == GOVERNANCE_ENFORCED);
        let requester = audit::requester(rollout.annotations(), enforced);
        let at = Undo {
            deployments: &deployments,
            deployment: &deployment,
            status: &prev,
            current_hash: &hash,
            requester,
        };
        undo(ctx, &rollout, at, *revision).await?;
        clear_request(&api, &rollout, raw_request.as_deref()).await;
        return Ok(Action::requeue(Duration::from_millis(100)));
    }

    let governance = governance(ctx, &rollout, &ns, Utc::now()).await?;

    // The Rollout's own strategy, plus the shared analysis of a ReleasePlan releasing it.
    let strategy = strategy_with_plan(ctx, &rollout, &deployment, &hash, &templates).await?;
    let canary_deployment = deployments.get_opt(&canary_name(&spec.deployment_name)).await?;
    let mut status = prev.clone();
    let mut next_due: Option<chrono::DateTime<Utc>> = None;
    if status.canary_revision.as_deref() == Some(hash.as_str()) && !status.abort {
        next_due = measure(
            ctx,
            &rollout,
            &strategy,
            &templates,
            &mut status,
            dspec.selector.match_labels.clone().unwrap_or_default(),
        )
        .await;
    }

    let mut obs = observe(
        &deployment,
        canary_deployment.as_ref(),
        &hash,
        request.clone(),
        spec.paused,
    );
    obs.released_by = deployment.annotations().get(RELEASED_BY_ANNOTATION).cloned();
    let governance_enforced = governance.identity_enforced;
    obs.identity_enforced = governance.identity_enforced;
    obs.freeze = governance.freeze;
    obs.next_freeze = governance.next_freeze;
    obs.approval = governance.approval;
    obs.freeze_override = governance.freeze_override;
    let deadline = spec
        .progress_deadline_seconds
        .map(|s| Duration::from_secs(s.into()))
        .unwrap_or(machine::DEFAULT_PROGRESS_DEADLINE);
    let plan = machine::plan(&strategy, &status, &obs, deadline);
    let mut new_status = plan.status;
    new_status.observed_generation = rollout.metadata.generation;

    // Step durations, for the metric: a step index that moved on.
    if let (Some(before), Some(after)) = (prev.current_step_index, new_status.current_step_index)
        && after > before
        && prev.canary_revision == new_status.canary_revision
        && let Some(started) = prev.step_started_at.as_deref().and_then(analysis::parse_time)
    {
        let kind = spec
            .strategy
            .canary
            .steps
            .get(before as usize)
            .map(step_kind)
            .unwrap_or("unknown");
        let secs = (obs.now - started).num_milliseconds().max(0) as f64 / 1000.0;
        ctx.metrics
            .step_duration
            .get_or_create(&StepLabels { kind: kind.into() })
            .observe(secs);
    }

    if plan.actions.contains(&Step::SaveRevision) {
        // The release number: the ControllerRevision number this template gets (or has).
        new_status.revision = Some(release_number(ctx, &rollout, &hash).await?);
    }
    let changed = new_status != prev;
    if changed {
        // Before any side effect: if someone else (a stale view, a former leader) wrote in
        // between, this fails with 409 and nothing below runs.
        write_status(&api, &rollout, &new_status).await?;
    }
    for action in &plan.actions {
        execute(
            ctx,
            &rollout,
            &deployments,
            &deployment,
            &template_json,
            &hash,
            action,
        )
        .await?;
    }
    if changed {
        // The audit trail of the transitions this (fenced) status write committed.
        let mut transitions = audit::transitions(
            &spec.strategy.canary.steps,
            &prev,
            &new_status,
            &plan.actions,
            obs.now,
            &|run, metric| run_metric(&strategy, &templates, run, metric),
        );
        if plan.request_handled
            && let Some(who) = audit::requester(rollout.annotations(), governance_enforced)
        {
            audit::attribute_request(&mut transitions, &who);
        }
        let release = Release {
            deployment: &deployment,
            template: &template_json,
            hash: &hash,
            canary: canary_deployment.as_ref(),
        };
        record_transitions(ctx, &rollout, &release, transitions).await;
    }
    if let Some(raw) = &raw_request
        && request.is_some()
    {
        if !plan.request_handled {
            // A request that does not apply in this state (promote while healthy): say so.
            let note = format!("`{raw}` does not apply in phase {:?}", new_status.phase);
            publish(ctx, &rollout, EventType::Warning, "RequestIgnored", note).await;
        }
        clear_request(&api, &rollout, Some(raw.as_str())).await;
    }
    // Approvals and overrides are consumed once seen (recorded in the status, or refused with an
    // event): a stale one never approves a later gate or release.
    clear_annotations(
        &api,
        &rollout,
        &[
            APPROVED_BY_ANNOTATION,
            APPROVER_GROUPS_ANNOTATION,
            FREEZE_OVERRIDE_ANNOTATION,
            FREEZE_OVERRIDE_BY_ANNOTATION,
        ],
    )
    .await;

    let mut requeue = plan.requeue.unwrap_or(RESYNC);
    if let Some(due) = next_due {
        let until = (due - Utc::now()).to_std().unwrap_or(Duration::from_millis(100));
        requeue = requeue.min(until.max(Duration::from_millis(100)));
    }
    Ok(Action::requeue(requeue))
}

/// The strategy the Rollout runs for template `hash`: its own, with the shared analysis of the
/// ReleasePlan named on the Deployment (`payplane.io/release-plan`) added to the background
/// analysis while that plan releases this revision. The Rollout's spec is not changed.
async fn strategy_with_plan(
    ctx: &Context,
    rollout: &Rollout,
    deployment: &Deployment,
    hash: &str,
    templates: &BTreeMap<String, AnalysisTemplateSpec>,
) -> Result<CanaryStrategy, Error> {
    let own = &rollout.spec.strategy.canary;
    let Some(plan) = deployment.annotations().get(RELEASE_PLAN_ANNOTATION) else {
        return Ok(own.clone());
    };
    let api: Api<ReleasePlan> = Api::namespaced(ctx.client.clone(), &rollout.namespace().unwrap_or_default());
    let plan = match api.get_opt(plan).await {
        Ok(Some(plan)) => plan,
        Ok(None) => return Ok(own.clone()),
        // The ReleasePlan CRD is not installed.
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(own.clone()),
        // Not silently without the shared metrics: the run would be judged on fewer of them.
        Err(e) => return Err(e.into()),
    };
    let shared = plan_machine::shared_metrics(&plan, &rollout.name_any(), hash, templates);
    Ok(plan_machine::with_shared(own, shared, templates))
}

/// The metric `metric` of analysis run `run` (`background` or `step-<i>`), for the evidence.
fn run_metric(
    canary: &CanaryStrategy,
    templates: &BTreeMap<String, AnalysisTemplateSpec>,
    run: &str,
    metric: &str,
) -> Option<crate::crd::Metric> {
    let aref = if run == BACKGROUND_RUN {
        canary.analysis.as_ref()
    } else {
        run.strip_prefix("step-")
            .and_then(|i| i.parse::<usize>().ok())
            .and_then(|i| canary.steps.get(i))
            .and_then(|s| s.analysis.as_ref())
    }?;
    analysis::resolve(aref, templates)
        .into_iter()
        .find(|m| m.name == metric)
}

/// The number the ControllerRevision of `hash` has or gets (see [`save_revision`]).
async fn release_number(ctx: &Context, rollout: &Rollout, hash: &str) -> Result<i64, Error> {
    let existing = revisions(ctx, rollout).await?;
    let newest = existing.last();
    Ok(match newest {
        Some(r) if r.name_any() == revision_name(&rollout.name_any(), hash) => r.revision.unwrap_or(1),
        Some(r) => r.revision.unwrap_or(0) + 1,
        None => 1,
    })
}

/// What the release context of a reconcile's transitions is read from.
struct Release<'a> {
    deployment: &'a Deployment,
    template: &'a serde_json::Value,
    hash: &'a str,
    /// The canary Deployment as read before this reconcile changed it (a superseded release's
    /// template).
    canary: Option<&'a Deployment>,
}

/// Writes the transitions as ReleaseEvents, each release's numbered after the highest recorded
/// (so numbering survives restarts and leader changes). Failures are logged: the status write
/// that committed the transitions has happened, and a retry would not see them again.
async fn record_transitions(
    ctx: &Context,
    rollout: &Rollout,
    release: &Release<'_>,
    transitions: Vec<audit::Transition>,
) {
    if transitions.is_empty() {
        return;
    }
    let ns = rollout.namespace().unwrap_or_default();
    let api: Api<ReleaseEvent> = Api::namespaced(ctx.client.clone(), &ns);
    let me = ctx
        .identity()
        .await
        .unwrap_or_else(|_| payplane_delivery::event::SYSTEM_ACTOR.to_owned());
    let image_ids = canary_image_ids(ctx, &ns, release.deployment).await;
    let mut releases: Vec<(u64, String)> = Vec::new();
    for t in &transitions {
        if !releases.contains(&(t.release, t.revision.clone())) {
            releases.push((t.release, t.revision.clone()));
        }
    }
    for (number, revision) in releases {
        let template = if revision == release.hash {
            Some(release.template.clone())
        } else {
            release
                .canary
                .filter(|c| c.annotations().get(REVISION_HASH_ANNOTATION) == Some(&revision))
                .and_then(|c| serde_json::to_value(&c.spec.template).ok())
        };
        let context = audit::release_context(
            &rollout.name_any(),
            number,
            &revision,
            release.deployment.labels(),
            &release.deployment.name_any(),
            template.as_ref(),
            if revision == release.hash { &image_ids } else { &[] },
        );
        let selector = payplane_delivery::event::release_selector(&rollout.name_any(), number);
        let mut sequence = match api.list(&ListParams::default().labels(&selector)).await {
            Ok(list) => payplane_delivery::event::next_sequence(&list.items, &rollout.name_any(), number),
            Err(e) => {
                tracing::warn!(error = %e, release = number, "release events not recorded: cannot list the trail");
                continue;
            }
        };
        for t in transitions
            .iter()
            .filter(|t| t.release == number && t.revision == revision)
        {
            let mut event = context.event(
                sequence,
                t.kind,
                t.actor.clone().unwrap_or_else(|| me.clone()),
                t.time,
            );
            event.step = t.step;
            event.weight = t.weight;
            event.reason = t.reason.clone();
            event.analysis = t.analysis.clone();
            match payplane_delivery::event::record(&api, event).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(release = number, sequence, kind = %t.kind, "release event existed already")
                }
                Err(e) => {
                    tracing::warn!(error = %e, release = number, kind = %t.kind, "release event not recorded");
                    break;
                }
            }
            sequence += 1;
        }
    }
}

/// `(container, image, imageID)` of the canary pods' containers, for the images' digests.
async fn canary_image_ids(ctx: &Context, ns: &str, stable: &Deployment) -> Vec<(String, String, String)> {
    let mut labels = stable.spec.selector.match_labels.clone().unwrap_or_default();
    labels.insert(TRACK_LABEL.into(), "canary".into());
    let selector = labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let pods = match Api::<Pod>::namespaced(ctx.client.clone(), ns)
        .list(&ListParams::default().labels(&selector))
        .await
    {
        Ok(l) => l.items,
        Err(e) => {
            tracing::debug!(error = %e, "no image digests: cannot list the canary pods");
            return Vec::new();
        }
    };
    pods.iter()
        .filter_map(|p| p.status.as_ref()?.container_statuses.as_ref())
        .flatten()
        .filter(|c| !c.image_id.is_empty())
        .map(|c| (c.name.clone(), c.image.clone(), c.image_id.clone()))
        .collect()
}

/// What the governance features observe: the namespace's enforcement label, the freeze windows
/// that apply, and the approval and override annotations.
struct Governance {
    identity_enforced: bool,
    freeze: Freeze,
    next_freeze: Option<NextFreeze>,
    approval: Option<Approval>,
    freeze_override: Option<OverrideRequest>,
}

async fn governance(
    ctx: &Context,
    rollout: &Rollout,
    ns: &str,
    now: chrono::DateTime<Utc>,
) -> Result<Governance, Error> {
    let namespace = match ctx.caches.get().and_then(|c| c.namespace(ns)) {
        Some(n) => n,
        None => Api::<Namespace>::all(ctx.client.clone()).get(ns).await?,
    };
    let labels = namespace.labels();
    let identity_enforced = labels.get(GOVERNANCE_LABEL).map(String::as_str) == Some(GOVERNANCE_ENFORCED);
    let policies = match ctx.caches.get() {
        Some(c) => c.policies(),
        None => match Api::<FreezePolicy>::all(ctx.client.clone())
            .list(&ListParams::default())
            .await
        {
            Ok(list) => list.items,
            // The FreezePolicy CRD is not installed: no policies.
            Err(kube::Error::Api(s)) if s.code == 404 => Vec::new(),
            Err(e) => return Err(e.into()),
        },
    };
    let (freeze, next_freeze) = freeze_state(&rollout.spec, &policies, labels, now);
    let annotations = rollout.annotations();
    let approval = annotations.get(APPROVED_BY_ANNOTATION).map(|by| Approval {
        by: by.trim().to_owned(),
        groups: annotations
            .get(APPROVER_GROUPS_ANNOTATION)
            .map(|g| {
                g.split(',')
                    .map(str::trim)
                    .filter(|g| !g.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
    });
    let freeze_override = annotations
        .get(FREEZE_OVERRIDE_ANNOTATION)
        .map(|reason| OverrideRequest {
            reason: reason.trim().to_owned(),
            // Without the name the override is refused like one from an unenforced namespace.
            by: annotations
                .get(FREEZE_OVERRIDE_BY_ANNOTATION)
                .cloned()
                .unwrap_or_default(),
        });
    let freeze_override = match freeze_override {
        Some(o) if o.by.trim().is_empty() || o.reason.is_empty() => {
            publish(
                ctx,
                rollout,
                EventType::Warning,
                "FreezeOverrideRefused",
                format!(
                    "{FREEZE_OVERRIDE_ANNOTATION} needs a reason and {FREEZE_OVERRIDE_BY_ANNOTATION} (your user name)"
                ),
            )
            .await;
            None
        }
        o => o,
    };
    Ok(Governance {
        identity_enforced,
        freeze,
        next_freeze,
        approval,
        freeze_override,
    })
}

/// The freeze in force for a Rollout: its own windows and those of the FreezePolicies that select
/// its namespace. An invalid policy that applies fails closed.
pub fn freeze_state(
    spec: &RolloutSpec,
    policies: &[FreezePolicy],
    namespace_labels: &BTreeMap<String, String>,
    now: chrono::DateTime<Utc>,
) -> (Freeze, Option<NextFreeze>) {
    let (mut windows, _) = freeze::parse(&spec.freeze_windows, "spec.freezeWindows", "spec.freezeWindows");
    let mut problems = Vec::new();
    for policy in policies {
        let selected = policy.spec.namespace_selector.as_ref().is_none_or(|s| {
            s.match_labels
                .iter()
                .all(|(k, v)| namespace_labels.get(k) == Some(v))
        });
        if !selected {
            continue;
        }
        let source = format!("FreezePolicy/{}", policy.name_any());
        let (ws, bad) = freeze::parse(&policy.spec.windows, &format!("{source}: spec.windows"), &source);
        windows.extend(ws);
        problems.extend(bad);
    }
    let evaluation = freeze::evaluate(&windows, now);
    let next = evaluation.next.map(|n| NextFreeze {
        window: n.window,
        source: n.source,
        start: analysis::format_time(n.start),
    });
    if !problems.is_empty() {
        return (Freeze::Invalid(validate::message(&problems)), next);
    }
    let freeze = match evaluation.active {
        Some(a) => Freeze::Active {
            window: a.windows.join(", "),
            source: a.sources.join(", "),
            until: a.until,
        },
        None => Freeze::None,
    };
    (freeze, next)
}

fn step_kind(step: &crate::crd::CanaryStep) -> &'static str {
    if step.set_weight.is_some() {
        "setWeight"
    } else if step.pause.is_some() {
        "pause"
    } else if step.approval.is_some() {
        "approval"
    } else {
        "analysis"
    }
}

/// Removes the request annotation (a merge patch; a request written in the same instant may be
/// lost, and the CLI re-reads the status to see whether it took effect).
async fn clear_request(api: &Api<Rollout>, rollout: &Rollout, value: Option<&str>) {
    if value.is_none() {
        return;
    }
    let patch =
        json!({"metadata": {"annotations": {REQUEST_ANNOTATION: null, REQUESTED_BY_ANNOTATION: null}}});
    if let Err(e) = api
        .patch(&rollout.name_any(), &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        tracing::warn!(error = %e, "request annotation not removed");
    }
}

/// Removes those of `keys` that the Rollout carries (a merge patch).
async fn clear_annotations(api: &Api<Rollout>, rollout: &Rollout, keys: &[&str]) {
    let present: serde_json::Map<String, serde_json::Value> = keys
        .iter()
        .filter(|k| rollout.annotations().contains_key(**k))
        .map(|k| ((*k).to_owned(), serde_json::Value::Null))
        .collect();
    if present.is_empty() {
        return;
    }
    let patch = json!({"metadata": {"annotations": present}});
    if let Err(e) = api
        .patch(&rollout.name_any(), &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        tracing::warn!(error = %e, "approval/override annotations not removed");
    }
}

fn observe(
    deployment: &Deployment,
    canary: Option<&Deployment>,
    hash: &str,
    request: Option<Request>,
    spec_paused: bool,
) -> Observed {
    let spec = deployment.spec.clone();
    let st = deployment.status.clone().unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1);
    let generation_seen = st.observed_generation.unwrap_or(0) >= deployment.metadata.generation.unwrap_or(0);
    let stable_rolled_out = generation_seen
        && st.updated_replicas.unwrap_or(0) == replicas
        && st.replicas.unwrap_or(0) == replicas
        && st.available_replicas.unwrap_or(0) == replicas;
    let canary_current = canary
        .is_some_and(|c| c.annotations().get(REVISION_HASH_ANNOTATION).map(String::as_str) == Some(hash));
    let (canary_ready, canary_replicas) = match canary {
        Some(c) => {
            let cs = c.status.clone().unwrap_or_default();
            let same = c.annotations().get(REVISION_HASH_ANNOTATION).map(String::as_str) == Some(hash);
            let seen = cs.observed_generation.unwrap_or(0) >= c.metadata.generation.unwrap_or(0);
            let ready = if same && seen {
                cs.updated_replicas
                    .unwrap_or(0)
                    .min(cs.available_replicas.unwrap_or(0))
            } else {
                0
            };
            (ready, c.spec.replicas.unwrap_or(0))
        }
        None => (0, 0),
    };
    let canary_gone = canary.is_none_or(|c| {
        let cs = c.status.clone().unwrap_or_default();
        c.spec.replicas == Some(0)
            && cs.observed_generation.unwrap_or(0) >= c.metadata.generation.unwrap_or(0)
            && cs.replicas.unwrap_or(0) == 0
            && cs.available_replicas.unwrap_or(0) == 0
            && cs.terminating_replicas.unwrap_or(0) == 0
    });
    Observed {
        now: Utc::now(),
        canary_gone,
        template_hash: hash.to_owned(),
        stable_replicas: replicas,
        stable_ready: st.available_replicas.unwrap_or(0),
        stable_paused: spec.paused.unwrap_or(false),
        stable_rolled_out,
        canary_ready,
        canary_replicas,
        canary_current,
        request,
        spec_paused,
        released_by: None,
        freeze: Freeze::None,
        next_freeze: None,
        approval: None,
        freeze_override: None,
        identity_enforced: false,
    }
}

/// Takes the measurements that are due in the running analysis runs; returns when the next one is
/// due.
async fn measure(
    ctx: &Context,
    rollout: &Rollout,
    canary: &CanaryStrategy,
    templates: &BTreeMap<String, AnalysisTemplateSpec>,
    status: &mut RolloutStatus,
    selector: BTreeMap<String, String>,
) -> Option<chrono::DateTime<Utc>> {
    let now = Utc::now();
    let mut next: Option<chrono::DateTime<Utc>> = None;
    let uid = rollout.uid().unwrap_or_default();
    let ns = rollout.namespace().unwrap_or_default();
    let name = rollout.name_any();
    let canary_revision = status.canary_revision.clone().unwrap_or_default();
    let stable_revision = status.stable_revision.clone().unwrap_or_default();
    for run in status
        .analysis_runs
        .iter_mut()
        .filter(|r| r.phase == AnalysisPhase::Running)
    {
        let background = run.name == BACKGROUND_RUN;
        let aref = if background {
            canary.analysis.as_ref()
        } else {
            run.name
                .strip_prefix("step-")
                .and_then(|i| i.parse::<usize>().ok())
                .and_then(|i| canary.steps.get(i))
                .and_then(|s| s.analysis.as_ref())
        };
        let Some(aref) = aref else { continue };
        let metrics = analysis::resolve(aref, templates);
        let started = analysis::parse_time(&run.started_at).unwrap_or(now);
        let due: Vec<_> = metrics
            .iter()
            .filter(|m| {
                analysis::next_due(
                    m,
                    run.metrics.iter().find(|s| s.name == m.name),
                    started,
                    background,
                )
                .is_some_and(|d| d <= now)
            })
            .collect();
        let targets: Vec<Target<'_>> = due
            .iter()
            .map(|m| Target {
                namespace: &ns,
                rollout: &name,
                baseline_key: format!("{uid}/{canary_revision}/{}/{}", run.name, m.name),
                selector: &selector,
                canary_revision: &canary_revision,
                stable_revision: &stable_revision,
            })
            .collect();
        let results =
            futures::future::join_all(due.iter().zip(&targets).map(|(m, t)| ctx.providers.measure(m, t)))
                .await;
        for (metric, measurement) in due.iter().zip(results) {
            ctx.metrics.measurements.inc();
            tracing::info!(run = %run.name, metric = %metric.name, phase = ?measurement.phase, value = %measurement.value, "measured");
            let idx = match run.metrics.iter().position(|s| s.name == metric.name) {
                Some(i) => i,
                None => {
                    run.metrics.push(MetricStatus {
                        name: metric.name.clone(),
                        ..Default::default()
                    });
                    run.metrics.len() - 1
                }
            };
            analysis::record(&mut run.metrics[idx], measurement, analysis::is_guard(metric));
        }
        analysis::reassess(run, &metrics);
        for m in &metrics {
            if let Some(d) = analysis::next_due(
                m,
                run.metrics.iter().find(|s| s.name == m.name),
                started,
                background,
            ) {
                next = Some(next.map_or(d, |n| n.min(d)));
            }
        }
    }
    next
}

#[allow(clippy::too_many_arguments)]
async fn execute(
    ctx: &Context,
    rollout: &Rollout,
    deployments: &Api<Deployment>,
    deployment: &Deployment,
    template: &serde_json::Value,
    hash: &str,
    action: &Step,
) -> Result<(), Error> {
    let name = deployment.name_any();
    match action {
        Step::SaveRevision => save_revision(ctx, rollout, template, hash).await?,
        Step::PauseStable | Step::UnpauseStable => {
            let paused = matches!(action, Step::PauseStable);
            // Everything this manager owns on the Deployment goes in every apply: SSA removes
            // owned fields that an apply leaves out. The annotation maps its events back here.
            let body = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": name, "annotations": {"payplane.io/rollout": rollout.name_any()}},
                "spec": {"paused": paused}});
            deployments
                .patch(
                    &name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(body),
                )
                .await?;
        }
        Step::ScaleCanary(replicas) => {
            let canary = canary_name(&name);
            if *replicas == 0 && deployments.get_opt(&canary).await?.is_none() {
                return Ok(());
            }
            let me = ctx.identity().await?;
            let body = canary_deployment(rollout, deployment, template, hash, *replicas, &me)?;
            deployments
                .patch(
                    &canary,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(body),
                )
                .await?;
        }
        Step::ResetAnalysis => ctx.providers.reset(&rollout.uid().unwrap_or_default()),
        Step::Event { type_, reason, note } => publish(ctx, rollout, *type_, reason, note.clone()).await,
        Step::Outcome(outcome) => {
            ctx.metrics
                .rollouts
                .get_or_create(&OutcomeLabels {
                    outcome: (*outcome).into(),
                })
                .inc();
        }
        Step::Release { outcome, revision } => {
            if let Some(sink) = &ctx.cdevents {
                release(ctx, sink, rollout, deployment, template, revision, *outcome).await;
            }
        }
    }
    Ok(())
}

/// Queues the CDEvent of a release outcome. The image is the one the service runs afterwards:
/// the released template's, or on a rollback the stable revision's (from its ControllerRevision).
async fn release(
    ctx: &Context,
    sink: &crate::cdevents::Sink,
    rollout: &Rollout,
    deployment: &Deployment,
    template: &serde_json::Value,
    revision: &str,
    outcome: crate::cdevents::Outcome,
) {
    let ns = rollout.namespace().unwrap_or_default();
    let service = deployment.name_any();
    let image = match outcome {
        crate::cdevents::Outcome::RolledBack => {
            let stable = rollout.status.as_ref().and_then(|s| s.stable_revision.clone());
            let api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
            match stable {
                Some(stable) => match api.get_opt(&revision_name(&rollout.name_any(), &stable)).await {
                    Ok(Some(rev)) => image_of(&rev.data.0, &service),
                    Ok(None) => None,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the stable revision for the CDEvent");
                        None
                    }
                },
                None => None,
            }
        }
        _ => image_of(template, &service),
    };
    let Some(image) = image else {
        tracing::warn!(
            ?outcome,
            revision,
            "CDEvent not sent: no image known for the service"
        );
        ctx.metrics.cdevents.failed.inc();
        return;
    };
    sink.send(&crate::cdevents::Release {
        outcome,
        rollout_uid: rollout.uid().unwrap_or_default(),
        revision: revision.to_owned(),
        environment: sink.environment(&ns),
        namespace: ns,
        service,
        image,
        timestamp: Utc::now(),
    });
}

/// The image of a pod template: the container named like the Deployment, else the first.
pub fn image_of(template: &serde_json::Value, service: &str) -> Option<String> {
    let containers = template["spec"]["containers"].as_array()?;
    containers
        .iter()
        .find(|c| c["name"] == service)
        .or_else(|| containers.first())
        .and_then(|c| c["image"].as_str())
        .map(str::to_owned)
}

/// The canary Deployment: the new template, labelled `payplane.io/track: canary`, selected by the
/// referenced Deployment's selector plus that label, owned by the Rollout. `released_by` is the
/// controller's own user name: the admission policy requires it on every template change of a
/// Deployment that a Rollout releases.
pub fn canary_deployment(
    rollout: &Rollout,
    stable: &Deployment,
    template: &serde_json::Value,
    hash: &str,
    replicas: i32,
    released_by: &str,
) -> Result<serde_json::Value, Error> {
    let spec = stable.spec.clone();
    let mut selector = spec.selector.match_labels.clone().unwrap_or_default();
    selector.insert(TRACK_LABEL.into(), "canary".into());
    let mut template = template.clone();
    template["metadata"]["labels"][TRACK_LABEL] = json!("canary");
    let mut labels = stable.labels().clone();
    labels.insert(TRACK_LABEL.into(), "canary".into());
    let owner = rollout
        .controller_owner_ref(&())
        .ok_or_else(|| Error::Invariant("rollout without uid".into()))?;
    let mut selector_json = json!({"matchLabels": selector});
    if let Some(expressions) = &spec.selector.match_expressions {
        selector_json["matchExpressions"] =
            serde_json::to_value(expressions).map_err(|e| Error::Invariant(e.to_string()))?;
    }
    let mut body = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": canary_name(&stable.name_any()),
            "labels": labels,
            "annotations": {
                REVISION_HASH_ANNOTATION: hash,
                "payplane.io/rollout": rollout.name_any(),
                RELEASED_BY_ANNOTATION: released_by,
            },
            "ownerReferences": [owner],
        },
        "spec": {
            "replicas": replicas,
            "selector": selector_json,
            "template": template,
        },
    });
    if let Some(s) = &spec.min_ready_seconds {
        body["spec"]["minReadySeconds"] = json!(s);
    }
    if let Some(strategy) = &spec.strategy {
        body["spec"]["strategy"] =
            serde_json::to_value(strategy).map_err(|e| Error::Invariant(e.to_string()))?;
    }
    Ok(body)
}

fn revision_name(rollout: &str, hash: &str) -> String {
    format!("{rollout}-{hash}")
}

async fn revisions(ctx: &Context, rollout: &Rollout) -> Result<Vec<ControllerRevision>, Error> {
    let api: Api<ControllerRevision> =
        Api::namespaced(ctx.client.clone(), &rollout.namespace().unwrap_or_default());
    let mut list = api
        .list(&ListParams::default().labels(&format!("{ROLLOUT_LABEL}={}", rollout.name_any())))
        .await?
        .items;
    list.sort_by_key(|r| r.revision);
    Ok(list)
}

/// Saves the template as a ControllerRevision (numbered after the newest) unless that hash is
/// already the newest, and prunes beyond `revisionHistoryLimit`.
async fn save_revision(
    ctx: &Context,
    rollout: &Rollout,
    template: &serde_json::Value,
    hash: &str,
) -> Result<(), Error> {
    let ns = rollout.namespace().unwrap_or_default();
    let api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
    let existing = revisions(ctx, rollout).await?;
    let newest = existing.last().and_then(|r| r.revision).unwrap_or(0);
    let name = revision_name(&rollout.name_any(), hash);
    if existing.last().map(|r| r.name_any()) == Some(name.clone()) {
        return Ok(());
    }
    // A template seen before (undo) is saved again under a new number: numbers are release order.
    if existing.iter().any(|r| r.name_any() == name) {
        api.delete(&name, &DeleteParams::default()).await?;
    }
    let revision = ControllerRevision {
        metadata: kube::api::ObjectMeta {
            name: Some(name),
            labels: Some(BTreeMap::from([(ROLLOUT_LABEL.to_owned(), rollout.name_any())])),
            annotations: Some(BTreeMap::from([(
                REVISION_HASH_ANNOTATION.to_owned(),
                hash.to_owned(),
            )])),
            owner_references: rollout.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        data: RawExtension(template.clone()),
        revision: Some(newest + 1),
    };
    match api.create(&PostParams::default(), &revision).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    let limit = rollout.spec.revision_history_limit.unwrap_or(DEFAULT_HISTORY) as usize;
    let all = revisions(ctx, rollout).await?;
    for old in all.iter().take(all.len().saturating_sub(limit.max(2))) {
        let _ = api.delete(&old.name_any(), &DeleteParams::default()).await;
    }
    Ok(())
}

/// `undo`: writes a previous revision's template into the referenced Deployment; the next
/// reconcile releases it like any new template (or, when it is the stable's, drops the canary).
/// What an undo request acts on, and who asked for it.
struct Undo<'a> {
    deployments: &'a Api<Deployment>,
    deployment: &'a Deployment,
    status: &'a RolloutStatus,
    current_hash: &'a str,
    requester: Option<String>,
}

async fn undo(ctx: &Context, rollout: &Rollout, at: Undo<'_>, revision: Option<i64>) -> Result<(), Error> {
    let Undo {
        deployments,
        deployment,
        status,
        current_hash,
        requester,
    } = at;
    let all = revisions(ctx, rollout).await?;
    let hash_of = |r: &ControllerRevision| {
        r.annotations()
            .get(REVISION_HASH_ANNOTATION)
            .cloned()
            .unwrap_or_default()
    };
    let target = match revision {
        Some(n) => all.iter().find(|r| r.revision == Some(n)),
        None if status.stable_revision.as_deref() != Some(current_hash) => {
            // A canary in flight: undo goes back to the stable.
            all.iter()
                .rev()
                .find(|r| Some(hash_of(r)) == status.stable_revision)
        }
        // Healthy: the newest revision before the stable one.
        None => all
            .iter()
            .rev()
            .find(|r| Some(hash_of(r)) != status.stable_revision),
    };
    let Some(target) = target else {
        let note = format!(
            "no revision to undo to ({revision:?}); kept: {:?}",
            all.iter().filter_map(|r| r.revision).collect::<Vec<_>>()
        );
        publish(ctx, rollout, EventType::Warning, "UndoFailed", note).await;
        return Ok(());
    };
    let mut template = target.data.0.clone();
    // The whole template, exactly: an apply would merge with fields other managers own (a newer
    // container's extra env), a strategic `$patch: replace` does not.
    template["$patch"] = json!("replace");
    // The controller changes the template: it is the one that releases it (the admission policy
    // requires the requester's own name here).
    let me = ctx.identity().await?;
    let body =
        json!({"metadata": {"annotations": {RELEASED_BY_ANNOTATION: me}}, "spec": {"template": template}});
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    deployments
        .patch(&deployment.name_any(), &params, &Patch::Strategic(body))
        .await?;
    let note = format!(
        "template set to revision {} ({})",
        target.revision.unwrap_or(0),
        hash_of(target)
    );
    publish(ctx, rollout, EventType::Normal, "Undo", note.clone()).await;
    // The audit trail: the release in flight (or, when healthy, the promoted one) is undone.
    let undone = status
        .canary_revision
        .clone()
        .or_else(|| status.stable_revision.clone());
    if let (Some(release), Some(revision)) = (status.revision.and_then(|r| u64::try_from(r).ok()), undone) {
        let template = serde_json::to_value(&deployment.spec.template).unwrap_or_default();
        let transition = audit::Transition {
            release,
            revision,
            kind: payplane_delivery::EventKind::Undone,
            actor: requester,
            time: Utc::now(),
            step: status.current_step_index,
            weight: None,
            reason: Some(note),
            analysis: None,
        };
        let at = Release {
            deployment,
            template: &template,
            hash: current_hash,
            canary: None,
        };
        record_transitions(ctx, rollout, &at, vec![transition]).await;
    }
    Ok(())
}

/// The Rollout is being deleted: hand the Deployment back (unpaused, so the chart rolls it
/// normally again) and remove the canary.
async fn cleanup(rollout: Arc<Rollout>, ctx: &Context) -> Result<Action, Error> {
    let ns = rollout.namespace().unwrap_or_default();
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    let name = &rollout.spec.deployment_name;
    if !name.is_empty() && deployments.get_opt(name).await?.is_some() {
        let body = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name}, "spec": {"paused": false}});
        deployments
            .patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(body),
            )
            .await?;
    }
    if deployments.get_opt(&canary_name(name)).await?.is_some() {
        deployments
            .delete(&canary_name(name), &DeleteParams::default())
            .await?;
    }
    publish(
        ctx,
        &rollout,
        EventType::Normal,
        "Released",
        format!("Deployment {name} handed back unpaused; canary removed"),
    )
    .await;
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{DateRange, FreezePolicySpec, FreezeWindow, NamespaceSelector};

    fn policy(name: &str, selector: Option<(&str, &str)>, start: &str, end: &str, tz: &str) -> FreezePolicy {
        FreezePolicy::new(
            name,
            FreezePolicySpec {
                namespace_selector: selector.map(|(k, v)| NamespaceSelector {
                    match_labels: BTreeMap::from([(k.to_owned(), v.to_owned())]),
                }),
                windows: vec![FreezeWindow {
                    name: format!("{name}-window"),
                    time_zone: Some(tz.into()),
                    dates: Some(DateRange {
                        start: start.into(),
                        end: end.into(),
                    }),
                    ..Default::default()
                }],
            },
        )
    }

    #[test]
    fn freeze_policies_apply_by_namespace_label_and_invalid_ones_fail_closed() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-24T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let prod = BTreeMap::from([("env".to_owned(), "prod".to_owned())]);
        let dev = BTreeMap::from([("env".to_owned(), "dev".to_owned())]);
        let spec = RolloutSpec::default();
        let policies = vec![
            policy(
                "prod-only",
                Some(("env", "prod")),
                "2026-12-24",
                "2026-12-26",
                "UTC",
            ),
            policy("everyone", None, "2026-12-31", "2026-12-31", "Asia/Shanghai"),
        ];
        let (freeze, next) = freeze_state(&spec, &policies, &prod, now);
        assert_eq!(
            freeze,
            Freeze::Active {
                window: "prod-only-window".into(),
                source: "FreezePolicy/prod-only".into(),
                until: "2026-12-27T00:00:00Z".parse().unwrap(),
            }
        );
        assert_eq!(next.unwrap().start, "2026-12-30T16:00:00.000Z");
        let (freeze, next) = freeze_state(&spec, &policies, &dev, now);
        assert_eq!(freeze, Freeze::None, "not selected in dev");
        assert_eq!(next.unwrap().window, "everyone-window");
        // An invalid policy that selects the namespace holds; one that does not is ignored.
        let broken = vec![policy(
            "broken",
            Some(("env", "prod")),
            "2026-12-24",
            "2026-12-24",
            "Mars/Base",
        )];
        let (freeze, _) = freeze_state(&spec, &broken, &prod, now);
        let Freeze::Invalid(message) = freeze else {
            panic!("{freeze:?}")
        };
        assert!(
            message.contains("FreezePolicy/broken: spec.windows[0].timeZone"),
            "{message}"
        );
        assert_eq!(freeze_state(&spec, &broken, &dev, now).0, Freeze::None);
    }

    #[test]
    fn a_freeze_policy_gets_a_valid_condition_naming_the_fields() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-24T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let good = policy("good", None, "2026-12-24", "2026-12-26", "UTC");
        let st = freeze_policy_status(&good, now);
        assert_eq!(
            (st.conditions[0].type_.as_str(), st.conditions[0].status.as_str()),
            ("Valid", "True")
        );
        let mut bad = policy("bad", None, "2026-12-26T10:00", "2026-12-24", "Mars/Base");
        bad.status = Some(st);
        let st = freeze_policy_status(&bad, now);
        let c = &st.conditions[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "InvalidWindows")
        );
        assert!(c.message.contains("spec.windows[0].timeZone"), "{}", c.message);
        assert!(c.message.contains("spec.windows[0].dates.end"), "{}", c.message);
        // Unchanged input, unchanged status (no churn).
        bad.status = Some(st.clone());
        assert_eq!(freeze_policy_status(&bad, now), st);
    }
}
