//! UKE receipt files (レセプト電算処理システム, 医科 and DPC): Shift_JIS CSV lines, one record each.
//!
//! `IR` (医療機関) opens the file and `GO` (請求書) closes it; each receipt starts with `RE` and
//! holds `HO` (医療保険), `KO` (公費), `SY` (傷病名), `SI` (診療行為), `IY` (医薬品), `TO` (特定器材),
//! `CO` (コメント), `SJ` (症状詳記); the DPC variant adds `BU` (診断群分類), `SB` (傷病),
//! `KK`, `GA`, `HH`, `GT`, `CD`, `GR`, `TK`, `NK`, `SK`, `JD`, `MF` (read for counts only).
//! Field positions (0 = record id): RE.1 レセプト番号, .2 種別, .3 診療年月 (GYYMM), .4 氏名,
//! .5 男女, .6 生年月日 (GYYMMDD), .8 入院年月日, .13 カルテ番号等 (the patient id), .18 検索番号
//! (kiban writes the encounter id there), .21 診療科, .36 カタカナ氏名; HO.1 保険者番号, .2 記号,
//! .3 番号, .15 枝番; SY.1 傷病名コード, .2 診療開始日, .5 傷病名称, .6 主傷病 (`01`); IY.3 医薬品コード,
//! .6 回数 (days for 内服), .13–.43 算定日 1–31; SJ.1 区分, .2 text; BU.2 入院年月日, .3 退院年月日;
//! SB.1 傷病名コード, .3 傷病名称, .4 ICD-10, .5 区分 (`01` 主傷病); GO.1 総件数.
//! Codes are named through [`Masters`]; a code missing from the master quarantines its record.
//! The reader streams: memory holds one receipt at a time.

use std::collections::HashSet;
use std::io::{BufRead, Write};

use chrono::{Datelike, NaiveDate};
use kiban_model::wareki::WarekiDate;

use crate::canonical::{Diagnosis, Encounter, Patient, Prescription, Quarantined, Record, Sink, Text, by_patient};
use crate::encoding::{decode_sjis, decode_sjis_into, encode_sjis, strip_bom};
use crate::masters::{Masters, department_code, department_name};

/// Record ids the reader knows.
const KNOWN: [&str; 26] = [
    "IR", "RE", "HO", "KO", "SY", "SI", "IY", "TO", "CO", "SJ", "GO", "BU", "SB", "KK", "GA", "HH", "GT", "CD", "GR",
    "TK", "NK", "SK", "JD", "MF", "TI", "KH",
];

/// Counts of one file.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct UkeStats {
    /// Lines read.
    pub lines: u64,
    /// Receipts (RE records).
    pub receipts: u64,
    /// Bytes read.
    pub bytes: u64,
}

fn digits(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 9 {
        return None;
    }
    s.bytes().try_fold(0u32, |a, c| c.is_ascii_digit().then(|| a * 10 + (c - b'0') as u32))
}

/// A year and month: `GYYMM` (和暦 with the era digit, as the 平成 記録条件仕様 define it) or
/// `YYYYMM` (西暦, as receipts written under the 令和 revisions carry it); the month's first day.
fn year_month(s: &str) -> Option<NaiveDate> {
    match s.len() {
        5 => WarekiDate::parse(&format!("{s}01")).ok().map(|w| w.date()),
        6 => digits(s).and_then(|n| NaiveDate::from_ymd_opt((n / 100) as i32, n % 100, 1)),
        _ => None,
    }
}

/// A date: `GYYMMDD` (和暦) or `YYYYMMDD` (西暦); see [`year_month`].
fn full_date(s: &str) -> Option<NaiveDate> {
    match s.len() {
        7 => WarekiDate::parse(s).ok().map(|w| w.date()),
        8 => digits(s).and_then(|n| NaiveDate::from_ymd_opt((n / 10_000) as i32, n / 100 % 100, n % 100)),
        _ => None,
    }
}

fn receipt_form(d: NaiveDate) -> String {
    WarekiDate::from_date(d).map(|w| w.to_receipt_form()).unwrap_or_default()
}

/// Field `i` of a split record, trimmed (`""` when the record is shorter).
fn at<'a>(f: &[&'a str], i: usize) -> &'a str {
    f.get(i).copied().unwrap_or("").trim()
}

