//! The canonical tables every reader produces and every writer consumes.
//!
//! Identity (the `patients` table: names, birth date, address, phone, insurer card) is kept apart
//! from clinical rows (encounters, diagnoses, prescriptions, labs, texts), which carry only the
//! provider's patient id: the caller routes the first to the identity vault and the rest to the
//! clinical store. Column names and Arrow types are those of [`kiban_model::synth::SynthTable`], so
//! synthetic data and read data are the same shape; a field a format does not carry is `""`.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, BooleanBuilder, Date32Array, Date32Builder, Float64Array, Float64Builder,
    StringArray, StringBuilder, UInt64Array, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use chrono::{Datelike, NaiveDate};
use kiban_model::synth::SynthTable;
use serde::Serialize;

/// A canonical table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    /// Identity: one row per provider patient (goes to the identity vault, never the clinical store).
    Patients,
    /// Encounters (外来・入院).
    Encounters,
    /// Diagnoses.
    Diagnoses,
    /// Prescriptions.
    Prescriptions,
    /// Numeric lab results.
    Labs,
    /// Free-text observations and reports (OBX-5 TX/FT, FHIR valueString).
    Texts,
}

impl Table {
    /// All tables.
    pub const ALL: [Table; 6] =
        [Table::Patients, Table::Encounters, Table::Diagnoses, Table::Prescriptions, Table::Labs, Table::Texts];
    /// File-system name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Patients => "patients",
            Table::Encounters => "encounters",
            Table::Diagnoses => "diagnoses",
            Table::Prescriptions => "prescriptions",
            Table::Labs => "labs",
            Table::Texts => "texts",
        }
    }
    /// True for the identity table (routed to the identity vault).
    pub fn is_identity(self) -> bool {
        self == Table::Patients
    }
    /// Arrow schema (the synthetic population's for the tables it has).
    pub fn schema(self) -> SchemaRef {
        match self {
            Table::Patients => SynthTable::Patients.schema(),
            Table::Encounters => SynthTable::Encounters.schema(),
            Table::Diagnoses => SynthTable::Diagnoses.schema(),
            Table::Prescriptions => SynthTable::Prescriptions.schema(),
            Table::Labs => SynthTable::Labs.schema(),
            Table::Texts => {
                let s = |n: &str| Field::new(n, DataType::Utf8, false);
                Arc::new(Schema::new(vec![
                    s("provider_id"),
                    s("patient_id"),
                    s("encounter_id"),
                    Field::new("observed_date", DataType::Date32, false),
                    s("code"),
                    s("name"),
                    s("text"),
                ]))
            }
        }
    }
    /// The canonical table a synthetic table maps to (none for the ground truth).
    pub fn from_synth(t: SynthTable) -> Option<Table> {
        match t {
            SynthTable::Truth => None,
            SynthTable::Patients => Some(Table::Patients),
            SynthTable::Encounters => Some(Table::Encounters),
            SynthTable::Diagnoses => Some(Table::Diagnoses),
            SynthTable::Prescriptions => Some(Table::Prescriptions),
            SynthTable::Labs => Some(Table::Labs),
        }
    }
}

/// A provider's identity record of a patient.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Patient {
    /// Provider id.
    pub provider_id: String,
    /// The provider's patient id.
    pub patient_id: String,
    /// Kanji name as written.
    pub name_kanji: String,
    /// Kana name as written.
    pub name_kana: String,
    /// Sex, ISO 5218 digit (`1`, `2`, `0`).
    pub sex: String,
    /// Birth date as written (ISO `YYYY-MM-DD` unless the source wrote 和暦).
    pub birth_date: String,
    /// Postal code.
    pub postal_code: String,
    /// Address line.
    pub address: String,
    /// Phone.
    pub phone: String,
    /// Insurer number (保険者番号).
    pub insurer_number: String,
    /// Card symbol (記号).
    pub card_symbol: String,
    /// Card number (番号).
    pub card_number: String,
    /// Branch (枝番).
    pub card_branch: String,
}

/// An encounter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Encounter {
    /// Provider id.
    pub provider_id: String,
    /// Patient id.
    pub patient_id: String,
    /// Encounter id.
    pub encounter_id: String,
    /// `外来` or `入院`.
    pub encounter_type: String,
    /// Department name.
    pub department: String,
    /// Admission (or visit) date.
    pub admission_date: NaiveDate,
    /// Discharge date.
    pub discharge_date: Option<NaiveDate>,
}

