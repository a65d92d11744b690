//! Why a caller was not authenticated.

/// Why a caller was not authenticated. Messages name the category and never contain the
/// credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// With what this listener accepts, so a caller is not told to try a method it refuses.
    #[error("no credentials: send {0}")]
    Missing(&'static str),
    #[error("token malformed: {0}")]
    Malformed(&'static str),
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("token issued in the future (iat beyond the clock leeway)")]
    IssuedInFuture,
    #[error("token signature invalid")]
    BadSignature,
    #[error("token algorithm not allowed")]
    AlgorithmNotAllowed,
    #[error("token issuer unknown or not trusted on this listener")]
    UnknownIssuer,
    #[error("token audience not accepted")]
    WrongAudience,
    #[error("token signed with an unknown key")]
    UnknownKey,
    #[error("token has no {0} claim")]
    MissingClaim(&'static str),
    #[error("API key invalid")]
    InvalidApiKey,
    #[error("API key expired")]
    ExpiredApiKey,
    #[error("session token invalid or expired; run the Flight handshake again")]
    InvalidSession,
    #[error("{0} not accepted on this listener")]
    MethodNotAllowed(&'static str),
    #[error("a verified client certificate is required on this listener")]
    ClientCertificateRequired,
    #[error("credentials ambiguous: send one of a bearer token or an API key")]
    Ambiguous,
    /// A browser session cookie that does not open (tampered, unknown key, malformed).
    #[error("{0}; sign in again at /auth/login")]
    SessionInvalid(&'static str),
    #[error("{0}; sign in again at /auth/login")]
    SessionExpired(&'static str),
    /// Not the caller's fault: the provider's keys have not been fetched yet (503).
    #[error("identity provider {0} has no keys yet; retry shortly")]
    KeysUnavailable(String),
}

impl AuthError {
    /// RFC 6750 §3.1: a request without credentials gets a bare challenge; a bad token gets
    /// `error="invalid_token"`.
    /// The category, for metrics (a closed set).
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing(_) => "missing",
            AuthError::Malformed(_) => "malformed",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::IssuedInFuture => "issued_in_future",
            AuthError::BadSignature => "bad_signature",
            AuthError::AlgorithmNotAllowed => "algorithm_not_allowed",
            AuthError::UnknownIssuer => "unknown_issuer",
            AuthError::WrongAudience => "wrong_audience",
            AuthError::UnknownKey => "unknown_key",
            AuthError::MissingClaim(_) => "missing_claim",
            AuthError::InvalidApiKey => "invalid_api_key",
            AuthError::ExpiredApiKey => "expired_api_key",
            AuthError::InvalidSession => "invalid_session",
            AuthError::MethodNotAllowed(_) => "method_not_allowed",
            AuthError::ClientCertificateRequired => "client_certificate_required",
            AuthError::Ambiguous => "ambiguous",
            AuthError::SessionInvalid(_) => "invalid_session_cookie",
            AuthError::SessionExpired(_) => "session_expired",
            AuthError::KeysUnavailable(_) => "keys_unavailable",
        }
    }

    pub fn is_missing(&self) -> bool {
        matches!(self, AuthError::Missing(_) | AuthError::ClientCertificateRequired)
    }
}
