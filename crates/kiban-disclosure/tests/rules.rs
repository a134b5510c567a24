//! Behaviour of the rules, the secondary suppression and its audit, differencing and the workflow.

use kiban_disclosure::api::{CheckOutputArgs, check_output, check_table, demo, demo_rows};
use kiban_disclosure::areas::AreaTable;
use kiban_disclosure::audit::{AuditMethod, AuditOptions, audit};
use kiban_disclosure::decl::{Declaration, DimensionKind, Protection};
use kiban_disclosure::history::{PublishedTable, append_history, read_history};
use kiban_disclosure::report::Mode;
use kiban_disclosure::rules::{RuleId, Severity, check};
use kiban_disclosure::suppress::{Method, SuppressOptions, method, protect, protect_hypercube, uses_lp};
use kiban_disclosure::table::{Cube, Dim, RawTable};
use kiban_disclosure::workflow::{ProductStatus, approve};
use proptest::prelude::*;

const LABEL: &str = "user_made_label = \"利用者が独自に作成した統計\"\n";

fn decl(extra: &str, dims: &[(&str, &str)]) -> Declaration {
    let mut t = format!("count_column = \"n\"\n{LABEL}{extra}\n");
    for (c, k) in dims {
        t.push_str(&format!("[[dimension]]\ncolumn = \"{c}\"\nkind = \"{k}\"\n"));
    }
    Declaration::from_toml(&t).expect("decl")
}

fn cube(sizes: &[usize], vals: &[i64]) -> Cube {
    let dims = sizes
        .iter()
        .enumerate()
        .map(|(d, &n)| Dim {
            name: format!("d{d}"),
            kind: DimensionKind::Other,
            levels: (0..n).map(|i| format!("L{i}")).collect(),
        })
        .collect();
    let mut c = Cube::zeros(dims, "計");
    let mut k = 0;
    for i in 0..c.len() {
        if !c.is_margin(i) {
            c.values[i] = vals[k % vals.len()];
            k += 1;
        }
    }
    c.fill_margins();
    c
}

#[test]
fn o1_cell_under_ten_is_suppressed_and_zero_is_allowed() {
    let raw = RawTable::from_csv_str("t", "s,n\nA,9\nB,0\nC,10\n").expect("csv");
    let d = decl("", &[("s", "other")]);
    let (c, _) = raw.to_cube(&d).expect("cube");
    let (f, primary) = check(&c, &d, None);
    let o1: Vec<_> = f.iter().filter(|x| x.rule == RuleId::O1).collect();
    assert_eq!(o1.len(), 1);
    assert_eq!(o1[0].threshold, Some(10));
    assert_eq!(o1[0].cell.as_ref().map(|c| c.to_string()), Some("[s=A]".to_string()));
    assert_eq!(primary.iter().filter(|p| **p).count(), 1);
}

#[test]
fn o2_population_bands_apply_20_and_10_and_hide_small_areas() {
    let areas = AreaTable::from_csv_str(
        "synthetic_areas.csv",
        "code,name,population\nS1,a,1999\nS2,b,2000\nS3,c,24999\nS4,d,25000\n",
    )
    .expect("areas");
    assert!(areas.synthetic);
    let raw = RawTable::from_csv_str("t", "a,n\nS1,100\nS2,19\nS3,20\nS4,9\n").expect("csv");
    let d = decl("", &[("a", "secondary_area")]);
    let (c, _) = raw.to_cube(&d).expect("cube");
    let (f, _) = check(&c, &d, Some(&areas));
    let got: Vec<(String, Option<i64>)> =
        f.iter().map(|x| (x.cell.as_ref().map(|c| c.to_string()).unwrap_or_default(), x.threshold)).collect();
    assert_eq!(got, vec![("[a=S1]".into(), Some(2000)), ("[a=S2]".into(), Some(20)), ("[a=S4]".into(), Some(10))]);
}

#[test]
fn o2_population_table_errors_name_the_row() {
    let e = AreaTable::from_csv_str("a.csv", "code,name,population\nS1,a,100\nS1,b,200\nS2,c,many\n").unwrap_err();
    let s = e.to_string();
    assert!(s.contains("row 3") && s.contains("duplicate"), "{s}");
    assert!(s.contains("row 4") && s.contains("many"), "{s}");
    let ok = AreaTable::from_csv_str("a.csv", "code,name,population\nS1,a,100\n").expect("ok");
    let missing = ok.require_all(&["S1".to_string(), "S9".to_string()]).unwrap_err().to_string();
    assert!(missing.contains("S9") && !missing.contains("\"S1\""), "{missing}");
}

/// (cell, threshold, value) of every finding of `rule`, in cell order.
fn cells_of(f: &[kiban_disclosure::rules::Finding], rule: RuleId) -> Vec<(String, Option<i64>, Option<i64>)> {
    f.iter()
        .filter(|x| x.rule == rule)
        .map(|x| (x.cell.as_ref().map(|c| c.to_string()).unwrap_or_default(), x.threshold, x.value))
        .collect()
}

