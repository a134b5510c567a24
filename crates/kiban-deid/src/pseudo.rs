//! Pseudonymization (仮名加工, S1–S3, S5, S6): the same streaming engine as anonymization with a
//! different policy and different checks. A pseudonymization policy must meet S1–S3 — names
//! deleted or replaced by irreversible tokens, addresses reduced (street numbers removed, the level
//! set by the area's population), birth dates kept or reduced to the year (default: year),
//! identification codes deleted or replaced by keyed tokens, financial descriptions deleted — and
//! keeps clinical values. A policy that would keep a name, an id code or a financial column is
//! refused with the rule it breaks. Kept columns are still scanned: a card number (Luhn), a My
//! Number (check digit) or a bank account found inside any kept value is removed (S2, S3).
//!
//! Tokens are keyed BLAKE3 under a caller-supplied per-release key that is never written to the
//! output, the report, an error or a log; no token-to-value mapping is stored anywhere.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, ArrayRef, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use kiban_model::dataset::ColumnRole;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{DeidError, Result};
use crate::io::{Input, Output, Sink, file_sha256, for_each_batch, strings};
use crate::text::{DocContext, KnownIdentity, Tag, TextConfig, deidentify_with, find_financial};

/// The per-release key of tokens and date offsets. Never printed, serialized or stored by this crate;
/// wiped on drop. Tokens are keyed BLAKE3 (the identity crate's token scheme v2): a 32-byte key is
/// derived from the release key, a per-column key from that, and each token is the keyed hash of the
/// value under its column's key.
pub struct ReleaseKey(Vec<u8>, [u8; 32]);

/// The key-derivation context of release keys (BLAKE3 `derive_key`).
const KDF_CONTEXT: &str = "kiban 2026-11 release token key v2";

impl ReleaseKey {
    /// Wraps key bytes; at least 32 bytes.
    pub fn new(bytes: Vec<u8>) -> Result<Self> {
        if bytes.len() < 32 {
            return Err(DeidError::policy(
                "release key",
                "must be at least 32 bytes (rule: S2 keyed irreversible tokens)",
            ));
        }
        let k = blake3::derive_key(KDF_CONTEXT, &bytes);
        Ok(ReleaseKey(bytes, k))
    }
    /// A fresh random key (for a release whose tokens never need to be looked up again).
    pub fn random() -> Self {
        use rand::Rng;
        let mut k = vec![0u8; 32];
        rand::rng().fill_bytes(&mut k);
        Self::new(k).expect("32 bytes")
    }
    fn mac(&self, domain: &str, value: &str) -> [u8; 32] {
        *blake3::keyed_hash(&self.column_mac(domain), value.as_bytes()).as_bytes()
    }
    /// The token of `value` in `column`: 32 hex digits of BLAKE3(key = column key, value), where the
    /// column key is BLAKE3(key = release key, column).
    pub fn token(&self, column: &str, value: &str) -> String {
        hex::encode(&self.mac(column, value)[..16])
    }
    /// The column's key, computed once per column (same tokens as [`Self::token`]).
    fn column_mac(&self, column: &str) -> [u8; 32] {
        *blake3::keyed_hash(&self.1, column.as_bytes()).as_bytes()
    }
    /// The date offset (days, −180..=180, never 0) of a person under this release.
    pub fn date_offset(&self, person: &str) -> i64 {
        offset_from_mac(&self.mac("\u{1}date-offset", person))
    }
}

impl std::fmt::Debug for ReleaseKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReleaseKey(<redacted>)")
    }
}

impl Drop for ReleaseKey {
    fn drop(&mut self) {
        self.0.iter_mut().for_each(|b| *b = 0);
        self.1 = [0; 32];
        std::hint::black_box((&self.0, &self.1));
    }
}

/// What is done to one column in a pseudonymized release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PseudoTreatment {
    /// Removed from the output.
    Delete,
    /// Replaced by the keyed token of the release (S1, S2).
    Token,
    /// Address reduced to the municipality or the prefecture by the area's population (S1).
    ReduceAddress,
    /// A date reduced to its year (S1, birth dates by default).
    Year,
    /// A date moved by the person's offset of this release (intervals kept).
    Shift,
    /// Passed through the free-text de-identifier (S5).
    Deidentify,
    /// Kept, with financial details and My Numbers removed from inside the values (S2, S3).
    Keep,
}

/// One column of a pseudonymization policy.
#[derive(Debug, Clone)]
pub struct PseudoColumn {
    /// Column name.
    pub name: String,
    /// Its role.
    pub role: ColumnRole,
    /// Its treatment.
    pub treatment: PseudoTreatment,
}

