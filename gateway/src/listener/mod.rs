//! The TLS listeners, in the order a connection meets them: accept (connection limits,
//! checked before any TLS work), the TLS handshake (within the head deadline), the protocol
//! ALPN chose (h2 or HTTP/1.1, enforced), then hyper serving the pipeline while
//! `connection::drive` holds the connection to its deadlines. Every refusal on the way is
//! counted and audited, aggregated per source ([`crate::audit::refusals`]).

mod connection;
pub(crate) mod frames;
mod limits;
mod refusal;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

pub(crate) use connection::Deadlines;
use connection::{Activity, Guarded, Tracked};
pub(crate) use limits::{ConnectionLimits, default_max_connections};
pub(crate) use refusal::Refusal;

use crate::config::{Limits, Timeouts};
use crate::connection::Connection;
use crate::pipeline::Pipeline;
use crate::workload;

/// Counts and audits a refusal.
fn refused(pipeline: &Pipeline, peer: SocketAddr, refusal: Refusal, detail: Option<String>) {
    if refusal != Refusal::TlsHandshake {
        crate::metrics::connection_refusal(pipeline.name(), refusal.code());
    }
    tracing::debug!(%peer, listener = pipeline.name(), reason = refusal.code(), "connection refused");
    pipeline.auditor().connection_refused(pipeline.name(), peer, refusal.code(), || {
        detail.clone().unwrap_or_else(|| refusal.message().to_string())
    });
}

/// How one TLS listener serves its connections.
#[derive(Clone)]
pub(crate) struct Serving {
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
    /// The Flight listener: h2 whatever ALPN said (gRPC needs it).
    h2_only: bool,
    deadlines: Deadlines,
    control_frames_per_sec: u32,
}

impl Serving {
    pub(crate) fn new(timeouts: &Timeouts, limits: &Limits, h2_only: bool) -> Self {
        let mut h1 = http1::Builder::new();
        // The head deadline is the driver's (from the first byte of each head, and from
        // accept for the first): hyper's own timer would also close idle keep-alives early.
        h1.timer(TokioTimer::new()).max_buf_size(limits.max_header_bytes.max(8192));
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
            .max_concurrent_streams(limits.max_streams_per_connection)
            // A dead peer under a long stream: PING it, and give up if it does not answer.
            .keep_alive_interval(Some(Duration::from_secs(timeouts.idle_secs.max(1))))
            .keep_alive_timeout(Duration::from_secs(20));
        let secs = Duration::from_secs;
        Self {
            h1,
            h2,
            h2_only,
            deadlines: Deadlines {
                header: secs(timeouts.client_header_secs),
                idle: secs(timeouts.idle_secs),
                write: secs(timeouts.client_write_secs),
            },
            control_frames_per_sec: limits.max_control_frames_per_sec,
        }
    }
}

impl std::fmt::Debug for Serving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serving").field("h2_only", &self.h2_only).field("deadlines", &self.deadlines).finish()
    }
}

/// Accepts and serves until `stopped`, then gives connections `grace` to finish.
pub(crate) async fn serve_tls(
    listener: TcpListener,
    pipeline: Arc<Pipeline>,
    tls: impl Fn() -> Arc<ServerConfig> + Send + 'static,
    serving: Serving,
    limits: Arc<ConnectionLimits>,
    grace: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    let serving = Arc::new(serving);
    // Each connection task holds a sender; all are gone when every connection has ended.
    let (open, mut all_closed) = tokio::sync::mpsc::channel::<()>(1);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = process::accept(&listener) => accepted,
            _ = stopped.changed() => break,
        };
        let accepted = tokio::time::Instant::now();
        let admission = match limits.admit(peer.ip()) {
            Ok(admission) => admission,
            Err(refusal) => {
                // A reset frees the descriptor at once (no TIME_WAIT, no FIN handshake).
                let _ = stream.set_zero_linger();
                drop(stream);
                refused(&pipeline, peer, refusal, None);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let acceptor = TlsAcceptor::from(tls());
        let (pipeline, serving, stopped, open, limits) =
            (Arc::clone(&pipeline), Arc::clone(&serving), stopped.clone(), open.clone(), Arc::clone(&limits));
        tokio::spawn(async move {
            let _admission = admission;
            let _open = (open, crate::metrics::connection_opened(pipeline.name()));
            let accepted = Accepted { stream, peer, at: accepted };
            let served = serve_one(accepted, acceptor, &pipeline, &serving, &limits, stopped).await;
            if let Some(refusal) = served {
                refused(&pipeline, peer, refusal, None);
            }
        });
    }
    drop(listener);
    drop(open);
    if tokio::time::timeout(grace, all_closed.recv()).await.is_err() {
        tracing::warn!(grace_secs = grace.as_secs(), "requests still in flight after the grace period: cut off");
    }
}

