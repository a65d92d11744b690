//! Gateway configuration: YAML, unknown fields refused, errors name the field's path, secrets
//! by reference (`${env:NAME}`, `${file:/path}`) so the file itself holds none.
//!
//! Seed order: command-line flags, then the file. `gateway check -c FILE` runs all of this
//! plus the certificate and key checks without binding a port.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// HTTPS API, forwarded to the engine's HTTP port.
    #[serde(default = "default_api")]
    pub api: Listener,
    /// Flight SQL / gRPC over TLS, forwarded to the engine's Flight port over h2c.
    #[serde(default = "default_flight")]
    pub flight: Listener,
    /// Plain HTTP `/healthz` and `/readyz`.
    #[serde(default = "default_health")]
    pub health: HealthListener,
    pub tls: TlsConfig,
    pub stamp: StampConfig,
    #[serde(default)]
    pub timeouts: Timeouts,
    /// What SIGTERM does: drain, then close and wait for what is in flight.
    #[serde(default)]
    pub shutdown: ShutdownConfig,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub auth: AuthConfig,
    /// Cedar policies: required, so a gateway never runs without them.
    pub authorization: AuthorizationConfig,
    /// Off unless configured.
    #[serde(default)]
    pub rate_limits: RateLimitConfig,
    /// SIEM audit events; off (no sinks) unless configured.
    #[serde(default)]
    pub audit: AuditConfig,
    /// The file this config was read from, for reloading the parts that reload (quotas).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// Where audit events go and what happens when they cannot be written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// `deny`: refuse requests (503) while an event cannot be written; `allow`: keep serving.
    #[serde(default)]
    pub on_failure: OnAuditFailure,
    /// SQL text in events: `full`, `hashed` (SHA-256) or `off`.
    #[serde(default)]
    pub sql: SqlInAudit,
    /// Events waiting for the writer; past it, requests wait (nothing is dropped).
    #[serde(default = "queue_capacity")]
    pub queue_capacity: usize,
    /// Network sinks' on-disk spool (one folder per sink). Required with a network sink.
    #[serde(default)]
    pub spool_dir: Option<PathBuf>,
    /// Per network sink; past it, events for that sink are dropped (`allow`) or requests
    /// refused (`deny`).
    #[serde(default = "gib1")]
    pub spool_max_bytes: u64,
    /// A successful sign-in event per principal, method and source IP at most this often
    /// (0: one per request). Failures are always recorded.
    #[serde(default = "secs300")]
    pub signin_interval_secs: u64,
    /// Connection refusals below HTTP (TLS failures, connection limits, header deadlines,
    /// HTTP/2 protocol errors): the first per source and reason at once, the rest as one
    /// event per source and reason per interval, with their count.
    #[serde(default = "secs10")]
    pub refusal_interval_secs: u64,
    /// A security finding when one source IP gets this many 401/403 within `window_secs`.
    #[serde(default)]
    pub finding: FindingConfig,
    #[serde(default)]
    pub sinks: Vec<SinkConfig>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            on_failure: OnAuditFailure::default(),
            sql: SqlInAudit::default(),
            queue_capacity: queue_capacity(),
            spool_dir: None,
            spool_max_bytes: gib1(),
            signin_interval_secs: 300,
            refusal_interval_secs: 10,
            finding: FindingConfig::default(),
            sinks: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnAuditFailure {
    #[default]
    Deny,
    Allow,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SqlInAudit {
    #[default]
    Full,
    Hashed,
    Off,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FindingConfig {
    /// 0 turns findings off.
    #[serde(default = "twenty")]
    pub threshold: u32,
    #[serde(default = "secs60")]
    pub window_secs: u64,
}

impl Default for FindingConfig {
    fn default() -> Self {
        Self { threshold: 20, window_secs: 60 }
    }
}

/// One destination for events; several may be configured at once.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SinkConfig {
    Stdout,
    File {
        path: PathBuf,
        /// Rotate when the file would grow past this.
        #[serde(default = "mib100")]
        max_bytes: u64,
        /// Rotated files kept (`PATH.1` newest … `PATH.N`).
        #[serde(default = "five")]
        keep: usize,
        #[serde(default)]
        fsync: FsyncPolicy,
    },
    Syslog {
        /// `host:port` of an RFC 5424 receiver over TCP (octet-counted framing, RFC 6587).
        address: String,
        /// TLS (RFC 5425) verified against this CA bundle; plain TCP when absent.
        #[serde(default)]
        tls_ca_file: Option<PathBuf>,
        /// The name checked against the receiver's certificate (default: the host).
        #[serde(default)]
        tls_server_name: Option<String>,
        #[serde(default = "facility")]
        facility: u8,
        #[serde(default = "app_name")]
        app_name: String,
    },
    Http {
        url: String,
        /// `json` (a JSON array of events per POST) or `splunk_hec`.
        #[serde(default)]
        format: HttpFormat,
        /// Sent as `Authorization: Splunk TOKEN` (HEC) or `Bearer TOKEN` (json); use
        /// `${env:NAME}` or `${file:PATH}`.
        #[serde(default)]
        token: Option<Secret>,
        /// More trust anchors for an https receiver with a private CA.
        #[serde(default)]
        ca_file: Option<PathBuf>,
        #[serde(default = "batch_events")]
        batch_events: usize,
        #[serde(default = "secs30")]
        max_backoff_secs: u64,
    },
}

impl SinkConfig {
    /// Network sinks go through the spool; local ones are written by the writer thread.
    pub fn is_network(&self) -> bool {
        matches!(self, SinkConfig::Syslog { .. } | SinkConfig::Http { .. })
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// After every batch the writer takes from the queue (durable on return).
    #[default]
    Batch,
    /// About once a second.
    Interval,
    /// Left to the OS.
    Never,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpFormat {
    #[default]
    Json,
    SplunkHec,
}

/// A configured secret: `${env:NAME}` / `${file:PATH}` or inline; never printed by `{:?}`.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Every request, by client IP, before authentication.
    #[serde(default)]
    pub per_ip: Option<QuotaConfig>,
    /// Failed authentications by client IP; past it the address is refused for a while.
    #[serde(default)]
    pub failed_auth_per_ip: Option<QuotaConfig>,
    /// Every authenticated request, by principal.
    #[serde(default)]
    pub per_principal: Option<QuotaConfig>,
    /// Overrides by group (the most generous of a principal's groups applies).
    #[serde(default)]
    pub groups: std::collections::HashMap<String, QuotaConfig>,
    /// Overrides by principal id (win over groups).
    #[serde(default)]
    pub principals: std::collections::HashMap<String, QuotaConfig>,
}

/// `requests` per `per_secs` seconds, sustained, with bursts of up to `burst` (default:
/// `requests`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    pub requests: u32,
    #[serde(default = "one")]
    pub per_secs: u64,
    #[serde(default)]
    pub burst: Option<u32>,
}

fn one() -> u64 {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationConfig {
    /// Directory with `schema.cedarschema`, `*.cedar` and optionally `entities.json`.
    pub policies: PathBuf,
    /// The engine's default catalog and schema, for one- and two-part table names.
    #[serde(default = "default_catalog")]
    pub default_catalog: String,
    #[serde(default = "default_schema")]
    pub default_schema: String,
    /// Principals whose Cedar entity is kept built (each for up to a minute).
    #[serde(default = "cache_entries")]
    pub principal_cache_entries: usize,
    /// The engine's configuration file: each dataset and view it defines becomes a Cedar
    /// `Dataset` entity with its `tenant` and `classification`, and a query naming a table
    /// it does not serve is answered 404. Reloaded like the policies.
    #[serde(default)]
    pub engine_config: Option<PathBuf>,
}

impl AuthorizationConfig {
    pub fn new(policies: PathBuf) -> Self {
        Self {
            policies,
            default_catalog: default_catalog(),
            default_schema: default_schema(),
            principal_cache_entries: cache_entries(),
            engine_config: None,
        }
    }
}

fn default_catalog() -> String {
    "datafusion".into()
}

fn default_schema() -> String {
    "public".into()
}

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

/// How the gateway connects to an `https://` upstream.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    /// CA bundle the engine's certificate must chain to (default: the Mozilla roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The gateway's client certificate chain and key, for an engine that requires mTLS.
    #[serde(default)]
    pub certificate_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// Per-listener authentication. By default every configured method is accepted: OIDC when
/// providers are configured, API keys when keys are, client certificates when
/// `tls.client_auth` is not `none`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerAuthConfig {
    #[serde(default)]
    pub methods: Option<Vec<AuthMethodName>>,
    /// Names of the OIDC providers whose tokens this listener accepts (default: all).
    #[serde(default)]
    pub oidc_providers: Option<Vec<String>>,
    /// Require a verified client certificate *and* a token or key (the token gives the
    /// principal, the certificate's identity is kept for policy).
    #[serde(default)]
    pub require_client_certificate: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethodName {
    Oidc,
    ApiKey,
    Mtls,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default)]
    pub oidc: Vec<OidcProviderConfig>,
    #[serde(default)]
    pub api_keys: Option<ApiKeysConfig>,
    /// Bearer tokens longer than this are refused unread.
    #[serde(default = "kib8")]
    pub max_token_bytes: usize,
    /// Verified tokens remembered (by SHA-256), each until its own expiry at the latest.
    #[serde(default = "cache_entries")]
    pub token_cache_entries: usize,
    /// Lifetime of the bearer token the Flight Handshake returns.
    #[serde(default = "secs3600")]
    pub session_ttl_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            oidc: Vec::new(),
            api_keys: None,
            max_token_bytes: kib8(),
            token_cache_entries: cache_entries(),
            session_ttl_secs: 3600,
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
    #[serde(default = "secs30")]
    pub leeway_secs: u64,
    /// Keys from here instead of discovery.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Keys from a file instead of over HTTP.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// Extra CA bundle for the provider's TLS (the Mozilla roots are always trusted).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default = "secs300")]
    pub refresh_secs: u64,
    #[serde(default = "secs30")]
    pub unknown_kid_cooldown_secs: u64,
    #[serde(default)]
    pub claims: ClaimMapping,
}

