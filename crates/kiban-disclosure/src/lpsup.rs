//! Secondary suppression by linear programming, one primary at a time (the Kelly–Golden–Assad
//! heuristic for the Fischetti–Salazar protection-level model, no commercial solver): for each
//! primary and each direction, the cheapest perturbation of the (linked) tables that keeps every
//! additivity equation and non-negativity and moves the primary by its protection level; the cells
//! it touches are suppressed (already suppressed cells cost almost nothing, so later primaries
//! reuse earlier patterns). A cleanup pass then drops complementary cells, costliest first, while
//! every primary still has both perturbations. Each perturbation is a table an attacker cannot rule
//! out, so it is kept as a witness the audit verifies independently.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::decl::{CostKind, Protection};
use crate::table::Cube;

/// A feasible attacker-side change of the tables moving one cell: (table, cell, delta) per changed
/// cell, the changes of a shared cell listed under every table that holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Perturbation {
    /// Table of the protected cell.
    pub table: usize,
    /// The protected cell.
    pub cell: usize,
    /// Changed cells with their deltas (the protected cell included).
    pub deltas: Vec<(usize, usize, f64)>,
}

/// The linear system of linked tables: one variable per distinct cell (shared cells merged by key).
pub(crate) struct System {
    /// First (table, cell) of each variable.
    pub cells: Vec<(usize, usize)>,
    /// All (table, cell) of each variable.
    pub copies: Vec<Vec<(usize, usize)>>,
    /// Variable of each (table, cell).
    pub var_of: Vec<Vec<usize>>,
    /// Equations Σ coef·x = 0.
    pub eqs: Vec<Vec<(usize, f64)>>,
    /// True value per variable.
    pub value: Vec<f64>,
}

impl System {
    pub fn new(tables: &[Cube]) -> Self {
        let mut cells = Vec::new();
        let mut copies: Vec<Vec<(usize, usize)>> = Vec::new();
        let mut var_of = Vec::with_capacity(tables.len());
        let mut by_key: HashMap<Vec<(String, String)>, usize> = HashMap::new();
        let mut value = Vec::new();
        for (t, c) in tables.iter().enumerate() {
            let mut vo = Vec::with_capacity(c.len());
            for i in 0..c.len() {
                let v = if tables.len() > 1 {
                    *by_key.entry(c.key(i)).or_insert_with(|| {
                        cells.push((t, i));
                        copies.push(Vec::new());
                        value.push(c.values[i] as f64);
                        cells.len() - 1
                    })
                } else {
                    cells.push((t, i));
                    copies.push(Vec::new());
                    value.push(c.values[i] as f64);
                    cells.len() - 1
                };
                copies[v].push((t, i));
                vo.push(v);
            }
            var_of.push(vo);
        }
        let mut eqs = Vec::new();
        for (t, c) in tables.iter().enumerate() {
            for (tot, parts) in c.constraints() {
                let mut e: Vec<(usize, f64)> = parts.iter().map(|&p| (var_of[t][p], 1.0)).collect();
                e.push((var_of[t][tot], -1.0));
                eqs.push(e);
            }
        }
        System { cells, copies, var_of, eqs, value }
    }

