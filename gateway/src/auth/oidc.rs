//! OIDC providers: where their keys come from (discovery, a `jwks_uri`, or a file), how
//! the key set is kept fresh, and how a verified token's claims become a principal.
//!
//! Key set life: fetched at start (in the background: the gateway starts even when the
//! provider is down, and such tokens get 503 until keys arrive), refreshed every
//! `refresh_secs`, and refetched once when a token names an unknown `kid`, at most once per
//! `unknown_kid_cooldown_secs` (forged kids cannot cause a refetch storm). Refreshes are
//! single-flight. A failed refresh keeps the last good set.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use identity::{AuthMethod, Principal, PrincipalKind};
use jsonwebtoken::Algorithm;
use serde_json::Value;
use tokio::sync::watch;

use super::error::AuthError;
use super::fetch::{FetchError, Fetcher};
use super::jws::{self, JwksError, JwsError, KeySet, Parsed};
use crate::config::{ClaimMapping, ConfigError, OidcProviderConfig};
use crate::outbound::{UrlError, check_url};

/// Why a provider's key set could not be had; each names the file or URL.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("{path}: {source}")]
    File { path: String, source: std::io::Error },
    #[error("{url}: {source}")]
    Fetch { url: String, source: FetchError },
    #[error("{url}: not JSON: {source}")]
    NotJson { url: String, source: serde_json::Error },
    #[error("{url}: the provider's issuer is {theirs:?}, not {ours:?}{hint}")]
    Issuer { url: String, theirs: String, ours: String, hint: &'static str },
    #[error("{url}: no jwks_uri")]
    NoJwksUri { url: String },
    #[error("{url}: jwks_uri: {source}")]
    JwksUri { url: String, source: UrlError },
    #[error("{origin}: {source}")]
    Keys { origin: String, source: JwksError },
    #[error("{url}: for browser sign-in: {message}")]
    Browser { url: String, message: String },
}

#[derive(Debug)]
enum KeySource {
    Discovery,
    JwksUri(String),
    File(std::path::PathBuf),
}

#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub issuer: String,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    leeway: u64,
    claims: ClaimMapping,
    source: KeySource,
    fetcher: Fetcher,
    refresh: Duration,
    cooldown: u64,
    keys: ArcSwapOption<KeySet>,
    /// Serialises refreshes: a second caller waits for the first one's result.
    refreshing: tokio::sync::Mutex<()>,
    /// Unix time of the last refresh caused by an unknown kid.
    last_unknown_kid: AtomicU64,
    /// Unix time of the last refresh caused by a request while no keys were known. Kept apart
    /// from the above so that start-up (or an outage) does not delay the refetch for a key
    /// the provider has just rotated in.
    last_no_keys: AtomicU64,
    /// Browser sign-in at this provider, when configured.
    pub browser: Option<BrowserClient>,
    /// The discovery document's endpoints in openidconnect's types, for browser sign-in;
    /// refreshed with the keys.
    discovered: ArcSwapOption<Discovered>,
}

/// The gateway as this provider's OIDC client.
#[derive(Clone)]
pub struct BrowserClient {
    pub client_id: String,
    pub client_secret: Option<String>,
    pub redirect_url: String,
    pub scopes: Vec<String>,
    pub post_logout_redirect_url: Option<String>,
}

impl std::fmt::Debug for BrowserClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrowserClient").field("client_id", &self.client_id).finish_non_exhaustive()
    }
}

/// What browser sign-in needs from discovery: the endpoints.
#[derive(Debug)]
pub struct Discovered {
    pub metadata: openidconnect::core::CoreProviderMetadata,
    /// RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0), if advertised.
    pub end_session_endpoint: Option<String>,
}

