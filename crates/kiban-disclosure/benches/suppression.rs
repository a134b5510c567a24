//! Secondary suppression at scale and side by side with peers (O1, O9).
//! `CARGO_TARGET_DIR=/work/main/target/h-disclosure cargo bench -p kiban-disclosure --bench suppression`
//! Peers run from the venv at /work/main/target/peers-venv-disclosure (created if missing):
//! ACRO (primary suppression at threshold 10) and pytauargus (tau-Argus's modular MOD and optimal
//! OPT secondary suppression on the same tables with FREQ(10,0), i.e. protection level 1 each side,
//! cost = cell value; and tau-Argus's own audit of kiban's pattern, written as a JJ file under
//! target/bench-disclosure/). Prints per table kiban's and tau-Argus's suppressed totals and the ratio.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

use kiban_disclosure::audit::{AuditOptions, audit};
use kiban_disclosure::decl::{DimensionKind, Protection};
use kiban_disclosure::suppress::{CellStatus, SuppressOptions, protect, uses_lp};
use kiban_disclosure::table::{Cube, Dim};

fn rng(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

/// A synthetic cube: mostly large counts, a few small ones (about `small_pct` %).
fn synth(sizes: &[usize], seed: u64, small_pct: u64) -> Cube {
    let dims = sizes
        .iter()
        .enumerate()
        .map(|(d, &n)| Dim {
            name: format!("d{d}"),
            kind: DimensionKind::Other,
            levels: (0..n).map(|i| format!("L{i}")).collect(),
        })
        .collect();
    let mut c = Cube::zeros(dims, "Total");
    let mut r = rng(seed);
    for i in 0..c.len() {
        if !c.is_margin(i) {
            let x = r();
            c.values[i] = if x % 100 < small_pct { (x >> 8) as i64 % 9 + 1 } else { 10 + (x >> 8) as i64 % 90 };
        }
    }
    c.fill_margins();
    c
}

fn run(name: &str, c: &Cube, lp_max: usize) -> (f64, kiban_disclosure::suppress::SuppressionTotals, Vec<CellStatus>) {
    let p = Protection { percent: 0.0, absolute: 1.0, ..Protection::default() };
    let t0 = Instant::now();
    let primary: Vec<bool> = c.values.iter().map(|&v| v > 0 && v < 10).collect();
    let sup = protect(std::slice::from_ref(c), std::slice::from_ref(&primary), &p, SuppressOptions::default());
    let t_sup = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let a = audit(std::slice::from_ref(c), &sup, &p, AuditOptions { lp_max_component: lp_max }).expect("audit");
    let t_aud = t1.elapsed().as_secs_f64();
    let tot = sup.totals(std::slice::from_ref(c), 0);
    let lp = a.entries.iter().filter(|e| e.method == kiban_disclosure::audit::AuditMethod::Lp).count();
    let method = if uses_lp(std::slice::from_ref(c), SuppressOptions::default()) { "LP" } else { "hypercube" };
    println!(
        "kiban {name} [{method}]: {} cells, suppression {t_sup:.2}s + audit {t_aud:.2}s = {:.2}s; primary {} (Σ{}), secondary {} (Σ{}); audit passed={} ({} LP intervals, {} witnesses, largest LP component {})",
        c.len(),
        t_sup + t_aud,
        tot.primary_cells,
        tot.primary_value,
        tot.secondary_cells,
        tot.secondary_value,
        a.passed,
        lp,
        a.entries.len() - lp,
        a.largest_lp_component
    );
    assert!(a.passed, "kiban result failed its own interval audit");
    (t_sup + t_aud, tot, sup.status[0].clone())
}

/// tau-Argus's JJ format of `c` with kiban's pattern: primaries `u` with protection level 1 each
/// side (as FREQ(10,0) sets), secondaries `m`, a priori bounds 0..grand total.
fn jj(c: &Cube, status: &[CellStatus]) -> String {
    let ub = c.values.iter().copied().max().unwrap_or(0);
    let mut s = format!("0\n{}\n", c.len());
    for (i, st) in status.iter().enumerate() {
        let (code, pl) = match st {
            CellStatus::Primary => ("u", 1.0),
            CellStatus::Secondary => ("m", 0.0),
            CellStatus::Published => ("s", 0.0),
        };
        s.push_str(&format!("{i} {} {} {code} 0 {ub} {pl:.3} {pl:.3} 0\n", c.values[i], c.values[i].max(1)));
    }
    let cons = c.constraints();
    s.push_str(&format!("{}\n", cons.len()));
    for (tot, parts) in cons {
        s.push_str(&format!("0 {} : {tot} (-1) ", parts.len() + 1));
        for p in parts {
            s.push_str(&format!("{p} (1) "));
        }
        s.push('\n');
    }
    s
}

fn peers_json(tables: &[(&str, &Cube, &[CellStatus])]) -> String {
    let mut ts = Vec::new();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/bench-disclosure");
    let _ = std::fs::create_dir_all(dir);
    for (name, c, status) in tables {
        let jj_path = format!("{dir}/kiban-{name}.jj");
        let jj_ok = std::fs::write(&jj_path, jj(c, status)).is_ok();
        let dims: Vec<String> = c.dims.iter().map(|d| format!("\"{}\"", d.name)).collect();
        let mut cells = Vec::new();
        for i in 0..c.len() {
            if c.is_margin(i) || c.values[i] == 0 {
                continue;
            }
            let co = c.coords(i);
            let labels: Vec<String> = co.iter().enumerate().map(|(d, &x)| format!("\"{}\"", c.label(d, x))).collect();
            cells.push(format!("{{\"c\":[{}],\"n\":{}}}", labels.join(","), c.values[i]));
        }
        let jj_field =
            if jj_ok { format!(",\"kiban_jj\":{}", serde_json::Value::from(jj_path)) } else { String::new() };
        ts.push(format!(
            "{{\"name\":\"{name}\",\"dims\":[{}],\"cells\":[{}]{jj_field}}}",
            dims.join(","),
            cells.join(",")
        ));
    }
    format!("{{\"tables\":[{}]}}", ts.join(","))
}

fn venv() -> Result<String, String> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/peers-venv-disclosure");
    let py = format!("{root}/bin/python");
    if !std::path::Path::new(&py).exists() {
        let ok = Command::new("python3").args(["-m", "venv", root]).status().map_err(|e| e.to_string())?.success()
            && Command::new(format!("{root}/bin/pip"))
                .args(["install", "-q", "acro", "pytauargus"])
                .status()
                .map_err(|e| e.to_string())?
                .success();
        if !ok {
            return Err("could not create the venv or pip install acro pytauargus".into());
        }
    }
    Ok(py)
}

