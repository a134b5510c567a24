//! The anonymization run: pass 1 counts (dictionaries of quasi-identifier values, the frequency
//! table of distinct tuples, rare-value counts), the lattice search, pass 2 applies the chosen
//! transformation and writes the output, then the report is assembled.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, ArrayRef, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use kiban_model::dataset::ColumnRole;
use rand::Rng;
use sha2::{Digest, Sha256};

use crate::error::{DeidError, Result};
use crate::hierarchy::{Builder, Hierarchy, MissingRule};
use crate::io::{Input, Output, Sink, file_sha256, hash_batch, strings};
use crate::policy::{Policy, SuppressedRecords, Treatment};
use crate::report::{ColumnReport, Report, SearchReport};
use crate::risk::{class_size_histogram, risk};
use crate::search::{FreqBuilder, Lattice, QiDomain};

/// A caller-supplied per-release keyed function `(column, value) -> code` for link_code columns (A3).
pub type Rekey = dyn Fn(&str, &str) -> String + Send + Sync;

/// A step of a run, reported to [`RunOptions::progress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Pass 1: records read and counted so far.
    Counted(u64),
    /// The lattice search started over this many distinct quasi-identifier tuples.
    Searching(u64),
    /// Pass 2: records processed so far, of `total`.
    Written {
        /// Records processed.
        done: u64,
        /// Records in the input.
        total: u64,
    },
}

/// A progress callback.
pub type ProgressFn = dyn Fn(Progress) + Send + Sync;

/// Counts the records of each distinct combination of the named columns (pass 1's group counts),
/// somewhere else than this process (e.g. as the same DataFusion plan on a Ballista cluster), and
/// hands them to the sink chunk by chunk in lexicographic order of the values, as
/// [`crate::frequency::sorted_count`] orders them (rows out of order are refused).
#[cfg(feature = "datafusion")]
pub type GroupCountFn = dyn Fn(&[String], &mut crate::frequency::GroupSink) -> Result<()> + Send + Sync;

/// Options of one run.
#[derive(Default)]
pub struct RunOptions {
    /// Re-keying of link_code columns for this release; `None` uses a random key destroyed after the run,
    /// so no two releases can be joined.
    pub rekey: Option<Box<Rekey>>,
    /// Called after every batch of each pass and when the search starts.
    pub progress: Option<Box<ProgressFn>>,
    /// Run the frequency pass (pass 1) as a DataFusion plan instead of the in-process stream.
    pub datafusion: bool,
    /// Runs pass 1's group counts through this function (implies `datafusion`); the search and
    /// pass 2 stay here.
    #[cfg(feature = "datafusion")]
    pub group_count: Option<Box<GroupCountFn>>,
    /// Runs pass 2 through this function when the policy allows ([`crate::apply`]); the search
    /// stays here and this process writes the output.
    pub apply: Option<Box<crate::apply::ApplyFn>>,
    /// Derive the run's token and release keys from this seed instead of the random source, so two
    /// runs can be compared byte for byte (tests and benchmarks only; a release uses fresh keys).
    pub key_seed: Option<[u8; 32]>,
    /// Distinct quasi-identifier tuples kept at most in pass 1 (default [`DEFAULT_TUPLE_BUDGET`]);
    /// past it the table is folded one level up on a quasi-identifier, so memory stays bounded
    /// at any input size and the report says which levels the search could no longer reach.
    pub tuple_budget: Option<usize>,
}

impl RunOptions {
    fn report(&self, p: Progress) {
        if let Some(f) = &self.progress {
            f(p);
        }
    }

    fn datafusion_pass(&self) -> bool {
        #[cfg(feature = "datafusion")]
        if self.group_count.is_some() {
            return true;
        }
        self.datafusion
    }

    /// Pass 1's group counts of `columns`, each row handed to `row` with its values and count, in
    /// lexicographic order (checked: the codes, folds and output must not depend on the engine).
    #[cfg(feature = "datafusion")]
    fn for_each_group(
        &self,
        input: &Input,
        delimiter: u8,
        columns: &[String],
        row: &mut dyn FnMut(&[&str], u64) -> Result<()>,
    ) -> Result<()> {
        let mut prev: Vec<String> = Vec::new();
        let mut sink = |c: crate::frequency::GroupChunk| -> Result<()> {
            let mut values: Vec<&str> = Vec::with_capacity(columns.len());
            if c.columns.len() != columns.len() {
                return Err(DeidError::format(
                    "group counts",
                    format!("{} columns, not {}", c.columns.len(), columns.len()),
                ));
            }
            for r in 0..c.len() {
                values.clear();
                values.extend(c.columns.iter().map(|a| a.value(r)));
                let ordered = if r == 0 {
                    prev.is_empty() || prev.iter().map(String::as_str).lt(values.iter().copied())
                } else {
                    c.columns.iter().map(|a| a.value(r - 1)).lt(values.iter().copied())
                };
                if !ordered {
                    return Err(DeidError::format(
                        "group counts",
                        "rows are not in strictly increasing order of their values (the plan must sort them)",
                    ));
                }
                row(&values, c.counts[r])?;
            }
            if let Some(last) = c.len().checked_sub(1) {
                prev = c.columns.iter().map(|a| a.value(last).to_owned()).collect();
            }
            Ok(())
        };
        match &self.group_count {
            Some(f) => f(columns, &mut sink),
            None => crate::frequency::for_each_group(input, delimiter, columns, &mut sink),
        }
    }
}

/// The result of a run.
#[derive(Debug)]
pub struct Outcome {
    /// The processing report (never contains keys or mappings).
    pub report: Report,
    /// The output batches when the output is [`Output::Memory`].
    pub batches: Vec<RecordBatch>,
}

/// A random 256-bit key used once and wiped on drop; nothing maps tokens back to values.
struct EphemeralKey([u8; 32]);

impl EphemeralKey {
    fn new() -> Self {
        let mut k = [0u8; 32];
        rand::rng().fill_bytes(&mut k);
        EphemeralKey(k)
    }
    fn derived(seed: &[u8; 32], which: &str) -> Self {
        let mut h = Sha256::new();
        h.update(b"kiban-deid run key seed\0");
        h.update(which.as_bytes());
        h.update(seed);
        EphemeralKey(h.finalize().into())
    }
    fn token(&self, column: &str, value: &str) -> String {
        crate::apply::token(&self.0, column, value)
    }
}

impl Drop for EphemeralKey {
    fn drop(&mut self) {
        self.0 = [0u8; 32];
        std::hint::black_box(&self.0);
    }
}

const MISSING: u32 = u32::MAX;

/// Rounds of local recoding at most (each searches the still-suppressed records again).
const LOCAL_RECODING_ROUNDS: usize = 8;

