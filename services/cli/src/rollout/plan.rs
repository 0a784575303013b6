//! `payplane plan FILE`: starts a coordinated release (a ReleasePlan: several services in order,
//! rolled back together when one fails) and follows it, a line per member transition, until it
//! succeeds, is rolled back or fails. The rollout controller does the releasing.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{Context as _, Result, bail};
use kube::{Api, ResourceExt, api::PostParams};
use payplane_rollout_controller::crd::{
    MemberPhase, MemberStatus, PlanPhase, ReleasePlan, ReleasePlanStatus,
};

use super::{target::Target, view::Outcome, watch::TIMED_OUT};

#[derive(clap::Args, Debug)]
pub struct PlanArgs {
    /// The ReleasePlan, as YAML or JSON (`kind: ReleasePlan`; a new name per release: plans are
    /// immutable).
    pub file: PathBuf,

    /// Create the plan and return at once (follow it later with `kubectl get rp -w`).
    #[arg(long)]
    pub detach: bool,

    /// Give up following after this long (exit code 5), e.g. `30m`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,

    #[command(flatten)]
    pub cluster: super::target::ClusterArgs,
}

/// Reads a ReleasePlan from YAML or JSON and checks what the apiserver would not say clearly.
pub fn parse(text: &str) -> Result<ReleasePlan> {
    let plan: ReleasePlan = serde_saphyr::from_str(text).context("not a ReleasePlan (YAML or JSON)")?;
    if plan.metadata.name.as_deref().unwrap_or_default().is_empty() {
        bail!("the plan needs metadata.name (a new one per release)");
    }
    if plan.spec.services.is_empty() {
        bail!("spec.services is empty: name the Rollouts to release, in order");
    }
    Ok(plan)
}

/// The lines that say what changed between two looks at the plan's status.
pub fn changes(before: &ReleasePlanStatus, now: &ReleasePlanStatus) -> Vec<String> {
    let mut out = Vec::new();
    let none = MemberStatus::default();
    for (i, m) in now.services.iter().enumerate() {
        let was = before.services.get(i).unwrap_or(&none);
        let rolled_back_now = m.rolled_back_at.is_some() && was.rolled_back_at.is_none();
        if m.phase == was.phase && !rolled_back_now {
            continue;
        }
        let line = match m.phase {
            MemberPhase::Pending => continue,
            MemberPhase::Releasing => format!(
                "{}: releasing (stable {})",
                m.rollout,
                m.from_revision.as_deref().unwrap_or("-")
            ),
            MemberPhase::Promoted if m.from_revision == m.to_revision => {
                format!("{}: already at the plan's version", m.rollout)
            }
            MemberPhase::Promoted => format!(
                "{}: promoted {} → {}",
                m.rollout,
                m.from_revision.as_deref().unwrap_or("-"),
                m.to_revision.as_deref().unwrap_or("-")
            ),
            MemberPhase::Aborted if rolled_back_now && was.phase == MemberPhase::Aborted => {
                format!(
                    "{}: restored to {}",
                    m.rollout,
                    m.from_revision.as_deref().unwrap_or("-")
                )
            }
            MemberPhase::Aborted => format!(
                "{}: aborted: {}",
                m.rollout,
                m.message.as_deref().unwrap_or("(no reason given)")
            ),
            MemberPhase::RolledBack => format!(
                "{}: rolled back to {}",
                m.rollout,
                m.from_revision.as_deref().unwrap_or("-")
            ),
        };
        out.push(line);
    }
    if now.phase != before.phase || (now.phase == PlanPhase::Pending && now.message != before.message) {
        let message = now.message.as_deref().unwrap_or_default();
        out.push(match now.phase {
            PlanPhase::Pending if !message.is_empty() => format!("plan not started: {message}"),
            PlanPhase::Pending => "plan pending".into(),
            PlanPhase::Progressing => "plan started".into(),
            PlanPhase::RollingBack => format!("plan rolling back: {message}"),
            PlanPhase::Succeeded => format!("plan succeeded: {message}"),
            PlanPhase::RolledBack => format!("plan rolled back: {message}"),
            PlanPhase::Failed => format!("plan FAILED: {message}"),
        });
    }
    out
}

/// The exit code once the plan has ended (or cannot start), as `payplane watch`'s: 0 succeeded,
/// 1 rolled back or failed, 4 invalid spec. None while it runs.
pub fn exit_code(status: &ReleasePlanStatus) -> Option<u8> {
    match status.phase {
        PlanPhase::Succeeded => Some(Outcome::PROMOTED),
        PlanPhase::RolledBack | PlanPhase::Failed => Some(Outcome::ROLLED_BACK),
        PlanPhase::Pending
            if status
                .conditions
                .iter()
                .any(|c| c.type_ == "InvalidSpec" && c.status == "True") =>
        {
            Some(Outcome::INVALID)
        }
        _ => None,
    }
}

