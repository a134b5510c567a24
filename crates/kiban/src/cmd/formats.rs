//! `kiban formats`: convert a provider's files in a standard medical format into canonical tables
//! (identity apart), the synthetic writers behind `kiban synth --format`, the demo's three
//! providers in three formats, and `kiban bench formats`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use kiban_formats::canonical::{Counted, Record, records_from_synth};
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
    match r {
        Record::Patient(x) => &x.provider_id,
        Record::Encounter(x) => &x.provider_id,
        Record::Diagnosis(x) => &x.provider_id,
        Record::Prescription(x) => &x.provider_id,
        Record::Lab(x) => &x.provider_id,
        Record::Text(x) => &x.provider_id,
    }
}

/// The demo's providers send in three formats: the first SS-MIX2, the second UKE receipts, the
/// third FHIR. Each provider's files are written from the synthetic population, read back by the
/// format readers into `demo_dir/submissions/<provider>/` (encounters and diagnoses, what the gate
/// stage submits) with identity to `demo_dir/identity/<provider>/`; the gate stage then takes them
/// in. Returns the summary line.
pub fn demo_submissions(cfg: &SynthConfig, demo_dir: &Path) -> Result<String> {
    const FORMATS: [InputFormat; 3] = [InputFormat::Ssmix2, InputFormat::Uke, InputFormat::Fhir];
    let provs = providers(cfg);
    let files = demo_dir.join("provider-files");
    let mut lines = Vec::new();
    for (pi, p) in provs.iter().enumerate() {
        let f = FORMATS[pi % 3];
        let sub = demo_dir.join("submissions").join(&p.id);
        if sub.exists() {
            lines.push(format!("{} {} (reused)", p.id, format_name(f)));
            continue;
        }
        let input = files.join(format_name(f)).join(&p.id);
        if !input.exists() {
            write_one_provider(cfg, p.id.as_str(), f, &input)?;
        }
        let staging = demo_dir.join("formats-staging").join(&p.id);
        let _ = std::fs::remove_dir_all(&staging);
        let rep = convert(
            f,
            &input,
            &p.id,
            &staging.join("clinical"),
            &demo_dir.join("identity").join(&p.id),
            &staging.join("q"),
        )?;
        std::fs::create_dir_all(&sub)?;
        for t in ["encounters", "diagnoses"] {
            let from = staging.join("clinical").join(t);
            if from.exists() {
                std::fs::rename(&from, sub.join(t))?;
            }
        }
        let rows = |t: &str| rep.rows.iter().find(|r| r.0 == t).map_or(0, |r| r.1);
        lines.push(format!(
            "{} {} {} files → patients {} / encounters {} / diagnoses {} / quarantined {}",
            p.id,
            format_name(f),
            rep.files,
            rows("patients"),
            rows("encounters"),
            rows("diagnoses"),
            rep.quarantined
        ));
    }
    Ok(format!("形式 formats (identity → identity/, clinical → gate):\n             {}", lines.join("\n             ")))
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
    let tmp = std::env::temp_dir().join(format!("kiban-bench-formats-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let cfg = SynthConfig { patients, ..Default::default() };
    // Files: one UKE file, one CSV, one SS-MIX2 storage (prov-a).
    let recs: Vec<Record> = records_from_synth(&generate_chunk(&cfg, 0..patients));
    let mine: Vec<Record> = recs.iter().filter(|r| provider_of(r) == "prov-a").cloned().collect();
    let mut m = Masters::default();
    let uke_dir = tmp.join("uke");
    write_format(InputFormat::Uke, &mine, &uke_dir, 0, &mut m)?;
    let uke_file = uke_dir.join("receipts-00000.uke");
    let ss_dir = tmp.join("ssmix2");
    write_format(InputFormat::Ssmix2, &mine, &ss_dir, 0, &mut m)?;
    let csv_file = tmp.join("labs.csv");
    {
        use std::io::Write;
        let mut w = std::io::BufWriter::new(std::fs::File::create(&csv_file)?);
        writeln!(w, "patient_id,encounter_id,result_date,test_code,test_name,value,unit")?;
        // Repeat the lab rows until the file is big enough to time (≥ 32 MB).
        let labs: Vec<String> = recs
            .iter()
            .filter_map(|r| match r {
                Record::Lab(l) => Some(format!(
                    "{},{},{},{},{},{},{}",
                    l.patient_id, l.encounter_id, l.result_date, l.test_code, l.test_name, l.value, l.unit
                )),
                _ => None,
            })
            .collect();
        let mut bytes = 0usize;
        while bytes < 32 << 20 && !labs.is_empty() {
            for l in &labs {
                writeln!(w, "{l}")?;
                bytes += l.len() + 1;
            }
        }
        w.flush()?;
    }
    let uke_bytes = std::fs::read(&uke_file)?;
    let mut ss_files = Vec::new();
    collect_files(&ss_dir, &mut ss_files);
    ss_files.sort();
    let ss_msgs: Vec<Vec<u8>> = ss_files.iter().map(std::fs::read).collect::<std::io::Result<_>>()?;
    let csv_bytes = std::fs::read(&csv_file)?;

    // UKE: repeat the in-memory file until ≥ 1 s.
    let time = |f: &mut dyn FnMut() -> u64| -> (f64, u64) {
        let t = Instant::now();
        let mut units = 0;
        let mut reps = 0;
        while t.elapsed().as_secs_f64() < 1.0 || reps < 2 {
            units += f();
            reps += 1;
        }
        (t.elapsed().as_secs_f64(), units)
    };
    let (uke_s, uke_b) = time(&mut || {
        let mut c = Counted::default();
        kiban_formats::uke::read(&uke_bytes[..], "b.uke", "prov-a", &m, &mut c).expect("in memory");
        uke_bytes.len() as u64
    });
    let (schema, table) = kiban_formats::tabular::SchemaFile::parse(
        "table = \"labs\"\nprovider_id = \"prov-a\"\n[columns]\npatient_id = \"patient_id\"\nencounter_id = \"encounter_id\"\nresult_date = \"result_date\"\ntest_code = \"test_code\"\ntest_name = \"test_name\"\nvalue = \"value\"\nunit = \"unit\"",
    )
    .map_err(anyhow::Error::msg)?;
    let (csv_s, csv_b) = time(&mut || {
        let mut c = Counted::default();
        kiban_formats::tabular::read_csv(&csv_bytes[..], &schema, table, "labs.csv", &mut c);
        csv_bytes.len() as u64
    });
    let (ss_s, ss_n) = time(&mut || {
        let mut c = Counted::default();
        let o = kiban_formats::hl7::Origin { file: "m", provider_id: "prov-a" };
        ss_msgs.iter().map(|b| kiban_formats::hl7::read_bytes(b, &o, &mut c)).sum()
    });
    // The storage walk (directory tree + file reads) as well, once.
    let t = Instant::now();
    let mut c = Counted::default();
    let walked = kiban_formats::ssmix2::walk(&ss_dir, "prov-a", &mut c);
    let walk_s = t.elapsed().as_secs_f64();

    let rust = [
        ("UKE (Shift_JIS receipts)", uke_b as f64 / uke_s / 1e6, "MB/s"),
        ("CSV (schema-mapped)", csv_b as f64 / csv_s / 1e6, "MB/s"),
        ("SS-MIX2 HL7 (parse+map)", ss_n as f64 / ss_s, "msg/s"),
        ("SS-MIX2 walk (incl. file I/O)", walked.messages as f64 / walk_s, "msg/s"),
    ];
    let py = python_peers(python, &tmp, &uke_file, &csv_file, &ss_dir);
    let peer = |k: usize| py.as_ref().ok().and_then(|v| v.get(k).copied().flatten());
    if ctx.json {
        println!(
            "{}",
            serde_json::json!({
                "uke_mb_s": rust[0].1, "csv_mb_s": rust[1].1, "ssmix2_msg_s": rust[2].1, "ssmix2_walk_msg_s": rust[3].1,
                "python_uke_mb_s": peer(0), "python_csv_mb_s": peer(1), "python_hl7_msg_s": peer(2),
                "uke_bytes": uke_bytes.len(), "csv_bytes": csv_bytes.len(), "ssmix2_messages": ss_msgs.len(),
            })
        );
    } else {
        println!("| bench (1 thread) | kiban | unit | Python peer | peer | ratio |");
        println!("|---|---:|---|---|---:|---:|");
        let names = ["csv.reader + decode('cp932')", "csv.DictReader", "hl7.parse (python-hl7)", "hl7.parse + os.walk"];
        for (k, (what, v, unit)) in rust.iter().enumerate() {
            let p = peer(k.min(2)).filter(|_| k < 3);
            let ratio = p.map_or("—".to_owned(), |p| format!("{:.1}×", v / p));
            let pv = p.map_or("—".to_owned(), |p| format!("{p:.1}"));
            println!("| {what} | {v:.1} | {unit} | {} | {pv} | {ratio} |", if k < 3 { names[k] } else { "—" });
        }
        println!(
            "files: UKE {:.1} MB, CSV {:.1} MB, SS-MIX2 {} messages; targets: UKE/CSV ≥ 200 MB/s, SS-MIX2 ≥ 20,000 msg/s per core",
            uke_bytes.len() as f64 / 1e6,
            csv_bytes.len() as f64 / 1e6,
            ss_msgs.len()
        );
        if let Err(e) = &py {
            println!("Python peers not run: {e}");
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

fn collect_files(d: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(it) = std::fs::read_dir(d) {
        for e in it.flatten() {
            let p = e.path();
            if p.is_dir() {
                collect_files(&p, out);
            } else {
                out.push(p);
            }
        }
    }
}

const PEER_PY: &str = r#"
import csv, io, os, sys, time
import hl7
uke, csvf, ssdir = sys.argv[1], sys.argv[2], sys.argv[3]
def timed(f):
    t = time.perf_counter(); n = 0; reps = 0
    while time.perf_counter() - t < 1.0 or reps < 2:
        n += f(); reps += 1
    return n / (time.perf_counter() - t)
ub = open(uke, 'rb').read()
def u():
    for row in csv.reader(io.StringIO(ub.decode('cp932'), newline='')):
        pass
    return len(ub)
cb = open(csvf, 'rb').read()
def c():
    for row in csv.DictReader(io.StringIO(cb.decode('utf-8'), newline='')):
        pass
    return len(cb)
msgs = []
for root, _, files in os.walk(ssdir):
    for f in files:
        msgs.append(open(os.path.join(root, f), 'rb').read())
def h():
    for m in msgs:
        hl7.parse(m.decode('iso2022_jp'))
    return len(msgs)
print(timed(u) / 1e6, timed(c) / 1e6, timed(h))
"#;

/// Runs the Python peers in a venv under the target dir (created on first use, `hl7` from PyPI).
fn python_peers(python: Option<PathBuf>, tmp: &Path, uke: &Path, csv: &Path, ss: &Path) -> Result<Vec<Option<f64>>> {
    let py = match python {
        Some(p) => p,
        None => {
            let venv = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("target"))
                .join("peers-venv-formats");
            let py = venv.join("bin/python");
            if !py.exists() {
                let ok = std::process::Command::new("python3").arg("-m").arg("venv").arg(&venv).status()?.success();
                if !ok {
                    bail!("python3 -m venv failed");
                }
            }
            let has = std::process::Command::new(&py).args(["-c", "import hl7"]).status()?.success();
            if !has {
                let mut ok = false;
                for _ in 0..3 {
                    if std::process::Command::new(&py).args(["-m", "pip", "install", "-q", "hl7"]).status()?.success() {
                        ok = true;
                        break;
                    }
                }
                if !ok {
                    bail!("pip install hl7 failed");
                }
            }
            py
        }
    };
    let script = tmp.join("peer.py");
    std::fs::write(&script, PEER_PY)?;
    let out = std::process::Command::new(py).arg(&script).arg(uke).arg(csv).arg(ss).output()?;
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("python failed"));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.split_whitespace().map(|x| x.parse().ok()).collect())
}
