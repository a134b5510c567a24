//! Console pages of the registry and intake (providers, filings, notices, opt-outs), the run
//! records, the identity review queue and the free-text de-identifier.

use std::collections::BTreeMap;

use askama::Template;
use axum::Form;
use axum::extract::{Extension, Query, State};
use axum::http::StatusCode;
use kiban_audit::{Action, AuditSink, Event, Object, ObjectKind};
use kiban_registry::records::{
    Channel, DEFAULT_WAITING_DAYS, FilingInput, FilingKind, NoticeInput, NoticeMethod, OptOutInput, Recipient,
    RequesterKind, today_jst,
};
use serde::Deserialize;

use super::{Errors, Page, internal, record_error, render, render_status, saved, see_other};
use crate::identity::SharedIdentity;
use crate::{AppState, Res, event_of, record_event};

// ---- providers and filings -----------------------------------------------------------------

/// One provider row with its standing.
pub struct ProviderRow {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Prefecture code.
    pub pref: i64,
    /// Registered (shown).
    pub registered: String,
    /// Filings (count).
    pub filings: usize,
    /// May submit, or why not.
    pub standing: Result<(), String>,
}

/// The new-provider form as typed.
#[derive(Debug, Default, Deserialize)]
pub struct ProviderForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    provider_id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    pref: String,
    #[serde(default)]
    filed_on: String,
    #[serde(default)]
    planned_start: String,
    #[serde(default)]
    update_method: String,
    #[serde(default)]
    transmission_method: String,
}

#[derive(Template)]
#[template(path = "console/providers.html")]
struct ProvidersPage<'a> {
    p: &'a Page,
    rows: Vec<ProviderRow>,
    f: ProviderForm,
    errs: Errors,
    saved: bool,
    may_add: bool,
}

async fn provider_rows(st: &AppState, p: &Page) -> Result<Vec<ProviderRow>, axum::response::Response> {
    // One read of every provider's filings and publications, not a query per provider.
    let rows: Vec<ProviderRow> = st
        .reg
        .provider_standings(today_jst())
        .await
        .map_err(internal)?
        .into_iter()
        .map(|ps| ProviderRow {
            registered: p.time(&ps.provider.registered_at),
            id: ps.provider.provider_id,
            name: ps.provider.name,
            pref: ps.provider.pref_code,
            filings: ps.filings,
            standing: ps.standing.map(|_| ()).map_err(|e| e.to_string()),
        })
        .collect();
    record_event(st, event_of(&p.caller, Action::Read, ObjectKind::Ledger, "providers").volume(rows.len() as u64))?;
    Ok(rows)
}

fn may_add(st: &AppState, p: &Page) -> bool {
    st.authz.allows("POST", "/console/providers", p.caller.role)
}

pub(super) async fn providers(State(st): State<AppState>, p: Page, q: axum::http::Uri) -> Res {
    let rows = provider_rows(&st, &p).await?;
    let f = ProviderForm { pref: "13".into(), update_method: "月次".into(), ..Default::default() };
    let page =
        ProvidersPage { may_add: may_add(&st, &p), p: &p, rows, f, errs: Errors::default(), saved: saved(q.query()) };
    Ok(render(&p, &page))
}

