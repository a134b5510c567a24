//! The publication checker over HTTP (O1–O9, D9): a table and its declaration in, the report and
//! the protected table out (JSON, or the Japanese HTML report with `?format=html`). Nothing is
//! stored; the audit records the table's digest and the verdict, never its cells.

// Handlers return `Result<Response, Response>`, axum's usual shape; both sides are responses.
#![allow(clippy::result_large_err)]

use askama::Template;
use axum::Json;
use axum::extract::{Extension, Form, Multipart, Query, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use kiban_audit::{Action, AuditSink, Event, Object, ObjectKind};
use kiban_disclosure::areas::AreaTable;
use kiban_disclosure::decl::Declaration;
use kiban_disclosure::report::{Mode, Report, html};
use kiban_disclosure::table::RawTable;
use kiban_disclosure::workflow::approve;
use kiban_registry::accounts::AccountRole;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::{AppState, Caller, RouteDesc, error};

/// The checker's route.
pub fn descriptors() -> Vec<RouteDesc> {
    let mut v = vec![RouteDesc { method: Method::POST, path: "/api/check-output", handler: post(check) }];
    v.extend(page_descriptors());
    v
}

/// A table to check.
#[derive(Debug, Deserialize)]
pub struct CheckBody {
    /// The aggregate table as CSV text (long or wide, with or without margins).
    table_csv: String,
    /// The declaration (TOML) of its dimensions.
    declaration: String,
    /// The operator's 二次医療圏 population table (CSV), when the table has that dimension.
    areas_csv: Option<String>,
    /// check, suppress or round.
    #[serde(default = "default_mode")]
    mode: String,
}

fn default_mode() -> String {
    "check".into()
}

/// `?format=html` for the Japanese report page.
#[derive(Debug, Deserialize)]
pub struct Format {
    format: Option<String>,
}

async fn check(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Query(f): Query<Format>,
    Json(b): Json<CheckBody>,
) -> Result<Response, Response> {
    let bad = |e: &dyn std::fmt::Display| error(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string());
    let mode: Mode = b.mode.parse().map_err(|e: String| bad(&e))?;
    let decl = Declaration::from_toml(&b.declaration).map_err(|e| bad(&e))?;
    let raw = RawTable::from_csv_str("table.csv", &b.table_csv).map_err(|e| bad(&e))?;
    let areas =
        b.areas_csv.as_deref().map(|t| AreaTable::from_csv_str("areas.csv", t)).transpose().map_err(|e| bad(&e))?;
    let input_sha = hex::encode(Sha256::digest(b.table_csv.as_bytes()));
    let checked = tokio::task::spawn_blocking(move || {
        kiban_disclosure::api::check_table(&raw, &input_sha, &decl, areas.as_ref(), mode, &[])
    })
    .await
    .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))?
    .map_err(|e| bad(&e))?;
    let verdict = if checked.report.passed { "passed" } else { "failed" };
    let ev = Event::new(
        c.actor(),
        &c.source,
        Action::Verify,
        Object::new(ObjectKind::Clinical, format!("output-check/{}/{verdict}", checked.report.table_sha256)),
    );
    st.audit.record(ev).map_err(|_| error(StatusCode::SERVICE_UNAVAILABLE, "the audit log is unavailable"))?;
    if f.format.as_deref() == Some("html") {
        let page = html(&checked.report, &checked.cube, &checked.status);
        return Ok(([(header::CACHE_CONTROL, "no-store")], Html(page)).into_response());
    }
    let report: serde_json::Value = serde_json::from_str(&checked.report.to_json()).expect("report is JSON");
    let protected = (mode != Mode::Check).then_some(checked.csv);
    Ok(Json(serde_json::json!({"report": report, "protected_csv": protected})).into_response())
}

// ---------------------------------------------------------------------------------------------
// The console page: upload a table and its declaration, read the Japanese report with the
// suppressed cells marked, and record the checker's D9 approval of a passing table.

/// The page's routes.
pub fn page_descriptors() -> Vec<RouteDesc> {
    vec![
        route!(get, "/checker", page_form),
        route!(post, "/checker", page_check),
        route!(post, "/checker/approve", page_approve),
    ]
}

