//! What Cedar decided about the rows and columns of one dataset for one caller, carried to
//! the engine in the stamp's `data` claim for the datasets the statement touches.
//!
//! The gateway decides ([`DatasetPolicy`]): which columns the caller may not reference
//! (`denied`), which it sees masked and by which function (`masks`), and which rows it sees
//! (`rows`, a Cedar residual compiled into a small closed expression language). The engine
//! enforces on the resolved plan. Nothing here is SQL text: the engine builds its expressions
//! from these types, so no caller-influenced string is ever parsed as SQL.

use serde::{Deserialize, Serialize};

/// The decision for one dataset.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetPolicy {
    /// `catalog.schema.table`, as [`crate::dataset_id`] spells it.
    pub dataset: String,
    /// Columns the caller may not reference anywhere in a statement.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denied: Vec<String>,
    /// Columns the caller sees only through a mask.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub masks: Vec<ColumnMask>,
    /// Tagged columns the caller may see as they are: with `masks` and `denied`, every
    /// tagged column is named, so the engine can tell a decision made without its column
    /// declarations (and refuse it) from one that lifts the masks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unmasked: Vec<String>,
    /// The rows the caller sees; absent: every row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<RowFilter>,
    /// The `select_row` policies `rows` was made of (their ids), for the gateway's audit
    /// event. Not signed: the engine enforces the filter, not where it came from.
    #[serde(skip)]
    pub row_policies: Vec<String>,
}

impl DatasetPolicy {
    /// Whether the decision changes anything (a dataset without one is served as it is).
    pub fn restricts(&self) -> bool {
        !self.denied.is_empty() || !self.masks.is_empty() || self.rows.is_some()
    }
}

/// One masked column.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnMask {
    pub column: String,
    pub mask: Mask,
}

/// The masking functions, from the most private to the least: when two apply to one column,
/// the one earlier in this list wins ([`Mask::privacy_rank`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Mask {
    /// NULL of the column's type: reveals nothing.
    Null,
    /// One fixed value for every row (a string, cast to the column's type).
    Constant { value: String },
    /// HMAC-SHA-256 of the value under the engine's mask key, hex: equal values stay equal
    /// (so joins and `COUNT(DISTINCT)` still work), nothing else is revealed. Strings only.
    KeyedHash,
    /// Rounded down to a multiple of `width`. Numbers only.
    Bucket { width: i64 },
    /// The first day of the value's year. Dates and timestamps only.
    YearOnly,
    /// `***@` and the part after the `@`. Strings only.
    EmailDomain,
    /// `***` and the last four characters. Strings only.
    Last4,
}

impl Mask {
    /// The masks' names, the most private first: the order [`Mask::privacy_rank`] counts.
    pub const BY_PRIVACY: [&'static str; 7] =
        ["null", "constant", "keyed_hash", "bucket", "year_only", "email_domain", "last4"];

    /// Lower is more private: null 0, constant 1, keyed_hash 2, bucket 3, year_only 4,
    /// email_domain 5, last4 6.
    pub fn privacy_rank(&self) -> u8 {
        Self::rank_of(self.name()).unwrap_or(0)
    }

    /// [`Mask::privacy_rank`] of the mask named `name`.
    pub fn rank_of(name: &str) -> Option<u8> {
        Self::BY_PRIVACY.iter().position(|n| *n == name).and_then(|i| u8::try_from(i).ok())
    }

    /// The mask's name as policies and messages spell it.
    pub fn name(&self) -> &'static str {
        match self {
            Mask::Null => "null",
            Mask::Constant { .. } => "constant",
            Mask::KeyedHash => "keyed_hash",
            Mask::Bucket { .. } => "bucket",
            Mask::YearOnly => "year_only",
            Mask::EmailDomain => "email_domain",
            Mask::Last4 => "last4",
        }
    }
}

/// The column types the engine's file may declare (`columns: {t: {c: {type: long}}}`), read
/// alike by the engine (which checks each against the column's Arrow type) and the gateway
/// (which checks masks against it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    String,
    Long,
    Double,
    Boolean,
    Date,
    Timestamp,
}

impl ColumnType {
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnType::String => "string",
            ColumnType::Long => "long",
            ColumnType::Double => "double",
            ColumnType::Boolean => "boolean",
            ColumnType::Date => "date",
            ColumnType::Timestamp => "timestamp",
        }
    }
}

/// A row condition: what the gateway compiled from Cedar's residual policies. A row is
/// visible when the condition is true (NULL counts as false: [`RowFilter::IsTrue`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RowFilter {
    Bool(bool),
    Long(i64),
    String(String),
    /// A column of the dataset.
    Column(String),
    Not(Box<RowFilter>),
    And(Vec<RowFilter>),
    Or(Vec<RowFilter>),
    Compare {
        op: Comparison,
        left: Box<RowFilter>,
        right: Box<RowFilter>,
    },
    /// `expr IN (list…)`.
    In {
        expr: Box<RowFilter>,
        list: Vec<RowFilter>,
    },
    /// Cedar's `like`: literal text and `*` wildcards.
    Like {
        expr: Box<RowFilter>,
        pattern: Vec<LikePart>,
    },
    IsNotNull(Box<RowFilter>),
    /// True when the inner condition is true; false when it is false or NULL.
    IsTrue(Box<RowFilter>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

impl Comparison {
    pub fn sql(self) -> &'static str {
        match self {
            Comparison::Eq => "=",
            Comparison::NotEq => "<>",
            Comparison::Lt => "<",
            Comparison::LtEq => "<=",
            Comparison::Gt => ">",
            Comparison::GtEq => ">=",
        }
    }
}

