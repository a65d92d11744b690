//! `authorization`: the Cedar policy folder and what Cedar needs to name the datasets a query
//! reads.

use serde::Deserialize;

use super::path::ConfigPath;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationConfig {
    /// Directory with `schema.cedarschema`, `*.cedar` and optionally `entities.json`.
    pub policies: ConfigPath,
    /// A candidate policy folder (same layout), decided beside `policies` on every request
    /// and never enforced: where the two disagree, the audit event carries both answers and
    /// `gateway_authz_shadow_disagreements_total` counts it. Loaded, validated and
    /// hot-reloaded like `policies`.
    #[serde(default)]
    pub shadow: Option<ConfigPath>,
    /// The engine's default catalog and schema, for one- and two-part table names.
    #[serde(default = "AuthorizationConfig::default_catalog")]
    pub default_catalog: String,
    #[serde(default = "AuthorizationConfig::default_schema")]
    pub default_schema: String,
    /// Principals whose Cedar entity is kept built (each for up to a minute).
    #[serde(default = "AuthorizationConfig::default_principal_cache_entries")]
    pub principal_cache_entries: usize,
    /// The engine's configuration file: each dataset and view it defines becomes a Cedar
    /// `Dataset` entity with its `tenant` and `classification`, and a query naming a table
    /// it does not serve is answered 404. Reloaded like the policies.
    #[serde(default)]
    pub engine_config: Option<ConfigPath>,
}

impl AuthorizationConfig {
    pub fn new(policies: impl Into<ConfigPath>) -> Self {
        Self {
            policies: policies.into(),
            shadow: None,
            default_catalog: Self::default_catalog(),
            default_schema: Self::default_schema(),
            principal_cache_entries: Self::default_principal_cache_entries(),
            engine_config: None,
        }
    }

    // The defaults of the fields that may be left out (`policies` may not, so the section
    // has no `Default`): used by serde and by `new`. DataFusion's own defaults.
    fn default_catalog() -> String {
        "datafusion".into()
    }
    fn default_schema() -> String {
        "public".into()
    }
    fn default_principal_cache_entries() -> usize {
        100_000
    }
}
