//! `kiban cluster`: the bulk passes on a DataFusion Ballista cluster (feature `cluster`).
//!
//! The logic lives in `kiban-cluster`; this file parses arguments and reads keys and the registry.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use kiban_cluster::node::{ExecutorOptions, run_executor, run_scheduler};
use kiban_cluster::plans::{gate_pass, qi_frequency, tokenize_pass};
use kiban_cluster::runner::{FilePlan, Output, RunReport, Runner};
use kiban_cluster::{ClusterSecret, GateFacts, GateUdf, TokenUdf};

use crate::Ctx;
use crate::datadir::DataDir;

/// Run the bulk passes as DataFusion plans, in-process or on a Ballista cluster (scheduler +
/// executors started with `kiban cluster scheduler|executor`). Outputs are byte-identical either way.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    verb: Verb,
}

/// Where a pass runs.
#[derive(Debug, clap::Args)]
struct Engine {
    /// Ballista scheduler URL (`df://host:port`); in-process when absent.
    #[arg(long)]
    cluster: Option<String>,
    /// The cluster key file (mode 0600) shared with the executors; needed with --cluster.
    #[arg(long)]
    cluster_key: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
enum Verb {
    /// Write a new cluster key file (mode 0600): copy it to each executor and the submitting host.
    Keygen {
        /// The key file to create.
        out: PathBuf,
    },
    /// Run a scheduler (holds no key).
    Scheduler {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:50050")]
        bind: SocketAddr,
        /// Seconds after a job ends before executors delete its result files (intermediate shuffle
        /// files go at once); the client must have opened every result partition by then.
        #[arg(long, default_value_t = 600)]
        job_data_cleanup_s: u64,
    },
    /// Run an executor; put --work-dir on an encrypted volume (it holds shuffle files of medical rows).
    Executor {
        /// The scheduler's address.
        #[arg(long, default_value = "127.0.0.1:50050")]
        scheduler: SocketAddr,
        /// Host to bind and advertise.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Arrow Flight port.
        #[arg(long, default_value_t = 50051)]
        flight_port: u16,
        /// gRPC port.
        #[arg(long, default_value_t = 50052)]
        grpc_port: u16,
        /// Shuffle directory.
        #[arg(long)]
        work_dir: PathBuf,
        /// The cluster key file.
        #[arg(long)]
        key_file: PathBuf,
        /// Task slots.
        #[arg(long, default_value_t = 2)]
        vcores: usize,
    },
    /// The opt-out gate over a Parquet input of one provider (columns provider_id, patient_id and the
    /// provision date): every row with its verdict, decided from the registry's facts.
    Gate {
        /// Input Parquet file or directory (same path on every executor).
        #[arg(long)]
        input: PathBuf,
        /// Output dataset directory.
        #[arg(long)]
        out: PathBuf,
        /// The submitting provider.
        #[arg(long)]
        provider: String,
        /// The provision-date column.
        #[arg(long, default_value = "provision_date")]
        date_column: String,
        /// Sort the output by this column (then every other one) instead of keeping the input's
        /// order (files in name order, rows in file order; no global sort).
        #[arg(long)]
        order_by: Option<String>,
        #[command(flatten)]
        engine: Engine,
    },
    /// Replace columns by keyed pseudonym tokens (integers: kiban-identity v2 person tokens;
    /// strings: per-column release tokens).
    Tokenize {
        /// Input Parquet file or directory.
        #[arg(long)]
        input: PathBuf,
        /// Output dataset directory.
        #[arg(long)]
        out: PathBuf,
        /// Columns to tokenize (comma-separated).
        #[arg(long, value_delimiter = ',', required = true)]
        columns: Vec<String>,
        /// The release key file: 64 hex digits, mode 0600.
        #[arg(long)]
        key_file: PathBuf,
        /// Sort the output by this column (then every other one) instead of keeping the input's
        /// order (files in name order, rows in file order; no global sort).
        #[arg(long)]
        order_by: Option<String>,
        #[command(flatten)]
        engine: Engine,
    },
    /// The frequency table of distinct quasi-identifier tuples.
    QiFrequency {
        /// Input Parquet file or directory.
        #[arg(long)]
        input: PathBuf,
        /// Output dataset directory.
        #[arg(long)]
        out: PathBuf,
        /// Quasi-identifier columns (comma-separated).
        #[arg(long, value_delimiter = ',', required = true)]
        qi: Vec<String>,
        #[command(flatten)]
        engine: Engine,
    },
}

async fn runner(e: &Engine) -> Result<(Runner, ClusterSecret)> {
    match &e.cluster {
        Some(url) => {
            let key = e.cluster_key.as_deref().context("--cluster needs --cluster-key (the cluster key file)")?;
            Ok((Runner::cluster(url).await?, ClusterSecret::read(key)?))
        }
        // In-process, nothing leaves this process: a throwaway secret seals the job's payloads.
        None => Ok((Runner::in_process(Some(2 << 30))?, ClusterSecret::generate())),
    }
}

/// `kiban anonymize --cluster URL`: kiban-deid's frequency count and output pass on the cluster,
/// the search in this process.
pub fn anonymize(
    url: &str,
    key: Option<&std::path::Path>,
    policy: &kiban_deid::Policy,
    (input, output): (&std::path::Path, &std::path::Path),
    progress: Box<kiban_deid::engine::ProgressFn>,
    tuple_budget: Option<usize>,
) -> Result<kiban_deid::Outcome> {
    let key = key.context("--cluster needs --cluster-key (the cluster key file)")?;
    let job = kiban_cluster::anonymize::Job {
        policy: policy.clone(),
        input: input.to_owned(),
        output: output.to_owned(),
        progress: Some(progress),
        key_seed: None,
        tuple_budget,
    };
    crate::block_on(async move {
        let runner = std::sync::Arc::new(Runner::cluster(url).await?);
        let secret = std::sync::Arc::new(ClusterSecret::read(key)?);
        let ran = kiban_cluster::anonymize::run(runner, secret, job).await?;
        if !ran.pass2_on_runner {
            eprintln!(
                "出力パスはこのプロセスで実行しました（A4 処理・日付の粗化・局所再符号化はクラスタ外） / \
                 the output pass ran here (the policy's A4 treatments, date coarsening or local recoding)"
            );
        }
        Ok(ran.outcome)
    })
}

/// `kiban intake submit --cluster URL`: the gate's verdicts from the cluster, from the registry's
/// facts for `provider` (sealed for the job) as of `date`.
pub async fn intake_gate(
    reg: &kiban_registry::Registry,
    url: &str,
    key: Option<&std::path::Path>,
    provider: &str,
    date: chrono::NaiveDate,
    input: &std::path::Path,
) -> Result<Box<dyn kiban_registry::intake::VerdictSource>> {
    let key = key.context("--cluster needs --cluster-key (the cluster key file)")?;
    let standing = reg.standing(provider, date).await?;
    let facts = reg.gate_facts(provider).await?;
    let facts = GateFacts::from_registry(provider, standing.filing.input.waiting_days, &facts);
    let runner = Runner::cluster(url).await?;
    let secret = ClusterSecret::read(key)?;
    let gate = kiban_cluster::intake::GateVerdicts::new(&runner, &secret, &job_id("intake"), &facts, date, input)?;
    Ok(Box::new(gate))
}

/// Writes a row-wise pass in input order, or sorted by `order_by` when asked.
async fn write(
    r: &Runner,
    input: &std::path::Path,
    plan: Arc<FilePlan>,
    order_by: Option<&str>,
    out: &Output,
) -> Result<RunReport> {
    Ok(match order_by {
        None => r.write_in_input_order(input, plan, out).await?,
        Some(k) => r.write(plan(r.read_parquet(input).await?)?, &[k], out).await?,
    })
}

fn job_id(what: &str) -> String {
    format!("{what}-{}-{}", chrono::Utc::now().format("%Y%m%dT%H%M%S"), std::process::id())
}

/// Runs `kiban cluster`.
pub fn run(ctx: &Ctx, args: Args) -> Result<ExitCode> {
    crate::block_on(async move {
        match args.verb {
            Verb::Keygen { out } => {
                ClusterSecret::generate().write_new(&out)?;
                println!("クラスタ鍵を作成しました / cluster key written: {}", out.display());
            }
            Verb::Scheduler { bind, job_data_cleanup_s } => run_scheduler(bind, job_data_cleanup_s).await?,
            Verb::Executor { scheduler, host, flight_port, grpc_port, work_dir, key_file, vcores } => {
                run_executor(ExecutorOptions { scheduler, host, flight_port, grpc_port, work_dir, key_file, vcores })
                    .await?
            }
            Verb::Gate { input, out, provider, date_column, order_by, engine } => {
                let dd = DataDir::open(&ctx.data_dir)?;
                let reg = dd.registry().await?;
                let today = chrono::Local::now().date_naive();
                let standing = reg.standing(&provider, today).await?;
                let facts = reg.gate_facts(&provider).await?;
                let facts = GateFacts::from_registry(&provider, standing.filing.input.waiting_days, &facts);
                let (r, secret) = runner(&engine).await?;
                let gate = GateUdf::for_runner(&r, &secret, &job_id("gate"), &facts, &input)?.into_udf();
                let plan: Arc<FilePlan> = Arc::new(move |df| gate_pass(df, gate.clone(), &date_column));
                let mut o = Output::new(&out, "gate");
                o.sealer = Some(dd.sealer()?);
                let rep = write(&r, &input, plan, order_by.as_deref(), &o).await?;
                println!("ゲート判定 / gate: {} rows in {:.1} s → {}", rep.rows, rep.seconds, out.display());
            }
            Verb::Tokenize { input, out, columns, key_file, order_by, engine } => {
                let key = kiban_cluster::seal::read_key_file(&key_file)?;
                let (r, secret) = runner(&engine).await?;
                let token = TokenUdf::new(&secret, &job_id("tokenize"), &key)?.into_udf();
                let plan: Arc<FilePlan> = Arc::new(move |df| {
                    let cols: Vec<&str> = columns.iter().map(String::as_str).collect();
                    tokenize_pass(df, token.clone(), &cols)
                });
                let rep = write(&r, &input, plan, order_by.as_deref(), &Output::new(&out, "tokenize")).await?;
                println!("仮名トークン化 / tokenize: {} rows in {:.1} s → {}", rep.rows, rep.seconds, out.display());
            }
            Verb::QiFrequency { input, out, qi, engine } => {
                let (r, _) = runner(&engine).await?;
                let cols: Vec<&str> = qi.iter().map(String::as_str).collect();
                let plan = qi_frequency(r.read_parquet(&input).await?, &cols)?;
                let rep = r.write(plan, &cols, &Output::new(&out, "qi_frequency")).await?;
                println!(
                    "準識別子の頻度表 / QI frequency: {} tuples in {:.1} s → {}",
                    rep.rows,
                    rep.seconds,
                    out.display()
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
