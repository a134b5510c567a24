//! `kiban doctor`: check a data directory.

use std::process::ExitCode;

use anyhow::Result;

use crate::Ctx;
use crate::datadir::DataDir;

/// Check the data directory: layout, key store and master key, registry schema, dataset digests.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `kiban doctor`; exits 1 when anything is wrong.
pub fn run(ctx: &Ctx, _args: Args) -> Result<ExitCode> {
    let dd = DataDir::open(&ctx.data_dir)?;
    let problems = crate::block_on(dd.check());
    if ctx.json {
        println!("{}", serde_json::json!({"data_dir": ctx.data_dir, "ok": problems.is_empty(), "problems": problems}));
    } else if problems.is_empty() {
        println!(
            "ok: {} is healthy (registry current, master key verified, datasets match their manifests)",
            ctx.data_dir.display()
        );
    } else {
        for p in &problems {
            println!("problem: {p}");
        }
    }
    Ok(if problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
