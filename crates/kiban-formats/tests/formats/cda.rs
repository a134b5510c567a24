//! 特定健診 CDA: write → read → the same results under the insurance-card person key; bad XML → quarantine.

use kiban_formats::canonical::{Collected, Record};
use kiban_formats::cda;

use crate::common::{iso_birth, of_provider, sorted, synth_records};

#[test]
fn b2_cda_round_trip_keeps_results_and_identity() {
    let recs = of_provider(&synth_records(40), "prov-a");
    let docs = cda::documents(&recs);
    assert!(!docs.is_empty());
    let mut got = Collected::default();
    for (_, _, xml) in &docs {
        cda::read(xml.as_bytes(), "doc.xml", "prov-a", &mut got);
    }
    assert!(got.quarantined.is_empty(), "{:?}", got.quarantined);
    let with_docs: std::collections::HashSet<&str> = docs.iter().map(|d| d.1.as_str()).collect();
    let patient = |pid: &str| {
        recs.iter()
            .find_map(|r| match r {
                Record::Patient(p) if p.patient_id == pid => Some(p.clone()),
                _ => None,
            })
            .unwrap()
    };
    let key = |pid: &str| {
        let p = patient(pid);
        format!("{}:{}:{}:{}", p.insurer_number, p.card_symbol, p.card_number, p.card_branch)
    };
    let mut want = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for r in &recs {
        match r {
            Record::Encounter(e) if with_docs.contains(e.encounter_id.as_str()) => {
                let mut p = patient(&e.patient_id);
                p.patient_id = key(&e.patient_id);
                p.birth_date = iso_birth(&p.birth_date);
                p.phone.clear();
                if seen.insert(e.encounter_id.clone()) {
                    want.push(Record::Patient(p));
                }
                let mut e = e.clone();
                e.patient_id = key(&e.patient_id);
                e.encounter_type = "健診".into();
                e.department.clear();
                e.discharge_date = None;
                want.push(Record::Encounter(e));
            }
            Record::Lab(l) => {
                let mut l = l.clone();
                l.patient_id = key(&l.patient_id);
                want.push(Record::Lab(l));
            }
            _ => {}
        }
    }
    let (got, want) = (sorted(got.records), sorted(want));
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w);
    }
}

#[test]
fn b2_cda_truncated_or_personless_documents_are_quarantined() {
    let recs = of_provider(&synth_records(40), "prov-a");
    let (_, _, xml) = cda::documents(&recs).into_iter().next().unwrap();
    let mut got = Collected::default();
    cda::read(&xml.as_bytes()[..xml.len() / 2], "cut.xml", "prov-a", &mut got);
    assert!(got.records.is_empty());
    assert_eq!(got.quarantined.len(), 1);
    assert!(got.quarantined[0].problem.contains("truncated") || got.quarantined[0].problem.contains("well-formed"));
    let no_person = xml.replace("1.2.392.200119.6.205", "9.9.9");
    let mut got = Collected::default();
    cda::read(no_person.as_bytes(), "np.xml", "prov-a", &mut got);
    assert!(got.records.is_empty());
    assert_eq!(got.quarantined[0].field, "patientRole/id");
    let bad_value = xml.replacen("xsi:type=\"PQ\" value=\"", "xsi:type=\"PQ\" value=\"x", 1);
    let mut got = Collected::default();
    cda::read(bad_value.as_bytes(), "bv.xml", "prov-a", &mut got);
    assert_eq!(got.quarantined.len(), 1);
    assert_eq!(
        (got.quarantined[0].location.as_str(), got.quarantined[0].field.as_str()),
        ("observation 1", "observation/value@value")
    );
}
