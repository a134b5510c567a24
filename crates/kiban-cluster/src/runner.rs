//! One runner for a DataFusion plan, in this process or on a Ballista cluster, writing a kiban
//! dataset whose bytes depend only on the data: fixed batch and part sizes, the dataset writer's fixed
//! compression, and rows in an order no engine can change. Row-wise passes (gate, tokens) keep the
//! input's own order without a global sort ([`Runner::write_in_input_order`]: one ordered task and
//! one run of parts per input file, files in name order); aggregates are small and sorted
//! ([`Runner::write`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::compute::{cast, concat_batches};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::dataframe::DataFrame;
use datafusion::execution::SendableRecordBatchStream;
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
    file_tasks: usize,
}

/// Input files run at once by [`Runner::write_in_input_order`] on a cluster (each is one task).
pub const CLUSTER_FILE_TASKS: usize = 4;

/// A row-wise plan over one input file's rows (the same for every file).
pub type FilePlan = dyn Fn(DataFrame) -> Result<DataFrame> + Send + Sync;

fn local_parallelism() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

impl Runner {
    /// An in-process runner; sorts and aggregations spill to disk past `memory_limit` bytes.
    pub fn in_process(memory_limit: Option<usize>) -> Result<Self> {
        let mut rt = RuntimeEnvBuilder::new();
        if let Some(m) = memory_limit {
            // A fair pool, not the greedy one: with the greedy pool one partition's final aggregate
            // took the whole limit and the other's failed instead of spilling (100M rows, 8 QIs).
            rt = rt.with_memory_pool(Arc::new(datafusion::execution::memory_pool::FairSpillPool::new(m)));
        }
        let rt = rt.build_arc().map_err(df("runtime"))?;
        let ctx = SessionContext::new_with_config_rt(SessionConfig::new(), rt);
        Ok(Runner { ctx, cluster: None, file_tasks: local_parallelism() })
    }

    /// A runner on the Ballista scheduler at `url` (`df://host:port`), with kiban's plan codecs.
    #[cfg(feature = "cluster")]
    pub async fn cluster(url: &str) -> Result<Self> {
        use ballista::prelude::{SessionConfigExt, SessionContextExt};
        use datafusion::execution::SessionStateBuilder;
        let config = SessionConfig::new_with_ballista()
            .with_ballista_logical_extension_codec(Arc::new(crate::codec::KibanLogicalCodec::default()))
            .with_ballista_physical_extension_codec(Arc::new(crate::codec::KibanPhysicalCodec::default()))
            .with_ballista_grpc_client_max_message_size(crate::node::PLAN_MESSAGE_LIMIT as usize);
        let state = SessionStateBuilder::new().with_config(config).with_default_features().build();
        let ctx = SessionContext::remote_with_state(url, state).await.map_err(df("connect to the cluster"))?;
        Ok(Runner { ctx, cluster: Some(url.to_owned()), file_tasks: CLUSTER_FILE_TASKS })
    }

    /// An in-process runner over a session the caller configured.
    pub fn from_context(ctx: SessionContext) -> Self {
        Runner { ctx, cluster: None, file_tasks: local_parallelism() }
    }

    /// How many input files [`Runner::write_in_input_order`] runs at once (at least 1); the output's
    /// bytes do not depend on it.
    pub fn with_file_tasks(mut self, n: usize) -> Self {
        self.file_tasks = n.max(1);
        self
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
        Ok(Runner {
            ctx: SessionContext::new_with_state(state),
            cluster: self.cluster.clone(),
            file_tasks: self.file_tasks,
        })
    }

