//! The decision: rule tree → candidate channels → eligibility → elimination and recovery
//! probes → fixed / priority / volume split / success rate with exploration. Pure and in memory:
//! the clock and the random source come from the caller, so simulations replay exactly.

use std::{cell::OnceCell, fmt::Write as _, sync::Arc};

use chrono::{DateTime, Timelike, Utc};
use rand::Rng;

use super::{
    policy::{Channel, Conditions, Method, Policy, RouteTarget, Rule},
    stats::{ChannelStats, bucket_index, llr, smoothed},
};

// How a drop is told from noise. A window's rate reacts slowly (a 100-outcome window at 95%
// needs ~15 outcomes at 60% to fall 5 points, more when the peer's estimate is low), and a test on
// it fast enough to catch a drop also fires on a healthy 90% channel beside a 95% one. Instead
// each outcome feeds Page's CUSUM of the Bernoulli log-likelihood ratio of "rate b - 2·min_gap"
// against "rate b - min_gap/2" (b: the best active peer's window rate): the optimal sequential
// detector of a change between two rates, O(1) per outcome (one CAS on an atomic word), and the
// outcomes since the sum last left zero estimate the change point. Thresholds in nats (ln of the
// likelihood ratio), set with `routing-bench brownout` and the seeded tests in `domain::tests`:
// - past SUSPECT_NATS the channel is suspected until the sum returns to zero, and its score is
//   at most its rate since the change, so success-rate routing moves its traffic (reversible
//   and cheap: at worst the payments go to the second-best channel for a while). A 95% → 60%
//   drop beside a 90% peer is suspected after a median 14 outcomes (p90 33);
// - past ELIMINATE_NATS it is eliminated. That CUSUM is judged against the peer's Wilson lower
//   bound rather than its window rate, since a lucky peer window (0.99 for a 95% channel) would
//   otherwise make a healthy 90% channel look dropped: no false elimination in 2·10^6 outcomes
//   of a 90% channel beside a 95% one, at the price of a slower elimination (median ~100
//   outcomes after the drop; by then the traffic has long moved);
// - an eliminated channel is readmitted once its probes give RECOVER_NATS for "b - min_gap/4"
//   against "b - 1.5·min_gap", judged outcome by outcome: a recovered 95% channel after a median
//   25 probes, a 60% one by luck in under 1% of 200-probe runs (fixed batches of 20 let a 60%
//   channel back a few times per hundred brownouts).
const SUSPECT_NATS: f64 = 3.0;
const ELIMINATE_NATS: f64 = 12.0;
const RECOVER_NATS: f64 = 5.0;

/// A payment to route, validated by the caller (positive amount, known currency).
#[derive(Clone, Debug)]
pub struct RouteInput<'a> {
    pub amount: i64,
    pub currency: &'a str,
    pub method: Method,
    /// Digits only; empty when unknown.
    pub card_bin: &'a str,
    pub merchant: &'a str,
    pub scene: &'a str,
    pub excluded: &'a [String],
}

/// When the decision happens: milliseconds since the Unix epoch (for probe pacing and
/// elimination times) and the wall-clock instant (for time-of-day rules).
#[derive(Clone, Copy, Debug)]
pub struct Now {
    pub ms: u64,
    pub utc: DateTime<Utc>,
}

impl Now {
    pub fn system() -> Self {
        let utc = Utc::now();
        Self {
            ms: utc.timestamp_millis().max(0) as u64,
            utc,
        }
    }

