//! The OIDC authorization code flow with PKCE (S256), `state` and `nonce`, on the
//! `openidconnect` crate: the authorization request, the code exchange (through the
//! provider's own [`crate::auth::fetch::Fetcher`]: hyper and the gateway's rustls) and the ID
//! token's verification (signature with the provider's cached key set, iss, aud, azp, exp,
//! nonce, and at_hash when present). The verified claims become a principal by the same
//! claim mapping as bearer tokens.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::request::Parts;
use http::{HeaderValue, Response, StatusCode, header};
use identity::{AuthMethod, Principal};
use jsonwebtoken::Algorithm;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient};
use openidconnect::url::{Url, form_urlencoded};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope, TokenResponse,
};
use serde_json::Value;

use super::error::BrowserError;
use super::pending::{LOGIN_COOKIE, Pending, Taken};
use super::routes::{Answered, Browser, redirect};
use super::session::{SESSION_COOKIE, clear_cookie, cookie, random_token};
use super::{csrf, pages};
use crate::auth::AuthError;
use crate::auth::jws;
use crate::auth::oidc::Provider;
use crate::body::Body;
use crate::connection::Connection;
use process::unix_secs;

/// A discovered provider's client: authorization and token endpoints set (from discovery),
/// the others unused.
pub(super) type Client = CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

/// Longest ID token read (the bearer path's `auth.max_token_bytes` is for headers).
const MAX_ID_TOKEN_BYTES: usize = 64 * 1024;
/// Longest `return_to` kept.
const MAX_RETURN_TO: usize = 2048;