fn main() {
    // 1. Scale: a 100×100×100 cube with all margins (1,030,301 cells).
    let big = synth(&[100, 100, 100], 42, 2);
    let (secs, _, _) = run("3-D 100x100x100", &big, 64);
    println!("kiban 1M-cell 3-D: {secs:.2}s (limit 60s) {}", if secs < 60.0 { "OK" } else { "TOO SLOW" });

    // 2. Side by side on smaller tables (about 15 % of interior cells under 10).
    let specs: [(&str, &[usize], u64); 5] = [
        ("t2", &[12, 10], 7),
        ("t3", &[6, 5, 4], 9),
        ("t2b", &[30, 20], 11),
        ("t3b", &[8, 6, 5], 13),
        ("t3c", &[10, 8, 6], 17),
    ];
    let cubes: Vec<(&str, Cube)> = specs.iter().map(|(n, s, seed)| (*n, synth(s, *seed, 15))).collect();
    let kiban: Vec<(&str, &Cube, kiban_disclosure::suppress::SuppressionTotals, Vec<CellStatus>)> = cubes
        .iter()
        .map(|(n, c)| {
            let dims: Vec<String> = c.dims.iter().map(|d| d.levels.len().to_string()).collect();
            let (_, k, st) = run(&format!("{}-D {} ({n})", c.dims.len(), dims.join("x")), c, usize::MAX);
            (*n, c, k, st)
        })
        .collect();
    let py = match venv() {
        Ok(p) => p,
        Err(e) => {
            println!("peer unavailable: acro: {e}");
            println!("peer unavailable: pytauargus: {e}");
            return;
        }
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/peers.py");
    let input = peers_json(&kiban.iter().map(|(n, c, _, st)| (*n, *c, st.as_slice())).collect::<Vec<_>>());
    let child = Command::new(&py)
        .current_dir(std::env::temp_dir())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let out = match child {
        Ok(mut ch) => {
            let _ = ch.stdin.take().map(|mut s| s.write_all(input.as_bytes()));
            ch.wait_with_output().map(|o| String::from_utf8_lossy(&o.stdout).to_string()).unwrap_or_default()
        }
        Err(e) => {
            println!("peer unavailable: python: {e}");
            return;
        }
    };
    for line in out.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let name = v["table"].as_str().unwrap_or("");
        let Some((_, c, k, _)) = kiban.iter().find(|x| x.0 == name) else { continue };
        if let Some(r) = v.get("unavailable") {
            println!(
                "peer unavailable: {} {} on {name}: {}",
                v["peer"].as_str().unwrap_or("?"),
                v["method"].as_str().unwrap_or(""),
                r.as_str().unwrap_or("")
            );
            continue;
        }
        match v["peer"].as_str() {
            Some("acro") => {
                // Interior cells masked by ACRO vs kiban's primaries (threshold 10).
                let masked: std::collections::HashSet<Vec<String>> = v["masked"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|k| {
                                k.as_array()
                                    .map(|x| x.iter().map(|s| s.as_str().unwrap_or("").to_string()).collect())
                                    .unwrap_or_default()
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let (mut agree, mut n) = (0, 0);
                for i in 0..c.len() {
                    if c.is_margin(i) {
                        continue;
                    }
                    let key: Vec<String> =
                        c.coords(i).iter().enumerate().map(|(d, &x)| c.label(d, x).to_string()).collect();
                    let kib = c.values[i] > 0 && c.values[i] < 10;
                    n += 1;
                    if kib == masked.contains(&key) {
                        agree += 1;
                    }
                }
                println!(
                    "acro {name}: primary agreement at threshold 10: {agree}/{n} interior cells ({:.1}%), acro masked {}, kiban primaries {}",
                    100.0 * agree as f64 / n as f64,
                    masked.len(),
                    k.primary_cells
                );
            }
            Some("pytauargus") => {
                let sc = v["secondary_cells"].as_f64().unwrap_or(0.0);
                let sv = v["secondary_value"].as_f64().unwrap_or(0.0);
                println!(
                    "pytauargus {name} {} ({:.2}s): primary {} (Σ{}), secondary {sc} (Σ{sv}); kiban secondary {} (Σ{}); ratio kiban/tau value {:.2}, cells {:.2}",
                    v["method"].as_str().unwrap_or(""),
                    v["secs"].as_f64().unwrap_or(0.0),
                    v["primary_cells"],
                    v["primary_value"],
                    k.secondary_cells,
                    k.secondary_value,
                    k.secondary_value as f64 / sv.max(1.0),
                    k.secondary_cells as f64 / sc.max(1.0),
                );
            }
            Some("tau-audit") => {
                let unsafe_cells = v["unsafe"].as_array().map_or(0, |a| a.len());
                let short = v["short_beyond_1e-6"].as_array().map_or(0, |a| a.len());
                println!(
                    "tau-argus audit of kiban {name}: {} suppressed cells audited, {unsafe_cells} flagged unsafe by tau-Argus, {short} short of the protection level by more than 1e-6 {}",
                    v["audited"],
                    if short == 0 { "(passed)" } else { "(FAILED)" }
                );
            }
            _ => {}
        }
    }
}
