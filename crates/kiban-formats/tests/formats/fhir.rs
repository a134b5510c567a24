//! FHIR R4 / JP-Core: write → read → the same records; the public R4 examples read without panics.

use kiban_formats::canonical::{Collected, Record, Table};
use kiban_formats::fhir;

use crate::common::{iso_birth, name_form, of_provider, sorted, synth_records};

#[test]
fn b2_fhir_round_trip_keeps_every_record() {
    let all = synth_records(40);
    for prov in ["prov-a", "prov-b", "prov-c"] {
        let recs = of_provider(&all, prov);
        let mut bytes = Vec::new();
        fhir::write_ndjson(&mut bytes, &recs).unwrap();
        let mut got = Collected::default();
        fhir::read_ndjson(&bytes[..], "x.ndjson", prov, &mut got).unwrap();
        assert!(got.quarantined.is_empty(), "{:?}", got.quarantined);
        let want: Vec<Record> = recs
            .iter()
            .cloned()
            .map(|r| match r {
                Record::Patient(mut p) => {
                    p.birth_date = iso_birth(&p.birth_date);
                    // FHIR keeps family and given apart; kiban joins them with one full-width space.
                    p.name_kanji = name_form(&p.name_kanji).replace('\u{FF70}', "ー");
                    p.name_kana = p.name_kana.replace(' ', "\u{3000}");
                    Record::Patient(p)
                }
                o => o,
            })
            .collect();
        let (got, want) = (sorted(got.records), sorted(want));
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g, w);
        }
    }
}

#[test]
fn b2_fhir_jp_core_names_by_representation_extension() {
    let doc = serde_json::json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:p1", "resource": {"resourceType": "Patient", "id": "p1",
            "identifier": [{"system": "urn:oid:1.2.392.100495.20.3.51.11312345678", "value": "00000123"}],
            "name": [
                {"extension": [{"url": fhir::EN_REPRESENTATION, "valueCode": "SYL"}], "family": "ヤマダ", "given": ["タロウ"]},
                {"extension": [{"url": fhir::EN_REPRESENTATION, "valueCode": "IDE"}], "family": "山田", "given": ["太郎"]}],
            "gender": "male", "birthDate": "1970-01-02"}},
        {"resource": {"resourceType": "Coverage", "beneficiary": {"reference": "urn:uuid:p1"},
            "identifier": [{"system": fhir::INSURED_ID, "value": "06139999:記号:12345:01"}]}},
        {"resource": {"resourceType": "Observation", "subject": {"reference": "urn:uuid:p1"}, "code": {"text": "所見"}}}
    ]});
    let mut got = Collected::default();
    fhir::read_json(doc.to_string().as_bytes(), "b.json", "prov-x", &mut got);
    let p = got.of(Table::Patients).next().unwrap();
    let Record::Patient(p) = p else { unreachable!() };
    assert_eq!((p.name_kanji.as_str(), p.name_kana.as_str()), ("山田\u{3000}太郎", "ヤマダ\u{3000}タロウ"));
    assert_eq!(
        (p.insurer_number.as_str(), p.card_symbol.as_str(), p.card_number.as_str()),
        ("06139999", "記号", "12345")
    );
    assert_eq!(p.card_branch, "01");
    assert_eq!(got.quarantined.len(), 1, "the Observation without a date is quarantined");
    assert_eq!(got.quarantined[0].location, "document entry 3 (Observation)");
    assert_eq!(got.quarantined[0].field, "Observation.effectiveDateTime");
}