pub(super) async fn add_provider(State(st): State<AppState>, p: Page, Form(f): Form<ProviderForm>) -> Res {
    p.check_csrf(&f.csrf)?;
    let tr = p.tr;
    let mut errs = Errors::default();
    let id = errs.required(tr, "provider_id", &f.provider_id);
    let name = errs.required(tr, "name", &f.name);
    let pref = match f.pref.trim().parse::<i64>() {
        Ok(n) if (1..=47).contains(&n) => n,
        _ => {
            errs.add("pref", tr.s("err.number"));
            0
        }
    };
    let filed_on = errs.date(tr, "filed_on", &f.filed_on);
    let planned_start = errs.date(tr, "planned_start", &f.planned_start);
    let update_method = errs.required(tr, "update_method", &f.update_method);
    let transmission = errs.required(tr, "transmission_method", &f.transmission_method);
    if errs.is_empty()
        && let (Some(filed_on), Some(planned_start)) = (filed_on, planned_start)
    {
        let input = FilingInput {
            provider_id: id.clone(),
            kind: FilingKind::Filing,
            filed_on,
            items: BTreeMap::new(),
            update_method,
            planned_start,
            waiting_days: DEFAULT_WAITING_DAYS,
            transmission_method: transmission,
            security_checked_on: None,
            security_note: String::new(),
            acquisition_record: "診療の過程で取得".into(),
        };
        // The id is checked first; a provider without a filing is a valid registry state (it may not submit).
        match kiban_model::id::ProviderId::parse(&id) {
            Err(e) => errs.add("provider_id", format!("{e}（C1）")),
            Ok(_) => match st.reg.register_provider(&id, &name, pref).await {
                Err(e) => errs.add("provider_id", e.to_string()),
                Ok(_) => match st.reg.file_provider(&input).await {
                    Ok(filing) => {
                        record_event(
                            &st,
                            event_of(
                                &p.caller,
                                Action::Write,
                                ObjectKind::Ledger,
                                format!("filing/{}", filing.filing_id),
                            ),
                        )?;
                        return Ok(see_other("/console/providers?saved=1"));
                    }
                    Err(e) => {
                        if !record_error(&mut errs, &e) {
                            return Err(internal(e));
                        }
                    }
                },
            },
        }
    }
    let rows = provider_rows(&st, &p).await?;
    let page = ProvidersPage { may_add: may_add(&st, &p), p: &p, rows, f, errs, saved: false };
    Ok(render_status(&p, StatusCode::UNPROCESSABLE_ENTITY, &page))
}

// ---- notices and opt-outs ----------------------------------------------------------------

/// Which patient to show.
#[derive(Debug, Default, Deserialize)]
pub struct PatientQuery {
    #[serde(default)]
    provider: String,
    #[serde(default)]
    patient: String,
    #[serde(default)]
    saved: Option<String>,
    #[serde(default)]
    confirmation: Option<String>,
}

/// The opt-out form as typed.
#[derive(Debug, Default, Deserialize, Clone)]
pub struct OptOutForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    provider_id: String,
    #[serde(default)]
    patient_id: String,
    #[serde(default)]
    requester_kind: String,
    #[serde(default)]
    requester_name: String,
    #[serde(default)]
    requester_detail: String,
    #[serde(default)]
    channel: String,
}

/// The notice form as typed.
#[derive(Debug, Default, Deserialize, Clone)]
pub struct NoticeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default, rename = "n_provider_id")]
    provider_id: String,
    #[serde(default, rename = "n_patient_id")]
    patient_id: String,
    #[serde(default)]
    notice_date: String,
    #[serde(default)]
    method: String,
    #[serde(default)]
    recipient: String,
    #[serde(default)]
    text_version: String,
}

/// A record row of the patient view.
pub struct RecordRow {
    /// Record id.
    pub id: String,
    /// Kind or method (label).
    pub what: String,
    /// The date shown.
    pub date: String,
}

#[derive(Template)]
#[template(path = "console/optouts.html")]
struct OptOutsPage<'a> {
    p: &'a Page,
    providers: Vec<(String, String)>,
    q: PatientQuery,
    notices: Vec<RecordRow>,
    events: Vec<RecordRow>,
    shown: bool,
    o: OptOutForm,
    n: NoticeForm,
    errs: Errors,
    nerrs: Errors,
}

/// Requester kinds with their label keys.
pub const REQUESTERS: &[(&str, &str)] =
    &[("patient", "req.patient"), ("guardian", "req.guardian"), ("bereaved", "req.bereaved")];
