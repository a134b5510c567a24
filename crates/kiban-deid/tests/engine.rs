//! The anonymization engine end to end on small tables (A1–A6).

mod common;

use std::collections::HashSet;

use common::{batch, class_sizes, column, names, policy};
use kiban_deid::{DeidError, Input, Output, RunOptions, anonymize};

const PEOPLE: &str = r#"
version = 1
name = "people"
[privacy]
k = 2
suppression_limit = 0.0
[hierarchies]
age = { builder = "age", widths = [10, 20], top = 90 }
sex = { builder = "flat" }
[[columns]]
name = "name"
role = "identifier"
[[columns]]
name = "insurer_no"
role = "id_code"
treatment = "token"
[[columns]]
name = "person_key"
role = "link_code"
[[columns]]
name = "age"
role = "quasi_identifier"
hierarchy = "age"
[[columns]]
name = "sex"
role = "quasi_identifier"
hierarchy = "sex"
[[columns]]
name = "card"
role = "financial"
[[columns]]
name = "dx"
role = "sensitive"
"#;

fn people() -> kiban_deid::io::Input {
    let rows: Vec<Vec<&str>> = vec![
        vec!["山田太郎", "12345678", "pk1", "31", "M", "4111", "I21"],
        vec!["佐藤花子", "22345678", "pk2", "35", "F", "4112", "E11"],
        vec!["鈴木一郎", "32345678", "pk3", "38", "M", "4113", "I10"],
        vec!["田中次郎", "42345678", "pk4", "52", "M", "4114", "J45"],
        vec!["高橋三郎", "12345678", "pk5", "57", "F", "4115", "I21"],
        vec!["伊藤四郎", "62345678", "pk6", "59", "M", "4116", "C34"],
    ];
    Input::Batches(vec![batch(&["name", "insurer_no", "person_key", "age", "sex", "card", "dx"], &rows)])
}

#[test]
fn a1_identifier_and_financial_columns_are_deleted() {
    let out = anonymize(&policy(PEOPLE), &people(), &Output::Memory, &RunOptions::default()).expect("runs");
    let cols = names(&out.batches);
    assert!(!cols.contains(&"name".to_owned()) && !cols.contains(&"card".to_owned()), "{cols:?}");
    assert_eq!(out.report.columns.iter().find(|c| c.name == "name").map(|c| c.action.as_str()), Some("deleted"));
}

#[test]
fn a2_id_codes_become_tokens_consistent_within_a_run_and_unlinkable_across_runs() {
    let p = policy(PEOPLE);
    let a = anonymize(&p, &people(), &Output::Memory, &RunOptions::default()).expect("runs");
    let b = anonymize(&p, &people(), &Output::Memory, &RunOptions::default()).expect("runs");
    let ta = column(&a.batches, "insurer_no");
    let tb = column(&b.batches, "insurer_no");
    assert!(ta.iter().all(|t| t.as_deref().is_some_and(|t| t.len() == 24 && !t.contains("2345678"))));
    // Same original (row 0 and row 4) → same token within the run; nothing shared between runs.
    assert_eq!(ta[0], ta[4]);
    assert_ne!(ta[0], ta[1]);
    let sa: HashSet<_> = ta.iter().collect();
    assert!(tb.iter().all(|t| !sa.contains(t)), "two runs must not share tokens");
}

#[test]
fn a3_link_codes_are_rekeyed_per_release_unless_the_caller_supplies_the_key() {
    let p = policy(PEOPLE);
    let a = anonymize(&p, &people(), &Output::Memory, &RunOptions::default()).expect("runs");
    let b = anonymize(&p, &people(), &Output::Memory, &RunOptions::default()).expect("runs");
    let (la, lb) = (column(&a.batches, "person_key"), column(&b.batches, "person_key"));
    assert!(la.iter().all(|v| !v.as_deref().unwrap_or("pk").starts_with("pk")));
    assert!(la.iter().zip(&lb).all(|(x, y)| x != y), "random per release: releases cannot be joined");
    let keyed =
        || RunOptions { rekey: Some(Box::new(|_c: &str, v: &str| format!("R-{}", v.len() * 7))), ..Default::default() };
    let c = anonymize(&p, &people(), &Output::Memory, &keyed()).expect("runs");
    let d = anonymize(&p, &people(), &Output::Memory, &keyed()).expect("runs");
    assert_eq!(column(&c.batches, "person_key"), column(&d.batches, "person_key"), "same release key joins");
}

#[test]
fn a5_output_is_k_anonymous_as_claimed() {
    let out = anonymize(&policy(PEOPLE), &people(), &Output::Memory, &RunOptions::default()).expect("runs");
    let sizes = class_sizes(&out.batches, &["age", "sex"]);
    assert!(sizes.iter().all(|&s| s >= 2), "{sizes:?}");
    assert_eq!(out.report.k_achieved, *sizes.iter().min().expect("classes"));
    // Optimum by hand (ARX Loss, 6 distinct ages): (age 10-year bands, sex '*') costs per record
    // (3-1)/(6-1) + 1 = 1.4; (age '*', sex kept) costs 1 + 0 = 1.0 and gives classes M:4, F:2;
    // (age 10-year, sex kept) has (30-39,F) = 1 → fails; 20-year bands = 10-year bands here.
    assert_eq!(out.report.levels, vec![("age".to_owned(), 3), ("sex".to_owned(), 0)]);
    assert!((out.report.information_loss - 0.5).abs() < 1e-9, "{}", out.report.information_loss);
    assert_eq!(column(&out.batches, "age")[0].as_deref(), Some("*"));
}

