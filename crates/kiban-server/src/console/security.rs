//! Console pages of the security issue: monitoring alerts, audit verification, incidents,
//! complaints, accounts, and logout.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use chrono::Utc;
use kiban_audit::{Action, ObjectKind};
use kiban_registry::accounts::{AccessError, AccountRole};
use serde::Deserialize;

use super::{Errors, Page, internal, render, render_status, saved, see_other};
use crate::{AppState, Res, auth, event_of, now, record_event};

/// Just the CSRF token (forms with a single button).
#[derive(Debug, Default, Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

// ---- alerts ----------------------------------------------------------------------------------

/// One alert row.
pub struct AlertRow {
    /// Id.
    pub id: u64,
    /// Rule and requirement.
    pub rule: String,
    /// Severity.
    pub severity: String,
    /// Raised (shown).
    pub raised: String,
    /// Escalate by (shown).
    pub by: String,
    /// Message.
    pub message: String,
    /// Acknowledged by whom and when.
    pub acked: Option<String>,
}

#[derive(Template)]
#[template(path = "console/alerts.html")]
struct AlertsPage<'a> {
    p: &'a Page,
    rows: Vec<AlertRow>,
    may_ack: bool,
    saved: bool,
}

pub(super) async fn alerts(State(st): State<AppState>, p: Page, uri: axum::http::Uri) -> Res {
    let acks = st.reg.alert_acks().await.map_err(internal)?;
    let rows: Vec<AlertRow> = st
        .audit
        .alerts()
        .into_iter()
        .rev()
        .map(|a| AlertRow {
            acked: acks.iter().find(|x| x.0 == a.id).map(|x| format!("{} {}", x.1, p.time(&x.2))),
            id: a.id,
            rule: format!("{} ({})", a.rule, a.requirement),
            severity: format!("{:?}", a.severity),
            raised: p.utc(a.raised_at),
            by: p.utc(a.escalate_by),
            message: a.message,
        })
        .collect();
    record_event(&st, event_of(&p.caller, Action::Read, ObjectKind::Audit, "alerts").volume(rows.len() as u64))?;
    let may_ack = st.authz.allows("POST", "/console/alerts/{id}/ack", p.caller.role);
    Ok(render(&p, &AlertsPage { p: &p, rows, may_ack, saved: saved(uri.query()) }))
}

pub(super) async fn ack(State(st): State<AppState>, p: Page, Path(id): Path<u64>, Form(f): Form<CsrfOnly>) -> Res {
    p.check_csrf(&f.csrf)?;
    if !st.audit.alerts().iter().any(|a| a.id == id) {
        return Err(crate::error(StatusCode::NOT_FOUND, "no such alert"));
    }
    st.reg.ack_alert(id, &p.caller.account_id, "console", now()).await.map_err(internal)?;
    record_event(
        &st,
        event_of(&p.caller, Action::Write, ObjectKind::Audit, format!("alert {id}")).note("acknowledged"),
    )?;
    Ok(see_other("/console/alerts?saved=1"))
}

// ---- audit verification -------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "console/audit.html")]
struct AuditPage<'a> {
    p: &'a Page,
    result: Option<(bool, u64, String)>,
}

pub(super) async fn audit_page(p: Page) -> Res {
    Ok(render(&p, &AuditPage { p: &p, result: None }))
}

pub(super) async fn audit_verify(State(st): State<AppState>, p: Page, Form(f): Form<CsrfOnly>) -> Res {
    p.check_csrf(&f.csrf)?;
    let (st2, actor, source) = (st.clone(), p.caller.actor(), p.caller.source.clone());
    let report = tokio::task::spawn_blocking(move || st2.audit.verify(&actor, &source))
        .await
        .map_err(internal)?
        .map_err(internal)?;
    let result = Some((report.is_intact(), report.entries, report.summary()));
    Ok(render(&p, &AuditPage { p: &p, result }))
}

// ---- compliance -----------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "console/compliance.html")]
struct CompliancePage<'a> {
    p: &'a Page,
    made: Option<String>,
}

fn matrix_path(st: &AppState) -> std::path::PathBuf {
    st.data_dir.join("compliance").join("matrix.html")
}

