//! Processing policies: a versioned TOML file giving every column a role and a treatment, the
//! named hierarchies, and the privacy model. The policy hash is the SHA-256 of its canonical
//! content (keys sorted, whitespace and comments dropped) followed by the SHA-256 of every
//! hierarchy file it reads, so the same policy always hashes the same.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use kiban_model::dataset::ColumnRole;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{DeidError, Result};
use crate::hierarchy::{Builder, DateLevel, Hierarchy, MissingRule};

/// The policy format versions this engine reads.
pub const SUPPORTED_VERSIONS: [u32; 1] = [1];

/// The information-loss metric minimized by the search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// ARX "Loss" (Iyengar's LM): per cell (leaves under the generalized value − 1)/(domain − 1).
    #[default]
    Loss,
    /// Sweeney's precision: per cell level / height.
    Precision,
    /// Discernibility: Σ class size² + suppressed × n.
    Discernibility,
    /// Non-uniform entropy: Σ −log2(freq(original)/freq(generalized)).
    Entropy,
}

/// Variant of ℓ-diversity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LVariant {
    /// At least ℓ distinct sensitive values per class.
    #[default]
    Distinct,
    /// Entropy of the sensitive values per class ≥ log2(ℓ).
    Entropy,
}

/// ℓ-diversity on a sensitive column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LDiversity {
    /// The sensitive column.
    pub column: String,
    /// ℓ.
    pub l: f64,
    /// Distinct or entropy ℓ-diversity.
    #[serde(default)]
    pub variant: LVariant,
}

/// t-closeness (equal ground distance) on a sensitive column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TCloseness {
    /// The sensitive column.
    pub column: String,
    /// Largest allowed distance between a class's distribution and the table's.
    pub t: f64,
}

/// What happens to records suppressed by the search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuppressedRecords {
    /// Removed from the output (the default).
    #[default]
    Remove,
    /// Kept with every quasi-identifier replaced by `*` (as ARX does).
    Mask,
}

/// The privacy model and search settings (A5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Privacy {
    /// Every equivalence class of the output has at least k records.
    pub k: u64,
    /// Largest share of records (0–1) that may be suppressed.
    #[serde(default)]
    pub suppression_limit: f64,
    /// The information-loss metric minimized.
    #[serde(default)]
    pub metric: Metric,
    /// Optional ℓ-diversity.
    #[serde(default)]
    pub l_diversity: Option<LDiversity>,
    /// Optional t-closeness.
    #[serde(default)]
    pub t_closeness: Option<TCloseness>,
    /// Removal or masking of suppressed records.
    #[serde(default)]
    pub suppressed_records: SuppressedRecords,
    /// Local recoding: records the global solution would suppress are generalized again on their
    /// own (to a coarser node where they form classes meeting the model) instead of suppressed.
    #[serde(default)]
    pub local_recoding: bool,
    /// Lattices larger than this are searched by a greedy heuristic, not exhaustively.
    #[serde(default = "default_max_nodes")]
    pub max_lattice_nodes: u64,
    /// Share of the population in the data (0–1], for journalist/marketer risk and population uniqueness.
    #[serde(default = "one")]
    pub sampling_fraction: f64,
    /// A record is "at risk" when its prosecutor risk exceeds this.
    #[serde(default = "default_risk_threshold")]
    pub risk_threshold: f64,
}

fn default_max_nodes() -> u64 {
    2_000_000
}
fn one() -> f64 {
    1.0
}
fn default_risk_threshold() -> f64 {
    0.2
}

