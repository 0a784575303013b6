//! The vocabulary every payplane service shares, with no I/O: money and currencies, ids and how
//! the ids of a payment's steps are derived, the chart of accounts in the ledger, and the
//! field-level validation errors that become `INVALID_ARGUMENT` with field violations.

pub mod accounts;
pub mod currency;
pub mod ids;
pub mod validation;

pub use currency::Currency;
pub use validation::{FieldViolation, Violations};
