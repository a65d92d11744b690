//! Prometheus metrics, served as text on the health listener's `/metrics`.
//!
//! One registry per process (like Prometheus client libraries' default registry): stages
//! record into it without carrying a handle. Label values come from closed sets (listener,
//! known routes, error categories, limiter names, configured issuers), so the number of
//! series stays bounded whatever clients send.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, PoisonError, RwLock};
use std::time::Duration;

/// Upper bounds (seconds) of the upstream latency histogram's buckets.
const LATENCY_BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// Per bucket (not cumulative), then the sum (µs) and count.
struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
}

/// The series of one family, by their labels: adding to a series seen before takes a read
/// lock and an atomic add; only a series' first value takes the write lock. What a request
/// records goes here; the rare families stay in [`Registry`].
struct Family<K, V = AtomicU64> {
    series: RwLock<BTreeMap<K, V>>,
}

impl<K: Ord, V: Default> Family<K, V> {
    const fn new() -> Self {
        Self { series: RwLock::new(BTreeMap::new()) }
    }

    fn with(&self, key: K, f: impl FnOnce(&V)) {
        if let Some(value) = self.series.read().unwrap_or_else(PoisonError::into_inner).get(&key) {
            return f(value);
        }
        let mut series = self.series.write().unwrap_or_else(PoisonError::into_inner);
        f(series.entry(key).or_default());
    }

    fn each(&self, mut f: impl FnMut(&K, &V)) {
        for (key, value) in self.series.read().unwrap_or_else(PoisonError::into_inner).iter() {
            f(key, value);
        }
    }
}

impl<K: Ord> Family<K> {
    fn add(&self, key: K) {
        self.with(key, |n| {
            n.fetch_add(1, Ordering::Relaxed);
        });
    }
}

fn value(n: &AtomicU64) -> u64 {
    n.load(Ordering::Relaxed)
}

static REQUESTS: Family<(&'static str, &'static str, u16)> = Family::new();
/// (route, gRPC status name) → Flight calls.
static GRPC_RESPONSES: Family<(&'static str, &'static str)> = Family::new();
/// Listener → connections accepted, and closed.
static CONNECTIONS: Family<&'static str> = Family::new();
static CONNECTIONS_CLOSED: Family<&'static str> = Family::new();
/// (listener, reason) → TLS handshakes that failed.
static TLS_FAILURES: Family<(&'static str, &'static str)> = Family::new();
/// (listener, reason) → connections refused or cut below HTTP (not TLS failures).
static CONNECTION_REFUSALS: Family<(&'static str, &'static str)> = Family::new();
static AUTH_FAILURES: Family<&'static str> = Family::new();
static BROWSER_SIGN_INS: Family<&'static str> = Family::new();
static DECISIONS: Family<&'static str> = Family::new();
/// (enforced, shadow) → calls the two policy sets decided differently.
static SHADOW_DISAGREEMENTS: Family<(&'static str, &'static str)> = Family::new();
/// `widens` / `rows` / `narrows` → allowed calls whose rows or columns the shadow set decided otherwise.
static SHADOW_DATA_CHANGES: Family<&'static str> = Family::new();
static RATE_LIMITED: Family<&'static str> = Family::new();
static UPSTREAM_LATENCY: Family<&'static str, Histogram> = Family::new();

