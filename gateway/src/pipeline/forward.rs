//! Forward: send the stamped request to the engine on a pooled connection and stream both
//! bodies (and gRPC trailers) through without buffering them.

use std::time::Duration;

use http::header::{CONNECTION, HOST, TE, TRANSFER_ENCODING, UPGRADE};
use http::uri::{Authority, Scheme};
use http::{HeaderMap, HeaderName, Request, Response, Uri};
use http_body::Body as _;
use http_body_util::{BodyExt, LengthLimitError};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::{Body, BoxError};
use crate::config::{ConfigError, Timeouts};
use crate::error::GatewayError;

/// Response bodies up to this many bytes, with a declared length, are passed on whole.
const SMALL_BODY_BYTES: u64 = 64 * 1024;

/// A pooled client for one upstream (the engine's HTTP or Flight port).
#[derive(Clone)]
pub struct Upstream {
    client: Client<HttpConnector, Body>,
    scheme: Scheme,
    authority: Authority,
    response_timeout: Duration,
    /// The listener it serves, for metrics.
    listener: &'static str,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Upstream({}://{})", self.scheme, self.authority)
    }
}

impl Upstream {
    /// `http2_only` speaks h2c with prior knowledge (gRPC); otherwise HTTP/1.1.
    pub fn new(url: &str, http2_only: bool, timeouts: &Timeouts, field: &str) -> Result<Self, ConfigError> {
        let uri: Uri = url.parse().map_err(|e| ConfigError::new(field, format!("not a URL: {e}")))?;
        let scheme = uri.scheme().cloned().ok_or_else(|| ConfigError::new(field, "missing scheme (http://)"))?;
        if scheme != Scheme::HTTP {
            return Err(ConfigError::new(field, "only http:// upstreams on loopback are supported"));
        }
        let authority = uri.authority().cloned().ok_or_else(|| ConfigError::new(field, "missing host:port"))?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(timeouts.upstream_connect_secs)));
        connector.set_nodelay(true);
        let mut builder = Client::builder(TokioExecutor::new());
        builder.pool_idle_timeout(Duration::from_secs(timeouts.idle_secs)).http2_only(http2_only);
        Ok(Self {
            client: builder.build(connector),
            scheme,
            authority,
            response_timeout: Duration::from_secs(timeouts.upstream_response_secs),
            listener: if http2_only { "flight" } else { "api" },
        })
    }

    /// Sends `request` upstream; the response body streams back as it arrives. `max_body` is
    /// the limit the authorize stage put on the request body, to name it if it is exceeded.
    pub async fn forward(
        &self,
        request: Request<Body>,
        max_body: Option<usize>,
    ) -> Result<Response<Body>, GatewayError> {
        let (mut parts, body) = request.into_parts();
        let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        parts.uri = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path)
            .build()
            .map_err(|e| GatewayError::Internal(e.to_string()))?;
        strip_hop_by_hop(&mut parts.headers);
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
        crate::metrics::upstream_latency(self.listener, started.elapsed());
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
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
            _ => body.map_err(BoxError::from).boxed_unsync(),
        };
        Ok(Response::from_parts(parts, body))
    }
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
        source = e.source();
    }
    GatewayError::UpstreamUnavailable(format!("{error:?}"))
}

/// Removes connection-level headers (RFC 9110 §7.6.1), keeping `te: trailers` for gRPC.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [CONNECTION, TRANSFER_ENCODING, UPGRADE] {
        headers.remove(name);
    }
    for name in ["keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization"] {
        headers.remove(name);
    }
    if headers.get(TE).is_some_and(|v| v != "trailers") {
        headers.remove(TE);
    }
}
