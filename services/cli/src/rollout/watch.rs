//! `payplane watch`: follows one release live — a progress bar per step, the analyses'
//! measurements as they come — until it is promoted, rolled back or waits for a person.

use std::{collections::HashSet, io::IsTerminal, time::Duration};

use anyhow::{Result, bail};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use kube::runtime::watcher;
use payplane_rollout_controller::{
    crd::{CanaryStep, MeasurementPhase, Phase, Rollout, RolloutStatus},
    reconcile::template_hash,
};

use super::{
    target::Target,
    view::{self, Outcome},
};

/// Exit code when `--timeout` passes before the release ends.
pub const TIMED_OUT: u8 = 5;

/// How to follow.
#[derive(Debug, Clone, Copy)]
pub struct Follow {
    /// Also stop when a freeze window holds the release.
    pub stop_at_freeze: bool,
    pub timeout: Option<Duration>,
}

/// The pod-template hash the Deployment asks for now: the revision a release is about.
pub fn wanted_revision(deployment: &k8s_openapi::api::apps::v1::Deployment) -> Result<String> {
    Ok(template_hash(&serde_json::to_value(&deployment.spec.template)?))
}

/// Follows the release of `revision` on `rollout` until it ends; `None` on timeout.
pub async fn follow(
    target: &Target,
    rollout: &Rollout,
    revision: &str,
    how: Follow,
) -> Result<Option<Outcome>> {
    let name = rollout.metadata.name.clone().unwrap_or_default();
    let steps = rollout.spec.strategy.canary.steps.clone();
    let mut screen = Screen::new(&steps);
    let mut updates = watcher::watch_object(target.rollouts_api(), &name).boxed();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let deadline = how.timeout.map(|t| tokio::time::Instant::now() + t);
    let mut last: Option<RolloutStatus> = rollout.status.clone();
    loop {
        if let Some(st) = &last {
            screen.show(st, revision, Utc::now());
            if let Some(end) = view::outcome(&steps, st, revision, how.stop_at_freeze) {
                screen.finish();
                return Ok(Some(end));
            }
        }
        tokio::select! {
            update = updates.next() => match update {
                Some(Ok(Some(r))) => last = r.status,
                Some(Ok(None)) => bail!("the Rollout {name} was deleted while being watched"),
                // The watcher re-lists by itself after an error; say so once and go on.
                Some(Err(e)) => screen.line(&format!("(watch interrupted: {e}; reconnecting)")),
                None => bail!("the watch of Rollout {name} ended"),
            },
            _ = tick.tick() => {}
            () = sleep_until(deadline) => {
                screen.finish();
                return Ok(None);
            }
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// A bar per step on a terminal; on a pipe, a line per change (for CI logs).
struct Screen {
    multi: MultiProgress,
    bars: Vec<ProgressBar>,
    labels: Vec<String>,
    steps: Vec<CanaryStep>,
    terminal: bool,
    seen: HashSet<(String, String, String)>,
    last_phase: Option<String>,
    last_step: Option<usize>,
}

impl Screen {
    fn new(steps: &[CanaryStep]) -> Self {
        let terminal = std::io::stdout().is_terminal();
        let multi = MultiProgress::with_draw_target(if terminal {
            ProgressDrawTarget::stdout()
        } else {
            ProgressDrawTarget::hidden()
        });
        let style = ProgressStyle::with_template("{prefix:32} [{bar:24}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        let labels: Vec<String> = steps.iter().map(view::step_label).collect();
        let bars = labels
            .iter()
            .enumerate()
            .map(|(i, label)| {
                let bar = multi.add(ProgressBar::new(1).with_style(style.clone()));
                bar.set_prefix(format!("  {}. {label}", i + 1));
                bar
            })
            .collect();
        Self {
            multi,
            bars,
            labels,
            steps: steps.to_vec(),
            terminal,
            seen: HashSet::new(),
            last_phase: None,
            last_step: None,
        }
    }

    fn line(&self, text: &str) {
        if self.terminal {
            let _ = self.multi.println(text);
        } else {
            println!("{text}");
        }
    }

    fn show(&mut self, st: &RolloutStatus, revision: &str, now: DateTime<Utc>) {
        let ours = st.canary_revision.as_deref() == Some(revision);
        let phase = format!(
            "{:?}{}",
            st.phase,
            st.message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        );
        if self.last_phase.as_ref() != Some(&phase) {
            self.line(&format!("{}  {phase}", now.format("%H:%M:%S")));
            self.last_phase = Some(phase);
        }
        for run in &st.analysis_runs {
            for m in &run.metrics {
                for x in &m.measurements {
                    let key = (run.name.clone(), m.name.clone(), x.finished_at.clone());
                    if x.phase != MeasurementPhase::Pending && self.seen.insert(key) {
                        let at = DateTime::parse_from_rfc3339(&x.finished_at)
                            .map(|t| t.with_timezone(&Utc).format("%H:%M:%S").to_string())
                            .unwrap_or_else(|_| x.finished_at.clone());
                        self.line(&format!(
                            "{at}  {}/{}  {:?}  {}",
                            run.name, m.name, x.phase, x.value
                        ));
                    }
                }
            }
        }
        let current = if ours || st.stable_revision.as_deref() == Some(revision) {
            st.current_step_index.unwrap_or(0) as usize
        } else {
            0
        };
        let done = st.phase == Phase::Healthy && st.stable_revision.as_deref() == Some(revision);
        for (i, bar) in self.bars.iter().enumerate() {
            let (len, pos, msg) = if done || (ours && i < current) {
                (1, 1, "done".to_owned())
            } else if ours && i == current {
                step_progress(&self.steps[i], st, now)
            } else {
                (1, 0, String::new())
            };
            bar.set_length(len.max(1));
            bar.set_position(pos);
            bar.set_message(msg);
        }
        let step = (ours && current < self.labels.len()).then_some(current);
        if step.is_some() && step != self.last_step {
            self.last_step = step;
            if !self.terminal {
                println!(
                    "{}  step {}/{}: {}",
                    now.format("%H:%M:%S"),
                    current + 1,
                    self.labels.len(),
                    self.labels[current]
                );
            }
        }
    }

    fn finish(&self) {
        for bar in &self.bars {
            bar.abandon();
        }
    }
}

/// (length, position, message) of the bar of the step in progress.
fn step_progress(step: &CanaryStep, st: &RolloutStatus, now: DateTime<Utc>) -> (u64, u64, String) {
    let elapsed = st
        .step_started_at
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| (now - t.with_timezone(&Utc)).num_seconds().max(0) as u64)
        .unwrap_or(0);
    if step.set_weight.is_some() {
        let desired = st.desired_weight.max(1) as u64;
        return (
            desired,
            (st.weight.max(0) as u64).min(desired),
            format!(
                "{}% of requests on the canary ({} canary, {} stable pods)",
                st.weight, st.canary_replicas, st.stable_replicas
            ),
        );
    }
    if let Some(p) = &step.pause {
        return match p
            .duration
            .as_deref()
            .and_then(|d| humantime::parse_duration(d).ok())
        {
            Some(total) => (
                total.as_secs().max(1),
                elapsed.min(total.as_secs()),
                format!("{elapsed}s of {}s", total.as_secs()),
            ),
            None => (1, 0, "waiting for `payplane promote`".to_owned()),
        };
    }
    if step.analysis.is_some() {
        return (1, 0, format!("analysing for {elapsed}s"));
    }
    if step.approval.is_some() {
        return (1, 0, "waiting for `payplane approve`".to_owned());
    }
    (1, 0, String::new())
}

#[cfg(test)]
mod tests {
    use payplane_rollout_controller::crd::PauseStep;

    use super::*;

    #[test]
    fn the_step_in_progress_shows_how_far_it_is() {
        let now = DateTime::parse_from_rfc3339("2026-11-22T10:00:30Z")
            .unwrap()
            .with_timezone(&Utc);
        let st = RolloutStatus {
            step_started_at: Some("2026-11-22T10:00:00Z".into()),
            weight: 20,
            desired_weight: 33,
            canary_replicas: 1,
            stable_replicas: 2,
            ..Default::default()
        };
        let weight = CanaryStep {
            set_weight: Some(33),
            ..Default::default()
        };
        let (len, pos, msg) = step_progress(&weight, &st, now);
        assert_eq!((len, pos), (33, 20));
        assert!(msg.contains("1 canary, 2 stable"), "{msg}");
        let pause = CanaryStep {
            pause: Some(PauseStep {
                duration: Some("1m".into()),
            }),
            ..Default::default()
        };
        assert_eq!(step_progress(&pause, &st, now), (60, 30, "30s of 60s".to_owned()));
        let forever = CanaryStep {
            pause: Some(PauseStep { duration: None }),
            ..Default::default()
        };
        assert!(step_progress(&forever, &st, now).2.contains("payplane promote"));
    }
}