/// Where principal fields come from in a token. Paths may be nested (`realm_access.roles`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimMapping {
    #[serde(default = "claim_sub")]
    pub user_id: String,
    #[serde(default = "claim_email")]
    pub email: String,
    #[serde(default = "claim_groups")]
    pub groups: String,
    #[serde(default)]
    pub tenant: Option<String>,
}

impl Default for ClaimMapping {
    fn default() -> Self {
        Self { user_id: claim_sub(), email: claim_email(), groups: claim_groups(), tenant: None }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeysConfig {
    /// A YAML file `keys: [...]` with entries like the inline ones; reloaded on change.
    #[serde(default)]
    pub file: Option<PathBuf>,
    #[serde(default)]
    pub keys: Vec<ApiKeyEntry>,
}

/// One API key: only its hash is stored.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyEntry {
    /// The principal id the key authenticates as.
    pub name: String,
    /// `sha256:<64 hex digits>`, as printed by `gateway apikey new`.
    pub hash: String,
    #[serde(default)]
    pub groups: Vec<String>,
    /// The tenant the key belongs to, for tenant-isolation policies.
    #[serde(default)]
    pub tenant: Option<String>,
    /// `2027-01-31` or an RFC 3339 date-time; refused from then on.
    #[serde(default)]
    pub expires: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthListener {
    pub listen: SocketAddr,
}

/// Server certificate and client-certificate policy. Each PEM may be given inline, as a
/// `${env:..}` / `${file:..}` reference, or as a `*_file` path.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    #[serde(default)]
    pub certificate: Option<String>,
    #[serde(default)]
    pub certificate_file: Option<PathBuf>,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// CA bundle that client certificates must chain to.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// Certificate revocation lists (PEM) checked for client certificates.
    #[serde(default)]
    pub crl_files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// No client certificates are asked for.
    #[default]
    None,
    /// Asked for and verified when sent; requests without one need another method.
    Optional,
    /// The handshake fails without a valid client certificate.
    Required,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StampConfig {
    /// PEM PKCS#8 Ed25519 private key (inline or reference) ...
    #[serde(default)]
    pub key: Option<String>,
    /// ... or its path.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    #[serde(default = "default_audience")]
    pub audience: String,
    /// Stamp lifetime, at most 60 s.
    #[serde(default = "default_lifetime")]
    pub lifetime_secs: u64,
}

/// Inline private keys never reach a log through `{:?}`.
fn redacted(key: &Option<String>) -> &'static str {
    if key.is_some() { "<redacted>" } else { "None" }
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("certificate", &self.certificate.as_ref().map(|_| "<inline>"))
            .field("certificate_file", &self.certificate_file)
            .field("key", &redacted(&self.key))
            .field("key_file", &self.key_file)
            .field("client_auth", &self.client_auth)
            .field("client_ca_file", &self.client_ca_file)
            .field("crl_files", &self.crl_files)
            .finish()
    }
}

