//! Gateway configuration: YAML, unknown fields refused, errors name the field's path, secrets
//! by reference (`${env:NAME}`, `${file:PATH}`) so the file itself holds none, and every path
//! relative to the config file's folder ([`ConfigPath`]).
//!
//! One file per section; each section's `Default` (or, for a section with a required field,
//! its constructor) is the one source of its defaults. `gateway check -c FILE` runs all of
//! this plus the certificate and key checks without binding a port.

mod audit;
mod auth;
mod authorization;
mod browser;
mod error;
mod limits;
mod listeners;
mod path;
mod query_limits;
mod rate_limits;
mod reference;
mod stamp;
mod tls;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use audit::{
    AuditConfig, FindingConfig, FsyncPolicy, HttpFormat, OnAuditFailure, SessionBookkeeping, SinkConfig, SqlInAudit,
};
pub use auth::{ApiKeyEntry, ApiKeysConfig, AuthConfig, ClaimMapping, OidcProviderConfig};
pub use authorization::AuthorizationConfig;
pub use browser::{BrowserLoginConfig, BrowserSessionsConfig};
pub use error::ConfigError;
pub use limits::{Limits, RuntimeConfig, ShutdownConfig, Timeouts};
pub use listeners::{AuthMethodName, HealthListener, Listener, ListenerAuthConfig, UpstreamTls};
pub use path::ConfigPath;
pub use query_limits::{QueryLimitsConfig, RowsPerWindow, TierConfig};
pub use rate_limits::{QuotaConfig, RateLimitConfig};
pub use reference::{Reference, resolve_pem, resolve_reference};
pub use stamp::StampConfig;
pub use tls::{ClientAuth, TlsConfig};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// HTTPS API, forwarded to the engine's HTTP port.
    #[serde(default = "Listener::api")]
    pub api: Listener,
    /// Flight SQL / gRPC over TLS, forwarded to the engine's Flight port over h2c.
    #[serde(default = "Listener::flight")]
    pub flight: Listener,
    /// Plain HTTP `/healthz`, `/readyz` and `/metrics`.
    #[serde(default)]
    pub health: HealthListener,
    pub tls: TlsConfig,
    pub stamp: StampConfig,
    #[serde(default)]
    pub timeouts: Timeouts,
    /// What SIGTERM does: drain, then close and wait for what is in flight.
    #[serde(default)]
    pub shutdown: ShutdownConfig,
    #[serde(default)]
    pub runtime: RuntimeConfig,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub auth: AuthConfig,
    /// Cedar policies: required, so a gateway never runs without them.
    pub authorization: AuthorizationConfig,
    /// Off unless configured.
    #[serde(default)]
    pub rate_limits: RateLimitConfig,
    /// What each caller's statements may take; off unless configured.
    #[serde(default)]
    pub query_limits: QueryLimitsConfig,
    /// SIEM audit events; off (no sinks) unless configured.
    #[serde(default)]
    pub audit: AuditConfig,
    /// The file this config was read from, for reloading the parts that reload (quotas).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

impl Config {
    /// The sections a config file must have; every other section at its default (the ports
    /// of [`Listener::api`], [`Listener::flight`] and [`HealthListener`], no authentication
    /// method, no audit sink).
    pub fn new(tls: TlsConfig, stamp: StampConfig, authorization: AuthorizationConfig) -> Self {
        Self {
            api: Listener::api(),
            flight: Listener::flight(),
            health: HealthListener::default(),
            tls,
            stamp,
            timeouts: Timeouts::default(),
            shutdown: ShutdownConfig::default(),
            runtime: RuntimeConfig::default(),
            limits: Limits::default(),
            auth: AuthConfig::default(),
            authorization,
            rate_limits: RateLimitConfig::default(),
            query_limits: QueryLimitsConfig::default(),
            audit: AuditConfig::default(),
            source: None,
        }
    }

