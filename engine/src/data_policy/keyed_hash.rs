//! `keyed_hash`: HMAC-SHA-256 of a string under the engine's mask key, as 64 hex digits.
//! Equal values give equal hashes (joins, grouping and `COUNT(DISTINCT)` work on masked
//! columns) and without the key nobody can test a guess. The key comes from
//! `masking.keyed_hash_key_file`, so every engine of a deployment hashes alike; without it
//! each process draws its own (hashes then differ between processes and restarts).
//!
//! The function is not registered under a name in the engine: SQL cannot call it, only the
//! policy rule. Its name carries a fingerprint of the key (the first 8 bytes of its
//! SHA-256), so a cluster node given another key, or none, does not know the function and
//! refuses the plan instead of hashing differently.

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
pub(crate) struct MaskKey {
    function: Arc<ScalarUDF>,
    /// From `masking.keyed_hash_key_file`, so other processes (cluster nodes) can hold it
    /// too; not a key drawn for this process alone.
    shared: bool,
}

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
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret);
        let fingerprint = digest.as_ref().iter().take(8).fold(String::new(), |mut out, byte| {
            use std::fmt::Write as _;
            let _ = write!(out, "{byte:02x}");
            out
        });
        let function = Arc::new(ScalarUDF::new_from_impl(KeyedHash {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            name: format!("portcullis_keyed_hash_{fingerprint}"),
            signature: Signature::exact(vec![DataType::Utf8], Volatility::Immutable),
        }));
        Ok(Self { function, shared: true })
    }

    /// A random key for this process.
    pub(crate) fn random() -> Result<Self, String> {
        let mut secret = [0u8; 32];
        aws_lc_rs::rand::fill(&mut secret).map_err(|_| "cannot draw a random mask key".to_string())?;
        Ok(Self { shared: false, ..Self::new(&secret)? })
    }

    /// Whether the key came from a file other processes can be given.
    pub(crate) fn is_shared(&self) -> bool {
        self.shared
    }

    /// The function, to register on a cluster node (see `cluster::node`).
    pub(crate) fn function(&self) -> Arc<ScalarUDF> {
        Arc::clone(&self.function)
    }

    /// `keyed_hash(value)`.
    pub(crate) fn hash(&self, value: Expr) -> Expr {
        self.function.call(vec![value])
    }
}

struct KeyedHash {
    key: hmac::Key,
    /// `portcullis_keyed_hash_` and the key's fingerprint.
    name: String,
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
        self.name.hash(state);
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
        &self.name
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
