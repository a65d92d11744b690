//! Rate limits (governor, GCRA): per client IP before authentication (cheap, before any
//! signature check), a stricter per-IP limit on failed authentications (brute force), and per
//! principal after authentication, with per-group and per-principal overrides.
//!
//! Memory stays bounded under many distinct keys: [`RateLimits::prune`] drops keys whose state
//! is back to full capacity, and runs every few seconds.
//!
//! Quotas are reloadable ([`RateLimits::replace`]): the limiters are swapped whole, so every
//! quota starts afresh; addresses blocked for failed authentications stay blocked.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use identity::Principal;

use crate::config::{ConfigError, QuotaConfig, RateLimitConfig};

/// Which limiter refused, and when to come back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    pub limiter: &'static str,
    /// The quota's request count per window, for `RateLimit-Limit`.
    pub limit: u32,
    pub retry_after: Duration,
}

struct Keyed<K: std::hash::Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    limit: u32,
}

impl<K: std::hash::Hash + Eq + Clone> Keyed<K> {
    fn new(quota: &QuotaConfig, field: &str) -> Result<Self, ConfigError> {
        Ok(Self { limiter: DefaultKeyedRateLimiter::dashmap(quota_of(quota, field)?), limit: quota.requests })
    }

    fn check(&self, key: &K, name: &'static str) -> Result<(), Limited> {
        self.limiter.check_key(key).map_err(|not_until| Limited {
            limiter: name,
            limit: self.limit,
            retry_after: not_until.wait_time_from(DefaultClock::default().now()),
        })
    }
}

fn keyed<K: std::hash::Hash + Eq + Clone>(
    quota: &Option<QuotaConfig>,
    field: &str,
) -> Result<Option<Keyed<K>>, ConfigError> {
    quota.as_ref().map(|q| Keyed::new(q, field)).transpose()
}

fn quota_of(quota: &QuotaConfig, field: &str) -> Result<Quota, ConfigError> {
    let requests = NonZeroU32::new(quota.requests).ok_or_else(|| ConfigError::new(field, "requests must be > 0"))?;
    let burst = NonZeroU32::new(quota.burst.unwrap_or(quota.requests))
        .ok_or_else(|| ConfigError::new(field, "burst must be > 0"))?;
    if quota.per_secs == 0 {
        return Err(ConfigError::new(field, "per_secs must be > 0"));
    }
    let period = Duration::from_secs(quota.per_secs) / requests.get();
    let quota = Quota::with_period(period).ok_or_else(|| ConfigError::new(field, "the rate is too high"))?;
    Ok(quota.allow_burst(burst))
}

/// All limiters of a gateway, shared by its listeners.
pub struct RateLimits {
    live: ArcSwap<Limiters>,
    /// Addresses refused until an instant, after too many failed authentications.
    blocked: Mutex<HashMap<IpAddr, Instant>>,
}

/// One configuration's limiters.
struct Limiters {
    per_ip: Option<Keyed<IpAddr>>,
    failed_auth: Option<Keyed<IpAddr>>,
    per_principal: Option<Keyed<String>>,
    groups: HashMap<String, Keyed<String>>,
    principals: HashMap<String, Keyed<String>>,
}

impl Limiters {
    fn from_config(config: &RateLimitConfig) -> Result<Self, ConfigError> {
        let overrides = |map: &HashMap<String, QuotaConfig>, field: &str| {
            map.iter()
                .map(|(name, quota)| Ok((name.clone(), Keyed::new(quota, &format!("{field}.{name}"))?)))
                .collect::<Result<HashMap<_, _>, ConfigError>>()
        };
        Ok(Self {
            per_ip: keyed(&config.per_ip, "rate_limits.per_ip")?,
            failed_auth: keyed(&config.failed_auth_per_ip, "rate_limits.failed_auth_per_ip")?,
            per_principal: keyed(&config.per_principal, "rate_limits.per_principal")?,
            groups: overrides(&config.groups, "rate_limits.groups")?,
            principals: overrides(&config.principals, "rate_limits.principals")?,
        })
    }
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits").finish_non_exhaustive()
    }
}

impl RateLimits {
    pub fn from_config(config: &RateLimitConfig) -> Result<Self, ConfigError> {
        Ok(Self { live: ArcSwap::from_pointee(Limiters::from_config(config)?), blocked: Mutex::new(HashMap::new()) })
    }

    /// New quotas, checked first: a bad config is refused and the old quotas stay.
    pub fn replace(&self, config: &RateLimitConfig) -> Result<(), ConfigError> {
        self.live.store(Arc::new(Limiters::from_config(config)?));
        Ok(())
    }

