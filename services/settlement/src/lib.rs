//! Settlement: cleared items grouped into windows per channel and currency, net positions,
//! pacs.009-shaped instructions, camt.053-shaped statement reconciliation, and the settlement
//! postings to accounting. See README.md for the documents' shapes.

pub mod config;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod service;
pub mod store;
