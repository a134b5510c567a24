//! UKE receipt files (レセプト電算処理システム, 医科 and DPC): Shift_JIS CSV lines, one record each.
//!
//! `IR` (医療機関) opens the file and `GO` (請求書) closes it; each receipt starts with `RE` and
//! holds `HO` (医療保険), `KO` (公費), `SY` (傷病名), `SI` (診療行為), `IY` (医薬品), `TO` (特定器材),
//! `CO` (コメント), `SJ` (症状詳記); the DPC variant adds `BU` (診断群分類), `SB` (傷病),
//! `KK`, `GA`, `HH`, `GT`, `CD`, `GR`, `TK`, `NK`, `SK`, `JD`, `MF` (read for counts only; `CD`
//! repeats the SI/IY/TO lines per day).
//! Field positions (0 = record id; `SPEC-CHECK.md` says which were checked against the spec):
//! RE.1 レセプト番号, .2 種別, .3 診療年月 (GYYMM or YYYYMM), .4 氏名, .5 男女, .6 生年月日, .8 入院年月日,
//! .13 カルテ番号等 (the patient id), .20 請求情報 (the encounter id kiban writes; .18 検索番号 in
//! older files), .21 診療科, .36 カタカナ氏名; HO.1 保険者番号, .2 記号, .3 番号, .15 枝番;
//! KO.1 負担者番号, .2 受給者番号, .3 任意給付区分, .4 診療実日数, .5 合計点数, .6 公費負担金額,
//! .7/.8 外来/入院一部負担金, .10 回数, .11 合計金額; SY.1 傷病名コード, .2 診療開始日, .5 傷病名称,
//! .6 主傷病 (`01`); SI.1 診療識別, .2 負担区分, .3 診療行為コード, .4 数量データ, .5 点数, .6 回数,
//! .7–.12 コメント×3, .13–.43 算定日 1–31; IY the same with .3 医薬品コード, .4 使用量 (.6 回数 = days
//! for 内服); TO.3 特定器材コード, .4 使用量, .5 点数, .6 回数, .7 単位コード, .8 単価, .9 名称,
//! .10 商品名及び規格, .11–.16 コメント×3, .17–.47 算定日; CO.1 診療識別, .2 負担区分, .3 コメントコード,
//! .4 文字データ; SJ.1 区分, .2 text; BU.2 入院年月日, .3 退院年月日; SB.1 傷病名コード, .3 傷病名称,
//! .4 ICD-10, .5 区分 (`01` 主傷病); GO.1 総件数.
//! Tables: SI → procedures and TO → materials (one row per marked 算定日), KO → public_expenses
//! (programme and amounts) and public_expense_ids (負担者番号 and 受給者番号, identity), CO and the
//! comments of SI/IY/TO → texts. Disease and drug codes are named through [`Masters`] (a code
//! missing there quarantines its record); procedure and material masters are optional.
//! The reader streams: memory holds one receipt at a time.

use std::collections::HashSet;
use std::io::{BufRead, Write};

use chrono::{Datelike, NaiveDate};
use kiban_model::wareki::WarekiDate;

use crate::canonical::{
    Diagnosis, Encounter, Material, Patient, Prescription, Procedure, PublicExpense, PublicExpenseId, Quarantined,
    Receipt as ReceiptRow, Record, Sink, Text, by_patient,
};
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

/// An optional whole number (`""` → `None`), sign allowed (points may be negative on returns).
fn opt_int(s: &str) -> Result<Option<i64>, ()> {
    if s.is_empty() {
        return Ok(None);
    }
    let (neg, d) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s),
    };
    if d.is_empty() || d.len() > 15 {
        return Err(());
    }
    let n =
        d.bytes().try_fold(0i64, |a, c| if c.is_ascii_digit() { Ok(a * 10 + (c - b'0') as i64) } else { Err(()) })?;
    Ok(Some(if neg { -n } else { n }))
}

/// An optional count (`""` → `None`).
fn opt_uint(s: &str) -> Result<Option<u64>, ()> {
    match opt_int(s)? {
        Some(n) if n < 0 => Err(()),
        n => Ok(n.map(|n| n as u64)),
    }
}

/// An optional decimal quantity (`""` → `None`): digits with at most one point.
fn opt_num(s: &str) -> Result<Option<f64>, ()> {
    if s.is_empty() {
        return Ok(None);
    }
    if !s.bytes().all(|c| c.is_ascii_digit() || c == b'.') || s.bytes().filter(|&c| c == b'.').count() > 1 || s == "." {
        return Err(());
    }
    s.parse().map(Some).map_err(|_| ())
}

/// The 31 算定日 fields from `from`: the days (1–31) with a count other than zero, into `out`;
/// `Err(k)` when day `k + 1` holds something that is not a count.
fn marked_days(f: &Fields<'_>, from: usize, out: &mut Vec<(u32, u64)>) -> Result<(), usize> {
    out.clear();
    // One pass over the 31 fields (mostly empty) rather than 31 field look-ups: this is the
    // hottest loop of a receipt file (every SI, IY and TO line).
    let rest = f.rest(from);
    let b = rest.as_bytes();
    let mut day = |k: usize, a: usize, e: usize| -> Result<(), usize> {
        let v = trim(&rest[a..e]);
        match digits(v) {
            _ if v.is_empty() => {}
            Some(0) => {}
            Some(n) => out.push((k as u32 + 1, n.into())),
            None => return Err(k),
        }
        Ok(())
    };
    let (mut k, mut start, mut i) = (0usize, 0usize, 0usize);
    while i < b.len() {
        // Eight empty days in a row (the common case) are passed over in one step.
        if i == start && k + 8 < 31 && b.get(i..i + 8) == Some(b",,,,,,,,") {
            k += 8;
            i += 8;
            start = i;
            continue;
        }
        if b[i] == b',' {
            // Most days are empty: only a non-empty field is looked at.
            if i > start {
                day(k, start, i)?;
            }
            k += 1;
            start = i + 1;
            if k == 31 {
                return Ok(());
            }
        }
        i += 1;
    }
    if b.len() > start {
        day(k, start, b.len())?;
    }
    Ok(())
}

