//! The routes of the main server: login pages (Japanese, no JavaScript) and the JSON API.

// Handlers return `Result<Response, Response>`, axum's usual shape; both sides are responses.
#![allow(clippy::result_large_err)]

use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json};
use chrono::{DateTime, NaiveDate, Utc};
use kiban_audit::{Action, Actor, Event, Object, ObjectKind, Outcome};
use kiban_registry::accounts::{AccessError, AccountRole, AccountStatus, Vetting};
use kiban_registry::incidents::{Contract, LeakItems, RecordError};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{self, totp_aad};
use crate::console::schemas::{
    Acknowledged, AuditVerified, Changed, Leaks, LoggedOut, Me, NewAccountAnswer, SetupToken, TrainingRecorded,
};
use crate::{AppState, Caller, RouteDesc, SESSION_COOKIE, Source, audit_role, error, now};

/// Every route of the main server.
pub fn descriptors() -> Vec<RouteDesc> {
    vec![
        route!(get, "/login", login_page),
        route!(post, "/login", login),
        route!(post, "/setup", setup),
        route!(post, "/password", change_password),
        route!(post, "/logout", logout),
        route!(get, "/api/me", me),
        route!(get, "/api/providers", providers),
        route!(get, "/api/runs", runs),
        route!(post, "/api/audit/verify", audit_verify),
        route!(get, "/api/alerts", alerts),
        route!(post, "/api/alerts/{id}/ack", ack_alert),
        route!(get, "/api/accounts", accounts),
        route!(post, "/api/accounts", add_account),
        route!(post, "/api/accounts/{id}/reset", reset_account),
        route!(post, "/api/accounts/{id}/lock", lock_account),
        route!(post, "/api/accounts/{id}/unlock", unlock_account),
        route!(post, "/api/accounts/{id}/role", set_role),
        route!(post, "/api/accounts/{id}/vetting", vetting),
        route!(post, "/api/accounts/{id}/training", training),
        route!(get, "/api/incidents", incidents),
        route!(post, "/api/incidents", add_incident),
        route!(post, "/api/incidents/{id}/escalate", escalate),
        route!(get, "/api/leaks", leaks),
        route!(post, "/api/leaks", open_leak),
        route!(post, "/api/leaks/{id}", update_leak),
        route!(get, "/api/complaints", complaints),
        route!(post, "/api/complaints", add_complaint),
        route!(get, "/api/contractors", contractors),
        route!(post, "/api/contractors", add_contractor),
        route!(post, "/api/contractors/{id}/audits", contractor_audit),
        route!(post, "/api/deid/text", crate::deid::deid_text),
        route!(post, "/api/pseudonymize", crate::deid::pseudonymize),
    ]
}

fn internal<E: std::fmt::Display>(e: E) -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
}

fn access_err(e: AccessError) -> Response {
    match e {
        AccessError::Registry(kiban_registry::RegistryError::NotFound { .. }) => {
            error(StatusCode::NOT_FOUND, &e.to_string())
        }
        AccessError::Registry(e) => internal(e),
        other => error(StatusCode::UNPROCESSABLE_ENTITY, &other.to_string()),
    }
}

fn record_err(e: RecordError) -> Response {
    match e {
        RecordError::Registry(kiban_registry::RegistryError::NotFound { .. }) => {
            error(StatusCode::NOT_FOUND, &e.to_string())
        }
        RecordError::Registry(e) => internal(e),
        other => error(StatusCode::UNPROCESSABLE_ENTITY, &other.to_string()),
    }
}

use crate::{Res, event_of as ev, ok, record_event as audit};

