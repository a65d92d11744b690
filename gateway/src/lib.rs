//! The Portcullis gateway: TLS and mTLS termination, identity stamping, and a streaming
//! proxy to the engine. The request's life is in `pipeline`; connections in `listener`;
//! start and stop in [`server`].
//!
//! The public API is what the `gateway` binary and an embedding test need: the
//! configuration, preparing and starting a server, and the command line. Everything else
//! is crate-private, so the compiler's dead-code and `unreachable_pub` lints see it;
//! [`internal`] opens what fuzz targets, benchmarks and black-box tests reach below that.

mod audit;
mod auth;
mod authz;
mod body;
mod browser;
mod cli;
mod commands;
pub mod config;
mod connection;
mod error;
mod grpc_code;
mod health;
#[doc(hidden)]
pub mod internal;
mod listener;
mod metrics;
mod outbound;
mod pipeline;
mod pki;
mod query_limits;
mod ratelimit;
mod reload;
pub mod server;
mod tls;
mod workload;

pub use cli::main;