/// The treatment of one column, resolved from its role and options.
#[derive(Debug, Clone, PartialEq)]
pub enum Treatment {
    /// Deleted from the output (identifier, financial, free text, id_code or link_code deletion).
    Delete,
    /// Replaced by a random keyed token whose key is destroyed after the run (A2).
    Token,
    /// Replaced by the release's re-keying function, or a random per-release key (A3).
    Rekey,
    /// Generalized by the named hierarchy at the level the search chooses (A5).
    Generalize {
        /// Hierarchy name.
        hierarchy: String,
    },
    /// Values rarer than `min_count` suppressed (`*`), numbers top/bottom-coded (A4).
    Rare {
        /// Values seen fewer times than this (in the table, or within the `group_by` group) become `*`.
        min_count: Option<u64>,
        /// Columns whose values define the groups; empty means the whole table.
        group_by: Vec<String>,
        /// Numbers above this become `>=top`.
        top: Option<f64>,
        /// Numbers below this become `<=bottom`.
        bottom: Option<f64>,
        /// With `min_count`: a rare value is first generalized up this named hierarchy to the
        /// lowest level where the rare values sharing its ancestor reach `min_count` (A4: rare
        /// diagnosis codes generalized); only what no level can gather is suppressed.
        hierarchy: Option<String>,
    },
    /// A date coarsened to the given granularity.
    Coarsen(DateLevel),
    /// A date moved by a random offset of 1 to `max_days` days (earlier or later) under a key
    /// destroyed after the run; with `by`, every record sharing that column's value (e.g. a
    /// patient's link code) moves by the same offset, so intervals within a patient survive.
    Shift {
        /// Largest offset in days (at least 1).
        max_days: u32,
        /// Column whose value selects the offset; `None`: an offset per record.
        by: Option<String>,
        /// Coarsening applied after the shift, if any.
        then: Option<DateLevel>,
    },
    /// Kept as is (keep, sensitive).
    Keep,
}

/// One column of the policy.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnPolicy {
    /// Column name as in the input.
    pub name: String,
    /// Its role.
    pub role: ColumnRole,
    /// What is done to it.
    pub treatment: Treatment,
}

/// A validated policy with its hierarchies loaded.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Policy name.
    pub name: String,
    /// Format version.
    pub version: u32,
    /// Columns in declaration order.
    pub columns: Vec<ColumnPolicy>,
    /// Privacy model.
    pub privacy: Privacy,
    /// Hierarchies by name.
    pub hierarchies: HashMap<String, Hierarchy>,
    /// Delimiter of CSV input (default `,`).
    pub input_delimiter: u8,
    /// SHA-256 (hex) of the canonical policy content and hierarchy files.
    pub hash: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    version: u32,
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    input: Option<RawInput>,
    #[serde(default)]
    paths: BTreeMap<String, String>,
    privacy: Privacy,
    #[serde(default)]
    hierarchies: BTreeMap<String, toml::Table>,
    columns: Vec<RawColumn>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInput {
    delimiter: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawColumn {
    name: String,
    role: Option<String>,
    hierarchy: Option<String>,
    treatment: Option<String>,
    min_count: Option<u64>,
    #[serde(default)]
    group_by: Vec<String>,
    top: Option<f64>,
    bottom: Option<f64>,
    coarsen: Option<String>,
    shift_days: Option<u32>,
    shift_by: Option<String>,
}

fn delimiter(subject: &str, s: &str) -> Result<u8> {
    match s.as_bytes() {
        [b] => Ok(*b),
        _ if s == "\\t" => Ok(b'\t'),
        _ => Err(DeidError::policy(subject, "delimiter must be one ASCII character")),
    }
}

/// Canonical text of a TOML value (shared with pseudonymization policies).
pub(crate) fn canonical_text(v: &toml::Value, out: &mut String) {
    canonical(v, out)
}

/// Canonical text of a TOML value: tables with sorted keys, no whitespace, numbers normalized.
fn canonical(v: &toml::Value, out: &mut String) {
    match v {
        toml::Value::Table(t) => {
            let mut keys: Vec<&String> = t.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(k).unwrap_or_default());
                out.push(':');
                canonical(&t[k], out);
            }
            out.push('}');
        }
        toml::Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(x, out);
            }
            out.push(']');
        }
        toml::Value::String(s) => out.push_str(&serde_json::to_string(s).unwrap_or_default()),
        toml::Value::Integer(i) => out.push_str(&i.to_string()),
        toml::Value::Float(f) => out.push_str(&format!("{f:?}")),
        toml::Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        toml::Value::Datetime(d) => out.push_str(&serde_json::to_string(&d.to_string()).unwrap_or_default()),
    }
}

fn parse_role(column: &str, s: &str) -> Result<ColumnRole> {
    ColumnRole::deserialize(toml::Value::String(s.to_owned())).map_err(|_| {
        DeidError::policy(
            format!("column {column}"),
            format!("unknown role {s:?} (rule: role is one of identifier, id_code, link_code, quasi_identifier, sensitive, rare, financial, free_text, date, keep)"),
        )
    })
}

