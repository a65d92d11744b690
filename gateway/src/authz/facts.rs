//! The request as policy sees it, besides its SQL.

use std::net::IpAddr;

use identity::{Principal, PrincipalKind};

/// Every kind of principal, in the order the schema declares their Cedar types.
pub(crate) const PRINCIPAL_KINDS: [PrincipalKind; 3] =
    [PrincipalKind::User, PrincipalKind::Service, PrincipalKind::Workload];

/// The Cedar entity type of a kind of principal (`User`, `Service`, `Workload`).
pub(crate) fn principal_type(kind: PrincipalKind) -> &'static str {
    match kind {
        PrincipalKind::User => "User",
        PrincipalKind::Service => "Service",
        PrincipalKind::Workload => "Workload",
    }
}

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
