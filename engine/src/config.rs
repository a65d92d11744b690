//! Engine configuration: YAML, unknown fields refused, errors name the field's path.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The configuration used when no file is given: demo data and row-level-security views.
pub const EMBEDDED_DEFAULT: &str = include_str!("../demo/engine.yaml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// HTTP API (`/v1/sql`, `/v1/datasets`, `/health`).
    #[serde(default = "default_http_listen")]
    pub http_listen: SocketAddr,
    /// Arrow Flight SQL (gRPC, plaintext h2c: the gateway terminates TLS).
    #[serde(default = "default_flight_listen")]
    pub flight_listen: SocketAddr,
    #[serde(default)]
    pub stamp: StampConfig,
    #[serde(default)]
    pub sql: SqlConfig,
    #[serde(default)]
    pub limits: Limits,
    /// Register the embedded demo tables (`demo.customers`, `demo.orders`).
    #[serde(default)]
    pub demo_data: bool,
    #[serde(default)]
    pub datasets: Vec<Dataset>,
    #[serde(default)]
    pub views: Vec<View>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StampConfig {
    /// PEM Ed25519 public keys whose stamps are trusted (several during a rotation).
    #[serde(default)]
    pub public_key_files: Vec<PathBuf>,
    #[serde(default = "default_audience")]
    pub audience: String,
    /// Clock skew tolerated between gateway and engine.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// Verified stamps kept in memory (about one per active principal).
    #[serde(default = "default_cache_capacity")]
    pub cache_capacity: usize,
}

impl Default for StampConfig {
    fn default() -> Self {
        Self {
            public_key_files: Vec::new(),
            audience: default_audience(),
            leeway_secs: default_leeway(),
            cache_capacity: default_cache_capacity(),
        }
    }
}

/// What SQL may do beyond reading. Everything is off by default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlConfig {
    /// CREATE / DROP (tables, views, external tables).
    #[serde(default)]
    pub allow_ddl: bool,
    /// INSERT / UPDATE / DELETE / COPY.
    #[serde(default)]
    pub allow_dml: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest SQL request body accepted over HTTP.
    #[serde(default = "default_max_body")]
    pub max_sql_bytes: usize,
    /// Open Flight prepared statements kept per engine (statement tickets hold no state).
    #[serde(default = "default_max_handles")]
    pub max_flight_handles: usize,
    /// Lifetime of a Flight statement ticket, and of an unused prepared statement.
    #[serde(default = "default_handle_ttl")]
    pub flight_handle_ttl_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_sql_bytes: default_max_body(),
            max_flight_handles: default_max_handles(),
            flight_handle_ttl_secs: default_handle_ttl(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dataset {
    /// `table` or `schema.table` (the schema is created if needed).
    pub name: String,
    /// A file, or a folder of files of one format.
    pub path: PathBuf,
    /// Inferred from the file extension when absent; required for folders.
    #[serde(default)]
    pub format: Option<Format>,
    /// For the gateway's policy, when the gateway reads this file (`authorization.engine_config`):
    /// the Cedar `Dataset` entity's `tenant` and `classification`. The engine does not use them.
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub classification: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Parquet,
    /// A JSON array of objects.
    Json,
    /// One JSON object per line.
    Ndjson,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct View {
    /// `view` or `schema.view`.
    pub name: String,
    /// A SELECT; it may call `current_principal()` and friends, evaluated per query.
    pub sql: String,
    /// As for datasets: labels for the gateway's policy.
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub classification: Option<String>,
}

fn default_http_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8091))
}
fn default_flight_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 50052))
}
fn default_audience() -> String {
    identity::DEFAULT_AUDIENCE.to_string()
}
fn default_leeway() -> u64 {
    5
}
fn default_cache_capacity() -> usize {
    10_000
}
fn default_max_body() -> usize {
    1024 * 1024
}
fn default_max_handles() -> usize {
    10_000
}
fn default_handle_ttl() -> u64 {
    600
}