/// The traceability matrix as last published (B2): when it was made, and a link to it.
pub(super) async fn compliance(State(st): State<AppState>, p: Page) -> Res {
    let made = std::fs::metadata(matrix_path(&st)).and_then(|m| m.modified()).ok().map(|t| {
        chrono::DateTime::<chrono::Utc>::from(t).with_timezone(&chrono_tz_jst()).format("%Y-%m-%d %H:%M").to_string()
    });
    Ok(render(&p, &CompliancePage { p: &p, made }))
}

/// The published matrix page itself (self-contained HTML, no scripts), never cached.
pub(super) async fn compliance_matrix(State(st): State<AppState>, p: Page) -> Res {
    let _ = &p;
    match std::fs::read_to_string(matrix_path(&st)) {
        Ok(html) => Ok((
            [
                (axum::http::header::CACHE_CONTROL, "no-store"),
                (axum::http::header::CONTENT_SECURITY_POLICY, "default-src 'none'; style-src 'unsafe-inline'"),
            ],
            axum::response::Html(html),
        )
            .into_response()),
        Err(_) => Err(crate::error(
            axum::http::StatusCode::NOT_FOUND,
            "the matrix is not published yet (kiban compliance matrix --publish)",
        )),
    }
}

fn chrono_tz_jst() -> chrono::FixedOffset {
    chrono::FixedOffset::east_opt(9 * 3600).expect("valid offset")
}

// ---- incidents ------------------------------------------------------------------------------------

/// The incident form.
#[derive(Debug, Default, Deserialize)]
pub struct IncidentForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    risk_item: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    severity: String,
}

/// Severities with label keys.
pub const SEVERITIES: &[(&str, &str)] = &[("low", "sev.low"), ("medium", "sev.medium"), ("high", "sev.high")];

/// One incident row.
pub struct IncidentRow {
    /// Id.
    pub id: String,
    /// Detected (shown).
    pub detected: String,
    /// Risk item.
    pub risk: String,
    /// Description.
    pub description: String,
    /// Severity (label).
    pub severity: String,
}

#[derive(Template)]
#[template(path = "console/incidents.html")]
struct IncidentsPage<'a> {
    p: &'a Page,
    rows: Vec<IncidentRow>,
    f: IncidentForm,
    errs: Errors,
    saved: bool,
    may_add: bool,
}

async fn incidents_page(st: &AppState, p: &Page, f: IncidentForm, errs: Errors, done: bool, status: StatusCode) -> Res {
    let v = st.reg.incidents().await.map_err(internal)?;
    record_event(st, event_of(&p.caller, Action::Read, ObjectKind::Ledger, "incidents").volume(v.len() as u64))?;
    let rows = v
        .into_iter()
        .rev()
        .map(|i| IncidentRow {
            detected: p.time(&i.detected_at),
            severity: SEVERITIES
                .iter()
                .find(|(k, _)| *k == i.severity)
                .map(|(_, key)| p.tr.s(key).to_owned())
                .unwrap_or(i.severity),
            id: i.incident_id,
            risk: i.risk_item,
            description: i.description,
        })
        .collect();
    let may_add = st.authz.allows("POST", "/console/incidents", p.caller.role);
    Ok(render_status(p, status, &IncidentsPage { p, rows, f, errs, saved: done, may_add }))
}

pub(super) async fn incidents(State(st): State<AppState>, p: Page, uri: axum::http::Uri) -> Res {
    let f = IncidentForm { severity: "medium".into(), ..Default::default() };
    incidents_page(&st, &p, f, Errors::default(), saved(uri.query()), StatusCode::OK).await
}

pub(super) async fn add_incident(State(st): State<AppState>, p: Page, Form(f): Form<IncidentForm>) -> Res {
    p.check_csrf(&f.csrf)?;
    let tr = p.tr;
    let mut errs = Errors::default();
    let risk = errs.required(tr, "risk_item", &f.risk_item);
    let description = errs.required(tr, "description", &f.description);
    let severity = errs.choice(tr, "severity", &f.severity, &["low", "medium", "high"]);
    if errs.is_empty() {
        let at = now();
        match st.reg.record_incident(at, &p.caller.account_id, &risk, &description, &severity, at).await {
            Ok(i) => {
                record_event(
                    &st,
                    event_of(&p.caller, Action::Write, ObjectKind::Ledger, &i.incident_id).note("incident recorded"),
                )?;
                return Ok(see_other("/console/incidents?saved=1"));
            }
            Err(kiban_registry::incidents::RecordError::Registry(e)) => return Err(internal(e)),
            Err(e) => errs.add("_form", e.to_string()),
        }
    }
    incidents_page(&st, &p, f, errs, false, StatusCode::UNPROCESSABLE_ENTITY).await
}