impl std::fmt::Debug for StampConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StampConfig")
            .field("key", &redacted(&self.key))
            .field("key_file", &self.key_file)
            .field("audience", &self.audience)
            .field("lifetime_secs", &self.lifetime_secs)
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// From accept to the end of the first request's head: the TLS handshake and the request
    /// line and headers (HTTP/1.1) or the first HEADERS (h2). Later HTTP/1.1 requests on the
    /// connection get as long for their head, from their first byte.
    #[serde(default = "secs10")]
    pub client_header_secs: u64,
    /// A connection with no request in flight is closed after this long (h2 with GOAWAY).
    #[serde(default = "secs60")]
    pub idle_secs: u64,
    /// Time to read what authorization needs: the SQL body of `POST /v1/sql`, or a Flight
    /// call's first gRPC message (408 / DEADLINE_EXCEEDED).
    #[serde(default = "secs30")]
    pub client_body_secs: u64,
    /// A streamed body (request or response) that yields nothing for this long is cut off.
    #[serde(default = "secs300")]
    pub stream_idle_secs: u64,
    /// A response the client does not read for this long: the connection is closed.
    #[serde(default = "secs60")]
    pub client_write_secs: u64,
    #[serde(default = "secs5")]
    pub upstream_connect_secs: u64,
    /// Time until the upstream's response headers (the body then streams, see
    /// `stream_idle_secs`).
    #[serde(default = "secs300")]
    pub upstream_response_secs: u64,
}

