//! Decimal amounts in documents: minor units ↔ `"12.34"`, exact, never through a float.

use payplane_core::Currency;

/// `1234` CNY → `"12.34"`; `500` JPY → `"500"`.
pub fn format(currency: Currency, minor_units: i64) -> String {
    currency.format_minor(minor_units)
}

/// Parses a non-negative decimal amount with at most the currency's minor-unit digits
/// (`"12.3"` → 1230 CNY). Signs, exponents and thousands separators are refused.
pub fn parse(currency: Currency, text: &str) -> Result<i64, String> {
    let digits = usize::from(currency.minor_unit_digits());
    let (int, frac) = match text.split_once('.') {
        Some((i, f)) => (i, f),
        None => (text, ""),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !all_digits(int) || !all_digits(frac) || (text.contains('.') && frac.is_empty()) {
        return Err(format!("amount {text:?} is not a decimal number such as 12.34"));
    }
    if frac.len() > digits {
        return Err(format!(
            "amount {text:?} has more than {digits} decimal places for {currency}"
        ));
    }
    let scale = 10i64.pow(digits as u32);
    let frac_value = if frac.is_empty() {
        0
    } else {
        frac.parse::<i64>().map_err(|e| e.to_string())?
    };
    let frac_scaled = frac_value * 10i64.pow((digits - frac.len()) as u32);
    int.parse::<i64>()
        .ok()
        .and_then(|i| i.checked_mul(scale))
        .and_then(|i| i.checked_add(frac_scaled))
        .ok_or_else(|| format!("amount {text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_exactly() {
        let cny: Currency = "CNY".parse().unwrap();
        let jpy: Currency = "JPY".parse().unwrap();
        assert_eq!(parse(cny, "12.34"), Ok(1234));
        assert_eq!(parse(cny, "12.3"), Ok(1230));
        assert_eq!(parse(cny, "12"), Ok(1200));
        assert_eq!(parse(jpy, "500"), Ok(500));
        assert!(parse(jpy, "5.0").is_err());
        assert!(parse(cny, "1.234").is_err());
        assert!(parse(cny, "-1.00").is_err());
        assert!(parse(cny, "1e3").is_err());
        assert!(parse(cny, "12.").is_err());
        assert!(parse(cny, "").is_err());
        assert!(parse(cny, "99999999999999999999").is_err());
        assert_eq!(format(cny, parse(cny, "0.05").unwrap()), "0.05");
    }
}