/// Channels with their label keys.
pub const CHANNELS: &[(&str, &str)] = &[("written", "ch.written"), ("oral", "ch.oral"), ("other", "ch.other")];
/// Notice methods with their label keys.
pub const METHODS: &[(&str, &str)] = &[
    ("written_at_visit", "nm.written_at_visit"),
    ("mail", "nm.mail"),
    ("electronic", "nm.electronic"),
    ("posted", "nm.posted"),
];
/// Notice recipients with their label keys.
pub const RECIPIENTS: &[(&str, &str)] =
    &[("patient", "rc.patient"), ("guardian", "rc.guardian"), ("patient_and_guardian", "rc.patient_and_guardian")];

fn label(p: &Page, table: &[(&str, &'static str)], v: &str) -> String {
    table.iter().find(|(k, _)| *k == v).map(|(_, key)| p.tr.s(key).to_owned()).unwrap_or_else(|| v.to_owned())
}

#[allow(clippy::too_many_arguments)]
async fn optouts_page(
    st: &AppState,
    p: &Page,
    q: PatientQuery,
    o: OptOutForm,
    n: NoticeForm,
    errs: Errors,
    nerrs: Errors,
    status: StatusCode,
) -> Res {
    let providers = st.reg.providers().await.map_err(internal)?.into_iter().map(|x| (x.provider_id, x.name)).collect();
    let shown = !q.provider.is_empty() && !q.patient.is_empty();
    let (mut notices, mut events) = (Vec::new(), Vec::new());
    if shown {
        let ns = st.reg.notices_of(&q.provider, &q.patient).await.unwrap_or_default();
        let os = st.reg.optouts_of(&q.provider, &q.patient).await.unwrap_or_default();
        record_event(
            st,
            event_of(&p.caller, Action::Read, ObjectKind::Ledger, crate::intake::patient_ref(&q.provider, &q.patient)),
        )?;
        notices = ns
            .into_iter()
            .map(|x| RecordRow {
                id: x.notice_id,
                what: label(p, METHODS, x.input.method.as_str()),
                date: p.date(x.input.notice_date),
            })
            .collect();
        events = os
            .into_iter()
            .map(|x| RecordRow {
                what: format!("{} / {}", x.kind, label(p, REQUESTERS, x.input.requester_kind.as_str())),
                date: p.date(x.effective_on),
                id: x.event_id,
            })
            .collect();
    }
    let page = OptOutsPage { p, providers, q, notices, events, shown, o, n, errs, nerrs };
    Ok(render_status(p, status, &page))
}

pub(super) async fn optouts(State(st): State<AppState>, p: Page, Query(q): Query<PatientQuery>) -> Res {
    let o = OptOutForm {
        provider_id: q.provider.clone(),
        patient_id: q.patient.clone(),
        requester_kind: "patient".into(),
        channel: "written".into(),
        ..Default::default()
    };
    let n = NoticeForm {
        provider_id: q.provider.clone(),
        patient_id: q.patient.clone(),
        notice_date: today_jst().to_string(),
        method: "written_at_visit".into(),
        recipient: "patient".into(),
        text_version: "v1".into(),
        ..Default::default()
    };
    optouts_page(&st, &p, q, o, n, Errors::default(), Errors::default(), StatusCode::OK).await
}

fn back_to(provider: &str, patient: &str, extra: &str) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    format!("/console/optouts?provider={}&patient={}&saved=1{extra}", enc(provider), enc(patient))
}

pub(super) async fn add_optout(State(st): State<AppState>, p: Page, Form(f): Form<OptOutForm>) -> Res {
    p.check_csrf(&f.csrf)?;
    let tr = p.tr;
    let mut errs = Errors::default();
    let provider = errs.required(tr, "provider_id", &f.provider_id);
    let patient = errs.required(tr, "patient_id", &f.patient_id);
    let kind = RequesterKind::parse(&f.requester_kind).map_err(|_| errs.add("requester_kind", tr.s("err.choice"))).ok();
    let channel = Channel::parse(&f.channel).map_err(|_| errs.add("channel", tr.s("err.choice"))).ok();
    let name = errs.required(tr, "requester_name", &f.requester_name);
    if let (true, Some(kind), Some(channel)) = (errs.is_empty(), kind, channel) {
        let input = OptOutInput {
            provider_id: provider.clone(),
            patient_id: patient.clone(),
            requester_kind: kind,
            requester_name: name,
            requester_detail: f.requester_detail.trim().to_owned(),
            channel,
            person_deceased: kind == RequesterKind::Bereaved,
            received_at: None,
            source: format!("console:{}", p.caller.account_id),
        };
        match st.reg.add_optout(&input).await {
            Ok((ev, conf)) => {
                record_event(
                    &st,
                    event_of(&p.caller, Action::Write, ObjectKind::Ledger, format!("optout/{}", ev.event_id)),
                )?;
                return Ok(see_other(&back_to(&provider, &patient, &format!("&confirmation={}", conf.event_id))));
            }
            Err(e) => {
                if !record_error(&mut errs, &e) {
                    return Err(internal(e));
                }
            }
        }
    }
    let q = PatientQuery { provider: f.provider_id.clone(), patient: f.patient_id.clone(), ..Default::default() };
    let n = NoticeForm { provider_id: q.provider.clone(), patient_id: q.patient.clone(), ..Default::default() };
    optouts_page(&st, &p, q, f, n, errs, Errors::default(), StatusCode::UNPROCESSABLE_ENTITY).await
}

pub(super) async fn add_notice(State(st): State<AppState>, p: Page, Form(f): Form<NoticeForm>) -> Res {
    p.check_csrf(&f.csrf)?;
    let tr = p.tr;
    let mut errs = Errors::default();
    let provider = errs.required(tr, "provider_id", &f.provider_id);
    let patient = errs.required(tr, "patient_id", &f.patient_id);
    let date = errs.date(tr, "notice_date", &f.notice_date);
    let method = NoticeMethod::parse(&f.method).map_err(|_| errs.add("method", tr.s("err.choice"))).ok();
    let recipient = Recipient::parse(&f.recipient).map_err(|_| errs.add("recipient", tr.s("err.choice"))).ok();
    let version = errs.required(tr, "text_version", &f.text_version);
    if let (true, Some(date), Some(method), Some(recipient)) = (errs.is_empty(), date, method, recipient) {
        let input = NoticeInput {
            provider_id: provider.clone(),
            patient_id: patient.clone(),
            notice_date: date,
            method,
            recipient,
            guardian_name: None,
            patient_birth_date: None,
            lacks_capacity: false,
            text_version: version,
            corrects: None,
            source: format!("console:{}", p.caller.account_id),
        };
        match st.reg.add_notice(&input).await {
            Ok(n) => {
                record_event(
                    &st,
                    event_of(&p.caller, Action::Write, ObjectKind::Ledger, format!("notice/{}", n.notice_id)),
                )?;
                return Ok(see_other(&back_to(&provider, &patient, "")));
            }
            Err(e) => {
                if !record_error(&mut errs, &e) {
                    return Err(internal(e));
                }
            }
        }
    }
    let q = PatientQuery { provider: f.provider_id.clone(), patient: f.patient_id.clone(), ..Default::default() };
    let o = OptOutForm { provider_id: q.provider.clone(), patient_id: q.patient.clone(), ..Default::default() };
    optouts_page(&st, &p, q, o, f, Errors::default(), errs, StatusCode::UNPROCESSABLE_ENTITY).await
}

// ---- runs -----------------------------------------------------------------------------------

/// One run row.
pub struct RunRow {
    /// Id.
    pub id: String,
    /// Kind.
    pub kind: String,
    /// Started (shown).
    pub started: String,
    /// Finished (shown).
    pub finished: String,
    /// Result lines (stage: result) from the run's summary.
    pub lines: Vec<String>,
}

#[derive(Template)]
#[template(path = "console/runs.html")]
struct RunsPage<'a> {
    p: &'a Page,
    rows: Vec<RunRow>,
}