impl Policy {
    /// Reads and validates a policy file; relative paths in it are relative to its directory.
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_with_paths(path, &BTreeMap::new())
    }

    /// Like [`Policy::load`], with `${name}` path variables overriding the policy's `[paths]`.
    pub fn load_with_paths(path: &Path, overrides: &BTreeMap<String, String>) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).map_err(|e| DeidError::Io { path: path.display().to_string(), source: e })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::from_toml(&text, &base, overrides)
    }

    /// Parses and validates policy TOML; `base` resolves relative hierarchy paths.
    pub fn from_toml(text: &str, base: &Path, overrides: &BTreeMap<String, String>) -> Result<Self> {
        let value: toml::Value =
            toml::from_str(text).map_err(|e| DeidError::policy("policy file", format!("not valid TOML: {e}")))?;
        let raw: RawPolicy =
            RawPolicy::deserialize(value.clone()).map_err(|e| DeidError::policy("policy file", e.to_string()))?;
        let mut canon = String::new();
        canonical(&value, &mut canon);
        let mut hasher = Sha256::new();
        hasher.update(canon.as_bytes());

        if !SUPPORTED_VERSIONS.contains(&raw.version) {
            return Err(DeidError::policy(
                "version",
                format!("version {} is not supported (rule: version 1)", raw.version),
            ));
        }
        let _ = raw.description;
        let input_delimiter = match raw.input.and_then(|i| i.delimiter) {
            Some(d) => delimiter("input.delimiter", &d)?,
            None => b',',
        };
        let p = &raw.privacy;
        if p.k < 2 {
            return Err(DeidError::policy("privacy.k", "k must be at least 2 for anonymization (rule: A5)"));
        }
        if !(0.0..=1.0).contains(&p.suppression_limit) {
            return Err(DeidError::policy("privacy.suppression_limit", "must be between 0 and 1"));
        }
        if !(p.sampling_fraction > 0.0 && p.sampling_fraction <= 1.0) {
            return Err(DeidError::policy("privacy.sampling_fraction", "must be in (0, 1]"));
        }

        let mut paths: BTreeMap<String, String> = raw.paths.clone();
        paths.extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
        let resolve = |s: &str| -> PathBuf {
            let mut s = s.to_owned();
            for (k, v) in &paths {
                s = s.replace(&format!("${{{k}}}"), v);
            }
            let p = PathBuf::from(s);
            if p.is_absolute() { p } else { base.join(p) }
        };

        let mut hierarchies = HashMap::new();
        for (name, table) in &raw.hierarchies {
            let mut table = table.clone();
            let missing = match table.remove("missing") {
                Some(v) => MissingRule::deserialize(v)
                    .map_err(|_| DeidError::hierarchy(name, "missing must be \"error\", \"suppress\" or \"star\""))?,
                None => MissingRule::default(),
            };
            let h = if let Some(file) = table.remove("file") {
                let file = file.as_str().ok_or_else(|| DeidError::hierarchy(name, "file must be a string"))?;
                let delim = match table.remove("delimiter") {
                    Some(d) => delimiter(&format!("hierarchy {name}"), d.as_str().unwrap_or(""))?,
                    None => b';',
                };
                if let Some(k) = table.keys().next() {
                    return Err(DeidError::hierarchy(name, format!("unknown key {k:?} for a file hierarchy")));
                }
                let path = resolve(file);
                let bytes = std::fs::read(&path).map_err(|e| {
                    DeidError::hierarchy(name, format!("cannot read hierarchy file {}: {e}", path.display()))
                })?;
                hasher.update(Sha256::digest(&bytes));
                let text = String::from_utf8(bytes).map_err(|_| DeidError::hierarchy(name, "file is not UTF-8"))?;
                Hierarchy::from_csv_str(name, &text, delim, missing)?
            } else if table.contains_key("builder") {
                let b = Builder::deserialize(toml::Value::Table(table))
                    .map_err(|e| DeidError::hierarchy(name, e.to_string()))?;
                Hierarchy::from_builder(name, b, missing)?
            } else {
                return Err(DeidError::hierarchy(name, "needs either file = \"...\" or builder = \"...\""));
            };
            hierarchies.insert(name.clone(), h);
        }

        let mut seen = HashSet::new();
        let mut columns = Vec::new();
        for c in &raw.columns {
            let subject = format!("column {}", c.name);
            if c.name.is_empty() {
                return Err(DeidError::policy("columns", "a column has an empty name"));
            }
            if !seen.insert(c.name.clone()) {
                return Err(DeidError::policy(&subject, "declared twice (rule: one entry per column)"));
            }
            let role = match &c.role {
                Some(r) => parse_role(&c.name, r)?,
                None => {
                    return Err(DeidError::policy(
                        &subject,
                        "has no role (rule: every column needs a role; none is kept silently)",
                    ));
                }
            };
            let t = c.treatment.as_deref();
            let forbid = |what: &str, present: bool| -> Result<()> {
                if present {
                    Err(DeidError::policy(&subject, format!("{what} is not allowed for role {role:?}")))
                } else {
                    Ok(())
                }
            };
            if role != ColumnRole::QuasiIdentifier && role != ColumnRole::Rare {
                forbid("hierarchy", c.hierarchy.is_some())?;
            }
            if role != ColumnRole::Rare {
                forbid(
                    "min_count/group_by/top/bottom",
                    c.min_count.is_some() || !c.group_by.is_empty() || c.top.is_some() || c.bottom.is_some(),
                )?;
            }
            if role != ColumnRole::Date {
                forbid(
                    "coarsen/shift_days/shift_by",
                    c.coarsen.is_some() || c.shift_days.is_some() || c.shift_by.is_some(),
                )?;
            }
            if t != Some("shift") && role == ColumnRole::Date {
                forbid(
                    "shift_days/shift_by without treatment = \"shift\"",
                    c.shift_days.is_some() || c.shift_by.is_some(),
                )?;
            }
            let bad_treatment = |allowed: &str| {
                DeidError::policy(
                    &subject,
                    format!("treatment {:?} not allowed for role {role:?} (rule: one of {allowed})", t.unwrap_or("")),
                )
            };
            let treatment = match role {
                ColumnRole::Identifier | ColumnRole::Financial | ColumnRole::FreeText => match t {
                    None | Some("delete") => Treatment::Delete,
                    _ => return Err(bad_treatment("delete")),
                },
                ColumnRole::IdCode => match t {
                    None | Some("delete") => Treatment::Delete,
                    Some("token") => Treatment::Token,
                    _ => return Err(bad_treatment("delete, token")),
                },
                ColumnRole::LinkCode => match t {
                    None | Some("rekey") => Treatment::Rekey,
                    Some("delete") => Treatment::Delete,
                    _ => return Err(bad_treatment("rekey, delete")),
                },
                ColumnRole::QuasiIdentifier => {
                    if t.is_some_and(|t| t != "generalize") {
                        return Err(bad_treatment("generalize"));
                    }
                    let h = c.hierarchy.clone().ok_or_else(|| {
                        DeidError::policy(&subject, "quasi_identifier needs hierarchy = \"name\" (rule: A5)")
                    })?;
                    if !hierarchies.contains_key(&h) {
                        return Err(DeidError::policy(
                            &subject,
                            format!("hierarchy {h:?} is not declared in [hierarchies]"),
                        ));
                    }
                    Treatment::Generalize { hierarchy: h }
                }
                ColumnRole::Sensitive | ColumnRole::Keep => match t {
                    None | Some("keep") => Treatment::Keep,
                    _ => return Err(bad_treatment("keep")),
                },
                ColumnRole::Rare => {
                    if t.is_some_and(|t| t != "suppress_rare") {
                        return Err(bad_treatment("suppress_rare"));
                    }
                    if c.min_count.is_none() && c.top.is_none() && c.bottom.is_none() {
                        return Err(DeidError::policy(&subject, "rare needs min_count, top or bottom (rule: A4)"));
                    }
                    if c.min_count == Some(0) {
                        return Err(DeidError::policy(&subject, "min_count must be at least 1"));
                    }
                    if let (Some(b), Some(tp)) = (c.bottom, c.top)
                        && b > tp
                    {
                        return Err(DeidError::policy(&subject, "bottom must not exceed top"));
                    }
                    if let Some(h) = &c.hierarchy {
                        if c.min_count.is_none() {
                            return Err(DeidError::policy(
                                &subject,
                                "a rare column's hierarchy needs min_count (rule: A4, rare values are generalized until they reach min_count)",
                            ));
                        }
                        if !hierarchies.contains_key(h) {
                            return Err(DeidError::policy(
                                &subject,
                                format!("hierarchy {h:?} is not declared in [hierarchies]"),
                            ));
                        }
                    }
                    Treatment::Rare {
                        min_count: c.min_count,
                        group_by: c.group_by.clone(),
                        top: c.top,
                        bottom: c.bottom,
                        hierarchy: c.hierarchy.clone(),
                    }
                }
                ColumnRole::Date => match (t, &c.coarsen) {
                    (Some("delete"), None) => Treatment::Delete,
                    (Some("shift"), coarsen) => {
                        let max_days = match c.shift_days {
                            Some(d) if (1..=36_500).contains(&d) => d,
                            Some(_) => {
                                return Err(DeidError::policy(&subject, "shift_days must be between 1 and 36500"));
                            }
                            None => {
                                return Err(DeidError::policy(&subject, "treatment \"shift\" needs shift_days = N"));
                            }
                        };
                        let then = coarsen
                            .as_ref()
                            .map(|l| {
                                DateLevel::deserialize(toml::Value::String(l.clone())).map_err(|_| {
                                    DeidError::policy(&subject, "coarsen must be month, quarter, half, year or decade")
                                })
                            })
                            .transpose()?;
                        Treatment::Shift { max_days, by: c.shift_by.clone(), then }
                    }
                    (None | Some("coarsen"), Some(l)) => {
                        Treatment::Coarsen(DateLevel::deserialize(toml::Value::String(l.clone())).map_err(|_| {
                            DeidError::policy(&subject, "coarsen must be month, quarter, half, year or decade")
                        })?)
                    }
                    _ => {
                        return Err(DeidError::policy(
                            &subject,
                            "date needs coarsen = \"month\"|..., treatment = \"shift\" with shift_days, or treatment = \"delete\"",
                        ));
                    }
                },
            };
            columns.push(ColumnPolicy { name: c.name.clone(), role, treatment });
        }
        for c in &columns {
            if let Treatment::Shift { by: Some(b), .. } = &c.treatment
                && (b == &c.name || !seen.contains(b))
            {
                return Err(DeidError::policy(
                    format!("column {}", c.name),
                    format!("shift_by column {b:?} is not another declared column"),
                ));
            }
            if let Treatment::Rare { group_by, .. } = &c.treatment {
                for g in group_by {
                    if g == &c.name || !seen.contains(g) {
                        return Err(DeidError::policy(
                            format!("column {}", c.name),
                            format!("group_by column {g:?} is not another declared column"),
                        ));
                    }
                }
            }
        }
        let sensitive = |col: &str, what: &str| -> Result<()> {
            match columns.iter().find(|c| c.name == col) {
                Some(c) if c.role == ColumnRole::Sensitive => Ok(()),
                _ => Err(DeidError::policy(
                    format!("privacy.{what}"),
                    format!("column {col:?} must be declared with role sensitive"),
                )),
            }
        };
        if let Some(l) = &p.l_diversity {
            sensitive(&l.column, "l_diversity")?;
            if l.l < 1.0 {
                return Err(DeidError::policy("privacy.l_diversity", "l must be at least 1"));
            }
        }
        if let Some(t) = &p.t_closeness {
            sensitive(&t.column, "t_closeness")?;
            if !(t.t > 0.0 && t.t <= 1.0) {
                return Err(DeidError::policy("privacy.t_closeness", "t must be in (0, 1]"));
            }
        }
        Ok(Policy {
            name: raw.name,
            version: raw.version,
            columns,
            privacy: raw.privacy,
            hierarchies,
            input_delimiter,
            hash: hex::encode(hasher.finalize()),
        })
    }

    /// The quasi-identifier columns with their hierarchies, in declaration order.
    pub fn quasi_identifiers(&self) -> Vec<(&str, &Hierarchy)> {
        self.columns
            .iter()
            .filter_map(|c| match &c.treatment {
                Treatment::Generalize { hierarchy } => Some((c.name.as_str(), &self.hierarchies[hierarchy])),
                _ => None,
            })
            .collect()
    }

    /// The policy entry of a column.
    pub fn column(&self, name: &str) -> Option<&ColumnPolicy> {
        self.columns.iter().find(|c| c.name == name)
    }
}