// ---- complaints ----------------------------------------------------------------------------------

/// The complaint form.
#[derive(Debug, Default, Deserialize)]
pub struct ComplaintForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    received_on: String,
    #[serde(default)]
    content: String,
    #[serde(default)]
    cause: String,
    #[serde(default)]
    improvement: String,
}

/// One complaint row.
pub struct ComplaintRow {
    /// Id.
    pub id: String,
    /// Received (shown).
    pub received: String,
    /// Content.
    pub content: String,
    /// Cause.
    pub cause: String,
    /// Improvement.
    pub improvement: String,
    /// Kept until (shown).
    pub retention: String,
}

#[derive(Template)]
#[template(path = "console/complaints.html")]
struct ComplaintsPage<'a> {
    p: &'a Page,
    rows: Vec<ComplaintRow>,
    f: ComplaintForm,
    errs: Errors,
    saved: bool,
    may_add: bool,
}

async fn complaints_page(
    st: &AppState,
    p: &Page,
    f: ComplaintForm,
    errs: Errors,
    done: bool,
    status: StatusCode,
) -> Res {
    let v = st.reg.complaints().await.map_err(internal)?;
    record_event(st, event_of(&p.caller, Action::Read, ObjectKind::Ledger, "complaints").volume(v.len() as u64))?;
    let rows = v
        .into_iter()
        .rev()
        .map(|c| ComplaintRow {
            received: p.time(&c.received_on),
            retention: p.time(&c.retention_end),
            id: c.complaint_id,
            content: c.content,
            cause: c.cause,
            improvement: c.improvement,
        })
        .collect();
    let may_add = st.authz.allows("POST", "/console/complaints", p.caller.role);
    Ok(render_status(p, status, &ComplaintsPage { p, rows, f, errs, saved: done, may_add }))
}

pub(super) async fn complaints(State(st): State<AppState>, p: Page, uri: axum::http::Uri) -> Res {
    let f = ComplaintForm { received_on: kiban_registry::records::today_jst().to_string(), ..Default::default() };
    complaints_page(&st, &p, f, Errors::default(), saved(uri.query()), StatusCode::OK).await
}

pub(super) async fn add_complaint(State(st): State<AppState>, p: Page, Form(f): Form<ComplaintForm>) -> Res {
    p.check_csrf(&f.csrf)?;
    let tr = p.tr;
    let mut errs = Errors::default();
    let on = errs.date(tr, "received_on", &f.received_on);
    let content = errs.required(tr, "content", &f.content);
    if let (true, Some(on)) = (errs.is_empty(), on) {
        match st
            .reg
            .record_complaint(on, &content, f.cause.trim(), f.improvement.trim(), None, &p.caller.account_id, now())
            .await
        {
            Ok(r) => {
                record_event(
                    &st,
                    event_of(&p.caller, Action::Write, ObjectKind::Ledger, &r.complaint_id).note("complaint recorded"),
                )?;
                return Ok(see_other("/console/complaints?saved=1"));
            }
            Err(kiban_registry::incidents::RecordError::Registry(e)) => return Err(internal(e)),
            Err(e) => errs.add("_form", e.to_string()),
        }
    }
    complaints_page(&st, &p, f, errs, false, StatusCode::UNPROCESSABLE_ENTITY).await
}

// ---- accounts -------------------------------------------------------------------------------------

/// The new-account form.
#[derive(Debug, Default, Deserialize)]
pub struct AccountForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    login: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    role: String,
}

/// One account row.
pub struct AccountRow {
    /// Account id.
    pub id: String,
    /// Login.
    pub login: String,
    /// Name.
    pub name: String,
    /// Role (label).
    pub role: String,
    /// Status.
    pub status: String,
    /// TOTP enrolled.
    pub totp: bool,
    /// Last login (shown).
    pub last_login: String,
}

