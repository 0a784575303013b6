//! Brownout and recovery in simulated time: the engine moves traffic away from a channel whose
//! success rate drops from 95% to 60%, and back once it recovers.

use payplane_routing::simulation::{Scenario, run};

const SEEDS: u64 = 50;

#[test]
fn traffic_moves_away_during_a_brownout_and_back_after_recovery() {
    let mut detections = Vec::new();
    for seed in 1..=SEEDS {
        let r = run(&Scenario {
            seed,
            ..Scenario::default()
        });
        let ctx = format!("seed {seed}: {r:?}");
        assert!(
            r.a_share_before > 0.75,
            "A, the better channel, takes most traffic before: {ctx}"
        );
        assert_eq!(r.false_eliminations, 0, "B (90%) is never eliminated: {ctx}");
        assert_eq!(
            r.readmitted_during_brownout, 0,
            "no lucky readmission while A is still at 60%: {ctx}"
        );
        let detected = r
            .detection_outcomes
            .unwrap_or_else(|| panic!("A won traffic during the brownout at least once: {ctx}"));
        assert!(
            detected <= 60,
            "traffic moved away within 60 outcomes on A: {ctx}"
        );
        assert!(
            r.moved_away_at_60s >= 0.9,
            "90% of A's traffic moved within 60 s: {ctx}"
        );
        // A left to exploration without being eliminated (its exploration outcomes happened to
        // look like 70%+) is not readmitted, it just earns its traffic back.
        if r.elimination_attempts.is_some() {
            assert!(
                r.readmitted_after_s.is_some_and(|s| s < 60.0),
                "A readmitted after recovery: {ctx}"
            );
        }
        assert!(r.a_share_end > 0.75, "traffic back on A at the end: {ctx}");
        assert!(r.exploration_share() <= 0.05, "exploration at most 5%: {ctx}");
        detections.push(detected);
    }
    // The 50-outcome bound holds for the typical seed with room to spare and for 90% of seeds,
    // not for every one: the worst are a 60% channel whose first 60 outcomes looked like 72%
    // (seed 7) and a peer whose exploration-only window read 77% (seed 29); no test tells those
    // from a healthy channel sooner without false alarms on healthy ones. In attempts (the
    // issue's unit) add the ~30 made during the 300 ms feedback delay.
    // `routing-bench brownout --seeds 50` prints every seed.
    detections.sort_unstable();
    let at = |p: usize| detections[(detections.len() - 1) * p / 100];
    assert!(
        at(50) <= 20,
        "median detection within 20 outcomes on A: {detections:?}"
    );
    assert!(
        at(90) <= 50,
        "90% of seeds within 50 outcomes on A: {detections:?}"
    );
}

#[test]
fn without_a_brownout_nothing_is_eliminated() {
    for seed in 1..=10 {
        let r = run(&Scenario {
            seed,
            a_brownout: 0.95,
            ..Scenario::default()
        });
        assert_eq!(r.elimination_attempts, None, "{r:?}");
        assert_eq!(r.false_eliminations, 0, "{r:?}");
        assert!(r.a_share_end > 0.8, "{r:?}");
    }
}
