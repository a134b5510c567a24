//! HL7 v2.5 messages as SS-MIX2 stores them: ISO-2022-JP text, CR-separated segments.
//!
//! Read: ADT^A01/A03/A04/A08 (patient identity from PID and IN1; encounters from PV1), PPR^ZD1
//! (diagnoses from PRB), RDE^O11 and RAS^O17 (prescriptions from RXE/RXA with TQ1 and RXR),
//! OML^O33, OUL^R22 and ORU^R01 (OBX: numeric results to `labs`, free text to `texts`).
//! Field mapping (JAHIS conventions): PID-3 patient id; PID-5 repetitions with XPN.8 `I`
//! (ideographic, kanji) and `P` (phonetic, kana); PID-7 birth date; PID-8 sex; PID-11 address
//! (XAD.1 full line or XAD.4+3+8, XAD.5 postal code); PID-13 home phone (PID-14 when empty);
//! IN1-3 insurer number, IN1-10 card symbol (記号), IN1-11 card number (番号), IN1-49 branch (枝番);
//! PV1-2 class (`I` 入院, `O` 外来), PV1-10 department, PV1-19 visit number, PV1-44/45 admit and
//! discharge; PRB-3 `code^name^I10`, PRB-7 onset, ZPR-1 `Y` main diagnosis (kiban's Z-segment);
//! RXE-2 / RXA-5 drug `code^name^system`, TQ1-6 days `14^d`, RXR-1 route, ORC-9 / RXA-3 date;
//! OBX-2 value type, OBX-3 `code^name^JC10`, OBX-5 value, OBX-6 unit, OBX-14 date.
//! Receipt-side data (kiban writes it as DFT^P03, SS-MIX2 data kind `DFT-01`, as HL7 v2.5 has no
//! receipt message): FT1 per procedure or material (FT1-4 day, or `start^end` of the month when
//! the day is not known; FT1-6 `CG`; FT1-7 `code^name^99KSI` procedure / `99KTO` material; FT1-10
//! times), with kiban's ZFT (source, 診療識別, 負担区分, 数量, points, product, unit, unit price);
//! IN1 per 公費 programme (IN1-1 rank, IN1-2 `法別番号^^99KPE`, IN1-12 month) with ZPE (amounts);
//! ZRC a receipt's header and totals. The 公費 numbers go in their own ADT^A08 (IN1-2
//! `法別番号^^99KPE`, IN1-3 負担者番号, IN1-36 受給者番号), read to the identity side.
//! A message that cannot be decoded or lacks MSH/PID is quarantined whole; a bad field quarantines
//! only the record it belongs to.

use chrono::NaiveDate;

use crate::canonical::{
    Diagnosis, Encounter, Lab, Material, Patient, Prescription, Procedure, PublicExpense, PublicExpenseId, Quarantined,
    Receipt, Record, Sink, Text,
};
use crate::encoding::{decode_iso2022jp, encode_iso2022jp, strip_bom};

/// Delimiters of a message, from MSH-1 and MSH-2.
#[derive(Debug, Clone, Copy)]
pub struct Delims {
    field: char,
    comp: char,
    rep: char,
    esc: char,
    sub: char,
}

impl Default for Delims {
    fn default() -> Self {
        Delims { field: '|', comp: '^', rep: '~', esc: '\\', sub: '&' }
    }
}

/// One segment: its name and raw fields (`fields[n]` is `SEG-n`).
#[derive(Debug, Clone)]
pub struct Segment<'a> {
    /// Segment id, e.g. `PID`.
    pub name: &'a str,
    fields: Vec<&'a str>,
    /// Position in the message, 1-based.
    pub index: usize,
}

impl<'a> Segment<'a> {
    /// Raw field `n` (`""` when absent).
    pub fn raw(&self, n: usize) -> &'a str {
        self.fields.get(n).copied().unwrap_or("")
    }
    /// Repetitions of field `n`.
    pub fn reps(&self, n: usize, d: Delims) -> impl Iterator<Item = &'a str> {
        let r = self.raw(n);
        r.split(d.rep).filter(move |_| !r.is_empty())
    }
    /// Component `c` (1-based) of the first repetition of field `n`, unescaped.
    pub fn comp(&self, n: usize, c: usize, d: Delims) -> String {
        let first = self.raw(n).split(d.rep).next().unwrap_or("");
        component(first, c, d)
    }
}

/// Component `c` (1-based) of one field repetition, unescaped (subcomponents joined).
pub fn component(rep: &str, c: usize, d: Delims) -> String {
    let v = rep.split(d.comp).nth(c - 1).unwrap_or("");
    unescape(&v.replace(d.sub, ""), d)
}

/// A parsed message.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    /// Delimiters.
    pub delims: Delims,
    /// Segments in order.
    pub segments: Vec<Segment<'a>>,
}

impl<'a> Message<'a> {
    /// First segment named `name`.
    pub fn seg(&self, name: &str) -> Option<&Segment<'a>> {
        self.segments.iter().find(|s| s.name == name)
    }
    /// `MSH-9` as `TYPE^EVENT`.
    pub fn kind(&self) -> (String, String) {
        let msh = &self.segments[0];
        (msh.comp(9, 1, self.delims), msh.comp(9, 2, self.delims))
    }
}

