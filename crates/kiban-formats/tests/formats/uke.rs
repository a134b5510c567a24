//! UKE receipts (医科 and DPC): write → read → the same records; bad input → quarantine.

use kiban_formats::canonical::{Collected, Material, Procedure, PublicExpense, Record, Table};
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
                Some(vec![Record::Patient(p)])
            }
            Record::Encounter(mut e) => {
                if variant == Variant::Medical {
                    e.discharge_date = None;
                }
                // The writer dates each encounter by one SI 初診料 line: a procedure on its first day.
                let si = Record::Procedure(Procedure {
                    provider_id: e.provider_id.clone(),
                    patient_id: e.patient_id.clone(),
                    encounter_id: e.encounter_id.clone(),
                    procedure_date: e.admission_date,
                    day_known: true,
                    source: "UKE SI".into(),
                    care_category: "12".into(),
                    burden_category: "1".into(),
                    procedure_code: "112007410".into(),
                    procedure_name: "初診料".into(),
                    quantity: None,
                    points: Some(73),
                    count: 1,
                });
                Some(vec![Record::Encounter(e), si])
            }
            Record::Lab(_) => None,
            other => Some(vec![other]),
        })
        .flatten()
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
    // One receipts row per receipt, with what the writer put in RE and HO.
    let (receipts, records): (Vec<Record>, Vec<Record>) =
        got.records.into_iter().partition(|r| matches!(r, Record::Receipt(_)));
    got.records = records;
    assert_eq!(receipts.len() as u64, n);
    for r in &receipts {
        let Record::Receipt(r) = r else { unreachable!() };
        assert_eq!((r.benefit_ratio.as_str(), r.insurance_days, r.insurance_points), ("70", Some(1), Some(0)));
        let dpc = if variant == Variant::Dpc { "00000000000000" } else { "" };
        assert_eq!(r.dpc_code, dpc);
    }
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

pub(crate) fn sample() -> (Collected, uke::UkeStats) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/RECEIPTC-synthetic.UKE");
    let bytes = std::fs::read(path).unwrap();
    let mut masters = Masters::default();
    masters.drug.insert("620000001", "合成錠（架空）", "9999999F1000", "oral");
    masters.procedure.insert("111000110", "初診料", "", "");
    let mut got = Collected::default();
    let st = uke::read(&bytes[..], "RECEIPTC-synthetic.UKE", "prov-x", &masters, &mut got).unwrap();
    (got, st)
}

fn day(d: u32) -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(2024, 6, d).unwrap()
}

#[test]
fn b2_uke_si_and_to_lines_become_procedures_and_materials_per_marked_day() {
    let (got, st) = sample();
    assert_eq!(st.receipts, 2);
    let procs: Vec<&Procedure> =
        got.records.iter().filter_map(|r| if let Record::Procedure(p) = r { Some(p) } else { None }).collect();
    let brief: Vec<_> = procs
        .iter()
        .map(|p| (p.encounter_id.as_str(), p.procedure_code.as_str(), p.procedure_date, p.day_known, p.count, p.points))
        .collect();
    assert_eq!(
        brief,
        [
            ("ENC-0001", "111000110", day(3), true, 1, Some(291)),
            ("ENC-0001", "160000310", day(3), true, 1, Some(11)),
            ("ENC-0001", "160000310", day(17), true, 2, Some(11)),
            // No 算定日 marked: the month, with the line's 回数.
            ("ENC-0002", "190077410", day(1), false, 30, Some(1500)),
        ]
    );
    assert_eq!((procs[0].procedure_name.as_str(), procs[0].care_category.as_str()), ("初診料", "12"));
    assert_eq!(
        (procs[1].quantity, procs[1].source.as_str(), procs[1].burden_category.as_str()),
        (Some(2.0), "UKE SI", "1")
    );
    let mats: Vec<&Material> =
        got.records.iter().filter_map(|r| if let Record::Material(m) = r { Some(m) } else { None }).collect();
    assert_eq!(mats.len(), 1, "{mats:?}");
    let m = mats[0];
    assert_eq!(
        (m.material_code.as_str(), m.used_date, m.quantity, m.unit_code.as_str(), m.unit_price, m.points, m.count),
        ("730000001", day(17), Some(1.5), "019", Some(120.5), Some(24), 1)
    );
    assert_eq!((m.material_name.as_str(), m.product_name.as_str()), ("合成カテーテル（架空）", "架空社　合成－０１"));
}

