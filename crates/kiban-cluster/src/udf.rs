//! kiban's UDFs: the opt-out gate and pseudonym tokens, each carrying its secret sealed for one job.
//!
//! A UDF made on the client holds the opened secret already (so an in-process run never needs the
//! cluster secret); a UDF decoded from a plan on an executor holds only the [`SealedJob`] and opens it
//! with the node's cluster secret the first time a task evaluates it. `Debug` and the plan's display
//! show the UDF's name and job id only.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock};

use chrono::NaiveDate;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Date32Array, StringArray, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Date32Type, Int64Type, UInt64Type};
use datafusion::common::{DataFusionError, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};
use kiban_registry::gate::{Facts, PersonFacts, Verdict, decide_person, well_formed_patient_id};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::seal::{ClusterSecret, SealedJob, open_on_node};
use crate::{ClusterError, Result};

/// The name of the token UDF: `kiban_token(value, 'column')`.
pub const TOKEN_UDF: &str = "kiban_token";
/// The name of the gate UDF: `kiban_gate(provider_id, patient_id, provision_date)`.
pub const GATE_UDF: &str = "kiban_gate";
/// What the gate UDF answers for a record whose provision date is missing or not a date (fail-closed).
pub const INVALID_PROVISION_DATE: &str = "invalid_provision_date";

/// The context of kiban-identity's v2 person tokens (`kiban_identity::pseudonym::BLAKE3_CONTEXT`).
const PERSON_TOKEN_CONTEXT: &str = "kiban pseudonym token v2";
/// The context of kiban-deid's release tokens of string values (`kiban_deid::pseudo`).
const RELEASE_TOKEN_CONTEXT: &str = "kiban 2026-11 release token key v2";

fn secret_err(e: ClusterError) -> DataFusionError {
    DataFusionError::Execution(e.to_string())
}

/// The two derived keys of one pseudonym key (the raw key itself is not kept).
struct TokenKeys {
    person: Zeroizing<[u8; 32]>,
    release: Zeroizing<[u8; 32]>,
}

impl TokenKeys {
    fn from_raw(raw: &[u8]) -> Result<Self> {
        if raw.len() != 32 {
            return Err(ClusterError::Secret("a pseudonym key must be 32 bytes".into()));
        }
        Ok(TokenKeys {
            person: Zeroizing::new(blake3::derive_key(PERSON_TOKEN_CONTEXT, raw)),
            release: Zeroizing::new(blake3::derive_key(RELEASE_TOKEN_CONTEXT, raw)),
        })
    }
}

/// Pseudonym tokens, keyed BLAKE3.
///
/// `kiban_token(v, 'column')`: an integer `v` is a person key, and its token is kiban-identity's v2
/// token (64 hex digits: BLAKE3 keyed by `derive_key("kiban pseudonym token v2", key)` over the 8
/// big-endian bytes); a string `v` gets kiban-deid's release token of that column (32 hex digits:
/// BLAKE3 keyed by the column key = BLAKE3 keyed by `derive_key("kiban 2026-11 release token key v2",
/// key)` over the column name). Nulls stay null.
pub struct TokenUdf {
    sealed: SealedJob,
    keys: OnceLock<Arc<TokenKeys>>,
    signature: Signature,
}

impl TokenUdf {
    /// Makes the UDF for one job on the client: `key` is sealed with the cluster secret for the plan,
    /// and kept opened for an in-process run.
    pub fn new(secret: &ClusterSecret, job_id: &str, key: &[u8; 32]) -> Result<Self> {
        let u = Self::from_sealed(secret.seal("token_key", job_id, key));
        let _ = u.keys.set(Arc::new(TokenKeys::from_raw(key)?));
        Ok(u)
    }

    /// The UDF as decoded from a plan (opens its key on first use with the node's secret).
    pub fn from_sealed(sealed: SealedJob) -> Self {
        TokenUdf { sealed, keys: OnceLock::new(), signature: Signature::any(2, Volatility::Immutable) }
    }

    /// What travels in the plan.
    pub fn sealed(&self) -> &SealedJob {
        &self.sealed
    }

    /// As a DataFusion scalar UDF.
    pub fn into_udf(self) -> Arc<ScalarUDF> {
        Arc::new(ScalarUDF::new_from_impl(self))
    }

    fn keys(&self) -> datafusion::common::Result<Arc<TokenKeys>> {
        if let Some(k) = self.keys.get() {
            return Ok(k.clone());
        }
        let raw = open_on_node(&self.sealed).map_err(secret_err)?;
        let k = Arc::new(TokenKeys::from_raw(&raw).map_err(secret_err)?);
        Ok(self.keys.get_or_init(|| k).clone())
    }
}

impl std::fmt::Debug for TokenUdf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenUdf(job {}, <sealed>)", self.sealed.job_id)
    }
}

impl PartialEq for TokenUdf {
    fn eq(&self, o: &Self) -> bool {
        self.sealed == o.sealed
    }
}
impl Eq for TokenUdf {}
impl Hash for TokenUdf {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.sealed.hash(h)
    }
}

