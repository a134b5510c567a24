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

fn written(variant: Variant) -> (String, Masters, Vec<Record>) {
    let recs = of_provider(&synth_records(10), "prov-b");
    let mut masters = Masters::default();
    let mut bytes = Vec::new();
    uke::write(&mut bytes, &recs, "1312345", variant, &mut masters).unwrap();
    (encoding_rs::SHIFT_JIS.decode(&bytes).0.into_owned(), masters, recs)
}

#[test]
fn b2_uke_writer_follows_the_record_layouts_of_the_spec() {
    let (text, _, recs) = written(Variant::Dpc);
    let enc = recs.iter().find_map(|r| if let Record::Encounter(e) = r { Some(e) } else { None }).unwrap();
    let re: Vec<&str> = text.lines().find(|l| l.starts_with("RE,")).unwrap().split(',').collect();
    // RE.20 請求情報 (the provider's own field) holds the encounter id; RE.18 検索番号 stays empty.
    assert_eq!((re[18], re[20]), ("", enc.encounter_id.as_str()));
    assert_eq!(re[13], enc.patient_id, "RE.13 カルテ番号等");
    let bu: Vec<&str> = text.lines().find(|l| l.starts_with("BU,")).unwrap().split(',').collect();
    assert_eq!(bu[1].len(), 14, "診断群分類番号 is 14 characters");
    assert_eq!(bu[2].len(), 7, "今回入院年月日 GYYMMDD");
    let iy: Vec<&str> = text.lines().find(|l| l.starts_with("IY,")).unwrap().split(',').collect();
    assert_eq!(iy.len(), 44, "IY: id, 12 items, 31 算定日");
}

#[test]
fn b2_uke_reads_seireki_dates_of_current_files() {
    // Files written under the 令和 revisions carry 西暦 YYYYMM / YYYYMMDD; older ones 和暦 GYYMM(DD).
    let (text, masters, _) = written(Variant::Medical);
    let mut out = String::new();
    for l in text.lines() {
        let mut f: Vec<String> = l.split(',').map(str::to_owned).collect();
        let wareki = |s: &str| kiban_model::wareki::WarekiDate::parse(s).unwrap().date().format("%Y%m%d").to_string();
        match f[0].as_str() {
            "RE" => {
                f[3] = wareki(&format!("{}01", f[3]))[..6].to_owned();
                f[6] = wareki(&f[6]);
            }
            "SY" => f[2] = wareki(&f[2]),
            _ => {}
        }
        out += &f.join(",");
        out += "\r\n";
    }
    let sj = kiban_formats::encoding::encode_sjis(&out).unwrap();
    let sj_w = kiban_formats::encoding::encode_sjis(&text).unwrap();
    let (mut w, mut s) = (Collected::default(), Collected::default());
    uke::read(&sj_w[..], "w.uke", "prov-b", &masters, &mut w).unwrap();
    uke::read(&sj[..], "s.uke", "prov-b", &masters, &mut s).unwrap();
    assert!(s.quarantined.is_empty(), "{:?}", s.quarantined);
    assert_eq!(sorted(s.records), sorted(w.records));
}
