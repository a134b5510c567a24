//! CSV and Parquet files of any layout, read through a schema file that maps their columns onto
//! one canonical table — for whatever a provider exports that has no standard format.
//!
//! Schema file (TOML):
//! ```toml
//! table = "labs"              # patients, encounters, diagnoses, prescriptions, labs, texts
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

use crate::canonical::{Diagnosis, Encounter, Lab, Patient, Prescription, Quarantined, Record, Sink, Table, Text};
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
fn record(table: Table, v: &dyn Fn(&str) -> String, fmt: &str) -> Result<Record, (String, String)> {
    let d = |k: &str| -> Result<NaiveDate, (String, String)> {
        let x = v(k);
        date(&x, fmt).ok_or_else(|| (k.to_owned(), format!("{x:?} is not a date ({fmt} or 和暦)")))
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
                    kiban_model::person::Sex::parse(&s).map_err(|e| ("sex".to_owned(), e.to_string()))?.code().into()
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
            main: match v("main").to_ascii_lowercase().as_str() {
                "1" | "true" | "y" | "yes" | "主" => true,
                "" | "0" | "false" | "n" | "no" => false,
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
    })
}

struct Mapper<'a> {
    schema: &'a SchemaFile,
    table: Table,
    fmt: String,
    /// canonical column → index in the file.
    index: HashMap<String, usize>,
}

impl<'a> Mapper<'a> {
    fn new(schema: &'a SchemaFile, table: Table, header: &[String]) -> Result<Self, String> {
        let mut index = HashMap::new();
        for (canon, col) in &schema.columns {
            let i = header
                .iter()
                .position(|h| h == col)
                .ok_or_else(|| format!("the file has no column {col:?} (mapped to {canon})"))?;
            index.insert(canon.clone(), i);
        }
        Ok(Mapper { schema, table, fmt: schema.date_format.clone().unwrap_or_else(|| "%Y-%m-%d".into()), index })
    }
    fn map<S: AsRef<str>>(&self, row: &[S]) -> Result<Record, (String, String)> {
        let v = |k: &str| -> String {
            match self.index.get(k) {
                Some(&i) => row.get(i).map(|s| s.as_ref().trim().to_owned()).unwrap_or_default(),
                None if k == "provider_id" => self.schema.provider_id.clone().unwrap_or_default(),
                None => String::new(),
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

/// Reads a CSV file through a schema, streaming; returns rows read. A file-level problem (header
/// lacks a mapped column) is one quarantine entry for the whole file.
pub fn read_csv(input: impl Read, schema: &SchemaFile, table: Table, file: &str, sink: &mut dyn Sink) -> u64 {
    let delim = schema.delimiter.as_deref().unwrap_or(",").bytes().next().unwrap_or(b',');
    let sjis = schema.encoding.as_deref() == Some("shift_jis");
    let mut rd = csv::ReaderBuilder::new().delimiter(delim).has_headers(false).flexible(true).from_reader(input);
    let mut rec = csv::ByteRecord::new();
    let mut mapper: Option<Mapper<'_>> = None;
    let mut n = 0;
    loop {
        match rd.read_byte_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let at = format!("byte {}", rd.position().byte());
                sink.quarantine(Quarantined::new(file, at, "record", e.to_string(), ""));
                continue;
            }
        }
        // csv's own line counter drifts on mixed CR LF / LF endings; the record number and byte
        // offset do not. Built only when needed: this loop is the hot path.
        let line = rec.position().map_or(0, |p| p.record() + 1);
        let at = || format!("row {} (byte {})", line.saturating_sub(1), rec.position().map_or(0, |p| p.byte()));
        let raw = || String::from_utf8_lossy(rec.as_slice()).into_owned();
        let fields: Result<Vec<Cow<'_, str>>, String> = rec
            .iter()
            .enumerate()
            .map(|(i, f)| decode_field(if line == 1 && i == 0 { strip_bom(f).0 } else { f }, sjis))
            .collect();
        let fields = match fields {
            Ok(f) => f,
            Err(e) => {
                sink.quarantine(Quarantined::new(file, at(), "record", e, &raw()));
                continue;
            }
        };
        let Some(m) = &mapper else {
            let header: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
            match Mapper::new(schema, table, &header) {
                Ok(m) => mapper = Some(m),
                Err(e) => {
                    sink.quarantine(Quarantined::new(file, "line 1 (header)", "header", e, &raw()));
                    return 0;
                }
            }
            continue;
        };
        n += 1;
        match m.map(&fields) {
            Ok(r) => sink.record(r),
            Err((col, e)) => {
                let joined = fields.iter().map(|f| f.as_ref()).collect::<Vec<_>>().join(",");
                sink.quarantine(Quarantined::new(file, at(), col, e, &joined))
            }
        }
    }
    n
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
            match m.map(&row) {
                Ok(r) => sink.record(r),
                Err((col, e)) => sink.quarantine(Quarantined::new(&file, format!("row {n}"), col, e, &row.join(","))),
            }
        }
    }
    n
}
