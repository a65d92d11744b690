//! Forward: send the stamped request to the engine on a pooled connection and stream both
//! bodies (and gRPC trailers) through without buffering them.

use std::time::Duration;

use http::header::HOST;
use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri};
use http_body::Body as _;
use http_body_util::{BodyExt, Empty, LengthLimitError};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::body::{Body, BoxError};
use crate::config::{ConfigError, Timeouts, UpstreamTls};
use crate::error::GatewayError;
use crate::outbound::{self, Roots};

/// Response bodies up to this many bytes, with a declared length, are passed on whole.
const SMALL_BODY_BYTES: u64 = 64 * 1024;

type Connector = HttpsConnector<HttpConnector>;

/// A pooled client for one upstream (the engine's HTTP or Flight port).
#[derive(Clone)]
pub(crate) struct Upstream {
    client: Client<Connector, Body>,
    scheme: Scheme,
    authority: Authority,
    response_timeout: Duration,
    stream_idle: Duration,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Upstream({}://{})", self.scheme, self.authority)
    }
}

impl Upstream {
    /// `http2_only` speaks h2 (gRPC: h2c with prior knowledge, or h2 over TLS); otherwise
    /// HTTP/1.1. Plain `http://` only to loopback: the stamp is a bearer assertion and must
    /// not cross a network in the clear; anything else is `https://` with `tls`.
    pub(crate) fn new(
        url: &str,
        tls: Option<&UpstreamTls>,
        http2_only: bool,
        timeouts: &Timeouts,
        field: &str,
    ) -> Result<Self, ConfigError> {
        let uri: Uri = url.parse().map_err(|e| ConfigError::new(field, format!("not a URL: {e}")))?;
        let scheme = uri.scheme().cloned().ok_or_else(|| ConfigError::new(field, "missing scheme (http://)"))?;
        let authority = uri.authority().cloned().ok_or_else(|| ConfigError::new(field, "missing host:port"))?;
        let tls_field = format!("{field}_tls");
        if scheme == Scheme::HTTP {
            if !outbound::is_loopback(authority.host()) {
                return Err(ConfigError::new(
                    field,
                    "plain http:// upstreams must be on loopback; use https:// with upstream_tls for a remote engine",
                ));
            }
            if tls.is_some() {
                return Err(ConfigError::new(&tls_field, "only for an https:// upstream"));
            }
        } else if scheme != Scheme::HTTPS {
            return Err(ConfigError::new(field, "scheme must be http:// (loopback) or https://"));
        }
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(Duration::from_secs(timeouts.upstream_connect_secs)));
        http.set_nodelay(true);
        http.enforce_http(false);
        let builder = HttpsConnectorBuilder::new()
            .with_tls_config(client_tls(tls.cloned().unwrap_or_default(), &tls_field)?)
            .https_or_http();
        let connector = if http2_only {
            builder.enable_http2().wrap_connector(http)
        } else {
            builder.enable_http1().wrap_connector(http)
        };
        let mut builder = Client::builder(TokioExecutor::new());
        builder.pool_idle_timeout(Duration::from_secs(timeouts.idle_secs)).http2_only(http2_only);
        Ok(Self {
            client: builder.build(connector),
            scheme,
            authority,
            response_timeout: Duration::from_secs(timeouts.upstream_response_secs),
            stream_idle: Duration::from_secs(timeouts.stream_idle_secs),
        })
    }

    /// The engine answers `GET /health` with a success status within 2 s.
    pub(crate) async fn ready(&self) -> bool {
        let Ok(uri) = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query("/health")
            .build()
        else {
            return false;
        };
        let Ok(request) = Request::get(uri).body(crate::body::empty()) else { return false };
        match tokio::time::timeout(Duration::from_secs(2), self.client.request(request)).await {
            Ok(Ok(response)) => {
                let ok = response.status().is_success();
                let _ = response.into_body().collect().await;
                ok
            }
            _ => false,
        }
    }

    /// Sends `request` upstream; the response body streams back as it arrives. `max_body` is
    /// the limit the authorize stage put on the request body, to name it if it is exceeded.
    /// Also returns how long the engine took to answer with a head (for observe's metric).
    pub(crate) async fn forward(
        &self,
        request: Request<Body>,
        max_body: Option<usize>,
    ) -> Result<(Response<Body>, Duration), GatewayError> {
        let (mut parts, body) = request.into_parts();
        let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        parts.uri = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path)
            .build()
            .map_err(|e| GatewayError::Internal(e.to_string()))?;
        // The client's hop-by-hop headers went in sanitize, before the gateway added its own.
        parts.headers.remove(HOST);
        // The engine is spoken to in the protocol its port serves, whatever the client used.
        parts.version = http::Version::default();

        let started = std::time::Instant::now();
        let response =
            match tokio::time::timeout(self.response_timeout, self.client.request(Request::from_parts(parts, body)))
                .await
            {
                Err(_) => return Err(GatewayError::UpstreamTimeout),
                Ok(Err(error)) => return Err(classify(error, max_body)),
                Ok(Ok(response)) => response,
            };
        let latency = started.elapsed();
        let (mut parts, body) = response.into_parts();
        super::sanitize::strip_hop_by_hop(&mut parts.headers);
        super::audit::take_report(&mut parts);
        // A trailers-only gRPC answer (an error without data: grpc-status in the head, which
        // ends the stream) must leave as one. A body that says it has ended lets hyper end the
        // stream with the head; any other body adds an empty DATA frame after it, which
        // clients read as a stream without trailers, losing the engine's status.
        if body.is_end_stream() {
            return Ok((
                Response::from_parts(parts, Empty::new().map_err(|never| match never {}).boxed_unsync()),
                latency,
            ));
        }
        // A small body of known length is read before the head is returned, so the client
        // gets head and body in one write instead of one per hop of the body through the
        // connection task. Bounded by SMALL_BODY_BYTES; anything else streams.
        let body = match body.size_hint().exact() {
            Some(len) if len <= SMALL_BODY_BYTES => {
                let collected = match tokio::time::timeout(self.response_timeout, body.collect()).await {
                    Err(_) => return Err(GatewayError::UpstreamTimeout),
                    Ok(Err(error)) => return Err(GatewayError::UpstreamUnavailable(error.to_string())),
                    Ok(Ok(collected)) => collected,
                };
                collected.map_err(|never| match never {}).boxed_unsync()
            }
            _ => super::idle::IdleBody::engine(body.map_err(BoxError::from).boxed_unsync(), self.stream_idle)
                .boxed_unsync(),
        };
        Ok((Response::from_parts(parts, body), latency))
    }
}

