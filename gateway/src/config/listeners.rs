//! `api`, `flight` and `health`: where the gateway listens, where it forwards, and which
//! authentication methods each listener accepts.

use std::net::SocketAddr;

use serde::Deserialize;

use super::path::ConfigPath;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    pub listen: SocketAddr,
    /// `http://127.0.0.1:PORT` (loopback plaintext, the default), or `https://HOST:PORT` with
    /// `upstream_tls` for an engine that is not on loopback.
    pub upstream: String,
    /// TLS to an `https://` upstream: its CA and the gateway's client certificate.
    #[serde(default)]
    pub upstream_tls: Option<UpstreamTls>,
    /// Which authentication methods this listener accepts.
    #[serde(default)]
    pub auth: ListenerAuthConfig,
}

impl Listener {
    /// A listener forwarding to a plaintext upstream on `upstream` (loopback), every
    /// configured authentication method accepted.
    pub fn new(listen: SocketAddr, upstream: SocketAddr) -> Self {
        Self { listen, upstream: format!("http://{upstream}"), upstream_tls: None, auth: ListenerAuthConfig::default() }
    }

    /// HTTPS API on 8090, forwarded to the engine's HTTP port 8091 (the Spice runtime's ports).
    pub(super) fn api() -> Self {
        Self::new(SocketAddr::from(([0, 0, 0, 0], 8090)), SocketAddr::from(([127, 0, 0, 1], 8091)))
    }

    /// Flight SQL on 50051, forwarded to the engine's Flight port 50052.
    pub(super) fn flight() -> Self {
        Self::new(SocketAddr::from(([0, 0, 0, 0], 50051)), SocketAddr::from(([127, 0, 0, 1], 50052)))
    }
}

/// How the gateway connects to an `https://` upstream.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamTls {
    /// CA bundle the engine's certificate must chain to (default: the Mozilla roots).
    pub ca_file: Option<ConfigPath>,
    /// The gateway's client certificate chain and key, for an engine that requires mTLS.
    pub certificate_file: Option<ConfigPath>,
    pub key_file: Option<ConfigPath>,
}

/// Per-listener authentication. By default every configured method is accepted: OIDC when
/// providers are configured, API keys when keys are, client certificates when
/// `tls.client_auth` is not `none`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenerAuthConfig {
    pub methods: Option<Vec<AuthMethodName>>,
    /// Names of the OIDC providers whose tokens this listener accepts (default: all).
    pub oidc_providers: Option<Vec<String>>,
    /// Require a verified client certificate *and* a token or key (the token gives the
    /// principal, the certificate's identity is kept for policy).
    pub require_client_certificate: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethodName {
    Oidc,
    ApiKey,
    Mtls,
    /// The sealed session cookie of a browser sign-in (the API listener only).
    Browser,
}

/// Plain HTTP `/healthz`, `/readyz` and `/metrics`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthListener {
    pub listen: SocketAddr,
}

impl Default for HealthListener {
    fn default() -> Self {
        Self { listen: SocketAddr::from(([0, 0, 0, 0], 9090)) }
    }
}
