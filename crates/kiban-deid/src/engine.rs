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
use crate::io::{Input, Output, Sink, file_sha256, for_each_batch, hash_batch, strings};
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
/// somewhere else than this process: e.g. as the same DataFusion plan on a Ballista cluster.
#[cfg(feature = "datafusion")]
pub type GroupCountFn = dyn Fn(&[String]) -> Result<crate::frequency::Grouped> + Send + Sync;

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

    #[cfg(feature = "datafusion")]
    fn group_count(&self, input: &Input, delimiter: u8, columns: &[String]) -> Result<crate::frequency::Grouped> {
        match &self.group_count {
            Some(f) => f(columns),
            None => crate::frequency::group_count(input, delimiter, columns),
        }
        .map(crate::frequency::Grouped::sorted)
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
    top_coded: u64,
    bottom_coded: u64,
    suppressed: u64,
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
    table: &crate::search::FreqTable,
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
            Treatment::Rekey | Treatment::Rare { .. } | Treatment::Coarsen(_) => return None,
        };
        columns.push((f.name().clone(), a));
    }
    let levels = &assign.nodes[0];
    let qi: Vec<QiApply> = qstate
        .iter()
        .zip(doms)
        .enumerate()
        .map(|(i, (q, d))| {
            let l = levels[i] as usize;
            let labels = q
                .dict
                .iter()
                .filter(|(_, c)| **c != MISSING)
                .map(|(v, c)| (v.clone(), d.labels[l][d.map[l][*c as usize] as usize].clone()))
                .collect();
            QiApply { column: schema.field(q.col).name().clone(), labels }
        })
        .collect();
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
    let mut freq = FreqBuilder::new(qis.len(), sens_col.is_some());
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
            let g = opts.group_count(input, policy.input_delimiter, &cols)?;
            for (row, &n) in g.counts.iter().enumerate() {
                records_in += n;
                let mut skip = false;
                for (i, (q, (name, h))) in qstate.iter_mut().zip(&qis).enumerate() {
                    let code = code_of(q, h, name, &g.columns[i][row])?;
                    skip |= code == MISSING;
                    tuple[i] = code;
                }
                if skip {
                    missing_suppressed += n;
                    continue;
                }
                let s = sens_col.as_ref().map(|_| {
                    let v = &g.columns[qis.len()][row];
                    let next = sens_dict.len() as u32;
                    *sens_dict.entry(v.clone()).or_insert(next)
                });
                freq.add_n(&tuple, s, n);
            }
            opts.report(Progress::Counted(records_in));
            let schema = schema.as_ref().expect("set up");
            for st in &mut rare {
                let mut cols: Vec<String> = st.group_cols.iter().map(|&c| schema.field(c).name().clone()).collect();
                cols.push(schema.field(st.col).name().clone());
                let g = opts.group_count(input, policy.input_delimiter, &cols)?;
                let last = cols.len() - 1;
                for (row, &n) in g.counts.iter().enumerate() {
                    let mut key = String::new();
                    for col in &g.columns[..last] {
                        key.push_str(&col[row]);
                        key.push('\u{1f}');
                    }
                    *st.counts.entry((key, g.columns[last][row].clone())).or_default() += n;
                }
            }
        }
    } else {
        for_each_batch(input, policy.input_delimiter, |batch| {
            if schema.is_none() {
                let s = batch.schema();
                (qstate, sens_idx, rare) = setup_columns(policy, &qis, sens_col.as_deref(), &s)?;
                schema = Some(s);
            }
            if matches!(input, Input::Batches(_) | Input::Stream(_)) {
                hash_batch(&mut input_hash, batch);
            }
            let arrays: Vec<_> = qstate.iter().map(|q| strings(batch, q.col)).collect();
            let sens_arr = sens_idx.map(|i| strings(batch, i));
            for r in 0..batch.num_rows() {
                records_in += 1;
                let mut skip = false;
                for (i, (q, (name, h))) in qstate.iter_mut().zip(&qis).enumerate() {
                    let a = arrays[i];
                    let v = if a.is_valid(r) { a.value(r) } else { "" };
                    let code = code_of(q, h, name, v)?;
                    skip |= code == MISSING;
                    tuple[i] = code;
                }
                if skip {
                    missing_suppressed += 1;
                    continue;
                }
                let s = sens_arr.map(|a| {
                    let v = if a.is_valid(r) { a.value(r) } else { "" };
                    let next = sens_dict.len() as u32;
                    *sens_dict.entry(v.to_owned()).or_insert(next)
                });
                freq.add(&tuple, s);
            }
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
    let table = freq.finish();
    let doms: Vec<QiDomain> = qis.iter().zip(&qstate).map(|((n, _), q)| QiDomain::new(n, &q.chains)).collect();

    // ---- search ----
    opts.report(Progress::Searching(table.tuples() as u64));
    let search_started = Instant::now();
    let mut lattice = Lattice::new(&table, &doms, &policy.privacy);
    let bottom = lattice.evaluate(&vec![0u8; doms.len()]);
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
        remote_spec(policy, &schema, &qstate, &table, &doms, &assign, input, &token_key, &release_key, opts)
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
    let mut coarsen_invalid: HashMap<usize, u64> = HashMap::new();
    let mask = policy.privacy.suppressed_records == SuppressedRecords::Mask;
    let coarseners: HashMap<String, Hierarchy> = policy
        .columns
        .iter()
        .filter_map(|c| match c.treatment {
            Treatment::Coarsen(level) => Some((c.name.clone(), level)),
            _ => None,
        })
        .map(|(n, level)| {
            Hierarchy::from_builder(&n, Builder::Date { levels: vec![level] }, MissingRule::Star).map(|h| (n, h))
        })
        .collect::<Result<_>>()?;
    for_each_batch(if spec.is_some() { &nothing } else { input }, policy.input_delimiter, |batch| {
        let rows = batch.num_rows();
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
                key[i] = c;
                codes[i][r] = c;
            }
            let t = if missing { None } else { table.find(&key) };
            suppressed[r] = t.is_none_or(|t| tuple_failing[t]);
            row_node[r] = t.and_then(|t| assign.node_of[t]).unwrap_or(0);
        }
        let keep_row = |r: usize| mask || !suppressed[r];
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(kept_cols.len());
        for &ci in &kept_cols {
            let cp = policy.column(schema.field(ci).name()).expect("checked in pass 1");
            let a = strings(batch, ci);
            let mut b = StringBuilder::new();
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
                        let i = qi_pos[&ci];
                        if suppressed[r] {
                            b.append_value("*");
                        } else {
                            let d = &doms[i];
                            let l = assign.nodes[row_node[r] as usize][i] as usize;
                            b.append_value(&d.labels[l][d.map[l][codes[i][r] as usize] as usize]);
                        }
                    }
                    Treatment::Rare { min_count, top, bottom, .. } => {
                        let st = &mut rare[rare_pos[&ci]];
                        let num: Option<f64> = v.parse().ok();
                        if let (Some(t), Some(x)) = (top, num)
                            && x >= *t
                        {
                            st.top_coded += 1;
                            b.append_value(format!(">={t}"));
                            continue;
                        }
                        if let (Some(t), Some(x)) = (bottom, num)
                            && x <= *t
                        {
                            st.bottom_coded += 1;
                            b.append_value(format!("<={t}"));
                            continue;
                        }
                        if let Some(m) = min_count {
                            let g = group_key(batch, &st.group_cols, r);
                            let cnt = st.counts.get(&(g, v.to_owned())).copied().unwrap_or(0);
                            if cnt < *m {
                                st.suppressed += 1;
                                b.append_value("*");
                                continue;
                            }
                        }
                        b.append_value(v);
                    }
                    Treatment::Coarsen(_) => match coarseners[&cp.name].chain(v) {
                        Some(ch) => b.append_value(&ch[1]),
                        None => {
                            *coarsen_invalid.entry(ci).or_default() += 1;
                            b.append_value("*");
                        }
                    },
                }
            }
            cols.push(Arc::new(b.finish()));
        }
        let out = RecordBatch::try_new(out_schema.clone(), cols).map_err(|e| DeidError::format("output", e))?;
        records_out += out.num_rows() as u64;
        done += rows as u64;
        opts.report(Progress::Written { done, total: records_in });
        if matches!(output, Output::Memory) {
            hash_batch(&mut out_hash, &out);
        }
        sink.write(out)
    })?;
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
            Treatment::Rare { min_count, group_by, top, bottom } => {
                let i = rare.iter().position(|r| schema.field(r.col).name() == &c.name).expect("rare");
                let st = &rare[i];
                let mut parts = Vec::new();
                if let Some(m) = min_count {
                    let scope = if group_by.is_empty() {
                        "the table".to_owned()
                    } else {
                        format!("groups of {}", group_by.join(", "))
                    };
                    parts.push(format!("values seen fewer than {m} times in {scope} suppressed ({})", st.suppressed));
                }
                if top.is_some() {
                    parts.push(format!("top-coded ({})", st.top_coded));
                }
                if bottom.is_some() {
                    parts.push(format!("bottom-coded ({})", st.bottom_coded));
                }
                cr.action = parts.join("; ");
                cr.treated = Some(st.suppressed + st.top_coded + st.bottom_coded);
            }
            Treatment::Coarsen(level) => {
                let ci = schema.index_of(&c.name).expect("checked");
                cr.action = format!("coarsened to {level:?}").to_lowercase();
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
