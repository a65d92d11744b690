//! Not a stable API (as rustls's `internal`): what the fuzz targets (the parsers clients
//! reach), the benchmarks (the hot path's stages) and the black-box tests (forging
//! credentials, reading audit events, building certificates) use below the public one.

pub use crate::audit::deliver::SyslogReceiver;
pub use crate::audit::ocsf::Formatter;
pub use crate::audit::record::{ApiRecord, Authorization, Decision, Record};
pub use crate::audit::recorded;
pub use crate::audit::refusals::FULL_UNAUTHENTICATED;
pub use crate::audit::replay;
pub use crate::auth::authenticator::Authenticator;
pub use crate::auth::credentials::credentials;
pub use crate::auth::listener::ListenerAuth;
pub use crate::auth::{apikeys, jws};
pub use crate::authz::authorizer::Authorizer;
pub use crate::authz::error::AuthzError;
pub use crate::authz::facts::RequestFacts;
pub use crate::authz::sql::NameDefaults;
pub use crate::authz::verdict::{Answer, Ask, Verdict};
pub use crate::authz::{flight, flight_wire, sql};
pub use crate::browser::csrf;
pub use crate::browser::seal::KeyRing;
pub use crate::browser::session::{SESSION_COOKIE, Sessions};
pub use crate::listener::frames::{FrameCounter, Outgoing};
pub use crate::metrics::render as render_metrics;
pub use crate::pipeline::sanitize::sanitize;
pub use crate::query_limits::row_counter::RowCounter;
pub use crate::tls::provider as crypto_provider;
pub use crate::workload::principal_from_certificate;

/// The row-filter compiler on a policy's text (the fuzz target's way in): `None` when the
/// text is no Cedar policy; else whether it passes the load-time check, and what it compiles
/// to (always folded to a fixed point).
pub fn compile_row_filter(text: &str) -> Option<(bool, Result<identity::RowFilter, String>)> {
    use crate::authz::row_filter;
    let policy: cedar_policy::Policy = text.parse().ok()?;
    let checked = row_filter::check_policy(&policy).is_ok();
    let compiled = row_filter::compile_policy(&policy).map_err(|e| e.0);
    if let Ok(filter) = &compiled {
        assert_eq!(row_filter::simplify(filter.clone()), *filter, "folding twice changes the filter");
    }
    Some((checked, compiled))
}

/// The development PKI the `gateway tls` commands write, for tests that need certificates.
pub mod pki {
    pub use crate::pki::{LeafSpec, init_ca, issue_leaf, leaf_paths, revoke, write_private};
}
