//! The Visiting environment's engine: isolation (R13), limits (R6), sealed storage, capped row views
//! and the take-out check (D9), end-of-use deletion (R5), own data after approval (R7).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use kiban_disclosure::decl::Declaration;
use kiban_formats::Sealer;
use kiban_formats::dataset::{DatasetWriter, FileFormat};
use kiban_workspace::chart::{ChartKind, ChartSpec};
use kiban_workspace::{Limits, StagedKind, TakeoutStatus, Workspace, WorkspaceError, new_id};
use sha2::{Digest, Sha256};

/// A test key store: SHA-256 counter-mode keystream and a keyed tag over AAD and ciphertext, so a
/// wrong AAD (a file moved to another workspace) fails, and no plaintext reaches the disk.
struct TestSealer([u8; 32]);

impl TestSealer {
    fn stream(&self, nonce: &[u8], n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 32);
        let mut i = 0u64;
        while out.len() < n {
            out.extend_from_slice(
                &Sha256::new().chain_update(self.0).chain_update(nonce).chain_update(i.to_le_bytes()).finalize(),
            );
            i += 1;
        }
        out.truncate(n);
        out
    }
    fn tag(&self, aad: &[u8], ct: &[u8]) -> [u8; 32] {
        Sha256::new().chain_update(self.0).chain_update(aad).chain_update(ct).finalize().into()
    }
}

impl Sealer for TestSealer {
    fn seal(&self, aad: &[u8], plain: &[u8]) -> Vec<u8> {
        let nonce: [u8; 16] = rand_nonce();
        let ks = self.stream(&nonce, plain.len());
        let mut ct: Vec<u8> = nonce.to_vec();
        ct.extend(plain.iter().zip(ks).map(|(a, b)| a ^ b));
        let tag = self.tag(aad, &ct);
        ct.extend_from_slice(&tag);
        ct
    }
    fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, String> {
        if sealed.len() < 48 {
            return Err("too short".into());
        }
        let (body, tag) = sealed.split_at(sealed.len() - 32);
        if self.tag(aad, body) != tag {
            return Err("authentication failed".into());
        }
        let (nonce, ct) = body.split_at(16);
        Ok(ct.iter().zip(self.stream(nonce, ct.len())).map(|(a, b)| a ^ b).collect())
    }
}

fn rand_nonce() -> [u8; 16] {
    let id = new_id("n");
    let mut n = [0u8; 16];
    n.copy_from_slice(&Sha256::digest(id.as_bytes())[..16]);
    n
}

/// A marker that appears in the data and must never appear on disk in plaintext.
const MARKER: &str = "合成患者トークンZQX";

/// A released dataset: 200 claims, sex balanced, one rare diagnosis with 3 patients.
fn released(dir: &Path, sealer: Arc<dyn Sealer>, name: &str) -> std::path::PathBuf {
    let schema = Arc::new(Schema::new(vec![
        Field::new("patient", DataType::Utf8, false),
        Field::new("sex", DataType::Utf8, false),
        Field::new("icd10", DataType::Utf8, false),
        Field::new("cost", DataType::Int64, false),
    ]));
    let n = 200;
    let patient: Vec<String> = (0..n).map(|i| format!("{MARKER}{i:04}")).collect();
    let sex: Vec<&str> = (0..n).map(|i| if i % 2 == 0 { "男" } else { "女" }).collect();
    let icd: Vec<&str> = (0..n)
        .map(|i| {
            if i < 3 {
                "Q87.1"
            } else if i % 3 == 0 {
                "E11"
            } else {
                "I10"
            }
        })
        .collect();
    let cost: Vec<i64> = (0..n).map(|i| 1000 + i as i64).collect();
    let b = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(patient)) as ArrayRef,
            Arc::new(StringArray::from(sex)),
            Arc::new(StringArray::from(icd)),
            Arc::new(Int64Array::from(cost)),
        ],
    )
    .unwrap();
    let out = dir.join(name);
    let w = DatasetWriter::create(&out, name, schema, FileFormat::Parquet).unwrap().sealed(sealer);
    w.write_part("part-00000", &[b]).unwrap();
    w.commit(serde_json::json!({"test": true})).unwrap();
    out
}

