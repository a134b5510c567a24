//! Generalization hierarchies: from ARX-format CSV files (`value;level1;level2;...`) or from
//! builders (age bands, numeric intervals, dates, prefix masking, ICD-10, YJ drug codes,
//! Japanese addresses, flat). A hierarchy need
//! not list every value: a value it does not cover is handled by the declared [`MissingRule`].

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{DeidError, Result};

/// What to do with a value a hierarchy does not cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissingRule {
    /// Stop with an error naming the column and the hierarchy (the default).
    #[default]
    Error,
    /// Suppress the whole record (counted apart from the k-anonymity suppression).
    Suppress,
    /// Replace the value by `*` at every level, including the original level.
    Star,
}

/// A granularity step of a date hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DateLevel {
    /// `YYYY-MM`.
    Month,
    /// `YYYY-Qn`.
    Quarter,
    /// `YYYY-Hn` (half year).
    Half,
    /// `YYYY`.
    Year,
    /// `YYYYs` (decade).
    Decade,
}

/// A hierarchy builder, as declared in a policy (`builder = "..."`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "builder", rename_all = "snake_case", deny_unknown_fields)]
pub enum Builder {
    /// Ages: bands of the given widths (default 5, 10, 20 years), every age ≥ `top` (default 100)
    /// grouped as `top+` at every level (publication rule O6), then `*`.
    Age {
        /// Band widths, one per level, increasing.
        #[serde(default = "default_age_widths")]
        widths: Vec<u32>,
        /// Ages at or above this are grouped as `top+`.
        #[serde(default = "default_top")]
        top: u32,
    },
    /// Numeric intervals: each level is a sorted list of cut points; a value falls in `[a, b)`,
    /// `<first` or `>=last`. The last level is `*`.
    Intervals {
        /// Cut points per level, each list coarser than the one before.
        levels: Vec<Vec<f64>>,
    },
    /// Dates `YYYY-MM-DD` (also `YYYY/MM/DD`, `YYYYMMDD`): day → month → quarter → year → `*` by default.
    Date {
        /// The levels above the day.
        #[serde(default = "default_date_levels")]
        levels: Vec<DateLevel>,
    },
    /// Masking: level i keeps the first `keep[i]` characters and replaces the rest by `*`
    /// (postal codes, addresses, codes), then `*`.
    Mask {
        /// Characters kept per level, decreasing.
        keep: Vec<usize>,
    },
    /// Prefixes: level i truncates to the first `keep[i]` characters (no padding), then `*`.
    Prefix {
        /// Characters kept per level, decreasing.
        keep: Vec<usize>,
    },
    /// ICD-10 codes: code → 3-character category → chapter → `*`.
    Icd10,
    /// YJ drug codes (薬価基準収載医薬品コード, 12 characters): code → ingredient and dosage form
    /// (8) → ingredient (7) → therapeutic class (薬効分類, 4) → 3 → 1 → `*`.
    Yj,
    /// Japanese addresses: address → 町域 → 市区町村 → 二次医療圏 (only when `areas` is given) →
    /// 都道府県 → 地方 → `*`. Labels keep the prefecture (市区町村 names repeat across prefectures).
    Address {
        /// 二次医療圏 of each 市区町村, keyed by prefecture + municipality (`東京都千代田区`); a
        /// municipality missing from a non-empty map is a value outside the hierarchy.
        #[serde(default)]
        areas: std::collections::BTreeMap<String, String>,
    },
    /// One level: value → `*`.
    Flat,
}

fn default_age_widths() -> Vec<u32> {
    vec![5, 10, 20]
}
fn default_top() -> u32 {
    100
}
fn default_date_levels() -> Vec<DateLevel> {
    vec![DateLevel::Month, DateLevel::Quarter, DateLevel::Year]
}

/// A generalization hierarchy ready to use: level 0 is the original value, the last level the most general.
#[derive(Debug, Clone)]
pub struct Hierarchy {
    /// The hierarchy's name in the policy.
    pub name: String,
    /// What to do with a value not covered.
    pub missing: MissingRule,
    kind: Kind,
    levels: usize,
}

#[derive(Debug, Clone)]
enum Kind {
    Table(HashMap<String, Vec<String>>),
    Built(Builder),
}

