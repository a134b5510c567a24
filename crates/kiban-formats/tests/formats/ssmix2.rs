//! SS-MIX2 storage and HL7 v2.5: write → walk → the same records; bad input → quarantine.

use kiban_formats::canonical::{Collected, Record};
use kiban_formats::ssmix2;

use crate::common::{iso_birth, name_form, of_provider, sorted, synth_records};

fn expected(records: &[Record]) -> Vec<Record> {
    records
        .iter()
        .cloned()
        .map(|r| match r {
            Record::Patient(mut p) => {
                p.name_kanji = name_form(&p.name_kanji);
                p.name_kana = name_form(&p.name_kana);
                p.birth_date = iso_birth(&p.birth_date);
                Record::Patient(p)
            }
            other => other,
        })
        .collect()
}

#[test]
fn b2_ssmix2_round_trip_keeps_every_record() {
    let all = synth_records(60);
    for prov in ["prov-a", "prov-b", "prov-c"] {
        let recs = of_provider(&all, prov);
        let tmp = tempfile::tempdir().unwrap();
        let st = ssmix2::write(tmp.path(), &recs).unwrap();
        assert!(st.refused.is_empty(), "{:?}", st.refused);
        let mut got = Collected::default();
        let walk = ssmix2::walk(tmp.path(), prov, &mut got);
        assert_eq!(walk.files, st.files);
        assert!(got.quarantined.is_empty(), "{:?}", got.quarantined);
        let want = sorted(expected(&recs));
        let got = sorted(got.records);
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g, w);
        }
    }
}
