//! The two gateways of R12, run as separate processes: the intake gateway only receives
//! submissions into `<data-dir>/staging/inbox` (no route returns data, and this module has no
//! outbound client); the release gateway only serves prepared packages from
//! `<data-dir>/releases/outbox` to authenticated recipients (no route accepts a body).
//! Both sit behind the same authorization layer and table as the main server.

use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kiban_audit::{Action, Event, Object, ObjectKind};

use crate::{AppState, Caller, RouteDesc, audit_role, error};

/// The largest submission accepted in one request.
pub const MAX_SUBMISSION: usize = 256 << 20;

/// The intake gateway's routes: POST only.
pub fn intake_routes() -> Vec<RouteDesc> {
    vec![RouteDesc { method: Method::POST, path: "/intake/{provider}/{name}", handler: post(submit) }]
}

/// The release gateway's routes: GET only.
pub fn release_routes() -> Vec<RouteDesc> {
    vec![
        RouteDesc { method: Method::GET, path: "/release/packages", handler: get(list_packages) },
        RouteDesc { method: Method::GET, path: "/release/packages/{name}", handler: get(download) },
    ]
}

fn safe_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

async fn submit(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((provider, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    if !safe_name(&provider) || !safe_name(&name) || body.len() > MAX_SUBMISSION {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "bad provider, file name or size");
    }
    let dir = st.data_dir.join("staging").join("inbox").join(&provider);
    let id = format!("{}-{name}", chrono::Utc::now().format("%Y%m%dT%H%M%S%.3f"));
    let tmp = dir.join(format!(".{id}.partial"));
    let result = std::fs::create_dir_all(&dir)
        .and_then(|_| std::fs::write(&tmp, &body))
        .and_then(|_| std::fs::rename(&tmp, dir.join(&id)));
    if result.is_err() {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "cannot store the submission");
    }
    let ev = Event::new(
        kiban_audit::Actor::new(&c.account_id, audit_role(c.role)),
        &c.source,
        Action::Write,
        Object::new(ObjectKind::Clinical, format!("inbox/{provider}/{id}")),
    )
    .volume(body.len() as u64)
    .job(kiban_audit::JobKind::Intake, &id);
    if kiban_audit::AuditSink::record(&*st.audit, ev).is_err() {
        let _ = std::fs::remove_file(dir.join(&id));
        return error(StatusCode::SERVICE_UNAVAILABLE, "the audit log is unavailable");
    }
    (StatusCode::ACCEPTED, axum::Json(serde_json::json!({"received": id, "bytes": body.len()}))).into_response()
}

fn outbox(st: &AppState) -> std::path::PathBuf {
    st.data_dir.join("releases").join("outbox")
}

async fn list_packages(State(st): State<AppState>, Extension(c): Extension<Caller>) -> Response {
    // Each recipient sees only the packages prepared for them: outbox/<account id>/.
    let dir = outbox(&st).join(&c.account_id);
    let names: Vec<String> = std::fs::read_dir(dir)
        .map(|it| it.flatten().filter_map(|e| e.file_name().into_string().ok()).filter(|n| safe_name(n)).collect())
        .unwrap_or_default();
    axum::Json(names).into_response()
}

async fn download(State(st): State<AppState>, Extension(c): Extension<Caller>, Path(name): Path<String>) -> Response {
    if !safe_name(&name) {
        return error(StatusCode::NOT_FOUND, "no such package");
    }
    let path = outbox(&st).join(&c.account_id).join(&name);
    let Ok(data) = std::fs::read(&path) else {
        return error(StatusCode::NOT_FOUND, "no such package");
    };
    let ev = Event::new(c.actor(), &c.source, Action::Download, Object::new(ObjectKind::Release, &name))
        .volume(data.len() as u64);
    if kiban_audit::AuditSink::record(&*st.audit, ev).is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the audit log is unavailable");
    }
    ([(header::CONTENT_TYPE, "application/octet-stream")], data).into_response()
}
