//! The 二次医療圏 population table supplied by the operator (O2): CSV `code,name,population`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::DisclosureError;

/// One 二次医療圏 and its population.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Area {
    /// Area code.
    pub code: String,
    /// Area name.
    pub name: String,
    /// Population.
    pub population: u64,
}

/// The validated population table, looked up by code or by name.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AreaTable {
    /// Areas by code.
    pub areas: BTreeMap<String, Area>,
    /// Whether the table says it is synthetic (file name or header contains "synthetic"/"合成").
    pub synthetic: bool,
}

/// O2 population band of a 二次医療圏.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PopulationBand {
    /// Population under 2,000: no patient counts shown at all.
    Under2000,
    /// 2,000 ≤ population < 25,000: cells under 20 not shown.
    Under25000,
    /// Population ≥ 25,000: cells under 10 not shown.
    Large,
}

impl PopulationBand {
    /// The band of a population (O2 ①②③).
    pub fn of(population: u64) -> Self {
        if population < 2_000 {
            PopulationBand::Under2000
        } else if population < 25_000 {
            PopulationBand::Under25000
        } else {
            PopulationBand::Large
        }
    }
}

impl AreaTable {
    /// Parses and validates the CSV; every problem names its row (header is row 1).
    pub fn from_csv_str(file: &str, text: &str) -> Result<Self, DisclosureError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut errors = Vec::new();
        let mut rdr = csv::ReaderBuilder::new().flexible(true).from_reader(text.as_bytes());
        let header: Vec<String> = match rdr.headers() {
            Ok(h) => h.iter().map(|s| s.trim().to_lowercase()).collect(),
            Err(e) => return Err(DisclosureError::Areas(vec![format!("{file} row 1: {e}")])),
        };
        let find = |names: &[&str]| {
            header.iter().position(|h| names.iter().any(|n| h == n || h.starts_with(&format!("{n} ("))))
        };
        let (Some(ci), Some(ni), Some(pi)) =
            (find(&["code", "コード"]), find(&["name", "名称"]), find(&["population", "人口"]))
        else {
            return Err(DisclosureError::Areas(vec![format!(
                "{file} row 1: header must have code, name, population (got {header:?})"
            )]));
        };
        let synthetic = file.to_lowercase().contains("synthetic")
            || header.iter().any(|h| h.contains("synthetic") || h.contains("合成"));
        let mut areas: BTreeMap<String, Area> = BTreeMap::new();
        let mut first_row: BTreeMap<String, usize> = BTreeMap::new();
        for (i, r) in rdr.records().enumerate() {
            let row = i + 2;
            let r = match r {
                Ok(r) => r,
                Err(e) => {
                    errors.push(format!("{file} row {row}: {e}"));
                    continue;
                }
            };
            let get = |c: usize| r.get(c).map(str::trim).unwrap_or("");
            let code = get(ci).to_string();
            if code.is_empty() {
                errors.push(format!("{file} row {row}: empty area code / 圏域コードが空です"));
                continue;
            }
            let pop_s = get(pi).replace(',', "");
            let population = match pop_s.parse::<u64>() {
                Ok(p) => p,
                Err(_) => {
                    errors.push(format!(
                        "{file} row {row}: population {:?} of area {code} is not a non-negative integer / 人口が数値ではありません",
                        get(pi)
                    ));
                    continue;
                }
            };
            if let Some(prev) = first_row.get(&code) {
                errors.push(format!(
                    "{file} row {row}: duplicate area code {code} (first at row {prev}) / 圏域コードが重複しています"
                ));
                continue;
            }
            first_row.insert(code.clone(), row);
            areas.insert(code.clone(), Area { code, name: get(ni).to_string(), population });
        }
        if errors.is_empty() { Ok(AreaTable { areas, synthetic }) } else { Err(DisclosureError::Areas(errors)) }
    }

    /// Reads and validates a CSV file.
    pub fn read(path: &std::path::Path) -> Result<Self, DisclosureError> {
        let text = std::fs::read_to_string(path).map_err(|e| DisclosureError::io(path, e))?;
        Self::from_csv_str(&path.display().to_string(), &text)
    }

    /// Looks an area up by code, then by name.
    pub fn get(&self, label: &str) -> Option<&Area> {
        self.areas.get(label).or_else(|| self.areas.values().find(|a| a.name == label))
    }

    /// Checks that every area label of a table is in the population table (errors name the label).
    pub fn require_all<'a>(&self, labels: impl IntoIterator<Item = &'a String>) -> Result<(), DisclosureError> {
        let missing: Vec<String> = labels
            .into_iter()
            .filter(|l| self.get(l).is_none())
            .map(|l| {
                format!("area {l:?} of the table is missing from the population table / 人口表にない二次医療圏です")
            })
            .collect();
        if missing.is_empty() { Ok(()) } else { Err(DisclosureError::Areas(missing)) }
    }
}
