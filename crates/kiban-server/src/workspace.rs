//! The Visiting environment over HTTP (R4–R7, R13, D9): JSON routes for the creator's side (list,
//! open, close, the expiry sweep, R7 decisions, checkers' take-out decisions) and server-rendered pages
//! for the handler's side (workspace home with the SQL editor, paged results, take-out requests and
//! status). Every page carries a watermark with the handler's name and the time, `Cache-Control:
//! no-store`, no script, and a print style that blanks it; results are never offered as files — only
//! an approved take-out output is. Every query, view and request writes an audit event (object ids
//! `ws-query/…`, `ws-rows/…`, `ws-takeout/…`, watched by the monitoring rules), with no medical value.

// Handlers return `Result<Response, Response>`, axum's usual shape; both sides are responses.
#![allow(clippy::result_large_err)]

use std::path::PathBuf;
use std::sync::Arc;

use askama::Template;
use axum::Json;
use axum::extract::{DefaultBodyLimit, Extension, Form, Multipart, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::NaiveDate;
use kiban_audit::{Action, Actor, AuditSink, Event, Object, ObjectKind, Outcome, Role};
use kiban_disclosure::decl::{Declaration, DimensionDecl, DimensionKind};
use kiban_registry::Registry;
use kiban_registry::accounts::AccountRole;
use kiban_registry::records::today_jst;
use kiban_registry::review::workflow::RequestKind;
use kiban_registry::workspace::{WsCommand, WsError, WsHandler, WsState, WsUpload};
use kiban_workspace::chart::{ChartKind, ChartSpec};
use kiban_workspace::{Limits, TakeoutStatus, Workspace, WorkspaceError};
use serde::Deserialize;
use serde_json::json;

use crate::{AppState, Caller, Res, RouteDesc, error, ok};

/// What the workspace routes need besides the shared state: where workspaces live, the data
/// directory's dataset sealer and the query limits. Attached to the router as an extension.
#[derive(Clone)]
pub struct WorkspaceEnv {
    /// `<data-dir>/workspaces`.
    pub base: PathBuf,
    /// `<data-dir>/datasets`: where released datasets are taken from when a workspace opens.
    pub datasets: PathBuf,
    /// The key store's sealer for datasets at rest.
    pub sealer: Arc<dyn kiban_formats::Sealer>,
    /// Limits of each query.
    pub limits: Limits,
}

/// Attaches a [`WorkspaceEnv`] to a router.
pub trait WithWorkspaces: Sized {
    /// The router with the environment attached.
    fn with_workspaces(self, env: WorkspaceEnv) -> Self;
}

impl WithWorkspaces for axum::Router {
    fn with_workspaces(self, env: WorkspaceEnv) -> Self {
        self.layer(Extension(env))
    }
}

/// The workspace routes.
pub fn descriptors() -> Vec<RouteDesc> {
    vec![
        route!(get, "/api/workspaces", list),
        route!(post, "/api/workspaces", open_ws),
        route!(post, "/api/workspaces/expire", expire),
        route!(get, "/api/workspaces/{id}", show),
        route!(post, "/api/workspaces/{id}/close", close),
        route!(get, "/api/workspaces/{id}/requests/{index}", review_request),
        route!(post, "/api/workspaces/{id}/requests/{index}", decide),
        route!(post, "/api/workspaces/{id}/suspend", suspend),
        route!(post, "/api/workspaces/{id}/resume", resume),
        route!(post, "/api/workspaces/{id}/handlers", roster_add),
        route!(post, "/api/workspaces/{id}/handlers/remove", roster_remove),
        route!(post, "/api/workspaces/{id}/takeouts/{tko}", decide_takeout),
        route!(get, "/workspace", page_index),
        route!(get, "/workspace/{id}", page_home),
        route!(post, "/workspace/{id}/query", page_query),
        route!(get, "/workspace/{id}/results/{rid}", page_result),
        route!(post, "/workspace/{id}/takeouts", page_takeout_request),
        route!(get, "/workspace/{id}/takeouts/{tko}", page_takeout),
        route!(get, "/workspace/{id}/takeouts/{tko}/output", page_output),
        RouteDesc {
            method: Method::POST,
            path: "/workspace/{id}/requests",
            // The own-data file rides on this form: the body limit is the upload cap plus the form.
            handler: post(page_request)
                .layer(DefaultBodyLimit::max(kiban_workspace::own::MAX_UPLOAD_BYTES + (256 << 10))),
        },
        route!(post, "/workspace/{id}/scripts/{name}/run", page_run_script),
        route!(post, "/workspace/{id}/tools/{name}/run", page_run_tool),
        route!(post, "/workspace/{id}/results/{rid}/charts", page_chart),
    ]
}

// ---------------------------------------------------------------------------------------------
// Shared steps (also called by the CLI): open, end of use, the sweep.

/// Opens a workspace for an approved Type II application: records it, then copies each released
/// dataset (`tables`: table name → dataset directory) in, sealed and bound to the workspace.
pub async fn open_workspace(
    reg: &Registry,
    env: &WorkspaceEnv,
    application_id: &str,
    handler_accounts: &[String],
    release_id: &str,
    tables: &[(String, PathBuf)],
    on: NaiveDate,
) -> Result<WsState, String> {
    let mut handlers = Vec::new();
    for a in handler_accounts {
        let acct = reg.account(a).await.map_err(|e| e.to_string())?;
        if acct.role != AccountRole::Handler {
            return Err(format!("account {a} is not a handler account (R5)"));
        }
        handlers.push(WsHandler { account_id: acct.account_id, name: acct.display_name });
    }
    let s =
        reg.open_workspace(application_id, &handlers, &[release_id.to_owned()], on).await.map_err(|e| e.to_string())?;
    let ws = Workspace::create(&env.base, &s.workspace_id, env.sealer.clone()).map_err(|e| e.to_string())?;
    for (table, dir) in tables {
        let rows = ws.add_dataset(table, dir).map_err(|e| e.to_string())?;
        let cmd = WsCommand::AddDataset { table: table.clone(), release_id: release_id.to_owned(), rows };
        reg.execute_workspace(&s.workspace_id, &cmd).await.map_err(|e| e.to_string())?;
    }
    reg.workspace_state(&s.workspace_id).await.map_err(|e| e.to_string())
}

/// Ends use of a workspace (R5): closes it if open, deletes its data, scripts, results and take-outs,
/// and writes the deletion record (workspace event, ledger row, the application's certificate).
pub async fn end_workspace(
    reg: &Registry,
    audit: &dyn AuditSink,
    env: &WorkspaceEnv,
    id: &str,
    on: NaiveDate,
    reason: &str,
    by: &Actor,
) -> Result<serde_json::Value, String> {
    let s = reg.workspace_state(id).await.map_err(|e| e.to_string())?;
    if s.phase == kiban_registry::workspace::WsPhase::Open {
        let cmd = WsCommand::Close { on, reason: reason.to_owned() };
        reg.execute_workspace(id, &cmd).await.map_err(|e| e.to_string())?;
    }
    let summary = match Workspace::open(&env.base, id, env.sealer.clone()) {
        Ok(ws) => ws.destroy().map_err(|e| e.to_string())?,
        Err(_) => kiban_workspace::DeletionSummary::default(),
    };
    let summary = serde_json::to_value(summary).expect("json");
    let (_, entry) = reg.record_workspace_deletion(id, on, &by.id, summary.clone()).await.map_err(|e| e.to_string())?;
    let ev = Event::new(by.clone(), "kiban", Action::Delete, Object::new(ObjectKind::Clinical, format!("ws/{id}")))
        .volume(summary["files"].as_u64().unwrap_or(0))
        .note(format!("workspace deleted at end of use (R5): {reason}"));
    audit.record(ev).map_err(|e| e.to_string())?;
    Ok(json!({"workspace_id": id, "deleted": summary, "ledger_entry": entry.entry_id}))
}

/// The sweep (R4, R5): closes every workspace whose period ended before `as_of` (or whose application
/// stopped) and deletes its contents with the deletion record. Run by the server periodically and by
/// `kiban workspace expire`.
pub async fn sweep(
    reg: &Registry,
    audit: &dyn AuditSink,
    env: &WorkspaceEnv,
    as_of: NaiveDate,
) -> Result<Vec<serde_json::Value>, String> {
    let closed = reg.expire_workspaces(as_of).await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let mut pending = closed;
    // Closed earlier but not yet deleted (a crash between the two): finish them too.
    for w in reg.workspaces().await.map_err(|e| e.to_string())? {
        if w.phase == kiban_registry::workspace::WsPhase::Closed && !pending.contains(&w.workspace_id) {
            pending.push(w.workspace_id);
        }
    }
    for id in pending {
        out.push(end_workspace(reg, audit, env, &id, as_of, "usage period ended (sweep)", &Actor::system()).await?);
    }
    Ok(out)
}

/// Runs [`sweep`] every `every` until the process ends (the server's periodic job).
pub fn spawn_sweeper(st: AppState, env: WorkspaceEnv, every: std::time::Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            if let Err(e) = sweep(&st.reg, st.audit.as_ref(), &env, today_jst()).await {
                eprintln!("workspace sweep failed: {e}");
            }
        }
    })
}