/// String-keyed map with a fast seeded hash (keys are data values; the seed is fixed per build).
type StrMap<V> = HashMap<String, V, foldhash::fast::FixedState>;

struct QiState {
    col: usize,
    dict: StrMap<u32>,
    chains: Vec<Vec<String>>,
}

#[derive(Default)]
struct RareState {
    col: usize,
    group_cols: Vec<usize>,
    counts: HashMap<(String, String), u64>,
    /// Rare (group, value) pairs and the hierarchy label they are generalized to.
    lifted: HashMap<(String, String), String>,
    top_coded: u64,
    bottom_coded: u64,
    suppressed: u64,
    generalized: u64,
}

/// Decides, for a rare column with a hierarchy, which rare values are generalized and to what (A4):
/// level by level, the values still rare within a group are gathered by their ancestor; an
/// ancestor whose gathered count (plus any kept value spelled like it) reaches `min_count` takes
/// them all, so every label in the output is seen at least `min_count` times. Values no level can
/// gather (or not covered by the hierarchy) stay rare and are suppressed.
fn lift_rare_values(st: &mut RareState, h: &Hierarchy, min_count: u64) {
    let mut pending: Vec<(&(String, String), u64, Vec<String>)> = st
        .counts
        .iter()
        .filter(|&(_, &n)| n < min_count)
        .filter_map(|(k, &n)| h.chain(&k.1).map(|c| (k, n, c)))
        .collect();
    // A deterministic order, so equal inputs give equal outputs whatever the map's order.
    pending.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut lifted = HashMap::new();
    for level in 1..h.levels() {
        let mut gathered: HashMap<(String, String), u64> = HashMap::new();
        for (k, n, chain) in &pending {
            if let Some(label) = chain.get(level).filter(|l| *l != "*") {
                *gathered.entry((k.0.clone(), label.clone())).or_default() += n;
            }
        }
        let reaches = |g: &str, label: &str, sum: u64| {
            let kept = st.counts.get(&(g.to_owned(), label.to_owned())).copied().filter(|&n| n >= min_count);
            sum + kept.unwrap_or(0) >= min_count
        };
        pending.retain(|(k, _, chain)| match chain.get(level) {
            Some(label) if label != "*" && reaches(&k.0, label, gathered[&(k.0.clone(), label.clone())]) => {
                lifted.insert((*k).clone(), label.clone());
                false
            }
            _ => true,
        });
        if pending.is_empty() {
            break;
        }
    }
    st.lifted = lifted;
}

fn group_key(batch: &RecordBatch, cols: &[usize], r: usize) -> String {
    let mut k = String::new();
    for &c in cols {
        let a = strings(batch, c);
        if a.is_valid(r) {
            k.push_str(a.value(r));
        }
        k.push('\u{1f}');
    }
    k
}

fn code_of(q: &mut QiState, h: &Hierarchy, column: &str, v: &str) -> Result<u32> {
    if let Some(&c) = q.dict.get(v) {
        return Ok(c);
    }
    let code = match h.chain(v) {
        Some(ch) if ch.len() == h.levels() => {
            q.chains.push(ch);
            q.chains.len() as u32 - 1
        }
        _ => match h.missing {
            MissingRule::Error => {
                return Err(DeidError::MissingValue { column: column.to_owned(), hierarchy: h.name.clone() });
            }
            MissingRule::Suppress => MISSING,
            MissingRule::Star => {
                q.chains.push(vec!["*".to_owned(); h.levels()]);
                q.chains.len() as u32 - 1
            }
        },
    };
    q.dict.insert(v.to_owned(), code);
    Ok(code)
}

type Setup = (Vec<QiState>, Option<usize>, Vec<RareState>);

/// Distinct quasi-identifier tuples kept at most before the table is folded (see [`Counter`]):
/// about 50 bytes each, so the table stays near 1 GB at any input size.
pub const DEFAULT_TUPLE_BUDGET: usize = 20_000_000;

/// The frequency table under construction, kept within a tuple budget: when the distinct tuples
/// pass it, the quasi-identifier whose next level merges the most values is folded one level up
/// (its codes replaced by one representative per value at that level, equal tuples merged) until
/// the table is back under half the budget. The search then starts at that floor; nodes below it
/// are bounded with exact per-column marginals and reported when they might have done better.
struct Counter {
    freq: FreqBuilder,
    sens: bool,
    budget: usize,
    floor: Vec<u8>,
    /// Per QI: the representative code of each original code at the floor level.
    rep: Vec<Vec<u32>>,
    by_label: Vec<HashMap<String, u32>>,
    /// Per QI: records per original code over the whole input.
    marg: Vec<Vec<u64>>,
    key: Vec<u32>,
}

/// What pass 1 leaves for the search.
struct Counted {
    table: crate::search::FreqTable,
    floor: Vec<u8>,
    reps: Vec<Vec<u32>>,
    marginals: Vec<Vec<u64>>,
}

impl Counter {
    fn new(q: usize, sens: bool, budget: usize) -> Self {
        Counter {
            freq: FreqBuilder::new(q, sens),
            sens,
            budget: budget.max(1),
            floor: vec![0; q],
            rep: vec![Vec::new(); q],
            by_label: vec![HashMap::new(); q],
            marg: vec![Vec::new(); q],
            key: vec![0; q],
        }
    }

    fn rep_of(&mut self, qstate: &[QiState], i: usize, raw: u32) -> u32 {
        let r = raw as usize;
        while self.rep[i].len() <= r {
            let c = self.rep[i].len();
            let f = self.floor[i] as usize;
            let rep = if f == 0 {
                c as u32
            } else {
                let label = &qstate[i].chains[c][f];
                match self.by_label[i].get(label) {
                    Some(&x) => x,
                    None => *self.by_label[i].entry(label.clone()).or_insert(c as u32),
                }
            };
            self.rep[i].push(rep);
        }
        self.rep[i][r]
    }

    /// Counts `n` records of original codes `raw` (none missing).
    fn add(&mut self, qstate: &[QiState], raw: &[u32], sens: Option<u32>, n: u64) {
        for (i, &c) in raw.iter().enumerate() {
            let m = &mut self.marg[i];
            if m.len() <= c as usize {
                m.resize(c as usize + 1, 0);
            }
            m[c as usize] += n;
            self.key[i] = self.rep_of(qstate, i, c);
        }
        self.freq.add_n(&self.key, sens, n);
    }