fn summary_lines(json: Option<&str>) -> Vec<String> {
    let Some(v) = json.and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok()) else {
        return Vec::new();
    };
    if let Some(stages) = v.get("stages").and_then(|s| s.as_array()) {
        return stages
            .iter()
            .map(|s| {
                format!(
                    "{}: {}",
                    s.get("stage").and_then(|x| x.as_str()).unwrap_or("-"),
                    s.get("result").and_then(|x| x.as_str()).unwrap_or("")
                )
            })
            .collect();
    }
    match v.as_object() {
        Some(o) => o.iter().take(12).map(|(k, v)| format!("{k}: {v}")).collect(),
        None => vec![v.to_string()],
    }
}

pub(super) async fn runs(State(st): State<AppState>, p: Page) -> Res {
    let v = st.reg.runs(100).await.map_err(internal)?;
    record_event(&st, event_of(&p.caller, Action::Read, ObjectKind::Ledger, "pipeline_runs").volume(v.len() as u64))?;
    let rows = v
        .into_iter()
        .map(|r| RunRow {
            started: p.time(&r.started_at),
            finished: r.finished_at.as_deref().map(|f| p.time(f)).unwrap_or_else(|| "—".into()),
            lines: summary_lines(r.summary_json.as_deref()),
            id: r.run_id,
            kind: r.kind,
        })
        .collect();
    Ok(render(&p, &RunsPage { p: &p, rows }))
}

