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
    /// The query reads a column that row and column policy denies the caller.
    #[error("{0}")]
    ColumnForbidden(crate::data_policy::ColumnForbidden),
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("request body over the limit of {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    NotAcceptable(String),
    /// The result is over the caller's cap, in `fail` mode.
    #[error("{0}")]
    ResultLimit(String),
    /// A bounded resource is full (open Flight handles); retry later.
    #[error("{0}")]
    Exhausted(String),
    /// A fault of the engine; the detail goes to the log, not to the client.
    #[error("internal error")]
    Internal(String),
}

/// A row of the error table (docs/engine.md, HTTP API): the code in JSON bodies and logs,
/// the HTTP status, and the gRPC code Flight SQL answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    pub code: &'static str,
    pub http: StatusCode,
    pub grpc: tonic::Code,
}

impl EngineError {
    /// The error table, one row per kind of error and no catch-all: a new variant does not
    /// compile until it has its row.
    pub fn kind(&self) -> Kind {
        use EngineError as E;
        use StatusCode as H;
        use tonic::Code as G;
        let (code, http, grpc) = match self {
            E::Unauthenticated(_) => ("unauthenticated", H::UNAUTHORIZED, G::Unauthenticated),
            E::BadRequest(_) => ("bad_request", H::BAD_REQUEST, G::InvalidArgument),
            E::Query(_) => ("query_error", H::BAD_REQUEST, G::InvalidArgument),
            E::TooComplex(_) => ("statement_too_complex", H::BAD_REQUEST, G::InvalidArgument),
            E::Forbidden(_) => ("forbidden", H::FORBIDDEN, G::PermissionDenied),
            E::ColumnForbidden(_) => ("column_forbidden", H::FORBIDDEN, G::PermissionDenied),
            E::NotFound(_) => ("not_found", H::NOT_FOUND, G::NotFound),
            E::MethodNotAllowed => ("method_not_allowed", H::METHOD_NOT_ALLOWED, G::Unimplemented),
            E::PayloadTooLarge(_) => ("payload_too_large", H::PAYLOAD_TOO_LARGE, G::ResourceExhausted),
            E::NotAcceptable(_) => ("not_acceptable", H::NOT_ACCEPTABLE, G::InvalidArgument),
            E::ResultLimit(_) => ("result_limit", H::FORBIDDEN, G::PermissionDenied),
            E::Exhausted(_) => ("resource_exhausted", H::SERVICE_UNAVAILABLE, G::ResourceExhausted),
            E::Internal(_) => ("internal", H::INTERNAL_SERVER_ERROR, G::Internal),
        };
        Kind { code, http, grpc }
    }

    /// Stable, machine-readable name of the error, used in JSON error bodies.
    pub fn code(&self) -> &'static str {
        self.kind().code
    }

    pub fn http_status(&self) -> StatusCode {
        self.kind().http
    }

    pub fn grpc_status(&self) -> tonic::Status {
        let mut status = tonic::Status::new(self.kind().grpc, self.to_string());
        if let Some(report) = self.access_report()
            && let Ok(value) = report.parse()
        {
            status.metadata_mut().insert(identity::ACCESS_HEADER, value);
        }
        if let Some(limit) = self.tripped_limit() {
            status.metadata_mut().insert(identity::LIMIT_HEADER, tonic::metadata::MetadataValue::from_static(limit));
        }
        status
    }

    /// The caller limit this error is (its statement timeout, memory share or a `fail` cap),
    /// for the gateway's count and audit event ([`identity::LIMIT_HEADER`]).
    pub fn tripped_limit(&self) -> Option<&'static str> {
        match self {
            EngineError::Exhausted(message) | EngineError::ResultLimit(message) => {
                identity::StatementLimits::tripped(message)
            }
            _ => None,
        }
    }

    /// The access report a refusal carries (the column policy denied), as its header value:
    /// it names what the message already names, so it goes out whether or not it was asked.
    pub fn access_report(&self) -> Option<String> {
        let EngineError::ColumnForbidden(denied) = self else { return None };
        let denied = identity::DeniedColumn { dataset: denied.dataset.clone(), column: denied.column.clone() };
        Some(identity::AccessReport { denied: Some(denied), ..identity::AccessReport::default() }.to_header())
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
        if let DataFusionError::External(inner) = error.find_root()
            && let Some(denied) = inner.downcast_ref::<crate::data_policy::ColumnForbidden>()
        {
            return EngineError::ColumnForbidden(denied.clone());
        }
        if let DataFusionError::External(inner) = error.find_root()
            && inner.is::<crate::result_cap::ResultLimit>()
        {
            return EngineError::ResultLimit(inner.to_string());
        }
        if let DataFusionError::External(inner) = error.find_root()
            && inner.is::<crate::data_policy::Undecided>()
        {
            return EngineError::Forbidden(inner.to_string());
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The error table of docs/engine.md (HTTP API), read from the file: every row is an
    /// error the engine has, with the documented statuses, and every error has its row.
    #[test]
    fn the_documented_error_table_is_the_engines() {
        let docs = include_str!("../../docs/engine.md");
        let table = docs.split("| status | gRPC | code | when |").nth(1).expect("the error table in docs/engine.md");
        let mut documented = Vec::new();
        for row in table.lines().skip(2).take_while(|line| line.starts_with('|')) {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let (statuses, grpcs, codes) = (cells[1], cells[2], cells[3]);
            let statuses = statuses.split(" / ");
            let grpcs = grpcs.split(" / ");
            let codes = codes.split(" / ").map(|c| c.trim_matches('`'));
            for ((status, grpc), code) in statuses.zip(grpcs).zip(codes) {
                documented.push((code.to_string(), status.parse::<u16>().expect("a status"), grpc.to_string()));
            }
        }
        let errors = [
            EngineError::Unauthenticated(StampError::Missing),
            EngineError::BadRequest(String::new()),
            EngineError::Query(String::new()),
            EngineError::TooComplex(complexity::TooComplex::Operators),
            EngineError::Forbidden(String::new()),
            EngineError::ColumnForbidden(crate::data_policy::ColumnForbidden {
                dataset: String::new(),
                column: String::new(),
            }),
            EngineError::NotFound(String::new()),
            EngineError::MethodNotAllowed,
            EngineError::PayloadTooLarge(1),
            EngineError::NotAcceptable(String::new()),
            EngineError::ResultLimit(String::new()),
            EngineError::Exhausted(String::new()),
            EngineError::Internal(String::new()),
        ];
        let mut actual: Vec<(String, u16, String)> = errors
            .iter()
            .map(|e| {
                let kind = e.kind();
                let grpc = format!("{:?}", kind.grpc).chars().fold(String::new(), |mut name, c| {
                    if c.is_uppercase() && !name.is_empty() {
                        name.push('_');
                    }
                    name.push(c.to_ascii_uppercase());
                    name
                });
                (kind.code.to_string(), kind.http.as_u16(), grpc)
            })
            .collect();
        actual.sort();
        documented.sort();
        assert_eq!(documented, actual);
    }
}