impl Provider {
    pub fn new(config: &OidcProviderConfig, field: &str) -> Result<Self, ConfigError> {
        if config.audiences.is_empty() {
            return Err(ConfigError::new(format!("{field}.audiences"), "at least one audience is required"));
        }
        check_url(&config.issuer).map_err(|e| ConfigError::new(format!("{field}.issuer"), e.to_string()))?;
        let algorithms = if config.algorithms.is_empty() {
            jws::ASYMMETRIC.to_vec()
        } else {
            config
                .algorithms
                .iter()
                .map(|name| jws::parse_algorithm(name))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ConfigError::new(format!("{field}.algorithms"), e))?
        };
        let source = match (&config.jwks_uri, &config.jwks_file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(field.to_string(), "give jwks_uri or jwks_file, not both"));
            }
            (Some(uri), None) => {
                check_url(uri).map_err(|e| ConfigError::new(format!("{field}.jwks_uri"), e.to_string()))?;
                KeySource::JwksUri(uri.clone())
            }
            (None, Some(path)) => KeySource::File(path.to_path_buf()),
            (None, None) => KeySource::Discovery,
        };
        let ca_field = format!("{field}.ca_file");
        let roots = config.ca_file.as_deref().map(|path| crate::outbound::ca_file(path, &ca_field)).transpose()?;
        let fetcher = Fetcher::new(roots.unwrap_or_default(), Duration::from_secs(5), &ca_field)?;
        let browser = config.browser_login.as_ref().map(|b| browser_client(b, &source, field)).transpose()?;
        let provider = Self {
            name: config.name.clone(),
            issuer: config.issuer.clone(),
            audiences: config.audiences.clone(),
            algorithms,
            leeway: config.leeway_secs,
            claims: config.claims.clone(),
            source,
            fetcher,
            refresh: Duration::from_secs(config.refresh_secs.max(10)),
            cooldown: config.unknown_kid_cooldown_secs,
            keys: ArcSwapOption::empty(),
            refreshing: tokio::sync::Mutex::new(()),
            last_unknown_kid: AtomicU64::new(0),
            last_no_keys: AtomicU64::new(0),
            browser,
            discovered: ArcSwapOption::empty(),
        };
        // A key file is part of the configuration: a bad one fails the start, like a bad cert.
        if let KeySource::File(path) = &provider.source {
            let json = std::fs::read(path)
                .map_err(|e| ConfigError::new(format!("{field}.jwks_file"), format!("{}: {e}", path.display())))?;
            let keys =
                KeySet::from_json(&json).map_err(|e| ConfigError::new(format!("{field}.jwks_file"), e.to_string()))?;
            provider.keys.store(Some(Arc::new(keys)));
        }
        Ok(provider)
    }

    /// Whether this provider has any keys yet (for readiness and the 503 reason).
    pub fn has_keys(&self) -> bool {
        self.keys.load().is_some()
    }

    /// Fetches the key set as a refresh would, without keeping it: the number of keys.
    pub async fn probe(&self) -> Result<usize, KeysError> {
        self.fetch_keys().await.map(|(keys, _)| keys.len())
    }

    /// The discovery metadata for browser sign-in, once fetched.
    pub fn discovered(&self) -> Option<Arc<Discovered>> {
        self.discovered.load_full()
    }

    async fn fetch_keys(&self) -> Result<(KeySet, Option<Discovered>), KeysError> {
        let mut document = None;
        let jwks_uri = match &self.source {
            KeySource::File(path) => {
                let origin = || path.display().to_string();
                let json = tokio::fs::read(path).await.map_err(|source| KeysError::File { path: origin(), source })?;
                let keys = KeySet::from_json(&json).map_err(|source| KeysError::Keys { origin: origin(), source })?;
                return Ok((keys, None));
            }
            KeySource::JwksUri(uri) => uri.clone(),
            KeySource::Discovery => {
                let url = format!("{}/.well-known/openid-configuration", self.issuer.trim_end_matches('/'));
                let fetched =
                    self.fetcher.get(&url).await.map_err(|source| KeysError::Fetch { url: url.clone(), source })?;
                let fetched: Value = match serde_json::from_slice(&fetched) {
                    Ok(document) => document,
                    Err(source) => return Err(KeysError::NotJson { url, source }),
                };
                let document = document.insert(fetched);
                // OpenID Connect Discovery 1.0 §4.3: the document's issuer must be ours, exactly.
                let theirs = document.get("issuer").and_then(Value::as_str);
                if theirs != Some(self.issuer.as_str()) {
                    let theirs = theirs.unwrap_or("(none)");
                    let hint = if theirs.trim_end_matches('/') == self.issuer.trim_end_matches('/') {
                        " (they differ only by a trailing slash: tokens carry the provider's form in `iss`, so set issuer to it exactly)"
                    } else {
                        ""
                    };
                    return Err(KeysError::Issuer { url, theirs: theirs.to_string(), ours: self.issuer.clone(), hint });
                }
                let Some(uri) = document.get("jwks_uri").and_then(Value::as_str) else {
                    return Err(KeysError::NoJwksUri { url });
                };
                if let Err(source) = check_url(uri) {
                    return Err(KeysError::JwksUri { url, source });
                }
                uri.to_string()
            }
        };
        let json = match self.fetcher.get(&jwks_uri).await {
            Ok(json) => json,
            Err(source) => return Err(KeysError::Fetch { url: jwks_uri, source }),
        };
        let keys = KeySet::from_json(&json).map_err(|source| KeysError::Keys { origin: jwks_uri.clone(), source })?;
        let discovered = match (&self.browser, document) {
            (Some(_), Some(document)) => Some(discovered(&document).map_err(|message| KeysError::Browser {
                url: format!("{}/.well-known/openid-configuration", self.issuer.trim_end_matches('/')),
                message,
            })?),
            _ => None,
        };
        Ok((keys, discovered))
    }

    /// Fetches the key set now; a concurrent caller waits for the same fetch instead.
    async fn refresh(&self) -> Result<(), KeysError> {
        let before = self.keys.load_full();
        let _guard = self.refreshing.lock().await;
        let after = self.keys.load_full();
        let changed = match (&before, &after) {
            (Some(a), Some(b)) => !Arc::ptr_eq(a, b),
            (None, Some(_)) => true,
            _ => false,
        };
        if changed {
            // Someone refreshed while we waited: that fetch is ours too.
            return Ok(());
        }
        match self.fetch_keys().await {
            Ok((keys, discovered)) => {
                crate::metrics::jwks_refresh(&self.issuer, true);
                tracing::info!(provider = %self.name, keys = keys.len(), "OIDC key set loaded");
                self.keys.store(Some(Arc::new(keys)));
                if let Some(discovered) = discovered {
                    self.discovered.store(Some(Arc::new(discovered)));
                }
                Ok(())
            }
            Err(error) => {
                crate::metrics::jwks_refresh(&self.issuer, false);
                tracing::warn!(provider = %self.name, %error, "OIDC key set refresh failed; keeping the last good set");
                Err(error)
            }
        }
    }

    /// A refresh for an unknown kid (or no keys yet), unless one for the same cause (`last`)
    /// ran within the cooldown.
    async fn refresh_rate_limited(&self, last_refresh: &AtomicU64, now: u64) {
        let last = last_refresh.load(Ordering::Relaxed);
        if now < last.saturating_add(self.cooldown)
            || last_refresh.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err()
        {
            // Within the cooldown, or another request just started this refresh: wait for
            // any refresh in flight, then use what it brought.
            drop(self.refreshing.lock().await);
            return;
        }
        // A failure is logged inside; the caller goes on with the keys it has.
        let _ = self.refresh().await;
    }

    /// Keeps the key set fresh until `stopped`: quickly retried while there are no keys.
    pub async fn keep_fresh(self: Arc<Self>, mut stopped: watch::Receiver<bool>) {
        loop {
            let wait = match self.refresh().await {
                Ok(()) => self.refresh,
                Err(_) if self.has_keys() => self.refresh.min(Duration::from_secs(60)),
                Err(_) => Duration::from_secs(2),
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stopped.changed() => return,
            }
        }
    }

    /// Verifies a parsed token with this provider's keys and maps it to a principal.
    /// Returns the principal and the token's expiry.
    pub async fn verify(&self, parsed: Parsed<'_>, claims: &Value, now: u64) -> Result<(Principal, u64), AuthError> {
        self.verify_signature(parsed, now).await?;
        self.check_claims(claims, now)
    }

    /// The signature alone, with this provider's keys (refetched, rate-limited, for an unknown
    /// `kid`): bearer tokens and the browser sign-in's ID tokens go through this one verifier
    /// (aws-lc-rs, the Wycheproof-tested path). Returns the algorithm that verified it.
    pub async fn verify_signature(&self, parsed: Parsed<'_>, now: u64) -> Result<Algorithm, AuthError> {
        let keys = match self.keys.load_full() {
            Some(keys) => keys,
            None => {
                self.refresh_rate_limited(&self.last_no_keys, now).await;
                self.keys.load_full().ok_or_else(|| AuthError::KeysUnavailable(self.name.clone()))?
            }
        };
        let kid_known = match &parsed.header.kid {
            Some(kid) => keys.has_kid(kid),
            None => true,
        };
        let keys = if kid_known {
            keys
        } else {
            self.refresh_rate_limited(&self.last_unknown_kid, now).await;
            self.keys.load_full().unwrap_or(keys)
        };
        let verified = parsed.verify(&keys, &self.algorithms).map_err(AuthError::from)?;
        if let Some(typ) = &verified.header.typ
            && !["jwt", "at+jwt", "application/jwt", "application/at+jwt"].contains(&typ.to_ascii_lowercase().as_str())
        {
            return Err(AuthError::Malformed("token typ is not JWT or at+jwt"));
        }
        Ok(verified.alg)
    }

    /// The HTTP client for this provider (hyper on the gateway's rustls config): the browser
    /// sign-in's code exchange goes through it.
    pub fn fetcher(&self) -> &Fetcher {
        &self.fetcher
    }

    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }

    fn check_claims(&self, claims: &Value, now: u64) -> Result<(Principal, u64), AuthError> {
        // NumericDate (RFC 7519 §2) may have a fraction: exp rounds down, nbf and iat up,
        // so rounding never extends a token's validity.
        let exp =
            numeric_date(claims, "exp", f64::floor)?.ok_or(AuthError::Malformed("token has no numeric exp claim"))?;
        if now >= exp.saturating_add(self.leeway) {
            return Err(AuthError::Expired);
        }
        if let Some(nbf) = numeric_date(claims, "nbf", f64::ceil)?
            && nbf > now.saturating_add(self.leeway)
        {
            return Err(AuthError::NotYetValid);
        }
        // A token issued in the future is a clock far off or a forged timeline.
        if let Some(iat) = numeric_date(claims, "iat", f64::ceil)?
            && iat > now.saturating_add(self.leeway)
        {
            return Err(AuthError::IssuedInFuture);
        }
        let audience_ok = match claims.get("aud") {
            Some(Value::String(aud)) => self.audiences.iter().any(|a| a == aud),
            Some(Value::Array(auds)) => {
                auds.iter().any(|aud| aud.as_str().is_some_and(|aud| self.audiences.iter().any(|a| a == aud)))
            }
            _ => false,
        };
        if !audience_ok {
            return Err(AuthError::WrongAudience);
        }
        Ok((self.principal(claims, AuthMethod::Oidc)?, exp))
    }

    /// The principal the verified `claims` name, by this provider's claim mapping: shared by
    /// bearer tokens and browser sign-ins.
    pub fn principal(&self, claims: &Value, method: AuthMethod) -> Result<Principal, AuthError> {
        let mapping = &self.claims;
        let id = claim_string(claims, &mapping.user_id).ok_or(AuthError::MissingClaim("user id"))?;
        let subject = claims.get("sub").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| id.clone());
        let mut principal = Principal::new(PrincipalKind::User, id, subject, method);
        principal.email = claim_string(claims, &mapping.email);
        principal.groups = claim_strings(claims, &mapping.groups);
        principal.issuer = Some(self.issuer.clone());
        principal.mfa = claims
            .get("amr")
            .and_then(Value::as_array)
            .is_some_and(|amr| amr.iter().any(|m| m.as_str() == Some("mfa")));
        principal.tenant = mapping.tenant.as_deref().and_then(|path| claim_string(claims, path));
        // Identity values reach SQL, Cedar, the stamp and audit lines: no control characters
        // (a NUL or a newline there could split a log line or confuse a comparison), and no
        // invisible formatting (bidi overrides and zero-width characters make two ids that
        // differ look alike to whoever reads a log, an event or a policy).
        let controlled = |value: &str| value.chars().any(|c| c.is_control() || invisible(c));
        if controlled(&principal.id) || controlled(&principal.subject) {
            return Err(AuthError::Malformed(
                "the user id or sub claim contains control characters or invisible formatting",
            ));
        }
        if principal.email.as_deref().is_some_and(controlled) || principal.tenant.as_deref().is_some_and(controlled) {
            return Err(AuthError::Malformed(
                "the email or tenant claim contains control characters or invisible formatting",
            ));
        }
        if principal.groups.iter().any(|group| controlled(group)) {
            return Err(AuthError::Malformed(
                "a groups claim value contains control characters or invisible formatting",
            ));
        }
        Ok(principal)
    }
}

