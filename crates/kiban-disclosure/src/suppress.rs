//! Secondary suppression (O9) by the hypercube method over cubes with all margins, extended to
//! linked tables sharing margins by modular iteration. Every primary gets a hypercube whose
//! corners are all suppressed and whose values let the primary move by its protection interval:
//! that hypercube is a feasible attack-side perturbation, so it proves the protection and is kept
//! as a witness for the audit.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::decl::{CostKind, Protection};
use crate::lpsup::{LpOptions, Perturbation, System, protect_lp};
use crate::modular::ModularOptions;
use crate::table::Cube;

/// A cell's identity across linked tables: its non-total (dimension, level) pairs.
pub type CellKey = Vec<(String, String)>;

/// Publication status of a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CellStatus {
    /// Shown.
    Published,
    /// Suppressed because a rule forbids showing it.
    Primary,
    /// Suppressed to protect other cells.
    Secondary,
}

impl CellStatus {
    /// Whether the cell is hidden.
    pub fn suppressed(self) -> bool {
        self != CellStatus::Published
    }
}

/// A hypercube protecting one cell: for each dimension the partner level (`b_d`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Witness {
    /// Table index.
    pub table: usize,
    /// The protected cell.
    pub cell: usize,
    /// Partner level per dimension.
    pub partner: Vec<usize>,
}

/// The result of secondary suppression over one or more linked tables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suppression {
    /// Status per table per cell.
    pub status: Vec<Vec<CellStatus>>,
    /// The hypercube chosen for each protected cell.
    pub witnesses: Vec<Witness>,
    /// Cells (table, index) for which no protecting hypercube exists.
    pub unprotected: Vec<(usize, usize)>,
    /// Feasible perturbations proving each primary's protection (LP method).
    #[serde(default)]
    pub perturbations: Vec<Perturbation>,
}

impl Suppression {
    /// Number and total value of suppressed cells in table `t` (primary, secondary).
    pub fn totals(&self, tables: &[Cube], t: usize) -> SuppressionTotals {
        let mut s = SuppressionTotals::default();
        for (i, st) in self.status[t].iter().enumerate() {
            let v = tables[t].values[i];
            match st {
                CellStatus::Primary => {
                    s.primary_cells += 1;
                    s.primary_value += v;
                }
                CellStatus::Secondary => {
                    s.secondary_cells += 1;
                    s.secondary_value += v;
                }
                CellStatus::Published => {}
            }
        }
        s
    }
}

/// Counts and sums of suppressed cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SuppressionTotals {
    /// Primary cells.
    pub primary_cells: usize,
    /// Sum of primary values.
    pub primary_value: i64,
    /// Secondary cells.
    pub secondary_cells: usize,
    /// Sum of secondary values.
    pub secondary_value: i64,
}

/// The corners of the hypercube spanned by `a` and partners `b`: (flat index, sign).
pub fn corners(cube: &Cube, a: &[usize], b: &[usize]) -> Vec<(usize, i8)> {
    let st = cube.strides();
    let nd = a.len();
    (0..1usize << nd)
        .map(|mask| {
            let mut idx = 0;
            let mut sign = 1i8;
            for d in 0..nd {
                if mask >> d & 1 == 1 {
                    idx += b[d] * st[d];
                    if a[d] != cube.dims[d].total() && b[d] != cube.dims[d].total() {
                        sign = -sign;
                    }
                } else {
                    idx += a[d] * st[d];
                }
            }
            (idx, sign)
        })
        .collect()
}

/// Safe movement of the protected cell along a hypercube: (down, up).
pub fn hypercube_range(cube: &Cube, cs: &[(usize, i8)]) -> (f64, f64) {
    let mut down = f64::INFINITY;
    let mut up = f64::INFINITY;
    for &(i, s) in cs {
        let v = cube.values[i] as f64;
        if s > 0 { down = down.min(v) } else { up = up.min(v) }
    }
    (down, up)
}

fn cell_cost(cube: &Cube, idx: usize, cost: CostKind, margin_pen: f64) -> f64 {
    let base = match cost {
        CostKind::Value => cube.values[idx] as f64 + 0.5,
        CostKind::Count => 1.0,
    };
    base + margin_pen
}

