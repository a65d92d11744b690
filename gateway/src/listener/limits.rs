//! Connection limits: how many client connections the TLS listeners hold at once, in all
//! and per source address. Checked right after `accept`, before any TLS work, so a flood
//! costs an accept and a close (with RST) per connection and never a handshake.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::Refusal;

/// Descriptors kept free for everything but client connections: the listeners, the audit
/// files and spools, JWKS and audit-delivery sockets, the health listener's connections.
const RESERVED_DESCRIPTORS: usize = 128;

#[derive(Debug)]
pub struct ConnectionLimits {
    open: AtomicUsize,
    max: usize,
    max_per_ip: usize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// A connection counted against the limits until dropped.
#[derive(Debug)]
pub struct Admission {
    limits: Arc<ConnectionLimits>,
    ip: IpAddr,
}

impl ConnectionLimits {
    pub fn new(max: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(Self { open: AtomicUsize::new(0), max, max_per_ip, per_ip: Mutex::new(HashMap::new()) })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Counts a new connection from `ip`, or says which limit it is over.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admission, Refusal> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::ConnectionLimit);
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

/// `limits.max_connections` when unset: half the descriptors the process may open (a client
/// connection can hold one to the engine too), less a reserve, so the TLS listeners cannot
/// exhaust descriptors and `/healthz`, audit files and key refreshes keep working.
pub fn default_max_connections() -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits").ok().and_then(|text| open_files_soft_limit(&text));
    from_descriptor_limit(soft.unwrap_or(1024))
}

fn from_descriptor_limit(soft: usize) -> usize {
    (soft.saturating_sub(RESERVED_DESCRIPTORS) / 2).clamp(16, 1_000_000)
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
        assert_eq!(from_descriptor_limit(1024), 448);
        assert_eq!(open_files_soft_limit("Max open files  unlimited  unlimited  files"), Some(usize::MAX));
        assert_eq!(from_descriptor_limit(usize::MAX), 1_000_000);
        assert_eq!(from_descriptor_limit(64), 16);
        assert_eq!(open_files_soft_limit("nothing here"), None);
    }
}
