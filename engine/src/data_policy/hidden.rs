//! A table as a caller with denied columns sees it: without them. `SELECT *` expands to the
//! columns the caller may see, `information_schema.columns` lists only those, and a statement
//! that names a denied column fails to plan (answered `column_forbidden`, see
//! [`super::denied_reference`]). Views are planned once, over the whole table: the analyzer
//! rule and its barrier refuse those that read a denied column.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Result;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;

/// `inner` without some of its columns.
#[derive(Debug)]
pub(crate) struct HiddenColumns {
    inner: Arc<dyn TableProvider>,
    schema: SchemaRef,
    /// For each visible column, its index in `inner`.
    visible: Vec<usize>,
}

impl HiddenColumns {
    pub(crate) fn new(inner: Arc<dyn TableProvider>, hidden: &[String]) -> Self {
        let full = inner.schema();
        let (visible, fields): (Vec<usize>, Vec<_>) = full
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, field)| !hidden.contains(field.name()))
            .map(|(i, field)| (i, Arc::clone(field)))
            .unzip();
        let schema = Arc::new(Schema::new_with_metadata(fields, full.metadata().clone()));
        Self { inner, schema, visible }
    }
}

impl HiddenColumns {
    /// The whole table: the policy barrier scans it (a row filter may read a denied column).
    pub(crate) fn inner(&self) -> Arc<dyn TableProvider> {
        Arc::clone(&self.inner)
    }
}

#[tonic::async_trait]
impl TableProvider for HiddenColumns {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    /// Filters name visible columns only, which the inner table knows by the same names.
    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let inner: Vec<usize> = match projection {
            Some(projection) => projection.iter().filter_map(|i| self.visible.get(*i).copied()).collect(),
            None => self.visible.clone(),
        };
        self.inner.scan(state, Some(&inner), filters, limit).await
    }
}
