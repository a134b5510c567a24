//! `POST /api/deid/text`: the Japanese free-text de-identifier (S5) over HTTP. The text is
//! processed in memory and returned; neither the text nor what was found is logged or stored —
//! the audit entry carries only the caller, the mode and the byte count.

// Handlers return `Result<Response, Response>`, axum's usual shape; both sides are responses.
#![allow(clippy::result_large_err)]

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kiban_audit::{Action, AuditSink, Event, Object, ObjectKind};
use kiban_deid::text::{DocContext, Replace, Tag, TextConfig, deidentify};
use serde::Deserialize;
use serde_json::json;

use crate::{AppState, Caller, error};

/// The request body.
#[derive(Deserialize)]
pub struct DeidRequest {
    /// The text (UTF-8; JSON guarantees it).
    text: String,
    /// `tag` (default: everything becomes its tag), `surrogate` (names and places replaced by
    /// surrogates consistent within the text) or `pseudo` (dates shifted, ages of 90+ top-coded).
    #[serde(default)]
    mode: Option<String>,
    /// Days dates are moved by in `pseudo` mode.
    #[serde(default)]
    shift_days: i64,
}

/// Largest text accepted in one request (bytes): a long discharge summary is far below it.
const MAX_TEXT: usize = 8 << 20;

/// De-identifies the text of the request and returns `{text, spans: [{start, end, tag}]}`.
pub async fn deid_text(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    body: Result<Json<DeidRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, Response> {
    let Json(req) = body.map_err(|e| error(StatusCode::UNPROCESSABLE_ENTITY, &format!("request body: {e}")))?;
    if req.text.len() > MAX_TEXT {
        return Err(error(StatusCode::PAYLOAD_TOO_LARGE, "text: longer than 8 MiB (rule: one document per request)"));
    }
    let mode = req.mode.as_deref().unwrap_or("tag");
    let cfg = match mode {
        "tag" => TextConfig::default(),
        "surrogate" => {
            let mut c = TextConfig::default();
            for t in [Tag::Person, Tag::Location, Tag::Hospital] {
                c.replace.insert(t, Replace::Surrogate);
            }
            c
        }
        "pseudo" => TextConfig::pseudonymization(),
        other => {
            return Err(error(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("mode: {other:?} is not one of tag, surrogate, pseudo"),
            ));
        }
    };
    let bytes = req.text.len() as u64;
    let ctx = DocContext { date_offset_days: req.shift_days, surrogate_seed: rand::random() };
    let d = tokio::task::spawn_blocking(move || deidentify(&req.text, &cfg, &ctx))
        .await
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))?;
    let ev =
        Event::new(c.actor(), &c.source, Action::Write, Object::new(ObjectKind::Clinical, format!("deid-text/{mode}")))
            .volume(bytes);
    st.audit.record(ev).map_err(|_| error(StatusCode::SERVICE_UNAVAILABLE, "the audit log is unavailable"))?;
    let spans: Vec<_> = d.spans.iter().map(|s| json!({"start": s.start, "end": s.end, "tag": s.tag.name()})).collect();
    Ok(Json(json!({"text": d.text, "spans": spans})).into_response())
}