/// The client side of TLS to the engine: its CA (or the Mozilla roots), and the gateway's
/// client certificate when the engine requires one.
fn client_tls(tls: UpstreamTls, field: &str) -> Result<rustls::ClientConfig, ConfigError> {
    let roots = match &tls.ca_file {
        Some(path) => Roots { webpki: false, extra: outbound::ca_file(path, &format!("{field}.ca_file"))? },
        None => Roots { webpki: true, extra: Vec::new() },
    };
    let identity = match (&tls.certificate_file, &tls.key_file) {
        (None, None) => None,
        (Some(cert), Some(key)) => {
            let read = |path: &std::path::Path, name: &str| {
                std::fs::read(path)
                    .map_err(|e| ConfigError::new(format!("{field}.{name}"), format!("{}: {e}", path.display())))
            };
            let chain =
                crate::tls::parse_certificates(&read(cert, "certificate_file")?, &format!("{field}.certificate_file"))?;
            let key = crate::tls::parse_private_key(&read(key, "key_file")?, &format!("{field}.key_file"))?;
            Some((chain, key))
        }
        _ => return Err(ConfigError::new(field, "certificate_file and key_file go together")),
    };
    outbound::client_config(roots, identity, &format!("{field}.key_file"))
}

/// A body over the limit surfaces as a client error wrapping `LengthLimitError`.
fn classify(error: hyper_util::client::legacy::Error, max_body: Option<usize>) -> GatewayError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(e) = source {
        if e.is::<LengthLimitError>()
            && let Some(limit) = max_body
        {
            return GatewayError::PayloadTooLarge(limit);
        }
        // The client stopped sending the body being forwarded.
        if let Some(idle) = e.downcast_ref::<super::idle::StreamIdle>() {
            return GatewayError::ClientBody(idle.to_string());
        }
        source = e.source();
    }
    // The message and its causes ("client error (Connect): tcp connect error: Connection
    // refused"), not the Debug form of the error.
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    GatewayError::UpstreamUnavailable(message)
}
