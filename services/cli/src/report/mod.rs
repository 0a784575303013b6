//! `payplane report`, `audit` and `history`: the delivery figures, the audit trail of a release
//! and the list of releases, from ReleaseEvents (cluster or export).

pub mod html;
pub mod source;

use std::{collections::BTreeSet, fmt::Write as _};

use anyhow::{Result, bail};
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use payplane_delivery::{
    DeliveryFigures, ReleaseEvent, ReleaseEventSpec, ReleaseRecord,
    figures::{Day, Figures},
    fold,
    metrics::ALL_SERVICES,
};
use serde::Serialize;

/// `--until`: RFC 3339 (`2026-10-31T00:00:00Z`) or a date (`2026-10-31`, midnight UTC).
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    match NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        Ok(d) => Ok(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()),
        Err(_) => Err(format!(
            "'{s}' is neither an RFC 3339 time (2026-10-31T00:00:00Z) nor a date (2026-10-31)"
        )),
    }
}

/// `--since`: a duration before `--until` (`30d`, `2w`, `12h`) or a time like `--until`.
#[derive(Clone, Debug, PartialEq)]
pub enum Since {
    Ago(std::time::Duration),
    At(DateTime<Utc>),
}

pub fn parse_since(s: &str) -> Result<Since, String> {
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(Since::Ago(d));
    }
    parse_time(s).map(Since::At).map_err(|_| {
        format!("'{s}' is neither a duration (30d, 12h) nor a time (2026-10-01, 2026-10-01T00:00:00Z)")
    })
}

impl Since {
    pub fn resolve(&self, until: DateTime<Utc>) -> Result<DateTime<Utc>> {
        let since = match self {
            Self::At(t) => *t,
            Self::Ago(d) => until - chrono::Duration::from_std(*d)?,
        };
        if since >= until {
            bail!(
                "the window is empty: --since {} is not before --until {}",
                rfc(since),
                rfc(until)
            );
        }
        Ok(since)
    }
}

pub fn rfc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `39h12m`, `7m00s`, `45s`, `3d04h`.
pub fn human_seconds(s: f64) -> String {
    let s = s.round() as i64;
    let (neg, s) = (s < 0, s.abs());
    let text = if s >= 4 * 86_400 {
        format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600)
    } else if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    };
    if neg { format!("-{text}") } else { text }
}

fn opt_human(s: Option<f64>) -> String {
    s.map_or_else(|| "-".to_owned(), human_seconds)
}

/// Everything the report shows, and its JSON form.
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    #[serde(flatten)]
    pub figures: DeliveryFigures,
    /// One entry per UTC day of the window (`days`, from the figures, is the window's length).
    pub per_day: Vec<Day>,
    /// Releases promoted or finished in the window, oldest first.
    pub releases: Vec<ReleaseRecord>,
}