// ---- identity review queue -----------------------------------------------------------------

/// One open review item.
pub struct ReviewRow {
    /// Item id.
    pub id: u64,
    /// The new record.
    pub record: u32,
    /// The candidate person.
    pub candidate: String,
    /// The score.
    pub score: String,
}

/// One recorded decision (newest first); the latest not undone may be undone.
pub struct DecisionRow {
    /// Decision id.
    pub id: u64,
    /// The review item it resolved.
    pub item: String,
    /// What was decided (label and persons).
    pub what: String,
    /// Who decided.
    pub by: String,
    /// Undone since.
    pub undone: bool,
    /// Whether this is the one decision that may be undone now (the latest standing one).
    pub undoable: bool,
}

/// One side of a review item: its records with their stored identity fields.
pub struct SideRecord {
    /// Record id.
    pub record: u32,
    /// Current person.
    pub person: String,
    /// Fields (name, value).
    pub fields: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "console/identity.html")]
struct IdentityPage<'a> {
    p: &'a Page,
    open: bool,
    rows: Vec<ReviewRow>,
    decisions: Vec<DecisionRow>,
    detail: Option<(u64, Vec<SideRecord>, Vec<SideRecord>)>,
    may_decide: bool,
    errs: Errors,
    saved: bool,
}

/// Review decisions with their label keys (the store's names).
pub const DECISIONS: &[(&str, &str)] =
    &[("merge", "identity.merge"), ("keep-apart", "identity.keep_apart"), ("split", "identity.split")];

/// Which item to show in full.
#[derive(Debug, Default, Deserialize)]
pub struct IdentityQuery {
    #[serde(default)]
    item: Option<u64>,
    #[serde(default)]
    saved: Option<String>,
}

fn side(v: &[kiban_identity::store::RecordView]) -> Vec<SideRecord> {
    v.iter()
        .map(|r| {
            let fields = match serde_json::to_value(&r.identity) {
                Ok(serde_json::Value::Object(o)) => o
                    .into_iter()
                    .map(|(k, v)| (k, v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())))
                    .collect(),
                _ => Vec::new(),
            };
            SideRecord { record: r.record, person: r.person.clone(), fields }
        })
        .collect()
}

fn decision_text(p: &Page, k: &kiban_identity::mpi::DecisionKind) -> String {
    use kiban_identity::mpi::DecisionKind;
    match k {
        DecisionKind::Merge { from, into, records } => {
            format!("{}: {from} → {into} ({} {})", p.tr.s("identity.merge"), records.len(), p.tr.s("identity.records"))
        }
        DecisionKind::Split { record, from, to } => {
            format!("{}: {} {} ({from} → {to})", p.tr.s("identity.split"), p.tr.s("identity.records"), record.0)
        }
        DecisionKind::KeepApart { a, b } => format!("{}: {a} / {b}", p.tr.s("identity.keep_apart"), a = a, b = b),
    }
}

