//! Freeze windows, no I/O: for an instant, the window in force (and until when, with overlapping
//! and adjacent windows merged so that "until" is the real end of the freeze) and the next start.
//!
//! Times are wall-clock times in the window's time zone. A window covers every instant whose
//! local time lies in it: on a daylight-saving change it never gets shorter than its wall-clock
//! range except by local times that do not exist (a 02:30–03:30 window in New York on the
//! spring-forward day starts at 03:00 EDT), and an ambiguous local end (fall-back) is taken at its
//! later occurrence, so a freeze errs on the long side. Intervals are half-open `[start, end)`.

use std::collections::BTreeSet;

use chrono::{
    DateTime, Datelike, Days, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc, Weekday,
};
use chrono_tz::Tz;

use crate::{crd::FreezeWindow, validate::Invalid};

/// Recurring windows are expanded this many days around the instant asked about: enough for the
/// next last business day of a month and for merging chains of windows.
const HORIZON_DAYS: u64 = 70;

/// A checked window, ready for arithmetic.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub name: String,
    /// `FreezePolicy/<name>` or `spec.freezeWindows`.
    pub source: String,
    tz: Tz,
    kind: Kind,
}

/// A time of day in minutes, 0..=1440 (1440 = `24:00`, only as an end).
type Minute = u32;

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    /// On the days for which the predicate holds, from start to end (end ≤ start: the next day).
    Recurring {
        days: Days7OrLastBusinessDay,
        start: Minute,
        end: Minute,
    },
    Dated {
        start: NaiveDateTime,
        end: NaiveDateTime,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Days7OrLastBusinessDay {
    /// Weekdays the window starts on (all seven for `daily`).
    Weekdays(BTreeSet<u32>),
    LastBusinessDay {
        holidays: BTreeSet<NaiveDate>,
    },
}

/// An occurrence of a window, in UTC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occurrence {
    pub name: String,
    pub source: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// The freeze in force at an instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Active {
    /// The windows containing the instant, by start.
    pub windows: Vec<String>,
    pub sources: Vec<String>,
    /// The end of the freeze: overlapping and adjacent windows merged.
    pub until: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Next {
    pub window: String,
    pub source: String,
    pub start: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Evaluation {
    pub active: Option<Active>,
    /// The first window starting after the instant (after the active freeze's end, if any).
    pub next: Option<Next>,
}

/// Checks windows; every problem names the field below `path` (e.g. `spec.freezeWindows`).
pub fn parse(windows: &[FreezeWindow], path: &str, source: &str) -> (Vec<Window>, Vec<Invalid>) {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for (i, w) in windows.iter().enumerate() {
        let wpath = format!("{path}[{i}]");
        let mut bad = |field: &str, reason: String| {
            problems.push(Invalid {
                field: if field.is_empty() {
                    wpath.clone()
                } else {
                    format!("{wpath}.{field}")
                },
                reason,
            })
        };
        if w.name.trim().is_empty() {
            bad("name", "is required".into());
        }
        let tz = match w.time_zone.as_deref().unwrap_or("UTC").parse::<Tz>() {
            Ok(tz) => Some(tz),
            Err(_) => {
                bad(
                    "timeZone",
                    format!(
                        "`{}` is not an IANA time zone (e.g. Asia/Shanghai, Europe/London, UTC)",
                        w.time_zone.as_deref().unwrap_or_default()
                    ),
                );
                None
            }
        };
        let kinds = [
            w.daily.is_some(),
            w.weekly.is_some(),
            w.last_business_day_of_month.is_some(),
            w.dates.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            bad(
                "",
                "must have exactly one of daily, weekly, lastBusinessDayOfMonth, dates".into(),
            );
            continue;
        }
        let mut range = |field: &str, start: &str, end: &str| -> Option<(Minute, Minute)> {
            let s = parse_minute(start, false).map_err(|e| bad(&format!("{field}.start"), e));
            let e = parse_minute(end, true).map_err(|e| bad(&format!("{field}.end"), e));
            Some((s.ok()?, e.ok()?))
        };
        let kind = if let Some(d) = &w.daily {
            range("daily", &d.start, &d.end).map(|(start, end)| Kind::Recurring {
                days: Days7OrLastBusinessDay::Weekdays((0..7).collect()),
                start,
                end,
            })
        } else if let Some(wk) = &w.weekly {
            let r = range("weekly", &wk.start, &wk.end);
            let mut days = BTreeSet::new();
            let mut ok = true;
            if wk.days.is_empty() {
                problems.push(Invalid {
                    field: format!("{wpath}.weekly.days"),
                    reason: "needs at least one day (Mon…Sun)".into(),
                });
                ok = false;
            }
            for (j, d) in wk.days.iter().enumerate() {
                match d.trim().parse::<Weekday>() {
                    Ok(day) => {
                        days.insert(day.num_days_from_monday());
                    }
                    Err(_) => {
                        problems.push(Invalid {
                            field: format!("{wpath}.weekly.days[{j}]"),
                            reason: format!("`{d}` is not a day of the week (Mon…Sun)"),
                        });
                        ok = false;
                    }
                }
            }
            r.filter(|_| ok).map(|(start, end)| Kind::Recurring {
                days: Days7OrLastBusinessDay::Weekdays(days),
                start,
                end,
            })
        } else if let Some(b) = &w.last_business_day_of_month {
            let r = range(
                "lastBusinessDayOfMonth",
                b.start.as_deref().unwrap_or("00:00"),
                b.end.as_deref().unwrap_or("24:00"),
            );
            let mut holidays = BTreeSet::new();
            let mut ok = true;
            for (j, h) in b.holidays.iter().enumerate() {
                match NaiveDate::parse_from_str(h.trim(), "%Y-%m-%d") {
                    Ok(d) => {
                        holidays.insert(d);
                    }
                    Err(_) => {
                        problems.push(Invalid {
                            field: format!("{wpath}.lastBusinessDayOfMonth.holidays[{j}]"),
                            reason: format!("`{h}` is not a date (YYYY-MM-DD)"),
                        });
                        ok = false;
                    }
                }
            }
            r.filter(|_| ok).map(|(start, end)| Kind::Recurring {
                days: Days7OrLastBusinessDay::LastBusinessDay { holidays },
                start,
                end,
            })
        } else if let Some(d) = &w.dates {
            let s = parse_local(&d.start, false).map_err(|e| {
                problems.push(Invalid {
                    field: format!("{wpath}.dates.start"),
                    reason: e,
                })
            });
            let e = parse_local(&d.end, true).map_err(|e| {
                problems.push(Invalid {
                    field: format!("{wpath}.dates.end"),
                    reason: e,
                })
            });
            match (s, e) {
                (Ok(s), Ok(e)) if e <= s => {
                    problems.push(Invalid {
                        field: format!("{wpath}.dates.end"),
                        reason: format!("`{}` is not after the start `{}`", d.end, d.start),
                    });
                    None
                }
                (Ok(start), Ok(end)) => Some(Kind::Dated { start, end }),
                _ => None,
            }
        } else {
            None
        };
        if let (Some(tz), Some(kind)) = (tz, kind)
            && !w.name.trim().is_empty()
        {
            out.push(Window {
                name: w.name.clone(),
                source: source.to_owned(),
                tz,
                kind,
            });
        }
    }
    (out, problems)
}

/// `HH:MM` → minutes; `24:00` only as an end.
fn parse_minute(s: &str, end: bool) -> Result<Minute, String> {
    let s = s.trim();
    if end && s == "24:00" {
        return Ok(1440);
    }
    NaiveTime::parse_from_str(s, "%H:%M")
        .map(|t| t.hour_minute())
        .map_err(|_| {
            format!(
                "`{s}` is not a time of day (HH:MM, 00:00–23:59{})",
                if end { ", or 24:00" } else { "" }
            )
        })
}

trait HourMinute {
    fn hour_minute(&self) -> Minute;
}
impl HourMinute for NaiveTime {
    fn hour_minute(&self) -> Minute {
        use chrono::Timelike;
        self.hour() * 60 + self.minute()
    }
}

/// `YYYY-MM-DD` (an end date includes that whole day) or `YYYY-MM-DDTHH:MM[:SS]`.
fn parse_local(s: &str, end: bool) -> Result<NaiveDateTime, String> {
    let s = s.trim();
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let day = if end { d.succ_opt().unwrap_or(d) } else { d };
        return Ok(day.and_time(NaiveTime::MIN));
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M"))
        .map_err(|_| format!("`{s}` is not a date (YYYY-MM-DD) or a local date-time (YYYY-MM-DDTHH:MM)"))
}

/// The instant at which the local wall clock first reads `local` or later (a local time in a
/// spring-forward gap → the end of the gap); `late` takes the later of two ambiguous instants.
fn resolve(tz: Tz, local: NaiveDateTime, late: bool) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(a, b) => if late { b } else { a }.with_timezone(&Utc),
        LocalResult::None => {
            // In a gap: the first existing minute after it (gaps are whole minutes).
            let mut probe = local;
            for _ in 0..(48 * 60) {
                probe += chrono::Duration::minutes(1);
                if let Some(t) = tz.from_local_datetime(&probe).earliest() {
                    return t.with_timezone(&Utc);
                }
            }
            // No zone has a gap of two days; fall back to reading it as UTC.
            Utc.from_utc_datetime(&local)
        }
    }
}

