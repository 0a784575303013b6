//! The release verbs: `release`, `status`, `watch`, `promote`, `abort`, `retry`, `pause`,
//! `resume`, `undo`, `approve`, and `plan` (a coordinated release of several services). They read and write the services' Rollouts; the rollout
//! controller does the releasing. Each verb checks first whether it makes sense now and says
//! why not, then waits for the controller to take the request, so that a person sees the
//! effect (or learns that no controller is listening).

pub mod plan;
pub mod target;
pub mod view;
pub mod watch;

use std::{process::ExitCode, time::Duration};

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use kube::ResourceExt;
use payplane_rollout_controller::{
    audit::{COMMIT_ANNOTATION, COMMIT_TIME_ANNOTATION},
    crd::{
        APPROVED_BY_ANNOTATION, APPROVER_GROUPS_ANNOTATION, Phase, RELEASED_BY_ANNOTATION,
        REQUEST_ANNOTATION, Rollout,
    },
    plan_machine,
};
use serde_json::json;

use self::{
    target::{ClusterArgs, Target},
    view::{Outcome, Verb},
    watch::Follow,
};

/// How long a verb waits for the controller to take its request.
const TAKE_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start a release: a new image (and/or environment) for a service, released as a canary.
    ///
    /// Changes the pod template of the service's Deployment, signed with your user name
    /// (payplane.io/released-by, which the governance policy checks); the rollout controller
    /// then walks the Rollout's steps. Refused while another release of the service is in
    /// flight, unless --supersede. A bare tag replaces the current image's tag.
    #[command(after_help = RELEASE_EXAMPLES)]
    Release(ReleaseArgs),

    /// Show every service's stable and canary versions, step, weight and analysis verdicts.
    ///
    /// With a SERVICE: its steps (done, in progress, to come), the analyses' latest
    /// measurements, who released and approved, freeze windows and the controller's message.
    #[command(after_help = STATUS_EXAMPLES)]
    Status(StatusArgs),

    /// Follow a release live until it ends; the exit code says how.
    ///
    /// A progress bar per step, the analyses' measurements as they come. Exit codes:
    /// 0 promoted, 1 rolled back, 3 paused and waiting for a person (approval, an
    /// inconclusive analysis, an indefinite pause, `payplane pause`), 4 invalid Rollout,
    /// 5 --timeout passed, 2 the command itself failed.
    #[command(after_help = WATCH_EXAMPLES)]
    Watch(WatchArgs),

    /// Finish the current step now (a pause, an inconclusive analysis); --full skips the rest.
    #[command(after_help = PROMOTE_EXAMPLES)]
    Promote(PromoteArgs),

    /// Roll the release back: the canary gets no more requests and scales to zero.
    #[command(after_help = "Example:\n  payplane abort accounting -n payplane")]
    Abort(ServiceArgs),

    /// Release an aborted revision again, from the first step.
    #[command(after_help = "Example:\n  payplane retry accounting -n payplane")]
    Retry(ServiceArgs),

    /// Hold the service's releases where they are (spec.paused); abort and analyses still act.
    #[command(
        after_help = "Example:\n  payplane pause accounting -n payplane   # then: payplane resume accounting"
    )]
    Pause(ServiceArgs),

    /// Go on after `payplane pause`, an inconclusive analysis or an indefinite pause step.
    #[command(after_help = "Example:\n  payplane resume accounting -n payplane")]
    Resume(ServiceArgs),

    /// Go back to the previous revision (or --to-revision N), released like any other.
    #[command(after_help = UNDO_EXAMPLES)]
    Undo(UndoArgs),

    /// Approve the release waiting at an approval step, as yourself.
    ///
    /// Your user name is the one the cluster authenticates (SelfSubjectReview); the governance
    /// policy refuses any other. Four-eyes steps refuse the person who started the release.
    #[command(after_help = "Example:\n  payplane approve accounting -n payplane")]
    Approve(ServiceArgs),

    /// Release several services in order from a ReleasePlan file, rolled back together on failure.
    ///
    /// Creates the plan; the rollout controller releases each service through its Rollout only
    /// after the previous one is promoted, runs the plan's shared analysis in the one in flight,
    /// and when one fails rolls back those already promoted, last first. Prints a line per
    /// transition until the end. Exit codes: 0 succeeded, 1 rolled back (or failed), 4 invalid
    /// plan, 5 --timeout passed, 2 the command itself failed.
    #[command(after_help = PLAN_EXAMPLES)]
    Plan(plan::PlanArgs),
}

