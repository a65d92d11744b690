//! The browser session: who signed in and when, sealed into a `__Host-` cookie (Secure,
//! HttpOnly, SameSite=Lax, Path=/). Nothing in it is readable without the key, no provider
//! token included; a session outlives a gateway restart when the key stays the same.
//!
//! Lifetimes: a session ends `absolute_secs` after sign-in and `idle_secs` after its last
//! request; the cookie is re-sealed with a new last-seen time at most once a minute, so an
//! active session is not re-sealed on every request. Logout puts the session's id on a
//! bounded revocation list until the session would have ended anyway.

use std::sync::Arc;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderMap;
use http::header::{COOKIE, HeaderValue};
use identity::{ExpiringCache, Principal};
use serde::{Deserialize, Serialize};

use super::seal::{KeyRing, MAX_SEALED_LEN, OpenError};
use crate::auth::AuthError;
use crate::config::{BrowserSessionsConfig, ConfigError};

/// The session cookie. `__Host-`: Secure, Path=/, no Domain, so no other host (a sibling
/// subdomain included) can set or shadow it.
pub const SESSION_COOKIE: &str = "__Host-portcullis-session";
/// What every sealed session value starts with: it tells a session cookie from other
/// base64 (`.ci/check-audit-secrets` looks for it in audit events, as it does `pcl_` keys).
pub(super) const SEALED_PREFIX: &str = "pck_";
/// Seconds between re-seals of an active session's last-seen time.
const RESEAL_AFTER_SECS: u64 = 60;

/// What the cookie carries. Short field names: it travels with every request. `{:?}` leaves
/// out the CSRF and refresh tokens.
#[derive(Clone, Serialize, Deserialize)]
pub struct Session {
    /// A random id: what logout revokes and audit correlates.
    pub sid: String,
    /// The per-session CSRF token (random), handed to the console by `/auth/session`.
    pub csrf: String,
    /// Shared with the request (an `Arc` in the cookie's JSON too: serde's `rc`, no copy).
    pub principal: Arc<Principal>,
    /// The provider (its name) that signed the browser in.
    pub provider: String,
    /// Signed in (unix seconds).
    pub iat: u64,
    /// Last request seen (unix seconds, to within [`RESEAL_AFTER_SECS`]).
    pub seen: u64,
    /// The provider's refresh token, when it issued one: sealed with the rest, never readable.
    #[serde(default, rename = "rt", skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// When the claims are renewed with it (the ID token's expiry, unix seconds).
    #[serde(default, rename = "rat")]
    pub refresh_at: u64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("sid", &self.sid)
            .field("principal", &self.principal.id)
            .field("provider", &self.provider)
            .field("iat", &self.iat)
            .field("seen", &self.seen)
            .field("refresh_at", &self.refresh_at)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Whether the claims are due for renewal at the provider (only with a refresh token).
    pub fn refresh_due(&self, now: u64) -> bool {
        self.refresh_token.is_some() && now >= self.refresh_at
    }
}

/// An opened session and, when its last-seen time moved on, the cookie to send back.
#[derive(Debug)]
pub struct Opened {
    pub session: Session,
    pub principal: Arc<Principal>,
    pub renewed: Option<HeaderValue>,
}

pub struct Sessions {
    ring: KeyRing,
    absolute: u64,
    idle: u64,
    revoked: ExpiringCache<String, ()>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").field("absolute", &self.absolute).field("idle", &self.idle).finish_non_exhaustive()
    }
}

impl Sessions {
    pub fn from_config(config: &BrowserSessionsConfig, field: &str) -> Result<Self, ConfigError> {
        if config.idle_secs == 0 || config.absolute_secs < config.idle_secs {
            return Err(ConfigError::new(field, "need 0 < idle_secs <= absolute_secs"));
        }
        Ok(Self::new(
            KeyRing::from_config(&config.keys, &format!("{field}.keys"))?,
            config.absolute_secs,
            config.idle_secs,
        ))
    }

    pub fn new(ring: KeyRing, absolute: u64, idle: u64) -> Self {
        Self { ring, absolute, idle, revoked: ExpiringCache::new(100_000) }
    }

    pub fn absolute_secs(&self) -> u64 {
        self.absolute
    }

    /// A new session for `principal`, signed in now.
    pub fn start(&self, principal: Principal, provider: &str, now: u64) -> Option<Session> {
        Some(Session {
            sid: random_token(16)?,
            csrf: random_token(24)?,
            principal: Arc::new(principal),
            provider: provider.into(),
            iat: now,
            seen: now,
            refresh_token: None,
            refresh_at: 0,
        })
    }