/// A validated pseudonymization policy.
#[derive(Debug, Clone)]
pub struct PseudoPolicy {
    /// Policy name.
    pub name: String,
    /// Format version.
    pub version: u32,
    /// Columns.
    pub columns: Vec<PseudoColumn>,
    /// Municipalities with fewer inhabitants than this are reduced to the prefecture.
    pub small_area_population: u64,
    /// Population per (prefecture, municipality), supplied by the operator.
    pub population: HashMap<(String, String), u64>,
    /// Column whose value identifies the person (date offsets are per person).
    pub person_column: Option<String>,
    /// CSV delimiter.
    pub input_delimiter: u8,
    /// SHA-256 of the canonical policy and the population table.
    pub hash: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPseudo {
    version: u32,
    name: String,
    kind: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    address: Option<RawAddress>,
    #[serde(default)]
    person_column: Option<String>,
    #[serde(default)]
    delimiter: Option<String>,
    columns: Vec<RawCol>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAddress {
    population_table: Option<String>,
    #[serde(default = "default_small_area")]
    small_area_population: u64,
}

fn default_small_area() -> u64 {
    50_000
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCol {
    name: String,
    role: Option<String>,
    treatment: Option<String>,
}

/// Column-name cues of descriptions that S1–S3 do not allow to be kept.
const S1_CUES: [&str; 14] = [
    "name",
    "氏名",
    "名前",
    "kana",
    "カナ",
    "address",
    "住所",
    "street",
    "phone",
    "tel",
    "電話",
    "mail",
    "fax",
    "連絡先",
];
const S2_CUES: [&str; 12] = [
    "insurer",
    "保険者",
    "card_symbol",
    "card_number",
    "card_branch",
    "my_number",
    "mynumber",
    "individual_number",
    "個人番号",
    "被保険者",
    "記号",
    "passport",
];
const S3_CUES: [&str; 7] = ["credit", "bank", "account", "口座", "クレジット", "iban", "カード番号"];

fn cue(name: &str, cues: &[&str]) -> bool {
    let n = name.to_lowercase();
    cues.iter().any(|c| n.contains(c))
}

impl PseudoPolicy {
    /// Reads and validates a pseudonymization policy; relative paths are relative to its directory.
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).map_err(|e| DeidError::Io { path: path.display().to_string(), source: e })?;
        Self::from_toml(&text, path.parent().unwrap_or(Path::new(".")))
    }

    /// Parses and validates policy TOML; refuses a policy that does not meet S1–S3.
    pub fn from_toml(text: &str, base: &Path) -> Result<Self> {
        let value: toml::Value =
            toml::from_str(text).map_err(|e| DeidError::policy("policy file", format!("not valid TOML: {e}")))?;
        let raw = RawPseudo::deserialize(value.clone()).map_err(|e| DeidError::policy("policy file", e.to_string()))?;
        if raw.version != 1 {
            return Err(DeidError::policy(
                "version",
                format!("version {} is not supported (rule: version 1)", raw.version),
            ));
        }
        if raw.kind != "pseudonymization" {
            return Err(DeidError::policy(
                "kind",
                "must be \"pseudonymization\" (anonymization policies use kiban anonymize)",
            ));
        }
        let _ = raw.description;
        let mut canon = String::new();
        crate::policy::canonical_text(&value, &mut canon);
        let mut hasher = Sha256::new();
        hasher.update(canon.as_bytes());
        let (mut population, mut small) = (HashMap::new(), default_small_area());
        if let Some(a) = &raw.address {
            small = a.small_area_population;
            if let Some(t) = &a.population_table {
                let p: PathBuf = if Path::new(t).is_absolute() { PathBuf::from(t) } else { base.join(t) };
                let bytes =
                    std::fs::read(&p).map_err(|e| DeidError::Io { path: p.display().to_string(), source: e })?;
                hasher.update(Sha256::digest(&bytes));
                let s = String::from_utf8(bytes)
                    .map_err(|_| DeidError::policy("address.population_table", "file is not UTF-8"))?;
                population = parse_population(&s)?;
            }
        }
        let delim = match raw.delimiter.as_deref() {
            None => b',',
            Some("\\t") => b'\t',
            Some(d) if d.len() == 1 => d.as_bytes()[0],
            Some(_) => return Err(DeidError::policy("delimiter", "must be one ASCII character")),
        };
        let mut seen = HashSet::new();
        let mut columns = Vec::new();
        for c in &raw.columns {
            let subject = format!("column {}", c.name);
            if !seen.insert(c.name.clone()) {
                return Err(DeidError::policy(&subject, "declared twice (rule: one entry per column)"));
            }
            let Some(role_s) = &c.role else {
                return Err(DeidError::policy(&subject, "has no role (rule: every column needs a role)"));
            };
            let role = ColumnRole::deserialize(toml::Value::String(role_s.clone()))
                .map_err(|_| DeidError::policy(&subject, format!("unknown role {role_s:?}")))?;
            let t = c.treatment.as_deref();
            let bad = |allowed: &str, rule: &str| {
                DeidError::policy(
                    &subject,
                    format!(
                        "treatment {:?} not allowed for role {role_s} (rule: {rule}; one of {allowed})",
                        t.unwrap_or("")
                    ),
                )
            };
            use PseudoTreatment as P;
            let treatment = match role {
                ColumnRole::Identifier => match t {
                    None | Some("delete") => P::Delete,
                    Some("token") => P::Token,
                    Some("reduce_address") => P::ReduceAddress,
                    _ => return Err(bad("delete, token, reduce_address", "S1")),
                },
                ColumnRole::IdCode => match t {
                    None | Some("delete") => P::Delete,
                    Some("token") => P::Token,
                    _ => return Err(bad("delete, token", "S2")),
                },
                ColumnRole::LinkCode => match t {
                    None | Some("token") => P::Token,
                    Some("delete") => P::Delete,
                    _ => return Err(bad("token, delete", "S2")),
                },
                ColumnRole::Financial => match t {
                    None | Some("delete") => P::Delete,
                    _ => return Err(bad("delete", "S3")),
                },
                ColumnRole::FreeText => match t {
                    None | Some("deidentify") => P::Deidentify,
                    Some("delete") => P::Delete,
                    _ => return Err(bad("deidentify, delete", "S5")),
                },
                ColumnRole::Date => match t {
                    None | Some("year") => P::Year,
                    Some("keep") => P::Keep,
                    Some("shift") => P::Shift,
                    Some("delete") => P::Delete,
                    _ => return Err(bad("year, keep, shift, delete", "S1")),
                },
                ColumnRole::QuasiIdentifier | ColumnRole::Sensitive | ColumnRole::Rare | ColumnRole::Keep => match t {
                    None | Some("keep") => P::Keep,
                    Some("delete") => P::Delete,
                    Some("year") => P::Year,
                    _ => return Err(bad("keep, delete, year", "S6")),
                },
            };
            if treatment == P::Keep || treatment == P::Year {
                let rule = if cue(&c.name, &S3_CUES) {
                    Some(("S3", "would keep a financial description (card, bank account); delete it"))
                } else if cue(&c.name, &S2_CUES) {
                    Some((
                        "S2",
                        "would keep a personal identification code; delete it or use role id_code with treatment token",
                    ))
                } else if cue(&c.name, &S1_CUES) && !c.name.to_lowercase().contains("diagnosis") {
                    Some((
                        "S1",
                        "would keep a description that identifies a person (name, address, phone); delete or tokenize it",
                    ))
                } else {
                    None
                };
                if let Some((id, why)) = rule {
                    return Err(DeidError::policy(&subject, format!("role {role_s} {why} (rule: {id})")));
                }
            }
            columns.push(PseudoColumn { name: c.name.clone(), role, treatment });
        }
        if let Some(p) = &raw.person_column
            && !seen.contains(p)
        {
            return Err(DeidError::policy("person_column", format!("{p:?} is not a declared column")));
        }
        Ok(PseudoPolicy {
            name: raw.name,
            version: raw.version,
            columns,
            small_area_population: small,
            population,
            person_column: raw.person_column,
            input_delimiter: delim,
            hash: hex::encode(hasher.finalize()),
        })
    }

    fn column(&self, name: &str) -> Option<&PseudoColumn> {
        self.columns.iter().find(|c| c.name == name)
    }
}

fn parse_population(s: &str) -> Result<HashMap<(String, String), u64>> {
    let mut m = HashMap::new();
    for (i, line) in s.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with("prefecture") {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        let bad = || {
            DeidError::policy(
                "address.population_table",
                format!("line {}: expected prefecture<TAB>municipality<TAB>population", i + 1),
            )
        };
        if f.len() != 3 {
            return Err(bad());
        }
        let n: u64 = f[2].trim().replace(',', "").parse().map_err(|_| bad())?;
        m.insert((f[0].trim().to_owned(), f[1].trim().to_owned()), n);
    }
    Ok(m)
}

/// How an address was reduced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AddressLevel {
    /// Prefecture and municipality kept (populous municipality).
    Municipality,
    /// Prefecture only (small or unknown municipality).
    Prefecture,
    /// Not recognized: removed.
    Removed,
}

pub(crate) fn prefectures() -> &'static [(String, Vec<String>)] {
    static P: std::sync::OnceLock<Vec<(String, Vec<String>)>> = std::sync::OnceLock::new();
    P.get_or_init(|| {
        let mut v: Vec<(String, Vec<String>)> = Vec::new();
        for line in include_str!("../../kiban-model/data/municipalities.tsv").lines().skip(1) {
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() < 5 {
                continue;
            }
            if v.last().is_none_or(|l| l.0 != f[1]) {
                v.push((f[1].to_owned(), Vec::new()));
            }
            if let Some(l) = v.last_mut() {
                l.1.push(f[3].to_owned());
                if let Some(p) = f[3].find('市')
                    && p + 3 < f[3].len()
                {
                    l.1.push(f[3][..p + 3].to_owned());
                }
            }
        }
        for p in &mut v {
            p.1.sort_by_key(|m| std::cmp::Reverse(m.len()));
            p.1.dedup();
        }
        v
    })
}

/// Look-up tables over [`prefectures`]: each prefecture's index by name with the distinct name
/// lengths, and per prefecture its municipality names as a set with the longest one's length.
struct AreaIndex {
    prefecture: FastMap<&'static str, usize>,
    prefecture_lengths: Vec<usize>,
    municipalities: Vec<(HashSet<&'static str, foldhash::fast::RandomState>, usize)>,
}

fn area_index() -> &'static AreaIndex {
    static I: std::sync::OnceLock<AreaIndex> = std::sync::OnceLock::new();
    I.get_or_init(|| {
        let ps = prefectures();
        let mut prefecture: FastMap<&'static str, usize> = FastMap::default();
        for (i, (p, _)) in ps.iter().enumerate() {
            prefecture.entry(p.as_str()).or_insert(i);
        }
        let mut prefecture_lengths: Vec<usize> = ps.iter().map(|(p, _)| p.len()).collect();
        prefecture_lengths.sort_unstable();
        prefecture_lengths.dedup();
        let municipalities = ps
            .iter()
            .map(|(_, ms)| (ms.iter().map(String::as_str).collect(), ms.iter().map(String::len).max().unwrap_or(0)))
            .collect();
        AreaIndex { prefecture, prefecture_lengths, municipalities }
    })
}

/// The first prefecture (in list order) that `a` starts with: one look-up per distinct name length
/// instead of a comparison per prefecture.
fn first_prefecture(a: &str) -> Option<usize> {
    let ix = area_index();
    ix.prefecture_lengths
        .iter()
        .filter(|&&n| a.is_char_boundary(n) && n <= a.len())
        .filter_map(|&n| ix.prefecture.get(&a[..n]).copied())
        .min()
}

