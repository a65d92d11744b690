//! Column patterns: a `columns:` key such as `*_ssn` tags every column of the table's real
//! schema it matches that is not declared by name, so a column added to a Parquet file is
//! governed at the next start without an edit.
//!
//! The gateway does not know the real columns: it decides for the pattern as for one column
//! (a `Column` entity named by the pattern, with its tags), and the decision names the
//! pattern (`denied: ["*_ssn"]`). Here each decision is expanded to the real columns the
//! pattern matched, before anything reads it. A real column that two patterns match is
//! refused at start (which tags it carries would be a guess); a column declared by name
//! takes only its own declaration.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::Schema;
use identity::{ColumnMask, DatasetPolicy};

use crate::config::ColumnSpec;

/// Per governed table (`catalog.schema.table`): each real column a pattern tags, with the
/// pattern.
#[derive(Debug, Default)]
pub(crate) struct Patterns(HashMap<String, Vec<(String, String)>>);

impl Patterns {
    pub(crate) fn insert(&mut self, table: String, matched: Vec<(String, String)>) {
        self.0.insert(table, matched);
    }

    /// `data` with each pattern's decision given to the columns it matched as well.
    pub(crate) fn expand(&self, data: &Arc<[DatasetPolicy]>) -> Arc<[DatasetPolicy]> {
        if self.0.is_empty() || !data.iter().any(|policy| self.0.contains_key(&policy.dataset)) {
            return Arc::clone(data);
        }
        data.iter()
            .map(|policy| {
                let Some(matched) = self.0.get(&policy.dataset) else { return policy.clone() };
                let mut policy = policy.clone();
                for (column, pattern) in matched {
                    if policy.denied.contains(pattern) {
                        policy.denied.push(column.clone());
                    } else if let Some(mask) = policy.masks.iter().find(|m| &m.column == pattern) {
                        let mask = mask.mask.clone();
                        policy.masks.push(ColumnMask { column: column.clone(), mask });
                    } else if policy.unmasked.contains(pattern) {
                        policy.unmasked.push(column.clone());
                    }
                }
                policy
            })
            .collect()
    }
}

/// The real columns of `schema` the tagging patterns `globs` match, each with its pattern;
/// columns `named` declares are left to their declaration. An error names a bad pattern or a
/// column two patterns match.
pub(crate) fn matched(
    schema: &Schema,
    named: &[(&String, &ColumnSpec)],
    globs: &[(&String, &ColumnSpec)],
) -> Result<Vec<(String, String)>, String> {
    let mut compiled = Vec::with_capacity(globs.len());
    for (pattern, spec) in globs {
        if spec.kind.is_some() {
            return Err(format!(
                "{pattern}: a pattern cannot declare a type (row filters name columns declared by name)"
            ));
        }
        if spec.tags.is_empty() {
            continue;
        }
        let glob = glob::Pattern::new(pattern).map_err(|e| format!("{pattern}: not a pattern: {e}"))?;
        compiled.push((*pattern, glob));
    }
    let mut out = Vec::new();
    for field in schema.fields() {
        let column = field.name();
        if named.iter().any(|(name, _)| *name == column) {
            continue;
        }
        let mut matching = compiled.iter().filter(|(_, glob)| glob.matches(column));
        let Some((pattern, _)) = matching.next() else { continue };
        if let Some((other, _)) = matching.next() {
            return Err(format!(
                "column {column:?} matches both {pattern} and {other}: declare it by name with its tags"
            ));
        }
        out.push((column.clone(), (*pattern).clone()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field};
    use identity::Mask;

    use super::*;

    fn spec(tags: &[&str]) -> ColumnSpec {
        ColumnSpec { tags: tags.iter().map(|t| t.to_string()).collect(), ..ColumnSpec::default() }
    }

    #[test]
    fn patterns_tag_undeclared_columns_once_and_decisions_follow() {
        let schema = Schema::new(
            ["id", "customer_ssn", "partner_ssn", "ssn_note", "name"]
                .map(|name| Field::new(name, DataType::Utf8, true))
                .to_vec(),
        );
        let (ssn, partner, declared) = ("*_ssn".to_string(), "partner_*".to_string(), "partner_ssn".to_string());
        let (pii, own) = (spec(&["pii.ssn"]), spec(&["pii.other"]));
        let matched = matched(&schema, &[(&declared, &own)], &[(&ssn, &pii)]).unwrap();
        assert_eq!(matched, vec![("customer_ssn".to_string(), ssn.clone())]);
        let both = matched_error(&schema, &[(&ssn, &pii), (&partner, &pii)]);
        assert!(both.contains("\"partner_ssn\" matches both"), "{both}");

        let mut patterns = Patterns::default();
        patterns.insert("d.s.t".into(), matched);
        let decided = |denied: &[&str], masks: &[&str]| -> Arc<[DatasetPolicy]> {
            Arc::from(vec![DatasetPolicy {
                dataset: "d.s.t".into(),
                denied: denied.iter().map(|c| c.to_string()).collect(),
                masks: masks.iter().map(|c| ColumnMask { column: c.to_string(), mask: Mask::Last4 }).collect(),
                unmasked: Vec::new(),
                rows: None,
                row_policies: Vec::new(),
            }])
        };
        assert!(patterns.expand(&decided(&["*_ssn"], &[]))[0].denied.contains(&"customer_ssn".to_string()));
        let masked = patterns.expand(&decided(&[], &["*_ssn"]));
        assert!(masked[0].masks.iter().any(|m| m.column == "customer_ssn"));
        // Not decided for the pattern: nothing is added, and the engine refuses the table.
        assert_eq!(patterns.expand(&decided(&[], &[]))[0].masks.len(), 0);
    }

    fn matched_error(schema: &Schema, globs: &[(&String, &ColumnSpec)]) -> String {
        matched(schema, &[], globs).unwrap_err()
    }
}
