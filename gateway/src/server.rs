//! The gateway's life: load and check everything ([`prepare`]), bind and start the
//! listeners and background tasks ([`start`]), drain and stop ([`Running::shutdown`]).
//! How a connection is served is [`crate::listener`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use identity::{StampIssuer, StampSigner};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::audit::Auditor;
use crate::auth::Authenticator;
use crate::authz::Authorizer;
use crate::config::{Config, ConfigError, resolve_pem};
use crate::listener::{ConnectionLimits, Serving, serve_tls};
use crate::pipeline::Pipeline;
use crate::query_limits::QueryLimits;
use crate::ratelimit::RateLimits;
use crate::tls::{API_ALPN, TlsConfigs, TlsMaterial};
use crate::{health, reload};

/// Everything `run` needs, loaded and checked; `gateway check` stops here.
#[derive(Debug)]
pub struct Prepared {
    pub config: Config,
    pub tls: TlsMaterial,
    pub auth: Arc<Authenticator>,
    pub authz: Arc<Authorizer>,
    pub limits: Arc<RateLimits>,
    pub queries: Arc<QueryLimits>,
    pub issuer: Arc<StampIssuer>,
}

/// Loads and checks certificates, keys and upstreams without binding anything.
pub fn prepare(config: Config) -> Result<Prepared, ConfigError> {
    let tls = TlsMaterial::load(&config.tls)?;
    let pem = resolve_pem(config.stamp.key.as_ref(), config.stamp.key_file.as_deref(), "stamp.key")?;
    let signer = StampSigner::from_pem(&pem, config.stamp.audience.clone())
        .map_err(|e| ConfigError::new("stamp.key", e.to_string()))?;
    let lifetimes = identity::MIN_STAMP_LIFETIME_SECS..=identity::MAX_STAMP_LIFETIME_SECS;
    if !lifetimes.contains(&config.stamp.lifetime_secs) {
        return Err(ConfigError::new(
            "stamp.lifetime_secs",
            format!("must be between {} and {}", lifetimes.start(), lifetimes.end()),
        ));
    }
    check_limits(&config)?;
    check_listeners(&config)?;
    let issuer = Arc::new(StampIssuer::new(signer, config.stamp.lifetime_secs, 100_000));
    let auth = Arc::new(Authenticator::from_config(&config)?);
    if let Some(path) = &config.authorization.engine_config
        && !path.exists()
    {
        return Err(ConfigError::new("authorization.engine_config", format!("{}: no such file", path.display())));
    }
    let mut authz = Authorizer::load(&config.authorization)
        .map_err(|e| ConfigError::new("authorization.policies", format!("\n{e}")))?;
    if let Some(shadow) = &config.authorization.shadow {
        authz = authz.with_shadow(shadow).map_err(|e| ConfigError::new("authorization.shadow", format!("\n{e}")))?;
    }
    let authz = Arc::new(authz);
    let limits = Arc::new(RateLimits::from_config(&config.rate_limits)?);
    let queries = Arc::new(QueryLimits::from_config(&config.query_limits)?);
    crate::audit::Auditor::check(&config.audit)?;
    // Building the pipelines checks the upstream URLs and each listener's methods.
    Pipeline::from_config(
        &config,
        Arc::clone(&auth),
        Arc::clone(&authz),
        (Arc::clone(&limits), Arc::clone(&queries)),
        Arc::clone(&issuer),
        Arc::new(Auditor::off()),
    )?;
    tls.server_config(API_ALPN)?;
    Ok(Prepared { config, tls, auth, authz, limits, queries, issuer })
}

/// Zero would refuse every connection or close it at once: a limit or deadline is at least 1.
fn check_limits(config: &Config) -> Result<(), ConfigError> {
    let (t, l) = (&config.timeouts, &config.limits);
    let fields = [
        ("timeouts.client_header_secs", t.client_header_secs),
        ("timeouts.idle_secs", t.idle_secs),
        ("timeouts.client_body_secs", t.client_body_secs),
        ("timeouts.stream_idle_secs", t.stream_idle_secs),
        ("timeouts.client_write_secs", t.client_write_secs),
        ("timeouts.upstream_connect_secs", t.upstream_connect_secs),
        ("timeouts.upstream_response_secs", t.upstream_response_secs),
        ("limits.max_connections", l.max_connections.map_or(1, |n| n as u64)),
        ("limits.max_connections_per_ip", l.max_connections_per_ip as u64),
        ("limits.max_streams_per_connection", u64::from(l.max_streams_per_connection)),
        ("limits.max_control_frames_per_sec", u64::from(l.max_control_frames_per_sec)),
        ("runtime.worker_threads", config.runtime.worker_threads.map_or(1, |n| n as u64)),
    ];
    match fields.iter().find(|(_, value)| *value == 0) {
        Some((field, _)) => Err(ConfigError::new(*field, "must be at least 1")),
        None => Ok(()),
    }
}

