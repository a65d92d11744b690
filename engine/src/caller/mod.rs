//! Who is calling: the identity stamp verified once per request, before anything else.

pub mod functions;
pub mod listing;
pub mod scope;

use std::sync::Arc;

use identity::{Principal, StampVerifier};

use crate::error::EngineError;
use listing::Listing;
use scope::Scope;

/// How the engine establishes the caller of each request.
#[derive(Debug)]
pub enum Authenticator {
    /// Production: a stamp signed by the gateway, verified (and cached) here.
    Stamps(StampVerifier),
    /// `--dangerous-dev-principal`: every request runs as this fixed principal, no stamp
    /// needed. Logged as a warning at start and on every request.
    DangerousDevelopment(Arc<Principal>),
}

/// A verified caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Arc<Principal>,
    pub listing: Listing,
    /// The datasets its statement may resolve.
    pub scope: Scope,
    /// The fingerprint of the gateway's policy set that allowed the request, from its stamp.
    pub policy: PolicyFingerprint,
    /// The row and column decisions for the datasets its statement touches (see
    /// [`crate::data_policy`]).
    pub data: Arc<[identity::DatasetPolicy]>,
    /// What its statements may take (its stamp's `limits`; `None`: the engine's own only).
    pub limits: Option<Arc<identity::StatementLimits>>,
}

/// The gateway's policy-set fingerprint a request was allowed under (`None` without one, as
/// in development mode). Flight tickets and prepared statements are bound to it: presented
/// under another, they are refused as stale, so a policy change reaches them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyFingerprint(pub Option<Arc<str>>);

impl PolicyFingerprint {
    /// Refuses a ticket or handle issued under `issued` when this request's set differs.
    pub fn admits(&self, issued: &PolicyFingerprint, what: &str) -> Result<(), EngineError> {
        if *self == *issued { Ok(()) } else { Err(Self::stale(what)) }
    }

    /// The refusal of a ticket or handle issued under another policy set.
    pub fn stale(what: &str) -> EngineError {
        EngineError::Forbidden(format!(
            "this {what} was issued under policies that have changed since; plan the query again"
        ))
    }

    /// The fingerprint's bytes, for sealing into a ticket.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_deref().map_or(&[], str::as_bytes)
    }
}

impl Authenticator {
    /// The caller of a request whose stamp header (if any) is `stamp`.
    pub fn authenticate(&self, stamp: Option<&[u8]>) -> Result<Caller, EngineError> {
        match self {
            Authenticator::Stamps(verifier) => {
                let stamp = stamp.ok_or(EngineError::Unauthenticated(identity::StampError::Missing))?;
                let stamp = std::str::from_utf8(stamp)
                    .map_err(|_| EngineError::Unauthenticated(identity::StampError::Malformed("not ASCII")))?;
                let verified = verifier.verify(stamp).map_err(EngineError::Unauthenticated)?;
                let listing = verified.catalog.clone().map_or_else(Listing::nothing, Listing::Only);
                let scope = Scope::Only(Arc::clone(&verified.scope));
                let policy = PolicyFingerprint(verified.policy.clone());
                let data = Arc::clone(&verified.data);
                let limits = verified.limits.clone();
                Ok(Caller { principal: Arc::clone(&verified.principal), listing, scope, policy, data, limits })
            }
            Authenticator::DangerousDevelopment(principal) => {
                tracing::warn!(principal = %principal.id, "INSECURE development mode: request not authenticated");
                Ok(Caller {
                    principal: Arc::clone(principal),
                    listing: Listing::Everything,
                    scope: Scope::Everything,
                    policy: PolicyFingerprint::default(),
                    data: Arc::from(Vec::new()),
                    limits: None,
                })
            }
        }
    }
}
