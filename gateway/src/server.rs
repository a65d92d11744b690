//! Listeners: accept TCP, complete the TLS handshake (bounded in time), read the client
//! certificate's principal once, then serve HTTP/1.1 and HTTP/2 through the pipeline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use identity::{StampIssuer, StampSigner};
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::audit::{Auditor, Record, TlsRecord, now_ms};
use crate::auth::Authenticator;
use crate::authz::Authorizer;
use crate::config::{Config, ConfigError, Limits, Timeouts, resolve_pem};
use crate::pipeline::{Connection, Pipeline};
use crate::ratelimit::RateLimits;
use crate::tls::TlsMaterial;
use crate::{health, reload, workload};

/// ALPN offered on each listener: gRPC needs h2; the API serves both.
pub const API_ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];
pub const FLIGHT_ALPN: &[&[u8]] = &[b"h2"];

/// The live TLS configurations, swapped whole on reload.
#[derive(Debug)]
pub struct TlsConfigs {
    pub api: ArcSwap<ServerConfig>,
    pub flight: ArcSwap<ServerConfig>,
}

impl TlsConfigs {
    pub fn build(material: &TlsMaterial) -> Result<Self, ConfigError> {
        Ok(Self {
            api: ArcSwap::new(material.server_config(API_ALPN)?),
            flight: ArcSwap::new(material.server_config(FLIGHT_ALPN)?),
        })
    }

    pub fn swap(&self, material: &TlsMaterial) -> Result<(), ConfigError> {
        let api = material.server_config(API_ALPN)?;
        let flight = material.server_config(FLIGHT_ALPN)?;
        self.api.store(api);
        self.flight.store(flight);
        Ok(())
    }
}

/// Everything `run` needs, loaded and checked; `gateway check` stops here.
#[derive(Debug)]
pub struct Prepared {
    pub config: Config,
    pub tls: TlsMaterial,
    pub auth: Arc<Authenticator>,
    pub authz: Arc<Authorizer>,
    pub limits: Arc<RateLimits>,
    pub issuer: Arc<StampIssuer>,
}

/// Loads and checks certificates, keys and upstreams without binding anything.
pub fn prepare(config: Config) -> Result<Prepared, ConfigError> {
    let tls = TlsMaterial::load(&config.tls)?;
    let pem = resolve_pem(config.stamp.key.as_deref(), config.stamp.key_file.as_deref(), "stamp.key")?;
    let signer = StampSigner::from_pem(&pem, config.stamp.audience.clone())
        .map_err(|e| ConfigError::new("stamp.key", e.to_string()))?;
    let lifetimes = identity::MIN_STAMP_LIFETIME_SECS..=identity::MAX_STAMP_LIFETIME_SECS;
    if !lifetimes.contains(&config.stamp.lifetime_secs) {
        return Err(ConfigError::new(
            "stamp.lifetime_secs",
            format!("must be between {} and {}", lifetimes.start(), lifetimes.end()),
        ));
    }
    let issuer = Arc::new(StampIssuer::new(signer, config.stamp.lifetime_secs, 100_000));
    let auth = Arc::new(Authenticator::from_config(&config)?);
    let authz = Arc::new(
        Authorizer::load(&config.authorization)
            .map_err(|e| ConfigError::new("authorization.policies", format!("\n{e}")))?,
    );
    let limits = Arc::new(RateLimits::from_config(&config.rate_limits)?);
    crate::audit::Auditor::check(&config.audit)?;
    // Building the pipelines checks the upstream URLs and each listener's methods.
    Pipeline::from_config(
        &config,
        Arc::clone(&auth),
        Arc::clone(&authz),
        Arc::clone(&limits),
        Arc::clone(&issuer),
        Arc::new(Auditor::off()),
    )?;
    tls.server_config(API_ALPN)?;
    Ok(Prepared { config, tls, auth, authz, limits, issuer })
}

/// A running gateway.
#[derive(Debug)]
pub struct Running {
    pub api_addr: SocketAddr,
    pub flight_addr: SocketAddr,
    pub health_addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    audit_writer: Option<std::thread::JoinHandle<()>>,
    /// Set for the drain: `/readyz` fails, everything else is served.
    draining: Arc<AtomicBool>,
    drain: Duration,
}

impl Running {
    /// [`Self::shutdown_unless`] with nothing to cut the drain short.
    pub async fn shutdown(self) {
        self.shutdown_unless(std::future::pending()).await;
    }

    /// Drains (readiness fails, everything is served) for `shutdown.drain_secs` or until
    /// `skip_drain` resolves, stops accepting, lets requests and streams in flight finish (up
    /// to `shutdown.grace_secs`), then gives the audit writer up to 2 s for what is queued.
    pub async fn shutdown_unless(self, skip_drain: impl std::future::Future<Output = ()>) {
        if !self.drain.is_zero() {
            self.draining.store(true, Ordering::Relaxed);
            tracing::info!(drain_secs = self.drain.as_secs(), "draining: /readyz fails, requests are still served");
            tokio::select! {
                _ = tokio::time::sleep(self.drain) => {}
                _ = skip_drain => tracing::info!("second signal: drain cut short"),
            }
        }
        tracing::info!("closing the listeners; waiting for requests in flight");
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        if let Some(writer) = self.audit_writer {
            // The writer ends once the last pipeline (a queue sender) is gone. A connection
            // that outlived the graceful period still holds one: wait a bounded time only;
            // what is queued is written within the writer's 10 ms linger anyway.
            let joined = tokio::task::spawn_blocking(move || writer.join());
            let _ = tokio::time::timeout(Duration::from_secs(2), joined).await;
        }
    }
}