/// Two listeners on one port would fail at start (or one would take the other's traffic):
/// each needs its own, unless both ask for any free port (0).
fn check_listeners(config: &Config) -> Result<(), ConfigError> {
    let listeners = [
        ("api.listen", config.api.listen),
        ("flight.listen", config.flight.listen),
        ("health.listen", config.health.listen),
    ];
    for (i, (field, addr)) in listeners.iter().enumerate() {
        let clash = listeners.iter().take(i).find(|(_, earlier)| {
            earlier.port() == addr.port()
                && addr.port() != 0
                && (earlier.ip() == addr.ip() || earlier.ip().is_unspecified() || addr.ip().is_unspecified())
        });
        if let Some((other, earlier)) = clash {
            return Err(ConfigError::new(
                *field,
                format!("{addr} is the port of {other} ({earlier}): each listener needs its own port"),
            ));
        }
    }
    Ok(())
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

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{listener}.listen {addr}: {source}")]
    Bind { listener: &'static str, addr: SocketAddr, source: std::io::Error },
}

/// Binds all listeners and serves until [`Running::shutdown`].
pub async fn start(prepared: Prepared) -> Result<Running, StartError> {
    let Prepared { config, tls, auth, authz, limits, queries, issuer } = prepared;
    let tls_configs = Arc::new(TlsConfigs::build(&tls)?);
    crate::metrics::certificates(&tls.expiries);
    let (stop, stopped) = watch::channel(false);
    let audit = Auditor::start(&config.audit, &stopped)?;
    let (api, flight) = Pipeline::from_config(
        &config,
        Arc::clone(&auth),
        Arc::clone(&authz),
        (Arc::clone(&limits), Arc::clone(&queries)),
        issuer,
        audit.auditor,
    )?;
    let bind = |addr: SocketAddr, listener: &'static str| async move {
        let bound = TcpListener::bind(addr).await.and_then(|bound| Ok((bound.local_addr()?, bound)));
        bound.map_err(|source| StartError::Bind { listener, addr, source })
    };
    let (api_addr, api_listener) = bind(config.api.listen, "api").await?;
    let (flight_addr, flight_listener) = bind(config.flight.listen, "flight").await?;
    let (health_addr, health_listener) = bind(config.health.listen, "health").await?;

    // Readiness asks the engine behind the API listener, the way requests reach it.
    let ready_upstream = api.upstream().clone();
    let draining = Arc::new(AtomicBool::new(false));
    let grace = Duration::from_secs(config.shutdown.grace_secs);
    let api_tls = Arc::clone(&tls_configs);
    let flight_tls = Arc::clone(&tls_configs);
    // One budget of connections for both TLS listeners: they share the descriptors.
    let max_connections = config.limits.max_connections.unwrap_or_else(crate::listener::default_max_connections);
    let connections = ConnectionLimits::new(max_connections, config.limits.max_connections_per_ip);
    let mut tasks = vec![
        tokio::spawn(serve_tls(
            api_listener,
            Arc::new(api),
            move || api_tls.api.load_full(),
            Serving::new(&config.timeouts, &config.limits, false),
            Arc::clone(&connections),
            grace,
            stopped.clone(),
        )),
        tokio::spawn(serve_tls(
            flight_listener,
            Arc::new(flight),
            move || flight_tls.flight.load_full(),
            Serving::new(&config.timeouts, &config.limits, true),
            connections,
            grace,
            stopped.clone(),
        )),
        tokio::spawn(health::serve(health_listener, ready_upstream, Arc::clone(&draining), stopped.clone())),
        tokio::spawn(reload::watch_tls(config.tls.clone(), Arc::clone(&tls_configs), stopped.clone())),
        tokio::spawn(reload::watch_policies(Arc::clone(&authz), stopped.clone())),
        tokio::spawn(reload::watch_shadow_policies(authz, stopped.clone())),
        tokio::spawn(prune_limits(Arc::clone(&limits), Arc::clone(&queries), stopped.clone())),
    ];
    if let Some(path) = config.source.clone() {
        tasks.push(tokio::spawn(reload::watch_quotas(path, limits, queries, stopped.clone())));
    }
    if let Some(keys) = config.auth.api_keys.clone() {
        tasks.push(tokio::spawn(reload::watch_api_keys(keys, Arc::clone(&auth), stopped.clone())));
    }
    tasks.extend(auth.spawn_refreshers(&stopped));
    tasks.extend(audit.tasks);
    tracing::info!(%api_addr, %flight_addr, %health_addr, max_connections, "gateway listening");
    let drain = Duration::from_secs(config.shutdown.drain_secs);
    Ok(Running { api_addr, flight_addr, health_addr, stop, tasks, audit_writer: audit.writer, draining, drain })
}

/// Keeps the limiters' memory bounded: idle keys are dropped every few seconds.
async fn prune_limits(limits: Arc<RateLimits>, queries: Arc<QueryLimits>, mut stopped: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {
                limits.prune();
                queries.prune();
            }
            _ = stopped.changed() => return,
        }
    }
}

#[cfg(test)]
mod listener_tests {
    use super::*;
    use crate::config::{AuthorizationConfig, StampConfig, TlsConfig};

    #[test]
    fn two_listeners_on_one_port_are_refused_naming_both() {
        let config = |api: &str, flight: &str| {
            let mut config = Config::new(
                TlsConfig::from_files("c.pem", "k.pem"),
                StampConfig::from_key_file("s.pem"),
                AuthorizationConfig::new("p"),
            );
            config.api.listen = api.parse().unwrap();
            config.flight.listen = flight.parse().unwrap();
            config
        };
        let clash = check_listeners(&config("127.0.0.1:8090", "0.0.0.0:8090")).unwrap_err();
        assert_eq!(clash.field, "flight.listen");
        assert!(clash.message.contains("is the port of api.listen (127.0.0.1:8090)"), "{clash}");
        assert!(check_listeners(&config("127.0.0.1:9090", "127.0.0.2:8090")).unwrap_err().field == "health.listen");
        assert!(check_listeners(&config("127.0.0.1:8090", "127.0.0.2:8090")).is_ok());
        assert!(check_listeners(&config("127.0.0.1:0", "127.0.0.1:0")).is_ok());
        assert!(check_listeners(&config("127.0.0.1:8090", "127.0.0.1:50051")).is_ok());
    }
}
