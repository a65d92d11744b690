//! Hot reload of files, for both processes: on SIGHUP, and when a watched file changes, run
//! the caller's reload. A reload that fails is logged and the old version keeps serving (the
//! caller swaps only what loaded whole).

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

/// Watches `files` (their folders: editors and Kubernetes volume updates replace files) and
/// runs `reload` after a change or SIGHUP until `stopped`; `outcome` learns each result (a
/// metric).
pub async fn watch_files<F: Future<Output = Result<(), String>>>(
    files: Vec<PathBuf>,
    what: &'static str,
    reload: impl Fn() -> F,
    outcome: impl Fn(&'static str, bool),
    stopped: watch::Receiver<bool>,
) {
    let mut files: Vec<PathBuf> = files.iter().map(|f| absolute(f)).collect();
    files.sort();
    files.dedup();
    let dirs: Vec<PathBuf> = files.iter().filter_map(|f| f.parent().map(PathBuf::from)).collect();
    let relevant = move |path: &Path| files.iter().any(|w| same_file(path, w));
    watch(dirs, relevant, what, reload, outcome, stopped).await;
}

/// [`watch_files`] for any file in `dirs` that `relevant` names (and Kubernetes' `..data`).
pub async fn watch<F: Future<Output = Result<(), String>>>(
    mut dirs: Vec<PathBuf>,
    relevant: impl Fn(&Path) -> bool + Send + 'static,
    what: &'static str,
    reload: impl Fn() -> F,
    outcome: impl Fn(&'static str, bool),
    mut stopped: watch::Receiver<bool>,
) {
    let (tx, mut rx) = mpsc::channel::<&'static str>(8);
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Reading the files on reload raises access events: only writes, creations, renames
        // and removals count as changes.
        if let Ok(event) = event
            && !matches!(event.kind, notify::EventKind::Access(_))
            && event.paths.iter().any(|p| relevant(p) || is_projection_swap(p))
        {
            let _ = tx.try_send("file change");
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
        match reload().await {
            Ok(()) => {
                outcome(what, true);
                tracing::info!(cause, what, "reloaded");
            }
            Err(error) => {
                outcome(what, false);
                tracing::error!(cause, what, %error, "reload rejected; the previous version keeps serving");
            }
        }
    }
}

/// Watches work on absolute paths: notify names changed files by the watched folder's
/// absolute path, and with a relative `-c gateway.yaml` every file the config names is
/// relative to the working directory (a bare name has no folder to watch at all).
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Kubernetes projects Secret and ConfigMap volumes as `name -> ..data/name`, and updates
/// them by renaming a new `..data` link over the old one: the watched names never change,
/// only `..data` does.
fn is_projection_swap(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == "..data")
}

/// Whether a changed `event_path` is `watched` (notify may name it through another spelling
/// of the same folder).
pub fn same_file(event_path: &Path, watched: &Path) -> bool {
    event_path == watched || event_path.file_name() == watched.file_name() && event_path.parent() == watched.parent()
}
