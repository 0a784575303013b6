//! Outcome statistics: lock-free sliding windows of the last N outcomes, per channel and per
//! (channel, method, currency) bucket, each channel's sequential evidence of a drop (CUSUM),
//! and its elimination state.
//!
//! Writers (ReportOutcome) and readers (Route) never take a lock: a window is a ring of bits in
//! atomic words plus a running success count. A reader racing a writer may see the count one
//! outcome early or late, which is noise next to a window of a hundred outcomes.

use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering::Relaxed};

use payplane_core::Currency;

use super::policy::Method;

/// The last `capacity` outcomes (success or not).
#[derive(Debug)]
pub struct Window {
    capacity: u64,
    words: Box<[AtomicU64]>,
    /// Outcomes recorded since the last reset.
    head: AtomicU64,
    /// Successes among the last `min(head, capacity)` outcomes.
    successes: AtomicI64,
}

impl Window {
    pub fn new(capacity: u32) -> Self {
        let capacity = u64::from(capacity.max(1));
        let words = (0..capacity.div_ceil(64)).map(|_| AtomicU64::new(0)).collect();
        Self {
            capacity,
            words,
            head: AtomicU64::new(0),
            successes: AtomicI64::new(0),
        }
    }

    pub fn capacity(&self) -> u32 {
        self.capacity as u32
    }

    pub fn record(&self, success: bool) {
        let slot = self.head.fetch_add(1, Relaxed) % self.capacity;
        let mask = 1u64 << (slot % 64);
        let word = &self.words[(slot / 64) as usize];
        let previous = if success {
            word.fetch_or(mask, Relaxed)
        } else {
            word.fetch_and(!mask, Relaxed)
        };
        // The bit being overwritten is the outcome leaving the window (0 while it fills up).
        let delta = i64::from(success) - i64::from(previous & mask != 0);
        if delta != 0 {
            self.successes.fetch_add(delta, Relaxed);
        }
    }

    /// (successes, samples) in the window.
    pub fn snapshot(&self) -> (u32, u32) {
        let samples = self.head.load(Relaxed).min(self.capacity);
        let successes = self.successes.load(Relaxed).clamp(0, samples as i64);
        (successes as u32, samples as u32)
    }

    pub fn rate(&self) -> Option<f64> {
        let (s, n) = self.snapshot();
        (n > 0).then(|| f64::from(s) / f64::from(n))
    }

    pub fn reset(&self) {
        for w in self.words.iter() {
            w.store(0, Relaxed);
        }
        self.head.store(0, Relaxed);
        self.successes.store(0, Relaxed);
    }

    /// The outcomes in the window, oldest first.
    pub fn outcomes(&self) -> Vec<bool> {
        let head = self.head.load(Relaxed);
        let samples = head.min(self.capacity);
        (head - samples..head)
            .map(|i| {
                let slot = i % self.capacity;
                self.words[(slot / 64) as usize].load(Relaxed) & (1u64 << (slot % 64)) != 0
            })
            .collect()
    }

    /// Replaces the window's content with `outcomes` (oldest first).
    pub fn replace_with(&self, outcomes: &[bool]) {
        self.reset();
        for &o in outcomes {
            self.record(o);
        }
    }
}

/// The success rate a decision uses: the observed rate pulled towards a prior by `weight`
/// pseudo-outcomes, so a channel with few outcomes is neither ignored nor trusted blindly.
pub fn smoothed(successes: u32, samples: u32, prior: f64, weight: f64) -> f64 {
    (f64::from(successes) + prior * weight) / (f64::from(samples) + weight)
}

/// How many (method, currency) buckets a channel has.
pub fn bucket_count() -> usize {
    Method::ALL.len() * Currency::all().len()
}

/// Dense index of a (method, currency) bucket, `None` for a currency outside the platform list.
pub fn bucket_index(method: Method, currency: &str) -> Option<usize> {
    let c = Currency::all().iter().position(|c| c.code() == currency)?;
    Some(method.index() * Currency::all().len() + c)
}

/// The log-likelihood ratio of one outcome for "the channel succeeds at `bad`" against "at
/// `good`": (on success, on failure). Zero for both when the hypotheses cannot be told apart.
pub fn llr(good: f64, bad: f64) -> (f64, f64) {
    let good = good.clamp(0.02, 0.999);
    let bad = bad.clamp(0.01, 0.99);
    if bad >= good - 1e-6 {
        return (0.0, 0.0);
    }
    ((bad / good).ln(), ((1.0 - bad) / (1.0 - good)).ln())
}