// ---- login ---------------------------------------------------------------------------------

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The login page: Japanese, a plain form that works without JavaScript.
pub fn login_html(message: Option<&str>) -> String {
    let msg = message.map(|m| format!("<p role=\"alert\" class=\"error\">{}</p>", escape(m))).unwrap_or_default();
    format!(
        "<!DOCTYPE html>\n<html lang=\"ja\"><head><meta charset=\"utf-8\"><title>ログイン — kiban</title>\
         <meta name=\"viewport\" content=\"width=device-width\"></head><body><main>\
         <h1>kiban ログイン</h1>{msg}\
         <form method=\"post\" action=\"/login\">\
         <p><label for=\"login\">ログインID</label><br><input id=\"login\" name=\"login\" autocomplete=\"username\" required></p>\
         <p><label for=\"password\">パスワード</label><br><input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required></p>\
         <p><label for=\"totp\">確認コード（認証アプリの6桁、または回復コード）</label><br>\
         <input id=\"totp\" name=\"totp\" inputmode=\"numeric\" autocomplete=\"one-time-code\" required></p>\
         <p><button type=\"submit\">ログイン</button></p></form>\
         <p>パスワードを忘れた場合は、本人確認のうえ管理者がリセットします（管理者はパスワードを知ることができません）。</p>\
         </main></body></html>\n"
    )
}

async fn login_page() -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Html(login_html(None))).into_response()
}

/// The login form.
#[derive(Deserialize)]
pub struct LoginForm {
    login: String,
    password: String,
    totp: String,
}

impl std::fmt::Debug for LoginForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginForm").field("login", &self.login).finish_non_exhaustive()
    }
}

const LOGIN_FAILED: &str = "ログインできませんでした。ログインID・パスワード・確認コードを確かめてください。";

fn login_refused(msg: &str) -> Response {
    (StatusCode::UNAUTHORIZED, [(header::CACHE_CONTROL, "no-store")], Html(login_html(Some(msg)))).into_response()
}

/// Why a login was refused (for the audit note; never shown in detail to the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Unknown login.
    Unknown,
    /// Locked by hand or pending setup.
    NotActive,
    /// Locked out after failures.
    LockedOut,
    /// Wrong password or second factor.
    BadCredentials,
    /// The password expired.
    Expired,
    /// Vetting or training no longer current.
    NotCleared,
}

/// Checks password and second factor; returns the account id and role, or why not. Counts failures.
pub async fn authenticate(
    st: &AppState,
    login: &str,
    password: &str,
    second: &str,
    source: &str,
    at: DateTime<Utc>,
) -> Result<(String, AccountRole), (Option<String>, Refusal)> {
    let acct = match st.reg.account_by_login(login).await {
        Ok(Some(a)) => a,
        _ => {
            auth::verify_password(password, auth::dummy_hash());
            return Err((None, Refusal::Unknown));
        }
    };
    let id = acct.account_id.clone();
    if acct.locked_out_at(at) {
        return Err((Some(id), Refusal::LockedOut));
    }
    if acct.status != AccountStatus::Active {
        return Err((Some(id), Refusal::NotActive));
    }
    let creds = st.reg.credentials(&id).await.map_err(|_| (Some(id.clone()), Refusal::NotActive))?;
    let pw_ok = creds.password_hash.as_deref().is_some_and(|h| auth::verify_password(password, h));
    let second_ok = pw_ok && check_second_factor(st, &id, creds.totp_sealed.as_deref(), second, at).await;
    if !(pw_ok && second_ok) {
        let _ = st.reg.record_login_failure(&id, source, at).await;
        return Err((Some(id), Refusal::BadCredentials));
    }
    if acct.password_expired_at(at) {
        return Err((Some(id), Refusal::Expired));
    }
    match st.reg.clearance(&id, acct.role, at.date_naive()).await {
        Ok(r) if r.is_empty() => {}
        _ => return Err((Some(id), Refusal::NotCleared)),
    }
    let _ = st.reg.record_login_success(&id, at).await;
    Ok((id, acct.role))
}

