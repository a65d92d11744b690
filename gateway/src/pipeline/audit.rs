//! Audit: one API Activity event per request, whatever the outcome. The record starts when
//! the request arrives, the stages fill in what they learn (principal, SQL, decision,
//! datasets), and the event is queued when the response body ends: after the last byte, on
//! an error, or when the client goes away (the body is dropped). So bytes, duration and
//! the final gRPC status are the real ones, and no outcome escapes the log.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;

use super::grpc_status;
use crate::audit::plans::Plan;
use crate::audit::{ApiRecord, Auditor, Decision, Record};
use crate::authz::flight_wire::{self, Rpc};
use crate::body::{Body, BoxError};
use crate::connection::Connection;
use identity::{ACCESS_HEADER, LIMIT_HEADER, ROWS_HEADER, StatementLimits};
use process::unix_millis;

/// A fresh record for a request that just arrived.
pub(super) fn begin<B>(
    listener: &'static str,
    connection: &Connection,
    request: &Request<B>,
    request_id: &HeaderValue,
    rpc: Option<&'static str>,
) -> Box<ApiRecord> {
    Box::new(ApiRecord {
        time_ms: unix_millis(),
        request_id: request_id.clone(),
        listener,
        peer: connection.peer,
        method: request.method().clone(),
        uri: request.uri().clone(),
        rpc,
        principal: None,
        sql: None,
        actions: Vec::new(),
        datasets: Vec::new(),
        decision: Decision::NotEvaluated,
        policies: Vec::new(),
        authorization: None,
        status: 0,
        grpc_status: None,
        error: None,
        upstream_error: None,
        planned_by: None,
        access: None,
        rows: None,
        bytes_in: 0,
        bytes_out: 0,
        duration_us: 0,
        bookkeeping: false,
        limits: None,
    })
}

/// Counts the request body's bytes as they are forwarded.
pub(super) fn count_request(request: Request<Body>, counter: &Arc<AtomicU64>) -> Request<Body> {
    let counter = Arc::clone(counter);
    request.map(|body| Counted { inner: body, counter }.boxed_unsync())
}

/// Wraps the response so the event is queued when it ends; a response that ends with its
/// head (no body) has its event queued here, waiting for room like every event.
pub(super) async fn finish(
    auditor: &Arc<Auditor>,
    mut record: Box<ApiRecord>,
    started: Instant,
    bytes_in: Arc<AtomicU64>,
    mut response: Response<Body>,
) -> Response<Body> {
    record.status = response.status().as_u16();
    if let (Some(limits), Some(cap)) = (record.limits.as_mut(), response.headers().get(identity::TRUNCATED_HEADER)) {
        limits.applied = cap.to_str().ok().map(str::to_string);
    }
    if let Some(report) = response.extensions_mut().remove::<EngineReport>() {
        record.access = report.access;
        record.rows = report.rows;
        if let (Some(limits), Some(limit)) = (record.limits.as_mut(), report.limit) {
            limits.applied = Some(limit.to_string());
        }
    }
    if let Some(status) = grpc_status::code(response.headers()) {
        record.grpc_status = Some(status);
        if record.error.is_none() {
            record.upstream_error = grpc_error(status, response.headers());
        }
    }
    // The engine's HTTP errors are small JSON bodies: keep their start to name the error.
    let error_body = (record.status >= 400 && record.error.is_none()).then(Vec::new);
    // A Flight call that plans what a later call runs: read its first response message.
    let planning = match Rpc::from_path(record.uri.path()) {
        Some(rpc @ (Rpc::GetFlightInfo | Rpc::PollFlightInfo | Rpc::DoAction)) if record.error.is_none() => {
            Some((rpc, Vec::new()))
        }
        _ => None,
    };
    let declared = response.headers().get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
    let (parts, body) = response.into_parts();
    let length = body.size_hint().exact().or(declared);
    let mut body = Audited {
        inner: body,
        record: Some(record),
        auditor: Arc::clone(auditor),
        started,
        bytes_in,
        length,
        error_body,
        planning,
        queueing: None,
    };
    // hyper never polls a body that has ended: queue its event now.
    if body.inner.is_end_stream()
        && let Some(record) = body.complete(None)
    {
        auditor.submit(record).await;
    }
    Response::from_parts(parts, body.boxed_unsync())
}

/// Allowed, answered, and no error on the way: nothing in it for a SIEM but the count.
fn succeeded(record: &ApiRecord) -> bool {
    record.decision == Decision::Allowed
        && record.error.is_none()
        && record.upstream_error.is_none()
        && record.grpc_status == Some(0)
        && record.status == 200
}

/// What the engine reported about the statement for the audit event (see
/// [`identity::AccessReport`]), taken off its response head by forward.
#[derive(Debug, Clone)]
pub(crate) struct EngineReport {
    access: Option<HeaderValue>,
    rows: Option<u64>,
    /// The caller limit the engine's error is (`identity::LIMIT_HEADER`).
    pub(super) limit: Option<&'static str>,
}

