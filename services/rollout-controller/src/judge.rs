//! The statistical judge: canary against stable, no I/O.
//!
//! - error rates: a one-sided two-proportion z-test (is the canary's failure rate higher?);
//! - latency: a one-sided Mann-Whitney U test (is the canary stochastically slower?), on raw
//!   samples or on histogram buckets (each bucket's upper bound is a tied value, which the tie
//!   correction handles), with the common-language effect size `U / (n1·n2)` as the practical
//!   threshold, as Kayenta's `cles` effect size does;
//! - a minimum sample size: too few requests on either side is [`Verdict::Inconclusive`], never a
//!   pass (Kayenta passes +650% deviations on few points, KY#633).

use std::collections::BTreeSet;

/// The outcome of one judgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    Inconclusive,
}

/// gRPC status codes counted as failures by default. Everything else (OK, INVALID_ARGUMENT,
/// NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION, ABORTED, ...) is a business outcome: a declined
/// payment is the service doing its job.
pub const DEFAULT_FAILURE_CODES: [&str; 5] = [
    "UNAVAILABLE",
    "INTERNAL",
    "DEADLINE_EXCEEDED",
    "UNKNOWN",
    "DATA_LOSS",
];

/// Which gRPC status codes are failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taxonomy {
    failures: BTreeSet<String>,
}

impl Default for Taxonomy {
    fn default() -> Self {
        Self::new(DEFAULT_FAILURE_CODES)
    }
}

impl Taxonomy {
    pub fn new<S: AsRef<str>>(failure_codes: impl IntoIterator<Item = S>) -> Self {
        Self {
            failures: failure_codes
                .into_iter()
                .map(|c| c.as_ref().to_ascii_uppercase())
                .collect(),
        }
    }

    pub fn is_failure(&self, grpc_code: &str) -> bool {
        self.failures.contains(&grpc_code.to_ascii_uppercase())
    }
}

/// The canonical gRPC code names (as `payplane_runtime::code_name` writes them), for validating a
/// configured taxonomy.
pub const GRPC_CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// What one side (canary or stable) served during the window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// Completed calls.
    pub requests: u64,
    /// Calls whose status the taxonomy counts as a failure.
    pub failures: u64,
    /// Latency observations as `(value, count)`: raw samples have count 1; histogram buckets use
    /// the bucket's upper bound (seconds) and its (non-cumulative) count.
    pub latency: Vec<(f64, u64)>,
}

impl Sample {
    pub fn error_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.failures as f64 / self.requests as f64)
    }

    fn latency_count(&self) -> u64 {
        self.latency.iter().map(|(_, c)| c).sum()
    }
}

/// Settings of the judge; see the `JudgeSpec` of the CRD for the user-facing fields.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeConfig {
    /// Confidence of the one-sided tests; a difference counts when p < 1 − confidence.
    pub confidence: f64,
    /// Minimum completed calls on each side before any verdict but an absolute failure.
    pub min_samples: u64,
    /// Largest tolerated increase of the canary's failure rate over the stable's (absolute).
    pub max_error_rate_increase: f64,
    /// Optional absolute floor on the canary's success rate.
    pub min_success_rate: Option<f64>,
    /// Latency: the canary fails when it is significantly slower AND P(canary > stable) reaches
    /// this (0.5 means "no difference"). None disables the latency comparison. The default,
    /// 0.75, asks for a canary slower three calls out of four: on the local cloud a freshly
    /// started, perfectly good version (cold connection pools) measured 0.60–0.70 over its
    /// first hundred calls, while 100 ms added to a 10 ms call measures close to 1.
    pub latency_min_effect: Option<f64>,
}

impl Default for JudgeConfig {
    fn default() -> Self {
        Self {
            confidence: 0.98,
            min_samples: 50,
            max_error_rate_increase: 0.01,
            min_success_rate: None,
            latency_min_effect: Some(0.75),
        }
    }
}

/// A verdict and the evidence behind it (kept in the Rollout's status).
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    pub verdict: Verdict,
    pub summary: String,
}

/// Result of a one-sided two-proportion z-test (H1: canary rate > stable rate).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProportionTest {
    pub z: f64,
    pub p_value: f64,
}

/// One-sided two-proportion z-test with the pooled variance. Both sides need at least one call.
pub fn two_proportion_test(
    canary_failures: u64,
    canary_n: u64,
    stable_failures: u64,
    stable_n: u64,
) -> ProportionTest {
    assert!(
        canary_n > 0 && stable_n > 0,
        "two_proportion_test needs calls on both sides"
    );
    let (x1, n1, x2, n2) = (
        canary_failures as f64,
        canary_n as f64,
        stable_failures as f64,
        stable_n as f64,
    );
    let (p1, p2) = (x1 / n1, x2 / n2);
    let pooled = (x1 + x2) / (n1 + n2);
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    if se == 0.0 {
        // Both rates are 0 or both are 1: no evidence of a difference.
        return ProportionTest {
            z: 0.0,
            p_value: if p1 > p2 { 0.0 } else { 1.0 },
        };
    }
    let z = (p1 - p2) / se;
    ProportionTest {
        z,
        p_value: upper_tail(z),
    }
}

