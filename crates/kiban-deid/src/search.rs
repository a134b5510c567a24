//! The k-anonymity search: optimal full-domain generalization over the hierarchy lattice with a
//! record-suppression limit, on the frequency table of distinct quasi-identifier tuples.
//!
//! Nodes are visited best-first by a lower bound of the information loss (the loss of
//! generalization alone, which is monotone over the lattice and never above the loss with
//! suppression), so the search stops as soon as the bound reaches the best loss found; a node
//! dominated by a known non-anonymous node is skipped without evaluation (k-anonymity and
//! ℓ-diversity with suppression are monotone: generalizing never adds records to failing
//! classes), and so is a node whose pairwise marginals already suppress too many records.
//! A node is grouped by rolling up the classes of its smallest evaluated specialization (a node's
//! classes are unions of any specialization's classes), not the whole table, so evaluations get
//! cheaper as the search climbs. Lattices above `max_lattice_nodes` are searched by a greedy
//! ascent instead.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use hashbrown::HashTable;

use crate::policy::{LVariant, Metric, Privacy};

/// A fast non-cryptographic hasher for u64 keys (the keys are data-derived codes, not attacker-chosen).
#[derive(Default, Clone, Copy)]
pub struct FastHasher(u64);

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(5) ^ *b as u64).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u64(&mut self, i: u64) {
        let x = (self.0 ^ i).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = x ^ (x >> 29);
    }
    fn write_u32(&mut self, i: u32) {
        self.write_u64(i as u64);
    }
}

/// HashMap with [`FastHasher`].
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// One quasi-identifier's domain: the distinct original values (codes) and their generalizations.
#[derive(Debug, Clone)]
pub struct QiDomain {
    /// Column name.
    pub name: String,
    /// `map[level][code]`: the generalized code of an original code.
    pub map: Vec<Vec<u32>>,
    /// `labels[level][gcode]`: the text of a generalized code.
    pub labels: Vec<Vec<String>>,
    /// `leaves[level][gcode]`: how many distinct original values it covers.
    pub leaves: Vec<Vec<u32>>,
}

impl QiDomain {
    /// Builds the domain from the chain (values at every level) of each original code.
    pub fn new(name: &str, chains: &[Vec<String>]) -> Self {
        let levels = chains.first().map_or(1, Vec::len);
        let mut map = vec![Vec::with_capacity(chains.len()); levels];
        let mut labels = vec![Vec::new(); levels];
        let mut leaves = vec![Vec::new(); levels];
        for l in 0..levels {
            let mut idx: HashMap<&str, u32> = HashMap::new();
            for ch in chains {
                let v = ch[l].as_str();
                let next = labels[l].len() as u32;
                let g = *idx.entry(v).or_insert_with(|| {
                    labels[l].push(v.to_owned());
                    leaves[l].push(0);
                    next
                });
                leaves[l][g as usize] += 1;
                map[l].push(g);
            }
        }
        QiDomain { name: name.to_owned(), map, labels, leaves }
    }
    /// Number of original codes (several codes may share a label, e.g. values mapped to `*`).
    pub fn codes(&self) -> usize {
        self.map.first().map_or(0, Vec::len)
    }
    /// Number of levels.
    pub fn levels(&self) -> usize {
        self.map.len()
    }
    /// Number of generalized values at a level.
    pub fn size(&self, level: usize) -> usize {
        self.labels[level].len()
    }
}

/// The frequency table of distinct quasi-identifier tuples (codes, row-major) with counts and,
/// when a sensitive criterion is set, the sensitive value histogram of each tuple.
#[derive(Debug, Clone, Default)]
pub struct FreqTable {
    /// Number of quasi-identifiers.
    pub q: usize,
    /// `codes[t * q + c]`: code of column c in tuple t.
    pub codes: Vec<u32>,
    /// Records per tuple.
    pub counts: Vec<u64>,
    /// Sensitive histogram per tuple (code, count), when needed.
    pub sens: Option<Vec<Vec<(u32, u64)>>>,
    /// Number of distinct sensitive values.
    pub sens_domain: usize,
    /// Whether the tuple budget folded the table (its codes then stand for groups of values).
    pub floor_folded: bool,
    index: HashTable<u32>,
}

fn hash_tuple(t: &[u32]) -> u64 {
    let mut h: u64 = 0x243F_6A88_85A3_08D3;
    for &v in t {
        h = (h ^ v as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^= h >> 31;
    }
    h = h.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    h ^ (h >> 32)
}

impl FreqTable {
    /// Number of records.
    pub fn records(&self) -> u64 {
        self.counts.iter().sum()
    }
    /// Number of distinct tuples.
    pub fn tuples(&self) -> usize {
        self.counts.len()
    }
    /// Code of column `c` in tuple `t`.
    #[inline]
    pub fn code(&self, t: usize, c: usize) -> u32 {
        self.codes[t * self.q + c]
    }
    /// The codes of tuple `t`.
    pub fn tuple(&self, t: usize) -> &[u32] {
        &self.codes[t * self.q..(t + 1) * self.q]
    }
    /// The index of a tuple of codes, if it was counted.
    pub fn find(&self, tuple: &[u32]) -> Option<usize> {
        let q = self.q;
        let codes = &self.codes;
        self.index
            .find(hash_tuple(tuple), |&id| &codes[id as usize * q..(id as usize + 1) * q] == tuple)
            .map(|&id| id as usize)
    }
    /// The column `c` of every tuple.
    pub fn column(&self, c: usize) -> impl Iterator<Item = u32> + '_ {
        self.codes.iter().skip(c).step_by(self.q.max(1)).copied()
    }
}

/// Builds a [`FreqTable`] incrementally from rows of codes.
#[derive(Debug, Default)]
pub struct FreqBuilder {
    table: FreqTable,
}

