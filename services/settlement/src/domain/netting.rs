//! Net positions of a window. The window's gross obligations come from its items (chart of
//! accounts in `payplane_core::accounts`): the channel owes each merchant its payments less fees
//! and the platform the fees; each merchant owes the channel its refunds. Netting them:
//!
//! - **bilateral**: one figure per pair of participants (what one owes the other, net);
//! - **multilateral**: one figure per participant against the settlement hub.
//!
//! A participant's bilateral nets add up to its multilateral net, and per currency the
//! multilateral nets sum to zero (property-tested).

use std::collections::BTreeMap;

use super::{Item, ItemKind, Overflow};

/// Participant id of the platform's fee account.
pub const PLATFORM_FEES: &str = "fees:platform";

pub fn channel_participant(channel: &str) -> String {
    format!("channel:{channel}")
}

pub fn merchant_participant(merchant: &str) -> String {
    format!("merchant:{merchant}")
}

/// What one merchant did in a window.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MerchantTotals {
    pub payments: i64,
    pub payment_count: u64,
    pub refunds: i64,
    pub refund_count: u64,
    pub fees: i64,
}

impl MerchantTotals {
    /// payments − fees − refunds: what moves from clearing to the merchant at settlement.
    pub fn net(&self) -> Result<i64, Overflow> {
        self.payments
            .checked_sub(self.fees)
            .and_then(|n| n.checked_sub(self.refunds))
            .ok_or(Overflow("netting a merchant"))
    }
}

/// A window's totals per merchant, sorted by merchant id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WindowTotals {
    pub merchants: BTreeMap<String, MerchantTotals>,
}

impl WindowTotals {
    pub fn add(&mut self, item: &Item) -> Result<(), Overflow> {
        let t = self.merchants.entry(item.merchant_id.clone()).or_default();
        let overflow = || Overflow("adding up a window");
        match item.kind {
            ItemKind::Payment => {
                t.payments = t.payments.checked_add(item.amount).ok_or_else(overflow)?;
                t.fees = t.fees.checked_add(item.fee).ok_or_else(overflow)?;
                t.payment_count += 1;
            }
            ItemKind::Refund => {
                t.refunds = t.refunds.checked_add(item.amount).ok_or_else(overflow)?;
                t.refund_count += 1;
            }
        }
        Ok(())
    }

    pub fn from_items<'a>(items: impl IntoIterator<Item = &'a Item>) -> Result<Self, Overflow> {
        let mut totals = Self::default();
        for item in items {
            totals.add(item)?;
        }
        Ok(totals)
    }

    pub fn item_count(&self) -> u64 {
        self.merchants
            .values()
            .map(|t| t.payment_count + t.refund_count)
            .sum()
    }

    /// (gross payments, gross refunds, fees) of the whole window.
    pub fn sums(&self) -> Result<(i64, i64, i64), Overflow> {
        let mut s = (0i64, 0i64, 0i64);
        for t in self.merchants.values() {
            s.0 = s.0.checked_add(t.payments).ok_or(Overflow("summing payments"))?;
            s.1 = s.1.checked_add(t.refunds).ok_or(Overflow("summing refunds"))?;
            s.2 = s.2.checked_add(t.fees).ok_or(Overflow("summing fees"))?;
        }
        Ok(s)
    }

    /// The window's gross obligations between participants, in a fixed order.
    pub fn obligations(&self, channel: &str) -> Vec<Obligation> {
        let ch = channel_participant(channel);
        let mut out = Vec::with_capacity(self.merchants.len() * 3);
        for (merchant, t) in &self.merchants {
            let m = merchant_participant(merchant);
            out.push(Obligation {
                debtor: ch.clone(),
                creditor: m.clone(),
                amount: t.payments - t.fees,
            });
            out.push(Obligation {
                debtor: m,
                creditor: ch.clone(),
                amount: t.refunds,
            });
            out.push(Obligation {
                debtor: ch.clone(),
                creditor: PLATFORM_FEES.to_string(),
                amount: t.fees,
            });
        }
        out.retain(|o| o.amount != 0);
        out
    }
}

/// `debtor` owes `creditor` `amount` (minor units, non-negative).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Obligation {
    pub debtor: String,
    pub creditor: String,
    pub amount: i64,
}

/// A participant's multilateral position: positive receives, negative pays.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Position {
    pub participant_id: String,
    pub receivable: i64,
    pub payable: i64,
    pub net: i64,
}

/// The net between two participants, `a < b`: positive means `a` owes `b`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BilateralNet {
    pub a: String,
    pub b: String,
    pub a_owes_b: i64,
}

