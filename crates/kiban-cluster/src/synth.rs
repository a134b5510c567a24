//! Deterministic synthetic claim rows for the cluster tests and benchmark (same seed, same bytes),
//! and the gate facts that go with them.

use std::path::Path;
use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::arrow::array::{ArrayRef, Date32Array, Int32Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;

use crate::udf::{GateFacts, PersonFactsWire};
use crate::{ClusterError, Result};

/// The provider of every synthetic claim.
pub const PROVIDER: &str = "1310000001";
/// The columns of the synthetic claims' frequency table: the eight quasi-identifiers of
/// [`CLAIMS_POLICY`] and the sensitive diagnosis (as kiban-deid's pass 1 counts them).
pub const QI: [&str; 9] = [
    "provision_date",
    "sex",
    "birth_year",
    "municipality",
    "department",
    "encounter_type",
    "insurer_kind",
    "outcome",
    "diagnosis",
];

const MUNICIPALITIES: [&str; 12] =
    ["13101", "13102", "13103", "13104", "13105", "27100", "27127", "14100", "23100", "01100", "40130", "47201"];
const DIAGNOSES: [&str; 10] = ["E119", "I10", "J069", "K297", "M545", "N390", "F329", "C509", "I639", "J189"];
const DEPARTMENTS: [&str; 8] = ["内科", "外科", "整形外科", "小児科", "眼科", "皮膚科", "精神科", "循環器内科"];
// 保険者種別: 国保, 協会けんぽ, 組合健保, 後期高齢者医療.
const INSURER_KINDS: [&str; 4] = ["国保", "協会", "組合", "後期"];
// 転帰区分 of a receipt's diagnosis: continuing, cured, died, stopped.
const OUTCOMES: [&str; 4] = ["継続", "治癒", "死亡", "中止"];

fn mix(mut z: u64) -> u64 {
    // splitmix64: every row's values come from its index alone.
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The patient id of synthetic patient `p`.
pub fn patient_id(p: u64) -> String {
    format!("PT{p:010}")
}

/// The schema of synthetic claims.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("claim_id", DataType::Utf8, false),
        Field::new("provider_id", DataType::Utf8, false),
        Field::new("patient_id", DataType::Utf8, false),
        Field::new("person_key", DataType::Int64, false),
        Field::new("provision_date", DataType::Date32, false),
        Field::new("sex", DataType::Utf8, false),
        Field::new("birth_year", DataType::Int32, false),
        Field::new("municipality", DataType::Utf8, false),
        Field::new("department", DataType::Utf8, false),
        Field::new("encounter_type", DataType::Utf8, false),
        Field::new("insurer_kind", DataType::Utf8, false),
        Field::new("outcome", DataType::Utf8, false),
        Field::new("diagnosis", DataType::Utf8, false),
        Field::new("points", DataType::Int64, false),
    ]))
}

fn patients(rows: u64) -> u64 {
    (rows / 4).max(1)
}

/// Rows `from..to` of the synthetic claims of a `rows`-row data set.
pub fn batch(rows: u64, from: u64, to: u64) -> RecordBatch {
    let n = patients(rows);
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("date");
    let base = (NaiveDate::from_ymd_opt(2026, 4, 1).expect("date") - epoch).num_days() as i32;
    let (mut claim, mut pat, mut key, mut date, mut sex, mut by, mut muni, mut dx, mut pts) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut dept, mut enc, mut ins, mut out) = (vec![], vec![], vec![], vec![]);
    for i in from..to {
        let r = mix(i);
        let p = mix(i ^ 0x5151) % n;
        let rp = mix(p.wrapping_add(0xabcdef));
        claim.push(format!("C{i:012}"));
        pat.push(patient_id(p));
        key.push((rp >> 1) as i64);
        date.push(base + (r % 60) as i32);
        sex.push(if rp & 1 == 0 { "1" } else { "2" });
        by.push(1930 + ((rp >> 8) % 90) as i32);
        muni.push(MUNICIPALITIES[((rp >> 16) % MUNICIPALITIES.len() as u64) as usize]);
        dx.push(DIAGNOSES[((r >> 8) % DIAGNOSES.len() as u64) as usize]);
        dept.push(DEPARTMENTS[((r >> 32) % DEPARTMENTS.len() as u64) as usize]);
        // About three in ten claims are inpatient.
        enc.push(if (r >> 40) % 10 < 3 { "入院" } else { "外来" });
        ins.push(INSURER_KINDS[((rp >> 24) % INSURER_KINDS.len() as u64) as usize]);
        out.push(OUTCOMES[((r >> 44) % OUTCOMES.len() as u64) as usize]);
        pts.push(((r >> 20) % 5000) as i64 + 100);
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(claim)),
        Arc::new(StringArray::from(vec![PROVIDER; (to - from) as usize])),
        Arc::new(StringArray::from(pat)),
        Arc::new(Int64Array::from(key)),
        Arc::new(Date32Array::from(date)),
        Arc::new(StringArray::from(sex)),
        Arc::new(Int32Array::from(by)),
        Arc::new(StringArray::from(muni)),
        Arc::new(StringArray::from(dept)),
        Arc::new(StringArray::from(enc)),
        Arc::new(StringArray::from(ins)),
        Arc::new(StringArray::from(out)),
        Arc::new(StringArray::from(dx)),
        Arc::new(Int64Array::from(pts)),
    ];
    RecordBatch::try_new(schema(), cols).expect("synthetic batch matches its schema")
}

