//! The ReleasePlan reconciler: reads the plan's members (their Rollouts and Deployments), asks
//! [`crate::plan_machine`] what to do, writes the status (server-side apply with the
//! resourceVersion read as a precondition, as for Rollouts) and then executes the actions:
//! template changes signed with the controller's identity, `payplane.io/request` annotations on
//! the members' Rollouts, and Events on the plan. Only the leader writes.
//!
//! No finalizer: deleting a plan stops it (no further member is started or rolled back); the
//! release in flight is the member's Rollout's and goes on by itself.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::{
    Api, Resource, ResourceExt,
    api::{ListParams, Patch, PatchParams},
    runtime::{
        Controller,
        controller::{Action, Config as ControllerConfig},
        reflector::ObjectRef,
        watcher,
    },
};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::{
    crd::{
        AnalysisTemplate, AnalysisTemplateSpec, PlanService, RELEASE_PLAN_ANNOTATION, RELEASED_BY_ANNOTATION,
        REQUEST_ANNOTATION, REQUESTED_BY_ANNOTATION, ReleasePlan, ReleasePlanStatus, Rollout,
    },
    machine::EventType,
    metrics::{ErrorLabels, OutcomeLabels},
    plan_machine::{self, Action as Step, Member, Observed},
    reconcile::{Context, Error, FIELD_MANAGER, publish_to, template_hash},
};

const NOT_LEADER_RECHECK: Duration = Duration::from_secs(5);

/// Runs the ReleasePlan controller until `stop` (over all namespaces, or one).
pub async fn run(ctx: Arc<Context>, namespace: Option<String>, stop: CancellationToken) {
    let client = ctx.client.clone();
    let (plans, deployments) = match &namespace {
        Some(ns) => (
            Api::<ReleasePlan>::namespaced(client.clone(), ns),
            Api::<Deployment>::namespaced(client.clone(), ns),
        ),
        None => (
            Api::<ReleasePlan>::all(client.clone()),
            Api::<Deployment>::all(client),
        ),
    };
    Controller::new(plans, watcher::Config::default().any_semantic())
        // A member's Deployment (template applied, rolled, pinned) maps back to its plan; the
        // Rollouts' status in between is polled (plan_machine::POLL).
        .watches(deployments, watcher::Config::default(), |d: Deployment| {
            d.annotations()
                .get(RELEASE_PLAN_ANNOTATION)
                .map(|name| ObjectRef::new(name).within(&d.namespace().unwrap_or_default()))
        })
        .with_config(ControllerConfig::default().debounce(Duration::from_millis(200)))
        .graceful_shutdown_on(async move { stop.cancelled().await })
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "ReleasePlan reconcile failed");
            }
        })
        .await;
}

fn error_policy(_plan: Arc<ReleasePlan>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .reconcile_errors
        .get_or_create(&ErrorLabels {
            error: error.metric_label(),
        })
        .inc();
    tracing::warn!(error = %error, "ReleasePlan reconcile failed; retrying");
    match error {
        Error::Kube(kube::Error::Api(s)) if s.code == 409 => Action::requeue(Duration::from_millis(500)),
        _ => Action::requeue(Duration::from_secs(5)),
    }
}

/// One member as the plan sees it: the Rollout, its Deployment, and the spec entry.
struct Seen {
    rollout: Rollout,
    deployment: Deployment,
}

