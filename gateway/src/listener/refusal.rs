//! The closed set of reasons a connection is refused or cut below HTTP.

/// Why a connection was refused or cut below HTTP: a closed set (metric label, audit code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    TlsHandshake,
    /// `limits.max_connections`.
    ConnectionLimit,
    /// `limits.max_connections_per_ip`.
    SourceConnectionLimit,
    /// `timeouts.client_header_secs`.
    HeaderTimeout,
    /// `limits.max_header_bytes` (HTTP/1.1; hyper answered 431).
    HeaderTooLarge,
    /// Not HTTP/1.1 where ALPN chose it, not h2 where h2 was chosen, or h2 broken.
    ProtocolError,
    /// `limits.max_control_frames_per_sec`.
    ControlFrameFlood,
    /// `timeouts.client_write_secs`.
    WriteTimeout,
    /// Idle while the listeners were near `limits.max_connections` (see [`limits`]).
    IdleUnderPressure,
}

impl Refusal {
    pub(crate) fn code(self) -> &'static str {
        match self {
            Refusal::TlsHandshake => "tls_handshake_failed",
            Refusal::ConnectionLimit => "connection_limit",
            Refusal::SourceConnectionLimit => "source_connection_limit",
            Refusal::HeaderTimeout => "header_timeout",
            Refusal::HeaderTooLarge => "header_too_large",
            Refusal::ProtocolError => "protocol_error",
            Refusal::ControlFrameFlood => "control_frame_flood",
            Refusal::WriteTimeout => "write_timeout",
            Refusal::IdleUnderPressure => "idle_under_pressure",
        }
    }

    pub(super) fn message(self) -> &'static str {
        match self {
            Refusal::TlsHandshake => "TLS handshake failed",
            Refusal::ConnectionLimit => "connection refused: the gateway holds limits.max_connections connections",
            Refusal::SourceConnectionLimit => {
                "connection refused: this address holds limits.max_connections_per_ip connections"
            }
            Refusal::HeaderTimeout => "closed: no complete request head within timeouts.client_header_secs",
            Refusal::HeaderTooLarge => "refused: request head over limits.max_header_bytes (431)",
            Refusal::ProtocolError => "closed: protocol error (not the protocol ALPN chose, or malformed)",
            Refusal::ControlFrameFlood => "closed with GOAWAY: HTTP/2 control frames over the budget",
            Refusal::WriteTimeout => "closed: the client did not read its response within timeouts.client_write_secs",
            Refusal::IdleUnderPressure => {
                "closed: idle for a second while the gateway held three quarters of limits.max_connections"
            }
        }
    }
}
