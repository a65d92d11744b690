//! The gateway's integration tests, in one binary so the engine (DataFusion) is linked once:
//! each module starts real engines and gateways on loopback ports. `metrics.rs` is its own
//! binary: it asserts exact counts in the process-wide metrics registry.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

mod audit;
mod auth;
mod authz;
mod cli;
mod proxy;
mod ratelimit;
mod tls;
mod wycheproof;