impl Report {
    /// The report of `events` over `[since, until)`; `service` keeps one service (an error
    /// naming the known ones if it has no release).
    pub fn build(
        events: &[ReleaseEvent],
        service: Option<&str>,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Self> {
        let mut records = fold(events);
        if let Some(s) = service {
            check_service(&records, s)?;
            records.retain(|r| r.service == s);
        }
        let figures = DeliveryFigures::compute(&records, since, until);
        let per_day = DeliveryFigures::days(&records, since, until);
        let inside = |t: Option<DateTime<Utc>>| t.is_some_and(|t| since <= t && t < until);
        let releases = records
            .into_iter()
            .filter(|r| inside(r.promoted) || inside(r.finished))
            .collect();
        Ok(Self {
            figures,
            per_day,
            releases,
        })
    }

    /// Lead time of each promoted release in the window, by promotion time: the trend chart.
    pub fn lead_times(&self) -> Vec<(&ReleaseRecord, DateTime<Utc>, f64)> {
        let (since, until) = (self.figures.since, self.figures.until);
        let mut v: Vec<_> = self
            .releases
            .iter()
            .filter_map(|r| {
                let p = r.promoted?;
                let lead = r.lead_time()?;
                (since <= p && p < until).then(|| (r, p, lead.num_milliseconds() as f64 / 1000.0))
            })
            .collect();
        v.sort_by_key(|(r, p, _)| (*p, r.service.clone(), r.release));
        v
    }

    /// Per service then overall (`(all)`).
    pub fn rows(&self) -> Vec<(&str, &Figures)> {
        let mut rows: Vec<_> = self
            .figures
            .services
            .iter()
            .map(|(s, f)| (s.as_str(), f))
            .collect();
        rows.push((ALL_SERVICES, &self.figures.overall));
        rows
    }

    pub fn text(&self) -> String {
        let f = &self.figures;
        let mut out = format!(
            "Delivery report {} .. {} ({} days)\n\n",
            rfc(f.since),
            rfc(f.until),
            trim_float(f.days)
        );
        let header = [
            "SERVICE",
            "PROMOTIONS",
            "PER DAY",
            "LEAD TIME p50",
            "LEAD TIME p90",
            "CHANGE FAILURE RATE",
            "TIME TO RESTORE p50",
        ];
        let mut table = vec![header.map(str::to_owned).to_vec()];
        for (name, s) in self.rows() {
            table.push(vec![
                name.to_owned(),
                s.promotions.to_string(),
                format!("{:.2}", s.deployment_frequency_per_day),
                opt_human(s.lead_time_median_seconds),
                opt_human(s.lead_time_p90_seconds),
                match s.change_failure_rate {
                    Some(r) => format!(
                        "{:.1}% ({}/{})",
                        r * 100.0,
                        s.change_failures,
                        s.deployments_finished
                    ),
                    None => "-".to_owned(),
                },
                opt_human(s.time_to_restore_median_seconds),
            ]);
        }
        out.push_str(&columns(&table));
        out.push_str(
            "\nPER DAY: promotions per day. LEAD TIME: commit to promotion. CHANGE FAILURE RATE: \
             rolled back or aborted among the\nfinished releases that reached production traffic. \
             TIME TO RESTORE: first failure sign to all traffic back on stable.\n",
        );
        out
    }

    pub fn csv(&self) -> Result<String> {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record([
            "service",
            "since",
            "until",
            "days",
            "promotions",
            "deployment_frequency_per_day",
            "lead_time_samples",
            "lead_time_median_seconds",
            "lead_time_p90_seconds",
            "deployments_finished",
            "change_failures",
            "change_failure_rate",
            "restores",
            "time_to_restore_median_seconds",
        ])?;
        let num = |v: Option<f64>| v.map_or_else(String::new, trim_float);
        for (name, s) in self.rows() {
            w.write_record([
                name.to_owned(),
                rfc(self.figures.since),
                rfc(self.figures.until),
                trim_float(self.figures.days),
                s.promotions.to_string(),
                trim_float(s.deployment_frequency_per_day),
                s.lead_time_samples.to_string(),
                num(s.lead_time_median_seconds),
                num(s.lead_time_p90_seconds),
                s.deployments_finished.to_string(),
                s.change_failures.to_string(),
                num(s.change_failure_rate),
                s.restores.to_string(),
                num(s.time_to_restore_median_seconds),
            ])?;
        }
        Ok(String::from_utf8(w.into_inner()?)?)
    }
}

/// `30`, `0.5333333333`, `39.2`: at most 10 decimals, no trailing zeros.
pub fn trim_float(v: f64) -> String {
    let s = format!("{v:.10}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".to_owned() } else { s.to_owned() }
}

fn columns(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

fn check_service(records: &[ReleaseRecord], service: &str) -> Result<()> {
    if records.iter().any(|r| r.service == service) {
        return Ok(());
    }
    let known: BTreeSet<&str> = records.iter().map(|r| r.service.as_str()).collect();
    if known.is_empty() {
        bail!("no such service `{service}`: there are no ReleaseEvents at all here");
    }
    bail!(
        "no such service `{service}`: releases are recorded for {}",
        known.into_iter().collect::<Vec<_>>().join(", ")
    )
}

/// The audit trail of one release: its record and its events in order.
#[derive(Serialize, Debug)]
pub struct Audit {
    pub record: ReleaseRecord,
    pub events: Vec<ReleaseEventSpec>,
}

impl Audit {
    /// `release`: the latest (highest number) when `None`. `events` may hold other services.
    pub fn build(events: &[ReleaseEvent], service: &str, release: Option<u64>) -> Result<Self> {
        let records = fold(events);
        check_service(&records, service)?;
        let mine: Vec<_> = records.into_iter().filter(|r| r.service == service).collect();
        let number = release.unwrap_or_else(|| mine.iter().map(|r| r.release).max().unwrap_or(0));
        let matching: Vec<_> = mine.iter().filter(|r| r.release == number).collect();
        let record = match matching.as_slice() {
            [one] => (*one).clone(),
            [] => bail!(
                "service `{service}` has no release {number}; it has {}",
                mine.iter()
                    .map(|r| r.release.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            many => bail!(
                "release {number} of `{service}` exists in {} Rollouts/namespaces ({}); pick one with -n",
                many.len(),
                many.iter()
                    .map(|r| format!("{}/{}", r.namespace.as_deref().unwrap_or("-"), r.rollout))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let mut evs: Vec<ReleaseEventSpec> = events
            .iter()
            .filter(|e| {
                e.spec.rollout == record.rollout
                    && e.spec.release == record.release
                    && e.metadata.namespace == record.namespace
            })
            .map(|e| e.spec.clone())
            .collect();
        evs.sort_by_key(|e| e.sequence);
        evs.dedup_by_key(|e| e.sequence);
        Ok(Self { record, events: evs })
    }

    pub fn text(&self) -> String {
        let r = &self.record;
        let mut out = format!(
            "{} release {} ({}): {}\n",
            r.service, r.release, r.revision, r.outcome
        );
        let _ = writeln!(
            out,
            "rollout {}{}, chart {}, commit {}{}",
            r.namespace
                .as_deref()
                .map(|n| format!("{n}/"))
                .unwrap_or_default(),
            r.rollout,
            r.chart_version.as_deref().unwrap_or("-"),
            r.commit.as_deref().unwrap_or("-"),
            r.commit_time
                .map(|t| format!(" at {}", rfc(t)))
                .unwrap_or_default()
        );
        if let Some(why) = &r.failure_reason {
            let _ = writeln!(out, "failure: {why}");
        }
        if let Some(img) = self.events.first().and_then(|e| e.images.first()) {
            let _ = writeln!(
                out,
                "image {}{}",
                img.image,
                img.digest.as_deref().map(|d| format!("@{d}")).unwrap_or_default()
            );
        }
        out.push('\n');
        let mut table = vec![
            ["SEQ", "TIME", "ACTOR", "KIND", "STEP", "WEIGHT", "DETAIL"]
                .map(str::to_owned)
                .to_vec(),
        ];
        for e in &self.events {
            let mut detail = Vec::new();
            if let Some(a) = &e.analysis {
                detail.push(format!(
                    "{} ({}) = {} {:?}",
                    a.metric,
                    a.provider,
                    a.value.map_or_else(|| "-".to_owned(), |v| v.to_string()),
                    a.verdict
                ));
            }
            if let Some(reason) = &e.reason {
                detail.push(reason.clone());
            }
            table.push(vec![
                e.sequence.to_string(),
                rfc(e.time),
                e.actor.clone(),
                e.kind.to_string(),
                e.step.map_or_else(|| "-".to_owned(), |s| s.to_string()),
                e.weight.map_or_else(|| "-".to_owned(), |w| format!("{w}%")),
                detail.join("; "),
            ]);
        }
        out.push_str(&columns(&table));
        out
    }
}

/// One line per release of `service`, oldest first.
pub fn history(events: &[ReleaseEvent], service: &str) -> Result<String> {
    let records = fold(events);
    check_service(&records, service)?;
    let mut mine: Vec<_> = records.into_iter().filter(|r| r.service == service).collect();
    mine.sort_by_key(|r| (r.release, r.started));
    let mut table = vec![
        [
            "RELEASE",
            "REVISION",
            "STARTED",
            "FINISHED",
            "OUTCOME",
            "LEAD TIME",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for r in &mine {
        table.push(vec![
            r.release.to_string(),
            r.revision.clone(),
            rfc(r.started),
            r.finished.map_or_else(|| "-".to_owned(), rfc),
            r.outcome.to_string(),
            opt_human(r.lead_time().map(|d| d.num_milliseconds() as f64 / 1000.0)),
        ]);
    }
    Ok(columns(&table))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_windows_parse() {
        let until = parse_time("2026-10-31").unwrap();
        assert_eq!(rfc(until), "2026-10-31T00:00:00Z");
        assert_eq!(parse_time("2026-10-31T02:00:00+02:00").unwrap(), until);
        assert!(parse_time("yesterday").is_err());
        let since = parse_since("30d").unwrap().resolve(until).unwrap();
        assert_eq!(rfc(since), "2026-10-01T00:00:00Z");
        assert_eq!(parse_since("2026-10-01").unwrap(), Since::At(since));
        let err = parse_since("2026-11-01").unwrap().resolve(until).unwrap_err();
        assert!(err.to_string().contains("window is empty"), "{err}");
        assert!(parse_since("lately").is_err());
    }

    #[test]
    fn durations_read_like_a_person_writes_them() {
        assert_eq!(human_seconds(45.0), "45s");
        assert_eq!(human_seconds(420.0), "7m00s");
        assert_eq!(human_seconds(39.2 * 3600.0), "39h12m");
        assert_eq!(human_seconds(72.0 * 3600.0), "72h00m");
        assert_eq!(human_seconds(100.0 * 3600.0), "4d04h");
        assert_eq!(human_seconds(-90.0), "-1m30s");
        assert_eq!(trim_float(30.0), "30");
        assert_eq!(trim_float(16.0 / 30.0), "0.5333333333");
        assert_eq!(trim_float(0.25), "0.25");
    }
}
