//! `kiban synth`: write a synthetic population as datasets.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use kiban_formats::{DatasetWriter, FileFormat};
use kiban_model::synth::{SynthConfig, SynthTable, generate_chunk, providers};

use crate::Ctx;
use crate::progress::bar;

/// Generate a deterministic synthetic Japanese population: ground truth, each provider's patient
/// master (with the messy variants real systems produce), encounters, diagnoses, prescriptions and
/// lab results. The same seed and size always give the same files.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Number of distinct persons (100 to 50,000,000).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..=50_000_000))]
    pub patients: u64,
    /// Seed of the generator.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Number of providers (hospitals) whose patient populations overlap.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=26))]
    pub providers: u16,
    /// Output formats (repeat or comma-separate).
    #[arg(long, value_delimiter = ',', default_value = "parquet")]
    pub format: Vec<Format>,
    /// Output directory (must not exist yet).
    #[arg(long, default_value = "./kiban-synth")]
    pub out: PathBuf,
}

/// A format `kiban synth` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Apache Parquet (zstd).
    Parquet,
    /// CSV, UTF-8, with a header.
    Csv,
    /// SS-MIX2 standardized storage (HL7 v2.5, ISO-2022-JP), one tree per provider.
    Ssmix2,
    /// UKE receipt files (Shift_JIS) with their code masters.
    Uke,
    /// DPC 様式1 and EF files.
    Dpc,
    /// FHIR R4 / JP-Core Bundles as NDJSON.
    Fhir,
    /// 特定健診 CDA XML documents (encounters with lab results).
    Cda,
}

impl Format {
    /// The medical file format, for the formats `kiban-formats` writes per provider.
    fn medical(self) -> Option<kiban_formats::convert::InputFormat> {
        use kiban_formats::convert::InputFormat as I;
        Some(match self {
            Format::Parquet | Format::Csv => return None,
            Format::Ssmix2 => I::Ssmix2,
            Format::Uke => I::Uke,
            Format::Dpc => I::Dpc,
            Format::Fhir => I::Fhir,
            Format::Cda => I::Cda,
        })
    }
}

/// What was written.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SynthSummary {
    /// Persons generated.
    pub patients: u64,
    /// Rows per table.
    pub rows: Vec<(String, u64)>,
    /// Seconds taken.
    pub seconds: f64,
}

/// Persons per part file: depends only on the size, so the files are the same on every machine.
fn chunk_size(patients: u64) -> u64 {
    (patients / 8).clamp(1_000, 25_000)
}

/// Generates the population into `out/<format>/<table>/`, in parallel, committing each table by rename.
pub fn write_population(cfg: &SynthConfig, out: &Path, formats: &[Format], show: bool) -> Result<SynthSummary> {
    if out.exists() {
        bail!("{} already exists; choose a new --out or remove it", out.display());
    }
    let start = Instant::now();
    let mut writers = Vec::new();
    let medical: Vec<kiban_formats::convert::InputFormat> = formats.iter().filter_map(|f| f.medical()).collect();
    for f in formats {
        let (ff, sub) = match f {
            Format::Parquet => (FileFormat::Parquet, "parquet"),
            Format::Csv => (FileFormat::Csv, "csv"),
            _ => continue,
        };
        for t in SynthTable::ALL {
            let dir = out.join(sub).join(t.name());
            writers.push((t, DatasetWriter::create(&dir, t.name(), t.schema(), ff)?));
        }
    }
    let chunk = chunk_size(cfg.patients);
    let chunks = cfg.patients.div_ceil(chunk);
    let pb = bar(chunks, "synth");
    if !show {
        pb.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let next = AtomicU64::new(0);
    let rows: Vec<AtomicU64> = SynthTable::ALL.iter().map(|_| AtomicU64::new(0)).collect();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 8);
    std::thread::scope(|s| -> Result<()> {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    loop {
                        let c = next.fetch_add(1, Ordering::Relaxed);
                        if c >= chunks {
                            return Ok(());
                        }
                        let range = c * chunk..((c + 1) * chunk).min(cfg.patients);
                        let chunk = generate_chunk(cfg, range);
                        for (k, (table, batch)) in chunk.batches.iter().enumerate() {
                            rows[k].fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
                            for (t, w) in writers.iter().filter(|(t, _)| t == table) {
                                w.write_part(&format!("part-{c:05}"), std::slice::from_ref(batch))
                                    .with_context(|| format!("writing {}", t.name()))?;
                            }
                        }
                        pb.inc(1);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| anyhow::anyhow!("a generator thread panicked"))??;
        }
        Ok(())
    })?;
    pb.finish_and_clear();
    let provenance = serde_json::json!({
        "generator": "kiban synth", "synthetic": true, "seed": cfg.seed, "patients": cfg.patients,
        "providers": providers(cfg).iter().map(|p| &p.id).collect::<Vec<_>>(),
    });
    for (_, w) in writers {
        w.commit(provenance.clone())?;
    }
    crate::cmd::formats::write_synth_formats(cfg, out, &medical)?;
    Ok(SynthSummary {
        patients: cfg.patients,
        rows: SynthTable::ALL
            .iter()
            .zip(&rows)
            .map(|(t, r)| (t.name().to_owned(), r.load(Ordering::Relaxed)))
            .collect(),
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Runs `kiban synth`.
pub fn run(ctx: &Ctx, args: Args) -> Result<ExitCode> {
    let cfg = SynthConfig {
        seed: args.seed,
        patients: args.patients,
        providers: args.providers as usize,
        ..Default::default()
    };
    let summary = write_population(&cfg, &args.out, &args.format, !ctx.json)?;
    if ctx.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!("synthetic population (合成データ, no real person) written to {}", args.out.display());
        for (t, n) in &summary.rows {
            println!("  {t:<14} {n:>12} rows");
        }
        println!("  {:.1} s, seed {}", summary.seconds, cfg.seed);
    }
    Ok(ExitCode::SUCCESS)
}
