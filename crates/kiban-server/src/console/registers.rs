//! Console pages of the remaining registers: intake batches with their gate reports (C2, C3) and
//! quarantine replay, the processing report of a run, the supervision calendar (R5, D7), leak
//! reports (I1), contractors (I4) and the vetting of an account (X2). Each calls the same registry
//! functions as the JSON API, and every read or write is audited.

use std::collections::BTreeMap;
use std::path::{Path as FsPath, PathBuf};

use askama::Template;
use axum::Form;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use chrono::{NaiveDate, TimeZone, Utc};
use kiban_audit::{Action, Event, JobKind, Object, ObjectKind};
use kiban_registry::intake::{GateReport, IntakeError, Submission};
use kiban_registry::records::{ReceiptRecord, RecordError, today_jst};
use kiban_registry::review::workflow::Due;
use serde::Deserialize;

use super::{Errors, Page, internal, render, render_status, saved, see_other};
use crate::identity::SharedIdentity;
use crate::{AppState, Res, event_of, record_event};

fn not_found(what: &str) -> axum::response::Response {
    crate::error(StatusCode::NOT_FOUND, what)
}

/// The label key of a gate or routing reason (the stored name).
pub fn reason_key(reason: &str) -> String {
    format!("reason.{reason}")
}

/// A reason shown with its label, falling back to the stored name.
fn reason_label(p: &Page, reason: &str) -> String {
    let key = reason_key(reason);
    let s = p.tr.s(&key);
    if s == key { reason.to_owned() } else { format!("{s}（{reason}）") }
}

// ---- batches ---------------------------------------------------------------------------------

/// One batch in the list.
pub struct BatchRow {
    /// Batch id.
    pub id: String,
    /// Provider.
    pub provider: String,
    /// Provision date (shown).
    pub provision: String,
    /// Received (shown).
    pub received: String,
    /// Records in.
    pub rows_in: u64,
    /// Admitted.
    pub admitted: u64,
    /// Excluded (quarantined).
    pub excluded: u64,
}

#[derive(Template)]
#[template(path = "console/batches.html")]
struct BatchesPage<'a> {
    p: &'a Page,
    rows: Vec<BatchRow>,
}

fn gate_report(r: &ReceiptRecord) -> Option<GateReport> {
    serde_json::from_value(r.gate_report.clone()).ok()
}

async fn all_receipts(st: &AppState) -> Result<Vec<ReceiptRecord>, axum::response::Response> {
    let mut out = Vec::new();
    for prov in st.reg.providers().await.map_err(internal)? {
        for b in st.reg.batches_of(&prov.provider_id).await.map_err(internal)? {
            out.push(st.reg.receipt(&b).await.map_err(internal)?);
        }
    }
    out.sort_by(|a, b| (b.received_on, &b.batch_id).cmp(&(a.received_on, &a.batch_id)));
    Ok(out)
}

/// Every batch received, newest first, with its gate counts (C3).
pub(super) async fn batches(State(st): State<AppState>, p: Page) -> Res {
    let v = all_receipts(&st).await?;
    record_event(&st, event_of(&p.caller, Action::Read, ObjectKind::Ledger, "receipt_records").volume(v.len() as u64))?;
    let rows = v
        .iter()
        .map(|r| {
            let g = gate_report(r);
            BatchRow {
                id: r.batch_id.clone(),
                provider: r.provider_id.clone(),
                provision: p.date(r.provision_date),
                received: p.date(r.received_on),
                rows_in: g.as_ref().map_or(0, |g| g.rows_in),
                admitted: g.as_ref().map_or(0, |g| g.admitted),
                excluded: g.as_ref().map_or(0, |g| g.excluded),
            }
        })
        .collect();
    Ok(render(&p, &BatchesPage { p: &p, rows }))
}

/// One quarantined table of a batch.
pub struct QuarantineRow {
    /// Table.
    pub table: String,
    /// Rows held.
    pub rows: u64,
    /// Rows by reason (label, count).
    pub reasons: Vec<(String, u64)>,
}

/// One replay of a batch's quarantine.
pub struct ReplayRow {
    /// When (shown).
    pub at: String,
    /// The new batch.
    pub batch: String,
    /// Admitted by the replay.
    pub admitted: u64,
    /// Still excluded.
    pub excluded: u64,
}

