//! The browser routes of the API listener, and the session cookie as a credential on the
//! API's own routes.

use std::sync::Arc;

use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use identity::Principal;

use super::error::BrowserError;
use super::pages;
use super::pending::PendingLogins;
use super::session::{self, Opened, Sessions};
use crate::auth::{API_KEY_HEADER, AuthError, Authenticator, with_certificate};
use crate::body::Body;
use crate::config::{Config, ConfigError};
use crate::connection::Connection;
use process::unix_secs;

/// Whether `path` is one the browser routes answer.
pub(crate) fn is_browser_path(path: &str) -> bool {
    path.starts_with("/auth/") || path == "/console" || path.starts_with("/console/")
}

/// What a browser route found that is the pipeline's to record (audit, metrics, the
/// failed-authentication quota).
#[derive(Debug, Default)]
pub(crate) struct Answered {
    /// The session cookie the route read and refused (forged, tampered, expired, signed
    /// out): a refused credential, as the API's are.
    pub(crate) refused_cookie: Option<AuthError>,
    /// A provider's callback: who signed in, or why not (a code and a message).
    pub(crate) sign_in: Option<Result<Arc<Principal>, (&'static str, String)>>,
}

/// The browser routes of the API listener.
pub(crate) struct Browser {
    pub(super) auth: Arc<Authenticator>,
    /// The sealed session cookies (`auth.browser_sessions`): only the browser knows them.
    pub(super) sessions: Sessions,
    pub(super) pending: PendingLogins,
    /// `https://host[:port]`: the gateway's own origin, from the redirect URLs.
    pub(super) origin: String,
    /// Sessions just renewed with a refresh token, for concurrent requests with the old cookie.
    pub(super) renewed: session::Renewed,
    /// `api.auth.require_client_certificate`: the session routes hold to it too.
    pub(super) require_client_certificate: bool,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser").field("origin", &self.origin).finish_non_exhaustive()
    }
}

impl Browser {
    /// The browser routes, when a provider has `browser_login`; `None` otherwise.
    pub(crate) fn from_config(config: &Config, auth: &Arc<Authenticator>) -> Result<Option<Self>, ConfigError> {
        let Some(settings) = &config.auth.browser_sessions else {
            if let Some(i) = config.auth.oidc.iter().position(|p| p.browser_login.is_some()) {
                return Err(ConfigError::new(
                    format!("auth.oidc[{i}].browser_login"),
                    "needs auth.browser_sessions (the keys that seal the session cookie)",
                ));
            }
            return Ok(None);
        };
        let sessions = Sessions::from_config(settings, "auth.browser_sessions")?;
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
            sessions,
            pending: PendingLogins::new(
                settings.pending_logins,
                settings.pending_logins_per_source,
                settings.login_timeout_secs,
            ),
            origin,
            renewed: session::renewed_cache(),
            require_client_certificate: config.api.auth.require_client_certificate,
        }))
    }

    pub(crate) fn origin(&self) -> &str {
        &self.origin
    }

    /// The session cookie as the credential of an API request: when the request carries it
    /// and no other credential (a bearer token or API key wins over a stale cookie). Not
    /// renewed here; the caller renews a session whose claims are due ([`Self::refresh`]).
    pub(crate) fn credential(
        &self,
        headers: &HeaderMap,
        workload: Option<&Arc<Principal>>,
    ) -> Option<Result<Opened, AuthError>> {
        if headers.contains_key(header::AUTHORIZATION) || headers.contains_key(API_KEY_HEADER) {
            return None;
        }
        let opened = self.sessions.from_headers(headers, unix_secs())?;
        Some(opened.and_then(|mut opened| {
            if self.require_client_certificate && workload.is_none() {
                return Err(AuthError::ClientCertificateRequired);
            }
            opened.principal = with_certificate(opened.principal, workload);
            Ok(opened)
        }))
    }

    /// Answers a browser route. Never fails: a refusal is a page (or JSON for `fetch`). What
    /// there is to record (a sign-in, a refused session cookie) comes back as [`Answered`]:
    /// the pipeline's observe stage records it.
    pub(crate) async fn handle(&self, connection: &Connection, parts: &Parts) -> (Response<Body>, Answered) {
        let path = parts.uri.path();
        let mut answered = Answered::default();
        let result = match (path, &parts.method) {
            ("/auth/login", &Method::GET) => self.login(connection, parts),
            ("/auth/callback", &Method::GET) => self.callback(parts, &mut answered).await,
            ("/auth/logout", &Method::POST) => self.logout(parts),
            ("/auth/session", &Method::GET) => self.whoami(connection, parts, &mut answered.refused_cookie).await,
            ("/auth/signed-out", &Method::GET) => Ok(pages::signed_out()),
            ("/console" | "/console/", &Method::GET) => {
                self.console(connection, parts, &mut answered.refused_cookie).await
            }
            (_, &Method::GET) if path.starts_with("/console/") => pages::asset(path).ok_or(BrowserError::NotFound),
            ("/auth/logout", method) => Err(BrowserError::MethodNotAllowed(method.clone(), "POST")),
            (
                "/auth/login" | "/auth/callback" | "/auth/session" | "/auth/signed-out" | "/console" | "/console/",
                method,
            ) => Err(BrowserError::MethodNotAllowed(method.clone(), "GET")),
            _ => Err(BrowserError::NotFound),
        };
        let response = result.unwrap_or_else(|error| pages::error(&error, wants_html(parts)));
        (pages::secured(&parts.headers, response).await, answered)
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

pub(super) fn redirect(location: &str) -> Response<Body> {
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
