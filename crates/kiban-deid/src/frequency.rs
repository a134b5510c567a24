//! The frequency pass as a DataFusion plan: `SELECT qi…, [sensitive], count(*) GROUP BY qi…,
//! [sensitive] ORDER BY qi…, [sensitive]` over the input with every value trimmed and a null read as
//! the empty string (as the streaming reader does). The plan is plain DataFusion, so the same pass
//! can run on a Ballista cluster; the engine then codes only the distinct tuples (far fewer than the
//! records) against the hierarchies, chunk by chunk as the sorted rows arrive, so neither side holds
//! the whole table (the engine folds it within its tuple budget; the sort spills). Rare-value counts
//! (A4) are the same plan over the rare column and its group.

use std::sync::Arc;

use arrow::array::{Array, AsArray, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::functions::expr_fn::{btrim, coalesce};
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::logical_expr::{Expr, cast, ident, lit};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::prelude::{CsvReadOptions, DataFrame, ParquetReadOptions, SessionConfig, SessionContext};
use futures::StreamExt;

use crate::error::{DeidError, Result};
use crate::io::Input;

/// One chunk of group counts, in the order of the whole stream: lexicographic (byte) order of the
/// grouped values, first column first, each combination once.
#[derive(Debug, Clone)]
pub struct GroupChunk {
    /// Values of each grouped column as text (never null: a null was read as the empty string).
    pub columns: Vec<StringArray>,
    /// Records per combination.
    pub counts: Vec<u64>,
}

impl GroupChunk {
    /// The chunk of a plan's batch: the `grouped` columns then the count.
    pub fn from_batch(batch: &RecordBatch, grouped: usize) -> Result<GroupChunk> {
        let mut columns = Vec::with_capacity(grouped);
        for i in 0..grouped {
            let a = arrow::compute::cast(batch.column(i), &DataType::Utf8).map_err(df_err)?;
            let a = a.as_string::<i32>().clone();
            if a.null_count() > 0 {
                return Err(df_err(format!("grouped column {i} holds a null (read as the empty string)")));
            }
            columns.push(a);
        }
        let n = arrow::compute::cast(batch.column(grouped), &DataType::Int64).map_err(df_err)?;
        let n = n.as_any().downcast_ref::<Int64Array>().ok_or_else(|| df_err("count is not an integer"))?;
        let counts: Result<Vec<u64>> =
            n.values().iter().map(|&x| u64::try_from(x).map_err(|_| df_err("negative count"))).collect();
        Ok(GroupChunk { columns, counts: counts? })
    }

    /// Rows in the chunk.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// Whether the chunk has no rows.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

/// Receives the chunks of a sorted group count, in order.
pub type GroupSink<'a> = dyn FnMut(GroupChunk) -> Result<()> + 'a;

/// The grouped counts gathered in memory (small inputs and tests): one row per distinct
/// combination of the grouped columns, in the stream's order.
#[derive(Debug, Clone)]
pub struct Grouped {
    /// Values of each grouped column, per distinct combination.
    pub columns: Vec<Vec<String>>,
    /// Records per combination.
    pub counts: Vec<u64>,
}

/// The schema of the input (every column as text), read from the CSV header, the Parquet footer or
/// the first batch.
pub fn input_schema(input: &Input, delimiter: u8) -> Result<SchemaRef> {
    let text = |fields: Vec<String>| {
        Arc::new(Schema::new(fields.into_iter().map(|f| Field::new(f, DataType::Utf8, true)).collect::<Vec<_>>()))
    };
    match input {
        Input::Csv(p) => {
            let mut rdr = csv::ReaderBuilder::new()
                .delimiter(delimiter)
                .has_headers(true)
                .from_path(p)
                .map_err(|e| DeidError::format(p.display().to_string(), e))?;
            let h = rdr.headers().map_err(|e| DeidError::format(p.display().to_string(), e))?;
            Ok(text(h.iter().map(|s| s.trim().to_owned()).collect()))
        }
        Input::Parquet(p) => {
            let f = std::fs::File::open(p).map_err(|e| DeidError::Io { path: p.display().to_string(), source: e })?;
            let b = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
                .map_err(|e| DeidError::format(p.display().to_string(), e))?;
            Ok(text(b.schema().fields().iter().map(|f| f.name().clone()).collect()))
        }
        Input::Batches(b) => match b.first() {
            Some(b) => Ok(text(b.schema().fields().iter().map(|f| f.name().clone()).collect())),
            None => Err(DeidError::format("<batches>", "no batches")),
        },
        Input::Stream(_) => {
            // Only the first batch is needed: the read stops there (its parts are not all opened).
            let mut first = None;
            let read = crate::io::for_each_batch(input, delimiter, |b| {
                first = Some(b.schema());
                Err(DeidError::format("<stream>", "first batch read"))
            });
            match first {
                Some(s) => Ok(text(s.fields().iter().map(|f| f.name().clone()).collect())),
                None => Err(read.err().unwrap_or_else(|| DeidError::format("<stream>", "no batches"))),
            }
        }
    }
}

/// Counts the records of each distinct combination of `columns` with a DataFusion plan and hands
/// the sorted counts to `sink` chunk by chunk.
pub fn for_each_group(input: &Input, delimiter: u8, columns: &[String], sink: &mut GroupSink) -> Result<()> {
    // DataFusion is async: it runs on a runtime of its own thread (so callers inside another
    // runtime are fine) and hands the chunks here through a channel two chunks deep.
    let (input, columns) = (input.clone(), columns.to_vec());
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<GroupChunk>>(2);
    std::thread::scope(|s| {
        let plan = s.spawn(move || {
            let run = || -> Result<()> {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
                    .enable_all()
                    .build()
                    .map_err(|e| DeidError::format("datafusion", e))?;
                rt.block_on(async {
                    let ctx =
                        SessionContext::new_with_config(SessionConfig::new().with_batch_size(crate::io::BATCH_ROWS));
                    let plan = plan(source(&ctx, &input, delimiter).await?, &columns)?;
                    // A closed channel: the sink failed and its error is the one reported.
                    stream(plan, columns.len(), &mut |c| {
                        tx.send(Ok(c)).map_err(|_| DeidError::format("datafusion", "the sink stopped"))
                    })
                    .await
                })
            };
            if let Err(e) = run() {
                let _ = tx.send(Err(e));
            }
        });
        let mut result = Ok(());
        for chunk in rx.iter() {
            if let Err(e) = chunk.and_then(&mut *sink) {
                result = Err(e);
                break;
            }
        }
        drop(rx);
        plan.join().map_err(|_| DeidError::format("datafusion", "the frequency pass panicked"))?;
        result
    })
}

/// [`for_each_group`] gathered in memory.
pub fn group_count(input: &Input, delimiter: u8, columns: &[String]) -> Result<Grouped> {
    let mut out = Grouped { columns: vec![Vec::new(); columns.len()], counts: Vec::new() };
    for_each_group(input, delimiter, columns, &mut |c| {
        out.push(&c);
        Ok(())
    })?;
    Ok(out)
}

fn df_err(e: impl std::fmt::Display) -> DeidError {
    DeidError::format("datafusion frequency pass", e)
}

/// The plan: trimmed, null-as-empty text of each column, grouped, counted, sorted.
pub fn plan(source: DataFrame, columns: &[String]) -> Result<DataFrame> {
    let exprs: Vec<Expr> =
        columns.iter().map(|c| coalesce(vec![btrim(vec![cast(ident(c), DataType::Utf8)]), lit("")]).alias(c)).collect();
    sorted_count(source.select(exprs).map_err(df_err)?, columns)
}

/// `select` (the grouped columns as text) grouped, counted into `__n` and sorted by the columns, so
/// the engine codes the tuples in an order no partitioning can change (the same codes, folds and
/// output in-process and on a cluster) while they stream.
pub fn sorted_count(select: DataFrame, columns: &[String]) -> Result<DataFrame> {
    select
        .aggregate(columns.iter().map(ident).collect(), vec![count(lit(1)).alias("__n")])
        .map_err(df_err)?
        .sort(columns.iter().map(|c| ident(c).sort(true, true)).collect())
        .map_err(df_err)
}

/// The input as a DataFrame of `ctx` (every CSV column as text, as the streaming reader sees it);
/// on a cluster session the path must be readable by every executor.
pub async fn source(ctx: &SessionContext, input: &Input, delimiter: u8) -> Result<DataFrame> {
    Ok(match input {
        Input::Csv(p) => {
            let schema = input_schema(input, delimiter)?;
            let path = p.to_str().ok_or_else(|| DeidError::format(p.display().to_string(), "path is not UTF-8"))?;
            let opts = CsvReadOptions::new().has_header(true).delimiter(delimiter).schema(&schema).file_extension("");
            ctx.read_csv(path, opts).await.map_err(df_err)?
        }
        Input::Parquet(p) => {
            let path = p.to_str().ok_or_else(|| DeidError::format(p.display().to_string(), "path is not UTF-8"))?;
            ctx.read_parquet(path, ParquetReadOptions::default().file_extension("")).await.map_err(df_err)?
        }
        Input::Batches(b) => ctx.read_batches(b.iter().cloned()).map_err(df_err)?,
        // A streamed source (e.g. a sealed dataset's parts) is read as it is planned: its batches
        // flow through a bounded channel, so memory holds a few batches, never the whole source.
        Input::Stream(s) => {
            let schema = input_schema(input, delimiter)?;
            let part = Arc::new(StreamPartition { schema: schema.clone(), source: s.clone(), delimiter });
            let table = StreamingTable::try_new(schema, vec![part]).map_err(df_err)?;
            ctx.read_table(Arc::new(table)).map_err(df_err)?
        }
    })
}

/// Batches in flight between a streamed source's reader thread and the plan.
const STREAM_DEPTH: usize = 2;

/// One DataFusion partition over a [`crate::io::BatchSource`]: each execution reads the source anew
/// on a thread of its own (the source is blocking: it opens and decrypts parts) and hands its
/// batches, as text with the table's schema, through a channel of [`STREAM_DEPTH`] batches.
#[derive(Debug)]
struct StreamPartition {
    schema: SchemaRef,
    source: crate::io::BatchSource,
    delimiter: u8,
}

impl PartitionStream for StreamPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let (tx, rx) = tokio::sync::mpsc::channel::<datafusion::error::Result<RecordBatch>>(STREAM_DEPTH);
        let (schema, input, delimiter) = (self.schema.clone(), Input::Stream(self.source.clone()), self.delimiter);
        std::thread::spawn(move || {
            let mut gone = false;
            let name = input.name();
            // A panic of the source must not look like its end (counts would silently be short).
            let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                crate::io::for_each_batch(&input, delimiter, |b| {
                    // The same columns as the first batch, or the source is named in the error.
                    let b = RecordBatch::try_new(schema.clone(), b.columns().to_vec()).map_err(|e| {
                        DeidError::format(&name, format!("a batch does not have the first batch's columns: {e}"))
                    })?;
                    if tx.blocking_send(Ok(b)).is_err() {
                        // The plan stopped reading (finished early or cancelled): open no more parts.
                        gone = true;
                        return Err(DeidError::format(&name, "the plan stopped reading"));
                    }
                    Ok(())
                })
            }))
            .unwrap_or_else(|_| Err(DeidError::format(&name, "the source panicked while being read")));
            if let (Err(e), false) = (read, gone) {
                let _ = tx.blocking_send(Err(datafusion::error::DataFusionError::External(Box::new(e))));
            }
        });
        let batches = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), batches))
    }
}

