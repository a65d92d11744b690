//! The request as policy sees it, besides its SQL.

use std::net::IpAddr;

use identity::Principal;

/// What the request's caller and transport look like to policy.
#[derive(Debug)]
pub struct RequestFacts<'a> {
    pub principal: &'a Principal,
    pub source_ip: IpAddr,
    /// A verified client certificate came with the connection.
    pub client_cert: bool,
    pub method: &'a str,
    pub path: &'a str,
    pub now: u64,
}
