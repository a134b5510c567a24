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
use axum::response::Response;
use axum::routing::post;

use crate::deid::{TableRequest, run_blocking, table_request, table_response, unprocessable};
use crate::{AppState, Caller, RouteDesc, error};

/// The anonymization route.
pub fn descriptors() -> Vec<RouteDesc> {
    vec![RouteDesc { method: Method::POST, path: "/api/anonymize", handler: post(anonymize) }]
}

/// Anonymizes the table of the request and returns `{columns, rows, report}`.
pub async fn anonymize(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    body: Result<Json<TableRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, Response> {
    let (req, value, batch) = table_request(body)?;
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
    let out = run_blocking(move || {
        kiban_deid::anonymize(
            &policy,
            &kiban_deid::Input::Batches(vec![batch]),
            &kiban_deid::Output::Memory,
            &kiban_deid::RunOptions::default(),
        )
    })
    .await?;
    table_response(&st, &c, "anonymize", &out.report.policy_name, req.rows.len(), &out.batches, &out.report)
}
