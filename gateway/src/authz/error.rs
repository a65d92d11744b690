//! Why a request was not authorized.

use super::sql::SqlError;

/// Why a request was not authorized. Statuses are mapped in [`crate::error`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthzError {
    /// Cedar said no. Names the action and resource, never the policy text.
    #[error("{action} on {resource} is not allowed")]
    Denied { action: &'static str, resource: String },
    #[error("{0}")]
    Sql(#[from] SqlError),
    /// A request the gateway cannot decode (bad protobuf or gRPC framing, non-UTF-8 SQL).
    #[error("{0}")]
    Malformed(String),
    /// A call the gateway does not classify (fail closed).
    #[error("{0}")]
    Unsupported(String),
    /// A route the gateway does not serve.
    #[error("{0}")]
    NotRouted(String),
    /// A dataset the engine does not serve (known from `authorization.engine_config`) and
    /// that no policy allows: a typo or a table not onboarded yet, not a refusal.
    #[error("dataset {0} does not exist (the engine does not serve it)")]
    UnknownDataset(String),
}
