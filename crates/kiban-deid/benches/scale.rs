//! Scale benchmark (not a test): a synthetic admissions extract (8 QIs: age, sex, prefecture,
//! secondary area, admission date, ICD-10, department, encounter type) of `KIBAN_SCALE_ROWS` rows
//! (default 1,000,000; several sizes comma-separated), k=10 with 5% suppression. The extract is
//! written once as Parquet (streamed, under `KIBAN_SCALE_DIR`, default the system temp dir), then a
//! fresh process (this bench re-executing itself) anonymizes it Parquet → Parquet, so the time is
//! end to end and the peak RSS is that of the run alone.
//! Run: `CARGO_TARGET_DIR=target/h-deid cargo bench -p kiban-deid --bench scale`; wall time, CPU
//! time (user + system, all threads) and the CPU time of each stage (pass 1 / search / pass 2) are
//! printed, so a loaded machine can still be compared. `KIBAN_SCALE_BUDGET=N` sets the tuple budget.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use kiban_deid::{Input, Output, Policy, Progress, RunOptions, anonymize};
use rand::{RngExt, SeedableRng};

const POLICY: &str = r#"
version = 1
name = "scale"
[privacy]
k = 10
suppression_limit = 0.05
[hierarchies]
age = { builder = "age" }
flat = { builder = "flat" }
area = { builder = "prefix", keep = [2] }
date = { builder = "date" }
icd = { builder = "icd10", missing = "star" }
[[columns]]
name = "age"
role = "quasi_identifier"
hierarchy = "age"
[[columns]]
name = "sex"
role = "quasi_identifier"
hierarchy = "flat"
[[columns]]
name = "prefecture"
role = "quasi_identifier"
hierarchy = "flat"
[[columns]]
name = "secondary_area"
role = "quasi_identifier"
hierarchy = "area"
[[columns]]
name = "admission_date"
role = "quasi_identifier"
hierarchy = "date"
[[columns]]
name = "icd10"
role = "quasi_identifier"
hierarchy = "icd"
[[columns]]
name = "department"
role = "quasi_identifier"
hierarchy = "flat"
[[columns]]
name = "encounter_type"
role = "quasi_identifier"
hierarchy = "flat"
"#;

fn peak_rss_mb() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse::<f64>().ok().map(|kb| kb / 1024.0)
}

/// User + system CPU seconds of this process so far (`/proc/self/stat`, clock ticks of 1/100 s):
/// on a shared machine the wall time is noisy, the CPU time less so.
fn cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Writes the synthetic extract of `rows` rows to `path` (Parquet), one batch at a time.
fn generate(rows: usize, path: &Path) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let icd: Vec<String> =
        (0..300).map(|i| format!("{}{:02}.{}", (b'A' + (i % 26) as u8) as char, i % 100, i % 10)).collect();
    let depts = ["内科", "外科", "整形外科", "小児科", "眼科", "皮膚科", "精神科", "循環器内科"];
    let schema = Arc::new(Schema::new(
        ["age", "sex", "prefecture", "secondary_area", "admission_date", "icd10", "department", "encounter_type"]
            .map(|n| Field::new(n, DataType::Utf8, false))
            .to_vec(),
    ));
    let partial = path.with_extension("partial");
    let file = std::fs::File::create(&partial).expect("create");
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .build();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, schema.clone(), Some(props)).expect("writer");
    let mut left = rows;
    while left > 0 {
        let n = left.min(65_536);
        left -= n;
        let mut b: Vec<StringBuilder> = (0..8).map(|_| StringBuilder::new()).collect();
        for _ in 0..n {
            let u: f64 = rng.random();
            let pref = rng.random_range(1..=47u32);
            b[0].append_value(((u.sqrt() * 100.0) as u32).to_string());
            b[1].append_value(if rng.random_bool(0.5) { "F" } else { "M" });
            b[2].append_value(format!("{pref:02}"));
            b[3].append_value(format!("{pref:02}{:02}", rng.random_range(1..=8)));
            b[4].append_value(format!(
                "{}-{:02}-{:02}",
                rng.random_range(2023..=2024),
                rng.random_range(1..=12),
                rng.random_range(1..=28)
            ));
            b[5].append_value(&icd[(rng.random::<f64>().powi(2) * 300.0) as usize % 300]);
            b[6].append_value(depts[rng.random_range(0..depts.len())]);
            b[7].append_value(if rng.random_bool(0.3) { "入院" } else { "外来" });
        }
        let cols: Vec<ArrayRef> = b.iter_mut().map(|x| Arc::new(x.finish()) as ArrayRef).collect();
        w.write(&RecordBatch::try_new(schema.clone(), cols).expect("batch")).expect("write");
    }
    w.close().expect("close");
    std::fs::rename(&partial, path).expect("rename");
}

