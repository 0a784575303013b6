//! Field-level validation that collects every problem of a request, then becomes one
//! `INVALID_ARGUMENT` status whose message lists them and whose details carry a
//! `google.rpc.BadRequest` with one field violation each (grpcurl and every gRPC client show them).

use payplane_proto::common::v1::Money;
use tonic_types::{ErrorDetails, StatusExt};

use crate::{Currency, ids};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldViolation {
    /// Dotted path of the field, e.g. `amount.minor_units`.
    pub field: String,
    /// Why, in words a caller can act on.
    pub description: String,
}

/// The violations found in one request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation {
            field: field.into(),
            description: description.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &FieldViolation> {
        self.0.iter()
    }

    /// `Ok(())` when there is nothing to report, else the status to return.
    pub fn into_result(self) -> Result<(), tonic::Status> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self.into_status())
        }
    }

    pub fn into_status(self) -> tonic::Status {
        let message = self
            .0
            .iter()
            .map(|v| format!("{}: {}", v.field, v.description))
            .collect::<Vec<_>>()
            .join("; ");
        let mut details = ErrorDetails::new();
        for v in &self.0 {
            details.add_bad_request_violation(v.field.clone(), v.description.clone());
        }
        tonic::Status::with_error_details(tonic::Code::InvalidArgument, message, details)
    }

    /// Checks that `value` is a well-formed id; returns it when it is.
    pub fn id(&mut self, field: &str, value: &str) -> Option<uuid::Uuid> {
        if value.is_empty() {
            self.add(field, "is required");
            return None;
        }
        match ids::parse(value) {
            Ok(id) => Some(id),
            Err(e) => {
                self.add(field, e.to_string());
                None
            }
        }
    }

    /// Checks that a free-form identifier (merchant, payer, channel) is present and sane:
    /// 1 to 64 characters of `[A-Za-z0-9._-]`.
    pub fn name(&mut self, field: &str, value: &str) {
        if value.is_empty() {
            self.add(field, "is required");
        } else if value.len() > 64
            || !value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            self.add(
                field,
                "must be 1 to 64 characters of letters, digits, '.', '_' or '-'",
            );
        }
    }

    /// Checks a positive amount in a supported currency; returns both when valid.
    pub fn positive_money(&mut self, field: &str, money: Option<&Money>) -> Option<(i64, Currency)> {
        let Some(money) = money else {
            self.add(field, "is required");
            return None;
        };
        let currency = match money.currency.parse::<Currency>() {
            Ok(c) => Some(c),
            Err(e) => {
                self.add(format!("{field}.currency"), e.to_string());
                None
            }
        };
        if money.minor_units <= 0 {
            self.add(
                format!("{field}.minor_units"),
                format!("must be positive, got {}", money.minor_units),
            );
            return None;
        }
        currency.map(|c| (money.minor_units, c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_every_violation_into_one_status_with_details() {
        let mut v = Violations::new();
        v.positive_money(
            "amount",
            Some(&Money {
                minor_units: 0,
                currency: "XXX".into(),
            }),
        );
        v.name("merchant_id", "");
        let status = v.into_status();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(
            status.message().contains("amount.currency: unsupported currency"),
            "{}",
            status.message()
        );
        assert!(
            status
                .message()
                .contains("amount.minor_units: must be positive, got 0")
        );
        assert!(status.message().contains("merchant_id: is required"));
        let details = status.get_error_details();
        assert_eq!(details.bad_request().unwrap().field_violations.len(), 3);
    }

    #[test]
    fn accepts_valid_money() {
        let mut v = Violations::new();
        let got = v.positive_money(
            "amount",
            Some(&Money {
                minor_units: 100,
                currency: "CNY".into(),
            }),
        );
        assert!(v.is_empty());
        assert_eq!(got.map(|(m, c)| (m, c.code())), Some((100, "CNY")));
    }
}
