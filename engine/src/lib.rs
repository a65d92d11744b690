//! The Portcullis SQL engine: DataFusion behind an HTTP API and Arrow Flight SQL, serving
//! each query as the caller named by a gateway-signed identity stamp.
//!
//! Request life (both protocols): verify the stamp ([`caller`]) → plan the SQL in a session
//! carrying the caller ([`query`]) → refuse what the SQL options forbid → execute and stream
//! ([`http`], [`flight`]). Errors map to statuses in one place ([`error`]).

mod access;
mod barrier;
mod bounded_functions;
pub mod caller;
mod catalog;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod data_policy;
pub mod encode;
pub mod error;
pub mod flight;
pub mod http;
pub mod memory;
mod metrics;
mod placeholders;
pub mod query;
mod redact;
pub mod result_cap;
pub mod server;