impl FreqBuilder {
    /// A builder for `q` columns, tracking sensitive histograms when `sensitive`.
    pub fn new(q: usize, sensitive: bool) -> Self {
        FreqBuilder { table: FreqTable { q, sens: sensitive.then(Vec::new), ..Default::default() } }
    }
    /// Counts one record with QI codes `tuple` and sensitive code `sens`.
    pub fn add(&mut self, tuple: &[u32], sens: Option<u32>) {
        self.add_n(tuple, sens, 1);
    }
    /// Counts `n` records with QI codes `tuple` and sensitive code `sens`.
    pub fn add_n(&mut self, tuple: &[u32], sens: Option<u32>, n: u64) {
        let t = &mut self.table;
        let q = t.q;
        let h = hash_tuple(tuple);
        let codes = &mut t.codes;
        let id = match t.index.find(h, |&id| &codes[id as usize * q..(id as usize + 1) * q] == tuple) {
            Some(&id) => id as usize,
            None => {
                let id = t.counts.len();
                codes.extend_from_slice(&tuple[..q]);
                t.counts.push(0);
                if let Some(s) = &mut t.sens {
                    s.push(Vec::new());
                }
                let codes = &*codes;
                t.index.insert_unique(h, id as u32, |&i| hash_tuple(&codes[i as usize * q..(i as usize + 1) * q]));
                id
            }
        };
        t.counts[id] += n;
        if let (Some(hist), Some(sv)) = (&mut t.sens, sens) {
            let h = &mut hist[id];
            match h.iter_mut().find(|(v, _)| *v == sv) {
                Some(e) => e.1 += n,
                None => h.push((sv, n)),
            }
            t.sens_domain = t.sens_domain.max(sv as usize + 1);
        }
    }
    /// Distinct tuples counted so far.
    pub fn tuples(&self) -> usize {
        self.table.counts.len()
    }
    /// The finished table (it keeps its index for [`FreqTable::find`]).
    pub fn finish(self) -> FreqTable {
        self.table
    }
}

/// The evaluation of one lattice node.
#[derive(Debug, Clone)]
pub struct NodeEval {
    /// Generalization level per quasi-identifier.
    pub levels: Vec<u8>,
    /// Class id of each distinct tuple.
    pub class_of: Vec<u32>,
    /// Records per class.
    pub class_sizes: Vec<u64>,
    /// Whether each class fails the privacy model (and is suppressed).
    pub failing: Vec<bool>,
    /// Records in failing classes.
    pub suppressed: u64,
    /// Whether the suppressed records are within the limit.
    pub anonymous: bool,
    /// Value of the metric (lower is better).
    pub loss: f64,
}

/// Search statistics and result.
#[derive(Debug, Clone)]
pub struct SearchOutcome {
    /// The chosen node.
    pub best: NodeEval,
    /// Number of nodes in the lattice.
    pub lattice_size: u128,
    /// Nodes evaluated (grouped).
    pub evaluated: usize,
    /// Nodes proven failing by a projection count (not grouped).
    pub projected: usize,
    /// Whether the result is proven optimal (exhaustive search with bounds) or heuristic.
    pub optimal: bool,
    /// With a floor ([`Lattice::set_floor`]): the least loss bound of the nodes below it that the
    /// exact single-column bounds do not rule out, when below the chosen loss (the optimum over
    /// the whole lattice is then not proven; `None`: none could do better, or no floor).
    pub unexplored_bound: Option<f64>,
}

/// The classes of an evaluated node, kept to roll up its generalizations: per class, one original
/// tuple (any member: every member generalizes alike), its records and its sensitive histogram.
#[derive(Debug, Clone, Default)]
struct Snap {
    rep: Vec<u32>,
    cnt: Vec<u64>,
    sens: Option<Vec<Vec<(u32, u64)>>>,
}

/// Classes of a node grouped from a source (the table or a snapshot).
struct Grouped {
    snap: Snap,
    /// Class of each source entry, when asked for.
    class_of: Option<Vec<u32>>,
}

/// What a node's classes give: failing classes, suppressed records, loss.
struct Judged {
    failing: Vec<bool>,
    suppressed: u64,
    anonymous: bool,
    loss: f64,
    /// Σ class size², the discernibility of the node without suppression.
    sumsq: f64,
}

const NONE: u32 = u32::MAX;

/// The lattice search over a frequency table.
pub struct Lattice<'a> {
    table: &'a FreqTable,
    doms: &'a [QiDomain],
    privacy: &'a Privacy,
    n: u64,
    max_suppressed: u64,
    /// `delta[c][level][gcode]`: what suppressing a record adds to its generalization cost in column c
    /// (for every metric it depends only on the generalized value).
    delta: Vec<Vec<Vec<f64>>>,
    /// `colcost[c][level]` = Σ records × generalization cost.
    colcost: Vec<Vec<f64>>,
    /// `cost[c][level][code]`: generalization cost of one cell of original code `code`.
    cost: Vec<Vec<Vec<f64>>>,
    /// `min_delta[c][level]`: the least `delta[c][level][g]` over the values present.
    min_delta: Vec<Vec<f64>>,
    sens_global: Vec<f64>,
    dense: Vec<u32>,
    /// The table's codes column by column (`cols[c][t]`), built for the first projection check:
    /// a pass over one column then reads 4 bytes a tuple instead of a whole row's cache line.
    cols: Vec<Vec<u32>>,
    /// For each pair of columns, records in pair-classes smaller than k at each level pair: a lower
    /// bound of the records any node with those levels must suppress.
    pair_lb: Vec<(usize, usize, Vec<u64>)>,
    /// Chain probing forced on or off; `None` decides by the number of distinct tuples.
    probing: Option<bool>,
    /// Fewest entries to group for which a projection check is tried first.
    projection_min: usize,
    /// Lowest level per column that the table can tell apart (above 0 when the tuple budget folded
    /// the table): nodes below it are not evaluated.
    floor: Vec<u8>,
    /// `single_lb[c][level]`: records in values of column c alone under k (exact marginals): any
    /// node with that level must suppress them.
    single_lb: Vec<Vec<u64>>,
}

impl<'a> Lattice<'a> {
    /// Prepares the search: per-column costs for the metric.
    pub fn new(table: &'a FreqTable, doms: &'a [QiDomain], privacy: &'a Privacy) -> Self {
        Self::with_marginals(table, doms, privacy, None)
    }

