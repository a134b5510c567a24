//! CSV (Shift_JIS, Japanese headers) and Parquet through a schema file.

use kiban_formats::canonical::{Collected, Record, Table, TableBuilder};
use kiban_formats::encoding::encode_sjis;
use kiban_formats::tabular::{SchemaFile, read_csv, read_parquet};
use kiban_formats::{DatasetWriter, FileFormat};

use crate::common::{of_provider, sorted, synth_records};

const SCHEMA: &str = r#"
table = "labs"
encoding = "shift_jis"
provider_id = "prov-a"
date_format = "%Y/%m/%d"
[columns]
patient_id = "患者ID"
encounter_id = "受診ID"
result_date = "検査日"
test_code = "JLAC10"
test_name = "検査名"
value = "結果値"
unit = "単位"
"#;

fn labs() -> Vec<Record> {
    of_provider(&synth_records(60), "prov-a").into_iter().filter(|r| r.table() == Table::Labs).collect()
}

#[test]
fn b2_csv_with_schema_file_reads_shift_jis_and_names_bad_cells() {
    let (schema, table) = SchemaFile::parse(SCHEMA).unwrap();
    let recs = labs();
    let mut text = String::from("患者ID,受診ID,検査日,JLAC10,検査名,結果値,単位\r\n");
    for r in &recs {
        let Record::Lab(l) = r else { unreachable!() };
        text += &format!(
            "{},{},{},{},{},{},{}\r\n",
            l.patient_id,
            l.encounter_id,
            l.result_date.format("%Y/%m/%d"),
            l.test_code,
            l.test_name,
            l.value,
            l.unit
        );
    }
    text += "00000001,x,2024/13/40,3D046000000,HbA1c,5.5,%\n";
    text += "00000001,x,2024/01/04,3D046000000,HbA1c,高値,%\n";
    let bytes = encode_sjis(&text).unwrap();
    let mut got = Collected::default();
    let n = read_csv(&bytes[..], &schema, table, "labs.csv", &mut got);
    assert_eq!(n as usize, recs.len() + 2);
    assert_eq!(sorted(got.records), sorted(recs));
    let q: Vec<(String, &str)> = got
        .quarantined
        .iter()
        .map(|q| (q.location.split(' ').take(2).collect::<Vec<_>>().join(" "), q.field.as_str()))
        .collect();
    assert_eq!(q, vec![(format!("row {}", n - 1), "検査日"), (format!("row {n}"), "結果値")]);
}

#[test]
fn b2_parquet_with_schema_file_round_trips() {
    let recs = labs();
    let tmp = tempfile::tempdir().unwrap();
    let mut b = TableBuilder::new(Table::Labs);
    for r in &recs {
        b.push(r);
    }
    let w = DatasetWriter::create(&tmp.path().join("labs"), "labs", Table::Labs.schema(), FileFormat::Parquet).unwrap();
    w.write_part("part-00000", &[b.finish()]).unwrap();
    w.commit(serde_json::json!({})).unwrap();
    let schema = SCHEMA
        .replace("患者ID", "patient_id")
        .replace("受診ID", "encounter_id")
        .replace("検査日", "result_date")
        .replace("JLAC10", "test_code")
        .replace("検査名", "test_name")
        .replace("結果値", "value")
        .replace("単位", "unit");
    let (schema, table) = SchemaFile::parse(&schema).unwrap();
    let mut got = Collected::default();
    read_parquet(&tmp.path().join("labs/part-00000.parquet"), &schema, table, &mut got);
    assert!(got.quarantined.is_empty(), "{:?}", got.quarantined);
    assert_eq!(sorted(got.records), sorted(recs));
}

#[test]
fn b2_schema_file_errors_name_the_key() {
    assert!(SchemaFile::parse("table = \"x\"\n[columns]\npatient_id = \"a\"").unwrap_err().contains("\"x\""));
    let e = SchemaFile::parse("table = \"labs\"\nprovider_id = \"p\"\n[columns]\npatient_id = \"a\"\nbogus = \"b\"")
        .unwrap_err();
    assert!(e.contains("bogus"), "{e}");
}