#[test]
fn o3_facility_counts_under_3_are_hidden_and_zero_is_allowed() {
    let raw = RawTable::from_csv_str("t", "attr,n\n病院,0\n診療所,1\n薬局,2\n歯科,3\n").expect("csv");
    let d = decl("measure = \"facilities\"", &[("attr", "facility_attribute")]);
    let (c, _) = raw.to_cube(&d).expect("cube");
    let (f, primary) = check(&c, &d, None);
    assert_eq!(
        cells_of(&f, RuleId::O3),
        vec![("[attr=診療所]".into(), Some(3), Some(1)), ("[attr=薬局]".into(), Some(3), Some(2))]
    );
    assert_eq!(primary.iter().filter(|p| **p).count(), 2);
    // Counts of 3 facilities are not under the O1 patient minimum: facilities are not patients.
    assert!(cells_of(&f, RuleId::O1).is_empty());
}

#[test]
fn o3_patient_cells_of_an_insurer_breakdown_need_3_contributors() {
    let csv = "ins,n,k\n国保,50,2\n協会,50,3\n組合,0,0\n共済,40,\n";
    let raw = RawTable::from_csv_str("t", csv).expect("csv");
    let d = decl("contributors_column = \"k\"", &[("ins", "insurer_type")]);
    let (c, _) = raw.to_cube(&d).expect("cube");
    let (f, primary) = check(&c, &d, None);
    // Two contributors hide a cell of 50 patients; zero patients (no contributors) may be shown.
    assert_eq!(cells_of(&f, RuleId::O3), vec![("[ins=国保]".into(), Some(3), Some(2))]);
    assert_eq!(primary.iter().filter(|p| **p).count(), 1);
    // Without the contributors column the rule cannot be checked, and the check says so.
    let blind = decl("", &[("ins", "insurer_type")]);
    let raw = RawTable::from_csv_str("t", "ins,n\n国保,50\n").expect("csv");
    let (c, _) = raw.to_cube(&blind).expect("cube");
    let f = check(&c, &blind, None).0;
    assert!(f.iter().any(|x| x.rule == RuleId::O3 && x.severity == Severity::Warning && x.cell.is_none()));
}

#[test]
fn o4_drug_thresholds_1000_oral_external_400_injection_when_patients_unknown() {
    let csv = "kind,n\n内服,999\n外用,1000\n注射,399\n";
    let raw = RawTable::from_csv_str("t", csv).expect("csv");
    let d = decl("measure = \"drug\"", &[("kind", "drug_kind")]);
    let (c, _) = raw.to_cube(&d).expect("cube");
    let (f, _) = check(&c, &d, None);
    assert_eq!(
        cells_of(&f, RuleId::O4),
        vec![("[kind=内服]".into(), Some(1000), Some(999)), ("[kind=注射]".into(), Some(400), Some(399))]
    );
    // 400 injections may be shown, 999 of an external drug may not.
    let raw = RawTable::from_csv_str("t", "kind,n\n注射,400\n外用,999\n").expect("csv");
    let (c, _) = raw.to_cube(&d).expect("cube");
    let got = cells_of(&check(&c, &d, None).0, RuleId::O4);
    assert_eq!(got, vec![("[kind=外用]".into(), Some(1000), Some(999))]);
    // A declared route without a drug dimension: an injection table of 399 is hidden, 400 shown.
    let inj = decl("measure = \"drug\"\ndrug_route = \"injection\"", &[("y", "other")]);
    let raw = RawTable::from_csv_str("t", "y,n\n2024,399\n2025,400\n").expect("csv");
    let (c, _) = raw.to_cube(&inj).expect("cube");
    assert_eq!(cells_of(&check(&c, &inj, None).0, RuleId::O4), vec![("[y=2024]".into(), Some(400), Some(399))]);
}

#[test]
fn o4_drug_figure_hidden_when_its_known_patient_count_is_under_10() {
    // Known patient counts replace the volume thresholds: 5,000 prescriptions of 9 patients are hidden,
    // 50 prescriptions of 10 patients are shown; an unknown count falls back to 1,000.
    let csv = "kind,n,p\n内服,5000,9\n外用,50,10\n注射,300,\n";
    let raw = RawTable::from_csv_str("t", csv).expect("csv");
    let d = decl("measure = \"drug\"\npatient_count_column = \"p\"", &[("kind", "drug_kind")]);
    let (c, _) = raw.to_cube(&d).expect("cube");
    let (f, primary) = check(&c, &d, None);
    let got = cells_of(&f, RuleId::O4);
    assert!(got.contains(&("[kind=内服]".into(), Some(10), Some(5000))), "{got:?}");
    assert!(got.contains(&("[kind=注射]".into(), Some(400), Some(300))), "{got:?}");
    assert!(!got.iter().any(|x| x.0 == "[kind=外用]"), "{got:?}");
    let idx = |l: &str| (0..c.len()).find(|&i| c.cell_ref(i).to_string() == format!("[kind={l}]")).expect("cell");
    assert!(primary[idx("内服")] && !primary[idx("外用")]);
}