/// Result of a one-sided Mann-Whitney U test (H1: canary values tend to be larger).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannWhitney {
    /// U of the canary: the number of (canary, stable) pairs where the canary is larger, ties ½.
    pub u: f64,
    /// Common-language effect size, P(canary > stable) + ½·P(tie).
    pub cles: f64,
    pub z: f64,
    pub p_value: f64,
}

/// Mann-Whitney U with mid-ranks for ties, the tie-corrected normal approximation and a
/// continuity correction. Inputs are `(value, count)`; both sides must be non-empty.
pub fn mann_whitney(canary: &[(f64, u64)], stable: &[(f64, u64)]) -> MannWhitney {
    let n1: u64 = canary.iter().map(|(_, c)| c).sum();
    let n2: u64 = stable.iter().map(|(_, c)| c).sum();
    assert!(n1 > 0 && n2 > 0, "mann_whitney needs observations on both sides");
    // (value, canary count, stable count), merged and sorted; NaNs are dropped.
    let mut all: Vec<(f64, u64, u64)> = canary
        .iter()
        .filter(|(v, c)| !v.is_nan() && *c > 0)
        .map(|&(v, c)| (v, c, 0))
        .chain(
            stable
                .iter()
                .filter(|(v, c)| !v.is_nan() && *c > 0)
                .map(|&(v, c)| (v, 0, c)),
        )
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut rank_sum, mut below, mut tie_term) = (0.0_f64, 0_u64, 0.0_f64);
    let mut i = 0;
    while i < all.len() {
        let value = all[i].0;
        let (mut c1, mut c2) = (0_u64, 0_u64);
        while i < all.len() && all[i].0 == value {
            c1 += all[i].1;
            c2 += all[i].2;
            i += 1;
        }
        let t = (c1 + c2) as f64;
        // Ranks below+1 ..= below+t share their mean.
        let mid_rank = below as f64 + (t + 1.0) / 2.0;
        rank_sum += c1 as f64 * mid_rank;
        tie_term += t * t * t - t;
        below += c1 + c2;
    }
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let n = n1f + n2f;
    let u = rank_sum - n1f * (n1f + 1.0) / 2.0;
    let mean = n1f * n2f / 2.0;
    let variance = n1f * n2f / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)));
    let cles = u / (n1f * n2f);
    if variance <= 0.0 {
        // Every observation is tied: nothing to tell the two apart.
        return MannWhitney {
            u,
            cles,
            z: 0.0,
            p_value: 1.0,
        };
    }
    let z = (u - mean - 0.5) / variance.sqrt();
    MannWhitney {
        u,
        cles,
        z,
        p_value: upper_tail(z),
    }
}

/// P(Z > z) for a standard normal Z.
fn upper_tail(z: f64) -> f64 {
    0.5 * libm::erfc(z / std::f64::consts::SQRT_2)
}

