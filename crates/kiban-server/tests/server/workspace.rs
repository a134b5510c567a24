//! The Visiting environment over HTTP: the creator opens a workspace for an approved Type II
//! application; its handler (password + TOTP) queries through the pages, which carry the watermark and
//! no-store; tampering and file reads are refused, audited and alerted; a take-out passes the check and
//! a checker's approval before its output can be downloaded, a small cell stays inside; closing deletes
//! the workspace and writes the deletion record (R4–R7, R13, D9).

use std::sync::Arc;

use axum::http::StatusCode;
use chrono::{Duration, NaiveDate, Utc};
use kiban_registry::Registry;
use kiban_registry::accounts::AccountRole;
use kiban_registry::ledger::LedgerKind;
use kiban_registry::review::application::{ProvisionMethod, sample_application};
use kiban_registry::review::committee::sample_committee;
use kiban_registry::review::sample::{SampleApproval, approve_and_release};
use kiban_registry::review::workflow::ReleaseSpec;
use kiban_server::auth;
use kiban_server::workspace::{WithWorkspaces, WorkspaceEnv};

use crate::{AppState, FORM, PW, clear, cookie_of, fixture, form, http, login, now_unix, spawn};

/// A dataset sealer for tests (SHA-256 keystream and tag), so nothing reaches the disk in clear.
struct DataSealer;

impl DataSealer {
    fn pad(aad: &[u8], n: usize) -> Vec<u8> {
        use sha2::{Digest, Sha256};
        let mut v = Vec::new();
        let mut i = 0u64;
        while v.len() < n {
            v.extend_from_slice(
                &Sha256::new().chain_update(b"k").chain_update(aad).chain_update(i.to_le_bytes()).finalize(),
            );
            i += 1;
        }
        v.truncate(n);
        v
    }
}

impl kiban_formats::Sealer for DataSealer {
    fn seal(&self, aad: &[u8], plain: &[u8]) -> Vec<u8> {
        let mut v: Vec<u8> = plain.iter().zip(Self::pad(aad, plain.len())).map(|(a, b)| a ^ b).collect();
        v.extend_from_slice(b"KBT1");
        v
    }
    fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, String> {
        let body = sealed.strip_suffix(b"KBT1").ok_or("not sealed")?;
        Ok(body.iter().zip(Self::pad(aad, body.len())).map(|(a, b)| a ^ b).collect())
    }
}

const MARKER: &str = "トークンMQZ";

async fn account(st: &AppState, login_name: &str, display: &str, role: AccountRole) -> (String, Vec<u8>) {
    let now = Utc::now();
    let a = st.reg.create_account(login_name, display, role, "admin", now).await.unwrap();
    clear(st, &a.account_id).await;
    let token = auth::issue_setup(&st.reg, &a.account_id, false, "", "admin", now).await.unwrap();
    let r = auth::complete_setup(&st.reg, st.sealer.as_ref(), login_name, &token, PW, now).await.unwrap();
    (a.account_id, auth::from_base32(&r.totp_base32).unwrap())
}

/// An approved Type II application whose period covers today, released as `rel-ws`.
async fn approved_type2(reg: &Registry) -> String {
    let today = Utc::now().date_naive();
    let mut app = sample_application();
    app.provision_method = ProvisionMethod::Vdi;
    app.usage_from = today - Duration::days(30);
    app.usage_to = today + Duration::days(300);
    for p in &mut app.publications {
        p.planned_on = today + Duration::days(100);
    }
    let mut second = app.handlers[0].clone();
    second.name = "合成 次郎".into();
    app.handlers.push(second);
    for m in sample_committee(6) {
        reg.add_committee_member(&m).await.unwrap();
    }
    let mut s =
        SampleApproval::type2(today - Duration::days(60), today - Duration::days(50), today - Duration::days(40));
    s.release = Some(ReleaseSpec {
        release_id: "rel-ws".into(),
        on: today - Duration::days(29),
        manifest_sha256: "0f".repeat(32),
        items: vec!["age_group".into()],
        media: vec![],
        policy_sha256: None,
    });
    approve_and_release(reg, &app, &s, |_| {}).await.unwrap()
}

