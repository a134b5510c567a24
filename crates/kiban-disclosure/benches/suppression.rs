//! Secondary suppression at scale and side by side with peers (O1, O9).
//! `CARGO_TARGET_DIR=/work/main/target/h-disclosure cargo bench -p kiban-disclosure --bench suppression`
//! Peers run from the venv at /work/main/target/peers-venv-disclosure (created if missing):
//! ACRO (primary suppression at threshold 10) and pytauargus (tau-Argus's modular MOD and optimal
//! OPT secondary suppression on the same tables with FREQ(10,0), i.e. protection level 1 each side,
//! cost = cell value; and tau-Argus's own audit of kiban's pattern, written as a JJ file under
//! target/bench-disclosure/). Prints per table kiban's and tau-Argus's suppressed totals and the ratio,
//! then one summary table. Single tables above 2,500 cells use kiban's modular method (the 1M-cell
//! cube); tau-Argus runs only MOD on the tables above 1,500 cells (OPT takes too long). Times are wall clock and process CPU time (user+sys, from
//! /proc/self/stat) since the machine may be shared.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

use kiban_disclosure::audit::{AuditOptions, audit};
use kiban_disclosure::decl::{DimensionKind, Protection};
use kiban_disclosure::suppress::{CellStatus, SuppressOptions, method, protect};
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

/// Process CPU time (user + system) in seconds, from /proc/self/stat (0 where unavailable).
fn cpu_seconds() -> f64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // Fields after the parenthesized command name; utime and stime are the 12th and 13th of them.
    let rest = s.rsplit_once(')').map_or("", |x| x.1);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// kiban's result on one table: wall seconds, CPU seconds, totals, status, whether the audit passed.
struct Run {
    secs: f64,
    cpu: f64,
    totals: kiban_disclosure::suppress::SuppressionTotals,
    status: Vec<CellStatus>,
    method: String,
}

