//! A brownout simulation in simulated time: two acquirers serve the same payments; one drops
//! from its normal success rate to a brownout rate and later recovers. Payments arrive at a
//! steady rate, outcomes come back after a delay, and the engine's own decisions and
//! statistics do the rest. Used by the simulation test and by `routing-bench brownout`.

use std::collections::VecDeque;

use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::domain::{Engine, Method, Now, RouteInput, StateChange, Strategy, parse_policy};

/// The two-channel policy the simulation runs; `success_rate` settings are the shipped
/// defaults of `policy/default.yaml`.
pub const SIM_POLICY: &str = r#"
time_zone: Asia/Shanghai
channels:
  - id: acquirer-a
    currencies: [CNY]
    methods: [debit_card]
    fee: { fixed: 0, rate_bps: 30 }
  - id: acquirer-b
    currencies: [CNY]
    methods: [debit_card]
    fee: { fixed: 0, rate_bps: 45 }
success_rate:
  enabled: true
  window: 100
  bucket_min_samples: 30
  exploration_percent: 3
  prior_success_rate: 0.9
  prior_weight: 5
  elimination:
    enabled: true
    min_gap: 0.15
    min_success_rate: 0.2
    min_samples: 20
    probe_interval_ms: 1000
    recovery_samples: 20
default_route:
  priority: [acquirer-a, acquirer-b]
"#;

#[derive(Clone, Debug)]
pub struct Scenario {
    pub seed: u64,
    /// Payments per second.
    pub rate_per_s: u32,
    /// Delay between a decision and its outcome report.
    pub feedback_delay_ms: u64,
    pub a_normal: f64,
    pub a_brownout: f64,
    pub b_rate: f64,
    pub brownout_start_s: u64,
    pub recovery_start_s: u64,
    pub end_s: u64,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            seed: 1,
            rate_per_s: 100,
            feedback_delay_ms: 300,
            a_normal: 0.95,
            a_brownout: 0.60,
            b_rate: 0.90,
            brownout_start_s: 60,
            recovery_start_s: 180,
            end_s: 300,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub decisions: u64,
    pub exploration: u64,
    pub probes: u64,
    /// Acquirer A's share of all decisions in each simulated second.
    pub a_share_per_s: Vec<f64>,
    /// A's share over the 30 s before the brownout.
    pub a_share_before: f64,
    /// Attempts on A after the brownout began until the engine chose A for the last time during
    /// the brownout other than to explore or probe it (on its success rate, or as the only
    /// active channel); `None` when it never did.
    pub detection_attempts: Option<u64>,
    /// The same moment counted in A's outcomes reported since the brownout began (the
    /// attempts above include those still in flight, waiting for their outcome).
    pub detection_outcomes: Option<u64>,
    /// Attempts on A after the brownout began until A was eliminated.
    pub elimination_attempts: Option<u64>,
    pub elimination_after_s: Option<f64>,
    /// Share of A's pre-brownout traffic moved away in the 10 s ending 60 s into the brownout.
    pub moved_away_at_60s: f64,
    /// Seconds into the brownout until A's share first fell to 10% of its share before.
    pub moved_90_after_s: Option<u64>,
    /// Seconds after the recovery until A was readmitted.
    pub readmitted_after_s: Option<f64>,
    /// Readmissions of A while it was still browned out (lucky probe batches).
    pub readmitted_during_brownout: u32,
    /// Eliminations of a healthy channel: B at any time, A before the brownout or after its
    /// recovery was readmitted.
    pub false_eliminations: u32,
    /// A's share over the last 30 s of the run.
    pub a_share_end: f64,
}

impl Report {
    pub fn exploration_share(&self) -> f64 {
        self.exploration as f64 / self.decisions.max(1) as f64
    }
}

