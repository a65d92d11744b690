//! `rate_limits`: quotas by client IP, by failed authentications and by principal. Off unless
//! configured.

use std::collections::HashMap;

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Every request, by client IP, before authentication.
    pub per_ip: Option<QuotaConfig>,
    /// Failed authentications by client IP; past it the address is refused for a while.
    pub failed_auth_per_ip: Option<QuotaConfig>,
    /// Every authenticated request, by principal.
    pub per_principal: Option<QuotaConfig>,
    /// Overrides by group (the most generous of a principal's groups applies).
    pub groups: HashMap<String, QuotaConfig>,
    /// Overrides by principal id (win over groups).
    pub principals: HashMap<String, QuotaConfig>,
}

/// `requests` per `per_secs` seconds, sustained, with bursts of up to `burst` (default:
/// `requests`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    pub requests: u32,
    #[serde(default = "QuotaConfig::default_per_secs")]
    pub per_secs: u64,
    #[serde(default)]
    pub burst: Option<u32>,
}

impl QuotaConfig {
    /// `requests` per second (`requests` may not be left out, so there is no `Default`).
    fn default_per_secs() -> u64 {
        1
    }
}