    /// Folds the table while it is over budget (see [`Counter`]).
    fn enforce(&mut self, qstate: &[QiState]) {
        if self.freq.tuples() <= self.budget {
            return;
        }
        let q = self.floor.len();
        while self.freq.tuples() > self.budget / 2 {
            // Per record, the ARX loss (leaves under the value − 1)/(values − 1) of column i at
            // level l, from the exact marginals; and the number of values at l.
            let level_stats = |i: usize, l: usize| -> (f64, usize) {
                let chains = &qstate[i].chains;
                let mut leaves: HashMap<&str, u64> = HashMap::new();
                for ch in chains {
                    *leaves.entry(ch[l].as_str()).or_default() += 1;
                }
                let d = (chains.len() as f64 - 1.0).max(1.0);
                let m = &self.marg[i];
                let (mut loss, mut n) = (0.0, 0u64);
                for (c, ch) in chains.iter().enumerate() {
                    let x = m.get(c).copied().unwrap_or(0);
                    loss += x as f64 * (leaves[ch[l].as_str()] as f64 - 1.0) / d;
                    n += x;
                }
                (loss / n.max(1) as f64, leaves.len())
            };
            // Fold where the fewest values' worth of loss buys the largest merge, so the floor stays
            // under the levels the optimum is likely to pick (a flat column to `*` costs a whole cell).
            let pick = (0..q)
                .filter(|&i| !qstate[i].chains.is_empty() && (self.floor[i] as usize) + 1 < qstate[i].chains[0].len())
                .filter_map(|i| {
                    let f = self.floor[i] as usize;
                    let (l0, n0) = level_stats(i, f);
                    let (l1, n1) = level_stats(i, f + 1);
                    let ratio = n0 as f64 / n1.max(1) as f64;
                    (ratio > 1.0).then(|| (ratio.ln() / ((l1 - l0).max(0.0) + 1e-6), i))
                })
                .max_by(|a, b| a.0.total_cmp(&b.0));
            let Some((_, i)) = pick else { return };
            self.floor[i] += 1;
            self.rep[i].clear();
            self.by_label[i].clear();
            for c in 0..qstate[i].chains.len() {
                self.rep_of(qstate, i, c as u32);
            }
            let old = std::mem::replace(&mut self.freq, FreqBuilder::new(q, self.sens)).finish();
            let mut key = vec![0u32; q];
            for t in 0..old.tuples() {
                key.copy_from_slice(old.tuple(t));
                key[i] = self.rep[i][key[i] as usize];
                match &old.sens {
                    Some(h) => {
                        for &(s, n) in &h[t] {
                            self.freq.add_n(&key, Some(s), n);
                        }
                    }
                    None => self.freq.add_n(&key, None, old.counts[t]),
                }
            }
        }
    }

    fn finish(mut self, qstate: &[QiState]) -> Counted {
        for (i, q) in qstate.iter().enumerate() {
            if let Some(last) = q.chains.len().checked_sub(1) {
                self.rep_of(qstate, i, last as u32);
            }
            self.marg[i].resize(q.chains.len(), 0);
        }
        let mut table = self.freq.finish();
        table.floor_folded = self.floor.iter().any(|&f| f > 0);
        Counted { table, floor: self.floor, reps: self.rep, marginals: self.marg }
    }
}

/// What pass 2 counts while it transforms one batch (summed in input order).
struct Pass2Stats {
    /// Per rare column: top-coded, bottom-coded, suppressed.
    rare: Vec<[u64; 4]>,
    /// Per date column: values that could not be read as dates (released as `*`).
    invalid: HashMap<usize, u64>,
}

/// The offset in days, never 0, within ±`max_days`, that `key` gives the records whose value in
/// grouping column `column` is `by` (SHA-256 of the key and both; uniform up to a bias of 2⁻⁶⁴·max).
/// Date columns with the same grouping and `max_days` move together.
fn shift_offset(key: &EphemeralKey, column: &str, by: &str, max_days: u32) -> i64 {
    let mut h = Sha256::new();
    h.update(key.0);
    h.update(b"date shift\0");
    h.update(column.as_bytes());
    h.update([0]);
    h.update(by.as_bytes());
    let d = h.finalize();
    let x = u64::from_le_bytes(d[..8].try_into().expect("8 bytes"));
    let span = 2 * max_days as u64;
    let m = x % span;
    if m < max_days as u64 { -(m as i64) - 1 } else { (m - max_days as u64) as i64 + 1 }
}

/// Writes `value` moved by `days` into `out` as `YYYY-MM-DD`; false when it is not a date.
fn shift_date(value: &str, days: i64, out: &mut String) -> bool {
    let Some((y, m, d)) = crate::hierarchy::parse_date(value.trim()) else { return false };
    let Some(date) = chrono::NaiveDate::from_ymd_opt(y, m, d) else { return false };
    let Some(moved) = date.checked_add_signed(chrono::TimeDelta::days(days)) else { return false };
    use std::fmt::Write;
    write!(out, "{}", moved.format("%Y-%m-%d")).is_ok()
}

/// One batch coded on its own (pass 1, on a worker): per quasi-identifier the row of the first
/// occurrence of each distinct value (in order of first appearance), the same for the sensitive
/// column, and the batch's tuples of those local ids with their counts (and sensitive histograms).
struct LocalCodes {
    firsts: Vec<Vec<u32>>,
    sens_firsts: Vec<u32>,
    table: crate::search::FreqTable,
}

/// Codes one batch against batch-local dictionaries; `None` when a column is missing (the merge
/// then reports it by name through [`setup_columns`]).
fn local_codes(batch: &RecordBatch, qis: &[&str], sens: Option<&str>) -> Result<Option<LocalCodes>> {
    let schema = batch.schema();
    let Ok(cols) = qis.iter().map(|n| schema.index_of(n)).collect::<std::result::Result<Vec<usize>, _>>() else {
        return Ok(None);
    };
    let sens_col = match sens.map(|n| schema.index_of(n)).transpose() {
        Ok(c) => c,
        Err(_) => return Ok(None),
    };
    let rows = batch.num_rows();
    let mut ids: Vec<Vec<u32>> = Vec::with_capacity(cols.len());
    let mut firsts: Vec<Vec<u32>> = Vec::with_capacity(cols.len());
    for &c in &cols {
        let (i, f) = local_ids(strings(batch, c), rows);
        ids.push(i);
        firsts.push(f);
    }
    let (sens_ids, sens_firsts) = match sens_col {
        Some(c) => {
            let (i, f) = local_ids(strings(batch, c), rows);
            (Some(i), f)
        }
        None => (None, Vec::new()),
    };
    let mut b = FreqBuilder::new(cols.len(), sens_col.is_some());
    let mut tuple = vec![0u32; cols.len()];
    for r in 0..rows {
        for (t, col) in tuple.iter_mut().zip(&ids) {
            *t = col[r];
        }
        b.add(&tuple, sens_ids.as_ref().map(|s| s[r]));
    }
    Ok(Some(LocalCodes { firsts, sens_firsts, table: b.finish() }))
}

