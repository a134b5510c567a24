//! Console pages of applications, the committee's review (votes) and the provision ledger; the
//! workflow itself is the registry's (`execute_review`), which refuses any step out of order.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use kiban_audit::{Action, ObjectKind};
use kiban_registry::records::today_jst;
use kiban_registry::review::db::ReviewError;
use kiban_registry::review::workflow::{Command, VoteKind};
use serde::Deserialize;

use super::{Errors, Page, internal, render, render_status, saved, see_other};
use crate::{AppState, Res, event_of, record_event};

/// The label key of a phase (its serde name).
fn phase_key<T: serde::Serialize>(phase: &T) -> String {
    let name = serde_json::to_value(phase).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    format!("phase.{name}")
}

/// One application row.
pub struct AppRow {
    /// Id.
    pub id: String,
    /// Applicant.
    pub applicant: String,
    /// Title of the study.
    pub title: String,
    /// Phase label.
    pub phase: String,
}

#[derive(Template)]
#[template(path = "console/applications.html")]
struct ListPage<'a> {
    p: &'a Page,
    rows: Vec<AppRow>,
}

pub(super) async fn applications(State(st): State<AppState>, p: Page) -> Res {
    let v = st.reg.applications().await.map_err(internal)?;
    record_event(&st, event_of(&p.caller, Action::Read, ObjectKind::Ledger, "applications"))?;
    let rows = v
        .into_iter()
        .map(|a| AppRow {
            phase: p.tr.s(&phase_key(&a.phase)).to_owned(),
            id: a.application_id,
            applicant: a.applicant_name,
            title: a.title,
        })
        .collect();
    Ok(render(&p, &ListPage { p: &p, rows }))
}

/// A committee member on the application's review.
pub struct MemberRow {
    /// Member id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Conflict declared.
    pub conflicted: bool,
    /// Vote label and reasons, if voted.
    pub vote: Option<(String, String)>,
}

/// Vote kinds with label keys.
pub const VOTES: &[(&str, &str)] = &[
    ("approve", "vote.approve"),
    ("approve_with_conditions", "vote.approve_with_conditions"),
    ("revise", "vote.revise"),
    ("refuse", "vote.refuse"),
];

/// The vote form.
#[derive(Debug, Default, Deserialize, Clone)]
pub struct VoteForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    member_id: String,
    #[serde(default)]
    vote: String,
    #[serde(default)]
    reason: String,
}

#[derive(Template)]
#[template(path = "console/application.html")]
struct DetailPage<'a> {
    p: &'a Page,
    id: String,
    phase: String,
    title: String,
    applicant: String,
    usage: String,
    members: Vec<MemberRow>,
    may_vote: bool,
    may_open: bool,
    voters: Vec<(String, String)>,
    f: VoteForm,
    errs: Errors,
    saved: bool,
    agreement: Vec<(&'static str, String)>,
    fees: Vec<(&'static str, String)>,
    releases: Vec<ReleaseRow>,
}

/// One release of an application (R9).
pub struct ReleaseRow {
    /// Release id.
    pub id: String,
    /// Provided on (shown).
    pub on: String,
    /// Items.
    pub items: String,
    /// Manifest digest.
    pub manifest: String,
    /// Policy digest.
    pub policy: String,
    /// Acknowledged on (shown).
    pub acknowledged: String,
}

/// The agreement's terms (R3) as label key and text.
fn agreement_rows(p: &Page, a: &kiban_registry::review::agreement::Agreement) -> Vec<(&'static str, String)> {
    vec![
        ("apps.user", format!("{}（{}）{}", a.user_name, a.user_detail, a.user_address)),
        ("apps.user_type", enum_name(&a.user_type)),
        ("apps.purpose", a.purpose.clone()),
        ("apps.handlers", a.handlers.join("、")),
        ("apps.places", a.places.join("、")),
        ("apps.items", a.items.join("、")),
        ("apps.method", enum_name(&a.method)),
        ("apps.period_end", p.date(a.period_end)),
    ]
}

/// A unit enum's serde name.
fn enum_name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_else(|| "—".into())
}

