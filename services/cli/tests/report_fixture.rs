//! `payplane report`, `audit` and `history` on the 30-day fixture of payplane-delivery
//! (`services/delivery/tests/fixtures/releases-30d.json`; the figures are counted by hand in
//! `services/delivery/tests/fixture_30d.rs`), through the built binary with `--from`.

use std::process::{Command, Output};

/// The 30-day fixture of the delivery crate.
fn fixture() -> String {
    payplane_testkit::package_dir()
        .join("../delivery/tests/fixtures/releases-30d.json")
        .display()
        .to_string()
}
const WINDOW: [&str; 4] = ["--since", "30d", "--until", "2026-10-31T00:00:00Z"];

fn payplane(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_payplane"))
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .expect("run payplane")
}

fn ok(args: &[&str]) -> String {
    let out = payplane(args);
    assert!(
        out.status.success(),
        "payplane {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn report(format: &str) -> String {
    let from = fixture();
    let mut args = vec!["report", "--from", &from, "--format", format];
    args.extend(WINDOW);
    ok(&args)
}

#[test]
fn text_report_shows_the_hand_counted_figures() {
    let text = report("text");
    assert!(
        text.starts_with("Delivery report 2026-10-01T00:00:00Z .. 2026-10-31T00:00:00Z (30 days)"),
        "{text}"
    );
    let row = |name: &str| -> Vec<String> {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row {name} in:\n{text}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    // service, promotions, per day, lead p50, lead p90, CFR (failed/finished), restore p50
    assert_eq!(
        row("accounting"),
        [
            "accounting",
            "5",
            "0.17",
            "25h00m",
            "39h12m",
            "33.3%",
            "(2/6)",
            "7m00s"
        ]
    );
    assert_eq!(
        row("routing"),
        ["routing", "5", "0.17", "4h00m", "5h36m", "0.0%", "(0/5)", "-"]
    );
    assert_eq!(
        row("settlement"),
        [
            "settlement",
            "3",
            "0.10",
            "30h00m",
            "63h36m",
            "25.0%",
            "(1/4)",
            "6m00s"
        ]
    );
    assert_eq!(
        row("gateway"),
        ["gateway", "3", "0.10", "5h30m", "9h06m", "0.0%", "(0/3)", "-"]
    );
    assert_eq!(
        row("(all)"),
        [
            "(all)", "16", "0.53", "12h00m", "40h48m", "16.7%", "(3/18)", "6m00s"
        ]
    );
}

#[test]
fn json_report_carries_figures_days_and_releases() {
    let json = report("json");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let top_keys: Vec<&str> = json
        .lines()
        .filter_map(|l| l.strip_prefix("  \"")?.split('"').next())
        .collect();
    assert_eq!(
        top_keys,
        [
            "since", "until", "days", "overall", "services", "perDay", "releases"
        ],
        "each key once"
    );
    let o = &v["overall"];
    assert_eq!(o["promotions"], 16);
    assert_eq!(o["leadTimeSamples"], 15);
    assert_eq!(o["leadTimeMedianSeconds"], 43200.0);
    assert!((o["leadTimeP90Seconds"].as_f64().unwrap() - 146_880.0).abs() < 1e-6);
    assert_eq!(
        (o["changeFailures"].clone(), o["deploymentsFinished"].clone()),
        (3.into(), 18.into())
    );
    assert!((o["changeFailureRate"].as_f64().unwrap() - 1.0 / 6.0).abs() < 1e-12);
    assert_eq!(o["timeToRestoreMedianSeconds"], 360.0);
    assert_eq!(v["services"]["settlement"]["changeFailureRate"], 0.25);
    assert_eq!(v["services"]["gateway"]["leadTimeSamples"], 2);
    assert_eq!(v["days"], 30.0, "the window's length");
    assert_eq!(v["perDay"].as_array().unwrap().len(), 30);
    assert_eq!(
        v["perDay"][11],
        serde_json::json!({"date": "2026-10-12", "promotions": 2, "changeFailures": 0})
    );
    // 16 promoted + accounting 13, settlement 21 (rolled back), routing 5 (aborted), 7 (superseded);
    // gateway 43 is in progress and accounting 11 before the window.
    let releases = v["releases"].as_array().unwrap();
    assert_eq!(releases.len(), 20);
    let acc16 = releases
        .iter()
        .find(|r| r["service"] == "accounting" && r["release"] == 16)
        .unwrap();
    assert_eq!(acc16["outcome"], "RolledBack");
    assert_eq!(acc16["failureReason"], "settlement totals off after promotion");
    assert_eq!(acc16["approvedBy"], serde_json::json!(["bob"]));
}

#[test]
fn csv_report_is_one_row_per_service_and_overall() {
    let csv = report("csv");
    let w = "2026-10-01T00:00:00Z,2026-10-31T00:00:00Z,30";
    let expected = format!(
        "service,since,until,days,promotions,deployment_frequency_per_day,lead_time_samples,lead_time_median_seconds,\
lead_time_p90_seconds,deployments_finished,change_failures,change_failure_rate,restores,time_to_restore_median_seconds
accounting,{w},5,0.1666666667,5,90000,141120,6,2,0.3333333333,2,420
gateway,{w},3,0.1,2,19800,32760,3,0,0,0,
routing,{w},5,0.1666666667,5,14400,20160,5,0,0,0,
settlement,{w},3,0.1,3,108000,228960,4,1,0.25,1,360
(all),{w},16,0.5333333333,15,43200,146880,18,3,0.1666666667,3,360
"
    );
    assert_eq!(csv, expected);
}

#[test]
fn service_filter_and_unknown_service() {
    let from = fixture();
    let mut args = vec![
        "report",
        "--from",
        &from,
        "--service",
        "settlement",
        "--format",
        "csv",
    ];
    args.extend(WINDOW);
    let csv = ok(&args);
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(csv.contains(
        "\n(all),2026-10-01T00:00:00Z,2026-10-31T00:00:00Z,30,3,0.1,3,108000,228960,4,1,0.25,1,360\n"
    ));

    let out = payplane(&["report", "--from", &fixture(), "--service", "ledger"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "no such service `ledger`: releases are recorded for accounting, gateway, routing, settlement"
        ),
        "{err}"
    );
}

#[test]
fn audit_shows_the_trail_of_the_latest_or_a_chosen_release() {
    let text = ok(&["audit", "accounting", "--from", &fixture()]);
    assert!(
        text.starts_with("accounting release 17 ("),
        "latest by default:\n{text}"
    );
    let text = ok(&["audit", "settlement", "--release", "21", "--from", &fixture()]);
    assert!(text.contains(": RolledBack\n"), "{text}");
    assert!(
        text.contains("failure: analysis latency-p99 failed (scrape = 2.4)"),
        "{text}"
    );
    let kinds: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("SEQ"))
        .skip(1)
        .map(|l| l.split_whitespace().nth(3).unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "Started",
            "WeightChanged",
            "Paused",
            "AnalysisMeasured",
            "Aborted",
            "RolledBack"
        ]
    );
    assert!(text.contains("latency-p99 (scrape) = 2.4 Failed"), "{text}");

    let json: serde_json::Value = serde_json::from_str(&ok(&[
        "audit",
        "accounting",
        "--release",
        "16",
        "--format",
        "json",
        "--from",
        &fixture(),
    ]))
    .unwrap();
    assert_eq!(json["record"]["outcome"], "RolledBack");
    assert_eq!(json["events"].as_array().unwrap().len(), 9);
    assert_eq!(json["events"][7]["kind"], "Undone");
    assert_eq!(json["events"][7]["actor"], "carol");

    let out = payplane(&["audit", "accounting", "--release", "99", "--from", &fixture()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("has no release 99; it has 11, 12, 13, 14, 15, 16, 17"),
        "{err}"
    );
}

#[test]
fn history_is_one_line_per_release() {
    let text = ok(&["history", "routing", "--from", &fixture()]);
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        lines[0],
        [
            "RELEASE", "REVISION", "STARTED", "FINISHED", "OUTCOME", "LEAD", "TIME"
        ]
    );
    let rows: Vec<(&str, &str, &str)> = lines[1..].iter().map(|l| (l[0], l[4], l[5])).collect();
    assert_eq!(
        rows,
        [
            ("3", "Promoted", "2h00m"),
            ("4", "Promoted", "3h00m"),
            ("5", "Aborted", "-"),
            ("6", "Promoted", "4h00m"),
            ("7", "Superseded", "-"),
            ("8", "Promoted", "5h00m"),
            ("9", "Promoted", "6h00m"),
        ]
    );
    assert_eq!(lines[1][2], "2026-10-01T10:00:00Z");
    assert_eq!(lines[1][3], "2026-10-01T11:00:00Z");
}

#[test]
fn no_cluster_is_a_readable_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_payplane"))
        .args(["history", "accounting"])
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env("HOME", "/nonexistent")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("KUBECONFIG") && err.contains("ci/cluster up") && err.contains("--from"),
        "{err}"
    );
}
