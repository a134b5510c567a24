//! `kiban application` and `kiban review`: applications for provision (D1), pre-checks (D2), the
//! committee's review, votes, decisions and notices (R2, D3), and the review demo stage.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use chrono::NaiveDate;
use kiban_registry::Registry;
use kiban_registry::records::today_jst;
use kiban_registry::review::agreement::sample_agreement_for;
use kiban_registry::review::application::{Application, precheck, sample_application};
use kiban_registry::review::committee::sample_committee;
use kiban_registry::review::notice::decision_notice_html;
use kiban_registry::review::workflow::{Command, Decision, Medium, Phase, ReleaseSpec, State, VoteKind};

use crate::Ctx;
use crate::datadir::DataDir;

/// The creator's name printed on documents.
pub const CREATOR: &str = "kiban 認定作成事業者";

/// Applications for provision (提供申出): submit a JSON or TOML file, pre-check it, show it.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Debug, clap::Subcommand)]
enum Verb {
    /// Print a complete example application as JSON (a starting point for a real one).
    Template,
    /// Run the automatic pre-checks on a file without submitting it (exit 2 when any fails).
    Precheck {
        /// The application (.json or .toml).
        file: PathBuf,
    },
    /// Submit an application; the pre-checks run with the registry (one open application per contact person, bans).
    Submit {
        /// The application (.json or .toml).
        file: PathBuf,
        /// Submission date (default today).
        #[arg(long)]
        on: Option<NaiveDate>,
        /// Resubmit this application id (after a failed pre-check or a request for revision).
        #[arg(long)]
        resubmit: Option<String>,
    },
    /// Show an application's state (phase, votes, decision, releases).
    Show {
        /// Application id.
        id: String,
    },
    /// List applications with their phase.
    List,
}

/// Reads an application from JSON or TOML (by extension).
pub fn read_application(file: &Path) -> Result<Application> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    if file.extension().is_some_and(|e| e == "toml") {
        toml::from_str(&text).with_context(|| format!("{} is not a valid application (D1)", file.display()))
    } else {
        serde_json::from_str(&text).with_context(|| format!("{} is not a valid application (D1)", file.display()))
    }
}

fn print_state(ctx: &Ctx, id: &str, s: &State) -> Result<()> {
    if ctx.json {
        println!("{}", serde_json::json!({"application_id": id, "state": s}));
        return Ok(());
    }
    println!("application {id}: {:?}", s.phase());
    if let Some(a) = &s.application {
        println!("  title: {}  period: {}..{}", a.plan.title, a.usage_from, a.usage_to);
    }
    for f in &s.precheck_failures {
        println!("  pre-check failed: {f}");
    }
    for m in &s.conflicted {
        println!("  conflict of interest: {m} (does not vote or see the deliberation)");
    }
    for (m, (v, r)) in &s.votes {
        println!("  vote {m}: {v:?} — {r}");
    }
    if let Some((d, on)) = &s.decision {
        println!("  decision {on}: {}", serde_json::to_string(d)?);
    }
    for r in &s.releases {
        let ack = r.acknowledged_on.map(|d| d.to_string()).unwrap_or_else(|| "not yet".into());
        println!("  release {} on {} (receipt acknowledged: {ack})", r.spec.release_id, r.spec.on);
    }
    Ok(())
}

