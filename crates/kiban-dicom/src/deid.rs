//! Attribute de-identification of one file under a [`Profile`] and options: the actions of Table E.1-1
//! applied element by element and into every sequence, private tags removed unless on the safe list,
//! UIDs replaced by keyed UIDs under `2.25.`, dates moved by one offset per person, Patient ID set to the
//! release pseudonym, free text cleaned by kiban's Japanese de-identifier, and the result marked.

use std::collections::HashSet;

use chrono::{Days, NaiveDate};
use kiban_deid::text::{DocContext, TextConfig, deidentify as clean_free_text};
use kiban_formats::dicom::{CharacterSet, DataSet, DicomFile, Element, Tag, Value, Vr, charset_of};
use kiban_identity::pseudonym::PseudonymKey;
use kiban_model::id::PersonKey;
use serde::{Deserialize, Serialize};

use crate::profile::{Action, Profile, ProfileOption};

/// A private element that may be kept under Retain Safe Private: creator, group, element low byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SafePrivate {
    /// Private Creator value.
    pub creator: String,
    /// Group (odd).
    pub group: u16,
    /// Element offset within the creator's block (0x00–0xFF).
    pub element: u8,
}

/// The safe private list shipped with kiban (`data/safe_private.toml`).
pub fn standard_safe_private() -> Vec<SafePrivate> {
    #[derive(Deserialize)]
    struct F {
        safe: Vec<SafePrivate>,
    }
    toml::from_str::<F>(include_str!("../data/safe_private.toml")).expect("embedded safe private list parses").safe
}

/// What to apply.
#[derive(Debug, Clone)]
pub struct Config {
    /// Options on top of the Basic Profile.
    pub options: Vec<ProfileOption>,
    /// Private elements kept under Retain Safe Private.
    pub safe_private: Vec<SafePrivate>,
}

impl Config {
    /// kiban's default for a pseudonymized release: modified dates (one shift per person), descriptors,
    /// structured content and graphics cleaned, pixels and faces checked.
    pub fn pseudonymization() -> Config {
        Config {
            options: vec![
                ProfileOption::RetainLongitudinalModifiedDates,
                ProfileOption::CleanDescriptors,
                ProfileOption::CleanStructuredContent,
                ProfileOption::CleanGraphics,
                ProfileOption::CleanPixelData,
                ProfileOption::CleanRecognizableVisualFeatures,
            ],
            safe_private: standard_safe_private(),
        }
    }
    fn has(&self, o: ProfileOption) -> bool {
        self.options.contains(&o)
    }
}

/// Maps (Patient ID, Issuer of Patient ID) to a person key of the identity vault.
pub type PersonResolver = dyn Fn(&str, &str) -> Option<PersonKey>;

/// The keys of one release domain: UIDs, pseudonyms and date offsets all derive from it.
pub struct Keyring<'a> {
    /// The domain's pseudonym key (from the key store).
    pub key: &'a PseudonymKey,
    /// Maps (Patient ID, Issuer of Patient ID) to the person key of the identity vault, when known; the
    /// pseudonym is then the person's release token. Otherwise a keyed digest of the ID stands in.
    pub resolve: Option<&'a PersonResolver>,
}

impl Keyring<'_> {
    /// The keyed replacement of a UID: `2.25.` + a 128-bit keyed digest in decimal (≤ 44 characters).
    pub fn uid(&self, original: &str) -> String {
        let d = self.key.keyed_digest("dicom-uid/v1", original.as_bytes());
        let n = u128::from_be_bytes(d[..16].try_into().expect("16 bytes"));
        format!("2.25.{n}")
    }
    /// The release pseudonym of a patient (64 hex digits).
    pub fn pseudonym(&self, patient_id: &str, issuer: &str) -> String {
        if let Some(pk) = self.resolve.and_then(|f| f(patient_id, issuer)) {
            return self.key.token(pk).to_string();
        }
        hex::encode(self.key.keyed_digest("dicom-patient/v1", format!("{issuer}\0{patient_id}").as_bytes()))
    }
    /// The person's date offset: 30–730 days back, from the pseudonym (so one offset per person).
    pub fn date_offset_days(&self, pseudonym: &str) -> i64 {
        let d = self.key.keyed_digest("dicom-date-offset/v1", pseudonym.as_bytes());
        -(30 + (u16::from_be_bytes([d[0], d[1]]) as i64 % 701))
    }
}

