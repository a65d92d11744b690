//! The masking functions as DataFusion expressions over the raw column, each cast back to the
//! column's type so the masked table has the raw table's names and types. A mask that does
//! not fit the column's type (the gateway checks declared types when policies load; this is
//! the engine's own check against the real type) becomes NULL: fail closed.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::functions::expr_fn::{coalesce, date_trunc, floor};
use datafusion::logical_expr::{Expr, cast, lit};
use identity::Mask;

use super::keyed_hash::MaskKey;
use super::text_mask::TextMask;
use super::year_only;

/// `mask` applied to `column` (of type `data_type`). A column that cannot hold NULL keeps
/// that promise (the plan above it was typed with it): where a mask would give NULL, it gives
/// the type's empty value instead (`''`, `0`, `false`, 1970-01-01).
pub(super) fn expr(mask: &Mask, column: Expr, data_type: &DataType, nullable: bool, key: &MaskKey) -> Expr {
    let masked = raw_expr(mask, column, data_type, key);
    keep_non_null(masked, data_type, nullable)
}

fn keep_non_null(masked: Expr, data_type: &DataType, nullable: bool) -> Expr {
    if nullable {
        return masked;
    }
    match empty(data_type) {
        Some(empty) => coalesce(vec![masked, empty]),
        None => masked,
    }
}

/// The value a column that cannot hold NULL shows in place of NULL; also what a denied
/// column's placeholder holds (it is never read: a query that reads it is refused).
pub(super) fn empty(data_type: &DataType) -> Option<Expr> {
    ScalarValue::new_default(data_type).ok().map(|value| Expr::Literal(value, None))
}

fn raw_expr(mask: &Mask, column: Expr, data_type: &DataType, key: &MaskKey) -> Expr {
    let text = matches!(data_type, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    let masked = match mask {
        Mask::Null => None,
        Mask::Constant { value } => Some(lit(value.clone())),
        Mask::KeyedHash if text => Some(key.hash(cast(column, DataType::Utf8))),
        // In the column's own string type: no cast.
        Mask::EmailDomain if text => return TextMask::EmailDomain.call(column),
        Mask::Last4 if text => return TextMask::Last4.call(column),
        Mask::YearOnly if *data_type == DataType::Date32 => return year_only::call(column),
        Mask::YearOnly if matches!(data_type, DataType::Date64 | DataType::Timestamp(..)) => {
            Some(date_trunc(lit("year"), column))
        }
        Mask::Bucket { width } if data_type.is_numeric() && *width > 0 => {
            let width = lit(*width as f64);
            Some(floor(cast(column, DataType::Float64) / width.clone()) * width)
        }
        Mask::KeyedHash | Mask::EmailDomain | Mask::Last4 | Mask::YearOnly | Mask::Bucket { .. } => None,
    };
    match masked {
        Some(expr) => cast(expr, data_type.clone()),
        None => Expr::Literal(ScalarValue::try_from(data_type).unwrap_or(ScalarValue::Null), None),
    }
}
