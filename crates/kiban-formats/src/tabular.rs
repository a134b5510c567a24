//! CSV and Parquet files of any layout, read through a schema file that maps their columns onto
//! one canonical table — for whatever a provider exports that has no standard format.
//!
//! Schema file (TOML):
//! ```toml
//! table = "labs"              # patients, encounters, diagnoses, prescriptions, labs, texts,
//!                             # procedures, materials, public_expenses, public_expense_ids, receipts
//! encoding = "shift_jis"      # or "utf-8" (default); CSV only
//! delimiter = ","             # CSV only
//! provider_id = "prov-a"      # when the file has no provider column
//! date_format = "%Y/%m/%d"    # default %Y-%m-%d; 和暦 (R05.04.01, 令和5年4月1日) is always accepted
//! [columns]                   # canonical column = the file's column
//! patient_id = "患者ID"
//! result_date = "検査日"
//! ```
//! Unmapped canonical columns are empty; a row whose value does not parse is quarantined with its
//! line (CSV) or row (Parquet) and the file's column name.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use arrow::record_batch::RecordBatchReader;

use arrow::array::{Array, StringArray};
use arrow::datatypes::DataType;
use chrono::NaiveDate;
use serde::Deserialize;

use crate::canonical::{
    Diagnosis, Encounter, Lab, Material, Patient, Prescription, Procedure, PublicExpense, PublicExpenseId, Quarantined,
    Receipt, Record, Sink, Table, Text,
};
use crate::encoding::{decode_sjis, strip_bom};

/// A schema file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaFile {
    /// Canonical table name.
    pub table: String,
    /// `utf-8` or `shift_jis`.
    #[serde(default)]
    pub encoding: Option<String>,
    /// CSV delimiter.
    #[serde(default)]
    pub delimiter: Option<String>,
    /// Provider id for every row (when no column gives it).
    #[serde(default)]
    pub provider_id: Option<String>,
    /// Date format (chrono).
    #[serde(default)]
    pub date_format: Option<String>,
    /// Canonical column → file column.
    pub columns: HashMap<String, String>,
}

impl SchemaFile {
    /// Parses a schema file's text, checking the table and columns exist.
    pub fn parse(text: &str) -> Result<(SchemaFile, Table), String> {
        let s: SchemaFile = toml::from_str(text).map_err(|e| format!("schema file: {e}"))?;
        let table = Table::ALL
            .into_iter()
            .find(|t| t.name() == s.table)
            .ok_or_else(|| format!("schema file: table {:?} is not a canonical table", s.table))?;
        let schema = table.schema();
        for k in s.columns.keys() {
            if schema.field_with_name(k).is_err() {
                return Err(format!("schema file: {k:?} is not a column of {}", table.name()));
            }
        }
        if !s.columns.contains_key("patient_id") {
            return Err("schema file: patient_id must be mapped".into());
        }
        if s.provider_id.is_none() && !s.columns.contains_key("provider_id") {
            return Err("schema file: give provider_id, or map a provider_id column".into());
        }
        match s.encoding.as_deref() {
            None | Some("utf-8" | "shift_jis") => {}
            Some(e) => return Err(format!("schema file: encoding {e:?} is not utf-8 or shift_jis")),
        }
        Ok((s, table))
    }
}

/// `YYYY-MM-DD` without chrono's format interpreter (the common case, on the hot path).
fn iso_date(v: &str) -> Option<NaiveDate> {
    let b = v.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |a, &c| c.is_ascii_digit().then(|| a * 10 + (c - b'0') as u32))
    };
    NaiveDate::from_ymd_opt(n(0..4)? as i32, n(5..7)?, n(8..10)?)
}

fn date(v: &str, fmt: &str) -> Option<NaiveDate> {
    if let Some(d) = iso_date(v) {
        return Some(d);
    }
    NaiveDate::parse_from_str(v, fmt)
        .ok()
        .or_else(|| NaiveDate::parse_from_str(v, "%Y-%m-%d").ok())
        .or_else(|| kiban_model::wareki::WarekiDate::parse(v).ok().map(|w| w.date()))
}

