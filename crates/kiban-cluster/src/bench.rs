//! The passes' throughput: the same three passes on the same data, in-process and on a cluster.

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::plans::{gate_pass, qi_frequency, tokenize_pass};
use crate::runner::{FilePlan, Output, Runner};
use crate::seal::ClusterSecret;
use crate::udf::{GateUdf, TokenUdf};
use crate::{Result, io_at, synth};

/// One pass's figure on one engine.
#[derive(Debug, Clone, Serialize)]
pub struct PassFigure {
    /// `gate`, `tokenize` or `qi_frequency`.
    pub pass: &'static str,
    /// `in-process` or the cluster URL.
    pub engine: String,
    /// Input rows.
    pub rows: u64,
    /// Output rows.
    pub output_rows: u64,
    /// Wall-clock seconds (plan, run, ordered write).
    pub seconds: f64,
    /// Input rows per second.
    pub rows_per_s: f64,
    /// This process's CPU seconds (user + system) during the pass: the work itself in-process; on a
    /// cluster only the submitting host's share (fetching and writing the output).
    pub cpu_seconds: f64,
    /// This process's peak resident memory during the pass, in bytes (Linux; 0 if unknown). On a
    /// cluster it is the submitting host's; the executors' is their own.
    pub peak_rss_bytes: u64,
}

impl PassFigure {
    /// One human-readable line for progress on stderr.
    pub fn progress_line(&self) -> String {
        format!(
            "done: {} on {}: {:.1} s, {:.2}M rows/s, {:.1} CPU s, peak {:.2} GB",
            self.pass,
            self.engine,
            self.seconds,
            self.rows_per_s / 1e6,
            self.cpu_seconds,
            self.peak_rss_bytes as f64 / 1e9
        )
    }
}

/// The pseudonym key of a benchmark or test job (fixed, so tokens can be checked).
pub const BENCH_TOKEN_KEY: [u8; 32] = [0x5a; 32];

/// Runs the three passes over the synthetic claims at `input` (of `rows` rows) with `runner`, writing
/// datasets `gate`, `tokenize`, `qi_frequency` under `out` (created; must not hold them yet).
pub async fn run_passes(
    runner: &Runner,
    secret: &ClusterSecret,
    input: &Path,
    rows: u64,
    out: &Path,
) -> Result<Vec<PassFigure>> {
    let engine = runner.cluster_url().unwrap_or("in-process").to_owned();
    let job = format!("bench-{}", std::process::id());
    let mut figures = Vec::new();
    // Each pass's CPU and peak memory count from just before its plan runs (not the job set-up:
    // the DuckDB peer's facts table is made outside its timing too).
    let start = || {
        reset_peak_rss();
        cpu_seconds()
    };
    let mut record = |pass: &'static str, cpu0: f64, r: crate::runner::RunReport| {
        let f = PassFigure {
            cpu_seconds: cpu_seconds() - cpu0,
            pass,
            engine: engine.clone(),
            rows,
            output_rows: r.rows,
            seconds: r.seconds,
            rows_per_s: rows as f64 / r.seconds.max(1e-9),
            peak_rss_bytes: peak_rss().unwrap_or(0),
        };
        // A long run that fails in a later pass still leaves this one's figure in the log.
        eprintln!("{}", f.progress_line());
        figures.push(f);
    };

    let facts = synth::gate_facts(rows);
    let gate = GateUdf::for_runner(runner, secret, &format!("{job}-gate"), &facts, input)?.into_udf();
    drop(facts);
    let plan: Arc<FilePlan> = Arc::new(move |df| gate_pass(df, gate.clone(), "provision_date"));
    let cpu0 = start();
    record("gate", cpu0, runner.write_in_input_order(input, plan, &Output::new(&out.join("gate"), "gate")).await?);

    let token = TokenUdf::new(secret, &format!("{job}-token"), &BENCH_TOKEN_KEY)?.into_udf();
    let plan: Arc<FilePlan> = Arc::new(move |df| tokenize_pass(df, token.clone(), &["patient_id", "person_key"]));
    let o = Output::new(&out.join("tokenize"), "tokenize");
    let cpu0 = start();
    record("tokenize", cpu0, runner.write_in_input_order(input, plan, &o).await?);

    let plan = qi_frequency(runner.read_parquet(input).await?, &synth::QI)?;
    let o = Output::new(&out.join("qi_frequency"), "qi_frequency");
    let cpu0 = start();
    record("qi_frequency", cpu0, runner.write(plan, &synth::QI, &o).await?);
    Ok(figures)
}