    /// As [`Lattice::new`], with the records per original code of each column counted on the
    /// whole input (`marginals[c][code]`), for a table folded by the tuple budget: the costs and
    /// bounds of nodes below the floor then stay exact although those nodes cannot be grouped.
    #[allow(clippy::needless_range_loop)]
    pub fn with_marginals(
        table: &'a FreqTable,
        doms: &'a [QiDomain],
        privacy: &'a Privacy,
        marginals: Option<Vec<Vec<u64>>>,
    ) -> Self {
        let n = table.records();
        let q = doms.len();
        let marg = marginals.unwrap_or_else(|| {
            let mut marg: Vec<Vec<u64>> = doms.iter().map(|d| vec![0; d.codes()]).collect();
            for t in 0..table.tuples() {
                for c in 0..q {
                    marg[c][table.code(t, c) as usize] += table.counts[t];
                }
            }
            marg
        });
        let single_lb: Vec<Vec<u64>> = doms
            .iter()
            .zip(&marg)
            .map(|(d, m)| {
                (0..d.levels())
                    .map(|l| {
                        let mut g = vec![0u64; d.size(l)];
                        for (code, &x) in m.iter().enumerate() {
                            g[d.map[l][code] as usize] += x;
                        }
                        g.iter().filter(|&&x| x > 0 && x < privacy.k).sum()
                    })
                    .collect()
            })
            .collect();
        let mut delta = Vec::with_capacity(q);
        let mut colcost = Vec::with_capacity(q);
        let mut cost = Vec::with_capacity(q);
        for (c, d) in doms.iter().enumerate() {
            let dsize = d.size(0) as f64;
            let h = (d.levels() - 1).max(1) as f64;
            let mut dl = Vec::with_capacity(d.levels());
            let mut cc = Vec::with_capacity(d.levels());
            let mut cl = Vec::with_capacity(d.levels());
            for l in 0..d.levels() {
                let mut gfreq = vec![0u64; d.size(l)];
                for (code, &m) in marg[c].iter().enumerate() {
                    gfreq[d.map[l][code] as usize] += m;
                }
                // Per generalized value: the cost of a record generalized to it, and of suppressing it.
                let (gcost, sup): (Vec<f64>, Vec<f64>) = (0..d.size(l))
                    .map(|g| match privacy.metric {
                        Metric::Loss | Metric::Discernibility => {
                            let x = if dsize > 1.0 { (d.leaves[l][g] as f64 - 1.0) / (dsize - 1.0) } else { 0.0 };
                            (x, 1.0 - x)
                        }
                        Metric::Precision => (l as f64 / h, 1.0 - l as f64 / h),
                        // A cell costs log2(f(gen)/f(orig)), suppressed log2(n/f(orig)): the difference
                        // depends on the generalized value only.
                        Metric::Entropy if gfreq[g] > 0 => (0.0, (n as f64 / gfreq[g] as f64).log2()),
                        Metric::Entropy => (0.0, 0.0),
                    })
                    .unzip();
                let per_code: Vec<f64> = marg[c]
                    .iter()
                    .enumerate()
                    .map(|(code, &m)| {
                        let g = d.map[l][code] as usize;
                        match privacy.metric {
                            Metric::Entropy if m > 0 => (gfreq[g] as f64 / m as f64).log2(),
                            Metric::Entropy => 0.0,
                            _ => gcost[g],
                        }
                    })
                    .collect();
                cc.push(per_code.iter().zip(&marg[c]).map(|(x, &m)| x * m as f64).sum());
                cl.push(per_code);
                dl.push(sup);
            }
            delta.push(dl);
            colcost.push(cc);
            cost.push(cl);
        }
        // Only generalized values that occur count (an absent value's delta is never added).
        let min_delta: Vec<Vec<f64>> = doms
            .iter()
            .enumerate()
            .map(|(c, d)| {
                (0..d.levels())
                    .map(|l| {
                        let mut present = vec![false; d.size(l)];
                        for (code, &m) in marg[c].iter().enumerate() {
                            if m > 0 {
                                present[d.map[l][code] as usize] = true;
                            }
                        }
                        delta[c][l]
                            .iter()
                            .zip(&present)
                            .filter(|(_, p)| **p)
                            .map(|(x, _)| *x)
                            .reduce(f64::min)
                            .map_or(0.0, |x| x.max(0.0))
                    })
                    .collect()
            })
            .collect();
        let mut sens_global = vec![0.0; table.sens_domain];
        if let Some(hist) = &table.sens {
            for h in hist {
                for &(s, cnt) in h {
                    sens_global[s as usize] += cnt as f64;
                }
            }
            for x in &mut sens_global {
                *x /= n.max(1) as f64;
            }
        }
        let max_suppressed = (privacy.suppression_limit * n as f64 + 1e-9).floor() as u64;
        let pair_lb = pair_bounds(table, doms, privacy.k);
        Lattice {
            table,
            doms,
            privacy,
            n,
            max_suppressed,
            delta,
            colcost,
            cost,
            min_delta,
            sens_global,
            dense: Vec::new(),
            cols: Vec::new(),
            pair_lb,
            probing: None,
            projection_min: PROJECTION_MIN_ENTRIES,
            floor: vec![0; q],
            single_lb,
        }
    }

    /// Restricts the search to nodes at or above `floor` (the levels a folded table still tells
    /// apart); [`SearchOutcome::unexplored_bound`] then says what the nodes below could reach.
    pub fn set_floor(&mut self, floor: &[u8]) {
        self.floor = floor.to_vec();
    }

    fn below_floor(&self, levels: &[u8]) -> bool {
        levels.iter().zip(&self.floor).any(|(l, f)| l < f)
    }

    /// Forces chain probing and projection checks on or off (by default they run on tables of many
    /// distinct tuples); the result is the same optimum either way, only the work differs.
    pub fn set_probing(&mut self, on: bool) {
        self.probing = Some(on);
        self.projection_min = if on { 0 } else { usize::MAX };
    }

    /// Whether the pairwise bound already proves the node cannot meet k within the suppression limit.
    pub fn surely_fails(&self, levels: &[u8]) -> bool {
        self.suppressed_bound(levels) > self.max_suppressed
    }

    /// Records any node with these levels must suppress, by the pairwise marginals.
    fn suppressed_bound(&self, levels: &[u8]) -> u64 {
        self.pair_lb
            .iter()
            .map(|(a, b, v)| v[levels[*a] as usize * self.doms[*b].levels() + levels[*b] as usize])
            .max()
            .unwrap_or(0)
    }

    /// A lower bound of the loss with suppression: the generalization loss plus, for the records the
    /// pairwise bound says must be suppressed, the least a suppressed record adds at these levels.
    fn loss_bound(&self, levels: &[u8], suppressed: u64) -> f64 {
        let lb = self.lower_bound(levels);
        if suppressed == 0 || !self.additive() {
            return lb;
        }
        let least: f64 = levels.iter().enumerate().map(|(c, &l)| self.min_delta[c][l as usize]).sum();
        lb + suppressed as f64 * least
    }

    /// Number of records.
    pub fn records(&self) -> u64 {
        self.n
    }

    /// Whether the metric is additive per cell (and so has a cheap monotone lower bound).
    fn additive(&self) -> bool {
        self.privacy.metric != Metric::Discernibility
    }

    /// The loss of generalization alone (no suppression): a monotone lower bound of the loss.
    pub fn lower_bound(&self, levels: &[u8]) -> f64 {
        if self.additive() { levels.iter().enumerate().map(|(c, &l)| self.colcost[c][l as usize]).sum() } else { 0.0 }
    }