/// Builds a record of `table` from canonical column values; the error names the column.
fn record<'r>(table: Table, v: &dyn Fn(&str) -> &'r str, fmt: &str) -> Result<Record<&'r str>, (String, String)> {
    let d = |k: &str| -> Result<NaiveDate, (String, String)> {
        let x = v(k);
        date(x, fmt).ok_or_else(|| (k.to_owned(), format!("{x:?} is not a date ({fmt} or 和暦)")))
    };
    let od = |k: &str| -> Result<Option<NaiveDate>, (String, String)> {
        if v(k).is_empty() { Ok(None) } else { d(k).map(Some) }
    };
    Ok(match table {
        Table::Patients => Record::Patient(Patient {
            provider_id: v("provider_id"),
            patient_id: v("patient_id"),
            name_kanji: v("name_kanji"),
            name_kana: v("name_kana"),
            sex: {
                let s = v("sex");
                if s.is_empty() {
                    s
                } else {
                    kiban_model::person::Sex::parse(s).map_err(|e| ("sex".to_owned(), e.to_string()))?.code()
                }
            },
            birth_date: v("birth_date"),
            postal_code: v("postal_code"),
            address: v("address"),
            phone: v("phone"),
            insurer_number: v("insurer_number"),
            card_symbol: v("card_symbol"),
            card_number: v("card_number"),
            card_branch: v("card_branch"),
        }),
        Table::Encounters => Record::Encounter(Encounter {
            provider_id: v("provider_id"),
            patient_id: v("patient_id"),
            encounter_id: v("encounter_id"),
            encounter_type: v("encounter_type"),
            department: v("department"),
            admission_date: d("admission_date")?,
            discharge_date: od("discharge_date")?,
        }),
        Table::Diagnoses => Record::Diagnosis(Diagnosis {
            provider_id: v("provider_id"),
            patient_id: v("patient_id"),
            encounter_id: v("encounter_id"),
            diagnosis_date: d("diagnosis_date")?,
            icd10: v("icd10"),
            diagnosis_name: v("diagnosis_name"),
            main: match v("main") {
                "主" => true,
                m if ["1", "true", "y", "yes"].iter().any(|y| m.eq_ignore_ascii_case(y)) => true,
                m if ["", "0", "false", "n", "no"].iter().any(|n| m.eq_ignore_ascii_case(n)) => false,
                other => return Err(("main".into(), format!("{other:?} is not a yes/no value"))),
            },
        }),
        Table::Prescriptions => Record::Prescription(Prescription {
            provider_id: v("provider_id"),
            patient_id: v("patient_id"),
            encounter_id: v("encounter_id"),
            prescribed_date: d("prescribed_date")?,
            drug_code: v("drug_code"),
            drug_name: v("drug_name"),
            route: v("route"),
            days: {
                let x = v("days");
                if x.is_empty() {
                    0
                } else {
                    x.parse().map_err(|_| ("days".to_owned(), format!("{x:?} is not a whole number")))?
                }
            },
        }),
        Table::Labs => Record::Lab(Lab {
            provider_id: v("provider_id"),
            patient_id: v("patient_id"),
            encounter_id: v("encounter_id"),
            result_date: d("result_date")?,
            test_code: v("test_code"),
            test_name: v("test_name"),
            value: {
                let x = v("value");
                match x.parse::<f64>() {
                    Ok(f) if f.is_finite() => f,
                    _ => return Err(("value".into(), format!("{x:?} is not a number"))),
                }
            },
            unit: v("unit"),
        }),
        Table::Texts => Record::Text(Text {
            provider_id: v("provider_id"),
            patient_id: v("patient_id"),
            encounter_id: v("encounter_id"),
            observed_date: d("observed_date")?,
            code: v("code"),
            name: v("name"),
            text: v("text"),
        }),
        Table::Procedures => Record::Procedure(Procedure {
            provider_id: v("provider_id"),
            patient_id: v("patient_id"),
            encounter_id: v("encounter_id"),
            procedure_date: d("procedure_date")?,
            day_known: yes_no(v, "day_known", true)?,
            source: v("source"),
            care_category: v("care_category"),
            burden_category: v("burden_category"),
            procedure_code: v("procedure_code"),
            procedure_name: v("procedure_name"),
            quantity: num(v, "quantity")?,
            points: int(v, "points")?,
            count: int(v, "count")?.map_or(Ok(1), |n| u64::try_from(n).map_err(|_| neg("count")))?,
        }),
        Table::Materials => Record::Material(Material {
            provider_id: v("provider_id"),
            patient_id: v("patient_id"),
            encounter_id: v("encounter_id"),
            used_date: d("used_date")?,
            day_known: yes_no(v, "day_known", true)?,
            source: v("source"),
            care_category: v("care_category"),
            burden_category: v("burden_category"),
            material_code: v("material_code"),
            material_name: v("material_name"),
            product_name: v("product_name"),
            quantity: num(v, "quantity")?,
            unit_code: v("unit_code"),
            unit_price: num(v, "unit_price")?,
            points: int(v, "points")?,
            count: int(v, "count")?.map_or(Ok(1), |n| u64::try_from(n).map_err(|_| neg("count")))?,
        }),
        Table::PublicExpenses => {
            let u = |k: &str| int(v, k)?.map(|n| u64::try_from(n).map_err(|_| neg(k))).transpose();
            Record::PublicExpense(PublicExpense {
                provider_id: v("provider_id"),
                patient_id: v("patient_id"),
                encounter_id: v("encounter_id"),
                service_month: d("service_month")?,
                rank: u("rank")?.unwrap_or(1),
                program_code: v("program_code"),
                prefecture_code: v("prefecture_code"),
                benefit_class: v("benefit_class"),
                days: u("days")?,
                points: int(v, "points")?,
                public_burden: int(v, "public_burden")?,
                outpatient_copay: int(v, "outpatient_copay")?,
                inpatient_copay: int(v, "inpatient_copay")?,
                times: u("times")?,
                amount: int(v, "amount")?,
            })
        }
        Table::Receipts => {
            let u = |k: &str| int(v, k)?.map(|n| u64::try_from(n).map_err(|_| neg(k))).transpose();
            Record::Receipt(Receipt {
                provider_id: v("provider_id"),
                patient_id: v("patient_id"),
                encounter_id: v("encounter_id"),
                receipt_number: v("receipt_number"),
                receipt_type: v("receipt_type"),
                service_month: d("service_month")?,
                benefit_ratio: v("benefit_ratio"),
                copay_class: v("copay_class"),
                special_notes: v("special_notes"),
                insurance_days: u("insurance_days")?,
                insurance_points: int(v, "insurance_points")?,
                meal_times: u("meal_times")?,
                meal_amount: int(v, "meal_amount")?,
                patient_copay: int(v, "patient_copay")?,
                dpc_code: v("dpc_code"),
                dpc_outcome: v("dpc_outcome"),
            })
        }
        Table::PublicExpenseIds => Record::PublicExpenseId(PublicExpenseId {
            provider_id: v("provider_id"),
            patient_id: v("patient_id"),
            payer_number: v("payer_number"),
            recipient_number: v("recipient_number"),
        }),
    })
}