impl Hierarchy {
    /// Reads an ARX hierarchy CSV (`value;level1;...;*`, no header) with the given delimiter.
    pub fn from_csv_file(name: &str, path: &Path, delimiter: u8, missing: MissingRule) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| DeidError::hierarchy(name, format!("cannot read hierarchy file {}: {e}", path.display())))?;
        Self::from_csv_str(name, &text, delimiter, missing)
    }

    /// Parses ARX hierarchy CSV text; every row must have the same number of levels and no value may repeat.
    pub fn from_csv_str(name: &str, text: &str, delimiter: u8, missing: MissingRule) -> Result<Self> {
        let mut map = HashMap::new();
        let mut levels = 0usize;
        let mut rdr = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .has_headers(false)
            .flexible(true)
            .from_reader(text.as_bytes());
        for (i, rec) in rdr.records().enumerate() {
            let line = i + 1;
            let rec = rec.map_err(|e| DeidError::hierarchy(name, format!("line {line}: not CSV: {e}")))?;
            let row: Vec<String> = rec.iter().map(|s| s.trim().to_owned()).collect();
            if row.iter().all(|s| s.is_empty()) {
                continue;
            }
            if levels == 0 {
                levels = row.len();
            } else if row.len() != levels {
                return Err(DeidError::hierarchy(
                    name,
                    format!(
                        "line {line}: {} levels where earlier rows have {levels} (rule: equal row lengths)",
                        row.len()
                    ),
                ));
            }
            if map.insert(row[0].clone(), row).is_some() {
                return Err(DeidError::hierarchy(
                    name,
                    format!("line {line}: value listed twice (rule: unique values)"),
                ));
            }
        }
        if levels == 0 {
            return Err(DeidError::hierarchy(name, "empty hierarchy (rule: at least one row)"));
        }
        Ok(Hierarchy { name: name.to_owned(), missing, kind: Kind::Table(map), levels })
    }

    /// Builds a hierarchy from a builder, checking its parameters.
    pub fn from_builder(name: &str, builder: Builder, missing: MissingRule) -> Result<Self> {
        let err = |rule: &str| Err(DeidError::hierarchy(name, rule.to_owned()));
        let above = match &builder {
            Builder::Age { widths, top } => {
                if widths.is_empty() || widths.contains(&0) || widths.windows(2).any(|w| w[1] < w[0]) {
                    return err("age widths must be positive and non-decreasing");
                }
                if *top == 0 {
                    return err("age top must be positive");
                }
                widths.len()
            }
            Builder::Intervals { levels } => {
                if levels.is_empty()
                    || levels
                        .iter()
                        .any(|l| l.is_empty() || l.windows(2).any(|w| w[1] <= w[0]) || l.iter().any(|x| !x.is_finite()))
                {
                    return err("interval levels must be non-empty lists of strictly increasing finite cut points");
                }
                for w in levels.windows(2) {
                    if !w[1].iter().all(|c| w[0].contains(c)) {
                        return err(
                            "each interval level's cut points must be a subset of the level below (rule: nesting)",
                        );
                    }
                }
                levels.len()
            }
            Builder::Date { levels } => {
                if levels.windows(2).any(|w| date_rank(w[1]) <= date_rank(w[0])) {
                    return err("date levels must go from fine to coarse");
                }
                levels.len()
            }
            Builder::Mask { keep } | Builder::Prefix { keep } => {
                if keep.windows(2).any(|w| w[1] >= w[0]) {
                    return err("keep lengths must be strictly decreasing");
                }
                keep.len()
            }
            Builder::Icd10 => 2,
            Builder::Yj => 5,
            Builder::Address { areas } => 4 + usize::from(!areas.is_empty()),
            Builder::Flat => 0,
        };
        Ok(Hierarchy { name: name.to_owned(), missing, kind: Kind::Built(builder), levels: above + 2 })
    }

    /// Number of levels, the original value (level 0) included.
    pub fn levels(&self) -> usize {
        self.levels
    }

    /// The value at every level (`[original, level1, ..., most general]`), or `None` when not covered.
    pub fn chain(&self, value: &str) -> Option<Vec<String>> {
        match &self.kind {
            Kind::Table(map) => map.get(value.trim()).cloned(),
            Kind::Built(b) => build_chain(b, value.trim()),
        }
    }
}

