//! Reports: JSON, a self-contained Japanese HTML page with the table drawn and cells coloured by
//! finding, and the protected table as CSV.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::audit::Audit;
use crate::rules::{Finding, Severity};
use crate::suppress::{CellStatus, SuppressionTotals};
use crate::table::Cube;
use crate::workflow::ProductStatus;

/// What the checker was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Check the table as given; report findings only.
    Check,
    /// Apply primary and secondary suppression.
    Suppress,
    /// Suppress, then round every shown value to the declared base.
    Round,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "check" => Ok(Mode::Check),
            "suppress" => Ok(Mode::Suppress),
            "round" => Ok(Mode::Round),
            o => Err(format!("mode must be check, suppress or round, got {o:?}")),
        }
    }
}

/// The report of one check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Table title.
    pub title: String,
    /// The O8 label carried with the table.
    pub user_made_label: Option<String>,
    /// Mode run.
    pub mode: Mode,
    /// Whether the (protected) table meets O1–O9.
    pub passed: bool,
    /// D9 status.
    pub status: ProductStatus,
    /// SHA-256 of the input table file bytes (or CSV text).
    pub input_sha256: String,
    /// SHA-256 of the protected CSV: the version an approval binds to.
    pub table_sha256: String,
    /// Findings: Suppress findings are fixed by suppression in suppress/round modes.
    pub findings: Vec<Finding>,
    /// Suppression counts and sums.
    pub totals: SuppressionTotals,
    /// Cells that no secondary pattern could protect.
    pub unprotected: Vec<String>,
    /// The interval audit.
    pub audit: Option<Audit>,
    /// Rounding base applied.
    pub rounding_base: Option<i64>,
    /// Notes on how the input was read.
    pub notes: Vec<String>,
}

impl Report {
    /// SHA-256 of the JSON report.
    pub fn sha256(&self) -> String {
        hex::encode(Sha256::digest(self.to_json().as_bytes()))
    }
    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
    /// Count of findings by rule, in a short Japanese/English line.
    pub fn summary(&self) -> String {
        let mut by: std::collections::BTreeMap<String, usize> = Default::default();
        for f in &self.findings {
            *by.entry(format!("{:?}", f.rule)).or_default() += 1;
        }
        let rules: Vec<String> = by.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        format!(
            "{} / {}: findings {} [{}]; suppressed primary {} (Σ{}), secondary {} (Σ{}); audit {}",
            if self.passed { "合格" } else { "不合格" },
            if self.passed { "passed" } else { "failed" },
            self.findings.len(),
            rules.join(" "),
            self.totals.primary_cells,
            self.totals.primary_value,
            self.totals.secondary_cells,
            self.totals.secondary_value,
            self.audit.as_ref().map_or("-".into(), |a| if a.passed { "ok".to_string() } else { "FAILED".into() }),
        )
    }
}

/// Value shown for a cell in the protected table: "X" when suppressed, rounded when a base is given.
pub fn shown(v: i64, st: CellStatus, base: Option<i64>) -> String {
    if st.suppressed() {
        return "X".into();
    }
    match base {
        Some(b) => (((v + b / 2) / b) * b).to_string(),
        None => v.to_string(),
    }
}