const PLAN_EXAMPLES: &str = "\
Examples:
  # release-1.8.yaml:
  #   apiVersion: payplane.io/v1alpha1
  #   kind: ReleasePlan
  #   metadata: {name: release-1-8}
  #   spec:
  #     services:
  #       - {rollout: accounting, image: \"1.8.0\"}
  #       - {rollout: gateway, image: \"1.8.0\"}
  payplane plan release-1.8.yaml -n payplane

  # Start it and return; follow with kubectl:
  payplane plan release-1.8.yaml -n payplane --detach";

const RELEASE_EXAMPLES: &str = "\
Examples:
  # accounting's image with tag 1.5.0 (same repository), then follow it:
  payplane release accounting --image 1.5.0 -n payplane --watch

  # A full image reference, with the commit it was built from (for the lead time):
  payplane release gateway --image registry.bank/payplane/gateway:1.5.0 \\
      --commit 3f2a9c4 --commit-time 2026-11-22T08:12:00Z

  # Only an environment change (a feature switch), released like an image:
  payplane release routing --env ROUTING_STRATEGY=success-rate

  # Switch a variable off again (removed from the container):
  payplane release routing --unset-env ROUTING_STRATEGY";

const STATUS_EXAMPLES: &str = "\
Examples:
  payplane status -n payplane
  payplane status accounting -n payplane
  payplane status -n payplane -o json | jq '.[] | select(.phase != \"Healthy\")'";

const WATCH_EXAMPLES: &str = "\
Examples:
  payplane watch accounting -n payplane

  # In a pipeline: wait at most 30 minutes, then act on the exit code:
  payplane watch accounting --timeout 30m; case $? in 0) echo promoted;; 1) echo rolled back;; 3) echo needs a person;; esac";

const PROMOTE_EXAMPLES: &str = "\
Examples:
  payplane promote accounting -n payplane          # finish the current step
  payplane promote accounting --full -n payplane   # skip the remaining steps and analyses";

const UNDO_EXAMPLES: &str = "\
Examples:
  payplane undo accounting -n payplane
  payplane undo accounting --to-revision 14 --watch";

#[derive(Args, Debug)]
pub struct ServiceArgs {
    /// The service (its chart name, e.g. accounting) or the Rollout's name.
    pub service: String,

    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Args, Debug)]
pub struct ReleaseArgs {
    #[command(flatten)]
    pub target: ServiceArgs,

    /// The new image: a tag (`1.5.0`) or a full reference.
    #[arg(long)]
    pub image: Option<String>,

    /// Environment variables of the service's container, NAME=VALUE (repeatable).
    #[arg(long = "env", value_name = "NAME=VALUE", value_parser = parse_env)]
    pub env: Vec<(String, String)>,

    /// Remove an environment variable from the service's container (repeatable).
    #[arg(long = "unset-env", value_name = "NAME", value_parser = parse_env_name)]
    pub unset_env: Vec<String>,

    /// The commit the new version was built from (recorded; lead time starts at --commit-time).
    #[arg(long)]
    pub commit: Option<String>,

    /// When that commit was made (RFC 3339).
    #[arg(long, requires = "commit", value_parser = parse_rfc3339)]
    pub commit_time: Option<String>,

    /// Replace a release still in flight (its canary is discarded).
    #[arg(long)]
    pub supersede: bool,

    /// Follow the release (as `payplane watch`) and exit with its outcome.
    #[arg(long)]
    pub watch: bool,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// One service in detail (default: a line for every service).
    pub service: Option<String>,

    #[arg(long, short = 'o', value_enum, default_value_t = StatusFormat::Text)]
    pub output: StatusFormat,

    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusFormat {
    Text,
    Json,
}

#[derive(Args, Debug)]
pub struct WatchArgs {
    #[command(flatten)]
    pub target: ServiceArgs,