/// A piece of a `like` pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LikePart {
    Text(String),
    Wildcard,
}

impl RowFilter {
    /// SQL text for people (`gateway policy check`, the audit event); the engine never parses it.
    pub fn to_sql(&self) -> String {
        let mut out = String::new();
        self.write_sql(&mut out);
        out
    }

    fn write_sql(&self, out: &mut String) {
        let join = |out: &mut String, items: &[RowFilter], sep: &str, empty: &str| {
            if items.is_empty() {
                out.push_str(empty);
                return;
            }
            out.push('(');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(sep);
                }
                item.write_sql(out);
            }
            out.push(')');
        };
        match self {
            RowFilter::Bool(b) => out.push_str(if *b { "TRUE" } else { "FALSE" }),
            RowFilter::Long(n) => out.push_str(&n.to_string()),
            RowFilter::String(s) => quote(out, s, '\''),
            RowFilter::Column(c) => quote(out, c, '"'),
            RowFilter::Not(inner) => {
                out.push_str("NOT ");
                inner.write_sql(out);
            }
            RowFilter::And(items) => join(out, items, " AND ", "TRUE"),
            RowFilter::Or(items) => join(out, items, " OR ", "FALSE"),
            RowFilter::Compare { op, left, right } => {
                out.push('(');
                left.write_sql(out);
                out.push(' ');
                out.push_str(op.sql());
                out.push(' ');
                right.write_sql(out);
                out.push(')');
            }
            RowFilter::In { expr, list } => {
                out.push('(');
                expr.write_sql(out);
                out.push_str(" IN ");
                join(out, list, ", ", "(NULL)");
                out.push(')');
            }
            RowFilter::Like { expr, pattern } => {
                out.push('(');
                expr.write_sql(out);
                out.push_str(" LIKE ");
                quote(out, &like_pattern(pattern), '\'');
                out.push_str(" ESCAPE '\\')");
            }
            RowFilter::IsNotNull(inner) => {
                out.push('(');
                inner.write_sql(out);
                out.push_str(" IS NOT NULL)");
            }
            RowFilter::IsTrue(inner) => {
                out.push('(');
                inner.write_sql(out);
                out.push_str(" IS TRUE)");
            }
        }
    }
}

/// A `like` pattern as SQL `LIKE` text with `\` as the escape character: `*` becomes `%`,
/// literal `%`, `_` and `\` are escaped.
pub fn like_pattern(pattern: &[LikePart]) -> String {
    let mut out = String::new();
    for part in pattern {
        match part {
            LikePart::Wildcard => out.push('%'),
            LikePart::Text(text) => {
                for c in text.chars() {
                    if matches!(c, '%' | '_' | '\\') {
                        out.push('\\');
                    }
                    out.push(c);
                }
            }
        }
    }
    out
}

fn quote(out: &mut String, text: &str, mark: char) {
    out.push(mark);
    for c in text.chars() {
        if c == mark {
            out.push(mark);
        }
        out.push(c);
    }
    out.push(mark);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_prints_as_sql() {
        let filter = RowFilter::And(vec![
            RowFilter::IsTrue(Box::new(RowFilter::Compare {
                op: Comparison::Eq,
                left: Box::new(RowFilter::Column("tenant".into())),
                right: Box::new(RowFilter::String("o'brien".into())),
            })),
            RowFilter::Not(Box::new(RowFilter::Like {
                expr: Box::new(RowFilter::Column("name".into())),
                pattern: vec![LikePart::Text("50%_".into()), LikePart::Wildcard],
            })),
        ]);
        let policy = DatasetPolicy {
            dataset: "datafusion.demo.customers".into(),
            denied: vec!["salary".into()],
            masks: vec![ColumnMask { column: "email".into(), mask: Mask::EmailDomain }],
            unmasked: vec!["phone".into()],
            rows: Some(filter.clone()),
            row_policies: Vec::new(),
        };
        let json = serde_json::to_string(&policy).unwrap();
        assert_eq!(serde_json::from_str::<DatasetPolicy>(&json).unwrap(), policy);
        assert_eq!(
            filter.to_sql(),
            r#"((("tenant" = 'o''brien') IS TRUE) AND NOT ("name" LIKE '50\%\_%' ESCAPE '\'))"#
        );
        assert!(policy.restricts());
        let open = DatasetPolicy {
            dataset: "x".into(),
            denied: vec![],
            masks: vec![],
            unmasked: vec![],
            rows: None,
            row_policies: Vec::new(),
        };
        assert!(!open.restricts());
        // Unknown fields and unknown masks are refused, not ignored.
        assert!(serde_json::from_str::<DatasetPolicy>(r#"{"dataset":"x","extra":1}"#).is_err());
        assert!(serde_json::from_str::<Mask>(r#""reveal""#).is_err());
        assert!(Mask::Null.privacy_rank() < Mask::Last4.privacy_rank());
    }
}
