//! ISO 4217 currencies the platform accepts. The ledger keeps one ledger per currency, numbered
//! by the ISO 4217 numeric code, so a transfer can never mix currencies.

use std::{fmt, str::FromStr};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    code: &'static str,
    numeric: u16,
    minor_unit_digits: u8,
}

/// Currencies we settle in. Adding one is a one-line change here.
const CURRENCIES: &[Currency] = &[
    Currency {
        code: "CNY",
        numeric: 156,
        minor_unit_digits: 2,
    },
    Currency {
        code: "HKD",
        numeric: 344,
        minor_unit_digits: 2,
    },
    Currency {
        code: "USD",
        numeric: 840,
        minor_unit_digits: 2,
    },
    Currency {
        code: "EUR",
        numeric: 978,
        minor_unit_digits: 2,
    },
    Currency {
        code: "GBP",
        numeric: 826,
        minor_unit_digits: 2,
    },
    Currency {
        code: "JPY",
        numeric: 392,
        minor_unit_digits: 0,
    },
    Currency {
        code: "SGD",
        numeric: 702,
        minor_unit_digits: 2,
    },
];

impl Currency {
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The ledger that holds accounts in this currency (its ISO 4217 numeric code).
    pub fn ledger(&self) -> u32 {
        u32::from(self.numeric)
    }

    pub fn minor_unit_digits(&self) -> u8 {
        self.minor_unit_digits
    }

    pub fn from_ledger(ledger: u32) -> Option<Currency> {
        CURRENCIES.iter().copied().find(|c| c.ledger() == ledger)
    }

    pub fn all() -> &'static [Currency] {
        CURRENCIES
    }

    /// `1234` minor units of CNY → `"12.34"`.
    pub fn format_minor(&self, minor_units: i64) -> String {
        let digits = u32::from(self.minor_unit_digits);
        if digits == 0 {
            return minor_units.to_string();
        }
        let scale = 10i64.pow(digits);
        let sign = if minor_units < 0 { "-" } else { "" };
        let abs = minor_units.unsigned_abs();
        format!(
            "{sign}{}.{:0width$}",
            abs / scale as u64,
            abs % scale as u64,
            width = digits as usize
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unsupported currency {0:?}: expected an upper-case ISO 4217 code, one of CNY, HKD, USD, EUR, GBP, JPY, SGD"
)]
pub struct UnknownCurrency(pub String);

impl FromStr for Currency {
    type Err = UnknownCurrency;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CURRENCIES
            .iter()
            .copied()
            .find(|c| c.code == s)
            .ok_or_else(|| UnknownCurrency(s.to_string()))
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_codes_and_maps_to_ledgers() {
        let cny: Currency = "CNY".parse().unwrap();
        assert_eq!(cny.ledger(), 156);
        assert_eq!(Currency::from_ledger(156), Some(cny));
        assert!("cny".parse::<Currency>().is_err());
        assert!("XXX".parse::<Currency>().is_err());
    }

    #[test]
    fn formats_minor_units() {
        let cny: Currency = "CNY".parse().unwrap();
        assert_eq!(cny.format_minor(1234), "12.34");
        assert_eq!(cny.format_minor(-5), "-0.05");
        assert_eq!("JPY".parse::<Currency>().unwrap().format_minor(500), "500");
    }
}