/// What a handler's R7 request brings along.
#[derive(Debug, Clone, Copy)]
pub enum Bring<'a> {
    /// Nothing yet (a request in words only).
    Nothing,
    /// A file of own data (CSV or Parquet) to become `table`.
    Data {
        /// The table name asked for.
        table: &'a str,
        /// The uploaded file's name (for messages).
        file_name: &'a str,
        /// Its bytes.
        bytes: &'a [u8],
    },
    /// A tool: a named SQL view.
    Tool {
        /// The tool's name.
        name: &'a str,
        /// Its text.
        sql: &'a str,
    },
}

/// A handler's R7 request (shared by the pages and the demo): the upload is checked and held in
/// quarantine, then the request is recorded with its digest; if the registry refuses the request the
/// upload is removed again.
pub async fn submit_request(
    reg: &Registry,
    ws: &Workspace,
    id: &str,
    account_id: &str,
    kind: RequestKind,
    detail: &str,
    bring: Bring<'_>,
) -> Result<(WsState, Option<kiban_workspace::Staged>), String> {
    let staged = match bring {
        Bring::Nothing => None,
        Bring::Data { table, file_name, bytes } => {
            Some(ws.stage_own_data(table, file_name, bytes).map_err(|e| e.to_string())?)
        }
        Bring::Tool { name, sql } => Some(ws.stage_tool(name, sql).map_err(|e| e.to_string())?),
    };
    let upload = staged.as_ref().map(|s| WsUpload {
        staged_id: s.staged_id.clone(),
        name: s.name.clone(),
        sha256: s.sha256.clone(),
        bytes: s.bytes,
        format: s.format.clone(),
        rows: s.rows,
        columns: s.columns.iter().map(|(c, _)| c.clone()).collect(),
    });
    let cmd = WsCommand::Request { account_id: account_id.to_owned(), kind, detail: detail.to_owned(), upload };
    match reg.execute_workspace(id, &cmd).await {
        Ok(s) => Ok((s, staged)),
        Err(e) => {
            if let Some(s) = &staged {
                let _ = ws.discard(&s.staged_id);
            }
            Err(e.to_string())
        }
    }
}

/// The creator's answer to R7 request `index`.
#[derive(Debug, Clone, Copy)]
pub struct RequestDecision<'a> {
    /// The request's index.
    pub index: usize,
    /// Granted (otherwise refused).
    pub granted: bool,
    /// Why.
    pub reason: &'a str,
}