/// `s` without white space at either end; most fields start and end with a visible ASCII
/// character and are returned as they are, without `str::trim`'s Unicode scan.
#[inline(always)]
pub(crate) fn trim(s: &str) -> &str {
    match (s.as_bytes().first(), s.as_bytes().last()) {
        (Some(a), Some(b)) if !(a.is_ascii_graphic() && b.is_ascii_graphic()) => s.trim(),
        _ => s,
    }
}

/// `YYYY-MM-DD` of a date (years 0–9999), written into `buf` (a birth date per receipt: no allocation).
fn iso_date(d: NaiveDate, buf: &mut [u8; 10]) -> &str {
    let (y, m, day) = (d.year().clamp(0, 9999) as u32, d.month(), d.day());
    let digits = [y / 1000, y / 100 % 10, y / 10 % 10, y % 10, 10, m / 10, m % 10, 10, day / 10, day % 10];
    for (b, v) in buf.iter_mut().zip(digits) {
        *b = if v == 10 { b'-' } else { b'0' + v as u8 };
    }
    std::str::from_utf8(buf).expect("ASCII digits")
}

/// `GYYMMDD` → date, with the era's bounds checked as [`WarekiDate::new`] does, without its
/// message formatting (SY lines carry one each: this is on the hot path).
fn wareki7(s: &str) -> Option<NaiveDate> {
    wareki_n(digits(s)?)
}

/// [`wareki7`] of the number `GYYMMDD`.
fn wareki_n(n: u32) -> Option<NaiveDate> {
    // Era start as YYYYMMDD and the year its 元年 counts from (明治: Gregorian dates from 明治6年,
    // as kiban_model::wareki::Era::start has it).
    const ERAS: [(u32, i32); 5] =
        [(18730101, 1868), (19120730, 1912), (19261225, 1926), (19890108, 1989), (20190501, 2019)];
    let (g, yy, mm, dd) = (n / 1_000_000, n / 10_000 % 100, n / 100 % 100, n % 100);
    let &(start, base) = ERAS.get((g as usize).checked_sub(1)?)?;
    if yy == 0 {
        return None;
    }
    let y = base + yy as i32 - 1;
    let key = y as u32 * 10_000 + mm * 100 + dd;
    let next = ERAS.get(g as usize).map_or(u32::MAX, |e| e.0);
    if key < start || key >= next {
        return None;
    }
    NaiveDate::from_ymd_opt(y, mm, dd)
}

/// A year and month: `GYYMM` (和暦 with the era digit, as the 平成 記録条件仕様 define it) or
/// `YYYYMM` (西暦, as receipts written under the 令和 revisions carry it); the month's first day.
fn year_month(s: &str) -> Option<NaiveDate> {
    match s.len() {
        // The month's first day may precede the era's start (令和元年5月 is fine, 平成31年4月 too):
        // take the month's last day for the era check.
        5 => {
            let n = digits(s)?;
            // Any day of the month inside the era will do (昭和64年1月 ends on the 7th).
            let last = (1..=31).rev().find_map(|d| wareki_n(n * 100 + d))?;
            NaiveDate::from_ymd_opt(last.year(), last.month(), 1)
        }
        6 => digits(s).and_then(|n| NaiveDate::from_ymd_opt((n / 100) as i32, n % 100, 1)),
        _ => None,
    }
}

/// A date: `GYYMMDD` (和暦) or `YYYYMMDD` (西暦); see [`year_month`].
fn full_date(s: &str) -> Option<NaiveDate> {
    match s.len() {
        7 => wareki7(s),
        8 => digits(s).and_then(|n| NaiveDate::from_ymd_opt((n / 10_000) as i32, n / 100 % 100, n % 100)),
        _ => None,
    }
}

fn receipt_form(d: NaiveDate) -> String {
    WarekiDate::from_date(d).map(|w| w.to_receipt_form()).unwrap_or_default()
}

/// A record split at its commas: the comma positions only (found by a byte loop, reused from
/// line to line); a field is sliced out when asked for, so the many unused ones cost nothing.
/// The split may stop after the fields a record's mapping reads (the 31 算定日 of SI/IY/TO lines
/// are scanned once, by [`marked_days`], not twice); a field past that point is still found, by a
/// slower scan, so the limit only ever changes speed, never a field's value.
struct Fields<'a> {
    text: &'a str,
    /// Comma positions, then `text.len()` when the split reached the end (so field `i` ends at
    /// `cuts[i]` whenever that is there).
    cuts: Vec<usize>,
    /// The split reached the end of `text`.
    all: bool,
}

