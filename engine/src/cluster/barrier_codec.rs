//! How a policy barrier crosses to the cluster. A row filter is a barrier
//! ([`crate::barrier::BarrierView`]): a table whose scan plans the filtered, masked table on
//! its own under a [`BarrierExec`] that no filter is pushed through, so no expression of the
//! caller runs on a row the filter removes. Ballista's scheduler plans the query again, so
//! the barrier must reach it intact: the coordinator encodes the view with its plan, the
//! scheduler decodes it and plans it as one node would, and the executors decode the
//! `BarrierExec` in their tasks. Everything else is Ballista's own encoding.
//!
//! Only a table's row and column policy is sent this way (cluster mode inlines views, whose
//! plans call the caller's functions, which the nodes do not have). A node without this codec
//! cannot decode the plan and fails the query: closed.

use std::sync::Arc;

use ballista_core::serde::{BallistaCodec, BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use datafusion::catalog::TableProvider;
use datafusion::common::{DataFusionError, Result, TableReference};
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Extension, LogicalPlan};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::logical_plan::{AsLogicalPlan, LogicalExtensionCodec};
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};

use crate::barrier::{BarrierExec, BarrierView};

/// Starts an encoded barrier. A protobuf message never starts with a zero byte (field
/// number 0 is invalid), so Ballista's own encodings cannot be mistaken for it.
const VIEW: &[u8] = b"\0portcullis.policy-barrier.view.v1";
const EXEC: &[u8] = b"\0portcullis.policy-barrier.exec.v1";

/// Ballista's codecs, plus the policy barrier (see the module docs). The coordinator, the
/// scheduler and the executors all use it.
#[derive(Debug, Default)]
pub(crate) struct BarrierCodec {
    logical: BallistaLogicalExtensionCodec,
    physical: BallistaPhysicalExtensionCodec,
}

/// The scheduler's and the executors' codec.
pub(super) fn codec() -> BallistaCodec<LogicalPlanNode, PhysicalPlanNode> {
    let codec = Arc::new(BarrierCodec::default());
    BallistaCodec::new(Arc::clone(&codec) as Arc<dyn LogicalExtensionCodec>, codec)
}

impl LogicalExtensionCodec for BarrierCodec {
    fn try_decode(&self, buf: &[u8], inputs: &[LogicalPlan], ctx: &TaskContext) -> Result<Extension> {
        self.logical.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        self.logical.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: datafusion::arrow::datatypes::SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        let Some(encoded) = buf.strip_prefix(VIEW) else {
            return self.logical.try_decode_table_provider(buf, table_ref, schema, ctx);
        };
        let plan = LogicalPlanNode::try_decode(encoded)?.try_into_logical_plan(ctx, self)?;
        let view = BarrierView::new(plan, format!("row and column policy of {table_ref}")).policy(Vec::new());
        if view.schema().fields() != schema.fields() {
            return Err(DataFusionError::Internal(format!(
                "the policy barrier of {table_ref} decodes to another schema than its scan's"
            )));
        }
        Ok(Arc::new(view))
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let Some(view) = node.downcast_ref::<BarrierView>() else {
            return self.logical.try_encode_table_provider(table_ref, node, buf);
        };
        if !view.is_policy() {
            return Err(DataFusionError::NotImplemented(format!(
                "{table_ref} is a view planned as a barrier, which is not sent to a cluster"
            )));
        }
        let plan = crate::data_policy::unmarked(view.plan())?;
        buf.extend_from_slice(VIEW);
        LogicalPlanNode::try_from_logical_plan(&plan, self)?.try_encode(buf)
    }

    fn try_decode_file_format(&self, buf: &[u8], ctx: &TaskContext) -> Result<Arc<dyn FileFormatFactory>> {
        self.logical.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(&self, buf: &mut Vec<u8>, node: Arc<dyn FileFormatFactory>) -> Result<()> {
        self.logical.try_encode_file_format(buf, node)
    }
}

impl PhysicalExtensionCodec for BarrierCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if buf != EXEC {
            return self.physical.try_decode(buf, inputs, ctx, proto_converter);
        }
        match inputs {
            [input] => Ok(Arc::new(BarrierExec::new(Arc::clone(input)))),
            _ => Err(DataFusionError::Internal(format!("a policy barrier has one input, not {}", inputs.len()))),
        }
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        if node.is::<BarrierExec>() {
            buf.extend_from_slice(EXEC);
            return Ok(());
        }
        self.physical.try_encode(node, buf, proto_converter)
    }
}
