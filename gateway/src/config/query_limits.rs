//! `query_limits`: what each caller's statements may take, by tier (a principal's own, its
//! groups', or `default`). Off unless configured.

use std::collections::HashMap;

use identity::OnExceed;
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryLimitsConfig {
    /// Every principal without a tier of its own or of one of its groups.
    pub default: TierConfig,
    /// Tiers by group: a principal in several takes the smallest of each limit they set.
    pub groups: HashMap<String, TierConfig>,
    /// Tiers by principal id (win over groups).
    pub principals: HashMap<String, TierConfig>,
    /// Queries running at once, all principals together (keep it below what the engine
    /// can run well); absent: no global cap.
    pub concurrent_queries: Option<u32>,
    /// How long a query waits for a free slot (its own or the global one) before 429.
    #[serde(default = "default_queue_wait")]
    pub queue_wait_secs: u64,
}

fn default_queue_wait() -> u64 {
    5
}

/// One tier's limits; a field left out is the `default` tier's (and there, no limit).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TierConfig {
    pub statement_timeout_secs: Option<u64>,
    /// Percent of the engine's memory pool one statement may hold.
    pub memory_percent: Option<u8>,
    pub max_result_rows: Option<u64>,
    /// Bytes of Arrow data (the rows' size before encoding).
    pub max_result_bytes: Option<u64>,
    /// `truncate` (the default) or `fail`.
    pub on_exceed: Option<OnExceed>,
    /// Queries one principal may run at once.
    pub concurrent_queries: Option<u32>,
    /// The exfiltration budget: rows one principal may receive per window.
    pub rows_per_window: Option<RowsPerWindow>,
}

/// `rows` per `window_secs` seconds, refilled continuously.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RowsPerWindow {
    pub rows: u64,
    pub window_secs: u64,
}
