//! The public site (K1, K2, B1) and the checker page (O1–O9, D9) over real HTTP.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use arrow::array::Array;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use axum::http::StatusCode;
use chrono::Utc;
use kiban_disclosure::catalogue::{Catalogue, ItemKind};
use kiban_disclosure::stats::{StatsRelease, TOTAL};
use kiban_formats::dataset::{DatasetWriter, FileFormat};
use kiban_model::synth::{SynthConfig, SynthTable, generate_chunk};
use kiban_registry::accounts::AccountRole;
use kiban_server::auth;

use super::{PW, cookie_of, enrolled, fixture, http, login, now_unix, spawn};

/// Writes a small synthetic clinical store (one batch) the way intake does; returns every real value
/// per column, as text.
fn clinical_store(data_dir: &Path, patients: u64) -> HashMap<String, HashSet<String>> {
    let cfg = SynthConfig { patients, seed: 7, ..SynthConfig::default() };
    let chunk = generate_chunk(&cfg, 0..patients);
    let mut real: HashMap<String, HashSet<String>> = HashMap::new();
    for (t, batch) in chunk.batches {
        if matches!(t, SynthTable::Truth | SynthTable::Patients) {
            continue;
        }
        let dir = data_dir.join("clinical/batch-1").join(t.name());
        let w = DatasetWriter::create(&dir, t.name(), t.schema(), FileFormat::Parquet).unwrap();
        w.write_part("part-00000", std::slice::from_ref(&batch)).unwrap();
        w.commit(serde_json::json!({"generator": "test"})).unwrap();
        for (i, f) in batch.schema().fields().iter().enumerate() {
            let a = batch.column(i);
            let fmt = ArrayFormatter::try_new(a.as_ref(), &FormatOptions::default()).unwrap();
            let set = real.entry(f.name().clone()).or_default();
            for r in 0..a.len() {
                if a.is_valid(r) {
                    set.insert(fmt.value(r).to_string());
                }
            }
        }
    }
    real
}

fn csv_rows(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let h = r.headers().unwrap().iter().map(str::to_owned).collect();
    (h, r.records().map(|x| x.unwrap().iter().map(str::to_owned).collect()).collect())
}