struct Env {
    _dir: tempfile::TempDir,
    base: std::path::PathBuf,
    a: Workspace,
    b: Workspace,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let sealer: Arc<dyn Sealer> = Arc::new(TestSealer([7; 32]));
    let src = released(dir.path(), sealer.clone(), "claims_release");
    let base = dir.path().join("workspaces");
    let a = Workspace::create(&base, &new_id("ws"), sealer.clone()).unwrap();
    let b = Workspace::create(&base, &new_id("ws"), sealer).unwrap();
    a.add_dataset("claims", &src).unwrap();
    b.add_dataset("secret_b", &src).unwrap();
    Env { _dir: dir, base, a, b }
}

fn refused(r: Result<kiban_workspace::ResultInfo, WorkspaceError>) -> WorkspaceError {
    match r {
        Err(e @ WorkspaceError::Refused { .. }) => e,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn r13_a_query_reaches_only_its_own_workspace_tables() {
    let e = env();
    let lim = Limits::default();
    let ok = e.a.query("h1", "SELECT sex, count(*) AS n FROM claims GROUP BY sex ORDER BY sex", lim).await.unwrap();
    assert_eq!(ok.rows, 2);
    let other = e.b.id().to_owned();
    let attempts = [
        "SELECT * FROM secret_b".to_owned(),
        "SELECT * FROM datafusion.public.secret_b".to_owned(),
        format!("SELECT * FROM \"{other}\".secret_b"),
        format!("SELECT * FROM read_parquet('../{other}/datasets/secret_b/part-00000.parquet.kbs')"),
        "SELECT * FROM read_csv('/etc/passwd')".to_owned(),
        format!("SELECT * FROM '../{other}/datasets/secret_b'"),
        "SELECT * FROM 'file:///etc/passwd'".to_owned(),
        "SELECT * FROM claims c JOIN secret_b s ON c.patient = s.patient".to_owned(),
        "WITH x AS (SELECT * FROM secret_b) SELECT * FROM x".to_owned(),
        "CREATE EXTERNAL TABLE stolen STORED AS CSV LOCATION '/etc/passwd'".to_owned(),
        "COPY (SELECT * FROM claims) TO '/tmp/kiban-stolen.csv'".to_owned(),
        "COPY claims TO 's3://bucket/x.parquet'".to_owned(),
        "INSERT INTO claims VALUES ('x', 'x', 'x', 1)".to_owned(),
        "CREATE TABLE copy_of AS SELECT * FROM claims".to_owned(),
        "SET datafusion.execution.target_partitions = 64".to_owned(),
        "SELECT 1; SELECT * FROM secret_b".to_owned(),
        "SELECT * FROM information_schema.df_settings".to_owned(),
    ];
    for q in &attempts {
        let err = refused(e.a.query("h1", q, lim).await);
        assert!(!err.to_string().contains(MARKER), "{err}");
    }
    assert!(!Path::new("/tmp/kiban-stolen.csv").exists(), "COPY wrote nothing");
    // Outside-reach attempts are marked for monitoring (R6).
    assert!(refused(e.a.query("h1", "SELECT * FROM secret_b", lim).await).is_outside_reach());
    // information_schema shows only this workspace's tables.
    let r = e.a.query("h1", "SELECT table_name FROM information_schema.tables ORDER BY table_name", lim).await.unwrap();
    let names: Vec<String> = e.a.page(&r.result_id, 0, 100).unwrap().rows.into_iter().map(|r| r[0].clone()).collect();
    assert!(names.contains(&"claims".to_owned()), "{names:?}");
    assert!(!names.iter().any(|n| n == "secret_b" || n.starts_with("ws-")), "{names:?}");
    // Ids from URLs cannot walk paths.
    assert!(matches!(e.a.page("../../etc", 0, 10), Err(WorkspaceError::NotFound { .. })));
    assert!(matches!(e.a.page(&format!("../{other}/results/x"), 0, 10), Err(WorkspaceError::NotFound { .. })));
    assert!(Workspace::open(&e.base, &format!("../{other}"), Arc::new(TestSealer([7; 32]))).is_err());
    // A part copied into another workspace does not decrypt there: each copy is bound to its workspace.
    let pa = e.a.page(&ok.result_id, 0, 10).unwrap();
    assert_eq!(pa.rows.len(), 2);
}

#[tokio::test]
async fn r13_datasets_results_scripts_and_takeouts_stay_sealed_at_rest() {
    let e = env();
    let r = e.a.query("h1", "SELECT patient, cost FROM claims WHERE cost < 1010", Limits::default()).await.unwrap();
    assert_eq!(r.rows, 10);
    assert!(e.a.page(&r.result_id, 0, 5).unwrap().rows[0][0].starts_with(MARKER), "decrypted in memory for the view");
    e.a.save_script("my_query", &format!("SELECT * FROM claims WHERE patient = '{MARKER}0001'")).unwrap();
    assert!(e.a.script("my_query").unwrap().contains(MARKER));
    fn scan(p: &Path, found: &mut Vec<String>) {
        for entry in std::fs::read_dir(p).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                scan(&path, found);
            } else if std::fs::read(&path).unwrap().windows(MARKER.len()).any(|w| w == MARKER.as_bytes()) {
                found.push(path.display().to_string());
            }
        }
    }
    let mut found = Vec::new();
    scan(&e.base, &mut found);
    assert!(found.is_empty(), "plaintext on disk: {found:?}");
}

