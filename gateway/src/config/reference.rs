//! Values that may hold a secret (private keys, sink tokens) and the certificates beside them
//! are given inline or by reference, so the config file itself can hold none: `${env:NAME}`
//! reads a variable, `${file:PATH}` a file (relative to the config file, like every `*_file`
//! field). Errors name the setting, never the value.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

use super::error::ConfigError;
use super::path::rebased;

/// A configured value: inline, `${env:NAME}` or `${file:PATH}`; `{:?}` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Reference(String);

impl Reference {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The variable, the file's contents, or the inline value.
    pub fn resolve(&self, field: &str) -> Result<String, ConfigError> {
        resolve_reference(&self.0, field)
    }

    /// [`Self::resolve`] for a value that must never sit in the config file itself (a client
    /// secret, a session key): only `${env:NAME}` or `${file:PATH}` is taken.
    pub fn resolve_secret(&self, field: &str) -> Result<String, ConfigError> {
        if !self.0.trim().starts_with("${") {
            return Err(ConfigError::new(
                field,
                "must be given by reference (${env:NAME} or ${file:PATH}), never inline in the config",
            ));
        }
        self.resolve(field)
    }

    /// What is configured, reference or inline value: for checks, never for a log.
    pub fn as_configured(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<'de> Deserialize<'de> for Reference {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        // `${file:RELATIVE}` follows the same rule as the `*_file` fields.
        Ok(Self(match file_reference(&value) {
            Some(path) => format!("${{file:{}}}", rebased(PathBuf::from(path)).display()),
            None => value,
        }))
    }
}

/// Resolves a PEM given inline or as a reference, or read from `file`. `field` names the
/// setting in errors; the PEM itself never appears in one.
pub fn resolve_pem(inline: Option<&Reference>, file: Option<&Path>, field: &str) -> Result<Vec<u8>, ConfigError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(ConfigError::new(field, "give either the inline value or the _file path, not both")),
        (None, None) => Err(ConfigError::new(field, "missing")),
        (None, Some(path)) => std::fs::read(path)
            .map_err(|e| ConfigError::new(format!("{field}_file"), format!("{}: {e}", path.display()))),
        (Some(value), None) => value.resolve(field).map(String::into_bytes),
    }
}

/// The PATH of a `${file:PATH}` reference.
fn file_reference(value: &str) -> Option<&str> {
    value.trim().strip_prefix("${file:")?.strip_suffix('}')
}

/// `${env:NAME}` → the variable, `${file:PATH}` → the file's contents, anything else as is.
pub fn resolve_reference(value: &str, field: &str) -> Result<String, ConfigError> {
    let trimmed = value.trim();
    if let Some(name) = trimmed.strip_prefix("${env:").and_then(|r| r.strip_suffix('}')) {
        return std::env::var(name)
            .map_err(|_| ConfigError::new(field, format!("environment variable {name} is not set")));
    }
    if let Some(path) = file_reference(value) {
        return std::fs::read_to_string(path).map_err(|e| ConfigError::new(field, format!("{path}: {e}")));
    }
    if trimmed.starts_with("${") {
        return Err(ConfigError::new(field, "unknown reference; use ${env:NAME} or ${file:PATH}"));
    }
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_resolve_and_never_echo_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret.pem");
        std::fs::write(&file, "FROM-FILE").unwrap();
        assert_eq!(resolve_reference(&format!("${{file:{}}}", file.display()), "tls.key").unwrap(), "FROM-FILE");
        assert_eq!(resolve_reference("inline", "tls.key").unwrap(), "inline");
        let err = resolve_reference("${env:PORTCULLIS_TEST_SURELY_UNSET}", "tls.key").unwrap_err().to_string();
        assert!(err.contains("tls.key") && err.contains("PORTCULLIS_TEST_SURELY_UNSET"), "{err}");
        let err = resolve_reference("${vault:x}", "tls.key").unwrap_err().to_string();
        assert!(err.contains("unknown reference"), "{err}");
        let err = resolve_pem(Some(&Reference::new("a")), Some(&file), "tls.key").unwrap_err().to_string();
        assert!(err.contains("not both"), "{err}");
        assert_eq!(format!("{:?}", Reference::new("TOPSECRET")), "<redacted>");
    }
}
