//! Renewing a session's claims with the provider's refresh token when the ID token it signed
//! in with has expired: the provider says whether the person may still be signed in, and the
//! new ID token's groups, email and tenant replace the old. A provider that refuses (revoked,
//! disabled user) ends the session; one that cannot be reached answers 503 and keeps it.
//!
//! Several requests of one browser may arrive with the same expired cookie at once; a
//! provider that rotates refresh tokens accepts only the first. The session renewed by the
//! first is kept for a minute under its id and handed to the others.

use openidconnect::{OAuth2TokenResponse, RefreshToken, RequestTokenError};

use super::error::BrowserError;
use super::routes::Browser;
use super::session::Opened;
use crate::auth::AuthError;

/// How long a renewed session is handed to concurrent requests that carry the old cookie.
const SHARED_SECS: u64 = 60;

impl Browser {
    /// `opened` with its claims renewed at the provider, and the cookie to send back.
    pub(crate) async fn refresh(&self, opened: Opened, now: u64) -> Result<Opened, AuthError> {
        let sid = opened.session.sid.clone();
        if let Some(session) = self.renewed.get(&sid, now) {
            return Ok(self.sessions.opened(session, now, true));
        }
        let session = opened.session;
        let provider = self
            .auth
            .providers()
            .iter()
            .find(|p| p.name == session.provider)
            .ok_or(AuthError::SessionExpired("the provider that signed this session in is no longer configured"))?;
        let unavailable = || AuthError::KeysUnavailable(provider.name.clone());
        let (client, _discovered) = self.client(provider).map_err(|_| unavailable())?;
        let token = RefreshToken::new(session.refresh_token.clone().unwrap_or_default());
        let http = crate::auth::fetch::oidc_client(provider.fetcher());
        let request = client.exchange_refresh_token(&token).map_err(|_| unavailable())?;
        let tokens = match request.request_async(&http).await {
            Ok(tokens) => tokens,
            Err(RequestTokenError::ServerResponse(_)) => {
                // Another request of this browser may have renewed it a moment ago.
                if let Some(session) = self.renewed.get(&sid, now) {
                    return Ok(self.sessions.opened(session, now, true));
                }
                return Err(AuthError::SessionExpired("the provider no longer accepts this session"));
            }
            Err(_) => return Err(unavailable()),
        };
        // A refreshed ID token carries no nonce of ours; its subject must be the same person.
        let no_nonce = |_: Option<&openidconnect::Nonce>| Ok(());
        let verified =
            super::signin::verify_id_token(provider, &client, &tokens, no_nonce, now).await.map_err(|e| match e {
                BrowserError::Unavailable(_) => unavailable(),
                _ => AuthError::SessionExpired("the provider's renewed ID token was refused"),
            })?;
        let mut session = session;
        match verified {
            Some(verified) if verified.subject != session.principal.subject => {
                return Err(AuthError::SessionExpired("the provider renewed the session for another subject"));
            }
            Some(verified) => {
                session.principal = std::sync::Arc::new(verified.principal);
                session.refresh_at = verified.expires;
            }
            // No new ID token: the claims stand for as long as the new access token.
            None => {
                let lifetime = tokens.expires_in().map_or(300, |d| d.as_secs());
                session.refresh_at = now.saturating_add(lifetime);
            }
        }
        if let Some(rotated) = tokens.refresh_token() {
            session.refresh_token = Some(rotated.secret().clone());
        }
        // A provider whose tokens are already expired would be asked again on every request.
        session.refresh_at = session.refresh_at.max(now.saturating_add(30));
        let opened = self.sessions.opened(session, now, true);
        if opened.renewed.is_none() {
            return Err(AuthError::SessionExpired("the renewed session does not fit in a cookie (too many groups?)"));
        }
        self.renewed.insert(sid, opened.session.clone(), now.saturating_add(SHARED_SECS), now);
        Ok(opened)
    }
}