#[tokio::test]
async fn r6_runaway_queries_stop_at_their_limits_without_harming_other_workspaces() {
    let e = env();
    let tight = Limits { memory_bytes: 1 << 20, max_rows: 100, timeout: Duration::from_millis(400) };
    // Time: an endless count is stopped, while the other workspace's query runs to completion.
    let (slow, fine) = tokio::join!(
        e.a.query("h1", "SELECT count(*) FROM generate_series(1, 1000000000000)", tight),
        e.b.query("h2", "SELECT icd10, count(*) AS n FROM secret_b GROUP BY icd10", Limits::default()),
    );
    assert!(matches!(slow, Err(WorkspaceError::Limit { limit: "time", .. })), "{slow:?}");
    assert_eq!(fine.unwrap().rows, 3);
    // Memory: a big sort cannot spill to disk and stops at the pool limit.
    let started = std::time::Instant::now();
    let mem =
        e.a.query(
            "h1",
            "SELECT v FROM generate_series(1, 3000000) t(v) ORDER BY v DESC",
            Limits { timeout: Duration::from_secs(30), ..tight },
        )
        .await;
    assert!(matches!(mem, Err(WorkspaceError::Limit { limit: "memory", .. })), "{mem:?}");
    assert!(started.elapsed() < Duration::from_secs(30));
    // Rows: the result stops at the row limit and says so.
    let r = e.a.query("h1", "SELECT * FROM claims", tight).await.unwrap();
    assert_eq!((r.rows, r.truncated), (100, true));
    let r = e.a.query("h1", "SELECT * FROM claims LIMIT 100", tight).await.unwrap();
    assert_eq!((r.rows, r.truncated), (100, false));
}

#[tokio::test]
async fn d9_row_level_views_are_capped_and_aggregates_page_normally() {
    let e = env();
    let lim = Limits::default();
    let rows = e.a.query("h1", "SELECT patient, sex FROM claims", lim).await.unwrap();
    assert!(rows.row_level);
    let p = e.a.page(&rows.result_id, 0, 1000).unwrap();
    assert_eq!((p.page_rows, p.rows.len(), p.pages), (20, 20, 10), "row-level pages are capped at 20 rows");
    let last = e.a.page(&rows.result_id, 9, 1000).unwrap();
    assert_eq!(last.rows.len(), 20);
    assert!(e.a.page(&rows.result_id, 10, 1000).unwrap().rows.is_empty());
    let agg = e.a.query("h1", "SELECT cost % 150 AS k, count(*) AS n FROM claims GROUP BY k", lim).await.unwrap();
    assert!(!agg.row_level);
    let p = e.a.page(&agg.result_id, 0, 1000).unwrap();
    assert_eq!((p.page_rows, p.rows.len()), (100, 100));
    assert_eq!(e.a.results().unwrap().len(), 2);
    assert!(e.a.result_sql(&rows.result_id).unwrap().contains("SELECT patient"));
}