/// A connection just accepted, and when.
struct Accepted {
    stream: TcpStream,
    peer: SocketAddr,
    at: tokio::time::Instant,
}

async fn serve_one(
    accepted: Accepted,
    acceptor: TlsAcceptor,
    pipeline: &Arc<Pipeline>,
    serving: &Serving,
    limits: &ConnectionLimits,
    stopped: watch::Receiver<bool>,
) -> Option<Refusal> {
    let Accepted { stream, peer, at: accepted } = accepted;
    let handshake = tokio::time::timeout_at(accepted + serving.deadlines.header, acceptor.accept(stream)).await;
    let tls_stream = match handshake {
        Ok(Ok(tls_stream)) => tls_stream,
        Ok(Err(error)) => {
            tracing::info!(%peer, %error, "TLS handshake failed");
            crate::metrics::tls_failure(pipeline.name(), tls_failure_reason(&error));
            refused(pipeline, peer, Refusal::TlsHandshake, Some(format!("TLS handshake failed: {error}")));
            return None;
        }
        Err(_) => {
            tracing::info!(%peer, "TLS handshake timed out");
            crate::metrics::tls_failure(pipeline.name(), "timeout");
            refused(pipeline, peer, Refusal::TlsHandshake, Some("TLS handshake timed out".into()));
            return None;
        }
    };
    let session = tls_stream.get_ref().1;
    let workload = session
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(workload::principal_from_certificate)
        .map(Arc::new);
    let h2 = serving.h2_only || session.alpn_protocol() == Some(b"h2");
    let connection = Arc::new(Connection { peer, workload });
    let activity = Activity::new(accepted);
    let io = TokioIo::new(Guarded::new(tls_stream, Arc::clone(&activity), !h2, serving.control_frames_per_sec));
    let (pipeline, requests) = (Arc::clone(pipeline), Arc::clone(&activity));
    let service = hyper::service::service_fn(move |request| {
        let clock = requests.open();
        let (pipeline, connection) = (Arc::clone(&pipeline), Arc::clone(&connection));
        async move {
            let response = pipeline.handle(&connection, request).await;
            Ok::<_, std::convert::Infallible>(response.map(|body| Tracked::new(body, clock)))
        }
    });
    // The protocol ALPN chose is the only one served: h2 bytes on an HTTP/1.1 connection (or
    // HTTP/1.1 on h2) are a protocol error, not a second chance.
    if h2 {
        let conn = serving.h2.serve_connection(io, service);
        connection::drive(conn, activity, serving.deadlines, limits, stopped).await
    } else {
        let conn = serving.h1.serve_connection(io, service);
        connection::drive(conn, activity, serving.deadlines, limits, stopped).await
    }
}

/// Why a handshake failed, from a closed set (a metric label).
fn tls_failure_reason(error: &std::io::Error) -> &'static str {
    use rustls::Error as Tls;
    match error.get_ref().and_then(|e| e.downcast_ref::<Tls>()) {
        Some(Tls::NoCertificatesPresented) => "no_client_certificate",
        Some(Tls::InvalidCertificate(_)) => "bad_certificate",
        Some(Tls::PeerIncompatible(_)) => "incompatible",
        Some(Tls::NoApplicationProtocol) => "no_application_protocol",
        Some(Tls::AlertReceived(_)) => "alert_received",
        Some(
            Tls::InvalidMessage(_)
            | Tls::InappropriateMessage { .. }
            | Tls::InappropriateHandshakeMessage { .. }
            | Tls::PeerMisbehaved(_)
            | Tls::DecryptError,
        ) => "protocol_error",
        Some(_) => "other",
        None if matches!(
            error.kind(),
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
        ) =>
        {
            "connection_closed"
        }
        None => "other",
    }
}
