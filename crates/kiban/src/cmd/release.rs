//! `kiban release` and `kiban supervise`: agreement, fee, provision with its ledger entry and receipt
//! (R3, D5, D6, R9), and the supervision run (R5, D7).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use chrono::NaiveDate;
use kiban_registry::records::today_jst;
use kiban_registry::review::agreement::Agreement;
use kiban_registry::review::workflow::{Command, Medium, ReleaseSpec};

use crate::Ctx;
use crate::datadir::DataDir;

/// Provision to a user of an approved application: agreement, fee, release, receipt.
/// A release is refused without approval, agreement or payment, outside the usage period, during a
/// sanction, or beyond the approved media (one per place of use).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Debug, clap::Subcommand)]
enum Verb {
    /// Record the signed agreement (R3 terms as JSON or TOML).
    Agree {
        /// Application id.
        id: String,
        /// The agreement file.
        #[arg(long)]
        agreement: PathBuf,
    },
    /// Record the fee: hourly rate × minutes worked; exemptions apply automatically (D5).
    Fee {
        /// Application id.
        id: String,
        /// Hourly rate in yen.
        #[arg(long)]
        rate: u64,
        /// Minutes worked (estimate or actual).
        #[arg(long)]
        minutes: u64,
        /// The actual amount after preparation (default: the estimate on approval).
        #[arg(long = "final")]
        is_final: bool,
    },
    /// Record a payment.
    Pay {
        /// Application id.
        id: String,
        /// Amount in yen.
        #[arg(long)]
        amount: u64,
        /// Date (default today).
        #[arg(long)]
        on: Option<NaiveDate>,
    },
    /// Provide the data: records the release and writes the ledger entry (R9).
    Create {
        /// Application id.
        id: String,
        /// The package's manifest.json (its SHA-256 is recorded).
        #[arg(long)]
        manifest: PathBuf,
        /// Item provided (repeatable).
        #[arg(long = "item", required = true)]
        items: Vec<String>,
        /// Medium as MEDIUM_ID:PLACE_ID (repeatable; portable media only).
        #[arg(long = "medium")]
        media: Vec<String>,
        /// Date of provision (default today).
        #[arg(long)]
        on: Option<NaiveDate>,
        /// Release id (default generated).
        #[arg(long)]
        release_id: Option<String>,
    },
    /// Provide a dataset as an encrypted package for one recipient (R3, R12): records the release
    /// and its ledger entry (R9), puts the package in the release gateway's outbox for that
    /// account, and writes the recipient key (shown once, never kept) to --key-out.
    Package {
        /// Application id (must be approved and within its period).
        id: String,
        /// The processed dataset directory (a verified kiban dataset; anonymized applications).
        #[arg(long, conflicts_with = "source", required_unless_present = "source")]
        dataset: Option<PathBuf>,
        /// Make the release now (pseudonymized applications): the source dataset (e.g. a clinical
        /// table under <data-dir>/clinical/) that --policy runs over with the release's own key.
        #[arg(long, requires = "policy")]
        source: Option<PathBuf>,
        /// The pseudonymization policy the committee approved (its hash must match, A7).
        #[arg(long, value_name = "FILE", requires = "source")]
        policy: Option<PathBuf>,
        /// Join the tokens of this earlier release (the approved application must name it under linkage).
        #[arg(long, value_name = "RELEASE", requires = "source")]
        link_to: Option<String>,
        /// The recipient's account id (the release gateway serves the package only to them).
        #[arg(long)]
        recipient: String,
        /// Item provided (repeatable).
        #[arg(long = "item", required = true)]
        items: Vec<String>,
        /// Medium as MEDIUM_ID:PLACE_ID (repeatable; portable media only).
        #[arg(long = "medium")]
        media: Vec<String>,
        /// Date of provision (default today).
        #[arg(long)]
        on: Option<NaiveDate>,
        /// Where to write the recipient key (hex, mode 0600); hand it over out of band.
        #[arg(long, value_name = "FILE")]
        key_out: PathBuf,
    },
    /// Open a package with its recipient key into an empty directory and verify it (for recipients;
    /// needs no data directory).
    Open {
        /// The package file.
        package: PathBuf,
        /// The recipient key file.
        #[arg(long, value_name = "FILE")]
        key_file: PathBuf,
        /// An empty or new directory.
        #[arg(long, value_name = "DIR")]
        into: PathBuf,
    },
    /// The user acknowledged receipt (D6).
    Ack {
        /// Application id.
        id: String,
        /// Release id.
        #[arg(long)]
        release: String,
        /// Date (default today).
        #[arg(long)]
        on: Option<NaiveDate>,
    },
}

