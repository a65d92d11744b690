//! The plain-HTTP health listener: `/healthz` (the process is up), `/readyz` (the engine
//! answers its `/health` too, and the gateway is not draining for a shutdown) and `/metrics`
//! (Prometheus text, see [`crate::metrics`]).
//!
//! It has its own small connection budget and head deadline, apart from the TLS listeners',
//! so a flood of client connections leaves the probes answering.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::listener::ConnectionLimits;
use crate::pipeline::Upstream;

/// Probes and scrapers at once; more are closed at accept.
const MAX_CONNECTIONS: usize = 64;
/// For a probe to send its request, and the longest a connection stays.
const DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

pub(crate) async fn serve(
    listener: TcpListener,
    upstream: Upstream,
    draining: Arc<AtomicBool>,
    mut stopped: watch::Receiver<bool>,
) {
    let limits = ConnectionLimits::new(MAX_CONNECTIONS, MAX_CONNECTIONS);
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(DEADLINE);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = process::accept(&listener) => accepted,
            _ = stopped.changed() => return,
        };
        let Ok(admission) = limits.admit(peer.ip()) else {
            let _ = stream.set_zero_linger();
            continue;
        };
        let (upstream, draining, builder) = (upstream.clone(), Arc::clone(&draining), builder.clone());
        tokio::spawn(async move {
            let _admission = admission;
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let (upstream, draining) = (upstream.clone(), Arc::clone(&draining));
                async move {
                    let (status, text) = match request.uri().path() {
                        "/healthz" => (StatusCode::OK, Bytes::from_static(b"ok\n")),
                        "/readyz" if draining.load(Ordering::Relaxed) => {
                            (StatusCode::SERVICE_UNAVAILABLE, Bytes::from_static(b"draining for shutdown\n"))
                        }
                        "/readyz" if upstream.ready().await => (StatusCode::OK, Bytes::from_static(b"ready\n")),
                        "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, Bytes::from_static(b"upstream not ready\n")),
                        "/metrics" => {
                            let now = time::OffsetDateTime::now_utc().unix_timestamp();
                            let mut response = Response::new(Full::new(Bytes::from(crate::metrics::render(now))));
                            response.headers_mut().insert(
                                http::header::CONTENT_TYPE,
                                http::HeaderValue::from_static("text/plain; version=0.0.4"),
                            );
                            return Ok::<_, std::convert::Infallible>(response);
                        }
                        _ => (StatusCode::NOT_FOUND, Bytes::from_static(b"not found\n")),
                    };
                    let mut response = Response::new(Full::new(text));
                    *response.status_mut() = status;
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            let _ = tokio::time::timeout(DEADLINE, builder.serve_connection(TokioIo::new(stream), service)).await;
        });
    }
}
