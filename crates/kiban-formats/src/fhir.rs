//! FHIR R4 / JP-Core: Bundles (or single resources), as `.json` files or `.ndjson` lines.
//!
//! Patient (identifier → patient id; names by the `iso21090-EN-representation` extension: `IDE`
//! kanji, `SYL` kana; gender; birthDate; address text and postalCode; phone), Coverage (insurer from
//! `payor.identifier` or the JP-Core insured-person identifier `insurer:symbol:number:branch`; the
//! JP-Core symbol/number/branch extensions), Encounter (class `IMP`/`AMB`, period, serviceType
//! text as department, `diagnosis.rank` 1 marks the main diagnosis), Condition (ICD-10 coding,
//! code text, onset/recorded date), MedicationRequest (coding, authoredOn, route,
//! expectedSupplyDuration days), Observation (valueQuantity → labs, valueString /
//! valueCodeableConcept → texts). Within a Bundle, Coverage is merged into its Patient.
//! A resource that misses what kiban needs is quarantined with its entry number and element.

use std::collections::{HashMap, HashSet};
use std::io::BufRead;

use chrono::{Datelike, NaiveDate};
use serde_json::{Value, json};

use crate::canonical::{
    Diagnosis, Encounter, Lab, Material, Patient, Prescription, Procedure, PublicExpense, PublicExpenseId, Quarantined,
    RAW_LIMIT, Receipt, Record, Sink, Text, by_patient,
};
use crate::encoding::strip_bom;

/// JP-Core name representation extension.
pub const EN_REPRESENTATION: &str = "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation";
/// ICD-10 code system.
pub const ICD10: &str = "http://hl7.org/fhir/sid/icd-10";
/// YJ code system (JP-Core medication).
pub const YJ: &str = "urn:oid:1.2.392.100495.20.2.74";
/// JLAC10 code system (JP-Core lab).
pub const JLAC10: &str = "urn:oid:1.2.392.200119.4.504";
/// JP-Core insured-person identifier system.
pub const INSURED_ID: &str = "urn:oid:1.2.392.100495.20.3.61";
const EXT_SYMBOL: &str = "http://jpfhir.jp/fhir/core/Extension/StructureDefinition/JP_Coverage_InsuredPersonSymbol";
const EXT_NUMBER: &str = "http://jpfhir.jp/fhir/core/Extension/StructureDefinition/JP_Coverage_InsuredPersonNumber";
const EXT_BRANCH: &str = "http://jpfhir.jp/fhir/core/Extension/StructureDefinition/JP_Coverage_InsuredPersonSubNumber";
/// レセプト電算処理 診療行為コード (UKE SI, EF acts) and 点数表コード (様式1).
pub const RECEIPT_PROCEDURE: &str = "urn:kiban:code:receipt-procedure";
/// レセプト電算処理 特定器材コード (UKE TO, EF materials).
pub const RECEIPT_MATERIAL: &str = "urn:kiban:code:receipt-material";
/// 公費 法別番号: a Coverage typed with it is a public expense programme, not the health insurance.
pub const PUBLIC_EXPENSE: &str = "urn:kiban:code:public-expense-program";
/// 負担者番号 (payer number of a public expense programme).
pub const PAYER_NUMBER: &str = "urn:kiban:id:public-expense-payer";
/// レセプト種別.
pub const RECEIPT_TYPE: &str = "urn:kiban:code:receipt-type";
/// Receipt number within its claim file.
pub const RECEIPT_NUMBER: &str = "urn:kiban:id:receipt-number";
/// Prefix of kiban's extensions for receipt details FHIR has no element for (points, 負担区分 …).
pub const KIBAN_EXT: &str = "urn:kiban:ext:";

/// Counts of one read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct FhirStats {
    /// Resources seen.
    pub resources: u64,
}

fn s<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut cur = v;
    for p in path {
        cur = match p.parse::<usize>() {
            Ok(i) => &cur[i],
            Err(_) => &cur[*p],
        };
    }
    cur.as_str().unwrap_or("")
}

fn date(v: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(v.get(..10)?, "%Y-%m-%d").ok()
}

fn coding<'a>(cc: &'a Value, system: &str) -> (&'a str, &'a str) {
    let codings = cc["coding"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let c = codings.iter().find(|c| c["system"] == system).or(codings.first());
    let code = c.map_or("", |c| c["code"].as_str().unwrap_or(""));
    let mut name = cc["text"].as_str().unwrap_or("");
    if name.is_empty() {
        name = c.map_or("", |c| c["display"].as_str().unwrap_or(""));
    }
    (code, name)
}

fn ext<'a>(v: &'a Value, url: &str) -> Option<&'a Value> {
    v["extension"].as_array()?.iter().find(|e| e["url"] == url)
}

struct Ctx<'a> {
    file: &'a str,
    provider_id: &'a str,
    /// Reference (`Patient/x`, fullUrl) → patient id.
    patients: HashMap<String, String>,
    /// Encounter reference → encounter id.
    encounters: HashMap<String, String>,
    /// Condition references ranked 1 by an encounter.
    main: HashSet<String>,
}

fn ref_keys(fullurl: &str, rtype: &str, id: &str) -> Vec<String> {
    let mut v = Vec::new();
    if !fullurl.is_empty() {
        v.push(fullurl.to_owned());
    }
    if !id.is_empty() {
        v.push(format!("{rtype}/{id}"));
    }
    v
}

