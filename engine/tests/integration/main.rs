//! The engine's integration tests, in one binary so DataFusion and Ballista are linked once:
//! each module starts real engines on loopback ports and talks to them with real clients.
// Test code: a failed unwrap, index or panic is a failed test; helpers are `pub` for the
// modules that share them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic, unreachable_pub)]

mod common;

mod access;
mod cluster;
mod data_policy;
mod flight_sql;
mod http_api;
mod memory;
mod python_clients;
mod reload;
