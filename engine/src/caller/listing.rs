//! What a caller may see of the catalog. The engine has no policy of its own: for a
//! request that lists the catalog (`/v1/datasets`, Flight SQL GetTables / GetDbSchemas /
//! GetCatalogs, SQL `SHOW TABLES` or `information_schema`), the gateway signs the datasets
//! Cedar lets the caller read into the stamp, and everything else stays unlisted. A stamp
//! without that list lists nothing (fail closed).
//!
//! SQL sees the same filter through [`ListedCatalogs`]: enumerating catalogs, schemas and
//! tables (what `information_schema` is built from) is filtered, looking one up by name is
//! not, so queries resolve exactly as before and whether a query may read a table stays the
//! gateway's decision.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::catalog::{CatalogProvider, CatalogProviderList, SchemaProvider, TableProvider};
use datafusion::error::Result;

use crate::data_policy::HiddenColumns;

/// Which tables a catalog listing shows the caller.
#[derive(Debug, Clone)]
pub enum Listing {
    /// `--dangerous-dev-principal`: no gateway, no policy, everything is listed.
    Everything,
    /// Only these `catalog.schema.table` names.
    Only(Arc<[String]>),
}

impl Listing {
    pub fn nothing() -> Self {
        Listing::Only(Arc::from(Vec::new()))
    }

    pub fn shows(&self, catalog: &str, schema: &str, table: &str) -> bool {
        match self {
            Listing::Everything => true,
            Listing::Only(names) => names.iter().any(|name| {
                let mut parts = name.splitn(3, '.');
                parts.next() == Some(catalog) && parts.next() == Some(schema) && parts.next() == Some(table)
            }),
        }
    }

    fn shows_schema(&self, catalog: &str, schema: &str) -> bool {
        match self {
            Listing::Everything => true,
            Listing::Only(names) => names.iter().any(|name| {
                let mut parts = name.splitn(3, '.');
                parts.next() == Some(catalog) && parts.next() == Some(schema)
            }),
        }
    }

    fn shows_catalog(&self, catalog: &str) -> bool {
        match self {
            Listing::Everything => true,
            Listing::Only(names) => names.iter().any(|name| name.split('.').next() == Some(catalog)),
        }
    }
}

/// Per dataset (`catalog.schema.table`), the columns policy hides from the caller.
pub type Hidden = Option<Arc<HashMap<String, Vec<String>>>>;

/// The engine's catalogs as one request's SQL sees them: names listed per [`Listing`],
/// lookups unchanged, except that a table with columns policy denies the caller is seen
/// without them ([`crate::data_policy::HiddenColumns`]).
#[derive(Debug)]
pub struct ListedCatalogs {
    inner: Arc<dyn CatalogProviderList>,
    listing: Listing,
    hidden: Hidden,
}

impl ListedCatalogs {
    pub fn new(inner: Arc<dyn CatalogProviderList>, listing: Listing, hidden: Hidden) -> Self {
        Self { inner, listing, hidden }
    }
}

impl CatalogProviderList for ListedCatalogs {
    fn register_catalog(&self, name: String, catalog: Arc<dyn CatalogProvider>) -> Option<Arc<dyn CatalogProvider>> {
        self.inner.register_catalog(name, catalog)
    }

    fn catalog_names(&self) -> Vec<String> {
        let mut names = self.inner.catalog_names();
        names.retain(|c| self.listing.shows_catalog(c));
        names
    }

    fn catalog(&self, name: &str) -> Option<Arc<dyn CatalogProvider>> {
        let inner = self.inner.catalog(name)?;
        let (listing, hidden) = (self.listing.clone(), self.hidden.clone());
        Some(Arc::new(ListedCatalog { name: name.to_string(), inner, listing, hidden }))
    }
}

#[derive(Debug)]
struct ListedCatalog {
    name: String,
    inner: Arc<dyn CatalogProvider>,
    listing: Listing,
    hidden: Hidden,
}

impl CatalogProvider for ListedCatalog {
    fn schema_names(&self) -> Vec<String> {
        let mut names = self.inner.schema_names();
        names.retain(|s| self.listing.shows_schema(&self.name, s));
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        let inner = self.inner.schema(name)?;
        Some(Arc::new(ListedSchema {
            catalog: self.name.clone(),
            schema: name.to_string(),
            inner,
            listing: self.listing.clone(),
            hidden: self.hidden.clone(),
        }))
    }

    fn register_schema(&self, name: &str, schema: Arc<dyn SchemaProvider>) -> Result<Option<Arc<dyn SchemaProvider>>> {
        self.inner.register_schema(name, schema)
    }

    fn deregister_schema(&self, name: &str, cascade: bool) -> Result<Option<Arc<dyn SchemaProvider>>> {
        self.inner.deregister_schema(name, cascade)
    }
}

#[derive(Debug)]
struct ListedSchema {
    catalog: String,
    schema: String,
    inner: Arc<dyn SchemaProvider>,
    listing: Listing,
    hidden: Hidden,
}

#[tonic::async_trait]
impl SchemaProvider for ListedSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.inner.table_names();
        names.retain(|t| self.listing.shows(&self.catalog, &self.schema, t));
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let table = self.inner.table(name).await?;
        let Some(hidden) = &self.hidden else { return Ok(table) };
        let id = identity::dataset_id(&self.catalog, &self.schema, name);
        Ok(match (table, hidden.get(&id)) {
            (Some(table), Some(columns)) => Some(Arc::new(HiddenColumns::new(table, columns))),
            (table, _) => table,
        })
    }

    fn register_table(&self, name: String, table: Arc<dyn TableProvider>) -> Result<Option<Arc<dyn TableProvider>>> {
        self.inner.register_table(name, table)
    }

    fn deregister_table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        self.inner.deregister_table(name)
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_shows_only_the_named_tables() {
        let only = Listing::Only(Arc::from(vec!["datafusion.acme.orders".to_string()]));
        assert!(only.shows("datafusion", "acme", "orders"));
        assert!(!only.shows("datafusion", "globex", "orders"));
        assert!(!only.shows("datafusion", "acme", "orders2"));
        assert!(only.shows_schema("datafusion", "acme") && !only.shows_schema("datafusion", "globex"));
        assert!(only.shows_catalog("datafusion") && !only.shows_catalog("other"));
        assert!(!Listing::nothing().shows("datafusion", "acme", "orders"));
        assert!(Listing::Everything.shows("datafusion", "globex", "orders"));
    }
}
