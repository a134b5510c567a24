//! The publication rules O1–O8 (004 第7-2): cell findings that force primary suppression and
//! table findings that suppression cannot fix.

use serde::{Deserialize, Serialize};

use crate::areas::{AreaTable, PopulationBand};
use crate::decl::{Declaration, DimensionKind, DrugRoute, MeasureKind};
use crate::table::{CellRef, Cube};

/// The rule a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum RuleId {
    /// Minimum cell of 10 patients (0 allowed).
    O1,
    /// 二次医療圏 population bands.
    O2,
    /// Facility/insurer attribute counts under 3.
    O3,
    /// Drug figures.
    O4,
    /// Rehabilitation figures.
    O5,
    /// Age bands.
    O6,
    /// Area granularity and area × insurer type.
    O7,
    /// User-made statistics labelled.
    O8,
    /// Secondary suppression / recoverability.
    O9,
    /// Differencing against an earlier publication (O9 across outputs).
    Differencing,
}

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The cell must not be shown: primary suppression fixes it.
    Suppress,
    /// The table as designed breaks a rule; suppression cannot fix it (change the design).
    Error,
    /// Could not be checked or needs a human look.
    Warning,
}

/// One finding: the rule, the cell (if any), the threshold, and text in Japanese and English.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Rule broken.
    pub rule: RuleId,
    /// Severity.
    pub severity: Severity,
    /// Index of the table among linked tables (0 for one table).
    #[serde(default)]
    pub table: usize,
    /// The cell, when the finding is about one cell.
    pub cell: Option<CellRef>,
    /// Flat cell index in the cube, when about one cell.
    #[serde(skip)]
    pub index: Option<usize>,
    /// The threshold the rule applies (cells under it are not shown).
    pub threshold: Option<i64>,
    /// The value seen.
    pub value: Option<i64>,
    /// Japanese explanation.
    pub message_ja: String,
    /// English explanation.
    pub message_en: String,
}

impl Finding {
    fn cell(cube: &Cube, idx: usize, rule: RuleId, threshold: i64, value: i64, ja: String, en: String) -> Self {
        Finding {
            rule,
            severity: Severity::Suppress,
            table: 0,
            cell: Some(cube.cell_ref(idx)),
            index: Some(idx),
            threshold: Some(threshold),
            value: Some(value),
            message_ja: ja,
            message_en: en,
        }
    }
    /// A table-level finding.
    pub fn table(rule: RuleId, severity: Severity, ja: impl Into<String>, en: impl Into<String>) -> Self {
        Finding {
            rule,
            severity,
            table: 0,
            cell: None,
            index: None,
            threshold: None,
            value: None,
            message_ja: ja.into(),
            message_en: en.into(),
        }
    }
}

/// An age level parsed from a label: `lo..=hi`, or `lo` and over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgeRange {
    /// Youngest age in the level.
    pub lo: u32,
    /// Oldest age, `None` for "and over".
    pub hi: Option<u32>,
}

/// Parses `20-24`, `20～24歳`, `100+`, `100歳以上`, `5歳`, `85-`.
pub fn parse_age(label: &str) -> Option<AgeRange> {
    let s: String = label.trim().replace(['～', '〜', '~', '－', '–'], "-").replace("歳", "").replace(' ', "");
    if let Some(x) = s.strip_suffix('+').or_else(|| s.strip_suffix("以上")).or_else(|| s.strip_suffix('-')) {
        return x.parse().ok().map(|lo| AgeRange { lo, hi: None });
    }
    if let Some((a, b)) = s.split_once('-') {
        let (lo, hi) = (a.parse().ok()?, b.parse().ok()?);
        return (lo <= hi).then_some(AgeRange { lo, hi: Some(hi) });
    }
    s.parse().ok().map(|v| AgeRange { lo: v, hi: Some(v) })
}

/// Minimum shown value for a drug route (O4 ②).
pub fn drug_threshold(route: DrugRoute) -> i64 {
    match route {
        DrugRoute::Oral | DrugRoute::External => 1_000,
        DrugRoute::Injection => 400,
    }
}