/// The parse→Parquet stage: the synthetic claims as CSV files at `input` (of `rows` rows), parsed to
/// typed Parquet parts in input order (dataset `parse` under `out`).
pub async fn run_parse(runner: &Runner, input: &Path, rows: u64, out: &Path) -> Result<PassFigure> {
    reset_peak_rss();
    let cpu0 = cpu_seconds();
    let r = runner.parse_csv_in_input_order(input, synth::schema(), &Output::new(&out.join("parse"), "parse")).await?;
    Ok(PassFigure {
        cpu_seconds: cpu_seconds() - cpu0,
        pass: "parse",
        engine: runner.cluster_url().unwrap_or("in-process").to_owned(),
        rows,
        output_rows: r.rows,
        seconds: r.seconds,
        rows_per_s: rows as f64 / r.seconds.max(1e-9),
        peak_rss_bytes: peak_rss().unwrap_or(0),
    })
}

/// A report as JSON without its two timing fields (`millis` of the run and of the search); the rest
/// compares byte for byte between two runs whose frequency pass gave its tuples in the same order
/// (any [`Runner`], or the engine's own DataFusion pass: each sorts the tuples before coding them).
pub fn report_without_timings(r: &kiban_deid::Report) -> serde_json::Value {
    let mut v = serde_json::to_value(r).expect("a report serializes");
    if let Some(o) = v.as_object_mut() {
        o.remove("millis");
    }
    if let Some(o) = v["search"].as_object_mut() {
        o.remove("millis");
    }
    v
}

/// [`report_without_timings`] with every fraction to 10 significant digits: against the engine's
/// streaming pass 1, which codes tuples in order of first appearance, kiban-deid's search sums the
/// loss over the tuples in another order, which moves the last bits.
pub fn report_to_10_digits(r: &kiban_deid::Report) -> serde_json::Value {
    fn round(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Number(n) if n.is_f64() => {
                let x = n.as_f64().expect("f64");
                if let Some(r) = serde_json::Number::from_f64(format!("{x:.9e}").parse().expect("float")) {
                    *n = r;
                }
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(round),
            serde_json::Value::Object(o) => o.values_mut().for_each(round),
            _ => {}
        }
    }
    let mut v = report_without_timings(r);
    round(&mut v);
    v
}

/// The seed of the run keys of a benchmark anonymization (so both engines' outputs compare).
pub const BENCH_KEY_SEED: [u8; 32] = [0x6b; 32];

