//! Row filters, column masks and column denies, enforced on the resolved plan.
//!
//! The gateway decides, per caller and dataset, what Cedar allows of each dataset's rows and
//! columns and signs it into the stamp ([`identity::DatasetPolicy`]). Here it is enforced by
//! an analyzer rule ([`DataPolicyRule`]), modelled on DataFusion's analyzer-rule example: it
//! runs after views are expanded and names resolved, and replaces every scan of a base table
//! the policy covers with a barrier ([`crate::barrier::BarrierView`]) over
//!
//! ```text
//! Projection: masks (same names and types), NULL for denied columns
//!   Filter: the row filter
//!     TableScan: the table
//! ```
//!
//! so every expression of the caller's query (projection, filter, join key, grouping,
//! ordering, window) sees only visible rows and masked values, and the row filter stays right
//! above the scan, where pushdown and Parquet pruning still apply. A denied column is refused
//! when the planned query reads it (`column_forbidden`), before anything runs.
//!
//! Fail closed: a table the engine's file declares columns for (a *governed* table) is
//! refused when the stamp carries no decision for it. In cluster mode the barrier crosses to
//! the scheduler and executors whole (`cluster::barrier_codec`); a `keyed_hash` mask under a
//! key drawn for this process is refused there (no node can hold the key).

pub(crate) mod forbidden;
mod hidden;
mod keyed_hash;
mod mask;
pub(crate) mod patterns;
mod row_filter;
mod text_mask;
mod year_only;

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::config::{ConfigEntry, ConfigExtension, ExtensionOptions};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DataFusionError, Result, ScalarValue};
use datafusion::config::ConfigOptions;
use datafusion::datasource::{DefaultTableSource, provider_as_source, source_as_provider};
use datafusion::logical_expr::{
    Expr, LogicalPlan, LogicalPlanBuilder, TableProviderFilterPushDown, TableScan, TableType,
};
use datafusion::optimizer::AnalyzerRule;
use datafusion::physical_plan::ExecutionPlan;
use identity::DatasetPolicy;

use crate::barrier::BarrierView;
use crate::catalog::live::LiveCatalogs;
pub use forbidden::ColumnForbidden;
pub(crate) use hidden::HiddenColumns;
pub(crate) use keyed_hash::MaskKey;

/// The decisions of the current query, carried in the session's `ConfigOptions` beside the
/// caller (see `caller::functions::Caller`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Decisions {
    /// Per dataset the statement (and the views it reads) touches.
    pub policies: Arc<[DatasetPolicy]>,
    /// Whether a governed table with no decision is refused: every stamped request; not
    /// `--dangerous-dev-principal`, which has no gateway.
    pub required: bool,
}

impl ConfigExtension for Decisions {
    const PREFIX: &'static str = "portcullis_data";
}

impl ExtensionOptions for Decisions {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn cloned(&self) -> Box<dyn ExtensionOptions> {
        Box::new(self.clone())
    }
    fn set(&mut self, key: &str, _value: &str) -> Result<()> {
        Err(DataFusionError::Plan(format!(
            "portcullis_data.{key} cannot be set: row and column policy comes only from the verified identity stamp"
        )))
    }
    fn entries(&self) -> Vec<ConfigEntry> {
        Vec::new()
    }
}

/// The analyzer rule (see the module docs).
#[derive(Debug)]
pub(crate) struct DataPolicyRule {
    /// What the engine serves now: the governed tables, with their tagged columns.
    served: Arc<LiveCatalogs>,
    key: MaskKey,
    /// Cluster mode: a `keyed_hash` mask needs a key every node holds.
    cluster: bool,
}

impl DataPolicyRule {
    pub(crate) fn new(served: Arc<LiveCatalogs>, key: MaskKey, cluster: bool) -> Self {
        Self { served, key, cluster }
    }

