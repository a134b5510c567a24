//! `kiban incident`, `kiban leak`, `kiban complaint`, `kiban contractor`: the security officer's and
//! secretariat's records (I1 leak reports with their deadline, I2 incidents and escalation, I3
//! complaints, I4 contractors and their audits). Every write is also an audit event.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::{DateTime, NaiveDate, Utc};
use clap::Subcommand;
use kiban_registry::incidents::{Contract, LeakItems};

use crate::Ctx;
use crate::datadir::DataDir;

/// Incidents other than leaks (I2): record, escalate, list.
#[derive(Debug, clap::Args)]
pub struct IncidentArgs {
    #[command(subcommand)]
    cmd: IncidentCmd,
}

#[derive(Debug, Subcommand)]
enum IncidentCmd {
    /// Record an incident with its risk item (リスク項目), what happened and its severity.
    Add {
        /// The risk item it falls under, e.g. 不正アクセス.
        #[arg(long)]
        risk_item: String,
        /// What happened.
        #[arg(long)]
        description: String,
        /// low, medium or high.
        #[arg(long, default_value = "medium", value_parser = ["low", "medium", "high"])]
        severity: String,
        /// When it was detected (RFC 3339); default now.
        #[arg(long, value_name = "TIME")]
        detected_at: Option<DateTime<Utc>>,
    },
    /// Record an escalation (to the responsible officer, the ministry …).
    Escalate {
        /// Incident id.
        id: String,
        /// To whom.
        #[arg(long)]
        to: String,
        /// What was reported.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// List incidents.
    List,
}

/// Leak reports (漏えい等報告, I1): the first report, fuller and confirmed reports, overdue ones.
#[derive(Debug, clap::Args)]
pub struct LeakArgs {
    #[command(subcommand)]
    cmd: LeakCmd,
}

#[derive(Debug, Subcommand)]
enum LeakCmd {
    /// Record the first report (速報) now; the confirmed report is due 30 days after detection (60 if possibly malicious).
    Open {
        /// When the leak was detected (RFC 3339).
        #[arg(long, value_name = "TIME")]
        detected_at: DateTime<Utc>,
        /// It may be malicious (不正の目的): the deadline is 60 days.
        #[arg(long)]
        malicious: bool,
        /// The nine items as JSON (summary, items, persons, cause, secondary_damage,
        /// response_to_persons, publication, prevention, other); the summary is required.
        #[arg(long, value_name = "FILE")]
        items: PathBuf,
    },
    /// Record a fuller report, or the confirmed one with --final, superseding an earlier report.
    Update {
        /// The report it supersedes.
        id: String,
        /// The nine items as JSON.
        #[arg(long, value_name = "FILE")]
        items: PathBuf,
        /// This is the confirmed report (確報).
        #[arg(long = "final")]
        final_report: bool,
    },
    /// List leak reports (--overdue: those past their deadline without a confirmed report).
    List {
        /// Only overdue ones.
        #[arg(long)]
        overdue: bool,
    },
}

/// Complaints (苦情, I3): content, cause, improvement; kept 3 years.
#[derive(Debug, clap::Args)]
pub struct ComplaintArgs {
    #[command(subcommand)]
    cmd: ComplaintCmd,
}

#[derive(Debug, Subcommand)]
enum ComplaintCmd {
    /// Record a complaint, or a later record of one (--supersedes) with the cause and improvement.
    Add {
        /// The day it was received.
        #[arg(long, value_name = "DATE")]
        received_on: NaiveDate,
        /// What the complaint says.
        #[arg(long)]
        content: String,
        /// The cause found.
        #[arg(long, default_value = "")]
        cause: String,
        /// The improvement made.
        #[arg(long, default_value = "")]
        improvement: String,
        /// The earlier record of the same complaint.
        #[arg(long, value_name = "ID")]
        supersedes: Option<String>,
    },
    /// List complaints.
    List,
}

/// Contractors (委託先, I4): the written contract's items and audits of the contractor.
#[derive(Debug, clap::Args)]
pub struct ContractorArgs {
    #[command(subcommand)]
    cmd: ContractorCmd,
}

#[derive(Debug, Subcommand)]
enum ContractorCmd {
    /// Record a contract (JSON: name, certification, scope, procedures, right_to_verify,
    /// instructions, instruction_checks, reporting, other_terms, contracted_on); all items are required.
    Add {
        /// The contract items as JSON.
        #[arg(long, value_name = "FILE")]
        contract: PathBuf,
    },
    /// Record an audit of a contractor.
    Audit {
        /// Contractor id.
        id: String,
        /// The day of the audit.
        #[arg(long, value_name = "DATE")]
        on: NaiveDate,
        /// Who audited.
        #[arg(long)]
        auditor: String,
        /// What was found.
        #[arg(long)]
        findings: String,
        /// The contractor failed the audit.
        #[arg(long)]
        failed: bool,
    },
    /// List contractors with their audits.
    List,
}

fn operator() -> String {
    format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "operator".into()))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &PathBuf, what: &str) -> Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not a valid {what} JSON", path.display()))
}

