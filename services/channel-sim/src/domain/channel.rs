//! A channel's knobs: latency distribution, decline rate, error rate and the outage switch, and
//! the `--channel` spec syntax that sets them at start-up.

use std::time::Duration;

use payplane_core::Violations;
use rand::Rng;

/// The behaviour of one simulated acquirer.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelSettings {
    pub id: String,
    /// Median latency of a charge or refund.
    pub latency_p50_ms: u32,
    /// 99th percentile; the distribution between is log-normal.
    pub latency_p99_ms: u32,
    /// Share of charges declined (a business answer that is remembered).
    pub decline_rate: f64,
    /// Share of calls failing with UNAVAILABLE before anything is decided.
    pub error_rate: f64,
    /// Every call fails with UNAVAILABLE.
    pub outage: bool,
}

/// The channels of routing's default policy, with latencies of the order a domestic acquirer
/// answers in on a good day. Errors are opt-in: tests and fault drills turn them on.
pub fn default_channels() -> Vec<ChannelSettings> {
    let c = |id: &str, p50, p99, decline| ChannelSettings {
        id: id.to_owned(),
        latency_p50_ms: p50,
        latency_p99_ms: p99,
        decline_rate: decline,
        error_rate: 0.0,
        outage: false,
    };
    vec![
        c("unionpay", 8, 30, 0.03),
        c("netsunion", 10, 40, 0.03),
        c("bank-direct", 15, 60, 0.02),
        c("wallet", 5, 20, 0.04),
    ]
}

/// Upper bound of a latency sample, so that the log-normal tail cannot stall a call for minutes.
const LATENCY_CAP_FACTOR: f64 = 10.0;
/// z-score of the 99th percentile of the standard normal distribution.
const Z_P99: f64 = 2.326_347_874;

impl ChannelSettings {
    /// Every problem with these settings, as field violations of a `ChannelConfig`.
    pub fn validate(&self, prefix: &str) -> Violations {
        let mut v = Violations::new();
        v.name(&format!("{prefix}channel_id"), &self.id);
        if self.latency_p99_ms < self.latency_p50_ms {
            v.add(
                format!("{prefix}latency_p99_ms"),
                format!(
                    "must be at least latency_p50_ms ({}), got {}",
                    self.latency_p50_ms, self.latency_p99_ms
                ),
            );
        }
        if self.latency_p99_ms > 600_000 {
            v.add(
                format!("{prefix}latency_p99_ms"),
                "must be at most 600000 (10 minutes)",
            );
        }
        for (field, rate) in [
            ("decline_rate", self.decline_rate),
            ("error_rate", self.error_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                v.add(
                    format!("{prefix}{field}"),
                    format!("must be between 0.0 and 1.0, got {rate}"),
                );
            }
        }
        v
    }

    /// Draws one latency from the log-normal distribution with this median and p99.
    pub fn sample_latency(&self, rng: &mut impl Rng) -> Duration {
        if self.latency_p50_ms == 0 && self.latency_p99_ms == 0 {
            return Duration::ZERO;
        }
        // A zero median would make ln() blow up; treat it as 0.1 ms.
        let p50 = f64::from(self.latency_p50_ms).max(0.1);
        let p99 = f64::from(self.latency_p99_ms).max(p50);
        let mu = p50.ln();
        let sigma = (p99.ln() - mu) / Z_P99;
        let ms = (mu + sigma * standard_normal(rng))
            .exp()
            .min(p99 * LATENCY_CAP_FACTOR);
        Duration::from_secs_f64(ms / 1000.0)
    }
}

/// Box-Muller: one standard normal draw from two uniform ones.
fn standard_normal(rng: &mut impl Rng) -> f64 {
    // 1 - [0, 1) is (0, 1]: ln() never sees zero.
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// A `--channel` argument: the id and the settings it overrides.
///
/// Syntax: `ID[:key=value,...]` with keys `p50`, `p99` (milliseconds), `decline`, `error`
/// (rates 0..1) and `outage` (true/false). Unnamed keys keep the channel's default (or, for a
/// new channel, p50=10, p99=40, decline=0, error=0, no outage).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChannelSpec {
    pub id: String,
    pub p50: Option<u32>,
    pub p99: Option<u32>,
    pub decline: Option<f64>,
    pub error: Option<f64>,
    pub outage: Option<bool>,
}

