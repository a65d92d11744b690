//! Browser sign-in and the console, on the API listener.
//!
//! ```text
//! GET  /auth/login?return_to=/console[&provider=NAME] → 302 to the provider (code + PKCE S256, state, nonce)
//! GET  /auth/callback?code&state                      → ID token verified → sealed session cookie → 302 return_to
//! POST /auth/logout   (same origin + X-CSRF-Token)    → session revoked, cookie cleared, the provider's logout URL
//! GET  /auth/session                                  → who am I, and the session's CSRF token (JSON)
//! GET  /auth/signed-out                               → a page to sign in again
//! GET  /console, /console/app.js, /console/app.css    → the SQL console (assets in the binary)
//! ```
//!
//! Everything else a browser does (`/v1/sql`, `/v1/datasets`) goes through the pipeline like
//! any request: the cookie is one more credential ([`crate::auth::Authenticator::browser_session`]),
//! checked for CSRF ([`csrf`]) and removed before forwarding.

pub mod csrf;
mod pages;
mod pending;
mod refresh;
mod seal;
mod session;
mod signin;

use std::sync::Arc;

use http::request::Parts;
use http::{HeaderValue, Method, Response, StatusCode, header};

pub use seal::KeyRing;
pub use session::{Opened, SESSION_COOKIE, Session, Sessions, cookie};

use crate::audit::Auditor;
use crate::auth::{AuthError, Authenticator};
use crate::body::Body;
use crate::clock::unix_secs;
use crate::config::{Config, ConfigError};
use crate::connection::Connection;
use pending::PendingLogins;

/// Whether `path` is one the browser routes answer.
pub fn is_browser_path(path: &str) -> bool {
    path.starts_with("/auth/") || path == "/console" || path.starts_with("/console/")
}

/// Why a browser route refused; each has a status and a code (README, "Browser sign-in").
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    #[error("{0}")]
    BadRequest(String),
    /// The callback's state: missing, unknown, used, expired, or from another browser.
    #[error("{0}")]
    LoginState(&'static str),
    /// `return_to` not a path on this gateway.
    #[error("return_to must be a path on this gateway (starting with a single /)")]
    OpenRedirect,
    /// The provider said no (`error=` on the callback, or the code exchange refused).
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    IdToken(String),
    #[error("{0}")]
    Provider(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Unauthenticated(AuthError),
    #[error("{0}")]
    Csrf(&'static str),
    #[error("no such page")]
    NotFound,
    #[error("{0} is not allowed here; use {1}")]
    MethodNotAllowed(Method, &'static str),
}

impl BrowserError {
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        use BrowserError as E;
        match self {
            E::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            E::LoginState(_) => (StatusCode::BAD_REQUEST, "login_state_invalid"),
            E::OpenRedirect => (StatusCode::BAD_REQUEST, "return_to_invalid"),
            E::Refused(_) => (StatusCode::FORBIDDEN, "login_refused"),
            E::IdToken(_) => (StatusCode::UNAUTHORIZED, "id_token_invalid"),
            E::Provider(_) => (StatusCode::BAD_GATEWAY, "provider_unavailable"),
            E::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "login_unavailable"),
            E::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            E::Csrf(_) => (StatusCode::FORBIDDEN, "csrf_failed"),
            E::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            E::MethodNotAllowed(..) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        }
    }
}

/// The browser routes of the API listener.
pub struct Browser {
    auth: Arc<Authenticator>,
    sessions: Arc<Sessions>,
    pending: PendingLogins,
    /// `https://host[:port]`: the gateway's own origin, from the redirect URLs.
    origin: String,
    audit: Arc<Auditor>,
    /// Sessions just renewed with a refresh token, for concurrent requests with the old cookie.
    renewed: refresh::Renewed,
    /// `api.auth.require_client_certificate`: the session routes hold to it too.
    require_client_certificate: bool,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser").field("origin", &self.origin).finish_non_exhaustive()
    }
}

