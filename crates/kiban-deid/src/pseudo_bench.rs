//! Benchmark of structured pseudonymization (仮名加工): a synthetic 20-column claims table (one
//! line per claim item, ten lines per patient on average) pseudonymized in memory under a policy
//! with the guideline's defaults — claim serial, insurer number and name deleted, patient id
//! tokenized (keyed BLAKE3), birth date to year, address reduced by population, service date
//! shifted per person, clinical codes and values kept (and scanned for card numbers and My Numbers).
//! Reports rows per second per core from the thread's CPU time (target ≥ 5 million).

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use rand::{RngExt, SeedableRng};

use crate::io::{Input, Output};
use crate::pseudo::{PseudoOptions, PseudoPolicy, ReleaseKey, pseudonymize};

/// The 20 columns of the claims table with their role and treatment in the bench policy.
pub const CLAIMS_COLUMNS: [(&str, &str, &str); 20] = [
    ("claim_id", "id_code", "delete"),
    ("patient_id", "link_code", "token"),
    ("insurer_number", "id_code", "delete"),
    ("name_kana", "identifier", "delete"),
    ("birth_date", "date", "year"),
    ("sex", "keep", "keep"),
    ("address", "identifier", "reduce_address"),
    ("claim_month", "keep", "keep"),
    ("service_date", "date", "shift"),
    ("facility_code", "keep", "keep"),
    ("department", "keep", "keep"),
    ("icd10_main", "sensitive", "keep"),
    ("icd10_sub1", "sensitive", "keep"),
    ("icd10_sub2", "sensitive", "keep"),
    ("procedure_code", "keep", "keep"),
    ("procedure_code2", "keep", "keep"),
    ("drug_code", "keep", "keep"),
    ("quantity", "keep", "keep"),
    ("points", "keep", "keep"),
    ("days", "keep", "keep"),
];

/// The bench policy (TOML) over [`CLAIMS_COLUMNS`].
pub fn claims_policy_toml() -> String {
    let mut s = String::from(
        "version = 1\nname = \"bench-claims-pseudonymized\"\nkind = \"pseudonymization\"\nperson_column = \"patient_id\"\n",
    );
    for (n, r, t) in CLAIMS_COLUMNS {
        s.push_str(&format!("\n[[columns]]\nname = \"{n}\"\nrole = \"{r}\"\ntreatment = \"{t}\"\n"));
    }
    s
}

/// A synthetic claims table of `rows` lines in batches of `batch` rows.
pub fn claims_batches(rows: usize, batch: usize, seed: u64) -> Vec<RecordBatch> {
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let munis: Vec<(String, String)> = include_str!("../../kiban-model/data/municipalities.tsv")
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() >= 5).then(|| (f[1].to_owned(), f[3].to_owned()))
        })
        .collect();
    let schema = Arc::new(Schema::new(
        CLAIMS_COLUMNS.iter().map(|(n, _, _)| Field::new(*n, DataType::Utf8, true)).collect::<Vec<_>>(),
    ));
    let patients = (rows / 10).max(1);
    let mut out = Vec::new();
    let mut done = 0;
    while done < rows {
        let n = batch.min(rows - done);
        let mut b: Vec<StringBuilder> = (0..20).map(|_| StringBuilder::with_capacity(n, n * 12)).collect();
        // Lines of one patient are consecutive, as in a claims extract sorted by patient.
        let mut p = r.random_range(0..patients);
        for i in 0..n {
            if r.random_range(0..10) == 0 {
                p = r.random_range(0..patients);
            }
            let (pref, muni) = &munis[p % munis.len()];
            let vals: [String; 20] = [
                format!("C{:010}", done + i),
                format!("P{p:08}"),
                format!("{:08}", 6_130_000 + p % 5000),
                "ヤマダ タロウ".to_owned(),
                format!("{}-{:02}-{:02}", 1930 + p % 80, 1 + p % 12, 1 + p % 28),
                ["1", "2"][p % 2].to_owned(),
                format!("{pref}{muni}本町{}-{}", 1 + p % 9, 1 + p % 30),
                format!("2024{:02}", 1 + i % 12),
                format!("2024-{:02}-{:02}", 1 + i % 12, 1 + i % 28),
                format!("{:07}", 1_310_000 + p % 900),
                ["01", "10", "13", "23"][i % 4].to_owned(),
                format!("E{:02}.{}", 10 + p % 5, p % 10),
                format!("I{:02}", 10 + i % 50),
                format!("K{:02}", 20 + i % 60),
                format!("{:09}", 111_000_110 + i % 997),
                format!("{:09}", 160_000_010 + i % 991),
                format!("{:09}", 620_000_000 + i % 9_973),
                format!("{}", 1 + i % 30),
                format!("{}", 50 + (i * 37) % 5000),
                format!("{}", 1 + i % 28),
            ];
            for (k, v) in vals.iter().enumerate() {
                b[k].append_value(v);
            }
        }
        let cols: Vec<ArrayRef> = b.iter_mut().map(|x| Arc::new(x.finish()) as ArrayRef).collect();
        out.push(RecordBatch::try_new(schema.clone(), cols).expect("20 columns of equal length"));
        done += n;
    }
    out
}

/// Pseudonymizes `rows` claims lines in memory five times after a warm-up and returns (rows per
/// run, CPU seconds of this thread per run sorted fastest first, total wall seconds).
pub fn run(rows: usize) -> crate::Result<(u64, Vec<f64>, f64)> {
    let policy = PseudoPolicy::from_toml(&claims_policy_toml(), std::path::Path::new("."))?;
    let batches = claims_batches(rows, 65_536, 1);
    let opts = PseudoOptions::new(ReleaseKey::new(vec![0x5a; 32])?);
    let input = Input::Batches(batches);
    // Warm-up run (page faults of the first output buffers), then the measured runs.
    pseudonymize(&policy, &input, &Output::Memory, &opts)?;
    let started = Instant::now();
    let mut n = 0;
    let mut cpus = Vec::new();
    for _ in 0..5 {
        let (c0, w0) = (crate::textgen::thread_cpu_seconds(), Instant::now());
        n = pseudonymize(&policy, &input, &Output::Memory, &opts)?.report.records_out;
        cpus.push(match (c0, crate::textgen::thread_cpu_seconds()) {
            (Some(a), Some(b)) if b > a => b - a,
            _ => w0.elapsed().as_secs_f64(),
        });
    }
    cpus.sort_by(f64::total_cmp);
    Ok((n, cpus, started.elapsed().as_secs_f64()))
}

/// A one-line report of [`run`] with the ratio to the target of 5 million rows per second per core.
pub fn report(rows: usize) -> crate::Result<String> {
    let (n, cpus, wall) = run(rows)?;
    let rate = |c: f64| n as f64 / c.max(1e-9);
    let (best, median) = (rate(cpus[0]), rate(cpus[cpus.len() / 2]));
    Ok(format!(
        "structured pseudonymization, 20-column claims table: {n} rows × 5 runs ({wall:.2} s wall); per core (thread CPU time): best {:.2} M rows/s, median {:.2} M rows/s; target 5 M rows/s per core, ratio {:.2}× (best) / {:.2}× (median)\n",
        best / 1e6,
        median / 1e6,
        best / 5e6,
        median / 5e6
    ))
}
