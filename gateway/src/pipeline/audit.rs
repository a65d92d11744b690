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

use super::{Body, BoxError, Connection};
use crate::audit::{ApiRecord, Auditor, Decision, Record, now_ms};

/// A fresh record for a request that just arrived.
pub fn begin<B>(
    listener: &'static str,
    connection: &Connection,
    request: &Request<B>,
    request_id: &HeaderValue,
    rpc: Option<&'static str>,
) -> Box<ApiRecord> {
    Box::new(ApiRecord {
        time_ms: now_ms(),
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
        status: 0,
        grpc_status: None,
        error: None,
        bytes_in: 0,
        bytes_out: 0,
        duration_us: 0,
    })
}

/// Counts the request body's bytes as they are forwarded.
pub fn count_request(request: Request<Body>, counter: &Arc<AtomicU64>) -> Request<Body> {
    let counter = Arc::clone(counter);
    request.map(|body| Counted { inner: body, counter }.boxed_unsync())
}

/// Wraps the response so the event is queued when it ends.
pub fn finish(
    auditor: &Arc<Auditor>,
    mut record: Box<ApiRecord>,
    started: Instant,
    bytes_in: Arc<AtomicU64>,
    response: Response<Body>,
) -> Response<Body> {
    record.status = response.status().as_u16();
    if let Some(status) = grpc_status(response.headers()) {
        record.grpc_status = Some(status);
    }
    let declared = response.headers().get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
    let (parts, body) = response.into_parts();
    let length = body.size_hint().exact().or(declared);
    let body = Audited { inner: body, record: Some(record), auditor: Arc::clone(auditor), started, bytes_in, length };
    Response::from_parts(parts, body.boxed_unsync())
}

fn grpc_status(headers: &HeaderMap) -> Option<u16> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}

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
}

impl Audited {
    fn complete(&mut self, failure: Option<String>) {
        let Some(mut record) = self.record.take() else { return };
        record.duration_us = self.started.elapsed().as_micros() as u64;
        record.bytes_in = self.bytes_in.load(Ordering::Relaxed);
        if let Some(message) = failure
            && record.error.is_none()
        {
            record.error = Some(("response_incomplete", message));
        }
        self.auditor.submit(Record::Api(record));
    }
}

impl HttpBody for Audited {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(record) = self.record.as_mut() {
                    if let Some(data) = frame.data_ref() {
                        record.bytes_out += data.len() as u64;
                    } else if let Some(status) = frame.trailers_ref().and_then(grpc_status) {
                        record.grpc_status = Some(status);
                    }
                }
            }
            Poll::Ready(Some(Err(error))) => {
                let message = format!("the response broke off: {error}");
                self.complete(Some(message));
            }
            Poll::Ready(None) => self.complete(None),
            Poll::Pending => {}
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

impl Drop for Audited {
    fn drop(&mut self) {
        if self.record.is_some() {
            // Never polled to the end: the client went away, or the body was empty and the
            // server did not poll it (hyper skips bodies that report end-of-stream).
            let sent = self.record.as_ref().map_or(0, |r| r.bytes_out);
            let ended = self.inner.is_end_stream() || self.length.is_some_and(|len| sent >= len);
            self.complete((!ended).then(|| "the client went away before the response ended".to_string()));
        }
    }
}