    /// The cheapest perturbations moving `target` by each of `amounts` (positive up, negative
    /// down), using only variables with `weight[v]` finite. A cell's cost is paid once however
    /// many of the perturbations use it (the Fischetti–Salazar relaxation for one primary:
    /// `z_v ≥ |y_v| / |amount|` for each perturbation, minimize Σ weight·z). `None` when some
    /// perturbation does not exist.
    pub fn perturb(&self, target: usize, amounts: &[f64], weight: &[f64]) -> Option<Vec<Vec<(usize, f64)>>> {
        use microlp::{ComparisonOp, OptimizationDirection, Problem, Variable};
        let mut pb = Problem::new(OptimizationDirection::Minimize);
        let k = amounts.len();
        // Per allowed cell: (up, down) per perturbation, and the shared usage z.
        let mut ys: Vec<Option<Vec<(Variable, Variable)>>> = vec![None; self.value.len()];
        for v in 0..self.value.len() {
            if v == target {
                let mut pair = Vec::with_capacity(k);
                for &a in amounts {
                    let (u, d) = if a >= 0.0 { (a, 0.0) } else { (0.0, -a) };
                    if d > self.value[v] {
                        return None;
                    }
                    pair.push((pb.add_var(0.0, (u, u)), pb.add_var(0.0, (d, d))));
                }
                ys[v] = Some(pair);
            } else if weight[v].is_finite() {
                let z = pb.add_var(weight[v], (0.0, f64::INFINITY));
                let mut pair = Vec::with_capacity(k);
                for &a in amounts {
                    let u = pb.add_var(0.0, (0.0, f64::INFINITY));
                    let d = pb.add_var(0.0, (0.0, self.value[v]));
                    pb.add_constraint([(u, 1.0), (d, 1.0), (z, -a.abs())], ComparisonOp::Le, 0.0);
                    pair.push((u, d));
                }
                ys[v] = Some(pair);
            }
        }
        for j in 0..k {
            for e in &self.eqs {
                let mut expr: Vec<(Variable, f64)> = Vec::with_capacity(e.len() * 2);
                for &(v, a) in e {
                    if let Some(pair) = &ys[v] {
                        expr.push((pair[j].0, a));
                        expr.push((pair[j].1, -a));
                    }
                }
                if !expr.is_empty() {
                    pb.add_constraint(expr.as_slice(), ComparisonOp::Eq, 0.0);
                }
            }
        }
        let sol = pb.solve().ok()?;
        let mut out = vec![Vec::new(); k];
        for (v, y) in ys.iter().enumerate() {
            if let Some(pair) = y {
                for (j, (u, d)) in pair.iter().enumerate() {
                    let x = sol[*u] - sol[*d];
                    if x.abs() > 1e-7 {
                        out[j].push((v, x));
                    }
                }
            }
        }
        Some(out)
    }

    /// The cheapest perturbation moving `target` up by `up` whose mirror image scaled by
    /// `down / up` is also feasible, so one pattern protects both sides (cycles are symmetric);
    /// returns (up perturbation, down perturbation).
    #[allow(clippy::type_complexity)]
    pub fn perturb_symmetric(
        &self,
        target: usize,
        up: f64,
        down: f64,
        weight: &[f64],
    ) -> Option<(Vec<(usize, f64)>, Vec<(usize, f64)>)> {
        use microlp::{ComparisonOp, OptimizationDirection, Problem, Variable};
        if up <= 0.0 || down <= 0.0 || down > self.value[target] {
            return None;
        }
        let ratio = down / up;
        let mut pb = Problem::new(OptimizationDirection::Minimize);
        let mut ys: Vec<Option<(Variable, Variable)>> = vec![None; self.value.len()];
        for v in 0..self.value.len() {
            if v == target {
                ys[v] = Some((pb.add_var(0.0, (up, up)), pb.add_var(0.0, (0.0, 0.0))));
            } else if weight[v].is_finite() {
                let w = weight[v];
                // Up side keeps the cell ≥ 0 (d ≤ value); the mirrored down side too (u·ratio ≤ value).
                ys[v] = Some((pb.add_var(w, (0.0, self.value[v] / ratio)), pb.add_var(w, (0.0, self.value[v]))));
            }
        }
        for e in &self.eqs {
            let mut expr: Vec<(Variable, f64)> = Vec::with_capacity(e.len() * 2);
            for &(v, a) in e {
                if let Some((u, d)) = ys[v] {
                    expr.push((u, a));
                    expr.push((d, -a));
                }
            }
            if !expr.is_empty() {
                pb.add_constraint(expr.as_slice(), ComparisonOp::Eq, 0.0);
            }
        }
        let sol = pb.solve().ok()?;
        let mut upv = Vec::new();
        for (v, y) in ys.iter().enumerate() {
            if let Some((u, d)) = y {
                let x = sol[*u] - sol[*d];
                if x.abs() > 1e-7 {
                    upv.push((v, x));
                }
            }
        }
        let downv = upv.iter().map(|&(v, x)| (v, -x * ratio)).collect();
        Some((upv, downv))
    }

