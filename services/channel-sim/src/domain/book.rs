//! What the acquirer decided: every charge and refund by request id. Pure state; the simulator
//! journals each new record before applying it, so a replay of the journal rebuilds the book.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Decline codes an acquirer gives, drawn uniformly for a declined charge.
pub const DECLINE_CODES: [&str; 4] = [
    "insufficient_funds",
    "do_not_honor",
    "expired_card",
    "suspected_fraud",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Approved,
    Declined,
}

/// What identifies a charge request: a retry must carry exactly this again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeInput {
    pub channel_id: String,
    pub request_id: String,
    pub payment_id: String,
    pub amount_minor: i64,
    pub currency: String,
    /// `PaymentMethod` as its proto number.
    pub method: i32,
    pub payer_id: String,
    pub merchant_id: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChargeRecord {
    pub input: ChargeInput,
    pub outcome: Outcome,
    /// Set for approved charges only.
    pub reference: String,
    pub decline_code: String,
    pub decided_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundInput {
    pub channel_id: String,
    pub request_id: String,
    pub charge_request_id: String,
    pub amount_minor: i64,
    pub currency: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RefundRecord {
    pub input: RefundInput,
    pub reference: String,
    pub decided_at: DateTime<Utc>,
}

/// One line of the journal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    Charge(ChargeRecord),
    Refund(RefundRecord),
}

/// The answer to a request: a new decision to journal and apply, or the one made before.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision<T> {
    New(T),
    Replay(T),
}

