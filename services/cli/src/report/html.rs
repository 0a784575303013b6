//! The report as one self-contained HTML page: no script, no external font or stylesheet; the
//! charts are inline SVG whose elements carry their numbers (`data-*` attributes and `<title>`
//! tooltips), so a reader hovering a bar and a test reading the DOM see the same thing.

use std::fmt::Write as _;

use super::{Report, human_seconds, rfc};

const W: f64 = 760.0;
const H: f64 = 220.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:60rem;color:#1d2430;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.1rem;margin-top:2rem}
.window{color:#5a6270;margin-top:0}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{text-align:left;padding:.3rem .6rem;border-bottom:1px solid #e1e4ea}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tr.overall td{font-weight:600;border-top:2px solid #1d2430}
svg{width:100%;height:auto;background:#fafbfc;border:1px solid #e1e4ea}
svg text{font-size:10px;fill:#5a6270}
rect.promotions{fill:#2f7d4f}rect.failures{fill:#c0392b}
polyline.trend{fill:none;stroke:#2a5db0;stroke-width:1.5}circle.release{fill:#2a5db0}
line.axis{stroke:#9aa1ad}line.grid{stroke:#e1e4ea}
.legend span{display:inline-block;width:.8rem;height:.8rem;margin:0 .3rem 0 1rem;vertical-align:middle}
p.note{color:#5a6270;font-size:.85rem}
#releases td:nth-child(4),#releases td:nth-child(5){white-space:nowrap;font-size:.8rem}
";

pub fn render(report: &Report) -> String {
    let f = &report.figures;
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>payplane delivery report {} .. {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>Delivery report</h1>\n<p class=\"window\" id=\"window\" data-since=\"{}\" data-until=\"{}\" data-days=\"{}\">\
         {} to {} ({} days, UTC)</p>\n",
        rfc(f.since),
        rfc(f.until),
        rfc(f.since),
        rfc(f.until),
        super::trim_float(f.days),
        rfc(f.since),
        rfc(f.until),
        super::trim_float(f.days),
    );
    figures_table(&mut out, report);
    out.push_str("<h2>Releases per day</h2>\n<p class=\"legend\"><span style=\"background:#2f7d4f\"></span>promoted<span style=\"background:#c0392b\"></span>change failures (rolled back or aborted after taking traffic)</p>\n");
    bars(&mut out, report);
    out.push_str("<h2>Lead time for changes</h2>\n<p class=\"note\">Commit to promotion of each promoted release, by promotion time.</p>\n");
    trend(&mut out, report);
    releases_table(&mut out, report);
    out.push_str(
        "<p class=\"note\">Deployment frequency: promotions per day. Lead time: commit time (OCI label \
         org.opencontainers.image.created) to first promotion; quantiles interpolated between ranks. \
         Change failure rate: rolled back or aborted among the releases that finished in the window and \
         reached production traffic. Time to restore: first failure sign (failed analysis, abort, undo) \
         to all traffic back on stable.</p>\n</body>\n</html>\n",
    );
    out
}

fn figures_table(out: &mut String, report: &Report) {
    out.push_str(
        "<h2>Figures</h2>\n<table id=\"figures\">\n<thead><tr><th>Service</th><th class=\"num\">Promotions</th>\
         <th class=\"num\">Per day</th><th class=\"num\">Lead time p50</th><th class=\"num\">Lead time p90</th>\
         <th class=\"num\">Change failure rate</th><th class=\"num\">Time to restore p50</th></tr></thead>\n<tbody>\n",
    );
    let opt = |v: Option<f64>| v.map_or_else(String::new, super::trim_float);
    for (name, s) in report.rows() {
        let class = if name == payplane_delivery::metrics::ALL_SERVICES {
            " class=\"overall\""
        } else {
            ""
        };
        let cfr = match s.change_failure_rate {
            Some(r) => format!(
                "{:.1}% ({}/{})",
                r * 100.0,
                s.change_failures,
                s.deployments_finished
            ),
            None => "-".to_owned(),
        };
        let _ = writeln!(
            out,
            "<tr{class} data-service=\"{name}\">\
             <td>{name}</td>\
             <td class=\"num\" data-metric=\"promotions\" data-value=\"{}\">{}</td>\
             <td class=\"num\" data-metric=\"deployment-frequency-per-day\" data-value=\"{}\">{:.2}</td>\
             <td class=\"num\" data-metric=\"lead-time-median-seconds\" data-value=\"{}\">{}</td>\
             <td class=\"num\" data-metric=\"lead-time-p90-seconds\" data-value=\"{}\">{}</td>\
             <td class=\"num\" data-metric=\"change-failure-rate\" data-value=\"{}\">{}</td>\
             <td class=\"num\" data-metric=\"time-to-restore-median-seconds\" data-value=\"{}\">{}</td></tr>",
            s.promotions,
            s.promotions,
            super::trim_float(s.deployment_frequency_per_day),
            s.deployment_frequency_per_day,
            opt(s.lead_time_median_seconds),
            s.lead_time_median_seconds
                .map_or_else(|| "-".to_owned(), human_seconds),
            opt(s.lead_time_p90_seconds),
            s.lead_time_p90_seconds
                .map_or_else(|| "-".to_owned(), human_seconds),
            opt(s.change_failure_rate),
            cfr,
            opt(s.time_to_restore_median_seconds),
            s.time_to_restore_median_seconds
                .map_or_else(|| "-".to_owned(), human_seconds),
            name = escape(name),
        );
    }
    out.push_str("</tbody>\n</table>\n");
}

fn axes(out: &mut String, max: f64, unit: &str) {
    let (x0, y0, y1) = (LEFT, H - BOTTOM, TOP);
    let _ = writeln!(
        out,
        "<line class=\"axis\" x1=\"{x0}\" y1=\"{y0}\" x2=\"{}\" y2=\"{y0}\"/><line class=\"axis\" x1=\"{x0}\" y1=\"{y0}\" x2=\"{x0}\" y2=\"{y1}\"/>",
        W - RIGHT
    );
    for frac in [0.5, 1.0] {
        let y = y0 - frac * (y0 - y1);
        let _ = writeln!(
            out,
            "<line class=\"grid\" x1=\"{x0}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}{unit}</text>",
            W - RIGHT,
            x0 - 4.0,
            y + 3.0,
            super::trim_float((max * frac * 10.0).round() / 10.0)
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">0</text>",
        x0 - 4.0,
        y0 + 3.0
    );
}

fn bars(out: &mut String, report: &Report) {
    let days = &report.per_day;
    let total: u64 = days.iter().map(|d| d.promotions).sum();
    let failures: u64 = days.iter().map(|d| d.change_failures).sum();
    let _ = writeln!(
        out,
        "<svg id=\"releases-per-day\" viewBox=\"0 0 {W} {H}\" role=\"img\" data-days=\"{}\" data-promotions=\"{total}\" \
         data-change-failures=\"{failures}\" aria-label=\"Promotions and change failures per day: {total} promotions, {failures} change failures over {} days\">",
        days.len(),
        days.len()
    );
    let max = days
        .iter()
        .map(|d| d.promotions + d.change_failures)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    axes(out, max, "");
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let slot = plot_w / days.len().max(1) as f64;
    let bar_w = (slot * 0.7).max(1.0);
    for (i, d) in days.iter().enumerate() {
        let x = LEFT + i as f64 * slot + (slot - bar_w) / 2.0;
        let ph = d.promotions as f64 / max * plot_h;
        let fh = d.change_failures as f64 / max * plot_h;
        let base = H - BOTTOM;
        let _ = write!(
            out,
            "<g class=\"day\" data-date=\"{}\" data-promotions=\"{}\" data-change-failures=\"{}\"><title>{}: {} promoted, {} change failures</title>\
             <rect class=\"promotions\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar_w:.1}\" height=\"{ph:.1}\"/>\
             <rect class=\"failures\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar_w:.1}\" height=\"{fh:.1}\"/>",
            d.date,
            d.promotions,
            d.change_failures,
            d.date,
            d.promotions,
            d.change_failures,
            base - ph,
            base - ph - fh,
        );
        // A date under the first day and every 7th.
        if i % 7 == 0 {
            let _ = write!(
                out,
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                x + bar_w / 2.0,
                H - BOTTOM + 14.0,
                d.date.format("%m-%d")
            );
        }
        out.push_str("</g>\n");
    }
    out.push_str("</svg>\n");
}

fn trend(out: &mut String, report: &Report) {
    let points = report.lead_times();
    let (since, until) = (report.figures.since, report.figures.until);
    let span = (until - since).num_milliseconds().max(1) as f64;
    let max_h = points.iter().map(|p| p.2 / 3600.0).fold(0.0, f64::max).max(1.0);
    let _ = writeln!(
        out,
        "<svg id=\"lead-time-trend\" viewBox=\"0 0 {W} {H}\" role=\"img\" data-points=\"{}\" \
         aria-label=\"Lead time of each promoted release: {} releases\">",
        points.len(),
        points.len()
    );
    axes(out, max_h, "h");
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let xy: Vec<(f64, f64)> = points
        .iter()
        .map(|(_, at, lead)| {
            let x = LEFT + (*at - since).num_milliseconds() as f64 / span * plot_w;
            let y = H - BOTTOM - lead / 3600.0 / max_h * plot_h;
            (x, y)
        })
        .collect();
    if xy.len() > 1 {
        let pts: Vec<String> = xy.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
        let _ = writeln!(out, "<polyline class=\"trend\" points=\"{}\"/>", pts.join(" "));
    }
    for ((r, at, lead), (x, y)) in points.iter().zip(&xy) {
        let _ = writeln!(
            out,
            "<circle class=\"release\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3.5\" data-service=\"{svc}\" data-release=\"{}\" \
             data-promoted=\"{}\" data-lead-seconds=\"{}\"><title>{svc} release {}: promoted {}, lead time {}</title></circle>",
            r.release,
            rfc(*at),
            super::trim_float(*lead),
            r.release,
            rfc(*at),
            human_seconds(*lead),
            svc = escape(&r.service),
        );
    }
    for (i, label) in [(0.0, since), (1.0, until)] {
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"{}\">{}</text>",
            LEFT + i * plot_w,
            H - BOTTOM + 14.0,
            if i == 0.0 { "start" } else { "end" },
            label.format("%Y-%m-%d")
        );
    }
    out.push_str("</svg>\n");
}

fn releases_table(out: &mut String, report: &Report) {
    out.push_str(
        "<h2>Releases</h2>\n<table id=\"releases\">\n<thead><tr><th>Service</th><th class=\"num\">Release</th>\
         <th>Revision</th><th>Started</th><th>Finished</th><th>Outcome</th><th class=\"num\">Lead time</th>\
         <th>Started by</th><th>Approved by</th><th>Failure</th></tr></thead>\n<tbody>\n",
    );
    for r in &report.releases {
        let _ = writeln!(
            out,
            "<tr data-service=\"{}\" data-release=\"{}\" data-outcome=\"{}\"><td>{}</td><td class=\"num\">{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&r.service),
            r.release,
            r.outcome,
            escape(&r.service),
            r.release,
            escape(&r.revision),
            rfc(r.started),
            r.finished.map_or_else(|| "-".to_owned(), rfc),
            r.outcome,
            r.lead_time().map_or_else(
                || "-".to_owned(),
                |d| human_seconds(d.num_milliseconds() as f64 / 1000.0)
            ),
            escape(r.started_by.as_deref().unwrap_or("-")),
            escape(&r.approved_by.join(", ")),
            escape(r.failure_reason.as_deref().unwrap_or("")),
        );
    }
    out.push_str("</tbody>\n</table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn an_empty_report_is_still_a_page() {
        let until = super::super::parse_time("2026-10-31").unwrap();
        let since = super::super::parse_time("2026-10-01").unwrap();
        let report = Report::build(&[], None, since, until).unwrap();
        let page = render(&report);
        assert!(page.starts_with("<!DOCTYPE html>") && page.ends_with("</html>\n"));
        assert_eq!(page.matches("<g class=\"day\"").count(), 30);
        assert!(!page.contains("<script") && !page.contains("http://") && !page.contains("https://"));
    }
}