#[tracing::instrument(skip_all, fields(plan = %plan.name_any(), namespace = plan.namespace().unwrap_or_default()))]
pub async fn reconcile(plan: Arc<ReleasePlan>, ctx: Arc<Context>) -> Result<Action, Error> {
    if !ctx.leadership.is_leader() {
        return Ok(Action::requeue(NOT_LEADER_RECHECK));
    }
    let ns = plan.namespace().unwrap_or_default();
    let api: Api<ReleasePlan> = Api::namespaced(ctx.client.clone(), &ns);
    let prev = plan.status.clone().unwrap_or_default();
    if matches!(
        prev.phase,
        crate::crd::PlanPhase::Succeeded | crate::crd::PlanPhase::RolledBack | crate::crd::PlanPhase::Failed
    ) {
        return Ok(Action::await_change());
    }
    // Once started, the members are those the plan started with (the spec is immutable).
    let names: Vec<String> = if prev.services.is_empty() {
        plan.spec.services.iter().map(|s| s.rollout.clone()).collect()
    } else {
        prev.services.iter().map(|m| m.rollout.clone()).collect()
    };
    let mut seen = Vec::with_capacity(names.len());
    for name in &names {
        seen.push(member(&ctx, &ns, name).await?);
    }
    let members = names
        .iter()
        .zip(&seen)
        .map(|(name, s)| {
            let s = s.as_ref()?;
            let service = plan.spec.services.iter().find(|x| &x.rollout == name);
            Some(observe(s, service))
        })
        .collect();
    let templates: BTreeMap<String, AnalysisTemplateSpec> =
        Api::<AnalysisTemplate>::namespaced(ctx.client.clone(), &ns)
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .map(|t| (t.name_any(), t.spec))
            .collect();
    let obs = Observed {
        now: Utc::now(),
        spec_hash: template_hash(
            &serde_json::to_value(&plan.spec).map_err(|e| Error::Invariant(e.to_string()))?,
        ),
        members,
        templates,
    };
    let decision = plan_machine::decide(&plan.spec, &prev, &obs);
    let mut status = decision.status;
    status.observed_generation = plan.metadata.generation;
    let mut resource_version = plan.resource_version();
    if status != prev {
        // Before any side effect (fencing, as for Rollouts).
        resource_version = write_status(&api, &plan.name_any(), resource_version, &status).await?;
    }
    for action in &decision.actions {
        match action {
            Step::Apply { index } => {
                let Some(Some(s)) = seen.get(*index) else { continue };
                let Some(service) = plan.spec.services.iter().find(|x| x.rollout == names[*index]) else {
                    continue;
                };
                apply_member(&ctx, &ns, &plan.name_any(), &s.deployment, service).await?;
            }
            Step::Request { index, request } => {
                let me = ctx.identity().await?;
                let patch = json!({"metadata": {"annotations": {
                    REQUEST_ANNOTATION: request,
                    REQUESTED_BY_ANNOTATION: me,
                }}});
                let sent = Api::<Rollout>::namespaced(ctx.client.clone(), &ns)
                    .patch(&names[*index], &PatchParams::default(), &Patch::Merge(patch))
                    .await;
                if let Err(e) = sent {
                    // The status says it was asked: take that back, or the next pass would take
                    // the unchanged Rollout for a request that did not work.
                    let note = format!("`{request}` on Rollout {} not written: {e}", names[*index]);
                    publish_to(
                        &ctx,
                        &plan.object_ref(&()),
                        EventType::Warning,
                        "RequestFailed",
                        note,
                    )
                    .await;
                    let member = &mut status.services[*index];
                    member.undo_requested &= !request.starts_with("undo");
                    member.promote_requested &= request != "promote-full";
                    write_status(&api, &plan.name_any(), resource_version, &status).await?;
                    return Err(e.into());
                }
            }
            Step::Event { type_, reason, note } => {
                publish_to(&ctx, &plan.object_ref(&()), *type_, reason, note.clone()).await;
            }
            Step::Outcome(outcome) => {
                ctx.metrics
                    .release_plans
                    .get_or_create(&OutcomeLabels {
                        outcome: (*outcome).into(),
                    })
                    .inc();
            }
        }
    }
    Ok(match decision.requeue {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}

async fn member(ctx: &Context, ns: &str, rollout: &str) -> Result<Option<Seen>, Error> {
    if rollout.is_empty() {
        return Ok(None);
    }
    let Some(rollout) = Api::<Rollout>::namespaced(ctx.client.clone(), ns)
        .get_opt(rollout)
        .await?
    else {
        return Ok(None);
    };
    let Some(deployment) = Api::<Deployment>::namespaced(ctx.client.clone(), ns)
        .get_opt(&rollout.spec.deployment_name)
        .await?
    else {
        return Ok(None);
    };
    Ok(Some(Seen { rollout, deployment }))
}

fn observe(seen: &Seen, service: Option<&PlanService>) -> Member {
    let st = seen.rollout.status.clone().unwrap_or_default();
    let template = serde_json::to_value(&seen.deployment.spec.template).unwrap_or_default();
    Member {
        phase: st.phase,
        stable_revision: st.stable_revision,
        canary_revision: st.canary_revision,
        aborted_revision: st.aborted_revision.filter(|_| st.abort),
        abort_reason: st.abort_reason,
        revision: st.revision,
        template_hash: template_hash(&template),
        at_target: service.is_some_and(|s| plan_machine::target_template(&template, s) == template),
        pending_request: seen.rollout.annotations().get(REQUEST_ANNOTATION).cloned(),
    }
}

/// Writes the member's change into its Deployment's template: the whole template (strategic
/// `$patch: replace`, so nothing merges with a newer change) with the resourceVersion read as a
/// precondition, signed with the controller's own identity (the admission policy requires
/// `released-by` to be the requester) and naming the plan.
async fn apply_member(
    ctx: &Context,
    ns: &str,
    plan: &str,
    deployment: &Deployment,
    service: &PlanService,
) -> Result<(), Error> {
    let current =
        serde_json::to_value(&deployment.spec.template).map_err(|e| Error::Invariant(e.to_string()))?;
    let mut template = plan_machine::target_template(&current, service);
    template["$patch"] = json!("replace");
    let me = ctx.identity().await?;
    let body = json!({
        "metadata": {
            "resourceVersion": deployment.resource_version(),
            "annotations": {RELEASED_BY_ANNOTATION: me, RELEASE_PLAN_ANNOTATION: plan},
        },
        "spec": {"template": template},
    });
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    match Api::<Deployment>::namespaced(ctx.client.clone(), ns)
        .patch(&deployment.name_any(), &params, &Patch::Strategic(body))
        .await
    {
        Ok(_) => Ok(()),
        // Changed in between: the next pass reads it again and decides anew.
        Err(kube::Error::Api(s)) if s.code == 409 => {
            tracing::info!(deployment = %deployment.name_any(), "template changed meanwhile; retrying");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Writes the status (forced SSA, the resourceVersion read as a precondition); returns the new
/// resourceVersion.
async fn write_status(
    api: &Api<ReleasePlan>,
    name: &str,
    resource_version: Option<String>,
    status: &ReleasePlanStatus,
) -> Result<Option<String>, Error> {
    let body = json!({
        "apiVersion": "payplane.io/v1alpha1",
        "kind": "ReleasePlan",
        "metadata": { "name": name, "resourceVersion": resource_version },
        "status": status,
    });
    let written = api
        .patch_status(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(body),
        )
        .await?;
    Ok(written.resource_version())
}
