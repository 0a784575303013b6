//! The HTML report of the 30-day fixture, opened in a real headless browser (Debian's
//! `chromium`; `ci/test` installs it): the DOM the browser builds must show the fixture's
//! numbers in the charts and the figures table. No chromium = a failed test that says so.

use std::{collections::BTreeMap, path::PathBuf, process::Command};

/// The 30-day fixture of the delivery crate.
fn fixture() -> String {
    payplane_testkit::package_dir()
        .join("../delivery/tests/fixtures/releases-30d.json")
        .display()
        .to_string()
}

fn chromium() -> PathBuf {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Some(p) = std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
        {
            return p;
        }
    }
    panic!(
        "no chromium on PATH: the HTML report is checked in a real headless browser. \
         Install it with `apt-get install chromium` (ci/test does), then re-run"
    );
}

/// The attributes of every start tag `<{tag} ...>` whose attributes include `marker`.
fn elements(dom: &str, tag: &str, marker: &str) -> Vec<BTreeMap<String, String>> {
    let open = format!("<{tag} ");
    let mut out = Vec::new();
    let mut rest = dom;
    while let Some(i) = rest.find(&open) {
        rest = &rest[i + open.len()..];
        let end = rest.find('>').expect("a closed tag");
        let attrs = &rest[..end];
        if attrs.contains(marker) {
            let mut map = BTreeMap::new();
            let mut a = attrs;
            while let Some(eq) = a.find("=\"") {
                let name = a[..eq].trim().to_owned();
                let after = &a[eq + 2..];
                let close = after.find('"').expect("a closed attribute");
                map.insert(name, after[..close].to_owned());
                a = &after[close + 1..];
            }
            out.push(map);
        }
        rest = &rest[end..];
    }
    out
}

#[test]
fn the_browser_shows_the_fixture_numbers_in_the_charts_and_the_table() {
    let browser = chromium();
    let dir = std::env::temp_dir().join(format!("payplane-report-html-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let page = dir.join("report.html");
    let out = Command::new(env!("CARGO_BIN_EXE_payplane"))
        .args([
            "report",
            "--from",
            &fixture(),
            "--since",
            "2026-10-01",
            "--until",
            "2026-10-31",
        ])
        .args(["--format", "html", "--output"])
        .arg(&page)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        !html.contains("<script")
            && !html.contains("src=")
            && !html.contains("href=")
            && !html.contains("url("),
        "self-contained: nothing to fetch"
    );

    let profile = dir.join("profile");
    let shot = dir.join("report.png");
    let dump = Command::new(&browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium");
    assert!(
        dump.status.success(),
        "chromium --dump-dom failed: {}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dom = String::from_utf8(dump.stdout).unwrap();
    assert!(
        dom.contains("<svg id=\"releases-per-day\""),
        "the browser built the page:\n{dom:.2000}"
    );

    // Releases per day: one group per day, the fixture's promotions and failures on their days.
    let days = elements(&dom, "g", "class=\"day\"");
    assert_eq!(days.len(), 30);
    let on = |date: &str, attr: &str| -> u64 {
        days.iter().find(|d| d["data-date"] == date).unwrap()[attr]
            .parse()
            .unwrap()
    };
    assert_eq!(on("2026-10-12", "data-promotions"), 2);
    assert_eq!(on("2026-10-27", "data-promotions"), 2);
    assert_eq!(on("2026-10-05", "data-promotions"), 0);
    assert_eq!(on("2026-10-21", "data-promotions"), 1);
    assert_eq!(on("2026-10-21", "data-change-failures"), 1);
    let total: u64 = days
        .iter()
        .map(|d| d["data-promotions"].parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, 16);
    let failure_days: Vec<&str> = days
        .iter()
        .filter(|d| d["data-change-failures"] != "0")
        .map(|d| d["data-date"].as_str())
        .collect();
    assert_eq!(failure_days, ["2026-10-06", "2026-10-10", "2026-10-21"]);
    assert!(dom.contains("<title>2026-10-12: 2 promoted, 0 change failures</title>"));
    // Bars are drawn to scale: the 2-promotion day's bar is twice the 1-promotion day's.
    let bars = elements(&dom, "rect", "class=\"promotions\"");
    assert_eq!(bars.len(), 30);
    let heights: Vec<f64> = bars.iter().map(|b| b["height"].parse().unwrap()).collect();
    assert!((heights[11] - 2.0 * heights[0]).abs() < 0.2, "{heights:?}");
    assert_eq!(heights[4], 0.0);

    // Lead-time trend: one point per promoted release with a commit time, in promotion order.
    let points = elements(&dom, "circle", "class=\"release\"");
    assert_eq!(points.len(), 15);
    let first = &points[0];
    assert_eq!(
        (first["data-service"].as_str(), first["data-release"].as_str()),
        ("routing", "3")
    );
    assert_eq!(first["data-lead-seconds"], "7200");
    let s20 = points
        .iter()
        .find(|p| p["data-service"] == "settlement" && p["data-release"] == "20")
        .unwrap();
    assert_eq!(s20["data-lead-seconds"], "259200");
    let cy = |p: &BTreeMap<String, String>| p["cy"].parse::<f64>().unwrap();
    assert!(
        points.iter().all(|p| cy(s20) <= cy(p)),
        "72 h is the highest point"
    );
    assert!(dom.contains("<polyline class=\"trend\""));

    // The figures table.
    let cells = elements(&dom, "td", "data-metric=");
    assert_eq!(cells.len(), 5 * 6, "4 services + overall, 6 figures each");
    let rows = elements(&dom, "tr", "data-service=");
    let overall = rows.iter().position(|r| r["data-service"] == "(all)").unwrap();
    let metric = |row: usize, m: &str| {
        cells[row * 6..row * 6 + 6]
            .iter()
            .find(|c| c["data-metric"] == m)
            .unwrap()["data-value"]
            .clone()
    };
    assert_eq!(metric(overall, "promotions"), "16");
    assert_eq!(metric(overall, "lead-time-median-seconds"), "43200");
    assert_eq!(metric(overall, "change-failure-rate"), "0.1666666667");
    assert_eq!(metric(overall, "time-to-restore-median-seconds"), "360");
    assert!(dom.contains(">16.7% (3/18)<"), "the rate as a person reads it");

    // And it renders: a screenshot of a real page is a PNG of some size.
    let shot_run = Command::new(&browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--window-size=1200,1600",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(
        shot_run.status.success(),
        "{}",
        String::from_utf8_lossy(&shot_run.stderr)
    );
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