    /// A cheap proof of failure: the node's classes projected on the columns that split them most,
    /// grouped column by column into dense ids through small remap arrays (no hashing; nested
    /// columns such as prefecture and 二次医療圏 add no ids), as many columns as the arrays allow.
    /// A projected class is a union of the node's classes, so the records in projected classes
    /// under k are suppressed in the node too; if they exceed the limit the node fails. For
    /// ℓ-diversity and t-closeness the k test alone is a valid necessary condition.
    fn projection_fails(&mut self, levels: &[u8], src: Option<&Snap>) -> bool {
        let table = self.table;
        let q = table.q;
        let m = src.map_or(table.tuples(), |s| s.rep.len());
        if m < self.projection_min {
            return false;
        }
        let mut cols: Vec<(usize, usize)> = levels
            .iter()
            .enumerate()
            .map(|(c, &l)| (c, self.doms[c].size(l as usize)))
            .filter(|&(_, n)| n > 1)
            .collect();
        cols.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
        if self.cols.is_empty() {
            self.cols = (0..q).map(|c| table.column(c).collect()).collect();
        }
        let k = self.privacy.k.max(1);
        let mut ids = vec![0u32; m];
        let mut distinct = 1usize;
        let mut remap: Vec<u32> = Vec::new();
        for &(c, n) in &cols {
            if distinct * n > PROJECTION_CELLS {
                continue;
            }
            let g = &self.doms[c].map[levels[c] as usize];
            remap.clear();
            remap.resize(distinct * n, NONE);
            let mut next = 0u32;
            let col = &self.cols[c];
            let mut step = |id: &mut u32, code: u32| {
                let slot = &mut remap[*id as usize * n + g[code as usize] as usize];
                if *slot == NONE {
                    *slot = next;
                    next += 1;
                }
                *id = *slot;
            };
            match src {
                None => ids.iter_mut().zip(col).for_each(|(id, &code)| step(id, code)),
                Some(s) => ids.iter_mut().zip(&s.rep).for_each(|(id, &r)| step(id, col[r as usize])),
            }
            distinct = next as usize;
            // At most n/k classes hold k records or more, and every other class holds at least
            // one suppressed record; refining only adds classes, so stop as soon as this proves it.
            if distinct as u64 > self.n / k + self.max_suppressed {
                return true;
            }
        }
        let mut counts = vec![0u64; distinct];
        for (e, &id) in ids.iter().enumerate() {
            counts[id as usize] += src.map_or(table.counts[e], |s| s.cnt[e]);
        }
        let small: u64 = counts.iter().filter(|&&c| c < k).sum();
        small > self.max_suppressed
    }

    /// Groups the entries of `src` (the table when `None`) by their generalization at `levels`.
    fn group(&mut self, levels: &[u8], src: Option<&Snap>, want_class_of: bool) -> Grouped {
        let table = self.table;
        let q = table.q;
        let m = src.map_or(table.tuples(), |s| s.rep.len());
        if src.is_none() && levels.iter().all(|&l| l == 0) && self.doms.iter().all(|d| d.size(0) == d.codes()) {
            // The bottom node with one label per code: its classes are the distinct tuples themselves.
            let sens =
                table.sens.clone().filter(|_| self.privacy.l_diversity.is_some() || self.privacy.t_closeness.is_some());
            return Grouped {
                snap: Snap { rep: (0..m as u32).collect(), cnt: table.counts.clone(), sens },
                class_of: want_class_of.then(|| (0..m as u32).collect()),
            };
        }
        let rep_of = |e: usize| -> usize { src.map_or(e, |s| s.rep[e] as usize) };
        let cnt_of = |e: usize| -> u64 { src.map_or(table.counts[e], |s| s.cnt[e]) };
        // Mixed-radix keys; fold to dense ids when the radix would overflow.
        let mut keys = vec![0u64; m];
        let mut radix: u128 = 1;
        for (c, &l) in levels.iter().enumerate() {
            let g = &self.doms[c].map[l as usize];
            let size = self.doms[c].size(l as usize) as u128;
            if size == 1 {
                continue;
            }
            if radix * size > u64::MAX as u128 {
                radix = densify(&mut keys) as u128;
            }
            let s = size as u64;
            match src {
                None if !self.cols.is_empty() => {
                    for (k, &code) in keys.iter_mut().zip(&self.cols[c]) {
                        *k = *k * s + g[code as usize] as u64;
                    }
                }
                None => {
                    for (k, row) in keys.iter_mut().zip(table.codes.chunks_exact(q)) {
                        *k = *k * s + g[row[c] as usize] as u64;
                    }
                }
                Some(sn) => {
                    for (k, &r) in keys.iter_mut().zip(&sn.rep) {
                        *k = *k * s + g[table.codes[r as usize * q + c] as usize] as u64;
                    }
                }
            }
            radix *= size;
        }
        let mut class_of = vec![0u32; m];
        let mut rep: Vec<u32> = Vec::new();
        let mut cnt: Vec<u64> = Vec::new();
        if radix <= (1 << 22) {
            let r = radix as usize;
            if self.dense.len() < r {
                self.dense.resize(r, NONE);
            }
            for (e, &k) in keys.iter().enumerate() {
                let slot = &mut self.dense[k as usize];
                if *slot == NONE {
                    *slot = cnt.len() as u32;
                    cnt.push(0);
                    rep.push(rep_of(e) as u32);
                }
                class_of[e] = *slot;
                cnt[*slot as usize] += cnt_of(e);
            }
            for &k in &keys {
                self.dense[k as usize] = NONE;
            }
        } else {
            let mut map: FastMap<u64, u32> = FastMap::with_capacity_and_hasher(m / 2, Default::default());
            for (e, &k) in keys.iter().enumerate() {
                let next = cnt.len() as u32;
                let id = *map.entry(k).or_insert(next);
                if id == next {
                    cnt.push(0);
                    rep.push(rep_of(e) as u32);
                }
                class_of[e] = id;
                cnt[id as usize] += cnt_of(e);
            }
        }
        let source_sens = match src {
            None => table.sens.as_ref(),
            Some(s) => s.sens.as_ref(),
        };
        let sens = source_sens
            .filter(|_| self.privacy.l_diversity.is_some() || self.privacy.t_closeness.is_some())
            .map(|hist| {
                let mut out: Vec<Vec<(u32, u64)>> = vec![Vec::new(); cnt.len()];
                for (e, &c) in class_of.iter().enumerate() {
                    let ch = &mut out[c as usize];
                    for &(s, n) in &hist[e] {
                        match ch.iter_mut().find(|(v, _)| *v == s) {
                            Some(x) => x.1 += n,
                            None => ch.push((s, n)),
                        }
                    }
                }
                out
            });
        Grouped { snap: Snap { rep, cnt, sens }, class_of: want_class_of.then_some(class_of) }
    }