fn write_dataset(dir: &std::path::Path) {
    use arrow::array::{ArrayRef, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    let schema = Arc::new(Schema::new(vec![
        Field::new("patient", DataType::Utf8, false),
        Field::new("sex", DataType::Utf8, false),
        Field::new("icd10", DataType::Utf8, false),
    ]));
    let n = 120;
    let p: Vec<String> = (0..n).map(|i| format!("{MARKER}{i}")).collect();
    let s: Vec<&str> = (0..n).map(|i| if i % 2 == 0 { "男" } else { "女" }).collect();
    let c: Vec<&str> = (0..n).map(|i| if i < 2 { "Q87.1" } else { "E11" }).collect();
    let b = arrow::record_batch::RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(p)) as ArrayRef,
            Arc::new(StringArray::from(s)),
            Arc::new(StringArray::from(c)),
        ],
    )
    .unwrap();
    let w = kiban_formats::dataset::DatasetWriter::create(
        dir,
        "rel-ws-claims",
        schema,
        kiban_formats::dataset::FileFormat::Parquet,
    )
    .unwrap()
    .sealed(Arc::new(DataSealer));
    w.write_part("part-00000", &[b]).unwrap();
    w.commit(serde_json::json!({})).unwrap();
}

/// A multipart form body: (field, file name, value); returns the content type and the body.
fn multipart(fields: &[(&str, Option<&str>, &str)]) -> (String, String) {
    let b = "kibanBOUNDARY7MA4YWxk";
    let mut s = String::new();
    for (name, file, value) in fields {
        s.push_str(&format!("--{b}\r\nContent-Disposition: form-data; name=\"{name}\""));
        if let Some(f) = file {
            s.push_str(&format!("; filename=\"{f}\"\r\nContent-Type: application/octet-stream"));
        }
        s.push_str(&format!("\r\n\r\n{value}\r\n"));
    }
    s.push_str(&format!("--{b}--\r\n"));
    (format!("multipart/form-data; boundary={b}"), s)
}

async fn send_multipart(
    addr: std::net::SocketAddr,
    cookies: &[(String, String)],
    path: &str,
    fields: &[(&str, Option<&str>, &str)],
) -> crate::Resp {
    let (ct, body) = multipart(fields);
    let mut h = hdr(cookies);
    h.push(("content-type", &ct));
    http(addr, "POST", path, &h, &body).await
}