/// Finds the cheapest hypercube protecting `idx` given current suppressions; `None` if none exists.
pub(crate) fn best_hypercube(
    cube: &Cube,
    idx: usize,
    suppressed: &[bool],
    prot: &Protection,
    budget: usize,
) -> Option<(Vec<usize>, f64)> {
    let a = cube.coords(idx);
    let nd = a.len();
    let st = cube.strides();
    let (lpl, upl) = prot.required(cube.values[idx]);
    let tot_of: Vec<usize> = cube.dims.iter().map(|d| d.total()).collect();
    let k = ((budget as f64).powf(1.0 / nd as f64).floor() as usize).max(2);
    let total_pen = |i: usize| -> f64 {
        let c = cube.coords(i);
        c.iter().enumerate().filter(|(d, x)| **x == cube.dims[*d].total()).count() as f64 * 0.25
    };
    let cost_of = |i: usize| if suppressed[i] { 0.0 } else { cell_cost(cube, i, prot.cost, total_pen(i)) };
    let mut cands: Vec<Vec<usize>> = Vec::with_capacity(nd);
    for d in 0..nd {
        let tot = cube.dims[d].total();
        let mut list: Vec<(f64, usize)> = Vec::new();
        for l in 0..cube.dims[d].size() {
            if l == a[d] {
                continue;
            }
            let neg = a[d] != tot && l != tot;
            let e = idx + l * st[d] - a[d] * st[d];
            let v = cube.values[e] as f64;
            if (neg && v < upl) || (!neg && v < lpl) {
                continue;
            }
            list.push((cost_of(e), l));
        }
        if list.is_empty() {
            return None;
        }
        list.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
        let mut chosen: Vec<usize> = list.iter().take(k).map(|x| x.1).collect();
        if a[d] != tot && !chosen.contains(&tot) && list.iter().any(|x| x.1 == tot) {
            chosen.push(tot);
        }
        cands.push(chosen);
    }
    let mut best: Option<(Vec<usize>, f64)> = None;
    let mut pick = vec![0usize; nd];
    let mut b = vec![0usize; nd];
    'outer: loop {
        for d in 0..nd {
            b[d] = cands[d][pick[d]];
        }
        let bound = best.as_ref().map_or(f64::INFINITY, |x| x.1);
        let mut cost = 0.0;
        let mut ok = true;
        for mask in 1..(1usize << nd) {
            let mut ci = 0;
            let mut sign = 1i8;
            let mut tots = 0usize;
            for d in 0..nd {
                let (x, moved) = if mask >> d & 1 == 1 { (b[d], true) } else { (a[d], false) };
                ci += x * st[d];
                if x == tot_of[d] {
                    tots += 1;
                }
                if moved && a[d] != tot_of[d] && b[d] != tot_of[d] {
                    sign = -sign;
                }
            }
            let v = cube.values[ci] as f64;
            if (sign < 0 && v < upl) || (sign > 0 && v < lpl) {
                ok = false;
                break;
            }
            if !suppressed[ci] {
                cost += cell_cost(cube, ci, prot.cost, tots as f64 * 0.25);
            }
            if cost >= bound {
                ok = false;
                break;
            }
        }
        if ok {
            best = Some((b.clone(), cost));
        }
        // odometer
        for d in 0..nd {
            pick[d] += 1;
            if pick[d] < cands[d].len() {
                continue 'outer;
            }
            pick[d] = 0;
        }
        break;
    }
    best
}

