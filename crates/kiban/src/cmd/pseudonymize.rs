//! `kiban pseudonymize`, `kiban deid-text` and `kiban bench-text`: pseudonymization (仮名加工,
//! S1–S3, S5, S6) of a table, de-identification of Japanese free text, and the text
//! de-identifier's evaluation on synthetic notes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use kiban_audit::{Action, Actor, AuditLog, AuditSink, Event, Object, ObjectKind, Role};
use kiban_deid::text::{DocContext, Replace, Tag, TextConfig, deidentify};
use kiban_deid::{Input, Output, PseudoOptions, PseudoPolicy, ReleaseKey, pseudonymize};

use crate::Ctx;
use crate::datadir::DataDir;

/// Pseudonymize a table under a pseudonymization policy: names deleted or replaced by keyed
/// tokens, addresses reduced by the area's population, birth dates reduced to the year, id codes
/// deleted or tokenized, financial descriptions deleted even inside other columns, free text
/// de-identified; clinical values kept. A policy that would keep a name, code or card number is
/// refused with the rule (S1, S2, S3). With a data directory the tokens are keyed by the release's
/// pseudonym domain (--release; another release's tokens cannot be joined unless an approved
/// application names the linkage) and the result is a dataset sealed at rest under
/// <data-dir>/datasets/NAME; a plain --output file needs --export-plain and is audited. Without a
/// data directory the output is a plain file under a one-run random key (tokens link nothing).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Pseudonymization policy (TOML, kind = "pseudonymization").
    #[arg(long, value_name = "FILE")]
    policy: PathBuf,
    /// Input table (.csv with a header, or .parquet).
    #[arg(long, value_name = "FILE")]
    input: PathBuf,
    /// Write the result as a dataset sealed at rest under <data-dir>/datasets/NAME.
    #[arg(long, value_name = "NAME", conflicts_with = "output", required_unless_present = "output")]
    dataset: Option<String>,
    /// Write a plain table (.csv or .parquet) instead; with a data directory only with --export-plain.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Allow --output although a data directory exists: a plain export of medical data, recorded in
    /// the audit log before it is written.
    #[arg(long, requires = "output")]
    export_plain: bool,
    /// The release whose pseudonym domain keys the tokens and date offsets (default: a new release
    /// id of its own). Needs a data directory.
    #[arg(long, value_name = "ID")]
    release: Option<String>,
    /// Join the tokens of this earlier release: the approved --application must name it under
    /// linkage (e.g. `release:rel-…`).
    #[arg(long, value_name = "RELEASE", requires = "application", requires = "release")]
    link_to: Option<String>,
    /// The approved application that allows --link-to.
    #[arg(long, value_name = "ID", requires = "link_to")]
    application: Option<String>,
    /// Where to write report.json with --output (default: <output stem>.report/ next to it); a
    /// dataset keeps its report in its manifest.
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
    /// Identity table (.csv or .parquet, e.g. <convert out>/identity/patients/part-00000.parquet):
    /// each person's own name (kanji, kana), address and phone are always removed from their free
    /// text, whatever the context. Keyed by the policy's person column.
    #[arg(long, value_name = "FILE")]
    identity: Option<PathBuf>,
}

/// Whether `root` is a data directory (its config is written last, so it is complete).
pub(crate) fn has_data_dir(root: &Path) -> bool {
    root.join(crate::datadir::CONFIG).is_file()
}

/// The audit log of a data directory, for the processing commands.
pub(crate) fn open_log(dd: &DataDir) -> Result<AuditLog> {
    let key = crate::auditkey::audit_checkpoint_key(dd)?;
    AuditLog::open(dd.audit_dir(), key).context("cannot open the audit log")
}

/// The CLI operator as the audit log names them.
pub(crate) fn operator() -> Actor {
    Actor::new(format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "operator".into())), Role::ProcessingEngineer)
}

/// Refuses a plain export where a data directory exists unless `--export-plain` was given; with it,
/// records the export (what, which policy; no data) before anything is written.
pub(crate) fn plain_export_allowed(
    log: &AuditLog,
    command: &str,
    output: &Path,
    export_plain: bool,
    policy: &str,
) -> Result<()> {
    if !export_plain {
        bail!(
            "--output {}: refused: with a data directory the result is a dataset sealed at rest \
             (--dataset NAME); a plain file of medical data outside it needs --export-plain, which is audited (R12, X4)",
            output.display()
        );
    }
    log.record(
        Event::new(
            operator(),
            command,
            Action::Export,
            Object::new(ObjectKind::Clinical, format!("plain-export/{policy}")),
        )
        .note(format!("plain file export with --export-plain to {}", output.display())),
    )?;
    log.flush()?;
    Ok(())
}

/// A dataset name under `<data-dir>/datasets/`: a plain id, never a path.
pub(crate) fn dataset_dir(root: &Path, name: &str) -> Result<PathBuf> {
    if !kiban_registry::review::package::is_plain_id(name) {
        bail!("--dataset {name:?}: a dataset name (letters, digits, '-', '_', '.'), not a path");
    }
    Ok(root.join("datasets").join(name))
}

