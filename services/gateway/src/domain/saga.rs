//! The payment saga as a state machine: given a payment's persisted state, what to do next
//! ([`next_action`]); given the outcome of that action, the state to persist ([`apply`]).
//!
//! ```text
//! ACCEPTED --route--> ROUTED --hold--> HELD --charge--> CHARGED --post+fee--> POSTED --record--> DONE (SUCCEEDED)
//!    |                  |                 \--decline--> DECLINED --void----> DONE (FAILED)
//!    \--no route-----> DONE (FAILED)      \--rejected-> DONE (FAILED)
//! ```
//!
//! A live request and the recovery loop walk the same machine but act differently where the
//! past is uncertain: after a crash the loop never sends a new charge; it asks the channel what
//! it decided (`GetCharge`), and compensates (voids the hold) anything that was not charged.
//! Every action is idempotent downstream (ids derived from the payment id), so re-running the
//! action of a persisted step after a crash is always safe.

use std::fmt;

use super::payment::{Status, slug};

/// Where a payment is in the saga; the numbers are those of `PaymentStep`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    Accepted,
    Routed,
    Held,
    Charged,
    Declined,
    Posted,
    Voided,
    SettlementRecorded,
    Done,
}

impl Step {
    pub const ALL: [Step; 9] = [
        Step::Accepted,
        Step::Routed,
        Step::Held,
        Step::Charged,
        Step::Declined,
        Step::Posted,
        Step::Voided,
        Step::SettlementRecorded,
        Step::Done,
    ];

    pub fn code(self) -> i16 {
        match self {
            Step::Accepted => 1,
            Step::Routed => 2,
            Step::Held => 3,
            Step::Charged => 4,
            Step::Declined => 5,
            Step::Posted => 6,
            Step::Voided => 7,
            Step::SettlementRecorded => 8,
            Step::Done => 9,
        }
    }

    pub fn from_code(code: i16) -> Option<Self> {
        Step::ALL.into_iter().find(|s| s.code() == code)
    }

    pub fn name(self) -> &'static str {
        match self {
            Step::Accepted => "accepted",
            Step::Routed => "routed",
            Step::Held => "held",
            Step::Charged => "charged",
            Step::Declined => "declined",
            Step::Posted => "posted",
            Step::Voided => "voided",
            Step::SettlementRecorded => "settlement_recorded",
            Step::Done => "done",
        }
    }
}

/// The part of a payment the saga changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SagaState {
    pub step: Step,
    pub status: Status,
    pub channel_id: String,
    /// Fee in minor units, fixed when routed (the post batch must be identical on every retry).
    pub fee: i64,
    pub channel_reference: String,
    /// For FAILED: why. At CHARGED, a non-empty reason means the hold could not be posted and the
    /// approved charge must be refunded at the channel.
    pub failure_reason: String,
}

impl SagaState {
    pub fn accepted() -> Self {
        Self {
            step: Step::Accepted,
            status: Status::Pending,
            channel_id: String::new(),
            fee: 0,
            channel_reference: String::new(),
            failure_reason: String::new(),
        }
    }

    pub fn is_final(&self) -> bool {
        self.step == Step::Done
    }
}

/// Who is driving: the request that created the payment, or the recovery loop after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Live,
    Recovery,
}

/// How a version persists the end of the saga. Revision 1 (N-1) writes VOIDED and
/// SETTLEMENT_RECORDED as their own steps and finishes with one more write; revision 2 writes the
/// final state at once. Each revision finishes payments the other left at any step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Revision {
    V1,
    V2,
}

/// The next thing to do for a payment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// `RoutingService.Route`.
    Route,
    /// Create the accounts if needed, then the pending transfer (the hold).
    Hold,
    /// `ChannelService.Charge` (live only).
    Charge,
    /// `ChannelService.GetCharge`: what the channel decided (recovery).
    ResolveCharge,
    /// Post the hold and the fee leg as one linked batch.
    Post,
    /// Void the hold.
    Void,
    /// `SettlementService.RecordCleared`.
    RecordCleared,
    /// Refund an approved charge whose hold could no longer be posted.
    CompensateCharge,
    /// Nothing happened downstream that needs undoing: fail the payment (recovery of ACCEPTED).
    Abandon,
    /// Persist the final status; no call.
    Finish,
    /// The payment is final.
    Nothing,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Route => "route",
            Action::Hold => "hold",
            Action::Charge => "charge",
            Action::ResolveCharge => "resolve_charge",
            Action::Post => "post",
            Action::Void => "void",
            Action::RecordCleared => "record_cleared",
            Action::CompensateCharge => "compensate_charge",
            Action::Abandon => "abandon",
            Action::Finish => "finish",
            Action::Nothing => "nothing",
        }
    }
}