#[derive(Template)]
#[template(path = "console/batch.html")]
struct BatchPage<'a> {
    p: &'a Page,
    r: ReceiptRecord,
    g: Option<GateReport>,
    persons: usize,
    provision: String,
    received: String,
    retention: String,
    reasons: Vec<(String, u64)>,
    quarantine: Vec<QuarantineRow>,
    replays: Vec<ReplayRow>,
    replayed_from: Option<String>,
    may_replay: bool,
    errs: Errors,
    saved: bool,
}

fn quarantine_dir(st: &AppState, batch: &str) -> PathBuf {
    st.data_dir.join("quarantine").join(batch)
}

/// The tables held in a batch's quarantine: name and manifest.
fn quarantine_tables(dir: &FsPath) -> Vec<(String, PathBuf, kiban_formats::dataset::Manifest)> {
    let mut v = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return v };
    for e in rd.flatten() {
        let path = e.path();
        if let Ok(m) = kiban_formats::dataset::read_manifest(&path) {
            v.push((e.file_name().to_string_lossy().into_owned(), path, m));
        }
    }
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Counts a quarantined table's rows by reason, reading its (sealed) parts.
fn count_reasons(
    dir: &FsPath,
    m: &kiban_formats::dataset::Manifest,
    sealer: &dyn kiban_formats::Sealer,
) -> BTreeMap<String, u64> {
    use arrow::array::Array;
    let mut out = BTreeMap::new();
    for f in &m.files {
        let Ok(batches) = kiban_formats::dataset::read_part(dir, m, f, Some(sealer)) else {
            *out.entry("unreadable".to_owned()).or_default() += f.rows;
            continue;
        };
        for b in batches {
            let Some(col) = b.column_by_name("exclusion_reason") else { continue };
            let Some(s) = col.as_any().downcast_ref::<arrow::array::StringArray>() else { continue };
            for i in 0..s.len() {
                *out.entry(s.value(i).to_owned()).or_default() += 1;
            }
        }
    }
    out
}

/// Run kind of a quarantine replay in the run records.
pub const REPLAY_RUN: &str = "quarantine-replay";

async fn batch_page(st: &AppState, p: &Page, batch: &str, errs: Errors, done: bool, status: StatusCode) -> Res {
    let r = match st.reg.receipt(batch).await {
        Ok(r) => r,
        Err(RecordError::NotFound { .. }) => return Err(not_found(&format!("batch {batch} not found"))),
        Err(e) => return Err(internal(e)),
    };
    record_event(st, event_of(&p.caller, Action::Read, ObjectKind::Ledger, format!("receipt/{}", r.receipt_id)))?;
    let g = gate_report(&r);
    let reasons = g
        .as_ref()
        .map(|g| g.excluded_by_reason.iter().map(|(k, v)| (reason_label(p, k), *v)).collect())
        .unwrap_or_default();
    let sealer = crate::intake::dataset_sealer(st);
    let quarantine = quarantine_tables(&quarantine_dir(st, batch))
        .into_iter()
        .map(|(table, dir, m)| QuarantineRow {
            table,
            rows: m.rows,
            reasons: count_reasons(&dir, &m, sealer.as_ref())
                .into_iter()
                .map(|(k, v)| (reason_label(p, &k), v))
                .collect(),
        })
        .collect::<Vec<_>>();
    let mut replays = Vec::new();
    let mut replayed_from = None;
    for run in st.reg.runs(1000).await.map_err(internal)? {
        if run.kind != REPLAY_RUN {
            continue;
        }
        let Some(s) = run.summary_json.as_deref().and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
        else {
            continue;
        };
        let from = s["from_batch"].as_str().unwrap_or_default();
        let to = s["batch_id"].as_str().unwrap_or_default();
        if from == batch {
            replays.push(ReplayRow {
                at: p.time(&run.started_at),
                batch: to.to_owned(),
                admitted: s["admitted"].as_u64().unwrap_or(0),
                excluded: s["excluded"].as_u64().unwrap_or(0),
            });
        }
        if to == batch {
            replayed_from = Some(from.to_owned());
        }
    }
    let may_replay =
        !quarantine.is_empty() && st.authz.allows("POST", "/console/batches/{batch}/replay", p.caller.role);
    let page = BatchPage {
        p,
        persons: r.persons.len(),
        provision: p.date(r.provision_date),
        received: p.date(r.received_on),
        retention: p.date(r.retention_end),
        r,
        g,
        reasons,
        quarantine,
        replays,
        replayed_from,
        may_replay,
        errs,
        saved: done,
    };
    Ok(render_status(p, status, &page))
}

