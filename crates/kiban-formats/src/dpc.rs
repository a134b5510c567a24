//! DPC survey files: the EF 統合ファイル (per-act detail of inpatient care) and 様式1 (the
//! discharge summary), both tab-separated Shift_JIS text, one record per line, streamed.
//!
//! EF columns (1-based): 1 施設コード, 2 データ識別番号 (patient id), 3 退院年月日, 4 入院年月日,
//! 5 データ区分, 6 順序番号, 7 行為明細番号, 8 病院点数マスタコード, 9 レセプト電算コード,
//! 10 解釈番号, 11 診療明細名称, 12 使用量, 13 基準単位, 14 明細点数・金額, 15 円・点区分,
//! 16 出来高実績点数, 17 行為明細区分情報, 18 行為点数, 19 行為薬剤料, 20 行為材料料, 21 行為回数,
//! 22 保険者番号, 23 レセプト種別コード, 24 実施年月日, 25 レセプト科区分, 26 診療科区分, 27 医師コード,
//! 28 病棟コード, 29 病棟区分, 30 入外区分 (`0` 入院), 31 施設タイプ. Drug lines (データ区分 21–33,
//! 行為明細番号 ≠ 0, a 医薬品 code) become prescriptions (days = 行為回数); every stay an encounter.
//! 診療行為 lines (a `1…` code) become procedures and 特定器材 lines (`7…`) materials, dated 実施年月日;
//! other lines (comments, drugs outside 21–33) are counted as unmapped.
//! 様式1 columns: 1 施設コード, 2 データ識別番号, 3 退院年月日, 4 入院年月日, 5 回数管理番号,
//! 6 コード, 7 バージョン, 8 連番, 9–17 ペイロード1–9. `A000010` → identity (payload 1 生年月日,
//! 2 性別, 3 郵便番号); `A006010` 主傷病名 and `A006020/30/31/40/50` → diagnoses (payload 1
//! 傷病名コード, 2 ICD-10, 9 傷病名); `A007010` 手術 → procedures (payload 1 手術日, 2 点数表コード,
//! 4 回数, 9 手術名). Dates are `YYYYMMDD` (`00000000` = not discharged yet).

use std::collections::HashSet;
use std::io::{BufRead, Write};

use chrono::NaiveDate;

use crate::canonical::{
    Diagnosis, Encounter, Material, Patient, Prescription, Procedure, Quarantined, Record, Sink, by_patient,
};
use crate::encoding::{decode_sjis, encode_sjis, strip_bom};
use crate::masters::{Masters, department_code, department_name};

/// Counts of one file.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct DpcStats {
    /// Lines read.
    pub lines: u64,
    /// Lines mapped to no canonical table (procedures, unmapped 様式1 items).
    pub unmapped: u64,
}

fn ymd(s: &str) -> Result<Option<NaiveDate>, ()> {
    match s {
        "" | "00000000" => Ok(None),
        s if s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit()) => {
            NaiveDate::parse_from_str(s, "%Y%m%d").map(Some).map_err(|_| ())
        }
        _ => Err(()),
    }
}

/// Which DPC file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpcFile {
    /// EF 統合ファイル.
    Ef,
    /// 様式1.
    Form1,
}

fn lines_of(mut input: impl BufRead, mut f: impl FnMut(u64, Result<String, (String, String)>)) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut no = 0u64;
    loop {
        buf.clear();
        if input.read_until(b'\n', &mut buf)? == 0 {
            return Ok(());
        }
        let chunk: &[u8] = if no == 0 { strip_bom(&buf).0 } else { &buf };
        let cut = !matches!(chunk.last(), Some(b'\n' | b'\r'));
        let n_pieces = chunk.split(|&b| b == b'\n' || b == b'\r').count();
        for (k, piece) in chunk.split(|&b| b == b'\n' || b == b'\r').enumerate() {
            if piece.is_empty() {
                continue;
            }
            no += 1;
            let raw = || String::from_utf8_lossy(piece).into_owned();
            if cut && k + 1 == n_pieces {
                // No line ending at the end of the file: the last column may be cut short.
                f(no, Err(("the last line has no line ending: the file may be cut here; not read".into(), raw())));
                continue;
            }
            f(no, decode_sjis(piece).map(|c| c.into_owned()).map_err(|e| (e, raw())));
        }
    }
}

