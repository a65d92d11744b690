//! Flight prepared statements, bound to the principal that created them. (Statement
//! tickets carry their own state: see `tickets`.)
//!
//! A handle is 16 random bytes naming server-side state (the SQL, bound parameters, the
//! owner). Presenting it needs the same caller (see [`Principal::same_caller`]): a ticket
//! leaked to, or guessed by, another principal runs nothing. The store is bounded and
//! entries expire, so abandoned statements cannot exhaust memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use datafusion::common::ScalarValue;
use identity::Principal;

use crate::caller::PolicyFingerprint;
use crate::error::EngineError;
use crate::flight::tickets::Planned;

#[derive(Debug, Clone)]
pub struct Statement {
    pub owner: Arc<Principal>,
    /// The SQL, and what the creating request's stamp let it list and resolve.
    pub planned: Planned,
    /// Bound parameter values (`$1`, `$2`, ...) for prepared statements.
    pub params: Option<Vec<ScalarValue>>,
    /// The policy set it was prepared under (see [`PolicyFingerprint`]).
    policy: PolicyFingerprint,
    expires: Instant,
}

#[derive(Debug)]
pub struct HandleStore {
    entries: Mutex<HashMap<[u8; 16], Statement>>,
    capacity: usize,
    ttl: Duration,
}

impl HandleStore {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self { entries: Mutex::new(HashMap::new()), capacity: capacity.max(1), ttl }
    }

    /// Stores a statement for `owner` and returns its handle.
    pub fn create(
        &self,
        owner: Arc<Principal>,
        policy: PolicyFingerprint,
        planned: Planned,
    ) -> Result<Bytes, EngineError> {
        let now = Instant::now();
        let id = *uuid::Uuid::new_v4().as_bytes();
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.capacity {
            entries.retain(|_, s| s.expires > now);
            if entries.len() >= self.capacity {
                return Err(EngineError::Exhausted(format!(
                    "too many open Flight statements ({}); close prepared statements or retry later",
                    self.capacity
                )));
            }
        }
        let statement = Statement { owner, planned, params: None, policy, expires: now + self.ttl };
        entries.insert(id, statement);
        Ok(Bytes::copy_from_slice(&id))
    }

    /// The statement behind `handle`, if `caller` owns it and it was prepared under the
    /// policy set `policy`. Using a handle extends its life; a stale one is forgotten.
    pub fn get(&self, handle: &[u8], caller: &Principal, policy: &PolicyFingerprint) -> Result<Statement, EngineError> {
        let statement = self.with_owned(handle, caller, |statement| statement.clone())?;
        if let Err(stale) = policy.admits(&statement.policy, "prepared statement") {
            self.close(handle, caller)?;
            return Err(stale);
        }
        Ok(statement)
    }

    /// Binds parameter values to a prepared statement.
    pub fn bind(
        &self,
        handle: &[u8],
        caller: &Principal,
        policy: &PolicyFingerprint,
        params: Vec<ScalarValue>,
    ) -> Result<(), EngineError> {
        self.get(handle, caller, policy)?;
        self.with_owned(handle, caller, |statement| statement.params = Some(params))
    }

    /// Forgets a statement (ClosePreparedStatement).
    pub fn close(&self, handle: &[u8], caller: &Principal) -> Result<(), EngineError> {
        self.with_owned(handle, caller, |_| ())?;
        let id = key(handle)?;
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
        Ok(())
    }

    fn with_owned<T>(
        &self,
        handle: &[u8],
        caller: &Principal,
        f: impl FnOnce(&mut Statement) -> T,
    ) -> Result<T, EngineError> {
        let id = key(handle)?;
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let statement = entries
            .get_mut(&id)
            .filter(|s| s.expires > now)
            .ok_or_else(|| EngineError::NotFound("unknown or expired Flight handle".into()))?;
        if !statement.owner.same_caller(caller) {
            return Err(EngineError::Forbidden("this Flight handle belongs to another principal".into()));
        }
        statement.expires = now + self.ttl;
        Ok(f(statement))
    }
}

fn key(handle: &[u8]) -> Result<[u8; 16], EngineError> {
    handle.try_into().map_err(|_| EngineError::BadRequest("malformed Flight handle".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use identity::{AuthMethod, PrincipalKind};

    fn user(id: &str) -> Arc<Principal> {
        Arc::new(Principal::new(PrincipalKind::User, id, id, AuthMethod::Oidc))
    }

    fn sql(text: &str) -> Planned {
        Planned {
            sql: text.into(),
            listing: crate::caller::listing::Listing::nothing(),
            scope: crate::caller::scope::Scope::nothing(),
            data: Vec::new().into(),
        }
    }

    #[test]
    fn owner_only() {
        let store = HandleStore::new(8, Duration::from_secs(60));
        let handle = store.create(user("alice"), PolicyFingerprint::default(), sql("SELECT 1")).unwrap();
        assert_eq!(
            &*store.get(&handle, &user("alice"), &PolicyFingerprint::default()).unwrap().planned.sql,
            "SELECT 1"
        );
        assert!(matches!(
            store.get(&handle, &user("bob"), &PolicyFingerprint::default()),
            Err(EngineError::Forbidden(_))
        ));
        assert!(matches!(store.close(&handle, &user("bob")), Err(EngineError::Forbidden(_))));
        store.close(&handle, &user("alice")).unwrap();
        assert!(matches!(
            store.get(&handle, &user("alice"), &PolicyFingerprint::default()),
            Err(EngineError::NotFound(_))
        ));
        assert!(matches!(
            store.get(b"short", &user("alice"), &PolicyFingerprint::default()),
            Err(EngineError::BadRequest(_))
        ));
    }

    #[test]
    fn a_statement_prepared_under_other_policies_is_refused_and_forgotten() {
        let store = HandleStore::new(8, Duration::from_secs(60));
        let p1 = PolicyFingerprint(Some("p1".into()));
        let handle = store.create(user("alice"), p1.clone(), sql("SELECT 1")).unwrap();
        assert!(store.get(&handle, &user("alice"), &p1).is_ok());
        let p2 = PolicyFingerprint(Some("p2".into()));
        let error = store.get(&handle, &user("alice"), &p2).unwrap_err();
        assert!(error.to_string().contains("policies that have changed"), "{error}");
        assert!(matches!(store.get(&handle, &user("alice"), &p1), Err(EngineError::NotFound(_))));
    }

    #[test]
    fn bounded_and_expiring() {
        let store = HandleStore::new(2, Duration::from_millis(0));
        store.create(user("a"), PolicyFingerprint::default(), sql("SELECT 1")).unwrap();
        let h = store.create(user("a"), PolicyFingerprint::default(), sql("SELECT 2")).unwrap();
        // Expired entries make room, and are no longer served.
        assert!(store.create(user("a"), PolicyFingerprint::default(), sql("SELECT 3")).is_ok());
        assert!(matches!(store.get(&h, &user("a"), &PolicyFingerprint::default()), Err(EngineError::NotFound(_))));
        let full = HandleStore::new(1, Duration::from_secs(60));
        full.create(user("a"), PolicyFingerprint::default(), sql("SELECT 1")).unwrap();
        assert!(matches!(
            full.create(user("a"), PolicyFingerprint::default(), sql("SELECT 2")),
            Err(EngineError::Exhausted(_))
        ));
    }
}