/// Splits text into segments (CR, LF or CR LF) and fields. Fails when the first segment is not a
/// well-formed MSH.
pub fn parse(text: &str) -> Result<Message<'_>, String> {
    let mut segs = text.split(['\r', '\n']).filter(|s| !s.trim().is_empty());
    let msh = segs.next().ok_or("empty message")?;
    if !msh.starts_with("MSH") || msh.len() < 8 {
        return Err(format!("first segment is not MSH: {:?}", msh.chars().take(20).collect::<String>()));
    }
    let mut chars = msh[3..].chars();
    let field = chars.next().ok_or("MSH-1 missing")?;
    let enc: Vec<char> = msh[3 + field.len_utf8()..].chars().take_while(|&c| c != field).collect();
    if enc.len() < 4 || field.is_alphanumeric() || enc.iter().any(|c| c.is_alphanumeric() || *c == field) {
        return Err("MSH-2 encoding characters are malformed (expected ^~\\&)".into());
    }
    let d = Delims { field, comp: enc[0], rep: enc[1], esc: enc[2], sub: enc[3] };
    let mut fields = vec!["MSH", &msh[3..3 + field.len_utf8()]];
    fields.extend(msh[3 + field.len_utf8()..].split(field));
    let mut segments = vec![Segment { name: "MSH", fields, index: 1 }];
    for (i, s) in segs.enumerate() {
        let fields: Vec<&str> = s.split(field).collect();
        let name = fields[0];
        if name.len() != 3 || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!(
                "segment {} has no valid segment id: {:?}",
                i + 2,
                name.chars().take(10).collect::<String>()
            ));
        }
        segments.push(Segment { name, fields, index: i + 2 });
    }
    Ok(Message { delims: d, segments })
}

/// Resolves HL7 escape sequences (`\F\ \S\ \T\ \R\ \E\ \.br\ \Xhh..\`).
pub fn unescape(s: &str, d: Delims) -> String {
    if !s.contains(d.esc) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut it = s.split(d.esc);
    out.push_str(it.next().unwrap_or(""));
    let parts: Vec<&str> = it.collect();
    let mut i = 0;
    while i < parts.len() {
        let code = parts[i];
        if i + 1 >= parts.len() {
            // Unterminated escape: keep it as written rather than lose it.
            out.push(d.esc);
            out.push_str(code);
            break;
        }
        match code {
            "F" => out.push(d.field),
            "S" => out.push(d.comp),
            "T" => out.push(d.sub),
            "R" => out.push(d.rep),
            "E" => out.push(d.esc),
            ".br" => out.push('\n'),
            x if x.starts_with('X') && x.len() % 2 == 1 => {
                let bytes: Vec<u8> =
                    (1..x.len()).step_by(2).filter_map(|k| u8::from_str_radix(&x[k..k + 2], 16).ok()).collect();
                out.push_str(&String::from_utf8_lossy(&bytes));
            }
            other => {
                out.push(d.esc);
                out.push_str(other);
                out.push(d.esc);
            }
        }
        out.push_str(parts[i + 1]);
        i += 2;
    }
    out
}

/// Escapes the delimiters in a value.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '|' => out.push_str("\\F\\"),
            '^' => out.push_str("\\S\\"),
            '&' => out.push_str("\\T\\"),
            '~' => out.push_str("\\R\\"),
            '\\' => out.push_str("\\E\\"),
            '\n' => out.push_str("\\.br\\"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// Parses an HL7 date or timestamp (`YYYYMMDD[HHMM…]`) to its day.
pub fn ts_date(s: &str) -> Option<NaiveDate> {
    crate::canonical::yyyymmdd(s)
}

/// Where a message sits, for quarantine entries.
pub struct Origin<'a> {
    /// File name.
    pub file: &'a str,
    /// Provider id the records belong to.
    pub provider_id: &'a str,
}

/// Reads one file of HL7 messages (one message as SS-MIX2 stores it, or a batch of several, each
/// starting with MSH). Every message ends up as records or a quarantine entry.
pub fn read_bytes(bytes: &[u8], origin: &Origin<'_>, sink: &mut dyn Sink) -> u64 {
    let (bytes, _) = strip_bom(bytes);
    // Split on raw MSH starts first, so one undecodable message does not take its neighbours along.
    let mut starts: Vec<usize> = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let line_start = at == 0 || matches!(bytes[at - 1], b'\r' | b'\n');
        if line_start && bytes[at..].starts_with(b"MSH") {
            starts.push(at);
        }
        at += 1;
    }
    if starts.first() != Some(&0) {
        let head_end = starts.first().copied().unwrap_or(bytes.len());
        let head = String::from_utf8_lossy(&bytes[..head_end]);
        if !head.trim().is_empty() {
            sink.quarantine(Quarantined::new(
                origin.file,
                "message 1",
                "MSH",
                "missing MSH segment: text before the first message header",
                &head,
            ));
        }
    }
    let mut n = 0;
    for (k, &s) in starts.iter().enumerate() {
        let e = starts.get(k + 1).copied().unwrap_or(bytes.len());
        n += 1;
        read_message(&bytes[s..e], k + 1, origin, sink);
    }
    n
}

fn charset_is_utf8(raw: &[u8]) -> bool {
    // MSH-18 sits in the ASCII header line; only UTF-8 is taken as an alternative to ISO-2022-JP.
    let end = memchr::memchr2(b'\r', b'\n', raw).unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..end]);
    head.split('|').nth(17).is_some_and(|f| f.to_ascii_uppercase().contains("UTF-8"))
}

fn read_message(raw: &[u8], k: usize, origin: &Origin<'_>, sink: &mut dyn Sink) {
    let loc = format!("message {k}");
    let body = raw.strip_suffix(b"\x1b(B").unwrap_or(raw);
    if !matches!(body.last(), Some(b'\r' | b'\n')) {
        // Every segment ends with CR: a message that does not was cut, and its last field may be half.
        let problem = "the message does not end with a segment terminator (CR): the file is truncated";
        return sink.quarantine(Quarantined::new(origin.file, &loc, "segment", problem, &String::from_utf8_lossy(raw)));
    }
    let text = if charset_is_utf8(raw) {
        match std::str::from_utf8(raw) {
            Ok(t) => std::borrow::Cow::Borrowed(t),
            Err(e) => {
                let q = Quarantined::new(origin.file, &loc, "MSH-18", format!("declared UTF-8 but {e}"), "");
                return sink.quarantine(q);
            }
        }
    } else {
        match decode_iso2022jp(raw) {
            Ok(t) => t,
            Err(e) => {
                let raw = String::from_utf8_lossy(raw);
                return sink.quarantine(Quarantined::new(origin.file, &loc, "message", e, &raw));
            }
        }
    };
    let msg = match parse(&text) {
        Ok(m) => m,
        Err(e) => return sink.quarantine(Quarantined::new(origin.file, &loc, "segment", e, &text)),
    };
    map_message(&msg, &text, &loc, origin, sink);
}

