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

/// The engine's header (HTTP) or status metadata (gRPC) on an error a caller's limit caused,
/// naming the limit, for the gateway's metrics and audit event (the client never sees it).
pub const LIMIT_HEADER: &str = "x-portcullis-limit";

/// The caller limits an error can name, each as `<limit> of tier <tier>` in its message.
pub const STATEMENT_LIMITS: [&str; 4] =
    ["statement_timeout_secs", "memory_percent", "max_result_rows", "max_result_bytes"];

impl StatementLimits {
    /// The limit a [`LIMIT_HEADER`] value names (the static name), if it names one.
    pub fn named(value: &[u8]) -> Option<&'static str> {
        STATEMENT_LIMITS.into_iter().find(|limit| value == limit.as_bytes())
    }

    /// The caller limit an engine error's `message` says tripped, if any.
    pub fn tripped(message: &str) -> Option<&'static str> {
        STATEMENT_LIMITS.into_iter().find(|limit| {
            message.match_indices(limit).any(|(at, _)| message[at + limit.len()..].starts_with(" of tier "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_names_the_limit_that_tripped_only_as_the_engine_words_it() {
        let timeout = "the statement ran longer than statement_timeout_secs of tier group:a (1 s) and was stopped";
        assert_eq!(StatementLimits::tripped(timeout), Some("statement_timeout_secs"));
        let memory = "needs more than its memory share (5 bytes, memory_percent of tier default)";
        assert_eq!(StatementLimits::tripped(memory), Some("memory_percent"));
        let engine_wide = "the statement ran longer than limits.statement_timeout_secs (300 s) and was stopped";
        assert_eq!(StatementLimits::tripped(engine_wide), None);
        assert_eq!(StatementLimits::tripped("column max_result_rows not found"), None);
    }
}