fn date_rank(d: DateLevel) -> u8 {
    match d {
        DateLevel::Month => 0,
        DateLevel::Quarter => 1,
        DateLevel::Half => 2,
        DateLevel::Year => 3,
        DateLevel::Decade => 4,
    }
}

fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 { format!("{}", x as i64) } else { format!("{x}") }
}

fn build_chain(b: &Builder, v: &str) -> Option<Vec<String>> {
    let mut out = vec![v.to_owned()];
    match b {
        Builder::Age { widths, top } => {
            let x: f64 = v.parse().ok()?;
            if !(x.is_finite() && x >= 0.0) {
                return None;
            }
            let a = x.floor() as u64;
            let top = *top as u64;
            for &w in widths {
                if a >= top {
                    out.push(format!("{top}+"));
                } else {
                    let w = w as u64;
                    let lo = a / w * w;
                    let hi = (lo + w - 1).min(top - 1);
                    out.push(format!("{lo}-{hi}"));
                }
            }
        }
        Builder::Intervals { levels } => {
            let x: f64 = v.parse().ok()?;
            if !x.is_finite() {
                return None;
            }
            for cuts in levels {
                let i = cuts.partition_point(|c| *c <= x);
                out.push(if i == 0 {
                    format!("<{}", fmt_num(cuts[0]))
                } else if i == cuts.len() {
                    format!(">={}", fmt_num(cuts[i - 1]))
                } else {
                    format!("[{},{})", fmt_num(cuts[i - 1]), fmt_num(cuts[i]))
                });
            }
        }
        Builder::Date { levels } => {
            let (y, m, _d) = parse_date(v)?;
            for l in levels {
                out.push(match l {
                    DateLevel::Month => format!("{y:04}-{m:02}"),
                    DateLevel::Quarter => format!("{y:04}-Q{}", (m - 1) / 3 + 1),
                    DateLevel::Half => format!("{y:04}-H{}", (m - 1) / 6 + 1),
                    DateLevel::Year => format!("{y:04}"),
                    DateLevel::Decade => format!("{}s", y / 10 * 10),
                });
            }
        }
        Builder::Mask { keep } => {
            let n = v.chars().count();
            for &k in keep {
                out.push(v.chars().enumerate().map(|(i, c)| if i < k || c == '-' { c } else { '*' }).collect());
            }
            if n == 0 {
                return None;
            }
        }
        Builder::Prefix { keep } => {
            if v.is_empty() {
                return None;
            }
            for &k in keep {
                out.push(v.chars().take(k).collect());
            }
        }
        Builder::Icd10 => {
            let code: String = v.chars().filter(|c| *c != '.').collect::<String>().to_ascii_uppercase();
            let b = code.as_bytes();
            if b.len() < 3 || !b[0].is_ascii_uppercase() || !b[1].is_ascii_digit() || !b[2].is_ascii_alphanumeric() {
                return None;
            }
            let cat = &code[..3];
            out.push(cat.to_owned());
            out.push(icd10_chapter(cat)?.to_owned());
        }
        Builder::Yj => {
            let b = v.as_bytes();
            if b.len() != 12 || !b[..7].iter().all(u8::is_ascii_digit) || !b.iter().all(u8::is_ascii_alphanumeric) {
                return None;
            }
            for k in [8, 7, 4, 3, 1] {
                out.push(v[..k].to_owned());
            }
        }
        Builder::Address { areas } => {
            let a = parse_address(v)?;
            out.push(format!("{}{}{}", a.prefecture, a.municipality, a.town));
            out.push(format!("{}{}", a.prefecture, a.municipality));
            if !areas.is_empty() {
                let area = areas.get(&format!("{}{}", a.prefecture, a.municipality))?;
                out.push(format!("{}/{area}", a.prefecture));
            }
            out.push(a.prefecture.to_owned());
            out.push(region_of(a.prefecture)?.to_owned());
        }
        Builder::Flat => {}
    }
    out.push("*".to_owned());
    Some(out)
}