/// Counts of what was done to one file.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// Elements removed (X and private).
    pub removed: usize,
    /// Of which private.
    pub private_removed: usize,
    /// Elements emptied (Z).
    pub emptied: usize,
    /// Elements given dummy values (D).
    pub dummied: usize,
    /// UIDs replaced.
    pub uids_replaced: usize,
    /// Dates shifted.
    pub dates_shifted: usize,
    /// Text values cleaned.
    pub texts_cleaned: usize,
    /// Known identifiers found and replaced in retained text.
    pub identifiers_scrubbed: usize,
    /// The data set was moved to UTF-8 because a cleaned value did not fit its character set.
    pub moved_to_utf8: bool,
}

/// Why a file could not be de-identified.
#[derive(Debug, thiserror::Error)]
pub enum DeidError {
    /// Pixel cleaning failed (the file must not leave unprocessed).
    #[error("pixel data: {0}")]
    Pixels(String),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Normal,
    /// Inside a sequence under C: every free-text value is cleaned too.
    CleanAll,
    /// Inside an X/Z/U* sequence: every instance UID is replaced too.
    AllUids,
}

struct Ctx<'a> {
    profile: &'a Profile,
    cfg: &'a Config,
    keys: &'a Keyring<'a>,
    pseudonym: String,
    offset_days: i64,
    /// Originals that must not survive: name parts, IDs, birth date forms.
    scrub: Vec<String>,
    text_cfg: TextConfig,
    doc: DocContext,
    stats: Stats,
    encode_failed: bool,
    /// Set by `clean` when the element it was given must be removed instead.
    drop_me: bool,
}

/// kiban's Implementation Class UID (a fixed 2.25 UUID-derived UID).
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.302578373617012541947032818716839745857";
const PATIENT_ID: Tag = Tag(0x0010, 0x0020);
const ISSUER_OF_PATIENT_ID: Tag = Tag(0x0010, 0x0021);
const PATIENT_NAME: Tag = Tag(0x0010, 0x0010);
const BIRTH_DATE: Tag = Tag(0x0010, 0x0030);
const SOP_INSTANCE_UID: Tag = Tag(0x0008, 0x0018);

/// De-identifies the attributes of `f` (pixels are [`crate::pixels`]' business). Returns the new file.
pub fn deidentify_attributes(
    f: &DicomFile,
    profile: &Profile,
    cfg: &Config,
    keys: &Keyring,
) -> Result<(DicomFile, Stats), DeidError> {
    let top_cs = charset_of(&f.dataset, &CharacterSet::default());
    let mut out = f.clone();
    let (ctx_stats, failed) = run(&mut out, profile, cfg, keys, &top_cs);
    if !failed {
        return Ok((out, ctx_stats));
    }
    // A cleaned value did not fit the file's character set: move the whole data set to UTF-8 first.
    let mut out = f.clone();
    transcode_utf8(&mut out.dataset, &CharacterSet::default());
    out.dataset.put(text_el(Tag::SPECIFIC_CHARACTER_SET, Vr::CS, b"ISO_IR 192".to_vec()));
    let utf8 = CharacterSet::parse("ISO_IR 192");
    let (mut stats, _) = run(&mut out, profile, cfg, keys, &utf8);
    stats.moved_to_utf8 = true;
    Ok((out, stats))
}

