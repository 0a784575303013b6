//! The service's one error type and its one mapping to gRPC status codes.

use payplane_core::Violations;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input: INVALID_ARGUMENT with one field violation per problem.
    #[error("invalid argument")]
    InvalidArgument(Violations),
    /// The database or the service is (for now) unreachable; the caller retries with the same ids.
    #[error("unavailable: {0}")]
    Unavailable(&'static str),
    /// Anything else; the cause is logged, never returned.
    #[error("database: {0}")]
    Database(String),
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Self::from(&e)
    }
}

impl From<&sqlx::Error> for Error {
    fn from(e: &sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                Self::Unavailable("database unavailable")
            }
            other => Self::Database(other.to_string()),
        }
    }
}

impl From<Violations> for Error {
    fn from(v: Violations) -> Self {
        Self::InvalidArgument(v)
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidArgument(v) => v.into_status(),
            Error::Unavailable(what) => {
                tracing::warn!(what, "unavailable");
                tonic::Status::unavailable(what)
            }
            Error::Database(cause) => {
                tracing::error!(%cause, "internal error");
                tonic::Status::internal("internal error")
            }
        }
    }
}