#[test]
fn a6_report_holds_no_original_codes_tokens_or_keys() {
    let out = anonymize(&policy(PEOPLE), &people(), &Output::Memory, &RunOptions::default()).expect("runs");
    let json = out.report.to_json();
    let html = out.report.to_html();
    let mut secrets: Vec<String> = column(&out.batches, "insurer_no").into_iter().flatten().collect();
    secrets.extend(column(&out.batches, "person_key").into_iter().flatten());
    secrets.extend(["12345678", "pk1", "山田太郎", "4111"].map(String::from));
    for s in secrets {
        assert!(!json.contains(&s) && !html.contains(&s), "report leaks {s}");
    }
}

#[test]
fn a5_suppression_limit_allows_removing_outliers_and_is_respected() {
    let text = PEOPLE.replace("k = 2\nsuppression_limit = 0.0", "k = 3\nsuppression_limit = 0.34");
    let out = anonymize(&policy(&text), &people(), &Output::Memory, &RunOptions::default()).expect("runs");
    let r = &out.report;
    assert!(r.records_suppressed as f64 <= 0.34 * 6.0, "{}", r.records_suppressed);
    assert_eq!(r.records_out, 6 - r.records_suppressed);
    assert!(class_sizes(&out.batches, &["age", "sex"]).iter().all(|&s| s >= 3));
}

#[test]
fn a5_no_solution_is_an_error_not_a_silent_release() {
    let text = PEOPLE.replace("k = 2", "k = 7");
    let err = anonymize(&policy(&text), &people(), &Output::Memory, &RunOptions::default()).unwrap_err();
    assert!(matches!(err, DeidError::NoSolution(_)), "{err}");
}

#[test]
fn a1_input_column_without_role_is_an_error_naming_it() {
    let input = Input::Batches(vec![batch(&["age", "sex", "extra"], &[vec!["30", "M", "x"]])]);
    let text = r#"
version = 1
name = "t"
[privacy]
k = 2
[hierarchies]
age = { builder = "age" }
[[columns]]
name = "age"
role = "quasi_identifier"
hierarchy = "age"
[[columns]]
name = "sex"
role = "keep"
"#;
    let err = anonymize(&policy(text), &input, &Output::Memory, &RunOptions::default()).unwrap_err().to_string();
    assert!(err.contains("extra") && err.contains("every column needs a role"), "{err}");
}

#[test]
fn a5_value_missing_from_hierarchy_follows_declared_rule() {
    let base = r#"
version = 1
name = "t"
[privacy]
k = 2
[hierarchies]
age = { builder = "age", widths = [10], missing = "RULE" }
[[columns]]
name = "age"
role = "quasi_identifier"
hierarchy = "age"
"#;
    // Two different uncovered values share the label '*' (regression: codes outnumber labels).
    let input = Input::Batches(vec![batch(&["age"], &[vec!["31"], vec!["33"], vec!["n/a"], vec!["?"]])]);
    let err = anonymize(&policy(&base.replace("RULE", "error")), &input, &Output::Memory, &RunOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("column age") && err.contains("hierarchy age") && !err.contains("n/a"), "{err}");
    let out = anonymize(&policy(&base.replace("RULE", "suppress")), &input, &Output::Memory, &RunOptions::default())
        .expect("runs");
    assert_eq!(out.report.records_suppressed_missing, 2);
    assert_eq!(out.report.records_out, 2);
    let out = anonymize(&policy(&base.replace("RULE", "star")), &input, &Output::Memory, &RunOptions::default())
        .expect("runs");
    // Both '*' records form a class of 2 beside 30-39 (2): level 1 is 2-anonymous, all 4 kept.
    assert_eq!(out.report.records_out, 4);
    assert_eq!(out.report.levels, vec![("age".to_owned(), 1)]);
}

#[test]
fn a4_rare_values_are_suppressed_per_table_and_per_group_and_numbers_top_coded() {
    let text = r#"
version = 1
name = "t"
[privacy]
k = 2
[hierarchies]
sex = { builder = "flat" }
[[columns]]
name = "sex"
role = "quasi_identifier"
hierarchy = "sex"
[[columns]]
name = "dx"
role = "rare"
min_count = 2
[[columns]]
name = "dxg"
role = "rare"
min_count = 2
group_by = ["sex"]
[[columns]]
name = "los"
role = "rare"
top = 60
"#;
    let rows = vec![
        vec!["M", "I21", "I21", "3"],
        vec!["M", "I21", "I21", "90"],
        vec!["F", "I21", "I21", "5"],
        vec!["F", "Q87", "Q87", "60"],
        vec!["F", "E11", "E11", "7"],
        vec!["F", "E11", "E11", "8"],
    ];
    let input = Input::Batches(vec![batch(&["sex", "dx", "dxg", "los"], &rows)]);
    let out = anonymize(&policy(text), &input, &Output::Memory, &RunOptions::default()).expect("runs");
    let s = |v: Vec<Option<String>>| v.into_iter().map(|x| x.unwrap_or_default()).collect::<Vec<_>>();
    assert_eq!(s(column(&out.batches, "dx")), ["I21", "I21", "I21", "*", "E11", "E11"]);
    // Within sex groups the single F/I21 is rare too.
    assert_eq!(s(column(&out.batches, "dxg")), ["I21", "I21", "*", "*", "E11", "E11"]);
    assert_eq!(s(column(&out.batches, "los")), ["3", ">=60", "5", ">=60", "7", "8"]);
    let dxg = out.report.columns.iter().find(|c| c.name == "dxg").expect("reported");
    assert_eq!(dxg.treated, Some(2));
    assert!(dxg.action.contains("groups of sex"), "{}", dxg.action);
}

