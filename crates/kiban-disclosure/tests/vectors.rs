//! Data-driven publication-rule cases (O1–O8): each directory under `tests/vectors/` holds
//! `table.csv`, `decl.toml`, optionally `areas.csv`, and `expected.json` (findings of check mode and
//! the outcome of suppress mode). Regenerate with `UPDATE_EXPECT=1 cargo test -p kiban-disclosure`.

use std::path::Path;

use kiban_disclosure::api::check_table;
use kiban_disclosure::areas::AreaTable;
use kiban_disclosure::decl::Declaration;
use kiban_disclosure::report::Mode;
use kiban_disclosure::table::RawTable;
use serde_json::{Value, json};

fn run_case(dir: &Path) -> Value {
    run_case_on(dir, RawTable::read(&dir.join("table.csv")).expect("table"))
}

/// Writes `table.csv` as a real .xlsx workbook (numbers as numbers, a Japanese sheet name).
fn csv_to_xlsx(csv: &Path, out: &Path) {
    let mut wb = rust_xlsxwriter::Workbook::new();
    let ws = wb.add_worksheet();
    ws.set_name("集計表").expect("sheet name");
    let text = std::fs::read_to_string(csv).expect("csv");
    for (r, line) in text.lines().enumerate() {
        for (c, field) in line.split(',').enumerate() {
            let (r, c) = (r as u32, c as u16);
            match field.parse::<f64>() {
                Ok(x) if r > 0 => ws.write_number(r, c, x).map(|_| ()),
                _ => ws.write_string(r, c, field).map(|_| ()),
            }
            .expect("write cell");
        }
    }
    wb.save(out).expect("save xlsx");
}

fn run_case_on(dir: &Path, raw: RawTable) -> Value {
    let decl = Declaration::from_toml(&std::fs::read_to_string(dir.join("decl.toml")).expect("decl")).expect("decl");
    let areas = dir.join("areas.csv").exists().then(|| AreaTable::read(&dir.join("areas.csv")).expect("areas"));
    let checked = check_table(&raw, "", &decl, areas.as_ref(), Mode::Check, &[]).expect("check");
    let findings: Vec<Value> = checked
        .report
        .findings
        .iter()
        .map(|f| {
            json!({
                "rule": f.rule,
                "severity": f.severity,
                "cell": f.cell.as_ref().map(|c| c.to_string()),
                "threshold": f.threshold,
                "value": f.value,
            })
        })
        .collect();
    let sup = check_table(&raw, "", &decl, areas.as_ref(), Mode::Suppress, &[]).expect("suppress");
    let suppressed: Vec<String> = (0..sup.cube.len())
        .filter(|&i| sup.status[i].suppressed())
        .map(|i| format!("{} {:?}", sup.cube.cell_ref(i), sup.status[i]))
        .collect();
    json!({
        "check_passed": checked.report.passed,
        "findings": findings,
        "suppress_passed": sup.report.passed,
        "suppress_audit_passed": sup.report.audit.as_ref().map(|a| a.passed),
        "suppressed": suppressed,
    })
}

#[test]
fn o1_to_o8_publication_rule_vectors_from_csv_and_xlsx() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    let update = std::env::var("UPDATE_EXPECT").is_ok();
    let mut dirs: Vec<_> = std::fs::read_dir(&root).expect("vectors dir").map(|e| e.expect("entry").path()).collect();
    dirs.sort();
    let mut failures = Vec::new();
    let mut n = 0;
    for dir in dirs.iter().filter(|d| d.is_dir()) {
        n += 1;
        let got = run_case(dir);
        // The same table as an .xlsx workbook must give the same result.
        let tmp = tempfile::tempdir().expect("tmp");
        let xlsx = tmp.path().join("table.xlsx");
        csv_to_xlsx(&dir.join("table.csv"), &xlsx);
        let from_xlsx = run_case_on(dir, RawTable::read(&xlsx).expect("xlsx table"));
        if from_xlsx != got {
            failures.push(format!("{}: the .xlsx copy gives {from_xlsx} but the CSV {got}", dir.display()));
        }
        let exp_path = dir.join("expected.json");
        if update {
            std::fs::write(&exp_path, serde_json::to_string_pretty(&got).expect("json") + "\n").expect("write");
            continue;
        }
        let exp: Value = serde_json::from_str(
            &std::fs::read_to_string(&exp_path)
                .unwrap_or_else(|_| panic!("{} missing; run with UPDATE_EXPECT=1", exp_path.display())),
        )
        .expect("expected json");
        if exp != got {
            failures.push(format!(
                "{}:\nexpected {}\n     got {}",
                dir.display(),
                serde_json::to_string_pretty(&exp).unwrap_or_default(),
                serde_json::to_string_pretty(&got).unwrap_or_default()
            ));
        }
    }
    assert!(n >= 9, "expected at least 9 vector cases, found {n}");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