fn literal_column_name(v: &ColumnarValue) -> datafusion::common::Result<String> {
    match v {
        ColumnarValue::Scalar(ScalarValue::Utf8(Some(s)))
        | ColumnarValue::Scalar(ScalarValue::Utf8View(Some(s)))
        | ColumnarValue::Scalar(ScalarValue::LargeUtf8(Some(s))) => Ok(s.clone()),
        _ => exec_err!("{TOKEN_UDF}: the second argument must be the column name as a string literal"),
    }
}

impl ScalarUDFImpl for TokenUdf {
    fn name(&self) -> &str {
        TOKEN_UDF
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> datafusion::common::Result<DataType> {
        match args.first() {
            Some(DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Int64 | DataType::UInt64) => {
                Ok(DataType::Utf8)
            }
            other => plan_err!("{TOKEN_UDF}: a token is made of a string or an integer person key, not {other:?}"),
        }
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> datafusion::common::Result<ColumnarValue> {
        let keys = self.keys()?;
        let column = literal_column_name(&args.args[1])?;
        let values = args.args[0].to_array(args.number_rows)?;
        let mut out = StringBuilder::with_capacity(values.len(), values.len() * 64);
        let mut hex_buf = [0u8; 64];
        match values.data_type() {
            DataType::Int64 | DataType::UInt64 => {
                let as_u64: Vec<Option<u64>> = if values.data_type() == &DataType::Int64 {
                    values.as_primitive::<Int64Type>().iter().map(|v| v.map(|x| x as u64)).collect()
                } else {
                    values.as_primitive::<UInt64Type>().iter().collect()
                };
                for v in as_u64 {
                    match v {
                        Some(p) => {
                            let t = blake3::keyed_hash(&keys.person, &p.to_be_bytes());
                            hex::encode_to_slice(t.as_bytes(), &mut hex_buf).expect("64 hex digits");
                            out.append_value(std::str::from_utf8(&hex_buf).expect("hex is ASCII"));
                        }
                        None => out.append_null(),
                    }
                }
            }
            _ => {
                let strings = datafusion::arrow::compute::cast(&values, &DataType::Utf8)?;
                let strings = strings.as_string::<i32>();
                let column_key = *blake3::keyed_hash(&keys.release, column.as_bytes()).as_bytes();
                let column_key = Zeroizing::new(column_key);
                for v in strings.iter() {
                    match v {
                        Some(s) => {
                            let t = blake3::keyed_hash(&column_key, s.as_bytes());
                            hex::encode_to_slice(&t.as_bytes()[..16], &mut hex_buf[..32]).expect("32 hex digits");
                            out.append_value(std::str::from_utf8(&hex_buf[..32]).expect("hex is ASCII"));
                        }
                        None => out.append_null(),
                    }
                }
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
    }
}

/// What the registry knows about one person, as it travels (sealed) to executors.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonFactsWire {
    /// Dates of notices in force.
    pub notices: Vec<NaiveDate>,
    /// Opt-outs: (event id, effective date, withdrawal date if withdrawn).
    pub optouts: Vec<(String, NaiveDate, Option<NaiveDate>)>,
}

/// The gate's job data: the submitting provider, the waiting period and the facts of its patients.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateFacts {
    /// The submitting provider (records of another provider are refused, C1).
    pub provider_id: String,
    /// The waiting period after a notice (P2).
    pub waiting_days: u32,
    /// By provider patient id (sorted, so the sealed payload is the same for the same facts).
    pub persons: BTreeMap<String, PersonFactsWire>,
}

impl GateFacts {
    /// From the registry's facts ([`kiban_registry::Registry::gate_facts`]).
    pub fn from_registry(provider_id: &str, waiting_days: u32, facts: &Facts) -> Self {
        let persons = facts
            .persons
            .iter()
            .map(|(k, p)| (k.clone(), PersonFactsWire { notices: p.notices.clone(), optouts: p.optouts.clone() }))
            .collect();
        GateFacts { provider_id: provider_id.to_owned(), waiting_days, persons }
    }

    fn to_registry(&self) -> Facts {
        let persons: HashMap<String, PersonFacts> = self
            .persons
            .iter()
            .map(|(k, p)| (k.clone(), PersonFacts { notices: p.notices.clone(), optouts: p.optouts.clone() }))
            .collect();
        Facts { persons }
    }
}

/// The facts opened on a node. Each record is decided by kiban-registry's own rule
/// ([`decide_person`]) as of its provision date, from one lookup in the facts: no gate is compiled
/// per date (provision dates vary row by row; a compiled gate per date cost a table of every person
/// for each of them).
struct GateState {
    provider_id: String,
    waiting_days: u32,
    facts: Facts,
}

impl GateState {
    fn new(f: GateFacts) -> Self {
        GateState { facts: f.to_registry(), provider_id: f.provider_id, waiting_days: f.waiting_days }
    }

    /// The verdict of one record, as `kiban_registry::gate::Gate::decide` of the gate compiled for
    /// `date` gives it.
    fn decide(&self, provider_id: Option<&str>, patient_id: Option<&str>, date: NaiveDate) -> Verdict {
        match provider_id {
            Some(p) if p == self.provider_id => {}
            _ => return Verdict::ProviderMismatch,
        }
        let Some(id) = patient_id.filter(|s| well_formed_patient_id(s)) else {
            return Verdict::MalformedIdentity;
        };
        match self.facts.persons.get(id) {
            Some(p) => decide_person(p, date, self.waiting_days),
            None => Verdict::UnknownPerson,
        }
    }
}

/// The opt-out gate as a UDF: `kiban_gate(provider_id, patient_id, provision_date)` answers the
/// verdict's name (`admitted`, `opted_out`, … as stored by kiban-registry), decided as
/// kiban-registry's compiled `Gate` decides as of the record's provision date; a missing or invalid date is refused
/// ([`INVALID_PROVISION_DATE`]), never admitted.
pub struct GateUdf {
    sealed: SealedJob,
    state: OnceLock<Arc<GateState>>,
    signature: Signature,
}

impl GateUdf {
    /// Makes the UDF for one job on the client (facts sealed for the plan, kept open in-process).
    pub fn new(secret: &ClusterSecret, job_id: &str, facts: GateFacts) -> Self {
        let plain = Zeroizing::new(serde_json::to_vec(&facts).expect("facts serialize"));
        let u = Self::from_sealed(secret.seal("gate_facts", job_id, &plain));
        let _ = u.state.set(Arc::new(GateState::new(facts)));
        u
    }

    /// The UDF as decoded from a plan.
    pub fn from_sealed(sealed: SealedJob) -> Self {
        GateUdf { sealed, state: OnceLock::new(), signature: Signature::any(3, Volatility::Immutable) }
    }

    /// What travels in the plan.
    pub fn sealed(&self) -> &SealedJob {
        &self.sealed
    }

    /// As a DataFusion scalar UDF.
    pub fn into_udf(self) -> Arc<ScalarUDF> {
        Arc::new(ScalarUDF::new_from_impl(self))
    }

    fn state(&self) -> datafusion::common::Result<Arc<GateState>> {
        if let Some(s) = self.state.get() {
            return Ok(s.clone());
        }
        // Every task of a job decodes its own copy of the UDF: share the opened facts and compiled
        // gates between them through a small per-process cache (the last few jobs only).
        static OPENED: Mutex<Vec<(SealedJob, Arc<GateState>)>> = Mutex::new(Vec::new());
        let mut cache = OPENED.lock().expect("no panics while holding the lock");
        if let Some((_, st)) = cache.iter().find(|(k, _)| *k == self.sealed) {
            return Ok(self.state.get_or_init(|| st.clone()).clone());
        }
        let plain = open_on_node(&self.sealed).map_err(secret_err)?;
        let facts: GateFacts = serde_json::from_slice(&plain)
            .map_err(|e| DataFusionError::Execution(format!("{GATE_UDF}: the job's gate facts are malformed: {e}")))?;
        let s = Arc::new(GateState::new(facts));
        if cache.len() >= 4 {
            cache.remove(0);
        }
        cache.push((self.sealed.clone(), s.clone()));
        Ok(self.state.get_or_init(|| s).clone())
    }
}

impl std::fmt::Debug for GateUdf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GateUdf(job {}, <sealed>)", self.sealed.job_id)
    }
}

