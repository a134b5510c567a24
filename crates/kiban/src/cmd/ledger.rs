//! `kiban ledger`: the statutory ledger (帳簿, R9), append-only, exported as a Japanese document.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use kiban_registry::ledger::{ledger_csv, ledger_html};
use kiban_registry::records::today_jst;

use crate::Ctx;
use crate::cmd::application::CREATOR;
use crate::datadir::DataDir;

/// The ledger of provisions, deletions and transfers (R9). Entries are never changed: a correction
/// is a new entry pointing at the old one.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Debug, clap::Subcommand)]
enum Verb {
    /// List entries in recording order.
    List,
    /// Export the ledger as a Japanese document (html) or CSV.
    Export {
        /// html or csv.
        #[arg(long, default_value = "html")]
        format: String,
        /// Write to this file (default stdout).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Runs `kiban ledger`.
pub fn run(ctx: &Ctx, args: Args) -> Result<ExitCode> {
    let dd = DataDir::open(&ctx.data_dir)?;
    crate::block_on(async {
        let reg = dd.registry().await?;
        let entries = reg.ledger().await?;
        reg.close().await;
        match args.verb {
            Verb::List => {
                if ctx.json {
                    println!("{}", serde_json::to_string(&entries)?);
                } else {
                    for e in &entries {
                        let i = &e.input;
                        println!(
                            "{}\t{}\t{}\t{}\t{}\t{}{}",
                            e.seq,
                            e.entry_id,
                            i.kind.ja(),
                            i.event_date,
                            i.party_name,
                            i.items.join(","),
                            e.corrects.as_ref().map(|c| format!("\t(corrects {c})")).unwrap_or_default()
                        );
                    }
                }
            }
            Verb::Export { format, out } => {
                let text = match format.as_str() {
                    "html" => ledger_html(&entries, CREATOR, today_jst()),
                    "csv" => ledger_csv(&entries),
                    o => bail!("--format {o:?} must be html or csv"),
                };
                match out {
                    Some(p) => {
                        std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))?;
                        println!("wrote {} ({} entries)", p.display(), entries.len());
                    }
                    None => print!("{text}"),
                }
            }
        }
        anyhow::Ok(ExitCode::SUCCESS)
    })
}