    /// Runs `plan` and streams its rows. On a cluster, dropping the stream (read to the end or
    /// abandoned) has the executors delete the job's results at once ([`crate::release`]).
    pub async fn execute(&self, plan: DataFrame, stage: &'static str) -> Result<SendableRecordBatchStream> {
        let task = Arc::new(plan.task_ctx());
        let physical = plan.create_physical_plan().await.map_err(df(stage))?;
        let stream = datafusion::physical_plan::execute_stream(physical.clone(), task).map_err(df(stage))?;
        #[cfg(feature = "cluster")]
        if let Some(url) = &self.cluster {
            return Ok(crate::release::releasing(stream, physical, url));
        }
        Ok(stream)
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

    /// Runs the row-wise `plan` over each Parquet file of `input` (a file, or a directory's
    /// `*.parquet` in name order) as one ordered task, and writes the rows in input order: file `i`'s
    /// rows become parts `part-iiiii-jjjj` of [`Output::rows_per_part`] rows each. No global sort and
    /// no single giant result stream; several files run at once ([`Runner::with_file_tasks`]) and the
    /// bytes are the same wherever and however concurrently the tasks ran.
    pub async fn write_in_input_order(&self, input: &Path, plan: Arc<FilePlan>, out: &Output) -> Result<RunReport> {
        self.write_files(input, FileSource::Parquet, plan, out).await
    }

    /// Parses the CSV files of `input` (a file, or a directory's `*.csv` in name order; with a header
    /// row) into typed Parquet parts, as [`Runner::write_in_input_order`] does for a pass: the
    /// parse→Parquet stage of intake as a plan. A field that does not parse as its column's type fails
    /// the run with the file named (intake's own reader quarantines such records instead).
    pub async fn parse_csv_in_input_order(&self, input: &Path, schema: SchemaRef, out: &Output) -> Result<RunReport> {
        self.write_files(input, FileSource::Csv(schema), Arc::new(Ok), out).await
    }

    async fn write_files(
        &self,
        input: &Path,
        source: FileSource,
        plan: Arc<FilePlan>,
        out: &Output,
    ) -> Result<RunReport> {
        let start = Instant::now();
        let files = input_files(input, source.extension())?;
        let ordered = self.ordered()?;
        let first = plan(source.read(&ordered, &files[0]).await?)?;
        let schema = plain_strings(first.schema().as_arrow());
        let mut writer = DatasetWriter::create(&out.dir, &out.name, schema.clone(), FileFormat::Parquet)?;
        if let Some(s) = &out.sealer {
            writer = writer.sealed(s.clone());
        }
        let writer = Arc::new(writer);
        let ctx = ordered.ctx.clone();
        let tasks = files.iter().enumerate().map(|(i, f)| {
            let job = FileJob {
                ctx: ctx.clone(),
                cluster: ordered.cluster.clone(),
                file: f.clone(),
                source: source.clone(),
                no: i,
                plan: plan.clone(),
                schema: schema.clone(),
                writer: writer.clone(),
                rows_per_part: out.rows_per_part.max(1),
            };
            // Each file on its own task, so in-process files run on all cores at once.
            async move {
                tokio::spawn(job.run()).await.map_err(|e| crate::ClusterError::Input {
                    field: "file task".into(),
                    rule: format!("a file's task failed: {e}"),
                })?
            }
        });
        let mut done = futures::stream::iter(tasks).buffer_unordered(self.file_tasks);
        let mut rows = 0u64;
        while let Some(r) = done.next().await {
            rows += r?;
        }
        drop(done);
        let writer = Arc::into_inner(writer).expect("every file task has ended");
        let provenance = serde_json::json!({
            "generator": "kiban-cluster",
            "order": "input files in name order, rows in file order",
            "input_files": files.iter().map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned())).collect::<Vec<_>>(),
            "write_batch_rows": WRITE_BATCH_ROWS,
            "rows_per_part": out.rows_per_part,
        });
        let manifest = writer.commit(provenance)?;
        Ok(RunReport { manifest, rows, seconds: start.elapsed().as_secs_f64() })
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
        let mut stream = self.execute(plan, "execute").await?;
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

/// The Parquet files of `input`: the file itself, or a directory's `*.parquet` files in name order.
pub fn parquet_files(input: &Path) -> Result<Vec<PathBuf>> {
    input_files(input, "parquet")
}

/// How an input file is read.
#[derive(Clone)]
enum FileSource {
    Parquet,
    /// CSV with a header row, parsed to this schema.
    Csv(SchemaRef),
}

impl FileSource {
    fn extension(&self) -> &'static str {
        match self {
            FileSource::Parquet => "parquet",
            FileSource::Csv(_) => "csv",
        }
    }

    async fn read(&self, runner: &Runner, file: &Path) -> Result<DataFrame> {
        match self {
            FileSource::Parquet => runner.read_parquet(file).await,
            FileSource::Csv(schema) => {
                let opts = datafusion::prelude::CsvReadOptions::new().has_header(true).schema(schema);
                runner.ctx.read_csv(file.to_string_lossy().into_owned(), opts).await.map_err(df("read input"))
            }
        }
    }
}

