//! kiban's UDFs: the opt-out gate and pseudonym tokens, each carrying its secret sealed for one job.
//!
//! A UDF made on the client holds the opened secret already (so an in-process run never needs the
//! cluster secret); a UDF decoded from a plan on an executor holds only the [`SealedJob`] and opens it
//! with the node's cluster secret the first time a task evaluates it. `Debug` and the plan's display
//! show the UDF's name and job id only.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use chrono::NaiveDate;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Date32Array, StringArray, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Date32Type, Int64Type, UInt64Type};
use datafusion::common::{DataFusionError, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};
use kiban_registry::gate::{Facts, PersonFacts, Verdict, decide_person, well_formed_patient_id};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::jobfile::{JobFileRef, RemoveOnDrop};
use crate::seal::{ClusterSecret, SealedJob, open_job_file_on_node, open_on_node};
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

    /// Writes the facts as the gate needs them, in the job file's plaintext form: for each
    /// well-formed patient id (sorted) its earliest notice and its opt-out intervals. Nothing else
    /// leaves the client: no opt-out event ids, no later notices (the rule only ever uses the earliest
    /// notice on or before a date, which is the earliest notice when there is one).
    fn write_plain(&self, w: &mut impl std::io::Write) -> std::io::Result<()> {
        w.write_all(FACTS_MAGIC)?;
        w.write_all(&(self.provider_id.len() as u32).to_le_bytes())?;
        w.write_all(self.provider_id.as_bytes())?;
        w.write_all(&self.waiting_days.to_le_bytes())?;
        let persons = self.persons.iter().filter(|(k, _)| well_formed_patient_id(k));
        w.write_all(&(persons.clone().count() as u64).to_le_bytes())?;
        for (id, p) in persons {
            w.write_all(&[id.len() as u8])?;
            w.write_all(id.as_bytes())?;
            w.write_all(&p.notices.iter().map(|d| days(*d)).min().unwrap_or(NONE).to_le_bytes())?;
            w.write_all(&(p.optouts.len() as u32).to_le_bytes())?;
            for (_, from, until) in &p.optouts {
                w.write_all(&days(*from).to_le_bytes())?;
                w.write_all(&until.map_or(NONE, days).to_le_bytes())?;
            }
        }
        Ok(())
    }
}

/// The first bytes of the gate facts' plaintext in a job file.
const FACTS_MAGIC: &[u8; 8] = b"KBGATE01";
/// "No such date" in the compact facts (no real date is this late: chrono ends near day 95 million).
const NONE: i32 = i32::MAX;

fn days(d: NaiveDate) -> i32 {
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32
}

fn from_days(d: i32) -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch") + chrono::TimeDelta::days(d as i64)
}

/// One person's facts as the gate decides from them, 12 bytes: the earliest notice ([`NONE`]: none)
/// and, with at most one opt-out, that opt-out's interval inline (`from`, `until` with [`NONE`] for
/// "never withdrawn"; no opt-out: both [`NONE`]). A person with several opt-outs has
/// `notice == i32::MIN` and `from` indexes [`GateState::complex`], decided by kiban-registry's
/// [`decide_person`] itself.
#[derive(Clone, Copy)]
struct Compact {
    notice: i32,
    from: i32,
    until: i32,
}

impl Compact {
    /// As [`decide_person`] decides (proved equal by `compact_decision_is_decide_person`).
    #[inline]
    fn decide(self, date: i32, waiting_days: i64) -> Verdict {
        if self.from <= date && date < self.until {
            return Verdict::OptedOut;
        }
        if self.notice > date {
            return if self.from <= date { Verdict::NotNotified } else { Verdict::UnknownPerson };
        }
        if (date as i64 - self.notice as i64) < waiting_days {
            return Verdict::NoticeTooRecent;
        }
        Verdict::Admitted
    }
}

