//! `kiban init`: create a data directory.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use crate::Ctx;
use crate::datadir::DataDir;

/// Create a data directory (or finish migrating an existing one).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to create it; overrides --data-dir.
    dir: Option<PathBuf>,
    /// Keep the registry in PostgreSQL instead of the embedded SQLite file,
    /// e.g. postgres://kiban@db.internal/kiban (the password belongs in ~/.pgpass or PGPASSWORD).
    #[arg(long, value_name = "URL")]
    registry_url: Option<String>,
}

/// Runs `kiban init`.
pub fn run(ctx: &Ctx, args: Args) -> Result<ExitCode> {
    let root = args.dir.unwrap_or_else(|| ctx.data_dir.clone());
    let dd = DataDir::init(&root, args.registry_url)?;
    if ctx.json {
        println!("{}", serde_json::json!({"data_dir": root, "data_dir_id": dd.config().data_dir_id}));
    } else {
        println!("data directory ready: {} (id {})", root.display(), dd.config().data_dir_id);
        println!("master key: {} (readable by you only; keep a copy offline)", dd.keys().join("master.key").display());
        println!("next: `kiban doctor --data-dir {}`", root.display());
    }
    Ok(ExitCode::SUCCESS)
}
