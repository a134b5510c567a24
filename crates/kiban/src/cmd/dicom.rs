//! `kiban dicom`: de-identify DICOM files and folders (PS3.15 Annex E with options, burned-in text and
//! faces), and list DICOM metadata as a table. `kiban bench dicom` compares with dicognito and
//! dicom-anonymizer.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use kiban_dicom::deid::{Config, Keyring, PersonResolver};
use kiban_dicom::profile::{Profile, ProfileOption};
use kiban_dicom::run::{FileReport, RunOptions, process_bytes, process_tree};
use kiban_formats::dicom;
use kiban_identity::keystore::KeyStore;
use kiban_identity::pseudonym::PseudonymKey;

use crate::Ctx;
use crate::datadir::DataDir;

/// DICOM: de-identification and metadata.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// De-identify a file or a folder tree into --out (PS3.15 Basic Profile + options; OCR and faces).
    Deid(DeidArgs),
    /// Print the metadata of a file or folder as CSV (one row per attribute; pixel data by reference).
    Table {
        /// File or folder.
        input: PathBuf,
    },
}

/// Arguments of `kiban dicom deid`.
#[derive(Debug, clap::Args)]
pub struct DeidArgs {
    /// File or folder (walked recursively).
    input: PathBuf,
    /// Output folder (relative paths kept); a report.json is written there.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Standing domain shared by every run that names it (without --release): UIDs, pseudonyms and
    /// date offsets are consistent within one domain.
    #[arg(long, default_value = "dicom-default", conflicts_with = "release")]
    domain: String,
    /// Release id: the release's own pseudonym domain of the identity vault's key store, so two
    /// releases' Patient IDs, UIDs and date offsets cannot be joined (unless --link-to).
    #[arg(long, value_name = "ID", conflicts_with = "ephemeral_key")]
    release: Option<String>,
    /// With --release: reuse this earlier release's domain, as the review committee's decision allows.
    #[arg(long, value_name = "RELEASE", requires_all = ["release", "decision"])]
    link_to: Option<String>,
    /// With --link-to: the committee's decision allowing the linkage (recorded in the release register).
    #[arg(long, value_name = "REF", requires = "link_to")]
    decision: Option<String>,
    /// Options instead of kiban's pseudonymization default (repeatable): clean-pixel-data,
    /// clean-recognizable-visual-features, clean-graphics, clean-structured-content, clean-descriptors,
    /// retain-longitudinal-full-dates, retain-longitudinal-modified-dates, retain-patient-characteristics,
    /// retain-device-identity, retain-uids, retain-safe-private, retain-institution-identity.
    #[arg(long = "option", value_name = "OPTION")]
    options: Vec<String>,
    /// The Basic Profile with no option at all.
    #[arg(long, conflicts_with = "options")]
    basic_only: bool,
    /// Skip OCR (declared annotation regions are still blanked).
    #[arg(long)]
    no_ocr: bool,
    /// Deface head CT: voxels outside the skull mask set to air (head MR is only flagged).
    #[arg(long)]
    deface: bool,
    /// Keep input folder and file names (they often carry patient names or IDs; default: outputs named
    /// <pseudonym>/<study UID>/<series UID>/<instance UID>.dcm).
    #[arg(long)]
    keep_paths: bool,
    /// CSV `patient_id,issuer,person_key` (person keys `pk-…` from the identity vault): those patients get
    /// their release token of the identity crate as Patient ID; others a keyed digest of their ID.
    #[arg(long, value_name = "CSV")]
    person_map: Option<PathBuf>,
    /// Also take old files stored without the DICOM file meta header (rejected by default).
    #[arg(long)]
    accept_no_meta: bool,
    /// Use a throwaway key instead of the data directory's key store (UIDs consistent within this run only).
    #[arg(long)]
    ephemeral_key: bool,
}

struct KeyHolder {
    _tmp: Option<PathBuf>,
    key: PseudonymKey,
}

impl Drop for KeyHolder {
    fn drop(&mut self) {
        if let Some(t) = &self._tmp {
            let _ = std::fs::remove_dir_all(t);
        }
    }
}