/// The longest municipality of prefecture `p` that `rest` starts with — the first match of the list,
/// which is sorted longest first — found by looking up `rest`'s prefixes from the longest possible.
fn longest_municipality(p: usize, rest: &str) -> Option<&'static str> {
    let (set, longest) = &area_index().municipalities[p];
    let mut end = rest.len().min(*longest);
    loop {
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        if let Some(m) = set.get(&rest[..end]) {
            return Some(m);
        }
        if end == 0 {
            return None;
        }
        end -= 1;
    }
}

/// Reduces an address to the municipality or prefecture (S1): street numbers are always removed;
/// a municipality whose population (from `population`) is below `small` — or unknown — is reduced
/// to the prefecture.
pub fn reduce_address(addr: &str, population: &HashMap<(String, String), u64>, small: u64) -> (String, AddressLevel) {
    let a: std::borrow::Cow<'_, str> = if addr.contains(char::is_whitespace) {
        addr.chars().filter(|c| !c.is_whitespace()).collect::<String>().into()
    } else {
        addr.into()
    };
    let a = a.strip_prefix('〒').map_or(&*a, |r| r.trim_start_matches(|c: char| c.is_ascii_digit() || c == '-'));
    if let Some(p) = first_prefecture(a) {
        let pref = &prefectures()[p].0;
        let rest = &a[pref.len()..];
        if let Some(m) = longest_municipality(p, rest) {
            let pop = population.get(&(pref.clone(), m.to_owned())).copied().unwrap_or(0);
            if pop >= small {
                return (format!("{pref}{m}"), AddressLevel::Municipality);
            }
        }
        return (pref.clone(), AddressLevel::Prefecture);
    }
    // No prefecture: find the municipality anywhere in the list.
    for (pref, munis) in prefectures() {
        if let Some(m) = munis.iter().find(|m| a.starts_with(m.as_str()) && m.chars().count() >= 3) {
            let pop = population.get(&(pref.clone(), m.clone())).copied().unwrap_or(0);
            return if pop >= small {
                (format!("{pref}{m}"), AddressLevel::Municipality)
            } else {
                (pref.clone(), AddressLevel::Prefecture)
            };
        }
    }
    ("*".to_owned(), AddressLevel::Removed)
}

/// The year of a date written as ISO, `YYYY/MM/DD`, `YYYYMMDD` or 和暦; `None` when unreadable.
pub fn date_year(s: &str) -> Option<i32> {
    use chrono::Datelike;
    let s = s.trim();
    if let Some((d, _)) = iso_date(s) {
        return Some(d.year());
    }
    if let Ok(w) = kiban_model::wareki::WarekiDate::parse(s) {
        return Some(w.date().year());
    }
    for f in ["%Y-%m-%d", "%Y/%m/%d", "%Y%m%d", "%Y年%m月%d日"] {
        if let Ok(d) = chrono::NaiveDate::parse_from_str(s, f) {
            return Some(d.year());
        }
    }
    None
}

/// `YYYY-MM-DD`, `YYYY/MM/DD` or `YYYYMMDD` read without a format parser (the common case of
/// structured columns), with its separator.
fn iso_date(s: &str) -> Option<(chrono::NaiveDate, Option<u8>)> {
    let b = s.as_bytes();
    let num = |x: &[u8]| x.iter().try_fold(0u32, |a, &c| c.is_ascii_digit().then(|| a * 10 + (c - b'0') as u32));
    let (y, m, d, sep) = match b.len() {
        10 if (b[4] == b'-' || b[4] == b'/') && b[7] == b[4] => {
            (num(&b[..4])?, num(&b[5..7])?, num(&b[8..])?, Some(b[4]))
        }
        8 => (num(&b[..4])?, num(&b[4..6])?, num(&b[6..])?, None),
        _ => return None,
    };
    Some((chrono::NaiveDate::from_ymd_opt(y as i32, m, d)?, sep))
}

/// Writes `d` as `YYYY<sep>MM<sep>DD` into `out`.
fn write_iso(out: &mut String, d: chrono::NaiveDate, sep: u8) {
    use chrono::Datelike;
    let (y, m, dd) = (d.year(), d.month(), d.day());
    if !(0..=9999).contains(&y) {
        out.push_str(&d.format("%Y-%m-%d").to_string());
        return;
    }
    let y = y as u32;
    let bytes = [
        b'0' + (y / 1000) as u8,
        b'0' + (y / 100 % 10) as u8,
        b'0' + (y / 10 % 10) as u8,
        b'0' + (y % 10) as u8,
        sep,
        b'0' + (m / 10) as u8,
        b'0' + (m % 10) as u8,
        sep,
        b'0' + (dd / 10) as u8,
        b'0' + (dd % 10) as u8,
    ];
    out.push_str(std::str::from_utf8(&bytes).expect("ASCII digits and separator"));
}

