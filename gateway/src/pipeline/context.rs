//! One request's context, the one thing every stage of the pipeline shares: what the request
//! is, and the facts the stages found for observe to record.

use std::sync::Arc;

use http::HeaderValue;
use identity::Principal;

use super::authorize;
use crate::audit::ApiRecord;
use crate::authz::Verdict;

/// One request's context: what it is (id, route, protocol, start) and what the stages
/// learned about it, in its audit record when audit is on.
pub(super) struct Context {
    pub(super) request_id: HeaderValue,
    pub(super) grpc: bool,
    /// A known route or RPC, else `other` (a metric label).
    pub(super) route: &'static str,
    pub(super) started: std::time::Instant,
    pub(super) record: Option<Box<ApiRecord>>,
    /// Request body bytes forwarded, counted as they stream (with audit on).
    pub(super) bytes_in: Option<Arc<std::sync::atomic::AtomicU64>>,
    /// A browser session re-sealed by authenticate (last seen, or renewed at the provider with
    /// a rotated refresh token): sent back whatever the outcome, so a refusal does not lose it.
    pub(super) set_cookie: Option<HeaderValue>,
    // What the stages found, for observe to record:
    /// The authenticated caller.
    pub(super) principal: Option<Arc<Principal>>,
    /// A sign-in to audit (a Handshake, or a request's credential).
    pub(super) signed_in: Option<SignedIn>,
    /// What a browser route found (a sign-in, a refused session cookie).
    pub(super) browser: Option<crate::browser::Answered>,
    /// Cedar's verdict, for the decision metrics.
    pub(super) verdict: Option<Arc<Verdict>>,
    /// What authorization learned for the audit record (the SQL, the decision, the plan).
    pub(super) learned: Option<authorize::Learned>,
    /// How long the engine took to answer with a head.
    pub(super) upstream_latency: Option<std::time::Duration>,
    /// The caller's query limits, when its tier sets any.
    pub(super) limits: Option<Limits>,
}

/// What the query limits stage found.
pub(super) struct Limits {
    /// The caller's tier.
    pub(super) tier: Arc<str>,
    /// How long the query waited for a slot, if it queued.
    pub(super) queued: Option<std::time::Duration>,
    /// What metering the response found (when it was metered).
    pub(super) metered: Option<Arc<crate::query_limits::metered::Outcome>>,
}

impl Limits {
    pub(super) fn new(tier: &crate::query_limits::Tier) -> Self {
        Self { tier: Arc::clone(&tier.name), queued: None, metered: None }
    }
}

/// A successful sign-in, as authenticate or the Handshake found it.
pub(super) struct SignedIn {
    pub(super) principal: Arc<Principal>,
    /// `handshake` or `request`.
    pub(super) flow: &'static str,
    /// Audit every one (a Handshake opens a session), not once per principal and address.
    pub(super) always: bool,
}

/// The route label of the browser routes (`/auth/*`, `/console`).
pub(super) const BROWSER_ROUTE: &str = "browser";