    /// Parses YAML; relative paths stay relative to the working directory.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let deserializer = serde_yaml_ng::Deserializer::from_str(text);
        serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let field = e.path().to_string();
            // The YAML error repeats the field (`api.listen: invalid …`): said once, with the
            // form an address takes when that is what was wrong.
            let mut message = e.into_inner().to_string();
            if let Some(rest) = message.strip_prefix(&format!("{field}: ")) {
                message = rest.to_string();
            }
            if message.starts_with("invalid socket address syntax") {
                message.push_str(" (expected IP:PORT, such as 0.0.0.0:8090, 127.0.0.1:8090 or [::]:8090)");
            }
            ConfigError {
                origin: origin.into(),
                field: if field == "." { "(top level)".into() } else { field },
                message,
            }
        })
    }

    /// Reads a file; relative paths inside, `${file:PATH}` references included, are resolved
    /// against its folder.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            origin: origin.clone(),
            field: "(file)".into(),
            message: e.to_string(),
        })?;
        let dir = path.parent().unwrap_or(Path::new(""));
        let mut config = path::relative_to(dir, || Self::from_yaml(&text, &origin))?;
        config.source = Some(path.to_path_buf());
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "tls:\n  certificate_file: c.pem\n  key_file: k.pem\nstamp:\n  key_file: s.pem\nauthorization:\n  policies: p\n";

    #[test]
    fn a_bad_address_names_its_field_once_and_the_form_expected() {
        let error =
            Config::from_yaml("api: {listen: '8090', upstream: 'http://127.0.0.1:1'}\n", "gw.yaml").unwrap_err();
        let text = error.to_string();
        assert_eq!(error.field, "api.listen", "{text}");
        assert!(text.starts_with("gw.yaml: at `api.listen`: invalid socket address syntax"), "{text}");
        assert!(text.contains("expected IP:PORT"), "{text}");
    }

    #[test]
    fn paths_and_file_references_are_relative_to_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("c.pem"), "CERT-FROM-FILE").unwrap();
        let path = dir.path().join("gateway.yaml");
        std::fs::write(
            &path,
            "tls:\n  certificate: ${file:c.pem}\n  key: ${file:/abs/k.pem}\n  crl_files: [crl/a.pem]\nstamp:\n  key: ${env:STAMP}\nauthorization:\n  policies: p\naudit:\n  sinks:\n    - {type: file, path: audit/events.log}\n",
        )
        .unwrap();
        // Read from another working directory's point of view: nothing may depend on it.
        let config = Config::from_file(&path).unwrap();
        let certificate = config.tls.certificate.as_ref().unwrap();
        assert_eq!(certificate.resolve("tls.certificate").unwrap(), "CERT-FROM-FILE");
        assert_eq!(config.tls.key.as_ref().unwrap().as_configured(), "${file:/abs/k.pem}");
        assert_eq!(config.stamp.key.as_ref().unwrap().as_configured(), "${env:STAMP}");
        assert_eq!(config.tls.crl_files[0].as_path(), dir.path().join("crl/a.pem"));
        assert_eq!(config.authorization.policies.as_path(), dir.path().join("p"));
        let SinkConfig::File { path: sink, .. } = &config.audit.sinks[0] else { panic!("a file sink") };
        assert_eq!(sink.as_path(), dir.path().join("audit/events.log"));
        // The same YAML not read from a file stays relative to the working directory.
        let text = std::fs::read_to_string(&path).unwrap();
        let config = Config::from_yaml(&text, "t").unwrap();
        assert_eq!(config.authorization.policies.as_path(), Path::new("p"));
        assert_eq!(config.tls.certificate.unwrap().as_configured(), "${file:c.pem}");
    }

    #[test]
    fn the_constructor_and_the_file_have_the_same_defaults() {
        let built = Config::new(
            TlsConfig::from_files("c.pem", "k.pem"),
            StampConfig::from_key_file("s.pem"),
            AuthorizationConfig::new("p"),
        );
        let parsed = Config::from_yaml(MINIMAL, "t").unwrap();
        assert_eq!(format!("{built:?}"), format!("{parsed:?}"));
        let provider: OidcProviderConfig =
            serde_yaml_ng::from_str("{name: n, issuer: 'https://i', audiences: [a]}").unwrap();
        let built = OidcProviderConfig::new("n", "https://i", vec!["a".into()]);
        assert_eq!(format!("{built:?}"), format!("{provider:?}"));
        let sink: SinkConfig = serde_yaml_ng::from_str("{type: file, path: x.log}").unwrap();
        assert_eq!(format!("{:?}", SinkConfig::file("x.log", FsyncPolicy::Batch)), format!("{sink:?}"));
    }

    #[test]
    fn defaults_mirror_the_spice_ports() {
        let config = Config::from_yaml(MINIMAL, "t").unwrap();
        assert_eq!(config.api.listen.port(), 8090);
        assert_eq!(config.flight.listen.port(), 50051);
        assert_eq!(config.health.listen.port(), 9090);
        assert_eq!(config.tls.client_auth, ClientAuth::None);
    }

    #[test]
    fn unknown_fields_and_bad_values_name_their_path() {
        let err = Config::from_yaml(&format!("{MINIMAL}timeouts:\n  idle: 3\n"), "g.yaml").unwrap_err().to_string();
        assert!(err.contains("g.yaml") && err.contains("timeouts") && err.contains("idle"), "{err}");
        let err = Config::from_yaml(&MINIMAL.replace("tls:\n", "tls:\n  client_auth: sometimes\n"), "g.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("tls.client_auth"), "{err}");
    }

    #[test]
    fn debug_output_redacts_inline_keys() {
        let yaml = "tls:\n  certificate: CERT\n  key: TOPSECRET-TLS\nstamp:\n  key: TOPSECRET-STAMP\nauthorization: {policies: p}\n";
        let config = Config::from_yaml(yaml, "t").unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("TOPSECRET"), "{debug}");
        assert!(debug.contains("<redacted>"));
    }
}
