//! Network sinks: a task per sink reads batches from its spool and delivers them, retrying
//! with exponential backoff (capped, with jitter) until the receiver takes them. The cursor
//! moves only after a delivery succeeded, so events are delivered at least once; a dead
//! receiver never slows requests down, it only grows the spool.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::spool::{Batch, SpoolReader};
use crate::config::HttpFormat;
use crate::outbound::Roots;

/// Why a sink's settings cannot be used; [`SinkError::field`] names the setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    Url(#[from] crate::outbound::UrlError),
    #[error("expected host:port")]
    NoPort,
    #[error("bad port in {0}")]
    BadPort(String),
    #[error("{0:?} is not a valid TLS server name")]
    ServerName(String),
    #[error(transparent)]
    Tls(#[from] crate::config::ConfigError),
    #[error("the token has characters not allowed in a header")]
    Token,
    #[error("facility must be 0..=23")]
    Facility,
}

impl SinkError {
    /// The sink setting the error is about (under `audit.sinks[i]`).
    pub fn field(&self) -> &'static str {
        match self {
            SinkError::Url(_) => "url",
            SinkError::NoPort | SinkError::BadPort(_) => "address",
            SinkError::ServerName(_) => "tls_server_name",
            SinkError::Tls(_) => "ca_file",
            SinkError::Token => "token",
            SinkError::Facility => "facility",
        }
    }
}

/// Why one delivery failed; the batch stays in the spool and is sent again.
#[derive(Debug, thiserror::Error)]
enum DeliveryError {
    #[error("no answer within {} s", SEND_TIMEOUT.as_secs())]
    Timeout,
    #[error("connect {address}: {source}")]
    Connect { address: String, source: std::io::Error },
    #[error("TLS: {0}")]
    Tls(std::io::Error),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("HTTP request: {0}")]
    Request(#[from] http::Error),
    #[error("HTTP {0}")]
    Status(http::StatusCode),
    #[error("write: {0}")]
    Write(#[from] std::io::Error),
}

const BATCH_BYTES: usize = 4 << 20;
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
const LINGER: Duration = Duration::from_millis(200);

/// One receiver: HTTP (webhook / Splunk HEC) or syslog.
pub(crate) enum Receiver {
    Http(HttpReceiver),
    Syslog(SyslogReceiver),
}

impl Receiver {
    async fn send(&mut self, batch: &Batch) -> Result<(), DeliveryError> {
        match self {
            Receiver::Http(http) => http.send(batch).await,
            Receiver::Syslog(syslog) => syslog.send(batch).await,
        }
    }

    fn disconnect(&mut self) {
        match self {
            Receiver::Http(http) => http.connection = None,
            Receiver::Syslog(syslog) => syslog.connection = None,
        }
    }
}

/// Delivers the spool to `receiver` until the gateway stops.
pub(crate) async fn run(
    name: String,
    mut reader: SpoolReader,
    mut receiver: Receiver,
    batch_events: usize,
    max_backoff: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    let shared = Arc::clone(reader.shared());
    let mut backoff = Duration::from_millis(100);
    let mut failing = false;
    loop {
        if *stopped.borrow() {
            return;
        }
        crate::metrics::audit_spool_bytes(&name, shared.backlog.load(std::sync::atomic::Ordering::Relaxed));
        let read = tokio::task::spawn_blocking(move || {
            let batch = reader.read(batch_events, BATCH_BYTES);
            (reader, batch)
        })
        .await;
        let Ok((returned, batch)) = read else { return };
        reader = returned;
        let batch = match batch {
            Ok(batch) => batch,
            Err(error) => {
                tracing::error!(sink = name, %error, "audit spool cannot be read");
                if sleep_or_stop(Duration::from_secs(1), &mut stopped).await {
                    return;
                }
                continue;
            }
        };
        if batch.events == 0 {
            tokio::select! {
                _ = shared.appended.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stopped.changed() => return,
            }
            continue;
        }
        let sent =
            tokio::time::timeout(SEND_TIMEOUT, receiver.send(&batch)).await.unwrap_or(Err(DeliveryError::Timeout));
        match sent {
            Ok(()) => {
                let full = batch.events >= batch_events;
                if let Err(error) = reader.commit(&batch) {
                    tracing::error!(sink = name, %error, "audit spool cursor cannot be saved; events may be sent again");
                }
                crate::metrics::audit_events(&name, "delivered", batch.events);
                if failing {
                    tracing::info!(sink = name, "audit sink reachable again");
                    failing = false;
                }
                backoff = Duration::from_millis(100);
                // A short batch: let the next one fill for a moment (one POST per batch, not
                // per event). A full one means a backlog: go on at once.
                if !full && sleep_or_stop(LINGER, &mut stopped).await {
                    return;
                }
            }
            Err(error) => {
                receiver.disconnect();
                crate::metrics::audit_events(&name, "retried", batch.events);
                if !failing {
                    tracing::warn!(sink = name, %error, "audit sink unreachable; events stay in the spool and are retried");
                    failing = true;
                }
                if sleep_or_stop(jitter(backoff), &mut stopped).await {
                    return;
                }
                backoff = (backoff * 2).min(max_backoff);
            }
        }
    }
}

async fn sleep_or_stop(duration: Duration, stopped: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(duration) => false,
        _ = stopped.changed() => true,
    }
}

