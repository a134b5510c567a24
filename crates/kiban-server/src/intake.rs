//! The JSON API of the opt-out registry and the intake (P1–P7, C1–C5): providers and their filings,
//! notices, opt-outs with their confirmation documents, CSV imports, batches through the gate,
//! receipt records and deletion requests. Every call is audited; the audit names records by their
//! ids, never by a patient id in the clear.

// Handlers return `Result<Response, Response>`, axum's usual shape; both sides are responses.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, NaiveDate, Utc};
use kiban_audit::{Action, AuditSink, Event, JobKind, Object, ObjectKind};
use kiban_registry::intake::{IntakeError, NoVault, Submission};
use kiban_registry::records::{
    Channel, DEFAULT_WAITING_DAYS, FilingInput, FilingKind, NoticeInput, OptOutInput, RecordError, RequesterKind,
};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::{AppState, Caller, Res, RouteDesc, error, ok};

/// The registry and intake routes.
pub fn descriptors() -> Vec<RouteDesc> {
    vec![
        route!(post, "/api/providers", add_provider),
        route!(get, "/api/providers/{provider}/filings", filings),
        route!(post, "/api/providers/{provider}/publish", publish),
        route!(post, "/api/notices", add_notice),
        route!(post, "/api/notices/import", import_notices),
        route!(post, "/api/optouts", add_optout),
        route!(post, "/api/optouts/import", import_optouts),
        route!(post, "/api/optouts/{id}/withdraw", withdraw),
        route!(get, "/api/optouts/{id}/confirmation", confirmation),
        route!(get, "/api/providers/{provider}/patients/{patient}", patient),
        route!(post, "/api/batches", submit_batch),
        route!(get, "/api/batches/{batch}", receipt),
        route!(post, "/api/providers/{provider}/patients/{patient}/delete", delete_person),
    ]
}

