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
use axum::extract::{Extension, Form, Path, Query, State};
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
use kiban_registry::workspace::{WsCommand, WsError, WsHandler, WsState};
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
        route!(post, "/api/workspaces/{id}/requests/{index}", decide_request),
        route!(post, "/api/workspaces/{id}/takeouts/{tko}", decide_takeout),
        route!(get, "/workspace", page_index),
        route!(get, "/workspace/{id}", page_home),
        route!(post, "/workspace/{id}/query", page_query),
        route!(get, "/workspace/{id}/results/{rid}", page_result),
        route!(post, "/workspace/{id}/takeouts", page_takeout_request),
        route!(get, "/workspace/{id}/takeouts/{tko}", page_takeout),
        route!(get, "/workspace/{id}/takeouts/{tko}/output", page_output),
        route!(post, "/workspace/{id}/requests", page_request),
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

async fn decide_request(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((id, index)): Path<(String, usize)>,
    Json(b): Json<DecideBody>,
) -> Res {
    let cmd = WsCommand::DecideRequest { index, granted: b.granted, reason: b.reason, by: c.account_id.clone() };
    let s = st.reg.execute_workspace(&id, &cmd).await.map_err(ws_err)?;
    audit_write(&st, &c, format!("ws-request/{id}/{index}"))?;
    ok(s.requests)
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

/// The `lang` query parameter.
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

/// The caller's workspace, if they may use it today; otherwise a recorded denial (URL tampering is
/// an attempt to reach another workspace, R6/R13) and a page saying no.
async fn entered(
    st: &AppState,
    env: &WorkspaceEnv,
    c: &Caller,
    t: Tr,
    id: &str,
) -> Result<(WsState, WsHandler, Workspace), Response> {
    let deny = |msg: String| {
        let _ = record(st, c, Action::Read, ObjectKind::Clinical, format!("ws-access/{id}"))
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
    if !kiban_workspace::valid_id(id, "ws") {
        return Err(deny(t.s("このワークスペースは利用できません。", "This workspace is not available.").into()));
    }
    let s = match st.reg.workspace_state(id).await {
        Ok(s) => s,
        Err(_) => {
            return Err(deny(t.s("このワークスペースは利用できません。", "This workspace is not available.").into()));
        }
    };
    let h = match s.may_use(&c.account_id, today_jst()) {
        Ok(h) => h.clone(),
        Err(e) => return Err(deny(e.to_string())),
    };
    let ws = Workspace::open(&env.base, id, env.sealer.clone()).map_err(|e| deny(e.to_string()))?;
    Ok((s, h, ws))
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
            (
                s.workspace_id.clone(),
                s.application_id.clone(),
                format!("{} – {}", s.usage_from, s.usage_to),
                if usable { t.s("利用可", "open").to_owned() } else { format!("{:?}", s.phase) },
            )
        })
        .collect();
    record(&st, &c, Action::Read, ObjectKind::Ledger, "ws-list".into()).done()?;
    Ok(page(IndexPage { t, wm: watermark(&name, &c.account_id), rows }.render().map_err(render_err)?))
}

fn render_err(e: askama::Error) -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, &format!("template: {e}"))
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
    sql: String,
    results: Vec<kiban_workspace::ResultInfo>,
    takeouts: Vec<(String, String, String)>,
    requests: Vec<(String, String, String)>,
    limits: String,
}

async fn page_home(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Extension(env): Extension<WorkspaceEnv>,
    Path(id): Path<String>,
    Query(q): Query<LangQuery>,
    headers: HeaderMap,
) -> Res {
    let t = tr(&q, &headers);
    let (s, h, ws) = entered(&st, &env, &c, t, &id).await?;
    let fail = |e: WorkspaceError| error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string());
    let tables = ws
        .schema()
        .map_err(fail)?
        .into_iter()
        .map(|(n, cols)| (n, cols.iter().map(|(c, ty)| format!("{c} ({ty})")).collect::<Vec<_>>().join(", ")))
        .collect();
    let sql = match &q.script {
        Some(name) => {
            let text = ws.script(name).map_err(|e| error(StatusCode::NOT_FOUND, &e.to_string()))?;
            record(&st, &c, Action::Read, ObjectKind::Clinical, format!("ws-script/{id}/{name}")).done()?;
            text
        }
        None => String::new(),
    };
    let takeouts = ws
        .takeouts()
        .map_err(fail)?
        .into_iter()
        .map(|k| (k.takeout_id, k.result_id, takeout_label(t, k.status).to_owned()))
        .collect();
    let requests = s
        .requests
        .iter()
        .map(|r| {
            let kind = match r.kind {
                RequestKind::OwnData => t.s("自己データの持込み", "own data"),
                RequestKind::OwnTools => t.s("自己ツールの持込み", "own tools"),
                RequestKind::OutputTakeOut => t.s("成果物の持出し", "output take-out"),
            };
            let status = match &r.decision {
                None => t.s("審査中", "pending").to_owned(),
                Some((true, why, _)) => format!("{}: {why}", t.s("承認", "granted")),
                Some((false, why, _)) => format!("{}: {why}", t.s("不承認", "refused")),
            };
            (kind.to_owned(), r.detail.clone(), status)
        })
        .collect();
    let l = env.limits;
    let page_html = HomePage {
        t,
        wm: watermark(&h.name, &c.account_id),
        id: id.clone(),
        period: format!("{} – {}", s.usage_from, s.usage_to),
        tables,
        scripts: ws.scripts().map_err(fail)?,
        sql,
        results: ws.results().map_err(fail)?,
        takeouts,
        requests,
        limits: format!(
            "{} MiB / {} {} / {} s",
            l.memory_bytes >> 20,
            l.max_rows,
            t.s("行", "rows"),
            l.timeout.as_secs()
        ),
    }
    .render()
    .map_err(render_err)?;
    record(&st, &c, Action::Read, ObjectKind::Ledger, format!("ws-home/{id}")).done()?;
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