/// Reads one EF or 様式1 file, streaming its records into `sink`.
pub fn read(
    input: impl BufRead,
    kind: DpcFile,
    file: &str,
    provider_id: &str,
    masters: &Masters,
    sink: &mut dyn Sink,
) -> std::io::Result<DpcStats> {
    let mut st = DpcStats::default();
    let mut stays: HashSet<(String, NaiveDate)> = HashSet::new();
    let mut people: HashSet<String> = HashSet::new();
    let want = if kind == DpcFile::Ef { 31 } else { 17 };
    lines_of(input, |no, line| {
        st.lines += 1;
        let loc = format!("line {no}");
        let text = match line {
            Ok(t) => t,
            Err((e, raw)) => return sink.quarantine(Quarantined::new(file, &loc, "record", e, &raw)),
        };
        let f: Vec<&str> = text.split('\t').collect();
        let q = |sink: &mut dyn Sink, field: &str, problem: String| {
            sink.quarantine(Quarantined::new(file, &loc, field, problem, &text))
        };
        if f.len() < want {
            return q(sink, "record", format!("{} tab-separated columns, expected {want} (line cut short?)", f.len()));
        }
        if no == 1 && f[1] == "データ識別番号" {
            return; // A header line.
        }
        let g = |i: usize| f[i - 1].trim();
        let pid = g(2);
        if pid.is_empty() {
            return q(sink, "2 データ識別番号", "patient id is empty".into());
        }
        let (Ok(discharge), Ok(Some(admit))) = (ymd(g(3)), ymd(g(4))) else {
            return q(sink, "3/4 退院・入院年月日", format!("{:?}/{:?} are not YYYYMMDD", g(3), g(4)));
        };
        let eid = format!("{pid}-{}", admit.format("%Y%m%d"));
        let new_stay = stays.insert((pid.to_owned(), admit));
        match kind {
            DpcFile::Ef => {
                if new_stay {
                    sink.record(Record::Encounter(Encounter {
                        provider_id: provider_id.into(),
                        patient_id: pid.into(),
                        encounter_id: eid.clone(),
                        encounter_type: if g(30) == "1" { "外来" } else { "入院" }.into(),
                        department: department_name(g(26)).into(),
                        admission_date: admit,
                        discharge_date: discharge,
                    }));
                }
                let class: u32 = g(5).parse().unwrap_or(0);
                let code = g(9);
                if (21..=33).contains(&class) && !g(7).trim_start_matches('0').is_empty() && code.starts_with('6') {
                    let Ok(Some(day)) = ymd(g(24)) else {
                        return q(sink, "24 実施年月日", format!("{:?} is not YYYYMMDD", g(24)));
                    };
                    let Ok(days) = g(21).parse::<u64>() else {
                        return q(sink, "21 行為回数", format!("{:?} is not a whole number", g(21)));
                    };
                    let m = masters.drug.get(code);
                    sink.record(Record::Prescription(Prescription {
                        provider_id: provider_id.into(),
                        patient_id: pid.into(),
                        encounter_id: eid,
                        prescribed_date: day,
                        drug_code: m.map_or_else(|| code.to_owned(), |m| m.canonical.clone()),
                        drug_name: g(11).into(),
                        route: m.map(|m| m.extra.clone()).unwrap_or_else(|| {
                            match class {
                                21 | 22 => "oral",
                                23 => "external",
                                _ => "injection",
                            }
                            .into()
                        }),
                        days,
                    }));
                } else if code.starts_with('1') || code.starts_with('7') {
                    // 診療行為 (1…) and 特定器材 (7…) details: one row per line, dated 実施年月日.
                    let Ok(Some(day)) = ymd(g(24)) else {
                        return q(sink, "24 実施年月日", format!("{:?} is not YYYYMMDD", g(24)));
                    };
                    let count = match g(21) {
                        "" => 1,
                        c => match c.parse::<u64>() {
                            Ok(n) => n,
                            Err(_) => return q(sink, "21 行為回数", format!("{c:?} is not a whole number")),
                        },
                    };
                    let quantity = match g(12) {
                        "" => None,
                        x => match x.parse::<f64>() {
                            Ok(v) if v.is_finite() => Some(v),
                            _ => return q(sink, "12 使用量", format!("{x:?} is not a number")),
                        },
                    };
                    // 明細点数・金額 in points only when 円・点区分 says points (`1` = 円).
                    let points = match (g(14), g(15)) {
                        ("", _) | (_, "1") => None,
                        (x, _) => match x.parse::<i64>() {
                            Ok(v) => Some(v),
                            Err(_) => return q(sink, "14 明細点数・金額", format!("{x:?} is not a whole number")),
                        },
                    };
                    let (pid, eid, care) = (pid.to_owned(), eid, g(5).to_owned());
                    sink.record(if code.starts_with('1') {
                        Record::Procedure(Procedure {
                            provider_id: provider_id.into(),
                            patient_id: pid,
                            encounter_id: eid,
                            procedure_date: day,
                            day_known: true,
                            source: "EF".into(),
                            care_category: care,
                            burden_category: String::new(),
                            procedure_code: code.into(),
                            procedure_name: g(11).into(),
                            quantity,
                            points,
                            count,
                        })
                    } else {
                        Record::Material(Material {
                            provider_id: provider_id.into(),
                            patient_id: pid,
                            encounter_id: eid,
                            used_date: day,
                            day_known: true,
                            source: "EF".into(),
                            care_category: care,
                            burden_category: String::new(),
                            material_code: code.into(),
                            material_name: g(11).into(),
                            product_name: String::new(),
                            quantity,
                            unit_code: g(13).into(),
                            unit_price: if g(15) == "1" { g(14).parse().ok() } else { None },
                            points,
                            count,
                        })
                    });
                } else {
                    st.unmapped += 1;
                }
            }
            DpcFile::Form1 => match g(6) {
                "A000010" => {
                    let birth = match ymd(g(9)) {
                        Ok(Some(b)) => b.to_string(),
                        _ => return q(sink, "9 ペイロード1 生年月日", format!("{:?} is not YYYYMMDD", g(9))),
                    };
                    let sex = match g(10) {
                        s @ ("1" | "2") => s,
                        other => return q(sink, "10 ペイロード2 性別", format!("{other:?} is not 1 or 2")),
                    };
                    let p = Patient {
                        provider_id: provider_id.into(),
                        patient_id: pid.into(),
                        sex: sex.into(),
                        birth_date: birth,
                        postal_code: g(11).into(),
                        ..Default::default()
                    };
                    if people.insert(format!("{p:?}")) {
                        sink.record(Record::Patient(p));
                    }
                }
                c @ ("A006010" | "A006020" | "A006030" | "A006031" | "A006040" | "A006050") => {
                    let (icd, name) = (g(10), g(17));
                    if icd.is_empty() && name.is_empty() {
                        return q(sink, "10 ペイロード2 ICD10", "neither an ICD-10 code nor a name".into());
                    }
                    sink.record(Record::Diagnosis(Diagnosis {
                        provider_id: provider_id.into(),
                        patient_id: pid.into(),
                        encounter_id: eid,
                        diagnosis_date: admit,
                        icd10: icd.into(),
                        diagnosis_name: name.into(),
                        main: c == "A006010",
                    }));
                }
                "A007010" => {
                    // 手術: payload 1 手術日, 2 点数表コード, 4 回数, 9 手術名 (5 側数, 6 麻酔 are not kept).
                    let (date, day_known) = match ymd(g(9)) {
                        Ok(Some(d)) => (d, true),
                        Ok(None) => (admit, false),
                        Err(()) => return q(sink, "9 ペイロード1 手術日", format!("{:?} is not YYYYMMDD", g(9))),
                    };
                    let (code, name) = (g(10), g(17));
                    if code.is_empty() && name.is_empty() {
                        return q(sink, "10 ペイロード2 点数表コード", "neither a code nor a name".into());
                    }
                    let count = match g(12) {
                        "" => 1,
                        c => match c.parse::<u64>() {
                            Ok(n) => n,
                            Err(_) => return q(sink, "12 ペイロード4 回数", format!("{c:?} is not a whole number")),
                        },
                    };
                    sink.record(Record::Procedure(Procedure {
                        provider_id: provider_id.into(),
                        patient_id: pid.into(),
                        encounter_id: eid,
                        procedure_date: date,
                        day_known,
                        source: "様式1 A007010".into(),
                        care_category: "手術".into(),
                        burden_category: String::new(),
                        procedure_code: code.into(),
                        procedure_name: name.into(),
                        quantity: None,
                        points: None,
                        count,
                    }));
                }
                _ => st.unmapped += 1,
            },
        }
    })?;
    Ok(st)
}

