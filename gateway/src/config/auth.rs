//! `auth`: OIDC providers whose bearer tokens are accepted, API keys, and the limits and
//! caches of token verification.

use serde::Deserialize;

use super::browser::{BrowserLoginConfig, BrowserSessionsConfig};
use super::path::ConfigPath;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub oidc: Vec<OidcProviderConfig>,
    pub api_keys: Option<ApiKeysConfig>,
    /// Bearer tokens longer than this are refused unread.
    pub max_token_bytes: usize,
    /// Verified tokens remembered (by SHA-256), each until its own expiry at the latest.
    pub token_cache_entries: usize,
    /// Lifetime of the bearer token the Flight Handshake returns.
    pub session_ttl_secs: u64,
    /// The sealed cookie of browser sign-ins; required when a provider has `browser_login`.
    pub browser_sessions: Option<BrowserSessionsConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            oidc: Vec::new(),
            api_keys: None,
            max_token_bytes: 8 * 1024,
            token_cache_entries: 100_000,
            session_ttl_secs: 3600,
            browser_sessions: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcProviderConfig {
    /// A short name for logs and `oidc_providers` lists.
    pub name: String,
    /// Must equal the tokens' `iss` and the discovery document's `issuer`, exactly.
    pub issuer: String,
    /// Accepted `aud` values (a token needs one of them).
    pub audiences: Vec<String>,
    /// Allowed algorithms; default all asymmetric ones. HMAC is refused.
    #[serde(default)]
    pub algorithms: Vec<String>,
    #[serde(default = "OidcProviderConfig::default_leeway_secs")]
    pub leeway_secs: u64,
    /// Keys from here instead of discovery.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Keys from a file instead of over HTTP.
    #[serde(default)]
    pub jwks_file: Option<ConfigPath>,
    /// Extra CA bundle for the provider's TLS (the Mozilla roots are always trusted).
    #[serde(default)]
    pub ca_file: Option<ConfigPath>,
    #[serde(default = "OidcProviderConfig::default_refresh_secs")]
    pub refresh_secs: u64,
    #[serde(default = "OidcProviderConfig::default_unknown_kid_cooldown_secs")]
    pub unknown_kid_cooldown_secs: u64,
    #[serde(default)]
    pub claims: ClaimMapping,
    /// Sign browsers in at this provider (`/auth/login`) and serve them the console.
    #[serde(default)]
    pub browser_login: Option<BrowserLoginConfig>,
}

impl OidcProviderConfig {
    /// A provider found by discovery at `issuer`, with the default key handling and claims.
    pub fn new(name: impl Into<String>, issuer: impl Into<String>, audiences: Vec<String>) -> Self {
        Self {
            name: name.into(),
            issuer: issuer.into(),
            audiences,
            algorithms: Vec::new(),
            leeway_secs: Self::default_leeway_secs(),
            jwks_uri: None,
            jwks_file: None,
            ca_file: None,
            refresh_secs: Self::default_refresh_secs(),
            unknown_kid_cooldown_secs: Self::default_unknown_kid_cooldown_secs(),
            claims: ClaimMapping::default(),
            browser_login: None,
        }
    }

    // The defaults of the fields a provider may leave out (the name, issuer and audiences it
    // may not, so the section has no `Default`): used by serde and by `new`.
    fn default_leeway_secs() -> u64 {
        30
    }
    fn default_refresh_secs() -> u64 {
        300
    }
    fn default_unknown_kid_cooldown_secs() -> u64 {
        30
    }
}

/// Where principal fields come from in a token. Paths may be nested (`realm_access.roles`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimMapping {
    pub user_id: String,
    pub email: String,
    pub groups: String,
    pub tenant: Option<String>,
}

impl Default for ClaimMapping {
    fn default() -> Self {
        Self { user_id: "sub".into(), email: "email".into(), groups: "groups".into(), tenant: None }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiKeysConfig {
    /// A YAML file `keys: [...]` with entries like the inline ones; reloaded on change.
    pub file: Option<ConfigPath>,
    pub keys: Vec<ApiKeyEntry>,
}

/// One API key: only its hash is stored.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyEntry {
    /// The principal id the key authenticates as.
    pub name: String,
    /// `sha256:<64 hex digits>`, as printed by `gateway apikey new`.
    pub hash: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// The tenant the key belongs to, for tenant-isolation policies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// `2027-01-31` or an RFC 3339 date-time; refused from then on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}
