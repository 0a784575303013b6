//! A trace as a waterfall: its spans ordered as a tree (each span under its parent, siblings by
//! start time), and drawn one row per span with a bar placed on the trace's time line. Pure: no I/O.

use std::{
    collections::{HashMap, HashSet},
    fmt::Write as _,
};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::jaeger::{Trace, find_tag};

/// Narrower than this and a bar can no longer show where in the trace a span ran.
const MIN_BAR_WIDTH: usize = 10;
const BAR: char = '█';
const ERROR_MARK: char = '✗';

/// One span as the waterfall shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SpanRow {
    pub span_id: String,
    /// As the span references it, even when that span is not in the trace.
    pub parent_span_id: Option<String>,
    /// 0 for a root; a span whose parent is missing from the trace is a root.
    pub depth: usize,
    pub service: String,
    pub operation: String,
    /// `service.version` of the span, else of its process.
    pub version: Option<String>,
    /// Microseconds after the trace's first span started.
    pub start_offset_us: u64,
    pub duration_us: u64,
    pub error: bool,
    pub grpc_status_code: Option<i64>,
}

impl SpanRow {
    /// `UNAVAILABLE(14)`.
    fn grpc_status(&self) -> Option<String> {
        let code = self.grpc_status_code?;
        // Numbers outside the 17 canonical codes have no name (`from_i32` would say UNKNOWN).
        let name = i32::try_from(code)
            .ok()
            .filter(|c| (0..=16).contains(c))
            .map(|c| payplane_runtime::code_name(tonic::Code::from_i32(c)));
        Some(match name {
            Some(name) => format!("{name}({code})"),
            None => format!("code {code}"),
        })
    }

    /// The status column: errors marked, with their gRPC code; a non-OK code that the service did
    /// not count as its error (NOT_FOUND, INVALID_ARGUMENT: the caller's problem) is shown unmarked.
    fn status(&self) -> String {
        match (self.error, self.grpc_status()) {
            (true, Some(code)) => format!("{ERROR_MARK} {code}"),
            (true, None) => format!("{ERROR_MARK} ERROR"),
            (false, Some(code)) if self.grpc_status_code != Some(0) => code,
            (false, _) => String::new(),
        }
    }
}

/// A trace's spans in display order.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Waterfall {
    pub trace_id: String,
    pub start_time: DateTime<Utc>,
    /// From the first span's start to the last span's end.
    pub duration_us: u64,
    pub spans: Vec<SpanRow>,
}

impl Waterfall {
    pub fn build(trace: &Trace) -> Self {
        let start = trace.spans.iter().map(|s| s.start_time).min().unwrap_or(0);
        let end = trace
            .spans
            .iter()
            .map(|s| s.start_time.saturating_add(s.duration))
            .max()
            .unwrap_or(start);
        let ids: HashSet<&str> = trace.spans.iter().map(|s| s.span_id.as_str()).collect();
        // Parent → children and the roots, each list by start time (span id breaks ties, so the
        // order does not depend on the order Jaeger lists them in).
        let mut children: HashMap<&str, Vec<usize>> = HashMap::new();
        let mut roots = Vec::new();
        for (i, s) in trace.spans.iter().enumerate() {
            match s.parent_span_id(&trace.trace_id) {
                Some(p) if ids.contains(p) && p != s.span_id => children.entry(p).or_default().push(i),
                _ => roots.push(i),
            }
        }
        let by_start = |a: &usize, b: &usize| {
            let (a, b) = (&trace.spans[*a], &trace.spans[*b]);
            (a.start_time, &a.span_id).cmp(&(b.start_time, &b.span_id))
        };
        roots.sort_by(by_start);
        children.values_mut().for_each(|c| c.sort_by(by_start));

        let mut order: Vec<(usize, usize)> = Vec::with_capacity(trace.spans.len());
        let mut seen = vec![false; trace.spans.len()];
        let mut visit = |root: usize, order: &mut Vec<(usize, usize)>| {
            let mut stack = vec![(root, 0)];
            while let Some((i, depth)) = stack.pop() {
                if std::mem::replace(&mut seen[i], true) {
                    continue;
                }
                order.push((i, depth));
                if let Some(kids) = children.get(trace.spans[i].span_id.as_str()) {
                    stack.extend(kids.iter().rev().map(|&k| (k, depth + 1)));
                }
            }
        };
        for &r in &roots {
            visit(r, &mut order);
        }
        // Spans whose parents form a cycle are reachable from no root; a broken trace still shows
        // every span, the earliest of each such group as a root.
        let mut rest: Vec<usize> = (0..trace.spans.len()).collect();
        rest.sort_by(by_start);
        for i in rest {
            visit(i, &mut order);
        }

        let spans = order
            .into_iter()
            .map(|(i, depth)| {
                let s = &trace.spans[i];
                let process = trace.processes.get(&s.process_id);
                let version = s
                    .tag("service.version")
                    .or_else(|| process.and_then(|p| find_tag(&p.tags, "service.version")))
                    .map(tag_text);
                SpanRow {
                    span_id: s.span_id.clone(),
                    parent_span_id: s.parent_span_id(&trace.trace_id).map(str::to_owned),
                    depth,
                    service: process.map_or_else(|| s.process_id.clone(), |p| p.service_name.clone()),
                    operation: s.operation_name.clone(),
                    version,
                    start_offset_us: s.start_time - start,
                    duration_us: s.duration,
                    error: is_error(s),
                    grpc_status_code: s.tag("rpc.grpc.status_code").and_then(tag_int),
                }
            })
            .collect();
        Self {
            trace_id: trace.trace_id.clone(),
            start_time: i64::try_from(start)
                .ok()
                .and_then(DateTime::from_timestamp_micros)
                .unwrap_or_default(),
            duration_us: end - start,
            spans,
        }
    }