#[test]
fn a4_rare_diagnosis_codes_are_generalized_up_their_hierarchy_until_they_reach_the_threshold() {
    let text = r#"
version = 1
name = "t"
[privacy]
k = 2
[hierarchies]
sex = { builder = "flat" }
icd10 = { builder = "icd10", missing = "star" }
[[columns]]
name = "sex"
role = "quasi_identifier"
hierarchy = "sex"
[[columns]]
name = "dx"
role = "rare"
min_count = 2
hierarchy = "icd10"
"#;
    // I21.0 and I21.4 are each rare but share the category I21: both become I21. E11.9 is common
    // and kept. J45.0 and J18.9 meet only at their chapter (X). C34.1 is alone up to its chapter and
    // a value outside the hierarchy has no ancestor: both are suppressed.
    let rows = vec![
        vec!["M", "I21.0"],
        vec!["F", "I21.4"],
        vec!["M", "E11.9"],
        vec!["F", "E11.9"],
        vec!["M", "C34.1"],
        vec!["F", "J45.0"],
        vec!["M", "J18.9"],
        vec!["F", "not-a-code"],
    ];
    let input = Input::Batches(vec![batch(&["sex", "dx"], &rows)]);
    let out = anonymize(&policy(text), &input, &Output::Memory, &RunOptions::default()).expect("runs");
    let dx: Vec<String> = column(&out.batches, "dx").into_iter().map(|x| x.unwrap_or_default()).collect();
    assert_eq!(dx, ["I21", "I21", "E11.9", "E11.9", "*", "X (J00-J99)", "X (J00-J99)", "*"]);
    // Every label that leaves is seen at least min_count times.
    for v in &dx {
        if v != "*" {
            assert!(dx.iter().filter(|x| *x == v).count() >= 2, "{v} is rare in the output");
        }
    }
    let c = out.report.columns.iter().find(|c| c.name == "dx").expect("reported");
    assert_eq!(c.treated, Some(6), "4 generalized + 2 suppressed");
    assert!(c.action.contains("generalized by hierarchy icd10") && c.action.contains("(4)"), "{}", c.action);
    // A hierarchy without min_count, or one not declared, is refused naming the column.
    let bad = text.replace("min_count = 2\n", "top = 9\n");
    let e = kiban_deid::Policy::from_toml(&bad, std::path::Path::new("."), &Default::default())
        .expect_err("needs min_count")
        .to_string();
    assert!(e.contains("dx") && e.contains("min_count"), "{e}");
    let bad = text.replace("hierarchy = \"icd10\"\n\"#", "hierarchy = \"icd9\"\n\"#");
    let bad = bad.replacen("hierarchy = \"icd10\"", "hierarchy = \"icd9\"", 1);
    assert!(kiban_deid::Policy::from_toml(&bad, std::path::Path::new("."), &Default::default()).is_err());
}

#[test]
fn a5_csv_and_parquet_files_round_trip_with_digests() {
    let dir = tempfile::tempdir().expect("tmp");
    let csv = dir.path().join("in.csv");
    std::fs::write(&csv, "age,sex\n31,M\n33,M\n35,F\n37,F\n").expect("write");
    let text = r#"
version = 1
name = "t"
[privacy]
k = 2
[hierarchies]
age = { builder = "age", widths = [10] }
[[columns]]
name = "age"
role = "quasi_identifier"
hierarchy = "age"
[[columns]]
name = "sex"
role = "sensitive"
"#;
    let p = policy(text);
    let pq = dir.path().join("out.parquet");
    let r1 =
        anonymize(&p, &Input::from_path(&csv), &Output::from_path(&pq), &RunOptions::default()).expect("csv→parquet");
    assert_eq!(r1.report.records_out, 4);
    assert_eq!(r1.report.output_sha256, kiban_deid::io::file_sha256(&pq).expect("hash"));
    assert!(!dir.path().join("out.parquet.partial").exists());
    let back = dir.path().join("back.csv");
    let text2 =
        text.replace("k = 2", "k = 4").replace("builder = \"age\", widths = [10]", "builder = \"prefix\", keep = [1]");
    let r2 = anonymize(&policy(&text2), &Input::from_path(&pq), &Output::from_path(&back), &RunOptions::default())
        .expect("parquet→csv");
    assert_eq!(r2.report.input_sha256, r1.report.output_sha256);
    assert_eq!(std::fs::read_to_string(&back).expect("read"), "age,sex\n30-39,M\n30-39,M\n30-39,F\n30-39,F\n");
}

/// A deterministic extract of `n` rows: age, sex, prefecture, admission date, diagnosis.
fn extract_csv(n: usize) -> String {
    let mut s = String::from("id;age;sex;pref;admitted;dx\n");
    let mut x: u64 = 11;
    let mut next = |m: u64| {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (x >> 33) % m
    };
    for i in 0..n {
        // Padding spaces: both passes must trim alike.
        s.push_str(&format!(
            "P{i}; {};{};{:02};2024-{:02}-{:02};{}\n",
            20 + next(70),
            ["M", "F"][next(2) as usize],
            1 + next(47),
            1 + next(12),
            1 + next(28),
            ["I21", "E11", "J45", "C34", "I10"][next(5) as usize]
        ));
    }
    s
}

const EXTRACT: &str = r#"
version = 1
name = "extract"
[input]
delimiter = ";"
[privacy]
k = 5
suppression_limit = 0.05
l_diversity = { column = "dx", l = 2 }
[hierarchies]
age = { builder = "age" }
sex = { builder = "flat" }
pref = { builder = "flat" }
day = { builder = "date" }
[[columns]]
name = "id"
role = "identifier"
[[columns]]
name = "age"
role = "quasi_identifier"
hierarchy = "age"
[[columns]]
name = "sex"
role = "quasi_identifier"
hierarchy = "sex"
[[columns]]
name = "pref"
role = "quasi_identifier"
hierarchy = "pref"
[[columns]]
name = "admitted"
role = "quasi_identifier"
hierarchy = "day"
[[columns]]
name = "dx"
role = "sensitive"
"#;