fn print_report(ctx: &Ctx, r: &serde_json::Value, report_path: Option<&Path>) {
    if ctx.json {
        println!("{r}");
        return;
    }
    let s = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
    let checks: Vec<String> =
        r["checks"].as_array().into_iter().flatten().filter_map(|c| c.as_str().map(str::to_owned)).collect();
    println!(
        "pseudonymized {} → {} records under {} (checks {}; policy {})",
        r["records_in"],
        r["records_out"],
        s("policy_name"),
        checks.join(", "),
        &s("policy_hash").get(..12).unwrap_or_default()
    );
    for c in r["columns"].as_array().into_iter().flatten() {
        let f: Vec<String> = c["findings"].as_object().into_iter().flatten().map(|(k, v)| format!("{k} {v}")).collect();
        println!(
            "  {:<24} {:<12} changed {:>8}  {}",
            c["name"].as_str().unwrap_or_default(),
            c["treatment"].as_str().unwrap_or_default(),
            c["changed"],
            f.join(", ")
        );
    }
    if let Some(p) = report_path {
        println!("report: {}", p.display());
    }
}

/// Runs `kiban pseudonymize`.
pub fn run(ctx: &Ctx, args: Args) -> Result<ExitCode> {
    let policy = PseudoPolicy::load(&args.policy).with_context(|| format!("policy {}", args.policy.display()))?;
    let identities = match &args.identity {
        Some(id) => {
            let person = policy.person_column.as_deref().context("--identity needs person_column in the policy")?;
            kiban_deid::pseudo::identities_from(&Input::from_path(id), person)
                .with_context(|| format!("identity table {}", id.display()))?
        }
        None => Default::default(),
    };
    if !has_data_dir(&ctx.data_dir) {
        if args.dataset.is_some() || args.release.is_some() {
            // Sealing and release domains live in the data directory: say which one is missing.
            DataDir::open(&ctx.data_dir).context("--dataset and --release need a data directory")?;
        }
        let output = args.output.as_deref().context("--output FILE (no data directory)")?;
        let mut opts = PseudoOptions::new(ReleaseKey::random());
        opts.identities = identities;
        return write_plain(ctx, &policy, &args.input, output, args.report, &opts);
    }
    let dd = DataDir::open(&ctx.data_dir)?;
    let log = open_log(&dd)?;
    let release = args.release.clone().unwrap_or_else(|| format!("rel-{:016x}", rand::random::<u64>()));
    let linkage = match (&args.link_to, &args.application) {
        (Some(earlier), Some(app)) => Some(crate::block_on(async {
            let reg = dd.registry().await?;
            let st = reg.application_state(app).await;
            reg.close().await;
            anyhow::Ok(kiban_registry::review::package::linkage_allowed(&st?, app, earlier)?)
        })?),
        _ => None,
    };
    let mut ks = dd.key_store()?;
    let k = kiban_server::deid::release_table_key(&mut ks, &release, linkage.as_ref())
        .map_err(|e| anyhow::anyhow!("release {release}: {e}"))?;
    log.record(
        Event::new(operator(), "kiban pseudonymize", Action::KeyUse, Object::new(ObjectKind::Key, &k.domain))
            .note(format!("release {release} table tokens (linked to {:?})", args.link_to)),
    )?;
    let domain = k.domain.clone();
    let mut opts = PseudoOptions::new(k.key);
    opts.identities = identities;
    if let Some(output) = &args.output {
        plain_export_allowed(&log, "kiban pseudonymize", output, args.export_plain, &policy.name)?;
        return write_plain(ctx, &policy, &args.input, output, args.report, &opts);
    }
    let name = args.dataset.as_deref().expect("clap: --dataset or --output");
    let dir = dataset_dir(&ctx.data_dir, name)?;
    let extra = serde_json::json!({"release": release, "pseudonym_domain": domain, "linked_to": args.link_to});
    let source = kiban_registry::processing::Source::File(&args.input);
    let p =
        kiban_registry::processing::pseudonymize_to_dataset(&policy, source, &opts, &dir, name, dd.sealer()?, extra)?;
    log.record(
        Event::new(
            operator(),
            "kiban pseudonymize",
            Action::Write,
            Object::new(ObjectKind::Clinical, format!("dataset/{name}")),
        )
        .volume(p.records_out)
        .note(format!("policy {} release {release}", &p.policy_sha256[..12])),
    )?;
    log.flush()?;
    print_report(ctx, &p.report, None);
    if !ctx.json {
        println!(
            "dataset: {} (sealed at rest; release {release}, pseudonym domain {domain}; report in its manifest)",
            dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes a plain output file and its report (no data directory, or an audited --export-plain).
fn write_plain(
    ctx: &Ctx,
    policy: &PseudoPolicy,
    input: &Path,
    output: &Path,
    report: Option<PathBuf>,
    opts: &PseudoOptions,
) -> Result<ExitCode> {
    let out = pseudonymize(policy, &Input::from_path(input), &Output::from_path(output), opts)?;
    let report_dir = report.unwrap_or_else(|| {
        let stem = output.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        output.with_file_name(format!("{stem}.report"))
    });
    std::fs::create_dir_all(&report_dir).with_context(|| format!("cannot create {}", report_dir.display()))?;
    let json = serde_json::to_string_pretty(&out.report)?;
    std::fs::write(report_dir.join("report.json"), &json)?;
    print_report(ctx, &serde_json::to_value(&out.report)?, Some(&report_dir.join("report.json")));
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
