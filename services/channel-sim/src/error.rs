//! The simulator's one error type and its gRPC status.

use payplane_core::Violations;
use tonic::Status;

use crate::{domain::book::BookError, store::journal::JournalError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid request")]
    Invalid(Violations),
    #[error("unknown channel {0:?}")]
    UnknownChannel(String),
    #[error("channel {0} is in an outage")]
    Outage(String),
    #[error("channel {0} is temporarily unavailable (injected error)")]
    Injected(String),
    #[error(transparent)]
    Book(#[from] BookError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("cannot render the statement: {0}")]
    Statement(String),
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match e {
            Error::Invalid(v) => v.into_status(),
            Error::UnknownChannel(_) => Status::not_found(e.to_string()),
            Error::Outage(_) | Error::Injected(_) => Status::unavailable(e.to_string()),
            Error::Book(b) => match b {
                BookError::Conflict { .. } | BookError::KindConflict { .. } => {
                    Status::already_exists(b.to_string())
                }
                BookError::ChargeNotFound(_) => Status::not_found(b.to_string()),
                BookError::ChargeNotApproved(_)
                | BookError::CurrencyMismatch { .. }
                | BookError::ExceedsCharge { .. } => Status::failed_precondition(b.to_string()),
            },
            Error::Journal(_) | Error::Statement(_) => {
                tracing::error!(error = %e, "internal error");
                Status::internal("internal error")
            }
        }
    }
}