    pub fn from_ms(ms: u64) -> Self {
        let utc = DateTime::<Utc>::from_timestamp_millis(ms as i64).unwrap_or_default();
        Self { ms, utc }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Strategy {
    Fixed,
    Priority,
    VolumeSplit,
    SuccessRate,
    Exploration,
    RecoveryProbe,
}

impl Strategy {
    pub const ALL: [Strategy; 6] = [
        Strategy::Fixed,
        Strategy::Priority,
        Strategy::VolumeSplit,
        Strategy::SuccessRate,
        Strategy::Exploration,
        Strategy::RecoveryProbe,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Strategy::Fixed => "fixed",
            Strategy::Priority => "priority",
            Strategy::VolumeSplit => "volume_split",
            Strategy::SuccessRate => "success_rate",
            Strategy::Exploration => "exploration",
            Strategy::RecoveryProbe => "recovery_probe",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// Index into the policy's channels.
    pub channel: usize,
    pub fee: i64,
    pub strategy: Strategy,
    pub rule: String,
    /// The chosen channel's success-rate estimate, when the strategy used one.
    pub score: f64,
    pub reason: String,
}

/// Why no channel can take a payment; the first applicable reason in the order currency,
/// method, amount limit, excluded, disabled, eliminated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoRoute {
    pub kind: NoRouteKind,
    pub rule: String,
    /// One line per candidate channel: why it could not take the payment.
    pub channels: Vec<(String, String)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoRouteKind {
    Currency,
    Method,
    AmountLimit,
    Excluded,
    Disabled,
    AllEliminated,
}

impl NoRouteKind {
    pub fn code(self) -> &'static str {
        match self {
            NoRouteKind::Currency => "NO_CHANNEL_FOR_CURRENCY",
            NoRouteKind::Method => "NO_CHANNEL_FOR_METHOD",
            NoRouteKind::AmountLimit => "AMOUNT_OUTSIDE_CHANNEL_LIMITS",
            NoRouteKind::Excluded => "ALL_CHANNELS_EXCLUDED",
            NoRouteKind::Disabled => "ALL_CHANNELS_DISABLED",
            NoRouteKind::AllEliminated => "ALL_CHANNELS_ELIMINATED",
        }
    }
}

impl std::fmt::Display for NoRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.kind {
            NoRouteKind::Currency => "no channel supports the currency",
            NoRouteKind::Method => "no channel supports the payment method in this currency",
            NoRouteKind::AmountLimit => "the amount is outside every channel's limits",
            NoRouteKind::Excluded => "every eligible channel is excluded by the request",
            NoRouteKind::Disabled => "every eligible channel is disabled",
            NoRouteKind::AllEliminated => "every eligible channel is eliminated for a low success rate",
        };
        write!(f, "{what} (rule {}): ", self.rule)?;
        let lines: Vec<String> = self
            .channels
            .iter()
            .map(|(c, why)| format!("{c}: {why}"))
            .collect();
        f.write_str(&lines.join("; "))
    }
}

/// Why one channel is not eligible, ordered by how fundamental the reason is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ineligible {
    Currency,
    Method,
    Amount,
    Excluded,
    Disabled,
}

fn eligibility(c: &Channel, input: &RouteInput<'_>) -> Result<(), (Ineligible, String)> {
    if !c.supports_currency(input.currency) {
        return Err((
            Ineligible::Currency,
            format!("does not support {}", input.currency),
        ));
    }
    if !c.supports_method(input.method) {
        return Err((
            Ineligible::Method,
            format!("does not support {}", input.method.name()),
        ));
    }
    if input.amount < c.min_amount || input.amount > c.max_amount {
        return Err((
            Ineligible::Amount,
            format!(
                "amount {} is outside its limits {}..={}",
                input.amount, c.min_amount, c.max_amount
            ),
        ));
    }
    if input.excluded.contains(&c.id) {
        return Err((Ineligible::Excluded, "excluded by the request".to_owned()));
    }
    if !c.enabled {
        return Err((Ineligible::Disabled, "disabled in the policy".to_owned()));
    }
    Ok(())
}

/// A policy with the outcome statistics of its channels: what a decision reads.
#[derive(Debug)]
pub struct Engine {
    pub policy: Policy,
    /// Parallel to `policy.channels`.
    pub stats: Vec<Arc<ChannelStats>>,
    peers: Vec<Vec<usize>>,
}

