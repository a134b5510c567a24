//! Charts of stored results, drawn on the server as inline SVG (no script, nothing to download).
//! A chart is a spec (kind, x column, y column) kept with its result; it is drawn from the sealed
//! result each time it is shown. Row-level results are not charted: a chart of single records would be
//! a row view that escapes the page cap (D9).

use std::fmt::Write as _;
use std::fs;

use serde::{Deserialize, Serialize};

use crate::store::Workspace;
use crate::{WorkspaceError, io};

/// Bars a bar chart may have at most.
pub const MAX_BARS: usize = 60;
/// Points a line chart may have at most.
pub const MAX_POINTS: usize = 2000;

/// Bar or line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChartKind {
    /// One bar per row: x is the label, y the height.
    Bar,
    /// Points in row order joined by a line.
    Line,
}

/// What to draw from a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChartSpec {
    /// Bar or line.
    pub kind: ChartKind,
    /// The label column.
    pub x: String,
    /// The value column (numbers).
    pub y: String,
}

fn refused(reason: String) -> WorkspaceError {
    WorkspaceError::Refused { rule: "D9", reason }
}

impl Workspace {
    /// Checks `spec` against result `id` (columns exist, y is numeric, size within the caps, the result
    /// is an aggregate) and keeps it with the result.
    pub fn add_chart(&self, id: &str, spec: &ChartSpec) -> Result<String, WorkspaceError> {
        let svg = self.chart_svg(id, spec)?;
        let mut v = self.charts(id)?;
        if !v.contains(spec) {
            v.push(spec.clone());
        }
        let p = self.result_path(id)?.join("charts.json");
        fs::write(&p, serde_json::to_vec_pretty(&v).expect("json")).map_err(io(&p))?;
        Ok(svg)
    }

    /// The charts kept with result `id`.
    pub fn charts(&self, id: &str) -> Result<Vec<ChartSpec>, WorkspaceError> {
        let p = self.result_path(id)?.join("charts.json");
        if !p.is_file() {
            return Ok(Vec::new());
        }
        let text = fs::read(&p).map_err(io(&p))?;
        serde_json::from_slice(&text).map_err(|e| WorkspaceError::Sql(format!("charts of {id}: {e}")))
    }

    /// Draws `spec` from result `id` as an SVG element.
    pub fn chart_svg(&self, id: &str, spec: &ChartSpec) -> Result<String, WorkspaceError> {
        let info = self.result_info(id)?;
        if info.row_level {
            return Err(refused(format!("result {id} is row-level; only aggregate results are charted")));
        }
        let col = |name: &str| {
            info.columns
                .iter()
                .position(|c| c == name)
                .ok_or_else(|| refused(format!("result {id} has no column {name:?}")))
        };
        let (xi, yi) = (col(&spec.x)?, col(&spec.y)?);
        let cap = match spec.kind {
            ChartKind::Bar => MAX_BARS,
            ChartKind::Line => MAX_POINTS,
        };
        if info.rows as usize > cap {
            return Err(refused(format!(
                "result {id} has {} rows; a {:?} chart shows at most {cap}",
                info.rows, spec.kind
            )));
        }
        let rows = self.all_cells(id)?;
        let mut pts = Vec::with_capacity(rows.len());
        for (i, r) in rows.iter().enumerate() {
            let y: f64 = r[yi]
                .trim()
                .parse()
                .map_err(|_| refused(format!("row {}: column {} is {:?}, not a number", i + 1, spec.y, r[yi])))?;
            pts.push((r[xi].clone(), y));
        }
        Ok(svg(spec, &pts))
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Draws the points; labels are escaped, so a value cannot inject markup.
pub fn svg(spec: &ChartSpec, pts: &[(String, f64)]) -> String {
    let (w, h, left, bottom, top, right) = (720.0, 360.0, 64.0, 72.0, 16.0, 16.0);
    let plot_w: f64 = w - left - right;
    let plot_h: f64 = h - top - bottom;
    let max = pts.iter().map(|p| p.1).fold(0.0f64, f64::max);
    let min = pts.iter().map(|p| p.1).fold(0.0f64, f64::min);
    let span = if max - min > 0.0 { max - min } else { 1.0 };
    let y_of = |v: f64| top + plot_h * (max - v) / span;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" viewBox="0 0 {w} {h}" width="{w}" height="{h}"><title>{} / {}</title>"#,
        esc(&spec.y),
        esc(&spec.x)
    );
    // Axes and a few value ticks.
    let _ = write!(
        s,
        r##"<line x1="{left}" y1="{top}" x2="{left}" y2="{}" stroke="#333"/><line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="#333"/>"##,
        top + plot_h,
        y_of(0.0),
        left + plot_w,
        y_of(0.0)
    );
    for k in 0..=4 {
        let v = min + span * k as f64 / 4.0;
        let _ = write!(
            s,
            r##"<text x="{}" y="{:.1}" font-size="11" text-anchor="end" fill="#333">{}</text>"##,
            left - 4.0,
            y_of(v) + 4.0,
            fmt_num(v)
        );
    }
    let n = pts.len().max(1) as f64;
    match spec.kind {
        ChartKind::Bar => {
            let slot = plot_w / n;
            for (i, (label, v)) in pts.iter().enumerate() {
                let x = left + slot * i as f64 + slot * 0.1;
                let (y0, y1) = (y_of(0.0), y_of(*v));
                let _ = write!(
                    s,
                    r##"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#457b9d"><title>{}: {}</title></rect>"##,
                    y0.min(y1),
                    slot * 0.8,
                    (y0 - y1).abs(),
                    esc(label),
                    fmt_num(*v)
                );
                let cx = x + slot * 0.4;
                let _ = write!(
                    s,
                    r##"<text x="{cx:.1}" y="{:.1}" font-size="11" text-anchor="end" transform="rotate(-40 {cx:.1} {:.1})" fill="#333">{}</text>"##,
                    top + plot_h + 14.0,
                    top + plot_h + 14.0,
                    esc(&label.chars().take(18).collect::<String>())
                );
            }
        }
        ChartKind::Line => {
            let step = if pts.len() > 1 { plot_w / (pts.len() - 1) as f64 } else { 0.0 };
            let path: Vec<String> = pts
                .iter()
                .enumerate()
                .map(|(i, (_, v))| format!("{:.1},{:.1}", left + step * i as f64, y_of(*v)))
                .collect();
            let _ =
                write!(s, r##"<polyline fill="none" stroke="#457b9d" stroke-width="2" points="{}"/>"##, path.join(" "));
            let every = (pts.len() / 12).max(1);
            for (i, (label, _)) in pts.iter().enumerate().filter(|(i, _)| i % every == 0) {
                let cx = left + step * i as f64;
                let _ = write!(
                    s,
                    r##"<text x="{cx:.1}" y="{:.1}" font-size="11" text-anchor="end" transform="rotate(-40 {cx:.1} {:.1})" fill="#333">{}</text>"##,
                    top + plot_h + 14.0,
                    top + plot_h + 14.0,
                    esc(&label.chars().take(18).collect::<String>())
                );
            }
        }
    }
    s.push_str("</svg>");
    s
}

fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{}", v as i64) } else { format!("{v:.2}") }
}