fn decl(dim: &str, kind: &str) -> Declaration {
    Declaration::from_toml(&format!(
        "title = \"test\"\ncount_column = \"n\"\nuser_made_label = \"利用者が独自に作成・加工した資料\"\n\
         [[dimension]]\ncolumn = \"{dim}\"\nkind = \"{kind}\"\n"
    ))
    .unwrap()
}

#[tokio::test]
async fn d9_takeout_passes_the_publication_check_and_only_the_approved_version_leaves() {
    let e = env();
    let lim = Limits::default();
    let now = chrono::Utc::now();
    // A small cell (3 patients with a rare diagnosis): refused, stays inside.
    let small = e.a.query("h1", "SELECT icd10, count(*) AS n FROM claims GROUP BY icd10", lim).await.unwrap();
    let t = e.a.request_takeout(&small.result_id, "h1", &decl("icd10", "other"), now).unwrap();
    assert_eq!(t.status, TakeoutStatus::Refused);
    assert!(t.findings.iter().any(|f| f.contains("O1")), "{:?}", t.findings);
    assert!(e.a.approved_output(&t.takeout_id).is_err());
    assert!(e.a.decide_takeout(&t.takeout_id, "checker", true, "", now).is_err(), "a refused table is not approvable");
    // A table by sex (100 each) passes and waits for a checker; the handler cannot approve it.
    let ok = e.a.query("h1", "SELECT sex, count(*) AS n FROM claims GROUP BY sex", lim).await.unwrap();
    let t = e.a.request_takeout(&ok.result_id, "h1", &decl("sex", "sex"), now).unwrap();
    assert_eq!(t.status, TakeoutStatus::AwaitingApproval, "{:?}", t.findings);
    assert!(e.a.approved_output(&t.takeout_id).is_err(), "not before approval");
    assert!(e.a.decide_takeout(&t.takeout_id, "h1", true, "", now).is_err(), "no self-approval");
    let d = e.a.decide_takeout(&t.takeout_id, "checker-1", true, "", now).unwrap();
    assert_eq!(d.status, TakeoutStatus::Approved);
    let (bytes, approval) = e.a.approved_output(&t.takeout_id).unwrap();
    assert_eq!(hex::encode(Sha256::digest(&bytes)), approval.table_sha256);
    assert_eq!(approval.checker, "checker-1");
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.contains("100"), "{text}");
    // A row-level result cannot pass: row-level results are not tables of counts.
    let rows = e.a.query("h1", "SELECT patient, sex FROM claims LIMIT 5", lim).await.unwrap();
    let r = e.a.request_takeout(&rows.result_id, "h1", &decl("sex", "sex"), now);
    assert!(r.is_err() || r.unwrap().status == TakeoutStatus::Refused);
}

#[tokio::test]
async fn r5_end_of_use_deletes_data_scripts_results_and_takeouts() {
    let e = env();
    let r = e.a.query("h1", "SELECT sex, count(*) AS n FROM claims GROUP BY sex", Limits::default()).await.unwrap();
    e.a.save_script("s1", "SELECT 1").unwrap();
    e.a.request_takeout(&r.result_id, "h1", &decl("sex", "sex"), chrono::Utc::now()).unwrap();
    let root = e.base.join(e.a.id());
    assert!(root.is_dir());
    let s = e.a.clone().destroy().unwrap();
    assert_eq!((s.datasets, s.results, s.scripts, s.takeouts), (1, 1, 1, 1));
    assert!(s.files >= 5 && s.bytes > 0, "{s:?}");
    assert!(!root.exists());
    assert!(e.b.query("h2", "SELECT count(*) FROM secret_b", Limits::default()).await.is_ok(), "others untouched");
}

