//! Load generation for Portcullis. Every run is bounded by a request count; targets must be
//! loopback addresses (the tool refuses anything else).

pub mod cli;
pub mod common;
pub mod cpu;
pub mod flight;
pub mod http;
pub mod report;
pub mod tls;
