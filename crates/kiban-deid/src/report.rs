//! The processing report: JSON for machines and a self-contained HTML page with inline SVG
//! charts for people. It holds what was done, never how to undo it: no keys, tokens, mappings or
//! hierarchy contents (A6).

use std::fmt::Write;

use kiban_model::dataset::ColumnRole;
use serde::Serialize;

use crate::policy::{Metric, SuppressedRecords};
use crate::risk::Risk;

/// What was done to one column.
#[derive(Debug, Clone, Serialize)]
pub struct ColumnReport {
    /// Column name.
    pub name: String,
    /// Its role.
    pub role: ColumnRole,
    /// Plain-language action.
    pub action: String,
    /// Hierarchy name, for quasi-identifiers.
    pub hierarchy: Option<String>,
    /// Chosen generalization level.
    pub level: Option<u8>,
    /// Highest level of the hierarchy.
    pub max_level: Option<u8>,
    /// ARX "Loss" of this column (0–1, suppressed records count 1).
    pub loss: Option<f64>,
    /// Precision loss of this column (level/height, 0–1).
    pub precision: Option<f64>,
    /// Distinct values before.
    pub distinct_before: Option<u64>,
    /// Distinct values after.
    pub distinct_after: Option<u64>,
    /// Cells changed by an A4 treatment or coarsening failure.
    pub treated: Option<u64>,
}

impl ColumnReport {
    /// An empty report line for a column.
    pub fn new(name: &str, role: ColumnRole) -> Self {
        ColumnReport {
            name: name.to_owned(),
            role,
            action: String::new(),
            hierarchy: None,
            level: None,
            max_level: None,
            loss: None,
            precision: None,
            distinct_before: None,
            distinct_after: None,
            treated: None,
        }
    }
}

/// Statistics of the lattice search.
#[derive(Debug, Clone, Serialize)]
pub struct SearchReport {
    /// Nodes in the generalization lattice.
    pub lattice_size: u64,
    /// Nodes evaluated.
    pub evaluated: u64,
    /// Nodes proven failing by a cheap projection count instead of a full grouping.
    pub projected: u64,
    /// Whether the optimum is proven (false: greedy heuristic on a very large lattice).
    pub optimal: bool,
    /// Distinct quasi-identifier tuples in the input (after folding, when the tuple budget folded).
    pub distinct_tuples: u64,
    /// Quasi-identifiers the tuple budget folded, with the lowest level the search could reach
    /// (the "before" figures are at those levels too); empty when nothing was folded.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub folded: Vec<(String, u8)>,
    /// When folded: the least loss (normalized as the reported loss) that a node below those
    /// levels might reach, when below the chosen loss; the optimum is then not proven.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unexplored_bound: Option<f64>,
    /// Search time in milliseconds.
    pub millis: f64,
}

/// The processing report of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Engine name and version.
    pub engine: String,
    /// Policy name.
    pub policy_name: String,
    /// Policy format version.
    pub policy_version: u32,
    /// SHA-256 of the policy's canonical content and hierarchy files.
    pub policy_hash: String,
    /// SHA-256 of the input file (or of the input batches' values).
    pub input_sha256: String,
    /// SHA-256 of the output file (or of the output batches' values).
    pub output_sha256: String,
    /// Records read.
    pub records_in: u64,
    /// Records written.
    pub records_out: u64,
    /// Records suppressed to meet the privacy model.
    pub records_suppressed: u64,
    /// Records suppressed because a value was outside its hierarchy (rule `missing = "suppress"`).
    pub records_suppressed_missing: u64,
    /// Records released through local recoding (at a node other than `levels`) instead of suppressed.
    pub records_recoded: u64,
    /// Whether suppressed records were removed or masked.
    pub suppressed_records: SuppressedRecords,
    /// Required k.
    pub k_required: u64,
    /// Smallest equivalence class in the output (suppressed records aside).
    pub k_achieved: u64,
    /// Required ℓ.
    pub l_required: Option<f64>,
    /// Smallest number of distinct sensitive values in a kept class.
    pub l_achieved: Option<u64>,
    /// Required t.
    pub t_required: Option<f64>,
    /// Suppression limit (share of records).
    pub suppression_limit: f64,
    /// Metric minimized.
    pub metric: Metric,
    /// Value of the metric at the chosen transformation (Loss/precision as a 0–1 share).
    pub information_loss: f64,
    /// Search statistics.
    pub search: SearchReport,
    /// Chosen level per quasi-identifier.
    pub levels: Vec<(String, u8)>,
    /// Per-column actions.
    pub columns: Vec<ColumnReport>,
    /// Risk of the input (quasi-identifiers as given).
    pub risk_before: Risk,
    /// Risk of the output.
    pub risk_after: Risk,
    /// Equivalence classes per size bucket, before.
    pub classes_before: Vec<(String, u64)>,
    /// Equivalence classes per size bucket, after.
    pub classes_after: Vec<(String, u64)>,
    /// Total run time in milliseconds.
    pub millis: f64,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A chart series: name, colour, (label, value) bars.
