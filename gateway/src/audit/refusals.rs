//! Refusals a flood can produce at line rate, aggregated per source address so that they
//! cannot flood the audit path (or rotate the file sink's history away): connection
//! refusals below HTTP, and requests that came with no credentials at all. The first from a
//! source and reason in an interval (the first [`FULL_UNAUTHENTICATED`], for requests) are
//! audited in full at once; the rest of the interval becomes one event per source and reason
//! with their count, written when the interval ends.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use super::record::ConnectionRecord;
use process::unix_millis;

/// Sources tracked at once; refusals from further sources in the same interval are counted
/// under the unspecified address (0.0.0.0) instead of growing the table.
const MAX_SOURCES: usize = 10_000;

/// Requests without credentials audited in full per source and interval, before counting.
pub const FULL_UNAUTHENTICATED: u64 = 10;

#[derive(Debug)]
struct Pending {
    listener: &'static str,
    peer: SocketAddr,
    /// Audited in full so far this interval.
    reported: u64,
    /// After those: counted for the interval's aggregate.
    count: u64,
    last_error: String,
}

#[derive(Debug)]
pub(crate) struct Refusals {
    interval: Duration,
    pending: Mutex<HashMap<(IpAddr, &'static str), Pending>>,
}

impl Refusals {
    pub(crate) fn new(interval: Duration) -> Self {
        Self { interval: interval.max(Duration::from_secs(1)), pending: Mutex::new(HashMap::new()) }
    }

    pub(crate) fn interval(&self) -> Duration {
        self.interval
    }

    /// Counts a refusal; returns the event to write now when it is the first from this
    /// source and reason in the interval.
    pub(crate) fn note(
        &self,
        listener: &'static str,
        peer: SocketAddr,
        reason: &'static str,
        error: impl Fn() -> String,
    ) -> Option<ConnectionRecord> {
        let peer = self.count(listener, peer, reason, 1, &error)?;
        Some(ConnectionRecord {
            time_ms: unix_millis(),
            listener,
            peer,
            reason,
            error: error(),
            count: 1,
            window_secs: 0,
        })
    }

    /// Counts a refusal: `Some(source)` while it is among the first `full` from this source
    /// and reason in the interval (audit it in full; the source is 0.0.0.0 once the table is
    /// full), `None` once it is only counted for the interval's aggregate.
    pub(crate) fn count(
        &self,
        listener: &'static str,
        peer: SocketAddr,
        reason: &'static str,
        full: u64,
        error: impl Fn() -> String,
    ) -> Option<SocketAddr> {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let mut key = (peer.ip(), reason);
        if !pending.contains_key(&key) && pending.len() >= MAX_SOURCES {
            key.0 = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        }
        if let Some(entry) = pending.get_mut(&key) {
            if entry.reported < full {
                entry.reported += 1;
                return Some(entry.peer);
            }
            entry.count += 1;
            if entry.count == 1 || entry.last_error.is_empty() {
                entry.last_error = error();
            }
            return None;
        }
        let peer = if key.0.is_unspecified() { SocketAddr::new(key.0, 0) } else { peer };
        pending.insert(key, Pending { listener, peer, reported: 1, count: 0, last_error: String::new() });
        Some(peer)
    }

    /// The interval's aggregates (sources that refused more than once); the table starts over.
    pub(crate) fn flush(&self) -> Vec<ConnectionRecord> {
        let drained: Vec<_> = {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            pending.drain().collect()
        };
        let window_secs = self.interval.as_secs();
        drained
            .into_iter()
            .filter(|(_, entry)| entry.count > 0)
            .map(|((_, reason), entry)| ConnectionRecord {
                time_ms: unix_millis(),
                listener: entry.listener,
                peer: entry.peer,
                reason,
                error: entry.last_error,
                count: entry.count,
                window_secs,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::UNAUTHENTICATED;

    #[test]
    fn first_at_once_then_one_aggregate_per_source_and_reason() {
        let refusals = Refusals::new(Duration::from_secs(10));
        let a: SocketAddr = "192.0.2.1:1000".parse().unwrap();
        let b: SocketAddr = "192.0.2.2:1000".parse().unwrap();
        let first = refusals.note("api", a, "connection_limit", || "over the limit".into()).unwrap();
        assert_eq!((first.count, first.window_secs, first.reason), (1, 0, "connection_limit"));
        for _ in 0..500 {
            assert!(refusals.note("api", a, "connection_limit", || "over the limit".into()).is_none());
        }
        assert!(refusals.note("api", a, "header_timeout", || "slow".into()).is_some(), "another reason");
        assert!(refusals.note("api", b, "connection_limit", || "over".into()).is_some(), "another source");
        let flushed = refusals.flush();
        assert_eq!(flushed.len(), 1, "only the source that refused again: {flushed:?}");
        assert_eq!((flushed[0].count, flushed[0].window_secs, flushed[0].peer), (500, 10, a));
        assert!(refusals.flush().is_empty());
        assert!(refusals.note("api", a, "connection_limit", || "again".into()).is_some(), "a new interval");
    }

    #[test]
    fn requests_without_credentials_are_audited_in_full_up_to_a_number_then_counted() {
        let refusals = Refusals::new(Duration::from_secs(10));
        let a: SocketAddr = "192.0.2.1:1000".parse().unwrap();
        let full = (0..1000)
            .filter(|_| {
                refusals.count("api", a, UNAUTHENTICATED, FULL_UNAUTHENTICATED, || "no credentials".into()).is_some()
            })
            .count();
        assert_eq!(full as u64, FULL_UNAUTHENTICATED);
        let flushed = refusals.flush();
        assert_eq!(
            (flushed.len(), flushed[0].count, flushed[0].reason),
            (1, 1000 - FULL_UNAUTHENTICATED, UNAUTHENTICATED)
        );
    }

    #[test]
    fn the_table_is_bounded() {
        let refusals = Refusals::new(Duration::from_secs(10));
        let mut immediate = 0;
        for i in 0..(MAX_SOURCES as u32 + 100) {
            let peer = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)), 1);
            immediate += usize::from(refusals.note("api", peer, "tls_handshake_failed", String::new).is_some());
        }
        // One immediate event per tracked source, plus one for the overflow bucket.
        assert_eq!(immediate, MAX_SOURCES + 1);
        let overflow = refusals.flush();
        assert_eq!(overflow.len(), 1);
        assert!(overflow[0].peer.ip().is_unspecified() && overflow[0].count == 99);
    }
}
