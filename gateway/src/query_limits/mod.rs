//! Per-caller guardrails (`query_limits`): a tier per principal (its own, its groups', or
//! `default`) says what its statements may take. The engine enforces what only it can
//! (statement timeout, memory share, result caps: carried in the stamp's `limits`); the
//! gateway holds the rest itself, per query (`POST /v1/sql`, a Flight `DoGet`):
//! concurrency ([`slots`]) and the rows-per-window budget ([`row_budget`]), charged with
//! rows it counts itself ([`row_counter`]) as the result passes ([`metered`]).
//!
//! Fair sharing: each principal has its own concurrency cap, under a global one, and a query
//! waits at most `queue_wait_secs` for a slot (then 429), so one caller's heavy queries take
//! its own slots, never another's. Reloadable: [`QueryLimits::replace`].

mod ipc_message;
pub(crate) mod metered;
mod row_budget;
pub(crate) mod row_counter;
mod slots;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use identity::{OnExceed, Principal, StatementLimits};

use crate::config::{ConfigError, QueryLimitsConfig, RowsPerWindow, TierConfig};
pub(crate) use row_budget::RowBudget;
pub(crate) use slots::Slots;

/// The Cedar action whose permit lifts a caller's row caps and rows-per-window budget.
pub(crate) const UNLIMITED_ROWS: &str = "unlimited_rows";

/// One principal's limits, as its tier resolves.
#[derive(Debug)]
pub(crate) struct Tier {
    /// `default`, `group:<name>[+<name>…]` or `principal`: a metric label and the audit's.
    pub name: Arc<str>,
    /// What the engine enforces; `None` when the tier sets none of it.
    pub engine: Option<Arc<StatementLimits>>,
    /// `engine` without the result caps, for a caller Cedar permits `unlimited_rows`.
    pub lifted: Option<Arc<StatementLimits>>,
    pub concurrent_queries: Option<u32>,
    pub rows_per_window: Option<RowsPerWindow>,
}

impl Tier {
    /// Whether the tier sets any limit (then the audit event records it).
    pub(crate) fn limits_anything(&self) -> bool {
        self.engine.is_some() || self.concurrent_queries.is_some() || self.rows_per_window.is_some()
    }

    /// The engine's limits for a caller who is (or is not) permitted `unlimited_rows`.
    pub(crate) fn engine_limits(&self, unlimited_rows: bool) -> &Option<Arc<StatementLimits>> {
        if unlimited_rows { &self.lifted } else { &self.engine }
    }

    /// The row budget that applies.
    pub(crate) fn budget(&self, unlimited_rows: bool) -> Option<RowsPerWindow> {
        self.rows_per_window.filter(|_| !unlimited_rows)
    }
}

/// One configuration's tiers.
struct Tiers {
    default: Arc<Tier>,
    /// Each group's tier alone (a principal in one configured group).
    groups: HashMap<String, Arc<Tier>>,
    raw_groups: HashMap<String, TierConfig>,
    raw_default: TierConfig,
    principals: HashMap<String, Arc<Tier>>,
    global: Option<u32>,
    queue_wait: Duration,
}

/// The gateway's query limits: tiers, slots and budgets.
pub struct QueryLimits {
    live: ArcSwap<Tiers>,
    slots: Slots,
    budget: RowBudget,
}

impl std::fmt::Debug for QueryLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryLimits").finish_non_exhaustive()
    }
}

/// Why a query was not let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused {
    /// `concurrent_queries` or `rows_per_window`.
    pub limit: &'static str,
    pub tier: Arc<str>,
    pub retry_after: Duration,
    /// How long it waited for a slot before the refusal (zero: it did not wait).
    pub waited: Duration,
}

impl QueryLimits {
    pub(crate) fn from_config(config: &QueryLimitsConfig) -> Result<Self, ConfigError> {
        let tiers = Tiers::from_config(config)?;
        Ok(Self { slots: Slots::new(tiers.global), live: ArcSwap::from_pointee(tiers), budget: RowBudget::default() })
    }

    /// New tiers, checked first: a bad config is refused and the old tiers stay. Running
    /// queries keep their slots; budgets carry over.
    pub(crate) fn replace(&self, config: &QueryLimitsConfig) -> Result<(), ConfigError> {
        let tiers = Tiers::from_config(config)?;
        self.slots.set_global(tiers.global);
        self.live.store(Arc::new(tiers));
        Ok(())
    }

