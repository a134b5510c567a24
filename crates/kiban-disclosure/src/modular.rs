//! Secondary suppression of single tables too large for one LP over the whole table, after
//! tau-Argus's modular idea of solving many small sub-tables instead of one large table: each
//! primary's perturbations are found by LP over a small sub-table around it — per dimension its own
//! level, the total and the levels whose cells on the lines through it are cheapest (already hidden
//! cells nearly free). Every additivity line of the sub-table is a whole line of the table
//! restricted to it (the total level is always in and the cells left out do not move), so a
//! perturbation of the sub-table is a perturbation of the table: it is kept as the witness the audit
//! verifies. A cleanup pass then publishes complementary cells again, costliest first, while every
//! primary still has its perturbations within its sub-table. Primaries no sub-table can protect
//! (or those left when the time budget is spent) get the cheapest hypercube instead.

use std::collections::HashMap;

use crate::decl::{DimensionKind, Protection};
use crate::lpsup::{Perturbation, System, cost};
use crate::suppress::{CellStatus, Suppression, Witness, best_hypercube, corners};
use crate::table::{Cube, Dim};

/// Knobs of the modular method.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ModularOptions {
    /// Cells of a primary's first sub-table (levels per dimension = cells^(1/N), at least 3).
    pub cells: usize,
    /// CPU seconds after which the remaining primaries get hypercubes.
    pub lp_seconds: f64,
    /// CPU seconds after which the cleanup pass stops (every step leaves a protected table).
    pub cleanup_seconds: f64,
    /// Hypercubes examined per primary by the fallback.
    pub budget: usize,
}

/// A sub-table around one primary: the full index of each of its cells and its linear system.
struct Sub {
    map: Vec<usize>,
    sys: System,
    target: usize,
}

/// The sub-table spanned by `levels` (non-total levels per dimension; the total is added).
fn sub_table(cube: &Cube, idx: usize, levels: &[Vec<usize>]) -> Sub {
    let dims: Vec<Dim> = levels
        .iter()
        .map(|l| Dim { name: String::new(), kind: DimensionKind::Other, levels: vec![String::new(); l.len()] })
        .collect();
    let mut sub = Cube::zeros(dims, "");
    let st = cube.strides();
    let mut map = Vec::with_capacity(sub.len());
    let mut target = usize::MAX;
    for i in 0..sub.len() {
        let sc = sub.coords(i);
        let full: usize = sc
            .iter()
            .enumerate()
            .map(|(d, &c)| if c == levels[d].len() { cube.dims[d].total() } else { levels[d][c] } * st[d])
            .sum();
        if full == idx {
            target = i;
        }
        sub.values[i] = cube.values[full];
        map.push(full);
    }
    let sys = System::new(std::slice::from_ref(&sub));
    Sub { map, sys, target }
}

/// Per dimension, the primary's own level (unless the total) and the `k[d]` other levels whose
/// cells on the line through the primary cost least.
fn choose_levels(cube: &Cube, idx: usize, k: &[usize], cost_of: &dyn Fn(usize) -> f64) -> Vec<Vec<usize>> {
    let a = cube.coords(idx);
    let st = cube.strides();
    (0..a.len())
        .map(|d| {
            let n = cube.dims[d].levels.len();
            let base = idx - a[d] * st[d];
            let mut cand: Vec<(f64, usize)> =
                (0..n).filter(|&l| l != a[d]).map(|l| (cost_of(base + l * st[d]), l)).collect();
            cand.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
            let mut out: Vec<usize> = cand.iter().take(k[d]).map(|x| x.1).collect();
            if a[d] != cube.dims[d].total() {
                out.push(a[d]);
            }
            out.sort_unstable();
            out
        })
        .collect()
}

/// `levels` plus, per dimension, up to `cap` levels whose cell on the line through `idx` is hidden:
/// paths through what is already hidden, the ones that cost nothing.
fn with_hidden_lines(cube: &Cube, idx: usize, levels: &[Vec<usize>], hidden: &[bool], cap: usize) -> Vec<Vec<usize>> {
    let a = cube.coords(idx);
    let st = cube.strides();
    levels
        .iter()
        .enumerate()
        .map(|(d, l)| {
            let mut out = l.clone();
            let base = idx - a[d] * st[d];
            let extra = (0..cube.dims[d].levels.len())
                .filter(|&x| x != a[d] && hidden[base + x * st[d]] && !l.contains(&x))
                .take(cap);
            out.extend(extra);
            out.sort_unstable();
            out
        })
        .collect()
}

/// Perturbations by direction (upward or not), each as (full-table cell, delta).
type Found = Vec<(bool, Vec<(usize, f64)>)>;

