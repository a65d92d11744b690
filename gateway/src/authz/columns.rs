//! The columns the engine's file declares for row and column policy (`columns:`), and what
//! they become in Cedar:
//!
//! - every declared column is a `Column` entity, child of its `Dataset`, with `name`,
//!   `dataset`, `type` (when declared) and `tags`: policies on `select` deny columns, on
//!   `unmask` lift masks;
//! - a dataset whose rows the schema gives a type, `Row::<schema>::<table>` (attributes:
//!   columns, optional where the column may be NULL), has its rows filtered by policies on
//!   `select_row`: strict validation refuses a condition on an attribute the type lacks, and
//!   the engine refuses a filter on a column the table lacks.

use cedar_policy::{EntityTypeName, PolicySet};
use identity::ColumnType;
use serde::Deserialize;

use super::sql::{DatasetName, NameDefaults};

/// One column as the engine's file declares it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ColumnDeclaration {
    #[serde(default, rename = "type")]
    kind: Option<ColumnType>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    nullable: bool,
}

impl ColumnDeclaration {
    pub(crate) fn column(self, name: String) -> DeclaredColumn {
        DeclaredColumn { name, kind: self.kind, tags: self.tags, nullable: self.nullable }
    }
}

/// A declared column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeclaredColumn {
    pub name: String,
    pub kind: Option<ColumnType>,
    pub tags: Vec<String>,
    pub nullable: bool,
}

impl DeclaredColumn {
    /// A pattern (`*_ssn`) rather than a column's name: the engine gives its tags, and the
    /// decision made for it, to every real column it matches that is not declared by name.
    pub(crate) fn is_pattern(&self) -> bool {
        identity::is_column_pattern(&self.name)
    }
}

/// The `Column` entity id of `column` of `dataset`: the dataset's id, a dot, and the column
/// (double-quoted when it contains `.` or `"`, as dataset ids quote their parts).
pub(crate) fn column_id(dataset: &DatasetName, column: &str) -> String {
    let mut id = dataset.to_string();
    id.push('.');
    if column.contains(['.', '"']) || column.is_empty() {
        id.push('"');
        id.push_str(&column.replace('"', "\"\""));
        id.push('"');
    } else {
        id.push_str(column);
    }
    id
}

/// Reads a [`column_id`] back: its dataset and column.
pub(crate) fn parse_column_id(id: &str) -> Option<(DatasetName, String)> {
    // The last dot outside double quotes separates the column.
    let mut quoted = false;
    let mut split = None;
    for (i, c) in id.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '.' if !quoted => split = Some(i),
            _ => {}
        }
    }
    let (dataset, column) = id.split_at(split?);
    let column = column.get(1..)?;
    let column = match column.strip_prefix('"').and_then(|c| c.strip_suffix('"')) {
        Some(inner) => inner.replace("\"\"", "\""),
        None => column.to_string(),
    };
    Some((DatasetName::parse_id(dataset)?, column))
}

/// Whether no policy of `policies` can tell two columns of one dataset with the same tags
/// apart: none names a `Column` entity, and none reads an attribute called `name` or `type`
/// (of anything: the check is on the policy's text, so it errs on the side of asking per
/// column).
pub(crate) fn columns_alike_by_tags(policies: &PolicySet) -> bool {
    fn distinguishes(json: &serde_json::Value) -> bool {
        match json {
            serde_json::Value::Object(map) => {
                let reads =
                    map.get("attr").and_then(serde_json::Value::as_str).is_some_and(|a| a == "name" || a == "type");
                let names =
                    map.get("type").and_then(serde_json::Value::as_str) == Some("Column") && map.contains_key("id");
                reads || names || map.values().any(distinguishes)
            }
            serde_json::Value::Array(items) => items.iter().any(distinguishes),
            _ => false,
        }
    }
    policies.policies().all(|policy| policy.to_json().is_ok_and(|json| !distinguishes(&json)))
}

/// The dataset whose rows `row_type` is (`Row::<schema>::<table>`, in the default catalog).
pub(crate) fn rows_of(row_type: &EntityTypeName, defaults: &NameDefaults) -> Option<DatasetName> {
    let text = row_type.to_string();
    let mut parts = text.split("::");
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("Row"), Some(schema), Some(table), None) => Some(DatasetName {
            catalog: defaults.catalog.clone(),
            schema: schema.to_string(),
            table: table.to_string(),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_row_types() {
        let defaults = NameDefaults { catalog: "datafusion".into(), schema: "public".into() };
        let customers = rows_of(&"Row::demo::customers".parse().unwrap(), &defaults).unwrap();
        assert_eq!(customers.to_string(), "datafusion.demo.customers");
        assert_eq!(rows_of(&"Row::x".parse().unwrap(), &defaults), None);
        assert_eq!(rows_of(&"Dataset".parse().unwrap(), &defaults), None);
        assert_eq!(column_id(&customers, "email"), "datafusion.demo.customers.email");
        assert_eq!(column_id(&customers, "a.b"), "datafusion.demo.customers.\"a.b\"");
        for column in ["email", "a.b", "say \"hi\""] {
            assert_eq!(parse_column_id(&column_id(&customers, column)), Some((customers.clone(), column.to_string())));
        }
        assert_eq!(parse_column_id("nodots"), None);
    }

    #[test]
    fn only_policies_blind_to_column_names_let_columns_be_decided_by_tag() {
        let set = |text: &str| text.parse::<PolicySet>().unwrap();
        let by_tags = r#"permit(principal, action, resource is Column) when { resource.tags.contains("pii") };"#;
        assert!(columns_alike_by_tags(&set(by_tags)));
        for names in [
            r#"permit(principal, action, resource is Column) when { resource.name == "email" };"#,
            r#"permit(principal, action, resource is Column) when { resource has type };"#,
            r#"forbid(principal, action, resource == Column::"datafusion.demo.customers.email");"#,
            r#"permit(principal, action, resource) when { resource in [Column::"datafusion.demo.t.a"] };"#,
        ] {
            assert!(!columns_alike_by_tags(&set(&format!("{by_tags}\n{names}"))), "{names}");
        }
    }
}
