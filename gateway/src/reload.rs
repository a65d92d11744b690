//! Hot reload of certificates, API keys, policies (with the engine's file) and rate-limit
//! quotas: on SIGHUP, and when one of their files changes, load again and swap the new
//! version in (`process::file_watch`). A bad new file is rejected and logged; the old
//! version keeps serving. Open connections are never dropped.

use std::path::PathBuf;
use std::sync::Arc;

use process::file_watch::{absolute, same_file, watch, watch_files};
use tokio::sync::watch;

use crate::auth::Authenticator;
use crate::auth::apikeys::ApiKeys;
use crate::authz::Authorizer;
use crate::config::{ApiKeysConfig, Config, TlsConfig};
use crate::query_limits::QueryLimits;
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
    let reload = move || std::future::ready(load_tls(&tls, &live));
    watch_files(files, "certificates", reload, crate::metrics::reload, stopped).await;
}

/// The API keys file: a removed key stops working, a new one starts, without a restart.
pub(crate) async fn watch_api_keys(keys: ApiKeysConfig, auth: Arc<Authenticator>, stopped: watch::Receiver<bool>) {
    let files: Vec<PathBuf> = keys.file.iter().map(|path| path.to_path_buf()).collect();
    let reload = move || std::future::ready(load_api_keys(&keys, &auth));
    watch_files(files, "api_keys", reload, crate::metrics::reload, stopped).await;
}

/// The policy directory and the engine's file (`authorization.engine_config`, the datasets
/// and columns policies are decided over): any change to the schema, a `*.cedar` file (added
/// ones too), the entities file or the engine's file loads the whole set again; it is
/// validated before it replaces the old one.
pub(crate) async fn watch_policies(authz: Arc<Authorizer>, stopped: watch::Receiver<bool>) {
    let dir = authz.dir().to_path_buf();
    let engine = authz.engine_config().map(absolute);
    watch_policy_dir(dir, engine, "policies", move || authz.reload(), stopped).await;
}

/// The shadow set's folder (`authorization.shadow`), watched and reloaded the same way.
pub(crate) async fn watch_shadow_policies(authz: Arc<Authorizer>, stopped: watch::Receiver<bool>) {
    let Some(dir) = authz.shadow_dir().map(PathBuf::from) else { return };
    let engine = authz.engine_config().map(absolute);
    watch_policy_dir(dir, engine, "shadow_policies", move || authz.reload_shadow(), stopped).await;
}

async fn watch_policy_dir(
    dir: PathBuf,
    engine_config: Option<PathBuf>,
    what: &'static str,
    reload: impl Fn() -> Result<usize, crate::authz::policies::LoadError>,
    stopped: watch::Receiver<bool>,
) {
    let dirs = std::iter::once(dir.clone()).chain(engine_config.iter().filter_map(|f| f.parent().map(PathBuf::from)));
    let dirs = dirs.collect();
    let relevant = move |path: &std::path::Path| {
        let policy_file = path.extension().is_some_and(|e| e == "cedar")
            || path.file_name().is_some_and(|n| {
                n == crate::authz::policies::SCHEMA_FILE || n == crate::authz::policies::ENTITIES_FILE
            });
        policy_file || engine_config.as_deref().is_some_and(|engine| same_file(path, engine))
    };
    let reload = move || {
        std::future::ready(reload().map_err(|e| e.to_string()).map(|count| {
            tracing::info!(policies = count, what, "policies loaded");
        }))
    };
    watch(dirs, relevant, what, reload, crate::metrics::reload, stopped).await;
}

/// The config file's `rate_limits` and `query_limits`: new quotas and tiers on SIGHUP or when the file changes. The rest
/// of the file is read and must be valid, but other sections need a restart.
pub(crate) async fn watch_quotas(
    path: PathBuf,
    limits: Arc<RateLimits>,
    queries: Arc<QueryLimits>,
    stopped: watch::Receiver<bool>,
) {
    let files = vec![path.clone()];
    let reload = move || std::future::ready(load_quotas(&path, &limits, &queries));
    watch_files(files, "rate_limits", reload, crate::metrics::reload, stopped).await;
}

fn load_tls(tls: &TlsConfig, live: &TlsConfigs) -> Result<(), String> {
    let material = TlsMaterial::load(tls).map_err(|e| e.to_string())?;
    live.swap(&material).map_err(|e| e.to_string())?;
    crate::metrics::certificates(&material.expiries);
    Ok(())
}

fn load_api_keys(keys: &ApiKeysConfig, auth: &Authenticator) -> Result<(), String> {
    let loaded = ApiKeys::load(keys).map_err(|e| e.to_string())?;
    tracing::info!(keys = loaded.len(), "API keys loaded");
    auth.replace_api_keys(loaded);
    Ok(())
}

/// Both sections are checked before either is replaced: a bad file changes nothing.
fn load_quotas(path: &std::path::Path, limits: &RateLimits, queries: &QueryLimits) -> Result<(), String> {
    let config = Config::from_file(path).map_err(|e| e.to_string())?;
    QueryLimits::from_config(&config.query_limits).map_err(|e| e.to_string())?;
    limits.replace(&config.rate_limits).map_err(|e| e.to_string())?;
    queries.replace(&config.query_limits).map_err(|e| e.to_string())
}
