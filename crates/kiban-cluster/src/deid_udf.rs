//! UDFs of kiban-deid's pass 2 ([`kiban_deid::apply`]): reading a value as the engine reads it,
//! the run's tokens, the chosen generalization and the suppression flag. Each carries only what its
//! call needs, sealed for the job like the gate and token UDFs: token keys never travel in the clear,
//! and neither do the data values of the recoding tables.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanBuilder, StringArray, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, ScalarValue, exec_err};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::jobfile::{JobFileRef, RemoveOnDrop};
use crate::seal::{ClusterSecret, SealedJob, open_job_file_on_node, open_on_node};

/// A payload larger than this goes (on a cluster) to a sealed job file beside the input instead of
/// into the plan: the suppressed tuples of a large table can run to millions.
pub const INLINE_PAYLOAD_LIMIT: usize = 1 << 20;

static INLINE_LIMIT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(INLINE_PAYLOAD_LIMIT);

/// Sets this process's inline payload limit (tests force job files with 0).
pub fn set_inline_payload_limit(bytes: usize) {
    INLINE_LIMIT.store(bytes, std::sync::atomic::Ordering::SeqCst);
}

/// `kiban_trim(v)`: a CSV field as kiban-deid's reader gives it (trimmed of Unicode white space;
/// null is the empty string).
pub const TRIM_UDF: &str = "kiban_trim";
/// `kiban_deid_token(v, 'column')`: the run's SHA-256 token of a value ([`kiban_deid::apply::token`]).
pub const DEID_TOKEN_UDF: &str = "kiban_deid_token";
/// `kiban_generalize(v)`: the label of one quasi-identifier's value at the chosen level (`*` if unknown).
pub const GENERALIZE_UDF: &str = "kiban_generalize";
/// `kiban_suppressed(q1, …, qn)`: whether the search suppressed this tuple of quasi-identifiers.
pub const SUPPRESSED_UDF: &str = "kiban_suppressed";

/// What one call opens on an executor.
#[derive(Serialize, Deserialize)]
enum Payload {
    Token { key: [u8; 32] },
    Generalize { labels: BTreeMap<String, String> },
    Suppressed { known: Vec<Vec<String>>, fold: Vec<BTreeMap<String, String>>, failing: Vec<Vec<String>> },
}

impl Drop for Payload {
    fn drop(&mut self) {
        if let Payload::Token { key } = self {
            *key = [0u8; 32];
            std::hint::black_box(key);
        }
    }
}

/// The opened state, ready for lookups.
enum State {
    Token(Zeroizing<[u8; 32]>),
    Generalize(BTreeMap<String, String>),
    /// `fold`: per QI, the value standing for each value's group in `failing` (empty: itself).
    Suppressed {
        known: Vec<HashSet<String>>,
        fold: Vec<HashMap<String, String>>,
        failing: HashSet<Vec<String>>,
    },
}

impl State {
    fn from(p: Payload) -> State {
        match p {
            Payload::Token { key } => State::Token(Zeroizing::new(key)),
            Payload::Generalize { ref labels } => State::Generalize(labels.clone()),
            Payload::Suppressed { ref known, ref fold, ref failing } => State::Suppressed {
                known: known.iter().map(|k| k.iter().cloned().collect()).collect(),
                fold: fold.iter().map(|f| f.iter().map(|(a, b)| (a.clone(), b.clone())).collect()).collect(),
                failing: failing.iter().cloned().collect(),
            },
        }
    }
}

/// One of kiban-deid's pass-2 UDFs (all but [`TRIM_UDF`] carry a sealed payload).
pub struct DeidUdf {
    name: &'static str,
    sealed: Option<SealedJob>,
    file: Option<JobFileRef>,
    /// The client's handle on the job file it wrote (removed when the last copy goes).
    _owned: Option<Arc<RemoveOnDrop>>,
    state: OnceLock<Arc<State>>,
    signature: Signature,
}

fn payload_kind(name: &str) -> &'static str {
    match name {
        DEID_TOKEN_UDF => "deid_token_key",
        GENERALIZE_UDF => "deid_generalize",
        _ => "deid_suppressed",
    }
}