/// Batch-local ids of a column's values (null read as the empty string) in order of first
/// appearance, and the row of each id's first occurrence.
fn local_ids(a: &arrow::array::StringArray, rows: usize) -> (Vec<u32>, Vec<u32>) {
    let mut dict: HashMap<&str, u32, foldhash::fast::FixedState> = HashMap::default();
    let mut first = Vec::new();
    let ids = (0..rows)
        .map(|r| {
            let v = if a.is_valid(r) { a.value(r) } else { "" };
            let next = first.len() as u32;
            *dict.entry(v).or_insert_with(|| {
                first.push(r as u32);
                next
            })
        })
        .collect();
    (ids, first)
}

/// Checks the input's columns against the policy and prepares the per-column state of pass 1.
fn setup_columns(policy: &Policy, qis: &[(&str, &Hierarchy)], sens_col: Option<&str>, s: &Schema) -> Result<Setup> {
    for f in s.fields() {
        if policy.column(f.name()).is_none() {
            return Err(DeidError::Schema {
                column: f.name().clone(),
                rule: "has no role in the policy (rule: every column needs a role; none is kept silently)".into(),
            });
        }
    }
    let idx = |name: &str| -> Result<usize> {
        s.index_of(name).map_err(|_| DeidError::Schema {
            column: name.to_owned(),
            rule: "is declared in the policy but missing from the input".into(),
        })
    };
    for c in &policy.columns {
        idx(&c.name)?;
    }
    let mut qstate = Vec::new();
    for (name, _) in qis {
        qstate.push(QiState { col: idx(name)?, dict: StrMap::default(), chains: Vec::new() });
    }
    let sens_idx = sens_col.map(idx).transpose()?;
    let mut rare = Vec::new();
    for c in &policy.columns {
        if let Treatment::Rare { group_by, .. } = &c.treatment {
            rare.push(RareState {
                col: idx(&c.name)?,
                group_cols: group_by.iter().map(|g| idx(g)).collect::<Result<_>>()?,
                ..Default::default()
            });
        }
    }
    Ok((qstate, sens_idx, rare))
}

/// Pass 2 as data for [`RunOptions::apply`], when the policy needs nothing the spec cannot say.
#[allow(clippy::too_many_arguments)]
fn remote_spec(
    policy: &Policy,
    schema: &Schema,
    qstate: &[QiState],
    (table, floor, reps): (&crate::search::FreqTable, &[u8], &[Vec<u32>]),
    doms: &[QiDomain],
    assign: &crate::search::Assignment,
    input: &Input,
    token_key: &EphemeralKey,
    release_key: &EphemeralKey,
    opts: &RunOptions,
) -> Option<crate::apply::ApplySpec> {
    use crate::apply::{ApplyColumn, ApplySpec, QiApply};
    if assign.nodes.len() != 1 || matches!(input, Input::Batches(_)) {
        return None;
    }
    let mut columns = Vec::new();
    for f in schema.fields() {
        let c = policy.column(f.name())?;
        let a = match &c.treatment {
            Treatment::Delete => continue,
            Treatment::Keep => ApplyColumn::Keep,
            Treatment::Token => ApplyColumn::Token,
            Treatment::Rekey if opts.rekey.is_none() => ApplyColumn::Rekey,
            Treatment::Generalize { .. } => {
                let col = schema.index_of(f.name()).ok()?;
                ApplyColumn::Generalize { qi: qstate.iter().position(|q| q.col == col)? }
            }
            Treatment::Rekey | Treatment::Rare { .. } | Treatment::Coarsen(_) | Treatment::Shift { .. } => return None,
        };
        columns.push((f.name().clone(), a));
    }
    let values: Vec<Vec<&str>> = qstate
        .iter()
        .map(|q| {
            let mut by_code = vec![""; q.chains.len()];
            for (v, c) in &q.dict {
                if *c != MISSING {
                    by_code[*c as usize] = v.as_str();
                }
            }
            by_code
        })
        .collect();
    let levels = &assign.nodes[0];
    let qi: Vec<QiApply> = qstate
        .iter()
        .zip(doms)
        .enumerate()
        .map(|(i, (q, d))| {
            let l = levels[i] as usize;
            let known = q.dict.iter().filter(|(_, c)| **c != MISSING);
            let labels =
                known.clone().map(|(v, c)| (v.clone(), d.labels[l][d.map[l][*c as usize] as usize].clone())).collect();
            // A folded table's tuples hold one representative value per group at the floor.
            let fold = if floor.get(i).is_some_and(|&f| f > 0) {
                known.map(|(v, c)| (v.clone(), values[i][reps[i][*c as usize] as usize].to_owned())).collect()
            } else {
                Default::default()
            };
            QiApply { column: schema.field(q.col).name().clone(), labels, fold }
        })
        .collect();
    let failing = (0..table.tuples())
        .filter(|&t| assign.node_of[t].is_none())
        .map(|t| (0..qstate.len()).map(|i| values[i][table.code(t, i) as usize].to_owned()).collect())
        .collect();
    Some(ApplySpec {
        columns,
        qi,
        failing,
        mask: policy.privacy.suppressed_records == SuppressedRecords::Mask,
        csv: matches!(input, Input::Csv(_)),
        delimiter: policy.input_delimiter,
        token_key: token_key.0,
        release_key: release_key.0,
    })
}