    fn to_perturbation(&self, target: usize, deltas: &[(usize, f64)]) -> Perturbation {
        let (table, cell) = self.cells[target];
        let deltas =
            deltas.iter().flat_map(|&(v, x)| self.copies[v].iter().map(move |&(t, i)| (t, i, x))).collect::<Vec<_>>();
        Perturbation { table, cell, deltas }
    }
}

/// Cost of suppressing one more cell.
pub(crate) fn cost(value: f64, margin_dims: usize, kind: CostKind) -> f64 {
    let base = match kind {
        CostKind::Value => value + 0.5,
        CostKind::Count => 1.0,
    };
    base + 0.25 * margin_dims as f64
}

/// Outcome of the LP method: suppressed flags per variable, witnesses, unprotectable primaries.
pub(crate) struct LpOutcome {
    pub suppressed: Vec<bool>,
    pub witnesses: Vec<Perturbation>,
    /// Primaries protected by a hypercube (partner levels) once LP time ran out.
    pub hypercubes: Vec<(usize, Vec<usize>)>,
    pub unprotected: Vec<usize>,
}

/// Knobs of the LP method.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct LpOptions {
    /// Run the cleanup pass.
    pub cleanup: bool,
    /// Levels per dimension (besides the primary's own and the total) of the sub-cube the LP for a
    /// primary uses once `full_seconds` have passed; the whole table only when that cannot protect it.
    pub neighbourhood: usize,
    /// CPU seconds during which every primary gets the LP over the whole table (the best patterns).
    pub full_seconds: f64,
    /// CPU seconds after which the remaining primaries of a single table get hypercubes instead.
    pub lp_seconds: f64,
    /// CPU seconds after which the cleanup pass stops (its result is valid at every step).
    pub cleanup_seconds: f64,
}

/// Cells of the sub-cube around `idx` spanned, per dimension, by its own level, the total and the
/// `k` levels whose cell on the line through `idx` is cheapest.
fn neighbourhood(cube: &Cube, idx: usize, k: usize, cost: &[f64]) -> Vec<usize> {
    let a = cube.coords(idx);
    let st = cube.strides();
    let mut levels: Vec<Vec<usize>> = Vec::with_capacity(a.len());
    for d in 0..a.len() {
        let tot = cube.dims[d].total();
        let mut l: Vec<(f64, usize)> = (0..cube.dims[d].levels.len())
            .filter(|&x| x != a[d])
            .map(|x| (cost[idx + x * st[d] - a[d] * st[d]], x))
            .collect();
        l.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
        let mut chosen: Vec<usize> = l.iter().take(k).map(|x| x.1).collect();
        chosen.push(a[d]);
        if a[d] != tot {
            chosen.push(tot);
        }
        levels.push(chosen);
    }
    let mut out = vec![0usize];
    for (d, ls) in levels.iter().enumerate() {
        let s = st[d];
        out = out.iter().flat_map(|&b| ls.iter().map(move |&l| b + l * s)).collect();
    }
    out
}

/// Cheapest hypercube for a primary given the hidden cells: (partner levels, its cells).
pub(crate) type HypercubeFn<'a> = dyn Fn(usize, &[bool]) -> Option<(Vec<usize>, Vec<usize>)> + 'a;

