//! `kiban formats`: convert a provider's files in a standard medical format into canonical tables
//! (identity apart), the synthetic writers behind `kiban synth --format`, the demo's three
//! providers in three formats, and `kiban bench formats`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use kiban_formats::canonical::{Record, records_from_synth};
use kiban_formats::convert::{InputFormat, convert, write_format};
use kiban_formats::masters::Masters;
use kiban_model::synth::{SynthConfig, generate_chunk, providers};

use crate::Ctx;

/// Convert files in a standard medical format (SS-MIX2, UKE, DPC, FHIR, 特定健診 CDA, CSV/Parquet
/// with schema.toml) into canonical Parquet tables: clinical tables, identity apart, quarantine list.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Debug, clap::Subcommand)]
enum Verb {
    /// Read a submission and write <out>/clinical/<table>, <out>/identity/patients and <out>/quarantine.
    Convert {
        /// Input format: ssmix2, uke, dpc, fhir, cda, csv, parquet.
        #[arg(long)]
        format: String,
        /// Input directory (an SS-MIX2 storage root, or a directory of files; masters/ and schema.toml inside).
        #[arg(long)]
        input: PathBuf,
        /// The submitting provider's id.
        #[arg(long)]
        provider: String,
        /// Output directory (must not exist yet).
        #[arg(long)]
        out: PathBuf,
    },
}

fn parse_format(s: &str) -> Result<InputFormat> {
    InputFormat::parse(s).with_context(|| format!("unknown format {s:?}: ssmix2, uke, dpc, fhir, cda, csv, parquet"))
}

