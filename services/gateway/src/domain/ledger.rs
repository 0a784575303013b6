//! The ledger events of a payment (see `payplane_core::accounts` for the chart of accounts) and
//! what the ledger's per-event results mean for the saga. Every body is a pure function of the
//! persisted payment, so that a retry sends exactly the same event (anything else would be
//! `EXISTS_WITH_DIFFERENT_*`).

use payplane_core::{
    Currency,
    accounts::{AccountRef, transfer_code},
    ids::{self, Step as IdStep},
};
use payplane_proto::accounting::v1::{
    Account, CreateTransferError, CreateTransferResult, Transfer, TransferFlags,
};
use uuid::Uuid;

/// What the ledger needs to know about a payment.
#[derive(Clone, Debug)]
pub struct PaymentLegs<'a> {
    pub payment_id: Uuid,
    pub payer_id: &'a str,
    pub channel_id: &'a str,
    pub currency: Currency,
    pub amount: i64,
    pub fee: i64,
    pub hold_timeout_secs: u32,
}

impl PaymentLegs<'_> {
    pub fn payer(&self) -> AccountRef {
        AccountRef::payer(self.payer_id, self.currency)
    }

    pub fn clearing(&self) -> AccountRef {
        AccountRef::clearing(self.channel_id, self.currency)
    }

    /// The accounts the payment's transfers touch.
    pub fn accounts(&self) -> Vec<AccountRef> {
        let mut refs = vec![self.payer(), self.clearing()];
        if self.fee > 0 {
            refs.push(AccountRef::fees(self.currency));
        }
        refs
    }

    pub fn hold_id(&self) -> Uuid {
        ids::derive(self.payment_id, IdStep::Hold)
    }

    pub fn post_id(&self) -> Uuid {
        ids::derive(self.payment_id, IdStep::Post)
    }

    pub fn fee_id(&self) -> Uuid {
        ids::derive(self.payment_id, IdStep::Fee)
    }

    pub fn void_id(&self) -> Uuid {
        ids::derive(self.payment_id, IdStep::Void)
    }

    /// The pending transfer payer → clearing that reserves the amount.
    pub fn hold(&self) -> Transfer {
        Transfer {
            id: self.hold_id().to_string(),
            debit_account_id: self.payer().id().to_string(),
            credit_account_id: self.clearing().id().to_string(),
            amount: self.amount as u64,
            user_data_128: self.payment_id.to_string(),
            timeout: self.hold_timeout_secs,
            ledger: self.currency.ledger(),
            code: transfer_code::PAYMENT,
            flags: Some(TransferFlags {
                pending: true,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Posts the hold in full and, linked with it, the fee leg clearing → fees: both or neither.
    pub fn post_batch(&self) -> Vec<Transfer> {
        let with_fee = self.fee > 0;
        let post = Transfer {
            id: self.post_id().to_string(),
            debit_account_id: self.payer().id().to_string(),
            credit_account_id: self.clearing().id().to_string(),
            amount: self.amount as u64,
            pending_id: self.hold_id().to_string(),
            user_data_128: self.payment_id.to_string(),
            ledger: self.currency.ledger(),
            code: transfer_code::PAYMENT,
            flags: Some(TransferFlags {
                post_pending_transfer: true,
                linked: with_fee,
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut batch = vec![post];
        if with_fee {
            batch.push(Transfer {
                id: self.fee_id().to_string(),
                debit_account_id: self.clearing().id().to_string(),
                credit_account_id: AccountRef::fees(self.currency).id().to_string(),
                amount: self.fee as u64,
                user_data_128: self.payment_id.to_string(),
                ledger: self.currency.ledger(),
                code: transfer_code::FEE,
                ..Default::default()
            });
        }
        batch
    }

    /// Voids the hold (amount 0 = the pending amount).
    pub fn void(&self) -> Transfer {
        Transfer {
            id: self.void_id().to_string(),
            debit_account_id: self.payer().id().to_string(),
            credit_account_id: self.clearing().id().to_string(),
            pending_id: self.hold_id().to_string(),
            user_data_128: self.payment_id.to_string(),
            ledger: self.currency.ledger(),
            code: transfer_code::PAYMENT,
            flags: Some(TransferFlags {
                void_pending_transfer: true,
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// The refund transfer clearing → payer.
pub fn refund_transfer(legs: &PaymentLegs<'_>, refund_id: Uuid, amount: i64) -> Transfer {
    Transfer {
        id: ids::derive(refund_id, IdStep::RefundTransfer).to_string(),
        debit_account_id: legs.clearing().id().to_string(),
        credit_account_id: legs.payer().id().to_string(),
        amount: amount as u64,
        user_data_128: legs.payment_id.to_string(),
        ledger: legs.currency.ledger(),
        code: transfer_code::REFUND,
        ..Default::default()
    }
}

/// An account as the gateway creates it: no balance limits (a payer's funding source and the
/// clearing accounts legitimately go either way).
pub fn account(r: &AccountRef) -> Account {
    Account {
        id: r.id().to_string(),
        ledger: r.ledger(),
        code: r.kind.code(),
        ..Default::default()
    }
}

/// `CREATE_TRANSFER_RESULT_PENDING_TRANSFER_EXPIRED` → `pending_transfer_expired`.
pub fn result_code(result: i32) -> String {
    match CreateTransferResult::try_from(result) {
        Ok(r) => r
            .as_str_name()
            .trim_start_matches("CREATE_TRANSFER_RESULT_")
            .to_ascii_lowercase(),
        Err(_) => format!("result_{result}"),
    }
}

fn result_at(errors: &[CreateTransferError], index: u32) -> Option<CreateTransferResult> {
    errors
        .iter()
        .find(|e| e.index == index)
        .map(|e| CreateTransferResult::try_from(e.result).unwrap_or(CreateTransferResult::Unspecified))
}

/// What the ledger's answer to a hold means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HoldResult {
    Held,
    /// An account is missing: create the accounts (the cache was stale) and retry.
    AccountsMissing,
    /// A business rule refused it; nothing is held.
    Rejected(String),
    /// The same id with another body: a bug, never retried into success.
    Anomaly(String),
}

pub fn classify_hold(errors: &[CreateTransferError]) -> HoldResult {
    use CreateTransferResult as R;
    match result_at(errors, 0) {
        None | Some(R::Exists) => HoldResult::Held,
        Some(R::DebitAccountNotFound | R::CreditAccountNotFound) => HoldResult::AccountsMissing,
        Some(
            r @ (R::ExistsWithDifferentFlags
            | R::ExistsWithDifferentPendingId
            | R::ExistsWithDifferentTimeout
            | R::ExistsWithDifferentDebitAccountId
            | R::ExistsWithDifferentCreditAccountId
            | R::ExistsWithDifferentAmount
            | R::ExistsWithDifferentUserData128
            | R::ExistsWithDifferentUserData64
            | R::ExistsWithDifferentUserData32
            | R::ExistsWithDifferentLedger
            | R::ExistsWithDifferentCode),
        ) => HoldResult::Anomaly(result_code(r as i32)),
        Some(r) => HoldResult::Rejected(result_code(r as i32)),
    }
}

/// What the ledger's answer to the post batch means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PostResult {
    Posted,
    /// The hold can no longer be posted: the charge must be compensated.
    Rejected(String),
    Anomaly(String),
}

pub fn classify_post(errors: &[CreateTransferError], batch_len: usize) -> PostResult {
    use CreateTransferResult as R;
    let results: Vec<Option<R>> = (0..batch_len as u32).map(|i| result_at(errors, i)).collect();
    // The events are only ever created together, so one of them existing means the batch was
    // applied by an earlier attempt.
    if results.iter().all(Option::is_none) || results.contains(&Some(R::Exists)) {
        return PostResult::Posted;
    }
    match results[0] {
        Some(
            r @ (R::PendingTransferExpired
            | R::PendingTransferAlreadyVoided
            | R::PendingTransferNotFound
            | R::IdAlreadyFailed),
        ) => PostResult::Rejected(result_code(r as i32)),
        Some(R::LinkedEventFailed) | None => {
            let other = results
                .iter()
                .skip(1)
                .flatten()
                .find(|r| **r != R::LinkedEventFailed);
            PostResult::Anomaly(
                other.map_or_else(|| "linked_event_failed".into(), |r| result_code(*r as i32)),
            )
        }
        Some(r) => PostResult::Anomaly(result_code(r as i32)),
    }
}

/// What the ledger's answer to a void means: `Ok` once the hold no longer holds money.
pub fn classify_void(errors: &[CreateTransferError]) -> Result<(), String> {
    use CreateTransferResult as R;
    match result_at(errors, 0) {
        // Not found: the hold never reached the ledger. Expired: the ledger released it.
        // Already failed: an earlier void attempt met one of these.
        None
        | Some(
            R::Exists
            | R::PendingTransferAlreadyVoided
            | R::PendingTransferExpired
            | R::PendingTransferNotFound
            | R::IdAlreadyFailed,
        ) => Ok(()),
        Some(r) => Err(result_code(r as i32)),
    }
}

/// A plain transfer (refund): created now or before.
pub fn classify_single(errors: &[CreateTransferError]) -> Result<(), String> {
    match result_at(errors, 0) {
        None | Some(CreateTransferResult::Exists) => Ok(()),
        Some(r) => Err(result_code(r as i32)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn legs(fee: i64) -> PaymentLegs<'static> {
        PaymentLegs {
            payment_id: Uuid::parse_str("0190f3c2-7d1e-7a3b-9c4d-5e6f708192a3").unwrap(),
            payer_id: "p-1",
            channel_id: "unionpay",
            currency: "CNY".parse().unwrap(),
            amount: 1000,
            fee,
            hold_timeout_secs: 300,
        }
    }

    fn err(index: u32, r: CreateTransferResult) -> CreateTransferError {
        CreateTransferError {
            index,
            result: r as i32,
        }
    }

    #[test]
    fn bodies_are_deterministic_and_balanced() {
        let l = legs(12);
        assert_eq!(l.hold(), legs(12).hold());
        let hold = l.hold();
        assert!(hold.flags.as_ref().unwrap().pending);
        assert_eq!((hold.amount, hold.timeout, hold.ledger), (1000, 300, 156));
        let batch = l.post_batch();
        assert_eq!(batch.len(), 2);
        assert!(
            batch[0].flags.as_ref().unwrap().linked && batch[0].flags.as_ref().unwrap().post_pending_transfer
        );
        assert_eq!(batch[0].pending_id, hold.id);
        assert_eq!(
            batch[1].debit_account_id, hold.credit_account_id,
            "fee comes out of clearing"
        );
        assert_eq!(batch[1].amount, 12);
        assert_eq!(legs(0).post_batch().len(), 1);
        assert!(
            !legs(0).post_batch()[0].flags.as_ref().unwrap().linked,
            "a lone event must not open a chain"
        );
        assert_eq!(l.accounts().len(), 3);
        let ids: std::collections::HashSet<_> = [l.hold_id(), l.post_id(), l.fee_id(), l.void_id()].into();
        assert_eq!(ids.len(), 4);
    }

    #[test]
    fn classifies_hold_results() {
        use CreateTransferResult as R;
        assert_eq!(classify_hold(&[]), HoldResult::Held);
        assert_eq!(classify_hold(&[err(0, R::Exists)]), HoldResult::Held);
        assert_eq!(
            classify_hold(&[err(0, R::DebitAccountNotFound)]),
            HoldResult::AccountsMissing
        );
        assert_eq!(
            classify_hold(&[err(0, R::ExceedsCredits)]),
            HoldResult::Rejected("exceeds_credits".into())
        );
        assert!(matches!(
            classify_hold(&[err(0, R::ExistsWithDifferentTimeout)]),
            HoldResult::Anomaly(_)
        ));
    }

    #[test]
    fn classifies_post_results() {
        use CreateTransferResult as R;
        assert_eq!(classify_post(&[], 2), PostResult::Posted);
        assert_eq!(
            classify_post(&[err(0, R::Exists), err(1, R::LinkedEventFailed)], 2),
            PostResult::Posted
        );
        assert_eq!(
            classify_post(&[err(0, R::LinkedEventFailed), err(1, R::Exists)], 2),
            PostResult::Posted
        );
        assert_eq!(
            classify_post(
                &[err(0, R::PendingTransferExpired), err(1, R::LinkedEventFailed)],
                2
            ),
            PostResult::Rejected("pending_transfer_expired".into())
        );
        assert_eq!(
            classify_post(&[err(0, R::IdAlreadyFailed)], 1),
            PostResult::Rejected("id_already_failed".into())
        );
        assert_eq!(
            classify_post(
                &[err(0, R::LinkedEventFailed), err(1, R::CreditAccountNotFound)],
                2
            ),
            PostResult::Anomaly("credit_account_not_found".into())
        );
        assert!(matches!(
            classify_post(&[err(0, R::PendingTransferAlreadyPosted)], 1),
            PostResult::Anomaly(_)
        ));
    }

    #[test]
    fn classifies_void_results() {
        use CreateTransferResult as R;
        for ok in [
            R::Exists,
            R::PendingTransferExpired,
            R::PendingTransferNotFound,
            R::PendingTransferAlreadyVoided,
        ] {
            assert_eq!(classify_void(&[err(0, ok)]), Ok(()), "{ok:?}");
        }
        assert_eq!(
            classify_void(&[err(0, R::PendingTransferAlreadyPosted)]),
            Err("pending_transfer_already_posted".into())
        );
    }
}