type Series<'a> = (&'a str, &'a str, Vec<(String, f64)>);

fn bars(title: &str, series: &[Series<'_>], percent: bool) -> String {
    let labels: Vec<&String> = series.first().map(|s| s.2.iter().map(|(l, _)| l).collect()).unwrap_or_default();
    let max = series.iter().flat_map(|s| s.2.iter().map(|(_, v)| *v)).fold(0.0f64, f64::max).max(1e-12);
    let (w, h, left, bottom) = (640.0, 220.0, 50.0, 30.0);
    let group = (w - left) / labels.len().max(1) as f64;
    let bw = group * 0.8 / series.len().max(1) as f64;
    let mut s = format!(
        "<figure><figcaption>{}</figcaption><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{}\" role=\"img\">",
        esc(title),
        h + bottom
    );
    let _ = write!(s, "<line x1=\"{left}\" y1=\"{h}\" x2=\"{w}\" y2=\"{h}\" stroke=\"#333\"/>");
    for (i, l) in labels.iter().enumerate() {
        let x = left + group * i as f64 + group / 2.0;
        let _ = write!(
            s,
            "<text x=\"{x:.1}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
            h + 16.0,
            esc(l)
        );
    }
    for (si, (_, color, vals)) in series.iter().enumerate() {
        for (i, (_, v)) in vals.iter().enumerate() {
            let bh = (v / max) * (h - 20.0);
            let x = left + group * i as f64 + group * 0.1 + bw * si as f64;
            let label = if percent { format!("{:.1}%", v * 100.0) } else { format!("{v}") };
            let _ = write!(
                s,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{bw:.1}\" height=\"{bh:.1}\" fill=\"{color}\"><title>{}</title></rect><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\">{}</text>",
                h - bh,
                esc(&label),
                x + bw / 2.0,
                h - bh - 3.0,
                esc(&label)
            );
        }
    }
    let mut lx = left;
    for (name, color, _) in series {
        let _ = write!(
            s,
            "<rect x=\"{lx}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{color}\"/><text x=\"{}\" y=\"{}\" font-size=\"11\">{}</text>",
            h + bottom - 10.0,
            lx + 14.0,
            h + bottom - 1.0,
            esc(name)
        );
        lx += 120.0;
    }
    s.push_str("</svg></figure>");
    s
}

impl Report {
    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("report serializes")
    }

    /// The report as a self-contained HTML page (inline CSS and SVG, no scripts).
    pub fn to_html(&self) -> String {
        let mut h = String::new();
        let _ = write!(
            h,
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Processing report: {}</title>\
<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}}table{{border-collapse:collapse;margin:1em 0}}\
td,th{{border:1px solid #bbb;padding:3px 8px;text-align:left}}th{{background:#eee}}code{{font-size:90%}}</style></head><body>",
            esc(&self.policy_name)
        );
        let _ = write!(h, "<h1>Processing report — {}</h1>", esc(&self.policy_name));
        let row = |h: &mut String, k: &str, v: String| {
            let _ = write!(h, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(&v));
        };
        h.push_str("<h2>Summary</h2><table>");
        row(&mut h, "Engine", self.engine.clone());
        row(&mut h, "Policy version / hash (SHA-256)", format!("{} / {}", self.policy_version, self.policy_hash));
        row(&mut h, "Input SHA-256", self.input_sha256.clone());
        row(&mut h, "Output SHA-256", self.output_sha256.clone());
        row(&mut h, "Records in / out", format!("{} / {}", self.records_in, self.records_out));
        row(
            &mut h,
            "Records suppressed",
            format!(
                "{} by the privacy model ({:?}, limit {:.1}%), {} outside a hierarchy",
                self.records_suppressed,
                self.suppressed_records,
                self.suppression_limit * 100.0,
                self.records_suppressed_missing
            ),
        );
        if self.records_recoded > 0 {
            row(&mut h, "Records locally recoded", self.records_recoded.to_string());
        }
        row(&mut h, "k required / achieved", format!("{} / {}", self.k_required, self.k_achieved));
        if let Some(l) = self.l_required {
            row(&mut h, "ℓ required / achieved (distinct)", format!("{l} / {}", self.l_achieved.unwrap_or(0)));
        }
        if let Some(t) = self.t_required {
            row(&mut h, "t required", format!("{t}"));
        }
        row(&mut h, "Information loss", format!("{:.4} ({:?})", self.information_loss, self.metric));
        row(
            &mut h,
            "Search",
            format!(
                "{} of {} lattice nodes evaluated, {} distinct tuples, {:.1} ms, {}",
                self.search.evaluated,
                self.search.lattice_size,
                self.search.distinct_tuples,
                self.search.millis,
                match (self.search.optimal, self.search.folded.is_empty()) {
                    (true, true) => "optimal".to_owned(),
                    (true, false) =>
                        format!("optimal (table folded: {:?}; no lower node could do better)", self.search.folded),
                    (false, false) => format!(
                        "best at or above the folded levels {:?}; a lower node might reach loss {:.4}",
                        self.search.folded,
                        self.search.unexplored_bound.unwrap_or(0.0)
                    ),
                    (false, true) => "heuristic (greedy)".to_owned(),
                }
            ),
        );
        h.push_str("</table><h2>Columns</h2><table><tr><th>Column</th><th>Role</th><th>Action</th><th>Loss</th><th>Precision</th><th>Distinct before → after</th></tr>");
        for c in &self.columns {
            let f = |x: Option<f64>| x.map(|v| format!("{v:.3}")).unwrap_or_default();
            let d = match (c.distinct_before, c.distinct_after) {
                (Some(a), Some(b)) => format!("{a} → {b}"),
                _ => String::new(),
            };
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&c.name),
                esc(&format!("{:?}", c.role)),
                esc(&c.action),
                f(c.loss),
                f(c.precision),
                d
            );
        }
        h.push_str(
            "</table><h2>Re-identification risk</h2><table><tr><th>Measure</th><th>Before</th><th>After</th></tr>",
        );
        let (b, a) = (&self.risk_before, &self.risk_after);
        let rows: [(&str, f64, f64); 8] = [
            ("Prosecutor, highest", b.prosecutor_highest, a.prosecutor_highest),
            ("Prosecutor, average", b.prosecutor_average, a.prosecutor_average),
            ("Records at risk (> threshold)", b.records_at_risk, a.records_at_risk),
            ("Journalist, highest", b.journalist_highest, a.journalist_highest),
            ("Marketer", b.marketer, a.marketer),
            ("Sample uniques", b.sample_uniques, a.sample_uniques),
            ("Population uniques (Zayatz)", b.population_uniques, a.population_uniques),
            ("Smallest class", b.min_class_size as f64, a.min_class_size as f64),
        ];
        for (k, x, y) in rows {
            let _ = write!(h, "<tr><td>{}</td><td>{x:.4}</td><td>{y:.4}</td></tr>", esc(k));
        }
        h.push_str("</table>");
        let risk_series = |r: &Risk| {
            vec![
                ("prosecutor max".to_owned(), r.prosecutor_highest),
                ("prosecutor avg".to_owned(), r.prosecutor_average),
                ("at risk".to_owned(), r.records_at_risk),
                ("marketer".to_owned(), r.marketer),
                ("sample uniques".to_owned(), r.sample_uniques),
            ]
        };
        h.push_str(&bars(
            "Risk before and after",
            &[("before", "#d9534f", risk_series(b)), ("after", "#5cb85c", risk_series(a))],
            true,
        ));
        let hist = |v: &[(String, u64)]| v.iter().map(|(l, c)| (l.clone(), *c as f64)).collect::<Vec<_>>();
        h.push_str(&bars(
            "Equivalence classes by size",
            &[("before", "#d9534f", hist(&self.classes_before)), ("after", "#5cb85c", hist(&self.classes_after))],
            false,
        ));
        let _ = write!(
            h,
            "<p>Risk model: prosecutor risk of a record is 1/its class size; journalist and marketer use estimated population class sizes f/π with sampling fraction π = {}; population uniqueness by {}. This report holds no keys, tokens or mappings (A6).</p></body></html>",
            self.risk_after.sampling_fraction, self.risk_after.population_model
        );
        h
    }
}