/// The files of `input` with extension `ext`: the file itself, or a directory's `*.ext` in name order.
fn input_files(input: &Path, ext: &str) -> Result<Vec<PathBuf>> {
    let io = |source| crate::ClusterError::Io { path: input.display().to_string(), source };
    let files = if input.is_dir() {
        let mut v = Vec::new();
        for e in std::fs::read_dir(input).map_err(io)? {
            let p = e.map_err(io)?.path();
            if p.is_file() && p.extension().is_some_and(|x| x == ext) {
                v.push(p);
            }
        }
        v.sort();
        v
    } else {
        vec![input.to_owned()]
    };
    if files.is_empty() {
        return Err(crate::ClusterError::Input {
            field: input.display().to_string(),
            rule: format!("the input must be a .{ext} file or a directory holding *.{ext} files"),
        });
    }
    Ok(files)
}

/// One input file's share of [`Runner::write_in_input_order`].
struct FileJob {
    ctx: SessionContext,
    cluster: Option<String>,
    file: PathBuf,
    source: FileSource,
    no: usize,
    plan: Arc<FilePlan>,
    schema: SchemaRef,
    writer: Arc<DatasetWriter>,
    rows_per_part: usize,
}

impl FileJob {
    /// Runs the plan over the file and writes its parts; returns the rows written.
    async fn run(self) -> Result<u64> {
        let runner = Runner { ctx: self.ctx.clone(), cluster: self.cluster.clone(), file_tasks: 1 };
        let plan = (self.plan)(self.source.read(&runner, &self.file).await?)?;
        let mut stream = runner.execute(plan, "execute").await?;
        let name = self.file.display().to_string();
        let mut rows = 0u64;
        let mut chunker = Chunker::new(self.schema.clone());
        let mut part: Vec<RecordBatch> = Vec::new();
        let mut part_rows = 0usize;
        let mut sub = 0usize;
        let flush = |part: Vec<RecordBatch>, sub: &mut usize| {
            let writer = self.writer.clone();
            let name = format!("part-{:05}-{:04}", self.no, *sub);
            *sub += 1;
            // Encoding and compressing is CPU work: off the async threads.
            tokio::task::spawn_blocking(move || writer.write_part(&name, &part))
        };
        let mut end = false;
        while !end {
            let next = stream.next().await;
            let batches = match next {
                Some(b) => {
                    let b = b.map_err(df("execute"))?;
                    let b = normalize(&self.schema, b)
                        .map_err(|e| crate::ClusterError::Input { field: name.clone(), rule: e.to_string() })?;
                    rows += b.num_rows() as u64;
                    chunker.push(b)?
                }
                None => {
                    end = true;
                    chunker.finish()?
                }
            };
            for b in batches {
                part_rows += b.num_rows();
                part.push(b);
                if part_rows >= self.rows_per_part {
                    flush(std::mem::take(&mut part), &mut sub).await.map_err(|e| crate::ClusterError::Input {
                        field: name.clone(),
                        rule: format!("the part writer failed: {e}"),
                    })??;
                    part_rows = 0;
                }
            }
        }
        if part_rows > 0 {
            flush(part, &mut sub).await.map_err(|e| crate::ClusterError::Input {
                field: name.clone(),
                rule: format!("the part writer failed: {e}"),
            })??;
        }
        Ok(rows)
    }
}

/// Cuts a stream of batches into batches of exactly [`WRITE_BATCH_ROWS`] rows (the last may be
/// shorter), so page and row-group boundaries never depend on the engine's batch sizes.
struct Chunker {
    schema: SchemaRef,
    pending: Vec<RecordBatch>,
    rows: usize,
}

impl Chunker {
    fn new(schema: SchemaRef) -> Self {
        Chunker { schema, pending: Vec::new(), rows: 0 }
    }

    fn push(&mut self, b: RecordBatch) -> Result<Vec<RecordBatch>> {
        self.rows += b.num_rows();
        if b.num_rows() > 0 {
            self.pending.push(b);
        }
        let mut out = Vec::new();
        if self.rows < WRITE_BATCH_ROWS {
            return Ok(out);
        }
        let all = concat_batches(&self.schema, &self.pending).map_err(|e| df("batch")(e.into()))?;
        let mut at = 0;
        while all.num_rows() - at >= WRITE_BATCH_ROWS {
            out.push(all.slice(at, WRITE_BATCH_ROWS));
            at += WRITE_BATCH_ROWS;
        }
        self.rows = all.num_rows() - at;
        self.pending = if self.rows > 0 { vec![all.slice(at, self.rows)] } else { Vec::new() };
        Ok(out)
    }

    fn finish(&mut self) -> Result<Vec<RecordBatch>> {
        if self.rows == 0 {
            return Ok(Vec::new());
        }
        let all = concat_batches(&self.schema, &self.pending).map_err(|e| df("batch")(e.into()))?;
        self.pending.clear();
        self.rows = 0;
        Ok(vec![all])
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