/// Options for secondary suppression.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SuppressOptions {
    /// Hypercubes examined per protected cell (candidates per dimension = budget^(1/N)).
    pub budget: usize,
    /// Tables (all linked tables together) up to this many cells use the LP method; larger ones
    /// the hypercube method.
    pub exact_max_cells: usize,
    /// Run the LP method's cleanup pass (drops complementary cells no primary needs).
    pub cleanup: bool,
    /// Levels per dimension of the sub-cube the LP method tries first for each primary once
    /// `full_seconds` have passed (0: always the whole table).
    pub neighbourhood: usize,
    /// CPU seconds (of the calling thread) during which the LP method solves each primary over the whole table.
    pub full_seconds: f64,
    /// CPU seconds (of the calling thread) after which the remaining primaries of a single table get hypercubes.
    pub lp_seconds: f64,
    /// CPU seconds (of the calling thread) after which the cleanup pass stops (every step leaves a protected table).
    pub cleanup_seconds: f64,
    /// Single tables above `exact_max_cells` use the modular method ([`crate::modular`]) with
    /// sub-tables of up to about this many cells per primary (0: the hypercube method instead).
    pub modular_cells: usize,
    /// CPU seconds (of the calling thread) of sub-table LPs in the modular method (smaller sub-tables when short of
    /// time; hypercubes for the primaries left after it).
    pub modular_lp_seconds: f64,
    /// CPU seconds (of the calling thread) of the modular method's cleanup pass.
    pub modular_cleanup_seconds: f64,
}

impl Default for SuppressOptions {
    fn default() -> Self {
        SuppressOptions {
            budget: 4096,
            exact_max_cells: 2500,
            cleanup: true,
            neighbourhood: 4,
            full_seconds: 20.0,
            lp_seconds: 30.0,
            cleanup_seconds: 20.0,
            modular_cells: 1000,
            modular_lp_seconds: 25.0,
            modular_cleanup_seconds: 10.0,
        }
    }
}

/// The method [`protect`] uses for some tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// One LP over all linked tables per primary, with cleanup ([`crate::lpsup`]).
    Lp,
    /// LPs over a sub-table around each primary, with cleanup ([`crate::modular`]).
    Modular,
    /// Cheapest hypercube per primary.
    Hypercube,
}

/// The method [`protect`] uses for these tables.
pub fn method(tables: &[Cube], opts: SuppressOptions) -> Method {
    if uses_lp(tables, opts) {
        Method::Lp
    } else if tables.len() == 1 && opts.modular_cells > 0 {
        Method::Modular
    } else {
        Method::Hypercube
    }
}

/// Whether [`protect`] uses the LP method over the whole tables.
pub fn uses_lp(tables: &[Cube], opts: SuppressOptions) -> bool {
    tables.iter().map(|t| t.len()).sum::<usize>() <= opts.exact_max_cells
}

/// The LP method over all linked tables at once (see [`crate::lpsup`]).
fn protect_exact(tables: &[Cube], primary: &[Vec<bool>], prot: &Protection, opts: SuppressOptions) -> Suppression {
    let sys = System::new(tables);
    let mut prim = vec![false; sys.value.len()];
    for (t, p) in primary.iter().enumerate() {
        for (i, &x) in p.iter().enumerate() {
            prim[sys.var_of[t][i]] |= x;
        }
    }
    let lp = LpOptions {
        cleanup: opts.cleanup,
        neighbourhood: opts.neighbourhood,
        full_seconds: opts.full_seconds,
        lp_seconds: opts.lp_seconds,
        cleanup_seconds: opts.cleanup_seconds,
    };
    // A single table's variables are its cells, so a hypercube's corners are variables too.
    let hyper = |p: usize, sup: &[bool]| -> Option<(Vec<usize>, Vec<usize>)> {
        let cube = &tables[0];
        let (b, _) = best_hypercube(cube, p, sup, prot, opts.budget)?;
        let cells = corners(cube, &cube.coords(p), &b).into_iter().map(|(i, _)| i).collect();
        Some((b, cells))
    };
    let out = protect_lp(tables, &sys, &prim, prot, lp, &hyper);
    let status = sys
        .var_of
        .iter()
        .map(|vo| {
            vo.iter()
                .map(|&v| {
                    if prim[v] {
                        CellStatus::Primary
                    } else if out.suppressed[v] {
                        CellStatus::Secondary
                    } else {
                        CellStatus::Published
                    }
                })
                .collect()
        })
        .collect();
    let unprotected = out.unprotected.iter().map(|&v| sys.cells[v]).collect();
    let witnesses = out.hypercubes.into_iter().map(|(cell, partner)| Witness { table: 0, cell, partner }).collect();
    Suppression { status, witnesses, unprotected, perturbations: out.witnesses }
}