#[tokio::test]
async fn k1_catalogue_lists_each_database_and_dummy_data_holds_no_real_value() {
    let f = fixture().await;
    let real = clinical_store(&f.st.data_dir, 400);
    let built =
        kiban_server::publish::build(&f.st.data_dir, None, Some("合成データ".into()), "2026-11-21T00:00:00Z").unwrap();
    assert_eq!(built.databases, 4, "{built:?}");
    let main = spawn(kiban_server::router(f.st.clone())).await;
    // No login: anonymous.
    let r = http(main, "GET", "/public/catalogue", &[], "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    for s in ["傷病名", "処方", "検体検査結果", "受診", "ICD-10", "収録期間", "更新日", "ダミーデータ", "lang=\"ja\""]
    {
        assert!(r.body.contains(s), "the catalogue page shows {s}");
    }
    let r = http(main, "GET", "/public/catalogue?lang=en", &[], "").await;
    assert!(r.body.contains("Data catalogue") && r.body.contains("lang=\"en\""));
    assert!(r.headers.get("set-cookie").unwrap().to_str().unwrap().starts_with("kiban_lang=en"));
    let r = http(main, "GET", "/public/catalogue", &[("cookie", "kiban_lang=en")], "").await;
    assert!(r.body.contains("Data catalogue"), "the cookie keeps English");
    let r = http(main, "GET", "/public/catalogue?format=json", &[], "").await;
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let cat: Catalogue = serde_json::from_value(v["catalogue"].clone()).unwrap();
    let diag = cat.databases.iter().find(|d| d.name == "diagnoses").unwrap();
    assert_eq!(diag.patients as usize, real["patient_id"].len().min(diag.patients as usize));
    assert!(diag.records > 0 && diag.period_from.as_deref().unwrap() >= "2023-04-01");
    assert!(diag.items.iter().any(|i| i.column == "icd10" && i.description_ja == "傷病名コード"));
    let mut checked = 0;
    for db in &cat.databases {
        let r = http(main, "GET", &format!("/public/catalogue/{}/dummy.csv", db.name), &[], "").await;
        assert_eq!(r.status, StatusCode::OK);
        let (header, rows) = csv_rows(&r.body);
        assert_eq!(header, db.items.iter().map(|i| i.column.clone()).collect::<Vec<_>>(), "the schema's columns");
        assert_eq!(rows.len(), kiban_server::publish::DUMMY_ROWS);
        for (c, item) in db.items.iter().enumerate() {
            if item.kind == ItemKind::Vocabulary {
                continue; // 入院/外来, 内服/外用/注射, true/false, departments, units: the public vocabulary.
            }
            let seen = &real[&item.column];
            let real_floats: Vec<f64> = seen.iter().filter_map(|v| v.parse().ok()).collect();
            for row in &rows {
                let v = &row[c];
                assert!(!seen.contains(v), "{}.{} dummy value {v:?} is a real value", db.name, item.column);
                if item.kind == ItemKind::Number {
                    let x: f64 = v.parse().unwrap();
                    assert!(
                        real_floats.iter().all(|r| (r - x).abs() > 5e-4),
                        "{}.{}: {x} is a real value",
                        db.name,
                        item.column
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 500, "{checked}");
    assert_eq!(
        http(main, "GET", "/public/catalogue/..%2Fcatalogue/dummy.csv", &[], "").await.status,
        StatusCode::NOT_FOUND
    );
}

/// Collects every cell the search releases, keyed by (year, chapter, setting) with `計` for a total.
async fn harvest(main: std::net::SocketAddr, rel: &StatsRelease) -> BTreeMap<Vec<String>, Option<i64>> {
    let names: Vec<String> = rel.dims.iter().map(|d| d.name.clone()).collect();
    let mut seen = BTreeMap::new();
    let mut queries: Vec<String> = Vec::new();
    // Every subset of dimensions broken down (margins of every order) …
    for mask in 0..(1u32 << names.len()) {
        let by: Vec<&str> =
            names.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, n)| n.as_str()).collect();
        queries.push(format!("by={}", by.join(",")));
    }
    // … and sub-populations: each single filter with the other dimensions broken down.
    for (d, dim) in rel.dims.iter().enumerate() {
        for l in &dim.levels {
            let others: Vec<&str> =
                names.iter().enumerate().filter(|(i, _)| *i != d).map(|(_, n)| n.as_str()).collect();
            queries.push(format!("by={}&{}={}", others.join(","), dim.name, enc(l)));
            queries.push(format!("{}={}", dim.name, enc(l)));
        }
    }
    for q in queries {
        let r = http(main, "GET", &format!("/public/stats?format=json&{q}"), &[], "").await;
        assert_eq!(r.status, StatusCode::OK, "{q}: {}", r.body);
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        for row in v["rows"].as_array().unwrap() {
            let key: Vec<String> = names.iter().map(|n| row["levels"][n].as_str().unwrap().to_owned()).collect();
            let val = row["value"].as_i64();
            if let Some(prev) = seen.insert(key.clone(), val) {
                assert_eq!(prev, val, "two queries give two answers for {key:?}");
            }
        }
    }
    seen
}

fn enc(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

/// The differencing attacker: wherever a total and all but one of its parts are known, the last
/// part is the difference; repeated until nothing new is learnt. Returns what it recovered.
fn difference(rel: &StatsRelease, known: &BTreeMap<Vec<String>, Option<i64>>) -> BTreeMap<Vec<String>, i64> {
    let mut val: BTreeMap<Vec<String>, i64> = known.iter().filter_map(|(k, v)| v.map(|v| (k.clone(), v))).collect();
    let mut recovered = BTreeMap::new();
    loop {
        let mut fresh = Vec::new();
        for total in known.keys() {
            for (d, dim) in rel.dims.iter().enumerate() {
                if total[d] != TOTAL {
                    continue;
                }
                let Some(&t) = val.get(total) else { continue };
                let parts: Vec<Vec<String>> = dim
                    .levels
                    .iter()
                    .map(|l| {
                        let mut k = total.clone();
                        k[d] = l.clone();
                        k
                    })
                    .collect();
                let unknown: Vec<&Vec<String>> = parts.iter().filter(|p| !val.contains_key(*p)).collect();
                if unknown.len() == 1 {
                    let sum: i64 = parts.iter().filter_map(|p| val.get(p)).sum();
                    fresh.push((unknown[0].clone(), t - sum));
                }
            }
        }
        if fresh.is_empty() {
            return recovered;
        }
        for (k, v) in fresh {
            val.insert(k.clone(), v);
            recovered.insert(k, v);
        }
    }
}

#[tokio::test]
async fn k2_o1_o9_statistics_search_suppresses_small_cells_and_a_differencing_attack_recovers_none() {
    let f = fixture().await;
    clinical_store(&f.st.data_dir, 300);
    let built = kiban_server::publish::build(&f.st.data_dir, None, None, "2026-11-21T00:00:00Z").unwrap();
    assert!(built.primary > 0 && built.secondary > 0, "the test population has small cells: {built:?}");
    let rel: StatsRelease =
        serde_json::from_slice(&std::fs::read(f.st.data_dir.join("public/stats.json")).unwrap()).unwrap();
    let main = spawn(kiban_server::router(f.st.clone())).await;
    let r = http(main, "GET", "/public/stats?by=year&by=setting", &[], "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("統計検索") && r.body.contains("診断年"), "{}", r.body);
    let r = http(main, "GET", "/public/stats?by=year&by=chapter&by=setting", &[], "").await;
    assert!(r.body.contains("class=\"x\""), "small cells are shown as X");
    let bad = http(main, "GET", "/public/stats?format=json&year=1999", &[], "").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);

    let known = harvest(main, &rel).await;
    // Every answer is a cell of the one protected cube (nothing is computed per query).
    let csv = http(main, "GET", "/public/stats.csv", &[], "").await.body;
    let (_, rows) = csv_rows(&csv);
    let cube: BTreeMap<Vec<String>, Option<i64>> = rows.iter().map(|r| (r[..3].to_vec(), r[3].parse().ok())).collect();
    for (k, v) in &known {
        assert_eq!(cube.get(k), Some(v), "{k:?} is a cell of the published cube");
    }
    let suppressed: Vec<&Vec<String>> = known.iter().filter(|(_, v)| v.is_none()).map(|(k, _)| k).collect();
    assert!(!suppressed.is_empty());
    let got = difference(&rel, &known);
    assert!(got.is_empty(), "differencing recovered suppressed cells: {got:?}");

    // The attack is real: against the same cube with only the small cells blanked (no secondary
    // suppression, as a naive search would publish), it recovers small counts.
    let small: BTreeMap<Vec<String>, Option<i64>> = truth_cube(&f.st.data_dir, &rel)
        .into_iter()
        .map(|(k, v)| (k.clone(), if (1..10).contains(&v) && !k.contains(&TOTAL.to_owned()) { None } else { Some(v) }))
        .collect();
    let naive_got = difference(&rel, &small);
    assert!(
        naive_got.values().any(|v| (1..10).contains(v)),
        "primary suppression alone leaks a small count by differencing (the attack works)"
    );
}

/// The true cube, recomputed from the clinical store the same way the build counts (test only).
fn truth_cube(data_dir: &Path, rel: &StatsRelease) -> BTreeMap<Vec<String>, i64> {
    let _ = data_dir;
    let cfg = SynthConfig { patients: 300, seed: 7, ..SynthConfig::default() };
    let chunk = generate_chunk(&cfg, 0..300);
    let mut enc: HashMap<(String, String), String> = HashMap::new();
    let mut cells: BTreeMap<Vec<String>, HashSet<String>> = BTreeMap::new();
    let text = |b: &arrow::record_batch::RecordBatch, n: &str, r: usize| {
        let a = b.column(b.schema().index_of(n).unwrap()).clone();
        ArrayFormatter::try_new(a.as_ref(), &FormatOptions::default()).unwrap().value(r).to_string()
    };
    for (t, b) in &chunk.batches {
        if *t == SynthTable::Encounters {
            for r in 0..b.num_rows() {
                enc.insert((text(b, "provider_id", r), text(b, "encounter_id", r)), text(b, "encounter_type", r));
            }
        }
    }
    for (t, b) in &chunk.batches {
        if *t != SynthTable::Diagnoses {
            continue;
        }
        for r in 0..b.num_rows() {
            let Some(ch) = kiban_disclosure::stats::icd10_chapter(&text(b, "icd10", r)) else { continue };
            let p = text(b, "provider_id", r);
            let ty = enc.get(&(p.clone(), text(b, "encounter_id", r))).cloned().unwrap_or_else(|| "不明".into());
            let key = vec![text(b, "diagnosis_date", r)[..4].to_owned(), ch.to_owned(), ty];
            cells.entry(key).or_default().insert(format!("{p}/{}", text(b, "patient_id", r)));
        }
    }
    let mut out = BTreeMap::new();
    let levels = |d: usize| {
        let mut v = rel.dims[d].levels.clone();
        v.push(TOTAL.to_owned());
        v
    };
    for y in levels(0) {
        for c in levels(1) {
            for s in levels(2) {
                let n: i64 = cells
                    .iter()
                    .filter(|(k, _)| {
                        (y == TOTAL || k[0] == y) && (c == TOTAL || k[1] == c) && (s == TOTAL || k[2] == s)
                    })
                    .map(|(_, v)| v.len() as i64)
                    .sum();
                out.insert(vec![y.clone(), c.clone(), s.clone()], n);
            }
        }
    }
    out
}

#[tokio::test]
async fn b1_b3_published_business_documents_are_listed_and_downloadable_with_the_systems_figures() {
    let f = fixture().await;
    let dd = f.st.data_dir.clone();
    let today = Utc::now().date_naive();
    let mut ids = Vec::new();
    for (kind, name, published) in [
        ("report", "事業報告書2025.pdf", Some(today - chrono::Duration::days(1))),
        ("plan", "plan2025.pdf", Some(today - chrono::Duration::days(300))),
        ("statement", "statement2025.pdf", None),
    ] {
        let rel = format!("documents/business/2025/{name}");
        let body = format!("%PDF-1.4 {kind}");
        std::fs::create_dir_all(dd.join("documents/business/2025")).unwrap();
        std::fs::write(dd.join(&rel), &body).unwrap();
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(body.as_bytes()));
        let d = f
            .st
            .reg
            .add_document("business", kind, Some(2025), name, &rel, &sha, body.len() as i64, None, published, "test")
            .await
            .unwrap();
        ids.push(d.document_id);
    }
    let main = spawn(kiban_server::router(f.st.clone())).await;
    let r = http(main, "GET", "/public/business", &[], "").await;
    assert_eq!(r.status, StatusCode::OK);
    for s in ["2025年度（令和7年度）", "事業報告書", "事業計画書", "事業報告書2025.pdf", "医療情報取扱事業者数", "苦情"]
    {
        assert!(r.body.contains(s), "{s}: {}", r.body);
    }
    assert!(!r.body.contains("statement2025.pdf"), "an unpublished document is not listed");
    let r = http(main, "GET", &format!("/public/business/{}", ids[0]), &[], "").await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "%PDF-1.4 report"));
    assert_eq!(http(main, "GET", &format!("/public/business/{}", ids[2]), &[], "").await.status, StatusCode::NOT_FOUND);
    std::fs::write(dd.join("documents/business/2025/plan2025.pdf"), "changed").unwrap();
    let r = http(main, "GET", &format!("/public/business/{}", ids[1]), &[], "").await;
    assert_eq!(r.status, StatusCode::CONFLICT, "a file that differs from its recorded digest is not served");
}

