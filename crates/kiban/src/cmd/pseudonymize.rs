//! `kiban pseudonymize`, `kiban deid-text` and `kiban bench-text`: pseudonymization (仮名加工,
//! S1–S3, S5, S6) of a table, de-identification of Japanese free text, and the text
//! de-identifier's evaluation on synthetic notes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use kiban_deid::text::{DocContext, Replace, Tag, TextConfig, deidentify};
use kiban_deid::{Input, Output, PseudoOptions, PseudoPolicy, ReleaseKey, pseudonymize};

use crate::Ctx;

/// Pseudonymize a table under a pseudonymization policy: names deleted or replaced by keyed
/// tokens, addresses reduced by the area's population, birth dates reduced to the year, id codes
/// deleted or tokenized, financial descriptions deleted even inside other columns, free text
/// de-identified; clinical values kept. A policy that would keep a name, code or card number is
/// refused with the rule (S1, S2, S3). The release key is read from --key-file (hex, ≥ 32 bytes) or
/// KIBAN_RELEASE_KEY; without one a random key is used and destroyed (tokens then link nothing).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Pseudonymization policy (TOML, kind = "pseudonymization").
    #[arg(long, value_name = "FILE")]
    policy: PathBuf,
    /// Input table (.csv with a header, or .parquet).
    #[arg(long, value_name = "FILE")]
    input: PathBuf,
    /// Output table (.csv or .parquet).
    #[arg(long, value_name = "FILE")]
    output: PathBuf,
    /// File holding the per-release key in hex (never printed or stored in the output).
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// Where to write report.json (default: <output stem>.report/ next to the output).
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
    /// Identity table (.csv or .parquet, e.g. <convert out>/identity/patients/part-00000.parquet):
    /// each person's own name (kanji, kana), address and phone are always removed from their free
    /// text, whatever the context. Keyed by the policy's person column.
    #[arg(long, value_name = "FILE")]
    identity: Option<PathBuf>,
}

fn release_key(file: Option<&Path>) -> Result<ReleaseKey> {
    let hex_text = match file {
        Some(f) => std::fs::read_to_string(f).with_context(|| format!("key file {}", f.display()))?,
        None => match std::env::var("KIBAN_RELEASE_KEY") {
            Ok(v) => v,
            Err(_) => return Ok(ReleaseKey::random()),
        },
    };
    let bytes = hex::decode(hex_text.trim()).map_err(|_| anyhow::anyhow!("release key: not hexadecimal"))?;
    Ok(ReleaseKey::new(bytes)?)
}

/// Runs `kiban pseudonymize`.
pub fn run(ctx: &Ctx, args: Args) -> Result<ExitCode> {
    let policy = PseudoPolicy::load(&args.policy).with_context(|| format!("policy {}", args.policy.display()))?;
    let mut opts = PseudoOptions::new(release_key(args.key_file.as_deref())?);
    if let Some(id) = &args.identity {
        let person = policy.person_column.as_deref().context("--identity needs person_column in the policy")?;
        opts.identities = kiban_deid::pseudo::identities_from(&Input::from_path(id), person)
            .with_context(|| format!("identity table {}", id.display()))?;
    }
    let out = pseudonymize(&policy, &Input::from_path(&args.input), &Output::from_path(&args.output), &opts)?;
    let report_dir = args.report.unwrap_or_else(|| {
        let stem = args.output.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        args.output.with_file_name(format!("{stem}.report"))
    });
    std::fs::create_dir_all(&report_dir).with_context(|| format!("cannot create {}", report_dir.display()))?;
    let json = serde_json::to_string_pretty(&out.report)?;
    std::fs::write(report_dir.join("report.json"), &json)?;
    let r = &out.report;
    if ctx.json {
        println!("{json}");
    } else {
        println!(
            "pseudonymized {} → {} records under {} (checks {}; policy {})",
            r.records_in,
            r.records_out,
            r.policy_name,
            r.checks.join(", "),
            &r.policy_hash[..12]
        );
        for c in &r.columns {
            let f: Vec<String> = c.findings.iter().map(|(k, v)| format!("{k} {v}")).collect();
            println!(
                "  {:<24} {:<12} changed {:>8}  {}",
                c.name,
                format!("{:?}", c.treatment).to_lowercase(),
                c.changed,
                f.join(", ")
            );
        }
        println!("report: {}", report_dir.join("report.json").display());
    }
    Ok(ExitCode::SUCCESS)
}

/// How `deid-text` replaces what it finds.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Mode {
    /// Every finding becomes its tag (［氏名］, ［住所］, ［日付］ …).
    Tag,
    /// Names and places become surrogates, consistent within the document.
    Surrogate,
    /// Pseudonymization: dates shifted by one offset (intervals kept), ages of 90+ top-coded, sex kept.
    Pseudo,
}

