//! The public statistics search (K2): counts by a few dimensions, answered only from one table
//! protected once, jointly, before publication.
//!
//! Why this is safe against differencing: every answer the search can give — any choice of
//! dimensions to break down by, any filter to a sub-population, any margin — is a cell of one
//! N-dimensional cube with all its margins, and that cube went through the publication check as a
//! whole (O1 primary suppression, O9 secondary suppression chosen by LP over every row, column and
//! grand total relation of the cube, and the LP interval audit of every suppressed cell). The search
//! computes nothing: it looks cells up. So whatever set of queries an attacker runs, what they learn
//! is a subset of the published cube, whose audit already proved that no suppressed cell can be
//! narrowed below the protection interval by any linear combination of the published cells. A cube
//! that does not pass is not published at all ([`StatsRelease::build`] fails).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::DisclosureError;
use crate::api::check_table;
use crate::decl::Declaration;
use crate::report::Mode;
use crate::table::RawTable;

/// The label of the margin (total) level in the released cube.
pub const TOTAL: &str = "計";

/// The O8 label every answer carries.
pub const LABEL: &str = "本表は認定作成事業者が保有する医療情報から独自に作成した集計であり、公的統計とは異なる / made by the certified creator from the medical information it holds; not official statistics";

/// One dimension of the statistics search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsDim {
    /// Machine name (query parameter).
    pub name: String,
    /// Japanese label.
    pub label_ja: String,
    /// English label.
    pub label_en: String,
    /// Interior levels in display order (the total is the extra last position).
    pub levels: Vec<String>,
}

/// One counted unit: its level on each dimension and the unit's identity (a patient key), so a
/// patient is counted once per finest cell.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Unit {
    /// Level per dimension, in the order of the dimensions.
    pub levels: Vec<String>,
    /// Who is counted (never published; only the count of distinct keys is).
    pub key: String,
}

/// The published cube: dimensions, every cell with all margins (None = suppressed), and the
/// evidence that it passed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsRelease {
    /// Title (Japanese).
    pub title: String,
    /// What is counted, Japanese.
    pub measure_ja: String,
    /// What is counted, English.
    pub measure_en: String,
    /// Dimensions.
    pub dims: Vec<StatsDim>,
    /// Cells row-major over dims (last fastest), each dimension with its total at index `levels.len()`.
    pub cells: Vec<Option<i64>>,
    /// Cells suppressed as primary (O1) and secondary (O9).
    pub primary: usize,
    /// Secondary suppressions.
    pub secondary: usize,
    /// SHA-256 of the protected table as checked.
    pub table_sha256: String,
    /// The checker's one-line summary.
    pub summary: String,
    /// The synthetic-data note when the source is the synthetic population.
    pub note: Option<String>,
    /// When it was built (RFC 3339).
    pub built_at: String,
}

/// A query: break down by these dimensions, restrict others to one level each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// Dimensions to show every level of (rows of the answer).
    pub by: Vec<String>,
    /// Dimension → one level (a sub-population).
    pub filter: BTreeMap<String, String>,
}

/// One row of an answer: the levels and the published value (None = suppressed, shown as X).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AnswerRow {
    /// (dimension, level) for every dimension of the cube; a dimension neither broken down nor
    /// filtered is at its total.
    pub levels: Vec<(String, String)>,
    /// The published count, or None when suppressed.
    pub value: Option<i64>,
}