/// A batch: its receipt record (C2), gate report (C3), quarantine and replays.
pub(super) async fn batch(State(st): State<AppState>, p: Page, Path(id): Path<String>, uri: axum::http::Uri) -> Res {
    batch_page(&st, &p, &id, Errors::default(), saved(uri.query()), StatusCode::OK).await
}

/// Just the CSRF token.
#[derive(Debug, Default, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// Writes a quarantined table back as the provider's Parquet input: the reason and rule columns
/// dropped, each column cast back to the type the manifest recorded (CSV parts read back as text;
/// an empty text in a non-text column becomes null, as the CSV wrote it).
fn stage_table(
    dir: &FsPath,
    m: &kiban_formats::dataset::Manifest,
    sealer: &dyn kiban_formats::Sealer,
    out: &FsPath,
) -> Result<u64, String> {
    use arrow::datatypes::{DataType, Field, Schema};
    let keep: Vec<(String, DataType)> = m
        .columns
        .iter()
        .filter(|(n, _)| n != "exclusion_reason" && n != "rule")
        .map(|(n, t)| (n.clone(), t.parse::<DataType>().unwrap_or(DataType::Utf8)))
        .collect();
    let schema =
        std::sync::Arc::new(Schema::new(keep.iter().map(|(n, t)| Field::new(n, t.clone(), true)).collect::<Vec<_>>()));
    let opts = arrow::compute::CastOptions { safe: true, ..Default::default() };
    let mut batches = Vec::new();
    for f in &m.files {
        for b in kiban_formats::dataset::read_part(dir, m, f, Some(sealer)).map_err(|e| e.to_string())? {
            let mut cols = Vec::with_capacity(keep.len());
            for (n, t) in &keep {
                let c = b.column_by_name(n).ok_or_else(|| format!("{}: column {n} is missing", dir.display()))?;
                cols.push(arrow::compute::cast_with_options(c, t, &opts).map_err(|e| format!("column {n}: {e}"))?);
            }
            batches.push(arrow::record_batch::RecordBatch::try_new(schema.clone(), cols).map_err(|e| e.to_string())?);
        }
    }
    std::fs::create_dir_all(out).map_err(|e| e.to_string())?;
    kiban_formats::dataset::write_file(
        &out.join("part-00000.parquet"),
        schema,
        kiban_formats::FileFormat::Parquet,
        &batches,
    )
    .map_err(|e| e.to_string())
}