impl<'a> Fields<'a> {
    /// Fields over a recycled buffer of comma positions.
    fn with(cuts: Vec<usize>) -> Self {
        Fields { text: "", cuts, all: true }
    }
    fn into_cuts(self) -> Vec<usize> {
        self.cuts
    }
    /// Splits `text` at its first `max` commas at most.
    fn split(&mut self, text: &'a str, max: usize) {
        self.text = text;
        self.cuts.clear();
        let b = text.as_bytes();
        // Eight bytes at a time: a word's commas found at once, then taken bit by bit. A byte loop
        // branched on every byte, and commas come every few bytes at no regular step, so it
        // mispredicted often (fewer instructions, but 3–4 % more CPU time on the bench file).
        const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
        const COMMAS: u64 = 0x2C2C_2C2C_2C2C_2C2C;
        let mut chunks = b.chunks_exact(8);
        let mut base = 0;
        for c in &mut chunks {
            let x = u64::from_le_bytes(c.try_into().expect("8 bytes")) ^ COMMAS;
            // The high bit of each byte of `x` that is zero (a comma), exactly: no carry crosses bytes.
            let mut m = !(((x & LOW7) + LOW7) | x | LOW7);
            while m != 0 {
                if self.cuts.len() == max {
                    self.all = false;
                    return;
                }
                self.cuts.push(base + (m.trailing_zeros() / 8) as usize);
                m &= m - 1;
            }
            base += 8;
        }
        for (i, &c) in chunks.remainder().iter().enumerate() {
            if c == b',' {
                if self.cuts.len() == max {
                    self.all = false;
                    return;
                }
                self.cuts.push(base + i);
            }
        }
        self.cuts.push(text.len());
        self.all = true;
    }
    /// Field `i`, untrimmed (`""` when the record is shorter).
    #[inline(always)]
    fn raw(&self, i: usize) -> &'a str {
        match self.cuts.get(i) {
            Some(&end) => {
                let start = if i == 0 { 0 } else { self.cuts[i - 1] + 1 };
                &self.text[start..end]
            }
            None => self.raw_past_split(i),
        }
    }
    /// Byte offset where field `i` starts, if the record has that many fields.
    fn start(&self, i: usize) -> Option<usize> {
        let Some(k) = i.checked_sub(1) else { return Some(0) };
        match self.cuts.get(k) {
            // The end sentinel: no field `i`.
            Some(&c) if c == self.text.len() => None,
            Some(&c) => Some(c + 1),
            None if self.all => None,
            // Past the split: count the remaining commas.
            None => {
                let from = self.cuts.last().map_or(0, |&c| c + 1);
                let skip = k - self.cuts.len();
                self.text[from..].match_indices(',').nth(skip).map(|(j, _)| from + j + 1)
            }
        }
    }
    /// [`Fields::raw`] of a field the split did not reach (or that does not exist).
    #[cold]
    #[inline(never)]
    fn raw_past_split(&self, i: usize) -> &'a str {
        match self.start(i) {
            None => "",
            Some(a) => {
                let rest = &self.text[a..];
                &rest[..rest.find(',').unwrap_or(rest.len())]
            }
        }
    }
    /// Field `i`, trimmed. Inlined: a receipt line asks for dozens of fields, and the call cost
    /// more than the slicing.
    #[inline(always)]
    fn get(&self, i: usize) -> &'a str {
        trim(self.raw(i))
    }
    /// Everything from field `i` on, commas included.
    fn rest(&self, i: usize) -> &'a str {
        self.start(i).map_or("", |a| &self.text[a..])
    }
}