/// The last business day (Mon–Fri, not a holiday) of a month.
pub fn last_business_day(year: i32, month: u32, holidays: &BTreeSet<NaiveDate>) -> NaiveDate {
    let first_next = if month == 12 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)
    }
    .expect("a valid month");
    let mut d = first_next.pred_opt().expect("a day before the 1st");
    // A month with no business day at all would be all holidays: stop at its first day.
    while (d.weekday().num_days_from_monday() >= 5 || holidays.contains(&d)) && d.day() > 1 {
        d = d.pred_opt().expect("a day before");
    }
    d
}

fn local_at(day: NaiveDate, minute: Minute) -> NaiveDateTime {
    if minute >= 1440 {
        day.succ_opt().unwrap_or(day).and_time(NaiveTime::MIN)
    } else {
        day.and_time(NaiveTime::from_hms_opt(minute / 60, minute % 60, 0).expect("a valid minute"))
    }
}

/// Occurrences of `w` that start on a local day from `from` to `to` (dated windows: always).
fn occurrences(w: &Window, from: NaiveDate, to: NaiveDate) -> Vec<Occurrence> {
    let occ = |start: NaiveDateTime, end: NaiveDateTime| Occurrence {
        name: w.name.clone(),
        source: w.source.clone(),
        start: resolve(w.tz, start, false),
        end: resolve(w.tz, end, true),
    };
    match &w.kind {
        Kind::Dated { start, end } => vec![occ(*start, *end)],
        Kind::Recurring { days, start, end } => {
            let mut out = Vec::new();
            let mut day = from;
            while day <= to {
                let matches = match days {
                    Days7OrLastBusinessDay::Weekdays(set) => {
                        set.contains(&day.weekday().num_days_from_monday())
                    }
                    Days7OrLastBusinessDay::LastBusinessDay { holidays } => {
                        day == last_business_day(day.year(), day.month(), holidays)
                    }
                };
                if matches {
                    let s = local_at(day, *start);
                    // An end at or before the start is on the next day.
                    let end_day = if end <= start {
                        day.succ_opt().unwrap_or(day)
                    } else {
                        day
                    };
                    let o = occ(s, local_at(end_day, *end));
                    if o.end > o.start {
                        out.push(o);
                    }
                }
                match day.succ_opt() {
                    Some(d) => day = d,
                    None => break,
                }
            }
            out
        }
    }
}

