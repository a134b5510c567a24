//! The intake gate (C3) on a [`Runner`]: `kiban intake submit --cluster URL` decides every row of a
//! batch with the gate UDF on the cluster, and takes the verdicts back in row order; reading the
//! input, identity routing (the identity zone never joins a cluster), the clinical and quarantine
//! stores and the receipt stay with kiban-registry's intake, so the outcome is the same as in-process.

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{ScalarUDF, col, lit};
use futures::StreamExt;
use kiban_registry::gate::Verdict;
use kiban_registry::intake::VerdictSource;

use crate::runner::Runner;
use crate::seal::ClusterSecret;
use crate::udf::{GateFacts, GateUdf};
use crate::{ClusterError, Result, df};

/// The gate of one submission as a plan on a runner (one ordered task per input file).
pub struct GateVerdicts {
    runner: Runner,
    gate: Arc<ScalarUDF>,
    date: NaiveDate,
}

impl GateVerdicts {
    /// The gate for `facts` as of the provision `date`, for the batch at `input`: on a cluster the
    /// facts are sealed for `job_id` into a job file beside `input` (removed when this is dropped).
    pub fn new(
        runner: &Runner,
        secret: &ClusterSecret,
        job_id: &str,
        facts: &GateFacts,
        date: NaiveDate,
        input: &Path,
    ) -> Result<Self> {
        let gate = GateUdf::for_runner(runner, secret, job_id, facts, input)?.into_udf();
        Ok(GateVerdicts { runner: runner.ordered()?, gate, date })
    }

    /// The verdict code of every row of `file`, in row order.
    pub async fn verdicts(&self, file: &Path) -> Result<Vec<u8>> {
        let io =
            |e: &dyn std::fmt::Display| ClusterError::Input { field: file.display().to_string(), rule: e.to_string() };
        let (ids_are_text, rows) = {
            let f = std::fs::File::open(file).map_err(|e| io(&e))?;
            let meta = datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
                .map_err(|e| io(&e))?;
            let text = |n: &str| meta.schema().field_with_name(n).is_ok_and(|f| f.data_type() == &DataType::Utf8);
            (text("provider_id") && text("patient_id"), meta.metadata().file_metadata().num_rows() as usize)
        };
        if !ids_are_text {
            // As the in-process gate: without text provider and patient ids no row has a usable identity.
            return Ok(vec![Verdict::MalformedIdentity as u8; rows]);
        }
        let date = ScalarValue::Date32(Some(
            (self.date - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32,
        ));
        let input = self.runner.read_parquet(file).await?;
        let plan = input
            .select(vec![self.gate.call(vec![col("provider_id"), col("patient_id"), lit(date)]).alias("verdict")])
            .map_err(df("intake gate"))?;
        let mut stream = self.runner.execute(plan, "intake gate").await?;
        let mut out = Vec::new();
        while let Some(b) = stream.next().await {
            let b = b.map_err(df("intake gate"))?;
            let v =
                datafusion::arrow::compute::cast(b.column(0), &DataType::Utf8).map_err(|e| df("verdicts")(e.into()))?;
            let v = v.as_string::<i32>();
            for i in 0..v.len() {
                let code = Verdict::ALL.iter().position(|x| !v.is_null(i) && x.as_str() == v.value(i));
                out.push(code.ok_or_else(|| io(&format!("row {}: no such verdict", out.len())))? as u8);
            }
        }
        Ok(out)
    }
}

impl VerdictSource for GateVerdicts {
    fn file_verdicts<'a>(
        &'a self,
        file: &'a Path,
    ) -> Pin<Box<dyn std::future::Future<Output = std::result::Result<Vec<u8>, String>> + Send + 'a>> {
        Box::pin(async move { self.verdicts(file).await.map_err(|e| e.to_string()) })
    }
}
