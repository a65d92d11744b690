//! `audit`: where SIEM events go and what happens when they cannot be written. Off (no sinks)
//! unless configured.

use serde::Deserialize;

use super::path::ConfigPath;
use super::reference::Reference;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// `deny`: refuse requests (503) while an event cannot be written; `allow`: keep serving.
    pub on_failure: OnAuditFailure,
    /// SQL text in events: `full`, `hashed` (SHA-256) or `off`.
    pub sql: SqlInAudit,
    /// Events waiting for the writer; past it, requests wait (nothing is dropped).
    pub queue_capacity: usize,
    /// Network sinks' on-disk spool (one folder per sink). Required with a network sink.
    pub spool_dir: Option<ConfigPath>,
    /// Per network sink; past it, events for that sink are dropped (`allow`) or requests
    /// refused (`deny`).
    pub spool_max_bytes: u64,
    /// A successful sign-in event per principal, method and source IP at most this often
    /// (0: one per request). Failures are always recorded.
    pub signin_interval_secs: u64,
    /// Connection refusals below HTTP (TLS failures, connection limits, header deadlines,
    /// HTTP/2 protocol errors): the first per source and reason at once, the rest as one
    /// event per source and reason per interval, with their count.
    pub refusal_interval_secs: u64,
    /// A security finding when one source IP gets this many 401/403 within `window_secs`.
    pub finding: FindingConfig,
    /// Flight SQL calls that decide nothing about data and that clients make on their own
    /// (closing a prepared statement or the session, reading the session's options, the
    /// server's SqlInfo):
    /// `counted` (a metric per operation, no event when they succeed) or `events` (an event
    /// each). A refused or failed one is always an event.
    pub session_bookkeeping: SessionBookkeeping,
    pub sinks: Vec<SinkConfig>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            on_failure: OnAuditFailure::default(),
            sql: SqlInAudit::default(),
            queue_capacity: 65_536,
            spool_dir: None,
            spool_max_bytes: 1 << 30,
            signin_interval_secs: 300,
            refusal_interval_secs: 10,
            finding: FindingConfig::default(),
            session_bookkeeping: SessionBookkeeping::default(),
            sinks: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnAuditFailure {
    #[default]
    Deny,
    Allow,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionBookkeeping {
    #[default]
    Counted,
    Events,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SqlInAudit {
    #[default]
    Full,
    Hashed,
    Off,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FindingConfig {
    /// 0 turns findings off.
    pub threshold: u32,
    pub window_secs: u64,
}

impl Default for FindingConfig {
    fn default() -> Self {
        Self { threshold: 20, window_secs: 60 }
    }
}

/// One destination for events; several may be configured at once.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SinkConfig {
    Stdout,
    File {
        path: ConfigPath,
        /// Rotate when the file would grow past this.
        #[serde(default = "SinkConfig::default_file_max_bytes")]
        max_bytes: u64,
        /// Rotated files kept (`PATH.1` newest … `PATH.N`).
        #[serde(default = "SinkConfig::default_file_keep")]
        keep: usize,
        #[serde(default)]
        fsync: FsyncPolicy,
    },
    Syslog {
        /// `host:port` of an RFC 5424 receiver over TCP (octet-counted framing, RFC 6587).
        address: String,
        /// TLS (RFC 5425) verified against this CA bundle; plain TCP when absent.
        #[serde(default)]
        tls_ca_file: Option<ConfigPath>,
        /// The name checked against the receiver's certificate (default: the host).
        #[serde(default)]
        tls_server_name: Option<String>,
        /// RFC 5424 facility; 13 is "log audit".
        #[serde(default = "SinkConfig::default_syslog_facility")]
        facility: u8,
        #[serde(default = "SinkConfig::default_syslog_app_name")]
        app_name: String,
    },
    Http {
        url: String,
        /// `json` (a JSON array of events per POST) or `splunk_hec`.
        #[serde(default)]
        format: HttpFormat,
        /// Sent as `Authorization: Splunk TOKEN` (HEC) or `Bearer TOKEN` (json); use
        /// `${env:NAME}` or `${file:PATH}`.
        #[serde(default)]
        token: Option<Reference>,
        /// More trust anchors for an https receiver with a private CA.
        #[serde(default)]
        ca_file: Option<ConfigPath>,
        #[serde(default = "SinkConfig::default_http_batch_events")]
        batch_events: usize,
        #[serde(default = "SinkConfig::default_http_max_backoff_secs")]
        max_backoff_secs: u64,
    },
}

impl SinkConfig {
    /// A file sink at `path` with the default rotation.
    pub fn file(path: impl Into<ConfigPath>, fsync: FsyncPolicy) -> Self {
        SinkConfig::File {
            path: path.into(),
            max_bytes: Self::default_file_max_bytes(),
            keep: Self::default_file_keep(),
            fsync,
        }
    }

    /// Network sinks go through the spool; local ones are written by the writer thread.
    pub fn is_network(&self) -> bool {
        matches!(self, SinkConfig::Syslog { .. } | SinkConfig::Http { .. })
    }

    // The defaults of the fields a sink may leave out (each sink has a field it may not, so
    // none has a `Default`): used by serde and by `file`.
    fn default_file_max_bytes() -> u64 {
        100 << 20
    }
    fn default_file_keep() -> usize {
        5
    }
    fn default_syslog_facility() -> u8 {
        13
    }
    fn default_syslog_app_name() -> String {
        "portcullis".into()
    }
    fn default_http_batch_events() -> usize {
        500
    }
    fn default_http_max_backoff_secs() -> u64 {
        30
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// After every batch the writer takes from the queue (durable on return).
    #[default]
    Batch,
    /// About once a second.
    Interval,
    /// Left to the OS.
    Never,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpFormat {
    #[default]
    Json,
    SplunkHec,
}