#[test]
fn o5_rehabilitation_under_100_hidden_unless_10_patients_are_known() {
    let csv = "y,n,p\n2023,99,\n2024,100,\n2025,40,10\n2026,500,9\n";
    let raw = RawTable::from_csv_str("t", csv).expect("csv");
    let d = decl("measure = \"rehabilitation\"\npatient_count_column = \"p\"", &[("y", "other")]);
    let (c, _) = raw.to_cube(&d).expect("cube");
    let (f, _) = check(&c, &d, None);
    let got = cells_of(&f, RuleId::O5);
    assert_eq!(
        got.into_iter().filter(|x| !x.0.contains('計')).collect::<Vec<_>>(),
        vec![("[y=2023]".into(), Some(100), Some(99)), ("[y=2026]".into(), Some(10), Some(500))]
    );
}

#[test]
fn o6_single_years_under_20_only_when_declared() {
    let raw = RawTable::from_csv_str("t", "age,n\n3,20\n20-24,30\n").expect("csv");
    let strict = decl("", &[("age", "age_band")]);
    let (c, _) = raw.to_cube(&strict).expect("cube");
    assert_eq!(check(&c, &strict, None).0.iter().filter(|f| f.rule == RuleId::O6).count(), 1);
    let allowed = decl("single_years_under_20 = true", &[("age", "age_band")]);
    assert_eq!(check(&c, &allowed, None).0.iter().filter(|f| f.rule == RuleId::O6).count(), 0);
}

#[test]
fn o7_area_by_insurer_type_allowed_only_with_consent() {
    let raw = RawTable::from_csv_str("t", "a,i,n\nS1,国保,30\nS1,協会,40\n").expect("csv");
    let areas = AreaTable::from_csv_str("synthetic.csv", "code,name,population\nS1,a,99999\n").expect("areas");
    let no = decl("", &[("a", "secondary_area"), ("i", "insurer_type")]);
    let (c, _) = raw.to_cube(&no).expect("cube");
    assert!(check(&c, &no, Some(&areas)).0.iter().any(|f| f.rule == RuleId::O7));
    let yes = decl("insurer_consent = true", &[("a", "secondary_area"), ("i", "insurer_type")]);
    assert!(!check(&c, &yes, Some(&areas)).0.iter().any(|f| f.rule == RuleId::O7));
}

#[test]
fn o9_three_d_suppression_passes_lp_audit_and_hides_values() {
    let c = cube(&[4, 3, 3], &[25, 3, 40, 12, 18, 30, 7, 55, 22, 60, 14, 9]);
    let d = decl("", &[("d0", "other"), ("d1", "other"), ("d2", "other")]);
    let (_, primary) = check(&c, &d, None);
    assert!(primary.iter().any(|p| *p));
    let sup =
        protect(std::slice::from_ref(&c), std::slice::from_ref(&primary), &d.protection, SuppressOptions::default());
    assert!(sup.unprotected.is_empty());
    let a = audit(std::slice::from_ref(&c), &sup, &d.protection, AuditOptions::default()).expect("audit");
    assert!(a.passed);
    assert!(a.entries.iter().all(|e| e.method == AuditMethod::Lp));
    // Every primary's LP interval covers the requirement, and is not a single point.
    for e in a.entries.iter().filter(|e| e.primary) {
        assert!(e.min <= e.value as f64 - e.required_lower + 1e-6 && e.max >= e.value as f64 + e.required_upper - 1e-6);
        assert!(e.max - e.min > 0.0);
    }
}

#[test]
fn o9_audit_detects_recoverable_cell_without_secondary_suppression() {
    let c = cube(&[2, 2], &[3, 20, 30, 40]);
    let d = decl("", &[("d0", "other"), ("d1", "other")]);
    let (_, primary) = check(&c, &d, None);
    let mut sup =
        protect(std::slice::from_ref(&c), std::slice::from_ref(&primary), &d.protection, SuppressOptions::default());
    // Undo the secondaries: the primary is then recoverable from its row total.
    for s in sup.status[0].iter_mut() {
        if *s == kiban_disclosure::suppress::CellStatus::Secondary {
            *s = kiban_disclosure::suppress::CellStatus::Published;
        }
    }
    let a = audit(std::slice::from_ref(&c), &sup, &d.protection, AuditOptions::default()).expect("audit");
    assert!(!a.passed);
    let e = a.entries.iter().find(|e| e.primary).expect("primary");
    assert!((e.max - e.min).abs() < 1e-9 && (e.min - 3.0).abs() < 1e-9);
}