    /// The `Set-Cookie` value carrying `session` (`None` if it is too large to open again),
    /// marked sensitive (HTTP/2 never puts it in
    /// the HPACK table, and `Debug` prints no value).
    pub fn cookie(&self, session: &Session) -> Option<HeaderValue> {
        let json = serde_json::to_vec(session).ok()?;
        let sealed = self.ring.seal(SESSION_COOKIE, &json)?;
        // What `open` would refuse is never handed out (found by the `session` fuzz target).
        if sealed.len() > MAX_SEALED_LEN {
            return None;
        }
        let sealed = format!("{SEALED_PREFIX}{sealed}");
        let max_age = (session.iat + self.absolute).saturating_sub(session.seen);
        let mut value = HeaderValue::from_str(&format!(
            "{SESSION_COOKIE}={sealed}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={max_age}"
        ))
        .ok()?;
        value.set_sensitive(true);
        Some(value)
    }

    /// The request's session, if it carries the cookie: `None` without one.
    pub fn from_headers(&self, headers: &HeaderMap, now: u64) -> Option<Result<Opened, AuthError>> {
        let sealed = cookie(headers, SESSION_COOKIE)?;
        Some(self.open(sealed, now))
    }

    pub fn open(&self, sealed: &str, now: u64) -> Result<Opened, AuthError> {
        let sealed =
            sealed.strip_prefix(SEALED_PREFIX).ok_or(AuthError::SessionInvalid("the session cookie is malformed"))?;
        let session: Result<Session, _> = self
            .ring
            .open_with(SESSION_COOKIE, sealed, |json| serde_json::from_slice::<Session>(json))
            .map_err(|e| {
                AuthError::SessionInvalid(match e {
                    OpenError::Malformed => "the session cookie is malformed",
                    OpenError::UnknownKey => "the session cookie was sealed with a key this gateway does not have",
                    OpenError::Tampered => "the session cookie was tampered with",
                })
            })?;
        let session = session.map_err(|_| AuthError::SessionInvalid("the session cookie is malformed"))?;
        if now >= session.iat.saturating_add(self.absolute) {
            return Err(AuthError::SessionExpired("the session reached its absolute lifetime"));
        }
        if now >= session.seen.saturating_add(self.idle) {
            return Err(AuthError::SessionExpired("the session was idle too long"));
        }
        if self.revoked.get(&session.sid, now).is_some() {
            return Err(AuthError::SessionExpired("the session was signed out"));
        }
        let reseal = now >= session.seen.saturating_add(RESEAL_AFTER_SECS);
        Ok(self.opened(session, now, reseal))
    }

    /// `session` as the request's, re-sealed (a new last-seen time) when `reseal`.
    pub fn opened(&self, mut session: Session, now: u64, reseal: bool) -> Opened {
        let renewed = if reseal {
            session.seen = now;
            self.cookie(&session)
        } else {
            None
        };
        let principal = Arc::clone(&session.principal);
        Opened { session, principal, renewed }
    }

    /// Logout: the session is refused from now on, even if a copy of its cookie is replayed.
    pub fn revoke(&self, session: &Session, now: u64) {
        self.revoked.insert(session.sid.clone(), (), session.iat.saturating_add(self.absolute), now);
    }
}

/// Whether `token` is this session's CSRF token (constant time).
pub(super) fn csrf_matches(session: &Session, token: &[u8]) -> bool {
    verify_slices_are_equal(session.csrf.as_bytes(), token).is_ok()
}

/// The value of the first cookie called `name` in any `Cookie` header (HTTP/2 may split
/// them over several).
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get_all(COOKIE).iter().filter_map(|value| value.to_str().ok()).flat_map(|value| value.split(';')).find_map(
        |pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then_some(value)
        },
    )
}

/// `bytes` random bytes, base64url.
pub(super) fn random_token(bytes: usize) -> Option<String> {
    let mut random = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut random).ok()?;
    Some(URL_SAFE_NO_PAD.encode(random))
}

/// A `Set-Cookie` that deletes `name`.
pub(super) fn clear_cookie(name: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("{name}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0"))
        .unwrap_or_else(|_| HeaderValue::from_static("portcullis-cleared=; Max-Age=0"))
}

/// Sessions renewed at the provider in the last minute, by session id: handed to the
/// concurrent requests that still carry the old cookie (see `refresh`).
pub(super) type Renewed = ExpiringCache<String, Session>;

pub(super) fn renewed_cache() -> Renewed {
    ExpiringCache::new(10_000)
}

#[cfg(test)]
mod tests {
    use identity::{AuthMethod, PrincipalKind};

    use super::*;

    fn sessions(keys: &[[u8; 32]]) -> Sessions {
        Sessions::new(KeyRing::from_raw(keys).unwrap(), 8 * 3600, 3600)
    }