/// The 47 prefectures with their region (地方), in JIS order.
const PREFECTURES: [(&str, &str); 47] = [
    ("北海道", "北海道"),
    ("青森県", "東北"),
    ("岩手県", "東北"),
    ("宮城県", "東北"),
    ("秋田県", "東北"),
    ("山形県", "東北"),
    ("福島県", "東北"),
    ("茨城県", "関東"),
    ("栃木県", "関東"),
    ("群馬県", "関東"),
    ("埼玉県", "関東"),
    ("千葉県", "関東"),
    ("東京都", "関東"),
    ("神奈川県", "関東"),
    ("新潟県", "中部"),
    ("富山県", "中部"),
    ("石川県", "中部"),
    ("福井県", "中部"),
    ("山梨県", "中部"),
    ("長野県", "中部"),
    ("岐阜県", "中部"),
    ("静岡県", "中部"),
    ("愛知県", "中部"),
    ("三重県", "近畿"),
    ("滋賀県", "近畿"),
    ("京都府", "近畿"),
    ("大阪府", "近畿"),
    ("兵庫県", "近畿"),
    ("奈良県", "近畿"),
    ("和歌山県", "近畿"),
    ("鳥取県", "中国"),
    ("島根県", "中国"),
    ("岡山県", "中国"),
    ("広島県", "中国"),
    ("山口県", "中国"),
    ("徳島県", "四国"),
    ("香川県", "四国"),
    ("愛媛県", "四国"),
    ("高知県", "四国"),
    ("福岡県", "九州・沖縄"),
    ("佐賀県", "九州・沖縄"),
    ("長崎県", "九州・沖縄"),
    ("熊本県", "九州・沖縄"),
    ("大分県", "九州・沖縄"),
    ("宮崎県", "九州・沖縄"),
    ("鹿児島県", "九州・沖縄"),
    ("沖縄県", "九州・沖縄"),
];

/// The region (地方) of a prefecture's full name.
pub fn region_of(prefecture: &str) -> Option<&'static str> {
    PREFECTURES.iter().find(|(p, _)| *p == prefecture).map(|(_, r)| *r)
}

/// A Japanese address split into prefecture, municipality (市区町村, with the ward of a designated
/// city or the 郡 of a town) and 町域 (the place name before the 丁目/番地 numbers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address<'a> {
    /// 都道府県.
    pub prefecture: &'static str,
    /// 市区町村.
    pub municipality: &'a str,
    /// 町域 (may be empty).
    pub town: &'a str,
}

/// Cities whose names hold 市 or 郡 inside (a plain "first 市" rule would cut them short).
const ODD_CITIES: [&str; 8] =
    ["四日市市", "廿日市市", "野々市市", "大和郡山市", "郡山市", "郡上市", "蒲郡市", "小郡市"];

/// Splits an address; `None` when it does not start with a prefecture or has no municipality.
pub fn parse_address(v: &str) -> Option<Address<'_>> {
    let v = v.trim();
    let (prefecture, rest) = PREFECTURES.iter().find_map(|(p, _)| v.strip_prefix(p).map(|r| (*p, r)))?;
    // Byte offset just past the first `c` found after at least one character.
    let after = |s: &str, c: char| s.char_indices().skip(1).find(|(_, x)| *x == c).map(|(i, x)| i + x.len_utf8());
    let (municipality, tail) = if let Some(city) = ODD_CITIES.iter().find(|c| rest.starts_with(**c)) {
        rest.split_at(city.len())
    } else if let Some(g) = after(rest, '郡') {
        let t = rest[g..].char_indices().find(|(_, x)| *x == '町' || *x == '村').map(|(i, x)| g + i + x.len_utf8())?;
        rest.split_at(t)
    } else if let Some(c) = after(rest, '市') {
        // A designated city's ward (横浜市中区) belongs to the municipality.
        let ward = rest[c..]
            .char_indices()
            .take(5)
            .take_while(|(_, x)| !x.is_numeric())
            .find(|(_, x)| *x == '区')
            .map(|(i, x)| c + i + x.len_utf8());
        rest.split_at(ward.unwrap_or(c))
    } else if let Some(w) = after(rest, '区') {
        rest.split_at(w)
    } else {
        let t = rest.char_indices().skip(1).find(|(_, x)| *x == '町' || *x == '村').map(|(i, x)| i + x.len_utf8())?;
        rest.split_at(t)
    };
    Some(Address { prefecture, municipality, town: &tail[..town_end(tail)] })
}