    /// The tier of `principal`: its own, else its configured groups' (the smallest of each
    /// limit), else `default`.
    pub(crate) fn tier(&self, principal: &Principal) -> Arc<Tier> {
        let live = self.live.load();
        if let Some(tier) = live.principals.get(&principal.id) {
            return Arc::clone(tier);
        }
        let mut matched = principal.groups.iter().filter_map(|g| live.raw_groups.get_key_value(g.as_str()));
        let Some(first) = matched.next() else { return Arc::clone(&live.default) };
        let Some(second) = matched.next() else {
            return live.groups.get(first.0).map_or_else(|| Arc::clone(&live.default), Arc::clone);
        };
        let mut tiers: Vec<(&String, &TierConfig)> = [first, second].into_iter().chain(matched).collect();
        tiers.sort_unstable_by_key(|(name, _)| *name);
        tiers.dedup_by_key(|(name, _)| *name);
        let smallest = tiers.iter().fold(TierConfig::default(), |acc, (_, tier)| smallest(&acc, tier));
        let names: Vec<&str> = tiers.iter().map(|(name, _)| name.as_str()).collect();
        Arc::new(resolve(format!("group:{}", names.join("+")), &smallest, &live.raw_default))
    }

    /// Admits one query of `principal` under `tier`: refused when its budget is spent, else
    /// waits (at most `queue_wait_secs`) for a slot of its own and a global one.
    pub(crate) async fn admit(
        &self,
        principal: &Principal,
        tier: &Tier,
        unlimited_rows: bool,
    ) -> Result<(slots::Held, slots::Waited), Refused> {
        if let Some(budget) = tier.budget(unlimited_rows)
            && let Err(retry_after) = self.budget.check(&principal.id, budget)
        {
            let tier = Arc::clone(&tier.name);
            return Err(Refused { limit: "rows_per_window", tier, retry_after, waited: Duration::ZERO });
        }
        let queue_wait = self.live.load().queue_wait;
        self.slots.acquire(&principal.id, tier.concurrent_queries, queue_wait).await.map_err(|waited| Refused {
            limit: "concurrent_queries",
            tier: Arc::clone(&tier.name),
            retry_after: slots::RETRY_AFTER,
            waited: waited.0,
        })
    }

    /// The row budgets, for charging what a result sends.
    pub(crate) fn budget(&self) -> &RowBudget {
        &self.budget
    }

    /// Forgets idle principals' slots and full budgets (bounded memory).
    pub(crate) fn prune(&self) {
        self.slots.prune();
        self.budget.prune();
    }
}

impl Tiers {
    fn from_config(config: &QueryLimitsConfig) -> Result<Self, ConfigError> {
        check(&config.default, "query_limits.default")?;
        for (name, tier) in &config.groups {
            check(tier, &format!("query_limits.groups.{name}"))?;
        }
        for (name, tier) in &config.principals {
            check(tier, &format!("query_limits.principals.{name}"))?;
        }
        if config.concurrent_queries == Some(0) {
            return Err(ConfigError::new("query_limits.concurrent_queries", "must be at least 1"));
        }
        if config.queue_wait_secs > 300 {
            return Err(ConfigError::new("query_limits.queue_wait_secs", "must be at most 300"));
        }
        let default = Arc::new(resolve("default".into(), &TierConfig::default(), &config.default));
        let groups = config
            .groups
            .iter()
            .map(|(name, tier)| (name.clone(), Arc::new(resolve(format!("group:{name}"), tier, &config.default))))
            .collect();
        let principals = config
            .principals
            .iter()
            .map(|(id, tier)| (id.clone(), Arc::new(resolve("principal".into(), tier, &config.default))))
            .collect();
        Ok(Self {
            default,
            groups,
            raw_groups: config.groups.clone(),
            raw_default: config.default.clone(),
            principals,
            global: config.concurrent_queries,
            queue_wait: Duration::from_secs(config.queue_wait_secs),
        })
    }
}