/// Bidirectional-text controls (U+061C, U+200E/F, U+202A–E, U+2066–9) and zero-width or
/// invisible characters (U+200B–D, U+2060–4, U+FEFF, U+180E, U+00AD).
fn invisible(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}'
        | '\u{FEFF}' | '\u{180E}' | '\u{00AD}')
}

/// The browser client of a provider: needs discovery (the endpoints come from there) and an
/// `https://` redirect URL (the session cookie is `Secure`; plain `http://` only on loopback).
fn browser_client(
    config: &crate::config::BrowserLoginConfig,
    source: &KeySource,
    field: &str,
) -> Result<BrowserClient, ConfigError> {
    let field = format!("{field}.browser_login");
    if !matches!(source, KeySource::Discovery) {
        return Err(ConfigError::new(
            &field,
            "needs the provider found by discovery (no jwks_uri or jwks_file): its endpoints come from there",
        ));
    }
    check_url(&config.redirect_url).map_err(|e| ConfigError::new(format!("{field}.redirect_url"), e.to_string()))?;
    if !config.redirect_url.ends_with("/auth/callback") {
        return Err(ConfigError::new(format!("{field}.redirect_url"), "must end with /auth/callback"));
    }
    if let Some(url) = &config.post_logout_redirect_url {
        check_url(url).map_err(|e| ConfigError::new(format!("{field}.post_logout_redirect_url"), e.to_string()))?;
    }
    if !config.scopes.iter().any(|s| s == "openid") {
        return Err(ConfigError::new(format!("{field}.scopes"), "must include openid"));
    }
    let client_secret =
        config.client_secret.as_ref().map(|s| s.resolve_secret(&format!("{field}.client_secret"))).transpose()?;
    Ok(BrowserClient {
        client_id: config.client_id.clone(),
        client_secret: client_secret.map(|s| s.trim().to_string()),
        redirect_url: config.redirect_url.clone(),
        scopes: config.scopes.clone(),
        post_logout_redirect_url: config.post_logout_redirect_url.clone(),
    })
}