/// A diagnosis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnosis {
    /// Provider id.
    pub provider_id: String,
    /// Patient id.
    pub patient_id: String,
    /// Encounter id.
    pub encounter_id: String,
    /// Date of diagnosis.
    pub diagnosis_date: NaiveDate,
    /// ICD-10 code (`""` when the source has only a local code with no master to map it).
    pub icd10: String,
    /// Name.
    pub diagnosis_name: String,
    /// Main diagnosis (主病名).
    pub main: bool,
}

/// A prescription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Prescription {
    /// Provider id.
    pub provider_id: String,
    /// Patient id.
    pub patient_id: String,
    /// Encounter id.
    pub encounter_id: String,
    /// Date prescribed.
    pub prescribed_date: NaiveDate,
    /// Drug code (YJ-shaped).
    pub drug_code: String,
    /// Drug name.
    pub drug_name: String,
    /// `oral`, `external`, `injection`.
    pub route: String,
    /// Days supplied.
    pub days: u64,
}

/// A numeric lab result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lab {
    /// Provider id.
    pub provider_id: String,
    /// Patient id.
    pub patient_id: String,
    /// Encounter id.
    pub encounter_id: String,
    /// Result date.
    pub result_date: NaiveDate,
    /// Test code (JLAC10-shaped).
    pub test_code: String,
    /// Test name.
    pub test_name: String,
    /// Value.
    pub value: f64,
    /// Unit.
    pub unit: String,
}

/// A free-text observation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Text {
    /// Provider id.
    pub provider_id: String,
    /// Patient id.
    pub patient_id: String,
    /// Encounter id.
    pub encounter_id: String,
    /// Date observed.
    pub observed_date: NaiveDate,
    /// Observation code.
    pub code: String,
    /// Observation name.
    pub name: String,
    /// The text.
    pub text: String,
}

/// One canonical record.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "table", rename_all = "snake_case")]
pub enum Record {
    /// Identity.
    Patient(Patient),
    /// Encounter.
    Encounter(Encounter),
    /// Diagnosis.
    Diagnosis(Diagnosis),
    /// Prescription.
    Prescription(Prescription),
    /// Lab result.
    Lab(Lab),
    /// Free text.
    Text(Text),
}

impl Record {
    /// The table it belongs to.
    pub fn table(&self) -> Table {
        match self {
            Record::Patient(_) => Table::Patients,
            Record::Encounter(_) => Table::Encounters,
            Record::Diagnosis(_) => Table::Diagnoses,
            Record::Prescription(_) => Table::Prescriptions,
            Record::Lab(_) => Table::Labs,
            Record::Text(_) => Table::Texts,
        }
    }
    /// The provider's patient id.
    pub fn patient_id(&self) -> &str {
        match self {
            Record::Patient(r) => &r.patient_id,
            Record::Encounter(r) => &r.patient_id,
            Record::Diagnosis(r) => &r.patient_id,
            Record::Prescription(r) => &r.patient_id,
            Record::Lab(r) => &r.patient_id,
            Record::Text(r) => &r.patient_id,
        }
    }
}

/// Raw text kept in a quarantine entry is cut at this many bytes, so one huge bad record cannot
/// blow up the quarantine (its location still finds it in the file).
pub const RAW_LIMIT: usize = 4096;

/// A record a reader could not parse: where it is, which field, and why. Never dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Quarantined {
    /// The file.
    pub file: String,
    /// Where in the file: `line 12`, `message 3 segment PID`, `entry 4 (Patient)` …
    pub location: String,
    /// The field (`PID-7`, `RE.7 生年月日`, `Patient.birthDate`, or `record` for the whole record).
    pub field: String,
    /// What is wrong.
    pub problem: String,
    /// The raw record (cut at [`RAW_LIMIT`] bytes).
    pub raw: String,
}

impl Quarantined {
    /// Builds an entry, cutting the raw text at a character boundary.
    pub fn new(
        file: impl Into<String>,
        location: impl Into<String>,
        field: impl Into<String>,
        problem: impl Into<String>,
        raw: &str,
    ) -> Self {
        let mut end = raw.len().min(RAW_LIMIT);
        while !raw.is_char_boundary(end) {
            end -= 1;
        }
        Quarantined {
            file: file.into(),
            location: location.into(),
            field: field.into(),
            problem: problem.into(),
            raw: raw[..end].to_owned(),
        }
    }
}

impl std::fmt::Display for Quarantined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}: {}", self.file, self.location, self.field, self.problem)
    }
}

/// Where a reader puts what it reads: good records and quarantined ones, as they come (streaming).
pub trait Sink {
    /// A parsed record.
    fn record(&mut self, r: Record);
    /// A record that could not be parsed.
    fn quarantine(&mut self, q: Quarantined);
}

