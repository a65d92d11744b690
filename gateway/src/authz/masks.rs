//! `masks.yaml` beside the policies: which mask each column tag gets when Cedar does not let
//! the caller `unmask` the column. Declared once per tag, never per column or per policy:
//!
//! ```yaml
//! tags:
//!   pii.email: email_domain
//!   pii.phone: last4
//!   pii.national_id: keyed_hash
//!   finance.salary: {bucket: 10000}
//!   hr.note: {constant: "redacted"}
//! ```
//!
//! A column with several tags gets the most private of their masks (the order of
//! [`identity::Mask::privacy_rank`], never file order); a tag with no mask gets `null` (fail
//! closed, and `policy validate` warns). Each mask is checked against the declared type of
//! every column carrying its tag when the policies load.

use std::collections::BTreeMap;
use std::path::Path;

use identity::{ColumnType, Mask};
use serde::Deserialize;

use super::columns::DeclaredColumn;
use super::served::Served;

pub(crate) const MASKS_FILE: &str = "masks.yaml";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MasksFile {
    #[serde(default)]
    tags: BTreeMap<String, MaskSpec>,
}

/// A mask as the file writes it: its name, or `{bucket: WIDTH}` / `{constant: VALUE}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum MaskSpec {
    Name(String),
    Bucket { bucket: i64 },
    Constant { constant: String },
}

impl MaskSpec {
    fn mask(self) -> Result<Mask, String> {
        Ok(match self {
            MaskSpec::Bucket { bucket } if bucket > 0 => Mask::Bucket { width: bucket },
            MaskSpec::Bucket { .. } => return Err("a bucket's width must be positive".into()),
            MaskSpec::Constant { constant } => Mask::Constant { value: constant },
            MaskSpec::Name(name) => match name.as_str() {
                "null" => Mask::Null,
                "keyed_hash" => Mask::KeyedHash,
                "year_only" => Mask::YearOnly,
                "email_domain" => Mask::EmailDomain,
                "last4" => Mask::Last4,
                other => {
                    return Err(format!(
                        "unknown mask {other:?}: expected null, keyed_hash, year_only, email_domain, last4, {{bucket: WIDTH}} or {{constant: VALUE}}"
                    ));
                }
            },
        })
    }
}

/// The mask of each tag.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct MaskRules {
    tags: BTreeMap<String, Mask>,
}

impl MaskRules {
    /// `masks.yaml` in `dir`; absent, no tag has a mask (every tagged column masks to NULL).
    pub(crate) fn load(dir: &Path) -> Result<Option<Self>, String> {
        let path = dir.join(MASKS_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let deserializer = serde_yaml_ng::Deserializer::from_str(&text);
        let file: MasksFile = serde_path_to_error::deserialize(deserializer)
            .map_err(|e| format!("{}: {}", path.display(), e.into_inner()))?;
        let mut tags = BTreeMap::new();
        for (tag, spec) in file.tags {
            let mask = spec.mask().map_err(|e| format!("{}: tags.{tag}: {e}", path.display()))?;
            tags.insert(tag, mask);
        }
        Ok(Some(Self { tags }))
    }

    /// The mask `column` gets when it is not unmasked: the most private of its tags' masks,
    /// `null` for a tag without one. `None` for an untagged column (never masked).
    pub(crate) fn mask_for(&self, column: &DeclaredColumn) -> Option<Mask> {
        column.tags.iter().map(|tag| self.tags.get(tag).cloned().unwrap_or(Mask::Null)).min_by_key(Mask::privacy_rank)
    }

    /// Problems that refuse the policy set: a mask that cannot apply to the declared type of
    /// a column carrying its tag.
    pub(crate) fn type_errors(&self, served: &[Served]) -> Vec<String> {
        let mut errors = Vec::new();
        for s in served {
            for column in &s.columns {
                let Some(kind) = column.kind else { continue };
                for tag in &column.tags {
                    let Some(mask) = self.tags.get(tag) else { continue };
                    if !fits(mask, kind) {
                        errors.push(format!(
                            "{MASKS_FILE}: tags.{tag}: the {} mask cannot apply to {}.{} ({}), which carries the tag",
                            mask.name(),
                            s.name,
                            column.name,
                            kind.as_str()
                        ));
                    }
                }
            }
        }
        errors
    }

    /// Whether `tag` has a mask of its own.
    pub(crate) fn handles(&self, tag: &str) -> bool {
        self.tags.contains_key(tag)
    }

    /// Tags on declared columns that no mask handles (they mask to NULL): worth a warning.
    pub(crate) fn unhandled_tags(&self, served: &[Served]) -> Vec<String> {
        let mut tags: Vec<String> = served
            .iter()
            .flat_map(|s| s.columns.iter().flat_map(|c| c.tags.iter()))
            .filter(|tag| !self.tags.contains_key(*tag))
            .cloned()
            .collect();
        tags.sort();
        tags.dedup();
        tags
    }
}

/// Whether `mask` can apply to a column of type `kind`.
fn fits(mask: &Mask, kind: ColumnType) -> bool {
    match mask {
        Mask::Null | Mask::Constant { .. } => true,
        Mask::KeyedHash | Mask::EmailDomain | Mask::Last4 => kind == ColumnType::String,
        Mask::YearOnly => matches!(kind, ColumnType::Date | ColumnType::Timestamp),
        Mask::Bucket { .. } => matches!(kind, ColumnType::Long | ColumnType::Double),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::sql::DatasetName;

    #[test]
    fn the_most_private_mask_wins_and_an_unknown_tag_is_null() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(MaskRules::load(dir.path()).unwrap(), None);
        std::fs::write(
            dir.path().join(MASKS_FILE),
            "tags:\n  pii.email: email_domain\n  pii.any: keyed_hash\n  money: {bucket: 100}\n",
        )
        .unwrap();
        let rules = MaskRules::load(dir.path()).unwrap().unwrap();
        let column = |tags: &[&str], kind| DeclaredColumn {
            name: "c".into(),
            kind: Some(kind),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            nullable: false,
        };
        assert_eq!(rules.mask_for(&column(&["pii.email"], ColumnType::String)), Some(Mask::EmailDomain));
        // Both orders of the tags: keyed_hash is more private than email_domain.
        assert_eq!(rules.mask_for(&column(&["pii.email", "pii.any"], ColumnType::String)), Some(Mask::KeyedHash));
        assert_eq!(rules.mask_for(&column(&["pii.any", "pii.email"], ColumnType::String)), Some(Mask::KeyedHash));
        assert_eq!(rules.mask_for(&column(&["pii.email", "secret"], ColumnType::String)), Some(Mask::Null));
        assert_eq!(rules.mask_for(&column(&[], ColumnType::String)), None);
        let served = Served {
            name: DatasetName { catalog: "datafusion".into(), schema: "hr".into(), table: "staff".into() },
            tenant: None,
            classification: None,
            origin: String::new(),
            columns: vec![column(&["money"], ColumnType::String), column(&["secret"], ColumnType::Long)],
            reads: Vec::new(),
        };
        let errors = rules.type_errors(std::slice::from_ref(&served));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("bucket mask cannot apply to datafusion.hr.staff.c (string)"), "{errors:?}");
        assert_eq!(rules.unhandled_tags(&[served]), ["secret"]);
        for bad in ["tags:\n  a: reveal\n", "tags:\n  a: {bucket: 0}\n", "tags:\n  a: {bucket: x}\n", "tagz: {}\n"] {
            std::fs::write(dir.path().join(MASKS_FILE), bad).unwrap();
            assert!(MaskRules::load(dir.path()).is_err(), "{bad}");
        }
    }
}
