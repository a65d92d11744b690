//! A small HTTP(S) client for discovery documents, key sets and the browser sign-in's token
//! calls: one connection per fetch (they happen every few minutes, or once per sign-in), bounded in time and size, TLS verified against the
//! Mozilla roots plus an optional CA file. Plain `http://` only for loopback hosts
//! ([`crate::outbound`]).

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
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
        let request = Request::get(url)
            .header(http::header::ACCEPT, "application/json")
            .body(Vec::new())
            .map_err(|e| UrlError::Invalid(e.to_string()))?;
        let response = self.send(request).await?;
        if response.status() != StatusCode::OK {
            return Err(FetchError::Status(response.status()));
        }
        Ok(Bytes::from(response.into_body()))
    }

    /// Sends `request` (an absolute URL) and returns the response, whatever its status,
    /// with its body read whole (at most 1 MiB): the OIDC client's token and logout calls.
    pub async fn send(&self, request: Request<Vec<u8>>) -> Result<http::Response<Vec<u8>>, FetchError> {
        tokio::time::timeout(self.timeout, self.send_inner(request))
            .await
            .unwrap_or(Err(FetchError::Timeout(self.timeout.as_secs())))
    }

    async fn send_inner(&self, request: Request<Vec<u8>>) -> Result<http::Response<Vec<u8>>, FetchError> {
        let uri = check_url(&request.uri().to_string())?;
        let host = uri.host().ok_or(UrlError::NoHost)?.trim_start_matches('[').trim_end_matches(']').to_string();
        let https = uri.scheme_str() == Some("https");
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tcp = TcpStream::connect((host.as_str(), port)).await.map_err(FetchError::Connect)?;
        let _ = tcp.set_nodelay(true);
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let authority = uri.authority().map(|a| a.as_str()).unwrap_or(&host).to_string();
        let (mut parts, body) = request.into_parts();
        parts.uri = path.parse().map_err(|e: http::uri::InvalidUri| UrlError::Invalid(e.to_string()))?;
        parts.version = http::Version::HTTP_11;
        let headers = &mut parts.headers;
        headers.insert(http::header::HOST, authority.parse().map_err(|_| UrlError::NoHost)?);
        headers.insert(http::header::USER_AGENT, http::HeaderValue::from_static("portcullis-gateway"));
        let request = Request::from_parts(parts, Full::new(Bytes::from(body)));
        let response = if https {
            let name = ServerName::try_from(host.clone()).map_err(|e| UrlError::Invalid(e.to_string()))?;
            let tls = self.tls.connect(name, tcp).await.map_err(FetchError::Tls)?;
            send(TokioIo::new(tls), request).await?
        } else {
            send(TokioIo::new(tcp), request).await?
        };
        let (parts, body) = response.into_parts();
        let body =
            Limited::new(body, MAX_DOCUMENT_BYTES).collect().await.map_err(|e| FetchError::Body(e.to_string()))?;
        Ok(http::Response::from_parts(parts, body.to_bytes().to_vec()))
    }
}

/// The OIDC client's HTTP, for openidconnect's `request_async`: its requests go through this
/// fetcher (hyper, the gateway's rustls config), not through a second HTTP stack. The future
/// owns a clone of the fetcher, so it is `Send` and `'static` whatever the borrow of the client.
pub(crate) fn oidc_client(
    fetcher: &Fetcher,
) -> impl Fn(
    openidconnect::HttpRequest,
) -> std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<openidconnect::HttpResponse, FetchError>> + Send + 'static>,
> + use<> {
    let fetcher = fetcher.clone();
    move |request| {
        let fetcher = fetcher.clone();
        Box::pin(async move { fetcher.send(request).await })
    }
}

async fn send<T>(io: T, request: Request<Full<Bytes>>) -> Result<http::Response<hyper::body::Incoming>, hyper::Error>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender.send_request(request).await
}