/// Binds all listeners and serves until [`Running::shutdown`].
pub async fn start(prepared: Prepared) -> Result<Running, String> {
    let Prepared { config, tls, auth, authz, limits, issuer } = prepared;
    let tls_configs = Arc::new(TlsConfigs::build(&tls).map_err(|e| e.to_string())?);
    crate::metrics::certificates(&tls.expiries);
    let (stop, stopped) = watch::channel(false);
    let audit = Auditor::start(&config.audit, &stopped).map_err(|e| e.to_string())?;
    let (api, flight) = Pipeline::from_config(
        &config,
        Arc::clone(&auth),
        Arc::clone(&authz),
        Arc::clone(&limits),
        issuer,
        audit.auditor,
    )
    .map_err(|e| e.to_string())?;
    let bind = |addr: SocketAddr, name: &'static str| async move {
        TcpListener::bind(addr).await.map_err(|e| format!("{name}.listen {addr}: {e}"))
    };
    let api_listener = bind(config.api.listen, "api").await?;
    let flight_listener = bind(config.flight.listen, "flight").await?;
    let health_listener = bind(config.health.listen, "health").await?;
    let addr = |l: &TcpListener| l.local_addr().map_err(|e| e.to_string());
    let (api_addr, flight_addr, health_addr) = (addr(&api_listener)?, addr(&flight_listener)?, addr(&health_listener)?);

    // Readiness asks the engine behind the API listener, the way requests reach it.
    let ready_upstream = api.upstream().clone();
    let draining = Arc::new(AtomicBool::new(false));
    let grace = Duration::from_secs(config.shutdown.grace_secs);
    let api_tls = Arc::clone(&tls_configs);
    let flight_tls = Arc::clone(&tls_configs);
    let mut tasks = vec![
        tokio::spawn(serve_tls(
            api_listener,
            Arc::new(api),
            move || api_tls.api.load_full(),
            config.timeouts.clone(),
            config.limits.clone(),
            grace,
            stopped.clone(),
        )),
        tokio::spawn(serve_tls(
            flight_listener,
            Arc::new(flight),
            move || flight_tls.flight.load_full(),
            config.timeouts.clone(),
            config.limits.clone(),
            grace,
            stopped.clone(),
        )),
        tokio::spawn(health::serve(health_listener, ready_upstream, Arc::clone(&draining), stopped.clone())),
        tokio::spawn(reload::watch_tls(config.tls.clone(), Arc::clone(&tls_configs), stopped.clone())),
        tokio::spawn(reload::watch_policies(authz, stopped.clone())),
        tokio::spawn(prune_rate_limits(Arc::clone(&limits), stopped.clone())),
    ];
    if let Some(path) = config.source.clone() {
        tasks.push(tokio::spawn(reload::watch_quotas(path, limits, stopped.clone())));
    }
    if let Some(keys) = config.auth.api_keys.clone() {
        tasks.push(tokio::spawn(reload::watch_api_keys(keys, Arc::clone(&auth), stopped.clone())));
    }
    tasks.extend(auth.spawn_refreshers(&stopped));
    tasks.extend(audit.tasks);
    tracing::info!(%api_addr, %flight_addr, %health_addr, "gateway listening");
    let drain = Duration::from_secs(config.shutdown.drain_secs);
    Ok(Running { api_addr, flight_addr, health_addr, stop, tasks, audit_writer: audit.writer, draining, drain })
}

/// Keeps the limiters' memory bounded: idle keys are dropped every few seconds.
async fn prune_rate_limits(limits: Arc<RateLimits>, mut stopped: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => limits.prune(),
            _ = stopped.changed() => return,
        }
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

/// A connection refused before HTTP is an API Activity event too.
fn audit_tls_failure(pipeline: &Pipeline, peer: SocketAddr, error: String) {
    let auditor = pipeline.auditor();
    if auditor.enabled() {
        auditor.submit(Record::Tls(TlsRecord { time_ms: now_ms(), listener: pipeline.name(), peer, error }));
    }
}

async fn serve_tls(
    listener: TcpListener,
    pipeline: Arc<Pipeline>,
    tls: impl Fn() -> Arc<ServerConfig> + Send + 'static,
    timeouts: Timeouts,
    limits: Limits,
    grace: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(timeouts.client_header_secs))
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(Duration::from_secs(timeouts.idle_secs)));
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let handshake_timeout = Duration::from_secs(timeouts.client_header_secs);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let acceptor = TlsAcceptor::from(tls());
        let (pipeline, builder) = (Arc::clone(&pipeline), Arc::clone(&builder));
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _open = crate::metrics::connection_opened(pipeline.name());
            let tls_stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls_stream)) => tls_stream,
                Ok(Err(error)) => {
                    tracing::info!(%peer, %error, "TLS handshake failed");
                    crate::metrics::tls_failure(pipeline.name(), tls_failure_reason(&error));
                    audit_tls_failure(&pipeline, peer, format!("TLS handshake failed: {error}"));
                    return;
                }
                Err(_) => {
                    tracing::info!(%peer, "TLS handshake timed out");
                    crate::metrics::tls_failure(pipeline.name(), "timeout");
                    audit_tls_failure(&pipeline, peer, "TLS handshake timed out".into());
                    return;
                }
            };
            let workload = tls_stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(workload::principal_from_certificate)
                .map(Arc::new);
            let connection = Arc::new(Connection { peer, workload });
            let service = hyper::service::service_fn(move |request| {
                let (pipeline, connection) = (Arc::clone(&pipeline), Arc::clone(&connection));
                async move { Ok::<_, std::convert::Infallible>(pipeline.handle(&connection, request).await) }
            });
            let conn = builder.serve_connection(TokioIo::new(tls_stream), service);
            if let Err(error) = watcher.watch(conn).await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!(grace_secs = grace.as_secs(), "requests still in flight after the grace period: cut off");
    }
}