/// A configuration error, with the path of the offending field when there is one.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{origin}: at `{field}`: {message}")]
    Invalid { origin: String, field: String, message: String },
}

impl Config {
    /// Parses YAML; `origin` names the source in error messages (a file path).
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let deserializer = serde_yaml_ng::Deserializer::from_str(text);
        let config: Config = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let field = e.path().to_string();
            ConfigError::Invalid {
                origin: origin.to_string(),
                field: if field == "." { "(top level)".into() } else { field },
                message: e.into_inner().to_string(),
            }
        })?;
        config.validate(origin)?;
        Ok(config)
    }

    /// Reads and parses a YAML file. Relative dataset and key paths are resolved against the
    /// file's folder, so a config and its data can move together.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        let mut config = Self::from_yaml(&text, &path.display().to_string())?;
        if let Some(dir) = path.parent() {
            for dataset in &mut config.datasets {
                dataset.path = dir.join(&dataset.path);
            }
            for key in &mut config.stamp.public_key_files {
                *key = dir.join(&*key);
            }
        }
        Ok(config)
    }

    /// The embedded default: demo data and row-level-security views.
    pub fn embedded_default() -> Result<Self, ConfigError> {
        Self::from_yaml(EMBEDDED_DEFAULT, "embedded default config")
    }

    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |field: String, message: &str| ConfigError::Invalid {
            origin: origin.to_string(),
            field,
            message: message.to_string(),
        };
        for (i, d) in self.datasets.iter().enumerate() {
            check_name(&d.name).map_err(|m| invalid(format!("datasets[{i}].name"), m))?;
        }
        for (i, v) in self.views.iter().enumerate() {
            check_name(&v.name).map_err(|m| invalid(format!("views[{i}].name"), m))?;
            if v.sql.trim().is_empty() {
                return Err(invalid(format!("views[{i}].sql"), "must not be empty"));
            }
        }
        if self.stamp.cache_capacity == 0 {
            return Err(invalid("stamp.cache_capacity".into(), "must be at least 1"));
        }
        if self.stamp.audience.is_empty() {
            return Err(invalid("stamp.audience".into(), "must not be empty"));
        }
        Ok(())
    }
}

/// `table` or `schema.table`, each part a plain identifier, so names mean the same to the
/// engine, the gateway's SQL parser and Cedar.
fn check_name(name: &str) -> Result<(), &'static str> {
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() > 2 {
        return Err("must be `table` or `schema.table`");
    }
    for part in parts {
        let mut chars = part.chars();
        let starts_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_');
        if !starts_ok || !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
            return Err("each part must be a lower-case identifier ([a-z_][a-z0-9_]*)");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_parses() {
        let config = Config::embedded_default().unwrap();
        assert!(config.demo_data);
        assert!(!config.views.is_empty());
        assert!(config.http_listen.ip().is_loopback());
        assert!(config.flight_listen.ip().is_loopback());
    }

    #[test]
    fn unknown_field_names_its_path() {
        let err = Config::from_yaml("sql:\n  allow_dll: true\n", "test.yaml").unwrap_err().to_string();
        assert!(err.contains("test.yaml"), "{err}");
        assert!(err.contains("sql"), "{err}");
        assert!(err.contains("allow_dll"), "{err}");
    }

    #[test]
    fn bad_value_names_its_path() {
        let err = Config::from_yaml("datasets:\n  - name: t\n    path: x.csv\n    format: xml\n", "c.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("datasets[0].format"), "{err}");
        let err = Config::from_yaml("http_listen: nowhere\n", "c.yaml").unwrap_err().to_string();
        assert!(err.contains("http_listen"), "{err}");
    }

    #[test]
    fn bad_names_are_refused() {
        for name in ["Orders", "a.b.c", "1t", "drop table", ""] {
            let yaml = format!("views:\n  - name: '{name}'\n    sql: SELECT 1\n");
            let err = Config::from_yaml(&yaml, "c.yaml").unwrap_err().to_string();
            assert!(err.contains("views[0].name"), "{name}: {err}");
        }
    }
}