#[test]
fn b2_fhir_public_r4_examples_read_or_quarantine_never_vanish() {
    let Some(dir) = crate::common::fixture_dir("fhir-r4-examples") else { return };
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            ["Patient-", "Encounter-", "Condition-", "MedicationRequest-", "Observation-", "Coverage-", "Bundle-"]
                .iter()
                .any(|t| n.starts_with(t))
                && n.ends_with(".json")
        })
        .collect();
    files.sort();
    assert!(files.len() > 150, "{} files", files.len());
    let (mut records, mut quarantined) = (0, 0);
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let mut got = Collected::default();
        fhir::read_json(&std::fs::read(f).unwrap(), &name, "prov-x", &mut got);
        records += got.records.len();
        quarantined += got.quarantined.len();
        let single = ["Patient-", "Encounter-", "Condition-", "MedicationRequest-", "Observation-"];
        if single.iter().any(|t| name.starts_with(t)) {
            // One clinical resource per file: it is a record or a quarantine entry, never nothing.
            assert!(got.records.len() + got.quarantined.len() >= 1, "{name} vanished");
        }
        for q in &got.quarantined {
            if std::env::var("SHOWQ").is_ok() {
                eprintln!("Q {} | {} | {}", q.field, q.problem.chars().take(60).collect::<String>(), q.file);
            }
            assert!(!q.field.is_empty() && !q.problem.is_empty() && q.file == name);
        }
        if name == "Patient-example.json" {
            let Some(Record::Patient(p)) = got.records.first() else { panic!("{name}: {:?}", got.quarantined) };
            assert_eq!((p.patient_id.as_str(), p.name_kanji.as_str()), ("12345", "Chalmers\u{3000}Peter James"));
            assert_eq!((p.sex.as_str(), p.birth_date.as_str()), ("1", "1974-12-25"));
        }
    }
    eprintln!("{} files: {records} records, {quarantined} quarantined", files.len());
    assert!(records > 150, "{records}");
}

/// A Bundle of `n` Patient entries produced on the fly, counting the bytes handed out.
struct BigBundle {
    n: usize,
    next: usize,
    pending: Vec<u8>,
    served: std::rc::Rc<std::cell::Cell<u64>>,
}

impl std::io::Read for BigBundle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pending.is_empty() {
            let i = self.next;
            self.next += 1;
            self.pending = if i == 0 {
                b"{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"entry\":[".to_vec()
            } else if i <= self.n {
                format!(
                    "{}{{\"fullUrl\":\"urn:uuid:p{i}\",\"resource\":{{\"resourceType\":\"Patient\",\"id\":\"p{i}\",\
                     \"identifier\":[{{\"value\":\"P{i}\"}}],\"gender\":\"female\",\"birthDate\":\"1970-01-01\"}}}}",
                    if i > 1 { "," } else { "" }
                )
                .into_bytes()
            } else if i == self.n + 1 {
                b"]}".to_vec()
            } else {
                return Ok(0);
            };
        }
        let k = buf.len().min(self.pending.len());
        buf[..k].copy_from_slice(&self.pending[..k]);
        self.pending.drain(..k);
        self.served.set(self.served.get() + k as u64);
        Ok(k)
    }
}

#[test]
fn b2_fhir_bundle_json_streams_entry_by_entry() {
    use std::cell::Cell;
    use std::rc::Rc;
    let n = 20_000;
    let served = Rc::new(Cell::new(0u64));
    let open = || {
        served.set(0);
        Ok(BigBundle { n, next: 0, pending: Vec::new(), served: served.clone() })
    };
    // Learn the document's size from one full read.
    std::io::copy(&mut open().unwrap(), &mut std::io::sink()).unwrap();
    let total = served.get();
    struct FirstAt {
        served: Rc<Cell<u64>>,
        first: Option<u64>,
        n: u64,
    }
    impl kiban_formats::Sink for FirstAt {
        fn record(&mut self, _: Record) {
            self.first.get_or_insert(self.served.get());
            self.n += 1;
        }
        fn quarantine(&mut self, q: kiban_formats::Quarantined) {
            panic!("{q:?}");
        }
    }
    let mut sink = FirstAt { served: served.clone(), first: None, n: 0 };
    let st = fhir::read_json_stream(open, "big.json", "prov-x", &mut sink).unwrap();
    assert_eq!((st.resources, sink.n), (n as u64, n as u64));
    // The first Patient came out when a small part of the document had been read: the Bundle is
    // never held whole (each pass holds one entry).
    let first = sink.first.unwrap();
    assert!(first < total / 100, "first record after {first} of {total} bytes");
}

