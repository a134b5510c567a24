//! 特定健診 (specific health check-up) records as HL7 CDA R2 XML, one document per check-up.
//!
//! Read with a streaming XML parser (quick-xml): `ClinicalDocument/id@extension` is the check-up
//! (encounter) id; `recordTarget/patientRole/id` carries the insurance card by OID (保険者番号
//! `1.2.392.200119.6.101`, 記号 `…6.204`, 番号 `…6.205`, 枝番 `…6.211`) and the person key is
//! `insurer:symbol:number:branch`; `patient/name` (`use="SYL"` kana, else kanji),
//! `administrativeGenderCode@code`, `birthTime@value`, `addr/postalCode` and the address text;
//! `documentationOf/serviceEvent/effectiveTime` the check-up day; every `observation` with a
//! `code@code` (JLAC10) and a `value`: `PQ` → labs (value, unit), `CD`/`CO`/`ST` → texts.
//! A document that is not well-formed XML, or lacks the person or the day, is quarantined whole;
//! an observation without a code or with a bad number only itself.

use std::io::BufRead;

use chrono::NaiveDate;
use quick_xml::events::Event;

use crate::canonical::{Encounter, Lab, Patient, Quarantined, Record, Sink, Text, by_patient};

const OID_INSURER: &str = "1.2.392.200119.6.101";
const OID_SYMBOL: &str = "1.2.392.200119.6.204";
const OID_NUMBER: &str = "1.2.392.200119.6.205";
const OID_BRANCH: &str = "1.2.392.200119.6.211";
const OID_JLAC10: &str = "1.2.392.200119.6.1005";

#[derive(Default, Debug)]
struct Obs {
    code: String,
    name: String,
    xsi_type: String,
    value: String,
    unit: String,
    text: String,
    day: Option<NaiveDate>,
}

fn day(v: &str) -> Option<NaiveDate> {
    crate::canonical::yyyymmdd(v)
}

fn entity(name: &str) -> Option<char> {
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        _ => return None,
    })
}

