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
    for s in ["init", "providers", "synth", "verify", "gate", "identity", "anonymize", "review", "publication", "audit"] {
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