    /// Checks the privacy model on each class and computes the suppression and the loss.
    fn judge(&self, levels: &[u8], s: &Snap, stop_early: bool) -> Judged {
        let k = self.privacy.k;
        let mut failing: Vec<bool> = s.cnt.iter().map(|&x| x < k).collect();
        if let Some(hist) = &s.sens {
            for (c, ch) in hist.iter().enumerate() {
                if !failing[c] {
                    failing[c] = !self.diverse(ch, s.cnt[c]);
                }
            }
        }
        let suppressed: u64 = s.cnt.iter().zip(&failing).filter(|(_, f)| **f).map(|(x, _)| x).sum();
        let anonymous = suppressed <= self.max_suppressed;
        let sumsq: f64 = if self.additive() { 0.0 } else { s.cnt.iter().map(|&x| (x * x) as f64).sum() };
        if !anonymous && stop_early {
            return Judged { failing, suppressed, anonymous, loss: f64::INFINITY, sumsq };
        }
        let loss = if self.privacy.metric == Metric::Discernibility {
            let n = self.n as f64;
            s.cnt.iter().zip(&failing).map(|(&x, &f)| if f { x as f64 * n } else { (x * x) as f64 }).sum()
        } else {
            let q = self.table.q;
            let mut total = self.lower_bound(levels);
            for (c, _) in failing.iter().enumerate().filter(|(_, f)| **f) {
                let row = &self.table.codes[s.rep[c] as usize * q..(s.rep[c] as usize + 1) * q];
                let mut add = 0.0;
                for (col, &l) in levels.iter().enumerate() {
                    let g = self.doms[col].map[l as usize][row[col] as usize] as usize;
                    add += self.delta[col][l as usize][g];
                }
                total += s.cnt[c] as f64 * add;
            }
            total
        };
        Judged { failing, suppressed, anonymous, loss, sumsq }
    }

    /// Whether a class with sensitive histogram `ch` of `size` records meets ℓ-diversity and t-closeness.
    fn diverse(&self, ch: &[(u32, u64)], size: u64) -> bool {
        let size = size as f64;
        if let Some(l) = &self.privacy.l_diversity {
            let ok = match l.variant {
                LVariant::Distinct => ch.len() as f64 >= l.l,
                LVariant::Entropy => {
                    let h: f64 = ch.iter().map(|&(_, n)| n as f64 / size).map(|p| -p * p.log2()).sum();
                    h + 1e-12 >= l.l.log2()
                }
            };
            if !ok {
                return false;
            }
        }
        if let Some(t) = &self.privacy.t_closeness {
            let mut d = 0.0;
            let mut covered = 0.0;
            for &(s, n) in ch {
                let g = self.sens_global[s as usize];
                d += (n as f64 / size - g).abs();
                covered += g;
            }
            d += 1.0 - covered;
            if d / 2.0 > t.t + 1e-12 {
                return false;
            }
        }
        true
    }

    /// Groups the table at `levels` and checks the privacy model.
    pub fn evaluate(&mut self, levels: &[u8]) -> NodeEval {
        let g = self.group(levels, None, true);
        let j = self.judge(levels, &g.snap, false);
        NodeEval {
            levels: levels.to_vec(),
            class_of: g.class_of.unwrap_or_default(),
            class_sizes: g.snap.cnt,
            failing: j.failing,
            suppressed: j.suppressed,
            anonymous: j.anonymous,
            loss: j.loss,
        }
    }

    /// The metric normalized for reporting: Loss and precision as a share 0–1 of cells; others raw.
    pub fn normalized(&self, loss: f64) -> f64 {
        match self.privacy.metric {
            Metric::Loss | Metric::Precision => loss / (self.n.max(1) as f64 * self.doms.len().max(1) as f64),
            _ => loss,
        }
    }

    fn monotone(&self) -> bool {
        self.privacy.t_closeness.is_none()
    }

    /// Runs the search and returns the best transformation, or `None` when no node meets the model.
    pub fn search(&mut self) -> Option<SearchOutcome> {
        let heights: Vec<usize> = self.doms.iter().map(|d| d.levels()).collect();
        let size: u128 = heights.iter().map(|&h| h as u128).product();
        if size > self.privacy.max_lattice_nodes as u128 {
            return self.greedy(size);
        }
        let q = heights.len();
        let total = size as usize;
        let mut strides = vec![1usize; q];
        for c in (0..q.saturating_sub(1)).rev() {
            strides[c] = strides[c + 1] * heights[c + 1];
        }
        let mut nodes: Vec<(f64, u32, u32)> = Vec::with_capacity(total);
        let mut lv = vec![0u8; q];
        for i in 0..total {
            decode(i, &heights, &mut lv);
            let h: u32 = lv.iter().map(|&x| x as u32).sum();
            nodes.push((self.lower_bound(&lv), h, i as u32));
        }
        nodes.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let additive = self.additive();
        let nt = self.table.tuples();
        let mut st = SearchState {
            status: vec![UNKNOWN; total],
            pruned: vec![false; if additive { 0 } else { total }],
            snaps: FastMap::default(),
            snap_levels: Vec::new(),
            snap_entries: 0,
            budget: (4 * nt).max(1 << 20),
            non_anon: Vec::new(),
            best: None,
            evaluated: 0,
            projected: 0,
            heights: heights.clone(),
            strides,
        };
        // Probing along a chain pays off when evaluations are dear (many distinct tuples) and the
        // model is monotone (a failing node proves all its specializations fail).
        let probe = self.monotone() && self.probing.unwrap_or(nt >= PROBE_MIN_TUPLES);
        let mut unexplored: Option<f64> = None;
        for &(lb, _, idx) in &nodes {
            let idx = idx as usize;
            decode(idx, &heights, &mut lv);
            if let Some((b, _)) = st.best
                && additive
                && lb >= b - 1e-9
            {
                break;
            }
            if self.below_floor(&lv) {
                // Not groupable on the folded table: remember the best it might reach (nodes come in
                // order of their bound, so the first one kept is the least).
                let single = (0..q).map(|c| self.single_lb[c][lv[c] as usize]).max().unwrap_or(0);
                if unexplored.is_none() && single <= self.max_suppressed {
                    unexplored = Some(if additive { self.loss_bound(&lv, single) } else { 0.0 });
                }
                continue;
            }
            if !additive && st.pruned[idx] {
                st.prune_up(idx, &lv);
                continue;
            }
            if st.status[idx] != UNKNOWN {
                continue;
            }
            if !self.worth(&st, &lv) {
                continue;
            }
            if probe && !self.chain_probe(&mut st, &lv) {
                continue;
            }
            self.eval_node(&mut st, idx, &lv);
        }
        let (evaluated, projected) = (st.evaluated, st.projected);
        let (_, idx) = st.best?;
        drop(st);
        decode(idx, &heights, &mut lv);
        let best = self.evaluate(&lv);
        let unexplored_bound = unexplored.filter(|&u| u < best.loss - 1e-9);
        Some(SearchOutcome {
            optimal: unexplored_bound.is_none(),
            best,
            lattice_size: size,
            evaluated,
            projected,
            unexplored_bound,
        })
    }

