//! The gateway's integration tests, in one binary so the engine (DataFusion) is linked once:
//! each module starts real engines and gateways on loopback ports. `metrics.rs` is its own
//! binary: it asserts exact counts in the process-wide metrics registry.
// Test code: a failed unwrap, index or panic is a failed test; helpers are `pub` for the
// modules that share them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic, unreachable_pub)]

mod common;

mod audit;
mod auth;
mod authz;
mod browser;
mod cli;
mod data_policy;
mod deep_statements;
mod differential;
mod exhaustion;
mod policy_changes;
mod proxy;
mod query_limits;
mod ratelimit;
mod s3_datasets;
mod tls;
mod wycheproof;