    fn rewrite(
        &self,
        scan: &TableScan,
        governed: &HashMap<String, Vec<String>>,
        decisions: &Decisions,
        config: &ConfigOptions,
    ) -> Result<Option<LogicalPlan>> {
        if is_governed_scan(scan) {
            return Ok(None);
        }
        let defaults = &config.catalog;
        let resolved = scan.table_name.clone().resolve(&defaults.default_catalog, &defaults.default_schema);
        let id = identity::dataset_id(&resolved.catalog, &resolved.schema, &resolved.table);
        let policy = decisions.policies.iter().find(|p| p.dataset == id);
        let tagged = governed.get(&id).map_or(&[][..], Vec::as_slice);
        let policy = match policy {
            Some(policy) => {
                // Every tagged column decided one way or another, or the gateway decided
                // without knowing the column is sensitive.
                let decided = |c: &String| {
                    policy.denied.contains(c)
                        || policy.unmasked.contains(c)
                        || policy.masks.iter().any(|m| &m.column == c)
                };
                if let Some(column) = tagged.iter().find(|c| !decided(c)) {
                    return Err(DataFusionError::External(Box::new(Undecided(format!(
                        "the decision for dataset {id} does not cover its tagged column {column}: the gateway must read the engine's configuration (authorization.engine_config), and a column a pattern tags is decided only while no policy names columns (declare it by name)"
                    )))));
                }
                if !policy.restricts() {
                    return Ok(None);
                }
                policy
            }
            None if decisions.required && governed.contains_key(&id) => {
                return Err(DataFusionError::External(Box::new(Undecided(format!(
                    "dataset {id} has row and column policies, but the request carries no decision for it"
                )))));
            }
            None => return Ok(None),
        };
        let provider = source_as_provider(&scan.source)?;
        // The table as the caller sees it (without denied columns, `HiddenColumns`) and the
        // whole table under it: a row filter may read a column the caller may not.
        let shown = provider.schema();
        let table = match provider.downcast_ref::<HiddenColumns>() {
            Some(hidden) => hidden.inner(),
            None => Arc::clone(&provider),
        };
        let inner = LogicalPlanBuilder::scan(
            scan.table_name.clone(),
            provider_as_source(Arc::new(Governed(Arc::clone(&table)))),
            None,
        )?;
        let column = |name: &str| Expr::Column(Column::new(Some(scan.table_name.clone()), name));
        let mut inner = match &policy.rows {
            Some(rows) => {
                let predicate = row_filter::expr(rows, &table.schema(), &column)
                    .map_err(|e| DataFusionError::Plan(format!("the row filter of dataset {id}: {e}")))?;
                inner.filter(predicate)?
            }
            None => inner,
        };
        let mut forbidden = Vec::new();
        let mut projection = Vec::with_capacity(shown.fields().len());
        for (i, field) in shown.fields().iter().enumerate() {
            let name = field.name();
            let expr = if policy.denied.iter().any(|d| d == name) {
                forbidden.push((i, ColumnForbidden { dataset: id.clone(), column: name.clone() }));
                mask::empty(field.data_type())
                    .unwrap_or(Expr::Literal(ScalarValue::try_from(field.data_type())?, None))
                    .alias_qualified(Some(scan.table_name.clone()), name)
            } else if let Some(mask) = policy.masks.iter().find(|m| &m.column == name) {
                if self.cluster && mask.mask == identity::Mask::KeyedHash && !self.key.is_shared() {
                    // Refused as an undecided table is (403 `forbidden`): no node holds a key
                    // drawn for this process.
                    return Err(DataFusionError::External(Box::new(Undecided(format!(
                        "dataset {id} has a keyed_hash mask without masking.keyed_hash_key_file for you, which cluster mode does not enforce: refused"
                    )))));
                }
                mask::expr(&mask.mask, column(name), field.data_type(), field.is_nullable(), &self.key)
                    .alias_qualified(Some(scan.table_name.clone()), name)
            } else {
                column(name)
            };
            projection.push(expr);
        }
        inner = inner.project(projection)?;
        let view = BarrierView::new(inner.build()?, format!("row and column policy of {id}")).policy(forbidden);
        let replaced = LogicalPlanBuilder::scan_with_filters(
            scan.table_name.clone(),
            provider_as_source(Arc::new(view)),
            scan.projection.clone(),
            scan.filters.clone(),
        )?
        .build()?;
        Ok(Some(replaced))
    }
}

impl AnalyzerRule for DataPolicyRule {
    fn analyze(&self, plan: LogicalPlan, config: &ConfigOptions) -> Result<LogicalPlan> {
        let Some(decisions) = config.extensions.get::<Decisions>() else { return Ok(plan) };
        let served = self.served.current();
        if decisions.policies.is_empty() && (!decisions.required || served.governed.is_empty()) {
            return Ok(plan);
        }
        let rewritten = plan.transform_up_with_subqueries(|node| {
            let LogicalPlan::TableScan(scan) = &node else { return Ok(Transformed::no(node)) };
            match self.rewrite(scan, &served.governed, decisions, config)? {
                Some(replaced) => Ok(Transformed::yes(replaced)),
                None => Ok(Transformed::no(node)),
            }
        })?;
        if !rewritten.transformed {
            return Ok(rewritten.data);
        }
        // Masks may make a column nullable: the nodes above learn it.
        rewritten
            .data
            .transform_up_with_subqueries(|node| node.recompute_schema().map(Transformed::yes))
            .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "portcullis_data_policy"
    }
}