/// One position per participant, sorted by participant id.
pub fn multilateral(obligations: &[Obligation]) -> Result<Vec<Position>, Overflow> {
    let mut map: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    let overflow = || Overflow("netting multilaterally");
    for o in obligations {
        let d = map.entry(&o.debtor).or_default();
        d.1 = d.1.checked_add(o.amount).ok_or_else(overflow)?;
        let c = map.entry(&o.creditor).or_default();
        c.0 = c.0.checked_add(o.amount).ok_or_else(overflow)?;
    }
    map.into_iter()
        .map(|(p, (receivable, payable))| {
            Ok(Position {
                participant_id: p.to_string(),
                receivable,
                payable,
                net: receivable.checked_sub(payable).ok_or_else(overflow)?,
            })
        })
        .collect()
}

/// One net per pair of participants that have obligations, sorted by pair.
pub fn bilateral(obligations: &[Obligation]) -> Result<Vec<BilateralNet>, Overflow> {
    let mut map: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for o in obligations {
        let (key, signed) = if o.debtor < o.creditor {
            ((o.debtor.as_str(), o.creditor.as_str()), o.amount)
        } else {
            ((o.creditor.as_str(), o.debtor.as_str()), -o.amount)
        };
        let e = map.entry(key).or_default();
        *e = e.checked_add(signed).ok_or(Overflow("netting bilaterally"))?;
    }
    Ok(map
        .into_iter()
        .map(|((a, b), n)| BilateralNet {
            a: a.to_string(),
            b: b.to_string(),
            a_owes_b: n,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ob(d: &str, c: &str, amount: i64) -> Obligation {
        Obligation {
            debtor: d.into(),
            creditor: c.into(),
            amount,
        }
    }

    #[test]
    fn window_positions_follow_the_chart_of_accounts() {
        let mut totals = WindowTotals::default();
        totals.merchants.insert(
            "m1".into(),
            MerchantTotals {
                payments: 10_000,
                payment_count: 2,
                refunds: 1_000,
                refund_count: 1,
                fees: 60,
            },
        );
        totals.merchants.insert(
            "m2".into(),
            MerchantTotals {
                payments: 500,
                payment_count: 1,
                refunds: 800,
                refund_count: 1,
                fees: 3,
            },
        );
        let positions = multilateral(&totals.obligations("unionpay")).unwrap();
        let by: BTreeMap<_, _> = positions
            .iter()
            .map(|p| (p.participant_id.as_str(), p.net))
            .collect();
        // The channel pays gross payments − refunds; merchants receive their nets; fees to us.
        assert_eq!(by["channel:unionpay"], -(10_500 - 1_800));
        assert_eq!(by["merchant:m1"], 10_000 - 60 - 1_000);
        assert_eq!(by["merchant:m2"], 500 - 3 - 800);
        assert_eq!(by[PLATFORM_FEES], 63);
        assert_eq!(positions.iter().map(|p| p.net).sum::<i64>(), 0);
        assert_eq!(totals.merchants["m2"].net().unwrap(), -303);
    }

    #[test]
    fn bilateral_nets_offset_within_a_pair() {
        let nets = bilateral(&[ob("b", "a", 70), ob("a", "b", 100), ob("c", "a", 5)]).unwrap();
        assert_eq!(
            nets,
            vec![
                BilateralNet {
                    a: "a".into(),
                    b: "b".into(),
                    a_owes_b: 30
                },
                BilateralNet {
                    a: "a".into(),
                    b: "c".into(),
                    a_owes_b: -5
                },
            ]
        );
    }

    proptest! {
        #[test]
        fn multilateral_sums_to_zero_and_equals_the_sum_of_bilateral_nets(
            raw in prop::collection::vec((0usize..6, 0usize..6, 0i64..1_000_000), 0..60)
        ) {
            let names = ["channel:u", "merchant:a", "merchant:b", "merchant:c", PLATFORM_FEES, "channel:n"];
            let obligations: Vec<_> = raw.iter().filter(|(d, c, _)| d != c).map(|(d, c, a)| ob(names[*d], names[*c], *a)).collect();
            let positions = multilateral(&obligations).unwrap();
            prop_assert_eq!(positions.iter().map(|p| p.net).sum::<i64>(), 0);
            let nets = bilateral(&obligations).unwrap();
            for p in &positions {
                let from_pairs: i64 = nets.iter().map(|n| {
                    if n.a == p.participant_id { -n.a_owes_b } else if n.b == p.participant_id { n.a_owes_b } else { 0 }
                }).sum();
                prop_assert_eq!(from_pairs, p.net, "participant {}", p.participant_id);
                prop_assert_eq!(p.receivable - p.payable, p.net);
            }
        }
    }
}