/// Runs `kiban application`.
pub fn run(ctx: &Ctx, args: Args) -> Result<ExitCode> {
    match args.verb {
        Verb::Template => {
            println!("{}", serde_json::to_string_pretty(&sample_application())?);
            Ok(ExitCode::SUCCESS)
        }
        Verb::Precheck { file } => {
            let app = read_application(&file)?;
            let v = precheck(&app, false);
            if ctx.json {
                println!("{}", serde_json::json!({"ok": v.is_empty(), "failures": v}));
            } else if v.is_empty() {
                println!("pre-checks passed (the one-open-application check runs on submit)");
            } else {
                for f in &v {
                    println!("{f}");
                }
            }
            Ok(if v.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(2) })
        }
        verb => {
            let dd = DataDir::open(&ctx.data_dir)?;
            crate::block_on(async {
                let reg = dd.registry().await?;
                let code = match verb {
                    Verb::Submit { file, on, resubmit } => {
                        let app = read_application(&file)?;
                        let on = on.unwrap_or_else(today_jst);
                        let (id, s) = match resubmit {
                            Some(id) => {
                                let s = reg.resubmit_application(&id, &app, on).await?;
                                (id, s)
                            }
                            None => reg.submit_application(&app, on).await?,
                        };
                        print_state(ctx, &id, &s)?;
                        if s.phase() == Phase::PrecheckFailed { ExitCode::from(2) } else { ExitCode::SUCCESS }
                    }
                    Verb::Show { id } => {
                        print_state(ctx, &id, &reg.application_state(&id).await?)?;
                        ExitCode::SUCCESS
                    }
                    Verb::List => {
                        let v = reg.applications().await?;
                        if ctx.json {
                            println!("{}", serde_json::to_string(&v)?);
                        } else {
                            for a in v {
                                println!("{}\t{:?}\t{}\t{}", a.application_id, a.phase, a.applicant_name, a.title);
                            }
                        }
                        ExitCode::SUCCESS
                    }
                    Verb::Template | Verb::Precheck { .. } => unreachable!("handled without a data directory"),
                };
                reg.close().await;
                anyhow::Ok(code)
            })
        }
    }
}

/// The committee's review of an application (R2): open it, declare conflicts, vote, decide, notice.
#[derive(Debug, clap::Args)]
pub struct ReviewArgs {
    #[command(subcommand)]
    verb: ReviewVerb,
}