/// Runs a [`plan`] over `grouped` columns and hands its rows to `sink` batch by batch.
pub async fn stream(plan: DataFrame, grouped: usize, sink: &mut GroupSink<'_>) -> Result<()> {
    stream_batches(plan.execute_stream().await.map_err(df_err)?, grouped, sink).await
}

/// Hands the rows of a running [`plan`]'s `stream` to `sink` batch by batch (for a caller that runs
/// the plan itself, e.g. on a cluster).
pub async fn stream_batches(
    mut stream: datafusion::execution::SendableRecordBatchStream,
    grouped: usize,
    sink: &mut GroupSink<'_>,
) -> Result<()> {
    while let Some(batch) = stream.next().await {
        let batch: RecordBatch = batch.map_err(df_err)?;
        if batch.num_rows() > 0 {
            sink(GroupChunk::from_batch(&batch, grouped)?)?;
        }
    }
    Ok(())
}

impl Grouped {
    /// Appends a chunk's rows.
    pub fn push(&mut self, chunk: &GroupChunk) {
        for (col, a) in self.columns.iter_mut().zip(&chunk.columns) {
            col.extend(a.iter().map(|v| v.unwrap_or_default().to_owned()));
        }
        self.counts.extend_from_slice(&chunk.counts);
    }
}
