//! Connection limits: how many client connections the TLS listeners hold at once, in all
//! and per source address. Checked right after `accept`, before any TLS work, so a flood
//! costs an accept and a close (with RST) per connection and never a handshake.
//!
//! Near the cap (three quarters of it) the listeners are *under pressure*: idle keep-alive
//! connections are closed after [`PRESSURED_IDLE`] instead of `timeouts.idle_secs`, as
//! Envoy's overload manager shortens its timeouts, so a flood of connections that sit idle
//! cannot keep a caller with work to do out for long.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::refusal::Refusal;

/// Descriptors kept free for everything but client connections: the listeners, the audit
/// files and spools, JWKS and audit-delivery sockets, the health listener's connections.
const RESERVED_DESCRIPTORS: usize = 128;

/// What one open connection is budgeted to cost: TLS state and buffers, hyper's connection
/// and the task (an idle TLS keep-alive measured about 40 KB), with room for a request's head.
pub(super) const CONNECTION_BYTES: u64 = 96 * 1024;

/// The share of the process's memory limit connections may take by default, in percent; the
/// rest is for requests in flight, caches and audit queues.
const CONNECTION_MEMORY_PERCENT: u64 = 50;

/// How long an idle keep-alive connection is kept while the listeners are under pressure.
pub(super) const PRESSURED_IDLE: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Debug)]
pub(crate) struct ConnectionLimits {
    open: AtomicUsize,
    max: usize,
    max_per_ip: usize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// Woken when the listeners come under pressure, so idle connections look at their
    /// deadline again.
    pressure: tokio::sync::Notify,
}

/// A connection counted against the limits until dropped.
#[derive(Debug)]
pub(crate) struct Admission {
    limits: Arc<ConnectionLimits>,
    ip: IpAddr,
}

impl ConnectionLimits {
    pub(crate) fn new(max: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(Self {
            open: AtomicUsize::new(0),
            max,
            max_per_ip,
            per_ip: Mutex::new(HashMap::new()),
            pressure: tokio::sync::Notify::new(),
        })
    }

    /// Whether three quarters of the connections are open.
    pub(crate) fn under_pressure(&self) -> bool {
        self.open.load(Ordering::Acquire).saturating_mul(4) >= self.max.saturating_mul(3)
    }

    /// Resolves when the listeners next come under pressure.
    pub(super) fn pressure(&self) -> tokio::sync::futures::Notified<'_> {
        self.pressure.notified()
    }

    /// Counts a new connection from `ip`, or says which limit it is over.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admission, Refusal> {
        let before = self.open.fetch_add(1, Ordering::AcqRel);
        if before >= self.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::ConnectionLimit);
        }
        // Crossing into pressure: idle connections shorten their deadline now.
        if before.saturating_mul(4) < self.max.saturating_mul(3)
            && (before + 1).saturating_mul(4) >= self.max.saturating_mul(3)
        {
            self.pressure.notify_waiters();
        }
        let mut per_ip = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        let count = per_ip.entry(ip).or_insert(0);
        if *count >= self.max_per_ip {
            drop(per_ip);
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::SourceConnectionLimit);
        }
        *count += 1;
        Ok(Admission { limits: Arc::clone(self), ip })
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut per_ip = self.limits.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&self.ip);
            }
        }
        drop(per_ip);
        self.limits.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `limits.max_connections` when unset: the smaller of two budgets. Descriptors: half of
/// what the process may open (a client connection can hold one to the engine too), less a
/// reserve, so `/healthz`, audit files and key refreshes keep working. Memory: half the
/// process's memory limit (its cgroup's, else the host's) at [`CONNECTION_BYTES`] each, so
/// a flood of connections cannot get the gateway killed (in the chart's 512 MiB: 2,730).
pub(crate) fn default_max_connections() -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits").ok().and_then(|text| open_files_soft_limit(&text));
    from_limits(soft.unwrap_or(1024), process::memory_limit())
}

fn from_limits(descriptors: usize, memory: u64) -> usize {
    let by_descriptors = descriptors.saturating_sub(RESERVED_DESCRIPTORS) / 2;
    let by_memory = memory / 100 * CONNECTION_MEMORY_PERCENT / CONNECTION_BYTES;
    by_descriptors.min(usize::try_from(by_memory).unwrap_or(usize::MAX)).clamp(16, 1_000_000)
}

/// The soft "Max open files" of `/proc/self/limits` (`unlimited` as a large number).
fn open_files_soft_limit(limits: &str) -> Option<usize> {
    let line = limits.lines().find(|line| line.starts_with("Max open files"))?;
    let soft = line.trim_start_matches("Max open files").split_whitespace().next()?;
    if soft == "unlimited" {
        return Some(usize::MAX);
    }
    soft.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_in_all_and_per_source() {
        let limits = ConnectionLimits::new(3, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let a1 = limits.admit(a).unwrap();
        let _a2 = limits.admit(a).unwrap();
        assert_eq!(limits.admit(a).unwrap_err(), Refusal::SourceConnectionLimit);
        let _b1 = limits.admit(b).unwrap();
        assert_eq!(limits.admit(b).unwrap_err(), Refusal::ConnectionLimit);
        drop(a1);
        let _a3 = limits.admit(a).unwrap();
        assert_eq!(limits.open.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn the_default_fits_the_descriptor_limit() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max open files            1024                 1048576              files     \n";
        assert_eq!(open_files_soft_limit(text), Some(1024));
        assert_eq!(from_limits(1024, u64::MAX), 448);
        assert_eq!(open_files_soft_limit("Max open files  unlimited  unlimited  files"), Some(usize::MAX));
        assert_eq!(from_limits(usize::MAX, u64::MAX), 1_000_000);
        assert_eq!(from_limits(64, u64::MAX), 16);
        assert_eq!(open_files_soft_limit("nothing here"), None);
    }

    #[test]
    fn the_default_fits_the_memory_limit() {
        // The chart's 512 MiB with a high descriptor limit: memory decides.
        assert_eq!(from_limits(1_048_576, 512 << 20), 2_730);
        assert_eq!(from_limits(1024, 512 << 20), 448);
        assert_eq!(from_limits(1_048_576, 1 << 20), 16);
    }

    #[test]
    fn pressure_starts_at_three_quarters_and_wakes_the_waiting() {
        use std::future::Future as _;
        let limits = ConnectionLimits::new(8, 8);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mut held: Vec<Admission> = (0..5).map(|_| limits.admit(ip).unwrap()).collect();
        assert!(!limits.under_pressure());
        let woken = limits.pressure();
        let mut woken = std::pin::pin!(woken);
        woken.as_mut().enable();
        held.push(limits.admit(ip).unwrap());
        assert!(limits.under_pressure());
        let waker = std::task::Waker::noop();
        assert!(woken.as_mut().poll(&mut std::task::Context::from_waker(waker)).is_ready());
        held.truncate(2);
        assert!(!limits.under_pressure());
    }
}
