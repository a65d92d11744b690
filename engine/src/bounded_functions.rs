//! Scalar functions whose output size the caller picks, bounded. The memory pool accounts
//! for operators (sorts, aggregations, joins), not for what a scalar function returns:
//! `cardinality(range(1, 600000000))` built a 4.8 GB list in one call and the kernel killed
//! the engine. `range` and `generate_series` over integers refuse to build more than
//! [`MAX_ELEMENTS`] elements per call (per batch of rows), as does `array_repeat`; `repeat`,
//! `lpad` and `rpad` refuse to build more than [`MAX_TEXT_BYTES`] of text per call; each with
//! `resource_exhausted`.

use std::sync::Arc;

use datafusion::arrow::array::{Array, Int64Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature};
use datafusion::prelude::SessionContext;

/// The most elements one call of `range` / `generate_series` may build (80 MB of Int64).
pub(crate) const MAX_ELEMENTS: u64 = 10_000_000;

/// The most bytes of text one call of `repeat`, `lpad` or `rpad` may build.
pub(crate) const MAX_TEXT_BYTES: u64 = 64 * 1024 * 1024;

/// Replaces the context's functions whose output size the caller picks with bounded ones.
pub(crate) fn register(ctx: &SessionContext) {
    let measures = [
        ("range", Measure::Series { inclusive: false }),
        ("generate_series", Measure::Series { inclusive: true }),
        ("repeat", Measure::Count(Unit::Repeats)),
        ("lpad", Measure::Count(Unit::Chars)),
        ("rpad", Measure::Count(Unit::Chars)),
        ("array_repeat", Measure::Count(Unit::Elements)),
    ];
    for (name, measure) in measures {
        if let Some(inner) = ctx.state().scalar_functions().get(name) {
            ctx.register_udf(ScalarUDF::new_from_impl(Bounded { inner: Arc::clone(inner), measure }));
        }
    }
}

/// How a function's output is sized from its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Measure {
    /// `range` / `generate_series`: elements of a series (`generate_series` includes its
    /// upper bound, `range` does not).
    Series { inclusive: bool },
    /// A count argument (the second).
    Count(Unit),
}

/// What a function's count argument (its second) counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Unit {
    /// `repeat(text, n)`: copies of the text.
    Repeats,
    /// `lpad(text, n [, fill])`: characters of output, up to 4 bytes each.
    Chars,
    /// `array_repeat(element, n)`: list elements.
    Elements,
}

/// DataFusion's own function, with the size of its output checked first.
#[derive(Debug, PartialEq, Hash)]
struct Bounded {
    inner: Arc<ScalarUDF>,
    measure: Measure,
}

impl Eq for Bounded {}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let (size, limit, what) = match self.measure {
            Measure::Series { inclusive } => (elements(&args, inclusive)?, u128::from(MAX_ELEMENTS), "elements"),
            Measure::Count(Unit::Elements) => (counted(&args, Unit::Elements)?, u128::from(MAX_ELEMENTS), "elements"),
            Measure::Count(unit) => (counted(&args, unit)?, u128::from(MAX_TEXT_BYTES), "bytes of text"),
        };
        if size > limit {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "{}() would build {size} {what} in one call, over the engine's limit of {limit}",
                self.name()
            )));
        }
        self.inner.invoke_with_args(args)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

/// What a call with a count argument builds over all its rows, in the unit's measure
/// (bytes for text).
fn counted(args: &ScalarFunctionArgs, unit: Unit) -> Result<u128> {
    let (Some(first), Some(count)) = (args.args.first(), args.args.get(1)) else { return Ok(0) };
    let counts = datafusion::arrow::compute::cast(&count.to_array(args.number_rows)?, &DataType::Int64)?;
    let Some(counts) = counts.as_any().downcast_ref::<Int64Array>() else { return Ok(0) };
    let texts = match unit {
        Unit::Repeats => {
            let text = datafusion::arrow::compute::cast(&first.to_array(args.number_rows)?, &DataType::LargeUtf8)?;
            Some(text)
        }
        Unit::Chars | Unit::Elements => None,
    };
    let texts = texts.as_ref().and_then(|t| t.as_any().downcast_ref::<datafusion::arrow::array::LargeStringArray>());
    let mut total: u128 = 0;
    for row in 0..counts.len() {
        if !counts.is_valid(row) {
            continue;
        }
        let n = u128::try_from(counts.value(row).max(0)).unwrap_or(0);
        total += match (unit, texts) {
            (Unit::Repeats, Some(texts)) if texts.is_valid(row) => n * texts.value(row).len() as u128,
            (Unit::Repeats, _) => 0,
            (Unit::Chars, _) => n * 4,
            (Unit::Elements, _) => n,
        };
    }
    Ok(total)
}