impl Browser {
    /// `/auth/login`: a pending sign-in, then the provider's authorization URL.
    pub(super) fn login(&self, connection: &Connection, parts: &Parts) -> Result<Response<Body>, BrowserError> {
        let query = query(parts);
        let return_to = match param(&query, "return_to") {
            Some(path) => own_path(path)?.to_string(),
            None => "/console".to_string(),
        };
        let wanted = param(&query, "provider");
        let providers = self.auth.providers();
        let with_login: Vec<(usize, &Arc<Provider>)> =
            providers.iter().enumerate().filter(|(_, p)| p.browser.is_some()).collect();
        let (index, provider) = match (wanted, with_login.as_slice()) {
            (Some(name), _) => with_login
                .iter()
                .find(|(_, p)| p.name == name)
                .copied()
                .ok_or_else(|| BrowserError::BadRequest(format!("no provider named {name:?} signs browsers in")))?,
            (None, [only]) => *only,
            (None, _) => {
                let names: Vec<&str> = with_login.iter().map(|(_, p)| p.name.as_str()).collect();
                return Ok(pages::choose_provider(&names, &return_to));
            }
        };
        let (client, _discovered) = self.client(provider)?;
        let random = || random_token(32).ok_or_else(|| BrowserError::Unavailable("no randomness".into()));
        let (state, nonce, verifier, binding) = (random()?, random()?, random()?, random()?);
        let verifier = PkceCodeVerifier::new(verifier);
        let challenge = PkceCodeChallenge::from_code_verifier_sha256(&verifier);
        let (state_for_url, nonce_for_url) = (state.clone(), nonce.clone());
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state_for_url),
                move || Nonce::new(nonce_for_url),
            )
            .set_pkce_challenge(challenge);
        if let Some(browser) = &provider.browser {
            for scope in browser.scopes.iter().filter(|s| *s != "openid") {
                request = request.add_scope(Scope::new(scope.clone()));
            }
        }
        let (url, _, _) = request.url();
        let pending = Pending {
            provider: index,
            pkce_verifier: verifier.into_secret(),
            nonce,
            return_to,
            binding: crate::auth::sha256(&binding),
            started: unix_secs(),
            source: connection.peer.ip(),
        };
        if !self.pending.insert(state, pending, unix_secs()) {
            return Err(BrowserError::Unavailable(
                "too many sign-ins in progress (from this address, or in all); retry in a minute".into(),
            ));
        }
        let mut response = redirect(url.as_str());
        let login_cookie = format!(
            "{LOGIN_COOKIE}={binding}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={}",
            self.pending.timeout()
        );
        if let Ok(mut value) = HeaderValue::from_str(&login_cookie) {
            value.set_sensitive(true);
            response.headers_mut().append(header::SET_COOKIE, value);
        }
        Ok(response)
    }

    /// `/auth/callback`: the provider's answer. Its outcome goes into `answered`: every
    /// failure is audited as a refused sign-in.
    pub(super) async fn callback(
        &self,
        parts: &Parts,
        answered: &mut Answered,
    ) -> Result<Response<Body>, BrowserError> {
        let result = self.callback_inner(parts).await;
        answered.sign_in = Some(match &result {
            Ok((_, principal)) => Ok(Arc::clone(principal)),
            Err(error) => Err((error.status_and_code().1, error.to_string())),
        });
        let mut response = result.map(|(response, _)| response)?;
        response.headers_mut().append(header::SET_COOKIE, clear_cookie(LOGIN_COOKIE));
        Ok(response)
    }

    async fn callback_inner(&self, parts: &Parts) -> Result<(Response<Body>, Arc<Principal>), BrowserError> {
        let query = query(parts);
        let get = |name| param(&query, name);
        let state = get("state").ok_or(BrowserError::LoginState("the callback has no state parameter"))?;
        let now = unix_secs();
        let pending = self.pending.take(state, cookie(&parts.headers, LOGIN_COOKIE), now).map_err(|taken| {
            BrowserError::LoginState(match taken {
                Taken::Unknown => "unknown or already used sign-in state (start again at /auth/login)",
                Taken::Expired => "the sign-in took too long (start again at /auth/login)",
                Taken::OtherBrowser => "the sign-in was started in another browser (start again at /auth/login)",
            })
        })?;
        if let Some(error) = get("error") {
            let description = get("error_description").map(|d| format!(": {}", printable(d))).unwrap_or_default();
            return Err(BrowserError::Refused(format!(
                "the provider refused the sign-in: {}{description}",
                printable(error)
            )));
        }
        let provider = self
            .auth
            .providers()
            .get(pending.provider)
            .ok_or_else(|| BrowserError::Unavailable("the provider is no longer configured".into()))?;
        // RFC 9207: a provider that names itself must be the one this sign-in went to (an
        // answer from another provider — a mix-up attack — is refused before any exchange).
        if let Some(iss) = get("iss")
            && iss != provider.issuer
        {
            return Err(BrowserError::Refused(format!(
                "the callback came from issuer {:?}, not from the provider this sign-in started at",
                printable(iss)
            )));
        }
        let code = get("code").ok_or_else(|| BrowserError::BadRequest("the callback has no code parameter".into()))?;
        let (client, _discovered) = self.client(provider)?;
        let exchange = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| BrowserError::Unavailable(format!("provider {}: {e}", provider.name)))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier));
        let http = crate::auth::fetch::oidc_client(provider.fetcher());
        let tokens = exchange.request_async(&http).await.map_err(|e| match e {
            RequestTokenError::ServerResponse(answer) => BrowserError::Refused(format!(
                "the provider refused the code: {}{}",
                printable(answer.error().as_ref()),
                answer.error_description().map(|d| format!(": {}", printable(d))).unwrap_or_default()
            )),
            other => BrowserError::Provider(format!("token request to provider {} failed: {other}", provider.name)),
        })?;
        let nonce = Nonce::new(pending.nonce);
        let verified = verify_id_token(provider, &client, &tokens, &nonce, now).await?;
        let verified = verified.ok_or_else(|| BrowserError::IdToken("the provider returned no ID token".into()))?;
        let principal = verified.principal;
        let mut session = self
            .sessions
            .start(principal, &provider.name, now)
            .ok_or_else(|| BrowserError::Unavailable("no randomness".into()))?;
        // With a refresh token, the claims are renewed at the provider when the ID token
        // expires (`refresh`); without one the session runs to its idle or absolute end.
        session.refresh_token = tokens.refresh_token().map(|t| t.secret().clone());
        session.refresh_at = verified.expires;
        let cookie = self
            .sessions
            .cookie(&session)
            .ok_or_else(|| BrowserError::IdToken("the session does not fit in a cookie (too many groups?)".into()))?;
        if cookie.len() > 4000 {
            return Err(BrowserError::IdToken("the session does not fit in a cookie (too many groups?)".into()));
        }
        let mut response = redirect(&pending.return_to);
        response.headers_mut().append(header::SET_COOKIE, cookie);
        Ok((response, session.principal))
    }

    /// `/auth/logout`: same-origin with the session's CSRF token (a cross-site page must not
    /// sign people out); revokes the session, clears the cookie, and answers with where to
    /// go next: the provider's end-session endpoint when it has one.
    pub(super) fn logout(&self, parts: &Parts) -> Result<Response<Body>, BrowserError> {
        let now = unix_secs();
        let opened = match self.sessions.from_headers(&parts.headers, now) {
            Some(Ok(opened)) => Some(opened),
            // An expired or broken cookie: nothing to revoke, still cleared.
            Some(Err(_)) | None => None,
        };
        let mut location = format!("{}/auth/signed-out", self.origin);
        if let Some(opened) = &opened {
            csrf::check(&parts.headers, &self.origin, &opened.session).map_err(BrowserError::Csrf)?;
            self.sessions.revoke(&opened.session, now);
            if let Some(provider) = self.auth.providers().iter().find(|p| p.name == opened.session.provider)
                && let (Some(client), Some(discovered)) = (&provider.browser, provider.discovered())
                && let Some(endpoint) = &discovered.end_session_endpoint
                && let Ok(mut url) = Url::parse(endpoint)
            {
                let back = client.post_logout_redirect_url.clone().unwrap_or(location.clone());
                url.query_pairs_mut()
                    .append_pair("client_id", &client.client_id)
                    .append_pair("post_logout_redirect_uri", &back);
                location = url.to_string();
            }
        } else {
            csrf::same_origin(&parts.headers, &self.origin).map_err(BrowserError::Csrf)?;
        }
        let mut response = pages::json(StatusCode::OK, &serde_json::json!({"location": location}));
        response.headers_mut().append(header::SET_COOKIE, clear_cookie(SESSION_COOKIE));
        Ok(response)
    }

    /// The provider's openidconnect client, from its last discovery.
    pub(super) fn client(
        &self,
        provider: &Provider,
    ) -> Result<(Client, Arc<crate::auth::oidc::Discovered>), BrowserError> {
        let browser = provider
            .browser
            .as_ref()
            .ok_or_else(|| BrowserError::BadRequest(format!("provider {} does not sign browsers in", provider.name)))?;
        let discovered = provider.discovered().ok_or_else(|| {
            BrowserError::Unavailable(format!("provider {} has not been discovered yet; retry shortly", provider.name))
        })?;
        let redirect = RedirectUrl::new(browser.redirect_url.clone())
            .map_err(|e| BrowserError::Unavailable(format!("redirect_url: {e}")))?;
        let client = CoreClient::from_provider_metadata(
            discovered.metadata.clone(),
            ClientId::new(browser.client_id.clone()),
            browser.client_secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(redirect);
        Ok((client, discovered))
    }
}

