//! `kiban anonymize` with its bulk passes on a [`Runner`] (a Ballista cluster or this process).
//!
//! The engine is kiban-deid's, and it decides everything as in-process: pass 1 (the distinct-tuple
//! frequency count of the quasi-identifiers with the sensitive column, and the rare-value counts)
//! runs as a sorted DataFusion group-by on the runner, streamed here into the engine's frequency
//! table (folded within its tuple budget, so memory here is bounded at any size); the lattice search
//! runs in this process over that table; pass 2 (generalization, suppression, tokens) runs on the
//! runner as a projection with kiban-deid's pass-2 UDFs whenever the policy allows
//! ([`kiban_deid::apply`]), else streams here. Values are read exactly as the engine's own reader
//! reads them, counts arrive sorted for coding, and pass 2 runs as one ordered task (Ballista returns
//! a job's partitions in completion order, and the output keeps the input's order), so the output and
//! the report equal an in-process `kiban anonymize` run's.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::DataType;
use datafusion::dataframe::DataFrame;
use datafusion::functions::expr_fn::coalesce;
use datafusion::logical_expr::{Expr, ScalarUDF, cast, ident, lit};
use futures::StreamExt;
use kiban_deid::apply::{ApplyColumn, ApplySpec, SUPPRESSED_COLUMN};
use kiban_deid::engine::ProgressFn;
use kiban_deid::frequency::{GroupSink, sorted_count, source, stream_batches};
use kiban_deid::{Input, Outcome, Output, Policy, RunOptions};

use crate::deid_udf::DeidUdf;
use crate::runner::Runner;
use crate::seal::ClusterSecret;
use crate::{ClusterError, Result, df};

/// One anonymization job on a runner.
pub struct Job {
    /// The processing policy.
    pub policy: Policy,
    /// The input table (.csv or .parquet); on a cluster every executor reads the same path.
    pub input: PathBuf,
    /// The output table (.csv or .parquet), written by this process.
    pub output: PathBuf,
    /// Progress callback.
    pub progress: Option<Box<ProgressFn>>,
    /// Derive the run's token keys from this seed (byte-for-byte comparisons only); `None`: random.
    pub key_seed: Option<[u8; 32]>,
    /// Distinct tuples the frequency table keeps at most (`None`: the engine's default budget).
    pub tuple_budget: Option<usize>,
}

/// What ran where.
#[derive(Debug)]
pub struct Ran {
    /// The engine's outcome (report).
    pub outcome: Outcome,
    /// Pass 2 ran on the runner (false: the policy needed the streaming pass here).
    pub pass2_on_runner: bool,
}

fn deid(e: ClusterError) -> kiban_deid::DeidError {
    match e {
        ClusterError::Deid(d) => d,
        other => kiban_deid::DeidError::format("cluster pass", other),
    }
}

/// Column `c` as text, as kiban-deid's reader gives it: CSV fields trimmed (null is empty), other
/// inputs cast to text as they are.
fn read(c: &str, csv: bool) -> Expr {
    let text = cast(ident(c), DataType::Utf8);
    if csv { DeidUdf::trim().call(vec![text]) } else { text }
}

/// Counts the records of each distinct combination of `columns` of `input` on `runner`, each value
/// read as the engine reads it (a null counted as the empty string), and hands the counts to `sink`
/// sorted, chunk by chunk (the aggregate and the sort spill on the runner; this process holds a
/// chunk at a time).
pub async fn group_count(
    runner: &Runner,
    input: &Input,
    delimiter: u8,
    columns: &[String],
    sink: &mut GroupSink<'_>,
) -> Result<()> {
    let csv = matches!(input, Input::Csv(_));
    let src = source(runner.context(), input, delimiter).await?;
    let exprs: Vec<Expr> = columns.iter().map(|c| coalesce(vec![read(c, csv), lit("")]).alias(c.as_str())).collect();
    let plan = sorted_count(src.select(exprs).map_err(df("frequency pass"))?, columns)?;
    let batches = runner.execute(plan, "frequency pass").await?;
    Ok(stream_batches(batches, columns.len(), sink).await?)
}

