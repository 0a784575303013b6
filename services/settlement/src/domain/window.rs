//! Window assignment: every cleared item belongs to exactly one window per channel and currency,
//! chosen from its clearing time, the channel's cut-off and the settlement time zone.
//!
//! A window for business date D covers `[cut_off(D-1), cut_off(D))`, where `cut_off(D)` is the
//! channel's cut-off time on D in the configured zone (a cut-off of 00:00 means the end of D).
//! So with a 23:00 Asia/Shanghai cut-off, an item cleared at 23:30 local on the 21st belongs to
//! the 22nd. Local times that a daylight-saving change skips resolve to the first instant after
//! the gap; times it repeats resolve to their first occurrence. Windows never overlap and leave
//! no gaps, in any zone (property-tested below).

use std::{collections::BTreeMap, fmt, str::FromStr};

use chrono::{DateTime, Days, LocalResult, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use payplane_core::Currency;

/// A channel's cut-off: the local time its business day ends, and its settlement lag (T+N).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CutOff {
    pub time: NaiveTime,
    /// Value date = business date + this many days (T+0, T+1, ...).
    pub lag_days: u32,
}

impl FromStr for CutOff {
    type Err = String;

    /// `23:00`, `23:00/T+1`, `00:00/T+0`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (time, lag) = match s.split_once('/') {
            Some((t, l)) => (t, Some(l)),
            None => (s, None),
        };
        let time = NaiveTime::parse_from_str(time.trim(), "%H:%M")
            .map_err(|_| format!("cut-off {s:?}: expected HH:MM, optionally followed by /T+N"))?;
        let lag_days = match lag {
            None => 0,
            Some(l) => l
                .trim()
                .strip_prefix("T+")
                .and_then(|n| n.parse::<u32>().ok())
                .filter(|n| *n <= 30)
                .ok_or_else(|| format!("cut-off {s:?}: settlement lag must be T+0 to T+30"))?,
        };
        Ok(Self { time, lag_days })
    }
}

impl fmt::Display for CutOff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/T+{}", self.time.format("%H:%M"), self.lag_days)
    }
}

/// The settlement calendar: a time zone, a default cut-off and per-channel cut-offs.
#[derive(Clone, Debug)]
pub struct Calendar {
    pub zone: Tz,
    pub default: CutOff,
    pub channels: BTreeMap<String, CutOff>,
}

/// A window's identity and bounds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowSpec {
    pub window_id: String,
    pub channel_id: String,
    pub currency: Currency,
    pub business_date: NaiveDate,
    pub opens_at: DateTime<Utc>,
    pub cut_off_at: DateTime<Utc>,
    pub value_date: NaiveDate,
}

impl Calendar {
    /// `zone` e.g. `Asia/Shanghai`; `default` e.g. `23:00/T+1`; `channels` e.g.
    /// `unionpay=23:00/T+1,netsunion=22:30` (empty for none).
    pub fn parse(zone: &str, default: &str, channels: &str) -> Result<Self, String> {
        let zone: Tz = zone.parse().map_err(|_| {
            format!("unknown time zone {zone:?}: expected an IANA name such as Asia/Shanghai")
        })?;
        let default: CutOff = default.parse()?;
        let mut map = BTreeMap::new();
        for entry in channels.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (channel, cut_off) = entry
                .split_once('=')
                .ok_or_else(|| format!("{entry:?}: expected channel=HH:MM[/T+N]"))?;
            map.insert(channel.trim().to_string(), cut_off.parse()?);
        }
        Ok(Self {
            zone,
            default,
            channels: map,
        })
    }

    pub fn cut_off(&self, channel: &str) -> CutOff {
        self.channels.get(channel).copied().unwrap_or(self.default)
    }

    /// The instant business date `date` of `channel` ends.
    pub fn cut_off_instant(&self, channel: &str, date: NaiveDate) -> DateTime<Utc> {
        let cut = self.cut_off(channel);
        let (day, time) = if cut.time == NaiveTime::MIN {
            (next_day(date), cut.time)
        } else {
            (date, cut.time)
        };
        resolve_local(self.zone, day, time)
    }

    /// The window an item cleared at `at` belongs to.
    pub fn assign(&self, channel: &str, currency: Currency, at: DateTime<Utc>) -> WindowSpec {
        let mut date = at.with_timezone(&self.zone).date_naive();
        // The local date is at most one day off (the cut-off moves the day boundary); the loops
        // settle it exactly against the resolved instants.
        while at >= self.cut_off_instant(channel, date) {
            date = next_day(date);
        }
        while at < self.cut_off_instant(channel, prev_day(date)) {
            date = prev_day(date);
        }
        self.window(channel, currency, date)
    }

    /// The window of `channel` and `currency` for `business_date`.
    pub fn window(&self, channel: &str, currency: Currency, business_date: NaiveDate) -> WindowSpec {
        let lag = self.cut_off(channel).lag_days;
        WindowSpec {
            window_id: window_id(channel, currency, business_date),
            channel_id: channel.to_string(),
            currency,
            business_date,
            opens_at: self.cut_off_instant(channel, prev_day(business_date)),
            cut_off_at: self.cut_off_instant(channel, business_date),
            value_date: business_date
                .checked_add_days(Days::new(u64::from(lag)))
                .unwrap_or(business_date),
        }
    }
}

