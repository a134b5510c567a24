//! The web console: server-rendered HTML for every role (askama templates under `templates/`),
//! Japanese first with an English switch (`?lang=en`, remembered in the `kiban_lang` cookie), no
//! JavaScript. Pages reuse the registry and audit functions the JSON API calls; roles are enforced
//! by the same authorization layer (`authz.toml`), and the menu shows only what the table allows.
//!
//! Forms carry a CSRF token derived from the session token (the session cookie is also
//! `SameSite=Strict`); every page that shows records is sent with `Cache-Control: no-store`.

// Handlers return `Result<Response, Response>`, axum's usual shape; both sides are responses.
#![allow(clippy::result_large_err)]

pub mod demo;
pub mod i18n;
pub mod openapi;
mod pages;
mod registers;
mod review;
pub mod schemas;
mod security;

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use kiban_registry::accounts::AccountRole;

use crate::{AppState, Caller, RouteDesc};
pub use i18n::{Lang, Tr};

/// The language cookie's name.
pub const LANG_COOKIE: &str = "kiban_lang";

/// Every console route.
pub fn descriptors() -> Vec<RouteDesc> {
    vec![
        route!(get, "/console", home),
        route!(get, "/console/providers", pages::providers),
        route!(post, "/console/providers", pages::add_provider),
        route!(get, "/console/optouts", pages::optouts),
        route!(post, "/console/optouts", pages::add_optout),
        route!(post, "/console/notices", pages::add_notice),
        route!(get, "/console/runs", pages::runs),
        route!(get, "/console/runs/{id}", registers::run),
        route!(get, "/console/batches", registers::batches),
        route!(get, "/console/batches/{batch}", registers::batch),
        route!(post, "/console/batches/{batch}/replay", registers::replay),
        route!(get, "/console/identity", pages::identity),
        route!(post, "/console/identity/undo", pages::identity_undo),
        route!(post, "/console/identity/{item}", pages::identity_decide),
        route!(get, "/console/supervision", registers::supervision),
        route!(get, "/console/leaks", registers::leaks),
        route!(post, "/console/leaks", registers::add_leak),
        route!(get, "/console/contractors", registers::contractors),
        route!(post, "/console/contractors", registers::add_contractor),
        route!(get, "/console/accounts/{id}", registers::account),
        route!(post, "/console/accounts/{id}/vetting", registers::add_vetting),
        route!(get, "/console/deid", pages::deid_page),
        route!(post, "/console/deid", pages::deid_run),
        route!(get, "/console/applications", review::applications),
        route!(get, "/console/applications/{id}", review::application),
        route!(post, "/console/applications/{id}/vote", review::vote),
        route!(post, "/console/applications/{id}/review", review::open_review),
        route!(get, "/console/ledger", review::ledger),
        route!(get, "/console/alerts", security::alerts),
        route!(post, "/console/alerts/{id}/ack", security::ack),
        route!(get, "/console/audit", security::audit_page),
        route!(get, "/console/compliance", security::compliance),
        route!(get, "/console/compliance/matrix", security::compliance_matrix),
        route!(post, "/console/audit", security::audit_verify),
        route!(get, "/console/incidents", security::incidents),
        route!(post, "/console/incidents", security::add_incident),
        route!(get, "/console/complaints", security::complaints),
        route!(post, "/console/complaints", security::add_complaint),
        route!(get, "/console/accounts", security::accounts),
        route!(post, "/console/accounts", security::add_account),
        route!(post, "/console/logout", security::logout),
        route!(get, "/api/openapi.json", openapi::document),
    ]
}

/// The menu: page, label key. Shown to a role only when the authorization table allows its GET.
pub const NAV: &[(&str, &str)] = &[
    ("/console", "nav.home"),
    ("/console/providers", "nav.providers"),
    ("/console/optouts", "nav.optouts"),
    ("/console/batches", "nav.batches"),
    ("/console/runs", "nav.runs"),
    ("/console/identity", "nav.identity"),
    ("/console/deid", "nav.deid"),
    ("/checker", "nav.checker"),
    ("/console/applications", "nav.applications"),
    ("/console/ledger", "nav.ledger"),
    ("/console/supervision", "nav.supervision"),
    ("/console/alerts", "nav.alerts"),
    ("/console/audit", "nav.audit"),
    ("/console/compliance", "nav.compliance"),
    ("/console/incidents", "nav.incidents"),
    ("/console/leaks", "nav.leaks"),
    ("/console/complaints", "nav.complaints"),
    ("/console/contractors", "nav.contractors"),
    ("/console/accounts", "nav.accounts"),
];

/// One menu entry as the layout shows it.
#[derive(Debug, Clone)]
pub struct NavItem {
    /// Where it goes.
    pub href: &'static str,
    /// Its label.
    pub label: &'static str,
    /// Whether it is the current page.
    pub current: bool,
}