/// Reads one CDA document, streaming; returns the observations read.
pub fn read(input: impl BufRead, file: &str, provider_id: &str, sink: &mut dyn Sink) -> u64 {
    let mut r = quick_xml::Reader::from_reader(input);
    let mut buf = Vec::new();
    let mut path: Vec<String> = Vec::new();
    let mut patient = Patient { provider_id: provider_id.into(), ..Default::default() };
    let (mut doc_id, mut service_day) = (String::new(), None);
    let mut obs: Vec<Obs> = Vec::new();
    let mut done: Vec<(Obs, u64)> = Vec::new();
    let mut text = String::new();
    let mut n_obs = 0u64;
    let mut name_use = String::new();
    let q = |sink: &mut dyn Sink, loc: String, field: &str, problem: String| {
        sink.quarantine(Quarantined::new(file, loc, field, problem, ""));
    };
    loop {
        let pos = r.buffer_position();
        let ev = match r.read_event_into(&mut buf) {
            Ok(e) => e,
            Err(e) => {
                return {
                    q(sink, format!("byte {pos}"), "document", format!("not well-formed XML: {e}"));
                    0
                };
            }
        };
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(ev, Event::Empty(_));
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                let mut attrs = std::collections::HashMap::new();
                for a in e.attributes().flatten() {
                    let k = String::from_utf8_lossy(a.key.local_name().as_ref()).into_owned();
                    attrs.insert(k, a.unescape_value().map(|v| v.into_owned()).unwrap_or_default());
                }
                let at = |k: &str| attrs.get(k).cloned().unwrap_or_default();
                let parent = path.last().map(String::as_str).unwrap_or("");
                let in_role = path.iter().any(|p| p == "patientRole");
                match (parent, name.as_str()) {
                    ("ClinicalDocument", "id") => doc_id = at("extension"),
                    ("patientRole", "id") if in_role => match at("root").as_str() {
                        OID_INSURER => patient.insurer_number = at("extension"),
                        OID_SYMBOL => patient.card_symbol = at("extension"),
                        OID_NUMBER => patient.card_number = at("extension"),
                        OID_BRANCH => patient.card_branch = at("extension"),
                        _ => {}
                    },
                    ("patient", "administrativeGenderCode") => patient.sex = at("code"),
                    ("patient", "birthTime") => {
                        patient.birth_date = day(&at("value")).map_or_else(|| at("value"), |d| d.to_string())
                    }
                    ("patient", "name") => name_use = at("use"),
                    ("serviceEvent", "effectiveTime") => service_day = day(&at("value")).or(service_day),
                    ("effectiveTime", "low") if path.iter().any(|p| p == "serviceEvent") => {
                        service_day = day(&at("value")).or(service_day)
                    }
                    (_, "observation") => obs.push(Obs::default()),
                    ("observation", "code") => {
                        if let Some(o) = obs.last_mut() {
                            o.code = at("code");
                            o.name = at("displayName");
                        }
                    }
                    ("observation", "effectiveTime") => {
                        if let Some(o) = obs.last_mut() {
                            o.day = day(&at("value"));
                        }
                    }
                    ("observation", "value") => {
                        if let Some(o) = obs.last_mut() {
                            o.xsi_type = at("type");
                            o.value = at("value");
                            o.unit = at("unit");
                            if o.value.is_empty() {
                                o.value = at("displayName");
                                if o.value.is_empty() {
                                    o.value = at("code");
                                }
                            }
                        }
                    }
                    _ => {}
                }
                if !empty {
                    path.push(name);
                    text.clear();
                }
            }
            Event::Text(t) => text.push_str(&t.decode().unwrap_or_default()),
            Event::CData(t) => text.push_str(&t.decode().unwrap_or_default()),
            Event::GeneralRef(g) => {
                if let Ok(Some(c)) = g.resolve_char_ref() {
                    text.push(c);
                } else if let Some(c) = entity(&g.decode().unwrap_or_default()) {
                    text.push(c);
                }
            }
            Event::End(_) => {
                let name = path.pop().unwrap_or_default();
                let parent = path.last().map(String::as_str).unwrap_or("");
                let t = text.trim().to_owned();
                match (parent, name.as_str()) {
                    ("addr", "postalCode") if path.iter().any(|p| p == "patientRole") => patient.postal_code = t,
                    ("patientRole", "addr") if !t.is_empty() => patient.address = t,
                    ("patient", "name") | ("name", "family") | ("name", "given") if !t.is_empty() => {
                        let target = if name_use == "SYL" { &mut patient.name_kana } else { &mut patient.name_kanji };
                        if !target.is_empty() && name != "name" {
                            target.push('\u{3000}');
                        }
                        if name != "name" || target.is_empty() {
                            target.push_str(&t);
                        }
                    }
                    ("observation", "value") => {
                        if let Some(o) = obs.last_mut().filter(|_| !t.is_empty()) {
                            o.text = t;
                        }
                    }
                    (_, "observation") => {
                        if let Some(o) = obs.pop() {
                            n_obs += 1;
                            done.push((o, n_obs));
                        }
                    }
                    _ => {}
                }
                if name != "addr" {
                    text.clear();
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if !path.is_empty() {
        q(
            sink,
            "end of document".into(),
            "document",
            format!("the document ends inside <{}>: truncated", path.join("/")),
        );
        return 0;
    }
    let person = [&patient.insurer_number, &patient.card_symbol, &patient.card_number, &patient.card_branch];
    if patient.insurer_number.is_empty() || patient.card_number.is_empty() {
        q(
            sink,
            "recordTarget/patientRole".into(),
            "patientRole/id",
            "missing 保険者番号 or 被保険者証番号: the check-up cannot be tied to a person".into(),
        );
        return 0;
    }
    let Some(service_day) = service_day else {
        q(sink, "documentationOf/serviceEvent".into(), "effectiveTime", "missing check-up day (健診実施日)".into());
        return 0;
    };
    patient.patient_id = person.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(":");
    let pid = patient.patient_id.clone();
    let encounter_id = if doc_id.is_empty() { format!("{pid}-{}", service_day.format("%Y%m%d")) } else { doc_id };
    sink.record(Record::Patient(patient));
    sink.record(Record::Encounter(Encounter {
        provider_id: provider_id.into(),
        patient_id: pid.clone(),
        encounter_id: encounter_id.clone(),
        encounter_type: "健診".into(),
        department: String::new(),
        admission_date: service_day,
        discharge_date: None,
    }));
    for (o, k) in done {
        let loc = format!("observation {k}");
        if o.code.is_empty() {
            // Section-level organizers without a code carry no result.
            if !o.value.is_empty() || !o.text.is_empty() {
                q(sink, loc, "observation/code", "a result without a code".into());
            }
            continue;
        }
        let d = o.day.unwrap_or(service_day);
        if o.xsi_type == "PQ" || (o.xsi_type.is_empty() && !o.unit.is_empty()) {
            match o.value.parse::<f64>() {
                Ok(v) if v.is_finite() => sink.record(Record::Lab(Lab {
                    provider_id: provider_id.into(),
                    patient_id: pid.clone(),
                    encounter_id: encounter_id.clone(),
                    result_date: d,
                    test_code: o.code,
                    test_name: o.name,
                    value: v,
                    unit: o.unit,
                })),
                _ => q(sink, loc, "observation/value@value", format!("{:?} is not a number", o.value)),
            }
        } else {
            let text = if o.text.is_empty() { o.value } else { o.text };
            sink.record(Record::Text(Text {
                provider_id: provider_id.into(),
                patient_id: pid.clone(),
                encounter_id: encounter_id.clone(),
                observed_date: d,
                code: o.code,
                name: o.name,
                text,
            }));
        }
    }
    n_obs
}

fn esc(s: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(s)
}

/// Writes one CDA document per encounter that has lab or text results, returning
/// `(patient_id, encounter_id, xml)`; the person key is the insurance card, as 特定健診 has it.
pub fn documents(records: &[Record]) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (_, pid, recs) in by_patient(records) {
        let Some(p) = recs.iter().find_map(|r| if let Record::Patient(p) = r { Some(p) } else { None }) else {
            continue;
        };
        let birth = kiban_model::wareki::WarekiDate::parse(&p.birth_date)
            .map(|w| w.date())
            .ok()
            .or_else(|| NaiveDate::parse_from_str(&p.birth_date, "%Y-%m-%d").ok());
        for r in &recs {
            let Record::Encounter(e) = r else { continue };
            let mut obs = String::new();
            for x in &recs {
                match x {
                    Record::Lab(l) if l.encounter_id == e.encounter_id => obs.push_str(&format!(
                        "<entry><observation classCode=\"OBS\" moodCode=\"EVN\"><code code=\"{}\" codeSystem=\"{OID_JLAC10}\" displayName=\"{}\"/><effectiveTime value=\"{}\"/><value xsi:type=\"PQ\" value=\"{}\" unit=\"{}\"/></observation></entry>",
                        esc(&l.test_code), esc(&l.test_name), l.result_date.format("%Y%m%d"), l.value, esc(&l.unit)
                    )),
                    Record::Text(t) if t.encounter_id == e.encounter_id => obs.push_str(&format!(
                        "<entry><observation classCode=\"OBS\" moodCode=\"EVN\"><code code=\"{}\" codeSystem=\"{OID_JLAC10}\" displayName=\"{}\"/><effectiveTime value=\"{}\"/><value xsi:type=\"ST\">{}</value></observation></entry>",
                        esc(&t.code), esc(&t.name), t.observed_date.format("%Y%m%d"), esc(&t.text)
                    )),
                    _ => {}
                }
            }
            if obs.is_empty() {
                continue;
            }
            let sex = if p.sex == "2" { "2" } else { "1" };
            let xml = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ClinicalDocument xmlns=\"urn:hl7-org:v3\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><typeId root=\"2.16.840.1.113883.1.3\" extension=\"POCD_HD000040\"/><id root=\"1.2.392.200119.6.102.11234567890\" extension=\"{}\"/><code code=\"10\" codeSystem=\"1.2.392.200119.6.1001\"/><recordTarget><patientRole><id root=\"{OID_INSURER}\" extension=\"{}\"/><id root=\"{OID_SYMBOL}\" extension=\"{}\"/><id root=\"{OID_NUMBER}\" extension=\"{}\"/><id root=\"{OID_BRANCH}\" extension=\"{}\"/><addr><postalCode>{}</postalCode>{}</addr><patient><name use=\"IDE\">{}</name><name use=\"SYL\">{}</name><administrativeGenderCode code=\"{sex}\" codeSystem=\"1.2.392.200119.6.1104\"/><birthTime value=\"{}\"/></patient></patientRole></recordTarget><documentationOf><serviceEvent><effectiveTime value=\"{}\"/></serviceEvent></documentationOf><component><structuredBody><component><section><code code=\"01010\" codeSystem=\"1.2.392.200119.6.1010\"/>{obs}</section></component></structuredBody></component></ClinicalDocument>\n",
                esc(&e.encounter_id),
                esc(&p.insurer_number),
                esc(&p.card_symbol),
                esc(&p.card_number),
                esc(&p.card_branch),
                esc(&p.postal_code),
                esc(&p.address),
                esc(&p.name_kanji),
                esc(&p.name_kana),
                birth.map(|b| b.format("%Y%m%d").to_string()).unwrap_or_default(),
                e.admission_date.format("%Y%m%d"),
            );
            out.push((pid.clone(), e.encounter_id.clone(), xml));
        }
    }
    out
}