/// The creator decides an R7 request (shared by the CLI and the API). A granted upload is brought in
/// only if its bytes still hash to the digest recorded with the request — data as a table of this
/// workspace only, a tool as a named view — and recorded; a refused upload is deleted from quarantine.
pub async fn decide_request(
    reg: &Registry,
    audit: &dyn AuditSink,
    env: &WorkspaceEnv,
    id: &str,
    d: RequestDecision<'_>,
    by: &Actor,
) -> Result<WsState, String> {
    let RequestDecision { index, granted, reason } = d;
    let cmd = WsCommand::DecideRequest { index, granted, reason: reason.to_owned(), by: by.id.clone() };
    let mut s = reg.execute_workspace(id, &cmd).await.map_err(|e| e.to_string())?;
    let note = if granted { "R7 request granted" } else { "R7 request refused" };
    let ev = Event::new(
        by.clone(),
        "kiban",
        Action::Write,
        Object::new(ObjectKind::Ledger, format!("ws-request/{id}/{index}")),
    )
    .note(note);
    audit.record(ev).map_err(|e| e.to_string())?;
    let Some(u) = s.requests.get(index).and_then(|r| r.upload.clone()) else { return Ok(s) };
    let kind = s.requests[index].kind;
    let ws = Workspace::open(&env.base, id, env.sealer.clone()).map_err(|e| e.to_string())?;
    if !granted {
        ws.discard(&u.staged_id).map_err(|e| e.to_string())?;
        return Ok(s);
    }
    let admitted = ws.admit(&u.staged_id, &u.sha256).map_err(|e| e.to_string())?;
    let cmd = match kind {
        RequestKind::OwnTools => WsCommand::AddTool { index, name: u.name.clone(), sha256: u.sha256.clone() },
        _ => WsCommand::AddOwnData { index, table: u.name.clone(), rows: admitted.rows },
    };
    s = reg.execute_workspace(id, &cmd).await.map_err(|e| e.to_string())?;
    let ev = Event::new(
        by.clone(),
        "kiban",
        Action::Write,
        Object::new(ObjectKind::Clinical, format!("ws/{id}/{}", u.name)),
    )
    .volume(admitted.rows)
    .note(format!("R7 {} admitted, sha256 {}", admitted.format, &u.sha256[..16]));
    audit.record(ev).map_err(|e| e.to_string())?;
    Ok(s)
}

/// An R7 request for the creator's review: the request, what its upload holds (schema and size; a
/// tool's whole text, which is what is approved).
pub fn request_review(env: &WorkspaceEnv, s: &WsState, index: usize) -> Result<serde_json::Value, String> {
    let r = s.requests.get(index).ok_or_else(|| format!("index: no request #{index} (R7)"))?;
    let mut v = json!({"index": index, "request": r});
    if let Some(u) = &r.upload
        && r.decision.is_none()
    {
        let ws = Workspace::open(&env.base, &s.workspace_id, env.sealer.clone()).map_err(|e| e.to_string())?;
        let staged = ws.staged(&u.staged_id).map_err(|e| e.to_string())?;
        v["staged"] = serde_json::to_value(&staged).expect("json");
        if staged.kind == kiban_workspace::StagedKind::Tool {
            v["tool_sql"] = json!(ws.staged_tool_text(&u.staged_id).map_err(|e| e.to_string())?);
        }
    }
    Ok(v)
}

// ---------------------------------------------------------------------------------------------
// Creator side (JSON).

fn ws_err(e: WsError) -> Response {
    match &e {
        WsError::Record(kiban_registry::records::RecordError::NotFound { .. }) => {
            error(StatusCode::NOT_FOUND, &e.to_string())
        }
        _ => error(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string()),
    }
}

fn audit_write(st: &AppState, c: &Caller, id: impl Into<String>) -> Result<(), Response> {
    crate::record_event(st, crate::event_of(c, Action::Write, ObjectKind::Ledger, id))
}

async fn list(State(st): State<AppState>, Extension(c): Extension<Caller>) -> Res {
    let v = st.reg.workspaces().await.map_err(ws_err)?;
    crate::record_event(&st, crate::event_of(&c, Action::Read, ObjectKind::Ledger, "workspaces"))?;
    ok(v)
}

async fn show(State(st): State<AppState>, Extension(c): Extension<Caller>, Path(id): Path<String>) -> Res {
    let s = st.reg.workspace_state(&id).await.map_err(ws_err)?;
    crate::record_event(&st, crate::event_of(&c, Action::Read, ObjectKind::Ledger, format!("ws/{id}")))?;
    ok(s)
}

/// Opening a workspace: the application, its handlers' accounts, the release and its datasets
/// (table name → dataset directory name under `<data-dir>/datasets/`).
#[derive(Debug, Deserialize)]
pub struct OpenBody {
    application_id: String,
    handlers: Vec<String>,
    release_id: String,
    datasets: std::collections::BTreeMap<String, String>,
    on: Option<NaiveDate>,
}

async fn open_ws(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Extension(env): Extension<WorkspaceEnv>,
    Json(b): Json<OpenBody>,
) -> Res {
    let mut tables = Vec::new();
    for (t, d) in &b.datasets {
        // A dataset is named, never given as a path: nothing outside <data-dir>/datasets is reachable.
        if d.is_empty() || d.contains(['/', '\\']) || d.starts_with('.') {
            return Err(error(StatusCode::UNPROCESSABLE_ENTITY, &format!("dataset {d:?} is not a dataset name")));
        }
        tables.push((t.clone(), env.datasets.join(d)));
    }
    let s = open_workspace(
        &st.reg,
        &env,
        &b.application_id,
        &b.handlers,
        &b.release_id,
        &tables,
        b.on.unwrap_or_else(today_jst),
    )
    .await
    .map_err(|e| error(StatusCode::UNPROCESSABLE_ENTITY, &e))?;
    audit_write(&st, &c, format!("ws/{}", s.workspace_id))?;
    ok(s)
}

/// Closing a workspace early (termination) or the sweep's date.
#[derive(Debug, Deserialize)]
pub struct CloseBody {
    reason: Option<String>,
    on: Option<NaiveDate>,
}

async fn close(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Extension(env): Extension<WorkspaceEnv>,
    Path(id): Path<String>,
    Json(b): Json<CloseBody>,
) -> Res {
    let reason = b.reason.unwrap_or_else(|| "terminated by the creator".into());
    let v = end_workspace(&st.reg, st.audit.as_ref(), &env, &id, b.on.unwrap_or_else(today_jst), &reason, &c.actor())
        .await
        .map_err(|e| error(StatusCode::UNPROCESSABLE_ENTITY, &e))?;
    ok(v)
}

async fn expire(
    State(st): State<AppState>,
    Extension(_c): Extension<Caller>,
    Extension(env): Extension<WorkspaceEnv>,
    Json(b): Json<CloseBody>,
) -> Res {
    let v = sweep(&st.reg, st.audit.as_ref(), &env, b.on.unwrap_or_else(today_jst))
        .await
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, &e))?;
    ok(json!({"ended": v}))
}

/// A decision with its reason.
#[derive(Debug, Deserialize)]
pub struct DecideBody {
    granted: bool,
    reason: String,
}

