//! The Attribute Confidentiality Profile of PS3.15 Annex E as data: Table E.1-1 (`data/table_e1_1.csv`)
//! with the Basic Profile column and the option columns, and how one attribute's action is chosen.

use std::collections::HashMap;

use kiban_formats::dicom::Tag;
use serde::{Deserialize, Serialize};

/// The table, embedded so a binary never runs without it.
pub const TABLE_E1_1: &str = include_str!("../data/table_e1_1.csv");

/// One action code of Table E.1-1 (composites resolved in [`Rule::action`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Action {
    /// Replace with a non-zero-length dummy value consistent with the VR.
    D,
    /// Replace with a zero-length value (or a dummy).
    Z,
    /// Remove.
    X,
    /// Keep (sequences: de-identify their items).
    K,
    /// Clean: keep the meaning, remove identifying content (free text de-identified, dates shifted).
    C,
    /// Replace the UID with a consistent keyed one.
    U,
    /// `X/Z/U*`: sequences whose UIDs are replaced and whose other content is de-identified.
    UStar,
}

/// The options of PS3.15 E.3 (and their DCM codes of CID 7050).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProfileOption {
    /// 113101 Clean Pixel Data.
    CleanPixelData,
    /// 113102 Clean Recognizable Visual Features.
    CleanRecognizableVisualFeatures,
    /// 113103 Clean Graphics.
    CleanGraphics,
    /// 113104 Clean Structured Content.
    CleanStructuredContent,
    /// 113105 Clean Descriptors.
    CleanDescriptors,
    /// 113106 Retain Longitudinal Temporal Information Full Dates.
    RetainLongitudinalFullDates,
    /// 113107 Retain Longitudinal Temporal Information Modified Dates.
    RetainLongitudinalModifiedDates,
    /// 113108 Retain Patient Characteristics.
    RetainPatientCharacteristics,
    /// 113109 Retain Device Identity.
    RetainDeviceIdentity,
    /// 113110 Retain UIDs.
    RetainUids,
    /// 113111 Retain Safe Private.
    RetainSafePrivate,
    /// 113112 Retain Institution Identity.
    RetainInstitutionIdentity,
}

impl ProfileOption {
    /// Every option.
    pub const ALL: [ProfileOption; 12] = [
        ProfileOption::CleanPixelData,
        ProfileOption::CleanRecognizableVisualFeatures,
        ProfileOption::CleanGraphics,
        ProfileOption::CleanStructuredContent,
        ProfileOption::CleanDescriptors,
        ProfileOption::RetainLongitudinalFullDates,
        ProfileOption::RetainLongitudinalModifiedDates,
        ProfileOption::RetainPatientCharacteristics,
        ProfileOption::RetainDeviceIdentity,
        ProfileOption::RetainUids,
        ProfileOption::RetainSafePrivate,
        ProfileOption::RetainInstitutionIdentity,
    ];

    /// The DCM code value and meaning (PS3.16 CID 7050).
    pub fn code(self) -> (&'static str, &'static str) {
        match self {
            ProfileOption::CleanPixelData => ("113101", "Clean Pixel Data Option"),
            ProfileOption::CleanRecognizableVisualFeatures => ("113102", "Clean Recognizable Visual Features Option"),
            ProfileOption::CleanGraphics => ("113103", "Clean Graphics Option"),
            ProfileOption::CleanStructuredContent => ("113104", "Clean Structured Content Option"),
            ProfileOption::CleanDescriptors => ("113105", "Clean Descriptors Option"),
            ProfileOption::RetainLongitudinalFullDates => {
                ("113106", "Retain Longitudinal Temporal Information Full Dates Option")
            }
            ProfileOption::RetainLongitudinalModifiedDates => {
                ("113107", "Retain Longitudinal Temporal Information Modified Dates Option")
            }
            ProfileOption::RetainPatientCharacteristics => ("113108", "Retain Patient Characteristics Option"),
            ProfileOption::RetainDeviceIdentity => ("113109", "Retain Device Identity Option"),
            ProfileOption::RetainUids => ("113110", "Retain UIDs Option"),
            ProfileOption::RetainSafePrivate => ("113111", "Retain Safe Private Option"),
            ProfileOption::RetainInstitutionIdentity => ("113112", "Retain Institution Identity Option"),
        }
    }

    /// The column key in `table_e1_1.csv` (options without a column act on pixels only).
    fn column(self) -> Option<&'static str> {
        Some(match self {
            ProfileOption::CleanGraphics => "cleangraph",
            ProfileOption::CleanStructuredContent => "cleanstruct",
            ProfileOption::CleanDescriptors => "cleandesc",
            ProfileOption::RetainLongitudinalFullDates => "fulldates",
            ProfileOption::RetainLongitudinalModifiedDates => "moddates",
            ProfileOption::RetainPatientCharacteristics => "patchars",
            ProfileOption::RetainDeviceIdentity => "devid",
            ProfileOption::RetainUids => "uids",
            ProfileOption::RetainSafePrivate => "safepriv",
            ProfileOption::RetainInstitutionIdentity => "instid",
            ProfileOption::CleanPixelData | ProfileOption::CleanRecognizableVisualFeatures => return None,
        })
    }

    /// Parses the CLI / TOML spelling (`clean-descriptors`, `retain_uids`, …).
    pub fn parse(s: &str) -> Option<ProfileOption> {
        let k = s.to_ascii_lowercase().replace('-', "_");
        ProfileOption::ALL
            .into_iter()
            .find(|o| serde_json::to_value(o).ok().and_then(|v| v.as_str().map(|x| x == k)).unwrap_or(false))
    }
}

