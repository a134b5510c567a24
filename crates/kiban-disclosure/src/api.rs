//! The library entry points the `kiban check-output` subcommand calls, and a self-contained demo.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::DisclosureError;
use crate::areas::AreaTable;
use crate::audit::{AuditOptions, audit};
use crate::decl::{Declaration, DimensionKind};
use crate::history::{PublishedTable, differencing, read_history};
use crate::report::{Mode, Report, html, protected_csv};
use crate::rules::{Severity, check};
use crate::suppress::{CellStatus, SuppressOptions, Suppression, protect};
use crate::table::{Cube, RawTable};
use crate::workflow::ProductStatus;

/// Arguments of `kiban check-output` (clap-free).
#[derive(Debug, Clone, PartialEq)]
pub struct CheckOutputArgs {
    /// `--table T.csv` (or `.parquet`, `.xlsx`).
    pub table: PathBuf,
    /// `--decl D.toml`.
    pub decl: PathBuf,
    /// `--areas A.csv`: 二次医療圏 population table.
    pub areas: Option<PathBuf>,
    /// `--mode check|suppress|round`.
    pub mode: Mode,
    /// `--history H.jsonl`: the project's publication history.
    pub history: Option<PathBuf>,
    /// `--out DIR`.
    pub out: PathBuf,
}

/// What `check_output` produced.
#[derive(Debug, Clone)]
pub struct CheckOutcome {
    /// The report (also written as `report.json`).
    pub report: Report,
    /// Files written in the output directory.
    pub files: Vec<PathBuf>,
    /// The record to append to the history once the table is approved and published.
    pub history_record: PublishedTable,
}