/// One receipt's lines (RE first), decoded into one buffer reused from receipt to receipt, so
/// reading allocates nothing per line.
#[derive(Default)]
struct Receipt {
    text: String,
    /// Line number and byte range in `text`.
    lines: Vec<(u64, usize, usize)>,
}

impl Receipt {
    fn line(&self, k: usize) -> (u64, &str) {
        let (n, a, b) = self.lines[k];
        (n, &self.text[a..b])
    }
    fn clear(&mut self) {
        self.text.clear();
        self.lines.clear();
    }
    /// Decodes `raw` as the next line; on failure nothing is kept.
    fn push(&mut self, no: u64, raw: &[u8]) -> Result<(), String> {
        let a = self.text.len();
        decode_sjis_into(raw, &mut self.text)?;
        self.lines.push((no, a, self.text.len()));
        Ok(())
    }
}

/// The record id: the bytes before the first comma, trimmed.
fn record_id(b: &[u8]) -> &[u8] {
    let end = memchr::memchr(b',', b).unwrap_or(b.len());
    b[..end].trim_ascii()
}

/// A line's text for a quarantine entry: decoded when it decodes, else lossily.
fn raw_text(b: &[u8]) -> String {
    decode_sjis(b).map(|c| c.into_owned()).unwrap_or_else(|_| String::from_utf8_lossy(b).into_owned())
}

struct Reader<'a> {
    file: &'a str,
    provider_id: &'a str,
    masters: &'a Masters,
    seen_patients: HashSet<u64>,
    saw_ir: bool,
}