/// Where the 町域 ends: at the first number (Arabic, full-width or kanji) followed by 丁目, 番,
/// 号, a dash or the end; kanji numerals inside place names (三田, 九段) are kept.
fn town_end(s: &str) -> usize {
    let is_num = |c: char| c.is_ascii_digit() || ('０'..='９').contains(&c) || "一二三四五六七八九十〇".contains(c);
    let chars: Vec<(usize, char)> = s.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        if is_num(chars[i].1) {
            let mut j = i;
            while j < chars.len() && is_num(chars[j].1) {
                j += 1;
            }
            let next = &s[chars.get(j).map_or(s.len(), |c| c.0)..];
            if next.is_empty() || ["丁目", "番", "号", "-", "－", "‐", "ー", "の"].iter().any(|m| next.starts_with(m))
            {
                return chars[i].0;
            }
            i = j;
        } else {
            i += 1;
        }
    }
    s.len()
}

/// Parses `YYYY-MM-DD`, `YYYY/MM/DD` or `YYYYMMDD` into (year, month, day).
pub fn parse_date(v: &str) -> Option<(i32, u32, u32)> {
    let digits: String = v.chars().filter(|c| c.is_ascii_digit()).collect();
    let parts: Vec<&str> = v.split(['-', '/']).collect();
    let (y, m, d) = if parts.len() == 3 {
        (parts[0].parse().ok()?, parts[1].parse().ok()?, parts[2].get(..2).unwrap_or(parts[2]).parse().ok()?)
    } else if digits.len() == 8 && digits.len() == v.len() {
        (digits[..4].parse().ok()?, digits[4..6].parse().ok()?, digits[6..].parse().ok()?)
    } else {
        return None;
    };
    ((1..=12).contains(&m) && (1..=31).contains(&d)).then_some((y, m, d))
}

const ICD10_CHAPTERS: [(&str, &str, &str); 22] = [
    ("A00", "B99", "I"),
    ("C00", "D48", "II"),
    ("D50", "D89", "III"),
    ("E00", "E90", "IV"),
    ("F00", "F99", "V"),
    ("G00", "G99", "VI"),
    ("H00", "H59", "VII"),
    ("H60", "H95", "VIII"),
    ("I00", "I99", "IX"),
    ("J00", "J99", "X"),
    ("K00", "K93", "XI"),
    ("L00", "L99", "XII"),
    ("M00", "M99", "XIII"),
    ("N00", "N99", "XIV"),
    ("O00", "O99", "XV"),
    ("P00", "P96", "XVI"),
    ("Q00", "Q99", "XVII"),
    ("R00", "R99", "XVIII"),
    ("S00", "T98", "XIX"),
    ("V01", "Y98", "XX"),
    ("Z00", "Z99", "XXI"),
    ("U00", "U99", "XXII"),
];

/// The ICD-10 chapter (`IX (I00-I99)`) of a 3-character category, or `None` outside every chapter.
pub fn icd10_chapter(cat: &str) -> Option<&'static str> {
    const LABELS: [&str; 22] = [
        "I (A00-B99)",
        "II (C00-D48)",
        "III (D50-D89)",
        "IV (E00-E90)",
        "V (F00-F99)",
        "VI (G00-G99)",
        "VII (H00-H59)",
        "VIII (H60-H95)",
        "IX (I00-I99)",
        "X (J00-J99)",
        "XI (K00-K93)",
        "XII (L00-L99)",
        "XIII (M00-M99)",
        "XIV (N00-N99)",
        "XV (O00-O99)",
        "XVI (P00-P96)",
        "XVII (Q00-Q99)",
        "XVIII (R00-R99)",
        "XIX (S00-T98)",
        "XX (V01-Y98)",
        "XXI (Z00-Z99)",
        "XXII (U00-U99)",
    ];
    ICD10_CHAPTERS.iter().zip(LABELS).find(|((lo, hi, _), _)| *lo <= cat && cat <= *hi).map(|(_, l)| l)
}
