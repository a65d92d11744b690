//! `current_principal()` and friends: the verified caller, visible to SQL.
//!
//! Modelled on DataFusion's `now()`: no arguments, one value for the whole query, folded
//! into a literal when the plan is simplified. The value does not live in the function (one
//! shared instance serves every query and every stored view); it lives in the query's own
//! session configuration, as the [`Caller`] extension set per request from the verified
//! stamp. A view defined once at startup therefore returns each caller its own rows.
//!
//! SQL cannot change the caller: `SET portcullis.*` fails, and a query planned without a
//! caller fails rather than seeing somebody else's identity.

use std::any::Any;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::config::{ConfigEntry, ConfigExtension, ExtensionOptions};
use datafusion::common::{DataFusionError, Result, ScalarValue, plan_err};
use datafusion::config::ConfigOptions;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use identity::Principal;

/// The caller of the current query, carried in the session's `ConfigOptions`.
#[derive(Debug, Clone, Default)]
pub struct Caller(pub Option<Arc<Principal>>);

impl ConfigExtension for Caller {
    const PREFIX: &'static str = "portcullis";
}

impl ExtensionOptions for Caller {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn cloned(&self) -> Box<dyn ExtensionOptions> {
        Box::new(self.clone())
    }
    fn set(&mut self, key: &str, _value: &str) -> Result<()> {
        Err(DataFusionError::Plan(format!(
            "portcullis.{key} cannot be set: the caller's identity comes only from the verified identity stamp"
        )))
    }
    fn entries(&self) -> Vec<ConfigEntry> {
        // Not listed in SHOW ALL / information_schema.df_settings.
        Vec::new()
    }
}

/// Which attribute of the caller a function returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Attribute {
    Id,
    Subject,
    Email,
    Groups,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct PrincipalFunction {
    name: &'static str,
    attribute: Attribute,
    signature: Signature,
}

/// The four identity functions, ready to register on a session.
pub fn all() -> Vec<ScalarUDF> {
    [
        ("current_principal", Attribute::Id),
        ("current_principal_subject", Attribute::Subject),
        ("current_principal_email", Attribute::Email),
        ("current_principal_groups", Attribute::Groups),
    ]
    .into_iter()
    .map(|(name, attribute)| {
        ScalarUDF::new_from_impl(PrincipalFunction {
            name,
            attribute,
            signature: Signature::nullary(Volatility::Stable),
        })
    })
    .collect()
}

impl PrincipalFunction {
    fn data_type(&self) -> DataType {
        match self.attribute {
            Attribute::Groups => DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
            _ => DataType::Utf8,
        }
    }

    fn value(&self, options: &ConfigOptions) -> Result<ScalarValue> {
        let Some(Caller(Some(principal))) = options.extensions.get::<Caller>() else {
            return plan_err!("{}() has no caller: the query was planned without a verified identity", self.name);
        };
        let utf8 = |s: &str| ScalarValue::Utf8(Some(s.to_string()));
        Ok(match self.attribute {
            Attribute::Id => utf8(&principal.id),
            Attribute::Subject => utf8(&principal.subject),
            Attribute::Email => ScalarValue::Utf8(principal.email.clone()),
            Attribute::Groups => {
                let groups: Vec<ScalarValue> = principal.groups.iter().map(|g| utf8(g)).collect();
                ScalarValue::List(ScalarValue::new_list_nullable(&groups, &DataType::Utf8))
            }
        })
    }
}

impl ScalarUDFImpl for PrincipalFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(self.data_type())
    }

    fn return_field_from_args(&self, _args: ReturnFieldArgs) -> Result<FieldRef> {
        let nullable = self.attribute == Attribute::Email;
        Ok(Arc::new(Field::new(self.name, self.data_type(), nullable)))
    }

    /// Folds the call into a literal at planning time, like `now()`.
    fn simplify(&self, _args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        Ok(ExprSimplifyResult::Simplified(Expr::Literal(self.value(info.config_options())?, None)))
    }

    /// Reached only when a plan was not simplified; reads the same per-query value.
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(self.value(&args.config_options)?))
    }
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;

    use super::*;

    #[tokio::test]
    async fn without_a_caller_the_functions_fail_closed() {
        let ctx = SessionContext::new();
        for udf in all() {
            ctx.register_udf(udf);
        }
        for sql in ["SELECT current_principal()", "SELECT current_principal_groups()"] {
            let result = match ctx.sql(sql).await {
                Ok(frame) => frame.collect().await.map(|_| ()),
                Err(e) => Err(e),
            };
            let err = result.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains("has no caller"), "{sql}: {err:?}");
        }
        // And SQL cannot set one.
        let mut caller = Caller::default();
        assert!(caller.set("principal", "root").is_err());
        assert!(caller.entries().is_empty());
    }
}