/// Pass 2 of `spec` as a plan: the output columns then the suppression flag, in input order; with
/// the plan's UDFs, which the caller keeps until the plan has run (a UDF whose payload went to a job
/// file removes the file when it is dropped, and the plan is dropped once it is submitted).
pub async fn apply_plan(
    runner: &Runner,
    secret: &ClusterSecret,
    job: &str,
    input: &Input,
    spec: &ApplySpec,
) -> Result<(DataFrame, Vec<Arc<ScalarUDF>>)> {
    let ordered = runner.ordered()?;
    let src = source(ordered.context(), input, spec.delimiter).await?;
    let csv = spec.csv;
    // On a cluster, large recoding tables go as sealed job files beside the input.
    let beside = match input {
        Input::Csv(p) | Input::Parquet(p) if runner.cluster_url().is_some() => Some(p.as_path()),
        _ => None,
    };
    let token = DeidUdf::token(secret, &format!("{job}-token"), &spec.token_key);
    let release = DeidUdf::token(secret, &format!("{job}-release"), &spec.release_key);
    let mut exprs = Vec::new();
    let mut udfs = vec![token.clone(), release.clone()];
    for (name, c) in &spec.columns {
        let e = match c {
            ApplyColumn::Keep => read(name, csv),
            ApplyColumn::Token => token.call(vec![read(name, csv), lit(name.as_str())]),
            ApplyColumn::Rekey => release.call(vec![read(name, csv), lit(name.as_str())]),
            ApplyColumn::Generalize { qi } => {
                let g = DeidUdf::generalize(secret, &format!("{job}-qi{qi}"), &spec.qi[*qi].labels, beside)?;
                udfs.push(g.clone());
                g.call(vec![read(name, csv)])
            }
        };
        exprs.push(e.alias(name.as_str()));
    }
    let qi: Vec<Expr> = spec.qi.iter().map(|q| read(&q.column, csv)).collect();
    let suppressed = DeidUdf::suppressed(secret, &format!("{job}-suppressed"), spec, beside)?;
    udfs.push(suppressed.clone());
    exprs.push(suppressed.call(qi).alias(SUPPRESSED_COLUMN));
    Ok((src.select(exprs).map_err(df("pass 2"))?, udfs))
}

/// Runs the job: pass 1 and (when the policy allows) pass 2 on `runner`, the search here. Must be
/// called inside a Tokio runtime; the engine runs on a blocking thread and waits for the plans.
pub async fn run(runner: Arc<Runner>, secret: Arc<ClusterSecret>, job: Job) -> Result<Ran> {
    let input = Input::from_path(&job.input);
    if !job.input.is_file() {
        return Err(ClusterError::Input {
            field: job.input.display().to_string(),
            rule: "the input must be a CSV or Parquet file every executor can read at this path".into(),
        });
    }
    let handle = tokio::runtime::Handle::current();
    let delimiter = job.policy.input_delimiter;
    let job_id = format!("anonymize-{}-{}", std::process::id(), chrono::Utc::now().format("%Y%m%dT%H%M%S%.f"));
    let on_runner = Arc::new(AtomicBool::new(false));
    let (r1, i1, h1) = (runner.clone(), input.clone(), handle.clone());
    let (r2, i2, flag) = (runner, input.clone(), on_runner.clone());
    let opts = RunOptions {
        progress: job.progress,
        key_seed: job.key_seed,
        tuple_budget: job.tuple_budget,
        group_count: Some(Box::new(move |cols: &[String], sink: &mut GroupSink| {
            h1.block_on(group_count(&r1, &i1, delimiter, cols, sink)).map_err(deid)
        })),
        apply: Some(Box::new(move |spec: &ApplySpec, sink: &mut dyn FnMut(RecordBatch) -> kiban_deid::Result<()>| {
            flag.store(true, Ordering::SeqCst);
            handle.block_on(async {
                let (plan, udfs) = apply_plan(&r2, &secret, &job_id, &i2, spec).await.map_err(deid)?;
                let mut stream = r2.execute(plan, "pass 2").await.map_err(deid)?;
                while let Some(b) = stream.next().await {
                    sink(crate::runner::plain_batch(b.map_err(|e| deid(df("pass 2")(e)))?).map_err(deid)?)?;
                }
                // The job files stay until the job has read them all.
                drop(udfs);
                Ok(())
            })
        })),
        ..Default::default()
    };
    let output = Output::from_path(&job.output);
    let policy = job.policy;
    let outcome =
        tokio::task::spawn_blocking(move || kiban_deid::anonymize(&policy, &input, &output, &opts)).await.map_err(
            |e| ClusterError::Input { field: "anonymization".into(), rule: format!("the engine thread failed: {e}") },
        )??;
    Ok(Ran { outcome, pass2_on_runner: on_runner.load(Ordering::SeqCst) })
}
