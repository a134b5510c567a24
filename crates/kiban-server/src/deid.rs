//! `POST /api/deid/text`: the Japanese free-text de-identifier (S5) over HTTP, and
//! `POST /api/pseudonymize`: pseudonymization (S1–S3, S5, S6) of a small table. Data is processed
//! in memory and returned; neither the data nor what was found is logged or stored — the audit
//! entry carries only the caller, the mode or policy name and the volume.

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

/// The body of the table routes (`POST /api/pseudonymize`, `POST /api/anonymize`): a policy and a
/// small table.
#[derive(Deserialize)]
pub struct TableRequest {
    /// The policy (TOML); no file path in it is accepted over HTTP.
    pub(crate) policy: String,
    /// Column names.
    pub(crate) columns: Vec<String>,
    /// Rows of text values (`null` for a missing value).
    pub(crate) rows: Vec<Vec<Option<String>>>,
    /// `/api/pseudonymize`: the release whose pseudonym domain keys the tokens (default: a fresh
    /// domain of its own, so tokens link nothing across requests).
    #[serde(default)]
    pub(crate) release: Option<String>,
    /// `/api/pseudonymize`: join the tokens of this earlier release (needs `application`).
    #[serde(default)]
    pub(crate) link_to: Option<String>,
    /// The approved application whose linkage names `link_to`.
    #[serde(default)]
    pub(crate) application: Option<String>,
}

/// The `keyed_digest` purpose of table-token keys under a release's pseudonym key.
const TABLE_TOKENS: &str = "deid/table-tokens/v1";

/// The token key of a release for table pseudonymization (S2, A3): derived from the release's
/// pseudonym domain (kiban-identity `release.rs`, registered on first use), or from the earlier
/// release's domain when the linkage is allowed. The CLI, `/api/pseudonymize` and the release
/// pipeline all take their key from here, so the same release gives the same tokens everywhere.
pub fn release_table_key(
    ks: &mut kiban_identity::keystore::KeyStore,
    release: &str,
    linkage: Option<&kiban_registry::review::package::LinkageAllowed>,
) -> Result<kiban_registry::review::package::ReleaseDomainKey, String> {
    let l = linkage.map(|l| kiban_identity::release::LinkageDecision {
        earlier_release: l.earlier_release.clone(),
        decision: l.decision.clone(),
    });
    let (pk, d) = kiban_identity::release::release_key(ks, release, l.as_ref()).map_err(|e| e.to_string())?;
    let key = kiban_deid::ReleaseKey::new(pk.keyed_digest(TABLE_TOKENS, &[]).to_vec()).map_err(|e| e.to_string())?;
    Ok(kiban_registry::review::package::ReleaseDomainKey { key, domain: d.domain })
}

/// Largest table accepted in one request (rows); bulk runs use the CLI.
const MAX_ROWS: usize = 100_000;

/// A table route's request, checked at the boundary: the size, the policy as TOML (for the caller's
/// no-file-path rule) and the table as a batch. A failure is the 4xx response naming the field.
pub(crate) fn table_request(
    body: Result<Json<TableRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(TableRequest, toml::Value, arrow::record_batch::RecordBatch), Response> {
    let Json(req) = body.map_err(|e| error(StatusCode::UNPROCESSABLE_ENTITY, &format!("request body: {e}")))?;
    if req.rows.len() > MAX_ROWS {
        return Err(error(StatusCode::PAYLOAD_TOO_LARGE, "rows: more than 100000 (rule: bulk runs use the CLI)"));
    }
    let value: toml::Value = toml::from_str(&req.policy)
        .map_err(|e| error(StatusCode::UNPROCESSABLE_ENTITY, &format!("policy: not valid TOML: {e}")))?;
    let batch = kiban_deid::pseudo::table_from_rows(&req.columns, &req.rows).map_err(unprocessable)?;
    Ok((req, value, batch))
}

/// A kiban-deid refusal as 422 (its message names the column and the rule).
pub(crate) fn unprocessable(e: kiban_deid::DeidError) -> Response {
    error(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string())
}

/// Runs a table route's work off the async threads; a refusal is 422.
pub(crate) async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, kiban_deid::DeidError> + Send + 'static,
) -> Result<T, Response> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))?
        .map_err(unprocessable)
}