/// Runs O1–O8 on one cube. Returns the findings (cell findings carry `Severity::Suppress` and make
/// the cell a primary suppression) and the primary flags per cell.
pub fn check(cube: &Cube, decl: &Declaration, areas: Option<&AreaTable>) -> (Vec<Finding>, Vec<bool>) {
    let mut f = Vec::new();
    let n = cube.len();
    let mut primary = vec![false; n];
    let area_dim = cube.dims.iter().position(|d| d.kind == DimensionKind::SecondaryArea);
    let drug_dim = cube.dims.iter().position(|d| d.kind == DimensionKind::DrugKind);
    let attr_dim =
        cube.dims.iter().position(|d| matches!(d.kind, DimensionKind::FacilityAttribute | DimensionKind::InsurerType));

    // Table-level rules first.
    if let (Some(ad), None) = (area_dim, areas)
        && decl.measure == MeasureKind::Patients
    {
        {
            f.push(Finding::table(
                RuleId::O2,
                Severity::Error,
                format!("次元「{}」は二次医療圏ですが人口表(--areas)が与えられていないためO2を確認できません", cube.dims[ad].name),
                format!("dimension {:?} is a secondary medical area but no population table (--areas) was given; O2 cannot be checked", cube.dims[ad].name),
            ));
        }
    }
    for d in &cube.dims {
        match d.kind {
            DimensionKind::Municipality | DimensionKind::PostalCode => f.push(Finding::table(
                RuleId::O7,
                Severity::Error,
                format!("次元「{}」は二次医療圏より細かい地域区分です。最も狭い地域区分は二次医療圏です", d.name),
                format!("dimension {:?} is finer than a secondary medical area, the finest area allowed", d.name),
            )),
            DimensionKind::AgeBand => {
                for l in &d.levels {
                    let bad = match parse_age(l) {
                        None => Some(("年齢区分として解釈できません", "cannot be read as an age band")),
                        Some(AgeRange { lo, hi: None }) => (lo % 5 != 0 || lo > 100).then_some((
                            "5歳区分に揃っていないか、100歳以上が一つの区分になっていません",
                            "not on 5-year bounds, or ages 100+ are not one band",
                        )),
                        Some(AgeRange { lo, hi: Some(hi) }) if lo == hi => (!(lo < 20 && decl.single_years_under_20))
                            .then_some((
                                "各歳区分は20歳未満かつ研究上必要と宣言された場合のみ可能です",
                                "single years are allowed only under 20 when declared (single_years_under_20)",
                            )),
                        Some(AgeRange { lo, hi: Some(hi) }) => (lo >= 100 || lo % 5 != 0 || (hi - lo + 1) % 5 != 0)
                            .then_some((
                                "5歳毎の区分ではありません(100歳以上は一つの区分)",
                                "not a 5-year band (100 and over must be one band)",
                            )),
                    };
                    if let Some((ja, en)) = bad {
                        let mut x = Finding::table(
                            RuleId::O6,
                            Severity::Error,
                            format!("年齢区分「{l}」: {ja}"),
                            format!("age level {l:?}: {en}"),
                        );
                        x.threshold = Some(5);
                        x.cell = Some(CellRef(vec![(d.name.clone(), l.clone())]));
                        f.push(x);
                    }
                }
            }
            _ => {}
        }
    }
    let has_area = cube.dims.iter().any(|d| d.kind == DimensionKind::SecondaryArea);
    let has_ins = cube.dims.iter().any(|d| d.kind == DimensionKind::InsurerType);
    if has_area && has_ins && !decl.insurer_consent {
        f.push(Finding::table(
            RuleId::O7,
            Severity::Error,
            "二次医療圏と保険者種別のクロス集計は保険者の同意がない限り公表できません",
            "a secondary-area table must not be crossed with insurer type unless insurers consented (insurer_consent)",
        ));
    }
    match decl.user_made_label.as_deref().map(str::trim) {
        Some(l) if !l.is_empty() => {}
        _ => f.push(Finding::table(
            RuleId::O8,
            Severity::Error,
            "利用者が独自に作成・加工した統計である旨の表示(user_made_label)がありません",
            "no label saying these are statistics made by the user, distinct from official statistics (user_made_label)",
        )),
    }
    if attr_dim.is_some() && decl.measure != MeasureKind::Facilities && cube.contributors.is_none() {
        f.push(Finding::table(
            RuleId::O3,
            Severity::Warning,
            "医療機関等・保険者の属性による集計ですが、各セルの医療機関数(contributors_column)が宣言されていないためO3を確認できません",
            "table is broken down by a facility/insurer attribute but no contributors_column is declared; O3 cannot be checked",
        ));
    }
    if decl.measure == MeasureKind::Drug && drug_dim.is_none() && decl.drug_route.is_none() {
        f.push(Finding::table(
            RuleId::O4,
            Severity::Warning,
            "薬剤区分(内服・外用・注射)が不明なため、閾値1,000を適用しました",
            "drug route unknown (no drug_kind dimension nor drug_route); applied the 1,000 threshold",
        ));
    }

    // Cell rules.
    for idx in 0..n {
        let v = cube.values[idx];
        let c = cube.coords(idx);
        let mut push = |x: Finding, primary: &mut Vec<bool>| {
            primary[idx] = true;
            f.push(x);
        };
        match decl.measure {
            MeasureKind::Patients => {
                let area = area_dim.filter(|&d| c[d] != cube.dims[d].total()).map(|d| cube.label(d, c[d]).to_string());
                match (area, areas) {
                    (Some(a), Some(at)) => {
                        let pop = at.get(&a).map(|x| x.population);
                        match pop.map(PopulationBand::of) {
                            Some(PopulationBand::Under2000) | None => push(
                                Finding::cell(
                                    cube,
                                    idx,
                                    RuleId::O2,
                                    2_000,
                                    v,
                                    format!(
                                        "二次医療圏「{a}」の人口が2,000人未満(または不明)のため患者数を表示できません"
                                    ),
                                    format!(
                                        "area {a:?} has population under 2,000 (or unknown): no patient counts may be shown"
                                    ),
                                ),
                                &mut primary,
                            ),
                            Some(PopulationBand::Under25000) if v > 0 && v < 20 => push(
                                Finding::cell(
                                    cube,
                                    idx,
                                    RuleId::O2,
                                    20,
                                    v,
                                    format!("人口2,000人以上25,000人未満の二次医療圏「{a}」で患者数{v}が20未満です"),
                                    format!("area {a:?} (population 2,000–<25,000): count {v} is under 20"),
                                ),
                                &mut primary,
                            ),
                            Some(PopulationBand::Large) if v > 0 && v < 10 => push(
                                Finding::cell(
                                    cube,
                                    idx,
                                    RuleId::O2,
                                    10,
                                    v,
                                    format!("人口25,000人以上の二次医療圏「{a}」で患者数{v}が10未満です"),
                                    format!("area {a:?} (population ≥25,000): count {v} is under 10"),
                                ),
                                &mut primary,
                            ),
                            _ => {}
                        }
                    }
                    _ => {
                        if v > 0 && v < 10 {
                            push(
                                Finding::cell(
                                    cube,
                                    idx,
                                    RuleId::O1,
                                    10,
                                    v,
                                    format!("患者数{v}が最小集計単位10未満です(0は可)"),
                                    format!("patient count {v} is under the minimum cell of 10 (0 allowed)"),
                                ),
                                &mut primary,
                            );
                        }
                    }
                }
            }
            MeasureKind::Facilities => {
                if v > 0 && v < 3 {
                    push(
                        Finding::cell(
                            cube,
                            idx,
                            RuleId::O3,
                            3,
                            v,
                            format!("医療機関等・保険者の数{v}が3未満です"),
                            format!("facility/insurer count {v} is under 3"),
                        ),
                        &mut primary,
                    );
                }
            }
            MeasureKind::Drug => {
                let known = cube.patients.as_ref().and_then(|p| p[idx]);
                if let Some(p) = known {
                    if p < 10 {
                        push(
                            Finding::cell(
                                cube,
                                idx,
                                RuleId::O4,
                                10,
                                v,
                                format!("対応する患者数{p}が10未満であるため処方数等を表示できません"),
                                format!("matching patient count {p} is under 10: the drug figure may not be shown"),
                            ),
                            &mut primary,
                        );
                    }
                } else {
                    let route = match drug_dim {
                        Some(d) if c[d] != cube.dims[d].total() => DrugRoute::parse(cube.label(d, c[d])),
                        Some(d) => {
                            // A margin over routes: the strictest threshold among its routes.
                            cube.dims[d]
                                .levels
                                .iter()
                                .filter_map(|l| DrugRoute::parse(l))
                                .max_by_key(|r| drug_threshold(*r))
                        }
                        None => decl.drug_route,
                    };
                    let t = route.map(drug_threshold).unwrap_or(1_000);
                    if v < t {
                        push(
                            Finding::cell(
                                cube,
                                idx,
                                RuleId::O4,
                                t,
                                v,
                                format!("患者数が不明な薬剤の集計値{v}が{t}未満です"),
                                format!("drug figure {v} with unknown patient count is under {t}"),
                            ),
                            &mut primary,
                        );
                    }
                }
            }
            MeasureKind::Rehabilitation => {
                let known = cube.patients.as_ref().and_then(|p| p[idx]);
                if let Some(p) = known {
                    if p < 10 {
                        push(
                            Finding::cell(
                                cube,
                                idx,
                                RuleId::O5,
                                10,
                                v,
                                format!(
                                    "対応する患者数{p}が10未満であるためリハビリテーションの集計値を表示できません"
                                ),
                                format!(
                                    "matching patient count {p} is under 10: the rehabilitation figure may not be shown"
                                ),
                            ),
                            &mut primary,
                        );
                    }
                } else if v < 100 {
                    push(
                        Finding::cell(
                            cube,
                            idx,
                            RuleId::O5,
                            100,
                            v,
                            format!("患者数が不明なリハビリテーションの集計値{v}が100未満です"),
                            format!("rehabilitation figure {v} with unknown patient count is under 100"),
                        ),
                        &mut primary,
                    );
                }
            }
        }
        if let (Some(_), Some(cs)) = (attr_dim, &cube.contributors)
            && let Some(k) = cs[idx]
            && v > 0
            && k < 3
            && decl.measure != MeasureKind::Facilities
        {
            push(
                Finding::cell(
                    cube,
                    idx,
                    RuleId::O3,
                    3,
                    k,
                    format!("医療機関等・保険者の属性による集計で、該当する医療機関等の数{k}が3未満です"),
                    format!(
                        "cell of a facility/insurer-attribute breakdown has {k} contributing facilities/insurers, under 3"
                    ),
                ),
                &mut primary,
            );
        }
    }
    (f, primary)
}
