//! A small HTTP(S) GET for discovery documents and key sets: one connection per fetch
//! (they happen every few minutes), bounded in time and size, TLS verified against the
//! Mozilla roots plus an optional CA file. Plain `http://` only for loopback hosts.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

/// Largest discovery document or key set accepted.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

#[derive(Clone)]
pub struct Fetcher {
    tls: tokio_rustls::TlsConnector,
    timeout: Duration,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

/// Whether `url` may be fetched: https anywhere, http only on loopback.
pub fn check_url(url: &str) -> Result<Uri, String> {
    let uri: Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    let host = uri.host().ok_or("URL without a host")?;
    match uri.scheme_str() {
        Some("https") => Ok(uri),
        Some("http") if is_loopback(host) => Ok(uri),
        Some("http") => Err("plain http is only allowed for loopback hosts; use https".into()),
        _ => Err("URL scheme must be https".into()),
    }
}

/// `localhost` or a loopback address (brackets allowed around IPv6).
pub fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A TLS client (no client certificate) trusting `extra_roots`, plus the Mozilla roots when
/// `webpki` is set (public IdPs, SaaS receivers) — off for a private CA only (a syslog server).
pub fn tls_connector(
    extra_roots: Vec<CertificateDer<'static>>,
    webpki: bool,
) -> Result<tokio_rustls::TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    if webpki {
        roots.roots = webpki_roots::TLS_SERVER_ROOTS.to_vec();
    }
    for cert in extra_roots {
        roots.add(cert).map_err(|e| format!("CA file: {e}"))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

impl Fetcher {
    /// `extra_roots`: more trust anchors (a private IdP's CA), besides the Mozilla set.
    pub fn new(extra_roots: Vec<CertificateDer<'static>>, timeout: Duration) -> Result<Self, String> {
        Ok(Self { tls: tls_connector(extra_roots, true)?, timeout })
    }

    /// GETs `url` and returns the body of a 200 response.
    pub async fn get(&self, url: &str) -> Result<Bytes, String> {
        tokio::time::timeout(self.timeout, self.get_inner(url))
            .await
            .map_err(|_| format!("{url}: no answer within {} s", self.timeout.as_secs()))?
    }

    async fn get_inner(&self, url: &str) -> Result<Bytes, String> {
        let uri = check_url(url)?;
        let host = uri.host().ok_or("URL without a host")?.trim_start_matches('[').trim_end_matches(']').to_string();
        let https = uri.scheme_str() == Some("https");
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tcp = TcpStream::connect((host.as_str(), port)).await.map_err(|e| format!("{url}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let authority = uri.authority().map(|a| a.as_str()).unwrap_or(&host).to_string();
        let request = Request::get(path)
            .header(http::header::HOST, authority)
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::USER_AGENT, "portcullis-gateway")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = if https {
            let name = ServerName::try_from(host.clone()).map_err(|e| format!("{url}: {e}"))?;
            let tls = self.tls.connect(name, tcp).await.map_err(|e| format!("{url}: TLS: {e}"))?;
            send(TokioIo::new(tls), request).await
        } else {
            send(TokioIo::new(tcp), request).await
        }
        .map_err(|e| format!("{url}: {e}"))?;
        if response.status() != StatusCode::OK {
            return Err(format!("{url}: HTTP {}", response.status()));
        }
        let body = Limited::new(response.into_body(), MAX_DOCUMENT_BYTES)
            .collect()
            .await
            .map_err(|e| format!("{url}: reading the body: {e}"))?;
        Ok(body.to_bytes())
    }
}

async fn send<T>(io: T, request: Request<Empty<Bytes>>) -> Result<http::Response<hyper::body::Incoming>, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender.send_request(request).await.map_err(|e| e.to_string())
}