#[derive(Debug, clap::Subcommand)]
enum ReviewVerb {
    /// Open the review with the roster sitting on the date (refused naming the R1 rule broken).
    Open {
        /// Application id.
        id: String,
        /// Meeting date (default today).
        #[arg(long)]
        on: Option<NaiveDate>,
    },
    /// A member declares a conflict of interest: they neither vote nor see the deliberation.
    Conflict {
        /// Application id.
        id: String,
        /// Member id.
        #[arg(long)]
        member: String,
        /// What the conflict is.
        #[arg(long)]
        reason: String,
    },
    /// A member votes with reasons.
    Vote {
        /// Application id.
        id: String,
        /// Member id.
        #[arg(long)]
        member: String,
        /// approve, approve_with_conditions, revise or refuse.
        #[arg(long)]
        vote: String,
        /// Reasons.
        #[arg(long)]
        reason: String,
    },
    /// Decide: approve (with --condition), revise (with --reason) or refuse (with --reason).
    Decide {
        /// Application id.
        id: String,
        /// approve, revise or refuse.
        #[arg(long)]
        outcome: String,
        /// Date (default today).
        #[arg(long)]
        on: Option<NaiveDate>,
        /// Condition of approval (repeatable).
        #[arg(long = "condition")]
        conditions: Vec<String>,
        /// Reason for refusal or revision request (repeatable).
        #[arg(long = "reason")]
        reasons: Vec<String>,
        /// Expected time of provision (approval).
        #[arg(long, default_value = "依頼書及び手数料の納付を確認後、速やかに")]
        expected_provision: String,
        /// Other guideline to follow (repeatable).
        #[arg(long = "guideline")]
        guidelines: Vec<String>,
        /// The processing policy (TOML) approved for this use (A7): only datasets made under it
        /// (same policy hash, hierarchies included) can be released.
        #[arg(long, value_name = "FILE")]
        processing_policy: Option<PathBuf>,
        /// Remarks.
        #[arg(long, default_value = "")]
        remarks: String,
    },
    /// Print (or write with --out) the decision notice in Japanese HTML (D3).
    Notice {
        /// Application id.
        id: String,
        /// Write to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// The hash kiban-deid gives a processing policy (its text and its hierarchies, or for a
/// pseudonymization policy its population table).
fn policy_hash(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    if toml::from_str::<toml::Value>(&text).ok().and_then(|v| v.get("kind").cloned())
        == Some(toml::Value::String("pseudonymization".into()))
    {
        let p = kiban_deid::PseudoPolicy::from_toml(&text, base)
            .with_context(|| format!("--processing-policy {}", path.display()))?;
        return Ok(p.hash);
    }
    let p = kiban_deid::Policy::from_toml(&text, base, &Default::default())
        .with_context(|| format!("--processing-policy {}", path.display()))?;
    Ok(p.hash)
}

fn parse_vote(s: &str) -> Result<VoteKind> {
    Ok(match s {
        "approve" => VoteKind::Approve,
        "approve_with_conditions" => VoteKind::ApproveWithConditions,
        "revise" => VoteKind::Revise,
        "refuse" => VoteKind::Refuse,
        o => bail!("--vote {o:?} is not one of approve, approve_with_conditions, revise, refuse (rule R2)"),
    })
}

/// Runs `kiban review`.
pub fn run_review(ctx: &Ctx, args: ReviewArgs) -> Result<ExitCode> {
    let dd = DataDir::open(&ctx.data_dir)?;
    crate::block_on(async {
        let reg = dd.registry().await?;
        let (id, cmd) = match args.verb {
            ReviewVerb::Open { id, on } => {
                let committee = reg.committee().await?;
                (id, Command::OpenReview { committee, on: on.unwrap_or_else(today_jst) })
            }
            ReviewVerb::Conflict { id, member, reason } => (id, Command::DeclareConflict { member_id: member, reason }),
            ReviewVerb::Vote { id, member, vote, reason } => {
                (id, Command::Vote { member_id: member, vote: parse_vote(&vote)?, reason })
            }
            ReviewVerb::Decide {
                id,
                outcome,
                on,
                conditions,
                reasons,
                expected_provision,
                guidelines,
                remarks,
                processing_policy,
            } => {
                let processing_policy_sha256 = match &processing_policy {
                    Some(p) => Some(policy_hash(p)?),
                    None => None,
                };
                let decision = match outcome.as_str() {
                    "approve" => Decision::Approve {
                        expected_provision,
                        conditions,
                        guidelines,
                        remarks,
                        processing_policy_sha256,
                    },
                    "revise" => Decision::Revise { requests: reasons },
                    "refuse" => Decision::Refuse { reasons },
                    o => bail!("--outcome {o:?} is not one of approve, revise, refuse (rule D3)"),
                };
                (id, Command::Decide { decision, on: on.unwrap_or_else(today_jst) })
            }
            ReviewVerb::Notice { id, out } => {
                let s = reg.application_state(&id).await?;
                let html = decision_notice_html(&id, &s, CREATOR)
                    .with_context(|| format!("application {id} has no decision yet (rule D3)"))?;
                match out {
                    Some(p) => {
                        std::fs::write(&p, html).with_context(|| format!("cannot write {}", p.display()))?;
                        println!("wrote {}", p.display());
                    }
                    None => print!("{html}"),
                }
                reg.close().await;
                return anyhow::Ok(ExitCode::SUCCESS);
            }
        };
        let (s, _) = reg.execute_review(&id, &cmd).await?;
        print_state(ctx, &id, &s)?;
        reg.close().await;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// The review stage of `kiban demo`: a committee of 6 approves one application, which is released
/// (recording `manifest_sha256`, the digest of the released dataset's manifest) with its ledger
/// entry; a second application is refused by a pre-check (usage period over 24 months). Writes the
/// decision notice and the ledger (HTML) into `out_dir` and returns a one-line summary.
pub async fn demo_review(reg: &Registry, manifest_sha256: &str, out_dir: &Path) -> Result<String> {
    let d = |s: &str| s.parse::<NaiveDate>().expect("valid date");
    let roster = reg.committee().await?;
    for m in sample_committee(6) {
        if !roster.iter().any(|r| r.member_id == m.member_id) {
            reg.add_committee_member(&m).await?;
        }
    }
    // A distinct contact person per run keeps a reused demo registry within D2 (one open application each).
    let n = reg.applications().await?.len();
    let mut app = sample_application();
    app.contact.name = format!("合成 花子{n}");
    let (id, s) = reg.submit_application(&app, d("2026-06-01")).await?;
    if s.phase() != Phase::Submitted {
        bail!("demo application failed its pre-check: {:?}", s.precheck_failures);
    }
    reg.open_review(&id, d("2026-06-10")).await?;
    reg.execute_review(&id, &Command::DeclareConflict { member_id: "m5".into(), reason: "申出者と共同研究".into() })
        .await?;
    for i in 0..5 {
        let vote = if i == 4 { VoteKind::ApproveWithConditions } else { VoteKind::Approve };
        let reason = "公益性があり、抽出項目は研究目的に照らして最小限".to_owned();
        reg.execute_review(&id, &Command::Vote { member_id: format!("m{i}"), vote, reason }).await?;
    }
    let decision = Decision::Approve {
        expected_provision: "2026年7月上旬".into(),
        conditions: vec!["成果の公表前に公表物確認を受けること".into()],
        guidelines: vec!["人を対象とする生命科学・医学系研究に関する倫理指針".into()],
        remarks: String::new(),
        processing_policy_sha256: None,
    };
    reg.execute_review(&id, &Command::Decide { decision, on: d("2026-06-10") }).await?;
    let approved = reg.application_state(&id).await?;
    let app = approved.application.clone().context("approved application")?;
    reg.execute_review(&id, &Command::ConcludeAgreement { agreement: Box::new(sample_agreement_for(&app)) }).await?;
    reg.execute_review(&id, &Command::EstimateFee { hourly_rate_yen: 8_000, minutes: 600 }).await?;
    reg.execute_review(&id, &Command::FinalFee { hourly_rate_yen: 8_000, minutes: 540 }).await?;
    reg.execute_review(&id, &Command::RecordPayment { amount_yen: 72_000, on: d("2026-06-25") }).await?;
    let spec = ReleaseSpec {
        release_id: format!("rel-{}", &id[4..]),
        on: d("2026-07-01"),
        manifest_sha256: manifest_sha256.to_owned(),
        items: app.extraction.items.iter().map(|i| i.item.clone()).collect(),
        media: vec![Medium { medium_id: "hdd-0001".into(), place_id: app.places[0].place_id.clone() }],
        policy_sha256: None,
    };
    let release_id = spec.release_id.clone();
    let (_, ledger) = reg.execute_review(&id, &Command::Release { spec }).await?;
    reg.execute_review(&id, &Command::AcknowledgeReceipt { release_id, on: d("2026-07-02") }).await?;
    // Bad input: a second application asks for 30 months and is stopped before the committee sees it.
    let mut bad = sample_application();
    bad.contact.name = format!("合成 次郎{n}");
    bad.usage_to = d("2028-12-31");
    let (bad_id, bad_state) = reg.submit_application(&bad, d("2026-06-01")).await?;
    let failure = bad_state.precheck_failures.first().map(|f| f.to_string()).unwrap_or_default();
    std::fs::create_dir_all(out_dir)?;
    let s = reg.application_state(&id).await?;
    std::fs::write(out_dir.join("decision-notice.html"), decision_notice_html(&id, &s, CREATOR).unwrap_or_default())?;
    let all = reg.ledger().await?;
    std::fs::write(out_dir.join("ledger.html"), kiban_registry::ledger::ledger_html(&all, CREATOR, today_jst()))?;
    Ok(format!(
        "committee of 6 (1 conflicted) approved {id}, released with ledger entry {}; {bad_id} refused by pre-check: {failure}",
        ledger.first().map(|e| e.entry_id.as_str()).unwrap_or("-"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r2_r9_demo_review_approves_releases_and_stops_the_bad_application() {
        let tmp = tempfile::tempdir().unwrap();
        let summary = crate::block_on(async {
            let reg = Registry::open(&Registry::sqlite_url(&tmp.path().join("r.sqlite"))).await.unwrap();
            reg.migrate().await.unwrap();
            let s = demo_review(&reg, &"ab".repeat(32), &tmp.path().join("out")).await.unwrap();
            assert_eq!(reg.ledger().await.unwrap().len(), 1);
            // Run twice on the same registry (demo --reuse): still one approval and one refusal more.
            demo_review(&reg, &"ab".repeat(32), &tmp.path().join("out")).await.unwrap();
            assert_eq!(reg.ledger().await.unwrap().len(), 2);
            reg.close().await;
            s
        });
        assert!(
            summary.contains("approved") && summary.contains("refused by pre-check") && summary.contains("D4"),
            "{summary}"
        );
        let notice = std::fs::read_to_string(tmp.path().join("out/decision-notice.html")).unwrap();
        assert!(notice.contains("承諾通知書"));
        assert!(std::fs::read_to_string(tmp.path().join("out/ledger.html")).unwrap().contains("利用者への提供"));
    }
}