/// A sink that keeps everything in memory (tests, small files).
#[derive(Debug, Default)]
pub struct Collected {
    /// Records in reading order.
    pub records: Vec<Record>,
    /// Quarantined records in reading order.
    pub quarantined: Vec<Quarantined>,
}

impl Sink for Collected {
    fn record(&mut self, r: Record) {
        self.records.push(r);
    }
    fn quarantine(&mut self, q: Quarantined) {
        self.quarantined.push(q);
    }
}

impl Collected {
    /// Records of one table.
    pub fn of(&self, t: Table) -> impl Iterator<Item = &Record> {
        self.records.iter().filter(move |r| r.table() == t)
    }
}

/// A sink that counts only (benchmarks, fuzzing).
#[derive(Debug, Default, Clone, Copy)]
pub struct Counted {
    /// Records.
    pub records: u64,
    /// Quarantined.
    pub quarantined: u64,
}

impl Sink for Counted {
    fn record(&mut self, _: Record) {
        self.records += 1;
    }
    fn quarantine(&mut self, _: Quarantined) {
        self.quarantined += 1;
    }
}

fn days(d: NaiveDate) -> i32 {
    d.num_days_from_ce() - 719_163
}

fn date(v: i32) -> NaiveDate {
    NaiveDate::from_num_days_from_ce_opt(v + 719_163).unwrap_or_default()
}

/// Builds Arrow batches of one table from records.
pub struct TableBuilder {
    table: Table,
    s: Vec<StringBuilder>,
    d: Vec<Date32Builder>,
    u: UInt64Builder,
    f: Float64Builder,
    b: BooleanBuilder,
    rows: usize,
}

impl TableBuilder {
    /// An empty builder for `table`.
    pub fn new(table: Table) -> Self {
        let n = table.schema().fields().iter().filter(|f| f.data_type() == &DataType::Utf8).count();
        TableBuilder {
            table,
            s: (0..n).map(|_| StringBuilder::new()).collect(),
            d: (0..2).map(|_| Date32Builder::new()).collect(),
            u: UInt64Builder::new(),
            f: Float64Builder::new(),
            b: BooleanBuilder::new(),
            rows: 0,
        }
    }
    /// Rows buffered.
    pub fn len(&self) -> usize {
        self.rows
    }
    /// No rows buffered.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }
    fn strs(&mut self, v: &[&str]) {
        for (b, s) in self.s.iter_mut().zip(v) {
            b.append_value(s);
        }
    }
    /// Appends a record (it must belong to this table).
    pub fn push(&mut self, r: &Record) {
        debug_assert_eq!(r.table(), self.table);
        self.rows += 1;
        match r {
            Record::Patient(p) => self.strs(&[
                &p.provider_id,
                &p.patient_id,
                &p.name_kanji,
                &p.name_kana,
                &p.sex,
                &p.birth_date,
                &p.postal_code,
                &p.address,
                &p.phone,
                &p.insurer_number,
                &p.card_symbol,
                &p.card_number,
                &p.card_branch,
            ]),
            Record::Encounter(e) => {
                self.strs(&[&e.provider_id, &e.patient_id, &e.encounter_id, &e.encounter_type, &e.department]);
                self.d[0].append_value(days(e.admission_date));
                self.d[1].append_option(e.discharge_date.map(days));
            }
            Record::Diagnosis(x) => {
                self.strs(&[&x.provider_id, &x.patient_id, &x.encounter_id, &x.icd10, &x.diagnosis_name]);
                self.d[0].append_value(days(x.diagnosis_date));
                self.b.append_value(x.main);
            }
            Record::Prescription(x) => {
                self.strs(&[&x.provider_id, &x.patient_id, &x.encounter_id, &x.drug_code, &x.drug_name, &x.route]);
                self.d[0].append_value(days(x.prescribed_date));
                self.u.append_value(x.days);
            }
            Record::Lab(x) => {
                self.strs(&[&x.provider_id, &x.patient_id, &x.encounter_id, &x.test_code, &x.test_name, &x.unit]);
                self.d[0].append_value(days(x.result_date));
                self.f.append_value(x.value);
            }
            Record::Text(x) => {
                self.strs(&[&x.provider_id, &x.patient_id, &x.encounter_id, &x.code, &x.name, &x.text]);
                self.d[0].append_value(days(x.observed_date));
            }
        }
    }
    /// Takes the buffered rows as one batch.
    pub fn finish(&mut self) -> RecordBatch {
        let schema = self.table.schema();
        let (mut si, mut di) = (0, 0);
        let cols: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| -> ArrayRef {
                match f.data_type() {
                    DataType::Utf8 => {
                        si += 1;
                        Arc::new(self.s[si - 1].finish())
                    }
                    DataType::Date32 => {
                        di += 1;
                        Arc::new(self.d[di - 1].finish())
                    }
                    DataType::UInt64 => Arc::new(self.u.finish()),
                    DataType::Float64 => Arc::new(self.f.finish()),
                    _ => Arc::new(self.b.finish()),
                }
            })
            .collect();
        self.rows = 0;
        RecordBatch::try_new(schema, cols).expect("builders follow the schema")
    }
}