/// A verified ID token: the principal its claims map to, and when it expires.
pub(super) struct VerifiedIdToken {
    pub principal: Principal,
    pub subject: String,
    pub expires: u64,
}

/// Verifies the ID token of a token response, if it has one. The signature with the
/// provider's key set and verifier, shared with bearer tokens (one cache, one rotation and
/// outage behaviour, aws-lc-rs); the claims — iss, aud (the client, or an audience the
/// provider is configured with), azp, exp, iat and the nonce — with openidconnect's verifier,
/// whose own signature check is off because the signature was verified just before;
/// `at_hash` here.
pub(super) async fn verify_id_token<N: openidconnect::NonceVerifier>(
    provider: &Provider,
    client: &Client,
    tokens: &openidconnect::core::CoreTokenResponse,
    nonce: N,
    now: u64,
) -> Result<Option<VerifiedIdToken>, BrowserError> {
    let Some(id_token) = tokens.id_token() else { return Ok(None) };
    let refused = |e: &dyn std::fmt::Display| BrowserError::IdToken(format!("the ID token was refused: {e}"));
    let raw = id_token.to_string();
    let parsed = jws::parse(&raw, MAX_ID_TOKEN_BYTES).map_err(|e| refused(&e))?;
    let alg = provider.verify_signature(parsed, now).await.map_err(|e| match e {
        AuthError::KeysUnavailable(_) => BrowserError::Unavailable(e.to_string()),
        e => refused(&e),
    })?;
    let audiences = provider.audiences().to_vec();
    let verifier = client
        .id_token_verifier()
        .insecure_disable_signature_check()
        .set_other_audience_verifier_fn(move |aud| audiences.iter().any(|a| a == aud.as_str()));
    let claims = id_token.claims(&verifier, nonce).map_err(|e| refused(&e))?;
    // at_hash binds the access token to this ID token (OpenID Connect Core 3.1.3.6).
    if let Some(expected) = claims.access_token_hash()
        && at_hash(alg, tokens.access_token().secret()).as_deref() != Some(expected.as_str())
    {
        return Err(BrowserError::IdToken("the ID token's at_hash does not match the access token".into()));
    }
    let expires = u64::try_from(claims.expiration().timestamp()).unwrap_or(0);
    // Verified above; the claim mapping reads the same payload as the bearer path does.
    let payload = payload(&raw).ok_or_else(|| BrowserError::IdToken("the ID token's payload is not JSON".into()))?;
    let principal =
        provider.principal(&payload, AuthMethod::Browser).map_err(|e| BrowserError::IdToken(e.to_string()))?;
    Ok(Some(VerifiedIdToken { principal, subject: claims.subject().to_string(), expires }))
}

