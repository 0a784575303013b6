//! A payment request, its validation and its idempotency fingerprint.

use payplane_core::{Currency, Violations};
use payplane_proto::{common::v1::PaymentMethod, payment::v1::CreatePaymentRequest};

/// Status of a payment or refund, as persisted (numbers of `PaymentStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    Pending,
    Succeeded,
    Failed,
}

impl Status {
    pub fn code(self) -> i16 {
        match self {
            Status::Pending => 1,
            Status::Succeeded => 2,
            Status::Failed => 3,
        }
    }

    pub fn from_code(code: i16) -> Option<Self> {
        Some(match code {
            1 => Status::Pending,
            2 => Status::Succeeded,
            3 => Status::Failed,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
        }
    }
}

/// Which merchants may take payments.
#[derive(Clone, Debug)]
pub enum MerchantRegistry {
    /// Any well-formed merchant id (`*`): for load tests only.
    Any,
    Listed(Vec<String>),
}

impl MerchantRegistry {
    /// Parses `m-001,m-002` or `*`.
    pub fn parse(spec: &str) -> Self {
        if spec.trim() == "*" {
            return MerchantRegistry::Any;
        }
        MerchantRegistry::Listed(
            spec.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
        )
    }

    pub fn knows(&self, merchant: &str) -> bool {
        match self {
            MerchantRegistry::Any => true,
            MerchantRegistry::Listed(list) => list.iter().any(|m| m == merchant),
        }
    }
}

/// A validated `CreatePaymentRequest`: the body the idempotency key is bound to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewPayment {
    pub idempotency_key: String,
    pub payer_id: String,
    pub merchant_id: String,
    pub amount: i64,
    pub currency: Currency,
    pub method: PaymentMethod,
    pub scene: String,
    pub card_bin: String,
}

impl NewPayment {
    /// Validates a request; every problem is reported at once, by field.
    pub fn validate(req: &CreatePaymentRequest, merchants: &MerchantRegistry) -> Result<Self, Violations> {
        let mut v = Violations::new();
        let key = &req.idempotency_key;
        if key.is_empty() {
            v.add("idempotency_key", "is required");
        } else if key.len() > 128 || !key.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            v.add(
                "idempotency_key",
                "must be 1 to 128 printable ASCII characters without spaces",
            );
        }
        v.name("payer_id", &req.payer_id);
        v.name("merchant_id", &req.merchant_id);
        if !req.merchant_id.is_empty() && !merchants.knows(&req.merchant_id) {
            v.add("merchant_id", format!("unknown merchant {:?}", req.merchant_id));
        }
        let money = v.positive_money("amount", req.amount.as_ref());
        let method = match PaymentMethod::try_from(req.method) {
            Ok(PaymentMethod::Unspecified) => {
                v.add("method", "is required");
                None
            }
            Ok(m) => Some(m),
            Err(_) => {
                v.add("method", format!("unsupported payment method {}", req.method));
                None
            }
        };
        if req.scene.len() > 64
            || !req
                .scene
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            v.add(
                "scene",
                "must be at most 64 characters of letters, digits, '.', '_' or '-'",
            );
        }
        if !req.card_bin.is_empty()
            && (!(6..=8).contains(&req.card_bin.len()) || !req.card_bin.bytes().all(|b| b.is_ascii_digit()))
        {
            v.add("card_bin", "must be the first 6 to 8 digits of the card");
        }
        match (v.is_empty(), money, method) {
            (true, Some((amount, currency)), Some(method)) => Ok(Self {
                idempotency_key: key.clone(),
                payer_id: req.payer_id.clone(),
                merchant_id: req.merchant_id.clone(),
                amount,
                currency,
                method,
                scene: req.scene.clone(),
                card_bin: req.card_bin.clone(),
            }),
            _ => Err(v),
        }
    }

    /// The first field in which `other` (a request reusing this one's key) differs, if any.
    pub fn first_difference(&self, other: &NewPayment) -> Option<&'static str> {
        if self.payer_id != other.payer_id {
            Some("payer_id")
        } else if self.merchant_id != other.merchant_id {
            Some("merchant_id")
        } else if self.amount != other.amount {
            Some("amount.minor_units")
        } else if self.currency != other.currency {
            Some("amount.currency")
        } else if self.method != other.method {
            Some("method")
        } else if self.scene != other.scene {
            Some("scene")
        } else if self.card_bin != other.card_bin {
            Some("card_bin")
        } else {
            None
        }
    }
}