/// Roles that may approve (the checker, not the researcher who made the table).
const APPROVERS: [AccountRole; 2] = [AccountRole::ProcessingEngineer, AccountRole::Secretariat];

/// A check's outcome as the page shows it.
struct PageResult {
    passed: bool,
    summary: String,
    table_sha256: String,
    report_html: String,
}

#[derive(Template)]
#[template(path = "checker/page.html")]
struct CheckerPage {
    /// The console's frame (the shared layout, with the caller's menu).
    p: crate::console::Page,
    en: bool,
    declaration: String,
    message: Option<String>,
    error: Option<String>,
    result: Option<PageResult>,
    can_approve: bool,
}

const EXAMPLE_DECL: &str = "title = \"年齢階級×性別\"\ncount_column = \"patients\"\n\n[[dimension]]\ncolumn = \"age_band\"\nkind = \"age_band\"\n\n[[dimension]]\ncolumn = \"sex\"\nkind = \"sex\"\n";

fn render(p: &CheckerPage) -> Response {
    crate::console::render(&p.p, p)
}

fn blank(page: crate::console::Page) -> CheckerPage {
    CheckerPage {
        en: page.lang == crate::console::i18n::Lang::En,
        can_approve: APPROVERS.contains(&page.caller.role),
        p: page,
        declaration: EXAMPLE_DECL.into(),
        message: None,
        error: None,
        result: None,
    }
}

async fn page_form(page: crate::console::Page) -> Response {
    render(&blank(page))
}

fn checks_dir(st: &AppState) -> std::path::PathBuf {
    st.data_dir.join("outputs").join("checks")
}

async fn page_check(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    page: crate::console::Page,
    mut mp: Multipart,
) -> Response {
    let mut p = blank(page);
    let mut table: Option<(String, Vec<u8>)> = None;
    let mut areas: Option<Vec<u8>> = None;
    let mut mode = "suppress".to_owned();
    loop {
        match mp.next_field().await {
            Ok(Some(f)) => {
                let name = f.name().unwrap_or("").to_owned();
                let file = f.file_name().unwrap_or("table.csv").to_owned();
                let Ok(bytes) = f.bytes().await else {
                    p.error = Some("アップロードを読めませんでした / the upload could not be read".into());
                    return render(&p);
                };
                match name.as_str() {
                    "table" if !bytes.is_empty() => table = Some((file, bytes.to_vec())),
                    "declaration" => p.declaration = String::from_utf8_lossy(&bytes).into_owned(),
                    "areas" if !bytes.is_empty() => areas = Some(bytes.to_vec()),
                    "mode" => mode = String::from_utf8_lossy(&bytes).into_owned(),
                    _ => {}
                }
            }
            Ok(None) => break,
            Err(e) => {
                p.error = Some(format!("アップロードを読めませんでした / the upload could not be read: {e}"));
                return render(&p);
            }
        }
    }
    let Some((file, bytes)) = table else {
        p.error = Some("集計表のファイルを選んでください / choose the table file".into());
        return render(&p);
    };
    let outcome = run_page_check(&st, &file, &bytes, &p.declaration, areas.as_deref(), &mode).await;
    match outcome {
        Ok((checked, report_html)) => {
            let verdict = if checked.report.passed { "passed" } else { "failed" };
            let ev = Event::new(
                c.actor(),
                &c.source,
                Action::Verify,
                Object::new(ObjectKind::Clinical, format!("output-check/{}/{verdict}", checked.report.table_sha256)),
            );
            if st.audit.record(ev).is_err() {
                return error(StatusCode::SERVICE_UNAVAILABLE, "the audit log is unavailable");
            }
            // Keep the report (not the table) so an approval rests on exactly what was checked.
            let dir = checks_dir(&st);
            let path = dir.join(format!("{}.json", checked.report.table_sha256));
            if std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, checked.report.to_json())).is_err() {
                return error(StatusCode::SERVICE_UNAVAILABLE, "the data directory is not writable");
            }
            p.result = Some(PageResult {
                passed: checked.report.passed,
                summary: checked.report.summary(),
                table_sha256: checked.report.table_sha256.clone(),
                report_html,
            });
        }
        Err(e) => p.error = Some(e),
    }
    render(&p)
}