fn neg(k: &str) -> (String, String) {
    (k.to_owned(), "must not be negative".to_owned())
}

/// An optional whole number (empty → `None`).
fn int<'r>(v: &dyn Fn(&str) -> &'r str, k: &str) -> Result<Option<i64>, (String, String)> {
    let x = v(k);
    if x.is_empty() {
        return Ok(None);
    }
    x.parse().map(Some).map_err(|_| (k.to_owned(), format!("{x:?} is not a whole number")))
}

/// An optional finite number (empty → `None`).
fn num<'r>(v: &dyn Fn(&str) -> &'r str, k: &str) -> Result<Option<f64>, (String, String)> {
    let x = v(k);
    if x.is_empty() {
        return Ok(None);
    }
    match x.parse::<f64>() {
        Ok(f) if f.is_finite() => Ok(Some(f)),
        _ => Err((k.to_owned(), format!("{x:?} is not a number"))),
    }
}

fn yes_no<'r>(v: &dyn Fn(&str) -> &'r str, k: &str, default: bool) -> Result<bool, (String, String)> {
    match v(k) {
        "" => Ok(default),
        x if ["1", "true", "y", "yes"].iter().any(|y| x.eq_ignore_ascii_case(y)) => Ok(true),
        x if ["0", "false", "n", "no"].iter().any(|n| x.eq_ignore_ascii_case(n)) => Ok(false),
        other => Err((k.to_owned(), format!("{other:?} is not a yes/no value"))),
    }
}

