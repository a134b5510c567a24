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

fn read_one(text: &str) -> Collected {
    let mut c = Collected::default();
    let bytes = kiban_formats::hl7::encode_message(text).unwrap();
    kiban_formats::hl7::read_bytes(&bytes, &kiban_formats::hl7::Origin { file: "m", provider_id: "prov-x" }, &mut c);
    c
}

#[test]
fn b2_hl7_jahis_fields_map_to_identity_and_clinical_rows() {
    let adt = "MSH|^~\\&|HIS|H|||20240401101010||ADT^A08^ADT_A01|1|P|2.5||||||~ISO IR87||ISO 2022-1994\r\
               EVN||20240401\r\
               PID|||0000123^^^^PI||患者^太郎^^^^^L^I~カンジャ^タロウ^^^^^L^P||19480405|M|||^^渋谷区^東京都^1510071^JPN^H^本町三丁目１２－１|||^WPN^PH^^^^^^^^^03-1234-5678\r\
               IN1|1|C0|06132013^^^^IN|||||||記号１|番号２||||||||||||||||||||||||||||||||||||||01\r";
    let c = read_one(adt);
    assert!(c.quarantined.is_empty(), "{:?}", c.quarantined);
    let Record::Patient(p) = &c.records[0] else { panic!() };
    assert_eq!((p.name_kanji.as_str(), p.name_kana.as_str()), ("患者\u{3000}太郎", "カンジャ\u{3000}タロウ"));
    assert_eq!((p.birth_date.as_str(), p.sex.as_str(), p.postal_code.as_str()), ("1948-04-05", "1", "1510071"));
    assert_eq!(p.address, "東京都渋谷区本町三丁目１２－１");
    assert_eq!(p.phone, "03-1234-5678", "PID-14 when PID-13 is empty, XTN.12 unformatted");
    assert_eq!(
        (p.insurer_number.as_str(), p.card_symbol.as_str(), p.card_number.as_str(), p.card_branch.as_str()),
        ("06132013", "記号１", "番号２", "01")
    );

    let pv1 = format!("PV1||I{}01{}V1{}20240401|20240410", "|".repeat(8), "|".repeat(9), "|".repeat(25));
    let a03 = format!("MSH|^~\\&|HIS|H|||20240410||ADT^A03^ADT_A03|2|P|2.5\rPID|||0000123^^^^PI\r{pv1}\r");
    let c = read_one(&a03);
    let Record::Encounter(e) = &c.records[0] else { panic!("{:?}", c) };
    assert_eq!((e.encounter_type.as_str(), e.encounter_id.as_str()), ("入院", "V1"));
    assert_eq!(e.discharge_date.unwrap().to_string(), "2024-04-10");

    let ras = "MSH|^~\\&|HIS|H|||20240402||RAS^O17^RAS_O17|3|P|2.5\rPID|||0000123^^^^PI\rORC|RE|O1\rRXA|0|1|20240402090000||620000001^セファゾリン注射用１ｇ^HOT|1\rRXR|IV\r";
    let c = read_one(ras);
    let Record::Prescription(x) = &c.records[0] else { panic!("{:?}", c) };
    assert_eq!(
        (x.drug_code.as_str(), x.route.as_str(), x.prescribed_date.to_string()),
        ("620000001", "injection", "2024-04-02".into())
    );

    let oru = "MSH|^~\\&|HIS|H|||20240403||ORU^R01^ORU_R01|4|P|2.5\rPID|||0000123^^^^PI\rOBR|1||||||20240403\rOBX|1|FT|R1^読影所見^99L||両肺に異常影なし。~心拡大なし。||||||F\r";
    let c = read_one(oru);
    let Record::Text(t) = &c.records[0] else { panic!("{:?}", c) };
    assert_eq!(t.text, "両肺に異常影なし。\n心拡大なし。", "OBX-5 repetitions kept as lines");
}

#[test]
fn b2_ssmix2_writes_procedures_materials_public_expenses_and_receipts_as_dft_and_reads_them_back() {
    let (uke, _) = crate::uke::sample();
    let want = crate::fhir::receipt_side(&uke.records);
    assert!(want.iter().any(|r| matches!(r, Record::Procedure(p) if !p.day_known)), "a month-only procedure");
    let tmp = tempfile::tempdir().unwrap();
    let st = ssmix2::write(tmp.path(), &uke.records).unwrap();
    assert!(st.refused.is_empty(), "{:?}", st.refused);
    let mut got = Collected::default();
    ssmix2::walk(tmp.path(), "prov-x", &mut got);
    assert!(got.quarantined.is_empty(), "{:?}", got.quarantined);
    assert_eq!(sorted(crate::fhir::receipt_side(&got.records)), sorted(want));
    // The 公費 numbers come back on the identity side only (ADT^A08 IN1), the programmes apart.
    assert_eq!(got.of(kiban_formats::Table::PublicExpenseIds).count(), 2);
}

#[test]
fn b2_hl7_bad_dft_fields_are_quarantined_by_segment_and_field() {
    let msg = "MSH|^~\\&|X|X|||20240601||DFT^P03^DFT_P03|1|P|2.5\rPID|||P1^^^^PI\rPV1||O\r\
               FT1|1|||2024061||CG|111000110^初診料^99KSI|||1\r\
               FT1|1|||20240601||CG|730000001^x^99KTO|||two\r\
               FT1|1|||20240601||CG|1^x^LOCAL|||1\r\
               IN1|1|54^^99KPE||||||||||2024\r\
               ZRC|1|1112|20240601||||x\r\
               FT1|1|||20240601^20240630||CG|111000110^初診料^99KSI|||3\rZFT|UKE SI|12|1|1.5|291\r";
    let mut got = Collected::default();
    let o = kiban_formats::hl7::Origin { file: "m", provider_id: "prov-x" };
    kiban_formats::hl7::read_bytes(&kiban_formats::hl7::encode_message(msg).unwrap(), &o, &mut got);
    let fields: Vec<&str> = got.quarantined.iter().map(|q| q.field.as_str()).collect();
    assert_eq!(fields, ["FT1-4", "FT1-10", "FT1-7", "IN1-12", "ZRC-7"]);
    let Some(Record::Procedure(p)) = got.records.first() else { panic!("{:?}", got.records) };
    assert!(!p.day_known && p.count == 3 && p.points == Some(291) && p.quantity == Some(1.5), "{p:?}");
    assert_eq!(p.provider_id, "prov-x");
}
