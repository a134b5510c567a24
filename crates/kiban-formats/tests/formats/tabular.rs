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
