//! Benchmark (not a test): kiban on UCI Adult (30,162 rows, 8 QIs, ARX hierarchies) for k=5/0%,
//! k=5/5%, k=10/5%, side by side with the PyPI peers anjana and anonypy run in the same bench run
//! from the venv target/peers-venv (created if missing). `KIBAN_PEER_TIMEOUT` (seconds, default
//! 900) bounds each peer; `KIBAN_SKIP_PEERS=1` skips them. Run:
//! `CARGO_TARGET_DIR=target/h-deid cargo bench -p kiban-deid --bench adult`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use kiban_deid::{Input, Output, Policy, RunOptions, anonymize};

const CONFIGS: [(u64, f64); 3] = [(5, 0.0), (5, 0.05), (10, 0.05)];

fn main() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = crate_dir.join("../../../shared/data/adult");
    let base = Policy::load(&crate_dir.join("policies/adult.toml")).expect("adult policy");
    let input = Input::from_path(data.join("adult.csv"));
    println!(
        "kiban-deid on UCI Adult ({}), 8 QIs, ARX hierarchies, metric Loss; median of 7 warm runs",
        data.display()
    );
    println!(
        "{:<10} {:>10} {:>10} {:>8} {:>9}  {:<34} nodes",
        "config", "total ms", "search ms", "loss", "supp.", "levels (age,edu,mar,cty,occ,race,sex,wc)"
    );
    let mut ours = Vec::new();
    for (k, s) in CONFIGS {
        let mut p = base.clone();
        p.privacy.k = k;
        p.privacy.suppression_limit = s;
        let mut times = Vec::new();
        let mut last = None;
        for _ in 0..8 {
            let t = Instant::now();
            let out = anonymize(&p, &input, &Output::Memory, &RunOptions::default()).expect("anonymize");
            times.push((t.elapsed().as_secs_f64() * 1000.0, out.report.search.millis));
            last = Some(out.report);
        }
        times.remove(0);
        times.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (total, search) = times[times.len() / 2];
        let r = last.expect("ran");
        let lv = |n: &str| r.levels.iter().find(|(c, _)| c == n).map_or(0, |(_, l)| *l);
        let levels = ["age", "education", "marital-status", "native-country", "occupation", "race", "sex", "workclass"]
            .map(|n| lv(n).to_string())
            .join(",");
        println!(
            "{:<10} {:>10.1} {:>10.1} {:>8.4} {:>9}  {:<41} {}/{}",
            format!("k={k} {}%", s * 100.0),
            total,
            search,
            r.information_loss,
            r.records_suppressed,
            levels,
            r.search.evaluated,
            r.search.lattice_size
        );
        ours.push((k, s, total));
    }
    println!(
        "(total = read CSV twice, search, transform, write to memory; ARX reference: ~40 ms k=5 0%, ~500 ms k=5 5%, warm, + 2-4 s JVM start)"
    );
    if std::env::var("KIBAN_SKIP_PEERS").is_ok_and(|v| v == "1") {
        println!("peers skipped (KIBAN_SKIP_PEERS=1)");
        return;
    }
    let py = match venv(&crate_dir.join("../../target/peers-venv")) {
        Ok(py) => py,
        Err(e) => {
            println!("peer unavailable: {e}");
            return;
        }
    };
    let timeout = std::env::var("KIBAN_PEER_TIMEOUT").unwrap_or_else(|_| "900".into());
    let configs = CONFIGS.map(|(k, s)| format!("{k}:{s}")).join(",");
    for tool in ["anjana", "anonypy"] {
        let out = Command::new("timeout")
            .arg(&timeout)
            .arg(&py)
            .arg(crate_dir.join("benches/peers.py"))
            .arg(&data)
            .arg(&configs)
            .arg(tool)
            .output();
        let out = match out {
            Ok(o) => o,
            Err(e) => {
                println!("peer unavailable: {tool}: {e}");
                continue;
            }
        };
        if out.status.code() == Some(124) {
            println!("peer unavailable: {tool} did not finish within {timeout} s");
        }
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let v: serde_json::Value = match serde_json::from_str(line) {
                Ok(v) => v,
                Err(_) => continue,
            };
            if let Some(u) = v.get("unavailable") {
                println!("peer unavailable: {tool}: {u}");
                continue;
            }
            let (k, s, secs) =
                (v["k"].as_u64().unwrap_or(0), v["supp"].as_f64().unwrap_or(0.0), v["seconds"].as_f64().unwrap_or(0.0));
            let mine = ours.iter().find(|(a, b, _)| *a == k && (*b - s).abs() < 1e-9).map_or(f64::NAN, |x| x.2);
            println!(
                "{tool:<8} k={k} {}%: {:>10.1} ms  ratio peer/kiban = {:>8.1}x   ({})",
                s * 100.0,
                secs * 1000.0,
                secs * 1000.0 / mine,
                v["detail"].as_str().unwrap_or("")
            );
        }
    }
}

fn venv(dir: &Path) -> Result<PathBuf, String> {
    let py = dir.join("bin/python");
    if !py.exists() {
        let ok = Command::new("python3").args(["-m", "venv"]).arg(dir).status().map_err(|e| format!("python3: {e}"))?;
        if !ok.success() {
            return Err("python3 -m venv failed".into());
        }
    }
    let check = Command::new(&py).args(["-c", "import anjana, anonypy"]).status().map_err(|e| e.to_string())?;
    if !check.success() {
        let ok = Command::new(dir.join("bin/pip"))
            .args(["install", "-q", "anjana", "anonypy"])
            .status()
            .map_err(|e| format!("pip: {e}"))?;
        if !ok.success() {
            return Err("pip install anjana anonypy failed".into());
        }
    }
    Ok(py)
}