/// `unionpay:CNY:2026-11-22`
pub fn window_id(channel: &str, currency: Currency, business_date: NaiveDate) -> String {
    format!("{channel}:{currency}:{}", business_date.format("%Y-%m-%d"))
}

/// Splits a window id into channel, currency and business date.
pub fn parse_window_id(id: &str) -> Result<(String, Currency, NaiveDate), String> {
    let mut parts = id.rsplitn(3, ':');
    let (Some(date), Some(currency), Some(channel)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!(
            "{id:?} is not a window id such as unionpay:CNY:2026-11-22"
        ));
    };
    let date = NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .map_err(|_| format!("{id:?}: bad business date {date:?}"))?;
    let currency: Currency = currency
        .parse()
        .map_err(|e: payplane_core::currency::UnknownCurrency| e.to_string())?;
    if channel.is_empty() {
        return Err(format!("{id:?}: channel is empty"));
    }
    Ok((channel.to_string(), currency, date))
}

fn next_day(d: NaiveDate) -> NaiveDate {
    d.succ_opt().unwrap_or(d)
}

fn prev_day(d: NaiveDate) -> NaiveDate {
    d.pred_opt().unwrap_or(d)
}

/// A local wall-clock time as an instant: skipped times move forward to the end of the gap,
/// repeated times take their first occurrence.
fn resolve_local(zone: Tz, date: NaiveDate, time: NaiveTime) -> DateTime<Utc> {
    let mut naive = date.and_time(time);
    // Gaps are at most a few hours; a minute step finds the first valid local time.
    for _ in 0..(26 * 60) {
        match zone.from_local_datetime(&naive) {
            LocalResult::Single(t) => return t.with_timezone(&Utc),
            LocalResult::Ambiguous(first, _) => return first.with_timezone(&Utc),
            LocalResult::None => naive += chrono::Duration::minutes(1),
        }
    }
    // Unreachable for real zones; fall back to reading the time as UTC.
    Utc.from_utc_datetime(&date.and_time(time))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn cny() -> Currency {
        "CNY".parse().unwrap()
    }

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn shanghai_23_00_cut_off_moves_late_evening_to_the_next_day() {
        let cal = Calendar::parse("Asia/Shanghai", "00:00", "unionpay=23:00/T+1").unwrap();
        // 22:59:59 local on the 21st (UTC+8) → the 21st.
        let w = cal.assign("unionpay", cny(), utc("2026-11-21T14:59:59Z"));
        assert_eq!(w.window_id, "unionpay:CNY:2026-11-21");
        assert_eq!(w.cut_off_at, utc("2026-11-21T15:00:00Z"));
        assert_eq!(w.opens_at, utc("2026-11-20T15:00:00Z"));
        assert_eq!(w.value_date, d("2026-11-22"));
        // Exactly 23:00 local → the 22nd (cut-off is exclusive).
        assert_eq!(
            cal.assign("unionpay", cny(), utc("2026-11-21T15:00:00Z"))
                .business_date,
            d("2026-11-22")
        );
        // 01:00 local on the 22nd is 17:00 UTC on the 21st: the UTC day is not the business day.
        assert_eq!(
            cal.assign("unionpay", cny(), utc("2026-11-21T17:00:00Z"))
                .business_date,
            d("2026-11-22")
        );
        // Another channel uses the default midnight cut-off, T+0.
        let w = cal.assign("netsunion", cny(), utc("2026-11-21T15:30:00Z"));
        assert_eq!(w.window_id, "netsunion:CNY:2026-11-21");
        assert_eq!(w.cut_off_at, utc("2026-11-21T16:00:00Z"));
        assert_eq!(w.value_date, d("2026-11-21"));
    }

    #[test]
    fn midnight_cut_off_follows_the_local_day_boundary() {
        let cal = Calendar::parse("Asia/Shanghai", "00:00", "").unwrap();
        assert_eq!(
            cal.assign("c", cny(), utc("2026-11-21T15:59:59Z")).business_date,
            d("2026-11-21")
        );
        assert_eq!(
            cal.assign("c", cny(), utc("2026-11-21T16:00:00Z")).business_date,
            d("2026-11-22")
        );
        // Year boundary.
        assert_eq!(
            cal.assign("c", cny(), utc("2026-12-31T16:00:00Z")).window_id,
            "c:CNY:2027-01-01"
        );
    }

    #[test]
    fn london_cut_off_tracks_daylight_saving() {
        // 17:00 London: 16:00 UTC in summer (BST), 17:00 UTC in winter (GMT).
        let cal = Calendar::parse("Europe/London", "17:00", "").unwrap();
        let summer = cal.window("c", cny(), d("2026-07-01"));
        assert_eq!(summer.cut_off_at, utc("2026-07-01T16:00:00Z"));
        let winter = cal.window("c", cny(), d("2026-12-01"));
        assert_eq!(winter.cut_off_at, utc("2026-12-01T17:00:00Z"));
        // DST ends on Sunday 2026-10-25: the window of the 25th opens at 16:00 UTC on the 24th
        // (17:00 BST) and closes at 17:00 UTC on the 25th (17:00 GMT): 25 hours long.
        let w = cal.window("c", cny(), d("2026-10-25"));
        assert_eq!(w.opens_at, utc("2026-10-24T16:00:00Z"));
        assert_eq!(w.cut_off_at, utc("2026-10-25T17:00:00Z"));
        assert_eq!((w.cut_off_at - w.opens_at).num_hours(), 25);
        // 16:30 UTC on the 25th is 16:30 GMT: still before the cut-off.
        assert_eq!(
            cal.assign("c", cny(), utc("2026-10-25T16:30:00Z")).business_date,
            d("2026-10-25")
        );
        // The same UTC time a day earlier is 17:30 BST: after the cut-off.
        assert_eq!(
            cal.assign("c", cny(), utc("2026-10-24T16:30:00Z")).business_date,
            d("2026-10-25")
        );
    }

    #[test]
    fn new_york_cut_off_inside_the_spring_gap_resolves_to_the_end_of_the_gap() {
        // DST starts 2026-03-08 at 02:00 EST → 03:00 EDT: 02:30 does not exist that day.
        let cal = Calendar::parse("America/New_York", "02:30", "").unwrap();
        let w = cal.window("c", cny(), d("2026-03-08"));
        assert_eq!(w.opens_at, utc("2026-03-07T07:30:00Z")); // 02:30 EST
        assert_eq!(w.cut_off_at, utc("2026-03-08T07:00:00Z")); // 03:00 EDT, end of the gap
        assert_eq!(
            cal.assign("c", cny(), utc("2026-03-08T06:59:59Z")).business_date,
            d("2026-03-08")
        );
        assert_eq!(
            cal.assign("c", cny(), utc("2026-03-08T07:00:00Z")).business_date,
            d("2026-03-09")
        );
        // Autumn: 01:30 happens twice on 2026-11-01; the first (EDT, 05:30 UTC) is the cut-off.
        let cal = Calendar::parse("America/New_York", "01:30", "").unwrap();
        let w = cal.window("c", cny(), d("2026-11-01"));
        assert_eq!(w.cut_off_at, utc("2026-11-01T05:30:00Z"));
        // 01:15 EST (the second 01:15, 06:15 UTC) is after the cut-off instant: next day.
        assert_eq!(
            cal.assign("c", cny(), utc("2026-11-01T06:15:00Z")).business_date,
            d("2026-11-02")
        );
    }

    #[test]
    fn parses_configuration_and_window_ids() {
        assert!(Calendar::parse("Mars/Olympus", "00:00", "").is_err());
        assert!(Calendar::parse("UTC", "25:00", "").is_err());
        assert!(Calendar::parse("UTC", "23:00/T-1", "").is_err());
        assert!(Calendar::parse("UTC", "00:00", "unionpay").is_err());
        let cal = Calendar::parse("UTC", "23:00/T+1", " a=22:00 , b=01:00/T+2").unwrap();
        assert_eq!(cal.cut_off("b").to_string(), "01:00/T+2");
        assert_eq!(cal.cut_off("zzz").to_string(), "23:00/T+1");
        assert_eq!(
            parse_window_id("bank:direct:CNY:2026-11-22").unwrap().0,
            "bank:direct"
        );
        assert_eq!(parse_window_id("u:CNY:2026-11-22").unwrap().2, d("2026-11-22"));
        assert!(parse_window_id("u:XXX:2026-11-22").is_err());
        assert!(parse_window_id("u:CNY:2026-13-22").is_err());
        assert!(parse_window_id("nonsense").is_err());
    }

    proptest! {
        /// Every instant falls inside its window, windows of consecutive days touch, and the
        /// window is a function of the instant alone.
        #[test]
        fn windows_partition_time(
            secs in 1_700_000_000i64..1_900_000_000i64,
            zone in prop::sample::select(vec!["Asia/Shanghai", "Europe/London", "America/New_York", "Australia/Lord_Howe", "UTC"]),
            hour in 0u32..24, minute in prop::sample::select(vec![0u32, 30]),
        ) {
            let cut = format!("{hour:02}:{minute:02}");
            let cal = Calendar::parse(zone, &cut, "").unwrap();
            let at = DateTime::<Utc>::from_timestamp(secs, 0).unwrap();
            let w = cal.assign("c", cny(), at);
            prop_assert!(w.opens_at <= at && at < w.cut_off_at, "{at} not in {w:?}");
            let next = cal.window("c", cny(), w.business_date.succ_opt().unwrap());
            prop_assert_eq!(next.opens_at, w.cut_off_at);
            prop_assert_eq!(cal.assign("c", cny(), w.opens_at).business_date, w.business_date);
        }
    }
}
