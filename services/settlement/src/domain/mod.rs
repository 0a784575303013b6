//! Pure settlement logic: no I/O, deterministic (sorted orders, no wall clock: every time in a
//! document is derived from the window), unit- and property-tested.

pub mod instructions;
pub mod money;
pub mod netting;
pub mod postings;
pub mod reconcile;
pub mod statement;
pub mod window;

use chrono::{DateTime, Utc};
use payplane_core::Currency;
use uuid::Uuid;

/// Whether a cleared item collected money (payment) or returned it (refund).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ItemKind {
    Payment,
    Refund,
}

impl ItemKind {
    pub fn code(self) -> i16 {
        match self {
            ItemKind::Payment => 1,
            ItemKind::Refund => 2,
        }
    }

    pub fn from_code(code: i16) -> Option<Self> {
        match code {
            1 => Some(ItemKind::Payment),
            2 => Some(ItemKind::Refund),
            _ => None,
        }
    }
}

/// A cleared payment or refund, as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub item_id: Uuid,
    pub kind: ItemKind,
    pub payment_id: Uuid,
    pub channel_id: String,
    pub merchant_id: String,
    pub currency: Currency,
    /// Gross amount in minor units, positive for both kinds.
    pub amount: i64,
    /// Fee the platform keeps, payments only (zero for refunds).
    pub fee: i64,
    pub channel_reference: String,
    pub cleared_at: DateTime<Utc>,
}

/// Arithmetic that would not fit in 64-bit minor units.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("amount overflow while {0}")]
pub struct Overflow(pub &'static str);