#[tokio::test]
async fn r7_own_data_is_queryable_once_brought_in() {
    let e = env();
    let dir = tempfile::tempdir().unwrap();
    let own = released(dir.path(), Arc::new(TestSealer([7; 32])), "own_release");
    assert!(refused(e.a.query("h1", "SELECT count(*) FROM own_cohort", Limits::default()).await).is_outside_reach());
    assert!(e.a.add_own_data("../own", &own).is_err(), "names are identifiers, never paths");
    assert_eq!(e.a.add_own_data("own_cohort", &own).unwrap(), 200);
    let r =
        e.a.query("h1", "SELECT count(*) FROM claims c JOIN own_cohort o ON c.patient = o.patient", Limits::default())
            .await
            .unwrap();
    assert_eq!(e.a.page(&r.result_id, 0, 10).unwrap().rows[0][0], "200");
    assert_eq!(e.a.tables().unwrap(), ["claims", "own_cohort"]);
}

/// A hospital's own code list as CSV.
const OWN_CSV: &str = "code,group_name,weight\nE11,糖尿病,1.5\nI10,高血圧,1\nQ87.1,希少疾患,2\n";

fn scan_for(root: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        for entry in std::fs::read_dir(&p).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path).unwrap().windows(needle.len()).any(|w| w == needle) {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

#[tokio::test]
async fn r7_own_data_upload_is_quarantined_sealed_and_queryable_only_after_approval_in_its_own_workspace() {
    let e = env();
    let lim = Limits::default();
    // Checked at upload: names, size, format, schema.
    let bad = |r: Result<kiban_workspace::Staged, WorkspaceError>| match r {
        Err(WorkspaceError::Refused { rule: "R7" | "R13", reason }) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert!(bad(e.a.stage_own_data("../x", "x.csv", OWN_CSV.as_bytes())).contains("not a table name"));
    assert!(bad(e.a.stage_own_data("claims", "x.csv", OWN_CSV.as_bytes())).contains("exists"));
    assert!(bad(e.a.stage_own_data("own", "x.csv", b"")).contains("empty"));
    let big = vec![b'a'; kiban_workspace::own::MAX_UPLOAD_BYTES + 1];
    assert!(bad(e.a.stage_own_data("own", "big.csv", &big)).contains("over the limit"));
    assert!(bad(e.a.stage_own_data("own", "x.csv", "Code,名前\nE11,a\n".as_bytes())).contains("column \"Code\""));
    assert!(bad(e.a.stage_own_data("own", "x.csv", b"a,a\n1,2\n")).contains("twice"));
    let ragged = bad(e.a.stage_own_data("own", "ragged.csv", b"a,b\n1,2\n3\n4,5\n"));
    assert!(ragged.contains("ragged.csv"), "names the file: {ragged}");
    assert!(bad(e.a.stage_own_data("own", "x.csv", b"a,b\n")).contains("no rows"));
    assert!(bad(e.a.stage_own_data("own", "x.csv", &[0xff, 0xfe, b',', b'\n'])).contains("UTF-8"));
    // Held in quarantine: sealed, not a table, not queryable, not visible to the other workspace.
    let staged = e.a.stage_own_data("own_groups", "own_groups.csv", OWN_CSV.as_bytes()).unwrap();
    assert_eq!((staged.kind, staged.rows, staged.format.as_str()), (StagedKind::Data, 3, "csv"));
    assert_eq!(staged.columns[2], ("weight".to_owned(), "Float64".to_owned()));
    assert_eq!(staged.sha256, hex::encode(Sha256::digest(OWN_CSV.as_bytes())));
    assert!(!e.a.tables().unwrap().contains(&"own_groups".to_owned()));
    assert!(
        refused(e.a.query("h1", "SELECT * FROM own_groups", lim).await).is_outside_reach(),
        "pending: not queryable"
    );
    assert!(scan_for(&e.base, "希少疾患".as_bytes()).is_empty(), "sealed in quarantine");
    // Approval is of the digest: another digest admits nothing.
    assert!(e.a.admit(&staged.staged_id, &"00".repeat(32)).is_err());
    assert!(e.a.tables().unwrap().iter().all(|t| t != "own_groups"));
    assert!(e.b.admit(&staged.staged_id, &staged.sha256).is_err(), "another workspace cannot admit it");
    e.a.admit(&staged.staged_id, &staged.sha256).unwrap();
    assert!(e.a.staged_all().unwrap().is_empty(), "quarantine emptied");
    let r = e.a
        .query("h1", "SELECT g.group_name, count(*) AS n FROM claims c JOIN own_groups g ON c.icd10 = g.code GROUP BY g.group_name ORDER BY n", lim)
        .await
        .unwrap();
    let rows = e.a.page(&r.result_id, 0, 10).unwrap().rows;
    assert_eq!(rows[0], ["希少疾患", "3"]);
    assert!(scan_for(&e.base, "希少疾患".as_bytes()).is_empty(), "sealed once admitted, and in results");
    // Never visible to another workspace.
    assert!(refused(e.b.query("h2", "SELECT * FROM own_groups", lim).await).is_outside_reach());
    assert!(!e.b.tables().unwrap().contains(&"own_groups".to_owned()));
    // A refused upload is deleted and never queryable.
    let other = e.a.stage_own_data("refused_one", "r.csv", OWN_CSV.as_bytes()).unwrap();
    e.a.discard(&other.staged_id).unwrap();
    assert!(e.a.staged(&other.staged_id).is_err());
    assert!(refused(e.a.query("h1", "SELECT * FROM refused_one", lim).await).is_outside_reach());
    // Parquet works too; end of use deletes own data and what waits in quarantine.
    let pq = {
        let schema = Arc::new(Schema::new(vec![
            Field::new("code", DataType::Utf8, false),
            Field::new("n", DataType::Int64, false),
        ]));
        let b = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(StringArray::from(vec!["E11", "I10"])) as ArrayRef, Arc::new(Int64Array::from(vec![1, 2]))],
        )
        .unwrap();
        let mut buf = Vec::new();
        let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, schema, None).unwrap();
        w.write(&b).unwrap();
        w.close().unwrap();
        buf
    };
    let p = e.a.stage_own_data("own_pq", "own.parquet", &pq).unwrap();
    assert_eq!((p.format.as_str(), p.rows), ("parquet", 2));
    let s = e.a.clone().destroy().unwrap();
    assert_eq!((s.imports, s.quarantined), (1, 1), "{s:?}");
}

