//! A row filter the gateway compiled from Cedar ([`identity::RowFilter`]) as a DataFusion
//! predicate over the table's columns. Built node by node from the closed expression
//! language, never parsed from text. A column the table does not have is an error: the query
//! is refused rather than the filter dropped.
//!
//! `x IS TRUE` is written as `x` where nothing negates it: a filter keeps the rows its
//! predicate is true for, and with `AND` / `OR` alone a NULL that makes the whole true makes
//! it true whatever it stands for, so the rows kept are the same, and a plain comparison
//! lets the scan prune Parquet row groups by their statistics. Under `NOT` it stays.

use datafusion::arrow::datatypes::Schema;
use datafusion::logical_expr::{BinaryExpr, Expr, Like, Operator, in_list, lit};
use identity::{Comparison, RowFilter};

/// `filter` over a table of `schema`, whose columns `column` names, as a filter's predicate.
pub(super) fn expr(filter: &RowFilter, schema: &Schema, column: &dyn Fn(&str) -> Expr) -> Result<Expr, String> {
    build(filter, schema, column, true)
}

/// `positive`: nothing above negates this node (see the module docs).
fn build(filter: &RowFilter, schema: &Schema, column: &dyn Fn(&str) -> Expr, positive: bool) -> Result<Expr, String> {
    let expr = |f: &RowFilter, schema: &Schema, column: &dyn Fn(&str) -> Expr| build(f, schema, column, false);
    let each = |items: &[RowFilter]| {
        items.iter().map(|item| build(item, schema, column, positive)).collect::<Result<Vec<_>, _>>()
    };
    Ok(match filter {
        RowFilter::Bool(value) => lit(*value),
        RowFilter::Long(value) => lit(*value),
        RowFilter::String(value) => lit(value.clone()),
        RowFilter::Column(name) => {
            if schema.field_with_name(name).is_err() {
                return Err(format!("it names the column {name:?}, which the table does not have"));
            }
            column(name)
        }
        RowFilter::Not(inner) => Expr::Not(Box::new(build(inner, schema, column, false)?)),
        RowFilter::And(items) => each(items)?.into_iter().reduce(Expr::and).unwrap_or_else(|| lit(true)),
        RowFilter::Or(items) => each(items)?.into_iter().reduce(Expr::or).unwrap_or_else(|| lit(false)),
        RowFilter::Compare { op, left, right } => {
            let op = match op {
                Comparison::Eq => Operator::Eq,
                Comparison::NotEq => Operator::NotEq,
                Comparison::Lt => Operator::Lt,
                Comparison::LtEq => Operator::LtEq,
                Comparison::Gt => Operator::Gt,
                Comparison::GtEq => Operator::GtEq,
            };
            Expr::BinaryExpr(BinaryExpr::new(
                Box::new(expr(left, schema, column)?),
                op,
                Box::new(expr(right, schema, column)?),
            ))
        }
        RowFilter::In { expr: inner, list } => in_list(expr(inner, schema, column)?, each(list)?, false),
        RowFilter::Like { expr: inner, pattern } => Expr::Like(Like::new(
            false,
            Box::new(expr(inner, schema, column)?),
            Box::new(lit(identity::like_pattern(pattern))),
            Some('\\'),
            false,
        )),
        RowFilter::IsNotNull(inner) => expr(inner, schema, column)?.is_not_null(),
        RowFilter::IsTrue(inner) if positive => build(inner, schema, column, true)?,
        RowFilter::IsTrue(inner) => build(inner, schema, column, false)?.is_true(),
    })
}