async fn page_query(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Extension(env): Extension<WorkspaceEnv>,
    Path(id): Path<String>,
    Query(q): Query<LangQuery>,
    headers: HeaderMap,
    Form(f): Form<QueryForm>,
) -> Res {
    let t = tr(&q, &headers);
    let (_, h, ws) = entered(&st, &env, &c, t, &id).await?;
    if !f.save_as.trim().is_empty() {
        ws.save_script(f.save_as.trim(), &f.sql)
            .map_err(|e| error(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string()))?;
        record(&st, &c, Action::Write, ObjectKind::Clinical, format!("ws-script/{id}/{}", f.save_as.trim())).done()?;
    }
    match ws.query(&c.account_id, &f.sql, env.limits).await {
        Ok(info) => {
            record(&st, &c, Action::Read, ObjectKind::Clinical, format!("ws-query/{id}/{}", info.result_id))
                .volume(info.rows)
                .note(format!("sql sha256 {} ({} ms)", &info.sql_sha256[..16], info.elapsed_ms))
                .done()?;
            Ok(see_other(format!("/workspace/{id}/results/{}{}", info.result_id, t.q())))
        }
        Err(e) => {
            let outside = e.is_outside_reach() || matches!(e, WorkspaceError::Refused { .. });
            let ev = record(&st, &c, Action::Read, ObjectKind::Clinical, format!("ws-query/{id}/refused"))
                .outcome(if outside { Outcome::Denied } else { Outcome::Failure })
                .note(match &e {
                    WorkspaceError::Refused { rule, .. } => format!("refused ({rule})"),
                    WorkspaceError::Limit { limit, .. } => format!("stopped by the {limit} limit"),
                    _ => "query error".to_owned(),
                });
            ev.done()?;
            let html = MessagePage {
                t,
                wm: watermark(&h.name, &c.account_id),
                title: t.s("クエリを実行できませんでした", "The query did not run"),
                message: e.to_string(),
                back: format!("/workspace/{id}{}", t.q()),
            }
            .render()
            .map_err(render_err)?;
            let mut r = page(html);
            *r.status_mut() = if outside { StatusCode::FORBIDDEN } else { StatusCode::UNPROCESSABLE_ENTITY };
            Ok(r)
        }
    }
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
}

