//! A project's publication history (JSON lines, one published table per line) and the
//! differencing check: a new table that, set against an earlier one over the same dimensions
//! (nested categories or a filtered subpopulation), would reveal a small cell.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::DisclosureError;
use crate::rules::{Finding, RuleId, Severity, parse_age};
use crate::suppress::CellStatus;
use crate::table::{CellRef, Cube};

/// One published cell: its coordinates and its value (`None` when suppressed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedCell {
    /// Coordinates (dimension, label); margins carry the table's total label.
    pub cell: CellRef,
    /// Published value, or `None` if suppressed.
    pub value: Option<i64>,
}

/// One table as published, one JSON line of the history file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedTable {
    /// Project id.
    pub project: String,
    /// Table id or title.
    pub table_id: String,
    /// SHA-256 of the protected CSV.
    pub sha256: String,
    /// When it was recorded (RFC 3339).
    pub published_at: String,
    /// Label used for margins.
    pub total_label: String,
    /// Cells.
    pub cells: Vec<PublishedCell>,
}

impl PublishedTable {
    /// Builds a record from a cube and its statuses.
    pub fn from_cube(cube: &Cube, status: &[CellStatus], project: &str, table_id: &str, sha256: &str) -> Self {
        PublishedTable {
            project: project.into(),
            table_id: table_id.into(),
            sha256: sha256.into(),
            published_at: chrono::Utc::now().to_rfc3339(),
            total_label: cube.total_label.clone(),
            cells: (0..cube.len())
                .map(|i| PublishedCell {
                    cell: cube.cell_ref(i),
                    value: (!status[i].suppressed()).then_some(cube.values[i]),
                })
                .collect(),
        }
    }

    fn dims(&self) -> Vec<String> {
        let mut d: Vec<String> =
            self.cells.first().map(|c| c.cell.0.iter().map(|x| x.0.clone()).collect()).unwrap_or_default();
        d.sort();
        d
    }

    fn grand_total(&self) -> Option<i64> {
        self.cells.iter().find(|c| c.cell.0.iter().all(|(_, l)| l == &self.total_label)).and_then(|c| c.value)
    }
}

/// Reads a JSON-lines history; a missing file is an empty history.
pub fn read_history(path: &Path) -> Result<Vec<PublishedTable>, DisclosureError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(DisclosureError::io(path, e)),
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| DisclosureError::History { line: i + 1, message: e.to_string() })
        })
        .collect()
}

/// Appends one record to the history file.
pub fn append_history(path: &Path, t: &PublishedTable) -> Result<(), DisclosureError> {
    let mut f =
        std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| DisclosureError::io(path, e))?;
    let line = serde_json::to_string(t).map_err(|e| DisclosureError::History { line: 0, message: e.to_string() })?;
    writeln!(f, "{line}").map_err(|e| DisclosureError::io(path, e))
}

/// Whether level `outer` (of a table with total label `to`) contains level `inner` (total label `ti`).
fn contains(outer: &str, to: &str, inner: &str, ti: &str) -> bool {
    if outer == to {
        return true;
    }
    if inner == ti {
        return false;
    }
    if outer == inner {
        return true;
    }
    match (parse_age(outer), parse_age(inner)) {
        (Some(o), Some(i)) => {
            o.lo <= i.lo
                && match (o.hi, i.hi) {
                    (None, _) => true,
                    (Some(_), None) => false,
                    (Some(oh), Some(ih)) => ih <= oh,
                }
        }
        _ => false,
    }
}

/// Differencing findings of `new` against every earlier table with the same dimensions: pairs of
/// published cells where one is nested in the other (one dimension's level contains the other's,
/// same population) or the same cell of a filtered subpopulation, whose difference is positive and
/// under `threshold`.
pub fn differencing(new: &PublishedTable, history: &[PublishedTable], threshold: i64) -> Vec<(usize, Finding)> {
    let mut out = Vec::new();
    let dims = new.dims();
    for old in history.iter().filter(|h| h.dims() == dims && h.sha256 != new.sha256) {
        let same_pop = new.grand_total().is_some() && new.grand_total() == old.grand_total();
        let lookup = |t: &PublishedTable, c: &CellRef| -> Vec<(String, String)> {
            let mut k: Vec<(String, String)> =
                c.0.iter()
                    .map(|(d, l)| (d.clone(), if l == &t.total_label { "\u{0}T".to_string() } else { l.clone() }))
                    .collect();
            k.sort();
            k
        };
        let old_map: std::collections::HashMap<Vec<(String, String)>, i64> =
            old.cells.iter().filter_map(|c| c.value.map(|v| (lookup(old, &c.cell), v))).collect();
        // Filtered subpopulation: same coordinates, consistently smaller (or larger) everywhere.
        let common: Vec<(usize, i64, i64)> = new
            .cells
            .iter()
            .enumerate()
            .filter_map(|(i, c)| Some((i, c.value?, *old_map.get(&lookup(new, &c.cell))?)))
            .collect();
        let sub = !same_pop
            && !common.is_empty()
            && (common.iter().all(|(_, n, o)| n <= o) || common.iter().all(|(_, n, o)| n >= o));
        if sub {
            for &(i, n, o) in &common {
                let d = (o - n).abs();
                if d > 0 && d < threshold {
                    out.push((i, diff_finding(new, old, i, &new.cells[i].cell, d, threshold)));
                }
            }
        }
        if same_pop {
            for (i, nc) in new.cells.iter().enumerate() {
                let Some(nv) = nc.value else { continue };
                for oc in &old.cells {
                    let Some(ov) = oc.value else { continue };
                    let mut differing = 0;
                    let mut dir = 0i8;
                    let mut ok = true;
                    for (a, b) in nc.cell.0.iter().zip(&oc.cell.0) {
                        let (an, bn) = (a.1 == new.total_label, b.1 == old.total_label);
                        if a.0 != b.0 {
                            ok = false;
                            break;
                        }
                        if a.1 == b.1 || (an && bn) {
                            continue;
                        }
                        differing += 1;
                        let d = if contains(&b.1, &old.total_label, &a.1, &new.total_label) {
                            1
                        } else if contains(&a.1, &new.total_label, &b.1, &old.total_label) {
                            -1
                        } else {
                            0
                        };
                        if d == 0 || (dir != 0 && d != dir) {
                            ok = false;
                            break;
                        }
                        dir = d;
                    }
                    if !ok || differing != 1 {
                        continue;
                    }
                    let d = if dir > 0 { ov - nv } else { nv - ov };
                    // Nested levels that are both in the same table are handled by its own margins.
                    if d > 0 && d < threshold && !old_map.contains_key(&lookup(new, &nc.cell)) {
                        out.push((i, diff_finding(new, old, i, &nc.cell, d, threshold)));
                        break;
                    }
                }
            }
        }
    }
    out
}

fn diff_finding(_new: &PublishedTable, old: &PublishedTable, _i: usize, cell: &CellRef, d: i64, t: i64) -> Finding {
    let mut f = Finding::table(
        RuleId::Differencing,
        Severity::Suppress,
        format!("過去に公表した表「{}」との差分から{d}({t}未満)が算出できます", old.table_id),
        format!("differencing against earlier table {:?} reveals {d} (under {t})", old.table_id),
    );
    f.cell = Some(cell.clone());
    f.threshold = Some(t);
    f.value = Some(d);
    f
}