    /// Give up after this long (exit code 5), e.g. `30m`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,

    /// Also stop (exit code 3) when a freeze window holds the release, instead of waiting for
    /// its end.
    #[arg(long)]
    pub stop_at_freeze: bool,
}

#[derive(Args, Debug)]
pub struct PromoteArgs {
    #[command(flatten)]
    pub target: ServiceArgs,

    /// Skip all remaining steps and analyses: straight to promotion.
    #[arg(long)]
    pub full: bool,
}

#[derive(Args, Debug)]
pub struct UndoArgs {
    #[command(flatten)]
    pub target: ServiceArgs,

    /// The release number to go back to (`payplane history SERVICE` lists them).
    #[arg(long)]
    pub to_revision: Option<i64>,

    /// Follow the release back (as `payplane watch`).
    #[arg(long)]
    pub watch: bool,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("`{s}` is not NAME=VALUE")),
    }
}

fn parse_env_name(s: &str) -> Result<String, String> {
    let name = s.trim();
    if name.is_empty() || name.contains('=') {
        return Err(format!(
            "`{s}` is not a variable name (give NAME, without =VALUE)"
        ));
    }
    Ok(name.to_owned())
}

fn parse_rfc3339(s: &str) -> Result<String, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|_| s.to_owned())
        .map_err(|e| format!("`{s}` is not an RFC 3339 time like 2026-11-22T08:12:00Z: {e}"))
}

pub async fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Release(a) => release(a).await,
        Command::Status(a) => status(a).await,
        Command::Watch(a) => watch(a).await,
        Command::Promote(a) => {
            let verb = if a.full { Verb::PromoteFull } else { Verb::Promote };
            request(&a.target, verb).await
        }
        Command::Abort(a) => request(&a, Verb::Abort).await,
        Command::Retry(a) => request(&a, Verb::Retry).await,
        Command::Resume(a) => resume(a).await,
        Command::Pause(a) => pause(a).await,
        Command::Undo(a) => undo(a).await,
        Command::Approve(a) => approve(a).await,
        Command::Plan(a) => plan::run(a).await,
    }
}