#[test]
fn b2_uke_ko_lines_give_public_expenses_with_the_numbers_on_the_identity_side() {
    let (got, _) = sample();
    let ko: Vec<&PublicExpense> =
        got.records.iter().filter_map(|r| if let Record::PublicExpense(k) = r { Some(k) } else { None }).collect();
    let brief: Vec<_> = ko
        .iter()
        .map(|k| (k.rank, k.program_code.as_str(), k.prefecture_code.as_str(), k.days, k.points, k.public_burden))
        .collect();
    assert_eq!(brief, [(1, "54", "13", Some(2), Some(612), Some(1200)), (2, "21", "13", Some(1), Some(291), None)]);
    assert_eq!((ko[0].outpatient_copay, ko[0].service_month), (Some(500), day(1)));
    let ids: Vec<(&str, &str)> = got
        .records
        .iter()
        .filter_map(|r| match r {
            Record::PublicExpenseId(i) => Some((i.payer_number.as_str(), i.recipient_number.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(ids, [("54136015", "1234566"), ("21136011", "7654321")]);
    assert!(Table::PublicExpenseIds.is_identity() && !Table::PublicExpenses.is_identity());
    // The clinical table carries no payer or recipient number.
    for f in Table::PublicExpenses.schema().fields() {
        assert!(!["payer_number", "recipient_number"].contains(&f.name().as_str()), "{}", f.name());
    }
}

#[test]
fn b2_uke_co_and_inline_comments_become_texts() {
    let (got, _) = sample();
    let texts: Vec<(&str, &str, chrono::NaiveDate, &str)> = got
        .records
        .iter()
        .filter_map(|r| match r {
            Record::Text(t) => Some((t.code.as_str(), t.name.as_str(), t.observed_date, t.text.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(
        texts,
        [
            ("820100001", "コメント（SI 111000110）", day(3), "初診時刻１０時"),
            ("830100002", "コメント（TO 730000001）", day(17), "左手背"),
            ("810000001", "コメント", day(3), "病状説明を行った"),
            ("820100005", "コメント（IY 620000001）", day(3), "一包化"),
        ]
    );
}

#[test]
fn b2_uke_bad_ko_si_and_to_fields_are_quarantined_by_name() {
    let (got, _) = sample();
    let q: Vec<(&str, &str)> = got.quarantined.iter().map(|q| (q.location.as_str(), q.field.as_str())).collect();
    assert_eq!(q, [("line 14", "KO.1 負担者番号"), ("line 16", "SI.17 算定日 5日"), ("line 17", "TO.4 使用量")]);
    // The rest of that receipt is read: its encounter and month-only procedure are there.
    assert!(got.records.iter().any(|r| matches!(r, Record::Encounter(e) if e.encounter_id == "ENC-0002")));
}

#[test]
fn b2_uke_re_ho_totals_become_one_receipt_row_each() {
    let (got, _) = sample();
    let rows: Vec<_> = got
        .records
        .iter()
        .filter_map(|r| match r {
            Record::Receipt(x) => Some((
                x.encounter_id.as_str(),
                x.receipt_type.as_str(),
                x.service_month,
                x.benefit_ratio.as_str(),
                x.insurance_days,
                x.insurance_points,
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("ENC-0001", "1112", day(1), "70", Some(2), Some(612)),
            ("ENC-0002", "1111", day(1), "70", Some(30), Some(9000))
        ]
    );
}

#[test]
fn b2_uke_dpc_cd_and_sk_lines_become_procedures_materials_and_drugs() {
    let text = [
        "IR,1,13,1,1234567,,合成病院（架空）,202406,00,0312345678",
        "RE,1,3110,202406,架空　花子,2,19600315,70,20240601,,,,,P0001,,,,,,,ENC-1,01,,,,,,,,,,,,,,,カクウ　ハナコ",
        "BU,040080xx99x0xx,20240601,20240610,1,",
        "KK,,,1,,,64,,,,,,,",
        "SK,150000490,K6335,20240603,,,ヘルニア手術",
        "IY,21,1,620000001,3,10,1,,,,,,,,,1,,,,,,,,,,,,,,,,,,,,,,,,,,,,",
        "CD,20240603,21,1,1,620000001,3,,,1,",
        "CD,20240604,21,1,1,620000001,3,,,1,",
        "CD,20240603,50,2,1,150000490,,,,1,",
        "CD,20240603,50,2,2,730000001,1,,019,2,合成カテーテル（架空）",
        "CD,2024063x,50,2,1,150000490,,,,1,",
        "CD,20240605,50,2,1,999999999,,,,1,",
        "GO,1,9612,99",
    ]
    .join("\r\n");
    let bytes = kiban_formats::encoding::encode_sjis(&(text + "\r\n")).unwrap();
    let mut masters = Masters::default();
    masters.drug.insert("620000001", "合成錠（架空）", "9999999F1000", "oral");
    let mut got = Collected::default();
    uke::read(&bytes[..], "dpc.uke", "prov-x", &masters, &mut got).unwrap();
    let fields: Vec<&str> = got.quarantined.iter().map(|q| q.field.as_str()).collect();
    assert_eq!(fields, ["CD.1 実施年月日", "CD.5 レセプト電算処理システム用コード"], "{:?}", got.quarantined);
    let procs: Vec<(&str, &str, chrono::NaiveDate)> = got
        .of(Table::Procedures)
        .map(|r| match r {
            Record::Procedure(p) => (p.source.as_str(), p.procedure_code.as_str(), p.procedure_date),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(procs, [("UKE SK", "150000490", day(3)), ("UKE CD", "150000490", day(3))]);
    let mats: Vec<_> = got.of(Table::Materials).collect();
    assert!(
        matches!(mats[..], [Record::Material(m)] if m.source == "UKE CD" && m.count == 2 && m.quantity == Some(1.0) && m.unit_code == "019"),
        "{mats:?}"
    );
    // The drug on the 3rd is the IY line's; the CD line of the 4th adds the day the IY line does not give.
    let drugs: Vec<chrono::NaiveDate> = got
        .of(Table::Prescriptions)
        .map(|r| match r {
            Record::Prescription(p) => p.prescribed_date,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(drugs, [day(3), day(4)]);
}
