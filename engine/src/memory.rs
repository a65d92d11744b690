//! How much memory queries may hold: the engine's DataFusion memory pool, sized from the
//! memory this process may use.
//!
//! Without a pool, one query's hash aggregation or sort grows until the kernel kills the
//! process, and every tenant's queries fail with it. With one, operators that can spill to
//! disk (sorts, aggregations, joins' build sides where DataFusion supports it) do, and the
//! others fail that query with `resource_exhausted`. The default pool is half of the
//! process's memory limit (its cgroup's, else the host's): the other half is for what the
//! pool does not account (result batches in flight, scalar functions' output, the catalog).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::error::DataFusionError;
use datafusion::execution::memory_pool::{FairSpillPool, MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};

/// The share of the memory limit the default pool takes, in percent.
const DEFAULT_POOL_PERCENT: u64 = 50;

/// A runtime whose pool holds `configured` bytes, or the default share of the memory limit:
/// the process's (its cgroup's, else the host's), or `container`'s (what the container's
/// resources state) when smaller.
pub fn runtime(configured: Option<u64>, container: Option<u64>) -> Result<(Arc<RuntimeEnv>, u64), String> {
    let limit = container.map_or_else(process::memory_limit, |bytes| bytes.min(process::memory_limit()));
    let share = u128::from(limit) * u128::from(DEFAULT_POOL_PERCENT) / 100;
    let bytes = configured.unwrap_or(u64::try_from(share).unwrap_or(u64::MAX));
    let pool = FairSpillPool::new(usize::try_from(bytes).unwrap_or(usize::MAX));
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(pool))
        .build_arc()
        .map_err(|e| format!("limits.memory_pool_bytes: {e}"))?;
    Ok((runtime, bytes))
}

/// One statement's view of the engine's pool when its caller's tier gives it a share
/// (`memory_percent`): every reservation still comes from the engine's pool, and the
/// statement's own total may not pass `limit`. Operators that spill do so at the share;
/// the others fail the statement naming the tier.
#[derive(Debug)]
pub struct SharePool {
    inner: Arc<dyn MemoryPool>,
    limit: usize,
    used: AtomicUsize,
    /// The tier the share is from, for the error.
    tier: String,
}

impl SharePool {
    pub fn new(inner: Arc<dyn MemoryPool>, limit: usize, tier: &str) -> Self {
        Self { inner, limit, used: AtomicUsize::new(0), tier: tier.to_string() }
    }
}

impl std::fmt::Display for SharePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a share of {} bytes of {}", self.limit, self.inner)
    }
}

impl MemoryPool for SharePool {
    fn name(&self) -> &str {
        "portcullis-share"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.inner.register(consumer);
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.inner.unregister(consumer);
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.inner.grow(reservation, additional);
        self.used.fetch_add(additional, Ordering::Relaxed);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.inner.shrink(reservation, shrink);
        self.used.fetch_sub(shrink, Ordering::Relaxed);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> datafusion::error::Result<()> {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let wanted = used.saturating_add(additional);
            if wanted > self.limit {
                crate::metrics::limit_applied(&self.tier, "memory_percent");
                return Err(DataFusionError::ResourcesExhausted(format!(
                    "the statement needs more than its memory share ({} bytes, memory_percent of tier {}) \
                     and what it holds cannot spill",
                    self.limit, self.tier
                )));
            }
            match self.used.compare_exchange_weak(used, wanted, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => used = now,
            }
        }
        if let Err(error) = self.inner.try_grow(reservation, additional) {
            self.used.fetch_sub(additional, Ordering::Relaxed);
            return Err(error);
        }
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.limit)
    }
}

/// `runtime` with its pool seen through a [`SharePool`] of `limit` bytes, for one statement.
pub fn with_share(runtime: &RuntimeEnv, limit: usize, tier: &str) -> Result<Arc<RuntimeEnv>, DataFusionError> {
    let pool = SharePool::new(Arc::clone(&runtime.memory_pool), limit, tier);
    RuntimeEnvBuilder::from_runtime_env(runtime).with_memory_pool(Arc::new(pool)).build_arc()
}
