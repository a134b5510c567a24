//! `kiban provider`: providers, their filings (届出) and the publication of those filings (P5, C1, C4).

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use chrono::NaiveDate;
use kiban_registry::records::{DEFAULT_WAITING_DAYS, FilingInput, FilingKind};

use crate::Ctx;
use crate::datadir::DataDir;

/// Register providers, record their filings with the minister, and their publication.
/// A provider can submit only once its latest filing is published and its transmission security confirmed.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Debug, clap::Subcommand)]
enum Verb {
    /// Register a provider (if new) and record a filing: the first filing, a change, or cessation.
    Add(AddArgs),
    /// List providers with their filing in force and its publication.
    List,
    /// Record that the minister and then the provider published the latest filing.
    Publish(PublishArgs),
}

#[derive(Debug, clap::Args)]
struct AddArgs {
    /// Provider id, e.g. prov-a.
    #[arg(long)]
    id: String,
    /// Name.
    #[arg(long)]
    name: String,
    /// JIS prefecture code (1–47).
    #[arg(long, default_value_t = 13)]
    pref: i64,
    /// filing, change or cessation.
    #[arg(long, default_value = "filing")]
    kind: String,
    /// Date filed with the minister (YYYY-MM-DD).
    #[arg(long)]
    filed_on: NaiveDate,
    /// How provided information is updated (003 art.28-4-1).
    #[arg(long)]
    update_method: String,
    /// Planned start of provision (003 art.28-4-2).
    #[arg(long)]
    planned_start: NaiveDate,
    /// Waiting period after a notice before provision, in days (P2).
    #[arg(long, default_value_t = DEFAULT_WAITING_DAYS)]
    waiting_days: u32,
    /// Transmission method (C4), e.g. "SFTP over a closed network".
    #[arg(long)]
    transmission: String,
    /// Date the creator confirmed the transmission security (C4); without it the provider cannot submit.
    #[arg(long)]
    security_checked_on: Option<NaiveDate>,
    /// What was checked.
    #[arg(long, default_value = "")]
    security_note: String,
    /// How the provider acquired the information (003 art.36-1-2).
    #[arg(long, default_value = "診療の過程で取得")]
    acquisition: String,
    /// A statutory item as KEY=VALUE (repeatable).
    #[arg(long = "item", value_name = "KEY=VALUE")]
    items: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct PublishArgs {
    /// Provider id.
    #[arg(long)]
    id: String,
    /// The minister's publication date.
    #[arg(long)]
    minister_date: NaiveDate,
    /// The provider's own publication date (on or after the minister's).
    #[arg(long)]
    provider_date: NaiveDate,
    /// Where it was published (URL or place).
    #[arg(long, default_value = "")]
    r#where: String,
}

/// Runs `kiban provider`.
pub fn run(ctx: &Ctx, args: Args) -> Result<ExitCode> {
    let dd = DataDir::open(&ctx.data_dir)?;
    crate::block_on(async {
        let reg = dd.registry().await?;
        match args.verb {
            Verb::Add(a) => {
                let mut items = std::collections::BTreeMap::new();
                for kv in &a.items {
                    let Some((k, v)) = kv.split_once('=') else { bail!("--item {kv:?}: expected KEY=VALUE") };
                    items.insert(k.trim().to_owned(), v.trim().to_owned());
                }
                reg.register_provider(&a.id, &a.name, a.pref).await?;
                let f = reg
                    .file_provider(&FilingInput {
                        provider_id: a.id.clone(),
                        kind: FilingKind::parse(&a.kind)?,
                        filed_on: a.filed_on,
                        items,
                        update_method: a.update_method,
                        planned_start: a.planned_start,
                        waiting_days: a.waiting_days,
                        transmission_method: a.transmission,
                        security_checked_on: a.security_checked_on,
                        security_note: a.security_note,
                        acquisition_record: a.acquisition,
                    })
                    .await?;
                if ctx.json {
                    println!("{}", serde_json::to_string(&f)?);
                } else {
                    println!(
                        "recorded filing {} (#{}) of {}; publish it with `kiban provider publish --id {}`",
                        f.filing_id, f.seq, a.id, a.id
                    );
                }
            }
            Verb::List => {
                let today = kiban_registry::records::today_jst();
                let mut out = Vec::new();
                for p in reg.providers().await? {
                    let filings = reg.filings(&p.provider_id).await?;
                    let standing = reg.standing(&p.provider_id, today).await;
                    let status = match &standing {
                        Ok(s) => format!(
                            "may submit (filing #{} published {})",
                            s.filing.seq, s.publication.provider_published_on
                        ),
                        Err(e) => format!("cannot submit: {e}"),
                    };
                    if !ctx.json {
                        println!("{}\t{}\tfilings {}\t{}", p.provider_id, p.name, filings.len(), status);
                    }
                    out.push(serde_json::json!({"provider": p, "filings": filings, "status": status}));
                }
                if ctx.json {
                    println!("{}", serde_json::Value::Array(out));
                }
            }
            Verb::Publish(a) => {
                let f = reg.filings(&a.id).await?.pop().with_context(|| format!("provider {} has no filing", a.id))?;
                let p = reg.publish_filing(&f.filing_id, a.minister_date, a.provider_date, &a.r#where).await?;
                if ctx.json {
                    println!("{}", serde_json::to_string(&p)?);
                } else {
                    println!("published filing {} of {} ({})", f.filing_id, a.id, p.publication_id);
                }
            }
        }
        reg.close().await;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