/// Between 50% and 100% of `d`, so many gateways do not retry in step.
fn jitter(d: Duration) -> Duration {
    let random = uuid::Uuid::new_v4().as_u128() as u32;
    d.mul_f64(0.5 + f64::from(random) / f64::from(u32::MAX) / 2.0)
}

type Stream = Box<dyn AsyncWriteStream>;
trait AsyncWriteStream: tokio::io::AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + AsyncWrite + Unpin + Send> AsyncWriteStream for T {}

/// Where and how to connect: host, port, TLS or not.
struct Dial {
    host: String,
    port: u16,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
}

impl Dial {
    async fn connect(&self) -> Result<Stream, DeliveryError> {
        let tcp = tokio::time::timeout(SEND_TIMEOUT, TcpStream::connect((self.host.as_str(), self.port)))
            .await
            .map_err(|_| DeliveryError::Timeout)?
            .map_err(|source| DeliveryError::Connect { address: format!("{}:{}", self.host, self.port), source })?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(Box::new(tcp)),
            Some((connector, name)) => {
                let tls = connector.connect(name.clone(), tcp).await.map_err(DeliveryError::Tls)?;
                Ok(Box::new(tls))
            }
        }
    }
}

/// An HTTP endpoint taking batches: a JSON array (webhook) or Splunk HEC events.
pub(crate) struct HttpReceiver {
    uri: Uri,
    authority: String,
    dial: Dial,
    format: HttpFormat,
    authorization: Option<http::HeaderValue>,
    connection: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
}

impl HttpReceiver {
    /// `token` is already resolved; it goes into a sensitive header value, never a log.
    pub(crate) fn new(
        url: &str,
        format: HttpFormat,
        token: Option<&str>,
        extra_roots: Vec<CertificateDer<'static>>,
    ) -> Result<Self, SinkError> {
        let uri = crate::outbound::check_url(url)?;
        // `check_url` refused a URL without a host already.
        let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_string();
        let https = uri.scheme_str() == Some("https");
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            let name = ServerName::try_from(host.clone()).map_err(|_| SinkError::ServerName(host.clone()))?;
            Some((connector(Roots { webpki: true, extra: extra_roots })?, name))
        } else {
            None
        };
        let authorization = token
            .map(|t| {
                let scheme = if format == HttpFormat::SplunkHec { "Splunk" } else { "Bearer" };
                let mut value =
                    http::HeaderValue::from_str(&format!("{scheme} {}", t.trim())).map_err(|_| SinkError::Token)?;
                value.set_sensitive(true);
                Ok::<_, SinkError>(value)
            })
            .transpose()?;
        let authority = uri.authority().map(|a| a.as_str().to_string()).unwrap_or_else(|| host.clone());
        Ok(Self { uri, authority, dial: Dial { host, port, tls }, format, authorization, connection: None })
    }

    fn body(&self, batch: &Batch) -> Vec<u8> {
        let mut body = Vec::with_capacity(batch.lines.len() + batch.events * 64 + 2);
        let lines = batch.lines.split(|b| *b == b'\n').filter(|l| !l.is_empty());
        match self.format {
            HttpFormat::Json => {
                body.push(b'[');
                for (i, line) in lines.enumerate() {
                    if i > 0 {
                        body.push(b',');
                    }
                    body.extend_from_slice(line);
                }
                body.push(b']');
            }
            HttpFormat::SplunkHec => {
                for line in lines {
                    body.extend_from_slice(b"{\"sourcetype\":\"ocsf\",\"source\":\"portcullis\",\"event\":");
                    body.extend_from_slice(line);
                    body.extend_from_slice(b"}\n");
                }
            }
        }
        body
    }

    async fn send(&mut self, batch: &Batch) -> Result<(), DeliveryError> {
        let path = self.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut request = Request::post(path)
            .header(header::HOST, &self.authority)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, "portcullis-gateway")
            .body(Full::new(Bytes::from(self.body(batch))))?;
        if let Some(authorization) = &self.authorization {
            request.headers_mut().insert(header::AUTHORIZATION, authorization.clone());
        }
        let sender = match &mut self.connection {
            Some(sender) if !sender.is_closed() => sender,
            _ => {
                let io = TokioIo::new(self.dial.connect().await?);
                let (sender, connection) = hyper::client::conn::http1::handshake(io).await?;
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                self.connection.insert(sender)
            }
        };
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        // Drain the (small) answer so the connection can be reused.
        let _ = http_body_util::Limited::new(response.into_body(), 64 * 1024).collect().await;
        if status.is_success() { Ok(()) } else { Err(DeliveryError::Status(status)) }
    }
}