/// What every console page knows about its request: language, caller, CSRF token, menu.
#[derive(Debug, Clone)]
pub struct Page {
    /// The language of the page.
    pub lang: Lang,
    /// The words of that language.
    pub tr: Tr,
    /// Who is asking.
    pub caller: Caller,
    /// The form token of this session.
    pub csrf: String,
    /// The request path (for the language switch).
    pub path: String,
    /// The menu for the caller's role.
    pub nav: Vec<NavItem>,
    /// Whether the language came from the query and should be remembered.
    set_lang: bool,
}

/// The CSRF token of a session: a digest of the session token under its own label, so it names the
/// session without revealing it.
pub fn csrf_token(session_token: &str) -> String {
    crate::auth::sha256_hex(&format!("kiban-csrf/v1\u{1f}{session_token}"))[..32].to_owned()
}

fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts.headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|h| {
        h.split(';').filter_map(|kv| kv.trim().split_once('=')).find_map(|(k, v)| (k == name).then_some(v))
    })
}

/// The language of a request: `lang` in the query, else the `kiban_lang` cookie, else Japanese.
pub fn lang_of(parts: &Parts) -> (Lang, bool) {
    let q = parts.uri.query().unwrap_or("");
    if let Some(l) = q.split('&').filter_map(|kv| kv.split_once('=')).find_map(|(k, v)| (k == "lang").then_some(v))
        && let Some(l) = Lang::parse(l)
    {
        return (l, true);
    }
    (cookie(parts, LANG_COOKIE).and_then(Lang::parse).unwrap_or_default(), false)
}

impl FromRequestParts<AppState> for Page {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Self::Rejection> {
        let caller = parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| crate::error(StatusCode::UNAUTHORIZED, "log in first"))?;
        let (lang, set_lang) = lang_of(parts);
        let token = parts.headers.get(header::COOKIE).and_then(|v| v.to_str().ok()).and_then(crate::session_token);
        let csrf = token.map(csrf_token).unwrap_or_default();
        let path = parts.uri.path().to_owned();
        let authz = &st.authz;
        let tr = Tr(lang);
        let nav = NAV
            .iter()
            .filter(|(href, _)| authz.allows("GET", href, caller.role))
            .map(|(href, key)| NavItem {
                href,
                label: tr.s(key),
                current: path == *href || (*href != "/console" && path.starts_with(&format!("{href}/"))),
            })
            .collect();
        Ok(Page { lang, tr, caller, csrf, path, nav, set_lang })
    }
}

/// The shared layout's frame for a page without login (the public site): language and words only,
/// so the layout shows no session, menu or logout.
pub struct PublicChrome {
    /// The language of the page.
    pub lang: Lang,
    /// The words of that language.
    pub tr: Tr,
    /// The request path (for the language switch).
    pub path: &'static str,
}

impl PublicChrome {
    /// The frame of the public page at `path`, in English when `en`.
    pub fn new(en: bool, path: &'static str) -> Self {
        let lang = if en { Lang::En } else { Lang::Ja };
        PublicChrome { lang, tr: Tr(lang), path }
    }

    /// The site's name in the header and title.
    pub fn site_title(&self) -> &'static str {
        self.tr.s("public.title")
    }

    /// The link that switches the language of this page.
    pub fn switch_href(&self) -> String {
        format!("{}?lang={}", self.path, self.lang.other().code())
    }
}

impl Page {
    /// The site's name in the header and title.
    pub fn site_title(&self) -> &'static str {
        self.tr.s("app.title")
    }

    /// The role's label.
    pub fn role_label(&self) -> &'static str {
        self.tr.s(role_key(self.caller.role))
    }

    /// The link that switches the language of this page.
    pub fn switch_href(&self) -> String {
        format!("{}?lang={}", self.path, self.lang.other().code())
    }

    /// Checks a form's CSRF token.
    pub fn check_csrf(&self, sent: &str) -> Result<(), Response> {
        if !self.csrf.is_empty() && constant_eq(sent.as_bytes(), self.csrf.as_bytes()) {
            Ok(())
        } else {
            Err((StatusCode::FORBIDDEN, Html(self.tr.s("err.csrf").to_owned())).into_response())
        }
    }

    /// A date in Western and Japanese-era form, as officials expect.
    pub fn date(&self, d: NaiveDate) -> String {
        dual_date(self.lang, d)
    }

    /// An RFC 3339 timestamp shown in Japan time with both calendars; other text as it is.
    pub fn time(&self, s: &str) -> String {
        match DateTime::parse_from_rfc3339(s) {
            Ok(t) => {
                let jst = t.with_timezone(&FixedOffset::east_opt(9 * 3600).expect("JST"));
                format!("{} {}", dual_date(self.lang, jst.date_naive()), jst.format("%H:%M"))
            }
            Err(_) => match NaiveDate::parse_from_str(s, "%Y-%m-%d") {
                Ok(d) => self.date(d),
                Err(_) => s.to_owned(),
            },
        }
    }

    /// A UTC time as [`Page::time`] shows it.
    pub fn utc(&self, t: DateTime<Utc>) -> String {
        self.time(&t.to_rfc3339())
    }
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `2026年6月1日（令和8年6月1日）` in Japanese, `2026-06-01 (Reiwa 8 / R08.06.01)` in English.
pub fn dual_date(lang: Lang, d: NaiveDate) -> String {
    match lang {
        Lang::Ja => kiban_model::wareki::both_forms(d),
        Lang::En => match kiban_model::wareki::WarekiDate::from_date(d) {
            Ok(w) => format!("{} ({})", d.format("%Y-%m-%d"), w.to_short_form()),
            Err(_) => d.format("%Y-%m-%d").to_string(),
        },
    }
}

