//! `kiban bench`: throughput figures printed as a table (speed targets live here, never in tests).

use std::process::ExitCode;

use anyhow::Result;
use kiban_model::synth::SynthConfig;

use crate::Ctx;
use crate::cmd::synth::{Format, write_population};

/// Measure throughput on synthetic data and print a table.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// Generate a synthetic population with its claims to Parquet (target: 1 million persons well under a minute).
    Synth {
        /// Persons to generate.
        #[arg(long, default_value_t = 1_000_000)]
        patients: u64,
    },
    /// DICOM attribute de-identification vs dicognito and dicom-anonymizer on the same files (target ≥ 3×).
    Dicom(crate::cmd::dicom::BenchArgs),
    /// Parse UKE, CSV and SS-MIX2 next to Python's csv and hl7 on the same files (targets: 200 MB/s, 20k msg/s per core).
    Formats {
        /// Persons whose records make the test files.
        #[arg(long, default_value_t = 5_000)]
        patients: u64,
        /// Python interpreter with `hl7` installed (default: a venv under the target dir, made on first use).
        #[arg(long)]
        python: Option<std::path::PathBuf>,
    },
}

/// Runs `kiban bench`.
pub fn run(ctx: &Ctx, args: Args) -> Result<ExitCode> {
    match args.what {
        What::Dicom(a) => return crate::cmd::dicom::run_bench(ctx, a),
        What::Formats { patients, python } => crate::cmd::formats::bench(ctx, patients, python)?,
        What::Synth { patients } => {
            let tmp = std::env::temp_dir().join(format!("kiban-bench-synth-{}", std::process::id()));
            let cfg = SynthConfig { patients, ..Default::default() };
            let s = write_population(&cfg, &tmp, &[Format::Parquet], !ctx.json);
            let bytes = dir_size(&tmp);
            let _ = std::fs::remove_dir_all(&tmp);
            let s = s?;
            let rows: u64 = s.rows.iter().map(|(_, n)| n).sum();
            if ctx.json {
                println!(
                    "{}",
                    serde_json::json!({"patients": patients, "rows": rows, "seconds": s.seconds, "bytes": bytes})
                );
            } else {
                println!("| bench | persons | rows (all tables) | seconds | persons/s | rows/s | Parquet MB |");
                println!("|---|---:|---:|---:|---:|---:|---:|");
                println!(
                    "| synth | {patients} | {rows} | {:.2} | {:.0} | {:.0} | {:.1} |",
                    s.seconds,
                    patients as f64 / s.seconds,
                    rows as f64 / s.seconds,
                    bytes as f64 / 1e6
                );
                println!("threads: {}", std::thread::available_parallelism().map_or(1, |n| n.get()));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn dir_size(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p)
        .map(|it| {
            it.flatten()
                .map(|e| {
                    let path = e.path();
                    if path.is_dir() { dir_size(&path) } else { e.metadata().map_or(0, |m| m.len()) }
                })
                .sum()
        })
        .unwrap_or(0)
}
