//! Hot reload of certificates, API keys, policies and rate-limit quotas: on SIGHUP, and when one of their files changes,
//! load again and swap the new version in. A bad new file is rejected and logged; the old
//! version keeps serving. Open connections are never dropped.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

use crate::auth::Authenticator;
use crate::auth::apikeys::ApiKeys;
use crate::authz::Authorizer;
use crate::config::{ApiKeysConfig, Config, TlsConfig};
use crate::ratelimit::RateLimits;
use crate::tls::TlsConfigs;
use crate::tls::TlsMaterial;

/// Certificates, keys, CA bundle and CRLs, for new connections.
pub(crate) async fn watch_tls(tls: TlsConfig, live: Arc<TlsConfigs>, stopped: watch::Receiver<bool>) {
    let files: Vec<PathBuf> = [&tls.certificate_file, &tls.key_file, &tls.client_ca_file]
        .into_iter()
        .flatten()
        .chain(&tls.crl_files)
        .map(|path| path.to_path_buf())
        .collect();
    let reload = move || {
        let material = TlsMaterial::load(&tls).map_err(|e| e.to_string())?;
        live.swap(&material).map_err(|e| e.to_string())?;
        crate::metrics::certificates(&material.expiries);
        Ok(())
    };
    watch_files(files, "certificates", reload, stopped).await;
}

/// The API keys file: a removed key stops working, a new one starts, without a restart.
pub(crate) async fn watch_api_keys(keys: ApiKeysConfig, auth: Arc<Authenticator>, stopped: watch::Receiver<bool>) {
    let files: Vec<PathBuf> = keys.file.iter().map(|path| path.to_path_buf()).collect();
    let reload = move || {
        let loaded = ApiKeys::load(&keys).map_err(|e| e.to_string())?;
        tracing::info!(keys = loaded.len(), "API keys loaded");
        auth.replace_api_keys(loaded);
        Ok(())
    };
    watch_files(files, "api_keys", reload, stopped).await;
}

/// The policy directory: any change to the schema, a `*.cedar` file (added ones too) or the
/// entities file loads the whole set again; it is validated before it replaces the old one.
pub(crate) async fn watch_policies(authz: Arc<Authorizer>, stopped: watch::Receiver<bool>) {
    let dir = authz.dir().to_path_buf();
    watch_policy_dir(dir, "policies", move || authz.reload(), stopped).await;
}

/// The shadow set's folder (`authorization.shadow`), watched and reloaded the same way.
pub(crate) async fn watch_shadow_policies(authz: Arc<Authorizer>, stopped: watch::Receiver<bool>) {
    let Some(dir) = authz.shadow_dir().map(PathBuf::from) else { return };
    watch_policy_dir(dir, "shadow_policies", move || authz.reload_shadow(), stopped).await;
}

async fn watch_policy_dir(
    dir: PathBuf,
    what: &'static str,
    reload: impl Fn() -> Result<usize, crate::authz::policies::LoadError>,
    stopped: watch::Receiver<bool>,
) {
    let relevant = |path: &std::path::Path| {
        path.extension().is_some_and(|e| e == "cedar")
            || path
                .file_name()
                .is_some_and(|n| n == crate::authz::policies::SCHEMA_FILE || n == crate::authz::policies::ENTITIES_FILE)
    };
    let reload = move || {
        let count = reload().map_err(|e| e.to_string())?;
        tracing::info!(policies = count, what, "policies loaded");
        Ok(())
    };
    watch(vec![dir], relevant, what, reload, stopped).await;
}

/// The config file's `rate_limits`: new quotas on SIGHUP or when the file changes. The rest
/// of the file is read and must be valid, but other sections need a restart.
pub(crate) async fn watch_quotas(path: PathBuf, limits: Arc<RateLimits>, stopped: watch::Receiver<bool>) {
    let files = vec![path.clone()];
    let reload = move || {
        let config = Config::from_file(&path).map_err(|e| e.to_string())?;
        limits.replace(&config.rate_limits).map_err(|e| e.to_string())
    };
    watch_files(files, "rate_limits", reload, stopped).await;
}

/// Watches work on absolute paths: notify names changed files by the watched folder's
/// absolute path, and with a relative `-c gateway.yaml` every file the config names is
/// relative to the working directory (a bare name has no folder to watch at all).
fn absolute(path: &std::path::Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

async fn watch_files(
    files: Vec<PathBuf>,
    what: &'static str,
    reload: impl Fn() -> Result<(), String>,
    stopped: watch::Receiver<bool>,
) {
    let mut files: Vec<PathBuf> = files.iter().map(|f| absolute(f)).collect();
    files.sort();
    files.dedup();
    let dirs: Vec<PathBuf> = files.iter().filter_map(|f| f.parent().map(PathBuf::from)).collect();
    let relevant = move |path: &std::path::Path| files.iter().any(|w| same_file(path, w));
    watch(dirs, relevant, what, reload, stopped).await;
}

async fn watch(
    mut dirs: Vec<PathBuf>,
    relevant: impl Fn(&std::path::Path) -> bool + Send + 'static,
    what: &'static str,
    reload: impl Fn() -> Result<(), String>,
    mut stopped: watch::Receiver<bool>,
) {
    let (tx, mut rx) = mpsc::channel::<&'static str>(8);
    // File changes: watch the folders (editors and `kubectl` secret updates replace files).
    let file_tx = tx.clone();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Reading the files on reload raises access events: only writes, creations, renames
        // and removals count as changes.
        if let Ok(event) = event
            && !matches!(event.kind, notify::EventKind::Access(_))
            && event.paths.iter().any(|p| relevant(p) || is_projection_swap(p))
        {
            let _ = file_tx.try_send("file change");
        }
    });
    let _watcher = match watcher {
        Ok(mut watcher) => {
            dirs = dirs.iter().map(|d| absolute(d)).collect();
            dirs.sort();
            dirs.dedup();
            for dir in dirs {
                if let Err(error) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
                    tracing::warn!(dir = %dir.display(), %error, what, "cannot watch for changes");
                }
            }
            Some(watcher)
        }
        Err(error) => {
            tracing::warn!(%error, what, "file watching unavailable; reload with SIGHUP");
            None
        }
    };
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        #[cfg(unix)]
        let sighup = async {
            match hangup.as_mut() {
                Some(signal) => signal.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let sighup = std::future::pending::<Option<()>>();
        let cause = tokio::select! {
            Some(cause) = rx.recv() => cause,
            _ = sighup => "SIGHUP",
            _ = stopped.changed() => return,
        };
        // Let a burst of writes (cert then key) settle before reading.
        tokio::time::sleep(Duration::from_millis(200)).await;
        while rx.try_recv().is_ok() {}
        match reload() {
            Ok(()) => {
                crate::metrics::reload(what, true);
                tracing::info!(cause, what, "reloaded");
            }
            Err(error) => {
                crate::metrics::reload(what, false);
                tracing::error!(cause, what, %error, "reload rejected; the previous version keeps serving");
            }
        }
    }
}

/// Kubernetes projects Secret and ConfigMap volumes as `name -> ..data/name`, and updates
/// them by renaming a new `..data` link over the old one: the watched names never change,
/// only `..data` does.
fn is_projection_swap(path: &std::path::Path) -> bool {
    path.file_name().is_some_and(|n| n == "..data")
}

fn same_file(event_path: &std::path::Path, watched: &std::path::Path) -> bool {
    event_path == watched || event_path.file_name() == watched.file_name() && event_path.parent() == watched.parent()
}
