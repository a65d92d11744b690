//! The Cedar context of a request (see `policies/schema.cedarschema`), built once per
//! second for each distinct shape and reused.
//!
//! Building one is most of what a Cedar request costs with few policies: the `ip()` and
//! `datetime()` values are extension calls that cedar-policy parses and evaluates on every
//! construction. Within one second, every request from the same address, with the same
//! caller flags, method, path and dataset has the same context, so it is built once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

use cedar_policy::{Context, RestrictedExpression};

use super::facts::RequestFacts;
use super::sql::DatasetName;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Shape {
    source_ip: IpAddr,
    mfa: bool,
    auth_method: &'static str,
    client_cert: bool,
    spiffe_id: Option<String>,
    method: String,
    path: String,
    dataset: Option<DatasetName>,
}

/// Contexts of the current second, by shape.
pub(super) struct ContextCache {
    state: Mutex<(u64, HashMap<Shape, Context>)>,
    capacity: usize,
}

impl std::fmt::Debug for ContextCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContextCache").field("capacity", &self.capacity).finish_non_exhaustive()
    }
}

impl ContextCache {
    pub(super) fn new(capacity: usize) -> Self {
        Self { state: Mutex::new((0, HashMap::new())), capacity }
    }

    /// The context for a request about `dataset` (or the endpoint, for `None`).
    pub(super) fn context(&self, facts: &RequestFacts<'_>, dataset: Option<&DatasetName>) -> Result<Context, String> {
        let principal = facts.principal;
        let spiffe_id = [Some(&principal.id), principal.client_cert.as_ref()]
            .into_iter()
            .flatten()
            .find(|id| id.starts_with("spiffe://"))
            .cloned();
        let shape = Shape {
            source_ip: facts.source_ip,
            mfa: principal.mfa,
            auth_method: principal.auth_method.as_str(),
            client_cert: facts.client_cert,
            spiffe_id,
            method: facts.method.to_string(),
            path: facts.path.to_string(),
            dataset: dataset.cloned(),
        };
        {
            // A poisoned lock only means another thread panicked mid-insert; the map is whole.
            let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if state.0 == facts.now
                && let Some(context) = state.1.get(&shape)
            {
                return Ok(context.clone());
            }
        }
        let context = build(&shape, facts.now)?;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.0 != facts.now {
            *state = (facts.now, HashMap::new());
        }
        if state.1.len() < self.capacity {
            state.1.insert(shape, context.clone());
        }
        Ok(context)
    }
}

fn build(shape: &Shape, now: u64) -> Result<Context, String> {
    let string = |s: &str| RestrictedExpression::new_string(s.to_string());
    let mut pairs = Vec::with_capacity(11);
    pairs.push(("source_ip".to_string(), RestrictedExpression::new_ip(shape.source_ip.to_string())));
    pairs.push(("now".to_string(), RestrictedExpression::new_datetime(rfc3339(now))));
    pairs.push(("mfa".to_string(), RestrictedExpression::new_bool(shape.mfa)));
    pairs.push(("auth_method".to_string(), string(shape.auth_method)));
    pairs.push(("client_cert".to_string(), RestrictedExpression::new_bool(shape.client_cert)));
    if let Some(spiffe_id) = &shape.spiffe_id {
        pairs.push(("spiffe_id".to_string(), string(spiffe_id)));
    }
    pairs.push(("method".to_string(), string(&shape.method)));
    pairs.push(("path".to_string(), string(&shape.path)));
    if let Some(dataset) = &shape.dataset {
        pairs.push(("catalog".to_string(), string(&dataset.catalog)));
        pairs.push(("schema".to_string(), string(&dataset.schema)));
        pairs.push(("table".to_string(), string(&dataset.table)));
    }
    Context::from_pairs(pairs).map_err(|e| e.to_string())
}

/// `YYYY-MM-DDTHH:MM:SSZ`, the form Cedar's `datetime()` reads.
fn rfc3339(unix: u64) -> String {
    let time = time::OffsetDateTime::from_unix_timestamp(i64::try_from(unix).unwrap_or(i64::MAX))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        time.year(),
        u8::from(time.month()),
        time.day(),
        time.hour(),
        time.minute(),
        time.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use identity::{AuthMethod, Principal, PrincipalKind};

    #[test]
    fn datetimes_are_in_cedar_form() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_000_000), "2026-11-18T11:06:40Z");
    }

    #[test]
    fn contexts_follow_the_request_and_the_second() {
        let cache = ContextCache::new(10);
        let mut principal = Principal::new(PrincipalKind::User, "alice", "alice", AuthMethod::Oidc);
        principal.client_cert = Some("spiffe://example.test/w".into());
        let facts = RequestFacts {
            principal: &principal,
            source_ip: IpAddr::from([10, 20, 0, 1]),
            client_cert: true,
            method: "POST",
            path: "/v1/sql",
            now: 1_795_000_000,
        };
        let dataset = DatasetName { catalog: "c".into(), schema: "s".into(), table: "t".into() };
        let context = cache.context(&facts, Some(&dataset)).unwrap();
        let text =
            |context: Context| context.into_iter().map(|(k, v)| format!("{k}={v:?}")).collect::<Vec<_>>().join(" ");
        let all = text(context);
        for part in ["spiffe_id=", "spiffe://example.test/w", "table=", "10.20.0.1", "2026-11-18T11:06:40Z"] {
            assert!(all.contains(part), "{all}");
        }
        // The next second, and another address, get their own.
        let later = cache.context(&RequestFacts { now: 1_795_000_001, ..facts }, None).unwrap();
        assert!(text(later).contains("2026-11-18T11:06:41Z"));
        let other = cache.context(&RequestFacts { source_ip: IpAddr::from([192, 0, 2, 1]), ..facts }, None).unwrap();
        assert!(text(other).contains("192.0.2.1"));
    }
}