/// The protected table as long CSV: dimensions, count, status.
#[allow(clippy::needless_range_loop)]
pub fn protected_csv(cube: &Cube, status: &[CellStatus], count_col: &str, base: Option<i64>) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut h: Vec<String> = cube.dims.iter().map(|d| d.name.clone()).collect();
    h.push(count_col.into());
    h.push("status".into());
    let _ = w.write_record(&h);
    for i in 0..cube.len() {
        let c = cube.coords(i);
        let mut r: Vec<String> = (0..c.len()).map(|d| cube.label(d, c[d]).to_string()).collect();
        r.push(shown(cube.values[i], status[i], base));
        r.push(
            match status[i] {
                CellStatus::Published => "published",
                CellStatus::Primary => "primary",
                CellStatus::Secondary => "secondary",
            }
            .into(),
        );
        let _ = w.write_record(&r);
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A self-contained HTML page in Japanese (English alongside) with the table drawn as 2-D slices
/// and cells coloured by status and finding.
pub fn html(report: &Report, cube: &Cube, status: &[CellStatus]) -> String {
    let mut cell_findings: HashMap<usize, Vec<&Finding>> = HashMap::new();
    for f in &report.findings {
        if let Some(i) = f.index {
            cell_findings.entry(i).or_default().push(f);
        }
    }
    let mut s = String::new();
    s.push_str(
        "<!doctype html><html lang=\"ja\"><head><meta charset=\"utf-8\"><title>公表物確認レポート</title><style>",
    );
    s.push_str("body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #999;padding:.2em .5em;text-align:right}th{background:#eee}.primary{background:#f4a3a3}.secondary{background:#f9d48b}.finding{background:#ffe0e0}.ok{background:#fff}.pass{color:#060}.fail{color:#a00}.legend span{padding:.1em .6em;margin-right:.6em;border:1px solid #999}");
    s.push_str("</style></head><body>");
    s.push_str(&format!(
        "<h1>公表物確認レポート <small>Publication check report</small></h1><h2>{}</h2>",
        esc(&report.title)
    ));
    s.push_str(&format!(
        "<p class=\"{}\"><strong>{}</strong></p>",
        if report.passed { "pass" } else { "fail" },
        esc(&report.summary())
    ));
    s.push_str(&format!(
        "<p>状態 / status: {:?} ・ 表のSHA-256 / table SHA-256: <code>{}</code></p>",
        report.status, report.table_sha256
    ));
    match &report.user_made_label {
        Some(l) => s.push_str(&format!("<p>表示 (O8): {}</p>", esc(l))),
        None => s.push_str("<p class=\"fail\">O8: 利用者作成の統計である旨の表示がありません</p>"),
    }
    s.push_str("<p class=\"legend\"><span class=\"primary\">一次秘匿 primary</span><span class=\"secondary\">二次秘匿 secondary</span><span class=\"finding\">指摘 finding</span><span class=\"ok\">公表 published</span></p>");
    // Table-level findings.
    s.push_str("<h3>指摘事項 / Findings</h3><ul>");
    for f in &report.findings {
        if f.cell.is_none() || f.severity != Severity::Suppress {
            s.push_str(&format!(
                "<li><b>{:?}</b> {}{} — {}</li>",
                f.rule,
                f.cell.as_ref().map(|c| format!("{c} ")).unwrap_or_default(),
                esc(&f.message_ja),
                esc(&f.message_en)
            ));
        }
    }
    let n_cell = report.findings.iter().filter(|f| f.cell.is_some() && f.severity == Severity::Suppress).count();
    s.push_str(&format!(
        "<li>セルの指摘 {n_cell} 件(表中に色で表示) / {n_cell} cell findings, coloured below</li></ul>"
    ));
    // Draw slices.
    let nd = cube.dims.len();
    let (rd, cd) = if nd >= 2 { (0, 1) } else { (0, usize::MAX) };
    let st = cube.strides();
    let other: Vec<usize> = (0..nd).filter(|&d| d != rd && d != cd).collect();
    let n_slices: usize = other.iter().map(|&d| cube.dims[d].size()).product();
    let max_slices = 60;
    for sl in 0..n_slices.min(max_slices) {
        let mut base = 0;
        let mut rem = sl;
        let mut title = Vec::new();
        for &d in other.iter().rev() {
            let c = rem % cube.dims[d].size();
            rem /= cube.dims[d].size();
            base += c * st[d];
            title.push(format!("{}={}", cube.dims[d].name, cube.label(d, c)));
        }
        title.reverse();
        if !title.is_empty() {
            s.push_str(&format!("<h4>{}</h4>", esc(&title.join(" / "))));
        }
        s.push_str("<table><tr><th></th>");
        let cols = if cd == usize::MAX { 1 } else { cube.dims[cd].size() };
        for c in 0..cols {
            let l = if cd == usize::MAX { "値".to_string() } else { cube.label(cd, c).to_string() };
            s.push_str(&format!("<th>{}</th>", esc(&l)));
        }
        s.push_str("</tr>");
        for r in 0..cube.dims[rd].size() {
            s.push_str(&format!("<tr><th>{}</th>", esc(cube.label(rd, r))));
            for c in 0..cols {
                let i = base + r * st[rd] + if cd == usize::MAX { 0 } else { c * st[cd] };
                let fs = cell_findings.get(&i);
                let class = match status[i] {
                    CellStatus::Primary => "primary",
                    CellStatus::Secondary => "secondary",
                    CellStatus::Published if fs.is_some() => "finding",
                    CellStatus::Published => "ok",
                };
                let tip: Vec<String> = fs
                    .map(|v| {
                        v.iter()
                            .map(|f| format!("{:?} (閾値 {}): {}", f.rule, f.threshold.unwrap_or(0), f.message_ja))
                            .collect()
                    })
                    .unwrap_or_default();
                let tip = if status[i] == CellStatus::Secondary && tip.is_empty() {
                    "O9 二次秘匿 (secondary suppression)".to_string()
                } else {
                    tip.join("; ")
                };
                let shown_v = if report.mode == Mode::Check {
                    cube.values[i].to_string()
                } else {
                    shown(cube.values[i], status[i], report.rounding_base)
                };
                s.push_str(&format!("<td class=\"{class}\" title=\"{}\">{}</td>", esc(&tip), esc(&shown_v)));
            }
            s.push_str("</tr>");
        }
        s.push_str("</table>");
    }
    if n_slices > max_slices {
        s.push_str(&format!("<p>(表示は先頭{max_slices}面まで / first {max_slices} of {n_slices} slices shown)</p>"));
    }
    if let Some(a) = &report.audit {
        s.push_str("<h3>区間監査 / Interval audit (O9)</h3><p>攻撃者が公表値と非負制約から線形計画で推定できる区間 / interval an attacker can infer by LP</p>");
        s.push_str(
            "<table><tr><th>セル</th><th>種別</th><th>必要区間</th><th>推定区間</th><th>方法</th><th>判定</th></tr>",
        );
        for e in a.entries.iter().filter(|e| e.primary).take(500) {
            s.push_str(&format!(
                "<tr><td>{}</td><td>一次</td><td>±[{}, {}]</td><td>[{:.1}, {}]</td><td>{:?}</td><td class=\"{}\">{}</td></tr>",
                esc(&e.cell.to_string()),
                e.required_lower,
                e.required_upper,
                e.min,
                if e.max.is_finite() { format!("{:.1}", e.max) } else { "∞".into() },
                e.method,
                if e.protected { "pass" } else { "fail" },
                if e.protected { "保護 ok" } else { "不足 FAIL" }
            ));
        }
        s.push_str("</table>");
    }
    if !report.notes.is_empty() {
        s.push_str("<h3>注記 / Notes</h3><ul>");
        for n in &report.notes {
            s.push_str(&format!("<li>{}</li>", esc(n)));
        }
        s.push_str("</ul>");
    }
    s.push_str("</body></html>\n");
    s
}