/// Appends the write to the audit log (the record id only: no content).
fn audit(dd: &DataDir, id: &str) -> Result<()> {
    use kiban_audit::{Action, Actor, AuditLog, Event, Object, ObjectKind, Role};
    let key = crate::auditkey::audit_checkpoint_key(dd)?;
    let log = AuditLog::open(dd.audit_dir(), key).context("audit log")?;
    let actor = Actor::new(operator(), Role::SecurityOfficer);
    log.append(Event::new(actor, "cli", Action::Write, Object::new(ObjectKind::Ledger, id)))?;
    log.flush()?;
    Ok(())
}

fn print<T: serde::Serialize>(ctx: &Ctx, v: &T, line: impl FnOnce() -> String) -> Result<()> {
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(v)?);
    } else {
        println!("{}", line());
    }
    Ok(())
}

/// Runs `kiban incident`.
pub fn run_incident(ctx: &Ctx, args: IncidentArgs) -> Result<ExitCode> {
    let dd = DataDir::open(&ctx.data_dir)?;
    let now = Utc::now();
    crate::block_on(async {
        let reg = dd.registry().await?;
        match args.cmd {
            IncidentCmd::Add { risk_item, description, severity, detected_at } => {
                let i = reg
                    .record_incident(detected_at.unwrap_or(now), &operator(), &risk_item, &description, &severity, now)
                    .await?;
                audit(&dd, &format!("incident/{}", i.incident_id))?;
                print(ctx, &i, || {
                    format!("記録 recorded incident {} ({}, {})", i.incident_id, i.risk_item, i.severity)
                })?;
            }
            IncidentCmd::Escalate { id, to, note } => {
                let i = reg.escalate_incident(&id, &to, &operator(), &note, now).await?;
                audit(&dd, &format!("incident/{id}/escalation"))?;
                print(ctx, &i, || format!("報告 escalated {id} to {to} ({} escalations)", i.escalations.len()))?;
            }
            IncidentCmd::List => {
                let v = reg.incidents().await?;
                print(ctx, &v, || {
                    v.iter()
                        .map(|i| {
                            format!(
                                "{}\t{}\t{}\t{}\t{}\tescalations {}",
                                i.incident_id,
                                i.detected_at,
                                i.severity,
                                i.risk_item,
                                i.description,
                                i.escalations.len()
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                })?;
            }
        }
        reg.close().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// Runs `kiban leak`.
pub fn run_leak(ctx: &Ctx, args: LeakArgs) -> Result<ExitCode> {
    let dd = DataDir::open(&ctx.data_dir)?;
    let now = Utc::now();
    crate::block_on(async {
        let reg = dd.registry().await?;
        match args.cmd {
            LeakCmd::Open { detected_at, malicious, items } => {
                let items: LeakItems = read_json(&items, "leak report")?;
                let r = reg.open_leak_report(detected_at, malicious, &items, &operator(), now).await?;
                audit(&dd, &format!("leak/{}", r.report_id))?;
                print(ctx, &r, || {
                    format!("速報 first report {} recorded; the confirmed report is due by {}", r.report_id, r.deadline)
                })?;
            }
            LeakCmd::Update { id, items, final_report } => {
                let items: LeakItems = read_json(&items, "leak report")?;
                let r = reg.update_leak_report(&id, &items, final_report, &operator(), now).await?;
                audit(&dd, &format!("leak/{}", r.report_id))?;
                let kind = if final_report { "確報 confirmed report" } else { "続報 follow-up report" };
                print(ctx, &r, || format!("{kind} {} supersedes {id}", r.report_id))?;
            }
            LeakCmd::List { overdue } => {
                let v = if overdue { reg.overdue_leak_reports(now).await? } else { reg.leak_reports().await? };
                print(ctx, &v, || {
                    v.iter()
                        .map(|r| {
                            let state = if r.final_report { "確報 final" } else { "未確報 open" };
                            format!(
                                "{}\t{}\tdue {}\t{state}\t{}",
                                r.report_id, r.detected_at, r.deadline, r.items.summary
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                })?;
            }
        }
        reg.close().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// Runs `kiban complaint`.
pub fn run_complaint(ctx: &Ctx, args: ComplaintArgs) -> Result<ExitCode> {
    let dd = DataDir::open(&ctx.data_dir)?;
    let now = Utc::now();
    crate::block_on(async {
        let reg = dd.registry().await?;
        match args.cmd {
            ComplaintCmd::Add { received_on, content, cause, improvement, supersedes } => {
                let c = reg
                    .record_complaint(
                        received_on,
                        &content,
                        &cause,
                        &improvement,
                        supersedes.as_deref(),
                        &operator(),
                        now,
                    )
                    .await?;
                audit(&dd, &format!("complaint/{}", c.complaint_id))?;
                print(ctx, &c, || {
                    format!("記録 recorded complaint {} (kept until {})", c.complaint_id, c.retention_end)
                })?;
            }
            ComplaintCmd::List => {
                let v = reg.complaints().await?;
                print(ctx, &v, || {
                    v.iter()
                        .map(|c| {
                            format!(
                                "{}\t{}\t{}\tcause: {}\timprovement: {}",
                                c.complaint_id, c.received_on, c.content, c.cause, c.improvement
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                })?;
            }
        }
        reg.close().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// Runs `kiban contractor`.
pub fn run_contractor(ctx: &Ctx, args: ContractorArgs) -> Result<ExitCode> {
    let dd = DataDir::open(&ctx.data_dir)?;
    let now = Utc::now();
    crate::block_on(async {
        let reg = dd.registry().await?;
        match args.cmd {
            ContractorCmd::Add { contract } => {
                let c: Contract = read_json(&contract, "contract")?;
                let r = reg.record_contractor(&c, &operator(), now).await?;
                audit(&dd, &format!("contractor/{}", r.contractor_id))?;
                print(ctx, &r, || format!("記録 recorded contractor {} ({})", r.contractor_id, r.contract.name))?;
            }
            ContractorCmd::Audit { id, on, auditor, findings, failed } => {
                let r = reg.record_contractor_audit(&id, on, &auditor, &findings, !failed, now).await?;
                audit(&dd, &format!("contractor/{id}/audit"))?;
                print(ctx, &r, || format!("監査 audit of {id} on {on} recorded ({} audits)", r.audits.len()))?;
            }
            ContractorCmd::List => {
                let v = reg.contractors().await?;
                print(ctx, &v, || {
                    v.iter()
                        .map(|c| {
                            format!(
                                "{}\t{}\t{}\taudits {}",
                                c.contractor_id,
                                c.contract.name,
                                c.contract.scope,
                                c.audits.len()
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                })?;
            }
        }
        reg.close().await;
        Ok(ExitCode::SUCCESS)
    })
}
