//! Browser sign-in: a provider's `browser_login` (the gateway as an OIDC client) and
//! `auth.browser_sessions` (the sealed cookie that carries a signed-in browser).

use serde::Deserialize;

use super::reference::Reference;

/// The gateway registered at the provider as a confidential client (authorization code +
/// PKCE). The provider must be found by discovery: its endpoints come from there.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrowserLoginConfig {
    pub client_id: String,
    /// By reference (`${env:NAME}` / `${file:PATH}`); none for a public client (PKCE alone).
    #[serde(default)]
    pub client_secret: Option<Reference>,
    /// `https://gateway.example.com/auth/callback`, exactly as registered at the provider.
    /// Its origin is the gateway's own: return-to URLs and the CSRF check are held to it.
    pub redirect_url: String,
    #[serde(default = "BrowserLoginConfig::default_scopes")]
    pub scopes: Vec<String>,
    /// Where the provider sends the browser after RP-initiated logout (default: the
    /// gateway's `/auth/signed-out`, which must then be registered too).
    #[serde(default)]
    pub post_logout_redirect_url: Option<String>,
}

impl BrowserLoginConfig {
    fn default_scopes() -> Vec<String> {
        ["openid", "email", "profile"].map(String::from).to_vec()
    }

    pub fn new(client_id: impl Into<String>, redirect_url: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret: None,
            redirect_url: redirect_url.into(),
            scopes: Self::default_scopes(),
            post_logout_redirect_url: None,
        }
    }
}

/// The session cookie: sealed (AES-256-GCM) with the first key, opened with any of them, so
/// a rotation is "add the new key first, wait out `absolute_secs`, drop the old one".
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrowserSessionsConfig {
    /// Each 32 random bytes in base64 (`gateway session-key new`), by reference.
    pub keys: Vec<Reference>,
    /// A session ends this long after sign-in, whatever happens.
    #[serde(default = "BrowserSessionsConfig::default_absolute_secs")]
    pub absolute_secs: u64,
    /// ... and this long after its last request.
    #[serde(default = "BrowserSessionsConfig::default_idle_secs")]
    pub idle_secs: u64,
    /// Sign-ins started and not yet finished, at most (a flood of `/auth/login` is refused
    /// beyond it, never grows memory).
    #[serde(default = "BrowserSessionsConfig::default_pending_logins")]
    pub pending_logins: usize,
    /// ... of which one source address may hold this many (so it cannot lock everyone else
    /// out of signing in); raise it for many people behind one NAT.
    #[serde(default = "BrowserSessionsConfig::default_pending_logins_per_source")]
    pub pending_logins_per_source: usize,
    /// A sign-in must come back from the provider within this.
    #[serde(default = "BrowserSessionsConfig::default_login_timeout_secs")]
    pub login_timeout_secs: u64,
}

impl BrowserSessionsConfig {
    pub fn new(keys: Vec<Reference>) -> Self {
        Self {
            keys,
            absolute_secs: Self::default_absolute_secs(),
            idle_secs: Self::default_idle_secs(),
            pending_logins: Self::default_pending_logins(),
            pending_logins_per_source: Self::default_pending_logins_per_source(),
            login_timeout_secs: Self::default_login_timeout_secs(),
        }
    }
    fn default_absolute_secs() -> u64 {
        8 * 3600
    }
    fn default_idle_secs() -> u64 {
        3600
    }
    fn default_pending_logins() -> usize {
        10_000
    }
    fn default_pending_logins_per_source() -> usize {
        64
    }
    fn default_login_timeout_secs() -> u64 {
        600
    }
}
