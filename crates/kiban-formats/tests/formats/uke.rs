//! UKE receipts (医科 and DPC): write → read → the same records; bad input → quarantine.

use kiban_formats::canonical::{Collected, Record};
use kiban_formats::masters::Masters;
use kiban_formats::uke::{self, Variant};

use crate::common::{iso_birth, of_provider, sorted, synth_records};

/// What a receipt carries of each record (no labs, no address or phone; the department as coded).
pub fn receipt_view(records: &[Record], variant: Variant) -> Vec<Record> {
    records
        .iter()
        .cloned()
        .filter_map(|r| match r {
            Record::Patient(mut p) => {
                p.birth_date = iso_birth(&p.birth_date);
                p.postal_code.clear();
                p.address.clear();
                p.phone.clear();
                Some(Record::Patient(p))
            }
            Record::Encounter(mut e) => {
                if variant == Variant::Medical {
                    e.discharge_date = None;
                }
                Some(Record::Encounter(e))
            }
            Record::Lab(_) => None,
            other => Some(other),
        })
        .collect()
}

fn round_trip(variant: Variant) {
    let all = synth_records(40);
    let recs = of_provider(&all, "prov-b");
    let mut masters = Masters::default();
    let mut bytes = Vec::new();
    let (n, refused) = uke::write(&mut bytes, &recs, "1312345", variant, &mut masters).unwrap();
    assert!(refused.is_empty(), "{refused:?}");
    assert!(n > 0);
    assert!(std::str::from_utf8(&bytes).is_err(), "Shift_JIS, not UTF-8");
    let mut got = Collected::default();
    let st = uke::read(&bytes[..], "test.uke", "prov-b", &masters, &mut got).unwrap();
    assert!(got.quarantined.is_empty(), "{:?}", got.quarantined);
    assert_eq!(st.receipts, n);
    let want = sorted(receipt_view(&recs, variant));
    let got = sorted(got.records);
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w);
    }
}

#[test]
fn b2_uke_medical_round_trip() {
    round_trip(Variant::Medical);
}

#[test]
fn b2_uke_dpc_round_trip() {
    round_trip(Variant::Dpc);
}