/// The freeze in force at `now` and the next window's start.
pub fn evaluate(windows: &[Window], now: DateTime<Utc>) -> Evaluation {
    let mut all: Vec<Occurrence> = Vec::new();
    for w in windows {
        let today = now.with_timezone(&w.tz).date_naive();
        let from = today.checked_sub_days(Days::new(2)).unwrap_or(today);
        let to = today.checked_add_days(Days::new(HORIZON_DAYS)).unwrap_or(today);
        all.extend(occurrences(w, from, to));
    }
    all.sort_by(|a, b| a.start.cmp(&b.start).then(a.end.cmp(&b.end)));
    let containing: Vec<&Occurrence> = all.iter().filter(|o| o.start <= now && now < o.end).collect();
    let active = (!containing.is_empty()).then(|| {
        let mut until = containing.iter().map(|o| o.end).max().expect("not empty");
        // Merge overlapping and adjacent windows until the chain ends.
        loop {
            let extended = all
                .iter()
                .filter(|o| o.start <= until && o.end > until)
                .map(|o| o.end)
                .max();
            match extended {
                Some(e) => until = e,
                None => break,
            }
        }
        let mut windows = Vec::new();
        let mut sources = Vec::new();
        for o in &containing {
            if !windows.contains(&o.name) {
                windows.push(o.name.clone());
            }
            if !sources.contains(&o.source) {
                sources.push(o.source.clone());
            }
        }
        Active {
            windows,
            sources,
            until,
        }
    });
    let after = active.as_ref().map_or(now, |a| a.until);
    let next = all.iter().find(|o| o.start > after).map(|o| Next {
        window: o.name.clone(),
        source: o.source.clone(),
        start: o.start,
    });
    Evaluation { active, next }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{BusinessDayRange, DateRange, TimeRange, WeeklyRange};

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn daily(name: &str, tz: &str, start: &str, end: &str) -> FreezeWindow {
        FreezeWindow {
            name: name.into(),
            time_zone: Some(tz.into()),
            daily: Some(TimeRange {
                start: start.into(),
                end: end.into(),
            }),
            ..Default::default()
        }
    }

    fn windows(ws: Vec<FreezeWindow>) -> Vec<Window> {
        let (out, problems) = parse(&ws, "spec.freezeWindows", "spec.freezeWindows");
        assert!(problems.is_empty(), "{problems:?}");
        out
    }

    fn at(ws: &[Window], now: &str) -> Evaluation {
        evaluate(ws, utc(now))
    }

    fn until(e: &Evaluation) -> Option<DateTime<Utc>> {
        e.active.as_ref().map(|a| a.until)
    }

    #[test]
    fn settlement_cut_off_in_shanghai() {
        // 22:30–23:30 Asia/Shanghai (UTC+8, no DST) = 14:30–15:30 UTC.
        let ws = windows(vec![daily(
            "settlement-cutoff",
            "Asia/Shanghai",
            "22:30",
            "23:30",
        )]);
        let e = at(&ws, "2026-03-10T14:29:59Z");
        assert_eq!(e.active, None);
        assert_eq!(e.next.as_ref().unwrap().start, utc("2026-03-10T14:30:00Z"));
        assert_eq!(e.next.unwrap().window, "settlement-cutoff");
        let e = at(&ws, "2026-03-10T14:30:00Z");
        assert_eq!(until(&e), Some(utc("2026-03-10T15:30:00Z")));
        assert_eq!(e.active.unwrap().windows, ["settlement-cutoff"]);
        assert_eq!(e.next.unwrap().start, utc("2026-03-11T14:30:00Z"));
        // The end is exclusive.
        assert_eq!(at(&ws, "2026-03-10T15:30:00Z").active, None);
    }

    #[test]
    fn a_window_crossing_midnight() {
        // 23:00–01:00 Europe/Berlin in winter (UTC+1) = 22:00–00:00 UTC.
        let ws = windows(vec![daily("eod", "Europe/Berlin", "23:00", "01:00")]);
        let e = at(&ws, "2026-01-14T23:30:00Z"); // 00:30 local on the 15th: the 14th's window
        assert_eq!(until(&e), Some(utc("2026-01-15T00:00:00Z")));
        let e = at(&ws, "2026-01-14T21:59:00Z");
        assert_eq!(e.next.unwrap().start, utc("2026-01-14T22:00:00Z"));
    }

    #[test]
    fn overlapping_and_adjacent_windows_merge() {
        let ws = windows(vec![
            daily("a", "UTC", "10:00", "11:00"),
            daily("b", "UTC", "10:30", "12:00"),
            // Adjacent to b: the freeze goes on.
            daily("c", "UTC", "12:00", "12:15"),
            // A gap of a minute: a separate freeze.
            daily("d", "UTC", "12:16", "13:00"),
        ]);
        let e = at(&ws, "2026-05-05T10:10:00Z");
        let a = e.active.unwrap();
        assert_eq!(a.windows, ["a"]);
        assert_eq!(a.until, utc("2026-05-05T12:15:00Z"));
        assert_eq!(e.next.unwrap().start, utc("2026-05-05T12:16:00Z"));
        let e = at(&ws, "2026-05-05T10:45:00Z");
        assert_eq!(e.active.unwrap().windows, ["a", "b"]);
        // A chain across midnight and across time zones: 22:00–24:00 UTC then 00:00–02:00 UTC
        // written as 08:00–10:00 in Sydney (UTC+10 in June).
        let ws = windows(vec![
            daily("late", "UTC", "22:00", "24:00"),
            daily("sydney", "Australia/Sydney", "10:00", "12:00"),
        ]);
        let e = at(&ws, "2026-06-10T23:00:00Z");
        assert_eq!(until(&e), Some(utc("2026-06-11T02:00:00Z")));
    }

    #[test]
    fn new_york_spring_forward_and_fall_back() {
        // 2026: DST starts Sun 8 March (02:00 EST → 03:00 EDT), ends Sun 1 November
        // (02:00 EDT → 01:00 EST).
        let ws = windows(vec![daily("batch", "America/New_York", "02:30", "03:30")]);
        // The day before: 02:30 EST = 07:30 UTC.
        assert_eq!(
            until(&at(&ws, "2026-03-07T08:00:00Z")),
            Some(utc("2026-03-07T08:30:00Z"))
        );
        // Spring forward: 02:30 does not exist; the window starts at 03:00 EDT = 07:00 UTC and
        // ends at 03:30 EDT = 07:30 UTC.
        let e = at(&ws, "2026-03-08T06:59:00Z");
        assert_eq!(e.active, None);
        assert_eq!(e.next.unwrap().start, utc("2026-03-08T07:00:00Z"));
        assert_eq!(
            until(&at(&ws, "2026-03-08T07:00:00Z")),
            Some(utc("2026-03-08T07:30:00Z"))
        );
        // The day after: 02:30 EDT = 06:30 UTC.
        assert_eq!(
            at(&ws, "2026-03-08T08:00:00Z").next.unwrap().start,
            utc("2026-03-09T06:30:00Z")
        );
        // Fall back: 02:30 exists once (EST): 07:30–08:30 UTC.
        let e = at(&ws, "2026-11-01T07:00:00Z");
        assert_eq!(e.active, None);
        assert_eq!(e.next.unwrap().start, utc("2026-11-01T07:30:00Z"));
        // A 01:00–02:00 window on the fall-back day covers both passes of the clock through
        // 01:xx: 01:00 EDT (05:00 UTC) to 02:00 EST (07:00 UTC), two hours.
        let ws = windows(vec![daily("twice", "America/New_York", "01:00", "02:00")]);
        let e = at(&ws, "2026-11-01T05:00:00Z");
        assert_eq!(until(&e), Some(utc("2026-11-01T07:00:00Z")));
        assert!(at(&ws, "2026-11-01T06:30:00Z").active.is_some(), "01:30 EST");
        // An ambiguous end takes its later occurrence: 00:30–01:30 ends at 01:30 EST.
        let ws = windows(vec![daily("end", "America/New_York", "00:30", "01:30")]);
        assert_eq!(
            until(&at(&ws, "2026-11-01T04:30:00Z")),
            Some(utc("2026-11-01T06:30:00Z"))
        );
    }

    #[test]
    fn london_clock_changes() {
        // 2026: BST from Sun 29 March 01:00 GMT, to Sun 25 October 02:00 BST.
        let ws = windows(vec![daily("close", "Europe/London", "01:15", "01:45")]);
        // 01:15 does not exist on 29 March (01:00 → 02:00): nothing of the window exists, no
        // occurrence (both ends resolve to the end of the gap).
        let e = at(&ws, "2026-03-29T00:30:00Z");
        assert_eq!(e.active, None);
        assert_eq!(
            e.next.unwrap().start,
            utc("2026-03-30T00:15:00Z"),
            "next: 01:15 BST on the 30th"
        );
        // 25 October: 01:15–01:45 happens twice; the window spans both (00:15 to 01:45 UTC).
        let e = at(&ws, "2026-10-25T01:00:00Z");
        assert_eq!(until(&e), Some(utc("2026-10-25T01:45:00Z")));
        // Winter: GMT = UTC.
        assert_eq!(
            until(&at(&ws, "2026-12-01T01:20:00Z")),
            Some(utc("2026-12-01T01:45:00Z"))
        );
    }

    #[test]
    fn last_business_days() {
        let none = BTreeSet::new();
        let d = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        // February, leap and not: 2028-02-29 is a Tuesday; 2026-02-28 a Saturday → Fri 27th.
        assert_eq!(last_business_day(2028, 2, &none), d(2028, 2, 29));
        assert_eq!(last_business_day(2026, 2, &none), d(2026, 2, 27));
        // 2027-02-28 is a Sunday → Fri 26th.
        assert_eq!(last_business_day(2027, 2, &none), d(2027, 2, 26));
        // A month whose last day is a Saturday: October 2026 (31st) → Fri 30th.
        assert_eq!(last_business_day(2026, 10, &none), d(2026, 10, 30));
        // December, with the 31st a holiday: 2026-12-31 is a Thursday → Wed 30th.
        let hol = BTreeSet::from([d(2026, 12, 31)]);
        assert_eq!(last_business_day(2026, 12, &hol), d(2026, 12, 30));
        assert_eq!(last_business_day(2026, 12, &none), d(2026, 12, 31));
    }

    #[test]
    fn month_end_close_window() {
        let ws = windows(vec![FreezeWindow {
            name: "month-end".into(),
            time_zone: Some("Asia/Shanghai".into()),
            last_business_day_of_month: Some(BusinessDayRange {
                start: Some("18:00".into()),
                end: Some("06:00".into()),
                holidays: vec!["2026-04-30".into()],
            }),
            ..Default::default()
        }]);
        // October 2026 ends on a Saturday: the close is Fri 30th 18:00 to Sat 31st 06:00 Shanghai
        // = 10:00 to 22:00 UTC on the 30th.
        let e = at(&ws, "2026-10-20T00:00:00Z");
        assert_eq!(e.active, None);
        assert_eq!(e.next.unwrap().start, utc("2026-10-30T10:00:00Z"));
        assert_eq!(
            until(&at(&ws, "2026-10-30T12:00:00Z")),
            Some(utc("2026-10-30T22:00:00Z"))
        );
        // April 2026: the 30th (Thursday) is a holiday → Wed 29th.
        assert_eq!(
            at(&ws, "2026-04-20T00:00:00Z").next.unwrap().start,
            utc("2026-04-29T10:00:00Z")
        );
        // February 2028 (leap): Tue 29th.
        assert_eq!(
            at(&ws, "2028-02-20T00:00:00Z").next.unwrap().start,
            utc("2028-02-29T10:00:00Z")
        );
    }

    #[test]
    fn weekly_and_dated_windows() {
        let ws = windows(vec![
            FreezeWindow {
                name: "weekend".into(),
                time_zone: Some("Europe/London".into()),
                weekly: Some(WeeklyRange {
                    days: vec!["Fri".into()],
                    start: "18:00".into(),
                    end: "18:00".into(),
                }),
                ..Default::default()
            },
            FreezeWindow {
                name: "golden-week".into(),
                time_zone: Some("Asia/Shanghai".into()),
                dates: Some(DateRange {
                    start: "2026-10-01".into(),
                    end: "2026-10-07".into(),
                }),
                ..Default::default()
            },
        ]);
        // Fri 2026-01-09 18:00 GMT to Sat 18:00: an end equal to the start is the next day.
        assert_eq!(
            until(&at(&ws, "2026-01-10T12:00:00Z")),
            Some(utc("2026-01-10T18:00:00Z"))
        );
        assert_eq!(at(&ws, "2026-01-08T12:00:00Z").active, None);
        // Golden week: 1–7 October inclusive in Shanghai = 30 Sep 16:00 to 7 Oct 16:00 UTC, and
        // it absorbs the weekly window of Fri 2 October.
        let e = at(&ws, "2026-10-02T18:00:00Z");
        let a = e.active.unwrap();
        assert_eq!(a.until, utc("2026-10-07T16:00:00Z"));
        assert_eq!(a.windows, ["golden-week", "weekend"]);
        assert_eq!(
            at(&ws, "2026-09-30T15:00:00Z").next.unwrap().start,
            utc("2026-09-30T16:00:00Z")
        );
        // A dated window with times.
        let ws = windows(vec![FreezeWindow {
            name: "migration".into(),
            dates: Some(DateRange {
                start: "2026-12-24T18:00".into(),
                end: "2026-12-26T06:30".into(),
            }),
            ..Default::default()
        }]);
        assert_eq!(
            until(&at(&ws, "2026-12-25T00:00:00Z")),
            Some(utc("2026-12-26T06:30:00Z"))
        );
        assert_eq!(at(&ws, "2026-12-26T06:30:00Z").next, None, "a past dated window");
    }

    #[test]
    fn invalid_windows_name_the_field() {
        let bad = vec![
            daily("tz", "Mars/Olympus", "10:00", "11:00"),
            daily("time", "UTC", "25:00", "11:00"),
            FreezeWindow {
                name: "backwards".into(),
                dates: Some(DateRange {
                    start: "2026-12-26".into(),
                    end: "2026-12-24".into(),
                }),
                ..Default::default()
            },
            FreezeWindow {
                name: "two".into(),
                daily: Some(TimeRange::default()),
                dates: Some(DateRange::default()),
                ..Default::default()
            },
            FreezeWindow {
                name: "days".into(),
                weekly: Some(WeeklyRange {
                    days: vec!["Funday".into()],
                    start: "10:00".into(),
                    end: "11:00".into(),
                }),
                ..Default::default()
            },
        ];
        let (ok, problems) = parse(&bad, "spec.freezeWindows", "spec.freezeWindows");
        assert!(ok.is_empty(), "{ok:?}");
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.freezeWindows[0].timeZone",
                "spec.freezeWindows[1].daily.start",
                "spec.freezeWindows[2].dates.end",
                "spec.freezeWindows[3]",
                "spec.freezeWindows[4].weekly.days[0]",
            ],
            "{problems:?}"
        );
        assert!(problems[0].reason.contains("Mars/Olympus"));
        assert!(problems[2].reason.contains("not after the start"));
    }
}