impl PartialEq for GateUdf {
    fn eq(&self, o: &Self) -> bool {
        self.sealed == o.sealed
    }
}
impl Eq for GateUdf {}
impl Hash for GateUdf {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.sealed.hash(h)
    }
}

impl ScalarUDFImpl for GateUdf {
    fn name(&self) -> &str {
        GATE_UDF
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> datafusion::common::Result<ColumnarValue> {
        let state = self.state()?;
        let n = args.number_rows;
        let text = |v: &ColumnarValue| -> datafusion::common::Result<ArrayRef> {
            Ok(datafusion::arrow::compute::cast(&v.to_array(n)?, &DataType::Utf8)?)
        };
        let prov = text(&args.args[0])?;
        let pat = text(&args.args[1])?;
        let dates = args.args[2].to_array(n)?;
        // A string that is not a date becomes null here, and a null date is refused below.
        let dates = datafusion::arrow::compute::cast_with_options(
            &dates,
            &DataType::Date32,
            &datafusion::arrow::compute::CastOptions { safe: true, ..Default::default() },
        )?;
        let (prov, pat): (&StringArray, &StringArray) = (prov.as_string(), pat.as_string());
        let dates: &Date32Array = dates.as_primitive::<Date32Type>();
        let mut out = StringBuilder::with_capacity(n, n * 9);
        for i in 0..n {
            let Some(date) = (!dates.is_null(i)).then(|| dates.value_as_date(i)).flatten() else {
                out.append_value(INVALID_PROVISION_DATE);
                continue;
            };
            let p = (!prov.is_null(i)).then(|| prov.value(i));
            let id = (!pat.is_null(i)).then(|| pat.value(i));
            out.append_value(state.decide(p, id, date).as_str());
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}