struct Ctx<'a, 'b> {
    origin: &'a Origin<'b>,
    loc: &'a str,
    text: &'a str,
    patient_id: String,
    encounter_id: String,
}

impl Ctx<'_, '_> {
    fn bad(&self, sink: &mut dyn Sink, seg: &Segment<'_>, field: &str, problem: impl Into<String>) {
        let loc = format!("{} segment {} ({})", self.loc, seg.index, seg.name);
        sink.quarantine(Quarantined::new(self.origin.file, loc, field, problem, self.text));
    }
}

fn sex_code(s: &str) -> &'static str {
    match s {
        "M" => "1",
        "F" => "2",
        _ => "0",
    }
}

fn join_name(family: &str, given: &str) -> String {
    if given.is_empty() { family.to_owned() } else { format!("{family}\u{3000}{given}") }
}

fn patient(msg: &Message<'_>, pid: &Segment<'_>, c: &Ctx<'_, '_>) -> Result<Patient, (String, String)> {
    let d = msg.delims;
    let mut kanji = String::new();
    let mut kana = String::new();
    for (i, rep) in pid.reps(5, d).enumerate() {
        let name = join_name(&component(rep, 1, d), &component(rep, 2, d));
        match component(rep, 8, d).as_str() {
            "P" => kana = name,
            "I" => kanji = name,
            _ if i == 0 && kanji.is_empty() => kanji = name,
            _ => {}
        }
    }
    let birth = pid.raw(7);
    let birth_date = if birth.is_empty() {
        String::new()
    } else {
        match ts_date(birth) {
            Some(b) => b.format("%Y-%m-%d").to_string(),
            None => return Err(("PID-7".into(), format!("birth date {birth:?} is not YYYYMMDD"))),
        }
    };
    let sex = pid.raw(8);
    if !matches!(sex, "" | "M" | "F" | "O" | "U" | "A" | "N") {
        return Err(("PID-8".into(), format!("sex {sex:?} is not one of M/F/O/U/A/N (HL7 table 0001)")));
    }
    let mut address = pid.comp(11, 1, d);
    if address.is_empty() {
        address = format!("{}{}{}", pid.comp(11, 4, d), pid.comp(11, 3, d), pid.comp(11, 8, d));
    }
    let phone_of = |n: usize| {
        let p = pid.comp(n, 1, d);
        if p.is_empty() { pid.comp(n, 12, d) } else { p }
    };
    let mut phone = phone_of(13);
    if phone.is_empty() {
        phone = phone_of(14);
    }
    let mut p = Patient {
        provider_id: c.origin.provider_id.to_owned(),
        patient_id: c.patient_id.clone(),
        name_kanji: kanji,
        name_kana: kana,
        sex: sex_code(sex).into(),
        birth_date,
        postal_code: pid.comp(11, 5, d),
        address,
        phone,
        ..Default::default()
    };
    if let Some(in1) = msg.seg("IN1") {
        p.insurer_number = in1.comp(3, 1, d);
        p.card_symbol = in1.comp(10, 1, d);
        p.card_number = in1.comp(11, 1, d);
        p.card_branch = in1.comp(49, 1, d);
    }
    Ok(p)
}

