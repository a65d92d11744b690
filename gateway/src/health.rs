//! The plain-HTTP health listener: `/healthz` (the process is up), `/readyz` (the engine
//! answers its `/health` too, and the gateway is not draining for a shutdown) and `/metrics`
//! (Prometheus text, see [`crate::metrics`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::pipeline::Upstream;

pub async fn serve(
    listener: TcpListener,
    upstream: Upstream,
    draining: Arc<AtomicBool>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(_) => continue,
            },
            _ = stopped.changed() => return,
        };
        let (upstream, draining) = (upstream.clone(), Arc::clone(&draining));
        tokio::spawn(async move {
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
            let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