/// Takes the engine's report off its response head, whether or not audit asked for it (a
/// refusal for a denied column always carries one): the client never receives it. One pass
/// over the names finds whether there is anything to take (most responses have nothing).
pub(super) fn take_report(parts: &mut http::response::Parts) {
    let ours = |name: &http::HeaderName| name.as_str().starts_with("x-portcullis-") || name == http::header::TRAILER;
    if !parts.headers.keys().any(ours) {
        return;
    }
    let access = parts.headers.remove(ACCESS_HEADER);
    let rows = parts.headers.remove(ROWS_HEADER).as_ref().and_then(rows_of);
    let limit = parts.headers.remove(LIMIT_HEADER).and_then(|v| StatementLimits::named(v.as_bytes()));
    // The trailers announced to the client: the engine's own (`x-portcullis-*`) left out.
    if let Some(announced) = parts.headers.remove(http::header::TRAILER) {
        let kept: Vec<&str> = announced
            .to_str()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty() && !name.starts_with("x-portcullis-"))
            .collect();
        if let (false, Ok(value)) = (kept.is_empty(), HeaderValue::from_str(&kept.join(", "))) {
            parts.headers.insert(http::header::TRAILER, value);
        }
    }
    if access.is_some() || rows.is_some() || limit.is_some() {
        parts.extensions.insert(EngineReport { access, rows, limit });
    }
}

fn rows_of(value: &HeaderValue) -> Option<u64> {
    value.to_str().ok()?.parse().ok()
}

/// The engine's gRPC error (status name, `grpc-message` decoded) for a status other than OK.
fn grpc_error(status: u16, headers: &HeaderMap) -> Option<(String, String)> {
    if status == 0 {
        return None;
    }
    let message = headers
        .get("grpc-message")
        .map(|v| percent_encoding::percent_decode(v.as_bytes()).decode_utf8_lossy().into_owned())
        .unwrap_or_default();
    Some((grpc_status::name(status).to_string(), message))
}

/// The engine's HTTP error body (`{"error": {"code", "message"}}`), as code and message.
fn http_error(body: &[u8]) -> Option<(String, String)> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let error = value.get("error")?;
    let text = |key: &str| error.get(key).and_then(serde_json::Value::as_str).map(str::to_string);
    Some((text("code")?, text("message").unwrap_or_default()))
}

/// How much of an error body is kept to name the error.
const ERROR_BODY_BYTES: usize = 4096;

struct Counted {
    inner: Body,
    counter: Arc<AtomicU64>,
}

impl HttpBody for Counted {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.counter.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

struct Audited {
    inner: Body,
    /// Taken when the event is queued, so it is queued once.
    record: Option<Box<ApiRecord>>,
    auditor: Arc<Auditor>,
    started: Instant,
    bytes_in: Arc<AtomicU64>,
    /// The body's length when known up front: a server stops polling once it is sent.
    length: Option<u64>,
    /// The start of an error response's body (see [`http_error`]).
    error_body: Option<Vec<u8>>,
    /// A planning call's first response message, read until complete (see `audit::plans`).
    planning: Option<(Rpc, Vec<u8>)>,
    /// The body has ended but the queue was full: the wait for room, and the end (`None`
    /// or the error) to hand on once the event is queued. The response ends only then, so
    /// a full queue slows this request and not the runtime.
    queueing: Option<(Queueing, End)>,
}

type Queueing = Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
/// How a body ends: `None`, or with an error.
type End = Option<Result<Frame<Bytes>, BoxError>>;

/// A planning response larger than this (a very wide schema) is not linked.
const PLANNING_MESSAGE_BYTES: usize = 1024 * 1024;

impl Audited {
    /// Once the planning call's first message is complete, remembers the tokens it hands
    /// out, before the client can present them.
    fn read_planning(&mut self, data: &[u8]) {
        let Some((rpc, buf)) = self.planning.as_mut() else { return };
        let room = (PLANNING_MESSAGE_BYTES + 5).saturating_sub(buf.len());
        buf.extend(data.iter().take(room));
        let message = match flight_wire::first_message(buf, PLANNING_MESSAGE_BYTES) {
            Ok(None) => return,
            Ok(Some(message)) => message,
            Err(_) => {
                self.planning = None;
                return;
            }
        };
        let tokens = flight_wire::planned_tokens(*rpc, buf.get(message).unwrap_or_default());
        self.planning = None;
        let Some(record) = self.record.as_ref() else { return };
        if tokens.is_empty() {
            return;
        }
        // A call that was itself planned (a prepared statement's GetFlightInfo) hands its
        // tokens on under the first call's id: every call of one query shares one correlation.
        let request_id =
            record.planned_by.clone().unwrap_or_else(|| record.request_id.to_str().unwrap_or("").to_string());
        let plan = Arc::new(Plan { request_id, datasets: record.datasets.clone(), bookkeeping: record.bookkeeping });
        let now = u64::try_from(unix_millis() / 1000).unwrap_or(0);
        for token in tokens {
            self.auditor.plans().remember(&token, Arc::clone(&plan), now);
        }
    }
}

impl Audited {
    /// Notes a frame on its way out (bytes, the start of an error body, gRPC trailers, a
    /// planning call's tokens) and takes the engine's rows trailer out of it; true when it
    /// is the last of a body of known length.
    fn observe(&mut self, frame: &mut Frame<Bytes>) -> bool {
        if let Some(data) = frame.data_ref()
            && self.planning.is_some()
        {
            self.read_planning(data);
        }
        let Some(record) = self.record.as_mut() else { return false };
        if let Some(data) = frame.data_ref() {
            record.bytes_out += data.len() as u64;
            if let Some(kept) = self.error_body.as_mut() {
                let room = ERROR_BODY_BYTES.saturating_sub(kept.len());
                kept.extend(data.iter().take(room));
            }
            return self.length.is_some_and(|len| record.bytes_out >= len);
        }
        let Some(trailers) = frame.trailers_mut() else { return false };
        if let Some(rows) = trailers.remove(ROWS_HEADER) {
            record.rows = rows_of(&rows);
        }
        if let (Some(limits), Some(cap)) = (record.limits.as_mut(), trailers.get(identity::TRUNCATED_HEADER)) {
            limits.applied = cap.to_str().ok().map(str::to_string);
        }
        if let Some(status) = grpc_status::code(trailers) {
            record.grpc_status = Some(status);
            record.upstream_error = grpc_error(status, trailers);
        }
        false
    }

