//! One runner for a DataFusion plan, in this process or on a Ballista cluster, writing a kiban
//! dataset whose bytes depend only on the data: rows in a total order, fixed batch and part sizes,
//! the dataset writer's fixed compression.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::compute::{cast, concat_batches};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::dataframe::DataFrame;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{Expr, SortExpr};
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use futures::StreamExt;
use kiban_formats::dataset::{DatasetWriter, FileFormat, Manifest, Sealer};

use crate::{Result, df};

/// Rows per batch handed to the Parquet writer (so page boundaries never depend on the engine).
pub const WRITE_BATCH_ROWS: usize = 8192;

/// Where and how to write a pass's result.
pub struct Output {
    /// The dataset directory (must not exist).
    pub dir: PathBuf,
    /// The dataset's name (bound into sealed parts).
    pub name: String,
    /// Seals parts at rest when set (then the bytes differ per run: fresh data keys).
    pub sealer: Option<Arc<dyn Sealer>>,
    /// Rows per part file.
    pub rows_per_part: usize,
}

impl Output {
    /// An unsealed Parquet dataset at `dir`, one million rows per part.
    pub fn new(dir: &Path, name: &str) -> Self {
        Output { dir: dir.to_owned(), name: name.to_owned(), sealer: None, rows_per_part: 1 << 20 }
    }
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The committed dataset's manifest.
    pub manifest: Manifest,
    /// Rows written.
    pub rows: u64,
    /// Wall-clock seconds from plan to commit.
    pub seconds: f64,
}

/// Executes plans in this process or on a Ballista cluster.
pub struct Runner {
    ctx: SessionContext,
    cluster: Option<String>,
}

impl Runner {
    /// An in-process runner; sorts and aggregations spill to `spill_dir` past `memory_limit` bytes.
    pub fn in_process(memory_limit: Option<usize>) -> Result<Self> {
        let mut rt = RuntimeEnvBuilder::new();
        if let Some(m) = memory_limit {
            rt = rt.with_memory_limit(m, 1.0);
        }
        let rt = rt.build_arc().map_err(df("runtime"))?;
        let ctx = SessionContext::new_with_config_rt(SessionConfig::new(), rt);
        Ok(Runner { ctx, cluster: None })
    }

    /// A runner on the Ballista scheduler at `url` (`df://host:port`), with kiban's plan codecs.
    #[cfg(feature = "cluster")]
    pub async fn cluster(url: &str) -> Result<Self> {
        use ballista::prelude::{SessionConfigExt, SessionContextExt};
        use datafusion::execution::SessionStateBuilder;
        let config = SessionConfig::new_with_ballista()
            .with_ballista_logical_extension_codec(Arc::new(crate::codec::KibanLogicalCodec::default()))
            .with_ballista_physical_extension_codec(Arc::new(crate::codec::KibanPhysicalCodec::default()));
        let state = SessionStateBuilder::new().with_config(config).with_default_features().build();
        let ctx = SessionContext::remote_with_state(url, state).await.map_err(df("connect to the cluster"))?;
        Ok(Runner { ctx, cluster: Some(url.to_owned()) })
    }

    /// An in-process runner over a session the caller configured.
    pub fn from_context(ctx: SessionContext) -> Self {
        Runner { ctx, cluster: None }
    }

    /// The same engine (same cluster, same codecs) with one partition per plan and no repartitioning,
    /// so a map-only plan returns its rows in input order.
    pub fn ordered(&self) -> Result<Runner> {
        let state = self.ctx.state();
        let config = state
            .config()
            .clone()
            .with_target_partitions(1)
            .with_repartition_file_scans(false)
            .with_round_robin_repartition(false);
        let state = datafusion::execution::SessionStateBuilder::new_from_existing(state).with_config(config).build();
        Ok(Runner { ctx: SessionContext::new_with_state(state), cluster: self.cluster.clone() })
    }

    /// The cluster URL, or `None` in-process.
    pub fn cluster_url(&self) -> Option<&str> {
        self.cluster.as_deref()
    }

    /// The session (to register tables or build plans).
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Reads a directory (or file) of Parquet; on a cluster every executor must see the same path.
    pub async fn read_parquet(&self, path: &Path) -> Result<DataFrame> {
        let p = path.to_string_lossy().into_owned();
        let p = if path.is_dir() && !p.ends_with('/') { format!("{p}/") } else { p };
        self.ctx.read_parquet(p, ParquetReadOptions::default()).await.map_err(df("read input"))
    }

