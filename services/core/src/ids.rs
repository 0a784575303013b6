//! Ids. Every id is a 128-bit value written as a lowercase UUID string. Payment ids are UUIDv7;
//! the ids of a payment's steps are UUIDv5 of the payment id and the step's name, so that a retry
//! or the recovery loop re-sends exactly the same ids and a step can never apply twice.

use uuid::Uuid;

/// Namespace for ids derived from names (accounts), fixed forever.
const NAME_NAMESPACE: Uuid = Uuid::from_u128(0x6a1f_6f4e_8c1b_4f7e_9d52_1b7a_9c3e_5d20);

/// A step of a payment (or refund) that needs its own idempotent id downstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The ledger's pending transfer (the hold).
    Hold,
    /// The ledger transfer that posts the hold.
    Post,
    /// The ledger transfer that voids the hold.
    Void,
    /// The ledger's fee leg.
    Fee,
    /// The channel charge request.
    Charge,
    /// The settlement item.
    SettlementItem,
    /// The ledger transfer of a refund.
    RefundTransfer,
    /// The channel refund request.
    ChannelRefund,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::Hold => "ledger.hold",
            Step::Post => "ledger.post",
            Step::Void => "ledger.void",
            Step::Fee => "ledger.fee",
            Step::Charge => "channel.charge",
            Step::SettlementItem => "settlement.item",
            Step::RefundTransfer => "ledger.refund",
            Step::ChannelRefund => "channel.refund",
        }
    }
}

/// The id of `step` of the payment or refund `parent`.
pub fn derive(parent: Uuid, step: Step) -> Uuid {
    Uuid::new_v5(&parent, step.name().as_bytes())
}

/// A stable id for a name, e.g. an account's `merchant:m-001:CNY`.
pub fn from_name(name: &str) -> Uuid {
    Uuid::new_v5(&NAME_NAMESPACE, name.as_bytes())
}

/// A new time-ordered id (payments, refunds).
pub fn new_time_ordered() -> Uuid {
    Uuid::now_v7()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an id: expected a UUID such as 0190f3c2-7d1e-7a3b-9c4d-5e6f708192a3")]
pub struct MalformedId(pub String);

/// Parses an id; only the hyphenated form (any case) is accepted, so that one id has one spelling
/// in logs and databases (`to_string` gives it in lower case).
pub fn parse(s: &str) -> Result<Uuid, MalformedId> {
    if s.len() != 36 {
        return Err(MalformedId(s.to_string()));
    }
    Uuid::parse_str(s).map_err(|_| MalformedId(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_and_distinct_per_step() {
        let p = Uuid::parse_str("0190f3c2-7d1e-7a3b-9c4d-5e6f708192a3").unwrap();
        assert_eq!(derive(p, Step::Hold), derive(p, Step::Hold));
        assert_ne!(derive(p, Step::Hold), derive(p, Step::Post));
        assert_ne!(derive(p, Step::Hold), derive(Uuid::now_v7(), Step::Hold));
    }

    #[test]
    fn parse_accepts_only_hyphenated_uuids() {
        assert!(parse("0190f3c2-7d1e-7a3b-9c4d-5e6f708192a3").is_ok());
        assert!(parse("0190f3c27d1e7a3b9c4d5e6f708192a3").is_err());
        assert!(parse("nope").is_err());
    }
}
