//! A cache of whole authorization verdicts, so a caller repeating a request does not pay for
//! SQL parsing and Cedar evaluation again within the same second.
//!
//! The key is everything the outcome depends on, compared exactly: the principal (all its
//! fields), source IP, client-certificate flag, method, path, and the bytes that were
//! classified (the SQL body, or the Flight call's first message). `now` is part of every
//! Cedar request at one-second resolution, so entries live for the second they were made in
//! and the whole cache is dropped when the second changes. A reload of either policy set
//! (enforced or shadow) starts a new cache with the new pair.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use identity::Principal;

use super::verdict::Verdict;

/// Payloads longer than this are classified every time (and never stored).
const MAX_PAYLOAD: usize = 4096;

/// What an outcome depends on, borrowed from the request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Key<'a> {
    pub principal: &'a Principal,
    pub source_ip: IpAddr,
    pub client_cert: bool,
    pub method: &'a str,
    pub path: &'a str,
    pub payload: &'a [u8],
}

struct Entry {
    principal: Principal,
    source_ip: IpAddr,
    client_cert: bool,
    method: Box<str>,
    path: Box<str>,
    payload: Box<[u8]>,
    verdict: Arc<Verdict>,
}

impl Entry {
    fn matches(&self, key: &Key<'_>) -> bool {
        self.source_ip == key.source_ip
            && self.client_cert == key.client_cert
            && *self.method == *key.method
            && *self.path == *key.path
            && *self.payload == *key.payload
            && self.principal == *key.principal
    }
}

struct State {
    second: u64,
    len: usize,
    /// Keyed by a randomly seeded hash of the key; entries compare the key in full.
    buckets: HashMap<u64, Vec<Entry>>,
}

pub(crate) struct DecisionCache {
    state: Mutex<State>,
    hasher: RandomState,
    capacity: usize,
}

impl std::fmt::Debug for DecisionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionCache").field("capacity", &self.capacity).finish_non_exhaustive()
    }
}

impl DecisionCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State { second: 0, len: 0, buckets: HashMap::new() }),
            hasher: RandomState::new(),
            capacity,
        }
    }

    fn hash(&self, key: &Key<'_>) -> u64 {
        let mut h = self.hasher.build_hasher();
        key.principal.hash(&mut h);
        key.source_ip.hash(&mut h);
        key.client_cert.hash(&mut h);
        key.method.hash(&mut h);
        key.path.hash(&mut h);
        key.payload.hash(&mut h);
        h.finish()
    }

    pub(crate) fn get(&self, key: &Key<'_>, now: u64) -> Option<Arc<Verdict>> {
        if key.payload.len() > MAX_PAYLOAD || self.capacity == 0 {
            return None;
        }
        let hash = self.hash(key);
        // A poisoned lock only means another thread panicked mid-insert; the map is whole.
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.second != now {
            return None;
        }
        state.buckets.get(&hash)?.iter().find(|e| e.matches(key)).map(|e| Arc::clone(&e.verdict))
    }

    pub(crate) fn insert(&self, key: &Key<'_>, now: u64, verdict: &Arc<Verdict>) {
        if key.payload.len() > MAX_PAYLOAD || self.capacity == 0 {
            return;
        }
        let hash = self.hash(key);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.second != now {
            state.second = now;
            state.len = 0;
            state.buckets.clear();
        }
        if state.len >= self.capacity {
            return;
        }
        let bucket = state.buckets.entry(hash).or_default();
        if bucket.iter().any(|e| e.matches(key)) {
            return;
        }
        bucket.push(Entry {
            principal: key.principal.clone(),
            source_ip: key.source_ip,
            client_cert: key.client_cert,
            method: key.method.into(),
            path: key.path.into(),
            payload: key.payload.into(),
            verdict: Arc::clone(verdict),
        });
        state.len += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::verdict::Allowed;
    use identity::{AuthMethod, PrincipalKind};

    fn principal(id: &str) -> Principal {
        Principal::new(PrincipalKind::Service, id, id, AuthMethod::ApiKey)
    }

    #[test]
    fn hits_only_on_the_same_request_in_the_same_second() {
        let cache = DecisionCache::new(10);
        let alice = principal("alice");
        let key = Key {
            principal: &alice,
            source_ip: IpAddr::from([127, 0, 0, 1]),
            client_cert: false,
            method: "POST",
            path: "/v1/sql",
            payload: b"SELECT 1",
        };
        let allowed = Arc::new(Verdict {
            outcome: Ok(Allowed::default()),
            asks: Vec::new(),
            enforced: None,
            shadow: None,
            shadow_data: None,
        });
        cache.insert(&key, 100, &allowed);
        assert_eq!(cache.get(&key, 100), Some(allowed.clone()));
        assert_eq!(cache.get(&key, 101), None, "a new second");
        let bob = principal("bob");
        let mut admin = alice.clone();
        admin.groups.push("platform-admins".into());
        for other in [
            Key { principal: &bob, ..key },
            Key { principal: &admin, ..key },
            Key { source_ip: IpAddr::from([10, 0, 0, 1]), ..key },
            Key { client_cert: true, ..key },
            Key { path: "/v1/datasets", ..key },
            Key { payload: b"SELECT 2", ..key },
        ] {
            assert_eq!(cache.get(&other, 100), None, "{other:?}");
        }
        // A new second drops the old entries on the next insert; the capacity bounds the rest.
        cache.insert(&Key { payload: b"SELECT 2", ..key }, 101, &allowed);
        assert_eq!(cache.get(&key, 100), None);
        let small = DecisionCache::new(1);
        small.insert(&key, 5, &allowed);
        small.insert(&Key { payload: b"SELECT 2", ..key }, 5, &allowed);
        assert_eq!(small.get(&Key { payload: b"SELECT 2", ..key }, 5), None);
    }
}
