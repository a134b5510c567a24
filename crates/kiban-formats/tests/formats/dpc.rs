//! DPC 様式1 and EF files: write → read → the inpatient stays, their diagnoses and drugs.

use std::collections::HashSet;

use kiban_formats::canonical::{Collected, Patient, Procedure, Record};
use kiban_formats::dpc::{self, DpcFile};
use kiban_formats::masters::Masters;

use crate::common::{iso_birth, of_provider, sorted, synth_records};

#[test]
fn b2_dpc_form1_and_ef_round_trip_inpatient_stays() {
    let recs = of_provider(&synth_records(300), "prov-a");
    let mut masters = Masters::default();
    let (mut f1, mut ef) = (Vec::new(), Vec::new());
    let (n1, n2) = dpc::write(&mut f1, &mut ef, &recs, "131234567", &mut masters).unwrap();
    assert!(n1 > 0 && n2 > 0, "the population has inpatient stays");
    let mut got = Collected::default();
    dpc::read(&f1[..], DpcFile::Form1, "form1.txt", "prov-a", &masters, &mut got).unwrap();
    dpc::read(&ef[..], DpcFile::Ef, "ef.txt", "prov-a", &masters, &mut got).unwrap();
    assert!(got.quarantined.is_empty(), "{:?}", got.quarantined);
    let stays: std::collections::HashMap<String, String> = recs
        .iter()
        .filter_map(|r| match r {
            Record::Encounter(e) if e.encounter_type == "入院" => {
                Some((e.encounter_id.clone(), format!("{}-{}", e.patient_id, e.admission_date.format("%Y%m%d"))))
            }
            _ => None,
        })
        .collect();
    let in_stay: HashSet<&str> = recs
        .iter()
        .filter_map(|r| match r {
            Record::Encounter(e) if stays.contains_key(&e.encounter_id) => Some(e.patient_id.as_str()),
            _ => None,
        })
        .collect();
    let mut want = Vec::new();
    for r in &recs {
        match r.clone() {
            Record::Patient(p) if in_stay.contains(p.patient_id.as_str()) => want.push(Record::Patient(Patient {
                provider_id: p.provider_id,
                patient_id: p.patient_id,
                sex: p.sex,
                birth_date: iso_birth(&p.birth_date),
                postal_code: p.postal_code,
                ..Default::default()
            })),
            Record::Encounter(mut e) if stays.contains_key(&e.encounter_id) => {
                e.encounter_id = stays[&e.encounter_id].clone();
                // The writer gives every stay one EF 入院基本料 line: a procedure on the first day.
                want.push(Record::Procedure(Procedure {
                    provider_id: e.provider_id.clone(),
                    patient_id: e.patient_id.clone(),
                    encounter_id: e.encounter_id.clone(),
                    procedure_date: e.admission_date,
                    day_known: true,
                    source: "EF".into(),
                    care_category: "90".into(),
                    burden_category: String::new(),
                    procedure_code: "190077410".into(),
                    procedure_name: "入院基本料".into(),
                    quantity: None,
                    points: None,
                    count: 1,
                }));
                want.push(Record::Encounter(e));
            }
            Record::Diagnosis(mut d) if stays.contains_key(&d.encounter_id) => {
                d.encounter_id = stays[&d.encounter_id].clone();
                want.push(Record::Diagnosis(d));
            }
            Record::Prescription(mut x) if stays.contains_key(&x.encounter_id) => {
                x.encounter_id = stays[&x.encounter_id].clone();
                want.push(Record::Prescription(x));
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
fn b2_dpc_short_lines_and_bad_dates_are_quarantined_with_their_column() {
    let text = "131234567\t0001\t20240110\t2024011\t0\tA000010\t1\t0\t19500101\t1\t100-0001\t\t\t\t\t\t\n131234567\t0001\t20240110\n";
    let mut got = Collected::default();
    dpc::read(text.as_bytes(), DpcFile::Form1, "f.txt", "p", &Masters::default(), &mut got).unwrap();
    assert_eq!(got.quarantined.len(), 2, "{:?}", got.quarantined);
    assert_eq!(
        (got.quarantined[0].location.as_str(), got.quarantined[0].field.as_str()),
        ("line 1", "3/4 退院・入院年月日")
    );
    assert!(got.quarantined[1].problem.contains("3 tab-separated columns"), "{}", got.quarantined[1].problem);
}

/// An EF line: the 31 columns, with the given (1-based) columns set.
fn ef_line(cols: &[(usize, &str)]) -> String {
    let mut c = vec![""; 31];
    for &(i, v) in cols {
        c[i - 1] = v;
    }
    c.join("\t")
}

#[test]
fn b2_dpc_ef_acts_and_materials_and_form1_surgery_become_procedures_and_materials() {
    let head = [(1, "131234567"), (2, "0001"), (3, "20240620"), (4, "20240610"), (30, "0")];
    let with = |more: &[(usize, &str)]| ef_line(&[&head[..], more].concat());
    let ef = [
        with(&[
            (5, "50"),
            (6, "1"),
            (7, "001"),
            (9, "150000110"),
            (11, "合成手術（架空）"),
            (14, "5000"),
            (15, "0"),
            (21, "1"),
            (24, "20240611"),
        ]),
        with(&[
            (5, "50"),
            (6, "1"),
            (7, "002"),
            (9, "730000001"),
            (11, "合成材料（架空）"),
            (12, "2"),
            (13, "019"),
            (14, "3200"),
            (15, "1"),
            (21, "1"),
            (24, "20240611"),
        ]),
        with(&[(5, "50"), (6, "2"), (7, "001"), (9, "150000120"), (21, "x"), (24, "20240612")]),
    ]
    .join("\r\n")
        + "\r\n";
    let ef = kiban_formats::encoding::encode_sjis(&ef).unwrap();
    let form1 =
        "131234567\t0001\t20240620\t20240610\t0\tA007010\t1\t1\t20240611\tK9999\t\t1\t\t\t\t\t合成手術（架空）\r\n";
    let form1 = kiban_formats::encoding::encode_sjis(form1).unwrap();
    let mut got = Collected::default();
    dpc::read(&ef[..], DpcFile::Ef, "ef.txt", "p", &Masters::default(), &mut got).unwrap();
    dpc::read(&form1[..], DpcFile::Form1, "form1.txt", "p", &Masters::default(), &mut got).unwrap();
    let d = |x| chrono::NaiveDate::from_ymd_opt(2024, 6, x).unwrap();
    let procs: Vec<_> = got
        .records
        .iter()
        .filter_map(|r| match r {
            Record::Procedure(p) => {
                Some((p.source.as_str(), p.procedure_code.as_str(), p.procedure_date, p.count, p.points))
            }
            _ => None,
        })
        .collect();
    assert_eq!(procs, [("EF", "150000110", d(11), 1, Some(5000)), ("様式1 A007010", "K9999", d(11), 1, None)]);
    let mats: Vec<_> = got
        .records
        .iter()
        .filter_map(|r| match r {
            Record::Material(m) => {
                Some((m.material_code.as_str(), m.quantity, m.unit_code.as_str(), m.unit_price, m.points))
            }
            _ => None,
        })
        .collect();
    // 円・点区分 1: column 14 is yen, so a unit price, not points.
    assert_eq!(mats, [("730000001", Some(2.0), "019", Some(3200.0), None)]);
    let q: Vec<_> = got.quarantined.iter().map(|q| (q.location.as_str(), q.field.as_str())).collect();
    assert_eq!(q, [("line 3", "21 行為回数")]);
}