impl DeidUdf {
    fn made(name: &'static str, secret: &ClusterSecret, job: &str, p: Payload) -> Arc<ScalarUDF> {
        Self::made_beside(name, secret, job, p, None).expect("an inline payload needs no file")
    }

    /// As [`Self::made`]; with `beside` (a cluster job's input), a payload over
    /// [`INLINE_PAYLOAD_LIMIT`] is sealed into a job file next to it and the plan carries its reference.
    fn made_beside(
        name: &'static str,
        secret: &ClusterSecret,
        job: &str,
        p: Payload,
        beside: Option<&Path>,
    ) -> crate::Result<Arc<ScalarUDF>> {
        let plain = Zeroizing::new(serde_json::to_vec(&p).expect("payload serializes"));
        let mut u = match beside {
            Some(input) if plain.len() > INLINE_LIMIT.load(std::sync::atomic::Ordering::SeqCst) => {
                let path = crate::udf::job_file_beside(input, job);
                let mut w = secret.create_job_file(payload_kind(name), job, &path)?;
                let owned = Arc::new(RemoveOnDrop(path.clone()));
                w.write_all(&plain)
                    .map_err(|source| crate::ClusterError::Io { path: path.display().to_string(), source })?;
                let mut u = DeidUdf::decoded(name, None);
                u.file = Some(w.finish()?);
                u._owned = Some(owned);
                u
            }
            _ => DeidUdf::decoded(name, Some(secret.seal(payload_kind(name), job, &plain))),
        };
        u.state = OnceLock::from(Arc::new(State::from(p)));
        Ok(Arc::new(ScalarUDF::new_from_impl(u)))
    }

    /// `kiban_trim`.
    pub fn trim() -> Arc<ScalarUDF> {
        Arc::new(ScalarUDF::new_from_impl(DeidUdf::decoded(TRIM_UDF, None)))
    }

    /// `kiban_deid_token` under `key`, sealed for `job`.
    pub fn token(secret: &ClusterSecret, job: &str, key: &[u8; 32]) -> Arc<ScalarUDF> {
        DeidUdf::made(DEID_TOKEN_UDF, secret, job, Payload::Token { key: *key })
    }

    /// `kiban_generalize` with one quasi-identifier's value → label table.
    /// On a cluster (`beside`: the job's input) a large table goes as a job file.
    pub fn generalize(
        secret: &ClusterSecret,
        job: &str,
        labels: &BTreeMap<String, String>,
        beside: Option<&Path>,
    ) -> crate::Result<Arc<ScalarUDF>> {
        DeidUdf::made_beside(GENERALIZE_UDF, secret, job, Payload::Generalize { labels: labels.clone() }, beside)
    }

    /// `kiban_suppressed`: a row is suppressed when a value was not seen in pass 1 or its tuple failed.
    /// On a cluster (`beside`: the job's input) a long list of suppressed tuples goes as a job file.
    pub fn suppressed(
        secret: &ClusterSecret,
        job: &str,
        spec: &kiban_deid::apply::ApplySpec,
        beside: Option<&Path>,
    ) -> crate::Result<Arc<ScalarUDF>> {
        let known = spec.qi.iter().map(|q| q.labels.keys().cloned().collect()).collect();
        let fold = spec.qi.iter().map(|q| q.fold.clone()).collect();
        let p = Payload::Suppressed { known, fold, failing: spec.failing.clone() };
        DeidUdf::made_beside(SUPPRESSED_UDF, secret, job, p, beside)
    }

    /// The UDF `name` as decoded from a plan's bytes: a sealed payload, a job file's reference, or
    /// nothing ([`TRIM_UDF`]).
    pub fn decode(name: &'static str, buf: &[u8]) -> crate::Result<Self> {
        if buf.is_empty() {
            return Ok(DeidUdf::decoded(name, None));
        }
        if let Ok(r) = JobFileRef::from_bytes(buf) {
            let mut u = DeidUdf::decoded(name, None);
            u.file = Some(r);
            return Ok(u);
        }
        Ok(DeidUdf::decoded(name, Some(SealedJob::from_bytes(buf)?)))
    }