/// Audits a table route's run (`{what}/{policy}`, the row count as volume; no data) and answers the
/// table with its report.
pub(crate) fn table_response(
    st: &AppState,
    c: &Caller,
    what: &str,
    policy_name: &str,
    rows: usize,
    batches: &[arrow::record_batch::RecordBatch],
    report: impl serde::Serialize,
) -> Result<Response, Response> {
    let ev = Event::new(
        c.actor(),
        &c.source,
        Action::Write,
        Object::new(ObjectKind::Clinical, format!("{what}/{policy_name}")),
    )
    .volume(rows as u64);
    st.audit.record(ev).map_err(|_| error(StatusCode::SERVICE_UNAVAILABLE, "the audit log is unavailable"))?;
    let (columns, rows) = kiban_deid::pseudo::rows_of(batches);
    Ok(Json(json!({"columns": columns, "rows": rows, "report": report})).into_response())
}

/// Pseudonymizes a small table under a policy checked against S1–S3 (refused naming the column);
/// returns the table and the report. With `release` the tokens' key comes from that release's
/// pseudonym domain (`link_to` + `application` join an earlier
/// release's domain when the approved application names that linkage), so two releases of the same
/// data give unlinkable tokens unless linkage was approved. Without the key store (no identity
/// store attached) only a one-request random key is possible, and only when no release is named.
/// Addresses fall to the prefecture unless the operator's population table is configured for CLI
/// runs: over HTTP no file path is taken from the request.
pub async fn pseudonymize(
    State(st): State<AppState>,
    Extension(c): Extension<Caller>,
    store: Option<Extension<crate::identity::SharedIdentity>>,
    body: Result<Json<TableRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, Response> {
    use kiban_deid::pseudo::{PseudoOptions, PseudoPolicy, ReleaseKey};
    let (req, value, batch) = table_request(body)?;
    if value.get("address").and_then(|a| a.get("population_table")).is_some() {
        return Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "policy: address.population_table is not accepted over HTTP (rule: no file path from a request)",
        ));
    }
    let policy = PseudoPolicy::from_toml(&req.policy, std::path::Path::new("/nonexistent")).map_err(unprocessable)?;
    let linkage = match (&req.link_to, &req.application) {
        (None, None) => None,
        (Some(earlier), Some(app)) => {
            let s = st.reg.application_state(app).await.map_err(|e| error(StatusCode::NOT_FOUND, &e.to_string()))?;
            Some(
                kiban_registry::review::package::linkage_allowed(&s, app, earlier)
                    .map_err(|e| error(StatusCode::FORBIDDEN, &e.to_string()))?,
            )
        }
        _ => {
            return Err(error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "link_to: needs application, and application needs link_to",
            ));
        }
    };
    let (key, domain) = match (&store, &req.release, &linkage) {
        // No release named: a one-request key, so the tokens link nothing (and nothing is registered).
        (_, None, None) => (ReleaseKey::random(), None),
        (None, _, _) => {
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "release: the key store is not attached to this server (rule A3: release keys come from it)",
            ));
        }
        (Some(Extension(s)), release, linkage) => {
            let Some(release) = release.clone() else {
                return Err(error(StatusCode::UNPROCESSABLE_ENTITY, "link_to: needs the new release's id in release"));
            };
            let mut g = s.lock().unwrap_or_else(|p| p.into_inner());
            let k = release_table_key(g.keys_mut(), &release, linkage.as_ref())
                .map_err(|e| error(StatusCode::UNPROCESSABLE_ENTITY, &format!("release: {e}")))?;
            drop(g);
            let ev = Event::new(c.actor(), &c.source, Action::KeyUse, Object::new(ObjectKind::Key, &k.domain))
                .note(format!("release {release} table tokens"));
            st.audit.record(ev).map_err(|_| error(StatusCode::SERVICE_UNAVAILABLE, "the audit log is unavailable"))?;
            (k.key, Some((release, k.domain)))
        }
    };
    let out = run_blocking(move || {
        kiban_deid::pseudonymize(
            &policy,
            &kiban_deid::Input::Batches(vec![batch]),
            &kiban_deid::Output::Memory,
            &PseudoOptions::new(key),
        )
    })
    .await?;
    let mut report = serde_json::to_value(&out.report).expect("report serializes");
    if let Some((release, domain)) = domain {
        report["release"] = json!(release);
        report["pseudonym_domain"] = json!(domain);
    }
    table_response(&st, &c, "pseudonymize", &out.report.policy_name, req.rows.len(), &out.batches, &report)
}
