//! The intake of one batch (C1–C4) and the deletion of a person's records (P7, C5).
//!
//! `submit`: confirm the provider's standing (C1, C4, P5) → refuse an input already received (by
//! SHA-256) → compile the gate as of the provision date → read the Parquet input a record batch at a
//! time, admit or quarantine every record (nothing is lost) → write the admitted records as kiban
//! datasets under `clinical/<batch>/<table>` and the excluded ones with their reasons under
//! `quarantine/<batch>/<table>` (staged, committed by rename) → one SQL transaction for the receipt
//! record (C2), the provision record (P6) and the gate report (C3). If the SQL fails, the renamed
//! directories are removed again, so the store is as before the batch.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, StringArray};
pub use arrow::record_batch::RecordBatch;
use arrow::record_batch::RecordBatchReader;
use chrono::NaiveDate;
use kiban_formats::{DatasetError, DatasetWriter, FileFormat, Sealer};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::gate::{Gate, Verdict, quarantine_batch};
use crate::records::{NewReceipt, ReceiptRecord, RecordError};
use crate::store::Registry;

/// What went wrong with a batch.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// A registry rule refused it (provider standing, duplicate input …).
    #[error(transparent)]
    Record(#[from] RecordError),
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What happened.
        message: String,
    },
    /// A dataset could not be written.
    #[error(transparent)]
    Dataset(#[from] DatasetError),
}

fn file_err(path: &Path) -> impl FnOnce(&dyn std::fmt::Display) -> IntakeError + '_ {
    move |e| IntakeError::File { path: path.to_owned(), message: e.to_string() }
}

/// One batch to take in.
#[derive(Clone)]
pub struct Submission {
    /// The submitting provider.
    pub provider_id: String,
    /// The provision date the batch is decided as of.
    pub provision_date: NaiveDate,
    /// Input: a directory of tables (`<input>/<table>/*.parquet`) or of Parquet files (one table).
    pub input: PathBuf,
    /// Continuous provision: records go into the provider's bulk record.
    pub bulk: bool,
    /// Decide and report only; write nothing (replaying an old batch).
    pub dry_run: bool,
    /// The creator's name for the provision record (003 art.34-2).
    pub creator_name: String,
    /// The creator's address.
    pub creator_address: String,
    /// Encrypts the clinical store and quarantine at rest (R12); `None` writes plain files (tests).
    pub sealer: Option<Arc<dyn Sealer>>,
}

impl std::fmt::Debug for Submission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Submission")
            .field("provider_id", &self.provider_id)
            .field("provision_date", &self.provision_date)
            .field("input", &self.input)
            .field("bulk", &self.bulk)
            .field("dry_run", &self.dry_run)
            .field("sealed", &self.sealer.is_some())
            .finish()
    }
}

/// Counts for one table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableCount {
    /// Table.
    pub table: String,
    /// Records in.
    pub rows_in: u64,
    /// Admitted.
    pub admitted: u64,
    /// Excluded.
    pub excluded: u64,
}

/// The gate's result for a batch (C3), kept with the receipt record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateReport {
    /// Batch.
    pub batch_id: String,
    /// Provider.
    pub provider_id: String,
    /// Provision date decided as of.
    pub provision_date: NaiveDate,
    /// Waiting period applied (P2).
    pub waiting_days: u32,
    /// SHA-256 of the input.
    pub input_sha256: String,
    /// Registry version used.
    pub registry_version: String,
    /// Persons the registry knew for the provider.
    pub registry_persons: u64,
    /// Records in.
    pub rows_in: u64,
    /// Records admitted.
    pub admitted: u64,
    /// Records excluded.
    pub excluded: u64,
    /// Excluded records by reason.
    pub excluded_by_reason: BTreeMap<String, u64>,
    /// Distinct persons admitted.
    pub admitted_persons: u64,
    /// Distinct persons excluded.
    pub excluded_persons: u64,
    /// SHA-256 of the sorted excluded-person list (`patient_id\treason\n` each).
    pub excluded_persons_sha256: String,
    /// Per table.
    pub tables: Vec<TableCount>,
}

/// What `submit` did.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The report.
    pub report: GateReport,
    /// The receipt record (none on a dry run).
    pub receipt: Option<ReceiptRecord>,
    /// Where admitted records went.
    pub clinical: Option<PathBuf>,
    /// Where excluded records went.
    pub quarantine: Option<PathBuf>,
}

