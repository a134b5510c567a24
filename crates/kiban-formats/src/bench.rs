//! Throughput of the readers next to the reference Python parsers on the same files, in the same
//! run (`kiban bench formats`, `cargo bench -p kiban-formats`). Speed targets live here, never in
//! tests: UKE and CSV ≥ 200 MB/s, SS-MIX2 ≥ 20,000 messages/s and DICOM metadata ≥ 2,000 files/s per
//! core.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use kiban_model::synth::{SynthConfig, generate_chunk};

use arrow::record_batch::RecordBatch;

use crate::canonical::{BatchSink, Counted, Record, records_from_synth};
use crate::convert::{InputFormat, write_format};
use crate::masters::Masters;

/// The figures of one run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    /// UKE file size, bytes.
    pub uke_bytes: u64,
    /// CSV file size, bytes.
    pub csv_bytes: u64,
    /// SS-MIX2 messages.
    pub ssmix2_messages: u64,
    /// kiban UKE MB/s (one thread), records built into Arrow batches as `convert` does.
    pub uke_mb_s: f64,
    /// kiban CSV MB/s, records built into Arrow batches.
    pub csv_mb_s: f64,
    /// kiban UKE MB/s, records counted only (parse and map).
    pub uke_parse_mb_s: f64,
    /// kiban CSV MB/s, records counted only.
    pub csv_parse_mb_s: f64,
    /// kiban HL7 messages/s (parse and map, files in memory).
    pub ssmix2_msg_s: f64,
    /// kiban storage walk messages/s (directory tree and file reads included).
    pub ssmix2_walk_msg_s: f64,
    /// Python `csv.reader` on the UKE file decoded from cp932, MB/s.
    pub python_uke_mb_s: Option<f64>,
    /// Python `csv.DictReader` on the CSV file, MB/s.
    pub python_csv_mb_s: Option<f64>,
    /// Python `hl7.parse` on the SS-MIX2 messages, messages/s.
    pub python_hl7_msg_s: Option<f64>,
    /// DICOM files timed (the fixture corpus; 0 when it is absent).
    pub dicom_files: u64,
    /// kiban DICOM metadata (Part 10 parse and every attribute decoded to text), files/s.
    pub dicom_files_s: Option<f64>,
    /// pydicom `dcmread(stop_before_pixels=True)` with every value turned to text, files/s.
    pub python_dicom_files_s: Option<f64>,
    /// Why the Python peers did not run, if they did not.
    pub python_error: Option<String>,
}

impl BenchReport {
    /// The Markdown table people read.
    pub fn table(&self) -> String {
        let mut s = String::from(
            "| bench (1 thread, CPU time) | kiban | unit | Python peer | peer | kiban/peer |\n|---|---:|---|---|---:|---:|\n",
        );
        let rows = [
            (
                "UKE receipts (Shift_JIS) → Arrow",
                self.uke_mb_s,
                "MB/s",
                "csv.reader + decode('cp932')",
                self.python_uke_mb_s,
            ),
            (
                "UKE receipts, parse+map only",
                self.uke_parse_mb_s,
                "MB/s",
                "csv.reader + decode('cp932')",
                self.python_uke_mb_s,
            ),
            ("CSV (schema-mapped) → Arrow", self.csv_mb_s, "MB/s", "csv.DictReader", self.python_csv_mb_s),
            ("CSV, parse+map only", self.csv_parse_mb_s, "MB/s", "csv.DictReader", self.python_csv_mb_s),
            ("SS-MIX2 HL7 parse+map", self.ssmix2_msg_s, "msg/s", "hl7.parse (python-hl7)", self.python_hl7_msg_s),
            ("SS-MIX2 storage walk", self.ssmix2_walk_msg_s, "msg/s", "—", None),
        ];
        let dicom = self
            .dicom_files_s
            .map(|v| ("DICOM metadata (every attribute)", v, "files/s", "pydicom.dcmread", self.python_dicom_files_s));
        for (what, v, unit, peer, p) in rows.into_iter().chain(dicom) {
            let (pv, ratio) =
                p.map_or(("—".to_owned(), "—".to_owned()), |p| (format!("{p:.1}"), format!("{:.1}×", v / p)));
            s += &format!("| {what} | {v:.1} | {unit} | {peer} | {pv} | {ratio} |\n");
        }
        s += &format!(
            "files: UKE {:.1} MB, CSV {:.1} MB, SS-MIX2 {} messages, DICOM {} files; targets: UKE/CSV ≥ 200 MB/s, SS-MIX2 ≥ 20,000 msg/s, DICOM ≥ 2,000 files/s per core\n",
            self.uke_bytes as f64 / 1e6,
            self.csv_bytes as f64 / 1e6,
            self.ssmix2_messages,
            self.dicom_files
        );
        if self.dicom_files == 0 {
            s += "DICOM not timed: no fixture corpus (scripts/fetch-fixtures-dicom.sh, or KIBAN_BENCH_DICOM_DIR)\n";
        }
        if let Some(e) = &self.python_error {
            s += &format!("Python peers not run: {e}\n");
        }
        s
    }
}