/// SIGTERM (or Ctrl-C): first `/readyz` answers 503 while every listener keeps serving for
/// `drain_secs`, so Kubernetes and load balancers stop routing new requests here; then the
/// listeners close (HTTP/2 clients get GOAWAY, HTTP/1.1 keep-alive ends after the current
/// response) and requests and streams in flight get `grace_secs` to finish. A second signal
/// skips what is left of the drain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownConfig {
    #[serde(default = "secs5")]
    pub drain_secs: u64,
    #[serde(default = "secs25")]
    pub grace_secs: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self { drain_secs: secs5(), grace_secs: secs25() }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest request header block.
    #[serde(default = "kib64")]
    pub max_header_bytes: usize,
    /// Largest request body on the API listener (SQL text).
    #[serde(default = "mib16")]
    pub max_api_body_bytes: usize,
    /// Client connections open at once, both TLS listeners together. Unset: derived from the
    /// process's open-file limit (half of it, less a reserve, since each client connection
    /// can hold one to the engine). Connections past it are closed before the TLS handshake.
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// Client connections open at once from one source IP address.
    #[serde(default = "per_ip_connections")]
    pub max_connections_per_ip: usize,
    /// Concurrent HTTP/2 streams per connection (SETTINGS_MAX_CONCURRENT_STREAMS).
    #[serde(default = "streams_per_connection")]
    pub max_streams_per_connection: u32,
    /// HTTP/2 control frames (SETTINGS, PING, WINDOW_UPDATE, PRIORITY, RST_STREAM) a client
    /// may send per second, plus one per KiB the gateway sent it; past that the connection
    /// gets GOAWAY and is closed.
    #[serde(default = "control_frames")]
    pub max_control_frames_per_sec: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            client_header_secs: 10,
            idle_secs: 60,
            client_body_secs: 30,
            stream_idle_secs: 300,
            client_write_secs: 60,
            upstream_connect_secs: 5,
            upstream_response_secs: 300,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: kib64(),
            max_api_body_bytes: mib16(),
            max_connections: None,
            max_connections_per_ip: per_ip_connections(),
            max_streams_per_connection: streams_per_connection(),
            max_control_frames_per_sec: control_frames(),
        }
    }
}

