//! The crate's single error type.

use std::net::SocketAddr;

/// Everything that can go wrong while starting, running or stopping a service's runtime.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot bind the {what} listener on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },

    #[error("the gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),

    #[error("the admin HTTP server failed: {0}")]
    Admin(#[source] std::io::Error),

    #[error("reflection: invalid file descriptor set: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),

    #[error("cannot build the OTLP span exporter: {0}")]
    OtlpExporter(#[from] opentelemetry_otlp::ExporterBuildError),

    #[error("invalid log filter '{filter}': {source}")]
    LogFilter {
        filter: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },

    #[error("a global tracing subscriber is already installed: {0}")]
    Subscriber(#[from] tracing_subscriber::util::TryInitError),

    #[error("invalid target '{target}': {reason}")]
    InvalidTarget { target: String, reason: String },

    #[error("invalid endpoint for {addr}: {source}")]
    Endpoint {
        addr: SocketAddr,
        #[source]
        source: tonic::transport::Error,
    },

    #[error("{0} must be called from within a Tokio runtime")]
    NoRuntime(&'static str),

    #[cfg(feature = "postgres")]
    #[error("cannot connect to PostgreSQL: {0}")]
    Database(#[from] sqlx::Error),

    #[cfg(feature = "postgres")]
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
