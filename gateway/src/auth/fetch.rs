//! A small HTTP(S) GET for discovery documents and key sets: one connection per fetch
//! (they happen every few minutes), bounded in time and size, TLS verified against the
//! Mozilla roots plus an optional CA file. Plain `http://` only for loopback hosts
//! ([`crate::outbound`]).

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

use crate::config::ConfigError;
use crate::outbound::{self, Roots, UrlError, check_url};

/// Largest discovery document or key set accepted.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// Why a fetch failed; the URL is named by the caller.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error("no answer within {0} s")]
    Timeout(u64),
    #[error("{0}")]
    Connect(std::io::Error),
    #[error("TLS: {0}")]
    Tls(std::io::Error),
    #[error("{0}")]
    Http(#[from] hyper::Error),
    #[error("HTTP {0}")]
    Status(StatusCode),
    #[error("reading the body: {0}")]
    Body(String),
}

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

impl Fetcher {
    /// `extra_roots`: more trust anchors (a private IdP's CA), besides the Mozilla set.
    pub fn new(extra_roots: Vec<CertificateDer<'static>>, timeout: Duration, field: &str) -> Result<Self, ConfigError> {
        Ok(Self { tls: outbound::connector(Roots { webpki: true, extra: extra_roots }, field)?, timeout })
    }

    /// GETs `url` and returns the body of a 200 response.
    pub async fn get(&self, url: &str) -> Result<Bytes, FetchError> {
        tokio::time::timeout(self.timeout, self.get_inner(url))
            .await
            .unwrap_or(Err(FetchError::Timeout(self.timeout.as_secs())))
    }

    async fn get_inner(&self, url: &str) -> Result<Bytes, FetchError> {
        let uri = check_url(url)?;
        let host = uri.host().ok_or(UrlError::NoHost)?.trim_start_matches('[').trim_end_matches(']').to_string();
        let https = uri.scheme_str() == Some("https");
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tcp = TcpStream::connect((host.as_str(), port)).await.map_err(FetchError::Connect)?;
        let _ = tcp.set_nodelay(true);
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let authority = uri.authority().map(|a| a.as_str()).unwrap_or(&host).to_string();
        let request = Request::get(path)
            .header(http::header::HOST, authority)
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::USER_AGENT, "portcullis-gateway")
            .body(Empty::<Bytes>::new())
            .map_err(|e| UrlError::Invalid(e.to_string()))?;
        let response = if https {
            let name = ServerName::try_from(host.clone()).map_err(|e| UrlError::Invalid(e.to_string()))?;
            let tls = self.tls.connect(name, tcp).await.map_err(FetchError::Tls)?;
            send(TokioIo::new(tls), request).await?
        } else {
            send(TokioIo::new(tcp), request).await?
        };
        if response.status() != StatusCode::OK {
            return Err(FetchError::Status(response.status()));
        }
        let body = Limited::new(response.into_body(), MAX_DOCUMENT_BYTES)
            .collect()
            .await
            .map_err(|e| FetchError::Body(e.to_string()))?;
        Ok(body.to_bytes())
    }
}

async fn send<T>(io: T, request: Request<Empty<Bytes>>) -> Result<http::Response<hyper::body::Incoming>, hyper::Error>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender.send_request(request).await
}
