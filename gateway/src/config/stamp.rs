//! `stamp`: the key the gateway signs each forwarded request's identity stamp with.

use serde::Deserialize;

use super::path::ConfigPath;
use super::reference::Reference;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StampConfig {
    /// PEM PKCS#8 Ed25519 private key (inline or reference) ...
    pub key: Option<Reference>,
    /// ... or its path.
    pub key_file: Option<ConfigPath>,
    /// The `aud` the engine expects.
    pub audience: String,
    /// Stamp lifetime, within `identity::MIN_STAMP_LIFETIME_SECS..=MAX_STAMP_LIFETIME_SECS`.
    pub lifetime_secs: u64,
}

impl StampConfig {
    pub fn from_key_file(key_file: impl Into<ConfigPath>) -> Self {
        Self { key_file: Some(key_file.into()), ..Self::default() }
    }
}

impl Default for StampConfig {
    fn default() -> Self {
        Self {
            key: None,
            key_file: None,
            audience: identity::DEFAULT_AUDIENCE.into(),
            lifetime_secs: identity::MAX_STAMP_LIFETIME_SECS,
        }
    }
}