/// Moves a date by `days` into `out`, in the form it was written; false when unreadable.
fn shift_date_into(s: &str, days: i64, out: &mut String) -> bool {
    if let Some(x) = shift_iso_fast(s.as_bytes(), days) {
        out.push_str(std::str::from_utf8(&x).expect("ASCII digits and separator"));
        return true;
    }
    let s = s.trim();
    if let Some((d, Some(sep))) = iso_date(s) {
        write_iso(out, d + chrono::Duration::days(days), sep);
        return true;
    }
    match shift_date(s, days) {
        Some(x) => {
            out.push_str(&x);
            true
        }
        None => false,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number (inverse of [`days_from_civil`]) for dates from 0000-03-01 on; unsigned
/// 32-bit arithmetic so that every division by a constant is a multiplication.
fn civil_from_days(z: i64) -> Option<(i64, u32, u32)> {
    let z = u32::try_from(z + 719_468).ok()?;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    Some(((yoe + era * 400) as i64 + (m <= 2) as i64, m, d))
}

/// First year of [`date_table`].
const TABLE_FROM_YEAR: i64 = 1900;
/// Years in [`date_table`].
const TABLE_YEARS: i64 = 200;
/// Days before each month's first in a common year.
const CUM_DAYS: [i64; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];

/// Day numbers of each year's 1 January and the `YYYY-MM-DD` text of every day, for the years from
/// [`TABLE_FROM_YEAR`] on (about 0.7 MB, built once).
struct DateTable {
    year_start: Vec<i64>,
    first: i64,
    dates: Vec<[u8; 10]>,
}

fn date_table() -> &'static DateTable {
    static T: std::sync::OnceLock<DateTable> = std::sync::OnceLock::new();
    T.get_or_init(|| {
        let year_start: Vec<i64> = (0..TABLE_YEARS).map(|k| days_from_civil(TABLE_FROM_YEAR + k, 1, 1)).collect();
        let (first, last) = (year_start[0], days_from_civil(TABLE_FROM_YEAR + TABLE_YEARS, 1, 1));
        let dates = (first..last)
            .map(|z| {
                let (y, m, d) = civil_from_days(z).expect("years from 1900");
                let y = y as u32;
                [
                    b'0' + (y / 1000) as u8,
                    b'0' + (y / 100 % 10) as u8,
                    b'0' + (y / 10 % 10) as u8,
                    b'0' + (y % 10) as u8,
                    b'-',
                    b'0' + (m / 10) as u8,
                    b'0' + (m % 10) as u8,
                    b'-',
                    b'0' + (d / 10) as u8,
                    b'0' + (d % 10) as u8,
                ]
            })
            .collect();
        DateTable { year_start, first, dates }
    })
}

/// `YYYY-MM-DD` or `YYYY/MM/DD` moved by `days` with integer arithmetic only (the common case of a
/// structured date column); `None` for anything else, which takes the general path.
fn shift_iso_fast(b: &[u8], days: i64) -> Option<[u8; 10]> {
    if b.len() != 10 || !(b[4] == b'-' || b[4] == b'/') || b[7] != b[4] {
        return None;
    }
    let num = |x: &[u8]| x.iter().try_fold(0u32, |a, &c| c.is_ascii_digit().then(|| a * 10 + (c - b'0') as u32));
    let (y, m, d) = (num(&b[..4])?, num(&b[5..7])?, num(&b[8..])?);
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let dim = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if d == 0 || d > dim {
        return None;
    }
    // Day numbers and dates of the table's years are looked up rather than computed (a claims
    // table shifts every row's service date).
    let t = date_table();
    let k = y as i64 - TABLE_FROM_YEAR;
    let z = if (0..TABLE_YEARS).contains(&k) {
        t.year_start[k as usize] + CUM_DAYS[m as usize - 1] + (leap && m > 2) as i64 + d as i64 - 1
    } else {
        days_from_civil(y as i64, m, d)
    } + days;
    if let Some(out) = usize::try_from(z - t.first).ok().and_then(|i| t.dates.get(i)) {
        let mut out = *out;
        (out[4], out[7]) = (b[4], b[4]);
        return Some(out);
    }
    let (y, m, d) = civil_from_days(z)?;
    if !(0..=9999).contains(&y) {
        return None;
    }
    let y = y as u32;
    let sep = b[4];
    Some([
        b'0' + (y / 1000) as u8,
        b'0' + (y / 100 % 10) as u8,
        b'0' + (y / 10 % 10) as u8,
        b'0' + (y % 10) as u8,
        sep,
        b'0' + (m / 10) as u8,
        b'0' + (m % 10) as u8,
        sep,
        b'0' + (d / 10) as u8,
        b'0' + (d % 10) as u8,
    ])
}

fn shift_date(s: &str, days: i64) -> Option<String> {
    let s = s.trim();
    for f in ["%Y-%m-%d", "%Y/%m/%d"] {
        if let Ok(d) = chrono::NaiveDate::parse_from_str(s, f) {
            return Some((d + chrono::Duration::days(days)).format(f).to_string());
        }
    }
    kiban_model::wareki::WarekiDate::parse(s)
        .ok()
        .map(|w| (w.date() + chrono::Duration::days(days)).format("%Y-%m-%d").to_string())
}

/// Options of a pseudonymization run.
pub struct PseudoOptions {
    /// The per-release key of tokens and date offsets (caller-supplied, never stored).
    pub key: ReleaseKey,
    /// Text replacement per tag for free-text columns.
    pub text: TextConfig,
    /// The identity of each person (keyed by the policy's person column value) from the identity
    /// vault: a person's own name, address and phone are always removed from their free text.
    pub identities: HashMap<String, KnownIdentity>,
}

impl PseudoOptions {
    /// Options with the pseudonymization defaults for text.
    pub fn new(key: ReleaseKey) -> Self {
        PseudoOptions { key, text: TextConfig::pseudonymization(), identities: HashMap::new() }
    }
}

/// The identities of an identity table (the canonical `patients` table of a conversion, or any
/// table with these columns): `id_column` keys them; `name_kanji`, `name_kana`, `address` and
/// `phone` are read when present. A table without `id_column` is refused, naming it.
pub fn identities_from(input: &Input, id_column: &str) -> Result<HashMap<String, KnownIdentity>> {
    let mut out = HashMap::new();
    for_each_batch(input, b',', |b| {
        let schema = b.schema();
        let id = schema.index_of(id_column).map_err(|_| DeidError::Schema {
            column: id_column.to_owned(),
            rule: "is missing from the identity table (rule: identities are keyed by the person column)".into(),
        })?;
        let col = |n: &str| schema.index_of(n).ok().map(|i| strings(b, i));
        let (kanji, kana, addr, phone) = (col("name_kanji"), col("name_kana"), col("address"), col("phone"));
        let ids = strings(b, id);
        let get = |a: Option<&arrow::array::StringArray>, r: usize| {
            a.filter(|a| a.is_valid(r)).map_or(String::new(), |a| a.value(r).to_owned())
        };
        for r in 0..b.num_rows() {
            if !ids.is_valid(r) {
                continue;
            }
            let k = KnownIdentity::new(&get(kanji, r), &get(kana, r), &get(addr, r), &get(phone, r));
            if !k.is_empty() {
                out.insert(ids.value(r).to_owned(), k);
            }
        }
        Ok(())
    })?;
    Ok(out)
}

/// What was done to one column.
#[derive(Debug, Clone, Serialize)]
pub struct PseudoColumnReport {
    /// Column.
    pub name: String,
    /// Role.
    pub role: ColumnRole,
    /// Treatment.
    pub treatment: PseudoTreatment,
    /// Cells changed.
    pub changed: u64,
    /// Spans removed from free text per tag, or financial/id findings in kept columns.
    pub findings: BTreeMap<String, u64>,
}

/// The processing report of a pseudonymization run: what was done, never a key or a mapping.
#[derive(Debug, Clone, Serialize)]
pub struct PseudoReport {
    /// Engine and version.
    pub engine: String,
    /// Policy name.
    pub policy_name: String,
    /// Policy hash.
    pub policy_hash: String,
    /// Rules the policy was checked against.
    pub checks: Vec<String>,
    /// SHA-256 (hex) of the input file, or `blake3:<hex>` of in-memory batches (column by column).
    pub input_sha256: String,
    /// SHA-256 (hex) of the output file, or `blake3:<hex>` of in-memory batches (column by column).
    pub output_sha256: String,
    /// Records read.
    pub records_in: u64,
    /// Records written.
    pub records_out: u64,
    /// Addresses per reduction level.
    pub address_levels: BTreeMap<String, u64>,
    /// Per-column actions.
    pub columns: Vec<PseudoColumnReport>,
    /// Wall time.
    pub millis: f64,
}

/// The result of a run.
#[derive(Debug)]
pub struct PseudoOutcome {
    /// The report.
    pub report: PseudoReport,
    /// Output batches when the output is memory.
    pub batches: Vec<RecordBatch>,
}

/// Pseudonymizes `input` under `policy` into `output` (S1–S3, S5, S6).
pub fn pseudonymize(
    policy: &PseudoPolicy,
    input: &Input,
    output: &Output,
    opts: &PseudoOptions,
) -> Result<PseudoOutcome> {
    run(policy, input, output, opts, true)
}

/// [`pseudonymize`] for a caller that records the input and output digests itself (a release: its
/// manifest names the source manifest's SHA-256 and every output part's): the BLAKE3 digests of
/// in-memory input and output are not computed, and the report's `input_sha256`/`output_sha256`
/// are left empty for them (a file's SHA-256 still is computed).
pub fn pseudonymize_digested_by_caller(
    policy: &PseudoPolicy,
    input: &Input,
    output: &Output,
    opts: &PseudoOptions,
) -> Result<PseudoOutcome> {
    run(policy, input, output, opts, false)
}

fn run(
    policy: &PseudoPolicy,
    input: &Input,
    output: &Output,
    opts: &PseudoOptions,
    memory_digests: bool,
) -> Result<PseudoOutcome> {
    let started = Instant::now();
    let mut sink: Option<Sink> = None;
    let mut out_schema: Option<Arc<Schema>> = None;
    let mut kept: Vec<usize> = Vec::new();
    let mut person_idx: Option<usize> = None;
    let mut reports: Vec<PseudoColumnReport> = policy
        .columns
        .iter()
        .map(|c| PseudoColumnReport {
            name: c.name.clone(),
            role: c.role,
            treatment: c.treatment,
            changed: 0,
            findings: BTreeMap::new(),
        })
        .collect();
    let col_pos: HashMap<&str, usize> = policy.columns.iter().enumerate().map(|(i, c)| (c.name.as_str(), i)).collect();
    let mut levels: BTreeMap<String, u64> = BTreeMap::new();
    // Reduced addresses for the whole run (a person's address recurs on every claim line), bounded.
    let mut address_cache: FastMap<String, usize> = FastMap::default();
    let mut reduced: Vec<(String, AddressLevel)> = Vec::new();
    let (mut records_in, mut records_out) = (0u64, 0u64);
    let mut in_hash = blake3::Hasher::new();
    let mut out_hash = blake3::Hasher::new();
    // Per-row lengths of variable-width columns for the digests, reused by every column and batch.
    let mut scratch: Vec<u8> = Vec::new();
    let digest_in = matches!(input, Input::Batches(_) | Input::Stream(_)) && memory_digests;
    let digest_out = matches!(output, Output::Memory | Output::Stream(_)) && memory_digests;
    for_each_batch(input, policy.input_delimiter, |batch| {
        let schema = batch.schema();
        if sink.is_none() {
            for f in schema.fields() {
                if policy.column(f.name()).is_none() {
                    return Err(DeidError::Schema {
                        column: f.name().clone(),
                        rule: "has no role in the policy (rule: every column needs a role; none is kept silently)"
                            .into(),
                    });
                }
            }
            for c in &policy.columns {
                if schema.index_of(&c.name).is_err() {
                    return Err(DeidError::Schema {
                        column: c.name.clone(),
                        rule: "is declared in the policy but missing from the input".into(),
                    });
                }
            }
            kept = (0..schema.fields().len())
                .filter(|&i| {
                    policy.column(schema.field(i).name()).is_some_and(|c| c.treatment != PseudoTreatment::Delete)
                })
                .collect();
            person_idx = policy.person_column.as_deref().and_then(|p| schema.index_of(p).ok());
            let s = Arc::new(Schema::new(
                kept.iter().map(|&i| Field::new(schema.field(i).name(), DataType::Utf8, true)).collect::<Vec<_>>(),
            ));
            sink = Some(Sink::open(output, s.clone())?);
            out_schema = Some(s);
        }
        // Column digests of in-memory input, each computed just before its column is transformed
        // (so the transformation reads it from cache) and fed in column order after the batch; a
        // column passed through unchanged reuses its digest for the output.
        let mut in_digests: Vec<Option<[u8; 32]>> = vec![None; batch.num_columns()];
        let mut out_known: Vec<Option<[u8; 32]>> = Vec::with_capacity(kept.len());
        let rows = batch.num_rows();
        let base_record = records_in;
        records_in += rows as u64;
        // Date offsets only when a column needs them, once per person of the batch.
        let needs_offsets = kept.iter().any(|&ci| {
            policy
                .column(schema.field(ci).name())
                .is_some_and(|c| matches!(c.treatment, PseudoTreatment::Shift | PseudoTreatment::Deidentify))
        });
        let offsets: Vec<i64> = if needs_offsets {
            // Sized for a person per ten lines (a claims extract), so it rarely regrows.
            let mut per_person: FastMap<&str, i64> = FastMap::with_capacity_and_hasher(rows / 8, Default::default());
            let offset_mac = opts.key.column_mac("\u{1}date-offset");
            let mut last: (&str, i64) = ("\u{0}", 0);
            // The person column is looked up once, not per row (a dynamic downcast).
            let person = person_idx.map(|p| strings(batch, p));
            (0..rows)
                .map(|r| match person {
                    Some(pa) if pa.is_valid(r) => {
                        let v = pa.value(r);
                        // Lines of one person are usually consecutive: reuse the last answer first.
                        if !same(v, last.0) {
                            last = (v, *per_person.entry(v).or_insert_with(|| offset_of(&offset_mac, v)));
                        }
                        last.1
                    }
                    _ => opts.key.date_offset(&format!("\u{2}record {}", base_record + r as u64)),
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(kept.len());
        for &ci in &kept {
            let name = schema.field(ci).name();
            let cp = policy.column(name).expect("checked");
            let rep = &mut reports[col_pos[name.as_str()]];
            let a = strings(batch, ci);
            if digest_in {
                in_digests[ci] = Some(text_digest(a, &mut scratch));
            }
            // Columnar paths: a kept column without anything that could be a card, a My Number or a
            // bank account is passed on as the same buffer; tokens and reduced addresses are computed
            // once per distinct value of the batch; nothing is allocated per cell.
            if cp.treatment == PseudoTreatment::Keep && !column_may_hold_financial(a) {
                cols.push(batch.column(ci).clone());
                out_known.push(in_digests[ci]);
                continue;
            }
            // Tokens have a fixed width: the value and offset buffers are written directly (one
            // 32-byte copy per row, no builder) and the input's validity is reused.
            if cp.treatment == PseudoTreatment::Token && rows < (i32::MAX as usize) / 32 {
                let mac = opts.key.column_mac(&cp.name);
                let mut cache: FastMap<&str, [u8; 32]> =
                    FastMap::with_capacity_and_hasher(rows / 8, Default::default());
                let mut last: &str = "\u{0}";
                let mut cur = [b'0'; 32];
                let mut values: Vec<u8> = Vec::with_capacity(rows * 32);
                let mut offs: Vec<i32> = Vec::with_capacity(rows + 1);
                offs.push(0);
                for r in 0..rows {
                    if a.is_valid(r) {
                        let v = a.value(r);
                        // Lines of one person are consecutive: one look-up per change of value.
                        if !same(v, last) {
                            last = v;
                            cur = *cache.entry(v).or_insert_with(|| token_hex(&mac, v));
                        }
                        values.extend_from_slice(&cur);
                    }
                    offs.push(values.len() as i32);
                }
                let arr = arrow::array::StringArray::try_new(
                    arrow::buffer::OffsetBuffer::new(arrow::buffer::ScalarBuffer::from(offs)),
                    arrow::buffer::Buffer::from_vec(values),
                    a.nulls().cloned(),
                )
                .map_err(|e| DeidError::format("output", e))?;
                rep.changed += (rows - a.null_count()) as u64;
                out_known.push(digest_out.then(|| text_digest(&arr, &mut scratch)));
                cols.push(Arc::new(arr));
                continue;
            }
            // Dates in one fixed-width form (`YYYY-MM-DD` on every row, no nulls: a claims table's
            // columns) are written straight into the value buffer; anything else takes the general
            // path below, column by column, so the fast path never changes an answer.
            if matches!(cp.treatment, PseudoTreatment::Shift | PseudoTreatment::Year)
                && let Some(arr) = fixed_iso_dates(a, cp.treatment, &offsets)
            {
                rep.changed += rows as u64;
                out_known.push(digest_out.then(|| text_digest(&arr, &mut scratch)));
                cols.push(Arc::new(arr));
                continue;
            }
            // Output bytes known up front: no regrowth while appending.
            let bytes = match cp.treatment {
                PseudoTreatment::Token => rows * 32,
                PseudoTreatment::Year => rows * 4,
                PseudoTreatment::Shift => a.value_data().len() + rows * 2,
                _ => a.value_data().len() + rows * 8,
            };
            let mut b = StringBuilder::with_capacity(rows, bytes);
            let mut buf = String::new();
            match cp.treatment {
                PseudoTreatment::Token => {
                    let mac = opts.key.column_mac(&cp.name);
                    let mut cache: FastMap<&str, [u8; 32]> = FastMap::default();
                    let mut last: &str = "\u{0}";
                    let mut tok = String::with_capacity(32);
                    for r in 0..rows {
                        if !a.is_valid(r) {
                            b.append_null();
                            continue;
                        }
                        let v = a.value(r);
                        // Lines of one person are consecutive: the hex text is rebuilt only on a change.
                        if !same(v, last) {
                            last = v;
                            let h = cache.entry(v).or_insert_with(|| token_hex(&mac, v));
                            tok.clear();
                            tok.push_str(std::str::from_utf8(h).expect("hex is ASCII"));
                        }
                        b.append_value(&tok);
                    }
                    rep.changed += (rows - a.null_count()) as u64;
                }
                PseudoTreatment::ReduceAddress => {
                    if address_cache.len() > 1 << 20 {
                        address_cache.clear();
                        reduced.clear();
                    }
                    let mut per_level = [0u64; 3];
                    let mut last: (&str, usize) = ("\u{0}", 0);
                    let mut last_changed = false;
                    for r in 0..rows {
                        if !a.is_valid(r) {
                            b.append_null();
                            continue;
                        }
                        let v = a.value(r);
                        if !same(v, last.0) {
                            let i = match address_cache.get(v) {
                                Some(&i) => i,
                                None => {
                                    reduced.push(reduce_address(v, &policy.population, policy.small_area_population));
                                    address_cache.insert(v.to_owned(), reduced.len() - 1);
                                    reduced.len() - 1
                                }
                            };
                            last = (v, i);
                            last_changed = reduced[i].0 != v;
                        }
                        let (out, l) = &reduced[last.1];
                        per_level[*l as usize] += 1;
                        rep.changed += last_changed as u64;
                        b.append_value(out.as_str());
                    }
                    for (l, n) in [AddressLevel::Municipality, AddressLevel::Prefecture, AddressLevel::Removed]
                        .into_iter()
                        .zip(per_level)
                    {
                        if n > 0 {
                            *levels.entry(format!("{l:?}").to_lowercase()).or_default() += n;
                        }
                    }
                }
                _ => {
                    // Dates of consecutive lines of one person repeat (birth date, a visit's lines):
                    // the last converted value is reused when the input (and the offset) is the same.
                    let reuse = matches!(cp.treatment, PseudoTreatment::Year | PseudoTreatment::Shift);
                    let mut prev: Option<(&str, i64)> = None;
                    // `offsets` is empty unless a shift or free-text column needs it: index, don't zip.
                    #[allow(clippy::needless_range_loop)]
                    for r in 0..rows {
                        if !a.is_valid(r) {
                            b.append_null();
                            continue;
                        }
                        let v = a.value(r);
                        let off = offsets.get(r).copied().unwrap_or(0);
                        if let Some((pv, po)) = prev
                            && po == off
                            && same(pv, v)
                        {
                            rep.changed += 1;
                            b.append_value(&buf);
                            continue;
                        }
                        prev = None;
                        buf.clear();
                        let out: &str = match cp.treatment {
                            PseudoTreatment::Delete | PseudoTreatment::Token | PseudoTreatment::ReduceAddress => {
                                unreachable_delete()
                            }
                            PseudoTreatment::Year => match date_year(v) {
                                Some(y) if (1000..=9999).contains(&y) => {
                                    let y = y as u32;
                                    for div in [1000, 100, 10, 1] {
                                        buf.push((b'0' + (y / div % 10) as u8) as char);
                                    }
                                    &buf
                                }
                                Some(y) => {
                                    use std::fmt::Write;
                                    let _ = write!(buf, "{y}");
                                    &buf
                                }
                                None if v.is_empty() => "",
                                None => {
                                    *rep.findings.entry("unreadable_date".into()).or_default() += 1;
                                    "*"
                                }
                            },
                            PseudoTreatment::Shift => {
                                if shift_date_into(v, offsets[r], &mut buf) {
                                    &buf
                                } else if v.is_empty() {
                                    ""
                                } else {
                                    *rep.findings.entry("unreadable_date".into()).or_default() += 1;
                                    "*"
                                }
                            }
                            PseudoTreatment::Deidentify => {
                                let ctx = DocContext { date_offset_days: offsets[r], surrogate_seed: 0 };
                                // Whose record this is: their own name, address and phone are always caught.
                                let known = person_idx
                                    .map(|p| strings(batch, p))
                                    .filter(|p| p.is_valid(r))
                                    .and_then(|p| opts.identities.get(p.value(r)));
                                let d = deidentify_with(v, &opts.text, &ctx, known);
                                for s in &d.spans {
                                    *rep.findings.entry(s.tag.name().to_owned()).or_default() += 1;
                                }
                                buf = d.text;
                                &buf
                            }
                            PseudoTreatment::Keep => {
                                let found = if may_hold_financial(v) { find_financial(v) } else { Vec::new() };
                                if found.is_empty() {
                                    v
                                } else {
                                    let mut last = 0;
                                    for s in &found {
                                        buf.push_str(&v[last..s.start]);
                                        buf.push_str(if s.tag == Tag::Financial {
                                            Tag::Financial.label()
                                        } else {
                                            Tag::Id.label()
                                        });
                                        *rep.findings.entry(s.tag.name().to_owned()).or_default() += 1;
                                        last = s.end;
                                    }
                                    buf.push_str(&v[last..]);
                                    &buf
                                }
                            }
                        };
                        let changed = out != v;
                        if changed {
                            rep.changed += 1;
                        }
                        b.append_value(out);
                        // Only a readable date converted into `buf` is reused (findings stay per cell).
                        if reuse && changed && !buf.is_empty() && std::ptr::eq(out, buf.as_str()) {
                            prev = Some((v, off));
                        }
                    }
                }
            }
            let arr = b.finish();
            out_known.push(digest_out.then(|| text_digest(&arr, &mut scratch)));
            cols.push(Arc::new(arr));
        }
        if digest_in {
            // Deleted columns are part of the input too.
            for (c, d) in in_digests.iter_mut().enumerate() {
                if d.is_none() {
                    *d = Some(text_digest(strings(batch, c), &mut scratch));
                }
            }
            digest_columns(&mut in_hash, batch, &in_digests, &mut scratch);
        }
        let s = out_schema.clone().expect("set with the sink");
        let out = RecordBatch::try_new(s, cols).map_err(|e| DeidError::format("output", e))?;
        if digest_out {
            digest_columns(&mut out_hash, &out, &out_known, &mut scratch);
        }
        records_out += out.num_rows() as u64;
        sink.as_mut().expect("opened").write(out)
    })?;
    let Some(sink) = sink else {
        return Err(DeidError::format("input", "no records and no header"));
    };
    let (mut output_sha256, batches) = sink.finish(Sha256::new())?;
    if digest_out {
        output_sha256 = format!("blake3:{}", out_hash.finalize().to_hex());
    } else if matches!(output, Output::Memory | Output::Stream(_)) {
        output_sha256 = String::new();
    }
    let input_sha256 = match input {
        Input::Csv(p) | Input::Parquet(p) => file_sha256(p)?,
        Input::Batches(_) | Input::Stream(_) if digest_in => format!("blake3:{}", in_hash.finalize().to_hex()),
        Input::Batches(_) | Input::Stream(_) => String::new(),
    };
    for r in &mut reports {
        if r.treatment == PseudoTreatment::Delete {
            r.changed = records_in;
        }
    }
    Ok(PseudoOutcome {
        report: PseudoReport {
            engine: format!("kiban-deid {}", env!("CARGO_PKG_VERSION")),
            policy_name: policy.name.clone(),
            policy_hash: policy.hash.clone(),
            checks: vec!["S1".into(), "S2".into(), "S3".into(), "S5".into(), "S6".into()],
            input_sha256,
            output_sha256,
            records_in,
            records_out,
            address_levels: levels,
            columns: reports,
            millis: started.elapsed().as_secs_f64() * 1000.0,
        },
        batches,
    })
}

/// A shifted (`Shift`, by each row's offset) or year-only (`Year`) copy of a date column whose
/// values are all 10-byte `YYYY-MM-DD`/`YYYY/MM/DD` dates with a year from 1000 and no nulls,
/// written without a builder; `None` when any value is otherwise (the general path then decides).
fn fixed_iso_dates(
    a: &arrow::array::StringArray,
    treatment: PseudoTreatment,
    offsets: &[i64],
) -> Option<arrow::array::StringArray> {
    const W: usize = 10;
    let rows = a.len();
    let offs = a.value_offsets();
    if a.null_count() > 0 || rows == 0 || rows >= (i32::MAX as usize) / W {
        return None;
    }
    let differ = offs[1..].iter().zip(&offs[..rows]).fold(0i32, |acc, (e, s)| acc | ((e - s) ^ W as i32));
    if differ != 0 {
        return None;
    }
    let data = &a.value_data()[offs[0] as usize..offs[rows] as usize];
    let shift = treatment == PseudoTreatment::Shift;
    if shift && offsets.len() != rows {
        return None;
    }
    let out_w = if shift { W } else { 4 };
    // Output widths as constants, so each row's copy is a few moves rather than a `memcpy` call.
    let values = if shift { fill_dates::<W>(data, offsets, true)? } else { fill_dates::<4>(data, offsets, false)? };
    let offs: Vec<i32> = (0..=rows).map(|r| (r * out_w) as i32).collect();
    arrow::array::StringArray::try_new(
        arrow::buffer::OffsetBuffer::new(arrow::buffer::ScalarBuffer::from(offs)),
        arrow::buffer::Buffer::from_vec(values),
        None,
    )
    .ok()
}

/// The value bytes of [`fixed_iso_dates`]: the first `O` bytes of each row's shifted (`shift`) or
/// checked date; `None` when a value is not a real date the general path would write the same way.
fn fill_dates<const O: usize>(data: &[u8], offsets: &[i64], shift: bool) -> Option<Vec<u8>> {
    const W: usize = 10;
    let mut values: Vec<u8> = Vec::with_capacity(data.len() / W * O);
    // Consecutive lines of one person repeat a date (and its offset): the last answer is reused.
    let mut prev: ([u8; W], i64, [u8; O]) = ([0; W], i64::MIN, [0; O]);
    for (r, v) in data.chunks_exact(W).enumerate() {
        let v: &[u8; W] = v.try_into().expect("chunks of W bytes");
        let off = if shift { offsets[r] } else { 0 };
        if *v != prev.0 || off != prev.1 {
            let out = if shift {
                shift_iso_fast(v, off)?
            } else {
                // The same check as the general path's: a real calendar date; years below 1000 are
                // written unpadded there, so they leave the fast path.
                if v[0] == b'0' || !matches!(iso_date(std::str::from_utf8(v).ok()?), Some((_, Some(_)))) {
                    return None;
                }
                *v
            };
            prev = (*v, off, out[..O].try_into().expect("O <= W"));
        }
        values.extend_from_slice(&prev.2);
    }
    Some(values)
}

/// The BLAKE3 digest of one text column of an in-memory batch: the row count; then for a column
/// whose values all have one width (codes, dates, tokens) that width once, else each value's length
/// (one byte when all are shorter than 255, else the rebased offsets); then the value bytes as one
/// slice of the Arrow buffer; then the validity when there are nulls. Fixed-width columns, most of
/// a claims table, so cost one pass over their bytes and no length buffer.
fn text_digest(a: &arrow::array::StringArray, scratch: &mut Vec<u8>) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(&(a.len() as u64).to_le_bytes());
    let offs = a.value_offsets();
    let n = a.len();
    let width = if n > 0 { offs[1] - offs[0] } else { 0 };
    // Branch-free over the lengths (vectorizes): zero when every length equals the first.
    let differ = offs[1..].iter().zip(&offs[..n]).fold(0i32, |acc, (e, s)| acc | ((e - s) ^ width));
    if differ == 0 {
        h.update(&[0x02]);
        h.update(&width.to_le_bytes());
    } else {
        scratch.clear();
        scratch.extend(offs[1..].iter().zip(&offs[..n]).map(|(e, s)| (e - s).min(255) as u8));
        if !scratch.contains(&255) {
            h.update(&[0x01]);
            h.update(scratch);
        } else {
            h.update(&[0x04]);
            scratch.clear();
            for o in offs {
                scratch.extend_from_slice(&(o - offs[0]).to_le_bytes());
            }
            h.update(scratch);
        }
    }
    h.update(&a.value_data()[offs[0] as usize..offs[n] as usize]);
    if a.null_count() > 0 {
        scratch.clear();
        scratch.extend((0..n).map(|r| a.is_valid(r) as u8));
        h.update(scratch);
    }
    *h.finalize().as_bytes()
}

/// Feeds a batch into a run's digest: per column its name, 0x1f and its [`text_digest`] (given in
/// `known` when already computed, e.g. a column passed through from the input).
fn digest_columns(h: &mut blake3::Hasher, batch: &RecordBatch, known: &[Option<[u8; 32]>], scratch: &mut Vec<u8>) {
    for (c, f) in batch.schema().fields().iter().enumerate() {
        let d = known.get(c).copied().flatten().unwrap_or_else(|| text_digest(strings(batch, c), scratch));
        h.update(f.name().as_bytes());
        h.update(&[0x1f]);
        h.update(&d);
    }
}

fn unreachable_delete() -> &'static str {
    // Deleted columns are never in the kept list; an empty value is the safe answer regardless.
    ""
}

/// Whether a kept value could hold a card number (13–19 digits), a My Number (12 digits) or a bank
/// account phrase (which needs kanji): ASCII values with fewer than 12 digits cannot.
fn may_hold_financial(v: &str) -> bool {
    !v.is_ascii() || v.bytes().filter(u8::is_ascii_digit).count() >= 12
}

/// [`may_hold_financial`] for a whole column: an ASCII buffer whose values are all shorter than 12
/// bytes holds none, without looking at each value.
fn column_may_hold_financial(a: &arrow::array::StringArray) -> bool {
    let offs = a.value_offsets();
    let data = &a.value_data()[offs[0] as usize..offs[a.len()] as usize];
    // Branch-free maximum over the lengths (vectorizes), then one ASCII pass over the bytes.
    let longest = offs[1..].iter().zip(&offs[..offs.len() - 1]).map(|(e, s)| e - s).fold(0, i32::max);
    if longest < 12 && data.is_ascii() {
        return false;
    }
    (0..a.len()).any(|r| a.is_valid(r) && may_hold_financial(a.value(r)))
}

/// A hash map with a fast seeded hasher (foldhash) for the per-value caches of a run.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Equality of two short strings without a `memcmp` call per row: length first, then 8-byte words.
#[inline]
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        return a == b;
    }
    let w = |x: &[u8], i: usize| u64::from_ne_bytes(x[i..i + 8].try_into().expect("8 bytes"));
    let mut i = 0;
    while i + 8 <= n {
        if w(a, i) != w(b, i) {
            return false;
        }
        i += 8;
    }
    w(a, n - 8) == w(b, n - 8)
}