fn hdr(c: &[(String, String)]) -> Vec<(&str, &str)> {
    c.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn location(r: &crate::Resp) -> String {
    r.headers.get("location").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

#[tokio::test]
async fn r4_r13_d9_r5_handler_works_only_in_their_workspace_and_outputs_leave_only_approved() {
    let f = fixture().await;
    let st = f.st.clone();
    let app_id = approved_type2(&st.reg).await;
    let data = st.data_dir.clone();
    write_dataset(&data.join("datasets").join("rel-ws-claims"));
    let env = WorkspaceEnv {
        base: data.join("workspaces"),
        datasets: data.join("datasets"),
        sealer: Arc::new(DataSealer),
        limits: kiban_workspace::Limits::default(),
    };
    let addr = spawn(kiban_server::router(st.clone()).with_workspaces(env)).await;
    let (hid, hsecret) = account(&st, "h.hanako", "合成 花子", AccountRole::Handler).await;
    let (_, osecret) = account(&st, "h.other", "合成 花子", AccountRole::Handler).await;
    let (_, ssecret) = account(&st, "sec.s", "事務局", AccountRole::Secretariat).await;
    let (_, csecret) = account(&st, "chk.c", "確認者", AccountRole::ProcessingEngineer).await;
    let cookie = |r: &crate::Resp| vec![("cookie".to_owned(), cookie_of(r))];
    let sec = cookie(&login(addr, "sec.s", PW, &auth::totp_code(&ssecret, now_unix())).await);
    let json = ("content-type", "application/json");

    // The creator opens the workspace; a dataset given as a path is refused.
    let mut h = hdr(&sec);
    h.push(json);
    let bad = format!(
        r#"{{"application_id":"{app_id}","handlers":["{hid}"],"release_id":"rel-ws","datasets":{{"claims":"../../etc"}}}}"#
    );
    assert_eq!(http(addr, "POST", "/api/workspaces", &h, &bad).await.status, StatusCode::UNPROCESSABLE_ENTITY);
    let body = format!(
        r#"{{"application_id":"{app_id}","handlers":["{hid}"],"release_id":"rel-ws","datasets":{{"claims":"rel-ws-claims"}}}}"#
    );
    let r = http(addr, "POST", "/api/workspaces", &h, &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let ws: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let wid = ws["workspace_id"].as_str().unwrap().to_owned();

    // The handler logs in with password and TOTP and sees the workspace, watermarked, not cached.
    let hc = cookie(&login(addr, "h.hanako", PW, &auth::totp_code(&hsecret, now_unix())).await);
    let r = http(addr, "GET", "/workspace", &hdr(&hc), "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains(&wid));
    let r = http(addr, "GET", &format!("/workspace/{wid}"), &hdr(&hc), "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("合成 花子") && r.body.contains("JST") && r.body.contains("class=\"watermark\""));
    assert!(r.headers["cache-control"].to_str().unwrap().contains("no-store"));
    assert!(!r.body.contains("<script"));
    let en = http(addr, "GET", &format!("/workspace/{wid}?lang=en"), &hdr(&hc), "").await;
    assert!(en.body.contains("SQL editor"));

    // A query, shown paged; never a file.
    let mut fh = hdr(&hc);
    fh.push(FORM);
    let q = |sql: &str| form(&[("sql", sql), ("save_as", "")]);
    let r = http(
        addr,
        "POST",
        &format!("/workspace/{wid}/query"),
        &fh,
        &q("SELECT sex, count(*) AS n FROM claims GROUP BY sex"),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let result_page = location(&r);
    let r = http(addr, "GET", &result_page, &hdr(&hc), "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("<td>60</td>"), "{}", r.body);
    assert!(r.headers.get("content-disposition").is_none());
    let rid = result_page.rsplit('/').next().unwrap().to_owned();
    // Row-level results page at most 20 rows.
    let r = http(addr, "POST", &format!("/workspace/{wid}/query"), &fh, &q("SELECT patient FROM claims")).await;
    let rows = http(addr, "GET", &location(&r), &hdr(&hc), "").await;
    assert_eq!(rows.body.matches(MARKER).count(), 20, "row-level views are capped");

    // Reaching outside: files, other names — refused, audited as denied, alerted.
    for sql in
        ["SELECT * FROM read_parquet('/etc/passwd')", "SELECT * FROM other_ws_table", "COPY claims TO '/tmp/x.csv'"]
    {
        let r = http(addr, "POST", &format!("/workspace/{wid}/query"), &fh, &q(sql)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{sql}: {}", r.body);
    }
    // URL tampering: another handler account, or ids that walk paths.
    let oc = cookie(&login(addr, "h.other", PW, &auth::totp_code(&osecret, now_unix())).await);
    assert_eq!(http(addr, "GET", &format!("/workspace/{wid}"), &hdr(&oc), "").await.status, StatusCode::FORBIDDEN);
    assert_eq!(http(addr, "GET", &result_page, &hdr(&oc), "").await.status, StatusCode::FORBIDDEN);
    let mut ofh = hdr(&oc);
    ofh.push(FORM);
    assert_eq!(
        http(addr, "POST", &format!("/workspace/{wid}/query"), &ofh, &q("SELECT * FROM claims")).await.status,
        StatusCode::FORBIDDEN
    );
    let walk = http(addr, "GET", &format!("/workspace/{wid}/results/res-..%2F..%2Fdatasets"), &hdr(&hc), "").await;
    assert_eq!(walk.status, StatusCode::NOT_FOUND);
    let alerts = st.audit.alerts();
    assert!(alerts.iter().any(|a| a.rule == "workspace-outside-reach"), "{alerts:#?}");

    // Take-out by sex: passes, waits for a checker, then only the approved version downloads.
    let takeout = |rid: &str, dims: &str| {
        form(&[("result_id", rid), ("count_column", "n"), ("dimensions", dims), ("title", "t")])
    };
    let r = http(addr, "POST", &format!("/workspace/{wid}/takeouts"), &fh, &takeout(&rid, "sex:sex")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let tko_page = location(&r);
    let tko = tko_page.rsplit('/').next().unwrap().to_owned();
    let r = http(addr, "GET", &tko_page, &hdr(&hc), "").await;
    assert!(r.body.contains("承認待ち"), "{}", r.body);
    let out = format!("/workspace/{wid}/takeouts/{tko}/output");
    assert_eq!(http(addr, "GET", &out, &hdr(&hc), "").await.status, StatusCode::FORBIDDEN);
    let chk = cookie(&login(addr, "chk.c", PW, &auth::totp_code(&csecret, now_unix())).await);
    let mut ch = hdr(&chk);
    ch.push(json);
    let r =
        http(addr, "POST", &format!("/api/workspaces/{wid}/takeouts/{tko}"), &ch, r#"{"granted":true,"reason":""}"#)
            .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = http(addr, "GET", &out, &hdr(&hc), "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers["content-type"].to_str().unwrap().starts_with("text/csv"));
    use sha2::{Digest, Sha256};
    assert_eq!(hex::encode(Sha256::digest(r.body.as_bytes())), r.headers["x-kiban-approved-sha256"].to_str().unwrap());
    // A small cell (2 patients) is refused and never downloadable.
    let r = http(
        addr,
        "POST",
        &format!("/workspace/{wid}/query"),
        &fh,
        &q("SELECT icd10, count(*) AS n FROM claims GROUP BY icd10"),
    )
    .await;
    let small_rid = location(&r).rsplit('/').next().unwrap().to_owned();
    let r = http(addr, "POST", &format!("/workspace/{wid}/takeouts"), &fh, &takeout(&small_rid, "icd10:other")).await;
    let small_page = location(&r);
    let r = http(addr, "GET", &small_page, &hdr(&hc), "").await;
    assert!(r.body.contains("O1") && r.body.contains("不可"), "{}", r.body);
    assert_eq!(http(addr, "GET", &format!("{small_page}/output"), &hdr(&hc), "").await.status, StatusCode::FORBIDDEN);

    // R7: a request waits for the creator.
    let fields = [("kind", None, "own_tools"), ("detail", None, "R 4.4")];
    let r = send_multipart(addr, &hc, &format!("/workspace/{wid}/requests"), &fields).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let r = http(
        addr,
        "POST",
        &format!("/api/workspaces/{wid}/requests/0"),
        &h,
        r#"{"granted":true,"reason":"契約の範囲内"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    // Audit: every query and view is there as a Type II user's operation, with no medical value.
    st.audit.flush().unwrap();
    let mut n_queries = 0;
    kiban_audit::log::for_each_entry(&data.join("audit"), |e| {
        if e.event.object.id.starts_with("ws-query/") {
            assert_eq!(e.event.actor.role, kiban_audit::Role::UserType2);
            n_queries += 1;
        }
        std::ops::ControlFlow::Continue(())
    })
    .unwrap();
    assert!(n_queries >= 6, "{n_queries}");
    for e in std::fs::read_dir(data.join("audit")).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            assert!(!String::from_utf8_lossy(&std::fs::read(&p).unwrap()).contains(MARKER), "{}", p.display());
        }
    }

    // End of use: close deletes everything and writes the deletion record.
    let r = http(addr, "POST", &format!("/api/workspaces/{wid}/close"), &h, r#"{"reason":"利用終了"}"#).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(!data.join("workspaces").join(&wid).exists());
    assert_eq!(http(addr, "GET", &format!("/workspace/{wid}"), &hdr(&hc), "").await.status, StatusCode::FORBIDDEN);
    let ledger = st.reg.ledger().await.unwrap();
    assert!(
        ledger
            .iter()
            .any(|e| e.input.kind == LedgerKind::Deletion && e.input.application_id.as_deref() == Some(&app_id))
    );
    let list = http(addr, "GET", "/api/workspaces", &hdr(&sec), "").await;
    assert!(list.body.contains("deleted") && list.body.contains("合成 花子"), "{}", list.body);
    let _ = NaiveDate::MIN;
}

/// One workspace opened over HTTP with a handler logged in: (fixture, address, workspace id, handler's
/// cookie headers, secretariat's cookie headers, the handler's account id).
async fn opened() -> (crate::Fixture, std::net::SocketAddr, String, Vec<(String, String)>, Vec<(String, String)>, String)
{
    let f = fixture().await;
    let st = f.st.clone();
    let app_id = approved_type2(&st.reg).await;
    let data = st.data_dir.clone();
    write_dataset(&data.join("datasets").join("rel-ws-claims"));
    let env = WorkspaceEnv {
        base: data.join("workspaces"),
        datasets: data.join("datasets"),
        sealer: Arc::new(DataSealer),
        limits: kiban_workspace::Limits::default(),
    };
    let addr = spawn(kiban_server::router(st.clone()).with_workspaces(env)).await;
    let (hid, hsecret) = account(&st, "h.hanako", "合成 花子", AccountRole::Handler).await;
    let (_, ssecret) = account(&st, "sec.s", "事務局", AccountRole::Secretariat).await;
    let cookie = |r: &crate::Resp| vec![("cookie".to_owned(), cookie_of(r))];
    let sec = cookie(&login(addr, "sec.s", PW, &auth::totp_code(&ssecret, now_unix())).await);
    let mut h = hdr(&sec);
    h.push(("content-type", "application/json"));
    let body = format!(
        r#"{{"application_id":"{app_id}","handlers":["{hid}"],"release_id":"rel-ws","datasets":{{"claims":"rel-ws-claims"}}}}"#
    );
    let r = http(addr, "POST", "/api/workspaces", &h, &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let wid = serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["workspace_id"].as_str().unwrap().to_owned();
    let hc = cookie(&login(addr, "h.hanako", PW, &auth::totp_code(&hsecret, now_unix())).await);
    (f, addr, wid, hc, sec, hid)
}

#[tokio::test]
async fn r7_own_data_and_tools_come_in_over_http_only_after_the_creator_approves_their_digest() {
    let (f, addr, wid, hc, sec, _) = opened().await;
    let mut json_h = hdr(&sec);
    json_h.push(("content-type", "application/json"));
    let csv = "code,group_name\nE11,糖尿病\nQ87.1,希少疾患\n";
    // A file with a bad schema is refused at once, naming the column.
    let req_path = format!("/workspace/{wid}/requests");
    let fields = [
        ("kind", None, "own_data"),
        ("detail", None, "x"),
        ("name", None, "own"),
        ("file", Some("x.csv"), "Code\n1\n"),
    ];
    let r = send_multipart(addr, &hc, &req_path, &fields).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("Code"), "{}", r.body);
    // Own data: held in quarantine, not queryable while pending.
    let fields = [
        ("kind", None, "own_data"),
        ("detail", None, "自施設の疾患群対応表"),
        ("name", None, "own_groups"),
        ("file", Some("own_groups.csv"), csv),
    ];
    let r = send_multipart(addr, &hc, &req_path, &fields).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let mut fh = hdr(&hc);
    fh.push(FORM);
    let q = |sql: &str| form(&[("sql", sql), ("save_as", "")]);
    let r = http(addr, "POST", &format!("/workspace/{wid}/query"), &fh, &q("SELECT * FROM own_groups")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "pending uploads are never queryable");
    let home = http(addr, "GET", &format!("/workspace/{wid}"), &hdr(&hc), "").await;
    assert!(home.body.contains("審査中") && home.body.contains("own_groups (csv"), "{}", home.body);
    // A tool: a named view.
    let tool = [
        ("kind", None, "own_tools"),
        ("detail", None, "性別集計ビュー"),
        ("name", None, "by_sex"),
        ("sql", None, "SELECT sex, count(*) AS n FROM claims GROUP BY sex"),
    ];
    let r = send_multipart(addr, &hc, &req_path, &tool).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    // The creator reviews: the schema of the data, the whole text of the tool.
    let r = http(addr, "GET", &format!("/api/workspaces/{wid}/requests/0"), &hdr(&sec), "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["staged"]["rows"], 2);
    let r = http(addr, "GET", &format!("/api/workspaces/{wid}/requests/1"), &hdr(&sec), "").await;
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert!(v["tool_sql"].as_str().unwrap().contains("GROUP BY sex"), "{v}");
    // A handler cannot decide; the creator grants the data and refuses the tool.
    let mut hj = hdr(&hc);
    hj.push(("content-type", "application/json"));
    let grant = r#"{"granted":true,"reason":"個人情報を含まない対応表"}"#;
    assert_eq!(
        http(addr, "POST", &format!("/api/workspaces/{wid}/requests/0"), &hj, grant).await.status,
        StatusCode::FORBIDDEN
    );
    let r = http(addr, "POST", &format!("/api/workspaces/{wid}/requests/0"), &json_h, grant).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("own_groups"), "{}", r.body);
    let r = http(
        addr,
        "POST",
        &format!("/api/workspaces/{wid}/requests/1"),
        &json_h,
        r#"{"granted":false,"reason":"既存機能で足りる"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = http(
        addr,
        "POST",
        &format!("/workspace/{wid}/query"),
        &fh,
        &q("SELECT g.group_name, count(*) AS n FROM claims c JOIN own_groups g ON c.icd10 = g.code GROUP BY g.group_name"),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "approved data is a table now: {}", r.body);
    let page = http(addr, "GET", &location(&r), &hdr(&hc), "").await;
    assert!(page.body.contains("希少疾患") && page.body.contains("<td>2</td>"), "{}", page.body);
    let r = http(addr, "POST", &format!("/workspace/{wid}/tools/by_sex/run"), &fh, "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "a refused tool does not exist");
    let r = http(addr, "POST", &format!("/workspace/{wid}/query"), &fh, &q("SELECT * FROM by_sex")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // The tool asked again, granted this time, runs from the console.
    let r = send_multipart(addr, &hc, &req_path, &tool).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let r = http(addr, "POST", &format!("/api/workspaces/{wid}/requests/2"), &json_h, grant).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = http(addr, "POST", &format!("/workspace/{wid}/tools/by_sex/run"), &fh, "").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(http(addr, "GET", &location(&r), &hdr(&hc), "").await.body.contains("<td>60</td>"));
    // Audited: the upload and the admission.
    f.st.audit.flush().unwrap();
    let mut admitted = 0;
    kiban_audit::log::for_each_entry(&f.st.data_dir.join("audit"), |e| {
        if e.event.object.id.ends_with("/own_groups") && e.event.note.as_deref().is_some_and(|n| n.contains("admitted"))
        {
            admitted += 1;
        }
        std::ops::ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(admitted, 1);
    // Closing deletes own data and tools with the rest.
    let r = http(addr, "POST", &format!("/api/workspaces/{wid}/close"), &json_h, r#"{"reason":"利用終了"}"#).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!((v["deleted"]["imports"].as_u64(), v["deleted"]["tools"].as_u64()), (Some(1), Some(1)), "{v}");
}

#[tokio::test]
async fn d9_r6_r5_scripts_run_charts_draw_use_stops_and_the_roster_changes_over_http() {
    let (f, addr, wid, hc, sec, hid) = opened().await;
    let mut fh = hdr(&hc);
    fh.push(FORM);
    // A saved script runs from the console; its result is paged and charted as inline SVG.
    let r = http(
        addr,
        "POST",
        &format!("/workspace/{wid}/query"),
        &fh,
        &form(&[("sql", "SELECT sex, count(*) AS n FROM claims GROUP BY sex ORDER BY sex"), ("save_as", "by_sex")]),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = http(addr, "POST", &format!("/workspace/{wid}/scripts/by_sex/run"), &fh, "").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let result = location(&r);
    let r =
        http(addr, "POST", &format!("{result}/charts"), &fh, &form(&[("kind", "bar"), ("x", "sex"), ("y", "n")])).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let p = http(addr, "GET", &result, &hdr(&hc), "").await;
    assert!(p.body.contains("<svg") && p.body.matches("<rect").count() == 2, "{}", p.body);
    assert!(p.headers.get("content-disposition").is_none() && !p.body.contains("<script"));
    let r =
        http(addr, "POST", &format!("{result}/charts"), &fh, &form(&[("kind", "bar"), ("x", "n"), ("y", "sex")])).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "y must be numeric");
    let r = http(addr, "POST", &format!("/workspace/{wid}/scripts/..%2Fx/run"), &fh, "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // R6: the creator stops use; the handler is out until it resumes.
    let mut json_h = hdr(&sec);
    json_h.push(("content-type", "application/json"));
    let r =
        http(addr, "POST", &format!("/api/workspaces/{wid}/suspend"), &json_h, r#"{"reason":"大量閲覧の調査"}"#).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = http(addr, "GET", &format!("/workspace/{wid}"), &hdr(&hc), "").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("R6"), "{}", r.body);
    let r = http(addr, "POST", &format!("/api/workspaces/{wid}/resume"), &json_h, "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(http(addr, "GET", &format!("/workspace/{wid}"), &hdr(&hc), "").await.status, StatusCode::OK);
    // R5: the roster: an account not named on the application is refused; a named one joins; removal
    // takes effect at once.
    let (stranger, _) = account(&f.st, "h.stranger", "部外者", AccountRole::Handler).await;
    let (jiro, _) = account(&f.st, "h.jiro", "合成 次郎", AccountRole::Handler).await;
    let body = |a: &str| format!(r#"{{"account_id":"{a}","reason":"異動"}}"#);
    let r = http(addr, "POST", &format!("/api/workspaces/{wid}/handlers"), &json_h, &body(&stranger)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let r = http(addr, "POST", &format!("/api/workspaces/{wid}/handlers"), &json_h, &body(&jiro)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("合成 次郎"));
    let r = http(addr, "POST", &format!("/api/workspaces/{wid}/handlers/remove"), &json_h, &body(&hid)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(http(addr, "GET", &format!("/workspace/{wid}"), &hdr(&hc), "").await.status, StatusCode::FORBIDDEN);
    let r = http(addr, "GET", &format!("/api/workspaces/{wid}"), &hdr(&sec), "").await;
    assert!(r.body.contains("removed: 異動") && r.body.contains("合成 次郎"), "{}", r.body);
}