/// Runs the one-primary-at-a-time LP heuristic and the cleanup pass over the system; `hypercube`
/// gives (partner levels, cells) of the cheapest hypercube for a primary of a single table.
pub(crate) fn protect_lp(
    tables: &[Cube],
    sys: &System,
    primary: &[bool],
    prot: &Protection,
    opts: LpOptions,
    hypercube: &HypercubeFn<'_>,
) -> LpOutcome {
    let started = cpu_time::ThreadTime::now();
    let n = sys.value.len();
    let cst: Vec<f64> = (0..n)
        .map(|v| {
            let (t, i) = sys.cells[v];
            let c = &tables[t];
            let md = c.coords(i).iter().enumerate().filter(|(d, x)| **x == c.dims[*d].total()).count();
            cost(sys.value[v], md, prot.cost)
        })
        .collect();
    let mut suppressed = primary.to_vec();
    // Largest protection first: their patterns are the costliest and the most reusable.
    let mut prims: Vec<usize> = (0..n).filter(|&v| primary[v]).collect();
    prims.sort_by(|&a, &b| {
        let ra = prot.required(sys.value[a] as i64).1;
        let rb = prot.required(sys.value[b] as i64).1;
        rb.total_cmp(&ra).then(a.cmp(&b))
    });
    let mut unprotected = Vec::new();
    // Cells of hypercube patterns (kept by the cleanup pass) and those patterns.
    let mut pinned = vec![false; n];
    let mut hyper: Vec<(usize, Vec<usize>)> = Vec::new();
    let mut wit: HashMap<(usize, bool), Vec<(usize, f64)>> = HashMap::new();
    for &p in &prims {
        let (lo, up) = prot.required(sys.value[p] as i64);
        let dirs: Vec<(bool, f64)> = [(true, up), (false, -lo)].into_iter().filter(|x| x.1 != 0.0).collect();
        if dirs.is_empty() {
            continue;
        }
        let amounts: Vec<f64> = dirs.iter().map(|x| x.1).collect();
        let secs = started.elapsed().as_secs_f64();
        let single = tables.len() == 1;
        // Out of LP time (single tables): the cheapest hypercube given what is already hidden.
        if single && secs > opts.lp_seconds {
            match hypercube(p, &suppressed) {
                Some((partner, cells)) => {
                    for v in cells {
                        suppressed[v] = true;
                        pinned[v] = true;
                    }
                    hyper.push((p, partner));
                }
                None => unprotected.push(p),
            }
            continue;
        }
        // Already protected by what is hidden: a small LP over the hidden cells settles it.
        let hidden: Vec<f64> = (0..n).map(|v| if suppressed[v] { cst[v] } else { f64::INFINITY }).collect();
        if dirs.len() == 2
            && let Some((u, d)) = sys.perturb_symmetric(p, up, lo, &hidden)
        {
            wit.insert((p, true), u);
            wit.insert((p, false), d);
            continue;
        }
        if let Some(ds) = sys.perturb(p, &amounts, &hidden) {
            for (&(dir, _), d) in dirs.iter().zip(ds) {
                wit.insert((p, dir), d);
            }
            continue;
        }
        // Already suppressed cells cost a little so patterns stay small.
        let weight: Vec<f64> = (0..n).map(|v| if suppressed[v] { 1e-3 } else { cst[v] }).collect();
        // One symmetric pattern for both sides first (cheaper LP); the joint LP when there is none.
        if dirs.len() == 2
            && !(single && secs > opts.full_seconds)
            && let Some((u, d)) = sys.perturb_symmetric(p, up, lo, &weight)
        {
            for &(v, _) in &u {
                suppressed[v] = true;
            }
            wit.insert((p, true), u);
            wit.insert((p, false), d);
            continue;
        }
        let found = if single && secs > opts.full_seconds && opts.neighbourhood > 0 {
            // Short of time: a small sub-cube around the primary, far cheaper to solve.
            let mut local: Vec<f64> = (0..n).map(|v| if suppressed[v] { 1e-3 } else { f64::INFINITY }).collect();
            for c in neighbourhood(&tables[0], p, opts.neighbourhood, &cst) {
                local[c] = weight[c];
            }
            sys.perturb(p, &amounts, &local)
        } else {
            sys.perturb(p, &amounts, &weight)
        };
        match found {
            Some(ds) => {
                for (&(dir, _), d) in dirs.iter().zip(ds) {
                    for &(v, _) in &d {
                        suppressed[v] = true;
                    }
                    wit.insert((p, dir), d);
                }
            }
            None if single && secs > opts.full_seconds => match hypercube(p, &suppressed) {
                Some((partner, cells)) => {
                    for v in cells {
                        suppressed[v] = true;
                        pinned[v] = true;
                    }
                    hyper.push((p, partner));
                }
                None => unprotected.push(p),
            },
            None => unprotected.push(p),
        }
    }
    let cleanup_started = cpu_time::ThreadTime::now();
    if opts.cleanup {
        let mut secs: Vec<usize> = (0..n).filter(|&v| suppressed[v] && !primary[v] && !pinned[v]).collect();
        secs.sort_by(|&a, &b| cst[b].total_cmp(&cst[a]).then(a.cmp(&b)));
        let need: Vec<(usize, f64, f64)> = prims
            .iter()
            .filter(|p| !unprotected.contains(p))
            .map(|&p| {
                let (lo, up) = prot.required(sys.value[p] as i64);
                (p, up, lo)
            })
            .collect();
        let uses = |wit: &HashMap<(usize, bool), Vec<(usize, f64)>>, p: usize, dir: bool, s: usize| {
            wit.get(&(p, dir)).is_some_and(|d| d.iter().any(|x| x.0 == s))
        };
        for s in secs {
            if cleanup_started.elapsed().as_secs_f64() > opts.cleanup_seconds {
                break;
            }
            // Only the primaries whose current witness uses `s` need a new one.
            if !wit.values().any(|d| d.iter().any(|x| x.0 == s)) {
                suppressed[s] = false;
                continue;
            }
            suppressed[s] = false;
            let weight: Vec<f64> = (0..n).map(|v| if suppressed[v] { cst[v] } else { f64::INFINITY }).collect();
            let mut fresh = Vec::new();
            let mut ok = true;
            for &(p, up, lo) in &need {
                let (need_up, need_down) = (uses(&wit, p, true, s), uses(&wit, p, false, s));
                if !need_up && !need_down {
                    continue;
                }
                if let Some((u, d)) = sys.perturb_symmetric(p, up, lo, &weight) {
                    fresh.push(((p, true), u));
                    fresh.push(((p, false), d));
                    continue;
                }
                for (dir, amount, needed) in [(true, up, need_up), (false, -lo, need_down)] {
                    if !needed {
                        continue;
                    }
                    match sys.perturb(p, &[amount], &weight) {
                        Some(mut d) => fresh.push(((p, dir), d.remove(0))),
                        None => {
                            ok = false;
                            break;
                        }
                    }
                }
                if !ok {
                    break;
                }
            }
            if ok {
                wit.extend(fresh);
            } else {
                suppressed[s] = true;
            }
        }
    }
    let mut keys: Vec<_> = wit.keys().copied().collect();
    keys.sort();
    let witnesses = keys.iter().map(|k| sys.to_perturbation(k.0, &wit[k])).collect();
    LpOutcome { suppressed, witnesses, hypercubes: hyper, unprotected }
}