fn per_ip_connections() -> usize {
    256
}

fn streams_per_connection() -> u32 {
    128
}

fn control_frames() -> u32 {
    1000
}

fn default_api() -> Listener {
    Listener {
        listen: SocketAddr::from(([0, 0, 0, 0], 8090)),
        upstream: "http://127.0.0.1:8091".into(),
        upstream_tls: None,
        auth: ListenerAuthConfig::default(),
    }
}
fn default_flight() -> Listener {
    Listener {
        listen: SocketAddr::from(([0, 0, 0, 0], 50051)),
        upstream: "http://127.0.0.1:50052".into(),
        upstream_tls: None,
        auth: ListenerAuthConfig::default(),
    }
}
fn default_health() -> HealthListener {
    HealthListener { listen: SocketAddr::from(([0, 0, 0, 0], 9090)) }
}
fn default_audience() -> String {
    identity::DEFAULT_AUDIENCE.into()
}
fn default_lifetime() -> u64 {
    60
}
fn queue_capacity() -> usize {
    65_536
}
fn gib1() -> u64 {
    1 << 30
}
fn mib100() -> u64 {
    100 << 20
}
fn twenty() -> u32 {
    20
}
fn five() -> usize {
    5
}
fn facility() -> u8 {
    13
}
fn app_name() -> String {
    "portcullis".into()
}
fn batch_events() -> usize {
    500
}
fn secs30() -> u64 {
    30
}
fn secs3600() -> u64 {
    3600
}
fn kib8() -> usize {
    8 * 1024
}
fn cache_entries() -> usize {
    100_000
}
fn claim_sub() -> String {
    "sub".into()
}
fn claim_email() -> String {
    "email".into()
}
fn claim_groups() -> String {
    "groups".into()
}
fn secs5() -> u64 {
    5
}
fn secs10() -> u64 {
    10
}
fn secs25() -> u64 {
    25
}
fn secs60() -> u64 {
    60
}
fn secs300() -> u64 {
    300
}
fn kib64() -> usize {
    64 * 1024
}
fn mib16() -> usize {
    16 * 1024 * 1024
}

/// A configuration problem, always naming where it is.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: at `{field}`: {message}")]
pub struct ConfigError {
    pub origin: String,
    pub field: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { origin: "config".into(), field: field.into(), message: message.into() }
    }
}

