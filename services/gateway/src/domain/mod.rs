//! Pure payment logic, no I/O: request validation and idempotency fingerprints, the payment saga
//! as a state machine, refunds, and the ledger transfers each step sends.

pub mod ledger;
pub mod payment;
pub mod refund;
pub mod saga;

pub use payment::{MerchantRegistry, NewPayment, Status};
pub use saga::{Action, Mode, Outcome, Revision, SagaState, Step};
