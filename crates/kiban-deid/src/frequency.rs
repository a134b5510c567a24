//! The frequency pass as a DataFusion plan: `SELECT qi…, [sensitive], count(*) GROUP BY qi…,
//! [sensitive]` over the input with every value trimmed and a null read as the empty string (as the
//! streaming reader does). The plan is plain DataFusion, so the same pass can run on a Ballista
//! cluster; the engine then codes only the distinct tuples (far fewer than the records) against the
//! hierarchies. Rare-value counts (A4) are the same plan over the rare column and its group.

use std::sync::Arc;

use arrow::array::{Array, AsArray, Int64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::functions::expr_fn::{btrim, coalesce};
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::logical_expr::{Expr, cast, ident, lit};
use datafusion::prelude::{CsvReadOptions, DataFrame, ParquetReadOptions, SessionConfig, SessionContext};
use futures::StreamExt;

use crate::error::{DeidError, Result};
use crate::io::Input;

/// The grouped counts: one row per distinct combination of the grouped columns.
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
            let mut first = None;
            crate::io::for_each_batch(input, delimiter, |b| {
                first.get_or_insert_with(|| b.schema());
                Ok(())
            })?;
            first
                .map(|s| text(s.fields().iter().map(|f| f.name().clone()).collect()))
                .ok_or_else(|| DeidError::format("<stream>", "no batches"))
        }
    }
}

/// Counts the records of each distinct combination of `columns` with a DataFusion plan.
pub fn group_count(input: &Input, delimiter: u8, columns: &[String]) -> Result<Grouped> {
    // DataFusion is async; run it on a runtime of its own so callers inside another runtime are fine.
    let input = input.clone();
    let columns = columns.to_vec();
    std::thread::scope(|s| {
        s.spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
                .enable_all()
                .build()
                .map_err(|e| DeidError::format("datafusion", e))?;
            rt.block_on(run(&input, delimiter, &columns))
        })
        .join()
        .map_err(|_| DeidError::format("datafusion", "the frequency pass panicked"))?
    })
}

fn df_err(e: impl std::fmt::Display) -> DeidError {
    DeidError::format("datafusion frequency pass", e)
}

/// The plan: trimmed, null-as-empty text of each column, grouped, counted.
pub fn plan(source: DataFrame, columns: &[String]) -> Result<DataFrame> {
    let exprs: Vec<Expr> =
        columns.iter().map(|c| coalesce(vec![btrim(vec![cast(ident(c), DataType::Utf8)]), lit("")]).alias(c)).collect();
    source
        .select(exprs)
        .map_err(df_err)?
        .aggregate(columns.iter().map(ident).collect(), vec![count(lit(1)).alias("__n")])
        .map_err(df_err)
}

async fn run(input: &Input, delimiter: u8, columns: &[String]) -> Result<Grouped> {
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_batch_size(crate::io::BATCH_ROWS));
    collect(plan(source(&ctx, input, delimiter).await?, columns)?, columns.len()).await
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
        // DataFusion reads a streamed source as batches held in memory (the streaming pass does not).
        Input::Stream(_) => {
            let mut all = Vec::new();
            crate::io::for_each_batch(input, delimiter, |b| {
                all.push(b.clone());
                Ok(())
            })?;
            ctx.read_batches(all).map_err(df_err)?
        }
    })
}

/// Runs a [`plan`] over `grouped` columns and gathers its rows.
pub async fn collect(plan: DataFrame, grouped: usize) -> Result<Grouped> {
    let mut stream = plan.execute_stream().await.map_err(df_err)?;
    let mut out = Grouped { columns: vec![Vec::new(); grouped], counts: Vec::new() };
    while let Some(batch) = stream.next().await {
        let batch: RecordBatch = batch.map_err(df_err)?;
        for (i, col) in out.columns.iter_mut().enumerate() {
            let a = arrow::compute::cast(batch.column(i), &DataType::Utf8).map_err(df_err)?;
            let a = a.as_string::<i32>();
            col.extend((0..a.len()).map(|r| if a.is_valid(r) { a.value(r).to_owned() } else { String::new() }));
        }
        let n = arrow::compute::cast(batch.column(grouped), &DataType::Int64).map_err(df_err)?;
        let n = n.as_any().downcast_ref::<Int64Array>().ok_or_else(|| df_err("count is not an integer"))?;
        out.counts.extend(n.values().iter().map(|&x| x as u64));
    }
    Ok(out)
}

impl Grouped {
    /// The same counts with the combinations in lexicographic order of their values, so what follows
    /// (tuple codes, sums over tuples) does not depend on how an engine partitioned the work.
    pub fn sorted(self) -> Grouped {
        let mut order: Vec<usize> = (0..self.counts.len()).collect();
        order.sort_by(|&a, &b| {
            self.columns.iter().map(|c| c[a].cmp(&c[b])).find(|o| o.is_ne()).unwrap_or(std::cmp::Ordering::Equal)
        });
        Grouped {
            columns: self.columns.iter().map(|c| order.iter().map(|&r| c[r].clone()).collect()).collect(),
            counts: order.iter().map(|&r| self.counts[r]).collect(),
        }
    }
}
