//! `keyed_hash`: HMAC-SHA-256 of a string under the engine's mask key, as 64 hex digits.
//! Equal values give equal hashes (joins, grouping and `COUNT(DISTINCT)` work on masked
//! columns) and without the key nobody can test a guess. The key comes from
//! `masking.keyed_hash_key_file`, so every engine of a deployment hashes alike; without it
//! each process draws its own (hashes then differ between processes and restarts).
//!
//! The function is not registered under a name: SQL cannot call it, only the policy rule.

use std::sync::Arc;

use aws_lc_rs::hmac;
use datafusion::arrow::array::{Array, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// The key, shared by every query of the process.
#[derive(Clone)]
pub(crate) struct MaskKey(Arc<ScalarUDF>);

impl std::fmt::Debug for MaskKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MaskKey(..)")
    }
}

impl MaskKey {
    /// A key from secret bytes (at least 32).
    pub(crate) fn new(secret: &[u8]) -> Result<Self, String> {
        if secret.len() < 32 {
            return Err(format!("the mask key must be at least 32 bytes, not {}", secret.len()));
        }
        Ok(Self::from_key(hmac::Key::new(hmac::HMAC_SHA256, secret)))
    }

    /// A random key for this process.
    pub(crate) fn random() -> Result<Self, String> {
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &aws_lc_rs::rand::SystemRandom::new())
            .map_err(|_| "cannot draw a random mask key".to_string())?;
        Ok(Self::from_key(key))
    }

    fn from_key(key: hmac::Key) -> Self {
        Self(Arc::new(ScalarUDF::new_from_impl(KeyedHash {
            key,
            signature: Signature::exact(vec![DataType::Utf8], Volatility::Immutable),
        })))
    }

    /// `keyed_hash(value)`.
    pub(crate) fn hash(&self, value: Expr) -> Expr {
        self.0.call(vec![value])
    }
}

struct KeyedHash {
    key: hmac::Key,
    signature: Signature,
}

impl std::fmt::Debug for KeyedHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("keyed_hash")
    }
}

impl PartialEq for KeyedHash {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for KeyedHash {}

impl std::hash::Hash for KeyedHash {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        "portcullis_keyed_hash".hash(state);
    }
}

impl KeyedHash {
    fn hex(&self, value: &str) -> String {
        let tag = hmac::sign(&self.key, value.as_bytes());
        tag.as_ref().iter().fold(String::with_capacity(64), |mut out, byte| {
            use std::fmt::Write as _;
            let _ = write!(out, "{byte:02x}");
            out
        })
    }
}

impl ScalarUDFImpl for KeyedHash {
    fn name(&self) -> &str {
        "portcullis_keyed_hash"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [value] = args.args.as_slice() else { return exec_err!("keyed_hash takes one argument") };
        match value {
            ColumnarValue::Scalar(ScalarValue::Utf8(value)) => {
                Ok(ColumnarValue::Scalar(ScalarValue::Utf8(value.as_deref().map(|v| self.hex(v)))))
            }
            ColumnarValue::Array(array) => {
                let Some(strings) = array.as_any().downcast_ref::<StringArray>() else {
                    return exec_err!("keyed_hash takes a string");
                };
                let hashed: StringArray = strings.iter().map(|v| v.map(|v| self.hex(v))).collect();
                Ok(ColumnarValue::Array(Arc::new(hashed)))
            }
            ColumnarValue::Scalar(_) => exec_err!("keyed_hash takes a string"),
        }
    }
}