async fn detail(st: &AppState, p: &Page, id: &str, f: VoteForm, errs: Errors, status: StatusCode, done: bool) -> Res {
    let s = st.reg.application_state(id).await.map_err(|e| match e {
        ReviewError::Record(kiban_registry::records::RecordError::NotFound { .. }) => {
            crate::error(StatusCode::NOT_FOUND, &e.to_string())
        }
        e => internal(e),
    })?;
    record_event(st, event_of(&p.caller, Action::Read, ObjectKind::Ledger, format!("application/{id}")))?;
    let phase = s.phase();
    let members: Vec<MemberRow> = s
        .committee
        .iter()
        .map(|m| MemberRow {
            id: m.member_id.clone(),
            name: m.name.clone(),
            conflicted: s.conflicted.contains(&m.member_id),
            vote: s
                .votes
                .get(&m.member_id)
                .map(|(k, r)| (p.tr.s(&format!("vote.{}", vote_name(*k))).to_owned(), r.clone())),
        })
        .collect();
    let voters =
        members.iter().filter(|m| !m.conflicted && m.vote.is_none()).map(|m| (m.id.clone(), m.name.clone())).collect();
    let under_review = phase == kiban_registry::review::workflow::Phase::UnderReview;
    let app = s.application.as_ref();
    let page = DetailPage {
        p,
        id: id.to_owned(),
        phase: p.tr.s(&phase_key(&phase)).to_owned(),
        title: app.map(|a| a.plan.title.clone()).unwrap_or_default(),
        applicant: app.map(|a| a.contact.name.clone()).unwrap_or_default(),
        usage: app.map(|a| format!("{} 〜 {}", p.date(a.usage_from), p.date(a.usage_to))).unwrap_or_default(),
        members,
        may_vote: under_review && st.authz.allows("POST", "/console/applications/{id}/vote", p.caller.role),
        may_open: phase == kiban_registry::review::workflow::Phase::Submitted
            && st.authz.allows("POST", "/console/applications/{id}/review", p.caller.role),
        voters,
        f,
        errs,
        saved: done,
        agreement: s.agreement.as_ref().map(|a| agreement_rows(p, a)).unwrap_or_default(),
        fees: fee_rows(p, &s),
        releases: s
            .releases
            .iter()
            .map(|r| ReleaseRow {
                id: r.spec.release_id.clone(),
                on: p.date(r.spec.on),
                items: r.spec.items.join("、"),
                manifest: r.spec.manifest_sha256.chars().take(16).collect(),
                policy: r
                    .spec
                    .policy_sha256
                    .as_deref()
                    .map(|x| x.chars().take(16).collect())
                    .unwrap_or_else(|| "—".into()),
                acknowledged: r.acknowledged_on.map(|d| p.date(d)).unwrap_or_else(|| "—".into()),
            })
            .collect(),
    };
    Ok(render_status(p, status, &page))
}

/// The fee lines (D5): estimate, amount due or exemption, paid, settled.
fn fee_rows(p: &Page, s: &kiban_registry::review::workflow::State) -> Vec<(&'static str, String)> {
    let yen = |n: u64| format!("{n} 円");
    let mut v = Vec::new();
    if let Some(e) = s.fee_estimate {
        v.push(("apps.fee_estimate", yen(e)));
    }
    match &s.fee_final {
        Some((amount, Some(why))) => v.push(("apps.fee_exempt", format!("{}（{why}）", yen(*amount)))),
        Some((amount, None)) => v.push(("apps.fee_final", yen(*amount))),
        None => {}
    }
    if s.fee_final.is_some() {
        v.push(("apps.paid", yen(s.paid_yen)));
        v.push(("apps.settled", p.tr.s(if s.fee_settled() { "yes" } else { "no" }).to_owned()));
    }
    v
}

fn vote_name(k: VoteKind) -> &'static str {
    match k {
        VoteKind::Approve => "approve",
        VoteKind::ApproveWithConditions => "approve_with_conditions",
        VoteKind::Revise => "revise",
        VoteKind::Refuse => "refuse",
    }
}