#[test]
fn o9_witness_audit_agrees_with_lp_on_large_components() {
    let c = cube(&[6, 5, 4], &[25, 3, 40, 12, 18, 30, 7, 55, 22, 60, 14, 9, 33]);
    let p = Protection::default();
    let primary: Vec<bool> = (0..c.len()).map(|i| c.values[i] > 0 && c.values[i] < 10).collect();
    let sup = protect(std::slice::from_ref(&c), std::slice::from_ref(&primary), &p, SuppressOptions::default());
    let lp = audit(std::slice::from_ref(&c), &sup, &p, AuditOptions { lp_max_component: usize::MAX }).expect("lp");
    let w = audit(std::slice::from_ref(&c), &sup, &p, AuditOptions { lp_max_component: 0 }).expect("witness");
    assert!(lp.passed && w.passed);
    for (a, b) in lp.entries.iter().zip(&w.entries).filter(|(a, _)| a.primary) {
        assert_eq!(b.method, AuditMethod::Witness);
        // The witness interval lies inside the exact LP interval.
        assert!(a.min <= b.min + 1e-6 && b.max <= a.max + 1e-6, "{a:?} {b:?}");
    }
}

#[test]
fn o9_linked_tables_sharing_a_margin_pass_the_joint_audit() {
    // Table A: age × sex; table B: age × area; they share the age margin.
    let mk = |second: &str, vals: &[i64]| {
        let dims = vec![
            Dim {
                name: "age".into(),
                kind: DimensionKind::AgeBand,
                levels: vec!["0-4".into(), "5-9".into(), "10-14".into()],
            },
            Dim { name: second.into(), kind: DimensionKind::Other, levels: vec!["x".into(), "y".into(), "z".into()] },
        ];
        let mut c = Cube::zeros(dims, "計");
        let mut k = 0;
        for i in 0..c.len() {
            if !c.is_margin(i) {
                c.values[i] = vals[k];
                k += 1;
            }
        }
        c.fill_margins();
        c
    };
    let a = mk("sex", &[4, 30, 20, 25, 26, 40, 33, 21, 50]);
    let b = mk("area", &[20, 18, 16, 35, 30, 26, 50, 12, 42]);
    assert_eq!(a.values[a.index(&[0, 3])], b.values[b.index(&[0, 3])]);
    let tables = vec![a, b];
    let primary: Vec<Vec<bool>> = tables.iter().map(|t| t.values.iter().map(|&v| v > 0 && v < 10).collect()).collect();
    let p = Protection::default();
    let sup = protect(&tables, &primary, &p, SuppressOptions::default());
    assert!(sup.unprotected.is_empty());
    let au = audit(&tables, &sup, &p, AuditOptions::default()).expect("audit");
    assert!(au.passed, "{:#?}", au.entries);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn o9_every_primary_meets_protection_after_suppression(
        sizes in prop::collection::vec(2usize..5, 2..4),
        vals in prop::collection::vec(prop_oneof![1i64..10, 10i64..80], 64),
        percent in 0.0f64..30.0,
        absolute in 1.0f64..5.0,
    ) {
        let c = cube(&sizes, &vals);
        let p = Protection { percent, absolute, ..Protection::default() };
        let primary: Vec<bool> = c.values.iter().map(|&v| v > 0 && v < 10).collect();
        let sup = protect(std::slice::from_ref(&c), std::slice::from_ref(&primary), &p, SuppressOptions::default());
        let a = audit(std::slice::from_ref(&c), &sup, &p, AuditOptions { lp_max_component: usize::MAX }).expect("audit");
        for e in a.entries.iter().filter(|e| e.primary) {
            let claimed = !sup.unprotected.iter().any(|&(_, i)| i == e.index);
            if claimed {
                prop_assert!(e.protected, "{e:?}");
                prop_assert_eq!(e.method, AuditMethod::Lp);
            }
        }
        // Unprotectable cells are rare with strictly positive counts.
        prop_assert!(sup.unprotected.len() <= primary.iter().filter(|p| **p).count());
    }
}

#[test]
fn o9_differencing_against_history_is_flagged() {
    let d = decl("", &[("age", "age_band"), ("s", "sex")]);
    let earlier =
        RawTable::from_csv_str("t1", "age,s,n\n0-19,男,40\n0-19,女,50\n20-39,男,60\n20-39,女,70\n").expect("csv");
    let e = check_table(&earlier, "", &d, None, Mode::Suppress, &[]).expect("check");
    assert!(e.report.passed);
    let rec = PublishedTable::from_cube(&e.cube, &e.status, "p1", "earlier", &e.report.table_sha256);
    let dir = tempfile::tempdir().expect("tmp");
    let h = dir.path().join("history.jsonl");
    append_history(&h, &rec).expect("append");
    let history = read_history(&h).expect("read");
    // Same population, ages 0-14 instead of 0-19: 0-19 minus 0-14 reveals 15-19 = 4 men.
    let later =
        RawTable::from_csv_str("t2", "age,s,n\n0-14,男,36\n0-14,女,40\n15-39,男,64\n15-39,女,80\n").expect("csv");
    let l = check_table(&later, "", &d, None, Mode::Check, &history).expect("check");
    let diffs: Vec<_> = l.report.findings.iter().filter(|f| f.rule == RuleId::Differencing).collect();
    assert!(!diffs.is_empty());
    assert!(diffs.iter().all(|f| f.threshold == Some(10) && f.value.is_some_and(|v| v > 0 && v < 10)));
    assert!(diffs.iter().any(|f| f.cell.as_ref().is_some_and(|c| c.to_string() == "[age=0-14, s=男]")));
    // Without history the later table alone passes.
    assert!(check_table(&later, "", &d, None, Mode::Check, &[]).expect("check").report.passed);
}