fn offset_from_mac(m: &[u8; 32]) -> i64 {
    let v = u16::from_le_bytes([m[0], m[1]]) as i64 % 360;
    if v < 180 { v - 180 } else { v - 179 }
}

/// [`ReleaseKey::date_offset`] from a precomputed column key.
fn offset_of(key: &[u8; 32], person: &str) -> i64 {
    offset_from_mac(blake3::keyed_hash(key, person.as_bytes()).as_bytes())
}

/// The 32 hex digits of a token from a column's key.
fn token_hex(key: &[u8; 32], v: &str) -> [u8; 32] {
    let d = blake3::keyed_hash(key, v.as_bytes());
    let d = d.as_bytes();
    let mut out = [0u8; 32];
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in d[..16].iter().enumerate() {
        out[2 * i] = HEX[(b >> 4) as usize];
        out[2 * i + 1] = HEX[(b & 15) as usize];
    }
    out
}

/// The demo stage "pseudonymize": pseudonymizes a synthetic patient master
/// (`kiban_model::synth::SynthTable::Patients`) under the shipped policy
/// `policies/synth_pseudonymized.toml` (its synthetic population table embedded), with a free-text
/// `note` column added per patient — a short clinical note that mentions the patient's own name,
/// address, phone and birth date — so the extract shows S1–S3 on columns and S5 on text.
pub fn demo_stage(patients: &RecordBatch, output: &Output, key: ReleaseKey) -> Result<PseudoOutcome> {
    let mut text = include_str!("../policies/synth_pseudonymized.toml")
        .replace("population_table = \"population_synthetic.tsv\"\n", "");
    text.push_str("\n[[columns]]\nname = \"note\"\nrole = \"free_text\"\n");
    let mut policy = PseudoPolicy::from_toml(&text, Path::new("."))?;
    policy.population = parse_population(include_str!("../policies/population_synthetic.tsv"))?;
    let get = |name: &str| -> Result<&arrow::array::StringArray> {
        let i = patients.schema().index_of(name).map_err(|_| DeidError::Schema {
            column: name.to_owned(),
            rule: "the demo stage needs the synthetic patient master".into(),
        })?;
        patients
            .column(i)
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .ok_or_else(|| DeidError::format("<batches>", format!("column {name} is not text")))
    };
    let (name, addr, phone, birth, sex) =
        (get("name_kanji")?, get("address")?, get("phone")?, get("birth_date")?, get("sex")?);
    let mut notes = StringBuilder::new();
    for r in 0..patients.num_rows() {
        let s = if sex.value(r) == "1" { "男性" } else { "女性" };
        notes.append_value(format!(
            "{}さん（{}生、{s}）は{}在住。本日、咳嗽と発熱で来院。連絡先{}。HbA1c 7.2%、アムロジピン5mg継続。",
            name.value(r),
            birth.value(r),
            addr.value(r),
            phone.value(r)
        ));
    }
    let mut fields: Vec<Field> = patients.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("note", DataType::Utf8, true));
    let mut cols: Vec<ArrayRef> = patients.columns().to_vec();
    cols.push(Arc::new(notes.finish()));
    let batch =
        RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).map_err(|e| DeidError::format("<batches>", e))?;
    pseudonymize(&policy, &Input::Batches(vec![batch]), output, &PseudoOptions::new(key))
}