/// The mask functions a cluster node registers to run the plans a coordinator sends it: the
/// text masks and `year_only`, and `keyed_hash` under `key` (the coordinator's
/// `masking.keyed_hash_key_file`; without it the node refuses plans that hash).
pub fn node_functions(key: Option<&[u8]>) -> Result<Vec<Arc<datafusion::logical_expr::ScalarUDF>>, String> {
    let mut functions = vec![
        Arc::new(text_mask::TextMask::EmailDomain.function()),
        Arc::new(text_mask::TextMask::Last4.function()),
        Arc::new(year_only::function()),
    ];
    if let Some(secret) = key {
        functions.push(MaskKey::new(secret)?.function());
    }
    Ok(functions)
}

/// Refuses a statement that names a column policy denies the caller, anywhere: `plan` is
/// analyzed (the barriers put in) and its projections pruned, and nothing else, so a column
/// named only in a predicate the optimizer would fold away (`national_id IS NOT NULL`) still
/// counts. A Flight call is refused where it plans, not only when its ticket is fetched.
pub(crate) fn check_denied(plan: LogicalPlan, state: &datafusion::execution::SessionState) -> Result<()> {
    let analyzed = state.analyzer().execute_and_check(plan, state.config_options(), |_, _| {})?;
    let pruned = datafusion::optimizer::Optimizer::with_rules(vec![Arc::new(
        datafusion::optimizer::optimize_projections::OptimizeProjections::new(),
    )])
    .optimize(analyzed, state, |_, _| {})?;
    pruned
        .apply_with_subqueries(|node| {
            if let LogicalPlan::TableScan(scan) = node
                && let Some(source) = scan.source.downcast_ref::<DefaultTableSource>()
                && let Some(barrier) = source.table_provider.downcast_ref::<BarrierView>()
            {
                barrier.admits(scan.projection.as_ref())?;
            }
            Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
        })
        .map(|_| ())
}

/// The column a planning error says does not exist, when policy denies it to the caller:
/// the table was shown without it ([`HiddenColumns`]), and the caller learns why.
pub(crate) fn denied_reference(error: &DataFusionError, policies: &[DatasetPolicy]) -> Option<ColumnForbidden> {
    let DataFusionError::SchemaError(schema_error, _) = error.find_root() else { return None };
    let datafusion::common::SchemaError::FieldNotFound { field, .. } = schema_error.as_ref() else { return None };
    policies.iter().find_map(|policy| {
        policy
            .denied
            .contains(&field.name)
            .then(|| ColumnForbidden { dataset: policy.dataset.clone(), column: field.name.clone() })
    })
}

/// Per dataset (`catalog.schema.table`), the columns `policies` deny; `None` when none.
pub(crate) fn denied_columns(policies: &[DatasetPolicy]) -> Option<Arc<HashMap<String, Vec<String>>>> {
    let denied: HashMap<String, Vec<String>> =
        policies.iter().filter(|p| !p.denied.is_empty()).map(|p| (p.dataset.clone(), p.denied.clone())).collect();
    (!denied.is_empty()).then(|| Arc::new(denied))
}

/// A governed table scanned without a decision: the gateway did not decide for it (an older
/// gateway, or a view the gateway did not expand), or a decision this process cannot enforce
/// (cluster mode); refused, never served unfiltered.
#[derive(Debug)]
pub struct Undecided(String);

impl fmt::Display for Undecided {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Undecided {}

/// The table inside a policy barrier, marked so the rule does not wrap it again when the
/// barrier plans it.
#[derive(Debug)]
struct Governed(Arc<dyn TableProvider>);

fn is_governed_scan(scan: &TableScan) -> bool {
    scan.source.downcast_ref::<DefaultTableSource>().is_some_and(|source| source.table_provider.is::<Governed>())
}

#[tonic::async_trait]
impl TableProvider for Governed {
    fn schema(&self) -> SchemaRef {
        self.0.schema()
    }
    fn table_type(&self) -> TableType {
        self.0.table_type()
    }
    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        self.0.supports_filters_pushdown(filters)
    }
    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.0.scan(state, projection, filters, limit).await
    }
}

/// `plan` without the marker on the tables inside policy barriers: what a cluster's
/// scheduler decodes (it runs no rule of ours, so nothing there would wrap them again).
pub(crate) fn unmarked(plan: &LogicalPlan) -> Result<LogicalPlan> {
    plan.clone()
        .transform_up(|node| match node {
            LogicalPlan::TableScan(mut scan) => {
                let inner = scan
                    .source
                    .downcast_ref::<DefaultTableSource>()
                    .and_then(|source| source.table_provider.downcast_ref::<Governed>())
                    .map(|governed| Arc::clone(&governed.0));
                match inner {
                    Some(table) => {
                        scan.source = provider_as_source(table);
                        Ok(Transformed::yes(LogicalPlan::TableScan(scan)))
                    }
                    None => Ok(Transformed::no(LogicalPlan::TableScan(scan))),
                }
            }
            other => Ok(Transformed::no(other)),
        })
        .map(|t| t.data)
}
