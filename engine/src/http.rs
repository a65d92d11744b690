//! The HTTP API: `POST /v1/sql`, `GET /v1/datasets`, `GET /health`, `GET /metrics`.
//!
//! Each request: authenticate the stamp (before reading the body), read the SQL under a size
//! limit, plan it, run it, and stream the result in the negotiated encoding. Errors become a
//! JSON body `{"error": {"code", "message"}, "request_id"}` with the status from
//! [`EngineError::http_status`].

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use futures::{FutureExt, StreamExt, TryStreamExt};
use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use identity::{
    ACCESS_HEADER, REPORT_HEADER, REQUEST_ID_HEADER, ROWS_HEADER, STAMP_HEADER, StatementLimits, TRUNCATED_HEADER,
};

use crate::caller::Authenticator;
use crate::config::Limits;
use crate::encode::{self, Encoder};
use crate::error::EngineError;
use crate::query::QueryEngine;

pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// Results up to this size that are ready at once are sent whole rather than streamed.
const SMALL_RESULT_BYTES: usize = 64 * 1024;

/// A capped result is read ahead up to this size before its head is sent, so that the head
/// can say whether it was cut; a larger one streams, and says so in a trailer.
const CAPPED_READ_AHEAD_BYTES: usize = 4 * 1024 * 1024;

/// What every HTTP request handler shares (built by `server`).
#[derive(Debug)]
pub struct Shared {
    pub engine: Arc<QueryEngine>,
    pub auth: Arc<Authenticator>,
    pub limits: Limits,
}

/// Serves one request; never fails (every error becomes a response).
pub async fn handle(shared: Arc<Shared>, request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let request_id = request_id(request.headers().get(REQUEST_ID_HEADER));
    let mut response = match route(&shared, request).await {
        Ok(response) => response,
        Err(error) => {
            error.log(&request_id);
            let mut response = error_response(&error, &request_id);
            if let Some(report) = error.access_report().and_then(|r| HeaderValue::from_str(&r).ok()) {
                response.headers_mut().insert(ACCESS_HEADER, report);
            }
            if let Some(limit) = error.tripped_limit() {
                response.headers_mut().insert(identity::LIMIT_HEADER, HeaderValue::from_static(limit));
            }
            response
        }
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    Ok(response)
}

async fn route(shared: &Shared, request: Request<Incoming>) -> Result<Response<Body>, EngineError> {
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/health") => Ok(full(StatusCode::OK, "text/plain", Bytes::from_static(b"ok\n"))),
        (&Method::GET, "/metrics") => {
            Ok(full(StatusCode::OK, "text/plain; version=0.0.4", Bytes::from(crate::metrics::page())))
        }
        (&Method::POST, "/v1/sql") => sql(shared, request).await,
        (&Method::GET, "/v1/datasets") => datasets(shared, &request).await,
        (_, "/health" | "/metrics" | "/v1/sql" | "/v1/datasets") => Err(EngineError::MethodNotAllowed),
        (_, path) => Err(EngineError::NotFound(format!("no route for {path}"))),
    }
}

