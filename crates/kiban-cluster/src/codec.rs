//! Plan codecs that ship kiban's UDFs inside Ballista plans (as their sealed job payload only).
//!
//! Everything else is delegated to Ballista's own codecs. The client, the scheduler and every
//! executor use these codecs, so a plan that calls `kiban_gate` or `kiban_token` decodes on each.

use std::sync::Arc;

use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::common::{Result, TableReference};
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Extension, LogicalPlan, ScalarUDF};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};

use crate::deid_udf::{DeidUdf, TRIM_UDF};
use crate::jobfile::JobFileRef;
use crate::seal::SealedJob;
use crate::udf::{GATE_UDF, GateUdf, TOKEN_UDF, TokenUdf};

fn decode_udf(name: &str, buf: &[u8]) -> Option<Result<Arc<ScalarUDF>>> {
    let sealed =
        || SealedJob::from_bytes(buf).map_err(|e| datafusion::common::DataFusionError::Plan(format!("{name}: {e}")));
    match name {
        TOKEN_UDF => Some(sealed().map(|s| TokenUdf::from_sealed(s).into_udf())),
        GATE_UDF => Some(
            JobFileRef::from_bytes(buf)
                .map(|r| GateUdf::from_file(r).into_udf())
                .map_err(|e| datafusion::common::DataFusionError::Plan(format!("{name}: {e}"))),
        ),
        TRIM_UDF => Some(Ok(DeidUdf::trim())),
        other => DeidUdf::known_name(other).map(|n| {
            DeidUdf::decode(n, buf)
                .map(|u| Arc::new(ScalarUDF::new_from_impl(u)))
                .map_err(|e| datafusion::common::DataFusionError::Plan(format!("{name}: {e}")))
        }),
    }
}

fn encode_udf(node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<bool> {
    Ok(if let Some(t) = node.inner().downcast_ref::<TokenUdf>() {
        buf.extend_from_slice(&t.sealed().to_bytes());
        true
    } else if let Some(g) = node.inner().downcast_ref::<GateUdf>() {
        let Some(f) = g.job_file() else {
            return Err(datafusion::common::DataFusionError::Plan(format!(
                "{GATE_UDF}: this gate keeps its facts in process; for a cluster make it with GateUdf::for_runner"
            )));
        };
        buf.extend_from_slice(&f.to_bytes());
        true
    } else if let Some(d) = node.inner().downcast_ref::<DeidUdf>() {
        if let Some(s) = d.sealed() {
            buf.extend_from_slice(&s.to_bytes());
        } else if let Some(f) = d.job_file() {
            buf.extend_from_slice(&f.to_bytes());
        }
        true
    } else {
        false
    })
}

/// Ballista's logical codec plus kiban's UDFs.
#[derive(Debug, Default)]
pub struct KibanLogicalCodec {
    inner: BallistaLogicalExtensionCodec,
}

impl LogicalExtensionCodec for KibanLogicalCodec {
    fn try_decode(&self, buf: &[u8], inputs: &[LogicalPlan], ctx: &TaskContext) -> Result<Extension> {
        self.inner.try_decode(buf, inputs, ctx)
    }
    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode(node, buf)
    }
    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        self.inner.try_decode_table_provider(buf, table_ref, schema, ctx)
    }
    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        self.inner.try_encode_table_provider(table_ref, node, buf)
    }
    fn try_decode_file_format(&self, buf: &[u8], ctx: &TaskContext) -> Result<Arc<dyn FileFormatFactory>> {
        self.inner.try_decode_file_format(buf, ctx)
    }
    fn try_encode_file_format(&self, buf: &mut Vec<u8>, node: Arc<dyn FileFormatFactory>) -> Result<()> {
        self.inner.try_encode_file_format(buf, node)
    }
    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        decode_udf(name, buf).unwrap_or_else(|| self.inner.try_decode_udf(name, buf))
    }
    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        if encode_udf(node, buf)? { Ok(()) } else { self.inner.try_encode_udf(node, buf) }
    }
}

/// Ballista's physical codec plus kiban's UDFs.
#[derive(Debug, Default)]
pub struct KibanPhysicalCodec {
    inner: BallistaPhysicalExtensionCodec,
}

impl PhysicalExtensionCodec for KibanPhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.inner.try_decode(buf, inputs, ctx, proto_converter)
    }
    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        self.inner.try_encode(node, buf, proto_converter)
    }
    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        decode_udf(name, buf).unwrap_or_else(|| self.inner.try_decode_udf(name, buf))
    }
    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        if encode_udf(node, buf)? { Ok(()) } else { self.inner.try_encode_udf(node, buf) }
    }
}