/// A well-formed id of up to 16 bytes packed into a u128 (id bytes are never 0, so this is
/// injective); longer ids are looked up by string.
#[inline]
fn pack(id: &[u8]) -> Option<u128> {
    if id.len() > 16 {
        return None;
    }
    let mut b = [0u8; 16];
    b[..id.len()].copy_from_slice(id);
    Some(u128::from_le_bytes(b))
}

/// The hasher of the facts' tables: foldhash, fast and seeded per process. Hash flooding is not a
/// concern here: the keys are the registry's own patient ids, sealed by the client, and a lookup
/// key that is not a well-formed id is never hashed.
type Fast = foldhash::fast::RandomState;

/// The facts opened on a node (or kept by the client in-process). Each record is decided as of its
/// own provision date by kiban-registry's rule, from one lookup in a table of packed ids.
struct GateState {
    provider_id: String,
    waiting_days: i64,
    short: HashMap<u128, Compact, Fast>,
    long: HashMap<Box<str>, Compact, Fast>,
    complex: Vec<PersonFacts>,
}

impl GateState {
    fn new(provider_id: String, waiting_days: u32, persons: usize) -> Self {
        GateState {
            provider_id,
            waiting_days: waiting_days as i64,
            short: HashMap::with_capacity_and_hasher(persons, Fast::default()),
            long: HashMap::default(),
            complex: Vec::new(),
        }
    }

    fn insert(&mut self, id: &str, notice: i32, optouts: &[(i32, i32)]) {
        let c = match optouts {
            [] => Compact { notice, from: NONE, until: NONE },
            [(from, until)] => Compact { notice, from: *from, until: *until },
            many => {
                let p = PersonFacts {
                    notices: if notice == NONE { vec![] } else { vec![from_days(notice)] },
                    optouts: many
                        .iter()
                        .map(|&(f, u)| (String::new(), from_days(f), (u != NONE).then(|| from_days(u))))
                        .collect(),
                };
                self.complex.push(p);
                Compact { notice: i32::MIN, from: (self.complex.len() - 1) as i32, until: 0 }
            }
        };
        match pack(id.as_bytes()) {
            Some(k) => self.short.insert(k, c),
            None => self.long.insert(id.into(), c),
        };
    }

    /// From the client's facts (in-process: the same tables an executor builds from the job file).
    fn from_facts(f: &GateFacts) -> Self {
        let mut s = GateState::new(f.provider_id.clone(), f.waiting_days, f.persons.len());
        let mut ivs = Vec::new();
        for (id, p) in f.persons.iter().filter(|(k, _)| well_formed_patient_id(k)) {
            ivs.clear();
            ivs.extend(p.optouts.iter().map(|(_, from, until)| (days(*from), until.map_or(NONE, days))));
            s.insert(id, p.notices.iter().map(|d| days(*d)).min().unwrap_or(NONE), &ivs);
        }
        s
    }