impl Engine {
    /// An engine for `policy`, keeping the statistics of channels that `previous` already had
    /// (same id and window sizes), so that a policy reload does not forget what was learnt.
    pub fn new(policy: Policy, previous: Option<&Engine>) -> Self {
        let sr = &policy.success_rate;
        let stats = policy
            .channels
            .iter()
            .map(|c| {
                previous
                    .and_then(|p| p.policy.channel_index(&c.id).map(|i| p.stats[i].clone()))
                    .filter(|s| {
                        s.overall.capacity() == sr.window
                            && s.probes.capacity() == sr.elimination.recovery_samples
                    })
                    .unwrap_or_else(|| {
                        Arc::new(ChannelStats::new(sr.window, sr.elimination.recovery_samples))
                    })
            })
            .collect();
        let peers = policy.peers();
        Self { policy, stats, peers }
    }

    /// Chooses the channel for a payment.
    pub fn route<R: Rng + ?Sized>(
        &self,
        input: &RouteInput<'_>,
        now: Now,
        rng: &mut R,
    ) -> Result<Decision, NoRoute> {
        let local_minute = OnceCell::new();
        let minute = || {
            *local_minute.get_or_init(|| {
                let local = now.utc.with_timezone(&self.policy.time_zone);
                (local.hour() * 60 + local.minute()) as u16
            })
        };
        let matched = find_rule(&self.policy.rules, input, &minute);
        let (rule_name, target, use_sr) = match matched {
            Some(rule) => (
                rule.name.as_str(),
                rule.route.as_ref().expect("matched rules have a route"),
                rule.success_rate,
            ),
            None => (
                "default",
                &self.policy.default_route,
                self.policy.success_rate.enabled,
            ),
        };
        match self.route_target(input, now, rng, rule_name, target, use_sr) {
            Ok(d) => Ok(d),
            Err(no_route) if matched.is_some() => {
                // The matched rule's channels cannot take it: the default route is the fallback.
                let mut d = self
                    .route_target(
                        input,
                        now,
                        rng,
                        "default",
                        &self.policy.default_route,
                        self.policy.success_rate.enabled,
                    )
                    .map_err(|mut e| {
                        e.channels.splice(0..0, no_route.channels.iter().cloned());
                        e.rule = format!("{} then default", no_route.rule);
                        e
                    })?;
                d.reason = format!(
                    "rule {rule_name} had no eligible channel; fell back to the default route: {}",
                    d.reason
                );
                Ok(d)
            }
            Err(e) => Err(e),
        }
    }