/// Perturbations of the sub-table moving its target up by `up` and down by `lo` (either may be 0:
/// that side needs none), using only cells of finite weight; in full-table indices.
fn solve(sub: &Sub, up: f64, lo: f64, weight: &[f64]) -> Option<Found> {
    let full = |v: Vec<(usize, f64)>| v.into_iter().map(|(i, x)| (sub.map[i], x)).collect::<Vec<_>>();
    if up > 0.0
        && lo > 0.0
        && let Some((u, d)) = sub.sys.perturb_symmetric(sub.target, up, lo, weight)
    {
        return Some(vec![(true, full(u)), (false, full(d))]);
    }
    let dirs: Vec<(bool, f64)> = [(true, up), (false, -lo)].into_iter().filter(|x| x.1 != 0.0).collect();
    let amounts: Vec<f64> = dirs.iter().map(|x| x.1).collect();
    let ds = sub.sys.perturb(sub.target, &amounts, weight)?;
    Some(dirs.iter().zip(ds).map(|(&(dir, _), d)| (dir, full(d))).collect())
}

/// Witnesses per (primary, upward) and, per cell, the witnesses using it.
#[derive(Default)]
struct Witnesses {
    by_key: HashMap<(usize, bool), Vec<(usize, f64)>>,
    users: HashMap<usize, Vec<(usize, bool)>>,
}

impl Witnesses {
    fn set(&mut self, key: (usize, bool), deltas: Vec<(usize, f64)>) {
        if let Some(old) = self.by_key.remove(&key) {
            for (i, _) in old {
                if let Some(u) = self.users.get_mut(&i) {
                    u.retain(|k| *k != key);
                    if u.is_empty() {
                        self.users.remove(&i);
                    }
                }
            }
        }
        for &(i, _) in &deltas {
            self.users.entry(i).or_default().push(key);
        }
        self.by_key.insert(key, deltas);
    }
}