/// The label key of a role.
pub fn role_key(r: AccountRole) -> &'static str {
    match r {
        AccountRole::ProviderClerk => "role.provider_clerk",
        AccountRole::IntakeOperator => "role.intake_operator",
        AccountRole::ProcessingEngineer => "role.processing_engineer",
        AccountRole::CommitteeMember => "role.committee_member",
        AccountRole::Secretariat => "role.secretariat",
        AccountRole::SecurityOfficer => "role.security_officer",
        AccountRole::Auditor => "role.auditor",
        AccountRole::Handler => "role.handler",
        AccountRole::Administrator => "role.administrator",
    }
}

/// Field errors of a form, shown next to each field.
#[derive(Debug, Clone, Default)]
pub struct Errors(pub BTreeMap<String, String>);

impl Errors {
    /// The error of `field`, if any.
    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.get(field).map(String::as_str)
    }
    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Adds one.
    pub fn add(&mut self, field: &str, msg: impl Into<String>) {
        self.0.entry(field.to_owned()).or_insert_with(|| msg.into());
    }
    /// A required text field: trimmed, or an error.
    pub fn required(&mut self, tr: Tr, field: &str, v: &str) -> String {
        let v = v.trim();
        if v.is_empty() {
            self.add(field, tr.s("err.required"));
        }
        v.to_owned()
    }
    /// A date field.
    pub fn date(&mut self, tr: Tr, field: &str, v: &str) -> Option<NaiveDate> {
        let v = v.trim();
        if v.is_empty() {
            self.add(field, tr.s("err.required"));
            return None;
        }
        let d = NaiveDate::parse_from_str(v, "%Y-%m-%d").ok();
        if d.is_none() {
            self.add(field, tr.s("err.date"));
        }
        d
    }
    /// A choice among `allowed`.
    pub fn choice(&mut self, tr: Tr, field: &str, v: &str, allowed: &[&str]) -> String {
        if !allowed.contains(&v) {
            self.add(field, tr.s("err.choice"));
        }
        v.to_owned()
    }
}

/// A registry rule refusal as a field error (the registry names the field and the rule).
pub fn record_error(errs: &mut Errors, e: &kiban_registry::records::RecordError) -> bool {
    match e {
        kiban_registry::records::RecordError::Invalid { field, rule, message } => {
            errs.add(field, format!("{message}（{rule}）"));
            true
        }
        kiban_registry::records::RecordError::NotFound { .. } => {
            errs.add("_form", e.to_string());
            true
        }
        kiban_registry::records::RecordError::Registry(_) => false,
    }
}

/// Renders a page: HTML, `no-store`, and the language cookie when the query set it.
pub fn render(page: &Page, t: &impl Template) -> Response {
    render_status(page, StatusCode::OK, t)
}

/// [`render`] with a status (422 for a form with errors).
pub fn render_status(page: &Page, status: StatusCode, t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => {
            let mut r = (status, Html(html)).into_response();
            let h = r.headers_mut();
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
            h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'"),
            );
            if page.set_lang
                && let Ok(v) = HeaderValue::from_str(&format!(
                    "{LANG_COOKIE}={}; Path=/; SameSite=Lax; Max-Age=31536000",
                    page.lang.code()
                ))
            {
                h.insert(header::SET_COOKIE, v);
            }
            r
        }
        Err(e) => crate::error(StatusCode::INTERNAL_SERVER_ERROR, &format!("template: {e}")),
    }
}

/// A redirect after a successful form (POST → GET), with a notice flag in the query.
pub fn see_other(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A registry failure as a page-level 500 (no detail beyond the message).
pub fn internal<E: std::fmt::Display>(e: E) -> Response {
    crate::error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
}

/// Whether the query says a form was just saved (`?saved=1`).
pub fn saved(q: Option<&str>) -> bool {
    q.unwrap_or("").split('&').any(|kv| kv == "saved=1")
}

#[derive(Template)]
#[template(path = "console/home.html")]
struct Home<'a> {
    p: &'a Page,
    today: String,
    login: String,
    name: String,
}

async fn home(axum::extract::State(st): axum::extract::State<AppState>, p: Page) -> crate::Res {
    let a = st.reg.account(&p.caller.account_id).await.map_err(internal)?;
    let today = p.date(kiban_registry::records::today_jst());
    Ok(render(&p, &Home { p: &p, today, login: a.login, name: a.display_name }))
}