    /// The finished record, once; `None` for a successful session-bookkeeping call that
    /// audit counts instead (`audit.session_bookkeeping: counted`).
    fn complete(&mut self, failure: Option<String>) -> Option<Record> {
        let mut record = self.record.take()?;
        if record.bookkeeping && failure.is_none() && self.auditor.counts_bookkeeping() && succeeded(&record) {
            // A DoAction names its action; the other bookkeeping calls are the SqlInfo's.
            let operation = match record.rpc {
                Some("GetFlightInfo") => "GetFlightInfo GetSqlInfo",
                Some("DoGet") => "DoGet GetSqlInfo",
                Some(operation) => operation,
                None => "unknown",
            };
            crate::metrics::audit_bookkeeping(operation);
            return None;
        }
        record.duration_us = self.started.elapsed().as_micros() as u64;
        record.bytes_in = self.bytes_in.load(Ordering::Relaxed);
        if let Some(message) = failure
            && record.error.is_none()
        {
            record.error = Some(("response_incomplete", message));
        }
        if let Some(body) = self.error_body.take()
            && record.upstream_error.is_none()
        {
            record.upstream_error = http_error(&body);
        }
        Some(Record::Api(record))
    }

    /// Queues the event as the body ends; `Pending` (the end held back) while the queue is full.
    fn end(&mut self, cx: &mut Context<'_>, failure: Option<String>, end: End) -> Poll<End> {
        let Some(record) = self.complete(failure) else { return Poll::Ready(end) };
        let Err(record) = self.auditor.try_submit(record) else { return Poll::Ready(end) };
        let auditor = Arc::clone(&self.auditor);
        let mut wait: Queueing = Box::pin(async move { auditor.submit(record).await });
        if wait.as_mut().poll(cx).is_ready() {
            return Poll::Ready(end);
        }
        self.queueing = Some((wait, end));
        Poll::Pending
    }
}

impl HttpBody for Audited {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some((wait, _)) = self.queueing.as_mut() {
            if wait.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            return Poll::Ready(self.queueing.take().and_then(|(_, end)| end));
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(mut frame))) => {
                // hyper stops polling once a body of known length is sent: its last frame
                // goes out only once the event is queued.
                if self.observe(&mut frame) {
                    return self.end(cx, None, Some(Ok(frame)));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                let message = format!("the response broke off: {error}");
                self.end(cx, Some(message), Some(Err(error)))
            }
            Poll::Ready(None) => self.end(cx, None, None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        // A body that ended with its head stays so (a trailers-only gRPC answer must leave
        // as one); its event is queued on drop.
        self.queueing.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Audited {
    fn drop(&mut self) {
        if self.record.is_some() {
            // Never polled to the end: the client went away, or the body was empty and the
            // server did not poll it (hyper skips bodies that report end-of-stream).
            let sent = self.record.as_ref().map_or(0, |r| r.bytes_out);
            let ended = self.inner.is_end_stream() || self.length.is_some_and(|len| sent >= len);
            let failure = (!ended).then(|| "the client went away before the response ended".to_string());
            if let Some(record) = self.complete(failure) {
                self.auditor.submit_detached(record);
            }
        }
    }
}
