//! What the engine serves, swapped whole when its file changes. The session's catalog list
//! is a [`LiveCatalogs`]: every lookup goes to the current [`Served`], so a reload that
//! loaded whole is seen by the next statement, while a statement already planned keeps the
//! tables it resolved (their providers are its own references) and runs to its end.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemoryCatalogProvider, MemoryCatalogProviderList, MemorySchemaProvider,
};

use crate::data_policy::patterns::Patterns;

/// The datasets and views of one version of the engine's file, with their column policy.
#[derive(Debug)]
pub(crate) struct Served {
    pub catalogs: Arc<dyn CatalogProviderList>,
    /// `catalog.schema.table` of every governed table, with its tagged columns.
    pub governed: HashMap<String, Vec<String>>,
    /// The real columns `columns:` patterns tag, per governed table.
    pub patterns: Patterns,
}

impl Served {
    /// An empty catalog list with the default catalog and schema (`datafusion.public`), for
    /// a version to be loaded into.
    pub(crate) fn empty_catalogs() -> Arc<dyn CatalogProviderList> {
        let catalogs = MemoryCatalogProviderList::new();
        let catalog = MemoryCatalogProvider::new();
        // A fresh catalog takes any schema; nothing can fail here.
        let _ = catalog.register_schema("public", Arc::new(MemorySchemaProvider::new()));
        catalogs.register_catalog("datafusion".into(), Arc::new(catalog));
        Arc::new(catalogs)
    }
}

/// The session's catalog list (see the module docs).
#[derive(Debug)]
pub(crate) struct LiveCatalogs {
    current: ArcSwap<Served>,
}

impl LiveCatalogs {
    pub(crate) fn new(served: Served) -> Self {
        Self { current: ArcSwap::from_pointee(served) }
    }

    pub(crate) fn current(&self) -> Arc<Served> {
        self.current.load_full()
    }

    pub(crate) fn replace(&self, served: Served) {
        self.current.store(Arc::new(served));
    }
}

impl CatalogProviderList for LiveCatalogs {
    fn register_catalog(&self, name: String, catalog: Arc<dyn CatalogProvider>) -> Option<Arc<dyn CatalogProvider>> {
        self.current.load().catalogs.register_catalog(name, catalog)
    }

    fn catalog_names(&self) -> Vec<String> {
        self.current.load().catalogs.catalog_names()
    }

    fn catalog(&self, name: &str) -> Option<Arc<dyn CatalogProvider>> {
        self.current.load().catalogs.catalog(name)
    }
}
