//! The plain-HTTP health listener: `/healthz` (the process is up), `/readyz` (the engine
//! answers its `/health` too) and `/metrics` (Prometheus text, see [`crate::metrics`]).

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub async fn serve(listener: TcpListener, upstream: String, mut stopped: watch::Receiver<bool>) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let ready_url = format!("{}/health", upstream.trim_end_matches('/'));
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(_) => continue,
            },
            _ = stopped.changed() => return,
        };
        let (client, ready_url) = (client.clone(), ready_url.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let (client, ready_url) = (client.clone(), ready_url.clone());
                async move {
                    let (status, text) = match request.uri().path() {
                        "/healthz" => (StatusCode::OK, Bytes::from_static(b"ok\n")),
                        "/readyz" if upstream_ready(&client, &ready_url).await => {
                            (StatusCode::OK, Bytes::from_static(b"ready\n"))
                        }
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

async fn upstream_ready(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>,
    url: &str,
) -> bool {
    let Ok(uri) = url.parse::<http::Uri>() else { return false };
    match tokio::time::timeout(Duration::from_secs(2), client.get(uri)).await {
        Ok(Ok(response)) => {
            let ok = response.status().is_success();
            let _ = response.into_body().collect().await;
            ok
        }
        _ => false,
    }
}
