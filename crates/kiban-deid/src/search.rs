//! The k-anonymity search: optimal full-domain generalization over the hierarchy lattice with a
//! record-suppression limit, on the frequency table of distinct quasi-identifier tuples.
//!
//! Nodes are visited best-first by a lower bound of the information loss (the loss of
//! generalization alone, which is monotone over the lattice and never above the loss with
//! suppression), so the search stops as soon as the bound reaches the best loss found; a node
//! dominated by a known non-anonymous node is skipped without evaluation (k-anonymity and
//! ℓ-diversity with suppression are monotone: generalizing never adds records to failing
//! classes). Lattices above `max_lattice_nodes` are searched by a greedy ascent instead.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

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

/// The frequency table of distinct quasi-identifier tuples (codes, column-major) with counts and,
/// when a sensitive criterion is set, the sensitive value histogram of each tuple.
#[derive(Debug, Clone, Default)]
pub struct FreqTable {
    /// `cols[c][t]`: code of column c in tuple t.
    pub cols: Vec<Vec<u32>>,
    /// Records per tuple.
    pub counts: Vec<u64>,
    /// Sensitive histogram per tuple (code, count), when needed.
    pub sens: Option<Vec<Vec<(u32, u64)>>>,
    /// Number of distinct sensitive values.
    pub sens_domain: usize,
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
}

/// Builds a [`FreqTable`] incrementally from rows of codes.
#[derive(Debug, Default)]
pub struct FreqBuilder {
    index: HashMap<Vec<u32>, u32, BuildHasherDefault<FastHasher>>,
    table: FreqTable,
    q: usize,
}

impl FreqBuilder {
    /// A builder for `q` columns, tracking sensitive histograms when `sensitive`.
    pub fn new(q: usize, sensitive: bool) -> Self {
        FreqBuilder {
            index: Default::default(),
            table: FreqTable { cols: vec![Vec::new(); q], sens: sensitive.then(Vec::new), ..Default::default() },
            q,
        }
    }
    /// Counts one record with QI codes `tuple` and sensitive code `sens`.
    pub fn add(&mut self, tuple: &[u32], sens: Option<u32>) {
        let t = &mut self.table;
        let id = match self.index.get(tuple) {
            Some(&id) => id,
            None => {
                let id = t.counts.len() as u32;
                for (c, v) in tuple.iter().enumerate().take(self.q) {
                    t.cols[c].push(*v);
                }
                t.counts.push(0);
                if let Some(s) = &mut t.sens {
                    s.push(Vec::new());
                }
                self.index.insert(tuple.to_vec(), id);
                id
            }
        } as usize;
        t.counts[id] += 1;
        if let (Some(hist), Some(sv)) = (&mut t.sens, sens) {
            let h = &mut hist[id];
            match h.iter_mut().find(|(v, _)| *v == sv) {
                Some(e) => e.1 += 1,
                None => h.push((sv, 1)),
            }
            t.sens_domain = t.sens_domain.max(sv as usize + 1);
        }
    }
    /// The finished table.
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
    /// Whether the result is proven optimal (exhaustive search with bounds) or heuristic.
    pub optimal: bool,
}

/// The lattice search over a frequency table.
pub struct Lattice<'a> {
    table: &'a FreqTable,
    doms: &'a [QiDomain],
    privacy: &'a Privacy,
    n: u64,
    max_suppressed: u64,
    /// `cost[c][level][code]` per-cell cost for additive metrics; `sup[c][code]` when suppressed.
    cost: Vec<Vec<Vec<f64>>>,
    sup: Vec<Vec<f64>>,
    /// `colcost[c][level]` = Σ count × cost.
    colcost: Vec<Vec<f64>>,
    sens_global: Vec<f64>,
    dense: Vec<u32>,
    /// For each pair of columns, records in pair-classes smaller than k at each level pair: a lower
    /// bound of the records any node with those levels must suppress.
    pair_lb: Vec<(usize, usize, Vec<u64>)>,
}