async fn decide(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Extension(env): Extension<WorkspaceEnv>,
    Path((id, index)): Path<(String, usize)>,
    Json(b): Json<DecideBody>,
) -> Res {
    let s = decide_request(
        &st.reg,
        st.audit.as_ref(),
        &env,
        &id,
        RequestDecision { index, granted: b.granted, reason: &b.reason },
        &c.actor(),
    )
    .await
    .map_err(|e| error(StatusCode::UNPROCESSABLE_ENTITY, &e))?;
    ok(json!({"requests": s.requests, "tables": s.tables, "tools": s.tools}))
}

async fn review_request(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Extension(env): Extension<WorkspaceEnv>,
    Path((id, index)): Path<(String, usize)>,
) -> Res {
    let s = st.reg.workspace_state(&id).await.map_err(ws_err)?;
    let v = request_review(&env, &s, index).map_err(|e| error(StatusCode::NOT_FOUND, &e))?;
    crate::record_event(
        &st,
        crate::event_of(&c, Action::Read, ObjectKind::Ledger, format!("ws-request/{id}/{index}")),
    )?;
    ok(v)
}

/// Stopping use: why.
#[derive(Debug, Deserialize)]
pub struct SuspendBody {
    reason: String,
    on: Option<NaiveDate>,
}

async fn suspend(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Json(b): Json<SuspendBody>,
) -> Res {
    let cmd = WsCommand::Suspend { on: b.on.unwrap_or_else(today_jst), reason: b.reason, by: c.account_id.clone() };
    let s = st.reg.execute_workspace(&id, &cmd).await.map_err(ws_err)?;
    audit_write(&st, &c, format!("ws/{id}/suspend"))?;
    ok(s)
}

async fn resume(State(st): State<AppState>, Extension(c): Extension<Caller>, Path(id): Path<String>) -> Res {
    let cmd = WsCommand::Resume { on: today_jst(), by: c.account_id.clone() };
    let s = st.reg.execute_workspace(&id, &cmd).await.map_err(ws_err)?;
    audit_write(&st, &c, format!("ws/{id}/resume"))?;
    ok(s)
}

/// A roster change: the handler's account, and why (removal).
#[derive(Debug, Deserialize)]
pub struct RosterBody {
    account_id: String,
    #[serde(default)]
    reason: String,
}

/// Adds a handler account to a workspace's roster (shared by the CLI and the API): the account must be
/// a handler account named on the application and its agreement (R5).
pub async fn add_handler(reg: &Registry, id: &str, account_id: &str, on: NaiveDate) -> Result<WsState, String> {
    let acct = reg.account(account_id).await.map_err(|e| e.to_string())?;
    if acct.role != AccountRole::Handler {
        return Err(format!("account {account_id} is not a handler account (R5)"));
    }
    let h = WsHandler { account_id: acct.account_id, name: acct.display_name };
    reg.add_workspace_handler(id, &h, on).await.map_err(|e| e.to_string())
}

async fn roster_add(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Json(b): Json<RosterBody>,
) -> Res {
    let s = add_handler(&st.reg, &id, &b.account_id, today_jst())
        .await
        .map_err(|e| error(StatusCode::UNPROCESSABLE_ENTITY, &e))?;
    audit_write(&st, &c, format!("ws/{id}/handler/{}", b.account_id))?;
    ok(s.handlers)
}

async fn roster_remove(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Json(b): Json<RosterBody>,
) -> Res {
    let cmd = WsCommand::RemoveHandler { account_id: b.account_id.clone(), on: today_jst(), reason: b.reason };
    let s = st.reg.execute_workspace(&id, &cmd).await.map_err(ws_err)?;
    audit_write(&st, &c, format!("ws/{id}/handler/{}", b.account_id))?;
    ok(s.handlers)
}

async fn decide_takeout(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Extension(env): Extension<WorkspaceEnv>,
    Path((id, tko)): Path<(String, String)>,
    Json(b): Json<DecideBody>,
) -> Res {
    st.reg.workspace_state(&id).await.map_err(ws_err)?;
    let ws = Workspace::open(&env.base, &id, env.sealer.clone())
        .map_err(|e| error(StatusCode::NOT_FOUND, &e.to_string()))?;
    let t = ws
        .decide_takeout(&tko, &c.account_id, b.granted, &b.reason, crate::now())
        .map_err(|e| error(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string()))?;
    let cmd = WsCommand::TakeoutDecided {
        takeout_id: tko.clone(),
        approved: t.status == TakeoutStatus::Approved,
        checker: c.account_id.clone(),
        table_sha256: t.approval.as_ref().map(|a| a.table_sha256.clone()),
    };
    st.reg.execute_workspace(&id, &cmd).await.map_err(ws_err)?;
    crate::record_event(
        &st,
        crate::event_of(&c, Action::Write, ObjectKind::Release, format!("ws-takeout/{id}/{tko}")),
    )?;
    ok(t)
}

// ---------------------------------------------------------------------------------------------
// Handler side (HTML).

/// Japanese first; English with `?lang=en` or the `kiban_lang=en` cookie.
#[derive(Debug, Clone, Copy)]
pub struct Tr {
    en: bool,
}

impl Tr {
    /// The text in the page's language.
    pub fn s<'a>(&self, ja: &'a str, en: &'a str) -> &'a str {
        if self.en { en } else { ja }
    }

    /// `lang` attribute.
    pub fn lang(&self) -> &'static str {
        if self.en { "en" } else { "ja" }
    }

    /// Query suffix keeping the language on links.
    pub fn q(&self) -> &'static str {
        if self.en { "?lang=en" } else { "" }
    }
}

/// The query parameters of the handler's pages.
#[derive(Debug, Deserialize, Default)]
pub struct LangQuery {
    lang: Option<String>,
    page: Option<usize>,
    script: Option<String>,
}

fn tr(q: &LangQuery, headers: &HeaderMap) -> Tr {
    let cookie_en = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.split(';').any(|kv| kv.trim() == "kiban_lang=en"));
    Tr { en: q.lang.as_deref().map_or(cookie_en, |l| l == "en") }
}

/// The watermark line: who and when (JST).
fn watermark(name: &str, account: &str) -> String {
    let t = crate::now().with_timezone(&chrono::FixedOffset::east_opt(9 * 3600).expect("JST"));
    format!("{name} ({account}) {}", t.format("%Y-%m-%d %H:%M:%S JST"))
}

