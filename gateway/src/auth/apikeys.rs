//! API keys for services: `pcl_` followed by 43 base64url characters (256 random bits).
//! The prefix lets secret scanners recognise a leaked key. The gateway stores only the
//! key's SHA-256: with 256 bits of entropy no dictionary or brute force applies, so a slow
//! password hash (Argon2, bcrypt) would add per-request cost and no protection.
//! Lookup is by digest, then a constant-time compare of the digests.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use identity::{AuthMethod, Principal, PrincipalKind};
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::error::AuthError;
use crate::config::{ApiKeyEntry, ApiKeysConfig, ConfigError};

pub const PREFIX: &str = "pcl_";
/// Length of a key: the prefix and 32 bytes in base64url.
const KEY_LEN: usize = PREFIX.len() + 43;

/// A freshly generated key: shown once, then only its hash is kept.
#[derive(Debug)]
pub struct NewKey {
    pub key: String,
    pub hash: String,
}

pub fn generate() -> Result<NewKey, String> {
    let mut random = [0u8; 32];
    aws_lc_rs::rand::fill(&mut random).map_err(|_| "no randomness available".to_string())?;
    let key = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(random));
    let hash = format!("sha256:{}", hex(&digest(&key)));
    Ok(NewKey { key, hash })
}

fn digest(key: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes()).as_ref());
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hash(text: &str) -> Option<[u8; 32]> {
    let hex = text.strip_prefix("sha256:")?;
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// `2027-01-31` (midnight UTC) or an RFC 3339 date-time.
pub fn parse_expiry(text: &str) -> Result<u64, String> {
    let full = if text.len() == 10 { format!("{text}T00:00:00Z") } else { text.to_string() };
    let at = OffsetDateTime::parse(&full, &Rfc3339)
        .map_err(|_| format!("{text:?} is not a date (2027-01-31) or an RFC 3339 date-time"))?;
    u64::try_from(at.unix_timestamp()).map_err(|_| format!("{text:?} is before 1970"))
}

struct StoredKey {
    digest: [u8; 32],
    principal: Arc<Principal>,
    expires: Option<u64>,
}

/// The configured keys, by digest.
#[derive(Default)]
pub struct ApiKeys {
    by_digest: HashMap<[u8; 32], StoredKey>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeys").field("count", &self.by_digest.len()).finish()
    }
}

#[derive(Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    #[serde(default)]
    keys: Vec<ApiKeyEntry>,
}

impl ApiKeys {
    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    /// The inline keys plus those in the keys file.
    pub fn load(config: &ApiKeysConfig) -> Result<Self, ConfigError> {
        let mut keys = Self::default();
        keys.add(&config.keys, "auth.api_keys.keys")?;
        if let Some(path) = &config.file {
            keys.add(&read_keys_file(path)?, &format!("{} keys", path.display()))?;
        }
        Ok(keys)
    }

    fn add(&mut self, entries: &[ApiKeyEntry], field: &str) -> Result<(), ConfigError> {
        for (i, entry) in entries.iter().enumerate() {
            let at = format!("{field}[{i}]");
            if entry.name.trim().is_empty() {
                return Err(ConfigError::new(format!("{at}.name"), "must not be empty"));
            }
            let digest = parse_hash(&entry.hash).ok_or_else(|| {
                ConfigError::new(format!("{at}.hash"), "must be sha256: and 64 hex digits (from `gateway apikey new`)")
            })?;
            let expires = entry
                .expires
                .as_deref()
                .map(parse_expiry)
                .transpose()
                .map_err(|e| ConfigError::new(format!("{at}.expires"), e))?;
            if self.by_digest.values().any(|k| k.principal.id == entry.name) {
                return Err(ConfigError::new(format!("{at}.name"), format!("{:?} is used by another key", entry.name)));
            }
            let mut principal = Principal::new(PrincipalKind::Service, &entry.name, &entry.name, AuthMethod::ApiKey);
            principal.groups = entry.groups.clone();
            principal.tenant = entry.tenant.clone();
            if self.by_digest.insert(digest, StoredKey { digest, principal: Arc::new(principal), expires }).is_some() {
                return Err(ConfigError::new(format!("{at}.hash"), "the same key is listed twice"));
            }
        }
        Ok(())
    }