#[tokio::test]
async fn r7_a_tool_is_a_named_view_approved_by_its_digest_and_a_changed_text_needs_a_new_approval() {
    let e = env();
    let lim = Limits::default();
    // Checked like a query: only this workspace's tables, one SELECT, no files.
    assert!(e.a.stage_tool("steal", "SELECT * FROM secret_b").unwrap_err().is_outside_reach());
    assert!(e.a.stage_tool("steal", "SELECT * FROM read_csv('/etc/passwd')").is_err());
    assert!(e.a.stage_tool("drop", "DROP TABLE claims").is_err());
    assert!(e.a.stage_tool("claims", "SELECT 1").is_err(), "no tool may shadow a table");
    let v1 = "SELECT icd10, count(*) AS n FROM claims GROUP BY icd10";
    let staged = e.a.stage_tool("by_icd", v1).unwrap();
    assert_eq!(staged.columns, [("claims".to_owned(), "table".to_owned())]);
    assert_eq!(e.a.staged_tool_text(&staged.staged_id).unwrap(), v1, "the creator reads what is approved");
    assert!(e.a.query("h1", "SELECT * FROM by_icd", lim).await.is_err(), "not before approval");
    assert!(e.a.run_tool("h1", "by_icd", lim).await.is_err());
    e.a.admit(&staged.staged_id, &staged.sha256).unwrap();
    let r = e.a.query("h1", "SELECT n FROM by_icd WHERE icd10 = 'Q87.1'", lim).await.unwrap();
    assert_eq!(e.a.page(&r.result_id, 0, 10).unwrap().rows[0][0], "3");
    let r = e.a.run_tool("h1", "by_icd", lim).await.unwrap();
    assert_eq!(r.rows, 3);
    // A changed text is a new request: the approved version stays in force until that is approved.
    let v2 = "SELECT icd10, count(*) AS n FROM claims WHERE sex = '男' GROUP BY icd10";
    let changed = e.a.stage_tool("by_icd", v2).unwrap();
    assert_ne!(changed.sha256, staged.sha256);
    assert_eq!(e.a.tool("by_icd").unwrap().1, v1);
    assert!(e.a.admit(&changed.staged_id, &staged.sha256).is_err(), "the old approval does not cover the new text");
    e.a.admit(&changed.staged_id, &changed.sha256).unwrap();
    assert_eq!(e.a.tool("by_icd").unwrap().1, v2);
    // Other workspaces know nothing of it; the text is sealed at rest.
    assert!(refused(e.b.query("h2", "SELECT * FROM by_icd", lim).await).is_outside_reach());
    assert!(scan_for(&e.base, b"WHERE sex").is_empty());
    // A tool cannot reach outside even if its stored text were swapped: the sealed text is bound to its digest.
    let tools = e.base.join(e.a.id()).join("tools");
    std::fs::write(tools.join("by_icd.sql.kbs"), TestSealer([7; 32]).seal(b"other", b"SELECT * FROM secret_b"))
        .unwrap();
    assert!(e.a.query("h1", "SELECT * FROM claims LIMIT 1", lim).await.is_err(), "a tampered tool stops every query");
    let s = e.a.clone().destroy().unwrap();
    assert_eq!(s.tools, 1);
}