/// Reads canonical records back out of a batch of `table` (written by [`TableBuilder`] or by
/// `kiban synth`). Columns are found by name, so extra columns are ignored.
pub fn records_from_batch(table: Table, batch: &RecordBatch) -> Vec<Record> {
    let s = |n: &str| batch.column_by_name(n).and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned());
    let sv = |a: &Option<StringArray>, i: usize| {
        a.as_ref().filter(|a| !a.is_null(i)).map(|a| a.value(i).to_owned()).unwrap_or_default()
    };
    let d = |n: &str| batch.column_by_name(n).and_then(|c| c.as_any().downcast_ref::<Date32Array>().cloned());
    let dv = |a: &Option<Date32Array>, i: usize| a.as_ref().filter(|a| !a.is_null(i)).map(|a| date(a.value(i)));
    let (pv, pa) = (s("provider_id"), s("patient_id"));
    let mut out = Vec::with_capacity(batch.num_rows());
    match table {
        Table::Patients => {
            let names = [
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
            ];
            let c: Vec<Option<StringArray>> = names.iter().map(|n| s(n)).collect();
            for i in 0..batch.num_rows() {
                let v = |k: usize| sv(&c[k], i);
                out.push(Record::Patient(Patient {
                    provider_id: sv(&pv, i),
                    patient_id: sv(&pa, i),
                    name_kanji: v(0),
                    name_kana: v(1),
                    sex: v(2),
                    birth_date: v(3),
                    postal_code: v(4),
                    address: v(5),
                    phone: v(6),
                    insurer_number: v(7),
                    card_symbol: v(8),
                    card_number: v(9),
                    card_branch: v(10),
                }));
            }
        }
        Table::Encounters => {
            let (e, t, dep, a, dis) =
                (s("encounter_id"), s("encounter_type"), s("department"), d("admission_date"), d("discharge_date"));
            for i in 0..batch.num_rows() {
                out.push(Record::Encounter(Encounter {
                    provider_id: sv(&pv, i),
                    patient_id: sv(&pa, i),
                    encounter_id: sv(&e, i),
                    encounter_type: sv(&t, i),
                    department: sv(&dep, i),
                    admission_date: dv(&a, i).unwrap_or_default(),
                    discharge_date: dv(&dis, i),
                }));
            }
        }
        Table::Diagnoses => {
            let (e, dt, code, name) = (s("encounter_id"), d("diagnosis_date"), s("icd10"), s("diagnosis_name"));
            let main = batch.column_by_name("main").and_then(|c| c.as_any().downcast_ref::<BooleanArray>().cloned());
            for i in 0..batch.num_rows() {
                out.push(Record::Diagnosis(Diagnosis {
                    provider_id: sv(&pv, i),
                    patient_id: sv(&pa, i),
                    encounter_id: sv(&e, i),
                    diagnosis_date: dv(&dt, i).unwrap_or_default(),
                    icd10: sv(&code, i),
                    diagnosis_name: sv(&name, i),
                    main: main.as_ref().is_some_and(|m| !m.is_null(i) && m.value(i)),
                }));
            }
        }
        Table::Prescriptions => {
            let (e, dt, code, name, route) =
                (s("encounter_id"), d("prescribed_date"), s("drug_code"), s("drug_name"), s("route"));
            let n = batch.column_by_name("days").and_then(|c| c.as_any().downcast_ref::<UInt64Array>().cloned());
            for i in 0..batch.num_rows() {
                out.push(Record::Prescription(Prescription {
                    provider_id: sv(&pv, i),
                    patient_id: sv(&pa, i),
                    encounter_id: sv(&e, i),
                    prescribed_date: dv(&dt, i).unwrap_or_default(),
                    drug_code: sv(&code, i),
                    drug_name: sv(&name, i),
                    route: sv(&route, i),
                    days: n.as_ref().map_or(0, |n| n.value(i)),
                }));
            }
        }
        Table::Labs => {
            let (e, dt, code, name, unit) =
                (s("encounter_id"), d("result_date"), s("test_code"), s("test_name"), s("unit"));
            let v = batch.column_by_name("value").and_then(|c| c.as_any().downcast_ref::<Float64Array>().cloned());
            for i in 0..batch.num_rows() {
                out.push(Record::Lab(Lab {
                    provider_id: sv(&pv, i),
                    patient_id: sv(&pa, i),
                    encounter_id: sv(&e, i),
                    result_date: dv(&dt, i).unwrap_or_default(),
                    test_code: sv(&code, i),
                    test_name: sv(&name, i),
                    value: v.as_ref().map_or(f64::NAN, |v| v.value(i)),
                    unit: sv(&unit, i),
                }));
            }
        }
        Table::Texts => {
            let (e, dt, code, name, text) = (s("encounter_id"), d("observed_date"), s("code"), s("name"), s("text"));
            for i in 0..batch.num_rows() {
                out.push(Record::Text(Text {
                    provider_id: sv(&pv, i),
                    patient_id: sv(&pa, i),
                    encounter_id: sv(&e, i),
                    observed_date: dv(&dt, i).unwrap_or_default(),
                    code: sv(&code, i),
                    name: sv(&name, i),
                    text: sv(&text, i),
                }));
            }
        }
    }
    out
}

