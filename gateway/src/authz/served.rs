//! The datasets the engine serves, read from the engine's own configuration file
//! (`authorization.engine_config`), so onboarding a dataset is one edit: add it to the
//! engine's `datasets:` or `views:` with its `tenant` and `classification`, and it is a Cedar
//! `Dataset` entity with those attributes. Knowing what is served also lets the gateway answer
//! a query on a table that does not exist with 404 instead of a silent 403, and lets
//! `policy validate` warn about a policy or test naming a dataset that is not served.
//!
//! Only the fields read here are interpreted; the engine validates its file itself.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::Token;

use super::columns::{ColumnDeclaration, DeclaredColumn};
use super::sql::{self, DatasetName, NameDefaults};

#[derive(Deserialize)]
struct EngineFile {
    #[serde(default)]
    demo_data: bool,
    #[serde(default)]
    datasets: Vec<Entry>,
    #[serde(default)]
    views: Vec<Entry>,
    /// Declared columns per dataset name (see [`super::columns`]).
    #[serde(default)]
    columns: BTreeMap<String, BTreeMap<String, ColumnDeclaration>>,
}

#[derive(Deserialize)]
struct Entry {
    name: String,
    /// A view's SQL: the datasets it reads are decided for with it.
    #[serde(default)]
    sql: Option<String>,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    classification: Option<String>,
}

/// One served dataset and the labels the engine's file gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Served {
    pub name: DatasetName,
    pub tenant: Option<String>,
    pub classification: Option<String>,
    /// Where it is defined, for messages: `engine.yaml: datasets[2]`.
    pub origin: String,
    /// The columns the engine's file declares for row and column policy (empty: ungoverned).
    pub columns: Vec<DeclaredColumn>,
    /// For a view, the datasets its SQL reads.
    pub reads: Vec<DatasetName>,
}

impl Served {
    pub(crate) fn labelled(&self) -> bool {
        self.tenant.is_some() || self.classification.is_some()
    }
}

/// Reads the served datasets from the engine configuration file at `path`.
pub(crate) fn read(path: &Path, defaults: &NameDefaults) -> Result<Vec<Served>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file: EngineFile = serde_yaml_ng::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    let demo: &[&str] = if file.demo_data { &identity::DEMO_TABLES } else { &[] };
    for (i, name) in demo.iter().enumerate() {
        let origin = format!("{}: demo_data[{i}]", path.display());
        let name = parse(name, defaults, &origin)?;
        out.push(Served { name, tenant: None, classification: None, origin, columns: Vec::new(), reads: Vec::new() });
    }
    for (section, entries) in [("datasets", file.datasets), ("views", file.views)] {
        for (i, entry) in entries.into_iter().enumerate() {
            let origin = format!("{}: {section}[{i}] ({})", path.display(), entry.name);
            let name = parse(&entry.name, defaults, &origin)?;
            // A view whose SQL the gateway cannot read gets no decisions for the tables it
            // reads: the engine then refuses it if one is governed (fail closed).
            let reads = match entry.sql.as_deref().map(|sql| view_reads(sql, defaults)) {
                Some(Ok(reads)) => reads,
                Some(Err(error)) => {
                    tracing::warn!(%origin, %error, "cannot tell which datasets this view reads");
                    Vec::new()
                }
                None => Vec::new(),
            };
            let (tenant, classification) = (entry.tenant, entry.classification);
            out.push(Served { name, tenant, classification, origin, columns: Vec::new(), reads });
        }
    }
    for (dataset, columns) in file.columns {
        let origin = format!("{}: columns.{dataset}", path.display());
        let name = parse(&dataset, defaults, &origin)?;
        let served = out
            .iter_mut()
            .find(|s| s.name == name && s.reads.is_empty())
            .ok_or_else(|| format!("{origin}: no dataset or demo table is named {dataset}"))?;
        served.columns = columns.into_iter().map(|(name, declared)| declared.column(name)).collect();
    }
    Ok(out)
}

/// The datasets a view's SQL reads (a view over views reads theirs too, resolved by the
/// caller of [`read`]).
fn view_reads(sql: &str, defaults: &NameDefaults) -> Result<Vec<DatasetName>, String> {
    let accesses = sql::analyze(sql, defaults).map_err(|e| e.to_string())?;
    let mut reads: Vec<DatasetName> =
        accesses.into_iter().flat_map(|a| a.datasets.into_iter().map(|(_, name)| name)).collect();
    reads.sort();
    reads.dedup();
    Ok(reads)
}

/// The engine's `table` / `schema.table` names, resolved the way the engine (and the SQL
/// analyzer) resolves them.
fn parse(name: &str, defaults: &NameDefaults, origin: &str) -> Result<DatasetName, String> {
    let object = Parser::new(&GenericDialect {})
        .try_with_sql(name)
        .and_then(|mut parser| {
            let object = parser.parse_object_name(false)?;
            // The whole name, not its first word: `a b c` is no table name.
            match parser.peek_token().token {
                Token::EOF => Ok(object),
                other => Err(ParserError::ParserError(format!("unexpected {other} after the name"))),
            }
        })
        .map_err(|e| format!("{origin}: name {name:?}: {e}"))?;
    sql::dataset_name(&object, defaults).map_err(|e| format!("{origin}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datasets_views_and_demo_tables_with_their_labels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("engine.yaml");
        let yaml = "demo_data: true\nhttp_listen: 127.0.0.1:1\ndatasets:\n  - {name: Sales.Orders, path: x.csv, tenant: acme}\nviews:\n  - {name: whoami, sql: SELECT 1, classification: public}\n";
        std::fs::write(&path, yaml).unwrap();
        let defaults = NameDefaults { catalog: "datafusion".into(), schema: "public".into() };
        let served = read(&path, &defaults).unwrap();
        let names: Vec<String> = served.iter().map(|s| s.name.to_string()).collect();
        assert_eq!(
            names,
            [
                "datafusion.demo.customers",
                "datafusion.demo.orders",
                "datafusion.sales.orders",
                "datafusion.public.whoami"
            ]
        );
        assert_eq!(served[2].tenant.as_deref(), Some("acme"));
        assert!(served[2].origin.ends_with("datasets[0] (Sales.Orders)"), "{}", served[2].origin);
        assert_eq!(served[3].classification.as_deref(), Some("public"));
        assert!(!served[0].labelled());
        std::fs::write(&path, "datasets:\n  - {name: 'a b c', path: x}\n").unwrap();
        assert!(read(&path, &defaults).unwrap_err().contains("datasets[0]"));
        assert!(read(&dir.path().join("missing.yaml"), &defaults).is_err());
    }
}