fn provider_of(r: &Record) -> &str {
    r.provider_id()
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

/// CPU time of this thread in seconds (Linux `schedstat`), so "per core" means per core even on a
/// machine shared with other work; wall-clock time elsewhere.
fn cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse::<f64>().ok().map(|ns| ns / 1e9)
}

/// Runs `f` (returning units done) until it has had at least a second of CPU; returns seconds
/// (thread CPU time when available) and units.
fn timed(f: &mut dyn FnMut() -> u64) -> (f64, u64) {
    let (t, c0) = (Instant::now(), cpu_seconds());
    let used = || match c0 {
        Some(c0) => cpu_seconds().unwrap_or(c0) - c0,
        None => t.elapsed().as_secs_f64(),
    };
    let (mut units, mut reps) = (0, 0);
    while (used() < 1.0 || reps < 2) && t.elapsed().as_secs_f64() < 60.0 {
        units += f();
        reps += 1;
    }
    (used(), units)
}

/// Measures parse throughput (one thread) of UKE, CSV and SS-MIX2 on files made from `patients`
/// synthetic persons, and runs the Python peers on the same files (`python`, or a venv at `venv`
/// made on first use with `hl7` from PyPI).
pub fn run(patients: u64, python: Option<PathBuf>, venv: &Path) -> Result<BenchReport, String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let tmp = std::env::temp_dir().join(format!("kiban-bench-formats-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let cfg = SynthConfig { patients, ..Default::default() };
    let recs: Vec<Record> = records_from_synth(&generate_chunk(&cfg, 0..patients));
    let mine: Vec<Record> = recs.iter().filter(|r| provider_of(r) == "prov-a").cloned().collect();
    let mut m = Masters::default();
    let uke_dir = tmp.join("uke");
    write_format(InputFormat::Uke, &mine, &uke_dir, 0, &mut m).map_err(|x| e(&x))?;
    let uke_file = uke_dir.join("receipts-00000.uke");
    let ss_dir = tmp.join("ssmix2");
    write_format(InputFormat::Ssmix2, &mine, &ss_dir, 0, &mut m).map_err(|x| e(&x))?;
    let csv_file = tmp.join("labs.csv");
    {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&csv_file).map_err(|x| e(&x))?);
        let mut put = |s: &str| w.write_all(s.as_bytes()).map_err(|x| e(&x));
        put("patient_id,encounter_id,result_date,test_code,test_name,value,unit\n")?;
        let labs: Vec<String> = recs
            .iter()
            .filter_map(|r| match r {
                Record::Lab(l) => Some(format!(
                    "{},{},{},{},{},{},{}\n",
                    l.patient_id, l.encounter_id, l.result_date, l.test_code, l.test_name, l.value, l.unit
                )),
                _ => None,
            })
            .collect();
        // Repeat the lab rows until the file is big enough to time (≥ 32 MB).
        let mut bytes = 0usize;
        while bytes < 32 << 20 && !labs.is_empty() {
            for l in &labs {
                put(l)?;
                bytes += l.len();
            }
        }
        w.flush().map_err(|x| e(&x))?;
    }
    let uke_bytes = std::fs::read(&uke_file).map_err(|x| e(&x))?;
    let mut ss_files = Vec::new();
    collect_files(&ss_dir, &mut ss_files);
    ss_files.sort();
    let ss_msgs: Vec<Vec<u8>> =
        ss_files.iter().map(std::fs::read).collect::<std::io::Result<_>>().map_err(|x| e(&x))?;
    let csv_bytes = std::fs::read(&csv_file).map_err(|x| e(&x))?;

    // As `convert` does it: records copied into Arrow builders, 64 Ki rows a batch (the batches are
    // dropped here instead of written to Parquet).
    let arrow_sink = || BatchSink::new(64 * 1024, |_, b: RecordBatch| drop(b), |_| {});
    let (uke_s, uke_b) = timed(&mut || {
        let mut c = arrow_sink();
        crate::uke::read(&uke_bytes[..], "b.uke", "prov-a", &m, &mut c).expect("in memory");
        c.finish();
        uke_bytes.len() as u64
    });
    let (uke_ps, uke_pb) = timed(&mut || {
        let mut c = Counted::default();
        crate::uke::read(&uke_bytes[..], "b.uke", "prov-a", &m, &mut c).expect("in memory");
        uke_bytes.len() as u64
    });
    let (schema, table) = crate::tabular::SchemaFile::parse(
        "table = \"labs\"\nprovider_id = \"prov-a\"\n[columns]\npatient_id = \"patient_id\"\nencounter_id = \"encounter_id\"\nresult_date = \"result_date\"\ntest_code = \"test_code\"\ntest_name = \"test_name\"\nvalue = \"value\"\nunit = \"unit\"",
    )?;
    let (csv_s, csv_b) = timed(&mut || {
        let mut c = arrow_sink();
        crate::tabular::read_csv(&csv_bytes[..], &schema, table, "labs.csv", &mut c);
        c.finish();
        csv_bytes.len() as u64
    });
    let (csv_ps, csv_pb) = timed(&mut || {
        let mut c = Counted::default();
        crate::tabular::read_csv(&csv_bytes[..], &schema, table, "labs.csv", &mut c);
        csv_bytes.len() as u64
    });
    let (ss_s, ss_n) = timed(&mut || {
        let mut c = Counted::default();
        let o = crate::hl7::Origin { file: "m", provider_id: "prov-a" };
        ss_msgs.iter().map(|b| crate::hl7::read_bytes(b, &o, &mut c)).sum()
    });
    // DICOM: the fixture corpus (KIBAN_BENCH_DICOM_DIR, else <target>/fixtures/dicom), files in memory.
    let dicom_dir = std::env::var_os("KIBAN_BENCH_DICOM_DIR").map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| PathBuf::from("target"), PathBuf::from)
            .join("fixtures/dicom")
    });
    let mut dicom_paths = Vec::new();
    collect_files(&dicom_dir, &mut dicom_paths);
    dicom_paths.sort();
    let dicom: Vec<Vec<u8>> = dicom_paths.iter().filter_map(|p| std::fs::read(p).ok()).collect();
    let dicom_files_s = (!dicom.is_empty()).then(|| {
        let (s, n) = timed(&mut || {
            for b in &dicom {
                if let Ok((f, px)) = crate::dicom::parse::read_metadata(b) {
                    std::hint::black_box(crate::dicom::metadata_rows("f", &f, px));
                }
            }
            dicom.len() as u64
        });
        n as f64 / s
    });
    let list = tmp.join("dicom-files.txt");
    let names: Vec<String> = dicom_paths.iter().map(|p| p.display().to_string()).collect();
    std::fs::write(&list, names.join("\n")).map_err(|x| e(&x))?;
    let (t, c0) = (Instant::now(), cpu_seconds());
    let mut c = Counted::default();
    let walked = crate::ssmix2::walk(&ss_dir, "prov-a", &mut c);
    let walk_s = c0.and_then(|c0| Some(cpu_seconds()? - c0)).unwrap_or_else(|| t.elapsed().as_secs_f64());
    let py = python_peers(python, venv, &tmp, &[&uke_file, &csv_file, &ss_dir, &list]);
    let _ = std::fs::remove_dir_all(&tmp);
    let peer = |k: usize| py.as_ref().ok().and_then(|v| v.get(k).copied().flatten());
    Ok(BenchReport {
        uke_bytes: uke_bytes.len() as u64,
        csv_bytes: csv_bytes.len() as u64,
        ssmix2_messages: ss_msgs.len() as u64,
        uke_mb_s: uke_b as f64 / uke_s / 1e6,
        csv_mb_s: csv_b as f64 / csv_s / 1e6,
        uke_parse_mb_s: uke_pb as f64 / uke_ps / 1e6,
        csv_parse_mb_s: csv_pb as f64 / csv_ps / 1e6,
        ssmix2_msg_s: ss_n as f64 / ss_s,
        ssmix2_walk_msg_s: walked.messages as f64 / walk_s,
        python_uke_mb_s: peer(0),
        python_csv_mb_s: peer(1),
        python_hl7_msg_s: peer(2),
        dicom_files: dicom.len() as u64,
        dicom_files_s,
        python_dicom_files_s: peer(3).filter(|_| !dicom.is_empty()),
        python_error: py.err(),
    })
}