    /// The services the trace crossed, in the order they first appear.
    pub fn services(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for s in &self.spans {
            if !out.contains(&s.service.as_str()) {
                out.push(&s.service);
            }
        }
        out
    }

    /// The waterfall in at most about `width` columns (the bar keeps MIN_BAR_WIDTH when the
    /// other columns leave less).
    pub fn render(&self, width: usize) -> String {
        let errors = self.spans.iter().filter(|s| s.error).count();
        let mut out = format!(
            "trace {}  {}  {}  {} spans, {} errors\nservices: {}\n\n",
            self.trace_id,
            self.start_time.to_rfc3339_opts(SecondsFormat::Millis, true),
            human(self.duration_us),
            self.spans.len(),
            errors,
            self.services().join(", "),
        );
        let names: Vec<String> = self
            .spans
            .iter()
            .map(|s| {
                format!(
                    "{}{} {}",
                    "  ".repeat(s.depth),
                    s.service,
                    short_operation(&s.operation)
                )
            })
            .collect();
        let versions: Vec<String> = self
            .spans
            .iter()
            .map(|s| s.version.clone().unwrap_or_else(|| "-".to_owned()))
            .collect();
        let durations: Vec<String> = self.spans.iter().map(|s| human(s.duration_us)).collect();
        let statuses: Vec<String> = self.spans.iter().map(SpanRow::status).collect();

        // Each column as wide as its widest cell; long operation names give way to the bar, up to
        // half the width. The status column is left out when no span has one.
        let widest = |header: &str, cells: &[String]| {
            cells
                .iter()
                .map(|c| chars(c))
                .max()
                .unwrap_or(0)
                .max(chars(header))
        };
        let name_w = widest("SPAN", &names).min((width / 2).max(24));
        let version_w = widest("VERSION", &versions);
        let duration_w = widest("DURATION", &durations);
        let status_w = (!statuses.iter().all(String::is_empty)).then(|| widest("STATUS", &statuses));
        let fixed = name_w + 1 + version_w + 1 + duration_w + 1 + status_w.map_or(0, |w| w + 1);
        let bar_w = width.saturating_sub(fixed).max(MIN_BAR_WIDTH);
        let line = |name: &str, version: &str, duration: &str, status: &str, bar: &str| {
            let mut cells = vec![
                pad(name, name_w),
                pad(version, version_w),
                pad_left(duration, duration_w),
            ];
            cells.extend(status_w.map(|w| pad(status, w)));
            cells.push(bar.to_owned());
            cells.join(" ").trim_end().to_owned()
        };

        let total = human(self.duration_us);
        let axis = format!("0{}{total}", " ".repeat(bar_w.saturating_sub(1 + chars(&total))));
        let _ = writeln!(out, "{}", line("SPAN", "VERSION", "DURATION", "STATUS", &axis));
        for (i, s) in self.spans.iter().enumerate() {
            let bar = bar(s, self.duration_us, bar_w);
            let row = line(
                &truncate(&names[i], name_w),
                &versions[i],
                &durations[i],
                &statuses[i],
                &bar,
            );
            let _ = writeln!(out, "{row}");
        }
        out
    }
}

