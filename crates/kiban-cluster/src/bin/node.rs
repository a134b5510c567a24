//! `kiban-cluster-node`: a Ballista scheduler or executor with kiban's UDF codecs, a cluster key
//! generator, and the cluster benchmark. The `kiban cluster …` subcommands call the same functions.

#[cfg(feature = "cluster")]
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use kiban_cluster::ClusterSecret;
#[cfg(feature = "cluster")]
use kiban_cluster::node::{ExecutorOptions, run_executor, run_scheduler};

#[derive(Parser)]
#[command(about = "Runs a node of a kiban Ballista cluster")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Writes a new cluster key file (mode 0600); copy it to every executor and the submitting host.
    Keygen {
        /// The key file to create (must not exist).
        out: PathBuf,
    },
    /// Runs the scheduler (holds no key).
    #[cfg(feature = "cluster")]
    Scheduler {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:50050")]
        bind: SocketAddr,
        /// Seconds after a job ends before executors delete its result files if its client never
        /// released them (a kiban client releases each job as soon as it has read the results;
        /// intermediate shuffle files go at once); a client must have opened every result
        /// partition by then.
        #[arg(long, default_value_t = 600)]
        job_data_cleanup_s: u64,
    },
    /// Runs an executor.
    #[cfg(feature = "cluster")]
    Executor {
        /// The scheduler's address.
        #[arg(long, default_value = "127.0.0.1:50050")]
        scheduler: SocketAddr,
        /// Host to bind and advertise.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Arrow Flight port.
        #[arg(long)]
        flight_port: u16,
        /// gRPC port.
        #[arg(long)]
        grpc_port: u16,
        /// Shuffle directory (put it on an encrypted volume).
        #[arg(long)]
        work_dir: PathBuf,
        /// The cluster key file (mode 0600).
        #[arg(long)]
        key_file: PathBuf,
        /// Task slots.
        #[arg(long, default_value_t = 2)]
        vcores: usize,
    },
    /// Benchmarks the passes in-process and, with --cluster, on the cluster; prints JSON lines.
    Bench {
        /// Input rows.
        #[arg(long, default_value_t = 1_000_000)]
        rows: u64,
        /// Input Parquet files.
        #[arg(long, default_value_t = 8)]
        files: u64,
        /// Scratch directory (input and outputs; removed at the end).
        #[arg(long)]
        work: PathBuf,
        /// Ballista scheduler URL (df://host:port; needs the `cluster` feature).
        #[arg(long)]
        cluster: Option<String>,
        /// The cluster key file (needed with --cluster; a fresh secret is used otherwise).
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// In-process memory limit in MiB (sorts spill past it).
        #[arg(long, default_value_t = 2048)]
        memory_mib: usize,
        /// A Python with the `duckdb` package: runs the same parse, gate join and QI group-by as the peer.
        #[arg(long)]
        duckdb_python: Option<PathBuf>,
        /// Skip the anonymization run (single input file, one ordered task for pass 2).
        #[arg(long)]
        no_anonymize: bool,
        /// Run only the anonymization (no parse, gate, token or QI-count pass, no peer).
        #[arg(long, conflicts_with_all = ["no_anonymize", "duckdb_python"])]
        only_anonymize: bool,
        /// With --cluster: skip the in-process runs (and so the byte comparison).
        #[arg(long, requires = "cluster", conflicts_with = "duckdb_python")]
        skip_in_process: bool,
    },
}

fn main() -> anyhow_free::Result {
    #[cfg(feature = "cluster")]
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().thread_stack_size(32 << 20).build()?;
    rt.block_on(async move {
        match cli.cmd {
            Cmd::Keygen { out } => ClusterSecret::generate().write_new(&out)?,
            #[cfg(feature = "cluster")]
            Cmd::Scheduler { bind, job_data_cleanup_s } => run_scheduler(bind, job_data_cleanup_s).await?,
            #[cfg(feature = "cluster")]
            Cmd::Executor { scheduler, host, flight_port, grpc_port, work_dir, key_file, vcores } => {
                run_executor(ExecutorOptions { scheduler, host, flight_port, grpc_port, work_dir, key_file, vcores })
                    .await?
            }
            Cmd::Bench {
                rows,
                files,
                work,
                cluster,
                key_file,
                memory_mib,
                duckdb_python,
                no_anonymize,
                only_anonymize,
                skip_in_process,
            } => {
                let opts = BenchOpts {
                    rows,
                    files,
                    cluster,
                    key_file,
                    memory_mib,
                    duckdb_python,
                    anonymize: !no_anonymize,
                    passes: !only_anonymize,
                    in_process: !skip_in_process,
                };
                bench(&work, opts).await?
            }
        }
        Ok(())
    })
}

struct BenchOpts {
    rows: u64,
    files: u64,
    cluster: Option<String>,
    key_file: Option<PathBuf>,
    memory_mib: usize,
    duckdb_python: Option<PathBuf>,
    anonymize: bool,
    passes: bool,
    in_process: bool,
}

#[cfg(feature = "cluster")]
async fn cluster_runner(url: &str) -> anyhow_free::Result<kiban_cluster::runner::Runner> {
    Ok(kiban_cluster::runner::Runner::cluster(url).await?)
}

