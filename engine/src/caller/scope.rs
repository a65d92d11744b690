//! What one request's statement may resolve. The gateway authorizes the datasets it reads in
//! the SQL and signs them into the stamp's `scope`; the engine lets its own parser collect
//! every table the statement names (DataFusion's `resolve_table_references`: views by their
//! own name, CTEs excluded, `DESCRIBE` and `SHOW CREATE` targets included) and refuses to
//! plan when any is outside the scope. The planner resolves only the tables collected there,
//! so no table is scanned that the gateway did not authorize: where the two parsers read a
//! statement differently, the difference refuses, never allows. `information_schema` tables
//! are always resolvable; their rows are what the caller's [`crate::caller::listing::Listing`] shows.

use std::sync::Arc;

use datafusion::common::{ResolvedTableReference, TableReference};
use datafusion::execution::SessionState;
use datafusion::sql::parser::Statement;

use crate::error::EngineError;

/// The datasets a request's statement may resolve.
#[derive(Debug, Clone)]
pub enum Scope {
    /// `--dangerous-dev-principal`: no gateway, no policy.
    Everything,
    /// Only these, spelled as [`identity::dataset_id`] spells them.
    Only(Arc<[String]>),
}

impl Scope {
    pub fn nothing() -> Self {
        Scope::Only(Arc::from(Vec::new()))
    }

    /// Refuses `table` unless the scope names it or it is an `information_schema` table.
    pub fn admits(&self, table: &ResolvedTableReference) -> Result<(), EngineError> {
        let Scope::Only(names) = self else { return Ok(()) };
        if &*table.schema == "information_schema" {
            return Ok(());
        }
        let id = identity::dataset_id(&table.catalog, &table.schema, &table.table);
        if names.contains(&id) {
            return Ok(());
        }
        Err(EngineError::Forbidden(format!(
            "dataset {id} was not authorized for this statement (the gateway authorized {})",
            if names.is_empty() { "no dataset".to_string() } else { names.join(", ") }
        )))
    }

    /// Refuses `statement` when it names a table outside the scope, resolved as `state`
    /// will resolve it when planning.
    pub fn check(&self, state: &SessionState, statement: &Statement) -> Result<(), EngineError> {
        if matches!(self, Scope::Everything) {
            return Ok(());
        }
        let defaults = &state.config_options().catalog;
        for reference in state.resolve_table_references(statement)? {
            if table_function(state, &reference) {
                continue;
            }
            self.admits(&reference.resolve(&defaults.default_catalog, &defaults.default_schema))?;
        }
        Ok(())
    }

    /// The names, or `None` for everything (for sealing into a ticket).
    pub fn names(&self) -> Option<&Arc<[String]>> {
        match self {
            Scope::Everything => None,
            Scope::Only(names) => Some(names),
        }
    }
}

/// Whether `reference` names a table function (`generate_series(1, 10)`): DataFusion's
/// collector lists those beside tables, without their arguments. Only a bare name that no
/// table in the default schema also has: there the name could be a scan, so it needs the
/// scope like any table.
fn table_function(state: &SessionState, reference: &TableReference) -> bool {
    let TableReference::Bare { table } = reference else { return false };
    if !state.table_functions().contains_key(table.as_ref()) {
        return false;
    }
    let shadowed = state.schema_for_ref(reference.clone()).map_or(true, |schema| schema.table_exist(table));
    !shadowed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(name: &str) -> ResolvedTableReference {
        TableReference::parse_str(name).resolve("datafusion", "public")
    }

    #[test]
    fn only_the_named_datasets_and_the_information_schema() {
        let scope = Scope::Only(Arc::from(vec!["datafusion.public.bank".to_string()]));
        assert!(scope.admits(&resolved("bank")).is_ok());
        assert!(scope.admits(&resolved("datafusion.public.bank")).is_ok());
        assert!(scope.admits(&resolved("information_schema.columns")).is_ok());
        let error = scope.admits(&resolved("globex.orders")).unwrap_err();
        assert!(matches!(&error, EngineError::Forbidden(m) if m.contains("datafusion.globex.orders")), "{error}");
        // Quoting cannot make another table look like an authorized one.
        assert!(scope.admits(&TableReference::bare("public.bank").resolve("datafusion", "public")).is_err());
        assert!(Scope::nothing().admits(&resolved("bank")).is_err());
        assert!(Scope::Everything.admits(&resolved("globex.orders")).is_ok());
    }
}
