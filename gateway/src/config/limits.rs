//! `timeouts`, `limits`, `shutdown` and `runtime`: how long and how much a client may take,
//! what SIGTERM does, and how many threads serve. Each section's `Default` is the one source of its defaults.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// From accept to the end of the first request's head: the TLS handshake and the request
    /// line and headers (HTTP/1.1) or the first HEADERS (h2). Later HTTP/1.1 requests on the
    /// connection get as long for their head, from their first byte.
    pub client_header_secs: u64,
    /// A connection with no request in flight is closed after this long (h2 with GOAWAY).
    pub idle_secs: u64,
    /// Time to read what authorization needs: the SQL body of `POST /v1/sql`, or a Flight
    /// call's first gRPC message (408 / DEADLINE_EXCEEDED).
    pub client_body_secs: u64,
    /// A streamed body (request or response) that yields nothing for this long is cut off.
    pub stream_idle_secs: u64,
    /// A response the client does not read for this long: the connection is closed.
    pub client_write_secs: u64,
    pub upstream_connect_secs: u64,
    /// Time until the upstream's response headers (the body then streams, see
    /// `stream_idle_secs`).
    pub upstream_response_secs: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            client_header_secs: 10,
            idle_secs: 60,
            client_body_secs: 30,
            stream_idle_secs: 300,
            client_write_secs: 60,
            upstream_connect_secs: 5,
            upstream_response_secs: 300,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request header block.
    pub max_header_bytes: usize,
    /// Largest request body on the API listener (SQL text).
    pub max_api_body_bytes: usize,
    /// Client connections open at once, both TLS listeners together. Unset: derived from the
    /// process's open-file limit (half of it, less a reserve, since each client connection
    /// can hold one to the engine). Connections past it are closed before the TLS handshake.
    pub max_connections: Option<usize>,
    /// Client connections open at once from one source IP address.
    pub max_connections_per_ip: usize,
    /// Concurrent HTTP/2 streams per connection (SETTINGS_MAX_CONCURRENT_STREAMS).
    pub max_streams_per_connection: u32,
    /// HTTP/2 control frames (SETTINGS, PING, WINDOW_UPDATE, PRIORITY, RST_STREAM) a client
    /// may send per second, plus one per KiB the gateway sent it; past that the connection
    /// gets GOAWAY and is closed.
    pub max_control_frames_per_sec: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: 64 * 1024,
            max_api_body_bytes: 16 * 1024 * 1024,
            max_connections: None,
            max_connections_per_ip: 256,
            max_streams_per_connection: 128,
            max_control_frames_per_sec: 1000,
        }
    }
}

/// SIGTERM (or Ctrl-C): first `/readyz` answers 503 while every listener keeps serving for
/// `drain_secs`, so Kubernetes and load balancers stop routing new requests here; then the
/// listeners close (HTTP/2 clients get GOAWAY, HTTP/1.1 keep-alive ends after the current
/// response) and requests and streams in flight get `grace_secs` to finish. A second signal
/// skips what is left of the drain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    pub drain_secs: u64,
    pub grace_secs: u64,
}

impl ShutdownConfig {
    /// No drain: for a process nothing routes to through a load balancer (a development stack,
    /// a test).
    pub fn immediate() -> Self {
        Self { drain_secs: 0, ..Self::default() }
    }
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self { drain_secs: 5, grace_secs: 25 }
    }
}

/// The async runtime that serves every listener.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Threads serving connections (like Envoy's `--concurrency` or HAProxy's `nbthread`).
    /// Unset: one per CPU the process may run on. The audit writer has its own thread.
    pub worker_threads: Option<usize>,
}