    /// Whether a node can still be the optimum: not known to fail by the bounds or a failing
    /// generalization, and its loss bound below the best found.
    fn worth(&self, st: &SearchState, lv: &[u8]) -> bool {
        let sup_lb = self.suppressed_bound(lv);
        if sup_lb > self.max_suppressed {
            return false;
        }
        if let Some((b, _)) = st.best
            && self.loss_bound(lv, sup_lb) >= b - 1e-9
        {
            return false;
        }
        !(self.monotone() && st.known_failing(lv))
    }

    /// Binary search for the anonymity boundary on a chain of generalizations of `lv` (each step
    /// raises the column whose generalization costs least), Flash-style: a failing node on the
    /// chain proves `lv` and every node below it fail without grouping them, an anonymous one may
    /// improve the best loss. Returns whether `lv` itself still needs evaluating.
    fn chain_probe(&mut self, st: &mut SearchState, lv: &[u8]) -> bool {
        let additive = self.additive();
        let mut chain: Vec<Vec<u8>> = Vec::new();
        let mut cur = lv.to_vec();
        loop {
            let step = (0..cur.len()).filter(|&c| (cur[c] as usize) + 1 < st.heights[c]).min_by(|&a, &b| {
                let da = self.colcost[a][cur[a] as usize + 1] - self.colcost[a][cur[a] as usize];
                let db = self.colcost[b][cur[b] as usize + 1] - self.colcost[b][cur[b] as usize];
                da.total_cmp(&db)
            });
            let Some(c) = step else { break };
            cur[c] += 1;
            if let Some((b, _)) = st.best
                && additive
                && self.lower_bound(&cur) >= b - 1e-9
            {
                break;
            }
            chain.push(cur.clone());
        }
        // Invariant: chain[lo] fails (lo = -1: unknown), chain[hi] is anonymous (hi = len: unknown).
        let (mut lo, mut hi) = (-1isize, chain.len() as isize);
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            let node = &chain[mid as usize];
            let idx = st.index(node);
            let fails = match st.status[idx] {
                FAILING => true,
                ANONYMOUS => false,
                _ if self.surely_fails(node) || st.known_failing(node) => true,
                _ => !self.eval_node(st, idx, &node.clone()),
            };
            if fails {
                st.mark_failing(&chain[mid as usize]);
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo < 0
    }

    /// Groups and judges one node (rolled up from the smallest evaluated specialization), records
    /// the outcome and returns whether the node is anonymous.
    fn eval_node(&mut self, st: &mut SearchState, idx: usize, lv: &[u8]) -> bool {
        let (s, s_len) = st.source(lv, self.table.tuples());
        if self.monotone() && self.projection_fails(lv, s.and_then(|s| st.snaps.get(&s))) {
            st.projected += 1;
            st.status[idx] = FAILING;
            st.mark_failing(lv);
            return false;
        }
        let g = self.group(lv, s.and_then(|s| st.snaps.get(&s)), false);
        let j = self.judge(lv, &g.snap, true);
        st.evaluated += 1;
        if !self.additive() && st.best.is_some_and(|(b, _)| j.sumsq >= b) {
            // Discernibility without suppression bounds every generalization of this node.
            st.prune_up(idx, lv);
        }
        let classes = g.snap.rep.len();
        if (classes as f64) < 0.7 * s_len as f64 && st.snap_entries + classes <= st.budget {
            st.snap_entries += classes;
            st.snaps.insert(idx as u32, g.snap);
            st.snap_levels.push((lv.to_vec(), idx as u32, classes));
        }
        if !j.anonymous {
            st.status[idx] = FAILING;
            if self.monotone() {
                st.mark_failing(lv);
            }
            return false;
        }
        st.status[idx] = ANONYMOUS;
        if st.best.is_none_or(|(b, _)| j.loss < b - 1e-9) {
            st.best = Some((j.loss, idx));
        }
        true
    }

    fn greedy(&mut self, size: u128) -> Option<SearchOutcome> {
        let heights: Vec<usize> = self.doms.iter().map(|d| d.levels()).collect();
        let q = heights.len();
        let mut lv = self.floor.clone();
        let g = self.group(&lv, None, false);
        let mut cur = (self.judge(&lv, &g.snap, false), g.snap);
        let mut evaluated = 1;
        // Ascend one level at a time, rolling up from the current node's classes.
        while !cur.0.anonymous {
            let mut next: Option<(Vec<u8>, Judged, Snap)> = None;
            for c in 0..q {
                if (lv[c] as usize) + 1 >= heights[c] {
                    continue;
                }
                let mut up = lv.clone();
                up[c] += 1;
                let g = self.group(&up, Some(&cur.1), false);
                let j = self.judge(&up, &g.snap, false);
                evaluated += 1;
                let better = match &next {
                    None => true,
                    Some((_, b, _)) => {
                        (j.anonymous, std::cmp::Reverse(j.suppressed), -j.loss)
                            > (b.anonymous, std::cmp::Reverse(b.suppressed), -b.loss)
                    }
                };
                if better {
                    next = Some((up, j, g.snap));
                }
            }
            let (up, j, s) = next?;
            lv = up;
            cur = (j, s);
        }
        // Descend while a specialization stays anonymous with lower loss.
        let mut loss = cur.0.loss;
        loop {
            let mut improved = false;
            for c in 0..q {
                if lv[c] <= self.floor[c] {
                    continue;
                }
                let mut down = lv.clone();
                down[c] -= 1;
                let g = self.group(&down, None, false);
                let j = self.judge(&down, &g.snap, true);
                evaluated += 1;
                if j.anonymous && j.loss < loss - 1e-9 {
                    lv = down;
                    loss = j.loss;
                    improved = true;
                    break;
                }
            }
            if !improved {
                break;
            }
        }
        let best = self.evaluate(&lv);
        Some(SearchOutcome {
            best,
            lattice_size: size,
            evaluated,
            projected: 0,
            optimal: false,
            unexplored_bound: None,
        })
    }
}

/// Fewest distinct tuples for which the search probes chains before evaluating a node (below it a
/// plain best-first pass is cheaper).
const PROBE_MIN_TUPLES: usize = 50_000;

/// Cells of a remap array of a projection check (small enough to stay near the cache).
const PROJECTION_CELLS: usize = 1 << 21;

/// Fewest entries (tuples or classes) to group for which a projection check is tried first.
const PROJECTION_MIN_ENTRIES: usize = 1 << 15;

/// Maximal failing nodes remembered at most.
const MAX_FAILING_KEPT: usize = 1024;

const UNKNOWN: u8 = 0;
const ANONYMOUS: u8 = 1;
const FAILING: u8 = 2;

/// Decodes a node index (mixed radix over the column heights) into levels.
fn decode(mut i: usize, heights: &[usize], out: &mut [u8]) {
    for c in (0..heights.len()).rev() {
        out[c] = (i % heights[c]) as u8;
        i /= heights[c];
    }
}

/// What the exhaustive search knows so far.
struct SearchState {
    /// Per node: unknown, anonymous (evaluated) or failing.
    status: Vec<u8>,
    /// Per node (discernibility only): cannot beat the best found.
    pruned: Vec<bool>,
    /// Classes of evaluated nodes kept for roll-ups, by node index.
    snaps: FastMap<u32, Snap>,
    /// Levels, node index and class count of each kept snapshot.
    snap_levels: Vec<(Vec<u8>, u32, usize)>,
    snap_entries: usize,
    budget: usize,
    /// Maximal known failing nodes: every specialization of one fails too.
    non_anon: Vec<Vec<u8>>,
    best: Option<(f64, usize)>,
    evaluated: usize,
    /// Nodes proven failing by a projection count instead of a full grouping.
    projected: usize,
    heights: Vec<usize>,
    strides: Vec<usize>,
}

impl SearchState {
    fn index(&self, lv: &[u8]) -> usize {
        lv.iter().zip(&self.strides).map(|(&l, &s)| l as usize * s).sum()
    }
    fn known_failing(&self, lv: &[u8]) -> bool {
        self.non_anon.iter().any(|m| m.iter().zip(lv).all(|(a, b)| b <= a))
    }
    fn mark_failing(&mut self, lv: &[u8]) {
        if self.known_failing(lv) {
            return;
        }
        self.non_anon.retain(|m| !m.iter().zip(lv).all(|(a, b)| a <= b));
        // The list is scanned for every node: past a cap, forgetting only costs evaluations.
        if self.non_anon.len() < MAX_FAILING_KEPT {
            self.non_anon.push(lv.to_vec());
        }
    }
    /// Marks the direct generalizations of a node as unable to beat the best (discernibility).
    fn prune_up(&mut self, idx: usize, lv: &[u8]) {
        for (c, &l) in lv.iter().enumerate() {
            if (l as usize) + 1 < self.heights[c] {
                self.pruned[idx + self.strides[c]] = true;
            }
        }
    }
    /// The kept snapshot with the fewest classes among the specializations of `lv` (its classes
    /// roll up into `lv`'s), and the number of entries the grouping will read.
    fn source(&self, lv: &[u8], tuples: usize) -> (Option<u32>, usize) {
        let mut out = (None, tuples);
        for (l, idx, n) in &self.snap_levels {
            if *n < out.1 && l.iter().zip(lv).all(|(a, b)| a <= b) {
                out = (Some(*idx), *n);
            }
        }
        out
    }
}

/// The transformation of every tuple: the global node, or for locally recoded tuples another node.
#[derive(Debug, Clone)]
pub struct Assignment {
    /// Level vectors used; `nodes[0]` is the global (full-domain) solution.
    pub nodes: Vec<Vec<u8>>,
    /// Per tuple, its index in `nodes`, or `None` when suppressed.
    pub node_of: Vec<Option<u32>>,
    /// Output class of each kept tuple (tuples whose released values are equal share a class).
    pub class_of: Vec<Option<u32>>,
    /// Records per output class.
    pub class_sizes: Vec<u64>,
    /// Records suppressed.
    pub suppressed: u64,
    /// Records released through a node other than the global one.
    pub recoded: u64,
    /// The metric over the whole output (lower is better; raw, as [`NodeEval::loss`]).
    pub loss: f64,
}

impl Lattice<'_> {
    /// The assignment of the global solution alone: every tuple at `best`'s levels or suppressed.
    pub fn global(&self, best: &NodeEval) -> Assignment {
        let node_of = best.class_of.iter().map(|&c| (!best.failing[c as usize]).then_some(0)).collect();
        let class_of = best.class_of.iter().map(|&c| (!best.failing[c as usize]).then_some(c)).collect();
        Assignment {
            nodes: vec![best.levels.clone()],
            node_of,
            class_of,
            class_sizes: best.class_sizes.iter().zip(&best.failing).map(|(&s, &f)| if f { 0 } else { s }).collect(),
            suppressed: best.suppressed,
            recoded: 0,
            loss: best.loss,
        }
    }

