//! Randomness. A charge's business answer (approve or decline, and the decline code) is drawn
//! from a generator seeded by the simulator's seed and the request id, so that with `--seed` the
//! same requests get the same answers whatever order they arrive in. Errors and latencies come
//! from one shared generator instead: a retry after an injected error must be able to succeed.

use rand::{Rng, SeedableRng, rngs::StdRng};

use super::book::{DECLINE_CODES, Outcome};

/// FNV-1a over the seed and the request id: stable across runs and platforms, unlike std's
/// hasher, and plenty for spreading ids over seeds.
pub fn request_seed(seed: u64, channel_id: &str, request_id: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = seed
        .to_le_bytes()
        .into_iter()
        .chain(channel_id.bytes())
        .chain([0])
        .chain(request_id.bytes());
    for b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// Approve or decline with `decline_rate`, deterministically for (seed, channel, request id).
pub fn decide_charge(seed: u64, channel_id: &str, request_id: &str, decline_rate: f64) -> (Outcome, String) {
    let mut rng = StdRng::seed_from_u64(request_seed(seed, channel_id, request_id));
    if rng.random::<f64>() < decline_rate {
        let code = DECLINE_CODES[rng.random_range(0..DECLINE_CODES.len())];
        (Outcome::Declined, code.to_owned())
    } else {
        (Outcome::Approved, String::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_and_id_same_answer_and_rate_is_respected() {
        let ids: Vec<String> = (0..10_000).map(|i| format!("req-{i}")).collect();
        let a: Vec<_> = ids
            .iter()
            .map(|id| decide_charge(42, "unionpay", id, 0.1))
            .collect();
        let b: Vec<_> = ids
            .iter()
            .map(|id| decide_charge(42, "unionpay", id, 0.1))
            .collect();
        assert_eq!(a, b);
        let declined = a.iter().filter(|(o, _)| *o == Outcome::Declined).count();
        // Binomial(10000, 0.1): sd 30; 5 sd either side.
        assert!((850..=1150).contains(&declined), "{declined}");
        assert!(
            a.iter()
                .all(|(o, code)| (*o == Outcome::Declined) != code.is_empty())
        );
        let other_seed = ids
            .iter()
            .map(|id| decide_charge(43, "unionpay", id, 0.1))
            .collect::<Vec<_>>();
        assert_ne!(a, other_seed);
        assert!(
            ids.iter()
                .all(|id| decide_charge(1, "x", id, 0.0).0 == Outcome::Approved)
        );
        assert!(
            ids.iter()
                .all(|id| decide_charge(1, "x", id, 1.0).0 == Outcome::Declined)
        );
    }
}
