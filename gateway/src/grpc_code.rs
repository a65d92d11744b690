//! gRPC status codes (<https://grpc.github.io/grpc/core/md_doc_statuscodes.html>), written
//! once: the number on the wire, the name in metric labels and audit events, and the HTTP
//! status a call that ended with it counts as in the request metrics.

use http::HeaderMap;

/// One gRPC status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GrpcCode {
    Ok = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

/// Every code, in number order.
const ALL: [GrpcCode; 17] = {
    use GrpcCode as C;
    [
        C::Ok,
        C::Cancelled,
        C::Unknown,
        C::InvalidArgument,
        C::DeadlineExceeded,
        C::NotFound,
        C::AlreadyExists,
        C::PermissionDenied,
        C::ResourceExhausted,
        C::FailedPrecondition,
        C::Aborted,
        C::OutOfRange,
        C::Unimplemented,
        C::Internal,
        C::Unavailable,
        C::DataLoss,
        C::Unauthenticated,
    ]
};

impl GrpcCode {
    /// The code a number stands for; `None` outside the specification.
    pub(crate) fn from_number(number: u16) -> Option<Self> {
        ALL.get(usize::from(number)).copied()
    }

    /// The `grpc-status` of a response head or trailers, as its number.
    pub(crate) fn number_in(headers: &HeaderMap) -> Option<u16> {
        headers.get("grpc-status")?.to_str().ok()?.parse().ok()
    }

    pub(crate) fn number(self) -> u16 {
        self as u16
    }

    /// Its name as metric labels and audit codes write it (`permission_denied`).
    pub(crate) fn name(self) -> &'static str {
        use GrpcCode as C;
        match self {
            C::Ok => "ok",
            C::Cancelled => "cancelled",
            C::Unknown => "unknown",
            C::InvalidArgument => "invalid_argument",
            C::DeadlineExceeded => "deadline_exceeded",
            C::NotFound => "not_found",
            C::AlreadyExists => "already_exists",
            C::PermissionDenied => "permission_denied",
            C::ResourceExhausted => "resource_exhausted",
            C::FailedPrecondition => "failed_precondition",
            C::Aborted => "aborted",
            C::OutOfRange => "out_of_range",
            C::Unimplemented => "unimplemented",
            C::Internal => "internal",
            C::Unavailable => "unavailable",
            C::DataLoss => "data_loss",
            C::Unauthenticated => "unauthenticated",
        }
    }

    /// The HTTP status a call that ended with this code counts as, as the gateway's own
    /// refusals count; `None` for `ok`.
    pub(crate) fn http_equivalent(self) -> Option<u16> {
        use GrpcCode as C;
        Some(match self {
            C::Ok => return None,
            C::InvalidArgument | C::FailedPrecondition | C::OutOfRange => 400,
            C::Unauthenticated => 401,
            C::PermissionDenied => 403,
            C::NotFound => 404,
            C::AlreadyExists | C::Aborted => 409,
            C::ResourceExhausted => 429,
            C::Cancelled => 499,
            C::Unimplemented => 501,
            C::Unavailable => 503,
            C::DeadlineExceeded => 504,
            C::Unknown | C::Internal | C::DataLoss => 500,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_names_and_http_statuses_agree_with_the_specification() {
        for (number, code) in ALL.iter().enumerate() {
            assert_eq!(usize::from(code.number()), number);
            assert_eq!(GrpcCode::from_number(code.number()), Some(*code));
        }
        assert_eq!(GrpcCode::from_number(17), None);
        assert_eq!(GrpcCode::PermissionDenied.name(), "permission_denied");
        assert_eq!(GrpcCode::Unauthenticated.name(), "unauthenticated");
        assert_eq!(GrpcCode::Ok.http_equivalent(), None);
        assert_eq!(GrpcCode::ResourceExhausted.http_equivalent(), Some(429));
        assert_eq!(GrpcCode::DataLoss.http_equivalent(), Some(500));
        let mut headers = HeaderMap::new();
        headers.insert("grpc-status", http::HeaderValue::from_static("7"));
        assert_eq!(GrpcCode::number_in(&headers), Some(7));
        assert_eq!(GrpcCode::number_in(&HeaderMap::new()), None);
    }
}