fn map_message(msg: &Message<'_>, text: &str, loc: &str, origin: &Origin<'_>, sink: &mut dyn Sink) {
    let d = msg.delims;
    let (mtype, event) = msg.kind();
    let quarantine_all = |sink: &mut dyn Sink, field: &str, problem: String| {
        sink.quarantine(Quarantined::new(origin.file, loc, field, problem, text));
    };
    if mtype.is_empty() {
        return quarantine_all(sink, "MSH-9", "message type is empty".into());
    }
    let Some(pid) = msg.seg("PID") else {
        return quarantine_all(sink, "PID", format!("missing segment PID in {mtype}^{event} (file truncated?)"));
    };
    let patient_id = pid.comp(3, 1, d);
    if patient_id.is_empty() {
        return quarantine_all(sink, "PID-3", "patient id is empty".into());
    }
    let pv1 = msg.seg("PV1");
    let encounter_id = pv1.map(|p| p.comp(19, 1, d)).unwrap_or_default();
    let c = Ctx { origin, loc, text, patient_id, encounter_id };
    let prov = || origin.provider_id.to_owned();
    match mtype.as_str() {
        "ADT" => {
            // 公費 numbers (IN1 with a 99KPE plan): identity-side records of their own.
            for in1 in msg.segments.iter().filter(|s| s.name == "IN1" && s.comp(2, 3, d) == PE_SYSTEM) {
                let payer = in1.comp(3, 1, d);
                if payer.is_empty() {
                    c.bad(sink, in1, "IN1-3", "public expense payer number (負担者番号) is empty");
                    continue;
                }
                sink.record(Record::PublicExpenseId(PublicExpenseId {
                    provider_id: prov(),
                    patient_id: c.patient_id.clone(),
                    payer_number: payer,
                    recipient_number: in1.comp(36, 1, d),
                }));
            }
            // Visit messages often repeat only the id in PID; identity comes from those that carry it.
            if !pid.raw(5).is_empty() || !pid.raw(7).is_empty() {
                match patient(msg, pid, &c) {
                    Ok(p) => sink.record(Record::Patient(p)),
                    Err((field, problem)) => c.bad(sink, pid, &field, problem),
                }
            }
            if matches!(event.as_str(), "A01" | "A03" | "A04") {
                let Some(pv1) = pv1 else {
                    return quarantine_all(sink, "PV1", format!("missing segment PV1 in ADT^{event}"));
                };
                let admit = pv1.raw(44);
                let Some(admission_date) = ts_date(admit) else {
                    return c.bad(sink, pv1, "PV1-44", format!("admit date {admit:?} is not YYYYMMDD"));
                };
                let dis = pv1.raw(45);
                let discharge_date = match (dis.is_empty(), ts_date(dis)) {
                    (true, _) => None,
                    (false, Some(x)) => Some(x),
                    (false, None) => {
                        return c.bad(sink, pv1, "PV1-45", format!("discharge date {dis:?} is not YYYYMMDD"));
                    }
                };
                let class = pv1.raw(2);
                sink.record(Record::Encounter(Encounter {
                    provider_id: prov(),
                    patient_id: c.patient_id.clone(),
                    encounter_id: c.encounter_id.clone(),
                    encounter_type: if class == "I" || event == "A01" { "入院" } else { "外来" }.into(),
                    department: pv1.comp(10, 1, d),
                    admission_date,
                    discharge_date,
                }));
            }
        }
        "PPR" => {
            let prbs: Vec<&Segment<'_>> = msg.segments.iter().filter(|s| s.name == "PRB").collect();
            if prbs.is_empty() {
                return quarantine_all(sink, "PRB", "missing segment PRB in PPR message".into());
            }
            for prb in &prbs {
                let code = prb.comp(3, 1, d);
                let name = prb.comp(3, 2, d);
                if code.is_empty() && name.is_empty() {
                    c.bad(sink, prb, "PRB-3", "problem (diagnosis) code and name are empty");
                    continue;
                }
                let onset = if prb.raw(16).is_empty() { prb.raw(7) } else { prb.raw(16) };
                let Some(diagnosis_date) = ts_date(onset).or_else(|| ts_date(prb.raw(2))) else {
                    c.bad(sink, prb, "PRB-7", format!("diagnosis date {onset:?} is not YYYYMMDD"));
                    continue;
                };
                // The ZPR segment right after this PRB says whether it is the main diagnosis.
                let next = msg.segments.get(prb.index);
                let main = next.is_some_and(|z| z.name == "ZPR" && z.raw(1) == "Y");
                sink.record(Record::Diagnosis(Diagnosis {
                    provider_id: prov(),
                    patient_id: c.patient_id.clone(),
                    encounter_id: c.encounter_id.clone(),
                    diagnosis_date,
                    icd10: code,
                    diagnosis_name: name,
                    main,
                }));
            }
        }
        "RDE" | "RAS" => {
            let give = if mtype == "RDE" { "RXE" } else { "RXA" };
            let mut order_date = msg.seg("ORC").map(|o| o.raw(9)).unwrap_or("");
            let mut found = false;
            for (i, s) in msg.segments.iter().enumerate() {
                if s.name == "ORC" {
                    order_date = s.raw(9);
                }
                if s.name != give {
                    continue;
                }
                found = true;
                let col = if give == "RXE" { 2 } else { 5 };
                let code = s.comp(col, 1, d);
                if code.is_empty() {
                    c.bad(sink, s, &format!("{give}-{col}"), "drug code is empty");
                    continue;
                }
                let date_raw = if give == "RXA" { s.raw(3) } else { order_date };
                let Some(prescribed_date) = ts_date(date_raw) else {
                    let f = if give == "RXA" { "RXA-3" } else { "ORC-9" };
                    c.bad(sink, s, f, format!("date {date_raw:?} is not YYYYMMDD"));
                    continue;
                };
                // TQ1 and RXR follow the give segment within its order group.
                let group = msg.segments[i + 1..].iter().take_while(|x| !matches!(x.name, "ORC" | "RXE" | "RXA"));
                let (mut days, mut route) = (0u64, String::new());
                let mut bad_days = None;
                for g in group {
                    match g.name {
                        "TQ1" => {
                            let v = g.comp(6, 1, d);
                            if !v.is_empty() {
                                match v.parse::<u64>() {
                                    Ok(n) => days = n,
                                    Err(_) => bad_days = Some((g, v)),
                                }
                            }
                        }
                        "RXR" => route = route_name(&g.comp(1, 1, d)),
                        _ => {}
                    }
                }
                if let Some((g, v)) = bad_days {
                    c.bad(sink, g, "TQ1-6", format!("days {v:?} is not a whole number"));
                    continue;
                }
                sink.record(Record::Prescription(Prescription {
                    provider_id: prov(),
                    patient_id: c.patient_id.clone(),
                    encounter_id: c.encounter_id.clone(),
                    prescribed_date,
                    drug_code: code,
                    drug_name: s.comp(col, 2, d),
                    route,
                    days,
                }));
            }
            if !found {
                quarantine_all(sink, give, format!("missing segment {give} in {mtype}^{event}"));
            }
        }
        "OML" | "OUL" | "ORU" => {
            let mut obr_date = msg.seg("OBR").map(|o| o.raw(7)).unwrap_or("");
            let mut n_obx = 0;
            for s in &msg.segments {
                if s.name == "OBR" {
                    obr_date = s.raw(7);
                }
                if s.name != "OBX" {
                    continue;
                }
                n_obx += 1;
                let code = s.comp(3, 1, d);
                let name = s.comp(3, 2, d);
                let date_raw = if s.raw(14).is_empty() { obr_date } else { s.raw(14) };
                let Some(date) = ts_date(date_raw) else {
                    c.bad(sink, s, "OBX-14", format!("observation date {date_raw:?} is not YYYYMMDD"));
                    continue;
                };
                let vt = s.raw(2);
                // OBX-5 may repeat (free text lines); keep every repetition.
                let value: Vec<String> = s.reps(5, d).map(|r| component(r, 1, d)).collect();
                let value = value.join("\n");
                if vt == "NM" || vt == "SN" {
                    let v = value.trim().trim_start_matches(['<', '>', '=']);
                    match v.parse::<f64>() {
                        Ok(x) if x.is_finite() => sink.record(Record::Lab(Lab {
                            provider_id: prov(),
                            patient_id: c.patient_id.clone(),
                            encounter_id: c.encounter_id.clone(),
                            result_date: date,
                            test_code: code,
                            test_name: name,
                            value: x,
                            unit: s.comp(6, 1, d),
                        })),
                        _ => c.bad(sink, s, "OBX-5", format!("numeric value {value:?} is not a number")),
                    }
                } else {
                    sink.record(Record::Text(Text {
                        provider_id: prov(),
                        patient_id: c.patient_id.clone(),
                        encounter_id: c.encounter_id.clone(),
                        observed_date: date,
                        code,
                        name,
                        text: value,
                    }));
                }
            }
            if n_obx == 0 && mtype != "OML" {
                quarantine_all(sink, "OBX", format!("missing segment OBX in {mtype}^{event} (no result)"));
            }
        }
        "DFT" => {
            let before = msg.segments.iter().filter(|s| matches!(s.name, "FT1" | "IN1" | "ZRC")).count();
            if before == 0 {
                return quarantine_all(sink, "FT1", format!("missing segment FT1 in DFT^{event}"));
            }
            for (i, s) in msg.segments.iter().enumerate() {
                // kiban's Z-segment right after an FT1/IN1 holds its details.
                let z = msg.segments.get(i + 1).filter(|z| z.name.starts_with('Z'));
                let r = match s.name {
                    "FT1" => dft_charge(s, z, &c, d),
                    "IN1" => dft_public_expense(s, z, &c, d),
                    "ZRC" => dft_receipt(s, &c, d),
                    _ => continue,
                };
                match r {
                    Ok(mut rec) => {
                        set_provider(&mut rec, prov());
                        sink.record(rec)
                    }
                    Err((field, problem)) => c.bad(sink, s, &field, problem),
                }
            }
        }
        other => quarantine_all(sink, "MSH-9", format!("message type {other}^{event} is not one kiban reads")),
    }
}