/// openidconnect's view of a discovery document: the endpoints. (Keys are not copied into
/// it: ID tokens are verified with the provider's own key set, like bearer tokens.)
fn discovered(document: &Value) -> Result<Discovered, String> {
    use openidconnect::core::CoreProviderMetadata;
    let metadata: CoreProviderMetadata =
        serde_json::from_value(document.clone()).map_err(|e| format!("discovery document: {e}"))?;
    for (name, url) in [
        ("authorization_endpoint", metadata.authorization_endpoint().as_str()),
        ("jwks_uri", metadata.jwks_uri().as_str()),
    ]
    .into_iter()
    .chain(metadata.token_endpoint().map(|t| ("token_endpoint", t.as_str())))
    {
        check_url(url).map_err(|e| format!("{name}: {e}"))?;
    }
    if metadata.token_endpoint().is_none() {
        return Err("no token_endpoint".into());
    }
    let end_session_endpoint = document.get("end_session_endpoint").and_then(Value::as_str).map(str::to_string);
    if let Some(url) = &end_session_endpoint {
        check_url(url).map_err(|e| format!("end_session_endpoint: {e}"))?;
    }
    Ok(Discovered { metadata, end_session_endpoint })
}

/// A NumericDate claim, whole seconds or with a fraction (`round` says which way), if present.
fn numeric_date(claims: &Value, name: &'static str, round: fn(f64) -> f64) -> Result<Option<u64>, AuthError> {
    let Some(value) = claims.get(name) else { return Ok(None) };
    if let Some(whole) = value.as_u64() {
        return Ok(Some(whole));
    }
    match value.as_f64() {
        Some(seconds) if seconds.is_finite() && seconds >= 0.0 && seconds < u64::MAX as f64 => {
            Ok(Some(round(seconds) as u64))
        }
        _ => Err(AuthError::Malformed(match name {
            "exp" => "token exp claim is not a NumericDate",
            "nbf" => "token nbf claim is not a NumericDate",
            _ => "token iat claim is not a NumericDate",
        })),
    }
}