#[derive(Default)]
struct Registry {
    jwks_refreshes: BTreeMap<(String, &'static str), u64>,
    reloads: BTreeMap<(&'static str, &'static str), u64>,
    audit_bookkeeping: BTreeMap<&'static str, u64>,
    /// (tier, event) → queries.
    query_limits: BTreeMap<(String, &'static str), u64>,
    /// Certificate → its `notAfter` (Unix seconds).
    certificates: BTreeMap<String, i64>,
    /// (sink, outcome) → events.
    audit_events: BTreeMap<(String, &'static str), u64>,
    audit_dropped: BTreeMap<String, u64>,
    audit_queue_depth: usize,
    audit_queue_full: u64,
    audit_spool_bytes: BTreeMap<String, u64>,
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(Mutex::default);

fn with<T>(f: impl FnOnce(&mut Registry) -> T) -> T {
    // A poisoned lock only means another thread panicked mid-update; counters stay usable.
    f(&mut REGISTRY.lock().unwrap_or_else(PoisonError::into_inner))
}

/// One request's outcome: `route` is a known route or RPC name, else `other`.
pub(crate) fn request(listener: &'static str, route: &'static str, status: u16) {
    REQUESTS.add((listener, route, status));
}

/// A Flight call's final gRPC status (see `pipeline::grpc_status`).
pub(crate) fn grpc_response(route: &'static str, status: &'static str) {
    GRPC_RESPONSES.add((route, status));
}

/// An accepted connection: counted open until the guard is dropped.
pub(crate) fn connection_opened(listener: &'static str) -> ConnectionGuard {
    CONNECTIONS.add(listener);
    ConnectionGuard(listener)
}

/// Keeps a connection counted in `gateway_connections_active` while it lives.
#[derive(Debug)]
pub(crate) struct ConnectionGuard(&'static str);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        CONNECTIONS_CLOSED.add(self.0);
    }
}

/// A TLS handshake that failed; `reason` from a closed set (see `server::tls_failure_reason`).
pub(crate) fn tls_failure(listener: &'static str, reason: &'static str) {
    TLS_FAILURES.add((listener, reason));
}

/// A connection refused or cut below HTTP; `reason` from `listener::Refusal::code`.
pub(crate) fn connection_refusal(listener: &'static str, reason: &'static str) {
    CONNECTION_REFUSALS.add((listener, reason));
}

pub(crate) fn auth_failure(reason: &'static str) {
    AUTH_FAILURES.add(reason);
}

/// A browser sign-in's callback: `ok`, or the refusal's code (a closed set: BrowserError).
pub(crate) fn browser_sign_in(result: &'static str) {
    BROWSER_SIGN_INS.add(result);
}

pub(crate) fn decision(allowed: bool) {
    DECISIONS.add(if allowed { "allowed" } else { "denied" });
}

/// A call the shadow policy set decided otherwise than the enforced one (`allow`/`deny` each).
pub(crate) fn shadow_disagreement(enforced: bool, shadow: bool) {
    let name = |allowed: bool| if allowed { "allow" } else { "deny" };
    SHADOW_DISAGREEMENTS.add((name(enforced), name(shadow)));
}

pub(crate) fn shadow_data_change(change: &'static str) {
    SHADOW_DATA_CHANGES.add(change);
}

pub(crate) fn rate_limited(limiter: &'static str) {
    RATE_LIMITED.add(limiter);
}

pub(crate) fn jwks_refresh(issuer: &str, ok: bool) {
    with(|r| *r.jwks_refreshes.entry((issuer.to_string(), if ok { "ok" } else { "error" })).or_default() += 1);
}

/// A session-bookkeeping call counted instead of audited (`audit.session_bookkeeping`).
pub(crate) fn audit_bookkeeping(operation: &'static str) {
    with(|r| *r.audit_bookkeeping.entry(operation).or_default() += 1);
}

/// A query of tier `tier` met a limit: `queued`, `concurrent_queries` (refused),
/// `rows_per_window` (refused), `truncated`, `engine_overran_cap`.
pub(crate) fn query_limit(tier: &str, event: &'static str) {
    with(|r| *r.query_limits.entry((tier.to_string(), event)).or_default() += 1);
}

/// A reload of `what` (`certificates`, `api_keys`, `policies`, `shadow_policies`, `rate_limits`).
pub(crate) fn reload(what: &'static str, ok: bool) {
    with(|r| *r.reloads.entry((what, if ok { "ok" } else { "rejected" })).or_default() += 1);
}

/// The certificates now in use (served chain leaf, CA bundle), replacing the previous set.
pub(crate) fn certificates(expiries: &[(String, i64)]) {
    with(|r| r.certificates = expiries.iter().cloned().collect());
}

pub(crate) fn upstream_latency(listener: &'static str, elapsed: Duration) {
    let secs = elapsed.as_secs_f64();
    UPSTREAM_LATENCY.with(listener, |h| {
        if let Some((_, bucket)) = LATENCY_BUCKETS.iter().zip(&h.buckets).find(|(b, _)| secs <= **b) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        h.sum_us.fetch_add(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
        h.count.fetch_add(1, Ordering::Relaxed);
    });
}

/// Audit events by sink and outcome (`written`, `delivered`, `retried`).
pub(crate) fn audit_events(sink: &str, outcome: &'static str, n: usize) {
    if n > 0 {
        with(|r| *r.audit_events.entry((sink.to_string(), outcome)).or_default() += n as u64);
    }
}

/// Events that could not be kept (must stay zero).
pub(crate) fn audit_dropped(sink: &str, n: usize) {
    with(|r| *r.audit_dropped.entry(sink.to_string()).or_default() += n as u64);
}

pub(crate) fn audit_queue_depth(depth: usize) {
    with(|r| r.audit_queue_depth = depth);
}

/// A request waited for room in the audit queue.
pub(crate) fn audit_queue_full() {
    with(|r| r.audit_queue_full += 1);
}

pub(crate) fn audit_spool_bytes(sink: &str, bytes: u64) {
    with(|r| {
        if let Some(value) = r.audit_spool_bytes.get_mut(sink) {
            *value = bytes;
        } else {
            r.audit_spool_bytes.insert(sink.to_string(), bytes);
        }
    });
}

/// The Prometheus text exposition format (version 0.0.4).
pub fn render(now_unix: i64) -> String {
    let mut out = String::new();
    family(&mut out, "gateway_build_info", "gauge", "The running gateway's version (always 1).");
    let _ = writeln!(
        out,
        "gateway_build_info{{version=\"{}\",crypto_provider=\"aws-lc-rs\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    with(|r| {
        family(&mut out, "gateway_requests_total", "counter", "Requests by listener, route and status.");
        REQUESTS.each(|(listener, route, status), n| {
            let n = value(n);
            let _ = writeln!(
                out,
                "gateway_requests_total{{listener=\"{listener}\",route=\"{route}\",status=\"{status}\"}} {n}"
            );
        });
        family(&mut out, "gateway_grpc_responses_total", "counter", "Flight calls by route and final gRPC status.");
        GRPC_RESPONSES.each(|(route, status), n| {
            let n = value(n);
            let _ = writeln!(out, "gateway_grpc_responses_total{{route=\"{route}\",grpc_status=\"{status}\"}} {n}");
        });
        family(&mut out, "gateway_connections_active", "gauge", "Client connections open now, per listener.");
        CONNECTIONS.each(|listener, total| {
            let mut closed = 0;
            CONNECTIONS_CLOSED.with(listener, |n| closed = value(n));
            let open = value(total).saturating_sub(closed);
            let _ = writeln!(out, "gateway_connections_active{{listener=\"{listener}\"}} {open}");
        });
        family(&mut out, "gateway_connections_total", "counter", "Client connections accepted, per listener.");
        CONNECTIONS.each(|listener, total| {
            let total = value(total);
            let _ = writeln!(out, "gateway_connections_total{{listener=\"{listener}\"}} {total}");
        });
        family(
            &mut out,
            "gateway_tls_handshake_failures_total",
            "counter",
            "Failed TLS handshakes by listener and reason.",
        );
        TLS_FAILURES.each(|(listener, reason), n| {
            let n = value(n);
            let _ = writeln!(
                out,
                "gateway_tls_handshake_failures_total{{listener=\"{listener}\",reason=\"{reason}\"}} {n}"
            );
        });
        family(
            &mut out,
            "gateway_connection_refusals_total",
            "counter",
            "Connections refused or cut below HTTP (limits, deadlines, protocol errors) by listener and reason.",
        );
        CONNECTION_REFUSALS.each(|(listener, reason), n| {
            let n = value(n);
            let _ =
                writeln!(out, "gateway_connection_refusals_total{{listener=\"{listener}\",reason=\"{reason}\"}} {n}");
        });
        family(&mut out, "gateway_auth_failures_total", "counter", "Refused authentications by reason.");
        AUTH_FAILURES.each(|reason, n| {
            let _ = writeln!(out, "gateway_auth_failures_total{{reason=\"{reason}\"}} {}", value(n));
        });
        family(&mut out, "gateway_browser_sign_ins_total", "counter", "Browser sign-in callbacks by result.");
        BROWSER_SIGN_INS.each(|result, n| {
            let _ = writeln!(out, "gateway_browser_sign_ins_total{{result=\"{result}\"}} {}", value(n));
        });
        family(&mut out, "gateway_authz_decisions_total", "counter", "Cedar authorization outcomes.");
        DECISIONS.each(|result, n| {
            let _ = writeln!(out, "gateway_authz_decisions_total{{result=\"{result}\"}} {}", value(n));
        });
        family(
            &mut out,
            "gateway_authz_shadow_disagreements_total",
            "counter",
            "Calls the shadow policy set decided otherwise than the enforced one.",
        );
        SHADOW_DISAGREEMENTS.each(|(enforced, shadow), n| {
            let _ = writeln!(
                out,
                "gateway_authz_shadow_disagreements_total{{enforced=\"{enforced}\",shadow=\"{shadow}\"}} {}",
                value(n)
            );
        });
        family(
            &mut out,
            "gateway_authz_shadow_data_changes_total",
            "counter",
            "Allowed calls whose rows or columns the shadow policy set decided otherwise.",
        );
        SHADOW_DATA_CHANGES.each(|change, n| {
            let _ = writeln!(out, "gateway_authz_shadow_data_changes_total{{change=\"{change}\"}} {}", value(n));
        });
        family(&mut out, "gateway_rate_limited_total", "counter", "Requests refused by a rate limiter.");
        RATE_LIMITED.each(|limiter, n| {
            let _ = writeln!(out, "gateway_rate_limited_total{{limiter=\"{limiter}\"}} {}", value(n));
        });
        family(&mut out, "gateway_jwks_refreshes_total", "counter", "OIDC key set fetches by issuer and result.");
        for ((issuer, result), n) in &r.jwks_refreshes {
            let issuer = escape(issuer);
            let _ = writeln!(out, "gateway_jwks_refreshes_total{{issuer=\"{issuer}\",result=\"{result}\"}} {n}");
        }
        family(
            &mut out,
            "gateway_reloads_total",
            "counter",
            "Reloads of certificates, API keys and policies by result.",
        );
        for ((what, result), n) in &r.reloads {
            let _ = writeln!(out, "gateway_reloads_total{{what=\"{what}\",result=\"{result}\"}} {n}");
        }
        family(
            &mut out,
            "gateway_audit_bookkeeping_total",
            "counter",
            "Successful Flight SQL session-bookkeeping calls counted instead of audited, by operation.",
        );
        for (operation, n) in &r.audit_bookkeeping {
            let _ = writeln!(out, "gateway_audit_bookkeeping_total{{operation=\"{operation}\"}} {n}");
        }
        family(
            &mut out,
            "gateway_query_limits_total",
            "counter",
            "Queries that met a per-caller limit, by tier and event (queued, refused, truncated).",
        );
        for ((tier, event), n) in &r.query_limits {
            let tier = escape(tier);
            let _ = writeln!(out, "gateway_query_limits_total{{tier=\"{tier}\",event=\"{event}\"}} {n}");
        }
        family(
            &mut out,
            "gateway_certificate_expiry_seconds",
            "gauge",
            "Seconds until each served and CA certificate expires.",
        );
        for (certificate, not_after) in &r.certificates {
            let certificate = escape(certificate);
            let _ = writeln!(
                out,
                "gateway_certificate_expiry_seconds{{certificate=\"{certificate}\"}} {}",
                not_after - now_unix
            );
        }
        family(&mut out, "gateway_audit_events_total", "counter", "Audit events by sink and outcome.");
        for ((sink, outcome), n) in &r.audit_events {
            let sink = escape(sink);
            let _ = writeln!(out, "gateway_audit_events_total{{sink=\"{sink}\",outcome=\"{outcome}\"}} {n}");
        }
        family(&mut out, "gateway_audit_dropped_total", "counter", "Audit events lost (must stay zero).");
        let _ = writeln!(out, "gateway_audit_dropped_total {}", r.audit_dropped.values().sum::<u64>());
        for (sink, n) in &r.audit_dropped {
            let sink = escape(sink);
            let _ = writeln!(out, "gateway_audit_dropped_total{{sink=\"{sink}\"}} {n}");
        }
        family(&mut out, "gateway_audit_queue_depth", "gauge", "Audit records waiting for the writer.");
        let _ = writeln!(out, "gateway_audit_queue_depth {}", r.audit_queue_depth);
        family(
            &mut out,
            "gateway_audit_queue_full_total",
            "counter",
            "Requests that waited for room in the audit queue.",
        );
        let _ = writeln!(out, "gateway_audit_queue_full_total {}", r.audit_queue_full);
        family(
            &mut out,
            "gateway_audit_spool_bytes",
            "gauge",
            "Bytes spooled on disk and not yet delivered, per network sink.",
        );
        for (sink, n) in &r.audit_spool_bytes {
            let sink = escape(sink);
            let _ = writeln!(out, "gateway_audit_spool_bytes{{sink=\"{sink}\"}} {n}");
        }
        family(&mut out, "gateway_upstream_latency_seconds", "histogram", "Time to the engine's response headers.");
        UPSTREAM_LATENCY.each(|listener, h| {
            let mut cumulative = 0;
            for (bound, n) in LATENCY_BUCKETS.iter().zip(&h.buckets) {
                cumulative += value(n);
                let _ = writeln!(
                    out,
                    "gateway_upstream_latency_seconds_bucket{{listener=\"{listener}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "gateway_upstream_latency_seconds_bucket{{listener=\"{listener}\",le=\"+Inf\"}} {}\n\
                 gateway_upstream_latency_seconds_sum{{listener=\"{listener}\"}} {}\n\
                 gateway_upstream_latency_seconds_count{{listener=\"{listener}\"}} {}",
                value(&h.count),
                value(&h.sum_us) as f64 / 1e6,
                value(&h.count)
            );
        });
    });
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value as the text format wants it: `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