#[test]
fn d9_only_a_passing_product_is_approved_and_bound_to_its_sha() {
    let d = decl("", &[("s", "other")]);
    let raw = RawTable::from_csv_str("t", "s,n\nA,3\nB,30\nC,40\n").expect("csv");
    let chk = check_table(&raw, "", &d, None, Mode::Check, &[]).expect("check");
    assert_eq!(chk.report.status, ProductStatus::Intermediate);
    assert!(approve(&chk.report, "確認者A", chrono::Utc::now()).is_err());
    let sup = check_table(&raw, "", &d, None, Mode::Suppress, &[]).expect("suppress");
    assert_eq!(sup.report.status, ProductStatus::Final);
    let rec = approve(&sup.report, "確認者A", chrono::Utc::now()).expect("approve");
    assert_eq!(rec.table_sha256.len(), 64);
    assert_eq!(rec.table_sha256, sup.report.table_sha256);
    assert!(!sup.csv.contains(",3,"), "a suppressed value leaked into the CSV: {}", sup.csv);
}

#[test]
fn round_mode_rounds_published_cells_to_the_declared_base() {
    let d = decl("rounding_base = 5", &[("s", "other")]);
    let raw = RawTable::from_csv_str("t", "s,n\nA,12\nB,33\n").expect("csv");
    let r = check_table(&raw, "", &d, None, Mode::Round, &[]).expect("round");
    assert!(
        r.csv.contains("A,10,published") && r.csv.contains("B,35,published") && r.csv.contains("計,45,published"),
        "{}",
        r.csv
    );
}

#[test]
fn check_output_writes_report_html_and_protected_csv() {
    let dir = tempfile::tempdir().expect("tmp");
    let t = dir.path().join("t.csv");
    std::fs::write(&t, "age_band,sex,n\n0-4,男,12\n0-4,女,3\n5-9,男,40\n5-9,女,25\n").expect("w");
    let dd = dir.path().join("d.toml");
    std::fs::write(
        &dd,
        format!("count_column = \"n\"\n{LABEL}[[dimension]]\ncolumn = \"age_band\"\nkind = \"age_band\"\n[[dimension]]\ncolumn = \"sex\"\nkind = \"sex\"\n"),
    )
    .expect("w");
    let out = dir.path().join("out");
    let o = check_output(&CheckOutputArgs {
        table: t,
        decl: dd,
        areas: None,
        mode: Mode::Suppress,
        history: None,
        out: out.clone(),
    })
    .expect("run");
    assert!(o.report.passed);
    let html = std::fs::read_to_string(out.join("report.html")).expect("html");
    assert!(
        html.contains("公表物確認レポート")
            && html.contains("class=\"primary\"")
            && html.contains("class=\"secondary\"")
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).expect("json")).expect("parse");
    assert_eq!(json["findings"][0]["rule"], "O1");
    assert!(std::fs::read_to_string(out.join("protected.csv")).expect("csv").contains("0-4,女,X,primary"));
}

#[test]
fn demo_builds_a_synthetic_table_and_protects_it() {
    let s = demo(&demo_rows(3000, 7)).expect("demo");
    assert!(s.primary > 0 && s.secondary > 0, "{}", s.summary);
    assert!(s.passed, "{}\n{}", s.summary, s.report_json);
    assert!(s.report_json.contains("synthetic"));
}

/// Writes a one-sheet workbook from rows of cells (numbers where a cell parses as one).
fn write_xlsx(path: &std::path::Path, sheet: &str, rows: &[&[&str]]) {
    let mut wb = rust_xlsxwriter::Workbook::new();
    let ws = wb.add_worksheet();
    ws.set_name(sheet).expect("sheet name");
    for (r, row) in rows.iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            let (r, c) = (r as u32, c as u16);
            if v.is_empty() {
                continue;
            }
            match v.parse::<f64>() {
                Ok(x) => ws.write_number(r, c, x).map(|_| ()),
                Err(_) => ws.write_string(r, c, *v).map(|_| ()),
            }
            .expect("write");
        }
    }
    wb.save(path).expect("save");
}

