//! 30 days of releases of four services (`fixtures/releases-30d.json`, written by
//! `fixtures/make_releases_30d.py`) and the figures counted by hand.
//!
//! Window [2026-10-01T00:00Z, 2026-10-31T00:00Z) = 30 days. Lead time = commit → promotion.
//!
//! | service    | release | outcome (when)                                    | lead  | in CFR | restore |
//! |------------|---------|---------------------------------------------------|-------|--------|---------|
//! | accounting | 11      | Promoted 09-29 11:00 (before the window)          | -     | -      |         |
//! | accounting | 12      | Promoted 10-02 10:00                              | 26 h  | ok     |         |
//! | accounting | 13      | 10 %, analysis failed 09:20, RolledBack 10-06 09:24 | -   | FAIL   | 4 min   |
//! | accounting | 14      | Promoted 10-07 11:00                              | 25 h  | ok     |         |
//! | accounting | 15      | Promoted 10-15 09:30                              | 24 h  | ok     |         |
//! | accounting | 16      | Promoted 10-21 10:00, Undone 14:00, RolledBack 14:10 | 20 h | FAIL | 10 min  |
//! | accounting | 17      | Promoted 10-23 12:00                              | 48 h  | ok     |         |
//! | routing    | 3,4,6,8,9 | Promoted 10-01, 10-08, 10-12, 10-19, 10-27      | 2,3,4,5,6 h | ok ×5 |  |
//! | routing    | 5       | Aborted 10-09 before any traffic                  | -     | not counted |    |
//! | routing    | 7       | 10 %, Superseded 10-19 by 8                       | -     | not counted |    |
//! | settlement | 20      | Promoted 10-03                                    | 72 h  | ok     |         |
//! | settlement | 21      | 25 %, analysis failed 14:00, RolledBack 10-10 14:06 | -   | FAIL   | 6 min   |
//! | settlement | 22, 23  | Promoted 10-12, 10-25                             | 30, 12 h | ok ×2 |      |
//! | gateway    | 40, 42  | Promoted 10-04, 10-27                             | 1, 10 h | ok ×2 |       |
//! | gateway    | 41      | Promoted 10-16, image without commit labels       | -     | ok     |         |
//! | gateway    | 43      | 10 % since 10-30, in progress                     | -     | not counted |    |
//!
//! Deployment frequency (promotions / 30 days): accounting 5 (12, 14, 15, 16, 17; 16 was
//! promoted before it was undone), routing 5, settlement 3, gateway 3 → overall 16 / 30.
//!
//! Lead time, interpolated quantiles (index h = (n − 1)·p into the sorted values):
//! - accounting 20, 24, 25, 26, 48 h: median 25 h; p90 h = 3.6 → 26 + 0.6·22 = 39.2 h
//! - routing 2..6 h: median 4 h; p90 5 + 0.6·1 = 5.6 h
//! - settlement 12, 30, 72 h: median 30 h; p90 h = 1.8 → 30 + 0.8·42 = 63.6 h
//! - gateway 1, 10 h (41 has no commit time): median 5.5 h; p90 h = 0.9 → 1 + 0.9·9 = 9.1 h
//! - overall 1 2 3 4 5 6 10 12 20 24 25 26 30 48 72 (15): median x7 = 12 h;
//!   p90 h = 12.6 → 30 + 0.6·18 = 40.8 h
//!
//! Change failure rate (failed / finished deployments that reached traffic): accounting 2/6,
//! routing 0/5, settlement 1/4, gateway 0/3 → overall 3/18 = 1/6.
//!
//! Time to restore: accounting 4 and 10 min → median 7 min; settlement 6 min; overall 4, 6,
//! 10 min → 6 min.
//!
//! Per day: 2 promotions on 10-12 (routing 6, settlement 22) and 10-27 (routing 9, gateway 42),
//! 1 on 10-01, 02, 03, 04, 07, 08, 15, 16, 19, 21, 23, 25; change failures on 10-06, 10-10, 10-21.

use chrono::{DateTime, NaiveDate, Utc};
use payplane_delivery::{DeliveryFigures, Outcome, ReleaseEvent, fold};

const H: f64 = 3600.0;