/// Refuses a limit that could never let a query through, naming it.
fn check(tier: &TierConfig, field: &str) -> Result<(), ConfigError> {
    let zero = |name: &str, value: Option<u64>| match value {
        Some(0) => Err(ConfigError::new(format!("{field}.{name}"), "must be at least 1")),
        _ => Ok(()),
    };
    zero("statement_timeout_secs", tier.statement_timeout_secs)?;
    zero("max_result_rows", tier.max_result_rows)?;
    zero("max_result_bytes", tier.max_result_bytes)?;
    zero("concurrent_queries", tier.concurrent_queries.map(u64::from))?;
    if let Some(percent) = tier.memory_percent
        && !(1..=100).contains(&percent)
    {
        return Err(ConfigError::new(format!("{field}.memory_percent"), "must be 1 to 100"));
    }
    if let Some(budget) = tier.rows_per_window {
        zero("rows_per_window.rows", Some(budget.rows))?;
        zero("rows_per_window.window_secs", Some(budget.window_secs))?;
    }
    Ok(())
}

/// Each limit of `a` and `b`, the smaller where both set it (`fail` is smaller than
/// `truncate`).
fn smallest(a: &TierConfig, b: &TierConfig) -> TierConfig {
    fn min<T: Ord + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
    let budget = match (a.rows_per_window, b.rows_per_window) {
        // The smaller rate; for equal rates the smaller burst.
        (Some(x), Some(y)) => {
            let (rx, ry) =
                (u128::from(x.rows) * u128::from(y.window_secs), u128::from(y.rows) * u128::from(x.window_secs));
            Some(if rx < ry || (rx == ry && x.rows <= y.rows) { x } else { y })
        }
        (x, y) => x.or(y),
    };
    TierConfig {
        statement_timeout_secs: min(a.statement_timeout_secs, b.statement_timeout_secs),
        memory_percent: min(a.memory_percent, b.memory_percent),
        max_result_rows: min(a.max_result_rows, b.max_result_rows),
        max_result_bytes: min(a.max_result_bytes, b.max_result_bytes),
        on_exceed: match (a.on_exceed, b.on_exceed) {
            (Some(OnExceed::Fail), _) | (_, Some(OnExceed::Fail)) => Some(OnExceed::Fail),
            (x, y) => x.or(y),
        },
        concurrent_queries: min(a.concurrent_queries, b.concurrent_queries),
        rows_per_window: budget,
    }
}

