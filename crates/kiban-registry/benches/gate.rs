//! Opt-out gate benchmark (not a test): a registry of 10 million persons with 100,000 opt-outs,
//! 10 million records to decide, compared in the same run with DuckDB doing the equivalent join on
//! the same Parquet files (when `target/peers-venv-gate/bin/python` has `duckdb`).
//!
//! `cargo bench -p kiban-registry --bench gate` (env: KIBAN_BENCH_PERSONS, KIBAN_BENCH_RECORDS).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, ArrayRef, Date32Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use chrono::NaiveDate;
use kiban_registry::gate::{Gate, Verdict};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// CPU time of this thread: on a shared machine wall time measures the neighbours too, and the
/// target is per core.
fn cpu() -> f64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

fn env(k: &str, d: usize) -> usize {
    std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d)
}

fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z ^ (z >> 31)
}

const EPOCH_2024: i32 = 19723; // 2024-01-01 as days since 1970-01-01

fn write(path: &Path, batches: impl Iterator<Item = RecordBatch>) {
    let mut w: Option<ArrowWriter<File>> = None;
    for b in batches {
        let w = w.get_or_insert_with(|| ArrowWriter::try_new(File::create(path).unwrap(), b.schema(), None).unwrap());
        w.write(&b).unwrap();
    }
    w.unwrap().close().unwrap();
}