/// A page response: no storing, no framing, no scripts.
fn page(html: String) -> Response {
    let mut r = axum::response::Html(html).into_response();
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store, no-cache, must-revalidate, private"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    r
}

fn see_other(to: String) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    r.headers_mut().insert(header::LOCATION, HeaderValue::from_str(&to).expect("ascii path"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[derive(Template)]
#[template(path = "workspace/message.html")]
struct MessagePage<'a> {
    t: Tr,
    wm: String,
    title: &'a str,
    message: String,
    back: String,
}

fn handler_actor(c: &Caller) -> Actor {
    Actor::new(&c.account_id, Role::UserType2)
}

fn record(st: &AppState, c: &Caller, action: Action, kind: ObjectKind, id: String) -> EventB {
    EventB { st: st.clone(), ev: Event::new(handler_actor(c), &c.source, action, Object::new(kind, id)) }
}

/// An audit event being built for a handler's operation.
struct EventB {
    st: AppState,
    ev: Event,
}

impl EventB {
    fn volume(mut self, v: u64) -> Self {
        self.ev = self.ev.volume(v);
        self
    }
    fn outcome(mut self, o: Outcome) -> Self {
        self.ev = self.ev.outcome(o);
        self
    }
    fn note(mut self, n: impl Into<String>) -> Self {
        self.ev = self.ev.note(n);
        self
    }
    fn done(self) -> Result<(), Response> {
        crate::record_event(&self.st, self.ev)
    }
}

/// A handler inside their workspace: what every handler page starts from. Extracting it checks the
/// session's caller, the workspace id of the path, that the caller is a handler of that open,
/// unstopped workspace today, and opens the workspace's store; any failure is a recorded denial
/// (URL tampering is an attempt to reach another workspace, R6/R13) and a page saying no.
pub struct Entered {
    st: AppState,
    env: WorkspaceEnv,
    c: Caller,
    t: Tr,
    q: LangQuery,
    id: String,
    s: WsState,
    h: WsHandler,
    ws: Workspace,
}

impl axum::extract::FromRequestParts<AppState> for Entered {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, st: &AppState) -> Result<Self, Response> {
        let c =
            parts.extensions.get::<Caller>().cloned().ok_or_else(|| error(StatusCode::UNAUTHORIZED, "log in first"))?;
        let env = parts
            .extensions
            .get::<WorkspaceEnv>()
            .cloned()
            .ok_or_else(|| error(StatusCode::SERVICE_UNAVAILABLE, "the Visiting environment is not configured"))?;
        let q = Query::<LangQuery>::try_from_uri(&parts.uri).map(|q| q.0).unwrap_or_default();
        let t = tr(&q, &parts.headers);
        let id = axum::extract::RawPathParams::from_request_parts(parts, st)
            .await
            .ok()
            .and_then(|p| p.iter().find(|(k, _)| *k == "id").map(|(_, v)| v.to_owned()))
            .unwrap_or_default();
        let deny = |msg: String| {
            let _ = record(st, &c, Action::Read, ObjectKind::Clinical, format!("ws-access/{id}"))
                .outcome(Outcome::Denied)
                .note("not a handler of this open workspace today")
                .done();
            let html = MessagePage {
                t,
                wm: watermark(&c.account_id, &c.account_id),
                title: t.s("利用できません", "Not available"),
                message: msg,
                back: format!("/workspace{}", t.q()),
            }
            .render()
            .unwrap_or_default();
            let mut r = page(html);
            *r.status_mut() = StatusCode::FORBIDDEN;
            r
        };
        let unavailable =
            || deny(t.s("このワークスペースは利用できません。", "This workspace is not available.").into());
        if !kiban_workspace::valid_id(&id, "ws") {
            return Err(unavailable());
        }
        let Ok(s) = st.reg.workspace_state(&id).await else { return Err(unavailable()) };
        let h = s.may_use(&c.account_id, today_jst()).map_err(|e| deny(e.to_string()))?.clone();
        let ws = Workspace::open(&env.base, &id, env.sealer.clone()).map_err(|e| deny(e.to_string()))?;
        Ok(Entered { st: st.clone(), env, c, t, q, id, s, h, ws })
    }
}

impl Entered {
    /// An audit event of this handler's operation.
    fn record(&self, action: Action, kind: ObjectKind, object: String) -> EventB {
        record(&self.st, &self.c, action, kind, object)
    }

    /// The watermark of this handler's pages.
    fn wm(&self) -> String {
        watermark(&self.h.name, &self.c.account_id)
    }

    /// A link inside this workspace, keeping the language.
    fn link(&self, rest: &str) -> String {
        format!("/workspace/{}{rest}{}", self.id, self.t.q())
    }

    /// A watermarked message page with `status`.
    fn message(&self, status: StatusCode, title: &str, message: String) -> Res {
        let html = MessagePage { t: self.t, wm: self.wm(), title, message, back: self.link("") }
            .render()
            .map_err(render_err)?;
        let mut r = page(html);
        *r.status_mut() = status;
        Ok(r)
    }

    /// Runs a query (typed, a saved script or a tool) and answers with its result page or a refusal,
    /// audited either way.
    async fn run(&self, what: &str, sql: Result<String, WorkspaceError>) -> Res {
        let out = match sql {
            Ok(sql) => self.ws.query(&self.c.account_id, &sql, self.env.limits).await,
            Err(e) => Err(e),
        };
        match out {
            Ok(info) => {
                self.record(Action::Read, ObjectKind::Clinical, format!("ws-query/{}/{}", self.id, info.result_id))
                    .volume(info.rows)
                    .note(format!("{what}; sql sha256 {} ({} ms)", &info.sql_sha256[..16], info.elapsed_ms))
                    .done()?;
                Ok(see_other(self.link(&format!("/results/{}", info.result_id))))
            }
            Err(e) => {
                let outside = e.is_outside_reach() || matches!(e, WorkspaceError::Refused { .. });
                self.record(Action::Read, ObjectKind::Clinical, format!("ws-query/{}/refused", self.id))
                    .outcome(if outside { Outcome::Denied } else { Outcome::Failure })
                    .note(match &e {
                        WorkspaceError::Refused { rule, .. } => format!("{what}: refused ({rule})"),
                        WorkspaceError::Limit { limit, .. } => format!("{what}: stopped by the {limit} limit"),
                        _ => format!("{what}: query error"),
                    })
                    .done()?;
                let status = if outside {
                    StatusCode::FORBIDDEN
                } else if matches!(e, WorkspaceError::NotFound { .. }) {
                    StatusCode::NOT_FOUND
                } else {
                    StatusCode::UNPROCESSABLE_ENTITY
                };
                self.message(status, self.t.s("クエリを実行できませんでした", "The query did not run"), e.to_string())
            }
        }
    }
}