/// Chooses secondary suppressions so that every primary (and every cell suppressed in a table it
/// shares with another) has a hypercube meeting the protection interval.
pub fn protect(tables: &[Cube], primary: &[Vec<bool>], prot: &Protection, opts: SuppressOptions) -> Suppression {
    match method(tables, opts) {
        Method::Lp => protect_exact(tables, primary, prot, opts),
        Method::Modular => protect_modular(tables, primary, prot, opts),
        Method::Hypercube => protect_hypercube(tables, primary, prot, opts),
    }
}

/// The modular method on one table (see [`crate::modular`]).
pub fn protect_modular(
    tables: &[Cube],
    primary: &[Vec<bool>],
    prot: &Protection,
    opts: SuppressOptions,
) -> Suppression {
    let m = ModularOptions {
        cells: opts.modular_cells.max(1),
        lp_seconds: opts.modular_lp_seconds,
        cleanup_seconds: opts.modular_cleanup_seconds,
        budget: opts.budget,
    };
    crate::modular::protect_modular(&tables[0], &primary[0], prot, m)
}

/// The hypercube method (for tables too large for the LP method).
pub fn protect_hypercube(
    tables: &[Cube],
    primary: &[Vec<bool>],
    prot: &Protection,
    opts: SuppressOptions,
) -> Suppression {
    let mut status: Vec<Vec<CellStatus>> = primary
        .iter()
        .map(|p| p.iter().map(|&x| if x { CellStatus::Primary } else { CellStatus::Published }).collect())
        .collect();
    let mut suppressed: Vec<Vec<bool>> = primary.to_vec();
    let mut done: Vec<Vec<bool>> = tables.iter().map(|t| vec![false; t.len()]).collect();
    // Shared cells across linked tables (only built when there is more than one table).
    let mut shared: HashMap<CellKey, Vec<(usize, usize)>> = HashMap::new();
    if tables.len() > 1 {
        for (t, c) in tables.iter().enumerate() {
            for i in 0..c.len() {
                shared.entry(c.key(i)).or_default().push((t, i));
            }
        }
        shared.retain(|_, v| v.len() > 1);
        // A primary in one table is hidden in all.
        for cells in shared.values() {
            if cells.iter().any(|&(t, i)| primary[t][i]) {
                for &(t, i) in cells {
                    if !suppressed[t][i] {
                        suppressed[t][i] = true;
                        status[t][i] = CellStatus::Primary;
                    }
                }
            }
        }
    }
    let mut witnesses = Vec::new();
    let mut unprotected = Vec::new();
    loop {
        let mut changed = false;
        for (t, cube) in tables.iter().enumerate() {
            let mut todo: Vec<usize> = (0..cube.len()).filter(|&i| suppressed[t][i] && !done[t][i]).collect();
            todo.sort_by_key(|&i| (std::cmp::Reverse(prot.required(cube.values[i]).1 as i64), i));
            for i in todo {
                done[t][i] = true;
                changed = true;
                match best_hypercube(cube, i, &suppressed[t], prot, opts.budget) {
                    Some((b, _)) => {
                        let a = cube.coords(i);
                        for (ci, _) in corners(cube, &a, &b) {
                            if !suppressed[t][ci] {
                                suppressed[t][ci] = true;
                                status[t][ci] = CellStatus::Secondary;
                                if !shared.is_empty()
                                    && let Some(cells) = shared.get(&cube.key(ci))
                                {
                                    for &(u, j) in cells {
                                        if !suppressed[u][j] {
                                            suppressed[u][j] = true;
                                            status[u][j] = CellStatus::Secondary;
                                        }
                                    }
                                }
                            }
                        }
                        witnesses.push(Witness { table: t, cell: i, partner: b });
                    }
                    None => unprotected.push((t, i)),
                }
            }
        }
        if !changed {
            break;
        }
    }
    Suppression { status, witnesses, unprotected, perturbations: Vec::new() }
}
