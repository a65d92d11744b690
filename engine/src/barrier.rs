//! Views as security barriers. A view's row filter (`WHERE array_has(current_principal_groups(),
//! tenant)`) must remove rows before any expression of the caller sees them. DataFusion's
//! views are inlined into the caller's query, whose filters the optimizer then pushes down
//! and merges with the view's; the physical filter pushdown merges them again. A caller's
//! `1/CAST(CASE WHEN amount > 900 THEN 0 ELSE 1 END AS BIGINT) = 1` then ran on other
//! tenants' rows, and whether it failed (division by zero) answered a question about them.
//!
//! A [`BarrierView`] is not inlined: it is a table whose scan plans the view on its own and
//! returns it under a [`BarrierExec`], through which no filter is pushed. The caller's
//! filters run above it, on the rows the view let through. Only *leakproof* filters cross
//! (as PostgreSQL's `security_barrier` views allow): comparisons of a column with a literal
//! of its type, `IS [NOT] NULL`, `IN` a list of literals, and `AND`/`OR`/`NOT` of those.
//! They cannot fail or call a function, whatever row they meet, and they keep Parquet
//! pruning and partition elimination for the common `WHERE column = value` case.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use crate::data_policy::forbidden::ColumnForbidden;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{
    BinaryExpr, Expr, LogicalPlan, LogicalPlanBuilder, Operator, TableProviderFilterPushDown, TableType,
};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};

/// A view whose rows are filtered before the caller's expressions run (see the module docs).
#[derive(Debug)]
pub(crate) struct BarrierView {
    plan: LogicalPlan,
    schema: SchemaRef,
    definition: String,
    /// Output columns a leakproof filter may reach the view's plan through: named once in its
    /// output, and passed through from a scanned table unchanged (a filter on a column the
    /// view computes would have that computation pushed below the view's row filter).
    pushable: HashSet<String>,
    /// Columns (by index) that policy denies the caller: a scan that reads one is refused.
    forbidden: Vec<(usize, ColumnForbidden)>,
    /// A table's row and column policy (`crate::data_policy`), not a view: access history
    /// counts it as the table itself.
    policy: bool,
}

impl BarrierView {
    pub(crate) fn new(plan: LogicalPlan, definition: String) -> Self {
        let schema = Arc::new(plan.schema().as_arrow().clone());
        let mut seen = HashSet::new();
        let mut doubled = HashSet::new();
        for field in schema.fields() {
            if !seen.insert(field.name().clone()) {
                doubled.insert(field.name().clone());
            }
        }
        let passed = passed_through(&plan);
        let pushable = seen.difference(&doubled).filter(|name| passed.contains(*name)).cloned().collect();
        Self { plan, schema, definition, pushable, forbidden: Vec::new(), policy: false }
    }

    /// The view's own plan (what access history follows to the base tables).
    pub(crate) fn plan(&self) -> &LogicalPlan {
        &self.plan
    }

    /// Refuses a scan of `projection` (`None`: every column) that reads a denied column. Asked
    /// after the optimizer pruned what the query does not use: reading a denied column then
    /// means the query uses it.
    pub(crate) fn admits(&self, projection: Option<&Vec<usize>>) -> Result<()> {
        match self.forbidden.iter().find(|(i, _)| projection.is_none_or(|p| p.contains(i))) {
            Some((_, ColumnForbidden { dataset, column })) => {
                Err(DataFusionError::External(Box::new(ColumnForbidden {
                    dataset: dataset.clone(),
                    column: column.clone(),
                })))
            }
            None => Ok(()),
        }
    }

    /// A table's row and column policy (see [`crate::data_policy`]): refuses any scan that
    /// reads one of `forbidden`.
    pub(crate) fn policy(mut self, forbidden: Vec<(usize, ColumnForbidden)>) -> Self {
        self.forbidden = forbidden;
        self.policy = true;
        self
    }

    /// Whether this is a table's row and column policy rather than a view.
    pub(crate) fn is_policy(&self) -> bool {
        self.policy
    }