#[derive(Template)]
#[template(path = "workspace/index.html")]
struct IndexPage {
    t: Tr,
    wm: String,
    rows: Vec<(String, String, String, String)>,
}

async fn page_index(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Query(q): Query<LangQuery>,
    headers: HeaderMap,
) -> Res {
    let t = tr(&q, &headers);
    let mine = st.reg.workspaces_of(&c.account_id).await.map_err(ws_err)?;
    let today = today_jst();
    let name = mine.iter().find_map(|s| s.handler(&c.account_id)).map(|h| h.name.clone()).unwrap_or_default();
    let rows = mine
        .iter()
        .map(|s| {
            let usable = s.may_use(&c.account_id, today).is_ok();
            let state = if usable {
                t.s("利用可", "open").to_owned()
            } else if s.suspended.is_some() {
                t.s("利用停止中", "use stopped").to_owned()
            } else {
                format!("{:?}", s.phase)
            };
            (s.workspace_id.clone(), s.application_id.clone(), format!("{} – {}", s.usage_from, s.usage_to), state)
        })
        .collect();
    record(&st, &c, Action::Read, ObjectKind::Ledger, "ws-list".into()).done()?;
    Ok(page(IndexPage { t, wm: watermark(&name, &c.account_id), rows }.render().map_err(render_err)?))
}

fn render_err(e: askama::Error) -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, &format!("template: {e}"))
}

/// One R7 request as the handler's page lists it.
struct RequestRow {
    kind: String,
    detail: String,
    upload: String,
    status: String,
}

#[derive(Template)]
#[template(path = "workspace/home.html")]
struct HomePage {
    t: Tr,
    wm: String,
    id: String,
    period: String,
    tables: Vec<(String, String)>,
    scripts: Vec<String>,
    tools: Vec<(String, String)>,
    sql: String,
    results: Vec<kiban_workspace::ResultInfo>,
    takeouts: Vec<(String, String, String)>,
    requests: Vec<RequestRow>,
    limits: String,
    max_upload_mib: usize,
}

async fn page_home(w: Entered) -> Res {
    let t = w.t;
    let fail = |e: WorkspaceError| error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string());
    let tables =
        w.ws.schema()
            .map_err(fail)?
            .into_iter()
            .map(|(n, cols)| (n, cols.iter().map(|(c, ty)| format!("{c} ({ty})")).collect::<Vec<_>>().join(", ")))
            .collect();
    let sql = match &w.q.script {
        Some(name) => {
            let text = w.ws.script(name).map_err(|e| error(StatusCode::NOT_FOUND, &e.to_string()))?;
            w.record(Action::Read, ObjectKind::Clinical, format!("ws-script/{}/{name}", w.id)).done()?;
            text
        }
        None => String::new(),
    };
    let takeouts =
        w.ws.takeouts()
            .map_err(fail)?
            .into_iter()
            .map(|k| (k.takeout_id, k.result_id, takeout_label(t, k.status).to_owned()))
            .collect();
    let requests =
        w.s.requests
            .iter()
            .map(|r| {
                let kind = match r.kind {
                    RequestKind::OwnData => t.s("自己データの持込み", "own data"),
                    RequestKind::OwnTools => t.s("自己ツールの持込み", "own tools"),
                    RequestKind::OutputTakeOut => t.s("成果物の持出し", "output take-out"),
                };
                let status = match (&r.decision, &r.fulfilled) {
                    (None, _) => t.s("審査中（隔離保管）", "pending (held in quarantine)").to_owned(),
                    (Some((true, why, _)), Some(name)) => {
                        format!("{}: {why} → {name}", t.s("承認・利用可", "granted, in use"))
                    }
                    (Some((true, why, _)), None) => format!("{}: {why}", t.s("承認", "granted")),
                    (Some((false, why, _)), _) => format!("{}: {why}", t.s("不承認（削除済み）", "refused (deleted)")),
                };
                let upload = r
                    .upload
                    .as_ref()
                    .map(|u| format!("{} ({}, {} B, SHA-256 {}…)", u.name, u.format, u.bytes, &u.sha256[..12]))
                    .unwrap_or_default();
                RequestRow { kind: kind.to_owned(), detail: r.detail.clone(), upload, status }
            })
            .collect();
    let tools = w.ws.tools().map_err(fail)?.into_iter().map(|x| (x.name, x.sha256[..12].to_owned())).collect();
    let l = w.env.limits;
    let page_html = HomePage {
        t,
        wm: w.wm(),
        id: w.id.clone(),
        period: format!("{} – {}", w.s.usage_from, w.s.usage_to),
        tables,
        scripts: w.ws.scripts().map_err(fail)?,
        tools,
        sql,
        results: w.ws.results().map_err(fail)?,
        takeouts,
        requests,
        limits: format!(
            "{} MiB / {} {} / {} s",
            l.memory_bytes >> 20,
            l.max_rows,
            t.s("行", "rows"),
            l.timeout.as_secs()
        ),
        max_upload_mib: kiban_workspace::own::MAX_UPLOAD_BYTES >> 20,
    }
    .render()
    .map_err(render_err)?;
    w.record(Action::Read, ObjectKind::Ledger, format!("ws-home/{}", w.id)).done()?;
    Ok(page(page_html))
}

fn takeout_label(t: Tr, s: TakeoutStatus) -> &'static str {
    match s {
        TakeoutStatus::Refused => {
            t.s("不可（公表基準を満たさない・中間生成物）", "refused (fails the publication rules)")
        }
        TakeoutStatus::AwaitingApproval => t.s("確認者の承認待ち（最終生成物）", "awaiting a checker (final product)"),
        TakeoutStatus::Approved => t.s("承認済み（成果物）", "approved (output)"),
        TakeoutStatus::Declined => t.s("確認者が不承認", "declined by the checker"),
    }
}

/// The SQL editor form.
#[derive(Debug, Deserialize)]
pub struct QueryForm {
    sql: String,
    #[serde(default)]
    save_as: String,
}

