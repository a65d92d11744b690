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

use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};

/// The share of the memory limit the default pool takes, in percent.
const DEFAULT_POOL_PERCENT: u64 = 50;

/// A runtime whose pool holds `configured` bytes, or the default share of the memory limit.
pub fn runtime(configured: Option<u64>) -> Result<(Arc<RuntimeEnv>, u64), String> {
    let share = u128::from(process::memory_limit()) * u128::from(DEFAULT_POOL_PERCENT) / 100;
    let bytes = configured.unwrap_or(u64::try_from(share).unwrap_or(u64::MAX));
    let pool = FairSpillPool::new(usize::try_from(bytes).unwrap_or(usize::MAX));
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(pool))
        .build_arc()
        .map_err(|e| format!("limits.memory_pool_bytes: {e}"))?;
    Ok((runtime, bytes))
}