/// Compares the canary with the stable.
pub fn judge(canary: &Sample, stable: &Sample, config: &JudgeConfig) -> Judgement {
    let alpha = 1.0 - config.confidence;
    let pct = |r: f64| format!("{:.2}%", r * 100.0);
    // An absolute floor needs only the canary's own calls, so it can fail before the comparison
    // has enough data.
    if let (Some(floor), Some(rate)) = (config.min_success_rate, canary.error_rate())
        && canary.requests >= config.min_samples
        && 1.0 - rate < floor
    {
        return Judgement {
            verdict: Verdict::Fail,
            summary: format!(
                "canary success rate {} < minimum {} over {} calls",
                pct(1.0 - rate),
                pct(floor),
                canary.requests
            ),
        };
    }
    if canary.requests < config.min_samples || stable.requests < config.min_samples {
        return Judgement {
            verdict: Verdict::Inconclusive,
            summary: format!(
                "too few calls to judge: canary {}, stable {}, need {} each",
                canary.requests, stable.requests, config.min_samples
            ),
        };
    }
    let errors = two_proportion_test(canary.failures, canary.requests, stable.failures, stable.requests);
    let (rate_c, rate_s) = (
        canary.failures as f64 / canary.requests as f64,
        stable.failures as f64 / stable.requests as f64,
    );
    let mut summary = format!(
        "errors canary {} of {} vs stable {} of {} (p={:.2e})",
        pct(rate_c),
        canary.requests,
        pct(rate_s),
        stable.requests,
        errors.p_value
    );
    let mut verdict = Verdict::Pass;
    if rate_c - rate_s > config.max_error_rate_increase && errors.p_value < alpha {
        verdict = Verdict::Fail;
        summary.push_str(&format!(
            " > tolerated increase {}",
            pct(config.max_error_rate_increase)
        ));
    }
    if let Some(min_effect) = config.latency_min_effect {
        let (lc, ls) = (canary.latency_count(), stable.latency_count());
        if lc >= config.min_samples && ls >= config.min_samples {
            let mw = mann_whitney(&canary.latency, &stable.latency);
            summary.push_str(&format!(
                "; latency P(canary slower)={:.2} (p={:.2e})",
                mw.cles, mw.p_value
            ));
            if mw.p_value < alpha && mw.cles >= min_effect {
                verdict = Verdict::Fail;
                summary.push_str(&format!(" ≥ {min_effect:.2}: canary slower"));
            }
        } else if lc > 0 || ls > 0 {
            summary.push_str(&format!("; latency not compared ({lc} vs {ls} observations)"));
        }
    }
    Judgement { verdict, summary }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random stream (SplitMix64), so tests have known distributions
    /// without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next_f64(&mut self) -> f64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        }
        /// Exponential with the given mean: a latency-like right-skewed distribution.
        fn exp(&mut self, mean: f64) -> f64 {
            -mean * (1.0 - self.next_f64()).ln()
        }
    }

    fn raw(values: impl IntoIterator<Item = f64>) -> Vec<(f64, u64)> {
        values.into_iter().map(|v| (v, 1)).collect()
    }

    #[test]
    fn mann_whitney_matches_a_hand_computed_example() {
        // canary {3, 4, 5}, stable {1, 2, 3}: pairs where canary > stable: 3>1,3>2, 4>all3, 5>all3,
        // plus the tie 3=3 as ½ → U = 2 + 3 + 3 + 0.5 = 8.5 of 9 pairs.
        let mw = mann_whitney(&raw([3.0, 4.0, 5.0]), &raw([1.0, 2.0, 3.0]));
        assert!((mw.u - 8.5).abs() < 1e-9, "U = {}", mw.u);
        assert!((mw.cles - 8.5 / 9.0).abs() < 1e-9);
        assert!(mw.z > 0.0);
    }

    #[test]
    fn mann_whitney_on_buckets_equals_mann_whitney_on_the_expanded_samples() {
        let canary = vec![(0.005, 3), (0.01, 5), (0.1, 2)];
        let stable = vec![(0.005, 7), (0.01, 2), (0.025, 1)];
        let expand = |b: &[(f64, u64)]| {
            b.iter()
                .flat_map(|&(v, c)| std::iter::repeat_n((v, 1), c as usize))
                .collect::<Vec<_>>()
        };
        let grouped = mann_whitney(&canary, &stable);
        let expanded = mann_whitney(&expand(&canary), &expand(&stable));
        assert!((grouped.u - expanded.u).abs() < 1e-9);
        assert!((grouped.p_value - expanded.p_value).abs() < 1e-12);
    }

    #[test]
    fn identical_distributions_are_not_told_apart() {
        let mut rng = Rng(7);
        let canary = raw((0..400).map(|_| rng.exp(0.010)));
        let stable = raw((0..400).map(|_| rng.exp(0.010)));
        let mw = mann_whitney(&canary, &stable);
        assert!(mw.p_value > 0.02, "p = {}", mw.p_value);
        assert!((mw.cles - 0.5).abs() < 0.06, "cles = {}", mw.cles);
    }

    #[test]
    fn a_shift_of_one_hundred_milliseconds_is_detected() {
        let mut rng = Rng(11);
        let stable = raw((0..200).map(|_| rng.exp(0.005)));
        let canary = raw((0..200).map(|_| 0.1 + rng.exp(0.005)));
        let mw = mann_whitney(&canary, &stable);
        assert!(mw.p_value < 1e-10, "p = {}", mw.p_value);
        assert!(mw.cles > 0.99);
    }

    #[test]
    fn all_ties_give_no_evidence() {
        let mw = mann_whitney(&[(0.005, 100)], &[(0.005, 300)]);
        assert_eq!(mw.p_value, 1.0);
        assert!((mw.cles - 0.5).abs() < 1e-12);
    }

    #[test]
    fn two_proportion_test_matches_the_textbook_value() {
        // 30/200 vs 15/200: pooled 0.1125, se = sqrt(.1125·.8875·(2/200)) = 0.031598, z = 2.3735.
        let t = two_proportion_test(30, 200, 15, 200);
        assert!((t.z - 2.3735).abs() < 1e-3, "z = {}", t.z);
        assert!((t.p_value - 0.00881).abs() < 1e-4, "p = {}", t.p_value);
    }

    #[test]
    fn zero_failures_on_both_sides_is_no_difference() {
        let t = two_proportion_test(0, 500, 0, 5000);
        assert_eq!(t.p_value, 1.0);
    }

    fn sample(requests: u64, failures: u64) -> Sample {
        Sample {
            requests,
            failures,
            latency: vec![],
        }
    }

    #[test]
    fn five_percent_unavailable_fails() {
        let j = judge(&sample(400, 20), &sample(3600, 2), &JudgeConfig::default());
        assert_eq!(j.verdict, Verdict::Fail, "{}", j.summary);
    }

    #[test]
    fn equal_error_rates_pass() {
        let j = judge(&sample(400, 2), &sample(3600, 18), &JudgeConfig::default());
        assert_eq!(j.verdict, Verdict::Pass, "{}", j.summary);
    }

    #[test]
    fn a_small_insignificant_difference_passes() {
        // 2% vs 1% on 100 calls: above the tolerated 1 point but not significant at 98%.
        let j = judge(&sample(100, 2), &sample(100, 1), &JudgeConfig::default());
        assert_eq!(j.verdict, Verdict::Pass, "{}", j.summary);
    }

    #[test]
    fn too_few_samples_is_inconclusive_never_a_pass() {
        // Even a perfect canary with 49 calls is not judged.
        let j = judge(&sample(49, 0), &sample(10_000, 50), &JudgeConfig::default());
        assert_eq!(j.verdict, Verdict::Inconclusive, "{}", j.summary);
        // A stable with too little traffic cannot be compared with either.
        let j = judge(&sample(1000, 0), &sample(10, 0), &JudgeConfig::default());
        assert_eq!(j.verdict, Verdict::Inconclusive, "{}", j.summary);
        // And a catastrophic canary with too few calls is still inconclusive without a floor ...
        let j = judge(&sample(10, 10), &sample(1000, 0), &JudgeConfig::default());
        assert_eq!(j.verdict, Verdict::Inconclusive, "{}", j.summary);
    }

    #[test]
    fn the_absolute_floor_fails_on_the_canary_alone() {
        let config = JudgeConfig {
            min_success_rate: Some(0.99),
            ..JudgeConfig::default()
        };
        let j = judge(&sample(100, 5), &sample(0, 0), &config);
        assert_eq!(j.verdict, Verdict::Fail, "{}", j.summary);
        let j = judge(&sample(100, 0), &sample(0, 0), &config);
        assert_eq!(j.verdict, Verdict::Inconclusive, "{}", j.summary);
    }

    #[test]
    fn a_slower_canary_fails_on_latency_alone() {
        let mut rng = Rng(3);
        // Buckets as the runtime's histogram would give them: 5 ms vs 100 ms more.
        let bucket = |v: f64| {
            [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]
                .into_iter()
                .find(|b| v <= *b)
                .unwrap_or(2.5)
        };
        let mut hist = |shift: f64| {
            let mut h: Vec<(f64, u64)> = Vec::new();
            for _ in 0..300 {
                let b = bucket(shift + rng.exp(0.004));
                match h.iter_mut().find(|(v, _)| *v == b) {
                    Some((_, c)) => *c += 1,
                    None => h.push((b, 1)),
                }
            }
            h
        };
        let stable = Sample {
            requests: 300,
            failures: 0,
            latency: hist(0.0),
        };
        let canary = Sample {
            requests: 300,
            failures: 0,
            latency: hist(0.1),
        };
        let j = judge(&canary, &stable, &JudgeConfig::default());
        assert_eq!(j.verdict, Verdict::Fail, "{}", j.summary);
        let same = Sample {
            requests: 300,
            failures: 0,
            latency: hist(0.0),
        };
        let j = judge(&same, &stable, &JudgeConfig::default());
        assert_eq!(j.verdict, Verdict::Pass, "{}", j.summary);
    }

    #[test]
    fn taxonomy_defaults() {
        let t = Taxonomy::default();
        for code in [
            "UNAVAILABLE",
            "INTERNAL",
            "DEADLINE_EXCEEDED",
            "UNKNOWN",
            "DATA_LOSS",
        ] {
            assert!(t.is_failure(code), "{code}");
        }
        for code in [
            "OK",
            "INVALID_ARGUMENT",
            "NOT_FOUND",
            "ALREADY_EXISTS",
            "FAILED_PRECONDITION",
            "ABORTED",
        ] {
            assert!(!t.is_failure(code), "{code}");
        }
        assert!(Taxonomy::new(["failed_precondition"]).is_failure("FAILED_PRECONDITION"));
    }
}
