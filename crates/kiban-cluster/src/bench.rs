//! The passes' throughput: the same three passes on the same data, in-process and on a cluster.

use std::path::Path;

use serde::Serialize;

use crate::plans::{gate_pass, qi_frequency, tokenize_pass};
use crate::runner::{Output, Runner};
use crate::seal::ClusterSecret;
use crate::udf::{GateUdf, TokenUdf};
use crate::{Result, synth};

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
    let mut record = |pass: &'static str, r: crate::runner::RunReport| {
        figures.push(PassFigure {
            pass,
            engine: engine.clone(),
            rows,
            output_rows: r.rows,
            seconds: r.seconds,
            rows_per_s: rows as f64 / r.seconds.max(1e-9),
        })
    };

    let gate = GateUdf::new(secret, &format!("{job}-gate"), synth::gate_facts(rows)).into_udf();
    let plan = gate_pass(runner.read_parquet(input).await?, gate, "provision_date")?;
    record("gate", runner.write(plan, &["claim_id"], &Output::new(&out.join("gate"), "gate")).await?);

    let token = TokenUdf::new(secret, &format!("{job}-token"), &BENCH_TOKEN_KEY)?.into_udf();
    let plan = tokenize_pass(runner.read_parquet(input).await?, token, &["patient_id", "person_key"])?;
    record("tokenize", runner.write(plan, &["claim_id"], &Output::new(&out.join("tokenize"), "tokenize")).await?);

    let plan = qi_frequency(runner.read_parquet(input).await?, &synth::QI)?;
    let o = Output::new(&out.join("qi_frequency"), "qi_frequency");
    record("qi_frequency", runner.write(plan, &synth::QI, &o).await?);
    Ok(figures)
}

/// Whether two datasets hold the same files with the same bytes (manifests included).
pub fn same_bytes(a: &Path, b: &Path) -> Result<bool> {
    let list = |d: &Path| -> Result<Vec<(String, Vec<u8>)>> {
        let io = |source| crate::ClusterError::Io { path: d.display().to_string(), source };
        let mut v = Vec::new();
        for e in std::fs::read_dir(d).map_err(io)? {
            let e = e.map_err(io)?;
            v.push((e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).map_err(io)?));
        }
        v.sort();
        Ok(v)
    };
    Ok(list(a)? == list(b)?)
}

/// This process's peak resident memory in bytes (Linux `VmHWM`), if known.
pub fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
