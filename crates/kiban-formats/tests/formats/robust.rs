//! Every parser on random and mutated bytes: no panic, bounded output (the fuzz targets' property,
//! run in the normal suite so CI exercises it on every push).

use kiban_formats::canonical::{Collected, RAW_LIMIT, Record, Table};
use kiban_formats::dpc::{self, DpcFile};
use kiban_formats::hl7::{self, Origin};
use kiban_formats::masters::Masters;
use kiban_formats::tabular::SchemaFile;
use kiban_formats::{cda, fhir, uke};
use proptest::prelude::*;

use crate::common::{of_provider, synth_records};

/// Runs every parser on `b`; checks nothing panicked and output is bounded by the input.
pub fn all_parsers(b: &[u8], masters: &Masters) {
    let lines = b.iter().filter(|&&c| c == b'\n' || c == b'\r').count() + 1;
    let check = |c: &Collected, per_line: usize| {
        assert!(c.quarantined.iter().all(|q| q.raw.len() <= RAW_LIMIT));
        assert!(
            c.records.len() + c.quarantined.len() <= lines * per_line + 8,
            "{} outputs for {lines} lines",
            c.records.len()
        );
    };
    let mut c = Collected::default();
    hl7::read_bytes(b, &Origin { file: "f", provider_id: "p" }, &mut c);
    check(&c, 4);
    let mut c = Collected::default();
    uke::read(b, "f", "p", masters, &mut c).unwrap();
    // An SI or TO line gives one row per marked 算定日 (31 at most) and up to three comments.
    check(&c, 36);
    for kind in [DpcFile::Ef, DpcFile::Form1] {
        let mut c = Collected::default();
        dpc::read(b, kind, "f", "p", masters, &mut c).unwrap();
        check(&c, 3);
    }
    let mut c = Collected::default();
    fhir::read_json(b, "f", "p", &mut c);
    let mut c2 = Collected::default();
    fhir::read_ndjson(b, "f", "p", &mut c2).unwrap();
    let mut c = Collected::default();
    cda::read(b, "f", "p", &mut c);
    check(&c, 4);
    let (schema, table) = SchemaFile::parse(
        "table = \"labs\"\nprovider_id = \"p\"\n[columns]\npatient_id = \"a\"\nresult_date = \"b\"\nvalue = \"c\"",
    )
    .unwrap();
    let mut c = Collected::default();
    kiban_formats::tabular::read_csv(b, &schema, table, "f", &mut c);
    check(&c, 2);
    // DICOM: as given, and behind a Part 10 preamble so the bytes reach the data set parser.
    let mut p10 = vec![0u8; 128];
    p10.extend_from_slice(b"DICM");
    p10.extend_from_slice(b);
    for bytes in [b, &p10[..]] {
        if let Ok((f, px)) = kiban_formats::dicom::parse::read_metadata(bytes) {
            let rows = kiban_formats::dicom::metadata_rows("f", &f, px);
            assert!(rows.len() <= bytes.len(), "{} rows from {} bytes", rows.len(), bytes.len());
        }
        let _ = kiban_formats::dicom::parse::read(bytes);
    }
}

fn samples() -> (Vec<Vec<u8>>, Masters) {
    let recs = of_provider(&synth_records(6), "prov-a");
    let mut m = Masters::default();
    let mut u = Vec::new();
    uke::write(&mut u, &recs, "1", uke::Variant::Dpc, &mut m).unwrap();
    let refs: Vec<&Record> = recs.iter().collect();
    let h: Vec<u8> =
        hl7::messages_for_patient(&refs).iter().take(6).flat_map(|x| hl7::encode_message(&x.text).unwrap()).collect();
    let mut f = Vec::new();
    fhir::write_ndjson(&mut f, &recs).unwrap();
    let c = cda::documents(&recs).into_iter().next().map(|d| d.2.into_bytes()).unwrap_or_default();
    let (mut f1, mut ef) = (Vec::new(), Vec::new());
    dpc::write(&mut f1, &mut ef, &recs, "1", &mut m).unwrap();
    let _ = Table::ALL;
    (vec![u, h, f, c, f1, ef], m)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn b2_parsers_survive_random_bytes(b in proptest::collection::vec(any::<u8>(), 0..2048)) {
        all_parsers(&b, &Masters::default());
    }

    #[test]
    fn b2_parsers_survive_mutated_real_files(
        which in 0usize..6,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..12),
        cut in any::<prop::sample::Index>(),
    ) {
        let (files, m) = samples();
        let mut b = files[which].clone();
        if b.is_empty() { return Ok(()); }
        for (i, v) in flips {
            let k = i.index(b.len());
            b[k] = v;
        }
        let end = cut.index(b.len() + 1);
        all_parsers(&b[..end], &m);
        all_parsers(&b, &m);
    }
}