/// Coding system of kiban's procedure codes in FT1-7 (レセプト電算 診療行為コード).
const SI_SYSTEM: &str = "99KSI";
/// Coding system of kiban's material codes in FT1-7 (特定器材コード).
const TO_SYSTEM: &str = "99KTO";
/// Coding system of 公費 法別番号 in IN1-2.
const PE_SYSTEM: &str = "99KPE";

fn set_provider(r: &mut Record, p: String) {
    match r {
        Record::Procedure(x) => x.provider_id = p,
        Record::Material(x) => x.provider_id = p,
        Record::PublicExpense(x) => x.provider_id = p,
        Record::Receipt(x) => x.provider_id = p,
        _ => {}
    }
}

type Mapped = Result<Record, (String, String)>;

fn opt<T: std::str::FromStr>(
    seg: &Segment<'_>,
    n: usize,
    d: Delims,
    name: &str,
) -> Result<Option<T>, (String, String)> {
    let v = seg.comp(n, 1, d);
    if v.is_empty() {
        return Ok(None);
    }
    v.parse().map(Some).map_err(|_| (format!("{}-{n}", seg.name), format!("{name} {v:?} is not a number")))
}

/// FT1 (+ ZFT): a procedure or a material, by FT1-7's coding system.
fn dft_charge(s: &Segment<'_>, z: Option<&Segment<'_>>, c: &Ctx<'_, '_>, d: Delims) -> Mapped {
    let (start, end) = (s.comp(4, 1, d), s.comp(4, 2, d));
    let Some(day) = ts_date(&start) else {
        return Err(("FT1-4".into(), format!("transaction date {start:?} is not YYYYMMDD")));
    };
    let day_known = end.is_empty();
    let count = opt::<u64>(s, 10, d, "quantity")?.unwrap_or(1);
    let code = s.comp(7, 1, d);
    if code.is_empty() {
        return Err(("FT1-7".into(), "transaction code is empty".into()));
    }
    let name = s.comp(7, 2, d);
    let none = Segment { name: "ZFT", fields: vec![], index: 0 };
    let z = z.filter(|z| z.name == "ZFT").unwrap_or(&none);
    let zs = |n: usize| z.comp(n, 1, d);
    let quantity = opt::<f64>(z, 4, d, "quantity")?;
    let points = opt::<i64>(z, 5, d, "points")?;
    let (patient_id, encounter_id) = (c.patient_id.clone(), c.encounter_id.clone());
    Ok(match s.comp(7, 3, d).as_str() {
        SI_SYSTEM => Record::Procedure(Procedure {
            provider_id: String::new(),
            patient_id,
            encounter_id,
            procedure_date: day,
            day_known,
            source: zs(1),
            care_category: zs(2),
            burden_category: zs(3),
            procedure_code: code,
            procedure_name: name,
            quantity,
            points,
            count,
        }),
        TO_SYSTEM => Record::Material(Material {
            provider_id: String::new(),
            patient_id,
            encounter_id,
            used_date: day,
            day_known,
            source: zs(1),
            care_category: zs(2),
            burden_category: zs(3),
            material_code: code,
            material_name: name,
            product_name: zs(6),
            quantity,
            unit_code: zs(7),
            unit_price: opt::<f64>(z, 8, d, "unit price")?,
            points,
            count,
        }),
        other => {
            return Err(("FT1-7".into(), format!("coding system {other:?} is neither {SI_SYSTEM} nor {TO_SYSTEM}")));
        }
    })
}