/// All canonical records of a synthetic chunk (ground truth left out), in table order.
pub fn records_from_synth(chunk: &kiban_model::synth::SynthChunk) -> Vec<Record> {
    chunk
        .batches
        .iter()
        .filter_map(|(t, b)| Table::from_synth(*t).map(|t| records_from_batch(t, b)))
        .flatten()
        .collect()
}

/// Records grouped by patient, in first-seen order: what the per-patient writers (SS-MIX2, FHIR,
/// UKE) consume.
pub fn by_patient(records: &[Record]) -> Vec<(String, String, Vec<&Record>)> {
    let mut index: std::collections::HashMap<(&str, &str), usize> = Default::default();
    let mut out: Vec<(String, String, Vec<&Record>)> = Vec::new();
    for r in records {
        let prov = match r {
            Record::Patient(x) => &x.provider_id,
            Record::Encounter(x) => &x.provider_id,
            Record::Diagnosis(x) => &x.provider_id,
            Record::Prescription(x) => &x.provider_id,
            Record::Lab(x) => &x.provider_id,
            Record::Text(x) => &x.provider_id,
        };
        let k = *index.entry((prov.as_str(), r.patient_id())).or_insert_with(|| {
            out.push((prov.clone(), r.patient_id().to_owned(), Vec::new()));
            out.len() - 1
        });
        out[k].2.push(r);
    }
    out
}

/// A sink that turns records into Arrow batches of at most `batch_rows` rows per table and hands
/// each full batch to `flush` (bounded memory whatever the input size), quarantined entries to `q`.
pub struct BatchSink<F: FnMut(Table, RecordBatch), Q: FnMut(Quarantined)> {
    builders: Vec<TableBuilder>,
    batch_rows: usize,
    flush: F,
    q: Q,
}

impl<F: FnMut(Table, RecordBatch), Q: FnMut(Quarantined)> BatchSink<F, Q> {
    /// A sink flushing every `batch_rows` rows.
    pub fn new(batch_rows: usize, flush: F, q: Q) -> Self {
        BatchSink { builders: Table::ALL.iter().map(|&t| TableBuilder::new(t)).collect(), batch_rows, flush, q }
    }
    /// Flushes what is left.
    pub fn finish(mut self) {
        for (i, b) in self.builders.iter_mut().enumerate() {
            if !b.is_empty() {
                (self.flush)(Table::ALL[i], b.finish());
            }
        }
    }
}

impl<F: FnMut(Table, RecordBatch), Q: FnMut(Quarantined)> Sink for BatchSink<F, Q> {
    fn record(&mut self, r: Record) {
        let i = Table::ALL.iter().position(|&t| t == r.table()).expect("every table listed");
        let b = &mut self.builders[i];
        b.push(&r);
        if b.len() >= self.batch_rows {
            (self.flush)(Table::ALL[i], b.finish());
        }
    }
    fn quarantine(&mut self, q: Quarantined) {
        (self.q)(q)
    }
}

/// Parses exactly eight digits `YYYYMMDD` (chrono alone would take `2024011` as a date).
pub fn yyyymmdd(s: &str) -> Option<NaiveDate> {
    let d = s.get(..8)?;
    if !d.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    NaiveDate::parse_from_str(d, "%Y%m%d").ok()
}