/// `RoutingService/Route` for `payplane.routing.v1.RoutingService/Route`: the gRPC package says
/// nothing the service column does not, and takes the room of the bar. Other names stay whole.
fn short_operation(op: &str) -> &str {
    match op.split_once('/') {
        Some((service, _)) if !service.contains(' ') => match service.rfind('.') {
            Some(dot) => &op[dot + 1..],
            None => op,
        },
        _ => op,
    }
}

/// `bar_w` cells, those of the span's time filled: where it starts and how long it lasts, scaled
/// to the trace. Every span gets at least one cell, so that a 10 µs span in a 2 s trace shows.
pub fn bar(span: &SpanRow, trace_us: u64, bar_w: usize) -> String {
    let total = u128::from(trace_us.max(1));
    let w = bar_w as u128;
    let start = u128::from(span.start_offset_us);
    let end = start + u128::from(span.duration_us);
    let first = ((start * w) / total).min(w - 1) as usize;
    let last = (end * w).div_ceil(total).min(w) as usize;
    let last = last.max(first + 1);
    (0..bar_w)
        .map(|i| if (first..last).contains(&i) { BAR } else { ' ' })
        .collect()
}

/// Marked as an error by the service: OTel status ERROR (exported as `otel.status_code`) or
/// Jaeger's `error=true`.
fn is_error(span: &super::jaeger::Span) -> bool {
    let status_error = span
        .tag("otel.status_code")
        .and_then(serde_json::Value::as_str)
        .is_some_and(|s| s.eq_ignore_ascii_case("ERROR"));
    let error_tag = match span.tag("error") {
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    };
    status_error || error_tag
}

