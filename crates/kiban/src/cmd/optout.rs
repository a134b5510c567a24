//! `kiban optout`: requests to stop provision (P3), their withdrawal, and the confirmation (P4).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use kiban_registry::records::{Channel, OptOutInput, RequesterKind};

use crate::Ctx;
use crate::datadir::DataDir;

/// Record opt-outs (effective from the moment recorded) and issue their confirmation documents.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Debug, clap::Subcommand)]
enum Verb {
    /// Record an opt-out now and issue its confirmation document (HTML, Japanese).
    Add(AddArgs),
    /// Record the withdrawal of an opt-out by the person themselves.
    Withdraw(WithdrawArgs),
    /// Import opt-outs from CSV (provider_id,patient_id,requester_kind,requester_name,requester_detail,
    /// channel,person_deceased,received_at); each gets its confirmation. Bad rows are listed.
    Import {
        /// The CSV file.
        file: PathBuf,
    },
    /// Print (or write) the confirmation document of an opt-out.
    Confirmation {
        /// Opt-out id or confirmation id.
        #[arg(long)]
        id: String,
        /// Write the HTML to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
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
    /// patient, bereaved or guardian.
    #[arg(long, default_value = "patient")]
    requester_kind: String,
    /// The requester's name.
    #[arg(long)]
    requester_name: String,
    /// What identifies the requester (address, relationship, contact).
    #[arg(long, default_value = "")]
    requester_detail: String,
    /// written, oral or other.
    #[arg(long, default_value = "written")]
    channel: String,
    /// The person is deceased.
    #[arg(long)]
    deceased: bool,
    /// Write the confirmation HTML here.
    #[arg(long)]
    confirmation_out: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct WithdrawArgs {
    /// The opt-out id.
    #[arg(long)]
    id: String,
    /// The person's name (only the person themselves may withdraw).
    #[arg(long)]
    requester_name: String,
    /// How their identity was confirmed.
    #[arg(long, default_value = "")]
    requester_detail: String,
    /// written, oral or other.
    #[arg(long, default_value = "written")]
    channel: String,
}

/// Runs `kiban optout`.
pub fn run(ctx: &Ctx, args: Args) -> Result<ExitCode> {
    let dd = DataDir::open(&ctx.data_dir)?;
    crate::block_on(async {
        let reg = dd.registry().await?;
        let code = match args.verb {
            Verb::Add(a) => {
                let (ev, c) = reg
                    .add_optout(&OptOutInput {
                        provider_id: a.provider,
                        patient_id: a.patient,
                        requester_kind: RequesterKind::parse(&a.requester_kind)?,
                        requester_name: a.requester_name,
                        requester_detail: a.requester_detail,
                        channel: Channel::parse(&a.channel)?,
                        person_deceased: a.deceased,
                        received_at: None,
                        source: "cli".into(),
                    })
                    .await?;
                if let Some(p) = &a.confirmation_out {
                    std::fs::write(p, &c.html).with_context(|| format!("cannot write {}", p.display()))?;
                }
                if ctx.json {
                    println!(
                        "{}",
                        serde_json::json!({"optout": ev, "confirmation_id": c.confirmation_id, "sha256": c.sha256})
                    );
                } else {
                    println!(
                        "recorded opt-out {} effective {}; confirmation {} issued (kept until {}); print it with `kiban optout confirmation --id {}`",
                        ev.event_id, ev.effective_on, c.confirmation_id, c.retention_end, ev.event_id
                    );
                }
                ExitCode::SUCCESS
            }
            Verb::Withdraw(a) => {
                let ev = reg
                    .withdraw_optout(
                        &a.id,
                        RequesterKind::Patient,
                        &a.requester_name,
                        &a.requester_detail,
                        Channel::parse(&a.channel)?,
                        None,
                    )
                    .await?;
                if ctx.json {
                    println!("{}", serde_json::to_string(&ev)?);
                } else {
                    println!("recorded withdrawal {} of opt-out {} effective {}", ev.event_id, a.id, ev.effective_on);
                }
                ExitCode::SUCCESS
            }
            Verb::Import { file } => {
                let f = std::fs::File::open(&file).with_context(|| format!("cannot open {}", file.display()))?;
                let rep = reg.import_optouts(Box::new(std::io::BufReader::new(f)), &file.display().to_string()).await?;
                crate::cmd::notice::print_import(ctx, "opt-outs", &rep)?
            }
            Verb::Confirmation { id, out } => {
                let c = reg.confirmation(&id).await?;
                match out {
                    Some(p) => {
                        std::fs::write(&p, &c.html).with_context(|| format!("cannot write {}", p.display()))?;
                        println!("wrote {} (SHA-256 {})", p.display(), c.sha256);
                    }
                    None => print!("{}", c.html),
                }
                ExitCode::SUCCESS
            }
        };
        reg.close().await;
        anyhow::Ok(code)
    })
}