/// Replays a batch's quarantine (the operator fixed the cause: a notice recorded late, an identity
/// corrected): its records go through the gate again as of the batch's provision date, as a new
/// batch with its own receipt and gate report; what still fails lands in the new batch's
/// quarantine. The same records replayed twice are refused as an input already received.
pub(super) async fn replay(
    State(st): State<AppState>,
    p: Page,
    Path(batch): Path<String>,
    vault: Option<Extension<SharedIdentity>>,
    Form(f): Form<CsrfForm>,
) -> Res {
    p.check_csrf(&f.csrf)?;
    let r = match st.reg.receipt(&batch).await {
        Ok(r) => r,
        Err(RecordError::NotFound { .. }) => return Err(not_found(&format!("batch {batch} not found"))),
        Err(e) => return Err(internal(e)),
    };
    let mut errs = Errors::default();
    let tables = quarantine_tables(&quarantine_dir(&st, &batch));
    let Some(Extension(vault)) = vault else {
        errs.add("_form", p.tr.s("batch.no_vault"));
        return batch_page(&st, &p, &batch, errs, false, StatusCode::SERVICE_UNAVAILABLE).await;
    };
    if tables.is_empty() {
        errs.add("_form", p.tr.s("batch.nothing"));
        return batch_page(&st, &p, &batch, errs, false, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    let sealer = crate::intake::dataset_sealer(&st);
    let stage = st.data_dir.join("staging/batches").join(format!(".replay-{batch}"));
    let _ = std::fs::remove_dir_all(&stage);
    for (table, dir, m) in &tables {
        if let Err(e) = stage_table(dir, m, sealer.as_ref(), &stage.join(table)) {
            let _ = std::fs::remove_dir_all(&stage);
            return Err(internal(e));
        }
    }
    let creator_name = st.reg.meta("creator_name").await.ok().flatten().unwrap_or_else(|| "（名称未設定）".into());
    let creator_address =
        st.reg.meta("creator_address").await.ok().flatten().unwrap_or_else(|| "（住所未設定）".into());
    let s = Submission {
        provider_id: r.provider_id.clone(),
        provision_date: r.provision_date,
        input: stage.clone(),
        bulk: r.bulk_id.is_some(),
        dry_run: false,
        creator_name,
        creator_address,
        sealer: Some(sealer),
    };
    let bridge = crate::identity::bridge(&st, &p.caller);
    let routing =
        crate::identity::VaultRouting { store: vault.as_ref(), audit: &bridge, actor: p.caller.actor().id.clone() };
    let out = kiban_registry::intake::submit_routed(&st.reg, &st.data_dir, &s, Some(&routing)).await;
    let _ = std::fs::remove_dir_all(&stage);
    let out = match out {
        Ok(o) => o,
        Err(IntakeError::Record(e @ (RecordError::Invalid { .. } | RecordError::NotFound { .. }))) => {
            errs.add("_form", e.to_string());
            return batch_page(&st, &p, &batch, errs, false, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
        Err(e) => return Err(internal(e)),
    };
    let new = out.report.batch_id.clone();
    let ev = Event::new(
        p.caller.actor(),
        &p.caller.source,
        Action::Write,
        Object::new(ObjectKind::Clinical, format!("batch/{new}")),
    )
    .volume(out.report.rows_in)
    .job(JobKind::Intake, &new)
    .note(format!("quarantine replay of batch {batch}"));
    record_event(&st, ev)?;
    let run_id = format!("replay-{new}");
    let summary = serde_json::json!({"from_batch": batch, "batch_id": new, "rows_in": out.report.rows_in,
        "admitted": out.report.admitted, "excluded": out.report.excluded, "by": p.caller.account_id});
    st.reg.start_run(&run_id, REPLAY_RUN).await.map_err(internal)?;
    st.reg.finish_run(&run_id, &summary).await.map_err(internal)?;
    Ok(see_other(&format!("/console/batches/{new}?saved=1")))
}

// ---- the processing report of a run ------------------------------------------------------------

#[derive(Template)]
#[template(path = "console/run.html")]
struct RunPage<'a> {
    p: &'a Page,
    id: String,
    kind: String,
    started: String,
    finished: String,
    lines: Vec<(String, String)>,
    batch: Option<String>,
}

/// Flattens a JSON summary into `path: value` lines (arrays of stages by their stage name).
fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::Object(o) => {
            for (k, x) in o {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, x, out);
            }
        }
        serde_json::Value::Array(a) if a.iter().all(|x| x.is_object()) && !a.is_empty() => {
            for (i, x) in a.iter().enumerate() {
                let name =
                    x.get("stage").or_else(|| x.get("table")).or_else(|| x.get("column")).and_then(|s| s.as_str());
                let key = match name {
                    Some(n) => format!("{prefix}[{n}]"),
                    None => format!("{prefix}[{i}]"),
                };
                flatten(&key, x, out);
            }
        }
        serde_json::Value::String(s) => out.push((prefix.to_owned(), s.clone())),
        other => out.push((prefix.to_owned(), other.to_string())),
    }
}

/// The processing report of one run: every figure its summary recorded.
pub(super) async fn run(State(st): State<AppState>, p: Page, Path(id): Path<String>) -> Res {
    let Some(r) = st.reg.runs(10_000).await.map_err(internal)?.into_iter().find(|r| r.run_id == id) else {
        return Err(not_found(&format!("run {id} not found")));
    };
    record_event(&st, event_of(&p.caller, Action::Read, ObjectKind::Ledger, format!("run/{id}")))?;
    let v = r.summary_json.as_deref().and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok());
    let mut lines = Vec::new();
    if let Some(v) = &v {
        flatten("", v, &mut lines);
    }
    let batch = v.as_ref().and_then(|v| v.get("batch_id")).and_then(|b| b.as_str()).map(str::to_owned);
    let page = RunPage {
        p: &p,
        started: p.time(&r.started_at),
        finished: r.finished_at.as_deref().map(|f| p.time(f)).unwrap_or_else(|| "—".into()),
        id: r.run_id,
        kind: r.kind,
        lines,
        batch,
    };
    Ok(render(&p, &page))
}

// ---- supervision calendar --------------------------------------------------------------------------

/// One due item of the calendar.
pub struct DueRow {
    /// Due date (for sorting; shown).
    pub on: Option<NaiveDate>,
    /// Shown date.
    pub date: String,
    /// Application.
    pub application: String,
    /// What is due.
    pub what: String,
    /// Past due.
    pub overdue: bool,
}

