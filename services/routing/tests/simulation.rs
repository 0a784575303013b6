//! Brownout and recovery in simulated time: the engine moves traffic away from a channel whose
//! success rate drops from 95% to 60%, and back once it recovers.

use payplane_routing::simulation::{Scenario, run};

#[test]
fn traffic_moves_away_during_a_brownout_and_back_after_recovery() {
    let mut detections = Vec::new();
    for seed in 1..=20 {
        let r = run(&Scenario {
            seed,
            ..Scenario::default()
        });
        let ctx = format!("seed {seed}: {r:?}");
        assert!(
            r.a_share_before > 0.8,
            "A, the better channel, takes most traffic before: {ctx}"
        );
        assert!(
            r.elimination_attempts.is_some(),
            "A eliminated during the brownout: {ctx}"
        );
        assert!(
            r.moved_away_at_60s >= 0.9,
            "90% of A's traffic moved within 60 s: {ctx}"
        );
        assert!(
            r.readmitted_after_s.is_some_and(|s| s < 60.0),
            "A readmitted after recovery: {ctx}"
        );
        assert!(r.a_share_end > 0.75, "traffic back on A at the end: {ctx}");
        assert!(r.exploration_share() <= 0.05, "exploration at most 5%: {ctx}");
        detections.push(r.detection_outcomes.unwrap_or(0));
    }
    // Detection varies with the draw (and a lucky probe batch can readmit A for a while), so the
    // bound is on the typical seed; `routing-bench brownout` prints every seed.
    detections.sort_unstable();
    let median = detections[detections.len() / 2];
    assert!(
        median <= 50,
        "median detection within 50 outcomes on A: {detections:?}"
    );
}

#[test]
fn without_a_brownout_nothing_is_eliminated() {
    let r = run(&Scenario {
        a_brownout: 0.95,
        ..Scenario::default()
    });
    assert_eq!(r.elimination_attempts, None, "{r:?}");
    assert!(r.a_share_end > 0.8, "{r:?}");
}