/// The tier `name` from `tier`, each limit it leaves out taken from `default`.
fn resolve(name: String, tier: &TierConfig, default: &TierConfig) -> Tier {
    let name: Arc<str> = Arc::from(name);
    let engine = StatementLimits {
        tier: name.to_string(),
        statement_timeout_secs: tier.statement_timeout_secs.or(default.statement_timeout_secs),
        memory_percent: tier.memory_percent.or(default.memory_percent),
        max_result_rows: tier.max_result_rows.or(default.max_result_rows),
        max_result_bytes: tier.max_result_bytes.or(default.max_result_bytes),
        on_exceed: tier.on_exceed.or(default.on_exceed).unwrap_or_default(),
    };
    let lifted = StatementLimits { max_result_rows: None, max_result_bytes: None, ..engine.clone() };
    let some = |limits: StatementLimits| {
        let any = limits.statement_timeout_secs.is_some() || limits.memory_percent.is_some() || limits.caps_result();
        any.then(|| Arc::new(limits))
    };
    Tier {
        name,
        engine: some(engine),
        lifted: some(lifted),
        concurrent_queries: tier.concurrent_queries.or(default.concurrent_queries),
        rows_per_window: tier.rows_per_window.or(default.rows_per_window),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use identity::{AuthMethod, PrincipalKind};

    fn principal(id: &str, groups: &[&str]) -> Principal {
        let mut p = Principal::new(PrincipalKind::User, id, id, AuthMethod::ApiKey);
        p.groups = groups.iter().map(|g| g.to_string()).collect();
        p
    }

    /// `query_limits` of a YAML document.
    fn parse(yaml: &str) -> Result<QueryLimitsConfig, String> {
        #[derive(serde::Deserialize)]
        struct Doc {
            query_limits: QueryLimitsConfig,
        }
        serde_yaml_ng::from_str::<Doc>(yaml).map(|d| d.query_limits).map_err(|e| e.to_string())
    }

    fn config() -> QueryLimitsConfig {
        parse(
            "query_limits:
  default: {statement_timeout_secs: 60, max_result_rows: 1000, concurrent_queries: 2}
  groups:
    analysts: {max_result_rows: 500, rows_per_window: {rows: 10000, window_secs: 3600}}
    contractors: {max_result_rows: 100, statement_timeout_secs: 120, on_exceed: fail}
    etl: {max_result_rows: 1000000, memory_percent: 50}
  principals:
    loader: {concurrent_queries: 8}
",
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_principal_tier_then_the_smallest_of_its_groups_then_default() {
        let limits = QueryLimits::from_config(&config()).unwrap();
        let plain = limits.tier(&principal("nobody", &["other"]));
        assert_eq!(&*plain.name, "default");
        assert_eq!(plain.engine.as_ref().unwrap().max_result_rows, Some(1000));

        let analyst = limits.tier(&principal("ann", &["analysts"]));
        assert_eq!(&*analyst.name, "group:analysts");
        let engine = analyst.engine.as_ref().unwrap();
        assert_eq!((engine.max_result_rows, engine.statement_timeout_secs), (Some(500), Some(60)));
        assert_eq!(analyst.concurrent_queries, Some(2), "left out: the default's");

        let both = limits.tier(&principal("cat", &["contractors", "analysts", "etl"]));
        assert_eq!(&*both.name, "group:analysts+contractors+etl");
        let engine = both.engine.as_ref().unwrap();
        assert_eq!(engine.max_result_rows, Some(100), "the smallest cap");
        assert_eq!(engine.statement_timeout_secs, Some(120), "only contractors set it");
        assert_eq!(engine.on_exceed, OnExceed::Fail);
        assert_eq!(engine.memory_percent, Some(50));
        assert!(both.rows_per_window.is_some());

        let loader = limits.tier(&principal("loader", &["contractors"]));
        assert_eq!((&*loader.name, loader.concurrent_queries), ("principal", Some(8)));
        assert_eq!(loader.engine.as_ref().unwrap().max_result_rows, Some(1000), "the default's, not its groups'");
    }

    #[test]
    fn unlimited_rows_lifts_the_caps_and_the_budget_only() {
        let limits = QueryLimits::from_config(&config()).unwrap();
        let analyst = limits.tier(&principal("ann", &["analysts"]));
        let lifted = analyst.engine_limits(true).as_ref().unwrap();
        assert_eq!((lifted.max_result_rows, lifted.statement_timeout_secs), (None, Some(60)));
        assert_eq!(analyst.budget(true), None);
        assert!(analyst.budget(false).is_some());
    }

    /// docs/gateway.md's example is a valid configuration, and resolves as it says.
    #[test]
    fn the_documented_example_loads() {
        let docs = include_str!("../../../docs/gateway.md");
        let example = docs
            .split("```yaml\n")
            .find(|block| block.starts_with("query_limits:"))
            .and_then(|block| block.split("```").next())
            .expect("docs/gateway.md has a query_limits example");
        let limits = QueryLimits::from_config(&parse(example).unwrap()).unwrap();
        let both = limits.tier(&principal("carol", &["analysts", "contractors"]));
        let engine = both.engine.as_ref().unwrap();
        assert_eq!((engine.max_result_rows, engine.on_exceed), (Some(1000), OnExceed::Fail));
        assert_eq!((both.concurrent_queries, engine.statement_timeout_secs), (Some(1), Some(300)));
        assert_eq!(&*limits.tier(&principal("nightly-export", &["analysts"])).name, "principal");
    }

    #[test]
    fn limits_that_let_nothing_through_are_refused_by_name() {
        for (yaml, field) in [
            ("query_limits: {groups: {a: {max_result_rows: 0}}}", "query_limits.groups.a.max_result_rows"),
            ("query_limits: {default: {memory_percent: 0}}", "query_limits.default.memory_percent"),
            ("query_limits: {default: {memory_percent: 101}}", "query_limits.default.memory_percent"),
            ("query_limits: {concurrent_queries: 0}", "query_limits.concurrent_queries"),
            (
                "query_limits: {principals: {p: {rows_per_window: {rows: 5, window_secs: 0}}}}",
                "query_limits.principals.p.rows_per_window.window_secs",
            ),
        ] {
            let error = QueryLimits::from_config(&parse(yaml).unwrap()).unwrap_err().to_string();
            assert!(error.contains(field), "{yaml}: {error}");
        }
    }
}
