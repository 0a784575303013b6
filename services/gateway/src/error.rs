//! The gateway's one error type and its one mapping to a gRPC status.

use payplane_core::Violations;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid request")]
    Invalid(Violations),

    #[error("{0}")]
    NotFound(String),

    /// The idempotency key was used before with another body.
    #[error("idempotency key {key:?} was already used with a different {field}")]
    IdempotencyConflict { key: String, field: &'static str },

    /// A business rule refuses the request (refund above what is left, refund of an unpaid payment).
    #[error("{0}")]
    Precondition(String),

    #[error("database: {0}")]
    Database(#[from] sqlx::Error),

    /// A downstream answer that the saga cannot explain (a bug somewhere): logged, never retried
    /// into success.
    #[error("anomaly: {0}")]
    Anomaly(String),

    #[error(transparent)]
    Unexpected(#[from] crate::domain::saga::Unexpected),
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        match e {
            Error::Invalid(v) => v.into_status(),
            Error::NotFound(m) => tonic::Status::not_found(m),
            e @ Error::IdempotencyConflict { .. } => tonic::Status::already_exists(e.to_string()),
            Error::Precondition(m) => tonic::Status::failed_precondition(m),
            e @ (Error::Database(_) | Error::Anomaly(_) | Error::Unexpected(_)) => {
                tracing::error!(error = %e, "internal error");
                tonic::Status::internal("internal error")
            }
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
