//! The payments a load run sends: random payers, merchants, amounts, methods and currencies
//! drawn from a configurable set.

use payplane_proto::{
    common::v1::{Money, PaymentMethod},
    payment::v1::CreatePaymentRequest,
};
use rand::{Rng, seq::IndexedRandom};

#[derive(Clone, Debug)]
pub struct PaymentMix {
    /// Payers are `payer-00001` up to this many.
    pub payers: u32,
    pub merchants: Vec<String>,
    pub currencies: Vec<String>,
    pub methods: Vec<PaymentMethod>,
    /// Amount range in minor units, inclusive.
    pub amount_min: i64,
    pub amount_max: i64,
    pub scenes: Vec<String>,
    /// BIN prefixes for card methods.
    pub card_bins: Vec<String>,
    /// Idempotency keys are `<prefix>-<n>`; unique per run.
    pub key_prefix: String,
}

impl Default for PaymentMix {
    fn default() -> Self {
        Self {
            payers: 1000,
            merchants: (1..=20).map(|i| format!("m-{i:03}")).collect(),
            currencies: vec!["CNY".to_owned()],
            methods: vec![
                PaymentMethod::DebitCard,
                PaymentMethod::CreditCard,
                PaymentMethod::QrCode,
                PaymentMethod::Wallet,
            ],
            amount_min: 100,
            amount_max: 100_000,
            scenes: vec!["ecommerce".to_owned(), "in_store".to_owned()],
            // UnionPay debit and credit (62), Visa (4), Mastercard (5x).
            card_bins: vec![
                "622202".into(),
                "621700".into(),
                "625807".into(),
                "436742".into(),
                "524094".into(),
            ],
            key_prefix: format!("load-{:08x}", rand::random::<u32>()),
        }
    }
}

impl PaymentMix {
    /// What is wrong with this mix, if anything.
    pub fn check(&self) -> Result<(), String> {
        if self.payers == 0 {
            return Err("--payers must be at least 1".into());
        }
        for (what, empty) in [
            ("--merchants", self.merchants.is_empty()),
            ("--currencies", self.currencies.is_empty()),
            ("--methods", self.methods.is_empty()),
            ("--scenes", self.scenes.is_empty()),
        ] {
            if empty {
                return Err(format!("{what} must name at least one value"));
            }
        }
        if self.amount_min <= 0 || self.amount_max < self.amount_min {
            return Err(format!(
                "--amount {}..{} is not a positive range",
                self.amount_min, self.amount_max
            ));
        }
        if self.methods.iter().any(|m| is_card(*m)) && self.card_bins.is_empty() {
            return Err("--card-bins must name at least one BIN when card methods are used".into());
        }
        Ok(())
    }

    /// Payment number `n` of the run, random apart from its idempotency key.
    pub fn request(&self, n: u64, rng: &mut impl Rng) -> CreatePaymentRequest {
        let method = *self.methods.choose(rng).expect("checked non-empty");
        let card_bin = if is_card(method) {
            self.card_bins.choose(rng).cloned().unwrap_or_default()
        } else {
            String::new()
        };
        CreatePaymentRequest {
            idempotency_key: format!("{}-{n}", self.key_prefix),
            payer_id: format!("payer-{:05}", rng.random_range(1..=self.payers)),
            merchant_id: self.merchants.choose(rng).cloned().expect("checked non-empty"),
            amount: Some(Money {
                minor_units: rng.random_range(self.amount_min..=self.amount_max),
                currency: self.currencies.choose(rng).cloned().expect("checked non-empty"),
            }),
            method: method as i32,
            scene: self.scenes.choose(rng).cloned().expect("checked non-empty"),
            card_bin,
        }
    }
}

fn is_card(m: PaymentMethod) -> bool {
    matches!(m, PaymentMethod::DebitCard | PaymentMethod::CreditCard)
}

/// `debit_card`, `credit_card`, `qr_code`, `bank_transfer`, `wallet`.
pub fn parse_method(s: &str) -> Result<PaymentMethod, String> {
    let upper = format!("PAYMENT_METHOD_{}", s.trim().to_ascii_uppercase());
    match PaymentMethod::from_str_name(&upper) {
        Some(PaymentMethod::Unspecified) | None => Err(format!(
            "unknown method '{s}' (debit_card, credit_card, qr_code, bank_transfer, wallet)"
        )),
        Some(m) => Ok(m),
    }
}

/// `5000` or `100..100000` (minor units).
pub fn parse_amount_range(s: &str) -> Result<(i64, i64), String> {
    let bad = || format!("'{s}' is not an amount or a range like 100..100000 (minor units)");
    match s.split_once("..") {
        Some((a, b)) => Ok((
            a.trim().parse().map_err(|_| bad())?,
            b.trim().parse().map_err(|_| bad())?,
        )),
        None => {
            let v = s.trim().parse().map_err(|_| bad())?;
            Ok((v, v))
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::{SeedableRng, rngs::StdRng};

    use super::*;

    #[test]
    fn requests_stay_within_the_mix() {
        let mix = PaymentMix {
            payers: 3,
            merchants: vec!["m-1".into(), "m-2".into()],
            methods: vec![PaymentMethod::Wallet, PaymentMethod::CreditCard],
            amount_min: 10,
            amount_max: 20,
            key_prefix: "t".into(),
            ..Default::default()
        };
        mix.check().unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        let reqs: Vec<_> = (0..500).map(|n| mix.request(n, &mut rng)).collect();
        assert_eq!(reqs[7].idempotency_key, "t-7");
        for r in &reqs {
            let amount = r.amount.as_ref().unwrap();
            assert!((10..=20).contains(&amount.minor_units) && amount.currency == "CNY");
            assert!(["m-1", "m-2"].contains(&r.merchant_id.as_str()));
            assert!(["payer-00001", "payer-00002", "payer-00003"].contains(&r.payer_id.as_str()));
            let card = r.method == PaymentMethod::CreditCard as i32;
            assert_eq!(card, !r.card_bin.is_empty(), "{r:?}");
        }
        assert!(reqs.iter().any(|r| r.method == PaymentMethod::Wallet as i32));
        assert!(reqs.iter().any(|r| r.amount.as_ref().unwrap().minor_units == 20));
    }

    #[test]
    fn parses_methods_and_amounts_and_rejects_bad_mixes() {
        assert_eq!(parse_method("qr_code"), Ok(PaymentMethod::QrCode));
        assert!(parse_method("cash").is_err() && parse_method("unspecified").is_err());
        assert_eq!(parse_amount_range("100..2000"), Ok((100, 2000)));
        assert_eq!(parse_amount_range("500"), Ok((500, 500)));
        assert!(parse_amount_range("1..x").is_err());
        let bad = PaymentMix {
            amount_min: 0,
            ..Default::default()
        };
        assert!(bad.check().is_err());
        let bad = PaymentMix {
            merchants: vec![],
            ..Default::default()
        };
        assert!(bad.check().unwrap_err().contains("--merchants"));
    }
}