async fn identity_page(
    st: &AppState,
    p: &Page,
    store: Option<Extension<SharedIdentity>>,
    item: Option<u64>,
    errs: Errors,
    done: bool,
    status: StatusCode,
) -> Res {
    let Some(Extension(store)) = store else {
        let page = IdentityPage {
            p,
            open: false,
            rows: Vec::new(),
            decisions: Vec::new(),
            detail: None,
            may_decide: false,
            errs,
            saved: false,
        };
        return Ok(render_status(p, status, &page));
    };
    let bridge = crate::identity::bridge(st, &p.caller);
    let mut g = store.lock().unwrap_or_else(|e| e.into_inner());
    // Catch up with what the CLI wrote to the vault since.
    g.refresh(&bridge, &p.caller.account_id).map_err(internal)?;
    let q = g.review_queue();
    record_event(st, event_of(&p.caller, Action::Read, ObjectKind::Identity, "review-queue").volume(q.len() as u64))?;
    let rows = q
        .iter()
        .take(500)
        .map(|i| ReviewRow {
            id: i.id,
            record: i.record.0,
            candidate: i.candidate.to_string(),
            score: format!("{:.2}", i.score),
        })
        .collect();
    let all = g.mpi().decisions();
    let latest = all.iter().rev().find(|d| !d.undone).map(|d| d.id);
    let decisions = all
        .iter()
        .rev()
        .take(50)
        .map(|d| DecisionRow {
            id: d.id,
            item: d.item.map(|i| i.to_string()).unwrap_or_else(|| "—".into()),
            what: decision_text(p, &d.kind),
            by: d.by.clone(),
            undone: d.undone,
            undoable: Some(d.id) == latest,
        })
        .collect();
    // Both sides' identities are shown only for the item asked for (each view is a vault read, audited).
    let detail = match item {
        Some(i) => match g.review_detail(&bridge, &p.caller.account_id, i) {
            Ok(v) => Some((i, side(&v.record), side(&v.candidate))),
            Err(e) => return Err(crate::error(StatusCode::NOT_FOUND, &e.to_string())),
        },
        None => None,
    };
    drop(g);
    let may_decide = st.authz.allows("POST", "/console/identity/{item}", p.caller.role);
    let page = IdentityPage { p, open: true, rows, decisions, detail, may_decide, errs, saved: done };
    Ok(render_status(p, status, &page))
}

pub(super) async fn identity(
    State(st): State<AppState>,
    p: Page,
    store: Option<Extension<SharedIdentity>>,
    Query(q): Query<IdentityQuery>,
) -> Res {
    identity_page(&st, &p, store, q.item, Errors::default(), q.saved.is_some(), StatusCode::OK).await
}

/// The decision form of a review item.
#[derive(Debug, Default, Deserialize)]
pub struct DecideForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    decision: String,
}

/// Decides a review item: merge, keep apart, or split (recorded in the vault log, reversible).
pub(super) async fn identity_decide(
    State(st): State<AppState>,
    p: Page,
    axum::extract::Path(item): axum::extract::Path<u64>,
    store: Option<Extension<SharedIdentity>>,
    Form(f): Form<DecideForm>,
) -> Res {
    p.check_csrf(&f.csrf)?;
    let mut errs = Errors::default();
    let shared = crate::identity::store(store.clone())?;
    let Some(d) = kiban_identity::store::ReviewDecision::parse(&f.decision) else {
        errs.add("_form", p.tr.s("err.choice"));
        return identity_page(&st, &p, store, Some(item), errs, false, StatusCode::UNPROCESSABLE_ENTITY).await;
    };
    let bridge = crate::identity::bridge(&st, &p.caller);
    let res = shared.lock().unwrap_or_else(|e| e.into_inner()).decide(&bridge, &p.caller.account_id, item, d);
    match res {
        Ok(id) => {
            record_event(
                &st,
                event_of(&p.caller, Action::Write, ObjectKind::Identity, format!("review/{item}"))
                    .note(format!("decision {id}: {}", f.decision)),
            )?;
            Ok(see_other("/console/identity?saved=1"))
        }
        Err(e) => {
            errs.add("_form", e.to_string());
            identity_page(&st, &p, store, None, errs, false, StatusCode::CONFLICT).await
        }
    }
}