const PEER_PY: &str = r#"
import csv, io, os, sys, time
import hl7, pydicom
uke, csvf, ssdir, dlist = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
def timed(f):
    # Thread CPU time, like the Rust side: per-core figures on a shared machine.
    t = time.thread_time(); w = time.perf_counter(); n = 0; reps = 0
    while (time.thread_time() - t < 1.0 or reps < 2) and time.perf_counter() - w < 60:
        n += f(); reps += 1
    return n / (time.thread_time() - t)
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
        # Python's iso2022_jp lacks the IBM extension kanji (髙, 﨑) kiban decodes; replace them.
        hl7.parse(m.decode('iso2022_jp', errors='replace'))
    return len(msgs)
dcm = [open(p, 'rb').read() for p in open(dlist).read().split('\n') if p]
def d():
    # As kiban's metadata table: the data set without pixels, every value turned to text.
    for b in dcm:
        try:
            ds = pydicom.dcmread(io.BytesIO(b), stop_before_pixels=True, force=True)
            for el in ds.iterall():
                str(el.value)
        except Exception:
            pass
    return len(dcm)
print(timed(u) / 1e6, timed(c) / 1e6, timed(h), timed(d) if dcm else 0)
"#;

fn python_peers(python: Option<PathBuf>, venv: &Path, tmp: &Path, args: &[&Path]) -> Result<Vec<Option<f64>>, String> {
    let e = |e: std::io::Error| e.to_string();
    let py = match python {
        Some(p) => p,
        None => {
            let py = venv.join("bin/python");
            if !py.exists() && !Command::new("python3").arg("-m").arg("venv").arg(venv).status().map_err(e)?.success() {
                return Err("python3 -m venv failed".into());
            }
            if !Command::new(&py).args(["-c", "import hl7, pydicom"]).status().map_err(e)?.success() {
                // pip meets transient connection resets: retry.
                let ok = (0..3).any(|_| {
                    Command::new(&py)
                        .args(["-m", "pip", "install", "-q", "hl7", "pydicom"])
                        .status()
                        .is_ok_and(|s| s.success())
                });
                if !ok {
                    return Err("pip install hl7 pydicom failed".into());
                }
            }
            py
        }
    };
    let script = tmp.join("peer.py");
    std::fs::write(&script, PEER_PY).map_err(e)?;
    let out = Command::new(py).arg(&script).args(args).output().map_err(e)?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("python failed").to_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout).split_whitespace().map(|x| x.parse().ok()).collect())
}
