//! `kiban check-output`: the publication check (公表物確認) researchers can run on their own machine.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use kiban_disclosure::api::{CheckOutputArgs, check_output};

use crate::Ctx;

/// Check an aggregate table against the publication rules (O1–O9): minimum cells, 二次医療圏
/// population bands, facility/insurer, drug and rehabilitation thresholds, age bands, area
/// granularity, and secondary suppression so no suppressed cell can be recovered from the totals.
/// Needs no data directory. Exits 1 when the table may not be published as it stands.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Writes report.json, report.html (Japanese, cells coloured by finding) and protected.csv to --out."
)]
pub struct Args {
    /// The table: CSV, Parquet or XLSX (the declaration's `sheet`, else the first), long or wide,
    /// with or without margins.
    #[arg(long, value_name = "FILE")]
    table: PathBuf,
    /// Declaration (TOML): which column is the count and what each dimension is.
    #[arg(long, value_name = "FILE")]
    decl: PathBuf,
    /// 二次医療圏 population table (CSV: area code, name, population), from official figures.
    #[arg(long, value_name = "FILE")]
    areas: Option<PathBuf>,
    /// check: report only; suppress: primary + secondary suppression; round: suppress, then round.
    #[arg(long, default_value = "check", value_parser = ["check", "suppress", "round"])]
    mode: String,
    /// The project's history of published tables (JSON lines), for the differencing check.
    #[arg(long, value_name = "FILE")]
    history: Option<PathBuf>,
    /// Output directory for the report and the protected table.
    #[arg(long, default_value = "./check-output")]
    out: PathBuf,
}

/// Runs `kiban check-output`.
pub fn run(ctx: &Ctx, args: Args) -> Result<ExitCode> {
    let mode = args.mode.parse().map_err(anyhow::Error::msg)?;
    let outcome = check_output(&CheckOutputArgs {
        table: args.table,
        decl: args.decl,
        areas: args.areas,
        mode,
        history: args.history,
        out: args.out.clone(),
    })?;
    if ctx.json {
        println!("{}", outcome.report.to_json());
    } else {
        println!("{}", outcome.report.summary());
        for f in &outcome.files {
            println!("  wrote {}", f.display());
        }
    }
    Ok(if outcome.report.passed { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
