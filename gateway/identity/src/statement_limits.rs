//! What the gateway allows one caller's statement to take, carried in the stamp's `limits`
//! claim for the engine to enforce (the gateway keeps the limits it can hold itself:
//! concurrency and the rows-per-window budget).

use serde::{Deserialize, Serialize};

/// The engine-enforced limits of one caller's statements; each absent field is the engine's
/// own default (or no limit).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatementLimits {
    /// Which configured tier these came from (`default`, `group:<name>` or `principal`),
    /// for the engine's metrics and errors; never a principal's id.
    pub tier: String,
    /// Stop the statement after this many seconds (the engine's own timeout still applies
    /// when it is shorter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement_timeout_secs: Option<u64>,
    /// The share of the engine's memory pool one statement may hold, in percent (1 to 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_percent: Option<u8>,
    /// Rows one result may have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_result_rows: Option<u64>,
    /// Bytes of Arrow data one result may have (the rows' size before encoding, the same on
    /// every protocol).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_result_bytes: Option<u64>,
    /// What a result over a cap does.
    #[serde(default)]
    pub on_exceed: OnExceed,
}

impl StatementLimits {
    /// Whether a result is capped (rows or bytes).
    pub fn caps_result(&self) -> bool {
        self.max_result_rows.is_some() || self.max_result_bytes.is_some()
    }
}

/// What a result larger than its cap does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnExceed {
    /// The result ends at the cap, flagged (the `portcullis-truncated` header or trailer,
    /// Flight `app_metadata`, the audit event).
    #[default]
    Truncate,
    /// The statement fails with `result_limit`.
    Fail,
}

/// Response header (HTTP) and trailer (gRPC) naming the cap a truncated result hit:
/// `max_result_rows` or `max_result_bytes`.
pub const TRUNCATED_HEADER: &str = "portcullis-truncated";
