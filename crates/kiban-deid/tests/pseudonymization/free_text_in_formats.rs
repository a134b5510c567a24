//! S5 across formats: a name, address and phone planted in the free text of each source format
//! (HL7 OBX-5 in SS-MIX2, UKE SJ 症状詳記, FHIR Observation.valueString, 特定健診 CDA ST value)
//! do not survive conversion to the canonical `texts` table followed by pseudonymization under
//! the shipped texts policy with the identity table of the same conversion.

use std::path::Path;

use arrow::array::{Array, StringArray};
use kiban_deid::pseudo::{PseudoOptions, PseudoPolicy, ReleaseKey, identities_from, pseudonymize};
use kiban_deid::{Input, Output};
use kiban_formats::canonical::{Record, Text, records_from_synth};
use kiban_formats::convert::{InputFormat, convert, write_format};
use kiban_formats::masters::Masters;
use kiban_model::synth::{SynthConfig, generate_chunk};

/// The patient's own identity (a rare surname and a given name in no list), planted in the record.
const KANJI: &str = "鵜飼 紗耶";
const KANA: &str = "ウカイ サヤ";
const ADDRESS: &str = "北海道札幌市中央区北一条西9丁目2-13";
const PHONE: &str = "011-231-4466";

/// The free text: the patient's own name in kanji and in kana, family name alone with 様, address,
/// phone, and a third person (a katakana foreign name with さん) and a doctor with 医師.
fn note(kind: &str) -> String {
    format!(
        "{kind}：鵜飼紗耶様（ウカイ　サヤ）より電話あり、連絡先 {PHONE}。住所 {ADDRESS}。\
         鵜飼様は咳嗽と発熱が持続。付き添いの長女 ミハイロワさんに説明、担当 鷲尾医師。HbA1c 7.2%。"
    )
}

/// Synthetic records of a few patients with the first patient's identity replaced by the planted
/// one and a free-text note on their first encounter.
fn records() -> (Vec<Record>, String) {
    let cfg = SynthConfig { patients: 12, providers: 1, ..SynthConfig::default() };
    let mut recs = records_from_synth(&generate_chunk(&cfg, 0..12));
    let (pid, prov) = recs
        .iter()
        .find_map(|r| match r {
            Record::Encounter(e) => Some((e.patient_id.clone(), e.provider_id.clone())),
            _ => None,
        })
        .expect("an encounter");
    for r in &mut recs {
        if let Record::Patient(p) = r
            && p.patient_id == pid
        {
            p.name_kanji = KANJI.into();
            p.name_kana = KANA.into();
            p.address = ADDRESS.into();
            p.phone = PHONE.into();
        }
    }
    let enc = recs
        .iter()
        .find_map(|r| match r {
            Record::Encounter(e) if e.patient_id == pid => Some(e.clone()),
            _ => None,
        })
        .expect("encounter of the patient");
    recs.push(Record::Text(Text {
        provider_id: prov,
        patient_id: pid.clone(),
        encounter_id: enc.encounter_id.clone(),
        observed_date: enc.admission_date,
        code: "1".into(),
        name: "経過記録".into(),
        text: note("経過"),
    }));
    (recs, pid)
}

fn texts_after(format: InputFormat) -> Vec<String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let (recs, _) = records();
    let src = dir.path().join("src");
    let mut masters = Masters::default();
    write_format(format, &recs, &src, 0, &mut masters).expect("written");
    if !masters.disease.is_empty() || !masters.drug.is_empty() {
        masters.save_dir(&src.join("masters")).expect("masters");
    }
    let out = dir.path().join("out");
    convert(format, &src, "prov-a", &out.join("clinical"), &out.join("identity"), &out.join("quarantine"))
        .expect("converted");
    let texts = out.join("clinical/texts/part-00000.parquet");
    assert!(texts.exists(), "{format:?}: the reader put no free text into the texts table");
    let before: Vec<String> = read_texts(&Input::Parquet(texts.clone()));
    assert!(
        before.iter().any(|t| t.contains("鵜飼") && t.contains(PHONE)),
        "{format:?}: the planted note is not in the converted texts: {before:?}"
    );
    let policy = PseudoPolicy::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/texts_pseudonymized.toml"))
        .expect("shipped texts policy");
    let mut opts = PseudoOptions::new(ReleaseKey::new(vec![3; 32]).expect("key"));
    opts.identities = identities_from(&Input::Parquet(out.join("identity/patients/part-00000.parquet")), "patient_id")
        .expect("identities");
    let o = pseudonymize(&policy, &Input::Parquet(texts), &Output::Memory, &opts).expect("pseudonymized");
    o.batches
        .iter()
        .flat_map(|b| {
            let a =
                b.column(b.schema().index_of("text").expect("text")).as_any().downcast_ref::<StringArray>().expect("s");
            (0..a.len()).map(|r| a.value(r).to_owned()).collect::<Vec<_>>()
        })
        .collect()
}

fn read_texts(input: &Input) -> Vec<String> {
    let mut v = Vec::new();
    kiban_deid::io::for_each_batch(input, b',', |b| {
        let a = kiban_deid::io::strings(b, b.schema().index_of("text").expect("text column"));
        v.extend((0..a.len()).map(|r| a.value(r).to_owned()));
        Ok(())
    })
    .expect("read");
    v
}

fn assert_clean(format: InputFormat) {
    let texts = texts_after(format);
    let note = texts.iter().find(|t| t.contains("咳嗽")).unwrap_or_else(|| panic!("{format:?}: note lost: {texts:?}"));
    for planted in
        ["鵜飼", "紗耶", "ウカイ", "サヤ", "札幌市中央区北一条", "9丁目2-13", "231-4466", "ミハイロワ", "鷲尾"]
    {
        assert!(!note.contains(planted), "{format:?}: {planted:?} survived: {note}");
    }
    // Clinical content stays.
    assert!(note.contains("HbA1c 7.2%") && note.contains("発熱"), "{format:?}: clinical text lost: {note}");
}

#[test]
fn s5_free_text_of_ssmix2_hl7_obx5_is_deidentified_after_conversion() {
    assert_clean(InputFormat::Ssmix2);
}

#[test]
fn s5_free_text_of_uke_sj_is_deidentified_after_conversion() {
    assert_clean(InputFormat::Uke);
}

#[test]
fn s5_free_text_of_fhir_observation_is_deidentified_after_conversion() {
    assert_clean(InputFormat::Fhir);
}

#[test]
fn s5_free_text_of_cda_is_deidentified_after_conversion() {
    assert_clean(InputFormat::Cda);
}