fn run(name: &str, c: &Cube, lp_max: usize) -> Run {
    let p = Protection { percent: 0.0, absolute: 1.0, ..Protection::default() };
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let primary: Vec<bool> = c.values.iter().map(|&v| v > 0 && v < 10).collect();
    let sup = protect(std::slice::from_ref(c), std::slice::from_ref(&primary), &p, SuppressOptions::default());
    let t_sup = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let a = audit(std::slice::from_ref(c), &sup, &p, AuditOptions { lp_max_component: lp_max }).expect("audit");
    let t_aud = t1.elapsed().as_secs_f64();
    let tot = sup.totals(std::slice::from_ref(c), 0);
    let lp = a.entries.iter().filter(|e| e.method == kiban_disclosure::audit::AuditMethod::Lp).count();
    let cpu = cpu_seconds() - cpu0;
    let method = format!("{:?}", method(std::slice::from_ref(c), SuppressOptions::default())).to_lowercase();
    println!(
        "kiban {name} [{method}]: {} cells, suppression {t_sup:.2}s + audit {t_aud:.2}s = {:.2}s wall, {cpu:.2}s CPU; primary {} (Σ{}), secondary {} (Σ{}); audit passed={} ({} LP intervals, {} witnesses, largest LP component {})",
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
    Run { secs: t_sup + t_aud, cpu, totals: tot, status: sup.status[0].clone(), method }
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

fn peers_json(tables: &[(&str, &Cube, &[CellStatus], bool)]) -> String {
    let mut ts = Vec::new();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/bench-disclosure");
    let _ = std::fs::create_dir_all(dir);
    for (name, c, status, mod_only) in tables {
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
        let methods = if *mod_only { ",\"methods\":[\"MOD(1)\"]" } else { "" };
        ts.push(format!(
            "{{\"name\":\"{name}\",\"dims\":[{}],\"cells\":[{}]{jj_field}{methods}}}",
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

/// One summary row per table: kiban's figures and the peers' as they arrive.
#[derive(Default)]
struct Row {
    name: String,
    cells: usize,
    method: String,
    secs: f64,
    cpu: f64,
    primary: usize,
    sec_cells: usize,
    sec_value: i64,
    acro: Option<String>,
    tau_mod: Option<(f64, f64, f64)>,
    tau_opt: Option<(f64, f64, f64)>,
    tau_audit: Option<String>,
}

fn ratio(k: i64, t: f64) -> String {
    if t > 0.0 {
        format!("{:.2}", k as f64 / t)
    } else if k == 0 {
        "1.00 (both 0)".into()
    } else {
        "∞ (tau 0)".into()
    }
}

fn main() {
    // 1. Scale: a 100×100×100 cube with all margins (1,030,301 cells).
    let big = synth(&[100, 100, 100], 42, 2);
    let r = run("3-D 100x100x100", &big, 64);
    println!(
        "kiban 1M-cell 3-D [{}]: {:.2}s wall, {:.2}s CPU (limit 60s) {}",
        r.method,
        r.secs,
        r.cpu,
        if r.secs.min(r.cpu) < 60.0 { "OK" } else { "TOO SLOW" }
    );
    let mut rows = vec![Row {
        name: "big".into(),
        cells: big.len(),
        method: r.method.clone(),
        secs: r.secs,
        cpu: r.cpu,
        primary: r.totals.primary_cells,
        sec_cells: r.totals.secondary_cells,
        sec_value: r.totals.secondary_value,
        ..Row::default()
    }];

    // 2. Side by side (about 15 % of interior cells under 10).
    let specs: [(&str, &[usize], u64); 7] = [
        ("t2", &[12, 10], 7),
        ("t3", &[6, 5, 4], 9),
        ("t2b", &[30, 20], 11),
        ("t3b", &[8, 6, 5], 13),
        ("t3c", &[10, 8, 6], 17),
        ("m2", &[50, 40], 19),
        ("m3", &[16, 12, 10], 23),
    ];
    let cubes: Vec<(&str, Cube)> = specs.iter().map(|(n, s, seed)| (*n, synth(s, *seed, 15))).collect();
    let kiban: Vec<(&str, &Cube, Run)> = cubes
        .iter()
        .map(|(n, c)| {
            let dims: Vec<String> = c.dims.iter().map(|d| d.levels.len().to_string()).collect();
            (*n, c, run(&format!("{}-D {} ({n})", c.dims.len(), dims.join("x")), c, usize::MAX))
        })
        .collect();
    for (n, c, r) in &kiban {
        let dims: Vec<String> = c.dims.iter().map(|d| d.levels.len().to_string()).collect();
        rows.push(Row {
            name: format!("{n} {}", dims.join("x")),
            cells: c.len(),
            method: r.method.clone(),
            secs: r.secs,
            cpu: r.cpu,
            primary: r.totals.primary_cells,
            sec_cells: r.totals.secondary_cells,
            sec_value: r.totals.secondary_value,
            ..Row::default()
        });
    }
    peers(&kiban, &mut rows);
    println!();
    println!(
        "| table | cells | kiban method | kiban s (wall/CPU) | primaries | kiban secondary n (Σ) | tau MOD n (Σ, s) | kiban/MOD Σ | tau OPT n (Σ, s) | kiban/OPT Σ | ACRO primary agreement | tau-Argus audit of kiban |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        let tau = |t: &Option<(f64, f64, f64)>| t.map_or("—".to_string(), |(c, v, s)| format!("{c} (Σ{v}, {s:.1}s)"));
        let rat = |t: &Option<(f64, f64, f64)>| t.map_or("—".to_string(), |(_, v, _)| ratio(r.sec_value, v));
        println!(
            "| {} | {} | {} | {:.2}/{:.2} | {} | {} (Σ{}) | {} | {} | {} | {} | {} | {} |",
            r.name,
            r.cells,
            r.method,
            r.secs,
            r.cpu,
            r.primary,
            r.sec_cells,
            r.sec_value,
            tau(&r.tau_mod),
            rat(&r.tau_mod),
            tau(&r.tau_opt),
            rat(&r.tau_opt),
            r.acro.as_deref().unwrap_or("—"),
            r.tau_audit.as_deref().unwrap_or("—"),
        );
    }
}

/// Runs ACRO and pytauargus on the tables and fills their columns of `rows`.
fn peers(kiban: &[(&str, &Cube, Run)], rows: &mut [Row]) {
    let py = match venv() {
        Ok(p) => p,
        Err(e) => {
            println!("peer unavailable: acro: {e}");
            println!("peer unavailable: pytauargus: {e}");
            return;
        }
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/peers.py");
    let input =
        peers_json(&kiban.iter().map(|(n, c, r)| (*n, *c, r.status.as_slice(), c.len() > 1500)).collect::<Vec<_>>());
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
        let Some(ki) = kiban.iter().position(|x| x.0 == name) else { continue };
        let (_, c, kr) = &kiban[ki];
        let k = &kr.totals;
        let row = &mut rows[ki + 1];
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
                row.acro = Some(format!("{agree}/{n}"));
            }
            Some("pytauargus") => {
                let sc = v["secondary_cells"].as_f64().unwrap_or(0.0);
                let sv = v["secondary_value"].as_f64().unwrap_or(0.0);
                let secs = v["secs"].as_f64().unwrap_or(0.0);
                let m = v["method"].as_str().unwrap_or("");
                println!(
                    "pytauargus {name} {m} ({secs:.2}s): primary {} (Σ{}), secondary {sc} (Σ{sv}); kiban secondary {} (Σ{}); ratio kiban/tau value {}, cells {:.2}",
                    v["primary_cells"],
                    v["primary_value"],
                    k.secondary_cells,
                    k.secondary_value,
                    ratio(k.secondary_value, sv),
                    k.secondary_cells as f64 / sc.max(1.0),
                );
                if m.starts_with("MOD") {
                    row.tau_mod = Some((sc, sv, secs));
                } else {
                    row.tau_opt = Some((sc, sv, secs));
                }
            }
            Some("tau-audit") => {
                let unsafe_cells = v["unsafe"].as_array().map_or(0, |a| a.len());
                let short = v["short_beyond_1e-6"].as_array().map_or(0, |a| a.len());
                let verdict = if short == 0 { "passed" } else { "FAILED" };
                println!(
                    "tau-argus audit of kiban {name}: {} suppressed cells audited, {unsafe_cells} flagged unsafe by tau-Argus, {short} short of the protection level by more than 1e-6 ({verdict})",
                    v["audited"],
                );
                row.tau_audit = Some(format!("{verdict} ({} cells, {short} short)", v["audited"]));
            }
            _ => {}
        }
    }
}