async fn page_query(w: Entered, Form(f): Form<QueryForm>) -> Res {
    let name = f.save_as.trim();
    if !name.is_empty() {
        w.ws.save_script(name, &f.sql).map_err(|e| error(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string()))?;
        w.record(Action::Write, ObjectKind::Clinical, format!("ws-script/{}/{name}", w.id)).done()?;
    }
    w.run("query", Ok(f.sql)).await
}

/// A saved script run from the console: its stored text runs as a query.
async fn page_run_script(w: Entered, Path((_, name)): Path<(String, String)>) -> Res {
    let sql = w.ws.script(&name);
    w.run(&format!("script {name}"), sql).await
}

/// An approved tool (R7) run alone.
async fn page_run_tool(w: Entered, Path((_, name)): Path<(String, String)>) -> Res {
    let sql = w.ws.tool(&name).map(|_| format!("SELECT * FROM {name}"));
    w.run(&format!("tool {name}"), sql).await
}

#[derive(Template)]
#[template(path = "workspace/result.html")]
struct ResultPage {
    t: Tr,
    wm: String,
    id: String,
    p: kiban_workspace::Page,
    prev: Option<usize>,
    next: Option<usize>,
    kinds: Vec<(&'static str, &'static str)>,
    charts: Vec<String>,
    chart_error: Option<String>,
}

async fn page_result(w: Entered, Path((_, rid)): Path<(String, String)>) -> Res {
    let n = w.q.page.unwrap_or(0);
    let p = w.ws.page(&rid, n, 100).map_err(|e| error(StatusCode::NOT_FOUND, &e.to_string()))?;
    let object = if p.info.row_level { format!("ws-rows/{}/{rid}", w.id) } else { format!("ws-view/{}/{rid}", w.id) };
    w.record(Action::Read, ObjectKind::Clinical, object)
        .volume(p.rows.len() as u64)
        .note(format!("page {n} of {}", p.pages))
        .done()?;
    let mut charts = Vec::new();
    let mut chart_error = None;
    for spec in w.ws.charts(&rid).map_err(|e| error(StatusCode::NOT_FOUND, &e.to_string()))? {
        match w.ws.chart_svg(&rid, &spec) {
            Ok(svg) => charts.push(svg),
            Err(e) => chart_error = Some(e.to_string()),
        }
    }
    let prev = n.checked_sub(1);
    let next = (n + 1 < p.pages).then_some(n + 1);
    let html = ResultPage {
        t: w.t,
        wm: w.wm(),
        id: w.id.clone(),
        p,
        prev,
        next,
        kinds: DIM_KINDS.to_vec(),
        charts,
        chart_error,
    }
    .render()
    .map_err(render_err)?;
    Ok(page(html))
}

/// A chart of a result: kind (`bar`/`line`), the label column and the value column.
#[derive(Debug, Deserialize)]
pub struct ChartForm {
    kind: String,
    x: String,
    y: String,
}

async fn page_chart(w: Entered, Path((_, rid)): Path<(String, String)>, Form(f): Form<ChartForm>) -> Res {
    let kind = match f.kind.as_str() {
        "bar" => ChartKind::Bar,
        "line" => ChartKind::Line,
        _ => return Err(error(StatusCode::UNPROCESSABLE_ENTITY, "kind: bar or line")),
    };
    let spec = ChartSpec { kind, x: f.x, y: f.y };
    match w.ws.add_chart(&rid, &spec) {
        Ok(_) => {
            w.record(Action::Write, ObjectKind::Clinical, format!("ws-chart/{}/{rid}", w.id)).done()?;
            Ok(see_other(w.link(&format!("/results/{rid}"))))
        }
        Err(WorkspaceError::NotFound { kind, id }) => Err(error(StatusCode::NOT_FOUND, &format!("{kind} {id}"))),
        Err(e) => w.message(StatusCode::UNPROCESSABLE_ENTITY, w.t.s("グラフを作れません", "No chart"), e.to_string()),
    }
}

/// Dimension kinds a handler can declare for a take-out (as kiban-disclosure names them).
const DIM_KINDS: [(&str, &str); 10] = [
    ("other", "その他 / other"),
    ("age_band", "年齢区分 / age band"),
    ("sex", "性別 / sex"),
    ("secondary_area", "二次医療圏 / secondary area"),
    ("prefecture", "都道府県 / prefecture"),
    ("municipality", "市区町村 / municipality"),
    ("postal_code", "郵便番号 / postal code"),
    ("facility_attribute", "医療機関属性 / facility attribute"),
    ("insurer_type", "保険者種別 / insurer type"),
    ("drug_kind", "薬剤区分 / drug kind"),
];

/// A take-out request: the result, its count column, and each dimension as `column:kind` lines.
#[derive(Debug, Deserialize)]
pub struct TakeoutForm {
    result_id: String,
    count_column: String,
    dimensions: String,
    #[serde(default)]
    title: String,
}

fn parse_dims(text: &str) -> Result<Vec<DimensionDecl>, String> {
    let mut v = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (col, kind) = line.split_once(':').unwrap_or((line, "other"));
        let kind: DimensionKind = serde_json::from_value(serde_json::Value::String(kind.trim().to_owned()))
            .map_err(|_| format!("{line:?}: the kind must be one of the listed dimension kinds"))?;
        v.push(DimensionDecl { column: col.trim().to_owned(), kind });
    }
    Ok(v)
}

async fn page_takeout_request(w: Entered, Form(f): Form<TakeoutForm>) -> Res {
    let bad = |m: String| error(StatusCode::UNPROCESSABLE_ENTITY, &m);
    let dims = parse_dims(&f.dimensions).map_err(bad)?;
    let mut decl: Declaration = toml_decl(&f.count_column).map_err(bad)?;
    decl.dimensions = dims;
    decl.title = if f.title.trim().is_empty() { f.result_id.clone() } else { f.title.trim().to_owned() };
    decl.user_made_label = Some("利用者が独自に作成・加工した資料であり、公的な統計ではない".into());
    let checked =
        w.ws.request_takeout(&f.result_id, &w.c.account_id, &decl, crate::now()).map_err(|e| bad(e.to_string()))?;
    let cmd = WsCommand::TakeoutChecked {
        takeout_id: checked.takeout_id.clone(),
        result_id: f.result_id.clone(),
        account_id: w.c.account_id.clone(),
        passed: checked.status == TakeoutStatus::AwaitingApproval,
    };
    w.st.reg.execute_workspace(&w.id, &cmd).await.map_err(ws_err)?;
    w.record(Action::Write, ObjectKind::Release, format!("ws-takeout/{}/{}", w.id, checked.takeout_id))
        .note(format!("publication check: {:?}", checked.status))
        .done()?;
    Ok(see_other(w.link(&format!("/takeouts/{}", checked.takeout_id))))
}