/// Writes the inpatient stays of `records` as 様式1 and EF files (Shift_JIS, tab-separated, CR LF).
/// Returns the lines written to each.
pub fn write(
    form1: &mut impl Write,
    ef: &mut impl Write,
    records: &[Record],
    facility: &str,
    masters: &mut Masters,
) -> std::io::Result<(u64, u64)> {
    let (mut n1, mut n2) = (0, 0);
    let put = |w: &mut dyn Write, cols: &[String]| -> std::io::Result<()> {
        let line = cols.join("\t");
        // Characters outside Shift_JIS become 〓 (geta), the receipt convention for unmappable kanji.
        let line: String = line.chars().map(|c| if encode_sjis(&c.to_string()).is_ok() { c } else { '〓' }).collect();
        w.write_all(&encode_sjis(&line).expect("mapped"))?;
        w.write_all(b"\r\n")
    };
    let d8 = |d: Option<NaiveDate>| d.map_or("00000000".to_owned(), |d| d.format("%Y%m%d").to_string());
    for (_, pid, recs) in by_patient(records) {
        let p = recs.iter().find_map(|r| if let Record::Patient(p) = r { Some(p) } else { None });
        for r in &recs {
            let Record::Encounter(e) = r else { continue };
            if e.encounter_type != "入院" {
                continue;
            }
            let head = |code: &str, seq: u32| -> Vec<String> {
                vec![
                    facility.into(),
                    pid.clone(),
                    d8(e.discharge_date),
                    d8(Some(e.admission_date)),
                    "0".into(),
                    code.into(),
                    "1".into(),
                    seq.to_string(),
                ]
            };
            if let Some(p) = p {
                let birth = kiban_model::wareki::WarekiDate::parse(&p.birth_date)
                    .map(|w| w.date())
                    .ok()
                    .or_else(|| NaiveDate::parse_from_str(&p.birth_date, "%Y-%m-%d").ok());
                let mut c = head("A000010", 0);
                c.extend([d8(birth), if p.sex == "2" { "2" } else { "1" }.into(), p.postal_code.clone()]);
                c.extend(std::iter::repeat_n(String::new(), 6));
                put(form1, &c)?;
                n1 += 1;
            }
            let mut seq = 0;
            for x in &recs {
                match x {
                    Record::Diagnosis(d) if d.encounter_id == e.encounter_id => {
                        let code = if d.main { "A006010" } else { "A006040" };
                        let mut c = head(code, seq);
                        seq += 1;
                        c.extend(["0000999".into(), d.icd10.clone()]);
                        c.extend(std::iter::repeat_n(String::new(), 6));
                        c.push(d.diagnosis_name.clone());
                        put(form1, &c)?;
                        n1 += 1;
                    }
                    Record::Prescription(rx) if rx.encounter_id == e.encounter_id => {
                        let code = masters
                            .drug
                            .code_of(&rx.drug_code, &rx.drug_name)
                            .map(str::to_owned)
                            .unwrap_or_else(|| {
                                use sha2::Digest;
                                let h = sha2::Sha256::digest(format!("{}\t{}", rx.drug_code, rx.drug_name).as_bytes());
                                format!("6{:08}", u64::from_be_bytes(h[..8].try_into().expect("8")) % 100_000_000)
                            });
                        masters.drug.insert(&code, &rx.drug_name, &rx.drug_code, &rx.route);
                        let class = match rx.route.as_str() {
                            "oral" => "21",
                            "external" => "23",
                            _ => "33",
                        };
                        let mut c: Vec<String> = vec![String::new(); 31];
                        c[0] = facility.into();
                        c[1] = pid.clone();
                        c[2] = d8(e.discharge_date);
                        c[3] = d8(Some(e.admission_date));
                        c[4] = class.into();
                        c[5] = "1".into();
                        c[6] = "001".into();
                        c[8] = code;
                        c[10] = rx.drug_name.clone();
                        c[11] = "1".into();
                        c[14] = "0".into();
                        c[20] = rx.days.to_string();
                        c[23] = rx.prescribed_date.format("%Y%m%d").to_string();
                        c[25] = department_code(&e.department).into();
                        c[29] = "0".into();
                        put(ef, &c)?;
                        n2 += 1;
                    }
                    _ => {}
                }
            }
            // Every stay gets one 入院基本料 line, so a stay without drugs is still known to EF.
            let mut c: Vec<String> = vec![String::new(); 31];
            c[0] = facility.into();
            c[1] = pid.clone();
            c[2] = d8(e.discharge_date);
            c[3] = d8(Some(e.admission_date));
            c[4] = "90".into();
            c[5] = "1".into();
            c[6] = "000".into();
            c[8] = "190077410".into();
            c[10] = "入院基本料".into();
            c[20] = "1".into();
            c[23] = e.admission_date.format("%Y%m%d").to_string();
            c[25] = department_code(&e.department).into();
            c[29] = "0".into();
            put(ef, &c)?;
            n2 += 1;
        }
    }
    Ok((n1, n2))
}