    fn sealed(sessions: &Sessions, now: u64) -> (Session, String) {
        let mut principal = Principal::new(PrincipalKind::User, "alice", "sub-1", AuthMethod::Browser);
        principal.tenant = Some("acme".into());
        let session = sessions.start(principal, "idp", now).unwrap();
        let cookie = sessions.cookie(&session).unwrap();
        let value = cookie.to_str().unwrap().split(';').next().unwrap().split_once('=').unwrap().1.to_string();
        (session, value)
    }

    #[test]
    fn a_session_opens_until_idle_or_absolute_expiry_or_logout() {
        let s = sessions(&[[1; 32]]);
        let (session, value) = sealed(&s, 1_000);
        let opened = s.open(&value, 1_010).unwrap();
        assert_eq!(opened.principal.id, "alice");
        assert_eq!(opened.principal.auth_method, AuthMethod::Browser);
        assert!(opened.renewed.is_none(), "re-sealed within a minute");
        let opened = s.open(&value, 1_000 + 61).unwrap();
        let renewed = opened.renewed.expect("re-sealed after a minute");
        assert!(renewed.to_str().unwrap().contains("Max-Age=28739"), "{renewed:?}");
        assert_eq!(
            s.open(&value, 1_000 + 3600).unwrap_err(),
            AuthError::SessionExpired("the session was idle too long")
        );
        // Kept active, it still ends at the absolute lifetime.
        let mut active = session.clone();
        active.seen = 1_000 + 8 * 3600 - 10;
        let value = s.cookie(&active).unwrap().to_str().unwrap().split(';').next().unwrap()[SESSION_COOKIE.len() + 1..]
            .to_string();
        assert!(s.open(&value, 1_000 + 8 * 3600 - 1).is_ok());
        assert_eq!(
            s.open(&value, 1_000 + 8 * 3600).unwrap_err(),
            AuthError::SessionExpired("the session reached its absolute lifetime")
        );
        s.revoke(&session, 1_100);
        assert_eq!(s.open(&value, 1_100).unwrap_err(), AuthError::SessionExpired("the session was signed out"));
    }

    #[test]
    fn tampered_and_foreign_cookies_are_refused() {
        let s = sessions(&[[1; 32]]);
        let (_, value) = sealed(&s, 1_000);
        let mut chars: Vec<char> = value.chars().collect();
        let last = chars.len() - 2;
        chars[last] = if chars[last] == 'A' { 'B' } else { 'A' };
        let tampered: String = chars.into_iter().collect();
        assert_eq!(
            s.open(&tampered, 1_001).unwrap_err(),
            AuthError::SessionInvalid("the session cookie was tampered with")
        );
        let other = sessions(&[[2; 32]]);
        assert_eq!(
            other.open(&value, 1_001).unwrap_err(),
            AuthError::SessionInvalid("the session cookie was sealed with a key this gateway does not have")
        );
        // Rotation: the new key first, the old one still opens.
        let rotated = sessions(&[[2; 32], [1; 32]]);
        assert!(rotated.open(&value, 1_001).is_ok());
    }

    /// A session too large to open again is never sealed into a cookie.
    #[test]
    fn an_oversized_session_gets_no_cookie() {
        let s = sessions(&[[1; 32]]);
        let mut principal = Principal::new(PrincipalKind::User, "alice", "alice", AuthMethod::Browser);
        principal.groups = (0..200).map(|i| format!("group-number-{i}")).collect();
        let session = s.start(principal, "idp", 1).unwrap();
        assert!(s.cookie(&session).is_none());
    }

    #[test]
    fn the_cookie_is_found_among_others_and_across_headers() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("a=1; b=2"));
        headers.append(COOKIE, HeaderValue::from_static("__Host-portcullis-session=xyz; c=3"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie(&headers, "b"), Some("2"));
        assert_eq!(cookie(&headers, "portcullis-session"), None);
        let s = sessions(&[[1; 32]]);
        let (session, _) = sealed(&s, 1);
        let set = s.cookie(&session).unwrap();
        let set = set.to_str().unwrap();
        for attribute in ["Path=/", "Secure", "HttpOnly", "SameSite=Lax"] {
            assert!(set.split("; ").any(|a| a == attribute), "{attribute} missing: {set}");
        }
        assert!(!set.contains("Domain"), "{set}");
        assert!(!set.contains("alice"), "the cookie is readable: {set}");
        assert!(s.cookie(&session).unwrap().is_sensitive());
        let mut with_token = session.clone();
        with_token.refresh_token = Some("rt-secret-value".into());
        let printed = format!("{with_token:?}");
        assert!(!printed.contains(&session.csrf) && !printed.contains("rt-secret-value"), "{printed}");
        assert!(csrf_matches(&session, session.csrf.as_bytes()));
        assert!(!csrf_matches(&session, b"guess"));
    }
}