pub async fn run(args: PlanArgs) -> Result<ExitCode> {
    let text =
        std::fs::read_to_string(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let mut plan = parse(&text)?;
    let target = Target::connect(&args.cluster).await?;
    if let Some(ns) = &plan.metadata.namespace
        && *ns != target.namespace
        && args.cluster.namespace.is_some()
    {
        bail!(
            "the file says namespace `{ns}`, --namespace says `{}`",
            target.namespace
        );
    }
    let namespace = plan
        .metadata
        .namespace
        .clone()
        .unwrap_or(target.namespace.clone());
    plan.metadata.namespace = Some(namespace.clone());
    plan.status = None;
    let name = plan.name_any();
    let api: Api<ReleasePlan> = Api::namespaced(target.client.clone(), &namespace);
    match api.create(&PostParams::default(), &plan).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => bail!(
            "a ReleasePlan `{name}` exists already in namespace `{namespace}`: plans are immutable, \
             give this release a new name"
        ),
        Err(e) => {
            return Err(crate::cluster::explain(
                e,
                "create",
                "releaseplans.payplane.io",
                Some(&namespace),
            ));
        }
    }
    let order: Vec<&str> = plan.spec.services.iter().map(|s| s.rollout.as_str()).collect();
    println!("plan {name} created in {namespace}: {}", order.join(" → "));
    if args.detach {
        println!("follow it: kubectl get releaseplan {name} -n {namespace} -w");
        return Ok(ExitCode::SUCCESS);
    }
    let deadline = args.timeout.map(|t| tokio::time::Instant::now() + t);
    let mut last = ReleasePlanStatus::default();
    loop {
        let now = api
            .get(&name)
            .await
            .map_err(|e| crate::cluster::explain(e, "get", "releaseplans.payplane.io", Some(&namespace)))?
            .status
            .unwrap_or_default();
        for line in changes(&last, &now) {
            println!("{line}");
        }
        if let Some(code) = exit_code(&now) {
            return Ok(ExitCode::from(code));
        }
        last = now;
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            println!(
                "plan {name} still {:?} after {:?}",
                last.phase,
                args.timeout.unwrap_or_default()
            );
            return Ok(ExitCode::from(TIMED_OUT));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use payplane_rollout_controller::crd::Condition;

    fn member(rollout: &str, phase: MemberPhase) -> MemberStatus {
        MemberStatus {
            rollout: rollout.into(),
            phase,
            from_revision: Some(format!("{rollout}1")),
            to_revision: Some(format!("{rollout}2")),
            ..Default::default()
        }
    }

    #[test]
    fn a_plan_file_needs_a_name_and_services() {
        let plan = parse(
            "apiVersion: payplane.io/v1alpha1\nkind: ReleasePlan\nmetadata: {name: r1}\n\
             spec:\n  services:\n    - {rollout: ledger, image: '1.1'}\n    - rollout: front\n      env: [{name: V, value: '2'}]\n",
        )
        .unwrap();
        assert_eq!(plan.spec.services[1].env[0].value, "2");
        assert!(
            parse("kind: ReleasePlan\nmetadata: {}\nspec: {services: [{rollout: a, image: x}]}").is_err()
        );
        let e = parse("kind: ReleasePlan\nmetadata: {name: r}\nspec: {services: []}").unwrap_err();
        assert!(e.to_string().contains("spec.services"), "{e}");
    }

    #[test]
    fn each_transition_is_one_line_and_the_end_sets_the_exit_code() {
        let start = ReleasePlanStatus {
            phase: PlanPhase::Progressing,
            services: vec![
                member("ledger", MemberPhase::Releasing),
                member("front", MemberPhase::Pending),
            ],
            ..Default::default()
        };
        assert_eq!(
            changes(&ReleasePlanStatus::default(), &start),
            ["ledger: releasing (stable ledger1)", "plan started"]
        );
        assert_eq!(exit_code(&start), None);
        let mut failing = start.clone();
        failing.phase = PlanPhase::RollingBack;
        failing.message = Some("front failed".into());
        failing.services = vec![
            member("ledger", MemberPhase::Promoted),
            MemberStatus {
                message: Some("progress deadline".into()),
                ..member("front", MemberPhase::Aborted)
            },
        ];
        assert_eq!(
            changes(&start, &failing),
            [
                "ledger: promoted ledger1 → ledger2",
                "front: aborted: progress deadline",
                "plan rolling back: front failed"
            ]
        );
        let mut done = failing.clone();
        done.phase = PlanPhase::RolledBack;
        done.message = Some("front failed; rolled back: ledger".into());
        done.services[0].phase = MemberPhase::RolledBack;
        done.services[1].rolled_back_at = Some("t".into());
        assert_eq!(
            changes(&failing, &done),
            [
                "ledger: rolled back to ledger1",
                "front: restored to front1",
                "plan rolled back: front failed; rolled back: ledger"
            ]
        );
        assert_eq!(exit_code(&done), Some(1));
        let invalid = ReleasePlanStatus {
            message: Some("spec.services[0].rollout: Rollout `x` does not exist".into()),
            conditions: vec![Condition {
                type_: "InvalidSpec".into(),
                status: "True".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(exit_code(&invalid), Some(4));
        assert_eq!(
            changes(&ReleasePlanStatus::default(), &invalid),
            ["plan not started: spec.services[0].rollout: Rollout `x` does not exist"]
        );
        let succeeded = ReleasePlanStatus {
            phase: PlanPhase::Succeeded,
            ..Default::default()
        };
        assert_eq!(exit_code(&succeeded), Some(0));
    }
}