    fn route_target<R: Rng + ?Sized>(
        &self,
        input: &RouteInput<'_>,
        now: Now,
        rng: &mut R,
        rule: &str,
        target: &RouteTarget,
        use_sr: bool,
    ) -> Result<Decision, NoRoute> {
        let elimination = &self.policy.success_rate.elimination;
        let candidates = target.channels();
        let mut active: Vec<usize> = Vec::with_capacity(candidates.len());
        let mut eliminated: Vec<usize> = Vec::new();
        let mut worst: Option<Ineligible> = None;
        let mut why: Vec<(String, String)> = Vec::new();
        for &c in &candidates {
            let channel = &self.policy.channels[c];
            match eligibility(channel, input) {
                Ok(()) if elimination.enabled && self.stats[c].is_eliminated() => eliminated.push(c),
                Ok(()) => active.push(c),
                Err((kind, reason)) => {
                    // Report the reason that got furthest: a channel that has the currency but
                    // not the method says more than one without the currency.
                    worst = Some(worst.map_or(kind, |w| w.max(kind)));
                    why.push((channel.id.clone(), reason));
                }
            }
        }

        // A due recovery probe goes first, so that a recovered channel is noticed in time.
        for &c in &eliminated {
            if self.stats[c].claim_probe(now.ms, elimination.probe_interval_ms) {
                let (s, n) = self.stats[c].probes.snapshot();
                return Ok(self.decision(
                    input,
                    c,
                    Strategy::RecoveryProbe,
                    rule,
                    if n > 0 { f64::from(s) / f64::from(n) } else { 0.0 },
                    format!(
                        "rule {rule}: recovery probe of eliminated {} ({s}/{n} probes succeeded)",
                        self.policy.channels[c].id
                    ),
                ));
            }
        }

        if active.is_empty() {
            let kind = if !eliminated.is_empty() {
                for &c in &eliminated {
                    why.push((
                        self.policy.channels[c].id.clone(),
                        "eliminated for a low success rate".to_owned(),
                    ));
                }
                NoRouteKind::AllEliminated
            } else {
                match worst {
                    Some(Ineligible::Currency) | None => NoRouteKind::Currency,
                    Some(Ineligible::Method) => NoRouteKind::Method,
                    Some(Ineligible::Amount) => NoRouteKind::AmountLimit,
                    Some(Ineligible::Excluded) => NoRouteKind::Excluded,
                    Some(Ineligible::Disabled) => NoRouteKind::Disabled,
                }
            };
            return Err(NoRoute {
                kind,
                rule: rule.to_owned(),
                channels: why,
            });
        }

        match target {
            RouteTarget::Fixed(c) => Ok(self.decision(
                input,
                *c,
                Strategy::Fixed,
                rule,
                0.0,
                format!("rule {rule}: fixed channel {}", self.policy.channels[*c].id),
            )),
            RouteTarget::Split(split) => {
                let weights: Vec<(usize, u32)> = split
                    .iter()
                    .filter(|(c, _)| active.contains(c))
                    .map(|(c, w)| (*c, u32::from(*w)))
                    .collect();
                let total: u32 = weights.iter().map(|(_, w)| w).sum();
                let chosen = if total == 0 {
                    weights[rng.random_range(0..weights.len())].0
                } else {
                    let mut draw = rng.random_range(0..total);
                    let mut chosen = weights[0].0;
                    for (c, w) in &weights {
                        if draw < *w {
                            chosen = *c;
                            break;
                        }
                        draw -= w;
                    }
                    chosen
                };
                let mut reason = format!("rule {rule}: split ");
                let shares: Vec<String> = weights.iter().map(|(_, w)| w.to_string()).collect();
                reason.push_str(&shares.join("/"));
                let _ = write!(reason, " drew {}", self.policy.channels[chosen].id);
                if weights.len() < split.len() {
                    reason.push_str(" (ineligible or eliminated channels left out)");
                }
                Ok(self.decision(input, chosen, Strategy::VolumeSplit, rule, 0.0, reason))
            }
            RouteTarget::Priority(_) if !use_sr || active.len() == 1 => {
                let c = active[0];
                Ok(self.decision(
                    input,
                    c,
                    Strategy::Priority,
                    rule,
                    0.0,
                    format!(
                        "rule {rule}: first eligible channel of the priority list is {}",
                        self.policy.channels[c].id
                    ),
                ))
            }
            RouteTarget::Priority(_) => {
                let sr = &self.policy.success_rate;
                let bucket = bucket_index(input.method, input.currency);
                if sr.exploration_percent > 0.0 && rng.random::<f64>() * 100.0 < sr.exploration_percent {
                    let c = active[rng.random_range(0..active.len())];
                    let score = self.score(c, bucket);
                    return Ok(self.decision(
                        input,
                        c,
                        Strategy::Exploration,
                        rule,
                        score,
                        format!(
                            "rule {rule}: exploration ({}% of decisions) drew {}",
                            sr.exploration_percent, self.policy.channels[c].id
                        ),
                    ));
                }
                // Highest score wins; the priority order breaks ties.
                let mut best = active[0];
                let mut best_score = self.score(best, bucket);
                let mut second: Option<(usize, f64)> = None;
                for &c in &active[1..] {
                    let s = self.score(c, bucket);
                    if s > best_score + 1e-12 {
                        second = Some((best, best_score));
                        best = c;
                        best_score = s;
                    } else if second.is_none_or(|(_, t)| s > t) {
                        second = Some((c, s));
                    }
                }
                let mut reason = format!(
                    "rule {rule}: success rate {} {best_score:.3}",
                    self.policy.channels[best].id
                );
                if let Some((c, s)) = second {
                    let _ = write!(reason, " over {} {s:.3}", self.policy.channels[c].id);
                }
                Ok(self.decision(input, best, Strategy::SuccessRate, rule, best_score, reason))
            }
        }
    }