async fn run_page_check(
    st: &AppState,
    file: &str,
    bytes: &[u8],
    decl: &str,
    areas: Option<&[u8]>,
    mode: &str,
) -> Result<(kiban_disclosure::api::Checked, String), String> {
    let mode: Mode = mode.parse()?;
    let decl = Declaration::from_toml(decl).map_err(|e| format!("宣言 declaration: {e}"))?;
    let raw = if file.to_ascii_lowercase().ends_with(".xlsx") {
        // calamine reads from a path: a staging file that is removed at once.
        let dir = st.data_dir.join("staging");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let tmp = dir.join(format!("checker-{}.xlsx", hex::encode(rand::random::<[u8; 8]>())));
        std::fs::write(&tmp, bytes).map_err(|e| e.to_string())?;
        let r = RawTable::read_xlsx(&tmp, decl.sheet.as_deref());
        let _ = std::fs::remove_file(&tmp);
        r.map_err(|e| e.to_string())?
    } else {
        let text = std::str::from_utf8(bytes).map_err(|_| format!("{file}: the CSV is not UTF-8"))?;
        RawTable::from_csv_str(file, text).map_err(|e| e.to_string())?
    };
    let areas = match areas {
        Some(a) => Some(
            AreaTable::from_csv_str(
                "areas.csv",
                std::str::from_utf8(a).map_err(|_| "areas.csv is not UTF-8".to_owned())?,
            )
            .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    let sha = hex::encode(Sha256::digest(bytes));
    tokio::task::spawn_blocking(move || {
        let c = kiban_disclosure::api::check_table(&raw, &sha, &decl, areas.as_ref(), mode, &[])
            .map_err(|e| e.to_string())?;
        let h = html(&c.report, &c.cube, &c.status);
        Ok((c, h))
    })
    .await
    .map_err(|e| e.to_string())?
}

#[derive(Debug, Deserialize)]
struct ApproveForm {
    table_sha256: String,
    #[serde(default)]
    comment: String,
}

async fn page_approve(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    page: crate::console::Page,
    Form(f): Form<ApproveForm>,
) -> Response {
    let mut p = blank(page);
    if !APPROVERS.contains(&c.role) {
        p.error = Some("承認は確認者（加工担当者・事務局）が行います / only a checker approves".into());
        return (StatusCode::FORBIDDEN, render(&p)).into_response();
    }
    if f.table_sha256.len() != 64 || !f.table_sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        p.error = Some("表の版（SHA-256）が不正です / bad table version".into());
        return (StatusCode::UNPROCESSABLE_ENTITY, render(&p)).into_response();
    }
    let path = checks_dir(&st).join(format!("{}.json", f.table_sha256));
    let report: Option<Report> = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let Some(report) = report else {
        p.error = Some("この版の確認結果がありません。先に確認してください / check this table first".into());
        return (StatusCode::NOT_FOUND, render(&p)).into_response();
    };
    let rec = match approve(&report, &c.account_id, crate::now()) {
        Ok(r) => r,
        Err(e) => {
            p.error = Some(format!("承認できません（中間生成物です） / not approvable: {e}"));
            return (StatusCode::UNPROCESSABLE_ENTITY, render(&p)).into_response();
        }
    };
    let ev = Event::new(
        c.actor(),
        &c.source,
        Action::Write,
        Object::new(ObjectKind::Ledger, format!("output-approval/{}", rec.table_sha256)),
    )
    .note(format!("D9 approval; comment {} chars", f.comment.chars().count()));
    if st.audit.record(ev).is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the audit log is unavailable");
    }
    // The approval is a row of the registry's append-only output_approvals table, bound to the
    // table version (SHA-256) and the report it rests on.
    let row = kiban_registry::outputs::NewOutputApproval {
        table_sha256: rec.table_sha256.clone(),
        report_sha256: rec.report_sha256.clone(),
        checker: rec.checker.clone(),
        comment: f.comment.clone(),
        kiban_version: rec.kiban_version.clone(),
    };
    if st.reg.record_output_approval(&row, rec.approved_at).await.is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the approval could not be recorded");
    }
    p.message = Some(format!(
        "承認を記録しました（成果物） / approval recorded: table {} by {} at {}",
        rec.table_sha256, rec.checker, rec.approved_at
    ));
    render(&p)
}