#[test]
fn input_xlsx_wide_with_margins_is_checked_and_suppressed() {
    let dir = tempfile::tempdir().expect("tmp");
    let t = dir.path().join("t.xlsx");
    write_xlsx(
        &t,
        "年齢×性別",
        &[
            &["age_band", "男", "女", "計"],
            &["0-4", "12", "5", "17"],
            &["5-9", "20", "30", "50"],
            &["計", "32", "35", "67"],
        ],
    );
    let dd = dir.path().join("d.toml");
    std::fs::write(
        &dd,
        format!("count_column = \"n\"\nlayout = \"wide\"\nsheet = \"年齢×性別\"\nwide_dimension = \"sex\"\n{LABEL}[[dimension]]\ncolumn = \"age_band\"\nkind = \"age_band\"\n[[dimension]]\ncolumn = \"sex\"\nkind = \"sex\"\n"),
    )
    .expect("w");
    let out = dir.path().join("out");
    let o = check_output(&CheckOutputArgs {
        table: t,
        decl: dd,
        areas: None,
        mode: Mode::Suppress,
        history: None,
        out: out.clone(),
    })
    .expect("run");
    assert!(o.report.passed);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).expect("json")).expect("parse");
    assert_eq!(json["findings"][0]["rule"], "O1");
    let csv = std::fs::read_to_string(out.join("protected.csv")).expect("csv");
    assert!(csv.contains("0-4,女,X,primary"), "{csv}");
    assert!(!csv.contains(",5,"), "the suppressed 5 leaked: {csv}");
}

#[test]
fn input_xlsx_errors_name_the_sheet_and_cell() {
    let dir = tempfile::tempdir().expect("tmp");
    let t = dir.path().join("bad.xlsx");
    write_xlsx(&t, "集計", &[&["age_band", "", "n"], &["0-4", "男", "12"]]);
    let e = RawTable::read(&t).expect_err("blank header").to_string();
    assert!(e.contains("集計") && e.contains("B1") && e.contains("blank column name"), "{e}");

    write_xlsx(&t, "集計", &[&["age_band", "sex", "n"], &["0-4", "男", "12"], &["0-4", "女", "12", "99"]]);
    let e = RawTable::read(&t).expect_err("stray value").to_string();
    assert!(e.contains("D3") && e.contains("outside the header"), "{e}");

    write_xlsx(&t, "集計", &[&["age_band", "sex", "n"], &["0-4", "男", "12"], &["0-4", "女", "十二"]]);
    let raw = RawTable::read(&t).expect("readable");
    let d = decl("", &[("age_band", "age_band"), ("sex", "sex")]);
    let e = RawTable::read_xlsx(&t, Some("Sheet9")).expect_err("no such sheet").to_string();
    assert!(e.contains("Sheet9") && e.contains("集計"), "{e}");
    let e = raw.to_cube(&d).expect_err("count not a number").to_string();
    assert!(e.contains("集計") && e.contains("3") && e.contains("十二"), "{e}");
}

#[test]
fn o9_lp_suppression_costs_no_more_than_the_hypercube_method() {
    let c = cube(&[6, 5, 4], &[25, 3, 40, 12, 18, 30, 7, 55, 22, 60, 14, 9, 33]);
    let p = Protection { percent: 0.0, absolute: 1.0, ..Protection::default() };
    let primary: Vec<bool> = c.values.iter().map(|&v| v > 0 && v < 10).collect();
    let (cs, ps) = (std::slice::from_ref(&c), std::slice::from_ref(&primary));
    let lp = protect(cs, ps, &p, SuppressOptions::default());
    let hc = protect_hypercube(cs, ps, &p, SuppressOptions::default());
    assert!(uses_lp(cs, SuppressOptions::default()));
    let (l, h) = (lp.totals(cs, 0), hc.totals(cs, 0));
    assert!(l.secondary_value <= h.secondary_value, "LP {l:?} vs hypercube {h:?}");
    let a = audit(cs, &lp, &p, AuditOptions { lp_max_component: usize::MAX }).expect("audit");
    assert!(a.passed && lp.unprotected.is_empty());
    // The LP method's perturbations alone prove every primary (the audit's fallback for big tables).
    let w = audit(cs, &lp, &p, AuditOptions { lp_max_component: 0 }).expect("witness audit");
    assert!(w.passed, "{:?}", w.entries.iter().find(|e| !e.protected));
}