/// Anonymizes the one-file synthetic claims `input` (of `rows` rows) with [`synth::CLAIMS_POLICY`]
/// (k = 10 over eight quasi-identifiers, tokens, re-keying) on `runner`; writes `output.parquet` and
/// `report.json` (without timings) under `out`. Figures: `anonymize` (end to end), and its stages
/// `anonymize_count` (pass 1 until the search starts), `anonymize_search`, `anonymize_apply` (pass 2
/// and the write; on the runner).
pub async fn run_anonymize(
    runner: std::sync::Arc<Runner>,
    secret: std::sync::Arc<ClusterSecret>,
    input: &Path,
    rows: u64,
    out: &Path,
) -> Result<Vec<PassFigure>> {
    let io = |source| crate::ClusterError::Io { path: out.display().to_string(), source };
    std::fs::create_dir_all(out).map_err(io)?;
    let policy_file = out.join("policy.toml");
    std::fs::write(&policy_file, synth::CLAIMS_POLICY).map_err(io)?;
    let policy = kiban_deid::Policy::load(&policy_file)?;
    std::fs::remove_file(&policy_file).map_err(io)?;
    let engine = runner.cluster_url().unwrap_or("in-process").to_owned();
    // When the search started: pass 2 starts when it ends (the report says how long it took).
    let searching: std::sync::Arc<std::sync::Mutex<Option<std::time::Instant>>> = Default::default();
    let mark = searching.clone();
    let job = crate::anonymize::Job {
        policy,
        input: input.to_owned(),
        output: out.join("output.parquet"),
        progress: Some(Box::new(move |p| {
            if let kiban_deid::Progress::Searching(_) = p {
                *mark.lock().expect("no panics under the lock") = Some(std::time::Instant::now());
            }
        })),
        key_seed: Some(BENCH_KEY_SEED),
        tuple_budget: None,
    };
    reset_peak_rss();
    let cpu0 = cpu_seconds();
    let t = std::time::Instant::now();
    let ran = crate::anonymize::run(runner, secret, job).await?;
    let peak = peak_rss().unwrap_or(0);
    let cpu = cpu_seconds() - cpu0;
    let end = std::time::Instant::now();
    let seconds = (end - t).as_secs_f64();
    let r = &ran.outcome.report;
    let search_start = searching.lock().expect("no panics under the lock").unwrap_or(t);
    let count_s = (search_start - t).as_secs_f64();
    let apply_s = ((end - search_start).as_secs_f64() - r.search.millis / 1000.0).max(1e-9);
    let report = serde_json::to_vec_pretty(&report_without_timings(r)).expect("JSON");
    std::fs::write(out.join("report.json"), report).map_err(io)?;
    let fig = |pass, seconds: f64| PassFigure {
        pass,
        engine: engine.clone(),
        rows,
        output_rows: r.records_out,
        seconds,
        rows_per_s: rows as f64 / seconds.max(1e-9),
        cpu_seconds: if pass == "anonymize" { cpu } else { 0.0 },
        peak_rss_bytes: peak,
    };
    let mut figs = vec![fig("anonymize", seconds), fig("anonymize_count", count_s), fig("anonymize_apply", apply_s)];
    figs.push(PassFigure {
        output_rows: r.search.distinct_tuples,
        ..fig("anonymize_search", r.search.millis / 1000.0)
    });
    if !ran.pass2_on_runner {
        return Err(crate::ClusterError::Input {
            field: "anonymize".into(),
            rule: "the benchmark policy's pass 2 should run on the runner".into(),
        });
    }
    Ok(figs)
}

/// Whether two datasets hold the same files with the same bytes (manifests included). Files are
/// compared a chunk at a time: at 100 M rows a dataset is several GB.
pub fn same_bytes(a: &Path, b: &Path) -> Result<bool> {
    use std::io::Read;
    fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            match f.read(&mut buf[n..])? {
                0 => break,
                r => n += r,
            }
        }
        Ok(n)
    }
    let names = |d: &Path| -> Result<Vec<String>> {
        let mut v = Vec::new();
        for e in std::fs::read_dir(d).map_err(io_at(d))? {
            v.push(e.map_err(io_at(d))?.file_name().to_string_lossy().into_owned());
        }
        v.sort();
        Ok(v)
    };
    let (na, nb) = (names(a)?, names(b)?);
    if na != nb {
        return Ok(false);
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    for n in &na {
        let (pa, pb) = (a.join(n), b.join(n));
        let mut fa = std::fs::File::open(&pa).map_err(io_at(&pa))?;
        let mut fb = std::fs::File::open(&pb).map_err(io_at(&pb))?;
        loop {
            let ra = read_full(&mut fa, &mut ba).map_err(io_at(&pa))?;
            let rb = read_full(&mut fb, &mut bb).map_err(io_at(&pb))?;
            if ra != rb || ba[..ra] != bb[..rb] {
                return Ok(false);
            }
            if ra == 0 {
                break;
            }
        }
    }
    Ok(true)
}

