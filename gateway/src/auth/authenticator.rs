//! The authenticator every listener shares: verifies a request's credential and caches what
//! it verified.

use std::sync::Arc;

use arc_swap::ArcSwap;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderMap;
use http::header::AUTHORIZATION;
use identity::{ExpiringCache, Principal};
use serde_json::Value;
use tokio::sync::watch;

use super::apikeys::{self, ApiKeys};
use super::credentials::{API_KEY_HEADER, Credentials, SESSION_PREFIX, credentials, sha256, single_credentials};
use super::error::AuthError;
use super::jws;
use super::listener::ListenerAuth;
use super::oidc::{self, Provider};
use crate::config::{Config, ConfigError};

/// Longest time a verified token stays cached, whatever its own expiry.
const MAX_CACHE_SECS: u64 = 600;

/// A verified caller and until when its credential is valid (for Handshake sessions).
struct Authenticated {
    principal: Arc<Principal>,
    expires: Option<u64>,
}

pub struct Authenticator {
    providers: Vec<Arc<Provider>>,
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
        if config.auth.max_token_bytes < 256 {
            return Err(ConfigError::new("auth.max_token_bytes", "must be at least 256"));
        }
        Ok(Self {
            providers,
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
        Ok(self.authenticate_inner(listener, headers, workload, process::unix_secs()).await?.principal)
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
        let now = process::unix_secs();
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
    Authenticated { principal: with_certificate(authenticated.principal, workload), expires: authenticated.expires }
}

/// `principal` with the connection's verified client certificate named in it (unless the
/// certificate is how it authenticated): any credential over mTLS, a browser session too.
pub(crate) fn with_certificate(principal: Arc<Principal>, workload: Option<&Arc<Principal>>) -> Arc<Principal> {
    match workload {
        Some(workload) if principal.auth_method != identity::AuthMethod::Mtls => {
            let mut principal = (*principal).clone();
            principal.client_cert = Some(workload.id.clone());
            Arc::new(principal)
        }
        _ => principal,
    }
}