/// The release's own domain key (kiban-identity's release register), or the standing domain's.
fn key_for(ctx: &Ctx, args: &DeidArgs) -> Result<KeyHolder> {
    let Some(release) = &args.release else { return domain_key(ctx, &args.domain, args.ephemeral_key) };
    let dd = DataDir::open(&ctx.data_dir).context("no data directory: run `kiban init` first")?;
    let mut ks = dd.key_store()?;
    let linkage = args.link_to.as_ref().map(|l| kiban_identity::release::LinkageDecision {
        earlier_release: l.clone(),
        decision: args.decision.clone().unwrap_or_default(),
    });
    let (key, _) = kiban_identity::release::release_key(&mut ks, release, linkage.as_ref())?;
    Ok(KeyHolder { _tmp: None, key })
}

fn domain_key(ctx: &Ctx, domain: &str, ephemeral: bool) -> Result<KeyHolder> {
    if ephemeral {
        let tmp =
            std::env::temp_dir().join(format!("kiban-dicom-key-{}-{}", std::process::id(), rand::random::<u64>()));
        let mut ks = KeyStore::create(&tmp.join("keys"))?;
        let key = ks.domain_key(domain)?;
        return Ok(KeyHolder { _tmp: Some(tmp), key });
    }
    let dd = DataDir::open(&ctx.data_dir)
        .context("no data directory: run `kiban init` first, or pass --ephemeral-key for a one-off run")?;
    let mut ks = dd.key_store()?;
    Ok(KeyHolder { _tmp: None, key: ks.domain_key(&format!("dicom/{domain}"))? })
}

fn config(args: &DeidArgs) -> Result<Config> {
    let mut cfg = Config::pseudonymization();
    if args.basic_only {
        cfg.options.clear();
    } else if !args.options.is_empty() {
        cfg.options = args
            .options
            .iter()
            .map(|o| ProfileOption::parse(o).with_context(|| format!("unknown option {o:?}")))
            .collect::<Result<_>>()?;
    }
    Ok(cfg)
}

type PersonMap = std::collections::HashMap<(String, String), kiban_model::id::PersonKey>;

/// Reads `patient_id,issuer,person_key` rows; a bad row names its line.
fn person_map(path: &Path) -> Result<PersonMap> {
    let mut rd =
        csv::ReaderBuilder::new().has_headers(true).from_path(path).with_context(|| format!("{}", path.display()))?;
    let mut m = PersonMap::new();
    for (i, rec) in rd.records().enumerate() {
        let rec = rec.with_context(|| format!("{} line {}", path.display(), i + 2))?;
        let pk = kiban_model::id::PersonKey::parse(rec.get(2).unwrap_or(""))
            .with_context(|| format!("{} line {}: person_key", path.display(), i + 2))?;
        m.insert((rec.get(0).unwrap_or("").to_owned(), rec.get(1).unwrap_or("").to_owned()), pk);
    }
    Ok(m)
}

/// Runs `kiban dicom`.
pub fn run(ctx: &Ctx, args: Args) -> Result<ExitCode> {
    match args.what {
        What::Deid(a) => run_deid(ctx, &a),
        What::Table { input } => {
            let (rows, bad) = dicom::read_tree_metadata(&input);
            let mut w = arrow::csv::WriterBuilder::new().with_header(true).build(std::io::stdout());
            w.write(&dicom::rows_to_batch(&rows))?;
            for b in &bad {
                eprintln!("読めないファイル / unreadable: {}: {}", b.file.display(), b.error);
            }
            Ok(if bad.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(2) })
        }
    }
}