#[cfg(not(feature = "cluster"))]
async fn cluster_runner(_url: &str) -> anyhow_free::Result<kiban_cluster::runner::Runner> {
    Err("--cluster needs a build with the `cluster` feature".into())
}

async fn bench(work: &std::path::Path, o: BenchOpts) -> anyhow_free::Result {
    use kiban_cluster::bench::{peak_rss, run_anonymize, run_parse, run_passes, same_bytes};
    use kiban_cluster::runner::Runner;
    use std::sync::Arc;
    let BenchOpts { rows, files, cluster, key_file, memory_mib, duckdb_python, anonymize, passes, in_process } = o;
    let secret = match &key_file {
        Some(k) => ClusterSecret::read(k)?,
        None => ClusterSecret::generate(),
    };
    let secret = Arc::new(secret);
    let input = work.join("input");
    let csv = work.join("csv");
    let t = std::time::Instant::now();
    if passes {
        kiban_cluster::synth::write_claims(&input, rows, files)?;
        kiban_cluster::synth::write_claims_csv(&csv, rows, files)?;
    }
    // kiban anonymize takes one file.
    let one = work.join("one");
    if anonymize {
        kiban_cluster::synth::write_claims(&one, rows, 1)?;
    }
    let one = one.join("claims-0000.parquet");
    eprintln!("synthetic input: {rows} rows in {files} Parquet and CSV files, {:.1} s", t.elapsed().as_secs_f64());
    let local = Arc::new(Runner::in_process(Some(memory_mib << 20))?);
    let emit = |f: &kiban_cluster::bench::PassFigure| {
        println!("{}", serde_json::to_string(f).expect("JSON"));
    };
    let mut figs = Vec::new();
    if passes && in_process {
        figs.push(run_parse(&local, &csv, rows, &work.join("in-process")).await?);
        emit(&figs[0]);
        // The parsed dataset is the claims again: only its figure matters here.
        std::fs::remove_dir_all(work.join("in-process").join("parse")).ok();
        for f in run_passes(&local, &secret, &input, rows, &work.join("in-process")).await? {
            emit(&f);
            figs.push(f);
        }
    }
    if anonymize && in_process {
        for f in
            run_anonymize(local.clone(), secret.clone(), &one, rows, &work.join("in-process").join("anonymize")).await?
        {
            emit(&f);
            figs.push(f);
        }
    }
    let mut all = figs.clone();
    if let Some(url) = &cluster {
        let remote = Arc::new(cluster_runner(url).await?);
        if passes {
            let c = run_parse(&remote, &csv, rows, &work.join("cluster")).await?;
            emit(&c);
            all.push(c);
            std::fs::remove_dir_all(work.join("cluster").join("parse")).ok();
            for f in run_passes(&remote, &secret, &input, rows, &work.join("cluster")).await? {
                emit(&f);
                all.push(f);
            }
        }
        if anonymize {
            for f in run_anonymize(remote, secret.clone(), &one, rows, &work.join("cluster").join("anonymize")).await? {
                emit(&f);
                all.push(f);
            }
        }
        for f in &figs {
            let c = all.iter().find(|g| g.pass == f.pass && g.engine != "in-process").expect("cluster figure");
            let dir = if f.pass.starts_with("anonymize") { "anonymize" } else { f.pass };
            let same = if f.pass == "parse" {
                "null".to_owned()
            } else {
                same_bytes(&work.join("in-process").join(dir), &work.join("cluster").join(dir))?.to_string()
            };
            println!(
                "{{\"pass\":\"{}\",\"cluster_over_in_process\":{:.3},\"byte_identical\":{same}}}",
                f.pass,
                c.rows_per_s / f.rows_per_s
            );
        }
    }
    println!("{{\"peak_rss_bytes\":{}}}", peak_rss().unwrap_or(0));
    // The outputs are compared; free the disk before the peer writes its own.
    for d in ["in-process", "cluster", "one"] {
        std::fs::remove_dir_all(work.join(d)).ok();
    }
    if let Some(py) = &duckdb_python {
        for (pass, wall, cpu) in kiban_cluster::bench::duckdb_peer(py, &input, Some(&csv), rows, &work.join("duckdb"))?
        {
            let ours = figs.iter().find(|f| f.pass == pass).expect("same pass in-process");
            let duck = rows as f64 / wall;
            let cluster_ratio = all
                .iter()
                .find(|g| g.pass == pass && g.engine != "in-process")
                .map(|c| format!(",\"cluster_over_duckdb\":{:.3}", c.rows_per_s / duck))
                .unwrap_or_default();
            println!(
                "{{\"pass\":\"{pass}\",\"engine\":\"duckdb\",\"seconds\":{wall:.3},\"cpu_seconds\":{cpu:.3},\"rows_per_s\":{duck:.0},\"in_process_over_duckdb\":{:.3},\"in_process_over_duckdb_cpu\":{:.3}{cluster_ratio}}}",
                ours.rows_per_s / duck,
                cpu / ours.cpu_seconds.max(1e-9)
            );
        }
    }
    std::fs::remove_dir_all(work).ok();
    Ok(())
}

/// A boxed error is enough for a node's main.
mod anyhow_free {
    /// The node's result.
    pub type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;
}
