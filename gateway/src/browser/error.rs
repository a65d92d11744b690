//! Why a browser route refused: each reason has a status and a code (docs/gateway.md,
//! "Browser sign-in").

use http::{Method, StatusCode};

use crate::auth::AuthError;

/// Why a browser route refused; each has a status and a code (docs/gateway.md, "Browser sign-in").
#[derive(Debug, thiserror::Error)]
pub(crate) enum BrowserError {
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
    pub(crate) fn status_and_code(&self) -> (StatusCode, &'static str) {
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