fn run(out: &mut DicomFile, profile: &Profile, cfg: &Config, keys: &Keyring, cs: &CharacterSet) -> (Stats, bool) {
    let ds = &out.dataset;
    let pid = ds.get(PATIENT_ID).map(|e| text_of(e, cs)).unwrap_or_default();
    let issuer = ds.get(ISSUER_OF_PATIENT_ID).map(|e| text_of(e, cs)).unwrap_or_default();
    let pseudonym = keys.pseudonym(&pid, &issuer);
    let offset_days = keys.date_offset_days(&pseudonym);
    let mut scrub = identifiers(ds, cs);
    scrub.retain(|s| s != &pseudonym);
    let seed = u64::from_be_bytes(
        keys.key.keyed_digest("dicom-surrogate/v1", pseudonym.as_bytes())[..8].try_into().expect("8"),
    );
    let mut ctx = Ctx {
        profile,
        cfg,
        keys,
        pseudonym,
        offset_days,
        scrub,
        text_cfg: TextConfig::pseudonymization(),
        doc: DocContext { date_offset_days: offset_days, surrogate_seed: seed },
        stats: Stats::default(),
        encode_failed: false,
        drop_me: false,
    };
    let mut ds = std::mem::take(&mut out.dataset);
    ctx.process(&mut ds, cs, Mode::Normal);
    ctx.mark(&mut ds, cs);
    out.dataset = ds;
    // File meta: the instance UID follows the data set's; source AE title and private meta go.
    let sop = out.dataset.ascii(SOP_INSTANCE_UID);
    if let Some(uid) = sop {
        out.meta.put(text_el(Tag(0x0002, 0x0003), Vr::UI, uid.into_bytes()));
    }
    for t in [Tag(0x0002, 0x0016), Tag(0x0002, 0x0100), Tag(0x0002, 0x0102)] {
        out.meta.remove(t);
    }
    // kiban wrote this file: its implementation identifies itself (the original one could single out a site).
    out.meta.put(text_el(Tag(0x0002, 0x0012), Vr::UI, IMPLEMENTATION_CLASS_UID.as_bytes().to_vec()));
    out.meta.put(text_el(Tag(0x0002, 0x0013), Vr::SH, b"KIBAN_DEID".to_vec()));
    // The preamble may hold a TIFF header with identifying tags: zero it.
    out.preamble = vec![0; 128];
    (ctx.stats, ctx.encode_failed)
}

fn text_of(e: &Element, cs: &CharacterSet) -> String {
    e.bytes().map(|b| cs.decode(b)).unwrap_or_default().trim().to_owned()
}

fn text_el(tag: Tag, vr: Vr, mut b: Vec<u8>) -> Element {
    if b.len() % 2 == 1 {
        b.push(if vr == Vr::UI { 0 } else { b' ' });
    }
    Element { tag, vr, value: Value::Bytes(b) }
}

/// The identifying strings of the patient that must not survive anywhere (names by component, IDs, birth date).
fn identifiers(ds: &DataSet, cs: &CharacterSet) -> Vec<String> {
    let mut out = Vec::new();
    for t in [PATIENT_NAME, Tag(0x0010, 0x1001), Tag(0x0010, 0x1005), Tag(0x0010, 0x1060)] {
        if let Some(e) = ds.get(t) {
            let v = text_of(e, cs);
            for part in v.split(['^', '=', '\\', ' ']) {
                let p = part.trim();
                let long_enough = if p.is_ascii() { p.len() >= 3 } else { p.chars().count() >= 2 };
                if long_enough && !p.eq_ignore_ascii_case("anonymized") {
                    out.push(p.to_owned());
                }
            }
        }
    }
    for t in [PATIENT_ID, Tag(0x0010, 0x1000)] {
        if let Some(e) = ds.get(t) {
            for v in text_of(e, cs).split('\\') {
                if v.trim().len() >= 3 {
                    out.push(v.trim().to_owned());
                }
            }
        }
    }
    if let Some(d) = ds.ascii(BIRTH_DATE).filter(|d| d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit())) {
        let (y, m, dd) = (&d[..4], &d[4..6], &d[6..]);
        out.extend([d.clone(), format!("{y}-{m}-{dd}"), format!("{y}/{m}/{dd}"), format!("{y}.{m}.{dd}")]);
    }
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

/// Tags whose UIDs name classes, syntaxes or coding schemes, never instances: never replaced.
fn is_class_uid(tag: Tag) -> bool {
    let k = tag.keyword().unwrap_or("");
    k.contains("ClassUID")
        || k.contains("SOPClasses")
        || k.contains("TransferSyntax")
        || k.contains("CodingScheme")
        || k.contains("ContextUID")
        || k.contains("MappingResourceUID")
        || k.contains("ContextGroupExtensionCreatorUID")
}