struct Mapper<'a> {
    schema: &'a SchemaFile,
    table: Table,
    fmt: String,
    /// canonical column → index in the file; a short list searched linearly (cheaper than
    /// hashing the name on every cell of the hot loop).
    index: Vec<(String, usize)>,
    /// Columns in the header.
    width: usize,
}

impl<'a> Mapper<'a> {
    fn new(schema: &'a SchemaFile, table: Table, header: &[String]) -> Result<Self, String> {
        let mut index = Vec::new();
        for (canon, col) in &schema.columns {
            let i = header
                .iter()
                .position(|h| h == col)
                .ok_or_else(|| format!("the file has no column {col:?} (mapped to {canon})"))?;
            index.push((canon.clone(), i));
        }
        Ok(Mapper {
            schema,
            table,
            fmt: schema.date_format.clone().unwrap_or_else(|| "%Y-%m-%d".into()),
            index,
            width: header.len(),
        })
    }
    fn map<'r>(&'r self, cell: impl Fn(usize) -> Option<&'r str>) -> Result<Record<&'r str>, (String, String)> {
        let v = |k: &str| -> &'r str {
            match self.index.iter().find(|(c, _)| c == k) {
                Some(&(_, i)) => cell(i).map(crate::uke::trim).unwrap_or_default(),
                None if k == "provider_id" => self.schema.provider_id.as_deref().unwrap_or_default(),
                None => "",
            }
        };
        let r = record(self.table, &v, &self.fmt)
            .map_err(|(k, e)| (self.schema.columns.get(&k).cloned().unwrap_or(k), e))?;
        if r.patient_id().is_empty() {
            return Err((self.schema.columns["patient_id"].clone(), "patient id is empty".into()));
        }
        Ok(r)
    }
}

/// Passes reads through, remembering the last byte and counting quote characters, so the reader
/// can tell a file cut inside its last row (no line ending, or a quote left open) from a whole one.
struct Tail<R> {
    inner: R,
    last: Option<u8>,
    quote: u8,
    quotes: u64,
}

impl<R: Read> Read for Tail<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.last = Some(buf[n - 1]);
            self.quotes += memchr::memchr_iter(self.quote, &buf[..n]).count() as u64;
        }
        Ok(n)
    }
}