async fn release(args: ReleaseArgs) -> Result<ExitCode> {
    let service = &args.target.service;
    if args.image.is_none() && args.env.is_empty() && args.unset_env.is_empty() {
        bail!(
            "say what to release: --image TAG (or a full image reference), --env NAME=VALUE and/or --unset-env NAME"
        );
    }
    if let Some((name, _)) = args.env.iter().find(|(k, _)| args.unset_env.contains(k)) {
        bail!("{name} is both set (--env) and removed (--unset-env): choose one");
    }
    let target = Target::connect(&args.target.cluster).await?;
    let rollout = target.rollout(service).await?;
    let st = rollout.status.clone().unwrap_or_default();
    if st.canary_revision.is_some()
        && matches!(st.phase, Phase::Progressing | Phase::Paused | Phase::Promoting)
        && !args.supersede
    {
        bail!(
            "a release of {service} is already in flight (revision {}, {:?}): wait for it (`payplane watch {service}`), \
             abort it (`payplane abort {service}`), or replace it with --supersede",
            st.canary_revision.as_deref().unwrap_or(""),
            st.phase
        );
    }
    let name = rollout.spec.deployment_name.clone();
    let Some(deployment) = target.deployment(&name).await? else {
        bail!(
            "the Rollout {} releases Deployment `{name}`, which does not exist in namespace `{}`",
            rollout.name_any(),
            target.namespace
        );
    };
    let container = deployment
        .spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("Deployment `{name}` has no container"))?;
    let old_image = container.image.clone().unwrap_or_default();
    let new_image = args
        .image
        .as_deref()
        .map(|i| plan_machine::target_image(&old_image, i));
    let (me, _) = target.whoami().await?;
    let mut patch_container = json!({"name": container.name});
    if let Some(img) = &new_image {
        patch_container["image"] = json!(img);
    }
    if !args.env.is_empty() || !args.unset_env.is_empty() {
        // Strategic merge by name: set ones are added or replaced, unset ones deleted.
        let set = args.env.iter().map(|(k, v)| json!({"name": k, "value": v}));
        let unset = args
            .unset_env
            .iter()
            .map(|k| json!({"name": k, "$patch": "delete"}));
        patch_container["env"] = set.chain(unset).collect();
    }
    let mut template = json!({"metadata": {}, "spec": {"containers": [patch_container]}});
    if let Some(commit) = &args.commit {
        template["metadata"]["annotations"] = json!({COMMIT_ANNOTATION: commit});
        if let Some(t) = &args.commit_time {
            template["metadata"]["annotations"][COMMIT_TIME_ANNOTATION] = json!(t);
        }
    }
    // The pods say which version they run (SERVICE_VERSION, on every span): the new tag.
    let labelled = deployment
        .spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.as_ref())
        .is_some_and(|l| l.contains_key(plan_machine::VERSION_LABEL));
    if let Some(version) = new_image.as_deref().and_then(plan_machine::version_label)
        && labelled
    {
        template["metadata"]["labels"] = json!({plan_machine::VERSION_LABEL: version});
    }
    let before = watch::wanted_revision(&deployment)?;
    let patch = json!({
        "metadata": {"annotations": {RELEASED_BY_ANNOTATION: me}},
        "spec": {"template": template},
    });
    let updated = target.patch_deployment(&name, patch).await?;
    let revision = watch::wanted_revision(&updated)?;
    if revision == before {
        println!("{service} already runs that (revision {revision}): nothing to release");
        return Ok(ExitCode::SUCCESS);
    }
    let what = match &new_image {
        Some(img) if *img != old_image => format!("image {old_image} → {img}"),
        _ => "environment".to_owned(),
    };
    println!(
        "release of {service} started by {me}: {what} (revision {revision}; stable {})",
        st.stable_revision.as_deref().unwrap_or("-")
    );
    if !args.watch {
        println!("follow it: payplane watch {service} -n {}", target.namespace);
        return Ok(ExitCode::SUCCESS);
    }
    follow(&target, &rollout, &revision, None, false).await
}

async fn follow(
    target: &Target,
    rollout: &Rollout,
    revision: &str,
    timeout: Option<Duration>,
    stop_at_freeze: bool,
) -> Result<ExitCode> {
    let service = view::service_of(rollout);
    let how = Follow {
        stop_at_freeze,
        timeout,
    };
    let end = watch::follow(target, rollout, revision, how).await?;
    let code = match &end {
        Some(Outcome::Promoted) => {
            println!("{service}: revision {revision} promoted");
            Outcome::PROMOTED
        }
        Some(o @ Outcome::RolledBack { reason }) => {
            println!("{service}: revision {revision} rolled back: {reason}");
            o.exit_code()
        }
        Some(o @ Outcome::Paused { reason }) => {
            println!("{service}: revision {revision} paused: {reason}");
            o.exit_code()
        }
        Some(o @ Outcome::Invalid { message }) => {
            println!("{service}: the Rollout is invalid: {message}");
            o.exit_code()
        }
        None => {
            println!("{service}: revision {revision} still in progress after {timeout:?}");
            watch::TIMED_OUT
        }
    };
    Ok(ExitCode::from(code))
}

