//! The settlement postings of a window: per merchant, its net moves from `clearing:<channel>` to
//! `merchant:<merchant>` (or back, when refunds exceed payments), as one linked batch.
//!
//! Transfer ids are UUIDv5 of the window id, the close attempt and the merchant, so a retried
//! close re-sends the same ids and accounting answers EXISTS instead of posting twice. The attempt
//! number moves on only after accounting *refused* a batch: the ledger freezes the ids of a failed
//! event (ID_ALREADY_FAILED), so a corrected retry needs fresh ones.

use payplane_core::{
    Currency,
    accounts::{AccountRef, transfer_code},
    ids,
};
use uuid::Uuid;

use super::{Overflow, netting::WindowTotals};

/// One ledger transfer of a settlement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Posting {
    pub transfer_id: Uuid,
    pub merchant_id: String,
    pub debit: AccountRef,
    pub credit: AccountRef,
    pub amount: u64,
    pub ledger: u32,
    pub code: u32,
}

/// A stable id for a window, carried in the transfers' `user_data_128`.
pub fn window_uuid(window_id: &str) -> Uuid {
    ids::from_name(&format!("settlement-window:{window_id}"))
}

pub fn transfer_id(window_id: &str, attempt: u32, merchant: &str) -> Uuid {
    Uuid::new_v5(
        &window_uuid(window_id),
        format!("posting:{attempt}:{merchant}").as_bytes(),
    )
}

/// The postings of a window, sorted by merchant; merchants whose net is zero post nothing.
pub fn plan(
    window_id: &str,
    channel: &str,
    currency: Currency,
    totals: &WindowTotals,
    attempt: u32,
) -> Result<Vec<Posting>, Overflow> {
    let clearing = AccountRef::clearing(channel, currency);
    let mut out = Vec::new();
    for (merchant, t) in &totals.merchants {
        let net = t.net()?;
        if net == 0 {
            continue;
        }
        let account = AccountRef::merchant(merchant, currency);
        let (debit, credit) = if net > 0 {
            (clearing.clone(), account)
        } else {
            (account, clearing.clone())
        };
        out.push(Posting {
            transfer_id: transfer_id(window_id, attempt, merchant),
            merchant_id: merchant.clone(),
            debit,
            credit,
            amount: net.unsigned_abs(),
            ledger: currency.ledger(),
            code: transfer_code::SETTLEMENT,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::netting::MerchantTotals;

    #[test]
    fn plans_one_transfer_per_non_zero_merchant_net_with_stable_ids() {
        let cny: Currency = "CNY".parse().unwrap();
        let mut totals = WindowTotals::default();
        totals.merchants.insert(
            "m1".into(),
            MerchantTotals {
                payments: 1000,
                fees: 10,
                refunds: 90,
                payment_count: 1,
                refund_count: 1,
            },
        );
        totals.merchants.insert(
            "m2".into(),
            MerchantTotals {
                payments: 100,
                fees: 1,
                refunds: 99,
                payment_count: 1,
                refund_count: 1,
            },
        );
        totals.merchants.insert(
            "m3".into(),
            MerchantTotals {
                payments: 0,
                fees: 0,
                refunds: 50,
                payment_count: 0,
                refund_count: 1,
            },
        );
        let p = plan("u:CNY:2026-11-22", "u", cny, &totals, 0).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].merchant_id.as_str(), p[0].amount), ("m1", 900));
        assert_eq!(p[0].debit, AccountRef::clearing("u", cny));
        assert_eq!((p[1].merchant_id.as_str(), p[1].amount), ("m3", 50));
        assert_eq!(p[1].credit, AccountRef::clearing("u", cny));
        assert_eq!(p, plan("u:CNY:2026-11-22", "u", cny, &totals, 0).unwrap());
        assert_ne!(
            p[0].transfer_id,
            plan("u:CNY:2026-11-22", "u", cny, &totals, 1).unwrap()[0].transfer_id
        );
        assert_ne!(
            p[0].transfer_id,
            plan("u:CNY:2026-11-23", "u", cny, &totals, 0).unwrap()[0].transfer_id
        );
    }
}