#[cfg(feature = "datafusion")]
#[test]
fn a5_datafusion_frequency_pass_equals_the_in_process_count() {
    let dir = tempfile::tempdir().expect("tmp");
    let csv = dir.path().join("extract.csv");
    std::fs::write(&csv, extract_csv(3000)).expect("write");
    let input = Input::from_path(&csv);
    let cols: Vec<String> = ["age", "sex", "pref", "admitted", "dx"].map(String::from).to_vec();
    // The plan's counts equal an independent in-process count of the same trimmed values.
    let g = kiban_deid::frequency::group_count(&input, b';', &cols).expect("plan runs");
    let mut plan: std::collections::HashMap<Vec<String>, u64> = Default::default();
    for (r, &n) in g.counts.iter().enumerate() {
        plan.insert(g.columns.iter().map(|c| c[r].clone()).collect(), n);
    }
    let mut direct: std::collections::HashMap<Vec<String>, u64> = Default::default();
    let text = std::fs::read_to_string(&csv).expect("read");
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(';').map(str::trim).collect();
        *direct.entry(f[1..].iter().map(|s| s.to_string()).collect()).or_default() += 1;
    }
    assert_eq!(plan, direct);
    assert_eq!(g.counts.iter().sum::<u64>(), 3000);
    // And the engine driven by either pass releases the same table.
    let p = policy(EXTRACT);
    let a = anonymize(&p, &input, &Output::Memory, &RunOptions::default()).expect("stream");
    let opts = RunOptions { datafusion: true, ..Default::default() };
    let b = anonymize(&p, &input, &Output::Memory, &opts).expect("datafusion");
    assert_eq!(a.report.levels, b.report.levels);
    assert_eq!(a.report.search.distinct_tuples, b.report.search.distinct_tuples);
    assert_eq!(a.report.records_suppressed, b.report.records_suppressed);
    assert_eq!(a.report.output_sha256, b.report.output_sha256);
    assert_eq!(a.report.risk_after, b.report.risk_after);
}

#[cfg(feature = "datafusion")]
#[test]
fn a5_datafusion_frequency_pass_streams_a_multi_part_source_with_few_batches_alive() {
    use std::sync::{Arc, Mutex, Weak};
    let dir = tempfile::tempdir().expect("tmp");
    let csv = dir.path().join("extract.csv");
    std::fs::write(&csv, extract_csv(3000)).expect("write");
    let whole = Input::from_path(&csv);
    let cols: Vec<String> = ["age", "sex", "pref", "admitted", "dx"].map(String::from).to_vec();
    let expected = kiban_deid::frequency::group_count(&whole, b';', &cols).expect("plan runs");
    // The same records as 24 parts of 125 rows, produced one at a time as a sealed dataset's are.
    let mut all = Vec::new();
    kiban_deid::io::for_each_batch(&whole, b';', |b| {
        all.push(b.clone());
        Ok(())
    })
    .expect("read");
    let whole_batch = arrow::compute::concat_batches(&all[0].schema(), &all).expect("concat");
    let parts: Vec<_> = (0..24).map(|i| whole_batch.slice(i * 125, 125)).collect();
    // Every batch handed out is watched: how many earlier ones are still alive when the next is made.
    // Weak handles of the batches handed out, and the most of them alive at once.
    type Watched = (Vec<Weak<dyn arrow::array::Array>>, usize);
    let alive: Arc<Mutex<Watched>> = Arc::new(Mutex::new((Vec::new(), 0)));
    let watch = alive.clone();
    let source = kiban_deid::io::BatchSource::new("parts", move |f| {
        for p in &parts {
            // Fresh arrays per part, as a part read from disk would be.
            let fresh: Vec<arrow::array::ArrayRef> = p.columns().iter().map(|c| c.slice(0, c.len())).collect();
            {
                let mut w = watch.lock().expect("lock");
                let live = w.0.iter().filter(|x| x.strong_count() > 0).count();
                w.1 = w.1.max(live);
                w.0.push(Arc::downgrade(&fresh[0]));
            }
            f(arrow::record_batch::RecordBatch::try_new(p.schema(), fresh).expect("batch"))?;
        }
        Ok(())
    });
    let streamed = Input::Stream(source);
    let got = kiban_deid::frequency::group_count(&streamed, b';', &cols).expect("streamed plan runs");
    assert_eq!(got.columns, expected.columns);
    assert_eq!(got.counts, expected.counts);
    assert_eq!(got.counts.iter().sum::<u64>(), 3000);
    // Collected in memory, all 23 earlier parts would still be alive when the last is made.
    let most_alive = alive.lock().expect("lock").1;
    assert!(most_alive <= 8, "{most_alive} parts were alive at once: the source is not streamed");
    // And the engine with the DataFusion pass over the parts releases what the streaming pass does.
    let p = policy(EXTRACT);
    let a = anonymize(&p, &whole, &Output::Memory, &RunOptions::default()).expect("stream");
    let opts = RunOptions { datafusion: true, ..Default::default() };
    let b = anonymize(&p, &streamed, &Output::Memory, &opts).expect("datafusion over parts");
    assert_eq!(a.report.levels, b.report.levels);
    assert_eq!(a.report.records_suppressed, b.report.records_suppressed);
    assert_eq!(
        a.batches.iter().map(|x| x.num_rows()).sum::<usize>(),
        b.batches.iter().map(|x| x.num_rows()).sum::<usize>()
    );
}