fn patient_of(p: &Value) -> Patient {
    let mut kanji = String::new();
    let mut kana = String::new();
    for n in p["name"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let given: Vec<&str> =
            n["given"].as_array().map(|g| g.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
        let family = n["family"].as_str().unwrap_or("");
        let full = if given.is_empty() {
            if family.is_empty() { n["text"].as_str().unwrap_or("").to_owned() } else { family.to_owned() }
        } else {
            format!("{family}\u{3000}{}", given.join(" "))
        };
        match ext(n, EN_REPRESENTATION).and_then(|e| e["valueCode"].as_str()) {
            Some("SYL") => kana = full,
            Some("IDE") => kanji = full,
            _ if kanji.is_empty() => kanji = full,
            _ => {}
        }
    }
    let addr = &p["address"][0];
    let mut address = addr["text"].as_str().unwrap_or("").to_owned();
    if address.is_empty() && addr.is_object() {
        let lines: Vec<&str> =
            addr["line"].as_array().map(|g| g.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
        address = format!("{}{}{}", s(addr, &["state"]), s(addr, &["city"]), lines.join(""));
    }
    let phone = p["telecom"]
        .as_array()
        .and_then(|t| t.iter().find(|x| x["system"] == "phone"))
        .map_or("", |x| x["value"].as_str().unwrap_or(""));
    Patient {
        name_kanji: kanji,
        name_kana: kana,
        sex: match s(p, &["gender"]) {
            "male" => "1",
            "female" => "2",
            _ => "0",
        }
        .into(),
        birth_date: s(p, &["birthDate"]).to_owned(),
        postal_code: s(addr, &["postalCode"]).to_owned(),
        address,
        phone: phone.to_owned(),
        ..Default::default()
    }
}

fn coverage_into(c: &Value, p: &mut Patient) {
    let ins = c["identifier"]
        .as_array()
        .and_then(|ids| ids.iter().find(|i| i["system"] == INSURED_ID))
        .map_or("", |i| i["value"].as_str().unwrap_or(""));
    let parts: Vec<&str> = ins.split(':').collect();
    let part = |k: usize| parts.get(k).copied().unwrap_or("").to_owned();
    let payor = c["payor"][0]["identifier"]["value"].as_str().unwrap_or("");
    p.insurer_number = if payor.is_empty() { part(0) } else { payor.to_owned() };
    let e = |url: &str, k: usize| {
        ext(c, url).and_then(|e| e["valueString"].as_str()).map_or_else(|| part(k), str::to_owned)
    };
    p.card_symbol = e(EXT_SYMBOL, 1);
    p.card_number = e(EXT_NUMBER, 2);
    p.card_branch = e(EXT_BRANCH, 3);
}

impl Ctx<'_> {
    fn q(&self, sink: &mut dyn Sink, loc: &str, field: &str, problem: impl Into<String>, raw: &Value) {
        sink.quarantine(Quarantined::new(self.file, loc, field, problem, &raw.to_string()));
    }

    fn subject(&self, r: &Value) -> Option<String> {
        let reference = r["subject"]["reference"]
            .as_str()
            .or(r["beneficiary"]["reference"].as_str())
            .or(r["patient"]["reference"].as_str())?;
        self.patients.get(reference).cloned().or_else(|| reference.strip_prefix("Patient/").map(str::to_owned))
    }

    fn encounter(&self, r: &Value) -> String {
        // Encounter (most), ChargeItem.context, or kiban's extension (Coverage, Claim).
        let e = [&r["encounter"], &r["context"], kx(r, "encounter").map_or(&Value::Null, |x| &x["valueReference"])]
            .into_iter()
            .find_map(|v| v["reference"].as_str())
            .unwrap_or("");
        self.encounters.get(e).cloned().unwrap_or_else(|| match e.find(":enc:") {
            Some(i) => e[i + 5..].to_owned(),
            None => e.rsplit('/').next().unwrap_or("").to_owned(),
        })
    }

    /// Maps the resources of one Bundle (or one lone resource) to records.
    fn resources(&mut self, entries: &[(String, &Value)], base: usize, loc: &str, sink: &mut dyn Sink) {
        // Pass 1: identities and references, so entries may come in any order.
        let mut patients: Vec<(usize, Patient)> = Vec::new();
        for (k, (full, r)) in entries.iter().enumerate() {
            let rtype = s(r, &["resourceType"]);
            let id = s(r, &["id"]);
            match rtype {
                "Patient" => {
                    let pid = r["identifier"][0]["value"].as_str().unwrap_or(id).to_owned();
                    for key in ref_keys(full, rtype, id) {
                        self.patients.insert(key, pid.clone());
                    }
                    let mut p = patient_of(r);
                    p.patient_id = pid;
                    patients.push((k, p));
                }
                "Encounter" => {
                    let eid = r["identifier"][0]["value"].as_str().unwrap_or(id).to_owned();
                    for key in ref_keys(full, rtype, id) {
                        self.encounters.insert(key, eid.clone());
                    }
                    for d in r["diagnosis"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
                        if let Some(c) = d["condition"]["reference"].as_str().filter(|_| d["rank"].as_u64() == Some(1))
                        {
                            self.main.insert(c.to_owned());
                        }
                    }
                }
                _ => {}
            }
        }
        for (k, (_, r)) in entries.iter().enumerate() {
            if s(r, &["resourceType"]) == "Coverage" && !is_public_expense(r) {
                let benef = r["beneficiary"]["reference"].as_str().unwrap_or("");
                let pid = self.patients.get(benef).cloned();
                match patients.iter_mut().find(|(_, p)| Some(&p.patient_id) == pid.as_ref()) {
                    Some((_, p)) => coverage_into(r, p),
                    None => match self.subject(r) {
                        Some(pid) => {
                            // A Coverage without its Patient in the same Bundle: an identity fragment.
                            let mut p = Patient { patient_id: pid, ..Default::default() };
                            coverage_into(r, &mut p);
                            patients.push((k, p));
                        }
                        None => self.q(
                            sink,
                            &format!("{loc} entry {}", base + k + 1),
                            "Coverage.beneficiary",
                            "no beneficiary",
                            r,
                        ),
                    },
                }
            }
        }
        patients.sort_by_key(|p| p.0);
        for (k, mut p) in patients {
            p.provider_id = self.provider_id.to_owned();
            if !p.birth_date.is_empty() && date(&p.birth_date).is_none() {
                let raw = entries[k].1;
                self.q(
                    sink,
                    &format!("{loc} entry {} (Patient)", base + k + 1),
                    "Patient.birthDate",
                    format!("{:?} is not a date", p.birth_date),
                    raw,
                );
                continue;
            }
            sink.record(Record::Patient(p));
        }
        // Pass 2: clinical resources.
        for (k, (full, r)) in entries.iter().enumerate() {
            let rtype = s(r, &["resourceType"]);
            let here = format!("{loc} entry {} ({rtype})", base + k + 1);
            if rtype == "Patient" || rtype == "Coverage" && !is_public_expense(r) {
                continue;
            }
            if !matches!(
                rtype,
                "Encounter"
                    | "Condition"
                    | "MedicationRequest"
                    | "Observation"
                    | "Procedure"
                    | "ChargeItem"
                    | "Claim"
                    | "Coverage"
            ) {
                // Other resources (Organization, Practitioner …) carry nothing for the canonical tables.
                continue;
            }
            let Some(patient_id) = self.subject(r) else {
                self.q(
                    sink,
                    &here,
                    &format!("{rtype}.subject"),
                    "no subject: the record cannot be tied to a patient",
                    r,
                );
                continue;
            };
            let provider_id = self.provider_id.to_owned();
            if matches!(rtype, "Procedure" | "ChargeItem" | "Claim" | "Coverage") {
                match receipt_resource(r, rtype, provider_id, patient_id, self.encounter(r)) {
                    Ok(rec) => sink.record(rec),
                    Err((field, problem)) => self.q(sink, &here, &field, problem, r),
                }
                continue;
            }
            match rtype {
                "Encounter" => {
                    let Some(start) = date(s(r, &["period", "start"])) else {
                        self.q(sink, &here, "Encounter.period.start", "missing or not a date", r);
                        continue;
                    };
                    let end = s(r, &["period", "end"]);
                    let id = s(r, &["id"]);
                    let eid = r["identifier"][0]["value"].as_str().unwrap_or(id).to_owned();
                    let class = s(r, &["class", "code"]);
                    let mut dept = s(r, &["serviceType", "text"]).to_owned();
                    if dept.is_empty() {
                        dept = coding(&r["serviceType"], "").1.to_owned();
                    }
                    sink.record(Record::Encounter(Encounter {
                        provider_id,
                        patient_id,
                        encounter_id: eid,
                        encounter_type: if matches!(class, "IMP" | "ACUTE" | "NONAC") { "入院" } else { "外来" }.into(),
                        department: dept,
                        admission_date: start,
                        discharge_date: date(end),
                    }));
                }
                "Condition" => {
                    let (code, name) = coding(&r["code"], ICD10);
                    if code.is_empty() && name.is_empty() {
                        self.q(sink, &here, "Condition.code", "no code and no text", r);
                        continue;
                    }
                    let d = [s(r, &["onsetDateTime"]), s(r, &["recordedDate"]), s(r, &["onsetPeriod", "start"])]
                        .into_iter()
                        .find_map(date);
                    let Some(d) = d else {
                        self.q(sink, &here, "Condition.onsetDateTime", "no onset or recorded date", r);
                        continue;
                    };
                    let id = s(r, &["id"]);
                    let main = ref_keys(full, rtype, id).iter().any(|k| self.main.contains(k));
                    sink.record(Record::Diagnosis(Diagnosis {
                        provider_id,
                        patient_id,
                        encounter_id: self.encounter(r),
                        diagnosis_date: d,
                        icd10: code.into(),
                        diagnosis_name: name.into(),
                        main,
                    }));
                }
                "MedicationRequest" => {
                    let mut cc = &r["medicationCodeableConcept"];
                    let mref = s(r, &["medicationReference", "reference"]);
                    if !cc.is_object() {
                        // A contained Medication (`#id`) carries the code; otherwise keep the reference itself.
                        if let Some(m) = mref.strip_prefix('#').and_then(|id| {
                            r["contained"]
                                .as_array()?
                                .iter()
                                .find(|c| c["id"] == id && c["resourceType"] == "Medication")
                        }) {
                            cc = &m["code"];
                        }
                    }
                    let (mut code, mut name) = coding(cc, YJ);
                    if code.is_empty() && !mref.is_empty() && !cc.is_object() {
                        (code, name) = (mref, s(r, &["medicationReference", "display"]));
                    }
                    if code.is_empty() {
                        self.q(sink, &here, "MedicationRequest.medicationCodeableConcept", "no medication code", r);
                        continue;
                    }
                    let Some(d) = date(s(r, &["authoredOn"])) else {
                        self.q(sink, &here, "MedicationRequest.authoredOn", "missing or not a date", r);
                        continue;
                    };
                    let route = coding(&r["dosageInstruction"][0]["route"], "").0;
                    let days = r["dispenseRequest"]["expectedSupplyDuration"]["value"].as_f64().unwrap_or(0.0);
                    sink.record(Record::Prescription(Prescription {
                        provider_id,
                        patient_id,
                        encounter_id: self.encounter(r),
                        prescribed_date: d,
                        drug_code: code.into(),
                        drug_name: name.into(),
                        route: route.into(),
                        days: days.max(0.0) as u64,
                    }));
                }
                _ => {
                    let (code, name) = coding(&r["code"], JLAC10);
                    let d = [s(r, &["effectiveDateTime"]), s(r, &["effectivePeriod", "start"]), s(r, &["issued"])]
                        .into_iter()
                        .find_map(date);
                    let Some(d) = d else {
                        self.q(sink, &here, "Observation.effectiveDateTime", "no effective date", r);
                        continue;
                    };
                    let encounter_id = self.encounter(r);
                    if let Some(v) = r["valueQuantity"]["value"].as_f64() {
                        sink.record(Record::Lab(Lab {
                            provider_id,
                            patient_id,
                            encounter_id,
                            result_date: d,
                            test_code: code.into(),
                            test_name: name.into(),
                            value: v,
                            unit: s(r, &["valueQuantity", "unit"]).into(),
                        }));
                    } else {
                        let text = match (&r["valueString"], &r["valueCodeableConcept"]) {
                            (Value::String(t), _) => t.clone(),
                            (_, cc) if cc.is_object() => coding(cc, "").1.to_owned(),
                            _ => {
                                let other = r.as_object().and_then(|o| o.keys().find(|k| k.starts_with("value")));
                                match other {
                                    Some(k) => r[k].to_string(),
                                    None if r["component"].is_array() => r["component"].to_string(),
                                    None => {
                                        self.q(sink, &here, "Observation.value[x]", "no value and no components", r);
                                        continue;
                                    }
                                }
                            }
                        };
                        sink.record(Record::Text(Text {
                            provider_id,
                            patient_id,
                            encounter_id,
                            observed_date: d,
                            code: code.into(),
                            name: name.into(),
                            text,
                        }));
                    }
                }
            }
        }
    }

    fn document(&mut self, v: &Value, loc: &str, sink: &mut dyn Sink) -> u64 {
        if v["resourceType"] == "Bundle" {
            let entries: Vec<(String, &Value)> = v["entry"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[])
                .iter()
                .filter(|e| e["resource"].is_object())
                .map(|e| (e["fullUrl"].as_str().unwrap_or("").to_owned(), &e["resource"]))
                .collect();
            let n = entries.len() as u64;
            self.resources(&entries, 0, loc, sink);
            n
        } else if v["resourceType"].is_string() {
            self.resources(&[(String::new(), v)], 0, loc, sink);
            1
        } else {
            self.q(sink, loc, "resourceType", "not a FHIR resource (no resourceType)", v);
            0
        }
    }
}

/// Reads one `.json` document (a Bundle or a resource) held in memory.
pub fn read_json(bytes: &[u8], file: &str, provider_id: &str, sink: &mut dyn Sink) -> FhirStats {
    let (bytes, _) = strip_bom(bytes);
    read_json_stream(|| Ok(bytes), file, provider_id, sink).unwrap_or_default()
}

/// Calls `on_entry` with each element of a Bundle's `entry` array as it is parsed (one entry in
/// memory at a time) and returns the document's other members.
struct Doc<'f, F: FnMut(Value)> {
    on_entry: &'f mut F,
}

