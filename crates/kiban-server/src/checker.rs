//! The publication checker over HTTP (O1–O9, D9): a table and its declaration in, the report and
//! the protected table out (JSON, or the Japanese HTML report with `?format=html`). Nothing is
//! stored; the audit records the table's digest and the verdict, never its cells.

// Handlers return `Result<Response, Response>`, axum's usual shape; both sides are responses.
#![allow(clippy::result_large_err)]

use axum::Json;
use axum::extract::{Extension, Query, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::post;
use kiban_audit::{Action, AuditSink, Event, Object, ObjectKind};
use kiban_disclosure::areas::AreaTable;
use kiban_disclosure::decl::Declaration;
use kiban_disclosure::report::{Mode, html};
use kiban_disclosure::table::RawTable;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::{AppState, Caller, RouteDesc, error};

/// The checker's route.
pub fn descriptors() -> Vec<RouteDesc> {
    vec![RouteDesc { method: Method::POST, path: "/api/check-output", handler: post(check) }]
}

/// A table to check.
#[derive(Debug, Deserialize)]
pub struct CheckBody {
    /// The aggregate table as CSV text (long or wide, with or without margins).
    table_csv: String,
    /// The declaration (TOML) of its dimensions.
    declaration: String,
    /// The operator's 二次医療圏 population table (CSV), when the table has that dimension.
    areas_csv: Option<String>,
    /// check, suppress or round.
    #[serde(default = "default_mode")]
    mode: String,
}

fn default_mode() -> String {
    "check".into()
}

/// `?format=html` for the Japanese report page.
#[derive(Debug, Deserialize)]
pub struct Format {
    format: Option<String>,
}

async fn check(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    Query(f): Query<Format>,
    Json(b): Json<CheckBody>,
) -> Result<Response, Response> {
    let bad = |e: &dyn std::fmt::Display| error(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string());
    let mode: Mode = b.mode.parse().map_err(|e: String| bad(&e))?;
    let decl = Declaration::from_toml(&b.declaration).map_err(|e| bad(&e))?;
    let raw = RawTable::from_csv_str("table.csv", &b.table_csv).map_err(|e| bad(&e))?;
    let areas =
        b.areas_csv.as_deref().map(|t| AreaTable::from_csv_str("areas.csv", t)).transpose().map_err(|e| bad(&e))?;
    let input_sha = hex::encode(Sha256::digest(b.table_csv.as_bytes()));
    let checked = tokio::task::spawn_blocking(move || {
        kiban_disclosure::api::check_table(&raw, &input_sha, &decl, areas.as_ref(), mode, &[])
    })
    .await
    .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))?
    .map_err(|e| bad(&e))?;
    let verdict = if checked.report.passed { "passed" } else { "failed" };
    let ev = Event::new(
        c.actor(),
        &c.source,
        Action::Verify,
        Object::new(ObjectKind::Clinical, format!("output-check/{}/{verdict}", checked.report.table_sha256)),
    );
    st.audit.record(ev).map_err(|_| error(StatusCode::SERVICE_UNAVAILABLE, "the audit log is unavailable"))?;
    if f.format.as_deref() == Some("html") {
        let page = html(&checked.report, &checked.cube, &checked.status);
        return Ok(([(header::CACHE_CONTROL, "no-store")], Html(page)).into_response());
    }
    let report: serde_json::Value = serde_json::from_str(&checked.report.to_json()).expect("report is JSON");
    let protected = (mode != Mode::Check).then_some(checked.csv);
    Ok(Json(serde_json::json!({"report": report, "protected_csv": protected})).into_response())
}