#[derive(Template)]
#[template(path = "console/supervision.html")]
struct SupervisionPage<'a> {
    p: &'a Page,
    today: String,
    rows: Vec<DueRow>,
}

/// What is due on `as_of` across all applications (R5, D7): reports, audits, deletion
/// certificates, ended entitlements. Read only: ending an entitlement is the supervision run's.
pub(super) async fn supervision(State(st): State<AppState>, p: Page) -> Res {
    let today = today_jst();
    let mut rows = Vec::new();
    for a in st.reg.applications().await.map_err(internal)? {
        let s = st.reg.application_state(&a.application_id).await.map_err(internal)?;
        for d in kiban_registry::review::workflow::supervision_due(&s, today) {
            let (on, what, overdue) = match &d {
                Due::UsageReport { published_on, due_on, overdue } => (
                    Some(*due_on),
                    format!("{}（{} {}）", p.tr.s("due.usage_report"), p.tr.s("due.published"), p.date(*published_on)),
                    *overdue,
                ),
                Due::ManagementReport { due_on } => {
                    (Some(*due_on), p.tr.s("due.management_report").to_owned(), *due_on < today)
                }
                Due::EntitlementExpired { usage_to } => (
                    Some(*usage_to),
                    format!("{}（{} {}）", p.tr.s("due.expired"), p.tr.s("due.usage_to"), p.date(*usage_to)),
                    true,
                ),
                Due::DeletionCertificate { place_id } => {
                    (None, format!("{}: {place_id}", p.tr.s("due.deletion_certificate")), true)
                }
                Due::Audit { due_on } => (Some(*due_on), p.tr.s("due.audit").to_owned(), *due_on < today),
            };
            rows.push(DueRow {
                on,
                date: on.map(|d| p.date(d)).unwrap_or_else(|| "—".into()),
                application: a.application_id.clone(),
                what,
                overdue,
            });
        }
    }
    rows.sort_by_key(|r| (!r.overdue, r.on));
    record_event(&st, event_of(&p.caller, Action::Read, ObjectKind::Ledger, "supervision").volume(rows.len() as u64))?;
    Ok(render(&p, &SupervisionPage { p: &p, today: p.date(today), rows }))
}

// ---- leak reports (I1) -------------------------------------------------------------------------------

/// The first-report form.
#[derive(Debug, Default, Deserialize)]
pub struct LeakForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    detected_on: String,
    #[serde(default)]
    possibly_malicious: Option<String>,
    #[serde(default)]
    summary: String,
    #[serde(default)]
    items: String,
    #[serde(default)]
    persons: String,
    #[serde(default)]
    cause: String,
}

/// One leak report row.
pub struct LeakRow {
    /// Id.
    pub id: String,
    /// Detected (shown).
    pub detected: String,
    /// Deadline of the confirmed report (shown).
    pub deadline: String,
    /// Summary.
    pub summary: String,
    /// Persons.
    pub persons: i64,
    /// Confirmed report.
    pub final_report: bool,
    /// Past the deadline without a confirmed report.
    pub overdue: bool,
    /// Possibly malicious.
    pub malicious: bool,
}

#[derive(Template)]
#[template(path = "console/leaks.html")]
struct LeaksPage<'a> {
    p: &'a Page,
    rows: Vec<LeakRow>,
    f: LeakForm,
    errs: Errors,
    saved: bool,
    may_add: bool,
}

async fn leaks_page(st: &AppState, p: &Page, f: LeakForm, errs: Errors, done: bool, status: StatusCode) -> Res {
    let all = st.reg.leak_reports().await.map_err(internal)?;
    let overdue: Vec<String> =
        st.reg.overdue_leak_reports(crate::now()).await.map_err(internal)?.into_iter().map(|r| r.report_id).collect();
    record_event(st, event_of(&p.caller, Action::Read, ObjectKind::Ledger, "leak_reports").volume(all.len() as u64))?;
    let rows = all
        .into_iter()
        .rev()
        .map(|r| LeakRow {
            overdue: overdue.contains(&r.report_id),
            detected: p.time(&r.detected_at),
            deadline: p.time(&r.deadline),
            summary: r.items.summary,
            persons: r.items.persons,
            final_report: r.final_report,
            malicious: r.possibly_malicious,
            id: r.report_id,
        })
        .collect();
    let may_add = st.authz.allows("POST", "/console/leaks", p.caller.role);
    Ok(render_status(p, status, &LeaksPage { p, rows, f, errs, saved: done, may_add }))
}

