//! Authorize: what the request does, and whether Cedar allows it (see [`crate::authz`]).
//!
//! To know what a request does, this stage reads as much of it as that takes and no more:
//! the SQL body of `POST /v1/sql` (bounded by `limits.max_api_body_bytes`), or the first
//! gRPC message of a Flight call that carries a command. What was read is passed on in
//! front of the rest of the body, which still streams.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::header::CONTENT_LENGTH;
use http::request::Parts;
use http::{HeaderMap, Method, Request};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use identity::Principal;

use crate::audit::plans::{Plan, Plans};
use crate::audit::{ApiRecord, Authorization, Decision};
use crate::authz::flight_wire::{self, FrameError, Rpc};
use crate::authz::{
    Allowed, Authorizer, AuthzError, EndpointAction, RequestFacts, StatementAccess, Verdict, flight, sql,
};
use crate::body::{Body, BoxError, full};
use crate::connection::Connection;
use crate::error::GatewayError;

/// What the authorize stage found.
pub(super) struct Authorized {
    /// The request, with its body ready to forward, and what the stamp needs.
    pub outcome: Result<(Request<Body>, Allowed), GatewayError>,
    /// Cedar's verdict, when the call was read far enough to ask.
    pub verdict: Option<Arc<Verdict>>,
    /// When audit asks (`wants`): what the request turned out to do, whatever Cedar decided.
    pub learned: Option<Learned>,
}

/// Authorizes `request`: reads what it asks for, within the body limits, and asks Cedar.
pub(super) async fn authorize(
    authz: &Authorizer,
    connection: &Connection,
    principal: &Principal,
    request: Request<Incoming>,
    grpc: bool,
    limits: BodyLimits,
    wants: Option<AuditWants<'_>>,
) -> Authorized {
    let (parts, body) = request.into_parts();
    let read = async {
        if grpc { grpc_call(&parts, body, limits).await } else { http_call(&parts, body, limits.max_bytes).await }
    };
    let (call, payload, body, token) = match tokio::time::timeout(limits.read_within, read).await {
        Ok(Ok(inspected)) => inspected,
        Ok(Err(error)) => return Authorized { outcome: Err(error), verdict: None, learned: None },
        Err(_) => {
            let what = if grpc { "the first gRPC message" } else { "the request body" };
            let error = GatewayError::ClientTimeout(what, limits.read_within.as_secs());
            return Authorized { outcome: Err(error), verdict: None, learned: None };
        }
    };
    let facts = RequestFacts {
        principal,
        source_ip: connection.peer.ip(),
        client_cert: connection.workload.is_some(),
        method: parts.method.as_str(),
        path: parts.uri.path(),
        now: process::unix_secs(),
    };
    let defaults = authz.defaults();
    let verdict = authz.authorize_request(&facts, &payload, |payload| match call {
        Call::Sql => {
            let text =
                std::str::from_utf8(payload).map_err(|_| AuthzError::Malformed("the SQL body is not UTF-8".into()))?;
            Ok(sql::analyze(text, defaults)?)
        }
        Call::Datasets => Ok(vec![StatementAccess { endpoint: EndpointAction::Describe, datasets: Vec::new() }]),
        Call::Flight(rpc) => flight::classify(rpc, payload, defaults),
    });
    // A DoGet of a statement ticket (or an execution of a prepared statement): the datasets
    // and request id of the call that planned it.
    let learned = wants.map(|wants| {
        let plan = token.and_then(|token| wants.plans.recall(&token, facts.now));
        let sql = wants.sql.then(|| sql_text(call, &payload)).flatten();
        let authorization =
            Authorization { now: facts.now, client_cert: facts.client_cert, verdict: Arc::clone(&verdict) };
        let operation = match call {
            Call::Flight(Rpc::DoAction) => flight_wire::action_operation(&payload),
            _ => None,
        };
        let bookkeeping = match call {
            Call::Flight(Rpc::DoAction) => operation.is_some_and(flight_wire::is_bookkeeping_action),
            Call::Flight(Rpc::GetFlightInfo) => flight_wire::asks_sql_info(&payload),
            _ => false,
        } || plan.as_ref().is_some_and(|plan| plan.bookkeeping);
        Learned { sql, authorization, plan, operation, bookkeeping }
    });
    let outcome = match &verdict.outcome {
        Ok(allowed) => Ok((Request::from_parts(parts, body), allowed.clone())),
        Err(error) => Err(GatewayError::from(error.clone())),
    };
    Authorized { outcome, verdict: Some(verdict), learned }
}

