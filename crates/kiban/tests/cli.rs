//! The `kiban` command as a user meets it: real processes, real files, real SQLite.

use std::path::Path;
use std::process::{Command, Output};

fn kiban(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kiban"));
    c.args(args).env_remove("KIBAN_DATA_DIR").env_remove("KIBAN_MASTER_KEY").env_remove("KIBAN_REGISTRY_URL");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("kiban runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A failure is one line that names the problem, never a panic or a backtrace.
fn assert_clean_failure(o: &Output, needle: &str) {
    assert!(!o.status.success(), "should fail: {}", text(o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(needle), "message should mention {needle:?}: {err}");
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE") && !err.contains("internal error"), "{err}");
}

#[test]
fn init_makes_a_healthy_data_directory_with_a_private_master_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = dir.to_str().unwrap();
    let o = kiban(&["init", d], &[]);
    assert!(o.status.success(), "{}", text(&o));
    for sub in ["clinical", "datasets", "quarantine", "staging", "keys", "registry.sqlite", "kiban.toml"] {
        assert!(dir.join(sub).exists(), "{sub} missing");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("keys/master.key")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let mode = std::fs::metadata(dir.join("registry.sqlite")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the registry holds personal information");
    }
    let o = kiban(&["doctor", "--data-dir", d], &[]);
    assert!(o.status.success(), "{}", text(&o));
    // KIBAN_DATA_DIR is honoured like --data-dir.
    let o = kiban(&["doctor", "--json"], &[("KIBAN_DATA_DIR", d)]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], true);
    // init again is harmless and keeps the same id.
    let id = std::fs::read_to_string(dir.join("kiban.toml")).unwrap();
    assert!(kiban(&["init", d], &[]).status.success());
    assert_eq!(std::fs::read_to_string(dir.join("kiban.toml")).unwrap(), id);
}

#[test]
fn doctor_names_what_is_wrong_and_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = dir.to_str().unwrap();
    assert!(kiban(&["init", d], &[]).status.success());
    let wrong = "0".repeat(64);
    let o = kiban(&["doctor", "--data-dir", d], &[("KIBAN_MASTER_KEY", &wrong)]);
    assert!(!o.status.success());
    assert!(text(&o).contains("master key does not match"), "{}", text(&o));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join("registry.sqlite"), std::fs::Permissions::from_mode(0o644)).unwrap();
        let o = kiban(&["doctor", "--data-dir", d], &[]);
        assert!(text(&o).contains("readable by other users") && text(&o).contains("chmod go-rwx"), "{}", text(&o));
        std::fs::set_permissions(dir.join("registry.sqlite"), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    std::fs::remove_dir(dir.join("quarantine")).unwrap();
    let o = kiban(&["doctor", "--data-dir", d], &[]);
    assert!(text(&o).contains("quarantine/ is missing") && text(&o).contains("kiban init"), "{}", text(&o));
    std::fs::create_dir_all(dir.join("clinical/batch-1/half.staging")).unwrap();
    let o = kiban(&["doctor", "--data-dir", d], &[]);
    assert!(text(&o).contains("unfinished write"), "{}", text(&o));
}

#[test]
fn bad_input_gives_one_line_errors_not_panics() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    assert_clean_failure(&kiban(&["doctor", "--data-dir", missing.to_str().unwrap()], &[]), "does not exist");
    let corrupt = tmp.path().join("corrupt");
    std::fs::create_dir(&corrupt).unwrap();
    std::fs::write(corrupt.join("kiban.toml"), "format_version = [").unwrap();
    assert_clean_failure(&kiban(&["doctor", "--data-dir", corrupt.to_str().unwrap()], &[]), "corrupt");
    let o = kiban(&["synth", "--patients", "5"], &[]);
    assert!(!o.status.success() && text(&o).contains("--patients"), "{}", text(&o));
    let occupied = tmp.path().join("occupied");
    std::fs::create_dir(&occupied).unwrap();
    std::fs::write(occupied.join("thesis.docx"), "x").unwrap();
    assert_clean_failure(&kiban(&["init", occupied.to_str().unwrap()], &[]), "not empty");
    let o = kiban(&["init", tmp.path().join("x").to_str().unwrap(), "--registry-url", "mysql://db"], &[]);
    assert_clean_failure(&o, "postgres://");
}