/// The undo form.
#[derive(Debug, Default, Deserialize)]
pub struct UndoForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    decision: String,
}

/// Undoes the latest standing decision (the log keeps both).
pub(super) async fn identity_undo(
    State(st): State<AppState>,
    p: Page,
    store: Option<Extension<SharedIdentity>>,
    Form(f): Form<UndoForm>,
) -> Res {
    p.check_csrf(&f.csrf)?;
    let mut errs = Errors::default();
    let shared = crate::identity::store(store.clone())?;
    let Ok(id) = f.decision.trim().parse::<u64>() else {
        errs.add("_form", p.tr.s("err.number"));
        return identity_page(&st, &p, store, None, errs, false, StatusCode::UNPROCESSABLE_ENTITY).await;
    };
    let bridge = crate::identity::bridge(&st, &p.caller);
    let res = shared.lock().unwrap_or_else(|e| e.into_inner()).undo(&bridge, &p.caller.account_id, id);
    match res {
        Ok(()) => {
            record_event(
                &st,
                event_of(&p.caller, Action::Write, ObjectKind::Identity, format!("decision/{id}")).note("undone"),
            )?;
            Ok(see_other("/console/identity?saved=1"))
        }
        Err(e) => {
            errs.add("_form", e.to_string());
            identity_page(&st, &p, store, None, errs, false, StatusCode::CONFLICT).await
        }
    }
}

// ---- free-text de-identification ---------------------------------------------------------------

/// The text form.
#[derive(Debug, Default, Deserialize)]
pub struct DeidForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    text: String,
}

#[derive(Template)]
#[template(path = "console/deid.html")]
struct DeidPage<'a> {
    p: &'a Page,
    text: String,
    result: Option<String>,
    spans: Vec<(String, String)>,
    errs: Errors,
}

pub(super) async fn deid_page(p: Page) -> Res {
    Ok(render(&p, &DeidPage { p: &p, text: String::new(), result: None, spans: Vec::new(), errs: Errors::default() }))
}

/// Longest text the form takes (the JSON API takes more).
const MAX_FORM_TEXT: usize = 1 << 20;

pub(super) async fn deid_run(State(st): State<AppState>, p: Page, Form(f): Form<DeidForm>) -> Res {
    use kiban_deid::text::{DocContext, TextConfig, deidentify};
    p.check_csrf(&f.csrf)?;
    let mut errs = Errors::default();
    let text = f.text;
    if text.trim().is_empty() {
        errs.add("text", p.tr.s("err.required"));
    } else if text.len() > MAX_FORM_TEXT {
        errs.add("text", "1 MiB");
    }
    if !errs.is_empty() {
        let page = DeidPage { p: &p, text, result: None, spans: Vec::new(), errs };
        return Ok(render_status(&p, StatusCode::UNPROCESSABLE_ENTITY, &page));
    }
    let bytes = text.len() as u64;
    let input = text.clone();
    let d = tokio::task::spawn_blocking(move || {
        let ctx = DocContext { date_offset_days: 0, surrogate_seed: rand::random() };
        deidentify(&input, &TextConfig::default(), &ctx)
    })
    .await
    .map_err(internal)?;
    let ev = Event::new(
        p.caller.actor(),
        &p.caller.source,
        Action::Write,
        Object::new(ObjectKind::Clinical, "deid-text/tag"),
    )
    .volume(bytes);
    st.audit.record(ev).map_err(|_| crate::error(StatusCode::SERVICE_UNAVAILABLE, "the audit log is unavailable"))?;
    // Positions only: the page does not echo the identifying text back.
    let spans = d.spans.iter().map(|s| (s.tag.name().to_owned(), format!("{}–{}", s.start, s.end))).collect();
    Ok(render(&p, &DeidPage { p: &p, text: String::new(), result: Some(d.text), spans, errs }))
}