impl Reader<'_> {
    fn q(&self, sink: &mut dyn Sink, no: u64, text: &str, field: &str, problem: impl Into<String>) {
        sink.quarantine(Quarantined::new(self.file, format!("line {no}"), field, problem, text));
    }

    fn receipt(&mut self, r: &Receipt, sink: &mut dyn Sink) {
        let (re_no, re_text) = r.line(0);
        let f: Vec<&str> = re_text.split(',').collect();
        let g = |i: usize| at(&f, i);
        let bad_all = |this: &Self, sink: &mut dyn Sink, field: &str, problem: String| {
            this.q(sink, re_no, re_text, field, problem);
            for k in 1..r.lines.len() {
                let (no, text) = r.line(k);
                this.q(
                    sink,
                    no,
                    text,
                    "record",
                    format!("belongs to the receipt at line {re_no} which is quarantined"),
                );
            }
        };
        let patient_id = g(13);
        if patient_id.is_empty() {
            return bad_all(self, sink, "RE.13 カルテ番号等", "patient id (カルテ番号等) is empty".into());
        }
        let Some(month) = year_month(g(3)) else {
            return bad_all(self, sink, "RE.3 診療年月", format!("{:?} is not GYYMM or YYYYMM", g(3)));
        };
        let birth = g(6);
        let Some(birth_date) = full_date(birth) else {
            return bad_all(self, sink, "RE.6 生年月日", format!("{birth:?} is not GYYMMDD or YYYYMMDD"));
        };
        let sex = match g(5) {
            "1" => "1",
            "2" => "2",
            other => return bad_all(self, sink, "RE.5 男女区分", format!("{other:?} is not 1 or 2")),
        };
        let admit = g(8);
        let admitted = if admit.is_empty() {
            None
        } else {
            match full_date(admit) {
                Some(d) => Some(d),
                None => {
                    return bad_all(self, sink, "RE.8 入院年月日", format!("{admit:?} is not GYYMMDD or YYYYMMDD"));
                }
            }
        };
        let kind = g(2);
        let inpatient = admitted.is_some() || kind.len() == 4 && kind.ends_with(['1', '3', '5', '7', '9']);
        // RE.20 請求情報 is the provider's own field: kiban keeps the encounter id there. Files kiban
        // wrote before carried it in RE.18 (検索番号, which the spec reserves for returned claims).
        let encounter_id = match (g(20), g(18)) {
            ("", "") => format!("{patient_id}-R{}", g(1)),
            ("", old) => old.to_owned(),
            (id, _) => id.to_owned(),
        };
        let mut patient = Patient {
            provider_id: self.provider_id.into(),
            patient_id: patient_id.into(),
            name_kanji: g(4).into(),
            name_kana: g(36).into(),
            sex: sex.into(),
            birth_date: birth_date.to_string(),
            ..Default::default()
        };
        let mut out: Vec<Record> = Vec::new();
        let mut first_day: Option<NaiveDate> = None;
        let mut discharge = None;
        let day_in_month = |fields: &[&str], from: usize| -> Option<NaiveDate> {
            (0..31)
                .find(|k| fields.get(from + k).is_some_and(|v| !v.trim().is_empty() && v.trim() != "0"))
                .and_then(|k| NaiveDate::from_ymd_opt(month.year(), month.month(), k as u32 + 1))
        };
        let mut pending_main_dx = Vec::new();
        let mut f: Vec<&str> = Vec::with_capacity(64);
        for k in 1..r.lines.len() {
            let (no, text) = r.line(k);
            f.clear();
            f.extend(text.split(','));
            let g = |i: usize| at(&f, i);
            match g(0) {
                "HO" => {
                    patient.insurer_number = g(1).into();
                    patient.card_symbol = g(2).into();
                    patient.card_number = g(3).into();
                    patient.card_branch = g(15).into();
                }
                "SY" => {
                    let code = g(1);
                    let Some(date) = full_date(g(2)) else {
                        self.q(sink, no, text, "SY.2 診療開始日", format!("{:?} is not GYYMMDD or YYYYMMDD", g(2)));
                        continue;
                    };
                    let (name, icd10) = match self.masters.disease.get(code) {
                        Some(e) => (e.name.clone(), e.canonical.clone()),
                        None if code == "0000999" && !g(5).is_empty() => (g(5).to_owned(), String::new()),
                        None => {
                            self.q(
                                sink,
                                no,
                                text,
                                "SY.1 傷病名コード",
                                format!("{code:?} is not in the disease master"),
                            );
                            continue;
                        }
                    };
                    let name = if code == "0000999" && !g(5).is_empty() { g(5).to_owned() } else { name };
                    pending_main_dx.push((
                        false,
                        Diagnosis {
                            provider_id: self.provider_id.into(),
                            patient_id: patient_id.into(),
                            encounter_id: encounter_id.clone(),
                            diagnosis_date: date,
                            icd10,
                            diagnosis_name: name,
                            main: g(6) == "01",
                        },
                    ));
                }
                "SB" => {
                    let code = g(1);
                    let icd = g(4);
                    let name = if g(3).is_empty() {
                        self.masters.disease.get(code).map(|e| e.name.clone()).unwrap_or_default()
                    } else {
                        g(3).to_owned()
                    };
                    if icd.is_empty() && name.is_empty() {
                        self.q(sink, no, text, "SB.4 ICD10コード", "neither an ICD-10 code nor a name");
                        continue;
                    }
                    // SB has no date of its own: it is the stay's (set below, once the stay's first day is known).
                    pending_main_dx.push((
                        true,
                        Diagnosis {
                            provider_id: self.provider_id.into(),
                            patient_id: patient_id.into(),
                            encounter_id: encounter_id.clone(),
                            diagnosis_date: month,
                            icd10: icd.into(),
                            diagnosis_name: name,
                            main: g(5) == "01",
                        },
                    ));
                }
                "BU" => {
                    if let Some(d) = full_date(g(3)) {
                        discharge = Some(d);
                    }
                }
                "SI" if first_day.is_none() => first_day = day_in_month(&f, 13),
                "IY" => {
                    let code = g(3);
                    let Some(e) = self.masters.drug.get(code) else {
                        self.q(sink, no, text, "IY.3 医薬品コード", format!("{code:?} is not in the drug master"));
                        continue;
                    };
                    let Some(day) = day_in_month(&f, 13) else {
                        self.q(sink, no, text, "IY.13 算定日", "no day of the month is marked (算定日情報 empty)");
                        continue;
                    };
                    let Some(days) = digits(g(6)) else {
                        self.q(sink, no, text, "IY.6 回数", format!("{:?} is not a whole number", g(6)));
                        continue;
                    };
                    if first_day.is_none() {
                        first_day = Some(day);
                    }
                    out.push(Record::Prescription(Prescription {
                        provider_id: self.provider_id.into(),
                        patient_id: patient_id.into(),
                        encounter_id: encounter_id.clone(),
                        prescribed_date: day,
                        drug_code: e.canonical.clone(),
                        drug_name: e.name.clone(),
                        route: e.extra.clone(),
                        days: days.into(),
                    }));
                }
                "SJ" => out.push(Record::Text(Text {
                    provider_id: self.provider_id.into(),
                    patient_id: patient_id.into(),
                    encounter_id: encounter_id.clone(),
                    observed_date: admitted.or(first_day).unwrap_or(month),
                    code: g(1).into(),
                    name: "症状詳記".into(),
                    text: f.get(2..).map(|x| x.join(",")).unwrap_or_default(),
                })),
                _ => {}
            }
        }
        let key = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            patient.hash(&mut h);
            h.finish()
        };
        if self.seen_patients.insert(key) {
            sink.record(Record::Patient(patient));
        }
        sink.record(Record::Encounter(Encounter {
            provider_id: self.provider_id.into(),
            patient_id: patient_id.into(),
            encounter_id,
            encounter_type: if inpatient { "入院" } else { "外来" }.into(),
            department: if g(21).is_empty() { String::new() } else { department_name(g(21)) },
            admission_date: admitted.or(first_day).unwrap_or(month),
            discharge_date: discharge,
        }));
        let first = admitted.or(first_day).unwrap_or(month);
        for (stay_dated, mut d) in pending_main_dx {
            if stay_dated {
                d.diagnosis_date = first;
            }
            sink.record(Record::Diagnosis(d));
        }
        for r in out {
            sink.record(r);
        }
    }
}

