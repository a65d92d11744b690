//! A row filter the gateway compiled from Cedar ([`identity::RowFilter`]) as a DataFusion
//! predicate over the table's columns. Built node by node from the closed expression
//! language, never parsed from text. A column the table does not have is an error: the query
//! is refused rather than the filter dropped.

use datafusion::arrow::datatypes::Schema;
use datafusion::logical_expr::{BinaryExpr, Expr, Like, Operator, in_list, lit};
use identity::{Comparison, RowFilter};

/// `filter` over a table of `schema`, whose columns `column` names.
pub(super) fn expr(filter: &RowFilter, schema: &Schema, column: &dyn Fn(&str) -> Expr) -> Result<Expr, String> {
    let each = |items: &[RowFilter]| items.iter().map(|item| expr(item, schema, column)).collect::<Result<Vec<_>, _>>();
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
        RowFilter::Not(inner) => Expr::Not(Box::new(expr(inner, schema, column)?)),
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
        RowFilter::IsTrue(inner) => expr(inner, schema, column)?.is_true(),
    })
}