async fn check_second_factor(st: &AppState, id: &str, sealed: Option<&str>, code: &str, at: DateTime<Utc>) -> bool {
    let code = code.trim();
    if code.len() == 6 {
        let Some(secret) = sealed.and_then(|s| hex::decode(s).ok()).and_then(|s| st.sealer.open(&totp_aad(id), &s))
        else {
            return false;
        };
        let secret = zeroize::Zeroizing::new(secret);
        match auth::totp_check(&secret, code, at.timestamp().max(0) as u64) {
            Some(step) => st.reg.accept_totp_step(id, step as i64).await.unwrap_or(false),
            None => false,
        }
    } else if code.len() == 17 {
        st.reg.use_recovery_code(id, &auth::sha256_hex(code), at).await.unwrap_or(false)
    } else {
        false
    }
}

async fn login(
    State(st): State<AppState>,
    Extension(Source(source)): Extension<Source>,
    Form(f): Form<LoginForm>,
) -> Res {
    let at = now();
    match authenticate(&st, &f.login, &f.password, &f.totp, &source, at).await {
        Ok((id, role)) => {
            let token = auth::new_token();
            st.reg.create_session(&auth::sha256_hex(&token), &id, role, &source, at).await.map_err(internal)?;
            audit(
                &st,
                Event::new(
                    Actor::new(&id, audit_role(role)),
                    &source,
                    Action::Login,
                    Object::new(ObjectKind::Session, &id),
                ),
            )?;
            let secure = if st.cfg.secure_cookie { "; Secure" } else { "" };
            let cookie = format!("{SESSION_COOKIE}={}; HttpOnly; SameSite=Strict; Path=/{secure}", token.as_str());
            let mut h = HeaderMap::new();
            h.insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).map_err(internal)?);
            h.insert(header::LOCATION, HeaderValue::from_static("/console"));
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            Ok((StatusCode::SEE_OTHER, h).into_response())
        }
        Err((id, why)) => {
            let actor = match &id {
                Some(id) => match st.reg.account(id).await {
                    Ok(a) => Actor::new(id, audit_role(a.role)),
                    Err(_) => Actor::new(id, kiban_audit::Role::UserType1),
                },
                None => Actor::new("unknown", kiban_audit::Role::UserType1),
            };
            audit(
                &st,
                Event::new(
                    actor,
                    &source,
                    Action::Login,
                    Object::new(ObjectKind::Session, id.as_deref().unwrap_or("-")),
                )
                .outcome(Outcome::Failure)
                .note(format!("{why:?}")),
            )?;
            let msg = match why {
                Refusal::Expired => "パスワードの有効期限が切れています。パスワードを変更してください。",
                Refusal::LockedOut => "ログインに続けて失敗したため、しばらくログインできません。",
                _ => LOGIN_FAILED,
            };
            Err(login_refused(msg))
        }
    }
}

/// The setup form: the one-time token from an administrator and a new password.
#[derive(Deserialize)]
pub struct SetupForm {
    login: String,
    token: String,
    password: String,
}