/// The value at a claim path: `groups`, `cognito:groups`, or nested `realm_access.roles`.
fn claim_at<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(value) = claims.get(path) {
        return Some(value);
    }
    path.split('.').try_fold(claims, |value, part| value.get(part))
}

fn claim_string(claims: &Value, path: &str) -> Option<String> {
    match claim_at(claims, path)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn claim_strings(claims: &Value, path: &str) -> Vec<String> {
    match claim_at(claims, path) {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        Some(Value::String(s)) if !s.is_empty() => vec![s.clone()],
        _ => Vec::new(),
    }
}

impl From<JwsError> for AuthError {
    fn from(error: JwsError) -> Self {
        match error {
            JwsError::Malformed(what) => AuthError::Malformed(what),
            JwsError::TooLarge => AuthError::Malformed("token too large"),
            JwsError::AlgorithmNotAllowed => AuthError::AlgorithmNotAllowed,
            JwsError::UnknownKey => AuthError::UnknownKey,
            JwsError::BadSignature => AuthError::BadSignature,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_dates_take_fractions_and_round_toward_invalid() {
        let claims = serde_json::json!({"exp": 1700000000.9, "nbf": 1700000000.1, "iat": 5, "bad": "soon", "neg": -1});
        assert_eq!(numeric_date(&claims, "exp", f64::floor).unwrap(), Some(1_700_000_000));
        assert_eq!(numeric_date(&claims, "nbf", f64::ceil).unwrap(), Some(1_700_000_001));
        assert_eq!(numeric_date(&claims, "iat", f64::ceil).unwrap(), Some(5));
        assert_eq!(numeric_date(&claims, "none", f64::ceil).unwrap(), None);
        assert!(numeric_date(&claims, "bad", f64::ceil).is_err());
        assert!(numeric_date(&claims, "neg", f64::ceil).is_err());
    }

    #[test]
    fn claim_paths_reach_nested_and_colon_names() {
        let claims = serde_json::json!({
            "realm_access": {"roles": ["admin", "analyst"]},
            "cognito:groups": ["a"],
            "groups": "solo",
            "tid": 42,
        });
        assert_eq!(claim_strings(&claims, "realm_access.roles"), ["admin", "analyst"]);
        assert_eq!(claim_strings(&claims, "cognito:groups"), ["a"]);
        assert_eq!(claim_strings(&claims, "groups"), ["solo"]);
        assert!(claim_strings(&claims, "roles").is_empty());
        assert_eq!(claim_string(&claims, "tid").as_deref(), Some("42"));
    }
}
