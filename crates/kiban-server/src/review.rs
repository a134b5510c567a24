//! The JSON API of applications, the committee's review, provision, use and sanctions (R1–R14,
//! D1–D9). Each route accepts only the workflow commands of one role's step, so the route × role
//! table decides who may do what; the workflow itself refuses any step out of order.

// Handlers return `Result<Response, Response>`, axum's usual shape; both sides are responses.
#![allow(clippy::result_large_err)]

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use chrono::NaiveDate;
use kiban_audit::{Action, ObjectKind};
use kiban_registry::records::{RecordError, today_jst};
use kiban_registry::review::application::Application;
use kiban_registry::review::db::ReviewError;
use kiban_registry::review::sanction::DecidedPeriod;
use kiban_registry::review::workflow::Command;
use serde::Deserialize;
use serde_json::json;

use crate::{AppState, Caller, Res, RouteDesc, error, ok};

/// The review routes.
pub fn descriptors() -> Vec<RouteDesc> {
    vec![
        route!(get, "/api/applications", list),
        route!(post, "/api/applications", submit),
        route!(get, "/api/applications/{id}", show),
        route!(post, "/api/applications/{id}/review", open_review),
        route!(post, "/api/applications/{id}/committee", committee_step),
        route!(
            post,
            "/api/applications/{id}/provision",
            step_route(provision_commands, "agreement, fee, payment, release or receipt")
        ),
        route!(post, "/api/applications/{id}/package", package),
        route!(
            post,
            "/api/applications/{id}/use",
            step_route(use_commands, "change, publication, report, deletion certificate or user request")
        ),
        route!(
            post,
            "/api/applications/{id}/supervision",
            step_route(supervision_commands, "request decision, audit or expiry")
        ),
        route!(post, "/api/violations", violation),
        route!(post, "/api/violations/{id}/sanction", sanction),
        route!(get, "/api/ledger", ledger),
        route!(get, "/api/contracts", contracts),
    ]
}

fn review_err(e: ReviewError) -> Response {
    match e {
        ReviewError::Record(RecordError::NotFound { .. }) => error(StatusCode::NOT_FOUND, &e.to_string()),
        ReviewError::Record(RecordError::Registry(_)) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        other => error(StatusCode::UNPROCESSABLE_ENTITY, &other.to_string()),
    }
}

fn record_err(e: RecordError) -> Response {
    review_err(ReviewError::Record(e))
}

fn audit(st: &AppState, c: &Caller, action: Action, id: impl Into<String>) -> Result<(), Response> {
    crate::record_event(st, crate::event_of(c, action, ObjectKind::Ledger, id))
}

async fn list(State(st): State<AppState>, Extension(c): Extension<Caller>) -> Res {
    let v = st.reg.applications().await.map_err(review_err)?;
    audit(&st, &c, Action::Read, "applications")?;
    ok(v)
}

async fn show(State(st): State<AppState>, Extension(c): Extension<Caller>, Path(id): Path<String>) -> Res {
    let s = st.reg.application_state(&id).await.map_err(review_err)?;
    audit(&st, &c, Action::Read, format!("application/{id}"))?;
    ok(json!({"application_id": id, "phase": s.phase(), "state": s}))
}

async fn submit(State(st): State<AppState>, Extension(c): Extension<Caller>, Json(app): Json<Application>) -> Res {
    let (id, s) = st.reg.submit_application(&app, today_jst()).await.map_err(review_err)?;
    audit(&st, &c, Action::Write, format!("application/{id}"))?;
    ok(json!({"application_id": id, "phase": s.phase(), "precheck_failures": s.precheck_failures}))
}

/// The day a review meets.
#[derive(Debug, Deserialize)]
pub struct OnBody {
    on: Option<NaiveDate>,
}

async fn open_review(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Json(b): Json<OnBody>,
) -> Res {
    let s = st.reg.open_review(&id, b.on.unwrap_or_else(today_jst)).await.map_err(review_err)?;
    audit(&st, &c, Action::Write, format!("application/{id}/review"))?;
    ok(json!({"application_id": id, "phase": s.phase()}))
}

/// Runs `cmd` if `allowed` says this route may carry it.
async fn step(st: AppState, c: Caller, id: String, cmd: Command, allowed: fn(&Command) -> bool, what: &str) -> Res {
    if !allowed(&cmd) {
        return Err(error(StatusCode::UNPROCESSABLE_ENTITY, &format!("this route takes {what} commands only")));
    }
    let (s, ledger) = st.reg.execute_review(&id, &cmd).await.map_err(review_err)?;
    audit(&st, &c, Action::Write, format!("application/{id}"))?;
    ok(json!({"application_id": id, "phase": s.phase(), "ledger": ledger}))
}