/// Leak reports with their deadlines (30 days, 60 when possibly malicious).
pub(super) async fn leaks(State(st): State<AppState>, p: Page, uri: axum::http::Uri) -> Res {
    let f = LeakForm { detected_on: today_jst().to_string(), ..Default::default() };
    leaks_page(&st, &p, f, Errors::default(), saved(uri.query()), StatusCode::OK).await
}

/// Records a first report (速報).
pub(super) async fn add_leak(State(st): State<AppState>, p: Page, Form(f): Form<LeakForm>) -> Res {
    p.check_csrf(&f.csrf)?;
    let tr = p.tr;
    let mut errs = Errors::default();
    let on = errs.date(tr, "detected_on", &f.detected_on);
    let summary = errs.required(tr, "summary", &f.summary);
    let persons = match f.persons.trim() {
        "" => 0,
        s => s.parse::<i64>().ok().filter(|n| *n >= 0).unwrap_or_else(|| {
            errs.add("persons", tr.s("err.number"));
            0
        }),
    };
    if let Some(d) = on
        && d > today_jst()
    {
        errs.add("detected_on", tr.s("err.future"));
    }
    if let (true, Some(on)) = (errs.is_empty(), on) {
        // Detection is recorded as the start of that day in Japan time.
        let jst = chrono::FixedOffset::east_opt(9 * 3600).expect("JST");
        let at = jst
            .from_local_datetime(&on.and_hms_opt(0, 0, 0).expect("midnight"))
            .single()
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(crate::now);
        let items = kiban_registry::incidents::LeakItems {
            summary,
            items: f.items.trim().to_owned(),
            persons,
            cause: f.cause.trim().to_owned(),
            ..Default::default()
        };
        match st
            .reg
            .open_leak_report(at, f.possibly_malicious.is_some(), &items, &p.caller.account_id, crate::now())
            .await
        {
            Ok(r) => {
                record_event(
                    &st,
                    event_of(&p.caller, Action::Write, ObjectKind::Ledger, &r.report_id).note("leak first report"),
                )?;
                return Ok(see_other("/console/leaks?saved=1"));
            }
            Err(kiban_registry::incidents::RecordError::Registry(e)) => return Err(internal(e)),
            Err(e) => errs.add("_form", e.to_string()),
        }
    }
    leaks_page(&st, &p, f, errs, false, StatusCode::UNPROCESSABLE_ENTITY).await
}

// ---- contractors (I4) -------------------------------------------------------------------------------

/// The contract form: the items 003 art.21 names.
#[derive(Debug, Default, Deserialize)]
pub struct ContractorForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    certification: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    procedures: String,
    #[serde(default)]
    right_to_verify: String,
    #[serde(default)]
    instructions: String,
    #[serde(default)]
    instruction_checks: String,
    #[serde(default)]
    reporting: String,
    #[serde(default)]
    other_terms: String,
    #[serde(default)]
    contracted_on: String,
}

/// The contract fields with their label keys, in the form's order (the last is optional).
pub const CONTRACT_FIELDS: &[(&str, &str)] = &[
    ("name", "ctr.name"),
    ("certification", "ctr.certification"),
    ("scope", "ctr.scope"),
    ("procedures", "ctr.procedures"),
    ("right_to_verify", "ctr.right_to_verify"),
    ("instructions", "ctr.instructions"),
    ("instruction_checks", "ctr.instruction_checks"),
    ("reporting", "ctr.reporting"),
];

/// One contractor row.
pub struct ContractorRow {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Certification.
    pub certification: String,
    /// Scope.
    pub scope: String,
    /// Contract date (shown).
    pub contracted: String,
    /// Audits: date, findings, passed.
    pub audits: Vec<(String, String, bool)>,
}

#[derive(Template)]
#[template(path = "console/contractors.html")]
struct ContractorsPage<'a> {
    p: &'a Page,
    rows: Vec<ContractorRow>,
    f: ContractorForm,
    errs: Errors,
    saved: bool,
    may_add: bool,
}

impl ContractorForm {
    /// The typed value of a field by name (for the form's loop).
    pub fn get(&self, field: &str) -> &str {
        match field {
            "name" => &self.name,
            "certification" => &self.certification,
            "scope" => &self.scope,
            "procedures" => &self.procedures,
            "right_to_verify" => &self.right_to_verify,
            "instructions" => &self.instructions,
            "instruction_checks" => &self.instruction_checks,
            "reporting" => &self.reporting,
            "other_terms" => &self.other_terms,
            _ => "",
        }
    }
}