fn toml_decl(count: &str) -> Result<Declaration, String> {
    let mut d: Declaration = toml::from_str(&format!(
        "count_column = {}\n[[dimension]]\ncolumn = \"_\"\nkind = \"other\"\n",
        toml::Value::String(count.trim().to_owned())
    ))
    .map_err(|e| e.to_string())?;
    d.dimensions.clear();
    Ok(d)
}

#[derive(Template)]
#[template(path = "workspace/takeout.html")]
struct TakeoutPage {
    t: Tr,
    wm: String,
    id: String,
    k: kiban_workspace::TakeoutCheck,
    status: &'static str,
    findings: Vec<String>,
    approved: bool,
}

async fn page_takeout(w: Entered, Path((_, tko)): Path<(String, String)>) -> Res {
    let k = w.ws.takeout(&tko).map_err(|e| error(StatusCode::NOT_FOUND, &e.to_string()))?;
    let report = w.ws.takeout_report(&tko).map_err(|e| error(StatusCode::NOT_FOUND, &e.to_string()))?;
    let t = w.t;
    let findings = report
        .findings
        .iter()
        .map(|f| format!("{:?}: {}", f.rule, if t.en { &f.message_en } else { &f.message_ja }))
        .collect();
    w.record(Action::Read, ObjectKind::Release, format!("ws-takeout/{}/{tko}", w.id)).done()?;
    let html = TakeoutPage {
        t,
        wm: w.wm(),
        id: w.id.clone(),
        status: takeout_label(t, k.status),
        approved: k.status == TakeoutStatus::Approved,
        k,
        findings,
    }
    .render()
    .map_err(render_err)?;
    Ok(page(html))
}

async fn page_output(w: Entered, Path((_, tko)): Path<(String, String)>) -> Res {
    match w.ws.approved_output(&tko) {
        Ok((bytes, a)) => {
            // An approved output is no longer medical information; its leaving is recorded, not alerted.
            w.record(Action::Read, ObjectKind::Release, format!("ws-output/{}/{tko}", w.id))
                .volume(bytes.len() as u64)
                .note(format!("approved output (D9) sha256 {}", &a.table_sha256[..16]))
                .done()?;
            let mut r = bytes.into_response();
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&format!("attachment; filename=\"{tko}.csv\"")).expect("ascii id"),
            );
            h.insert("x-kiban-approved-sha256", HeaderValue::from_str(&a.table_sha256).expect("hex"));
            Ok(r)
        }
        Err(e) => {
            w.record(Action::Download, ObjectKind::Release, format!("ws-output/{}/{tko}", w.id))
                .outcome(Outcome::Denied)
                .note("not an approved output")
                .done()?;
            Err(error(StatusCode::FORBIDDEN, &e.to_string()))
        }
    }
}

/// An R7 request from a handler (multipart form): `kind` (`own_data`/`own_tools`), `detail`, and
/// `name` with either `file` (CSV/Parquet, own data) or `sql` (a tool's text).
async fn page_request(w: Entered, mut mp: Multipart) -> Res {
    let bad = |m: String| error(StatusCode::UNPROCESSABLE_ENTITY, &m);
    let (mut kind, mut detail, mut name, mut sql) = (String::new(), String::new(), String::new(), String::new());
    let mut file: Option<(String, Vec<u8>)> = None;
    while let Some(f) = mp.next_field().await.map_err(|e| bad(format!("the upload could not be read: {e}")))? {
        let field = f.name().unwrap_or("").to_owned();
        let file_name = f.file_name().map(str::to_owned);
        let bytes = f.bytes().await.map_err(|e| bad(format!("{field}: the upload could not be read: {e}")))?;
        let text = || String::from_utf8_lossy(&bytes).into_owned();
        match field.as_str() {
            "kind" => kind = text(),
            "detail" => detail = text(),
            "name" => name = text().trim().to_owned(),
            "sql" => sql = text(),
            "file" if !bytes.is_empty() => file = Some((file_name.unwrap_or_else(|| "upload".into()), bytes.to_vec())),
            _ => {}
        }
    }
    let (kind, bring) = match kind.as_str() {
        "own_data" => {
            let bring = match &file {
                Some((file_name, bytes)) => Bring::Data { table: &name, file_name, bytes },
                None => Bring::Nothing,
            };
            (RequestKind::OwnData, bring)
        }
        "own_tools" if sql.trim().is_empty() => (RequestKind::OwnTools, Bring::Nothing),
        "own_tools" => (RequestKind::OwnTools, Bring::Tool { name: &name, sql: &sql }),
        _ => return Err(bad("kind must be own_data or own_tools".into())),
    };
    match submit_request(&w.st.reg, &w.ws, &w.id, &w.c.account_id, kind, &detail, bring).await {
        Ok((s, staged)) => {
            w.record(Action::Write, ObjectKind::Ledger, format!("ws-request/{}/{}", w.id, s.requests.len() - 1))
                .volume(staged.as_ref().map_or(0, |x| x.bytes))
                .note(
                    staged.map_or("R7 request".to_owned(), |x| {
                        format!("R7 request with upload sha256 {}", &x.sha256[..16])
                    }),
                )
                .done()?;
            Ok(see_other(w.link("")))
        }
        Err(e) => w.message(
            StatusCode::UNPROCESSABLE_ENTITY,
            w.t.s("申請できませんでした", "The request was not accepted"),
            e,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn d9_dimension_lines_parse_and_unknown_kinds_are_named() {
        let d = parse_dims("sex:sex\nicd10\n age : age_band ").unwrap();
        assert_eq!(d.len(), 3);
        assert_eq!(d[1].kind, DimensionKind::Other);
        assert_eq!(d[2].kind, DimensionKind::AgeBand);
        assert!(parse_dims("x:nonsense").unwrap_err().contains("x:nonsense"));
        assert_eq!(toml_decl("n\"\n[x]").unwrap().count_column, "n\"\n[x]", "the count column is data, not TOML");
    }
}
