//! Authentication: OIDC bearer tokens, API keys, client certificates, and the bearer
//! tokens the Flight Handshake hands out. One [`Authenticator`] serves every listener; each
//! listener's [`ListenerAuth`] says which methods it accepts.
//!
//! Per request, the expensive work is done once per credential, not once per request:
//! verified tokens are cached by SHA-256 until their expiry at the latest, API keys are one
//! SHA-256 and a map lookup, and a client certificate was read when the connection opened.

pub mod apikeys;
pub mod fetch;
pub mod jws;
pub mod oidc;

use std::sync::Arc;

use arc_swap::ArcSwap;
use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use http::HeaderMap;
use http::header::AUTHORIZATION;
use identity::{ExpiringCache, Principal};
use serde_json::Value;
use tokio::sync::watch;

use crate::config::{AuthMethodName, ClientAuth, Config, ConfigError, Listener};
use apikeys::ApiKeys;
use oidc::Provider;

/// The header services send their API key in.
pub const API_KEY_HEADER: &str = "x-api-key";
/// Prefix of the bearer tokens the Flight Handshake returns.
pub const SESSION_PREFIX: &str = "pcs_";
/// Longest time a verified token stays cached, whatever its own expiry.
const MAX_CACHE_SECS: u64 = 600;

/// Why a caller was not authenticated. Messages name the category and never contain the
/// credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// With what this listener accepts, so a caller is not told to try a method it refuses.
    #[error("no credentials: send {0}")]
    Missing(&'static str),
    #[error("token malformed: {0}")]
    Malformed(&'static str),
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("token issued in the future (iat beyond the clock leeway)")]
    IssuedInFuture,
    #[error("token signature invalid")]
    BadSignature,
    #[error("token algorithm not allowed")]
    AlgorithmNotAllowed,
    #[error("token issuer unknown or not trusted on this listener")]
    UnknownIssuer,
    #[error("token audience not accepted")]
    WrongAudience,
    #[error("token signed with an unknown key")]
    UnknownKey,
    #[error("token has no {0} claim")]
    MissingClaim(&'static str),
    #[error("API key invalid")]
    InvalidApiKey,
    #[error("API key expired")]
    ExpiredApiKey,
    #[error("session token invalid or expired; run the Flight handshake again")]
    InvalidSession,
    #[error("{0} not accepted on this listener")]
    MethodNotAllowed(&'static str),
    #[error("a verified client certificate is required on this listener")]
    ClientCertificateRequired,
    #[error("credentials ambiguous: send one of a bearer token or an API key")]
    Ambiguous,
    /// A browser session cookie that does not open (tampered, unknown key, malformed).
    #[error("{0}; sign in again at /auth/login")]
    SessionInvalid(&'static str),
    #[error("{0}; sign in again at /auth/login")]
    SessionExpired(&'static str),
    /// Not the caller's fault: the provider's keys have not been fetched yet (503).
    #[error("identity provider {0} has no keys yet; retry shortly")]
    KeysUnavailable(String),
}

impl AuthError {
    /// RFC 6750 §3.1: a request without credentials gets a bare challenge; a bad token gets
    /// `error="invalid_token"`.
    /// The category, for metrics (a closed set).
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing(_) => "missing",
            AuthError::Malformed(_) => "malformed",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::IssuedInFuture => "issued_in_future",
            AuthError::BadSignature => "bad_signature",
            AuthError::AlgorithmNotAllowed => "algorithm_not_allowed",
            AuthError::UnknownIssuer => "unknown_issuer",
            AuthError::WrongAudience => "wrong_audience",
            AuthError::UnknownKey => "unknown_key",
            AuthError::MissingClaim(_) => "missing_claim",
            AuthError::InvalidApiKey => "invalid_api_key",
            AuthError::ExpiredApiKey => "expired_api_key",
            AuthError::InvalidSession => "invalid_session",
            AuthError::MethodNotAllowed(_) => "method_not_allowed",
            AuthError::ClientCertificateRequired => "client_certificate_required",
            AuthError::Ambiguous => "ambiguous",
            AuthError::SessionInvalid(_) => "invalid_session_cookie",
            AuthError::SessionExpired(_) => "session_expired",
            AuthError::KeysUnavailable(_) => "keys_unavailable",
        }
    }

    pub fn is_missing(&self) -> bool {
        matches!(self, AuthError::Missing(_) | AuthError::ClientCertificateRequired)
    }
}

/// A request carrying two `Authorization` (or two `X-API-Key`) headers is refused: which
/// one a server reads differs between implementations, and a proxy in front may have checked
/// the other one.
fn single_credentials(headers: &HeaderMap) -> Result<(), AuthError> {
    let more_than_one = |name| headers.get_all(name).iter().nth(1).is_some();
    if more_than_one(AUTHORIZATION.as_str()) {
        return Err(AuthError::Malformed("more than one Authorization header"));
    }
    if more_than_one(API_KEY_HEADER) {
        return Err(AuthError::Malformed("more than one X-API-Key header"));
    }
    Ok(())
}

/// Which methods one listener accepts.
#[derive(Debug, Clone)]
pub struct ListenerAuth {
    oidc: bool,
    /// Browser session cookies (the API listener, with `auth.browser_sessions`).
    browser: bool,
    api_key: bool,
    mtls: bool,
    /// Indexes into the authenticator's providers that this listener trusts.
    providers: Vec<usize>,
    require_client_certificate: bool,
}

impl ListenerAuth {
    /// The credentials this listener takes, for the "no credentials" message.
    fn accepted(&self) -> &'static str {
        if self.browser {
            return "a bearer token, an API key (X-API-Key), a client certificate or a browser session (sign in at /auth/login)";
        }
        match (self.oidc, self.api_key, self.mtls) {
            (true, true, true) => "a bearer token, an API key (X-API-Key) or a client certificate",
            (true, true, false) => "a bearer token or an API key (X-API-Key)",
            (true, false, true) => "a bearer token or a client certificate",
            (false, true, true) => "an API key (X-API-Key) or a client certificate",
            (true, false, false) => "a bearer token",
            (false, true, false) => "an API key (X-API-Key)",
            (false, false, true) => "a client certificate",
            (false, false, false) => "credentials this listener accepts (none are configured)",
        }
    }

    pub fn from_config(listener: &Listener, config: &Config, field: &str) -> Result<Self, ConfigError> {
        let settings = &listener.auth;
        let has_oidc = !config.auth.oidc.is_empty();
        let has_keys = config.auth.api_keys.is_some();
        let has_mtls = config.tls.client_auth != ClientAuth::None;
        // Cookies are a browser's credential: only the HTTP API takes them.
        let has_browser = config.auth.browser_sessions.is_some() && field == "api";
        let (oidc, api_key, mtls, browser) = match &settings.methods {
            None => (has_oidc, has_keys, has_mtls, has_browser),
            Some(methods) => {
                let on = |m| methods.contains(&m);
                let field = format!("{field}.auth.methods");
                if on(AuthMethodName::Oidc) && !has_oidc {
                    return Err(ConfigError::new(field, "oidc is listed but auth.oidc has no providers"));
                }
                if on(AuthMethodName::ApiKey) && !has_keys {
                    return Err(ConfigError::new(field, "api_key is listed but auth.api_keys is not configured"));
                }
                if on(AuthMethodName::Mtls) && !has_mtls {
                    return Err(ConfigError::new(field, "mtls is listed but tls.client_auth is none"));
                }
                if on(AuthMethodName::Browser) && !has_browser {
                    return Err(ConfigError::new(
                        field,
                        "browser is listed but auth.browser_sessions is not configured (or this is not the api listener)",
                    ));
                }
                (
                    on(AuthMethodName::Oidc),
                    on(AuthMethodName::ApiKey),
                    on(AuthMethodName::Mtls),
                    on(AuthMethodName::Browser),
                )
            }
        };
        if !(oidc || api_key || mtls || browser) {
            return Err(ConfigError::new(
                format!("{field}.auth"),
                "no authentication method enabled: configure auth.oidc, auth.api_keys, or tls.client_auth \
                 (there is no anonymous access)",
            ));
        }
        if settings.require_client_certificate && !has_mtls {
            return Err(ConfigError::new(
                format!("{field}.auth.require_client_certificate"),
                "needs tls.client_auth optional or required",
            ));
        }
        let providers = match &settings.oidc_providers {
            None => (0..config.auth.oidc.len()).collect(),
            Some(names) => names
                .iter()
                .map(|name| {
                    config.auth.oidc.iter().position(|p| &p.name == name).ok_or_else(|| {
                        ConfigError::new(format!("{field}.auth.oidc_providers"), format!("no provider named {name:?}"))
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(Self {
            oidc,
            browser,
            api_key,
            mtls,
            providers,
            require_client_certificate: settings.require_client_certificate,
        })
    }

    /// Whether this listener takes browser session cookies.
    pub fn browser(&self) -> bool {
        self.browser
    }
}

/// A verified caller and until when its credential is valid (for Handshake sessions).
struct Authenticated {
    principal: Arc<Principal>,
    expires: Option<u64>,
}

pub struct Authenticator {
    providers: Vec<Arc<Provider>>,
    /// Browser sessions (sealed cookies), with `auth.browser_sessions`.
    browser_sessions: Option<Arc<crate::browser::Sessions>>,
    api_keys: ArcSwap<ApiKeys>,
    /// Verified tokens by SHA-256: the principal and the provider's index.
    tokens: ExpiringCache<[u8; 32], (Arc<Principal>, usize, u64)>,
    /// Handshake-issued bearer tokens by SHA-256.
    sessions: ExpiringCache<[u8; 32], (Arc<Principal>, u64)>,
    max_token_bytes: usize,
    session_ttl: u64,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("providers", &self.providers.iter().map(|p| p.name.as_str()).collect::<Vec<_>>())
            .field("api_keys", &self.api_keys.load().len())
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        let mut providers = Vec::new();
        for (i, provider) in config.auth.oidc.iter().enumerate() {
            let field = format!("auth.oidc[{i}]");
            if config.auth.oidc.iter().take(i).any(|p| p.name == provider.name || p.issuer == provider.issuer) {
                return Err(ConfigError::new(field, "two providers with one name or issuer"));
            }
            providers.push(Arc::new(Provider::new(provider, &field)?));
        }
        let api_keys = match &config.auth.api_keys {
            Some(keys) => ApiKeys::load(keys)?,
            None => ApiKeys::default(),
        };
        let browser_sessions = config
            .auth
            .browser_sessions
            .as_ref()
            .map(|s| crate::browser::Sessions::from_config(s, "auth.browser_sessions").map(Arc::new))
            .transpose()?;
        if browser_sessions.is_none()
            && let Some(i) = config.auth.oidc.iter().position(|p| p.browser_login.is_some())
        {
            return Err(ConfigError::new(
                format!("auth.oidc[{i}].browser_login"),
                "needs auth.browser_sessions (the keys that seal the session cookie)",
            ));
        }
        if config.auth.max_token_bytes < 256 {
            return Err(ConfigError::new("auth.max_token_bytes", "must be at least 256"));
        }
        Ok(Self {
            providers,
            browser_sessions,
            api_keys: ArcSwap::from_pointee(api_keys),
            tokens: ExpiringCache::new(config.auth.token_cache_entries),
            sessions: ExpiringCache::new(config.auth.token_cache_entries),
            max_token_bytes: config.auth.max_token_bytes,
            session_ttl: config.auth.session_ttl_secs.max(1),
        })
    }

    pub fn providers(&self) -> &[Arc<Provider>] {
        &self.providers
    }

    pub fn browser_sessions(&self) -> Option<&Arc<crate::browser::Sessions>> {
        self.browser_sessions.as_ref()
    }

    /// A browser's session, when this listener takes cookies, the request carries the session
    /// cookie and no other credential (a bearer token or API key wins over a stale cookie).
    pub fn browser_session(
        &self,
        listener: &ListenerAuth,
        headers: &HeaderMap,
        workload: Option<&Arc<Principal>>,
    ) -> Option<Result<crate::browser::Opened, AuthError>> {
        let sessions = self.browser_sessions.as_ref().filter(|_| listener.browser)?;
        if headers.contains_key(AUTHORIZATION) || headers.contains_key(API_KEY_HEADER) {
            return None;
        }
        let opened = sessions.from_headers(headers, crate::clock::unix_secs())?;
        Some(opened.and_then(|mut opened| {
            if listener.require_client_certificate && workload.is_none() {
                return Err(AuthError::ClientCertificateRequired);
            }
            let authenticated = Authenticated { principal: opened.principal, expires: None };
            opened.principal = with_client_certificate(authenticated, workload).principal;
            Ok(opened)
        }))
    }

    /// Starts each provider's key refresh loop.
    pub fn spawn_refreshers(&self, stopped: &watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
        self.providers.iter().map(|p| tokio::spawn(Arc::clone(p).keep_fresh(stopped.clone()))).collect()
    }

    /// Fetches every OIDC provider's key set once, for `gateway check --online`.
    pub async fn probe_providers(&self) -> Vec<(String, Result<usize, oidc::KeysError>)> {
        let mut out = Vec::new();
        for provider in &self.providers {
            out.push((provider.name.clone(), provider.probe().await));
        }
        out
    }

    /// Replaces the API keys (file reload); the old set serves until this returns.
    pub fn replace_api_keys(&self, keys: ApiKeys) {
        self.api_keys.store(Arc::new(keys));
    }

    /// Who is calling, from the request's credentials and the connection's certificate.
    pub async fn authenticate(
        &self,
        listener: &ListenerAuth,
        headers: &HeaderMap,
        workload: Option<&Arc<Principal>>,
    ) -> Result<Arc<Principal>, AuthError> {
        Ok(self.authenticate_inner(listener, headers, workload, crate::clock::unix_secs()).await?.principal)
    }

    async fn authenticate_inner(
        &self,
        listener: &ListenerAuth,
        headers: &HeaderMap,
        workload: Option<&Arc<Principal>>,
        now: u64,
    ) -> Result<Authenticated, AuthError> {
        if listener.require_client_certificate && workload.is_none() {
            return Err(AuthError::ClientCertificateRequired);
        }
        single_credentials(headers)?;
        let bearer = match headers.get(AUTHORIZATION) {
            None => None,
            Some(value) => match credentials(value.as_bytes()) {
                Some(Credentials::Bearer(token)) => Some(token),
                Some(Credentials::Basic(_)) => {
                    return Err(AuthError::MethodNotAllowed("Basic credentials (use the Flight handshake)"));
                }
                None => return Err(AuthError::Malformed("Authorization header is not Bearer <token>")),
            },
        };
        let api_key =
            headers.get(API_KEY_HEADER).map(|v| v.to_str().map_err(|_| AuthError::InvalidApiKey)).transpose()?;
        let authenticated = match (bearer, api_key) {
            (Some(_), Some(_)) => return Err(AuthError::Ambiguous),
            (Some(token), None) => self.secret(token, listener, now).await?,
            (None, Some(key)) => self.api_key(key, listener, now)?,
            (None, None) => {
                return match workload {
                    Some(workload) if listener.mtls => {
                        Ok(Authenticated { principal: Arc::clone(workload), expires: None })
                    }
                    _ => Err(AuthError::Missing(listener.accepted())),
                };
            }
        };
        Ok(with_client_certificate(authenticated, workload))
    }

    /// A bearer token or Handshake password: a session token, an API key, or a JWT.
    async fn secret(&self, secret: &str, listener: &ListenerAuth, now: u64) -> Result<Authenticated, AuthError> {
        if secret.starts_with(SESSION_PREFIX) {
            let (principal, expires) = self.sessions.get(&sha256(secret), now).ok_or(AuthError::InvalidSession)?;
            return Ok(Authenticated { principal, expires: Some(expires) });
        }
        if secret.starts_with(apikeys::PREFIX) {
            return self.api_key(secret, listener, now);
        }
        if !listener.oidc {
            return Err(AuthError::MethodNotAllowed("bearer tokens"));
        }
        self.jwt(secret, listener, now).await
    }

    fn api_key(&self, key: &str, listener: &ListenerAuth, now: u64) -> Result<Authenticated, AuthError> {
        if !listener.api_key {
            return Err(AuthError::MethodNotAllowed("API keys"));
        }
        // Key expiry is checked per request by `verify`; a Handshake session ends within the TTL.
        Ok(Authenticated { principal: self.api_keys.load().verify(key, now)?, expires: None })
    }

    async fn jwt(&self, token: &str, listener: &ListenerAuth, now: u64) -> Result<Authenticated, AuthError> {
        let digest = sha256(token);
        if let Some((principal, provider, exp)) = self.tokens.get(&digest, now) {
            if !listener.providers.contains(&provider) {
                return Err(AuthError::UnknownIssuer);
            }
            return Ok(Authenticated { principal, expires: Some(exp) });
        }
        let parsed = jws::parse(token, self.max_token_bytes)?;
        let claims: Value =
            serde_json::from_slice(&parsed.payload).map_err(|_| AuthError::Malformed("payload is not JSON"))?;
        // The unverified issuer only chooses whose keys verify the signature.
        let iss = claims.get("iss").and_then(Value::as_str).ok_or(AuthError::MissingClaim("iss"))?;
        let index = self.providers.iter().position(|p| p.issuer == iss).ok_or(AuthError::UnknownIssuer)?;
        if !listener.providers.contains(&index) {
            return Err(AuthError::UnknownIssuer);
        }
        let provider = self.providers.get(index).ok_or(AuthError::UnknownIssuer)?;
        let (principal, exp) = provider.verify(parsed, &claims, now).await?;
        let principal = Arc::new(principal);
        self.tokens.insert(digest, (Arc::clone(&principal), index, exp), exp.min(now + MAX_CACHE_SECS), now);
        Ok(Authenticated { principal, expires: Some(exp) })
    }

    /// The Flight Handshake: authenticates the Basic password (an API key or a JWT) or the
    /// request's other credentials, and returns a bearer token for the calls that follow.
    pub async fn handshake(
        &self,
        listener: &ListenerAuth,
        headers: &HeaderMap,
        workload: Option<&Arc<Principal>>,
    ) -> Result<(Arc<Principal>, String), AuthError> {
        let now = crate::clock::unix_secs();
        single_credentials(headers)?;
        let basic = headers.get(AUTHORIZATION).and_then(|v| match credentials(v.as_bytes()) {
            Some(Credentials::Basic(password)) => Some(password),
            _ => None,
        });
        let authenticated = match basic {
            Some(password) => {
                if listener.require_client_certificate && workload.is_none() {
                    return Err(AuthError::ClientCertificateRequired);
                }
                with_client_certificate(self.secret(&password, listener, now).await?, workload)
            }
            None => self.authenticate_inner(listener, headers, workload, now).await?,
        };
        let mut random = [0u8; 32];
        aws_lc_rs::rand::fill(&mut random).map_err(|_| AuthError::InvalidSession)?;
        let token = format!("{SESSION_PREFIX}{}", URL_SAFE_NO_PAD.encode(random));
        let expires = authenticated.expires.map_or(now + self.session_ttl, |e| e.min(now + self.session_ttl));
        self.sessions.insert(sha256(&token), (Arc::clone(&authenticated.principal), expires), expires, now);
        Ok((authenticated.principal, token))
    }
}

/// Over mTLS, a token's principal keeps the certificate's identity for policy.
fn with_client_certificate(authenticated: Authenticated, workload: Option<&Arc<Principal>>) -> Authenticated {
    match workload {
        Some(workload) if authenticated.principal.auth_method != identity::AuthMethod::Mtls => {
            let mut principal = (*authenticated.principal).clone();
            principal.client_cert = Some(workload.id.clone());
            Authenticated { principal: Arc::new(principal), expires: authenticated.expires }
        }
        _ => authenticated,
    }
}

/// Basic credentials' base64: the standard alphabet, padded or not. grpc-go (ADBC's
/// `username` / `password`) sends it unpadded; everything else about it stays strict
/// (alphabet, trailing bits, no whitespace).
const BASIC: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Debug, PartialEq, Eq)]
pub enum Credentials<'a> {
    Bearer(&'a str),
    /// The password of `Basic base64(user:password)`; the user name is ignored.
    Basic(String),
}

/// Parses an `Authorization` value; the scheme is case-insensitive (RFC 9110 §11.1).
/// Public for the fuzz target.
pub fn credentials(value: &[u8]) -> Option<Credentials<'_>> {
    let value = std::str::from_utf8(value).ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if rest.is_empty() {
        return None;
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(Credentials::Bearer(rest));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = BASIC.decode(rest).ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (_, password) = decoded.split_once(':')?;
        return Some(Credentials::Basic(password.to_string()));
    }
    None
}

pub(crate) fn sha256(bytes: impl AsRef<[u8]>) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes.as_ref()).as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::{Credentials, credentials};

    fn basic_password(value: &str) -> Option<String> {
        match credentials(value.as_bytes()) {
            Some(Credentials::Basic(password)) => Some(password),
            _ => None,
        }
    }

    #[test]
    fn basic_credentials_accept_padded_and_unpadded_base64_only() {
        // "x:secret" = 8 bytes: padded "eDpzZWNyZXQ=", grpc-go sends "eDpzZWNyZXQ".
        assert_eq!(basic_password("Basic eDpzZWNyZXQ=").as_deref(), Some("secret"));
        assert_eq!(basic_password("Basic eDpzZWNyZXQ").as_deref(), Some("secret"));
        // "ab:secret" = 9 bytes: no padding either way.
        assert_eq!(basic_password("basic YWI6c2VjcmV0").as_deref(), Some("secret"));
        for bad in [
            "Basic eDpzZWNyZXQ==", // too much padding
            "Basic eDpzZWNyZXR=",  // non-zero trailing bits
            "Basic eDpz ZWNyZXQ=", // whitespace inside
            "Basic eDpzZWNyZXQ_",  // URL-safe alphabet
            "Basic c2VjcmV0",      // no colon
        ] {
            assert_eq!(basic_password(bad), None, "{bad} was accepted");
        }
    }
}