    /// Runs `plan` and writes its rows as a dataset, ordered by `order_by` then by every other column
    /// (a total order, so the bytes are the same wherever the plan ran).
    pub async fn write(&self, plan: DataFrame, order_by: &[&str], out: &Output) -> Result<RunReport> {
        let start = Instant::now();
        let names: Vec<String> = plan.schema().fields().iter().map(|f| f.name().clone()).collect();
        let mut keys: Vec<SortExpr> = Vec::new();
        for k in order_by.iter().map(|s| s.to_string()).chain(names.iter().cloned()) {
            if !keys.iter().any(|e| matches!(&e.expr, Expr::Column(c) if c.name == k)) {
                keys.push(datafusion::logical_expr::col(format!("\"{k}\"")).sort(true, true));
            }
        }
        let plan = plan.sort(keys).map_err(df("order the output"))?;
        let schema = plain_strings(plan.schema().as_arrow());
        let mut stream = plan.execute_stream().await.map_err(df("execute"))?;
        let mut writer = DatasetWriter::create(&out.dir, &out.name, schema.clone(), FileFormat::Parquet)?;
        if let Some(s) = &out.sealer {
            writer = writer.sealed(s.clone());
        }
        let mut rows = 0u64;
        let mut pending: Vec<RecordBatch> = Vec::new();
        let mut pending_rows = 0usize;
        let mut part_batches: Vec<RecordBatch> = Vec::new();
        let mut part_rows = 0usize;
        let mut part_no = 0usize;
        let mut emit = |b: RecordBatch, flush: bool, writer: &DatasetWriter| -> Result<()> {
            if b.num_rows() > 0 {
                part_rows += b.num_rows();
                part_batches.push(b);
            }
            if (part_rows >= out.rows_per_part || flush) && part_rows > 0 {
                writer.write_part(&format!("part-{part_no:05}"), &part_batches)?;
                part_no += 1;
                part_batches.clear();
                part_rows = 0;
            }
            Ok(())
        };
        while let Some(b) = stream.next().await {
            let b = normalize(&schema, b.map_err(df("execute"))?)?;
            rows += b.num_rows() as u64;
            pending_rows += b.num_rows();
            pending.push(b);
            while pending_rows >= WRITE_BATCH_ROWS {
                let all = concat_batches(&schema, &pending).map_err(|e| df("batch")(e.into()))?;
                emit(all.slice(0, WRITE_BATCH_ROWS), false, &writer)?;
                let rest = all.slice(WRITE_BATCH_ROWS, all.num_rows() - WRITE_BATCH_ROWS);
                pending_rows = rest.num_rows();
                pending = vec![rest];
            }
        }
        let last = concat_batches(&schema, &pending).map_err(|e| df("batch")(e.into()))?;
        emit(last, true, &writer)?;
        let provenance = serde_json::json!({
            "generator": "kiban-cluster",
            "order_by": order_by,
            "write_batch_rows": WRITE_BATCH_ROWS,
            "rows_per_part": out.rows_per_part,
        });
        let manifest = writer.commit(provenance)?;
        Ok(RunReport { manifest, rows, seconds: start.elapsed().as_secs_f64() })
    }
}

/// The output schema with string views and large strings as plain UTF-8 (one stable file schema).
fn plain_strings(s: &Schema) -> SchemaRef {
    let fields: Vec<Field> = s
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8View | DataType::LargeUtf8 => Field::new(f.name(), DataType::Utf8, f.is_nullable()),
            _ => Field::new(f.name(), f.data_type().clone(), f.is_nullable()),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// A batch with string views and large strings as plain UTF-8.
pub fn plain_batch(b: RecordBatch) -> Result<RecordBatch> {
    let schema = plain_strings(b.schema().as_ref());
    normalize(&schema, b)
}

fn normalize(schema: &SchemaRef, b: RecordBatch) -> Result<RecordBatch> {
    let cols: Vec<ArrayRef> = b
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| if c.data_type() == f.data_type() { Ok(c.clone()) } else { cast(c, f.data_type()) })
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| df("batch")(e.into()))?;
    RecordBatch::try_new(schema.clone(), cols).map_err(|e| df("batch")(e.into()))
}
