//! The service's one error type and its one mapping to gRPC status.

use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::NoRoute;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input: INVALID_ARGUMENT with one field violation each.
    #[error("invalid argument")]
    InvalidArgument(payplane_core::Violations),
    #[error("{what} `{id}` not found")]
    NotFound { what: &'static str, id: String },
    /// No channel can serve the payment: FAILED_PRECONDITION naming why.
    #[error("{0}")]
    NoRoute(NoRoute),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidArgument(v) => v.into_status(),
            Error::NotFound { .. } => tonic::Status::not_found(e.to_string()),
            Error::NoRoute(no_route) => {
                let mut details = ErrorDetails::new();
                details.set_error_info(
                    no_route.kind.code(),
                    "routing.payplane",
                    std::collections::HashMap::new(),
                );
                for (channel, why) in &no_route.channels {
                    details.add_precondition_failure_violation("CHANNEL", channel.clone(), why.clone());
                }
                tonic::Status::with_error_details(
                    tonic::Code::FailedPrecondition,
                    no_route.to_string(),
                    details,
                )
            }
            Error::Internal(cause) => {
                tracing::error!(cause = %cause, "internal error");
                tonic::Status::internal("internal error")
            }
        }
    }
}