/// Reads one UKE file (medical or DPC) from `input`, streaming receipts into `sink`.
pub fn read(
    mut input: impl BufRead,
    file: &str,
    provider_id: &str,
    masters: &Masters,
    sink: &mut dyn Sink,
) -> std::io::Result<UkeStats> {
    let mut rd = Reader { file, provider_id, masters, seen_patients: HashSet::new(), saw_ir: false };
    let mut stats = UkeStats::default();
    let mut buf = Vec::with_capacity(1024);
    let mut cur = Receipt::default();
    // The receipt being read: none yet, a good one (in `cur`), or one whose RE line was quarantined.
    let mut state = State::Outside;
    let mut go: Option<(u64, String)> = None;
    let mut no = 0u64;
    let mut last_ended = true;
    let mut first = true;
    loop {
        buf.clear();
        let n = input.read_until(b'\n', &mut buf)?;
        if n == 0 {
            break;
        }
        stats.bytes += n as u64;
        last_ended = buf.last() == Some(&b'\n');
        let mut rest: &[u8] = if first { strip_bom(&buf).0 } else { &buf };
        first = false;
        while !rest.is_empty() {
            // A lone CR also ends a line (mixed endings after hand edits).
            let (piece, cut) = match memchr::memchr2(b'\r', b'\n', rest) {
                Some(i) => {
                    let p = &rest[..i];
                    rest = &rest[i + 1..];
                    (p, false)
                }
                None => (std::mem::take(&mut rest), true),
            };
            let piece = piece.strip_suffix(b"\x1a").unwrap_or(piece);
            if piece.is_empty() {
                continue;
            }
            no += 1;
            stats.lines += 1;
            let id = record_id(piece);
            if cut && id != b"GO" {
                // The file ends inside this line: whatever it holds may be cut short, so it is not read.
                let problem = "the file ends in the middle of this line (truncated): not read";
                sink.quarantine(Quarantined::new(file, format!("line {no}"), "record", problem, &raw_text(piece)));
                continue;
            }
            if go.is_some() {
                rd.q(sink, no, &raw_text(piece), "record", "record after the GO (end of claim) record");
                continue;
            }
            match id {
                b"RE" => {
                    if !rd.saw_ir {
                        let problem = "missing IR record before the first receipt (file truncated at the start?)";
                        rd.q(sink, no, &raw_text(piece), "IR", problem);
                        rd.saw_ir = true;
                    }
                    if state == State::Good {
                        rd.receipt(&cur, sink);
                    }
                    stats.receipts += 1;
                    cur.clear();
                    state = match cur.push(no, piece) {
                        Ok(()) => State::Good,
                        Err(e) => {
                            rd.q(sink, no, &raw_text(piece), "record", e);
                            State::Bad(no)
                        }
                    };
                }
                b"GO" => {
                    if state == State::Good {
                        rd.receipt(&cur, sink);
                    }
                    state = State::Outside;
                    if let Err(e) = decode_sjis(piece) {
                        rd.q(sink, no, &raw_text(piece), "record", e);
                    }
                    go = Some((no, raw_text(piece)));
                }
                b"IR" => {
                    // Its name is the first Japanese a reader meets: a wrong encoding shows here first.
                    if let Err(e) = decode_sjis(piece) {
                        rd.q(sink, no, &raw_text(piece), "record", e);
                    }
                    if rd.saw_ir || state != State::Outside {
                        rd.q(sink, no, &raw_text(piece), "IR", "a second IR record: two files were concatenated?");
                    }
                    rd.saw_ir = true;
                }
                x if KNOWN.iter().any(|k| k.as_bytes() == x) => match state {
                    State::Good => {
                        if let Err(e) = cur.push(no, piece) {
                            rd.q(sink, no, &raw_text(piece), "record", e);
                        }
                    }
                    State::Bad(re) => rd.q(
                        sink,
                        no,
                        &raw_text(piece),
                        "record",
                        format!("belongs to the receipt at line {re} which is quarantined"),
                    ),
                    State::Outside => {
                        let problem = format!("{} record outside any receipt (no RE before it)", raw_text(x));
                        rd.q(sink, no, &raw_text(piece), "record", problem)
                    }
                },
                other => {
                    let problem = format!("unknown record id {:?}", raw_text(other));
                    rd.q(sink, no, &raw_text(piece), "record", problem)
                }
            }
        }
    }
    if state == State::Good {
        rd.receipt(&cur, sink);
    }
    match go {
        None => sink.quarantine(Quarantined::new(
            file,
            format!("end of file (line {no})"),
            "GO",
            if last_ended {
                "missing GO record at the end: the file is truncated".to_owned()
            } else {
                "missing GO record and the last line has no line ending: the file is truncated".to_owned()
            },
            "",
        )),
        Some((go_no, go_text)) => {
            let total = go_text.split(',').nth(1).unwrap_or("").trim();
            if total.parse::<u64>().ok() != Some(stats.receipts) {
                let problem = format!("says {total} receipts, the file holds {}", stats.receipts);
                rd.q(sink, go_no, &go_text, "GO.1 総件数", problem);
            }
        }
    }
    Ok(stats)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Outside,
    Good,
    /// The RE line (its number) could not be decoded.
    Bad(u64),
}

