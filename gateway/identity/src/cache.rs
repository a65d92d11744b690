//! A bounded map of values that expire, shared by the verifier (verified stamps), the
//! issuer (stamps to reuse) and the gateway (verified tokens, sessions).
//!
//! Reads take a shared lock and never allocate; expired entries are swept when an insert
//! finds the map full, so memory stays bounded without a background task.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{PoisonError, RwLock};

pub struct ExpiringCache<K, V> {
    map: RwLock<HashMap<K, (V, u64)>>,
    capacity: usize,
}

impl<K, V> std::fmt::Debug for ExpiringCache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The values are stamps: never print them.
        f.debug_struct("ExpiringCache").field("capacity", &self.capacity).finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone, V: Clone> ExpiringCache<K, V> {
    pub fn new(capacity: usize) -> Self {
        Self { map: RwLock::new(HashMap::new()), capacity: capacity.max(1) }
    }

    /// The value under `key` if it is still valid at `now` (strictly before its expiry).
    pub fn get<Q>(&self, key: &Q, now: u64) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        // A poisoned lock only means another thread panicked mid-insert; the map itself is
        // still a valid map, so keep serving from it.
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        match map.get(key) {
            Some((value, expires)) if now < *expires => Some(value.clone()),
            _ => None,
        }
    }

    /// Stores `value` until `expires` (exclusive), evicting expired entries, then an
    /// arbitrary one, when full.
    pub fn insert(&self, key: K, value: V, expires: u64, now: u64) {
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= self.capacity && !map.contains_key(&key) {
            map.retain(|_, (_, exp)| now < *exp);
            if map.len() >= self.capacity
                && let Some(victim) = map.keys().next().cloned()
            {
                map.remove(&victim);
            }
        }
        map.insert(key, (value, expires));
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.read().unwrap_or_else(PoisonError::into_inner).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_entries_are_not_returned() {
        let cache = ExpiringCache::new(4);
        cache.insert("a", 1, 100, 0);
        assert_eq!(cache.get("a", 99), Some(1));
        assert_eq!(cache.get("a", 100), None);
    }

    #[test]
    fn stays_bounded() {
        let cache = ExpiringCache::new(3);
        for i in 0..100u64 {
            cache.insert(i, i, 1_000, 0);
            assert!(cache.len() <= 3);
        }
        // The newest entry is always kept.
        assert_eq!(cache.get(&99, 0), Some(99));
    }

    #[test]
    fn full_cache_drops_expired_first() {
        let cache = ExpiringCache::new(2);
        cache.insert(1u64, 1, 10, 0);
        cache.insert(2u64, 2, 1_000, 0);
        cache.insert(3u64, 3, 1_000, 20);
        assert_eq!(cache.get(&2, 20), Some(2));
        assert_eq!(cache.get(&3, 20), Some(3));
    }
}
