//! Starts the engine: builds the catalog, binds both listeners, serves until shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::caller::Authenticator;
use crate::config::Config;
use crate::flight::handles::HandleStore;
use crate::http::Shared;
use crate::query::QueryEngine;
use crate::{flight, http};

/// A started engine: its bound addresses and a handle to stop it.
#[derive(Debug)]
pub struct Running {
    pub http_addr: SocketAddr,
    pub flight_addr: SocketAddr,
    engine: Arc<QueryEngine>,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Serves the datasets, views and columns of the file at `path` again whenever it
    /// changes (a Kubernetes ConfigMap update included) or on SIGHUP; a file that does not
    /// load whole is logged and the current version keeps serving ([`QueryEngine::reload`]).
    pub fn reload_on_change(&mut self, path: PathBuf) {
        let engine = Arc::clone(&self.engine);
        let file = path.clone();
        let reload = move || {
            let (engine, file) = (Arc::clone(&engine), file.clone());
            async move {
                let config = Config::from_file(&file).map_err(|e| e.to_string())?;
                engine.reload(&config).await
            }
        };
        let watching = process::file_watch::watch_files(
            vec![path],
            "engine_config",
            reload,
            |_, ok| crate::metrics::reload(ok),
            self.stop.subscribe(),
        );
        self.tasks.push(tokio::spawn(watching));
    }

    /// Stops accepting, lets open requests finish (up to a few seconds), and returns.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Builds the engine from `config` and starts serving on its listen addresses.
pub async fn start(config: &Config, auth: Authenticator) -> Result<Running, String> {
    let engine = Arc::new(QueryEngine::new(config).await?);
    let auth = Arc::new(auth);
    let http_listener =
        TcpListener::bind(config.http_listen).await.map_err(|e| format!("http_listen {}: {e}", config.http_listen))?;
    let flight_listener = TcpListener::bind(config.flight_listen)
        .await
        .map_err(|e| format!("flight_listen {}: {e}", config.flight_listen))?;
    let http_addr = http_listener.local_addr().map_err(|e| e.to_string())?;
    let flight_addr = flight_listener.local_addr().map_err(|e| e.to_string())?;
    for addr in [http_addr, flight_addr] {
        if !addr.ip().is_loopback() {
            tracing::warn!(%addr, "listening beyond loopback: only the gateway should reach the engine");
        }
    }

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let shared =
        Arc::new(Shared { engine: Arc::clone(&engine), auth: Arc::clone(&auth), limits: config.limits.clone() });
    let http_task = tokio::spawn(serve_http(http_listener, shared, stopped.clone()));

    let handles =
        HandleStore::new(config.limits.max_flight_handles, Duration::from_secs(config.limits.flight_handle_ttl_secs));
    let engine_handle = Arc::clone(&engine);
    let service =
        flight::service(engine, auth, handles, config.limits.flight_handle_ttl_secs).map_err(|e| e.to_string())?;
    let mut flight_stopped = stopped;
    let flight_task = tokio::spawn(async move {
        let result = tonic::transport::Server::builder()
            .layer(tower::util::MapResponseLayer::new(flight::readable_status))
            .layer(tower::util::MapResponseLayer::new(flight::result_trailers::add))
            .add_service(service)
            .serve_with_incoming_shutdown(
                // Small request/response RPCs must not wait on Nagle's algorithm.
                TcpListenerStream::new(flight_listener).map_ok(|stream| {
                    let _ = stream.set_nodelay(true);
                    stream
                }),
                async move {
                    let _ = flight_stopped.wait_for(|s| *s).await;
                },
            )
            .await;
        if let Err(error) = result {
            tracing::error!(%error, "Flight server stopped");
        }
    });
    tracing::info!(%http_addr, %flight_addr, "engine listening");
    Ok(Running { http_addr, flight_addr, engine: engine_handle, stop, tasks: vec![http_task, flight_task] })
}

async fn serve_http(listener: TcpListener, shared: Arc<Shared>, mut stopped: tokio::sync::watch::Receiver<bool>) {
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            (stream, _) = process::accept(&listener) => {
                let _ = stream.set_nodelay(true);
                let shared = Arc::clone(&shared);
                let service = hyper::service::service_fn(move |request| http::handle(Arc::clone(&shared), request));
                let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                let connection = graceful.watch(connection.into_owned());
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%error, "HTTP connection ended with an error");
                    }
                });
            }
            _ = stopped.changed() => break,
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
}
