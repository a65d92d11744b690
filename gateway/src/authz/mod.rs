//! Authorization with Cedar. Each request becomes one Cedar request for its endpoint (the
//! route or Flight RPC, with the statement's endpoint action) plus one per dataset its SQL
//! touches; all must be allowed (Cedar's default is deny).
//!
//! Policies, schema and entities are loaded once ([`policies::PolicyBundle`]) and swapped
//! whole on reload, so a request never sees half a policy set and nothing is parsed per
//! request. The principal's entity (its groups as parents, its attributes) and the policies
//! that can apply to it are built once per principal and cached with the bundle they were
//! built against; contexts once per second per request shape; whole verdicts for the second
//! ([`decisions`]).
//!
//! A second, *shadow* policy set (`authorization.shadow`) can be loaded beside the enforced
//! one: every call is decided by both, only the enforced answer counts, and where the two
//! disagree the audit event and a metric say so. Its answer rides in the same [`Verdict`],
//! so a cached repeat costs the shadow set nothing either.

pub(crate) mod action;
pub(crate) mod authorizer;
pub(crate) mod cases;
mod columns;
mod context;
pub(crate) mod data_change;
mod data_policy;
pub(crate) mod decisions;
pub(crate) mod error;
pub(crate) mod facts;
pub mod flight;
pub mod flight_wire;
pub(crate) mod lint;
mod masks;
pub(crate) mod policies;
pub(crate) mod row_filter;
pub(crate) mod served;
pub mod sql;
pub(crate) mod verdict;

pub(crate) use action::EndpointAction;
pub(crate) use authorizer::Authorizer;
pub(crate) use error::AuthzError;
pub(crate) use facts::RequestFacts;
pub(crate) use sql::{SqlError, StatementAccess};
pub(crate) use verdict::{Allowed, Answer, Ask, Verdict};
