//! Every way a request can fail, and the one place that maps each to an HTTP status and a
//! gRPC status. Messages name the problem; none carries a stamp, a backtrace or a path on
//! this host.

use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::parser::ParserError;
use http::StatusCode;
use identity::StampError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No valid identity stamp.
    #[error("{0}")]
    Unauthenticated(StampError),
    /// The request itself is wrong (not UTF-8, unknown command, bad parameter).
    #[error("{0}")]
    BadRequest(String),
    /// The SQL failed to parse, plan or run for a reason the caller can fix.
    #[error("{0}")]
    Query(String),
    /// Over one of the bounds both processes hold statements to, checked before parsing.
    #[error("{0}")]
    TooComplex(#[from] complexity::TooComplex),
    /// Allowed by nobody: writes on a read-only engine, another principal's handle.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("request body over the limit of {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    NotAcceptable(String),
    /// A bounded resource is full (open Flight handles); retry later.
    #[error("{0}")]
    Exhausted(String),
    /// A fault of the engine; the detail goes to the log, not to the client.
    #[error("internal error")]
    Internal(String),
}

impl EngineError {
    /// Stable, machine-readable name of the error, used in JSON error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::Unauthenticated(_) => "unauthenticated",
            EngineError::BadRequest(_) => "bad_request",
            EngineError::Query(_) => "query_error",
            EngineError::TooComplex(_) => "statement_too_complex",
            EngineError::Forbidden(_) => "forbidden",
            EngineError::NotFound(_) => "not_found",
            EngineError::MethodNotAllowed => "method_not_allowed",
            EngineError::PayloadTooLarge(_) => "payload_too_large",
            EngineError::NotAcceptable(_) => "not_acceptable",
            EngineError::Exhausted(_) => "resource_exhausted",
            EngineError::Internal(_) => "internal",
        }
    }

    pub fn http_status(&self) -> StatusCode {
        match self {
            EngineError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            EngineError::BadRequest(_) | EngineError::Query(_) | EngineError::TooComplex(_) => StatusCode::BAD_REQUEST,
            EngineError::Forbidden(_) => StatusCode::FORBIDDEN,
            EngineError::NotFound(_) => StatusCode::NOT_FOUND,
            EngineError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            EngineError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            EngineError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            EngineError::Exhausted(_) => StatusCode::SERVICE_UNAVAILABLE,
            EngineError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn grpc_status(&self) -> tonic::Status {
        let message = self.to_string();
        match self {
            EngineError::Unauthenticated(_) => tonic::Status::unauthenticated(message),
            EngineError::BadRequest(_)
            | EngineError::Query(_)
            | EngineError::TooComplex(_)
            | EngineError::NotAcceptable(_) => tonic::Status::invalid_argument(message),
            EngineError::Forbidden(_) => tonic::Status::permission_denied(message),
            EngineError::NotFound(_) => tonic::Status::not_found(message),
            EngineError::MethodNotAllowed => tonic::Status::unimplemented(message),
            EngineError::PayloadTooLarge(_) | EngineError::Exhausted(_) => tonic::Status::resource_exhausted(message),
            EngineError::Internal(_) => tonic::Status::internal(message),
        }
    }

    /// Logs the detail of internal errors (which clients never see).
    pub fn log(&self, request_id: &str) {
        match self {
            EngineError::Internal(detail) => tracing::error!(request_id, detail, "internal error"),
            other => tracing::debug!(request_id, code = other.code(), error = %other, "request refused"),
        }
    }
}

impl From<DataFusionError> for EngineError {
    fn from(error: DataFusionError) -> Self {
        match error.find_root() {
            DataFusionError::Internal(_)
            | DataFusionError::IoError(_)
            | DataFusionError::ObjectStore(_)
            | DataFusionError::External(_)
            | DataFusionError::ExecutionJoin(_) => EngineError::Internal(error.to_string()),
            DataFusionError::ResourcesExhausted(_) => EngineError::Exhausted(error.strip_backtrace()),
            DataFusionError::SQL(error, _) if matches!(**error, ParserError::RecursionLimitExceeded) => {
                EngineError::TooComplex(complexity::TooComplex::ParserDepth)
            }
            _ => EngineError::Query(error.strip_backtrace()),
        }
    }
}

impl From<datafusion::arrow::error::ArrowError> for EngineError {
    fn from(error: datafusion::arrow::error::ArrowError) -> Self {
        EngineError::from(DataFusionError::from(error))
    }
}

impl From<EngineError> for tonic::Status {
    fn from(error: EngineError) -> Self {
        error.grpc_status()
    }
}