/// The basic profile's cell: one code or a composite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Attribute name as in the table.
    pub name: String,
    /// Codes of the Basic Profile column (`X/Z/D` → [X, Z, D]).
    pub basic: Vec<char>,
    /// Option column → code.
    pub options: Vec<(String, char)>,
}

impl Rule {
    /// The action under `options`. An option's cell overrides the basic one (K over C over the rest
    /// when several apply). Composites are resolved without knowing the IOD's attribute type, to the
    /// choice that keeps every type valid: X/Z → Z, X/D, Z/D and X/Z/D → D, X/Z/U* → U*.
    pub fn action(&self, options: &[ProfileOption]) -> Action {
        let mut best: Option<char> = None;
        for o in options {
            let Some(col) = o.column() else { continue };
            if let Some((_, c)) = self.options.iter().find(|(k, _)| k == col) {
                best = match (best, *c) {
                    (Some('K'), _) | (_, 'K') => Some('K'),
                    (Some('C'), _) | (_, 'C') => Some('C'),
                    (_, c) => Some(c),
                };
            }
        }
        if let Some(c) = best {
            return code(c);
        }
        let b = &self.basic;
        if b.contains(&'U') && b.len() > 1 {
            Action::UStar
        } else if b.contains(&'D') {
            Action::D
        } else if b.contains(&'Z') {
            Action::Z
        } else {
            code(b[0])
        }
    }
}

fn code(c: char) -> Action {
    match c {
        'D' => Action::D,
        'Z' => Action::Z,
        'K' => Action::K,
        'C' => Action::C,
        'U' => Action::U,
        _ => Action::X,
    }
}

/// Table E.1-1 parsed: exact tags, and repeating-group rows (50xx,xxxx; 60xx,3000; 60xx,4000).
#[derive(Debug, Clone)]
pub struct Profile {
    exact: HashMap<Tag, Rule>,
    /// (group mask, element or None for any, rule).
    repeating: Vec<(u16, Option<u16>, Rule)>,
}

/// Why the table did not parse (a line number and what was wrong).
#[derive(Debug, thiserror::Error)]
#[error("table_e1_1.csv line {line}: {what}")]
pub struct TableError {
    line: usize,
    what: String,
}

impl Profile {
    /// The standard table shipped with kiban.
    pub fn standard() -> Profile {
        Profile::parse(TABLE_E1_1).expect("the embedded Table E.1-1 parses (tested)")
    }

    /// Parses a table in the `table_e1_1.csv` layout.
    pub fn parse(text: &str) -> Result<Profile, TableError> {
        let mut exact = HashMap::new();
        let mut repeating = Vec::new();
        let data: String = text.lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join("\n");
        let mut rd = csv::ReaderBuilder::new().has_headers(true).from_reader(data.as_bytes());
        for (i, rec) in rd.records().enumerate() {
            let line = i + 2;
            let rec = rec.map_err(|e| TableError { line, what: e.to_string() })?;
            let err = |what: &str| TableError { line, what: what.to_owned() };
            let (g, e) = (rec.get(0).ok_or_else(|| err("no group"))?, rec.get(1).ok_or_else(|| err("no element"))?);
            let basic: Vec<char> = rec.get(2).unwrap_or("").split('/').filter_map(|c| c.chars().next()).collect();
            if basic.is_empty() || !basic.iter().all(|c| "DZXKCU".contains(*c)) {
                return Err(err("basic profile action must be D, Z, X, K, C, U or a composite of them"));
            }
            let mut options = Vec::new();
            for kv in rec.get(3).unwrap_or("").split_whitespace() {
                let (k, v) = kv.split_once('=').ok_or_else(|| err("option must be key=action"))?;
                let c = v.chars().next().filter(|c| "DZXKCU".contains(*c)).ok_or_else(|| err("bad option action"))?;
                options.push((k.to_owned(), c));
            }
            let rule = Rule { name: rec.get(4).unwrap_or("").to_owned(), basic, options };
            if g.to_ascii_lowercase().contains("xx") {
                let gm = u16::from_str_radix(&g[..2], 16).map_err(|_| err("bad group"))? << 8;
                let el = if e.eq_ignore_ascii_case("xxxx") {
                    None
                } else {
                    Some(u16::from_str_radix(e, 16).map_err(|_| err("bad element"))?)
                };
                repeating.push((gm, el, rule));
            } else {
                let tag = Tag::parse(&format!("{g}{e}")).ok_or_else(|| err("bad tag"))?;
                if exact.insert(tag, rule).is_some() {
                    return Err(err("duplicate tag"));
                }
            }
        }
        Ok(Profile { exact, repeating })
    }

    /// The rule of `tag`, if the table lists it.
    pub fn rule(&self, tag: Tag) -> Option<&Rule> {
        if let Some(r) = self.exact.get(&tag) {
            return Some(r);
        }
        self.repeating
            .iter()
            .find(|(gm, el, _)| tag.0 & 0xFF00 == *gm && tag.0 & 1 == 0 && el.is_none_or(|e| e == tag.1))
            .map(|(_, _, r)| r)
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.exact.len() + self.repeating.len()
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