fn events() -> Vec<ReleaseEvent> {
    // Read at run time: see payplane_testkit::package_dir.
    let path = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run with cargo test"))
        .join("tests/fixtures/releases-30d.json");
    let list: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    serde_json::from_value(list["items"].clone()).unwrap()
}

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-6)
}

#[test]
fn the_fixture_folds_into_the_releases_of_the_table() {
    let records = fold(&events());
    assert_eq!(
        records.len(),
        22,
        "accounting 11-17, routing 3-9, settlement 20-23, gateway 40-43"
    );
    let outcome = |svc: &str, rel: u64| {
        records
            .iter()
            .find(|r| r.service == svc && r.release == rel)
            .unwrap()
            .outcome
    };
    assert_eq!(outcome("accounting", 13), Outcome::RolledBack);
    assert_eq!(outcome("accounting", 16), Outcome::RolledBack);
    assert_eq!(outcome("routing", 5), Outcome::Aborted);
    assert_eq!(outcome("routing", 7), Outcome::Superseded);
    assert_eq!(outcome("gateway", 43), Outcome::InProgress);
    let promoted = records.iter().filter(|r| r.outcome == Outcome::Promoted).count();
    // 16 promoted in the window, minus accounting 16 (undone), plus accounting 11 (before it).
    assert_eq!(promoted, 16);
}

#[test]
fn the_fixture_gives_the_hand_counted_figures() {
    let records = fold(&events());
    let f = DeliveryFigures::compute(&records, t("2026-10-01T00:00:00Z"), t("2026-10-31T00:00:00Z"));
    assert_eq!(f.days, 30.0);

    let o = &f.overall;
    assert_eq!(o.promotions, 16);
    assert!(close(Some(o.deployment_frequency_per_day), 16.0 / 30.0));
    assert_eq!(o.lead_time_samples, 15);
    assert!(close(o.lead_time_median_seconds, 12.0 * H), "{o:?}");
    assert!(close(o.lead_time_p90_seconds, 40.8 * H), "{o:?}");
    assert_eq!((o.change_failures, o.deployments_finished), (3, 18));
    assert!(close(o.change_failure_rate, 1.0 / 6.0));
    assert_eq!(o.restores, 3);
    assert!(close(o.time_to_restore_median_seconds, 360.0));

    let s = |name: &str| &f.services[name];
    assert_eq!(f.services.len(), 4);
    // (promotions, lead median h, lead p90 h, failures, finished, restore median s)
    for (name, promotions, median, p90, failures, finished, restore) in [
        ("accounting", 5, 25.0, 39.2, 2, 6, Some(420.0)),
        ("routing", 5, 4.0, 5.6, 0, 5, None),
        ("settlement", 3, 30.0, 63.6, 1, 4, Some(360.0)),
        ("gateway", 3, 5.5, 9.1, 0, 3, None),
    ] {
        let g = s(name);
        assert_eq!(g.promotions, promotions, "{name}");
        assert!(
            close(Some(g.deployment_frequency_per_day), promotions as f64 / 30.0),
            "{name}"
        );
        assert!(close(g.lead_time_median_seconds, median * H), "{name}: {g:?}");
        assert!(close(g.lead_time_p90_seconds, p90 * H), "{name}: {g:?}");
        assert_eq!(
            (g.change_failures, g.deployments_finished),
            (failures, finished),
            "{name}"
        );
        assert!(
            close(g.change_failure_rate, failures as f64 / finished as f64),
            "{name}"
        );
        assert_eq!(g.time_to_restore_median_seconds, restore, "{name}");
    }
    assert_eq!(s("gateway").lead_time_samples, 2);

    let days = DeliveryFigures::days(&records, f.since, f.until);
    assert_eq!(days.len(), 30);
    let on = |d: u32| {
        days.iter()
            .find(|x| x.date == NaiveDate::from_ymd_opt(2026, 10, d).unwrap())
            .unwrap()
    };
    assert_eq!((on(12).promotions, on(27).promotions), (2, 2));
    for d in [1, 2, 3, 4, 7, 8, 15, 16, 19, 21, 23, 25] {
        assert_eq!(on(d).promotions, 1, "10-{d:02}");
    }
    let failure_days: Vec<_> = days
        .iter()
        .filter(|d| d.change_failures > 0)
        .map(|d| d.date.to_string())
        .collect();
    assert_eq!(failure_days, ["2026-10-06", "2026-10-10", "2026-10-21"]);
}