/// A report as JSON without its timings, fractions to 10 significant digits (loss sums run over the
/// tuples in table order, which moves their last bits).
fn report_without_timings(r: &kiban_deid::Report) -> serde_json::Value {
    fn round(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Number(n) if n.is_f64() => {
                let x: f64 = format!("{:.9e}", n.as_f64().expect("f64")).parse().expect("float");
                *n = serde_json::Number::from_f64(x).expect("finite");
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(round),
            serde_json::Value::Object(o) => o.values_mut().for_each(round),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(r).expect("report serializes");
    round(&mut v);
    v.as_object_mut().expect("object").remove("millis");
    v["search"].as_object_mut().expect("object").remove("millis");
    v
}

#[cfg(feature = "datafusion")]
/// The chunk's rows `from..to`.
fn chunk_slice(c: &kiban_deid::frequency::GroupChunk, from: usize, to: usize) -> kiban_deid::frequency::GroupChunk {
    kiban_deid::frequency::GroupChunk {
        columns: c.columns.iter().map(|a| a.slice(from, to - from)).collect(),
        counts: c.counts[from..to].to_vec(),
    }
}

#[cfg(feature = "datafusion")]
/// Hands `c` to `sink` in slices of `rows` rows (a cluster's chunks are not the local engine's);
/// returns how many slices it handed.
fn in_slices(
    c: &kiban_deid::frequency::GroupChunk,
    rows: usize,
    sink: &mut kiban_deid::frequency::GroupSink,
) -> kiban_deid::Result<usize> {
    let mut n = 0;
    for from in (0..c.len()).step_by(rows) {
        sink(chunk_slice(c, from, (from + rows).min(c.len())))?;
        n += 1;
    }
    Ok(n)
}

#[cfg(feature = "datafusion")]
#[test]
fn a5_group_counts_computed_elsewhere_give_the_same_output_and_report() {
    // The hook stands in for a cluster: the same sorted counts, streamed in chunks of 7 rows.
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("extract.csv");
    std::fs::write(&csv, extract_csv(4000)).expect("write");
    let input = Input::from_path(&csv);
    let p = policy(EXTRACT);
    let (a_out, b_out) = (dir.path().join("a.csv"), dir.path().join("b.csv"));
    let a = anonymize(&p, &input, &Output::from_path(&a_out), &RunOptions::default()).expect("stream");
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let chunks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (seen, handed) = (calls.clone(), chunks.clone());
    let hook_input = input.clone();
    let opts = RunOptions {
        group_count: Some(Box::new(move |cols: &[String], sink: &mut kiban_deid::frequency::GroupSink| {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            kiban_deid::frequency::for_each_group(&hook_input, b';', cols, &mut |c| {
                handed.fetch_add(in_slices(&c, 7, sink)?, std::sync::atomic::Ordering::SeqCst);
                Ok(())
            })
        })),
        ..Default::default()
    };
    let b = anonymize(&p, &input, &Output::from_path(&b_out), &opts).expect("hooked");
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1, "pass 1 ran through the hook");
    assert!(chunks.load(std::sync::atomic::Ordering::SeqCst) > 100, "the counts arrived in many chunks");
    assert_eq!(std::fs::read(&a_out).expect("a"), std::fs::read(&b_out).expect("b"));
    assert_eq!(report_without_timings(&a.report), report_without_timings(&b.report));
}

#[cfg(feature = "datafusion")]
#[test]
fn a5_datafusion_pass_folds_within_the_tuple_budget_as_the_counts_stream() {
    // The sorted counts are coded as they arrive and folded past the budget: the table never holds
    // them all, and any engine handing the same sorted chunks gets the same output.
    let dir = tempfile::tempdir().expect("tmp");
    let csv = dir.path().join("extract.csv");
    std::fs::write(&csv, extract_csv(3000)).expect("write");
    let input = Input::from_path(&csv);
    let p = policy(EXTRACT);
    let free = anonymize(&p, &input, &Output::Memory, &RunOptions { datafusion: true, ..Default::default() })
        .expect("unbounded");
    let tuples = free.report.search.distinct_tuples as usize;
    let budget = Some(tuples / 4);
    let a = anonymize(
        &p,
        &input,
        &Output::Memory,
        &RunOptions { datafusion: true, tuple_budget: budget, ..Default::default() },
    )
    .expect("budgeted");
    assert!(!a.report.search.folded.is_empty(), "a budget under the distinct tuples folds");
    assert!(a.report.search.distinct_tuples as usize <= tuples / 4);
    let sizes = class_sizes(&a.batches, &["age", "sex", "pref", "admitted"]);
    assert!(sizes.iter().all(|&n| n >= 5), "{sizes:?}");
    assert_eq!(a.report.records_out + a.report.records_suppressed, 3000);
    let hook_input = input.clone();
    let opts = RunOptions {
        tuple_budget: budget,
        group_count: Some(Box::new(move |cols: &[String], sink: &mut kiban_deid::frequency::GroupSink| {
            kiban_deid::frequency::for_each_group(&hook_input, b';', cols, &mut |c| in_slices(&c, 5, sink).map(drop))
        })),
        ..Default::default()
    };
    let b = anonymize(&p, &input, &Output::Memory, &opts).expect("hooked");
    assert_eq!(a.report.search.folded, b.report.search.folded);
    assert_eq!(a.report.output_sha256, b.report.output_sha256);
}

#[cfg(feature = "datafusion")]
#[test]
fn a5_group_counts_out_of_order_are_refused_not_coded() {
    // Codes and folds follow the rows' order, so an engine that does not sort must fail loudly.
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("extract.csv");
    std::fs::write(&csv, extract_csv(500)).expect("write");
    let input = Input::from_path(&csv);
    let hook_input = input.clone();
    let opts = RunOptions {
        group_count: Some(Box::new(move |cols: &[String], sink: &mut kiban_deid::frequency::GroupSink| {
            let mut chunks = Vec::new();
            kiban_deid::frequency::for_each_group(&hook_input, b';', cols, &mut |c| {
                chunks.push(c);
                Ok(())
            })?;
            // The last rows first: each chunk is sorted, the stream is not.
            let whole = chunks.pop().expect("a chunk");
            let half = whole.len() / 2;
            sink(chunk_slice(&whole, half, whole.len()))?;
            sink(chunk_slice(&whole, 0, half))
        })),
        ..Default::default()
    };
    let e = anonymize(&policy(EXTRACT), &input, &Output::Memory, &opts).expect_err("out of order");
    assert!(e.to_string().contains("strictly increasing order"), "{e}");
}

/// EXTRACT with the id tokenized and a re-keyed link code, so pass 2 has every kind of column.
fn extract_with_tokens() -> kiban_deid::Policy {
    policy(
        &EXTRACT.replace(
            "name = \"id\"\nrole = \"identifier\"",
            "name = \"id\"\nrole = \"id_code\"\ntreatment = \"token\"",
        ),
    )
}

#[test]
fn a2_a5_pass_2_run_elsewhere_from_its_spec_gives_the_same_output_and_report() {
    use kiban_deid::apply::{ApplyColumn, ApplySpec, token};
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("extract.csv");
    // Outliers of 2023 (the rest is 2024), aged 91–99: a few classes the search suppresses, whose
    // values a folded table holds through one representative each.
    let mut text = extract_csv(5000);
    for j in 0..9 {
        text.push_str(&format!("Q{j};{};M;{:02};2023-{:02}-03;C34\n", 91 + j, 10 + j, 1 + j));
    }
    std::fs::write(&csv, text).expect("write");
    let input = Input::from_path(&csv);
    let p = extract_with_tokens();
    let seed = Some([9u8; 32]);
    // Unbounded, and with a tuple budget that folds the table.
    for (n, tuple_budget) in [None, Some(200)].into_iter().enumerate() {
        let (a_out, b_out) = (dir.path().join(format!("a-{n}.parquet")), dir.path().join(format!("b-{n}.parquet")));
        let a = anonymize(
            &p,
            &input,
            &Output::from_path(&a_out),
            &RunOptions { key_seed: seed, tuple_budget, ..Default::default() },
        )
        .expect("stream");
        // The stand-in for a cluster: reads the input itself and applies the spec row by row.
        let hook_input = input.clone();
        let opts = RunOptions {
            key_seed: seed,
            tuple_budget,
            apply: Some(Box::new(
                move |spec: &ApplySpec,
                      sink: &mut dyn FnMut(arrow::record_batch::RecordBatch) -> kiban_deid::Result<()>| {
                    let failing: HashSet<Vec<String>> = spec.failing.iter().cloned().collect();
                    kiban_deid::io::for_each_batch(&hook_input, spec.delimiter, |b| {
                        let col = |n: &str| kiban_deid::io::strings(b, b.schema().index_of(n).expect("column"));
                        let mut cols: Vec<arrow::array::ArrayRef> = Vec::new();
                        let flags: Vec<bool> = (0..b.num_rows())
                            .map(|r| {
                                let t: Vec<String> = spec.qi.iter().map(|q| col(&q.column).value(r).to_owned()).collect();
                                let folded: Vec<String> =
                                    t.iter().zip(&spec.qi).map(|(v, q)| q.fold.get(v).unwrap_or(v).clone()).collect();
                                t.iter().zip(&spec.qi).any(|(v, q)| !q.labels.contains_key(v)) || failing.contains(&folded)
                            })
                            .collect();
                        for (name, c) in &spec.columns {
                            let a = col(name);
                            let v: Vec<String> = (0..b.num_rows())
                                .map(|r| match c {
                                    ApplyColumn::Keep => a.value(r).to_owned(),
                                    ApplyColumn::Token => token(&spec.token_key, name, a.value(r)),
                                    ApplyColumn::Rekey => token(&spec.release_key, name, a.value(r)),
                                    ApplyColumn::Generalize { qi } => {
                                        spec.qi[*qi].labels.get(a.value(r)).cloned().unwrap_or_else(|| "*".into())
                                    }
                                })
                                .collect();
                            cols.push(std::sync::Arc::new(arrow::array::StringArray::from(v)));
                        }
                        cols.push(std::sync::Arc::new(arrow::array::BooleanArray::from(flags)));
                        let mut fields: Vec<arrow::datatypes::Field> = spec
                            .columns
                            .iter()
                            .map(|(n, _)| arrow::datatypes::Field::new(n, arrow::datatypes::DataType::Utf8, true))
                            .collect();
                        fields.push(arrow::datatypes::Field::new("flag", arrow::datatypes::DataType::Boolean, false));
                        let out = arrow::record_batch::RecordBatch::try_new(
                            std::sync::Arc::new(arrow::datatypes::Schema::new(fields)),
                            cols,
                        )
                        .expect("batch");
                        // Other batch boundaries than the engine's: the engine re-chunks.
                        sink(out.slice(0, out.num_rows() / 2))?;
                        sink(out.slice(out.num_rows() / 2, out.num_rows() - out.num_rows() / 2))
                    })
                },
            )),
            ..Default::default()
        };
        let b = anonymize(&p, &input, &Output::from_path(&b_out), &opts).expect("pass 2 elsewhere");
        assert_eq!(std::fs::read(&a_out).expect("a"), std::fs::read(&b_out).expect("b"), "output bytes");
        assert_eq!(report_without_timings(&a.report), report_without_timings(&b.report));
        // A folded table (its failing tuples hold one value per group) still applies elsewhere.
        assert_eq!(tuple_budget.is_some(), !b.report.search.folded.is_empty(), "{:?}", b.report.search.folded);
        assert!(b.report.records_suppressed > 0, "the fixture must make the search suppress");
    }
}

#[test]
fn a5_progress_reports_both_passes_and_the_search() {
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = events.clone();
    let opts =
        RunOptions { progress: Some(Box::new(move |p| sink.lock().expect("lock").push(p))), ..Default::default() };
    let dir = tempfile::tempdir().expect("tmp");
    let csv = dir.path().join("extract.csv");
    std::fs::write(&csv, extract_csv(500)).expect("write");
    anonymize(&policy(EXTRACT), &Input::from_path(&csv), &Output::Memory, &opts).expect("runs");
    let ev = events.lock().expect("lock").clone();
    use kiban_deid::Progress;
    assert_eq!(ev.first(), Some(&Progress::Counted(500)));
    assert!(matches!(ev.get(1), Some(Progress::Searching(t)) if *t > 0));
    assert_eq!(ev.last(), Some(&Progress::Written { done: 500, total: 500 }));
}

#[test]
fn a5_local_recoding_releases_records_the_global_solution_suppresses() {
    // 400 ordinary records in big classes once dates become months, and 6 outliers (ages 91–96 in
    // six prefectures) that the global solution suppresses rather than coarsen everyone.
    let mut text = String::from("id;age;sex;pref;admitted;dx\n");
    for i in 0..400 {
        let dx = ["I21", "E11", "J45"][i % 3];
        text.push_str(&format!(
            "P{i};{};{};13;2024-0{}-{:02};{dx}\n",
            30 + i % 5,
            ["M", "F"][i % 2],
            1 + i % 2,
            1 + i % 28
        ));
    }
    for j in 0..6 {
        text.push_str(&format!("Q{j};{};M;{};2024-0{}-03;{}\n", 91 + j, 40 + j, 1 + j % 9, ["C34", "I10"][j % 2]));
    }
    let dir = tempfile::tempdir().expect("tmp");
    let csv = dir.path().join("extract.csv");
    std::fs::write(&csv, text).expect("write");
    let input = Input::from_path(&csv);
    let global = anonymize(&policy(EXTRACT), &input, &Output::Memory, &RunOptions::default()).expect("global");
    let text = EXTRACT.replace("suppression_limit = 0.05", "suppression_limit = 0.05\nlocal_recoding = true");
    let local = anonymize(&policy(&text), &input, &Output::Memory, &RunOptions::default()).expect("local");
    let (g, l) = (&global.report, &local.report);
    assert!(g.records_suppressed > 0, "the fixture must make the global solution suppress");
    assert!(l.records_recoded > 0 && l.records_suppressed < g.records_suppressed, "{l:?}");
    assert_eq!(l.records_out + l.records_suppressed, 406);
    assert!(l.information_loss <= g.information_loss + 1e-12);
    // Independent counter over the released values: every class has k records and 2 diagnoses.
    let sizes = class_sizes(&local.batches, &["age", "sex", "pref", "admitted"]);
    assert!(sizes.iter().all(|&s| s >= 5), "{sizes:?}");
    assert_eq!(l.k_achieved, *sizes.iter().min().expect("classes"));
    assert!(l.l_achieved.is_some_and(|x| x >= 2));
}

const SHIFTED: &str = r#"
version = 1
name = "shifted"
[privacy]
k = 2
suppression_limit = 0.5
[hierarchies]
sex = { builder = "flat" }
[[columns]]
name = "patient"
role = "link_code"
[[columns]]
name = "sex"
role = "quasi_identifier"
hierarchy = "sex"
[[columns]]
name = "admitted"
role = "date"
treatment = "shift"
shift_days = 30
shift_by = "patient"
[[columns]]
name = "discharged"
role = "date"
treatment = "shift"
shift_days = 30
shift_by = "patient"
coarsen = "month"
[[columns]]
name = "seen"
role = "date"
treatment = "shift"
shift_days = 3
"#;

fn days(d: &str) -> i64 {
    let d = chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").expect("a date");
    (d - chrono::NaiveDate::from_ymd_opt(2000, 1, 1).expect("epoch")).num_days()
}

#[test]
fn a4_dates_are_shifted_per_patient_keeping_intervals_and_reported() {
    // 40 patients with two admissions each, 10 days apart.
    let mut rows: Vec<Vec<String>> = Vec::new();
    for p in 0..40 {
        for (adm, dis) in [("2024-01-10", "2024-01-20"), ("2024-03-01", "2024-03-11")] {
            let sex = if p % 2 == 0 { "M" } else { "F" };
            rows.push(vec![format!("pk{p}"), sex.into(), adm.into(), dis.into(), "2024-06-15".into()]);
        }
    }
    rows.push(vec!["pkx".into(), "M".into(), "not a date".into(), "2024-02-30".into(), "2024-06-15".into()]);
    let refs: Vec<Vec<&str>> = rows.iter().map(|r| r.iter().map(String::as_str).collect()).collect();
    let input = || Input::Batches(vec![batch(&["patient", "sex", "admitted", "discharged", "seen"], &refs)]);
    let p = policy(SHIFTED);
    let run = || anonymize(&p, &input(), &Output::Memory, &RunOptions::default()).expect("runs");
    let a = run();
    let (pk, adm, dis, seen) = (
        column(&a.batches, "patient"),
        column(&a.batches, "admitted"),
        column(&a.batches, "discharged"),
        column(&a.batches, "seen"),
    );
    assert_eq!(adm.len(), rows.len(), "nothing dropped");
    let mut offset_of: std::collections::HashMap<String, i64> = Default::default();
    for (r, row) in rows.iter().enumerate().take(80) {
        let moved = days(adm[r].as_deref().expect("shifted")) - days(&row[2]);
        assert!(moved != 0 && moved.abs() <= 30, "offset {moved} outside ±30 and non-zero");
        // One offset per patient (rekeyed patient code), so the interval between admissions survives.
        let prev = offset_of.entry(pk[r].clone().expect("rekeyed")).or_insert(moved);
        assert_eq!(*prev, moved, "same patient, same offset");
        // The discharge moves by the same offset, then is coarsened to the month.
        let d = chrono::NaiveDate::from_ymd_opt(2000, 1, 1).expect("epoch")
            + chrono::TimeDelta::days(days(&row[3]) + moved);
        assert_eq!(dis[r].as_deref(), Some(d.format("%Y-%m").to_string().as_str()));
        // Without shift_by each record draws its own offset within ±3 days.
        let s = days(seen[r].as_deref().expect("shifted")) - days("2024-06-15");
        assert!(s != 0 && s.abs() <= 3, "{s}");
    }
    assert!(offset_of.values().collect::<HashSet<_>>().len() > 5, "offsets vary between patients");
    // Unreadable dates are released as `*` and counted, never passed through.
    assert_eq!(adm[80].as_deref(), Some("*"));
    assert_eq!(dis[80].as_deref(), Some("*"));
    let col = |n: &str| a.report.columns.iter().find(|c| c.name == n).expect("column reported").clone();
    assert_eq!(col("admitted").treated, Some(1));
    assert!(col("admitted").action.contains("shifted") && col("admitted").action.contains("patient"));
    assert!(col("discharged").action.contains("month"));
    // A fresh key per run: another run moves the patients differently.
    let b = run();
    assert_ne!(adm, column(&b.batches, "admitted"));
    // The policy refuses what it cannot honour, naming the column.
    let bad = SHIFTED.replace("shift_days = 3\n", "");
    let e = kiban_deid::Policy::from_toml(&bad, std::path::Path::new("."), &Default::default()).unwrap_err();
    assert!(e.to_string().contains("seen") && e.to_string().contains("shift_days"), "{e}");
    let bad = SHIFTED.replace("shift_by = \"patient\"\ncoarsen", "shift_by = \"nobody\"\ncoarsen");
    let e = kiban_deid::Policy::from_toml(&bad, std::path::Path::new("."), &Default::default()).unwrap_err();
    assert!(e.to_string().contains("discharged") && e.to_string().contains("nobody"), "{e}");
}

#[test]
fn a5_many_batches_on_all_cores_give_the_rows_and_report_of_one_batch() {
    let text = extract_csv(3000);
    let lines: Vec<Vec<String>> =
        text.lines().skip(1).map(|l| l.split(';').map(|f| f.trim().to_owned()).collect()).collect();
    let header = ["id", "age", "sex", "pref", "admitted", "dx"];
    let refs: Vec<Vec<&str>> = lines.iter().map(|r| r.iter().map(String::as_str).collect()).collect();
    let one = Input::Batches(vec![batch(&header, &refs)]);
    // Uneven batch sizes, so the workers finish out of order.
    let mut many = Vec::new();
    let mut at = 0;
    for (i, n) in [7usize, 300, 1, 53, 999].iter().cycle().enumerate() {
        if at >= refs.len() || i > 1000 {
            break;
        }
        let end = (at + n).min(refs.len());
        many.push(batch(&header, &refs[at..end]));
        at = end;
    }
    let many = Input::Batches(many);
    let p = policy(&EXTRACT.replace("[input]\ndelimiter = \";\"\n", ""));
    let seed = Some([7u8; 32]);
    let a = anonymize(&p, &one, &Output::Memory, &RunOptions { key_seed: seed, ..Default::default() }).expect("one");
    let b = anonymize(&p, &many, &Output::Memory, &RunOptions { key_seed: seed, ..Default::default() }).expect("many");
    for c in ["age", "sex", "pref", "admitted", "dx"] {
        assert_eq!(column(&a.batches, c), column(&b.batches, c), "column {c} in input order");
    }
    assert_eq!(a.report.levels, b.report.levels);
    assert_eq!(a.report.search.distinct_tuples, b.report.search.distinct_tuples);
    assert_eq!(a.report.records_suppressed, b.report.records_suppressed);
    assert_eq!(a.report.risk_before, b.report.risk_before);
    assert_eq!(a.report.classes_after, b.report.classes_after);
}

#[test]
fn a5_tuple_budget_folds_the_table_keeps_k_and_reports_the_floor() {
    let dir = tempfile::tempdir().expect("tmp");
    let csv = dir.path().join("extract.csv");
    std::fs::write(&csv, extract_csv(3000)).expect("write");
    let input = Input::from_path(&csv);
    let p = policy(EXTRACT);
    let free = anonymize(&p, &input, &Output::Memory, &RunOptions::default()).expect("unbounded");
    assert!(free.report.search.folded.is_empty() && free.report.search.optimal);
    let tuples = free.report.search.distinct_tuples as usize;
    let opts = RunOptions { tuple_budget: Some(tuples / 4), ..Default::default() };
    let small = anonymize(&p, &input, &Output::Memory, &opts).expect("budgeted");
    let s = &small.report.search;
    assert!(!s.folded.is_empty(), "a budget under the distinct tuples folds");
    assert!(s.distinct_tuples as usize <= tuples / 4, "{} tuples kept", s.distinct_tuples);
    // Dates merge most values a level up (day → month), so they fold first.
    assert!(s.folded.iter().any(|(c, _)| c == "admitted"), "{:?}", s.folded);
    for (c, f) in &s.folded {
        let l = small.report.levels.iter().find(|(n, _)| n == c).expect("level").1;
        assert!(l >= *f, "{c} released at level {l}, below the floor {f}");
    }
    // Still k-anonymous (independent counter), within the limit, nothing lost.
    let sizes = class_sizes(&small.batches, &["age", "sex", "pref", "admitted"]);
    assert!(sizes.iter().all(|&n| n >= 5), "{sizes:?}");
    assert_eq!(small.report.records_in, 3000);
    assert!(small.report.records_suppressed as f64 <= 0.05 * 3000.0);
    assert_eq!(small.report.records_out + small.report.records_suppressed, 3000);
    // Never better than the unbounded optimum; when not proven optimal, the report says by how much
    // a lower node might do better.
    assert!(small.report.information_loss >= free.report.information_loss - 1e-12);
    match s.unexplored_bound {
        Some(b) => assert!(!s.optimal && b < small.report.information_loss),
        None => assert!(s.optimal && (small.report.information_loss - free.report.information_loss).abs() < 1e-9),
    }
}