    /// From the plaintext [`GateFacts::write_plain`] wrote (read from the job file).
    fn read_plain(r: &mut impl std::io::Read) -> std::io::Result<Self> {
        let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("gate facts: {what}"));
        let mut u32b = [0u8; 4];
        let mut u64b = [0u8; 8];
        let mut magic = [0u8; 8];
        r.read_exact(&mut magic)?;
        if &magic != FACTS_MAGIC {
            return Err(bad("not kiban gate facts"));
        }
        r.read_exact(&mut u32b)?;
        let mut provider = vec![0u8; u32::from_le_bytes(u32b) as usize];
        r.read_exact(&mut provider)?;
        let provider = String::from_utf8(provider).map_err(|_| bad("provider id"))?;
        r.read_exact(&mut u32b)?;
        let waiting = u32::from_le_bytes(u32b);
        r.read_exact(&mut u64b)?;
        let n = u64::from_le_bytes(u64b);
        let mut s = GateState::new(provider, waiting, n.min(1 << 28) as usize);
        let mut id = [0u8; 255];
        let mut ivs = Vec::new();
        for _ in 0..n {
            let mut len = [0u8; 1];
            r.read_exact(&mut len)?;
            let id = &mut id[..len[0] as usize];
            r.read_exact(id)?;
            let id = std::str::from_utf8(id).ok().filter(|s| well_formed_patient_id(s)).ok_or_else(|| bad("id"))?;
            r.read_exact(&mut u32b)?;
            let notice = i32::from_le_bytes(u32b);
            r.read_exact(&mut u32b)?;
            ivs.clear();
            for _ in 0..u32::from_le_bytes(u32b) {
                let mut pair = [0u8; 8];
                r.read_exact(&mut pair)?;
                ivs.push((
                    i32::from_le_bytes(pair[..4].try_into().expect("4")),
                    i32::from_le_bytes(pair[4..].try_into().expect("4")),
                ));
            }
            s.insert(id, notice, &ivs);
        }
        if r.read(&mut [0u8; 1])? != 0 {
            return Err(bad("bytes after the last person"));
        }
        Ok(s)
    }

    /// The verdict of one record, as `kiban_registry::gate::Gate::decide` of the gate compiled for
    /// `date` (days since 1970-01-01) gives it.
    #[inline]
    fn decide(&self, provider_id: Option<&str>, patient_id: Option<&str>, date: i32) -> Verdict {
        match provider_id {
            Some(p) if p == self.provider_id => {}
            _ => return Verdict::ProviderMismatch,
        }
        let Some(id) = patient_id.filter(|s| well_formed_patient_id(s)) else {
            return Verdict::MalformedIdentity;
        };
        let c = match pack(id.as_bytes()) {
            Some(k) => self.short.get(&k),
            None => self.long.get(id),
        };
        match c {
            None => Verdict::UnknownPerson,
            Some(c) if c.notice == i32::MIN => {
                decide_person(&self.complex[c.from as usize], from_days(date), self.waiting_days as u32)
            }
            Some(c) => c.decide(date, self.waiting_days),
        }
    }
}

/// Where a job file goes: beside `input` (the storage every executor reads the input from),
/// as a hidden file named for the job.
pub fn job_file_beside(input: &Path, job_id: &str) -> PathBuf {
    let dir = input.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    dir.join(format!(".kiban-job-{job_id}.sealed"))
}

/// The opt-out gate as a UDF: `kiban_gate(provider_id, patient_id, provision_date)` answers the
/// verdict's name (`admitted`, `opted_out`, … as stored by kiban-registry), decided as
/// kiban-registry's compiled `Gate` decides as of the record's provision date; a missing or invalid date is refused
/// ([`INVALID_PROVISION_DATE`]), never admitted.
///
/// On a cluster the facts travel as a sealed job file ([`crate::jobfile`]); the plan carries only
/// the file's reference. In-process nothing is sealed or written.
pub struct GateUdf {
    job_id: String,
    file: Option<JobFileRef>,
    /// The client's handle on the job file it wrote: the file goes when the last copy goes.
    _owned: Option<Arc<RemoveOnDrop>>,
    state: OnceLock<Arc<GateState>>,
    signature: Signature,
}

impl GateUdf {
    /// The UDF of an in-process run: the facts stay in this process (a plan with it does not encode
    /// for a cluster).
    pub fn in_process(job_id: &str, facts: &GateFacts) -> Self {
        let u = GateUdf {
            job_id: job_id.to_owned(),
            file: None,
            _owned: None,
            state: OnceLock::new(),
            signature: Signature::any(3, Volatility::Immutable),
        };
        let _ = u.state.set(Arc::new(GateState::from_facts(facts)));
        u
    }

    /// The UDF of a cluster job: the facts are sealed for `job_id` into the new job file `path` (on
    /// storage every executor mounts at the same path; removed when the UDF is dropped). The client
    /// builds no lookup table: only executors (with the cluster secret) evaluate it.
    pub fn sealed_to_file(secret: &ClusterSecret, job_id: &str, facts: &GateFacts, path: &Path) -> Result<Self> {
        let mut w = secret.create_job_file("gate_facts", job_id, path)?;
        let owned = Arc::new(RemoveOnDrop(path.to_owned()));
        facts.write_plain(&mut w).map_err(|source| ClusterError::Io { path: path.display().to_string(), source })?;
        let mut u = Self::from_file(w.finish()?);
        u._owned = Some(owned);
        Ok(u)
    }