impl<'de, F: FnMut(Value)> serde::de::DeserializeSeed<'de> for Doc<'_, F> {
    type Value = serde_json::Map<String, Value>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, F: FnMut(Value)> serde::de::Visitor<'de> for Doc<'_, F> {
    type Value = serde_json::Map<String, Value>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a FHIR resource (a JSON object)")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
        let mut rest = serde_json::Map::new();
        while let Some(k) = m.next_key::<String>()? {
            if k == "entry" {
                m.next_value_seed(Entries { on_entry: &mut *self.on_entry })?;
            } else {
                rest.insert(k, m.next_value()?);
            }
        }
        Ok(rest)
    }
}

struct Entries<'f, F: FnMut(Value)> {
    on_entry: &'f mut F,
}

impl<'de, F: FnMut(Value)> serde::de::DeserializeSeed<'de> for Entries<'_, F> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, F: FnMut(Value)> serde::de::Visitor<'de> for Entries<'_, F> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of Bundle entries")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(e) = seq.next_element::<Value>()? {
            (self.on_entry)(e);
        }
        Ok(())
    }
}

/// Streams one document through `on_entry`; the document's members other than `entry`.
fn stream_doc<R: std::io::Read>(input: R, on_entry: &mut impl FnMut(Value)) -> serde_json::Result<Value> {
    let mut de = serde_json::Deserializer::from_reader(std::io::BufReader::with_capacity(1 << 16, input));
    let rest = serde::de::DeserializeSeed::deserialize(Doc { on_entry }, &mut de)?;
    de.end()?;
    Ok(Value::Object(rest))
}