impl StatsRelease {
    /// Counts distinct units per finest cell, checks the cube with O1 and O9 (suppress mode) and
    /// returns it only when it passed, with suppressed cells blanked.
    pub fn build(
        title: &str,
        measure: (&str, &str),
        dims: Vec<StatsDim>,
        units: impl IntoIterator<Item = Unit>,
        note: Option<String>,
        built_at: &str,
    ) -> Result<StatsRelease, DisclosureError> {
        let nd = dims.len();
        let mut sets: BTreeMap<Vec<String>, BTreeSet<String>> = BTreeMap::new();
        for u in units {
            if u.levels.len() != nd {
                return Err(DisclosureError::Declaration(format!(
                    "a unit has {} levels for {nd} dimensions",
                    u.levels.len()
                )));
            }
            for (d, l) in dims.iter().zip(&u.levels) {
                if !d.levels.contains(l) {
                    return Err(DisclosureError::Declaration(format!("{}: level {l:?} is not declared", d.name)));
                }
            }
            sets.entry(u.levels).or_default().insert(u.key);
        }
        // Long CSV of every interior combination (zeros included, so the level order is the declared one).
        let mut csv = String::new();
        for d in &dims {
            csv.push_str(&d.name);
            csv.push(',');
        }
        csv.push_str("patients\n");
        let interior: usize = dims.iter().map(|d| d.levels.len()).product();
        for i in 0..interior {
            let combo = combo_of(&dims, i);
            for l in &combo {
                csv.push_str(&csv_field(l));
                csv.push(',');
            }
            csv.push_str(&sets.get(&combo).map_or(0, BTreeSet::len).to_string());
            csv.push('\n');
        }
        let mut decl = format!(
            "title = {title:?}\ncount_column = \"patients\"\ntotal_label = {TOTAL:?}\n\
             user_made_label = {LABEL:?}\n[protection]\npercent = 0.0\nabsolute = 3.0\n"
        );
        for d in &dims {
            decl.push_str(&format!("[[dimension]]\ncolumn = {:?}\nkind = \"other\"\n", d.name));
        }
        let decl = Declaration::from_toml(&decl)?;
        let raw = RawTable::from_csv_str("stats.csv", &csv)?;
        let sha = hex::encode(Sha256::digest(csv.as_bytes()));
        let c = check_table(&raw, &sha, &decl, None, Mode::Suppress, &[])?;
        if !c.report.passed {
            return Err(DisclosureError::Declaration(format!(
                "the statistics cube does not pass the publication check and is not published: {}",
                c.report.summary()
            )));
        }
        // The checker's cube keeps levels in first-appearance order, which is ours (every combination
        // is written); map its cells onto ours all the same, by labels, so nothing depends on that.
        let mut cells = vec![None; dims.iter().map(|d| d.levels.len() + 1).product()];
        for (idx, st) in c.status.iter().enumerate() {
            let coords = c.cube.coords(idx);
            let mut mine = Vec::with_capacity(nd);
            for (d, (cd, &k)) in c.cube.dims.iter().zip(&coords).enumerate() {
                let p = if k == cd.total() {
                    dims[d].levels.len()
                } else {
                    dims[d].levels.iter().position(|l| *l == cd.levels[k]).expect("level declared")
                };
                mine.push(p);
            }
            let i = index_of(&dims, &mine);
            cells[i] = (!st.suppressed()).then_some(c.cube.values[idx]);
        }
        Ok(StatsRelease {
            title: title.into(),
            measure_ja: measure.0.into(),
            measure_en: measure.1.into(),
            dims,
            cells,
            primary: c.report.totals.primary_cells,
            secondary: c.report.totals.secondary_cells,
            table_sha256: c.report.table_sha256.clone(),
            summary: c.report.summary(),
            note,
            built_at: built_at.into(),
        })
    }

    /// Answers a query by looking up cells of the protected cube (never by computing).
    pub fn answer(&self, q: &Query) -> Result<Vec<AnswerRow>, DisclosureError> {
        let find = |name: &str| {
            self.dims
                .iter()
                .position(|d| d.name == name)
                .ok_or_else(|| DisclosureError::Declaration(format!("no dimension {name:?}")))
        };
        let mut fixed: Vec<Option<usize>> = vec![None; self.dims.len()];
        for (name, level) in &q.filter {
            let d = find(name)?;
            let p = if level == TOTAL {
                self.dims[d].levels.len()
            } else {
                self.dims[d]
                    .levels
                    .iter()
                    .position(|l| l == level)
                    .ok_or_else(|| DisclosureError::Declaration(format!("{name}: no level {level:?}")))?
            };
            fixed[d] = Some(p);
        }
        let mut by = Vec::new();
        for name in &q.by {
            let d = find(name)?;
            if fixed[d].is_some() {
                return Err(DisclosureError::Declaration(format!("{name} is both broken down and filtered")));
            }
            if !by.contains(&d) {
                by.push(d);
            }
        }
        // Every combination of the broken-down dimensions' levels, each with its total too.
        let mut rows = Vec::new();
        let sizes: Vec<usize> = by.iter().map(|&d| self.dims[d].levels.len() + 1).collect();
        let n: usize = sizes.iter().product();
        for i in 0..n {
            let mut coords: Vec<usize> =
                fixed.iter().enumerate().map(|(d, f)| f.unwrap_or(self.dims[d].levels.len())).collect();
            let mut r = i;
            for (k, &d) in by.iter().enumerate().rev() {
                coords[d] = r % sizes[k];
                r /= sizes[k];
            }
            let levels = coords
                .iter()
                .enumerate()
                .map(|(d, &c)| (self.dims[d].name.clone(), self.level(d, c).to_owned()))
                .collect();
            rows.push(AnswerRow { levels, value: self.cells[index_of(&self.dims, &coords)] });
        }
        Ok(rows)
    }