/// How much of a request this stage reads, how fast, and how long the rest may stall.
#[derive(Debug, Clone, Copy)]
pub(super) struct BodyLimits {
    pub max_bytes: usize,
    /// `timeouts.client_body_secs`.
    pub read_within: std::time::Duration,
    /// `timeouts.stream_idle_secs`, for the part of a gRPC request that streams on.
    pub stream_idle: std::time::Duration,
}

/// What audit wants from this stage: the SQL text or not, and the plans of earlier Flight
/// calls (to link a DoGet to the call that planned it).
#[derive(Debug, Clone, Copy)]
pub(super) struct AuditWants<'a> {
    pub sql: bool,
    pub plans: &'a Plans,
}

/// What authorization learned about a request, for its audit record.
#[derive(Debug)]
pub(super) struct Learned {
    pub sql: Option<Bytes>,
    pub authorization: Authorization,
    /// The planning call's, for a call that runs what another planned.
    pub plan: Option<Arc<Plan>>,
    /// A DoAction's name with its action (`DoAction CreatePreparedStatement`).
    pub operation: Option<&'static str>,
    /// A session-bookkeeping call (see [`flight_wire::is_bookkeeping_action`]), or a DoGet of
    /// what one planned.
    pub bookkeeping: bool,
}

/// The SQL a call carries: the HTTP body, or the Flight command's query.
fn sql_text(call: Call, payload: &Bytes) -> Option<Bytes> {
    match call {
        Call::Sql => Some(payload.clone()),
        Call::Flight(rpc) => flight_wire::sql_text(rpc, payload).map(Bytes::from),
        Call::Datasets => None,
    }
}

impl Learned {
    /// Into the request's audit record: on an allowed call the endpoint actions asked about
    /// and every dataset; on a refused one the refused action (and dataset).
    pub(super) fn record(self, record: &mut ApiRecord) {
        if self.sql.is_some() {
            record.sql = self.sql;
        }
        if self.operation.is_some() {
            record.rpc = self.operation;
        }
        record.bookkeeping = self.bookkeeping;
        let verdict = &self.authorization.verdict;
        if let Some(enforced) = &verdict.enforced {
            record.decision = if enforced.allowed { Decision::Allowed } else { Decision::Denied };
            record.policies.clone_from(&enforced.policies);
            match enforced.refused.and_then(|i| verdict.asks.get(i)) {
                Some(refused) => {
                    record.actions = vec![refused.action];
                    record.datasets = refused.dataset.iter().map(ToString::to_string).collect();
                }
                None => {
                    record.actions = verdict.asks.iter().filter(|a| a.dataset.is_none()).map(|a| a.action).collect();
                    let mut datasets: Vec<String> =
                        verdict.asks.iter().filter_map(|a| a.dataset.as_ref().map(ToString::to_string)).collect();
                    datasets.sort();
                    datasets.dedup();
                    record.datasets = datasets;
                }
            }
            record.authorization = Some(self.authorization);
        }
        if let Some(plan) = self.plan {
            if record.datasets.is_empty() {
                record.datasets.clone_from(&plan.datasets);
            }
            record.planned_by = Some(plan.request_id.clone());
        }
    }
}

/// The kind of call, known from the route; its payload says the rest.
#[derive(Debug, Clone, Copy)]
enum Call {
    Sql,
    Datasets,
    Flight(Rpc),
}

/// The call, the bytes that say what it does, the body to forward, and the token it
/// presents from an earlier Flight call (see [`flight_wire::presented_token`]).
type Inspected = (Call, Bytes, Body, Option<Bytes>);