impl Browser {
    /// The browser routes, when a provider has `browser_login`; `None` otherwise.
    pub fn from_config(
        config: &Config,
        auth: &Arc<Authenticator>,
        audit: &Arc<Auditor>,
    ) -> Result<Option<Self>, ConfigError> {
        let (Some(sessions), Some(settings)) = (auth.browser_sessions(), &config.auth.browser_sessions) else {
            return Ok(None);
        };
        let mut origin: Option<String> = None;
        for (i, provider) in auth.providers().iter().enumerate() {
            let Some(client) = &provider.browser else { continue };
            let field = format!("auth.oidc[{i}].browser_login.redirect_url");
            let this =
                origin_of(&client.redirect_url).ok_or_else(|| ConfigError::new(&field, "not an absolute URL"))?;
            match &origin {
                Some(first) if *first != this => {
                    return Err(ConfigError::new(field, "every provider's redirect URL must be on the same origin"));
                }
                _ => origin = Some(this),
            }
        }
        let Some(origin) = origin else {
            return Err(ConfigError::new(
                "auth.browser_sessions",
                "configured, but no provider has browser_login: nothing would sign a browser in",
            ));
        };
        Ok(Some(Self {
            auth: Arc::clone(auth),
            sessions: Arc::clone(sessions),
            pending: PendingLogins::new(
                settings.pending_logins,
                settings.pending_logins_per_source,
                settings.login_timeout_secs,
            ),
            origin,
            audit: Arc::clone(audit),
            renewed: refresh::renewed_cache(),
            require_client_certificate: config.api.auth.require_client_certificate,
        }))
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Answers a browser route. Never fails: a refusal is a page (or JSON for `fetch`). Also
    /// returns the session cookie's refusal, when the route read one and refused it (forged, tampered, expired, signed out): the caller audits it
    /// as the API does a refused credential.
    pub async fn handle(
        &self,
        connection: &Connection,
        parts: &Parts,
        request_id: &HeaderValue,
    ) -> (Response<Body>, Option<AuthError>) {
        let path = parts.uri.path();
        let mut refused = None;
        let result = match (path, &parts.method) {
            ("/auth/login", &Method::GET) => self.login(connection, parts),
            ("/auth/callback", &Method::GET) => self.callback(connection, parts, request_id).await,
            ("/auth/logout", &Method::POST) => self.logout(parts),
            ("/auth/session", &Method::GET) => self.whoami(connection, parts, &mut refused).await,
            ("/auth/signed-out", &Method::GET) => Ok(pages::signed_out()),
            ("/console" | "/console/", &Method::GET) => self.console(connection, parts, &mut refused).await,
            (_, &Method::GET) if path.starts_with("/console/") => pages::asset(path).ok_or(BrowserError::NotFound),
            ("/auth/logout", method) => Err(BrowserError::MethodNotAllowed(method.clone(), "POST")),
            (
                "/auth/login" | "/auth/callback" | "/auth/session" | "/auth/signed-out" | "/console" | "/console/",
                method,
            ) => Err(BrowserError::MethodNotAllowed(method.clone(), "GET")),
            _ => Err(BrowserError::NotFound),
        };
        let response = result.unwrap_or_else(|error| pages::error(&error, wants_html(parts)));
        (pages::secured(&parts.headers, response).await, refused)
    }

    /// The request's session, renewed at the provider when its claims are due: `None`
    /// without a session cookie.
    /// The listener's `require_client_certificate` holds here as on the API.
    async fn session(&self, connection: &Connection, headers: &http::HeaderMap) -> Option<Result<Opened, AuthError>> {
        let now = unix_secs();
        let opened = self.sessions.from_headers(headers, now)?;
        if self.require_client_certificate && connection.workload.is_none() {
            return Some(Err(AuthError::ClientCertificateRequired));
        }
        Some(match opened {
            Ok(opened) if opened.session.refresh_due(now) => self.refresh(opened, now).await,
            other => other,
        })
    }

    /// `/console`: the page when signed in, else a sign-in that comes back here.
    async fn console(
        &self,
        connection: &Connection,
        parts: &Parts,
        refused: &mut Option<AuthError>,
    ) -> Result<Response<Body>, BrowserError> {
        match self.session(connection, &parts.headers).await {
            Some(Ok(opened)) => {
                let mut response = pages::console();
                if let Some(renewed) = opened.renewed {
                    response.headers_mut().append(header::SET_COOKIE, renewed);
                }
                Ok(response)
            }
            Some(Err(error)) => {
                *refused = Some(error);
                Ok(redirect("/auth/login?return_to=%2Fconsole"))
            }
            None => Ok(redirect("/auth/login?return_to=%2Fconsole")),
        }
    }

    /// `/auth/session`: the signed-in principal and the CSRF token for the console's calls.
    async fn whoami(
        &self,
        connection: &Connection,
        parts: &Parts,
        refused: &mut Option<AuthError>,
    ) -> Result<Response<Body>, BrowserError> {
        let opened = match self.session(connection, &parts.headers).await {
            Some(Ok(opened)) => opened,
            Some(Err(error)) => {
                *refused = Some(error.clone());
                return Err(BrowserError::Unauthenticated(error));
            }
            None => return Err(BrowserError::Unauthenticated(AuthError::Missing("a browser session"))),
        };
        let p = &opened.principal;
        let body = serde_json::json!({
            "principal": p.id,
            "subject": p.subject,
            "email": p.email,
            "groups": p.groups,
            "tenant": p.tenant,
            "mfa": p.mfa,
            "issuer": p.issuer,
            "provider": opened.session.provider,
            "signed_in_at": opened.session.iat,
            "expires_at": opened.session.iat.saturating_add(self.sessions.absolute_secs()),
            "csrf_token": opened.session.csrf,
        });
        let mut response = pages::json(StatusCode::OK, &body);
        if let Some(renewed) = opened.renewed {
            response.headers_mut().append(header::SET_COOKIE, renewed);
        }
        Ok(response)
    }
}

/// Whether the client wants a page (a browser navigating) rather than JSON (`fetch`).
fn wants_html(parts: &Parts) -> bool {
    parts.headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|accept| accept.contains("text/html"))
}

fn redirect(location: &str) -> Response<Body> {
    let mut response = Response::new(crate::body::empty());
    *response.status_mut() = StatusCode::FOUND;
    if let Ok(location) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// `scheme://host[:port]` of an absolute URL, as browsers write it in `Origin`.
fn origin_of(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    let scheme = uri.scheme_str()?;
    let authority = uri.authority()?.as_str();
    let default_port = match scheme {
        "https" => ":443",
        "http" => ":80",
        _ => return None,
    };
    Some(format!("{scheme}://{}", authority.strip_suffix(default_port).unwrap_or(authority)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_written_as_browsers_send_them() {
        assert_eq!(origin_of("https://gw.example.com/auth/callback").as_deref(), Some("https://gw.example.com"));
        assert_eq!(origin_of("https://gw.example.com:443/auth/callback").as_deref(), Some("https://gw.example.com"));
        assert_eq!(origin_of("https://127.0.0.1:8090/auth/callback").as_deref(), Some("https://127.0.0.1:8090"));
        assert_eq!(origin_of("/auth/callback"), None);
        assert_eq!(origin_of("ftp://x/auth/callback"), None);
    }
}