/// This process's CPU time so far (user + system, all threads), in seconds (Linux; 0 if unknown).
pub fn cpu_seconds() -> f64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // Fields after the command name (which may hold spaces) start at field 3; utime and stime are 14, 15.
    let rest = s.rsplit_once(')').map_or("", |r| r.1);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Returns freed heap to the system (glibc keeps it otherwise, and it would count in the next
/// pass's peak).
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap pages; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Starts a new peak for [`peak_rss`] (Linux: `5` to `/proc/self/clear_refs`; else nothing).
pub fn reset_peak_rss() {
    // Freed heap of the set-up (e.g. the gate's facts) must not count in the pass's peak.
    trim_heap();
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// This process's peak resident memory in bytes (Linux `VmHWM`), if known.
pub fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The DuckDB peer: the same gate (a join with the facts and the same verdict rules, as of each
/// row's provision date; rows kept in input order, DuckDB's default, as kiban's gate pass keeps them)
/// and the same QI group-by (sorted, as kiban's), each written to zstd Parquet.
const DUCKDB_PEER: &str = r#"
import duckdb, json, resource, sys, time
inp, facts, out, waiting, provider, csv = sys.argv[1:7]
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
res = {}
def timed(name, sql):
    r0, t = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    con.execute(sql)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    res[name] = [time.perf_counter() - t, (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)]
if csv:
    timed("parse", f"""COPY (SELECT * FROM read_csv('{csv}/*.csv', header = true, columns = {{
      'claim_id': 'VARCHAR', 'provider_id': 'VARCHAR', 'patient_id': 'VARCHAR', 'person_key': 'BIGINT',
      'provision_date': 'DATE', 'sex': 'VARCHAR', 'birth_year': 'INTEGER', 'municipality': 'VARCHAR',
      'department': 'VARCHAR', 'encounter_type': 'VARCHAR', 'insurer_kind': 'VARCHAR', 'outcome': 'VARCHAR',
      'diagnosis': 'VARCHAR', 'points': 'BIGINT'}})) TO '{out}/parse.parquet' (FORMAT parquet, COMPRESSION zstd)""")
timed("gate", f"""COPY (
  SELECT c.*, CASE
    WHEN c.provider_id <> '{provider}' THEN 'provider_mismatch'
    WHEN f.optout_from IS NOT NULL AND f.optout_from <= c.provision_date THEN 'opted_out'
    WHEN f.first_notice IS NULL OR f.first_notice > c.provision_date THEN
      CASE WHEN f.optout_from IS NOT NULL AND f.optout_from <= c.provision_date THEN 'not_notified' ELSE 'unknown_person' END
    WHEN date_diff('day', f.first_notice, c.provision_date) < {waiting} THEN 'notice_too_recent'
    ELSE 'admitted' END AS gate_verdict
  FROM read_parquet('{inp}/*.parquet') c LEFT JOIN read_parquet('{facts}') f USING (patient_id)
  ) TO '{out}/gate.parquet' (FORMAT parquet, COMPRESSION zstd)""")
timed("qi_frequency", f"""COPY (
  SELECT provision_date, sex, birth_year, municipality, department, encounter_type, insurer_kind, outcome,
    diagnosis, count(*) AS n
  FROM read_parquet('{inp}/*.parquet') GROUP BY ALL ORDER BY ALL
) TO '{out}/qi.parquet' (FORMAT parquet, COMPRESSION zstd)""")
print(json.dumps(res))
"#;

/// Runs the DuckDB peer with `python` (which has the `duckdb` package) on the same input (and the
/// same claims as CSV at `csv`, for the parse stage); returns (pass, wall seconds, CPU seconds) for
/// `parse` (with `csv`), `gate` and `qi_frequency`.
pub fn duckdb_peer(
    python: &Path,
    input: &Path,
    csv: Option<&Path>,
    rows: u64,
    work: &Path,
) -> Result<Vec<(String, f64, f64)>> {
    use datafusion::arrow::array::{Date32Array, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    std::fs::create_dir_all(work).map_err(io_at(work))?;
    // The facts as a table: first notice and first opt-out in force per patient (the synthetic facts
    // have at most one of each and no withdrawals, so this is the same rule).
    let facts = synth::gate_facts(rows);
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("date");
    let days = |d: &chrono::NaiveDate| (*d - epoch).num_days() as i32;
    let (mut ids, mut notice, mut optout) = (vec![], vec![], vec![]);
    for (id, p) in &facts.persons {
        ids.push(id.as_str());
        notice.push(p.notices.iter().min().map(days));
        optout.push(p.optouts.iter().map(|o| o.1).min().as_ref().map(days));
    }
    let schema = std::sync::Arc::new(Schema::new(vec![
        Field::new("patient_id", DataType::Utf8, false),
        Field::new("first_notice", DataType::Date32, true),
        Field::new("optout_from", DataType::Date32, true),
    ]));
    let b = RecordBatch::try_new(
        schema.clone(),
        vec![
            std::sync::Arc::new(StringArray::from(ids)),
            std::sync::Arc::new(Date32Array::from(notice)),
            std::sync::Arc::new(Date32Array::from(optout)),
        ],
    )
    .map_err(|e| crate::df("facts table")(e.into()))?;
    let fpath = work.join("facts.parquet");
    let f = std::fs::File::create(&fpath).map_err(io_at(&fpath))?;
    let mut w = datafusion::parquet::arrow::ArrowWriter::try_new(f, schema, None)
        .map_err(|e| crate::df("facts table")(e.into()))?;
    w.write(&b).map_err(|e| crate::df("facts table")(e.into()))?;
    w.close().map_err(|e| crate::df("facts table")(e.into()))?;
    let (waiting_days, provider_id) = (facts.waiting_days, facts.provider_id.clone());
    // At 100 M rows the facts take GBs; DuckDB gets the machine's memory as it would alone.
    drop((b, facts));
    trim_heap();
    let out = std::process::Command::new(python)
        .arg("-c")
        .arg(DUCKDB_PEER)
        .arg(input)
        .arg(&fpath)
        .arg(work)
        .arg(waiting_days.to_string())
        .arg(&provider_id)
        .arg(csv.map(|c| c.as_os_str().to_owned()).unwrap_or_default())
        .output()
        .map_err(io_at(python))?;
    if !out.status.success() {
        use std::os::unix::process::ExitStatusExt;
        let how = match out.status.signal() {
            // The kernel's OOM killer sends SIGKILL and leaves stderr empty.
            Some(9) => "killed by SIGKILL (out of memory?)".to_owned(),
            Some(sig) => format!("killed by signal {sig}"),
            None => format!("exited with {}", out.status),
        };
        return Err(crate::ClusterError::Input {
            field: "duckdb peer".into(),
            rule: format!("{how}: {}", String::from_utf8_lossy(&out.stderr).trim()),
        });
    }
    // The last line is the figures (anything DuckDB printed before it is not).
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().rev().find(|l| l.trim_start().starts_with('{')).unwrap_or("");
    let v: std::collections::BTreeMap<String, (f64, f64)> = serde_json::from_str(last)
        .map_err(|e| crate::ClusterError::Input { field: "duckdb peer output".into(), rule: e.to_string() })?;
    Ok(v.into_iter().map(|(k, (wall, cpu))| (k, wall, cpu)).collect())
}

#[cfg(test)]
mod tests {
    use super::same_bytes;

    #[test]
    fn s4_same_bytes_finds_a_change_past_the_first_chunk_a_shorter_file_and_an_extra_file() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        let big: Vec<u8> = (0..(3usize << 20) + 17).map(|i| (i % 251) as u8).collect();
        for dir in [&a, &b] {
            std::fs::create_dir(dir).unwrap();
            std::fs::write(dir.join("part-00000-0000.parquet"), &big).unwrap();
            std::fs::write(dir.join("manifest.json"), b"{}").unwrap();
        }
        assert!(same_bytes(&a, &b).unwrap());
        let mut changed = big.clone();
        changed[(2 << 20) + 5] ^= 1;
        std::fs::write(b.join("part-00000-0000.parquet"), &changed).unwrap();
        assert!(!same_bytes(&a, &b).unwrap(), "a byte in the third chunk");
        std::fs::write(b.join("part-00000-0000.parquet"), &big[..big.len() - 1]).unwrap();
        assert!(!same_bytes(&a, &b).unwrap(), "one byte shorter");
        std::fs::write(b.join("part-00000-0000.parquet"), &big).unwrap();
        assert!(same_bytes(&a, &b).unwrap());
        std::fs::write(b.join("part-00001-0000.parquet"), b"").unwrap();
        assert!(!same_bytes(&a, &b).unwrap(), "an extra file");
    }
}