#[tokio::test]
async fn d9_saved_scripts_run_and_aggregate_results_chart_as_svg_but_row_level_ones_do_not() {
    let e = env();
    let lim = Limits::default();
    e.a.save_script("by_sex", "SELECT sex, count(*) AS n FROM claims GROUP BY sex ORDER BY sex").unwrap();
    let r = e.a.run_script("h1", "by_sex", lim).await.unwrap();
    assert_eq!(e.a.page(&r.result_id, 0, 10).unwrap().rows, [["女", "100"], ["男", "100"]]);
    assert!(matches!(e.a.run_script("h1", "missing", lim).await, Err(WorkspaceError::NotFound { .. })));
    let spec = ChartSpec { kind: ChartKind::Bar, x: "sex".into(), y: "n".into() };
    let svg = e.a.add_chart(&r.result_id, &spec).unwrap();
    assert!(svg.starts_with("<svg") && svg.matches("<rect").count() == 2, "{svg}");
    assert!(svg.contains("男") && !svg.contains("<script"));
    assert_eq!(e.a.charts(&r.result_id).unwrap(), vec![spec.clone()], "kept with the result");
    let line = ChartSpec { kind: ChartKind::Line, ..spec.clone() };
    assert!(e.a.add_chart(&r.result_id, &line).unwrap().contains("<polyline"));
    assert!(e.a.add_chart(&r.result_id, &ChartSpec { y: "sex".into(), ..spec.clone() }).is_err(), "y is numeric");
    assert!(e.a.add_chart(&r.result_id, &ChartSpec { x: "nope".into(), ..spec.clone() }).is_err());
    let rows = e.a.query("h1", "SELECT patient, cost FROM claims", lim).await.unwrap();
    let err =
        e.a.add_chart(&rows.result_id, &ChartSpec { kind: ChartKind::Line, x: "patient".into(), y: "cost".into() });
    assert!(err.unwrap_err().to_string().contains("row-level"));
    // Labels are escaped: a value cannot inject markup.
    let svg = kiban_workspace::chart::svg(&spec, &[("<script>x</script>".into(), 1.0)]);
    assert!(!svg.contains("<script>") && svg.contains("&lt;script&gt;"));
}