/// IN1 (+ ZPE) in a DFT: one 公費 programme of a receipt.
fn dft_public_expense(s: &Segment<'_>, z: Option<&Segment<'_>>, c: &Ctx<'_, '_>, d: Delims) -> Mapped {
    let Some(rank) = opt::<u64>(s, 1, d, "set id")? else {
        return Err(("IN1-1".into(), "set id (第n公費) is empty".into()));
    };
    let program = s.comp(2, 1, d);
    if program.is_empty() {
        return Err(("IN1-2".into(), "public expense programme (法別番号) is empty".into()));
    }
    let m = s.comp(12, 1, d);
    let Some(service_month) = ts_date(&m) else {
        return Err(("IN1-12".into(), format!("month {m:?} is not YYYYMMDD")));
    };
    let none = Segment { name: "ZPE", fields: vec![], index: 0 };
    let z = z.filter(|z| z.name == "ZPE").unwrap_or(&none);
    Ok(Record::PublicExpense(PublicExpense {
        provider_id: String::new(),
        patient_id: c.patient_id.clone(),
        encounter_id: c.encounter_id.clone(),
        service_month,
        rank,
        program_code: program,
        prefecture_code: z.comp(1, 1, d),
        benefit_class: z.comp(2, 1, d),
        days: opt(z, 3, d, "days")?,
        points: opt(z, 4, d, "points")?,
        public_burden: opt(z, 5, d, "public burden")?,
        outpatient_copay: opt(z, 6, d, "outpatient copay")?,
        inpatient_copay: opt(z, 7, d, "inpatient copay")?,
        times: opt(z, 8, d, "times")?,
        amount: opt(z, 9, d, "amount")?,
    }))
}

/// ZRC: a receipt's header and totals.
fn dft_receipt(z: &Segment<'_>, c: &Ctx<'_, '_>, d: Delims) -> Mapped {
    let m = z.comp(3, 1, d);
    let Some(service_month) = ts_date(&m) else {
        return Err(("ZRC-3".into(), format!("month {m:?} is not YYYYMMDD")));
    };
    let t = |n: usize| z.comp(n, 1, d);
    Ok(Record::Receipt(Receipt {
        provider_id: String::new(),
        patient_id: c.patient_id.clone(),
        encounter_id: c.encounter_id.clone(),
        receipt_number: t(1),
        receipt_type: t(2),
        service_month,
        benefit_ratio: t(4),
        copay_class: t(5),
        special_notes: t(6),
        insurance_days: opt(z, 7, d, "days")?,
        insurance_points: opt(z, 8, d, "points")?,
        meal_times: opt(z, 9, d, "meal times")?,
        meal_amount: opt(z, 10, d, "meal amount")?,
        patient_copay: opt(z, 11, d, "copay")?,
        dpc_code: t(12),
        dpc_outcome: t(13),
    }))
}

fn route_name(code: &str) -> String {
    match code {
        "PO" => "oral",
        "TP" | "EXT" => "external",
        "IV" | "IM" | "SC" | "INJ" => "injection",
        other => other,
    }
    .to_owned()
}

fn route_code(name: &str) -> &str {
    match name {
        "oral" => "PO",
        "external" => "TP",
        "injection" => "IV",
        other => other,
    }
}

/// A message to write: its SS-MIX2 data kind (e.g. `ADT-00`) and day, and its text.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// SS-MIX2 data kind.
    pub kind: &'static str,
    /// Day of care (none for patient information).
    pub day: Option<NaiveDate>,
    /// Order or visit number for the file name.
    pub order: String,
    /// Department code for the file name.
    pub department: String,
    /// Message text (UTF-8; encode with [`encode_message`]).
    pub text: String,
}

/// Encodes a message as ISO-2022-JP, naming the first character it cannot represent.
pub fn encode_message(text: &str) -> Result<Vec<u8>, String> {
    encode_iso2022jp(text).map_err(|c| format!("character {c:?} (U+{:04X}) is outside JIS X 0208", c as u32))
}

fn split_name(s: &str) -> (String, String) {
    match s.find(['\u{3000}', ' ']) {
        Some(i) => {
            let sp = s[i..].chars().next().expect("found").len_utf8();
            (s[..i].to_owned(), s[i + sp..].to_owned())
        }
        None => (s.to_owned(), String::new()),
    }
}

fn iso_to_hl7(birth: &str) -> String {
    if let Ok(d) = NaiveDate::parse_from_str(birth, "%Y-%m-%d") {
        return d.format("%Y%m%d").to_string();
    }
    match kiban_model::wareki::WarekiDate::parse(birth) {
        Ok(w) => w.date().format("%Y%m%d").to_string(),
        Err(_) => String::new(),
    }
}

/// Builds a segment from `(field number, already escaped value)` pairs.
fn seg(name: &str, fields: &[(usize, String)]) -> String {
    let max = fields.iter().map(|f| f.0).max().unwrap_or(0);
    let mut v = vec![String::new(); max + 1];
    v[0] = name.to_owned();
    for (n, x) in fields {
        v[*n] = x.clone();
    }
    let mut s = v.join("|");
    s.push('\r');
    s
}

fn msh(kind: &str, control: &str, ts: &str) -> String {
    format!("MSH|^~\\&|KIBAN|KIBAN|||{ts}||{kind}|{control}|P|2.5||||||~ISO IR87||ISO 2022-1994\r")
}

fn pid_segment(p: &Patient) -> String {
    let (fk, gk) = split_name(&p.name_kanji);
    let (fa, ga) = split_name(&p.name_kana);
    let sex = match p.sex.as_str() {
        "1" => "M",
        "2" => "F",
        _ => "U",
    };
    format!(
        "PID|||{}^^^^PI||{}^{}^^^^^L^I~{}^{}^^^^^L^P||{}|{}|||{}^^^^{}^JPN^H||{}^PRN^PH\r",
        escape(&p.patient_id),
        escape(&fk),
        escape(&gk),
        escape(&fa),
        escape(&ga),
        iso_to_hl7(&p.birth_date),
        sex,
        escape(&p.address),
        escape(&p.postal_code),
        escape(&p.phone),
    )
}

fn pid_min(patient_id: &str) -> String {
    format!("PID|||{}^^^^PI\r", escape(patient_id))
}

fn ymd(d: NaiveDate) -> String {
    d.format("%Y%m%d").to_string()
}