/// De-identifies `args.input` into `args.out`; prints the per-file report.
pub fn run_deid(ctx: &Ctx, args: &DeidArgs) -> Result<ExitCode> {
    let cfg = config(args)?;
    let holder = key_for(ctx, args)?;
    let map = match &args.person_map {
        Some(p) => person_map(p)?,
        None => Default::default(),
    };
    let resolver = move |pid: &str, issuer: &str| map.get(&(pid.to_owned(), issuer.to_owned())).copied();
    let keys = Keyring { key: &holder.key, resolve: args.person_map.is_some().then_some(&resolver as &PersonResolver) };
    let profile = Profile::standard();
    let opts = RunOptions {
        ocr: !args.no_ocr,
        accept_no_meta: args.accept_no_meta,
        deface: args.deface,
        ..Default::default()
    };
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let total = dicom::files_under(&args.input).len();
    let pb = crate::progress::bar(total as u64, "dicom deid");
    if ctx.json {
        pb.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let started = Instant::now();
    let reports = process_tree(&args.input, &args.out, &profile, &cfg, &keys, &opts, &mut |_, _| pb.inc(1));
    pb.finish_and_clear();
    let json = serde_json::to_string_pretty(&reports)?;
    std::fs::write(args.out.join("report.json"), &json)?;
    let failed = reports.iter().filter(|r| r.error.is_some()).count();
    if ctx.json {
        println!("{json}");
    } else {
        print_report(&reports, started.elapsed().as_secs_f64(), &cfg);
        println!("レポート / report: {}", args.out.join("report.json").display());
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

fn print_report(reports: &[FileReport], secs: f64, cfg: &Config) {
    let codes: Vec<&str> = cfg.options.iter().map(|o| o.code().0).collect();
    println!("DICOM 匿名化 / de-identification: PS3.15 Basic Profile (113100) + {}", codes.join(" "));
    println!("| file | 結果 result | 削除 removed | UID | 日付 dates | 本文 text | 画素 pixels |");
    println!("|---|---|---:|---:|---:|---:|---|");
    for r in reports {
        match (&r.error, &r.stats) {
            (Some(e), _) => println!("| {} | エラー error: {e} | | | | | |", r.input),
            (None, Some(s)) => {
                let px = r.pixels.as_ref().map_or(String::new(), |p| {
                    let mut v = Vec::new();
                    if p.checked {
                        v.push(format!(
                            "checked; text regions {}, faces {}",
                            p.declared.len() + p.ocr.len(),
                            p.faces.len()
                        ));
                    }
                    if p.defaced {
                        v.push("頭部CT: 頭蓋外を除去 / defaced".into());
                    } else if p.head_volume_flag {
                        v.push("頭部CT/MR: 顔の再構成に注意 / head volume flagged".into());
                    }
                    v.join("; ")
                });
                println!(
                    "| {} | ok | {} | {} | {} | {} | {} |",
                    r.input, s.removed, s.uids_replaced, s.dates_shifted, s.texts_cleaned, px
                );
            }
            _ => {}
        }
    }
    let ok = reports.iter().filter(|r| r.error.is_none()).count();
    println!("{ok} 件出力 / written, {} 件エラー / failed (出力なし / not copied), {:.2} s", reports.len() - ok, secs);
}

/// Arguments of `kiban bench dicom`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Folder of DICOM files (default: the fetched test corpus under the target dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Python with dicognito and dicom-anonymizer installed (default: the venv under the target dir,
    /// created on first use).
    #[arg(long)]
    python: Option<PathBuf>,
    /// Repetitions over the set.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

const PEER_SCRIPT: &str = r#"
import sys, time, os, io, glob, warnings, logging
warnings.filterwarnings("ignore"); logging.disable(logging.CRITICAL)
tool, rounds, files = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
import pydicom
failed = set(); n = 0
if tool == "pydicom-metadata":
    def run(p):
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        for el in ds.iterall():
            str(el.value)
elif tool == "dicognito":
    from dicognito.anonymizer import Anonymizer
    anon = Anonymizer()
    def run(p):
        ds = pydicom.dcmread(p)
        anon.anonymize(ds)
        ds.save_as(io.BytesIO())
else:
    from dicomanonymizer import anonymize_dataset
    def run(p):
        ds = pydicom.dcmread(p)
        anonymize_dataset(ds, {}, delete_private_tags=True)
        ds.save_as(io.BytesIO())
t = time.perf_counter()
for r in range(rounds):
    for p in files:
        try:
            run(p); n += 1
        except Exception as e:
            failed.add(os.path.basename(p))
print(n, time.perf_counter() - t, ",".join(sorted(failed)))
"#;

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("target"))
}

fn peer_python(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let venv = target_dir().join("venv-dicom");
    let py = venv.join("bin/python");
    if !py.exists() {
        eprintln!("creating {} (pydicom, dicognito, dicom-anonymizer)…", venv.display());
        let ok = std::process::Command::new("python3").arg("-m").arg("venv").arg(&venv).status()?.success();
        if !ok {
            bail!("python3 -m venv failed");
        }
    }
    let check = std::process::Command::new(&py).args(["-c", "import dicognito, dicomanonymizer"]).output()?;
    if !check.status.success() {
        for _ in 0..3 {
            let st = std::process::Command::new(&py)
                .args(["-m", "pip", "install", "-q", "pydicom", "dicognito", "dicom-anonymizer"])
                .status()?;
            if st.success() {
                break;
            }
        }
    }
    Ok(py)
}

/// Runs `kiban bench dicom`: attribute de-identification (no OCR) on the same files in the same run.
pub fn run_bench(ctx: &Ctx, args: BenchArgs) -> Result<ExitCode> {
    let dir = args.dir.unwrap_or_else(|| target_dir().join("fixtures/dicom"));
    if !dir.exists() {
        bail!("{} missing: run scripts/fetch-fixtures-dicom.sh", dir.display());
    }
    let files: Vec<PathBuf> =
        dicom::files_under(&dir).into_iter().filter(|p| p.extension().is_some_and(|e| e == "dcm")).collect();
    let data: Vec<(PathBuf, Vec<u8>)> =
        files.iter().map(|p| Ok((p.clone(), std::fs::read(p)?))).collect::<Result<_>>()?;
    let bytes: u64 = data.iter().map(|(_, b)| b.len() as u64).sum();
    let holder = domain_key(ctx, "bench", true)?;
    let keys = Keyring { key: &holder.key, resolve: None };
    let profile = Profile::standard();
    let mut cfg = Config::pseudonymization();
    cfg.options
        .retain(|o| !matches!(o, ProfileOption::CleanPixelData | ProfileOption::CleanRecognizableVisualFeatures));
    let opts = RunOptions { ocr: false, accept_no_meta: true, ..Default::default() };
    let mut kiban_failed = std::collections::BTreeSet::new();
    let t = Instant::now();
    let mut n = 0usize;
    for _ in 0..args.rounds {
        for (p, b) in &data {
            match process_bytes(b, &profile, &cfg, &keys, &opts) {
                Ok(_) => n += 1,
                Err(_) => {
                    kiban_failed.insert(p.file_name().unwrap_or_default().to_string_lossy().into_owned());
                }
            }
        }
    }
    let kiban_secs = t.elapsed().as_secs_f64();
    let kiban_rate = n as f64 / kiban_secs;
    // Metadata reading (issue 5): the table rows of every file, pixels by reference.
    let t = Instant::now();
    let mut meta_n = 0usize;
    for _ in 0..args.rounds {
        for (p, b) in &data {
            if let Ok((f, px)) = dicom::read_metadata(b) {
                meta_n += dicom::metadata_rows(&p.display().to_string(), &f, px).len().min(1);
            }
        }
    }
    let meta_rate = meta_n as f64 / t.elapsed().as_secs_f64();
    let py = peer_python(args.python.as_deref())?;
    let mut peers = Vec::new();
    for tool in ["dicognito", "dicom-anonymizer", "pydicom-metadata"] {
        let out = std::process::Command::new(&py)
            .args(["-c", PEER_SCRIPT, tool, &args.rounds.to_string()])
            .args(&files)
            .output()
            .with_context(|| format!("running {tool}"))?;
        let line = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or("").to_owned();
        let mut it = line.splitn(3, ' ');
        let (pn, ps, pf) = (it.next(), it.next(), it.next().unwrap_or(""));
        match (pn.and_then(|x| x.parse::<f64>().ok()), ps.and_then(|x| x.parse::<f64>().ok())) {
            (Some(pn), Some(ps)) => peers.push((tool, pn / ps, pf.to_owned())),
            _ => bail!(
                "{tool} printed no figures: {}",
                String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
            ),
        }
    }
    if ctx.json {
        println!(
            "{}",
            serde_json::json!({"files": files.len(), "bytes": bytes, "rounds": args.rounds, "kiban_files_per_s": kiban_rate,
                "kiban_failed": kiban_failed, "kiban_metadata_files_per_s": meta_rate, "peers": peers.iter().map(|(t, r, f)| serde_json::json!({"tool": t, "files_per_s": r, "failed": f})).collect::<Vec<_>>()})
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("| bench dicom (attributes, no OCR) | files/s | ratio kiban/peer | files the tool failed on |");
    println!("|---|---:|---:|---|");
    println!("| kiban | {kiban_rate:.0} | 1.00 | {} |", kiban_failed.iter().cloned().collect::<Vec<_>>().join(", "));
    for (tool, rate, failed) in peers.iter().filter(|p| p.0 != "pydicom-metadata") {
        println!("| {tool} | {rate:.0} | {:.1}× | {failed} |", kiban_rate / rate);
    }
    println!("| metadata table (read, pixels by reference) | files/s | ratio | |");
    println!("| kiban | {meta_rate:.0} | 1.00 | |");
    for (_, rate, failed) in peers.iter().filter(|p| p.0 == "pydicom-metadata") {
        println!("| pydicom dcmread(stop_before_pixels) | {rate:.0} | {:.1}× | {failed} |", meta_rate / rate);
    }
    println!(
        "{} files ({:.1} MB) × {} rounds; build: {}",
        files.len(),
        bytes as f64 / 1e6,
        args.rounds,
        if cfg!(debug_assertions) { "debug (use --release for figures)" } else { "release" }
    );
    Ok(ExitCode::SUCCESS)
}

/// The demo's DICOM stage: a small synthetic head CT series per person (names in ISO 2022 IR 87),
/// de-identified with the data directory's key store; checks that no name, ID or birth date survives.
pub fn demo_step(dd: &DataDir, cfg: &kiban_model::synth::SynthConfig, dir: &Path) -> Result<String> {
    use kiban_dicom::synth::{SynthPatient, head_ct_series};
    let input = dir.join("dicom-in");
    let out = dir.join("dicom-out");
    let _ = std::fs::remove_dir_all(&out);
    let mut secrets = Vec::new();
    for i in 0..cfg.patients.min(3) {
        let p = kiban_model::synth::person(cfg, i);
        let sp = SynthPatient {
            kanji: (p.family.0.clone(), p.given.0.clone()),
            kana: (p.family.1.clone(), p.given.1.clone()),
            patient_id: format!("{:08}", 10_000_000 + i * 7919),
            birth: p.birth.format("%Y%m%d").to_string(),
            sex: match p.sex.code() {
                "1" => "M".into(),
                "2" => "F".into(),
                _ => "O".into(),
            },
            study_date: "20240415".into(),
            hospital: "合成市立病院".into(),
        };
        secrets.extend([sp.kanji.0.clone(), sp.kanji.1.clone(), sp.patient_id.clone(), sp.birth.clone()]);
        let d = input.join(format!("patient{i}"));
        std::fs::create_dir_all(&d)?;
        for (k, b) in head_ct_series(&sp, 4).into_iter().enumerate() {
            std::fs::write(d.join(format!("ct{k:02}.dcm")), b)?;
        }
    }
    let mut ks = dd.key_store()?;
    let key = ks.domain_key("dicom/demo")?;
    let keys = Keyring { key: &key, resolve: None };
    let opts = RunOptions { ocr: false, ..Default::default() };
    let reports =
        process_tree(&input, &out, &Profile::standard(), &Config::pseudonymization(), &keys, &opts, &mut |_, _| {});
    let failed = reports.iter().filter(|r| r.error.is_some()).count();
    if failed > 0 {
        bail!("{failed} synthetic DICOM files failed");
    }
    let flagged = reports.iter().filter(|r| r.pixels.as_ref().is_some_and(|p| p.head_volume_flag)).count();
    for r in &reports {
        let f = dicom::read(&std::fs::read(r.output.as_deref().unwrap_or_default())?)?;
        let text: String = dicom::metadata_rows("", &f, None).into_iter().map(|r| r.value + "\n").collect();
        if let Some(s) = secrets.iter().find(|s| text.contains(s.as_str())) {
            bail!("{} kept an identifier ({} chars)", r.input, s.chars().count());
        }
    }
    Ok(format!(
        "DICOM 匿名化 de-identification: {} files (ISO 2022 IR 87 names) → {}, no name/ID/birth date left, {} head CT flagged",
        reports.len(),
        out.display(),
        flagged
    ))
}