/// Everything a check computes in memory.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The report.
    pub report: Report,
    /// The cube with all margins.
    pub cube: Cube,
    /// Cell statuses after the mode was applied.
    pub status: Vec<CellStatus>,
    /// The protected CSV text.
    pub csv: String,
    /// The suppression, when one was run.
    pub suppression: Option<Suppression>,
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Checks (and in suppress/round modes protects) one table in memory.
pub fn check_table(
    raw: &RawTable,
    input_sha256: &str,
    decl: &Declaration,
    areas: Option<&AreaTable>,
    mode: Mode,
    history: &[PublishedTable],
) -> Result<Checked, DisclosureError> {
    let (cube, mut notes) = raw.to_cube(decl)?;
    if let Some(at) = areas {
        for d in cube.dims.iter().filter(|d| d.kind == DimensionKind::SecondaryArea) {
            at.require_all(&d.levels)?;
        }
        if at.synthetic {
            notes.push("二次医療圏の人口表は合成データです(公式の数値ではありません) / the area population table is synthetic, not official".into());
        }
    }
    let (mut findings, mut primary) = check(&cube, decl, areas);
    let base = if mode == Mode::Round {
        Some(decl.rounding_base.ok_or_else(|| DisclosureError::Declaration("mode round needs rounding_base".into()))?)
    } else {
        None
    };
    let threshold = 10;
    let (status, sup, aud) = if mode == Mode::Check {
        let status: Vec<CellStatus> = vec![CellStatus::Published; cube.len()];
        let rec = PublishedTable::from_cube(&cube, &status, "", &decl.title, "");
        for (i, mut f) in differencing(&rec, history, threshold) {
            f.index = Some(i);
            findings.push(f);
        }
        (status, None, None)
    } else {
        let mut round = 0;
        loop {
            let sup = protect(
                std::slice::from_ref(&cube),
                std::slice::from_ref(&primary),
                &decl.protection,
                SuppressOptions::default(),
            );
            let rec = PublishedTable::from_cube(&cube, &sup.status[0], "", &decl.title, "");
            let diffs = differencing(&rec, history, threshold);
            round += 1;
            let fresh: Vec<_> = diffs.into_iter().filter(|(i, _)| !primary[*i]).collect();
            if fresh.is_empty() || round >= 4 {
                for (i, mut f) in fresh {
                    f.index = Some(i);
                    f.severity = Severity::Error;
                    findings.push(f);
                }
                let a = audit(std::slice::from_ref(&cube), &sup, &decl.protection, AuditOptions::default())?;
                break (sup.status[0].clone(), Some(sup), Some(a));
            }
            for (i, mut f) in fresh {
                primary[i] = true;
                f.index = Some(i);
                findings.push(f);
            }
        }
    };
    let csv = protected_csv(&cube, &status, &decl.count_column, base);
    let table_sha256 = sha(csv.as_bytes());
    // A cell without a hypercube may still be protected by the combined pattern: the audit decides.
    let audited_ok =
        |i: usize| aud.as_ref().is_some_and(|a| a.entries.iter().any(|e| e.index == i && e.table == 0 && e.protected));
    let unprotected_idx: Vec<usize> = sup
        .as_ref()
        .map(|s| s.unprotected.iter().map(|&(_, i)| i).filter(|&i| !audited_ok(i)).collect())
        .unwrap_or_default();
    let unprotected: Vec<String> = unprotected_idx.iter().map(|&i| cube.cell_ref(i).to_string()).collect();
    let passed = match mode {
        Mode::Check => findings.is_empty(),
        _ => {
            !findings.iter().any(|f| f.severity == Severity::Error)
                && unprotected.is_empty()
                && aud.as_ref().is_some_and(|a| a.passed)
        }
    };
    for &i in &unprotected_idx {
        let mut f = crate::rules::Finding::table(
            crate::rules::RuleId::O9,
            Severity::Error,
            "二次秘匿で保護できないセルです。区分の統合等で表を組み替えてください",
            "no secondary suppression pattern protects this cell; merge categories",
        );
        f.cell = Some(cube.cell_ref(i));
        f.index = Some(i);
        findings.push(f);
    }
    let totals = sup.as_ref().map(|s| s.totals(std::slice::from_ref(&cube), 0)).unwrap_or_default();
    let report = Report {
        title: decl.title.clone(),
        user_made_label: decl.user_made_label.clone(),
        mode,
        passed,
        status: if passed { ProductStatus::Final } else { ProductStatus::Intermediate },
        input_sha256: input_sha256.into(),
        table_sha256,
        findings,
        totals,
        unprotected,
        audit: aud,
        rounding_base: base,
        notes,
    };
    Ok(Checked { report, cube, status, csv, suppression: sup })
}

/// `kiban check-output`: reads the inputs, checks, and writes `report.json`, `report.html` and
/// `protected.csv` into `out`. Needs no data directory.
pub fn check_output(args: &CheckOutputArgs) -> Result<CheckOutcome, DisclosureError> {
    let bytes = std::fs::read(&args.table).map_err(|e| DisclosureError::io(&args.table, e))?;
    let decl_text = std::fs::read_to_string(&args.decl).map_err(|e| DisclosureError::io(&args.decl, e))?;
    let decl = Declaration::from_toml(&decl_text)?;
    let raw = RawTable::read_declared(&args.table, &decl)?;
    let areas = args.areas.as_deref().map(AreaTable::read).transpose()?;
    let history = match &args.history {
        Some(h) => read_history(h)?,
        None => Vec::new(),
    };
    let c = check_table(&raw, &sha(&bytes), &decl, areas.as_ref(), args.mode, &history)?;
    std::fs::create_dir_all(&args.out).map_err(|e| DisclosureError::io(&args.out, e))?;
    let write = |name: &str, text: &str| -> Result<PathBuf, DisclosureError> {
        let p = args.out.join(name);
        std::fs::write(&p, text).map_err(|e| DisclosureError::io(&p, e))?;
        Ok(p)
    };
    let mut files =
        vec![write("report.json", &c.report.to_json())?, write("report.html", &html(&c.report, &c.cube, &c.status))?];
    if args.mode != Mode::Check {
        files.push(write("protected.csv", &c.csv)?);
    }
    let history_record = PublishedTable::from_cube(&c.cube, &c.status, "", &decl.title, &c.report.table_sha256);
    Ok(CheckOutcome { report: c.report, files, history_record })
}