/// Anonymizes `input` by `policy` into `output` and returns the processing report.
#[allow(clippy::needless_range_loop)]
pub fn anonymize(policy: &Policy, input: &Input, output: &Output, opts: &RunOptions) -> Result<Outcome> {
    let started = Instant::now();
    let qis = policy.quasi_identifiers();
    let sens_col = policy
        .privacy
        .l_diversity
        .as_ref()
        .map(|l| l.column.clone())
        .or_else(|| policy.privacy.t_closeness.as_ref().map(|t| t.column.clone()));
    if let (Some(l), Some(t)) = (&policy.privacy.l_diversity, &policy.privacy.t_closeness)
        && l.column != t.column
    {
        return Err(DeidError::policy("privacy", "l_diversity and t_closeness must use the same sensitive column"));
    }

    // ---- pass 1 ----
    let mut schema: Option<Arc<Schema>> = None;
    let mut qstate: Vec<QiState> = Vec::new();
    let mut sens_idx: Option<usize> = None;
    let mut sens_dict: HashMap<String, u32> = HashMap::new();
    let mut rare: Vec<RareState> = Vec::new();
    let mut counter = Counter::new(qis.len(), sens_col.is_some(), opts.tuple_budget.unwrap_or(DEFAULT_TUPLE_BUDGET));
    let mut tuple = vec![0u32; qis.len()];
    let mut records_in = 0u64;
    let mut missing_suppressed = 0u64;
    let mut input_hash = Sha256::new();
    if opts.datafusion_pass() {
        #[cfg(not(feature = "datafusion"))]
        return Err(DeidError::policy(
            "run options",
            "this build has no DataFusion frequency pass (feature datafusion)",
        ));
        #[cfg(feature = "datafusion")]
        {
            let s = crate::frequency::input_schema(input, policy.input_delimiter)?;
            (qstate, _, rare) = setup_columns(policy, &qis, sens_col.as_deref(), &s)?;
            schema = Some(s);
            if let Input::Batches(b) = input {
                for batch in b {
                    hash_batch(&mut input_hash, batch);
                }
            }
            let mut cols: Vec<String> = qis.iter().map(|(n, _)| (*n).to_owned()).collect();
            cols.extend(sens_col.clone());
            // Consecutive sorted rows share their leading values: the last code of each column is reused.
            let mut last: Vec<(String, u32)> = vec![(String::new(), MISSING); qis.len()];
            let mut rows = 0u64;
            opts.for_each_group(input, policy.input_delimiter, &cols, &mut |values, n| {
                records_in += n;
                let mut skip = false;
                for (i, (q, (name, h))) in qstate.iter_mut().zip(&qis).enumerate() {
                    let v = values[i];
                    let code = if rows > 0 && last[i].0 == v {
                        last[i].1
                    } else {
                        let c = code_of(q, h, name, v)?;
                        last[i].0.clear();
                        last[i].0.push_str(v);
                        last[i].1 = c;
                        c
                    };
                    skip |= code == MISSING;
                    tuple[i] = code;
                }
                rows += 1;
                if skip {
                    missing_suppressed += n;
                } else {
                    let s = sens_col.as_ref().map(|_| {
                        let v = values[qis.len()];
                        let next = sens_dict.len() as u32;
                        match sens_dict.get(v) {
                            Some(&c) => c,
                            None => *sens_dict.entry(v.to_owned()).or_insert(next),
                        }
                    });
                    counter.add(&qstate, &tuple, s, n);
                }
                if rows.is_multiple_of(crate::io::BATCH_ROWS as u64) {
                    counter.enforce(&qstate);
                    opts.report(Progress::Counted(records_in));
                }
                Ok(())
            })?;
            counter.enforce(&qstate);
            opts.report(Progress::Counted(records_in));
            let schema = schema.as_ref().expect("set up");
            for st in &mut rare {
                let mut cols: Vec<String> = st.group_cols.iter().map(|&c| schema.field(c).name().clone()).collect();
                cols.push(schema.field(st.col).name().clone());
                let last = cols.len() - 1;
                opts.for_each_group(input, policy.input_delimiter, &cols, &mut |values, n| {
                    let mut key = String::new();
                    for v in &values[..last] {
                        key.push_str(v);
                        key.push('\u{1f}');
                    }
                    *st.counts.entry((key, values[last].to_owned())).or_default() += n;
                    Ok(())
                })?;
            }
        }
    } else {
        // Workers code each batch on its own (batch-local value ids and tuples, in order of first
        // appearance); the merge here, in input order, maps the few distinct values of a batch to
        // the global codes, so codes and tuples come out numbered exactly as a serial pass would.
        let qi_names: Vec<&str> = qis.iter().map(|(n, _)| *n).collect();
        let local = |batch: &RecordBatch, _first: u64| -> Result<Option<LocalCodes>> {
            local_codes(batch, &qi_names, sens_col.as_deref())
        };
        let mut gmap: Vec<Vec<u32>> = vec![Vec::new(); qis.len()];
        let mut smap: Vec<u32> = Vec::new();
        crate::io::par_map_batches(input, policy.input_delimiter, local, |batch, lc| {
            if schema.is_none() {
                let s = batch.schema();
                (qstate, sens_idx, rare) = setup_columns(policy, &qis, sens_col.as_deref(), &s)?;
                schema = Some(s);
            }
            if matches!(input, Input::Batches(_) | Input::Stream(_)) {
                hash_batch(&mut input_hash, batch);
            }
            let lc = lc.ok_or_else(|| DeidError::format("input", "a batch lacks a column of the first batch"))?;
            records_in += batch.num_rows() as u64;
            for (i, (q, (name, h))) in qstate.iter_mut().zip(&qis).enumerate() {
                let a = strings(batch, q.col);
                gmap[i].clear();
                for &r in &lc.firsts[i] {
                    let r = r as usize;
                    gmap[i].push(code_of(q, h, name, if a.is_valid(r) { a.value(r) } else { "" })?);
                }
            }
            smap.clear();
            if let Some(si) = sens_idx {
                let a = strings(batch, si);
                for &r in &lc.sens_firsts {
                    let r = r as usize;
                    let v = if a.is_valid(r) { a.value(r) } else { "" };
                    let next = sens_dict.len() as u32;
                    smap.push(match sens_dict.get(v) {
                        Some(&c) => c,
                        None => *sens_dict.entry(v.to_owned()).or_insert(next),
                    });
                }
            }
            let t = &lc.table;
            for lt in 0..t.tuples() {
                let mut skip = false;
                for (i, &c) in t.tuple(lt).iter().enumerate() {
                    let g = gmap[i][c as usize];
                    skip |= g == MISSING;
                    tuple[i] = g;
                }
                if skip {
                    missing_suppressed += t.counts[lt];
                    continue;
                }
                match &t.sens {
                    Some(hist) => {
                        for &(sv, n) in &hist[lt] {
                            counter.add(&qstate, &tuple, Some(smap[sv as usize]), n);
                        }
                    }
                    None => counter.add(&qstate, &tuple, None, t.counts[lt]),
                }
            }
            counter.enforce(&qstate);
            opts.report(Progress::Counted(records_in));
            for st in &mut rare {
                let a = strings(batch, st.col);
                for r in 0..batch.num_rows() {
                    if a.is_valid(r) {
                        let g = group_key(batch, &st.group_cols, r);
                        *st.counts.entry((g, a.value(r).to_owned())).or_default() += 1;
                    }
                }
            }
            Ok(())
        })?;
    }
    let Some(schema) = schema else {
        return Err(DeidError::format("input", "no records and no header"));
    };
    let Counted { table, floor, reps, marginals } = counter.finish(&qstate);
    let folded = floor.iter().any(|&f| f > 0);
    let doms: Vec<QiDomain> = qis.iter().zip(&qstate).map(|((n, _), q)| QiDomain::new(n, &q.chains)).collect();

    // ---- search ----
    opts.report(Progress::Searching(table.tuples() as u64));
    let search_started = Instant::now();
    let mut lattice = if folded {
        Lattice::with_marginals(&table, &doms, &policy.privacy, Some(marginals))
    } else {
        Lattice::new(&table, &doms, &policy.privacy)
    };
    lattice.set_floor(&floor);
    // "Before" is the finest level the table holds: the original tuples unless the budget folded it.
    let bottom = lattice.evaluate(&floor);
    let outcome = lattice.search().ok_or_else(|| {
        DeidError::NoSolution(format!(
            "no generalization reaches k={} within suppression limit {} ({} records)",
            policy.privacy.k,
            policy.privacy.suppression_limit,
            table.records()
        ))
    })?;
    let best = &outcome.best;
    let assign = if policy.privacy.local_recoding {
        lattice.local_recode(best, LOCAL_RECODING_ROUNDS)
    } else {
        lattice.global(best)
    };
    let search_ms = search_started.elapsed().as_secs_f64() * 1000.0;
    let info_loss = lattice.normalized(assign.loss);
    let n = table.records();

    // Suppressed tuples.
    let tuple_failing: Vec<bool> = assign.node_of.iter().map(Option::is_none).collect();

    // Rare-value thresholds.
    let rare_policy: Vec<&Treatment> =
        policy.columns.iter().filter(|c| matches!(c.treatment, Treatment::Rare { .. })).map(|c| &c.treatment).collect();

    for st in &mut rare {
        let c = policy.columns.iter().find(|c| c.name == *schema.field(st.col).name());
        if let Some(Treatment::Rare { min_count: Some(m), hierarchy: Some(h), .. }) = c.map(|c| &c.treatment)
            && let Some(h) = policy.hierarchies.get(h)
        {
            lift_rare_values(st, h, *m);
        }
    }

    // ---- pass 2 ----
    let kept_cols: Vec<usize> = (0..schema.fields().len())
        .filter(|&i| policy.column(schema.field(i).name()).is_some_and(|c| c.treatment != Treatment::Delete))
        .collect();
    let out_schema = Arc::new(Schema::new(
        kept_cols.iter().map(|&i| Field::new(schema.field(i).name(), DataType::Utf8, true)).collect::<Vec<_>>(),
    ));
    let mut sink = Sink::open(output, out_schema.clone())?;
    let mut out_hash = Sha256::new();
    let (token_key, release_key) = match &opts.key_seed {
        Some(seed) => (EphemeralKey::derived(seed, "token"), EphemeralKey::derived(seed, "release")),
        None => (EphemeralKey::new(), EphemeralKey::new()),
    };
    let qi_pos: HashMap<usize, usize> = qstate.iter().enumerate().map(|(i, q)| (q.col, i)).collect();
    let rare_pos: HashMap<usize, usize> = rare.iter().enumerate().map(|(i, r)| (r.col, i)).collect();
    let mut records_out = 0u64;
    let mut done = 0u64;
    let spec = opts.apply.as_ref().and_then(|_| {
        let folded = (&table, floor.as_slice(), reps.as_slice());
        remote_spec(policy, &schema, &qstate, folded, &doms, &assign, input, &token_key, &release_key, opts)
    });
    if let (Some(f), Some(spec)) = (&opts.apply, &spec) {
        let memory = matches!(output, Output::Memory);
        (records_out, done) =
            crate::apply::write_remote(f, spec, &out_schema, &mut sink, &mut out_hash, memory, |d| {
                opts.report(Progress::Written { done: d, total: records_in })
            })?;
        if done != records_in {
            return Err(DeidError::format(
                "pass 2",
                format!("{done} records transformed where pass 1 counted {records_in} (rule: none lost)"),
            ));
        }
    }
    // When pass 2 ran elsewhere there is nothing left to stream here.
    let nothing = Input::Batches(Vec::new());
    let mask = policy.privacy.suppressed_records == SuppressedRecords::Mask;
    let coarseners: HashMap<String, Hierarchy> = policy
        .columns
        .iter()
        .filter_map(|c| match c.treatment {
            Treatment::Coarsen(level) | Treatment::Shift { then: Some(level), .. } => Some((c.name.clone(), level)),
            _ => None,
        })
        .map(|(n, level)| {
            Hierarchy::from_builder(&n, Builder::Date { levels: vec![level] }, MissingRule::Star).map(|h| (n, h))
        })
        .collect::<Result<_>>()?;
    let shift_key = match &opts.key_seed {
        Some(seed) => EphemeralKey::derived(seed, "shift"),
        None => EphemeralKey::new(),
    };
    // The released label of every code at the global node (the tuples of other nodes, from local
    // recoding, look theirs up by node).
    let labels0: Vec<Vec<&str>> = doms
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let l = assign.nodes[0][i] as usize;
            d.map[l].iter().map(|&g| d.labels[l][g as usize].as_str()).collect()
        })
        .collect();
    let plans: Vec<(usize, &crate::policy::ColumnPolicy, Option<usize>)> = kept_cols
        .iter()
        .map(|&ci| {
            let cp = policy.column(schema.field(ci).name()).expect("checked in pass 1");
            let aux = match &cp.treatment {
                Treatment::Generalize { .. } => Some(qi_pos[&ci]),
                Treatment::Rare { .. } => Some(rare_pos[&ci]),
                Treatment::Shift { by: Some(b), .. } => schema.index_of(b).ok(),
                _ => None,
            };
            (ci, cp, aux)
        })
        .collect();
    // Workers encode (and compress) their batch for the sink; the consumer only appends in order.
    let encoder = sink.encoder();
    let transform = |batch: &RecordBatch, first: u64| -> Result<(crate::io::Encoded, u64, Pass2Stats)> {
        let rows = batch.num_rows();
        let mut stats = Pass2Stats { rare: vec![[0; 4]; rare.len()], invalid: HashMap::new() };
        // Which rows are suppressed, and the QI codes of each row.
        let mut codes = vec![vec![0u32; rows]; qstate.len()];
        let mut suppressed = vec![false; rows];
        let mut row_node = vec![0u32; rows];
        let mut key = vec![0u32; qstate.len()];
        let arrays: Vec<_> = qstate.iter().map(|q| strings(batch, q.col)).collect();
        for r in 0..rows {
            let mut missing = false;
            for (i, q) in qstate.iter().enumerate() {
                let a = arrays[i];
                let v = if a.is_valid(r) { a.value(r) } else { "" };
                let c = q.dict.get(v).copied().unwrap_or(MISSING);
                missing |= c == MISSING;
                key[i] = if c == MISSING { c } else { reps[i][c as usize] };
                codes[i][r] = c;
            }
            let t = if missing { None } else { table.find(&key) };
            suppressed[r] = t.is_none_or(|t| tuple_failing[t]);
            row_node[r] = t.and_then(|t| assign.node_of[t]).unwrap_or(0);
        }
        let kept = if mask { rows } else { suppressed.iter().filter(|s| !**s).count() };
        let keep_row = |r: usize| mask || !suppressed[r];
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(plans.len());
        for &(ci, cp, aux) in &plans {
            let a = strings(batch, ci);
            if cp.treatment == Treatment::Keep && kept == rows {
                // Passed through as read: share the input's buffers.
                cols.push(batch.column(ci).clone());
                continue;
            }
            let mut b = StringBuilder::with_capacity(kept, a.value_data().len().min(kept * 16));
            let mut buf = String::new();
            for r in (0..rows).filter(|&r| keep_row(r)) {
                if !a.is_valid(r) && !matches!(cp.treatment, Treatment::Generalize { .. }) {
                    b.append_null();
                    continue;
                }
                let v = a.value(r);
                match &cp.treatment {
                    Treatment::Delete => {}
                    Treatment::Keep => b.append_value(v),
                    Treatment::Token => b.append_value(token_key.token(&cp.name, v)),
                    Treatment::Rekey => match &opts.rekey {
                        Some(f) => b.append_value(f(&cp.name, v)),
                        None => b.append_value(release_key.token(&cp.name, v)),
                    },
                    Treatment::Generalize { .. } => {
                        let i = aux.expect("qi position");
                        if suppressed[r] {
                            b.append_value("*");
                        } else if row_node[r] == 0 {
                            b.append_value(labels0[i][codes[i][r] as usize]);
                        } else {
                            let d = &doms[i];
                            let l = assign.nodes[row_node[r] as usize][i] as usize;
                            b.append_value(&d.labels[l][d.map[l][codes[i][r] as usize] as usize]);
                        }
                    }
                    Treatment::Rare { min_count, top, bottom, .. } => {
                        let ri = aux.expect("rare position");
                        let (st, counted) = (&rare[ri], &mut stats.rare[ri]);
                        let num: Option<f64> = v.parse().ok();
                        if let (Some(t), Some(x)) = (top, num)
                            && x >= *t
                        {
                            counted[0] += 1;
                            b.append_value(format!(">={t}"));
                            continue;
                        }
                        if let (Some(t), Some(x)) = (bottom, num)
                            && x <= *t
                        {
                            counted[1] += 1;
                            b.append_value(format!("<={t}"));
                            continue;
                        }
                        if let Some(m) = min_count {
                            let g = group_key(batch, &st.group_cols, r);
                            let key = (g, v.to_owned());
                            let cnt = st.counts.get(&key).copied().unwrap_or(0);
                            if cnt < *m {
                                match st.lifted.get(&key) {
                                    Some(label) => {
                                        counted[3] += 1;
                                        b.append_value(label);
                                    }
                                    None => {
                                        counted[2] += 1;
                                        b.append_value("*");
                                    }
                                }
                                continue;
                            }
                        }
                        b.append_value(v);
                    }
                    Treatment::Coarsen(_) => match coarseners[&cp.name].chain(v) {
                        Some(ch) => b.append_value(&ch[1]),
                        None => {
                            *stats.invalid.entry(ci).or_default() += 1;
                            b.append_value("*");
                        }
                    },
                    Treatment::Shift { max_days, then, .. } => {
                        let by = match aux {
                            Some(bc) => {
                                let ba = strings(batch, bc);
                                if ba.is_valid(r) { ba.value(r).to_owned() } else { String::new() }
                            }
                            // No grouping column: each record draws its own offset.
                            None => format!("\u{1e}{}", first + r as u64),
                        };
                        buf.clear();
                        // Keyed by the grouping column, not the date column: a patient's admission
                        // and discharge move together, so the length of stay survives.
                        let scope = match &cp.treatment {
                            Treatment::Shift { by: Some(b), .. } => b.as_str(),
                            _ => "",
                        };
                        let days = shift_offset(&shift_key, scope, &by, *max_days);
                        let shifted = shift_date(v, days, &mut buf)
                            && then.is_none_or(|_| match coarseners[&cp.name].chain(&buf) {
                                Some(ch) => {
                                    buf.clone_from(&ch[1]);
                                    true
                                }
                                None => false,
                            });
                        if shifted {
                            b.append_value(&buf);
                        } else {
                            *stats.invalid.entry(ci).or_default() += 1;
                            b.append_value("*");
                        }
                    }
                }
            }
            cols.push(Arc::new(b.finish()));
        }
        let out = RecordBatch::try_new(out_schema.clone(), cols).map_err(|e| DeidError::format("output", e))?;
        let rows_out = out.num_rows() as u64;
        Ok((encoder.encode(out)?, rows_out, stats))
    };
    let mut coarsen_invalid: HashMap<usize, u64> = HashMap::new();
    let mut rare_counted = vec![[0u64; 4]; rare.len()];
    let memory = matches!(output, Output::Memory);
    crate::io::par_map_batches(
        if spec.is_some() { &nothing } else { input },
        policy.input_delimiter,
        transform,
        |batch, (out, rows_out, stats)| {
            for (acc, x) in rare_counted.iter_mut().zip(&stats.rare) {
                for (a, b) in acc.iter_mut().zip(x) {
                    *a += b;
                }
            }
            for (c, x) in stats.invalid {
                *coarsen_invalid.entry(c).or_default() += x;
            }
            records_out += rows_out;
            done += batch.num_rows() as u64;
            opts.report(Progress::Written { done, total: records_in });
            if let (true, crate::io::Encoded::Batch(b)) = (memory, &out) {
                hash_batch(&mut out_hash, b);
            }
            sink.write_encoded(out)
        },
    )?;
    for (st, c) in rare.iter_mut().zip(&rare_counted) {
        st.top_coded += c[0];
        st.bottom_coded += c[1];
        st.suppressed += c[2];
        st.generalized += c[3];
    }
    drop(shift_key);
    drop(token_key);
    drop(release_key);
    let (output_sha256, batches) = sink.finish(out_hash)?;
    let input_sha256 = match input {
        Input::Csv(p) | Input::Parquet(p) => file_sha256(p)?,
        Input::Batches(_) | Input::Stream(_) => hex::encode(input_hash.finalize()),
    };
    let _ = rare_policy;

    // ---- report ----
    let p = &policy.privacy;
    let before_sizes: Vec<u64> = bottom.class_sizes.clone();
    let after_sizes: Vec<u64> = assign.class_sizes.iter().copied().filter(|&s| s > 0).collect();
    let mut risk_after_sizes = after_sizes.clone();
    if mask {
        let sup: u64 = assign.suppressed;
        if sup > 0 {
            risk_after_sizes.push(sup);
        }
    }
    let l_achieved = table.sens.as_ref().map(|hist| {
        let mut distinct: Vec<HashSet<u32>> = vec![HashSet::new(); assign.class_sizes.len()];
        for (t, c) in assign.class_of.iter().enumerate() {
            if let Some(c) = c {
                distinct[*c as usize].extend(hist[t].iter().map(|(s, _)| *s));
            }
        }
        distinct.iter().filter(|d| !d.is_empty()).map(|d| d.len() as u64).min().unwrap_or(0)
    });
    let mut columns = Vec::new();
    for c in &policy.columns {
        let mut cr = ColumnReport::new(&c.name, c.role);
        match &c.treatment {
            Treatment::Delete => cr.action = "deleted".into(),
            Treatment::Keep => cr.action = "kept".into(),
            Treatment::Token => cr.action = "replaced by random tokens; key destroyed after the run".into(),
            Treatment::Rekey => {
                cr.action = if opts.rekey.is_some() {
                    "re-keyed by the release's keyed function".into()
                } else {
                    "re-keyed with a random per-release key, destroyed after the run".into()
                }
            }
            Treatment::Generalize { hierarchy } => {
                let i = qis.iter().position(|(n, _)| *n == c.name).expect("qi");
                let d = &doms[i];
                let l = best.levels[i] as usize;
                let dsize = d.size(0) as f64;
                let (mut lm, mut prec) = (0.0, 0.0);
                for t in 0..table.tuples() {
                    let cnt = table.counts[t] as f64;
                    if let Some(node) = assign.node_of[t] {
                        let l = assign.nodes[node as usize][i] as usize;
                        let g = d.map[l][table.code(t, i) as usize] as usize;
                        lm += cnt * if dsize > 1.0 { (d.leaves[l][g] as f64 - 1.0) / (dsize - 1.0) } else { 0.0 };
                        prec += cnt * l as f64 / (d.levels() - 1).max(1) as f64;
                    } else {
                        lm += cnt;
                        prec += cnt;
                    }
                }
                cr.action = format!("generalized to level {l} of {}", d.levels() - 1);
                if assign.nodes.len() > 1 {
                    let other: Vec<String> = assign.nodes[1..].iter().map(|lv| lv[i].to_string()).collect();
                    cr.action.push_str(&format!(
                        "; locally recoded records at levels {} (local recoding)",
                        other.join(", ")
                    ));
                }
                cr.hierarchy = Some(hierarchy.clone());
                cr.level = Some(l as u8);
                cr.max_level = Some((d.levels() - 1) as u8);
                cr.loss = Some(if n > 0 { lm / n as f64 } else { 0.0 });
                cr.precision = Some(if n > 0 { prec / n as f64 } else { 0.0 });
                cr.distinct_before = Some(d.size(0) as u64);
                cr.distinct_after = Some(d.size(l) as u64);
            }
            Treatment::Rare { min_count, group_by, top, bottom, hierarchy } => {
                let i = rare.iter().position(|r| schema.field(r.col).name() == &c.name).expect("rare");
                let st = &rare[i];
                let mut parts = Vec::new();
                if let Some(m) = min_count {
                    let scope = if group_by.is_empty() {
                        "the table".to_owned()
                    } else {
                        format!("groups of {}", group_by.join(", "))
                    };
                    match hierarchy {
                        Some(h) => parts.push(format!(
                            "values seen fewer than {m} times in {scope} generalized by hierarchy {h} to the lowest level where they reach {m} ({}), the rest suppressed ({})",
                            st.generalized, st.suppressed
                        )),
                        None => parts.push(format!(
                            "values seen fewer than {m} times in {scope} suppressed ({})",
                            st.suppressed
                        )),
                    }
                }
                if top.is_some() {
                    parts.push(format!("top-coded ({})", st.top_coded));
                }
                if bottom.is_some() {
                    parts.push(format!("bottom-coded ({})", st.bottom_coded));
                }
                cr.action = parts.join("; ");
                cr.treated = Some(st.suppressed + st.top_coded + st.bottom_coded + st.generalized);
            }
            Treatment::Coarsen(level) => {
                let ci = schema.index_of(&c.name).expect("checked");
                cr.action = format!("coarsened to {level:?}").to_lowercase();
                cr.treated = Some(coarsen_invalid.get(&ci).copied().unwrap_or(0));
            }
            Treatment::Shift { max_days, by, then } => {
                let ci = schema.index_of(&c.name).expect("checked");
                cr.action = format!(
                    "shifted by a random offset of 1 to {max_days} days, earlier or later, {}; key destroyed after the run{}",
                    match by {
                        Some(b) => format!("the same for every record with the same {b}"),
                        None => "drawn per record".to_owned(),
                    },
                    then.map(|l| format!("; then coarsened to {l:?}").to_lowercase()).unwrap_or_default()
                );
                cr.treated = Some(coarsen_invalid.get(&ci).copied().unwrap_or(0));
            }
        }
        columns.push(cr);
    }
    let report = Report {
        engine: format!("kiban-deid {}", env!("CARGO_PKG_VERSION")),
        policy_name: policy.name.clone(),
        policy_version: policy.version,
        policy_hash: policy.hash.clone(),
        input_sha256,
        output_sha256,
        records_in,
        records_out,
        records_suppressed: assign.suppressed,
        records_recoded: assign.recoded,
        records_suppressed_missing: missing_suppressed,
        suppressed_records: p.suppressed_records,
        k_required: p.k,
        k_achieved: after_sizes.iter().copied().min().unwrap_or(0),
        l_required: p.l_diversity.as_ref().map(|l| l.l),
        l_achieved,
        t_required: p.t_closeness.as_ref().map(|t| t.t),
        suppression_limit: p.suppression_limit,
        metric: p.metric,
        information_loss: info_loss,
        search: SearchReport {
            lattice_size: outcome.lattice_size.min(u64::MAX as u128) as u64,
            evaluated: outcome.evaluated as u64,
            projected: outcome.projected as u64,
            optimal: outcome.optimal,
            distinct_tuples: table.tuples() as u64,
            folded: qis.iter().zip(&floor).filter(|(_, f)| **f > 0).map(|((n, _), f)| ((*n).to_owned(), *f)).collect(),
            unexplored_bound: outcome.unexplored_bound.map(|b| lattice.normalized(b)),
            millis: search_ms,
        },
        levels: qis.iter().zip(&best.levels).map(|((n, _), l)| ((*n).to_owned(), *l)).collect(),
        columns,
        risk_before: risk(&before_sizes, p.sampling_fraction, p.risk_threshold),
        risk_after: risk(&risk_after_sizes, p.sampling_fraction, p.risk_threshold),
        classes_before: class_size_histogram(&before_sizes),
        classes_after: class_size_histogram(&after_sizes),
        millis: started.elapsed().as_secs_f64() * 1000.0,
    };
    let _ = ColumnRole::Keep;
    Ok(Outcome { report, batches })
}
