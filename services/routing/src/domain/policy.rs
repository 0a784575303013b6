//! The routing policy: the channel registry, the rule tree and the success-rate settings, as
//! validated from one YAML document (see `parse.rs` and the crate README for the format).

use chrono_tz::Tz;

/// How the payer pays; mirrors `payplane.common.v1.PaymentMethod` without the unspecified value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    DebitCard,
    CreditCard,
    QrCode,
    BankTransfer,
    Wallet,
}

impl Method {
    pub const ALL: [Method; 5] = [
        Method::DebitCard,
        Method::CreditCard,
        Method::QrCode,
        Method::BankTransfer,
        Method::Wallet,
    ];

    /// The name used in policy documents.
    pub fn name(self) -> &'static str {
        match self {
            Method::DebitCard => "debit_card",
            Method::CreditCard => "credit_card",
            Method::QrCode => "qr_code",
            Method::BankTransfer => "bank_transfer",
            Method::Wallet => "wallet",
        }
    }

    pub fn from_name(name: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Dense index, for per-bucket arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn is_card(self) -> bool {
        matches!(self, Method::DebitCard | Method::CreditCard)
    }
}

/// A channel's fee: `fixed + amount * rate_bps / 10_000`, the proportional part rounded half-up
/// to the minor unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Fee {
    pub fixed_minor_units: i64,
    pub rate_bps: u32,
}

impl Fee {
    /// The fee for `amount` minor units. Half-up: 0.5 of a minor unit is charged as 1.
    pub fn compute(&self, amount: i64) -> i64 {
        let proportional = (i128::from(amount) * i128::from(self.rate_bps) + 5_000) / 10_000;
        // Amounts are positive and rates at most 10_000 bps, so this fits back into i64.
        self.fixed_minor_units
            .saturating_add(i64::try_from(proportional).unwrap_or(i64::MAX))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Channel {
    pub id: String,
    pub display_name: String,
    /// ISO 4217 codes, validated against `payplane_core::Currency`.
    pub currencies: Vec<String>,
    pub methods: Vec<Method>,
    /// Inclusive limits in minor units.
    pub min_amount: i64,
    pub max_amount: i64,
    pub fee: Fee,
    pub enabled: bool,
}

impl Channel {
    pub fn supports_currency(&self, currency: &str) -> bool {
        self.currencies.iter().any(|c| c == currency)
    }

    pub fn supports_method(&self, method: Method) -> bool {
        self.methods.contains(&method)
    }
}

/// An inclusive range of card BIN prefixes of one length, e.g. `622200-622299` (6 digits): a
/// card matches when the first `digits` digits of its BIN, read as a number, fall in the range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BinRange {
    pub digits: u8,
    pub low: u32,
    pub high: u32,
}

impl BinRange {
    pub fn matches(&self, bin: &str) -> bool {
        let digits = usize::from(self.digits);
        if bin.len() < digits {
            return false;
        }
        match bin[..digits].parse::<u32>() {
            Ok(prefix) => self.low <= prefix && prefix <= self.high,
            Err(_) => false,
        }
    }

    /// Whether some card BIN can match both ranges (ranges of different lengths are compared on
    /// the longer length).
    pub fn overlaps(&self, other: &BinRange) -> bool {
        let digits = self.digits.max(other.digits);
        let (a_low, a_high) = self.widen(digits);
        let (b_low, b_high) = other.widen(digits);
        a_low <= b_high && b_low <= a_high
    }

    fn widen(&self, digits: u8) -> (u64, u64) {
        let scale = 10u64.pow(u32::from(digits - self.digits));
        (
            u64::from(self.low) * scale,
            u64::from(self.high) * scale + (scale - 1),
        )
    }

    pub fn describe(&self) -> String {
        let width = usize::from(self.digits);
        if self.low == self.high {
            format!("{:0width$}", self.low)
        } else {
            format!("{:0width$}-{:0width$}", self.low, self.high)
        }
    }
}

/// Minutes since local midnight, `from` inclusive, `to` exclusive; wraps past midnight when
/// `from > to` (e.g. 22:00-06:00).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeWindow {
    pub from_minute: u16,
    pub to_minute: u16,
}

impl TimeWindow {
    pub fn contains(&self, minute_of_day: u16) -> bool {
        if self.from_minute <= self.to_minute {
            self.from_minute <= minute_of_day && minute_of_day < self.to_minute
        } else {
            minute_of_day >= self.from_minute || minute_of_day < self.to_minute
        }
    }
}

/// Conditions of one rule, AND-ed; an absent condition matches everything.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Conditions {
    pub currencies: Option<Vec<String>>,
    pub methods: Option<Vec<Method>>,
    /// Inclusive bounds in minor units.
    pub min_amount: Option<i64>,
    pub max_amount: Option<i64>,
    pub card_bins: Option<Vec<BinRange>>,
    pub merchants: Option<Vec<String>>,
    pub scenes: Option<Vec<String>>,
    pub time_of_day: Option<TimeWindow>,
}

/// What a rule yields. Channels are indexes into [`Policy::channels`].
#[derive(Clone, Debug, PartialEq)]
pub enum RouteTarget {
    Fixed(usize),
    Priority(Vec<usize>),
    /// (channel, weight in percent); weights add up to 100.
    Split(Vec<(usize, u8)>),
}

impl RouteTarget {
    pub fn channels(&self) -> Vec<usize> {
        match self {
            RouteTarget::Fixed(c) => vec![*c],
            RouteTarget::Priority(list) => list.clone(),
            RouteTarget::Split(split) => split.iter().map(|(c, _)| *c).collect(),
        }
    }
}

