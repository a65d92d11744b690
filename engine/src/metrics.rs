//! The engine's own counters, on `GET /metrics` of its (loopback) HTTP listener, in the
//! Prometheus text format: the reloads of its file. Queries are counted by the gateway.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

static RELOADS_OK: AtomicU64 = AtomicU64::new(0);
static RELOADS_REJECTED: AtomicU64 = AtomicU64::new(0);

/// A reload of the engine's file, served (`ok`) or refused.
pub(crate) fn reload(ok: bool) {
    let counter = if ok { &RELOADS_OK } else { &RELOADS_REJECTED };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The metrics page.
pub(crate) fn page() -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# HELP engine_reloads_total Reloads of the engine's file by result.");
    let _ = writeln!(out, "# TYPE engine_reloads_total counter");
    for (result, counter) in [("ok", &RELOADS_OK), ("rejected", &RELOADS_REJECTED)] {
        let n = counter.load(Ordering::Relaxed);
        let _ = writeln!(out, "engine_reloads_total{{what=\"engine_config\",result=\"{result}\"}} {n}");
    }
    out
}