/// Page's CUSUM of outcome log-likelihood ratios: how strongly the recent outcomes say that the
/// channel has dropped. Each outcome adds its log-likelihood ratio and the sum is floored at
/// zero, so old good outcomes do not mask a fresh drop and the outcomes since the sum last
/// left zero estimate when the drop began.
///
/// Two statistics: a `fast` one that, once past a low threshold, marks the channel suspected
/// until the sum returns to zero (its score is then its post-change rate: traffic moves away,
/// reversibly), with the successes and outcomes since it last left zero; and a `slow` one with
/// a stricter null that, past a high threshold, eliminates. While eliminated, `slow` holds the
/// recovery statistic instead (a CUSUM towards "recovered", capped at zero from above). Each is
/// one atomic word updated by compare-and-swap: writers race only with each other and never
/// block a reader.
#[derive(Debug, Default)]
pub struct Evidence {
    /// f32 statistic bits (high 32) | suspected (1 bit) | outcomes since it left zero (15 bits)
    /// | successes among them (16 bits).
    fast: AtomicU64,
    /// f64 statistic bits.
    slow: AtomicU64,
}

/// The fast statistic of an [`Evidence`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fast {
    pub stat: f64,
    pub suspected: bool,
    /// Successes and outcomes since the statistic last left zero.
    pub successes: u32,
    pub samples: u32,
}

const SUSPECTED: u64 = 1 << 31;
const MAX_SAMPLES: u64 = (1 << 15) - 1;

fn pack(f: Fast) -> u64 {
    (u64::from((f.stat as f32).to_bits()) << 32)
        | if f.suspected { SUSPECTED } else { 0 }
        | (u64::from(f.samples).min(MAX_SAMPLES) << 16)
        | u64::from(f.successes).min(MAX_SAMPLES)
}

fn unpack(w: u64) -> Fast {
    Fast {
        stat: f64::from(f32::from_bits((w >> 32) as u32)),
        suspected: w & SUSPECTED != 0,
        samples: ((w >> 16) & MAX_SAMPLES) as u32,
        successes: (w & 0xFFFF) as u32,
    }
}

impl Evidence {
    /// Adds one outcome to both statistics; `fast` and `slow` are [`llr`] pairs, `None` (or
    /// all zero) to leave that statistic as it is. The fast statistic marks the channel
    /// suspected once it reaches `suspect_at`.
    pub fn observe(
        &self,
        success: bool,
        fast: Option<(f64, f64)>,
        slow: Option<(f64, f64)>,
        suspect_at: f64,
    ) {
        let pick = |(on_success, on_failure): (f64, f64)| if success { on_success } else { on_failure };
        let informative = |pair: &(f64, f64)| *pair != (0.0, 0.0);
        if let Some(d) = fast.filter(informative).map(pick) {
            let _ = self.fast.fetch_update(Relaxed, Relaxed, |w| {
                let f = unpack(w);
                let stat = (f.stat + d).max(0.0);
                Some(if stat == 0.0 {
                    0
                } else {
                    // A new excursion from zero starts counting afresh.
                    let (successes, samples) = if f.stat == 0.0 {
                        (0, 0)
                    } else {
                        (f.successes, f.samples)
                    };
                    pack(Fast {
                        stat,
                        suspected: f.suspected || stat >= suspect_at,
                        successes: successes + u32::from(success),
                        samples: samples + 1,
                    })
                })
            });
        }
        if let Some(d) = slow.filter(informative).map(pick) {
            let _ = self.slow.fetch_update(Relaxed, Relaxed, |w| {
                Some((f64::from_bits(w) + d).max(0.0).to_bits())
            });
        }
    }

    /// Adds one recovery-probe outcome (`pair` from [`llr`] of "recovered" against "still
    /// failing") and returns the recovery statistic: at most zero, and the more negative the
    /// stronger the evidence of a recovery.
    pub fn observe_probe(&self, success: bool, pair: (f64, f64)) -> f64 {
        let d = if success { pair.0 } else { pair.1 };
        let previous = self
            .slow
            .fetch_update(Relaxed, Relaxed, |w| {
                Some((f64::from_bits(w) + d).min(0.0).to_bits())
            })
            .unwrap_or_default();
        (f64::from_bits(previous) + d).min(0.0)
    }

    pub fn fast(&self) -> Fast {
        unpack(self.fast.load(Relaxed))
    }

    pub fn slow(&self) -> f64 {
        f64::from_bits(self.slow.load(Relaxed))
    }

