//! A submission in each medical format → canonical Parquet tables, identity apart.

use kiban_formats::canonical::records_from_batch;
use kiban_formats::convert::{InputFormat, convert, write_format};
use kiban_formats::masters::Masters;
use kiban_formats::{Record, Table};

use crate::common::{of_provider, synth_records};

fn read_table(dir: &std::path::Path, t: Table) -> Vec<Record> {
    let p = dir.join(t.name()).join("part-00000.parquet");
    if !p.exists() {
        return vec![];
    }
    let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(p).unwrap())
        .unwrap()
        .build()
        .unwrap();
    r.flat_map(|b| records_from_batch(t, &b.unwrap())).collect()
}

#[test]
fn b2_each_format_converts_to_clinical_tables_with_identity_apart() {
    let recs = of_provider(&synth_records(30), "prov-a");
    let n_enc = recs.iter().filter(|r| r.table() == Table::Encounters).count();
    for f in [InputFormat::Ssmix2, InputFormat::Uke, InputFormat::Fhir, InputFormat::Dpc, InputFormat::Cda] {
        let tmp = tempfile::tempdir().unwrap();
        let input = tmp.path().join("in");
        let mut m = Masters::default();
        write_format(f, &recs, &input, 0, &mut m).unwrap();
        if !m.disease.is_empty() || !m.drug.is_empty() {
            m.save_dir(&input.join("masters")).unwrap();
        }
        let (c, i, q) = (tmp.path().join("clinical"), tmp.path().join("identity"), tmp.path().join("q"));
        let rep = convert(f, &input, "prov-a", &c, &i, &q).unwrap();
        assert_eq!(rep.quarantined, 0, "{f:?}: {:?}", rep.quarantine_file.map(std::fs::read_to_string));
        assert!(!c.join("patients").exists(), "{f:?}: identity never in the clinical tables");
        assert!(!read_table(&i, Table::Patients).is_empty(), "{f:?}");
        let enc = read_table(&c, Table::Encounters).len();
        match f {
            InputFormat::Dpc | InputFormat::Cda => assert!(enc > 0 && enc < n_enc, "{f:?}: {enc}"),
            _ => assert_eq!(enc, n_enc, "{f:?}"),
        }
    }
}