async fn committee_step(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Json(cmd): Json<Command>,
) -> Res {
    let allowed =
        |c: &Command| matches!(c, Command::DeclareConflict { .. } | Command::Vote { .. } | Command::Decide { .. });
    if let Command::DeclareConflict { member_id, .. } | Command::Vote { member_id, .. } = &cmd {
        // A member speaks only for themself: the roster entry must be linked to this account.
        let s = st.reg.application_state(&id).await.map_err(review_err)?;
        let linked = s.committee.iter().find(|m| &m.member_id == member_id).and_then(|m| m.account_id.as_deref());
        if linked != Some(c.account_id.as_str()) {
            let ev =
                crate::event_of(&c, Action::Write, ObjectKind::Ledger, format!("application/{id}/member/{member_id}"))
                    .outcome(kiban_audit::Outcome::Denied);
            crate::record_event(&st, ev)?;
            return Err(error(
                StatusCode::FORBIDDEN,
                &format!(
                    "member_id {member_id}: this account is not linked to that roster member (rule R2: each member votes for themself; link with `kiban committee add-member --account`)"
                ),
            ));
        }
    }
    step(st, c, id, cmd, allowed, "declare_conflict, vote or decide").await
}

/// Commands of the provision step (secretariat): agreement, fees, payment, release, receipt.
fn provision_commands(c: &Command) -> bool {
    matches!(
        c,
        Command::ConcludeAgreement { .. }
            | Command::EstimateFee { .. }
            | Command::FinalFee { .. }
            | Command::RecordPayment { .. }
            | Command::Release { .. }
            | Command::AcknowledgeReceipt { .. }
    )
}

/// Commands of the use step (the user): changes, publications, reports, deletion certificates, requests.
fn use_commands(c: &Command) -> bool {
    matches!(
        c,
        Command::RequestChange { .. }
            | Command::RecordPublication { .. }
            | Command::FileReport { .. }
            | Command::DeletionCertificate { .. }
            | Command::UserRequest { .. }
    )
}

/// Commands of supervision: request decisions, audits, expiry.
fn supervision_commands(c: &Command) -> bool {
    matches!(c, Command::DecideRequest { .. } | Command::Expire { .. } | Command::RecordAudit { .. })
}

/// What a step route's handler returns.
type StepFuture = std::pin::Pin<Box<dyn Future<Output = Res> + Send>>;

/// The handler of a step route that carries only the commands `allowed` accepts.
fn step_route(
    allowed: fn(&Command) -> bool,
    what: &'static str,
) -> impl Fn(State<AppState>, Extension<Caller>, Path<String>, Json<Command>) -> StepFuture + Clone + Send + Sync + 'static
{
    move |State(st), Extension(c), Path(id), Json(cmd)| Box::pin(step(st, c, id, cmd, allowed, what))
}

/// A release package to build (R9, D6): a dataset of the data directory for one recipient account.
#[derive(Debug, Deserialize)]
pub struct PackageBody {
    /// The dataset's name under `datasets/` (anonymized applications).
    #[serde(default)]
    dataset: Option<String>,
    /// Make the release now (pseudonymized applications): the source dataset under the data
    /// directory, as plain names (`clinical/<batch>/<table>` or `datasets/<name>`).
    #[serde(default)]
    source: Option<String>,
    /// The approved pseudonymization policy: a file name under `<data-dir>/policies/` (`NAME.toml`).
    #[serde(default)]
    policy: Option<String>,
    /// Join the tokens of this earlier release (the approved application must name it).
    #[serde(default)]
    link_to: Option<String>,
    /// The recipient's account id.
    recipient: String,
    #[serde(default)]
    items: Vec<String>,
    #[serde(default)]
    media: Vec<kiban_registry::review::workflow::Medium>,
    on: Option<NaiveDate>,
}

