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

#[test]
fn b2_uke_receipt_tables_convert_with_public_expense_numbers_apart() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/RECEIPTC-synthetic.UKE");
    // convert reads `*.uke` (lower case), as kiban's own writer names them.
    std::fs::copy(sample, input.join("receiptc.uke")).unwrap();
    let mut m = Masters::default();
    m.drug.insert("620000001", "合成錠（架空）", "9999999F1000", "oral");
    m.procedure.insert("111000110", "初診料", "", "");
    m.save_dir(&input.join("masters")).unwrap();
    let (c, i, q) = (tmp.path().join("clinical"), tmp.path().join("identity"), tmp.path().join("q"));
    let rep = convert(InputFormat::Uke, &input, "prov-x", &c, &i, &q).unwrap();
    assert_eq!(rep.quarantined, 3, "the sample's three bad lines");
    let mut direct = kiban_formats::canonical::Collected::default();
    let masters = Masters::load_dir(&input.join("masters")).unwrap();
    kiban_formats::uke::read(&std::fs::read(sample).unwrap()[..], "s", "prov-x", &masters, &mut direct).unwrap();
    for t in [Table::Procedures, Table::Materials, Table::PublicExpenses, Table::Texts, Table::PublicExpenseIds] {
        let dir = if t.is_identity() { &i } else { &c };
        let want: Vec<Record> = direct.of(t).cloned().collect();
        assert!(!want.is_empty(), "{t:?}");
        assert_eq!(read_table(dir, t), want, "{t:?} through Parquet");
    }
    assert!(!c.join("public_expense_ids").exists(), "payer and recipient numbers never in the clinical tables");
}