    pub fn reset(&self) {
        self.fast.store(0, Relaxed);
        self.slow.store(0, Relaxed);
    }
}

pub const ACTIVE: u8 = 0;
pub const ELIMINATED: u8 = 1;

/// Everything one replica knows about a channel's recent outcomes.
#[derive(Debug)]
pub struct ChannelStats {
    pub overall: Window,
    pub buckets: Box<[Window]>,
    /// Outcomes while eliminated (probes and late reports), judged for recovery.
    pub probes: Window,
    /// Channel-wide evidence of a drop: suspicion for decisions without a full bucket window,
    /// and elimination.
    pub evidence: Evidence,
    /// Per-bucket evidence (fast statistic only), parallel to `buckets`: a decision that uses a
    /// bucket's window uses its suspicion, so a drop in one (method, currency) does not move the
    /// channel's other traffic.
    pub bucket_evidence: Box<[Evidence]>,
    state: AtomicU8,
    /// Milliseconds since the Unix epoch; meaningful while eliminated.
    eliminated_since_ms: AtomicU64,
    next_probe_ms: AtomicU64,
}

impl ChannelStats {
    pub fn new(window: u32, recovery_samples: u32) -> Self {
        Self {
            overall: Window::new(window),
            buckets: (0..bucket_count()).map(|_| Window::new(window)).collect(),
            probes: Window::new(recovery_samples),
            evidence: Evidence::default(),
            bucket_evidence: (0..bucket_count()).map(|_| Evidence::default()).collect(),
            state: AtomicU8::new(ACTIVE),
            eliminated_since_ms: AtomicU64::new(0),
            next_probe_ms: AtomicU64::new(0),
        }
    }

    pub fn is_eliminated(&self) -> bool {
        self.state.load(Relaxed) == ELIMINATED
    }

    pub fn eliminated_since_ms(&self) -> Option<u64> {
        self.is_eliminated()
            .then(|| self.eliminated_since_ms.load(Relaxed))
    }

    /// Active → eliminated; false when another thread got there first.
    pub fn eliminate(&self, now_ms: u64, probe_interval_ms: u64) -> bool {
        if self
            .state
            .compare_exchange(ACTIVE, ELIMINATED, Relaxed, Relaxed)
            .is_err()
        {
            return false;
        }
        self.eliminated_since_ms.store(now_ms, Relaxed);
        self.next_probe_ms.store(now_ms + probe_interval_ms, Relaxed);
        self.probes.reset();
        self.evidence.reset();
        for e in self.bucket_evidence.iter() {
            e.reset();
        }
        true
    }

    /// Eliminated → active, seeding the windows with the probe outcomes so that the channel
    /// competes on its recovered rate rather than on the brownout it had.
    pub fn readmit(&self) -> bool {
        if self
            .state
            .compare_exchange(ELIMINATED, ACTIVE, Relaxed, Relaxed)
            .is_err()
        {
            return false;
        }
        self.overall.replace_with(&self.probes.outcomes());
        for b in self.buckets.iter() {
            b.reset();
        }
        self.evidence.reset();
        for e in self.bucket_evidence.iter() {
            e.reset();
        }
        true
    }

