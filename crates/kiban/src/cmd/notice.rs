//! `kiban notice`: notices to patients before provision (P1, P2).

use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::NaiveDate;
use kiban_registry::records::{NoticeInput, NoticeMethod, Recipient};

use crate::Ctx;
use crate::datadir::DataDir;

/// Record that a patient was notified, one at a time or from a hospital system's CSV export.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Debug, clap::Subcommand)]
enum Verb {
    /// Record one notice.
    Add(AddArgs),
    /// Import notices from CSV (provider_id,patient_id,notice_date,method,recipient,guardian_name,
    /// patient_birth_date,lacks_capacity,text_version). Bad rows are listed; good rows are recorded.
    Import {
        /// The CSV file.
        file: std::path::PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct AddArgs {
    /// Provider id.
    #[arg(long)]
    provider: String,
    /// The provider's patient id.
    #[arg(long)]
    patient: String,
    /// Notice date (YYYY-MM-DD).
    #[arg(long)]
    date: NaiveDate,
    /// written_at_visit, mail, electronic or posted.
    #[arg(long, default_value = "written_at_visit")]
    method: String,
    /// patient, guardian or patient_and_guardian.
    #[arg(long, default_value = "patient")]
    recipient: String,
    /// The guardian's name (required for a patient under 16 or lacking capacity).
    #[arg(long)]
    guardian_name: Option<String>,
    /// The patient's birth date (checks the under-16 rule).
    #[arg(long)]
    birth_date: Option<NaiveDate>,
    /// The patient lacks capacity.
    #[arg(long)]
    lacks_capacity: bool,
    /// Version of the notice text.
    #[arg(long)]
    text_version: String,
    /// The notice id this one corrects.
    #[arg(long)]
    corrects: Option<String>,
}

/// Prints an import report; exit 1 when any row was rejected.
pub fn print_import(ctx: &Ctx, what: &str, rep: &kiban_registry::import::ImportReport) -> Result<ExitCode> {
    if ctx.json {
        println!("{}", serde_json::to_string(rep)?);
    } else {
        println!("{what}: {} rows, {} recorded, {} rejected", rep.rows, rep.recorded, rep.errors.len());
        for e in &rep.errors {
            println!("  line {}: {}: {} (rule {})", e.line, e.field, e.message, e.rule);
        }
    }
    Ok(if rep.errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

/// Runs `kiban notice`.
pub fn run(ctx: &Ctx, args: Args) -> Result<ExitCode> {
    let dd = DataDir::open(&ctx.data_dir)?;
    crate::block_on(async {
        let reg = dd.registry().await?;
        let code = match args.verb {
            Verb::Add(a) => {
                let n = reg
                    .add_notice(&NoticeInput {
                        provider_id: a.provider,
                        patient_id: a.patient,
                        notice_date: a.date,
                        method: NoticeMethod::parse(&a.method)?,
                        recipient: Recipient::parse(&a.recipient)?,
                        guardian_name: a.guardian_name,
                        patient_birth_date: a.birth_date,
                        lacks_capacity: a.lacks_capacity,
                        text_version: a.text_version,
                        corrects: a.corrects,
                        source: "cli".into(),
                    })
                    .await?;
                if ctx.json {
                    println!("{}", serde_json::to_string(&n)?);
                } else {
                    println!("recorded notice {} (kept until {})", n.notice_id, n.retention_end);
                }
                ExitCode::SUCCESS
            }
            Verb::Import { file } => {
                let f = std::fs::File::open(&file).with_context(|| format!("cannot open {}", file.display()))?;
                let rep = reg.import_notices(Box::new(std::io::BufReader::new(f)), &file.display().to_string()).await?;
                print_import(ctx, "notices", &rep)?
            }
        };
        reg.close().await;
        anyhow::Ok(code)
    })
}