pub fn run(scenario: &Scenario) -> Report {
    let policy = parse_policy(SIM_POLICY).expect("the simulation policy is valid");
    let engine = Engine::new(policy, None);
    let a = 0usize;
    let mut rng = StdRng::seed_from_u64(scenario.seed);
    let start_ms: u64 = 1_795_320_000_000;
    let step_ms = 1000 / u64::from(scenario.rate_per_s.max(1));
    let mut pending: VecDeque<(u64, usize, bool)> = VecDeque::new();
    let mut report = Report::default();
    let seconds = scenario.end_s as usize;
    let mut per_s_total = vec![0u64; seconds];
    let mut per_s_a = vec![0u64; seconds];
    let brownout_ms = scenario.brownout_start_s * 1000;
    let recovery_ms = scenario.recovery_start_s * 1000;
    let mut attempts_on_a_since_brownout = 0u64;
    let mut outcomes_on_a_since_brownout = 0u64;

    let mut t = 0u64;
    while t < scenario.end_s * 1000 {
        let now = start_ms + t;
        while let Some(&(due, channel, success)) = pending.front() {
            if due > now {
                break;
            }
            pending.pop_front();
            let change = engine.record(channel, Some(Method::DebitCard), Some("CNY"), success, due);
            // Outcomes of decisions made during the brownout (not those still arriving from before).
            if channel == a && due >= start_ms + brownout_ms + scenario.feedback_delay_ms {
                outcomes_on_a_since_brownout += 1;
            }
            let healthy = channel != a || due < start_ms + brownout_ms || report.readmitted_after_s.is_some();
            if healthy && matches!(change, Some(StateChange::Eliminated { .. })) {
                report.false_eliminations += 1;
            }
            if channel == a {
                match change {
                    Some(StateChange::Eliminated { .. })
                        if t >= brownout_ms && report.elimination_attempts.is_none() =>
                    {
                        report.elimination_attempts = Some(attempts_on_a_since_brownout);
                        report.elimination_after_s = Some((t - brownout_ms) as f64 / 1000.0);
                    }
                    Some(StateChange::Readmitted { .. }) if t >= brownout_ms && t < recovery_ms => {
                        report.readmitted_during_brownout += 1;
                    }
                    Some(StateChange::Readmitted { .. })
                        if t >= recovery_ms && report.readmitted_after_s.is_none() =>
                    {
                        report.readmitted_after_s = Some((t - recovery_ms) as f64 / 1000.0);
                    }
                    _ => {}
                }
            }
        }

        let input = RouteInput {
            amount: 10_000,
            currency: "CNY",
            method: Method::DebitCard,
            card_bin: "",
            merchant: "m-sim",
            scene: "ecommerce",
            excluded: &[],
        };
        if let Ok(d) = engine.route(&input, Now::from_ms(now), &mut rng) {
            report.decisions += 1;
            match d.strategy {
                Strategy::Exploration => report.exploration += 1,
                Strategy::RecoveryProbe => report.probes += 1,
                _ => {}
            }
            let second = (t / 1000) as usize;
            per_s_total[second] += 1;
            let rate = if d.channel == a {
                per_s_a[second] += 1;
                if t >= brownout_ms {
                    attempts_on_a_since_brownout += 1;
                }
                if t >= brownout_ms && t < recovery_ms {
                    scenario.a_brownout
                } else {
                    scenario.a_normal
                }
            } else {
                scenario.b_rate
            };
            // Conservative: the last time, during the brownout, that A still got traffic on merit.
            if t >= brownout_ms
                && t < recovery_ms
                && d.channel == a
                && !matches!(d.strategy, Strategy::Exploration | Strategy::RecoveryProbe)
            {
                report.detection_attempts = Some(attempts_on_a_since_brownout);
                report.detection_outcomes = Some(outcomes_on_a_since_brownout);
            }
            pending.push_back((
                now + scenario.feedback_delay_ms,
                d.channel,
                rng.random::<f64>() < rate,
            ));
        }
        t += step_ms;
    }

    report.a_share_per_s = per_s_a
        .iter()
        .zip(&per_s_total)
        .map(|(a, n)| if *n == 0 { 0.0 } else { *a as f64 / *n as f64 })
        .collect();
    let share = |from: u64, to: u64| {
        let (from, to) = (from as usize, (to as usize).min(seconds));
        let a: u64 = per_s_a[from..to].iter().sum();
        let n: u64 = per_s_total[from..to].iter().sum();
        if n == 0 { 0.0 } else { a as f64 / n as f64 }
    };
    let bs = scenario.brownout_start_s;
    report.a_share_before = share(bs.saturating_sub(30), bs);
    let after = share(bs + 50, bs + 60);
    report.moved_away_at_60s = if report.a_share_before > 0.0 {
        1.0 - after / report.a_share_before
    } else {
        0.0
    };
    report.moved_90_after_s = (bs..scenario.recovery_start_s)
        .find(|s| report.a_share_per_s[*s as usize] <= 0.1 * report.a_share_before)
        .map(|s| s - bs);
    report.a_share_end = share(scenario.end_s.saturating_sub(30), scenario.end_s);
    report
}