const UTF8_LABS: &str = r#"
table = "labs"
provider_id = "prov-a"
[columns]
patient_id = "patient_id"
encounter_id = "encounter_id"
result_date = "result_date"
test_code = "test_code"
test_name = "test_name"
value = "value"
unit = "unit"
"#;

fn csv_read(text: &str) -> (u64, Collected) {
    let (schema, table) = SchemaFile::parse(UTF8_LABS).unwrap();
    let mut got = Collected::default();
    let n = read_csv(text.as_bytes(), &schema, table, "labs.csv", &mut got);
    (n, got)
}

const HEAD: &str = "patient_id,encounter_id,result_date,test_code,test_name,value,unit\n";
const ROW: &str = "00000001,e1,2024-01-04,3D046000000,HbA1c,5.5,%\n";

#[test]
fn b2_csv_row_cut_at_the_end_of_the_file_is_quarantined_naming_the_row() {
    // Whole file, and a last row without line ending but with every field: both read.
    let (_, got) = csv_read(&format!("{HEAD}{ROW}{ROW}"));
    assert_eq!((got.records.len(), got.quarantined.len()), (2, 0));
    let (_, got) = csv_read(&format!("{HEAD}{ROW}{}", ROW.trim_end()));
    assert_eq!((got.records.len(), got.quarantined.len()), (2, 0), "{:?}", got.quarantined);
    // Cut inside the last row: fewer fields, no line ending.
    let (n, got) = csv_read(&format!("{HEAD}{ROW}00000001,e1,2024-01-04,3D04"));
    assert_eq!(n, 2);
    assert_eq!(got.records.len(), 1);
    let q = &got.quarantined[0];
    assert!(q.location.starts_with("row 2 "), "{q:?}");
    assert!(q.problem.contains("truncated") && q.problem.contains("4 of 7"), "{q:?}");
    assert_eq!(q.raw, "00000001,e1,2024-01-04,3D04");
    // Cut inside a quoted field of the last row (the quote is never closed).
    let (_, got) = csv_read(&format!("{HEAD}{ROW}00000001,e1,2024-01-04,3D046000000,\"HbA1c (NGSP"));
    assert_eq!(got.records.len(), 1);
    assert!(got.quarantined[0].problem.contains("inside a quoted field"), "{:?}", got.quarantined);
    assert!(got.quarantined[0].location.starts_with("row 2 "));
    // A short row in the middle is quarantined too (its cells would otherwise shift silently).
    let (_, got) = csv_read(&format!("{HEAD}00000001,e1,2024-01-04\n{ROW}"));
    assert_eq!(got.records.len(), 1);
    assert!(got.quarantined[0].problem.contains("3 fields, the header 7"), "{:?}", got.quarantined);
}

#[test]
fn b2_csv_utf8_rows_that_do_not_decode_are_quarantined_whole() {
    let (schema, table) = SchemaFile::parse(UTF8_LABS).unwrap();
    let mut bytes = format!("{HEAD}{ROW}").into_bytes();
    // A Shift_JIS test name in a UTF-8 file, and a character whose bytes a delimiter splits.
    bytes.extend_from_slice(b"00000001,e1,2024-01-04,3D046000000,\x8c\x9f\x8d\xb8,5.5,%\n");
    bytes.extend_from_slice(b"00000001,e1,2024-01-04,3D046000000,\xe6\xa4,\x9c,%\n");
    let mut got = Collected::default();
    read_csv(&bytes[..], &schema, table, "labs.csv", &mut got);
    assert_eq!(got.records.len(), 1);
    assert_eq!(got.quarantined.len(), 2, "{:?}", got.quarantined);
    assert!(got.quarantined.iter().all(|q| q.problem.starts_with("not UTF-8") && q.field == "record"));
    assert!(got.quarantined[0].location.starts_with("row 2 ") && got.quarantined[1].location.starts_with("row 3 "));
}