    /// Claims the next recovery probe if one is due: at most one per interval, whichever
    /// request gets there first.
    pub fn claim_probe(&self, now_ms: u64, probe_interval_ms: u64) -> bool {
        let due = self.next_probe_ms.load(Relaxed);
        now_ms >= due
            && self
                .next_probe_ms
                .compare_exchange(due, now_ms + probe_interval_ms, Relaxed, Relaxed)
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_slides_over_the_last_outcomes() {
        let w = Window::new(100);
        for _ in 0..100 {
            w.record(true);
        }
        assert_eq!(w.snapshot(), (100, 100));
        for _ in 0..30 {
            w.record(false);
        }
        assert_eq!(w.snapshot(), (70, 100));
        for _ in 0..100 {
            w.record(false);
        }
        assert_eq!(w.snapshot(), (0, 100));
        let outcomes = w.outcomes();
        assert_eq!(outcomes.len(), 100);
        assert!(outcomes.iter().all(|o| !o));
    }

    #[test]
    fn window_replays_outcomes_in_order() {
        let w = Window::new(5);
        for o in [true, false, true, true, false, false, true] {
            w.record(o);
        }
        assert_eq!(w.outcomes(), vec![true, true, false, false, true]);
        let copy = Window::new(5);
        copy.replace_with(&w.outcomes());
        assert_eq!(copy.snapshot(), (3, 5));
    }

    #[test]
    fn concurrent_writers_keep_the_count_consistent() {
        let w = std::sync::Arc::new(Window::new(128));
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000 {
                        w.record((i + t) % 4 != 0);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let (s, n) = w.snapshot();
        assert_eq!(n, 128);
        let bits = w.outcomes().iter().filter(|o| **o).count() as u32;
        assert_eq!(s, bits, "running count matches the bits in the ring");
    }

    #[test]
    fn probes_are_rate_limited() {
        let stats = ChannelStats::new(100, 20);
        assert!(stats.eliminate(1_000, 500));
        assert!(!stats.eliminate(1_000, 500));
        assert!(!stats.claim_probe(1_200, 500));
        assert!(stats.claim_probe(1_500, 500));
        assert!(!stats.claim_probe(1_600, 500));
        assert!(stats.claim_probe(2_000, 500));
        assert!(stats.readmit());
        assert!(!stats.is_eliminated());
    }

    #[test]
    fn llr_signs_and_indistinguishable_hypotheses() {
        let (on_success, on_failure) = llr(0.85, 0.6);
        assert!(on_success < 0.0 && on_failure > 0.0);
        assert!((on_success - (0.6f64 / 0.85).ln()).abs() < 1e-12);
        assert_eq!(llr(0.8, 0.8), (0.0, 0.0));
        assert_eq!(llr(0.5, 0.7), (0.0, 0.0), "the bad rate must be the lower one");
    }

    #[test]
    fn cusum_floors_at_zero_and_counts_since_it_left_zero() {
        let e = Evidence::default();
        let pair = llr(0.85, 0.6);
        for _ in 0..50 {
            e.observe(true, Some(pair), Some(pair), 3.0);
        }
        assert_eq!(e.fast().stat, 0.0, "good outcomes do not bank credit");
        assert_eq!(e.slow(), 0.0);
        // Failure, success, failure, failure: 3·0.981 - 0.348 = 2.59 nats, not yet suspected.
        for o in [false, true, false, false] {
            e.observe(o, Some(pair), Some(pair), 3.0);
        }
        let f = e.fast();
        assert!((f.stat - 2.594).abs() < 1e-3, "{f:?}");
        assert_eq!((f.suspected, f.successes, f.samples), (false, 1, 4));
        e.observe(false, Some(pair), None, 3.0);
        let f = e.fast();
        assert!(f.suspected && f.samples == 5 && f.successes == 1, "{f:?}");
        assert!(
            (e.slow() - 2.594).abs() < 1e-3,
            "`None` leaves the slow statistic alone"
        );
        // Suspected until the sum is back to zero, not merely below the threshold.
        e.observe(true, Some(pair), None, 3.0);
        e.observe(true, Some(pair), None, 3.0);
        assert!(e.fast().stat < 3.0 && e.fast().suspected);
        for _ in 0..20 {
            e.observe(true, Some(pair), None, 3.0);
        }
        assert_eq!(
            e.fast(),
            Fast {
                stat: 0.0,
                suspected: false,
                successes: 0,
                samples: 0
            }
        );
    }

    #[test]
    fn probe_statistic_is_capped_at_zero() {
        let e = Evidence::default();
        let pair = llr(0.86, 0.68);
        assert_eq!(e.observe_probe(false, pair), 0.0);
        let mut last = 0.0;
        for _ in 0..10 {
            last = e.observe_probe(true, pair);
        }
        assert!((last - 10.0 * pair.0).abs() < 1e-9);
        assert!(e.observe_probe(false, pair) > last);
    }

    #[test]
    fn concurrent_observers_keep_the_fast_word_consistent() {
        let e = std::sync::Arc::new(Evidence::default());
        let pair = llr(0.9, 0.6);
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let e = e.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000 {
                        e.observe((i + t) % 3 != 0, Some(pair), Some(pair), 3.0);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let f = e.fast();
        assert!(f.stat >= 0.0 && f.successes <= f.samples, "{f:?}");
        assert_eq!(f.stat == 0.0, f.samples == 0, "{f:?}");
    }

    #[test]
    fn buckets_are_dense_and_distinct() {
        let mut seen = std::collections::HashSet::new();
        for m in Method::ALL {
            for c in Currency::all() {
                assert!(seen.insert(bucket_index(m, c.code()).unwrap()));
            }
        }
        assert_eq!(bucket_index(Method::Wallet, "XXX"), None);
    }
}