    /// For `runner`: sealed into a job file beside `input` on a cluster, in memory in-process.
    pub fn for_runner(
        runner: &crate::Runner,
        secret: &ClusterSecret,
        job_id: &str,
        facts: &GateFacts,
        input: &Path,
    ) -> Result<Self> {
        match runner.cluster_url() {
            Some(_) => Self::sealed_to_file(secret, job_id, facts, &job_file_beside(input, job_id)),
            None => Ok(Self::in_process(job_id, facts)),
        }
    }

    /// The UDF as decoded from a plan (opens the job file on first use with the node's secret).
    pub fn from_file(file: JobFileRef) -> Self {
        GateUdf {
            job_id: file.job_id.clone(),
            file: Some(file),
            _owned: None,
            state: OnceLock::new(),
            signature: Signature::any(3, Volatility::Immutable),
        }
    }

    /// What travels in the plan: the job file's reference (none for an in-process UDF).
    pub fn job_file(&self) -> Option<&JobFileRef> {
        self.file.as_ref()
    }

    /// As a DataFusion scalar UDF.
    pub fn into_udf(self) -> Arc<ScalarUDF> {
        Arc::new(ScalarUDF::new_from_impl(self))
    }

    fn state(&self) -> datafusion::common::Result<Arc<GateState>> {
        if let Some(s) = self.state.get() {
            return Ok(s.clone());
        }
        let Some(file) = &self.file else {
            return exec_err!("{GATE_UDF}: job {} has no facts", self.job_id);
        };
        // Every task of a job decodes its own copy of the UDF: open the job file once per process
        // and job, and share the tables between tasks through a small cache (the last two jobs: a
        // national submission's table is about a gigabyte).
        static OPENED: Mutex<Vec<(JobFileRef, Arc<GateState>)>> = Mutex::new(Vec::new());
        let mut cache = OPENED.lock().expect("no panics while holding the lock");
        if let Some((_, st)) = cache.iter().find(|(k, _)| k == file) {
            return Ok(self.state.get_or_init(|| st.clone()).clone());
        }
        let mut reader = open_job_file_on_node(file).map_err(secret_err)?;
        let s = GateState::read_plain(&mut reader)
            .map_err(|e| DataFusionError::Execution(format!("{GATE_UDF}: job {}: {e}", self.job_id)))?;
        let s = Arc::new(s);
        if cache.len() >= 2 {
            cache.remove(0);
        }
        cache.push((file.clone(), s.clone()));
        Ok(self.state.get_or_init(|| s).clone())
    }
}

impl std::fmt::Debug for GateUdf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GateUdf(job {}, <sealed>)", self.job_id)
    }
}

impl PartialEq for GateUdf {
    fn eq(&self, o: &Self) -> bool {
        self.job_id == o.job_id && self.file == o.file
    }
}
impl Eq for GateUdf {}
impl Hash for GateUdf {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.job_id.hash(h);
        self.file.hash(h)
    }
}