fn parse_media(media: &[String]) -> Result<Vec<Medium>> {
    media
        .iter()
        .map(|m| match m.split_once(':') {
            Some((a, b)) => Ok(Medium { medium_id: a.to_owned(), place_id: b.to_owned() }),
            None => bail!("--medium {m:?} must be MEDIUM_ID:PLACE_ID (rule D6)"),
        })
        .collect()
}

/// Opens a package (recipient side).
fn open(ctx: &Ctx, package: &Path, key_file: &Path, into: &Path) -> Result<ExitCode> {
    let text = std::fs::read_to_string(key_file).with_context(|| format!("cannot read {}", key_file.display()))?;
    let bytes =
        hex::decode(text.trim()).ok().filter(|b| b.len() == 32).context("the key file must hold 64 hex digits")?;
    let key: [u8; 32] = bytes.try_into().expect("32 bytes");
    let (h, m) = kiban_formats::package::open_package(package, &key, into)?;
    if ctx.json {
        println!("{}", serde_json::json!({"header": h, "rows": m.rows, "into": into}));
    } else {
        println!(
            "開封 opened {} (release {}, {} rows) into {}; every digest verified",
            h.package_id,
            h.release_id,
            m.rows,
            into.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `kiban release`.
pub fn run(ctx: &Ctx, args: Args) -> Result<ExitCode> {
    if let Verb::Open { package, key_file, into } = &args.verb {
        return open(ctx, package, key_file, into);
    }
    let dd = DataDir::open(&ctx.data_dir)?;
    if let Verb::Package { id, dataset, source, policy, link_to, recipient, items, media, on, key_out } = args.verb {
        let data = match (dataset, source, policy) {
            (Some(d), _, _) => Data::Dataset(d),
            (None, Some(s), Some(p)) => Data::Process { source: s, policy: p, link_to },
            _ => bail!("give --dataset DIR, or --source DIR with --policy FILE"),
        };
        return package(ctx, &dd, id, data, recipient, items, media, on, key_out);
    }
    crate::block_on(async {
        let reg = dd.registry().await?;
        let (id, cmd) = match args.verb {
            Verb::Agree { id, agreement } => {
                let text = std::fs::read_to_string(&agreement)
                    .with_context(|| format!("cannot read {}", agreement.display()))?;
                let a: Agreement = if agreement.extension().is_some_and(|e| e == "toml") {
                    toml::from_str(&text)?
                } else {
                    serde_json::from_str(&text)?
                };
                (id, Command::ConcludeAgreement { agreement: Box::new(a) })
            }
            Verb::Fee { id, rate, minutes, is_final } => {
                let c = if is_final {
                    Command::FinalFee { hourly_rate_yen: rate, minutes }
                } else {
                    Command::EstimateFee { hourly_rate_yen: rate, minutes }
                };
                (id, c)
            }
            Verb::Pay { id, amount, on } => {
                (id, Command::RecordPayment { amount_yen: amount, on: on.unwrap_or_else(today_jst) })
            }
            Verb::Create { id, manifest, items, media, on, release_id } => {
                let bytes = std::fs::read(&manifest).with_context(|| format!("cannot read {}", manifest.display()))?;
                let media = parse_media(&media)?;
                let spec = ReleaseSpec {
                    release_id: release_id.unwrap_or_else(|| format!("rel-{:016x}", rand::random::<u64>())),
                    on: on.unwrap_or_else(today_jst),
                    manifest_sha256: kiban_registry::ledger::sha256_hex(&bytes),
                    items,
                    media,
                    policy_sha256: None,
                };
                (id, Command::Release { spec })
            }
            Verb::Package { .. } => unreachable!("handled above"),
            Verb::Open { .. } => unreachable!("handled above"),
            Verb::Ack { id, release, on } => {
                (id, Command::AcknowledgeReceipt { release_id: release, on: on.unwrap_or_else(today_jst) })
            }
        };
        let (s, ledger) = reg.execute_review(&id, &cmd).await?;
        print_outcome(ctx, &id, &s, &ledger);
        reg.close().await;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// What `kiban release package` releases.
enum Data {
    /// A processed dataset directory.
    Dataset(PathBuf),
    /// Made now: the source and the approved policy, maybe linked with an earlier release.
    Process { source: PathBuf, policy: PathBuf, link_to: Option<String> },
}

/// `kiban release package`: the package, the release and its ledger entry in one step; the
/// recipient key goes to a new owner-only file (reserved first, so a recorded release never
/// loses its key to a name clash).
#[allow(clippy::too_many_arguments)]
fn package(
    ctx: &Ctx,
    dd: &DataDir,
    id: String,
    data: Data,
    recipient: String,
    items: Vec<String>,
    media: Vec<String>,
    on: Option<NaiveDate>,
    key_out: PathBuf,
) -> Result<ExitCode> {
    use kiban_registry::review::package::{PackageRequest, Processing, ReleaseData, release_package};
    let media = parse_media(&media)?;
    let mut key_file = reserve_key_file(&key_out)?;
    let sealer = dd.sealer()?;
    // The release's token key comes from its pseudonym domain in the key store (used, and audited,
    // only when the release is made from source data).
    let keys = std::sync::Mutex::new(None);
    let log = super::pseudonymize::open_log(dd)?;
    let release_key = |release: &str, linkage: Option<&kiban_registry::review::package::LinkageAllowed>| {
        let mut g = keys.lock().unwrap_or_else(|p| p.into_inner());
        if g.is_none() {
            *g = Some(dd.key_store().map_err(|e| format!("{e:#}"))?);
        }
        let k = kiban_server::deid::release_table_key(g.as_mut().expect("opened"), release, linkage)?;
        use kiban_audit::AuditSink;
        let ev = kiban_audit::Event::new(
            super::pseudonymize::operator(),
            "kiban release package",
            kiban_audit::Action::KeyUse,
            kiban_audit::Object::new(kiban_audit::ObjectKind::Key, &k.domain),
        )
        .note(format!("release {release} table tokens"));
        log.record(ev).map_err(|e| e.to_string())?;
        Ok(k)
    };
    let data = match &data {
        Data::Dataset(d) => ReleaseData::Dataset(d),
        Data::Process { source, policy, link_to } => ReleaseData::Process(Processing {
            source,
            policy,
            link_to: link_to.as_deref(),
            release_key: &release_key,
            sealer: sealer.clone(),
        }),
    };
    crate::block_on(async {
        let reg = dd.registry().await?;
        let req = PackageRequest {
            sealer: Some(sealer.clone()),
            application_id: &id,
            data,
            recipient: &recipient,
            items,
            media,
            on: on.unwrap_or_else(today_jst),
        };
        let d = match release_package(&reg, &ctx.data_dir, req).await {
            Ok(d) => d,
            Err(e) => {
                // Refused (not approved, period over, banned …): no package and no key remain.
                drop(key_file);
                let _ = std::fs::remove_file(&key_out);
                reg.close().await;
                return Err(e.into());
            }
        };
        use std::io::Write;
        writeln!(key_file, "{}", hex::encode(&d.key[..]))
            .and_then(|_| key_file.sync_all())
            .with_context(|| format!("cannot write {}", key_out.display()))?;
        if !ctx.json {
            println!("package {} for the release gateway; recipient key in {}", d.package.display(), key_out.display());
        }
        print_outcome(ctx, &id, &d.state, &d.ledger);
        reg.close().await;
        log.flush()?;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

fn print_outcome(
    ctx: &Ctx,
    id: &str,
    s: &kiban_registry::review::workflow::State,
    ledger: &[kiban_registry::ledger::LedgerEntry],
) {
    if ctx.json {
        println!("{}", serde_json::json!({"application_id": id, "phase": s.phase(), "ledger": ledger}));
    } else {
        println!("application {id}: {:?}", s.phase());
        if let Some(f) = s.fee_estimate {
            println!("  fee estimate: {f} yen");
        }
        if let Some((f, ex)) = &s.fee_final {
            println!(
                "  fee: {f} yen{}; paid {} yen",
                ex.as_ref().map(|e| format!(" (exempt: {e})")).unwrap_or_default(),
                s.paid_yen
            );
        }
        for e in ledger {
            println!(
                "  ledger entry {} for {} on {} (kept until {})",
                e.entry_id, e.input.party_name, e.input.event_date, e.retention_end
            );
        }
    }
}

/// Supervision (R5, D7): end entitlements whose usage period has passed and list what is due.
#[derive(Debug, clap::Args)]
pub struct SuperviseArgs {
    #[command(subcommand)]
    verb: SuperviseVerb,
}

#[derive(Debug, clap::Subcommand)]
enum SuperviseVerb {
    /// Run supervision as of a date: usage reports (3 months after each publication), management
    /// reports (use past 2 years), expired entitlements (ended now), missing deletion certificates.
    Run {
        /// The date to judge against (default today).
        #[arg(long)]
        as_of: Option<NaiveDate>,
    },
    /// A change after approval (D4), classified as notify-only or re-review. The change is JSON,
    /// e.g. {"change":"add_handler","name":"…"} or {"change":"extension","until":"2028-03-31"}.
    Change {
        /// Application id.
        id: String,
        /// The change as JSON.
        #[arg(long)]
        change: String,
        /// Date (default today).
        #[arg(long)]
        on: Option<NaiveDate>,
    },
    /// A result was published (the usage report is due within 3 months, D7).
    Publication {
        /// Application id.
        id: String,
        /// Citation.
        #[arg(long)]
        citation: String,
        /// Date (default today).
        #[arg(long)]
        on: Option<NaiveDate>,
    },
    /// A report was filed (D7): usage, management or no-publication.
    Report {
        /// Application id.
        id: String,
        /// usage, management or no_publication.
        #[arg(long, value_parser = ["usage", "management", "no_publication"])]
        kind: String,
        /// Date (default today).
        #[arg(long)]
        on: Option<NaiveDate>,
    },
    /// A deletion certificate for one place of use (D7, R5).
    DeletionCertificate {
        /// Application id.
        id: String,
        /// The place.
        #[arg(long)]
        place: String,
        /// Who deleted: the user (Type I) or the creator (Type II, Visiting environment).
        #[arg(long, value_parser = ["user", "creator"])]
        deleted_by: String,
        /// The user's deletion certificate (required when the user deleted); kept with its digest.
        #[arg(long, value_name = "FILE")]
        certificate: Option<PathBuf>,
        /// Date of deletion (default today).
        #[arg(long)]
        on: Option<NaiveDate>,
    },
    /// The creator's periodic audit of the user (R5); the next is due a year later.
    Audit {
        /// Application id.
        id: String,
        /// What was found.
        #[arg(long)]
        findings: String,
        /// Date (default today).
        #[arg(long)]
        on: Option<NaiveDate>,
    },
    /// A user's request (R7): own data, own tools or an output take-out.
    Request {
        /// Application id.
        id: String,
        /// own_data, own_tools or output_take_out.
        #[arg(long, value_parser = ["own_data", "own_tools", "output_take_out"])]
        kind: String,
        /// What is asked.
        #[arg(long)]
        detail: String,
    },
    /// The decision on a user's request (R7), by its number (0 = the first request).
    DecideRequest {
        /// Application id.
        id: String,
        /// The request's number.
        #[arg(long)]
        index: usize,
        /// Grant it (otherwise refused).
        #[arg(long)]
        grant: bool,
        /// Reason.
        #[arg(long)]
        reason: String,
    },
}

/// Runs `kiban supervise`.
pub fn run_supervise(ctx: &Ctx, args: SuperviseArgs) -> Result<ExitCode> {
    let dd = DataDir::open(&ctx.data_dir)?;
    let as_of = match args.verb {
        SuperviseVerb::Run { as_of } => as_of.unwrap_or_else(today_jst),
        other => return run_use(ctx, &dd, other),
    };
    crate::block_on(async {
        let reg = dd.registry().await?;
        let (ended, due) = reg.supervise(as_of).await?;
        if ctx.json {
            println!("{}", serde_json::json!({"as_of": as_of, "entitlements_ended": ended, "due": due}));
        } else {
            println!("supervision as of {as_of}: {} entitlement(s) ended, {} item(s) due", ended.len(), due.len());
            for id in &ended {
                println!("  {id}: usage period over, entitlement ended (no further release)");
            }
            for d in &due {
                println!("  {}: {}", d.application_id, serde_json::to_string(&d.due)?);
            }
        }
        reg.close().await;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// Records one step of a user's use (D4, D7, R5, R7) through the workflow.
fn run_use(ctx: &Ctx, dd: &DataDir, verb: SuperviseVerb) -> Result<ExitCode> {
    use kiban_registry::review::workflow::{ReportKind, RequestKind};
    let json_enum = |v: &str| serde_json::Value::String(v.to_owned());
    let (id, cmd) = match verb {
        SuperviseVerb::Run { .. } => unreachable!("handled by run_supervise"),
        SuperviseVerb::Change { id, change, on } => {
            let change = serde_json::from_str(&change)
                .with_context(|| format!("--change {change:?} is not a change (rule D4)"))?;
            (id, Command::RequestChange { change, on: on.unwrap_or_else(today_jst) })
        }
        SuperviseVerb::Publication { id, citation, on } => {
            (id, Command::RecordPublication { on: on.unwrap_or_else(today_jst), citation })
        }
        SuperviseVerb::Report { id, kind, on } => {
            let kind: ReportKind = serde_json::from_value(json_enum(&kind))?;
            (id, Command::FileReport { kind, on: on.unwrap_or_else(today_jst) })
        }
        SuperviseVerb::DeletionCertificate { id, place, deleted_by, on, certificate } => {
            let certificate_sha256 = match &certificate {
                Some(f) => Some(crate::cmd::compliance::keep_document(&ctx.data_dir, &format!("deletion/{id}"), f)?.1),
                None => None,
            };
            let on = on.unwrap_or_else(today_jst);
            (id, Command::DeletionCertificate { place_id: place, on, deleted_by, certificate_sha256 })
        }
        SuperviseVerb::Audit { id, findings, on } => {
            (id, Command::RecordAudit { on: on.unwrap_or_else(today_jst), findings })
        }
        SuperviseVerb::Request { id, kind, detail } => {
            let kind: RequestKind = serde_json::from_value(json_enum(&kind))?;
            (id, Command::UserRequest { kind, detail })
        }
        SuperviseVerb::DecideRequest { id, index, grant, reason } => {
            (id, Command::DecideRequest { index, granted: grant, reason })
        }
    };
    crate::block_on(async {
        let reg = dd.registry().await?;
        let (s, _) = reg.execute_review(&id, &cmd).await?;
        if ctx.json {
            println!("{}", serde_json::json!({"application_id": id, "phase": s.phase(), "state": s}));
        } else {
            println!("application {id}: {:?}", s.phase());
        }
        reg.close().await;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// Contracts kept as statutory documents (R8 joint use, R10 transfers between creators).
#[derive(Debug, clap::Args)]
pub struct ContractArgs {
    #[command(subcommand)]
    verb: ContractVerb,
}

#[derive(Debug, clap::Subcommand)]
enum ContractVerb {
    /// Keep a joint-use agreement (JSON with the seven items of R8), checked before it is kept.
    JointUse {
        /// The agreement as JSON.
        file: PathBuf,
        /// The application the joint use belongs to.
        #[arg(long)]
        application: Option<String>,
        /// The day all parties and the creator signed.
        #[arg(long)]
        signed_on: NaiveDate,
        /// The contract this one replaces.
        #[arg(long)]
        supersedes: Option<String>,
    },
    /// Keep a transfer contract between creators (JSON: from, to, items, method, signed_on; R10).
    Transfer {
        /// The contract as JSON.
        file: PathBuf,
        /// The contract this one replaces.
        #[arg(long)]
        supersedes: Option<String>,
    },
    /// List the contracts kept.
    List,
}

/// Runs `kiban contract`.
pub fn run_contract(ctx: &Ctx, args: ContractArgs) -> Result<ExitCode> {
    let dd = DataDir::open(&ctx.data_dir)?;
    let by = format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "operator".into()));
    let read = |f: &Path| std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()));
    crate::block_on(async {
        let reg = dd.registry().await?;
        let kept = match args.verb {
            ContractVerb::JointUse { file, application, signed_on, supersedes } => {
                let a = serde_json::from_str(&read(&file)?)
                    .with_context(|| format!("{}: not a joint-use agreement (R8)", file.display()))?;
                vec![reg.record_joint_use(&a, application.as_deref(), signed_on, supersedes.as_deref(), &by).await?]
            }
            ContractVerb::Transfer { file, supersedes } => {
                let c = serde_json::from_str(&read(&file)?)
                    .with_context(|| format!("{}: not a transfer contract (R10)", file.display()))?;
                vec![reg.record_transfer(&c, supersedes.as_deref(), &by).await?]
            }
            ContractVerb::List => reg.contracts().await?,
        };
        if ctx.json {
            println!("{}", serde_json::to_string_pretty(&kept)?);
        } else {
            for c in &kept {
                println!("{}\t{}\tsigned {}\tsha256 {}", c.contract_id, c.kind, c.signed_on, c.sha256);
            }
        }
        reg.close().await;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// Violations and sanctions (R14, D8).
#[derive(Debug, clap::Args)]
pub struct SanctionArgs {
    #[command(subcommand)]
    verb: SanctionVerb,
}

#[derive(Debug, clap::Subcommand)]
enum SanctionVerb {
    /// Print the sanction table (別表): each violation and its measure.
    Table,
    /// Record a violation; prints the measure the table proposes.
    Violation {
        /// The offender (the applicant's name).
        #[arg(long)]
        offender: String,
        /// The row of the table (see `kiban sanction table`).
        #[arg(long)]
        code: String,
        /// The day the violation was recognized.
        #[arg(long)]
        on: NaiveDate,
        /// What happened.
        #[arg(long)]
        detail: String,
    },
    /// Decide the measure: months, indefinite, or the day a late return was done; stops the
    /// offender's other applications and blocks new ones during the ban.
    Decide {
        /// Violation id.
        violation: String,
        /// Months of the ban.
        #[arg(long, conflicts_with = "indefinite")]
        months: Option<u32>,
        /// An indefinite ban (where the table allows it).
        #[arg(long)]
        indefinite: bool,
        /// Publish the offender's name.
        #[arg(long)]
        publish_name: bool,
        /// The day of the decision (default today).
        #[arg(long)]
        on: Option<NaiveDate>,
    },
}

/// Runs `kiban sanction`.
pub fn run_sanction(ctx: &Ctx, args: SanctionArgs) -> Result<ExitCode> {
    use kiban_registry::review::sanction::{DecidedPeriod, table};
    if let SanctionVerb::Table = args.verb {
        let t = table();
        if ctx.json {
            println!("{}", serde_json::to_string_pretty(&t)?);
        } else {
            for r in &t {
                println!("{}\t{}", r.code, serde_json::to_string(r)?);
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let dd = DataDir::open(&ctx.data_dir)?;
    crate::block_on(async {
        let reg = dd.registry().await?;
        match args.verb {
            SanctionVerb::Table => unreachable!("handled above"),
            SanctionVerb::Violation { offender, code, on, detail } => {
                let v = reg.record_violation(&offender, &code, on, &detail).await?;
                if ctx.json {
                    println!("{}", serde_json::to_string_pretty(&v)?);
                } else {
                    println!(
                        "recorded violation {} of {}: proposed {}",
                        v.violation_id, v.offender, v.proposal.text_ja
                    );
                }
            }
            SanctionVerb::Decide { violation, months, indefinite, publish_name, on } => {
                let period = match (months, indefinite) {
                    (_, true) => DecidedPeriod::Indefinite,
                    (Some(m), false) => DecidedPeriod::Months { months: m },
                    (None, false) => bail!("give --months N or --indefinite (rule D8)"),
                };
                let s = reg.decide_sanction(&violation, period, publish_name, on.unwrap_or_else(today_jst)).await?;
                if ctx.json {
                    println!("{}", serde_json::to_string_pretty(&s)?);
                } else {
                    let until = s.ban_until.map(|d| d.to_string()).unwrap_or_else(|| "indefinite".into());
                    println!(
                        "sanction {} on {}: banned {} to {until}; applications stopped: {}",
                        s.sanction_id,
                        s.offender,
                        s.ban_from,
                        s.applications_stopped.join(", ")
                    );
                }
            }
        }
        reg.close().await;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// Creates the recipient key's file, new and readable by its owner only.
fn reserve_key_file(path: &Path) -> Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path).with_context(|| format!("cannot create {} (the key is written to a new file only)", path.display()))
}
