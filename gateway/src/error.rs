//! Every way the gateway refuses or fails a request, and the one place each becomes an HTTP
//! status (JSON body) or a gRPC status (trailers-only response). Messages name the problem
//! and never carry a credential.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::auth::AuthError;
use crate::authz::{AuthzError, SqlError};
use crate::body::{Body, empty, full};
use crate::grpc_code::GrpcCode;
use crate::ratelimit::Limited;

#[derive(Debug, thiserror::Error)]
pub(crate) enum GatewayError {
    #[error("{0}")]
    Unauthenticated(#[from] AuthError),
    #[error("{0}")]
    Authorization(#[from] AuthzError),
    #[error("rate limit exceeded ({}); retry in {} s", .0.limiter, retry_secs(.0))]
    RateLimited(Limited),
    /// A query past its caller's concurrency or rows-per-window limit (`query_limits`).
    #[error("{}", query_refusal(.0))]
    QueryLimited(crate::query_limits::Refused),
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
    /// A browser-session request that changes something or runs SQL failed the same-origin
    /// or CSRF-token check ([`crate::browser::csrf`]).
    #[error("{0}")]
    Csrf(&'static str),
    #[error("internal error")]
    Internal(String),
}

/// A row of the error table: the code in bodies, events and metrics, and the two statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Kind {
    pub code: &'static str,
    pub http: StatusCode,
    pub grpc: GrpcCode,
}

impl GatewayError {
    /// The error table, one row per kind of error and no catch-all: a new error variant
    /// does not compile until it has its row.
    pub(crate) fn kind(&self) -> Kind {
        use GatewayError as E;
        use StatusCode as H;
        let (code, http, grpc) = match self {
            E::Unauthenticated(AuthError::KeysUnavailable(_)) => {
                ("auth_unavailable", H::SERVICE_UNAVAILABLE, GrpcCode::Unavailable)
            }
            E::Unauthenticated(_) => ("unauthenticated", H::UNAUTHORIZED, GrpcCode::Unauthenticated),
            E::Authorization(AuthzError::Sql(SqlError::Parse(_) | SqlError::Empty)) => {
                ("invalid_sql", H::BAD_REQUEST, GrpcCode::InvalidArgument)
            }
            E::Authorization(AuthzError::Sql(SqlError::TooComplex(_))) => {
                ("statement_too_complex", H::BAD_REQUEST, GrpcCode::InvalidArgument)
            }
            E::Authorization(AuthzError::Sql(SqlError::Unsupported(_) | SqlError::Name(_))) => {
                ("forbidden", H::FORBIDDEN, GrpcCode::PermissionDenied)
            }
            E::Authorization(AuthzError::Denied { .. } | AuthzError::Unsupported(_)) => {
                ("forbidden", H::FORBIDDEN, GrpcCode::PermissionDenied)
            }
            E::Authorization(AuthzError::Malformed(_)) | E::ClientBody(_) => {
                ("bad_request", H::BAD_REQUEST, GrpcCode::InvalidArgument)
            }
            E::Authorization(AuthzError::NotRouted(_)) => ("not_found", H::NOT_FOUND, GrpcCode::Unimplemented),
            E::Authorization(AuthzError::UnknownDataset(_)) => ("dataset_not_found", H::NOT_FOUND, GrpcCode::NotFound),
            E::RateLimited(_) => ("rate_limited", H::TOO_MANY_REQUESTS, GrpcCode::ResourceExhausted),
            E::QueryLimited(refused) => match refused.limit {
                "rows_per_window" => ("row_budget_exhausted", H::TOO_MANY_REQUESTS, GrpcCode::ResourceExhausted),
                _ => ("too_many_queries", H::TOO_MANY_REQUESTS, GrpcCode::ResourceExhausted),
            },
            E::PayloadTooLarge(_) => ("payload_too_large", H::PAYLOAD_TOO_LARGE, GrpcCode::ResourceExhausted),
            E::MethodNotAllowed(..) => ("method_not_allowed", H::METHOD_NOT_ALLOWED, GrpcCode::Unimplemented),
            E::ClientTimeout(..) => ("request_timeout", H::REQUEST_TIMEOUT, GrpcCode::DeadlineExceeded),
            E::UpstreamUnavailable(_) => ("upstream_unavailable", H::BAD_GATEWAY, GrpcCode::Unavailable),
            E::UpstreamTimeout => ("upstream_timeout", H::GATEWAY_TIMEOUT, GrpcCode::DeadlineExceeded),
            E::AuditUnavailable => ("audit_unavailable", H::SERVICE_UNAVAILABLE, GrpcCode::Unavailable),
            E::Csrf(_) => ("csrf_failed", H::FORBIDDEN, GrpcCode::PermissionDenied),
            E::Internal(_) => ("internal", H::INTERNAL_SERVER_ERROR, GrpcCode::Internal),
        };
        Kind { code, http, grpc }
    }

    pub(crate) fn code(&self) -> &'static str {
        self.kind().code
    }

    pub(crate) fn http_status(&self) -> StatusCode {
        self.kind().http
    }

    /// The response for this error, in the protocol the client spoke.
    pub(crate) fn into_response(self, grpc: bool, request_id: &str) -> Response<Body> {
        match &self {
            GatewayError::UpstreamUnavailable(detail) | GatewayError::Internal(detail) => {
                tracing::warn!(request_id, code = self.code(), detail, "request failed");
            }
            _ => tracing::debug!(request_id, code = self.code(), "request refused"),
        }
        if grpc {
            let mut response = Response::new(empty());
            let headers = response.headers_mut();
            if let GatewayError::QueryLimited(refused) = &self {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(whole_secs(refused.retry_after)));
            }
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
            headers.insert("grpc-status", HeaderValue::from(self.kind().grpc.number()));
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
        if let GatewayError::QueryLimited(refused) = &self {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(whole_secs(refused.retry_after)));
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
    whole_secs(limited.retry_after)
}

/// A wait in whole seconds, at least one (`Retry-After`).
fn whole_secs(wait: std::time::Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

/// What a query refused by its caller's limits is told.
fn query_refusal(refused: &crate::query_limits::Refused) -> String {
    let secs = whole_secs(refused.retry_after);
    match refused.limit {
        "rows_per_window" => format!(
            "the rows this caller may receive per window are spent (rows_per_window of tier {}); retry in {secs} s",
            refused.tier
        ),
        _ => format!(
            "too many queries running for this caller (concurrent_queries of tier {}, or the gateway's \
             query_limits.concurrent_queries); retry in {secs} s",
            refused.tier
        ),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(limit: &'static str) -> crate::query_limits::Refused {
        crate::query_limits::Refused {
            limit,
            tier: std::sync::Arc::from("group:analysts"),
            retry_after: std::time::Duration::from_millis(1500),
            waited: std::time::Duration::ZERO,
        }
    }

    #[test]
    fn a_refused_query_says_which_limit_and_when_to_retry() {
        for (limit, words) in [("concurrent_queries", "too many queries"), ("rows_per_window", "per window are spent")]
        {
            let error = GatewayError::QueryLimited(refused(limit));
            let message = error.to_string();
            assert!(
                message.contains(words) && message.contains("tier group:analysts") && message.contains("retry in 2 s"),
                "{message}"
            );
            for grpc in [false, true] {
                let response = GatewayError::QueryLimited(refused(limit)).into_response(grpc, "r");
                assert_eq!(response.headers()[header::RETRY_AFTER], "2");
            }
        }
    }

    /// The error table of docs/gateway.md (Errors), row by row.
    #[test]
    fn each_error_has_its_code_and_statuses() {
        let limited = Limited { limiter: "ip", limit: 1, retry_after: std::time::Duration::from_secs(1) };
        let rows: Vec<(GatewayError, &str, u16, u16)> = vec![
            (AuthError::Expired.into(), "unauthenticated", 401, 16),
            (AuthError::KeysUnavailable("idp".into()).into(), "auth_unavailable", 503, 14),
            (AuthzError::Denied { action: "select", resource: "x".into() }.into(), "forbidden", 403, 7),
            (AuthzError::Sql(SqlError::Unsupported("GRANT".into())).into(), "forbidden", 403, 7),
            (AuthzError::Sql(SqlError::Parse("x".into())).into(), "invalid_sql", 400, 3),
            (AuthzError::Sql(complexity::TooComplex::Operators.into()).into(), "statement_too_complex", 400, 3),
            (AuthzError::Malformed("x".into()).into(), "bad_request", 400, 3),
            (AuthzError::NotRouted("x".into()).into(), "not_found", 404, 12),
            (AuthzError::UnknownDataset("x".into()).into(), "dataset_not_found", 404, 5),
            (GatewayError::MethodNotAllowed("GET".into(), "/v1/sql", "POST"), "method_not_allowed", 405, 12),
            (GatewayError::ClientTimeout("the request body", 30), "request_timeout", 408, 4),
            (GatewayError::RateLimited(limited), "rate_limited", 429, 8),
            (GatewayError::QueryLimited(refused("concurrent_queries")), "too_many_queries", 429, 8),
            (GatewayError::QueryLimited(refused("rows_per_window")), "row_budget_exhausted", 429, 8),
            (GatewayError::PayloadTooLarge(1), "payload_too_large", 413, 8),
            (GatewayError::UpstreamUnavailable("x".into()), "upstream_unavailable", 502, 14),
            (GatewayError::UpstreamTimeout, "upstream_timeout", 504, 4),
            (GatewayError::AuditUnavailable, "audit_unavailable", 503, 14),
            (GatewayError::Csrf("x"), "csrf_failed", 403, 7),
            (GatewayError::Internal("x".into()), "internal", 500, 13),
        ];
        for (error, code, http, grpc) in rows {
            let kind = error.kind();
            assert_eq!((kind.code, kind.http.as_u16(), kind.grpc.number()), (code, http, grpc), "{error:?}");
        }
    }
}