fn record_err(e: RecordError) -> Response {
    match e {
        RecordError::NotFound { .. } => error(StatusCode::NOT_FOUND, &e.to_string()),
        RecordError::Invalid { .. } => error(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string()),
        RecordError::Registry(_) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

fn intake_err(e: IntakeError) -> Response {
    match e {
        IntakeError::Record(e) => record_err(e),
        other => error(StatusCode::UNPROCESSABLE_ENTITY, &other.to_string()),
    }
}

/// Records an event; a failure to record fails the request (the operation is not reported done).
fn audit(st: &AppState, c: &Caller, action: Action, kind: ObjectKind, id: impl Into<String>) -> Result<(), Response> {
    crate::record_event(st, crate::event_of(c, action, kind, id))
}

/// A patient as the audit log names them: provider and a digest, never the id itself.
pub(crate) fn patient_ref(provider: &str, patient: &str) -> String {
    let d = Sha256::digest(format!("{provider}\u{1f}{patient}").as_bytes());
    format!("{provider}/patient-{}", hex::encode(&d[..8]))
}

/// The server's key-store sealer, as the datasets' at-rest sealer (R12).
struct DatasetSealer(std::sync::Arc<dyn crate::Sealer>);

impl kiban_formats::Sealer for DatasetSealer {
    fn seal(&self, aad: &[u8], plain: &[u8]) -> Vec<u8> {
        self.0.seal(aad, plain)
    }
    fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, String> {
        self.0.open(aad, sealed).ok_or_else(|| "wrong key or damaged file".to_owned())
    }
}

pub(crate) fn dataset_sealer(st: &AppState) -> std::sync::Arc<dyn kiban_formats::Sealer> {
    std::sync::Arc::new(DatasetSealer(st.sealer.clone()))
}

fn source(c: &Caller) -> String {
    format!("http:{}", c.account_id)
}

/// A filing through HTTP: the provider (registered if new) and its filing.
#[derive(Debug, Deserialize)]
pub struct NewProvider {
    provider_id: String,
    name: String,
    #[serde(default = "default_pref")]
    pref: i64,
    #[serde(default = "default_kind")]
    kind: String,
    filed_on: NaiveDate,
    update_method: String,
    planned_start: NaiveDate,
    #[serde(default = "default_waiting")]
    waiting_days: u32,
    transmission_method: String,
    security_checked_on: Option<NaiveDate>,
    #[serde(default)]
    security_note: String,
    #[serde(default = "default_acquisition")]
    acquisition_record: String,
    #[serde(default)]
    items: BTreeMap<String, String>,
}

fn default_pref() -> i64 {
    13
}
fn default_kind() -> String {
    "filing".into()
}
fn default_waiting() -> u32 {
    DEFAULT_WAITING_DAYS
}
fn default_acquisition() -> String {
    "診療の過程で取得".into()
}

async fn add_provider(State(st): State<AppState>, Extension(c): Extension<Caller>, Json(p): Json<NewProvider>) -> Res {
    let kind = FilingKind::parse(&p.kind).map_err(record_err)?;
    st.reg
        .register_provider(&p.provider_id, &p.name, p.pref)
        .await
        .map_err(|e| error(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string()))?;
    let f = st
        .reg
        .file_provider(&FilingInput {
            provider_id: p.provider_id.clone(),
            kind,
            filed_on: p.filed_on,
            items: p.items,
            update_method: p.update_method,
            planned_start: p.planned_start,
            waiting_days: p.waiting_days,
            transmission_method: p.transmission_method,
            security_checked_on: p.security_checked_on,
            security_note: p.security_note,
            acquisition_record: p.acquisition_record,
        })
        .await
        .map_err(record_err)?;
    audit(&st, &c, Action::Write, ObjectKind::Ledger, format!("filing/{}", f.filing_id))?;
    ok(f)
}

async fn filings(State(st): State<AppState>, Extension(c): Extension<Caller>, Path(provider): Path<String>) -> Res {
    let f = st.reg.filings(&provider).await.map_err(record_err)?;
    let standing = st.reg.standing(&provider, kiban_registry::records::today_jst()).await;
    audit(&st, &c, Action::Read, ObjectKind::Ledger, format!("filings/{provider}"))?;
    let status = match standing {
        Ok(s) => {
            json!({"may_submit": true, "filing_seq": s.filing.seq, "published_on": s.publication.provider_published_on})
        }
        Err(e) => json!({"may_submit": false, "reason": e.to_string()}),
    };
    ok(json!({"filings": f, "status": status}))
}

/// The publication of a provider's latest filing.
#[derive(Debug, Deserialize)]
pub struct PublishBody {
    minister_date: NaiveDate,
    provider_date: NaiveDate,
    #[serde(default)]
    r#where: String,
}

async fn publish(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(provider): Path<String>,
    Json(b): Json<PublishBody>,
) -> Res {
    let Some(f) = st.reg.filings(&provider).await.map_err(record_err)?.pop() else {
        return Err(error(StatusCode::NOT_FOUND, &format!("provider {provider} has no filing")));
    };
    let p =
        st.reg.publish_filing(&f.filing_id, b.minister_date, b.provider_date, &b.r#where).await.map_err(record_err)?;
    audit(&st, &c, Action::Write, ObjectKind::Ledger, format!("publication/{}", f.filing_id))?;
    ok(p)
}

async fn add_notice(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Json(mut n): Json<NoticeInput>,
) -> Res {
    c.require_provider(&st, &n.provider_id)?;
    n.source = source(&c);
    let notice = st.reg.add_notice(&n).await.map_err(record_err)?;
    audit(&st, &c, Action::Write, ObjectKind::Ledger, format!("notice/{}", notice.notice_id))?;
    ok(notice)
}

fn csv_body(headers: &axum::http::HeaderMap, body: &Bytes) -> Result<Box<dyn std::io::Read + Send>, Response> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("text/csv");
    if !ct.starts_with("text/csv") && !ct.starts_with("application/octet-stream") {
        return Err(error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "send the CSV file as text/csv"));
    }
    Ok(Box::new(std::io::Cursor::new(body.to_vec())))
}

async fn import_notices(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Res {
    let input = csv_body(&headers, &body)?;
    let rep = st.reg.import_notices_for(input, &source(&c), c.providers.as_deref()).await.map_err(record_err)?;
    audit(&st, &c, Action::Write, ObjectKind::Ledger, format!("notices/import/{}", rep.recorded))?;
    ok(rep)
}

async fn add_optout(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Json(mut o): Json<OptOutInput>,
) -> Res {
    c.require_provider(&st, &o.provider_id)?;
    o.source = source(&c);
    let (ev, conf) = st.reg.add_optout(&o).await.map_err(record_err)?;
    audit(&st, &c, Action::Write, ObjectKind::Ledger, format!("optout/{}", ev.event_id))?;
    ok(json!({"optout": ev, "confirmation_id": conf.confirmation_id, "confirmation_sha256": conf.sha256}))
}

async fn import_optouts(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Res {
    let input = csv_body(&headers, &body)?;
    let rep = st.reg.import_optouts_for(input, &source(&c), c.providers.as_deref()).await.map_err(record_err)?;
    audit(&st, &c, Action::Write, ObjectKind::Ledger, format!("optouts/import/{}", rep.recorded))?;
    ok(rep)
}

/// A withdrawal of an opt-out, by the person themselves.
#[derive(Debug, Deserialize)]
pub struct WithdrawBody {
    requester_kind: RequesterKind,
    requester_name: String,
    #[serde(default)]
    requester_detail: String,
    channel: Channel,
    received_at: Option<DateTime<Utc>>,
}

async fn withdraw(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Json(b): Json<WithdrawBody>,
) -> Res {
    let of = st.reg.optout_event(&id).await.map_err(record_err)?;
    c.require_provider(&st, &of.input.provider_id)?;
    let ev = st
        .reg
        .withdraw_optout(&id, b.requester_kind, &b.requester_name, &b.requester_detail, b.channel, b.received_at)
        .await
        .map_err(record_err)?;
    audit(&st, &c, Action::Write, ObjectKind::Ledger, format!("optout/{}/withdrawal/{}", id, ev.event_id))?;
    ok(ev)
}

async fn confirmation(State(st): State<AppState>, Extension(c): Extension<Caller>, Path(id): Path<String>) -> Res {
    let conf = st.reg.confirmation(&id).await.map_err(record_err)?;
    let of = st.reg.optout_event(&conf.event_id).await.map_err(record_err)?;
    c.require_provider(&st, &of.input.provider_id)?;
    audit(&st, &c, Action::Read, ObjectKind::Ledger, format!("confirmation/{}", conf.confirmation_id))?;
    Ok(([(header::CACHE_CONTROL, "no-store")], Html(conf.html)).into_response())
}

async fn patient(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((provider, patient)): Path<(String, String)>,
) -> Res {
    let notices = st.reg.notices_of(&provider, &patient).await.map_err(record_err)?;
    let optouts = st.reg.optouts_of(&provider, &patient).await.map_err(record_err)?;
    audit(&st, &c, Action::Read, ObjectKind::Ledger, patient_ref(&provider, &patient))?;
    ok(json!({"notices": notices, "optouts": optouts}))
}

/// A batch to take in: a Parquet file the provider sent through the intake gateway.
#[derive(Debug, Deserialize)]
pub struct BatchBody {
    provider_id: String,
    provision_date: NaiveDate,
    /// The id the intake gateway returned (`received`).
    inbox: String,
    /// The table the file holds.
    table: String,
    #[serde(default)]
    bulk: bool,
    #[serde(default)]
    dry_run: bool,
}

fn safe(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

async fn submit_batch(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    vault: Option<Extension<crate::identity::SharedIdentity>>,
    Json(b): Json<BatchBody>,
) -> Res {
    c.require_provider(&st, &b.provider_id)?;
    // Identities go to the vault and clinical rows get person keys: without the vault, nothing is taken in.
    let vault = match (vault, b.dry_run) {
        (Some(Extension(v)), _) => Some(v),
        (None, true) => None,
        (None, false) => return Err(error(StatusCode::SERVICE_UNAVAILABLE, "the identity store is not open")),
    };
    if !safe(&b.provider_id) || !safe(&b.inbox) || !safe(&b.table) {
        return Err(error(StatusCode::UNPROCESSABLE_ENTITY, "provider_id, inbox and table must be plain names"));
    }
    let file = st.data_dir.join("staging/inbox").join(&b.provider_id).join(&b.inbox);
    if !file.is_file() {
        return Err(error(StatusCode::NOT_FOUND, &format!("inbox item {} of {} not found", b.inbox, b.provider_id)));
    }
    // The gate reads a directory of tables. The file goes in under a fixed name, so the batch digest
    // depends on the table and the content only and a re-sent file is caught as a duplicate.
    let dir = st.data_dir.join("staging/batches").join(format!(".{}", b.inbox));
    let _ = std::fs::remove_dir_all(&dir);
    let tdir = dir.join(&b.table);
    std::fs::create_dir_all(&tdir)
        .and_then(|_| {
            std::fs::hard_link(&file, tdir.join("part-00000.parquet"))
                .or_else(|_| std::fs::copy(&file, tdir.join("part-00000.parquet")).map(|_| ()))
        })
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, &format!("cannot stage the batch: {e}")))?;
    let creator_name = st.reg.meta("creator_name").await.ok().flatten().unwrap_or_else(|| "（名称未設定）".into());
    let creator_address =
        st.reg.meta("creator_address").await.ok().flatten().unwrap_or_else(|| "（住所未設定）".into());
    let s = Submission {
        provider_id: b.provider_id.clone(),
        provision_date: b.provision_date,
        input: dir.clone(),
        bulk: b.bulk,
        dry_run: b.dry_run,
        creator_name,
        creator_address,
        sealer: Some(dataset_sealer(&st)),
    };
    let bridge = crate::identity::bridge(&st, &c);
    let routing = vault.as_ref().map(|v| crate::identity::VaultRouting {
        store: v.as_ref(),
        audit: &bridge,
        actor: c.actor().id.clone(),
    });
    let out = kiban_registry::intake::submit_routed(
        &st.reg,
        &st.data_dir,
        &s,
        routing.as_ref().map(|r| r as &dyn kiban_registry::intake::IdentityRouting),
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    let out = out.map_err(intake_err)?;
    let ev = Event::new(
        c.actor(),
        &c.source,
        if b.dry_run { Action::Read } else { Action::Write },
        Object::new(ObjectKind::Clinical, format!("batch/{}", out.report.batch_id)),
    )
    .volume(out.report.rows_in)
    .job(JobKind::Intake, &out.report.batch_id);
    st.audit.record(ev).map_err(|_| error(StatusCode::SERVICE_UNAVAILABLE, "the audit log is unavailable"))?;
    if !b.dry_run {
        let _ = std::fs::remove_file(&file);
    }
    ok(json!({"report": out.report, "receipt_id": out.receipt.map(|r| r.receipt_id)}))
}

async fn receipt(State(st): State<AppState>, Extension(c): Extension<Caller>, Path(batch): Path<String>) -> Res {
    let mut r = st.reg.receipt(&batch).await.map_err(record_err)?;
    c.require_provider(&st, &r.provider_id)?;
    audit(&st, &c, Action::Read, ObjectKind::Ledger, format!("receipt/{}", r.receipt_id))?;
    // The admitted persons are identifying: the API gives their count, the registry keeps the list.
    let persons = std::mem::take(&mut r.persons).len();
    ok(json!({"receipt": r, "persons": persons}))
}

/// A deletion request (P7) or a deletion of what is no longer needed (C5).
#[derive(Debug, Deserialize)]
pub struct DeleteBody {
    requested_on: Option<NaiveDate>,
    #[serde(default = "default_reason")]
    reason: String,
}

fn default_reason() -> String {
    "request".into()
}

async fn delete_person(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    vault: Option<Extension<crate::identity::SharedIdentity>>,
    Path((provider, patient)): Path<(String, String)>,
    Json(b): Json<DeleteBody>,
) -> Res {
    let on = b.requested_on.unwrap_or_else(kiban_registry::records::today_jst);
    // An unknown provider is the caller's mistake (404), not a failed foreign key (500).
    if st.reg.provider(&provider).await.map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))?.is_none()
    {
        return Err(error(StatusCode::NOT_FOUND, &format!("provider {provider} is not in the registry")));
    }
    let bridge = crate::identity::bridge(&st, &c);
    let routing = vault.as_ref().map(|Extension(v)| crate::identity::VaultRouting {
        store: v.as_ref(),
        audit: &bridge,
        actor: c.actor().id.clone(),
    });
    let eraser: &dyn kiban_registry::intake::VaultDeletion = match &routing {
        Some(r) => r,
        None => &NoVault,
    };
    let d = kiban_registry::intake::delete_person(
        &st.reg,
        &st.data_dir,
        &provider,
        &patient,
        on,
        &b.reason,
        eraser,
        Some(dataset_sealer(&st)),
    )
    .await
    .map_err(intake_err)?;
    audit(&st, &c, Action::Delete, ObjectKind::Clinical, format!("deletion/{}", d.record.deletion_id))?;
    ok(
        json!({"deletion_id": d.record.deletion_id, "removed": d.removed, "batches": d.record.batches, "vault_status": d.record.vault_status}),
    )
}
