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
        "visiting",
        "publication",
        "dicom",
        "security",
        "audit",
    ] {
        assert!(stages.contains(&s), "stage {s} ran: {stages:?}");
    }
    // R13, D9, R5: a Type II handler's query, a refused file read, one take-out approved and one
    // refused for a small cell, and the workspace deleted by the sweep with its ledger entry.
    let visiting = v["stages"].as_array().unwrap().iter().find(|s| s["stage"] == "visiting").unwrap();
    let r = visiting["result"].as_str().unwrap();
    assert!(
        r.contains("refused for a small cell") && r.contains("approved by checker") && r.contains("ledger ldg-"),
        "{r}"
    );
    // X5, X4, I2: the security summary — 2FA coverage, a brute force locked out and alerted, the chain verified.
    let security = v["stages"].as_array().unwrap().iter().find(|s| s["stage"] == "security").unwrap();
    let r = security["result"].as_str().unwrap();
    assert!(
        r.contains("2FA 9/9")
            && r.contains("locked out")
            && r.contains("repeated-login-failures")
            && r.contains("verified"),
        "{r}"
    );
    let drill: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("security-drill.json")).unwrap()).unwrap();
    assert_eq!(drill["audit_intact"], true, "{drill}");
    let identity = v["stages"].as_array().unwrap().iter().find(|s| s["stage"] == "identity").unwrap();
    assert!(identity["result"].as_str().unwrap().contains("precision"), "{identity}");
    assert!(kiban(&["demo", "--dir", d, "--patients", "2000"], &[]).status.success(), "fresh again");
    let o = kiban(&["demo", "--dir", d, "--patients", "2000", "--reuse"], &[]);
    assert!(o.status.success() && text(&o).contains("reused"), "{}", text(&o));
    visiting_creator_side_over_the_cli(&dir.join("data"));
    // The demo never clears a directory it did not make.
    let foreign = tmp.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    assert_clean_failure(&kiban(&["demo", "--dir", foreign.to_str().unwrap()], &[]), "not made by `kiban demo`");
}

