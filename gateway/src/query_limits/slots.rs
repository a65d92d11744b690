//! Concurrency: how many queries one principal (its tier's `concurrent_queries`) and all
//! together (`query_limits.concurrent_queries`) may run at once. A query past either waits
//! for a slot, at most `queue_wait_secs`, then is refused with a retry hint.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Slots per principal, and the global one.
#[derive(Debug)]
pub(crate) struct Slots {
    /// Each principal's semaphore and the cap it was made with (a reload may change it).
    principals: Mutex<HashMap<String, (u32, Arc<Semaphore>)>>,
    /// The global cap and its semaphore.
    global: ArcSwapOption<(u32, Arc<Semaphore>)>,
}

/// The slots a running query holds; released when dropped (when its response ends).
#[derive(Debug)]
pub(crate) struct Held {
    own: Option<OwnedSemaphorePermit>,
    global_slot: Option<OwnedSemaphorePermit>,
}

impl Held {
    /// Whether a slot is held at all (neither cap configured: nothing to release).
    pub(crate) fn holds_any(&self) -> bool {
        self.own.is_some() || self.global_slot.is_some()
    }
}

/// How long a query waited for its slots (zero: it did not queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Waited(pub Duration);

/// What a query refused for want of a slot is told to wait before retrying.
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(1);

impl Slots {
    pub(crate) fn new(global: Option<u32>) -> Self {
        let slots = Self { principals: Mutex::new(HashMap::new()), global: ArcSwapOption::empty() };
        slots.set_global(global);
        slots
    }

    /// A new global cap (running queries keep the slots of the old one).
    pub(crate) fn set_global(&self, global: Option<u32>) {
        if self.global.load().as_ref().map(|held| held.0) != global {
            self.global.store(global.map(|n| Arc::new((n, Arc::new(Semaphore::new(n as usize))))));
        }
    }

    /// A slot of `principal`'s own (when `cap` is set) and a global one, waiting at most
    /// `wait` for both; else how long it waited.
    pub(crate) async fn acquire(
        &self,
        principal: &str,
        cap: Option<u32>,
        wait: Duration,
    ) -> Result<(Held, Waited), Waited> {
        let own = cap.map(|cap| self.semaphore(principal, cap));
        let global = self.global.load_full().map(|held| Arc::clone(&held.1));
        // Neither full: no queue, no timer.
        let quick = (
            own.as_ref().map(|s| Arc::clone(s).try_acquire_owned()),
            global.as_ref().map(|s| Arc::clone(s).try_acquire_owned()),
        );
        match quick {
            (None | Some(Ok(_)), None | Some(Ok(_))) => {
                let (own, global) = quick;
                let held = Held { own: own.and_then(Result::ok), global_slot: global.and_then(Result::ok) };
                return Ok((held, Waited(Duration::ZERO)));
            }
            _ => drop(quick),
        }
        let started = Instant::now();
        let both = async {
            let own = match own {
                Some(semaphore) => Some(semaphore.acquire_owned().await.map_err(|_| RETRY_AFTER)?),
                None => None,
            };
            let global = match global {
                Some(semaphore) => Some(semaphore.acquire_owned().await.map_err(|_| RETRY_AFTER)?),
                None => None,
            };
            Ok::<_, Duration>(Held { own, global_slot: global })
        };
        match tokio::time::timeout(wait, both).await {
            Ok(Ok(held)) => Ok((held, Waited(started.elapsed().max(Duration::from_micros(1))))),
            _ => Err(Waited(started.elapsed().max(Duration::from_micros(1)))),
        }
    }

    fn semaphore(&self, principal: &str, cap: u32) -> Arc<Semaphore> {
        let mut principals = self.principals.lock().unwrap_or_else(PoisonError::into_inner);
        match principals.get(principal) {
            Some((made_with, semaphore)) if *made_with == cap => Arc::clone(semaphore),
            _ => {
                let semaphore = Arc::new(Semaphore::new(cap as usize));
                principals.insert(principal.to_string(), (cap, Arc::clone(&semaphore)));
                semaphore
            }
        }
    }

    /// Forgets principals with no query running.
    pub(crate) fn prune(&self) {
        let mut principals = self.principals.lock().unwrap_or_else(PoisonError::into_inner);
        principals.retain(|_, (cap, semaphore)| semaphore.available_permits() < *cap as usize);
    }

    /// Principals with a slot table (for tests).
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.principals.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_principal_queues_then_is_refused_and_others_are_not_held_up() {
        let slots = Slots::new(Some(3));
        let wait = Duration::from_millis(200);
        let (first, waited) = slots.acquire("ann", Some(1), wait).await.unwrap();
        assert_eq!(waited, Waited(Duration::ZERO));
        let waited = slots.acquire("ann", Some(1), wait).await.unwrap_err();
        assert!(waited.0 >= wait, "her second waits, then is refused: {waited:?}");
        let (_bob, _) = slots.acquire("bob", Some(1), wait).await.unwrap();
        // Released while the next one waits: it gets the slot, and says it queued.
        let next = slots.acquire("ann", Some(1), Duration::from_secs(5));
        let release = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(first);
        };
        let ((_, waited), ()) = tokio::join!(async { next.await.unwrap() }, release);
        assert!(waited.0 > Duration::ZERO);
    }

    #[tokio::test]
    async fn the_global_cap_holds_across_principals() {
        let slots = Slots::new(Some(2));
        let wait = Duration::from_millis(100);
        let _a = slots.acquire("a", None, wait).await.unwrap();
        let _b = slots.acquire("b", None, wait).await.unwrap();
        assert!(slots.acquire("c", None, wait).await.is_err());
    }

    #[tokio::test]
    async fn idle_principals_are_forgotten() {
        let slots = Slots::new(None);
        let held = slots.acquire("a", Some(2), Duration::from_millis(10)).await.unwrap();
        drop(slots.acquire("b", Some(2), Duration::from_millis(10)).await.unwrap());
        slots.prune();
        assert_eq!(slots.tracked(), 1, "a still runs one");
        drop(held);
        slots.prune();
        assert_eq!(slots.tracked(), 0);
    }
}