    /// The principal for a presented key. Messages never include the key.
    pub fn verify(&self, presented: &str, now: u64) -> Result<Arc<Principal>, AuthError> {
        if presented.len() != KEY_LEN || !presented.starts_with(PREFIX) {
            return Err(AuthError::InvalidApiKey);
        }
        let digest = digest(presented);
        let stored = self.by_digest.get(&digest).ok_or(AuthError::InvalidApiKey)?;
        // The map lookup already matched; compare again in constant time so no code path
        // depends on how much of a digest matched.
        aws_lc_rs::constant_time::verify_slices_are_equal(&stored.digest, &digest)
            .map_err(|_| AuthError::InvalidApiKey)?;
        if stored.expires.is_some_and(|expires| now >= expires) {
            return Err(AuthError::ExpiredApiKey);
        }
        Ok(Arc::clone(&stored.principal))
    }
}

/// Replaces the keys file at `path` with `keys`, as config management tools do (a new file
/// beside it, with the old one's permissions, renamed over it), so a running gateway reloads
/// it whole. Comments in the old file are not kept.
pub(crate) fn write_keys_file(path: &Path, keys: Vec<ApiKeyEntry>) -> Result<(), String> {
    let text = serde_yaml_ng::to_string(&KeysFile { keys }).map_err(|e| e.to_string())?;
    let text = format!("# API keys (hashes only): `gateway apikey new` adds, `gateway apikey revoke` removes.\n{text}");
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(|e| format!("{}: {e}", tmp.display()))?;
    if let Ok(meta) = std::fs::metadata(path) {
        std::fs::set_permissions(&tmp, meta.permissions()).map_err(|e| format!("{}: {e}", tmp.display()))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

pub(crate) fn read_keys_file(path: &Path) -> Result<Vec<ApiKeyEntry>, ConfigError> {
    let field = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|e| ConfigError::new("auth.api_keys.file", format!("{field}: {e}")))?;
    let deserializer = serde_yaml_ng::Deserializer::from_str(&text);
    let file: KeysFile = serde_path_to_error::deserialize(deserializer).map_err(|e| ConfigError {
        origin: field,
        field: e.path().to_string(),
        message: e.into_inner().to_string(),
    })?;
    Ok(file.keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(entries: Vec<ApiKeyEntry>) -> ApiKeys {
        ApiKeys::load(&ApiKeysConfig { file: None, keys: entries }).unwrap()
    }

    fn entry(name: &str, hash: &str, expires: Option<&str>) -> ApiKeyEntry {
        ApiKeyEntry {
            name: name.into(),
            hash: hash.into(),
            groups: vec!["etl".into()],
            tenant: None,
            expires: expires.map(Into::into),
        }
    }

    #[test]
    fn generated_keys_verify_and_others_do_not() {
        let new = generate().unwrap();
        assert!(new.key.starts_with(PREFIX) && new.key.len() == KEY_LEN);
        let store = keys(vec![entry("etl", &new.hash, None)]);
        let principal = store.verify(&new.key, 0).unwrap();
        assert_eq!((principal.id.as_str(), principal.auth_method), ("etl", AuthMethod::ApiKey));
        assert_eq!(principal.groups, ["etl"]);
        let other = generate().unwrap();
        assert!(matches!(store.verify(&other.key, 0), Err(AuthError::InvalidApiKey)));
        assert!(matches!(store.verify("pcl_short", 0), Err(AuthError::InvalidApiKey)));
        assert!(matches!(store.verify(&new.key.replace(PREFIX, "xyz_"), 0), Err(AuthError::InvalidApiKey)));
    }

    #[test]
    fn expired_keys_are_refused() {
        let new = generate().unwrap();
        let store = keys(vec![entry("old", &new.hash, Some("2020-01-01"))]);
        assert!(store.verify(&new.key, 1_577_836_799).is_ok());
        assert!(matches!(store.verify(&new.key, 1_577_836_800), Err(AuthError::ExpiredApiKey)));
        assert_eq!(parse_expiry("2020-01-01T00:00:00Z").unwrap(), 1_577_836_800);
        assert!(parse_expiry("next year").is_err());
    }

    #[test]
    fn bad_entries_name_their_field() {
        let bad = ApiKeys::load(&ApiKeysConfig { file: None, keys: vec![entry("x", "md5:abc", None)] }).unwrap_err();
        assert!(bad.to_string().contains("auth.api_keys.keys[0].hash"), "{bad}");
        let hash = generate().unwrap().hash;
        let dup = ApiKeys::load(&ApiKeysConfig {
            file: None,
            keys: vec![entry("x", &hash, None), entry("x", &generate().unwrap().hash, None)],
        })
        .unwrap_err();
        assert!(dup.to_string().contains("used by another key"), "{dup}");
    }
}