/// One synthetic person for the demo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DemoRow {
    /// Age in years.
    pub age: u32,
    /// Sex label (男/女).
    pub sex: String,
    /// Synthetic 二次医療圏 code.
    pub area: String,
}

/// What the demo returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DemoSummary {
    /// One-line summary (Japanese / English).
    pub summary: String,
    /// Whether the protected table passed.
    pub passed: bool,
    /// Primary suppressions.
    pub primary: usize,
    /// Secondary suppressions.
    pub secondary: usize,
    /// The protected CSV.
    pub protected_csv: String,
    /// The report JSON.
    pub report_json: String,
}

/// Age band label for O6 (5-year bands, 100 and over one band).
pub fn age_band(age: u32) -> String {
    if age >= 100 { "100+".into() } else { format!("{}-{}", age / 5 * 5, age / 5 * 5 + 4) }
}

/// Deterministic synthetic rows over three synthetic areas (never real people).
pub fn demo_rows(n: usize, seed: u64) -> Vec<DemoRow> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|_| {
            let r = next();
            DemoRow {
                age: ((r % 90) as u32 + (r >> 20) as u32 % 15).min(104),
                sex: if (r >> 8) % 2 == 0 { "男" } else { "女" }.into(),
                area: ["S01", "S02", "S03"][((r >> 12) % 10).min(9) as usize / 4].into(),
            }
        })
        .collect()
}

/// The synthetic population table used by the demo (says so in its header).
pub const DEMO_AREAS_CSV: &str = "code,name,population\nS01,合成医療圏A (synthetic),120000\nS02,合成医療圏B (synthetic),18000\nS03,合成医療圏C (synthetic),1500\n";

/// Builds counts by age band × sex × synthetic 二次医療圏 from `rows` and runs the check in
/// suppress mode against a synthetic population table.
pub fn demo(rows: &[DemoRow]) -> Result<DemoSummary, DisclosureError> {
    let mut counts: std::collections::BTreeMap<(u32, String, String), i64> = Default::default();
    for r in rows {
        *counts.entry((r.age.min(100) / 5, r.sex.clone(), r.area.clone())).or_default() += 1;
    }
    let mut csv = String::from("age_band,sex,area,patients\n");
    for ((b, s, a), n) in &counts {
        csv.push_str(&format!("{},{s},{a},{n}\n", age_band(b * 5)));
    }
    let raw = RawTable::from_csv_str("<demo>", &csv)?;
    let decl = Declaration::from_toml(
        r#"title = "デモ: 年齢階級×性別×二次医療圏 (合成データ)"
count_column = "patients"
user_made_label = "本表は合成データから利用者が独自に作成したものであり、公的統計とは異なる"
[protection]
percent = 0.0
absolute = 3.0
[[dimension]]
column = "age_band"
kind = "age_band"
[[dimension]]
column = "sex"
kind = "sex"
[[dimension]]
column = "area"
kind = "secondary_area"
"#,
    )?;
    let areas = AreaTable::from_csv_str("synthetic_areas.csv", DEMO_AREAS_CSV)?;
    let c = check_table(&raw, &sha(csv.as_bytes()), &decl, Some(&areas), Mode::Suppress, &[])?;
    Ok(DemoSummary {
        summary: c.report.summary(),
        passed: c.report.passed,
        primary: c.report.totals.primary_cells,
        secondary: c.report.totals.secondary_cells,
        protected_csv: c.csv,
        report_json: c.report.to_json(),
    })
}

/// Reads a table file's bytes and SHA-256 (helper for callers that hold files).
pub fn file_sha256(path: &Path) -> Result<String, DisclosureError> {
    std::fs::read(path).map(|b| sha(&b)).map_err(|e| DisclosureError::io(path, e))
}
