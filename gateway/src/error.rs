//! Every way the gateway refuses or fails a request, and the one place each becomes an HTTP
//! status (JSON body) or a gRPC status (trailers-only response). Messages name the problem
//! and never carry a credential.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::auth::AuthError;
use crate::authz::{AuthzError, SqlError};
use crate::body::{Body, empty, full};
use crate::ratelimit::Limited;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{0}")]
    Unauthenticated(#[from] AuthError),
    #[error("{0}")]
    Authorization(#[from] AuthzError),
    #[error("rate limit exceeded ({}); retry in {} s", .0.limiter, retry_secs(.0))]
    RateLimited(Limited),
    #[error("request body over the limit of {0} bytes")]
    PayloadTooLarge(usize),
    /// A route the gateway serves, with another method; the `Allow` value.
    #[error("{0} {1} is not allowed; use {2}")]
    MethodNotAllowed(String, &'static str, &'static str),
    /// What authorization reads (the SQL body, a first gRPC message) did not arrive in time.
    #[error("{0} did not arrive within timeouts.client_body_secs ({1} s)")]
    ClientTimeout(&'static str, u64),
    /// The client's request body broke off or was malformed at the HTTP level.
    #[error("request body could not be read: {0}")]
    ClientBody(String),
    #[error("upstream unavailable")]
    UpstreamUnavailable(String),
    #[error("upstream did not answer in time")]
    UpstreamTimeout,
    /// `audit.on_failure: deny` and an audit target cannot be written.
    #[error("audit events cannot be written; requests are refused until the audit log recovers")]
    AuditUnavailable,
    #[error("internal error")]
    Internal(String),
}

impl GatewayError {
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::Unauthenticated(AuthError::KeysUnavailable(_)) => "auth_unavailable",
            GatewayError::Unauthenticated(_) => "unauthenticated",
            GatewayError::Authorization(AuthzError::Sql(SqlError::Parse(_) | SqlError::Empty)) => "invalid_sql",
            GatewayError::Authorization(AuthzError::Malformed(_)) | GatewayError::ClientBody(_) => "bad_request",
            GatewayError::Authorization(AuthzError::NotRouted(_)) => "not_found",
            GatewayError::Authorization(AuthzError::UnknownDataset(_)) => "dataset_not_found",
            GatewayError::Authorization(_) => "forbidden",
            GatewayError::RateLimited(_) => "rate_limited",
            GatewayError::PayloadTooLarge(_) => "payload_too_large",
            GatewayError::MethodNotAllowed(..) => "method_not_allowed",
            GatewayError::ClientTimeout(..) => "request_timeout",
            GatewayError::UpstreamUnavailable(_) => "upstream_unavailable",
            GatewayError::UpstreamTimeout => "upstream_timeout",
            GatewayError::AuditUnavailable => "audit_unavailable",
            GatewayError::Internal(_) => "internal",
        }
    }

    pub fn http_status(&self) -> StatusCode {
        match self {
            GatewayError::Unauthenticated(AuthError::KeysUnavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            GatewayError::Authorization(AuthzError::Sql(SqlError::Parse(_) | SqlError::Empty))
            | GatewayError::Authorization(AuthzError::Malformed(_))
            | GatewayError::ClientBody(_) => StatusCode::BAD_REQUEST,
            GatewayError::Authorization(AuthzError::NotRouted(_) | AuthzError::UnknownDataset(_)) => {
                StatusCode::NOT_FOUND
            }
            GatewayError::Authorization(_) => StatusCode::FORBIDDEN,
            GatewayError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::MethodNotAllowed(..) => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::ClientTimeout(..) => StatusCode::REQUEST_TIMEOUT,
            GatewayError::UpstreamUnavailable(_) => StatusCode::BAD_GATEWAY,
            GatewayError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::AuditUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// gRPC status code (https://grpc.github.io/grpc/core/md_doc_statuscodes.html).
    pub fn grpc_code(&self) -> u8 {
        match self {
            GatewayError::Unauthenticated(AuthError::KeysUnavailable(_)) => 14,
            GatewayError::Unauthenticated(_) => 16,
            GatewayError::Authorization(AuthzError::Sql(SqlError::Parse(_) | SqlError::Empty))
            | GatewayError::Authorization(AuthzError::Malformed(_))
            | GatewayError::ClientBody(_) => 3,
            GatewayError::Authorization(AuthzError::NotRouted(_)) | GatewayError::MethodNotAllowed(..) => 12,
            GatewayError::Authorization(AuthzError::UnknownDataset(_)) => 5,
            GatewayError::Authorization(_) => 7,
            GatewayError::RateLimited(_) | GatewayError::PayloadTooLarge(_) => 8,
            GatewayError::UpstreamUnavailable(_) | GatewayError::AuditUnavailable => 14,
            GatewayError::UpstreamTimeout | GatewayError::ClientTimeout(..) => 4,
            GatewayError::Internal(_) => 13,
        }
    }

    /// The response for this error, in the protocol the client spoke.
    pub fn into_response(self, grpc: bool, request_id: &str) -> Response<Body> {
        match &self {
            GatewayError::UpstreamUnavailable(detail) | GatewayError::Internal(detail) => {
                tracing::warn!(request_id, code = self.code(), detail, "request failed");
            }
            _ => tracing::debug!(request_id, code = self.code(), "request refused"),
        }
        if grpc {
            let mut response = Response::new(empty());
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
            headers.insert("grpc-status", HeaderValue::from(u16::from(self.grpc_code())));
            if let Ok(message) = HeaderValue::from_str(&percent_encode(&self.to_string())) {
                headers.insert("grpc-message", message);
            }
            return response;
        }
        let body = serde_json::json!({
            "error": {"code": self.code(), "message": self.to_string()},
            "request_id": request_id,
        });
        let mut response = Response::new(full(Bytes::from(body.to_string())));
        *response.status_mut() = self.http_status();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(challenge) = self.challenge() {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
        }
        if let GatewayError::MethodNotAllowed(_, _, allow) = &self {
            response.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if let GatewayError::RateLimited(limited) = &self {
            let headers = response.headers_mut();
            let secs = retry_secs(limited);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
            headers.insert("ratelimit-limit", HeaderValue::from(limited.limit));
            headers.insert("ratelimit-remaining", HeaderValue::from_static("0"));
            headers.insert("ratelimit-reset", HeaderValue::from(secs));
        }
        response
    }

    /// RFC 6750 §3: a bare challenge when no credentials came, `invalid_token` with the
    /// reason when they were bad.
    fn challenge(&self) -> Option<HeaderValue> {
        let GatewayError::Unauthenticated(error) = self else { return None };
        if matches!(error, AuthError::KeysUnavailable(_)) {
            return None;
        }
        if error.is_missing() {
            return Some(HeaderValue::from_static("Bearer realm=\"portcullis\""));
        }
        let description = error.to_string().replace(['"', '\\'], "'");
        HeaderValue::from_str(&format!(
            "Bearer realm=\"portcullis\", error=\"invalid_token\", error_description=\"{description}\""
        ))
        .ok()
    }
}

/// Whole seconds to wait, at least 1 (`Retry-After` has no fractions).
fn retry_secs(limited: &Limited) -> u64 {
    limited.retry_after.as_secs_f64().ceil().max(1.0) as u64
}

/// gRPC's `grpc-message` is percent-encoded (anything outside printable ASCII, and `%`).
fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..0x7f).contains(&byte) && byte != b'%' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
