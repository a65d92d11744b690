//! Access history: the tables, views and columns a planned statement reads, reported to the
//! gateway for its audit event ([`identity::AccessReport`]).
//!
//! Read from the planned statement with its projections pruned and nothing else (as
//! [`crate::data_policy::check_denied`] reads it): a column counts when the statement uses
//! it anywhere (projection, filter, join key, grouping, ordering, window), even where the
//! optimizer would later fold it away. A view's columns are followed into the view's own plan
//! (pruned to the columns used of it) down to the base tables. Row-filter columns of a
//! policy are not counted: the policy reads them, not the caller.

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
    for scan in scans(plan.clone())? {
        record(&mut read, &scan);
        follow(scan, &mut base, 0)?;
    }
    Ok(AccessReport { read: listed(read), base: listed(base), denied: None, columns_omitted: false })
}

/// The access report of a planned statement as its header value; `None` (logged) when it
/// cannot be made, which does not stop the statement: the gateway then records none.
pub(crate) fn header(frame: &datafusion::prelude::DataFrame) -> Option<String> {
    match report(frame.logical_plan()) {
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

/// Every scan of `plan` (subqueries included), its projection pruned to what is used.
fn scans(plan: LogicalPlan) -> Result<Vec<Scanned>> {
    let pruned = Optimizer::with_rules(vec![Arc::new(OptimizeProjections::new())]).optimize(
        plan,
        &OptimizerContext::new(),
        |_, _| {},
    )?;
    let mut out = Vec::new();
    pruned.apply_with_subqueries(|node| {
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
    let projected = LogicalPlanBuilder::from(view).project(used)?.build()?;
    for inner in scans(projected)? {
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