/// A text table from column names and rows (`None` is a null), for callers without Arrow (HTTP).
pub fn table_from_rows(columns: &[String], rows: &[Vec<Option<String>>]) -> Result<RecordBatch> {
    let mut builders: Vec<StringBuilder> = columns.iter().map(|_| StringBuilder::new()).collect();
    for (i, row) in rows.iter().enumerate() {
        if row.len() != columns.len() {
            return Err(DeidError::format(
                format!("row {}", i + 1),
                format!("has {} values for {} columns (rule: one value per column)", row.len(), columns.len()),
            ));
        }
        for (b, v) in builders.iter_mut().zip(row) {
            b.append_option(v.as_deref());
        }
    }
    let schema = Schema::new(columns.iter().map(|c| Field::new(c, DataType::Utf8, true)).collect::<Vec<_>>());
    let cols: Vec<ArrayRef> = builders.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef).collect();
    RecordBatch::try_new(Arc::new(schema), cols).map_err(|e| DeidError::format("table", e))
}

/// Column names and rows of text batches (the inverse of [`table_from_rows`]).
pub fn rows_of(batches: &[RecordBatch]) -> (Vec<String>, Vec<Vec<Option<String>>>) {
    let Some(first) = batches.first() else {
        return (Vec::new(), Vec::new());
    };
    let columns = first.schema().fields().iter().map(|f| f.name().clone()).collect();
    let mut rows = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            rows.push(
                (0..b.num_columns())
                    .map(|c| {
                        let a = strings(b, c);
                        a.is_valid(r).then(|| a.value(r).to_owned())
                    })
                    .collect(),
            );
        }
    }
    (columns, rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_date_shift_agrees_with_chrono_across_leap_years_and_offsets() {
        let mut d = chrono::NaiveDate::from_ymd_opt(1895, 1, 1).expect("valid");
        let end = chrono::NaiveDate::from_ymd_opt(2105, 1, 1).expect("valid");
        while d < end {
            for off in [-180, -61, -1, 1, 29, 180] {
                let s = d.format("%Y-%m-%d").to_string();
                let fast = shift_iso_fast(s.as_bytes(), off).expect("ISO date");
                let want = (d + chrono::Duration::days(off)).format("%Y-%m-%d").to_string();
                assert_eq!(std::str::from_utf8(&fast).expect("ASCII"), want, "{s} {off:+}");
            }
            d += chrono::Duration::days(3);
        }
        assert!(shift_iso_fast(b"2023-02-29", 1).is_none(), "not a date");
        assert!(shift_iso_fast(b"2024-13-01", 1).is_none());
        assert_eq!(&shift_iso_fast(b"2024/02/28", 1).expect("date"), b"2024/02/29");
    }

    #[test]
    fn s1_fixed_width_date_columns_match_the_general_rules_or_leave_the_fast_path() {
        use arrow::array::StringArray;
        let col = |v: Vec<Option<&str>>| StringArray::from(v);
        let a = col(vec![Some("2024-02-28"), Some("2024-02-28"), Some("1999/12/31"), Some("2024-02-28")]);
        let offs = [1, 1, 1, -3];
        let shifted = fixed_iso_dates(&a, PseudoTreatment::Shift, &offs).expect("fast path");
        for (r, off) in offs.iter().enumerate() {
            let mut want = String::new();
            assert!(shift_date_into(a.value(r), *off, &mut want));
            assert_eq!(shifted.value(r), want, "row {r}: the same answer as the per-value rule");
        }
        assert_eq!(shifted.value(3), "2024-02-25", "the reused answer is not carried over another offset");
        let years = fixed_iso_dates(&a, PseudoTreatment::Year, &[]).expect("fast path");
        assert_eq!((0..4).map(|r| years.value(r)).collect::<Vec<_>>(), ["2024", "2024", "1999", "2024"]);
        // Anything else is left to the general path (which reports unreadable dates per cell).
        for v in [
            vec![Some("2024-02-28"), None],
            vec![Some("2024-02-28"), Some("令和6年2月28日")],
            vec![Some("2023-02-29")],
            vec![Some("2024-02-28"), Some("20240228  ")],
        ] {
            let a = col(v.clone());
            assert!(fixed_iso_dates(&a, PseudoTreatment::Year, &[]).is_none(), "{v:?}");
            assert!(fixed_iso_dates(&a, PseudoTreatment::Shift, &vec![1; v.len()]).is_none(), "{v:?}");
        }
        // A year before 1000 is written unpadded by the general rule.
        assert!(fixed_iso_dates(&col(vec![Some("0999-01-01")]), PseudoTreatment::Year, &[]).is_none());
    }

    #[test]
    fn s2_column_digest_binds_values_their_boundaries_and_nulls() {
        use arrow::array::StringArray;
        let mut scratch = Vec::new();
        let mut d = |v: Vec<Option<&str>>| text_digest(&StringArray::from(v), &mut scratch);
        let fixed = d(vec![Some("ab"), Some("cd")]);
        assert_eq!(fixed, d(vec![Some("ab"), Some("cd")]), "same content, same digest");
        assert_ne!(fixed, d(vec![Some("a"), Some("bcd")]), "same bytes, other boundaries");
        assert_ne!(fixed, d(vec![Some("abc"), Some("d")]));
        assert_ne!(fixed, d(vec![Some("ab"), Some("ce")]));
        assert_ne!(d(vec![Some(""), Some("ab")]), d(vec![None, Some("ab")]), "a null is not an empty value");
        assert_ne!(d(vec![Some("ab")]), d(vec![Some("ab"), Some("")]), "row count");
        // A sliced array digests as its own values.
        let whole = StringArray::from(vec!["xx", "ab", "cd"]);
        assert_eq!(text_digest(&whole.slice(1, 2), &mut Vec::new()), fixed);
        let long = "x".repeat(300);
        assert_ne!(d(vec![Some(&long), Some("a")]), d(vec![Some(&long[..299]), Some("xa")]), "long values");
    }

    /// The address reduction as a scan of the lists (before the look-up tables), as the reference.
    fn reduce_address_by_scan(
        addr: &str,
        population: &HashMap<(String, String), u64>,
        small: u64,
    ) -> (String, AddressLevel) {
        let a: String = addr.chars().filter(|c| !c.is_whitespace()).collect();
        let a =
            a.strip_prefix('〒').map_or(a.as_str(), |r| r.trim_start_matches(|c: char| c.is_ascii_digit() || c == '-'));
        for (pref, munis) in prefectures() {
            if let Some(rest) = a.strip_prefix(pref.as_str()) {
                if let Some(m) = munis.iter().find(|m| rest.starts_with(m.as_str())) {
                    let pop = population.get(&(pref.clone(), m.clone())).copied().unwrap_or(0);
                    if pop >= small {
                        return (format!("{pref}{m}"), AddressLevel::Municipality);
                    }
                }
                return (pref.clone(), AddressLevel::Prefecture);
            }
        }
        reduce_address(addr, population, small)
    }

    #[test]
    fn s1_address_look_up_tables_reduce_every_municipality_as_the_list_scan_does() {
        let mut population = HashMap::new();
        let mut addrs = vec![String::new(), "〒100-0001 東京都".into(), "東京".into(), "どこか1-2".into()];
        for (i, (pref, munis)) in prefectures().iter().enumerate() {
            for (j, m) in munis.iter().enumerate() {
                // Every other municipality large, so both levels are reached.
                population.insert((pref.clone(), m.clone()), if (i + j) % 2 == 0 { 80_000 } else { 900 });
                addrs.push(format!("{pref}{m}本町1-2-3"));
                addrs.push(format!("〒123-4567 {pref} {m}"));
                addrs.push(format!("{pref}{}", m.chars().take(m.chars().count() - 1).collect::<String>()));
                addrs.push(format!("{m}中央1丁目"));
            }
        }
        for a in &addrs {
            assert_eq!(reduce_address(a, &population, 50_000), reduce_address_by_scan(a, &population, 50_000), "{a}");
        }
    }

    #[test]
    fn short_string_equality_matches_slices() {
        let v = ["", "a", "P0000001", "P00000012", "P00000013", "東京都千代田区", "東京都千代田町", "1234567"];
        for a in v {
            for b in v {
                assert_eq!(same(a, b), a == b, "{a:?} {b:?}");
            }
        }
    }
}