/// Builds the encrypted package, records the release and its ledger entry, and puts the package
/// in the release gateway's outbox. The recipient key is in this response only (never stored,
/// never cached, never audited): the secretariat hands it over apart from the package.
async fn package(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    identity: Option<Extension<crate::identity::SharedIdentity>>,
    Path(id): Path<String>,
    Json(b): Json<PackageBody>,
) -> Res {
    use kiban_registry::review::package::{
        PackageRequest, PackageStepError, Processing, ReleaseData, is_plain_id, release_package,
    };
    let unprocessable = |m: &str| error(StatusCode::UNPROCESSABLE_ENTITY, m);
    let sealer = crate::intake::dataset_sealer(&st);
    let (dataset, source, policy) = match (&b.dataset, &b.source, &b.policy) {
        (Some(name), None, None) => {
            if !is_plain_id(name) {
                return Err(unprocessable("dataset: a dataset name under datasets/, not a path"));
            }
            let dataset = st.data_dir.join("datasets").join(name);
            if !dataset.join("manifest.json").is_file() {
                return Err(error(StatusCode::NOT_FOUND, &format!("dataset {name}: no such dataset")));
            }
            (Some(dataset), None, None)
        }
        (None, Some(src), Some(pol)) => {
            // Names, never paths: only the clinical store and the datasets are reachable.
            let parts: Vec<&str> = src.split('/').collect();
            if !matches!(parts[0], "clinical" | "datasets") || parts.len() < 2 || !parts.iter().all(|p| is_plain_id(p))
            {
                return Err(unprocessable("source: clinical/<batch>/<table> or datasets/<name>, not a path"));
            }
            let source = parts.iter().fold(st.data_dir.clone(), |d, p| d.join(p));
            if !source.join("manifest.json").is_file() {
                return Err(error(StatusCode::NOT_FOUND, &format!("source {src}: no such dataset")));
            }
            if !is_plain_id(pol) || !pol.ends_with(".toml") {
                return Err(unprocessable("policy: a file name NAME.toml under <data-dir>/policies/, not a path"));
            }
            (None, Some(source), Some(st.data_dir.join("policies").join(pol)))
        }
        _ => return Err(unprocessable("dataset, or source with policy: one of the two")),
    };
    let identity = identity.map(|Extension(s)| s);
    let release_key = |release: &str, linkage: Option<&kiban_registry::review::package::LinkageAllowed>| {
        let s = identity.as_ref().ok_or("the key store is not attached to this server (release keys come from it)")?;
        let mut g = s.lock().unwrap_or_else(|p| p.into_inner());
        let k = crate::deid::release_table_key(g.keys_mut(), release, linkage)?;
        drop(g);
        let ev = crate::event_of(&c, Action::KeyUse, ObjectKind::Key, k.domain.clone());
        kiban_audit::AuditSink::record(st.audit.as_ref(), ev.note(format!("release {release} table tokens")))
            .map_err(|e| e.to_string())?;
        Ok(k)
    };
    let data = match (&dataset, &source, &policy) {
        (Some(d), _, _) => ReleaseData::Dataset(d),
        (None, Some(source), Some(policy)) => ReleaseData::Process(Processing {
            source,
            policy,
            link_to: b.link_to.as_deref(),
            release_key: &release_key,
            sealer: sealer.clone(),
        }),
        _ => unreachable!("matched above"),
    };
    let req = PackageRequest {
        sealer: Some(sealer.clone()),
        application_id: &id,
        data,
        recipient: &b.recipient,
        items: b.items.clone(),
        media: b.media.clone(),
        on: b.on.unwrap_or_else(today_jst),
    };
    let d = release_package(&st.reg, &st.data_dir, req).await.map_err(|e| match e {
        PackageStepError::Review(r) => review_err(r),
        PackageStepError::BadId { .. } | PackageStepError::Refused { .. } | PackageStepError::Processing(_) => {
            error(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string())
        }
        other => error(StatusCode::INTERNAL_SERVER_ERROR, &other.to_string()),
    })?;
    crate::record_event(
        &st,
        crate::event_of(&c, Action::Export, ObjectKind::Release, format!("application/{id}/release/{}", d.release_id)),
    )?;
    let mut r = ok(json!({
        "application_id": id, "phase": d.state.phase(), "release_id": d.release_id,
        "package": d.package.file_name().map(|f| f.to_string_lossy().into_owned()),
        "recipient_key_hex": hex::encode(&d.key[..]), "ledger": d.ledger,
    }))?;
    r.headers_mut().insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
    Ok(r)
}

/// A violation to record (D8).
#[derive(Debug, Deserialize)]
pub struct ViolationBody {
    offender: String,
    code: String,
    recognized_on: NaiveDate,
    #[serde(default)]
    detail: String,
}

async fn violation(State(st): State<AppState>, Extension(c): Extension<Caller>, Json(b): Json<ViolationBody>) -> Res {
    let v = st.reg.record_violation(&b.offender, &b.code, b.recognized_on, &b.detail).await.map_err(review_err)?;
    audit(&st, &c, Action::Write, format!("violation/{}", v.violation_id))?;
    ok(v)
}

/// The measure decided for a violation (D8).
#[derive(Debug, Deserialize)]
pub struct SanctionBody {
    period: DecidedPeriod,
    #[serde(default)]
    publish_name: bool,
    decided_on: Option<NaiveDate>,
}

async fn sanction(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Json(b): Json<SanctionBody>,
) -> Res {
    let s = st
        .reg
        .decide_sanction(&id, b.period, b.publish_name, b.decided_on.unwrap_or_else(today_jst))
        .await
        .map_err(review_err)?;
    audit(&st, &c, Action::Write, format!("sanction/{}", s.sanction_id))?;
    ok(s)
}

async fn ledger(State(st): State<AppState>, Extension(c): Extension<Caller>) -> Res {
    let v = st.reg.ledger().await.map_err(record_err)?;
    audit(&st, &c, Action::Read, "ledger")?;
    ok(v)
}

async fn contracts(State(st): State<AppState>, Extension(c): Extension<Caller>) -> Res {
    let v = st.reg.contracts().await.map_err(record_err)?;
    audit(&st, &c, Action::Read, "contracts")?;
    ok(v)
}