fn tag_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Jaeger gives int64 tags as JSON numbers, but a span may have recorded the code as a string.
fn tag_int(v: &serde_json::Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

/// `850µs`, `12.3ms`, `1.25s`.
pub fn human(us: u64) -> String {
    match us {
        0..1_000 => format!("{us}µs"),
        1_000..1_000_000 => format!("{:.1}ms", us as f64 / 1e3),
        _ => format!("{:.2}s", us as f64 / 1e6),
    }
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

fn truncate(s: &str, w: usize) -> String {
    if chars(s) <= w {
        return s.to_owned();
    }
    let mut t: String = s.chars().take(w.saturating_sub(1)).collect();
    t.push('…');
    t
}

// `format!("{:<w$}")` pads by chars too, but spelled out it is plain that µ, … and ✗ count as one.
fn pad(s: &str, w: usize) -> String {
    format!("{s}{}", " ".repeat(w.saturating_sub(chars(s))))
}

fn pad_left(s: &str, w: usize) -> String {
    format!("{}{s}", " ".repeat(w.saturating_sub(chars(s))))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::json;

    use super::*;
    use crate::trace::jaeger::{Process, Reference, Span, Tag};

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    /// 2026-11-22T09:40:00Z in microseconds.
    const T0: u64 = 1_795_340_400_000_000;

    fn tag(key: &str, value: serde_json::Value) -> Tag {
        Tag {
            key: key.into(),
            value,
        }
    }

    fn span(id: &str, parent: Option<&str>, process: &str, op: &str, start: u64, duration: u64) -> Span {
        Span {
            span_id: id.into(),
            operation_name: op.into(),
            references: parent
                .map(|p| Reference {
                    ref_type: "CHILD_OF".into(),
                    trace_id: TRACE.into(),
                    span_id: p.into(),
                })
                .into_iter()
                .collect(),
            start_time: T0 + start,
            duration,
            tags: vec![],
            process_id: process.into(),
        }
    }

    fn process(service: &str, version: &str) -> Process {
        Process {
            service_name: service.into(),
            tags: vec![tag("service.version", json!(version))],
        }
    }

    /// A payment as the platform traces it, listed out of order as Jaeger may: the gateway's
    /// server span, its create_payment span, a routing call, then two calls to accounting of
    /// which the second failed with UNAVAILABLE, and a settlement span whose parent was not
    /// exported (dropped or still in flight), which makes it a second root.
    fn payment_trace() -> Trace {
        let mut accounting_call = span("a2", Some("c1"), "p3", "accounting.Post", 600, 300);
        accounting_call.tags = vec![
            tag("otel.status_code", json!("ERROR")),
            tag("rpc.grpc.status_code", json!(14)),
        ];
        let mut settle = span("s1", Some("gone"), "p4", "settlement.Record", 900, 100);
        settle.tags = vec![tag("error", json!(true))];
        let mut route = span("r1", Some("c1"), "p2", "routing.Route", 100, 200);
        // The span's own service.version wins over the process's.
        route.tags = vec![tag("service.version", json!("1.4.0-canary"))];
        Trace {
            trace_id: TRACE.into(),
            spans: vec![
                settle,
                accounting_call,
                span("a1", Some("c1"), "p3", "accounting.Hold", 350, 200),
                route,
                span("c1", Some("g1"), "p1", "create_payment", 50, 900),
                span("g1", None, "p1", "PaymentService/CreatePayment", 0, 1000),
            ],
            processes: HashMap::from([
                ("p1".into(), process("gateway", "0.2.0")),
                ("p2".into(), process("routing", "1.3.0")),
                ("p3".into(), process("accounting", "2.0.1")),
                ("p4".into(), process("settlement", "0.9.0")),
            ]),
        }
    }

    #[test]
    fn spans_nest_under_their_parents_and_siblings_go_by_start_time() {
        let w = Waterfall::build(&payment_trace());
        let rows: Vec<(&str, usize)> = w.spans.iter().map(|s| (s.span_id.as_str(), s.depth)).collect();
        assert_eq!(
            rows,
            [("g1", 0), ("c1", 1), ("r1", 2), ("a1", 2), ("a2", 2), ("s1", 0)]
        );
        assert_eq!(w.duration_us, 1000);
        assert_eq!(w.start_time.to_rfc3339(), "2026-11-22T09:40:00+00:00");
        assert_eq!(w.services(), ["gateway", "routing", "accounting", "settlement"]);
        let r1 = &w.spans[2];
        assert_eq!(
            (
                r1.service.as_str(),
                r1.version.as_deref(),
                r1.start_offset_us,
                r1.duration_us
            ),
            ("routing", Some("1.4.0-canary"), 100, 200)
        );
        assert_eq!(w.spans[0].version.as_deref(), Some("0.2.0"), "from the process");
    }

    #[test]
    fn a_span_whose_parent_is_missing_is_a_root_that_keeps_its_reference() {
        let w = Waterfall::build(&payment_trace());
        let s1 = w.spans.iter().find(|s| s.span_id == "s1").unwrap();
        assert_eq!((s1.depth, s1.parent_span_id.as_deref()), (0, Some("gone")));
    }

    #[test]
    fn errors_are_marked_with_their_grpc_code() {
        let w = Waterfall::build(&payment_trace());
        let by_id = |id: &str| w.spans.iter().find(|s| s.span_id == id).unwrap().clone();
        let a2 = by_id("a2");
        assert!(a2.error);
        assert_eq!(a2.grpc_status_code, Some(14));
        assert_eq!(a2.status(), "✗ UNAVAILABLE(14)");
        assert_eq!(by_id("s1").status(), "✗ ERROR", "error=true, no gRPC code");
        assert!(!by_id("a1").error);
        assert_eq!(by_id("a1").status(), "");
        let not_found = SpanRow {
            grpc_status_code: Some(5),
            ..by_id("a1")
        };
        assert_eq!(
            not_found.status(),
            "NOT_FOUND(5)",
            "a non-OK code the service did not call an error"
        );
        let ok = SpanRow {
            grpc_status_code: Some(0),
            ..by_id("a1")
        };
        assert_eq!(ok.status(), "");
    }

    #[test]
    fn bars_are_placed_by_start_offset_and_scaled_to_the_trace() {
        let row = |start, duration| SpanRow {
            span_id: "x".into(),
            parent_span_id: None,
            depth: 0,
            service: "s".into(),
            operation: "o".into(),
            version: None,
            start_offset_us: start,
            duration_us: duration,
            error: false,
            grpc_status_code: None,
        };
        // 1000 µs over 20 cells: 50 µs a cell.
        assert_eq!(bar(&row(0, 1000), 1000, 20), "█".repeat(20));
        assert_eq!(
            bar(&row(100, 200), 1000, 20),
            format!("{}{}{}", " ".repeat(2), "█".repeat(4), " ".repeat(14))
        );
        assert_eq!(
            bar(&row(500, 500), 1000, 20),
            format!("{}{}", " ".repeat(10), "█".repeat(10))
        );
        // Shorter than a cell: still one cell, where it starts; a partial cell at the end counts.
        assert_eq!(bar(&row(990, 1), 1000, 20), format!("{}█", " ".repeat(19)));
        assert_eq!(bar(&row(0, 60), 1000, 20), format!("██{}", " ".repeat(18)));
        // A trace of zero length (one instant span) does not divide by zero.
        assert_eq!(bar(&row(0, 0), 0, 5), "█    ");
    }

    #[test]
    fn renders_one_aligned_row_per_span_within_the_width() {
        let w = Waterfall::build(&payment_trace());
        let text = w.render(100);
        println!("{text}");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            format!("trace {TRACE}  2026-11-22T09:40:00.000Z  1.0ms  6 spans, 2 errors")
        );
        assert_eq!(lines[1], "services: gateway, routing, accounting, settlement");
        assert_eq!(lines[2], "");
        let header = lines[3];
        assert!(header.starts_with("SPAN") && header.contains("VERSION") && header.contains("STATUS"));
        let rows = &lines[4..];
        assert_eq!(rows.len(), 6);
        assert!(rows[0].starts_with("gateway PaymentService/CreatePayment "));
        assert!(rows[1].starts_with("  gateway create_payment "));
        assert!(rows[2].starts_with("    routing routing.Route "));
        assert!(rows[5].starts_with("settlement settlement.Record "));
        assert!(
            rows[4].contains(" 2.0.1 ") && rows[4].contains("300µs") && rows[4].contains("✗ UNAVAILABLE(14)")
        );
        // The bar column starts at the same place on every row and on the axis ("0 ... 1.0ms"),
        // and the root span's bar fills it to the width.
        let header_chars: Vec<char> = header.chars().collect();
        let bar_col = header_chars
            .windows(3)
            .position(|w| w == [' ', '0', ' '])
            .unwrap()
            + 1;
        for r in rows {
            assert!(chars(r) <= 100, "{r}");
            let cells: String = r.chars().skip(bar_col).collect();
            assert!(cells.starts_with(['█', ' ']), "bar at column {bar_col}: {r}");
        }
        assert_eq!(
            rows[0].chars().skip(bar_col).filter(|&c| c == BAR).count(),
            100 - bar_col
        );
        assert!(header.ends_with("1.0ms") && chars(header) == 100);
        // The accounting call that failed ran from 600 to 900 µs of 1000: the 60% to 90% of the bar.
        let bar_w = 100 - bar_col;
        let a2: Vec<char> = rows[4].chars().skip(bar_col).collect();
        let first = a2.iter().position(|&c| c == BAR).unwrap();
        assert_eq!(first, bar_w * 6 / 10);
        assert_eq!(
            a2.iter().filter(|&&c| c == BAR).count(),
            (bar_w * 9).div_ceil(10) - bar_w * 6 / 10
        );
    }

    #[test]
    fn long_names_give_way_and_a_narrow_width_keeps_a_usable_bar() {
        let mut t = payment_trace();
        t.spans[0].operation_name = "x".repeat(200);
        let text = Waterfall::build(&t).render(60);
        let row = text.lines().find(|l| l.starts_with("settlement ")).unwrap();
        assert!(
            row.starts_with(&format!("settlement {}…", "x".repeat(30 - 12))),
            "{row}"
        );
        let narrow = Waterfall::build(&payment_trace()).render(20);
        for r in narrow.lines().skip(4) {
            assert!(r.chars().filter(|&c| c == BAR).count() >= 1, "{r}");
        }
    }

    #[test]
    fn parents_in_a_cycle_still_show_every_span() {
        let t = Trace {
            trace_id: TRACE.into(),
            spans: vec![
                span("x", Some("y"), "p", "a", 10, 5),
                span("y", Some("x"), "p", "b", 0, 20),
            ],
            processes: HashMap::new(),
        };
        let w = Waterfall::build(&t);
        let rows: Vec<(&str, usize)> = w.spans.iter().map(|s| (s.span_id.as_str(), s.depth)).collect();
        assert_eq!(rows, [("y", 0), ("x", 1)]);
        assert_eq!(
            w.spans[0].service, "p",
            "no process: its id stands in for the service"
        );
    }

    #[test]
    fn grpc_methods_lose_their_package_in_the_text_but_not_in_the_rows() {
        assert_eq!(
            short_operation("payplane.routing.v1.RoutingService/Route"),
            "RoutingService/Route"
        );
        assert_eq!(short_operation("RoutingService/Route"), "RoutingService/Route");
        assert_eq!(short_operation("saga.step"), "saga.step");
        assert_eq!(short_operation("GET /api/v1.2/x"), "GET /api/v1.2/x");
        let mut t = payment_trace();
        t.spans[3].operation_name = "payplane.routing.v1.RoutingService/Route".into();
        let w = Waterfall::build(&t);
        assert_eq!(w.spans[2].operation, "payplane.routing.v1.RoutingService/Route");
        assert!(w.render(100).contains("\n    routing RoutingService/Route "));
    }

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(human(850), "850µs");
        assert_eq!(human(12_345), "12.3ms");
        assert_eq!(human(1_250_000), "1.25s");
    }
}