impl<'a> Lattice<'a> {
    /// Prepares the search: per-column costs for the metric.
    #[allow(clippy::needless_range_loop)]
    pub fn new(table: &'a FreqTable, doms: &'a [QiDomain], privacy: &'a Privacy) -> Self {
        let n = table.records();
        let q = doms.len();
        let mut marg: Vec<Vec<u64>> = doms.iter().map(|d| vec![0; d.codes()]).collect();
        for c in 0..q {
            for (t, &code) in table.cols[c].iter().enumerate() {
                marg[c][code as usize] += table.counts[t];
            }
        }
        let mut cost = Vec::with_capacity(q);
        let mut sup = Vec::with_capacity(q);
        let mut colcost = Vec::with_capacity(q);
        for (c, d) in doms.iter().enumerate() {
            let dsize = d.size(0) as f64;
            let h = (d.levels() - 1).max(1) as f64;
            // Marginal of each generalized value per level, for entropy.
            let mut per_level = Vec::with_capacity(d.levels());
            let mut cc = Vec::with_capacity(d.levels());
            for l in 0..d.levels() {
                let mut gfreq = vec![0u64; d.size(l)];
                for (code, &m) in marg[c].iter().enumerate() {
                    gfreq[d.map[l][code] as usize] += m;
                }
                let v: Vec<f64> = (0..d.codes())
                    .map(|code| {
                        let g = d.map[l][code] as usize;
                        match privacy.metric {
                            Metric::Loss | Metric::Discernibility => {
                                if dsize > 1.0 {
                                    (d.leaves[l][g] as f64 - 1.0) / (dsize - 1.0)
                                } else {
                                    0.0
                                }
                            }
                            Metric::Precision => l as f64 / h,
                            Metric::Entropy => {
                                if marg[c][code] == 0 {
                                    0.0
                                } else {
                                    (gfreq[g] as f64 / marg[c][code] as f64).log2()
                                }
                            }
                        }
                    })
                    .collect();
                cc.push(v.iter().zip(&marg[c]).map(|(x, m)| x * *m as f64).sum());
                per_level.push(v);
            }
            let s: Vec<f64> = (0..d.codes())
                .map(|code| match privacy.metric {
                    Metric::Entropy if marg[c][code] > 0 => (n as f64 / marg[c][code] as f64).log2(),
                    Metric::Entropy => 0.0,
                    _ => 1.0,
                })
                .collect();
            cost.push(per_level);
            sup.push(s);
            colcost.push(cc);
        }
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
        Lattice { table, doms, privacy, n, max_suppressed, cost, sup, colcost, sens_global, dense: Vec::new(), pair_lb }
    }