impl<T> Decision<T> {
    pub fn record(&self) -> &T {
        match self {
            Decision::New(r) | Decision::Replay(r) => r,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BookError {
    #[error("request_id {request_id} was already used with a different {field}")]
    Conflict { request_id: String, field: &'static str },
    #[error("request_id {request_id} was already used for a {other} on this channel")]
    KindConflict { request_id: String, other: &'static str },
    #[error("no charge with request_id {0} on this channel")]
    ChargeNotFound(String),
    #[error("charge {0} was declined; only approved charges can be refunded")]
    ChargeNotApproved(String),
    #[error("refund currency {refund} differs from the charge's {charge}")]
    CurrencyMismatch { refund: String, charge: String },
    #[error("refund of {requested} exceeds what is left of the charge ({remaining} of {charged})")]
    ExceedsCharge {
        requested: i64,
        remaining: i64,
        charged: i64,
    },
}

/// The first field in which two requests under one id differ.
fn charge_difference(a: &ChargeInput, b: &ChargeInput) -> Option<&'static str> {
    [
        ("channel_id", a.channel_id != b.channel_id),
        ("payment_id", a.payment_id != b.payment_id),
        (
            "amount",
            a.amount_minor != b.amount_minor || a.currency != b.currency,
        ),
        ("method", a.method != b.method),
        ("payer_id", a.payer_id != b.payer_id),
        ("merchant_id", a.merchant_id != b.merchant_id),
    ]
    .into_iter()
    .find_map(|(field, differs)| differs.then_some(field))
}

fn refund_difference(a: &RefundInput, b: &RefundInput) -> Option<&'static str> {
    [
        ("channel_id", a.channel_id != b.channel_id),
        ("charge_request_id", a.charge_request_id != b.charge_request_id),
        (
            "amount",
            a.amount_minor != b.amount_minor || a.currency != b.currency,
        ),
    ]
    .into_iter()
    .find_map(|(field, differs)| differs.then_some(field))
}

/// Every decision, by request id (charges and refunds share the id space, as they do at an
/// acquirer that keys on the merchant's order number).
#[derive(Debug, Default)]
pub struct Book {
    charges: HashMap<String, ChargeRecord>,
    refunds: HashMap<String, RefundRecord>,
    /// Approved refund total per charge request id.
    refunded: HashMap<String, i64>,
    /// Records per channel in decision order, for statements.
    by_channel: HashMap<String, Vec<Event>>,
    /// Decisions made so far; the next reference's serial number.
    decided: u64,
}

impl Book {
    /// The decision for a charge: the remembered one, or `decide()` for a new request id.
    /// `decide` returns the outcome and decline code; the reference is assigned here.
    pub fn charge(
        &self,
        input: ChargeInput,
        now: DateTime<Utc>,
        decide: impl FnOnce() -> (Outcome, String),
    ) -> Result<Decision<ChargeRecord>, BookError> {
        if let Some(existing) = self.charges.get(&input.request_id) {
            return match charge_difference(&existing.input, &input) {
                None => Ok(Decision::Replay(existing.clone())),
                Some(field) => Err(BookError::Conflict {
                    request_id: input.request_id,
                    field,
                }),
            };
        }
        if self.refunds.contains_key(&input.request_id) {
            return Err(BookError::KindConflict {
                request_id: input.request_id,
                other: "refund",
            });
        }
        let (outcome, decline_code) = decide();
        let reference = match outcome {
            Outcome::Approved => self.next_reference(&input.channel_id),
            Outcome::Declined => String::new(),
        };
        Ok(Decision::New(ChargeRecord {
            input,
            outcome,
            reference,
            decline_code,
            decided_at: now,
        }))
    }

    /// The decision for a refund: remembered, or approved if the charge has that much left.
    pub fn refund(
        &self,
        input: RefundInput,
        now: DateTime<Utc>,
    ) -> Result<Decision<RefundRecord>, BookError> {
        if let Some(existing) = self.refunds.get(&input.request_id) {
            return match refund_difference(&existing.input, &input) {
                None => Ok(Decision::Replay(existing.clone())),
                Some(field) => Err(BookError::Conflict {
                    request_id: input.request_id,
                    field,
                }),
            };
        }
        if self.charges.contains_key(&input.request_id) {
            return Err(BookError::KindConflict {
                request_id: input.request_id,
                other: "charge",
            });
        }
        let charge = self
            .charges
            .get(&input.charge_request_id)
            .filter(|c| c.input.channel_id == input.channel_id)
            .ok_or_else(|| BookError::ChargeNotFound(input.charge_request_id.clone()))?;
        if charge.outcome != Outcome::Approved {
            return Err(BookError::ChargeNotApproved(input.charge_request_id.clone()));
        }
        if charge.input.currency != input.currency {
            return Err(BookError::CurrencyMismatch {
                refund: input.currency.clone(),
                charge: charge.input.currency.clone(),
            });
        }
        let charged = charge.input.amount_minor;
        let remaining = charged - self.refunded.get(&input.charge_request_id).copied().unwrap_or(0);
        if input.amount_minor > remaining {
            return Err(BookError::ExceedsCharge {
                requested: input.amount_minor,
                remaining,
                charged,
            });
        }
        let reference = self.next_reference(&input.channel_id);
        Ok(Decision::New(RefundRecord {
            input,
            reference,
            decided_at: now,
        }))
    }

    /// Records a decision (a new one, or one read back from the journal).
    pub fn apply(&mut self, event: Event) {
        self.decided += 1;
        match &event {
            Event::Charge(c) => {
                self.charges.insert(c.input.request_id.clone(), c.clone());
            }
            Event::Refund(r) => {
                *self
                    .refunded
                    .entry(r.input.charge_request_id.clone())
                    .or_default() += r.input.amount_minor;
                self.refunds.insert(r.input.request_id.clone(), r.clone());
            }
        }
        let channel = match &event {
            Event::Charge(c) => c.input.channel_id.clone(),
            Event::Refund(r) => r.input.channel_id.clone(),
        };
        self.by_channel.entry(channel).or_default().push(event);
    }

    /// A decided charge or refund with this request id on this channel.
    pub fn lookup(&self, channel_id: &str, request_id: &str) -> Option<Event> {
        if let Some(c) = self
            .charges
            .get(request_id)
            .filter(|c| c.input.channel_id == channel_id)
        {
            return Some(Event::Charge(c.clone()));
        }
        self.refunds
            .get(request_id)
            .filter(|r| r.input.channel_id == channel_id)
            .map(|r| Event::Refund(r.clone()))
    }

    /// Approved charges and refunds of a channel in one currency decided in `[from, to)`, in
    /// decision order: what goes on its statement.
    pub fn statement(
        &self,
        channel_id: &str,
        currency: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<Event> {
        let in_range = |t: &DateTime<Utc>| *t >= from && *t < to;
        self.by_channel
            .get(channel_id)
            .map(|events| {
                events
                    .iter()
                    .filter(|e| match e {
                        Event::Charge(c) => {
                            c.outcome == Outcome::Approved
                                && c.input.currency == currency
                                && in_range(&c.decided_at)
                        }
                        Event::Refund(r) => r.input.currency == currency && in_range(&r.decided_at),
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How many decisions the book holds.
    pub fn len(&self) -> u64 {
        self.decided
    }

    pub fn is_empty(&self) -> bool {
        self.decided == 0
    }

    /// References look like an acquirer's: channel prefix and a serial number that never repeats
    /// within a book (the journal keeps it across restarts).
    fn next_reference(&self, channel_id: &str) -> String {
        let prefix: String = channel_id
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(4)
            .collect::<String>()
            .to_ascii_uppercase();
        format!("{prefix}{:012}", self.decided + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn charge(id: &str, amount: i64) -> ChargeInput {
        ChargeInput {
            channel_id: "unionpay".into(),
            request_id: id.into(),
            payment_id: format!("p-{id}"),
            amount_minor: amount,
            currency: "CNY".into(),
            method: 1,
            payer_id: "payer-1".into(),
            merchant_id: "m-001".into(),
        }
    }

    fn refund(id: &str, charge: &str, amount: i64) -> RefundInput {
        RefundInput {
            channel_id: "unionpay".into(),
            request_id: id.into(),
            charge_request_id: charge.into(),
            amount_minor: amount,
            currency: "CNY".into(),
        }
    }

    fn approve() -> (Outcome, String) {
        (Outcome::Approved, String::new())
    }

    fn commit<T: Clone>(d: Decision<T>, book: &mut Book, wrap: fn(T) -> Event) -> T {
        match d {
            Decision::New(r) => {
                book.apply(wrap(r.clone()));
                r
            }
            Decision::Replay(_) => panic!("expected a new decision"),
        }
    }

    #[test]
    fn same_request_same_answer_different_body_conflicts() {
        let mut book = Book::default();
        let now = Utc::now();
        let first = commit(
            book.charge(charge("c1", 100), now, approve).unwrap(),
            &mut book,
            Event::Charge,
        );
        assert_eq!(first.reference, "UNIO000000000001");
        let again = book
            .charge(charge("c1", 100), now, || panic!("must not decide twice"))
            .unwrap();
        assert_eq!(again, Decision::Replay(first));
        let err = book.charge(charge("c1", 101), now, approve).unwrap_err();
        assert_eq!(
            err,
            BookError::Conflict {
                request_id: "c1".into(),
                field: "amount"
            }
        );
        let declined = book
            .charge(charge("c2", 5), now, || {
                (Outcome::Declined, "do_not_honor".into())
            })
            .unwrap();
        assert_eq!(declined.record().reference, "");
    }

    #[test]
    fn refunds_are_bounded_by_the_charge() {
        let mut book = Book::default();
        let now = Utc::now();
        commit(
            book.charge(charge("c1", 100), now, approve).unwrap(),
            &mut book,
            Event::Charge,
        );
        commit(
            book.refund(refund("r1", "c1", 60), now).unwrap(),
            &mut book,
            Event::Refund,
        );
        assert_eq!(
            book.refund(refund("r2", "c1", 41), now).unwrap_err(),
            BookError::ExceedsCharge {
                requested: 41,
                remaining: 40,
                charged: 100
            }
        );
        commit(
            book.refund(refund("r2", "c1", 40), now).unwrap(),
            &mut book,
            Event::Refund,
        );
        // A retry of an applied refund is its original answer, not a new over-refund.
        assert!(matches!(
            book.refund(refund("r2", "c1", 40), now),
            Ok(Decision::Replay(_))
        ));
        assert_eq!(
            book.refund(refund("r3", "nope", 1), now).unwrap_err(),
            BookError::ChargeNotFound("nope".into())
        );
        assert!(matches!(
            book.refund(refund("c1", "c1", 1), now),
            Err(BookError::KindConflict { .. })
        ));
        let mut usd = refund("r4", "c1", 1);
        usd.currency = "USD".into();
        assert!(matches!(
            book.refund(usd, now),
            Err(BookError::CurrencyMismatch { .. })
        ));
    }

    #[test]
    fn statement_holds_approved_items_of_the_channel_currency_and_range() {
        let mut book = Book::default();
        let t0 = DateTime::parse_from_rfc3339("2026-11-22T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let t = |s: i64| t0 + chrono::Duration::seconds(s);
        commit(
            book.charge(charge("c1", 100), t(1), approve).unwrap(),
            &mut book,
            Event::Charge,
        );
        commit(
            book.charge(charge("c2", 7), t(2), || (Outcome::Declined, "x".into()))
                .unwrap(),
            &mut book,
            Event::Charge,
        );
        let mut usd = charge("c3", 9);
        usd.currency = "USD".into();
        commit(book.charge(usd, t(3), approve).unwrap(), &mut book, Event::Charge);
        commit(
            book.refund(refund("r1", "c1", 30), t(4)).unwrap(),
            &mut book,
            Event::Refund,
        );
        commit(
            book.charge(charge("c4", 50), t(10), approve).unwrap(),
            &mut book,
            Event::Charge,
        );
        let ids: Vec<String> = book
            .statement("unionpay", "CNY", t(0), t(10))
            .iter()
            .map(|e| match e {
                Event::Charge(c) => c.input.request_id.clone(),
                Event::Refund(r) => r.input.request_id.clone(),
            })
            .collect();
        assert_eq!(ids, ["c1", "r1"]);
        assert!(book.statement("wallet", "CNY", t(0), t(100)).is_empty());
        assert_eq!(book.len(), 5);
    }
}