async fn page_result(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Extension(env): Extension<WorkspaceEnv>,
    Path((id, rid)): Path<(String, String)>,
    Query(q): Query<LangQuery>,
    headers: HeaderMap,
) -> Res {
    let t = tr(&q, &headers);
    let (_, h, ws) = entered(&st, &env, &c, t, &id).await?;
    let n = q.page.unwrap_or(0);
    let p = ws.page(&rid, n, 100).map_err(|e| error(StatusCode::NOT_FOUND, &e.to_string()))?;
    let object = if p.info.row_level { format!("ws-rows/{id}/{rid}") } else { format!("ws-view/{id}/{rid}") };
    record(&st, &c, Action::Read, ObjectKind::Clinical, object)
        .volume(p.rows.len() as u64)
        .note(format!("page {n} of {}", p.pages))
        .done()?;
    let prev = n.checked_sub(1);
    let next = (n + 1 < p.pages).then_some(n + 1);
    let html = ResultPage { t, wm: watermark(&h.name, &c.account_id), id, p, prev, next, kinds: DIM_KINDS.to_vec() }
        .render()
        .map_err(render_err)?;
    Ok(page(html))
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

async fn page_takeout_request(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Extension(env): Extension<WorkspaceEnv>,
    Path(id): Path<String>,
    Query(q): Query<LangQuery>,
    headers: HeaderMap,
    Form(f): Form<TakeoutForm>,
) -> Res {
    let t = tr(&q, &headers);
    let (_, h, ws) = entered(&st, &env, &c, t, &id).await?;
    let bad = |m: String| error(StatusCode::UNPROCESSABLE_ENTITY, &m);
    let dims = parse_dims(&f.dimensions).map_err(bad)?;
    let mut decl: Declaration = toml_decl(&f.count_column).map_err(bad)?;
    decl.dimensions = dims;
    decl.title = if f.title.trim().is_empty() { f.result_id.clone() } else { f.title.trim().to_owned() };
    decl.user_made_label = Some("利用者が独自に作成・加工した資料であり、公的な統計ではない".into());
    let checked =
        ws.request_takeout(&f.result_id, &c.account_id, &decl, crate::now()).map_err(|e| bad(e.to_string()))?;
    let cmd = WsCommand::TakeoutChecked {
        takeout_id: checked.takeout_id.clone(),
        result_id: f.result_id.clone(),
        account_id: c.account_id.clone(),
        passed: checked.status == TakeoutStatus::AwaitingApproval,
    };
    st.reg.execute_workspace(&id, &cmd).await.map_err(ws_err)?;
    record(&st, &c, Action::Write, ObjectKind::Release, format!("ws-takeout/{id}/{}", checked.takeout_id))
        .note(format!("publication check: {:?}", checked.status))
        .done()?;
    let _ = h;
    Ok(see_other(format!("/workspace/{id}/takeouts/{}{}", checked.takeout_id, t.q())))
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

async fn page_takeout(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Extension(env): Extension<WorkspaceEnv>,
    Path((id, tko)): Path<(String, String)>,
    Query(q): Query<LangQuery>,
    headers: HeaderMap,
) -> Res {
    let t = tr(&q, &headers);
    let (_, h, ws) = entered(&st, &env, &c, t, &id).await?;
    let k = ws.takeout(&tko).map_err(|e| error(StatusCode::NOT_FOUND, &e.to_string()))?;
    let report = ws.takeout_report(&tko).map_err(|e| error(StatusCode::NOT_FOUND, &e.to_string()))?;
    let findings = report
        .findings
        .iter()
        .map(|f| format!("{:?}: {}", f.rule, if t.en { &f.message_en } else { &f.message_ja }))
        .collect();
    record(&st, &c, Action::Read, ObjectKind::Release, format!("ws-takeout/{id}/{tko}")).done()?;
    let html = TakeoutPage {
        t,
        wm: watermark(&h.name, &c.account_id),
        id,
        status: takeout_label(t, k.status),
        approved: k.status == TakeoutStatus::Approved,
        k,
        findings,
    }
    .render()
    .map_err(render_err)?;
    Ok(page(html))
}

async fn page_output(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Extension(env): Extension<WorkspaceEnv>,
    Path((id, tko)): Path<(String, String)>,
    Query(q): Query<LangQuery>,
    headers: HeaderMap,
) -> Res {
    let t = tr(&q, &headers);
    let (_, _, ws) = entered(&st, &env, &c, t, &id).await?;
    match ws.approved_output(&tko) {
        Ok((bytes, a)) => {
            // An approved output is no longer medical information; its leaving is recorded, not alerted.
            record(&st, &c, Action::Read, ObjectKind::Release, format!("ws-output/{id}/{tko}"))
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
            record(&st, &c, Action::Download, ObjectKind::Release, format!("ws-output/{id}/{tko}"))
                .outcome(Outcome::Denied)
                .note("not an approved output")
                .done()?;
            Err(error(StatusCode::FORBIDDEN, &e.to_string()))
        }
    }
}

/// An R7 request from a handler.
#[derive(Debug, Deserialize)]
pub struct RequestForm {
    kind: String,
    detail: String,
}

async fn page_request(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Extension(env): Extension<WorkspaceEnv>,
    Path(id): Path<String>,
    Query(q): Query<LangQuery>,
    headers: HeaderMap,
    Form(f): Form<RequestForm>,
) -> Res {
    let t = tr(&q, &headers);
    entered(&st, &env, &c, t, &id).await?;
    let kind = match f.kind.as_str() {
        "own_data" => RequestKind::OwnData,
        "own_tools" => RequestKind::OwnTools,
        _ => return Err(error(StatusCode::UNPROCESSABLE_ENTITY, "kind must be own_data or own_tools")),
    };
    let cmd = WsCommand::Request { account_id: c.account_id.clone(), kind, detail: f.detail };
    let s = st.reg.execute_workspace(&id, &cmd).await.map_err(ws_err)?;
    record(&st, &c, Action::Write, ObjectKind::Ledger, format!("ws-request/{id}/{}", s.requests.len() - 1)).done()?;
    Ok(see_other(format!("/workspace/{id}{}", t.q())))
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