/// R4–R7: every creator-side action on a workspace through `kiban workspace`: open for the demo's
/// approved Type II application, stop and resume use (R6), roster changes checked against the
/// application (R5), an R7 request reviewed and decided, close with its deletion record.
fn visiting_creator_side_over_the_cli(data: &Path) {
    let d = data.to_str().unwrap();
    let ws = |args: &[&str]| {
        let mut a = vec!["workspace"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["--data-dir", d, "--json"]);
        kiban(&a, &[])
    };
    let json = |o: Output| -> serde_json::Value {
        assert!(o.status.success(), "{}", text(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let list = json(ws(&["list"]));
    let app = list.as_array().unwrap().last().unwrap()["application_id"].as_str().unwrap().to_owned();
    let accounts = json(kiban(&["account", "list", "--data-dir", d, "--json"], &[]));
    let handler = accounts
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|a| a["login"].as_str().unwrap().starts_with("demo.visiting"))
        .unwrap();
    let hid = handler["account_id"].as_str().unwrap().to_owned();
    let extract = std::fs::read_dir(data.join("datasets"))
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().starts_with("visiting-extract-"))
        .unwrap()
        .path();
    let today = chrono::Utc::now().date_naive().to_string();
    let release = format!("rel-{}", &app[4..]);
    let opened = json(ws(&[
        "open",
        &app,
        "--handler",
        &hid,
        "--release",
        &release,
        "--dataset",
        &format!("claims={}", extract.display()),
        "--on",
        &today,
    ]));
    let wid = opened["workspace_id"].as_str().unwrap().to_owned();
    let query = |sql: &str| ws(&["query", &wid, "--as", &hid, sql]);
    assert!(query("SELECT count(*) AS n FROM claims").status.success());
    // R6: stopped means nobody works in it.
    json(ws(&["suspend", &wid, "--reason", "深夜の大量閲覧"]));
    assert_clean_failure(&query("SELECT count(*) AS n FROM claims"), "R6");
    json(ws(&["resume", &wid]));
    assert!(query("SELECT count(*) AS n FROM claims").status.success());
    // R5: only someone named on the application joins the roster; removal takes effect at once.
    let o = kiban(&["account", "add", "cli.stranger", "--role", "handler", "--name", "部外者", "--data-dir", d], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let accounts = json(kiban(&["account", "list", "--data-dir", d, "--json"], &[]));
    let stranger = accounts.as_array().unwrap().iter().find(|a| a["login"] == "cli.stranger").unwrap()["account_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_clean_failure(&ws(&["add-handler", &wid, "--account", &stranger]), "R5");
    // R7: the creator reviews and decides a request (made by the handler in the pages; here in words).
    let shown = json(ws(&["show", &wid]));
    assert_eq!(shown["state"]["handlers"][0]["account_id"], hid.as_str());
    assert!(shown["quarantine"].as_array().unwrap().is_empty() && shown["tools"].as_array().unwrap().is_empty());
    assert_clean_failure(&ws(&["request", &wid, "--index", "0"]), "no request #0");
    let removed = json(ws(&["remove-handler", &wid, "--account", &hid, "--reason", "異動"]));
    assert!(removed.as_array().unwrap().is_empty(), "{removed}");
    assert_clean_failure(&query("SELECT 1"), "not a handler");
    // Close: deleted, with the deletion record.
    let closed = json(ws(&["close", &wid, "--reason", "利用終了"]));
    assert!(closed["ledger_entry"].as_str().unwrap().starts_with("ldg-"), "{closed}");
    assert!(!data.join("workspaces").join(&wid).exists());
}

/// The batch's identity table (`patients`): goes to the vault at intake, never to clinical/.
fn write_patients(dir: &Path, ids: &[&str]) {
    use std::sync::Arc;
    let t = dir.join("patients");
    std::fs::create_dir_all(&t).unwrap();
    let cols = ["provider_id", "patient_id", "name_kanji", "name_kana", "sex", "birth_date"];
    let schema = Arc::new(arrow::datatypes::Schema::new(
        cols.iter()
            .map(|c| arrow::datatypes::Field::new(*c, arrow::datatypes::DataType::Utf8, false))
            .collect::<Vec<_>>(),
    ));
    let col = |f: &dyn Fn(usize) -> String| -> arrow::array::ArrayRef {
        Arc::new(arrow::array::StringArray::from((0..ids.len()).map(f).collect::<Vec<_>>()))
    };
    let b = arrow::record_batch::RecordBatch::try_new(
        schema.clone(),
        vec![
            col(&|_| "prov-a".into()),
            col(&|i| ids[i].into()),
            col(&|_| "合成 花子".into()),
            col(&|i| format!("ゴウセイ {}", ["イチ", "ニ", "サン", "シ"][i % 4])),
            col(&|_| "2".into()),
            col(&|i| format!("198{i}-04-0{}", i + 1)),
        ],
    )
    .unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(t.join("p.parquet")).unwrap(), schema, None)
        .unwrap();
    w.write(&b).unwrap();
    w.close().unwrap();
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
    write_patients(&input, &["00000001", "00000002", "00000003", "bad id"]);
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
    // Encounters and identities (patients): two persons admitted, their identities into the vault.
    assert_eq!(v["report"]["rows_in"], 8);
    assert_eq!(v["report"]["admitted"], 4);
    assert_eq!(v["report"]["excluded_by_reason"]["notice_too_recent"], 2);
    assert_eq!(v["report"]["excluded_by_reason"]["malformed_identity"], 2);
    let batch = v["report"]["batch_id"].as_str().unwrap();
    assert!(!dir.join("clinical").join(batch).join("patients").exists(), "identities never reach clinical/");
    let o = kiban(&["identity", "lookup", "--data-dir", d, "--provider", "prov-a", "--patient", "00000001"], &[]);
    assert!(o.status.success() && text(&o).contains("ゴウセイ イチ"), "in the vault: {}", text(&o));
    assert!(v["receipt"]["receipt_id"].is_string());
    assert_clean_failure(&submit(), "already received");
    let o = kiban(&["doctor", "--data-dir", d], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let o = kiban(&["intake", "delete-person", "--data-dir", d, "--provider", "prov-a", "--patient", "00000001"], &[]);
    assert!(o.status.success() && text(&o).contains("deleted 1 rows"), "{}", text(&o));
    assert!(text(&o).contains("erased 1 identity records"), "the vault too: {}", text(&o));
    let o = kiban(&["provider", "list", "--data-dir", d], &[]);
    assert!(text(&o).contains("may submit (filing #2"), "{}", text(&o));
    // Converted identities never land in a data directory in the clear: intake takes them in.
    let inside = dir.join("staging").join("converted");
    let o = kiban(
        &[
            "formats",
            "convert",
            "--format",
            "csv",
            "--input",
            "in",
            "--provider",
            "prov-a",
            "--out",
            inside.to_str().unwrap(),
        ],
        &[],
    );
    assert_clean_failure(&o, "kiban intake submit");
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

    // R12: the master key is rotated; doctor opens every sealed part with the new key, the old key
    // no longer opens the store, and the audit chain (whose key is sealed too) still verifies.
    let old_key = std::fs::read_to_string(&key).unwrap();
    let copy = tmp.path().join("new-master.key");
    let rot = json_of(&kiban(
        &["keys", "rotate-master", "--data-dir", d, "--new-key-out", copy.to_str().unwrap(), "--json"],
        &[],
    ));
    assert_eq!(rot["rotated"], true, "{rot}");
    let new_key = std::fs::read_to_string(&copy).unwrap();
    assert_ne!(old_key.trim(), new_key.trim());
    assert_eq!(std::fs::read_to_string(&key).unwrap().trim(), new_key.trim(), "the key file holds the new key");
    let doc = json_of(&kiban(&["doctor", "--data-dir", d, "--json"], &[]));
    assert!(doc["ok"] == true, "{doc}");
    let with_old = kiban(&["doctor", "--data-dir", d, "--json"], &[("KIBAN_MASTER_KEY", old_key.trim())]);
    assert!(!with_old.status.success(), "the old key must not open the store");
    assert!(text(&with_old).contains("key-check failed"), "{}", text(&with_old));
    assert!(kiban(&["audit", "verify", "--data-dir", d], &[]).status.success());
    let st = json_of(&kiban(&["keys", "status", "--data-dir", d, "--json"], &[]));
    assert_eq!(st["keks"][0]["active"], true, "{st}");
    assert!(!st.to_string().contains(new_key.trim()), "status shows no key");
}

#[test]
fn b1_b2_b3_x3_compliance_matrix_assessment_attachments_and_business_documents() {
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
    // The matrix published into the data directory, for the console's compliance page.
    let o = kiban(&["compliance", "matrix", "--workspace", ws.to_str().unwrap(), "--publish", "--data-dir", d], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let page = std::fs::read_to_string(dir.join("compliance/matrix.html")).unwrap();
    assert!(page.contains("要件トレーサビリティ表") && page.contains("C3"));
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
    // X3: physical measures are shown only by the operator's evidence (floor plan, entry logs).
    for id in ["art6-3-i", "art6-3-ro", "art6-3-ha"] {
        assert_eq!(item(&a, id)["met"], false, "{id} without evidence");
    }
    let plan = tmp.path().join("区画図.txt");
    std::fs::write(&plan, "取扱区域の区画図と入退室管理記録（架空）").unwrap();
    assert!(
        kiban(&["compliance", "attach", "art6-3-i", plan.to_str().unwrap(), "--data-dir", d], &[]).status.success()
    );
    let a = json_of(&kiban(&["compliance", "assess", "--data-dir", d, "--json"], &[]));
    assert_eq!(item(&a, "art6-3-i")["met"], true);
    assert_eq!(item(&a, "art6-3-ro")["met"], false, "one item's evidence does not close another");
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

    // B3: a notification of a change (変更・承継・廃止・解散) is kept with its digest and dates.
    let change = tmp.path().join("henko-todoke.pdf");
    std::fs::write(&change, b"%PDF-1.4 change of officers").unwrap();
    let o = kiban(
        &[
            "business",
            "add",
            "--kind",
            "change",
            "--year",
            "2026",
            "--submitted-on",
            "2026-10-01",
            "--published-on",
            "2026-10-03",
            change.to_str().unwrap(),
            "--data-dir",
            d,
            "--json",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let doc = json_of(&o);
    let sha = doc["sha256"].as_str().unwrap().to_owned();
    assert_eq!(sha, hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"%PDF-1.4 change of officers")));
    let kept = std::path::Path::new(d).join(doc["stored_path"].as_str().unwrap());
    assert_eq!(std::fs::read(&kept).unwrap(), b"%PDF-1.4 change of officers", "{}", kept.display());
    let list = json_of(&kiban(&["business", "list", "--data-dir", d, "--json"], &[]));
    let row = list.as_array().unwrap().iter().find(|r| r["sha256"] == sha.as_str()).expect("listed");
    assert_eq!((row["submitted_on"].as_str(), row["published_on"].as_str()), (Some("2026-10-01"), Some("2026-10-03")));
}

/// Adds a roster member through `kiban committee add-member`.
fn add_member(d: &str, m: &kiban_registry::review::committee::Member) {
    use kiban_registry::review::committee::Expertise;
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
}

/// Members m0–m4 vote to approve the application under review.
fn vote_approve(d: &str, id: &str) {
    for m in ["m0", "m1", "m2", "m3", "m4"] {
        let o = kiban(
            &["review", "vote", id, "--member", m, "--vote", "approve", "--reason", "妥当", "--data-dir", d],
            &[],
        );
        assert!(o.status.success(), "{}", text(&o));
    }
}

/// Members m0–m4 vote to approve the application under review, then the committee decides.
fn approve_by_votes(d: &str, id: &str) {
    vote_approve(d, id);
    let o = kiban(&["review", "decide", id, "--outcome", "approve", "--on", "2026-06-10", "--data-dir", d], &[]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn r1_r2_r9_committee_review_release_and_ledger_through_the_cli() {
    use kiban_registry::review::agreement::sample_agreement_for;
    use kiban_registry::review::application::sample_application;
    use kiban_registry::review::committee::sample_committee;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = dir.to_str().unwrap();
    assert!(kiban(&["init", d], &[]).status.success());
    let add = |m: &kiban_registry::review::committee::Member| add_member(d, m);
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
    let release = |extra: &[&str]| {
        let manifest = tmp.path().join("manifest.json");
        std::fs::write(&manifest, "{\"files\":[]}").unwrap();
        let mut a = vec!["release", "create", &id, "--manifest", manifest.to_str().unwrap(), "--item", "age_group"];
        a.extend(["--medium", "hdd-1:p1", "--on", "2026-07-01", "--data-dir", d]);
        a.extend(extra);
        kiban(&a, &[])
    };
    assert_clean_failure(&release(&[]), "not allowed while the application is UnderReview");
    vote_approve(d, &id);
    // The committee approves the pseudonymization policy the release is to be made under (A7).
    let policy = tmp.path().join("release-policy.toml");
    std::fs::write(
        &policy,
        "version = 1\nname = \"release\"\nkind = \"pseudonymization\"\n\
         [[columns]]\nname = \"patient_id\"\nrole = \"link_code\"\ntreatment = \"token\"\n\
         [[columns]]\nname = \"age_group\"\nrole = \"keep\"\n[[columns]]\nname = \"n\"\nrole = \"keep\"\n",
    )
    .unwrap();
    let pol = policy.to_str().unwrap();
    let o = kiban(
        &[
            "review",
            "decide",
            &id,
            "--outcome",
            "approve",
            "--on",
            "2026-06-10",
            "--processing-policy",
            pol,
            "--data-dir",
            d,
        ],
        &[],
    );
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
    // R3/R12: an encrypted package for one recipient, in the release gateway's outbox for them. The
    // source table (plain here, as a provider's extract); the release is made from it by the approved
    // policy with the release's own key (S2, A7).
    let ds = tmp.path().join("extract");
    std::fs::create_dir_all(&ds).unwrap();
    let part = b"patient_id,age_group,n\nPLANTED-PID-1,40-44,12\nPLANTED-PID-2,45-49,30\n";
    std::fs::write(ds.join("part-00000.csv"), part).unwrap();
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(part));
    let manifest = serde_json::json!({"manifest_version": 1, "name": "extract", "format": "csv",
        "columns": [["patient_id", "Utf8"], ["age_group", "Utf8"], ["n", "Int64"]], "rows": 2,
        "files": [{"path": "part-00000.csv", "rows": 2, "bytes": part.len(), "sha256": sha}], "provenance": {}});
    std::fs::write(ds.join("manifest.json"), manifest.to_string()).unwrap();
    let key = tmp.path().join("recipient.key");
    let package = |data: &[&str]| {
        let mut a = vec!["release", "package", &id];
        a.extend(data);
        a.extend(["--recipient", "acct-user1", "--item", "age_group", "--medium", "hdd-1:p1", "--on", "2026-07-01"]);
        a.extend(["--key-out", key.to_str().unwrap(), "--data-dir", d]);
        kiban(&a, &[])
    };
    // A pseudonymized release is not packaged from a dataset made elsewhere …
    assert_clean_failure(&package(&["--dataset", ds.to_str().unwrap()]), "A7");
    // … nor made under another policy than the approved one.
    let other = tmp.path().join("other-policy.toml");
    std::fs::write(&other, std::fs::read_to_string(&policy).unwrap().replace("\"release\"", "\"other\"")).unwrap();
    assert_clean_failure(&package(&["--source", ds.to_str().unwrap(), "--policy", other.to_str().unwrap()]), "A7");
    assert!(!key.exists(), "a refused release leaves no key file");
    let o = package(&["--source", ds.to_str().unwrap(), "--policy", pol]);
    assert!(o.status.success() && text(&o).contains("ledger entry"), "{}", text(&o));
    let outbox = dir.join("releases/outbox/acct-user1");
    let pkg = std::fs::read_dir(&outbox).unwrap().next().unwrap().unwrap().path();
    let raw = std::fs::read(&pkg).unwrap();
    assert!(!raw.windows(5).any(|w| w == b"40-44"), "the package is encrypted");
    assert!(
        !raw.windows(16).any(|w| std::fs::read_to_string(&key).unwrap().as_bytes().starts_with(w)),
        "no key inside"
    );
    let list = text(&kiban(&["ledger", "list", "--data-dir", d], &[]));
    assert!(list.contains("利用者への提供") && list.contains("架空大学"), "{list}");
    let csv = text(&kiban(&["ledger", "export", "--format", "csv", "--data-dir", d], &[]));
    assert_eq!(csv.lines().count(), 2, "{csv}");

    let opened = tmp.path().join("opened");
    let o = kiban(
        &[
            "release",
            "open",
            pkg.to_str().unwrap(),
            "--key-file",
            key.to_str().unwrap(),
            "--into",
            opened.to_str().unwrap(),
        ],
        &[],
    );
    assert!(o.status.success() && text(&o).contains("verified"), "{}", text(&o));
    let m = kiban_formats::read_manifest(&opened).unwrap();
    assert_eq!(m.rows, 2);
    let released: Vec<u8> = m.files.iter().flat_map(|f| std::fs::read(opened.join(&f.path)).unwrap()).collect();
    assert!(!released.windows(7).any(|w| w == b"PLANTED"), "patient ids are released as tokens only");
    assert_eq!(m.provenance["process"], "pseudonymization");
    let wrong = tmp.path().join("wrong.key");
    std::fs::write(&wrong, "00".repeat(32)).unwrap();
    assert_clean_failure(
        &kiban(
            &[
                "release",
                "open",
                pkg.to_str().unwrap(),
                "--key-file",
                wrong.to_str().unwrap(),
                "--into",
                tmp.path().join("o2").to_str().unwrap(),
            ],
            &[],
        ),
        "wrong key",
    );
    // R7, D4, D7: a user's request and its decision, a change, a publication and its usage report.
    let js = |a: &[&str]| {
        let mut v = a.to_vec();
        v.extend(["--data-dir", d, "--json"]);
        let o = kiban(&v, &[]);
        assert!(o.status.success(), "{a:?}: {}", text(&o));
        json_of(&o)
    };
    js(&["supervise", "request", &id, "--kind", "output_take_out", "--detail", "集計表の持出し"]);
    let st = js(&["supervise", "decide-request", &id, "--index", "0", "--grant", "--reason", "公表基準を満たす"]);
    assert!(st["state"].to_string().contains("公表基準を満たす"), "{st}");
    let st = js(&["supervise", "change", &id, "--change", r#"{"change":"publication_venue"}"#, "--on", "2026-07-10"]);
    assert_eq!(st["phase"], "approved", "a notify-only change keeps the approval: {}", st["phase"]);
    assert_clean_failure(&kiban(&["supervise", "change", &id, "--change", "{}", "--data-dir", d], &[]), "D4");
    js(&["supervise", "publication", &id, "--citation", "架空医学雑誌 2026;1:1", "--on", "2026-08-01"]);
    let due = text(&kiban(&["supervise", "run", "--as-of", "2026-11-15", "--data-dir", d], &[]));
    assert!(due.to_lowercase().contains("usage"), "a usage report is due 3 months after publication: {due}");
    js(&["supervise", "report", &id, "--kind", "usage", "--on", "2026-11-16"]);
    let due = text(&kiban(&["supervise", "run", "--as-of", "2026-11-17", "--data-dir", d], &[]));
    assert!(!due.to_lowercase().contains("usage"), "filed: {due}");
    // R5: the yearly audit of the user falls due a year after the first provision, and is recorded.
    let due = text(&kiban(&["supervise", "run", "--as-of", "2027-07-02", "--data-dir", d], &[]));
    assert!(due.contains("audit"), "{due}");
    js(&["supervise", "audit", &id, "--findings", "保管場所と台帳を確認、指摘なし", "--on", "2027-07-05"]);
    let due = text(&kiban(&["supervise", "run", "--as-of", "2027-07-06", "--data-dir", d], &[]));
    assert!(!due.contains("audit"), "{due}");
    let o = kiban(&["supervise", "run", "--as-of", "2028-07-02", "--data-dir", d], &[]);
    assert!(text(&o).contains("1 entitlement(s) ended"), "{}", text(&o));
    assert_clean_failure(
        &kiban(
            &["supervise", "deletion-certificate", &id, "--place", "p1", "--deleted-by", "user", "--data-dir", d],
            &[],
        ),
        "certificate",
    );
    let cert = tmp.path().join("deletion-certificate.pdf");
    std::fs::write(&cert, b"%PDF-1.4 deletion certificate").unwrap();
    let st = js(&[
        "supervise",
        "deletion-certificate",
        &id,
        "--place",
        "p1",
        "--deleted-by",
        "user",
        "--on",
        "2028-07-10",
        "--certificate",
        cert.to_str().unwrap(),
    ]);
    assert_eq!(st["state"]["deletions"]["p1"], "2028-07-10", "{st}");
    // R14, D8: a violation proposes its measure; the decided ban blocks the applicant.
    let table = js(&["sanction", "table"]);
    assert!(table.as_array().unwrap().len() >= 8, "{table}");
    let v = js(&[
        "sanction",
        "violation",
        "--offender",
        "架空法人",
        "--code",
        "loss",
        "--on",
        "2028-08-01",
        "--detail",
        "紛失",
    ]);
    assert!(v["proposal"]["text_ja"].as_str().unwrap().contains("か月"), "{v}");
    let s = js(&["sanction", "decide", v["violation_id"].as_str().unwrap(), "--months", "3", "--on", "2028-08-05"]);
    assert_eq!(s["ban_until"], "2028-10-31", "{s}");
    assert_clean_failure(
        &kiban(&["sanction", "decide", v["violation_id"].as_str().unwrap(), "--data-dir", d], &[]),
        "--months",
    );
    assert_clean_failure(
        &kiban(&["release", "ack", &id, "--release", "rel-9", "--on", "2026-07-02", "--data-dir", d], &[]),
        "no release rel-9",
    );
}

/// A fresh, empty PostgreSQL database on the test server (`KIBAN_TEST_POSTGRES_URL`); `None` when no
/// server is configured outside CI (under CI its absence fails the test).
fn fresh_pg_database(tag: &str) -> Option<String> {
    let Ok(admin) = std::env::var("KIBAN_TEST_POSTGRES_URL") else {
        assert!(std::env::var("CI").is_err(), "CI must set KIBAN_TEST_POSTGRES_URL (scripts/test.sh starts a server)");
        eprintln!("skipped: KIBAN_TEST_POSTGRES_URL is not set");
        return None;
    };
    let name = format!("kiban_{tag}_{:08x}", rand_u32());
    let o = Command::new("psql").args(["-X", "-q", "-c", &format!("CREATE DATABASE {name}")]).arg(&admin).output();
    let o = o.expect("psql runs");
    assert!(o.status.success(), "{}", text(&o));
    let base = admin.rsplit_once('/').expect("URL with a database").0;
    Some(format!("{base}/{name}"))
}

fn rand_u32() -> u32 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    t.subsec_nanos() ^ std::process::id().rotate_left(16)
}

#[test]
fn x7_backup_of_a_postgresql_registry_restores_into_an_empty_database() {
    let (Some(db1), Some(db2)) = (fresh_pg_database("bk"), fresh_pg_database("rs")) else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = dir.to_str().unwrap();
    assert!(kiban(&["init", d, "--registry-url", &db1], &[]).status.success());
    let o = kiban(
        &[
            "provider",
            "add",
            "--id",
            "prov-a",
            "--name",
            "合成病院（架空）",
            "--filed-on",
            "2026-01-05",
            "--update-method",
            "月次",
            "--planned-start",
            "2026-02-01",
            "--transmission",
            "SFTP",
            "--data-dir",
            d,
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let bak = tmp.path().join("pg.bak");
    let o = kiban(&["backup", "--data-dir", d, "--out", bak.to_str().unwrap(), "--json"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let key = dir.join("keys/master.key");
    let into = tmp.path().join("restored");
    let args = |into: &Path, url: &str| {
        vec![
            "restore".to_owned(),
            bak.to_str().unwrap().to_owned(),
            "--into".into(),
            into.to_str().unwrap().to_owned(),
            "--master-key-file".into(),
            key.to_str().unwrap().to_owned(),
            "--registry-url".into(),
            url.to_owned(),
            "--json".into(),
        ]
    };
    let a = args(&into, &db2);
    let o = kiban(&a.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    assert!(o.status.success(), "{}", text(&o));
    let r = json_of(&o);
    assert_eq!(r["ok"], true, "{r}");
    // The restored directory reads the restored database: the provider is there.
    let list = json_of(&kiban(&["provider", "list", "--data-dir", into.to_str().unwrap(), "--json"], &[]));
    assert_eq!(list[0]["provider"]["provider_id"], "prov-a", "{list}");
    assert!(std::fs::read_to_string(into.join("kiban.toml")).unwrap().contains(&db2));
    // A database that is not empty is refused.
    let again = tmp.path().join("again");
    let a = args(&again, &db2);
    assert_clean_failure(
        &kiban(&a.iter().map(String::as_str).collect::<Vec<_>>(), &[]),
        "restore only into an empty database",
    );
    assert!(!again.exists(), "nothing is written when the database is refused");
}

#[test]
fn i1_i2_i3_i4_incidents_leaks_complaints_and_contractors_through_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = dir.to_str().unwrap();
    assert!(kiban(&["init", d], &[]).status.success());
    let run = |args: &[&str]| {
        let mut a = args.to_vec();
        a.extend(["--data-dir", d, "--json"]);
        let o = kiban(&a, &[]);
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        json_of(&o)
    };
    // I2: an incident and its escalation.
    let i = run(&[
        "incident",
        "add",
        "--risk-item",
        "不正アクセス",
        "--description",
        "深夜の大量参照",
        "--severity",
        "high",
    ]);
    let id = i["incident_id"].as_str().unwrap().to_owned();
    let e = run(&["incident", "escalate", &id, "--to", "個人情報保護責任者", "--note", "一報"]);
    assert_eq!(e["escalations"].as_array().unwrap().len(), 1, "{e}");
    // I1: a leak detected 40 days ago and not malicious is past its 30-day deadline.
    let items = tmp.path().join("leak.json");
    std::fs::write(&items, r#"{"summary":"USBメモリの紛失","items":"氏名","persons":12,"cause":"","secondary_damage":"","response_to_persons":"","publication":"","prevention":"","other":""}"#).unwrap();
    let detected = (chrono::Utc::now() - chrono::Duration::days(40)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let r = run(&["leak", "open", "--detected-at", &detected, "--items", items.to_str().unwrap()]);
    let overdue = run(&["leak", "list", "--overdue"]);
    assert_eq!(overdue[0]["report_id"], r["report_id"], "{overdue}");
    let full = tmp.path().join("leak-final.json");
    std::fs::write(&full, r#"{"summary":"USBメモリの紛失","items":"氏名","persons":12,"cause":"持ち出し規程違反","secondary_damage":"なし","response_to_persons":"通知済","publication":"公表済","prevention":"媒体の暗号化","other":"なし"}"#).unwrap();
    // The confirmed report needs every item.
    assert_clean_failure(
        &kiban(
            &[
                "leak",
                "update",
                r["report_id"].as_str().unwrap(),
                "--items",
                items.to_str().unwrap(),
                "--final",
                "--data-dir",
                d,
            ],
            &[],
        ),
        "cause",
    );
    let fin = run(&["leak", "update", r["report_id"].as_str().unwrap(), "--items", full.to_str().unwrap(), "--final"]);
    assert_eq!(fin["final_report"], true);
    assert_eq!(run(&["leak", "list", "--overdue"]).as_array().unwrap().len(), 0, "the confirmed report closes it");
    // A malicious one gets 60 days.
    let m = run(&["leak", "open", "--detected-at", &detected, "--malicious", "--items", items.to_str().unwrap()]);
    let due = chrono::DateTime::parse_from_rfc3339(m["deadline"].as_str().unwrap()).unwrap();
    let det = chrono::DateTime::parse_from_rfc3339(&detected).unwrap();
    assert_eq!((due - det).num_days(), 60);
    std::fs::write(&items, r#"{"summary":""}"#).unwrap();
    assert_clean_failure(
        &kiban(&["leak", "open", "--detected-at", &detected, "--items", items.to_str().unwrap(), "--data-dir", d], &[]),
        "summary",
    );
    // I3: a complaint, then its cause and improvement as a later record.
    let c = run(&["complaint", "add", "--received-on", "2026-11-01", "--content", "説明が分かりにくい"]);
    let c2 = run(&[
        "complaint",
        "add",
        "--received-on",
        "2026-11-01",
        "--content",
        "説明が分かりにくい",
        "--cause",
        "用語",
        "--improvement",
        "説明文を改訂",
        "--supersedes",
        c["complaint_id"].as_str().unwrap(),
    ]);
    assert_eq!(c2["supersedes"], c["complaint_id"]);
    // I4: a contract missing an item is refused; a full one is kept with its audit.
    let contract = tmp.path().join("contract.json");
    let full = serde_json::json!({"name": "架空データセンター株式会社", "certification": "ISMS IS 000000（架空）",
        "scope": "サーバの運用", "procedures": "手順書による", "right_to_verify": "立入検査", "instructions": "書面で指示",
        "instruction_checks": "月次報告", "reporting": "漏えいは直ちに報告", "other_terms": "", "contracted_on": "2026-04-01"});
    let mut partial = full.clone();
    partial["reporting"] = "".into();
    std::fs::write(&contract, partial.to_string()).unwrap();
    assert_clean_failure(
        &kiban(&["contractor", "add", "--contract", contract.to_str().unwrap(), "--data-dir", d], &[]),
        "reporting",
    );
    std::fs::write(&contract, full.to_string()).unwrap();
    let k = run(&["contractor", "add", "--contract", contract.to_str().unwrap()]);
    let a = run(&[
        "contractor",
        "audit",
        k["contractor_id"].as_str().unwrap(),
        "--on",
        "2026-10-01",
        "--auditor",
        "監査担当",
        "--findings",
        "指摘なし",
    ]);
    assert_eq!(a["audits"].as_array().unwrap().len(), 1);
    // Every write went to the audit log, which verifies.
    let v = kiban(&["audit", "verify", "--data-dir", d], &[]);
    assert!(v.status.success() && text(&v).contains("異常なし"), "{}", text(&v));
}

#[test]
fn r8_r10_joint_use_and_transfer_contracts_are_checked_and_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = dir.to_str().unwrap();
    assert!(kiban(&["init", d], &[]).status.success());
    let party = |n: &str| serde_json::json!({"name": n, "manager": "管理者", "contact": "03-0000-0000", "address": "東京都（架空）"});
    let mut joint = serde_json::json!({"parties": [party("架空大学"), party("架空研究所")], "items": ["age_group", "sex"],
        "responsible_party": "架空大学", "handling_rules": "規程による", "breach_measures": "利用停止",
        "incident_reporting": "直ちに報告", "end_procedure": "消去と証明書", "all_parties_and_creator_agreed": true});
    let f = tmp.path().join("joint.json");
    // R8: an agreement missing an item is refused by name.
    joint["incident_reporting"] = "".into();
    std::fs::write(&f, joint.to_string()).unwrap();
    assert_clean_failure(
        &kiban(&["contract", "joint-use", f.to_str().unwrap(), "--signed-on", "2026-09-01", "--data-dir", d], &[]),
        "R8",
    );
    joint["incident_reporting"] = "直ちに報告".into();
    std::fs::write(&f, joint.to_string()).unwrap();
    let o = kiban(
        &["contract", "joint-use", f.to_str().unwrap(), "--signed-on", "2026-09-01", "--data-dir", d, "--json"],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    // R10: a transfer contract names both creators, the items and the method.
    let creator = |n: &str| serde_json::json!({"name": n, "address": "東京都（架空）", "representative": "代表 架空"});
    let mut transfer = serde_json::json!({"from": creator("架空作成事業者A"), "to": creator("架空作成事業者B"),
        "items": ["診療行為"], "method": "", "signed_on": "2026-10-01"});
    let t = tmp.path().join("transfer.json");
    std::fs::write(&t, transfer.to_string()).unwrap();
    assert_clean_failure(&kiban(&["contract", "transfer", t.to_str().unwrap(), "--data-dir", d], &[]), "R10");
    transfer["method"] = "専用線による送信".into();
    std::fs::write(&t, transfer.to_string()).unwrap();
    assert!(kiban(&["contract", "transfer", t.to_str().unwrap(), "--data-dir", d], &[]).status.success());
    let list = json_of(&kiban(&["contract", "list", "--data-dir", d, "--json"], &[]));
    let kinds: Vec<&str> = list.as_array().unwrap().iter().map(|c| c["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, vec!["joint_use", "transfer"]);
    let kept = &list[1];
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(kept["contract"].to_string().as_bytes()));
    assert_eq!(kept["sha256"], sha.as_str(), "the digest is of what was kept");
}

#[test]
fn p7_l1_identity_register_lookup_review_across_processes_audited_without_identifiers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = dir.to_str().unwrap();
    assert!(kiban(&["init", d], &[]).status.success());
    let csv = tmp.path().join("ids.csv");
    std::fs::write(
        &csv,
        "provider_id,patient_id,name_kanji,name_kana,sex,birth_date,postal_code,address,phone,insurer_number,card_symbol,card_number,card_branch\n\
         prov-a,A-1,山田 花子,ヤマダ ハナコ,2,1980-04-01,1000001,東京都千代田区1-1,0312345678,01130012,1234,567,01\n\
         prov-b,B-9,山田花子,ﾔﾏﾀﾞ ﾊﾅｺ,2,昭和55年4月1日,1000001,東京都千代田区1-1,03-1234-5678,1130012,１２３４,0567,1\n\
         prov-b,B-10,山田 桃子,ヤマダ モモコ,2,1980-04-01,1000001,東京都千代田区1-1,0312345678,01130012,1234,567,02\n\
         prov-c,C-1,山田 花子,,2,2023-02-30,,,,01130013,,,\n",
    )
    .unwrap();
    // One rejected record (empty kana, 2月30日, bad check digit): exit 2, per-record reasons.
    let o = kiban(&["identity", "register", csv.to_str().unwrap(), "--data-dir", d], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("3 records") && t.contains("1 rejected"), "{t}");
    assert!(t.contains("N-KANA-EMPTY") && t.contains("N-DATE-DAY") && t.contains("N-INSURER-CHECK"), "{t}");
    // A new process (the index rebuilt from the vault) finds both spellings as one person, the twin apart.
    let look = |prov: &str, pat: &str| {
        let o = kiban(&["identity", "lookup", "--provider", prov, "--patient", pat, "--json", "--data-dir", d], &[]);
        assert!(o.status.success(), "{}", text(&o));
        json_of(&o)[0]["person"].as_str().unwrap().to_owned()
    };
    let (a, b, twin) = (look("prov-a", "A-1"), look("prov-b", "B-9"), look("prov-b", "B-10"));
    assert_eq!(a, b);
    assert_ne!(a, twin);
    let o = kiban(&["identity", "lookup", "--person", &a, "--json", "--data-dir", d], &[]);
    assert_eq!(json_of(&o).as_array().unwrap().len(), 2);
    // Merge then undo, each in its own process.
    let o = kiban(&["identity", "merge", &twin, &a, "--data-dir", d], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(look("prov-b", "B-10"), a);
    assert!(kiban(&["identity", "undo", "1", "--data-dir", d], &[]).status.success());
    assert_eq!(look("prov-b", "B-10"), twin);
    // Linkage-key export needs an approved application naming the database.
    assert_clean_failure(
        &kiban(&["identity", "linkage-export", "--application", "nope", "--database", "NDB", "--data-dir", d], &[]),
        "linkage-key export refused",
    );
    // Every vault access is in the audit log, with person keys and counts but no identifier.
    let o = kiban(&["audit", "verify", "--data-dir", d], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let mut events = vec![];
    kiban_audit::for_each_entry(&dir.join("audit"), |e| {
        events.push(e.event);
        std::ops::ControlFlow::Continue(())
    })
    .unwrap();
    let identity: Vec<_> = events.iter().filter(|e| e.object.kind == kiban_audit::ObjectKind::Identity).collect();
    assert!(
        identity.iter().any(|e| e.action == kiban_audit::Action::Read && e.object.id == a && e.volume == 2),
        "{identity:?}"
    );
    assert!(identity.iter().any(|e| e.action == kiban_audit::Action::Write && e.volume == 3));
    let all = serde_json::to_string(&events).unwrap();
    for secret in ["山田", "ヤマダ", "ﾔﾏﾀﾞ", "A-1", "B-9", "1980-04-01", "0312345678", "01130012"] {
        assert!(!all.contains(secret), "the audit log carries {secret}");
    }
}

#[test]
fn l1_linkage_export_needs_an_approved_application_that_names_the_database() {
    use kiban_registry::review::committee::sample_committee;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = dir.to_str().unwrap();
    assert!(kiban(&["init", d], &[]).status.success());
    sample_committee(6).iter().for_each(|m| add_member(d, m));
    let mut app: serde_json::Value = serde_json::from_slice(&kiban(&["application", "template"], &[]).stdout).unwrap();
    app["plan"]["linkage"] = serde_json::json!(["NDB"]);
    let path = tmp.path().join("app.json");
    std::fs::write(&path, app.to_string()).unwrap();
    let o =
        kiban(&["application", "submit", path.to_str().unwrap(), "--on", "2026-06-01", "--data-dir", d, "--json"], &[]);
    let id = json_of(&o)["application_id"].as_str().unwrap().to_owned();
    let export = |db: &str| {
        let out = tmp.path().join(format!("keys-{db}.csv"));
        kiban(
            &[
                "identity",
                "linkage-export",
                "--application",
                &id,
                "--database",
                db,
                "--out",
                out.to_str().unwrap(),
                "--data-dir",
                d,
            ],
            &[],
        )
    };
    assert_clean_failure(&export("NDB"), "not approved");
    assert!(kiban(&["review", "open", &id, "--on", "2026-06-10", "--data-dir", d], &[]).status.success());
    approve_by_votes(d, &id);
    assert_clean_failure(&export("DPC"), "does not name DPC");
    // Approved, but the shared secret has not been imported yet.
    assert_clean_failure(&export("NDB"), "linkage/NDB");
    let csv = tmp.path().join("ids.csv");
    std::fs::write(
        &csv,
        "provider_id,patient_id,name_kanji,name_kana,sex,birth_date,postal_code,address,phone,insurer_number,card_symbol,card_number,card_branch\n\
         prov-a,A-1,山田 太郎,ﾔﾏﾀﾞ ﾀﾛｳ,1,昭和55年4月1日,,,,1130012,１２３４,0567,0\n",
    )
    .unwrap();
    assert!(kiban(&["identity", "register", csv.to_str().unwrap(), "--data-dir", d], &[]).status.success());
    // The public test secret 00 01 … 1F of LINKAGE.md: the exported keys are the published vectors.
    let secret: String = (0u8..32).map(|b| format!("{b:02x}")).collect();
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_kiban"));
    c.args(["identity", "import-key", "NDB", "--data-dir", d]).env_remove("KIBAN_MASTER_KEY");
    let mut child = c.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().unwrap();
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(secret.as_bytes()).unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    let o = export("NDB");
    assert!(o.status.success(), "{}", text(&o));
    let rows = std::fs::read_to_string(tmp.path().join("keys-NDB.csv")).unwrap();
    let line = rows.lines().nth(1).unwrap();
    assert!(line.contains(",c9859d3e168f") && line.contains(",cb9ddd8c9b2c"), "{rows}");
    assert!(!rows.contains("ヤマダ") && !rows.contains("A-1"), "keys only, no identifiers: {rows}");
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

#[test]
fn a3_dicom_deid_per_release_domains_are_unlinkable_unless_linkage_is_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = dir.to_str().unwrap();
    assert!(kiban(&["init", d], &[]).status.success());
    let input = tmp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let p = kiban_dicom::synth::SynthPatient {
        kanji: ("山田".into(), "太郎".into()),
        kana: ("ヤマダ".into(), "タロウ".into()),
        patient_id: "H123456".into(),
        birth: "19550607".into(),
        sex: "M".into(),
        study_date: "20240415".into(),
        hospital: "合成市立病院".into(),
    };
    std::fs::write(input.join("0.dcm"), kiban_dicom::synth::head_ct_series(&p, 1).remove(0)).unwrap();
    let run = |name: &str, extra: &[&str]| {
        let out = tmp.path().join(name);
        let mut args = vec!["dicom", "deid", input.to_str().unwrap(), "--out", out.to_str().unwrap(), "--no-ocr"];
        args.extend_from_slice(&["--data-dir", d, "--json"]);
        args.extend_from_slice(extra);
        let o = kiban(&args, &[]);
        assert!(o.status.success(), "{}", text(&o));
        let reps: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let f = kiban_formats::dicom::read(&std::fs::read(reps[0]["output"].as_str().unwrap()).unwrap()).unwrap();
        (
            f.dataset.ascii(kiban_formats::dicom::Tag(0x0010, 0x0020)),
            f.dataset.ascii(kiban_formats::dicom::Tag(0x0020, 0x000D)),
        )
    };
    let r1 = run("o1", &["--release", "r1"]);
    let r2 = run("o2", &["--release", "r2"]);
    let r3 = run("o3", &["--release", "r3", "--link-to", "r1", "--decision", "app-1/decision-2"]);
    assert!(r1.0.is_some() && r1.1.is_some());
    assert!(r1.0 != r2.0 && r1.1 != r2.1, "two releases cannot be joined");
    assert_eq!(r1, r3, "the allowed linkage reuses the earlier release's domain");
    assert_eq!(run("o1b", &["--release", "r1"]), r1, "a release's keys are made again");
    let o = kiban(&["dicom", "deid", input.to_str().unwrap(), "--out", "x", "--data-dir", d, "--link-to", "r1"], &[]);
    assert!(!o.status.success(), "linkage needs a release and a decision");
}

#[test]
fn x4_r12_serve_starts_on_a_data_directory_with_a_vault_and_answers_the_login_page() {
    use std::io::{BufRead, Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = dir.to_str().unwrap();
    assert!(kiban(&["init", d], &[]).status.success());
    // A vault exists and the audit log has a writer's history: the server holds both at once.
    assert!(kiban(&["identity", "review", "list", "--data-dir", d], &[]).status.success());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kiban"))
        .args(["serve", "--data-dir", d, "--bind", "127.0.0.1:0"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    let addr = line.trim().rsplit("http://").next().unwrap().to_owned();
    assert!(line.contains("listening"), "the server did not start: {line}");
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    write!(s, "GET /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(resp.starts_with("HTTP/1.1 200"), "{}", &resp[..resp.len().min(200)]);
}

/// Opens a dataset of a data directory with its key store (as the server and `kiban release` do).
struct StoreSealer(kiban_identity::keystore::KeyStore);

impl kiban_formats::Sealer for StoreSealer {
    fn seal(&self, aad: &[u8], plain: &[u8]) -> Vec<u8> {
        self.0.seal(aad, plain)
    }
    fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, String> {
        self.0.open_sealed(aad, sealed).map_err(|e| e.to_string())
    }
}

/// The values of `column` in a (sealed) dataset of the data directory.
fn dataset_column(data: &Path, name: &str, column: &str) -> Vec<String> {
    let s = StoreSealer(kiban_identity::keystore::KeyStore::open(&data.join("keys"), None).unwrap());
    let dir = data.join("datasets").join(name);
    let m = kiban_formats::verify_dataset(&dir).unwrap();
    assert!(m.sealed, "{name} is sealed at rest");
    let mut out = Vec::new();
    for f in &m.files {
        for b in kiban_formats::read_part(&dir, &m, f, Some(&s)).unwrap() {
            let a = b.column_by_name(column).unwrap();
            out.extend(arrow::array::cast::AsArray::as_string::<i32>(a).iter().map(|v| v.unwrap_or("").to_owned()));
        }
    }
    out
}

/// Every file under `root` whose bytes hold `needle`.
fn files_holding(root: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p).unwrap().windows(needle.len()).any(|w| w == needle) {
                hits.push(p.display().to_string());
            }
        }
    }
    hits
}

#[test]
fn s2_a3_r12_pseudonymize_and_anonymize_key_tokens_by_release_domain_and_keep_output_sealed_in_the_data_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = dir.to_str().unwrap();
    assert!(kiban(&["init", d], &[]).status.success());
    let policy = tmp.path().join("pseudo.toml");
    std::fs::write(
        &policy,
        "version = 1\nname = \"cli-pseudo\"\nkind = \"pseudonymization\"\n\
         [[columns]]\nname = \"patient_id\"\nrole = \"link_code\"\ntreatment = \"token\"\n\
         [[columns]]\nname = \"name\"\nrole = \"identifier\"\n\
         [[columns]]\nname = \"age\"\nrole = \"quasi_identifier\"\n\
         [[columns]]\nname = \"sex\"\nrole = \"quasi_identifier\"\n\
         [[columns]]\nname = \"finding\"\nrole = \"sensitive\"\n",
    )
    .unwrap();
    // Planted values: a name that must go, and a clinical finding that is kept, so it must be sealed.
    let input = tmp.path().join("claims.csv");
    std::fs::write(
        &input,
        "patient_id,name,age,sex,finding\n\
         P-0001,植田PLANTNAME花子,31,M,PLANTFINDING-7781\nP-0002,森PLANTNAME太郎,35,F,PLANTFINDING-7781\n\
         P-0003,林PLANTNAME一郎,38,M,PLANTFINDING-7781\nP-0004,原PLANTNAME次郎,33,F,PLANTFINDING-7781\n",
    )
    .unwrap();
    let (p, i) = (policy.to_str().unwrap(), input.to_str().unwrap());
    let run = |extra: &[&str]| {
        let mut a = vec!["pseudonymize", "--policy", p, "--input", i, "--data-dir", d];
        a.extend(extra);
        kiban(&a, &[])
    };
    let o = run(&["--dataset", "rel-a-extract", "--release", "rel-a"]);
    assert!(o.status.success() && text(&o).contains("release/rel-a"), "{}", text(&o));
    assert!(run(&["--dataset", "rel-b-extract", "--release", "rel-b"]).status.success());
    assert!(run(&["--dataset", "rel-a-again", "--release", "rel-a"]).status.success());
    let (a, b) =
        (dataset_column(&dir, "rel-a-extract", "patient_id"), dataset_column(&dir, "rel-b-extract", "patient_id"));
    assert_eq!(a.len(), 4);
    assert!(
        a.iter().all(|t| t.len() == 32) && a.iter().all(|t| !b.contains(t)),
        "two releases, unlinkable: {a:?} {b:?}"
    );
    assert_eq!(a, dataset_column(&dir, "rel-a-again", "patient_id"), "one release, one pseudonym domain");
    assert_eq!(dataset_column(&dir, "rel-a-extract", "finding")[0], "PLANTFINDING-7781", "clinical values kept (S1)");
    let m = kiban_formats::read_manifest(&dir.join("datasets/rel-a-extract")).unwrap();
    assert_eq!(m.provenance["process"], "pseudonymization");
    assert_eq!(m.provenance["policy_sha256"].as_str().unwrap().len(), 64, "the manifest names the policy hash");
    // Linkage needs an approved application that names the earlier release.
    assert_clean_failure(
        &run(&["--dataset", "x", "--release", "rel-c", "--link-to", "rel-a", "--application", "app-none"]),
        "app-none",
    );
    // The anonymizer writes sealed datasets too.
    let anon = tmp.path().join("anon.toml");
    std::fs::write(
        &anon,
        "version = 1\nname = \"cli-anon\"\n[privacy]\nk = 2\n\
         [hierarchies]\nage = { builder = \"age\", widths = [10] }\nsex = { builder = \"flat\" }\n\
         [[columns]]\nname = \"patient_id\"\nrole = \"identifier\"\n\
         [[columns]]\nname = \"name\"\nrole = \"identifier\"\n\
         [[columns]]\nname = \"age\"\nrole = \"quasi_identifier\"\nhierarchy = \"age\"\n\
         [[columns]]\nname = \"sex\"\nrole = \"quasi_identifier\"\nhierarchy = \"sex\"\n\
         [[columns]]\nname = \"finding\"\nrole = \"sensitive\"\n",
    )
    .unwrap();
    let an = anon.to_str().unwrap();
    let o = kiban(
        &["anonymize", "--policy", an, "--input", i, "--dataset", "anon-extract", "--quiet", "--data-dir", d],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(dataset_column(&dir, "anon-extract", "finding").len(), 4);
    // No plain medical value anywhere in the data directory after the runs (R12).
    for planted in ["PLANTFINDING-7781", "PLANTNAME", "P-0001"] {
        assert_eq!(files_holding(&dir, planted.as_bytes()), Vec::<String>::new(), "{planted} in plain");
    }
    // A plain file export with a data directory is refused, or done with --export-plain and audited.
    let out = tmp.path().join("export.csv");
    let o = out.to_str().unwrap();
    assert_clean_failure(&run(&["--output", o]), "--export-plain");
    assert_clean_failure(
        &kiban(&["anonymize", "--policy", an, "--input", i, "--output", o, "--data-dir", d], &[]),
        "--export-plain",
    );
    assert!(!out.exists());
    let r = run(&["--output", o, "--export-plain", "--release", "rel-a"]);
    assert!(r.status.success(), "{}", text(&r));
    assert!(std::fs::read_to_string(&out).unwrap().contains(&a[0]), "the export carries the release's tokens");
    assert!(!files_holding(&dir.join("audit"), b"plain-export/cli-pseudo").is_empty(), "the export is audited");
    // Without a data directory the output is a plain file under a one-run key.
    let none = tmp.path().join("no-data");
    let o2 = tmp.path().join("standalone.csv");
    let r = kiban(
        &[
            "pseudonymize",
            "--policy",
            p,
            "--input",
            i,
            "--output",
            o2.to_str().unwrap(),
            "--data-dir",
            none.to_str().unwrap(),
        ],
        &[],
    );
    assert!(r.status.success(), "{}", text(&r));
    assert!(!std::fs::read_to_string(&o2).unwrap().contains(&a[0]));
}

/// X6, I2: a statutory row edited in the registry's database file behind kiban's back is named by
/// `kiban audit verify`, which fails and records a failed verification that raises the integrity alert.
#[test]
fn x6_a_registry_row_edited_behind_kibans_back_is_caught_by_audit_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = dir.to_str().unwrap();
    assert!(kiban(&["init", d], &[]).status.success());
    assert!(kiban(&["account", "add", "au.sato", "--role", "auditor", "--data-dir", d], &[]).status.success());
    let o = kiban(&["audit", "verify", "--data-dir", d], &[]);
    assert!(o.status.success() && text(&o).contains("first anchor"), "{}", text(&o));
    let o = kiban(&["audit", "verify", "--data-dir", d], &[]);
    assert!(o.status.success() && text(&o).contains("anchored rows intact"), "{}", text(&o));

    // Edit the account's creation event in the SQLite file directly, as an attacker with the file would.
    let url = kiban_registry::Registry::sqlite_url(&dir.join("registry.sqlite"));
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let reg = kiban_registry::Registry::open(&url).await.unwrap();
        let sql = "UPDATE account_events SET by_account = 'nobody' WHERE event_id = (SELECT MIN(event_id) FROM account_events)";
        assert_eq!(reg.execute_admin(sql).await.unwrap(), 1);
        reg.close().await;
    });
    let o = kiban(&["audit", "verify", "--data-dir", d, "--json"], &[]);
    assert!(!o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["intact"], false);
    let f = &v["registry"]["check"]["findings"][0];
    assert!(f["table"] == "account_events" && f["what"] == "changed", "{v}");
    let alerts = std::fs::read_to_string(dir.join("audit/alerts.jsonl")).unwrap();
    assert!(alerts.contains("audit-integrity"), "{alerts}");
}

/// Every text value of every clinical dataset of a batch (opened with the data directory's keys),
/// by `table.column`.
fn clinical_values(data: &Path, batch: &str) -> Vec<(String, String)> {
    let s = StoreSealer(kiban_identity::keystore::KeyStore::open(&data.join("keys"), None).unwrap());
    let mut out = Vec::new();
    for e in std::fs::read_dir(data.join("clinical").join(batch)).unwrap().flatten() {
        let dir = e.path();
        let m = kiban_formats::verify_dataset(&dir).unwrap();
        assert!(m.sealed, "{} is sealed at rest", dir.display());
        for f in &m.files {
            for b in kiban_formats::read_part(&dir, &m, f, Some(&s)).unwrap() {
                for (field, col) in b.schema().fields().iter().zip(b.columns()) {
                    let c = arrow::compute::cast(col, &arrow::datatypes::DataType::Utf8).unwrap();
                    for v in arrow::array::cast::AsArray::as_string::<i32>(&c).iter().flatten() {
                        out.push((format!("{}.{}", m.name, field.name()), v.to_owned()));
                    }
                }
            }
        }
    }
    out
}

#[test]
fn b2_a3_uke_public_expense_numbers_go_to_the_vault_through_intake_and_never_to_the_clinical_store() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = dir.to_str().unwrap();
    assert!(kiban(&["init", d], &[]).status.success());
    let add = |extra: &[&str]| {
        let mut a = vec!["provider", "add", "--data-dir", d, "--id", "prov-a", "--name", "合成病院", "--filed-on"];
        a.extend_from_slice(&["2024-01-10", "--update-method", "月次", "--planned-start", "2024-02-01"]);
        a.extend_from_slice(&["--transmission", "SFTP"]);
        a.extend_from_slice(extra);
        assert!(kiban(&a, &[]).status.success());
        let p = ["provider", "publish", "--data-dir", d, "--id", "prov-a", "--minister-date", "2024-01-15"];
        assert!(kiban(&[&p[..], &["--provider-date", "2024-01-20"]].concat(), &[]).status.success());
    };
    add(&[]);
    add(&["--kind", "change", "--security-checked-on", "2024-01-12"]);
    let csv = tmp.path().join("notices.csv");
    std::fs::write(
        &csv,
        "provider_id,patient_id,notice_date,method,recipient,text_version\n\
         prov-a,P0001,2024-01-01,mail,patient,v1\nprov-a,P0002,2024-01-01,mail,patient,v1\n",
    )
    .unwrap();
    assert!(kiban(&["notice", "import", "--data-dir", d, csv.to_str().unwrap()], &[]).status.success());
    // A receipt file (Shift_JIS, CR LF) with 公費: P0001 has one programme, P0002 two, the second
    // with numbers whose check digits are wrong (quarantined by field and rule, never dropped).
    let uke = [
        "IR,1,13,1,1234567,,合成診療所（架空）,202406,00,0312345678",
        "RE,1,1112,202406,架空　花子,2,19600315,70,,,,,,P0001,,,,,,,ENC-0001,01,,,,,,,,,,,,,,,カクウ　ハナコ",
        "HO,06139992,１２,３４５,2,612,,,,,,,,,,01",
        "KO,54136015,1234566,,2,612,1200,500,,,,",
        "SY,0000999,20240603,1,,合成病名（架空）,01,",
        "RE,2,1112,202406,架空　一郎,1,19500101,70,,,,,,P0002,,,,,,,ENC-0002,01,,,,,,,,,,,,,,,カクウ　イチロウ",
        "HO,06139992,１２,６７８,30,9000,,,,,,,,,,00",
        "KO,12136016,2345676,,30,,,,,,,",
        "KO,21136011,7654321,,1,291,,,,,,",
        "GO,2,9612,99",
    ]
    .join("\r\n");
    let uke_dir = tmp.path().join("uke");
    std::fs::create_dir_all(&uke_dir).unwrap();
    let bytes = kiban_formats::encoding::encode_sjis(&(uke + "\r\n")).unwrap();
    std::fs::write(uke_dir.join("RECEIPTC.UKE"), bytes).unwrap();
    let conv = tmp.path().join("converted");
    let o = kiban(
        &[
            "formats",
            "convert",
            "--format",
            "uke",
            "--input",
            uke_dir.to_str().unwrap(),
            "--provider",
            "prov-a",
            "--out",
            conv.to_str().unwrap(),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(conv.join("identity/public_expense_ids").is_dir() && !conv.join("clinical/public_expense_ids").exists());
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
            conv.to_str().unwrap(),
            "--json",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let table = |t: &str| v["report"]["tables"].as_array().unwrap().iter().find(|x| x["table"] == t).cloned();
    let pe = table("public_expense_ids").expect("the 公費 numbers are taken in");
    assert_eq!(
        (pe["rows_in"].as_u64(), pe["admitted"].as_u64(), pe["excluded"].as_u64()),
        (Some(3), Some(2), Some(1)),
        "{v}"
    );
    assert_eq!(table("patients").unwrap()["admitted"], 2, "{v}");
    assert_eq!(table("public_expenses").unwrap()["admitted"], 3, "the programmes themselves are clinical: {v}");
    assert_eq!(v["report"]["excluded_by_reason"]["identity_rejected"], 1, "{v}");
    let batch = v["report"]["batch_id"].as_str().unwrap();
    // In the vault, found through the identity API (the CLI's lookup) for the person.
    let o = kiban(&["identity", "lookup", "--data-dir", d, "--provider", "prov-a", "--patient", "P0001"], &[]);
    assert!(
        o.status.success() && text(&o).contains("負担者番号 payer 54136015  受給者番号 recipient 1234566"),
        "{}",
        text(&o)
    );
    let o = kiban(&["identity", "lookup", "--data-dir", d, "--provider", "prov-a", "--patient", "P0002"], &[]);
    assert!(text(&o).contains("payer 12136016  受給者番号 recipient 2345676"), "{}", text(&o));
    assert!(!text(&o).contains("21136011"), "a number with a bad check digit is not stored: {}", text(&o));
    // Nowhere in the clinical store: not as a table, not in any value (opened), not in any byte.
    assert!(!dir.join("clinical").join(batch).join("public_expense_ids").exists());
    let values = clinical_values(&dir, batch);
    assert!(values.iter().any(|(c, v)| c == "public_expenses.program_code" && v == "54"), "{values:?}");
    assert!(values.iter().any(|(c, _)| c == "public_expenses.person_key"), "linked by person key: {values:?}");
    for n in ["54136015", "1234566", "12136016", "2345676", "21136011", "7654321"] {
        assert!(!values.iter().any(|(_, v)| v.contains(n)), "{n} in the clinical store: {values:?}");
        assert!(files_holding(&dir, n.as_bytes()).is_empty(), "{n} in plain bytes under {d}");
    }
    // A P7 deletion erases them with the identity.
    let o = kiban(&["intake", "delete-person", "--data-dir", d, "--provider", "prov-a", "--patient", "P0001"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let o = kiban(&["identity", "lookup", "--data-dir", d, "--provider", "prov-a", "--patient", "P0002"], &[]);
    assert!(text(&o).contains("12136016"), "another person's numbers stay: {}", text(&o));
    let k = kiban_identity::keystore::KeyStore::open(&dir.join("keys"), None).unwrap();
    let audit = kiban_identity::vault::MemoryAudit(Default::default());
    let store = kiban_identity::store::IdentityStore::open(
        &dir.join("identity"),
        k,
        kiban_identity::mpi::MatchConfig::default(),
        &audit,
        "test",
    )
    .unwrap();
    assert!(store.mpi().lookup("prov-a", "P0001").is_empty(), "P0001's identity is erased");
    let (_, p2) = store.mpi().lookup("prov-a", "P0002").last().copied().unwrap();
    let got = store.public_expense_ids(&audit, "test", p2).unwrap();
    let got: Vec<_> = got.iter().map(|e| (e.payer.as_str(), e.recipient.as_ref().map(|r| r.as_str()))).collect();
    assert_eq!(got, [("12136016", Some("2345676"))]);
    assert!(!audit.0.lock().unwrap().is_empty(), "the read is audited");
}