/// De-identify Japanese free text (S5) and print it: names, addresses, postal codes, phone
/// numbers, e-mail and URLs, dates (Western and 和暦), ages, ids, My Number, card and bank details,
/// hospitals.
#[derive(Debug, clap::Args)]
pub struct TextArgs {
    /// Input file (UTF-8 text); `-` reads standard input.
    #[arg(long = "in", value_name = "FILE")]
    input: PathBuf,
    /// Replacement mode.
    #[arg(long, value_enum, default_value = "tag")]
    mode: Mode,
    /// Date offset in days for --mode pseudo.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    shift_days: i64,
}

/// Runs `kiban deid-text`.
pub fn run_text(ctx: &Ctx, args: TextArgs) -> Result<ExitCode> {
    let bytes = if args.input.as_os_str() == "-" {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut v)?;
        v
    } else {
        std::fs::read(&args.input).with_context(|| format!("cannot read {}", args.input.display()))?
    };
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let line = e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1;
            bail!("{}: line {line} (byte {at}): not valid UTF-8 (rule: text input is UTF-8)", args.input.display());
        }
    };
    let cfg = match args.mode {
        Mode::Tag => TextConfig::default(),
        Mode::Surrogate => {
            let mut c = TextConfig::default();
            c.replace.insert(Tag::Person, Replace::Surrogate);
            c.replace.insert(Tag::Location, Replace::Surrogate);
            c.replace.insert(Tag::Hospital, Replace::Surrogate);
            c
        }
        Mode::Pseudo => TextConfig::pseudonymization(),
    };
    let seed = rand::random::<u64>();
    let d = deidentify(&text, &cfg, &DocContext { date_offset_days: args.shift_days, surrogate_seed: seed });
    if ctx.json {
        let spans: Vec<_> =
            d.spans.iter().map(|s| serde_json::json!({"start": s.start, "end": s.end, "tag": s.tag.name()})).collect();
        println!("{}", serde_json::json!({"text": d.text, "spans": spans}));
    } else {
        print!("{}", d.text);
        if !d.text.ends_with('\n') {
            println!();
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Evaluate the text de-identifier on synthetic clinical notes with gold annotations: precision,
/// recall and F1 per tag, throughput in MB/s (targets: recall ≥ 0.98 for names, addresses, phones
/// and ids; precision ≥ 0.90; ≥ 2 MB/s per core).
#[derive(Debug, clap::Args)]
pub struct BenchTextArgs {
    /// Notes to generate.
    #[arg(long, default_value_t = 5_000)]
    notes: usize,
    /// Generator seed.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Rows of the 20-column claims table for the structured pseudonymization figure (0 skips it).
    #[arg(long, default_value_t = 1_000_000)]
    claims_rows: usize,
    /// Python of a venv with presidio-analyzer (default: $KIBAN_PRESIDIO_PYTHON, else
    /// <target>/peers-venv-text made by scripts/presidio-venv.sh).
    #[arg(long, value_name = "PYTHON")]
    presidio: Option<PathBuf>,
}

/// Runs `kiban bench-text` (the lead may route `kiban bench text` here).
pub fn run_bench_text(ctx: &Ctx, args: BenchTextArgs) -> Result<ExitCode> {
    if ctx.json {
        let mut sets = Vec::new();
        for (name, notes) in [
            ("tuning", kiban_deid::textgen::generate(args.seed, args.notes)),
            ("heldout", kiban_deid::textgen_heldout::generate(args.seed, args.notes)),
        ] {
            let e = kiban_deid::textgen::evaluate(&notes);
            let rows: Vec<_> = e
                .per_tag
                .iter()
                .map(|(t, c)| {
                    serde_json::json!({"tag": t.name(), "gold": c.gold, "pred": c.pred, "precision": c.precision(),
                        "recall": c.recall(), "f1": c.f1(), "strict_f1": c.strict_f1()})
                })
                .collect();
            sets.push(serde_json::json!({"set": name, "mb_per_s": e.mb_per_s(), "tags": rows}));
        }
        println!("{}", serde_json::json!({"notes": args.notes, "seed": args.seed, "sets": sets}));
    } else {
        println!("kiban bench-text: {} synthetic notes per set (seed {})", args.notes, args.seed);
        print!("{}", kiban_deid::textgen::bench_report(args.seed, args.notes, args.presidio.as_deref()));
    }
    if args.claims_rows > 0 {
        print!("\n{}", kiban_deid::pseudo_bench::report(args.claims_rows)?);
    }
    Ok(ExitCode::SUCCESS)
}