/// A text column as it comes (no copy into another string type).
enum Text<'a> {
    Utf8(&'a StringArray),
    Large(&'a datafusion::arrow::array::LargeStringArray),
    View(&'a datafusion::arrow::array::StringViewArray),
}

impl<'a> Text<'a> {
    fn of(a: &'a ArrayRef) -> Option<Self> {
        match a.data_type() {
            DataType::Utf8 => Some(Text::Utf8(a.as_string())),
            DataType::LargeUtf8 => Some(Text::Large(a.as_string())),
            DataType::Utf8View => Some(Text::View(a.as_string_view())),
            _ => None,
        }
    }

    #[inline]
    fn get(&self, i: usize) -> Option<&'a str> {
        match self {
            Text::Utf8(a) => a.is_valid(i).then(|| a.value(i)),
            Text::Large(a) => a.is_valid(i).then(|| a.value(i)),
            Text::View(a) => a.is_valid(i).then(|| a.value(i)),
        }
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
        // Text columns are read as they come; anything else is cast to text first (as before).
        let text = |v: &ColumnarValue| -> datafusion::common::Result<ArrayRef> {
            let a = v.to_array(n)?;
            Ok(if Text::of(&a).is_some() { a } else { datafusion::arrow::compute::cast(&a, &DataType::Utf8)? })
        };
        let prov = text(&args.args[0])?;
        let pat = text(&args.args[1])?;
        let (prov, pat) = (Text::of(&prov).expect("text"), Text::of(&pat).expect("text"));
        let dates = args.args[2].to_array(n)?;
        // A string that is not a date becomes null here, and a null date is refused below.
        let dates = datafusion::arrow::compute::cast_with_options(
            &dates,
            &DataType::Date32,
            &datafusion::arrow::compute::CastOptions { safe: true, ..Default::default() },
        )?;
        let dates: &Date32Array = dates.as_primitive::<Date32Type>();
        // Days chrono can represent (a Date32 outside them is not a date, as `value_as_date` says).
        let (lo, hi) = (days(NaiveDate::MIN), days(NaiveDate::MAX));
        let mut out = StringBuilder::with_capacity(n, n * 9);
        for i in 0..n {
            let d = dates.value(i);
            if dates.is_null(i) || d < lo || d > hi {
                out.append_value(INVALID_PROVISION_DATE);
                continue;
            }
            out.append_value(state.decide(prov.get(i), pat.get(i), d).as_str());
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The compact decision is kiban-registry's rule, for persons with no, one and several opt-outs,
    /// withdrawn or not, with and without notices, on dates all around them.
    #[test]
    fn compact_decision_is_decide_person() {
        let d0 = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
        let at = |k: i64| d0 + chrono::TimeDelta::days(k);
        let mut z = 0x1234_5678_u64;
        let mut next = |m: u64| {
            z = z.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (z >> 33) % m
        };
        let mut facts = GateFacts { provider_id: "P".into(), waiting_days: 30, ..Default::default() };
        let mut ids = Vec::new();
        for p in 0..600 {
            let mut f = PersonFactsWire::default();
            for _ in 0..next(3) {
                f.notices.push(at(next(200) as i64));
            }
            for e in 0..next(4) {
                let from = at(next(200) as i64);
                let until = (next(2) == 0).then(|| from + chrono::TimeDelta::days(next(60) as i64));
                f.optouts.push((format!("E{e}"), from, until));
            }
            // Short and long ids both.
            let id = if p % 3 == 0 { format!("LONG-PATIENT-ID-{p:08}") } else { format!("P{p}") };
            ids.push(id.clone());
            facts.persons.insert(id, f);
        }
        let mut plain = Vec::new();
        facts.write_plain(&mut plain).unwrap();
        let opened = GateState::read_plain(&mut plain.as_slice()).unwrap();
        let direct = GateState::from_facts(&facts);
        for id in &ids {
            let p = &facts.persons[id];
            let reg = PersonFacts { notices: p.notices.clone(), optouts: p.optouts.clone() };
            for k in (-5..240).step_by(3) {
                let want = decide_person(&reg, at(k), 30);
                for s in [&opened, &direct] {
                    assert_eq!(s.decide(Some("P"), Some(id), days(at(k))), want, "{id} on {}", at(k));
                }
            }
        }
        assert_eq!(direct.decide(Some("P"), Some("NOBODY"), days(d0)), Verdict::UnknownPerson);
        assert_eq!(direct.decide(Some("Q"), Some("P1"), days(d0)), Verdict::ProviderMismatch);
        assert_eq!(direct.decide(Some("P"), Some("a b"), days(d0)), Verdict::MalformedIdentity);
        assert!(GateState::read_plain(&mut &plain[..plain.len() - 1]).is_err(), "a cut plaintext is refused");
    }
}
