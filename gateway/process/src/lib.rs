//! What the gateway and the engine do alike as processes. Small on purpose (tokio, tracing
//! and notify only), so both binaries share it without sharing anything heavy.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

mod clock;
pub mod file_watch;
mod memory;
pub use clock::{unix_millis, unix_secs};
pub use memory::memory_limit;

/// Stack of every runtime thread, both processes: a statement within the `complexity` bounds
/// still builds trees that parsers, planners and destructors walk recursively, and debug
/// builds spend several times a release build's stack per level. Only what a thread touches
/// is committed, so the reservation costs address space, not memory.
pub const THREAD_STACK_BYTES: usize = 8 * 1024 * 1024;

/// Targets held at WARN whatever `RUST_LOG` says: Ballista's scheduler logs every job's
/// plan at INFO, and in cluster mode a plan carries the caller's identity, folded into it.
const QUIET: &[&str] = &["ballista_scheduler::state::task_manager=warn"];

/// Logs to stderr, filtered by `RUST_LOG` (default `info`), coloured only on a terminal.
pub fn init_logging() {
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    for directive in QUIET {
        if let Ok(directive) = directive.parse() {
            filter = filter.add_directive(directive);
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM. The handlers are installed when this is called,
/// not when the future is first polled: a signal right after startup (a pod stopped as it
/// comes up, a script) then shuts down cleanly instead of killing the process. Call it
/// inside the runtime, before serving.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let handlers = {
        use tokio::signal::unix::{SignalKind, signal};
        signal(SignalKind::terminate()).ok().zip(signal(SignalKind::interrupt()).ok())
    };
    async move {
        #[cfg(unix)]
        if let Some((mut term, mut interrupt)) = handlers {
            tokio::select! {
                _ = term.recv() => {}
                _ = interrupt.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The next connection. Accept errors (EMFILE, ENFILE, ENOBUFS, a connection reset before
/// it was accepted) back off 50 ms instead of spinning, and are logged at most every 10 s
/// with how many there were.
pub async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    static ERRORS: AtomicU64 = AtomicU64::new(0);
    static LOGGED_AT_MS: AtomicU64 = AtomicU64::new(0);
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(error) => {
                let errors = ERRORS.fetch_add(1, Ordering::Relaxed) + 1;
                let now = u64::try_from(unix_millis()).unwrap_or(0);
                if now.saturating_sub(LOGGED_AT_MS.load(Ordering::Relaxed)) >= 10_000 {
                    LOGGED_AT_MS.store(now, Ordering::Relaxed);
                    tracing::warn!(%error, errors_so_far = errors, "accept failed; backing off");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