#[test]
fn o9_modular_method_protects_tables_above_the_lp_size_and_passes_both_audits() {
    // 2-D and 3-D tables taken by the modular method (sub-table LPs per primary) instead of one LP.
    let vals: Vec<i64> = (0..37).map(|i| if i == 5 { 4 } else { 12 + (i * 17) % 80 }).collect();
    for sizes in [&[45usize, 35][..], &[14, 10, 9][..]] {
        let c = cube(sizes, &vals);
        let p = Protection { percent: 0.0, absolute: 1.0, ..Protection::default() };
        let primary: Vec<bool> = c.values.iter().map(|&v| v > 0 && v < 10).collect();
        let (cs, ps) = (std::slice::from_ref(&c), std::slice::from_ref(&primary));
        // Tables this small use the whole-table LP by default; the modular method is forced here.
        let o = SuppressOptions { exact_max_cells: 1000, ..SuppressOptions::default() };
        assert!(c.len() > o.exact_max_cells && method(cs, o) == Method::Modular);
        let m = protect(cs, ps, &p, o);
        assert!(m.unprotected.is_empty() && m.witnesses.is_empty() && !m.perturbations.is_empty());
        // The exact attacker intervals by LP, and the sub-table perturbations alone, each prove it.
        let a = audit(cs, &m, &p, AuditOptions { lp_max_component: usize::MAX }).expect("audit");
        assert!(a.passed, "{sizes:?}: {:?}", a.entries.iter().find(|e| !e.protected));
        let w = audit(cs, &m, &p, AuditOptions { lp_max_component: 0 }).expect("witness audit");
        assert!(w.passed && w.entries.iter().all(|e| e.method != AuditMethod::Lp), "{sizes:?}");
        // No costlier than one hypercube per primary.
        let hc = protect_hypercube(cs, ps, &p, o);
        let (mt, ht) = (m.totals(cs, 0), hc.totals(cs, 0));
        assert!(mt.secondary_value <= ht.secondary_value, "{sizes:?}: modular {mt:?} vs hypercube {ht:?}");
    }
}

#[test]
fn o9_lp_out_of_time_falls_back_and_still_protects() {
    let c = cube(&[6, 5, 4], &[25, 3, 40, 12, 18, 30, 7, 55, 22, 60, 14, 9, 33]);
    let p = Protection::default();
    let primary: Vec<bool> = c.values.iter().map(|&v| v > 0 && v < 10).collect();
    let (cs, ps) = (std::slice::from_ref(&c), std::slice::from_ref(&primary));
    // No time for whole-table LPs: sub-cube LPs; no LP time at all: hypercubes.
    for (full, lp) in [(0.0, 1e9), (0.0, 0.0)] {
        let o = SuppressOptions { full_seconds: full, lp_seconds: lp, ..SuppressOptions::default() };
        let sup = protect(cs, ps, &p, o);
        if lp == 0.0 {
            assert!(!sup.witnesses.is_empty() && sup.perturbations.is_empty());
        }
        let a = audit(cs, &sup, &p, AuditOptions { lp_max_component: usize::MAX }).expect("audit");
        let claimed: Vec<_> =
            a.entries.iter().filter(|e| e.primary && !sup.unprotected.contains(&(0, e.index))).collect();
        assert!(!claimed.is_empty() && claimed.iter().all(|e| e.protected), "full={full} lp={lp}");
    }
}

#[test]
fn o9_audit_refuses_a_tampered_perturbation_witness() {
    let c = cube(&[6, 5, 4], &[25, 3, 40, 12, 18, 30, 7, 55, 22, 60, 14, 9, 33]);
    let p = Protection { percent: 0.0, absolute: 1.0, ..Protection::default() };
    let primary: Vec<bool> = c.values.iter().map(|&v| v > 0 && v < 10).collect();
    let (cs, ps) = (std::slice::from_ref(&c), std::slice::from_ref(&primary));
    let mut sup = protect(cs, ps, &p, SuppressOptions::default());
    let witness_only = AuditOptions { lp_max_component: 0 };
    assert!(audit(cs, &sup, &p, witness_only).expect("audit").passed);
    // Break the equations: keep only the primary's own change in every perturbation moving it.
    let target = sup.perturbations[0].cell;
    for w in sup.perturbations.iter_mut().filter(|w| w.cell == target) {
        w.deltas.retain(|d| d.1 == target);
    }
    let a = audit(cs, &sup, &p, witness_only).expect("audit");
    assert!(!a.passed);
    assert!(a.entries.iter().any(|e| e.index == target && !e.protected));
}

mod public_site {
    use std::collections::{BTreeMap, HashSet};

    use kiban_disclosure::catalogue::{Database, ItemKind, RealValues, describe, dummy_csv};
    use kiban_disclosure::stats::{Query, StatsDim, StatsRelease, TOTAL, Unit, icd10_chapter};

    fn dims() -> Vec<StatsDim> {
        let d = |n: &str, l: &[&str]| StatsDim {
            name: n.into(),
            label_ja: n.into(),
            label_en: n.into(),
            levels: l.iter().map(|s| s.to_string()).collect(),
        };
        vec![d("year", &["2023", "2024"]), d("sex", &["男", "女"]), d("area", &["A", "B", "C"])]
    }