/// Reads a CSV file through a schema, streaming; returns rows read. A file-level problem (header
/// lacks a mapped column) is one quarantine entry for the whole file. A row with another number
/// of fields than the header is quarantined; so is a last row the file cuts short (no line
/// ending and too few fields, or a quoted field never closed).
pub fn read_csv(input: impl Read, schema: &SchemaFile, table: Table, file: &str, sink: &mut dyn Sink) -> u64 {
    let delim = schema.delimiter.as_deref().unwrap_or(",").bytes().next().unwrap_or(b',');
    let sjis = schema.encoding.as_deref() == Some("shift_jis");
    let tail = Tail { inner: input, last: None, quote: b'"', quotes: 0 };
    let mut rd = csv::ReaderBuilder::new().delimiter(delim).has_headers(false).flexible(true).from_reader(tail);
    // One row of look-ahead: whether a row is the file's last is known only once the next read ends.
    let mut rec = csv::ByteRecord::new();
    let mut next = csv::ByteRecord::new();
    let mut have = match read_one(&mut rd, &mut rec, file, sink) {
        Some(h) => h,
        None => return 0,
    };
    let mut mapper: Option<Mapper<'_>> = None;
    let mut n = 0;
    while have {
        let more = read_one(&mut rd, &mut next, file, sink).unwrap_or(false);
        let last = !more;
        let row = &rec;
        // csv's own line counter drifts on mixed CR LF / LF endings; the record number and byte
        // offset do not. Built only when needed: this loop is the hot path.
        let line = row.position().map_or(0, |p| p.record() + 1);
        let at = || format!("row {} (byte {})", line.saturating_sub(1), row.position().map_or(0, |p| p.byte()));
        let raw = || {
            let mut s = String::new();
            for (i, f) in row.iter().enumerate() {
                if i > 0 {
                    s.push(delim as char);
                }
                match decode_field(f, sjis) {
                    Ok(c) => s.push_str(&c),
                    Err(_) => s.push_str(&String::from_utf8_lossy(f)),
                }
            }
            s
        };
        match &mapper {
            None => {
                let header: Result<Vec<String>, String> = row
                    .iter()
                    .enumerate()
                    .map(|(i, f)| decode_field(if i == 0 { strip_bom(f).0 } else { f }, sjis).map(|c| c.into_owned()))
                    .collect();
                match header.and_then(|h| Mapper::new(schema, table, &h)) {
                    Ok(m) => mapper = Some(m),
                    Err(e) => {
                        sink.quarantine(Quarantined::new(file, "line 1 (header)", "header", e, &raw()));
                        return 0;
                    }
                }
            }
            Some(m) => {
                n += 1;
                let tail = rd.get_ref();
                let cut_open = last && tail.quotes % 2 == 1;
                let cut_short = last && row.len() < m.width && !matches!(tail.last, Some(b'\n' | b'\r'));
                if cut_open {
                    let problem = "the file ends inside a quoted field of this row (truncated): not read";
                    sink.quarantine(Quarantined::new(file, at(), "record", problem, &raw()));
                } else if row.len() != m.width {
                    let problem = if cut_short {
                        format!(
                            "the file ends in the middle of this row (truncated): {} of {} fields, no line ending",
                            row.len(),
                            m.width
                        )
                    } else {
                        format!("the row has {} fields, the header {}", row.len(), m.width)
                    };
                    sink.quarantine(Quarantined::new(file, at(), "record", problem, &raw()));
                } else if sjis {
                    let fields: Result<Vec<Cow<'_, str>>, String> = row.iter().map(decode_sjis).collect();
                    match fields {
                        Ok(f) => match m.map(|i| f.get(i).map(|c| c.as_ref())) {
                            Ok(r) => sink.record_ref(r),
                            Err((col, e)) => sink.quarantine(Quarantined::new(file, at(), col, e, &raw())),
                        },
                        Err(e) => sink.quarantine(Quarantined::new(file, at(), "record", e, &raw())),
                    }
                } else {
                    // One UTF-8 check of the whole row; fields are borrowed from it (a field edge
                    // inside a character means a delimiter split one: not UTF-8).
                    let whole = std::str::from_utf8(row.as_slice()).map_err(|e| format!("not UTF-8: {e}")).and_then(
                        |w| match (0..row.len()).all(|i| {
                            row.range(i).is_some_and(|r| w.is_char_boundary(r.start) && w.is_char_boundary(r.end))
                        }) {
                            true => Ok(w),
                            false => Err("not UTF-8: a delimiter splits a character".to_owned()),
                        },
                    );
                    match whole {
                        Ok(w) => match m.map(|i| w.get(row.range(i)?)) {
                            Ok(r) => sink.record_ref(r),
                            Err((col, e)) => sink.quarantine(Quarantined::new(file, at(), col, e, &raw())),
                        },
                        Err(e) => sink.quarantine(Quarantined::new(file, at(), "record", e, &raw())),
                    }
                }
            }
        }
        std::mem::swap(&mut rec, &mut next);
        have = more;
    }
    n
}