async fn sql(shared: &Shared, request: Request<Incoming>) -> Result<Response<Body>, EngineError> {
    let caller = shared.auth.authenticate(request.headers().get(STAMP_HEADER).map(|v| v.as_bytes()))?;
    // The gateway's audit wants what was read and how many rows went out.
    let report = request.headers().contains_key(REPORT_HEADER);
    let media = encode::negotiate(request.headers().get(ACCEPT).and_then(|v| v.to_str().ok()))?;
    let limit = shared.limits.max_sql_bytes;
    let declared =
        request.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(EngineError::PayloadTooLarge(limit));
    }
    let body = Limited::new(request.into_body(), limit).collect().await.map_err(|e| {
        if e.is::<LengthLimitError>() {
            EngineError::PayloadTooLarge(limit)
        } else {
            EngineError::BadRequest("could not read the request body".into())
        }
    })?;
    let body = body.to_bytes();
    let sql = std::str::from_utf8(&body).map_err(|_| EngineError::BadRequest("the SQL body is not UTF-8".into()))?;
    if sql.trim().is_empty() {
        return Err(EngineError::BadRequest("the request body must be one SQL statement".into()));
    }

    let frame = shared.engine.plan(&caller, sql).await?;
    let limits = caller.limits.as_deref();
    let (mut stream, access, truncation) = shared.engine.execute(frame, report, limits).await?;
    let schema = stream.schema();
    // Wait for the first batch so that errors raised when execution starts (a missing file,
    // a failed cast) still get a proper status instead of a truncated 200.
    let first = stream.next().await.transpose()?;
    let mut encoder = Encoder::new(media, schema)?;
    let mut rows = 0u64;
    // A small result goes out whole, with a Content-Length: encode the batches that are
    // ready now (never waiting for more) up to SMALL_RESULT_BYTES. If that is the whole
    // result, the response is one write and one TCP segment; a later error still gets its
    // status. Otherwise what was encoded is the first chunk and the rest streams.
    // A capped result is read ahead further, waiting for its batches, so that a result cut
    // at its cap is known (and a `fail` cap gets its status) before the head in all but
    // large results; those stream and carry the flag in a trailer.
    let capped = limits.is_some_and(StatementLimits::caps_result);
    let read_ahead = if capped { CAPPED_READ_AHEAD_BYTES } else { SMALL_RESULT_BYTES };
    let mut head = BytesMut::new();
    if let Some(batch) = &first {
        rows += batch.num_rows() as u64;
        head.extend_from_slice(&encoder.batch(batch)?);
    }
    while head.len() < read_ahead {
        let next = if capped { Some(stream.next().await) } else { stream.next().now_or_never() };
        match next {
            Some(Some(batch)) => {
                let batch = batch?;
                rows += batch.num_rows() as u64;
                head.extend_from_slice(&encoder.batch(&batch)?);
            }
            Some(None) => {
                head.extend_from_slice(&encoder.finish()?);
                let mut response = full(StatusCode::OK, media, head.freeze());
                if report {
                    response.headers_mut().insert(ROWS_HEADER, HeaderValue::from(rows));
                }
                if let Some(cap) = truncation.cap() {
                    response.headers_mut().insert(TRUNCATED_HEADER, HeaderValue::from_static(cap));
                }
                return Ok(with_access(response, access));
            }
            None => break,
        }
    }
    let head = head.freeze();
    // Rows sent, for the trailer the gateway's audit reads (the head is already gone).
    let sent = Arc::new(AtomicU64::new(rows));
    let counter = Arc::clone(&sent);
    let rest = stream.map_err(EngineError::from);
    let chunks = futures::stream::once(async move { Ok(head) })
        .chain(rest.map(Some).chain(futures::stream::once(async { None })).scan(encoder, move |encoder, item| {
            let out = match item {
                Some(Ok(batch)) => {
                    counter.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
                    encoder.batch(&batch).map_err(EngineError::from)
                }
                Some(Err(error)) => Err(error),
                None => encoder.finish().map_err(EngineError::from),
            };
            futures::future::ready(Some(out))
        }))
        .map(|chunk| match chunk {
            Ok(bytes) => Ok(Frame::data(bytes)),
            Err(error) => {
                // The status is already sent: abort the body so the client sees a broken
                // transfer, not a short but well-formed result.
                tracing::warn!(%error, "query failed while streaming its result");
                Err(std::io::Error::other(error.to_string()))
            }
        })
        // After the last byte (never after an error, which ends the body): the rows sent,
        // and the cap a capped result was cut at.
        .chain(
            futures::stream::once(async move {
                let mut trailers = http::HeaderMap::new();
                if report {
                    trailers.insert(ROWS_HEADER, HeaderValue::from(sent.load(Ordering::Relaxed)));
                }
                if let Some(cap) = truncation.cap() {
                    trailers.insert(TRUNCATED_HEADER, HeaderValue::from_static(cap));
                }
                Ok(Frame::trailers(trailers))
            })
            .take(usize::from(report || capped)),
        );
    let body = BodyExt::boxed_unsync(StreamBody::new(chunks));
    let mut response = Response::new(body);
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(media));
    // HTTP/1.1 sends only the trailer fields the head announces.
    let announced = match (report, capped) {
        (true, true) => HeaderValue::from_str(&format!("{ROWS_HEADER}, {TRUNCATED_HEADER}")).ok(),
        (true, false) => Some(HeaderValue::from_static(ROWS_HEADER)),
        (false, true) => Some(HeaderValue::from_static(TRUNCATED_HEADER)),
        (false, false) => None,
    };
    if let Some(announced) = announced {
        response.headers_mut().insert(http::header::TRAILER, announced);
    }
    Ok(with_access(response, access))
}

/// `response` with the statement's access report on its head, when the gateway asked.
fn with_access(mut response: Response<Body>, access: Option<String>) -> Response<Body> {
    if let Some(value) = access.and_then(|a| HeaderValue::from_str(&a).ok()) {
        response.headers_mut().insert(ACCESS_HEADER, value);
    }
    response
}

async fn datasets(shared: &Shared, request: &Request<Incoming>) -> Result<Response<Body>, EngineError> {
    let caller = shared.auth.authenticate(request.headers().get(STAMP_HEADER).map(|v| v.as_bytes()))?;
    let tables = shared.engine.listed_tables(&caller.listing, &caller.data).await?;
    let list: Vec<serde_json::Value> = tables
        .iter()
        .filter(|t| t.schema != "information_schema")
        .map(|t| {
            let columns: Vec<serde_json::Value> = t
                .arrow_schema
                .fields()
                .iter()
                .map(|f| {
                    let mut column = serde_json::Map::new();
                    column.insert("name".into(), f.name().clone().into());
                    column.insert("type".into(), f.data_type().to_string().into());
                    column.insert("nullable".into(), f.is_nullable().into());
                    if let Some(mask) = f.metadata().get(crate::query::MASK_METADATA) {
                        column.insert("masked".into(), mask.clone().into());
                    }
                    serde_json::Value::Object(column)
                })
                .collect();
            let name = if t.schema == "public" { t.name.clone() } else { format!("{}.{}", t.schema, t.name) };
            let kind = match t.kind {
                datafusion::logical_expr::TableType::View => "view",
                _ => "table",
            };
            serde_json::json!({"name": name, "kind": kind, "columns": columns})
        })
        .collect();
    let body = serde_json::to_vec(&list).map_err(|e| EngineError::Internal(e.to_string()))?;
    Ok(full(StatusCode::OK, encode::JSON, Bytes::from(body)))
}

fn full(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Full::new(body).map_err(|never| match never {}).boxed_unsync());
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn error_response(error: &EngineError, request_id: &str) -> Response<Body> {
    let body = serde_json::json!({
        "error": {"code": error.code(), "message": error.to_string()},
        "request_id": request_id,
    });
    full(error.http_status(), encode::JSON, Bytes::from(body.to_string()))
}

/// The client's request id when it is a sane token (the gateway sets one), else a new one.
fn request_id(header: Option<&HeaderValue>) -> String {
    header
        .and_then(|v| v.to_str().ok())
        .filter(|v| identity::is_valid_request_id(v.as_bytes()))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}