/// The request's query, decoded.
fn query(parts: &Parts) -> Vec<(String, String)> {
    form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes()).into_owned().collect()
}

/// The first value of `name` in a decoded query.
fn param<'q>(query: &'q [(String, String)], name: &str) -> Option<&'q str> {
    query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// `path` when it is a path on this gateway: one leading `/`, no scheme, no authority, no
/// backslash (browsers read `/\evil` as `//evil`), no control characters.
pub(super) fn own_path(path: &str) -> Result<&str, BrowserError> {
    let ok = path.starts_with('/')
        && !path.starts_with("//")
        && !path.contains('\\')
        && path.len() <= MAX_RETURN_TO
        && !path.chars().any(char::is_control);
    if ok { Ok(path) } else { Err(BrowserError::OpenRedirect) }
}

/// A provider's text shown back to the user: printable, bounded.
fn printable(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// `at_hash` for `access_token` under the ID token's algorithm: the left half of its hash,
/// base64url (SHA-256 for *256, SHA-384 for *384, SHA-512 for *512 and Ed25519).
fn at_hash(alg: Algorithm, access_token: &str) -> Option<String> {
    use aws_lc_rs::digest::{SHA256, SHA384, SHA512, digest};
    let function = match alg {
        Algorithm::RS256 | Algorithm::PS256 | Algorithm::ES256 => &SHA256,
        Algorithm::RS384 | Algorithm::PS384 | Algorithm::ES384 => &SHA384,
        Algorithm::RS512 | Algorithm::PS512 | Algorithm::EdDSA => &SHA512,
        _ => return None,
    };
    let hash = digest(function, access_token.as_bytes());
    let half = hash.as_ref().get(..hash.as_ref().len() / 2)?;
    Some(URL_SAFE_NO_PAD.encode(half))
}

/// The JSON payload of a compact JWS.
fn payload(jwt: &str) -> Option<Value> {
    let payload = jwt.split('.').nth(1)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// OpenID Connect Core 1.0, Appendix A.3: the example access token and its at_hash.
    #[test]
    fn at_hash_is_the_left_half_of_the_hash() {
        let token = "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y";
        assert_eq!(at_hash(Algorithm::RS256, token).as_deref(), Some("77QmUPtjPfzWtF2AnpK9RQ"));
        assert_eq!(at_hash(Algorithm::ES384, token).unwrap().len(), 32);
        assert_eq!(at_hash(Algorithm::HS256, token), None);
    }

    #[test]
    fn return_to_stays_on_this_gateway() {
        for good in ["/console", "/console?x=1#y", "/"] {
            assert_eq!(own_path(good).unwrap(), good);
        }
        for bad in [
            "https://evil.example/",
            "//evil.example/",
            "/\\evil.example",
            "\\\\evil.example",
            "javascript:alert(1)",
            "console",
            "",
            "/\nLocation: x",
        ] {
            assert!(matches!(own_path(bad), Err(BrowserError::OpenRedirect)), "{bad:?} accepted");
        }
        assert!(own_path(&format!("/{}", "a".repeat(MAX_RETURN_TO))).is_err());
    }
}