/// Writes the messages for one patient's records: ADT^A08 for identity, ADT^A01/A04 per encounter,
/// PPR^ZD1 per encounter's diagnoses, RDE^O11 per prescription and OUL^R22 per lab or text result.
pub fn messages_for_patient(records: &[&Record]) -> Vec<Outgoing> {
    let mut out = Vec::new();
    let mut seq = 0u64;
    let mut control = |pid: &str| {
        seq += 1;
        format!("{pid}-{seq}")
    };
    let ts = "20250401090000";
    let mut ppr: std::collections::HashMap<(String, NaiveDate), usize> = std::collections::HashMap::new();
    let dept_of: std::collections::HashMap<&str, &str> = records
        .iter()
        .filter_map(|r| match r {
            Record::Encounter(e) => Some((e.encounter_id.as_str(), e.department.as_str())),
            _ => None,
        })
        .collect();
    let pv1 = |class: &str, enc: &str| {
        let dept = escape(dept_of.get(enc).copied().unwrap_or(""));
        seg("PV1", &[(2, class.into()), (10, dept), (19, escape(enc))])
    };
    for r in records {
        match r {
            Record::Patient(p) => {
                let mut t = msh("ADT^A08^ADT_A01", &control(&p.patient_id), ts);
                t.push_str("EVN||20250401090000\r");
                t.push_str(&pid_segment(p));
                t.push_str("PV1||N\r");
                t.push_str(&seg(
                    "IN1",
                    &[
                        (1, "1".into()),
                        (2, "C0".into()),
                        (3, format!("{}^^^^IN", escape(&p.insurer_number))),
                        (10, escape(&p.card_symbol)),
                        (11, escape(&p.card_number)),
                        (49, escape(&p.card_branch)),
                    ],
                ));
                out.push(Outgoing { kind: "ADT-00", day: None, order: "-".into(), department: "-".into(), text: t });
            }
            Record::Encounter(e) => {
                let (event, class, kind) =
                    if e.encounter_type == "入院" { ("A01", "I", "ADT-22") } else { ("A04", "O", "ADT-12") };
                let mut t = msh(&format!("ADT^{event}^ADT_A01"), &control(&e.patient_id), ts);
                t.push_str(&format!("EVN||{}\r", ymd(e.admission_date)));
                t.push_str(&pid_min(&e.patient_id));
                let dis = e.discharge_date.map(ymd).unwrap_or_default();
                t.push_str(&seg(
                    "PV1",
                    &[
                        (2, class.into()),
                        (10, escape(&e.department)),
                        (19, escape(&e.encounter_id)),
                        (44, ymd(e.admission_date)),
                        (45, dis),
                    ],
                ));
                out.push(Outgoing {
                    kind,
                    day: Some(e.admission_date),
                    order: e.encounter_id.clone(),
                    department: "-".into(),
                    text: t,
                });
            }
            Record::Diagnosis(x) => {
                // One PPR^ZD1 per encounter and day, holding all its problems (PRB + ZPR each).
                let mut prb = format!(
                    "PRB|AD|{}|{}^{}^I10|{}|||{}\r",
                    ymd(x.diagnosis_date),
                    escape(&x.icd10),
                    escape(&x.diagnosis_name),
                    escape(&x.encounter_id),
                    ymd(x.diagnosis_date)
                );
                prb.push_str(if x.main { "ZPR|Y\r" } else { "ZPR|N\r" });
                let key = (x.encounter_id.clone(), x.diagnosis_date);
                if let Some(&k) = ppr.get(&key) {
                    let m: &mut Outgoing = &mut out[k];
                    m.text.push_str(&prb);
                    continue;
                }
                let mut t = msh("PPR^ZD1^PPR_ZD1", &control(&x.patient_id), ts);
                t.push_str(&pid_min(&x.patient_id));
                t.push_str(&pv1("O", &x.encounter_id));
                t.push_str(&prb);
                ppr.insert(key, out.len());
                out.push(Outgoing {
                    kind: "PPR-01",
                    day: Some(x.diagnosis_date),
                    order: "-".into(),
                    department: "-".into(),
                    text: t,
                });
            }
            Record::Prescription(x) => {
                let mut t = msh("RDE^O11^RDE_O11", &control(&x.patient_id), ts);
                t.push_str(&pid_min(&x.patient_id));
                t.push_str(&pv1("O", &x.encounter_id));
                t.push_str(&format!("ORC|NW|{}|||||||{}\r", escape(&x.encounter_id), ymd(x.prescribed_date)));
                t.push_str(&format!("RXE||{}^{}^HOT\r", escape(&x.drug_code), escape(&x.drug_name)));
                t.push_str(&seg("TQ1", &[(6, format!("{}^d", x.days))]));
                t.push_str(&format!("RXR|{}\r", route_code(&x.route)));
                out.push(Outgoing {
                    kind: "OMP-01",
                    day: Some(x.prescribed_date),
                    order: x.encounter_id.clone(),
                    department: "-".into(),
                    text: t,
                });
            }
            Record::Lab(x) => {
                let mut t = msh("OUL^R22^OUL_R22", &control(&x.patient_id), ts);
                t.push_str(&pid_min(&x.patient_id));
                t.push_str(&pv1("O", &x.encounter_id));
                t.push_str("SPM|1|||023^血清^JC10\r");
                t.push_str(&format!("OBR|1|{}||||{}\r", escape(&x.encounter_id), ymd(x.result_date)));
                t.push_str(&format!(
                    "OBX|1|NM|{}^{}^JC10||{}|{}|||||F|||{}\r",
                    escape(&x.test_code),
                    escape(&x.test_name),
                    x.value,
                    escape(&x.unit),
                    ymd(x.result_date)
                ));
                out.push(Outgoing {
                    kind: "OML-11",
                    day: Some(x.result_date),
                    order: x.encounter_id.clone(),
                    department: "-".into(),
                    text: t,
                });
            }
            Record::Text(x) => {
                let mut t = msh("ORU^R01^ORU_R01", &control(&x.patient_id), ts);
                t.push_str(&pid_min(&x.patient_id));
                t.push_str(&pv1("O", &x.encounter_id));
                t.push_str(&format!("OBR|1|{}||||{}\r", escape(&x.encounter_id), ymd(x.observed_date)));
                t.push_str(&format!(
                    "OBX|1|TX|{}^{}^99L||{}||||||F|||{}\r",
                    escape(&x.code),
                    escape(&x.name),
                    escape(&x.text),
                    ymd(x.observed_date)
                ));
                out.push(Outgoing {
                    kind: "ORU-01",
                    day: Some(x.observed_date),
                    order: x.encounter_id.clone(),
                    department: "-".into(),
                    text: t,
                });
            }
            Record::PublicExpenseId(x) => {
                let mut t = msh("ADT^A08^ADT_A01", &control(&x.patient_id), ts);
                t.push_str("EVN||20250401090000\r");
                t.push_str(&pid_min(&x.patient_id));
                t.push_str("PV1||N\r");
                let program = x.payer_number.get(..2).unwrap_or("");
                t.push_str(&seg(
                    "IN1",
                    &[
                        (1, "1".into()),
                        (2, format!("{}^^{PE_SYSTEM}", escape(program))),
                        (3, format!("{}^^^^IN", escape(&x.payer_number))),
                        (36, escape(&x.recipient_number)),
                    ],
                ));
                out.push(Outgoing { kind: "ADT-00", day: None, order: "-".into(), department: "-".into(), text: t });
            }
            Record::Procedure(_) | Record::Material(_) | Record::PublicExpense(_) | Record::Receipt(_) => {
                let (enc, pid, day) = match r {
                    Record::Procedure(x) => (&x.encounter_id, &x.patient_id, x.procedure_date),
                    Record::Material(x) => (&x.encounter_id, &x.patient_id, x.used_date),
                    Record::PublicExpense(x) => (&x.encounter_id, &x.patient_id, x.service_month),
                    Record::Receipt(x) => (&x.encounter_id, &x.patient_id, x.service_month),
                    _ => unreachable!("matched above"),
                };
                let mut t = msh("DFT^P03^DFT_P03", &control(pid), ts);
                t.push_str(&format!("EVN||{}\r", ymd(day)));
                t.push_str(&pid_min(pid));
                t.push_str(&pv1("O", enc));
                t.push_str(&dft_segments(r));
                out.push(Outgoing {
                    kind: "DFT-01",
                    day: Some(day),
                    order: enc.clone(),
                    department: "-".into(),
                    text: t,
                });
            }
        }
    }
    out
}