/// Checks a perturbation exactly against the tables and the suppression: every changed cell is
/// suppressed, shared cells change alike, every additivity line through a changed cell still adds
/// up and no cell goes negative. Returns the protected cell's delta. Only the lines through changed
/// cells are summed (a line's unchanged cells add nothing), so large tables cost no more than small.
pub fn verify_perturbation(tables: &[Cube], status: &[Vec<bool>], p: &Perturbation) -> Option<f64> {
    let mut delta: Vec<HashMap<usize, f64>> = vec![HashMap::new(); tables.len()];
    for &(t, i, x) in &p.deltas {
        if t >= tables.len() || i >= tables[t].len() || !status[t][i] {
            return None;
        }
        if tables[t].values[i] as f64 + x < -1e-6 {
            return None;
        }
        delta[t].insert(i, x);
    }
    if tables.len() > 1 {
        let mut by_key: HashMap<Vec<(String, String)>, f64> = HashMap::new();
        for (t, c) in tables.iter().enumerate() {
            for i in 0..c.len() {
                let x = delta[t].get(&i).copied().unwrap_or(0.0);
                let e = by_key.entry(c.key(i)).or_insert(x);
                if (*e - x).abs() > 1e-6 {
                    return None;
                }
            }
        }
    }
    for (t, c) in tables.iter().enumerate() {
        let st = c.strides();
        // Per line (dimension, its cell at level 0): Σ parts − total.
        let mut lines: HashMap<(usize, usize), f64> = HashMap::new();
        for (&i, &x) in &delta[t] {
            for (d, &l) in c.coords(i).iter().enumerate() {
                let signed = if l == c.dims[d].total() { -x } else { x };
                *lines.entry((d, i - l * st[d])).or_insert(0.0) += signed;
            }
        }
        if lines.values().any(|s| s.abs() > 1e-6) {
            return None;
        }
    }
    delta.get(p.table)?.get(&p.cell).copied()
}
