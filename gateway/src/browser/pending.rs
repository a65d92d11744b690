//! Sign-ins between `/auth/login` and `/auth/callback`: the PKCE verifier, the nonce and the
//! return-to path, under the `state` the provider hands back. Each is taken once (a replayed
//! callback finds nothing), expires after the login timeout, and is bound to the browser
//! that started it by a `__Host-` cookie whose hash it keeps (a callback URL opened in
//! another browser — login CSRF — finds no match). The table is bounded: when it is full of
//! live entries a new sign-in is refused, so a flood of `/auth/login` cannot grow memory; and
//! one source address holds at most its share of them (`pending_logins_per_source`), so it
//! cannot fill the table and lock everybody else out of signing in.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

use aws_lc_rs::constant_time::verify_slices_are_equal;

/// The cookie binding a sign-in to its browser.
pub(super) const LOGIN_COOKIE: &str = "__Host-portcullis-login";

/// `{:?}` leaves out the PKCE verifier and the nonce.
pub(super) struct Pending {
    pub provider: usize,
    pub pkce_verifier: String,
    pub nonce: String,
    pub return_to: String,
    /// SHA-256 of the login cookie's value.
    pub binding: [u8; 32],
    pub started: u64,
    /// Where the sign-in came from (the per-source bound).
    pub source: IpAddr,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("provider", &self.provider)
            .field("return_to", &self.return_to)
            .field("started", &self.started)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// Why a callback's state was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Taken {
    Unknown,
    Expired,
    OtherBrowser,
}

#[derive(Debug)]
pub(super) struct PendingLogins {
    map: Mutex<HashMap<String, Pending>>,
    capacity: usize,
    per_source: usize,
    timeout: u64,
}

impl PendingLogins {
    pub(super) fn new(capacity: usize, per_source: usize, timeout: u64) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
            per_source: per_source.max(1),
            timeout: timeout.max(1),
        }
    }

    /// Seconds a sign-in may take (the login cookie's Max-Age).
    pub(super) fn timeout(&self) -> u64 {
        self.timeout
    }

    /// Keeps `pending` under `state`; false when the table is full of live sign-ins, or its
    /// source already has its share of them.
    pub(super) fn insert(&self, state: String, pending: Pending, now: u64) -> bool {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let live = |p: &Pending| now < p.started.saturating_add(self.timeout);
        if map.len() >= self.capacity {
            map.retain(|_, p| live(p));
            if map.len() >= self.capacity {
                return false;
            }
        }
        if map.values().filter(|p| p.source == pending.source && live(p)).count() >= self.per_source {
            return false;
        }
        map.insert(state, pending);
        true
    }

    /// Takes the sign-in under `state` (once), if it is live and `login_cookie` is its browser's.
    pub(super) fn take(&self, state: &str, login_cookie: Option<&str>, now: u64) -> Result<Pending, Taken> {
        let pending = self.map.lock().unwrap_or_else(PoisonError::into_inner).remove(state).ok_or(Taken::Unknown)?;
        if now >= pending.started.saturating_add(self.timeout) {
            return Err(Taken::Expired);
        }
        let binding = login_cookie.map(crate::auth::sha256);
        match binding {
            Some(binding) if verify_slices_are_equal(&binding, &pending.binding).is_ok() => Ok(pending),
            _ => Err(Taken::OtherBrowser),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(cookie: &str, started: u64) -> Pending {
        Pending {
            provider: 0,
            pkce_verifier: "v".into(),
            nonce: "n".into(),
            return_to: "/console".into(),
            binding: crate::auth::sha256(cookie),
            started,
            source: IpAddr::from([192, 0, 2, 1]),
        }
    }

    #[test]
    fn a_state_is_taken_once_by_its_own_browser_within_the_timeout() {
        let logins = PendingLogins::new(10, 10, 600);
        assert!(logins.insert("s1".into(), pending("c1", 100), 100));
        assert_eq!(logins.take("s1", Some("other"), 101).unwrap_err(), Taken::OtherBrowser);
        // The failed attempt used the state up: a second try (a replay) finds nothing.
        assert_eq!(logins.take("s1", Some("c1"), 101).unwrap_err(), Taken::Unknown);
        assert!(logins.insert("s2".into(), pending("c2", 100), 100));
        assert_eq!(logins.take("s2", None, 101).unwrap_err(), Taken::OtherBrowser);
        assert!(logins.insert("s3".into(), pending("c3", 100), 100));
        assert_eq!(logins.take("s3", Some("c3"), 700).unwrap_err(), Taken::Expired);
        assert!(logins.insert("s4".into(), pending("c4", 100), 100));
        assert_eq!(logins.take("s4", Some("c4"), 101).unwrap().return_to, "/console");
        assert_eq!(logins.take("s4", Some("c4"), 102).unwrap_err(), Taken::Unknown);
    }

    /// `pending` from the `n`th of many addresses.
    fn from(n: u32, started: u64) -> Pending {
        Pending { source: IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n)), ..pending("c", started) }
    }

    #[test]
    fn a_flood_is_refused_at_the_bound_and_room_comes_back_as_entries_expire() {
        let logins = PendingLogins::new(100, 100, 600);
        for i in 0..100 {
            assert!(logins.insert(format!("s{i}"), from(i, 0), 0));
        }
        for i in 100..10_000 {
            assert!(!logins.insert(format!("s{i}"), from(i, 1), 1), "entry {i} accepted");
        }
        assert_eq!(logins.len(), 100);
        assert!(logins.insert("late".into(), from(1, 600), 600), "expired entries make room");
        assert_eq!(logins.len(), 1);
    }

    #[test]
    fn one_source_cannot_fill_the_table() {
        let logins = PendingLogins::new(1000, 32, 600);
        for i in 0..32 {
            assert!(logins.insert(format!("a{i}"), pending("c", 0), 0));
        }
        assert!(!logins.insert("one-more".into(), pending("c", 0), 0), "a source past its share");
        assert!(logins.insert("other".into(), from(7, 0), 0), "another source still signs in");
        assert!(logins.insert("later".into(), pending("c", 600), 600), "its own expire and make room");
    }
}