fn manifests(root: &Path) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for t in ["truth", "patients", "encounters", "diagnoses", "prescriptions", "labs"] {
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(root.join("parquet").join(t).join("manifest.json")).unwrap())
                .unwrap();
        for f in m["files"].as_array().unwrap() {
            v.push((format!("{t}/{}", f["path"]), f["sha256"].as_str().unwrap().to_owned()));
        }
    }
    v
}

#[test]
fn synth_is_deterministic_by_seed() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |name: &str, seed: &str| {
        let out = tmp.path().join(name);
        let o = kiban(&["synth", "--patients", "3000", "--seed", seed, "--out", out.to_str().unwrap()], &[]);
        assert!(o.status.success(), "{}", text(&o));
        manifests(&out)
    };
    let a = run("a", "7");
    assert_eq!(a.len(), 18, "three chunks per table");
    assert_eq!(a, run("b", "7"), "same seed → byte-identical files");
    assert_ne!(a, run("c", "8"));
}

#[test]
fn demo_runs_end_to_end_and_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let d = dir.to_str().unwrap();
    let o = kiban(&["demo", "--dir", d, "--patients", "2000", "--json"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let stages: Vec<&str> = v["stages"].as_array().unwrap().iter().map(|s| s["stage"].as_str().unwrap()).collect();
    for s in [
        "init",
        "providers",
        "synth",
        "verify",
        "gate",
        "identity",
        "anonymize",
        "pseudonymize",
        "review",
        "publication",
        "dicom",
        "audit",
    ] {
        assert!(stages.contains(&s), "stage {s} ran: {stages:?}");
    }
    let identity = v["stages"].as_array().unwrap().iter().find(|s| s["stage"] == "identity").unwrap();
    assert!(identity["result"].as_str().unwrap().contains("precision"), "{identity}");
    assert!(kiban(&["demo", "--dir", d, "--patients", "2000"], &[]).status.success(), "fresh again");
    let o = kiban(&["demo", "--dir", d, "--patients", "2000", "--reuse"], &[]);
    assert!(o.status.success() && text(&o).contains("reused"), "{}", text(&o));
    // The demo never clears a directory it did not make.
    let foreign = tmp.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    assert_clean_failure(&kiban(&["demo", "--dir", foreign.to_str().unwrap()], &[]), "not made by `kiban demo`");
}

fn write_batch(dir: &Path, rows: &[(&str, &str)]) {
    use std::sync::Arc;
    let t = dir.join("encounters");
    std::fs::create_dir_all(&t).unwrap();
    let schema = Arc::new(arrow::datatypes::Schema::new(vec![
        arrow::datatypes::Field::new("provider_id", arrow::datatypes::DataType::Utf8, false),
        arrow::datatypes::Field::new("patient_id", arrow::datatypes::DataType::Utf8, false),
    ]));
    let b = arrow::record_batch::RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(arrow::array::StringArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())),
            Arc::new(arrow::array::StringArray::from(rows.iter().map(|r| r.1).collect::<Vec<_>>())),
        ],
    )
    .unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(t.join("p.parquet")).unwrap(), schema, None)
        .unwrap();
    w.write(&b).unwrap();
    w.close().unwrap();
}

