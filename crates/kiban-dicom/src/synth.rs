//! Synthetic DICOM series for the demo and tests: small head CT slices of a synthetic person with the
//! name in kanji and katakana (ISO 2022 IR 87), a birth date, IDs and a Japanese study description that
//! repeats the name — everything the de-identifier must remove. Never real data.

use kiban_formats::dicom::{CharacterSet, DataSet, DicomFile, Element, Tag, TransferSyntax, Value, Vr};
use sha2::{Digest, Sha256};

/// Who the series belongs to (from the synthetic population).
#[derive(Debug, Clone)]
pub struct SynthPatient {
    /// Family and given name in kanji.
    pub kanji: (String, String),
    /// Family and given name in katakana.
    pub kana: (String, String),
    /// Hospital patient ID.
    pub patient_id: String,
    /// Birth date `YYYYMMDD`.
    pub birth: String,
    /// `M` or `F`.
    pub sex: String,
    /// Study date `YYYYMMDD`.
    pub study_date: String,
    /// Hospital name.
    pub hospital: String,
}

fn uid(seed: &str) -> String {
    let d = Sha256::digest(seed.as_bytes());
    format!("2.25.{}", u128::from_be_bytes(d[..16].try_into().expect("16 bytes")))
}

fn el(tag: Tag, vr: Vr, v: &[u8]) -> Element {
    let mut b = v.to_vec();
    if b.len() % 2 == 1 {
        b.push(if vr == Vr::UI { 0 } else { b' ' });
    }
    Element { tag, vr, value: Value::Bytes(b) }
}

/// `slices` CT images of 32×32 pixels (16-bit), Part 10 encoded.
pub fn head_ct_series(p: &SynthPatient, slices: u16) -> Vec<Vec<u8>> {
    let cs = CharacterSet::parse("\\ISO 2022 IR 87");
    let jp = |s: &str| cs.encode(s).expect("synthetic names are JIS X 0208");
    let study = uid(&format!("study/{}/{}", p.patient_id, p.study_date));
    let series = uid(&format!("series/{}/{}", p.patient_id, p.study_date));
    let name = format!("{}^{}={}^{}", p.kanji.0, p.kanji.1, p.kana.0, p.kana.1);
    (1..=slices)
        .map(|i| {
            let sop = uid(&format!("sop/{}/{}/{i}", p.patient_id, p.study_date));
            let mut ds = DataSet::default();
            let us = |v: u16| v.to_le_bytes().to_vec();
            let px: Vec<u8> =
                (0..32u16 * 32).flat_map(|k| ((k % 32) * 40 + (k / 32) * 8 + i * 5).to_le_bytes()).collect();
            for e in [
                el(Tag::SPECIFIC_CHARACTER_SET, Vr::CS, b"\\ISO 2022 IR 87"),
                el(Tag(0x0008, 0x0016), Vr::UI, b"1.2.840.10008.5.1.4.1.1.2"),
                el(Tag(0x0008, 0x0018), Vr::UI, sop.as_bytes()),
                el(Tag(0x0008, 0x0020), Vr::DA, p.study_date.as_bytes()),
                el(Tag(0x0008, 0x0030), Vr::TM, b"101500"),
                el(Tag(0x0008, 0x0050), Vr::SH, format!("A{}", &p.patient_id).as_bytes()),
                el(Tag(0x0008, 0x0060), Vr::CS, b"CT"),
                el(Tag(0x0008, 0x0070), Vr::LO, b"KIBAN SYNTH"),
                el(Tag(0x0008, 0x0080), Vr::LO, &jp(&p.hospital)),
                el(Tag(0x0008, 0x0090), Vr::PN, &jp("佐藤^一郎")),
                el(Tag(0x0008, 0x1030), Vr::LO, &jp(&format!("頭部CT {}{}様", p.kanji.0, p.kanji.1))),
                el(Tag(0x0008, 0x103E), Vr::LO, b"AXIAL 5mm"),
                el(Tag(0x0010, 0x0010), Vr::PN, &jp(&name)),
                el(Tag(0x0010, 0x0020), Vr::LO, p.patient_id.as_bytes()),
                el(Tag(0x0010, 0x0030), Vr::DA, p.birth.as_bytes()),
                el(Tag(0x0010, 0x0040), Vr::CS, p.sex.as_bytes()),
                el(Tag(0x0018, 0x0015), Vr::CS, b"HEAD"),
                el(Tag(0x0020, 0x000D), Vr::UI, study.as_bytes()),
                el(Tag(0x0020, 0x000E), Vr::UI, series.as_bytes()),
                el(Tag(0x0020, 0x0013), Vr::IS, i.to_string().as_bytes()),
                el(Tag(0x0028, 0x0002), Vr::US, &us(1)),
                el(Tag(0x0028, 0x0004), Vr::CS, b"MONOCHROME2"),
                el(Tag(0x0028, 0x0010), Vr::US, &us(32)),
                el(Tag(0x0028, 0x0011), Vr::US, &us(32)),
                el(Tag(0x0028, 0x0100), Vr::US, &us(16)),
                el(Tag(0x0028, 0x0101), Vr::US, &us(12)),
                el(Tag(0x0028, 0x0102), Vr::US, &us(11)),
                el(Tag(0x0028, 0x0103), Vr::US, &us(0)),
                Element { tag: Tag::PIXEL_DATA, vr: Vr::OW, value: Value::Bytes(px) },
            ] {
                ds.put(e);
            }
            let meta = DataSet {
                elements: vec![
                    Element { tag: Tag(0x0002, 0x0001), vr: Vr::OB, value: Value::Bytes(vec![0, 1]) },
                    el(Tag(0x0002, 0x0002), Vr::UI, b"1.2.840.10008.5.1.4.1.1.2"),
                    el(Tag(0x0002, 0x0003), Vr::UI, sop.as_bytes()),
                    el(Tag::TRANSFER_SYNTAX, Vr::UI, b"1.2.840.10008.1.2.1"),
                ],
            };
            let ts = TransferSyntax::from_uid("1.2.840.10008.1.2.1").expect("known");
            kiban_formats::dicom::write(&DicomFile { preamble: vec![0; 128], meta, ts, dataset: ds })
        })
        .collect()
}