/// Which UKE variant to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// 医科 (SY for diagnoses).
    Medical,
    /// DPC (BU and SB; ICD-10 in SB).
    Dpc,
}

fn synthetic_code(prefix: char, len: usize, key: &str) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(key.as_bytes());
    let n = u64::from_be_bytes(h[..8].try_into().expect("8 bytes")) % 10u64.pow(len as u32 - 1);
    format!("{prefix}{n:0w$}", w = len - 1)
}

fn gy(d: NaiveDate) -> String {
    let r = receipt_form(NaiveDate::from_ymd_opt(d.year(), d.month(), 1).expect("first day"));
    r[..5].to_owned()
}

/// Writes one provider's records as a UKE file in Shift_JIS, adding the codes it invents for
/// diagnoses and drugs to `masters` (synthetic codes, marked by their source). Returns receipts
/// written and records it could not encode (a character outside Shift_JIS), with the reason.
pub fn write(
    out: &mut impl Write,
    records: &[Record],
    provider_code: &str,
    variant: Variant,
    masters: &mut Masters,
) -> std::io::Result<(u64, Vec<String>)> {
    let mut refused = Vec::new();
    let ir = format!(
        "IR,1,13,1,{provider_code:0>7},,合成医療機関（架空）,{},00,",
        gy(NaiveDate::from_ymd_opt(2025, 4, 1).expect("date"))
    );
    out.write_all(&encode_sjis(&ir).expect("IR is Shift_JIS"))?;
    out.write_all(b"\r\n")?;
    let mut n = 0u64;
    for (_, pid, recs) in by_patient(records) {
        let patient = recs.iter().find_map(|r| if let Record::Patient(p) = r { Some(p) } else { None });
        let Some(p) = patient else { continue };
        let birth = kiban_model::wareki::WarekiDate::parse(&p.birth_date)
            .map(|w| w.to_receipt_form())
            .or_else(|_| NaiveDate::parse_from_str(&p.birth_date, "%Y-%m-%d").map(receipt_form).map_err(|_| ()))
            .unwrap_or_default();
        for r in &recs {
            let Record::Encounter(e) = r else { continue };
            n += 1;
            let inpatient = e.encounter_type == "入院";
            let mut re = vec![String::new(); 38];
            re[0] = "RE".into();
            re[1] = n.to_string();
            re[2] = if inpatient { "1111" } else { "1112" }.into();
            re[3] = gy(e.admission_date);
            re[4] = p.name_kanji.clone();
            re[5] = if p.sex == "2" { "2" } else { "1" }.into();
            re[6] = birth.clone();
            re[7] = "70".into();
            if inpatient {
                re[8] = receipt_form(e.admission_date);
            }
            re[13] = pid.clone();
            re[20] = e.encounter_id.clone();
            re[21] = department_code(&e.department).into();
            re[36] = p.name_kana.clone();
            let mut block = vec![re.join(",")];
            let mut ho = vec![String::new(); 16];
            ho[0] = "HO".into();
            ho[1] = p.insurer_number.clone();
            ho[2] = p.card_symbol.clone();
            ho[3] = p.card_number.clone();
            ho[4] = "1".into();
            ho[5] = "0".into();
            ho[15] = p.card_branch.clone();
            block.push(ho.join(","));
            if variant == Variant::Dpc {
                let dis = e.discharge_date.map(receipt_form).unwrap_or_default();
                block.push(format!("BU,00000000000000,{},{dis},,", receipt_form(e.admission_date)));
            }
            let day_marks = |d: NaiveDate, v: &str| {
                let mut m = vec![String::new(); 31];
                m[d.day() as usize - 1] = v.to_owned();
                m.join(",")
            };
            block.push(format!("SI,12,1,112007410,,73,1,,,,,,,{}", day_marks(e.admission_date, "1")));
            for r in &recs {
                match r {
                    Record::Diagnosis(x) if x.encounter_id == e.encounter_id => {
                        let code =
                            masters.disease.code_of(&x.icd10, &x.diagnosis_name).map(str::to_owned).unwrap_or_else(
                                || synthetic_code('8', 7, &format!("{}\t{}", x.icd10, x.diagnosis_name)),
                            );
                        masters.disease.insert(&code, &x.diagnosis_name, &x.icd10, "synthetic");
                        match variant {
                            Variant::Medical => block.push(format!(
                                "SY,{code},{},1,,,{},",
                                receipt_form(x.diagnosis_date),
                                if x.main { "01" } else { "" }
                            )),
                            Variant::Dpc => block.push(format!(
                                "SB,{code},,{},{},{}",
                                x.diagnosis_name,
                                x.icd10,
                                if x.main { "01" } else { "11" }
                            )),
                        }
                    }
                    Record::Prescription(x) if x.encounter_id == e.encounter_id => {
                        let code =
                            masters.drug.code_of(&x.drug_code, &x.drug_name).map(str::to_owned).unwrap_or_else(|| {
                                synthetic_code('6', 9, &format!("{}\t{}", x.drug_code, x.drug_name))
                            });
                        masters.drug.insert(&code, &x.drug_name, &x.drug_code, &x.route);
                        block.push(format!(
                            "IY,21,1,{code},1,10,{},,,,,,,{}",
                            x.days,
                            day_marks(x.prescribed_date, "1")
                        ));
                    }
                    Record::Text(x) if x.encounter_id == e.encounter_id => {
                        block.push(format!("SJ,{},{}", x.code, x.text.replace(['\r', '\n'], " ")));
                    }
                    _ => {}
                }
            }
            let mut bytes = Vec::new();
            let mut ok = true;
            for l in &block {
                match encode_sjis(l) {
                    Ok(b) => {
                        bytes.extend_from_slice(&b);
                        bytes.extend_from_slice(b"\r\n");
                    }
                    Err(c) => {
                        refused.push(format!("{pid} {}: character {c:?} is outside Shift_JIS", e.encounter_id));
                        ok = false;
                        break;
                    }
                }
            }
            if ok {
                out.write_all(&bytes)?;
            } else {
                n -= 1;
            }
        }
    }
    out.write_all(format!("GO,{n},0,99\r\n").as_bytes())?;
    Ok((n, refused))
}