async fn contractors_page(
    st: &AppState,
    p: &Page,
    f: ContractorForm,
    errs: Errors,
    done: bool,
    status: StatusCode,
) -> Res {
    let v = st.reg.contractors().await.map_err(internal)?;
    record_event(st, event_of(&p.caller, Action::Read, ObjectKind::Ledger, "contractors").volume(v.len() as u64))?;
    let rows = v
        .into_iter()
        .map(|c| ContractorRow {
            contracted: p.time(&c.contract.contracted_on),
            audits: c.audits.iter().map(|(on, _, findings, ok)| (p.time(on), findings.clone(), *ok)).collect(),
            id: c.contractor_id,
            name: c.contract.name,
            certification: c.contract.certification,
            scope: c.contract.scope,
        })
        .collect();
    let may_add = st.authz.allows("POST", "/console/contractors", p.caller.role);
    Ok(render_status(p, status, &ContractorsPage { p, rows, f, errs, saved: done, may_add }))
}

/// Contractors (委託先) with their contracts and audits.
pub(super) async fn contractors(State(st): State<AppState>, p: Page, uri: axum::http::Uri) -> Res {
    let f = ContractorForm { contracted_on: today_jst().to_string(), ..Default::default() };
    contractors_page(&st, &p, f, Errors::default(), saved(uri.query()), StatusCode::OK).await
}

/// Records a contractor's written contract; every item of 003 art.21 is required.
pub(super) async fn add_contractor(State(st): State<AppState>, p: Page, Form(f): Form<ContractorForm>) -> Res {
    p.check_csrf(&f.csrf)?;
    let tr = p.tr;
    let mut errs = Errors::default();
    let vals: Vec<String> = CONTRACT_FIELDS.iter().map(|(k, _)| errs.required(tr, k, f.get(k))).collect();
    let on = errs.date(tr, "contracted_on", &f.contracted_on);
    if let (true, Some(on)) = (errs.is_empty(), on) {
        let c = kiban_registry::incidents::Contract {
            name: vals[0].clone(),
            certification: vals[1].clone(),
            scope: vals[2].clone(),
            procedures: vals[3].clone(),
            right_to_verify: vals[4].clone(),
            instructions: vals[5].clone(),
            instruction_checks: vals[6].clone(),
            reporting: vals[7].clone(),
            other_terms: f.other_terms.trim().to_owned(),
            contracted_on: on.to_string(),
        };
        match st.reg.record_contractor(&c, &p.caller.account_id, crate::now()).await {
            Ok(r) => {
                record_event(
                    &st,
                    event_of(&p.caller, Action::Write, ObjectKind::Ledger, &r.contractor_id)
                        .note("contractor recorded"),
                )?;
                return Ok(see_other("/console/contractors?saved=1"));
            }
            Err(kiban_registry::incidents::RecordError::Registry(e)) => return Err(internal(e)),
            Err(e) => errs.add("_form", e.to_string()),
        }
    }
    contractors_page(&st, &p, f, errs, false, StatusCode::UNPROCESSABLE_ENTITY).await
}

// ---- the vetting of an account (X2) ---------------------------------------------------------------

/// The vetting form: one checkbox per disqualification ground, the pledge, how it was checked.
#[derive(Debug, Default, Deserialize)]
pub struct VettingForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    checked_on: String,
    #[serde(default)]
    adult_guardianship: Option<String>,
    #[serde(default)]
    bankruptcy: Option<String>,
    #[serde(default)]
    conviction_on: String,
    #[serde(default)]
    revoked_officer: Option<String>,
    #[serde(default)]
    organized_crime: Option<String>,
    #[serde(default)]
    pledge_signed: Option<String>,
    #[serde(default)]
    note: String,
}

/// The disqualification checkboxes with their label keys.
pub const GROUNDS: &[(&str, &str)] = &[
    ("adult_guardianship", "vet.adult_guardianship"),
    ("bankruptcy", "vet.bankruptcy"),
    ("revoked_officer", "vet.revoked_officer"),
    ("organized_crime", "vet.organized_crime"),
];

#[derive(Template)]
#[template(path = "console/account.html")]
struct AccountPage<'a> {
    p: &'a Page,
    id: String,
    login: String,
    name: String,
    role: String,
    vetting: Option<(String, Vec<String>, bool, String)>,
    trainings: Vec<(String, String, String)>,
    clearance: Vec<String>,
    f: VettingForm,
    errs: Errors,
    saved: bool,
    may_vet: bool,
}

