//! What one audit event records: built on the request path from what the stages already
//! have (no formatting there); the writer thread turns them into OCSF JSON with
//! [`super::ocsf::Formatter`].
//!
//! No field ever holds a credential: the stages strip tokens and keys before a record sees
//! the request, and error messages name the problem, not the value.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Uri};
use identity::Principal;

use crate::authz::Verdict;

/// One thing that happened, waiting in the queue.
#[derive(Debug)]
pub enum Record {
    Api(Box<ApiRecord>),
    Connection(ConnectionRecord),
    SignIn(Box<SignInRecord>),
    Finding(FindingRecord),
}

/// Cedar's answer, if the request got that far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    NotEvaluated,
    Allowed,
    Denied,
}

/// One request, whatever its outcome.
#[derive(Debug)]
pub struct ApiRecord {
    /// Unix milliseconds when the request arrived.
    pub time_ms: i64,
    pub request_id: HeaderValue,
    /// `api` or `flight`.
    pub listener: &'static str,
    pub peer: SocketAddr,
    pub method: Method,
    /// Only the path is recorded (a query string could carry anything).
    pub uri: Uri,
    /// The Flight RPC, for gRPC calls.
    pub rpc: Option<&'static str>,
    pub principal: Option<Arc<Principal>>,
    /// The SQL the request carried (HTTP body, or the Flight command's query).
    pub sql: Option<Bytes>,
    /// The actions Cedar was asked about (`query`, `write`, ...; for a refused dataset,
    /// its action too: `select`, `insert`, ...).
    pub actions: Vec<&'static str>,
    pub datasets: Vec<String>,
    pub decision: Decision,
    /// The determining policies: the permits that allowed, or the forbids that denied.
    pub policies: Vec<String>,
    /// Everything Cedar was given and answered, when it was asked (for `policy replay`).
    pub authorization: Option<Authorization>,
    pub status: u16,
    /// For gRPC: the status from the trailers (or the refusal).
    pub grpc_status: Option<u16>,
    /// The refusal's category and message (never a credential).
    pub error: Option<(&'static str, String)>,
    /// The engine's own error, when it answered one: its code (`invalid_sql`, or the gRPC
    /// status name) and message. The message can quote the SQL, so an event carries it only
    /// with `audit.sql: full`.
    pub upstream_error: Option<(String, String)>,
    /// For a call that runs what another planned (a DoGet of a statement ticket): the
    /// planning request's id, the event's correlation id.
    pub planned_by: Option<String>,
    /// The engine's access report ([`identity::AccessReport`], read on the writer thread):
    /// what the statement read, as written and through views, or the column it was refused for.
    pub access: Option<HeaderValue>,
    /// The rows the engine sent (its count, from the head or the trailers); `None` when the
    /// response did not end normally or carried no result.
    pub rows: Option<u64>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration_us: u64,
    /// A Flight SQL session-bookkeeping call (`audit.session_bookkeeping`): closing a
    /// prepared statement or the session, reading session options, the server's SqlInfo.
    pub bookkeeping: bool,
    /// The caller's query limits, when its tier sets any (`query_limits`).
    pub limits: Option<LimitsRecord>,
}

/// Which query limits applied to a request: its tier, and the limit that refused it or cut
/// its result.
#[derive(Debug, Clone, Default)]
pub struct LimitsRecord {
    /// `default`, `group:<name>…` or `principal`.
    pub tier: Arc<str>,
    /// The limit that refused the query (`concurrent_queries`, `rows_per_window`) or cut its
    /// result (`max_result_rows`, `max_result_bytes`).
    pub applied: Option<String>,
    /// How long the query waited for a slot, in microseconds (0: it did not wait).
    pub queued_us: u64,
    /// What metering the result found: the rows the gateway counted itself, and the limit
    /// the engine said ended it while streaming.
    pub metered: Option<Arc<crate::query_limits::metered::Outcome>>,
}

/// What Cedar was given beyond what the event records elsewhere (the principal in `actor`,
/// the address in `src_endpoint`, method and path in `http_request`), and its verdict.
#[derive(Debug, Clone)]
pub struct Authorization {
    /// The `context.now` of every Cedar request (Unix seconds).
    pub now: u64,
    /// `context.client_cert`: a verified client certificate came with the connection.
    pub client_cert: bool,
    pub verdict: Arc<Verdict>,
}

/// Connections refused below HTTP (a failed TLS handshake, a connection limit, a header
/// deadline, an HTTP/2 protocol error...): the first from a source in an interval as it
/// happens (`count` 1), the rest of that interval as one event with their count.
#[derive(Debug)]
pub struct ConnectionRecord {
    pub time_ms: i64,
    pub listener: &'static str,
    pub peer: SocketAddr,
    /// A code from the closed set of connection refusals (the listener's `Refusal`).
    pub reason: &'static str,
    /// The first refusal's message (an aggregate: the last one's).
    pub error: String,
    pub count: u64,
    /// 0 for the first refusal, else the interval the count covers.
    pub window_secs: u64,
}

/// A sign-in: success (principal set) or failure (reason set).
#[derive(Debug)]
pub struct SignInRecord {
    pub time_ms: i64,
    pub request_id: HeaderValue,
    pub listener: &'static str,
    pub peer: SocketAddr,
    pub principal: Option<Arc<Principal>>,
    /// `handshake` for the Flight Handshake, else how the credential was presented.
    pub flow: &'static str,
    pub failure: Option<(&'static str, String)>,
}

/// One address produced a burst of 401/403 responses.
#[derive(Debug)]
pub struct FindingRecord {
    pub time_ms: i64,
    pub ip: IpAddr,
    pub count: u32,
    pub window_secs: u64,
}

/// The reason, and the `status_code` of the aggregate event, of requests without credentials.
pub(crate) const UNAUTHENTICATED: &str = "unauthenticated";