/// One run in this process: anonymize `input` into `output` and print the figures.
fn one_run(input: &Path, output: &Path, rows: usize) {
    let policy = Policy::from_toml(POLICY, Path::new("."), &BTreeMap::new()).expect("policy");
    let t = Instant::now();
    // CPU seconds when the search starts and when pass 2 writes its first batch: the phases' CPU time.
    let marks: Arc<std::sync::Mutex<(Option<f64>, Option<f64>)>> = Arc::default();
    let m = marks.clone();
    let opts = RunOptions {
        progress: Some(Box::new(move |p| {
            let mut m = m.lock().expect("marks");
            match p {
                Progress::Searching(_) if m.0.is_none() => m.0 = cpu_seconds(),
                Progress::Written { .. } if m.1.is_none() => m.1 = cpu_seconds(),
                _ => {}
            }
        })),
        // KIBAN_SCALE_BUDGET: the tuple budget (default the engine's), to show the fold at small sizes.
        tuple_budget: std::env::var("KIBAN_SCALE_BUDGET")
            .ok()
            .map(|b| b.parse().expect("KIBAN_SCALE_BUDGET: a number")),
        ..Default::default()
    };
    let cpu0 = cpu_seconds().unwrap_or(0.0);
    let out = anonymize(&policy, &Input::from_path(input), &Output::from_path(output), &opts).expect("anonymize");
    let cpu_end = cpu_seconds().unwrap_or(0.0);
    let (s0, w0) = *marks.lock().expect("marks");
    let (s0, w0) = (s0.unwrap_or(cpu0), w0.unwrap_or(cpu_end));
    let secs = t.elapsed().as_secs_f64();
    let r = &out.report;
    println!(
        "{:>11} {:>9.1} {:>9.1} {:>11.0} {:>11} {:>9.1} {:>11} {:>9} {:<22} {:>7.4} {:>10} {:>9}",
        rows,
        secs,
        cpu_end - cpu0,
        rows as f64 / secs,
        format!("{:.1}/{:.1}/{:.1}", s0 - cpu0, w0 - s0, cpu_end - w0),
        r.search.millis / 1000.0,
        r.search.distinct_tuples,
        format!("{}+{}/{}", r.search.evaluated, r.search.projected, r.search.lattice_size),
        format!("{:?}", r.levels.iter().map(|(_, l)| *l).collect::<Vec<_>>()),
        r.information_loss,
        r.records_suppressed,
        peak_rss_mb().map_or("n/a".into(), |m| format!("{m:.0}"))
    );
    if !r.search.folded.is_empty() {
        println!(
            "{:>11} tuple budget folded {:?}; optimal {}; a lower node might reach loss {:?}",
            "", r.search.folded, r.search.optimal, r.search.unexplored_bound
        );
    }
}

fn main() {
    if let (Ok(i), Ok(o), Ok(n)) =
        (std::env::var("KIBAN_SCALE_IN"), std::env::var("KIBAN_SCALE_OUT"), std::env::var("KIBAN_SCALE_N"))
    {
        one_run(Path::new(&i), Path::new(&o), n.parse().expect("rows"));
        return;
    }
    let sizes: Vec<usize> = std::env::var("KIBAN_SCALE_ROWS")
        .unwrap_or_else(|_| "1000000".into())
        .split(',')
        .map(|x| x.trim().parse().expect("KIBAN_SCALE_ROWS: numbers"))
        .collect();
    let dir = std::env::var_os("KIBAN_SCALE_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    println!("kiban-deid scale: synthetic admissions, 8 QIs, k=10, 5% suppression, Parquet → Parquet, fresh process");
    println!(
        "{:>11} {:>9} {:>9} {:>11} {:>11} {:>9} {:>11} {:>9} {:<22} {:>7} {:>10} {:>9}",
        "rows",
        "total s",
        "cpu s",
        "rows/s",
        "cpu p1/s/p2",
        "search s",
        "tuples",
        "nodes",
        "levels",
        "loss",
        "suppressed",
        "peak MB"
    );
    for rows in sizes {
        let input = dir.join(format!("kiban-scale-{rows}.parquet"));
        if !input.exists() {
            let t = Instant::now();
            generate(rows, &input);
            eprintln!("generated {rows} rows in {:.1} s: {}", t.elapsed().as_secs_f64(), input.display());
        }
        let output = dir.join(format!("kiban-scale-{rows}.out.parquet"));
        let st = std::process::Command::new(std::env::current_exe().expect("exe"))
            .env("KIBAN_SCALE_IN", &input)
            .env("KIBAN_SCALE_OUT", &output)
            .env("KIBAN_SCALE_N", rows.to_string())
            .status()
            .expect("re-exec");
        assert!(st.success(), "run of {rows} rows failed");
        let _ = std::fs::remove_file(&output);
    }
}