impl Ctx<'_> {
    fn process(&mut self, ds: &mut DataSet, inherited: &CharacterSet, mode: Mode) {
        let cs = charset_of(ds, inherited);
        let kept_private = self.private_keep(ds);
        let mut out = Vec::with_capacity(ds.elements.len());
        let mut overlays_removed = Vec::new();
        for mut el in std::mem::take(&mut ds.elements) {
            let tag = el.tag;
            if tag.is_private() {
                if kept_private.contains(&tag) {
                    out.push(el);
                } else {
                    self.stats.removed += 1;
                    self.stats.private_removed += 1;
                }
                continue;
            }
            if tag == Tag::SPECIFIC_CHARACTER_SET {
                out.push(el);
                continue;
            }
            if tag == PATIENT_ID {
                out.push(text_el(tag, el.vr, self.pseudonym.clone().into_bytes()));
                continue;
            }
            let action = self.profile.rule(tag).map(|r| r.action(&self.cfg.options));
            let keep = match action {
                Some(Action::X) => false,
                Some(Action::Z) => {
                    el.value = match el.value {
                        Value::Seq(_) => Value::Seq(Vec::new()),
                        _ => Value::Bytes(Vec::new()),
                    };
                    self.stats.emptied += 1;
                    true
                }
                Some(Action::D) => {
                    self.dummy(&mut el, &cs, mode);
                    true
                }
                Some(Action::U) => {
                    self.replace_uids(&mut el);
                    true
                }
                Some(Action::UStar) => {
                    if let Value::Seq(items) = &mut el.value {
                        for it in items {
                            self.process(it, &cs, Mode::AllUids);
                        }
                    } else {
                        self.replace_uids(&mut el);
                    }
                    true
                }
                Some(Action::C) => {
                    self.drop_me = false;
                    self.clean(&mut el, &cs);
                    !std::mem::take(&mut self.drop_me)
                }
                Some(Action::K) => {
                    if let Value::Seq(items) = &mut el.value {
                        for it in items {
                            self.process(it, &cs, mode);
                        }
                    }
                    true
                }
                // Beyond the table: a person name it does not list is still a person's name.
                None if el.vr == Vr::PN => {
                    el.value = Value::Bytes(Vec::new());
                    self.stats.emptied += 1;
                    true
                }
                None => {
                    match &mut el.value {
                        Value::Seq(items) => {
                            for it in items {
                                self.process(it, &cs, mode);
                            }
                        }
                        // Beyond the table: an instance UID anywhere is replaced (consistently), so none
                        // survives; class and syntax UIDs stay. Kept under Retain UIDs.
                        Value::Bytes(_)
                            if el.vr == Vr::UI
                                && (mode == Mode::AllUids || !self.cfg.has(ProfileOption::RetainUids))
                                && !is_class_uid(tag) =>
                        {
                            self.replace_uids(&mut el);
                        }
                        Value::Bytes(_) if mode == Mode::CleanAll && el.vr.is_charset_text() => {
                            self.clean(&mut el, &cs)
                        }
                        // Beyond the table: dates it does not list (Instance Creation Date, dates in private-free
                        // items …) get the same treatment as listed ones, so no date escapes the per-person shift.
                        Value::Bytes(_) if el.vr == Vr::DA || el.vr == Vr::DT => {
                            if self.cfg.has(ProfileOption::RetainLongitudinalModifiedDates) {
                                self.clean(&mut el, &cs);
                            } else if !self.cfg.has(ProfileOption::RetainLongitudinalFullDates) {
                                el.value = Value::Bytes(Vec::new());
                                self.stats.emptied += 1;
                            }
                        }
                        _ => {}
                    }
                    true
                }
            };
            if !keep {
                self.stats.removed += 1;
                if tag.0 & 0xFF00 == 0x6000 && tag.1 == 0x3000 {
                    overlays_removed.push(tag.0);
                }
                continue;
            }
            if el.vr.is_charset_text() {
                self.scrub_known(&mut el, &cs);
            }
            out.push(el);
        }
        // An overlay plane without its data is invalid: the whole group goes with it.
        if !overlays_removed.is_empty() {
            out.retain(|e| !overlays_removed.contains(&e.tag.0));
        }
        ds.elements = out;
    }

    /// Private tags kept under Retain Safe Private (with their creators); empty otherwise.
    fn private_keep(&self, ds: &DataSet) -> HashSet<Tag> {
        let mut keep = HashSet::new();
        if !self.cfg.has(ProfileOption::RetainSafePrivate) {
            return keep;
        }
        for el in &ds.elements {
            let t = el.tag;
            if !t.is_private() || !(0x0010..=0x00FF).contains(&t.1) {
                continue;
            }
            let creator = el.ascii().unwrap_or_default();
            let block = t.1 << 8;
            for s in self.cfg.safe_private.iter().filter(|s| s.group == t.0 && s.creator == creator) {
                keep.insert(Tag(t.0, block | s.element as u16));
                keep.insert(t);
            }
        }
        keep
    }

    fn replace_uids(&mut self, el: &mut Element) {
        let Some(v) = el.ascii() else { return };
        if v.is_empty() {
            return;
        }
        let new: Vec<String> = v
            .split('\\')
            .map(|u| {
                let u = u.trim();
                if u.starts_with("1.2.840.10008.") || u.is_empty() { u.to_owned() } else { self.keys.uid(u) }
            })
            .collect();
        self.stats.uids_replaced += 1;
        *el = text_el(el.tag, Vr::UI, new.join("\\").into_bytes());
    }

    fn dummy(&mut self, el: &mut Element, cs: &CharacterSet, mode: Mode) {
        self.stats.dummied += 1;
        let v: &[u8] = match &el.vr.0 {
            // A sequence "replaced with a dummy" keeps its structure, but every free text in it is cleaned:
            // Content Sequence items carry report text.
            b"SQ" => {
                let m = if mode == Mode::AllUids { mode } else { Mode::CleanAll };
                if let Value::Seq(items) = &mut el.value {
                    for it in items {
                        self.process(it, cs, m);
                    }
                }
                return;
            }
            b"UI" => return self.replace_uids(el),
            b"DA" => b"19000101",
            b"DT" => b"19000101000000",
            b"TM" => b"000000",
            b"DS" | b"IS" => b"0",
            b"AS" => b"000D",
            b"PN" | b"LO" | b"SH" | b"LT" | b"ST" | b"UT" | b"UC" | b"CS" | b"AE" => b"ANONYMIZED",
            b"UR" => b"",
            _ => {
                let n = el.bytes().map_or(2, |b| b.len().max(2));
                el.value = Value::Bytes(vec![0; n]);
                return;
            }
        };
        *el = text_el(el.tag, el.vr, v.to_vec());
    }

    fn clean(&mut self, el: &mut Element, cs: &CharacterSet) {
        match &el.vr.0 {
            b"SQ" => {
                if let Value::Seq(items) = &mut el.value {
                    for it in items {
                        self.process(it, cs, Mode::CleanAll);
                    }
                }
            }
            b"DA" | b"DT" => {
                let v = el.ascii().unwrap_or_default();
                let shifted: Vec<String> = v.split('\\').map(|d| self.shift(d, el.vr == Vr::DT)).collect();
                self.stats.dates_shifted += 1;
                *el = text_el(el.tag, el.vr, shifted.join("\\").into_bytes());
            }
            // Times keep their time of day: the shift is in whole days.
            b"TM" => {}
            _ if el.vr.is_charset_text() => {
                let Some(b) = el.bytes() else { return };
                let text = cs.decode(b);
                if text.is_empty() {
                    return;
                }
                let cleaned = clean_free_text(&text, &self.text_cfg, &self.doc).text;
                self.stats.texts_cleaned += 1;
                self.set_text(el, &cleaned, cs);
            }
            // Overlay and curve bitmaps may draw text and cannot be cleaned here: they go.
            b"OB" | b"OW" | b"UN" => {
                el.value = Value::Bytes(Vec::new());
                self.drop_me = true;
            }
            // Other VRs (codes, numbers) carry no free text to clean.
            _ => {}
        }
    }

    fn shift(&self, v: &str, datetime: bool) -> String {
        let v = v.trim();
        if v.len() < 8 || !v.is_char_boundary(8) {
            return String::new();
        }
        let Ok(d) = NaiveDate::parse_from_str(&v[..8], "%Y%m%d") else { return String::new() };
        let n = Days::new(self.offset_days.unsigned_abs());
        let s = if self.offset_days < 0 { d.checked_sub_days(n) } else { d.checked_add_days(n) };
        match s {
            Some(s) => format!("{}{}", s.format("%Y%m%d"), if datetime { &v[8..] } else { "" }),
            None => String::new(),
        }
    }

    fn set_text(&mut self, el: &mut Element, text: &str, cs: &CharacterSet) {
        match cs.encode(text) {
            Some(b) => *el = text_el(el.tag, el.vr, b),
            None => {
                self.encode_failed = true;
                *el = text_el(el.tag, el.vr, Vec::new());
            }
        }
    }

    fn scrub_known(&mut self, el: &mut Element, cs: &CharacterSet) {
        let Some(b) = el.bytes() else { return };
        if b.is_empty() || self.scrub.is_empty() {
            return;
        }
        let text = cs.decode(b);
        let mut t = text.clone();
        for s in &self.scrub {
            if t.contains(s.as_str()) {
                t = t.replace(s.as_str(), "［除去］");
            } else if s.is_ascii() {
                // Case-insensitive, every occurrence (lower-casing ASCII keeps byte offsets).
                let sl = s.to_ascii_lowercase();
                while let Some(i) = t.to_ascii_lowercase().find(&sl) {
                    t.replace_range(i..i + s.len(), "［除去］");
                }
            }
        }
        if t != text {
            self.stats.identifiers_scrubbed += 1;
            self.set_text(el, &t, cs);
        }
    }

    fn mark(&mut self, ds: &mut DataSet, cs: &CharacterSet) {
        let _ = cs;
        ds.put(text_el(Tag(0x0012, 0x0062), Vr::CS, b"YES".to_vec()));
        let mut codes = vec![("113100", "Basic Application Confidentiality Profile")];
        codes.extend(self.cfg.options.iter().map(|o| o.code()));
        // LO holds 64 characters: the codes themselves are in the code sequence below.
        let method = format!("kiban: PS3.15 Basic Profile + {} options (0012,0064)", codes.len() - 1);
        ds.put(text_el(Tag(0x0012, 0x0063), Vr::LO, method.into_bytes()));
        let items = codes
            .iter()
            .map(|(v, m)| DataSet {
                elements: vec![
                    text_el(Tag(0x0008, 0x0100), Vr::SH, v.as_bytes().to_vec()),
                    text_el(Tag(0x0008, 0x0102), Vr::SH, b"DCM".to_vec()),
                    text_el(Tag(0x0008, 0x0104), Vr::LO, m.as_bytes().to_vec()),
                ],
            })
            .collect();
        ds.put(Element { tag: Tag(0x0012, 0x0064), vr: Vr::SQ, value: Value::Seq(items) });
        let ltim: &[u8] = if self.cfg.has(ProfileOption::RetainLongitudinalFullDates) {
            b"UNMODIFIED"
        } else if self.cfg.has(ProfileOption::RetainLongitudinalModifiedDates) {
            b"MODIFIED"
        } else {
            b"REMOVED"
        };
        ds.put(text_el(Tag(0x0028, 0x0303), Vr::CS, ltim.to_vec()));
    }
}

/// Re-encodes every text value of `ds` (and its items) from its character set to UTF-8; nested Specific
/// Character Set elements go (the top one is set by the caller).
fn transcode_utf8(ds: &mut DataSet, inherited: &CharacterSet) {
    let cs = charset_of(ds, inherited);
    ds.remove(Tag::SPECIFIC_CHARACTER_SET);
    for el in &mut ds.elements {
        match &mut el.value {
            Value::Seq(items) => items.iter_mut().for_each(|it| transcode_utf8(it, &cs)),
            Value::Bytes(b) if el.vr.is_charset_text() => {
                let s = cs.decode(b);
                *b = s.into_bytes();
                if b.len() % 2 == 1 {
                    b.push(b' ');
                }
            }
            _ => {}
        }
    }
}