pub(super) async fn application(
    State(st): State<AppState>,
    p: Page,
    Path(id): Path<String>,
    uri: axum::http::Uri,
) -> Res {
    let f = VoteForm { vote: "approve".into(), ..Default::default() };
    detail(&st, &p, &id, f, Errors::default(), StatusCode::OK, saved(uri.query())).await
}

pub(super) async fn vote(State(st): State<AppState>, p: Page, Path(id): Path<String>, Form(f): Form<VoteForm>) -> Res {
    p.check_csrf(&f.csrf)?;
    let tr = p.tr;
    let mut errs = Errors::default();
    let member = errs.required(tr, "member_id", &f.member_id);
    let kind = match f.vote.as_str() {
        "approve" => Some(VoteKind::Approve),
        "approve_with_conditions" => Some(VoteKind::ApproveWithConditions),
        "revise" => Some(VoteKind::Revise),
        "refuse" => Some(VoteKind::Refuse),
        _ => {
            errs.add("vote", tr.s("err.choice"));
            None
        }
    };
    let reason = errs.required(tr, "reason", &f.reason);
    if let (true, Some(vote)) = (errs.is_empty(), kind) {
        match st.reg.execute_review(&id, &Command::Vote { member_id: member, vote, reason }).await {
            Ok(_) => {
                record_event(&st, event_of(&p.caller, Action::Write, ObjectKind::Ledger, format!("application/{id}")))?;
                return Ok(see_other(&format!("/console/applications/{id}?saved=1")));
            }
            Err(ReviewError::Record(kiban_registry::records::RecordError::Registry(e))) => return Err(internal(e)),
            Err(e) => errs.add("_form", e.to_string()),
        }
    }
    detail(&st, &p, &id, f, errs, StatusCode::UNPROCESSABLE_ENTITY, false).await
}

/// The open-review form.
#[derive(Debug, Default, Deserialize)]
pub struct OpenForm {
    #[serde(default)]
    csrf: String,
}

pub(super) async fn open_review(
    State(st): State<AppState>,
    p: Page,
    Path(id): Path<String>,
    Form(f): Form<OpenForm>,
) -> Res {
    p.check_csrf(&f.csrf)?;
    let mut errs = Errors::default();
    // The committee sits as registered when the review opens (the registry takes the roster).
    match st.reg.open_review(&id, today_jst()).await {
        Ok(_) => {
            record_event(
                &st,
                event_of(&p.caller, Action::Write, ObjectKind::Ledger, format!("application/{id}/review")),
            )?;
            return Ok(see_other(&format!("/console/applications/{id}?saved=1")));
        }
        Err(ReviewError::Record(kiban_registry::records::RecordError::Registry(e))) => return Err(internal(e)),
        Err(e) => errs.add("_form", e.to_string()),
    }
    detail(&st, &p, &id, VoteForm::default(), errs, StatusCode::UNPROCESSABLE_ENTITY, false).await
}

/// One ledger row.
pub struct LedgerRow {
    /// Entry id.
    pub id: String,
    /// Kind.
    pub kind: String,
    /// Event date.
    pub date: String,
    /// Party.
    pub party: String,
    /// Application.
    pub application: String,
    /// Items.
    pub items: String,
}

#[derive(Template)]
#[template(path = "console/ledger.html")]
struct LedgerPage<'a> {
    p: &'a Page,
    rows: Vec<LedgerRow>,
}

pub(super) async fn ledger(State(st): State<AppState>, p: Page) -> Res {
    let v = st.reg.ledger().await.map_err(internal)?;
    record_event(&st, event_of(&p.caller, Action::Read, ObjectKind::Ledger, "ledger"))?;
    let rows = v
        .into_iter()
        .map(|e| LedgerRow {
            id: e.entry_id,
            kind: serde_json::to_value(e.input.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            date: p.date(e.input.event_date),
            party: e.input.party_name,
            application: e.input.application_id.unwrap_or_default(),
            items: e.input.items.join("、"),
        })
        .collect();
    Ok(render(&p, &LedgerPage { p: &p, rows }))
}