/// A node of the rule tree. Children are tried first (highest `priority` first, then document
/// order); when none matches, the node's own route applies, if it has one.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub name: String,
    pub priority: i32,
    pub when: Conditions,
    pub route: Option<RouteTarget>,
    /// Whether success-rate routing reorders this rule's priority list.
    pub success_rate: bool,
    pub rules: Vec<Rule>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Elimination {
    pub enabled: bool,
    /// The drop that matters, relative to the best active peer's rate b: a channel is
    /// eliminated once its outcomes give strong sequential evidence (CUSUM) for a rate of
    /// b - 2·min_gap against b - min_gap/2, and readmitted on evidence for b - min_gap/4 against
    /// b - 1.5·min_gap (see `engine`). 0 leaves only `min_success_rate`.
    pub min_gap: f64,
    /// Eliminated below this rate whatever its peers do.
    pub min_success_rate: f64,
    /// Outcomes a channel needs in its window before it can be eliminated.
    pub min_samples: u32,
    /// One recovery probe per eliminated channel at most this often.
    pub probe_interval_ms: u64,
    /// Probe outcomes kept while eliminated: the window a readmitted channel starts with, and,
    /// when there is no peer to compare with, the batch judged against `min_success_rate`.
    pub recovery_samples: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SuccessRate {
    pub enabled: bool,
    /// Outcomes kept per channel and per (channel, method, currency) bucket.
    pub window: u32,
    /// A bucket's own window is used once it holds this many outcomes; before that the
    /// channel-wide window.
    pub bucket_min_samples: u32,
    /// Share of decisions that draw uniformly among eligible channels, in percent.
    pub exploration_percent: f64,
    /// Prior success rate of a channel with few outcomes, and how many outcomes it weighs.
    pub prior_success_rate: f64,
    pub prior_weight: f64,
    pub elimination: Elimination,
}

impl Default for SuccessRate {
    fn default() -> Self {
        Self {
            enabled: true,
            window: 100,
            bucket_min_samples: 30,
            exploration_percent: 3.0,
            prior_success_rate: 0.9,
            prior_weight: 5.0,
            elimination: Elimination {
                enabled: true,
                min_gap: 0.15,
                min_success_rate: 0.2,
                min_samples: 20,
                probe_interval_ms: 1_000,
                recovery_samples: 20,
            },
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub time_zone: Tz,
    pub channels: Vec<Channel>,
    pub rules: Vec<Rule>,
    /// Used when no rule matches, or the matching rule has no eligible channel.
    pub default_route: RouteTarget,
    pub success_rate: SuccessRate,
}

impl Policy {
    pub fn channel_index(&self, id: &str) -> Option<usize> {
        self.channels.iter().position(|c| c.id == id)
    }

    /// For each channel, the other channels sharing a currency with it: the peers its success
    /// rate is compared with for elimination.
    pub fn peers(&self) -> Vec<Vec<usize>> {
        self.channels
            .iter()
            .enumerate()
            .map(|(i, c)| {
                self.channels
                    .iter()
                    .enumerate()
                    .filter(|(j, o)| {
                        *j != i && o.enabled && o.currencies.iter().any(|cur| c.supports_currency(cur))
                    })
                    .map(|(j, _)| j)
                    .collect()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fee_rounds_half_up() {
        let fee = Fee {
            fixed_minor_units: 10,
            rate_bps: 55,
        };
        // 1000 * 55 / 10000 = 5.5 -> 6
        assert_eq!(fee.compute(1000), 16);
        // 999 * 55 / 10000 = 5.4945 -> 5
        assert_eq!(fee.compute(999), 15);
        assert_eq!(
            Fee {
                fixed_minor_units: 0,
                rate_bps: 0
            }
            .compute(123_456),
            0
        );
        assert_eq!(
            Fee {
                fixed_minor_units: 0,
                rate_bps: 10_000
            }
            .compute(i64::MAX),
            i64::MAX
        );
    }

    #[test]
    fn bin_ranges_match_prefixes_and_detect_overlap() {
        let r = BinRange {
            digits: 6,
            low: 622_200,
            high: 622_299,
        };
        assert!(r.matches("62220012"));
        assert!(r.matches("622299"));
        assert!(!r.matches("622300"));
        assert!(!r.matches("62220"));
        let visa = BinRange {
            digits: 1,
            low: 4,
            high: 4,
        };
        assert!(visa.matches("411111"));
        assert!(!visa.overlaps(&r));
        assert!(
            BinRange {
                digits: 2,
                low: 62,
                high: 62
            }
            .overlaps(&r)
        );
        assert!(r.overlaps(&BinRange {
            digits: 8,
            low: 62_229_900,
            high: 62_230_000
        }));
        assert!(!r.overlaps(&BinRange {
            digits: 8,
            low: 62_230_000,
            high: 62_239_999
        }));
        assert_eq!(r.describe(), "622200-622299");
    }

    #[test]
    fn time_window_wraps_midnight() {
        let night = TimeWindow {
            from_minute: 22 * 60,
            to_minute: 6 * 60,
        };
        assert!(night.contains(23 * 60));
        assert!(night.contains(0));
        assert!(!night.contains(6 * 60));
        assert!(!night.contains(12 * 60));
        let day = TimeWindow {
            from_minute: 9 * 60,
            to_minute: 17 * 60,
        };
        assert!(day.contains(9 * 60));
        assert!(!day.contains(17 * 60));
    }
}
