//! `kiban intake`: take in a provider's batch through the opt-out gate (C1–C4), and delete a
//! person's records on request (P7, C5). HTTP endpoints come with the server issue.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use chrono::NaiveDate;
use kiban_registry::Registry;
use kiban_registry::intake::{GateReport, IdentityRouting, Submission, delete_person, submit_gated, submit_routed};

use crate::Ctx;
use crate::cmd::identity::IntakeVault;
use crate::datadir::DataDir;

/// Take in batches through the fail-closed opt-out gate, and delete a person's records.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Debug, clap::Subcommand)]
enum Verb {
    /// Take in a batch: admitted records go to clinical/<batch>, excluded ones to quarantine/<batch>
    /// with their reasons; the receipt record keeps the gate report.
    Submit(SubmitArgs),
    /// Delete a person's records from the clinical store and record the deletion (P7, C5).
    DeletePerson(DeleteArgs),
}

#[derive(Debug, clap::Args)]
struct SubmitArgs {
    /// The submitting provider.
    #[arg(long)]
    provider: String,
    /// Provision date (YYYY-MM-DD): the gate decides as of this date.
    #[arg(long)]
    date: NaiveDate,
    /// Input directory: <input>/<table>/*.parquet, each table with provider_id and patient_id columns.
    #[arg(long)]
    input: PathBuf,
    /// Continuous provision: keep the records in the provider's bulk record (retained 3 years from the last).
    #[arg(long)]
    bulk: bool,
    /// Decide and report only; write nothing (replay an old batch).
    #[arg(long)]
    dry_run: bool,
    /// Decide the gate on this Ballista scheduler (`df://host:port`); the input must be at the same
    /// path on every executor. Same outcome as in-process.
    #[cfg(feature = "cluster")]
    #[arg(long, value_name = "URL")]
    cluster: Option<String>,
    /// The cluster key file shared with the executors (needed with --cluster).
    #[cfg(feature = "cluster")]
    #[arg(long, value_name = "FILE")]
    cluster_key: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct DeleteArgs {
    /// Provider id.
    #[arg(long)]
    provider: String,
    /// The provider's patient id.
    #[arg(long)]
    patient: String,
    /// Date of the request.
    #[arg(long)]
    requested_on: Option<NaiveDate>,
    /// request (P7) or no_longer_needed (C5).
    #[arg(long, default_value = "request")]
    reason: String,
}

/// The creator's name and address for provision records (registry facts `creator_name`, `creator_address`).
pub async fn creator(reg: &Registry) -> Result<(String, String)> {
    Ok((
        reg.meta("creator_name")
            .await?
            .unwrap_or_else(|| "認定作成事業者（名称未設定: registry_meta creator_name）".into()),
        reg.meta("creator_address").await?.unwrap_or_else(|| "（住所未設定）".into()),
    ))
}

/// One line per reason, for people.
pub fn report_text(r: &GateReport) -> String {
    let reasons: Vec<String> = r.excluded_by_reason.iter().map(|(k, v)| format!("{k} {v}")).collect();
    format!(
        "{}: in {} / admitted {} / excluded {}{}",
        r.provider_id,
        r.rows_in,
        r.admitted,
        r.excluded,
        if reasons.is_empty() { String::new() } else { format!(" ({})", reasons.join(", ")) }
    )
}

/// Runs `kiban intake`.
pub fn run(ctx: &Ctx, args: Args) -> Result<ExitCode> {
    let dd = DataDir::open(&ctx.data_dir)?;
    crate::block_on(async {
        let reg = dd.registry().await?;
        match args.verb {
            Verb::Submit(a) => {
                let (creator_name, creator_address) = creator(&reg).await?;
                let t = std::time::Instant::now();
                // A dry run writes nothing, so it needs no vault.
                let vault = (!a.dry_run).then(|| IntakeVault::open(&dd, &ctx.data_dir)).transpose()?;
                let audit = vault.as_ref().map(|v| v.audit());
                let routing = vault.as_ref().zip(audit.as_ref()).map(|(v, a)| v.routing(a));
                #[cfg(feature = "cluster")]
                let verdicts = match &a.cluster {
                    Some(url) => Some(
                        crate::cmd::cluster::intake_gate(
                            &reg,
                            url,
                            a.cluster_key.as_deref(),
                            &a.provider,
                            a.date,
                            &a.input,
                        )
                        .await?,
                    ),
                    None => None,
                };
                #[cfg(not(feature = "cluster"))]
                let verdicts: Option<Box<dyn kiban_registry::intake::VerdictSource>> = None;
                let out = submit_gated(
                    &reg,
                    &ctx.data_dir,
                    &Submission {
                        provider_id: a.provider,
                        provision_date: a.date,
                        input: a.input,
                        bulk: a.bulk,
                        dry_run: a.dry_run,
                        creator_name,
                        creator_address,
                        sealer: Some(dd.sealer()?),
                    },
                    routing.as_ref().map(|r| r as &dyn IdentityRouting),
                    verdicts.as_deref(),
                )
                .await?;
                drop(routing);
                drop(audit);
                if let Some(v) = vault {
                    v.finish()?;
                }
                if ctx.json {
                    println!("{}", serde_json::to_string(&out)?);
                } else {
                    println!(
                        "batch {}{}",
                        out.report.batch_id,
                        if a.dry_run { " (dry run: nothing written)" } else { "" }
                    );
                    println!("  {}", report_text(&out.report));
                    println!(
                        "  excluded persons {} (SHA-256 {})",
                        out.report.excluded_persons, out.report.excluded_persons_sha256
                    );
                    println!("  registry version {}", out.report.registry_version);
                    if let Some(c) = &out.clinical {
                        println!("  admitted → {}", c.display());
                    }
                    if let Some(q) = &out.quarantine {
                        println!("  excluded → {}", q.display());
                    }
                    if let Some(r) = &out.receipt {
                        println!("  receipt record {} (kept until {})", r.receipt_id, r.retention_end);
                    }
                    println!("  {:.2} s", t.elapsed().as_secs_f64());
                }
            }
            Verb::DeletePerson(a) => {
                let on = a.requested_on.unwrap_or_else(kiban_registry::records::today_jst);
                let vault = IntakeVault::open(&dd, &ctx.data_dir)?;
                let audit = vault.audit();
                let routing = vault.routing(&audit);
                let d = delete_person(
                    &reg,
                    &ctx.data_dir,
                    &a.provider,
                    &a.patient,
                    on,
                    &a.reason,
                    &routing,
                    Some(dd.sealer()?),
                )
                .await?;
                drop(routing);
                drop(audit);
                vault.finish()?;
                if ctx.json {
                    println!("{}", serde_json::to_string(&d)?);
                } else {
                    println!(
                        "deleted {} rows of {}/{} from {} batches ({}); deletion record {} (kept until {}); vault: {}",
                        d.removed.values().sum::<u64>(),
                        a.provider,
                        a.patient,
                        d.record.batches.len(),
                        d.record.batches.join(", "),
                        d.record.deletion_id,
                        d.record.retention_end,
                        d.record.vault_status
                    );
                }
            }
        }
        reg.close().await;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Mixes a seed and an index into a well-spread number (demo choices that regenerate alike).
fn mix(seed: u64, i: u64) -> u64 {
    let mut z = seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The demo's "gate" stage: published filings for the synthetic providers, notices for most
/// patients (some too recent, some never) and ~0.1% opt-outs imported from CSV as a hospital would
/// export them, then each provider submits its encounters and diagnoses as one batch.
pub fn demo_gate(
    dd: &DataDir,
    data: &std::path::Path,
    cfg: &kiban_model::synth::SynthConfig,
    synth_dir: &std::path::Path,
    demo_dir: &std::path::Path,
) -> Result<String> {
    use std::io::Write;

    use kiban_model::synth::{person, provider_identity, providers};
    use kiban_registry::records::{FilingInput, FilingKind};

    let provs = providers(cfg);
    let provision = cfg.period_end.succ_opt().expect("date");
    let d = |s: &str| s.parse::<NaiveDate>().expect("date");
    let import_dir = demo_dir.join("registry-import");
    std::fs::create_dir_all(&import_dir)?;
    // Notices and opt-outs as CSV exports.
    let mut notices = std::io::BufWriter::new(std::fs::File::create(import_dir.join("notices.csv"))?);
    writeln!(
        notices,
        "provider_id,patient_id,notice_date,method,recipient,guardian_name,patient_birth_date,lacks_capacity,text_version"
    )?;
    let mut optouts = std::io::BufWriter::new(std::fs::File::create(import_dir.join("optouts.csv"))?);
    writeln!(
        optouts,
        "provider_id,patient_id,requester_kind,requester_name,requester_detail,channel,person_deceased,received_at"
    )?;
    let methods = ["written_at_visit", "mail", "electronic", "posted"];
    for i in 0..cfg.patients {
        let p = person(cfg, i);
        for &pi in &p.providers {
            let id = provider_identity(cfg, &p, pi, provs[pi].style).patient_id;
            let r = mix(cfg.seed ^ 0x6a7e, i * 31 + pi as u64);
            let bucket = r % 1000;
            let notice_date = if bucket < 60 {
                None // never notified (6%)
            } else if bucket < 100 {
                Some(provision - chrono::Duration::days((r >> 20) as i64 % 25)) // too recent (4%)
            } else {
                Some(d("2023-02-01") + chrono::Duration::days((r >> 20) as i64 % 40))
            };
            if let Some(nd) = notice_date {
                let minor = kiban_model::person::age_on(p.birth, nd) < 16;
                let (recipient, guardian) =
                    if minor { ("patient_and_guardian", "保護者（合成）") } else { ("patient", "") };
                writeln!(
                    notices,
                    "{},{id},{nd},{},{recipient},{guardian},{},0,notice-2023.1",
                    provs[pi].id,
                    methods[(r >> 8) as usize % 4],
                    if p.birth <= nd { p.birth.to_string() } else { String::new() }
                )?;
            }
            if (r >> 40) % 1000 == 7 {
                // ~0.1% opt out, at some time before provision; a deceased person's by the family.
                let at = d("2024-01-01") + chrono::Duration::days((r >> 12) as i64 % 400);
                let (kind, name, detail) = if p.deceased {
                    ("bereaved", "合成 遺族", "長男（合成）")
                } else {
                    ("patient", "合成 本人", "窓口で本人確認（合成）")
                };
                writeln!(
                    optouts,
                    "{},{id},{kind},{name},{detail},written,{},{at}",
                    provs[pi].id,
                    if p.deceased { 1 } else { 0 }
                )?;
            }
        }
    }
    notices.flush()?;
    optouts.flush()?;
    drop((notices, optouts));

    let sealer = dd.sealer()?;
    let vault = IntakeVault::open_as(dd, data, kiban_audit::Actor::system())?;
    let audit = vault.audit();
    let routing = vault.routing(&audit);
    let lines = crate::block_on(async {
        let reg = dd.registry().await?;
        let fresh = reg.filings(&provs[0].id).await?.is_empty();
        let (mut n_notices, mut n_optouts, mut bad) = (0, 0, 0);
        if fresh {
            for p in &provs {
                let f = reg
                    .file_provider(&FilingInput {
                        provider_id: p.id.clone(),
                        kind: FilingKind::Filing,
                        filed_on: d("2023-01-10"),
                        items: [
                            ("提供する医療情報の項目".to_string(), "外来・入院、傷病名（合成）".to_string()),
                            ("提供の方法".to_string(), "電子媒体による送信".to_string()),
                        ]
                        .into_iter()
                        .collect(),
                        update_method: "月次で差分を提供".into(),
                        planned_start: d("2023-03-01"),
                        waiting_days: 30,
                        transmission_method: "閉域網 SFTP（合成）".into(),
                        security_checked_on: Some(d("2023-02-01")),
                        security_note: "TLS 1.3 と鍵認証を確認（合成）".into(),
                        acquisition_record: "診療の過程で取得（合成）".into(),
                    })
                    .await?;
                reg.publish_filing(
                    &f.filing_id,
                    d("2023-01-20"),
                    d("2023-01-25"),
                    "https://example.invalid/kiban-demo",
                )
                .await?;
            }
            let f = Box::new(std::io::BufReader::new(std::fs::File::open(import_dir.join("notices.csv"))?));
            let rep = reg.import_notices(f, "notices.csv").await?;
            n_notices = rep.recorded;
            bad += rep.errors.len();
            let f = Box::new(std::io::BufReader::new(std::fs::File::open(import_dir.join("optouts.csv"))?));
            let rep = reg.import_optouts(f, "optouts.csv").await?;
            n_optouts = rep.recorded;
            bad += rep.errors.len();
        }
        let (creator_name, creator_address) = creator(&reg).await?;
        let mut lines = Vec::new();
        let (mut tin, mut tadm) = (0, 0);
        let mut reasons = std::collections::BTreeMap::<String, u64>::new();
        for p in &provs {
            let input = demo_dir.join("submissions").join(&p.id);
            if !input.exists() {
                for table in ["patients", "encounters", "diagnoses"] {
                    write_provider_slice(&synth_dir.join("parquet").join(table), &p.id, &input.join(table))?;
                }
            }
            let sub = Submission {
                provider_id: p.id.clone(),
                provision_date: provision,
                input: input.clone(),
                bulk: true,
                dry_run: false,
                creator_name: creator_name.clone(),
                creator_address: creator_address.clone(),
                sealer: Some(sealer.clone()),
            };
            let digest = kiban_registry::intake::input_digest(&kiban_registry::intake::input_tables(&input)?)?;
            let report: GateReport = match reg.receipt_by_digest(&digest).await? {
                Some(prev) => serde_json::from_value(prev.gate_report)?,
                None => submit_routed(&reg, data, &sub, Some(&routing)).await?.report,
            };
            tin += report.rows_in;
            tadm += report.admitted;
            for (k, v) in &report.excluded_by_reason {
                *reasons.entry(k.clone()).or_default() += v;
            }
            lines.push(report_text(&report));
        }
        reg.close().await;
        let reasons: Vec<String> = reasons.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let registry = if fresh {
            format!("notices {n_notices}, opt-outs {n_optouts}, import errors {bad}")
        } else {
            "registry and batches reused".to_owned()
        };
        let (persons, records) = vault.counts();
        anyhow::Ok(format!(
            "ゲート opt-out gate as of {provision}: {registry}; records in {tin} / admitted {tadm} / excluded {} ({})\n             \
             本人確認情報 identities → vault ({records} records, {persons} persons); clinical rows carry person keys only\n             {}",
            tin - tadm,
            reasons.join(", "),
            lines.join("\n             ")
        ))
    })?;
    drop(routing);
    drop(audit);
    vault.finish()?;
    Ok(lines)
}

/// Copies the rows of one provider from a synthetic table into `out/part-00000.parquet`.
fn write_provider_slice(table: &std::path::Path, provider: &str, out: &std::path::Path) -> Result<()> {
    use arrow::array::{Array, StringArray};
    std::fs::create_dir_all(out)?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(table)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .collect();
    files.sort();
    let mut writer: Option<parquet::arrow::ArrowWriter<std::fs::File>> = None;
    for f in files {
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&f)?)?
            .with_batch_size(64 * 1024)
            .build()?;
        for b in reader {
            let b = b?;
            let col = b.column_by_name("provider_id").and_then(|c| c.as_any().downcast_ref::<StringArray>());
            let Some(col) = col else { anyhow::bail!("{}: no provider_id column", f.display()) };
            let keep: arrow::array::BooleanArray =
                (0..col.len()).map(|i| Some(!col.is_null(i) && col.value(i) == provider)).collect();
            let part = arrow::compute::filter_record_batch(&b, &keep)?;
            if writer.is_none() {
                let file = std::fs::File::create(out.join("part-00000.parquet"))?;
                writer = Some(parquet::arrow::ArrowWriter::try_new(file, b.schema(), None)?);
            }
            writer.as_mut().expect("created").write(&part)?;
        }
    }
    if let Some(w) = writer {
        w.close()?;
    }
    Ok(())
}
