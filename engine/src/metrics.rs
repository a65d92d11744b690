//! The engine's own counters, on `GET /metrics` of its (loopback) HTTP listener, in the
//! Prometheus text format: the reloads of its file, and the statements a caller's limit
//! stopped, truncated or failed. Queries are counted by the gateway.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

static RELOADS_OK: AtomicU64 = AtomicU64::new(0);
static RELOADS_REJECTED: AtomicU64 = AtomicU64::new(0);

/// A reload of the engine's file, served (`ok`) or refused.
pub(crate) fn reload(ok: bool) {
    let counter = if ok { &RELOADS_OK } else { &RELOADS_REJECTED };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Statements a caller's limit applied to, by tier and limit. The tiers are the gateway's
/// configured ones (`default`, `group:<name>`, `principal`), so the labels stay few.
static LIMITS_APPLIED: Mutex<BTreeMap<(String, &'static str), u64>> = Mutex::new(BTreeMap::new());

/// A statement of tier `tier` met `limit` (`statement_timeout_secs`, `memory_percent`,
/// `max_result_rows`, `max_result_bytes`).
pub(crate) fn limit_applied(tier: &str, limit: &'static str) {
    let mut applied = LIMITS_APPLIED.lock().unwrap_or_else(PoisonError::into_inner);
    *applied.entry((tier.to_string(), limit)).or_default() += 1;
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
    let _ =
        writeln!(out, "# HELP engine_statement_limits_total Statements a caller's limit stopped, failed or truncated.");
    let _ = writeln!(out, "# TYPE engine_statement_limits_total counter");
    for ((tier, limit), n) in LIMITS_APPLIED.lock().unwrap_or_else(PoisonError::into_inner).iter() {
        let tier = tier.replace(['\\', '"', '\n'], "_");
        let _ = writeln!(out, "engine_statement_limits_total{{tier=\"{tier}\",limit=\"{limit}\"}} {n}");
    }
    out
}
