//! Registering tables in the session's catalog, below the modules that build it (query,
//! datasets, demo).

use std::sync::Arc;

use datafusion::catalog::MemorySchemaProvider;
use datafusion::common::TableReference;
use datafusion::datasource::TableProvider;
use datafusion::prelude::SessionContext;

/// Registers `table` under `name` (`table` or `schema.table`), creating the schema if needed.
pub(crate) fn register_table(
    ctx: &SessionContext,
    name: &str,
    table: Arc<dyn TableProvider>,
) -> datafusion::error::Result<()> {
    let reference = TableReference::parse_str(name);
    if let Some(schema) = reference.schema() {
        let catalog = ctx
            .catalog("datafusion")
            .ok_or_else(|| datafusion::error::DataFusionError::Plan("default catalog missing".into()))?;
        if catalog.schema(schema).is_none() {
            catalog.register_schema(schema, Arc::new(MemorySchemaProvider::new()))?;
        }
    }
    if ctx.table_exist(reference.clone())? {
        return Err(datafusion::error::DataFusionError::Plan(format!("{name} is defined twice")));
    }
    ctx.register_table(reference, table)?;
    Ok(())
}