/// What an action came to. Transient failures (unavailable, deadline) are not outcomes: the
/// state stays as it is and the action is retried, by the request or by the recovery loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Routed {
        channel_id: String,
        fee: i64,
    },
    /// Routing answered that no channel can take the payment.
    NoRoute {
        reason: String,
    },
    /// Routing could not be reached within the budget (live); nothing was sent anywhere else.
    RoutingUnavailable,
    /// The hold exists (created now or before).
    Held,
    /// The ledger refused the hold (a business rule); nothing is held.
    HoldRejected {
        code: String,
    },
    Approved {
        reference: String,
    },
    Declined {
        code: String,
    },
    /// The channel has no record of the charge: it never happened.
    NotCharged,
    /// The hold and the fee leg are posted (now or before).
    Posted,
    /// The hold can no longer be posted (expired or voided).
    PostRejected {
        code: String,
    },
    /// The hold is no longer pending (voided now or before, or expired).
    Voided,
    /// The settlement item is recorded (now or before).
    Recorded,
    /// The charge was refunded at the channel.
    Compensated,
    Abandoned,
    Finished,
}

/// An outcome that cannot follow the action of the state it was applied to: a bug, never a
/// downstream answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unexpected {
    pub step: Step,
    pub outcome: Outcome,
}

impl fmt::Display for Unexpected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "outcome {:?} cannot follow step {}",
            self.outcome,
            self.step.name()
        )
    }
}

impl std::error::Error for Unexpected {}

/// The action for `state` in `mode`.
pub fn next_action(state: &SagaState, mode: Mode) -> Action {
    match (state.step, mode) {
        (Step::Accepted, Mode::Live) => Action::Route,
        // Only Route may have run, which moves nothing: fail without calling anyone.
        (Step::Accepted, Mode::Recovery) => Action::Abandon,
        (Step::Routed, Mode::Live) => Action::Hold,
        // The hold may or may not exist; it was never charged against: release it.
        (Step::Routed, Mode::Recovery) => Action::Void,
        (Step::Held, Mode::Live) => Action::Charge,
        (Step::Held, Mode::Recovery) => Action::ResolveCharge,
        (Step::Charged, _) if state.failure_reason.is_empty() => Action::Post,
        (Step::Charged, _) => Action::CompensateCharge,
        (Step::Declined, _) => Action::Void,
        (Step::Posted, _) => Action::RecordCleared,
        (Step::Voided | Step::SettlementRecorded, _) => Action::Finish,
        (Step::Done, _) => Action::Nothing,
    }
}

/// The state after `outcome` of the action of `state`.
pub fn apply(state: &SagaState, outcome: Outcome, revision: Revision) -> Result<SagaState, Unexpected> {
    let mut next = state.clone();
    let fail = |next: &mut SagaState, reason: String| {
        next.step = Step::Done;
        next.status = Status::Failed;
        next.failure_reason = reason;
    };
    match (state.step, outcome) {
        (Step::Accepted, Outcome::Routed { channel_id, fee }) => {
            next.step = Step::Routed;
            next.channel_id = channel_id;
            next.fee = fee;
        }
        (Step::Accepted, Outcome::NoRoute { reason }) => {
            fail(&mut next, format!("no_route:{}", slug(&reason)))
        }
        (Step::Accepted, Outcome::RoutingUnavailable) => fail(&mut next, "routing_unavailable".into()),
        (Step::Accepted, Outcome::Abandoned) => fail(&mut next, "interrupted:before_hold".into()),
        (Step::Routed, Outcome::Held) => next.step = Step::Held,
        (Step::Routed, Outcome::HoldRejected { code }) => {
            fail(&mut next, format!("ledger_rejected:{}", slug(&code)))
        }
        (Step::Routed, Outcome::Voided) => {
            next.failure_reason = "interrupted:before_charge".into();
            finish_failed(&mut next, revision);
        }
        (Step::Held, Outcome::Approved { reference }) => {
            next.step = Step::Charged;
            next.channel_reference = reference;
        }
        (Step::Held, Outcome::Declined { code }) => {
            next.step = Step::Declined;
            next.failure_reason = format!("declined:{}", slug(&code));
        }
        (Step::Held, Outcome::NotCharged) => {
            next.step = Step::Declined;
            next.failure_reason = "interrupted:not_charged".into();
        }
        (Step::Charged, Outcome::Posted) if state.failure_reason.is_empty() => next.step = Step::Posted,
        (Step::Charged, Outcome::PostRejected { code }) if state.failure_reason.is_empty() => {
            next.failure_reason = format!("hold_expired:{}", slug(&code));
        }
        (Step::Charged, Outcome::Compensated) if !state.failure_reason.is_empty() => {
            next.step = Step::Done;
            next.status = Status::Failed;
        }
        (Step::Declined, Outcome::Voided) => finish_failed(&mut next, revision),
        (Step::Posted, Outcome::Recorded) => match revision {
            Revision::V1 => next.step = Step::SettlementRecorded,
            Revision::V2 => {
                next.step = Step::Done;
                next.status = Status::Succeeded;
            }
        },
        (Step::Voided, Outcome::Finished) => {
            next.step = Step::Done;
            next.status = Status::Failed;
        }
        (Step::SettlementRecorded, Outcome::Finished) => {
            next.step = Step::Done;
            next.status = Status::Succeeded;
        }
        (step, outcome) => return Err(Unexpected { step, outcome }),
    }
    Ok(next)
}

fn finish_failed(next: &mut SagaState, revision: Revision) {
    match revision {
        Revision::V1 => next.step = Step::Voided,
        Revision::V2 => {
            next.step = Step::Done;
            next.status = Status::Failed;
        }
    }
}

#[cfg(test)]
mod tests;