/// Reads one `.json` document (a Bundle or a resource) from a file of any size: Bundle entries
/// are parsed one at a time, so memory holds one resource plus the Bundle's reference index
/// (patient, encounter and main-condition references, and its Coverage resources, which are
/// merged into their patients). Two passes over the input (`open` is called twice): the first
/// checks the JSON and indexes references, so entries may refer forward; the second maps the
/// entries. A document that is not valid JSON (cut short, damaged) is one quarantine entry and
/// yields no records.
pub fn read_json_stream<R: std::io::Read>(
    open: impl Fn() -> std::io::Result<R>,
    file: &str,
    provider_id: &str,
    sink: &mut dyn Sink,
) -> std::io::Result<FhirStats> {
    let mut c = Ctx { file, provider_id, patients: HashMap::new(), encounters: HashMap::new(), main: HashSet::new() };
    // Pass 1: index references; keep Coverages by beneficiary reference (small, and merged into
    // the Patient entry they describe in pass 2).
    let mut coverages: Vec<(usize, Value)> = Vec::new();
    let mut n = 0usize;
    let pass1 = stream_doc(open()?, &mut |e: Value| {
        let full = e["fullUrl"].as_str().unwrap_or("").to_owned();
        let r = &e["resource"];
        if r.is_object() {
            match s(r, &["resourceType"]) {
                "Patient" | "Encounter" => {
                    let mut quiet = crate::canonical::Counted::default();
                    c.resources(&[(full, r)], n, "document", &mut quiet);
                }
                "Coverage" if !is_public_expense(r) => coverages.push((n, r.clone())),
                _ => {}
            }
            n += 1;
        }
    });
    let rest = match pass1 {
        Ok(v) => v,
        Err(e) => {
            let what = if e.is_eof() { "the JSON ends early: the file is truncated" } else { "not valid JSON" };
            let mut raw = Vec::new();
            std::io::Read::read_to_end(&mut std::io::Read::take(open()?, RAW_LIMIT as u64), &mut raw)?;
            sink.quarantine(Quarantined::new(
                file,
                format!("line {} column {}", e.line(), e.column()),
                "document",
                format!("{what}: {e}"),
                &String::from_utf8_lossy(&raw),
            ));
            return Ok(FhirStats::default());
        }
    };
    if n == 0 {
        // Not a Bundle with entries: a lone resource (or an empty Bundle), held whole.
        return Ok(FhirStats { resources: c.document(&rest, "document", sink) });
    }
    // Coverages whose beneficiary is a Patient of this Bundle go with that Patient's entry.
    let mut with_patient: HashMap<String, Vec<(usize, Value)>> = HashMap::new();
    let mut alone: HashSet<usize> = HashSet::new();
    for (k, cov) in coverages {
        let benef = cov["beneficiary"]["reference"].as_str().unwrap_or("");
        match c.patients.get(benef) {
            Some(pid) => with_patient.entry(pid.clone()).or_default().push((k, cov)),
            None => {
                alone.insert(k);
            }
        }
    }
    let mut k = 0usize;
    let mut emitted = 0u64;
    let pass2 = stream_doc(open()?, &mut |e: Value| {
        let full = e["fullUrl"].as_str().unwrap_or("").to_owned();
        let r = &e["resource"];
        if !r.is_object() {
            return;
        }
        match s(r, &["resourceType"]) {
            "Patient" => {
                let pid = r["identifier"][0]["value"].as_str().unwrap_or(s(r, &["id"])).to_owned();
                let covs = with_patient.remove(&pid).unwrap_or_default();
                let mut entries: Vec<(String, &Value)> = vec![(full, r)];
                entries.extend(covs.iter().map(|(_, v)| (String::new(), v)));
                c.resources(&entries, k, "document", sink);
            }
            "Coverage" if !alone.contains(&k) && !is_public_expense(r) => {}
            _ => c.resources(&[(full, r)], k, "document", sink),
        }
        k += 1;
        emitted += 1;
    });
    if let Err(e) = pass2 {
        // The same bytes parsed in pass 1: only a changed file gets here.
        sink.quarantine(Quarantined::new(file, "document", "document", format!("changed while read: {e}"), ""));
    }
    Ok(FhirStats { resources: emitted })
}