impl std::str::FromStr for ChannelSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (id, rest) = s.split_once(':').unwrap_or((s, ""));
        if id.is_empty() {
            return Err("expected ID[:p50=MS,p99=MS,decline=RATE,error=RATE,outage=BOOL]".to_owned());
        }
        let mut spec = ChannelSpec {
            id: id.to_owned(),
            ..Default::default()
        };
        for pair in rest.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("'{pair}' is not key=value"))?;
            let bad = |what: &str| format!("{key}={value}: expected {what}");
            match key.trim() {
                "p50" => spec.p50 = Some(value.parse().map_err(|_| bad("milliseconds"))?),
                "p99" => spec.p99 = Some(value.parse().map_err(|_| bad("milliseconds"))?),
                "decline" => spec.decline = Some(value.parse().map_err(|_| bad("a rate between 0 and 1"))?),
                "error" => spec.error = Some(value.parse().map_err(|_| bad("a rate between 0 and 1"))?),
                "outage" => spec.outage = Some(value.parse().map_err(|_| bad("true or false"))?),
                other => {
                    return Err(format!(
                        "unknown key '{other}' (known: p50, p99, decline, error, outage)"
                    ));
                }
            }
        }
        Ok(spec)
    }
}

impl ChannelSpec {
    /// These overrides applied to `base` (the channel's current settings), or to the defaults of
    /// a new channel.
    pub fn apply(&self, base: Option<&ChannelSettings>) -> ChannelSettings {
        let base = base.cloned().unwrap_or_else(|| ChannelSettings {
            id: self.id.clone(),
            latency_p50_ms: 10,
            latency_p99_ms: 40,
            decline_rate: 0.0,
            error_rate: 0.0,
            outage: false,
        });
        let p50 = self.p50.unwrap_or(base.latency_p50_ms);
        // Raising only the median must not leave p99 below it.
        let p99 = self.p99.unwrap_or(base.latency_p99_ms.max(p50));
        ChannelSettings {
            id: self.id.clone(),
            latency_p50_ms: p50,
            latency_p99_ms: p99,
            decline_rate: self.decline.unwrap_or(base.decline_rate),
            error_rate: self.error.unwrap_or(base.error_rate),
            outage: self.outage.unwrap_or(base.outage),
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::{SeedableRng, rngs::StdRng};

    use super::*;

    #[test]
    fn parses_specs_and_applies_them_over_defaults() {
        let spec: ChannelSpec = "unionpay:p50=20,p99=80,decline=0.05".parse().unwrap();
        let defaults = default_channels();
        let s = spec.apply(defaults.iter().find(|c| c.id == "unionpay"));
        assert_eq!(
            (s.latency_p50_ms, s.latency_p99_ms, s.decline_rate, s.error_rate),
            (20, 80, 0.05, 0.0)
        );
        let s = "acme:outage=true".parse::<ChannelSpec>().unwrap().apply(None);
        assert!(s.outage && s.latency_p50_ms == 10 && s.decline_rate == 0.0);
        let s = "wallet:p50=100"
            .parse::<ChannelSpec>()
            .unwrap()
            .apply(defaults.iter().find(|c| c.id == "wallet"));
        assert_eq!((s.latency_p50_ms, s.latency_p99_ms), (100, 100));
        assert!("unionpay:p50".parse::<ChannelSpec>().is_err());
        assert!("unionpay:p50=x".parse::<ChannelSpec>().is_err());
        assert!(
            "unionpay:speed=1"
                .parse::<ChannelSpec>()
                .unwrap_err()
                .contains("unknown key 'speed'")
        );
        assert!(":p50=1".parse::<ChannelSpec>().is_err());
    }

    #[test]
    fn validation_names_each_bad_field() {
        let mut s = default_channels().remove(0);
        assert!(s.validate("config.").is_empty());
        s.latency_p99_ms = 1;
        s.decline_rate = 1.5;
        s.id = "bad id".into();
        let fields: Vec<String> = s.validate("config.").iter().map(|v| v.field.clone()).collect();
        assert_eq!(
            fields,
            [
                "config.channel_id",
                "config.latency_p99_ms",
                "config.decline_rate"
            ]
        );
    }

    #[test]
    fn latency_samples_follow_the_configured_median_and_p99() {
        let s = ChannelSettings {
            id: "x".into(),
            latency_p50_ms: 20,
            latency_p99_ms: 80,
            decline_rate: 0.0,
            error_rate: 0.0,
            outage: false,
        };
        let mut rng = StdRng::seed_from_u64(7);
        let mut ms: Vec<f64> = (0..20_000)
            .map(|_| s.sample_latency(&mut rng).as_secs_f64() * 1000.0)
            .collect();
        ms.sort_by(f64::total_cmp);
        let (p50, p99) = (ms[10_000], ms[19_800]);
        assert!((18.5..21.5).contains(&p50), "p50 {p50}");
        assert!((70.0..92.0).contains(&p99), "p99 {p99}");
        assert!(ms.iter().all(|&m| m <= 800.0));
        let zero = ChannelSettings {
            latency_p50_ms: 0,
            latency_p99_ms: 0,
            ..s
        };
        assert_eq!(zero.sample_latency(&mut rng), Duration::ZERO);
    }
}