    fn decision(
        &self,
        input: &RouteInput<'_>,
        channel: usize,
        strategy: Strategy,
        rule: &str,
        score: f64,
        reason: String,
    ) -> Decision {
        Decision {
            channel,
            fee: self.policy.channels[channel].fee.compute(input.amount),
            strategy,
            rule: rule.to_owned(),
            score,
            reason,
        }
    }

    /// The success-rate estimate of `channel` for a bucket: the bucket's own window once it has
    /// enough outcomes, else the channel-wide window; both smoothed towards the prior. While
    /// the channel is suspected of a drop, at most its rate since the drop began.
    pub fn score(&self, channel: usize, bucket: Option<usize>) -> f64 {
        let sr = &self.policy.success_rate;
        let stats = &self.stats[channel];
        let ((s, n), evidence) = match bucket.map(|b| (b, stats.buckets[b].snapshot())) {
            Some((b, (s, n))) if n >= sr.bucket_min_samples => ((s, n), &stats.bucket_evidence[b]),
            _ => (stats.overall.snapshot(), &stats.evidence),
        };
        let score = smoothed(s, n, sr.prior_success_rate, sr.prior_weight);
        let fast = evidence.fast();
        if fast.suspected {
            score.min(smoothed(
                fast.successes,
                fast.samples,
                sr.prior_success_rate,
                sr.prior_weight,
            ))
        } else {
            score
        }
    }

    /// Whether `channel` is suspected of a drop (its score is its post-change rate).
    pub fn is_suspected(&self, channel: usize) -> bool {
        self.stats[channel].evidence.fast().suspected
    }

    /// Records how a payment went at `channel`, then re-judges its elimination. Returns the
    /// state change, if any, for logs and metrics.
    pub fn record(
        &self,
        channel: usize,
        method: Option<Method>,
        currency: Option<&str>,
        success: bool,
        now_ms: u64,
    ) -> Option<StateChange> {
        let stats = &self.stats[channel];
        let elimination = &self.policy.success_rate.elimination;
        let gap = elimination.min_gap;
        let eliminated = stats.is_eliminated();
        let bucket = method.zip(currency).and_then(|(m, c)| bucket_index(m, c));
        if eliminated {
            stats.probes.record(success);
        } else {
            stats.overall.record(success);
            if let Some(b) = bucket {
                stats.buckets[b].record(success);
            }
        }
        let peer = self.best_peer(channel);
        let best = peer.map(|(rate, _)| rate);
        // The evidence is relative to the best active peer; without one only the floor applies.
        if !eliminated && let Some((b, lower)) = peer {
            stats.evidence.observe(
                success,
                Some(llr(b - gap / 2.0, b - 2.0 * gap)),
                Some(llr(lower - gap / 2.0, lower - 2.0 * gap)),
                SUSPECT_NATS,
            );
            if let Some(k) = bucket {
                // A bucket against the same bucket of its peers where they have one.
                let b = self.best_peer_bucket_rate(channel, k).unwrap_or(b);
                stats.bucket_evidence[k].observe(
                    success,
                    Some(llr(b - gap / 2.0, b - 2.0 * gap)),
                    None,
                    SUSPECT_NATS,
                );
            }
        }
        if !elimination.enabled {
            return None;
        }
        if eliminated {
            let (s, n) = stats.probes.snapshot();
            let p = if n > 0 { f64::from(s) / f64::from(n) } else { 0.0 };
            let sequential = best
                .map(|b| llr(b - gap / 4.0, b - 1.5 * gap))
                .filter(|&pair| pair != (0.0, 0.0));
            let recovered = if let Some(pair) = sequential {
                stats.evidence.observe_probe(success, pair) <= -RECOVER_NATS
                    && p >= elimination.min_success_rate
            } else {
                // No peer to compare with (or no gap to tell): whole batches of probes against
                // the floor, as a sliding judgement would readmit a failing channel by luck.
                if n < elimination.recovery_samples {
                    return None;
                }
                let ok = p >= elimination.min_success_rate && best.is_none_or(|b| p >= b - gap / 4.0);
                if !ok {
                    stats.probes.reset();
                }
                ok
            };
            (recovered && stats.readmit()).then_some(StateChange::Readmitted { rate: p, best })
        } else {
            let (s, n) = stats.overall.snapshot();
            if n < elimination.min_samples {
                return None;
            }
            let p = f64::from(s) / f64::from(n);
            let below_floor = p < elimination.min_success_rate;
            let dropped = stats.evidence.slow() >= ELIMINATE_NATS;
            ((below_floor || dropped) && stats.eliminate(now_ms, elimination.probe_interval_ms))
                .then_some(StateChange::Eliminated { rate: p, best })
        }
    }

