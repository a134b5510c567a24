//! The public data catalogue (K1): what each database holds (size, period, items with Japanese
//! descriptions, last update) and dummy data generated from the schema.
//!
//! Dummy data is made from the column list alone — each column's kind says how to draw a value of
//! the right type and code system. The real values are used for one thing only: a drawn value that
//! happens to equal a real one is drawn again, so no identifier, date, code, number or text of the
//! clinical store appears in the dummy file. Columns whose whole vocabulary is public and tiny
//! (入院/外来, 内服/外用/注射, true/false, units, departments) necessarily share values with the real data;
//! they are marked `vocabulary` in the catalogue.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

/// The catalogue as published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Catalogue {
    /// When it was built (RFC 3339).
    pub built_at: String,
    /// One entry per database.
    pub databases: Vec<Database>,
    /// Set when the store holds the synthetic population (the demo).
    pub note: Option<String>,
}

/// One database of the clinical store (one canonical table over every batch).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Database {
    /// Machine name (`encounters`, `diagnoses`, …).
    pub name: String,
    /// Japanese title.
    pub title_ja: String,
    /// English title.
    pub title_en: String,
    /// Distinct patients (per provider patient id).
    pub patients: u64,
    /// Records (rows).
    pub records: u64,
    /// Providers contributing.
    pub providers: u64,
    /// Earliest date of the table's main date column.
    pub period_from: Option<String>,
    /// Latest date.
    pub period_to: Option<String>,
    /// Date of the last batch that changed it (YYYY-MM-DD).
    pub updated_on: Option<String>,
    /// Batches holding it.
    pub batches: u64,
    /// The items (columns).
    pub items: Vec<Item>,
}

/// One item (column) of a database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// Column name.
    pub column: String,
    /// Arrow type name.
    pub data_type: String,
    /// Japanese description.
    pub description_ja: String,
    /// English description.
    pub description_en: String,
    /// Code system, when the column holds codes.
    pub code_system: Option<String>,
    /// How dummy values are drawn.
    pub kind: ItemKind,
}

/// How a column's dummy values are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    /// An identifier: `DUMMY-` and a number.
    Id,
    /// A date in the database's period.
    Date,
    /// An ICD-10 code (letter, two digits, optional digit).
    Icd10,
    /// A 9-digit code (レセプト電算処理システム 医薬品コード style).
    DrugCode,
    /// A JLAC10-style 5-character analyte code.
    LabCode,
    /// A name that goes with a code: `ダミー` and the code.
    CodeName,
    /// A public, small vocabulary (shared with real data by necessity).
    Vocabulary,
    /// A non-negative integer.
    Count,
    /// A measurement.
    Number,
    /// Free text: a fixed dummy sentence with a number.
    Text,
}

/// Japanese title, English title and main date column of a canonical clinical table.
pub fn table_info(name: &str) -> (&'static str, &'static str, Option<&'static str>) {
    match name {
        "encounters" => ("受診（外来・入院）", "Encounters (outpatient and inpatient)", Some("admission_date")),
        "diagnoses" => ("傷病名", "Diagnoses", Some("diagnosis_date")),
        "prescriptions" => ("処方", "Prescriptions", Some("prescribed_date")),
        "labs" => ("検体検査結果", "Laboratory results", Some("result_date")),
        "texts" => ("記録文（所見・レポート）", "Free-text observations and reports", Some("observed_date")),
        _ => ("その他の表", "Other table", None),
    }
}

/// The description and dummy kind of a canonical column.
pub fn describe(column: &str, data_type: &str) -> Item {
    let (ja, en, code, kind) = match column {
        "provider_id" => ("医療情報取扱事業者の識別子", "Provider id", None, ItemKind::Id),
        "patient_id" => ("事業者における患者の識別子（仮名化済み）", "Patient id at the provider", None, ItemKind::Id),
        "encounter_id" => ("受診の識別子", "Encounter id", None, ItemKind::Id),
        "encounter_type" => ("外来・入院の別", "Outpatient or inpatient", None, ItemKind::Vocabulary),
        "department" => ("診療科", "Department", None, ItemKind::Vocabulary),
        "admission_date" => ("受診日・入院日", "Visit or admission date", None, ItemKind::Date),
        "discharge_date" => ("退院日（外来は空欄）", "Discharge date (empty for outpatients)", None, ItemKind::Date),
        "diagnosis_date" => ("診断日", "Diagnosis date", None, ItemKind::Date),
        "icd10" => ("傷病名コード", "Diagnosis code", Some("ICD-10 (2013)"), ItemKind::Icd10),
        "diagnosis_name" => ("傷病名", "Diagnosis name", None, ItemKind::CodeName),
        "main" => ("主傷病か否か", "Main diagnosis", None, ItemKind::Vocabulary),
        "prescribed_date" => ("処方日", "Prescription date", None, ItemKind::Date),
        "drug_code" => {
            ("医薬品コード", "Drug code", Some("レセプト電算処理システム用医薬品コード"), ItemKind::DrugCode)
        }
        "drug_name" => ("医薬品名", "Drug name", None, ItemKind::CodeName),
        "route" => ("剤形（内服・外用・注射）", "Route (oral, external, injection)", None, ItemKind::Vocabulary),
        "days" => ("処方日数", "Days supplied", None, ItemKind::Count),
        "result_date" => ("検査日", "Result date", None, ItemKind::Date),
        "test_code" => ("検査項目コード", "Test code", Some("JLAC10"), ItemKind::LabCode),
        "test_name" => ("検査項目名", "Test name", None, ItemKind::CodeName),
        "value" => ("検査値", "Result value", None, ItemKind::Number),
        "unit" => ("単位", "Unit", None, ItemKind::Vocabulary),
        "observed_date" => ("記録日", "Observation date", None, ItemKind::Date),
        "code" => ("記録の種類コード", "Observation code", Some("LOINC / JLAC10"), ItemKind::LabCode),
        "name" => ("記録の種類", "Observation name", None, ItemKind::CodeName),
        "text" => ("記録文（仮名加工前の原文は公開されません）", "Free text", None, ItemKind::Text),
        _ if data_type.starts_with("Date") => ("日付", "Date", None, ItemKind::Date),
        _ if data_type.starts_with("Float") => ("数値", "Number", None, ItemKind::Number),
        _ if data_type.contains("Int") => ("整数", "Integer", None, ItemKind::Count),
        _ => ("文字列", "Text", None, ItemKind::Text),
    };
    Item {
        column: column.into(),
        data_type: data_type.into(),
        description_ja: ja.into(),
        description_en: en.into(),
        code_system: code.map(str::to_owned),
        kind,
    }
}