    /// Local recoding: the records the global solution suppresses are searched again on their own,
    /// round after round, each time releasing the classes that now meet the model at the node best
    /// for them; what no round can release stays suppressed. Released values of different nodes
    /// may coincide, which only merges classes (each already meets k and ℓ).
    pub fn local_recode(&self, best: &NodeEval, rounds: usize) -> Assignment {
        let mut a = self.global(best);
        // t-closeness is relative to the whole table's distribution, which a subset does not have.
        if self.privacy.t_closeness.is_some() {
            return a;
        }
        let table = self.table;
        let mut sub_privacy = self.privacy.clone();
        sub_privacy.suppression_limit = 1.0;
        for _ in 0..rounds {
            let left: Vec<usize> = (0..table.tuples()).filter(|&t| a.node_of[t].is_none()).collect();
            if left.is_empty() {
                break;
            }
            let mut b = FreqBuilder::new(table.q, table.sens.is_some());
            for &t in &left {
                match &table.sens {
                    Some(h) => {
                        for &(s, n) in &h[t] {
                            b.add_n(table.tuple(t), Some(s), n);
                        }
                    }
                    None => b.add_n(table.tuple(t), None, table.counts[t]),
                }
            }
            let sub = b.finish();
            let mut lat = Lattice::new(&sub, self.doms, &sub_privacy);
            lat.set_floor(&self.floor);
            let Some(out) = lat.search() else { break };
            let e = out.best;
            if e.failing.iter().all(|f| *f) {
                break;
            }
            let node = a.nodes.len() as u32;
            a.nodes.push(e.levels.clone());
            for (st, &c) in e.class_of.iter().enumerate() {
                if !e.failing[c as usize] {
                    let t = table.find(sub.tuple(st)).expect("subset of the table");
                    a.node_of[t] = Some(node);
                }
            }
        }
        self.finish_assignment(&mut a);
        a
    }