/// The tables of an input directory: `(name, parquet files)`, sorted.
pub fn input_tables(input: &Path) -> Result<Vec<(String, Vec<PathBuf>)>, IntakeError> {
    let parquet_in = |d: &Path| -> Result<Vec<PathBuf>, IntakeError> {
        let mut v: Vec<PathBuf> = fs::read_dir(d)
            .map_err(|e| file_err(d)(&e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "parquet"))
            .collect();
        v.sort();
        Ok(v)
    };
    if !input.is_dir() {
        return Err(file_err(input)(&"the input must be a directory of Parquet tables"));
    }
    // `kiban formats convert` output: clinical tables and the identity table side by side.
    if input.join("clinical").is_dir() && input.join("identity").is_dir() {
        let mut out = input_tables(&input.join("clinical"))?;
        if [IDENTITY_TABLE, PUBLIC_EXPENSE_IDS_TABLE].iter().any(|t| input.join("identity").join(t).is_dir()) {
            out.extend(input_tables(&input.join("identity"))?);
        }
        out.sort();
        return Ok(out);
    }
    let direct = parquet_in(input)?;
    if !direct.is_empty() {
        let name = input.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "table".into());
        return Ok(vec![(name, direct)]);
    }
    let mut subdirs: Vec<PathBuf> =
        fs::read_dir(input).map_err(|e| file_err(input)(&e))?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    subdirs.sort();
    let mut out = Vec::new();
    for d in subdirs.into_iter().filter(|d| d.is_dir()) {
        let files = parquet_in(&d)?;
        if !files.is_empty() {
            out.push((d.file_name().expect("dir name").to_string_lossy().into_owned(), files));
        }
    }
    if out.is_empty() {
        return Err(file_err(input)(&"no Parquet files found (expected <input>/<table>/*.parquet)"));
    }
    Ok(out)
}

/// SHA-256 of an input: every table name, file name, length and content, in sorted order.
pub fn input_digest(tables: &[(String, Vec<PathBuf>)]) -> Result<String, IntakeError> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    for (t, files) in tables {
        for f in files {
            let name = f.file_name().expect("file").to_string_lossy();
            let len = fs::metadata(f).map_err(|e| file_err(f)(&e))?.len();
            h.update(format!("{t}/{name}\t{len}\n").as_bytes());
            let mut r = File::open(f).map_err(|e| file_err(f)(&e))?;
            loop {
                let k = r.read(&mut buf).map_err(|e| file_err(f)(&e))?;
                if k == 0 {
                    break;
                }
                h.update(&buf[..k]);
            }
        }
    }
    Ok(hex::encode(h.finalize()))
}

fn batch_id(provider: &str, date: NaiveDate, digest: &str) -> String {
    format!("b-{provider}-{}-{}", date.format("%Y%m%d"), &digest[..12])
}

fn read_parquet(path: &Path) -> Result<parquet::arrow::arrow_reader::ParquetRecordBatchReader, IntakeError> {
    let f = File::open(path).map_err(|e| file_err(path)(&e))?;
    ParquetRecordBatchReaderBuilder::try_new(f)
        .and_then(|b| b.with_batch_size(64 * 1024).build())
        .map_err(|e| file_err(path)(&e))
}

fn seal(w: DatasetWriter, sealer: &Option<Arc<dyn Sealer>>) -> DatasetWriter {
    match sealer {
        Some(s) => w.sealed(s.clone()),
        None => w,
    }
}

fn patient_ids(b: &RecordBatch) -> Option<&StringArray> {
    b.column_by_name("patient_id").and_then(|c| c.as_any().downcast_ref::<StringArray>())
}

/// The identity table of a submission: its rows go to the identity vault, never to `clinical/`.
pub const IDENTITY_TABLE: &str = "patients";

/// The 公費 numbers (負担者番号, 受給者番号; kiban-formats `public_expense_ids`): identifiers of a
/// person registered before in [`IDENTITY_TABLE`], so they go to the identity vault too.
pub const PUBLIC_EXPENSE_IDS_TABLE: &str = "public_expense_ids";

/// The identity columns [`PUBLIC_EXPENSE_IDS_TABLE`] may carry (and no clinical table may).
const PUBLIC_EXPENSE_ID_COLUMNS: [&str; 2] = ["payer_number", "recipient_number"];

/// True for the tables whose rows go to the identity vault only.
pub fn is_identity_table(table: &str) -> bool {
    table == IDENTITY_TABLE || table == PUBLIC_EXPENSE_IDS_TABLE
}

