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
        /// The processed dataset directory (a verified kiban dataset).
        #[arg(long)]
        dataset: PathBuf,
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

fn safe_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
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
    let mut delivered: Option<(PathBuf, PathBuf, PathBuf)> = None;
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
                };
                (id, Command::Release { spec })
            }
            Verb::Package { id, dataset, recipient, items, media, on, key_out } => {
                if !safe_name(&recipient) {
                    bail!("--recipient {recipient:?} is not an account id");
                }
                if key_out.exists() {
                    bail!("{} exists; the key is written to a new file only", key_out.display());
                }
                let media = parse_media(&media)?;
                let release_id = format!("rel-{:016x}", rand::random::<u64>());
                let key = kiban_formats::package::new_recipient_key();
                let staged = ctx.data_dir.join("staging").join(format!("{release_id}.kbp"));
                let h = kiban_formats::package::write_package(&dataset, &staged, &key, &id, &release_id, &recipient)?;
                let spec = ReleaseSpec {
                    release_id: release_id.clone(),
                    on: on.unwrap_or_else(today_jst),
                    manifest_sha256: h.manifest_sha256.clone(),
                    items,
                    media,
                };
                let outbox = ctx.data_dir.join("releases").join("outbox").join(&recipient);
                delivered = Some((staged, outbox.join(format!("{release_id}.kbp")), key_out.clone()));
                write_key(&key_out, &hex::encode(&key[..]))?;
                (id, Command::Release { spec })
            }
            Verb::Open { .. } => unreachable!("handled above"),
            Verb::Ack { id, release, on } => {
                (id, Command::AcknowledgeReceipt { release_id: release, on: on.unwrap_or_else(today_jst) })
            }
        };
        let (s, ledger) = match reg.execute_review(&id, &cmd).await {
            Ok(v) => v,
            Err(e) => {
                // Refused (not approved, period over, banned …): no package and no key remain.
                if let Some((staged, _, key)) = &delivered {
                    let _ = std::fs::remove_file(staged);
                    let _ = std::fs::remove_file(key);
                }
                return Err(e.into());
            }
        };
        if let Some((staged, out, key)) = &delivered {
            std::fs::create_dir_all(out.parent().expect("outbox"))?;
            std::fs::rename(staged, out)?;
            if !ctx.json {
                println!("package {} for the release gateway; recipient key in {}", out.display(), key.display());
            }
        }
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
            for e in &ledger {
                println!(
                    "  ledger entry {} for {} on {} (kept until {})",
                    e.entry_id, e.input.party_name, e.input.event_date, e.retention_end
                );
            }
        }
        reg.close().await;
        anyhow::Ok(ExitCode::SUCCESS)
    })
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
}

/// Runs `kiban supervise`.
pub fn run_supervise(ctx: &Ctx, args: SuperviseArgs) -> Result<ExitCode> {
    let dd = DataDir::open(&ctx.data_dir)?;
    let SuperviseVerb::Run { as_of } = args.verb;
    let as_of = as_of.unwrap_or_else(today_jst);
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

/// Writes the recipient key to a new file only its owner can read.
fn write_key(path: &Path, hex_key: &str) -> Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let mut f = o.open(path).with_context(|| format!("cannot create {}", path.display()))?;
    writeln!(f, "{hex_key}")?;
    Ok(())
}
