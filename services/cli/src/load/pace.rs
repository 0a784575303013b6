//! Fixed-rate pacing. Send times are computed from the start (`start + n / rate`), never from the
//! previous send, so that a slow iteration does not lower the rate: the next sends catch up.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Clone, Debug)]
pub struct Pacer {
    start: Instant,
    /// Nanoseconds between sends (f64: 3 000/s is 333 333.3 ns).
    interval_ns: f64,
    sent: u64,
}

impl Pacer {
    /// `rate` sends per second, the first at `start`.
    pub fn new(start: Instant, rate: f64) -> Self {
        assert!(rate > 0.0 && rate.is_finite(), "rate must be positive");
        Self {
            start,
            interval_ns: 1e9 / rate,
            sent: 0,
        }
    }

    /// When send number `n` (0-based) is due.
    pub fn due(&self, n: u64) -> Instant {
        self.start + Duration::from_nanos((n as f64 * self.interval_ns).round() as u64)
    }

    /// The due time of the next send; advances the count.
    pub fn next_due(&mut self) -> Instant {
        let due = self.due(self.sent);
        self.sent += 1;
        due
    }

    /// How many sends are due by `at` (how many a perfect sender would have made).
    pub fn due_by(&self, at: Instant) -> u64 {
        let elapsed = at.saturating_duration_since(self.start).as_nanos() as f64;
        (elapsed / self.interval_ns).floor() as u64 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_is_anchored_at_the_start() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0, 3000.0);
        assert_eq!(p.next_due(), t0);
        assert_eq!(p.next_due(), t0 + Duration::from_nanos(333_333));
        assert_eq!(p.due(3000), t0 + Duration::from_secs(1));
        assert_eq!(p.due_by(t0 + Duration::from_secs(1)), 3001);
        assert_eq!(p.due_by(t0), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn sleeping_until_due_sends_at_the_rate_even_when_sends_are_slow() {
        let start = Instant::now();
        let mut p = Pacer::new(start, 200.0);
        let mut sent = 0u64;
        while Instant::now() < start + Duration::from_secs(2) {
            tokio::time::sleep_until(p.next_due()).await;
            sent += 1;
            // Every 10th send takes 30 ms (six intervals): the following ones must catch up.
            if sent.is_multiple_of(10) {
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        }
        assert!((399..=402).contains(&sent), "{sent} sends in 2 s at 200/s");
    }
}