#[derive(Template)]
#[template(path = "console/accounts.html")]
struct AccountsPage<'a> {
    p: &'a Page,
    rows: Vec<AccountRow>,
    roles: Vec<(&'static str, &'static str)>,
    f: AccountForm,
    errs: Errors,
    may_add: bool,
    created: Option<(String, Option<String>)>,
}

async fn accounts_page(
    st: &AppState,
    p: &Page,
    f: AccountForm,
    errs: Errors,
    created: Option<(String, Option<String>)>,
    status: StatusCode,
) -> Res {
    let v = st.reg.accounts().await.map_err(internal)?;
    record_event(st, event_of(&p.caller, Action::Read, ObjectKind::Session, "accounts").volume(v.len() as u64))?;
    let rows = v
        .into_iter()
        .map(|a| AccountRow {
            role: p.tr.s(super::role_key(a.role)).to_owned(),
            status: format!("{:?}", a.status),
            totp: a.totp_enrolled,
            last_login: a.last_login_at.as_deref().map(|t| p.time(t)).unwrap_or_else(|| "—".into()),
            id: a.account_id,
            login: a.login,
            name: a.display_name,
        })
        .collect();
    let roles = AccountRole::ALL.iter().map(|r| (r.as_str(), super::role_key(*r))).collect();
    let may_add = st.authz.allows("POST", "/console/accounts", p.caller.role);
    Ok(render_status(p, status, &AccountsPage { p, rows, roles, f, errs, may_add, created }))
}

pub(super) async fn accounts(State(st): State<AppState>, p: Page) -> Res {
    let f = AccountForm { role: "handler".into(), ..Default::default() };
    accounts_page(&st, &p, f, Errors::default(), None, StatusCode::OK).await
}

pub(super) async fn add_account(State(st): State<AppState>, p: Page, Form(f): Form<AccountForm>) -> Res {
    p.check_csrf(&f.csrf)?;
    let tr = p.tr;
    let mut errs = Errors::default();
    let login = errs.required(tr, "login", &f.login);
    let name = errs.required(tr, "display_name", &f.display_name);
    let role = AccountRole::parse(&f.role);
    if role.is_none() {
        errs.add("role", tr.s("err.choice"));
    }
    if let (true, Some(role)) = (errs.is_empty(), role) {
        let at = now();
        match st.reg.create_account(&login, &name, role, &p.caller.account_id, at).await {
            Ok(a) => {
                record_event(
                    &st,
                    event_of(&p.caller, Action::Write, ObjectKind::Session, &a.account_id)
                        .note(format!("account created, role {role}")),
                )?;
                let token = match auth::issue_setup(&st.reg, &a.account_id, false, "", &p.caller.account_id, at).await {
                    Ok(t) => Some(t.as_str().to_owned()),
                    Err(AccessError::NotCleared { .. }) => None,
                    Err(e) => return Err(internal(e)),
                };
                let f = AccountForm { role: "handler".into(), ..Default::default() };
                // The setup token is shown once, on this response only (no-store), never stored in clear.
                return accounts_page(&st, &p, f, Errors::default(), Some((a.login, token)), StatusCode::OK).await;
            }
            Err(AccessError::Registry(e)) => return Err(internal(e)),
            Err(e) => errs.add("login", e.to_string()),
        }
    }
    accounts_page(&st, &p, f, errs, None, StatusCode::UNPROCESSABLE_ENTITY).await
}

// ---- logout -------------------------------------------------------------------------------------

pub(super) async fn logout(State(st): State<AppState>, p: Page, headers: HeaderMap, Form(f): Form<CsrfOnly>) -> Res {
    p.check_csrf(&f.csrf)?;
    let token = headers.get(header::COOKIE).and_then(|v| v.to_str().ok()).and_then(crate::session_token);
    if let Some(t) = token {
        st.reg.end_session(&auth::sha256_hex(t), "logout", Utc::now()).await.map_err(internal)?;
    }
    record_event(&st, event_of(&p.caller, Action::Logout, ObjectKind::Session, &p.caller.account_id))?;
    let secure = if st.cfg.secure_cookie { "; Secure" } else { "" };
    let mut r = see_other("/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{secure}",
        crate::SESSION_COOKIE
    )) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(r)
}
