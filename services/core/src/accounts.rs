//! The chart of accounts: which ledger accounts a payment touches, and how their ids are named.
//!
//! One ledger per currency (numbered by ISO 4217, see [`Currency::ledger`]). Money flows from the
//! debit account to the credit account of a transfer:
//!
//! | step                         | debit                  | credit                 | amount        |
//! |------------------------------|------------------------|------------------------|---------------|
//! | hold (pending, with timeout) | `payer:<payer>`        | `clearing:<channel>`   | amount        |
//! | success: post the hold       | `payer:<payer>`        | `clearing:<channel>`   | amount        |
//! | success: fee leg (linked)    | `clearing:<channel>`   | `fees:platform`        | fee           |
//! | decline or failure           | void the hold          |                        |               |
//! | refund                       | `clearing:<channel>`   | `payer:<payer>`        | refund amount |
//! | settlement of a window       | `clearing:<channel>`   | `merchant:<merchant>`  | merchant net  |
//!
//! So `clearing:<channel>` holds what the channel collected for us and not yet settled; at
//! settlement each merchant's net (payments − fees − refunds) moves to `merchant:<merchant>`,
//! what the platform owes the merchant. Per currency all balances always sum to zero.

use uuid::Uuid;

use crate::{Currency, ids};

/// The kind of an account; its `code` in the ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccountKind {
    /// A payer's funding source at the channel.
    Payer,
    /// What a channel collected for us and has not yet settled.
    ChannelClearing,
    /// What the platform owes a merchant.
    Merchant,
    /// The platform's fee revenue.
    Fees,
}

impl AccountKind {
    pub fn code(self) -> u32 {
        match self {
            AccountKind::Payer => 1,
            AccountKind::ChannelClearing => 2,
            AccountKind::Merchant => 3,
            AccountKind::Fees => 4,
        }
    }

    pub fn from_code(code: u32) -> Option<Self> {
        Some(match code {
            1 => AccountKind::Payer,
            2 => AccountKind::ChannelClearing,
            3 => AccountKind::Merchant,
            4 => AccountKind::Fees,
            _ => return None,
        })
    }

    fn prefix(self) -> &'static str {
        match self {
            AccountKind::Payer => "payer",
            AccountKind::ChannelClearing => "clearing",
            AccountKind::Merchant => "merchant",
            AccountKind::Fees => "fees",
        }
    }
}

/// Transfer codes: why money moved.
pub mod transfer_code {
    pub const PAYMENT: u32 = 1;
    pub const FEE: u32 = 2;
    pub const REFUND: u32 = 3;
    pub const SETTLEMENT: u32 = 4;
}

/// An account of the chart: kind, owner and currency.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AccountRef {
    pub kind: AccountKind,
    /// Payer, channel or merchant id; `platform` for fees.
    pub owner: String,
    pub currency: Currency,
}

impl AccountRef {
    pub fn new(kind: AccountKind, owner: impl Into<String>, currency: Currency) -> Self {
        Self {
            kind,
            owner: owner.into(),
            currency,
        }
    }

    pub fn payer(payer: &str, currency: Currency) -> Self {
        Self::new(AccountKind::Payer, payer, currency)
    }

    pub fn clearing(channel: &str, currency: Currency) -> Self {
        Self::new(AccountKind::ChannelClearing, channel, currency)
    }

    pub fn merchant(merchant: &str, currency: Currency) -> Self {
        Self::new(AccountKind::Merchant, merchant, currency)
    }

    pub fn fees(currency: Currency) -> Self {
        Self::new(AccountKind::Fees, "platform", currency)
    }

    /// `merchant:m-001:CNY`
    pub fn name(&self) -> String {
        format!("{}:{}:{}", self.kind.prefix(), self.owner, self.currency)
    }

    /// The account's ledger id: UUIDv5 of its name, the same in every service and forever.
    pub fn id(&self) -> Uuid {
        ids::from_name(&self.name())
    }

    pub fn ledger(&self) -> u32 {
        self.currency.ledger()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_are_deterministic_per_kind_owner_and_currency() {
        let cny: Currency = "CNY".parse().unwrap();
        let usd: Currency = "USD".parse().unwrap();
        assert_eq!(
            AccountRef::merchant("m1", cny).id(),
            AccountRef::merchant("m1", cny).id()
        );
        assert_ne!(
            AccountRef::merchant("m1", cny).id(),
            AccountRef::merchant("m1", usd).id()
        );
        assert_ne!(
            AccountRef::merchant("m1", cny).id(),
            AccountRef::payer("m1", cny).id()
        );
        assert_eq!(AccountRef::fees(cny).name(), "fees:platform:CNY");
    }

    #[test]
    fn codes_round_trip() {
        for k in [
            AccountKind::Payer,
            AccountKind::ChannelClearing,
            AccountKind::Merchant,
            AccountKind::Fees,
        ] {
            assert_eq!(AccountKind::from_code(k.code()), Some(k));
        }
    }
}