#[test]
fn c1_c3_c4_p4_p7_filing_notices_optouts_and_intake_through_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = dir.to_str().unwrap();
    assert!(kiban(&["init", d], &[]).status.success());
    let add = |extra: &[&str]| {
        let mut a = vec![
            "provider",
            "add",
            "--data-dir",
            d,
            "--id",
            "prov-a",
            "--name",
            "合成病院",
            "--filed-on",
            "2024-01-10",
            "--update-method",
            "月次",
            "--planned-start",
            "2024-02-01",
            "--transmission",
            "SFTP",
        ];
        a.extend_from_slice(extra);
        kiban(&a, &[])
    };
    assert!(add(&[]).status.success());
    let input = tmp.path().join("in");
    write_batch(
        &input,
        &[("prov-a", "00000001"), ("prov-a", "00000002"), ("prov-a", "00000003"), ("prov-a", "bad id")],
    );
    let submit = || {
        kiban(
            &[
                "intake",
                "submit",
                "--data-dir",
                d,
                "--provider",
                "prov-a",
                "--date",
                "2024-06-01",
                "--input",
                input.to_str().unwrap(),
            ],
            &[],
        )
    };
    assert_clean_failure(&submit(), "not published");
    let publish = |d: &str| {
        kiban(
            &[
                "provider",
                "publish",
                "--data-dir",
                d,
                "--id",
                "prov-a",
                "--minister-date",
                "2024-01-15",
                "--provider-date",
                "2024-01-20",
            ],
            &[],
        )
    };
    assert!(publish(d).status.success());
    assert_clean_failure(&submit(), "C4");
    assert!(add(&["--kind", "change", "--security-checked-on", "2024-01-12"]).status.success());
    assert!(publish(d).status.success());
    let csv = tmp.path().join("notices.csv");
    std::fs::write(
        &csv,
        "provider_id,patient_id,notice_date,method,recipient,text_version\n\
         prov-a,00000001,2024-01-01,mail,patient,v1\n\
         prov-a,00000002,2024-05-20,mail,patient,v1\n\
         prov-a,00000003,2024-01-01,mail,patient,v1\n\
         prov-a,00000004,someday,mail,patient,v1\n",
    )
    .unwrap();
    let o = kiban(&["notice", "import", "--data-dir", d, csv.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(2), "a rejected row is reported: {}", text(&o));
    assert!(text(&o).contains("3 recorded") && text(&o).contains("line 5: notice_date"), "{}", text(&o));
    let o = kiban(
        &[
            "optout",
            "add",
            "--data-dir",
            d,
            "--provider",
            "prov-a",
            "--patient",
            "00000003",
            "--requester-name",
            "合成 花子",
            "--json",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let id = v["optout"]["event_id"].as_str().unwrap().to_owned();
    let o = kiban(&["optout", "confirmation", "--data-dir", d, "--id", &id], &[]);
    assert!(text(&o).contains("六　本書面の交付年月日") && text(&o).contains("合成 花子"), "{}", text(&o));
    // The opt-out was recorded today, after the provision date 2024-06-01: that batch predates it.
    let o = kiban(
        &[
            "intake",
            "submit",
            "--data-dir",
            d,
            "--provider",
            "prov-a",
            "--date",
            "2024-06-01",
            "--input",
            input.to_str().unwrap(),
            "--json",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["report"]["rows_in"], 4);
    assert_eq!(v["report"]["admitted"], 2);
    assert_eq!(v["report"]["excluded_by_reason"]["notice_too_recent"], 1);
    assert_eq!(v["report"]["excluded_by_reason"]["malformed_identity"], 1);
    assert!(v["receipt"]["receipt_id"].is_string());
    assert_clean_failure(&submit(), "already received");
    let o = kiban(&["doctor", "--data-dir", d], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let o = kiban(&["intake", "delete-person", "--data-dir", d, "--provider", "prov-a", "--patient", "00000001"], &[]);
    assert!(o.status.success() && text(&o).contains("deleted 1 rows"), "{}", text(&o));
    let o = kiban(&["provider", "list", "--data-dir", d], &[]);
    assert!(text(&o).contains("may submit (filing #2"), "{}", text(&o));
}

#[test]
fn o1_check_output_flags_a_small_cell_and_suppress_mode_hides_it() {
    let tmp = tempfile::tempdir().unwrap();
    let table = tmp.path().join("table.csv");
    std::fs::write(
        &table,
        "age_band,sex,patients\n0-4,男,25\n0-4,女,3\n5-9,男,40\n5-9,女,30\n10-14,男,22\n10-14,女,31\n",
    )
    .unwrap();
    let decl = tmp.path().join("decl.toml");
    std::fs::write(
        &decl,
        "title = \"test\"\ncount_column = \"patients\"\nuser_made_label = \"利用者が独自に作成\"\n\
         [[dimension]]\ncolumn = \"age_band\"\nkind = \"age_band\"\n[[dimension]]\ncolumn = \"sex\"\nkind = \"sex\"\n",
    )
    .unwrap();
    let out = tmp.path().join("out");
    let args = |mode: &str| {
        vec![
            "check-output".to_owned(),
            "--table".into(),
            table.to_str().unwrap().into(),
            "--decl".into(),
            decl.to_str().unwrap().into(),
            "--mode".into(),
            mode.into(),
            "--out".into(),
            out.join(mode).to_str().unwrap().into(),
        ]
    };
    let check: Vec<String> = args("check");
    let o = kiban(&check.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    assert!(!o.status.success(), "a cell of 3 must not pass: {}", text(&o));
    let report = std::fs::read_to_string(out.join("check/report.json")).unwrap();
    assert!(report.contains("O1"), "{report}");
    let suppress: Vec<String> = args("suppress");
    let o = kiban(&suppress.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    let protected = std::fs::read_to_string(out.join("suppress/protected.csv")).unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(!protected.contains(",3\n") && protected.contains('X'), "{protected}");
}

fn json_of(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", text(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

#[test]
fn x7_backup_restores_into_an_empty_directory_that_passes_doctor_with_audit_chain_and_manifests() {
    let tmp = tempfile::tempdir().unwrap();
    let demo = tmp.path().join("demo");
    assert!(kiban(&["demo", "--dir", demo.to_str().unwrap(), "--patients", "1000"], &[]).status.success());
    let data = demo.join("data");
    let d = data.to_str().unwrap();
    let bak = tmp.path().join("kiban.bak");
    let b = json_of(&kiban(&["backup", "--data-dir", d, "--out", bak.to_str().unwrap(), "--json"], &[]));
    let bytes = std::fs::read(&bak).unwrap();
    assert_eq!(b["size_bytes"].as_u64().unwrap(), bytes.len() as u64);
    let needle = b"format_version";
    assert!(!bytes.windows(needle.len()).any(|w| w == needle), "the archive is encrypted");
    assert_clean_failure(&kiban(&["backup", "--data-dir", d, "--out", bak.to_str().unwrap()], &[]), "exists");
    // The self-assessment sees the backup.
    let a = json_of(&kiban(&["compliance", "assess", "--data-dir", d, "--json"], &[]));
    assert_eq!(a["facts"]["backup"]["ok"], true, "{}", a["facts"]["backup"]);

    let into = tmp.path().join("restored");
    let r = into.to_str().unwrap();
    assert_clean_failure(&kiban(&["restore", bak.to_str().unwrap(), "--into", r], &[]), "master key");
    let key = data.join("keys/master.key");
    let o = kiban(&["restore", bak.to_str().unwrap(), "--into", r, "--master-key-file", key.to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(json_of(&kiban(&["doctor", "--data-dir", r, "--json"], &[]))["ok"] == true);
    let a = json_of(&kiban(&["compliance", "assess", "--data-dir", r, "--json"], &[]));
    assert_eq!(a["facts"]["audit"]["ok"], true, "audit chain verifies: {}", a["facts"]["audit"]);
    assert_eq!(a["facts"]["encryption"]["ok"], true);
    // Every dataset manifest (and so every part file's digest, checked by doctor) is the original's.
    let mut n = 0;
    let mut stack = vec![data.join("clinical"), data.join("datasets")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|f| f == "manifest.json") {
                let rel = p.strip_prefix(&data).unwrap();
                assert_eq!(std::fs::read(&p).unwrap(), std::fs::read(into.join(rel)).unwrap(), "{}", rel.display());
                n += 1;
            }
        }
    }
    assert!(n > 0, "the demo made datasets");
    // A non-empty directory is refused; a damaged backup does not open.
    assert_clean_failure(
        &kiban(&["restore", bak.to_str().unwrap(), "--into", r, "--master-key-file", key.to_str().unwrap()], &[]),
        "not empty",
    );
    let mut bad = bytes.clone();
    let last = bad.len() - 5;
    bad[last] ^= 1;
    let badf = tmp.path().join("bad.bak");
    std::fs::write(&badf, bad).unwrap();
    let into2 = tmp.path().join("r2");
    assert_clean_failure(
        &kiban(
            &[
                "restore",
                badf.to_str().unwrap(),
                "--into",
                into2.to_str().unwrap(),
                "--master-key-file",
                key.to_str().unwrap(),
            ],
            &[],
        ),
        "does not open",
    );
    // Retention on the demo's data: a dry run far ahead deletes nothing, a real run records its purge.
    let dry =
        json_of(&kiban(&["retention", "run", "--data-dir", d, "--as-of", "2099-01-01", "--dry-run", "--json"], &[]));
    assert_eq!(dry["dry_run"], true);
    let log = json_of(&kiban(&["retention", "log", "--data-dir", d, "--json"], &[]));
    assert_eq!(log.as_array().unwrap().len(), 0, "a dry run records nothing");
    let run = json_of(&kiban(&["retention", "run", "--data-dir", d, "--as-of", "2099-01-01", "--json"], &[]));
    let purged: u64 = run["kinds"].as_array().unwrap().iter().map(|k| k["purged"].as_u64().unwrap()).sum();
    let dry_purged: u64 = dry["kinds"].as_array().unwrap().iter().map(|k| k["purged"].as_u64().unwrap()).sum();
    assert_eq!(purged, dry_purged, "the dry run said what the run did");
    let log = json_of(&kiban(&["retention", "log", "--data-dir", d, "--json"], &[]));
    assert_eq!(log.as_array().unwrap().len(), run["kinds"].as_array().unwrap().len());
    assert!(json_of(&kiban(&["doctor", "--data-dir", d, "--json"], &[]))["ok"] == true);
}

#[test]
fn b1_b2_compliance_matrix_assessment_attachments_and_business_report() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let m = json_of(&kiban(&["compliance", "matrix", "--workspace", ws.to_str().unwrap(), "--json"], &[]));
    let rows = m.as_array().unwrap();
    assert!(rows.len() >= 77, "every requirement id is listed");
    let row = |id: &str| rows.iter().find(|r| r["id"] == id).unwrap().clone();
    let c3 = row("C3");
    assert_eq!(c3["status"], "not run", "no results given");
    let first = c3["tests"][0]["name"].as_str().unwrap().to_owned();
    assert!(first.starts_with("c3_") || first.contains("_c3_"), "{first}");
    assert!(rows.iter().any(|r| r["status"] == "uncovered"), "requirements without tests show as uncovered");
    // With results: the named test passes, a failing one fails the requirement.
    let res = tmp.path().join("results.txt");
    let names: Vec<String> =
        c3["tests"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect();
    let mut out: String = names.iter().map(|n| format!("test registry::{n} ... ok\n")).collect();
    std::fs::write(&res, &out).unwrap();
    let html = tmp.path().join("matrix.html");
    let m = json_of(&kiban(
        &[
            "compliance",
            "matrix",
            "--workspace",
            ws.to_str().unwrap(),
            "--results",
            res.to_str().unwrap(),
            "--html",
            html.to_str().unwrap(),
            "--json",
        ],
        &[],
    ));
    assert_eq!(m.as_array().unwrap().iter().find(|r| r["id"] == "C3").unwrap()["status"], "pass");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("lang=\"ja\"") && page.contains("要件トレーサビリティ表") && !page.contains("<script"));
    out.push_str(&format!("test x::{} ... FAILED\n", names[0]));
    std::fs::write(&res, &out).unwrap();
    let m = json_of(&kiban(
        &["compliance", "matrix", "--workspace", ws.to_str().unwrap(), "--results", res.to_str().unwrap(), "--json"],
        &[],
    ));
    assert_eq!(m.as_array().unwrap().iter().find(|r| r["id"] == "C3").unwrap()["status"], "fail");

    // Self-assessment on a fresh data directory: gaps are named; an attachment closes a document-only item.
    let dir = tmp.path().join("data");
    let d = dir.to_str().unwrap();
    assert!(kiban(&["init", d], &[]).status.success());
    let a = json_of(&kiban(&["compliance", "assess", "--data-dir", d, "--json"], &[]));
    let item = |a: &serde_json::Value, id: &str| {
        a["items"].as_array().unwrap().iter().find(|i| i["id"] == id).unwrap().clone()
    };
    assert_eq!(item(&a, "art5-7")["met"], false);
    assert!(item(&a, "art5-7")["gap"].as_str().unwrap().contains("committee"));
    assert_eq!(item(&a, "art6-5-ro")["met"], false, "no backup yet");
    assert_eq!(item(&a, "art6-1-i")["met"], false);
    let policy = tmp.path().join("基本方針.txt");
    std::fs::write(&policy, "安全管理に係る基本方針（架空）").unwrap();
    assert_clean_failure(
        &kiban(&["compliance", "attach", "art99", policy.to_str().unwrap(), "--data-dir", d], &[]),
        "not a criterion",
    );
    let doc = json_of(&kiban(
        &["compliance", "attach", "art6-1-i", policy.to_str().unwrap(), "--data-dir", d, "--json"],
        &[],
    ));
    let stored = dir.join(doc["stored_path"].as_str().unwrap());
    assert_eq!(std::fs::read(&stored).unwrap(), std::fs::read(&policy).unwrap());
    let a = json_of(&kiban(&["compliance", "assess", "--data-dir", d, "--json"], &[]));
    assert_eq!(item(&a, "art6-1-i")["met"], true);
    let txt = text(&kiban(&["compliance", "assess", "--data-dir", d], &[]));
    assert!(txt.contains("不足 gaps") && txt.contains("art5-7"), "{txt}");

    // Business documents and the year's report.
    let plan = tmp.path().join("plan.pdf");
    std::fs::write(&plan, b"%PDF-1.4 plan").unwrap();
    let o = kiban(
        &[
            "business",
            "add",
            "--kind",
            "plan",
            "--year",
            "2026",
            "--submitted-on",
            "2026-03-25",
            plan.to_str().unwrap(),
            "--data-dir",
            d,
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let r = json_of(&kiban(&["business", "report", "--year", "2026", "--data-dir", d, "--json"], &[]));
    assert_eq!(r["figures"]["providers"], 0);
    assert_eq!(r["documents"][0]["kept"], true);
    assert_eq!(r["documents"][0]["submitted_on"], "2026-03-25");
    assert_eq!(r["documents"][2]["kept"], false);
    let txt = text(&kiban(&["business", "report", "--year", "2026", "--data-dir", d], &[]));
    assert!(txt.contains("令和8年度") && txt.contains("事業計画書") && txt.contains("保存済"), "{txt}");
}

#[test]
fn r1_r2_r9_committee_review_release_and_ledger_through_the_cli() {
    use kiban_registry::review::agreement::sample_agreement_for;
    use kiban_registry::review::application::sample_application;
    use kiban_registry::review::committee::{Expertise, sample_committee};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = dir.to_str().unwrap();
    assert!(kiban(&["init", d], &[]).status.success());
    let add = |m: &kiban_registry::review::committee::Member| {
        let sex = if m.sex == kiban_model::person::Sex::Male { "male" } else { "female" };
        let exp = match m.expertise {
            Expertise::NaturalScience => "natural_science",
            Expertise::HumanitiesSocialScience => "humanities_social_science",
            Expertise::LayPatientPerspective => "lay_patient_perspective",
        };
        let (ts, te) = (m.term_start.to_string(), m.term_end.to_string());
        let mut a = vec!["committee", "add-member", "--data-dir", d, "--id", &m.member_id, "--name", &m.name];
        a.extend(["--sex", sex, "--expertise", exp, "--term-start", &ts, "--term-end", &te]);
        if m.external {
            a.push("--external");
        }
        let o = kiban(&a, &[]);
        assert!(o.status.success(), "{}", text(&o));
    };
    let roster = sample_committee(6);
    roster[..4].iter().for_each(add);
    let o = kiban(&["committee", "check", "--on", "2026-06-10", "--data-dir", d], &[]);
    assert!(!o.status.success() && text(&o).contains("at least 5 members"), "{}", text(&o));
    roster[4..].iter().for_each(add);
    assert!(kiban(&["committee", "check", "--on", "2026-06-10", "--data-dir", d], &[]).status.success());

    let app = tmp.path().join("app.json");
    std::fs::write(&app, kiban(&["application", "template"], &[]).stdout).unwrap();
    assert!(kiban(&["application", "precheck", app.to_str().unwrap()], &[]).status.success());
    let mut long = sample_application();
    long.usage_to = "2028-12-31".parse().unwrap();
    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, serde_json::to_string(&long).unwrap()).unwrap();
    let o = kiban(&["application", "precheck", bad.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("usage_to") && text(&o).contains("D4"), "{}", text(&o));

    let o =
        kiban(&["application", "submit", app.to_str().unwrap(), "--on", "2026-06-01", "--data-dir", d, "--json"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let id = v["application_id"].as_str().unwrap().to_owned();
    let o = kiban(&["review", "open", &id, "--on", "2026-06-10", "--data-dir", d], &[]);
    assert!(o.status.success(), "{}", text(&o));
    kiban(&["review", "conflict", &id, "--member", "m5", "--reason", "共同研究者", "--data-dir", d], &[]);
    assert_clean_failure(
        &kiban(&["review", "vote", &id, "--member", "m5", "--vote", "approve", "--reason", "可", "--data-dir", d], &[]),
        "conflict of interest",
    );
    for m in ["m0", "m1", "m2", "m3", "m4"] {
        let o = kiban(
            &["review", "vote", &id, "--member", m, "--vote", "approve", "--reason", "妥当", "--data-dir", d],
            &[],
        );
        assert!(o.status.success(), "{}", text(&o));
    }
    let release = |extra: &[&str]| {
        let manifest = tmp.path().join("manifest.json");
        std::fs::write(&manifest, "{\"files\":[]}").unwrap();
        let mut a = vec!["release", "create", &id, "--manifest", manifest.to_str().unwrap(), "--item", "age_group"];
        a.extend(["--medium", "hdd-1:p1", "--on", "2026-07-01", "--data-dir", d]);
        a.extend(extra);
        kiban(&a, &[])
    };
    assert_clean_failure(&release(&[]), "not allowed while the application is UnderReview");
    let o = kiban(&["review", "decide", &id, "--outcome", "approve", "--on", "2026-06-10", "--data-dir", d], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let notice = text(&kiban(&["review", "notice", &id, "--data-dir", d], &[]));
    assert!(notice.contains("承諾通知書") && notice.contains("提供予定時期"), "{notice}");
    assert_clean_failure(&release(&[]), "no agreement signed");
    let agreement = tmp.path().join("agreement.json");
    std::fs::write(&agreement, serde_json::to_string(&sample_agreement_for(&sample_application())).unwrap()).unwrap();
    let ok = |a: &[&str]| {
        let o = kiban(a, &[]);
        assert!(o.status.success(), "{}", text(&o));
    };
    ok(&["release", "agree", &id, "--agreement", agreement.to_str().unwrap(), "--data-dir", d]);
    ok(&["release", "fee", &id, "--rate", "8000", "--minutes", "90", "--final", "--data-dir", d]);
    assert_clean_failure(&release(&[]), "payment of the fee");
    ok(&["release", "pay", &id, "--amount", "12000", "--on", "2026-06-20", "--data-dir", d]);
    let o = release(&["--release-id", "rel-1"]);
    assert!(o.status.success() && text(&o).contains("ledger entry"), "{}", text(&o));
    let list = text(&kiban(&["ledger", "list", "--data-dir", d], &[]));
    assert!(list.contains("利用者への提供") && list.contains("架空大学"), "{list}");
    let csv = text(&kiban(&["ledger", "export", "--format", "csv", "--data-dir", d], &[]));
    assert_eq!(csv.lines().count(), 2, "{csv}");
    let o = kiban(&["supervise", "run", "--as-of", "2028-07-02", "--data-dir", d], &[]);
    assert!(text(&o).contains("1 entitlement(s) ended"), "{}", text(&o));
    assert_clean_failure(
        &kiban(&["release", "ack", &id, "--release", "rel-9", "--on", "2026-07-02", "--data-dir", d], &[]),
        "no release rel-9",
    );
}

#[test]
fn s4_dicom_deid_cli_reports_per_file_and_never_copies_bad_files() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir_all(input.join("山田太郎")).unwrap();
    let p = kiban_dicom::synth::SynthPatient {
        kanji: ("山田".into(), "太郎".into()),
        kana: ("ヤマダ".into(), "タロウ".into()),
        patient_id: "H123456".into(),
        birth: "19550607".into(),
        sex: "M".into(),
        study_date: "20240415".into(),
        hospital: "合成市立病院".into(),
    };
    for (i, b) in kiban_dicom::synth::head_ct_series(&p, 2).into_iter().enumerate() {
        std::fs::write(input.join(format!("山田太郎/{i}.dcm")), b).unwrap();
    }
    std::fs::write(input.join("notes.txt"), "not DICOM").unwrap();
    let out = tmp.path().join("out");
    let o = kiban(
        &["dicom", "deid", input.to_str().unwrap(), "--out", out.to_str().unwrap(), "--ephemeral-key", "--json"],
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "a bad file makes the exit code 2: {}", text(&o));
    let reps: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let reps = reps.as_array().unwrap();
    assert_eq!(reps.len(), 3);
    let bad = reps.iter().find(|r| r["input"] == "notes.txt").unwrap();
    assert!(bad["error"].as_str().unwrap().contains("meta header") && bad["output"].is_null());
    let mut written = 0;
    for r in reps.iter().filter(|r| r["error"].is_null()) {
        let path = r["output"].as_str().unwrap();
        assert!(!path.contains("山田"), "output names never carry input names: {path}");
        let b = std::fs::read(path).unwrap();
        let f = kiban_formats::dicom::read(&b).unwrap();
        let all: String =
            kiban_formats::dicom::metadata_rows("", &f, None).into_iter().map(|r| r.value + "\n").collect();
        for s in ["山田", "太郎", "ヤマダ", "H123456", "19550607"] {
            assert!(!all.contains(s), "{s} survives in {path}");
        }
        written += 1;
    }
    assert_eq!(written, 2);
    assert!(!std::fs::read_dir(&out).unwrap().flatten().any(|e| e.file_name() == "notes.txt"));
    assert!(out.join("report.json").exists());
}
