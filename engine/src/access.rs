//! Access history: the tables, views and columns a statement reads, reported to the
//! gateway for its audit event ([`identity::AccessReport`]).
//!
//! Read from the optimized plan the statement runs as (no planning of its own): every scan
//! with the columns it reads, those of filters pushed into it included, so a column counts
//! when the statement uses it anywhere (projection, filter, join key, grouping, ordering,
//! window) and the optimizer kept it. A view's columns are followed into the view's own plan
//! (pruned to the columns used of it) down to the base tables. A table's row and column
//! policy counts as the table: the columns its row filter reads are the policy's, not the
//! caller's.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Column, Result};
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, TableScan};
use datafusion::optimizer::optimize_projections::OptimizeProjections;
use datafusion::optimizer::{Optimizer, OptimizerContext};
use identity::{AccessReport, ReadColumns};

use crate::barrier::BarrierView;

/// Views inside views are followed this deep (a view can only read views defined before it,
/// so there is no cycle; this bounds the work of a long chain).
const MAX_VIEW_DEPTH: usize = 16;

type Reads = BTreeMap<String, BTreeSet<String>>;

/// What `plan` reads (see the module docs). `EXPLAIN` without `ANALYZE` reads nothing.
pub(crate) fn report(plan: &LogicalPlan) -> Result<AccessReport> {
    if matches!(plan, LogicalPlan::Explain(_)) {
        return Ok(AccessReport::default());
    }
    let mut read = Reads::new();
    let mut base = Reads::new();
    for scan in scans(plan)? {
        record(&mut read, &scan);
        follow(scan, &mut base, 0)?;
    }
    Ok(AccessReport { read: listed(read), base: listed(base), denied: None, columns_omitted: false })
}

/// The access report of the optimized plan `plan` as its header value; `None` (logged) when
/// it cannot be made, which does not stop the statement: the gateway then records none.
pub(crate) fn header(plan: &LogicalPlan) -> Option<String> {
    match report(plan) {
        Ok(report) => Some(report.to_header()),
        Err(error) => {
            tracing::warn!(%error, "cannot say what the statement reads: its audit event will not");
            None
        }
    }
}

/// One relation scanned, with the columns read of it.
struct Scanned {
    dataset: String,
    provider: Option<Arc<dyn TableProvider>>,
    columns: Vec<String>,
}

/// Every scan of `plan` (subqueries included).
fn scans(plan: &LogicalPlan) -> Result<Vec<Scanned>> {
    let mut out = Vec::new();
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            out.push(scanned(scan));
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(out)
}

fn scanned(scan: &TableScan) -> Scanned {
    let schema = scan.source.schema();
    let mut columns: Vec<String> = match &scan.projection {
        Some(projection) => {
            projection.iter().filter_map(|&i| schema.fields().get(i)).map(|f| f.name().clone()).collect()
        }
        None => schema.fields().iter().map(|f| f.name().clone()).collect(),
    };
    for filter in &scan.filters {
        columns.extend(filter.column_refs().into_iter().map(|c| c.name.clone()));
    }
    let resolved = scan.table_name.clone().resolve("datafusion", "public");
    Scanned {
        dataset: identity::dataset_id(&resolved.catalog, &resolved.schema, &resolved.table),
        provider: source_as_provider(&scan.source).ok(),
        columns,
    }
}

fn record(reads: &mut Reads, scan: &Scanned) {
    reads.entry(scan.dataset.clone()).or_default().extend(scan.columns.iter().cloned());
}

/// Records the base columns behind `scan`: itself for a table, the scans of its plan
/// (pruned to the columns used) for a view.
fn follow(scan: Scanned, base: &mut Reads, depth: usize) -> Result<()> {
    let view = scan.provider.as_ref().and_then(|provider| match provider.downcast_ref::<BarrierView>() {
        Some(barrier) if barrier.is_policy() => None,
        Some(barrier) => Some(barrier.plan().clone()),
        None => provider.get_logical_plan().map(|plan| plan.into_owned()),
    });
    let Some(view) = view.filter(|_| depth < MAX_VIEW_DEPTH) else {
        record(base, &scan);
        return Ok(());
    };
    let schema = Arc::clone(view.schema());
    let used: Vec<Expr> = (0..schema.fields().len())
        .filter(|&i| scan.columns.contains(schema.field(i).name()))
        .map(|i| Expr::Column(Column::from(schema.qualified_field(i))))
        .collect();
    // The view's own plan is not optimized: prune it to the columns used of it.
    let projected = LogicalPlanBuilder::from(view).project(used)?.build()?;
    let pruned = Optimizer::with_rules(vec![Arc::new(OptimizeProjections::new())]).optimize(
        projected,
        &OptimizerContext::new(),
        |_, _| {},
    )?;
    for inner in scans(&pruned)? {
        follow(inner, base, depth + 1)?;
    }
    Ok(())
}

fn listed(reads: Reads) -> Vec<ReadColumns> {
    reads
        .into_iter()
        .map(|(dataset, columns)| ReadColumns { dataset, columns: columns.into_iter().collect() })
        .collect()
}