    fn units() -> Vec<Unit> {
        // Cell (2024, 女, C) holds 3 patients; the others 20–40.
        let mut v = Vec::new();
        let mut n = 0;
        for (y, s, a, k) in [
            ("2023", "男", "A", 30),
            ("2023", "男", "B", 25),
            ("2023", "男", "C", 20),
            ("2023", "女", "A", 31),
            ("2023", "女", "B", 26),
            ("2023", "女", "C", 22),
            ("2024", "男", "A", 33),
            ("2024", "男", "B", 27),
            ("2024", "男", "C", 21),
            ("2024", "女", "A", 40),
            ("2024", "女", "B", 29),
            ("2024", "女", "C", 3),
        ] {
            for _ in 0..k {
                n += 1;
                v.push(Unit { levels: vec![y.into(), s.into(), a.into()], key: format!("p{n}") });
                // The same patient twice in a cell counts once.
                v.push(Unit { levels: vec![y.into(), s.into(), a.into()], key: format!("p{n}") });
            }
        }
        v
    }

    #[test]
    fn k2_o1_o9_stats_cube_is_protected_once_and_answers_are_lookups_of_its_cells() {
        let rel = StatsRelease::build("t", ("患者数", "patients"), dims(), units(), None, "2026-01-01").unwrap();
        assert!(rel.primary == 1 && rel.secondary >= 3, "{} {}", rel.primary, rel.secondary);
        let q = |by: &[&str], f: &[(&str, &str)]| Query {
            by: by.iter().map(|s| s.to_string()).collect(),
            filter: f.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
        };
        let small = rel.answer(&q(&[], &[("year", "2024"), ("sex", "女"), ("area", "C")])).unwrap();
        assert_eq!(small[0].value, None, "the cell of 3 is suppressed");
        let all = rel.answer(&q(&[], &[])).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].value, Some(307), "grand total: distinct patients per cell, added up");
        let rows = rel.answer(&q(&["area"], &[("year", "2023")])).unwrap();
        assert_eq!(rows.len(), 4, "three areas and their total");
        assert_eq!(rows[3].levels[2].1, TOTAL);
        // Every answer row is a cell of the one protected table.
        let csv = rel.to_csv();
        for r in rel.answer(&q(&["year", "sex", "area"], &[])).unwrap() {
            let line = format!(
                "{},{}",
                r.levels.iter().map(|(_, l)| l.as_str()).collect::<Vec<_>>().join(","),
                r.value.map_or("X".into(), |v| v.to_string())
            );
            assert!(csv.lines().any(|l| l == line), "{line}");
        }
        assert!(rel.answer(&q(&["year"], &[("year", "2023")])).is_err(), "a dimension both broken down and filtered");
        assert!(rel.answer(&q(&[], &[("area", "Z")])).is_err(), "an unknown level names itself");
    }

    #[test]
    fn k2_icd10_chapters_follow_the_code_ranges() {
        assert!(icd10_chapter("I10").unwrap().starts_with("IX "));
        assert!(icd10_chapter("E119").unwrap().starts_with("IV "));
        assert!(icd10_chapter("D50").unwrap().starts_with("III "));
        assert!(icd10_chapter("D48").unwrap().starts_with("II "));
        assert!(icd10_chapter("H60").unwrap().starts_with("VIII "));
        assert!(icd10_chapter("T98").unwrap().starts_with("XIX "));
        assert_eq!(icd10_chapter("?"), None);
    }

    #[test]
    fn k1_dummy_rows_have_the_schema_and_redraw_every_real_value() {
        let cols = [("provider_id", "Utf8"), ("icd10", "Utf8"), ("diagnosis_date", "Date32"), ("main", "Boolean")];
        let db = Database {
            name: "diagnoses".into(),
            title_ja: "傷病名".into(),
            title_en: "Diagnoses".into(),
            patients: 1,
            records: 1,
            providers: 1,
            period_from: Some("2024-01-01".into()),
            period_to: Some("2024-01-03".into()),
            updated_on: None,
            batches: 1,
            items: cols.iter().map(|(c, t)| describe(c, t)).collect(),
        };
        // Two of three days of the period are real: every dummy date must be the third.
        let mut real = RealValues::new();
        real.insert("diagnosis_date".into(), HashSet::from(["2024-01-01".to_owned(), "2024-01-02".to_owned()]));
        let csv = dummy_csv(&db, 30, 9, &real);
        let mut lines = csv.lines();
        assert_eq!(lines.next(), Some("provider_id,icd10,diagnosis_date,main"));
        for l in lines {
            let f: Vec<&str> = l.split(',').collect();
            assert!(f[0].starts_with("DUMMY-"), "{l}");
            assert!(icd10_chapter(f[1]).is_some() || f[1].len() >= 3, "{l}");
            assert_eq!(f[2], "2024-01-03", "{l}");
            assert!(f[3] == "true" || f[3] == "false");
        }
        assert_eq!(db.items[3].kind, ItemKind::Vocabulary);
        assert_eq!(db.items[1].code_system.as_deref(), Some("ICD-10 (2013)"));
    }
}