/// An RFC 5424 receiver over TCP or TLS (RFC 5425), octet-counted frames (RFC 6587 §3.4.1).
pub struct SyslogReceiver {
    dial: Dial,
    facility: u8,
    app_name: String,
    hostname: String,
    procid: String,
    connection: Option<Stream>,
}

impl SyslogReceiver {
    pub fn new(
        address: &str,
        tls: Option<(Vec<CertificateDer<'static>>, Option<String>)>,
        facility: u8,
        app_name: &str,
    ) -> Result<Self, SinkError> {
        let (host, port) = address.rsplit_once(':').ok_or(SinkError::NoPort)?;
        let port: u16 = port.parse().map_err(|_| SinkError::BadPort(address.to_string()))?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        if facility > 23 {
            return Err(SinkError::Facility);
        }
        let tls = match tls {
            None => None,
            Some((roots, server_name)) => {
                let server_name = server_name.unwrap_or_else(|| host.clone());
                let name = ServerName::try_from(server_name.clone()).map_err(|_| SinkError::ServerName(server_name))?;
                Some((connector(Roots { webpki: false, extra: roots })?, name))
            }
        };
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| printable(h.trim(), 255))
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "-".into());
        Ok(Self {
            dial: Dial { host, port, tls },
            facility,
            app_name: printable(app_name, 48),
            hostname,
            procid: std::process::id().to_string(),
            connection: None,
        })
    }

    /// One RFC 5424 message per event: `<PRI>1 TIMESTAMP HOST APP PROCID MSGID - JSON`.
    fn frames(&self, batch: &Batch) -> Vec<u8> {
        self.frame_lines(&batch.lines, batch.events)
    }

    /// The frames of newline-separated event lines (public for the fuzz target).
    pub fn frame_lines(&self, lines: &[u8], events: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(lines.len() + events * 96);
        for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let (msgid, severity) = classify(line);
            let pri = u16::from(self.facility) * 8 + u16::from(severity);
            let timestamp = event_time(line);
            let header = format!("<{pri}>1 {timestamp} {} {} {} {msgid} - ", self.hostname, self.app_name, self.procid);
            out.extend_from_slice(format!("{} ", header.len() + line.len()).as_bytes());
            out.extend_from_slice(header.as_bytes());
            out.extend_from_slice(line);
        }
        out
    }

    async fn send(&mut self, batch: &Batch) -> Result<(), DeliveryError> {
        let frames = self.frames(batch);
        let stream = match &mut self.connection {
            Some(stream) => stream,
            None => self.connection.insert(self.dial.connect().await?),
        };
        stream.write_all(&frames).await?;
        Ok(stream.flush().await?)
    }
}

/// MSGID and severity from the event's class and status (fields the formatter writes first).
fn classify(line: &[u8]) -> (&'static str, u8) {
    let has = |needle: &[u8]| line.windows(needle.len()).any(|w| w == needle);
    let failed = has(b"\"status_id\":2");
    if line.starts_with(b"{\"class_uid\":2004") {
        ("detection_finding", 1)
    } else if line.starts_with(b"{\"class_uid\":3002") {
        ("authentication", if failed { 4 } else { 6 })
    } else {
        ("api_activity", if failed { 4 } else { 6 })
    }
}

/// The event's `time` (Unix ms) as an RFC 3339 timestamp, or `-` (NILVALUE).
fn event_time(line: &[u8]) -> String {
    let needle = b",\"time\":";
    let Some(start) = line.windows(needle.len()).position(|w| w == needle) else { return "-".into() };
    let digits: String =
        line.iter().skip(start + needle.len()).take_while(|b| b.is_ascii_digit()).map(|b| *b as char).collect();
    let Ok(ms) = digits.parse::<i128>() else { return "-".into() };
    time::OffsetDateTime::from_unix_timestamp_nanos(ms * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| "-".into())
}

/// A TLS connector for a sink (its CA is checked at start, so a failure here is a message).
fn connector(roots: Roots) -> Result<tokio_rustls::TlsConnector, SinkError> {
    Ok(crate::outbound::connector(roots, "audit sink")?)
}

/// RFC 5424 header fields are printable US-ASCII without spaces.
fn printable(value: &str, max: usize) -> String {
    value.chars().filter(|c| c.is_ascii_graphic()).take(max).collect()
}