/// Public vocabularies for [`ItemKind::Vocabulary`] columns.
fn vocabulary(column: &str) -> &'static [&'static str] {
    match column {
        "encounter_type" => &["外来", "入院"],
        "department" => &["内科", "外科", "小児科", "眼科"],
        "main" => &["true", "false"],
        "route" => &["内服", "外用", "注射"],
        "unit" => &["mg/dL", "U/L", "%"],
        _ => &["-"],
    }
}

/// A small deterministic generator (splitmix64): dummy data must be reproducible, not secret.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Real values per column, used only to redraw a dummy value that collides with one.
pub type RealValues = BTreeMap<String, HashSet<String>>;

/// `rows` rows of dummy data for `db` as CSV (header = the item columns), deterministic in `seed`.
pub fn dummy_csv(db: &Database, rows: usize, seed: u64, real: &RealValues) -> String {
    let mut rng = Mix(seed ^ 0x6b69_6261_6e00);
    let (from, to) = period(db);
    let span = (to - from).num_days().max(0) as u64;
    let empty = HashSet::new();
    let mut out = String::new();
    out.push_str(&db.items.iter().map(|i| i.column.as_str()).collect::<Vec<_>>().join(","));
    out.push('\n');
    for r in 0..rows {
        let mut fields = Vec::with_capacity(db.items.len());
        let mut last_code = String::new();
        for it in &db.items {
            let seen = real.get(&it.column).unwrap_or(&empty);
            let mut v = String::new();
            for attempt in 0..1000u64 {
                v = match it.kind {
                    ItemKind::Id => format!("DUMMY-{}-{:06}", short(&it.column), r as u64 * 7 + attempt * 100_003 + 1),
                    ItemKind::Date => (from + chrono::Days::new(rng.below(span + 1))).to_string(),
                    ItemKind::Icd10 => {
                        let l = b"ABCDEFGHIJKLMNZ"[rng.below(15) as usize] as char;
                        format!("{l}{:02}{}", rng.below(100), rng.below(10))
                    }
                    ItemKind::DrugCode => format!("6{:08}", rng.below(100_000_000)),
                    ItemKind::LabCode => format!("9{:04}", rng.below(10_000)),
                    ItemKind::CodeName => format!("ダミー名称{last_code}"),
                    ItemKind::Vocabulary => {
                        let voc = vocabulary(&it.column);
                        voc[rng.below(voc.len() as u64) as usize].to_owned()
                    }
                    ItemKind::Count => (1 + rng.below(9000) + attempt * 9000).to_string(),
                    ItemKind::Number => format!("{:.3}", rng.below(100_000) as f64 / 997.0 + 0.0005),
                    ItemKind::Text => {
                        format!("ダミーの記録文です（実データではありません）No.{}", r as u64 * 1000 + attempt)
                    }
                };
                // Vocabulary values are public and shared by necessity; everything else is redrawn.
                if it.kind == ItemKind::Vocabulary || !seen.contains(&v) {
                    break;
                }
            }
            if matches!(it.kind, ItemKind::Icd10 | ItemKind::DrugCode | ItemKind::LabCode) {
                last_code = v.clone();
            }
            if it.column == "discharge_date" && r % 2 == 0 {
                v.clear();
            }
            fields.push(csv_field(&v));
        }
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

fn short(column: &str) -> &str {
    column.strip_suffix("_id").unwrap_or(column)
}

fn period(db: &Database) -> (chrono::NaiveDate, chrono::NaiveDate) {
    let p = |s: &Option<String>| s.as_deref().and_then(|d| d.parse::<chrono::NaiveDate>().ok());
    let from = p(&db.period_from).unwrap_or_else(|| chrono::NaiveDate::from_ymd_opt(2020, 4, 1).expect("date"));
    let to = p(&db.period_to).unwrap_or(from).max(from);
    (from, to)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_owned() }
}
