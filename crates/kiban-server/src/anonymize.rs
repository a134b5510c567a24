//! `POST /api/anonymize`: anonymization (匿名加工, A1–A7) of a small table under a policy sent with
//! the request. Bulk runs use `kiban anonymize`. The table is processed in memory and returned with
//! the processing report; neither the data nor the report is stored or logged — the audit entry
//! carries the caller, the policy name and the number of rows.

// Handlers return `Result<Response, Response>`, axum's usual shape; both sides are responses.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use kiban_audit::{Action, AuditSink, Event, Object, ObjectKind};
use serde::Deserialize;
use serde_json::json;

use crate::{AppState, Caller, RouteDesc, error};

/// The anonymization route.
pub fn descriptors() -> Vec<RouteDesc> {
    vec![RouteDesc { method: Method::POST, path: "/api/anonymize", handler: post(anonymize) }]
}

/// The body of `POST /api/anonymize`: a policy and a small table.
#[derive(Deserialize)]
pub struct AnonymizeRequest {
    /// The processing policy (TOML); hierarchies must be builders, not files.
    policy: String,
    /// Column names.
    columns: Vec<String>,
    /// Rows of text values (`null` for a missing value).
    rows: Vec<Vec<Option<String>>>,
}

/// Largest table accepted in one request (rows); bulk runs use `kiban anonymize`.
const MAX_ROWS: usize = 100_000;

/// Anonymizes the table of the request and returns `{columns, rows, report}`.
pub async fn anonymize(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    body: Result<Json<AnonymizeRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, Response> {
    use kiban_deid::pseudo::{rows_of, table_from_rows};
    let Json(req) = body.map_err(|e| error(StatusCode::UNPROCESSABLE_ENTITY, &format!("request body: {e}")))?;
    if req.rows.len() > MAX_ROWS {
        return Err(error(StatusCode::PAYLOAD_TOO_LARGE, "rows: more than 100000 (rule: bulk runs use the CLI)"));
    }
    let unprocessable = |e: kiban_deid::DeidError| error(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string());
    let value: toml::Value = toml::from_str(&req.policy)
        .map_err(|e| error(StatusCode::UNPROCESSABLE_ENTITY, &format!("policy: not valid TOML: {e}")))?;
    if let Some(h) = value.get("hierarchies").and_then(|h| h.as_table())
        && let Some((name, _)) = h.iter().find(|(_, v)| v.get("file").is_some())
    {
        return Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("policy: hierarchy {name}: file is not accepted over HTTP (rule: no file path from a request)"),
        ));
    }
    let policy = kiban_deid::Policy::from_toml(&req.policy, std::path::Path::new("/nonexistent"), &BTreeMap::new())
        .map_err(unprocessable)?;
    let batch = table_from_rows(&req.columns, &req.rows).map_err(unprocessable)?;
    let rows = req.rows.len() as u64;
    let out = tokio::task::spawn_blocking(move || {
        kiban_deid::anonymize(
            &policy,
            &kiban_deid::Input::Batches(vec![batch]),
            &kiban_deid::Output::Memory,
            &kiban_deid::RunOptions::default(),
        )
    })
    .await
    .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))?
    .map_err(unprocessable)?;
    let ev = Event::new(
        c.actor(),
        &c.source,
        Action::Write,
        Object::new(ObjectKind::Clinical, format!("anonymize/{}", out.report.policy_name)),
    )
    .volume(rows);
    st.audit.record(ev).map_err(|_| error(StatusCode::SERVICE_UNAVAILABLE, "the audit log is unavailable"))?;
    let (columns, rows) = rows_of(&out.batches);
    Ok(Json(json!({"columns": columns, "rows": rows, "report": out.report})).into_response())
}
