//! Which authentication methods one listener accepts.

use crate::config::{AuthMethodName, ClientAuth, Config, ConfigError, Listener};

/// Which methods one listener accepts.
#[derive(Debug, Clone)]
pub struct ListenerAuth {
    pub(super) oidc: bool,
    /// Browser session cookies (the API listener, with `auth.browser_sessions`).
    pub(super) browser: bool,
    pub(super) api_key: bool,
    pub(super) mtls: bool,
    /// Indexes into the authenticator's providers that this listener trusts.
    pub(super) providers: Vec<usize>,
    pub(super) require_client_certificate: bool,
}

impl ListenerAuth {
    /// The credentials this listener takes, for the "no credentials" message.
    pub(super) fn accepted(&self) -> &'static str {
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