    /// The best window rate of a bucket among the channel's active peers whose bucket window
    /// counts (`bucket_min_samples`).
    fn best_peer_bucket_rate(&self, channel: usize, bucket: usize) -> Option<f64> {
        let min = self.policy.success_rate.bucket_min_samples;
        self.peers[channel]
            .iter()
            .filter(|&&p| !self.stats[p].is_eliminated())
            .filter_map(|&p| {
                let (s, n) = self.stats[p].buckets[bucket].snapshot();
                (n >= min).then(|| f64::from(s) / f64::from(n))
            })
            .fold(None, |acc: Option<f64>, r| Some(acc.map_or(r, |a| a.max(r))))
    }

    /// The best raw success rate among the channel's active peers with enough outcomes, and the
    /// best of their Wilson lower bounds at one standard error (what an elimination is judged
    /// against: a peer's window rate is itself noisy, ±2–3 points over 100 outcomes, and a lucky
    /// peer window must not make a healthy channel look like a dropped one).
    fn best_peer(&self, channel: usize) -> Option<(f64, f64)> {
        let min = self.policy.success_rate.elimination.min_samples;
        self.peers[channel]
            .iter()
            .filter(|&&p| !self.stats[p].is_eliminated())
            .filter_map(|&p| {
                let (s, n) = self.stats[p].overall.snapshot();
                (n >= min).then(|| (f64::from(s) / f64::from(n), wilson_lower(s, n)))
            })
            .fold(None, |acc: Option<(f64, f64)>, (r, l)| {
                Some(acc.map_or((r, l), |(a, b)| (a.max(r), b.max(l))))
            })
    }
}

/// The Wilson score lower bound of a success rate, at one standard error.
fn wilson_lower(successes: u32, samples: u32) -> f64 {
    let n = f64::from(samples);
    let p = f64::from(successes) / n;
    let centre = p + 1.0 / (2.0 * n);
    let spread = (p * (1.0 - p) / n + 1.0 / (4.0 * n * n)).sqrt();
    ((centre - spread) / (1.0 + 1.0 / n)).max(0.0)
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StateChange {
    Eliminated { rate: f64, best: Option<f64> },
    Readmitted { rate: f64, best: Option<f64> },
}

/// The first rule (depth first, children before their parent's own route) whose conditions
/// match and that has a route.
fn find_rule<'p>(rules: &'p [Rule], input: &RouteInput<'_>, minute: &dyn Fn() -> u16) -> Option<&'p Rule> {
    for rule in rules {
        if !matches(&rule.when, input, minute) {
            continue;
        }
        if let Some(found) = find_rule(&rule.rules, input, minute) {
            return Some(found);
        }
        if rule.route.is_some() {
            return Some(rule);
        }
    }
    None
}

fn matches(when: &Conditions, input: &RouteInput<'_>, minute: &dyn Fn() -> u16) -> bool {
    when.currencies
        .as_ref()
        .is_none_or(|cs| cs.iter().any(|c| c == input.currency))
        && when.methods.as_ref().is_none_or(|ms| ms.contains(&input.method))
        && when.min_amount.is_none_or(|lo| input.amount >= lo)
        && when.max_amount.is_none_or(|hi| input.amount <= hi)
        && when
            .card_bins
            .as_ref()
            .is_none_or(|bins| bins.iter().any(|b| b.matches(input.card_bin)))
        && when
            .merchants
            .as_ref()
            .is_none_or(|ms| ms.iter().any(|m| m == input.merchant))
        && when
            .scenes
            .as_ref()
            .is_none_or(|ss| ss.iter().any(|s| s == input.scene))
        && when.time_of_day.is_none_or(|w| w.contains(minute()))
}
