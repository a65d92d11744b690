//! Links the Flight call that streams a statement's rows to the call that planned it. A
//! Flight SQL query is several calls: GetFlightInfo (or CreatePreparedStatement) carries the
//! SQL and is authorized on its datasets; the DoGet that streams the rows presents only an
//! opaque ticket. The planning call's response names the tokens (its endpoints' tickets, the
//! prepared statement's handle); each is remembered here with the planning request's id and
//! datasets, so the DoGet's event carries the same datasets and, as its correlation id, the
//! planning request's id. Tokens are kept by SHA-256 only, bounded and expiring with the
//! engine's ticket lifetime.

use std::sync::Arc;

use aws_lc_rs::digest;
use identity::ExpiringCache;

/// What a later call learns from the call that planned it.
#[derive(Debug)]
pub(crate) struct Plan {
    pub request_id: String,
    pub datasets: Vec<String>,
    /// Planned by a session-bookkeeping call (SqlInfo): its tickets' calls are too.
    pub bookkeeping: bool,
}

pub(crate) struct Plans {
    cache: ExpiringCache<[u8; 32], Arc<Plan>>,
}

impl std::fmt::Debug for Plans {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plans").finish_non_exhaustive()
    }
}

/// As long as the engine's tickets and unused prepared statements live by default.
const PLAN_SECS: u64 = 600;
const PLAN_ENTRIES: usize = 10_000;

fn key(token: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, token).as_ref());
    out
}

impl Plans {
    pub(crate) fn new() -> Self {
        Self { cache: ExpiringCache::new(PLAN_ENTRIES) }
    }

    pub(crate) fn remember(&self, token: &[u8], plan: Arc<Plan>, now: u64) {
        self.cache.insert(key(token), plan, now + PLAN_SECS, now);
    }

    pub(crate) fn recall(&self, token: &[u8], now: u64) -> Option<Arc<Plan>> {
        self.cache.get(&key(token), now)
    }
}

impl Default for Plans {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remembered_token_is_recalled_until_it_expires() {
        let plans = Plans::new();
        let plan = Arc::new(Plan {
            request_id: "req-1".into(),
            datasets: vec!["datafusion.acme.orders".into()],
            bookkeeping: false,
        });
        plans.remember(b"ticket", plan, 1000);
        assert_eq!(plans.recall(b"ticket", 1001).unwrap().request_id, "req-1");
        assert!(plans.recall(b"other", 1001).is_none());
        assert!(plans.recall(b"ticket", 1000 + PLAN_SECS + 1).is_none());
    }
}