    /// The label of position `c` of dimension `d` (the total's label at the end).
    pub fn level(&self, d: usize, c: usize) -> &str {
        self.dims[d].levels.get(c).map_or(TOTAL, String::as_str)
    }

    /// The whole protected cube as CSV (suppressed cells as `X`).
    pub fn to_csv(&self) -> String {
        let mut out = String::new();
        for d in &self.dims {
            out.push_str(&d.name);
            out.push(',');
        }
        out.push_str("patients\n");
        for (i, v) in self.cells.iter().enumerate() {
            let coords = coords_of(&self.dims, i);
            for (d, &c) in coords.iter().enumerate() {
                out.push_str(&csv_field(self.level(d, c)));
                out.push(',');
            }
            out.push_str(&v.map_or("X".to_owned(), |v| v.to_string()));
            out.push('\n');
        }
        out
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_owned() }
}

fn combo_of(dims: &[StatsDim], mut i: usize) -> Vec<String> {
    let mut out = vec![String::new(); dims.len()];
    for d in (0..dims.len()).rev() {
        let n = dims[d].levels.len();
        out[d] = dims[d].levels[i % n].clone();
        i /= n;
    }
    out
}

fn index_of(dims: &[StatsDim], coords: &[usize]) -> usize {
    coords.iter().zip(dims).fold(0, |acc, (&c, d)| acc * (d.levels.len() + 1) + c)
}

fn coords_of(dims: &[StatsDim], mut i: usize) -> Vec<usize> {
    let mut out = vec![0; dims.len()];
    for d in (0..dims.len()).rev() {
        let n = dims[d].levels.len() + 1;
        out[d] = i % n;
        i /= n;
    }
    out
}

/// The ICD-10 chapter of a code (I–XXII) with its Japanese name, by the code's letter and number.
pub fn icd10_chapter(code: &str) -> Option<&'static str> {
    let code = code.trim().to_ascii_uppercase();
    let mut ch = code.chars();
    let letter = ch.next()?;
    let num: u32 = code.get(1..3)?.parse().ok()?;
    let k = (letter, num);
    let between = |a: (char, u32), b: (char, u32)| a <= k && k <= b;
    CHAPTERS.iter().find(|(a, b, _)| between(*a, *b)).map(|c| c.2)
}

/// An ICD-10 category position: its letter and two-digit number.
type CodeAt = (char, u32);

/// ICD-10 chapters: first and last (letter, number) and the label shown.
const CHAPTERS: [(CodeAt, CodeAt, &str); 22] = [
    (('A', 0), ('B', 99), "I 感染症及び寄生虫症"),
    (('C', 0), ('D', 48), "II 新生物"),
    (('D', 50), ('D', 89), "III 血液及び造血器の疾患並びに免疫機構の障害"),
    (('E', 0), ('E', 90), "IV 内分泌、栄養及び代謝疾患"),
    (('F', 0), ('F', 99), "V 精神及び行動の障害"),
    (('G', 0), ('G', 99), "VI 神経系の疾患"),
    (('H', 0), ('H', 59), "VII 眼及び付属器の疾患"),
    (('H', 60), ('H', 95), "VIII 耳及び乳様突起の疾患"),
    (('I', 0), ('I', 99), "IX 循環器系の疾患"),
    (('J', 0), ('J', 99), "X 呼吸器系の疾患"),
    (('K', 0), ('K', 93), "XI 消化器系の疾患"),
    (('L', 0), ('L', 99), "XII 皮膚及び皮下組織の疾患"),
    (('M', 0), ('M', 99), "XIII 筋骨格系及び結合組織の疾患"),
    (('N', 0), ('N', 99), "XIV 腎尿路生殖器系の疾患"),
    (('O', 0), ('O', 99), "XV 妊娠、分娩及び産じょく"),
    (('P', 0), ('P', 96), "XVI 周産期に発生した病態"),
    (('Q', 0), ('Q', 99), "XVII 先天奇形、変形及び染色体異常"),
    (('R', 0), ('R', 99), "XVIII 症状、徴候及び異常臨床所見・異常検査所見で他に分類されないもの"),
    (('S', 0), ('T', 98), "XIX 損傷、中毒及びその他の外因の影響"),
    (('V', 1), ('Y', 98), "XX 傷病及び死亡の外因"),
    (('Z', 0), ('Z', 99), "XXI 健康状態に影響を及ぼす要因及び保健サービスの利用"),
    (('U', 0), ('U', 99), "XXII 特殊目的用コード"),
];

/// Every chapter label, in chapter order.
pub fn icd10_chapters() -> Vec<String> {
    CHAPTERS.iter().map(|c| c.2.to_owned()).collect()
}
