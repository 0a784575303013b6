//! Outcome statistics: lock-free sliding windows of the last N outcomes, per channel and per
//! (channel, method, currency) bucket, and each channel's elimination state.
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

pub const ACTIVE: u8 = 0;
pub const ELIMINATED: u8 = 1;

/// Everything one replica knows about a channel's recent outcomes.
#[derive(Debug)]
pub struct ChannelStats {
    pub overall: Window,
    pub buckets: Box<[Window]>,
    /// Outcomes while eliminated (probes and late reports), judged for recovery.
    pub probes: Window,
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
