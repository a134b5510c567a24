//! The interval audit (O9): for each suppressed cell, the interval an attacker can infer from the
//! published cells, the additivity of every linked table and non-negativity, by linear programming
//! (min and max of the cell) — or, for components too large for the LP budget, a verified hypercube
//! witness, a feasible published-consistent table that proves the interval is at least that wide.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::DisclosureError;
use crate::decl::Protection;
use crate::lpsup::verify_perturbation;
use crate::suppress::{CellStatus, Suppression, corners, hypercube_range};
use crate::table::{CellRef, Cube};

/// How an interval was established.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditMethod {
    /// Exact attacker interval by linear programming.
    Lp,
    /// Inner bound of the attacker interval from a verified hypercube perturbation.
    Witness,
    /// Neither was possible within the budget: not proven.
    Unproven,
}

/// The audit of one suppressed cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Table index.
    pub table: usize,
    /// The cell.
    pub cell: CellRef,
    /// Flat index.
    #[serde(skip)]
    pub index: usize,
    /// True value (never published; kept for the checker's report only).
    pub value: i64,
    /// Primary (rule) suppression; secondary cells need no protection.
    pub primary: bool,
    /// Required interval `[value - lower, value + upper]` must lie within the attacker interval.
    pub required_lower: f64,
    /// See `required_lower`.
    pub required_upper: f64,
    /// Attacker's minimum (or a proven upper bound of it).
    pub min: f64,
    /// Attacker's maximum (or a proven lower bound of it); infinite when unbounded.
    pub max: f64,
    /// How the interval was found.
    pub method: AuditMethod,
    /// Whether the requirement is met (always true for secondary cells).
    pub protected: bool,
}

/// The audit of a suppression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Audit {
    /// One entry per suppressed cell (shared cells once, under their first table).
    pub entries: Vec<AuditEntry>,
    /// Whether every primary meets its requirement.
    pub passed: bool,
    /// Number of LP components solved and the largest.
    pub lp_components: usize,
    /// Largest component solved by LP.
    pub largest_lp_component: usize,
}

/// Audit options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditOptions {
    /// Components with more suppressed cells than this are proven by witnesses instead of LP.
    pub lp_max_component: usize,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions { lp_max_component: 400 }
    }
}

struct Dsu(Vec<usize>);
impl Dsu {
    fn find(&mut self, x: usize) -> usize {
        let mut r = x;
        while self.0[r] != r {
            r = self.0[r];
        }
        let mut y = x;
        while self.0[y] != r {
            let n = self.0[y];
            self.0[y] = r;
            y = n;
        }
        r
    }
    fn union(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        if a != b {
            self.0[a] = b;
        }
    }
}

const EPS: f64 = 1e-6;

