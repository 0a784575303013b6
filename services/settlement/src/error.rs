//! The crate's one error type and its one mapping to a gRPC status.

use payplane_core::Violations;

use crate::domain::{Overflow, statement::StatementError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad request fields: INVALID_ARGUMENT with field violations.
    #[error("invalid request")]
    Invalid(Violations),
    /// A malformed statement: INVALID_ARGUMENT naming the line and the reason.
    #[error("malformed statement: {0}")]
    Statement(#[from] StatementError),
    #[error("{0}")]
    NotFound(String),
    /// A business rule (closing a closed window, accounting refused the postings, ...).
    #[error("{0}")]
    FailedPrecondition(String),
    /// Same id, different body.
    #[error("{0}")]
    AlreadyExists(String),
    /// Accounting could not be reached: the outcome of the postings is unknown, retry.
    #[error("{0}")]
    Unavailable(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Overflow(#[from] Overflow),
    #[error("internal: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(field: &str, description: impl Into<String>) -> Self {
        let mut v = Violations::new();
        v.add(field, description);
        Error::Invalid(v)
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        match e {
            Error::Invalid(v) => v.into_status(),
            Error::Statement(s) => {
                let mut v = Violations::new();
                v.add("document", s.to_string());
                v.into_status()
            }
            Error::NotFound(m) => tonic::Status::not_found(m),
            Error::FailedPrecondition(m) => tonic::Status::failed_precondition(m),
            Error::AlreadyExists(m) => tonic::Status::already_exists(m),
            Error::Unavailable(m) => tonic::Status::unavailable(m),
            Error::Overflow(o) => tonic::Status::failed_precondition(o.to_string()),
            Error::Database(_) | Error::Internal(_) => {
                tracing::error!(error = %e, "internal error");
                tonic::Status::internal("internal error")
            }
        }
    }
}
