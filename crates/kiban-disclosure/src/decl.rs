//! The declaration file (TOML): what each dimension of a table is, which column is the count,
//! what the figures are, and how to protect them.

use serde::{Deserialize, Serialize};

use crate::DisclosureError;

/// What a dimension of an aggregate table is (drives O2, O3, O4, O6, O7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DimensionKind {
    /// 年齢区分 (O6).
    AgeBand,
    /// 性別.
    Sex,
    /// 二次医療圏 (O2, O7).
    SecondaryArea,
    /// 都道府県.
    Prefecture,
    /// 市区町村 or finer: forbidden by O7.
    Municipality,
    /// Postal code or finer address: forbidden by O7.
    PostalCode,
    /// 医療機関等の属性 (O3).
    FacilityAttribute,
    /// 保険者種別 (O3, O7).
    InsurerType,
    /// 薬剤区分: 内服/外用/注射 (O4).
    DrugKind,
    /// Any other category (diagnosis, year …).
    Other,
}

/// What the count column counts (drives O1, O3, O4, O5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MeasureKind {
    /// 患者等の数 (O1, O2).
    #[default]
    Patients,
    /// 医療機関数・保険者数 (O3).
    Facilities,
    /// 薬剤の処方数等 (O4).
    Drug,
    /// リハビリテーションの集計 (O5).
    Rehabilitation,
}

/// Route of a drug for O4's thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrugRoute {
    /// 内服 (1,000).
    Oral,
    /// 外用 (1,000).
    External,
    /// 注射 (400).
    Injection,
}

impl DrugRoute {
    /// Parses a drug-kind label (内服/外用/注射 or oral/external/injection).
    pub fn parse(label: &str) -> Option<Self> {
        let l = label.trim().to_lowercase();
        if l.contains("内服") || l == "oral" {
            Some(DrugRoute::Oral)
        } else if l.contains("外用") || l == "external" {
            Some(DrugRoute::External)
        } else if l.contains("注射") || l == "injection" {
            Some(DrugRoute::Injection)
        } else {
            None
        }
    }
}

/// One dimension of the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DimensionDecl {
    /// Column name in the table (long layout) or the dimension's name (the wide dimension).
    pub column: String,
    /// What the dimension is.
    pub kind: DimensionKind,
}

/// Long (one row per cell) or wide (one dimension's levels spread over columns).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// One row per cell; the count in `count_column`.
    #[default]
    Long,
    /// The levels of `wide_dimension` are columns; every non-dimension column is a level.
    Wide,
}

/// How secondary suppression measures its cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CostKind {
    /// Minimize the suppressed total (sum of suppressed values).
    #[default]
    Value,
    /// Minimize the number of suppressed cells.
    Count,
}

/// The protection interval a suppressed cell must keep against an attacker (O9).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Protection {
    /// Required half-width as a percentage of the cell value.
    pub percent: f64,
    /// Required half-width as an absolute amount (the larger of the two applies).
    pub absolute: f64,
    /// Cost the suppression minimizes.
    pub cost: CostKind,
}

impl Default for Protection {
    fn default() -> Self {
        Protection { percent: 10.0, absolute: 3.0, cost: CostKind::Value }
    }
}

impl Protection {
    /// Required (lower, upper) distance of the attacker interval from the true value `x`.
    pub fn required(&self, x: i64) -> (f64, f64) {
        let w = (self.percent / 100.0 * x as f64).ceil().max(self.absolute).max(0.0);
        ((x as f64).min(w), w)
    }
}

/// The declaration of one table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Declaration {
    /// Table title shown in reports.
    #[serde(default)]
    pub title: String,
    /// Long or wide layout.
    #[serde(default)]
    pub layout: Layout,
    /// Worksheet to read when the table is a spreadsheet (default: the first).
    #[serde(default)]
    pub sheet: Option<String>,
    /// The dimensions, in order.
    #[serde(rename = "dimension")]
    pub dimensions: Vec<DimensionDecl>,
    /// The count column (long layout).
    #[serde(default = "default_count")]
    pub count_column: String,
    /// The dimension spread over columns (wide layout).
    #[serde(default)]
    pub wide_dimension: Option<String>,
    /// What the counts are.
    #[serde(default)]
    pub measure: MeasureKind,
    /// Drug route when the table has no drug-kind dimension (O4).
    #[serde(default)]
    pub drug_route: Option<DrugRoute>,
    /// Column with the matching patient count when it is known (O4 ①, O5 ①).
    #[serde(default)]
    pub patient_count_column: Option<String>,
    /// Column with the number of facilities/insurers in each cell (O3).
    #[serde(default)]
    pub contributors_column: Option<String>,
    /// Label of margin (total) levels in the input; also "計", "合計", "Total" are recognized.
    #[serde(default = "default_total")]
    pub total_label: String,
    /// Single years of age under 20 are needed by the research (O6 proviso).
    #[serde(default)]
    pub single_years_under_20: bool,
    /// Insurers consented to a cross-tabulation of area × insurer type (O7 iii proviso).
    #[serde(default)]
    pub insurer_consent: bool,
    /// The label saying these figures were made by the user, not official statistics (O8).
    #[serde(default)]
    pub user_made_label: Option<String>,
    /// Protection interval for secondary suppression (O9).
    #[serde(default)]
    pub protection: Protection,
    /// Rounding base for `round` mode (e.g. 5 or 10).
    #[serde(default)]
    pub rounding_base: Option<i64>,
}

fn default_count() -> String {
    "count".into()
}
fn default_total() -> String {
    "計".into()
}

impl Declaration {
    /// Parses and checks a declaration.
    pub fn from_toml(text: &str) -> Result<Self, DisclosureError> {
        let d: Declaration = toml::from_str(text).map_err(|e| DisclosureError::Declaration(e.to_string()))?;
        d.validate()?;
        Ok(d)
    }

    /// Checks internal consistency (at least one dimension, a wide dimension when wide, …).
    pub fn validate(&self) -> Result<(), DisclosureError> {
        if self.dimensions.is_empty() {
            return Err(DisclosureError::Declaration("at least one [[dimension]] is required".into()));
        }
        let mut seen = std::collections::HashSet::new();
        for d in &self.dimensions {
            if !seen.insert(&d.column) {
                return Err(DisclosureError::Declaration(format!("dimension {:?} declared twice", d.column)));
            }
        }
        if self.layout == Layout::Wide {
            match &self.wide_dimension {
                Some(w) if self.dimensions.iter().any(|d| &d.column == w) => {}
                _ => {
                    return Err(DisclosureError::Declaration(
                        "layout = \"wide\" needs wide_dimension naming one of the dimensions".into(),
                    ));
                }
            }
        }
        if let Some(b) = self.rounding_base
            && b < 2
        {
            return Err(DisclosureError::Declaration(format!("rounding_base must be ≥ 2, got {b}")));
        }
        if self.protection.percent < 0.0 || self.protection.absolute < 0.0 {
            return Err(DisclosureError::Declaration("protection must be non-negative".into()));
        }
        Ok(())
    }

    /// Whether `label` marks a margin (total) level.
    pub fn is_total(&self, label: &str) -> bool {
        let l = label.trim();
        l == self.total_label || matches!(l, "計" | "合計" | "総計" | "Total" | "total" | "TOTAL" | "All" | "all")
    }
}
