//! `kiban committee`: the review committee roster and its composition check (R1).

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use chrono::NaiveDate;
use kiban_model::person::Sex;
use kiban_registry::review::committee::{Expertise, Member, check_composition};

use crate::Ctx;
use crate::datadir::DataDir;

/// The review committee (審査委員会): at least 5 members of both sexes, a natural scientist, a
/// humanities/social scientist and a lay member, at least 2 external, none engaged in the business.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Debug, clap::Subcommand)]
enum Verb {
    /// Add a member, or record a new term or new facts for an existing member id.
    AddMember(AddArgs),
    /// List the roster.
    List,
    /// Check the composition on a date (default today); exit 1 naming each rule broken.
    Check {
        /// The date of the meeting (YYYY-MM-DD).
        #[arg(long)]
        on: Option<NaiveDate>,
    },
}

#[derive(Debug, clap::Args)]
struct AddArgs {
    /// Member id, e.g. m1.
    #[arg(long)]
    id: String,
    /// Name.
    #[arg(long)]
    name: String,
    /// male or female.
    #[arg(long)]
    sex: String,
    /// natural_science, humanities_social_science or lay_patient_perspective.
    #[arg(long)]
    expertise: String,
    /// Not an officer or employee of the creator.
    #[arg(long)]
    external: bool,
    /// Engaged in the certified business (such a member may not sit).
    #[arg(long)]
    engaged: bool,
    /// First day of the term.
    #[arg(long)]
    term_start: NaiveDate,
    /// Last day of the term.
    #[arg(long)]
    term_end: NaiveDate,
    /// The login account (see `kiban account`) that acts for this member in the console and API;
    /// without it the member cannot vote over HTTP.
    #[arg(long, value_name = "ACCOUNT_ID")]
    account: Option<String>,
}

fn parse_expertise(s: &str) -> Result<Expertise> {
    Ok(match s {
        "natural_science" => Expertise::NaturalScience,
        "humanities_social_science" => Expertise::HumanitiesSocialScience,
        "lay_patient_perspective" | "lay" => Expertise::LayPatientPerspective,
        o => bail!(
            "--expertise {o:?} is not one of natural_science, humanities_social_science, lay_patient_perspective (rule R1)"
        ),
    })
}

/// Runs `kiban committee`.
pub fn run(ctx: &Ctx, args: Args) -> Result<ExitCode> {
    let dd = DataDir::open(&ctx.data_dir)?;
    crate::block_on(async {
        let reg = dd.registry().await?;
        let code = match args.verb {
            Verb::AddMember(a) => {
                let sex = match a.sex.as_str() {
                    "male" | "m" | "男" => Sex::Male,
                    "female" | "f" | "女" => Sex::Female,
                    o => bail!("--sex {o:?} must be male or female (rule R1)"),
                };
                let m = Member {
                    member_id: a.id,
                    name: a.name,
                    sex,
                    expertise: parse_expertise(&a.expertise)?,
                    external: a.external,
                    engaged_in_business: a.engaged,
                    term_start: a.term_start,
                    term_end: a.term_end,
                    account_id: a.account,
                };
                if let Some(acct) = &m.account_id {
                    let a = reg.account(acct).await.with_context(|| format!("--account {acct}"))?;
                    if a.role != kiban_registry::accounts::AccountRole::CommitteeMember {
                        bail!(
                            "--account {acct} has role {:?}; a member's account must be a committee_member account",
                            a.role
                        );
                    }
                }
                reg.add_committee_member(&m).await?;
                if ctx.json {
                    println!("{}", serde_json::to_string(&m)?);
                } else {
                    println!(
                        "member {} recorded ({}, term {}..{})",
                        m.member_id,
                        m.expertise.ja(),
                        m.term_start,
                        m.term_end
                    );
                }
                ExitCode::SUCCESS
            }
            Verb::List => {
                let members = reg.committee().await?;
                if ctx.json {
                    println!("{}", serde_json::to_string(&members)?);
                } else {
                    for m in &members {
                        println!(
                            "{}\t{}\t{:?}\t{}\t{}\t{}..{}",
                            m.member_id,
                            m.name,
                            m.sex,
                            m.expertise.ja(),
                            if m.external { "外部" } else { "内部" },
                            m.term_start,
                            m.term_end
                        );
                    }
                }
                ExitCode::SUCCESS
            }
            Verb::Check { on } => {
                let on = on.unwrap_or_else(kiban_registry::records::today_jst);
                let v = check_composition(&reg.committee().await?, on);
                if ctx.json {
                    println!("{}", serde_json::json!({"on": on, "ok": v.is_empty(), "violations": v}));
                } else if v.is_empty() {
                    println!("the committee may hold a review on {on} (R1 met)");
                } else {
                    for x in &v {
                        println!("{x}");
                    }
                }
                if v.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
            }
        };
        reg.close().await;
        anyhow::Ok(code)
    })
}