/// Reads the next record; a CSV-level error is quarantined and reading goes on. `None` when the
/// input cannot be read at all.
fn read_one<R: Read>(
    rd: &mut csv::Reader<R>,
    rec: &mut csv::ByteRecord,
    file: &str,
    sink: &mut dyn Sink,
) -> Option<bool> {
    loop {
        match rd.read_byte_record(rec) {
            Ok(b) => return Some(b),
            Err(e) => {
                let at = format!("byte {}", rd.position().byte());
                let io = matches!(e.kind(), csv::ErrorKind::Io(_));
                sink.quarantine(Quarantined::new(file, at, "record", e.to_string(), ""));
                if io {
                    return None;
                }
            }
        }
    }
}

fn decode_field(b: &[u8], sjis: bool) -> Result<Cow<'_, str>, String> {
    if sjis { decode_sjis(b) } else { std::str::from_utf8(b).map(Cow::Borrowed).map_err(|e| format!("not UTF-8: {e}")) }
}

/// Reads a Parquet file through a schema, a batch at a time; returns rows read.
pub fn read_parquet(path: &Path, schema: &SchemaFile, table: Table, sink: &mut dyn Sink) -> u64 {
    let file = path.display().to_string();
    let q = |sink: &mut dyn Sink, e: String| sink.quarantine(Quarantined::new(&file, "file", "file", e, ""));
    let reader = std::fs::File::open(path)
        .map_err(|e| e.to_string())
        .and_then(|f| {
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| e.to_string())
        })
        .and_then(|b| b.with_batch_size(8192).build().map_err(|e| e.to_string()));
    let reader = match reader {
        Ok(r) => r,
        Err(e) => {
            q(sink, format!("not a readable Parquet file: {e}"));
            return 0;
        }
    };
    let header: Vec<String> = reader.schema().fields().iter().map(|f| f.name().clone()).collect();
    let m = match Mapper::new(schema, table, &header) {
        Ok(m) => m,
        Err(e) => {
            q(sink, e);
            return 0;
        }
    };
    let mut n = 0u64;
    for batch in reader {
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                sink.quarantine(Quarantined::new(
                    &file,
                    format!("after row {n}"),
                    "file",
                    format!("cannot read the rest: {e}"),
                    "",
                ));
                return n;
            }
        };
        // Every column as text, so one mapping serves CSV and Parquet alike.
        let cols: Vec<StringArray> = batch
            .columns()
            .iter()
            .map(|c| {
                arrow::compute::cast(c, &DataType::Utf8)
                    .ok()
                    .and_then(|a| a.as_any().downcast_ref::<StringArray>().cloned())
                    .unwrap_or_else(|| StringArray::from(vec![None::<&str>; c.len()]))
            })
            .collect();
        for i in 0..batch.num_rows() {
            n += 1;
            let row: Vec<String> =
                cols.iter().map(|c| if c.is_null(i) { String::new() } else { c.value(i).to_owned() }).collect();
            match m.map(|i| row.get(i).map(String::as_str)) {
                Ok(r) => sink.record_ref(r),
                Err((col, e)) => sink.quarantine(Quarantined::new(&file, format!("row {n}"), col, e, &row.join(","))),
            }
        }
    }
    n
}