/// Reads `.ndjson` (one Bundle or resource per line), streaming line by line.
pub fn read_ndjson(
    mut input: impl BufRead,
    file: &str,
    provider_id: &str,
    sink: &mut dyn Sink,
) -> std::io::Result<FhirStats> {
    let mut st = FhirStats::default();
    let mut buf = Vec::new();
    let mut no = 0u64;
    loop {
        buf.clear();
        if input.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        no += 1;
        let line = if no == 1 { strip_bom(&buf).0 } else { &buf[..] };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        // References resolve within a line (one Bundle), so the context is fresh per line: memory stays bounded.
        let mut c =
            Ctx { file, provider_id, patients: HashMap::new(), encounters: HashMap::new(), main: HashSet::new() };
        match serde_json::from_slice::<Value>(line) {
            Ok(v) => st.resources += c.document(&v, &format!("line {no}"), sink),
            Err(e) => {
                let what = if e.is_eof() { "the line ends early (truncated)" } else { "not valid JSON" };
                sink.quarantine(Quarantined::new(
                    file,
                    format!("line {no}"),
                    "document",
                    format!("{what}: {e}"),
                    &String::from_utf8_lossy(line),
                ));
            }
        }
    }
    Ok(st)
}

fn is_public_expense(r: &Value) -> bool {
    r["type"]["coding"].as_array().is_some_and(|c| c.iter().any(|c| c["system"] == PUBLIC_EXPENSE))
}

/// kiban's extension `name` of a resource.
fn kx<'a>(r: &'a Value, name: &str) -> Option<&'a Value> {
    r["extension"].as_array()?.iter().find(|e| e["url"].as_str().and_then(|u| u.strip_prefix(KIBAN_EXT)) == Some(name))
}

fn kx_str(r: &Value, name: &str) -> String {
    kx(r, name).and_then(|e| e["valueString"].as_str()).unwrap_or("").to_owned()
}

/// An optional whole number from kiban's extension: absent is `None`, anything but an integer is an error.
fn kx_int(r: &Value, rtype: &str, name: &str) -> Result<Option<i64>, (String, String)> {
    match kx(r, name) {
        None => Ok(None),
        Some(e) => e["valueInteger"]
            .as_i64()
            .map(Some)
            .ok_or_else(|| (format!("{rtype}.extension[{name}]"), format!("{} is not an integer", e))),
    }
}

fn kx_uint(r: &Value, rtype: &str, name: &str) -> Result<Option<u64>, (String, String)> {
    match kx_int(r, rtype, name)? {
        Some(v) if v < 0 => Err((format!("{rtype}.extension[{name}]"), format!("{v} is negative"))),
        v => Ok(v.map(|v| v as u64)),
    }
}

fn kx_dec(r: &Value, rtype: &str, name: &str) -> Result<Option<f64>, (String, String)> {
    match kx(r, name) {
        None => Ok(None),
        Some(e) => e["valueDecimal"]
            .as_f64()
            .or(e["valueQuantity"]["value"].as_f64())
            .map(Some)
            .ok_or_else(|| (format!("{rtype}.extension[{name}]"), format!("{} is not a number", e))),
    }
}

/// The day of a receipt line: `…DateTime` (day known) or `…Period` (only the month known: its start).
fn day_or_month(r: &Value, rtype: &str, element: &str) -> Result<(NaiveDate, bool), (String, String)> {
    if let Some(d) = date(s(r, &[&format!("{element}DateTime")])) {
        return Ok((d, true));
    }
    match date(s(r, &[&format!("{element}Period"), "start"])) {
        Some(d) => Ok((d, false)),
        None => Err((format!("{rtype}.{element}[x]"), "no date and no period start".into())),
    }
}