/// How many commas of a record its mapping needs split (the fields it reads and the start of the
/// text it takes whole); `usize::MAX` for all. Only a speed hint: see [`Fields`].
fn fields_read(text: &str) -> usize {
    match text.as_bytes().get(..3) {
        Some(b"SI," | b"IY,") => 13,
        Some(b"TO,") => 17,
        Some(b"CO,") => 4,
        Some(b"SJ,") => 2,
        Some(b"SY,") => 7,
        Some(b"HO,") => 16,
        Some(b"CD,") => 11,
        Some(b"SK,") => 7,
        _ => usize::MAX,
    }
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
    // Nearly every line starts with two letters and a comma: no search needed.
    if let [x, y, b',', ..] = b
        && x.is_ascii_alphabetic()
        && y.is_ascii_alphabetic()
    {
        return &b[..2];
    }
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
    /// Hashes of the patients and public expense ids already written (foldhash values, looked up
    /// with foldhash too: SipHash showed in profiles).
    seen_patients: HashSet<u64, foldhash::fast::FixedState>,
    saw_ir: bool,
    /// Marked days of the current SI/TO/IY line (reused).
    days: Vec<(u32, u64)>,
    /// Comma positions of the RE line and of the other lines (reused).
    cuts: Vec<usize>,
    line_cuts: Vec<usize>,
    /// A receipt's diagnoses, CD drugs and IY drug days: empty between receipts, kept for their
    /// allocations (two allocations and frees per receipt showed in profiles).
    diagnoses: Vec<(bool, Diagnosis<&'static str>)>,
    cd_drugs: Vec<Prescription<&'static str>>,
    iy_days: Vec<(&'static str, NaiveDate)>,
}

/// `v` emptied, as a vector of another element type of the same layout (here: the same type
/// borrowing for another lifetime), keeping its allocation (std collects a `Vec`'s `into_iter`
/// in place when the layouts match; otherwise this only allocates anew).
fn recycle<T, U>(mut v: Vec<T>) -> Vec<U> {
    v.clear();
    v.into_iter().map(|_| unreachable!("the vector is empty")).collect()
}

impl Reader<'_> {
    fn q(&self, sink: &mut dyn Sink, no: u64, text: &str, field: &str, problem: impl Into<String>) {
        sink.quarantine(Quarantined::new(self.file, format!("line {no}"), field, problem, text));
    }

    /// The comment pairs (コメントコード, 文字データ) of an SI, IY or TO line from field `from`, as
    /// texts dated `date`, named after the line's record and code; an empty pair is skipped.
    fn comments(&self, f: &Fields<'_>, from: usize, date: NaiveDate, ids: (&str, &str), sink: &mut dyn Sink) {
        // Most lines carry no comment: the six fields then sit between seven adjacent commas.
        if f.start(from + 6).is_some_and(|e| f.start(from) == Some(e - 6)) {
            return;
        }
        let mut about = String::new();
        for k in 0..3 {
            let (code, text) = (f.get(from + 2 * k), f.get(from + 2 * k + 1));
            if code.is_empty() && text.is_empty() {
                continue;
            }
            if about.is_empty() {
                about = format!("コメント（{} {}）", f.get(0), f.get(3));
            }
            sink.record_ref(Record::Text(Text {
                provider_id: self.provider_id,
                patient_id: ids.0,
                encounter_id: ids.1,
                observed_date: date,
                code,
                name: &about,
                text,
            }));
        }
    }

    /// Maps one receipt (its RE line first). Clinical rows borrow the receipt's text and go to the
    /// sink as they are read; the patient and encounter, known only at the end, follow them.
    fn receipt(&mut self, r: &Receipt, sink: &mut dyn Sink) {
        let (re_no, re_text) = r.line(0);
        let mut f = Fields::with(std::mem::take(&mut self.cuts));
        f.split(re_text, usize::MAX);
        let re = f;
        let g = |i: usize| re.get(i);
        let bad_all = |this: &Self, sink: &mut dyn Sink, field: &str, problem: String| {
            this.q(sink, re_no, re_text, field, problem);
            for k in 1..r.lines.len() {
                let (no, text) = r.line(k);
                let problem = format!("belongs to the receipt at line {re_no} which is quarantined");
                this.q(sink, no, text, "record", problem);
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
        let made_id;
        let encounter_id: &str = match (g(20), g(18)) {
            ("", "") => {
                made_id = format!("{patient_id}-R{}", g(1));
                &made_id
            }
            ("", old) => old,
            (id, _) => id,
        };
        let ids = (patient_id, encounter_id);
        let mut birth_buf = [0u8; 10];
        let birth_text = iso_date(birth_date, &mut birth_buf);
        let mut patient = Patient {
            provider_id: self.provider_id,
            patient_id,
            name_kanji: g(4),
            name_kana: g(36),
            sex,
            birth_date: birth_text,
            ..Default::default()
        };
        let mut first_day: Option<NaiveDate> = None;
        let mut discharge = None;
        let mut row = ReceiptRow {
            provider_id: self.provider_id,
            patient_id,
            encounter_id,
            receipt_number: g(1),
            receipt_type: kind,
            service_month: month,
            benefit_ratio: g(7),
            copay_class: g(10),
            special_notes: g(11),
            ..Default::default()
        };
        // Diagnoses wait for the stay's first day (SB lines have no date of their own).
        let mut diagnoses: Vec<(bool, Diagnosis<&str>)> = recycle(std::mem::take(&mut self.diagnoses));
        let mut rank = 0u64;
        // Drugs of the CD lines, kept when no IY line gives the same drug that day.
        let mut cd_drugs: Vec<Prescription<&str>> = recycle(std::mem::take(&mut self.cd_drugs));
        let mut iy_days: Vec<(&str, NaiveDate)> = recycle(std::mem::take(&mut self.iy_days));
        let mut f = Fields::with(std::mem::take(&mut self.line_cuts));
        for k in 1..r.lines.len() {
            let (no, text) = r.line(k);
            f.split(text, fields_read(text));
            let g = |i: usize| f.get(i);
            match g(0) {
                "HO" => {
                    patient.insurer_number = g(1);
                    patient.card_symbol = g(2);
                    patient.card_number = g(3);
                    patient.card_branch = g(15);
                    // The totals: a bad one is quarantined by name and left empty; the card is still read.
                    // Each is parsed once (a count that is not a whole number is not a count either).
                    let (days, points, meal_times) = (opt_uint(g(4)), opt_int(g(5)), opt_uint(g(7)));
                    let (meal_amount, copay) = (opt_int(g(8)), opt_int(g(11)));
                    let named = [
                        (4, "診療実日数", days.is_err()),
                        (5, "合計点数", points.is_err()),
                        (7, "回数", meal_times.is_err()),
                        (8, "合計金額", meal_amount.is_err()),
                        (11, "負担金額", copay.is_err()),
                    ];
                    for (i, name, bad) in named {
                        if bad {
                            self.q(
                                sink,
                                no,
                                text,
                                &format!("HO.{i} {name}"),
                                format!("{:?} is not a whole number", g(i)),
                            );
                        }
                    }
                    row.insurance_days = days.unwrap_or_default();
                    row.insurance_points = points.unwrap_or_default();
                    row.meal_times = meal_times.unwrap_or_default();
                    row.meal_amount = meal_amount.unwrap_or_default();
                    row.patient_copay = copay.unwrap_or_default();
                }
                "SY" => {
                    let code = g(1);
                    let Some(date) = full_date(g(2)) else {
                        self.q(sink, no, text, "SY.2 診療開始日", format!("{:?} is not GYYMMDD or YYYYMMDD", g(2)));
                        continue;
                    };
                    // 未コード化傷病名 (0000999) is named by SY.5.
                    let uncoded = code == "0000999" && !g(5).is_empty();
                    let (name, icd10) = match self.masters.disease.get(code) {
                        Some(e) => (if uncoded { g(5) } else { e.name.as_str() }, e.canonical.as_str()),
                        None if uncoded => (g(5), ""),
                        None => {
                            let problem = format!("{code:?} is not in the disease master");
                            self.q(sink, no, text, "SY.1 傷病名コード", problem);
                            continue;
                        }
                    };
                    let (provider_id, encounter_id) = (self.provider_id, encounter_id);
                    let d = Diagnosis {
                        provider_id,
                        patient_id,
                        encounter_id,
                        diagnosis_date: date,
                        icd10,
                        diagnosis_name: name,
                        main: g(6) == "01",
                    };
                    diagnoses.push((false, d));
                }
                "SB" => {
                    let (code, icd) = (g(1), g(4));
                    let name = match g(3) {
                        "" => self.masters.disease.get(code).map_or("", |e| e.name.as_str()),
                        n => n,
                    };
                    if icd.is_empty() && name.is_empty() {
                        self.q(sink, no, text, "SB.4 ICD10コード", "neither an ICD-10 code nor a name");
                        continue;
                    }
                    let d = Diagnosis {
                        provider_id: self.provider_id,
                        patient_id,
                        encounter_id,
                        diagnosis_date: month,
                        icd10: icd,
                        diagnosis_name: name,
                        main: g(5) == "01",
                    };
                    diagnoses.push((true, d));
                }
                "BU" => {
                    match (g(3), full_date(g(3))) {
                        (_, Some(d)) => discharge = Some(d),
                        ("", None) => {}
                        (x, None) => {
                            let problem = format!("{x:?} is not GYYMMDD or YYYYMMDD");
                            self.q(sink, no, text, "BU.3 今回退院年月日", problem);
                        }
                    }
                    row.dpc_code = g(1);
                    row.dpc_outcome = g(4);
                }
                "SI" | "TO" => {
                    let to = g(0) == "TO";
                    let (rec, days_from) = if to { ("TO", 17) } else { ("SI", 13) };
                    let Some(times) = digits(g(6)) else {
                        let problem = format!("{:?} is not a whole number", g(6));
                        self.q(sink, no, text, &format!("{rec}.6 回数"), problem);
                        continue;
                    };
                    let (Ok(quantity), Ok(points)) = (opt_num(g(4)), opt_int(g(5))) else {
                        let (field, v) = if opt_num(g(4)).is_err() { (4, g(4)) } else { (5, g(5)) };
                        let name = if field == 4 { if to { "使用量" } else { "数量データ" } } else { "点数" };
                        self.q(sink, no, text, &format!("{rec}.{field} {name}"), format!("{v:?} is not a number"));
                        continue;
                    };
                    let unit_price = if to { opt_num(g(8)) } else { Ok(None) };
                    let Ok(unit_price) = unit_price else {
                        self.q(sink, no, text, "TO.8 単価", format!("{:?} is not a number", g(8)));
                        continue;
                    };
                    if let Err(k) = marked_days(&f, days_from, &mut self.days) {
                        let problem = format!("{:?} is not a count of times", f.get(days_from + k));
                        self.q(sink, no, text, &format!("{rec}.{} 算定日 {}日", days_from + k, k + 1), problem);
                        continue;
                    }
                    let first_marked = self.days.first().and_then(|&(d, _)| month.with_day(d));
                    if first_day.is_none() && !to {
                        first_day = first_marked;
                    }
                    // No marked day: one row for the month, with the line's 回数.
                    let no_day = [(0, u64::from(times))];
                    let per_day: &[(u32, u64)] = if self.days.is_empty() { &no_day } else { &self.days };
                    let (care_category, burden_category, code) = (g(1), g(2), g(3));
                    for &(day, count) in per_day {
                        let (date, day_known) = match month.with_day(day) {
                            Some(d) if day > 0 => (d, true),
                            _ => (month, false),
                        };
                        sink.record_ref(if to {
                            Record::Material(Material {
                                provider_id: self.provider_id,
                                patient_id,
                                encounter_id,
                                used_date: date,
                                day_known,
                                source: "UKE TO",
                                care_category,
                                burden_category,
                                material_code: code,
                                material_name: match g(9) {
                                    "" => self.masters.material.get(code).map_or("", |e| e.name.as_str()),
                                    n => n,
                                },
                                product_name: g(10),
                                quantity,
                                unit_code: g(7),
                                unit_price,
                                points,
                                count,
                            })
                        } else {
                            Record::Procedure(Procedure {
                                provider_id: self.provider_id,
                                patient_id,
                                encounter_id,
                                procedure_date: date,
                                day_known,
                                source: "UKE SI",
                                care_category,
                                burden_category,
                                procedure_code: code,
                                procedure_name: self.masters.procedure.get(code).map_or("", |e| e.name.as_str()),
                                quantity,
                                points,
                                count,
                            })
                        });
                    }
                    self.comments(&f, if to { 11 } else { 7 }, first_marked.unwrap_or(month), ids, sink);
                }
                "CO" => sink.record_ref(Record::Text(Text {
                    provider_id: self.provider_id,
                    patient_id,
                    encounter_id,
                    observed_date: admitted.or(first_day).unwrap_or(month),
                    code: g(3),
                    name: "コメント",
                    text: f.rest(4),
                })),
                "KO" => {
                    let payer = g(1);
                    if payer.len() != 8 || !payer.bytes().all(|b| b.is_ascii_digit()) {
                        self.q(sink, no, text, "KO.1 負担者番号", format!("{payer:?} is not 8 digits"));
                        continue;
                    }
                    let ints = [
                        (5, "合計点数"),
                        (6, "公費負担金額"),
                        (7, "外来一部負担金"),
                        (8, "入院一部負担金"),
                        (11, "合計金額"),
                    ];
                    let uints = [(4, "診療実日数"), (10, "回数")];
                    let bad = ints
                        .iter()
                        .find(|(i, _)| opt_int(g(*i)).is_err())
                        .or_else(|| uints.iter().find(|(i, _)| opt_uint(g(*i)).is_err()));
                    if let Some((i, name)) = bad {
                        self.q(sink, no, text, &format!("KO.{i} {name}"), format!("{:?} is not a whole number", g(*i)));
                        continue;
                    }
                    let int = |i: usize| opt_int(g(i)).unwrap_or_default();
                    let uint = |i: usize| opt_uint(g(i)).unwrap_or_default();
                    rank += 1;
                    sink.record_ref(Record::PublicExpense(PublicExpense {
                        provider_id: self.provider_id,
                        patient_id,
                        encounter_id,
                        service_month: month,
                        rank,
                        program_code: &payer[..2],
                        prefecture_code: &payer[2..4],
                        benefit_class: g(3),
                        days: uint(4),
                        points: int(5),
                        public_burden: int(6),
                        outpatient_copay: int(7),
                        inpatient_copay: int(8),
                        times: uint(10),
                        amount: int(11),
                    }));
                    let id = PublicExpenseId {
                        provider_id: self.provider_id,
                        patient_id,
                        payer_number: payer,
                        recipient_number: g(2),
                    };
                    let key = std::hash::BuildHasher::hash_one(&foldhash::quality::FixedState::with_seed(1), &id);
                    if self.seen_patients.insert(key) {
                        sink.record_ref(Record::PublicExpenseId(id));
                    }
                }
                "IY" => {
                    let code = g(3);
                    let Some(e) = self.masters.drug.get(code) else {
                        self.q(sink, no, text, "IY.3 医薬品コード", format!("{code:?} is not in the drug master"));
                        continue;
                    };
                    if let Err(k) = marked_days(&f, 13, &mut self.days) {
                        let problem = format!("{:?} is not a count of times", f.get(13 + k));
                        self.q(sink, no, text, &format!("IY.{} 算定日 {}日", 13 + k, k + 1), problem);
                        continue;
                    }
                    let Some(day) = self.days.first().and_then(|&(d, _)| month.with_day(d)) else {
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
                    self.comments(&f, 7, day, ids, sink);
                    iy_days.push((e.canonical.as_str(), day));
                    sink.record_ref(Record::Prescription(Prescription {
                        provider_id: self.provider_id,
                        patient_id,
                        encounter_id,
                        prescribed_date: day,
                        drug_code: &e.canonical,
                        drug_name: &e.name,
                        route: &e.extra,
                        days: days.into(),
                    }));
                }
                "CD" => {
                    // コーディングデータ (DPC): everything done, day by day, 包括 items included.
                    // Procedures and materials are kept with source `UKE CD` (apart from the SI/TO
                    // claim lines); a drug is kept unless an IY line of the receipt already gives
                    // it on that day.
                    let Some(day) = full_date(g(1)) else {
                        self.q(sink, no, text, "CD.1 実施年月日", format!("{:?} is not GYYMMDD or YYYYMMDD", g(1)));
                        continue;
                    };
                    let Some(count) = digits(g(9)) else {
                        self.q(sink, no, text, "CD.9 回数", format!("{:?} is not a whole number", g(9)));
                        continue;
                    };
                    let (Ok(used), Ok(amount)) = (opt_num(g(6)), opt_num(g(7))) else {
                        let (i, name) = if opt_num(g(6)).is_err() { (6, "使用量") } else { (7, "数量データ") };
                        self.q(sink, no, text, &format!("CD.{i} {name}"), format!("{:?} is not a number", g(i)));
                        continue;
                    };
                    let (care_category, code) = (g(2), g(5));
                    match code.as_bytes().first() {
                        Some(b'1') => sink.record_ref(Record::Procedure(Procedure {
                            provider_id: self.provider_id,
                            patient_id,
                            encounter_id,
                            procedure_date: day,
                            day_known: true,
                            source: "UKE CD",
                            care_category,
                            burden_category: "",
                            procedure_code: code,
                            procedure_name: self.masters.procedure.get(code).map_or("", |e| e.name.as_str()),
                            quantity: amount,
                            points: None,
                            count: count.into(),
                        })),
                        Some(b'7') => sink.record_ref(Record::Material(Material {
                            provider_id: self.provider_id,
                            patient_id,
                            encounter_id,
                            used_date: day,
                            day_known: true,
                            source: "UKE CD",
                            care_category,
                            burden_category: "",
                            material_code: code,
                            material_name: match g(10) {
                                "" => self.masters.material.get(code).map_or("", |e| e.name.as_str()),
                                n => n,
                            },
                            product_name: "",
                            quantity: used,
                            unit_code: g(8),
                            unit_price: None,
                            points: None,
                            count: count.into(),
                        })),
                        Some(b'6') => match self.masters.drug.get(code) {
                            Some(e) => cd_drugs.push(Prescription {
                                provider_id: self.provider_id,
                                patient_id,
                                encounter_id,
                                prescribed_date: day,
                                drug_code: &e.canonical,
                                drug_name: &e.name,
                                route: &e.extra,
                                days: count.into(),
                            }),
                            None => {
                                self.q(
                                    sink,
                                    no,
                                    text,
                                    "CD.5 レセプト電算処理システム用コード",
                                    format!("{code:?} is not in the drug master"),
                                );
                            }
                        },
                        _ => {
                            let problem = format!("{code:?} is not a 診療行為 (1…), 医薬品 (6…) or 特定器材 (7…) code");
                            self.q(sink, no, text, "CD.5 レセプト電算処理システム用コード", problem);
                        }
                    }
                }
                "SK" => {
                    // 診療関連情報 (DPC): the operations and procedures the DPC code was grouped on.
                    let (code, section, name) = (g(1), g(2), g(6));
                    let code = [code, section, g(5)].into_iter().find(|c| !c.is_empty()).unwrap_or("");
                    if code.is_empty() {
                        self.q(sink, no, text, "SK.2 区分番号", "no 診療行為コード, 区分番号 or 診療区分コード");
                        continue;
                    }
                    let (date, day_known) = match (g(3), full_date(g(3))) {
                        (_, Some(d)) => (d, true),
                        ("", None) => (admitted.unwrap_or(month), false),
                        (x, None) => {
                            let problem = format!("{x:?} is not GYYMMDD or YYYYMMDD");
                            self.q(sink, no, text, "SK.3 実施(予定)年月日", problem);
                            continue;
                        }
                    };
                    sink.record_ref(Record::Procedure(Procedure {
                        provider_id: self.provider_id,
                        patient_id,
                        encounter_id,
                        procedure_date: date,
                        day_known,
                        source: "UKE SK",
                        care_category: "",
                        burden_category: "",
                        procedure_code: code,
                        procedure_name: match name {
                            "" => self.masters.procedure.get(code).map_or("", |e| e.name.as_str()),
                            n => n,
                        },
                        quantity: None,
                        points: None,
                        count: 1,
                    }));
                }
                "SJ" => sink.record_ref(Record::Text(Text {
                    provider_id: self.provider_id,
                    patient_id,
                    encounter_id,
                    observed_date: admitted.or(first_day).unwrap_or(month),
                    code: g(1),
                    name: "症状詳記",
                    text: f.rest(2),
                })),
                _ => {}
            }
        }
        let key = std::hash::BuildHasher::hash_one(&foldhash::quality::FixedState::with_seed(0), &patient);
        if self.seen_patients.insert(key) {
            sink.record_ref(Record::Patient(patient));
        }
        let department = match g(21) {
            "" => "",
            d => department_name(d),
        };
        let first = admitted.or(first_day).unwrap_or(month);
        sink.record_ref(Record::Encounter(Encounter {
            provider_id: self.provider_id,
            patient_id,
            encounter_id,
            encounter_type: if inpatient { "入院" } else { "外来" },
            department,
            admission_date: first,
            discharge_date: discharge,
        }));
        sink.record_ref(Record::Receipt(row));
        for p in cd_drugs.drain(..) {
            if !iy_days.contains(&(p.drug_code, p.prescribed_date)) {
                sink.record_ref(Record::Prescription(p));
            }
        }
        for (stay_dated, mut d) in diagnoses.drain(..) {
            if stay_dated {
                d.diagnosis_date = first;
            }
            sink.record_ref(Record::Diagnosis(d));
        }
        self.cuts = re.into_cuts();
        self.line_cuts = f.into_cuts();
        self.diagnoses = recycle(diagnoses);
        self.cd_drugs = recycle(cd_drugs);
        self.iy_days = recycle(iy_days);
    }
}

/// The state of one file being read, line by line.
struct Parse<'a> {
    rd: Reader<'a>,
    stats: UkeStats,
    cur: Receipt,
    /// The receipt being read: none yet, a good one (in `cur`), or one whose RE line was quarantined.
    state: State,
    go: Option<(u64, String)>,
    no: u64,
}

impl Parse<'_> {
    /// One line without its ending; `cut` when the file ends inside it.
    fn line(&mut self, piece: &[u8], cut: bool, sink: &mut dyn Sink) {
        let piece = if self.no == 0 { strip_bom(piece).0 } else { piece };
        let piece = piece.strip_suffix(b"\x1a").unwrap_or(piece);
        if piece.is_empty() {
            return;
        }
        self.no += 1;
        self.stats.lines += 1;
        let (no, rd) = (self.no, &mut self.rd);
        let id = record_id(piece);
        if cut && id != b"GO" {
            // The file ends inside this line: whatever it holds may be cut short, so it is not read.
            let problem = "the file ends in the middle of this line (truncated): not read";
            sink.quarantine(Quarantined::new(rd.file, format!("line {no}"), "record", problem, &raw_text(piece)));
            return;
        }
        if self.go.is_some() {
            rd.q(sink, no, &raw_text(piece), "record", "record after the GO (end of claim) record");
            return;
        }
        match id {
            b"RE" => {
                if !rd.saw_ir {
                    let problem = "missing IR record before the first receipt (file truncated at the start?)";
                    rd.q(sink, no, &raw_text(piece), "IR", problem);
                    rd.saw_ir = true;
                }
                if self.state == State::Good {
                    rd.receipt(&self.cur, sink);
                }
                self.stats.receipts += 1;
                self.cur.clear();
                self.state = match self.cur.push(no, piece) {
                    Ok(()) => State::Good,
                    Err(e) => {
                        rd.q(sink, no, &raw_text(piece), "record", e);
                        State::Bad(no)
                    }
                };
            }
            b"GO" => {
                if self.state == State::Good {
                    rd.receipt(&self.cur, sink);
                }
                self.state = State::Outside;
                if let Err(e) = decode_sjis(piece) {
                    rd.q(sink, no, &raw_text(piece), "record", e);
                }
                self.go = Some((no, raw_text(piece)));
            }
            b"IR" => {
                // Its name is the first Japanese a reader meets: a wrong encoding shows here first.
                if let Err(e) = decode_sjis(piece) {
                    rd.q(sink, no, &raw_text(piece), "record", e);
                }
                if rd.saw_ir || self.state != State::Outside {
                    rd.q(sink, no, &raw_text(piece), "IR", "a second IR record: two files were concatenated?");
                }
                rd.saw_ir = true;
            }
            x if x.len() == 2 && KNOWN.iter().any(|k| k.as_bytes() == x) => match self.state {
                State::Good => {
                    if let Err(e) = self.cur.push(no, piece) {
                        rd.q(sink, no, &raw_text(piece), "record", e);
                    }
                }
                State::Bad(re) => {
                    let problem = format!("belongs to the receipt at line {re} which is quarantined");
                    rd.q(sink, no, &raw_text(piece), "record", problem)
                }
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

/// Reads one UKE file (medical or DPC) from `input`, streaming receipts into `sink`.
pub fn read(
    mut input: impl BufRead,
    file: &str,
    provider_id: &str,
    masters: &Masters,
    sink: &mut dyn Sink,
) -> std::io::Result<UkeStats> {
    let rd = Reader {
        file,
        provider_id,
        masters,
        seen_patients: HashSet::default(),
        saw_ir: false,
        days: Vec::new(),
        cuts: Vec::new(),
        line_cuts: Vec::new(),
        diagnoses: Vec::new(),
        cd_drugs: Vec::new(),
        iy_days: Vec::new(),
    };
    let mut p =
        Parse { rd, stats: UkeStats::default(), cur: Receipt::default(), state: State::Outside, go: None, no: 0 };
    // Lines are cut straight out of the reader's buffer; only a line across two buffers is copied.
    let mut carry: Vec<u8> = Vec::new();
    let mut last_byte = None;
    loop {
        let chunk = input.fill_buf()?;
        if chunk.is_empty() {
            break;
        }
        let len = chunk.len();
        p.stats.bytes += len as u64;
        last_byte = chunk.last().copied();
        let mut rest = chunk;
        // A lone CR also ends a line (mixed endings after hand edits); CR LF gives an empty line, skipped.
        if !carry.is_empty() {
            match memchr::memchr2(b'\r', b'\n', rest) {
                Some(i) => {
                    carry.extend_from_slice(&rest[..i]);
                    p.line(&carry, false, sink);
                    carry.clear();
                    rest = &rest[i + 1..];
                }
                None => {
                    carry.extend_from_slice(rest);
                    rest = &[];
                }
            }
        }
        while let Some(i) = memchr::memchr2(b'\r', b'\n', rest) {
            p.line(&rest[..i], false, sink);
            // CR LF in one step: the empty line between them would be skipped anyway.
            let end = if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') { i + 2 } else { i + 1 };
            rest = &rest[end..];
        }
        carry.extend_from_slice(rest);
        input.consume(len);
    }
    if !carry.is_empty() {
        p.line(&carry, true, sink);
    }
    let Parse { mut rd, stats, cur, state, go, no } = p;
    if state == State::Good {
        rd.receipt(&cur, sink);
    }
    match go {
        None => sink.quarantine(Quarantined::new(
            file,
            format!("end of file (line {no})"),
            "GO",
            if last_byte.is_none_or(|b| b == b'\n') {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wareki7_agrees_with_the_model_parser() {
        for g in 0..=6 {
            for yy in 0..100 {
                for mm in [0, 1, 2, 4, 5, 7, 12, 13] {
                    for dd in [0, 1, 7, 8, 24, 25, 28, 29, 30, 31, 32] {
                        let s = format!("{g}{yy:02}{mm:02}{dd:02}");
                        assert_eq!(wareki7(&s), WarekiDate::parse(&s).ok().map(|w| w.date()), "{s}");
                    }
                }
            }
        }
    }

    #[test]
    fn iso_date_and_trim_agree_with_the_library() {
        for d in ["1868-01-01", "1989-01-07", "2024-02-29", "0999-12-31"] {
            let date: NaiveDate = d.parse().unwrap();
            assert_eq!(iso_date(date, &mut [0; 10]), date.to_string());
        }
        for s in ["", " ", "a", " a ", "\u{3000}山田\u{3000}", "山田", "12 ", "\t1"] {
            assert_eq!(trim(s), s.trim(), "{s:?}");
        }
    }

    #[test]
    fn fields_split_early_read_the_same_fields_as_a_full_split() {
        let lines = [
            "",
            ",",
            ",,",
            "SI",
            "SI,",
            "SI,12,1,112007410,,73,1,,,,,,,,1,,2,,",
            " a , b ,c",
            "CO,1,2,3,text, with, commas",
            "IY,21,1,620000001,1,10,14,,,,,,,1,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,x",
            "RE,1,1112,50510,沼田寿英,1,3171123,70,,,,,,55323684,,,,,,,55323684-1,09,,,,,,,,,,,,,,,ﾇﾏﾀ ﾄｼﾋﾃﾞ,",
            ",,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,",
            "abcdefgh,ijklmnop,qrstuvw,xyz\u{2c00}\u{ff0c},,",
        ];
        for text in lines {
            let whole: Vec<&str> = text.split(',').collect();
            for max in [0, 1, 2, 3, 4, 7, 13, 17, usize::MAX] {
                let mut f = Fields::with(Vec::new());
                f.split(text, max);
                for i in 0..whole.len() + 3 {
                    let want = whole.get(i).copied().unwrap_or("");
                    assert_eq!(f.raw(i), want, "{text:?} split at {max}: field {i}");
                    let rest =
                        if i == 0 { text.to_owned() } else { whole.get(i..).map_or(String::new(), |r| r.join(",")) };
                    assert_eq!(f.rest(i), rest, "{text:?} split at {max}: rest from {i}");
                }
            }
        }
    }

    #[test]
    fn year_month_takes_months_an_era_holds_only_in_part() {
        let ym = |y, m| NaiveDate::from_ymd_opt(y, m, 1);
        assert_eq!(year_month("36401"), ym(1989, 1), "昭和64年1月 (1st–7th)");
        assert_eq!(year_month("40101"), ym(1989, 1), "平成元年1月 (8th–31st)");
        assert_eq!(year_month("30101"), None, "昭和 began on 25 December 1926");
        assert_eq!(year_month("43104"), ym(2019, 4));
        assert_eq!(year_month("50105"), ym(2019, 5));
        assert_eq!(year_month("50104"), None, "令和 began in May");
        assert_eq!(year_month("202406"), ym(2024, 6));
    }

    #[test]
    fn lines_split_across_reader_buffers_read_the_same() {
        let text = "IR,1,13,1,1234567,,x,50704,00,\r\nRE,1,1112,50704,ヤマダ,1,3500101,,,,,,,P1,\rHO,1\nGO,1,0,99\r\n";
        let b = encode_sjis(text).unwrap();
        let read_with = |cap: usize| {
            let mut c = crate::canonical::Collected::default();
            let st =
                read(std::io::BufReader::with_capacity(cap, &b[..]), "t", "p", &Masters::default(), &mut c).unwrap();
            (st, c.records, c.quarantined)
        };
        let whole = read_with(1 << 16);
        assert_eq!(whole.0.lines, 4);
        for cap in 1..12 {
            assert_eq!(read_with(cap), whole, "buffer of {cap} bytes");
        }
    }
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
            masters.procedure.insert("112007410", "初診料", "", "");
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
