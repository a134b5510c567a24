//! `kiban audit verify`: checks the audit log's chain and signed checkpoints.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

use crate::Ctx;
use crate::datadir::DataDir;

/// `kiban audit …`
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Verify the log: exits non-zero unless it is intact.
    Verify,
}

/// Runs `kiban audit`.
pub fn run(ctx: &Ctx, a: Args) -> Result<ExitCode> {
    let Cmd::Verify = a.cmd;
    let dd = DataDir::open(&ctx.data_dir)?;
    let key = crate::auditkey::audit_checkpoint_key(&dd)?;
    let by = kiban_audit::Actor::new(
        format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "operator".into())),
        kiban_audit::Role::Auditor,
    );
    let (report, text) = kiban_audit::verify_summary(&dd.audit_dir(), &key, &by, "kiban audit verify")?;
    if ctx.json {
        println!(
            "{}",
            serde_json::json!({"intact": report.is_intact(), "entries": report.entries, "problems": report.problems.len()})
        );
    } else {
        print!("{text}");
    }
    Ok(if report.is_intact() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