    /// Whether `expr` may be evaluated on rows the view filters out (see the module docs).
    fn leakproof(&self, expr: &Expr) -> bool {
        match expr {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
                Operator::And | Operator::Or => self.leakproof(left) && self.leakproof(right),
                Operator::Eq
                | Operator::NotEq
                | Operator::Lt
                | Operator::LtEq
                | Operator::Gt
                | Operator::GtEq
                | Operator::IsDistinctFrom
                | Operator::IsNotDistinctFrom => self.column_against_literal(left, right),
                _ => false,
            },
            Expr::Not(inner) => self.leakproof(inner),
            Expr::IsNull(inner) | Expr::IsNotNull(inner) => self.column(inner).is_some(),
            Expr::InList(list) => self
                .column(&list.expr)
                .is_some_and(|column| list.list.iter().all(|item| self.same_type_literal(column, item))),
            _ => false,
        }
    }

    fn column_against_literal(&self, left: &Expr, right: &Expr) -> bool {
        match (self.column(left), self.column(right)) {
            (Some(column), None) => self.same_type_literal(column, right),
            (None, Some(column)) => self.same_type_literal(column, left),
            _ => false,
        }
    }

    /// The view's column `expr` names, when a filter on it may cross (see `pushable`).
    fn column<'a>(&self, expr: &'a Expr) -> Option<&'a str> {
        let Expr::Column(column) = expr else { return None };
        self.pushable.contains(&column.name).then_some(column.name.as_str())
    }

    /// A literal of exactly the column's type: comparing needs no cast that could fail.
    fn same_type_literal(&self, column: &str, expr: &Expr) -> bool {
        let Expr::Literal(value, _) = expr else { return false };
        self.schema.field_with_name(column).is_ok_and(|field| value.data_type() == *field.data_type())
    }
}

#[tonic::async_trait]
impl TableProvider for BarrierView {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn get_table_definition(&self) -> Option<&str> {
        Some(&self.definition)
    }

    /// `None`: a view that offers its plan is inlined into the caller's query.
    fn get_logical_plan(&'_ self) -> Option<Cow<'_, LogicalPlan>> {
        None
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|filter| {
                if self.leakproof(filter) {
                    TableProviderFilterPushDown::Exact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.admits(projection)?;
        let mut plan = LogicalPlanBuilder::from(self.plan.clone());
        // Only leakproof filters are offered here (`supports_filters_pushdown`); their columns
        // carry the view's name as qualifier, the view's plan knows them by name.
        if let Some(filter) = filters.iter().cloned().reduce(Expr::and) {
            plan = plan.filter(unqualified(filter)?)?;
        }
        if let Some(projection) = projection {
            plan = plan.select(projection.iter().copied())?;
        }
        if let Some(limit) = limit {
            plan = plan.limit(0, Some(limit))?;
        }
        let physical = state.create_physical_plan(&plan.build()?).await?;
        Ok(Arc::new(BarrierExec::new(physical)))
    }
}

/// The output columns of `plan` that are a scanned table's columns, unchanged: through
/// projections that select them (renamed or not), filters, aliases, sorts and joins. Anything
/// else (an aggregate, a window, a union) passes nothing, to be safe.
fn passed_through(plan: &LogicalPlan) -> HashSet<String> {
    match plan {
        LogicalPlan::TableScan(scan) => scan.projected_schema.fields().iter().map(|f| f.name().clone()).collect(),
        LogicalPlan::Projection(projection) => {
            let input = passed_through(&projection.input);
            projection
                .expr
                .iter()
                .zip(projection.schema.fields())
                .filter(|(expr, _)| bare_column(expr).is_some_and(|c| input.contains(&c.name)))
                .map(|(_, field)| field.name().clone())
                .collect()
        }
        LogicalPlan::Filter(filter) => passed_through(&filter.input),
        LogicalPlan::SubqueryAlias(alias) => passed_through(&alias.input),
        LogicalPlan::Sort(sort) => passed_through(&sort.input),
        LogicalPlan::Join(join) => {
            let mut both = passed_through(&join.left);
            both.extend(passed_through(&join.right));
            both
        }
        _ => HashSet::new(),
    }
}

/// The column `expr` is, under any aliases.
fn bare_column(expr: &Expr) -> Option<&Column> {
    match expr {
        Expr::Column(column) => Some(column),
        Expr::Alias(alias) => bare_column(&alias.expr),
        _ => None,
    }
}

fn unqualified(expr: Expr) -> Result<Expr> {
    expr.transform(|e| match e {
        Expr::Column(column) => {
            Ok(Transformed::new(Expr::Column(Column::new_unqualified(column.name)), true, TreeNodeRecursion::Jump))
        }
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
}

/// Passes its input through unchanged. It exists for what it does not do: it takes no
/// filter from above (the default of `ExecutionPlan`), so none reaches the view's rows.
#[derive(Debug)]
pub(crate) struct BarrierExec {
    input: Arc<dyn ExecutionPlan>,
}

impl BarrierExec {
    pub(crate) fn new(input: Arc<dyn ExecutionPlan>) -> Self {
        Self { input }
    }
}

impl DisplayAs for BarrierExec {
    fn fmt_as(&self, _format: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BarrierExec")
    }
}

impl ExecutionPlan for BarrierExec {
    fn name(&self) -> &str {
        "BarrierExec"
    }

    /// The input's: rows, order and partitioning pass through unchanged.
    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        match <[_; 1]>::try_from(children) {
            Ok([input]) => Ok(Arc::new(BarrierExec::new(input))),
            Err(_) => Err(datafusion::error::DataFusionError::Internal("BarrierExec has one child".into())),
        }
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        self.input.execute(partition, context)
    }
}
