//! Authenticate: who is calling (bearer token, API key, Handshake session, browser session
//! cookie, or client certificate; see [`crate::auth`]). No method, no request: there is no
//! anonymous pass-through. Credentials stop here: the engine trusts the stamp and never sees
//! a token, key or session cookie.

use std::sync::Arc;

use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderMap, HeaderValue, Method};
use identity::Principal;

use crate::auth::{API_KEY_HEADER, Authenticator, ListenerAuth};
use crate::browser::{Browser, SESSION_COOKIE, csrf};
use crate::connection::Connection;
use crate::error::GatewayError;

/// The caller, and the re-sealed session cookie to send back when a browser session's
/// last-seen time moved on.
pub(super) struct Authenticated {
    pub principal: Arc<Principal>,
    pub renewed_cookie: Option<HeaderValue>,
}

pub(super) async fn authenticate(
    auth: &Authenticator,
    listener: &ListenerAuth,
    browser: Option<&Browser>,
    connection: &Connection,
    method: &Method,
    path: &str,
    headers: &mut HeaderMap,
) -> Result<Authenticated, GatewayError> {
    // Only a listener that takes browser sessions has the browser (see `Pipeline::from_config`).
    let session = browser
        .filter(|_| listener.browser())
        .and_then(|b| Some((b, b.credential(headers, connection.workload.as_ref())?)));
    let authenticated = match session {
        Some((browser, opened)) => {
            let mut opened = opened?;
            let now = process::unix_secs();
            if opened.session.refresh_due(now) {
                opened = browser.refresh(opened, now).await?;
            }
            // A cookie rides along with whatever another site makes the browser request.
            if csrf::needs_check(method, path) {
                csrf::check(headers, browser.origin(), &opened.session).map_err(GatewayError::Csrf)?;
            }
            headers.remove(csrf::CSRF_HEADER);
            // The engine reads no cookie; the session's never leaves the gateway.
            headers.remove(COOKIE);
            Authenticated { principal: opened.principal, renewed_cookie: opened.renewed }
        }
        None => {
            let principal = auth.authenticate(listener, headers, connection.workload.as_ref()).await?;
            // A bearer or key won over a session cookie that came along: it stays here too.
            // (Without browser sign-in there is no session cookie to look for.)
            if browser.is_some() && crate::browser::cookie(headers, SESSION_COOKIE).is_some() {
                headers.remove(COOKIE);
            }
            Authenticated { principal, renewed_cookie: None }
        }
    };
    headers.remove(AUTHORIZATION);
    headers.remove(API_KEY_HEADER);
    Ok(authenticated)
}