/// Makes a free-form downstream reason safe as a stable failure code: lower case, `[a-z0-9_]`,
/// at most 48 characters.
pub fn slug(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len().min(48));
    let mut last_underscore = true;
    for c in reason.chars() {
        if out.len() >= 48 {
            break;
        }
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
            last_underscore = false;
        } else if !last_underscore {
            out.push('_');
            last_underscore = true;
        }
    }
    let trimmed = out.trim_end_matches('_');
    if trimmed.is_empty() {
        "unknown".to_string()
    } else {
        trimmed.to_string()
    }
}

/// The metric label of a failure reason: its first segment (`declined`, `no_route`, ...), so that
/// label values stay few.
pub fn reason_label(reason: &str) -> &str {
    reason.split(':').next().unwrap_or(reason)
}

#[cfg(test)]
mod tests {
    use payplane_proto::common::v1::Money;

    use super::*;

    fn request() -> CreatePaymentRequest {
        CreatePaymentRequest {
            idempotency_key: "k-1".into(),
            payer_id: "p-1".into(),
            merchant_id: "m-001".into(),
            amount: Some(Money {
                minor_units: 1234,
                currency: "CNY".into(),
            }),
            method: PaymentMethod::DebitCard as i32,
            scene: "ecommerce".into(),
            card_bin: "622848".into(),
        }
    }

    fn registry() -> MerchantRegistry {
        MerchantRegistry::parse("m-001, m-002")
    }

    #[test]
    fn accepts_a_good_request() {
        let p = NewPayment::validate(&request(), &registry()).unwrap();
        assert_eq!(
            (p.amount, p.currency.code(), p.method),
            (1234, "CNY", PaymentMethod::DebitCard)
        );
    }

    #[test]
    fn names_every_bad_field() {
        let mut r = request();
        r.amount = Some(Money {
            minor_units: -5,
            currency: "XXX".into(),
        });
        r.merchant_id = "m-999".into();
        r.method = 42;
        r.idempotency_key = String::new();
        r.card_bin = "12".into();
        let v = NewPayment::validate(&r, &registry()).unwrap_err();
        let fields: Vec<_> = v.iter().map(|f| f.field.as_str()).collect();
        for f in [
            "idempotency_key",
            "merchant_id",
            "amount.currency",
            "amount.minor_units",
            "method",
            "card_bin",
        ] {
            assert!(fields.contains(&f), "{f} missing from {fields:?}");
        }
        let msg = v.into_status().message().to_string();
        assert!(msg.contains("unknown merchant \"m-999\""), "{msg}");
    }

    #[test]
    fn zero_amount_and_unspecified_method_are_rejected() {
        let mut r = request();
        r.amount = Some(Money {
            minor_units: 0,
            currency: "CNY".into(),
        });
        r.method = 0;
        let v = NewPayment::validate(&r, &registry()).unwrap_err();
        let fields: Vec<_> = v.iter().map(|f| f.field.clone()).collect();
        assert_eq!(
            fields,
            vec!["amount.minor_units".to_string(), "method".to_string()]
        );
    }

    #[test]
    fn wildcard_registry_takes_any_merchant() {
        let mut r = request();
        r.merchant_id = "anyone".into();
        assert!(NewPayment::validate(&r, &MerchantRegistry::parse("*")).is_ok());
        assert!(NewPayment::validate(&r, &registry()).is_err());
    }

    #[test]
    fn first_difference_names_the_field() {
        let a = NewPayment::validate(&request(), &registry()).unwrap();
        assert_eq!(a.first_difference(&a.clone()), None);
        let mut b = a.clone();
        b.amount += 1;
        assert_eq!(a.first_difference(&b), Some("amount.minor_units"));
        let mut c = a.clone();
        c.payer_id = "other".into();
        assert_eq!(a.first_difference(&c), Some("payer_id"));
    }

    #[test]
    fn slugs_are_stable_codes() {
        assert_eq!(
            slug("No channel serves currency JPY!"),
            "no_channel_serves_currency_jpy"
        );
        assert_eq!(slug("   "), "unknown");
        assert!(slug(&"x".repeat(200)).len() <= 48);
        assert_eq!(reason_label("declined:insufficient_funds"), "declined");
    }
}
