//! Scalar functions whose output size the caller picks, bounded. The memory pool accounts
//! for operators (sorts, aggregations, joins), not for what a scalar function returns:
//! `cardinality(range(1, 600000000))` built a 4.8 GB list in one call and the kernel killed
//! the engine. `range` and `generate_series` over integers refuse to build more than
//! [`MAX_ELEMENTS`] elements per call (per batch of rows), with `resource_exhausted`.

use std::sync::Arc;

use datafusion::arrow::array::{Array, Int64Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature};
use datafusion::prelude::SessionContext;

/// The most elements one call of `range` / `generate_series` may build (80 MB of Int64).
pub(crate) const MAX_ELEMENTS: u64 = 10_000_000;

/// Replaces the context's `range` and `generate_series` with bounded ones.
pub(crate) fn register(ctx: &SessionContext) {
    for name in ["range", "generate_series"] {
        if let Some(inner) = ctx.state().scalar_functions().get(name) {
            let bounded = BoundedSeries { inner: Arc::clone(inner), inclusive: name == "generate_series" };
            ctx.register_udf(ScalarUDF::new_from_impl(bounded));
        }
    }
}

/// DataFusion's own function, with the size of its output checked first.
#[derive(Debug, PartialEq, Hash)]
struct BoundedSeries {
    inner: Arc<ScalarUDF>,
    /// `generate_series` includes its upper bound; `range` does not.
    inclusive: bool,
}

impl Eq for BoundedSeries {}

impl ScalarUDFImpl for BoundedSeries {
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
        let elements = self.elements(&args)?;
        if elements > u128::from(MAX_ELEMENTS) {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "{}() would build {elements} elements in one call, over the engine's limit of {MAX_ELEMENTS}",
                self.name()
            )));
        }
        self.inner.invoke_with_args(args)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

impl BoundedSeries {
    /// How many elements the call builds over all its rows (integer arguments; other types
    /// are passed through uncounted).
    fn elements(&self, args: &ScalarFunctionArgs) -> Result<u128> {
        if args.args.iter().any(|a| a.data_type() != DataType::Int64) {
            return Ok(0);
        }
        let arrays: Vec<Arc<dyn Array>> =
            args.args.iter().map(|a| a.to_array(args.number_rows)).collect::<Result<_>>()?;
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
            total += count(i128::from(start), i128::from(stop), i128::from(step), self.inclusive);
        }
        Ok(total)
    }
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
}