/// How many elements a series call builds over all its rows (integer arguments; other types
/// are passed through uncounted).
fn elements(args: &ScalarFunctionArgs, inclusive: bool) -> Result<u128> {
    if args.args.iter().any(|a| a.data_type() != DataType::Int64) {
        return Ok(0);
    }
    let arrays: Vec<Arc<dyn Array>> = args.args.iter().map(|a| a.to_array(args.number_rows)).collect::<Result<_>>()?;
    let ints: Vec<&Int64Array> = arrays.iter().filter_map(|a| a.as_any().downcast_ref::<Int64Array>()).collect();
    let value = |array: Option<&&Int64Array>, row: usize, default: i64| {
        array.map_or(Some(default), |a| a.is_valid(row).then(|| a.value(row)))
    };
    let mut total: u128 = 0;
    for row in 0..args.number_rows {
        let (start, stop, step) = match ints.as_slice() {
            [stop] => (Some(0), value(Some(stop), row, 0), Some(1)),
            [start, stop, rest @ ..] => {
                (value(Some(start), row, 0), value(Some(stop), row, 0), value(rest.first(), row, 1))
            }
            [] => return Ok(0),
        };
        let (Some(start), Some(stop), Some(step)) = (start, stop, step) else { continue };
        total += count(i128::from(start), i128::from(stop), i128::from(step), inclusive);
    }
    Ok(total)
}

/// Elements of the series from `start` to `stop` by `step`.
fn count(start: i128, stop: i128, step: i128, inclusive: bool) -> u128 {
    let span = if step > 0 { stop - start } else { start - stop };
    let step = step.unsigned_abs();
    if step == 0 || span < 0 {
        return 0;
    }
    let span = span.unsigned_abs();
    if inclusive { span / step + 1 } else { span.div_ceil(step) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_lengths() {
        assert_eq!(count(0, 3, 1, false), 3);
        assert_eq!(count(1, 7, 2, false), 3);
        assert_eq!(count(1, 7, 2, true), 4);
        assert_eq!(count(5, 1, -1, true), 5);
        assert_eq!(count(5, 1, 1, false), 0);
        assert_eq!(count(1, 600_000_000, 1, false), 599_999_999);
    }

    #[tokio::test]
    async fn a_huge_series_is_refused_and_a_small_one_built() {
        let ctx = SessionContext::new();
        register(&ctx);
        let rows = ctx.sql("SELECT cardinality(range(1, 1001)) AS n").await.unwrap().collect().await.unwrap();
        assert_eq!(rows[0].num_rows(), 1);
        for sql in ["SELECT cardinality(range(1, 600000000))", "SELECT generate_series(-1, 20000000)"] {
            let error = ctx.sql(sql).await.unwrap().collect().await.unwrap_err();
            assert!(error.to_string().contains("over the engine's limit of 10000000"), "{error}");
        }
    }

    #[tokio::test]
    async fn huge_repeats_and_pads_are_refused_and_small_ones_built() {
        let ctx = SessionContext::new();
        register(&ctx);
        for sql in [
            "SELECT repeat('ab', 3) AS v",
            "SELECT lpad('x', 5, '-') AS v",
            "SELECT rpad('x', 5) AS v",
            "SELECT array_repeat(1, 3) AS v",
            "SELECT repeat(name, 2) AS v FROM (VALUES ('a'), (NULL)) AS t(name)",
        ] {
            let rows = ctx.sql(sql).await.unwrap().collect().await.unwrap_or_else(|e| panic!("{sql}: {e}"));
            assert!(!rows.is_empty(), "{sql}");
        }
        for (sql, limit) in [
            ("SELECT repeat('abcdefgh', 2000000000)", MAX_TEXT_BYTES),
            ("SELECT length(lpad('x', 100000000))", MAX_TEXT_BYTES),
            ("SELECT rpad('x', 2000000000, 'y')", MAX_TEXT_BYTES),
            ("SELECT cardinality(array_repeat(1, 600000000))", MAX_ELEMENTS),
            ("SELECT repeat(s, n) FROM (VALUES ('abcd', 1), ('abcd', 20000000)) AS t(s, n)", MAX_TEXT_BYTES),
        ] {
            let error = ctx.sql(sql).await.unwrap().collect().await.unwrap_err();
            assert!(error.to_string().contains(&format!("over the engine's limit of {limit}")), "{sql}: {error}");
        }
    }
}
