//! `year_only` on a `DATE` column as one pass of integer arithmetic: each date becomes the
//! first of January of its year. `date_trunc('year', …)` goes through timestamps and back
//! and cost more than every other mask together in the engine benchmark (+190 ms over
//! 10 M rows); this is Howard Hinnant's days-from-civil arithmetic, a few integer operations
//! per value. Timestamps and `Date64` keep `date_trunc`.
//!
//! Not registered in the engine: SQL cannot call it (cluster nodes register it).

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Date32Array};
use datafusion::arrow::datatypes::{DataType, Date32Type};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// `year_only(column)` for a `Date32` column.
pub(super) fn call(column: Expr) -> Expr {
    function().call(vec![column])
}

/// The function, also to register on a cluster node (see `cluster::node`).
pub(super) fn function() -> ScalarUDF {
    ScalarUDF::new_from_impl(YearOnly { signature: Signature::exact(vec![DataType::Date32], Volatility::Immutable) })
}

/// The first of January of the year of `days` (days since 1970-01-01), in days.
fn year_start(days: i32) -> i32 {
    // civil_from_days (H. Hinnant), keeping only the year.
    let z = i64::from(days) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // days_from_civil(year, 1, 1): January counts as month 11 of the year before.
    let y = year - 1;
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * 10 + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    i32::try_from(era * 146_097 + doe - 719_468).unwrap_or(days)
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct YearOnly {
    signature: Signature,
}

impl ScalarUDFImpl for YearOnly {
    fn name(&self) -> &str {
        "portcullis_mask_year_only"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Date32)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [value] = args.args.as_slice() else { return exec_err!("year_only takes one argument") };
        match value {
            ColumnarValue::Scalar(ScalarValue::Date32(days)) => {
                Ok(ColumnarValue::Scalar(ScalarValue::Date32(days.map(year_start))))
            }
            ColumnarValue::Array(array) if array.data_type() == &DataType::Date32 => {
                let dates: Date32Array = array.as_primitive::<Date32Type>().unary(year_start);
                Ok(ColumnarValue::Array(Arc::new(dates)))
            }
            _ => exec_err!("year_only takes a date"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Days since 1970-01-01 of a date, by counting (slow and obviously right).
    fn days(year: i32, month: u32, day: u32) -> i32 {
        let leap = |y: i32| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let month_days = |y: i32, m: u32| {
            [31, if leap(y) { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m as usize - 1]
        };
        let mut total = 0i32;
        if year >= 1970 {
            total += (1970..year).map(|y| if leap(y) { 366 } else { 365 }).sum::<i32>();
        } else {
            total -= (year..1970).map(|y| if leap(y) { 366 } else { 365 }).sum::<i32>();
        }
        total += (1..month).map(|m| month_days(year, m)).sum::<i32>();
        total + day as i32 - 1
    }

    #[test]
    fn every_day_of_four_centuries_goes_to_its_first_of_january() {
        for year in [1600, 1899, 1900, 1969, 1970, 1999, 2000, 2024, 2026, 2100] {
            let first = days(year, 1, 1);
            for month in 1..=12 {
                for day in [1, 15, 28] {
                    assert_eq!(year_start(days(year, month, day)), first, "{year}-{month}-{day}");
                }
            }
            assert_eq!(year_start(days(year, 12, 31)), first, "{year}-12-31");
        }
    }
}