    /// Recomputes the output classes, suppression and loss of an assignment.
    #[allow(clippy::needless_range_loop)]
    fn finish_assignment(&self, a: &mut Assignment) {
        let table = self.table;
        let q = table.q;
        // Output values are compared by text: intern every label of every level per column.
        let lab: Vec<Vec<Vec<u32>>> = self
            .doms
            .iter()
            .map(|d| {
                let mut ids: HashMap<&str, u32> = HashMap::new();
                d.labels
                    .iter()
                    .map(|ls| {
                        ls.iter()
                            .map(|x| {
                                let next = ids.len() as u32;
                                *ids.entry(x.as_str()).or_insert(next)
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect();
        let mut index: HashMap<Vec<u32>, u32> = HashMap::new();
        let mut sizes: Vec<u64> = Vec::new();
        let mut key = vec![0u32; q];
        let (mut suppressed, mut recoded, mut loss_add) = (0u64, 0u64, 0.0f64);
        let mut class_of = vec![None; table.tuples()];
        for t in 0..table.tuples() {
            let row = table.tuple(t);
            let n = table.counts[t];
            let Some(node) = a.node_of[t] else {
                suppressed += n;
                if self.additive() {
                    loss_add += n as f64
                        * (0..q)
                            .map(|c| {
                                let g = self.doms[c].map[0][row[c] as usize] as usize;
                                self.cost[c][0][row[c] as usize] + self.delta[c][0][g]
                            })
                            .sum::<f64>();
                }
                continue;
            };
            let lv = &a.nodes[node as usize];
            if node > 0 {
                recoded += n;
            }
            for c in 0..q {
                let l = lv[c] as usize;
                key[c] = lab[c][l][self.doms[c].map[l][row[c] as usize] as usize];
                if self.additive() {
                    loss_add += n as f64 * self.cost[c][l][row[c] as usize];
                }
            }
            let next = sizes.len() as u32;
            let id = *index.entry(key.clone()).or_insert(next);
            if id == next {
                sizes.push(0);
            }
            sizes[id as usize] += n;
            class_of[t] = Some(id);
        }
        a.loss = if self.additive() {
            loss_add
        } else {
            sizes.iter().map(|&s| (s * s) as f64).sum::<f64>() + suppressed as f64 * self.n as f64
        };
        a.class_of = class_of;
        a.class_sizes = sizes;
        a.suppressed = suppressed;
        a.recoded = recoded;
    }
}

fn densify(keys: &mut [u64]) -> usize {
    let mut map: FastMap<u64, u64> = FastMap::with_capacity_and_hasher(keys.len(), Default::default());
    for k in keys.iter_mut() {
        let next = map.len() as u64;
        *k = *map.entry(*k).or_insert(next);
    }
    map.len().max(1)
}

/// Records in pair-classes smaller than k, per pair of columns and level pair, computed from the
/// distinct value pairs of each column pair (far fewer than the tuples).
fn pair_bounds(table: &FreqTable, doms: &[QiDomain], k: u64) -> Vec<(usize, usize, Vec<u64>)> {
    let q = doms.len();
    let pairs: Vec<(usize, usize)> = (0..q).flat_map(|a| ((a + 1)..q).map(move |b| (a, b))).collect();
    // The pairs are independent: spread them over the cores (each reads the whole table once).
    // Threads only pay off on big tables.
    let n = if table.tuples() >= PROBE_MIN_TUPLES { crate::io::workers().min(pairs.len()).max(1) } else { 1 };
    let mut out: Vec<Option<(usize, usize, Vec<u64>)>> = vec![None; pairs.len()];
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|w| {
                let pairs = &pairs;
                s.spawn(move || {
                    let mut counts: Vec<u64> = Vec::new();
                    (w..pairs.len())
                        .step_by(n)
                        .map(|i| (i, pair_bound(table, doms, k, pairs[i].0, pairs[i].1, &mut counts)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            for (i, v) in h.join().expect("pair bound worker") {
                out[i] = Some((pairs[i].0, pairs[i].1, v));
            }
        }
    });
    out.into_iter().map(|x| x.expect("every pair computed")).collect()
}

/// [`pair_bounds`] of one pair of columns: records in (a, b) classes under k per level pair.
fn pair_bound(table: &FreqTable, doms: &[QiDomain], k: u64, a: usize, b: usize, counts: &mut Vec<u64>) -> Vec<u64> {
    let q = doms.len();
    let (da, db) = (doms[a].codes().max(1), doms[b].codes().max(1));
    // Distinct (a, b) code pairs with their records.
    let mut pairs: Vec<(u32, u32, u64)> = Vec::new();
    if da * db <= 1 << 22 {
        counts.clear();
        counts.resize(da * db, 0);
        for (row, &n) in table.codes.chunks_exact(q).zip(&table.counts) {
            counts[row[a] as usize * db + row[b] as usize] += n;
        }
        for (i, &n) in counts.iter().enumerate() {
            if n > 0 {
                pairs.push(((i / db) as u32, (i % db) as u32, n));
            }
        }
    } else {
        let mut m: FastMap<u64, u64> = FastMap::default();
        for (row, &n) in table.codes.chunks_exact(q).zip(&table.counts) {
            *m.entry(((row[a] as u64) << 32) | row[b] as u64).or_default() += n;
        }
        pairs.extend(m.into_iter().map(|(key, n)| ((key >> 32) as u32, key as u32, n)));
    }
    let (ha, hb) = (doms[a].levels(), doms[b].levels());
    let mut v = vec![0u64; ha * hb];
    for la in 0..ha {
        for lb in 0..hb {
            let (sa, sb) = (doms[a].size(la), doms[b].size(lb));
            let (ma, mb) = (&doms[a].map[la], &doms[b].map[lb]);
            let small: u64 = if sa * sb <= 1 << 22 {
                counts.clear();
                counts.resize(sa * sb, 0);
                for &(x, y, n) in &pairs {
                    counts[ma[x as usize] as usize * sb + mb[y as usize] as usize] += n;
                }
                counts.iter().filter(|&&c| c > 0 && c < k).sum()
            } else {
                let mut m: FastMap<u64, u64> = FastMap::default();
                for &(x, y, n) in &pairs {
                    *m.entry(ma[x as usize] as u64 * sb as u64 + mb[y as usize] as u64).or_default() += n;
                }
                m.values().filter(|&&c| c < k).sum()
            };
            v[la * hb + lb] = small;
        }
    }
    v
}