async fn http_call(parts: &Parts, body: Incoming, max_body: usize) -> Result<Inspected, GatewayError> {
    match (&parts.method, parts.uri.path()) {
        (&Method::POST, "/v1/sql") => {
            let declared = parts.headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            if declared.is_some_and(|n| n > max_body as u64) {
                return Err(GatewayError::PayloadTooLarge(max_body));
            }
            let bytes = match Limited::new(body, max_body).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(error) if error.is::<LengthLimitError>() => return Err(GatewayError::PayloadTooLarge(max_body)),
                Err(error) => return Err(GatewayError::ClientBody(error.to_string())),
            };
            Ok((Call::Sql, bytes.clone(), full(bytes), None))
        }
        (&Method::GET, "/v1/datasets") => {
            Ok((Call::Datasets, Bytes::new(), Limited::new(body, max_body).boxed_unsync(), None))
        }
        (method, "/v1/sql") => Err(GatewayError::MethodNotAllowed(method.to_string(), "/v1/sql", "POST")),
        (method, "/v1/datasets") => Err(GatewayError::MethodNotAllowed(method.to_string(), "/v1/datasets", "GET")),
        (method, path) => Err(AuthzError::NotRouted(format!("no route for {method} {}", printable(path))).into()),
    }
}

async fn grpc_call(parts: &Parts, body: Incoming, limits: BodyLimits) -> Result<Inspected, GatewayError> {
    let path = parts.uri.path();
    let rpc = Rpc::from_path(path).ok_or_else(|| AuthzError::NotRouted(format!("no such RPC: {}", printable(path))))?;
    if !rpc.needs_message() {
        let body = super::idle::IdleBody::client(body.map_err(BoxError::from).boxed_unsync(), limits.stream_idle);
        return Ok((Call::Flight(rpc), Bytes::new(), body.boxed_unsync(), None));
    }
    let (message, body) = first_message(body, limits.max_bytes).await?;
    let body = super::idle::IdleBody::client(body, limits.stream_idle).boxed_unsync();
    let token = flight_wire::presented_token(rpc, &message);
    // A DoGet is a query unless its ticket is a catalog listing: only those are told apart
    // (and cached) by their ticket.
    let message = if rpc == Rpc::DoGet && !flight_wire::listing_ticket(&message) { Bytes::new() } else { message };
    Ok((Call::Flight(rpc), message, body, token))
}

/// Reads until the first gRPC message is complete: 1 byte compressed flag, 4 bytes length.
/// Returns that message and a body that replays what was read, then streams the rest.
async fn first_message(mut body: Incoming, max_body: usize) -> Result<(Bytes, Body), GatewayError> {
    let mut read = BytesMut::new();
    let mut trailers = None;
    loop {
        match flight_wire::first_message(&read, max_body) {
            Err(FrameError::Compressed) => {
                return Err(AuthzError::Unsupported(
                    "compressed gRPC requests cannot be authorized; send them uncompressed".into(),
                )
                .into());
            }
            Err(FrameError::TooLarge) => return Err(GatewayError::PayloadTooLarge(max_body)),
            Ok(Some(message)) => {
                let read = read.freeze();
                let message = read.slice(message);
                let replay = Replay { read: Some(read), trailers, rest: body };
                return Ok((message, replay.boxed_unsync()));
            }
            Ok(None) => {}
        }
        match body.frame().await {
            None => return Err(AuthzError::Malformed("the request ended before its first gRPC message".into()).into()),
            Some(Err(error)) => return Err(GatewayError::ClientBody(error.to_string())),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => read.extend_from_slice(&data),
                Err(frame) => {
                    trailers = frame.into_trailers().ok();
                    if read.len() < 5 {
                        return Err(
                            AuthzError::Malformed("the request ended before its first gRPC message".into()).into()
                        );
                    }
                }
            },
        }
        if trailers.is_some() && read.len() >= 5 {
            return Err(AuthzError::Malformed("the request ended inside its first gRPC message".into()).into());
        }
    }
}

/// The bytes already read, then any trailers read with them, then the rest of the body.
struct Replay {
    read: Option<Bytes>,
    trailers: Option<HeaderMap>,
    rest: Incoming,
}

impl HttpBody for Replay {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(read) = self.read.take() {
            return Poll::Ready(Some(Ok(Frame::data(read))));
        }
        if let Some(trailers) = self.trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        Pin::new(&mut self.rest).poll_frame(cx).map_err(BoxError::from)
    }

    fn is_end_stream(&self) -> bool {
        self.read.is_none() && self.trailers.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let rest = self.rest.size_hint();
        let len = self.read.as_ref().map_or(0, |r| r.len() as u64);
        let mut hint = SizeHint::new();
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + len);
        }
        hint.set_lower(rest.lower() + len);
        hint
    }
}

/// A client-chosen path, safe for a message.
fn printable(path: &str) -> String {
    path.chars().filter(|c| c.is_ascii_graphic()).take(120).collect()
}