    /// The job file's reference, when the payload went as one.
    pub fn job_file(&self) -> Option<&JobFileRef> {
        self.file.as_ref()
    }

    /// The UDF as decoded from a plan (`name` is one of this module's).
    pub fn decoded(name: &'static str, sealed: Option<SealedJob>) -> Self {
        let signature = match name {
            TRIM_UDF | GENERALIZE_UDF => Signature::any(1, Volatility::Immutable),
            DEID_TOKEN_UDF => Signature::any(2, Volatility::Immutable),
            _ => Signature::variadic_any(Volatility::Immutable),
        };
        DeidUdf { name, sealed, file: None, _owned: None, state: OnceLock::new(), signature }
    }

    /// The sealed payload, if any.
    pub fn sealed(&self) -> Option<&SealedJob> {
        self.sealed.as_ref()
    }

    /// The UDF's name as `'static` if it is one of this module's.
    pub fn known_name(name: &str) -> Option<&'static str> {
        [TRIM_UDF, DEID_TOKEN_UDF, GENERALIZE_UDF, SUPPRESSED_UDF].into_iter().find(|n| *n == name)
    }

    fn state(&self) -> datafusion::common::Result<Arc<State>> {
        if let Some(s) = self.state.get() {
            return Ok(s.clone());
        }
        let exec = |e: &dyn std::fmt::Display| DataFusionError::Execution(format!("{}: {e}", self.name));
        let plain = match (&self.sealed, &self.file) {
            (Some(sealed), _) => open_on_node(sealed).map_err(|e| exec(&e))?,
            (None, Some(file)) => {
                let mut plain = Zeroizing::new(Vec::new());
                open_job_file_on_node(file).map_err(|e| exec(&e))?.read_to_end(&mut plain).map_err(|e| exec(&e))?;
                plain
            }
            (None, None) => return Err(exec(&"no payload")),
        };
        let p: Payload = serde_json::from_slice(&plain)
            .map_err(|e| DataFusionError::Execution(format!("{}: the job's payload is malformed: {e}", self.name)))?;
        Ok(self.state.get_or_init(|| Arc::new(State::from(p))).clone())
    }
}

impl std::fmt::Debug for DeidUdf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.sealed {
            Some(s) => write!(f, "DeidUdf({}, job {}, <sealed>)", self.name, s.job_id),
            None => write!(f, "DeidUdf({})", self.name),
        }
    }
}

impl PartialEq for DeidUdf {
    fn eq(&self, o: &Self) -> bool {
        self.name == o.name && self.sealed == o.sealed && self.file == o.file
    }
}
impl Eq for DeidUdf {}
impl Hash for DeidUdf {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.name.hash(h);
        self.sealed.hash(h);
        self.file.hash(h)
    }
}

fn text(v: &ColumnarValue, n: usize) -> datafusion::common::Result<ArrayRef> {
    Ok(datafusion::arrow::compute::cast(&v.to_array(n)?, &DataType::Utf8)?)
}

/// The value of row `i`, null read as the empty string (as the engine's pass 2 reads a null).
fn value(a: &StringArray, i: usize) -> &str {
    if a.is_null(i) { "" } else { a.value(i) }
}