/// Maps the receipt-side resources kiban writes (and any like them): Procedure → procedures,
/// ChargeItem → materials, Claim → receipts, a Coverage typed with [`PUBLIC_EXPENSE`] → public
/// expenses (with `order`) or the person's 公費 numbers (with a payor identifier; identity).
fn receipt_resource(
    r: &Value,
    rtype: &str,
    provider_id: String,
    patient_id: String,
    encounter_id: String,
) -> Result<Record, (String, String)> {
    let (i, u, f) = (|n| kx_int(r, rtype, n), |n| kx_uint(r, rtype, n), |n| kx_dec(r, rtype, n));
    Ok(match rtype {
        "Procedure" => {
            let (code, name) = coding(&r["code"], RECEIPT_PROCEDURE);
            if code.is_empty() {
                return Err(("Procedure.code".into(), "no procedure code".into()));
            }
            let (procedure_date, day_known) = day_or_month(r, rtype, "performed")?;
            Record::Procedure(Procedure {
                provider_id,
                patient_id,
                encounter_id,
                procedure_date,
                day_known,
                source: kx_str(r, "source"),
                care_category: kx_str(r, "care-category"),
                burden_category: kx_str(r, "burden-category"),
                procedure_code: code.into(),
                procedure_name: name.into(),
                quantity: f("quantity")?,
                points: i("points")?,
                count: u("count")?.unwrap_or(1),
            })
        }
        "ChargeItem" => {
            let (code, name) = coding(&r["code"], RECEIPT_MATERIAL);
            if code.is_empty() {
                return Err(("ChargeItem.code".into(), "no material code".into()));
            }
            let (used_date, day_known) = day_or_month(r, rtype, "occurrence")?;
            let count = match &r["quantity"]["value"] {
                Value::Null => 1,
                v => v.as_u64().ok_or_else(|| ("ChargeItem.quantity".into(), format!("{v} is not a count")))?,
            };
            let used = kx(r, "amount-used");
            Record::Material(Material {
                provider_id,
                patient_id,
                encounter_id,
                used_date,
                day_known,
                source: kx_str(r, "source"),
                care_category: kx_str(r, "care-category"),
                burden_category: kx_str(r, "burden-category"),
                material_code: code.into(),
                material_name: name.into(),
                product_name: s(r, &["productCodeableConcept", "text"]).into(),
                quantity: f("amount-used")?,
                unit_code: used.map_or("", |e| e["valueQuantity"]["code"].as_str().unwrap_or("")).into(),
                unit_price: r["priceOverride"]["value"].as_f64(),
                points: i("points")?,
                count,
            })
        }
        "Claim" => {
            let Some(service_month) = date(s(r, &["billablePeriod", "start"])) else {
                return Err(("Claim.billablePeriod.start".into(), "missing or not a date".into()));
            };
            Record::Receipt(Receipt {
                provider_id,
                patient_id,
                encounter_id,
                receipt_number: r["identifier"][0]["value"].as_str().unwrap_or("").into(),
                receipt_type: coding(&r["type"], RECEIPT_TYPE).0.into(),
                service_month,
                benefit_ratio: kx_str(r, "benefit-ratio"),
                copay_class: kx_str(r, "copay-class"),
                special_notes: kx_str(r, "special-notes"),
                insurance_days: u("insurance-days")?,
                insurance_points: i("insurance-points")?,
                meal_times: u("meal-times")?,
                meal_amount: i("meal-amount")?,
                patient_copay: i("patient-copay")?,
                dpc_code: kx_str(r, "dpc-code"),
                dpc_outcome: kx_str(r, "dpc-outcome"),
            })
        }
        _ => {
            let program = coding(&r["type"], PUBLIC_EXPENSE).0;
            let payer = r["payor"][0]["identifier"]["value"].as_str().unwrap_or("");
            if !payer.is_empty() {
                return Ok(Record::PublicExpenseId(PublicExpenseId {
                    provider_id,
                    patient_id,
                    payer_number: payer.into(),
                    recipient_number: s(r, &["subscriberId"]).into(),
                }));
            }
            if program.is_empty() {
                return Err(("Coverage.type".into(), "no 法別番号 (public expense programme)".into()));
            }
            let Some(rank) = r["order"].as_u64() else {
                return Err(("Coverage.order".into(), "no order (第一公費 = 1 …) and no payor identifier".into()));
            };
            let Some(service_month) = date(s(r, &["period", "start"])) else {
                return Err(("Coverage.period.start".into(), "missing or not a date".into()));
            };
            Record::PublicExpense(PublicExpense {
                provider_id,
                patient_id,
                encounter_id,
                service_month,
                rank,
                program_code: program.into(),
                prefecture_code: kx_str(r, "prefecture"),
                benefit_class: kx_str(r, "benefit-class"),
                days: u("days")?,
                points: i("points")?,
                public_burden: i("public-burden")?,
                outpatient_copay: i("outpatient-copay")?,
                inpatient_copay: i("inpatient-copay")?,
                times: u("times")?,
                amount: i("amount")?,
            })
        }
    })
}

/// kiban's extensions, the absent values left out.
fn kiban_exts(v: &mut Value, items: Vec<(&str, Option<Value>)>) {
    let exts: Vec<Value> = items
        .into_iter()
        .filter_map(|(name, x)| {
            let (k, x) = match x? {
                Value::String(t) if t.is_empty() => return None,
                Value::String(t) => ("valueString", Value::String(t)),
                Value::Object(o) => ("valueQuantity", Value::Object(o)),
                Value::Number(n) if n.is_f64() => ("valueDecimal", Value::Number(n)),
                Value::Number(n) => ("valueInteger", Value::Number(n)),
                other => ("valueString", Value::String(other.to_string())),
            };
            Some(json!({"url": format!("{KIBAN_EXT}{name}"), k: x}))
        })
        .collect();
    if !exts.is_empty() {
        v["extension"] = Value::Array(exts);
    }
}