    /// Before authentication: the per-IP limit, and the brute-force block.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Limited> {
        let live = self.live.load();
        // No failed-auth quota, no blocks: skip the lock on the hot path.
        if let Some(failed_auth) = &live.failed_auth
            && let Some(until) = self.blocked.lock().unwrap_or_else(PoisonError::into_inner).get(&ip).copied()
        {
            let now = Instant::now();
            if until > now {
                return Err(Limited { limiter: "failed_auth", limit: failed_auth.limit, retry_after: until - now });
            }
        }
        match &live.per_ip {
            Some(limiter) => limiter.check(&ip, "ip"),
            None => Ok(()),
        }
    }

    /// A failed authentication from `ip`: past the failed-auth quota, the address is refused
    /// until the quota would allow another attempt.
    pub fn failed_authentication(&self, ip: IpAddr) {
        let live = self.live.load();
        let Some(limiter) = &live.failed_auth else { return };
        if let Err(limited) = limiter.check(&ip, "failed_auth") {
            tracing::warn!(%ip, retry_after_ms = limited.retry_after.as_millis() as u64, "too many failed authentications; address blocked");
            self.blocked
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(ip, Instant::now() + limited.retry_after);
        }
    }

    /// After authentication: the principal's own override, else its most generous group
    /// override, else the default per-principal quota.
    pub fn check_principal(&self, principal: &Principal) -> Result<(), Limited> {
        let live = self.live.load();
        let limiter = live
            .principals
            .get(&principal.id)
            .or_else(|| principal.groups.iter().filter_map(|g| live.groups.get(g)).max_by_key(|l| l.limit));
        match limiter.or(live.per_principal.as_ref()) {
            Some(limiter) => limiter.check(&principal.id, "principal"),
            None => Ok(()),
        }
    }

    /// Forgets keys back at full capacity and expired blocks (bounded memory).
    pub fn prune(&self) {
        let live = self.live.load();
        for limiter in [&live.per_ip, &live.failed_auth].into_iter().flatten() {
            limiter.limiter.retain_recent();
            limiter.limiter.shrink_to_fit();
        }
        for limiter in live.per_principal.iter().chain(live.groups.values()).chain(live.principals.values()) {
            limiter.limiter.retain_recent();
            limiter.limiter.shrink_to_fit();
        }
        let now = Instant::now();
        self.blocked.lock().unwrap_or_else(PoisonError::into_inner).retain(|_, until| *until > now);
    }

    /// Keys held, all limiters together (for tests and metrics).
    pub fn keys(&self) -> usize {
        let live = self.live.load();
        let ips = [&live.per_ip, &live.failed_auth].into_iter().flatten().map(|l| l.limiter.len()).sum::<usize>();
        let principals = live
            .per_principal
            .iter()
            .chain(live.groups.values())
            .chain(live.principals.values())
            .map(|l| l.limiter.len())
            .sum::<usize>();
        ips + principals
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use identity::{AuthMethod, PrincipalKind};

    fn quota(requests: u32, per_secs: u64) -> QuotaConfig {
        QuotaConfig { requests, per_secs, burst: None }
    }

    #[test]
    fn per_ip_refuses_past_the_burst_and_says_when_to_retry() {
        let limits =
            RateLimits::from_config(&RateLimitConfig { per_ip: Some(quota(3, 60)), ..Default::default() }).unwrap();
        let ip = IpAddr::from([192, 0, 2, 1]);
        for _ in 0..3 {
            limits.check_ip(ip).unwrap();
        }
        let limited = limits.check_ip(ip).unwrap_err();
        assert_eq!(limited.limiter, "ip");
        assert!(limited.retry_after > Duration::from_secs(15) && limited.retry_after <= Duration::from_secs(20));
        limits.check_ip(IpAddr::from([192, 0, 2, 2])).unwrap();
    }

    #[test]
    fn failed_authentications_block_the_address_only() {
        let config = RateLimitConfig { failed_auth_per_ip: Some(quota(2, 60)), ..Default::default() };
        let limits = RateLimits::from_config(&config).unwrap();
        let attacker = IpAddr::from([192, 0, 2, 66]);
        limits.failed_authentication(attacker);
        limits.failed_authentication(attacker);
        limits.check_ip(attacker).unwrap();
        limits.failed_authentication(attacker);
        assert_eq!(limits.check_ip(attacker).unwrap_err().limiter, "failed_auth");
        limits.check_ip(IpAddr::from([192, 0, 2, 7])).unwrap();
    }

    #[test]
    fn principal_override_then_most_generous_group_then_default() {
        let config = RateLimitConfig {
            per_principal: Some(quota(1, 60)),
            groups: HashMap::from([("etl".into(), quota(3, 60)), ("bulk".into(), quota(5, 60))]),
            principals: HashMap::from([("vip".into(), quota(2, 60))]),
            ..Default::default()
        };
        let limits = RateLimits::from_config(&config).unwrap();
        let passes = |id: &str, groups: &[&str]| {
            let mut p = Principal::new(PrincipalKind::Service, id, id, AuthMethod::ApiKey);
            p.groups = groups.iter().map(|g| g.to_string()).collect();
            (0..10).take_while(|_| limits.check_principal(&p).is_ok()).count()
        };
        assert_eq!(passes("plain", &[]), 1);
        assert_eq!(passes("loader", &["etl", "bulk"]), 5);
        assert_eq!(passes("vip", &["bulk"]), 2);
    }

    #[test]
    fn pruning_forgets_idle_keys() {
        let limits =
            RateLimits::from_config(&RateLimitConfig { per_ip: Some(quota(1000, 1)), ..Default::default() }).unwrap();
        for i in 0..1000u32 {
            limits.check_ip(IpAddr::from(i.to_be_bytes())).unwrap();
        }
        assert_eq!(limits.keys(), 1000);
        std::thread::sleep(Duration::from_millis(20));
        limits.prune();
        assert_eq!(limits.keys(), 0, "every key is back at full capacity after 20 ms at 1000/s");
    }

    #[test]
    fn bad_quotas_name_the_field() {
        let error = RateLimits::from_config(&RateLimitConfig { per_ip: Some(quota(0, 1)), ..Default::default() })
            .unwrap_err()
            .to_string();
        assert!(error.contains("rate_limits.per_ip"), "{error}");
    }
}
