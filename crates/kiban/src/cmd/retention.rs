//! `kiban retention`: the retention rule of every statutory record kind, and the purge job.

use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::NaiveDate;
use clap::Subcommand;
use kiban_registry::retention::{Disposal, RECORD_KINDS};

use crate::Ctx;
use crate::datadir::DataDir;

/// Arguments of `kiban retention`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// List every statutory record kind with its retention rule, anchor and disposal.
    Rules,
    /// Purge the records whose retention has ended, and record the purge (the only deletion).
    Run {
        /// Judge retention as of this day (YYYY-MM-DD; default: today in Japan).
        #[arg(long, value_name = "DATE")]
        as_of: Option<NaiveDate>,
        /// Show what would be purged without deleting or recording anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// List the purge records.
    Log,
}

/// Runs `kiban retention`.
pub fn run(ctx: &Ctx, args: Args) -> Result<ExitCode> {
    match args.cmd {
        Cmd::Rules => {
            if ctx.json {
                println!("{}", serde_json::to_string_pretty(RECORD_KINDS)?);
            } else {
                println!("{:<22} {:<10} {:<26} {:<22} 記録 / anchor", "kind", "req", "rule", "disposal");
                for k in RECORD_KINDS {
                    let rule = k.rule.map(|r| format!("{r:?}")).unwrap_or_else(|| "-".into());
                    let disp = match k.disposal {
                        Disposal::Purge => "purge after end",
                        Disposal::KeepWhileInForce => "keep while in force",
                        Disposal::Keep => "keep",
                    };
                    println!(
                        "{:<22} {:<10} {:<26} {:<22} {} / {} ({})",
                        k.kind, k.requirements, rule, disp, k.name_ja, k.anchor, k.source
                    );
                }
            }
        }
        Cmd::Run { as_of, dry_run } => {
            let dd = DataDir::open(&ctx.data_dir)?;
            let as_of = as_of.unwrap_or_else(kiban_registry::records::today_jst);
            let report = crate::block_on(async {
                let reg = dd.registry().await?;
                let r = reg.purge_expired(as_of, "kiban retention run", dry_run).await;
                reg.close().await;
                r.context("retention run")
            })?;
            if !dry_run && let Err(e) = audit_purge(&dd, &report) {
                // The purge and its purge records are committed; say plainly that the log missed it.
                eprintln!("warning: the purge is recorded in the registry but not in the audit log: {e:#}");
            }
            if ctx.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "保存期間経過記録の消去 retention run as of {}{}: {} rows purged",
                    report.as_of,
                    if dry_run { " (dry run: nothing deleted)" } else { "" },
                    report.total_purged()
                );
                for k in &report.kinds {
                    println!(
                        "  {:<22} purged {:>6}  held {:>6}  ids sha256 {}",
                        k.kind,
                        k.purged,
                        k.held,
                        &k.ids_sha256[..16]
                    );
                }
                println!("  run {}", report.run_id);
            }
        }
        Cmd::Log => {
            let dd = DataDir::open(&ctx.data_dir)?;
            let recs = crate::block_on(async {
                let reg = dd.registry().await?;
                let r = reg.purge_records().await;
                reg.close().await;
                anyhow::Ok(r?)
            })?;
            if ctx.json {
                println!("{}", serde_json::to_string_pretty(&recs)?);
            } else {
                for r in recs {
                    println!(
                        "{} {} as of {} {:<22} purged {:>6} held {:>6} {}",
                        r.recorded_at, r.run_id, r.as_of, r.kind, r.purged, r.held, r.ids_sha256
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Every deletion also goes to the audit log (design: Records and retention).
fn audit_purge(dd: &DataDir, report: &kiban_registry::retention::PurgeReport) -> Result<()> {
    use kiban_audit::{Action, Actor, AuditLog, Event, Object, ObjectKind};
    let key = crate::auditkey::audit_checkpoint_key(dd)?;
    let log = AuditLog::open(dd.audit_dir(), key).context("audit log")?;
    for k in report.kinds.iter().filter(|k| k.purged > 0) {
        log.append(Event::new(
            Actor::system(),
            "kiban retention run",
            Action::Delete,
            Object::new(ObjectKind::Ledger, format!("{}:{}:{}:{}", k.table, k.purged, report.run_id, k.ids_sha256)),
        ))?;
    }
    log.flush()?;
    Ok(())
}