    /// Whether the pairwise bound already proves the node cannot meet k within the suppression limit.
    pub fn surely_fails(&self, levels: &[u8]) -> bool {
        self.pair_lb.iter().any(|(a, b, v)| {
            let hb = self.doms[*b].levels();
            v[levels[*a] as usize * hb + levels[*b] as usize] > self.max_suppressed
        })
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

    /// Groups the table at `levels` and checks the privacy model.
    pub fn evaluate(&mut self, levels: &[u8]) -> NodeEval {
        let nt = self.table.tuples();
        let mut class_of = vec![0u32; nt];
        let mut class_sizes: Vec<u64> = Vec::new();
        // Mixed-radix keys; fold to dense ids when the radix would overflow.
        let mut keys = vec![0u64; nt];
        let mut radix: u128 = 1;
        for (c, &l) in levels.iter().enumerate() {
            let g = &self.doms[c].map[l as usize];
            let size = self.doms[c].size(l as usize) as u128;
            if size == 1 {
                continue;
            }
            if radix * size > u64::MAX as u128 {
                radix = self.densify(&mut keys) as u128;
            }
            let col = &self.table.cols[c];
            let s = size as u64;
            for (k, &code) in keys.iter_mut().zip(col) {
                *k = *k * s + g[code as usize] as u64;
            }
            radix *= size;
        }
        if radix <= (1 << 22) {
            let r = radix as usize;
            if self.dense.len() < r {
                self.dense.resize(r, u32::MAX);
            }
            for (t, &k) in keys.iter().enumerate() {
                let slot = &mut self.dense[k as usize];
                if *slot == u32::MAX {
                    *slot = class_sizes.len() as u32;
                    class_sizes.push(0);
                }
                class_of[t] = *slot;
                class_sizes[*slot as usize] += self.table.counts[t];
            }
            for &k in &keys {
                self.dense[k as usize] = u32::MAX;
            }
        } else {
            let mut map: FastMap<u64, u32> = FastMap::with_capacity_and_hasher(nt, Default::default());
            for (t, &k) in keys.iter().enumerate() {
                let next = class_sizes.len() as u32;
                let id = *map.entry(k).or_insert(next);
                if id == next {
                    class_sizes.push(0);
                }
                class_of[t] = id;
                class_sizes[id as usize] += self.table.counts[t];
            }
        }
        let failing = self.failing(&class_of, &class_sizes);
        let suppressed: u64 = class_sizes.iter().zip(&failing).filter(|(_, f)| **f).map(|(s, _)| s).sum();
        let anonymous = suppressed <= self.max_suppressed;
        let loss = self.loss(levels, &class_of, &class_sizes, &failing);
        NodeEval { levels: levels.to_vec(), class_of, class_sizes, failing, suppressed, anonymous, loss }
    }

    fn densify(&self, keys: &mut [u64]) -> usize {
        let mut map: FastMap<u64, u64> = FastMap::with_capacity_and_hasher(keys.len(), Default::default());
        for k in keys.iter_mut() {
            let next = map.len() as u64;
            *k = *map.entry(*k).or_insert(next);
        }
        map.len().max(1)
    }

    fn failing(&self, class_of: &[u32], sizes: &[u64]) -> Vec<bool> {
        let k = self.privacy.k;
        let mut failing: Vec<bool> = sizes.iter().map(|&s| s < k).collect();
        let (Some(hist), true) =
            (&self.table.sens, self.privacy.l_diversity.is_some() || self.privacy.t_closeness.is_some())
        else {
            return failing;
        };
        let mut class_hist: Vec<Vec<(u32, u64)>> = vec![Vec::new(); sizes.len()];
        for (t, &c) in class_of.iter().enumerate() {
            let ch = &mut class_hist[c as usize];
            for &(s, cnt) in &hist[t] {
                match ch.iter_mut().find(|(v, _)| *v == s) {
                    Some(e) => e.1 += cnt,
                    None => ch.push((s, cnt)),
                }
            }
        }
        for (c, ch) in class_hist.iter().enumerate() {
            if failing[c] {
                continue;
            }
            let size = sizes[c] as f64;
            if let Some(l) = &self.privacy.l_diversity {
                let ok = match l.variant {
                    LVariant::Distinct => ch.len() as f64 >= l.l,
                    LVariant::Entropy => {
                        let h: f64 = ch.iter().map(|&(_, n)| n as f64 / size).map(|p| -p * p.log2()).sum();
                        h + 1e-12 >= l.l.log2()
                    }
                };
                failing[c] |= !ok;
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
                failing[c] |= d / 2.0 > t.t + 1e-12;
            }
        }
        failing
    }

    fn loss(&self, levels: &[u8], class_of: &[u32], sizes: &[u64], failing: &[bool]) -> f64 {
        if self.privacy.metric == Metric::Discernibility {
            let n = self.n as f64;
            return sizes.iter().zip(failing).map(|(&s, &f)| if f { s as f64 * n } else { (s * s) as f64 }).sum();
        }
        let mut total = self.lower_bound(levels);
        if failing.iter().any(|f| *f) {
            for (t, &c) in class_of.iter().enumerate() {
                if failing[c as usize] {
                    let cnt = self.table.counts[t] as f64;
                    for (col, &l) in levels.iter().enumerate() {
                        let code = self.table.cols[col][t] as usize;
                        total += cnt * (self.sup[col][code] - self.cost[col][l as usize][code]);
                    }
                }
            }
        }
        total
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
        let decode = |mut i: usize, out: &mut [u8]| {
            for c in (0..q).rev() {
                out[c] = (i % heights[c]) as u8;
                i /= heights[c];
            }
        };
        let mut nodes: Vec<(f64, u32, u32)> = Vec::with_capacity(total);
        let mut lv = vec![0u8; q];
        for i in 0..total {
            decode(i, &mut lv);
            let h: u32 = lv.iter().map(|&x| x as u32).sum();
            nodes.push((self.lower_bound(&lv), h, i as u32));
        }
        nodes.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let additive = self.additive();
        let mut pruned = vec![false; if additive { 0 } else { total }];
        let mut strides = vec![1usize; q];
        for c in (0..q.saturating_sub(1)).rev() {
            strides[c] = strides[c + 1] * heights[c + 1];
        }
        let mut non_anon: Vec<Vec<u8>> = Vec::new();
        let mut best: Option<NodeEval> = None;
        let mut evaluated = 0;
        for &(lb, _, idx) in &nodes {
            let idx = idx as usize;
            decode(idx, &mut lv);
            if let Some(b) = &best
                && additive
                && lb >= b.loss - 1e-9
            {
                break;
            }
            if !additive && pruned[idx] {
                for c in 0..q {
                    if (lv[c] as usize) + 1 < heights[c] {
                        pruned[idx + strides[c]] = true;
                    }
                }
                continue;
            }
            if self.surely_fails(&lv) {
                continue;
            }
            if self.monotone() && non_anon.iter().any(|m| m.iter().zip(&lv).all(|(a, b)| b <= a)) {
                continue;
            }
            let e = self.evaluate(&lv);
            evaluated += 1;
            if !additive {
                // Discernibility without suppression bounds every generalization of this node.
                let bound: f64 = e.class_sizes.iter().map(|&s| (s * s) as f64).sum();
                if best.as_ref().is_some_and(|b| bound >= b.loss) {
                    for c in 0..q {
                        if (lv[c] as usize) + 1 < heights[c] {
                            pruned[idx + strides[c]] = true;
                        }
                    }
                }
            }
            if !e.anonymous {
                if self.monotone() && non_anon.len() < 256 {
                    non_anon.retain(|m| !m.iter().zip(&lv).all(|(a, b)| a <= b));
                    non_anon.push(lv.clone());
                }
                continue;
            }
            if best.as_ref().is_none_or(|b| e.loss < b.loss - 1e-9) {
                best = Some(e);
            }
        }
        best.map(|best| SearchOutcome { best, lattice_size: size, evaluated, optimal: true })
    }

    fn greedy(&mut self, size: u128) -> Option<SearchOutcome> {
        let heights: Vec<usize> = self.doms.iter().map(|d| d.levels()).collect();
        let q = heights.len();
        let mut cur = self.evaluate(&vec![0u8; q]);
        let mut evaluated = 1;
        while !cur.anonymous {
            let mut next: Option<NodeEval> = None;
            for c in 0..q {
                if (cur.levels[c] as usize) + 1 >= heights[c] {
                    continue;
                }
                let mut lv = cur.levels.clone();
                lv[c] += 1;
                let e = self.evaluate(&lv);
                evaluated += 1;
                let better = match &next {
                    None => true,
                    Some(b) => {
                        (e.anonymous, std::cmp::Reverse(e.suppressed), -e.loss)
                            > (b.anonymous, std::cmp::Reverse(b.suppressed), -b.loss)
                    }
                };
                if better {
                    next = Some(e);
                }
            }
            cur = next?;
        }
        // Descend while a specialization stays anonymous with lower loss.
        loop {
            let mut improved = false;
            for c in 0..q {
                if cur.levels[c] == 0 {
                    continue;
                }
                let mut lv = cur.levels.clone();
                lv[c] -= 1;
                let e = self.evaluate(&lv);
                evaluated += 1;
                if e.anonymous && e.loss < cur.loss - 1e-9 {
                    cur = e;
                    improved = true;
                    break;
                }
            }
            if !improved {
                break;
            }
        }
        Some(SearchOutcome { best: cur, lattice_size: size, evaluated, optimal: false })
    }
}

fn pair_bounds(table: &FreqTable, doms: &[QiDomain], k: u64) -> Vec<(usize, usize, Vec<u64>)> {
    let q = doms.len();
    let mut out = Vec::new();
    let mut counts: Vec<u64> = Vec::new();
    for a in 0..q {
        for b in (a + 1)..q {
            let (ha, hb) = (doms[a].levels(), doms[b].levels());
            let mut v = vec![0u64; ha * hb];
            for la in 0..ha {
                for lb in 0..hb {
                    let (sa, sb) = (doms[a].size(la), doms[b].size(lb));
                    let (ma, mb) = (&doms[a].map[la], &doms[b].map[lb]);
                    let mut small = 0;
                    if sa * sb <= 1 << 22 {
                        counts.clear();
                        counts.resize(sa * sb, 0);
                        for t in 0..table.tuples() {
                            let key =
                                ma[table.cols[a][t] as usize] as usize * sb + mb[table.cols[b][t] as usize] as usize;
                            counts[key] += table.counts[t];
                        }
                        small = counts.iter().filter(|&&c| c > 0 && c < k).sum();
                    } else {
                        let mut m: FastMap<u64, u64> = FastMap::default();
                        for t in 0..table.tuples() {
                            let key =
                                ma[table.cols[a][t] as usize] as u64 * sb as u64 + mb[table.cols[b][t] as usize] as u64;
                            *m.entry(key).or_default() += table.counts[t];
                        }
                        small = m.values().filter(|&&c| c < k).sum::<u64>().max(small);
                    }
                    v[la * hb + lb] = small;
                }
            }
            out.push((a, b, v));
        }
    }
    out
}