async fn setup(
    State(st): State<AppState>,
    Extension(Source(source)): Extension<Source>,
    Form(f): Form<SetupForm>,
) -> Res {
    let at = now();
    match auth::complete_setup(&st.reg, st.sealer.as_ref(), &f.login, &f.token, &f.password, at).await {
        Ok(r) => {
            let id =
                st.reg.account_by_login(&f.login).await.map_err(internal)?.map(|a| a.account_id).unwrap_or_default();
            audit(
                &st,
                Event::new(
                    Actor::new(&id, kiban_audit::Role::UserType1),
                    &source,
                    Action::Write,
                    Object::new(ObjectKind::Session, &id),
                )
                .note("password set and TOTP enrolled with a setup token"),
            )?;
            let codes: Vec<&str> = r.recovery_codes.iter().map(|c| c.as_str()).collect();
            let body = json!({"totp_secret": r.totp_base32.as_str(), "otpauth": r.otpauth_uri.as_str(), "recovery_codes": codes});
            Ok(([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response())
        }
        Err(e) => Err(error(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string())),
    }
}

/// The password change form (also for an expired password).
#[derive(Deserialize)]
pub struct PasswordForm {
    login: String,
    password: String,
    totp: String,
    new_password: String,
}

async fn change_password(
    State(st): State<AppState>,
    Extension(Source(source)): Extension<Source>,
    Form(f): Form<PasswordForm>,
) -> Res {
    let at = now();
    let long = auth::check_password_rules(&f.new_password)
        .map_err(|e| error(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string()))?;
    let result = authenticate(&st, &f.login, &f.password, &f.totp, &source, at).await;
    let (id, role) = match result {
        Ok(x) => x,
        Err((Some(id), Refusal::Expired)) => {
            let role = st.reg.account(&id).await.map_err(internal)?.role;
            (id, role)
        }
        Err(_) => return Err(login_refused(LOGIN_FAILED)),
    };
    st.reg.change_password(&id, &auth::hash_password(&f.new_password), long, at).await.map_err(internal)?;
    audit(
        &st,
        Event::new(Actor::new(&id, audit_role(role)), &source, Action::Write, Object::new(ObjectKind::Session, &id))
            .note("password changed by the holder"),
    )?;
    ok(Changed { changed: true })
}

async fn logout(State(st): State<AppState>, Extension(c): Extension<Caller>, headers: HeaderMap) -> Res {
    let at = now();
    let token = headers.get(header::COOKIE).and_then(|v| v.to_str().ok()).and_then(crate::session_token);
    let mut secs = 0;
    if let Some(t) = token
        && let Some(s) = st.reg.end_session(&auth::sha256_hex(t), "logout", at).await.map_err(internal)?
    {
        secs = DateTime::parse_from_rfc3339(&s.created_at)
            .map(|c| (at - c.with_timezone(&Utc)).num_seconds())
            .unwrap_or(0);
    }
    audit(&st, ev(&c, Action::Logout, ObjectKind::Session, &c.account_id).volume(secs.max(0) as u64))?;
    let secure = if st.cfg.secure_cookie { "; Secure" } else { "" };
    let cookie = format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{secure}");
    Ok(([(header::SET_COOKIE, cookie)], Json(LoggedOut { logged_out: true })).into_response())
}

async fn me(State(st): State<AppState>, Extension(c): Extension<Caller>) -> Res {
    let a = st.reg.account(&c.account_id).await.map_err(internal)?;
    ok(Me { account_id: a.account_id, login: a.login, display_name: a.display_name, role: c.role })
}

// ---- records ------------------------------------------------------------------------------

async fn providers(State(st): State<AppState>, Extension(c): Extension<Caller>) -> Res {
    let v = st.reg.providers().await.map_err(internal)?;
    audit(&st, ev(&c, Action::Read, ObjectKind::Ledger, "providers").volume(v.len() as u64))?;
    ok(v)
}

async fn runs(State(st): State<AppState>, Extension(c): Extension<Caller>) -> Res {
    let v = st.reg.runs(100).await.map_err(internal)?;
    audit(&st, ev(&c, Action::Read, ObjectKind::Ledger, "pipeline_runs").volume(v.len() as u64))?;
    ok(v)
}

async fn audit_verify(State(st): State<AppState>, Extension(c): Extension<Caller>) -> Res {
    let st2 = st.clone();
    let report = tokio::task::spawn_blocking(move || st2.audit.verify(&c.actor(), &c.source))
        .await
        .map_err(internal)?
        .map_err(internal)?;
    ok(AuditVerified {
        intact: report.is_intact(),
        entries: report.entries,
        problems: report.problems.len(),
        summary: report.summary(),
    })
}

async fn alerts(State(st): State<AppState>, Extension(c): Extension<Caller>) -> Res {
    let acks = st.reg.alert_acks().await.map_err(internal)?;
    let list: Vec<Value> = st
        .audit
        .alerts()
        .into_iter()
        .map(|a| {
            let ack = acks.iter().find(|(id, _, _)| *id == a.id);
            let mut v = serde_json::to_value(&a).unwrap_or(Value::Null);
            v["acknowledged_by"] = json!(ack.map(|x| &x.1));
            v["acknowledged_at"] = json!(ack.map(|x| &x.2));
            v
        })
        .collect();
    audit(&st, ev(&c, Action::Read, ObjectKind::Audit, "alerts").volume(list.len() as u64))?;
    ok(list)
}

/// A note.
#[derive(schemars::JsonSchema, Deserialize, Default)]
pub struct NoteBody {
    #[serde(default)]
    note: String,
}

async fn ack_alert(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<u64>,
    body: Option<Json<NoteBody>>,
) -> Res {
    if !st.audit.alerts().iter().any(|a| a.id == id) {
        return Err(error(StatusCode::NOT_FOUND, "no such alert"));
    }
    let note = body.map(|b| b.0.note).unwrap_or_default();
    let done = st.reg.ack_alert(id, &c.account_id, &note, now()).await.map_err(internal)?;
    audit(&st, ev(&c, Action::Write, ObjectKind::Audit, format!("alert {id}")).note("acknowledged"))?;
    ok(Acknowledged { acknowledged: done })
}

// ---- accounts -----------------------------------------------------------------------------

async fn accounts(State(st): State<AppState>, Extension(c): Extension<Caller>) -> Res {
    let v = st.reg.accounts().await.map_err(internal)?;
    audit(&st, ev(&c, Action::Read, ObjectKind::Session, "accounts").volume(v.len() as u64))?;
    ok(v)
}

/// A new account.
#[derive(schemars::JsonSchema, Deserialize)]
pub struct NewAccount {
    login: String,
    display_name: String,
    role: AccountRole,
}

async fn add_account(State(st): State<AppState>, Extension(c): Extension<Caller>, Json(b): Json<NewAccount>) -> Res {
    let at = now();
    let a = st.reg.create_account(&b.login, &b.display_name, b.role, &c.account_id, at).await.map_err(access_err)?;
    audit(
        &st,
        ev(&c, Action::Write, ObjectKind::Session, &a.account_id).note(format!("account created, role {}", b.role)),
    )?;
    // The setup token is issued once the person is cleared; until then the account cannot be used.
    let token = match auth::issue_setup(&st.reg, &a.account_id, false, "", &c.account_id, at).await {
        Ok(t) => Some(t),
        Err(AccessError::NotCleared { .. }) => None,
        Err(e) => return Err(access_err(e)),
    };
    ok(NewAccountAnswer { account: a, setup_token: token.as_deref().map(|t| t.as_str().to_owned()) })
}

/// A reset: how the person's identity was verified.
#[derive(schemars::JsonSchema, Deserialize)]
pub struct ResetBody {
    identity_verified_by: String,
}

async fn reset_account(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Json(b): Json<ResetBody>,
) -> Res {
    let token = auth::issue_setup(&st.reg, &id, true, &b.identity_verified_by, &c.account_id, now())
        .await
        .map_err(access_err)?;
    st.reg.end_sessions_of(&id, "reset", now()).await.map_err(internal)?;
    audit(&st, ev(&c, Action::Write, ObjectKind::Session, &id).note("reset: setup token issued"))?;
    ok(SetupToken { setup_token: token.as_str().to_owned() })
}

async fn lock_account(st: State<AppState>, c: Extension<Caller>, id: Path<String>, b: Option<Json<NoteBody>>) -> Res {
    set_lock(st, c, id, b, true).await
}

async fn unlock_account(st: State<AppState>, c: Extension<Caller>, id: Path<String>, b: Option<Json<NoteBody>>) -> Res {
    set_lock(st, c, id, b, false).await
}

async fn set_lock(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    b: Option<Json<NoteBody>>,
    locked: bool,
) -> Res {
    let note = b.map(|b| b.0.note).unwrap_or_default();
    let a = st.reg.set_locked(&id, locked, &c.account_id, &note, now()).await.map_err(access_err)?;
    if locked {
        st.reg.end_sessions_of(&id, "locked", now()).await.map_err(internal)?;
    }
    audit(&st, ev(&c, Action::Write, ObjectKind::Session, &id).note(if locked { "locked" } else { "unlocked" }))?;
    ok(a)
}

/// A role change.
#[derive(schemars::JsonSchema, Deserialize)]
pub struct RoleBody {
    role: AccountRole,
}

async fn set_role(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Json(b): Json<RoleBody>,
) -> Res {
    let a = st.reg.set_role(&id, b.role, &c.account_id, now()).await.map_err(access_err)?;
    audit(&st, ev(&c, Action::Write, ObjectKind::Session, &id).note(format!("role set to {}", b.role)))?;
    ok(a)
}

async fn vetting(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Json(v): Json<Vetting>,
) -> Res {
    let vid = st.reg.record_vetting(&id, &v, &c.account_id, now()).await.map_err(|e| access_err(e.into()))?;
    audit(&st, ev(&c, Action::Write, ObjectKind::Ledger, &vid).note("disqualification check recorded"))?;
    ok(json!({"vetting_id": vid, "disqualifications": v.disqualifications(now().date_naive())}))
}

/// A training record.
#[derive(schemars::JsonSchema, Deserialize)]
pub struct TrainingBody {
    course: String,
    completed_on: NaiveDate,
    expires_on: NaiveDate,
}

async fn training(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Json(b): Json<TrainingBody>,
) -> Res {
    let tid = st
        .reg
        .record_training(&id, &b.course, b.completed_on, b.expires_on, &c.account_id, now())
        .await
        .map_err(|e| access_err(e.into()))?;
    audit(&st, ev(&c, Action::Write, ObjectKind::Ledger, &tid).note("training recorded"))?;
    ok(TrainingRecorded { training_id: tid })
}

// ---- incidents, complaints, contractors ---------------------------------------------------

async fn incidents(State(st): State<AppState>, Extension(c): Extension<Caller>) -> Res {
    let v = st.reg.incidents().await.map_err(internal)?;
    audit(&st, ev(&c, Action::Read, ObjectKind::Ledger, "incidents").volume(v.len() as u64))?;
    ok(v)
}

/// A new incident.
#[derive(schemars::JsonSchema, Deserialize)]
pub struct IncidentBody {
    risk_item: String,
    description: String,
    #[serde(default = "medium")]
    severity: String,
    detected_at: Option<DateTime<Utc>>,
}

fn medium() -> String {
    "medium".to_owned()
}

async fn add_incident(State(st): State<AppState>, Extension(c): Extension<Caller>, Json(b): Json<IncidentBody>) -> Res {
    let at = now();
    let i = st
        .reg
        .record_incident(b.detected_at.unwrap_or(at), &c.account_id, &b.risk_item, &b.description, &b.severity, at)
        .await
        .map_err(record_err)?;
    audit(&st, ev(&c, Action::Write, ObjectKind::Ledger, &i.incident_id).note("incident recorded"))?;
    ok(i)
}

/// An escalation.
#[derive(schemars::JsonSchema, Deserialize)]
pub struct EscalateBody {
    to: String,
    #[serde(default)]
    note: String,
}

async fn escalate(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Json(b): Json<EscalateBody>,
) -> Res {
    let i = st.reg.escalate_incident(&id, &b.to, &c.account_id, &b.note, now()).await.map_err(record_err)?;
    audit(&st, ev(&c, Action::Write, ObjectKind::Ledger, &id).note(format!("escalated to {}", b.to)))?;
    ok(i)
}

async fn leaks(State(st): State<AppState>, Extension(c): Extension<Caller>) -> Res {
    let all = st.reg.leak_reports().await.map_err(internal)?;
    let overdue: Vec<String> =
        st.reg.overdue_leak_reports(now()).await.map_err(internal)?.into_iter().map(|r| r.report_id).collect();
    audit(&st, ev(&c, Action::Read, ObjectKind::Ledger, "leak_reports").volume(all.len() as u64))?;
    ok(Leaks { reports: all, overdue })
}

/// A first leak report.
#[derive(schemars::JsonSchema, Deserialize)]
pub struct LeakBody {
    detected_at: DateTime<Utc>,
    #[serde(default)]
    possibly_malicious: bool,
    #[serde(flatten)]
    items: LeakItems,
}

async fn open_leak(State(st): State<AppState>, Extension(c): Extension<Caller>, Json(b): Json<LeakBody>) -> Res {
    let r = st
        .reg
        .open_leak_report(b.detected_at, b.possibly_malicious, &b.items, &c.account_id, now())
        .await
        .map_err(record_err)?;
    audit(&st, ev(&c, Action::Write, ObjectKind::Ledger, &r.report_id).note("leak first report"))?;
    ok(r)
}

/// A fuller or confirmed leak report.
#[derive(schemars::JsonSchema, Deserialize)]
pub struct LeakUpdate {
    #[serde(default)]
    final_report: bool,
    #[serde(flatten)]
    items: LeakItems,
}

async fn update_leak(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Json(b): Json<LeakUpdate>,
) -> Res {
    let r = st.reg.update_leak_report(&id, &b.items, b.final_report, &c.account_id, now()).await.map_err(record_err)?;
    audit(&st, ev(&c, Action::Write, ObjectKind::Ledger, &r.report_id).note("leak report updated"))?;
    ok(r)
}

async fn complaints(State(st): State<AppState>, Extension(c): Extension<Caller>) -> Res {
    let v = st.reg.complaints().await.map_err(internal)?;
    audit(&st, ev(&c, Action::Read, ObjectKind::Ledger, "complaints").volume(v.len() as u64))?;
    ok(v)
}

/// A complaint record.
#[derive(schemars::JsonSchema, Deserialize)]
pub struct ComplaintBody {
    received_on: NaiveDate,
    content: String,
    #[serde(default)]
    cause: String,
    #[serde(default)]
    improvement: String,
    supersedes: Option<String>,
}

async fn add_complaint(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Json(b): Json<ComplaintBody>,
) -> Res {
    let r = st
        .reg
        .record_complaint(
            b.received_on,
            &b.content,
            &b.cause,
            &b.improvement,
            b.supersedes.as_deref(),
            &c.account_id,
            now(),
        )
        .await
        .map_err(record_err)?;
    audit(&st, ev(&c, Action::Write, ObjectKind::Ledger, &r.complaint_id).note("complaint recorded"))?;
    ok(r)
}

async fn contractors(State(st): State<AppState>, Extension(c): Extension<Caller>) -> Res {
    let v = st.reg.contractors().await.map_err(internal)?;
    audit(&st, ev(&c, Action::Read, ObjectKind::Ledger, "contractors").volume(v.len() as u64))?;
    ok(v)
}

async fn add_contractor(State(st): State<AppState>, Extension(c): Extension<Caller>, Json(b): Json<Contract>) -> Res {
    let r = st.reg.record_contractor(&b, &c.account_id, now()).await.map_err(record_err)?;
    audit(&st, ev(&c, Action::Write, ObjectKind::Ledger, &r.contractor_id).note("contractor recorded"))?;
    ok(r)
}

/// A contractor audit.
#[derive(schemars::JsonSchema, Deserialize)]
pub struct AuditBody {
    audited_on: NaiveDate,
    findings: String,
    passed: bool,
}

async fn contractor_audit(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Json(b): Json<AuditBody>,
) -> Res {
    let r = st
        .reg
        .record_contractor_audit(&id, b.audited_on, &c.account_id, &b.findings, b.passed, now())
        .await
        .map_err(record_err)?;
    audit(&st, ev(&c, Action::Write, ObjectKind::Ledger, &id).note("contractor audited"))?;
    ok(r)
}