async fn status(args: StatusArgs) -> Result<ExitCode> {
    let target = Target::connect(&args.cluster).await?;
    let rollouts = match &args.service {
        Some(s) => vec![target.rollout(s).await?],
        None => target.rollouts().await?,
    };
    if rollouts.is_empty() {
        println!(
            "no services are released by Rollouts in namespace `{}` (use -n NAMESPACE)",
            target.namespace
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = Vec::new();
    for r in &rollouts {
        let images = target.images(r).await?;
        rows.push((view::row(r, &images), images));
    }
    match (args.output, &args.service) {
        (StatusFormat::Json, _) => {
            let items: Vec<_> = rows.iter().map(|(row, _)| row).collect();
            println!("{}", serde_json::to_string_pretty(&items)?);
        }
        (StatusFormat::Text, Some(_)) => {
            print!("{}", view::detail(&rollouts[0], &rows[0].1, chrono::Utc::now()))
        }
        (StatusFormat::Text, None) => {
            print!(
                "{}",
                view::table(&rows.into_iter().map(|(r, _)| r).collect::<Vec<_>>())
            )
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn watch(args: WatchArgs) -> Result<ExitCode> {
    let target = Target::connect(&args.target.cluster).await?;
    let rollout = target.rollout(&args.target.service).await?;
    let name = &rollout.spec.deployment_name;
    let Some(deployment) = target.deployment(name).await? else {
        bail!(
            "Deployment `{name}` (of Rollout {}) does not exist",
            rollout.name_any()
        );
    };
    let revision = watch::wanted_revision(&deployment)?;
    let st = rollout.status.clone().unwrap_or_default();
    if st.phase == Phase::Healthy && st.stable_revision.as_deref() == Some(revision.as_str()) {
        println!(
            "no release of {} in flight: the stable runs revision {revision}",
            view::service_of(&rollout)
        );
        return Ok(ExitCode::SUCCESS);
    }
    follow(&target, &rollout, &revision, args.timeout, args.stop_at_freeze).await
}

/// Sends a one-shot request and reports what the controller made of it.
async fn request(args: &ServiceArgs, verb: Verb) -> Result<ExitCode> {
    let target = Target::connect(&args.cluster).await?;
    let rollout = target.rollout(&args.service).await?;
    let service = view::service_of(&rollout);
    view::check_request(verb, &service, &rollout.status.clone().unwrap_or_default())
        .map_err(anyhow::Error::msg)?;
    target.request(&rollout.name_any(), verb.annotation()).await?;
    let after = taken(&target, &rollout, REQUEST_ANNOTATION).await?;
    report_state(&service, verb.annotation(), &after);
    Ok(ExitCode::SUCCESS)
}

async fn pause(args: ServiceArgs) -> Result<ExitCode> {
    let target = Target::connect(&args.cluster).await?;
    let rollout = target.rollout(&args.service).await?;
    let service = view::service_of(&rollout);
    if rollout.spec.paused {
        println!("{service} is already paused (`payplane resume {service}` to go on)");
        return Ok(ExitCode::SUCCESS);
    }
    target
        .patch_rollout(&rollout.name_any(), json!({"spec": {"paused": true}}))
        .await?;
    println!(
        "{service} paused: no step advances until `payplane resume {service}` (abort and analyses still act)"
    );
    Ok(ExitCode::SUCCESS)
}

async fn resume(args: ServiceArgs) -> Result<ExitCode> {
    let target = Target::connect(&args.cluster).await?;
    let rollout = target.rollout(&args.service).await?;
    let service = view::service_of(&rollout);
    if rollout.spec.paused {
        target
            .patch_rollout(&rollout.name_any(), json!({"spec": {"paused": false}}))
            .await?;
        println!("{service}: spec.paused cleared, releases advance again");
        return Ok(ExitCode::SUCCESS);
    }
    request(&args, Verb::Resume).await
}

async fn undo(args: UndoArgs) -> Result<ExitCode> {
    let target = Target::connect(&args.target.cluster).await?;
    let rollout = target.rollout(&args.target.service).await?;
    let service = view::service_of(&rollout);
    let value = match args.to_revision {
        Some(n) if n > 0 => format!("undo:{n}"),
        Some(n) => bail!("--to-revision {n}: release numbers start at 1 (`payplane history {service}`)"),
        None => "undo".to_owned(),
    };
    let name = rollout.spec.deployment_name.clone();
    let before = match target.deployment(&name).await? {
        Some(d) => watch::wanted_revision(&d)?,
        None => bail!(
            "Deployment `{name}` (of Rollout {}) does not exist",
            rollout.name_any()
        ),
    };
    target.request(&rollout.name_any(), &value).await?;
    taken(&target, &rollout, REQUEST_ANNOTATION).await?;
    let after = match target.deployment(&name).await? {
        Some(d) => watch::wanted_revision(&d)?,
        None => bail!("Deployment `{name}` disappeared"),
    };
    if after == before {
        bail!(
            "the controller did not undo {service}: no kept revision matched (see `kubectl get events -n {} \
             --field-selector involvedObject.name={}` for UndoFailed; `payplane history {service}` lists releases)",
            target.namespace,
            rollout.name_any()
        );
    }
    println!(
        "{service}: going back to revision {after} (from {before}), released through the Rollout's steps"
    );
    if args.watch {
        let fresh = target.rollout(&rollout.name_any()).await?;
        return follow(&target, &fresh, &after, None, false).await;
    }
    Ok(ExitCode::SUCCESS)
}

async fn approve(args: ServiceArgs) -> Result<ExitCode> {
    let target = Target::connect(&args.cluster).await?;
    let rollout = target.rollout(&args.service).await?;
    let service = view::service_of(&rollout);
    let st = rollout.status.clone().unwrap_or_default();
    let step = st
        .current_step_index
        .and_then(|i| rollout.spec.strategy.canary.steps.get(i as usize))
        .and_then(|s| s.approval.clone());
    let (Phase::Paused, Some(step)) = (st.phase, step) else {
        bail!(
            "{service} is not waiting for an approval ({:?}{})",
            st.phase,
            st.message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        );
    };
    let (me, groups) = target.whoami().await?;
    view::check_approver(&step, st.released_by.as_deref(), &me, &groups).map_err(anyhow::Error::msg)?;
    // Only the groups the step names, and only those the apiserver says are ours (the policy
    // refuses any other).
    let named: Vec<&str> = step
        .approvers
        .iter()
        .filter_map(|a| a.strip_prefix("group:"))
        .collect();
    let mine: Vec<&str> = groups
        .iter()
        .map(String::as_str)
        .filter(|g| named.contains(g))
        .collect();
    let mut annotations = json!({APPROVED_BY_ANNOTATION: me});
    if !mine.is_empty() {
        annotations[APPROVER_GROUPS_ANNOTATION] = json!(mine.join(","));
    }
    target
        .patch_rollout(
            &rollout.name_any(),
            json!({"metadata": {"annotations": annotations}}),
        )
        .await?;
    let after = taken(&target, &rollout, APPROVED_BY_ANNOTATION).await?;
    let step_index = st.current_step_index.unwrap_or(0);
    let recorded = after
        .status
        .as_ref()
        .is_some_and(|s| s.approvals.iter().any(|a| a.by == me && a.step == step_index));
    if !recorded {
        bail!(
            "the controller did not accept the approval: {}",
            after
                .status
                .and_then(|s| s.message)
                .unwrap_or_else(|| "no reason given".into())
        );
    }
    println!(
        "{service}: step {} approved by {me} (release started by {})",
        step_index + 1,
        st.released_by.as_deref().unwrap_or("unknown")
    );
    Ok(ExitCode::SUCCESS)
}

/// Waits until the controller removed `annotation` (it consumes requests and approvals),
/// returning the Rollout as it is then.
async fn taken(target: &Target, rollout: &Rollout, annotation: &str) -> Result<Rollout> {
    let api = target.rollouts_api();
    let name = rollout.name_any();
    let deadline = tokio::time::Instant::now() + TAKE_TIMEOUT;
    loop {
        let now = api.get(&name).await.map_err(|e| {
            crate::cluster::explain(e, "get", "rollouts.payplane.io", Some(&target.namespace))
        })?;
        if !now.annotations().contains_key(annotation) {
            return Ok(now);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "the rollout controller has not taken the request in {}s: is it running (`kubectl get pods -A \
                 -l app.kubernetes.io/name=rollout-controller`) and watching namespace `{}`? The request stays on \
                 Rollout {name} and is handled when it is",
                TAKE_TIMEOUT.as_secs(),
                target.namespace
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn report_state(service: &str, what: &str, rollout: &Rollout) {
    let st = rollout.status.clone().unwrap_or_default();
    println!(
        "{service}: {what} taken; now {:?}{}",
        st.phase,
        st.message.map(|m| format!(": {m}")).unwrap_or_default()
    );
}
