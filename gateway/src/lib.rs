//! The Portcullis gateway: TLS and mTLS termination, identity stamping, and a streaming
//! proxy to the engine. The request's life is in [`pipeline`]; connections in [`listener`];
//! start and stop in [`server`].

pub mod audit;
pub mod auth;
pub mod authz;
pub mod body;
pub mod browser;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod connection;
pub mod error;
pub mod health;
pub mod listener;
pub mod metrics;
pub mod outbound;
pub mod pipeline;
pub mod pki;
pub mod ratelimit;
pub mod reload;
pub mod server;
pub mod tls;
pub mod workload;