/// The receipt-side records (procedures, materials, 公費, receipts) of the hand-made UKE sample.
pub(crate) fn receipt_side(records: &[Record]) -> Vec<Record> {
    let t = [Table::Procedures, Table::Materials, Table::PublicExpenses, Table::PublicExpenseIds, Table::Receipts];
    records.iter().filter(|r| t.contains(&r.table())).cloned().collect()
}

#[test]
fn b2_fhir_writes_procedures_materials_public_expenses_and_receipts_and_reads_them_back() {
    let (uke, _) = crate::uke::sample();
    let want = receipt_side(&uke.records);
    for t in [Table::Procedures, Table::Materials, Table::PublicExpenses, Table::PublicExpenseIds, Table::Receipts] {
        assert!(want.iter().any(|r| r.table() == t), "the sample has {t:?}");
    }
    assert!(want.iter().any(|r| matches!(r, Record::Procedure(p) if !p.day_known)), "a month-only procedure");
    let mut bytes = Vec::new();
    fhir::write_ndjson(&mut bytes, &uke.records).unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    for shape in ["\"Procedure\"", "\"ChargeItem\"", "\"Claim\"", fhir::PUBLIC_EXPENSE, "performedPeriod"] {
        assert!(text.contains(shape), "{shape} written");
    }
    let mut got = Collected::default();
    fhir::read_ndjson(&bytes[..], "x.ndjson", "prov-x", &mut got).unwrap();
    assert!(got.quarantined.is_empty(), "{:?}", got.quarantined);
    assert_eq!(sorted(receipt_side(&got.records)), sorted(want));
    // The 公費 numbers stay apart from the programmes: identity records, not clinical ones.
    let ids: Vec<_> = got.of(Table::PublicExpenseIds).collect();
    assert_eq!(ids.len(), 2);
    assert!(got.of(Table::Patients).count() >= 2, "the Patient is not confused with a 公費 Coverage");
}

#[test]
fn b2_fhir_bad_receipt_resources_are_quarantined_by_element() {
    let bundle = serde_json::json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:p", "resource": {"resourceType": "Patient", "identifier": [{"value": "P1"}]}},
        {"resource": {"resourceType": "Procedure", "subject": {"reference": "urn:p"},
            "code": {"coding": [{"system": fhir::RECEIPT_PROCEDURE, "code": "111000110"}]}}},
        {"resource": {"resourceType": "ChargeItem", "subject": {"reference": "urn:p"}, "occurrenceDateTime": "2024-06-01",
            "code": {"coding": [{"code": "730000001"}]}, "quantity": {"value": -1}}},
        {"resource": {"resourceType": "Coverage", "beneficiary": {"reference": "urn:p"},
            "type": {"coding": [{"system": fhir::PUBLIC_EXPENSE, "code": "54"}]}, "period": {"start": "2024-06-01"},
            "order": 1, "extension": [{"url": format!("{}points", fhir::KIBAN_EXT), "valueInteger": "many"}]}},
        {"resource": {"resourceType": "Claim", "patient": {"reference": "urn:p"}}},
    ]});
    let mut got = Collected::default();
    fhir::read_json(bundle.to_string().as_bytes(), "b.json", "prov-x", &mut got);
    let fields: Vec<&str> = got.quarantined.iter().map(|q| q.field.as_str()).collect();
    assert_eq!(
        fields,
        ["Procedure.performed[x]", "ChargeItem.quantity", "Coverage.extension[points]", "Claim.billablePeriod.start"]
    );
    assert_eq!(got.of(Table::Patients).count(), 1, "the Patient itself is kept");
}