/// Audits a suppression of linked tables against the protection requirement.
pub fn audit(
    tables: &[Cube],
    sup: &Suppression,
    prot: &Protection,
    opts: AuditOptions,
) -> Result<Audit, DisclosureError> {
    // Variables: suppressed cells, shared cells merged by key.
    let mut var_of: Vec<HashMap<usize, usize>> = vec![HashMap::new(); tables.len()];
    let mut vars: Vec<(usize, usize)> = Vec::new();
    let mut by_key: HashMap<Vec<(String, String)>, usize> = HashMap::new();
    let mut prim: Vec<bool> = Vec::new();
    for (t, cube) in tables.iter().enumerate() {
        for (i, st) in sup.status[t].iter().enumerate() {
            if !st.suppressed() {
                continue;
            }
            let v = if tables.len() > 1 {
                *by_key.entry(cube.key(i)).or_insert_with(|| {
                    vars.push((t, i));
                    vars.len() - 1
                })
            } else {
                vars.push((t, i));
                vars.len() - 1
            };
            var_of[t].insert(i, v);
            if prim.len() <= v {
                prim.resize(v + 1, false);
            }
            prim[v] |= *st == CellStatus::Primary;
        }
    }
    // Constraints touching a variable: (terms, rhs).
    let mut cons: Vec<(Vec<(usize, f64)>, f64)> = Vec::new();
    for (t, cube) in tables.iter().enumerate() {
        for (tot, parts) in cube.constraints() {
            let mut terms: Vec<(usize, f64)> = Vec::new();
            let mut rhs = 0.0;
            for p in parts {
                match var_of[t].get(&p) {
                    Some(&v) => terms.push((v, 1.0)),
                    None => rhs -= cube.values[p] as f64,
                }
            }
            match var_of[t].get(&tot) {
                Some(&v) => terms.push((v, -1.0)),
                None => rhs += cube.values[tot] as f64,
            }
            if !terms.is_empty() {
                cons.push((terms, rhs));
            }
        }
    }
    let mut dsu = Dsu((0..vars.len()).collect());
    for (terms, _) in &cons {
        for w in terms.windows(2) {
            dsu.union(w[0].0, w[1].0);
        }
    }
    let mut comps: HashMap<usize, Vec<usize>> = HashMap::new();
    for v in 0..vars.len() {
        comps.entry(dsu.find(v)).or_default().push(v);
    }
    let mut comp_cons: HashMap<usize, Vec<usize>> = HashMap::new();
    for (ci, (terms, _)) in cons.iter().enumerate() {
        comp_cons.entry(dsu.find(terms[0].0)).or_default().push(ci);
    }
    let mut interval: Vec<Option<(f64, f64, AuditMethod)>> = vec![None; vars.len()];
    let mut lp_components = 0;
    let mut largest = 0;
    for (root, members) in &comps {
        if members.len() > opts.lp_max_component {
            continue;
        }
        lp_components += 1;
        largest = largest.max(members.len());
        let local: HashMap<usize, usize> = members.iter().enumerate().map(|(k, &v)| (v, k)).collect();
        let cc = comp_cons.get(root).cloned().unwrap_or_default();
        for &target in members {
            let mut out = [0.0f64; 2];
            for (slot, dir) in [microlp::OptimizationDirection::Minimize, microlp::OptimizationDirection::Maximize]
                .into_iter()
                .enumerate()
            {
                let mut pb = microlp::Problem::new(dir);
                let xs: Vec<microlp::Variable> = members
                    .iter()
                    .map(|&v| pb.add_var(if v == target { 1.0 } else { 0.0 }, (0.0, f64::INFINITY)))
                    .collect();
                for &c in &cc {
                    let (terms, rhs) = &cons[c];
                    let expr: Vec<(microlp::Variable, f64)> = terms.iter().map(|(v, a)| (xs[local[v]], *a)).collect();
                    pb.add_constraint(expr.as_slice(), microlp::ComparisonOp::Eq, *rhs);
                }
                out[slot] = match pb.solve() {
                    Ok(s) => s.objective(),
                    Err(microlp::Error::Unbounded) => f64::INFINITY,
                    Err(e) => return Err(DisclosureError::Lp(format!("component of {} cells: {e}", members.len()))),
                };
            }
            interval[target] = Some((out[0], out[1], AuditMethod::Lp));
        }
    }
    // Witnesses for primaries not covered by LP (single-table witnesses are exact perturbations).
    for w in &sup.witnesses {
        let Some(&v) = var_of[w.table].get(&w.cell) else { continue };
        if interval[v].is_some() {
            continue;
        }
        let cube = &tables[w.table];
        let cs = corners(cube, &cube.coords(w.cell), &w.partner);
        if verify_witness(tables, sup, w.table, &cs) {
            let (down, up) = hypercube_range(cube, &cs);
            let x = cube.values[w.cell] as f64;
            interval[v] = Some((x - down, x + up, AuditMethod::Witness));
        }
    }
    // Perturbation witnesses (LP method): each verified one widens its cell's proven interval.
    if !sup.perturbations.is_empty() && interval.iter().any(|x| x.is_none()) {
        let flags: Vec<Vec<bool>> = sup.status.iter().map(|s| s.iter().map(|x| x.suppressed()).collect()).collect();
        let mut span: HashMap<usize, (f64, f64)> = HashMap::new();
        for p in &sup.perturbations {
            let Some(&v) = var_of.get(p.table).and_then(|m| m.get(&p.cell)) else { continue };
            if interval[v].is_some() {
                continue;
            }
            if let Some(d) = verify_perturbation(tables, &flags, p) {
                let e = span.entry(v).or_insert((0.0, 0.0));
                e.0 = e.0.min(d);
                e.1 = e.1.max(d);
            }
        }
        for (v, (lo, hi)) in span {
            let (t, i) = vars[v];
            let x = tables[t].values[i] as f64;
            interval[v] = Some((x + lo, x + hi, AuditMethod::Witness));
        }
    }
    let mut entries = Vec::with_capacity(vars.len());
    let mut passed = true;
    for (v, &(t, i)) in vars.iter().enumerate() {
        let cube = &tables[t];
        let primary = prim[v];
        let x = cube.values[i];
        let (rl, ru) = prot.required(x);
        let (min, max, method) = interval[v].unwrap_or((x as f64, x as f64, AuditMethod::Unproven));
        let ok = method != AuditMethod::Unproven && min <= x as f64 - rl + EPS && max >= x as f64 + ru - EPS;
        let protected = !primary || ok;
        passed &= protected;
        entries.push(AuditEntry {
            table: t,
            cell: cube.cell_ref(i),
            index: i,
            value: x,
            primary,
            required_lower: rl,
            required_upper: ru,
            min,
            max,
            method,
            protected,
        });
    }
    Ok(Audit { entries, passed, lp_components, largest_lp_component: largest })
}

/// Checks a hypercube perturbation exactly: all corners suppressed, none shared with another
/// table, and every additivity line through a corner sums to zero.
fn verify_witness(tables: &[Cube], sup: &Suppression, t: usize, cs: &[(usize, i8)]) -> bool {
    let cube = &tables[t];
    if cs.iter().any(|&(i, _)| !sup.status[t][i].suppressed()) {
        return false;
    }
    if tables.len() > 1 {
        let keys: Vec<_> = cs.iter().map(|&(i, _)| cube.key(i)).collect();
        for (u, other) in tables.iter().enumerate() {
            if u != t && (0..other.len()).any(|j| keys.contains(&other.key(j))) {
                return false;
            }
        }
    }
    let delta: HashMap<usize, i64> = cs.iter().map(|&(i, s)| (i, s as i64)).collect();
    let st = cube.strides();
    for &(i, _) in cs {
        let c = cube.coords(i);
        for d in 0..c.len() {
            let base = i - c[d] * st[d];
            let n = cube.dims[d].levels.len();
            let parts: i64 = (0..n).map(|k| delta.get(&(base + k * st[d])).copied().unwrap_or(0)).sum();
            let total = delta.get(&(base + n * st[d])).copied().unwrap_or(0);
            if parts != total {
                return false;
            }
        }
    }
    true
}