/// Protects the primaries of one large table (see the module comment).
pub(crate) fn protect_modular(cube: &Cube, primary: &[bool], prot: &Protection, opts: ModularOptions) -> Suppression {
    let started = cpu_time::ThreadTime::now();
    let n = cube.len();
    let nd = cube.dims.len();
    let totals: Vec<usize> = cube.dims.iter().map(|d| d.total()).collect();
    let st = cube.strides();
    let margin_dims = |i: usize| (0..nd).filter(|&d| (i / st[d]) % cube.dims[d].size() == totals[d]).count();
    let cst: Vec<f64> = (0..n).map(|i| cost(cube.values[i] as f64, margin_dims(i), prot.cost)).collect();
    let mut per_dim = ((opts.cells.max(1) as f64).powf(1.0 / nd as f64).floor() as usize).max(3);
    let mut suppressed = primary.to_vec();
    let mut prims: Vec<usize> = (0..n).filter(|&i| primary[i]).collect();
    prims.sort_by(|&a, &b| {
        let ra = prot.required(cube.values[a]).1;
        let rb = prot.required(cube.values[b]).1;
        rb.total_cmp(&ra).then(a.cmp(&b))
    });
    let mut wit = Witnesses::default();
    let mut levels_of: HashMap<usize, Vec<Vec<usize>>> = HashMap::new();
    let mut pinned = vec![false; n];
    let mut hyper: Vec<Witness> = Vec::new();
    let mut unprotected = Vec::new();
    for (done_n, &p) in prims.iter().enumerate() {
        // Smaller sub-tables when the rest would not fit in the LP time at the pace so far.
        let secs = started.elapsed().as_secs_f64();
        if done_n >= 3 && per_dim > 3 && secs / done_n as f64 * (prims.len() - done_n) as f64 > opts.lp_seconds - secs {
            per_dim = (per_dim * 3 / 4).max(3);
        }
        let (lo, up) = prot.required(cube.values[p]);
        if lo == 0.0 && up == 0.0 {
            continue;
        }
        let a = cube.coords(p);
        // The cheapest hypercube given what is hidden: its partner levels join the sub-table, so the
        // LP can do no worse, and it is the fallback when the LP finds nothing or time is up.
        let hc = best_hypercube(cube, p, &suppressed, prot, opts.budget).map(|(partner, _)| {
            let cs = corners(cube, &a, &partner);
            let new_cost: f64 = cs.iter().filter(|c| !suppressed[c.0]).map(|c| cst[c.0]).sum();
            (partner, cs, new_cost)
        });
        let mut chosen: Option<(Found, Vec<Vec<usize>>)> = None;
        if started.elapsed().as_secs_f64() <= opts.lp_seconds {
            // Widen the sub-table up to twice when it holds no perturbation.
            for widen in [1usize, 2, 4] {
                let k: Vec<usize> = (0..nd)
                    .map(|d| (per_dim * widen).saturating_sub(2).max(1).min(cube.dims[d].levels.len()))
                    .collect();
                let cost_of = |i: usize| if suppressed[i] { 0.0 } else { cst[i] };
                let mut levels = choose_levels(cube, p, &k, &cost_of);
                if let Some((partner, _, _)) = &hc {
                    for d in 0..nd {
                        if partner[d] != totals[d] && !levels[d].contains(&partner[d]) {
                            levels[d].push(partner[d]);
                            levels[d].sort_unstable();
                        }
                    }
                }
                let levels = with_hidden_lines(cube, p, &levels, &suppressed, (per_dim * widen / 2).max(1));
                let sub = sub_table(cube, p, &levels);
                let hidden: Vec<f64> =
                    sub.map.iter().map(|&i| if suppressed[i] { cst[i] } else { f64::INFINITY }).collect();
                // Already protected by what is hidden: nothing new to hide.
                if let Some(ds) = solve(&sub, up, lo, &hidden) {
                    chosen = Some((ds, levels));
                    break;
                }
                let w: Vec<f64> = sub.map.iter().map(|&i| if suppressed[i] { 1e-3 } else { cst[i] }).collect();
                if let Some(ds) = solve(&sub, up, lo, &w) {
                    // The LP pays fractions of cells; hiding pays whole cells: keep the hypercube
                    // when it hides less.
                    let mut cells: Vec<usize> = ds.iter().flat_map(|x| x.1.iter().map(|y| y.0)).collect();
                    cells.sort_unstable();
                    cells.dedup();
                    let lp_cost: f64 = cells.iter().filter(|&&i| !suppressed[i]).map(|&i| cst[i]).sum();
                    if hc.as_ref().is_none_or(|h| lp_cost <= h.2) {
                        chosen = Some((ds, levels));
                    } else if let Some((_, cs, _)) = &hc {
                        // The hypercube as the two perturbations it allows, within this sub-table.
                        let sign = |s: i8| s as f64;
                        let mut ds = Vec::new();
                        if up > 0.0 {
                            ds.push((true, cs.iter().map(|&(i, s)| (i, sign(s) * up)).collect()));
                        }
                        if lo > 0.0 {
                            ds.push((false, cs.iter().map(|&(i, s)| (i, -sign(s) * lo)).collect()));
                        }
                        chosen = Some((ds, levels));
                    }
                    break;
                }
                if k.iter().zip(&cube.dims).all(|(k, d)| *k >= d.levels.len()) {
                    break;
                }
            }
        }
        match (chosen, hc) {
            (Some((ds, levels)), _) => {
                for (dir, d) in ds {
                    for &(i, _) in &d {
                        suppressed[i] = true;
                    }
                    wit.set((p, dir), d);
                }
                levels_of.insert(p, levels);
            }
            (None, Some((partner, cs, _))) => {
                for (i, _) in cs {
                    suppressed[i] = true;
                    pinned[i] = true;
                }
                hyper.push(Witness { table: 0, cell: p, partner });
            }
            (None, None) => unprotected.push((0, p)),
        }
    }
    // Cleanup: publish complementary cells again, costliest first, while every primary using one
    // still finds its perturbations among the hidden cells of its sub-table.
    let cleanup_started = cpu_time::ThreadTime::now();
    let mut secs: Vec<usize> = (0..n).filter(|&i| suppressed[i] && !primary[i] && !pinned[i]).collect();
    secs.sort_by(|&a, &b| cst[b].total_cmp(&cst[a]).then(a.cmp(&b)));
    for s in secs {
        if cleanup_started.elapsed().as_secs_f64() > opts.cleanup_seconds {
            break;
        }
        let mut ps: Vec<usize> = wit.users.get(&s).map(|u| u.iter().map(|k| k.0).collect()).unwrap_or_default();
        ps.sort_unstable();
        ps.dedup();
        suppressed[s] = false;
        let mut fresh = Vec::new();
        for &p in &ps {
            let (lo, up) = prot.required(cube.values[p]);
            let levels = with_hidden_lines(cube, p, &levels_of[&p], &suppressed, (per_dim / 2).max(1));
            let sub = sub_table(cube, p, &levels);
            let hidden: Vec<f64> =
                sub.map.iter().map(|&i| if suppressed[i] { cst[i] } else { f64::INFINITY }).collect();
            match solve(&sub, up, lo, &hidden) {
                Some(ds) => fresh.push((p, ds, levels)),
                None => {
                    fresh.clear();
                    suppressed[s] = true;
                    break;
                }
            }
        }
        for (p, ds, levels) in fresh {
            for (dir, d) in ds {
                wit.set((p, dir), d);
            }
            levels_of.insert(p, levels);
        }
    }
    let status = (0..n)
        .map(|i| {
            if primary[i] {
                CellStatus::Primary
            } else if suppressed[i] {
                CellStatus::Secondary
            } else {
                CellStatus::Published
            }
        })
        .collect();
    let mut keys: Vec<(usize, bool)> = wit.by_key.keys().copied().collect();
    keys.sort_unstable();
    let perturbations = keys
        .iter()
        .map(|k| Perturbation { table: 0, cell: k.0, deltas: wit.by_key[k].iter().map(|&(i, x)| (0, i, x)).collect() })
        .collect();
    Suppression { status: vec![status], witnesses: hyper, unprotected, perturbations }
}