/// Direct identifiers (issue 4 item 1): only the identity vault holds them. A clinical table that
/// carries one is refused; `patient_id` is replaced by the vault's person key.
pub const IDENTITY_COLUMNS: [&str; 13] = [
    "name_kanji",
    "name_kana",
    "sex",
    "birth_date",
    "postal_code",
    "address",
    "phone",
    "insurer_number",
    "card_symbol",
    "card_number",
    "card_branch",
    // 公費 負担者番号 and 受給者番号: only in the `public_expense_ids` table, routed to the vault.
    "payer_number",
    "recipient_number",
];

/// The column that links clinical rows to a person in the identity vault, in place of `patient_id`.
pub const PERSON_KEY_COLUMN: &str = "person_key";

/// The identity vault's side of intake. `kiban-identity` owns the vault, so the binary and the
/// server pass an implementation; the registry only moves rows and keys.
pub trait IdentityRouting: Sync {
    /// Registers the admitted rows of the identity table (through the master patient index) and
    /// returns, per row, the person key or why the identity was rejected (field and rule).
    fn register(&self, provider_id: &str, rows: &RecordBatch) -> Result<Vec<Result<String, String>>, String>;
    /// The person keys of the provider's patient ids (`None`: no identity registered for it).
    fn person_keys(&self, provider_id: &str, patient_ids: &[&str]) -> Result<Vec<Option<String>>, String>;
    /// Stores the admitted rows of [`PUBLIC_EXPENSE_IDS_TABLE`] (公費 numbers of patients whose
    /// identity is registered) in the vault; per row, the person key or why it was rejected. A vault
    /// that cannot hold them refuses the batch.
    fn register_public_expense_ids(
        &self,
        _provider_id: &str,
        _rows: &RecordBatch,
    ) -> Result<Vec<Result<String, String>>, String> {
        Err("this identity vault does not take 公費 numbers (public_expense_ids)".into())
    }
}

fn quarantine_rows(
    rows: &RecordBatch,
    reason: &str,
    details: &[String],
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let reasons: StringArray = details.iter().map(|_| Some(reason)).collect();
    let rules: StringArray = details.iter().map(|d| Some(d.as_str())).collect();
    let mut fields: Vec<_> = rows.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(arrow::datatypes::Field::new("exclusion_reason", arrow::datatypes::DataType::Utf8, false));
    fields.push(arrow::datatypes::Field::new("rule", arrow::datatypes::DataType::Utf8, false));
    let mut cols: Vec<arrow::array::ArrayRef> = rows.columns().to_vec();
    cols.push(Arc::new(reasons));
    cols.push(Arc::new(rules));
    RecordBatch::try_new(Arc::new(arrow::datatypes::Schema::new(fields)), cols)
}