impl Config {
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let deserializer = serde_yaml_ng::Deserializer::from_str(text);
        serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let field = e.path().to_string();
            ConfigError {
                origin: origin.into(),
                field: if field == "." { "(top level)".into() } else { field },
                message: e.into_inner().to_string(),
            }
        })
    }

    /// Reads a file; relative paths inside are resolved against its folder.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            origin: origin.clone(),
            field: "(file)".into(),
            message: e.to_string(),
        })?;
        let mut config = Self::from_yaml(&text, &origin)?;
        config.source = Some(path.to_path_buf());
        if let Some(dir) = path.parent() {
            let fix = |p: &mut Option<PathBuf>| {
                if let Some(p) = p {
                    *p = dir.join(&*p);
                }
            };
            fix(&mut config.tls.certificate_file);
            fix(&mut config.tls.key_file);
            fix(&mut config.tls.client_ca_file);
            for listener in [&mut config.api, &mut config.flight] {
                if let Some(tls) = &mut listener.upstream_tls {
                    fix(&mut tls.ca_file);
                    fix(&mut tls.certificate_file);
                    fix(&mut tls.key_file);
                }
            }
            fix(&mut config.stamp.key_file);
            // `${file:PATH}` references follow the same rule as the `*_file` fields.
            let fix_reference = |value: &mut Option<String>| {
                if let Some(value) = value {
                    *value = reference_relative_to(value, dir);
                }
            };
            fix_reference(&mut config.tls.certificate);
            fix_reference(&mut config.tls.key);
            fix_reference(&mut config.stamp.key);
            for provider in &mut config.auth.oidc {
                fix(&mut provider.jwks_file);
                fix(&mut provider.ca_file);
            }
            if let Some(keys) = &mut config.auth.api_keys {
                fix(&mut keys.file);
            }
            config.authorization.policies = dir.join(&config.authorization.policies);
            if let Some(engine) = &mut config.authorization.engine_config {
                *engine = dir.join(&*engine);
            }
            if let Some(spool) = &mut config.audit.spool_dir {
                *spool = dir.join(&*spool);
            }
            for sink in &mut config.audit.sinks {
                match sink {
                    SinkConfig::File { path, .. } => *path = dir.join(&*path),
                    SinkConfig::Syslog { tls_ca_file, .. } => fix(tls_ca_file),
                    SinkConfig::Http { ca_file, token, .. } => {
                        fix(ca_file);
                        if let Some(token) = token {
                            token.0 = reference_relative_to(&token.0, dir);
                        }
                    }
                    SinkConfig::Stdout => {}
                }
            }
            for crl in &mut config.tls.crl_files {
                *crl = dir.join(&*crl);
            }
        }
        Ok(config)
    }
}

/// `${file:RELATIVE}` → `${file:DIR/RELATIVE}`; anything else unchanged.
fn reference_relative_to(value: &str, dir: &Path) -> String {
    match file_reference(value) {
        Some(path) if Path::new(path).is_relative() => format!("${{file:{}}}", dir.join(path).display()),
        _ => value.to_string(),
    }
}

/// Resolves a PEM given inline or as `${env:NAME}` / `${file:PATH}`, or read from `file`.
/// `field` names the setting in errors; the secret itself never appears in one.
pub fn resolve_pem(inline: Option<&str>, file: Option<&Path>, field: &str) -> Result<Vec<u8>, ConfigError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(ConfigError::new(field, "give either the inline value or the _file path, not both")),
        (None, None) => Err(ConfigError::new(field, "missing")),
        (None, Some(path)) => std::fs::read(path)
            .map_err(|e| ConfigError::new(format!("{field}_file"), format!("{}: {e}", path.display()))),
        (Some(value), None) => resolve_reference(value, field).map(String::into_bytes),
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

    const MINIMAL: &str = "tls:\n  certificate_file: c.pem\n  key_file: k.pem\nstamp:\n  key_file: s.pem\nauthorization:\n  policies: p\n";

    #[test]
    fn file_references_are_relative_to_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.yaml");
        std::fs::write(
            &path,
            "tls:\n  certificate: ${file:c.pem}\n  key: ${file:/abs/k.pem}\nstamp:\n  key: ${env:STAMP}\nauthorization:\n  policies: p\n",
        )
        .unwrap();
        let config = Config::from_file(&path).unwrap();
        let expected = format!("${{file:{}}}", dir.path().join("c.pem").display());
        assert_eq!(config.tls.certificate.as_deref(), Some(expected.as_str()));
        assert_eq!(config.tls.key.as_deref(), Some("${file:/abs/k.pem}"));
        assert_eq!(config.stamp.key.as_deref(), Some("${env:STAMP}"));
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
        let err = resolve_pem(Some("a"), Some(&file), "tls.key").unwrap_err().to_string();
        assert!(err.contains("not both"), "{err}");
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
