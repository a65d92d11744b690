//! A node's `GET /metrics` (Prometheus text): the node certificate's time to expiry, so an
//! alert fires before a node stops being able to talk to the others.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::node_tls::NodeTls;

/// Serves the metrics page on `addr` until the process ends.
pub(super) async fn serve(addr: SocketAddr, role: &'static str, tls: Option<Arc<NodeTls>>) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("--metrics-address {addr}: {e}"))?;
    tracing::info!(addr = %listener.local_addr().map_err(|e| e.to_string())?, "metrics on /metrics");
    tokio::spawn(async move {
        loop {
            let (tcp, _) = process::accept(&listener).await;
            let tls = tls.clone();
            let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let response = if request.method() == Method::GET && request.uri().path() == "/metrics" {
                    Response::new(Full::new(Bytes::from(page(role, tls.as_deref()))))
                } else {
                    let mut response = Response::new(Full::new(Bytes::from_static(b"not found: GET /metrics\n")));
                    *response.status_mut() = StatusCode::NOT_FOUND;
                    response
                };
                std::future::ready(Ok::<_, Infallible>(response))
            });
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    Ok(())
}

fn page(role: &str, tls: Option<&NodeTls>) -> String {
    let mut out = String::from(
        "# HELP portcullis_node_certificate_expiry_seconds Seconds until this node's mTLS certificate expires.\n\
         # TYPE portcullis_node_certificate_expiry_seconds gauge\n",
    );
    if let Some(tls) = tls {
        out.push_str(&format!("portcullis_node_certificate_expiry_seconds{{role=\"{role}\"}} {}\n", tls.expires_in()));
    }
    out
}
