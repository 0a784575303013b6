//! Refunds: how much may still be refunded, and the refund saga.
//!
//! ```text
//! ACCEPTED --channel refund--> CHARGED --ledger clearing→payer--> POSTED --settlement item--> DONE (SUCCEEDED)
//!     \--declined--> DONE (FAILED, the reserved amount is released)
//! ```
//!
//! The amount is reserved on the payment when the refund is accepted (so that two concurrent
//! refunds can never exceed it) and released if the channel declines. Unlike a charge, a refund
//! is always wanted once accepted, so the recovery loop simply re-sends each step (idempotent by
//! ids derived from the refund id).

use super::{Status, payment::slug, saga::Step};

/// What may still be refunded of `amount` when `reserved` is already refunded or being refunded.
pub fn amount_left(amount: i64, reserved: i64) -> i64 {
    (amount - reserved).max(0)
}

/// Why a refund of `requested` cannot be accepted, if it cannot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefundRefusal {
    NotSucceeded(Status),
    ExceedsLeft { left: i64 },
    NothingLeft,
}

/// Checks a refund of `requested` (None = all that is left) against the payment; returns the
/// amount to refund.
pub fn admit(
    status: Status,
    amount: i64,
    reserved: i64,
    requested: Option<i64>,
) -> Result<i64, RefundRefusal> {
    if status != Status::Succeeded {
        return Err(RefundRefusal::NotSucceeded(status));
    }
    let left = amount_left(amount, reserved);
    match requested {
        None if left == 0 => Err(RefundRefusal::NothingLeft),
        None => Ok(left),
        Some(r) if r > left => Err(RefundRefusal::ExceedsLeft { left }),
        Some(r) => Ok(r),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefundAction {
    ChannelRefund,
    LedgerTransfer,
    RecordCleared,
    Nothing,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefundOutcome {
    Approved { reference: String },
    Declined { code: String },
    Transferred,
    Recorded,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefundState {
    pub step: Step,
    pub status: Status,
    pub channel_reference: String,
    pub failure_reason: String,
}

pub fn next_refund_action(state: &RefundState) -> RefundAction {
    match state.step {
        Step::Accepted => RefundAction::ChannelRefund,
        Step::Charged => RefundAction::LedgerTransfer,
        Step::Posted => RefundAction::RecordCleared,
        _ => RefundAction::Nothing,
    }
}

/// The state after `outcome`; `None` when the outcome cannot follow the state (a bug).
pub fn apply_refund(state: &RefundState, outcome: RefundOutcome) -> Option<RefundState> {
    let mut next = state.clone();
    match (state.step, outcome) {
        (Step::Accepted, RefundOutcome::Approved { reference }) => {
            next.step = Step::Charged;
            next.channel_reference = reference;
        }
        (Step::Accepted, RefundOutcome::Declined { code }) => {
            next.step = Step::Done;
            next.status = Status::Failed;
            next.failure_reason = format!("declined:{}", slug(&code));
        }
        (Step::Charged, RefundOutcome::Transferred) => next.step = Step::Posted,
        (Step::Posted, RefundOutcome::Recorded) => {
            next.step = Step::Done;
            next.status = Status::Succeeded;
        }
        _ => return None,
    }
    Some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_full_and_partial_refunds_up_to_what_is_left() {
        assert_eq!(admit(Status::Succeeded, 1000, 0, None), Ok(1000));
        assert_eq!(admit(Status::Succeeded, 1000, 300, None), Ok(700));
        assert_eq!(admit(Status::Succeeded, 1000, 300, Some(700)), Ok(700));
        assert_eq!(
            admit(Status::Succeeded, 1000, 300, Some(701)),
            Err(RefundRefusal::ExceedsLeft { left: 700 })
        );
        assert_eq!(
            admit(Status::Succeeded, 1000, 1000, None),
            Err(RefundRefusal::NothingLeft)
        );
        assert_eq!(
            admit(Status::Failed, 1000, 0, None),
            Err(RefundRefusal::NotSucceeded(Status::Failed))
        );
    }

    #[test]
    fn refund_saga_runs_to_the_end_or_fails_on_decline() {
        let mut s = RefundState {
            step: Step::Accepted,
            status: Status::Pending,
            channel_reference: String::new(),
            failure_reason: String::new(),
        };
        let declined = apply_refund(
            &s,
            RefundOutcome::Declined {
                code: "Too late".into(),
            },
        )
        .unwrap();
        assert_eq!(
            (declined.status, declined.failure_reason.as_str()),
            (Status::Failed, "declined:too_late")
        );
        assert_eq!(next_refund_action(&declined), RefundAction::Nothing);
        for (action, outcome) in [
            (
                RefundAction::ChannelRefund,
                RefundOutcome::Approved {
                    reference: "r".into(),
                },
            ),
            (RefundAction::LedgerTransfer, RefundOutcome::Transferred),
            (RefundAction::RecordCleared, RefundOutcome::Recorded),
        ] {
            assert_eq!(next_refund_action(&s), action);
            assert_eq!(
                apply_refund(&s, RefundOutcome::Recorded).is_some(),
                action == RefundAction::RecordCleared
            );
            s = apply_refund(&s, outcome).unwrap();
        }
        assert_eq!(
            (s.step, s.status, s.channel_reference.as_str()),
            (Step::Done, Status::Succeeded, "r")
        );
        assert_eq!(next_refund_action(&s), RefundAction::Nothing);
    }
}
