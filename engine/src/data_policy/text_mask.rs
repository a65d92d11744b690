//! `email_domain` and `last4` as single-pass functions over the column's own string type.
//! Built from DataFusion's string functions (`concat('***@', split_part(…))`, a `CASE` over
//! `character_length` and `right`), each mask cost several passes, a cast of the whole
//! column to `Utf8` and back to its `Utf8View`, and an intermediate array per step: 2.5× a
//! plain scan of the column. Here each value is read once and its masked form written once,
//! in the column's own type (so the plan keeps its names and types with no cast).
//!
//! Like `keyed_hash`, the functions are not registered in the engine: SQL cannot call them
//! (cluster nodes register them, to run the plans the engine sends).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, GenericStringBuilder, OffsetSizeTrait, StringViewBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};

/// Which text mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum TextMask {
    /// `***@` and the part after the first `@` (up to a second one), as `split_part(v, '@', 2)`.
    EmailDomain,
    /// `***` and the last four characters when there are more than four, else `***`.
    Last4,
}

impl TextMask {
    /// The mask applied to `column` (a string column of any of Arrow's string types).
    pub(super) fn call(self, column: Expr) -> Expr {
        self.function().call(vec![column])
    }

    /// The function, also to register on a cluster node (see `cluster::node`).
    pub(super) fn function(self) -> ScalarUDF {
        ScalarUDF::new_from_impl(TextMaskFunction {
            mask: self,
            signature: Signature::new(
                TypeSignature::Uniform(1, vec![DataType::Utf8View, DataType::Utf8, DataType::LargeUtf8]),
                Volatility::Immutable,
            ),
        })
    }

    /// Writes the masked form of `value` into `out` (cleared first).
    fn apply(self, value: &str, out: &mut String) {
        out.clear();
        match self {
            TextMask::EmailDomain => {
                out.push_str("***@");
                let domain = value.split('@').nth(1).unwrap_or("");
                out.push_str(domain);
            }
            TextMask::Last4 => {
                out.push_str("***");
                // The byte offset of the fourth character from the end, if there are more
                // than four characters.
                if let Some((start, _)) = value.char_indices().rev().nth(3)
                    && start > 0
                {
                    out.push_str(value.get(start..).unwrap_or(""));
                }
            }
        }
    }

    fn name(self) -> &'static str {
        match self {
            TextMask::EmailDomain => "portcullis_mask_email_domain",
            TextMask::Last4 => "portcullis_mask_last4",
        }
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct TextMaskFunction {
    mask: TextMask,
    signature: Signature,
}

impl ScalarUDFImpl for TextMaskFunction {
    fn name(&self) -> &str {
        self.mask.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types {
            [kind @ (DataType::Utf8View | DataType::Utf8 | DataType::LargeUtf8)] => Ok(kind.clone()),
            other => exec_err!("{} takes a string, not {other:?}", self.name()),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [value] = args.args.as_slice() else { return exec_err!("{} takes one argument", self.name()) };
        let mut scratch = String::new();
        match value {
            ColumnarValue::Scalar(scalar) => {
                let mut masked = |v: &Option<String>| {
                    v.as_deref().map(|v| {
                        self.mask.apply(v, &mut scratch);
                        scratch.clone()
                    })
                };
                Ok(ColumnarValue::Scalar(match scalar {
                    ScalarValue::Utf8View(v) => ScalarValue::Utf8View(masked(v)),
                    ScalarValue::Utf8(v) => ScalarValue::Utf8(masked(v)),
                    ScalarValue::LargeUtf8(v) => ScalarValue::LargeUtf8(masked(v)),
                    other => return exec_err!("{} takes a string, not {}", self.name(), other.data_type()),
                }))
            }
            ColumnarValue::Array(array) => {
                let masked: ArrayRef = match array.data_type() {
                    DataType::Utf8View => {
                        let strings = array.as_string_view();
                        let mut out = StringViewBuilder::with_capacity(strings.len());
                        for value in strings.iter() {
                            match value {
                                Some(value) => {
                                    self.mask.apply(value, &mut scratch);
                                    out.append_value(&scratch);
                                }
                                None => out.append_null(),
                            }
                        }
                        Arc::new(out.finish())
                    }
                    DataType::Utf8 => Arc::new(offsets::<i32>(self.mask, array, &mut scratch)),
                    DataType::LargeUtf8 => Arc::new(offsets::<i64>(self.mask, array, &mut scratch)),
                    other => return exec_err!("{} takes a string, not {other}", self.name()),
                };
                Ok(ColumnarValue::Array(masked))
            }
        }
    }
}

/// `mask` over a `Utf8` or `LargeUtf8` array.
fn offsets<O: OffsetSizeTrait>(
    mask: TextMask,
    array: &ArrayRef,
    scratch: &mut String,
) -> datafusion::arrow::array::GenericStringArray<O> {
    let strings = array.as_string::<O>();
    let mut out = GenericStringBuilder::<O>::with_capacity(strings.len(), strings.value_data().len());
    for value in strings.iter() {
        match value {
            Some(value) => {
                mask.apply(value, scratch);
                out.append_value(&*scratch);
            }
            None => out.append_null(),
        }
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(mask: TextMask, value: &str) -> String {
        let mut out = String::new();
        mask.apply(value, &mut out);
        out
    }

    #[test]
    fn the_masks_keep_what_the_sql_forms_kept() {
        assert_eq!(masked(TextMask::EmailDomain, "ada@lovelace.example"), "***@lovelace.example");
        assert_eq!(masked(TextMask::EmailDomain, "a@b@c"), "***@b");
        assert_eq!(masked(TextMask::EmailDomain, "no-at-sign"), "***@");
        assert_eq!(masked(TextMask::Last4, "+44 20 7946 0101"), "***0101");
        assert_eq!(masked(TextMask::Last4, "0101"), "***");
        assert_eq!(masked(TextMask::Last4, "12345"), "***2345");
        assert_eq!(masked(TextMask::Last4, "ééééé"), "***éééé");
        assert_eq!(masked(TextMask::Last4, ""), "***");
    }
}