/// Writes `rows` synthetic claims as `files` Parquet files into `dir` (created).
pub fn write_claims(dir: &Path, rows: u64, files: u64) -> Result<()> {
    write_split(dir, rows, files, "parquet", |path, file, from, to| {
        let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
        let enc = |e: datafusion::parquet::errors::ParquetError| ClusterError::Input {
            field: path.display().to_string(),
            rule: e.to_string(),
        };
        let mut w = ArrowWriter::try_new(file, schema(), Some(props)).map_err(enc)?;
        for b in batches(rows, from, to) {
            w.write(&b).map_err(enc)?;
        }
        w.close().map_err(enc)?;
        Ok(())
    })
}

/// Splits `rows` rows over `files` files `claims-NNNN.<ext>` in `dir` (created) and hands each
/// created file, its path and its row range to `write`.
fn write_split(
    dir: &Path,
    rows: u64,
    files: u64,
    ext: &str,
    mut write: impl FnMut(&Path, std::fs::File, u64, u64) -> Result<()>,
) -> Result<()> {
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |source| ClusterError::Io { path: p, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let per = rows.div_ceil(files.max(1));
    for f in 0..files.max(1) {
        let (from, to) = (f * per, ((f + 1) * per).min(rows));
        if from >= to {
            break;
        }
        let path = dir.join(format!("claims-{f:04}.{ext}"));
        let file = std::fs::File::create(&path).map_err(io(&path))?;
        write(&path, file, from, to)?;
    }
    Ok(())
}

/// Rows `from..to` of a `rows`-row data set, in batches of 64 Ki rows.
fn batches(rows: u64, from: u64, to: u64) -> impl Iterator<Item = RecordBatch> {
    (from..to).step_by(65_536).map(move |at| batch(rows, at, (at + 65_536).min(to)))
}

/// Gate facts for the synthetic patients: most were notified long ago; every 50th opted out, every
/// 37th is unknown, every 101st was notified too recently (waiting period 30 days).
pub fn gate_facts(rows: u64) -> GateFacts {
    let d = |y, m, dd| NaiveDate::from_ymd_opt(y, m, dd).expect("date");
    let mut f = GateFacts { provider_id: PROVIDER.into(), waiting_days: 30, ..Default::default() };
    for p in 0..patients(rows) {
        if p % 37 == 0 {
            continue;
        }
        let mut person = PersonFactsWire::default();
        if p % 101 == 0 {
            person.notices.push(d(2026, 5, 15));
        } else {
            person.notices.push(d(2025, 1, 10));
        }
        if p % 50 == 0 {
            person.optouts.push((format!("OO-{p}"), d(2025, 6, 1), None));
        }
        f.persons.insert(patient_id(p), person);
    }
    f
}

/// A processing policy for the synthetic claims: claim ids tokenized, patient ids re-keyed, eight
/// quasi-identifiers generalized to k = 10 with l-diversity of the diagnosis.
pub const CLAIMS_POLICY: &str = r#"
version = 1
name = "claims-cluster"
[privacy]
k = 10
suppression_limit = 0.05
l_diversity = { column = "diagnosis", l = 2 }
[hierarchies]
day = { builder = "date" }
sex = { builder = "flat" }
flat = { builder = "flat" }
year = { builder = "intervals", levels = [[1930, 1940, 1950, 1960, 1970, 1980, 1990, 2000, 2010, 2020], [1930, 1950, 1970, 1990, 2010], [1970]] }
muni = { builder = "prefix", keep = [2] }
[[columns]]
name = "claim_id"
role = "id_code"
treatment = "token"
[[columns]]
name = "provider_id"
role = "keep"
[[columns]]
name = "patient_id"
role = "link_code"
[[columns]]
name = "person_key"
role = "identifier"
[[columns]]
name = "provision_date"
role = "quasi_identifier"
hierarchy = "day"
[[columns]]
name = "sex"
role = "quasi_identifier"
hierarchy = "sex"
[[columns]]
name = "birth_year"
role = "quasi_identifier"
hierarchy = "year"
[[columns]]
name = "municipality"
role = "quasi_identifier"
hierarchy = "muni"
[[columns]]
name = "department"
role = "quasi_identifier"
hierarchy = "flat"
[[columns]]
name = "encounter_type"
role = "quasi_identifier"
hierarchy = "flat"
[[columns]]
name = "insurer_kind"
role = "quasi_identifier"
hierarchy = "flat"
[[columns]]
name = "outcome"
role = "quasi_identifier"
hierarchy = "flat"
[[columns]]
name = "diagnosis"
role = "sensitive"
[[columns]]
name = "points"
role = "keep"
"#;

/// Writes the same `rows` synthetic claims as [`write_claims`] does, as `files` CSV files with a
/// header row into `dir` (created): the input of the parse→Parquet stage.
pub fn write_claims_csv(dir: &Path, rows: u64, files: u64) -> Result<()> {
    write_split(dir, rows, files, "csv", |path, file, from, to| {
        let enc = |e: datafusion::arrow::error::ArrowError| ClusterError::Input {
            field: path.display().to_string(),
            rule: e.to_string(),
        };
        let mut w = datafusion::arrow::csv::WriterBuilder::new().with_header(true).build(std::io::BufWriter::new(file));
        for b in batches(rows, from, to) {
            w.write(&b).map_err(enc)?;
        }
        use std::io::Write;
        w.into_inner().flush().map_err(|source| ClusterError::Io { path: path.display().to_string(), source })
    })
}