/// The clinical form of a table's schema: `patient_id` becomes `person_key`.
fn clinical_schema(schema: &arrow::datatypes::SchemaRef) -> arrow::datatypes::SchemaRef {
    let fields: Vec<arrow::datatypes::Field> = schema
        .fields()
        .iter()
        .map(|f| {
            if f.name() == "patient_id" {
                arrow::datatypes::Field::new(PERSON_KEY_COLUMN, arrow::datatypes::DataType::Utf8, false)
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    Arc::new(arrow::datatypes::Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// Admitted rows routed through the vault: rows with a person key (patient id replaced), and the
/// rows without one with their reasons (identity rejected, or never registered).
struct Routed {
    clinical: Option<RecordBatch>,
    quarantine: Option<RecordBatch>,
    rejected: u64,
    reason: &'static str,
}

fn take(b: &RecordBatch, keep: &[bool]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let mask: arrow::array::BooleanArray = keep.iter().map(|&k| Some(k)).collect();
    arrow::compute::filter_record_batch(b, &mask)
}

fn route_rows(
    ids: &dyn IdentityRouting,
    provider: &str,
    table: &str,
    b: &RecordBatch,
    out_schema: &arrow::datatypes::SchemaRef,
) -> Result<Routed, String> {
    let pids = patient_ids(b).ok_or("the table has no text patient_id column")?;
    let pid = |i: usize| if pids.is_null(i) { "" } else { pids.value(i) };
    if is_identity_table(table) {
        let res = if table == IDENTITY_TABLE {
            ids.register(provider, b)?
        } else {
            ids.register_public_expense_ids(provider, b)?
        };
        if res.len() != b.num_rows() {
            return Err(format!("the vault answered {} rows for {}", res.len(), b.num_rows()));
        }
        let bad: Vec<bool> = res.iter().map(|r| r.is_err()).collect();
        let details: Vec<String> = res.iter().filter_map(|r| r.as_ref().err().cloned()).collect();
        let quarantine = if details.is_empty() {
            None
        } else {
            Some(
                quarantine_rows(&take(b, &bad).map_err(|e| e.to_string())?, "identity_rejected", &details)
                    .map_err(|e| e.to_string())?,
            )
        };
        return Ok(Routed { clinical: None, quarantine, rejected: details.len() as u64, reason: "identity_rejected" });
    }
    let list: Vec<&str> = (0..b.num_rows()).map(pid).collect();
    let keys = ids.person_keys(provider, &list)?;
    if keys.len() != b.num_rows() {
        return Err(format!("the vault answered {} rows for {}", keys.len(), b.num_rows()));
    }
    let known: Vec<bool> = keys.iter().map(|k| k.is_some()).collect();
    let unknown: Vec<bool> = known.iter().map(|k| !k).collect();
    let n_unknown = unknown.iter().filter(|&&u| u).count();
    let quarantine = if n_unknown == 0 {
        None
    } else {
        let rows = take(b, &unknown).map_err(|e| e.to_string())?;
        let details = vec![
            "vault: no identity registered for this patient id (submit it in the patients table)"
                .to_owned();
            n_unknown
        ];
        Some(quarantine_rows(&rows, "no_identity", &details).map_err(|e| e.to_string())?)
    };
    let kept = take(b, &known).map_err(|e| e.to_string())?;
    let col: StringArray = keys.iter().flatten().map(|k| Some(k.as_str())).collect();
    let pos = b.schema().index_of("patient_id").map_err(|e| e.to_string())?;
    let mut cols = kept.columns().to_vec();
    cols[pos] = Arc::new(col);
    let clinical = RecordBatch::try_new(out_schema.clone(), cols).map_err(|e| e.to_string())?;
    Ok(Routed { clinical: Some(clinical), quarantine, rejected: n_unknown as u64, reason: "no_identity" })
}

/// Takes in one batch without an identity vault: clinical rows keep the provider's patient id and
/// an identity table or column is refused. For registry tests and dry runs; the product's paths
/// (CLI, server, demo) use [`submit_routed`].
pub async fn submit(reg: &Registry, data_dir: &Path, s: &Submission) -> Result<Outcome, IntakeError> {
    submit_routed(reg, data_dir, s, None).await
}

/// Takes in one batch. See the module documentation for the steps. With `ids`, the identity table's
/// admitted rows are registered in the vault and every clinical row's `patient_id` is replaced by
/// its person key; rows whose identity the vault rejects or does not know go to quarantine (sealed,
/// with the patient id, so the batch can be replayed). Identities registered before a failing SQL
/// commit stay in the vault: registering the same identity again matches the same person.
pub async fn submit_routed(
    reg: &Registry,
    data_dir: &Path,
    s: &Submission,
    ids: Option<&dyn IdentityRouting>,
) -> Result<Outcome, IntakeError> {
    submit_gated(reg, data_dir, s, ids, None).await
}

/// The verdict codes ([`Verdict`] as `u8`) of every row of one input file, in the file's row order,
/// decided elsewhere than this process (the gate as a DataFusion plan on a cluster).
pub trait VerdictSource: Send + Sync {
    /// Decides every row of `file` for the submission's provider as of its provision date.
    fn file_verdicts<'a>(
        &'a self,
        file: &'a Path,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<u8>, String>> + Send + 'a>>;
}

/// [`submit_routed`] with the gate's verdicts from `verdicts` when given; everything else (identity
/// routing, stores, receipt) happens here as usual, so the outcome is the same.
pub async fn submit_gated(
    reg: &Registry,
    data_dir: &Path,
    s: &Submission,
    ids: Option<&dyn IdentityRouting>,
    verdicts: Option<&dyn VerdictSource>,
) -> Result<Outcome, IntakeError> {
    let standing = reg.standing(&s.provider_id, s.provision_date).await?;
    let mut tables = input_tables(&s.input)?;
    let digest = input_digest(&tables)?;
    // Identities first, so the clinical tables (and the 公費 numbers) of the same batch find their
    // person keys.
    tables.sort_by_key(|(t, _)| (t != IDENTITY_TABLE, t != PUBLIC_EXPENSE_IDS_TABLE));
    for (table, files) in &tables {
        let schema = read_parquet(&files[0])?.schema();
        let allowed: &[&str] = if table == PUBLIC_EXPENSE_IDS_TABLE { &PUBLIC_EXPENSE_ID_COLUMNS } else { &[] };
        let id_col = schema
            .fields()
            .iter()
            .find(|f| IDENTITY_COLUMNS.contains(&f.name().as_str()) && !allowed.contains(&f.name().as_str()));
        let refuse = |message: String| -> Result<(), IntakeError> {
            Err(RecordError::Invalid { field: "input", rule: "A3", message }.into())
        };
        if is_identity_table(table) && ids.is_none() && !s.dry_run {
            refuse(format!("table {table} holds identities: only the identity vault may take them, and none is open"))?;
        }
        if table != IDENTITY_TABLE
            && let Some(c) = id_col
        {
            refuse(format!(
                "table {table} carries the direct identifier column {}: identities go in the {IDENTITY_TABLE} table, to the identity vault only",
                c.name()
            ))?;
        }
        if ids.is_some()
            && schema
                .column_with_name("patient_id")
                .is_none_or(|(_, f)| f.data_type() != &arrow::datatypes::DataType::Utf8)
        {
            refuse(format!("table {table} has no text patient_id column to link its rows to the identity vault"))?;
        }
    }
    let batch = batch_id(&s.provider_id, s.provision_date, &digest);
    if !s.dry_run
        && let Some(prev) = reg.receipt_by_digest(&digest).await?
    {
        return Err(RecordError::Invalid {
            field: "input",
            rule: "C2",
            message: format!(
                "this input (SHA-256 {}…) was already received as batch {}; it is not admitted twice",
                &digest[..12],
                prev.batch_id
            ),
        }
        .into());
    }
    let version = reg.registry_version().await?;
    let facts = reg.gate_facts(&s.provider_id).await?;
    let waiting = standing.filing.input.waiting_days;
    let gate = Gate::compile(&s.provider_id, &facts, s.provision_date, waiting);
    drop(facts);

    let stage = data_dir.join("staging").join(&batch);
    if stage.exists() {
        fs::remove_dir_all(&stage).map_err(|e| file_err(&stage)(&e))?;
    }
    let mut counts = Vec::new();
    let mut by_reason: BTreeMap<String, u64> = BTreeMap::new();
    let mut admitted_persons: BTreeSet<String> = BTreeSet::new();
    let mut excluded_persons: BTreeSet<(String, &'static str)> = BTreeSet::new();
    let mut items = Vec::new();
    let mut any_quarantine = false;
    for (table, files) in &tables {
        let mut tc = TableCount { table: table.clone(), ..Default::default() };
        let schema = read_parquet(&files[0])?.schema();
        items.push(serde_json::json!({
            "table": table, "columns": schema.fields().iter().map(|f| f.name().clone()).collect::<Vec<_>>()
        }));
        let routing = ids.filter(|_| !s.dry_run);
        let out_schema = if routing.is_some() { clinical_schema(&schema) } else { schema.clone() };
        let clin = (!s.dry_run && !is_identity_table(table))
            .then(|| {
                DatasetWriter::create(
                    &stage.join("clinical").join(table),
                    table,
                    out_schema.clone(),
                    FileFormat::Parquet,
                )
                .map(|w| seal(w, &s.sealer))
            })
            .transpose()?;
        let mut quar: Option<DatasetWriter> = None;
        let mut part = 0usize;
        for f in files {
            let remote = match verdicts {
                Some(v) => Some(v.file_verdicts(f).await.map_err(|e| file_err(f)(&format!("gate verdicts: {e}")))?),
                None => None,
            };
            let mut decided = 0usize;
            let mut pend_a: Vec<RecordBatch> = Vec::new();
            let mut pend_q: Vec<RecordBatch> = Vec::new();
            let mut flush = |a: &mut Vec<RecordBatch>, q: &mut Vec<RecordBatch>, quar: &mut Option<DatasetWriter>| {
                if let Some(w) = &clin
                    && !a.is_empty()
                {
                    w.write_part(&format!("part-{part:05}"), a)?;
                }
                if !q.is_empty() && !s.dry_run {
                    if quar.is_none() {
                        *quar = Some(seal(
                            DatasetWriter::create(
                                &stage.join("quarantine").join(table),
                                table,
                                q[0].schema(),
                                FileFormat::Csv,
                            )?,
                            &s.sealer,
                        ));
                    }
                    quar.as_ref().expect("created").write_part(&format!("part-{part:05}"), q)?;
                }
                part += 1;
                a.clear();
                q.clear();
                Ok::<(), IntakeError>(())
            };
            for b in read_parquet(f)? {
                let b = b.map_err(|e| file_err(f)(&e))?;
                if b.schema() != schema {
                    return Err(file_err(f)(&format!("its schema differs from {}", files[0].display())));
                }
                let split = match &remote {
                    Some(codes) => {
                        let c = codes.get(decided..decided + b.num_rows()).unwrap_or_default();
                        decided += b.num_rows();
                        Gate::split_by(&b, arrow::array::UInt8Array::from(c.to_vec()))
                    }
                    None => gate.split(&b),
                }
                .map_err(|e| file_err(f)(&e))?;
                tc.rows_in += b.num_rows() as u64;
                tc.admitted += split.admitted.num_rows() as u64;
                tc.excluded += split.excluded.num_rows() as u64;
                if let Some(ids) = patient_ids(&split.admitted) {
                    for i in 0..ids.len() {
                        if !admitted_persons.contains(ids.value(i)) {
                            admitted_persons.insert(ids.value(i).to_owned());
                        }
                    }
                }
                let ids = patient_ids(&split.excluded);
                for (i, &c) in split.codes.values().iter().enumerate() {
                    let v = Verdict::ALL[c as usize];
                    *by_reason.entry(v.as_str().to_owned()).or_default() += 1;
                    let id = ids.filter(|a| !a.is_null(i)).map(|a| a.value(i)).unwrap_or("");
                    excluded_persons.insert((id.to_owned(), v.as_str()));
                }
                if split.excluded.num_rows() > 0 {
                    any_quarantine = true;
                    pend_q.push(quarantine_batch(&split.excluded, &split.codes).map_err(|e| file_err(f)(&e))?);
                }
                if let Some(router) = routing
                    && split.admitted.num_rows() > 0
                {
                    let r = route_rows(router, &s.provider_id, table, &split.admitted, &out_schema)
                        .map_err(|e| file_err(f)(&format!("identity vault: {e}")))?;
                    tc.admitted -= r.rejected;
                    tc.excluded += r.rejected;
                    if r.rejected > 0 {
                        *by_reason.entry(r.reason.to_owned()).or_default() += r.rejected;
                    }
                    if let Some(q) = r.quarantine {
                        any_quarantine = true;
                        if let Some(qids) = patient_ids(&q) {
                            for i in 0..qids.len() {
                                excluded_persons.insert((qids.value(i).to_owned(), r.reason));
                            }
                        }
                        pend_q.push(q);
                    }
                    if let Some(c) = r.clinical.filter(|c| c.num_rows() > 0) {
                        pend_a.push(c);
                    }
                } else if split.admitted.num_rows() > 0 && !is_identity_table(table) {
                    pend_a.push(split.admitted);
                }
                if pend_a.len() + pend_q.len() >= 16 {
                    flush(&mut pend_a, &mut pend_q, &mut quar)?;
                }
            }
            flush(&mut pend_a, &mut pend_q, &mut quar)?;
            if let Some(codes) = &remote
                && codes.len() != decided
            {
                return Err(file_err(f)(&format!("{} verdicts for {decided} rows (rule: one per row)", codes.len())));
            }
        }
        let prov = serde_json::json!({"batch_id": batch, "provider_id": s.provider_id,
            "provision_date": s.provision_date, "input_sha256": digest, "gate": "C3"});
        if let Some(w) = clin {
            w.commit(prov.clone())?;
        }
        if let Some(w) = quar {
            w.commit(prov)?;
        }
        counts.push(tc);
    }
    let mut h = Sha256::new();
    for (id, reason) in &excluded_persons {
        h.update(format!("{id}\t{reason}\n").as_bytes());
    }
    let rows_in = counts.iter().map(|c| c.rows_in).sum();
    let admitted = counts.iter().map(|c| c.admitted).sum();
    let report = GateReport {
        batch_id: batch.clone(),
        provider_id: s.provider_id.clone(),
        provision_date: s.provision_date,
        waiting_days: waiting,
        input_sha256: digest.clone(),
        registry_version: version.clone(),
        registry_persons: gate.persons() as u64,
        rows_in,
        admitted,
        excluded: counts.iter().map(|c| c.excluded).sum(),
        excluded_by_reason: by_reason,
        admitted_persons: admitted_persons.len() as u64,
        excluded_persons: excluded_persons.iter().map(|(id, _)| id).collect::<BTreeSet<_>>().len() as u64,
        excluded_persons_sha256: hex::encode(h.finalize()),
        tables: counts,
    };
    debug_assert_eq!(report.rows_in, report.admitted + report.excluded);
    if s.dry_run {
        return Ok(Outcome { report, receipt: None, clinical: None, quarantine: None });
    }
    // Commit: files by rename, then the records in one transaction; undo the renames if SQL fails.
    let clinical = data_dir.join("clinical").join(&batch);
    let quarantine = data_dir.join("quarantine").join(&batch);
    for (from, to) in [(stage.join("clinical"), &clinical), (stage.join("quarantine"), &quarantine)] {
        if from.exists() {
            if let Some(p) = to.parent() {
                fs::create_dir_all(p).map_err(|e| file_err(p)(&e))?;
            }
            if to.exists() {
                return Err(file_err(to)(&"already exists: a batch with this id was committed before"));
            }
            fs::rename(&from, to).map_err(|e| file_err(to)(&e))?;
        }
    }
    let _ = fs::remove_dir_all(&stage);
    let new = NewReceipt {
        batch_id: batch.clone(),
        provider_id: s.provider_id.clone(),
        input_sha256: digest,
        provision_date: s.provision_date,
        standing,
        persons: admitted_persons.into_iter().collect(),
        items: serde_json::Value::Array(items),
        gate_report: serde_json::to_value(&report).expect("report serializes"),
        registry_version: version,
        bulk: s.bulk,
    };
    match reg.record_receipt(&new, &s.creator_name, &s.creator_address).await {
        Ok(receipt) => Ok(Outcome {
            report,
            receipt: Some(receipt),
            clinical: Some(clinical),
            quarantine: any_quarantine.then_some(quarantine),
        }),
        Err(e) => {
            let _ = fs::remove_dir_all(&clinical);
            let _ = fs::remove_dir_all(&quarantine);
            Err(e.into())
        }
    }
}

/// What a deletion did.
#[derive(Debug, Clone, Serialize)]
pub struct Deletion {
    /// The deletion record.
    pub record: crate::records::DeletionRecord,
    /// Rows removed from the clinical store, by `batch/table`.
    pub removed: BTreeMap<String, u64>,
    /// Excluded rows of the person removed from quarantine, by `batch/table`.
    pub quarantined: BTreeMap<String, u64>,
}

/// The identity-vault side of a deletion: `kiban-identity` owns the vault, so the binary passes a
/// hook that deletes the person's identity there and says what it did.
pub trait VaultDeletion: Sync {
    /// The person keys the provider's patient id links to in the clinical store (asked before the
    /// identity is deleted, so the clinical rows can still be found).
    fn person_keys(&self, _provider_id: &str, _patient_id: &str) -> Result<Vec<String>, String> {
        Ok(vec![])
    }
    /// Deletes the person's identity records; returns a status line for the deletion record.
    fn delete_identity(&self, provider_id: &str, patient_id: &str) -> Result<String, String>;
}

/// No vault wired yet: the deletion record says so, and the operator must finish it in the vault.
pub struct NoVault;

impl VaultDeletion for NoVault {
    fn delete_identity(&self, _: &str, _: &str) -> Result<String, String> {
        Ok("pending: identity vault deletion is not wired in this build (kiban-identity); delete there".into())
    }
}

/// Deletes a person's records from the clinical store (P7, C5): every dataset of every batch that
/// contained them is rewritten without them and swapped in by rename; the deletion record names the
/// batches and the rows.
#[allow(clippy::too_many_arguments)] // each is a distinct statutory item or store; a struct would only rename them
pub async fn delete_person(
    reg: &Registry,
    data_dir: &Path,
    provider_id: &str,
    patient_id: &str,
    requested_on: NaiveDate,
    reason: &str,
    vault: &dyn VaultDeletion,
    sealer: Option<Arc<dyn Sealer>>,
) -> Result<Deletion, IntakeError> {
    let batches = reg.batches_with_person(provider_id, patient_id).await?;
    let keys = vault.person_keys(provider_id, patient_id).map_err(|e| IntakeError::File {
        path: data_dir.join("identity"),
        message: format!("the identity vault cannot say which person key to delete: {e}"),
    })?;
    let mut removed = BTreeMap::new();
    for b in &batches {
        let who = Who { provider_id, patient_id, keys: &keys };
        strip_person(&data_dir.join("clinical").join(b), b, &who, &sealer, &mut removed)?;
    }
    // Excluded records of the person sit in the quarantine of any of the provider's batches
    // (the receipt lists admitted persons only), so every one is searched.
    let mut quarantined = BTreeMap::new();
    for b in reg.batches_of(provider_id).await? {
        let who = Who { provider_id, patient_id, keys: &[] };
        strip_person(&data_dir.join("quarantine").join(&b), &b, &who, &sealer, &mut quarantined)?;
    }
    let vault_status = match vault.delete_identity(provider_id, patient_id) {
        Ok(s) => s,
        Err(e) => format!("failed: {e}"),
    };
    let items = serde_json::json!({
        "clinical_rows_removed": removed, "quarantine_rows_removed": quarantined, "statutory_records_kept": "receipt and provision records keep the patient id until their retention ends"
    });
    let record =
        reg.record_deletion(provider_id, patient_id, requested_on, reason, items, batches, &vault_status).await?;
    Ok(Deletion { record, removed, quarantined })
}

/// Rewrites every dataset under `dir` (one batch's tables) without the patient's rows, swapping
/// each in by rename; records the rows removed per `batch/table`.
/// Whose rows a deletion removes: the provider's patient id (quarantine, stores without a vault) or
/// the person keys it links to (the clinical store), in either case only rows the provider sent.
struct Who<'a> {
    provider_id: &'a str,
    patient_id: &'a str,
    keys: &'a [String],
}

fn strip_person(
    dir: &Path,
    batch: &str,
    who: &Who<'_>,
    sealer: &Option<Arc<dyn Sealer>>,
    removed: &mut BTreeMap<String, u64>,
) -> Result<(), IntakeError> {
    let Ok(entries) = fs::read_dir(dir) else { return Ok(()) };
    let mut tables: Vec<PathBuf> =
        entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.join("manifest.json").exists()).collect();
    tables.sort();
    for t in tables {
        // Each part is checked against the manifest as it is read; hashing them all first reads them twice.
        let manifest = kiban_formats::read_manifest(&t)?;
        let name = manifest.name.clone();
        let rewrite = t.with_file_name(format!(".{name}.rewrite"));
        let mut w: Option<DatasetWriter> = None;
        let mut n_removed = 0u64;
        for (i, f) in manifest.files.iter().enumerate() {
            let path = t.join(&f.path);
            let mut kept = Vec::new();
            let batches = kiban_formats::read_part(&t, &manifest, f, sealer.as_deref())?;
            for batch in batches {
                let text = |n: &str| batch.column_by_name(n).and_then(|c| c.as_any().downcast_ref::<StringArray>());
                let (ids, wanted): (&StringArray, &dyn Fn(&str) -> bool) =
                    match (patient_ids(&batch), text(PERSON_KEY_COLUMN)) {
                        (Some(ids), _) => (ids, &|v: &str| v == who.patient_id),
                        (None, Some(keys)) => (keys, &|v: &str| who.keys.iter().any(|k| k == v)),
                        (None, None) => continue,
                    };
                // Patient ids are the provider's, and a person key spans providers: only this
                // provider's rows go.
                let provs = text("provider_id");
                let theirs = |i: usize| {
                    !ids.is_null(i)
                        && wanted(ids.value(i))
                        && provs.is_none_or(|p| !p.is_null(i) && p.value(i) == who.provider_id)
                };
                let keep: arrow::array::BooleanArray = (0..ids.len()).map(|i| Some(!theirs(i))).collect();
                let k = arrow::compute::filter_record_batch(&batch, &keep).map_err(|e| file_err(&path)(&e))?;
                n_removed += (batch.num_rows() - k.num_rows()) as u64;
                kept.push(k);
            }
            if w.is_none()
                && let Some(schema) = kept.first().map(|b| b.schema())
            {
                let sealing = if manifest.sealed { sealer.clone() } else { None };
                w = Some(seal(DatasetWriter::create(&rewrite, &name, schema, manifest.format)?, &sealing));
            }
            if let Some(w) = &w {
                w.write_part(&format!("part-{i:05}"), &kept)?;
            }
        }
        let Some(w) = w else { continue };
        if n_removed == 0 {
            // Nothing of the person here: discard the rewrite.
            let staging = rewrite.with_extension("staging");
            drop(w);
            let _ = fs::remove_dir_all(staging);
            continue;
        }
        w.commit(manifest.provenance.clone())?;
        let old = t.with_file_name(format!(".{name}.deleted"));
        fs::rename(&t, &old).map_err(|e| file_err(&t)(&e))?;
        fs::rename(&rewrite, &t).map_err(|e| file_err(&t)(&e))?;
        fs::remove_dir_all(&old).map_err(|e| file_err(&old)(&e))?;
        removed.insert(format!("{batch}/{name}"), n_removed);
    }
    Ok(())
}