impl ScalarUDFImpl for DeidUdf {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(if self.name == SUPPRESSED_UDF { DataType::Boolean } else { DataType::Utf8 })
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> datafusion::common::Result<ColumnarValue> {
        let n = args.number_rows;
        if self.name == TRIM_UDF {
            let a = text(&args.args[0], n)?;
            let a = a.as_string::<i32>();
            let mut out = StringBuilder::with_capacity(n, a.values().len());
            for i in 0..n {
                out.append_value(value(a, i).trim());
            }
            return Ok(ColumnarValue::Array(Arc::new(out.finish())));
        }
        let state = self.state()?;
        let out: ArrayRef = match &*state {
            State::Token(key) => {
                let column = match &args.args[1] {
                    ColumnarValue::Scalar(ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s))) => s.clone(),
                    _ => return exec_err!("{DEID_TOKEN_UDF}: the second argument must be the column name"),
                };
                let a = text(&args.args[0], n)?;
                let a = a.as_string::<i32>();
                let mut out = StringBuilder::with_capacity(n, n * 24);
                for i in 0..n {
                    if a.is_null(i) {
                        out.append_null();
                    } else {
                        out.append_value(kiban_deid::apply::token(key, &column, a.value(i)));
                    }
                }
                Arc::new(out.finish())
            }
            State::Generalize(labels) => {
                let a = text(&args.args[0], n)?;
                let a = a.as_string::<i32>();
                let mut out = StringBuilder::with_capacity(n, n * 8);
                for i in 0..n {
                    out.append_value(labels.get(value(a, i)).map_or("*", String::as_str));
                }
                Arc::new(out.finish())
            }
            State::Suppressed { known, fold, failing } => {
                if args.args.len() != known.len() {
                    return exec_err!(
                        "{SUPPRESSED_UDF}: {} columns where the job has {}",
                        args.args.len(),
                        known.len()
                    );
                }
                let cols: Vec<ArrayRef> = args.args.iter().map(|v| text(v, n)).collect::<Result<_, _>>()?;
                let cols: Vec<&StringArray> = cols.iter().map(|c| c.as_string::<i32>()).collect();
                let mut out = BooleanBuilder::with_capacity(n);
                let mut tuple: Vec<String> = vec![String::new(); cols.len()];
                for i in 0..n {
                    let mut unknown = false;
                    for (j, c) in cols.iter().enumerate() {
                        let v = value(c, i);
                        unknown |= !known[j].contains(v);
                        tuple[j].clear();
                        tuple[j].push_str(fold[j].get(v).map_or(v, String::as_str));
                    }
                    out.append_value(unknown || (!failing.is_empty() && failing.contains(&tuple)));
                }
                Arc::new(out.finish())
            }
        };
        Ok(ColumnarValue::Array(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recoding table past the inline limit goes as a job file beside the input: the plan's bytes
    /// are only its reference, a node with the cluster secret opens it, no value is in the file, and
    /// the file goes with the client's UDF.
    #[test]
    fn s4_large_payload_goes_as_a_job_file_and_opens_on_a_node() {
        let d = tempfile::tempdir().unwrap();
        let input = d.path().join("claims.parquet");
        let secret = ClusterSecret::from_bytes([0x21; 32]);
        crate::seal::install_node_secret(ClusterSecret::from_bytes([0x21; 32])).unwrap();
        let labels: BTreeMap<String, String> =
            (0..40_000).map(|i| (format!("VALUE-{i:08}"), format!("LABEL-{:04}", i / 100))).collect();
        let udf = DeidUdf::generalize(&secret, "job-x-qi0", &labels, Some(&input)).unwrap();
        let made = udf.inner().downcast_ref::<DeidUdf>().unwrap();
        let file = made.job_file().expect("a large table goes as a file").clone();
        assert!(made.sealed().is_none());
        let bytes = std::fs::read(&file.path).unwrap();
        assert!(!bytes.windows(14).any(|w| w == b"VALUE-00000042"), "a value in the job file");
        let decoded = DeidUdf::decode(GENERALIZE_UDF, &file.to_bytes()).unwrap();
        let State::Generalize(opened) = &*decoded.state().unwrap() else { panic!("a generalize table") };
        assert_eq!(opened, &labels);
        // A small table still travels sealed inline, and never as a file.
        let small = DeidUdf::generalize(
            &secret,
            "job-x-qi1",
            &labels.iter().take(3).map(|(k, v)| (k.clone(), v.clone())).collect(),
            Some(&input),
        )
        .unwrap();
        assert!(small.inner().downcast_ref::<DeidUdf>().unwrap().job_file().is_none());
        drop(udf);
        assert!(!file.path.exists(), "the job file is removed with the client's UDF");
    }
}