fn month_end(d: NaiveDate) -> NaiveDate {
    let next = if d.month() == 12 {
        NaiveDate::from_ymd_opt(d.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(d.year(), d.month() + 1, 1)
    };
    next.and_then(|n| n.pred_opt()).unwrap_or(d)
}

/// `{element}DateTime` for a known day, else `{element}Period` over the month.
fn when(v: &mut Value, element: &str, d: NaiveDate, day_known: bool) {
    if day_known {
        v[format!("{element}DateTime")] = json!(d.to_string());
    } else {
        v[format!("{element}Period")] = json!({"start": d.to_string(), "end": month_end(d).to_string()});
    }
}

/// The FHIR resource of a receipt-side record (None for the other tables).
fn receipt_json(r: &Record, subject: &Value, enc: &Value) -> Option<Value> {
    let st = |x: &str| Some(json!(x));
    Some(match r {
        Record::Procedure(x) => {
            let mut v = json!({
                "resourceType": "Procedure",
                "status": "completed",
                "code": {"coding": [{"system": RECEIPT_PROCEDURE, "code": x.procedure_code, "display": x.procedure_name}], "text": x.procedure_name},
                "subject": subject,
                "encounter": enc,
            });
            when(&mut v, "performed", x.procedure_date, x.day_known);
            kiban_exts(
                &mut v,
                vec![
                    ("source", st(&x.source)),
                    ("care-category", st(&x.care_category)),
                    ("burden-category", st(&x.burden_category)),
                    ("quantity", x.quantity.map(|q| json!(q))),
                    ("points", x.points.map(|p| json!(p))),
                    ("count", Some(json!(x.count))),
                ],
            );
            v
        }
        Record::Material(x) => {
            let mut v = json!({
                "resourceType": "ChargeItem",
                "status": "billable",
                "code": {"coding": [{"system": RECEIPT_MATERIAL, "code": x.material_code, "display": x.material_name}], "text": x.material_name},
                "subject": subject,
                "context": enc,
                "quantity": {"value": x.count},
            });
            if !x.product_name.is_empty() {
                v["productCodeableConcept"] = json!({"text": x.product_name});
            }
            if let Some(p) = x.unit_price {
                v["priceOverride"] = json!({"value": p, "currency": "JPY"});
            }
            when(&mut v, "occurrence", x.used_date, x.day_known);
            kiban_exts(
                &mut v,
                vec![
                    ("source", st(&x.source)),
                    ("care-category", st(&x.care_category)),
                    ("burden-category", st(&x.burden_category)),
                    ("amount-used", x.quantity.map(|q| json!({"value": q, "code": x.unit_code}))),
                    ("points", x.points.map(|p| json!(p))),
                ],
            );
            v
        }
        Record::PublicExpense(x) => {
            let mut v = json!({
                "resourceType": "Coverage",
                "status": "active",
                "type": {"coding": [{"system": PUBLIC_EXPENSE, "code": x.program_code}]},
                "beneficiary": subject,
                "payor": [{"display": "公費"}],
                "order": x.rank,
                "period": {"start": x.service_month.to_string(), "end": month_end(x.service_month).to_string()},
            });
            kiban_exts(
                &mut v,
                vec![
                    ("prefecture", st(&x.prefecture_code)),
                    ("benefit-class", st(&x.benefit_class)),
                    ("days", x.days.map(|n| json!(n))),
                    ("points", x.points.map(|n| json!(n))),
                    ("public-burden", x.public_burden.map(|n| json!(n))),
                    ("outpatient-copay", x.outpatient_copay.map(|n| json!(n))),
                    ("inpatient-copay", x.inpatient_copay.map(|n| json!(n))),
                    ("times", x.times.map(|n| json!(n))),
                    ("amount", x.amount.map(|n| json!(n))),
                ],
            );
            enc_ext(&mut v, enc);
            v
        }
        Record::PublicExpenseId(x) => json!({
            "resourceType": "Coverage",
            "status": "active",
            "type": {"coding": [{"system": PUBLIC_EXPENSE, "code": x.payer_number.get(..2).unwrap_or("")}]},
            "beneficiary": subject,
            "subscriberId": x.recipient_number,
            "payor": [{"identifier": {"system": PAYER_NUMBER, "value": x.payer_number}}],
        }),
        Record::Receipt(x) => {
            let mut v = json!({
                "resourceType": "Claim",
                "status": "active",
                "use": "claim",
                "type": {"coding": [{"system": RECEIPT_TYPE, "code": x.receipt_type}]},
                "identifier": [{"system": RECEIPT_NUMBER, "value": x.receipt_number}],
                "patient": subject,
                "billablePeriod": {"start": x.service_month.to_string(), "end": month_end(x.service_month).to_string()},
                "created": x.service_month.to_string(),
                "provider": {"display": x.provider_id},
                "priority": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority", "code": "normal"}]},
                "insurance": [{"sequence": 1, "focal": true, "coverage": {"display": "医療保険"}}],
            });
            kiban_exts(
                &mut v,
                vec![
                    ("benefit-ratio", st(&x.benefit_ratio)),
                    ("copay-class", st(&x.copay_class)),
                    ("special-notes", st(&x.special_notes)),
                    ("insurance-days", x.insurance_days.map(|n| json!(n))),
                    ("insurance-points", x.insurance_points.map(|n| json!(n))),
                    ("meal-times", x.meal_times.map(|n| json!(n))),
                    ("meal-amount", x.meal_amount.map(|n| json!(n))),
                    ("patient-copay", x.patient_copay.map(|n| json!(n))),
                    ("dpc-code", st(&x.dpc_code)),
                    ("dpc-outcome", st(&x.dpc_outcome)),
                ],
            );
            enc_ext(&mut v, enc);
            v
        }
        _ => return None,
    })
}

/// The encounter of a resource that has no element for it (Coverage, Claim), as kiban's extension.
fn enc_ext(v: &mut Value, enc: &Value) {
    let e = json!({"url": format!("{KIBAN_EXT}encounter"), "valueReference": enc});
    match v["extension"].as_array_mut() {
        Some(a) => a.insert(0, e),
        None => v["extension"] = json!([e]),
    }
}

fn iso_birth(b: &str) -> String {
    if NaiveDate::parse_from_str(b, "%Y-%m-%d").is_ok() {
        return b.to_owned();
    }
    kiban_model::wareki::WarekiDate::parse(b).map(|w| w.date().to_string()).unwrap_or_else(|_| b.to_owned())
}

fn name_json(full: &str, rep: &str) -> Value {
    let (family, given) = match full.find(['\u{3000}', ' ']) {
        Some(i) => (&full[..i], full[i..].chars().skip(1).collect::<String>()),
        None => (full, String::new()),
    };
    let mut n = json!({
        "extension": [{"url": EN_REPRESENTATION, "valueCode": rep}],
        "use": "official",
        "text": full,
        "family": family,
    });
    if !given.is_empty() {
        n["given"] = json!([given]);
    }
    n
}

/// One Bundle (type `collection`) per patient of `records` (JP-Core shapes).
pub fn bundles(records: &[Record]) -> Vec<Value> {
    let mut out = Vec::new();
    for (_, pid, recs) in by_patient(records) {
        let mut entries = Vec::new();
        let pref = format!("urn:kiban:{pid}");
        let patient_url = format!("{pref}:Patient");
        let main: HashSet<String> = recs
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r, Record::Diagnosis(d) if d.main))
            .map(|(k, _)| format!("{pref}:{k}"))
            .collect();
        for (k, r) in recs.iter().enumerate() {
            let full = format!("{pref}:{k}");
            let subject = json!({"reference": patient_url});
            let enc_ref = |e: &str| json!({"reference": format!("{pref}:enc:{e}")});
            let (url, res) = match r {
                Record::Patient(p) => {
                    let mut v = json!({
                        "resourceType": "Patient",
                        "identifier": [{"system": "urn:oid:1.2.392.100495.20.3.51.1", "value": p.patient_id}],
                        "name": [name_json(&p.name_kanji, "IDE"), name_json(&p.name_kana, "SYL")],
                        "gender": match p.sex.as_str() { "1" => "male", "2" => "female", _ => "unknown" },
                        "birthDate": iso_birth(&p.birth_date),
                        "address": [{"text": p.address, "postalCode": p.postal_code, "country": "JP"}],
                        "telecom": [{"system": "phone", "value": p.phone, "use": "home"}],
                    });
                    if p.birth_date.is_empty() {
                        v.as_object_mut().expect("object").remove("birthDate");
                    }
                    entries.push(json!({"fullUrl": patient_url, "resource": v}));
                    let cov = json!({
                        "resourceType": "Coverage",
                        "status": "active",
                        "identifier": [{"system": INSURED_ID, "value": format!("{}:{}:{}:{}", p.insurer_number, p.card_symbol, p.card_number, p.card_branch)}],
                        "extension": [
                            {"url": EXT_SYMBOL, "valueString": p.card_symbol},
                            {"url": EXT_NUMBER, "valueString": p.card_number},
                            {"url": EXT_BRANCH, "valueString": p.card_branch},
                        ],
                        "beneficiary": subject,
                        "payor": [{"identifier": {"system": "urn:oid:1.2.392.100495.20.3.61", "value": p.insurer_number}}],
                    });
                    (full, cov)
                }
                Record::Encounter(e) => {
                    let diag: Vec<Value> = recs
                        .iter()
                        .enumerate()
                        .filter(|(j, d)| {
                            matches!(d, Record::Diagnosis(d) if d.encounter_id == e.encounter_id)
                                && main.contains(&format!("{pref}:{j}"))
                        })
                        .map(|(j, _)| json!({"condition": {"reference": format!("{pref}:{j}")}, "rank": 1}))
                        .collect();
                    let mut period = json!({"start": e.admission_date.to_string()});
                    if let Some(d) = e.discharge_date {
                        period["end"] = json!(d.to_string());
                    }
                    let v = json!({
                        "resourceType": "Encounter",
                        "status": "finished",
                        "identifier": [{"value": e.encounter_id}],
                        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": if e.encounter_type == "入院" { "IMP" } else { "AMB" }},
                        "serviceType": {"text": e.department},
                        "subject": subject,
                        "period": period,
                        "diagnosis": diag,
                    });
                    (format!("{pref}:enc:{}", e.encounter_id), v)
                }
                Record::Diagnosis(d) => (
                    full,
                    json!({
                        "resourceType": "Condition",
                        "code": {"coding": [{"system": ICD10, "code": d.icd10}], "text": d.diagnosis_name},
                        "subject": subject,
                        "encounter": enc_ref(&d.encounter_id),
                        "onsetDateTime": d.diagnosis_date.to_string(),
                    }),
                ),
                Record::Prescription(x) => (
                    full,
                    json!({
                        "resourceType": "MedicationRequest",
                        "status": "completed",
                        "intent": "order",
                        "medicationCodeableConcept": {"coding": [{"system": YJ, "code": x.drug_code, "display": x.drug_name}], "text": x.drug_name},
                        "subject": subject,
                        "encounter": enc_ref(&x.encounter_id),
                        "authoredOn": x.prescribed_date.to_string(),
                        "dosageInstruction": [{"route": {"coding": [{"code": x.route}]}}],
                        "dispenseRequest": {"expectedSupplyDuration": {"value": x.days, "unit": "日", "system": "http://unitsofmeasure.org", "code": "d"}},
                    }),
                ),
                Record::Lab(x) => (
                    full,
                    json!({
                        "resourceType": "Observation",
                        "status": "final",
                        "code": {"coding": [{"system": JLAC10, "code": x.test_code}], "text": x.test_name},
                        "subject": subject,
                        "encounter": enc_ref(&x.encounter_id),
                        "effectiveDateTime": x.result_date.to_string(),
                        "valueQuantity": {"value": x.value, "unit": x.unit},
                    }),
                ),
                Record::Text(x) => (
                    full,
                    json!({
                        "resourceType": "Observation",
                        "status": "final",
                        "code": {"coding": [{"system": JLAC10, "code": x.code}], "text": x.name},
                        "subject": subject,
                        "encounter": enc_ref(&x.encounter_id),
                        "effectiveDateTime": x.observed_date.to_string(),
                        "valueString": x.text,
                    }),
                ),
                // Receipt-side tables: Procedure, ChargeItem, Coverage (公費), Claim.
                Record::Procedure(_)
                | Record::Material(_)
                | Record::PublicExpense(_)
                | Record::PublicExpenseId(_)
                | Record::Receipt(_) => {
                    let enc = match r {
                        Record::Procedure(x) => x.encounter_id.as_str(),
                        Record::Material(x) => x.encounter_id.as_str(),
                        Record::PublicExpense(x) => x.encounter_id.as_str(),
                        Record::Receipt(x) => x.encounter_id.as_str(),
                        _ => "",
                    };
                    let Some(v) = receipt_json(r, &subject, &enc_ref(enc)) else { continue };
                    (full, v)
                }
            };
            entries.push(json!({"fullUrl": url, "resource": res}));
        }
        out.push(json!({"resourceType": "Bundle", "type": "collection", "entry": entries}));
    }
    out
}

/// Writes records as NDJSON, one Bundle per patient per line.
pub fn write_ndjson(out: &mut impl std::io::Write, records: &[Record]) -> std::io::Result<u64> {
    let mut n = 0;
    for b in bundles(records) {
        serde_json::to_writer(&mut *out, &b)?;
        out.write_all(b"\n")?;
        n += 1;
    }
    Ok(n)
}