fn read(path: &Path) -> Vec<RecordBatch> {
    ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
        .unwrap()
        .with_batch_size(64 * 1024)
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

fn main() {
    let persons = env("KIBAN_BENCH_PERSONS", 10_000_000);
    let records = env("KIBAN_BENCH_RECORDS", 10_000_000);
    let optout_every = persons / 100_000.min(persons).max(1);
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-gate");
    std::fs::create_dir_all(&dir).unwrap();
    // Named by size, and reused: the data is deterministic.
    let (ppath, rpath) =
        (dir.join(format!("persons-{persons}.parquet")), dir.join(format!("records-{persons}-{records}.parquet")));
    let date = NaiveDate::from_ymd_opt(2025, 4, 1).unwrap();
    let date_days = EPOCH_2024 + (date - NaiveDate::from_ymd_opt(2024, 1, 1).unwrap()).num_days() as i32;
    let waiting = 30u32;

    let t = Instant::now();
    // Registry: patient_id, notice_date (3% never notified, 4% too recent), optout_date (every `optout_every`-th).
    let chunk = 1 << 20;
    let fresh = !(ppath.exists() && rpath.exists());
    if fresh {
        write(
            &ppath,
            (0..persons.div_ceil(chunk)).map(|c| {
                let r = c * chunk..((c + 1) * chunk).min(persons);
                let ids: StringArray = r.clone().map(|i| Some(format!("{i:010}"))).collect();
                let notice: Date32Array = r
                    .clone()
                    .map(|i| match mix(i as u64) % 100 {
                        0..3 => None,
                        3..7 => Some(date_days - 1 - (mix(i as u64 + 7) % 25) as i32),
                        _ => Some(EPOCH_2024 + (mix(i as u64 + 9) % 300) as i32),
                    })
                    .collect();
                let optout: Date32Array =
                    r.map(|i| (i % optout_every == 0).then(|| EPOCH_2024 + (mix(i as u64 + 3) % 600) as i32)).collect();
                let schema = Arc::new(Schema::new(vec![
                    Field::new("patient_id", DataType::Utf8, false),
                    Field::new("notice_date", DataType::Date32, true),
                    Field::new("optout_date", DataType::Date32, true),
                ]));
                RecordBatch::try_new(schema, vec![Arc::new(ids) as ArrayRef, Arc::new(notice), Arc::new(optout)])
                    .unwrap()
            }),
        );
        // Records: 95% of known persons, 5% unknown, a few malformed.
        write(
            &rpath,
            (0..records.div_ceil(chunk)).map(|c| {
                let r = c * chunk..((c + 1) * chunk).min(records);
                let prov: StringArray = r.clone().map(|_| Some("prov-a")).collect();
                let ids: StringArray = r
                    .clone()
                    .map(|i| {
                        let m = mix(i as u64 ^ 0xabc);
                        Some(match m % 1000 {
                            0 => "bad id".to_owned(),
                            1..50 => format!("{:010}", persons as u64 + m % 1_000_000),
                            _ => format!("{:010}", m % persons as u64),
                        })
                    })
                    .collect();
                let v: Int64Array = r.map(|i| Some(i as i64)).collect();
                let schema = Arc::new(Schema::new(vec![
                    Field::new("provider_id", DataType::Utf8, false),
                    Field::new("patient_id", DataType::Utf8, false),
                    Field::new("value", DataType::Int64, false),
                ]));
                RecordBatch::try_new(schema, vec![Arc::new(prov) as ArrayRef, Arc::new(ids), Arc::new(v)]).unwrap()
            }),
        );
    }
    eprintln!(
        "data {} in {:.1} s to {}",
        if fresh { "written" } else { "reused" },
        t.elapsed().as_secs_f64(),
        dir.display()
    );

    // kiban: registry Parquet → verdicts → gate.
    let t_all = Instant::now();
    let t = Instant::now();
    let pb = read(&ppath);
    let t_read_p = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let c_build = cpu();
    let mut verdicts: Vec<(&str, Verdict)> = Vec::with_capacity(persons);
    for b in &pb {
        let ids = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        let n = b.column(1).as_any().downcast_ref::<Date32Array>().unwrap();
        let o = b.column(2).as_any().downcast_ref::<Date32Array>().unwrap();
        for i in 0..b.num_rows() {
            let v = if !o.is_null(i) && o.value(i) <= date_days {
                Verdict::OptedOut
            } else if n.is_null(i) || n.value(i) > date_days {
                Verdict::UnknownPerson
            } else if date_days - n.value(i) < waiting as i32 {
                Verdict::NoticeTooRecent
            } else {
                Verdict::Admitted
            };
            verdicts.push((ids.value(i), v));
        }
    }
    let gate = Gate::from_verdicts("prov-a", date, waiting, verdicts.iter().copied());
    drop(verdicts);
    let t_build = t.elapsed().as_secs_f64();
    let c_build = cpu() - c_build;
    let t = Instant::now();
    let rb = read(&rpath);
    let t_read_r = t.elapsed().as_secs_f64();
    // One core.
    let t = Instant::now();
    let c_one = cpu();
    let mut admitted = 0usize;
    let mut by = [0usize; 7];
    for b in &rb {
        let s = gate.split(b).unwrap();
        admitted += s.admitted.num_rows();
        for &c in s.codes.values() {
            by[c as usize] += 1;
        }
    }
    let t_one = t.elapsed().as_secs_f64();
    let c_one = cpu() - c_one;
    let t_kiban = t_all.elapsed().as_secs_f64();
    // Two cores.
    let threads = 2;
    let t = Instant::now();
    let adm2: usize = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|k| {
                let (gate, rb) = (&gate, &rb);
                s.spawn(move || {
                    rb.iter()
                        .skip(k)
                        .step_by(threads)
                        .map(|b| gate.split(b).unwrap().admitted.num_rows())
                        .sum::<usize>()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let t_two = t.elapsed().as_secs_f64();
    assert_eq!(adm2, admitted);
    // Decision only (no filter copy), one core.
    let t = Instant::now();
    let c_dec = cpu();
    let mut n_dec = 0usize;
    for b in &rb {
        n_dec += gate.decide_batch(b).values().iter().filter(|&&c| c == 0).count();
    }
    let t_dec = t.elapsed().as_secs_f64();
    let c_dec = cpu() - c_dec;
    assert_eq!(n_dec, admitted);

    let r = records as f64;
    println!(
        "gate bench: registry {persons} persons ({} opt-outs), {records} records, provision date {date}",
        persons / optout_every
    );
    println!("  kiban read registry Parquet      {t_read_p:>7.2} s");
    println!(
        "  kiban compile gate (verdicts)    {t_build:>7.2} s  ({:.1} M persons/s; CPU {c_build:.2} s)",
        persons as f64 / t_build / 1e6
    );
    println!("  kiban read records Parquet       {t_read_r:>7.2} s");
    println!(
        "  kiban decide only, 1 core        {t_dec:>7.2} s  ({:.1} M records/s/core; by CPU time {c_dec:.2} s: {:.1} M/s/core)",
        r / t_dec / 1e6,
        r / c_dec / 1e6
    );
    println!(
        "  kiban decide+filter, 1 core      {t_one:>7.2} s  ({:.1} M records/s/core; by CPU time {c_one:.2} s: {:.1} M/s/core)",
        r / t_one / 1e6,
        r / c_one / 1e6
    );
    println!(
        "  kiban decide+filter, {threads} threads   {t_two:>7.2} s  ({:.1} M records/s, {:.1} M/s/core)",
        r / t_two / 1e6,
        r / t_two / 1e6 / threads as f64
    );
    println!("  kiban end to end (1 core)        {t_kiban:>7.2} s");
    println!(
        "  admitted {admitted}, excluded: {}",
        Verdict::ALL[1..].iter().map(|v| format!("{} {}", v.as_str(), by[*v as usize])).collect::<Vec<_>>().join(", ")
    );

    let py = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/peers-venv-gate/bin/python");
    if !py.exists() {
        println!(
            "  DuckDB: not run ({} missing: python3 -m venv target/peers-venv-gate && pip install duckdb)",
            py.display()
        );
        return;
    }
    let script = format!(
        r#"
import duckdb, time
res = {{}}
for threads in (1, 2):
    con = duckdb.connect()
    con.execute(f"SET threads={{threads}}")
    t = time.perf_counter()
    c = time.process_time()
    con.execute("""CREATE TEMP TABLE decided AS
      SELECT r.*, CASE
        WHEN NOT regexp_full_match(r.patient_id, '[A-Za-z0-9_-]{{1,32}}') THEN 'malformed_identity'
        WHEN p.optout_date IS NOT NULL AND p.optout_date <= DATE '{date}' THEN 'opted_out'
        WHEN p.patient_id IS NULL OR p.notice_date IS NULL OR p.notice_date > DATE '{date}' THEN 'unknown_person'
        WHEN p.notice_date > DATE '{date}' - INTERVAL {waiting} DAY THEN 'notice_too_recent'
        ELSE 'admitted' END AS verdict
      FROM read_parquet('{rpath}') r LEFT JOIN read_parquet('{ppath}') p USING (patient_id)""")
    adm = con.execute("SELECT count(*) FROM decided WHERE verdict = 'admitted'").fetchone()[0]
    res[threads] = (time.perf_counter() - t, adm, time.process_time() - c)
    con.close()
print(duckdb.__version__, res[1][0], res[1][1], res[2][0], res[2][1], res[1][2])
"#,
        rpath = rpath.display(),
        ppath = ppath.display(),
    );
    let out = std::process::Command::new(&py).arg("-c").arg(&script).output().unwrap();
    if !out.status.success() {
        println!("  DuckDB failed: {}", String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or(""));
        return;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    // DuckDB may print progress lines first: the figures are on the last line.
    let f: Vec<&str> = text.lines().last().unwrap_or("").split_whitespace().collect();
    let (d1, a1, d2): (f64, usize, f64) = (f[1].parse().unwrap(), f[2].parse().unwrap(), f[3].parse().unwrap());
    let dc: f64 = f[5].parse().unwrap();
    println!(
        "  DuckDB {} join+decide+materialize, 1 thread   {d1:>7.2} s  ({:.1} M records/s/core)",
        f[0],
        r / d1 / 1e6
    );
    println!("  DuckDB {} join+decide+materialize, 2 threads  {d2:>7.2} s  ({:.1} M records/s)", f[0], r / d2 / 1e6);
    println!("  DuckDB admitted {a1} (kiban {admitted}{})", if a1 == admitted { ", same" } else { ", DIFFERENT" });
    println!("  DuckDB 1 thread by CPU time {dc:.2} s ({:.1} M records/s/core)", r / dc / 1e6);
    println!("  ratio, end to end incl. reading both Parquet files, 1 core: DuckDB / kiban = {:.2}x", d1 / t_kiban);
    println!("  ratio by CPU time, DuckDB's whole join / kiban's decide+filter: {:.1}x", dc / c_one);
}