impl VettingForm {
    /// Whether a checkbox is ticked.
    pub fn ticked(&self, field: &str) -> bool {
        match field {
            "adult_guardianship" => self.adult_guardianship.is_some(),
            "bankruptcy" => self.bankruptcy.is_some(),
            "revoked_officer" => self.revoked_officer.is_some(),
            "organized_crime" => self.organized_crime.is_some(),
            "pledge_signed" => self.pledge_signed.is_some(),
            _ => false,
        }
    }
}

async fn account_page(
    st: &AppState,
    p: &Page,
    id: &str,
    f: VettingForm,
    errs: Errors,
    done: bool,
    status: StatusCode,
) -> Res {
    let a = match st.reg.account(id).await {
        Ok(a) => a,
        Err(kiban_registry::RegistryError::NotFound { .. }) => {
            return Err(not_found(&format!("account {id} not found")));
        }
        Err(e) => return Err(internal(e)),
    };
    record_event(st, event_of(&p.caller, Action::Read, ObjectKind::Session, id).note("vetting and training"))?;
    let today = today_jst();
    let vetting = st.reg.latest_vetting(id).await.map_err(internal)?.map(|v| {
        let d = v.disqualifications(today);
        (p.date(v.checked_on), d, v.pledge_signed, v.note)
    });
    let trainings = st
        .reg
        .trainings(id)
        .await
        .map_err(internal)?
        .into_iter()
        .map(|t| (t.course, p.time(&t.completed_on), p.time(&t.expires_on)))
        .collect();
    let clearance = st.reg.clearance(id, a.role, today).await.map_err(internal)?;
    let page = AccountPage {
        p,
        id: a.account_id.clone(),
        login: a.login,
        name: a.display_name,
        role: p.tr.s(super::role_key(a.role)).to_owned(),
        vetting,
        trainings,
        clearance,
        f,
        errs,
        saved: done,
        may_vet: st.authz.allows("POST", "/console/accounts/{id}/vetting", p.caller.role),
    };
    Ok(render_status(p, status, &page))
}

/// An account's vetting, training and clearance for its role.
pub(super) async fn account(State(st): State<AppState>, p: Page, Path(id): Path<String>, uri: axum::http::Uri) -> Res {
    let f = VettingForm { checked_on: today_jst().to_string(), ..Default::default() };
    account_page(&st, &p, &id, f, Errors::default(), saved(uri.query()), StatusCode::OK).await
}

/// Records a disqualification check (append-only).
pub(super) async fn add_vetting(
    State(st): State<AppState>,
    p: Page,
    Path(id): Path<String>,
    Form(f): Form<VettingForm>,
) -> Res {
    p.check_csrf(&f.csrf)?;
    let tr = p.tr;
    let mut errs = Errors::default();
    let on = errs.date(tr, "checked_on", &f.checked_on);
    let conviction = match f.conviction_on.trim() {
        "" => None,
        s => {
            let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok();
            if d.is_none() {
                errs.add("conviction_on", tr.s("err.date"));
            }
            d
        }
    };
    let note = errs.required(tr, "note", &f.note);
    if let (true, Some(on)) = (errs.is_empty(), on) {
        let v = kiban_registry::accounts::Vetting {
            checked_on: on,
            adult_guardianship: f.ticked("adult_guardianship"),
            bankruptcy: f.ticked("bankruptcy"),
            conviction_on: conviction,
            revoked_officer: f.ticked("revoked_officer"),
            organized_crime: f.ticked("organized_crime"),
            pledge_signed: f.ticked("pledge_signed"),
            note,
        };
        match st.reg.record_vetting(&id, &v, &p.caller.account_id, crate::now()).await {
            Ok(vid) => {
                record_event(
                    &st,
                    event_of(&p.caller, Action::Write, ObjectKind::Ledger, &vid)
                        .note("disqualification check recorded"),
                )?;
                return Ok(see_other(&format!("/console/accounts/{id}?saved=1")));
            }
            Err(kiban_registry::RegistryError::NotFound { .. }) => {
                return Err(not_found(&format!("account {id} not found")));
            }
            Err(e) => return Err(internal(e)),
        }
    }
    account_page(&st, &p, &id, f, errs, false, StatusCode::UNPROCESSABLE_ENTITY).await
}