/// Runs `kiban formats`.
pub fn run(ctx: &Ctx, args: Args) -> Result<ExitCode> {
    match args.verb {
        Verb::Convert { format, input, provider, out } => {
            let f = parse_format(&format)?;
            if out.exists() {
                bail!("{} already exists; choose a new --out", out.display());
            }
            // Identities may enter a data directory only through intake, into the vault.
            let abs = std::path::absolute(&out)?;
            if let Some(dd) = abs.ancestors().skip(1).find(|a| a.join("kiban.toml").is_file()) {
                bail!(
                    "{} is inside the data directory {}: converted identities must not land there in the clear; \
                     convert elsewhere, then take the result in with `kiban intake submit --input <out>` \
                     (identities go to the vault, clinical rows get person keys)",
                    out.display(),
                    dd.display()
                );
            }
            let t = Instant::now();
            let rep =
                convert(f, &input, &provider, &out.join("clinical"), &out.join("identity"), &out.join("quarantine"))?;
            if ctx.json {
                println!("{}", serde_json::to_string(&rep)?);
            } else {
                println!("{format} → {} ({} files, {:.2} s)", out.display(), rep.files, t.elapsed().as_secs_f64());
                for (table, n) in &rep.rows {
                    println!("  {table:<14} {n:>10} rows");
                }
                match &rep.quarantine_file {
                    Some(q) => println!("  隔離 quarantined {} records → {}", rep.quarantined, q.display()),
                    None => println!("  隔離 quarantined 0 records"),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Writes the synthetic population in the medical formats: `out/<format>/<provider>/…`.
pub fn write_synth_formats(cfg: &SynthConfig, out: &Path, formats: &[InputFormat]) -> Result<()> {
    if formats.is_empty() {
        return Ok(());
    }
    let provs = providers(cfg);
    let chunk = 2_000u64;
    let mut masters: Vec<Vec<Masters>> =
        formats.iter().map(|_| provs.iter().map(|_| Masters::default()).collect()).collect();
    let mut refused = 0usize;
    for (c, start) in (0..cfg.patients).step_by(chunk as usize).enumerate() {
        let recs = records_from_synth(&generate_chunk(cfg, start..(start + chunk).min(cfg.patients)));
        for (pi, p) in provs.iter().enumerate() {
            let mine: Vec<Record> =
                recs.iter().filter(|r| crate::cmd::formats::provider_of(r) == p.id).cloned().collect();
            for (fi, &f) in formats.iter().enumerate() {
                let dir = out.join(format_name(f)).join(&p.id);
                let (_, r) = write_format(f, &mine, &dir, c as u64, &mut masters[fi][pi])?;
                refused += r.len();
            }
        }
    }
    for (fi, &f) in formats.iter().enumerate() {
        for (pi, p) in provs.iter().enumerate() {
            let m = &masters[fi][pi];
            if !m.disease.is_empty() || !m.drug.is_empty() {
                m.save_dir(&out.join(format_name(f)).join(&p.id).join("masters"))?;
            }
        }
    }
    if refused > 0 {
        eprintln!("note: {refused} records hold characters the target encoding cannot represent and were not written");
    }
    Ok(())
}

/// The directory name of a format.
pub fn format_name(f: InputFormat) -> &'static str {
    match f {
        InputFormat::Ssmix2 => "ssmix2",
        InputFormat::Uke => "uke",
        InputFormat::Dpc => "dpc",
        InputFormat::Fhir => "fhir",
        InputFormat::Cda => "cda",
        InputFormat::Csv => "csv",
        InputFormat::Parquet => "parquet",
    }
}

/// The provider of a record.
pub fn provider_of(r: &Record) -> &str {
    r.provider_id()
}

/// The demo's providers send in three formats: the first SS-MIX2, the second UKE receipts, the
/// third FHIR. Each provider's files are written from the synthetic population, read back by the
/// format readers into `demo_dir/submissions/<provider>/` (patients, encounters and diagnoses, what
/// the gate stage submits; the patients table goes to the identity vault there); the gate stage then
/// takes them in. Returns the summary line.
pub fn demo_submissions(cfg: &SynthConfig, demo_dir: &Path) -> Result<String> {
    const FORMATS: [InputFormat; 3] = [InputFormat::Ssmix2, InputFormat::Uke, InputFormat::Fhir];
    let provs = providers(cfg);
    let files = demo_dir.join("provider-files");
    // The providers are independent: one thread each (the SS-MIX2 tree is many small files).
    let lines: Vec<Result<String>> = std::thread::scope(|s| {
        let handles: Vec<_> = provs
            .iter()
            .enumerate()
            .map(|(pi, p)| {
                let files = &files;
                s.spawn(move || -> Result<String> {
                    let f = FORMATS[pi % 3];
                    let sub = demo_dir.join("submissions").join(&p.id);
                    if sub.exists() {
                        return Ok(format!("{} {} (reused)", p.id, format_name(f)));
                    }
                    let input = files.join(format_name(f)).join(&p.id);
                    if !input.exists() {
                        write_one_provider(cfg, p.id.as_str(), f, &input)?;
                    }
                    let staging = demo_dir.join("formats-staging").join(&p.id);
                    let _ = std::fs::remove_dir_all(&staging);
                    let identity = demo_dir.join("identity").join(&p.id);
                    let _ = std::fs::remove_dir_all(&identity);
                    let rep = convert(f, &input, &p.id, &staging.join("clinical"), &identity, &staging.join("q"))?;
                    std::fs::create_dir_all(&sub)?;
                    // Identities travel in the submission's patients table: the gate stage routes them to the vault.
                    for (from, t) in [
                        (identity.join("patients"), "patients"),
                        (staging.join("clinical").join("encounters"), "encounters"),
                        (staging.join("clinical").join("diagnoses"), "diagnoses"),
                    ] {
                        if from.exists() {
                            std::fs::rename(&from, sub.join(t))?;
                        }
                    }
                    let rows = |t: &str| rep.rows.iter().find(|r| r.0 == t).map_or(0, |r| r.1);
                    Ok(format!(
                        "{} {} {} files → patients {} / encounters {} / diagnoses {} / quarantined {}",
                        p.id,
                        format_name(f),
                        rep.files,
                        rows("patients"),
                        rows("encounters"),
                        rows("diagnoses"),
                        rep.quarantined
                    ))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a format thread panicked"))))
            .collect()
    });
    let lines = lines.into_iter().collect::<Result<Vec<String>>>()?;
    Ok(format!(
        "形式 formats (identity and clinical tables → gate → vault / clinical store):\n             {}",
        lines.join("\n             ")
    ))
}

fn write_one_provider(cfg: &SynthConfig, provider: &str, f: InputFormat, dir: &Path) -> Result<()> {
    let mut m = Masters::default();
    let chunk = 5_000u64;
    for (c, start) in (0..cfg.patients).step_by(chunk as usize).enumerate() {
        let recs: Vec<Record> = records_from_synth(&generate_chunk(cfg, start..(start + chunk).min(cfg.patients)))
            .into_iter()
            .filter(|r| provider_of(r) == provider)
            .collect();
        write_format(f, &recs, dir, c as u64, &mut m)?;
    }
    if !m.disease.is_empty() || !m.drug.is_empty() {
        m.save_dir(&dir.join("masters"))?;
    }
    Ok(())
}

/// `kiban bench formats`: parse throughput per core of UKE, CSV and SS-MIX2 next to Python's
/// `csv` and `hl7` on the same files, in the same run.
pub fn bench(ctx: &Ctx, patients: u64, python: Option<PathBuf>) -> Result<()> {
    let venv = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"))
        .join("peers-venv-formats");
    let rep = kiban_formats::bench::run(patients, python, &venv).map_err(anyhow::Error::msg)?;
    if ctx.json {
        println!("{}", serde_json::to_string(&rep)?);
    } else {
        print!("{}", rep.table());
    }
    Ok(())
}