fn opt_text<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// FT1-4: the day, or the month as `start^end` when the day is not known.
fn ft1_date(d: NaiveDate, day_known: bool) -> String {
    if day_known {
        return ymd(d);
    }
    let next = d.checked_add_months(chrono::Months::new(1)).unwrap_or(d);
    format!("{}^{}", ymd(d), ymd(next.pred_opt().unwrap_or(d)))
}

/// FT1 (date, item, count) and ZFT (source, care and burden categories, quantity, points, then
/// `extra` fields) of one charged procedure or material.
fn charge_segments(date: String, item: String, count: u64, zft: [String; 5], extra: &[(usize, String)]) -> String {
    let ft1 = [(1, "1".to_owned()), (4, date), (6, "CG".to_owned()), (7, item), (10, count.to_string())];
    let zft: Vec<(usize, String)> = (1..).zip(zft).chain(extra.iter().cloned()).collect();
    seg("FT1", &ft1) + &seg("ZFT", &zft)
}

/// The body segments of a DFT^P03 for one receipt-side record (see the module documentation).
fn dft_segments(r: &Record) -> String {
    let e = |s: &str| escape(s);
    match r {
        Record::Procedure(x) => charge_segments(
            ft1_date(x.procedure_date, x.day_known),
            format!("{}^{}^{SI_SYSTEM}", e(&x.procedure_code), e(&x.procedure_name)),
            x.count,
            [e(&x.source), e(&x.care_category), e(&x.burden_category), opt_text(x.quantity), opt_text(x.points)],
            &[],
        ),
        Record::Material(x) => charge_segments(
            ft1_date(x.used_date, x.day_known),
            format!("{}^{}^{TO_SYSTEM}", e(&x.material_code), e(&x.material_name)),
            x.count,
            [e(&x.source), e(&x.care_category), e(&x.burden_category), opt_text(x.quantity), opt_text(x.points)],
            &[(6, e(&x.product_name)), (7, e(&x.unit_code)), (8, opt_text(x.unit_price))],
        ),
        Record::PublicExpense(x) => {
            seg(
                "IN1",
                &[
                    (1, x.rank.to_string()),
                    (2, format!("{}^^{PE_SYSTEM}", e(&x.program_code))),
                    (12, ymd(x.service_month)),
                ],
            ) + &seg(
                "ZPE",
                &[
                    (1, e(&x.prefecture_code)),
                    (2, e(&x.benefit_class)),
                    (3, opt_text(x.days)),
                    (4, opt_text(x.points)),
                    (5, opt_text(x.public_burden)),
                    (6, opt_text(x.outpatient_copay)),
                    (7, opt_text(x.inpatient_copay)),
                    (8, opt_text(x.times)),
                    (9, opt_text(x.amount)),
                ],
            )
        }
        Record::Receipt(x) => seg(
            "ZRC",
            &[
                (1, e(&x.receipt_number)),
                (2, e(&x.receipt_type)),
                (3, ymd(x.service_month)),
                (4, e(&x.benefit_ratio)),
                (5, e(&x.copay_class)),
                (6, e(&x.special_notes)),
                (7, opt_text(x.insurance_days)),
                (8, opt_text(x.insurance_points)),
                (9, opt_text(x.meal_times)),
                (10, opt_text(x.meal_amount)),
                (11, opt_text(x.patient_copay)),
                (12, e(&x.dpc_code)),
                (13, e(&x.dpc_outcome)),
            ],
        ),
        _ => String::new(),
    }
}