fn multipart(parts: &[(&str, Option<&str>, &str)]) -> (String, String) {
    let b = "kibanBoundary7MA4YWxkTrZu0gW";
    let mut body = String::new();
    for (name, file, content) in parts {
        body.push_str(&format!("--{b}\r\nContent-Disposition: form-data; name=\"{name}\""));
        if let Some(fname) = file {
            body.push_str(&format!("; filename=\"{fname}\"\r\nContent-Type: text/csv"));
        }
        body.push_str(&format!("\r\n\r\n{content}\r\n"));
    }
    body.push_str(&format!("--{b}--\r\n"));
    (format!("multipart/form-data; boundary={b}"), body)
}

#[tokio::test]
async fn o1_o9_d9_checker_page_shows_the_report_and_records_the_checkers_approval() {
    let f = fixture().await;
    let (_, h_secret) = enrolled(&f.st, "res.h", AccountRole::Handler, PW).await;
    let (_, c_secret) = enrolled(&f.st, "chk.p", AccountRole::ProcessingEngineer, PW).await;
    let main = spawn(kiban_server::router(f.st.clone())).await;
    let res = cookie_of(&login(main, "res.h", PW, &auth::totp_code(&h_secret, now_unix())).await);
    let chk = cookie_of(&login(main, "chk.p", PW, &auth::totp_code(&c_secret, now_unix())).await);
    let r = http(main, "GET", "/checker", &[("cookie", res.as_str())], "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("公表物の確認") && r.body.contains("<label for=\"table\">"), "{}", r.body);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../kiban-disclosure/tests/vectors/o1_min_cell");
    let table = std::fs::read_to_string(root.join("table.csv")).unwrap();
    let decl = std::fs::read_to_string(root.join("decl.toml")).unwrap();
    let (ct, body) =
        multipart(&[("table", Some("table.csv"), &table), ("declaration", None, &decl), ("mode", None, "suppress")]);
    let r = http(main, "POST", "/checker", &[("cookie", res.as_str()), ("content-type", &ct)], &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("合格"), "{}", r.body);
    assert!(!r.body.contains("公表を承認する"), "the researcher gets no approve button");
    let sha = r.body.split("<code>").nth(1).unwrap().split("</code>").next().unwrap().to_owned();
    assert_eq!(sha.len(), 64);
    let form = format!("table_sha256={sha}&comment=ok");
    let ff = ("content-type", "application/x-www-form-urlencoded");
    let r = http(main, "POST", "/checker/approve", &[("cookie", res.as_str()), ff], &form).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "a researcher does not approve their own table");
    let r = http(main, "POST", "/checker/approve", &[("cookie", chk.as_str()), ff], &form).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("承認を記録しました"), "{}", r.body);
    // D9: the approval is a registry row bound to this table version.
    let a = f.st.reg.output_approval_in_force(&sha).await.unwrap().expect("approval row");
    assert_eq!((a.table_sha256.as_str(), a.comment.as_str()), (sha.as_str(), "ok"));
    // A table that does not pass stays intermediate: no approval.
    let (ct, body) =
        multipart(&[("table", Some("table.csv"), &table), ("declaration", None, &decl), ("mode", None, "check")]);
    let r = http(main, "POST", "/checker", &[("cookie", chk.as_str()), ("content-type", &ct)], &body).await;
    assert!(r.body.contains("中間生成物"), "{}", r.body);
    let sha2 = r.body.split("<code>").nth(1).unwrap().split("</code>").next().unwrap().to_owned();
    let r =
        http(main, "POST", "/checker/approve", &[("cookie", chk.as_str()), ff], &format!("table_sha256={sha2}")).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn k2_o1_a_tiny_store_publishes_no_count_between_1_and_9_not_even_a_total() {
    let f = fixture().await;
    clinical_store(&f.st.data_dir, 2);
    let b = kiban_server::publish::build(&f.st.data_dir, None, None, "2026-11-22T00:00:00Z").unwrap();
    assert!(b.stats_error.is_none() && b.primary > 0, "{b:?}");
    let main = spawn(kiban_server::router(f.st.clone())).await;
    let r = http(main, "GET", "/public/stats?format=json&by=year,chapter,setting", &[], "").await;
    assert_eq!(r.status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let rows = v["rows"].as_array().unwrap();
    assert!(rows.iter().all(|r| r["value"].as_i64().is_none_or(|x| x == 0 || x >= 10)), "{}", r.body);
    let total = rows.iter().find(|r| r["levels"].as_object().unwrap().values().all(|l| l == TOTAL)).unwrap();
    assert!(total["value"].is_null(), "the grand total of 2 patients is suppressed too");
}
